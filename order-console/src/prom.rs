//! Reading the Prometheus text format the services serve on `/metrics`.
//!
//! Only what the console needs: samples (`name{label="value",...} number`), comments and
//! blank lines skipped, label values unescaped (`\\`, `\"`, `\n`). A line that does not parse
//! is skipped rather than failing the whole scrape: the text comes from the network.

use std::collections::BTreeMap;

/// One sample: metric name, labels (sorted by name) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, e.g. `order_commands_total` or `order_command_duration_seconds_bucket`.
    pub name: String,
    /// Label pairs, sorted by label name.
    pub labels: Vec<(String, String)>,
    /// The sample's value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of one scrape, by metric name.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    by_name: BTreeMap<String, Vec<Sample>>,
}

impl Scrape {
    /// Parse a whole `/metrics` body; lines that do not parse are skipped.
    pub fn parse(text: &str) -> Self {
        let mut by_name: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
        for line in text.lines() {
            if let Some(sample) = parse_line(line) {
                by_name.entry(sample.name.clone()).or_default().push(sample);
            }
        }
        Self { by_name }
    }

    /// The samples of metric `name` (empty when absent).
    pub fn samples(&self, name: &str) -> &[Sample] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether the scrape has any sample of `name`.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Sum of every sample of `name` whose labels include all of `matching`.
    pub fn sum(&self, name: &str, matching: &[(&str, &str)]) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for sample in self.samples(name) {
            if matching.iter().all(|(k, v)| sample.label(k) == Some(v)) {
                found = true;
                total += sample.value;
            }
        }
        found.then_some(total)
    }

    /// Sum of `name` grouped by the value of `label` (samples without it are skipped).
    pub fn sum_by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for sample in self.samples(name) {
            if let Some(value) = sample.label(label) {
                *out.entry(value.to_owned()).or_insert(0.0) += sample.value;
            }
        }
        out
    }

    /// The cumulative buckets of histogram `name` summed over every other label:
    /// `(upper bound, count)` sorted by bound, `+Inf` last.
    pub fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let mut sums: Vec<(f64, f64)> = Vec::new();
        for sample in self.samples(&format!("{name}_bucket")) {
            let Some(le) = sample.label("le").and_then(parse_number) else {
                continue;
            };
            match sums.iter_mut().find(|(bound, _)| *bound == le) {
                Some((_, count)) => *count += sample.value,
                None => sums.push((le, sample.value)),
            }
        }
        sums.sort_by(|a, b| a.0.total_cmp(&b.0));
        sums
    }
}

/// A number as the text format writes it.
fn parse_number(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// One sample line, or `None` for a comment, a blank line or anything malformed.
fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_number(fields.next()?)?;
    // An optional timestamp; anything more is malformed.
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    labels.sort();
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y"}` → the pairs and what follows the closing brace.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        text = text[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = text.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                },
                other => value.push(other),
            }
        };
        labels.push((key.to_owned(), value));
        text = text[end + 1..].trim_start();
        if let Some(after) = text.strip_prefix(',') {
            text = after;
        }
    }
}

/// The observations between two cumulative bucket sets of the same histogram: `later` minus
/// `earlier`, bucket by bucket (a bucket that fell: a restarted process, whose whole count is
/// new). Cumulative buckets too, with `later`'s bounds.
pub fn observed(earlier: &[(f64, f64)], later: &[(f64, f64)]) -> Vec<(f64, f64)> {
    later
        .iter()
        .map(|(bound, count)| {
            let before = earlier
                .iter()
                .find(|(b, _)| b == bound)
                .map_or(0.0, |(_, c)| *c);
            // A restarted process starts its counters again from zero.
            let delta = if *count >= before {
                count - before
            } else {
                *count
            };
            (*bound, delta)
        })
        .collect()
}

/// The `q`-quantile (0..=1) of the observations between two cumulative bucket sets of the same
/// histogram ([`observed`]; `earlier` empty: all of `later`), interpolated linearly inside the
/// bucket as Prometheus' `histogram_quantile` does. `None` when nothing was observed in
/// between.
pub fn quantile(q: f64, earlier: &[(f64, f64)], later: &[(f64, f64)]) -> Option<f64> {
    let deltas = observed(earlier, later);
    let total = deltas.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for (bound, count) in &deltas {
        if *count >= rank {
            if bound.is_infinite() {
                // Above the highest finite bucket: report that bucket's bound.
                return Some(lower_bound);
            }
            let in_bucket = count - lower_count;
            if in_bucket <= 0.0 {
                return Some(*bound);
            }
            return Some(lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket);
        }
        lower_bound = *bound;
        lower_count = *count;
    }
    Some(lower_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP order_commands_total commands handled
# TYPE order_commands_total counter
order_commands_total{command="PlaceOrder",outcome="ok"} 10
order_commands_total{command="CancelOrder",outcome="ok"} 2
order_commands_total{outcome="rejected",command="CancelOrder"} 1
order_grpc_requests_shed_total 3
weird{a="q\"uote\\back\nline"} 1.5 1700000000000
order_command_duration_seconds_bucket{command="PlaceOrder",le="0.001"} 2
order_command_duration_seconds_bucket{command="PlaceOrder",le="0.01"} 8
order_command_duration_seconds_bucket{command="PlaceOrder",le="+Inf"} 10
order_command_duration_seconds_bucket{command="CancelOrder",le="0.001"} 0
order_command_duration_seconds_bucket{command="CancelOrder",le="0.01"} 2
order_command_duration_seconds_bucket{command="CancelOrder",le="+Inf"} 2
not a sample line
broken{a="x" 3
"#;

    #[test]
    fn samples_sums_and_labels_are_read() {
        let scrape = Scrape::parse(TEXT);
        assert_eq!(scrape.sum("order_commands_total", &[]), Some(13.0));
        assert_eq!(
            scrape.sum("order_commands_total", &[("outcome", "ok")]),
            Some(12.0)
        );
        let by_outcome = scrape.sum_by("order_commands_total", "outcome");
        assert_eq!(by_outcome.get("rejected"), Some(&1.0));
        assert_eq!(scrape.sum("order_grpc_requests_shed_total", &[]), Some(3.0));
        assert_eq!(
            scrape.samples("weird")[0].label("a"),
            Some("q\"uote\\back\nline")
        );
        assert!(!scrape.has("not"));
        assert!(!scrape.has("broken"));
        assert_eq!(scrape.sum("absent", &[]), None);
    }

    #[test]
    fn histogram_buckets_are_summed_and_quantiles_interpolated() {
        let scrape = Scrape::parse(TEXT);
        let buckets = scrape.buckets("order_command_duration_seconds");
        assert_eq!(
            buckets,
            vec![(0.001, 2.0), (0.01, 10.0), (f64::INFINITY, 12.0)]
        );
        let p50 = quantile(0.5, &[], &buckets).unwrap_or_default();
        assert!(
            (p50 - (0.001 + 0.009 * (6.0 - 2.0) / 8.0)).abs() < 1e-12,
            "{p50}"
        );
        // Nothing observed between two equal scrapes.
        assert_eq!(quantile(0.5, &buckets, &buckets), None);
        // Above the last finite bucket: that bucket's bound.
        assert_eq!(
            quantile(0.99, &[], &[(0.5, 0.0), (f64::INFINITY, 4.0)]),
            Some(0.5)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_without_panic(text in "\\PC{0,400}") {
            let _ = Scrape::parse(&text);
        }

        #[test]
        fn label_values_round_trip(value in "\\PC{0,40}") {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let scrape = Scrape::parse(&format!("m{{l=\"{escaped}\"}} 1\n"));
            proptest::prop_assert_eq!(scrape.samples("m")[0].label("l"), Some(value.as_str()));
        }
    }
}

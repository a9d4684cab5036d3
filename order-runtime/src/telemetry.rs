//! Logging: JSON lines in the cloud (`LOG_FORMAT=json`), readable lines otherwise; levels
//! from `RUST_LOG` (default `info`).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, span};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::{Context, Filter};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line with top-level `timestamp`, `level`, `message`, `target` and
    /// the fields of the enclosing spans.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Install the global subscriber once: log lines (JSON or pretty) and, when the `OTEL_*`
/// variables ask for it, OpenTelemetry spans exported over OTLP (see [`crate::trace`]).
/// Later calls (tests starting several apps) are no-ops. Call inside a Tokio runtime.
pub fn init(service: &str, format: LogFormat) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    // The metrics recorder too, before any series is touched.
    metrics();
    INSTALLED.get_or_init(|| {
        // Who and since when, for the console's services page (version, uptime).
        metrics::gauge!(
            "order_build_info",
            "service" => service.to_owned(),
            "version" => env!("CARGO_PKG_VERSION")
        )
        .set(1.0);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        metrics::gauge!("process_start_time_seconds").set(started.as_secs_f64());
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let otel = crate::trace::provider(service).map(|provider| {
            use opentelemetry::trace::TracerProvider as _;
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("order-ledger"))
                .with_filter(tracing_subscriber::filter::filter_fn(exported))
        });
        let events = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        metrics::counter!("order_log_errors_total").increment(0);
        let result = tracing_subscriber::registry()
            .with(otel)
            .with(log_layer(format, std::io::stdout, events))
            .try_init();
        // Another subscriber is already installed (a test harness): keep it.
        let _ = result;
    });
}

/// A tool's log lines (order-import, the provider stub) on stderr, in the format
/// `LOG_FORMAT` names (`json`, or `pretty`, the default), filtered by `RUST_LOG` (default
/// info); no traces, no metrics. `Err` names a `LOG_FORMAT` it does not know.
pub fn init_tool_logging() -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let format = match std::env::var("LOG_FORMAT") {
        Err(_) => LogFormat::Pretty,
        Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
            "" | "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            _ => return Err(format!("invalid LOG_FORMAT {value:?}: json or pretty")),
        },
    };
    let events = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Another subscriber is already installed (a test harness): keep it.
    let _ = tracing_subscriber::registry()
        .with(log_layer(format, std::io::stderr, events))
        .try_init();
    Ok(())
}

/// The log-line layer: `format` lines to `writer`, events filtered by `events`.
fn log_layer<S, W>(
    format: LogFormat,
    writer: W,
    events: EnvFilter,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;
    let fmt = tracing_subscriber::fmt::layer()
        .with_span_events(FmtSpan::NONE)
        .with_writer(writer);
    let filter = LogFilter { events };
    match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => fmt.compact().with_filter(filter).boxed(),
    }
}

/// Whether a span or event is ours: emitted by one of the order-ledger crates.
fn ours(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with("order_")
}

/// What goes to the OTLP exporter: our spans (debug and above: the database calls inside a
/// command are debug spans, trace detail that log lines do not need), and warnings and errors
/// as span events. Independent of `RUST_LOG`: quieter logs never break a trace. Without an
/// exporter, debug spans are not even created unless `RUST_LOG` asks for them.
fn exported(metadata: &Metadata<'_>) -> bool {
    if metadata.is_span() {
        ours(metadata) && *metadata.level() <= Level::DEBUG
    } else {
        *metadata.level() <= Level::WARN
    }
}

/// Which log lines are written: events as `RUST_LOG` says (default `info`), and always our own
/// spans (info and above), so that a line inside a request or message carries the request's
/// correlation id, order id and trace id even when `RUST_LOG=warn`.
struct LogFilter {
    events: EnvFilter,
}

impl LogFilter {
    fn forced(metadata: &Metadata<'_>) -> bool {
        metadata.is_span() && ours(metadata) && *metadata.level() <= Level::INFO
    }
}

impl<S> Filter<S> for LogFilter
where
    EnvFilter: Filter<S>,
{
    fn enabled(&self, metadata: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        Self::forced(metadata) || Filter::enabled(&self.events, metadata, cx)
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if Self::forced(metadata) {
            Interest::always()
        } else {
            Filter::callsite_enabled(&self.events, metadata)
        }
    }

    /// Also counts the ERROR lines written (`order_log_errors_total`): what a log-based
    /// alarm counts (CloudWatch's metric filter on `level = ERROR`), for the health board to
    /// count the same; here, so that every line's interest stays as the filter has it.
    fn event_enabled(&self, event: &tracing::Event<'_>, cx: &Context<'_, S>) -> bool {
        let written = Filter::event_enabled(&self.events, event, cx);
        if written && *event.metadata().level() == Level::ERROR {
            metrics::counter!("order_log_errors_total").increment(1);
        }
        written
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::max_level_hint(&self.events).map(|hint| hint.max(LevelFilter::INFO))
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        Filter::on_new_span(&self.events, attrs, id, cx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        Filter::on_record(&self.events, id, values, cx);
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        Filter::on_enter(&self.events, id, cx);
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        Filter::on_exit(&self.events, id, cx);
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        Filter::on_close(&self.events, id, cx);
    }
}

/// [`init`] under a generic service name (for tools and tests).
pub fn init_logging(format: LogFormat) {
    init("order-ledger", format);
}

/// Histograms that count things, not seconds, and their buckets (the rest are durations).
const COUNT_HISTOGRAMS: &[(&str, &[f64])] = &[(
    "order_store_group_commit_batch_size",
    &[
        1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 128.0, 256.0,
    ],
)];

/// The process-wide Prometheus recorder; `metrics::counter!` and friends record into it.
/// Histograms are durations in seconds (buckets from 0.5 ms to 5 s), except the counts of
/// `COUNT_HISTOGRAMS` (appends per group-commit statement: 1 to 256).
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let mut builder = PrometheusBuilder::new().set_buckets(&[
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
        ]);
        for (name, buckets) in COUNT_HISTOGRAMS {
            builder = builder
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets));
        }
        let recorder = builder.map(PrometheusBuilder::build_recorder);
        match recorder {
            Ok(recorder) => {
                let handle = recorder.handle();
                // Fails only when another recorder is installed; ours still renders.
                let _ = metrics::set_global_recorder(recorder);
                handle
            }
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The group-commit batch size is a count: its buckets must tell 8 appends from 60 (with
    /// the duration buckets every batch above 5 fell into +Inf).
    #[test]
    fn the_batch_size_histogram_has_buckets_for_counts() {
        let handle = metrics();
        metrics::histogram!("order_store_group_commit_batch_size").record(12.0);
        metrics::histogram!("order_test_duration_seconds").record(0.003);
        let text = handle.render();
        let line = |name: &str, le: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name}_bucket{{le=\"{le}\"}}")))
                .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
        };
        let batch = "order_store_group_commit_batch_size";
        assert_eq!(line(batch, "8").as_deref(), Some("0"), "{text}");
        assert_eq!(line(batch, "12").as_deref(), Some("1"), "{text}");
        assert_eq!(line(batch, "256").as_deref(), Some("1"), "{text}");
        assert_eq!(line(batch, "0.005"), None, "{text}");
        // Durations keep theirs.
        let duration = "order_test_duration_seconds";
        assert_eq!(line(duration, "0.002").as_deref(), Some("0"), "{text}");
        assert_eq!(line(duration, "0.005").as_deref(), Some("1"), "{text}");
    }
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The JSON lines written while `f` runs under a subscriber filtering at `directives`.
    fn lines_at(directives: &str, f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(log_layer(
            LogFormat::Json,
            move || writer.clone(),
            EnvFilter::new(directives),
        ));
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn quiet_logs_still_carry_the_request_context() {
        let lines = lines_at("warn", || {
            let span = tracing::info_span!(
                "command",
                correlation_id = "corr-1",
                order_id = "order-1",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            let _entered = span.enter();
            tracing::info!("below the level");
            tracing::warn!("worth a look");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["message"], "worth a look");
        assert_eq!(line["level"], "WARN");
        let span = &line["spans"][0];
        assert_eq!(span["name"], "command");
        assert_eq!(span["correlation_id"], "corr-1");
        assert_eq!(span["order_id"], "order-1");
        assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn rust_log_still_selects_events() {
        let lines = lines_at("info,order_runtime=error", || {
            tracing::warn!("muted for this crate");
            tracing::error!("kept");
        });
        let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
        assert_eq!(messages, ["kept"]);
    }
}

//! The services as the console sees them: every admin endpoint scraped on an interval
//! (`/readyz`, `/metrics`), and from two successive scrapes the rates people watch, kept for
//! the last minutes.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::Target;
use crate::prom::{Scrape, quantile};

/// Which service an endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// order-grpc.
    Grpc,
    /// order-projector.
    Projector,
    /// order-worker.
    Worker,
    /// Not known (yet): never scraped, or serves none of our metrics.
    Unknown,
}

impl Kind {
    /// The binary's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "order-grpc",
            Self::Projector => "order-projector",
            Self::Worker => "order-worker",
            Self::Unknown => "unknown",
        }
    }

    /// From `order_build_info{service}`, else from the metrics only that service serves.
    fn of(scrape: &Scrape) -> Self {
        let named = scrape
            .samples("order_build_info")
            .iter()
            .find_map(|s| s.label("service"));
        match named {
            Some("order-grpc") => return Self::Grpc,
            Some("order-projector") => return Self::Projector,
            Some("order-worker") => return Self::Worker,
            _ => {}
        }
        if scrape.has("order_commands_total") || scrape.has("order_grpc_requests_shed_total") {
            Self::Grpc
        } else if scrape.has("order_log_head_position") || scrape.has("order_projector_owner") {
            Self::Projector
        } else if scrape.has("order_worker_messages_in_flight")
            || scrape.has("order_worker_messages_total")
        {
            Self::Worker
        } else {
            Self::Unknown
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// What one scrape of one instance showed, reduced to what the console draws and alarms on.
#[derive(Debug, Clone, Default)]
pub struct Point {
    /// When (Unix seconds).
    pub t: f64,
    /// The endpoint answered.
    pub up: bool,
    /// `/readyz` answered 200.
    pub ready: bool,
    /// Rates and levels by name (see [`derive`](fn@derive)); absent when not measurable.
    pub values: BTreeMap<String, f64>,
    /// order-grpc: the commands' latencies observed since the scrape its rates are counted
    /// from (as [`derive`](fn@derive)'s: the same process's previous answer, or nothing for a new
    /// process, all of whose buckets are new), as cumulative buckets of all commands, for
    /// per-minute quantiles; empty when there is no such scrape.
    pub latency_observed: Vec<(f64, f64)>,
}

impl Point {
    /// A value by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }
}

/// One instance: its latest state and its recent history.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The endpoint.
    pub target: Target,
    /// What it is.
    pub kind: Kind,
    /// Reachable at the last scrape.
    pub up: bool,
    /// Ready at the last scrape.
    pub ready: bool,
    /// `/readyz`'s answer, or why the endpoint could not be reached.
    pub detail: String,
    /// `order_build_info{version}`.
    pub version: Option<String>,
    /// `process_start_time_seconds`.
    pub started_at: Option<f64>,
    /// When the endpoint last answered.
    pub last_seen: Option<f64>,
    /// Scrapes so far.
    pub scrapes: u64,
    /// The previous answered scrape, for rates: when, the start time of the process that
    /// answered, and its metrics. Kept while the endpoint is unreachable, so that the
    /// increase over a failed scrape is counted, and a new process's whole counters.
    previous: Option<(f64, Option<f64>, Scrape)>,
    /// Messages this instance sent to SQS, corrected for restarts (projector).
    pub sent_accumulated: f64,
    /// The last reading of the SQS sent counter, with the start time of the process that
    /// reported it. Kept while the endpoint is unreachable, so that a restarted process's
    /// messages sent before the console reached it again are counted.
    sent_seen: Option<(Option<f64>, f64)>,
    /// When the console first tried to scrape this endpoint.
    watching_since: Option<f64>,
    /// Recent points, oldest first.
    pub points: VecDeque<Point>,
}

impl Instance {
    /// A never-scraped instance.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            kind: Kind::Unknown,
            up: false,
            ready: false,
            detail: "not scraped yet".to_owned(),
            version: None,
            started_at: None,
            last_seen: None,
            scrapes: 0,
            previous: None,
            sent_accumulated: 0.0,
            sent_seen: None,
            watching_since: None,
            points: VecDeque::new(),
        }
    }

    /// The name people see: the configured one, else the service and address.
    pub fn name(&self) -> String {
        match &self.target.name {
            Some(name) => name.clone(),
            None => format!("{} {}", self.kind.as_str(), self.target.authority),
        }
    }

    /// The latest point.
    pub fn latest(&self) -> Option<&Point> {
        self.points.back()
    }

    /// Record one scrape's result and forget points older than `keep`.
    pub fn record(&mut self, at: f64, outcome: ScrapeOutcome, keep: Duration) {
        self.scrapes += 1;
        let watching_since = *self.watching_since.get_or_insert(at);
        let mut point = Point {
            t: at,
            ..Point::default()
        };
        match outcome {
            ScrapeOutcome::Unreachable(why) => {
                self.up = false;
                self.ready = false;
                self.detail = why;
            }
            ScrapeOutcome::Answered {
                ready,
                readiness,
                metrics,
            } => {
                self.up = true;
                self.ready = ready;
                self.detail = readiness;
                self.last_seen = Some(at);
                let kind = Kind::of(&metrics);
                if kind != Kind::Unknown {
                    self.kind = kind;
                }
                self.version = metrics
                    .samples("order_build_info")
                    .iter()
                    .find_map(|s| s.label("version").map(str::to_owned));
                self.started_at = metrics
                    .sum("process_start_time_seconds", &[])
                    .filter(|t| *t > 0.0);
                point.up = true;
                point.ready = ready;
                let started = self.started_at;
                let empty = Scrape::default();
                let baseline = match &self.previous {
                    // The same process: its counters' increase since the last answer.
                    Some((then, then_started, previous)) if *then_started == started => {
                        Some((*then, previous))
                    }
                    // Another process since the last answer: all it counted is new.
                    Some((then, _, _)) => Some((started.map_or(*then, |s| s.max(*then)), &empty)),
                    // Started after the console began watching: all it counted is new.
                    None => started
                        .filter(|s| *s >= watching_since)
                        .map(|s| (s, &empty)),
                };
                if let Some((since, before)) = baseline {
                    // Over at least a second (a process start a little ahead of the
                    // console's clock counts too).
                    let dt = (at - since).max(1.0);
                    derive(self.kind, before, &metrics, dt, &mut point);
                }
                levels(self.kind, &metrics, &mut point);
                if let Some(sent) = metrics.sum("order_sqs_messages_sent_total", &[]) {
                    let started = self.started_at;
                    let new = match self.sent_seen {
                        // The same process: its counter's increase (a drop: it restarted).
                        Some((then_started, then)) if then_started == started => {
                            increase(Some(then), Some(sent))
                        }
                        // Another process since the last reading: all it sent is new.
                        Some(_) => Some(sent),
                        // Started after the console began watching: all it sent is new.
                        None if started.is_some_and(|s| s >= watching_since) => Some(sent),
                        // What it sent before the console first saw it is the baseline.
                        None => None,
                    };
                    self.sent_accumulated += new.unwrap_or(0.0);
                    self.sent_seen = Some((started, sent));
                }
                self.previous = Some((at, started, metrics));
            }
        }
        self.points.push_back(point);
        while self
            .points
            .front()
            .is_some_and(|p| at - p.t > keep.as_secs_f64())
        {
            self.points.pop_front();
        }
    }
}

/// The increase of a counter between two scrapes (a restart starts again from zero).
fn increase(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    let after = after?;
    let before = before.unwrap_or(0.0);
    Some(if after >= before {
        after - before
    } else {
        after
    })
}

/// Rates between two scrapes, by name:
/// - order-grpc: `commands_per_s:<outcome>`, `p50_ms`, `p99_ms`, `shed_per_s`, `errors`
///   (its ERROR lines, `order_log_errors_total`; for an order-grpc without that counter, its
///   commands answered `error` or `unavailable`);
/// - order-worker: `messages_per_s:<outcome>`, `dlq` (messages dead-lettered), `failed`
///   (the worker's `FAILED` lines, from its `order_worker_failed_total`; from a worker without
///   it, dead-lettered, failed to dead-letter, and failed delete attempts);
/// - order-projector: `events_per_s:<subscription>`, `errors:<subscription>`.
pub fn derive(kind: Kind, before: &Scrape, after: &Scrape, dt: f64, point: &mut Point) {
    let rate_by = |metric: &str, label: &str, prefix: &str, point: &mut Point| {
        let old = before.sum_by(metric, label);
        for (value, now) in after.sum_by(metric, label) {
            if let Some(delta) = increase(old.get(&value).copied(), Some(now)) {
                point.values.insert(format!("{prefix}:{value}"), delta / dt);
            }
        }
    };
    match kind {
        Kind::Grpc => {
            rate_by("order_commands_total", "outcome", "commands_per_s", point);
            let earlier = before.buckets("order_command_duration_seconds");
            let later = after.buckets("order_command_duration_seconds");
            point.latency_observed = crate::prom::observed(&earlier, &later);
            for (name, q) in [("p50_ms", 0.5), ("p99_ms", 0.99)] {
                if let Some(seconds) = quantile(q, &[], &point.latency_observed) {
                    point.values.insert(name.to_owned(), seconds * 1000.0);
                }
            }
            if let Some(shed) = increase(
                before.sum("order_grpc_requests_shed_total", &[]),
                after.sum("order_grpc_requests_shed_total", &[]),
            ) {
                point.values.insert("shed_per_s".to_owned(), shed / dt);
            }
            // Its ERROR lines, as a log-based alarm counts them (queries' failures and the
            // store's own errors too); an order-grpc too old to count them: the commands
            // answered error or unavailable.
            let errors = increase(
                before.sum("order_log_errors_total", &[]),
                after.sum("order_log_errors_total", &[]),
            )
            .unwrap_or_else(|| {
                ["error", "unavailable"]
                    .iter()
                    .filter_map(|outcome| {
                        increase(
                            before.sum("order_commands_total", &[("outcome", outcome)]),
                            after.sum("order_commands_total", &[("outcome", outcome)]),
                        )
                    })
                    .sum::<f64>()
            });
            point.values.insert("errors".to_owned(), errors);
        }
        Kind::Worker => {
            rate_by(
                "order_worker_messages_total",
                "outcome",
                "messages_per_s",
                point,
            );
            let dlq = increase(
                before.sum("order_worker_messages_total", &[("outcome", "dlq")]),
                after.sum("order_worker_messages_total", &[("outcome", "dlq")]),
            )
            .unwrap_or(0.0);
            // The worker counts its FAILED lines itself, one each (what WorkerFailedCount
            // counts). A worker from before that counter: dead-lettered, could not be
            // dead-lettered, and failed delete attempts, a retried one included.
            let failed = match after.sum("order_worker_failed_total", &[]) {
                Some(now) => {
                    increase(before.sum("order_worker_failed_total", &[]), Some(now)).unwrap_or(0.0)
                }
                None => {
                    let failed_deletes = increase(
                        before.sum("order_worker_sqs_errors_total", &[("operation", "delete")]),
                        after.sum("order_worker_sqs_errors_total", &[("operation", "delete")]),
                    )
                    .unwrap_or(0.0);
                    let failed_dead_letters = increase(
                        before.sum("order_worker_sqs_errors_total", &[("operation", "dlq")]),
                        after.sum("order_worker_sqs_errors_total", &[("operation", "dlq")]),
                    )
                    .unwrap_or(0.0);
                    dlq + failed_dead_letters + failed_deletes
                }
            };
            point.values.insert("dlq".to_owned(), dlq);
            point.values.insert("failed".to_owned(), failed);
            for (provider, _) in crate::alarms::CIRCUIT_SIGNALS {
                let labels = [("provider", provider), ("state", "open")];
                if let Some(opened) = increase(
                    before.sum("order_worker_circuit_transitions_total", &labels),
                    after.sum("order_worker_circuit_transitions_total", &labels),
                ) {
                    point.values.insert(format!("opened:{provider}"), opened);
                }
            }
        }
        Kind::Projector => {
            rate_by(
                "order_projector_events_total",
                "subscription",
                "events_per_s",
                point,
            );
            let old = before.sum_by("order_projector_errors_total", "subscription");
            for (name, now) in after.sum_by("order_projector_errors_total", "subscription") {
                if let Some(delta) = increase(old.get(&name).copied(), Some(now)) {
                    point.values.insert(format!("errors:{name}"), delta);
                }
            }
        }
        Kind::Unknown => {}
    }
}

/// Levels read from one scrape (gauges): pools, projector lag and leases, worker in flight.
fn levels(kind: Kind, scrape: &Scrape, point: &mut Point) {
    for (name, metric, matching) in [
        (
            "pool_in_use",
            "order_db_pool_connections",
            &[("state", "in_use")][..],
        ),
        ("pool_open", "order_db_pool_connections", &[][..]),
        ("pool_max", "order_db_pool_max", &[][..]),
        ("pool_waiting", "order_db_pool_waiting", &[][..]),
    ] {
        if let Some(value) = scrape.sum(metric, matching) {
            point.values.insert(name.to_owned(), value);
        }
    }
    match kind {
        Kind::Projector => {
            for (prefix, metric) in [
                ("lag_s", "order_projector_lag_seconds"),
                ("lag_events", "order_projector_lag_events"),
                ("owner", "order_projector_owner"),
                ("stopped", "order_projector_stopped"),
            ] {
                for (name, value) in scrape.sum_by(metric, "subscription") {
                    point.values.insert(format!("{prefix}:{name}"), value);
                }
            }
            if let Some(head) = scrape.sum("order_log_head_position", &[]) {
                point.values.insert("head".to_owned(), head);
            }
        }
        Kind::Worker => {
            if let Some(value) = scrape.sum("order_worker_messages_in_flight", &[]) {
                point.values.insert("in_flight".to_owned(), value);
            }
            for (provider, state) in scrape.sum_by("order_worker_circuit_state", "provider") {
                point.values.insert(format!("circuit:{provider}"), state);
            }
        }
        // Its latency is counted between two scrapes ([`derive`]).
        Kind::Grpc | Kind::Unknown => {}
    }
}

/// What scraping one endpoint gave.
#[derive(Debug)]
pub enum ScrapeOutcome {
    /// No answer (refused, timed out, not HTTP, too large).
    Unreachable(String),
    /// It answered `/readyz` and `/metrics`.
    Answered {
        /// `/readyz` said 200.
        ready: bool,
        /// `/readyz`'s text (the reason when not ready).
        readiness: String,
        /// `/metrics`.
        metrics: Scrape,
    },
}

/// An HTTP client for the admin endpoints: plain HTTP/1.1, bounded time and size.
#[derive(Debug, Clone)]
pub struct Scraper {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

/// Largest `/metrics` body read (a service's is a few tens of KiB).
const MAX_BODY: usize = 8 * 1024 * 1024;

impl Scraper {
    /// A client whose every request ends within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            timeout,
        }
    }

    /// GET `http://authority/path`: status and body (lossy UTF-8).
    pub async fn get(&self, authority: &str, path: &str) -> Result<(u16, String), String> {
        let uri: http::Uri = format!("http://{authority}{path}")
            .parse()
            .map_err(|e| format!("invalid address: {e}"))?;
        let request = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|e| format!("unreachable: {}", describe(&e)))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {e}"))?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| format!("no answer within {} ms", self.timeout.as_millis()))?
    }

    /// Scrape one endpoint: `/readyz`, then `/metrics`, both within the time limit (the limit
    /// bounds the whole scrape, not each request).
    pub async fn scrape(&self, authority: &str) -> ScrapeOutcome {
        tokio::time::timeout(self.timeout, self.scrape_unbounded(authority))
            .await
            .unwrap_or_else(|_| {
                ScrapeOutcome::Unreachable(format!(
                    "no answer within {} ms",
                    self.timeout.as_millis()
                ))
            })
    }

    async fn scrape_unbounded(&self, authority: &str) -> ScrapeOutcome {
        let (status, text) = match self.get(authority, "/readyz").await {
            Ok(answer) => answer,
            Err(why) => return ScrapeOutcome::Unreachable(why),
        };
        let readiness = text.trim().chars().take(500).collect::<String>();
        match self.get(authority, "/metrics").await {
            Ok((200, body)) => ScrapeOutcome::Answered {
                ready: status == 200,
                readiness,
                metrics: Scrape::parse(&body),
            },
            Ok((other, _)) => ScrapeOutcome::Unreachable(format!("/metrics answered {other}")),
            Err(why) => ScrapeOutcome::Unreachable(why),
        }
    }
}

/// The innermost cause, lowercase (e.g. "connection refused").
fn describe(error: &dyn std::error::Error) -> String {
    let mut inner: &dyn std::error::Error = error;
    while let Some(source) = inner.source() {
        inner = source;
    }
    let text = inner.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            name: None,
            authority: "127.0.0.1:1".into(),
        }
    }

    fn answered(text: &str) -> ScrapeOutcome {
        ScrapeOutcome::Answered {
            ready: true,
            readiness: "ready".into(),
            metrics: Scrape::parse(text),
        }
    }

    /// An order-grpc that counts its ERROR lines: the board counts those (queries that failed
    /// and the store's own errors too, as a log-based alarm does), not only the commands.
    #[test]
    fn errors_are_the_error_lines_when_order_grpc_counts_them() {
        let mut instance = Instance::new(target());
        let keep = Duration::from_secs(600);
        let scrape = |lines: u32, failed: u32| {
            answered(&format!(
                "order_build_info{{service=\"order-grpc\",version=\"0.1.0\"}} 1\n\
                 order_log_errors_total {lines}\n\
                 order_commands_total{{command=\"PlaceOrder\",outcome=\"unavailable\"}} {failed}\n"
            ))
        };
        instance.record(100.0, scrape(2, 1), keep);
        instance.record(102.0, scrape(9, 2), keep);
        let point = instance.latest().cloned().unwrap_or_default();
        assert_eq!(point.get("errors"), Some(7.0));
    }

    #[test]
    fn rates_come_from_two_scrapes_and_survive_a_restart() {
        let mut instance = Instance::new(target());
        let keep = Duration::from_secs(600);
        instance.record(
            100.0,
            answered("order_build_info{service=\"order-grpc\",version=\"0.1.0\"} 1\norder_commands_total{command=\"PlaceOrder\",outcome=\"ok\"} 10\n"),
            keep,
        );
        assert_eq!(instance.kind, Kind::Grpc);
        assert_eq!(instance.version.as_deref(), Some("0.1.0"));
        instance.record(
            102.0,
            answered("order_commands_total{command=\"PlaceOrder\",outcome=\"ok\"} 30\norder_commands_total{command=\"X\",outcome=\"error\"} 1\n"),
            keep,
        );
        let point = instance.latest().cloned().unwrap_or_default();
        assert_eq!(point.get("commands_per_s:ok"), Some(10.0));
        assert_eq!(point.get("errors"), Some(1.0));
        // Restarted: the counter starts again.
        instance.record(
            104.0,
            answered("order_commands_total{command=\"PlaceOrder\",outcome=\"ok\"} 4\n"),
            keep,
        );
        assert_eq!(
            instance.latest().and_then(|p| p.get("commands_per_s:ok")),
            Some(2.0)
        );
        instance.record(
            105.0,
            ScrapeOutcome::Unreachable("unreachable: connection refused".into()),
            keep,
        );
        assert!(!instance.up);
        assert_eq!(instance.points.len(), 4);
        instance.record(2000.0, ScrapeOutcome::Unreachable("x".into()), keep);
        assert_eq!(instance.points.len(), 1, "old points are forgotten");
    }

    /// The worker's breakers, as order-worker exports them (every provider and state
    /// registered at zero): a circuit that opened between two scrapes is counted for its
    /// provider, the others read zero, and a worker that exports none says nothing.
    #[test]
    fn circuit_openings_are_counted_per_provider_between_two_scrapes() {
        let keep = Duration::from_secs(600);
        let worker = |payment_opened: u32| {
            let mut text =
                String::from("order_build_info{service=\"order-worker\",version=\"0.1.0\"} 1\n");
            for provider in ["inventory", "payment", "shipping"] {
                for state in ["open", "half-open", "closed"] {
                    let n = if provider == "payment" && state == "open" {
                        payment_opened
                    } else if provider == "payment" && state == "half-open" {
                        // half-open transitions are not openings
                        payment_opened * 3
                    } else {
                        0
                    };
                    text.push_str(&format!(
                        "order_worker_circuit_transitions_total{{provider=\"{provider}\",state=\"{state}\"}} {n}\n"
                    ));
                }
            }
            answered(&text)
        };
        let mut instance = Instance::new(target());
        instance.record(100.0, worker(1), keep);
        assert_eq!(instance.kind, Kind::Worker);
        instance.record(102.0, worker(3), keep);
        let point = instance.latest().cloned().unwrap_or_default();
        assert_eq!(point.get("opened:payment"), Some(2.0));
        assert_eq!(point.get("opened:inventory"), Some(0.0));
        assert_eq!(point.get("opened:shipping"), Some(0.0));

        let mut silent = Instance::new(target());
        let bare = "order_build_info{service=\"order-worker\",version=\"0.1.0\"} 1\n";
        silent.record(100.0, answered(bare), keep);
        silent.record(102.0, answered(bare), keep);
        let point = silent.latest().cloned().unwrap_or_default();
        assert_eq!(point.get("opened:payment"), None);
    }

    fn projector(started: f64, sent: f64) -> ScrapeOutcome {
        answered(&format!(
            "order_build_info{{service=\"order-projector\",version=\"0.1.0\"}} 1\nprocess_start_time_seconds {started}\norder_sqs_messages_sent_total{{subscription=\"sqs_publisher\"}} {sent}\n"
        ))
    }

    #[test]
    fn messages_sent_count_across_restarts_and_unreachable_scrapes() {
        let keep = Duration::from_secs(600);
        let mut instance = Instance::new(target());
        // What the process sent before the console first saw it is the baseline.
        instance.record(100.0, projector(50.0, 1000.0), keep);
        assert_eq!(instance.sent_accumulated, 0.0);
        instance.record(102.0, projector(50.0, 1010.0), keep);
        assert_eq!(instance.sent_accumulated, 10.0);
        // Killed: unreachable for a while, then a new process that sent 5 before the console
        // reached it. All 5 were sent after the last reading.
        instance.record(
            104.0,
            ScrapeOutcome::Unreachable("connection refused".into()),
            keep,
        );
        instance.record(
            106.0,
            ScrapeOutcome::Unreachable("connection refused".into()),
            keep,
        );
        instance.record(108.0, projector(105.0, 5.0), keep);
        assert_eq!(instance.sent_accumulated, 15.0);
        instance.record(110.0, projector(105.0, 9.0), keep);
        assert_eq!(instance.sent_accumulated, 19.0);
        // The same process, unreachable for one scrape (a network blip): only its increase.
        instance.record(112.0, ScrapeOutcome::Unreachable("timed out".into()), keep);
        instance.record(114.0, projector(105.0, 12.0), keep);
        assert_eq!(instance.sent_accumulated, 22.0);
        // A restart between two scrapes, the new counter already above the old one.
        instance.record(116.0, projector(115.0, 30.0), keep);
        assert_eq!(instance.sent_accumulated, 52.0);
    }

    fn worker(started: f64, dlq: f64, dlq_errors: f64, delete_errors: f64) -> ScrapeOutcome {
        answered(&format!(
            "order_build_info{{service=\"order-worker\",version=\"0.1.0\"}} 1\nprocess_start_time_seconds {started}\norder_worker_messages_total{{outcome=\"dlq\"}} {dlq}\norder_worker_sqs_errors_total{{operation=\"dlq\"}} {dlq_errors}\norder_worker_sqs_errors_total{{operation=\"delete\"}} {delete_errors}\norder_worker_sqs_errors_total{{operation=\"receive\"}} 7\n"
        ))
    }

    fn grpc(started: f64, errors: f64) -> ScrapeOutcome {
        answered(&format!(
            "order_build_info{{service=\"order-grpc\",version=\"0.1.0\"}} 1\nprocess_start_time_seconds {started}\norder_commands_total{{command=\"PlaceOrder\",outcome=\"ok\"}} 3\norder_commands_total{{command=\"PlaceOrder\",outcome=\"error\"}} {errors}\n"
        ))
    }

    fn failed(instance: &Instance) -> Option<f64> {
        instance.latest().and_then(|p| p.get("failed"))
    }

    /// A worker that counts its FAILED lines (`order_worker_failed_total`), by reason, with
    /// its SQS errors of every attempt alongside.
    fn counting_worker(started: f64, failed: [f64; 3], delete_errors: f64) -> ScrapeOutcome {
        let [dead_lettered, dead_letter_failed, delete_failed] = failed;
        answered(&format!(
            "order_build_info{{service=\"order-worker\",version=\"0.1.0\"}} 1\nprocess_start_time_seconds {started}\norder_worker_messages_total{{outcome=\"dlq\"}} {dead_lettered}\norder_worker_sqs_errors_total{{operation=\"dlq\"}} {dead_letter_failed}\norder_worker_sqs_errors_total{{operation=\"delete\"}} {delete_errors}\norder_worker_failed_total{{reason=\"dead_lettered\"}} {dead_lettered}\norder_worker_failed_total{{reason=\"dead_letter_failed\"}} {dead_letter_failed}\norder_worker_failed_total{{reason=\"delete_failed\"}} {delete_failed}\n"
        ))
    }

    /// worker-failed is the worker's count of its FAILED lines, what CloudWatch's
    /// WorkerFailedCount counts: a delete that failed and then succeeded on a retry wrote no
    /// FAILED line and counts nothing; a delete that gave up after its attempts wrote one line
    /// for its batch and counts once, however many attempts failed.
    #[test]
    fn worker_failed_is_the_workers_count_of_its_failed_lines() {
        let keep = Duration::from_secs(600);
        let mut instance = Instance::new(target());
        instance.record(100.0, counting_worker(50.0, [0.0, 0.0, 0.0], 0.0), keep);
        // A DeleteMessageBatch attempt failed, the next one succeeded.
        instance.record(102.0, counting_worker(50.0, [0.0, 0.0, 0.0], 1.0), keep);
        assert_eq!(
            failed(&instance),
            Some(0.0),
            "a retried delete that succeeded"
        );
        // A batch whose three attempts failed: one FAILED line.
        instance.record(104.0, counting_worker(50.0, [0.0, 0.0, 1.0], 4.0), keep);
        assert_eq!(failed(&instance), Some(1.0), "one batch given up");
        // Each FAILED line once: one dead-lettered, two not, one delete given up.
        instance.record(106.0, counting_worker(50.0, [1.0, 2.0, 2.0], 7.0), keep);
        assert_eq!(failed(&instance), Some(4.0), "each line once");
        // A new process counts all it counted.
        instance.record(108.0, counting_worker(107.0, [0.0, 0.0, 1.0], 3.0), keep);
        assert_eq!(failed(&instance), Some(1.0), "a restarted worker");
    }

    /// A worker that does not count its FAILED lines yet (no `order_worker_failed_total`):
    /// dead-lettered, could not be dead-lettered, and failed delete attempts (an upper bound:
    /// a delete attempt that failed may have succeeded on a retry).
    #[test]
    fn worker_failed_counts_every_failed_line() {
        let keep = Duration::from_secs(600);
        let mut instance = Instance::new(target());
        instance.record(100.0, worker(50.0, 1.0, 1.0, 1.0), keep);
        instance.record(102.0, worker(50.0, 2.0, 4.0, 1.0), keep);
        assert_eq!(failed(&instance), Some(4.0), "1 dead-lettered + 3 not");
        instance.record(104.0, worker(50.0, 2.0, 4.0, 3.0), keep);
        assert_eq!(failed(&instance), Some(2.0), "2 failed deletes");
    }

    /// A new process (another `process_start_time_seconds`): what it counted before the
    /// console's first scrape of it is all new, whether or not the console saw the old one
    /// go; the same process back after a failed scrape: its increase over the gap.
    #[test]
    fn a_new_process_counts_whole_values_and_a_blip_keeps_the_baseline() {
        let keep = Duration::from_secs(600);
        let unreachable = || ScrapeOutcome::Unreachable("connection refused".into());
        let mut instance = Instance::new(target());
        // Seen once, started before the console: its counters are the baseline.
        instance.record(100.0, worker(50.0, 5.0, 0.0, 0.0), keep);
        assert_eq!(failed(&instance), None);
        // Killed; a new process dead-letters one message before the console reaches it.
        instance.record(102.0, unreachable(), keep);
        instance.record(106.0, worker(103.0, 1.0, 0.0, 0.0), keep);
        assert_eq!(failed(&instance), Some(1.0));
        // A blip: the same process, one dead-lettered message during the gap.
        instance.record(108.0, unreachable(), keep);
        instance.record(110.0, worker(103.0, 2.0, 0.0, 0.0), keep);
        assert_eq!(failed(&instance), Some(1.0));
        // A restart between two scrapes, the new counter already above the old one.
        instance.record(112.0, worker(111.0, 3.0, 0.0, 0.0), keep);
        assert_eq!(failed(&instance), Some(3.0));

        // Never reached before it started: all it counted is new.
        let mut late = Instance::new(target());
        late.record(100.0, unreachable(), keep);
        late.record(104.0, grpc(101.0, 7.0), keep);
        assert_eq!(late.latest().and_then(|p| p.get("errors")), Some(7.0));
        // order-grpc restarted: its errors before the first scrape count.
        late.record(106.0, grpc(101.0, 8.0), keep);
        assert_eq!(late.latest().and_then(|p| p.get("errors")), Some(1.0));
        late.record(108.0, unreachable(), keep);
        late.record(112.0, grpc(109.0, 6.0), keep);
        assert_eq!(late.latest().and_then(|p| p.get("errors")), Some(6.0));
    }

    #[test]
    fn a_process_started_after_the_console_began_watching_counts_from_zero() {
        let keep = Duration::from_secs(600);
        let mut instance = Instance::new(target());
        instance.record(
            100.0,
            ScrapeOutcome::Unreachable("connection refused".into()),
            keep,
        );
        instance.record(104.0, projector(101.0, 7.0), keep);
        assert_eq!(instance.sent_accumulated, 7.0);
    }
}

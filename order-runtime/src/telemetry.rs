//! Logging: JSON lines in the cloud (`LOG_FORMAT=json`), readable lines otherwise; levels
//! from `RUST_LOG` (default `info`).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

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
    INSTALLED.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let otel = crate::trace::provider(service).map(|provider| {
            use opentelemetry::trace::TracerProvider as _;
            tracing_opentelemetry::layer().with_tracer(provider.tracer("order-ledger"))
        });
        let fmt = tracing_subscriber::fmt::layer()
            .with_span_events(FmtSpan::NONE)
            .with_writer(std::io::stdout);
        let registry = tracing_subscriber::registry().with(filter).with(otel);
        let result = match format {
            LogFormat::Json => registry
                .with(
                    fmt.json()
                        .flatten_event(true)
                        .with_current_span(false)
                        .with_span_list(true),
                )
                .try_init(),
            LogFormat::Pretty => registry.with(fmt.compact()).try_init(),
        };
        // Another subscriber is already installed (a test harness): keep it.
        let _ = result;
    });
}

/// [`init`] under a generic service name (for tools and tests).
pub fn init_logging(format: LogFormat) {
    init("order-ledger", format);
}

/// The process-wide Prometheus recorder; `metrics::counter!` and friends record into it.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ])
            .map(PrometheusBuilder::build_recorder);
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

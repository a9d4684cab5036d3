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

/// Install the global subscriber once. Later calls (tests starting several apps) are no-ops.
pub fn init_logging(format: LogFormat) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_span_events(FmtSpan::NONE)
            .with_writer(std::io::stdout);
        let result = match format {
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .try_init(),
            LogFormat::Pretty => builder.compact().try_init(),
        };
        // Another subscriber is already installed (a test harness): keep it.
        let _ = result;
    });
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

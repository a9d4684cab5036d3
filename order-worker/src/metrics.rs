//! The worker's Prometheus metrics (served on the admin port's `/metrics`).
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `order_worker_messages_total` | `outcome` = ok, obsolete, retry, waiting, dlq | messages handled |
//! | `order_worker_dlq_sends_total` | | messages this worker sent to the DLQ |
//! | `order_worker_circuit_state` | `provider` | 0 closed, 1 half-open, 2 open |
//! | `order_worker_circuit_transitions_total` | `provider`, `state` | changes of a breaker's state |
//! | `order_worker_provider_calls_total` | `provider`, `operation`, `result` = ok, refused, rejected, transient, timeout, circuit_open | provider call attempts |
//! | `order_worker_provider_call_duration_seconds` | `provider`, `operation` | provider call latency |
//! | `order_worker_step_duration_seconds` | `step` | provider call plus command, per saga step |
//! | `order_worker_messages_in_flight` | | messages received and not yet finished |
//! | `order_worker_concurrency` | | messages it works on at once, at most (set or from the memory limit) |
//! | `order_worker_sent_again_total` | | messages sent again as new ones at their last receive (a provider outage or order-grpc refusing the worker itself, or deferred behind one) |
//! | `order_worker_sqs_errors_total` | `operation` | failed SQS calls (receive, delete, visibility, dlq, send_again) |
//! | `order_worker_failed_total` | `reason` = dead_lettered, dead_letter_failed, delete_failed | the worker's `FAILED` log lines, one each (what CloudWatch's WorkerFailedCount counts): a message dead-lettered, one that could not be, a delete given up (a batch's last attempt, or one message SQS refused) |

use std::time::Duration;

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Every step it asked for was done (or it asked for none).
    Ok,
    /// Its step was done before (a redelivery) or the order moved on.
    Obsolete,
    /// Left on the queue to be tried again after a backoff.
    Retry,
    /// Nothing failed but the step cannot finish yet (a parcel in transit): asked again later.
    Waiting,
    /// Sent to the dead-letter queue.
    Dlq,
}

impl MessageOutcome {
    /// Every outcome.
    pub const ALL: [Self; 5] = [
        Self::Ok,
        Self::Obsolete,
        Self::Retry,
        Self::Waiting,
        Self::Dlq,
    ];

    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Obsolete => "obsolete",
            Self::Retry => "retry",
            Self::Waiting => "waiting",
            Self::Dlq => "dlq",
        }
    }
}

/// Why the worker wrote a `FAILED` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// A message sent to the dead-letter queue.
    DeadLettered,
    /// A message that should have been dead-lettered and could not be (left for retry).
    DeadLetterFailed,
    /// A finished message's delete given up: a batch whose every attempt failed (one line
    /// for the batch), or a message SQS refused to delete (one line each).
    DeleteFailed,
}

impl Failed {
    /// Every reason.
    pub const ALL: [Self; 3] = [
        Self::DeadLettered,
        Self::DeadLetterFailed,
        Self::DeleteFailed,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeadLettered => "dead_lettered",
            Self::DeadLetterFailed => "dead_letter_failed",
            Self::DeleteFailed => "delete_failed",
        }
    }
}

/// Make every series visible (at zero) before the first message.
pub fn register() {
    // Install the recorder first: series touched before it exists are lost.
    order_runtime::telemetry::metrics();
    for outcome in MessageOutcome::ALL {
        metrics::counter!("order_worker_messages_total", "outcome" => outcome.as_str())
            .increment(0);
    }
    metrics::counter!("order_worker_dlq_sends_total").increment(0);
    for reason in Failed::ALL {
        metrics::counter!("order_worker_failed_total", "reason" => reason.as_str()).increment(0);
    }
    metrics::counter!("order_worker_sent_again_total").increment(0);
    metrics::gauge!("order_worker_messages_in_flight").set(0.0);
    for provider in ["inventory", "payment", "shipping"] {
        for state in ["open", "half-open", "closed"] {
            metrics::counter!(
                "order_worker_circuit_transitions_total",
                "provider" => provider,
                "state" => state
            )
            .increment(0);
        }
    }
}

pub fn message(outcome: MessageOutcome) {
    metrics::counter!("order_worker_messages_total", "outcome" => outcome.as_str()).increment(1);
}

pub fn sent_again() {
    metrics::counter!("order_worker_sent_again_total").increment(1);
}

pub fn dlq_send() {
    metrics::counter!("order_worker_dlq_sends_total").increment(1);
}

pub fn step(step: &'static str, took: Duration) {
    metrics::histogram!("order_worker_step_duration_seconds", "step" => step)
        .record(took.as_secs_f64());
}

pub fn in_flight(count: usize) {
    metrics::gauge!("order_worker_messages_in_flight").set(count as f64);
}

pub fn sqs_error(operation: &'static str) {
    metrics::counter!("order_worker_sqs_errors_total", "operation" => operation).increment(1);
}

/// One `FAILED` line written: counted where it is logged, once per line.
pub fn failed(reason: Failed) {
    metrics::counter!("order_worker_failed_total", "reason" => reason.as_str()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker's sources, by file name (every file that logs).
    const SOURCES: [(&str, &str); 11] = [
        ("api.rs", include_str!("api.rs")),
        ("breaker.rs", include_str!("breaker.rs")),
        ("consumer.rs", include_str!("consumer.rs")),
        ("main.rs", include_str!("main.rs")),
        ("process.rs", include_str!("process.rs")),
        ("saga.rs", include_str!("saga.rs")),
        ("startup.rs", include_str!("startup.rs")),
        ("providers/guard.rs", include_str!("providers/guard.rs")),
        ("providers/http.rs", include_str!("providers/http.rs")),
        ("providers/mod.rs", include_str!("providers/mod.rs")),
        (
            "providers/simulated.rs",
            include_str!("providers/simulated.rs"),
        ),
    ];

    /// The statements of `source` that log a `FAILED` line (a tracing macro with `FAILED` in
    /// its message; comments aside), each as its first line's index and its text.
    fn failed_lines(source: &str) -> Vec<(usize, String)> {
        let lines: Vec<&str> = source.lines().collect();
        let mut found = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            if lines[i].contains("tracing::") && lines[i].contains("!(") {
                let start = i;
                let mut text = String::new();
                loop {
                    let line = lines[i];
                    if !line.trim_start().starts_with("//") {
                        text.push_str(line);
                        text.push('\n');
                    }
                    if line.trim_end().ends_with(");") || i + 1 == lines.len() {
                        break;
                    }
                    i += 1;
                }
                if text.contains("FAILED") {
                    found.push((start, text));
                }
            }
            i += 1;
        }
        found
    }

    /// Every `FAILED` line the worker writes is counted right before it is written, once, under
    /// its reason, and the counter moves nowhere else: `order_worker_failed_total` is what
    /// CloudWatch's WorkerFailedCount counts of the worker's log.
    #[test]
    fn the_failed_counter_moves_exactly_where_a_failed_line_is_logged() {
        let mut sites = 0;
        for (file, source) in SOURCES {
            let lines: Vec<&str> = source.lines().collect();
            let logged = failed_lines(source);
            for (start, text) in &logged {
                let before = lines[..*start]
                    .iter()
                    .rev()
                    .map(|l| l.trim())
                    .find(|l| !l.is_empty() && !l.starts_with("//"))
                    .unwrap_or_default();
                assert!(
                    before.starts_with("metrics::failed(metrics::Failed::"),
                    "{file}:{}: a FAILED line without its count right before it: {text}",
                    start + 1
                );
            }
            let counted = source.matches("metrics::failed(").count();
            assert_eq!(
                counted,
                logged.len(),
                "{file}: the FAILED counter moves at {counted} places, FAILED is logged at {}",
                logged.len()
            );
            sites += logged.len();
        }
        // Dead-lettered, could not be dead-lettered, a batch given up, a message refused.
        assert_eq!(sites, 4, "the FAILED lines the worker writes");
    }

    /// `failed` moves its reason's series by one and no other.
    #[test]
    fn each_failed_line_counts_once_under_its_reason() {
        register();
        let value = |reason: Failed| {
            let text = order_runtime::telemetry::metrics().render();
            let series = format!(
                "order_worker_failed_total{{reason=\"{}\"}} ",
                reason.as_str()
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&series))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        let before = Failed::ALL.map(value);
        assert!(before.iter().all(Option::is_some), "registered: {before:?}");
        failed(Failed::DeleteFailed);
        let after = Failed::ALL.map(value);
        for (i, reason) in Failed::ALL.into_iter().enumerate() {
            let moved = after[i].unwrap_or_default() - before[i].unwrap_or_default();
            let expected = if reason == Failed::DeleteFailed {
                1.0
            } else {
                0.0
            };
            assert_eq!(moved, expected, "{reason:?}");
        }
    }
}

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

/// Make every series visible (at zero) before the first message.
pub fn register() {
    // Install the recorder first: series touched before it exists are lost.
    order_runtime::telemetry::metrics();
    for outcome in MessageOutcome::ALL {
        metrics::counter!("order_worker_messages_total", "outcome" => outcome.as_str())
            .increment(0);
    }
    metrics::counter!("order_worker_dlq_sends_total").increment(0);
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

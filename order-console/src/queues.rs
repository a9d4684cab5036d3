//! The orders queue and its dead-letter queue: depths on every scrape, and the DLQ's messages
//! read without being removed (received with a visibility timeout of 0, so they stay visible;
//! the DLQ has no redrive policy, so its receive counts decide nothing).
//!
//! SQS's API has no "age of the oldest message" (CloudWatch computes it). The console
//! estimates it the way a FIFO drains: the oldest message still queued is the one sent when
//! the projector's sent counter stood at (sent now - messages queued now); the time of that
//! count is read from the console's own history ([`oldest_age`]).

use std::collections::VecDeque;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

impl QueuePoint {
    /// Messages in the DLQ: visible and in flight. Nothing but a look receives from the DLQ,
    /// and a look with visibility timeout 0 leaves its messages in flight on some emulators
    /// (fauxqs counts them as not visible until their next receive): a message in flight is
    /// still there.
    pub fn dlq_messages(&self) -> Option<f64> {
        match (self.dlq_visible, self.dlq_in_flight) {
            (None, None) => None,
            (visible, in_flight) => Some(visible.unwrap_or(0.0) + in_flight.unwrap_or(0.0)),
        }
    }
}

/// One reading of both queues.
#[derive(Debug, Clone, Default)]
pub struct QueuePoint {
    /// When (Unix seconds).
    pub t: f64,
    /// Orders queue: visible messages (None: not configured or unreachable).
    pub visible: Option<f64>,
    /// Orders queue: received and not yet deleted.
    pub in_flight: Option<f64>,
    /// DLQ: visible messages.
    pub dlq_visible: Option<f64>,
    /// DLQ: in flight.
    pub dlq_in_flight: Option<f64>,
    /// Messages every projector sent so far (console's count, restarts included).
    pub sent_total: Option<f64>,
    /// Estimated age of the oldest orders message, seconds, and whether it is only a lower
    /// bound (the message is older than the history).
    pub oldest_age: Option<(f64, bool)>,
}

/// Depths of one queue.
#[derive(Debug, Clone, Copy)]
pub struct Depth {
    /// Visible.
    pub visible: f64,
    /// In flight.
    pub in_flight: f64,
}

/// Read a queue's approximate depths.
pub async fn depth(client: &aws_sdk_sqs::Client, url: &str) -> Result<Depth, String> {
    let answer = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| format!("sqs: {}", order_runtime::sqs::describe(&e)))?;
    let read = |name: QueueAttributeName| -> f64 {
        answer
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    Ok(Depth {
        visible: read(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    })
}

/// The oldest-message age estimate: `history` oldest first, ending with the reading being
/// made (`queued` messages now, `sent_now` sent so far). See the module documentation.
pub fn oldest_age(
    history: &VecDeque<QueuePoint>,
    now: f64,
    queued: f64,
    sent_now: f64,
) -> (f64, bool) {
    if queued <= 0.0 {
        return (0.0, false);
    }
    let target = sent_now - queued;
    // The first reading at which more than `target` messages had been sent: the oldest queued
    // message was sent by then.
    let first_after = history
        .iter()
        .find(|p| p.sent_total.is_some_and(|sent| sent > target));
    let estimate = match (first_after, history.front()) {
        (Some(point), Some(front)) if point.t > front.t => ((now - point.t).max(0.0), false),
        // Older than everything the console has seen.
        (_, Some(front)) => ((now - front.t).max(0.0), true),
        (_, None) => (0.0, true),
    };
    // Every message queued now was sent after the queue was last seen empty: the sent count
    // (read by another loop, and only as often as the projectors are scraped) may lag.
    let last_empty = history.iter().rev().find(|p| {
        p.t < now
            && p.visible
                .zip(p.in_flight)
                .is_some_and(|(v, f)| v + f <= 0.0)
    });
    match last_empty {
        Some(empty) if now - empty.t < estimate.0 => ((now - empty.t).max(0.0), false),
        _ => estimate,
    }
}

/// A dead-lettered message, as read.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// SQS message id.
    pub message_id: String,
    /// `dlq_kind` (absent: SQS moved it after maxReceiveCount).
    pub kind: Option<String>,
    /// `dlq_reason`.
    pub reason: Option<String>,
    /// The message group: the order.
    pub order: Option<String>,
    /// The CloudEvent's `type`, when the body parses.
    pub event_type: Option<String>,
    /// Sent (Unix seconds).
    pub sent_at: Option<f64>,
    /// How often it was received.
    pub receive_count: Option<u64>,
    /// The body (at most 4,000 characters).
    pub body: String,
}

/// Read up to 10 messages of the DLQ, leaving them there (visibility timeout 0).
pub async fn peek(client: &aws_sdk_sqs::Client, url: &str) -> Result<Vec<DeadLetter>, String> {
    let answer = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .wait_time_seconds(0)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| format!("sqs: {}", order_runtime::sqs::describe(&e)))?;
    let mut out = Vec::new();
    for message in answer.messages() {
        let attribute = |name: &str| {
            message
                .message_attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.string_value())
                .map(str::to_owned)
        };
        let system = |name: MessageSystemAttributeName| {
            message.attributes().and_then(|a| a.get(&name)).cloned()
        };
        let body = message.body().unwrap_or_default();
        let event_type = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
        out.push(DeadLetter {
            message_id: message.message_id().unwrap_or_default().to_owned(),
            kind: attribute("dlq_kind"),
            reason: attribute("dlq_reason"),
            order: system(MessageSystemAttributeName::MessageGroupId),
            event_type,
            sent_at: system(MessageSystemAttributeName::SentTimestamp)
                .and_then(|ms| ms.parse::<f64>().ok())
                .map(|ms| ms / 1000.0),
            receive_count: system(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|n| n.parse().ok()),
            body: body.chars().take(4000).collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_a_look_left_in_flight_is_still_in_the_dlq() {
        let point = |visible, in_flight| QueuePoint {
            dlq_visible: visible,
            dlq_in_flight: in_flight,
            ..QueuePoint::default()
        };
        assert_eq!(point(Some(0.0), Some(3.0)).dlq_messages(), Some(3.0));
        assert_eq!(point(Some(2.0), Some(1.0)).dlq_messages(), Some(3.0));
        assert_eq!(point(Some(0.0), Some(0.0)).dlq_messages(), Some(0.0));
        assert_eq!(point(None, None).dlq_messages(), None);
    }

    fn point(t: f64, sent: f64) -> QueuePoint {
        QueuePoint {
            t,
            sent_total: Some(sent),
            ..QueuePoint::default()
        }
    }

    #[test]
    fn the_oldest_message_is_the_one_sent_when_the_count_stood_below_the_backlog() {
        let history: VecDeque<QueuePoint> = [
            point(0.0, 0.0),
            point(10.0, 5.0),
            point(20.0, 10.0),
            point(30.0, 15.0),
        ]
        .into();
        // 15 sent, 6 queued: the 10th message (sent by t=20) is the oldest queued.
        assert_eq!(oldest_age(&history, 30.0, 6.0, 15.0), (10.0, false));
        // Empty queue: no age.
        assert_eq!(oldest_age(&history, 30.0, 0.0, 15.0), (0.0, false));
        // More queued than ever counted: at least as old as the history.
        assert_eq!(oldest_age(&history, 30.0, 40.0, 15.0), (30.0, true));
    }

    /// The sent count lags the queue (read by another loop): at the start of a burst after an
    /// idle queue, the estimate never exceeds the time since the queue was last seen empty.
    #[test]
    fn the_estimate_is_never_older_than_the_queue_last_seen_empty() {
        let empty = |t: f64| QueuePoint {
            visible: Some(0.0),
            in_flight: Some(0.0),
            ..point(t, 100.0)
        };
        let mut history: VecDeque<QueuePoint> = (0..=45).map(|t| empty(f64::from(t))).collect();
        // 30 messages queued at t=46; the sent count read with them is still the idle one.
        history.push_back(QueuePoint {
            visible: Some(30.0),
            in_flight: Some(0.0),
            ..point(46.0, 100.0)
        });
        let (age, lower_bound) = oldest_age(&history, 46.0, 30.0, 100.0);
        assert!(
            age <= 1.0,
            "{age} s: older than the queue's last empty reading"
        );
        assert!(!lower_bound);
    }
}

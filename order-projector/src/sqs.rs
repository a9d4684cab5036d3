//! The SQS publisher: each event as a CloudEvents message on the FIFO queue, group id = order
//! id, deduplication id = event id, in `SendMessageBatch` calls of up to 10.
//!
//! Order per order (message group) is kept: a page's messages are split into lanes by order
//! id; a lane sends its batches one after another, and a batch never holds two messages of
//! one order, so a failed entry can be retried without overtaking or being overtaken by
//! another message of its order. Lanes run concurrently. The caller advances the checkpoint
//! only after every entry of the page was acknowledged; entries that failed are retried with
//! backoff, entries that succeeded are never sent again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use order_domain::EventSchema;
use order_domain::order::OrderEvent;
use order_messages::{
    ATTR_CORRELATION_ID, ATTR_EVENT_TYPE, ATTR_TRACEPARENT, CloudEvent, EnvelopeInput,
};
use order_store::RecordedEvent;
use tokio::sync::watch;

/// Most entries per SendMessageBatch (an SQS limit).
const MAX_BATCH_ENTRIES: usize = 10;
/// Most bytes of bodies and attributes per batch (SQS allows 256 KiB).
const MAX_BATCH_BYTES: usize = 240 * 1024;

/// One message ready to send.
#[derive(Debug, Clone)]
pub struct Message {
    pub group_id: String,
    pub dedup_id: String,
    pub body: String,
    pub attributes: Vec<(&'static str, String)>,
}

impl Message {
    fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len() + 8)
                .sum::<usize>()
    }

    /// The message of one event; `data` is the event at its current schema version.
    pub fn of(event: &RecordedEvent, decoded: &OrderEvent) -> Result<Self, order_store::Error> {
        let data = decoded.encode()?;
        let metadata = &event.metadata;
        // With tracing on, publishing is a span in the producing command's trace, and the
        // message carries that span's context on to the worker.
        let (traceparent, _) = if order_runtime::trace::enabled() {
            let span = tracing::info_span!(
                "publish",
                otel.name = "orders.fifo publish",
                otel.kind = "producer",
                messaging.system = "aws_sqs",
                order_id = %event.stream_id,
                event_type = %event.event_type,
            );
            order_runtime::trace::set_parent(
                &span,
                metadata.traceparent.as_deref(),
                metadata.tracestate.as_deref(),
            );
            order_runtime::trace::outgoing(&span, metadata.traceparent.as_deref(), None)
        } else {
            (metadata.traceparent.clone(), None)
        };
        let envelope = CloudEvent::new(EnvelopeInput {
            event_id: event.event_id,
            event_type: &event.event_type,
            order_id: event.stream_id,
            recorded_at: event.recorded_at,
            global_position: event.global_position,
            stream_version: event.stream_version,
            schema_version: decoded.schema_version(),
            correlation_id: metadata.correlation_id.as_deref(),
            traceparent: traceparent.as_deref(),
            data,
        });
        let mut attributes = vec![(ATTR_EVENT_TYPE, event.event_type.clone())];
        if let Some(correlation) = metadata.correlation_id.as_ref().filter(|c| !c.is_empty()) {
            attributes.push((ATTR_CORRELATION_ID, correlation.clone()));
        }
        if let Some(traceparent) = traceparent.filter(|t| !t.is_empty()) {
            attributes.push((ATTR_TRACEPARENT, traceparent));
        }
        Ok(Self {
            group_id: event.stream_id.to_string(),
            dedup_id: event.event_id.to_string(),
            body: envelope.to_body(),
            attributes,
        })
    }
}

/// A failed attempt to send: what went wrong, and whether SQS blamed the message itself
/// (`SenderFault`: retrying the same message will not help until someone acts).
#[derive(Debug, Clone)]
pub struct SendFailure {
    pub text: String,
    pub sender_fault: bool,
}

/// Split messages (in log order) into batches for one lane: at most 10 entries and
/// [`MAX_BATCH_BYTES`] each, each message group at most once per batch, and every message
/// in a later batch than the previous message of its group.
pub fn batches(messages: Vec<Message>) -> Vec<Vec<Message>> {
    let mut batches: Vec<(Vec<Message>, usize)> = Vec::new();
    let mut last_batch_of: HashMap<String, usize> = HashMap::new();
    for message in messages {
        let earliest = last_batch_of.get(&message.group_id).map_or(0, |b| b + 1);
        let size = message.size();
        let slot = (earliest..batches.len()).find(|&i| {
            let (batch, bytes) = &batches[i];
            batch.len() < MAX_BATCH_ENTRIES && bytes + size <= MAX_BATCH_BYTES
        });
        let index = match slot {
            Some(index) => index,
            None => {
                batches.push((Vec::new(), 0));
                batches.len() - 1
            }
        };
        last_batch_of.insert(message.group_id.clone(), index);
        let (batch, bytes) = &mut batches[index];
        *bytes += size;
        batch.push(message);
    }
    batches.into_iter().map(|(batch, _)| batch).collect()
}

/// Why publishing stopped before every message was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publishing stopped: shutting down")]
    ShuttingDown,
}

/// Sends pages of events to one queue.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: Client,
    queue_url: String,
    lanes: usize,
}

impl Publisher {
    pub fn new(client: Client, queue_url: String, lanes: usize) -> Self {
        Self {
            client,
            queue_url,
            lanes: lanes.max(1),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Send every message and wait until SQS acknowledged each of them (retrying failures
    /// with backoff), or until shutdown. `on_error` sees every failure as it happens.
    pub async fn publish(
        &self,
        messages: Vec<Message>,
        shutdown: &watch::Receiver<bool>,
        on_error: &(dyn Fn(&SendFailure) + Sync),
    ) -> Result<usize, PublishError> {
        let total = messages.len();
        let mut lanes: Vec<Vec<Message>> = vec![Vec::new(); self.lanes];
        for message in messages {
            let lane = lane_of(&message.group_id, self.lanes);
            lanes[lane].push(message);
        }
        let sends = lanes
            .into_iter()
            .filter(|lane| !lane.is_empty())
            .map(|lane| self.send_lane(lane, shutdown.clone(), on_error));
        for result in futures::future::join_all(sends).await {
            result?;
        }
        Ok(total)
    }

    async fn send_lane(
        &self,
        messages: Vec<Message>,
        shutdown: watch::Receiver<bool>,
        on_error: &(dyn Fn(&SendFailure) + Sync),
    ) -> Result<(), PublishError> {
        for batch in batches(messages) {
            self.send_batch(batch, &shutdown, on_error).await?;
        }
        Ok(())
    }

    /// Send one batch until every entry is acknowledged.
    async fn send_batch(
        &self,
        mut pending: Vec<Message>,
        shutdown: &watch::Receiver<bool>,
        on_error: &(dyn Fn(&SendFailure) + Sync),
    ) -> Result<(), PublishError> {
        let mut attempt = 0u32;
        while !pending.is_empty() {
            if *shutdown.borrow() {
                return Err(PublishError::ShuttingDown);
            }
            let entries: Vec<SendMessageBatchRequestEntry> = pending
                .iter()
                .enumerate()
                .filter_map(|(index, message)| entry(index, message))
                .collect();
            let started = Instant::now();
            let result = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            metrics::histogram!("order_sqs_batch_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(output) => {
                    let failed: HashMap<String, String> = output
                        .failed()
                        .iter()
                        .map(|f| {
                            (
                                f.id().to_owned(),
                                format!("{} {}", f.code(), f.message().unwrap_or_default()),
                            )
                        })
                        .collect();
                    let sent = pending.len() - failed.len();
                    metrics::counter!("order_sqs_messages_sent_total").increment(sent as u64);
                    if failed.is_empty() {
                        return Ok(());
                    }
                    metrics::counter!("order_sqs_send_failures_total")
                        .increment(failed.len() as u64);
                    let reasons: Vec<&String> = failed.values().collect();
                    on_error(&SendFailure {
                        text: format!(
                            "SQS refused {} of {} messages: {reasons:?}",
                            failed.len(),
                            pending.len()
                        ),
                        sender_fault: output.failed().iter().any(|f| f.sender_fault()),
                    });
                    pending = pending
                        .into_iter()
                        .enumerate()
                        .filter(|(index, _)| failed.contains_key(&index.to_string()))
                        .map(|(_, message)| message)
                        .collect();
                }
                Err(error) => {
                    metrics::counter!("order_sqs_send_failures_total")
                        .increment(pending.len() as u64);
                    on_error(&SendFailure {
                        text: format!(
                            "SendMessageBatch failed: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(&error)
                        ),
                        sender_fault: false,
                    });
                }
            }
            attempt += 1;
            let delay = backoff(attempt);
            let mut shutdown = shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|stop| *stop) => return Err(PublishError::ShuttingDown),
            }
        }
        Ok(())
    }
}

fn entry(index: usize, message: &Message) -> Option<SendMessageBatchRequestEntry> {
    let mut builder = SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(&message.body)
        .message_group_id(&message.group_id)
        .message_deduplication_id(&message.dedup_id);
    for (name, value) in &message.attributes {
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .ok()?;
        builder = builder.message_attributes(*name, attribute);
    }
    builder.build().ok()
}

fn lane_of(group: &str, lanes: usize) -> usize {
    // FNV-1a: stable across processes, so a group always maps to the same lane.
    let hash = group.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (hash % lanes as u64) as usize
}

/// Exponential backoff from 100 ms to 10 s with jitter.
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
    let jitter = u64::from(uuid::Uuid::new_v4().as_u128() as u16) % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(group: &str, n: usize, size: usize) -> Message {
        Message {
            group_id: group.to_owned(),
            dedup_id: format!("{group}-{n}"),
            body: "x".repeat(size),
            attributes: vec![],
        }
    }

    #[test]
    fn batches_keep_each_groups_order_and_respect_the_limits() {
        let mut messages = Vec::new();
        for n in 0..7 {
            for group in ["a", "b", "c"] {
                messages.push(message(group, n, 100));
            }
        }
        messages.extend((0..25).map(|n| message(&format!("solo{n}"), 0, 100)));
        let batches = batches(messages);
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, batch) in batches.iter().enumerate() {
            assert!(batch.len() <= MAX_BATCH_ENTRIES);
            let mut groups: Vec<&str> = batch.iter().map(|m| m.group_id.as_str()).collect();
            groups.sort_unstable();
            let count = groups.len();
            groups.dedup();
            assert_eq!(groups.len(), count, "a group twice in batch {index}");
            for m in batch {
                let n: usize = m.dedup_id.rsplit('-').next().unwrap().parse().unwrap();
                let expected = seen.get(&m.group_id).map_or(0, |last| last + 1);
                assert_eq!(n, expected, "group {} out of order", m.group_id);
                seen.insert(m.group_id.clone(), n);
            }
        }
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 46);
        assert!(
            batches.len() <= 7,
            "solo messages fill the gaps: {} batches",
            batches.len()
        );
    }

    #[test]
    fn batches_respect_the_byte_limit() {
        let messages: Vec<Message> = (0..10)
            .map(|n| message(&format!("g{n}"), 0, 60 * 1024))
            .collect();
        for batch in batches(messages) {
            assert!(batch.iter().map(Message::size).sum::<usize>() <= MAX_BATCH_BYTES);
        }
    }

    #[test]
    fn lanes_are_stable_and_spread() {
        assert_eq!(lane_of("order-1", 8), lane_of("order-1", 8));
        let used: std::collections::HashSet<usize> = (0..100)
            .map(|n| lane_of(&format!("order-{n}"), 8))
            .collect();
        assert_eq!(used.len(), 8);
    }
}

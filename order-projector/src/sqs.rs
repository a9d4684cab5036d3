//! The SQS publisher: each event as a CloudEvents message on the FIFO queue, group id = order
//! id, deduplication id = event id, in `SendMessageBatch` calls of up to 10: the second sink
//! built on the public API ([`Sink`]), with no private path.
//!
//! Order per order (message group) is kept: a page's messages are split into lanes by order
//! id; a lane sends its batches one after another, and a batch never holds two messages of
//! one order. A lane stops at its first batch with a failure, so a failed entry is retried
//! (by the projector, after a backoff, with exactly the messages not acknowledged) without
//! overtaking or being overtaken by another message of its order. Lanes run concurrently. The
//! checkpoint moves only after every entry of the page was acknowledged; entries that
//! succeeded are never sent again.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use order_domain::EventSchema;
use order_domain::Order;
use order_domain::order::OrderEvent;
use order_messages::{
    ATTR_CORRELATION_ID, ATTR_EVENT_TYPE, ATTR_TRACEPARENT, CloudEvent, EnvelopeInput,
};
use order_store::RecordedEvent;

use crate::projection::{Categories, Page};
use crate::sink::{Failure, Sink, Undelivered};

/// The SQS publisher's subscription name.
pub const SQS_PUBLISHER: &str = "sqs_publisher";

/// Most entries per SendMessageBatch (an SQS limit).
const MAX_BATCH_ENTRIES: usize = 10;
/// Most bytes of bodies and attributes per batch (SQS allows 256 KiB).
const MAX_BATCH_BYTES: usize = 240 * 1024;

/// One message ready to send.
#[derive(Debug, Clone)]
pub struct Message {
    /// `MessageGroupId`: the order id (per-order ordering).
    pub group_id: String,
    /// `MessageDeduplicationId`: the event id.
    pub dedup_id: String,
    /// The CloudEvents JSON body.
    pub body: String,
    /// Message attributes (event type, correlation id, traceparent).
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
        let (traceparent, tracestate) = if order_runtime::trace::enabled() {
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
            order_runtime::trace::outgoing(
                &span,
                metadata.traceparent.as_deref(),
                metadata.tracestate.as_deref(),
            )
        } else {
            order_runtime::trace::pass_through(
                metadata.traceparent.as_deref(),
                metadata.tracestate.as_deref(),
            )
        };
        let mut envelope = CloudEvent::new(EnvelopeInput {
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
        // W3C trace context travels as a pair: the vendors' `tracestate` with its
        // `traceparent` (the CloudEvents distributed-tracing extension names both).
        if let Some(tracestate) = tracestate.filter(|t| !t.is_empty())
            && traceparent.as_deref().is_some_and(|t| !t.is_empty())
        {
            envelope.extensions.insert(
                order_messages::EXT_TRACESTATE.to_owned(),
                serde_json::Value::String(tracestate),
            );
        }
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

/// Split a lane's messages (indexes into `messages`, in log order) into batches: at most 10
/// entries and [`MAX_BATCH_BYTES`] each, each message group at most once per batch, and every
/// message in a later batch than the previous message of its group.
fn batches(lane: Vec<usize>, messages: &[Message]) -> Vec<Vec<usize>> {
    let mut batches: Vec<(Vec<usize>, usize)> = Vec::new();
    let mut last_batch_of: HashMap<&str, usize> = HashMap::new();
    for index in lane {
        let message = &messages[index];
        let earliest = last_batch_of
            .get(message.group_id.as_str())
            .map_or(0, |b| b + 1);
        let size = message.size();
        let slot = (earliest..batches.len()).find(|&i| {
            let (batch, bytes) = &batches[i];
            batch.len() < MAX_BATCH_ENTRIES && bytes + size <= MAX_BATCH_BYTES
        });
        let slot = match slot {
            Some(slot) => slot,
            None => {
                batches.push((Vec::new(), 0));
                batches.len() - 1
            }
        };
        last_batch_of.insert(&message.group_id, slot);
        let (batch, bytes) = &mut batches[slot];
        *bytes += size;
        batch.push(index);
    }
    batches.into_iter().map(|(batch, _)| batch).collect()
}

/// What one attempt to send a set of messages achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// Per message (in the order given): whether SQS acknowledged it.
    pub acknowledged: Vec<bool>,
    /// The first failure, when not everything was acknowledged.
    pub failure: Option<String>,
    /// Whether SQS blamed a message itself (`SenderFault`: retrying the same message will not
    /// help until someone acts).
    pub sender_fault: bool,
}

/// Sends messages to one queue.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: Client,
    queue_url: String,
    lanes: usize,
}

impl Publisher {
    /// A publisher to `queue_url` with `lanes` concurrent send lanes.
    pub fn new(client: Client, queue_url: String, lanes: usize) -> Self {
        Self {
            client,
            queue_url,
            lanes: lanes.max(1),
        }
    }

    /// The SQS client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Send every message once (lanes concurrently, each lane's batches in order, a lane
    /// stopping at its first failure) and report which SQS acknowledged.
    pub async fn send(&self, messages: &[Message]) -> Sent {
        let mut lanes: Vec<Vec<usize>> = vec![Vec::new(); self.lanes];
        for (index, message) in messages.iter().enumerate() {
            lanes[lane_of(&message.group_id, self.lanes)].push(index);
        }
        let sends = lanes
            .into_iter()
            .filter(|lane| !lane.is_empty())
            .map(|lane| self.send_lane(messages, lane));
        let mut sent = Sent {
            acknowledged: vec![false; messages.len()],
            failure: None,
            sender_fault: false,
        };
        for (acknowledged, failure) in futures::future::join_all(sends).await {
            for index in acknowledged {
                sent.acknowledged[index] = true;
            }
            if let Some((text, sender_fault)) = failure {
                // The reason logged with a refusal is a refusal's, not another lane's outage.
                if sender_fault && !sent.sender_fault {
                    sent.failure = Some(text);
                } else {
                    sent.failure.get_or_insert(text);
                }
                sent.sender_fault |= sender_fault;
            }
        }
        sent
    }

    /// One lane: its batches in order until one fails. Returns the indexes acknowledged and
    /// the failure, if any.
    async fn send_lane(
        &self,
        messages: &[Message],
        lane: Vec<usize>,
    ) -> (Vec<usize>, Option<(String, bool)>) {
        let mut acknowledged = Vec::with_capacity(lane.len());
        for batch in batches(lane, messages) {
            let (ok, failure) = self.send_batch(messages, &batch).await;
            acknowledged.extend(ok);
            if failure.is_some() {
                return (acknowledged, failure);
            }
        }
        (acknowledged, None)
    }

    /// One `SendMessageBatch`: the indexes acknowledged, and the failure if not all were.
    async fn send_batch(
        &self,
        messages: &[Message],
        batch: &[usize],
    ) -> (Vec<usize>, Option<(String, bool)>) {
        let entries: Vec<SendMessageBatchRequestEntry> = batch
            .iter()
            .enumerate()
            .filter_map(|(position, &index)| entry(position, &messages[index]))
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
                // Acknowledged: what SQS says it took, and nothing else (a message left out of
                // the request, or one SQS's answer does not name, was not sent).
                let successful: HashSet<&str> =
                    output.successful().iter().map(|s| s.id()).collect();
                let ok: Vec<usize> = batch
                    .iter()
                    .enumerate()
                    .filter(|(position, _)| {
                        let id = position.to_string();
                        successful.contains(id.as_str()) && !failed.contains_key(&id)
                    })
                    .map(|(_, &index)| index)
                    .collect();
                metrics::counter!("order_sqs_messages_sent_total").increment(ok.len() as u64);
                if ok.len() == batch.len() {
                    return (ok, None);
                }
                let unsent = batch.len() - ok.len();
                metrics::counter!("order_sqs_send_failures_total").increment(unsent as u64);
                let reasons: Vec<&String> = failed.values().collect();
                let mut text = format!(
                    "SQS refused {} of {} messages: {reasons:?}",
                    failed.len(),
                    batch.len()
                );
                if unsent > failed.len() {
                    text.push_str(&format!(
                        "; {} neither taken nor refused",
                        unsent - failed.len()
                    ));
                }
                (
                    ok,
                    Some((text, output.failed().iter().any(|f| f.sender_fault()))),
                )
            }
            Err(error) => {
                metrics::counter!("order_sqs_send_failures_total").increment(batch.len() as u64);
                let text = format!(
                    "SendMessageBatch failed: {}",
                    order_runtime::sqs::describe(&error)
                );
                // A request SQS refused as such (a queue that does not exist, a missing
                // permission): an ERROR, counted `refused`; still retried, nothing is skipped.
                (
                    Vec::new(),
                    Some((text, order_runtime::sqs::refused(&error))),
                )
            }
        }
    }

    /// Whether the queue answers (readiness).
    pub async fn check(&self) -> Result<(), String> {
        let check = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send();
        match tokio::time::timeout(Duration::from_secs(3), check).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "sqs: the queue {}: {}",
                self.queue_url,
                order_runtime::sqs::describe(&e)
            )),
            Err(_) => Err("sqs: no answer within 3 s".to_owned()),
        }
    }
}

/// The SQS publisher as a sink: the order events of the log, as CloudEvents, on one FIFO queue.
#[derive(Debug, Clone)]
pub struct SqsPublisher {
    publisher: Publisher,
    name: String,
    page: u32,
}

impl SqsPublisher {
    /// The sink `sqs_publisher` over `publisher`, pages of 500 events.
    pub fn new(publisher: Publisher) -> Self {
        Self {
            publisher,
            name: SQS_PUBLISHER.to_owned(),
            page: 500,
        }
    }

    /// Events per page (per checkpoint).
    pub fn page(mut self, page: u32) -> Self {
        self.page = page;
        self
    }

    /// Another subscription name (a second queue, say).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// The publisher it sends with.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }
}

impl Sink for SqsPublisher {
    type Event = OrderEvent;

    fn name(&self) -> &str {
        &self.name
    }

    fn categories(&self) -> Categories {
        Categories::of::<Order>()
    }

    fn page_size(&self) -> u32 {
        self.page
    }

    async fn deliver(&self, page: &Page<OrderEvent>) -> Result<(), Undelivered> {
        // Imported history (order-import) has no side effects: it is never sent, so the worker
        // never runs a saga step for it. `sent_of[i]` is the page index of message i.
        let sent_of: Vec<usize> = page
            .iter()
            .enumerate()
            .filter(|(_, e)| e.recorded.imported_from.is_none())
            .map(|(index, _)| index)
            .collect();
        if sent_of.is_empty() {
            return Ok(());
        }
        let messages = sent_of
            .iter()
            .map(|&index| {
                let e = &page.events()[index];
                Message::of(&e.recorded, &e.event)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Undelivered::all(Failure::Invalid, e.to_string()))?;
        let sent = self.publisher.send(&messages).await;
        let Some(failure) = sent.failure else {
            return Ok(());
        };
        let pending: Vec<usize> = sent
            .acknowledged
            .iter()
            .zip(&sent_of)
            .filter(|(ok, _)| !**ok)
            .map(|(_, &index)| index)
            .collect();
        let kind = if sent.sender_fault {
            Failure::Refused
        } else {
            Failure::Transient
        };
        Err(Undelivered::some(pending, kind, failure))
    }

    async fn ready(&self) -> Result<(), String> {
        self.publisher.check().await
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
        let batches: Vec<Vec<&Message>> = batches((0..messages.len()).collect(), &messages)
            .into_iter()
            .map(|b| b.into_iter().map(|i| &messages[i]).collect())
            .collect();
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

    fn delivered(traceparent: Option<&str>, tracestate: Option<&str>) -> RecordedEvent {
        RecordedEvent {
            global_position: 7,
            transaction_id: order_store::Xid8(700),
            stream_id: uuid::Uuid::from_u128(1),
            stream_version: 5,
            event_id: uuid::Uuid::from_u128(2),
            event_type: "OrderDelivered".to_owned(),
            schema_version: 1,
            payload: serde_json::json!({}),
            metadata: order_domain::Metadata {
                traceparent: traceparent.map(str::to_owned),
                tracestate: tracestate.map(str::to_owned),
                ..order_domain::Metadata::default()
            },
            recorded_at: std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            category: "order".to_owned(),
            imported_from: None,
        }
    }

    /// The W3C trace context travels as a pair: the `tracestate` a request came with reaches
    /// the worker with its `traceparent` (a `tracestate` without one means nothing, and is not
    /// sent).
    #[test]
    fn the_tracestate_goes_with_the_traceparent() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let decoded = OrderEvent::OrderDelivered(order_domain::order::OrderDelivered {});
        for (traceparent, tracestate, expected) in [
            (Some(parent), Some("vendor=abc"), Some("vendor=abc")),
            (Some(parent), None, None),
            (None, Some("vendor=abc"), None),
        ] {
            let message = Message::of(&delivered(traceparent, tracestate), &decoded).unwrap();
            let envelope = CloudEvent::parse(&message.body).unwrap();
            assert_eq!(envelope.traceparent.as_deref(), traceparent);
            assert_eq!(
                envelope.tracestate(),
                expected,
                "{traceparent:?} {tracestate:?}"
            );
        }
    }

    #[test]
    fn batches_respect_the_byte_limit() {
        let messages: Vec<Message> = (0..10)
            .map(|n| message(&format!("g{n}"), 0, 60 * 1024))
            .collect();
        for batch in batches((0..messages.len()).collect(), &messages) {
            assert!(batch.iter().map(|&i| messages[i].size()).sum::<usize>() <= MAX_BATCH_BYTES);
        }
    }

    #[test]
    fn lanes_are_stable_and_spread() {
        assert_eq!(lane_of("order-1", 8), lane_of("order-1", 8));
        let used: HashSet<usize> = (0..100)
            .map(|n| lane_of(&format!("order-{n}"), 8))
            .collect();
        assert_eq!(used.len(), 8);
    }
}

//! The SQS side: long-poll the orders queue, hand messages to the [`Processor`] with bounded
//! concurrency, keep them invisible while they are worked on, and settle each one: delete it
//! (batched) after success, make it reappear after a backoff on a transient failure, or send
//! it to the dead-letter queue and delete it on a permanent one.
//!
//! Messages of one order (one FIFO message group) received together are handled one after
//! another, in order; if one is left for retry, the later ones are released unprocessed so
//! that they come back after it.
//!
//! **DLQ message format.** The original body, unchanged (so it can be redriven), in the same
//! message group, with deduplication id = the original SQS message id (stable across
//! redeliveries, so a crash between the DLQ send and the delete does not dead-letter twice).
//! Message attributes: the original ones (`correlation_id`, `traceparent`, `event_type`) plus
//! `dlq_reason` (why, at most 1,000 characters), `dlq_kind` (`undecodable`, `mismatch`,
//! `payload`, `log`, `provider_refused`, `provider_rejected`, `retries_exhausted`,
//! `delivery_overdue`, or the gRPC code: `invalid_argument`, `not_found`,
//! `failed_precondition`, ...), `dlq_source_message_id` and `dlq_receive_count` (the receives
//! of the message and of the copies it was sent again as).
//!
//! **The last receive.** SQS moves a message to the DLQ at the receive after its
//! `maxReceiveCount` (read from the queue's redrive policy), silently. So at a message's last
//! receive the worker does not release it: a message waiting for a provider's open circuit, or
//! deferred behind an earlier message of its order, is sent again as a new message (same body,
//! group and attributes, plus `worker_receives`, the receives so far; deduplication id = the
//! message id and that count) and the old one deleted; any other failure is dead-lettered here
//! (`retries_exhausted`; a parcel still in transit: `delivery_overdue`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName,
};
use order_messages::{ATTR_CORRELATION_ID, ATTR_TRACEPARENT, CloudEvent};
use order_runtime::{Readiness, trace};
use tokio::sync::{Mutex, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use crate::api::CallContext;
use crate::backoff::Backoff;
use crate::metrics::{self, MessageOutcome};
use crate::process::{Outcome, Processor};
use crate::random::Random;

/// The longest visibility timeout SQS accepts (12 hours).
const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// Most entries per SQS batch call.
const MAX_BATCH: usize = 10;
/// ChangeMessageVisibilityBatch calls the heartbeat makes at once.
const HEARTBEAT_CALLS: usize = 16;
/// How long a finished message waits for others to share its DeleteMessageBatch.
const DELETE_LINGER: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub queue_url: String,
    pub dlq_url: String,
    /// Messages worked on at once.
    pub concurrency: usize,
    /// Messages per receive (1-10).
    pub batch: usize,
    /// Long-poll wait (0-20 s).
    pub wait: Duration,
    /// Visibility timeout at receive, renewed while a message is worked on.
    pub visibility: Duration,
    /// Delay before a failed message reappears, by its receive count.
    pub retry: Backoff,
}

/// A message to delete.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub message_id: String,
    pub handle: String,
}

/// Messages received and not yet settled, whose visibility the heartbeat keeps extending.
#[derive(Debug, Default)]
pub struct InFlight {
    /// By message id; each has a receipt handle.
    entries: Mutex<HashMap<String, Message>>,
}

impl InFlight {
    async fn add(&self, messages: &[Message]) {
        let mut entries = self.entries.lock().await;
        for message in messages {
            if let (Some(id), Some(_)) = (message.message_id(), message.receipt_handle()) {
                entries.insert(id.to_owned(), message.clone());
            }
        }
        metrics::in_flight(entries.len());
    }

    /// Stop extending a message (it is being settled). Waits for a heartbeat under way, so
    /// the heartbeat never overrides the settlement's own visibility change.
    async fn remove(&self, message_id: &str) {
        let mut entries = self.entries.lock().await;
        entries.remove(message_id);
        metrics::in_flight(entries.len());
    }

    /// How many messages are in flight.
    pub async fn count(&self) -> usize {
        self.entries.lock().await.len()
    }

    /// Give every message in flight `visibility` more time. The batches go out concurrently
    /// (up to `HEARTBEAT_CALLS` at once), so that a worker with a thousand messages in flight
    /// holds its settlements back for a few round trips, not a hundred.
    pub async fn extend_all(&self, sqs: &Client, queue_url: &str, visibility: Duration) {
        use futures::StreamExt;
        let entries = self.entries.lock().await;
        let handles: Vec<(String, String)> = entries
            .iter()
            .filter_map(|(id, message)| Some((id.clone(), message.receipt_handle()?.to_owned())))
            .collect();
        futures::stream::iter(handles.chunks(MAX_BATCH))
            .for_each_concurrent(HEARTBEAT_CALLS, |chunk| async move {
                if let Err(error) =
                    change_visibility(sqs, queue_url, chunk, seconds(visibility)).await
                {
                    metrics::sqs_error("visibility");
                    tracing::warn!(%error, "extending the visibility of in-flight messages did not work");
                }
            })
            .await;
        drop(entries);
    }

    /// Take every message still in flight (its work was abandoned).
    async fn take_all(&self) -> Vec<Message> {
        let mut entries = self.entries.lock().await;
        let messages = entries.drain().map(|(_, message)| message).collect();
        metrics::in_flight(0);
        messages
    }

    /// Make `messages` visible again at once. Returns how many SQS released; each it refused
    /// is logged with its message id.
    async fn release(sqs: &Client, queue_url: &str, messages: &[Message]) -> usize {
        let handles: Vec<(String, String)> = messages
            .iter()
            .filter_map(|m| Some((m.message_id()?.to_owned(), m.receipt_handle()?.to_owned())))
            .collect();
        let mut released = 0;
        for chunk in handles.chunks(MAX_BATCH) {
            match change_visibility(sqs, queue_url, chunk, 0).await {
                Ok(refused) => released += chunk.len().saturating_sub(refused),
                Err(error) => {
                    metrics::sqs_error("visibility");
                    let message_ids: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
                    tracing::warn!(%error, ?message_ids, "releasing abandoned messages did not work; they reappear after their visibility timeout");
                }
            }
        }
        released
    }
}

/// Taken off the 12 hours for the time between a receive's request and SQS's receipt.
const VISIBILITY_MARGIN_SECONDS: u64 = 60;

/// How much longer a message received `held` ago may stay invisible: SQS refuses a visibility
/// that ends more than 12 hours after the receipt. Whole seconds, so that [`seconds`] does not
/// round it up past the limit.
fn visibility_left(held: Duration) -> Duration {
    let held = held.as_secs() + u64::from(held.subsec_nanos() > 0);
    Duration::from_secs(MAX_VISIBILITY_SECONDS.saturating_sub(held + VISIBILITY_MARGIN_SECONDS))
}

fn seconds(duration: Duration) -> i32 {
    let whole = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(whole.min(MAX_VISIBILITY_SECONDS)).unwrap_or(i32::MAX)
}

/// Set the visibility of `messages` (message id, receipt handle). Returns how many SQS refused,
/// each logged with its message id.
async fn change_visibility(
    sqs: &Client,
    queue_url: &str,
    messages: &[(String, String)],
    visibility_seconds: i32,
) -> Result<usize, String> {
    let entries = messages
        .iter()
        .enumerate()
        .filter_map(|(index, (_, handle))| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(index.to_string())
                .receipt_handle(handle)
                .visibility_timeout(visibility_seconds)
                .build()
                .ok()
        })
        .collect::<Vec<_>>();
    if entries.is_empty() {
        return Ok(0);
    }
    let output = sqs
        .change_message_visibility_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| DisplayErrorContext(e).to_string())?;
    for failed in output.failed() {
        // Settled messages are out of the heartbeat's list before their settlement: a refusal
        // is of a message still held (its receipt expired, past SQS's 12 hours), which
        // another worker may now receive while this one works on it; or, of a release (0 s),
        // one that reappears only after its visibility timeout.
        metrics::sqs_error("visibility");
        let message_id = failed
            .id()
            .parse::<usize>()
            .ok()
            .and_then(|i| messages.get(i))
            .map(|(id, _)| id.as_str())
            .unwrap_or_default();
        if visibility_seconds == 0 {
            tracing::warn!(
                message_id,
                code = failed.code(),
                reason = failed.message().unwrap_or_default(),
                "SQS refused to release a message; it reappears after its visibility timeout"
            );
        } else {
            tracing::warn!(
                message_id,
                code = failed.code(),
                reason = failed.message().unwrap_or_default(),
                visibility_seconds,
                "SQS refused to change the visibility of a message in flight"
            );
        }
    }
    Ok(output.failed().len())
}

/// Start the batched deleter: receipts sent to the returned channel are deleted in
/// DeleteMessageBatch calls of up to 10, each within ~50 ms of the first receipt. It stops
/// once every sender is dropped and what was sent is deleted.
pub fn spawn_deleter(sqs: Client, queue_url: String) -> (mpsc::Sender<Receipt>, JoinHandle<()>) {
    let (sender, mut receiver) = mpsc::channel::<Receipt>(1024);
    let task = tokio::spawn(async move {
        while let Some(first) = receiver.recv().await {
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + DELETE_LINGER;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(receipt)) => batch.push(receipt),
                    Ok(None) | Err(_) => break,
                }
            }
            delete_batch(&sqs, &queue_url, &batch).await;
        }
    });
    (sender, task)
}

async fn delete_batch(sqs: &Client, queue_url: &str, batch: &[Receipt]) {
    let entries: Vec<DeleteMessageBatchRequestEntry> = batch
        .iter()
        .enumerate()
        .filter_map(|(index, receipt)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .receipt_handle(&receipt.handle)
                .build()
                .ok()
        })
        .collect();
    for attempt in 1..=3u32 {
        match sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries.clone()))
            .send()
            .await
        {
            Ok(output) => {
                for failed in output.failed() {
                    metrics::sqs_error("delete");
                    let message_id = failed
                        .id()
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| batch.get(i))
                        .map(|r| r.message_id.as_str())
                        .unwrap_or_default();
                    metrics::failed(metrics::Failed::DeleteFailed);
                    tracing::warn!(
                        message_id,
                        code = failed.code(),
                        "SQS delete FAILED for a finished message; it will be delivered again and found done"
                    );
                }
                return;
            }
            Err(error) => {
                metrics::sqs_error("delete");
                let error = DisplayErrorContext(error).to_string();
                if attempt == 3 {
                    metrics::failed(metrics::Failed::DeleteFailed);
                    tracing::warn!(%error, messages = batch.len(), "SQS delete FAILED for finished messages; they will be delivered again and found done");
                    return;
                }
                tracing::debug!(%error, attempt, "DeleteMessageBatch failed, retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
        }
    }
}

/// The consumer loop and the settlement of each message.
#[derive(Debug)]
pub struct Consumer {
    sqs: Client,
    settings: ConsumerSettings,
    processor: Arc<Processor>,
    in_flight: Arc<InFlight>,
    deletes: mpsc::Sender<Receipt>,
    random: Arc<Random>,
    redrive: std::sync::Mutex<RedriveLimit>,
    /// Turned true at the end of the grace period: the messages being worked on are dropped
    /// where they are (their calls cancelled), left in flight for the release.
    abandon: watch::Sender<bool>,
}

/// The orders queue's `maxReceiveCount` (its redrive policy), read when first needed and again
/// every few minutes.
#[derive(Debug, Default)]
struct RedriveLimit {
    known: Option<u32>,
    asked: Option<Instant>,
}

/// How long the worker waits before asking again for a redrive policy it could not read.
const REDRIVE_ASK_AGAIN: Duration = Duration::from_secs(60);
/// How long a redrive policy read is kept before it is read again.
const REDRIVE_KEEP: Duration = Duration::from_secs(300);

/// How a message ended, as far as the queue is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    Deleted,
    LeftForRetry,
}

impl Consumer {
    pub fn new(
        sqs: Client,
        settings: ConsumerSettings,
        processor: Arc<Processor>,
        in_flight: Arc<InFlight>,
        deletes: mpsc::Sender<Receipt>,
        random: Arc<Random>,
    ) -> Self {
        Self {
            sqs,
            settings,
            processor,
            in_flight,
            deletes,
            random,
            redrive: std::sync::Mutex::default(),
            abandon: watch::Sender::new(false),
        }
    }

    /// The queue's `maxReceiveCount`: the receive after it moves a message to the DLQ. Read
    /// from the queue's redrive policy, and again every [`REDRIVE_KEEP`] (an operator may
    /// change it while the worker runs); `None` until it could be read (asked again at most
    /// every minute) or when the queue has none. A read that fails keeps the last count.
    async fn max_receives(&self) -> Option<u32> {
        {
            let mut limit = self.redrive.lock().unwrap_or_else(|e| e.into_inner());
            let keep = if limit.known.is_some() {
                REDRIVE_KEEP
            } else {
                REDRIVE_ASK_AGAIN
            };
            if limit.asked.is_some_and(|at| at.elapsed() < keep) {
                return limit.known;
            }
            // One reader at a time: the others go on with the count known until it answers.
            if limit.known.is_some() {
                limit.asked = Some(Instant::now());
            }
        }
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            self.sqs
                .get_queue_attributes()
                .queue_url(&self.settings.queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
                .send(),
        )
        .await;
        // Some(policy's count, if any) when the queue answered; None when it did not.
        let read = match read {
            Ok(Ok(output)) => Some(
                output
                    .attributes()
                    .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy))
                    .and_then(|policy| max_receive_count(policy)),
            ),
            Ok(Err(error)) => {
                tracing::warn!(error = %DisplayErrorContext(error), "the orders queue's redrive policy could not be read; messages at their last receive are released as any other until it is");
                None
            }
            Err(_) => None,
        };
        let mut limit = self.redrive.lock().unwrap_or_else(|e| e.into_inner());
        limit.asked = Some(Instant::now());
        if let Some(count) = read {
            if count != limit.known {
                tracing::info!(
                    max_receive_count = ?count,
                    before = ?limit.known,
                    "the orders queue moves a message to its DLQ after this many receives"
                );
            }
            limit.known = count;
        }
        limit.known
    }

    /// Whether releasing a message received `receive_count` times would let SQS move it to
    /// the DLQ at its next receive.
    async fn at_last_receive(&self, receive_count: u32) -> bool {
        self.max_receives()
            .await
            .is_some_and(|max| receive_count >= max)
    }

    /// The shutdown after SIGTERM, once `shutdown` told [`Consumer::run`] (the `run` task) to
    /// stop receiving: let the messages in flight finish within `grace`; past it, abandon
    /// them and put back on the queue what did not finish ([`Consumer::abandon_in_flight`]).
    /// Returns how many were released and how many sent again.
    ///
    /// A receive under way is let finish first, past the grace if need be (at most the
    /// long-poll wait): SQS hands what it picks to a request whose caller went away as to any
    /// other, for the visibility timeout, so a receive dropped mid-poll would take the very
    /// messages the release makes visible, and they would reappear only after it.
    pub async fn shut_down(&self, mut run: JoinHandle<()>, grace: Duration) -> (usize, usize) {
        if tokio::time::timeout(grace, &mut run).await.is_err() {
            tracing::warn!(
                "grace period over: abandoning unfinished messages (nothing is lost: they reappear on the queue)"
            );
            self.abandon.send_replace(true);
            // The message tasks stop at once; a receive under way ends within its limit.
            let limit = self.receive_limit() + Duration::from_secs(5);
            if tokio::time::timeout(limit, &mut run).await.is_err() {
                tracing::warn!("the consumer did not stop; its receive under way is dropped");
                run.abort();
                let _ = run.await;
            }
        }
        self.abandon_in_flight().await
    }

    /// After the grace period: the messages still in flight, whose work was abandoned, go back
    /// to the queue. One at its last receive is sent again as a new message (released, SQS
    /// would move it to the DLQ at its next receive, for nothing it did wrong); the others are
    /// made visible again at once. Returns how many were released and how many sent again.
    pub async fn abandon_in_flight(&self) -> (usize, usize) {
        let mut release = Vec::new();
        let mut sent_again = 0;
        for message in self.in_flight.take_all().await {
            let id = message.message_id().unwrap_or_default().to_owned();
            if self.at_last_receive(receive_count(&message)).await {
                match self
                    .send_again(&message, &id, total_receives(&message))
                    .await
                {
                    Ok(()) => {
                        sent_again += 1;
                        continue;
                    }
                    Err(error) => {
                        metrics::sqs_error("send_again");
                        tracing::warn!(%error, message_id = %id, "sending an abandoned message at its last receive again did not work; it is released and may reach the DLQ");
                    }
                }
            }
            release.push(message);
        }
        let released = InFlight::release(&self.sqs, &self.settings.queue_url, &release).await;
        (released, sent_again)
    }

    /// Send the message again as a new one (same body, group and attributes, plus the receives
    /// it has used up so far) and delete this one: it keeps its work and loses nothing, but
    /// starts again at receive 1. For a message whose delay is not its own fault (an open
    /// circuit, an earlier message of its order): it must not reach the DLQ for it. The copy
    /// goes after the other messages of its order now in the queue; every step reads the
    /// order's log before acting, so the order of arrival is not what decides.
    async fn send_again(
        &self,
        message: &Message,
        message_id: &str,
        receives: u32,
    ) -> Result<(), String> {
        let group = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .filter(|g| !g.is_empty())
            .cloned()
            .ok_or("the message has no group")?;
        let mut attributes: HashMap<String, MessageAttributeValue> = message
            .message_attributes()
            .into_iter()
            .flatten()
            .filter(|(name, _)| name.as_str() != ATTR_WORKER_RECEIVES)
            .take(9)
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        attributes.insert(
            ATTR_WORKER_RECEIVES.to_owned(),
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value(receives.to_string())
                .build()
                .map_err(|e| e.to_string())?,
        );
        self.sqs
            .send_message()
            .queue_url(&self.settings.queue_url)
            .message_body(message.body().unwrap_or_default())
            .message_group_id(group)
            // Stable: a crash between the send and the delete sends no second copy.
            .message_deduplication_id(format!("{message_id}:{receives}"))
            .set_message_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?;
        metrics::sent_again();
        self.delete(message, message_id).await;
        Ok(())
    }

    /// Receive and handle messages until `shutdown` turns true; then stop receiving and wait
    /// for the messages already received.
    ///
    /// While `readiness` says the worker cannot do its job (order-grpc or the queue does not
    /// answer), it receives nothing: every message received during an outage would fail, use
    /// up one of its receives and end in the DLQ after `maxReceiveCount` of them.
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
        mut readiness: watch::Receiver<Readiness>,
    ) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut receive_failures = 0u32;
        let receive_backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            while tasks.try_join_next().is_some() {}
            if *shutdown.borrow() {
                break;
            }
            let not_ready = match &*readiness.borrow() {
                Readiness::Ready => None,
                Readiness::NotReady(why) => Some(why.clone()),
            };
            if let Some(why) = not_ready {
                tracing::info!(reason = %why, "receiving paused until the worker is ready");
                tokio::select! {
                    ready = readiness.wait_for(Readiness::is_ready) => {
                        if ready.is_err() {
                            // The readiness watcher is gone (shutting down): stop.
                            break;
                        }
                        tracing::info!("receiving resumed");
                    }
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
                continue;
            }
            let first = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let mut held = vec![first];
            while held.len() < self.settings.batch.clamp(1, MAX_BATCH) {
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => held.push(permit),
                    Err(_) => break,
                }
            }
            // SQS counts a message's 12 hours of visibility from its receipt: at the latest,
            // when the answer to this request was sent.
            let asked_at = Instant::now();
            let receive = self.receive(held.len());
            tokio::pin!(receive);
            let early = tokio::select! {
                received = &mut receive => Some(received),
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(received) = early else {
                // Shutting down with a receive under way: SQS may have picked messages for
                // it already, each using up a receive; dropped, they would stay invisible for
                // the visibility timeout (and SQS would go on handing messages to it until its
                // wait ends, the shutdown's released ones included). It ends within the
                // long-poll wait (at most 20 s, inside the default grace period of 30 s; a
                // shorter grace waits for it, `shut_down`); what it returns is in flight,
                // unworked, and the shutdown releases it with the rest (`abandon_in_flight`).
                if let Ok(messages) = receive.await
                    && !messages.is_empty()
                {
                    tracing::info!(
                        messages = messages.len(),
                        "received while shutting down: left for the shutdown to release"
                    );
                    self.in_flight.add(&messages).await;
                }
                break;
            };
            let messages = match received {
                Ok(messages) => {
                    receive_failures = 0;
                    messages
                }
                Err(error) => {
                    receive_failures += 1;
                    metrics::sqs_error("receive");
                    let delay = receive_backoff.delay(receive_failures, self.random.unit());
                    tracing::warn!(%error, retry_in = ?delay, "receiving from the orders queue did not work");
                    drop(held);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait_for(|stop| *stop) => break,
                    }
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            self.in_flight.add(&messages).await;
            for group in by_group(messages) {
                let take = group.len().min(held.len());
                let group_permits: Vec<_> = held.drain(..take).collect();
                let consumer = self.clone();
                let mut abandon = self.abandon.subscribe();
                tasks.spawn(async move {
                    tokio::select! {
                        () = consumer.handle_group(group, asked_at) => {}
                        // The grace period is over: what is left stays in flight, released
                        // by the shutdown.
                        _ = abandon.wait_for(|abandon| *abandon) => {}
                    }
                    drop(group_permits);
                });
            }
        }
        if !tasks.is_empty() {
            tracing::info!(
                messages = tasks.len(),
                "no longer receiving; finishing the messages in flight"
            );
        }
        while tasks.join_next().await.is_some() {}
    }

    /// The long-poll wait of a receive.
    fn receive_wait(&self) -> Duration {
        self.settings.wait.min(Duration::from_secs(20))
    }

    /// The longest a receive takes: its wait, and time for SQS to answer.
    fn receive_limit(&self) -> Duration {
        self.receive_wait() + Duration::from_secs(20)
    }

    async fn receive(&self, max: usize) -> Result<Vec<Message>, String> {
        let wait = self.receive_wait();
        let timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(wait + Duration::from_secs(10))
            .operation_timeout(self.receive_limit())
            .build();
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.settings.queue_url)
            .max_number_of_messages(i32::try_from(max.clamp(1, MAX_BATCH)).unwrap_or(1))
            .wait_time_seconds(seconds(wait))
            .visibility_timeout(seconds(self.settings.visibility))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .customize()
            .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(timeouts))
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?;
        Ok(output.messages().to_vec())
    }

    /// One order's messages from one receive, in order.
    async fn handle_group(&self, messages: Vec<Message>, received_at: Instant) {
        let mut blocked = false;
        for message in messages {
            if blocked {
                // An earlier message of this order is left for retry: this one must not
                // overtake it.
                let id = message.message_id().unwrap_or_default().to_owned();
                let receive_count = receive_count(&message);
                if self.at_last_receive(receive_count).await {
                    let receives = total_receives(&message);
                    match self.send_again(&message, &id, receives).await {
                        Ok(()) => {
                            tracing::info!(message_id = %id, receives, "deferred at its last receive: sent again as a new message");
                            continue;
                        }
                        Err(error) => {
                            metrics::sqs_error("send_again");
                            tracing::warn!(%error, message_id = %id, "sending a deferred message again did not work; it is released and may reach the DLQ");
                        }
                    }
                }
                self.in_flight.remove(&id).await;
                if let Some(handle) = message.receipt_handle() {
                    let entry = [(id.clone(), handle.to_owned())];
                    if let Err(error) =
                        change_visibility(&self.sqs, &self.settings.queue_url, &entry, 0).await
                    {
                        metrics::sqs_error("visibility");
                        tracing::warn!(%error, message_id = %id, "releasing a deferred message did not work");
                    }
                }
                tracing::debug!(message_id = %id, "deferred behind an earlier message of its order");
                continue;
            }
            if self.handle(&message, received_at).await == Settled::LeftForRetry {
                blocked = true;
            }
        }
    }

    async fn handle(&self, message: &Message, received_at: Instant) -> Settled {
        let message_id = message.message_id().unwrap_or_default().to_owned();
        let receive_count = receive_count(message);
        // Receives of this message and of the copies it was sent again as.
        let receives = total_receives(message);
        let body = message.body().unwrap_or_default();
        let (outcome, span) = match CloudEvent::parse(body) {
            Err(error) => (
                Outcome::DeadLetter {
                    kind: "undecodable",
                    reason: error.to_string(),
                },
                tracing::info_span!("message", message_id = %message_id, receive_count = receives),
            ),
            Ok(event) => {
                let incoming = CallContext::new(
                    string_attribute(message, ATTR_CORRELATION_ID)
                        .or(event.correlationid.as_deref()),
                    string_attribute(message, ATTR_TRACEPARENT).or(event.traceparent.as_deref()),
                );
                // One span per message, a child of the trace of the command that wrote the
                // event; the commands the worker sends continue it.
                let span = tracing::info_span!(
                    "message",
                    otel.name = %format!("order-worker {}", event.event_type),
                    message_id = %message_id,
                    order_id = %event.subject,
                    event_type = %event.event_type,
                    event_id = %event.id,
                    correlation_id = incoming.correlation_id().unwrap_or(""),
                    receive_count = receives,
                    trace_id = tracing::field::Empty,
                );
                let traceparent = incoming.traceparent();
                // The body's `tracestate` goes with the body's `traceparent` only.
                let tracestate = event.tracestate().filter(|_| {
                    traceparent.is_some() && traceparent == event.traceparent.as_deref()
                });
                trace::set_parent(&span, traceparent, tracestate);
                span.record("trace_id", trace::trace_id(&span, traceparent));
                let (outgoing, outgoing_state) = trace::outgoing(&span, traceparent, tracestate);
                // The commands of this step were caused by this event: the log records it.
                let context = CallContext::new(incoming.correlation_id(), outgoing.as_deref())
                    .with_tracestate(outgoing_state.as_deref())
                    .with_causation(Some(event.id));
                let outcome = self
                    .processor
                    .process(&event, &context, receives > 1)
                    .instrument(span.clone())
                    .await;
                (outcome, span)
            }
        };
        self.settle(
            message,
            &message_id,
            receive_count,
            receives,
            outcome,
            received_at,
        )
        .instrument(span)
        .await
    }

    /// Delete, dead-letter or back off, and log the one line that says how it ended.
    async fn settle(
        &self,
        message: &Message,
        message_id: &str,
        receive_count: u32,
        receives: u32,
        outcome: Outcome,
        received_at: Instant,
    ) -> Settled {
        // At its last receive, a message released again would be moved to the DLQ by SQS at
        // its next receive, with no FAILED line and no reason. So: an outage's message is sent
        // again as a new one, and any other is dead-lettered here, saying why.
        let outcome = match outcome {
            Outcome::Retry {
                reason,
                after,
                outage,
            } if self.at_last_receive(receive_count).await => {
                if outage {
                    match self.send_again(message, message_id, receives).await {
                        Ok(()) => {
                            metrics::message(MessageOutcome::Retry);
                            tracing::warn!(%reason, receives, "provider outage at the message's last receive: sent again as a new message");
                            return Settled::LeftForRetry;
                        }
                        Err(error) => {
                            metrics::sqs_error("send_again");
                            tracing::warn!(%error, "sending the message again did not work");
                            Outcome::Retry {
                                reason,
                                after,
                                outage,
                            }
                        }
                    }
                } else {
                    Outcome::DeadLetter {
                        kind: "retries_exhausted",
                        reason: format!("still failing after {receives} receives: {reason}"),
                    }
                }
            }
            Outcome::Waiting { reason, .. } if self.at_last_receive(receive_count).await => {
                Outcome::DeadLetter {
                    kind: "delivery_overdue",
                    reason: format!("still waiting after {receives} receives: {reason}"),
                }
            }
            other => other,
        };
        match outcome {
            Outcome::Done { commands } => {
                self.delete(message, message_id).await;
                metrics::message(MessageOutcome::Ok);
                tracing::debug!(?commands, "message handled");
                Settled::Deleted
            }
            Outcome::Ignored => {
                self.delete(message, message_id).await;
                metrics::message(MessageOutcome::Ok);
                tracing::debug!("message needs no work");
                Settled::Deleted
            }
            Outcome::Obsolete => {
                self.delete(message, message_id).await;
                metrics::message(MessageOutcome::Obsolete);
                tracing::debug!("message obsolete: its step was done before or the order moved on");
                Settled::Deleted
            }
            Outcome::Retry { reason, after, .. } => {
                let delay = self
                    .back_off(message, message_id, receive_count, after, received_at)
                    .await;
                metrics::message(MessageOutcome::Retry);
                tracing::warn!(%reason, retry_in = ?delay, "message not done yet, left for retry");
                Settled::LeftForRetry
            }
            Outcome::Waiting { reason, recheck_in } => {
                self.in_flight.remove(message_id).await;
                self.hide(message, recheck_in, received_at).await;
                metrics::message(MessageOutcome::Waiting);
                tracing::info!(%reason, recheck_in = ?recheck_in, "message waits: asking again later");
                Settled::LeftForRetry
            }
            Outcome::DeadLetter { kind, reason } => {
                match self
                    .dead_letter(message, message_id, receives, kind, &reason)
                    .await
                {
                    Ok(()) => {
                        self.delete(message, message_id).await;
                        metrics::dlq_send();
                        metrics::message(MessageOutcome::Dlq);
                        metrics::failed(metrics::Failed::DeadLettered);
                        tracing::error!(kind, %reason, "message FAILED, sent to the dead-letter queue");
                        Settled::Deleted
                    }
                    Err(error) => {
                        metrics::sqs_error("dlq");
                        let delay = self
                            .back_off(message, message_id, receive_count, None, received_at)
                            .await;
                        metrics::message(MessageOutcome::Retry);
                        metrics::failed(metrics::Failed::DeadLetterFailed);
                        tracing::warn!(kind, %reason, %error, retry_in = ?delay, "message FAILED and could not be dead-lettered, left for retry");
                        Settled::LeftForRetry
                    }
                }
            }
        }
    }

    async fn delete(&self, message: &Message, message_id: &str) {
        self.in_flight.remove(message_id).await;
        if let Some(handle) = message.receipt_handle() {
            let receipt = Receipt {
                message_id: message_id.to_owned(),
                handle: handle.to_owned(),
            };
            if self.deletes.send(receipt).await.is_err() {
                tracing::warn!(
                    message_id,
                    "the deleter stopped; the message will be delivered again and found done"
                );
            }
        }
    }

    /// Make the message reappear after a backoff that grows with its receive count, and not
    /// before `after` (a provider's `Retry-After`, an open circuit's next trial).
    async fn back_off(
        &self,
        message: &Message,
        message_id: &str,
        receive_count: u32,
        after: Option<Duration>,
        received_at: Instant,
    ) -> Duration {
        self.in_flight.remove(message_id).await;
        let delay = self
            .settings
            .retry
            .delay(receive_count, self.random.unit())
            .max(after.unwrap_or_default())
            .max(Duration::from_secs(1));
        self.hide(message, delay, received_at).await
    }

    /// Make the message visible again after `delay`, or at the end of the 12 hours SQS lets a
    /// message stay invisible from its receipt (a longer request is refused, and the message
    /// would reappear at once). Returns the delay set.
    async fn hide(&self, message: &Message, delay: Duration, received_at: Instant) -> Duration {
        let delay = delay.min(visibility_left(received_at.elapsed()));
        if let Some(handle) = message.receipt_handle() {
            let result = self
                .sqs
                .change_message_visibility()
                .queue_url(&self.settings.queue_url)
                .receipt_handle(handle)
                .visibility_timeout(seconds(delay))
                .send()
                .await;
            if let Err(error) = result {
                metrics::sqs_error("visibility");
                tracing::warn!(error = %DisplayErrorContext(error), "setting the retry delay did not work; the message reappears after its visibility timeout");
            }
        }
        delay
    }

    async fn dead_letter(
        &self,
        message: &Message,
        message_id: &str,
        receive_count: u32,
        kind: &str,
        reason: &str,
    ) -> Result<(), String> {
        let group = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .filter(|g| !g.is_empty())
            .cloned()
            .unwrap_or_else(|| "dead-letter".to_owned());
        let dedup = if message_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            message_id.to_owned()
        };
        let attributes = dlq_attributes(
            message.message_attributes(),
            message_id,
            receive_count,
            kind,
            reason,
        )?;
        self.sqs
            .send_message()
            .queue_url(&self.settings.dlq_url)
            .message_body(message.body().unwrap_or_default())
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .set_message_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?;
        Ok(())
    }
}

/// The message attributes of a dead-lettered message.
pub fn dlq_attributes(
    original: Option<&HashMap<String, MessageAttributeValue>>,
    message_id: &str,
    receive_count: u32,
    kind: &str,
    reason: &str,
) -> Result<HashMap<String, MessageAttributeValue>, String> {
    // SQS allows 10 attributes; 4 are ours.
    let mut attributes: HashMap<String, MessageAttributeValue> = original
        .into_iter()
        .flatten()
        .filter(|(name, _)| !name.starts_with("dlq_"))
        .take(6)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect();
    for (name, value) in [
        ("dlq_reason", reason.as_str()),
        ("dlq_kind", kind),
        ("dlq_source_message_id", message_id),
        ("dlq_receive_count", &receive_count.to_string()),
    ] {
        if value.is_empty() {
            continue;
        }
        let value = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| e.to_string())?;
        attributes.insert(name.to_owned(), value);
    }
    Ok(attributes)
}

/// The message attribute a message sent again carries: the receives of its earlier copies.
pub const ATTR_WORKER_RECEIVES: &str = "worker_receives";

/// SQS's receive count of this copy of the message.
fn receive_count(message: &Message) -> u32 {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// The receives of the copies this message was sent again as (0 for an original), and of the
/// message before the worker dead-lettered it (`dlq_receive_count`, kept when the DLQ is
/// redriven: SQS counts receives afresh then, but the step's provider call may have been made
/// by one of those earlier deliveries).
fn earlier_receives(message: &Message) -> u32 {
    let count = |name: &str| {
        string_attribute(message, name)
            .and_then(|count| count.parse::<u32>().ok())
            .unwrap_or(0)
    };
    // `dlq_receive_count` already counts the copies' receives (it is the total at the time).
    count(ATTR_WORKER_RECEIVES).max(count("dlq_receive_count"))
}

/// The receives of this message and of the copies it was sent again as.
fn total_receives(message: &Message) -> u32 {
    earlier_receives(message).saturating_add(receive_count(message))
}

/// `maxReceiveCount` from a redrive policy (`{"maxReceiveCount": 10, ...}`; SQS returns the
/// number as a number or as a string).
fn max_receive_count(policy: &str) -> Option<u32> {
    let policy: serde_json::Value = serde_json::from_str(policy).ok()?;
    let count = policy.get("maxReceiveCount")?;
    count
        .as_u64()
        .or_else(|| count.as_str().and_then(|s| s.trim().parse().ok()))
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
}

fn string_attribute<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
}

/// Split a receive into message groups (orders), keeping the order within each.
fn by_group(messages: Vec<Message>) -> Vec<Vec<Message>> {
    let mut groups: Vec<(String, Vec<Message>)> = Vec::new();
    for message in messages {
        let group = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned()
            // Without a group id (a standard queue) every message stands alone.
            .unwrap_or_else(|| format!("message:{}", message.message_id().unwrap_or_default()));
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, list)) => list.push(message),
            None => groups.push((group, vec![message])),
        }
    }
    groups.into_iter().map(|(_, list)| list).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A processor with simulated providers, calling order-grpc through `api`.
    fn simulated_processor(api: crate::api::OrderApi, random: &Arc<Random>) -> Arc<Processor> {
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock::new());
        let guard = |name| {
            crate::providers::guard::Guard::new(
                name,
                crate::providers::guard::GuardSettings {
                    attempts: 1,
                    backoff: Backoff::new(Duration::ZERO, Duration::ZERO),
                    timeout: Duration::from_secs(1),
                    breaker: crate::breaker::BreakerSettings {
                        failure_threshold: 5,
                        cooldown: Duration::from_secs(1),
                        half_open_calls: 1,
                    },
                    circuit_wait: Duration::ZERO,
                },
                clock.clone(),
                random.clone(),
            )
        };
        let providers = crate::providers::Providers::all(Arc::new(
            crate::providers::simulated::Simulated::new(
                Default::default(),
                random.clone(),
                clock.clone(),
            ),
        ));
        let guards = Arc::new(crate::process::Guards {
            inventory: guard("inventory"),
            payment: guard("payment"),
            shipping: guard("shipping"),
        });
        Arc::new(Processor::new(api, providers, guards, Default::default()))
    }

    /// SIGTERM while a long poll is under way: the receive is let finish, and what it returned
    /// goes back to the queue with the shutdown's release, at once, instead of staying
    /// invisible for the visibility timeout with a receive used up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receive_under_way_at_shutdown_finishes_and_its_messages_are_released() {
        let queues = order_testkit::sqs::fifo_queue_pair(5).await;
        let sqs = order_testkit::sqs::client();
        let api = crate::api::OrderApi::connect_lazy(
            "http://127.0.0.1:1",
            None,
            Duration::from_millis(100),
            None,
        )
        .unwrap();
        let random = Arc::new(Random::seeded(3));
        let processor = simulated_processor(api, &random);
        let in_flight = Arc::new(InFlight::default());
        let (deletes, deleter) = spawn_deleter(sqs.clone(), queues.queue_url.clone());
        let consumer = Arc::new(Consumer::new(
            sqs.clone(),
            ConsumerSettings {
                queue_url: queues.queue_url.clone(),
                dlq_url: queues.dlq_url.clone(),
                concurrency: 4,
                batch: 10,
                wait: Duration::from_secs(20),
                // Far longer than the test: a message it kept would not come back in time.
                visibility: Duration::from_secs(600),
                retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(1)),
            },
            processor,
            in_flight.clone(),
            deletes,
            random,
        ));
        let (stop, shutdown) = watch::channel(false);
        let (_ready, readiness) = watch::channel(Readiness::Ready);
        let run = tokio::spawn(consumer.clone().run(shutdown, readiness));
        // The queue is empty: the consumer's first receive is a long poll, under way now.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.send(true).unwrap();
        // A message arrives during that poll, after the shutdown began.
        sqs.send_message()
            .queue_url(&queues.queue_url)
            .message_body("{}")
            .message_group_id("g")
            .message_deduplication_id("m1")
            .send()
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("the consumer stops within the long-poll wait")
            .unwrap();
        // Received, not worked on: in flight for the shutdown to release.
        assert_eq!(in_flight.count().await, 1);
        assert_eq!(consumer.abandon_in_flight().await, (1, 0));
        drop(consumer);
        deleter.await.unwrap();
        // Back on the queue at once, its one receive (the poll's) counted.
        let again = sqs
            .receive_message()
            .queue_url(&queues.queue_url)
            .wait_time_seconds(2)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = again.messages();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(receive_count(&messages[0]), 2);
    }

    /// SIGTERM while a message is mid-call and the consumer's next long poll is under way, a
    /// grace period shorter than both: the message is released at the grace's end and can be
    /// received again at once. (SQS, and the emulator, hand a message to a long poll whose
    /// caller went away as to any other, for its visibility timeout: a poll dropped at the
    /// grace's end would take the message the release just made visible.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_abandoned_mid_call_at_the_end_of_the_grace_is_receivable_at_once() {
        let queues = order_testkit::sqs::fifo_queue_pair(5).await;
        let sqs = order_testkit::sqs::client();
        // order-grpc taking the connection and never answering: the message's first call
        // (reading the order's log) hangs, past any grace.
        let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hung_addr = hung.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = hung.accept().await {
                held.push(stream);
            }
        });
        let api = crate::api::OrderApi::connect_lazy(
            &format!("http://{hung_addr}"),
            None,
            Duration::from_secs(600),
            None,
        )
        .unwrap();
        let random = Arc::new(Random::seeded(4));
        let in_flight = Arc::new(InFlight::default());
        let (deletes, deleter) = spawn_deleter(sqs.clone(), queues.queue_url.clone());
        let consumer = Arc::new(Consumer::new(
            sqs.clone(),
            ConsumerSettings {
                queue_url: queues.queue_url.clone(),
                dlq_url: queues.dlq_url.clone(),
                concurrency: 4,
                batch: 10,
                wait: Duration::from_secs(10),
                // Far longer than the test: a message taken by a receive nobody reads would
                // not come back in time.
                visibility: Duration::from_secs(600),
                retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(1)),
            },
            simulated_processor(api, &random),
            in_flight.clone(),
            deletes,
            random,
        ));
        let order = uuid::Uuid::new_v4();
        let body = CloudEvent::new(order_messages::EnvelopeInput {
            event_id: uuid::Uuid::new_v4(),
            event_type: "OrderPlaced",
            order_id: order,
            recorded_at: std::time::SystemTime::now(),
            global_position: 1,
            stream_version: 1,
            schema_version: 1,
            correlation_id: None,
            traceparent: None,
            data: serde_json::json!({}),
        })
        .to_body();
        sqs.send_message()
            .queue_url(&queues.queue_url)
            .message_body(body)
            .message_group_id(order.to_string())
            .message_deduplication_id("m1")
            .send()
            .await
            .unwrap();
        let (stop, shutdown) = watch::channel(false);
        let (_ready, readiness) = watch::channel(Readiness::Ready);
        let run = tokio::spawn(consumer.clone().run(shutdown, readiness));
        let received = tokio::time::timeout(Duration::from_secs(30), async {
            while in_flight.count().await == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(received.is_ok(), "the consumer received the message");
        // Worked on now, and the consumer's next receive, a long poll, under way.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(in_flight.count().await, 1);
        stop.send(true).unwrap();
        assert_eq!(
            consumer.shut_down(run, Duration::from_secs(1)).await,
            (1, 0),
            "released"
        );
        drop(consumer);
        deleter.await.unwrap();
        let again = sqs
            .receive_message()
            .queue_url(&queues.queue_url)
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        assert_eq!(again.messages().len(), 1, "visible again at once");
    }

    /// A release SQS refuses (here: a receipt handle it never issued) is not counted as
    /// released; the refusal is logged with the message's id.
    #[tokio::test]
    async fn a_release_sqs_refuses_is_not_counted() {
        let queues = order_testkit::sqs::fifo_queue_pair(5).await;
        let sqs = order_testkit::sqs::client();
        let unknown = Message::builder()
            .message_id("m-unknown")
            .receipt_handle("not-a-receipt-handle")
            .build();
        assert_eq!(
            InFlight::release(&sqs, &queues.queue_url, &[unknown]).await,
            0
        );
    }

    #[test]
    fn the_receives_of_earlier_copies_are_read_and_never_overflow() {
        let with = |value: &str| {
            Message::builder()
                .message_attributes(
                    ATTR_WORKER_RECEIVES,
                    MessageAttributeValue::builder()
                        .data_type("Number")
                        .string_value(value)
                        .build()
                        .unwrap(),
                )
                .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
                .build()
        };
        assert_eq!(earlier_receives(&with("10")), 10);
        assert_eq!(earlier_receives(&with("ten")), 0);
        assert_eq!(earlier_receives(&Message::builder().build()), 0);
        assert_eq!(total_receives(&with("10")), 13);
        assert_eq!(total_receives(&with(&u32::MAX.to_string())), u32::MAX);
    }

    #[test]
    fn a_retry_delay_never_ends_past_twelve_hours_from_the_receipt() {
        let twelve_hours = Duration::from_secs(MAX_VISIBILITY_SECONDS);
        // Just received: 12 hours less the margin.
        assert_eq!(
            visibility_left(Duration::ZERO),
            twelve_hours - Duration::from_secs(VISIBILITY_MARGIN_SECONDS)
        );
        // After 20 s of polling a carrier, a 12-hour recheck is shortened by those 20 s.
        let held = Duration::from_millis(20_400);
        let left = visibility_left(held);
        assert!(left + held + Duration::from_secs(VISIBILITY_MARGIN_SECONDS) <= twelve_hours);
        assert_eq!(
            i64::from(seconds(left)),
            left.as_secs() as i64,
            "not rounded up"
        );
        // Held past the limit: visible again at once.
        assert_eq!(visibility_left(twelve_hours), Duration::ZERO);
    }

    #[test]
    fn a_message_redriven_from_the_dlq_counts_its_receives_before_it_was_dead_lettered() {
        let attribute = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .unwrap()
        };
        // Dead-lettered by the worker at its 5th receive (2 of them as an earlier copy), then
        // redriven: SQS counts this as its first receive.
        let redriven = Message::builder()
            .message_attributes(ATTR_WORKER_RECEIVES, attribute("2"))
            .message_attributes("dlq_receive_count", attribute("5"))
            .message_attributes("dlq_kind", attribute("retries_exhausted"))
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "1")
            .build();
        assert_eq!(earlier_receives(&redriven), 5);
        assert_eq!(
            total_receives(&redriven),
            6,
            "a redelivery, not a first delivery"
        );
        let original = Message::builder()
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "1")
            .build();
        assert_eq!(total_receives(&original), 1);
    }

    #[test]
    fn the_redrive_policy_gives_the_receive_limit_as_a_number_or_a_string() {
        let arn = "arn:aws:sqs:eu-west-1:1:dlq.fifo";
        assert_eq!(
            max_receive_count(&format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":10}}"#
            )),
            Some(10)
        );
        assert_eq!(
            max_receive_count(&format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#
            )),
            Some(5)
        );
        for policy in [
            "",
            "{}",
            r#"{"maxReceiveCount":0}"#,
            r#"{"maxReceiveCount":-1}"#,
            "nope",
        ] {
            assert_eq!(max_receive_count(policy), None, "{policy}");
        }
    }

    fn message(id: &str, group: Option<&str>) -> Message {
        let mut builder = Message::builder()
            .message_id(id)
            .receipt_handle(format!("h-{id}"));
        if let Some(group) = group {
            builder = builder.attributes(MessageSystemAttributeName::MessageGroupId, group);
        }
        builder.build()
    }

    fn ids(groups: &[Vec<Message>]) -> Vec<Vec<&str>> {
        groups
            .iter()
            .map(|g| g.iter().map(|m| m.message_id().unwrap()).collect())
            .collect()
    }

    #[test]
    fn messages_are_grouped_by_order_keeping_their_order() {
        let groups = by_group(vec![
            message("1", Some("a")),
            message("2", Some("b")),
            message("3", Some("a")),
            message("4", None),
            message("5", None),
        ]);
        assert_eq!(
            ids(&groups),
            vec![vec!["1", "3"], vec!["2"], vec!["4"], vec!["5"]]
        );
    }

    #[test]
    fn dead_letter_attributes_keep_the_originals_and_say_why() {
        let mut original = HashMap::new();
        for (name, value) in [("correlation_id", "req-1"), ("dlq_reason", "stale")] {
            original.insert(
                name.to_owned(),
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .unwrap(),
            );
        }
        let reason = format!("bad\nbody {}", "x".repeat(2000));
        let attributes = dlq_attributes(Some(&original), "m-1", 3, "undecodable", &reason).unwrap();
        let get = |name: &str| attributes.get(name).and_then(|v| v.string_value()).unwrap();
        assert_eq!(get("correlation_id"), "req-1");
        assert_eq!(get("dlq_kind"), "undecodable");
        assert_eq!(get("dlq_source_message_id"), "m-1");
        assert_eq!(get("dlq_receive_count"), "3");
        assert!(get("dlq_reason").starts_with("bad body"));
        assert_eq!(get("dlq_reason").chars().count(), 1000);
        assert_eq!(attributes.len(), 5);
    }

    #[test]
    fn durations_round_up_to_whole_seconds_within_the_sqs_limit() {
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
        assert_eq!(seconds(Duration::from_secs(3)), 3);
        assert_eq!(seconds(Duration::ZERO), 0);
        assert_eq!(seconds(Duration::from_secs(100_000)), 43_200);
    }
}

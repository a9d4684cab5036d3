//! `order-projector republish --from POS [--to POS]`: send a range of the log to SQS again,
//! with the same deduplication ids (the event ids), for a consumer that lost messages.
//! Within SQS's deduplication window, copies of messages it already has are dropped.
//!
//! A republish sends only what the sink has sent already: the events at or before its
//! checkpoint (in the log's gap-safe order). Those after it are the running sink's to send: sent
//! ahead of it, an order's later events would reach the queue before its earlier ones, whose
//! copies from the sink SQS would take as new.
//! `republish --sink NAME` of a team's projector binary does the same for one of its own
//! sinks ([`crate::Subscription::republish`]).

use order_store::{EventStore, RecordedEvent};
use tokio::sync::watch;

use crate::projection::Page;
use crate::sink::Sink;
use crate::sqs::SqsPublisher;
use crate::subscription::{StepError, deliver_all};

/// Failed attempts in a row to send a page, none of which had any of it acknowledged, before a
/// republish gives up (about 25 s of backoff).
const GIVE_UP_AFTER: u32 = 8;

/// Why a republish stopped.
#[derive(Debug, thiserror::Error)]
pub enum RepublishError {
    /// The log could not be read; `resume` says where to run it again from.
    #[error("{source}; {resume}")]
    Store {
        /// Why.
        source: order_store::Error,
        /// What was sent before, and the `--from` and `--to` to run it again with.
        resume: String,
    },
    /// An event cannot be sent, or the process is shutting down.
    #[error("{0}")]
    Stopped(String),
}

/// Re-send every order event with `from <= global_position <= through` that the SQS publisher
/// has sent (at or before its checkpoint), except imported history (never sent). Returns how
/// many were sent.
pub async fn republish(
    store: &EventStore,
    sink: &SqsPublisher,
    from: u64,
    through: u64,
    shutdown: &watch::Receiver<bool>,
) -> Result<u64, RepublishError> {
    // Imported history is never sent (see `SqsPublisher`): it is not counted either.
    republish_to(
        store,
        sink,
        "republish",
        crate::sqs::SQS_PUBLISHER,
        from,
        through,
        shutdown,
        |e| e.imported_from.is_none(),
    )
    .await
}

/// Offer `sink` every event of its categories with `from <= global_position <= through` that
/// subscription `sent_by` has delivered (at or before its checkpoint, read once at the start)
/// again, page by page, under no lease; `counted` says which of them it sends (the count
/// returned). `name` is the republish's in logs and metrics.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn republish_to<S: Sink>(
    store: &EventStore,
    sink: &S,
    name: &str,
    sent_by: &str,
    from: u64,
    through: u64,
    shutdown: &watch::Receiver<bool>,
    counted: fn(&RecordedEvent) -> bool,
) -> Result<u64, RepublishError> {
    let mut after = from.saturating_sub(1);
    let mut sent = 0u64;
    let resume = |first: u64, sent: u64| {
        format!(
            "{sent} events were sent before; to resume, run it again with --from {first} --to {through}"
        )
    };
    let delivered = store
        .checkpoint(sent_by)
        .await
        .map_err(|source| RepublishError::Store {
            source,
            resume: resume(after + 1, sent),
        })?;
    let delivered_before = |e: &RecordedEvent| e.cursor() <= delivered;
    loop {
        if *shutdown.borrow() {
            return Err(RepublishError::Stopped(format!(
                "stopped by a signal; {}",
                resume(after + 1, sent)
            )));
        }
        let events = store
            .read_range(after, through, 1000)
            .await
            .map_err(|source| RepublishError::Store {
                source,
                resume: resume(after + 1, sent),
            })?;
        let Some(last) = events.last() else { break };
        let first_of_page = after + 1;
        after = last.global_position;
        let categories = sink.categories();
        let events: Vec<_> = events
            .into_iter()
            .filter(|e| categories.contains(&e.category) && delivered_before(e))
            .collect();
        let count = events.iter().filter(|e| counted(e)).count() as u64;
        if events.is_empty() {
            continue;
        }
        let page = Page::decode(events).map_err(|e| {
            RepublishError::Stopped(format!("{e}; {}", resume(first_of_page, sent)))
        })?;
        // A one-off task: a destination that keeps failing (a queue that does not exist, a
        // wrong URL) ends it after about half a minute of retries, saying where to resume.
        deliver_all(sink, name, page, shutdown, Some(GIVE_UP_AFTER), None)
            .await
            .map_err(|e: StepError| {
                let why = match e {
                    StepError::ShuttingDown => "stopped by a signal".to_owned(),
                    other => other.to_string(),
                };
                RepublishError::Stopped(format!("{why}; {}", resume(first_of_page, sent)))
            })?;
        sent += count;
        tracing::info!(through = after, sent, "republish progress");
    }
    Ok(sent)
}

//! `order-projector republish --from POS [--to POS]`: send a range of the log to SQS again,
//! with the same deduplication ids (the event ids), for a consumer that lost messages.
//! Within SQS's deduplication window, copies of messages it already has are dropped.
//!
//! A republish never sends an event ahead of an earlier one of its order that the sink has not
//! sent: SQS would take the sink's copy of that earlier event, sent later, as new, and the
//! order's messages would arrive out of order. So when an event the sink has not had (after
//! its checkpoint, in the log's gap-safe order) lies before `--from`, the events of the range
//! after the checkpoint are left to the sink, which sends them in order; a range that starts at
//! or before every event the sink has not had is sent whole (an order's earlier events come
//! first in it), which also covers messages a queue lost while the sink was sending them.
//! `republish --sink NAME` of a team's projector binary does the same for one of its own
//! sinks ([`crate::Subscription::republish`]).

use order_store::{Cursor, EventStore, RecordedEvent};
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

/// What a republish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Republished {
    /// Events sent.
    pub sent: u64,
    /// Events of the range left to the sink: after its checkpoint, and behind an event the sink
    /// has not sent, which lies before the range, or written since the republish began.
    pub left: u64,
    /// The lowest position of such an event, if there is one.
    pub unsent_at: Option<u64>,
}

/// Re-send every order event with `from <= global_position <= through`, except imported
/// history (never sent) and, when an event the publisher has not sent lies before `from`, the
/// events after its checkpoint (see the module's documentation). Returns how many were sent.
pub async fn republish(
    store: &EventStore,
    sink: &SqsPublisher,
    from: u64,
    through: u64,
    shutdown: &watch::Receiver<bool>,
) -> Result<u64, RepublishError> {
    Ok(republish_sqs(store, sink, from, through, shutdown)
        .await?
        .sent)
}

/// [`republish`], saying what it left to the publisher.
pub(crate) async fn republish_sqs(
    store: &EventStore,
    sink: &SqsPublisher,
    from: u64,
    through: u64,
    shutdown: &watch::Receiver<bool>,
) -> Result<Republished, RepublishError> {
    // Imported history is never sent (see `SqsPublisher`): it is not counted either.
    republish_to(
        store,
        sink,
        "republish",
        Sink::name(sink),
        from,
        through,
        shutdown,
        false,
    )
    .await
}

/// What a republish learns before it sends anything, in one statement (one snapshot): the
/// lowest position before `from` of an event of `categories` after the sink's checkpoint
/// `delivered` (one the sink has not had, which the range does not hold), and which
/// transactions had committed then.
struct Start {
    unsent_at: Option<u64>,
    xmin: u64,
    xmax: u64,
    in_flight: Vec<u64>,
}

impl Start {
    /// Whether the transaction `xid` had committed when the start was read: events written
    /// since (whose order's earlier events the check could not see) are left to the sink.
    fn committed_before(&self, xid: order_store::Xid8) -> bool {
        xid.0 < self.xmin || (xid.0 < self.xmax && !self.in_flight.contains(&xid.0))
    }
}

async fn start(
    store: &EventStore,
    delivered: Cursor,
    from: u64,
    categories: &crate::Categories,
    imported_sent: bool,
) -> Result<Start, order_store::Error> {
    let categories: Option<Vec<String>> = match categories {
        crate::Categories::All => None,
        crate::Categories::Only(categories) => Some(categories.clone()),
    };
    let mut client = store.connection().await?;
    let tx = client.transaction().await?;
    // It reads the events between the checkpoint and `from`: a publisher far behind makes that
    // many, which a one-off task may take its time over.
    tx.batch_execute("SET LOCAL statement_timeout = '10min'")
        .await?;
    let row = tx
        .query_one(
            "WITH s AS (SELECT pg_current_snapshot() AS snap)
             SELECT
               (SELECT min(global_position) FROM orders.events
                 WHERE (transaction_id, global_position) > ($1::xid8, $2::int8)
                   AND global_position < $3
                   AND ($4::text[] IS NULL OR category = ANY($4))
                   AND ($5 OR imported_from IS NULL)),
               pg_snapshot_xmin(snap)::text::int8,
               pg_snapshot_xmax(snap)::text::int8,
               ARRAY(SELECT x::text::int8 FROM pg_snapshot_xip(snap) AS x)
             FROM s",
            &[
                &delivered.transaction_id,
                &(delivered.global_position as i64),
                &(from.min(i64::MAX as u64) as i64),
                &categories,
                &imported_sent,
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(Start {
        unsent_at: row.try_get::<_, Option<i64>>(0)?.map(|p| p as u64),
        xmin: row.try_get::<_, i64>(1)? as u64,
        xmax: row.try_get::<_, i64>(2)? as u64,
        in_flight: row
            .try_get::<_, Vec<i64>>(3)?
            .into_iter()
            .map(|x| x as u64)
            .collect(),
    })
}

/// Offer `sink` every event of its categories with `from <= global_position <= through` again,
/// page by page, under no lease, except, when an event subscription `sent_by` has not had lies
/// before `from`, the events after its checkpoint, and in any case the events after it
/// written since the republish began (both read once at the start: see the module's
/// documentation). `imported_sent`: whether the sink sends imported history (the SQS
/// publisher does not: it skips those it is offered, and they are not counted). `name` is the
/// republish's in logs and metrics.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn republish_to<S: Sink>(
    store: &EventStore,
    sink: &S,
    name: &str,
    sent_by: &str,
    from: u64,
    through: u64,
    shutdown: &watch::Receiver<bool>,
    imported_sent: bool,
) -> Result<Republished, RepublishError> {
    let mut after = from.saturating_sub(1);
    let mut sent = 0u64;
    let resume = |first: u64, sent: u64| {
        format!(
            "{sent} events were sent before; to resume, run it again with --from {first} --to {through}"
        )
    };
    let counted = |e: &RecordedEvent| imported_sent || e.imported_from.is_none();
    let categories = sink.categories();
    let begun = async {
        let delivered = store.checkpoint(sent_by).await?;
        let begun = start(store, delivered, from, &categories, imported_sent).await?;
        Ok::<_, order_store::Error>((delivered, begun))
    }
    .await
    .map_err(|source| RepublishError::Store {
        source,
        resume: resume(after + 1, sent),
    })?;
    let (delivered, begun) = begun;
    let unsent_at = begun.unsent_at;
    // Left to the sink: what could overtake that event; and what was written since the start,
    // whose order's earlier events the start could not see.
    let left_to_sink = |e: &RecordedEvent| {
        counted(e)
            && e.cursor() > delivered
            && (unsent_at.is_some() || !begun.committed_before(e.transaction_id))
    };
    let mut left = 0u64;
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
        let events: Vec<_> = events
            .into_iter()
            .filter(|e| categories.contains(&e.category))
            .filter(|e| {
                let leave = left_to_sink(e);
                left += u64::from(leave);
                !leave
            })
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
    Ok(Republished {
        sent,
        left,
        unsent_at,
    })
}

//! Sinks: side effects outside the database (a queue, a search index, a webhook), delivered at
//! least once.

use std::future::Future;

use crate::projection::{Categories, Decode, Page};

/// A subscriber whose effects live outside the database.
///
/// The projector reads a page after the sink's checkpoint and calls [`Sink::deliver`]; it
/// moves the checkpoint (fenced by the sink's lease) only once every event of the page was
/// acknowledged. Events the sink reports as not delivered are offered again, alone and in
/// page order, after a backoff, until they are: delivery is *at least once*, so the
/// destination must deduplicate, by [`crate::Envelope::dedup_id`] (the event's id, the same on
/// every attempt, after a crash and on a replay). Within one stream, events come in version
/// order; a sink that keeps that order downstream must not deliver an event after an earlier
/// event of its stream failed in the same call (report it as pending too).
///
/// ```
/// use order_domain::{Order, OrderEvent};
/// use order_projector::{Categories, Page, Sink, Undelivered};
///
/// /// Prints each event (a stand-in for a webhook).
/// struct Printer;
///
/// impl Sink for Printer {
///     type Event = OrderEvent;
///     fn name(&self) -> &str { "printer" }
///     fn categories(&self) -> Categories { Categories::of::<Order>() }
///     async fn deliver(&self, page: &Page<OrderEvent>) -> Result<(), Undelivered> {
///         for event in page {
///             println!("{} {:?}", event.dedup_id(), event.event);
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Sink: Send + Sync + 'static {
    /// What the sink decodes events into.
    type Event: Decode;

    /// The sink's name: its checkpoint, lease, metrics label and `status` line.
    fn name(&self) -> &str;

    /// Which streams it follows.
    fn categories(&self) -> Categories;

    /// Events per page.
    fn page_size(&self) -> u32 {
        500
    }

    /// Deliver a page. `Ok` when every event was acknowledged; otherwise which were not
    /// ([`Undelivered::pending`]) and why: those are offered again after a backoff.
    fn deliver(
        &self,
        page: &Page<Self::Event>,
    ) -> impl Future<Output = Result<(), Undelivered>> + Send;

    /// Whether the destination answers (readiness of the service running the sink).
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }
}

/// What kind of failure kept events from being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The destination is unavailable or slow: retried with backoff, logged as a warning.
    Transient,
    /// The destination refused these events themselves: still retried (an event is never
    /// skipped), but logged as an error, since retrying will not help until someone acts.
    Refused,
    /// An event cannot be turned into what the destination takes: the subscription stops at
    /// it (and retries slowly), like a projection at an event it cannot apply.
    Invalid,
}

/// Events of a page that were not delivered, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    /// Indexes (in the page, from 0) of the events not acknowledged; empty means none of them
    /// was. An index the page does not have stops the subscription (a defect in the sink;
    /// nothing of the page is counted as delivered).
    pub pending: Vec<usize>,
    /// Why, in words (logged and shown in `status`).
    pub reason: String,
    /// What kind of failure.
    pub failure: Failure,
}

impl Undelivered {
    /// Nothing of the page was acknowledged.
    pub fn all(failure: Failure, reason: impl Into<String>) -> Self {
        Self {
            pending: Vec::new(),
            reason: reason.into(),
            failure,
        }
    }

    /// These events (indexes in the page) were not acknowledged; the others were. An empty
    /// list means, as in [`Undelivered::pending`], that none was: when every event went
    /// through, return `Ok(())` instead (an empty list offers the whole page again).
    pub fn some(pending: Vec<usize>, failure: Failure, reason: impl Into<String>) -> Self {
        Self {
            pending,
            reason: reason.into(),
            failure,
        }
    }
}

//! A subscription: one projection or sink following the gap-safe log with its own checkpoint
//! and lease.
//!
//! [`Subscription::step`] is the testable unit: read the next page after the checkpoint (of
//! the categories the subscriber follows), apply it to the projection or deliver it to the
//! sink, advance the checkpoint (fenced by the lease token). [`run`] is the thin loop around
//! it: acquire the lease or stand by, prepare the projection's tables (create them, or rebuild
//! them when the projection's version changed), step while there is work, wait for a
//! notification or the poll interval when there is none, back off on errors, stop (without
//! ever skipping) on an event that cannot be projected.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use order_store::{
    Cursor, EventListener, EventStore, Lease, LogDigest, RecordedEvent, advance_checkpoint,
    verify_read,
};
use tokio::sync::watch;
use tracing::Instrument;

use crate::projection::{
    ApplyError, BulkFold, Categories, Client, Page, Projection, Table, Tables, Transaction,
    is_identifier,
};
use crate::sink::{Failure, Sink};

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read up to `cursor` and applied (or delivered) `events` events of the subscriber's
    /// categories (0 when the page held only other categories).
    Progressed {
        /// Where the subscription is now.
        cursor: Cursor,
        /// How many of its events the page held.
        events: usize,
    },
    /// Nothing new after the checkpoint.
    Idle,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// An event cannot be projected or delivered (it does not decode, the projection refuses
    /// it, the statement fails for a reason that will not pass by itself): the subscription
    /// stops here, visibly, and retries slowly; the event is never skipped.
    #[error("{0}")]
    Stopped(String),
    /// Another instance (or an operator's replay) holds the lease now.
    #[error("the lease was lost")]
    LeaseLost,
    /// The database's checkpoint is not where this instance left it and the events it read
    /// last are gone (a failover to an asynchronous standby, a restore): nothing was written;
    /// the instance reads its checkpoint again and goes on from there.
    #[error("{0}")]
    CheckpointMoved(String),
    /// The process is shutting down; nothing was checkpointed.
    #[error("shutting down")]
    ShuttingDown,
    /// Database or destination trouble that may pass: retried with backoff.
    #[error("{0}")]
    Transient(String),
}

/// Whether `error` stops a subscription ([`StepError::Stopped`]): it will not pass by itself.
fn stops(error: &order_store::Error) -> bool {
    use order_store::Error;
    matches!(
        error,
        Error::Decode { .. }
            | Error::Encode(_)
            | Error::InvalidInput(_)
            | Error::Forbidden(_)
            | Error::SchemaMissing(_)
            | Error::Database(_)
    )
}

impl From<order_store::Error> for StepError {
    fn from(error: order_store::Error) -> Self {
        use order_store::Error;
        match error {
            Error::LeaseLost { .. } => Self::LeaseLost,
            Error::CheckpointMoved { .. } => Self::CheckpointMoved(error.to_string()),
            error if stops(&error) => Self::Stopped(error.to_string()),
            other => Self::Transient(other.to_string()),
        }
    }
}

impl From<order_store::tokio_postgres::Error> for StepError {
    fn from(error: order_store::tokio_postgres::Error) -> Self {
        order_store::Error::from(error).into()
    }
}

impl From<ApplyError> for StepError {
    fn from(error: ApplyError) -> Self {
        match error {
            ApplyError::Invalid { .. } => Self::Stopped(error.to_string()),
            ApplyError::Store(store) => store.into(),
        }
    }
}

/// What a projection's tables look like to this instance, after [`Subscription::prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Its tables are at this binary's version (created now if the projection is new):
    /// project from `cursor`.
    Ready {
        /// The checkpoint to continue from.
        cursor: Cursor,
    },
    /// Its tables were built by an older version: rebuild before projecting.
    Rebuild {
        /// The version in the database.
        registered: u32,
    },
    /// Its tables were built by a newer version (another binary): leave them alone.
    Newer {
        /// The version in the database.
        registered: u32,
    },
}

/// A projection's identity in the database: its version and tables.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    pub version: u32,
    pub tables: Vec<Table>,
    pub live: Tables,
    pub shadow: Tables,
}

/// A page's place in the log: the cursor it was read after (the checkpoint write checks that
/// the database still agrees with it), the cursor of its last event, and the digest of every
/// event read between them (checked too: the page must be the database's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) from: Cursor,
    pub(crate) to: Cursor,
    pub(crate) read: LogDigest,
}

/// Told of a failed delivery attempt, with why.
pub(crate) type Report = dyn Fn(&str) + Send + Sync;

/// The type-erased subscriber: what the runner needs of a projection or a sink.
pub(crate) trait Subscriber: Send + Sync {
    fn name(&self) -> &str;
    fn categories(&self) -> &Categories;
    fn page_size(&self) -> u32;
    fn schema(&self) -> Option<&Schema>;
    /// Projections: decode and apply the page in one transaction with the checkpoint.
    fn apply<'a>(
        &'a self,
        store: &'a EventStore,
        lease: &'a Lease,
        events: Vec<RecordedEvent>,
        span: Span,
        tables: &'a Tables,
        long: bool,
    ) -> BoxFuture<'a, Result<(), ApplyError>>;
    /// Sinks: decode and deliver until every event was acknowledged, sending nothing once
    /// the database says `holder`'s lease is gone; `report` is told of each failed attempt
    /// (the subscription's status shows it).
    fn deliver<'a>(
        &'a self,
        events: Vec<RecordedEvent>,
        holder: Holder<'a>,
        shutdown: &'a watch::Receiver<bool>,
        report: &'a Report,
    ) -> BoxFuture<'a, Result<(), StepError>>;
    fn bulk(&self) -> Option<Box<dyn ErasedFold>>;
    fn ready(&self) -> BoxFuture<'_, Result<(), String>>;
    /// Sinks: offer a range of the log again, under no lease (`None` for a projection).
    fn republish<'a>(
        &'a self,
        store: &'a EventStore,
        from: u64,
        through: u64,
        shutdown: &'a watch::Receiver<bool>,
    ) -> Option<
        BoxFuture<'a, Result<crate::republish::Republished, crate::republish::RepublishError>>,
    >;
}

/// [`BulkFold`] over stored events.
pub(crate) trait ErasedFold: Send {
    fn fold<'a>(
        &'a mut self,
        events: Vec<RecordedEvent>,
        client: &'a Client,
        tables: &'a Tables,
    ) -> BoxFuture<'a, Result<(), ApplyError>>;
    fn should_flush(&self) -> bool;
    fn flush<'a>(
        &'a mut self,
        tx: &'a Transaction<'_>,
        tables: &'a Tables,
    ) -> BoxFuture<'a, Result<(), ApplyError>>;
    fn finish<'a>(
        &'a mut self,
        tx: &'a Transaction<'_>,
        tables: &'a Tables,
    ) -> BoxFuture<'a, Result<(), ApplyError>>;
}

struct Folding<E> {
    inner: Box<dyn BulkFold<E>>,
}

impl<E: crate::projection::Decode> ErasedFold for Folding<E> {
    fn fold<'a>(
        &'a mut self,
        events: Vec<RecordedEvent>,
        client: &'a Client,
        tables: &'a Tables,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            let page = Page::<E>::decode(events)?;
            self.inner.fold(&page, client, tables).await
        })
    }

    fn should_flush(&self) -> bool {
        self.inner.should_flush()
    }

    fn flush<'a>(
        &'a mut self,
        tx: &'a Transaction<'_>,
        tables: &'a Tables,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        self.inner.flush(tx, tables)
    }

    fn finish<'a>(
        &'a mut self,
        tx: &'a Transaction<'_>,
        tables: &'a Tables,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        self.inner.finish(tx, tables)
    }
}

struct ProjectionBox<P> {
    projection: P,
    name: String,
    categories: Categories,
    schema: Schema,
}

impl<P: Projection> Subscriber for ProjectionBox<P> {
    fn name(&self) -> &str {
        &self.name
    }

    fn categories(&self) -> &Categories {
        &self.categories
    }

    fn page_size(&self) -> u32 {
        self.projection.page_size()
    }

    fn schema(&self) -> Option<&Schema> {
        Some(&self.schema)
    }

    fn apply<'a>(
        &'a self,
        store: &'a EventStore,
        lease: &'a Lease,
        events: Vec<RecordedEvent>,
        span: Span,
        tables: &'a Tables,
        long: bool,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            let count = events.len() as u64;
            let last_event_at = events.last().map(|e| e.recorded_at);
            let page = Page::<P::Event>::decode(events)?;
            let work = async {
                let mut client = store.connection().await?;
                let tx = client.transaction().await?;
                // Every statement of the page is planned for its own arguments and the tables
                // as they are now. A plan cached while a table was small (a new deployment,
                // a table analyzed while empty) is otherwise kept by the connection however
                // much the table grows: the read model's lookup by order id once kept
                // scanning the placed-at index on every page, quadratically, a fifth of the
                // catch-up rate on the bench. Planning a page's statements costs well under a
                // millisecond.
                tx.batch_execute(if long {
                    "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL statement_timeout = 0"
                } else {
                    "SET LOCAL plan_cache_mode = force_custom_plan"
                })
                .await?;
                if let Err(error) = self.projection.apply(&page, &tx, tables).await {
                    drop(tx);
                    // A page the projection refuses may have been read after a cursor this
                    // database never wrote: after a failover to an asynchronous standby the
                    // instance remembers a checkpoint the lost transactions moved, and reads
                    // from the middle of an order. That is a moved checkpoint, read again,
                    // not a reason to stop.
                    let stored = store.checkpoint(&lease.subscription).await?;
                    if stored != span.from {
                        return Err(ApplyError::Store(order_store::Error::CheckpointMoved {
                            subscription: lease.subscription.clone(),
                            expected: format!(
                                "at {}, the database has {stored}; the page after it was refused: {error}",
                                span.from
                            ),
                        }));
                    }
                    return Err(error);
                }
                verify_read(&tx, &lease.subscription, span.from, span.to, &span.read).await?;
                advance_checkpoint(&tx, lease, span.from, span.to, count, last_event_at).await?;
                tx.commit().await?;
                Ok::<(), ApplyError>(())
            };
            if long {
                work.await
            } else {
                tokio::time::timeout(store.config().call_timeout() * 2, work)
                    .await
                    .map_err(|_| ApplyError::Store(order_store::Error::Timeout))?
            }
        })
    }

    fn deliver<'a>(
        &'a self,
        _events: Vec<RecordedEvent>,
        _holder: Holder<'a>,
        _shutdown: &'a watch::Receiver<bool>,
        _report: &'a Report,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async {
            Err(StepError::Stopped(
                "a projection does not deliver; this is a bug".into(),
            ))
        })
    }

    fn bulk(&self) -> Option<Box<dyn ErasedFold>> {
        self.projection
            .bulk()
            .map(|inner| Box::new(Folding { inner }) as Box<dyn ErasedFold>)
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn republish<'a>(
        &'a self,
        _store: &'a EventStore,
        _from: u64,
        _through: u64,
        _shutdown: &'a watch::Receiver<bool>,
    ) -> Option<
        BoxFuture<'a, Result<crate::republish::Republished, crate::republish::RepublishError>>,
    > {
        None
    }
}

struct SinkBox<S> {
    sink: S,
    name: String,
    categories: Categories,
}

impl<S: Sink> Subscriber for SinkBox<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn categories(&self) -> &Categories {
        &self.categories
    }

    fn page_size(&self) -> u32 {
        self.sink.page_size()
    }

    fn schema(&self) -> Option<&Schema> {
        None
    }

    fn apply<'a>(
        &'a self,
        _store: &'a EventStore,
        _lease: &'a Lease,
        _events: Vec<RecordedEvent>,
        _span: Span,
        _tables: &'a Tables,
        _long: bool,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async {
            Err(ApplyError::Store(order_store::Error::Database(
                "a sink has no tables; this is a bug".into(),
            )))
        })
    }

    fn deliver<'a>(
        &'a self,
        events: Vec<RecordedEvent>,
        holder: Holder<'a>,
        shutdown: &'a watch::Receiver<bool>,
        report: &'a Report,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let page = Page::<S::Event>::decode(events)?;
            let attempts = Attempts {
                name: &self.name,
                shutdown,
                give_up_after: None,
                report: Some(report),
            };
            deliver_under(&self.sink, page, Some(holder), attempts).await
        })
    }

    fn bulk(&self) -> Option<Box<dyn ErasedFold>> {
        None
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.sink.ready())
    }

    fn republish<'a>(
        &'a self,
        store: &'a EventStore,
        from: u64,
        through: u64,
        shutdown: &'a watch::Receiver<bool>,
    ) -> Option<
        BoxFuture<'a, Result<crate::republish::Republished, crate::republish::RepublishError>>,
    > {
        Some(Box::pin(crate::republish::republish_to(
            store, &self.sink, &self.name, &self.name, from, through, shutdown, true,
        )))
    }
}

/// Whether a new projection `name` (none registered) would take over a subscription that has
/// moved on already:
/// the name is in use by a sink, or by a projection whose registration was removed; taking it
/// over would start that checkpoint over (or, by a replay, move it to the head).
/// `Ok(Some(why))` when it is in use.
pub(crate) async fn name_in_use(
    store: &EventStore,
    name: &str,
) -> Result<Option<String>, order_store::Error> {
    let checkpoint = store.checkpoint(name).await?;
    if checkpoint == Cursor::START {
        return Ok(None);
    }
    Ok(Some(format!(
        "subscription name {name} is in use: its checkpoint is at position {} but no projection of that name is registered (a sink's, or a projection's whose registration was removed); give this projection a name of its own (every binary using this database shares the names)",
        checkpoint.global_position
    )))
}

/// Offer `page` to `sink` until every event was acknowledged (retrying what was not, after a
/// backoff), or until shutdown. Under no lease (a republish): nothing fences the sends.
pub(crate) async fn deliver_all<S: Sink>(
    sink: &S,
    name: &str,
    page: Page<S::Event>,
    shutdown: &watch::Receiver<bool>,
    give_up_after: Option<u32>,
    report: Option<&Report>,
) -> Result<(), StepError> {
    let attempts = Attempts {
        name,
        shutdown,
        give_up_after,
        report,
    };
    deliver_under(sink, page, None, attempts).await
}

/// The lease a delivery is made under, and where to ask whether it is still held.
#[derive(Clone, Copy)]
pub(crate) struct Holder<'a> {
    pub(crate) store: &'a EventStore,
    pub(crate) lease: &'a Lease,
}

impl Holder<'_> {
    /// Whether the database still has the lease as this holder took it.
    async fn holds(&self) -> Result<bool, order_store::Error> {
        self.store.holds_lease(self.lease).await
    }
}

/// How a delivery goes about its failed attempts.
struct Attempts<'a> {
    /// The subscription's name (logs and metrics).
    name: &'a str,
    shutdown: &'a watch::Receiver<bool>,
    /// Stop (as on an event that cannot be delivered) after this many failed attempts.
    give_up_after: Option<u32>,
    /// Told of each failed attempt.
    report: Option<&'a Report>,
}

impl Attempts<'_> {
    /// After failed attempt number `attempt`: count and report it, then wait the backoff.
    async fn failed(
        &self,
        attempt: u32,
        kind: &'static str,
        reason: &str,
    ) -> Result<(), StepError> {
        metrics::counter!("order_projector_errors_total", "subscription" => self.name.to_owned(), "kind" => kind)
            .increment(1);
        if let Some(report) = self.report {
            report(&format!(
                "delivery failed ({kind}, attempt {attempt}): {reason}"
            ));
        }
        if self.give_up_after.is_some_and(|most| attempt >= most) {
            return Err(StepError::Stopped(format!(
                "{attempt} attempts to deliver failed, the last: {reason}"
            )));
        }
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(backoff(attempt)) => Ok(()),
            _ = shutdown.wait_for(|stop| *stop) => Err(StepError::ShuttingDown),
        }
    }
}

/// Offer `page` to `sink` until every event was acknowledged (retrying what was not, after a
/// backoff), or until shutdown. Under a lease (`holder`), every offer, the first and each
/// retry, is made only after the database said that the lease is still held: an instance
/// that lost it (to a replay, or to a standby while it was paused) stops with
/// [`StepError::LeaseLost`] instead of sending the page again, perhaps long after the new
/// holder delivered it and past the destination's deduplication window. When the database
/// cannot tell, nothing is sent until it can.
async fn deliver_under<S: Sink>(
    sink: &S,
    mut page: Page<S::Event>,
    holder: Option<Holder<'_>>,
    attempts: Attempts<'_>,
) -> Result<(), StepError> {
    let name = attempts.name;
    let mut attempt = 0u32;
    while !page.is_empty() {
        if *attempts.shutdown.borrow() {
            return Err(StepError::ShuttingDown);
        }
        if let Some(holder) = holder {
            match holder.holds().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(subscription = %name, "the lease was lost; nothing more of the page is sent");
                    return Err(StepError::LeaseLost);
                }
                Err(error) => match StepError::from(error) {
                    StepError::Transient(why) => {
                        attempt += 1;
                        let reason = format!("cannot tell whether the lease is still held: {why}");
                        tracing::warn!(subscription = %name, error = %reason, attempt, "delivery held back; retrying");
                        attempts.failed(attempt, "transient", &reason).await?;
                        continue;
                    }
                    other => return Err(other),
                },
            }
        }
        let Err(undelivered) = sink.deliver(&page).await else {
            return Ok(());
        };
        let reason = &undelivered.reason;
        // An index the page does not have is a defect in the sink (counting from 1, say):
        // dropping it would count events nobody acknowledged as delivered.
        if let Some(bad) = undelivered.pending.iter().find(|&&i| i >= page.len()) {
            return Err(StepError::Stopped(format!(
                "the sink reported event index {bad} as undelivered, but its page has {} events \
                 (indexes are 0-based); nothing of the page counts as delivered ({reason})",
                page.len()
            )));
        }
        let offered = page.len();
        if !undelivered.pending.is_empty() {
            page.retain_indexes(&undelivered.pending);
        }
        // Failed attempts count in a row: one that had some of the page acknowledged made
        // progress (a throttle on part of a batch, say) and starts the count and the backoff
        // again, so a destination taking a little at a time is not given up on.
        if page.len() < offered {
            attempt = 0;
        }
        attempt += 1;
        let kind = match undelivered.failure {
            Failure::Invalid => {
                return Err(StepError::Stopped(format!("cannot deliver: {reason}")));
            }
            Failure::Refused => {
                match attempts.give_up_after {
                    // A one-off run (republish) that gives up after its attempts.
                    Some(limit) => {
                        tracing::error!(subscription = %name, error = %reason, attempt, limit, "delivery refused; retrying, then giving up after {limit} attempts in a row");
                    }
                    None => {
                        tracing::error!(subscription = %name, error = %reason, attempt, "delivery refused; retrying until someone acts (no event is skipped)");
                    }
                }
                "refused"
            }
            Failure::Transient => {
                tracing::warn!(subscription = %name, error = %reason, attempt, "delivery failed; retrying");
                "transient"
            }
        };
        attempts.failed(attempt, kind, reason).await?;
    }
    Ok(())
}

/// A projection or a sink, ready to follow the log. Cheap to clone.
#[derive(Clone)]
pub struct Subscription {
    inner: Arc<dyn Subscriber>,
    /// Pages of only other categories read past the checkpoint.
    skipped: Arc<Mutex<Skipped>>,
    /// The next page, being read while this one is applied (catching up only).
    ahead: Arc<Mutex<Option<ReadAhead>>>,
    /// A sink's page that was delivered in full but not checkpointed yet.
    acked: Arc<Mutex<Option<Acked>>>,
    /// When the checkpoint was last found where this instance left it, at the head, and
    /// under which lease (owner and token).
    head_check: Arc<Mutex<Option<(Instant, String, i64)>>>,
}

/// A page a sink acknowledged in full under a lease, whose checkpoint write has not gone
/// through (yet): a database blip, a timeout, a write refused. The next step under the same
/// lease from the same cursor writes only the checkpoint, with the same checks (the database
/// holds what was read, the checkpoint is where this holder left it, the lease token),
/// instead of reading and delivering the page again: a blip longer than the destination's
/// deduplication window must not send every event of the page twice. Under another lease
/// (another holder may have delivered and moved on meanwhile) it is forgotten.
#[derive(Debug, Clone, Copy)]
struct Acked {
    /// The lease token it was delivered under.
    token: i64,
    /// The cursor the step that delivered it was given.
    after: Cursor,
    /// What the checkpoint write moves over.
    span: Span,
    /// How many of the subscriber's events it held.
    events: usize,
    /// When its last event was recorded.
    last_event_at: Option<SystemTime>,
}

/// A page read on a task of its own while the page before it is applied or delivered: while
/// a subscription catches up, reading the log (one backend) and writing the projection
/// (another) overlap instead of taking turns. The page holds the events after `after` below
/// the fence when it was read (every transaction below it had ended, so nothing can ever
/// appear between its events; a later read may stop shorter, the fence standing lower for a
/// moment, but never shows others there), so it is as good whenever it is used, by whichever
/// lease holder, as long as it continues from exactly the cursor it was read after.
struct ReadAhead {
    after: Cursor,
    page: tokio::task::JoinHandle<Result<ReadPage, order_store::Error>>,
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.page.abort();
    }
}

/// Where a subscription of some categories is, past pages of other categories only: their
/// checkpoint is written at most once a second (and when it catches up), not per page.
#[derive(Debug, Default)]
struct Skipped {
    /// When such a page last moved the checkpoint.
    written_at: Option<Instant>,
    /// The end of the last such page, when the checkpoint was not moved to it.
    unwritten: Option<Cursor>,
    /// While `unwritten` is set: the checkpoint the database has (every checkpoint write moves
    /// from exactly where the database has it, so that a database that lost writes is
    /// noticed: [`order_store::Error::CheckpointMoved`]).
    stored: Option<Cursor>,
    /// While `unwritten` is set: the digest of what was read from `stored` to it (the write
    /// checks that the database holds exactly that).
    read: LogDigest,
    /// The lease token `unwritten` was reached under. A position held under another lease
    /// says nothing about the database: another holder (a replay, a standby that took over)
    /// may have moved the checkpoint meanwhile, even to that very position.
    token: Option<i64>,
}

impl Skipped {
    /// The checkpoint was written: no position is held in memory past it.
    fn clear(&mut self) {
        self.unwritten = None;
        self.stored = None;
        self.read = LogDigest::EMPTY;
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name())
            .field("categories", self.categories())
            .field("version", &self.version())
            .finish()
    }
}

/// How long a subscription at the head of the log may keep a position past pages of other
/// categories in memory before writing it (the checkpoint still moves past them, just not
/// once per wake-up).
const SKIP_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How often a subscription at the head checks that the database still has its checkpoint
/// where it left it (a failover to an asynchronous standby or a restore may have lost it):
/// such a loss is noticed within this long, and an instance woken for every commit does not
/// read its checkpoint at every wake-up.
const HEAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl Subscription {
    /// A subscription applying `projection`.
    pub fn projection<P: Projection>(projection: P) -> Self {
        let tables = projection.tables();
        let schema = Schema {
            version: projection.version(),
            live: Tables::live(&tables),
            shadow: Tables::shadow(&tables),
            tables,
        };
        Self::new(ProjectionBox {
            name: projection.name().to_owned(),
            categories: projection.categories(),
            schema,
            projection,
        })
    }

    /// A subscription delivering to `sink`.
    pub fn sink<S: Sink>(sink: S) -> Self {
        Self::new(SinkBox {
            name: sink.name().to_owned(),
            categories: sink.categories(),
            sink,
        })
    }

    fn new(inner: impl Subscriber + 'static) -> Self {
        Self {
            inner: Arc::new(inner),
            skipped: Arc::new(Mutex::new(Skipped::default())),
            ahead: Arc::new(Mutex::new(None)),
            acked: Arc::new(Mutex::new(None)),
            head_check: Arc::new(Mutex::new(None)),
        }
    }

    /// The subscription's name (its checkpoint and lease).
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The streams it follows.
    pub fn categories(&self) -> &Categories {
        self.inner.categories()
    }

    /// The projection's version; `None` for a sink.
    pub fn version(&self) -> Option<u32> {
        self.inner.schema().map(|s| s.version)
    }

    /// The projection's tables (none for a sink).
    pub fn tables(&self) -> &[Table] {
        self.inner.schema().map_or(&[], |s| &s.tables)
    }

    /// A sink's: offer it every event of its categories with `from <= global_position <=
    /// through` again, in pages, in the log's order, under no lease and beside whatever runs
    /// it (the sink must take events it already has, as it does after any failover); except,
    /// when an event the sink has not had (after its checkpoint) lies before `from`, the
    /// events of the range after its checkpoint, which would overtake it: those are left to
    /// the running sink, which delivers them in order. Retrying
    /// what it does not acknowledge; it gives up after about half a minute of attempts that
    /// had nothing acknowledged (one that had some starts that count again). Its checkpoint
    /// does not move. Returns how many events it was offered; a stop (`shutdown`,
    /// an event it refuses for good, the log out of reach) says which `from` and `to` resume
    /// it. A projection is refused: rebuild it with a replay.
    pub async fn republish(
        &self,
        store: &EventStore,
        from: u64,
        through: u64,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<u64, crate::republish::RepublishError> {
        Ok(self
            .republish_reporting(store, from, through, shutdown)
            .await?
            .sent)
    }

    /// [`Subscription::republish`], saying what it left to the sink.
    pub(crate) async fn republish_reporting(
        &self,
        store: &EventStore,
        from: u64,
        through: u64,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<crate::republish::Republished, crate::republish::RepublishError> {
        self.validate().map_err(|why| {
            crate::republish::RepublishError::Stopped(format!("{why} (nothing was sent)"))
        })?;
        match self.inner.republish(store, from, through, shutdown) {
            Some(republish) => republish.await,
            None => Err(crate::republish::RepublishError::Stopped(format!(
                "{} is a projection: rebuild it with `replay --projection {}` (nothing was sent)",
                self.name(),
                self.name()
            ))),
        }
    }

    /// This step wrote the checkpoint: nothing is left unwritten after it.
    fn written(&self) {
        self.skipped().clear();
    }

    fn skipped(&self) -> std::sync::MutexGuard<'_, Skipped> {
        self.skipped.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn acked(&self) -> std::sync::MutexGuard<'_, Option<Acked>> {
        self.acked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a step at the head under `lease` checks the database's checkpoint: at most
    /// once per [`HEAD_CHECK_INTERVAL`] under one lease (its owner and token: tokens count per
    /// subscription and may repeat after a failover), at once under another.
    fn head_check_due(&self, lease: &Lease) -> bool {
        let checked = self.head_check.lock().unwrap_or_else(|e| e.into_inner());
        !matches!(&*checked, Some((at, owner, token))
            if *token == lease.token && *owner == lease.owner && at.elapsed() < HEAD_CHECK_INTERVAL)
    }

    /// The checkpoint was found where this instance left it, under `lease`.
    fn head_checked(&self, lease: &Lease) {
        *self.head_check.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), lease.owner.clone(), lease.token));
    }

    /// Move the checkpoint over a page the sink acknowledged in full. Until that went
    /// through, the page is remembered as delivered ([`Acked`]), so that the step after a
    /// failed write does not deliver it again. A write that found the lease lost or the
    /// checkpoint moved forgets it: the page is then read again from the database's
    /// checkpoint, by whoever holds the lease.
    async fn checkpoint_acked(
        &self,
        store: &EventStore,
        lease: &Lease,
        acked: Acked,
    ) -> Result<Step, StepError> {
        *self.acked() = Some(acked);
        let written = checkpoint(
            store,
            lease,
            acked.span,
            acked.events as u64,
            acked.last_event_at,
        )
        .await;
        if let Err(error) = written {
            let error = StepError::from(error);
            if matches!(error, StepError::LeaseLost | StepError::CheckpointMoved(_)) {
                self.acked().take();
            }
            return Err(error);
        }
        self.acked().take();
        self.written();
        metrics::counter!("order_projector_events_total", "subscription" => self.name().to_owned())
            .increment(acked.events as u64);
        Ok(Step::Progressed {
            cursor: acked.span.to,
            events: acked.events,
        })
    }

    /// The page after `cursor`: the one read ahead if it continues from there and holds
    /// something (an empty one is read again: events may have arrived since, and a wait
    /// for their notification would miss them), else read now. A full page starts the
    /// reading of the next one.
    async fn next_page(
        &self,
        store: &EventStore,
        cursor: Cursor,
        page_size: u32,
    ) -> Result<ReadPage, order_store::Error> {
        let ahead = self
            .ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .filter(|ahead| ahead.after == cursor);
        let early = match ahead {
            Some(mut ahead) => match (&mut ahead.page).await {
                Ok(Ok(read)) if read.end.is_some() => Some(read),
                _ => None,
            },
            None => None,
        };
        let read = match early {
            Some(read) => read,
            None => read_page(store, cursor, page_size, self.categories()).await?,
        };
        if let (true, Some(end)) = (read.full, read.end) {
            let (store, categories) = (store.clone(), self.categories().clone());
            let page =
                tokio::spawn(async move { read_page(&store, end, page_size, &categories).await });
            *self.ahead.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(ReadAhead { after: end, page });
        }
        Ok(read)
    }

    pub(crate) fn subscriber(&self) -> &dyn Subscriber {
        &*self.inner
    }

    /// Check what can be checked without a database: name, version, categories, tables,
    /// page size.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name();
        if !is_identifier(name, 63) {
            return Err(format!(
                "subscription name {name:?} must be 1-63 lowercase letters, digits or '_', starting with a letter"
            ));
        }
        self.categories()
            .validate()
            .map_err(|e| format!("subscription {name}: {e}"))?;
        let page = self.inner.page_size();
        if !(1..=100_000).contains(&page) {
            return Err(format!(
                "subscription {name}: page size {page} is not in 1..=100000"
            ));
        }
        if let Some(schema) = self.inner.schema() {
            if schema.version == 0 {
                return Err(format!("projection {name}: versions start at 1"));
            }
            if schema.tables.is_empty() {
                return Err(format!("projection {name} declares no table"));
            }
            let mut seen = std::collections::HashSet::new();
            for table in &schema.tables {
                table
                    .validate()
                    .map_err(|e| format!("projection {name}: {e}"))?;
                if !seen.insert(table.name()) {
                    return Err(format!(
                        "projection {name} declares table {} twice",
                        table.name()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the sink's destination answers (projections: always).
    pub async fn ready(&self) -> Result<(), String> {
        self.inner.ready().await
    }

    /// For a sink: [`StepError::Stopped`] when a projection of its name is registered (a sink
    /// and a projection of one name would share one checkpoint). Projections: always `Ok`.
    async fn refuse_sink_of_a_projections_name(&self, store: &EventStore) -> Result<(), StepError> {
        if self.inner.schema().is_some() {
            return Ok(());
        }
        let client = store.connection().await?;
        if let Some(registered) = crate::tables::registered(&client, self.name()).await? {
            return Err(StepError::Stopped(format!(
                "subscription name {} belongs to a projection (registered at version {}, tables {:?}): a sink and a projection never share a name, and every binary using this database shares the names; give the sink a name of its own",
                self.name(),
                registered.version,
                registered.tables
            )));
        }
        Ok(())
    }

    /// For a projection, under its lease: create its tables if it is new (and start it from
    /// the beginning of the log), or find out whether the tables in the database are at this
    /// binary's version. Sinks are always ready.
    ///
    /// Subscription names are shared by every binary using the database: a sink named like a
    /// registered projection, or a new projection named like a subscription that has moved on
    /// (a sink's), is refused ([`StepError::Stopped`]) and nothing changes; the two would share
    /// one checkpoint, each moving it past events the other never saw.
    pub async fn prepare(&self, store: &EventStore, lease: &Lease) -> Result<Prepared, StepError> {
        let Some(schema) = self.inner.schema() else {
            self.refuse_sink_of_a_projections_name(store).await?;
            return Ok(Prepared::Ready {
                cursor: store.checkpoint(self.name()).await?,
            });
        };
        let mut client = store.connection().await?;
        match crate::tables::registered(&client, self.name()).await? {
            Some(registered) if registered.version == schema.version => {
                if let Some(why) = crate::tables::other_tables_at_registered_version(
                    self.name(),
                    &schema.tables,
                    &registered,
                ) {
                    return Err(StepError::Stopped(why));
                }
                let missing = crate::tables::missing(&client, &schema.tables).await?;
                if !missing.is_empty() {
                    return Err(StepError::Stopped(format!(
                        "projection {} is registered at version {} but its tables {missing:?} are missing; replay rebuilds them",
                        self.name(),
                        schema.version
                    )));
                }
                crate::tables::own_existing(&mut client, &schema.tables).await?;
                Ok(Prepared::Ready {
                    cursor: store.checkpoint(self.name()).await?,
                })
            }
            Some(registered) if registered.version < schema.version => Ok(Prepared::Rebuild {
                registered: registered.version,
            }),
            Some(registered) => Ok(Prepared::Newer {
                registered: registered.version,
            }),
            None => {
                if let Some(why) = name_in_use(store, self.name()).await? {
                    return Err(StepError::Stopped(why));
                }
                // A new projection: its tables, its registration and a checkpoint at the
                // start of the log, in one transaction fenced by the lease.
                let tx = client.transaction().await?;
                crate::tables::create_live(&tx, self.name(), schema).await?;
                order_store::restart_checkpoint(&tx, lease).await?;
                tx.commit().await?;
                tracing::info!(projection = %self.name(), version = schema.version, tables = ?schema.tables.iter().map(Table::name).collect::<Vec<_>>(), "projection created; catching up from the start of the log");
                Ok(Prepared::Ready {
                    cursor: Cursor::START,
                })
            }
        }
    }

    /// Read the next page after `cursor`, apply or deliver it, and advance the checkpoint
    /// (fenced by `lease`).
    ///
    /// A sink is offered the page (and each retry of it) only after the database said that
    /// `lease` is still held; once it is not, the step ends with [`StepError::LeaseLost`]
    /// without sending again. A page the sink acknowledged in full whose checkpoint write then
    /// failed is not delivered again by the next step under the same lease from the same
    /// `cursor`: that step only writes the checkpoint (with the same checks).
    pub async fn step(
        &self,
        store: &EventStore,
        lease: &Lease,
        cursor: Cursor,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Step, StepError> {
        let page_size = self.inner.page_size();
        // The checkpoint as the database has it: the cursor itself, unless pages of other
        // categories were read past it without writing.
        // With it, the digest of what was read since.
        let (from, carried) = {
            let mut skipped = self.skipped();
            if skipped.token != Some(lease.token) {
                // Reached under another lease (this instance's own earlier one included): the
                // checkpoint the lease was taken with is where the database has it.
                skipped.clear();
                skipped.token = Some(lease.token);
            }
            match (skipped.unwritten, skipped.stored) {
                (Some(reached), Some(stored)) if reached == cursor => (stored, skipped.read),
                _ => (cursor, LogDigest::EMPTY),
            }
        };
        // A page delivered in full from this cursor under this lease, not checkpointed yet:
        // write only the checkpoint (any other remembered page is stale: forgotten).
        let acked = self
            .acked()
            .take()
            .filter(|acked| acked.token == lease.token && acked.after == cursor);
        if let Some(acked) = acked {
            return self.checkpoint_acked(store, lease, acked).await;
        }
        let ReadPage {
            events,
            end,
            digest,
            ..
        } = self.next_page(store, cursor, page_size).await?;
        let Some(end) = end else {
            // At the head: a position past pages of other categories is written now (only
            // the one this instance reached with this cursor, never an older one).
            // The skip state is cleared only once the write went through: a failed one is
            // tried again from where the database still has the checkpoint.
            let unwritten = self.skipped().unwritten;
            if unwritten.is_some() && unwritten != Some(cursor) {
                self.skipped().clear();
            }
            if unwritten == Some(cursor) {
                checkpoint(
                    store,
                    lease,
                    Span {
                        from,
                        to: cursor,
                        read: carried,
                    },
                    0,
                    None,
                )
                .await?;
                let mut skipped = self.skipped();
                skipped.written_at = Some(Instant::now());
                skipped.clear();
            } else {
                // Nothing after the cursor proves nothing about it: a database that lost
                // writes (a failover to an asynchronous standby, a restore) lost this
                // instance's last checkpoints too, and hands their transactions' ids out
                // again, below the cursor, so the events after its own checkpoint and every
                // new one would stay behind the cursor until the ids passed it (never, once
                // writes stop). At the head the database must still have the checkpoint where
                // this instance left it. One read by primary key, at most once a second per
                // lease (under load every wake-up may end at the head). The lease is read with
                // it: a checkpoint another holder moved is a lost lease, not lost writes.
                if self.head_check_due(lease) {
                    match store.checkpoint_under_lease(lease).await? {
                        None => return Err(StepError::LeaseLost),
                        Some(stored) if stored != from => {
                            return Err(StepError::CheckpointMoved(format!(
                                "at the head at {from}, the database has the checkpoint at {stored}"
                            )));
                        }
                        Some(_) => self.head_checked(lease),
                    }
                }
            }
            return Ok(Step::Idle);
        };
        let span = Span {
            from,
            to: end,
            read: carried.merge(digest),
        };
        let count = events.len();
        let last_event_at = events.last().map(|e| e.recorded_at);
        let trace = tracing::info_span!(
            "project",
            subscription = %self.name(),
            events = count,
            from = %cursor,
            to = %end,
        );
        if order_runtime::trace::enabled() {
            // The batch links to the traces of the commands that produced its events.
            let mut linked = std::collections::HashSet::new();
            for event in &events {
                if let Some(traceparent) = &event.metadata.traceparent
                    && linked.len() < 64
                    && linked.insert(traceparent.as_str())
                {
                    order_runtime::trace::add_link(&trace, traceparent);
                }
            }
        }
        async {
            if events.is_empty() {
                // A page of other categories only: the caller moves past it; the checkpoint
                // follows at most once a second (a crash re-reads at most that much).
                // The skip state changes only once the write went through: a failed one is
                // tried again from where the database still has the checkpoint.
                let due = self
                    .skipped()
                    .written_at
                    .is_none_or(|at| at.elapsed() >= SKIP_CHECKPOINT_INTERVAL);
                if due {
                    checkpoint(store, lease, span, 0, None).await?;
                    let mut skipped = self.skipped();
                    skipped.written_at = Some(Instant::now());
                    skipped.clear();
                } else {
                    let mut skipped = self.skipped();
                    skipped.unwritten = Some(end);
                    skipped.stored = Some(from);
                    skipped.read = span.read;
                }
            } else if let Some(schema) = self.inner.schema() {
                self.inner
                    .apply(store, lease, events, span, &schema.live, false)
                    .await?;
                self.written();
            } else {
                // Nothing leaves for a sink that the database does not hold: pages read
                // from a server that then failed over are read again from the new one.
                verify(store, lease, span).await?;
                // Each failed attempt shows in `status` (cleared by the next checkpoint), written
                // beside the retries, never holding them up.
                let (store_of_report, lease_of_report) = (store.clone(), lease.clone());
                let report = move |why: &str| {
                    let (store, lease) = (store_of_report.clone(), lease_of_report.clone());
                    let why = why.to_owned();
                    tokio::spawn(async move {
                        let _ = store.record_subscription_error(&lease, &why).await;
                    });
                };
                let holder = Holder { store, lease };
                self.inner.deliver(events, holder, shutdown, &report).await?;
                let acked = Acked {
                    token: lease.token,
                    after: cursor,
                    span,
                    events: count,
                    last_event_at,
                };
                // Counted there, once the checkpoint went through.
                return self.checkpoint_acked(store, lease, acked).await;
            }
            metrics::counter!("order_projector_events_total", "subscription" => self.name().to_owned())
                .increment(count as u64);
            Ok(Step::Progressed { cursor: end, events: count })
        }
        .instrument(trace)
        .await
    }
}

/// A page of the log as a subscriber reads it.
pub(crate) struct ReadPage {
    /// The events of the subscriber's categories.
    pub(crate) events: Vec<RecordedEvent>,
    /// The cursor of the last event read (of any category), `None` when nothing was read.
    pub(crate) end: Option<Cursor>,
    /// Whether the read reached its limit: more may follow right away.
    pub(crate) full: bool,
    /// The digest of every event read, of any category.
    pub(crate) digest: LogDigest,
}

/// The next page after `cursor`: the events of `categories`, and the cursor of the last event
/// read (of any category), `None` when there was nothing to read.
pub(crate) async fn read_page(
    store: &EventStore,
    cursor: Cursor,
    limit: u32,
    categories: &Categories,
) -> Result<ReadPage, order_store::Error> {
    let page = match categories {
        Categories::All => store.read_page(cursor, limit, None).await?,
        Categories::Only(names) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            store.read_page(cursor, limit, Some(&names)).await?
        }
    };
    Ok(ReadPage {
        full: page.read >= limit as usize,
        events: page.events,
        end: page.end,
        digest: page.digest,
    })
}

/// Move the checkpoint over `span` in a transaction of its own (fenced by the lease), if the
/// database holds what was read.
async fn checkpoint(
    store: &EventStore,
    lease: &Lease,
    span: Span,
    events: u64,
    last_event_at: Option<SystemTime>,
) -> Result<(), order_store::Error> {
    store
        .timed(async {
            let mut client = store.connection().await?;
            let tx = client.transaction().await?;
            verify_read(&tx, &lease.subscription, span.from, span.to, &span.read).await?;
            advance_checkpoint(&tx, lease, span.from, span.to, events, last_event_at).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
}

/// Check that the database holds what was read over `span` (before anything leaves).
async fn verify(store: &EventStore, lease: &Lease, span: Span) -> Result<(), order_store::Error> {
    store
        .timed(async {
            let client = store.connection().await?;
            verify_read(&client, &lease.subscription, span.from, span.to, &span.read).await
        })
        .await
}

/// How the loop behaves.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// This instance's name in the lease: one per running process. A process that finds its
    /// lease taken under this same name (another process started with it) logs an ERROR,
    /// counts `order_projector_errors_total{kind="duplicate_owner"}` and stands by under a
    /// name of its own (this one with a random suffix), so the two settle instead of taking
    /// the lease from each other at every renewal. A process restarted under its old name
    /// takes its lease back at once.
    pub owner: String,
    /// How long a lease lasts without renewal: a dead owner is replaced after at most this.
    pub lease_ttl: Duration,
    /// How long a caught-up subscription waits for a notification before polling anyway.
    pub poll: Duration,
    /// How often a standby tries to take the lease. Retries after a failure to prepare a
    /// projection's tables wait 5 times this (at most 30 s); after a failed rebuild, 15 times
    /// this (at most 30 s), doubling with each failure in a row up to 20 times the first
    /// wait (10 minutes at the default of 2 s).
    pub standby_poll: Duration,
    /// Events per read when a projection is rebuilt after a version change.
    pub rebuild_page: u32,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            owner: crate::config::default_instance_id(),
            lease_ttl: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            standby_poll: Duration::from_secs(2),
            rebuild_page: 5000,
        }
    }
}

/// How long a subscription stopped on an event waits before trying it again.
const STOPPED_RETRY: Duration = Duration::from_secs(30);

/// How long to wait after the `failures`-th failed rebuild in a row before the next attempt:
/// each attempt scans the log from its start again, so the wait doubles with each failure,
/// from 15 standby polls (at most [`STOPPED_RETRY`]: 30 s by default) to 20 times that
/// (10 minutes by default).
fn rebuild_backoff(settings: &RunSettings, failures: u32) -> Duration {
    let first = STOPPED_RETRY.min(settings.standby_poll.saturating_mul(15));
    first
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(first.saturating_mul(20))
}

/// Whether a failed rebuild will fail the same way when it is tried again, until someone
/// changes something (deploys a fix, drops a table, mends a grant): the subscription counts
/// as stopped meanwhile.
fn rebuild_stops(error: &crate::replay::ReplayError) -> bool {
    use crate::replay::ReplayError;
    match error {
        ReplayError::Apply(ApplyError::Invalid { .. })
        | ReplayError::Setup(_)
        | ReplayError::Newer { .. }
        | ReplayError::UnknownProjection { .. }
        | ReplayError::Panicked(_) => true,
        ReplayError::Apply(ApplyError::Store(error)) | ReplayError::Store(error) => stops(error),
        ReplayError::Busy { .. } | ReplayError::LeaseLost(_) | ReplayError::ShuttingDown => false,
    }
}

/// Show `error` in the status of subscription `name` when no instance holds its lease: the
/// database takes an error only from the lease's holder, so take the lease, record, and give
/// it back at once (a rebuild gives the lease up while it works, for an instance of the older
/// version to keep the live tables current). When another instance holds it, the error is
/// only in this instance's log and metrics.
async fn record_unheld(
    store: &EventStore,
    name: &str,
    owner: &str,
    settings: &RunSettings,
    error: &str,
) {
    match store
        .acquire_lease(name, owner, settings.lease_ttl, false)
        .await
    {
        Ok(Some((lease, _))) => {
            let _ = store.record_subscription_error(&lease, error).await;
            let _ = store.release_lease(&lease).await;
        }
        Ok(None) => {
            tracing::debug!(subscription = %name, "another instance holds the lease; the error is not recorded in the status");
        }
        Err(failed) => {
            tracing::warn!(subscription = %name, error = %failed, "cannot reach the database to record the error in the status");
        }
    }
}

/// After this instance lost the lease of subscription `name`: when its holder goes by this
/// instance's own name, another process was started under it (a fixed instance id run twice),
/// and the two would take the lease from each other at every renewal, each dropping the
/// other's work in progress. Say so, and stand by under a name of this process's own: the
/// holder keeps the lease, and this instance takes over when it dies.
async fn rename_if_namesake(store: &EventStore, name: &str, owner: &mut String) {
    let holder = match store.subscriptions().await {
        Ok(states) => states
            .into_iter()
            .find(|state| state.name == name)
            .and_then(|state| state.owner),
        Err(error) => {
            tracing::debug!(subscription = %name, %error, "cannot read who holds the lease");
            return;
        }
    };
    if holder.as_deref() != Some(owner.as_str()) {
        return;
    }
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let unique = format!("{owner}-{}", &suffix[..6]);
    metrics::counter!("order_projector_errors_total", "subscription" => name.to_owned(), "kind" => "duplicate_owner").increment(1);
    tracing::error!(subscription = %name, %owner, standing_by_as = %unique, "another process holds this subscription's lease under this instance's own name: give each process its own ORDER_PROJECTOR_INSTANCE_ID (or leave it unset for a unique one); this instance stands by under a name of its own");
    *owner = unique;
}

/// Run a subscription until shutdown: hold its lease (or stand by for it), prepare the
/// projection's tables (creating them, or rebuilding them after a version change), and keep
/// it up to date. Never skips an event: one that cannot be projected stops the subscription
/// (with the error in its status and a metric) and it retries slowly, so that a fixed binary
/// resumes. So do a projection's tables that cannot be prepared (a table of that name made by
/// someone else, tables missing while it is registered) and a rebuild after a version change
/// that fails (a transient failure shows in the status too, without stopping); a failed
/// rebuild is retried after a wait that doubles with each failure in a row (see
/// [`RunSettings::standby_poll`]), since each attempt reads the log from its start.
pub async fn run(
    subscription: Subscription,
    store: EventStore,
    mut listener: EventListener,
    settings: RunSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = subscription.name().to_owned();
    let stopped_gauge = metrics::gauge!("order_projector_stopped", "subscription" => name.clone());
    let owner_gauge = metrics::gauge!("order_projector_owner", "subscription" => name.clone());
    // Checkpoints found moved in a row, with no step in between that went through: the
    // first reloads at once (a failover), the next ones back off (whatever keeps moving it
    // must not turn this loop into a hot one).
    let mut moved = 0u32;
    // Rebuilds after a version change that failed in a row (each one read the whole log).
    let mut rebuild_failures = 0u32;
    // The name this instance takes the lease under: the configured one, until another
    // process is found holding the lease under it.
    let mut owner = settings.owner.clone();
    'standby: loop {
        owner_gauge.set(0.0);
        // A sink named like a registered projection is refused before it stands by for the
        // lease: while the projection's owner holds it, it would wait in silence.
        // (An unreachable database: the lease loop below says so and retries.)
        if let Err(StepError::Stopped(reason)) =
            subscription.refuse_sink_of_a_projections_name(&store).await
        {
            stopped_gauge.set(1.0);
            metrics::counter!("order_projector_errors_total", "subscription" => name.clone(), "kind" => "prepare").increment(1);
            tracing::error!(subscription = %name, %reason, "subscription stopped: its name is a projection's; retrying");
            record_unheld(
                &store,
                &name,
                &owner,
                &settings,
                &format!("stopped: {reason}"),
            )
            .await;
            pause(&mut shutdown, STOPPED_RETRY.min(settings.standby_poll * 5)).await;
            if *shutdown.borrow() {
                return;
            }
            continue 'standby;
        }
        let (mut lease, _) = loop {
            if *shutdown.borrow() {
                return;
            }
            match store
                .acquire_lease(&name, &owner, settings.lease_ttl, false)
                .await
            {
                Ok(Some(acquired)) => break acquired,
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(subscription = %name, %error, "cannot reach the database to take the lease");
                }
            }
            pause(&mut shutdown, settings.standby_poll).await;
        };
        let mut renewal = Renewal::new(&store, settings.lease_ttl);
        let prepared = renewal
            .around(&lease, subscription.prepare(&store, &lease))
            .await;
        let mut cursor = match prepared {
            Ok(Prepared::Ready { cursor }) => cursor,
            Ok(Prepared::Rebuild { registered }) => {
                let version = subscription.version().unwrap_or_default();
                tracing::info!(projection = %name, registered, version, "the projection's tables were built by an older version: rebuilding them into shadow tables (the live tables keep serving until the swap)");
                // Let an instance of the older version keep the live tables current meanwhile.
                let _ = store.release_lease(&lease).await;
                let options = crate::replay::ReplayOptions {
                    owner: owner.clone(),
                    page: settings.rebuild_page,
                    progress: crate::replay::Progress::Log,
                    lease_ttl: settings.lease_ttl.max(Duration::from_secs(30)),
                    live_lease_ttl: settings.lease_ttl,
                    allow_older: false,
                    bulk: true,
                };
                let rebuilt = caught(crate::replay::rebuild(
                    &store,
                    &subscription,
                    &options,
                    &shutdown,
                ))
                .await
                .unwrap_or_else(|panic| Err(crate::replay::ReplayError::Panicked(panic)));
                match rebuilt {
                    Ok((report, live)) => {
                        tracing::info!(projection = %name, version, events = report.events, seconds = report.elapsed.as_secs_f64(), "projection rebuilt and swapped in");
                        rebuild_failures = 0;
                        lease = live;
                        renewal = Renewal::new(&store, settings.lease_ttl);
                        report.checkpoint
                    }
                    Err(crate::replay::ReplayError::Busy { owner, .. }) => {
                        tracing::info!(projection = %name, %owner, "another instance is rebuilding the projection; standing by");
                        pause(&mut shutdown, settings.standby_poll).await;
                        continue 'standby;
                    }
                    Err(crate::replay::ReplayError::ShuttingDown) => return,
                    Err(error) => {
                        rebuild_failures += 1;
                        let wait = rebuild_backoff(&settings, rebuild_failures);
                        let stopped = rebuild_stops(&error);
                        if stopped {
                            stopped_gauge.set(1.0);
                        }
                        metrics::counter!("order_projector_errors_total", "subscription" => name.clone(), "kind" => "rebuild").increment(1);
                        tracing::error!(projection = %name, registered, version, %error, failures = rebuild_failures, retry_in_seconds = wait.as_secs_f64(), "rebuilding the projection failed; the live tables are unchanged; retrying");
                        // The lease was given up for the rebuild (and the rebuild gave back the
                        // one it took to swap): the error is recorded under a lease of its own.
                        let reason = format!(
                            "{}rebuilding at version {version} failed ({rebuild_failures} in a row; the next attempt in {}; the live tables of version {registered} are unchanged): {error}",
                            if stopped { "stopped: " } else { "" },
                            humantime::format_duration(wait),
                        );
                        record_unheld(&store, &name, &owner, &settings, &reason).await;
                        pause(&mut shutdown, wait).await;
                        continue 'standby;
                    }
                }
            }
            Ok(Prepared::Newer { registered }) => {
                let version = subscription.version().unwrap_or_default();
                let _ = store
                    .record_subscription_error(
                        &lease,
                        &format!(
                            "left alone: its tables were built by version {registered}, newer than this instance's {version}"
                        ),
                    )
                    .await;
                let _ = store.release_lease(&lease).await;
                stopped_gauge.set(1.0);
                tracing::error!(projection = %name, registered, version, "the projection's tables were built by a newer version; this instance leaves them alone (replay --projection with --allow-older-version rebuilds them at this version)");
                pause(&mut shutdown, STOPPED_RETRY).await;
                continue 'standby;
            }
            Err(StepError::ShuttingDown) => return,
            Err(error) => {
                // Recorded while the lease is still held (the database takes an error only
                // from the lease's holder), then the lease is given up: another instance
                // (perhaps after a fix) may try; this one tries again after a pause.
                let stopped = matches!(error, StepError::Stopped(_));
                if !matches!(error, StepError::LeaseLost) {
                    let reason = if stopped {
                        format!("stopped: {error}")
                    } else {
                        format!("preparing failed; retrying: {error}")
                    };
                    let _ = store.record_subscription_error(&lease, &reason).await;
                }
                let _ = store.release_lease(&lease).await;
                if stopped {
                    stopped_gauge.set(1.0);
                    metrics::counter!("order_projector_errors_total", "subscription" => name.clone(), "kind" => "prepare").increment(1);
                    tracing::error!(subscription = %name, %error, "subscription stopped: its tables cannot be prepared; retrying");
                } else {
                    metrics::counter!("order_projector_errors_total", "subscription" => name.clone(), "kind" => "transient").increment(1);
                    tracing::warn!(subscription = %name, %error, "preparing the subscription failed; retrying");
                }
                pause(&mut shutdown, STOPPED_RETRY.min(settings.standby_poll * 5)).await;
                continue 'standby;
            }
        };
        owner_gauge.set(1.0);
        stopped_gauge.set(0.0);
        tracing::info!(subscription = %name, %owner, token = lease.token, checkpoint = %cursor, "lease taken; projecting");
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                let _ = store.release_lease(&lease).await;
                tracing::info!(subscription = %name, "lease released");
                return;
            }
            if renewal.lost {
                tracing::warn!(subscription = %name, "lease lost; standing by");
                rename_if_namesake(&store, &name, &mut owner).await;
                continue 'standby;
            }
            // A renewal that finds the lease lost ends the step at once (the lease-lost arm).
            let step = renewal
                .until_lost(
                    &lease,
                    caught(subscription.step(&store, &lease, cursor, &shutdown)),
                )
                .await
                .unwrap_or(Ok(Err(StepError::LeaseLost)))
                .unwrap_or_else(|panic| Err(StepError::Stopped(panic)));
            match step {
                Ok(Step::Progressed { cursor: next, .. }) => {
                    cursor = next;
                    failures = 0;
                    moved = 0;
                    stopped_gauge.set(0.0);
                }
                Ok(Step::Idle) => {
                    failures = 0;
                    moved = 0;
                    let wait = async {
                        tokio::select! {
                            _ = listener.wait(settings.poll) => {}
                            _ = shutdown.changed() => {}
                        }
                    };
                    renewal.around(&lease, wait).await;
                }
                Err(StepError::LeaseLost) => {
                    tracing::warn!(subscription = %name, "lease lost to another instance; standing by");
                    rename_if_namesake(&store, &name, &mut owner).await;
                    continue 'standby;
                }
                Err(StepError::CheckpointMoved(reason)) => {
                    metrics::counter!("order_projector_errors_total", "subscription" => name.clone(), "kind" => "checkpoint_moved").increment(1);
                    tracing::warn!(subscription = %name, checkpoint = %cursor, %reason, "the database lost writes this instance had made; reading the checkpoint again");
                    let _ = store.release_lease(&lease).await;
                    if moved > 0 {
                        pause(&mut shutdown, backoff(moved)).await;
                    }
                    moved += 1;
                    continue 'standby;
                }
                Err(StepError::ShuttingDown) => {}
                Err(StepError::Stopped(reason)) => {
                    stopped_gauge.set(1.0);
                    metrics::counter!("order_projector_errors_total", "subscription" => name.clone(), "kind" => "undecodable").increment(1);
                    tracing::error!(subscription = %name, checkpoint = %cursor, %reason, "subscription stopped: an event cannot be projected; it is not skipped");
                    let _ = store
                        .record_subscription_error(&lease, &format!("stopped: {reason}"))
                        .await;
                    // The lease is kept while it waits: a standby would stop at the same event.
                    renewal
                        .around(&lease, pause(&mut shutdown, STOPPED_RETRY))
                        .await;
                }
                Err(StepError::Transient(reason)) => {
                    failures += 1;
                    metrics::counter!("order_projector_errors_total", "subscription" => name.clone(), "kind" => "transient").increment(1);
                    tracing::warn!(subscription = %name, %reason, failures, "projection failed; backing off");
                    let _ = store.record_subscription_error(&lease, &reason).await;
                    renewal
                        .around(&lease, pause(&mut shutdown, backoff(failures)))
                        .await;
                }
            }
        }
    }
}

/// Keeps a lease alive while its holder works: renewed every third of its time to live, also
/// in the middle of a long page (a slow page on a loaded machine must not hand the lease to a
/// standby that would then redo it), starting from when the lease was taken.
struct Renewal<'a> {
    store: &'a EventStore,
    ttl: Duration,
    renewed_at: tokio::time::Instant,
    /// A renewal found the lease taken by someone else.
    lost: bool,
}

impl<'a> Renewal<'a> {
    /// Just after the lease was taken.
    fn new(store: &'a EventStore, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            renewed_at: tokio::time::Instant::now(),
            lost: false,
        }
    }

    /// Run `work` to completion, renewing `lease` whenever a third of its time has passed.
    /// A renewal that finds the lease lost sets [`Renewal::lost`] and lets the work finish:
    /// its writes are fenced by the lease token, so they fail by themselves; a renewal that
    /// cannot reach the database is tried again at the next tick.
    async fn around<T>(&mut self, lease: &Lease, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        match self.until_lost(lease, &mut work).await {
            Some(output) => output,
            None => work.await,
        }
    }

    /// [`Renewal::around`], except that a renewal that finds the lease lost drops `work` at
    /// once (`None`): a sink's delivery under way sends nothing more of its page under a lease
    /// it no longer holds (its checkpoint write would be refused anyway, and the new holder
    /// sends the page again). A projection's work loses only its uncommitted transaction.
    async fn until_lost<T>(&mut self, lease: &Lease, work: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(work);
        // The renewal is polled beside the work, never instead of it: a step's transaction
        // locks the subscription's row before its commit, and a renewal waiting for that lock
        // must not keep the step from committing (each would wait for the other until the
        // renewal's statement timeout).
        let store = self.store;
        let ttl = self.ttl;
        let mut renewal: BoxFuture<'_, Result<bool, order_store::Error>> =
            Box::pin(std::future::pending());
        let mut renewing = false;
        loop {
            let due = self.renewed_at + ttl / 3;
            tokio::select! {
                biased;
                output = &mut work => return Some(output),
                renewed = &mut renewal, if renewing => {
                    renewing = false;
                    match renewed {
                        Ok(true) => self.renewed_at = tokio::time::Instant::now(),
                        Ok(false) => {
                            self.lost = true;
                            return None;
                        }
                        Err(error) => {
                            tracing::warn!(subscription = %lease.subscription, %error, "lease renewal failed");
                            // Try again a little later, not in a busy loop.
                            self.renewed_at += ttl / 10;
                        }
                    }
                }
                () = tokio::time::sleep_until(due), if !self.lost && !renewing => {
                    renewal = Box::pin(store.renew_lease(lease, ttl));
                    renewing = true;
                }
            }
        }
    }
}

pub(crate) async fn pause(shutdown: &mut watch::Receiver<bool>, duration: Duration) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        _ = shutdown.changed() => {}
    }
}

/// Exponential backoff from 100 ms to 10 s with jitter.
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
    let jitter = u64::from(uuid::Uuid::new_v4().as_u128() as u16) % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

/// `work`, with a panic in it (a projection's or a sink's code: a bug, an index out of range)
/// turned into its message: the subscription then stops visibly and tries again later, as on
/// any event it cannot project, instead of its task ending unseen with the lease left to run
/// out (and every standby that took it over ending the same way). Whatever the panic left
/// half-done was not committed: a page's writes and its checkpoint share one transaction,
/// rolled back when it is dropped.
pub(crate) async fn caught<T>(work: impl Future<Output = T>) -> Result<T, String> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            format!("the subscription's code panicked: {message}")
        })
}

/// How far a checkpoint is behind the log's head, in positions
/// ([`order_store::subscription::lag_positions`]).
pub(crate) fn lag_events(head: u64, checkpoint: Cursor, pending: bool) -> u64 {
    order_store::subscription::lag_positions(head, checkpoint.global_position, pending)
}

/// How far each subscription is behind the head of the log, exported as metrics.
pub async fn report_lag(
    store: EventStore,
    names: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Ok(head) = store.head_position().await {
            metrics::gauge!("order_log_head_position").set(head as f64);
            for name in &names {
                let Ok(checkpoint) = store.checkpoint(name).await else {
                    continue;
                };
                let first = store.first_recorded_after(checkpoint).await;
                let behind = lag_events(head, checkpoint, matches!(first, Ok(Some(_))));
                let seconds = match first {
                    Ok(Some(at)) => SystemTime::now()
                        .duration_since(at)
                        .unwrap_or_default()
                        .as_secs_f64(),
                    _ => 0.0,
                };
                metrics::gauge!("order_projector_lag_events", "subscription" => name.clone())
                    .set(behind as f64);
                metrics::gauge!("order_projector_lag_seconds", "subscription" => name.clone())
                    .set(seconds);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_at_the_heads_position_with_an_event_waiting_is_behind() {
        // Transaction 9 wrote position 10 and committed first; transaction 10 wrote position 9
        // and committed later: a checkpoint at (9, 10) has the head's position and still has
        // position 9 to apply.
        let checkpoint = Cursor {
            transaction_id: order_store::Xid8(9),
            global_position: 10,
        };
        assert_eq!(lag_events(10, checkpoint, true), 1);
        assert_eq!(lag_events(10, checkpoint, false), 0);
        assert_eq!(lag_events(15, checkpoint, true), 5);
        assert_eq!(lag_events(15, checkpoint, false), 5);
    }
}

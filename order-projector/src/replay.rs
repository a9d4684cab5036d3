//! Rebuilding a projection from the log into shadow tables and swapping them in atomically,
//! without downtime for readers: `replay --projection NAME`, and the rebuild after a
//! projection's version changed.
//!
//! 1. Take the projection's *rebuild lease* (`NAME#rebuild`, a subscription of its own: one
//!    rebuild at a time, and every write into the shadow tables is fenced by its token, so a
//!    stale rebuilder can never touch a newer one's tables).
//! 2. Create the shadow tables (`TABLE_shadow`) from the projection's own DDL, without their
//!    secondary indexes, and fold every visible event of its categories into them: with the
//!    projection's [`crate::BulkFold`] when it has one (fold in memory, write each row once),
//!    otherwise page after page with [`crate::Projection::apply`]. The live tables keep
//!    serving and the live projector keeps them current meanwhile. The fold goes up to the
//!    head as it was when it began.
//! 3. Build the indexes and statistics (after the load, which is faster than during it), then
//!    apply what was written meanwhile with `apply`, up to the head as it was then.
//! 4. Take the projection's lease, preempting the live projector (its next checkpoint write
//!    fails and rolls back), and apply what was written since, up to the head as it was when
//!    the lease was taken (`Rebuild::catch_up`); the live projector applies what comes
//!    later, from the swap's checkpoint on.
//! 5. In one transaction, fenced by both leases (a rebuild that lost its rebuild lease to
//!    another, which started over in the same shadow tables, swaps nothing): lock the live
//!    tables, rename them away, rename the shadows into place, grant, drop the old tables, set
//!    the checkpoint and record the version. Readers wait for that lock for milliseconds;
//!    they never see an empty or half-built table.
//! 6. Release the leases (a projector rebuilding after a version change keeps the projection's
//!    lease and goes on projecting).
//!
//! While it reads the log (steps 2 to 4), the rebuild records how far it has read on its
//! rebuild lease's row (`events_processed`: events read and folded or applied so far, flushed
//! or not; `last_event_at`: when the newest of them was recorded) after each page once a
//! second has passed or 10,000 events were read since it last did, in a statement of its own,
//! fenced by its token and touching neither the checkpoint nor the lease (and in every
//! checkpoint write): `status` shows a bulk fold's progress long before its first flush moves
//! the checkpoint.
//!
//! A failure (or a kill) anywhere before the swap leaves the live tables as they were; a
//! failed rebuild drops its shadow tables if it still holds the rebuild lease (else they are
//! its successor's), and the next rebuild drops any leftovers.

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime};

use order_store::{
    Cursor, EventStore, Lease, LogDigest, RecordedEvent, advance_checkpoint, verify_read,
};
use tokio::sync::{mpsc, watch};

use crate::projection::ApplyError;
use crate::subscription::{ReadPage, Schema, Span, Subscription, read_page};
use crate::tables::{self, SetupError};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    /// A bar on a terminal, log lines otherwise.
    Auto,
    /// A progress bar.
    Bar,
    /// A log line every 5 seconds.
    Log,
    /// Nothing.
    None,
}

/// Replay settings.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// This process's name in the leases.
    pub owner: String,
    /// Events read per query.
    pub page: u32,
    /// How progress is shown.
    pub progress: Progress,
    /// How long the rebuild's own lease lasts (renewed while it works): should the replay
    /// die, another may start after at most this.
    pub lease_ttl: Duration,
    /// How long the projection's lease lasts once the replay takes it from the live projector
    /// for its catch-up and swap (renewed meanwhile, the swap's wait for its lock included):
    /// should the replay die then, the live projector resumes after at most this. The live
    /// projector's own lease time (`--lease-ttl-ms`, 10 s) is the natural value.
    pub live_lease_ttl: Duration,
    /// Rebuild even when the projection's tables were built by a newer version of it (a
    /// rollback of the projection's code).
    pub allow_older: bool,
    /// Use the projection's [`crate::BulkFold`] when it has one (the default); `false` applies
    /// page after page with [`crate::Projection::apply`] (the same tables, slower: to check
    /// the one against the other, or to measure the generic path).
    pub bulk: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            owner: format!("replay-{}", crate::config::default_instance_id()),
            page: 5000,
            progress: Progress::Auto,
            lease_ttl: Duration::from_secs(60),
            live_lease_ttl: Duration::from_secs(10),
            allow_older: false,
            bulk: true,
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events of the projection's categories folded or applied.
    pub events: u64,
    /// Rows of each table after the swap.
    pub rows: Vec<(String, u64)>,
    /// The projection's checkpoint after the swap.
    pub checkpoint: Cursor,
    /// The version the tables were built with.
    pub version: u32,
    /// How long it took.
    pub elapsed: Duration,
}

/// Why a replay failed. Nothing live was changed unless the swap committed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No projection of that name in this binary.
    #[error("unknown projection {name:?}; known: {known:?}")]
    UnknownProjection {
        /// The name asked for.
        name: String,
        /// The projections this binary has.
        known: Vec<String>,
    },
    /// Another process is rebuilding the projection.
    #[error(
        "a rebuild of this projection is already running (owner {owner}{}",
        match expires_in {
            Some(left) => format!(
                "; its lease runs out in {} s: if that replay was killed, run this again then)",
                left.as_secs() + 1
            ),
            None => ")".to_owned(),
        }
    )]
    #[non_exhaustive]
    Busy {
        /// Who holds the rebuild lease.
        owner: String,
        /// How long its lease has left (by this machine's clock), when known.
        expires_in: Option<Duration>,
    },
    /// The tables were built by a newer version of the projection.
    #[error(
        "the projection's tables were built by its version {registered}, newer than this binary's {version}; pass --allow-older-version to rebuild them at {version}"
    )]
    Newer {
        /// The version in the database.
        registered: u32,
        /// This binary's version.
        version: u32,
    },
    /// An event cannot be projected: the rebuild stops at it.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] order_store::Error),
    /// A table is in the way, or the projection's declaration is one `run` would refuse too (a
    /// name, a table, a statement): nothing was changed.
    #[error("{0}")]
    Setup(String),
    /// A lease was taken by someone else meanwhile.
    #[error("the {0} lease was lost to another process")]
    LeaseLost(String),
    /// The process is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// The projection's code panicked (a bug in it): nothing of the rebuild was swapped in.
    #[error("{0}")]
    Panicked(String),
}

impl From<order_store::tokio_postgres::Error> for ReplayError {
    fn from(error: order_store::tokio_postgres::Error) -> Self {
        Self::Store(error.into())
    }
}

impl From<SetupError> for ReplayError {
    fn from(error: SetupError) -> Self {
        match error {
            SetupError::Store(store) => Self::Store(store),
            other => Self::Setup(other.to_string()),
        }
    }
}

/// A rebuild records its progress after a page once this much time passed since it last
/// did...
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// ...or once it read this many events since.
const PROGRESS_EVERY_EVENTS: u64 = 10_000;

/// How far a rebuild has read, and how much of it its lease's row shows.
struct ReadProgress {
    /// Events read and folded or applied.
    events: u64,
    /// When the newest of them was recorded in the log.
    newest: Option<SystemTime>,
    /// What the row's `events_processed` holds (the generic path's checkpoint writes add to
    /// it).
    recorded: u64,
    /// When it was last written.
    recorded_at: Instant,
}

impl ReadProgress {
    fn new() -> Self {
        Self {
            events: 0,
            newest: None,
            recorded: 0,
            recorded_at: Instant::now(),
        }
    }

    /// Count a page read.
    fn read(&mut self, events: &[RecordedEvent]) {
        self.events += events.len() as u64;
        if let Some(last) = events.iter().map(|e| e.recorded_at).max() {
            self.newest = Some(self.newest.map_or(last, |newest| newest.max(last)));
        }
    }

    /// Write the progress in a flush's transaction (which moves the checkpoint with no events
    /// of its own): the row holds it once that commits ([`ReadProgress::committed`]).
    async fn record_in(
        &self,
        client: &impl order_store::deadpool_postgres::GenericClient,
        lease: &Lease,
    ) -> Result<(), ReplayError> {
        match record_progress(client, lease, self.events, self.newest).await? {
            1 => Ok(()),
            _ => Err(ReplayError::LeaseLost("rebuild".into())),
        }
    }

    /// A transaction that brought the row's count to [`ReadProgress::events`] committed.
    fn committed(&mut self) {
        self.recorded = self.events;
        self.recorded_at = Instant::now();
    }

    /// Write the progress on the rebuild lease's row if it is due ([`PROGRESS_EVERY`] or
    /// [`PROGRESS_EVERY_EVENTS`] events since the last write): one UPDATE of its own, fenced
    /// by the lease's token, that changes neither the checkpoint nor the lease. A lease found
    /// lost is [`ReplayError::LeaseLost`] (every later write would fail too); a failed write is
    /// only a WARN (the rebuild goes on; its next write, or its flush, tells more).
    async fn record_if_due(
        &mut self,
        client: &order_store::deadpool_postgres::Client,
        lease: &Lease,
    ) -> Result<(), ReplayError> {
        let due = self.events - self.recorded;
        if due == 0 || (due < PROGRESS_EVERY_EVENTS && self.recorded_at.elapsed() < PROGRESS_EVERY)
        {
            return Ok(());
        }
        let written = record_progress(client, lease, self.events, self.newest).await;
        self.recorded_at = Instant::now();
        match written {
            Ok(1) => {
                self.recorded = self.events;
                Ok(())
            }
            Ok(_) => Err(ReplayError::LeaseLost("rebuild".into())),
            Err(error) => {
                tracing::warn!(lease = %lease.subscription, %error, "replay: recording the rebuild's progress failed; going on");
                Ok(())
            }
        }
    }
}

/// Set the rebuild lease's row's progress (`events` read, the newest recorded at `newest`),
/// if `lease` is still held: the rows changed, 0 or 1. Neither the checkpoint nor the lease
/// changes, so no fenced write depends on it.
async fn record_progress(
    client: &impl order_store::deadpool_postgres::GenericClient,
    lease: &Lease,
    events: u64,
    newest: Option<SystemTime>,
) -> Result<u64, order_store::tokio_postgres::Error> {
    client
        .execute(
            "UPDATE orders.subscriptions
             SET events_processed = $4, last_event_at = coalesce($5, last_event_at),
                 updated_at = now()
             WHERE name = $1 AND owner = $2 AND lease_token = $3",
            &[
                &lease.subscription,
                &lease.owner,
                &lease.token,
                &i64::try_from(events).unwrap_or(i64::MAX),
                &newest,
            ],
        )
        .await
}

/// Run `work` (a flush, the index build: one statement or transaction that may outlast the
/// lease; or the whole catch-up and swap, under the projection's short lease), renewing
/// `lease` from another connection every third of `ttl` meanwhile, so that a long step does
/// not let the lease run out under it (a step's transaction locks the lease's row only at its
/// end, for a moment). A renewal that finds the lease taken drops `work` (its transaction rolls
/// back) and is [`ReplayError::LeaseLost`]; one that cannot reach the database is tried again
/// after a tenth of `ttl`.
async fn kept_alive<T>(
    store: &EventStore,
    lease: &Lease,
    ttl: Duration,
    work: impl Future<Output = Result<T, ReplayError>>,
) -> Result<T, ReplayError> {
    tokio::pin!(work);
    // The renewal is polled beside the work, never instead of it: the step's transaction
    // locks the lease's row before its commit, and a renewal waiting for that lock must not
    // keep the step from committing.
    let mut renewal: futures::future::BoxFuture<'_, Result<bool, order_store::Error>> =
        Box::pin(std::future::pending());
    let mut renewing = false;
    let next = tokio::time::sleep(ttl / 3);
    tokio::pin!(next);
    loop {
        tokio::select! {
            biased;
            output = &mut work => return output,
            renewed = &mut renewal, if renewing => {
                renewing = false;
                let again = if renewed.is_err() { ttl / 10 } else { ttl / 3 };
                next.as_mut().reset(tokio::time::Instant::now() + again);
                match renewed {
                    Ok(true) => {}
                    Ok(false) => return Err(ReplayError::LeaseLost(lease_kind(lease).into())),
                    Err(error) => {
                        tracing::warn!(lease = %lease.subscription, %error, "replay: renewing a lease during a long step failed; trying again");
                    }
                }
            }
            () = &mut next, if !renewing => {
                renewal = Box::pin(store.renew_lease(lease, ttl));
                renewing = true;
            }
        }
    }
}

/// Which of the replay's leases `lease` is, for [`ReplayError::LeaseLost`].
fn lease_kind(lease: &Lease) -> &'static str {
    if lease.subscription.ends_with("#rebuild") {
        "rebuild"
    } else {
        "projection's"
    }
}

/// The name of a projection's rebuild lease (a row of `orders.subscriptions`).
pub fn rebuild_lease_name(projection: &str) -> String {
    format!("{projection}#rebuild")
}

/// Shows progress on a terminal or as log lines.
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_log: Instant,
    total: u64,
    log: bool,
    name: String,
}

impl Reporter {
    fn new(progress: Progress, total: u64, name: &str) -> Self {
        let bar = match progress {
            Progress::Bar => true,
            Progress::Auto => std::io::stderr().is_terminal(),
            Progress::Log | Progress::None => false,
        }
        .then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} replay [{elapsed_precise}] {wide_bar} {pos}/{len} log positions {per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last_log: Instant::now(),
            total,
            log: progress != Progress::None,
            name: name.to_owned(),
        }
    }

    fn update(&mut self, position: u64, events: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(self.total.max(position));
            bar.set_position(position);
        } else if self.log && self.last_log.elapsed() >= Duration::from_secs(5) {
            self.last_log = Instant::now();
            let rate = events as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                projection = %self.name,
                events,
                position,
                head = self.total,
                events_per_second = rate as u64,
                "replay progress"
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Rebuild `subscription`'s projection and swap it in; see the module documentation.
pub async fn replay(
    store: &EventStore,
    subscription: &Subscription,
    options: &ReplayOptions,
    shutdown: &watch::Receiver<bool>,
) -> Result<ReplayReport, ReplayError> {
    let (report, lease) = rebuild(store, subscription, options, shutdown).await?;
    let _ = store.release_lease(&lease).await;
    Ok(report)
}

/// What projection `name`'s registration `previous` refuses a rebuild of `schema`: tables of a
/// newer version (unless `allow_older`), or other tables at the same version.
fn check_registration(
    name: &str,
    schema: &Schema,
    previous: Option<&tables::Registered>,
    allow_older: bool,
) -> Result<(), ReplayError> {
    let Some(previous) = previous else {
        return Ok(());
    };
    if previous.version > schema.version && !allow_older {
        return Err(ReplayError::Newer {
            registered: previous.version,
            version: schema.version,
        });
    }
    if previous.version == schema.version
        && let Some(why) =
            tables::other_tables_at_registered_version(name, &schema.tables, previous)
    {
        return Err(ReplayError::Setup(why));
    }
    Ok(())
}

/// [`replay`], keeping the projection's lease (the caller goes on projecting with it).
pub(crate) async fn rebuild(
    store: &EventStore,
    subscription: &Subscription,
    options: &ReplayOptions,
    shutdown: &watch::Receiver<bool>,
) -> Result<(ReplayReport, Lease), ReplayError> {
    let name = subscription.name().to_owned();
    let Some(schema) = subscription.subscriber().schema() else {
        return Err(ReplayError::UnknownProjection {
            name,
            known: Vec::new(),
        });
    };
    // The checks `run` makes, before anything is written: a table's name goes into SQL.
    subscription.validate().map_err(ReplayError::Setup)?;
    // And what the registration refuses, before the rebuild's lease row is written (checked
    // again under the lease).
    {
        let client = store.connection().await?;
        let previous = tables::registered(&client, &name).await?;
        check_registration(&name, schema, previous.as_ref(), options.allow_older)?;
        tables::refuse_foreign(&client, &name, &schema.tables, previous.as_ref()).await?;
        if previous.is_none()
            && let Some(why) = crate::subscription::name_in_use(store, &name).await?
        {
            return Err(ReplayError::Setup(why));
        }
    }
    let rebuild_name = rebuild_lease_name(&name);
    let Some((rebuild_lease, _)) = store
        .acquire_lease(&rebuild_name, &options.owner, options.lease_ttl, false)
        .await?
    else {
        let holder = store
            .subscriptions()
            .await?
            .into_iter()
            .find(|s| s.name == rebuild_name);
        let expires_in = holder
            .as_ref()
            .and_then(|s| s.lease_expires_at)
            .and_then(|at| at.duration_since(SystemTime::now()).ok());
        let owner = holder
            .and_then(|s| s.owner)
            .unwrap_or_else(|| "unknown".to_owned());
        return Err(ReplayError::Busy { owner, expires_in });
    };
    // A panic in the projection's code (a team's bug) fails the rebuild like any error: its
    // shadow tables dropped and its lease released below, so that the next may start at once.
    // (The projection's lease, when it held it, runs out by itself: the live projector's time.)
    let result = crate::subscription::caught(
        Rebuild {
            store,
            subscription,
            schema,
            options,
            shutdown,
            rebuild_lease: &rebuild_lease,
            renewed_at: Instant::now(),
        }
        .run(),
    )
    .await
    .unwrap_or_else(|panic| Err(ReplayError::Panicked(panic)));
    if result.is_err() {
        drop_own_shadows(store, &rebuild_lease, &schema.tables).await;
    }
    let _ = store.release_lease(&rebuild_lease).await;
    result
}

struct Rebuild<'a> {
    store: &'a EventStore,
    subscription: &'a Subscription,
    schema: &'a Schema,
    options: &'a ReplayOptions,
    shutdown: &'a watch::Receiver<bool>,
    rebuild_lease: &'a Lease,
    renewed_at: Instant,
}

/// Where a rebuild is: the last event read, its checkpoint as the database has it (every
/// write moves from there), and the digest of what was read since.
struct Place {
    cursor: Cursor,
    written: Cursor,
    unwritten: LogDigest,
}

/// Whether `read` is the last page of a catch-up to position `through`: it read nothing, was
/// not full (the head is near), or reached `through`.
fn last_page(read: &ReadPage, through: u64) -> bool {
    !read.full || read.end.is_none_or(|end| end.global_position >= through)
}

type Pages =
    mpsc::Receiver<Result<(Vec<RecordedEvent>, Option<Cursor>, LogDigest), order_store::Error>>;

impl Rebuild<'_> {
    /// Renew the rebuild lease (and `live`, when held) every third of the shorter one's time.
    async fn renew(&mut self, live: Option<&Lease>) -> Result<(), ReplayError> {
        if *self.shutdown.borrow() {
            return Err(ReplayError::ShuttingDown);
        }
        let shortest = match live {
            Some(_) => self.options.lease_ttl.min(self.options.live_lease_ttl),
            None => self.options.lease_ttl,
        };
        if self.renewed_at.elapsed() < shortest / 3 {
            return Ok(());
        }
        self.renew_now(live).await
    }

    /// Renew the rebuild lease (and `live`, the projection's, once taken) now.
    async fn renew_now(&mut self, live: Option<&Lease>) -> Result<(), ReplayError> {
        if !self
            .store
            .renew_lease(self.rebuild_lease, self.options.lease_ttl)
            .await?
        {
            return Err(ReplayError::LeaseLost("rebuild".into()));
        }
        if let Some(live) = live
            && !self
                .store
                .renew_lease(live, self.options.live_lease_ttl)
                .await?
        {
            return Err(ReplayError::LeaseLost("projection's".into()));
        }
        self.renewed_at = Instant::now();
        Ok(())
    }

    /// Read pages after `from` on a task of its own, one page ahead, up to `through` (the
    /// last page as in [`Rebuild::catch_up`]).
    fn read_ahead(&self, from: Cursor, through: u64) -> (Pages, tokio::task::JoinHandle<Cursor>) {
        let (pages, receiver) = mpsc::channel(2);
        let store = self.store.clone();
        let page = self.options.page;
        let categories = self.subscription.categories().clone();
        let reader = tokio::spawn(async move {
            let mut cursor = from;
            loop {
                let read = read_page(&store, cursor, page, &categories).await;
                let (done, failed) = match &read {
                    Ok(read) => {
                        if let Some(end) = read.end {
                            cursor = end;
                        }
                        (last_page(read, through), false)
                    }
                    Err(_) => (false, true),
                };
                let read = read.map(|read| (read.events, read.end, read.digest));
                if pages.send(read).await.is_err() || done || failed {
                    return cursor;
                }
            }
        });
        (receiver, reader)
    }

    /// Read the pages after `at.cursor` and apply them to the shadow tables up to the head
    /// as it was at `through` (a page that reaches that position, or one that is not full, is
    /// the last), renewing the rebuild lease and `live`, when held. Not until a read finds
    /// nothing new: steady writes may never leave one, and while the replay holds the
    /// projection's lease the live read model waits. What comes after is the live
    /// projector's, from the swap's checkpoint on.
    async fn catch_up(
        &mut self,
        at: &mut Place,
        through: u64,
        live: Option<&Lease>,
        progress: &mut ReadProgress,
        reporter: &mut Reporter,
    ) -> Result<(), ReplayError> {
        let (store, subscription, schema) = (self.store, self.subscription, self.schema);
        let subscriber = subscription.subscriber();
        loop {
            let read = read_page(
                store,
                at.cursor,
                self.options.page,
                subscription.categories(),
            )
            .await?;
            let last = last_page(&read, through);
            let ReadPage {
                events,
                end,
                digest,
                ..
            } = read;
            let Some(end) = end else { return Ok(()) };
            at.unwritten = at.unwritten.merge(digest);
            progress.read(&events);
            if !events.is_empty() {
                subscriber
                    .apply(
                        store,
                        self.rebuild_lease,
                        events,
                        Span {
                            from: at.written,
                            to: end,
                            read: at.unwritten,
                        },
                        &schema.shadow,
                        true,
                    )
                    .await?;
                progress.committed();
                at.written = end;
                at.unwritten = LogDigest::EMPTY;
            }
            at.cursor = end;
            reporter.update(end.global_position, progress.events);
            self.renew(live).await?;
            if last {
                return Ok(());
            }
        }
    }

    async fn run(mut self) -> Result<(ReplayReport, Lease), ReplayError> {
        let started = Instant::now();
        let store = self.store;
        let name = self.subscription.name().to_owned();
        let subscriber = self.subscription.subscriber();
        let version = self.schema.version;
        let mut client = store.connection().await?;
        let previous = tables::registered(&client, &name).await?;
        check_registration(
            &name,
            self.schema,
            previous.as_ref(),
            self.options.allow_older,
        )?;
        tables::refuse_foreign(&client, &name, &self.schema.tables, previous.as_ref()).await?;
        if previous.is_none()
            && let Some(why) = crate::subscription::name_in_use(store, &name).await?
        {
            return Err(ReplayError::Setup(why));
        }
        {
            let tx = client.transaction().await?;
            tables::create_shadows(&tx, &self.schema.tables).await?;
            order_store::restart_checkpoint(&tx, self.rebuild_lease).await?;
            // The row's progress counts this rebuild's events (a released row keeps the last
            // rebuild's); fenced like the line above, which already checked the lease.
            tx.execute(
                "UPDATE orders.subscriptions SET events_processed = 0, last_event_at = NULL
                 WHERE name = $1 AND owner = $2 AND lease_token = $3",
                &[
                    &self.rebuild_lease.subscription,
                    &self.rebuild_lease.owner,
                    &self.rebuild_lease.token,
                ],
            )
            .await?;
            tx.commit().await?;
        }
        let head = store.head_position().await?;
        let mut reporter = Reporter::new(self.options.progress, head, &name);
        tracing::info!(projection = %name, version, head, "replay: folding the log into shadow tables");

        // Phase 2: everything visible now, read one page ahead.
        let shadow = &self.schema.shadow;
        let mut bulk = if self.options.bulk {
            subscriber.bulk()
        } else {
            None
        };
        let (mut pages, reader) = self.read_ahead(Cursor::START, head);
        let mut progress = ReadProgress::new();
        let mut cursor = Cursor::START;
        // The rebuild's checkpoint as the database has it: every write moves from there, and
        // checks that the database holds what was read since (`unwritten`).
        let mut written = Cursor::START;
        let mut unwritten = LogDigest::EMPTY;
        let rebuild = &self.rebuild_lease.subscription;
        while let Some(page) = pages.recv().await {
            let (events, end, digest) = page?;
            let Some(end) = end else { break };
            unwritten = unwritten.merge(digest);
            let count = events.len() as u64;
            progress.read(&events);
            if count > 0 {
                match &mut bulk {
                    Some(fold) => {
                        fold.fold(events, &client, shadow).await?;
                        if fold.should_flush() {
                            kept_alive(store, self.rebuild_lease, self.options.lease_ttl, async {
                                let tx = long_transaction(&mut client).await?;
                                fold.flush(&tx, shadow).await?;
                                verify_read(&tx, rebuild, written, end, &unwritten).await?;
                                advance_checkpoint(&tx, self.rebuild_lease, written, end, 0, None)
                                    .await?;
                                progress.record_in(&tx, self.rebuild_lease).await?;
                                tx.commit().await?;
                                Ok(())
                            })
                            .await?;
                            progress.committed();
                            written = end;
                            unwritten = LogDigest::EMPTY;
                        }
                    }
                    None => {
                        subscriber
                            .apply(
                                store,
                                self.rebuild_lease,
                                events,
                                Span {
                                    from: written,
                                    to: end,
                                    read: unwritten,
                                },
                                shadow,
                                true,
                            )
                            .await?;
                        progress.committed();
                        written = end;
                        unwritten = LogDigest::EMPTY;
                    }
                }
            }
            cursor = end;
            reporter.update(end.global_position, progress.events);
            progress.record_if_due(&client, self.rebuild_lease).await?;
            self.renew(None).await?;
        }
        drop(pages);
        let read_to = reader.await.unwrap_or(cursor);
        if read_to > cursor {
            cursor = read_to;
        }
        if let Some(fold) = &mut bulk {
            kept_alive(store, self.rebuild_lease, self.options.lease_ttl, async {
                let tx = long_transaction(&mut client).await?;
                fold.flush(&tx, shadow).await?;
                fold.finish(&tx, shadow).await?;
                verify_read(&tx, rebuild, written, cursor, &unwritten).await?;
                advance_checkpoint(&tx, self.rebuild_lease, written, cursor, 0, None).await?;
                progress.record_in(&tx, self.rebuild_lease).await?;
                tx.commit().await?;
                Ok(())
            })
            .await?;
            progress.committed();
            written = cursor;
            unwritten = LogDigest::EMPTY;
        }
        drop(bulk);

        // Phase 3: indexes and statistics, before the live projector is paused.
        {
            kept_alive(store, self.rebuild_lease, self.options.lease_ttl, async {
                let tx = long_transaction(&mut client).await?;
                tables::finish_shadows(&tx, &self.schema.tables).await?;
                verify_read(&tx, rebuild, written, cursor, &unwritten).await?;
                advance_checkpoint(&tx, self.rebuild_lease, written, cursor, 0, None).await?;
                tx.commit().await?;
                Ok(())
            })
            .await?;
            written = cursor;
            unwritten = LogDigest::EMPTY;
        }

        // What was written while phases 2 and 3 ran, read with the live projector still
        // running: its lease is taken for the last stretch only.
        let mut at = Place {
            cursor,
            written,
            unwritten,
        };
        let through = store.head_position().await?;
        self.catch_up(&mut at, through, None, &mut progress, &mut reporter)
            .await?;

        // Phase 4: the projection's lease, taken from the live projector (not by a rebuild
        // that has lost its own lease already); catch up.
        self.renewed_at = Instant::now();
        if !store
            .renew_lease(self.rebuild_lease, self.options.lease_ttl)
            .await?
        {
            return Err(ReplayError::LeaseLost("rebuild".into()));
        }
        // For the live projector's lease time, not the rebuild's: should this replay die from
        // here on, the live projector resumes after that.
        let live_ttl = self.options.live_lease_ttl;
        let (live, live_checkpoint) = store
            .acquire_lease(&name, &self.options.owner, live_ttl, true)
            .await?
            .ok_or_else(|| ReplayError::LeaseLost("projection's".into()))?;
        tracing::info!(projection = %name, token = live.token, "replay: holding the projection's lease; catching up");
        // The projection's lease is short (the live projector's own time): renewed from
        // another connection all along, through a slow page read or apply and the swap's wait
        // for its lock, until the rows are counted (then the caller releases it or projects
        // with it).
        let caught_up = kept_alive(store, &live, live_ttl, async {
            let through = store.head_position().await?;
            self.catch_up(&mut at, through, Some(&live), &mut progress, &mut reporter)
                .await?;
            let Place {
                cursor,
                written,
                unwritten,
            } = at;

            // The rows, counted in the shadow tables now that nothing more is applied to them
            // (nothing else writes there: the rebuild lease), before the swap's transaction,
            // so that it holds back neither the log fence nor the rebuild lease's row for the
            // count: a failure to count fails before the swap, and live readers do not wait
            // for it.
            let mut rows = Vec::new();
            for table in &self.schema.tables {
                let row = client
                    .query_one(
                        &format!("SELECT count(*) FROM {}", &shadow[table.name()]),
                        &[],
                    )
                    .await?;
                rows.push((table.name().to_owned(), row.try_get::<_, i64>(0)? as u64));
            }

            // Phase 5: the swap, fenced by both leases: a rebuild that lost its rebuild lease
            // meanwhile (to one that started over in the same shadow tables) swaps nothing.
            // Both leases renewed first. The swap's transaction locks the rebuild lease's row
            // before its tries for the lock, so those last at most half the rebuild lease; the
            // projection's lease (shorter) is renewed from another connection meanwhile.
            self.renew_now(Some(&live)).await?;
            let patience = tables::SWAP_LOCK_PATIENCE.min(self.options.lease_ttl / 2);
            let tx = long_transaction(&mut client).await?;
            verify_read(&tx, rebuild, written, cursor, &unwritten).await?;
            advance_checkpoint(&tx, self.rebuild_lease, written, cursor, 0, None).await?;
            tables::swap(&tx, &name, self.schema, previous.as_ref(), patience).await?;
            advance_checkpoint(&tx, &live, live_checkpoint, cursor, 0, None).await?;
            tx.commit().await?;
            Ok::<_, ReplayError>((rows, cursor))
        })
        .await;
        reporter.finish();
        let (rows, cursor) = match caught_up {
            Ok(caught_up) => caught_up,
            Err(error) => {
                let _ = store.release_lease(&live).await;
                return Err(error);
            }
        };
        let report = ReplayReport {
            events: progress.events,
            rows,
            checkpoint: cursor,
            version,
            elapsed: started.elapsed(),
        };
        tracing::info!(projection = %name, version, events = report.events, checkpoint = %report.checkpoint, seconds = report.elapsed.as_secs_f64(), "replay: swapped in");
        Ok((report, live))
    }
}

/// Drop the shadow tables of a failed rebuild, if they are still its own: while its rebuild
/// lease row is locked and still carries its token. A rebuild that lost the lease leaves them
/// to the one that took it (which may be filling them); the next rebuild drops leftovers.
async fn drop_own_shadows(store: &EventStore, lease: &Lease, tables: &[crate::projection::Table]) {
    let dropped = async {
        let mut client = store.connection().await?;
        let tx = client.transaction().await?;
        let held = tx
            .query_opt(
                "SELECT 1 FROM orders.subscriptions
                 WHERE name = $1 AND owner = $2 AND lease_token = $3 FOR UPDATE",
                &[&lease.subscription, &lease.owner, &lease.token],
            )
            .await?
            .is_some();
        if held {
            tables::drop_shadows(&tx, tables).await?;
        }
        tx.commit().await?;
        Ok::<bool, ReplayError>(held)
    }
    .await;
    match dropped {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                lease = %lease.subscription,
                "replay: the rebuild lease was taken over; its shadow tables are left to the new holder"
            );
        }
        Err(error) => {
            tracing::warn!(%error, "replay: dropping the shadow tables failed; the next rebuild drops them");
        }
    }
}

/// A transaction without the session's statement timeout (rebuild steps are long).
async fn long_transaction(
    client: &mut order_store::deadpool_postgres::Client,
) -> Result<order_store::deadpool_postgres::Transaction<'_>, ReplayError> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    Ok(tx)
}

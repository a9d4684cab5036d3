//! The event store: append, read a stream, read the global log gap-safely.

use std::future::Future;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::append::{
    APPEND_NEW_STREAMS_SQL, APPEND_SQL, AppendOutcome, AppendRequest, CommandRecordWrite,
    CommandWrite, Committed, ExpectedVersion, FIND_COMMANDS_SQL, StreamAppend, StreamOutcome,
    validate, validate_stream_append,
};
use crate::batch::{
    Claim, Job, NewStreamParams, Params, Queue, new_stream_outcomes, outcome, read_row, writer,
    writer_for,
};
use crate::config::StoreConfig;
use crate::error::{Error, constraint};
use crate::event::{EVENT_COLUMNS, RecordedEvent};
use crate::xid::Cursor;

/// The channel the store notifies after appends; subscribers LISTEN on it.
pub const NOTIFY_CHANNEL: &str = "orders_events";

/// How often, at most, the store sends a NOTIFY. Appends only signal; a background task sends
/// one NOTIFY for any number of appends in between, outside their transactions (a NOTIFY
/// inside an append would serialise every commit on the notification queue's lock).
const NOTIFY_INTERVAL: Duration = Duration::from_millis(10);

/// How many times an append with [`ExpectedVersion::Any`] retries a lost race.
const ANY_VERSION_ATTEMPTS: u32 = 32;

/// A handle to the event store; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    config: StoreConfig,
    notify: mpsc::Sender<()>,
    /// The group-commit writers' queues (an append goes to the one its stream hashes to);
    /// empty for the writers' own handle, which appends directly.
    writers: Vec<mpsc::Sender<Job>>,
    /// The pools of writers on threads of their own, by the name their gauges carry (the
    /// connections they hold come on top of `pool`'s).
    writer_pools: Vec<(String, Pool)>,
}

/// What [`EventStore::read_all_in`] read.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryPage {
    /// The events of the categories asked for, in the gap-safe order.
    pub events: Vec<RecordedEvent>,
    /// The cursor of the last event read, of any category; `None` when nothing was read (the
    /// subscriber is at the head of what is visible).
    pub end: Option<Cursor>,
    /// How many events were read, of any category (at most the limit asked for: a page that
    /// reached it was full, and more may follow right away).
    pub read: usize,
    /// The digest of every event read, of any category: what
    /// [`crate::subscription::verify_read`] checks before a checkpoint moves past them.
    pub digest: crate::subscription::LogDigest,
}

/// What [`EventStore::read_stream_slice`] read: part of a stream, and whether the stream
/// exists at all, from one statement (so from one snapshot).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSlice {
    /// At most the limit asked for of the stream's events after the version asked for, in
    /// version order. Fewer than the limit: the stream had no more.
    pub events: Vec<RecordedEvent>,
    /// The stream's category (its aggregate's type); `None` when it has no event at all.
    /// A stream whose events all lie at or before the version asked for has one.
    pub category: Option<String>,
}

/// What a command id was recorded with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// The stream the command was appended to.
    pub stream_id: Uuid,
    /// The request's fingerprint.
    pub fingerprint: Vec<u8>,
    /// Where its events landed.
    pub committed: Committed,
}

impl EventStore {
    /// A store over a lazily connecting pool. Needs a Tokio runtime (it starts the notifier).
    pub fn new(config: StoreConfig) -> Result<Self, Error> {
        // One memory of the highest timeline for all the store's pools (and every connection of
        // the process to the same servers): none of them writes to a server behind one another
        // met.
        let timelines = crate::connect::timelines_for(&config.pg_config()?);
        let pool = config.pool_fenced(Some(timelines.clone()))?;
        let (notify, requests) = mpsc::channel(1);
        let mut requests = Some(requests);
        let handle = |pool: &Pool, config: StoreConfig, writers, writer_pools| Self {
            inner: Arc::new(Inner {
                pool: pool.clone(),
                config,
                notify: notify.clone(),
                writers,
                writer_pools,
            }),
        };
        // The writers hold a handle without the queues, so that dropping the last public
        // handle closes the queues and ends them (and a writer's thread with its writer).
        let writers = match config.group_commit_batch {
            0 | 1 => 0,
            _ => config.group_commit_writers.max(1),
        };
        let mut senders = Vec::new();
        let mut writer_pools = Vec::new();
        for n in 0..writers {
            let (sender, receiver) = mpsc::channel(config.group_commit_batch * 4);
            // A writer of its own thread has no callers on its runtime to yield to.
            let gather = if config.group_commit_thread {
                Duration::ZERO
            } else {
                config.group_commit_gather
            };
            let queue = Queue::new(receiver, config.group_commit_batch, gather);
            senders.push(sender);
            if !config.group_commit_thread {
                let writer_store = handle(&pool, config.clone(), Vec::new(), Vec::new());
                tokio::spawn(writer(writer_store, queue));
                continue;
            }
            // A writer of its own thread, with a pool of its own whose connections' I/O runs
            // there too: a batch's answer is read and the next batch sent without waiting for
            // a turn on a runtime busy with callers. The first writer's thread also sends the
            // NOTIFYs, on a second connection (a caller's runtime that blocks, as a test's
            // teardown does, cannot then leave a connection half opened).
            let notifies = requests.take();
            let mut own = config.clone();
            own.pool_size = if notifies.is_some() { 2 } else { 1 };
            let own_pool = own.pool_fenced(Some(timelines.clone()))?;
            let writer_store = handle(&own_pool, config.clone(), Vec::new(), Vec::new());
            writer_pools.push((
                format!("{}-writer-{n}", config.application_name),
                own_pool.clone(),
            ));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Database(format!("group-commit writer runtime: {e}")))?;
            if let Some(requests) = notifies {
                runtime.spawn(notifier(own_pool, requests));
            }
            std::thread::Builder::new()
                .name(format!("group-commit-{n}"))
                .spawn(move || runtime.block_on(writer(writer_store, queue)))
                .map_err(|e| Error::Database(format!("group-commit writer thread: {e}")))?;
        }
        if let Some(requests) = requests {
            tokio::spawn(notifier(pool.clone(), requests));
        }
        let store = handle(&pool, config, senders, writer_pools);
        tokio::spawn(pool_metrics(Arc::downgrade(&store.inner)));
        Ok(store)
    }

    /// The connection pool (for reads and transactions of your own).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The settings it was built with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Run a database call with the client-side time limit, counted from when the call got
    /// its pooled connection (a wait for a busy pool takes none of its time), and at most the
    /// pool wait ([`StoreConfig::pool_wait_timeout`]) later than from its start: opening a new
    /// connection counts against the call. A call that got no connection in that time is
    /// [`Error::Unavailable`] (an exhausted pool); one that got it and had no answer is
    /// [`Error::Timeout`], and every pooled connection opened before is replaced (the server
    /// is gone or cut off).
    pub async fn timed<T, F>(&self, call: F) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        let limit = self.inner.config.call_timeout();
        let (call, note) = crate::recycle::noting_acquisition(call);
        let mut call = std::pin::pin!(call);
        let start = tokio::time::Instant::now();
        let mut deadline = start + limit;
        // However late it got its connection (one opened to a server slow to answer, say).
        let latest = start + self.inner.config.answer_timeout();
        loop {
            tokio::select! {
                result = &mut call => return result,
                () = tokio::time::sleep_until(deadline) => {}
            }
            let since = |at| (tokio::time::Instant::from_std(at) + limit).min(latest);
            match crate::recycle::pooled(&note) {
                // Got its connection after the call began: its time counts from then.
                crate::recycle::Pooled::Since(at) if since(at) > deadline => {
                    deadline = since(at);
                }
                crate::recycle::Pooled::Waiting => {
                    return Err(Error::Unavailable(format!(
                        "no free pooled database connection within {} s",
                        limit.as_secs_f64()
                    )));
                }
                _ => {
                    // No answer at all: the server is gone or cut off; do not hand out its
                    // other connections either.
                    crate::recycle::discard_connections_opened_before_now(
                        crate::recycle::Reason::NoAnswer,
                    );
                    return Err(Error::Timeout);
                }
            }
        }
    }

    /// Run an append's database work, or a read on its behalf, by `deadline`: one limit for
    /// all of it (the wait for a pooled connection, opening one, preparing, the statement),
    /// counted from when the append began waiting ([`StoreConfig::answer_timeout`]); a
    /// statement, once `sent` notes it went out, has at most [`StoreConfig::call_timeout`] of
    /// that; one not sent by `sent`'s instant never will be, and the call ends then. Out of
    /// time, the call is answered [`Error::Timeout`] when its statement went out
    /// (it may commit yet), else [`Error::Unavailable`]: nothing can have been written. A
    /// deadline already passed answers at once, the call never started. A call that had its
    /// connection, or sent its statement, and got no answer also has every pooled connection
    /// opened before replaced (the server is gone or cut off).
    pub(crate) async fn until<T, F>(
        &self,
        deadline: Instant,
        sent: Option<(&OnceLock<Instant>, Instant)>,
        call: F,
    ) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        if Instant::now() >= deadline {
            return Err(Error::Unavailable(
                "the database did not answer in time; nothing was written".into(),
            ));
        }
        let statement_limit = self.inner.config.call_timeout();
        let sent_at = || sent.and_then(|(sent, _)| sent.get().copied());
        // Until the statement goes out: the last moment it may.
        let unsent = sent.map_or(deadline, |(_, by)| by.min(deadline));
        let (call, note) = crate::recycle::noting_acquisition(call);
        let mut call = std::pin::pin!(call);
        // The earliest a statement can be cut off: sent at once, its whole time passed.
        let mut wake = unsent.min(Instant::now() + statement_limit);
        loop {
            tokio::select! {
                biased;
                result = &mut call => return result,
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            }
            let cut = sent_at().map_or(unsent, |at| deadline.min(at + statement_limit));
            if Instant::now() >= cut {
                break;
            }
            wake = cut;
        }
        let connected = matches!(
            crate::recycle::pooled(&note),
            crate::recycle::Pooled::Since(_)
        );
        let sent = sent_at().is_some();
        if connected || sent {
            crate::recycle::discard_connections_opened_before_now(crate::recycle::Reason::NoAnswer);
        }
        if sent {
            return Err(Error::Timeout);
        }
        Err(Error::Unavailable(
            if connected {
                "the database did not answer in time; nothing was written"
            } else {
                "no database connection in time; nothing was written"
            }
            .into(),
        ))
    }

    /// A pooled connection, for reads and transactions of your own inside
    /// [`EventStore::timed`]: it notes that the call is waiting for the pool, so a wait that
    /// outlasts the call's time is answered [`Error::Unavailable`] (an exhausted pool), never
    /// taken for a server that stopped answering. The wait itself is bounded by
    /// [`StoreConfig::pool_wait_timeout`], at most half the call's time.
    ///
    /// ```no_run
    /// # async fn example(store: order_store::EventStore) -> Result<(), order_store::Error> {
    /// let one: i32 = store
    ///     .timed(async {
    ///         let client = store.connection().await?;
    ///         Ok(client.query_one("SELECT 1", &[]).await?.try_get(0)?)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connection(&self) -> Result<deadpool_postgres::Object, Error> {
        crate::recycle::waiting_for_connection();
        Ok(self.inner.pool.get().await?)
    }

    /// [`EventStore::connection`], queueing for a busy pool for at most `wait` (not the
    /// pool's own wait): `Ok(None)` when no connection came free by then. A connection that
    /// cannot be opened is an error, as ever. For a read-your-writes wait, which queues a
    /// pause at a time and must not take a pool busy with other reads for a broken server.
    pub async fn connection_within(
        &self,
        wait: Duration,
    ) -> Result<Option<deadpool_postgres::Object>, Error> {
        crate::recycle::waiting_for_connection();
        let mut timeouts = self.inner.pool.timeouts();
        timeouts.wait = Some(wait);
        match self.inner.pool.timeout_get(&timeouts).await {
            Ok(client) => Ok(Some(client)),
            Err(deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => {
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), Error> {
        self.timed(async {
            let client = self.connection().await?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
        .await
    }

    /// Whether the database answers and has every migration this binary knows.
    pub async fn is_ready(&self) -> Result<bool, Error> {
        self.timed(async {
            let client = self.connection().await?;
            crate::migrate::is_current(&client).await
        })
        .await
    }

    /// Append events to a stream. With an idempotency record, a command id seen before
    /// returns its first result and writes nothing.
    pub async fn append(&self, request: AppendRequest<'_>) -> Result<AppendOutcome, Error> {
        validate(&request)?;
        let append = StreamAppend {
            stream_id: request.stream_id,
            category: request.category.to_owned().into(),
            expected: request.expected,
            commands: vec![CommandWrite {
                events: request.events.to_vec(),
                metadata: request.metadata.clone(),
                record: request.idempotency.map(|i| CommandRecordWrite {
                    command_id: i.command_id,
                    fingerprint: i.fingerprint,
                    status: i.status.to_owned(),
                }),
            }],
        };
        let mut attempt = 1;
        loop {
            let result = self.submit(&append).await;
            if matches!(
                result,
                Err(Error::Conflict { .. } | Error::WrongExpectedVersion { .. })
            ) {
                metrics::counter!("order_store_append_conflicts_total").increment(1);
            }
            match result {
                Err(Error::Conflict { .. })
                    if request.expected == ExpectedVersion::Any
                        && attempt < ANY_VERSION_ATTEMPTS =>
                {
                    crate::handler::backoff(attempt).await;
                    attempt += 1;
                }
                Ok(StreamOutcome::Appended(mut committed)) => {
                    return committed
                        .pop()
                        .map(AppendOutcome::Appended)
                        .ok_or_else(|| Error::Database("the append answered no row".into()));
                }
                Ok(StreamOutcome::Recorded(mut records)) => {
                    let (Some(idempotency), Some((_, record))) =
                        (request.idempotency, records.pop())
                    else {
                        return Err(Error::Database(
                            "a command record answered an append without one".into(),
                        ));
                    };
                    return duplicate(request.stream_id, idempotency, record);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Append the events of several commands to one stream, in order, all or nothing, in one
    /// statement (with group commit: in one statement with other streams' appends). Nothing is
    /// written when any command's id was recorded before ([`StreamOutcome::Recorded`]) or the
    /// stream is not at the expected version ([`Error::WrongExpectedVersion`]); a concurrent
    /// append of the same version is an [`Error::Conflict`]. Not retried here.
    pub async fn append_commands(&self, append: StreamAppend) -> Result<StreamOutcome, Error> {
        validate_stream_append(&append, false)?;
        self.append_validated(append, None).await
    }

    /// [`EventStore::append_commands`] for the command handler, whose payloads come from
    /// [`crate::NewEvent::encode`], and whose state ended at `head_event` (the stream's event at
    /// the expected version): written only if that is still the stream's head event, so that a
    /// state kept from events a failover or a restore lost, whose versions another writer
    /// then reused, conflicts and is read again.
    pub(crate) async fn append_encoded(
        &self,
        append: StreamAppend,
        head_event: Option<Uuid>,
    ) -> Result<StreamOutcome, Error> {
        validate_stream_append(&append, true)?;
        self.append_validated(append, head_event).await
    }

    async fn append_validated(
        &self,
        append: StreamAppend,
        head_event: Option<Uuid>,
    ) -> Result<StreamOutcome, Error> {
        let result = match self.inner.writers.as_slice() {
            [] => Box::pin(self.write_one(&append, head_event, self.append_deadline())).await,
            writers => {
                let queue = &writers[writer_for(append.stream_id, writers.len())];
                self.enqueue(queue, append, head_event).await
            }
        };
        if matches!(
            result,
            Err(Error::Conflict { .. } | Error::WrongExpectedVersion { .. })
        ) {
            metrics::counter!("order_store_append_conflicts_total").increment(1);
        }
        result
    }

    /// Group commit when configured, else now.
    async fn submit(&self, append: &StreamAppend) -> Result<StreamOutcome, Error> {
        match self.inner.writers.as_slice() {
            [] => Box::pin(self.write_one(append, None, self.append_deadline())).await,
            writers => {
                let queue = &writers[writer_for(append.stream_id, writers.len())];
                self.enqueue(queue, append.clone(), None).await
            }
        }
    }

    /// When an append that begins waiting for the database now must be answered: one limit,
    /// [`StoreConfig::answer_timeout`], for everything it waits for.
    fn append_deadline(&self) -> Instant {
        Instant::now() + self.inner.config.answer_timeout()
    }

    /// Hand the append to its group-commit writer and wait for its own result. An append
    /// that no writer has taken within the pool's wait timeout (its writer is busy with a
    /// batch that holds a connection, for instance behind a lock) is withdrawn and answered
    /// UNAVAILABLE, exactly as a call that found no free connection: it is never written. One
    /// taken is answered by its writer within the append's limit, counted from now (see
    /// [`EventStore::until`]).
    async fn enqueue(
        &self,
        queue: &mpsc::Sender<Job>,
        append: StreamAppend,
        head_event: Option<Uuid>,
    ) -> Result<StreamOutcome, Error> {
        let (reply, mut result) = oneshot::channel();
        let claim = Arc::new(AtomicU8::new(Claim::QUEUED));
        let started = tokio::time::Instant::now();
        let deadline = self.append_deadline();
        // Only a writer that cannot run (a starved thread) leaves its caller waiting past the
        // deadline; the append may be written then, so the caller is answered `Timeout`.
        let wait = tokio::time::Instant::from_std(deadline) + WRITER_GRACE;
        let admission = self.inner.config.pool_wait();
        let job = Job {
            append,
            head_event,
            reply,
            claim: claim.clone(),
            deadline,
        };
        match tokio::time::timeout(admission, queue.send(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Error::Unavailable("the store is shutting down".into())),
            Err(_) => return Err(no_writer_in_time()),
        }
        let stopped = |_| Error::Unavailable("the append writer stopped".into());
        let remaining = admission.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, &mut result).await {
            Ok(answer) => return answer.map_err(stopped)?,
            Err(_) if Claim::settle(&claim, Claim::WITHDRAWN) => return Err(no_writer_in_time()),
            Err(_) => {} // taken into a batch: its answer comes
        }
        match tokio::time::timeout_at(wait, result).await {
            Ok(answer) => answer.map_err(stopped)?,
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Write several appends (distinct streams and command ids) with one statement, now.
    /// [`BatchFailure::RolledBack`]: nothing was written; [`BatchFailure::Unknown`]: the
    /// statement may have been carried out, and must not be run again.
    /// The statement is answered by `deadline` (see [`EventStore::until`]).
    pub(crate) async fn write(
        &self,
        appends: &[&StreamAppend],
        heads: &[Option<Uuid>],
        deadline: Instant,
    ) -> Result<Vec<Result<StreamOutcome, Error>>, BatchFailure> {
        self.try_write(appends, heads, deadline)
            .await
            .map_err(|failure| match failure {
                WriteFailure::Unique(constraint) => BatchFailure::RolledBack(Error::Database(
                    format!("unique constraint {constraint} violated"),
                )),
                WriteFailure::Unknown(error) => BatchFailure::Unknown(error),
                WriteFailure::Other(error) => BatchFailure::RolledBack(error),
            })
    }

    async fn try_write(
        &self,
        appends: &[&StreamAppend],
        heads: &[Option<Uuid>],
        deadline: Instant,
    ) -> Result<Vec<Result<StreamOutcome, Error>>, WriteFailure> {
        // New streams have no head to check.
        if heads.iter().all(Option::is_none)
            && let Some(params) = NewStreamParams::new(appends)
        {
            match self.try_write_new_streams(appends, &params, deadline).await {
                // A stream, command id or event id was there before: the full statement
                // below says exactly which (nothing was written).
                Err(WriteFailure::Unique(_)) => {}
                other => return other,
            }
        }
        let params = Params::new(appends, heads);
        let rows = self
            .run_append(APPEND_SQL, &params.as_sql(), deadline)
            .await?;
        // The statement committed: from here on, an answer that cannot be read leaves its
        // outcome unknown to the callers (never "nothing was written", never run again).
        let commands: usize = appends.iter().map(|a| a.commands.len()).sum();
        if rows.len() != commands {
            return Err(WriteFailure::Unknown(Error::Database(format!(
                "the append returned {} rows for {commands} commands",
                rows.len()
            ))));
        }
        let mut per_append: Vec<Vec<crate::batch::CommandRow>> = appends
            .iter()
            .map(|a| Vec::with_capacity(a.commands.len()))
            .collect();
        for row in &rows {
            let (job, command) = read_row(row).map_err(WriteFailure::Unknown)?;
            per_append
                .get_mut(job)
                .ok_or_else(|| {
                    WriteFailure::Unknown(Error::Database(
                        "the append answered an unknown index".into(),
                    ))
                })?
                .push(command);
        }
        let outcomes: Vec<_> = appends
            .iter()
            .zip(&per_append)
            .map(|(append, rows)| outcome(append, rows))
            .collect();
        if outcomes
            .iter()
            .any(|o| matches!(o, Ok(StreamOutcome::Appended(_))))
        {
            // Full channel = a NOTIFY is already due; nothing to add.
            let _ = self.inner.notify.try_send(());
        }
        Ok(outcomes)
    }

    /// Run an append statement (prepared once per connection) by `deadline`; a unique
    /// violation is told apart, with the constraint's name. Out of time before the statement
    /// went out (no connection, no answer to its preparation), nothing was written
    /// ([`WriteFailure::Other`]); after, its outcome is unknown ([`WriteFailure::Unknown`]).
    async fn run_append(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        deadline: Instant,
    ) -> Result<Vec<tokio_postgres::Row>, WriteFailure> {
        let sent = OnceLock::new();
        // Sent with less time left, a statement a slow server (a lock wait) carries out would
        // be cut off by the append's limit before the server's own statement timeout could
        // refuse it: an outcome left unknown that need not be. Not sent by then, it never is.
        let send_by = deadline
            .checked_sub(self.inner.config.statement_timeout + SERVER_ANSWER_MARGIN)
            .unwrap_or(deadline);
        let too_late = || {
            (Instant::now() >= send_by).then(|| {
                WriteFailure::Other(Error::Unavailable(
                    "too little of the append's time was left to send it; nothing was written"
                        .into(),
                ))
            })
        };
        if let Some(failure) = too_late() {
            return Err(failure);
        }
        let call = async {
            // Neither sends the append: a failure here wrote nothing.
            let client = (self.connection().await).map_err(WriteFailure::Other)?;
            let statement = (client.prepare_cached(sql).await)
                .map_err(|error| WriteFailure::Other(error.into()))?;
            if let Some(failure) = too_late() {
                return Err(failure);
            }
            // From here on the statement may reach the server.
            let _ = sent.set(Instant::now());
            match client.query(&statement, params).await {
                Ok(rows) => Ok(rows),
                Err(error) => Err(match Error::unique_violation(&error) {
                    Some(constraint) => WriteFailure::Unique(constraint.to_owned()),
                    // The server's own refusal: the statement rolled back.
                    None if error.as_db_error().is_some() => WriteFailure::Other(error.into()),
                    // The connection broke with the statement sent: it may have committed.
                    None => WriteFailure::Unknown(error.into()),
                }),
            }
        };
        match self
            .until(deadline, Some((&sent, send_by)), async { Ok(call.await) })
            .await
        {
            Ok(written) => written,
            // No answer in time to a statement sent: it may commit yet.
            Err(error @ Error::Timeout) => Err(WriteFailure::Unknown(error)),
            // Out of time before the statement went out: nothing was written.
            Err(error) => Err(WriteFailure::Other(error)),
        }
    }

    /// Write a batch whose appends all create their stream with
    /// [`crate::append::APPEND_NEW_STREAMS_SQL`]: inserts only, no probe.
    async fn try_write_new_streams(
        &self,
        appends: &[&StreamAppend],
        params: &NewStreamParams<'_>,
        deadline: Instant,
    ) -> Result<Vec<Result<StreamOutcome, Error>>, WriteFailure> {
        let rows = self
            .run_append(APPEND_NEW_STREAMS_SQL, &params.as_sql(), deadline)
            .await?;
        // Committed: an answer that cannot be read leaves the outcome unknown.
        let outcomes = new_stream_outcomes(appends, &rows).map_err(WriteFailure::Unknown)?;
        // Full channel = a NOTIFY is already due; nothing to add.
        let _ = self.inner.notify.try_send(());
        Ok(outcomes)
    }

    /// Write one append on this task, now (one statement), and wake subscribers. A collision
    /// on a unique index is reported exactly: an earlier record of one of its command ids, a
    /// conflict on the stream's version, or an event id already in the log. Answered by
    /// `deadline`, the reads that tell a collision apart included (see [`EventStore::until`]).
    pub(crate) async fn write_one(
        &self,
        append: &StreamAppend,
        head_event: Option<Uuid>,
        deadline: Instant,
    ) -> Result<StreamOutcome, Error> {
        let violated = match self.try_write(&[append], &[head_event], deadline).await {
            Ok(mut outcomes) => {
                return outcomes
                    .pop()
                    .unwrap_or_else(|| Err(Error::Database("the append answered nothing".into())));
            }
            Err(WriteFailure::Other(error) | WriteFailure::Unknown(error)) => return Err(error),
            Err(WriteFailure::Unique(constraint)) => constraint,
        };
        // A concurrent attempt of the same command may be what we collided with, whichever
        // constraint reported it.
        let ids: Vec<Uuid> = append
            .commands
            .iter()
            .filter_map(|c| c.record.as_ref().map(|r| r.command_id))
            .collect();
        if !ids.is_empty() {
            let found = self
                .until(deadline, None, async {
                    let client = self.connection().await?;
                    find_commands(&client, &ids).await
                })
                .await
                .map_err(nothing_written)?;
            let recorded: Vec<(usize, CommandRecord)> = append
                .commands
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let id = c.record.as_ref()?.command_id;
                    found
                        .iter()
                        .find(|(f, _)| *f == id)
                        .map(|(_, r)| (i, r.clone()))
                })
                .collect();
            if !recorded.is_empty() {
                return Ok(StreamOutcome::Recorded(recorded));
            }
        }
        Err(match violated.as_str() {
            constraint::STREAM_VERSION | constraint::COMMAND_ID => Error::Conflict {
                stream_id: append.stream_id,
            },
            constraint::EVENT_ID => {
                let ids: Vec<Uuid> = append
                    .commands
                    .iter()
                    .flat_map(|c| c.events.iter().map(|e| e.event_id))
                    .collect();
                self.event_id_in_log(&ids, deadline)
                    .await
                    .map_err(nothing_written)?
            }
            other => Error::Database(format!("unique constraint {other} violated")),
        })
    }

    /// The error for an append some of whose event ids (`ids`) collided with the log's: the
    /// one found there (a collision is with a committed event: the index waited for it).
    async fn event_id_in_log(&self, ids: &[Uuid], deadline: Instant) -> Result<Error, Error> {
        self.until(deadline, None, async {
            let client = self.connection().await?;
            let row = client
                .query_opt(
                    "SELECT event_id FROM orders.events WHERE event_id = ANY($1) \
                     ORDER BY global_position LIMIT 1",
                    &[&ids],
                )
                .await?;
            Ok(match row {
                Some(row) => Error::DuplicateEventId {
                    event_id: row.try_get(0)?,
                },
                // Gone from sight (a restore in between): still not written.
                None => Error::Unavailable(
                    "an event id collided with the log, and is not found there now".into(),
                ),
            })
        })
        .await
    }

    /// What these command ids were recorded with, for those that were.
    pub async fn find_commands(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, CommandRecord)>, Error> {
        self.timed(async {
            let client = self.connection().await?;
            find_commands(&client, ids).await
        })
        .await
    }

    /// What a command id was recorded with, if anything.
    pub async fn find_command(&self, command_id: Uuid) -> Result<Option<CommandRecord>, Error> {
        Ok(self
            .find_commands(&[command_id])
            .await?
            .pop()
            .map(|(_, record)| record))
    }

    /// The stream's events after `after_version` (0 = from the start), in version order.
    pub async fn read_stream(
        &self,
        stream_id: Uuid,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, Error> {
        self.timed(async {
            let client = self.connection().await?;
            read_stream(&client, stream_id, after_version).await
        })
        .await
    }

    /// At most `limit` of the stream's events after `after_version` (`None`: all of them), in
    /// version order, with the stream's category (whether it exists), read in one statement.
    /// A long stream read in slices costs each slice its own rows only.
    pub async fn read_stream_slice(
        &self,
        stream_id: Uuid,
        after_version: u64,
        limit: Option<u32>,
    ) -> Result<StreamSlice, Error> {
        self.timed(async {
            let client = self.connection().await?;
            read_stream_slice(&client, stream_id, after_version, limit).await
        })
        .await
    }

    /// [`EventStore::read_stream_slice`] on a connection of your own, such as one from
    /// [`EventStore::connection_within`] (a read replica's reads tell a busy pool from a
    /// failed server so).
    pub async fn read_stream_slice_on(
        &self,
        client: &deadpool_postgres::Object,
        stream_id: Uuid,
        after_version: u64,
        limit: Option<u32>,
    ) -> Result<StreamSlice, Error> {
        self.timed(read_stream_slice(client, stream_id, after_version, limit))
            .await
    }

    /// Up to `limit` events after `after` in the gap-safe order: ordered by writing
    /// transaction, then position, and only from transactions older than every transaction
    /// still in flight that may write to this database (`orders.log_fence()`: open
    /// transactions of other databases on the same server hold nothing back). An event whose
    /// transaction commits late is therefore still delivered after its cursor position was
    /// passed by nobody; nothing is ever skipped.
    pub async fn read_all(&self, after: Cursor, limit: u32) -> Result<Vec<RecordedEvent>, Error> {
        self.timed(async {
            let client = self.connection().await?;
            read_all(&client, after, limit).await
        })
        .await
    }

    /// [`EventStore::read_all`] for a subscriber of some categories (stream types): the next
    /// `limit` events of the log after `after`, in the same gap-safe order and behind the same
    /// fence, of which those of `categories` are returned. [`CategoryPage::end`] is the cursor
    /// of the last event read, whichever its category: the subscriber has then seen every
    /// event of its categories up to it, and checkpoints it, so that it moves through the log
    /// (and its lag stays meaningful) even while none of its events arrive. The payloads of
    /// other categories are not sent.
    pub async fn read_all_in(
        &self,
        after: Cursor,
        limit: u32,
        categories: &[&str],
    ) -> Result<CategoryPage, Error> {
        self.read_page(after, limit, Some(categories)).await
    }

    /// The page a subscriber reads: [`EventStore::read_all_in`] for `Some(categories)`, and
    /// [`EventStore::read_all`] for `None` (every category), both with the page's
    /// [`CategoryPage::digest`], which [`crate::subscription::verify_read`] checks before a
    /// checkpoint moves past the page.
    pub async fn read_page(
        &self,
        after: Cursor,
        limit: u32,
        categories: Option<&[&str]>,
    ) -> Result<CategoryPage, Error> {
        self.timed(async {
            let client = self.connection().await?;
            let statement = client.prepare_cached(&READ_ALL_IN_SQL).await?;
            let position = i64::try_from(after.global_position).unwrap_or(i64::MAX);
            let rows = client
                .query(
                    &statement,
                    &[
                        &after.transaction_id,
                        &position,
                        &i64::from(limit),
                        &categories,
                    ],
                )
                .await?;
            let mut page = CategoryPage {
                events: Vec::with_capacity(rows.len()),
                end: None,
                read: rows.len(),
                digest: crate::subscription::LogDigest::EMPTY,
            };
            if let Some(row) = rows.first() {
                page.digest.read_from(row.try_get(17)?);
            }
            for row in &rows {
                page.digest.add(row.try_get(4)?);
                let category: &str = row.try_get(15)?;
                if categories.is_none_or(|names| names.contains(&category)) {
                    page.events.push(RecordedEvent::from_row(row)?);
                }
                page.end = Some(Cursor {
                    transaction_id: row.try_get(1)?,
                    global_position: row.try_get::<_, i64>(0)? as u64,
                });
            }
            Ok(page)
        })
        .await
    }

    /// A cursor from which [`EventStore::read_all`] delivers every event whose global
    /// position is greater than `position` (along with some at or below it, which the caller
    /// skips). Positions alone are no resume point: a transaction may commit an event below
    /// a position that was already delivered. The cursor starts at the oldest transaction
    /// that wrote above `position` or may still do so.
    pub async fn cursor_before_position(&self, position: u64) -> Result<Cursor, Error> {
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        self.timed(async {
            let client = self.connection().await?;
            let row = client
                .query_one(CURSOR_BEFORE_POSITION_SQL, &[&position])
                .await?;
            Ok(Cursor {
                transaction_id: row.try_get(0)?,
                global_position: 0,
            })
        })
        .await
    }

    /// The id of the event at `cursor` (the same global position, written by the same
    /// transaction), or `None` when the log holds no such event: a cursor from another database,
    /// or one whose event a failover to an asynchronous standby or a restore lost.
    pub async fn event_id_at(&self, cursor: Cursor) -> Result<Option<Uuid>, Error> {
        let position = i64::try_from(cursor.global_position).unwrap_or(i64::MAX);
        self.timed(async {
            let client = self.connection().await?;
            let row = client
                .query_opt(
                    "SELECT event_id FROM orders.events
                     WHERE global_position = $1 AND transaction_id = $2",
                    &[&position, &cursor.transaction_id],
                )
                .await?;
            Ok(row.map(|row| row.try_get(0)).transpose()?)
        })
        .await
    }

    /// Up to `limit` events with `after < global_position <= through`, in position order
    /// (for re-sending a range; within one stream, position order is version order).
    pub async fn read_range(
        &self,
        after: u64,
        through: u64,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let (after, through) = (
            i64::try_from(after).unwrap_or(i64::MAX),
            i64::try_from(through).unwrap_or(i64::MAX),
        );
        self.timed(async {
            let client = self.connection().await?;
            let statement = client.prepare_cached(&READ_RANGE_SQL).await?;
            let rows = client
                .query(&statement, &[&after, &through, &i64::from(limit)])
                .await?;
            rows.iter().map(RecordedEvent::from_row).collect()
        })
        .await
    }

    /// The highest global position written so far (0 for an empty log).
    pub async fn head_position(&self) -> Result<u64, Error> {
        self.timed(async {
            let client = self.connection().await?;
            let row = client
                .query_one(
                    "SELECT coalesce(max(global_position), 0) FROM orders.events",
                    &[],
                )
                .await?;
            Ok(row.try_get::<_, i64>(0)? as u64)
        })
        .await
    }
}

pub(crate) async fn find_commands(
    client: &deadpool_postgres::ClientWrapper,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, CommandRecord)>, Error> {
    let statement = client.prepare_cached(FIND_COMMANDS_SQL).await?;
    let rows = client.query(&statement, &[&ids]).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                CommandRecord {
                    stream_id: row.try_get(1)?,
                    fingerprint: row.try_get(5)?,
                    committed: Committed {
                        stream_version: row.try_get::<_, i64>(2)? as u64,
                        global_position: row.try_get::<_, i64>(3)? as u64,
                        status: row.try_get(4)?,
                    },
                },
            ))
        })
        .collect()
}

/// A stream and the records of some command ids, read in one statement, so in one snapshot:
/// a command whose events are in `events` has its record in `records`, and the other way round.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub records: Vec<(Uuid, CommandRecord)>,
    /// (stream version, event type, schema version, payload, global position), in version
    /// order.
    pub events: Vec<(u64, String, u16, serde_json::Value, u64)>,
    /// The id of the last of `events`.
    pub head_event: Option<Uuid>,
    /// The category of the stream's events (every append of a stream names the same one).
    pub category: Option<String>,
}

const LOAD_SQL: &str = "
SELECT 1 AS kind, e.event_id, NULL::uuid, e.stream_version, e.global_position, e.event_type,
    NULL::bytea, e.schema_version, e.payload, e.category
FROM orders.events e
WHERE e.stream_id = $1 AND e.stream_version > $3
UNION ALL
SELECT 0, c.command_id, c.stream_id, c.stream_version, c.global_position, c.status,
    c.fingerprint, NULL::int2, NULL::jsonb, NULL::text
FROM orders.commands c
WHERE c.command_id = ANY($2::uuid[])
ORDER BY 1, 4";

/// Read a stream after `after_version` and the records of `command_ids` in one statement.
pub(crate) async fn load(
    client: &deadpool_postgres::ClientWrapper,
    stream_id: Uuid,
    command_ids: &[Uuid],
    after_version: u64,
) -> Result<Loaded, Error> {
    let statement = client.prepare_cached(LOAD_SQL).await?;
    let after = i64::try_from(after_version).unwrap_or(i64::MAX);
    let rows = client
        .query(&statement, &[&stream_id, &command_ids, &after])
        .await?;
    let mut loaded = Loaded::default();
    for row in &rows {
        let kind: i32 = row.try_get(0)?;
        let version = row.try_get::<_, i64>(3)? as u64;
        let position = row.try_get::<_, i64>(4)? as u64;
        if kind == 0 {
            loaded.records.push((
                row.try_get(1)?,
                CommandRecord {
                    stream_id: row.try_get(2)?,
                    fingerprint: row.try_get(6)?,
                    committed: Committed {
                        stream_version: version,
                        global_position: position,
                        status: row.try_get(5)?,
                    },
                },
            ));
        } else {
            if loaded.category.is_none() {
                loaded.category = Some(row.try_get(9)?);
            }
            // In version order: the last one read is the head.
            loaded.head_event = Some(row.try_get(1)?);
            loaded.events.push((
                version,
                row.try_get(5)?,
                row.try_get::<_, i16>(7)? as u16,
                row.try_get(8)?,
                position,
            ));
        }
    }
    Ok(loaded)
}

/// Why a write failed: a unique index (by constraint name), no answer to a statement that
/// may have been carried out (the time limit, or a connection lost once it was sent), or
/// anything else (the server refused it, or it was never sent: nothing was written).
enum WriteFailure {
    Unique(String),
    Unknown(Error),
    Other(Error),
}

fn duplicate(
    stream_id: Uuid,
    idempotency: crate::append::Idempotency<'_>,
    record: CommandRecord,
) -> Result<AppendOutcome, Error> {
    if record.stream_id != stream_id || record.fingerprint != idempotency.fingerprint {
        return Err(Error::CommandIdReused {
            command_id: idempotency.command_id,
        });
    }
    Ok(AppendOutcome::Duplicate(record.committed))
}

static READ_STREAM_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM orders.events \
         WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version"
    )
});

/// A stream's first event (whether it exists, and its category), then up to `$3` events
/// after version `$2` (and after the first); both index range scans on (stream_id,
/// stream_version). `LIMIT NULL` is no limit.
static READ_STREAM_SLICE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "(SELECT {EVENT_COLUMNS} FROM orders.events WHERE stream_id = $1 AND stream_version = 1) \
         UNION ALL \
         (SELECT {EVENT_COLUMNS} FROM orders.events \
          WHERE stream_id = $1 AND stream_version > greatest($2::int8, 1) \
          ORDER BY stream_version LIMIT $3::int8) \
         ORDER BY stream_version"
    )
});

static READ_ALL_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM orders.events \
         WHERE (transaction_id, global_position) > ($1::xid8, $2::int8) \
           AND transaction_id < (SELECT orders.log_fence()) \
         ORDER BY transaction_id, global_position \
         LIMIT $3"
    )
});

/// As [`READ_ALL_SQL`], with the payload only for the categories in `$4` (all for null), and
/// the server's start time (the reader's [`crate::subscription::LogDigest`] holds it).
static READ_ALL_IN_SQL: LazyLock<String> = LazyLock::new(|| {
    let columns = EVENT_COLUMNS.replace(
        "payload",
        "CASE WHEN $4::text[] IS NULL OR category = ANY($4::text[]) THEN payload END",
    ) + ", pg_postmaster_start_time()";
    format!(
        "SELECT {columns} FROM orders.events \
         WHERE (transaction_id, global_position) > ($1::xid8, $2::int8) \
           AND transaction_id < (SELECT orders.log_fence()) \
         ORDER BY transaction_id, global_position \
         LIMIT $3"
    )
});

static READ_RANGE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM orders.events \
         WHERE global_position > $1 AND global_position <= $2 \
         ORDER BY global_position LIMIT $3"
    )
});

pub(crate) async fn read_stream(
    client: &deadpool_postgres::ClientWrapper,
    stream_id: Uuid,
    after_version: u64,
) -> Result<Vec<RecordedEvent>, Error> {
    let statement = client.prepare_cached(&READ_STREAM_SQL).await?;
    let after = i64::try_from(after_version).unwrap_or(i64::MAX);
    let rows = client.query(&statement, &[&stream_id, &after]).await?;
    rows.iter().map(RecordedEvent::from_row).collect()
}

pub(crate) async fn read_stream_slice(
    client: &deadpool_postgres::ClientWrapper,
    stream_id: Uuid,
    after_version: u64,
    limit: Option<u32>,
) -> Result<StreamSlice, Error> {
    let statement = client.prepare_cached(&READ_STREAM_SLICE_SQL).await?;
    let after = i64::try_from(after_version).unwrap_or(i64::MAX);
    let most = limit.map(i64::from);
    let rows = client
        .query(&statement, &[&stream_id, &after, &most])
        .await?;
    let mut events = rows
        .iter()
        .map(RecordedEvent::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let category = events.first().map(|first| first.category.clone());
    events.retain(|event| event.stream_version > after_version);
    if let Some(most) = limit {
        events.truncate(most as usize);
    }
    Ok(StreamSlice { events, category })
}

pub(crate) async fn read_all(
    client: &deadpool_postgres::ClientWrapper,
    after: Cursor,
    limit: u32,
) -> Result<Vec<RecordedEvent>, Error> {
    let statement = client.prepare_cached(&READ_ALL_SQL).await?;
    let position = i64::try_from(after.global_position).unwrap_or(i64::MAX);
    let limit = i64::from(limit);
    let rows = client
        .query(&statement, &[&after.transaction_id, &position, &limit])
        .await?;
    rows.iter().map(RecordedEvent::from_row).collect()
}

/// Export the pool's saturation every second while the store lives.
async fn pool_metrics(store: std::sync::Weak<Inner>) {
    loop {
        let Some(inner) = store.upgrade() else { return };
        let pools: Vec<(String, deadpool_postgres::Status)> =
            std::iter::once((inner.config.application_name.clone(), inner.pool.status()))
                .chain(
                    inner
                        .writer_pools
                        .iter()
                        .map(|(name, pool)| (name.clone(), pool.status())),
                )
                .collect();
        drop(inner);
        for (name, status) in pools {
            let in_use = status.size.saturating_sub(status.available);
            metrics::gauge!("order_db_pool_connections", "pool" => name.clone(), "state" => "in_use")
                .set(in_use as f64);
            metrics::gauge!("order_db_pool_connections", "pool" => name.clone(), "state" => "idle")
                .set(status.available as f64);
            metrics::gauge!("order_db_pool_max", "pool" => name.clone())
                .set(status.max_size as f64);
            metrics::gauge!("order_db_pool_waiting", "pool" => name).set(status.waiting as f64);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sends one NOTIFY per signal burst, at most every [`NOTIFY_INTERVAL`]; ends with the store.
async fn notifier(pool: Pool, mut requests: mpsc::Receiver<()>) {
    while requests.recv().await.is_some() {
        match pool.get().await {
            Ok(client) => {
                if let Err(error) = client
                    .batch_execute(&format!("NOTIFY {NOTIFY_CHANNEL}"))
                    .await
                {
                    tracing::debug!(%error, "notify after append failed; subscribers poll");
                }
            }
            Err(error) => tracing::debug!(%error, "no connection to notify; subscribers poll"),
        }
        tokio::time::sleep(NOTIFY_INTERVAL).await;
    }
}

/// How much time beyond the server's statement timeout an append's statement must have left
/// when it is sent: enough for the server's own refusal (statement timeout, a definite "rolled
/// back") to come back before the append's limit. Less, and it is not sent (UNAVAILABLE).
const SERVER_ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// How long past an append's deadline its caller waits for a group-commit writer that took it
/// and has not answered (a writer answers by the deadline unless it cannot run at all).
const WRITER_GRACE: Duration = Duration::from_secs(1);

/// An append whose statement the server refused (a unique index) while the reads that tell
/// the collision apart got no answer in time: nothing of it was written.
fn nothing_written(error: Error) -> Error {
    match error {
        Error::Timeout => {
            Error::Unavailable("the database did not answer in time; nothing was written".into())
        }
        other => other,
    }
}

/// The answer to an append that no group-commit writer took in time: the same as finding no
/// free connection, and like it, nothing was written.
fn no_writer_in_time() -> Error {
    Error::Unavailable("no database connection free in time (pool exhausted)".into())
}

/// Why a batch's statement failed, as the group-commit writer must know it.
pub(crate) enum BatchFailure {
    /// Nothing was written: each append may be run again on its own.
    RolledBack(Error),
    /// No answer to a statement that may have been carried out: running it again could meet
    /// its own rows and answer "nothing was written" about events in the log.
    Unknown(Error),
}

/// The statement behind [`EventStore::cursor_before_position`] (`$1`: the position): the oldest
/// transaction id among the events above the position, or the log fence's when that is older.
///
/// PostgreSQL would answer `min(transaction_id) ... WHERE global_position > $1` by walking the
/// transaction-id index from its start until a row above the position, taking the two columns
/// for unrelated; they rise together, so near the head that walk reads nearly the whole index
/// (182 ms at 5 million events, growing with the log). So the statement picks by where the
/// position is: in the older half of the log, that walk, which stops within the rows below
/// the position; in the newer half, the rows above it through the primary key. Either reads
/// no more rows than the subscriber will be sent.
#[doc(hidden)]
pub const CURSOR_BEFORE_POSITION_SQL: &str = "
SELECT least(
    CASE WHEN $1 < (SELECT max(global_position) FROM orders.events) - $1
        THEN (SELECT min(transaction_id) FROM orders.events WHERE global_position > $1)
        ELSE (SELECT min(transaction_id)
              FROM (SELECT transaction_id FROM orders.events WHERE global_position > $1
                    OFFSET 0) AS above)
    END,
    (SELECT orders.log_fence()))";

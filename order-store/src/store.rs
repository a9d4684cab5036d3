//! The event store: append, read a stream, read the global log gap-safely.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::append::{
    APPEND_SQL, AppendOutcome, AppendRequest, Committed, ExpectedVersion, FIND_COMMAND_SQL,
    validate,
};
use crate::batch::{BATCH_SQL, Job, Queue, outcome, writer};
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
    /// The group-commit queue; `None` for the writers' own handle, which appends directly.
    batch: Option<mpsc::Sender<Job>>,
}

/// What a command id was recorded with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    pub stream_id: Uuid,
    pub fingerprint: Vec<u8>,
    pub committed: Committed,
}

impl EventStore {
    /// A store over a lazily connecting pool. Needs a Tokio runtime (it starts the notifier).
    pub fn new(config: StoreConfig) -> Result<Self, Error> {
        let pool = config.pool()?;
        let (notify, requests) = mpsc::channel(1);
        tokio::spawn(notifier(pool.clone(), requests));
        let handle = |config: StoreConfig, batch| Self {
            inner: Arc::new(Inner {
                pool: pool.clone(),
                config,
                notify: notify.clone(),
                batch,
            }),
        };
        if config.group_commit_batch <= 1 {
            let store = handle(config, None);
            tokio::spawn(pool_metrics(Arc::downgrade(&store.inner)));
            return Ok(store);
        }
        // The writers share the pool but hold a handle without the queue, so that dropping
        // the last public handle closes the queue and ends them.
        let (sender, receiver) = mpsc::channel(config.group_commit_batch * 4);
        let queue = Queue::new(receiver, config.group_commit_batch);
        for _ in 0..config.group_commit_writers.max(1) {
            tokio::spawn(writer(handle(config.clone(), None), queue.clone()));
        }
        let store = handle(config, Some(sender));
        tokio::spawn(pool_metrics(Arc::downgrade(&store.inner)));
        Ok(store)
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Run a database call with the client-side time limit.
    pub async fn timed<T, F>(&self, call: F) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        match tokio::time::timeout(self.inner.config.call_timeout(), call).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout),
        }
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), Error> {
        self.timed(async {
            let client = self.inner.pool.get().await?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
        .await
    }

    /// Whether the database answers and has every migration this binary knows.
    pub async fn is_ready(&self) -> Result<bool, Error> {
        self.timed(async {
            let client = self.inner.pool.get().await?;
            crate::migrate::is_current(&client).await
        })
        .await
    }

    /// Append events to a stream. With an idempotency record, a command id seen before
    /// returns its first result and writes nothing.
    pub async fn append(&self, request: AppendRequest<'_>) -> Result<AppendOutcome, Error> {
        validate(&request)?;
        let mut attempt = 1;
        loop {
            let result = match &self.inner.batch {
                Some(queue) => self.enqueue(queue, &request).await,
                None => self.append_now(&request).await,
            };
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
                other => return other,
            }
        }
    }

    /// Hand the append to the group-commit writers and wait for its own result.
    async fn enqueue(
        &self,
        queue: &mpsc::Sender<Job>,
        request: &AppendRequest<'_>,
    ) -> Result<AppendOutcome, Error> {
        let (reply, result) = oneshot::channel();
        let wait = self.inner.config.call_timeout() * 2;
        let queued = async {
            queue
                .send(Job::from_request(request, reply))
                .await
                .map_err(|_| Error::Unavailable("the store is shutting down".into()))?;
            result
                .await
                .map_err(|_| Error::Unavailable("the append writer stopped".into()))?
        };
        tokio::time::timeout(wait, queued)
            .await
            .unwrap_or(Err(Error::Timeout))
    }

    /// Append on this task, now (one statement), and wake subscribers.
    pub(crate) async fn append_now(
        &self,
        request: &AppendRequest<'_>,
    ) -> Result<AppendOutcome, Error> {
        let outcome = self.try_append(request).await?;
        if matches!(outcome, AppendOutcome::Appended(_)) {
            // Full channel = a NOTIFY is already due; nothing to add.
            let _ = self.inner.notify.try_send(());
        }
        Ok(outcome)
    }

    /// Append several jobs (distinct streams and command ids) with one statement. An error
    /// means nothing was written.
    pub(crate) async fn append_batch(
        &self,
        jobs: &[Job],
    ) -> Result<Vec<Result<AppendOutcome, Error>>, Error> {
        let mut stream_ids = Vec::with_capacity(jobs.len());
        let mut expected = Vec::with_capacity(jobs.len());
        let mut command_ids = Vec::with_capacity(jobs.len());
        let mut fingerprints = Vec::with_capacity(jobs.len());
        let mut statuses = Vec::with_capacity(jobs.len());
        let mut correlation = Vec::with_capacity(jobs.len());
        let mut causation = Vec::with_capacity(jobs.len());
        let mut traceparent = Vec::with_capacity(jobs.len());
        let mut tracestate = Vec::with_capacity(jobs.len());
        let mut actor = Vec::with_capacity(jobs.len());
        let (mut index, mut event_ids, mut types, mut versions, mut payloads) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, job) in jobs.iter().enumerate() {
            stream_ids.push(job.stream_id);
            expected.push(job.expected.as_sql());
            command_ids.push(
                job.idempotency
                    .as_ref()
                    .map(|(id, _, _)| *id)
                    .or(job.metadata.command_id),
            );
            fingerprints.push(job.idempotency.as_ref().map(|(_, f, _)| f.to_vec()));
            statuses.push(job.idempotency.as_ref().map(|(_, _, s)| s.as_str()));
            correlation.push(job.metadata.correlation_id.as_deref());
            causation.push(job.metadata.causation_id);
            traceparent.push(job.metadata.traceparent.as_deref());
            tracestate.push(job.metadata.tracestate.as_deref());
            actor.push(job.metadata.actor.as_deref());
            for event in &job.events {
                index.push(i as i64 + 1);
                event_ids.push(event.event_id);
                types.push(event.event_type.as_str());
                versions.push(event.schema_version as i16);
                payloads.push(event.payload.as_str());
            }
        }
        let rows = self
            .timed(async {
                let client = self.inner.pool.get().await?;
                let statement = client.prepare_cached(BATCH_SQL).await?;
                Ok(client
                    .query(
                        &statement,
                        &[
                            &stream_ids,
                            &expected,
                            &command_ids,
                            &fingerprints,
                            &statuses,
                            &correlation,
                            &causation,
                            &traceparent,
                            &tracestate,
                            &actor,
                            &index,
                            &event_ids,
                            &types,
                            &versions,
                            &payloads,
                        ],
                    )
                    .await?)
            })
            .await?;
        if rows.len() != jobs.len() {
            return Err(Error::Database(format!(
                "group commit returned {} rows for {} appends",
                rows.len(),
                jobs.len()
            )));
        }
        let mut outcomes = Vec::with_capacity(jobs.len());
        for (job, row) in jobs.iter().zip(&rows) {
            let head: i64 = row.try_get(1)?;
            let written = match (
                row.try_get::<_, Option<i64>>(2)?,
                row.try_get::<_, Option<i64>>(3)?,
            ) {
                (Some(version), Some(position)) => Some((version, position)),
                _ => None,
            };
            let prior = match row.try_get::<_, Option<Uuid>>(4)? {
                Some(stream_id) => Some(CommandRecord {
                    stream_id,
                    fingerprint: row.try_get(8)?,
                    committed: Committed {
                        stream_version: row.try_get::<_, i64>(5)? as u64,
                        global_position: row.try_get::<_, i64>(6)? as u64,
                        status: row.try_get(7)?,
                    },
                }),
                None => None,
            };
            outcomes.push(outcome(job, head, written, prior));
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, Ok(AppendOutcome::Appended(_))))
        {
            let _ = self.inner.notify.try_send(());
        }
        Ok(outcomes)
    }

    async fn try_append(&self, request: &AppendRequest<'_>) -> Result<AppendOutcome, Error> {
        let events = request.events;
        let event_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let versions: Vec<i16> = events.iter().map(|e| e.schema_version as i16).collect();
        let payloads: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
        let metadata = request.metadata;
        let idempotency = request.idempotency;
        let command_id = idempotency.map(|i| i.command_id).or(metadata.command_id);
        let fingerprint = idempotency.map(|i| i.fingerprint.to_vec());
        let status = idempotency.map(|i| i.status);
        let expected = request.expected.as_sql();

        self.timed(async {
            let client = self.inner.pool.get().await?;
            let statement = client.prepare_cached(APPEND_SQL).await?;
            let result = client
                .query_one(
                    &statement,
                    &[
                        &request.stream_id,
                        &expected,
                        &event_ids,
                        &types,
                        &versions,
                        &payloads,
                        &metadata.correlation_id,
                        &metadata.causation_id,
                        &command_id,
                        &metadata.traceparent,
                        &metadata.tracestate,
                        &metadata.actor,
                        &fingerprint,
                        &status,
                    ],
                )
                .await;
            let row = match result {
                Ok(row) => row,
                Err(error) => {
                    let Some(violated) = Error::unique_violation(&error) else {
                        return Err(error.into());
                    };
                    // A concurrent attempt of the same command may be what we collided with,
                    // whichever constraint reported it.
                    if let Some(idem) = idempotency
                        && let Some(record) = find_command(&client, idem.command_id).await?
                    {
                        return duplicate(request.stream_id, idem, record);
                    }
                    return Err(match violated {
                        constraint::STREAM_VERSION | constraint::COMMAND_ID => Error::Conflict {
                            stream_id: request.stream_id,
                        },
                        constraint::EVENT_ID => Error::DuplicateEventId {
                            event_id: event_ids.first().copied().unwrap_or_default(),
                        },
                        _ => error.into(),
                    });
                }
            };
            let head: i64 = row.try_get(0)?;
            let version: Option<i64> = row.try_get(1)?;
            let position: Option<i64> = row.try_get(2)?;
            let prior_stream: Option<Uuid> = row.try_get(3)?;
            if let (Some(idem), Some(stream_id)) = (idempotency, prior_stream) {
                let record = CommandRecord {
                    stream_id,
                    fingerprint: row.try_get(7)?,
                    committed: Committed {
                        stream_version: row.try_get::<_, i64>(4)? as u64,
                        global_position: row.try_get::<_, i64>(5)? as u64,
                        status: row.try_get(6)?,
                    },
                };
                return duplicate(request.stream_id, idem, record);
            }
            match (version, position) {
                (Some(version), Some(position)) => Ok(AppendOutcome::Appended(Committed {
                    stream_version: version as u64,
                    global_position: position as u64,
                    status: status.unwrap_or_default().to_owned(),
                })),
                _ => Err(Error::WrongExpectedVersion {
                    stream_id: request.stream_id,
                    expected: request.expected,
                    actual: head as u64,
                }),
            }
        })
        .await
    }

    /// What a command id was recorded with, if anything.
    pub async fn find_command(&self, command_id: Uuid) -> Result<Option<CommandRecord>, Error> {
        self.timed(async {
            let client = self.inner.pool.get().await?;
            find_command(&client, command_id).await
        })
        .await
    }

    /// The stream's events after `after_version` (0 = from the start), in version order.
    pub async fn read_stream(
        &self,
        stream_id: Uuid,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, Error> {
        self.timed(async {
            let client = self.inner.pool.get().await?;
            read_stream(&client, stream_id, after_version).await
        })
        .await
    }

    /// Up to `limit` events after `after` in the gap-safe order: ordered by writing
    /// transaction, then position, and only from transactions older than every transaction
    /// still in flight. An event whose transaction commits late is therefore still delivered
    /// after its cursor position was passed by nobody; nothing is ever skipped.
    pub async fn read_all(&self, after: Cursor, limit: u32) -> Result<Vec<RecordedEvent>, Error> {
        self.timed(async {
            let client = self.inner.pool.get().await?;
            read_all(&client, after, limit).await
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
            let client = self.inner.pool.get().await?;
            let row = client
                .query_one(
                    "SELECT least(
                        (SELECT min(transaction_id) FROM orders.events WHERE global_position > $1),
                        pg_snapshot_xmin(pg_current_snapshot()))",
                    &[&position],
                )
                .await?;
            Ok(Cursor {
                transaction_id: row.try_get(0)?,
                global_position: 0,
            })
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
            let client = self.inner.pool.get().await?;
            let statement = client.prepare_cached(&READ_RANGE_SQL).await?;
            let rows = client
                .query(&statement, &[&after, &through, &i64::from(limit)])
                .await?;
            rows.iter()
                .map(|row| RecordedEvent::from_row(row).map_err(Error::from))
                .collect()
        })
        .await
    }

    /// The highest global position written so far (0 for an empty log).
    pub async fn head_position(&self) -> Result<u64, Error> {
        self.timed(async {
            let client = self.inner.pool.get().await?;
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

pub(crate) async fn find_command(
    client: &deadpool_postgres::ClientWrapper,
    command_id: Uuid,
) -> Result<Option<CommandRecord>, Error> {
    let statement = client.prepare_cached(FIND_COMMAND_SQL).await?;
    let Some(row) = client.query_opt(&statement, &[&command_id]).await? else {
        return Ok(None);
    };
    Ok(Some(CommandRecord {
        stream_id: row.try_get(0)?,
        fingerprint: row.try_get(4)?,
        committed: Committed {
            stream_version: row.try_get::<_, i64>(1)? as u64,
            global_position: row.try_get::<_, i64>(2)? as u64,
            status: row.try_get(3)?,
        },
    }))
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

static READ_ALL_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM orders.events \
         WHERE (transaction_id, global_position) > ($1::xid8, $2::int8) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
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
    rows.iter()
        .map(|row| RecordedEvent::from_row(row).map_err(Error::from))
        .collect()
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
    rows.iter()
        .map(|row| RecordedEvent::from_row(row).map_err(Error::from))
        .collect()
}

/// Export the pool's saturation every second while the store lives.
async fn pool_metrics(store: std::sync::Weak<Inner>) {
    loop {
        let Some(inner) = store.upgrade() else { return };
        let status = inner.pool.status();
        let name = inner.config.application_name.clone();
        drop(inner);
        let in_use = status.size.saturating_sub(status.available);
        metrics::gauge!("order_db_pool_connections", "pool" => name.clone(), "state" => "in_use")
            .set(in_use as f64);
        metrics::gauge!("order_db_pool_connections", "pool" => name.clone(), "state" => "idle")
            .set(status.available as f64);
        metrics::gauge!("order_db_pool_max", "pool" => name.clone()).set(status.max_size as f64);
        metrics::gauge!("order_db_pool_waiting", "pool" => name).set(status.waiting as f64);
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

//! Group commit: appends that arrive while others are being written are coalesced into one
//! statement and one transaction, with a result per append.
//!
//! Each writer task owns a queue; an append goes to the writer its stream id hashes to, so one
//! process never has two batches with the same stream in flight. A writer takes the next
//! waiting append plus whatever else is already queued (up to a batch size), gathers the
//! callers of the batch it just answered when they are expected back (a writer that is a task
//! of their runtime yields to them for a few microseconds:
//! [`crate::StoreConfig::group_commit_gather`]), and writes them with one multi-stream
//! statement ([`crate::APPEND_SQL`]): one round trip, one commit, one WAL flush for the lot.
//! A batch never holds two appends to the same stream or two with the same
//! command id (those wait for the next batch), so the statement cannot conflict with itself;
//! it inserts in stream-id order, so batches of several processes cannot deadlock. If it
//! conflicts with a writer outside the batch, every append of the batch is retried on its own,
//! which reports exactly which one lost. Being one statement, a batch keeps the log's gap-safe
//! order: each stream's events still commit in version order.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::append::{CommandRecordWrite, Committed, StreamAppend, StreamOutcome};
use crate::error::Error;
use crate::store::{BatchFailure, CommandRecord, EventStore};

/// An append owned by a queue, with the channel its result goes back on.
#[derive(Debug)]
pub(crate) struct Job {
    pub append: StreamAppend,
    /// The event its caller's state ended at, checked against the stream's head (the command
    /// handler's; `None`: no such check).
    pub head_event: Option<Uuid>,
    pub reply: oneshot::Sender<Result<StreamOutcome, Error>>,
    /// Who owns the append: [`Claim::QUEUED`] until the writer takes it into a batch or the
    /// caller withdraws it; exactly one of them wins.
    pub claim: Arc<AtomicU8>,
    /// When its caller must have its answer: the append began waiting for the database
    /// [`crate::StoreConfig::answer_timeout`] before. Whatever the writer does for it (open a
    /// connection, write its batch, write it alone) ends by then.
    pub deadline: Instant,
}

/// The states of [`Job::claim`].
pub(crate) struct Claim;

impl Claim {
    /// Waiting in the queue.
    pub const QUEUED: u8 = 0;
    /// Taken into a batch: it will be written (or fail) and answered.
    pub const TAKEN: u8 = 1;
    /// Withdrawn by its caller before any writer took it: it is never written.
    pub const WITHDRAWN: u8 = 2;

    /// Move `claim` from queued to `to`; false if someone else already decided.
    pub fn settle(claim: &AtomicU8, to: u8) -> bool {
        claim
            .compare_exchange(Self::QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Job {
    fn command_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.append
            .commands
            .iter()
            .filter_map(|c| c.record.as_ref().map(|r| r.command_id))
    }
}

/// The writer an append of `stream_id` goes to.
pub(crate) fn writer_for(stream_id: Uuid, writers: usize) -> usize {
    let (high, low) = stream_id.as_u64_pair();
    ((high ^ low) % writers.max(1) as u64) as usize
}

/// One writer's queue.
#[derive(Debug)]
pub(crate) struct Queue {
    receiver: mpsc::Receiver<Job>,
    deferred: VecDeque<Job>,
    max_batch: usize,
    /// How long a quiet spell ends the gathering of the callers just answered (zero: none).
    gather: Duration,
    /// The longest a batch gathers ([`GATHER_LIMIT`]).
    gather_limit: Duration,
    /// How many appends the last batch held: their callers were just answered.
    answered: usize,
    /// Whether appends were waiting when the last batch's statement came back: they arrived
    /// while it was written, so they are not its callers coming back.
    waiting: bool,
}

/// The longest a batch waits for the callers just answered, however steadily they come.
const GATHER_LIMIT: Duration = Duration::from_micros(300);

/// The batch being put together: its appends, and the streams and command ids it holds.
struct Forming {
    batch: Vec<Job>,
    streams: HashSet<Uuid>,
    commands: HashSet<Uuid>,
}

impl Forming {
    fn new(first: Job) -> Self {
        Self {
            streams: HashSet::from([first.append.stream_id]),
            commands: first.command_ids().collect(),
            batch: vec![first],
        }
    }

    /// Take `job` into the batch, or hand it back (`Some`) if the batch already holds its
    /// stream or one of its command ids. A job its caller withdrew is dropped (and counts as
    /// taken).
    fn admit(&mut self, job: Job) -> Option<Job> {
        let command_clash = job.command_ids().any(|id| self.commands.contains(&id));
        if self.streams.contains(&job.append.stream_id) || command_clash {
            return Some(job);
        }
        if Claim::settle(&job.claim, Claim::TAKEN) {
            self.streams.insert(job.append.stream_id);
            self.commands.extend(job.command_ids());
            self.batch.push(job);
        }
        None
    }
}

impl Queue {
    pub(crate) fn new(receiver: mpsc::Receiver<Job>, max_batch: usize, gather: Duration) -> Self {
        Self {
            receiver,
            deferred: VecDeque::new(),
            max_batch: max_batch.max(1),
            gather,
            gather_limit: GATHER_LIMIT,
            answered: 0,
            waiting: false,
        }
    }

    /// The last batch's statement came back (its callers are not answered yet): note whether
    /// other appends arrived meanwhile.
    fn written(&mut self) {
        self.waiting = !self.deferred.is_empty() || !self.receiver.is_empty();
    }

    /// The next batch: waits for one append, then takes what else is waiting, and then, when
    /// the callers of the batch just answered are expected back, gathers them too (see
    /// `Queue::gather`). `None` when the store is gone.
    async fn next_batch(&mut self) -> Option<Vec<Job>> {
        let waiting = std::mem::take(&mut self.waiting);
        // An append its caller withdrew (no connection came in time) is dropped unwritten.
        let first = loop {
            let job = match self.deferred.pop_front() {
                Some(job) => job,
                None => self.receiver.recv().await?,
            };
            if Claim::settle(&job.claim, Claim::TAKEN) {
                break job;
            }
        };
        let mut forming = Forming::new(first);
        // Every append taken from the queue counts as arrived, whether this batch holds it or
        // it waits for the next (its stream or command id is in this one already).
        let mut arrived = 1;
        let mut postponed = VecDeque::new();
        let mut candidates = std::mem::take(&mut self.deferred);
        while forming.batch.len() < self.max_batch {
            let Some(job) = candidates
                .pop_front()
                .or_else(|| self.receiver.try_recv().ok())
            else {
                break;
            };
            arrived += 1;
            if let Some(job) = forming.admit(job) {
                postponed.push_back(job);
            }
        }
        postponed.extend(candidates);
        self.deferred = postponed;
        // Appends that arrived while the last batch was being written are not its callers:
        // those are still to come, and the batch expects both. Otherwise this batch is the
        // last one's callers coming back, one by one.
        let expected = if waiting {
            self.answered + arrived
        } else {
            self.answered.max(arrived)
        };
        self.gather(&mut forming, arrived, expected.min(self.max_batch))
            .await;
        self.answered = forming.batch.len();
        Some(forming.batch)
    }

    /// Wait for the callers just answered to queue their next appends, so that a closed loop of
    /// callers is written as one batch rather than as two halves taking turns: a batch's cost
    /// is mostly per statement and its WAL flush, so two halves cost nearly twice one whole.
    /// The writer yields to the runtime (where those callers run, when it is a task of theirs)
    /// until `expected` appends have arrived, no append came for a quiet spell of
    /// `Queue::gather`, or [`GATHER_LIMIT`] passed. A lone caller never waits: it is all
    /// that is expected.
    async fn gather(&mut self, forming: &mut Forming, mut arrived: usize, expected: usize) {
        if self.gather.is_zero() || arrived >= expected {
            return;
        }
        let start = Instant::now();
        let mut progress = start;
        loop {
            tokio::task::yield_now().await;
            let now = Instant::now();
            while forming.batch.len() < self.max_batch {
                let Ok(job) = self.receiver.try_recv() else {
                    break;
                };
                progress = now;
                arrived += 1;
                if let Some(job) = forming.admit(job) {
                    self.deferred.push_back(job);
                }
            }
            if arrived >= expected
                || forming.batch.len() >= self.max_batch
                || now.duration_since(progress) > self.gather
                || now.duration_since(start) > self.gather_limit
            {
                return;
            }
        }
    }
}

/// One writer: takes batches until the store is dropped.
pub(crate) async fn writer(store: EventStore, mut queue: Queue) {
    while let Some(batch) = queue.next_batch().await {
        // Appends whose caller gave up (cancelled) are still written: the caller may retry
        // with the same command id and must then find the first result.
        // Every statement, a batch of one included: the count is the statements, the sum the
        // appends. Looked up per batch, so that a recorder installed after the store counts.
        metrics::histogram!("order_store_group_commit_batch_size").record(batch.len() as f64);
        let appends: Vec<&StreamAppend> = batch.iter().map(|job| &job.append).collect();
        // The batch is answered by the earliest of its appends' deadlines; their appends were
        // all taken within the pool wait of their start, so none loses much of its time.
        let Some(deadline) = batch.iter().map(|job| job.deadline).min() else {
            continue;
        };
        let heads: Vec<Option<Uuid>> = batch.iter().map(|job| job.head_event).collect();
        let written = store.write(&appends, &heads, deadline).await;
        queue.written();
        match written {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            // No answer to a statement that may have committed: every append of the batch
            // is answered as a single one would be (the caller's retry, with its command id,
            // finds what was written); run again, it could meet its own rows.
            Err(BatchFailure::Unknown(error)) => {
                for job in batch {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
            // A conflict with a writer outside the batch (or any failure of the statement that
            // rolled it back): each append on its own tells exactly who is affected, each by
            // its own deadline (one whose time is up is answered at once: nothing written).
            Err(BatchFailure::RolledBack(error)) if batch.len() > 1 => {
                metrics::counter!("order_store_group_commit_fallbacks_total").increment(1);
                tracing::debug!(%error, appends = batch.len(), "group commit fell back to single appends");
                for job in batch {
                    let result = store
                        .write_one(&job.append, job.head_event, job.deadline)
                        .await;
                    let _ = job.reply.send(result);
                }
            }
            Err(BatchFailure::RolledBack(_)) => {
                for job in batch {
                    let result = store
                        .write_one(&job.append, job.head_event, job.deadline)
                        .await;
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

/// Interpret the result rows of one append (one row per command, in order).
pub(crate) fn outcome(append: &StreamAppend, rows: &[CommandRow]) -> Result<StreamOutcome, Error> {
    let recorded: Vec<(usize, CommandRecord)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| row.prior.clone().map(|p| (i, p)))
        .collect();
    if !recorded.is_empty() {
        return Ok(StreamOutcome::Recorded(recorded));
    }
    let mut committed = Vec::with_capacity(rows.len());
    for (command, row) in append.commands.iter().zip(rows) {
        let Some((version, position)) = row.written else {
            return Err(Error::WrongExpectedVersion {
                stream_id: append.stream_id,
                expected: append.expected,
                actual: row.head,
            });
        };
        committed.push(Committed {
            stream_version: version,
            global_position: position,
            status: command
                .record
                .as_ref()
                .map(|r| r.status.clone())
                .unwrap_or_default(),
        });
    }
    Ok(StreamOutcome::Appended(committed))
}

/// What the statement answered for one command.
#[derive(Debug, Clone)]
pub(crate) struct CommandRow {
    /// The stream's head before the statement.
    pub head: u64,
    /// The version and position of the command's last event, when written now.
    pub written: Option<(u64, u64)>,
    /// What the command id was recorded with before, when it was.
    pub prior: Option<CommandRecord>,
}

/// The statement's parameters for a batch of appends, as arrays (see [`crate::APPEND_SQL`]).
#[derive(Debug, Default)]
pub(crate) struct Params<'a> {
    pub stream_ids: Vec<Uuid>,
    pub expected: Vec<i64>,
    pub cmd_job: Vec<i64>,
    pub command_ids: Vec<Option<Uuid>>,
    pub fingerprints: Vec<Option<&'a [u8]>>,
    pub statuses: Vec<Option<&'a str>>,
    pub correlation: Vec<Option<&'a str>>,
    pub causation: Vec<Option<Uuid>>,
    pub traceparent: Vec<Option<&'a str>>,
    pub tracestate: Vec<Option<&'a str>>,
    pub actor: Vec<Option<&'a str>>,
    pub last_event: Vec<Uuid>,
    pub ev_cmd: Vec<i64>,
    pub ev_job: Vec<i64>,
    pub ev_seq: Vec<i64>,
    pub event_ids: Vec<Uuid>,
    pub types: Vec<&'a str>,
    pub versions: Vec<i16>,
    pub payloads: Vec<&'a str>,
    pub categories: Vec<&'a str>,
    pub head_events: Vec<Option<Uuid>>,
}

impl<'a> Params<'a> {
    /// `heads[j]`: the event `appends[j]`'s caller's state ended at, checked against the
    /// stream's head (`None`: no such check; missing: none).
    pub(crate) fn new(appends: &[&'a StreamAppend], heads: &[Option<Uuid>]) -> Self {
        let commands: usize = appends.iter().map(|a| a.commands.len()).sum();
        let events: usize = appends
            .iter()
            .flat_map(|a| &a.commands)
            .map(|c| c.events.len())
            .sum();
        let mut p = Params {
            stream_ids: Vec::with_capacity(appends.len()),
            expected: Vec::with_capacity(appends.len()),
            cmd_job: Vec::with_capacity(commands),
            command_ids: Vec::with_capacity(commands),
            fingerprints: Vec::with_capacity(commands),
            statuses: Vec::with_capacity(commands),
            correlation: Vec::with_capacity(commands),
            causation: Vec::with_capacity(commands),
            traceparent: Vec::with_capacity(commands),
            tracestate: Vec::with_capacity(commands),
            actor: Vec::with_capacity(commands),
            last_event: Vec::with_capacity(commands),
            ev_cmd: Vec::with_capacity(events),
            ev_job: Vec::with_capacity(events),
            ev_seq: Vec::with_capacity(events),
            event_ids: Vec::with_capacity(events),
            types: Vec::with_capacity(events),
            versions: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
            categories: Vec::with_capacity(appends.len()),
            head_events: Vec::with_capacity(appends.len()),
        };
        for (j, append) in appends.iter().enumerate() {
            p.stream_ids.push(append.stream_id);
            p.head_events.push(heads.get(j).copied().flatten());
            p.expected.push(append.expected.as_sql());
            p.categories.push(&append.category);
            let mut seq = 0i64;
            for command in &append.commands {
                p.cmd_job.push(j as i64 + 1);
                let record = command.record.as_ref();
                let metadata = &command.metadata;
                p.command_ids
                    .push(record.map(|r| r.command_id).or(metadata.command_id));
                p.fingerprints.push(record.map(|r| &r.fingerprint[..]));
                p.statuses.push(record.map(|r| r.status.as_str()));
                p.correlation.push(metadata.correlation_id.as_deref());
                p.causation.push(metadata.causation_id);
                p.traceparent.push(metadata.traceparent.as_deref());
                p.tracestate.push(metadata.tracestate.as_deref());
                p.actor.push(metadata.actor.as_deref());
                // Every command has events (validated before); a command without would find
                // no written row and be answered as not written.
                p.last_event
                    .push(command.events.last().map_or(Uuid::nil(), |e| e.event_id));
                let c = p.cmd_job.len() as i64;
                for event in &command.events {
                    seq += 1;
                    p.ev_cmd.push(c);
                    p.ev_job.push(j as i64 + 1);
                    p.ev_seq.push(seq);
                    p.event_ids.push(event.event_id);
                    p.types.push(event.event_type.as_str());
                    p.versions.push(event.schema_version as i16);
                    p.payloads.push(event.payload.as_str());
                }
            }
        }
        p
    }

    pub(crate) fn as_sql(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 21] {
        [
            &self.stream_ids,
            &self.expected,
            &self.cmd_job,
            &self.command_ids,
            &self.fingerprints,
            &self.statuses,
            &self.correlation,
            &self.causation,
            &self.traceparent,
            &self.tracestate,
            &self.actor,
            &self.ev_cmd,
            &self.event_ids,
            &self.types,
            &self.versions,
            &self.payloads,
            &self.last_event,
            &self.ev_job,
            &self.ev_seq,
            &self.categories,
            &self.head_events,
        ]
    }
}

/// Read one result row of [`crate::APPEND_SQL`]: (append index, head, written version,
/// written position, then the prior record's columns).
pub(crate) fn read_row(row: &tokio_postgres::Row) -> Result<(usize, CommandRow), Error> {
    let job: i64 = row.try_get(0)?;
    let head: i64 = row.try_get(1)?;
    let written = match (
        row.try_get::<_, Option<i64>>(2)?,
        row.try_get::<_, Option<i64>>(3)?,
    ) {
        (Some(version), Some(position)) => Some((version as u64, position as u64)),
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
    Ok((
        (job as usize).saturating_sub(1),
        CommandRow {
            head: head as u64,
            written,
            prior,
        },
    ))
}

/// The parameters of [`crate::append::APPEND_NEW_STREAMS_SQL`] for a batch of appends that all
/// create their stream: events in stream-id then version order, command records in command-id
/// order.
#[derive(Debug, Default)]
pub(crate) struct NewStreamParams<'a> {
    stream_ids: Vec<Uuid>,
    versions: Vec<i64>,
    event_ids: Vec<Uuid>,
    types: Vec<&'a str>,
    schema_versions: Vec<i16>,
    payloads: Vec<&'a str>,
    command_ids: Vec<Option<Uuid>>,
    correlation: Vec<Option<&'a str>>,
    causation: Vec<Option<Uuid>>,
    traceparent: Vec<Option<&'a str>>,
    tracestate: Vec<Option<&'a str>>,
    actor: Vec<Option<&'a str>>,
    categories: Vec<&'a str>,
    record_ids: Vec<Uuid>,
    record_streams: Vec<Uuid>,
    fingerprints: Vec<&'a [u8]>,
    statuses: Vec<&'a str>,
    last_events: Vec<Uuid>,
}

impl<'a> NewStreamParams<'a> {
    /// `None` unless every append expects no stream ([`ExpectedVersion::NoStream`] or
    /// `Exact(0)`, which the command handler sends for a new aggregate): only then does the
    /// client know every version.
    ///
    /// [`ExpectedVersion::NoStream`]: crate::append::ExpectedVersion::NoStream
    pub(crate) fn new(appends: &[&'a StreamAppend]) -> Option<Self> {
        if appends.iter().any(|a| a.expected.as_sql() != 0) {
            return None;
        }
        let mut order: Vec<&StreamAppend> = appends.to_vec();
        order.sort_by_key(|a| a.stream_id);
        let events: usize = appends
            .iter()
            .flat_map(|a| &a.commands)
            .map(|c| c.events.len())
            .sum();
        let mut p = Self {
            stream_ids: Vec::with_capacity(events),
            versions: Vec::with_capacity(events),
            event_ids: Vec::with_capacity(events),
            types: Vec::with_capacity(events),
            schema_versions: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
            command_ids: Vec::with_capacity(events),
            correlation: Vec::with_capacity(events),
            causation: Vec::with_capacity(events),
            traceparent: Vec::with_capacity(events),
            tracestate: Vec::with_capacity(events),
            actor: Vec::with_capacity(events),
            categories: Vec::with_capacity(events),
            ..Self::default()
        };
        let mut records: Vec<(&'a CommandRecordWrite, Uuid, Uuid)> = Vec::new();
        for append in order {
            let mut version = 0i64;
            for command in &append.commands {
                let record = command.record.as_ref();
                let metadata = &command.metadata;
                let command_id = record.map(|r| r.command_id).or(metadata.command_id);
                for event in &command.events {
                    version += 1;
                    p.stream_ids.push(append.stream_id);
                    p.versions.push(version);
                    p.event_ids.push(event.event_id);
                    p.types.push(event.event_type.as_str());
                    p.schema_versions.push(event.schema_version as i16);
                    p.payloads.push(event.payload.as_str());
                    p.command_ids.push(command_id);
                    p.correlation.push(metadata.correlation_id.as_deref());
                    p.causation.push(metadata.causation_id);
                    p.traceparent.push(metadata.traceparent.as_deref());
                    p.tracestate.push(metadata.tracestate.as_deref());
                    p.actor.push(metadata.actor.as_deref());
                    p.categories.push(&append.category);
                }
                if let (Some(record), Some(last)) = (record, command.events.last()) {
                    records.push((record, append.stream_id, last.event_id));
                }
            }
        }
        records.sort_by_key(|(record, _, _)| record.command_id);
        for (record, stream_id, last_event) in records {
            p.record_ids.push(record.command_id);
            p.record_streams.push(stream_id);
            p.fingerprints.push(&record.fingerprint[..]);
            p.statuses.push(record.status.as_str());
            p.last_events.push(last_event);
        }
        Some(p)
    }

    pub(crate) fn as_sql(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 18] {
        [
            &self.stream_ids,
            &self.versions,
            &self.event_ids,
            &self.types,
            &self.schema_versions,
            &self.payloads,
            &self.command_ids,
            &self.correlation,
            &self.causation,
            &self.traceparent,
            &self.tracestate,
            &self.actor,
            &self.categories,
            &self.record_ids,
            &self.record_streams,
            &self.fingerprints,
            &self.statuses,
            &self.last_events,
        ]
    }
}

/// The outcome of each append of a batch written by
/// [`crate::append::APPEND_NEW_STREAMS_SQL`], from its rows (event id, version, position).
pub(crate) fn new_stream_outcomes(
    appends: &[&StreamAppend],
    rows: &[tokio_postgres::Row],
) -> Result<Vec<Result<StreamOutcome, Error>>, Error> {
    let mut written = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let event_id: Uuid = row.try_get(0)?;
        let version: i64 = row.try_get(1)?;
        let position: i64 = row.try_get(2)?;
        written.insert(event_id, (version as u64, position as u64));
    }
    let mut outcomes = Vec::with_capacity(appends.len());
    for append in appends {
        let mut committed = Vec::with_capacity(append.commands.len());
        for command in &append.commands {
            let last = command.events.last().map(|e| e.event_id);
            let Some(&(stream_version, global_position)) = last.and_then(|id| written.get(&id))
            else {
                return Err(Error::Database(
                    "the append did not answer one of its events".into(),
                ));
            };
            committed.push(Committed {
                stream_version,
                global_position,
                status: command
                    .record
                    .as_ref()
                    .map(|r| r.status.clone())
                    .unwrap_or_default(),
            });
        }
        outcomes.push(Ok(StreamOutcome::Appended(committed)));
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::append::{CommandWrite, ExpectedVersion};
    use crate::event::NewEvent;

    fn append(stream: u128, expected: ExpectedVersion, commands: &[(u128, usize)]) -> StreamAppend {
        StreamAppend {
            stream_id: Uuid::from_u128(stream),
            category: "test".into(),
            expected,
            commands: commands
                .iter()
                .map(|&(command, events)| CommandWrite {
                    events: (0..events)
                        .map(|e| NewEvent {
                            event_id: Uuid::from_u128(stream << 16 | command << 8 | e as u128),
                            event_type: "E".into(),
                            schema_version: 1,
                            payload: "{}".into(),
                        })
                        .collect(),
                    metadata: Default::default(),
                    record: (command != 0).then(|| CommandRecordWrite {
                        command_id: Uuid::from_u128(command),
                        fingerprint: [0; 32],
                        status: "s".into(),
                    }),
                })
                .collect(),
        }
    }

    type Answers = Vec<oneshot::Receiver<Result<StreamOutcome, Error>>>;
    /// Queues appends to the new streams of a range, as their callers would.
    type Callers = Arc<dyn Fn(std::ops::Range<u128>) -> Answers + Send + Sync>;

    /// A queue whose gathering no scheduling delay can cut short (the tests decide when the
    /// callers come), and a sender of appends to the new streams of a range.
    fn queue(gather: Duration) -> (Queue, Callers) {
        let (sender, receiver) = mpsc::channel(256);
        let mut queue = Queue::new(receiver, 64, gather);
        queue.gather_limit = Duration::from_secs(60);
        let send = move |streams: std::ops::Range<u128>| {
            streams
                .map(|stream| {
                    let (reply, answer) = oneshot::channel();
                    let job = Job {
                        append: append(stream, ExpectedVersion::NoStream, &[(stream, 1)]),
                        head_event: None,
                        reply,
                        claim: Arc::new(AtomicU8::new(Claim::QUEUED)),
                        deadline: Instant::now() + Duration::from_secs(60),
                    };
                    assert!(sender.try_send(job).is_ok(), "the queue has room");
                    answer
                })
                .collect()
        };
        (queue, Arc::new(send))
    }

    fn streams(batch: &[Job]) -> Vec<u128> {
        batch
            .iter()
            .map(|job| job.append.stream_id.as_u128())
            .collect()
    }

    /// Callers that come back one by one, each after the writer has yielded to them.
    fn come_back(send: &Callers, streams: Vec<u128>) -> tokio::task::JoinHandle<Vec<Answers>> {
        let send = send.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for stream in streams {
                tokio::task::yield_now().await;
                answers.push(send(stream..stream + 1));
            }
            answers
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_gathers_the_callers_just_answered_with_those_that_queued_meanwhile() {
        let (mut queue, send) = queue(Duration::from_secs(30));
        let _first = send(1..5);
        assert_eq!(
            queue.next_batch().await.map(|b| streams(&b)),
            Some(vec![1, 2, 3, 4])
        );
        // Two callers queued while the batch was written; its four callers come back, and one
        // of them appends to a stream already in the forming batch.
        let _meanwhile = send(5..7);
        queue.written();
        let callers = come_back(&send, vec![11, 5, 12, 13]);
        let batch = queue.next_batch().await.expect("a batch");
        assert_eq!(
            streams(&batch),
            [5, 6, 11, 12, 13],
            "both halves in one batch"
        );
        drop(callers.await);
        // The append to stream 5 waited for the next batch.
        queue.gather = Duration::ZERO;
        assert_eq!(queue.next_batch().await.map(|b| streams(&b)), Some(vec![5]));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_of_callers_coming_back_one_by_one_waits_for_all_of_them() {
        for (gather, expected) in [
            (Duration::from_secs(30), vec![11, 12, 13, 14]),
            (Duration::ZERO, vec![11]),
        ] {
            let (mut queue, send) = queue(gather);
            let _first = send(1..5);
            assert_eq!(queue.next_batch().await.map(|b| b.len()), Some(4));
            queue.written();
            let callers = come_back(&send, vec![11, 12, 13, 14]);
            let batch = queue.next_batch().await.expect("a batch");
            assert_eq!(streams(&batch), expected, "gathering for {gather:?}");
            drop(callers.await);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lone_caller_is_written_at_once() {
        let (mut queue, send) = queue(Duration::from_secs(30));
        for stream in 1..5 {
            let caller = come_back(&send, vec![stream]);
            // Nothing else is expected: a 30 s quiet spell would show as a timeout.
            let batch = tokio::time::timeout(Duration::from_secs(10), queue.next_batch())
                .await
                .expect("a lone caller does not wait for company")
                .expect("a batch");
            assert_eq!(streams(&batch), [stream]);
            queue.written();
            drop(caller.await);
        }
    }

    #[test]
    fn only_batches_that_all_create_their_stream_take_the_insert_only_statement() {
        let new = append(1, ExpectedVersion::NoStream, &[(5, 1)]);
        let zero = append(2, ExpectedVersion::Exact(0), &[(6, 1)]);
        let exact = append(3, ExpectedVersion::Exact(1), &[(7, 1)]);
        let any = append(4, ExpectedVersion::Any, &[(8, 1)]);
        assert!(NewStreamParams::new(&[&new, &zero]).is_some());
        assert!(NewStreamParams::new(&[&new, &exact]).is_none());
        assert!(NewStreamParams::new(&[&any]).is_none());
    }

    #[test]
    fn new_streams_are_written_in_stream_then_version_order_and_records_in_id_order() {
        // Stream 9 first in the batch, two commands (ids 0x30 and 0x10) of 2 and 1 events; then
        // stream 3 with one keyless command of 2 events.
        let late = append(9, ExpectedVersion::NoStream, &[(0x30, 2), (0x10, 1)]);
        let early = append(3, ExpectedVersion::Exact(0), &[(0, 2)]);
        let p = NewStreamParams::new(&[&late, &early]).expect("all new");
        let s = |n| Uuid::from_u128(n);
        assert_eq!(p.stream_ids, [s(3), s(3), s(9), s(9), s(9)]);
        assert_eq!(p.versions, [1, 2, 1, 2, 3]);
        assert_eq!(
            p.event_ids,
            [
                s(3 << 16),
                s(3 << 16 | 1),
                s(9 << 16 | 0x3000),
                s(9 << 16 | 0x3001),
                s(9 << 16 | 0x1000)
            ]
        );
        assert_eq!(
            p.command_ids,
            [None, None, Some(s(0x30)), Some(s(0x30)), Some(s(0x10))]
        );
        assert_eq!(p.record_ids, [s(0x10), s(0x30)]);
        assert_eq!(p.record_streams, [s(9), s(9)]);
        assert_eq!(p.last_events, [s(9 << 16 | 0x1000), s(9 << 16 | 0x3001)]);
    }
}

//! The command handler: decide with the pure domain, append, answer exactly.
//!
//! - **One writer per stream in this process.** Commands to the same stream wait in that
//!   stream's queue; whoever finds it idle runs its command at once, on its own task. When
//!   commands queued up meanwhile, a background task takes them over and works through them
//!   in batches: each decided on the state the previous one left, all of a batch written with
//!   one append (one round trip). Commands of one process therefore never race each other;
//!   only commands from other processes can.
//! - **State kept from the previous append.** A bounded cache holds each recently used
//!   stream's state and version, so a command normally needs no read: the append checks the
//!   version it decided on. A stale cache (another process appended) shows up as a conflict;
//!   the stream is then read again and the command decided again.
//! - **One snapshot for every answer that is not a success.** A refusal by the domain or an
//!   expected-version mismatch is only given on a state read in the same statement as the
//!   command's idempotency record, so a copy of a command that already succeeded always gets
//!   the first answer, never a refusal it would cause itself. A command that would be refused
//!   on the state left by writes of its own batch waits for that batch's append: were the
//!   append to fail, the refusal would describe a state that never existed.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use order_domain::es::{Aggregate, EventSchema, Metadata};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tracing::Instrument;
use uuid::Uuid;

use crate::append::{
    CommandRecordWrite, CommandWrite, ExpectedVersion, StreamAppend, StreamOutcome,
};
use crate::config::CommandEventIds;
use crate::error::Error;
use crate::event::{MAX_APPEND_BYTES, MAX_EVENTS_PER_APPEND, NewEvent};
use crate::store::{CommandRecord, EventStore, load};

/// Who asks, and under which conditions.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The idempotency key.
    pub command_id: Uuid,
    /// When set, the command applies only if the stream is exactly at this version
    /// (0 = the stream must not exist).
    pub expected_version: Option<u64>,
    /// Recorded with every event (correlation id, trace context, ...).
    pub metadata: Metadata,
}

/// Why a command did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum HandleError<E: std::error::Error + 'static> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(E),
    /// The store could not record it.
    #[error(transparent)]
    Store(#[from] Error),
}

/// The result of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The stream's version after the command.
    pub stream_version: u64,
    /// The global position of its last event.
    pub global_position: u64,
    /// The aggregate's state label after the command.
    pub status: String,
    /// True when the command id was seen before: nothing was written now.
    pub duplicate: bool,
    /// How many times the command was decided (more than one after lost races).
    pub attempts: u32,
}

/// How many streams' states the handler keeps by default.
pub const DEFAULT_CACHED_STREAMS: usize = 10_000;
/// Most commands waiting for one stream; more are refused as unavailable.
const MAX_QUEUED_PER_STREAM: usize = 1024;
/// Most commands of one stream written with one append.
const MAX_BATCH: usize = 32;
const SHARDS: usize = 32;

/// Runs commands of one aggregate type against the store. Cheap to clone; clones share the
/// per-stream queues and the state cache.
#[derive(Debug)]
pub struct CommandHandler<A: Aggregate> {
    store: EventStore,
    max_attempts: u32,
    streams: Arc<Streams<A>>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for CommandHandler<A> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            max_attempts: self.max_attempts,
            streams: self.streams.clone(),
            _aggregate: PhantomData,
        }
    }
}

/// sha-256 over the stream and the serialized command: what makes two requests "the same".
///
/// The command is read as `serde_json` writes it, except that every map's entries are taken in
/// key order (number keys by value, others by their text): a retry that rebuilt a `HashMap`
/// with the same entries is the same command. Struct fields keep their order.
pub fn fingerprint<C: serde::Serialize>(stream_id: Uuid, command: &C) -> Result<[u8; 32], Error> {
    let mut hasher = Sha256::new();
    hasher.update(stream_id.as_bytes());
    serde_json::to_writer(
        HashWriter(&mut hasher),
        &crate::canonical::Canonical(command),
    )
    .map_err(|e| Error::InvalidInput(format!("command cannot be serialized: {e}")))?;
    Ok(hasher.finalize().into())
}

/// Feeds serialized bytes straight into the hash, without an intermediate buffer.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<A: Aggregate> CommandHandler<A> {
    /// `max_attempts` bounds how many times in all a command is decided on a state just read,
    /// its first such decision included, when concurrent appends to its stream (from other
    /// processes) keep winning the race (at least 1: decided once on state just read, never
    /// again). A decision on a kept or assumed state that the append contradicts is not
    /// counted: the stream is read at once and the command decided again. Commands queued
    /// behind each other on one stream, decided together, share one count.
    pub fn new(store: EventStore, max_attempts: u32) -> Self {
        Self::with_cache(store, max_attempts, DEFAULT_CACHED_STREAMS)
    }

    /// As [`CommandHandler::new`], keeping the state of about `cached_streams` streams (0 = none:
    /// every command reads its stream). Streams used once are forgotten first; while every kept
    /// stream is in use, up to twice as many are kept.
    pub fn with_cache(store: EventStore, max_attempts: u32, cached_streams: usize) -> Self {
        Self {
            store,
            max_attempts: max_attempts.max(1),
            streams: Arc::new(Streams::new(cached_streams)),
            _aggregate: PhantomData,
        }
    }

    /// The store it appends to.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Decide `command` against the stream's current state and append the result. A command
    /// id seen before returns the first result and writes nothing; a different request with
    /// that id is refused.
    pub async fn handle(
        &self,
        stream_id: Uuid,
        command: &A::Command,
        context: &CommandContext,
    ) -> Result<Handled, HandleError<A::Error>> {
        let fingerprint = fingerprint(stream_id, command)?;
        let mut metadata = context.metadata.clone();
        metadata.command_id = Some(context.command_id);
        metadata
            .validate()
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let creates =
            A::creates_stream(command) && matches!(context.expected_version, None | Some(0));

        let cached = match self.streams.enter(stream_id, || Pending {
            command: command.clone(),
            command_id: context.command_id,
            expected: context.expected_version,
            metadata: metadata.clone(),
            fingerprint,
            creates,
        }) {
            Entered::Run(cached) => cached,
            Entered::Queued(answer) => {
                return answer.await.unwrap_or_else(|_| {
                    Err(Error::Unavailable("the command's stream worker stopped".into()).into())
                });
            }
            Entered::Full => {
                return Err(Error::Unavailable(format!(
                    "more than {MAX_QUEUED_PER_STREAM} commands wait for stream {stream_id}"
                ))
                .into());
            }
        };
        // Nobody else in this process works on the stream now: run on this task.
        let mut running = Running {
            handler: self,
            stream_id,
            finished: false,
        };
        let item = Item {
            command,
            command_id: context.command_id,
            expected: context.expected_version,
            metadata: &metadata,
            fingerprint,
            creates,
        };
        // Boxed: the state machine is large, and futures are moved by copying them.
        let (mut results, cache) = Box::pin(self.run(stream_id, cached, &[item])).await;
        running.finish(cache);
        results
            .pop()
            .unwrap_or_else(|| Err(Error::Database("the command got no answer".into()).into()))
    }

    /// Work through the commands that queued up for a stream, batch by batch, until none is
    /// left. Runs on its own task: no caller's cancellation stops it halfway.
    async fn drain(self, stream_id: Uuid) {
        // Should a batch panic (a bug in the aggregate's `decide` or `evolve`), its callers
        // are answered UNAVAILABLE (their replies dropped) and the stream is released as a
        // cancelled caller's is: its kept state forgotten, the commands queued since handed to
        // a new drainer. Not a stream left busy for ever.
        let mut draining = Running {
            handler: &self,
            stream_id,
            finished: false,
        };
        while let Some((batch, cached)) = self.streams.take_batch(stream_id) {
            let items: Vec<Item<'_, A>> = batch.iter().map(|(p, _)| p.item()).collect();
            let span = tracing::debug_span!("stream_batch", commands = items.len());
            let (results, cache) = Box::pin(self.run(stream_id, cached, &items))
                .instrument(span)
                .await;
            self.streams.put_cache(stream_id, cache);
            for ((_, reply), result) in batch.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        // `take_batch` found nothing waiting and marked the stream idle.
        draining.finished = true;
    }

    /// Decide and append `items` (commands to `stream_id`, in order) from `cached`; the answers
    /// in the same order, and the state to keep.
    async fn run(
        &self,
        stream_id: Uuid,
        cached: Option<Cached<A>>,
        items: &[Item<'_, A>],
    ) -> (Answers<A>, Option<Cached<A>>) {
        let mut results: Vec<Option<Answer<A>>> = items.iter().map(|_| None).collect();
        let mut attempts = vec![0u32; items.len()];
        // The state to decide on, and whether it was just read together with the records of
        // the open commands (then a refusal is final).
        let mut state = cached.map(|c| (c.state, c.version, c.head));
        let mut fresh = false;
        if state.is_none() && items.first().is_some_and(|i| i.creates) {
            // A new stream needs no read: the append itself checks that it is new.
            state = Some((A::default(), 0, None));
        }
        let mut conflicts = 0u32;
        loop {
            let open: Vec<usize> = (0..items.len()).filter(|&i| results[i].is_none()).collect();
            if open.is_empty() {
                break;
            }
            let (base, version, head) = match state.take() {
                Some(known) => known,
                None => {
                    let ids: Vec<Uuid> = open.iter().map(|&i| items[i].command_id).collect();
                    let loaded = Box::pin(self.load(stream_id, &ids))
                        .instrument(tracing::debug_span!("load"))
                        .await;
                    match loaded {
                        Ok((loaded, records, foreign)) => {
                            for (id, record) in records {
                                for &i in &open {
                                    if items[i].command_id == id {
                                        let tries = attempts[i].max(1);
                                        results[i] = Some(answer_record(
                                            stream_id, &items[i], &record, tries,
                                        ));
                                    }
                                }
                            }
                            if foreign {
                                // The id names a stream of another aggregate: for this one
                                // there is no such stream, and it cannot be created.
                                for &i in &open {
                                    if results[i].is_none() {
                                        results[i] =
                                            Some(foreign_answer(stream_id, &items[i], loaded.1));
                                    }
                                }
                                break;
                            }
                            fresh = true;
                            loaded
                        }
                        Err(error) => {
                            for &i in &open {
                                results[i] = Some(Err(error.clone().into()));
                            }
                            break;
                        }
                    }
                }
            };
            let open: Vec<usize> = open.into_iter().filter(|&i| results[i].is_none()).collect();
            if open.is_empty() {
                state = Some((base, version, head));
                break;
            }

            // Decide each command on the state the one before it left.
            let mut batch = Batch::new(base, version, self.store.config().command_event_ids);
            for &i in &open {
                attempts[i] += 1;
                if !batch.decide(i, &items[i], stream_id) {
                    attempts[i] -= 1;
                    // Full, or a refusal that waits for the append: the rest go next round.
                    break;
                }
            }
            if !fresh && batch.refusals.iter().any(|(_, e)| needs_snapshot(e)) {
                // A refusal on a kept or assumed state is never final: read the stream and
                // the records in one snapshot, then decide everything again.
                state = None;
                continue;
            }
            for (i, error) in batch.refusals.drain(..) {
                results[i] = Some(Err(error));
            }
            if batch.writes.is_empty() {
                // Nothing was decided: the batch's state is still the one it started from.
                state = Some((batch.state, batch.version, head));
                continue;
            }

            let Batch {
                state: after,
                version: after_version,
                writes,
                chosen,
                followers,
                ..
            } = batch;
            // The event the stream's head will be if the append is written.
            let written_head = writes
                .last()
                .and_then(|w| w.events.last())
                .map(|e| e.event_id);
            let append = StreamAppend {
                stream_id,
                category: std::borrow::Cow::Borrowed(A::CATEGORY),
                expected: ExpectedVersion::Exact(version),
                commands: writes,
            };
            let span = tracing::debug_span!("append", commands = chosen.len());
            match Box::pin(self.store.append_encoded(append, head))
                .instrument(span)
                .await
            {
                Ok(StreamOutcome::Appended(committed)) => {
                    for (&(i, _), c) in chosen.iter().zip(&committed) {
                        results[i] = Some(Ok(Handled {
                            stream_version: c.stream_version,
                            global_position: c.global_position,
                            status: c.status.clone(),
                            duplicate: false,
                            attempts: attempts[i],
                        }));
                    }
                    for &(f, k) in &followers {
                        let (i, _) = chosen[k];
                        if let Some(Ok(first)) = &results[i] {
                            let first = first.clone();
                            results[f] = Some(Ok(Handled {
                                duplicate: true,
                                attempts: attempts[f],
                                ..first
                            }));
                        }
                    }
                    state = Some((after, after_version, written_head));
                    fresh = false;
                }
                Ok(StreamOutcome::Recorded(records)) => {
                    // Nothing was written: these commands were seen before. The others are
                    // decided again without them.
                    for (k, record) in records {
                        let Some(&(i, _)) = chosen.get(k) else {
                            continue;
                        };
                        results[i] =
                            Some(answer_record(stream_id, &items[i], &record, attempts[i]));
                        for &(f, fk) in &followers {
                            if fk == k {
                                results[f] =
                                    Some(answer_record(stream_id, &items[f], &record, attempts[f]));
                            }
                        }
                    }
                    // The state those commands were decided on is gone: read it again.
                    state = None;
                    fresh = false;
                }
                Err(Error::WrongExpectedVersion { .. } | Error::Conflict { .. }) if !fresh => {
                    // Decided on a kept or assumed state the log contradicts (a new stream that
                    // exists, a state another process moved on): read it, at once. Only a
                    // conflict on a state just read is a race lost, counted below; the next
                    // decision is on a state just read.
                    state = None;
                }
                Err(Error::WrongExpectedVersion { .. } | Error::Conflict { .. }) => {
                    // Another process appended: read again and decide again, a bounded number
                    // of times.
                    conflicts += 1;
                    if conflicts >= self.max_attempts {
                        for &i in &open {
                            if results[i].is_none() {
                                results[i] = Some(Err(Error::Conflict { stream_id }.into()));
                            }
                        }
                        break;
                    }
                    backoff(conflicts).await;
                    state = None;
                }
                Err(error) => {
                    // The outcome is unknown (a retry with the same command id will tell): the
                    // kept state may be behind, so none is kept.
                    for &(i, _) in &chosen {
                        results[i] = Some(Err(error.clone().into()));
                    }
                    for &(f, _) in &followers {
                        results[f] = Some(Err(error.clone().into()));
                    }
                    state = None;
                }
            }
        }
        let answers = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(Error::Database("the command got no answer".into()).into()))
            })
            .collect();
        (
            answers,
            state.map(|(state, version, head)| Cached {
                state,
                version,
                head,
            }),
        )
    }

    /// The stream's state and the records of `command_ids`, read in one statement; true when
    /// the stream is another aggregate's (its events are not decoded: the version is its
    /// last).
    async fn load(
        &self,
        stream_id: Uuid,
        command_ids: &[Uuid],
    ) -> Result<((A, u64, Option<Uuid>), Vec<(Uuid, CommandRecord)>, bool), Error> {
        self.store
            .timed(async {
                let client = self.store.connection().await?;
                let loaded = load(&client, stream_id, command_ids, 0).await?;
                if loaded.category.as_deref().is_some_and(|c| c != A::CATEGORY) {
                    let version = loaded.events.last().map_or(0, |e| e.0);
                    return Ok(((A::default(), version, None), loaded.records, true));
                }
                let mut state = A::default();
                let mut version = 0;
                for (stream_version, event_type, schema_version, payload, position) in loaded.events
                {
                    let event = A::Event::decode(&event_type, schema_version, payload).map_err(
                        |source| Error::Decode {
                            global_position: position,
                            source,
                        },
                    )?;
                    state.evolve(&event);
                    version = stream_version;
                }
                Ok(((state, version, loaded.head_event), loaded.records, false))
            })
            .await
    }
}

type Answer<A> = Result<Handled, HandleError<<A as Aggregate>::Error>>;
type Answers<A> = Vec<Answer<A>>;

/// A refusal that a fresh read might turn into another answer.
fn needs_snapshot<E: std::error::Error>(error: &HandleError<E>) -> bool {
    matches!(
        error,
        HandleError::Rejected(_) | HandleError::Store(Error::WrongExpectedVersion { .. })
    )
}

/// The answer to a command on a stream of another aggregate (the log is shared, and stream
/// ids are unique across it): what the aggregate answers where it has no stream (a "not
/// found"), or, for a command that would create one, that the stream exists.
fn foreign_answer<A: Aggregate>(stream_id: Uuid, item: &Item<'_, A>, version: u64) -> Answer<A> {
    match A::default().decide(item.command) {
        Err(rejected) => Err(HandleError::Rejected(rejected)),
        Ok(_) => Err(Error::WrongExpectedVersion {
            stream_id,
            expected: ExpectedVersion::NoStream,
            actual: version,
        }
        .into()),
    }
}

/// The answer to a command whose id was recorded before.
fn answer_record<A: Aggregate>(
    stream_id: Uuid,
    item: &Item<'_, A>,
    record: &CommandRecord,
    attempts: u32,
) -> Answer<A> {
    if record.stream_id != stream_id || record.fingerprint != item.fingerprint {
        return Err(Error::CommandIdReused {
            command_id: item.command_id,
        }
        .into());
    }
    Ok(Handled {
        stream_version: record.committed.stream_version,
        global_position: record.committed.global_position,
        status: record.committed.status.clone(),
        duplicate: true,
        attempts: attempts.max(1),
    })
}

/// One command, borrowed, as the batch works on it.
#[derive(Debug)]
struct Item<'a, A: Aggregate> {
    command: &'a A::Command,
    command_id: Uuid,
    expected: Option<u64>,
    /// With the command id set.
    metadata: &'a Metadata,
    fingerprint: [u8; 32],
    creates: bool,
}

/// The decisions of one round: what to append, who gets refused, who shares an answer.
struct Batch<A: Aggregate> {
    state: A,
    version: u64,
    writes: Vec<CommandWrite>,
    /// Items whose events are in `writes`, with the version after them.
    chosen: Vec<(usize, u64)>,
    /// Items with the same command id and request as a chosen one (index into `chosen`).
    followers: Vec<(usize, usize)>,
    refusals: Vec<(usize, HandleError<A::Error>)>,
    events: usize,
    bytes: usize,
    /// How the events are named.
    ids: CommandEventIds,
}

impl<A: Aggregate> Batch<A> {
    fn new(state: A, version: u64, ids: CommandEventIds) -> Self {
        Self {
            state,
            version,
            ids,
            writes: Vec::new(),
            chosen: Vec::new(),
            followers: Vec::new(),
            refusals: Vec::new(),
            events: 0,
            bytes: 0,
        }
    }

    /// Refuse item `i`, unless the refusal rests on writes of this batch not yet made: then
    /// false, and the item waits for the next round, decided on what the append left (a
    /// failed append must not leave a refusal that describes a state that never existed).
    fn refuse(&mut self, i: usize, error: HandleError<A::Error>) -> bool {
        if !self.writes.is_empty() {
            return false;
        }
        self.refusals.push((i, error));
        true
    }

    /// Decide item `i`; false when it must wait for the next round: its events do not fit
    /// in this append any more, or it would be refused on a state this batch has not
    /// written yet.
    fn decide(&mut self, i: usize, item: &Item<'_, A>, stream_id: Uuid) -> bool {
        // `writes[k]` belongs to `chosen[k]`.
        let same_id = self.writes.iter().position(|w| {
            w.record
                .as_ref()
                .is_some_and(|r| r.command_id == item.command_id)
        });
        if let Some(k) = same_id {
            let first = self.writes[k].record.as_ref().map(|r| r.fingerprint);
            if first == Some(item.fingerprint) {
                self.followers.push((i, k));
            } else {
                return self.refuse(
                    i,
                    Error::CommandIdReused {
                        command_id: item.command_id,
                    }
                    .into(),
                );
            }
            return true;
        }
        if let Some(expected) = item.expected
            && expected != self.version
        {
            // A stream that does not exist, and a command that does not create it: the
            // aggregate's own refusal (not found) says more than a version mismatch.
            if self.version == 0
                && !A::creates_stream(item.command)
                && let Err(rejected) = self.state.decide(item.command)
            {
                return self.refuse(i, HandleError::Rejected(rejected));
            }
            return self.refuse(
                i,
                Error::WrongExpectedVersion {
                    stream_id,
                    expected: ExpectedVersion::Exact(expected),
                    actual: self.version,
                }
                .into(),
            );
        }
        let events = match self.state.decide(item.command) {
            Ok(events) => events,
            Err(rejected) => return self.refuse(i, HandleError::Rejected(rejected)),
        };
        if events.is_empty() {
            return self.refuse(
                i,
                Error::InvalidInput("the command produced no events".into()).into(),
            );
        }
        let millis = match self.ids {
            CommandEventIds::Identity => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
            CommandEventIds::Random => 0,
        };
        let encoded = match events
            .iter()
            .enumerate()
            .map(|(k, event)| match self.ids {
                CommandEventIds::Identity => {
                    NewEvent::encode_for_command(event, item.command_id, k as u32, millis)
                }
                CommandEventIds::Random => NewEvent::encode(event),
            })
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(encoded) => encoded,
            Err(error) => return self.refuse(i, error.into()),
        };
        let bytes: usize = encoded.iter().map(|e| e.payload.len()).sum();
        if !self.writes.is_empty()
            && (self.events + encoded.len() > MAX_EVENTS_PER_APPEND
                || self.bytes + bytes > MAX_APPEND_BYTES)
        {
            return false;
        }
        for event in &events {
            self.state.evolve(event);
        }
        self.version += events.len() as u64;
        self.events += encoded.len();
        self.bytes += bytes;
        self.chosen.push((i, self.version));
        self.writes.push(CommandWrite {
            events: encoded,
            metadata: item.metadata.clone(),
            record: Some(CommandRecordWrite {
                command_id: item.command_id,
                fingerprint: item.fingerprint,
                status: self.state.status_label().to_owned(),
            }),
        });
        true
    }
}

/// A stream's state as the last append left it.
#[derive(Debug)]
struct Cached<A> {
    state: A,
    version: u64,
    /// The id of the event at `version`: an append from this state is written only if the
    /// stream's head is still that event (not another one at the same version, written after
    /// a failover or a restore lost the one this state saw).
    head: Option<Uuid>,
}

/// A command waiting in its stream's queue, owned.
#[derive(Debug)]
struct Pending<A: Aggregate> {
    command: A::Command,
    command_id: Uuid,
    expected: Option<u64>,
    metadata: Metadata,
    fingerprint: [u8; 32],
    creates: bool,
}

impl<A: Aggregate> Pending<A> {
    fn item(&self) -> Item<'_, A> {
        Item {
            command: &self.command,
            command_id: self.command_id,
            expected: self.expected,
            metadata: &self.metadata,
            fingerprint: self.fingerprint,
            creates: self.creates,
        }
    }
}

type Reply<A> = oneshot::Sender<Answer<A>>;

/// One stream's queue and kept state.
#[derive(Debug)]
struct Slot<A: Aggregate> {
    /// Someone (a caller's task or a drainer) is working on the stream.
    busy: bool,
    queue: VecDeque<(Pending<A>, Reply<A>)>,
    cached: Option<Cached<A>>,
    /// Entered again since eviction last passed it: passed over once more (a second chance), so
    /// that a stream in use stays while streams used once go first.
    used: bool,
}

#[derive(Debug)]
struct Shard<A: Aggregate> {
    slots: HashMap<Uuid, Slot<A>>,
    /// The slots in the order eviction passes them (a clock: a slot passed over goes to the back).
    order: VecDeque<Uuid>,
}

/// The per-stream queues and the state cache, sharded by stream id.
#[derive(Debug)]
struct Streams<A: Aggregate> {
    shards: Vec<Mutex<Shard<A>>>,
    per_shard: usize,
    keep_state: bool,
}

enum Entered<A: Aggregate> {
    /// The caller runs now, from this state (if kept).
    Run(Option<Cached<A>>),
    /// The caller waits for its answer.
    Queued(oneshot::Receiver<Answer<A>>),
    /// The stream's queue is full.
    Full,
}

impl<A: Aggregate> Streams<A> {
    fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        slots: HashMap::new(),
                        order: VecDeque::new(),
                    })
                })
                .collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            keep_state: capacity > 0,
        }
    }

    fn shard_index(stream_id: Uuid) -> usize {
        let (high, low) = stream_id.as_u64_pair();
        ((high ^ low.rotate_left(17)) % SHARDS as u64) as usize
    }

    fn shard(&self, stream_id: Uuid) -> MutexGuard<'_, Shard<A>> {
        let index = Self::shard_index(stream_id);
        // A panic while holding the lock cannot leave a slot half-changed in a way that
        // matters more than losing the queue: take the data as it is.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Start working on the stream, or queue behind whoever is.
    fn enter(&self, stream_id: Uuid, pending: impl FnOnce() -> Pending<A>) -> Entered<A> {
        let mut shard = self.shard(stream_id);
        if let Some(slot) = shard.slots.get_mut(&stream_id) {
            if slot.busy {
                if slot.queue.len() >= MAX_QUEUED_PER_STREAM {
                    return Entered::Full;
                }
                let (reply, answer) = oneshot::channel();
                slot.queue.push_back((pending(), reply));
                slot.used = true;
                return Entered::Queued(answer);
            }
            slot.busy = true;
            slot.used = true;
            return Entered::Run(slot.cached.take());
        }
        shard.slots.insert(
            stream_id,
            Slot {
                busy: true,
                queue: VecDeque::new(),
                cached: None,
                used: false,
            },
        );
        shard.order.push_back(stream_id);
        // Forget idle streams beyond the capacity: the least recently entered go first (a clock,
        // approximately), a stream entered again since the last pass gets a second chance unless
        // the shard holds twice its share. A busy stream is never forgotten.
        let mut budget = 4;
        while shard.slots.len() > self.per_shard && budget > 0 {
            budget -= 1;
            let Some(next) = shard.order.pop_front() else {
                break;
            };
            let crowded = shard.slots.len() >= 2 * self.per_shard;
            let Some(slot) = shard.slots.get_mut(&next) else {
                continue;
            };
            let idle = !slot.busy && slot.queue.is_empty();
            if idle && (!slot.used || crowded) {
                shard.slots.remove(&next);
            } else {
                slot.used = false;
                shard.order.push_back(next);
            }
        }
        Entered::Run(None)
    }

    /// The next commands of a drained stream and its kept state; `None` (and the stream
    /// marked idle) when nothing waits. Commands whose callers gave up are dropped unrun.
    #[allow(clippy::type_complexity)]
    fn take_batch(
        &self,
        stream_id: Uuid,
    ) -> Option<(Vec<(Pending<A>, Reply<A>)>, Option<Cached<A>>)> {
        let mut shard = self.shard(stream_id);
        let slot = shard.slots.get_mut(&stream_id)?;
        let mut batch = Vec::new();
        while batch.len() < MAX_BATCH {
            let Some((pending, reply)) = slot.queue.pop_front() else {
                break;
            };
            if reply.is_closed() {
                continue;
            }
            batch.push((pending, reply));
        }
        if batch.is_empty() {
            slot.busy = false;
            return None;
        }
        Some((batch, slot.cached.take()))
    }

    fn put_cache(&self, stream_id: Uuid, cache: Option<Cached<A>>) {
        if !self.keep_state {
            return;
        }
        if let Some(slot) = self.shard(stream_id).slots.get_mut(&stream_id) {
            slot.cached = cache;
        }
    }

    /// The caller's own run ended: keep the state; true when commands queued meanwhile (the
    /// stream stays busy and the caller must hand them to a drainer).
    fn leave(&self, stream_id: Uuid, cache: Option<Cached<A>>) -> bool {
        let mut shard = self.shard(stream_id);
        let Some(slot) = shard.slots.get_mut(&stream_id) else {
            return false;
        };
        if self.keep_state {
            slot.cached = cache;
        }
        if slot.queue.is_empty() {
            slot.busy = false;
            false
        } else {
            true
        }
    }
}

/// A claim on a stream while a caller runs its own command, or a drainer the queued ones.
/// Dropped unfinished (the caller's request was cancelled, or the work panicked), it forgets
/// the kept state, whose append may or may not have happened, and hands any queued commands
/// to a (new) drainer.
struct Running<'a, A: Aggregate> {
    handler: &'a CommandHandler<A>,
    stream_id: Uuid,
    finished: bool,
}

impl<A: Aggregate> Running<'_, A> {
    fn finish(&mut self, cache: Option<Cached<A>>) {
        self.finished = true;
        self.release(cache);
    }

    fn release(&self, cache: Option<Cached<A>>) {
        if !self.handler.streams.leave(self.stream_id, cache) {
            return;
        }
        let drainer = self.handler.clone().drain(self.stream_id);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(drainer);
            }
            // No runtime (it is shutting down): answer the waiting callers by dropping them.
            Err(_) => {
                let mut shard = self.handler.streams.shard(self.stream_id);
                if let Some(slot) = shard.slots.get_mut(&self.stream_id) {
                    slot.queue.clear();
                    slot.busy = false;
                }
            }
        }
    }
}

impl<A: Aggregate> Drop for Running<'_, A> {
    fn drop(&mut self) {
        if !self.finished {
            self.release(None);
        }
    }
}

/// A short, jittered pause before trying again after a lost race, so that writers racing
/// for one hot stream do not collide in lockstep.
pub(crate) async fn backoff(attempt: u32) {
    let ceiling_us = 500u64 << attempt.min(6);
    let jitter = u64::from(Uuid::new_v4().as_u128() as u16) % ceiling_us.max(1);
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_domain::order::Order;

    /// Stream ids that land in one shard, as many as asked.
    fn ids_in_one_shard(count: usize) -> Vec<Uuid> {
        let index = Streams::<Order>::shard_index;
        let first = Uuid::new_v4();
        let mut ids = vec![first];
        while ids.len() < count {
            let id = Uuid::new_v4();
            if index(id) == index(first) {
                ids.push(id);
            }
        }
        ids
    }

    fn kept(version: u64) -> Option<Cached<Order>> {
        Some(Cached {
            state: Order::default(),
            version,
            head: Some(Uuid::new_v4()),
        })
    }

    fn pending() -> Pending<Order> {
        unreachable!("a stream entered while idle takes no pending command")
    }

    /// Enter an idle stream and leave it with a state kept at `version`; answers the state
    /// the entry found.
    fn touch(streams: &Streams<Order>, id: Uuid, version: u64) -> Option<u64> {
        let Entered::Run(found) = streams.enter(id, pending) else {
            panic!("an idle stream runs at once");
        };
        assert!(!streams.leave(id, kept(version)));
        found.map(|c| c.version)
    }

    #[test]
    fn a_stream_in_use_keeps_its_state_while_streams_used_once_are_forgotten() {
        // Two kept streams per shard.
        let streams = Streams::<Order>::new(2 * SHARDS);
        let ids = ids_in_one_shard(5);
        let (hot, once) = (ids[0], ids[1]);
        assert_eq!(touch(&streams, hot, 1), None);
        assert_eq!(touch(&streams, once, 1), None);
        // The hot stream is used again, then new streams arrive, one at a time, each used
        // once, with the hot one used between them.
        assert_eq!(touch(&streams, hot, 2), Some(1));
        for (n, &new) in ids[2..].iter().enumerate() {
            assert_eq!(touch(&streams, new, 1), None);
            assert_eq!(
                touch(&streams, hot, 3 + n as u64),
                Some(2 + n as u64),
                "the hot stream's state was forgotten after {} new streams",
                n + 1
            );
        }
        // The one used once, the oldest entered, went first.
        assert_eq!(touch(&streams, once, 9), None);
        let shard = streams.shard(hot);
        assert!(shard.slots.len() <= 2 * 2, "{} slots", shard.slots.len());
    }

    #[test]
    fn a_shard_never_holds_more_than_twice_its_share_however_busy_its_streams_are_with_use() {
        // Eight kept streams per shard: more than one eviction pass looks at.
        let streams = Streams::<Order>::new(8 * SHARDS);
        let ids = ids_in_one_shard(40);
        for (n, &id) in ids.iter().enumerate() {
            touch(&streams, id, 1);
            // Every stream, the new one too, is used again before the next one arrives.
            for &old in &ids[..=n] {
                touch(&streams, old, 1);
            }
            let held = streams.shard(id).slots.len();
            assert!(held <= 2 * 8, "{held} slots after {} streams", n + 1);
        }
    }
}

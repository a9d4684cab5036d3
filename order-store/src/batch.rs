//! Group commit: appends that arrive while others are being written are coalesced into one
//! statement and one transaction, with a result per append.
//!
//! A few writer tasks each take the next waiting append plus whatever else is already queued
//! (up to a batch size), and write them with one multi-stream statement: one round trip, one
//! commit, one WAL flush for the lot. A batch never holds two appends to the same stream or
//! two with the same command id (those wait for the next batch), so the statement cannot
//! conflict with itself. If it conflicts with a writer outside the batch, every append of the
//! batch is retried on its own, which reports exactly which one lost. Being one statement,
//! a batch keeps the log's gap-safe order: each stream's events still commit in version order.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use order_domain::es::Metadata;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use crate::append::{AppendOutcome, AppendRequest, Committed, ExpectedVersion, Idempotency};
use crate::error::Error;
use crate::event::NewEvent;
use crate::store::{CommandRecord, EventStore};

/// An append owned by the queue.
#[derive(Debug)]
pub(crate) struct Job {
    pub stream_id: Uuid,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub metadata: Metadata,
    pub idempotency: Option<(Uuid, [u8; 32], String)>,
    pub reply: oneshot::Sender<Result<AppendOutcome, Error>>,
}

impl Job {
    pub(crate) fn from_request(
        request: &AppendRequest<'_>,
        reply: oneshot::Sender<Result<AppendOutcome, Error>>,
    ) -> Self {
        Self {
            stream_id: request.stream_id,
            expected: request.expected,
            events: request.events.to_vec(),
            metadata: request.metadata.clone(),
            idempotency: request
                .idempotency
                .map(|i| (i.command_id, i.fingerprint, i.status.to_owned())),
            reply,
        }
    }

    fn request(&self) -> AppendRequest<'_> {
        AppendRequest {
            stream_id: self.stream_id,
            expected: self.expected,
            events: &self.events,
            metadata: &self.metadata,
            idempotency: self
                .idempotency
                .as_ref()
                .map(|(command_id, fingerprint, status)| Idempotency {
                    command_id: *command_id,
                    fingerprint: *fingerprint,
                    status,
                }),
        }
    }

    fn command_id(&self) -> Option<Uuid> {
        self.idempotency.as_ref().map(|(id, _, _)| *id)
    }
}

/// The shared queue the writers take from.
#[derive(Debug)]
pub(crate) struct Queue {
    receiver: Mutex<(mpsc::Receiver<Job>, VecDeque<Job>)>,
    max_batch: usize,
}

impl Queue {
    pub(crate) fn new(receiver: mpsc::Receiver<Job>, max_batch: usize) -> Arc<Self> {
        Arc::new(Self {
            receiver: Mutex::new((receiver, VecDeque::new())),
            max_batch: max_batch.max(1),
        })
    }

    /// The next batch: waits for one append, then takes what else is waiting. `None` when the
    /// store is gone.
    async fn next_batch(&self) -> Option<Vec<Job>> {
        let mut guard = self.receiver.lock().await;
        let (receiver, deferred) = &mut *guard;
        let first = match deferred.pop_front() {
            Some(job) => job,
            None => receiver.recv().await?,
        };
        let mut streams = HashSet::from([first.stream_id]);
        let mut commands: HashSet<Uuid> = first.command_id().into_iter().collect();
        let mut batch = vec![first];
        let mut postponed = VecDeque::new();
        let mut candidates = std::mem::take(deferred);
        while batch.len() < self.max_batch {
            let Some(job) = candidates.pop_front().or_else(|| receiver.try_recv().ok()) else {
                break;
            };
            let command_clash = job.command_id().is_some_and(|id| commands.contains(&id));
            if streams.contains(&job.stream_id) || command_clash {
                postponed.push_back(job);
                continue;
            }
            streams.insert(job.stream_id);
            commands.extend(job.command_id());
            batch.push(job);
        }
        postponed.extend(candidates);
        *deferred = postponed;
        Some(batch)
    }
}

/// One writer: takes batches until the store is dropped.
pub(crate) async fn writer(store: EventStore, queue: Arc<Queue>) {
    while let Some(batch) = queue.next_batch().await {
        if batch.len() == 1 {
            for job in batch {
                let result = store.append_now(&job.request()).await;
                let _ = job.reply.send(result);
            }
            continue;
        }
        metrics::histogram!("order_store_group_commit_batch_size").record(batch.len() as f64);
        match store.append_batch(&batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            // A conflict with a writer outside the batch (or any failure of the statement):
            // each append on its own tells exactly who is affected.
            Err(error) => {
                metrics::counter!("order_store_group_commit_fallbacks_total").increment(1);
                tracing::debug!(%error, appends = batch.len(), "group commit fell back to single appends");
                for job in batch {
                    let result = store.append_now(&job.request()).await;
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

pub(crate) const BATCH_SQL: &str = "
WITH cmd AS (
    SELECT * FROM unnest($1::uuid[], $2::int8[], $3::uuid[], $4::bytea[], $5::text[],
        $6::text[], $7::uuid[], $8::text[], $9::text[], $10::text[])
        WITH ORDINALITY AS c(stream_id, expected, command_id, fingerprint, status,
            correlation_id, causation_id, traceparent, tracestate, actor, idx)
), prior AS (
    -- LATERAL: one index probe per append, whatever the planner believes about the table.
    SELECT cmd.idx, p.stream_id, p.stream_version, p.global_position, p.status, p.fingerprint
    FROM cmd CROSS JOIN LATERAL (
        SELECT c.stream_id, c.stream_version, c.global_position, c.status, c.fingerprint
        FROM orders.commands c WHERE c.command_id = cmd.command_id
    ) p
), head AS (
    SELECT cmd.idx, coalesce((
        SELECT e.stream_version FROM orders.events e
        WHERE e.stream_id = cmd.stream_id
        ORDER BY e.stream_version DESC
        LIMIT 1
    ), 0) AS version
    FROM cmd
), allowed AS (
    SELECT cmd.*, head.version AS head FROM cmd JOIN head USING (idx)
    WHERE NOT EXISTS (SELECT 1 FROM prior WHERE prior.idx = cmd.idx)
      AND (cmd.expected < 0 OR head.version = cmd.expected)
), ev AS (
    SELECT e.idx, e.event_id, e.event_type, e.schema_version, e.payload,
        row_number() OVER (PARTITION BY e.idx ORDER BY e.ord) AS seq
    FROM unnest($11::int8[], $12::uuid[], $13::text[], $14::int2[], $15::text[])
        WITH ORDINALITY AS e(idx, event_id, event_type, schema_version, payload, ord)
), inserted AS (
    INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version,
        payload, command_id, correlation_id, causation_id, traceparent, tracestate, actor)
    SELECT a.stream_id, a.head + ev.seq, ev.event_id, ev.event_type, ev.schema_version,
        ev.payload::jsonb, a.command_id, a.correlation_id, a.causation_id, a.traceparent,
        a.tracestate, a.actor
    FROM allowed a JOIN ev ON ev.idx = a.idx
    ORDER BY a.idx, ev.seq
    RETURNING stream_id, stream_version, global_position
), last AS (
    SELECT stream_id, max(stream_version) AS stream_version, max(global_position) AS global_position
    FROM inserted GROUP BY stream_id
), recorded AS (
    INSERT INTO orders.commands (command_id, stream_id, fingerprint, stream_version,
        global_position, status)
    SELECT a.command_id, a.stream_id, a.fingerprint, l.stream_version, l.global_position, a.status
    FROM allowed a JOIN last l ON l.stream_id = a.stream_id
    WHERE a.command_id IS NOT NULL AND a.fingerprint IS NOT NULL
    RETURNING 1
)
SELECT cmd.idx, head.version, l.stream_version, l.global_position,
    p.stream_id, p.stream_version, p.global_position, p.status, p.fingerprint
FROM cmd
JOIN head USING (idx)
LEFT JOIN last l ON l.stream_id = cmd.stream_id
LEFT JOIN prior p ON p.idx = cmd.idx
ORDER BY cmd.idx";

/// Interpret one result row of the batch statement for `job`.
pub(crate) fn outcome(
    job: &Job,
    head: i64,
    written: Option<(i64, i64)>,
    prior: Option<CommandRecord>,
) -> Result<AppendOutcome, Error> {
    if let (Some((command_id, fingerprint, _)), Some(record)) = (&job.idempotency, prior) {
        if record.stream_id != job.stream_id || record.fingerprint != fingerprint {
            return Err(Error::CommandIdReused {
                command_id: *command_id,
            });
        }
        return Ok(AppendOutcome::Duplicate(record.committed));
    }
    match written {
        Some((version, position)) => Ok(AppendOutcome::Appended(Committed {
            stream_version: version as u64,
            global_position: position as u64,
            status: job
                .idempotency
                .as_ref()
                .map(|(_, _, status)| status.clone())
                .unwrap_or_default(),
        })),
        None => Err(Error::WrongExpectedVersion {
            stream_id: job.stream_id,
            expected: job.expected,
            actual: head as u64,
        }),
    }
}

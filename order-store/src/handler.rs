//! The command handler: load, decide, append; on a lost race, load and decide again.

use std::marker::PhantomData;
use std::time::Duration;

use order_domain::es::{Aggregate, Metadata};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use uuid::Uuid;

use crate::append::{AppendOutcome, AppendRequest, ExpectedVersion, Idempotency};
use crate::error::Error;
use crate::event::NewEvent;
use crate::store::{EventStore, find_command, read_stream};

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
    pub stream_version: u64,
    pub global_position: u64,
    /// The aggregate's state label after the command.
    pub status: String,
    /// True when the command id was seen before: nothing was written now.
    pub duplicate: bool,
    /// How many times the command was decided (more than one after lost races).
    pub attempts: u32,
}

/// Runs commands of one aggregate type against the store.
#[derive(Debug, Clone)]
pub struct CommandHandler<A> {
    store: EventStore,
    max_attempts: u32,
    _aggregate: PhantomData<fn() -> A>,
}

/// sha-256 over the stream and the serialized command: what makes two requests "the same".
pub fn fingerprint<C: serde::Serialize>(stream_id: Uuid, command: &C) -> Result<[u8; 32], Error> {
    let body = serde_json::to_vec(command)
        .map_err(|e| Error::InvalidInput(format!("command cannot be serialized: {e}")))?;
    let mut hasher = Sha256::new();
    hasher.update(stream_id.as_bytes());
    hasher.update(&body);
    Ok(hasher.finalize().into())
}

impl<A: Aggregate> CommandHandler<A> {
    /// `max_attempts` bounds how often a command is re-decided after concurrent appends to
    /// its stream won the race (at least 1).
    pub fn new(store: EventStore, max_attempts: u32) -> Self {
        Self {
            store,
            max_attempts: max_attempts.max(1),
            _aggregate: PhantomData,
        }
    }

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

        // A creating command needs no read: the append itself checks the stream is new.
        let creates =
            A::creates_stream(command) && matches!(context.expected_version, None | Some(0));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (state, version) = if creates && attempt == 1 {
                (A::default(), 0)
            } else {
                match self
                    .load(stream_id, context.command_id)
                    .instrument(tracing::info_span!("load", attempt))
                    .await?
                {
                    Loaded::Recorded(record) => {
                        if record.stream_id != stream_id || record.fingerprint != fingerprint {
                            return Err(Error::CommandIdReused {
                                command_id: context.command_id,
                            }
                            .into());
                        }
                        return Ok(Handled {
                            stream_version: record.committed.stream_version,
                            global_position: record.committed.global_position,
                            status: record.committed.status,
                            duplicate: true,
                            attempts: attempt,
                        });
                    }
                    Loaded::State(state, version) => (state, version),
                }
            };
            if let Some(expected) = context.expected_version
                && expected != version
            {
                return Err(Error::WrongExpectedVersion {
                    stream_id,
                    expected: ExpectedVersion::Exact(expected),
                    actual: version,
                }
                .into());
            }

            let events = {
                let _decide = tracing::info_span!("decide", attempt).entered();
                state.decide(command).map_err(HandleError::Rejected)?
            };
            let mut after = state;
            for event in &events {
                after.evolve(event);
            }
            let encoded = events
                .iter()
                .map(NewEvent::encode)
                .collect::<Result<Vec<_>, _>>()?;
            let request = AppendRequest {
                stream_id,
                expected: ExpectedVersion::Exact(version),
                events: &encoded,
                metadata: &metadata,
                idempotency: Some(Idempotency {
                    command_id: context.command_id,
                    fingerprint,
                    status: after.status_label(),
                }),
            };
            let appended = self
                .store
                .append(request)
                .instrument(tracing::info_span!(
                    "append",
                    attempt,
                    events = encoded.len()
                ))
                .await;
            match appended {
                Ok(AppendOutcome::Appended(committed)) => {
                    return Ok(Handled {
                        stream_version: committed.stream_version,
                        global_position: committed.global_position,
                        status: committed.status,
                        duplicate: false,
                        attempts: attempt,
                    });
                }
                Ok(AppendOutcome::Duplicate(committed)) => {
                    return Ok(Handled {
                        stream_version: committed.stream_version,
                        global_position: committed.global_position,
                        status: committed.status,
                        duplicate: true,
                        attempts: attempt,
                    });
                }
                // Someone appended in between: read again and decide again, unless the caller
                // pinned the version (then the conflict is the answer).
                Err(Error::Conflict { .. } | Error::WrongExpectedVersion { .. })
                    if context.expected_version.is_none() && attempt < self.max_attempts =>
                {
                    backoff(attempt).await;
                }
                Err(Error::WrongExpectedVersion { actual, .. })
                    if context.expected_version.is_some() =>
                {
                    return Err(Error::WrongExpectedVersion {
                        stream_id,
                        expected: ExpectedVersion::Exact(version),
                        actual,
                    }
                    .into());
                }
                Err(Error::WrongExpectedVersion { .. }) => {
                    return Err(Error::Conflict { stream_id }.into());
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The command's record if it was seen before, else the stream's state. Both reads go
    /// out together on one connection (pipelined): one round trip.
    async fn load(&self, stream_id: Uuid, command_id: Uuid) -> Result<Loaded<A>, Error> {
        self.store
            .timed(async {
                let client = self.store.pool().get().await?;
                let (record, events) = tokio::try_join!(
                    find_command(&client, command_id),
                    read_stream(&client, stream_id, 0)
                )?;
                if let Some(record) = record {
                    return Ok(Loaded::Recorded(record));
                }
                let mut state = A::default();
                let mut version = 0;
                for recorded in &events {
                    state.evolve(&recorded.decode::<A::Event>()?.event);
                    version = recorded.stream_version;
                }
                Ok(Loaded::State(state, version))
            })
            .await
    }
}

enum Loaded<A> {
    Recorded(crate::store::CommandRecord),
    State(A, u64),
}

/// A short, jittered pause before trying again after a lost race, so that writers racing
/// for one hot stream do not collide in lockstep.
pub(crate) async fn backoff(attempt: u32) {
    let ceiling_us = 500u64 << attempt.min(6);
    let jitter = u64::from(Uuid::new_v4().as_u128() as u16) % ceiling_us.max(1);
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

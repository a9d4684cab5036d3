//! The generic event-sourcing vocabulary the store builds on.
//!
//! An [`Aggregate`] is a state that decides which events a command produces and evolves by
//! applying events. Both are pure: no clock, no randomness, no I/O. Persistence concerns
//! (event type names, schema versions, upcasting) are described by [`EventSchema`]; what the
//! store records next to every event is [`Metadata`].

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::upcast::{DecodeError, EncodeError};

/// A consistency boundary: one event stream, one state, pure decisions.
pub trait Aggregate: Default + Clone + fmt::Debug + Send + Sync + 'static {
    /// What a caller asks for.
    type Command: fmt::Debug + Clone + Serialize + Send + Sync + 'static;
    /// What happened, in the past tense.
    type Event: EventSchema + fmt::Debug + Clone + Send + Sync + 'static;
    /// Why a command was rejected. Never an infrastructure failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stream category: the type every event of this aggregate records, which
    /// subscriptions filter on (`Categories::of`). 1 to 63 lowercase ASCII letters, digits or
    /// `_`, starting with a letter (the store and the database refuse anything else); never
    /// change it once events were written.
    const CATEGORY: &'static str;

    /// Decide which events `command` produces in the current state. Pure.
    ///
    /// At least one: the command handler refuses an empty list as bad input
    /// (`order_store::Error::InvalidInput`, "the command produced no events") and writes
    /// nothing, not even the command's record. A command that finds nothing to do ("already
    /// closed") is a rejection, one of [`Aggregate::Error`], which its caller can tell apart.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Apply one event to the state. Only assigns state; every rule lives in [`Self::decide`].
    fn evolve(&mut self, event: &Self::Event);

    /// True when the command can only succeed on a stream that does not exist yet. The command
    /// handler then appends with "no stream" and skips reading the stream first.
    fn creates_stream(_command: &Self::Command) -> bool {
        false
    }

    /// A short label of the state (e.g. the order status) recorded with a command's result, so
    /// that a retried command can answer with it without re-reading the stream.
    fn status_label(&self) -> &'static str;

    /// Fold events from the initial state.
    fn fold<'a, I>(events: I) -> Self
    where
        I: IntoIterator<Item = &'a Self::Event>,
        Self::Event: 'a,
    {
        let mut state = Self::default();
        for event in events {
            state.evolve(event);
        }
        state
    }
}

/// How a domain event is persisted: a stable type name, a schema version, and a JSON payload.
/// Decoding accepts any older schema version and upcasts it to the current one.
pub trait EventSchema: Sized {
    /// The stable type name stored with the event (e.g. `OrderPlaced`).
    fn event_type(&self) -> &'static str;

    /// The schema version this code writes for the event's type.
    fn schema_version(&self) -> u16;

    /// The payload as JSON, without type or version.
    fn encode(&self) -> Result<serde_json::Value, EncodeError>;

    /// The payload as JSON text: the same JSON as [`EventSchema::encode`] (object keys may come
    /// in another order). Implementations should write it directly, without building a
    /// [`serde_json::Value`] first: this is what the store appends.
    fn encode_json(&self) -> Result<String, EncodeError> {
        self.encode().map(|value| value.to_string())
    }

    /// Decode a stored payload of `event_type` written at `schema_version`, upcasting it first.
    fn decode(
        event_type: &str,
        schema_version: u16,
        payload: serde_json::Value,
    ) -> Result<Self, DecodeError>;
}

/// Longest accepted correlation id, in bytes.
pub const MAX_CORRELATION_ID_LEN: usize = 128;
/// Longest accepted W3C `traceparent` / `tracestate` value, in bytes.
pub const MAX_TRACE_HEADER_LEN: usize = 512;
/// Longest accepted actor name, in bytes.
pub const MAX_ACTOR_LEN: usize = 128;

/// What the store records next to every event of one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Metadata {
    /// Joins every event, message and log line caused by one external request.
    pub correlation_id: Option<String>,
    /// The event (id) that caused this command, when a worker reacted to an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The idempotency key of the command that produced the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
    /// W3C trace context of the request that produced the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C `tracestate` of the request that produced the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// Who issued the command (token subject), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// Why metadata was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// A field is longer than allowed.
    #[error("metadata field {field} is longer than {max} bytes")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its largest length in bytes.
        max: usize,
    },
    /// A field holds characters outside printable ASCII.
    #[error("metadata field {field} contains characters outside printable ASCII")]
    NotPrintable {
        /// The field.
        field: &'static str,
    },
}

impl Metadata {
    /// Check the bounds the store relies on: every text field is printable ASCII and short.
    pub fn validate(&self) -> Result<(), MetadataError> {
        let fields = [
            (
                "correlation_id",
                self.correlation_id.as_deref(),
                MAX_CORRELATION_ID_LEN,
            ),
            (
                "traceparent",
                self.traceparent.as_deref(),
                MAX_TRACE_HEADER_LEN,
            ),
            (
                "tracestate",
                self.tracestate.as_deref(),
                MAX_TRACE_HEADER_LEN,
            ),
            ("actor", self.actor.as_deref(), MAX_ACTOR_LEN),
        ];
        for (field, value, max) in fields {
            let Some(value) = value else { continue };
            if value.len() > max {
                return Err(MetadataError::TooLong { field, max });
            }
            if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(MetadataError::NotPrintable { field });
            }
        }
        Ok(())
    }
}

/// An event as read back from the log: the domain event plus where and why it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope<E> {
    /// The event's unique id.
    pub event_id: Uuid,
    /// The stream (aggregate instance) it belongs to.
    pub stream_id: Uuid,
    /// 1-based position of the event within its stream.
    pub stream_version: u64,
    /// Position in the global log (unique, increasing in insertion order, may have gaps).
    pub global_position: u64,
    /// Correlation, causation, trace context, command id and actor.
    pub metadata: Metadata,
    /// The domain event, upcast to its current schema version.
    pub event: E,
}

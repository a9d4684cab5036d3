//! Appending: one SQL statement, one round trip, one transaction.
//!
//! The statement looks up the command id, reads the stream's head through the unique index,
//! checks the expected version, inserts the events with dense versions, and records the
//! command's result, all or nothing. Concurrent appends to one stream meet at the unique
//! index on (stream_id, stream_version): one wins, the other gets a conflict. Appends to
//! different streams share no lock.

use std::fmt;

use order_domain::es::Metadata;
use uuid::Uuid;

use crate::error::Error;
use crate::event::{
    MAX_APPEND_BYTES, MAX_EVENT_TYPE_LEN, MAX_EVENTS_PER_APPEND, MAX_PAYLOAD_BYTES, NewEvent,
};

/// What the caller believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check: append after whatever is there.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be exactly at this version (0 = no stream).
    Exact(u64),
}

impl ExpectedVersion {
    /// The statement's encoding: -1 any, otherwise the version (0 = no stream).
    pub(crate) fn as_sql(self) -> i64 {
        match self {
            Self::Any => -1,
            Self::NoStream => 0,
            Self::Exact(version) => version as i64,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(version) => write!(f, "{version}"),
        }
    }
}

/// The idempotency record of a command: a retry with the same id returns the recorded result.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    pub command_id: Uuid,
    /// sha-256 of the request; a reused id with another fingerprint is refused.
    pub fingerprint: [u8; 32],
    /// The state label after the command (e.g. the order status), returned to retries.
    pub status: &'a str,
}

/// One append.
#[derive(Debug, Clone, Copy)]
pub struct AppendRequest<'a> {
    pub stream_id: Uuid,
    pub expected: ExpectedVersion,
    pub events: &'a [NewEvent],
    pub metadata: &'a Metadata,
    pub idempotency: Option<Idempotency<'a>>,
}

/// Where a command's events landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The stream's version after the append.
    pub stream_version: u64,
    /// The global position of the last event written.
    pub global_position: u64,
    /// The recorded state label (empty without an idempotency record).
    pub status: String,
}

/// The result of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The events were written now.
    Appended(Committed),
    /// The command id was seen before with the same request: nothing was written, this is the
    /// first result.
    Duplicate(Committed),
}

impl AppendOutcome {
    pub fn committed(&self) -> &Committed {
        match self {
            Self::Appended(c) | Self::Duplicate(c) => c,
        }
    }
}

/// The statement [`crate::EventStore::append`] runs (exposed so that benchmarks can measure the
/// raw-SQL ceiling of exactly this statement). Parameters: `$1` stream id, `$2` expected version
/// (-1 any, 0 no stream, n exact), `$3`-`$6` event ids, types, schema versions and JSON payloads,
/// `$7`-`$12` metadata (correlation id, causation id, command id, traceparent, tracestate,
/// actor), `$13` request fingerprint, `$14` status label.
pub const APPEND_SQL: &str = "
WITH prior AS (
    SELECT stream_id, stream_version, global_position, status, fingerprint
    FROM orders.commands
    WHERE command_id = $9::uuid
), head AS (
    SELECT coalesce((
        SELECT e.stream_version FROM orders.events e
        WHERE e.stream_id = $1::uuid
        ORDER BY e.stream_version DESC
        LIMIT 1
    ), 0) AS version
), allowed AS (
    SELECT version FROM head
    WHERE NOT EXISTS (SELECT 1 FROM prior) AND ($2::int8 < 0 OR version = $2::int8)
), inserted AS (
    INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version,
        payload, command_id, correlation_id, causation_id, traceparent, tracestate, actor)
    SELECT $1::uuid, allowed.version + e.ord, e.event_id, e.event_type, e.schema_version,
        e.payload::jsonb, $9::uuid, $7::text, $8::uuid, $10::text, $11::text, $12::text
    FROM allowed
    CROSS JOIN unnest($3::uuid[], $4::text[], $5::int2[], $6::text[])
        WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, ord)
    ORDER BY e.ord
    RETURNING stream_version, global_position
), last AS (
    SELECT max(stream_version) AS stream_version, max(global_position) AS global_position
    FROM inserted
), recorded AS (
    INSERT INTO orders.commands (command_id, stream_id, fingerprint, stream_version,
        global_position, status)
    SELECT $9::uuid, $1::uuid, $13::bytea, last.stream_version, last.global_position, $14::text
    FROM last
    WHERE $9::uuid IS NOT NULL AND $13::bytea IS NOT NULL AND last.stream_version IS NOT NULL
    RETURNING 1
)
SELECT (SELECT version FROM head), last.stream_version, last.global_position,
    prior.stream_id, prior.stream_version, prior.global_position, prior.status, prior.fingerprint
FROM last LEFT JOIN prior ON true";

pub(crate) const FIND_COMMAND_SQL: &str = "SELECT stream_id, stream_version, global_position, \
    status, fingerprint FROM orders.commands WHERE command_id = $1";

/// Check every bound before anything is sent.
pub(crate) fn validate(request: &AppendRequest<'_>) -> Result<(), Error> {
    let events = request.events;
    if events.is_empty() {
        return Err(Error::InvalidInput(
            "an append needs at least one event".into(),
        ));
    }
    if events.len() > MAX_EVENTS_PER_APPEND {
        return Err(Error::InvalidInput(format!(
            "{} events in one append; at most {MAX_EVENTS_PER_APPEND}",
            events.len()
        )));
    }
    let mut total = 0;
    for event in events {
        if event.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::InvalidInput(format!(
                "payload of {} is {} bytes; at most {MAX_PAYLOAD_BYTES}",
                event.event_type,
                event.payload.len()
            )));
        }
        total += event.payload.len();
        let type_ok = !event.event_type.is_empty()
            && event.event_type.len() <= MAX_EVENT_TYPE_LEN
            && event
                .event_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if !type_ok {
            return Err(Error::InvalidInput(format!(
                "event type must be 1-{MAX_EVENT_TYPE_LEN} characters of letters, digits, '_' or '.'"
            )));
        }
        if event.schema_version == 0 || event.schema_version > i16::MAX as u16 {
            return Err(Error::InvalidInput("schema version must be 1-32767".into()));
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(&event.payload).is_err() {
            return Err(Error::InvalidInput(format!(
                "payload of {} is not valid JSON",
                event.event_type
            )));
        }
    }
    if total > MAX_APPEND_BYTES {
        return Err(Error::InvalidInput(format!(
            "payloads total {total} bytes; at most {MAX_APPEND_BYTES}"
        )));
    }
    request
        .metadata
        .validate()
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    if let ExpectedVersion::Exact(version) = request.expected
        && version > i64::MAX as u64 / 2
    {
        return Err(Error::InvalidInput("expected version out of range".into()));
    }
    Ok(())
}

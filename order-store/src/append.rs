//! Appending: one SQL statement, one round trip, one transaction.
//!
//! The statement looks up the command ids, reads the stream's head through the unique index,
//! checks the expected version, inserts the events with dense versions, and records the
//! commands' results, all or nothing. Concurrent appends to one stream meet at the unique
//! index on (stream_id, stream_version): one wins, the other gets a conflict. Appends to
//! different streams share no lock. The same statement carries one append or a group-commit
//! batch of many ([`APPEND_SQL`]).

use std::borrow::Cow;
use std::fmt;

use order_domain::es::Metadata;
use uuid::Uuid;

use crate::error::Error;
use crate::event::{
    MAX_APPEND_BYTES, MAX_EVENT_TYPE_LEN, MAX_EVENTS_PER_APPEND, MAX_PAYLOAD_BYTES, NewEvent,
    check_category,
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
    /// The command's id (the caller's idempotency key).
    pub command_id: Uuid,
    /// sha-256 of the request; a reused id with another fingerprint is refused.
    pub fingerprint: [u8; 32],
    /// The state label after the command (e.g. the order status), returned to retries.
    pub status: &'a str,
}

/// One append.
#[derive(Debug, Clone, Copy)]
pub struct AppendRequest<'a> {
    /// The stream to append to.
    pub stream_id: Uuid,
    /// The stream's type: its aggregate's category (e.g. `order`), recorded with every event so
    /// that subscribers can follow only the types they handle.
    pub category: &'a str,
    /// What the caller believes the stream's version is.
    pub expected: ExpectedVersion,
    /// The events, in order (at least one).
    pub events: &'a [NewEvent],
    /// Recorded with every event.
    pub metadata: &'a Metadata,
    /// The command's record, for a command with an idempotency key.
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
    /// Where the events are, whether written now or before.
    pub fn committed(&self) -> &Committed {
        match self {
            Self::Appended(c) | Self::Duplicate(c) => c,
        }
    }
}

/// One command's share of an append, owned: its events, the metadata recorded with them, and
/// (for commands with an idempotency key) the record that answers a retry.
#[derive(Debug, Clone)]
pub struct CommandWrite {
    /// The command's events, in order.
    pub events: Vec<NewEvent>,
    /// Recorded with each of them.
    pub metadata: Metadata,
    /// The command's idempotency record, if it has a key.
    pub record: Option<CommandRecordWrite>,
}

/// The idempotency record of a command, owned (see [`Idempotency`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecordWrite {
    /// The command's id.
    pub command_id: Uuid,
    /// sha-256 of the request; a reused id with another fingerprint is refused.
    pub fingerprint: [u8; 32],
    /// The state label after the command, returned to retries.
    pub status: String,
}

/// Several commands appended to one stream at once, in order, all or nothing: what the command
/// handler sends when commands to one stream queued up behind each other.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    /// The stream to append to.
    pub stream_id: Uuid,
    /// The stream's type: its aggregate's category (see [`AppendRequest::category`]).
    pub category: Cow<'static, str>,
    /// The stream's version before the first command's events.
    pub expected: ExpectedVersion,
    /// The commands, in order.
    pub commands: Vec<CommandWrite>,
}

/// The result of a [`StreamAppend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutcome {
    /// Every command's events were written now: one result per command, in order.
    Appended(Vec<Committed>),
    /// Nothing was written, because these commands (index in the request, and what their id
    /// was recorded with) were seen before. The record's stream and fingerprint may differ
    /// from the request's: then the id was reused for another request.
    Recorded(Vec<(usize, crate::store::CommandRecord)>),
}

/// The statement every append runs (exposed so that benchmarks can measure the raw-SQL
/// ceiling of exactly this statement): any number of appends to distinct streams, each with
/// any number of commands, in one round trip and one transaction.
///
/// Per stream append (`$1` stream ids, `$2` expected versions: -1 any, 0 no stream, n exact,
/// `$20` categories: the stream's type, recorded with each of its events, `$21` the id of the
/// event the caller's state ended at, which must be the head's, or null for no such check);
/// per command (`$3` its append's 1-based index, `$4` command id, `$5` request fingerprint (null:
/// no idempotency record), `$6` status label, `$7`-`$11` metadata: correlation id, causation id,
/// traceparent, tracestate, actor, `$17` the id of its last event); per event (`$12` its
/// command's 1-based index, `$18` its append's 1-based index, `$19` its 1-based place in its
/// append, `$13`-`$16` event id, type, schema version, JSON payload). Commands are listed append
/// by append, events command by command. Everything the client can number, it numbers: the
/// statement has no window, no aggregate and no join it does not need, because its plan is set
/// up and torn down on every execution and each node costs PostgreSQL CPU.
///
/// For each append the statement looks up its commands' ids, reads the stream's head through the
/// unique index, and writes only if no command was recorded before and the expected version (and
/// the head's event id, when given) holds. Rows are inserted in stream-id order (and command
/// records in command-id order), so that concurrent statements touching the same streams take their
/// index entries in one global order and cannot deadlock. It answers one row per command: the
/// stream's head before, the version and position of the command's last event when written, and the
/// earlier record when its id was seen before.
pub const APPEND_SQL: &str = "
WITH job AS (
    -- The head through the unique index: one probe per append, which reads its event id too.
    SELECT j.jidx, j.stream_id, j.expected, coalesce(h.stream_version, 0) AS head,
        h.event_id AS head_id, j.category, j.head_event
    FROM unnest($1::uuid[], $2::int8[], $20::text[], $21::uuid[])
        WITH ORDINALITY AS j(stream_id, expected, category, head_event, jidx)
    LEFT JOIN LATERAL (
        SELECT e.stream_version, e.event_id FROM orders.events e
        WHERE e.stream_id = j.stream_id
        ORDER BY e.stream_version DESC
        LIMIT 1
    ) h ON true
), cmd AS (
    SELECT * FROM unnest($3::int8[], $4::uuid[], $5::bytea[], $6::text[], $7::text[],
        $8::uuid[], $9::text[], $10::text[], $11::text[], $17::uuid[])
        WITH ORDINALITY AS c(jidx, command_id, fingerprint, status, correlation_id,
            causation_id, traceparent, tracestate, actor, last_event, cidx)
), prior AS (
    -- LATERAL: one index probe per command, whatever the planner believes about the table.
    SELECT cmd.cidx, cmd.jidx, p.stream_id, p.stream_version, p.global_position, p.status,
        p.fingerprint
    FROM cmd CROSS JOIN LATERAL (
        SELECT c.stream_id, c.stream_version, c.global_position, c.status, c.fingerprint
        FROM orders.commands c WHERE c.command_id = cmd.command_id
    ) p
    WHERE cmd.fingerprint IS NOT NULL
), allowed AS (
    SELECT job.jidx, job.stream_id, job.head, job.category FROM job
    WHERE (job.expected < 0 OR job.head = job.expected)
      -- The event the caller's state ended at is the head's own (not another, written at the
      -- same version after the one it saw was lost: a failover, a restore).
      AND (job.head_event IS NULL OR job.head_event = job.head_id)
      AND NOT EXISTS (SELECT 1 FROM prior WHERE prior.jidx = job.jidx)
), inserted AS (
    INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version,
        payload, command_id, correlation_id, causation_id, traceparent, tracestate, actor,
        category)
    SELECT a.stream_id, a.head + e.seq, e.event_id, e.event_type, e.schema_version,
        e.payload::jsonb, c.command_id, c.correlation_id, c.causation_id, c.traceparent,
        c.tracestate, c.actor, a.category
    FROM unnest($12::int8[], $18::int8[], $19::int8[], $13::uuid[], $14::text[], $15::int2[],
        $16::text[]) AS e(cidx, jidx, seq, event_id, event_type, schema_version, payload)
    JOIN allowed a ON a.jidx = e.jidx
    JOIN cmd c ON c.cidx = e.cidx
    ORDER BY a.stream_id, e.seq
    RETURNING event_id, stream_id, stream_version, global_position
), recorded AS (
    INSERT INTO orders.commands (command_id, stream_id, fingerprint, stream_version,
        global_position, status)
    SELECT c.command_id, i.stream_id, c.fingerprint, i.stream_version, i.global_position, c.status
    FROM cmd c JOIN inserted i ON i.event_id = c.last_event
    WHERE c.command_id IS NOT NULL AND c.fingerprint IS NOT NULL
    ORDER BY c.command_id
    RETURNING 1
)
SELECT c.jidx, j.head, i.stream_version, i.global_position,
    p.stream_id, p.stream_version, p.global_position, p.status, p.fingerprint
FROM cmd c
JOIN job j USING (jidx)
LEFT JOIN inserted i ON i.event_id = c.last_event
LEFT JOIN prior p ON p.cidx = c.cidx
ORDER BY c.cidx";

/// The statement a batch runs when every append in it creates its stream
/// ([`ExpectedVersion::NoStream`] or `Exact(0)`, as PlaceOrder does): the client knows every
/// version (the stream is empty), so the statement only inserts. It reads no head and looks up no
/// command id: a stream that exists already, a command id recorded before, or an event id in the
/// log fails it on a unique index, nothing is written, and the writer then runs [`APPEND_SQL`],
/// which answers exactly who is affected. A batch of new streams thus costs PostgreSQL two inserts
/// per command and no probe.
///
/// Per event, in stream-id then version order (`$1` stream id, `$2` version, `$3` event id,
/// `$4` type, `$5` schema version, `$6` JSON payload, `$7`-`$12` its command's id, correlation
/// id, causation id, traceparent, tracestate and actor, `$13` its stream's category); per
/// command with an idempotency record, in command-id order (`$14` command id, `$15` stream id,
/// `$16` fingerprint, `$17` status, `$18` the id of its last event). The same global orders as
/// [`APPEND_SQL`], so concurrent statements cannot deadlock. It answers one row per event
/// written: its id, version and position.
pub(crate) const APPEND_NEW_STREAMS_SQL: &str = "
WITH inserted AS (
    INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version,
        payload, command_id, correlation_id, causation_id, traceparent, tracestate, actor,
        category)
    SELECT e.stream_id, e.version, e.event_id, e.event_type, e.schema_version, e.payload::jsonb,
        e.command_id, e.correlation_id, e.causation_id, e.traceparent, e.tracestate, e.actor,
        e.category
    FROM unnest($1::uuid[], $2::int8[], $3::uuid[], $4::text[], $5::int2[], $6::text[],
        $7::uuid[], $8::text[], $9::uuid[], $10::text[], $11::text[], $12::text[], $13::text[])
        AS e(stream_id, version, event_id, event_type, schema_version, payload, command_id,
            correlation_id, causation_id, traceparent, tracestate, actor, category)
    RETURNING event_id, stream_version, global_position
), recorded AS (
    INSERT INTO orders.commands (command_id, stream_id, fingerprint, stream_version,
        global_position, status)
    SELECT c.command_id, c.stream_id, c.fingerprint, i.stream_version, i.global_position, c.status
    FROM unnest($14::uuid[], $15::uuid[], $16::bytea[], $17::text[], $18::uuid[])
        WITH ORDINALITY AS c(command_id, stream_id, fingerprint, status, last_event, n)
    JOIN inserted i ON i.event_id = c.last_event
    ORDER BY c.n
    RETURNING 1
)
SELECT event_id, stream_version, global_position FROM inserted";

pub(crate) const FIND_COMMANDS_SQL: &str = "SELECT command_id, stream_id, stream_version, \
    global_position, status, fingerprint FROM orders.commands WHERE command_id = ANY($1::uuid[])";

/// Check every bound of a single append before anything is sent.
pub(crate) fn validate(request: &AppendRequest<'_>) -> Result<(), Error> {
    validate_events(request.events)?;
    check_category(request.category)?;
    request
        .metadata
        .validate()
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    validate_expected(request.expected)
}

/// Check every bound of a multi-command append before anything is sent: the bounds of one
/// append apply to the events of all its commands together, and each command has events.
///
/// `json_checked`: the payloads were written by [`NewEvent::encode`] (the command handler), so
/// parsing them again to prove they are JSON would only cost time.
pub(crate) fn validate_stream_append(
    append: &StreamAppend,
    json_checked: bool,
) -> Result<(), Error> {
    if append.commands.is_empty() {
        return Err(Error::InvalidInput(
            "an append needs at least one command".into(),
        ));
    }
    let mut count = 0;
    for command in &append.commands {
        if command.events.is_empty() {
            return Err(Error::InvalidInput(
                "every command of an append needs at least one event".into(),
            ));
        }
        count += command.events.len();
        command
            .metadata
            .validate()
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
    }
    if count > MAX_EVENTS_PER_APPEND {
        return Err(Error::InvalidInput(format!(
            "{count} events in one append; at most {MAX_EVENTS_PER_APPEND}"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for record in append.commands.iter().filter_map(|c| c.record.as_ref()) {
        if !seen.insert(record.command_id) {
            return Err(Error::InvalidInput(format!(
                "command id {} appears twice in one append",
                record.command_id
            )));
        }
    }
    check_events(
        append.commands.iter().flat_map(|c| &c.events),
        !json_checked,
    )?;
    check_category(&append.category)?;
    validate_expected(append.expected)
}

fn validate_expected(expected: ExpectedVersion) -> Result<(), Error> {
    if let ExpectedVersion::Exact(version) = expected
        && version > i64::MAX as u64 / 2
    {
        return Err(Error::InvalidInput("expected version out of range".into()));
    }
    Ok(())
}

fn validate_events(events: &[NewEvent]) -> Result<(), Error> {
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
    check_events(events.iter(), true)
}

/// The bounds of each event and of their sum.
fn check_events<'a>(
    events: impl Iterator<Item = &'a NewEvent>,
    parse_json: bool,
) -> Result<(), Error> {
    let mut total = 0;
    // At most MAX_EVENTS_PER_APPEND (checked before): a scan is cheaper than a hash set.
    let mut ids: Vec<Uuid> = Vec::new();
    for event in events {
        check_event(
            &event.event_type,
            event.schema_version,
            &event.payload,
            parse_json,
        )?;
        total += event.payload.len();
        // One event id twice in one append: the request's own fault, not "already in the log".
        let twice = ids.contains(&event.event_id);
        ids.push(event.event_id);
        if twice {
            return Err(Error::InvalidInput(format!(
                "event id {} appears twice in one append",
                event.event_id
            )));
        }
    }
    if total > MAX_APPEND_BYTES {
        return Err(Error::InvalidInput(format!(
            "payloads total {total} bytes; at most {MAX_APPEND_BYTES}"
        )));
    }
    Ok(())
}

/// The bounds of one event, wherever it comes from (an append, an import): its type, schema
/// version and payload (its size, and that the log can hold it; `parse_json`: that it is
/// JSON at all, for payloads no serde_json value wrote).
pub(crate) fn check_event(
    event_type: &str,
    schema_version: u16,
    payload: &str,
    parse_json: bool,
) -> Result<(), Error> {
    let type_ok = !event_type.is_empty()
        && event_type.len() <= MAX_EVENT_TYPE_LEN
        && event_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if !type_ok {
        return Err(Error::InvalidInput(format!(
            "event type must be 1-{MAX_EVENT_TYPE_LEN} characters of letters, digits, '_' or '.'"
        )));
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::InvalidInput(format!(
            "payload of {event_type} is {} bytes; at most {MAX_PAYLOAD_BYTES}",
            payload.len()
        )));
    }
    if schema_version == 0 || schema_version > i16::MAX as u16 {
        return Err(Error::InvalidInput("schema version must be 1-32767".into()));
    }
    if parse_json && serde_json::from_str::<serde::de::IgnoredAny>(payload).is_err() {
        return Err(Error::InvalidInput(format!(
            "payload of {event_type} is not valid JSON"
        )));
    }
    // Valid JSON that the log cannot hold (jsonb refuses it, or a reader could not load it):
    // refused here, so that one such payload never fails a group-commit batch.
    if let Some(why) = crate::jsonb::unstorable(payload) {
        return Err(Error::InvalidInput(format!(
            "payload of {event_type} holds {why}"
        )));
    }
    Ok(())
}

//! Bulk appends of whole streams told from another system's history (a legacy import).
//!
//! [`EventStore::import_batch`] appends a batch of new streams in one transaction, through
//! PostgreSQL's binary `COPY` (the fastest way rows get into a table), together with the
//! import's progress row (`orders.imports`). What makes it exactly once:
//!
//! - every stream and event id is chosen by the caller, deterministically from the legacy
//!   record (UUID v5), so a second run of the same input names the same streams;
//! - the batch first reads what the log holds of its streams and compares it with what they
//!   tell ([`EventStore::import_batch`]): a stream as told is left out, one the log holds the
//!   start of gets the rest, one that differs is reported; what is appended goes in one
//!   transaction;
//! - a concurrent run that appends the same stream first makes this batch's `COPY` hit the
//!   `(stream_id, stream_version)` unique index: the transaction rolls back and the batch is
//!   tried again, without those streams.
//!
//! Imported events carry `imported_from` ([`RecordedEvent::imported_from`]) and no command id;
//! their `recorded_at` is the legacy system's time. Projections fold them like any other event;
//! the SQS publisher does not send them (history has no side effects).
//!
//! [`RecordedEvent::imported_from`]: crate::RecordedEvent::imported_from

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use futures::SinkExt;
use uuid::Uuid;

use crate::error::Error;
use crate::store::EventStore;

/// One event of an imported stream, already encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedEvent {
    /// Its id (derive it from the legacy record, so that a second run names the same event).
    pub event_id: Uuid,
    /// Its type name.
    pub event_type: Cow<'static, str>,
    /// The schema version of `payload_json`.
    pub schema_version: u16,
    /// The payload, a JSON object as text.
    pub payload_json: String,
    /// When it happened in the legacy system (stored as `recorded_at`).
    pub recorded_at: SystemTime,
}

/// A stream told from legacy history: appended whole, at versions 1, 2, ... in `events` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedStream {
    /// The stream's id (derive it from the legacy record).
    pub stream_id: Uuid,
    /// Its aggregate's category (`order`).
    pub category: Cow<'static, str>,
    /// The legacy record it tells, `<source>:<legacy id>` (1 to 300 bytes).
    pub imported_from: String,
    /// Correlation id recorded with each event (for example the legacy id), if any.
    pub correlation_id: Option<String>,
    /// Its events, oldest first (at least one).
    pub events: Vec<ImportedEvent>,
}

/// What one [`EventStore::import_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportBatchOutcome {
    /// Streams appended by this batch (new to the log).
    pub streams_appended: u64,
    /// Events appended by this batch (to new streams and to updated ones).
    pub events_appended: u64,
    /// Streams of the batch that were in the log already, whole and as told now (appended by
    /// an earlier or a concurrent run), or whole and followed by events this system recorded
    /// since (the order lives here now, its legacy record unchanged). Left alone.
    pub streams_present: u64,
    /// Streams the log held the start of, imported from the same legacy record: the rest of
    /// their told history was appended (the legacy order moved on since an earlier run).
    pub streams_updated: u64,
    /// Streams the log held (the start of, or all of) that differ from their record, and why
    /// (a clause that reads after "the stream was imported before and"): the record moved on
    /// while this system recorded events of its own (the order lives here now), or an
    /// imported event that the legacy record now tells differently or no longer tells. Left
    /// alone. In the order of the batch's streams.
    pub streams_diverged: Vec<(Uuid, String)>,
}

/// How a stream of a batch stands against the log.
enum Standing<'a> {
    /// Not in the log, or in it with its first `skip` told events: append the rest.
    Append(&'a ImportedStream, usize),
    Present,
    Diverged(Uuid, String),
}

/// Which ids, besides the one told now, name a told event in the log: called as
/// `earlier(stream_id, version, told, logged)` when the log holds `logged` at `version` of
/// `stream_id` and the stream tells `told` there, it says whether `logged` is an id the caller
/// derived for that very event before it changed how it derives them (the other fields are
/// compared all the same). [`EventStore::import_batch`] takes none.
pub type EarlierEventIds = fn(Uuid, u64, Uuid, Uuid) -> bool;

/// One event of a stream as the log holds it.
#[derive(Clone)]
struct Logged {
    version: i64,
    event_type: String,
    schema_version: i16,
    payload: serde_json::Value,
    imported_from: Option<String>,
    event_id: Uuid,
    recorded_at: SystemTime,
}

impl Logged {
    /// From a row of [`PREFIX_SQL`].
    fn from_row(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            version: row.try_get(1)?,
            event_type: row.try_get(2)?,
            schema_version: row.try_get(3)?,
            payload: row.try_get(4)?,
            imported_from: row.try_get(5)?,
            event_id: row.try_get(6)?,
            recorded_at: row.try_get(7)?,
        })
    }
}

/// How the log's events of a stream (`logged`, versions 1.., none when it is new) stand
/// against its told history: every imported event is compared with the told one at its
/// version (id, type, schema version, payload, time; an id `earlier` recognizes stands for
/// the told one), so a record whose past changed is reported whatever its length; after the
/// imported events, either the told history goes on (append the rest), or it ends there
/// (present), or this system recorded events of its own (present when the told history ends
/// where they begin, reported when it goes on).
fn standing<'a>(
    stream: &'a ImportedStream,
    logged: &[Logged],
    earlier: EarlierEventIds,
) -> Result<Standing<'a>, Error> {
    for (index, event) in logged.iter().enumerate() {
        let (version, event_type) = (event.version, &event.event_type);
        if version != index as i64 + 1 {
            return Err(Error::Database(format!(
                "stream {} has no version {} in the log",
                stream.stream_id,
                index + 1
            )));
        }
        if event.imported_from.as_deref() != Some(stream.imported_from.as_str()) {
            // The order lives here now: this system recorded from this event on.
            if index < stream.events.len() {
                return Ok(Standing::Diverged(
                    stream.stream_id,
                    format!(
                        "its legacy record moved on since, but its event {version} \
                         ({event_type}) was recorded by this system since the import, so the \
                         order is not updated from the legacy record"
                    ),
                ));
            }
            return Ok(Standing::Present);
        }
        let Some(told) = stream.events.get(index) else {
            return Ok(Standing::Diverged(
                stream.stream_id,
                format!(
                    "the log holds its imported event {version} ({event_type}), which the \
                     legacy record no longer tells: the record's past changed, so the order is \
                     not updated"
                ),
            ));
        };
        let same_id = told.event_id == event.event_id
            || earlier(
                stream.stream_id,
                index as u64 + 1,
                told.event_id,
                event.event_id,
            );
        let same = same_id
            && told.event_type == *event_type
            && i32::from(told.schema_version) == i32::from(event.schema_version)
            && pg_micros(told.recorded_at) == pg_micros(event.recorded_at)
            && serde_json::from_str::<serde_json::Value>(&told.payload_json)
                .is_ok_and(|p| p == event.payload);
        if !same {
            return Ok(Standing::Diverged(
                stream.stream_id,
                format!(
                    "its imported event {version} ({event_type}) is not what the legacy record \
                     tells now ({}, its id, payload or time): the record's past changed, so \
                     the order is not updated",
                    told.event_type
                ),
            ));
        }
    }
    if logged.len() < stream.events.len() {
        Ok(Standing::Append(stream, logged.len()))
    } else {
        Ok(Standing::Present)
    }
}

/// The progress row of one import (`orders.imports`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    /// The import's name.
    pub name: String,
    /// How many runs started.
    pub runs: u32,
    /// Legacy orders the latest run read (imported, present already, or rejected).
    pub orders_read: u64,
    /// Legacy orders the latest run rejected (a CSV row whose order is not in the export is
    /// a reject of no order, and not counted here): the importer's own rejects (the highest
    /// figure its batches gave, or the one [`EventStore::import_finish`] wrote) and the orders
    /// the run's committed batches left alone ([`ImportBatchOutcome::streams_diverged`]),
    /// recorded in each batch's transaction, each order once.
    pub orders_rejected: u64,
    /// Streams every run appended, together.
    pub orders_imported: u64,
    /// Events every run appended, together.
    pub events_imported: u64,
    /// Batches every run committed, together.
    pub batches: u64,
    /// The legacy source every run of this import derives its ids from (recorded by its first
    /// run; `None` for an import begun before sources were recorded and not run since).
    pub source: Option<String>,
    /// When the latest run finished; `None` while it runs or after it stopped early.
    pub finished_at: Option<SystemTime>,
}

/// Where the latest run stands, written with each batch and at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportProgress {
    /// Legacy orders read so far by this run.
    pub orders_read: u64,
    /// Legacy orders rejected so far by this run (orders only: not CSV rows without one),
    /// before any reached the store: not the orders a batch left alone
    /// ([`ImportBatchOutcome::streams_diverged`]), which the store records itself in the
    /// batch's transaction and adds to [`ImportRecord::orders_rejected`].
    pub orders_rejected: u64,
}

/// The longest `imported_from` accepted, in bytes.
pub const MAX_IMPORTED_FROM_LEN: usize = 300;

const COPY_SQL: &str = "COPY orders.events (stream_id, stream_version, event_id, event_type, \
    schema_version, payload, correlation_id, recorded_at, category, imported_from) \
    FROM STDIN (FORMAT binary)";

/// The events of the batch's streams that the log holds, to compare with their told history
/// (one index range scan per stream; none for a new one).
const PREFIX_SQL: &str = "SELECT stream_id, stream_version, event_type, schema_version, payload, \
    imported_from, event_id, recorded_at FROM orders.events WHERE stream_id = ANY($1) \
    ORDER BY stream_id, stream_version";

/// The progress row's columns as [`record_from_row`] reads them: the orders rejected are the
/// importer's own and those the latest run's batches left alone (`orders.import_left_alone`,
/// V8) together. Every statement reading them names the progress row `i`.
const RECORD_COLUMNS: &str = "i.name, i.runs, i.orders_read, i.orders_rejected + (SELECT count(*) \
    FROM orders.import_left_alone l WHERE l.import_name = i.name AND l.run = i.runs), \
    i.orders_imported, i.events_imported, i.batches, i.finished_at, i.source";

/// Record the orders a batch of the import `$1` left alone (`$2`), for its latest run, each
/// once: a batch tried again after its commit's answer was lost finds them recorded.
const LEFT_ALONE_SQL: &str = "INSERT INTO orders.import_left_alone (import_name, run, stream_id) \
    SELECT i.name, i.runs, left_alone FROM orders.imports i, unnest($2::uuid[]) AS left_alone \
    WHERE i.name = $1 ON CONFLICT DO NOTHING";

/// The longest legacy source name accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 100;

/// How often a batch that lost a race on the unique index is tried again.
const RACE_ATTEMPTS: u32 = 5;

/// Whether `name` can name an import (its progress row): 1 to 100 of a-z, 0-9, `_`, `.`,
/// `-`, starting with a letter or digit; otherwise [`Error::InvalidInput`] saying so.
///
/// ```
/// assert!(order_store::import::check_name("legacy-2026.12").is_ok());
/// assert!(order_store::import::check_name("Legacy 2026").is_err());
/// ```
pub fn check_name(name: &str) -> Result<(), Error> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = bytes
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok || name.len() > 100 {
        return Err(Error::InvalidInput(format!(
            "import name {name:?}: 1 to 100 of a-z, 0-9, '_', '.', '-', starting with a letter \
             or digit"
        )));
    }
    Ok(())
}

fn check_source(source: &str) -> Result<(), Error> {
    // As the column's check: control characters include the line and paragraph separators.
    let control = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if source.is_empty() || source.len() > MAX_SOURCE_LEN || source.chars().any(control) {
        return Err(Error::InvalidInput(format!(
            "import source {source:?}: 1 to {MAX_SOURCE_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_stream(stream: &ImportedStream) -> Result<(), Error> {
    let invalid = |what: String| {
        Err(Error::InvalidInput(format!(
            "imported stream {}: {what}",
            stream.stream_id
        )))
    };
    if stream.events.is_empty() {
        return invalid("no events".into());
    }
    if stream.imported_from.is_empty() || stream.imported_from.len() > MAX_IMPORTED_FROM_LEN {
        return invalid(format!(
            "imported_from must be 1 to {MAX_IMPORTED_FROM_LEN} bytes"
        ));
    }
    crate::event::check_category(&stream.category)?;
    if let Some(correlation) = &stream.correlation_id {
        let metadata = order_domain::Metadata {
            correlation_id: Some(correlation.clone()),
            ..Default::default()
        };
        if let Err(e) = metadata.validate() {
            return invalid(e.to_string());
        }
    }
    for event in &stream.events {
        // What an append takes: the type's characters, the payload's size, JSON the log can
        // hold. A COPY would take a type with a tab or a quote as it is. (That the payload is
        // JSON at all, the server checks as it reads the COPY: a refusal there is
        // InvalidInput too, and the batch writes nothing. Not parsed here: a run over an
        // export imported before would parse every payload for nothing.)
        if let Err(Error::InvalidInput(why)) = crate::append::check_event(
            &event.event_type,
            event.schema_version,
            &event.payload_json,
            false,
        ) {
            return invalid(why);
        }
        if !event.payload_json.trim_start().starts_with('{') {
            return invalid(format!(
                "the payload of {} is not a JSON object",
                event.event_type
            ));
        }
    }
    Ok(())
}

/// PostgreSQL's epoch for timestamps: 2000-01-01T00:00:00Z.
const PG_EPOCH_SECS: u64 = 946_684_800;

fn pg_micros(time: SystemTime) -> i64 {
    let epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_SECS);
    match time.duration_since(epoch) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

fn field(buffer: &mut BytesMut, bytes: &[u8]) {
    // Every field is bounded well below 2 GiB (a payload is at most a few MB).
    buffer.put_i32(bytes.len() as i32);
    buffer.put_slice(bytes);
}

/// The binary COPY rows of each stream's events after its first `skip`, at versions
/// `skip + 1`, ... (PostgreSQL's documented binary format: a header, then per row the field
/// count and each field's length and bytes, then -1).
fn copy_rows(streams: &[(&ImportedStream, usize)]) -> BytesMut {
    let size: usize = streams
        .iter()
        .flat_map(|(s, skip)| s.events.iter().skip(*skip))
        .map(|e| e.payload_json.len() + 160)
        .sum();
    let mut buffer = BytesMut::with_capacity(size + 32);
    buffer.put_slice(b"PGCOPY\n\xff\r\n\0");
    buffer.put_i32(0); // flags
    buffer.put_i32(0); // header extension length
    for &(stream, skip) in streams {
        for (index, event) in stream.events.iter().enumerate().skip(skip) {
            buffer.put_i16(10);
            field(&mut buffer, stream.stream_id.as_bytes());
            buffer.put_i32(8);
            buffer.put_i64(index as i64 + 1);
            field(&mut buffer, event.event_id.as_bytes());
            field(&mut buffer, event.event_type.as_bytes());
            buffer.put_i32(2);
            buffer.put_i16(event.schema_version as i16);
            // jsonb's binary form: a version byte (1), then the JSON text.
            buffer.put_i32(event.payload_json.len() as i32 + 1);
            buffer.put_u8(1);
            buffer.put_slice(event.payload_json.as_bytes());
            match &stream.correlation_id {
                Some(correlation) => field(&mut buffer, correlation.as_bytes()),
                None => buffer.put_i32(-1),
            }
            buffer.put_i32(8);
            buffer.put_i64(pg_micros(event.recorded_at));
            field(&mut buffer, stream.category.as_bytes());
            field(&mut buffer, stream.imported_from.as_bytes());
        }
    }
    buffer.put_i16(-1);
    buffer
}

fn record_from_row(row: &tokio_postgres::Row) -> Result<ImportRecord, tokio_postgres::Error> {
    Ok(ImportRecord {
        name: row.try_get(0)?,
        runs: row.try_get::<_, i32>(1)?.max(0) as u32,
        orders_read: row.try_get::<_, i64>(2)?.max(0) as u64,
        orders_rejected: row.try_get::<_, i64>(3)?.max(0) as u64,
        orders_imported: row.try_get::<_, i64>(4)?.max(0) as u64,
        events_imported: row.try_get::<_, i64>(5)?.max(0) as u64,
        batches: row.try_get::<_, i64>(6)?.max(0) as u64,
        finished_at: row.try_get(7)?,
        source: row.try_get(8)?,
    })
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl EventStore {
    /// Start a run of the import `name` of the legacy source `source`: creates its progress
    /// row or counts one more run, and clears the latest run's figures. Returns the row as it
    /// is now.
    ///
    /// Every id of an imported order derives from its source, so the first run records the
    /// source, and a later run of the same import that names another is refused
    /// ([`Error::InvalidInput`] naming both) with nothing changed: it would append every order
    /// again under new ids. An import begun before sources were recorded takes this run's.
    pub async fn import_begin(&self, name: &str, source: &str) -> Result<ImportRecord, Error> {
        check_name(name)?;
        check_source(source)?;
        let client = self.connection().await?;
        // One statement: two runs beginning at once with different sources cannot both pass.
        let sql = format!(
            "INSERT INTO orders.imports AS i (name, runs, source) VALUES ($1, 1, $2) \
             ON CONFLICT (name) DO UPDATE SET runs = i.runs + 1, orders_read = 0, \
                 orders_rejected = 0, finished_at = NULL, updated_at = now(), \
                 source = EXCLUDED.source \
             WHERE i.source IS NULL OR i.source = EXCLUDED.source \
             RETURNING {RECORD_COLUMNS}"
        );
        if let Some(row) = client.query_opt(&sql, &[&name, &source]).await? {
            return Ok(record_from_row(&row)?);
        }
        let recorded: Option<String> = client
            .query_opt(
                "SELECT source FROM orders.imports WHERE name = $1",
                &[&name],
            )
            .await?
            .map(|row| row.try_get(0))
            .transpose()?
            .flatten();
        Err(Error::InvalidInput(format!(
            "import {name:?} began with the source {recorded:?}, and this run names {source:?}: \
             every id derives from the source, so it would import every order again under new \
             ids; run it with the source {recorded:?}, or give another source's export an \
             import name of its own",
            recorded = recorded.unwrap_or_default()
        )))
    }

    /// The progress row of the import `name`, if it ever ran.
    pub async fn import_status(&self, name: &str) -> Result<Option<ImportRecord>, Error> {
        check_name(name)?;
        let client = self.connection().await?;
        let sql = format!("SELECT {RECORD_COLUMNS} FROM orders.imports i WHERE i.name = $1");
        let row = client.query_opt(&sql, &[&name]).await?;
        Ok(row.as_ref().map(record_from_row).transpose()?)
    }

    /// Record the end of the latest run of `name` (its final figures and the time).
    pub async fn import_finish(
        &self,
        name: &str,
        progress: ImportProgress,
    ) -> Result<ImportRecord, Error> {
        check_name(name)?;
        let client = self.connection().await?;
        let sql = format!(
            "UPDATE orders.imports AS i SET orders_read = $2, orders_rejected = $3, \
                 finished_at = now(), updated_at = now() \
             WHERE i.name = $1 RETURNING {RECORD_COLUMNS}"
        );
        let row = client
            .query_opt(
                &sql,
                &[
                    &name,
                    &count(progress.orders_read),
                    &count(progress.orders_rejected),
                ],
            )
            .await?
            .ok_or_else(|| Error::InvalidInput(format!("no import named {name:?} began")))?;
        Ok(record_from_row(&row)?)
    }

    /// Append `streams` (each a whole told history) in one transaction with the progress of
    /// the import `name` (begun by [`EventStore::import_begin`]). A stream new to the log is
    /// appended whole. A stream the log holds with as many events or more is left alone
    /// ([`ImportBatchOutcome::streams_present`]). A stream the log holds the start of (the
    /// legacy order moved on since an earlier run) gets the rest appended, provided every
    /// event the log holds was imported from the same legacy record and is the one told now
    /// ([`ImportBatchOutcome::streams_updated`]); otherwise it is left alone and reported in
    /// [`ImportBatchOutcome::streams_diverged`], and recorded as rejected for the progress
    /// row in the same transaction (see [`ImportRecord::orders_rejected`]). Bad input (an
    /// empty stream, a bad category,
    /// an event an append would refuse, a stream id or an event id twice in the batch) is
    /// refused before anything is written, as [`Error::InvalidInput`]; an event id the log
    /// holds in another stream is [`Error::DuplicateEventId`], and nothing of the batch is
    /// written.
    pub async fn import_batch(
        &self,
        name: &str,
        streams: &[ImportedStream],
        progress: ImportProgress,
    ) -> Result<ImportBatchOutcome, Error> {
        self.import_batch_with(name, streams, progress, |_, _, _, _| false)
            .await
    }

    /// [`EventStore::import_batch`], where an event the log holds under an id that `earlier`
    /// recognizes as one the caller derived before for the told event (an importer whose id
    /// derivation changed: its earlier runs' streams keep their ids) counts as that event:
    /// such a stream is present, or updated, or diverged, as its other fields say.
    pub async fn import_batch_with(
        &self,
        name: &str,
        streams: &[ImportedStream],
        progress: ImportProgress,
        earlier: EarlierEventIds,
    ) -> Result<ImportBatchOutcome, Error> {
        check_name(name)?;
        let mut ids = Vec::with_capacity(streams.len());
        let mut seen = std::collections::HashSet::with_capacity(streams.len());
        // Each event id, with the stream it belongs to.
        let mut events = std::collections::HashMap::new();
        for stream in streams {
            check_stream(stream)?;
            if !seen.insert(stream.stream_id) {
                return Err(Error::InvalidInput(format!(
                    "stream {} is twice in one import batch",
                    stream.stream_id
                )));
            }
            ids.push(stream.stream_id);
            for event in &stream.events {
                if events.insert(event.event_id, stream.stream_id).is_some() {
                    return Err(Error::InvalidInput(format!(
                        "event id {} is twice in one import batch",
                        event.event_id
                    )));
                }
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self
                .try_import(name, streams, &ids, progress, earlier)
                .await?
            {
                Ok(outcome) => return Ok(outcome),
                Err(LostRace(error)) => error,
            };
            // A race with another run (of this import: the same streams, the same event ids)
            // is tried again; an event id the log holds in another stream never will pass.
            if let Some(event_id) = self.event_id_elsewhere(&events).await? {
                return Err(Error::DuplicateEventId { event_id });
            }
            if attempt >= RACE_ATTEMPTS {
                return Err(error.into());
            }
            tracing::info!(
                name,
                attempt,
                "another run appended some of this batch's streams first; trying again"
            );
        }
    }

    /// An event id of the batch (`events`: id to its stream) that the log holds in another
    /// stream.
    async fn event_id_elsewhere(
        &self,
        events: &std::collections::HashMap<Uuid, Uuid>,
    ) -> Result<Option<Uuid>, Error> {
        let ids: Vec<Uuid> = events.keys().copied().collect();
        let client = self.connection().await?;
        let rows = client
            .query(
                "SELECT event_id, stream_id FROM orders.events WHERE event_id = ANY($1)",
                &[&ids],
            )
            .await?;
        for row in rows {
            let event_id: Uuid = row.try_get(0)?;
            let stream_id: Uuid = row.try_get(1)?;
            if events.get(&event_id) != Some(&stream_id) {
                return Ok(Some(event_id));
            }
        }
        Ok(None)
    }

    async fn try_import(
        &self,
        name: &str,
        streams: &[ImportedStream],
        ids: &[Uuid],
        progress: ImportProgress,
        earlier: EarlierEventIds,
    ) -> Result<Result<ImportBatchOutcome, LostRace>, Error> {
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
        // What the log holds of the batch's streams, compared with what they tell now.
        let mut logged: std::collections::HashMap<Uuid, Vec<Logged>> =
            std::collections::HashMap::new();
        for row in transaction.query(PREFIX_SQL, &[&ids]).await? {
            logged
                .entry(row.try_get(0)?)
                .or_default()
                .push(Logged::from_row(&row)?);
        }
        let mut new = Vec::new();
        let mut outcome = ImportBatchOutcome::default();
        for stream in streams {
            let standing = standing(
                stream,
                logged.get(&stream.stream_id).map_or(&[][..], Vec::as_slice),
                earlier,
            )?;
            match standing {
                Standing::Append(stream, skip) => {
                    if skip == 0 {
                        outcome.streams_appended += 1;
                    } else {
                        outcome.streams_updated += 1;
                    }
                    outcome.events_appended += (stream.events.len() - skip) as u64;
                    new.push((stream, skip));
                }
                Standing::Present => outcome.streams_present += 1,
                Standing::Diverged(id, why) => outcome.streams_diverged.push((id, why)),
            }
        }
        if !new.is_empty() {
            let rows = copy_rows(&new);
            let copy = async {
                let sink = transaction.copy_in(COPY_SQL).await?;
                futures::pin_mut!(sink);
                sink.send(rows.freeze()).await?;
                sink.finish().await
            };
            if let Err(error) = copy.await {
                if Error::unique_violation(&error).is_some() {
                    return Ok(Err(LostRace(error)));
                }
                return Err(error.into());
            }
        }
        let updated = transaction
            .execute(
                "UPDATE orders.imports SET orders_imported = orders_imported + $2, \
                     events_imported = events_imported + $3, batches = batches + 1, \
                     orders_read = GREATEST(orders_read, $4), \
                     orders_rejected = GREATEST(orders_rejected, $5), updated_at = now() \
                 WHERE name = $1",
                &[
                    &name,
                    &count(outcome.streams_appended),
                    &count(outcome.events_appended),
                    &count(progress.orders_read),
                    &count(progress.orders_rejected),
                ],
            )
            .await?;
        if updated != 1 {
            return Err(Error::InvalidInput(format!(
                "no import named {name:?} began (import_begin first)"
            )));
        }
        if !outcome.streams_diverged.is_empty() {
            let left_alone: Vec<Uuid> =
                outcome.streams_diverged.iter().map(|(id, _)| *id).collect();
            transaction
                .execute(LEFT_ALONE_SQL, &[&name, &left_alone])
                .await?;
        }
        if !new.is_empty() {
            transaction
                .execute("SELECT pg_notify($1, '')", &[&crate::store::NOTIFY_CHANNEL])
                .await?;
        }
        transaction.commit().await?;
        Ok(Ok(outcome))
    }
}

/// A batch whose COPY hit a unique index: another run appended one of its streams first, or
/// an event id is in the log already.
struct LostRace(tokio_postgres::Error);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_count_from_the_postgres_epoch() {
        let epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_SECS);
        assert_eq!(pg_micros(epoch), 0);
        assert_eq!(
            pg_micros(epoch + Duration::from_micros(1_500_000)),
            1_500_000
        );
        assert_eq!(pg_micros(epoch - Duration::from_secs(1)), -1_000_000);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("legacy-2026.12").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("Legacy").is_err());
        assert!(check_name("_x").is_err());
        assert!(check_name(&"a".repeat(101)).is_err());
    }

    fn told(events: usize) -> ImportedStream {
        ImportedStream {
            stream_id: Uuid::from_u128(7),
            category: "order".into(),
            imported_from: "legacy:7".into(),
            correlation_id: None,
            events: (1..=events as u128)
                .map(|v| ImportedEvent {
                    event_id: Uuid::from_u128(700 + v),
                    event_type: "OrderNoted".into(),
                    schema_version: 1,
                    payload_json: format!("{{\"n\": {v}}}"),
                    recorded_at: UNIX_EPOCH + Duration::from_secs(v as u64),
                })
                .collect(),
        }
    }

    fn logged(stream: &ImportedStream, events: usize) -> Vec<Logged> {
        stream.events[..events]
            .iter()
            .enumerate()
            .map(|(index, e)| Logged {
                version: index as i64 + 1,
                event_type: e.event_type.to_string(),
                schema_version: e.schema_version as i16,
                payload: serde_json::from_str(&e.payload_json).unwrap(),
                imported_from: Some(stream.imported_from.clone()),
                event_id: e.event_id,
                recorded_at: e.recorded_at,
            })
            .collect()
    }

    fn none(_: Uuid, _: u64, _: Uuid, _: Uuid) -> bool {
        false
    }

    /// Recognizes `900 + version` as an earlier id of every event of stream 7.
    fn earlier(stream: Uuid, version: u64, _told: Uuid, logged: Uuid) -> bool {
        stream == Uuid::from_u128(7) && logged == Uuid::from_u128(900 + u128::from(version))
    }

    fn what(standing: Standing<'_>) -> String {
        match standing {
            Standing::Append(_, skip) => format!("append after {skip}"),
            Standing::Present => "present".into(),
            Standing::Diverged(_, why) => format!("diverged: {why}"),
        }
    }

    #[test]
    fn events_logged_under_ids_the_caller_derived_before_stand_for_the_told_ones() {
        let stream = told(3);
        let same = logged(&stream, 3);
        assert_eq!(what(standing(&stream, &same, none).unwrap()), "present");
        // The log holds the earlier ids: present, or the rest appended, with the predicate;
        // without it, diverged (as before an importer could say so).
        let mut old = logged(&stream, 3);
        for (index, event) in old.iter_mut().enumerate() {
            event.event_id = Uuid::from_u128(901 + index as u128);
        }
        assert_eq!(what(standing(&stream, &old, earlier).unwrap()), "present");
        assert_eq!(
            what(standing(&stream, &old[..2], earlier).unwrap()),
            "append after 2"
        );
        assert!(what(standing(&stream, &old, none).unwrap()).starts_with("diverged"));
        // An id the predicate does not recognize for that version, or an earlier id with
        // another payload or time, is still a changed past.
        let mut swapped = old.clone();
        swapped[1].event_id = Uuid::from_u128(903);
        assert!(
            what(standing(&stream, &swapped, earlier).unwrap())
                .contains("its imported event 2 (OrderNoted) is not what")
        );
        let mut changed = old.clone();
        changed[2].payload = serde_json::json!({"n": 4});
        assert!(
            what(standing(&stream, &changed, earlier).unwrap())
                .contains("its imported event 3 (OrderNoted) is not what")
        );
        let mut moved = old;
        moved[0].recorded_at += Duration::from_secs(1);
        assert!(
            what(standing(&stream, &moved, earlier).unwrap())
                .contains("its imported event 1 (OrderNoted) is not what")
        );
    }

    #[test]
    fn the_copy_stream_is_framed() {
        let stream = ImportedStream {
            stream_id: Uuid::nil(),
            category: "order".into(),
            imported_from: "legacy:1".into(),
            correlation_id: None,
            events: vec![ImportedEvent {
                event_id: Uuid::nil(),
                event_type: "OrderPlaced".into(),
                schema_version: 3,
                payload_json: "{}".into(),
                recorded_at: UNIX_EPOCH,
            }],
        };
        let rows = copy_rows(&[(&stream, 0)]);
        assert!(rows.starts_with(b"PGCOPY\n\xff\r\n\0"));
        assert!(rows.ends_with(&[0xff, 0xff]));
        // header 19 + field count 2 + 10 length words + data + trailer 2
        let data = 16 + 8 + 16 + "OrderPlaced".len() + 2 + 3 + 8 + "order".len() + 8;
        assert_eq!(rows.len(), 19 + 2 + 10 * 4 + data + 2);
    }
}

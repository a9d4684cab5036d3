//! Events as the store writes and reads them.

use std::time::SystemTime;

use order_domain::es::{EventEnvelope, EventSchema, Metadata};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::Error;
use crate::xid::{Cursor, Xid8};

/// Most events one append may carry.
pub const MAX_EVENTS_PER_APPEND: usize = 100;
/// Largest JSON payload of one event, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Largest sum of payloads of one append, in bytes.
pub const MAX_APPEND_BYTES: usize = 1024 * 1024;
/// Longest event type name.
pub const MAX_EVENT_TYPE_LEN: usize = 100;
/// Longest category (stream type, the aggregate's name).
pub const MAX_CATEGORY_LEN: usize = 63;

/// Check a category (the type of a stream, e.g. an aggregate's `CATEGORY`): 1 to
/// [`MAX_CATEGORY_LEN`] lowercase ASCII letters, digits or `_`, starting with a letter. The
/// database checks the same.
pub fn check_category(category: &str) -> Result<(), Error> {
    let bytes = category.as_bytes();
    let valid = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.len() <= MAX_CATEGORY_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "category {category:?} must be 1-{MAX_CATEGORY_LEN} lowercase letters, digits or '_', starting with a letter"
        )))
    }
}

/// An event about to be appended: its id, type, schema version and JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// A unique id (UUID v7 from [`NewEvent::encode`], or a command's event id from
    /// [`NewEvent::encode_for_command`]).
    pub event_id: Uuid,
    /// The event's type name.
    pub event_type: String,
    /// The schema version of its payload.
    pub schema_version: u16,
    /// The payload as JSON text.
    pub payload: String,
}

impl NewEvent {
    /// Encode a domain event with a fresh, time-ordered event id (UUID v7, so that the
    /// unique index on event ids grows at its right edge).
    pub fn encode<E: EventSchema>(event: &E) -> Result<Self, Error> {
        Self::with_id(event, Uuid::now_v7())
    }

    /// Encode the `index`-th event (from 0) of command `command_id`, appended at `unix_millis`:
    /// its id is [`order_domain::event_id::command_event_id`], time-ordered like a v7 and of an
    /// identity the same command applied again (after a restore) gives again. The command
    /// handler encodes every command's events so.
    pub fn encode_for_command<E: EventSchema>(
        event: &E,
        command_id: Uuid,
        index: u32,
        unix_millis: u64,
    ) -> Result<Self, Error> {
        Self::with_id(
            event,
            order_domain::event_id::command_event_id(command_id, index, unix_millis),
        )
    }

    fn with_id<E: EventSchema>(event: &E, event_id: Uuid) -> Result<Self, Error> {
        Ok(Self {
            event_id,
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            payload: event.encode_json()?,
        })
    }
}

/// An event read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Position in the global log (unique, increasing in insertion order, may have gaps).
    pub global_position: u64,
    /// The writing transaction's id (the first half of the gap-safe order).
    pub transaction_id: Xid8,
    /// The stream it belongs to.
    pub stream_id: Uuid,
    /// Its 1-based version within the stream.
    pub stream_version: u64,
    /// Its unique id.
    pub event_id: Uuid,
    /// Its type name.
    pub event_type: String,
    /// The schema version of `payload`.
    pub schema_version: u16,
    /// The payload as stored (decode it with [`RecordedEvent::decode`]).
    pub payload: serde_json::Value,
    /// Correlation, causation, trace context, command id, actor.
    pub metadata: Metadata,
    /// When it was recorded (the writing transaction's time).
    pub recorded_at: SystemTime,
    /// The stream's type (its aggregate's category, e.g. `order`).
    pub category: String,
    /// The legacy record an imported event tells (`<source>:<legacy order id>`), or `None` for
    /// an event written by a command. Imported events are history: projections fold them,
    /// side-effecting sinks (the SQS publisher) skip them. See [`crate::import`].
    pub imported_from: Option<String>,
}

/// The columns every read selects, in the order [`RecordedEvent::from_row`] expects.
pub(crate) const EVENT_COLUMNS: &str = "global_position, transaction_id, stream_id, \
    stream_version, event_id, event_type, schema_version, payload, command_id, correlation_id, \
    causation_id, traceparent, tracestate, actor, recorded_at, category, imported_from";

impl RecordedEvent {
    /// A read row as an event. A payload no `serde_json` value holds (a number past f64,
    /// written before appends refused them, or by hand) is [`Error::Decode`] naming the
    /// event: the same row fails every time, so it is no connection trouble to retry.
    pub(crate) fn from_row(row: &Row) -> Result<Self, Error> {
        let global_position = row.try_get::<_, i64>(0)? as u64;
        let event_type: String = row.try_get(5)?;
        let payload = row
            .try_get(7)
            .map_err(|error: tokio_postgres::Error| Error::Decode {
                global_position,
                source: order_domain::upcast::DecodeError::Payload {
                    event_type: event_type.clone(),
                    reason: std::error::Error::source(&error)
                        .map_or_else(|| error.to_string(), ToString::to_string),
                },
            })?;
        Ok(Self {
            global_position,
            transaction_id: row.try_get(1)?,
            stream_id: row.try_get(2)?,
            stream_version: row.try_get::<_, i64>(3)? as u64,
            event_id: row.try_get(4)?,
            event_type,
            schema_version: row.try_get::<_, i16>(6)? as u16,
            payload,
            metadata: Metadata {
                command_id: row.try_get(8)?,
                correlation_id: row.try_get(9)?,
                causation_id: row.try_get(10)?,
                traceparent: row.try_get(11)?,
                tracestate: row.try_get(12)?,
                actor: row.try_get(13)?,
            },
            recorded_at: row.try_get(14)?,
            category: row.try_get(15)?,
            imported_from: row.try_get(16)?,
        })
    }

    /// Where this event sits in the gap-safe order.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            transaction_id: self.transaction_id,
            global_position: self.global_position,
        }
    }

    /// The domain event, upcast from its stored version.
    pub fn decode<E: EventSchema>(&self) -> Result<EventEnvelope<E>, Error> {
        let event = E::decode(&self.event_type, self.schema_version, self.payload.clone())
            .map_err(|source| Error::Decode {
                global_position: self.global_position,
                source,
            })?;
        Ok(EventEnvelope {
            event_id: self.event_id,
            stream_id: self.stream_id,
            stream_version: self.stream_version,
            global_position: self.global_position,
            metadata: self.metadata.clone(),
            event,
        })
    }
}

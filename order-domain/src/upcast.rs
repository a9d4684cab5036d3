//! Schema evolution of stored events: a chain of upcasters keyed by (event type, version).
//!
//! Events are written at their current schema version and never rewritten. Reading an older
//! version runs every upcaster from that version up to the current one, each a pure function
//! from one JSON payload shape to the next.

use serde_json::Value;

/// One step of schema evolution: turns a payload of `event_type` at `from_version` into the
/// payload at `from_version + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    /// The event type it applies to.
    pub event_type: &'static str,
    /// The version it reads (it writes `from_version + 1`).
    pub from_version: u16,
    /// The conversion; `Err` names what is wrong with the payload.
    pub upcast: fn(Value) -> Result<Value, String>,
}

/// Every upcaster of one event family plus the current version of each type.
#[derive(Debug, Clone, Copy)]
pub struct UpcasterChain {
    upcasters: &'static [Upcaster],
}

impl UpcasterChain {
    /// A chain of `upcasters`.
    pub const fn new(upcasters: &'static [Upcaster]) -> Self {
        Self { upcasters }
    }

    /// Bring `payload` from `version` to `current`. Version 0, a version above `current`, or a
    /// missing step are errors: nothing is guessed.
    pub fn upcast(
        &self,
        event_type: &str,
        version: u16,
        current: u16,
        mut payload: Value,
    ) -> Result<Value, DecodeError> {
        if version == 0 || version > current {
            return Err(DecodeError::UnsupportedVersion {
                event_type: event_type.to_owned(),
                version,
                current,
            });
        }
        for from in version..current {
            let step = self
                .upcasters
                .iter()
                .find(|u| u.event_type == event_type && u.from_version == from)
                .ok_or_else(|| DecodeError::UnsupportedVersion {
                    event_type: event_type.to_owned(),
                    version,
                    current,
                })?;
            payload = (step.upcast)(payload).map_err(|reason| DecodeError::Upcast {
                event_type: event_type.to_owned(),
                from_version: from,
                reason,
            })?;
        }
        Ok(payload)
    }

    /// The upcasters in this chain (for tests that check every step has a fixture).
    pub fn steps(&self) -> &'static [Upcaster] {
        self.upcasters
    }
}

/// Why a stored event could not be turned back into a domain event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No event type of that name.
    #[error("unknown event type {event_type:?}")]
    UnknownType {
        /// The stored type name.
        event_type: String,
    },
    /// A schema version this code cannot read.
    #[error("event type {event_type} has no schema version {version} (current is {current})")]
    UnsupportedVersion {
        /// The stored type name.
        event_type: String,
        /// The stored version.
        version: u16,
        /// The version this code writes.
        current: u16,
    },
    /// An upcaster refused the payload.
    #[error("upcasting {event_type} from version {from_version} failed: {reason}")]
    Upcast {
        /// The stored type name.
        event_type: String,
        /// The version the failing step reads.
        from_version: u16,
        /// Why.
        reason: String,
    },
    /// The (upcast) payload does not fit the event's schema.
    #[error("payload of {event_type} does not match its schema: {reason}")]
    Payload {
        /// The stored type name.
        event_type: String,
        /// Why.
        reason: String,
    },
}

/// Why an event could not be serialized (only possible for a defect in the schema types).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event_type} could not be encoded: {reason}")]
pub struct EncodeError {
    /// The event's type.
    pub event_type: &'static str,
    /// Why.
    pub reason: String,
}

/// Helpers for writing upcasters over JSON objects.
pub mod json {
    use serde_json::{Map, Value};

    /// The payload as an object, or an error naming what it was instead.
    pub fn object(payload: Value) -> Result<Map<String, Value>, String> {
        match payload {
            Value::Object(map) => Ok(map),
            other => Err(format!("expected a JSON object, found {}", kind(&other))),
        }
    }

    /// Rename a required field.
    pub fn rename(map: &mut Map<String, Value>, from: &str, to: &str) -> Result<(), String> {
        let value = map
            .remove(from)
            .ok_or_else(|| format!("missing field {from:?}"))?;
        map.insert(to.to_owned(), value);
        Ok(())
    }

    fn kind(value: &Value) -> &'static str {
        match value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

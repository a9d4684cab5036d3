//! The SQS message contract (API.md, "SQS messages"; in full, for a consuming team:
//! docs/messages.md), shared by the publisher (order-projector) and the consumer
//! (order-worker), so that neither depends on the other.
//!
//! Body: a CloudEvents 1.0 JSON envelope (`specversion`, `id` = event id, `source`, `type` =
//! event type, `subject` = order id, `time`, `datacontenttype`, `data`) with the extension
//! attributes `globalposition`, `streamversion`, `schemaversion`, `correlationid`,
//! `traceparent` and `tracestate`. Message attributes: `correlation_id`, `traceparent`, `event_type`. FIFO:
//! group id = order id, deduplication id = event id.

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The CloudEvents `source` of every order event.
pub const SOURCE: &str = "urn:order-ledger:orders";
/// Message attribute names.
pub const ATTR_CORRELATION_ID: &str = "correlation_id";
/// Message attribute: the W3C `traceparent` of the producing request.
pub const ATTR_TRACEPARENT: &str = "traceparent";
/// CloudEvents extension (in [`CloudEvent::extensions`]): the W3C `tracestate` that goes with
/// the `traceparent` (vendors' trace data), when the producing request had one.
pub const EXT_TRACESTATE: &str = "tracestate";
/// Message attribute: the event's type (e.g. `OrderPlaced`).
pub const ATTR_EVENT_TYPE: &str = "event_type";
/// The largest body the consumer accepts (SQS allows 256 KiB per message).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// An order event as a CloudEvents 1.0 JSON envelope.
///
/// Attributes it does not know (another CloudEvents attribute such as `dataschema`, or an
/// extension a newer publisher adds) are kept in [`extensions`](Self::extensions), not
/// refused: a consumer deployed before its publisher must not send every message to the
/// dead-letter queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// The event's id (also the message's deduplication id).
    pub id: Uuid,
    /// [`SOURCE`].
    pub source: String,
    /// The event's type, e.g. `OrderPlaced` (`type` in JSON).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The order's id.
    pub subject: Uuid,
    /// When the event was recorded (RFC 3339).
    pub time: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// Extension: the event's position in the global log. A CloudEvents Integer (a JSON
    /// number) up to 2,147,483,647, the largest the type holds; beyond, a String of its
    /// decimal digits. Either form is read.
    #[serde(with = "integer")]
    pub globalposition: u64,
    /// Extension: the event's version within its order (written as `globalposition` is).
    #[serde(with = "integer")]
    pub streamversion: u64,
    /// Extension: the schema version of `data`.
    pub schemaversion: u16,
    /// Extension: the correlation id of the request that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<String>,
    /// Extension: the W3C `traceparent` to continue the trace with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The event's payload, at its current schema version (a JSON object).
    pub data: serde_json::Value,
    /// Any other attribute, by name (CloudEvents names: `a-z 0-9`; values: strings, numbers or
    /// booleans; one whose value is `null` is unset, as CloudEvents JSON says, and not kept).
    /// The projector sends [`EXT_TRACESTATE`] here, with a `traceparent`, when the event has one.
    #[serde(flatten)]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

/// A CloudEvents extension that counts: an Integer (a JSON number, at most `i32::MAX`, as the
/// type's range is 32 bits) while it fits, else a String of decimal digits, as the spec would
/// have an attribute of another type. A strict CloudEvents SDK then reads every message, the
/// 2,147,483,648th event's included.
mod integer {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        if *value <= i32::MAX as u64 {
            serializer.serialize_u64(*value)
        } else {
            serializer.collect_str(value)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(u64),
            Text(String),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(n) => Ok(n),
            Either::Text(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
                text.parse().map_err(D::Error::custom)
            }
            Either::Text(text) => Err(D::Error::custom(format!(
                "{text:?} is not a count (an integer, or a string of decimal digits)"
            ))),
        }
    }
}

/// Why a message body is not an order event envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Larger than [`MAX_BODY_BYTES`] (its size).
    #[error("message body of {0} bytes exceeds {MAX_BODY_BYTES}")]
    TooLarge(usize),
    /// Not JSON of the envelope's shape (why).
    #[error("message body is not a CloudEvents envelope: {0}")]
    Malformed(String),
    /// Another CloudEvents version.
    #[error("unsupported CloudEvents specversion {0:?}")]
    SpecVersion(String),
    /// Another source than [`SOURCE`].
    #[error("event source {0:?} is not {SOURCE}")]
    Source(String),
    /// `time` is not RFC 3339.
    #[error("event time {0:?} is not RFC 3339")]
    Time(String),
    /// An attribute holds a value no order event has (the attribute, why).
    #[error("envelope attribute {0}: {1}")]
    Attribute(String, String),
}

/// The fields of an envelope the publisher provides.
#[derive(Debug, Clone)]
pub struct EnvelopeInput<'a> {
    /// The event's id.
    pub event_id: Uuid,
    /// The event's type.
    pub event_type: &'a str,
    /// The order's id (the stream).
    pub order_id: Uuid,
    /// When it was recorded.
    pub recorded_at: SystemTime,
    /// Its position in the global log.
    pub global_position: u64,
    /// Its version within the order.
    pub stream_version: u64,
    /// The schema version of `data`.
    pub schema_version: u16,
    /// The correlation id, if any.
    pub correlation_id: Option<&'a str>,
    /// The trace context to carry on, if any.
    pub traceparent: Option<&'a str>,
    /// The payload.
    pub data: serde_json::Value,
}

impl CloudEvent {
    /// The W3C `tracestate` carried with the `traceparent` ([`EXT_TRACESTATE`]), when it is a
    /// string.
    pub fn tracestate(&self) -> Option<&str> {
        self.extensions
            .get(EXT_TRACESTATE)
            .and_then(serde_json::Value::as_str)
            .filter(|t| !t.is_empty())
    }

    /// The envelope of one event. Never panics: a `recorded_at` outside what RFC 3339 can
    /// write (years 0000-9999) is written as the nearest end of that range.
    pub fn new(input: EnvelopeInput<'_>) -> Self {
        Self {
            specversion: "1.0".to_owned(),
            id: input.event_id,
            source: SOURCE.to_owned(),
            event_type: input.event_type.to_owned(),
            subject: input.order_id,
            time: rfc3339_micros(input.recorded_at),
            datacontenttype: "application/json".to_owned(),
            globalposition: input.global_position,
            streamversion: input.stream_version,
            schemaversion: input.schema_version,
            correlationid: input.correlation_id.map(str::to_owned),
            traceparent: input.traceparent.map(str::to_owned),
            data: input.data,
            extensions: BTreeMap::new(),
        }
    }

    /// The JSON body, made of characters SQS accepts whatever the event holds (see
    /// [`sqs_safe`]).
    pub fn to_body(&self) -> String {
        // Serializing these plain types cannot fail.
        sqs_safe(&serde_json::to_string(self).unwrap_or_default())
    }

    /// Parse and check a message body. Anything an order event cannot hold is an error,
    /// never a guess: another `specversion` or `source`; an empty `type`; a nil `id` or
    /// `subject`; a `time` that is not RFC 3339 (any offset); a `datacontenttype` other than
    /// `application/json` (parameters such as `; charset=utf-8` allowed); a `globalposition`,
    /// `streamversion` or `schemaversion` of 0; `data` that is not a JSON object; an unknown
    /// attribute whose name or value CloudEvents does not allow (one whose value is `null` is
    /// unset, as CloudEvents JSON says). Unknown attributes that it does allow are kept in
    /// [`extensions`](Self::extensions).
    pub fn parse(body: &str) -> Result<Self, EnvelopeError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(EnvelopeError::TooLarge(body.len()));
        }
        let mut event: CloudEvent =
            serde_json::from_str(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        // CloudEvents JSON: an attribute whose value is null is not set.
        event.extensions.retain(|_, value| !value.is_null());
        if event.specversion != "1.0" {
            return Err(EnvelopeError::SpecVersion(event.specversion));
        }
        if event.source != SOURCE {
            return Err(EnvelopeError::Source(event.source));
        }
        if time::OffsetDateTime::parse(&event.time, &time::format_description::well_known::Rfc3339)
            .is_err()
        {
            return Err(EnvelopeError::Time(event.time));
        }
        let invalid = |attribute: &str, why: &str| {
            Err(EnvelopeError::Attribute(
                attribute.to_owned(),
                why.to_owned(),
            ))
        };
        if event.event_type.trim().is_empty() {
            return invalid("type", "empty");
        }
        if event.id.is_nil() {
            return invalid("id", "the nil UUID is no event's id");
        }
        if event.subject.is_nil() {
            return invalid("subject", "the nil UUID is no order's id");
        }
        let media_type = event.datacontenttype.split(';').next().unwrap_or_default();
        if !media_type.trim().eq_ignore_ascii_case("application/json") {
            return invalid("datacontenttype", "not application/json");
        }
        for (attribute, value) in [
            ("globalposition", event.globalposition),
            ("streamversion", event.streamversion),
            ("schemaversion", u64::from(event.schemaversion)),
        ] {
            if value == 0 {
                return invalid(attribute, "0 (they start at 1)");
            }
        }
        if !event.data.is_object() {
            return invalid("data", "not a JSON object");
        }
        for (name, value) in &event.extensions {
            // The spec discourages names over 20 characters but allows them.
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(EnvelopeError::Attribute(
                    format!("{name:?}"),
                    "not a CloudEvents attribute name (a-z 0-9)".to_owned(),
                ));
            }
            if !(value.is_string() || value.is_number() || value.is_boolean()) {
                return invalid(name, "not a string, number or boolean");
            }
        }
        Ok(event)
    }
}

/// `time` as RFC 3339 in UTC with microseconds (`2026-11-21T22:26:40.123456Z`), clamped to the
/// years RFC 3339 can write.
fn rfc3339_micros(time: SystemTime) -> String {
    use time::{Duration, OffsetDateTime, macros::datetime};
    const FIRST: OffsetDateTime = datetime!(0000-01-01 00:00:00 UTC);
    const LAST: OffsetDateTime = datetime!(9999-12-31 23:59:59.999999 UTC);
    let micros = |d: std::time::Duration| {
        Duration::microseconds(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    };
    let at = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => OffsetDateTime::UNIX_EPOCH.checked_add(micros(after)),
        Err(before) => OffsetDateTime::UNIX_EPOCH.checked_sub(micros(before.duration())),
    };
    let at = match at {
        Some(at) => at.clamp(FIRST, LAST),
        None if time > SystemTime::UNIX_EPOCH => LAST,
        None => FIRST,
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// Whether SQS carries `c` in a message body as it is. SQS accepts `#x9 | #xA | #xD |
/// #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`; emulators are stricter about the last range,
/// so only the Basic Multilingual Plane part is passed through.
fn sqs_plain(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
}

/// Whether every character of `body` is one SQS carries as it is (what [`sqs_safe`] makes).
pub fn sqs_accepts(body: &str) -> bool {
    body.chars().all(sqs_plain)
}

/// Rewrite a JSON text so that every character outside what SQS accepts verbatim
/// (`sqs_plain`) is a `\uXXXX` escape (a surrogate pair above U+FFFF). Such characters can
/// only occur inside JSON strings (everything structural is ASCII), where the escape means the
/// very same character: a JSON parser returns the original text. Without this, an accepted
/// order naming its recipient with an emoji, or holding U+FFFF, could never be published.
pub fn sqs_safe(json: &str) -> String {
    if json.chars().all(sqs_plain) {
        return json.to_owned();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if sqs_plain(c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bodies_hold_only_characters_sqs_accepts_and_parse_back_exactly() {
        let hostile = "emoji \u{1f4a5} \u{1f469}\u{200d}\u{1f467} math \u{1d573} \
                       nonchars \u{fffe}\u{ffff} private \u{e000}\u{10ffff} \
                       bom \u{feff} rtl \u{202e} quote \" backslash \\ u-escape \\u0041";
        let mut event = sample();
        event.data = serde_json::json!({ "recipient": hostile, hostile: [hostile] });
        let body = event.to_body();
        assert!(sqs_accepts(&body), "{body}");
        assert!(body.contains("\\ud83d\\udca5"), "{body}");
        let parsed = CloudEvent::parse(&body).unwrap();
        assert_eq!(parsed.data["recipient"], hostile);
        assert_eq!(parsed.data[hostile][0], hostile);
        assert_eq!(parsed, event);
    }

    #[test]
    fn plain_bodies_are_left_alone() {
        let event = sample();
        assert_eq!(event.to_body(), serde_json::to_string(&event).unwrap());
        assert_eq!(sqs_safe("{\"a\":\"caf\u{e9}\"}"), "{\"a\":\"caf\u{e9}\"}");
    }

    fn sample() -> CloudEvent {
        CloudEvent::new(sample_input())
    }

    fn sample_input() -> EnvelopeInput<'static> {
        EnvelopeInput {
            event_id: Uuid::from_u128(1),
            event_type: "OrderPlaced",
            order_id: Uuid::from_u128(2),
            recorded_at: SystemTime::UNIX_EPOCH
                + std::time::Duration::from_micros(1_795_300_000_123_456),
            global_position: 42,
            stream_version: 1,
            schema_version: 3,
            correlation_id: Some("req-1"),
            traceparent: None,
            data: serde_json::json!({"a": 1}),
        }
    }

    #[test]
    fn envelopes_round_trip_through_their_body() {
        let event = sample();
        let body = event.to_body();
        assert!(body.contains(r#""specversion":"1.0""#));
        assert!(body.contains(r#""type":"OrderPlaced""#));
        assert!(
            body.contains(r#""time":"2026-11-21T22:26:40.123456Z""#),
            "{body}"
        );
        assert!(
            !body.contains("traceparent"),
            "absent extensions are omitted"
        );
        assert_eq!(CloudEvent::parse(&body).unwrap(), event);
    }

    /// Positions past a CloudEvents Integer's 32 bits are written as strings (a strict SDK
    /// refuses such a number), and either form is read.
    #[test]
    fn counts_past_a_cloudevents_integer_are_strings_and_both_forms_are_read() {
        for (position, written) in [
            (42, "42".to_owned()),
            (2_147_483_647, "2147483647".to_owned()),
            (2_147_483_648, r#""2147483648""#.to_owned()),
            (u64::MAX, format!(r#""{}""#, u64::MAX)),
        ] {
            let event = CloudEvent::new(EnvelopeInput {
                global_position: position,
                stream_version: position,
                ..sample_input()
            });
            let body = event.to_body();
            assert!(
                body.contains(&format!(r#""globalposition":{written}"#))
                    && body.contains(&format!(r#""streamversion":{written}"#)),
                "{body}"
            );
            assert_eq!(CloudEvent::parse(&body).unwrap(), event);
        }
        let good = sample().to_body();
        let quoted = good.replace(r#""globalposition":42"#, r#""globalposition":"42""#);
        assert_eq!(CloudEvent::parse(&quoted).unwrap().globalposition, 42);
        for bad in [
            r#""""#, r#""4 2""#, r#""-42""#, r#""4e1""#, "-1", "4.5", "true",
        ] {
            let body = good.replace(
                r#""globalposition":42"#,
                &format!(r#""globalposition":{bad}"#),
            );
            assert!(
                matches!(CloudEvent::parse(&body), Err(EnvelopeError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn attributes_a_newer_publisher_adds_are_kept_not_refused() {
        let good = sample().to_body();
        let body = good.replacen(
            '{',
            r#"{"dataschema":"urn:schema:order-placed:3","priority":2,"replayed":true,"#,
            1,
        );
        let event = CloudEvent::parse(&body).unwrap();
        assert_eq!(event.extensions["dataschema"], "urn:schema:order-placed:3");
        assert_eq!(event.extensions["priority"], 2);
        assert_eq!(event.extensions["replayed"], true);
        assert_eq!(CloudEvent::parse(&event.to_body()).unwrap(), event);
        let mut plain = event;
        plain.extensions.clear();
        assert_eq!(plain, sample());
    }

    /// CloudEvents JSON (1.0.2, 2.2): an attribute whose value is `null` is unset; a name over
    /// 20 characters is only discouraged. Neither may stop a saga.
    #[test]
    fn null_attributes_are_unset_and_long_names_are_kept() {
        let good = sample().to_body();
        let body = good.replacen('{', r#"{"dataschema":null,"comexampleextension12":"v","#, 1);
        let event = CloudEvent::parse(&body).unwrap();
        assert!(!event.extensions.contains_key("dataschema"), "{event:?}");
        assert_eq!(event.extensions["comexampleextension12"], "v");
        assert_eq!(CloudEvent::parse(&event.to_body()).unwrap(), event);
        // Names are still only a-z and 0-9.
        for bad in [r#""Upper":"v""#, r#""with-dash":"v""#, r#""":"v""#] {
            let body = good.replacen('{', &format!("{{{bad},"), 1);
            assert!(
                matches!(CloudEvent::parse(&body), Err(EnvelopeError::Attribute(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn times_with_an_offset_and_content_type_parameters_are_read() {
        let good = sample().to_body();
        for (from, to) in [
            (
                "2026-11-21T22:26:40.123456Z",
                "2026-11-21T23:26:40.123456+01:00",
            ),
            ("2026-11-21T22:26:40.123456Z", "2026-11-21T22:26:40Z"),
            (
                r#""application/json""#,
                r#""application/json; charset=utf-8""#,
            ),
        ] {
            assert!(CloudEvent::parse(&good.replace(from, to)).is_ok(), "{to}");
        }
    }

    #[test]
    fn any_recorded_time_makes_an_envelope_that_parses() {
        use std::time::Duration;
        let epoch = SystemTime::UNIX_EPOCH;
        for (at, written) in [
            (epoch, "1970-01-01T00:00:00.000000Z"),
            (
                epoch - Duration::from_micros(1_500_000),
                "1969-12-31T23:59:58.500000Z",
            ),
            (
                epoch - Duration::from_secs(100_000 * 365 * 86_400),
                "0000-01-01T00:00:00.000000Z",
            ),
            (
                epoch + Duration::from_secs(20_000 * 365 * 86_400),
                "9999-12-31T23:59:59.999999Z",
            ),
        ] {
            let mut input = sample_input();
            input.recorded_at = at;
            let event = CloudEvent::new(input);
            assert_eq!(event.time, written);
            assert_eq!(CloudEvent::parse(&event.to_body()).unwrap(), event);
        }
    }

    #[test]
    fn foreign_or_broken_bodies_are_refused() {
        let good = sample().to_body();
        for (name, body) in [
            ("not json", "hello".to_owned()),
            ("empty object", "{}".to_owned()),
            (
                "other spec",
                good.replace(r#""specversion":"1.0""#, r#""specversion":"0.3""#),
            ),
            ("other source", good.replace(SOURCE, "urn:elsewhere")),
            (
                "bad time",
                good.replace("2026-11-21T22:26:40.123456Z", "yesterday"),
            ),
            (
                "bad extension name",
                good.replacen('{', r#"{"Extra-Field":1,"#, 1),
            ),
            (
                "object extension",
                good.replacen('{', r#"{"extra":{"a":1},"#, 1),
            ),
            (
                "other content type",
                good.replace(r#""application/json""#, r#""text/plain""#),
            ),
            (
                "empty type",
                good.replace(r#""type":"OrderPlaced""#, r#""type":" ""#),
            ),
            (
                "nil id",
                good.replace(
                    "00000000-0000-0000-0000-000000000001",
                    "00000000-0000-0000-0000-000000000000",
                ),
            ),
            (
                "nil subject",
                good.replace(
                    "00000000-0000-0000-0000-000000000002",
                    "00000000-0000-0000-0000-000000000000",
                ),
            ),
            (
                "stream version 0",
                good.replace(r#""streamversion":1"#, r#""streamversion":0"#),
            ),
            (
                "global position 0",
                good.replace(r#""globalposition":42"#, r#""globalposition":0"#),
            ),
            (
                "schema version 0",
                good.replace(r#""schemaversion":3"#, r#""schemaversion":0"#),
            ),
            (
                "null data",
                good.replace(r#""data":{"a":1}"#, r#""data":null"#),
            ),
            (
                "array data",
                good.replace(r#""data":{"a":1}"#, r#""data":[1]"#),
            ),
            ("huge", format!("{good}{}", " ".repeat(MAX_BODY_BYTES))),
        ] {
            assert!(CloudEvent::parse(&body).is_err(), "{name} was accepted");
        }
    }
}

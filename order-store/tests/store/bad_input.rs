//! Bad appends: a clear error, nothing written.

use order_domain::es::Metadata;
use order_store::{
    AppendRequest, Error, ExpectedVersion, MAX_EVENTS_PER_APPEND, MAX_PAYLOAD_BYTES, NewEvent,
};
use uuid::Uuid;

use crate::support::*;

#[tokio::test]
async fn oversized_or_malformed_appends_are_refused_and_write_nothing() {
    let t = test_store().await;
    let big = NewEvent {
        payload: serde_json::json!({ "blob": "x".repeat(MAX_PAYLOAD_BYTES) }).to_string(),
        ..event("big")
    };
    let many: Vec<NewEvent> = (0..=MAX_EVENTS_PER_APPEND)
        .map(|i| event(&i.to_string()))
        .collect();
    let near_limit = NewEvent {
        payload: serde_json::json!({ "blob": "y".repeat(MAX_PAYLOAD_BYTES - 100) }).to_string(),
        ..event("near")
    };
    let too_much_in_total: Vec<NewEvent> = (0..17)
        .map(|_| NewEvent {
            event_id: Uuid::now_v7(),
            ..near_limit.clone()
        })
        .collect();
    let cases: Vec<(&str, Vec<NewEvent>, Metadata)> = vec![
        ("no events", vec![], metadata()),
        ("payload over the limit", vec![big], metadata()),
        ("too many events", many, metadata()),
        (
            "payloads over the total limit",
            too_much_in_total,
            metadata(),
        ),
        (
            "payload not JSON",
            vec![NewEvent {
                payload: "{not json".into(),
                ..event("j")
            }],
            metadata(),
        ),
        // Valid JSON that PostgreSQL's jsonb refuses (SQLSTATE class 22): refused up front,
        // as bad input, not as a database failure.
        (
            "payload with \\u0000 in a string",
            vec![payload(r#"{"note":"a\u0000b"}"#)],
            metadata(),
        ),
        (
            "payload with \\u0000 in a key",
            vec![payload(r#"{"\u0000":1}"#)],
            metadata(),
        ),
        (
            "payload with a lone high surrogate",
            vec![payload(r#"{"note":"\ud800"}"#)],
            metadata(),
        ),
        (
            "payload with a lone low surrogate",
            vec![payload(r#"["\udc00x"]"#)],
            metadata(),
        ),
        (
            "payload with a number too large for numeric",
            vec![payload(r#"{"n":1e1000000}"#)],
            metadata(),
        ),
        (
            "payload with a number of 131073 digits",
            vec![payload(&format!("[1{}]", "0".repeat(131_072)))],
            metadata(),
        ),
        // jsonb would take it; the store could not read it back (numbers are read as f64).
        (
            "payload with a number the store could not read back",
            vec![payload(r#"{"n":1.7976931348623157e308}"#)],
            metadata(),
        ),
        (
            "payload with a number too small for numeric",
            vec![payload(r#"{"n":-1e-20000}"#)],
            metadata(),
        ),
        (
            "payload with a zero of too many decimals",
            vec![payload(r#"[0e-16384]"#)],
            metadata(),
        ),
        (
            "payload with 16384 decimals",
            vec![payload(&format!("[0.{}1]", "0".repeat(16_383)))],
            metadata(),
        ),
        (
            "empty event type",
            vec![NewEvent {
                event_type: String::new(),
                ..event("t")
            }],
            metadata(),
        ),
        (
            "event type with SQL",
            vec![NewEvent {
                event_type: "X'; DROP TABLE x;--".into(),
                ..event("t")
            }],
            metadata(),
        ),
        (
            "schema version zero",
            vec![NewEvent {
                schema_version: 0,
                ..event("v")
            }],
            metadata(),
        ),
        (
            "correlation id too long",
            vec![event("m")],
            Metadata {
                correlation_id: Some("c".repeat(129)),
                ..metadata()
            },
        ),
        (
            "control character in traceparent",
            vec![event("m")],
            Metadata {
                traceparent: Some("00-\n".into()),
                ..metadata()
            },
        ),
        (
            "actor too long",
            vec![event("m")],
            Metadata {
                actor: Some("a".repeat(1 << 20)),
                ..metadata()
            },
        ),
    ];
    for (name, events, metadata) in cases {
        let result = t
            .store
            .append(AppendRequest {
                stream_id: Uuid::new_v4(),
                category: "test",
                expected: ExpectedVersion::Any,
                events: &events,
                metadata: &metadata,
                idempotency: None,
            })
            .await;
        match result {
            Err(Error::InvalidInput(message)) => assert!(!message.is_empty(), "{name}"),
            other => panic!("{name}: expected InvalidInput, got {other:?}"),
        }
    }
    assert_eq!(count(&t.db, "orders.events").await, 0);
    assert_eq!(count(&t.db, "orders.commands").await, 0);
}

fn payload(json: &str) -> NewEvent {
    NewEvent {
        payload: json.to_owned(),
        ..event("p")
    }
}

/// Payloads at the limits (jsonb's decimals, f64's range) are taken, and read back.
#[tokio::test]
async fn payloads_at_the_limits_of_jsonb_are_appended() {
    let t = test_store().await;
    let cases = [
        r#"{"n":-9.999999999999999e307}"#.to_owned(),
        r#"{"n":-1e-16383}"#.to_owned(),
        r#"[0e-16383, 0.0, -0, 1E+5, 12.5e-3, 5e-324]"#.to_owned(),
        format!("[0.{}1]", "0".repeat(16_382)),
        format!("[{}]", "9".repeat(308)),
        format!("[0.{}]", "9".repeat(16_383)),
        r#"{"escaped":"\\u0000 \ud83d\ude00 \u0001","\u00e9":"\"\\"}"#.to_owned(),
    ];
    for json in cases {
        let stream = Uuid::new_v4();
        append(
            &t.store,
            stream,
            ExpectedVersion::NoStream,
            &[payload(&json)],
        )
        .await
        .unwrap_or_else(|e| panic!("{json:.60}: {e:?}"));
        // Read back (the server writes numbers its own way: 1E+5 as 100000, -0 as 0): the
        // same value.
        let read = t.store.read_stream(stream, 0).await.unwrap();
        let expected: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(
            same(&read[0].payload, &expected),
            "{json:.60}: {}",
            read[0].payload
        );
    }
}

/// Equal JSON values, numbers compared as f64.
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[tokio::test]
async fn a_reused_event_id_is_refused_and_writes_nothing() {
    let t = test_store().await;
    let first = event("first");
    append(
        &t.store,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        std::slice::from_ref(&first),
    )
    .await
    .unwrap();
    let again = NewEvent {
        event_id: first.event_id,
        ..event("second")
    };
    let result = append(
        &t.store,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        &[event("other"), again],
    )
    .await;
    // The event that collided is named (not the append's first).
    match result {
        Err(Error::DuplicateEventId { event_id }) => assert_eq!(event_id, first.event_id),
        other => panic!("expected DuplicateEventId, got {other:?}"),
    }
    assert_eq!(count(&t.db, "orders.events").await, 1);

    // One id twice in one append is the request's own fault.
    let twice = event("twice");
    let result = append(
        &t.store,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        &[twice.clone(), event("between"), twice.clone()],
    )
    .await;
    match result {
        Err(Error::InvalidInput(message)) => {
            assert!(message.contains(&twice.event_id.to_string()), "{message}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(count(&t.db, "orders.events").await, 1);
}

/// An event already in the log whose payload no reader can load (written before appends
/// refused such numbers, or by hand) is a decode error naming it, not a connection failure
/// to retry for ever.
#[tokio::test]
async fn a_stored_payload_no_reader_can_load_is_a_decode_error_naming_the_event() {
    let t = test_store().await;
    let client = t.db.connect().await;
    let position: i64 = client
        .query_one(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, category)
             VALUES ($1, 1, $2, 'TestEvent', 1, '{\"n\": 1e400}', 'test') RETURNING global_position",
            &[&Uuid::new_v4(), &Uuid::now_v7()],
        )
        .await
        .unwrap()
        .get(0);
    match t.store.read_all(order_store::Cursor::START, 10).await {
        Err(Error::Decode {
            global_position,
            source,
        }) => {
            assert_eq!(global_position, position as u64);
            assert!(source.to_string().contains("TestEvent"), "{source}");
        }
        other => panic!("expected Decode, got {other:?}"),
    }
}

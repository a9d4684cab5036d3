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
    assert!(
        matches!(result, Err(Error::DuplicateEventId { .. })),
        "{result:?}"
    );
    assert_eq!(count(&t.db, "orders.events").await, 1);
}

//! Appending and reading back: expected versions, dense versions, positions, metadata.

use order_domain::es::Metadata;
use order_store::{AppendRequest, Error, ExpectedVersion};
use uuid::Uuid;

use crate::support::*;

#[tokio::test]
async fn a_new_stream_gets_versions_from_one_and_increasing_positions() {
    let t = test_store().await;
    let stream = Uuid::new_v4();
    let first = append(
        &t.store,
        stream,
        ExpectedVersion::NoStream,
        &[event("a"), event("b")],
    )
    .await
    .unwrap();
    assert_eq!(first.stream_version, 2);
    let second = append(&t.store, stream, ExpectedVersion::Exact(2), &[event("c")])
        .await
        .unwrap();
    assert_eq!(second.stream_version, 3);
    assert!(second.global_position > first.global_position);

    let events = t.store.read_stream(stream, 0).await.unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    let labels: Vec<&str> = events
        .iter()
        .map(|e| e.payload["label"].as_str().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(labels, ["a", "b", "c"]);
    assert!(
        events
            .windows(2)
            .all(|w| w[0].global_position < w[1].global_position)
    );
    assert_eq!(events[2].global_position, second.global_position);
    assert_eq!(events[0].metadata.correlation_id.as_deref(), Some("corr-1"));

    let tail = t.store.read_stream(stream, 2).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].stream_version, 3);
}

#[tokio::test]
async fn a_stream_read_in_slices_gives_each_event_once_and_says_whether_it_exists() {
    let t = test_store().await;
    let stream = Uuid::new_v4();
    let labels: Vec<String> = (1..=7).map(|i| format!("e{i}")).collect();
    let events: Vec<_> = labels.iter().map(|l| event(l)).collect();
    append(&t.store, stream, ExpectedVersion::NoStream, &events)
        .await
        .unwrap();
    let versions = |slice: &order_store::StreamSlice| -> Vec<u64> {
        slice.events.iter().map(|e| e.stream_version).collect()
    };
    for (after, limit, expected) in [
        (0, Some(3), vec![1, 2, 3]),
        (0, Some(1), vec![1]),
        (1, Some(1), vec![2]),
        (3, Some(3), vec![4, 5, 6]),
        (6, Some(3), vec![7]),
        (0, None, vec![1, 2, 3, 4, 5, 6, 7]),
        (2, None, vec![3, 4, 5, 6, 7]),
        (0, Some(100), vec![1, 2, 3, 4, 5, 6, 7]),
        (7, Some(3), vec![]),
        (9, None, vec![]),
        (u64::MAX, Some(2), vec![]),
        (0, Some(0), vec![]),
    ] {
        let slice = t
            .store
            .read_stream_slice(stream, after, limit)
            .await
            .unwrap();
        assert_eq!(versions(&slice), expected, "after {after}, limit {limit:?}");
        assert_eq!(
            slice.category.as_deref(),
            Some("test"),
            "after {after}, limit {limit:?}: the stream exists"
        );
        let whole = t.store.read_stream(stream, after).await.unwrap();
        let prefix: Vec<_> = whole.iter().take(expected.len()).cloned().collect();
        assert_eq!(slice.events, prefix, "the same events read_stream gives");
    }
    // Slice after slice: every event once, in order.
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let slice = t
            .store
            .read_stream_slice(stream, after, Some(2))
            .await
            .unwrap();
        let Some(last) = slice.events.last() else {
            break;
        };
        after = last.stream_version;
        seen.extend(versions(&slice));
    }
    assert_eq!(seen, [1, 2, 3, 4, 5, 6, 7]);

    let none = t
        .store
        .read_stream_slice(Uuid::new_v4(), 0, Some(5))
        .await
        .unwrap();
    assert_eq!((none.events.len(), none.category), (0, None));
    let none = t
        .store
        .read_stream_slice(Uuid::new_v4(), 3, None)
        .await
        .unwrap();
    assert_eq!((none.events.len(), none.category), (0, None));
}

#[tokio::test]
async fn a_wrong_expected_version_is_reported_and_writes_nothing() {
    let t = test_store().await;
    let stream = Uuid::new_v4();
    append(&t.store, stream, ExpectedVersion::NoStream, &[event("a")])
        .await
        .unwrap();

    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(2),
        ExpectedVersion::Exact(7),
    ] {
        match append(&t.store, stream, expected, &[event("x")]).await {
            Err(Error::WrongExpectedVersion { actual: 1, .. }) => {}
            other => panic!("{expected}: expected a wrong-version error, got {other:?}"),
        }
    }
    assert_eq!(t.store.read_stream(stream, 0).await.unwrap().len(), 1);
    assert_eq!(count(&t.db, "orders.events").await, 1);
}

#[tokio::test]
async fn any_version_appends_after_whatever_is_there() {
    let t = test_store().await;
    let stream = Uuid::new_v4();
    for i in 1..=3 {
        let committed = append(&t.store, stream, ExpectedVersion::Any, &[event("any")])
            .await
            .unwrap();
        assert_eq!(committed.stream_version, i);
    }
}

#[tokio::test]
async fn metadata_is_stored_in_typed_columns_and_read_back() {
    let t = test_store().await;
    let stream = Uuid::new_v4();
    let metadata = Metadata {
        correlation_id: Some("req-42".to_owned()),
        causation_id: Some(Uuid::new_v4()),
        command_id: Some(Uuid::new_v4()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
        tracestate: Some("vendor=x".to_owned()),
        actor: Some("svc-checkout".to_owned()),
    };
    t.store
        .append(AppendRequest {
            stream_id: stream,
            category: "test",
            expected: ExpectedVersion::NoStream,
            events: &[event("m")],
            metadata: &metadata,
            idempotency: None,
        })
        .await
        .unwrap();
    let read = t.store.read_stream(stream, 0).await.unwrap();
    assert_eq!(read[0].metadata, metadata);
    let client = t.db.connect().await;
    let row = client
        .query_one("SELECT correlation_id, actor FROM orders.events", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("req-42".into(), "svc-checkout".into())
    );
}

#[tokio::test]
async fn the_log_is_append_only_for_the_application_role_and_the_owner() {
    let t = test_store().await;
    append(
        &t.store,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        &[event("kept")],
    )
    .await
    .unwrap();
    let client = t.db.connect().await;
    let owner: String = client
        .query_one("SELECT tableowner::text FROM pg_tables WHERE schemaname = 'orders' AND tablename = 'events'", &[])
        .await
        .unwrap()
        .get(0);
    for role in ["orders_app", owner.as_str()] {
        for statement in [
            "UPDATE orders.events SET payload = '{}'",
            "DELETE FROM orders.events",
            "TRUNCATE orders.events",
        ] {
            let sql = format!("BEGIN; SET LOCAL ROLE \"{role}\"; {statement}; COMMIT");
            let error = client.batch_execute(&sql).await.expect_err(&sql);
            let code = error
                .as_db_error()
                .map(|d| d.code().code().to_owned())
                .unwrap_or_default();
            assert!(
                code == order_store::sqlstate::APPEND_ONLY
                    || code == order_store::sqlstate::INSUFFICIENT_PRIVILEGE,
                "{role}: {statement}: unexpected {error:?}"
            );
            client.batch_execute("ROLLBACK").await.unwrap();
        }
    }
    assert_eq!(count(&t.db, "orders.events").await, 1, "nothing changed");
    // The owner is refused by the trigger itself, not just by missing privileges.
    let error = client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL ROLE \"{owner}\"; DELETE FROM orders.events"
        ))
        .await
        .unwrap_err();
    assert_eq!(
        error.as_db_error().unwrap().code().code(),
        order_store::sqlstate::APPEND_ONLY
    );
}

//! Command ids: a retry returns the first result and writes nothing, also concurrently.

use order_store::{AppendOutcome, AppendRequest, Error, ExpectedVersion, Idempotency};
use uuid::Uuid;

use crate::support::*;

fn request<'a>(
    stream_id: Uuid,
    expected: ExpectedVersion,
    events: &'a [order_store::NewEvent],
    metadata: &'a order_domain::es::Metadata,
    command_id: Uuid,
    fingerprint: [u8; 32],
) -> AppendRequest<'a> {
    AppendRequest {
        stream_id,
        category: "test",
        expected,
        events,
        metadata,
        idempotency: Some(Idempotency {
            command_id,
            fingerprint,
            status: "Placed",
        }),
    }
}

#[tokio::test]
async fn a_retried_command_returns_the_first_result_and_writes_nothing() {
    let t = test_store().await;
    let stream = Uuid::new_v4();
    let command = Uuid::new_v4();
    let metadata = metadata();
    let events = [event("once")];
    let first = t
        .store
        .append(request(
            stream,
            ExpectedVersion::NoStream,
            &events,
            &metadata,
            command,
            [1; 32],
        ))
        .await
        .unwrap();
    let AppendOutcome::Appended(first) = first else {
        panic!("first attempt was a duplicate")
    };
    assert_eq!(first.status, "Placed");

    // The retry carries new event ids and an expected version that no longer holds: the
    // command record answers before either matters.
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Any,
        ExpectedVersion::Exact(1),
    ] {
        let retry = t
            .store
            .append(request(
                stream,
                expected,
                &[event("again")],
                &metadata,
                command,
                [1; 32],
            ))
            .await
            .unwrap();
        assert_eq!(retry, AppendOutcome::Duplicate(first.clone()), "{expected}");
    }
    assert_eq!(count(&t.db, "orders.events").await, 1);
    assert_eq!(count(&t.db, "orders.commands").await, 1);
    let found = t.store.find_command(command).await.unwrap().unwrap();
    assert_eq!(found.committed, first);
}

#[tokio::test]
async fn a_reused_command_id_with_another_request_is_refused() {
    let t = test_store().await;
    let stream = Uuid::new_v4();
    let command = Uuid::new_v4();
    let metadata = metadata();
    t.store
        .append(request(
            stream,
            ExpectedVersion::NoStream,
            &[event("a")],
            &metadata,
            command,
            [1; 32],
        ))
        .await
        .unwrap();
    let other_request = t
        .store
        .append(request(
            stream,
            ExpectedVersion::Any,
            &[event("b")],
            &metadata,
            command,
            [2; 32],
        ))
        .await;
    assert!(
        matches!(other_request, Err(Error::CommandIdReused { .. })),
        "{other_request:?}"
    );
    let other_stream = t
        .store
        .append(request(
            Uuid::new_v4(),
            ExpectedVersion::NoStream,
            &[event("c")],
            &metadata,
            command,
            [1; 32],
        ))
        .await;
    assert!(
        matches!(other_stream, Err(Error::CommandIdReused { .. })),
        "{other_stream:?}"
    );
    assert_eq!(count(&t.db, "orders.events").await, 1);
}

#[tokio::test]
async fn concurrent_retries_of_one_command_write_it_exactly_once() {
    let t = test_store().await;
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
        let stream = Uuid::new_v4();
        let command = Uuid::new_v4();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = t.store.clone();
                tokio::spawn(async move {
                    let metadata = metadata();
                    let events = [event("concurrent")];
                    store
                        .append(request(
                            stream, expected, &events, &metadata, command, [9; 32],
                        ))
                        .await
                })
            })
            .collect();
        let mut appended = Vec::new();
        let mut duplicates = Vec::new();
        for task in tasks {
            match task.await.unwrap().unwrap() {
                AppendOutcome::Appended(c) => appended.push(c),
                AppendOutcome::Duplicate(c) => duplicates.push(c),
            }
        }
        assert_eq!(appended.len(), 1, "{expected}: exactly one attempt writes");
        assert!(
            duplicates.iter().all(|d| *d == appended[0]),
            "{expected}: every retry sees the first result"
        );
        assert_eq!(t.store.read_stream(stream, 0).await.unwrap().len(), 1);
    }
}

//! Concurrent writers on one stream: optimistic concurrency, nothing lost, nothing doubled.

use std::collections::BTreeSet;

use order_store::{Error, ExpectedVersion};
use uuid::Uuid;

use crate::support::*;

#[tokio::test]
async fn thirty_two_writers_on_one_stream_get_dense_versions_or_conflicts() {
    let t = test_store().await;
    let stream = Uuid::new_v4();
    append(
        &t.store,
        stream,
        ExpectedVersion::NoStream,
        &[event("seed")],
    )
    .await
    .unwrap();

    // Each writer reads the head, then appends expecting it; several rounds so that the
    // writers interleave differently.
    let tasks: Vec<_> = (0..32)
        .map(|writer| {
            let store = t.store.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for round in 0..5 {
                    let head = store.read_stream(stream, 0).await.unwrap().len() as u64;
                    let new = event(&format!("w{writer}-r{round}"));
                    let id = new.event_id;
                    let result = append(&store, stream, ExpectedVersion::Exact(head), &[new]).await;
                    outcomes.push((id, result));
                }
                outcomes
            })
        })
        .collect();

    let mut succeeded = BTreeSet::new();
    let mut failed = BTreeSet::new();
    for task in tasks {
        for (id, result) in task.await.unwrap() {
            match result {
                Ok(committed) => {
                    succeeded.insert((committed.stream_version, id));
                }
                Err(Error::Conflict { .. } | Error::WrongExpectedVersion { .. }) => {
                    failed.insert(id);
                }
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
    }
    assert!(
        !succeeded.is_empty() && !failed.is_empty(),
        "the writers did race"
    );

    let events = t.store.read_stream(stream, 0).await.unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(
        versions,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "versions are dense"
    );
    assert_eq!(
        events.len(),
        succeeded.len() + 1,
        "every success and nothing else is stored"
    );
    for (version, id) in &succeeded {
        assert_eq!(
            events[*version as usize - 1].event_id,
            *id,
            "success at version {version} readable"
        );
    }
    let stored: BTreeSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    assert!(
        failed.iter().all(|id| !stored.contains(id)),
        "no failed append left anything"
    );
}

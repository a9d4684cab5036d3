//! `import_batch` takes only what an append would take: bad input is refused before anything
//! is written, and a collision that is not a race is reported at once, never retried.

use std::time::SystemTime;

use order_store::{
    Error, ExpectedVersion, ImportProgress, ImportedEvent, ImportedStream, MAX_PAYLOAD_BYTES,
};
use uuid::Uuid;

use crate::support::*;

fn imported_event(payload: &str) -> ImportedEvent {
    ImportedEvent {
        event_id: Uuid::new_v4(),
        event_type: "OrderPlaced".into(),
        schema_version: 1,
        payload_json: payload.to_owned(),
        recorded_at: SystemTime::UNIX_EPOCH,
    }
}

fn imported(n: usize, events: Vec<ImportedEvent>) -> ImportedStream {
    ImportedStream {
        stream_id: Uuid::new_v4(),
        category: "order".into(),
        imported_from: format!("legacy:{n}"),
        correlation_id: None,
        events,
    }
}

#[tokio::test]
async fn a_batch_with_a_bad_event_is_refused_whole_and_writes_nothing() {
    let t = test_store().await;
    t.store.import_begin("bad-input", "legacy").await.unwrap();
    let good = || imported(0, vec![imported_event(r#"{"a":1}"#)]);
    let with_event = |event: ImportedEvent| imported(1, vec![imported_event("{}"), event]);
    let typed = |event_type: &str| ImportedEvent {
        event_type: event_type.to_owned().into(),
        ..imported_event("{}")
    };
    let twice = imported_event("{}");
    let cases: Vec<(&str, Vec<ImportedStream>)> = vec![
        (
            "an event type with a space",
            vec![good(), with_event(typed("Order Placed"))],
        ),
        (
            "an event type with a quote",
            vec![good(), with_event(typed("X'; --"))],
        ),
        (
            "an event type with a tab",
            vec![good(), with_event(typed("Order\tPlaced"))],
        ),
        (
            "an event type of 101 bytes",
            vec![good(), with_event(typed(&"A".repeat(101)))],
        ),
        (
            "a payload that is not JSON",
            vec![good(), with_event(imported_event("{oops"))],
        ),
        (
            "a payload with text after the object",
            vec![good(), with_event(imported_event("{} {}"))],
        ),
        (
            "a payload that is not an object",
            vec![good(), with_event(imported_event("[1]"))],
        ),
        (
            "a payload with \\u0000",
            vec![good(), with_event(imported_event(r#"{"a":"\u0000"}"#))],
        ),
        (
            "a payload with a number past 1e308",
            vec![good(), with_event(imported_event(r#"{"a":2e308}"#))],
        ),
        (
            "a payload over the limit",
            vec![
                good(),
                with_event(imported_event(
                    &serde_json::json!({ "a": "x".repeat(MAX_PAYLOAD_BYTES) }).to_string(),
                )),
            ],
        ),
        (
            "one event id twice in a stream",
            vec![good(), imported(1, vec![twice.clone(), twice.clone()])],
        ),
        (
            "one event id in two streams",
            vec![
                imported(0, vec![twice.clone()]),
                imported(1, vec![twice.clone()]),
            ],
        ),
    ];
    for (name, batch) in cases {
        match t
            .store
            .import_batch("bad-input", &batch, ImportProgress::default())
            .await
        {
            Err(Error::InvalidInput(message)) => eprintln!("{name}: {message}"),
            other => panic!("{name}: expected InvalidInput, got {other:?}"),
        }
    }
    assert_eq!(count(&t.db, "orders.events").await, 0);
    let record = t.store.import_status("bad-input").await.unwrap().unwrap();
    assert_eq!(record.batches, 0, "{record:?}");
}

#[tokio::test]
async fn an_event_id_already_in_the_log_is_named_at_once_and_nothing_is_written() {
    let t = test_store().await;
    let live = event("live");
    append(
        &t.store,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        std::slice::from_ref(&live),
    )
    .await
    .unwrap();
    t.store.import_begin("collide", "legacy").await.unwrap();
    let taken = ImportedEvent {
        event_id: live.event_id,
        ..imported_event("{}")
    };
    let batch = [
        imported(0, vec![imported_event("{}")]),
        imported(1, vec![imported_event("{}"), taken]),
    ];
    let started = std::time::Instant::now();
    let result = t
        .store
        .import_batch("collide", &batch, ImportProgress::default())
        .await;
    match result {
        Err(Error::DuplicateEventId { event_id }) => assert_eq!(event_id, live.event_id),
        other => panic!("expected DuplicateEventId, got {other:?}"),
    }
    assert_eq!(count(&t.db, "orders.events").await, 1);
    let record = t.store.import_status("collide").await.unwrap().unwrap();
    assert_eq!(record.batches, 0, "{record:?}");
    eprintln!("answered in {:?}", started.elapsed());
}

/// Two runs of one import append the same streams at once (the same event ids): the second's
/// COPY waits for the first's, collides with it, and is tried again; it then finds every
/// stream present. Each event is in the log once, and no error is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_racing_on_the_same_streams_append_them_once() {
    let t = test_store().await;
    t.store.import_begin("race", "legacy").await.unwrap();
    let batch: Vec<ImportedStream> = (0..20)
        .map(|n| {
            imported(
                n,
                vec![imported_event(r#"{"a":1}"#), imported_event(r#"{"b":2}"#)],
            )
        })
        .collect();
    // Hold the progress row: both runs COPY their events, then wait; the second's COPY waits
    // on the first's uncommitted rows (the unique index), the first at the progress row.
    let mut holder = t.db.connect().await;
    let hold = holder.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM orders.imports WHERE name = 'race' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let first = {
        let (store, batch) = (t.store.clone(), batch.clone());
        tokio::spawn(async move {
            store
                .import_batch("race", &batch, ImportProgress::default())
                .await
        })
    };
    let watcher = t.db.connect().await;
    order_testkit::pg::wait_for_lock_waiters(&watcher, 1, "the first run", || first.is_finished())
        .await;
    let second = {
        let (store, batch) = (t.store.clone(), batch.clone());
        tokio::spawn(async move {
            store
                .import_batch("race", &batch, ImportProgress::default())
                .await
        })
    };
    order_testkit::pg::wait_for_lock_waiters(&watcher, 2, "the second run", || {
        second.is_finished()
    })
    .await;
    hold.rollback().await.unwrap();

    let first = first.await.unwrap().unwrap();
    let second = second.await.unwrap().unwrap();
    let appended = first.streams_appended + second.streams_appended;
    let present = first.streams_present + second.streams_present;
    assert_eq!((appended, present), (20, 20), "{first:?} {second:?}");
    assert_eq!(count(&t.db, "orders.events").await, 40);
    let record = t.store.import_status("race").await.unwrap().unwrap();
    assert_eq!(record.batches, 2, "{record:?}");
}

/// A legacy order that moved on since an earlier run: the log holds the start of its told
/// history, so the rest is appended. One that this system changed since its import, or whose
/// legacy past changed (shorter included), is left alone and reported.
#[tokio::test]
async fn a_stream_the_log_holds_the_start_of_is_updated_unless_it_diverged() {
    let t = test_store().await;
    t.store.import_begin("update", "legacy").await.unwrap();
    // Ids derived from the legacy record: the same in every run.
    let stream_ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let event_ids: Vec<Vec<Uuid>> = (0..4)
        .map(|_| (0..5).map(|_| Uuid::new_v4()).collect())
        .collect();
    let told = |n: usize, events: usize| -> Vec<ImportedEvent> {
        (0..events)
            .map(|i| ImportedEvent {
                event_id: event_ids[n][i],
                ..imported_event(&format!(r#"{{"order":{n},"step":{i}}}"#))
            })
            .collect()
    };
    let stream = |n: usize, events: Vec<ImportedEvent>| ImportedStream {
        stream_id: stream_ids[n],
        ..imported(n, events)
    };
    // The first run: four orders, two or three events each.
    let first: Vec<ImportedStream> = (0..4).map(|n| stream(n, told(n, 2 + n % 2))).collect();
    let outcome = t
        .store
        .import_batch("update", &first, ImportProgress::default())
        .await
        .unwrap();
    assert_eq!((outcome.streams_appended, outcome.events_appended), (4, 10));

    // Order 1 lives here now: a live event after its imported ones.
    append(
        &t.store,
        first[1].stream_id,
        ExpectedVersion::Exact(3),
        &[event("live")],
    )
    .await
    .unwrap();

    // The second run: every order moved on by two events; order 2's past changed; order 3 is
    // told shorter than it is in the log (a past that changed too).
    let mut second: Vec<ImportedStream> = (0..3).map(|n| stream(n, told(n, 4 + n % 2))).collect();
    second[2].events[1].payload_json = r#"{"order":2,"step":"rewritten"}"#.to_owned();
    second.push(stream(3, told(3, 1)));
    let outcome = t
        .store
        .import_batch("update", &second, ImportProgress::default())
        .await
        .unwrap();
    assert_eq!(outcome.streams_appended, 0, "{outcome:?}");
    assert_eq!(outcome.streams_updated, 1, "{outcome:?}");
    assert_eq!(outcome.events_appended, 2, "{outcome:?}");
    assert_eq!(outcome.streams_present, 0, "{outcome:?}");
    let diverged: std::collections::BTreeMap<Uuid, String> =
        outcome.streams_diverged.iter().cloned().collect();
    assert_eq!(diverged.len(), 3, "{outcome:?}");
    assert!(
        diverged[&first[3].stream_id].contains("no longer tells"),
        "{diverged:?}"
    );
    assert!(
        diverged[&first[1].stream_id].contains("recorded by this system"),
        "{diverged:?}"
    );
    assert!(
        diverged[&first[2].stream_id].contains("past changed"),
        "{diverged:?}"
    );

    // Order 0: its told history, whole and in order; the others unchanged.
    let read = t.store.read_stream(first[0].stream_id, 0).await.unwrap();
    let ids: Vec<Uuid> = read.iter().map(|e| e.event_id).collect();
    let expected: Vec<Uuid> = second[0].events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, expected);
    assert!(
        read.iter()
            .all(|e| e.imported_from.as_deref() == Some("legacy:0"))
    );
    for (n, events) in [(1, 4), (2, 2), (3, 3)] {
        let read = t.store.read_stream(first[n].stream_id, 0).await.unwrap();
        assert_eq!(read.len(), events, "order {n}");
    }
    let record = t.store.import_status("update").await.unwrap().unwrap();
    assert_eq!((record.orders_imported, record.events_imported), (4, 12));

    // A third run of the same export changes nothing.
    let outcome = t
        .store
        .import_batch("update", &second, ImportProgress::default())
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.streams_updated,
            outcome.events_appended,
            outcome.streams_present
        ),
        (0, 0, 1)
    );
    assert_eq!(outcome.streams_diverged.len(), 3);
    assert_eq!(count(&t.db, "orders.events").await, 13);
}

/// A later export compares every order the log holds with what its record tells now, whatever
/// their lengths: an order this system recorded an event for since its import and that the
/// legacy record moved on too, or whose told past changed in any way the log keeps (type,
/// payload, time, event id; events the record no longer tells), is left alone and reported.
/// Orders that are the same on both sides are present, whether or not they live here now.
#[tokio::test]
async fn an_order_changed_here_or_in_its_legacy_past_is_reported_whatever_its_length() {
    let t = test_store().await;
    t.store.import_begin("compare", "legacy").await.unwrap();
    let at =
        |secs: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000 + secs);
    let stream_ids: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
    let event_ids: Vec<Vec<Uuid>> = (0..8)
        .map(|_| (0..4).map(|_| Uuid::new_v4()).collect())
        .collect();
    let told = |n: usize, events: usize| -> ImportedStream {
        ImportedStream {
            stream_id: stream_ids[n],
            ..imported(
                n,
                (0..events)
                    .map(|i| ImportedEvent {
                        event_id: event_ids[n][i],
                        recorded_at: at(i as u64 * 60),
                        ..imported_event(&format!(r#"{{"order":{n},"step":{i}}}"#))
                    })
                    .collect(),
            )
        }
    };
    let first: Vec<ImportedStream> = (0..8).map(|n| told(n, 2)).collect();
    let outcome = t
        .store
        .import_batch("compare", &first, ImportProgress::default())
        .await
        .unwrap();
    assert_eq!(outcome.streams_appended, 8);
    // Orders 0 and 5 live here now.
    for n in [0, 5] {
        append(
            &t.store,
            stream_ids[n],
            ExpectedVersion::Exact(2),
            &[event("live")],
        )
        .await
        .unwrap();
    }
    let mut later: Vec<ImportedStream> = Vec::new();
    // 0: moved on in the legacy system too, as long as the log is now.
    later.push(told(0, 3));
    // 1: the same length, its second event's payload rewritten.
    let mut changed = told(1, 2);
    changed.events[1].payload_json = r#"{"order":1,"step":"rewritten"}"#.to_owned();
    later.push(changed);
    // 2: the same length, every time an hour later (a legacy time-zone fix).
    let mut shifted = told(2, 2);
    for event in &mut shifted.events {
        event.recorded_at += std::time::Duration::from_secs(3600);
    }
    later.push(shifted);
    // 3: moved on, and its first event's time changed.
    let mut moved = told(3, 3);
    moved.events[0].recorded_at += std::time::Duration::from_secs(1);
    later.push(moved);
    // 4: told shorter than the log holds it.
    later.push(told(4, 1));
    // 5: lives here, its legacy record unchanged: present.
    later.push(told(5, 2));
    // 6: unchanged: present.
    later.push(told(6, 2));
    // 7: its second event under another id.
    let mut renamed = told(7, 2);
    renamed.events[1].event_id = Uuid::new_v4();
    later.push(renamed);
    let before = count(&t.db, "orders.events").await;
    let outcome = t
        .store
        .import_batch("compare", &later, ImportProgress::default())
        .await
        .unwrap();
    let diverged: std::collections::BTreeMap<Uuid, String> =
        outcome.streams_diverged.iter().cloned().collect();
    let which: Vec<usize> = (0..8)
        .filter(|&n| diverged.contains_key(&stream_ids[n]))
        .collect();
    assert_eq!(which, [0, 1, 2, 3, 4, 7], "{diverged:#?}");
    assert!(
        diverged[&stream_ids[0]].contains("recorded by this system"),
        "{diverged:?}"
    );
    for n in [1, 2, 3, 7] {
        assert!(
            diverged[&stream_ids[n]].contains("past changed"),
            "{n}: {diverged:?}"
        );
    }
    assert!(
        diverged[&stream_ids[4]].contains("no longer tells"),
        "{diverged:?}"
    );
    assert_eq!(
        (
            outcome.streams_present,
            outcome.streams_updated,
            outcome.events_appended
        ),
        (2, 0, 0),
        "{outcome:?}"
    );
    assert_eq!(
        count(&t.db, "orders.events").await,
        before,
        "nothing written"
    );
}

/// The orders a batch leaves alone (diverged since they were imported) are counted as rejected
/// in the progress row from the batch's own transaction on, beside the importer's own rejects:
/// a run stopped before it finished shows them. Each counts once, whether a batch is tried again
/// after its commit's answer was lost or another writer's batch names it too, and the next run
/// counts its own from zero, whether the last one finished or not. Before, the row counted them
/// only when the importer finished, with the figure it passed.
#[tokio::test]
async fn the_orders_a_batch_leaves_alone_are_counted_as_rejected_in_its_transaction() {
    let t = test_store().await;
    t.store.import_begin("left", "legacy").await.unwrap();
    let first: Vec<ImportedStream> = (0..4)
        .map(|n| imported(n, vec![imported_event(&format!(r#"{{"order":{n}}}"#))]))
        .collect();
    t.store
        .import_batch("left", &first, ImportProgress::default())
        .await
        .unwrap();
    // A later run: orders 0, 2 and 3 now tell another first event (they diverged).
    let begun = t.store.import_begin("left", "legacy").await.unwrap();
    assert_eq!(begun.orders_rejected, 0, "{begun:?}");
    let mut second = first.clone();
    for n in [0, 2, 3] {
        second[n].events[0].payload_json = r#"{"changed":true}"#.to_owned();
    }
    let progress = |orders_read, orders_rejected| ImportProgress {
        orders_read,
        orders_rejected,
    };
    let rejected = || async {
        let record = t.store.import_status("left").await.unwrap().unwrap();
        assert!(record.finished_at.is_none(), "{record:?}");
        (record.orders_read, record.orders_rejected)
    };
    let outcome = t
        .store
        .import_batch("left", &second[..3], progress(7, 3))
        .await
        .unwrap();
    assert_eq!(outcome.streams_diverged.len(), 2, "{outcome:?}");
    assert_eq!(
        rejected().await,
        (7, 5),
        "the importer's 3 and the batch's 2"
    );
    // The same batch again (its commit's answer lost): nothing counted twice.
    t.store
        .import_batch("left", &second[..3], progress(7, 3))
        .await
        .unwrap();
    assert_eq!(rejected().await, (7, 5));
    // Another writer's batch, which read fewer records before it and committed later: its
    // order left alone counts, its lower figures lower nothing.
    let outcome = t
        .store
        .import_batch("left", &second[3..], progress(6, 2))
        .await
        .unwrap();
    assert_eq!(outcome.streams_diverged.len(), 1, "{outcome:?}");
    assert_eq!(rejected().await, (7, 6));
    // A run stopped here; the next counts from zero, and its orders left alone again.
    let again = t.store.import_begin("left", "legacy").await.unwrap();
    assert_eq!(again.orders_rejected, 0, "{again:?}");
    t.store
        .import_batch("left", &second, progress(9, 1))
        .await
        .unwrap();
    assert_eq!(rejected().await, (9, 4));
    // Its end writes the importer's own figures; the orders left alone still count.
    let finished = t
        .store
        .import_finish("left", progress(10, 2))
        .await
        .unwrap();
    assert_eq!((finished.orders_read, finished.orders_rejected), (10, 5));
    let record = t.store.import_status("left").await.unwrap().unwrap();
    assert_eq!(record.orders_rejected, 5, "{record:?}");
}

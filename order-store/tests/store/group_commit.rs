//! Group commit: concurrent appends share statements and transactions, yet each gets its own
//! result, and a batch that collides with an outside writer falls back to single appends.

use std::collections::BTreeSet;
use std::time::Duration;

use order_store::{AppendOutcome, AppendRequest, Error, EventStore, ExpectedVersion, Idempotency};
use uuid::Uuid;

use crate::support::*;

#[tokio::test]
async fn concurrent_appends_are_grouped_and_each_gets_its_own_result() {
    for thread in [false, true] {
        concurrent_appends_are_grouped(thread).await;
    }
}

async fn concurrent_appends_are_grouped(thread: bool) {
    let t = test_store_with(|c| {
        c.group_commit_batch = 32;
        c.group_commit_writers = 2;
        c.group_commit_thread = thread;
    })
    .await;
    let existing = Uuid::new_v4();
    append(
        &t.store,
        existing,
        ExpectedVersion::NoStream,
        &[event("seed")],
    )
    .await
    .unwrap();
    let retried_command = Uuid::new_v4();

    // 96 new streams, 16 stale expectations on one existing stream, 8 copies of one command.
    let mut tasks = Vec::new();
    for i in 0..120 {
        let store = t.store.clone();
        tasks.push(tokio::spawn(async move {
            let metadata = metadata();
            let events: Vec<_> = (0..1 + i % 3).map(|k| event(&format!("{i}/{k}"))).collect();
            let (stream, expected, idempotency) = match i {
                0..96 => (Uuid::new_v4(), ExpectedVersion::NoStream, None),
                96..112 => (existing, ExpectedVersion::Exact(5), None),
                _ => (
                    Uuid::from_u128(7),
                    ExpectedVersion::Any,
                    Some(Idempotency {
                        command_id: retried_command,
                        fingerprint: [3; 32],
                        status: "s",
                    }),
                ),
            };
            let result = store
                .append(AppendRequest {
                    stream_id: stream,
                    category: "test",
                    expected,
                    events: &events,
                    metadata: &metadata,
                    idempotency,
                })
                .await;
            (i, events.len() as u64, result)
        }));
    }
    let mut positions = BTreeSet::new();
    let (mut appended, mut wrong_version, mut duplicates) = (0, 0, 0);
    for task in tasks {
        let (i, events, result) = task.await.unwrap();
        match (i, result) {
            (0..96, Ok(AppendOutcome::Appended(c))) => {
                assert_eq!(c.stream_version, events, "append {i}");
                assert!(positions.insert(c.global_position), "positions are unique");
                appended += 1;
            }
            (96..112, Err(Error::WrongExpectedVersion { actual: 1, .. })) => wrong_version += 1,
            (112.., Ok(AppendOutcome::Appended(_))) => appended += 1,
            (112.., Ok(AppendOutcome::Duplicate(_))) => duplicates += 1,
            (i, other) => panic!("append {i}: unexpected {other:?}"),
        }
    }
    assert_eq!((appended, wrong_version, duplicates), (97, 16, 7));

    let client = t.db.connect().await;
    let row = client
        .query_one(
            "SELECT count(DISTINCT transaction_id), count(DISTINCT stream_id) FROM orders.events",
            &[],
        )
        .await
        .unwrap();
    let (transactions, streams): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(streams, 98);
    assert!(
        transactions < streams,
        "appends shared transactions: {transactions} for {streams} streams"
    );
    let versions_dense: bool = client
        .query_one(
            "SELECT bool_and(n = v) FROM (SELECT stream_version AS v, row_number() OVER (PARTITION BY stream_id ORDER BY stream_version) AS n FROM orders.events) x",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(versions_dense);
}

#[tokio::test]
async fn a_batch_that_collides_with_an_outside_writer_falls_back_to_single_appends() {
    let t = test_store_with(|c| {
        c.group_commit_batch = 16;
        c.group_commit_writers = 1;
    })
    .await;
    // Two outside writers hold a version of streams X and S in open transactions.
    let (x, s) = (Uuid::new_v4(), Uuid::new_v4());
    let hold = |stream: Uuid| {
        let db = &t.db;
        async move {
            let client = db.connect().await;
            client.batch_execute("BEGIN").await.unwrap();
            client
                .execute(
                    "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload) VALUES ($1, 1, $2, 'TestEvent', 1, '{}')",
                    &[&stream, &Uuid::now_v7()],
                )
                .await
                .unwrap();
            client
        }
    };
    let holder_x = hold(x).await;
    let holder_s = hold(s).await;

    let submit = |stream: Uuid| {
        let store = t.store.clone();
        tokio::spawn(async move {
            append(&store, stream, ExpectedVersion::NoStream, &[event("e")]).await
        })
    };
    // The only writer blocks on X; meanwhile S and two free streams queue up together.
    let blocked = submit(x);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = [submit(s), submit(Uuid::new_v4()), submit(Uuid::new_v4())];
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder_x.batch_execute("COMMIT").await.unwrap();
    assert!(matches!(
        blocked.await.unwrap(),
        Err(Error::Conflict { .. } | Error::WrongExpectedVersion { .. })
    ));
    // The batch [S, free, free] now waits on S's index entry; S commits; the batch fails as a
    // whole and every append is retried alone.
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder_s.batch_execute("COMMIT").await.unwrap();
    let [for_s, free_a, free_b] = queued;
    assert!(matches!(
        for_s.await.unwrap(),
        Err(Error::Conflict { .. } | Error::WrongExpectedVersion { .. })
    ));
    let (a, b) = (
        free_a.await.unwrap().unwrap(),
        free_b.await.unwrap().unwrap(),
    );
    assert_eq!((a.stream_version, b.stream_version), (1, 1));
    assert_eq!(
        count(&t.db, "orders.events").await,
        4,
        "two held, two appended, nothing else"
    );
}

/// The deadlocks PostgreSQL has counted in the test's database (a backend flushes its
/// statistics at the latest when it exits).
async fn deadlocks(t: &TestStore) -> i64 {
    let client = t.db.connect().await;
    client
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
    client
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_streams_through_group_commit_of_several_instances_never_deadlock() {
    let t = test_store().await;
    // Four instances, each with its own group-commit writers, appending to the same 8 streams
    // in every order: batches of different instances hold the same streams at once.
    // Two of them run their writers on threads of their own.
    let stores: Vec<EventStore> = (0..4)
        .map(|i| {
            let mut config = t.store.config().clone();
            config.pool_size = 8;
            config.group_commit_batch = 16;
            config.group_commit_writers = 2;
            config.group_commit_thread = i % 2 == 1;
            EventStore::new(config).unwrap()
        })
        .collect();
    let streams: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = deadlocks(&t).await;
    let mut tasks = Vec::new();
    for worker in 0..32usize {
        let store = stores[worker % stores.len()].clone();
        let streams = streams.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for n in 0..60usize {
                let stream = streams[(worker * 7 + n * (1 + worker % 3)) % streams.len()];
                let events = [event(&format!("{worker}/{n}"))];
                if let Err(error) = append(&store, stream, ExpectedVersion::Any, &events).await {
                    failures.push(error.to_string());
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.unwrap());
    }
    // A backend flushes its statistics when it exits: close every instance's connections.
    drop(stores);
    let mut after = deadlocks(&t).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = after.max(deadlocks(&t).await);
    }
    assert!(
        failures.is_empty(),
        "appends failed: {:?}",
        &failures[..failures.len().min(5)]
    );
    assert_eq!(after - before, 0, "PostgreSQL detected deadlocks");
    assert_eq!(count(&t.db, "orders.events").await, 32 * 60);
}

#[tokio::test]
async fn an_append_its_writer_cannot_take_in_time_is_withdrawn_unwritten_and_unavailable() {
    let t = test_store_with(|c| {
        c.group_commit_batch = 16;
        c.group_commit_writers = 1;
        c.pool_size = 1;
        c.pool_wait_timeout = Duration::from_millis(150);
    })
    .await;
    // The only writer holds the only connection, waiting on a lock.
    let lock = t.db.connect().await;
    lock.batch_execute("BEGIN; LOCK TABLE orders.events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let (first, late) = (Uuid::new_v4(), Uuid::new_v4());
    let store = t.store.clone();
    let blocked = tokio::spawn(async move {
        append(&store, first, ExpectedVersion::NoStream, &[event("first")]).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = std::time::Instant::now();
    let result = append(&t.store, late, ExpectedVersion::NoStream, &[event("late")]).await;
    assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after the pool wait, not after the lock: {:?}",
        started.elapsed()
    );

    lock.batch_execute("ROLLBACK").await.unwrap();
    assert!(blocked.await.unwrap().is_ok(), "the taken append completes");
    // The queue is first in, first out: an append behind the withdrawn one has gone through
    // the writer after it, so the withdrawn one would be written by now if it ever were.
    append(
        &t.store,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        &[event("after")],
    )
    .await
    .unwrap();
    assert!(t.store.read_stream(late, 0).await.unwrap().is_empty());
    assert_eq!(count(&t.db, "orders.events").await, 2);
}

/// Make every commit that wrote an event of `stream` take `seconds` longer: a deferred
/// constraint trigger runs at COMMIT, after the statement has run and answered.
async fn slow_commits_of(t: &TestStore, stream: Uuid, seconds: f64) {
    let client = t.db.connect().await;
    client
        .batch_execute(&format!(
            "CREATE FUNCTION orders.test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.stream_id = '{stream}' THEN PERFORM pg_sleep({seconds}); END IF;
                 RETURN NULL;
             END $$;
             CREATE CONSTRAINT TRIGGER test_slow_commit AFTER INSERT ON orders.events
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
                 EXECUTE FUNCTION orders.test_slow_commit();"
        ))
        .await
        .unwrap();
}

/// Transactions that ended in a rollback in the test's database, once every backend that
/// ran one has flushed its statistics (at the latest when it exits: drop the stores first).
async fn rollbacks(db: &order_testkit::pg::TestDatabase) -> i64 {
    let client = db.connect().await;
    let mut seen = 0;
    for _ in 0..12 {
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .unwrap();
        let now: i64 = client
            .query_one(
                "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        seen = seen.max(now);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    seen
}

#[tokio::test]
async fn an_append_to_a_stream_being_committed_waits_for_that_commit_instead_of_colliding() {
    let t = test_store_with(|c| {
        c.group_commit_batch = 16;
        c.group_commit_writers = 1;
    })
    .await;
    let stream = Uuid::new_v4();
    slow_commits_of(&t, stream, 2.0).await;
    let command_id = Uuid::new_v4();
    let idempotent = |store: EventStore, label: &'static str| {
        tokio::spawn(async move {
            store
                .append(AppendRequest {
                    stream_id: stream,
                    category: "test",
                    expected: ExpectedVersion::Any,
                    events: &[event(label)],
                    metadata: &metadata(),
                    idempotency: Some(Idempotency {
                        command_id,
                        fingerprint: [9; 32],
                        status: "s",
                    }),
                })
                .await
        })
    };
    let before = rollbacks(&t.db).await;
    let first = idempotent(t.store.clone(), "first");
    // Its statement has run and its commit sleeps in the trigger.
    let watcher = t.db.connect().await;
    let mut committing = false;
    for _ in 0..300 {
        committing = watcher
            .query_one(
                "SELECT count(*) > 0 FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event = 'PgSleep'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if committing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(committing, "the first append never reached its commit");
    // While the first commits: a retry of its command, and another append to its stream.
    let retry = idempotent(t.store.clone(), "retry");
    let store = t.store.clone();
    let next = tokio::spawn(async move {
        append(&store, stream, ExpectedVersion::Any, &[event("next")]).await
    });
    let first = first.await.unwrap().unwrap();
    assert!(
        matches!(first, AppendOutcome::Appended(ref c) if c.stream_version == 1),
        "{first:?}"
    );
    let retry = retry.await.unwrap().unwrap();
    assert!(
        matches!(retry, AppendOutcome::Duplicate(ref c) if c.stream_version == 1),
        "{retry:?}"
    );
    assert_eq!(next.await.unwrap().unwrap().stream_version, 2);
    // Neither collided with the commit and fell back (a failed statement is a rollback).
    let TestStore { db, store } = t;
    drop(store);
    assert_eq!(
        rollbacks(&db).await - before,
        0,
        "a statement failed and was retried"
    );
    assert_eq!(count(&db, "orders.events").await, 2);
}

/// A batch of appends that all create their stream runs the insert-only statement; when one of
/// them finds its stream, command id or event id already there, nothing of that statement is
/// written and every append still gets exactly its own answer.
#[tokio::test]
async fn a_batch_of_new_streams_with_some_already_there_answers_each_exactly() {
    for thread in [false, true] {
        a_batch_of_new_streams_with_some_already_there(thread).await;
    }
}

async fn a_batch_of_new_streams_with_some_already_there(thread: bool) {
    let t = test_store_with(|c| {
        c.group_commit_batch = 32;
        c.group_commit_writers = 1;
        c.group_commit_thread = thread;
    })
    .await;
    let keyed = |store: &EventStore, stream: Uuid, expected, events: Vec<_>, id, fp| {
        let store = store.clone();
        tokio::spawn(async move {
            let metadata = metadata();
            store
                .append(AppendRequest {
                    stream_id: stream,
                    category: "test",
                    expected,
                    events: &events,
                    metadata: &metadata,
                    idempotency: Some(Idempotency {
                        command_id: id,
                        fingerprint: fp,
                        status: "placed",
                    }),
                })
                .await
        })
    };
    // Before: a stream with two events, a command recorded on another stream, an event id.
    let existing = Uuid::new_v4();
    append(
        &t.store,
        existing,
        ExpectedVersion::NoStream,
        &[event("a"), event("b")],
    )
    .await
    .unwrap();
    let (recorded_stream, recorded_command) = (Uuid::new_v4(), Uuid::new_v4());
    let first = keyed(
        &t.store,
        recorded_stream,
        ExpectedVersion::NoStream,
        vec![event("c")],
        recorded_command,
        [1; 32],
    )
    .await
    .unwrap()
    .unwrap();
    let taken_event = event("d");
    append(
        &t.store,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        std::slice::from_ref(&taken_event),
    )
    .await
    .unwrap();
    let (events_before, commands_before) = (
        count(&t.db, "orders.events").await,
        count(&t.db, "orders.commands").await,
    );

    // The only writer blocks behind an outside transaction on stream X, so that everything
    // below queues up and goes out as one batch of new streams.
    let x = Uuid::new_v4();
    let holder = t.db.connect().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload) VALUES ($1, 1, $2, 'TestEvent', 1, '{}')",
            &[&x, &Uuid::now_v7()],
        )
        .await
        .unwrap();
    let blocked = {
        let store = t.store.clone();
        tokio::spawn(
            async move { append(&store, x, ExpectedVersion::NoStream, &[event("x")]).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (fresh_a, fresh_b) = (Uuid::new_v4(), Uuid::new_v4());
    let (id_a, id_b) = (Uuid::new_v4(), Uuid::new_v4());
    let on_existing = keyed(
        &t.store,
        existing,
        ExpectedVersion::Exact(0),
        vec![event("e")],
        Uuid::new_v4(),
        [2; 32],
    );
    let retried = keyed(
        &t.store,
        recorded_stream,
        ExpectedVersion::NoStream,
        vec![event("f")],
        recorded_command,
        [1; 32],
    );
    let reused_event = {
        let store = t.store.clone();
        let taken = taken_event.clone();
        tokio::spawn(async move {
            append(&store, Uuid::new_v4(), ExpectedVersion::NoStream, &[taken]).await
        })
    };
    let a = keyed(
        &t.store,
        fresh_a,
        ExpectedVersion::NoStream,
        vec![event("g"), event("h")],
        id_a,
        [4; 32],
    );
    let b = keyed(
        &t.store,
        fresh_b,
        ExpectedVersion::Exact(0),
        vec![event("i")],
        id_b,
        [5; 32],
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.batch_execute("ROLLBACK").await.unwrap();

    assert_eq!(blocked.await.unwrap().unwrap().stream_version, 1);
    assert!(matches!(
        on_existing.await.unwrap(),
        Err(Error::WrongExpectedVersion { actual: 2, .. })
    ));
    match retried.await.unwrap() {
        Ok(AppendOutcome::Duplicate(c)) => assert_eq!(c, first.committed().clone()),
        other => panic!("the retried command: {other:?}"),
    }
    assert!(matches!(
        reused_event.await.unwrap(),
        Err(Error::DuplicateEventId { event_id }) if event_id == taken_event.event_id
    ));
    let a = a.await.unwrap().unwrap();
    let b = b.await.unwrap().unwrap();
    assert!(matches!(a, AppendOutcome::Appended(_)), "{a:?}");
    assert!(matches!(b, AppendOutcome::Appended(_)), "{b:?}");
    assert_eq!(
        (a.committed().stream_version, b.committed().stream_version),
        (2, 1)
    );
    assert_eq!(
        count(&t.db, "orders.events").await,
        events_before + 4,
        "x, a's two and b's: nothing else"
    );
    assert_eq!(
        count(&t.db, "orders.commands").await,
        commands_before + 2,
        "a's and b's records: nothing else"
    );
    let client = t.db.connect().await;
    for (id, stream, committed) in [
        (id_a, fresh_a, a.committed()),
        (id_b, fresh_b, b.committed()),
    ] {
        let row = client
            .query_one(
                "SELECT stream_id, stream_version, global_position, status FROM orders.commands WHERE command_id = $1",
                &[&id],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, Uuid>(0), stream);
        assert_eq!(row.get::<_, i64>(1) as u64, committed.stream_version);
        assert_eq!(row.get::<_, i64>(2) as u64, committed.global_position);
        assert_eq!(row.get::<_, String>(3), "placed");
    }
}

/// A batch whose statement may have committed (no answer within the call's time) is not run
/// again: the re-run would meet the first attempt's rows and answer "nothing was written"
/// (a duplicate event id, a wrong expected version) about events that are in the log. Its
/// appends are answered `Timeout`, as a single append's would be, and the log holds each
/// event once.
#[tokio::test]
async fn a_batch_whose_outcome_is_unknown_is_answered_timeout_not_run_again() {
    for expected in [ExpectedVersion::Any, ExpectedVersion::NoStream] {
        let t = test_store_with(|c| {
            c.group_commit_batch = 16;
            c.statement_timeout = Duration::from_secs(2);
        })
        .await;
        let stream = Uuid::new_v4();
        // The commit outlasts the call's time limit (statement time + 2 s = 4 s), and comes
        // well within the statement time of a run started then.
        slow_commits_of(&t, stream, 4.5).await;
        let once = event("once");
        let answer = append(&t.store, stream, expected, std::slice::from_ref(&once)).await;
        assert!(
            matches!(answer, Err(Error::Timeout)),
            "{expected}: the outcome is unknown, so Timeout; got {answer:?}"
        );
        // The first attempt commits in the end: its event, once.
        let mut logged = Vec::new();
        for _ in 0..100 {
            logged = t.store.read_stream(stream, 0).await.unwrap();
            if !logged.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ids: Vec<Uuid> = logged.iter().map(|e| e.event_id).collect();
        assert_eq!(ids, [once.event_id], "{expected}");
    }
}

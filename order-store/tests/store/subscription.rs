//! The gap-safe global log: no subscriber skips an event, even when transactions commit out
//! of position order.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use order_store::{Cursor, EventListener, ExpectedVersion, RecordedEvent};
use uuid::Uuid;

use order_testkit::pg::TestDatabase;

use crate::support::*;

/// Read everything after `cursor`, page by page.
async fn drain(
    store: &order_store::EventStore,
    cursor: &mut Cursor,
    into: &mut Vec<RecordedEvent>,
) {
    loop {
        let page = store.read_all(*cursor, 100).await.unwrap();
        let Some(last) = page.last() else { return };
        *cursor = last.cursor();
        into.extend(page);
    }
}

/// Events of the log the gap-safe fence (`orders.log_fence()`) still hides.
async fn hidden_events(store: &order_store::EventStore) -> i64 {
    order_testkit::pg::hidden_events(&store.pool().get().await.unwrap()).await
}

#[tokio::test]
async fn an_event_committed_after_later_positions_were_read_is_still_delivered() {
    let t = test_store().await;
    let store = &t.store;
    append(
        store,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        &[event("before")],
    )
    .await
    .unwrap();

    // A writer takes a position, then holds its transaction open.
    let slow = t.db.connect().await;
    slow.batch_execute("BEGIN").await.unwrap();
    let held_id = Uuid::now_v7();
    let held_position: i64 = slow
        .query_one(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload)
             VALUES ($1, 1, $2, 'TestEvent', 1, '{\"label\": \"held\"}') RETURNING global_position",
            &[&Uuid::new_v4(), &held_id],
        )
        .await
        .unwrap()
        .get(0);

    // Later appends commit first and get higher positions.
    for label in ["after-1", "after-2"] {
        let committed = append(
            store,
            Uuid::new_v4(),
            ExpectedVersion::NoStream,
            &[event(label)],
        )
        .await
        .unwrap();
        assert!(committed.global_position as i64 > held_position);
    }

    // A transaction id the fence cannot place for a moment (a session of another test that
    // finished in between) may hold back even "before" briefly, so wait for it.
    let mut cursor = Cursor::START;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.is_empty() && Instant::now() < deadline {
        drain(store, &mut cursor, &mut seen).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let labels: Vec<&str> = seen
        .iter()
        .map(|e| e.payload["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["before"],
        "nothing past the open transaction is delivered"
    );

    // A reader going by position alone would now be past the held event for good.
    let client = t.db.connect().await;
    let committed_positions: Vec<i64> = client
        .query(
            "SELECT global_position FROM orders.events ORDER BY global_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(committed_positions.iter().any(|p| *p > held_position));

    slow.batch_execute("COMMIT").await.unwrap();
    while seen.len() < 4 && Instant::now() < deadline {
        drain(store, &mut cursor, &mut seen).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let labels: BTreeSet<&str> = seen
        .iter()
        .map(|e| e.payload["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        BTreeSet::from(["before", "held", "after-1", "after-2"])
    );
    assert_eq!(seen.len(), 4, "each event exactly once");
    assert!(seen.iter().any(|e| e.event_id == held_id));
    assert!(
        seen.windows(2).all(|w| w[0].cursor() < w[1].cursor()),
        "delivered in cursor order"
    );
}

/// One event labelled `label` on a new stream per label, in order: their positions.
async fn append_each(store: &order_store::EventStore, labels: &[&str]) -> Vec<u64> {
    let mut positions = Vec::with_capacity(labels.len());
    for label in labels {
        let committed = append(
            store,
            Uuid::new_v4(),
            ExpectedVersion::NoStream,
            &[event(label)],
        )
        .await
        .unwrap();
        positions.push(committed.global_position);
    }
    positions
}

/// Read everything after `cursor` until `want` events are in, for at most `limit`.
async fn drain_until(
    store: &order_store::EventStore,
    cursor: &mut Cursor,
    into: &mut Vec<RecordedEvent>,
    want: usize,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    while into.len() < want && Instant::now() < deadline {
        drain(store, cursor, into).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_transaction_held_open_in_another_database_of_the_server_hides_nothing_here() {
    let t = test_store().await;
    let store = &t.store;

    // Another database of the same server: a write transaction opens there and stays open
    // for the whole test, with a transaction id older than every event written here.
    let elsewhere = TestDatabase::migrated().await;
    let other = elsewhere.connect().await;
    other.batch_execute("BEGIN").await.unwrap();
    let other_xid: order_store::Xid8 = other
        .query_one(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload)
             VALUES ($1, 1, $2, 'TestEvent', 1, '{}') RETURNING transaction_id",
            &[&Uuid::new_v4(), &Uuid::now_v7()],
        )
        .await
        .unwrap()
        .get(0);

    let written = append_each(store, &["one", "two", "three"]).await;
    let mut cursor = Cursor::START;
    let mut seen = Vec::new();
    // Other tests' sessions may for a moment hold an id the fence cannot place; the
    // transaction above stays open throughout, so a fence that counted it would never
    // deliver anything here.
    drain_until(store, &mut cursor, &mut seen, 3, Duration::from_secs(30)).await;
    let positions: Vec<u64> = seen.iter().map(|e| e.global_position).collect();
    assert_eq!(
        positions, written,
        "every event, while the other database's transaction is open"
    );
    assert!(
        seen.iter().all(|e| e.transaction_id > other_xid),
        "the open transaction ({other_xid:?}) is older than the events delivered"
    );
    let still_open: i64 = other
        .query_one("SELECT count(*) FROM orders.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(still_open, 1, "the other transaction was open all along");
    other.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn a_transaction_of_this_database_that_has_not_written_an_event_yet_still_holds_the_fence() {
    let t = test_store().await;
    let store = &t.store;

    // A session of this database takes a transaction id without touching the log...
    let slow = t.db.connect().await;
    slow.batch_execute("BEGIN").await.unwrap();
    let slow_xid: order_store::Xid8 = slow
        .query_one("SELECT pg_current_xact_id()", &[])
        .await
        .unwrap()
        .get(0);
    // ...later transactions commit events...
    append_each(store, &["after-1", "after-2"]).await;
    let mut cursor = Cursor::START;
    let mut seen = Vec::new();
    drain(store, &mut cursor, &mut seen).await;
    assert!(
        seen.is_empty(),
        "nothing passes an open transaction of this database: {seen:?}"
    );
    assert!(hidden_events(store).await >= 2);

    // ...and it writes an event last, with the oldest id of them all: delivered first, once.
    let held_id = Uuid::now_v7();
    slow.execute(
        "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload)
         VALUES ($1, 1, $2, 'TestEvent', 1, '{\"label\": \"held\"}')",
        &[&Uuid::new_v4(), &held_id],
    )
    .await
    .unwrap();
    slow.batch_execute("COMMIT").await.unwrap();
    drain_until(store, &mut cursor, &mut seen, 3, Duration::from_secs(60)).await;
    let ids: Vec<Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 3, "{seen:?}");
    assert_eq!(
        ids[0], held_id,
        "the held transaction's event comes first in the log's order"
    );
    assert_eq!(seen[0].transaction_id, slow_xid);
    assert!(seen.windows(2).all(|w| w[0].cursor() < w[1].cursor()));
}

#[tokio::test]
async fn sixty_four_writers_and_a_following_subscriber_see_every_event_exactly_once() {
    let t = test_store_with(|c| c.pool_size = 80).await;
    let writers = 64;
    let appends_per_writer = 60;
    // Writers share 16 streams, so appends to one stream also race and retry.
    let streams: Vec<Uuid> = (0..16).map(|_| Uuid::new_v4()).collect();

    let writers_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let subscriber = {
        let store = t.store.clone();
        let writers_done = writers_done.clone();
        tokio::spawn(async move {
            let mut cursor = Cursor::START;
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let before = seen.len();
                drain(&store, &mut cursor, &mut seen).await;
                // Done once the writers are and nothing is left behind the gap-safe fence
                // (which a transaction id it cannot place may hold back a moment).
                if seen.len() == before
                    && writers_done.load(std::sync::atomic::Ordering::SeqCst)
                    && hidden_events(&store).await == 0
                {
                    drain(&store, &mut cursor, &mut seen).await;
                    return seen;
                }
                assert!(Instant::now() < deadline, "the subscriber never caught up");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = t.store.clone();
            let streams = streams.clone();
            tokio::spawn(async move {
                let mut written = Vec::new();
                for i in 0..appends_per_writer {
                    let stream = streams[(writer + i) % streams.len()];
                    let batch: Vec<_> = (0..1 + i % 3)
                        .map(|k| event(&format!("{writer}/{i}/{k}")))
                        .collect();
                    let ids: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
                    append(&store, stream, ExpectedVersion::Any, &batch)
                        .await
                        .unwrap();
                    written.extend(ids);
                }
                written
            })
        })
        .collect();
    let mut written = BTreeSet::new();
    for task in tasks {
        written.extend(task.await.unwrap());
    }
    writers_done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = subscriber.await.unwrap();

    let seen_ids: Vec<Uuid> = seen.iter().map(|e| e.event_id).collect();
    let unique: BTreeSet<Uuid> = seen_ids.iter().copied().collect();
    assert_eq!(unique.len(), seen_ids.len(), "no event delivered twice");
    assert_eq!(
        unique, written,
        "every written event delivered, nothing else"
    );
    assert!(
        written.len() > 7_000,
        "a real load: {} events",
        written.len()
    );

    // Within each stream, delivery order follows the stream's versions.
    let mut last_version: BTreeMap<Uuid, u64> = BTreeMap::new();
    for event in &seen {
        let previous = last_version
            .insert(event.stream_id, event.stream_version)
            .unwrap_or(0);
        assert_eq!(
            event.stream_version,
            previous + 1,
            "stream {} out of order",
            event.stream_id
        );
    }
}

#[tokio::test]
async fn the_listener_wakes_a_subscriber_after_an_append() {
    let t = test_store().await;
    let mut listener = EventListener::start(t.store.config().clone());
    // The first change marks the LISTEN being in place.
    assert!(
        listener.wait(Duration::from_secs(5)).await,
        "listener connected"
    );
    append(
        &t.store,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        &[event("wake")],
    )
    .await
    .unwrap();
    let started = Instant::now();
    assert!(
        listener.wait(Duration::from_secs(5)).await,
        "woken by the append"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        !listener.wait(Duration::from_millis(200)).await,
        "nothing else happened"
    );
}

/// A checkpoint write checks that the database still holds the checkpoint its writer left:
/// a database that lost writes (failover to an asynchronous standby, restore) fails the
/// check, nothing is written, and the writer reads its checkpoint again.
#[tokio::test]
async fn a_checkpoint_moves_only_from_where_the_database_has_it() {
    use order_store::{Error, Xid8, advance_checkpoint};
    let t = test_store().await;
    let store = &t.store;
    append_each(store, &["one", "two", "three"]).await;
    let events = first_events(store, 3).await;
    let (first, second, third) = (events[0].cursor(), events[1].cursor(), events[2].cursor());
    let (lease, start) = store
        .acquire_lease("guarded", "instance-a", Duration::from_secs(600), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(start, Cursor::START);
    let advance = |from: Cursor, to: Cursor| {
        let lease = lease.clone();
        async move {
            let mut client = store.pool().get().await.unwrap();
            let transaction = client.transaction().await.unwrap();
            let result = advance_checkpoint(&transaction, &lease, from, to, 1, None).await;
            if result.is_ok() {
                transaction.commit().await.unwrap();
            }
            result
        }
    };
    // From the stored checkpoint: allowed.
    advance(Cursor::START, first).await.unwrap();
    assert_eq!(store.checkpoint("guarded").await.unwrap(), first);
    advance(first, second).await.unwrap();
    assert_eq!(store.checkpoint("guarded").await.unwrap(), second);

    // From where the writer believes it is, when the database lost that write: an event that
    // is still in the log is not enough (the projection rows written with the lost
    // checkpoint are gone too).
    for believed in [
        third,
        first,
        Cursor {
            transaction_id: Xid8(third.transaction_id.0 + 1_000_000),
            global_position: third.global_position + 1_000,
        },
    ] {
        let error = advance(believed, third).await.unwrap_err();
        assert!(
            matches!(&error, Error::CheckpointMoved { subscription, .. } if subscription == "guarded"),
            "{error:?}"
        );
        assert_eq!(
            store.checkpoint("guarded").await.unwrap(),
            second,
            "a refused write changes nothing"
        );
    }
    // Nor from the start of the log: a writer whose first page was committed but whose
    // answer was lost would apply that page again.
    let error = advance(Cursor::START, third).await.unwrap_err();
    assert!(matches!(&error, Error::CheckpointMoved { .. }), "{error:?}");
    assert_eq!(store.checkpoint("guarded").await.unwrap(), second);
    // A writer that starts over (a rebuild, a projection created anew) says so.
    {
        let mut client = store.pool().get().await.unwrap();
        let transaction = client.transaction().await.unwrap();
        order_store::restart_checkpoint(&transaction, &lease)
            .await
            .unwrap();
        transaction.commit().await.unwrap();
    }
    assert_eq!(store.checkpoint("guarded").await.unwrap(), Cursor::START);
    advance(Cursor::START, third).await.unwrap();
    assert_eq!(store.checkpoint("guarded").await.unwrap(), third);

    // Another instance's lease still answers LeaseLost, whatever the cursor.
    let stale = order_store::Lease {
        token: lease.token - 1,
        ..lease.clone()
    };
    let mut client = store.pool().get().await.unwrap();
    let transaction = client.transaction().await.unwrap();
    assert!(matches!(
        advance_checkpoint(&transaction, &stale, third, third, 0, None).await,
        Err(Error::LeaseLost { .. })
    ));
}

/// Two writes of the same lease from the same checkpoint, at once (a page whose commit was
/// slow and cut off by a timeout, retried on another connection while the first commits):
/// the second waits for the first's row lock and then finds the checkpoint moved. Only one
/// moves it, and the events are counted once.
#[tokio::test]
async fn two_writes_from_the_same_checkpoint_at_once_move_it_once() {
    use order_store::{Error, advance_checkpoint};
    let t = test_store().await;
    let store = &t.store;
    append_each(store, &["one", "two"]).await;
    let events = first_events(store, 2).await;
    let (first, second) = (events[0].cursor(), events[1].cursor());
    let (lease, _) = store
        .acquire_lease("twice", "instance-a", Duration::from_secs(600), false)
        .await
        .unwrap()
        .unwrap();
    let mut slow = store.pool().get().await.unwrap();
    let slow = slow.transaction().await.unwrap();
    advance_checkpoint(&slow, &lease, Cursor::START, first, 1, None)
        .await
        .unwrap();
    // The retry, on another connection, while the first has not committed yet.
    let retry = {
        let (store, lease) = (store.clone(), lease.clone());
        tokio::spawn(async move {
            let mut client = store.pool().get().await.unwrap();
            let transaction = client.transaction().await.unwrap();
            let result =
                advance_checkpoint(&transaction, &lease, Cursor::START, second, 2, None).await;
            if result.is_ok() {
                transaction.commit().await.unwrap();
            }
            result
        })
    };
    // The retry waits on the first's row lock: wait until the server says so.
    let admin = t.db.connect().await;
    order_testkit::pg::wait_for_lock_waiters(&admin, 1, "the retry", || retry.is_finished()).await;
    slow.commit().await.unwrap();
    let error = retry.await.unwrap().unwrap_err();
    assert!(matches!(&error, Error::CheckpointMoved { .. }), "{error:?}");
    assert_eq!(store.checkpoint("twice").await.unwrap(), first);
    let processed: i64 = admin
        .query_one(
            "SELECT events_processed FROM orders.subscriptions WHERE name = 'twice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(processed, 1, "the events of one write counted once");
}

/// Append one event of `category` to a new stream; its id.
async fn append_one(store: &order_store::EventStore, category: &str) -> Uuid {
    let events = [event(category)];
    let metadata = metadata();
    store
        .append(order_store::AppendRequest {
            stream_id: Uuid::new_v4(),
            category,
            expected: ExpectedVersion::NoStream,
            events: &events,
            metadata: &metadata,
            idempotency: None,
        })
        .await
        .unwrap();
    events[0].event_id
}

/// The first `n` events of the log, once the fence shows them.
async fn first_events(store: &order_store::EventStore, n: usize) -> Vec<RecordedEvent> {
    let waited = Instant::now();
    loop {
        let mut cursor = Cursor::START;
        let mut events = Vec::new();
        drain(store, &mut cursor, &mut events).await;
        if events.len() >= n {
            return events;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "the events never became visible"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first page of the log (of `categories`), once it reads at least `events` events of
/// any category. The fence may stand lower for a moment than it stood at an earlier read: a
/// transaction of another database that commits between the fence's snapshot and its look at
/// the sessions is no longer known to be another database's, so it holds the fence back (the
/// safe side: a transaction of this one would be hidden just the same); a page read just then
/// ends early (once under load in the whole store suite).
async fn page_showing(
    store: &order_store::EventStore,
    categories: Option<&[&str]>,
    events: u64,
) -> order_store::CategoryPage {
    let waited = Instant::now();
    loop {
        let page = store
            .read_page(Cursor::START, 100, categories)
            .await
            .unwrap();
        if page.digest.events() >= events {
            return page;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "the page never showed {events} events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A checkpoint moves only over the events the database holds: pages read from one server
/// and applied on another (a failover to an asynchronous standby between the read and the
/// write) are refused, even where the cursors agree. The new primary hands the transaction ids
/// of what it lost out again, so the same cursors span other events there: going on skipped
/// them (CI, 2026-12-04: "order ... jumps from version 3 to 5" after a failover) and applied
/// events the log no longer holds.
#[tokio::test]
async fn a_checkpoint_moves_only_over_the_events_the_database_holds() {
    use order_store::{Error, LogDigest, verify_read};
    let (a, b) = (test_store().await, test_store().await);
    // Transaction ids are the server's: a1 < b1 < a2 < b2 interleave the two databases, the
    // way a new primary's ids interleave with those of the transactions it lost.
    let a1 = append_one(&a.store, "test").await;
    let b1 = append_one(&b.store, "test").await;
    let a2 = append_one(&a.store, "other").await;
    let b2 = append_one(&b.store, "other").await;
    let (read_a, read_b) = (
        first_events(&a.store, 2).await,
        first_events(&b.store, 2).await,
    );
    let ids = |events: &[RecordedEvent]| events.iter().map(|e| e.event_id).collect::<Vec<_>>();
    assert_eq!(ids(&read_a), [a1, a2]);
    assert_eq!(ids(&read_b), [b1, b2]);
    let (end_a, end_b) = (read_a[1].cursor(), read_b[1].cursor());
    assert!(read_a[0].cursor() < read_b[0].cursor() && read_b[0].cursor() < end_a);
    assert!(end_a < end_b);
    let (digest_a, digest_b) = (LogDigest::of([a1, a2]), LogDigest::of([b1, b2]));
    assert_eq!(digest_a.events(), 2);

    let verify = |store: &order_store::EventStore, from: Cursor, to: Cursor, read: LogDigest| {
        let store = store.clone();
        async move {
            let mut client = store.pool().get().await.unwrap();
            let transaction = client.transaction().await.unwrap();
            verify_read(&transaction, "guarded", from, to, &read).await
        }
    };
    let refused = |result: Result<(), Error>| {
        assert!(
            matches!(&result, Err(Error::CheckpointMoved { subscription, .. }) if subscription == "guarded"),
            "{result:?}"
        );
    };

    // Checked against the database it was read from: holds.
    verify(&a.store, Cursor::START, end_a, digest_a)
        .await
        .unwrap();
    verify(&b.store, Cursor::START, end_b, digest_b)
        .await
        .unwrap();
    verify(&a.store, read_a[0].cursor(), end_a, LogDigest::of([a2]))
        .await
        .unwrap();
    verify(&a.store, end_a, end_a, LogDigest::EMPTY)
        .await
        .unwrap();
    // A page of some categories carries the digest of all it read, others' events included.
    let page = page_showing(&a.store, Some(&["test"]), 2).await;
    assert_eq!(ids(&page.events), [a1]);
    assert_eq!((page.end, page.digest.events()), (Some(end_a), 2));
    verify(&a.store, Cursor::START, end_a, page.digest)
        .await
        .unwrap();
    let all = page_showing(&a.store, None, 2).await;
    assert_eq!((ids(&all.events), all.end), (vec![a1, a2], Some(end_a)));
    // A digest that knows no server (or pages of two) is checked against the events: the
    // one of the pages read above says which server they came from, and on that server the
    // start time is the whole check (its history cannot differ from what it answered).
    assert_eq!(
        LogDigest::of([a1]).merge(page.digest).events(),
        LogDigest::of([a1]).merge(digest_a).events()
    );
    // Digests add up page by page.
    assert_eq!(LogDigest::of([a1]).merge(LogDigest::of([a2])), digest_a);

    // Against the other database: refused. a's page on b: that span holds b1 alone.
    refused(verify(&b.store, Cursor::START, end_a, digest_a).await);
    // b's page on a: that span holds as many events (a1, a2), with other ids.
    refused(verify(&a.store, Cursor::START, end_b, digest_b).await);
    // A page that missed an event, or holds one the database does not.
    refused(verify(&a.store, Cursor::START, end_a, LogDigest::of([a1])).await);
    refused(verify(&a.store, Cursor::START, end_a, LogDigest::of([a1, a2, b1])).await);
    refused(verify(&a.store, Cursor::START, end_a, LogDigest::of([a1, b2])).await);
    refused(verify(&a.store, end_a, end_b, LogDigest::of([b2])).await);
}

/// Shared buffers `sql` touched when run with `position`.
async fn buffers(client: &tokio_postgres::Client, sql: &str, position: i64) -> u64 {
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}");
    // The second run: the first may read the catalog to plan.
    client.query_one(&explain, &[&position]).await.unwrap();
    let plan: serde_json::Value = client
        .query_one(&explain, &[&position])
        .await
        .unwrap()
        .get(0);
    let top = &plan[0]["Plan"];
    top["Shared Hit Blocks"].as_u64().unwrap() + top["Shared Read Blocks"].as_u64().unwrap()
}

/// What each of `sqls` answers for `position`, in one snapshot: the log fence, which the
/// answer is when no event lies above the position, moves with every commit of the cluster.
async fn answers_in_one_snapshot(
    client: &mut tokio_postgres::Client,
    sqls: &[&str],
    position: i64,
) -> Vec<u64> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .unwrap();
    let mut answers = Vec::new();
    for sql in sqls {
        let text: String = tx
            .query_one(&format!("SELECT ({sql})::text"), &[&position])
            .await
            .unwrap()
            .get(0);
        answers.push(text.parse().unwrap());
    }
    tx.commit().await.unwrap();
    answers
}

/// Where SubscribeEvents' `after_position` starts: the oldest transaction above the position.
/// Near the head PostgreSQL's own plan for `min()` walked the whole transaction-id index; the
/// statement reads only the rows above the position there, and gives the same answer as the
/// plain `min()` everywhere.
#[tokio::test]
async fn the_cursor_before_a_position_reads_no_more_than_the_rows_it_must() {
    let t = test_store().await;
    let mut client = t.db.connect().await;
    // 30,000 events, 10 per transaction, as a log has them: transaction ids and positions
    // rising together.
    client
        .batch_execute(
            "DO $$ BEGIN
                FOR i IN 1..3000 LOOP
                    INSERT INTO orders.events
                        (stream_id, stream_version, event_id, event_type, schema_version, payload)
                    SELECT gen_random_uuid(), 1, gen_random_uuid(), 'Filler', 1, '{}'
                    FROM generate_series(1, 10);
                    COMMIT;
                END LOOP;
            END $$",
        )
        .await
        .unwrap();
    client
        .batch_execute("VACUUM ANALYZE orders.events")
        .await
        .unwrap();
    let plain = "SELECT least(
        (SELECT min(transaction_id) FROM orders.events WHERE global_position > $1),
        (SELECT orders.log_fence()))";
    let head: i64 = client
        .query_one("SELECT max(global_position) FROM orders.events", &[])
        .await
        .unwrap()
        .get(0);
    let mut read = Vec::new();
    for position in [
        0,
        1,
        25,
        head / 3,
        head / 2,
        head / 2 + 1,
        head - 100,
        head - 1,
        head,
        head + 5,
    ] {
        let statement = order_store::CURSOR_BEFORE_POSITION_SQL;
        let answers = answers_in_one_snapshot(&mut client, &[statement, plain], position).await;
        assert_eq!(answers[0], answers[1], "at position {position} of {head}");
        let cursor = t
            .store
            .cursor_before_position(position as u64)
            .await
            .unwrap();
        if position < head {
            // The oldest transaction above the position: this database has none in flight.
            assert_eq!(cursor.transaction_id.0, answers[0], "at {position}");
        } else {
            // The fence, read later: never older.
            assert!(cursor.transaction_id.0 >= answers[0], "at {position}");
        }
        read.push((position, buffers(&client, statement, position).await));
    }
    // The index of transaction ids of 30,000 events spans some 90 pages; near either end the
    // statement reads a few.
    let (_, near_head) = read[6];
    let (_, at_start) = read[0];
    assert!(
        near_head <= 12 && at_start <= 12,
        "buffers read, by position: {read:?}"
    );
    let plain_near_head = buffers(&client, plain, head - 100).await;
    assert!(
        plain_near_head > 4 * near_head,
        "the test's premise: the plain min() reads much more near the head ({plain_near_head}); {read:?}"
    );
}

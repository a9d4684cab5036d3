//! The Flow page's window over a log that holds imported history (events recorded at their
//! legacy time, anywhere among the positions), and its bounded counts of orders per state.

use order_console::db::Db;
use order_testkit::pg::TestDatabase;

use crate::support::*;

/// `count` imported events (legacy time, 400 days ago); the last one's position.
async fn import(client: &tokio_postgres::Client, count: i32) -> i64 {
    client
        .query_one(
            "WITH rows AS (
                INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, recorded_at, imported_from)
                SELECT gen_random_uuid(), 1, gen_random_uuid(), 'OrderPlaced', 1, '{}', now() - interval '400 days', 'legacy:' || g
                  FROM generate_series(1, $1) g
                RETURNING global_position)
             SELECT max(global_position) FROM rows",
            &[&count],
        )
        .await
        .unwrap()
        .get(0)
}

/// One native OrderPlaced recorded `ago` (a PostgreSQL interval) before now; its position.
async fn placed(client: &tokio_postgres::Client, ago: &str) -> i64 {
    client
        .query_one(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, recorded_at)
             VALUES (gen_random_uuid(), 1, gen_random_uuid(), 'OrderPlaced', 1, '{}', now() - $1::text::interval)
             RETURNING global_position",
            &[&ago],
        )
        .await
        .unwrap()
        .get(0)
}

/// Imported events before, between and after the recent native ones, in blocks small and
/// larger than one probe of the search: every recent order is counted, and the window starts
/// after the native events older than it.
#[tokio::test]
async fn the_flow_window_is_right_with_imported_events_anywhere_in_the_log() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    for _ in 0..3 {
        placed(&client, "1 hour").await;
    }
    import(&client, 300).await;
    let last_old = placed(&client, "1 hour").await;
    import(&client, 9000).await;
    let first_recent = placed(&client, "2 minutes").await;
    for _ in 0..3 {
        placed(&client, "1 minute").await;
    }
    import(&client, 300).await;
    placed(&client, "30 seconds").await;
    placed(&client, "0 seconds").await;
    import(&client, 20_000).await;

    let reader = Db::new(&settings(&reader_url(&db).await, &[]).store).unwrap();
    let cursor = reader.cursor_since(10.0 * 60.0).await.unwrap();
    assert!(
        cursor.position >= last_old && cursor.position < first_recent,
        "the window starts at {} (the last older native event is at {last_old}, the first recent one at {first_recent})",
        cursor.position
    );

    let console = start(&db, &[]).await;
    let body = eventually(console.addr, "/fragments/flow", 20, |b| {
        b.contains("data-total-placed")
    })
    .await;
    assert!(
        body.contains("data-total-placed>6<"),
        "6 orders placed in the last minutes: {}",
        &body[body.find("data-total-placed").unwrap()..][..80]
    );
}

/// More orders in a state than the count goes to: "10,000+", never a count of the whole
/// state at every refresh.
#[tokio::test]
async fn orders_in_flight_are_counted_up_to_a_bound() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "INSERT INTO orders.order_summaries (order_id, customer_id, status, currency, total_minor, captured_minor, refunded_minor, line_count, stream_version, last_position, placed_at, updated_at)
             SELECT gen_random_uuid(), gen_random_uuid(), 'Placed', 'EUR', 100, 0, 0, 1, 1, g, now() - g * interval '1 ms', now() - g * interval '1 ms' FROM generate_series(1, 10050) g;
             INSERT INTO orders.order_summaries (order_id, customer_id, status, currency, total_minor, captured_minor, refunded_minor, line_count, stream_version, last_position, placed_at, updated_at)
             SELECT gen_random_uuid(), gen_random_uuid(), 'Shipped', 'EUR', 100, 0, 0, 1, 1, g, now(), now() FROM generate_series(1, 7) g;",
        )
        .await
        .unwrap();
    let console = start(&db, &[]).await;
    let body = eventually(console.addr, "/fragments/flow", 20, |b| {
        b.contains("data-state=\"Placed\"")
    })
    .await;
    let placed_row = &body[body.find("<tr data-state=\"Placed\"").unwrap()..];
    let placed_row = &placed_row[..placed_row.find("</tr>").unwrap()];
    assert!(placed_row.contains(">10,000+<"), "{placed_row}");
    let shipped_row = &body[body.find("<tr data-state=\"Shipped\"").unwrap()..];
    let shipped_row = &shipped_row[..shipped_row.find("</tr>").unwrap()];
    assert!(shipped_row.contains(">7<"), "{shipped_row}");
}

/// A long import between the old native events and today's (an import of old history run
/// after today's orders): the search for the window's start runs out of looks and starts
/// early, and the page says it is catching up until it has read up to the head, then counts
/// every recent order.
#[tokio::test]
async fn after_a_long_import_the_flow_says_it_is_catching_up_until_it_has() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    for _ in 0..3 {
        placed(&client, "1 hour").await;
    }
    import(&client, 150_000).await;
    for _ in 0..5 {
        placed(&client, "1 minute").await;
    }
    let console = start(&db, &[]).await;
    let first = eventually(console.addr, "/fragments/flow", 20, |b| {
        b.contains("data-total-placed")
    })
    .await;
    assert!(
        first.contains("data-flow=\"catching-up\""),
        "the first refresh reads 100,000 of the 150,000 events after the start: {}",
        &first[first.find("data-total-placed").unwrap()..][..80]
    );
    let caught_up = eventually(console.addr, "/fragments/flow", 30, |b| {
        !b.contains("data-flow=\"catching-up\"") && b.contains("data-total-placed")
    })
    .await;
    assert!(
        caught_up.contains("data-total-placed>5<"),
        "{}",
        &caught_up[caught_up.find("data-total-placed").unwrap()..][..80]
    );
}

/// The state counts (orders in flight, the finished ones, the longest waiting) are read side
/// by side, each on its own connection within its own time limit, so a page waits for one
/// read's time, not three: with the read model locked, all three wait on the lock at once.
#[tokio::test]
async fn the_state_counts_are_read_side_by_side() {
    use std::time::Duration;
    use tokio::time::Instant;

    let db = TestDatabase::migrated().await;
    let console = start(&db, &["--db-statement-timeout-ms", "60000"]).await;
    let mut locker = db.connect().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE orders.order_summaries IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let addr = console.addr;
    let page = tokio::spawn(async move { get(addr, "/fragments/flow").await });
    let watcher = db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut most = 0;
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        most = most.max(waiting);
        if waiting >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the state counts were not read side by side: at most {most} read(s) waiting at once"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lock.rollback().await.unwrap();
    let page = page.await.unwrap();
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("database"),
        "every read answered once the lock went: {}",
        page.body
    );
}

/// The log's gap-safe order is by writing transaction, not by position: an order placed by a
/// transaction that took its id before another's, and wrote after it (in flight while the
/// console found the window's start, committed later), is counted, as is the other.
#[tokio::test]
async fn an_order_of_an_older_transaction_in_flight_at_the_start_is_counted() {
    let db = TestDatabase::migrated().await;
    let older = db.connect().await;
    let newer = db.connect().await;
    // A: an older transaction id, held open.
    older.batch_execute("BEGIN").await.unwrap();
    older
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap();
    // B: a newer transaction places an order and commits.
    placed(&newer, "0 seconds").await;
    // The console starts its window while A is still in flight.
    let console = start(&db, &[]).await;
    eventually(console.addr, "/fragments/flow", 20, |b| {
        b.contains("data-total-placed")
    })
    .await;
    // A places an order (a later position, the older transaction id) and commits.
    placed(&older, "0 seconds").await;
    older.batch_execute("COMMIT").await.unwrap();
    let body = eventually(console.addr, "/fragments/flow", 20, |b| {
        b.contains("data-total-placed>2<")
    })
    .await;
    assert!(!body.contains("data-total-placed>3<"), "counted once");
}

/// The same, committed before the console starts: the window's start is the first event by
/// position (the newer transaction's), and the older transaction's order after it is counted.
#[tokio::test]
async fn an_order_of_an_older_transaction_committed_later_in_the_window_is_counted() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    placed(&client, "1 hour").await;
    let older = db.connect().await;
    let newer = db.connect().await;
    older.batch_execute("BEGIN").await.unwrap();
    older
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap();
    let first = placed(&newer, "0 seconds").await;
    let second = placed(&older, "0 seconds").await;
    older.batch_execute("COMMIT").await.unwrap();
    assert!(second > first);

    let reader = Db::new(&settings(&reader_url(&db).await, &[]).store).unwrap();
    let cursor = reader.cursor_since(10.0 * 60.0).await.unwrap();
    let (events, _) = reader.events_after(&cursor, 100).await.unwrap();
    let recent = events
        .iter()
        .filter(|(kind, at)| {
            kind == "OrderPlaced"
                && *at
                    > std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs_f64()
                        - 600.0
        })
        .count();
    assert_eq!(recent, 2, "both recent orders, once each: {events:?}");
}

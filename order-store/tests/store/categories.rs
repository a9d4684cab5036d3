//! Event categories: every append records its stream's type, a log written before categories
//! existed reads as orders, and subscribers of some categories get exactly their events, in
//! the gap-safe order, without ever passing an open transaction.

use std::time::{Duration, Instant};

use order_domain::es::Metadata;
use order_store::{
    AppendRequest, CommandWrite, Cursor, EventStore, ExpectedVersion, StoreConfig, StreamAppend,
    StreamOutcome,
};
use order_testkit::pg::TestDatabase;
use uuid::Uuid;

use crate::support::*;

async fn append_in(store: &EventStore, category: &str, label: &str) -> u64 {
    store
        .append(AppendRequest {
            stream_id: Uuid::new_v4(),
            category,
            expected: ExpectedVersion::NoStream,
            events: &[event(label)],
            metadata: &metadata(),
            idempotency: None,
        })
        .await
        .unwrap()
        .committed()
        .global_position
}

async fn categories_by_label(db: &TestDatabase) -> Vec<(String, String)> {
    db.connect()
        .await
        .query(
            "SELECT payload->>'label', category FROM orders.events ORDER BY global_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Wait until nothing in the log is hidden by the gap-safe fence (another test's open
/// transaction may hold it back for a moment).
async fn everything_visible(store: &EventStore) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hidden = order_testkit::pg::hidden_events(&store.pool().get().await.unwrap()).await;
        if hidden == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{hidden} events stayed hidden");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_append_records_its_category_single_and_group_committed() {
    // Group commit on: concurrent appends of both categories share statements.
    let t = test_store_with(|c| {
        c.group_commit_batch = 16;
        c.group_commit_writers = 1;
    })
    .await;
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let store = t.store.clone();
            tokio::spawn(async move {
                let category = if n % 3 == 0 { "store_credit" } else { "order" };
                append_in(&store, category, &format!("{category}-{n}")).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // One statement carrying several streams of one category, through append_commands.
    let outcome = t
        .store
        .append_commands(StreamAppend {
            stream_id: Uuid::new_v4(),
            category: "store_credit".into(),
            expected: ExpectedVersion::NoStream,
            commands: vec![
                CommandWrite {
                    events: vec![event("store_credit-a"), event("store_credit-b")],
                    metadata: Metadata::default(),
                    record: None,
                },
                CommandWrite {
                    events: vec![event("store_credit-c")],
                    metadata: Metadata::default(),
                    record: None,
                },
            ],
        })
        .await
        .unwrap();
    assert!(matches!(outcome, StreamOutcome::Appended(c) if c.len() == 2));

    let rows = categories_by_label(&t.db).await;
    assert_eq!(rows.len(), 43);
    for (label, category) in &rows {
        assert!(
            label.starts_with(&format!("{category}-")),
            "{label} recorded as {category}"
        );
    }
    everything_visible(&t.store).await;
    let read = t.store.read_all(Cursor::START, 100).await.unwrap();
    assert!(read.iter().all(|e| {
        e.payload["label"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}-", e.category))
    }));
}

#[tokio::test]
async fn an_invalid_category_is_refused_and_writes_nothing() {
    let t = test_store().await;
    for category in [
        "",
        "Order",
        "1order",
        "order-line",
        "order line",
        &"x".repeat(64),
    ] {
        let error = t
            .store
            .append(AppendRequest {
                stream_id: Uuid::new_v4(),
                category,
                expected: ExpectedVersion::Any,
                events: &[event("x")],
                metadata: &metadata(),
                idempotency: None,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&error, order_store::Error::InvalidInput(m) if m.contains("category")),
            "{category:?}: {error}"
        );
        let error = t
            .store
            .append_commands(StreamAppend {
                stream_id: Uuid::new_v4(),
                category: category.to_owned().into(),
                expected: ExpectedVersion::Any,
                commands: vec![CommandWrite {
                    events: vec![event("x")],
                    metadata: Metadata::default(),
                    record: None,
                }],
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&error, order_store::Error::InvalidInput(m) if m.contains("category")),
            "{category:?}: {error}"
        );
    }
    assert_eq!(count(&t.db, "orders.events").await, 0);
    // The database refuses what the store would have refused.
    let refused = t
        .db
        .connect()
        .await
        .execute(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, category)
             VALUES (gen_random_uuid(), 1, gen_random_uuid(), 'TestEvent', 1, '{}', 'Not Valid')",
            &[],
        )
        .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn a_subscriber_of_some_categories_gets_exactly_their_events_and_moves_past_the_others() {
    let t = test_store().await;
    let mut expected = Vec::new();
    for n in 0..30 {
        let category = ["order", "store_credit", "loyalty"][n % 3];
        let position = append_in(&t.store, category, &format!("{category}-{n}")).await;
        if category != "order" {
            expected.push(position);
        }
    }
    // A stretch of the log holding none of them.
    for n in 0..12 {
        append_in(&t.store, "order", &format!("order-late-{n}")).await;
    }
    everything_visible(&t.store).await;

    let wanted = ["store_credit", "loyalty"];
    let mut cursor = Cursor::START;
    let mut seen = Vec::new();
    let mut empty_pages = 0;
    loop {
        let page = t.store.read_all_in(cursor, 7, &wanted).await.unwrap();
        let Some(end) = page.end else { break };
        assert!(end > cursor, "the page ends after where it started");
        if let Some(last) = page.events.last() {
            assert!(last.cursor() <= end);
        } else {
            empty_pages += 1;
        }
        for event in &page.events {
            assert!(wanted.contains(&event.category.as_str()));
            assert!(
                event.payload["label"]
                    .as_str()
                    .unwrap()
                    .starts_with(&event.category)
            );
        }
        seen.extend(page.events.iter().map(|e| e.global_position));
        cursor = end;
    }
    assert_eq!(
        seen, expected,
        "every event of the categories, once, in order"
    );
    assert!(
        empty_pages >= 1,
        "pages of other categories move the cursor on"
    );
    let head = t.store.head_position().await.unwrap();
    assert_eq!(cursor.global_position, head, "the cursor reached the head");
    // Nothing of an unknown category, but the cursor still moves.
    let page = t
        .store
        .read_all_in(Cursor::START, 1000, &["nothing_here"])
        .await
        .unwrap();
    assert!(page.events.is_empty());
    assert_eq!(page.end.map(|c| c.global_position), Some(head));
}

#[tokio::test]
async fn a_filtered_read_never_passes_an_open_transaction() {
    let t = test_store().await;
    append_in(&t.store, "store_credit", "store_credit-before").await;
    // A writer of another category takes a position and holds its transaction open.
    let slow = t.db.connect().await;
    slow.batch_execute("BEGIN").await.unwrap();
    slow.execute(
        "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, category)
         VALUES (gen_random_uuid(), 1, gen_random_uuid(), 'TestEvent', 1, '{\"label\": \"store_credit-held\"}', 'store_credit')",
        &[],
    )
    .await
    .unwrap();
    append_in(&t.store, "order", "order-after").await;
    append_in(&t.store, "store_credit", "store_credit-after").await;

    let store = &t.store;
    let read = |cursor| async move {
        let page = store
            .read_all_in(cursor, 100, &["store_credit"])
            .await
            .unwrap();
        let labels: Vec<String> = page
            .events
            .iter()
            .map(|e| e.payload["label"].as_str().unwrap().to_owned())
            .collect();
        (labels, page.end.unwrap_or(cursor))
    };
    let mut cursor = Cursor::START;
    let mut labels = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while labels.is_empty() && Instant::now() < deadline {
        let (more, end) = read(cursor).await;
        labels.extend(more);
        cursor = end;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        labels,
        ["store_credit-before"],
        "nothing past the open transaction"
    );

    slow.batch_execute("COMMIT").await.unwrap();
    while labels.len() < 3 && Instant::now() < deadline {
        let (more, end) = read(cursor).await;
        labels.extend(more);
        cursor = end;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        labels,
        [
            "store_credit-before",
            "store_credit-held",
            "store_credit-after"
        ],
        "the late commit is delivered, before the events of later transactions"
    );
}

#[tokio::test]
async fn a_log_written_before_categories_reads_as_orders_after_the_migration() {
    let db = TestDatabase::empty().await;
    let config = StoreConfig::new(db.url());
    // The database as the release before categories left it.
    order_store::migrate::migrate_to(&config, 2).await.unwrap();
    let client = db.connect().await;
    client
        .batch_execute(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload)
             SELECT gen_random_uuid(), 1, gen_random_uuid(), 'TestEvent', 1, jsonb_build_object('label', 'old-' || n)
             FROM generate_series(1, 50) n",
        )
        .await
        .unwrap();

    let report = order_store::migrate::migrate_to(&config, 3).await.unwrap();
    assert_eq!(
        report.applied,
        ["V3__categories_and_projections".to_owned()],
        "{report:?}"
    );
    let old: Vec<String> = client
        .query(
            "SELECT DISTINCT category FROM orders.events WHERE payload->>'label' LIKE 'old-%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(old, ["order"], "every event written before is an order's");
    // An append of the previous release (no category) during a rolling deployment.
    client
        .batch_execute(
            "SET ROLE orders_app;
             INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload)
             VALUES (gen_random_uuid(), 1, gen_random_uuid(), 'TestEvent', 1, '{\"label\": \"rolling\"}');
             RESET ROLE",
        )
        .await
        .unwrap();
    // The current store (after the later migrations) names its category.
    order_store::migrate(&config).await.unwrap();
    let store = EventStore::new(config).unwrap();
    append_in(&store, "store_credit", "new").await;
    let rows = categories_by_label(&db).await;
    assert_eq!(rows.len(), 52);
    assert_eq!(
        rows[50..],
        [
            ("rolling".to_owned(), "order".to_owned()),
            ("new".to_owned(), "store_credit".to_owned())
        ]
    );
    everything_visible(&store).await;
    let page = store
        .read_all_in(Cursor::START, 100, &["order"])
        .await
        .unwrap();
    assert_eq!(page.events.len(), 51);
    // The read model is registered at the version V2 built it with.
    let registered: (i32, Vec<String>) = client
        .query_one(
            "SELECT version, tables FROM orders.projections WHERE name = 'read_model'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        registered,
        (
            1,
            vec!["order_summaries".to_owned(), "customer_totals".to_owned()]
        )
    );
}

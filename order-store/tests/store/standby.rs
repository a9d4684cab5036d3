//! Reading from a hot standby (an RDS read replica, a reader endpoint): a subscriber there
//! skips nothing, and a read-your-writes check there never answers before the replica has the
//! event. A real standby (pg_basebackup, streaming replication), not a simulation.

use std::time::Duration;

use order_store::{
    Cursor, EventStore, ExpectedVersion, Reach, ServerRole, StoreConfig, advance_checkpoint,
};
use order_testkit::pg::PrivateCluster;
use order_testkit::replication::Replication;
use uuid::Uuid;

use crate::support::*;

fn blocking<T>(f: impl FnOnce() -> Result<T, String>) -> T {
    tokio::task::block_in_place(f).unwrap_or_else(|e| panic!("{e}"))
}

struct Pair {
    primary: PrivateCluster,
    standby: PrivateCluster,
    writer: EventStore,
    reader: EventStore,
}

/// A migrated primary with an asynchronous hot standby; a store on each (the standby's as a
/// replica reader, `ServerRole::Any`).
async fn primary_and_standby() -> Pair {
    let primary = blocking(PrivateCluster::start);
    order_store::migrate(&StoreConfig::new(primary.url("orders")))
        .await
        .unwrap();
    let standby = blocking(|| primary.start_standby(Replication::Asynchronous));
    let writer = EventStore::new(StoreConfig::new(primary.url("orders"))).unwrap();
    let mut config = StoreConfig::new(standby.url("orders"));
    config.server = ServerRole::Any;
    let reader = EventStore::new(config).unwrap();
    Pair {
        primary,
        standby,
        writer,
        reader,
    }
}

impl Pair {
    fn replayed(&self) {
        blocking(|| {
            self.standby
                .wait_replayed(&self.primary, Duration::from_secs(30))
        });
    }
}

/// A session on the primary that holds a transaction open.
async fn session(url: &str) -> tokio_postgres::Client {
    order_testkit::pg::try_connect(url).await.unwrap()
}

/// Insert one event in the open transaction of `client`: its position.
async fn insert_event(client: &tokio_postgres::Client, label: &str) -> i64 {
    client
        .query_one(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, category)
             VALUES ($1, 1, $2, 'TestEvent', 1, jsonb_build_object('label', $3::text), 'test')
             RETURNING global_position",
            &[&Uuid::new_v4(), &Uuid::now_v7(), &label],
        )
        .await
        .unwrap()
        .get(0)
}

/// The labels of every event of the log after `cursor` as `store` reads them page by page,
/// and the cursor it ends at.
async fn labels_after(store: &EventStore, mut cursor: Cursor) -> (Vec<String>, Cursor) {
    let mut labels = Vec::new();
    loop {
        let page = store.read_all(cursor, 100).await.unwrap();
        let Some(last) = page.last() else {
            return (labels, cursor);
        };
        cursor = last.cursor();
        for event in page {
            labels.push(event.payload["label"].as_str().unwrap().to_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_a_standby_skips_no_event_of_a_transaction_still_open_on_the_primary() {
    let pair = primary_and_standby().await;

    // An older transaction writes its event and stays open; a younger one commits after it.
    let late = session(&pair.primary.url("orders")).await;
    late.batch_execute("BEGIN").await.unwrap();
    insert_event(&late, "late").await;
    append(
        &pair.writer,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        &[event("early")],
    )
    .await
    .unwrap();
    pair.replayed();

    // The standby must not deliver "early" yet: past it, "late" (an older transaction, so an
    // earlier cursor) could never be delivered.
    let (first, cursor) = labels_after(&pair.reader, Cursor::START).await;
    let fence: String = session(&pair.standby.url("orders"))
        .await
        .query_one("SELECT orders.log_fence()::text", &[])
        .await
        .unwrap()
        .get(0);
    let late_xid: String = late
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap()
        .get(0);
    late.batch_execute("COMMIT").await.unwrap();
    pair.replayed();
    let (rest, _) = labels_after(&pair.reader, cursor).await;
    let delivered: Vec<String> = first.into_iter().chain(rest).collect();
    assert_eq!(
        delivered,
        ["late", "early"],
        "what a subscriber on the standby delivered, before and after the late commit"
    );
    assert!(
        fence.parse::<u64>().unwrap() <= late_xid.parse::<u64>().unwrap(),
        "the standby's fence {fence} is past the open transaction {late_xid}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_without_the_event_has_not_reached_its_position() {
    let pair = primary_and_standby().await;

    // `early` takes its transaction id first; `late` then takes an id and the position P and
    // stays open; `early` writes at P+1 and commits. A subscriber on the primary may then
    // checkpoint at early's event (its transaction is older than late's): a checkpoint whose
    // position is past P, while the event at P is still to come.
    let early = session(&pair.primary.url("orders")).await;
    early
        .batch_execute("BEGIN; SELECT pg_current_xact_id();")
        .await
        .unwrap();
    let late = session(&pair.primary.url("orders")).await;
    late.batch_execute("BEGIN").await.unwrap();
    let position = insert_event(&late, "late").await;
    let after = insert_event(&early, "early").await;
    assert!(after > position);
    early.batch_execute("COMMIT").await.unwrap();

    let (lease, start) = pair
        .writer
        .acquire_lease("reader_test", "instance-a", Duration::from_secs(600), false)
        .await
        .unwrap()
        .unwrap();
    let page = pair.writer.read_all(start, 100).await.unwrap();
    assert_eq!(page.len(), 1, "the primary delivers early's event only");
    let checkpoint = page[0].cursor();
    assert_eq!(checkpoint.global_position, after as u64);
    {
        let mut client = pair.writer.pool().get().await.unwrap();
        let transaction = client.transaction().await.unwrap();
        advance_checkpoint(&transaction, &lease, start, checkpoint, 1, None)
            .await
            .unwrap();
        transaction.commit().await.unwrap();
    }
    pair.replayed();

    // A replica that has the checkpoint but not the event at P (here: not committed yet; on a
    // lagging replica: committed and acknowledged on the primary, not replayed yet) has not
    // reached P: the subscriber has not applied that event.
    let give_up = tokio::time::Instant::now() + Duration::from_millis(200);
    let reached = pair
        .reader
        .connection_reaching(position as u64, Reach::Subscription("reader_test"), give_up)
        .await
        .unwrap();
    assert!(
        reached.is_err(),
        "the standby answered position {position} as applied by a checkpoint at {checkpoint}, without the event"
    );

    // Once the event is there, its cursor decides: early's checkpoint is still before it.
    late.batch_execute("COMMIT").await.unwrap();
    pair.replayed();
    let give_up = tokio::time::Instant::now() + Duration::from_millis(200);
    let reached = pair
        .reader
        .connection_reaching(position as u64, Reach::Subscription("reader_test"), give_up)
        .await
        .unwrap();
    assert!(reached.is_err());
    // And the log itself holds it now.
    let reached = pair
        .reader
        .connection_reaching(position as u64, Reach::Log, give_up)
        .await
        .unwrap();
    assert!(reached.is_ok());
}

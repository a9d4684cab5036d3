//! The sales projection (an example, never mentioned in the core crates) gets everything the
//! library gives: catch-up, idempotence, lease failover, replay with swap, a rebuild after a
//! version bump, and a `status` line, as the projector's own database role.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use order_examples::SkuSales;
use order_projector::replay::{Progress, ReplayOptions};
use order_projector::{Projector, ProjectorBuilder, Step, Subscription};
use order_store::{Cursor, EventStore};
use tokio::sync::watch;

use crate::support::*;

/// A builder with loop settings for tests: short leases, quick polls.
fn builder(store: &EventStore, owner: &str) -> ProjectorBuilder {
    Projector::builder(store.clone())
        .owner(owner)
        .lease_ttl(Duration::from_secs(2))
        .poll(Duration::from_millis(50))
        .standby_poll(Duration::from_millis(100))
}

async fn assert_folded(f: &Fixture) {
    let stored = sales_table(&f.db).await;
    assert!(!stored.is_empty(), "the fixture confirms orders");
    assert_eq!(stored, sales_from_log(&f.db).await);
    let (open, expected) = open_orders(&f.db).await;
    assert_eq!(open, expected, "open orders");
}

/// Whether `role` may run `sql` (inside a rolled-back transaction).
async fn may(f: &Fixture, role: &str, sql: &str) -> bool {
    let client = f.db.connect().await;
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(&format!("SET LOCAL ROLE {role}"))
        .await
        .unwrap();
    let allowed = client.batch_execute(sql).await.is_ok();
    client.batch_execute("ROLLBACK").await.unwrap();
    allowed
}

#[tokio::test]
async fn the_projection_creates_its_tables_catches_up_and_keeps_up() {
    let f = fixture().await;
    write_orders(&f.orders, 0, 60, 4).await;
    // As orders_projector: the projection brings its tables without a migration.
    let store = EventStore::new(projector_config(&f.db)).unwrap();
    let running = builder(&store, "sales-1")
        .projection(SkuSales::new().page(37))
        .build()
        .unwrap()
        .start();
    caught_up(&store, "sku_sales").await;
    assert_folded(&f).await;
    assert_eq!(registered(&f.db, "sku_sales").await, Some((1, false)));

    write_orders(&f.orders, 60, 30, 3).await;
    caught_up(&store, "sku_sales").await;
    assert_folded(&f).await;
    assert!(running.stop(Duration::from_secs(30)).await);

    // The tables belong to the projector's role, readers get what the projection granted,
    // and nobody else may write them.
    let owner: String = f
        .db
        .connect()
        .await
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'orders' AND tablename = 'sku_sales_daily'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "orders_projector");
    assert!(may(&f, "orders_app", "SELECT * FROM orders.sku_sales_daily").await);
    assert!(
        may(
            &f,
            "orders_readonly",
            "SELECT * FROM orders.sku_sales_daily"
        )
        .await
    );
    assert!(
        !may(
            &f,
            "orders_app",
            "SELECT * FROM orders.sku_sales_open_orders"
        )
        .await
    );
    assert!(!may(&f, "orders_app", "DELETE FROM orders.sku_sales_daily").await);
    assert!(!may(&f, "orders_readonly", "DELETE FROM orders.sku_sales_daily").await);
    // The projector's role still may not touch the log.
    assert!(
        !may(
            &f,
            "orders_projector",
            "INSERT INTO orders.events SELECT * FROM orders.events LIMIT 1"
        )
        .await
    );
    assert!(!may(&f, "orders_projector", "DROP TABLE orders.commands").await);
}

/// Step `subscription` until nothing is left (the whole log visible).
async fn drain(store: &EventStore, subscription: &Subscription, lease: &order_store::Lease) {
    let (_stop, shutdown) = watch::channel(false);
    let mut cursor = store.checkpoint(subscription.name()).await.unwrap();
    // Done at an idle step taken after the whole log was seen visible (the fence may move
    // between an idle step and a look at it: that step did not see what it hid).
    let mut all_visible = false;
    loop {
        match subscription
            .step(store, lease, cursor, &shutdown)
            .await
            .unwrap()
        {
            Step::Progressed { cursor: next, .. } => cursor = next,
            Step::Idle if all_visible => return,
            Step::Idle if hidden_events(store).await == 0 => all_visible = true,
            Step::Idle => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn applying_the_log_again_in_other_pages_changes_nothing() {
    let f = fixture().await;
    write_orders(&f.orders, 0, 50, 4).await;
    let (lease, _) = f
        .store
        .acquire_lease("sku_sales", "test", Duration::from_secs(60), false)
        .await
        .unwrap()
        .unwrap();
    let first = Subscription::projection(SkuSales::new().page(23));
    assert!(matches!(
        first.prepare(&f.store, &lease).await.unwrap(),
        order_projector::Prepared::Ready { cursor } if cursor == Cursor::START
    ));
    drain(&f.store, &first, &lease).await;
    assert_folded(&f).await;

    // The checkpoint back at the start (as after a lost checkpoint): every page again, cut
    // elsewhere, so that pages overlap what was applied in part.
    f.db.connect()
        .await
        .execute(
            "UPDATE orders.subscriptions SET checkpoint_xid = '0', checkpoint_position = 0 WHERE name = 'sku_sales'",
            &[],
        )
        .await
        .unwrap();
    drain(
        &f.store,
        &Subscription::projection(SkuSales::new().page(31)),
        &lease,
    )
    .await;
    assert_folded(&f).await;
}

#[tokio::test]
async fn a_standby_takes_over_when_the_owner_dies() {
    let f = fixture().await;
    write_orders(&f.orders, 0, 40, 4).await;
    let start = |owner: &'static str| {
        let projector = builder(&f.store, owner)
            .projection(SkuSales::new().page(11))
            .build()
            .unwrap();
        // Dropping the task aborts the projector without releasing its lease (as kill -9).
        tokio::spawn(projector.run(std::future::pending()))
    };
    let owner = || async {
        f.store
            .subscriptions()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "sku_sales")
            .and_then(|s| s.owner)
    };
    let a = start("sales-a");
    eventually("a takes the lease", || async {
        owner().await.as_deref() == Some("sales-a")
    })
    .await;
    let b = start("sales-b");
    caught_up(&f.store, "sku_sales").await;
    assert_eq!(owner().await.as_deref(), Some("sales-a"));

    a.abort();
    let _ = a.await;
    write_orders(&f.orders, 40, 30, 3).await;
    eventually("b takes over", || async {
        owner().await.as_deref() == Some("sales-b")
    })
    .await;
    caught_up(&f.store, "sku_sales").await;
    assert_folded(&f).await;
    b.abort();
}

/// Rebuild the sales projection through `store` (in pages of 29 events) and swap it in.
async fn replay_sku_sales(store: &EventStore) -> order_projector::replay::ReplayReport {
    let options = ReplayOptions {
        owner: "replay-test".into(),
        page: 29,
        progress: Progress::None,
        lease_ttl: Duration::from_secs(30),
        ..ReplayOptions::default()
    };
    let (_stop, shutdown) = watch::channel(false);
    order_projector::replay::replay(
        store,
        &Subscription::projection(SkuSales::new()),
        &options,
        &shutdown,
    )
    .await
    .unwrap()
}

/// Count, until stopped, how often a reader found the table missing or empty.
fn watch_readers(f: &Fixture, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    let url = f.db.url().to_owned();
    tokio::spawn(async move {
        let (client, connection) =
            order_store::tokio_postgres::connect(&url, order_store::tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        let (mut reads, mut bad) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            match client
                .query_one("SELECT count(*) FROM orders.sku_sales_daily", &[])
                .await
            {
                Ok(row) if row.get::<_, i64>(0) > 0 => {}
                _ => bad += 1,
            }
            reads += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (reads, bad)
    })
}

#[tokio::test]
async fn replay_while_live_swaps_in_a_rebuilt_table_and_readers_never_see_it_empty() {
    let f = fixture().await;
    write_orders(&f.orders, 0, 60, 4).await;
    let store = EventStore::new(projector_config(&f.db)).unwrap();
    let live = builder(&store, "sales-live")
        .projection(SkuSales::new().page(17))
        .build()
        .unwrap()
        .start();
    caught_up(&store, "sku_sales").await;

    // Orders keep coming and readers keep reading while the replay runs.
    let stop = Arc::new(AtomicBool::new(false));
    let readers = watch_readers(&f, stop.clone());
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (orders, stop, written) = (f.orders.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut n = 1000;
            while !stop.load(Ordering::Relaxed) {
                write_order(&orders, n).await;
                n += 1;
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let report = replay_sku_sales(&store).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let (reads, bad) = readers.await.unwrap();
    assert!(reads > 0);
    assert_eq!(
        bad, 0,
        "readers saw no table or an empty one {bad} times of {reads}"
    );
    assert!(report.events > 0);
    assert_eq!(report.version, 1);
    assert_eq!(registered(&f.db, "sku_sales").await, Some((1, true)));

    // The live projector resumes after the swap and folds what came meanwhile.
    caught_up(&store, "sku_sales").await;
    assert_folded(&f).await;
    assert!(
        written.load(Ordering::Relaxed) > 0,
        "orders arrived during the replay"
    );
    let shadows: i64 = f
        .db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'orders' AND (tablename LIKE '%\\_shadow' OR tablename LIKE '%\\_retired')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(shadows, 0, "no shadow or retired table is left");
    live.stop(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_version_bump_rebuilds_at_the_next_start_without_an_empty_table_in_between() {
    let f = fixture().await;
    write_orders(&f.orders, 0, 60, 4).await;
    let store = EventStore::new(projector_config(&f.db)).unwrap();
    let v1 = builder(&store, "sales-v1")
        .projection(SkuSales::new().page(19))
        .build()
        .unwrap()
        .start();
    caught_up(&store, "sku_sales").await;
    v1.stop(Duration::from_secs(30)).await;
    // Something only a rebuild repairs: the rows of version 1 are wrong for version 2.
    f.db.connect()
        .await
        .execute("UPDATE orders.sku_sales_daily SET units_sold = -1", &[])
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let readers = watch_readers(&f, stop.clone());
    let v2 = builder(&store, "sales-v2")
        .projection(SkuSales::new().with_version(2).page(19))
        .build()
        .unwrap()
        .start();
    eventually("version 2 is swapped in", || async {
        registered(&f.db, "sku_sales").await == Some((2, true))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (reads, bad) = readers.await.unwrap();
    assert_eq!(
        bad, 0,
        "readers saw no table or an empty one {bad} times of {reads}"
    );
    write_orders(&f.orders, 60, 20, 2).await;
    caught_up(&store, "sku_sales").await;
    assert_folded(&f).await;

    v2.stop(Duration::from_secs(30)).await;

    // An instance still at version 1 (a rolled-back deployment) leaves the newer tables
    // alone, and says so in its status line.
    let old = builder(&store, "sales-v1-again")
        .projection(SkuSales::new().page(19))
        .build()
        .unwrap()
        .start();
    let known = [Subscription::projection(SkuSales::new())];
    eventually("the old instance reports the newer tables", || async {
        let status = order_projector::status::collect(&store, &known)
            .await
            .unwrap();
        status.subscriptions.iter().any(|s| {
            s.name == "sku_sales" && s.last_error.as_deref().is_some_and(|e| e.contains("newer"))
        })
    })
    .await;
    let status = order_projector::status::collect(&store, &known)
        .await
        .unwrap();
    let rendered = order_projector::status::render(&status);
    assert!(
        rendered
            .lines()
            .any(|l| l.starts_with("sku_sales") && l.contains("2 (newer than 1)")),
        "status shows the database's version and this binary's: {rendered}"
    );
    write_orders(&f.orders, 80, 5, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.stop(Duration::from_secs(30)).await;
    assert_eq!(registered(&f.db, "sku_sales").await, Some((2, true)));
    assert_eq!(
        sales_table(&f.db)
            .await
            .iter()
            .filter(|r| r.contains(",-1,"))
            .count(),
        0,
        "version 2's rows stay"
    );
}

#[tokio::test]
async fn status_has_a_line_for_the_projection() {
    let f = fixture().await;
    // One writer: positions then grow with commit order, so a caught-up checkpoint is at the
    // head position (the lag in events is head minus checkpoint position).
    write_orders(&f.orders, 0, 20, 1).await;
    let running = builder(&f.store, "sales-status")
        .projection(SkuSales::new())
        .build()
        .unwrap()
        .start();
    caught_up(&f.store, "sku_sales").await;
    let known = [Subscription::projection(SkuSales::new())];
    let status = order_projector::status::collect(&f.store, &known)
        .await
        .unwrap();
    let sales = status
        .subscriptions
        .iter()
        .find(|s| s.name == "sku_sales")
        .unwrap();
    assert_eq!(sales.version, Some(1));
    assert_eq!(sales.code_version, Some(1));
    assert_eq!(sales.lag_events, 0);
    assert_eq!(sales.owner.as_deref(), Some("sales-status"));
    assert!(sales.last_error.is_none());
    let rendered = order_projector::status::render(&status);
    let line = rendered
        .lines()
        .find(|l| l.starts_with("sku_sales"))
        .unwrap_or_else(|| panic!("no sku_sales line in {rendered}"));
    assert!(line.contains("sales-status"), "{line}");
    running.stop(Duration::from_secs(30)).await;
}

/// Two login users of the projector's group role, as in a deployment (`order_projector`, and
/// another after a change of credentials): the first creates the projection's tables, the
/// second may rebuild and swap them, because they belong to the group, not to their creator.
#[tokio::test]
async fn tables_belong_to_the_projector_role_so_another_login_of_it_may_rebuild_them() {
    let f = fixture().await;
    write_orders(&f.orders, 0, 20, 3).await;
    let admin = f.db.connect().await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let logins = [format!("proj_a_{suffix}"), format!("proj_b_{suffix}")];
    for login in &logins {
        admin
            .batch_execute(&format!(
                "CREATE ROLE {login} LOGIN PASSWORD 'test-password-{suffix}' IN ROLE orders_projector"
            ))
            .await
            .unwrap();
    }
    // The test database's URL with the user and password of `login`.
    let url_of = |login: &str| {
        let url = f.db.url();
        let (scheme, rest) = url.split_once("://").unwrap();
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{login}:test-password-{suffix}@{host}")
    };
    let store_as = |login: &str| {
        let mut config = order_store::StoreConfig::new(url_of(login));
        config.pool_size = 8;
        EventStore::new(config).unwrap()
    };

    let first = store_as(&logins[0]);
    let running = builder(&first, "sales-a")
        .projection(SkuSales::new())
        .build()
        .unwrap()
        .start();
    caught_up(&first, "sku_sales").await;
    assert!(running.stop(Duration::from_secs(30)).await);
    let owners = |client: order_store::tokio_postgres::Client| async move {
        client
            .query(
                "SELECT tablename::text, tableowner::text FROM pg_tables
                 WHERE schemaname = 'orders' AND tablename LIKE 'sku_sales%' ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
    };
    let created = owners(f.db.connect().await).await;
    assert!(!created.is_empty());
    assert!(
        created.iter().all(|(_, owner)| owner == "orders_projector"),
        "{created:?}"
    );

    // Tables a login made before they went to the role (as older versions did) are handed
    // over at that login's next start.
    admin
        .batch_execute(&format!(
            "ALTER TABLE orders.sku_sales_daily OWNER TO {}",
            logins[0]
        ))
        .await
        .unwrap();
    // New orders: catching up with them means the restarted projector prepared its tables.
    write_orders(&f.orders, 20, 5, 3).await;
    let running = builder(&first, "sales-a-again")
        .projection(SkuSales::new())
        .build()
        .unwrap()
        .start();
    caught_up(&first, "sku_sales").await;
    assert!(running.stop(Duration::from_secs(30)).await);
    let restarted = owners(f.db.connect().await).await;
    assert!(
        restarted
            .iter()
            .all(|(_, owner)| owner == "orders_projector"),
        "{restarted:?}"
    );

    let second = store_as(&logins[1]);
    let report = replay_sku_sales(&second).await;
    assert!(report.events > 0);
    let rebuilt = owners(f.db.connect().await).await;
    assert_eq!(
        rebuilt.iter().map(|(t, _)| t).collect::<Vec<_>>(),
        created.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );
    assert!(
        rebuilt.iter().all(|(_, owner)| owner == "orders_projector"),
        "{rebuilt:?}"
    );
    assert_folded(&f).await;
    drop((first, second));
    for login in &logins {
        admin
            .batch_execute(&format!(
                "REASSIGN OWNED BY {login} TO orders_projector; DROP OWNED BY {login}; DROP ROLE {login}"
            ))
            .await
            .unwrap();
    }
}

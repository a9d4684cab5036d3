//! A rebuild's swap never makes readers queue for long behind its lock on the live tables,
//! and a session that holds them for long makes it fail with the session named, not hang.

use std::time::{Duration, Instant};

use order_projector::ReadModel;
use order_projector::Subscription;
use order_projector::replay::{Progress, ReplayOptions};
use tokio::sync::watch;

use crate::support::*;

fn options() -> ReplayOptions {
    ReplayOptions {
        owner: "replay-swap".into(),
        page: 97,
        progress: Progress::None,
        lease_ttl: Duration::from_secs(60),
        live_lease_ttl: Duration::from_secs(10),
        allow_older: false,
        bulk: true,
    }
}

/// Whether some session is waiting for a lock on the read model's live summaries table.
async fn swap_waiting(client: &order_store::tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks
                             WHERE NOT granted AND relation = 'orders.order_summaries'::regclass)",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A report holds the live table (a transaction that read it, still open) while a replay
/// comes to its swap: the swap asks for its lock in short tries, so readers arriving meanwhile
/// are answered at once instead of queueing behind it (they used to wait for the report to
/// end, up to the swap's 10 s lock wait), and the swap takes place once the report ends.
#[tokio::test]
async fn readers_do_not_queue_behind_a_swap_waiting_for_its_lock() {
    let f = fixture().await;
    write_orders(&f.handler, 20, 2).await;
    let (lease, cursor) = lease(&f.store, "read_model", "live").await;
    drain(&f.store, &read_model_subscription(100), &lease, cursor).await;
    f.store.release_lease(&lease).await.unwrap();

    let report = f.db.connect().await;
    report
        .batch_execute("BEGIN; SELECT count(*) FROM orders.order_summaries")
        .await
        .unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let replaying = {
        let store = f.store.clone();
        tokio::spawn(async move {
            order_projector::replay::replay(
                &store,
                &Subscription::projection(ReadModel::new()),
                &options(),
                &shutdown,
            )
            .await
        })
    };
    // Readers while the swap tries for its lock: each is answered at once.
    let watcher = f.db.connect().await;
    let reader = f.db.connect().await;
    let mut seen_waiting = 0;
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) && seen_waiting < 5 {
        if swap_waiting(&watcher).await {
            seen_waiting += 1;
            let asked = Instant::now();
            reader
                .query_one("SELECT count(*) FROM orders.order_summaries", &[])
                .await
                .unwrap();
            slowest = slowest.max(asked.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        seen_waiting >= 5,
        "the replay never waited for its lock while the report held the table"
    );
    assert!(!replaying.is_finished(), "the swap went past a held table");
    report.batch_execute("COMMIT").await.unwrap();
    let report_rows = replaying.await.unwrap().unwrap();
    assert_eq!(report_rows.rows[0], ("order_summaries".to_owned(), 20));
    // A reader that came during a try waits for the rest of that try (100 ms), not for the
    // report: 2 s is for a loaded machine.
    assert!(
        slowest < Duration::from_secs(2),
        "a reader waited {slowest:?} behind the swap's lock request"
    );
}

/// A session that holds the live table longer than the swap's patience (20 s) makes the
/// replay fail, naming that session, and leaves the live tables as they were.
#[tokio::test]
async fn a_swap_that_cannot_get_its_lock_names_the_session_holding_the_table() {
    let f = fixture().await;
    write_orders(&f.handler, 5, 1).await;
    let (lease, cursor) = lease(&f.store, "read_model", "live").await;
    drain(&f.store, &read_model_subscription(100), &lease, cursor).await;
    f.store.release_lease(&lease).await.unwrap();
    let before = read_model(&f.db).await;

    let report = f.db.connect().await;
    report
        .batch_execute(
            "SET application_name = 'nightly-report';
             BEGIN; SELECT count(*) FROM orders.order_summaries",
        )
        .await
        .unwrap();
    let pid: i32 = report
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let (_stop, shutdown) = watch::channel(false);
    let error = order_projector::replay::replay(
        &f.store,
        &Subscription::projection(ReadModel::new()),
        &options(),
        &shutdown,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(&format!("pid {pid}")) && error.contains("nightly-report"),
        "{error}"
    );
    assert!(error.contains("nothing was changed"), "{error}");
    report.batch_execute("COMMIT").await.unwrap();
    assert_eq!(read_model(&f.db).await, before);
}

/// The projection's lease, taken by a replay for its catch-up and swap, lasts the live
/// projector's lease time (`live_lease_ttl`), not the rebuild's own 60 s: a replay that dies
/// there holds the live projector up for at most that. It is renewed while the swap waits for
/// its lock, so the live projector cannot take it back under a swap that waits longer.
#[tokio::test]
async fn the_projections_lease_lasts_the_live_lease_time_and_is_renewed_while_the_swap_waits() {
    let f = fixture().await;
    write_orders(&f.handler, 5, 1).await;
    let (lease, cursor) = lease(&f.store, "read_model", "live").await;
    drain(&f.store, &read_model_subscription(100), &lease, cursor).await;
    f.store.release_lease(&lease).await.unwrap();

    let live_ttl = Duration::from_secs(3);
    let report = f.db.connect().await;
    let hold = "BEGIN; SELECT count(*) FROM orders.order_summaries";
    report.batch_execute(hold).await.unwrap();
    let replaying = |shutdown| {
        let store = f.store.clone();
        tokio::spawn(async move {
            let options = ReplayOptions {
                live_lease_ttl: live_ttl,
                ..options()
            };
            order_projector::replay::replay(
                &store,
                &Subscription::projection(ReadModel::new()),
                &options,
                &shutdown,
            )
            .await
        })
    };
    let watcher = f.db.connect().await;
    // Seconds until the projection's lease runs out, as the database says, and its owner.
    let lease_left = || async {
        let row = watcher
            .query_one(
                "SELECT owner, extract(epoch FROM lease_expires_at - now())::float8
                   FROM orders.subscriptions WHERE name = 'read_model'",
                &[],
            )
            .await
            .unwrap();
        (
            row.get::<_, Option<String>>(0),
            row.get::<_, Option<f64>>(1).unwrap_or(f64::NEG_INFINITY),
        )
    };
    // The replay holds the projection's lease and waits for the swap's lock.
    let swap_begins = || async {
        let started = Instant::now();
        while !(lease_left().await.0.as_deref() == Some("replay-swap")
            && swap_waiting(&watcher).await)
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the replay never came to its swap"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };

    let (_stop, shutdown) = watch::channel(false);
    let first = replaying(shutdown);
    swap_begins().await;
    let (owner, left) = lease_left().await;
    assert_eq!(owner.as_deref(), Some("replay-swap"));
    assert!(
        left <= live_ttl.as_secs_f64() + 0.5,
        "the replay took the projection's lease for {left} s, not the live lease's {live_ttl:?}"
    );
    // Twice the lease's time into the swap's wait: still held, renewed meanwhile.
    tokio::time::sleep(live_ttl * 2).await;
    assert!(!first.is_finished(), "the swap went past a held table");
    let intruder = f
        .store
        .acquire_lease("read_model", "live", live_ttl, false)
        .await
        .unwrap();
    assert!(
        intruder.is_none(),
        "the live projector took the lease back under the waiting swap"
    );
    report.batch_execute("COMMIT").await.unwrap();
    first.await.unwrap().unwrap();

    // A replay that dies waiting for its swap: the live projector gets its lease back once
    // the live lease's time has run out (a minute at most on the slowest machine).
    report.batch_execute(hold).await.unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let second = replaying(shutdown);
    swap_begins().await;
    second.abort();
    let _ = second.await;
    let (_, left) = lease_left().await;
    assert!(
        left <= live_ttl.as_secs_f64() + 0.5,
        "a dead replay holds the projection's lease for {left} s more"
    );
    let started = Instant::now();
    loop {
        if let Some((lease, _)) = f
            .store
            .acquire_lease("read_model", "live", live_ttl, false)
            .await
            .unwrap()
        {
            f.store.release_lease(&lease).await.unwrap();
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the live projector never got its lease back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.batch_execute("COMMIT").await.unwrap();
}

//! Replay: rebuilds identical tables from the log, with bounded memory, swaps them in without
//! readers ever seeing an empty or partial table, and hands the subscription back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use order_projector::replay::{Progress, ReplayError, ReplayOptions, ReplayReport};
use order_projector::subscription::{RunSettings, run};
use order_projector::{ReadModel, SqsPublisher, Subscription};
use order_store::EventListener;
use tokio::sync::watch;

use crate::support::*;

fn options() -> ReplayOptions {
    ReplayOptions {
        owner: "replay-test".into(),
        page: 97,
        progress: Progress::None,
        lease_ttl: Duration::from_secs(30),
        live_lease_ttl: Duration::from_secs(10),
        allow_older: false,
        bulk: true,
    }
}

/// Rebuild the read model holding at most `batch_orders` orders in memory.
async fn replay(
    store: &order_store::EventStore,
    batch_orders: usize,
) -> Result<ReplayReport, ReplayError> {
    let (_stop, shutdown) = watch::channel(false);
    order_projector::replay::replay(
        store,
        &Subscription::projection(ReadModel::new().batch_orders(batch_orders)),
        &options(),
        &shutdown,
    )
    .await
}

async fn project_live(f: &Fixture) {
    let (lease, cursor) = lease(&f.store, "read_model", "live").await;
    drain(&f.store, &read_model_subscription(100), &lease, cursor).await;
    f.store.release_lease(&lease).await.unwrap();
}

#[tokio::test]
async fn replay_rebuilds_the_read_model_and_swaps_it_in() {
    let f = fixture().await;
    write_orders(&f.handler, 80, 4).await;
    project_live(&f).await;
    // A bug once damaged the live tables.
    let client = f.db.connect().await;
    client.batch_execute("UPDATE orders.order_summaries SET status = 'Placed', refunded_minor = 0; DELETE FROM orders.customer_totals").await.unwrap();

    let report = replay(&f.store, 250_000).await.unwrap();
    assert_eq!(report.rows[0], ("order_summaries".to_owned(), 80));
    assert_eq!(read_model(&f.db).await, expected_from_log(&f.store).await);
    totals_consistent(&f.db).await;
    assert_eq!(
        f.store.checkpoint("read_model").await.unwrap(),
        report.checkpoint
    );
    let leftovers: i64 = client
        .query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'orders' AND tablename LIKE '%\\_shadow' OR tablename LIKE '%\\_retired'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "no shadow or retired table is left behind");
    let indexes: Vec<String> = client
        .query("SELECT indexname FROM pg_indexes WHERE schemaname = 'orders' AND tablename = 'order_summaries' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        indexes,
        [
            "order_summaries_customer",
            "order_summaries_pkey",
            "order_summaries_placed",
            "order_summaries_status"
        ]
    );

    // The application role can still read the swapped-in tables.
    client.batch_execute("SET ROLE orders_app; SELECT count(*) FROM orders.order_summaries; SELECT count(*) FROM orders.customer_totals; RESET ROLE").await.unwrap();

    // The live subscription continues from the replay's checkpoint.
    write_orders(&f.handler, 5, 1).await;
    project_live(&f).await;
    assert_eq!(read_model(&f.db).await, expected_from_log(&f.store).await);
    totals_consistent(&f.db).await;
}

#[tokio::test]
async fn replay_without_the_bulk_path_builds_the_same_tables() {
    let f = fixture().await;
    write_orders(&f.handler, 60, 6).await;
    everything_visible(&f.store).await;
    let (_stop, shutdown) = watch::channel(false);
    let report = order_projector::replay::replay(
        &f.store,
        &Subscription::projection(ReadModel::new()),
        &ReplayOptions {
            bulk: false,
            ..options()
        },
        &shutdown,
    )
    .await
    .unwrap();
    assert_eq!(report.rows[0], ("order_summaries".to_owned(), 60));
    assert_eq!(read_model(&f.db).await, expected_from_log(&f.store).await);
    totals_consistent(&f.db).await;
}

#[tokio::test]
async fn replay_with_bounded_memory_builds_the_same_tables() {
    let f = fixture().await;
    write_orders(&f.handler, 60, 6).await;
    // The replay stops at what is visible; a transaction id the fence cannot place may hide the
    // newest events for a moment (the live projector picks them up after the swap).
    everything_visible(&f.store).await;
    // At most 7 orders in memory: rows are written out and fetched back again and again.
    replay(&f.store, 7).await.unwrap();
    assert_eq!(read_model(&f.db).await, expected_from_log(&f.store).await);
    totals_consistent(&f.db).await;
}

#[tokio::test]
async fn readers_during_a_replay_always_see_a_complete_table() {
    let f = fixture().await;
    write_orders(&f.handler, 120, 4).await;
    project_live(&f).await;
    let client = f.db.connect().await;
    let full: (i64, i64) = {
        let row = client
            .query_one(
                "SELECT count(*), sum(total_minor)::int8 FROM orders.order_summaries",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (stop, reads, url) = (stop.clone(), reads.clone(), f.db.url().to_owned());
            tokio::spawn(async move {
                let client = order_testkit::pg::try_connect(&url).await.unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let row = client
                        .query_one("SELECT count(*), coalesce(sum(total_minor), 0)::int8 FROM orders.order_summaries", &[])
                        .await
                        .unwrap();
                    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), full, "a reader saw a partial table");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    replay(&f.store, 25).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    assert!(
        reads.load(Ordering::Relaxed) > 10,
        "the readers really read during the replay"
    );
}

#[tokio::test]
async fn replay_preempts_the_live_projector_which_resumes_afterwards() {
    let f = fixture().await;
    write_orders(&f.handler, 30, 3).await;
    let (stop, shutdown) = watch::channel(false);
    let live = tokio::spawn(run(
        read_model_subscription(50),
        f.store.clone(),
        EventListener::start(f.store.config().clone()),
        RunSettings {
            owner: "live".into(),
            lease_ttl: Duration::from_secs(2),
            poll: Duration::from_millis(50),
            standby_poll: Duration::from_millis(100),
            ..RunSettings::default()
        },
        shutdown,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    replay(&f.store, 1000).await.unwrap();
    write_orders(&f.handler, 10, 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while read_model(&f.db).await != expected_from_log(&f.store).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the live projector did not resume"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    totals_consistent(&f.db).await;
    stop.send(true).unwrap();
    live.await.unwrap();
}

/// A replay while orders keep coming ends and swaps in: its catch-up reads up to the head as
/// it was when the catch-up began (or to a page that is not full), not until a read finds
/// nothing new, which steady writes may never leave; the live projector, paused meanwhile,
/// goes on from the swap's checkpoint and applies the rest.
#[tokio::test]
async fn a_replay_under_steady_writes_swaps_in_and_the_live_projector_applies_the_rest() {
    let f = fixture().await;
    write_orders(&f.handler, 30, 3).await;
    let (stop_live, shutdown) = watch::channel(false);
    let live = tokio::spawn(run(
        read_model_subscription(50),
        f.store.clone(),
        EventListener::start(f.store.config().clone()),
        RunSettings {
            owner: "live".into(),
            lease_ttl: Duration::from_secs(2),
            poll: Duration::from_millis(50),
            standby_poll: Duration::from_millis(100),
            ..RunSettings::default()
        },
        shutdown,
    ));
    // Writers that keep appending until the replay has ended (at most 120 s).
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (handler, stop) = (f.handler.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 1_000 + w;
                let started = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120)
                {
                    write_order(&handler, n).await;
                    n += 8;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_keep, replay_shutdown) = watch::channel(false);
    // The writers commit something every few milliseconds, so no read finds nothing new; the
    // replay reads faster than they write.
    let replayed = order_projector::replay::replay(
        &f.store,
        &Subscription::projection(ReadModel::new()),
        &ReplayOptions {
            page: 200,
            ..options()
        },
        &replay_shutdown,
    )
    .await;
    let writing = writers.iter().any(|w| !w.is_finished()) && !stop.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    replayed.unwrap();
    assert!(
        writing,
        "the replay ended only once the writers had stopped (after 120 s)"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while read_model(&f.db).await != expected_from_log(&f.store).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the live projector did not apply what came after the swap"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    totals_consistent(&f.db).await;
    stop_live.send(true).unwrap();
    live.await.unwrap();
}

#[tokio::test]
async fn replaying_a_sink_is_refused_and_changes_nothing() {
    let f = fixture().await;
    let publisher = order_projector::sqs::Publisher::new(
        order_testkit::sqs::client(),
        "http://127.0.0.1:1/nowhere".into(),
        1,
    );
    let (_stop, shutdown) = watch::channel(false);
    let result = order_projector::replay::replay(
        &f.store,
        &Subscription::sink(SqsPublisher::new(publisher)),
        &options(),
        &shutdown,
    )
    .await;
    assert!(matches!(result, Err(ReplayError::UnknownProjection { .. })));
    assert!(f.store.subscriptions().await.unwrap().is_empty());
}

/// A rebuild that lost its rebuild lease while it waited (here: for the projection's lease)
/// to another rebuild must neither swap in the tables that other rebuild is filling nor drop
/// them: the swap is fenced by the rebuild lease, and so is the cleanup after a failure.
#[tokio::test]
async fn a_rebuild_that_lost_its_lease_neither_swaps_in_nor_drops_the_successors_tables() {
    let f = fixture().await;
    write_orders(&f.handler, 40, 3).await;
    project_live(&f).await;
    let before = read_model(&f.db).await;

    // Hold the projection's subscription row: the rebuild folds, builds its indexes, then
    // waits at taking the projection's lease.
    let mut holder = f.db.connect().await;
    let hold = holder.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM orders.subscriptions WHERE name = 'read_model' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let store = f.store.clone();
    let stale = tokio::spawn(async move { replay(&store, 1000).await });
    let client = f.db.connect().await;
    order_testkit::pg::wait_for_lock_waiters(
        &client,
        1,
        "the rebuild (at the projection's lease)",
        || stale.is_finished(),
    )
    .await;

    // Meanwhile its rebuild lease lapsed and another rebuild took it and started over, in
    // shadow tables of its own (marked by a comment).
    let taken = client
        .execute(
            "UPDATE orders.subscriptions
             SET owner = 'successor', lease_token = lease_token + 1,
                 lease_expires_at = now() + interval '60 seconds',
                 checkpoint_xid = '0', checkpoint_position = 0
             WHERE name = $1",
            &[&order_projector::replay::rebuild_lease_name("read_model")],
        )
        .await
        .unwrap();
    assert_eq!(taken, 1);
    client
        .batch_execute("COMMENT ON TABLE orders.order_summaries_shadow IS 'successor'")
        .await
        .unwrap();
    hold.commit().await.unwrap();

    let result = tokio::time::timeout(Duration::from_secs(60), stale)
        .await
        .expect("the stale rebuild did not end")
        .unwrap();
    assert!(result.is_err(), "the stale rebuild swapped: {result:?}");
    let comment = |table: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT obj_description(to_regclass($1), 'pg_class')",
                    &[&table],
                )
                .await
                .unwrap()
                .get::<_, Option<String>>(0)
        }
    };
    assert_eq!(
        comment("orders.order_summaries").await,
        None,
        "the successor's table was swapped in"
    );
    assert_eq!(
        comment("orders.order_summaries_shadow").await.as_deref(),
        Some("successor"),
        "the successor's shadow table was dropped"
    );
    assert_eq!(read_model(&f.db).await, before, "the live tables changed");
    let live = f
        .store
        .subscriptions()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "read_model")
        .unwrap();
    assert_eq!(live.owner, None, "the projection's lease was given back");
}

/// A projection whose tables are named by the test, each row an event it applied.
struct Named {
    name: &'static str,
    version: u32,
    tables: Vec<&'static str>,
}

impl order_projector::Projection for Named {
    type Event = order_domain::OrderEvent;

    fn name(&self) -> &str {
        self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn categories(&self) -> order_projector::Categories {
        order_projector::Categories::of::<order_domain::Order>()
    }

    fn tables(&self) -> Vec<order_projector::Table> {
        self.tables
            .iter()
            .map(|name| {
                order_projector::Table::new(
                    name,
                    "CREATE TABLE {table} (position bigint PRIMARY KEY)",
                )
            })
            .collect()
    }

    async fn apply(
        &self,
        page: &order_projector::Page<order_domain::OrderEvent>,
        tx: &order_projector::Transaction<'_>,
        tables: &order_projector::Tables,
    ) -> Result<(), order_projector::ApplyError> {
        for table in &self.tables {
            insert_positions(page, tx, &tables[*table]).await?;
        }
        Ok(())
    }
}

/// A rebuild never drops a table that is not the projection's own: a new version that names a
/// table someone else has (another projection's, one made by hand), or a first replay of a
/// projection whose table name is taken, is refused, and every table stays as it was.
#[tokio::test]
async fn a_rebuild_refuses_a_table_that_is_not_the_projections_own_and_drops_nothing() {
    let f = fixture().await;
    write_orders(&f.handler, 3, 2).await;
    everything_visible(&f.store).await;
    let admin = f.db.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE orders.someone_elses (note text); \
             INSERT INTO orders.someone_elses VALUES ('keep me')",
        )
        .await
        .unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let replay_of = |projection: Named| {
        let store = f.store.clone();
        let shutdown = shutdown.clone();
        async move {
            order_projector::replay::replay(
                &store,
                &Subscription::projection(projection),
                &options(),
                &shutdown,
            )
            .await
        }
    };
    let stray_rows = || async {
        f.db.connect()
            .await
            .query_one("SELECT count(*) FROM orders.someone_elses", &[])
            .await
            .map(|row| row.get::<_, i64>(0))
    };

    // Refused for the taken table, which keeps its row.
    let refused_and_kept = |result: Result<ReplayReport, ReplayError>, what: &'static str| async move {
        let error = result.expect_err(what);
        assert!(
            error
                .to_string()
                .contains("orders.someone_elses already exists"),
            "{what}: {error}"
        );
        assert_eq!(
            stray_rows().await.unwrap(),
            1,
            "{what}: someone else's table was dropped"
        );
    };

    // Version 1 has a table of its own.
    let first = replay_of(Named {
        name: "grower",
        version: 1,
        tables: vec!["grower_a"],
    })
    .await;
    assert!(first.is_ok(), "{first:?}");
    // Version 2 adds a table whose name is taken.
    let second = replay_of(Named {
        name: "grower",
        version: 2,
        tables: vec!["grower_a", "someone_elses"],
    })
    .await;
    refused_and_kept(second, "a rebuild over someone else's table").await;
    let registered: i32 = admin
        .query_one(
            "SELECT version FROM orders.projections WHERE name = 'grower'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(registered, 1, "the registry moved on");
    let applied: i64 = admin
        .query_one("SELECT count(*) FROM orders.grower_a", &[])
        .await
        .unwrap()
        .get(0);
    assert!(applied > 0, "version 1's live table was emptied");

    // A first replay of a projection whose table name is taken.
    let fresh = replay_of(Named {
        name: "newcomer",
        version: 1,
        tables: vec!["someone_elses"],
    })
    .await;
    refused_and_kept(fresh, "a first replay over someone else's table").await;
}

/// A projection whose bulk fold holds everything in memory until the end (one flush, by
/// `finish`'s time) and takes its time over each page until `seen` is set: a rebuild of a big
/// log, observed long before its first flush.
struct SlowFold {
    seen: Arc<AtomicBool>,
    flushes: Arc<AtomicUsize>,
}

impl order_projector::Projection for SlowFold {
    type Event = order_domain::OrderEvent;

    fn name(&self) -> &str {
        "slow_fold"
    }

    fn version(&self) -> u32 {
        1
    }

    fn categories(&self) -> order_projector::Categories {
        order_projector::Categories::of::<order_domain::Order>()
    }

    fn tables(&self) -> Vec<order_projector::Table> {
        vec![order_projector::Table::new(
            "slow_fold",
            "CREATE TABLE {table} (position bigint PRIMARY KEY)",
        )]
    }

    async fn apply(
        &self,
        page: &order_projector::Page<order_domain::OrderEvent>,
        tx: &order_projector::Transaction<'_>,
        tables: &order_projector::Tables,
    ) -> Result<(), order_projector::ApplyError> {
        insert_positions(page, tx, &tables["slow_fold"]).await
    }

    fn bulk(&self) -> Option<Box<dyn order_projector::BulkFold<order_domain::OrderEvent>>> {
        Some(Box::new(SlowFolding {
            seen: self.seen.clone(),
            flushes: self.flushes.clone(),
            held: Vec::new(),
        }))
    }
}

struct SlowFolding {
    seen: Arc<AtomicBool>,
    flushes: Arc<AtomicUsize>,
    held: Vec<i64>,
}

impl order_projector::BulkFold<order_domain::OrderEvent> for SlowFolding {
    fn fold<'a>(
        &'a mut self,
        page: &'a order_projector::Page<order_domain::OrderEvent>,
        _client: &'a order_projector::Client,
        _tables: &'a order_projector::Tables,
    ) -> futures::future::BoxFuture<'a, Result<(), order_projector::ApplyError>> {
        Box::pin(async move {
            self.held
                .extend(page.into_iter().map(|e| e.position() as i64));
            if !self.seen.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        })
    }

    fn should_flush(&self) -> bool {
        false
    }

    fn flush<'a>(
        &'a mut self,
        tx: &'a order_projector::Transaction<'_>,
        tables: &'a order_projector::Tables,
    ) -> futures::future::BoxFuture<'a, Result<(), order_projector::ApplyError>> {
        Box::pin(async move {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            for position in self.held.drain(..) {
                tx.execute(
                    &format!("INSERT INTO {} VALUES ($1)", &tables["slow_fold"]),
                    &[&position],
                )
                .await?;
            }
            Ok(())
        })
    }

    fn finish<'a>(
        &'a mut self,
        _tx: &'a order_projector::Transaction<'_>,
        _tables: &'a order_projector::Tables,
    ) -> futures::future::BoxFuture<'a, Result<(), order_projector::ApplyError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A rebuild's progress shows in `status` before its first flush: the operator can tell a
/// rebuild that works from one that is stuck, while its committed checkpoint (what the swap
/// and every fenced write go from) stays where the last flush left it.
#[tokio::test]
async fn a_rebuilds_progress_shows_in_status_before_its_first_flush() {
    rebuild_progress_shows_before_the_first_flush(true).await;
}

/// The same for the first rebuild of a projection that never ran (no row of its own yet):
/// `status` shows it under the projection's name.
#[tokio::test]
async fn the_first_rebuild_of_a_new_projection_shows_in_status() {
    rebuild_progress_shows_before_the_first_flush(false).await;
}

async fn rebuild_progress_shows_before_the_first_flush(projection_has_a_row: bool) {
    let f = fixture().await;
    write_orders(&f.handler, 60, 3).await;
    everything_visible(&f.store).await;
    let seen = Arc::new(AtomicBool::new(false));
    let flushes = Arc::new(AtomicUsize::new(0));
    let subscription = Subscription::projection(SlowFold {
        seen: seen.clone(),
        flushes: flushes.clone(),
    });
    let known = [Subscription::projection(SlowFold {
        seen: seen.clone(),
        flushes: flushes.clone(),
    })];
    if projection_has_a_row {
        let (live, _) = lease(&f.store, "slow_fold", "live").await;
        f.store.release_lease(&live).await.unwrap();
    }

    let (_stop, shutdown) = watch::channel(false);
    let replaying = {
        let store = f.store.clone();
        tokio::spawn(async move {
            let options = ReplayOptions {
                page: 5,
                ..options()
            };
            order_projector::replay::replay(&store, &subscription, &options, &shutdown).await
        })
    };
    // Each page takes 100 ms until progress is seen: without progress records, the whole
    // rebuild (dozens of pages) passes with nothing to see before its only flush.
    let mut observed = None;
    while !replaying.is_finished() {
        let status = order_projector::status::collect(&f.store, &known)
            .await
            .unwrap();
        let rebuild = status
            .subscriptions
            .iter()
            .find(|s| s.name == "slow_fold")
            .and_then(|s| s.rebuild.clone());
        if let Some(rebuild) = rebuild
            && rebuild.events_read > 0
        {
            observed = Some((rebuild, flushes.load(Ordering::SeqCst), status));
            seen.store(true, Ordering::SeqCst);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = replaying.await.unwrap().unwrap();
    let (rebuild, flushes_then, status) =
        observed.expect("the rebuild's progress never showed before it ended");
    let head = status.head_position;
    assert_eq!(flushes_then, 0, "observed before the first flush");
    assert_eq!(
        rebuild.checkpoint_position, 0,
        "the committed checkpoint does not move before a flush"
    );
    assert_eq!(
        rebuild.lag_events, head,
        "its lag counts from the committed one"
    );
    assert!(rebuild.events_read < report.events, "observed mid-way");
    assert!(rebuild.newest_read_age_seconds.is_some());
    let text = order_projector::status::render(&status);
    assert!(
        text.contains(&format!("read {} events", rebuild.events_read))
            && text.contains("committed at 0"),
        "{text}"
    );
    assert_eq!(flushes.load(Ordering::SeqCst), 1, "one flush, at the end");
    let rows: i64 =
        f.db.connect()
            .await
            .query_one("SELECT count(*) FROM orders.slow_fold", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(rows as u64, report.events, "every event folded, once");
}

/// A dead replay (`kill -9` during its fold) leaves its rebuild lease live until it runs out:
/// `status` shows that lease's time left and how long ago the rebuild's row was last written,
/// and says so when nothing was written for over 30 s; a rebuild lease that ran out is no
/// rebuild. Rows made by hand, as such a replay leaves them.
#[tokio::test]
async fn status_shows_when_a_rebuild_last_wrote_its_progress_and_when_its_lease_runs_out() {
    let f = fixture().await;
    write_orders(&f.handler, 3, 1).await;
    f.db.connect()
        .await
        .batch_execute(
            "INSERT INTO orders.subscriptions (name, owner, lease_expires_at, events_processed, updated_at)
             VALUES ('stalled', 'p-1', now() + interval '1 hour', 3, now()),
                    ('stalled#rebuild', 'replay-stalled', now() + interval '10 minutes', 70000, now() - interval '45 seconds'),
                    ('working', 'p-1', now() + interval '1 hour', 3, now()),
                    ('working#rebuild', 'replay-working', now() + interval '10 minutes', 500, now()),
                    ('ended', 'p-1', now() + interval '1 hour', 3, now()),
                    ('ended#rebuild', 'replay-ended', now() - interval '5 seconds', 900, now() - interval '65 seconds')",
        )
        .await
        .unwrap();
    let status = order_projector::status::collect(&f.store, &[])
        .await
        .unwrap();
    let text = order_projector::status::render(&status);
    let line = |owner: &str| {
        text.lines()
            .find(|l| l.contains(owner))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let stalled = line("replay-stalled");
    assert!(
        stalled.contains("rebuilding into shadow tables: read 70000 events")
            && stalled.contains("lease runs out in ")
            && stalled.contains("progress written "),
        "{text}"
    );
    assert!(
        text.contains(&format!("{stalled}\n{:<20} no progress for ", "")),
        "the next line says the stalled one wrote nothing for a while: {text}"
    );
    let working = line("replay-working");
    assert!(
        working.contains("lease runs out in ")
            && working.contains("progress written ")
            && !text.contains(&format!("{working}\n{:<20} no progress", "")),
        "{text}"
    );
    assert!(
        !text.contains("replay-ended"),
        "a lease that ran out is no rebuild: {text}"
    );

    let rebuild = |name: &str| {
        status
            .subscriptions
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.rebuild.clone())
    };
    let stalled = rebuild("stalled").unwrap();
    assert!(
        (45.0..75.0).contains(&stalled.updated_seconds_ago),
        "{stalled:?}"
    );
    assert!(
        (540.0..=600.0).contains(&stalled.lease_expires_in_seconds),
        "{stalled:?}"
    );
    let working = rebuild("working").unwrap();
    assert!(working.updated_seconds_ago < 30.0, "{working:?}");
    assert!(
        rebuild("ended").is_none(),
        "a lease that ran out is no rebuild"
    );
    // In the JSON too.
    let json = serde_json::to_value(&status).unwrap();
    let stalled_json = json["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "stalled")
        .unwrap();
    assert!(stalled_json["rebuild"]["lease_expires_in_seconds"].is_f64());
    assert!(stalled_json["rebuild"]["updated_seconds_ago"].is_f64());
}

/// A projection whose `apply` panics (a team's bug) on its `panic_at`-th page.
struct PanicsOnPage {
    panic_at: usize,
    pages: AtomicUsize,
}

impl order_projector::Projection for PanicsOnPage {
    type Event = order_domain::OrderEvent;

    fn name(&self) -> &str {
        "panics_on_page"
    }

    fn version(&self) -> u32 {
        1
    }

    fn categories(&self) -> order_projector::Categories {
        order_projector::Categories::of::<order_domain::Order>()
    }

    fn tables(&self) -> Vec<order_projector::Table> {
        vec![order_projector::Table::new(
            "panics_on_page",
            "CREATE TABLE {table} (position bigint PRIMARY KEY)",
        )]
    }

    async fn apply(
        &self,
        page: &order_projector::Page<order_domain::OrderEvent>,
        tx: &order_projector::Transaction<'_>,
        tables: &order_projector::Tables,
    ) -> Result<(), order_projector::ApplyError> {
        if self.pages.fetch_add(1, Ordering::SeqCst) + 1 == self.panic_at {
            panic!("a bug in the team's projection");
        }
        insert_positions(page, tx, &tables["panics_on_page"]).await
    }
}

/// A replay whose projection panics ends with that panic as its error, and cleans up as after
/// any failure: its shadow tables dropped and its rebuild lease released, so that the next
/// replay may start at once (not refused as "already running" by a replay that is gone).
#[tokio::test]
async fn a_replay_whose_projection_panics_drops_its_shadows_and_releases_its_lease() {
    let f = fixture().await;
    write_orders(&f.handler, 20, 3).await;
    let (_keep, shutdown) = watch::channel(false);
    let options = ReplayOptions {
        page: 10,
        bulk: false,
        ..options()
    };
    for attempt in 1..=2 {
        let subscription = Subscription::projection(PanicsOnPage {
            panic_at: 2,
            pages: AtomicUsize::new(0),
        });
        let replayed =
            order_projector::replay::replay(&f.store, &subscription, &options, &shutdown).await;
        match replayed {
            Err(ReplayError::Panicked(message)) => {
                assert!(
                    message.contains("a bug in the team's projection"),
                    "{message}"
                );
            }
            other => panic!("attempt {attempt}: {other:?}"),
        }
        let client = f.db.connect().await;
        let tables: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%panics_on_page%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(tables, 0, "attempt {attempt}: its shadow table is left");
        let rebuild = f
            .store
            .subscriptions()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "panics_on_page#rebuild");
        assert!(
            rebuild.as_ref().is_none_or(|s| s.owner.is_none()),
            "attempt {attempt}: the rebuild lease is held: {rebuild:?}"
        );
    }
}

/// A replay refused because another holds the projection's rebuild lease says whose, and when
/// that lease runs out (a replay killed mid-way holds it until then; the operator was told
/// only the owner).
#[tokio::test]
async fn a_replay_refused_for_a_rebuild_in_progress_says_when_its_lease_runs_out() {
    let f = fixture().await;
    write_orders(&f.handler, 2, 1).await;
    let (_keep, shutdown) = watch::channel(false);
    f.store
        .acquire_lease(
            &order_projector::replay::rebuild_lease_name("read_model"),
            "replay-elsewhere",
            Duration::from_secs(60),
            false,
        )
        .await
        .unwrap()
        .expect("the rebuild lease is free");
    let refused = order_projector::replay::replay(
        &f.store,
        &read_model_subscription(100),
        &options(),
        &shutdown,
    )
    .await;
    match &refused {
        Err(
            error @ ReplayError::Busy {
                owner, expires_in, ..
            },
        ) => {
            assert_eq!(owner, "replay-elsewhere");
            let left = expires_in.expect("the lease's time left");
            assert!(left <= Duration::from_secs(60), "{left:?}");
            let message = error.to_string();
            assert!(
                message.contains("owner replay-elsewhere; its lease runs out in ")
                    && message.contains("if that replay was killed, run this again then"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A replay checks the names `run` checks before it writes anything: a table's name goes into
/// SQL (one ending in `; DROP TABLE ...` dropped another table, and a projection name with a
/// space left rows `status` showed for ever).
#[tokio::test]
async fn a_replay_refuses_the_names_run_refuses_and_changes_nothing() {
    let f = fixture().await;
    write_orders(&f.handler, 3, 1).await;
    let admin = f.db.connect().await;
    admin
        .batch_execute("CREATE TABLE orders.replay_victim (n int)")
        .await
        .unwrap();
    let (_stop, shutdown) = watch::channel(false);
    for (name, table) in [
        ("hostile_table", "t; DROP TABLE orders.replay_victim; --"),
        ("Ticket Board; --", "ticket_board"),
    ] {
        let subscription = Subscription::projection(Named {
            name,
            version: 1,
            tables: vec![table],
        });
        let refused =
            order_projector::replay::replay(&f.store, &subscription, &options(), &shutdown)
                .await
                .unwrap_err();
        assert!(matches!(refused, ReplayError::Setup(_)), "{refused:?}");
        let exists: bool = admin
            .query_one(
                "SELECT to_regclass('orders.replay_victim') IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(exists, "{name}: the other table is still there");
        let rows: i64 = admin
            .query_one(
                "SELECT count(*) FROM orders.subscriptions WHERE name LIKE $1 || '%' \
                 OR name LIKE '%' || $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 0, "{name}: no lease or registration was written");
    }
}

/// Two builds using one projection name at one version with other tables (two teams, or
/// tables changed without a version bump): neither `run` nor a replay takes the other's
/// registration over. `run` said "replay rebuilds them", and that replay dropped the other
/// build's live tables.
#[tokio::test]
async fn a_projection_declaring_other_tables_at_the_registered_version_is_refused() {
    let f = fixture().await;
    write_orders(&f.handler, 3, 1).await;
    let (_stop, shutdown) = watch::channel(false);
    let team = |tables: Vec<&'static str>| {
        Subscription::projection(Named {
            name: "clash",
            version: 1,
            tables,
        })
    };
    let a = team(vec!["a_board"]);
    order_projector::replay::replay(&f.store, &a, &options(), &shutdown)
        .await
        .unwrap();
    let admin = f.db.connect().await;
    let rows = |table: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(&format!("SELECT count(*) FROM orders.{table}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let before = rows("a_board").await;
    assert!(before > 0);

    let leases = || {
        let admin = &admin;
        async move {
            admin
                .query(
                    "SELECT name, owner, lease_token, updated_at::text FROM orders.subscriptions \
                     ORDER BY name",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    let row: (String, Option<String>, i64, String) =
                        (r.get(0), r.get(1), r.get(2), r.get(3));
                    row
                })
                .collect::<Vec<_>>()
        }
    };
    for b in [team(vec!["b_board"]), team(vec!["a_board", "b_board"])] {
        let held = leases().await;
        let refused = order_projector::replay::replay(&f.store, &b, &options(), &shutdown)
            .await
            .unwrap_err();
        assert_eq!(leases().await, held, "no lease taken, none written");
        let why = refused.to_string();
        assert!(
            matches!(refused, ReplayError::Setup(_))
                && why.contains("a_board")
                && why.contains("version"),
            "{why}"
        );
        let (lease, _) = lease(&f.store, "clash", "team-b").await;
        let stopped = b.prepare(&f.store, &lease).await.unwrap_err().to_string();
        assert!(
            stopped.contains("a_board") && !stopped.contains("replay rebuilds"),
            "{stopped}"
        );
        f.store.release_lease(&lease).await.unwrap();
        assert_eq!(rows("a_board").await, before, "team A's table is untouched");
    }
    // The build that registered them still runs.
    let (lease, _) = lease(&f.store, "clash", "team-a").await;
    assert!(a.prepare(&f.store, &lease).await.is_ok());
}

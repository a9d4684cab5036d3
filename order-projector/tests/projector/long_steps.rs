//! A rebuild's lease outlives its long steps: a flush (or the index build) that takes longer
//! than the lease's time does not let another rebuild take the lease under it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use order_projector::Subscription;
use order_projector::replay::{Progress, ReplayOptions};
use tokio::sync::watch;

use crate::support::*;

/// Folds positions in memory and takes `flush_for` over its one flush (at the end).
struct LongFlush {
    flush_for: Duration,
    flushing: Arc<AtomicBool>,
}

impl order_projector::Projection for LongFlush {
    type Event = order_domain::OrderEvent;

    fn name(&self) -> &str {
        "long_flush"
    }

    fn version(&self) -> u32 {
        1
    }

    fn categories(&self) -> order_projector::Categories {
        order_projector::Categories::of::<order_domain::Order>()
    }

    fn tables(&self) -> Vec<order_projector::Table> {
        vec![order_projector::Table::new(
            "long_flush",
            "CREATE TABLE {table} (position bigint PRIMARY KEY)",
        )]
    }

    async fn apply(
        &self,
        page: &order_projector::Page<order_domain::OrderEvent>,
        tx: &order_projector::Transaction<'_>,
        tables: &order_projector::Tables,
    ) -> Result<(), order_projector::ApplyError> {
        insert_positions(page, tx, &tables["long_flush"]).await
    }

    fn bulk(&self) -> Option<Box<dyn order_projector::BulkFold<order_domain::OrderEvent>>> {
        Some(Box::new(LongFlushing {
            flush_for: self.flush_for,
            flushing: self.flushing.clone(),
            held: Vec::new(),
        }))
    }
}

struct LongFlushing {
    flush_for: Duration,
    flushing: Arc<AtomicBool>,
    held: Vec<i64>,
}

impl order_projector::BulkFold<order_domain::OrderEvent> for LongFlushing {
    fn fold<'a>(
        &'a mut self,
        page: &'a order_projector::Page<order_domain::OrderEvent>,
        _client: &'a order_projector::Client,
        _tables: &'a order_projector::Tables,
    ) -> futures::future::BoxFuture<'a, Result<(), order_projector::ApplyError>> {
        Box::pin(async move {
            self.held
                .extend(page.into_iter().map(|e| e.position() as i64));
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
            self.flushing.store(true, Ordering::SeqCst);
            tokio::time::sleep(self.flush_for).await;
            for position in self.held.drain(..) {
                tx.execute(
                    &format!("INSERT INTO {} VALUES ($1)", &tables["long_flush"]),
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

/// A flush that takes twice the lease's time: the rebuild keeps its lease meanwhile (another
/// rebuild asking for it near the flush's end is refused), and it completes.
#[tokio::test]
async fn a_flush_longer_than_the_lease_keeps_the_rebuilds_lease() {
    let f = fixture().await;
    write_orders(&f.handler, 10, 2).await;
    everything_visible(&f.store).await;
    let ttl = Duration::from_secs(2);
    let flushing = Arc::new(AtomicBool::new(false));
    let subscription = Subscription::projection(LongFlush {
        flush_for: ttl * 2,
        flushing: flushing.clone(),
    });
    let (_stop, shutdown) = watch::channel(false);
    let replaying = {
        let store = f.store.clone();
        tokio::spawn(async move {
            let options = ReplayOptions {
                owner: "replay-long".into(),
                page: 97,
                progress: Progress::None,
                lease_ttl: ttl,
                live_lease_ttl: ttl,
                allow_older: false,
                bulk: true,
            };
            order_projector::replay::replay(&store, &subscription, &options, &shutdown).await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !flushing.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flush never began"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Past the lease's time since the flush began (so past the last renewal before it).
    tokio::time::sleep(ttl + ttl / 2).await;
    let intruder = f
        .store
        .acquire_lease(
            "long_flush#rebuild",
            "intruder",
            Duration::from_secs(60),
            false,
        )
        .await
        .unwrap();
    assert!(
        intruder.is_none(),
        "another rebuild took the lease during the flush: {intruder:?}"
    );
    let report = replaying.await.unwrap().unwrap();
    assert_eq!(report.rows[0].1, report.events);
}

/// [`LongFlush`] (its one flush takes `flush_for`), applying each page of the replay's
/// catch-ups only once the test lets it (a permit of `gate` each), noting when one begins.
struct SlowCatchUp {
    inner: LongFlush,
    gate: Arc<tokio::sync::Semaphore>,
    applying: Arc<AtomicBool>,
}

impl order_projector::Projection for SlowCatchUp {
    type Event = order_domain::OrderEvent;

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn version(&self) -> u32 {
        self.inner.version()
    }

    fn categories(&self) -> order_projector::Categories {
        self.inner.categories()
    }

    fn tables(&self) -> Vec<order_projector::Table> {
        self.inner.tables()
    }

    async fn apply(
        &self,
        page: &order_projector::Page<order_domain::OrderEvent>,
        tx: &order_projector::Transaction<'_>,
        tables: &order_projector::Tables,
    ) -> Result<(), order_projector::ApplyError> {
        self.applying.store(true, Ordering::SeqCst);
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
        self.inner.apply(page, tx, tables).await
    }

    fn bulk(&self) -> Option<Box<dyn order_projector::BulkFold<order_domain::OrderEvent>>> {
        self.inner.bulk()
    }
}

/// The projection's lease, which a replay takes from the live projector for its catch-up and
/// swap, lasts only the live projector's lease time: a catch-up page that takes longer than
/// that keeps it (renewed beside the page), so the live projector cannot take it back under
/// the replay, and the replay swaps in.
#[tokio::test]
async fn a_catch_up_page_longer_than_the_projections_lease_keeps_it() {
    let f = fixture().await;
    write_orders(&f.handler, 10, 2).await;
    everything_visible(&f.store).await;
    let live_ttl = Duration::from_secs(1);
    let flushing = Arc::new(AtomicBool::new(false));
    let applying = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let subscription = Subscription::projection(SlowCatchUp {
        inner: LongFlush {
            flush_for: Duration::from_secs(2),
            flushing: flushing.clone(),
        },
        gate: gate.clone(),
        applying: applying.clone(),
    });
    let (_stop, shutdown) = watch::channel(false);
    let replaying = {
        let store = f.store.clone();
        tokio::spawn(async move {
            let options = ReplayOptions {
                owner: "replay-slow".into(),
                page: 1000,
                progress: Progress::None,
                lease_ttl: Duration::from_secs(60),
                live_lease_ttl: live_ttl,
                allow_older: false,
                bulk: true,
            };
            order_projector::replay::replay(&store, &subscription, &options, &shutdown).await
        })
    };
    let wait_for = |flag: Arc<AtomicBool>, what: &'static str| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !flag.load(Ordering::SeqCst) {
            assert!(tokio::time::Instant::now() < deadline, "{what} never began");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // Orders written while the bulk fold flushes are those of the catch-up before the
    // projection's lease is taken; orders written during that catch-up's page are the last
    // catch-up's, under the projection's lease.
    wait_for(flushing, "the flush").await;
    write_orders(&f.handler, 3, 1).await;
    everything_visible(&f.store).await;
    // That page waits for the test: the orders it writes now come after it.
    wait_for(applying.clone(), "the first catch-up's page").await;
    write_orders(&f.handler, 3, 1).await;
    everything_visible(&f.store).await;
    applying.store(false, Ordering::SeqCst);
    gate.add_permits(1);
    wait_for(applying, "the last catch-up's page").await;
    // Twice the projection's lease into that page, which waits for the test.
    tokio::time::sleep(live_ttl * 2).await;
    let intruder = f
        .store
        .acquire_lease("long_flush", "live", live_ttl, false)
        .await
        .unwrap();
    assert!(
        intruder.is_none(),
        "the live projector took the lease back under a slow catch-up page: {intruder:?}"
    );
    gate.add_permits(1_000);
    let report = replaying.await.unwrap().unwrap();
    assert_eq!(report.rows[0].1, report.events);
}

//! A sink delivers only under its lease, and a page it delivered is not delivered again by
//! the same lease holder because the checkpoint write after it failed.
//!
//! SQS deduplicates by event id for 5 minutes only, and a team's sink not at all: an instance
//! that lost its lease and keeps retrying its page, or one that delivers a whole page again
//! after every failed checkpoint write, queues events twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use order_domain::{Order, OrderEvent};
use order_projector::subscription::{RunSettings, run};
use order_projector::{Categories, Failure, Page, Sink, StepError, Subscription, Undelivered};
use order_store::{Cursor, EventListener, EventStore};
use tokio::sync::watch;
use uuid::Uuid;

use crate::support::*;

/// Counts its calls; fails every one of them (a destination that is down) when `failing`.
struct Counting {
    name: &'static str,
    failing: bool,
    calls: Arc<AtomicUsize>,
}

impl Sink for Counting {
    type Event = OrderEvent;
    fn name(&self) -> &str {
        self.name
    }
    fn categories(&self) -> Categories {
        Categories::of::<Order>()
    }
    async fn deliver(&self, _page: &Page<OrderEvent>) -> Result<(), Undelivered> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing {
            Err(Undelivered::all(Failure::Transient, "503 from the test"))
        } else {
            Ok(())
        }
    }
}

/// Waits (up to 60 s) until `calls` reaches `at_least`.
async fn wait_for_calls(calls: &AtomicUsize, at_least: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while calls.load(Ordering::SeqCst) < at_least {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Owner "a" retries a page its destination keeps failing; another owner takes the lease
/// (as a replay or a standby after a pause does). "a" must stop sending before its next try
/// and end its step with the lease lost, instead of retrying for ever: a retry that went
/// through after SQS's dedup window would queue the page a second time.
#[tokio::test]
async fn a_sink_that_lost_its_lease_stops_retrying_its_page() {
    let f = fixture().await;
    for n in 0..2 {
        write_order(&f.handler, n).await;
    }
    everything_visible(&f.store).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let subscription = Subscription::sink(Counting {
        name: "flaky",
        failing: true,
        calls: calls.clone(),
    });
    let (lease_a, cursor) = lease(&f.store, "flaky", "a").await;
    let (_stop, shutdown) = watch::channel(false);
    let mut step = {
        let store = f.store.clone();
        tokio::spawn(async move { subscription.step(&store, &lease_a, cursor, &shutdown).await })
    };
    wait_for_calls(&calls, 1, "the sink was never called").await;
    let (lease_b, _) = f
        .store
        .acquire_lease("flaky", "b", Duration::from_secs(60), true)
        .await
        .unwrap()
        .expect("a preempting lease");
    let at_takeover = calls.load(Ordering::SeqCst);
    // The first retry comes after a backoff of at most 200 ms; 30 s is for a loaded machine.
    let ended = tokio::time::timeout(Duration::from_secs(30), &mut step).await;
    let after = calls.load(Ordering::SeqCst) - at_takeover;
    let Ok(result) = ended else {
        step.abort();
        panic!(
            "owner \"a\" is still delivering 30 s after losing its lease: {after} more deliver \
             calls since \"b\" took it"
        );
    };
    let result = result.unwrap();
    assert!(
        matches!(result, Err(StepError::LeaseLost)),
        "the step must end with the lease lost: {result:?}"
    );
    assert!(
        after <= 1,
        "owner \"a\" called the sink {after} times after losing its lease"
    );
    // Nothing more from "a", and the new owner's checkpoint is untouched by it.
    let settled = calls.load(Ordering::SeqCst);
    assert_eq!(
        f.store.checkpoint("flaky").await.unwrap(),
        Cursor::START,
        "nothing was acknowledged"
    );
    assert!(
        f.store
            .renew_lease(&lease_b, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert_eq!(calls.load(Ordering::SeqCst), settled);
}

/// A lease taken over before the page is sent: nothing is sent at all (before, the page went
/// out and only the checkpoint write after it was refused).
#[tokio::test]
async fn a_sink_whose_lease_was_taken_sends_nothing() {
    let f = fixture().await;
    write_order(&f.handler, 0).await;
    everything_visible(&f.store).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let subscription = Subscription::sink(Counting {
        name: "stale_sink",
        failing: false,
        calls: calls.clone(),
    });
    let (stale, cursor) = lease(&f.store, "stale_sink", "old").await;
    f.store
        .acquire_lease("stale_sink", "new", Duration::from_secs(60), true)
        .await
        .unwrap()
        .expect("a preempting lease");
    let (_stop, shutdown) = watch::channel(false);
    let result = subscription.step(&f.store, &stale, cursor, &shutdown).await;
    assert!(matches!(result, Err(StepError::LeaseLost)), "{result:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a stale owner sent the page to the sink"
    );
    assert_eq!(
        f.store.checkpoint("stale_sink").await.unwrap(),
        Cursor::START
    );
}

/// Records the event ids it is given; on its first call, before acknowledging, has another
/// session lock the subscription's row, so that the checkpoint write after the delivery
/// waits and runs into the statement timeout.
struct LockingAfterFirst {
    delivered: Arc<Mutex<Vec<Uuid>>>,
    calls: Arc<AtomicUsize>,
    locker: Arc<tokio::sync::Mutex<order_store::tokio_postgres::Client>>,
}

impl Sink for LockingAfterFirst {
    type Event = OrderEvent;
    fn name(&self) -> &str {
        "blip"
    }
    fn categories(&self) -> Categories {
        Categories::of::<Order>()
    }
    async fn deliver(&self, page: &Page<OrderEvent>) -> Result<(), Undelivered> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        self.delivered
            .lock()
            .unwrap()
            .extend(page.iter().map(|e| e.recorded.event_id));
        if call == 0 {
            self.locker
                .lock()
                .await
                .batch_execute(
                    "BEGIN; SELECT 1 FROM orders.subscriptions WHERE name = 'blip' FOR UPDATE",
                )
                .await
                .unwrap();
        }
        Ok(())
    }
}

/// Lock waits of `client`'s database on the checkpoint write: (pid, when it started).
async fn checkpoint_writes_waiting(
    client: &order_store::tokio_postgres::Client,
) -> Vec<(i32, std::time::SystemTime)> {
    client
        .query(
            "SELECT pid, query_start FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE '%WITH held AS%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The database does not take the checkpoint write after a page was delivered (a blip: the
/// write waits for a lock past the statement timeout). The write is tried again; the page,
/// already acknowledged, is not delivered a second time.
#[tokio::test]
async fn a_failed_checkpoint_write_after_a_delivery_does_not_deliver_the_page_again() {
    let f = fixture().await;
    for n in 0..3 {
        write_order(&f.handler, n).await;
    }
    everything_visible(&f.store).await;
    let mut log = Vec::new();
    let mut end = Cursor::START;
    loop {
        let page = f.store.read_all(end, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        end = last.cursor();
        log.extend(page.iter().map(|e| e.event_id));
    }
    // A short statement timeout: a blocked checkpoint write fails in a second, not in five.
    let mut config = f.store.config().clone();
    config.statement_timeout = Duration::from_secs(1);
    let store = EventStore::new(config).unwrap();

    let monitor = f.db.connect().await;
    let locker = Arc::new(tokio::sync::Mutex::new(f.db.connect().await));
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let subscription = Subscription::sink(LockingAfterFirst {
        delivered: delivered.clone(),
        calls: calls.clone(),
        locker: locker.clone(),
    });
    let (stop, shutdown) = watch::channel(false);
    let settings = RunSettings {
        owner: "a".into(),
        // No renewal (an UPDATE of the locked row too) while the lock is held.
        lease_ttl: Duration::from_secs(120),
        poll: Duration::from_millis(50),
        standby_poll: Duration::from_millis(100),
        ..RunSettings::default()
    };
    let task = tokio::spawn(run(
        subscription,
        store.clone(),
        EventListener::start(store.config().clone()),
        settings,
        shutdown,
    ));

    // The checkpoint write after the delivery waits for the lock ...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let first = loop {
        if let Some(&waiting) = checkpoint_writes_waiting(&monitor).await.first() {
            break waiting;
        }
        assert!(!task.is_finished(), "the subscription's task ended");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the checkpoint write never waited for the lock ({} deliveries)",
            calls.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // ... until the statement timeout ends it (the lock is still held).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while checkpoint_writes_waiting(&monitor).await.contains(&first) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the blocked checkpoint write was never cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        store.checkpoint("blip").await.unwrap(),
        Cursor::START,
        "the checkpoint cannot have moved while its row was locked"
    );
    locker.lock().await.batch_execute("COMMIT").await.unwrap();

    // The checkpoint gets past the page.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while f.store.checkpoint("blip").await.unwrap() != end {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the checkpoint never got past the page ({} deliveries)",
            calls.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("it stops when asked")
        .unwrap();

    let mut delivered = delivered.lock().unwrap().clone();
    let sent = delivered.len();
    delivered.sort();
    delivered.dedup();
    assert_eq!(
        sent,
        delivered.len(),
        "events were delivered twice ({} deliveries of the page)",
        calls.load(Ordering::SeqCst)
    );
    log.sort();
    assert_eq!(delivered, log, "every event delivered, exactly once");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A projection that stores nothing (its one table is only for its registration).
struct Nothing(&'static str);

impl order_projector::Projection for Nothing {
    type Event = OrderEvent;
    fn name(&self) -> &str {
        self.0
    }
    fn version(&self) -> u32 {
        1
    }
    fn categories(&self) -> Categories {
        Categories::of::<Order>()
    }
    fn tables(&self) -> Vec<order_projector::Table> {
        vec![order_projector::Table::new(
            self.0,
            "CREATE TABLE {table} (position bigint PRIMARY KEY)",
        )]
    }
    async fn apply(
        &self,
        _page: &Page<OrderEvent>,
        _tx: &order_projector::Transaction<'_>,
        _tables: &order_projector::Tables,
    ) -> Result<(), order_projector::ApplyError> {
        Ok(())
    }
}

/// Subscription names are shared by every binary using the database: a sink and a projection
/// of one name (in two teams' binaries) would share one checkpoint, each moving it past
/// events the other never saw. Whichever comes second is refused, and nothing moves.
#[tokio::test]
async fn a_sink_and_a_projection_never_share_a_name() {
    let f = fixture().await;
    for n in 0..3 {
        write_order(&f.handler, n).await;
    }
    everything_visible(&f.store).await;
    let (_stop, shutdown) = watch::channel(false);

    // A projection first: a sink of its name is refused.
    let projection = Subscription::projection(Nothing("first_projection"));
    let (lease_p, _) = lease(&f.store, "first_projection", "p").await;
    let prepared = projection.prepare(&f.store, &lease_p).await;
    assert!(prepared.is_ok(), "{prepared:?}");
    let sink = Subscription::sink(Counting {
        name: "first_projection",
        failing: false,
        calls: Arc::default(),
    });
    let refused = sink.prepare(&f.store, &lease_p).await;
    match refused {
        Err(StepError::Stopped(why)) => assert!(why.contains("projection"), "{why}"),
        other => panic!("a sink named like a projection: {other:?}"),
    }

    // A sink first, which has delivered: a projection of its name is refused, and the sink's
    // checkpoint stays where it was.
    let calls = Arc::new(AtomicUsize::new(0));
    let sink = Subscription::sink(Counting {
        name: "first_sink",
        failing: false,
        calls: calls.clone(),
    });
    let (lease_s, cursor) = lease(&f.store, "first_sink", "s").await;
    drain(&f.store, &sink, &lease_s, cursor).await;
    assert!(calls.load(Ordering::SeqCst) > 0);
    let checkpoint = f.store.checkpoint("first_sink").await.unwrap();
    assert_ne!(checkpoint, Cursor::START);
    let projection = Subscription::projection(Nothing("first_sink"));
    let refused = projection.prepare(&f.store, &lease_s).await;
    match refused {
        Err(StepError::Stopped(why)) => assert!(why.contains("in use"), "{why}"),
        other => panic!("a projection named like a sink: {other:?}"),
    }
    assert_eq!(f.store.checkpoint("first_sink").await.unwrap(), checkpoint);
    // Nor does a replay of it take the name over.
    let replayed = order_projector::replay::replay(
        &f.store,
        &Subscription::projection(Nothing("first_sink")),
        &order_projector::replay::ReplayOptions {
            owner: "replay".into(),
            page: 100,
            progress: order_projector::replay::Progress::None,
            lease_ttl: Duration::from_secs(30),
            live_lease_ttl: Duration::from_secs(10),
            allow_older: false,
            bulk: true,
        },
        &shutdown,
    )
    .await;
    assert!(replayed.is_err(), "{replayed:?}");
    assert_eq!(f.store.checkpoint("first_sink").await.unwrap(), checkpoint);
}

/// A sink whose delivery hangs (a destination that accepted the connection and never
/// answers); counts the deliveries begun and those given up (dropped unfinished).
struct Hanging {
    begun: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

/// Counts itself into `dropped` when the delivery holding it is dropped unfinished.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Sink for Hanging {
    type Event = OrderEvent;
    fn name(&self) -> &str {
        "hanging"
    }
    fn categories(&self) -> Categories {
        Categories::of::<Order>()
    }
    async fn deliver(&self, _page: &Page<OrderEvent>) -> Result<(), Undelivered> {
        let _guard = DropCount(self.dropped.clone());
        self.begun.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// An owner whose delivery is under way when another owner takes its lease stops delivering
/// as soon as its next renewal finds the lease taken (a third of the lease's time), instead of
/// sending the rest of the page under a lease it no longer holds: the delivery is dropped.
#[tokio::test]
async fn a_delivery_under_way_stops_when_a_renewal_finds_the_lease_taken() {
    let f = fixture().await;
    write_order(&f.handler, 0).await;
    everything_visible(&f.store).await;
    let begun = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let subscription = Subscription::sink(Hanging {
        begun: begun.clone(),
        dropped: dropped.clone(),
    });
    let (stop, shutdown) = watch::channel(false);
    let settings = RunSettings {
        owner: "a".into(),
        lease_ttl: Duration::from_millis(1500),
        poll: Duration::from_millis(50),
        standby_poll: Duration::from_millis(100),
        ..RunSettings::default()
    };
    let task = tokio::spawn(run(
        subscription,
        f.store.clone(),
        EventListener::start(f.store.config().clone()),
        settings,
        shutdown,
    ));
    wait_for_calls(&begun, 1, "the delivery never began").await;
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    f.store
        .acquire_lease("hanging", "b", Duration::from_secs(600), true)
        .await
        .unwrap()
        .expect("a preempting lease");
    // A renewal comes every 0.5 s; 30 s is for a loaded machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dropped.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "owner \"a\" still delivers 30 s after losing its lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // It stands by: "b" holds the lease for 10 minutes, so nothing more is begun.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(begun.load(Ordering::SeqCst), 1);
    assert_eq!(f.store.checkpoint("hanging").await.unwrap(), Cursor::START);
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("run stops")
        .unwrap();
}

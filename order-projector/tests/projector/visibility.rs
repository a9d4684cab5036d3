//! Failures while preparing a projection's tables or rebuilding it after a version bump are
//! visible: the last error in `status`, the `order_projector_stopped` gauge while they last,
//! and a failing rebuild is retried with a growing backoff, not every 30 s from the start of
//! the log; once the cause is gone (a stray table dropped, a fix deployed) the subscription
//! recovers by itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once};
use std::time::{Duration, Instant};

use order_domain::{Order, OrderEvent};
use order_projector::subscription::{Prepared, RunSettings, run};
use order_projector::{
    ApplyError, Categories, Page, Projection, Sink, Subscription, Table, Tables, Undelivered,
};
use order_store::{Cursor, EventListener, EventStore};
use tokio::sync::watch;

use crate::support::*;

/// Every gauge the code under test sets, by name and labels (`name{label=value,...}`).
static GAUGES: LazyLock<Mutex<HashMap<String, Arc<AtomicU64>>>> = LazyLock::new(Default::default);

/// A recorder that keeps the gauges where a test can read them (counters and histograms are
/// dropped).
struct Gauges;

fn key_of(key: &metrics::Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|label| format!("{}={}", label.key(), label.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl metrics::Recorder for Gauges {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        let gauge = GAUGES
            .lock()
            .unwrap()
            .entry(key_of(key))
            .or_insert_with(|| Arc::new(AtomicU64::new(0f64.to_bits())))
            .clone();
        metrics::Gauge::from_arc(gauge)
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// Install [`Gauges`] as the process's recorder (once; before the subscriptions start, which
/// register their gauges when they do).
fn record_gauges() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        metrics::set_global_recorder(Gauges).unwrap();
    });
}

/// `order_projector_stopped{subscription=name}`, if the subscription registered it.
fn stopped(name: &str) -> Option<f64> {
    GAUGES
        .lock()
        .unwrap()
        .get(&format!("order_projector_stopped{{subscription={name}}}"))
        .map(|gauge| f64::from_bits(gauge.load(Ordering::Relaxed)))
}

/// A projection of one row per order event, whose version may refuse one event (while
/// `refusing`), counting each time `apply` meets that event.
#[derive(Clone)]
struct Probe {
    name: &'static str,
    version: u32,
    refuse: Option<u64>,
    refusing: Arc<AtomicBool>,
    met: Arc<Mutex<Vec<Instant>>>,
}

impl Probe {
    fn new(name: &'static str, version: u32) -> Self {
        Self {
            name,
            version,
            refuse: None,
            refusing: Arc::new(AtomicBool::new(true)),
            met: Arc::default(),
        }
    }
}

impl Projection for Probe {
    type Event = OrderEvent;

    fn name(&self) -> &str {
        self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn categories(&self) -> Categories {
        Categories::of::<Order>()
    }

    fn tables(&self) -> Vec<Table> {
        vec![Table::new(
            self.name,
            "CREATE TABLE {table} (stream_id uuid NOT NULL, stream_version bigint NOT NULL,
             PRIMARY KEY (stream_id, stream_version))",
        )]
    }

    fn page_size(&self) -> u32 {
        7
    }

    async fn apply(
        &self,
        page: &Page<OrderEvent>,
        tx: &order_projector::Transaction<'_>,
        tables: &Tables,
    ) -> Result<(), ApplyError> {
        let insert = tx
            .prepare_cached(&format!(
                "INSERT INTO {} VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &tables[self.name]
            ))
            .await?;
        for event in page {
            if self.refuse == Some(event.position()) {
                self.met.lock().unwrap().push(Instant::now());
                if self.refusing.load(Ordering::SeqCst) {
                    return Err(ApplyError::invalid(event, "version 2 refuses this event"));
                }
            }
            tx.execute(
                &insert,
                &[&event.stream_id(), &(event.stream_version() as i64)],
            )
            .await?;
        }
        Ok(())
    }
}

fn settings() -> RunSettings {
    RunSettings {
        owner: "visible".into(),
        lease_ttl: Duration::from_secs(2),
        poll: Duration::from_millis(50),
        standby_poll: Duration::from_millis(100),
        ..RunSettings::default()
    }
}

fn start(
    f: &Fixture,
    subscription: Subscription,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run(
        subscription,
        f.store.clone(),
        EventListener::start(f.store.config().clone()),
        settings(),
        shutdown,
    ));
    (stop, task)
}

/// The subscription's line of `status`.
async fn status_of(
    store: &EventStore,
    subscription: &Subscription,
) -> Option<order_projector::status::SubscriptionStatus> {
    order_projector::status::collect(store, std::slice::from_ref(subscription))
        .await
        .unwrap()
        .subscriptions
        .into_iter()
        .find(|s| s.name == subscription.name())
}

/// Wait (generously: a loaded machine is slow, not wrong) until `done` says so.
async fn wait_until<F, Fut>(what: &str, seconds: u64, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(f: &Fixture, sql: &str) -> i64 {
    f.db.connect()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_projection_whose_table_is_taken_shows_it_stopped_and_recovers_once_it_is_dropped() {
    record_gauges();
    let f = fixture().await;
    write_orders(&f.handler, 6, 2).await;
    // Someone made the projection's table by hand before the projection ever ran.
    f.db.connect()
        .await
        .batch_execute("CREATE TABLE orders.taken_probe (note text)")
        .await
        .unwrap();
    let subscription = Subscription::projection(Probe::new("taken_probe", 1));
    let (stop, task) = start(&f, subscription.clone());

    wait_until(
        "status never showed the taken table as the subscription's last error",
        60,
        || async {
            let status = status_of(&f.store, &subscription).await;
            let error = status.and_then(|s| s.last_error).unwrap_or_default();
            error.contains("orders.taken_probe already exists")
        },
    )
    .await;
    let status = status_of(&f.store, &subscription).await.unwrap();
    let error = status.last_error.unwrap();
    assert!(error.starts_with("stopped: "), "{error}");
    wait_until("the stopped gauge never said so", 60, || async {
        stopped("taken_probe") == Some(1.0)
    })
    .await;
    // Nothing was created or registered; the stray table is as it was.
    assert_eq!(status.version, None);
    assert_eq!(
        count(
            &f,
            "SELECT count(*) FROM orders.projections WHERE name = 'taken_probe'"
        )
        .await,
        0
    );

    // The operator drops the stray table: the projection is created and catches up.
    f.db.connect()
        .await
        .batch_execute("DROP TABLE orders.taken_probe")
        .await
        .unwrap();
    everything_visible(&f.store).await;
    let events = count(&f, "SELECT count(*) FROM orders.events").await;
    wait_until("the projection did not recover", 60, || async {
        let status = status_of(&f.store, &subscription).await;
        status.is_some_and(|s| s.version == Some(1) && s.last_error.is_none())
            && stopped("taken_probe") == Some(0.0)
            && count(&f, "SELECT count(*) FROM pg_tables WHERE schemaname = 'orders' AND tablename = 'taken_probe'").await == 1
            && count(&f, "SELECT count(*) FROM orders.taken_probe").await == events
    })
    .await;

    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_registered_projection_whose_tables_are_missing_shows_it_stopped_until_replayed() {
    record_gauges();
    let f = fixture().await;
    write_orders(&f.handler, 4, 2).await;
    let subscription = Subscription::projection(Probe::new("missing_probe", 1));
    let (lease, _) = lease(&f.store, "missing_probe", "first").await;
    let Prepared::Ready { cursor } = subscription.prepare(&f.store, &lease).await.unwrap() else {
        panic!("a new projection is ready at once");
    };
    drain(&f.store, &subscription, &lease, cursor).await;
    f.store.release_lease(&lease).await.unwrap();
    // Someone dropped the projection's table; the registry still has it.
    f.db.connect()
        .await
        .batch_execute("DROP TABLE orders.missing_probe")
        .await
        .unwrap();
    let (stop, task) = start(&f, subscription.clone());

    wait_until(
        "status never showed the missing tables as the subscription's last error",
        60,
        || async {
            let status = status_of(&f.store, &subscription).await;
            let error = status.and_then(|s| s.last_error).unwrap_or_default();
            error.starts_with("stopped: ") && error.contains("are missing")
        },
    )
    .await;
    wait_until("the stopped gauge never said so", 60, || async {
        stopped("missing_probe") == Some(1.0)
    })
    .await;

    // What the error says to do: a replay rebuilds them, and the subscription goes on.
    let (_never, shutdown) = watch::channel(false);
    order_projector::replay::replay(
        &f.store,
        &subscription,
        &order_projector::replay::ReplayOptions {
            owner: "operator".into(),
            progress: order_projector::replay::Progress::None,
            ..Default::default()
        },
        &shutdown,
    )
    .await
    .unwrap();
    wait_until("the projection did not recover", 60, || async {
        let status = status_of(&f.store, &subscription).await;
        status.is_some_and(|s| s.last_error.is_none() && s.owner.as_deref() == Some("visible"))
            && stopped("missing_probe") == Some(0.0)
    })
    .await;

    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_failing_rebuild_after_a_version_bump_shows_it_stopped_and_backs_off() {
    record_gauges();
    let f = fixture().await;
    write_orders(&f.handler, 12, 3).await;
    everything_visible(&f.store).await;

    // Version 1 projects the whole log.
    let first = Subscription::projection(Probe::new("bump_probe", 1));
    let (lease, _) = lease(&f.store, "bump_probe", "v1").await;
    let Prepared::Ready { cursor } = first.prepare(&f.store, &lease).await.unwrap() else {
        panic!("a new projection is ready at once");
    };
    assert_eq!(cursor, Cursor::START);
    drain(&f.store, &first, &lease, cursor).await;
    f.store.release_lease(&lease).await.unwrap();

    // Version 2 refuses an event in the middle of the log.
    let log = f.store.read_all(Cursor::START, 1000).await.unwrap();
    let refused = log[log.len() / 2].global_position;
    let probe = Probe {
        refuse: Some(refused),
        ..Probe::new("bump_probe", 2)
    };
    let (refusing, met) = (probe.refusing.clone(), probe.met.clone());
    let subscription = Subscription::projection(probe);
    let (stop, task) = start(&f, subscription.clone());

    wait_until(
        "status never showed the rebuild's failure as the subscription's last error",
        60,
        || async {
            let status = status_of(&f.store, &subscription).await;
            let error = status.and_then(|s| s.last_error).unwrap_or_default();
            error.contains("version 2 refuses this event")
        },
    )
    .await;
    let error = status_of(&f.store, &subscription)
        .await
        .unwrap()
        .last_error
        .unwrap();
    assert!(error.starts_with("stopped: "), "{error}");
    assert!(error.contains(&format!("position {refused}")), "{error}");
    wait_until("the stopped gauge never said so", 60, || async {
        stopped("bump_probe") == Some(1.0)
    })
    .await;

    // Each attempt scans the log from its start: the retries back off (with a standby poll
    // of 100 ms: 1.5 s, then 3 s, then 6 s, ...), rather than following each other at a
    // fixed pace. The wait between two attempts is at least the backoff (each attempt's own
    // time only adds to it).
    wait_until("the rebuild was not retried", 120, || async {
        met.lock().unwrap().len() >= 4
    })
    .await;
    let attempts = met.lock().unwrap().clone();
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    for (n, gap) in gaps.iter().take(3).enumerate() {
        let backoff = Duration::from_millis(1500) * (1 << n);
        assert!(
            *gap >= backoff,
            "retry {} came {gap:?} after the attempt before it, sooner than its backoff of {backoff:?} (all gaps: {gaps:?})",
            n + 1
        );
    }
    // Still visible while it fails; the live tables (version 1) are unchanged.
    assert_eq!(stopped("bump_probe"), Some(1.0));
    let status = status_of(&f.store, &subscription).await.unwrap();
    assert_eq!(status.version, Some(1));
    assert!(
        status
            .last_error
            .is_some_and(|e| e.contains("version 2 refuses this event"))
    );

    // A fix is deployed: the next attempt rebuilds, swaps in and the error is gone.
    refusing.store(false, Ordering::SeqCst);
    let events = count(&f, "SELECT count(*) FROM orders.events").await;
    wait_until("the rebuild did not recover", 120, || async {
        let status = status_of(&f.store, &subscription).await;
        status.is_some_and(|s| s.version == Some(2) && s.last_error.is_none())
            && stopped("bump_probe") == Some(0.0)
            && count(&f, "SELECT count(*) FROM orders.bump_probe").await == events
    })
    .await;

    stop.send(true).unwrap();
    task.await.unwrap();
}

/// A sink that counts the pages offered to it.
struct Offered {
    name: &'static str,
    pages: Arc<AtomicU64>,
}

impl Sink for Offered {
    type Event = OrderEvent;
    fn name(&self) -> &str {
        self.name
    }
    fn categories(&self) -> Categories {
        Categories::of::<Order>()
    }
    async fn deliver(&self, _page: &Page<OrderEvent>) -> Result<(), Undelivered> {
        self.pages.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A sink named like a registered projection is refused when it starts, visibly, even while
/// the projection's owner holds the lease (it used to stand by in silence and be refused only
/// once it won the lease); it never takes the lease nor delivers anything.
#[tokio::test]
async fn a_sink_named_like_a_running_projection_shows_it_stopped_at_start() {
    record_gauges();
    let f = fixture().await;
    write_orders(&f.handler, 4, 2).await;
    everything_visible(&f.store).await;
    // The projection is registered, and its owner (another process) holds the lease.
    let (owner, _) = f
        .store
        .acquire_lease(
            "claimed_name",
            "projection-owner",
            Duration::from_secs(300),
            false,
        )
        .await
        .unwrap()
        .unwrap();
    let prepared = Subscription::projection(Probe::new("claimed_name", 1))
        .prepare(&f.store, &owner)
        .await;
    assert!(
        matches!(prepared, Ok(Prepared::Ready { .. })),
        "{prepared:?}"
    );
    let checkpoint = f.store.checkpoint("claimed_name").await.unwrap();

    let pages = Arc::new(AtomicU64::new(0));
    let (stop, task) = start(
        &f,
        Subscription::sink(Offered {
            name: "claimed_name",
            pages: pages.clone(),
        }),
    );
    wait_until(
        "the sink named like a projection never showed itself stopped",
        30,
        || async { stopped("claimed_name") == Some(1.0) },
    )
    .await;
    assert_eq!(pages.load(Ordering::SeqCst), 0);
    assert!(
        f.store.holds_lease(&owner).await.unwrap(),
        "the owner keeps its lease"
    );
    assert_eq!(
        f.store.checkpoint("claimed_name").await.unwrap(),
        checkpoint
    );

    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(f.store.holds_lease(&owner).await.unwrap());
}

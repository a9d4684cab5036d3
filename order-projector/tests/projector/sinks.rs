//! A sink of one's own: what it reports as undelivered is offered again, and a report that
//! names events the page does not have stops the subscription instead of moving the
//! checkpoint past events nobody acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use order_domain::{Order, OrderEvent};
use order_projector::{Categories, Failure, Page, Sink, StepError, Subscription, Undelivered};
use tokio::sync::watch;

use crate::support::*;

/// Reports `pending(len, call)` as undelivered on calls while it returns `Some`.
struct Reporting {
    name: &'static str,
    calls: Arc<AtomicUsize>,
    sizes: Arc<std::sync::Mutex<Vec<usize>>>,
    pending: fn(usize, usize) -> Option<Vec<usize>>,
}

impl Sink for Reporting {
    type Event = OrderEvent;
    fn name(&self) -> &str {
        self.name
    }
    fn categories(&self) -> Categories {
        Categories::of::<Order>()
    }
    async fn deliver(&self, page: &Page<OrderEvent>) -> Result<(), Undelivered> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        self.sizes.lock().unwrap().push(page.len());
        match (self.pending)(page.len(), call) {
            Some(pending) => Err(Undelivered::some(pending, Failure::Transient, "503")),
            None => Ok(()),
        }
    }
}

async fn run_one_step(
    name: &'static str,
    pending: fn(usize, usize) -> Option<Vec<usize>>,
) -> (Result<order_projector::Step, StepError>, Vec<usize>, usize) {
    let f = fixture().await;
    for n in 0..3 {
        write_order(&f.handler, n).await;
    }
    everything_visible(&f.store).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let subscription = Subscription::sink(Reporting {
        name,
        calls: calls.clone(),
        sizes: sizes.clone(),
        pending,
    });
    let (lease, cursor) = lease(&f.store, name, "test").await;
    let (_stop, shutdown) = watch::channel(false);
    let step = subscription.step(&f.store, &lease, cursor, &shutdown).await;
    assert!(
        f.store.head_position().await.unwrap() > 3,
        "the log has the orders' events"
    );
    let checkpoint = f.store.checkpoint(name).await.unwrap();
    let moved = usize::from(checkpoint.global_position > cursor.global_position);
    let sizes = sizes.lock().unwrap().clone();
    (step, sizes, moved)
}

#[tokio::test]
async fn events_reported_pending_are_offered_again_alone() {
    // The first call leaves the page's first event undelivered; the second acknowledges it.
    let (step, sizes, moved) =
        run_one_step("pending_first", |_, call| (call == 0).then(|| vec![0])).await;
    assert!(
        matches!(step, Ok(order_projector::Step::Progressed { .. })),
        "{step:?}"
    );
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    assert_eq!(
        sizes[1], 1,
        "only the pending event is offered again: {sizes:?}"
    );
    assert_eq!(moved, 1, "the checkpoint moves once all were acknowledged");
}

#[tokio::test]
async fn a_pending_index_outside_the_page_stops_the_subscription_and_the_checkpoint_stays() {
    // An off-by-one in the sink: "the event after the last" is pending, nothing is acknowledged.
    let (step, sizes, moved) = run_one_step("off_by_one", |len, _| Some(vec![len])).await;
    let Err(StepError::Stopped(reason)) = &step else {
        panic!("the subscription must stop, not move on: {step:?}");
    };
    assert!(
        reason.contains("index") && reason.contains("0-based"),
        "{reason}"
    );
    assert_eq!(sizes.len(), 1, "{sizes:?}");
    assert_eq!(moved, 0, "no event was acknowledged, the checkpoint stays");
}

/// Reads only a category nobody writes: every page of the log is "of other categories".
struct Elsewhere;

impl Sink for Elsewhere {
    type Event = OrderEvent;
    fn name(&self) -> &str {
        "elsewhere"
    }
    fn categories(&self) -> Categories {
        Categories::only(["nothing-writes-this"])
    }
    fn page_size(&self) -> u32 {
        2
    }
    async fn deliver(&self, _page: &Page<OrderEvent>) -> Result<(), Undelivered> {
        Ok(())
    }
}

/// Pages of other categories move the checkpoint at most once a second; a write of it that
/// fails (here: a trigger refuses it once) must leave the subscription able to try again from
/// where the database has it, not report a moved checkpoint that nobody moved.
#[tokio::test]
async fn a_failed_checkpoint_write_past_other_categories_is_retried_without_a_moved_checkpoint() {
    let f = fixture().await;
    for n in 0..12 {
        write_order(&f.handler, n).await;
    }
    everything_visible(&f.store).await;
    let subscription = Subscription::sink(Elsewhere);
    let (lease, mut cursor) = lease(&f.store, "elsewhere", "test").await;
    let (_stop, shutdown) = watch::channel(false);
    let step = async |cursor: order_store::Cursor| match subscription
        .step(&f.store, &lease, cursor, &shutdown)
        .await
    {
        Ok(order_projector::Step::Progressed { cursor, events }) => {
            assert_eq!(events, 0);
            Ok(cursor)
        }
        Ok(other) => panic!("the log ended early: {other:?}"),
        Err(error) => Err(error),
    };
    // Step until a page is passed without writing the checkpoint (within a second of the last
    // write): the database then holds an older checkpoint than the cursor.
    loop {
        cursor = step(cursor).await.unwrap();
        if f.store.checkpoint("elsewhere").await.unwrap() != cursor {
            break;
        }
    }
    let client = f.db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE orders.test_refuse_once (armed bool);
             INSERT INTO orders.test_refuse_once VALUES (true);
             CREATE FUNCTION orders.test_refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.name = 'elsewhere' AND (SELECT armed FROM orders.test_refuse_once) THEN
                     RAISE EXCEPTION 'checkpoint write refused by the test';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER test_refuse_once BEFORE UPDATE ON orders.subscriptions
                 FOR EACH ROW EXECUTE FUNCTION orders.test_refuse_once();",
        )
        .await
        .unwrap();
    // The next page is due a checkpoint write; it fails.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = step(cursor).await;
    assert!(refused.is_err(), "the write was not refused: {refused:?}");
    client
        .batch_execute("UPDATE orders.test_refuse_once SET armed = false")
        .await
        .unwrap();
    // Tried again from the same cursor: it goes through, and the log is passed to its end.
    let retried = step(cursor).await;
    assert!(
        retried.is_ok(),
        "the retry after a failed write: {:?}",
        retried.err()
    );
    let head = f.store.head_position().await.unwrap();
    let mut cursor = retried.unwrap();
    while cursor.global_position < head {
        cursor = step(cursor).await.unwrap();
    }
    // At the head, the position past the last pages is written: from where the database has
    // the checkpoint.
    let idle = subscription.step(&f.store, &lease, cursor, &shutdown).await;
    assert!(
        matches!(idle, Ok(order_projector::Step::Idle)),
        "at the head: {idle:?}"
    );
    assert_eq!(f.store.checkpoint("elsewhere").await.unwrap(), cursor);
}

/// A position held in memory past pages of other categories belongs to the lease it was
/// reached under. Another holder may move the database's checkpoint to exactly that position
/// meanwhile (a replay, a standby that took over, or this instance's own write whose answer
/// was lost); taking the lease again must go on from what the database holds, not from the
/// older checkpoint remembered beside that position (every step then reported a moved
/// checkpoint, for ever, and a sink delivered the same page on each try).
#[tokio::test]
async fn a_position_held_past_other_categories_is_forgotten_when_the_lease_is_taken_again() {
    let f = fixture().await;
    for n in 0..12 {
        write_order(&f.handler, n).await;
    }
    everything_visible(&f.store).await;
    let (_stop, shutdown) = watch::channel(false);
    let progressed = |step: Result<order_projector::Step, StepError>| match step {
        Ok(order_projector::Step::Progressed { cursor, .. }) => cursor,
        other => panic!("expected progress: {other:?}"),
    };
    // A passes pages until one is not written (within a second of the last write).
    let a = Subscription::sink(Elsewhere);
    let (lease_a, mut reached) = lease(&f.store, "elsewhere", "a").await;
    loop {
        reached = progressed(a.step(&f.store, &lease_a, reached, &shutdown).await);
        if f.store.checkpoint("elsewhere").await.unwrap() != reached {
            break;
        }
    }
    // B takes the lease over and writes the checkpoint up to exactly where A is.
    let (lease_b, mut cursor_b) = f
        .store
        .acquire_lease("elsewhere", "b", Duration::from_secs(30), true)
        .await
        .unwrap()
        .expect("a preempting lease");
    let b = Subscription::sink(Elsewhere);
    while cursor_b != reached {
        cursor_b = progressed(b.step(&f.store, &lease_b, cursor_b, &shutdown).await);
        if cursor_b != reached {
            // B's next page is due a checkpoint write only a second after its last one.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    assert_eq!(f.store.checkpoint("elsewhere").await.unwrap(), reached);
    f.store.release_lease(&lease_b).await.unwrap();

    // A takes the lease again, from the database's checkpoint, and passes the rest of the log.
    let (lease_a, from) = f
        .store
        .acquire_lease("elsewhere", "a", Duration::from_secs(30), false)
        .await
        .unwrap()
        .expect("the lease is free");
    assert_eq!(from, reached);
    let head = f.store.head_position().await.unwrap();
    let mut cursor = from;
    while cursor.global_position < head {
        cursor = progressed(a.step(&f.store, &lease_a, cursor, &shutdown).await);
    }
    let idle = a.step(&f.store, &lease_a, cursor, &shutdown).await;
    assert!(
        matches!(idle, Ok(order_projector::Step::Idle)),
        "at the head: {idle:?}"
    );
    assert_eq!(f.store.checkpoint("elsewhere").await.unwrap(), cursor);
}

/// Panics on every page.
struct Panicking;

impl Sink for Panicking {
    type Event = OrderEvent;
    fn name(&self) -> &str {
        "panicking"
    }
    fn categories(&self) -> Categories {
        Categories::of::<Order>()
    }
    async fn deliver(&self, _page: &Page<OrderEvent>) -> Result<(), Undelivered> {
        panic!("a bug in the team's sink");
    }
}

/// A projection or sink that panics stops visibly, as one that fails: its status says why,
/// it keeps its lease and tries again later, and the checkpoint stays. (The panic ended the
/// subscription's task: nothing was shown, the lease ran out, and every standby that took it
/// over died the same way.)
#[tokio::test]
async fn a_sink_that_panics_stops_visibly_and_keeps_its_lease() {
    use order_projector::subscription::{RunSettings, run};
    let f = fixture().await;
    write_order(&f.handler, 0).await;
    everything_visible(&f.store).await;
    let (stop, shutdown) = watch::channel(false);
    let settings = RunSettings {
        owner: "runner".into(),
        lease_ttl: Duration::from_secs(2),
        poll: Duration::from_millis(50),
        standby_poll: Duration::from_millis(50),
        ..RunSettings::default()
    };
    let task = tokio::spawn(run(
        Subscription::sink(Panicking),
        f.store.clone(),
        order_store::EventListener::start(f.store.config().clone()),
        settings,
        shutdown,
    ));
    let state_of = async || {
        f.store
            .subscriptions()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "panicking")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let state = loop {
        if let Some(state) = state_of().await
            && state.last_error.is_some()
        {
            break state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no error was recorded; the task is {}",
            if task.is_finished() {
                "gone"
            } else {
                "running"
            }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = state.last_error.unwrap();
    assert!(
        error.starts_with("stopped:") && error.contains("a bug in the team's sink"),
        "{error}"
    );
    assert_eq!(state.checkpoint, order_store::Cursor::START);
    // Three lease lifetimes later it still holds the lease (renewed while it waits to try
    // again), and its task is alive.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!task.is_finished(), "the subscription's task ended");
    let state = state_of().await.unwrap();
    assert_eq!(state.owner.as_deref(), Some("runner"));
    assert!(
        state
            .lease_expires_at
            .is_some_and(|at| at > std::time::SystemTime::now()),
        "{state:?}"
    );
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("it stops when asked")
        .unwrap();
}

/// Records the global positions it is offered.
struct Recording {
    positions: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl Sink for Recording {
    type Event = OrderEvent;
    fn name(&self) -> &str {
        "recording"
    }
    fn categories(&self) -> Categories {
        Categories::of::<Order>()
    }
    async fn deliver(&self, page: &Page<OrderEvent>) -> Result<(), Undelivered> {
        let mut positions = self.positions.lock().unwrap();
        positions.extend(page.iter().map(|e| e.recorded.global_position));
        Ok(())
    }
}

/// A team's own sink is offered a range of the log again (`republish --sink` of its binary):
/// every event of the range, once, in the log's order, and nothing outside it; its checkpoint
/// does not move. A projection is refused, and nothing is sent.
#[tokio::test]
async fn a_sink_is_offered_a_range_of_the_log_again() {
    let f = fixture().await;
    write_orders(&f.handler, 12, 3).await;
    everything_visible(&f.store).await;
    let head = f.store.head_position().await.unwrap();
    assert!(head >= 12, "{head}");
    let positions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let subscription = Subscription::sink(Recording {
        positions: positions.clone(),
    });
    delivered_through_head(&f, "recording").await;
    let checkpoint = f.store.checkpoint("recording").await.unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let (from, through) = (3, head - 2);
    let offered = subscription
        .republish(&f.store, from, through, &shutdown)
        .await
        .unwrap();
    let got = positions.lock().unwrap().clone();
    let expected: Vec<u64> = f
        .store
        .read_range(from - 1, through, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.global_position)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected, "the range, once, in order");
    assert_eq!(offered, expected.len() as u64);
    assert_eq!(
        f.store.checkpoint("recording").await.unwrap(),
        checkpoint,
        "a republish moves no checkpoint"
    );

    // The sink has delivered up to the middle of the log. A range that starts after an event
    // it has not had is offered only what the sink had (here: nothing), the rest left to it;
    // one that starts at or before every such event, whole.
    let middle = delivered_through(&f, "recording", (head / 2) as i64).await;
    let events = f.store.read_range(0, head, 10_000).await.unwrap();
    let first_unsent = events
        .iter()
        .filter(|e| e.cursor() > middle)
        .map(|e| e.global_position)
        .min()
        .unwrap();
    for (from, expected) in [
        (
            first_unsent + 1,
            events
                .iter()
                .filter(|e| e.global_position > first_unsent && e.cursor() <= middle)
                .map(|e| e.global_position)
                .collect::<Vec<u64>>(),
        ),
        (
            first_unsent,
            events
                .iter()
                .filter(|e| e.global_position >= first_unsent)
                .map(|e| e.global_position)
                .collect(),
        ),
    ] {
        positions.lock().unwrap().clear();
        let offered = subscription
            .republish(&f.store, from, head, &shutdown)
            .await
            .unwrap();
        assert_eq!(*positions.lock().unwrap(), expected, "from {from}");
        assert_eq!(offered, expected.len() as u64, "from {from}");
    }

    positions.lock().unwrap().clear();
    let refused = read_model_subscription(100)
        .republish(&f.store, from, through, &shutdown)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("is a projection"), "{refused}");
    assert!(positions.lock().unwrap().is_empty());
}

/// A destination that takes part of each offer (throttling some of a batch, say) is making
/// progress: a republish goes on until everything is acknowledged instead of giving up after
/// its few failed attempts, which count only attempts that acknowledged nothing.
#[tokio::test]
async fn a_republish_acknowledged_a_little_at_each_attempt_goes_on_to_the_end() {
    let f = fixture().await;
    write_orders(&f.handler, 12, 1).await;
    everything_visible(&f.store).await;
    let head = f.store.head_position().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Every offer acknowledges its first event only: 11 failed attempts in a row for 12.
    let subscription = Subscription::sink(Reporting {
        name: "one_at_a_time",
        calls: calls.clone(),
        sizes: sizes.clone(),
        pending: |len, _| (len > 1).then(|| (1..len).collect()),
    });
    delivered_through_head(&f, "one_at_a_time").await;
    let (_stop, shutdown) = watch::channel(false);
    let offered = tokio::time::timeout(
        Duration::from_secs(120),
        subscription.republish(&f.store, 1, head, &shutdown),
    )
    .await
    .expect("the republish ended")
    .expect("a destination making progress is not given up on");
    let events = f.store.read_range(0, head, 10_000).await.unwrap().len();
    assert!(events >= 12, "{events}");
    assert_eq!(offered, events as u64, "every event of the range");
    let sizes = sizes.lock().unwrap().clone();
    // Pages of up to 1,000: one offer per event, each page's last offer of its last event.
    assert_eq!(sizes.len(), events, "one acknowledged per offer: {sizes:?}");
    assert_eq!(sizes.last(), Some(&1), "{sizes:?}");
}

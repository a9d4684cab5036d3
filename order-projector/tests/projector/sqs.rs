//! Publishing to SQS: every event once as a CloudEvent, in per-order order; failures hold the
//! checkpoint back; republishing reuses the deduplication ids.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use order_messages::CloudEvent;
use order_projector::sqs::Publisher;
use order_projector::{SqsPublisher, Subscription};
use order_store::Cursor;
use order_testkit::sqs::{self, PrivateEmulator, drain_queue, fifo_queue_pair_on};
use uuid::Uuid;

use crate::support::*;

fn subscription(publisher: Publisher, page: u32) -> Subscription {
    Subscription::sink(SqsPublisher::new(publisher).page(page))
}

/// Every event id of the log.
pub async fn log_ids(f: &Fixture) -> BTreeSet<Uuid> {
    everything_visible(&f.store).await;
    let mut all = BTreeSet::new();
    let mut cursor = Cursor::START;
    loop {
        let page = f.store.read_all(cursor, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.cursor();
        all.extend(page.iter().map(|e| e.event_id));
    }
    all
}

/// Each order's (stream version, event id) pairs in the order they were received.
pub type PerOrder = BTreeMap<Uuid, Vec<(u64, Uuid)>>;

pub fn received_per_order(messages: &[aws_sdk_sqs::types::Message]) -> (Vec<Uuid>, PerOrder) {
    let mut ids = Vec::new();
    let mut per_order = PerOrder::new();
    for message in messages {
        let event = CloudEvent::parse(message.body().unwrap()).unwrap();
        ids.push(event.id);
        per_order
            .entry(event.subject)
            .or_default()
            .push((event.streamversion, event.id));
    }
    (ids, per_order)
}

#[tokio::test]
async fn every_event_is_published_once_as_a_cloud_event_in_per_order_order() {
    let f = fixture().await;
    write_orders(&f.handler, 30, 3).await;
    let pair = sqs::fifo_queue_pair(5).await;
    let publisher = Publisher::new(sqs::client(), pair.queue_url.clone(), 4);
    let (lease, cursor) = lease(&f.store, "sqs_publisher", "test").await;
    let (end, published) = drain(&f.store, &subscription(publisher, 64), &lease, cursor).await;
    assert_eq!(f.store.checkpoint("sqs_publisher").await.unwrap(), end);

    let messages = drain_queue(&sqs::client(), &pair.queue_url).await;
    assert_eq!(messages.len(), published);
    let (ids, per_order) = received_per_order(&messages);
    let expected = log_ids(&f).await;
    assert_eq!(
        ids.iter().copied().collect::<BTreeSet<_>>(),
        expected,
        "every event, once"
    );
    assert_eq!(ids.len(), expected.len());
    for (order, versions) in &per_order {
        let numbers: Vec<u64> = versions.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            numbers,
            (1..=numbers.len() as u64).collect::<Vec<_>>(),
            "order {order} in version order"
        );
    }

    let sample = &messages[0];
    let event = CloudEvent::parse(sample.body().unwrap()).unwrap();
    let attributes = sample.message_attributes().unwrap();
    assert_eq!(
        attributes["event_type"].string_value(),
        Some(event.event_type.as_str())
    );
    assert_eq!(
        attributes["correlation_id"].string_value(),
        Some("projector-test")
    );
    assert!(
        attributes["traceparent"]
            .string_value()
            .unwrap()
            .starts_with("00-4bf92f")
    );
    assert_eq!(event.correlationid.as_deref(), Some("projector-test"));
    assert_eq!(event.datacontenttype, "application/json");
    assert!(event.data.is_object());
}

/// A delivered order's history as an import tells it (what order-import appends).
fn imported_order(n: usize) -> order_store::ImportedStream {
    use order_domain::{Aggregate, EventSchema, Order, OrderCommand};
    let (placement, total) = place(n);
    let currency = if n % 4 == 3 { "USD" } else { "EUR" };
    let commands = [
        placement,
        OrderCommand::reserve_inventory("r").unwrap(),
        OrderCommand::authorize_payment("p", currency, total).unwrap(),
        OrderCommand::ConfirmOrder,
        OrderCommand::StartFulfillment,
        OrderCommand::ship_order("DHL", "T1").unwrap(),
        OrderCommand::DeliverOrder,
    ];
    let mut order = Order::default();
    let mut events = Vec::new();
    for command in &commands {
        for event in order.decide(command).unwrap() {
            order.evolve(&event);
            events.push(order_store::ImportedEvent {
                event_id: Uuid::new_v4(),
                event_type: event.event_type().into(),
                schema_version: event.schema_version(),
                payload_json: event.encode_json().unwrap(),
                recorded_at: std::time::SystemTime::UNIX_EPOCH,
            });
        }
    }
    order_store::ImportedStream {
        stream_id: Uuid::new_v4(),
        category: "order".into(),
        imported_from: format!("legacy:{n}"),
        correlation_id: None,
        events,
    }
}

/// Imported history (order-import) has no side effects: its events are never sent, so the
/// worker never runs a saga step for them; the checkpoint still moves past them, and live
/// events around them are all sent.
#[tokio::test]
async fn imported_events_are_not_published_and_the_checkpoint_passes_them() {
    let f = fixture().await;
    let mut imported = BTreeSet::new();
    f.store.import_begin("sqs-test", "legacy").await.unwrap();
    for round in 0..3usize {
        write_orders(&f.handler, 10, 2).await;
        let streams: Vec<_> = (0..20).map(|n| imported_order(round * 100 + n)).collect();
        imported.extend(
            streams
                .iter()
                .flat_map(|s| s.events.iter().map(|e| e.event_id)),
        );
        let progress = order_store::ImportProgress::default();
        f.store
            .import_batch("sqs-test", &streams, progress)
            .await
            .unwrap();
    }
    write_orders(&f.handler, 10, 2).await;
    assert!(imported.len() > 60);

    let pair = sqs::fifo_queue_pair(5).await;
    let publisher = Publisher::new(sqs::client(), pair.queue_url.clone(), 4);
    let (lease, cursor) = lease(&f.store, "sqs_publisher", "test").await;
    let (end, _) = drain(&f.store, &subscription(publisher, 16), &lease, cursor).await;
    assert_eq!(f.store.checkpoint("sqs_publisher").await.unwrap(), end);

    let messages = drain_queue(&sqs::client(), &pair.queue_url).await;
    let (sent, _) = received_per_order(&messages);
    let sent: BTreeSet<Uuid> = sent.into_iter().collect();
    let log = log_ids(&f).await;
    let live: BTreeSet<Uuid> = log.difference(&imported).copied().collect();
    assert_eq!(
        log.len(),
        live.len() + imported.len(),
        "the imported events are in the log"
    );
    assert_eq!(sent, live, "every live event sent, no imported one");
    assert_eq!(messages.len(), live.len(), "each once");

    // A republish of the whole log sends (and counts) the live events only.
    let again = sqs::fifo_queue_pair(5).await;
    let publisher = Publisher::new(sqs::client(), again.queue_url.clone(), 4);
    let resent = republish_everything(&f.store, publisher).await;
    let messages = drain_queue(&sqs::client(), &again.queue_url).await;
    let (sent, _) = received_per_order(&messages);
    assert_eq!(sent.into_iter().collect::<BTreeSet<Uuid>>(), live);
    assert_eq!(resent as usize, live.len(), "the count is of events sent");
}

/// `republish --from 1` to the head of the log; how many were sent.
async fn republish_everything(store: &order_store::EventStore, publisher: Publisher) -> u64 {
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let head = store.head_position().await.unwrap();
    order_projector::republish::republish(store, &SqsPublisher::new(publisher), 1, head, &shutdown)
        .await
        .unwrap()
}

/// What `publish_all` leaves: the queue, its publisher, the publisher's lease and checkpoint,
/// and how many events it sent.
struct Published {
    pair: sqs::QueuePair,
    publisher: Publisher,
    lease: order_store::Lease,
    checkpoint: Cursor,
    published: usize,
}

/// The SQS publisher sends the whole log to a new queue.
async fn publish_all(f: &Fixture) -> Published {
    let pair = sqs::fifo_queue_pair(5).await;
    let publisher = Publisher::new(sqs::client(), pair.queue_url.clone(), 2);
    let (lease, cursor) = lease(&f.store, "sqs_publisher", "test").await;
    let (checkpoint, published) = drain(
        &f.store,
        &subscription(publisher.clone(), 100),
        &lease,
        cursor,
    )
    .await;
    Published {
        pair,
        publisher,
        lease,
        checkpoint,
        published,
    }
}

#[tokio::test]
async fn republishing_a_range_reuses_the_deduplication_ids() {
    let f = fixture().await;
    write_orders(&f.handler, 6, 2).await;
    let Published {
        pair,
        publisher,
        published,
        ..
    } = publish_all(&f).await;

    let resent = republish_everything(&f.store, publisher).await;
    assert_eq!(resent as usize, published);
    let messages = drain_queue(&sqs::client(), &pair.queue_url).await;
    assert_eq!(
        messages.len(),
        published,
        "the copies were deduplicated by event id"
    );
}

/// A republish never sends an order's event ahead of an earlier one the publisher has not sent:
/// the order's later events would reach the queue first, and the publisher's copies of its
/// earlier ones (new to SQS) after them, out of the order `MessageGroupId` promises. A range
/// from before every event the publisher has not sent holds those earlier events: sent whole.
#[tokio::test]
async fn a_republish_leaves_what_the_publisher_has_not_sent_to_the_publisher() {
    let f = fixture().await;
    write_orders(&f.handler, 3, 1).await;
    let Published {
        pair,
        publisher,
        lease,
        checkpoint,
        published,
    } = publish_all(&f).await;
    assert!(published > 0);
    // An order the publisher has not sent yet (placed, then eight more events).
    let late = write_order(&f.handler, 0).await;
    everything_visible(&f.store).await;
    let head = f.store.head_position().await.unwrap();
    let late_events = f
        .store
        .read_range(checkpoint.global_position, head, 10_000)
        .await
        .unwrap();
    assert!(late_events.len() > 2 && late_events.iter().all(|e| e.stream_id == late));

    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let sink = SqsPublisher::new(publisher.clone());
    let from_second = late_events[1].global_position;
    let sent = order_projector::republish::republish(&f.store, &sink, from_second, head, &shutdown)
        .await
        .unwrap();
    assert_eq!(
        sent, 0,
        "the late order's later events are left to the publisher"
    );
    // From the first event on: everything, the late order's events in order.
    let sent = order_projector::republish::republish(&f.store, &sink, 1, head, &shutdown)
        .await
        .unwrap();
    assert_eq!(sent as usize, published + late_events.len());

    // The publisher goes on: every event once, each order's in version order.
    drain(&f.store, &subscription(publisher, 100), &lease, checkpoint).await;
    let messages = drain_queue(&sqs::client(), &pair.queue_url).await;
    let (ids, per_order) = received_per_order(&messages);
    assert_eq!(ids.len(), published + late_events.len(), "each event once");
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>(),
        log_ids(&f).await.iter().collect()
    );
    for (order, received) in per_order {
        let versions: Vec<u64> = received.iter().map(|(v, _)| *v).collect();
        let expected: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(versions, expected, "order {order}: in version order");
    }
}

/// A one-off republish to a queue that does not exist ends (it retried forever), saying where
/// to resume.
#[tokio::test]
async fn a_republish_to_a_queue_that_does_not_exist_gives_up_and_says_where_to_resume() {
    let f = fixture().await;
    write_orders(&f.handler, 2, 2).await;
    let pair = sqs::fifo_queue_pair(5).await;
    let missing = pair.queue_url.replace(".fifo", "-missing.fifo");
    let publisher = Publisher::new(sqs::client(), missing, 1);
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    delivered_through_head(&f, "sqs_publisher").await;
    let head = f.store.head_position().await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        order_projector::republish::republish(
            &f.store,
            &SqsPublisher::new(publisher),
            1,
            head,
            &shutdown,
        ),
    )
    .await
    .expect("the republish ended by itself");
    let error = result.unwrap_err().to_string();
    assert!(
        error.contains(&format!("--from 1 --to {head}")),
        "the resume hint keeps the range: {error}"
    );
}

/// SIGTERM (an ECS stop of a one-off task) ends a republish on its own terms: exit 1, one
/// line saying it was stopped and where to resume, the range kept.
#[tokio::test]
async fn a_republish_stopped_by_sigterm_says_where_to_resume() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let f = fixture().await;
    write_orders(&f.handler, 2, 2).await;
    delivered_through_head(&f, "sqs_publisher").await;
    let pair = sqs::fifo_queue_pair(5).await;
    let head = f.store.head_position().await.unwrap();
    // A queue that does not exist (a refusal, logged as an ERROR): the republish retries for
    // about half a minute.
    let missing = pair.queue_url.replace(".fifo", "-missing.fifo");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_order-projector"));
    command
        .args(["republish", "--from", "1"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", f.db.url())
        .env("ORDERS_QUEUE_URL", &missing)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sqs::pass_environment(&mut command);
    let mut child = command.spawn().unwrap();
    // Once it logs its first failed delivery, it is sending: the signal lands mid-run.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (seen, retrying) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if line.contains("delivery refused") {
                let _ = seen.send(());
            }
        }
    });
    retrying
        .recv_timeout(Duration::from_secs(60))
        .expect("the republish logs its failed delivery");
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = std::time::Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it stops at the signal, not after its retries"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stopped by a signal") && stderr.contains(&format!("--from 1 --to {head}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn while_sqs_is_down_the_checkpoint_does_not_pass_unsent_events() {
    let f = fixture().await;
    write_orders(&f.handler, 12, 2).await;
    let emulator = PrivateEmulator::start().await;
    let pair = fifo_queue_pair_on(&emulator.client(), 5).await;
    let publisher = Publisher::new(emulator.client(), pair.queue_url.clone(), 4);
    let (lease, cursor) = lease(&f.store, "sqs_publisher", "test").await;

    emulator.signal("STOP");
    let task = {
        let store = f.store.clone();
        let lease = lease.clone();
        tokio::spawn(
            async move { drain(&store, &subscription(publisher, 25), &lease, cursor).await },
        )
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        f.store.checkpoint("sqs_publisher").await.unwrap(),
        Cursor::START,
        "nothing acknowledged, nothing passed"
    );
    assert!(!task.is_finished());

    emulator.signal("CONT");
    let (end, published) = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.store.checkpoint("sqs_publisher").await.unwrap(), end);
    let messages = drain_queue(&emulator.client(), &pair.queue_url).await;
    let (ids, _) = received_per_order(&messages);
    let expected = log_ids(&f).await;
    assert_eq!(
        ids.iter().copied().collect::<BTreeSet<_>>(),
        expected,
        "nothing lost"
    );
    assert_eq!(published, expected.len());
}

/// While deliveries fail (a queue that does not exist), `status` shows why, and the checkpoint
/// stays.
#[tokio::test]
async fn failed_deliveries_show_in_the_subscriptions_status_while_it_retries() {
    let f = fixture().await;
    write_orders(&f.handler, 2, 2).await;
    let pair = sqs::fifo_queue_pair(5).await;
    let missing = pair.queue_url.replace(".fifo", "-missing.fifo");
    let publisher = Publisher::new(sqs::client(), missing, 1);
    let reported = first_delivery_error(&f, publisher).await;
    // SQS answered, and said the request itself is wrong (4xx): a refusal that will not pass
    // by itself (an ERROR line, counted `refused`), though still retried: nothing is skipped.
    assert!(
        reported.contains("delivery failed (refused") && reported.contains("NonExistentQueue"),
        "{reported}"
    );
}

/// SQS out of reach (nothing listens at its address) is an outage, retried as such and logged
/// as a warning: not a refusal.
#[tokio::test]
async fn sqs_out_of_reach_is_a_transient_failure_not_a_refusal() {
    let f = fixture().await;
    write_orders(&f.handler, 2, 2).await;
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let url = format!("{endpoint}/000000000000/nowhere.fifo");
    let publisher = Publisher::new(sqs::client_for(&endpoint), url, 1);
    let reported = first_delivery_error(&f, publisher).await;
    assert!(
        reported.contains("delivery failed (transient"),
        "{reported}"
    );
}

/// Run the SQS publisher's subscription with `publisher` until `status` shows its first failed
/// delivery; that error, once the checkpoint was seen not to move.
async fn first_delivery_error(f: &Fixture, publisher: Publisher) -> String {
    let (lease, cursor) = lease(&f.store, "sqs_publisher", "test").await;
    let task = {
        let store = f.store.clone();
        let lease = lease.clone();
        tokio::spawn(
            async move { drain(&store, &subscription(publisher, 25), &lease, cursor).await },
        )
    };
    let reported = last_error(&f.store, "sqs_publisher", Duration::from_secs(60)).await;
    task.abort();
    assert_eq!(
        f.store.checkpoint("sqs_publisher").await.unwrap(),
        Cursor::START,
        "nothing delivered, nothing passed"
    );
    reported
}

/// The subscription's last error in `status`, once it has one (empty after `wait`).
async fn last_error(store: &order_store::EventStore, name: &str, wait: Duration) -> String {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let state = store
            .subscriptions()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == name);
        if let Some(error) = state.and_then(|s| s.last_error) {
            return error;
        }
        if std::time::Instant::now() > deadline {
            return String::new();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ranges outside the log are refused on one line, exit 2, nothing sent: reversed, ending
/// before the log's first position, or starting beyond its head.
#[tokio::test]
async fn republish_refuses_a_range_without_events() {
    let f = fixture().await;
    write_orders(&f.handler, 2, 2).await;
    let pair = sqs::fifo_queue_pair(5).await;
    let head = f.store.head_position().await.unwrap();
    for (from, to, says) in [
        ("3", Some("2"), "--to 2 is before --from 3"),
        ("0", Some("0"), "--to 0: log positions start at 1"),
        (&*(head + 5).to_string(), None, "beyond the log's head"),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_order-projector"));
        command
            .args(["republish", "--from", from])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", f.db.url())
            .env("ORDERS_QUEUE_URL", &pair.queue_url);
        if let Some(to) = to {
            command.args(["--to", to]);
        }
        sqs::pass_environment(&mut command);
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{from} {to:?}: {stderr}");
        assert!(stderr.contains(says), "{from} {to:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    assert!(
        drain_queue(&sqs::client(), &pair.queue_url)
            .await
            .is_empty()
    );
}

/// `republish` says what it leaves to the publisher: the events after its checkpoint, when one
/// it has not sent lies before `--from`, and where to start to send them too. A range that
/// starts at or before every event it has not sent is sent whole.
#[tokio::test]
async fn republish_says_what_it_leaves_to_the_publisher() {
    let f = fixture().await;
    write_orders(&f.handler, 2, 2).await;
    everything_visible(&f.store).await;
    let pair = sqs::fifo_queue_pair(5).await;
    let republish = |from: u64| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_order-projector"));
        command
            .args(["republish", "--from", &from.to_string()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", f.db.url())
            .env("ORDERS_QUEUE_URL", &pair.queue_url);
        sqs::pass_environment(&mut command);
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout} {:?}", output.stderr);
        stdout
    };
    // The publisher has sent nothing: from the first event on, everything, in order.
    let head = f.store.head_position().await.unwrap();
    let said = republish(1);
    assert!(
        said.contains(&format!("republished {head} events (positions 1..={head})"))
            && !said.contains("left to it"),
        "{said}"
    );
    assert_eq!(
        drain_queue(&sqs::client(), &pair.queue_url).await.len() as u64,
        head
    );
    // From the second event on, nothing: the first is not sent yet.
    let said = republish(2);
    assert!(
        said.contains("republished 0 events")
            && said.contains(&format!(
                "; {} events after sqs_publisher's checkpoint were left to it: its event at \
                 position 1, before --from 2, is not sent yet",
                head - 1
            ))
            && said.contains("start at or before position 1"),
        "{said}"
    );
    assert!(
        drain_queue(&sqs::client(), &pair.queue_url)
            .await
            .is_empty()
    );

    // The publisher sent the log; then an order it has not sent. From that order's second
    // event on: what the publisher sent of the range (nothing), the order's events left.
    delivered_through_head(&f, "sqs_publisher").await;
    write_order(&f.handler, 0).await;
    everything_visible(&f.store).await;
    let first_late = head + 1;
    let head = f.store.head_position().await.unwrap();
    let said = republish(first_late + 1);
    assert!(
        said.contains("republished 0 events")
            && said.contains(&format!(
                "; {} events after sqs_publisher's checkpoint were left to it: its event at \
                 position {first_late}, before --from {}",
                head - first_late,
                first_late + 1
            )),
        "{said}"
    );
}

/// A database out of reach is no usage error: exit 1, one line, nothing sent.
#[tokio::test]
async fn a_republish_without_its_database_exits_1_and_sends_nothing() {
    let pair = sqs::fifo_queue_pair(5).await;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_order-projector"));
    command
        .args(["republish", "--from", "1"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            "postgres://nobody:secret@127.0.0.1:1/orders",
        )
        .env("ORDERS_QUEUE_URL", &pair.queue_url);
    sqs::pass_environment(&mut command);
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("republish failed") && stderr.contains("nothing was sent"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
    assert!(
        drain_queue(&sqs::client(), &pair.queue_url)
            .await
            .is_empty()
    );
}

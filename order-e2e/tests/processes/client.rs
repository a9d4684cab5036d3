//! order-client against the real order-grpc process under real faults: SIGKILL of order-grpc
//! and an immediate PostgreSQL restart, while commands flow and an event stream is open.
//! Every command ends acknowledged and is applied once (a cut attempt is retried under the
//! same command id), the event stream resumes with every event once, and read-your-writes
//! holds after the faults.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use order_client::{Client, CommandAnswer, EventStream, RetryPolicy, Start, money, pb};
use order_faults::stack::{Stack, StackOptions};
use order_testkit::pg::StopMode;
use tokio_stream::StreamExt;
use uuid::Uuid;

/// A valid PlaceOrder of `client`, under a new command id.
fn place(client: &Client, sku: &str) -> order_client::Command<pb::PlaceOrderRequest> {
    client
        .place_order(Uuid::new_v4())
        .line(sku, 2, money("EUR", 1250))
        .ship_to(pb::Address {
            recipient: "Ada Lovelace".into(),
            line1: "12 St James's Square".into(),
            city: "London".into(),
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
            ..Default::default()
        })
        .shipping_method(pb::ShippingMethod::Standard)
}

/// Place orders one after another until `stop`, each under its own command id; every answer,
/// or the first error.
async fn place_until(client: Client, stop: Arc<AtomicBool>) -> Result<Vec<CommandAnswer>, String> {
    let mut answers = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let command = place(&client, "SKU-1");
        match command.send().await {
            Ok(answer) => answers.push(answer),
            Err(error) => {
                return Err(format!(
                    "command {} failed after {} attempts: {error}",
                    command.request().command_id,
                    error.attempts()
                ));
            }
        }
    }
    Ok(answers)
}

/// Take what the stream yields for `wait`.
async fn read_for(events: &mut EventStream, received: &mut Vec<pb::Event>, wait: Duration) {
    let until = tokio::time::Instant::now() + wait;
    while let Ok(Some(event)) = tokio::time::timeout_at(until, events.next()).await {
        received.push(event.expect("the stream resumes by itself"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_the_event_stream_ride_out_a_killed_service_and_a_database_restart() {
    let mut stack = Stack::start(&crate::binaries(), &StackOptions::default())
        .await
        .unwrap();
    // Only this test's commands write: the log is then exactly what they did.
    stack.worker.terminate(Duration::from_secs(10)).await;

    // Retries cover an outage of up to ~15 s (backoff 50 ms doubling to 1 s).
    let client = Client::builder()
        .endpoint(stack.endpoint())
        .timeout(Duration::from_secs(5))
        .retry(
            RetryPolicy::default()
                .max_attempts(25)
                .initial_backoff(Duration::from_millis(50))
                .max_backoff(Duration::from_secs(1)),
        )
        .build()
        .unwrap();

    let mut events = client
        .subscribe_events(Start::Beginning)
        .max_reconnects(10_000);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(place_until(client.clone(), stop.clone())))
        .collect();
    let mut received = Vec::new();
    read_for(&mut events, &mut received, Duration::from_secs(2)).await;
    // order-grpc dies without a goodbye: no GOAWAY, calls in flight cut.
    stack.grpc.kill().await;
    read_for(&mut events, &mut received, Duration::from_secs(1)).await;
    stack.grpc.start().unwrap();
    stack
        .grpc
        .wait_ready(Duration::from_secs(30))
        .await
        .unwrap();
    read_for(&mut events, &mut received, Duration::from_secs(2)).await;
    // PostgreSQL stops at once (every connection of the pool broken) and is back in 2 s.
    let cluster = &stack.cluster;
    tokio::task::block_in_place(|| cluster.stop(StopMode::Immediate)).unwrap();
    read_for(&mut events, &mut received, Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| cluster.start_again()).unwrap();
    read_for(&mut events, &mut received, Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);

    let mut answers = Vec::new();
    for writer in writers {
        answers.extend(writer.await.unwrap().unwrap());
    }
    assert!(answers.len() >= 20, "only {} commands", answers.len());
    let retried = answers.iter().filter(|a| a.attempts > 1).count();
    assert!(
        retried > 0,
        "no command needed a retry: the faults did not hit"
    );

    // Each acknowledged command once in the log, nothing else in it.
    let db = stack.db().await.unwrap();
    let rows = db
        .query(
            "SELECT c.command_id, c.stream_id, (SELECT count(*) FROM orders.events e WHERE e.stream_id = c.stream_id)
             FROM orders.commands c",
            &[],
        )
        .await
        .unwrap();
    let recorded: HashMap<Uuid, (Uuid, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert_eq!(
        recorded.len(),
        answers.len(),
        "one command record per command"
    );
    for answer in &answers {
        let id: Uuid = answer.command_id.parse().unwrap();
        assert_eq!(
            recorded.get(&id),
            Some(&(answer.order_id, 1)),
            "{answer:?} applied once"
        );
    }
    let log: Vec<Uuid> = db
        .query(
            "SELECT event_id FROM orders.events ORDER BY transaction_id, global_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(log.len(), answers.len());

    // The stream: every event of the log once, in the log's gap-safe order.
    let wait = tokio::time::Instant::now() + Duration::from_secs(60);
    while received.len() < log.len() && tokio::time::Instant::now() < wait {
        read_for(&mut events, &mut received, Duration::from_millis(500)).await;
    }
    let ids: Vec<Uuid> = received
        .iter()
        .map(|e| e.event_id.parse().unwrap())
        .collect();
    let distinct: HashSet<&Uuid> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "an event came twice");
    assert_eq!(ids, log, "every event once, in order");
    assert!(
        events.reconnects() >= 1,
        "the stream resumed after the kill"
    );

    // Read-your-writes after the faults.
    let last = place(&client, "SKU-2").send().await.unwrap();
    let order = client.get_order_after(&last).await.unwrap();
    assert_eq!(order.order_id, last.order_id.to_string());
    assert_eq!(order.version, last.version);
    eprintln!(
        "{} commands, {retried} retried, {} stream reconnects",
        answers.len(),
        events.reconnects()
    );
    stack.stop().await;
}

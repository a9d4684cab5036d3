//! The real `order-worker` binary in a child process: killed with SIGKILL mid-step, stopped
//! with SIGTERM, probed with `healthcheck`.

use std::process::Command;
use std::time::{Duration, Instant};

use order_proto::v1 as pb;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_step_leaves_its_message_to_reappear_and_the_saga_continues_once() {
    tokio::task::spawn_blocking(worker_binary).await.unwrap();
    let stack = start(5).await;
    // Every provider call takes ~4 s: the worker is certainly mid-step when it is killed.
    let mut child = ChildWorker::spawn(
        &stack,
        &[
            ("ORDER_WORKER_SIM_LATENCY_MS", "4000"),
            ("ORDER_WORKER_PROVIDER_TIMEOUT_MS", "30000"),
        ],
    );
    let order = stack.place_new(&["SKU-1"]).await;
    child.wait_in_flight(Duration::from_secs(30)).await;

    child.signal("KILL");
    let killed = Instant::now();
    let status = child.wait_exit(Duration::from_secs(5)).await;
    assert!(!status.success(), "killed, not exited: {status}");
    assert_eq!(
        stack.log(&order).await.status(),
        Some(pb::OrderStatus::Placed),
        "killed before its command"
    );

    // Another worker is ready at once, but the message stays invisible until the visibility
    // timeout (3 s) of the dead worker's receive runs out.
    let worker = stack.worker(&[]).await;
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(killed.elapsed())).await;
    assert_eq!(
        stack.log(&order).await.status(),
        Some(pb::OrderStatus::Placed),
        "the message reappeared before its visibility timeout"
    );
    stack
        .wait_terminal(std::slice::from_ref(&order), Duration::from_secs(30))
        .await;
    assert!(killed.elapsed() >= Duration::from_secs(2));
    let events = stack.events(&order).await;
    assert_each_effect_once(&order, &events);
    assert_eq!(events.len(), 8);
    assert_eq!(
        events.last().map(|e| e.event_type.as_str()),
        Some("OrderCompleted")
    );
    assert!(stack.drain_dlq().await.is_empty());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_message_in_flight_finish_and_receives_no_more() {
    let binary = tokio::task::spawn_blocking(worker_binary).await.unwrap();
    let stack = start(5).await;
    let mut child = ChildWorker::spawn(
        &stack,
        &[
            ("ORDER_WORKER_SIM_LATENCY_MS", "1500"),
            ("ORDER_SHUTDOWN_GRACE_SECONDS", "20"),
        ],
    );
    let ready = format!("http://{}/readyz", child.admin);
    wait_ready(&ready, Duration::from_secs(30)).await;
    let probe = Command::new(&binary)
        .args(["healthcheck", "--url", &ready])
        .env_clear()
        .output()
        .unwrap();
    assert!(probe.status.success(), "{probe:?}");

    let order = stack.place_new(&["SKU-1"]).await;
    child.wait_in_flight(Duration::from_secs(30)).await;
    child.signal("TERM");
    let status = child.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "a graceful stop exits 0: {status}");
    // The step in flight was finished; the next message was not taken.
    assert_eq!(
        stack.log(&order).await.status(),
        Some(pb::OrderStatus::InventoryReserved)
    );
    let probe = Command::new(&binary)
        .args(["healthcheck", "--url", &ready])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(1), "{probe:?}");

    let worker = stack.worker(&[]).await;
    stack
        .wait_terminal(std::slice::from_ref(&order), Duration::from_secs(30))
        .await;
    let events = stack.events(&order).await;
    assert_each_effect_once(&order, &events);
    assert_eq!(events.len(), 8);
    worker.stop().await;
}

/// ECS's stop on the binary itself: SIGTERM while a step is far from done, with a grace much
/// shorter than the step. The process exits within its grace plus the receive under way, and
/// the abandoned message is visible again at once: another worker finishes the saga long
/// before the message's 60 s visibility timeout would have let it reappear, and each effect
/// happens once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_grace_releases_the_message_in_flight_at_once() {
    let stack = start(5).await;
    let mut child = ChildWorker::spawn(
        &stack,
        &[
            ("ORDER_WORKER_SIM_LATENCY_MS", "30000"),
            ("ORDER_SHUTDOWN_GRACE_SECONDS", "1"),
            ("ORDER_WORKER_VISIBILITY_SECONDS", "60"),
            ("ORDER_WORKER_WAIT_SECONDS", "2"),
        ],
    );
    let ready = format!("http://{}/readyz", child.admin);
    wait_ready(&ready, Duration::from_secs(30)).await;

    let order = stack.place_new(&["SKU-1"]).await;
    child.wait_in_flight(Duration::from_secs(30)).await;
    let signalled = tokio::time::Instant::now();
    child.signal("TERM");
    // 1 s of grace, then the receive under way (a 2 s long poll) and the release.
    let status = child.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "a stop past its grace still exits 0: {status}"
    );
    let stopped_after = signalled.elapsed();
    assert!(
        stopped_after < Duration::from_secs(15),
        "the worker took {stopped_after:?} to stop with a 1 s grace"
    );

    // Well inside the 60 s visibility timeout: only a released message can be taken again.
    let worker = stack.worker(&[]).await;
    stack
        .wait_terminal(std::slice::from_ref(&order), Duration::from_secs(40))
        .await;
    let events = stack.events(&order).await;
    assert_each_effect_once(&order, &events);
    assert!(stack.drain_dlq().await.is_empty());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_needs_order_grpc_and_the_queue_and_metrics_are_served() {
    let _gauges = CIRCUIT_GAUGES.lock().await;
    let stack = start(5).await;
    let worker = stack.worker(&[]).await;
    wait_ready(
        &format!("http://{}/readyz", worker.admin),
        Duration::from_secs(10),
    )
    .await;
    let metrics = http_get(worker.admin, "/metrics").await;
    for series in [
        "order_worker_messages_total{outcome=\"ok\"}",
        "order_worker_messages_total{outcome=\"obsolete\"}",
        "order_worker_messages_total{outcome=\"retry\"}",
        "order_worker_messages_total{outcome=\"dlq\"}",
        "order_worker_dlq_sends_total",
        "order_worker_sent_again_total",
        "order_worker_circuit_state{provider=\"inventory\"}",
        "order_worker_circuit_state{provider=\"payment\"}",
        "order_worker_circuit_state{provider=\"shipping\"}",
        "order_worker_messages_in_flight",
    ] {
        assert!(
            metric(&metrics, series).is_some(),
            "{series} missing:\n{metrics}"
        );
    }
    assert_eq!(
        metric(&metrics, "order_worker_circuit_state{provider=\"payment\"}"),
        Some(0.0)
    );

    let stranded = stack
        .worker(&[
            "--grpc-endpoint",
            &format!("http://127.0.0.1:{}", free_port()),
        ])
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let why = not_ready(stranded.admin).await;
    assert!(why.contains("503") && why.contains("order-grpc"), "{why}");
    let healthz = http_get(stranded.admin, "/healthz").await;
    assert!(
        healthz.starts_with("HTTP/1.1 200"),
        "alive though not ready"
    );
    stranded.stop().await;
    worker.stop().await;
}

/// A message whose work outlasts the shutdown grace period is abandoned; at its last receive
/// it goes back as a new message (released, SQS would move it to the DLQ at its next receive,
/// for nothing it did wrong), and the next worker finishes the saga.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_abandoned_at_its_last_receive_goes_back_to_the_queue_not_to_the_dlq() {
    // One receive per message: every receive is the last.
    let stack = start(1).await;
    let slow = stack
        .worker(&["--sim-latency-ms", "8000", "--shutdown-grace-seconds", "1"])
        .await;
    let order = stack.place_new(&["SKU-1"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stack.queue_counts().await.1 == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message was never received"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    slow.stop().await;
    assert_eq!(
        stack.queue_counts().await,
        (1, 0),
        "the abandoned message is on the queue, visible"
    );
    assert_eq!(
        stack.log(&order).await.status(),
        Some(pb::OrderStatus::Placed)
    );

    let worker = stack.worker(&[]).await;
    stack
        .wait_status(&order, pb::OrderStatus::Completed, Duration::from_secs(60))
        .await;
    assert!(
        stack.drain_dlq().await.is_empty(),
        "nothing was dead-lettered"
    );
    worker.stop().await;
}

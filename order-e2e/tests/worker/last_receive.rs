//! A message at its last receive (SQS's `maxReceiveCount`): released again, SQS would move it
//! to the DLQ at its next receive, silently. A provider outage must not use up the receives of
//! the messages that wait for it; any other failure ends in the DLQ with a FAILED line and a
//! `dlq_kind`, as every dead letter does.

use std::time::Duration;

use order_proto::v1 as pb;
use order_provider_stub::{FaultPlan, Stub, StubOptions};

use crate::support::*;

fn dlq_kind(message: &aws_sdk_sqs::types::Message) -> Option<String> {
    message
        .message_attributes()
        .and_then(|a| a.get("dlq_kind"))
        .and_then(|v| v.string_value())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_outage_longer_than_the_receives_sends_its_messages_again_not_to_the_dlq() {
    let _gauges = CIRCUIT_GAUGES.lock().await;
    // Two receives per message; each wait for the open circuit lasts 1 s.
    let stack = start(2).await;
    let stub = Stub::start("127.0.0.1:0".parse().unwrap(), StubOptions::default())
        .await
        .unwrap();
    stub.set_faults(
        "payment",
        &FaultPlan {
            outage_seconds: 3_600,
            ..FaultPlan::default()
        },
    );
    let worker = stack
        .http_worker(&stub, &["--circuit-wait-seconds", "1"])
        .await;
    // The metrics are this test process's (other tests add to them): compare increases.
    let retried =
        |text: &str| metric(text, "order_worker_messages_total{outcome=\"retry\"}").unwrap_or(0.0);
    let sent_again = |text: &str| metric(text, "order_worker_sent_again_total").unwrap_or(0.0);
    let before = http_get(worker.admin, "/metrics").await;
    let (retries_before, sent_before) = (retried(&before), sent_again(&before));
    let order = stack.place_new(&["SKU-1"]).await;
    stack
        .wait_status(
            &order,
            pb::OrderStatus::InventoryReserved,
            Duration::from_secs(30),
        )
        .await;
    // Long enough for several rounds of two receives each (a round: the circuit wait and the
    // retry delay, about 2-3 s).
    let outage = Duration::from_secs(12);
    tokio::time::sleep(outage).await;
    let metrics = http_get(worker.admin, "/metrics").await;
    let retries = retried(&metrics) - retries_before;
    assert!(
        sent_again(&metrics) - sent_before >= 1.0,
        "the message was sent again at its last receive"
    );
    assert!(
        retries >= 4.0,
        "the message waited for the circuit at least twice its receives: {retries} retries"
    );
    assert_eq!(
        stack.log(&order).await.status(),
        Some(pb::OrderStatus::InventoryReserved)
    );
    stub.set_faults("payment", &FaultPlan::default());

    stack
        .wait_status(&order, pb::OrderStatus::Completed, Duration::from_secs(60))
        .await;
    stack.wait_queue_empty(Duration::from_secs(30)).await;
    let dead = stack.drain_dlq().await;
    assert!(
        dead.is_empty(),
        "nothing reached the DLQ: {:?}",
        dead.iter().map(dlq_kind).collect::<Vec<_>>()
    );
    let effects = stub.effects();
    assert_eq!(effects.authorizations.get(&order), Some(&1), "{effects:?}");
    assert_eq!(effects.captures.get(&order), Some(&1), "{effects:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_that_outlasts_the_receives_is_dead_lettered_by_the_worker_saying_why() {
    let stack = start(2).await;
    let stub = Stub::start("127.0.0.1:0".parse().unwrap(), StubOptions::default())
        .await
        .unwrap();
    // The payment provider fails every call, but the breaker never opens: not an outage as
    // the worker sees it, so the message is at fault.
    stub.set_faults(
        "payment",
        &FaultPlan {
            outage_seconds: 3_600,
            ..FaultPlan::default()
        },
    );
    let worker = stack
        .http_worker(&stub, &["--breaker-threshold", "1000"])
        .await;
    stack.place_new(&["SKU-1"]).await;
    let dead = stack.wait_dead_letters(Duration::from_secs(60)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dlq_kind(&dead[0]).as_deref(), Some("retries_exhausted"));
    let reason = dead[0]
        .message_attributes()
        .and_then(|a| a.get("dlq_reason"))
        .and_then(|v| v.string_value())
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("payment authorize"), "{reason}");
    // SQS's redrive would have moved it with no attributes of the worker's.
    let receives = dead[0]
        .message_attributes()
        .and_then(|a| a.get("dlq_receive_count"))
        .and_then(|v| v.string_value())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(receives, "2", "dead-lettered at its last receive");
    worker.stop().await;
}

/// order-grpc refusing the worker itself (a wrong token, a token without the saga's scope) is
/// the deployment's fault, not the message's: the worker with a wrong token is not ready and
/// receives nothing; the one whose token may read but not command treats every refusal as an
/// outage, so its message goes round past its last receive and never reaches the DLQ; once the
/// right token is in place, the saga completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_grpc_refusing_the_worker_itself_dead_letters_nothing() {
    let _gauges = CIRCUIT_GAUGES.lock().await;
    let stack = start(2).await;
    let (guarded, _guarded_stop) = start_grpc(
        stack.db.url(),
        "127.0.0.1:0",
        &[
            "--auth-tokens",
            "worker=worker-token-0123456789,reader=reader-token-0123456789",
            "--auth-scopes",
            "worker=orders.read+orders.saga,reader=orders.read",
        ],
    )
    .await;
    let endpoint = format!("http://{guarded}");
    let worker_with = |token: &'static str| {
        let endpoint = endpoint.clone();
        let stack = &stack;
        async move {
            stack
                .worker(&["--grpc-endpoint", &endpoint, "--grpc-auth-token", token])
                .await
        }
    };
    let sent_again = |text: &str| metric(text, "order_worker_sent_again_total").unwrap_or(0.0);

    let order = stack.place_new(&["SKU-1"]).await;

    let wrong = worker_with("not-the-worker-token-0123").await;
    // Evidence before the check, not a fixed sleep (on a slow machine the worker may not have
    // looked yet): wait (generously) until its readiness check has met order-grpc's refusal,
    // then see it hold through three more rounds of the check (every 2 s). A worker that
    // received despite the refusal would have done so by then, after its check had run.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut refused_since = None;
    loop {
        let why = not_ready(wrong.admin).await;
        let refused = why.contains("503") && why.contains("refuses the worker");
        assert!(
            refused || refused_since.is_none(),
            "the refusal did not last: {why}"
        );
        if refused {
            let since = *refused_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= Duration::from_secs(6) {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker's readiness check never met the refusal within 60 s: {why}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        stack.queue_counts().await,
        (1, 0),
        "the message was received"
    );
    wrong.stop().await;

    let reader = worker_with("reader-token-0123456789").await;
    wait_ready(
        &format!("http://{}/readyz", reader.admin),
        Duration::from_secs(10),
    )
    .await;
    let before = sent_again(&http_get(reader.admin, "/metrics").await);
    // Rounds of two receives each, 0.3-1 s apart: well past the last receive.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = sent_again(&http_get(reader.admin, "/metrics").await);
    assert!(
        after - before >= 1.0,
        "the refused message was sent again at its last receive"
    );
    let dead = stack.drain_dlq().await;
    assert!(
        dead.is_empty(),
        "a message reached the DLQ: {:?}",
        dead.iter().map(dlq_kind).collect::<Vec<_>>()
    );
    assert_eq!(
        stack.log(&order).await.status(),
        Some(pb::OrderStatus::Placed)
    );
    reader.stop().await;

    let worker = worker_with("worker-token-0123456789").await;
    stack
        .wait_status(&order, pb::OrderStatus::Completed, Duration::from_secs(60))
        .await;
    stack.wait_queue_empty(Duration::from_secs(30)).await;
    assert!(stack.drain_dlq().await.is_empty());
    worker.stop().await;
}

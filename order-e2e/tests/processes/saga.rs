//! The fulfilment saga with real processes at volume: over 200 orders with transient and
//! permanent provider failures, plus poison messages on the queue.

use std::time::Duration;

use order_faults::audit::{provider_effects, settle_and_audit};
use order_faults::load::{self, LoadOptions};
use order_faults::stack::{HttpProviders, Stack, StackOptions};
use order_messages::CloudEvent;
use order_provider_stub::{FaultPlan, Slow, Throttle};
use order_testkit::sqs::drain_queue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_orders_settle_and_only_poison_reaches_the_dlq() {
    let options = StackOptions {
        transient_failure_rate: 0.05,
        max_receive_count: 10,
        ..StackOptions::default()
    };
    let mut stack = Stack::start(&crate::binaries(), &options).await.unwrap();
    let sqs = stack.emulator.client();

    // Two poison messages: a body that is no CloudEvent, and an event of an unknown order.
    let unknown_order = CloudEvent::new(order_messages::EnvelopeInput {
        event_id: uuid::Uuid::new_v4(),
        event_type: "OrderPlaced",
        order_id: uuid::Uuid::new_v4(),
        recorded_at: std::time::SystemTime::now(),
        global_position: 1,
        stream_version: 1,
        schema_version: 3,
        correlation_id: Some("poison"),
        traceparent: None,
        data: serde_json::json!({}),
    });
    for (body, group) in [
        ("{ not a cloud event".to_owned(), "poison-1"),
        (unknown_order.to_body(), "poison-2"),
    ] {
        sqs.send_message()
            .queue_url(&stack.queue.queue_url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(group)
            .send()
            .await
            .unwrap();
    }

    let load_options = LoadOptions {
        rate: 40,
        duration: Duration::from_millis(5_500),
        out_of_stock: 0.08,
        declined: 0.08,
        ..LoadOptions::default()
    };
    let report = load::run(&stack.endpoint(), &load_options).await.unwrap();
    assert!(
        report.acknowledged.len() >= 200,
        "{} orders",
        report.acknowledged.len()
    );
    let audit = settle_and_audit(&stack, &report, Duration::from_secs(120))
        .await
        .unwrap();
    assert!(audit.clean(), "{audit:?}");

    let dead = drain_queue(&sqs, &stack.queue.dlq_url).await;
    let mut bodies: Vec<String> = dead
        .iter()
        .map(|m| m.body().unwrap_or_default().to_owned())
        .collect();
    bodies.sort();
    let mut expected = vec!["{ not a cloud event".to_owned(), unknown_order.to_body()];
    expected.sort();
    assert_eq!(
        bodies, expected,
        "the DLQ holds exactly the poison messages"
    );
    for message in &dead {
        let attributes = message.message_attributes().unwrap();
        assert!(attributes.contains_key("dlq_reason"), "{attributes:?}");
    }

    // The WorkerFailedCount log filter ("FAILED") counts exactly the dead-lettered messages:
    // transient provider failures (retried) and cancelled orders are no worker failures.
    let worker_log = std::fs::read_to_string(stack.worker.log_path()).unwrap();
    let failed: Vec<&str> = worker_log
        .lines()
        .filter(|line| line.contains("FAILED"))
        .collect();
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(
        failed
            .iter()
            .all(|line| line.contains(r#""level":"ERROR""#)),
        "{failed:#?}"
    );

    // Out-of-stock and declined orders were cancelled, the rest completed.
    let db = stack.db().await.unwrap();
    let statuses: Vec<(String, i64)> = db
        .query(
            "SELECT status, count(*) FROM orders.order_summaries GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let count = |s: &str| {
        statuses
            .iter()
            .find(|(status, _)| status == s)
            .map_or(0, |(_, n)| *n)
    };
    assert!(
        count("Cancelled") > 0 && count("Completed") > 0,
        "{statuses:?}"
    );
    assert_eq!(
        count("Cancelled") + count("Completed"),
        report.acknowledged.len() as i64
    );
    stack.stop().await;
}

/// The saga through the HTTP provider stubs (the contracts of docs/providers) at volume, with
/// every kind of provider misbehaviour on the way: 429 bursts with Retry-After, malformed
/// answers, answers past the timeout, deliveries reported later. Every provider effect is done
/// exactly once per event that records it, and nothing reaches the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_orders_through_the_http_providers_with_each_effect_exactly_once() {
    let options = StackOptions {
        transient_failure_rate: 0.0,
        http_providers: Some(HttpProviders {
            delivery_after: Duration::from_millis(500),
            ..HttpProviders::default()
        }),
        worker_env: vec![
            ("ORDER_WORKER_PROVIDER_TIMEOUT_MS".into(), "1000".into()),
            // The faults below come in a row; the breaker is not what this test is about
            // (the payment-outage scenario is).
            ("ORDER_WORKER_BREAKER_THRESHOLD".into(), "50".into()),
        ],
        ..StackOptions::default()
    };
    let mut stack = Stack::start(&crate::binaries(), &options).await.unwrap();
    let load_options = LoadOptions {
        rate: 40,
        duration: Duration::from_millis(5_500),
        out_of_stock: 0.08,
        declined: 0.08,
        ..LoadOptions::default()
    };
    let endpoint = stack.endpoint();
    let load = tokio::spawn(async move { load::run(&endpoint, &load_options).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stub = stack.stub.as_ref().unwrap();
    for provider in ["inventory", "payment", "shipping"] {
        stub.set_faults(
            provider,
            &FaultPlan {
                latency_ms: 2,
                throttle: Some(Throttle {
                    count: 5,
                    retry_after_seconds: 1,
                }),
                malformed: 5,
                slow: Some(Slow {
                    count: 3,
                    delay_ms: 2_500,
                }),
                ..FaultPlan::default()
            },
        );
    }
    let report = load.await.unwrap().unwrap();
    assert!(
        report.acknowledged.len() >= 200,
        "{} orders",
        report.acknowledged.len()
    );
    let audit = settle_and_audit(&stack, &report, Duration::from_secs(120))
        .await
        .unwrap();
    assert!(audit.clean(), "{audit:?}");
    assert_eq!(audit.dead_letters, 0);
    eprintln!("settled {:.1} s after the load", audit.recovery_seconds);
    let effects = provider_effects(&stack).await.unwrap();
    assert!(effects.clean(), "{effects:?}");
    let stub_effects = stack.stub.as_ref().unwrap().effects();
    assert!(stub_effects.faults_injected >= 30, "{stub_effects:?}");
    assert!(
        stub_effects.replays > 0,
        "retries after malformed or slow answers replay"
    );
    assert!(
        !stub_effects.refusals.is_empty(),
        "out of stock and declined orders"
    );
    assert_eq!(
        stub_effects.invalid_requests, 0,
        "every request met the contract"
    );
    // Every order that completed was authorized, captured and shipped exactly once.
    let db = stack.db().await.unwrap();
    let completed: i64 = db
        .query_one(
            "SELECT count(*) FROM orders.order_summaries WHERE status = 'Completed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(completed > 150, "{completed}");
    assert_eq!(stub_effects.captures.len() as i64, completed);
    assert_eq!(stub_effects.shipments.len() as i64, completed);
    // Failures by provider were transient and retried: nothing FAILED in the worker's log.
    let worker_log = std::fs::read_to_string(stack.worker.log_path()).unwrap();
    assert!(!worker_log.contains("FAILED"), "{worker_log}");
    stack.stop().await;
}

//! What can never succeed goes to the DLQ, once, with its reason; nothing else does.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use order_testkit::sqs;
use uuid::Uuid;

use crate::support::*;

fn text(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_end_in_the_dlq_with_their_reason_and_nothing_else_does() {
    let stack = start(5).await;
    let worker = stack.worker(&[]).await;
    let client = sqs::client();

    let customer = id();
    let mut orders = Vec::new();
    for _ in 0..3 {
        let order = id();
        stack
            .commands()
            .place_order(place(&order, &customer, &["SKU-1"]))
            .await
            .unwrap();
        orders.push(order);
    }

    // Not an order event at all.
    let garbage = "this is not an order event";
    client
        .send_message()
        .queue_url(&stack.queue.queue_url)
        .message_body(garbage)
        .message_group_id("poison-1")
        .message_deduplication_id("poison-1")
        .message_attributes("correlation_id", text("poison-correlation"))
        .send()
        .await
        .unwrap();
    // A well-formed event of an order that does not exist.
    let ghost = Uuid::new_v4();
    let envelope = envelope(&id(), "OrderPlaced", &ghost.to_string(), 1, 1);
    client
        .send_message()
        .queue_url(&stack.queue.queue_url)
        .message_body(&envelope)
        .message_group_id(ghost.to_string())
        .message_deduplication_id("poison-2")
        .send()
        .await
        .unwrap();

    stack.wait_terminal(&orders, Duration::from_secs(30)).await;
    stack.wait_queue_empty(Duration::from_secs(20)).await;

    let dead = stack.drain_dlq().await;
    let by_body: HashMap<&str, HashMap<&str, &str>> = dead
        .iter()
        .map(|m| {
            let attributes = m
                .message_attributes()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.as_str(), v.string_value()?)))
                .collect();
            (m.body().unwrap_or_default(), attributes)
        })
        .collect();
    assert_eq!(
        dead.len(),
        2,
        "exactly the two poison messages: {by_body:?}"
    );

    let first = &by_body[garbage];
    assert_eq!(first["dlq_kind"], "undecodable");
    assert!(
        first["dlq_reason"].contains("not a CloudEvents envelope"),
        "{first:?}"
    );
    assert_eq!(
        first["correlation_id"], "poison-correlation",
        "original attributes are kept"
    );
    assert!(!first["dlq_source_message_id"].is_empty());
    assert_eq!(first["dlq_receive_count"], "1", "dead-lettered at once");

    let second = &by_body[envelope.as_str()];
    assert_eq!(second["dlq_kind"], "not_found");
    assert!(
        second["dlq_reason"].contains("GetOrderEvents"),
        "{second:?}"
    );

    let metrics = http_get(worker.admin, "/metrics").await;
    assert!(metric(&metrics, "order_worker_dlq_sends_total").unwrap_or(0.0) >= 2.0);
    assert!(metric(&metrics, "order_worker_messages_total{outcome=\"dlq\"}").unwrap_or(0.0) >= 2.0);
    for order in &orders {
        assert_each_effect_once(order, &stack.events(order).await);
    }
    worker.stop().await;
}

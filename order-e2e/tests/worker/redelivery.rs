//! Redelivered and duplicated messages act once.

use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use order_messages::ATTR_EVENT_TYPE;
use order_testkit::sqs;
use uuid::Uuid;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_delivered_twice_acts_once() {
    let stack = start(5).await;
    let client = sqs::client();
    let order = stack.place_new(&["SKU-1"]).await;

    // Take the projector's OrderPlaced message off the queue, put it back, and send two
    // copies with other deduplication ids: one in the order's message group (delivered after
    // the original) and one in another group (delivered alongside it).
    let received = client
        .receive_message()
        .queue_url(&stack.queue.queue_url)
        .wait_time_seconds(10)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let original = received.messages().first().unwrap().clone();
    assert_eq!(
        original
            .message_attributes()
            .and_then(|a| a.get(ATTR_EVENT_TYPE))
            .and_then(|v| v.string_value()),
        Some("OrderPlaced")
    );
    client
        .change_message_visibility()
        .queue_url(&stack.queue.queue_url)
        .receipt_handle(original.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    for (group, dedup) in [
        (order.clone(), format!("copy-1-{order}")),
        (format!("copy-{order}"), format!("copy-2-{order}")),
    ] {
        client
            .send_message()
            .queue_url(&stack.queue.queue_url)
            .message_body(original.body().unwrap())
            .set_message_attributes(original.message_attributes().cloned())
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .send()
            .await
            .unwrap();
    }

    let worker = stack.worker(&[]).await;
    stack
        .wait_terminal(std::slice::from_ref(&order), Duration::from_secs(30))
        .await;
    stack.wait_queue_empty(Duration::from_secs(20)).await;
    let events = stack.events(&order).await;
    assert_each_effect_once(&order, &events);
    assert_eq!(events.len(), 8, "the happy path, once");

    // Every event of the finished order delivered again (as a consumer that lost its
    // acknowledgements would see them): nothing happens, nothing is dead-lettered.
    for event in &events {
        let body = envelope(
            &event.event_id,
            &event.event_type,
            &order,
            event.global_position,
            event.stream_version,
        );
        client
            .send_message()
            .queue_url(&stack.queue.queue_url)
            .message_body(body)
            .message_group_id(&order)
            .message_deduplication_id(Uuid::new_v4().to_string())
            .send()
            .await
            .unwrap();
    }
    stack.wait_queue_empty(Duration::from_secs(30)).await;
    let after = stack.events(&order).await;
    assert_eq!(after.len(), 8, "old messages changed nothing");
    assert!(
        stack.drain_dlq().await.is_empty(),
        "old messages are not poison"
    );
    let metrics = http_get(worker.admin, "/metrics").await;
    assert!(
        metric(
            &metrics,
            "order_worker_messages_total{outcome=\"obsolete\"}"
        )
        .unwrap_or(0.0)
            >= 7.0,
        "{metrics}"
    );
    worker.stop().await;
}

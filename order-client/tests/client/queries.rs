//! Read-your-writes and the queries.

use order_client::{Code, money, pb};

use crate::support::*;

#[tokio::test]
async fn get_order_after_a_command_sees_that_command() {
    let stack = Stack::start().await.with_read_model().await;
    let client = stack.client();
    let placed = place(&client).await.unwrap();
    let order = client.get_order_after(&placed).await.unwrap();
    assert_eq!(order.order_id, placed.order_id.to_string());
    assert_eq!(order.status(), pb::OrderStatus::Placed);
    assert_eq!(order.total, Some(money("EUR", TOTAL)));

    // Each step, read back at once: never an older state.
    let reserved = client
        .reserve_inventory(placed.order_id, "res-1")
        .await
        .unwrap();
    read_back(&client, &reserved).await;
    let authorized = client
        .authorize_payment(placed.order_id, "pay-1", money("EUR", TOTAL))
        .await
        .unwrap();
    read_back(&client, &authorized).await;
    let confirmed = client.confirm_order(placed.order_id).await.unwrap();
    read_back(&client, &confirmed).await;

    let listed = client
        .list_orders()
        .customer(customer())
        .status(pb::OrderStatus::Confirmed)
        .page_size(1)
        .all(10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].order_id, placed.order_id.to_string());

    let events = client
        .get_order_events(placed.order_id)
        .after_version(1)
        .await
        .unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["InventoryReserved", "PaymentAuthorized", "OrderConfirmed"]
    );

    let missing = client.get_order(uuid::Uuid::new_v4()).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

async fn read_back(client: &order_client::Client, answer: &order_client::CommandAnswer) {
    let order = client.get_order_after(answer).await.unwrap();
    assert_eq!(order.version, answer.version, "{}", answer.command);
    assert_eq!(order.status(), answer.status);
    assert!(order.last_position >= answer.global_position);
}

/// An order whose history outgrows one message (order-grpc answers RESOURCE_EXHAUSTED for it
/// whole) comes back whole all the same: the client reads it in parts.
#[tokio::test]
async fn an_order_larger_than_a_message_comes_back_whole() {
    let stack = Stack::start_with(ServerOptions {
        max_message_bytes: Some(2048),
        ..ServerOptions::default()
    })
    .await;
    let client = stack.client();
    let placed = place(&client).await.unwrap();
    let order = placed.order_id;
    client.reserve_inventory(order, "res-1").await.unwrap();
    client
        .authorize_payment(order, "pay-1", money("EUR", TOTAL))
        .await
        .unwrap();
    client.confirm_order(order).await.unwrap();
    for _ in 0..12 {
        client.refund_payment(order, money("EUR", 1)).await.unwrap();
    }
    let events = client.get_order_events(order).await.unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(
        versions,
        (1..=16).collect::<Vec<u64>>(),
        "every event once, in order"
    );
    let later = client
        .get_order_events(order)
        .after_version(5)
        .await
        .unwrap();
    assert_eq!(later.len(), 11);
    assert_eq!(later[0].stream_version, 6);
}

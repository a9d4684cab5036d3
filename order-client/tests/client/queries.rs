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
        max_message_bytes: Some(32 * 1024),
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
    // About 250 bytes each as an answer's Event: 160 of them are more than 32 KiB.
    for _ in 0..160 {
        client.refund_payment(order, money("EUR", 1)).await.unwrap();
    }
    let events = client.get_order_events(order).await.unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(
        versions,
        (1..=164).collect::<Vec<u64>>(),
        "every event once, in order"
    );
    let later = client
        .get_order_events(order)
        .after_version(5)
        .await
        .unwrap();
    assert_eq!(later.len(), 159);
    assert_eq!(later[0].stream_version, 6);
}

/// tonic's own default limit on an answer the client decodes.
const TONIC_DEFAULT_DECODING_LIMIT: usize = 4 * 1024 * 1024;

/// A server may allow messages up to 64 MiB (`--max-message-bytes`): an order's history that
/// fits its limit but not tonic's default 4 MiB comes back whole, in one answer.
#[tokio::test]
async fn a_history_over_4_mib_comes_back_whole_from_a_server_that_allows_it() {
    let stack = Stack::start_with(ServerOptions {
        max_message_bytes: Some(64 * 1024 * 1024),
        ..ServerOptions::default()
    })
    .await;
    let client = stack.client();
    // The largest OrderPlaced the API takes: 100 lines with 64-character SKUs (about 9 KB).
    let mut placing = client.place_order(customer()).ship_to(address());
    for line in 0..100 {
        placing = placing.line(format!("{line:03}-{}", "S".repeat(60)), 1, money("EUR", 1));
    }
    let placed = placing.await.unwrap();
    // Thousands of commands would take long: the event's row is copied instead, as versions
    // 2..=EVENTS (GetOrderEvents reads each event on its own, folding nothing).
    const EVENTS: i64 = 600;
    stack
        .db
        .connect()
        .await
        .execute(
            "INSERT INTO orders.events
                 (stream_id, stream_version, event_id, event_type, schema_version, payload, category)
             SELECT stream_id, v, gen_random_uuid(), event_type, schema_version, payload, category
             FROM orders.events, generate_series(2, $2::bigint) AS v
             WHERE stream_id = $1 AND stream_version = 1",
            &[&placed.order_id, &EVENTS],
        )
        .await
        .unwrap();

    let events = client.get_order_events(placed.order_id).await.unwrap();
    let bytes = prost::Message::encoded_len(&pb::GetOrderEventsResponse {
        events: events.clone(),
    });
    assert!(
        bytes > TONIC_DEFAULT_DECODING_LIMIT,
        "the history takes {bytes} bytes"
    );
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=EVENTS as u64).collect::<Vec<u64>>());
}

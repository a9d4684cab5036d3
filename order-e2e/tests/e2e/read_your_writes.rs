//! Commands through order-grpc, projected by order-projector, read back through order-grpc.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use order_messages::CloudEvent;
use order_proto::v1 as pb;
use order_testkit::sqs;

use crate::support::*;

#[tokio::test]
async fn a_command_response_position_gives_read_your_writes() {
    let stack = start().await;
    let customer = id();
    let mut placed = Vec::new();
    for _ in 0..5 {
        let order = id();
        let response = stack
            .commands()
            .place_order(place(&order, &customer))
            .await
            .unwrap()
            .into_inner();
        let reserved = stack
            .commands()
            .reserve_inventory(pb::ReserveInventoryRequest {
                command_id: id(),
                order_id: order.clone(),
                expected_version: Some(1),
                reservation_id: "r".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(reserved.global_position > response.global_position);
        let got = stack
            .queries()
            .get_order(pb::GetOrderRequest {
                order_id: order.clone(),
                min_position: Some(reserved.global_position),
            })
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        assert_eq!(
            got.status(),
            pb::OrderStatus::InventoryReserved,
            "the read model shows the write"
        );
        // No bound on how long it waited: the projector's lag on a loaded machine is not the
        // contract; that the answer shows the write is.
        assert_eq!(got.version, 2);
        placed.push(order);
    }
    let listed = stack
        .queries()
        .list_orders(pb::ListOrdersRequest {
            customer_id: customer.clone(),
            status: 0,
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut newest_first = placed.clone();
    newest_first.reverse();
    assert_eq!(
        listed
            .orders
            .iter()
            .map(|o| o.order_id.clone())
            .collect::<Vec<_>>(),
        newest_first
    );

    // The same events reached SQS as CloudEvents.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut orders_seen = BTreeSet::new();
    let mut messages = 0;
    while messages < 10 && Instant::now() < deadline {
        for message in sqs::drain_queue(&sqs::client(), &stack.queue.queue_url).await {
            let event = CloudEvent::parse(message.body().unwrap()).unwrap();
            orders_seen.insert(event.subject.to_string());
            messages += 1;
        }
    }
    assert_eq!(messages, 10);
    assert_eq!(orders_seen, placed.into_iter().collect());
}

//! A database restore to a point before some orders, after which the callers send again the
//! commands whose answers came after the restore point, with the same command ids
//! (docs/operations.md, restore step 8), and the worker redoes the saga steps the restored log
//! lost. The providers are outside the restored database and keep the idempotency keys they
//! saw: every call the worker makes again must carry the key of the first time, so that no
//! provider reserves, authorizes, captures or ships anything twice.
//!
//! The restore is simulated: the log that lost the orders is a fresh migrated database, with a
//! fresh queue pair and order-grpc, order-projector and the worker started again against it;
//! the provider stub is the same one throughout.

use std::collections::BTreeMap;
use std::time::Duration;

use order_proto::v1 as pb;
use order_provider_stub::{Effects, Stub, StubOptions};

use crate::support::*;

/// Orders placed before the (simulated) restore and sent again after it.
const ORDERS: usize = 3;

/// Sends the request until the service gives an answer that is not "retry later"
/// ([`crate::saga::until_answered`]): the same request every time, so the same command id.
async fn send(stack: &Stack, request: &pb::PlaceOrderRequest) -> pb::CommandResponse {
    crate::saga::until_answered(
        stack,
        request.clone(),
        &id(),
        async |mut client, request| client.place_order(request).await,
    )
    .await
    .unwrap_or_else(|status| panic!("PlaceOrder {}: {status}", request.order_id))
}

/// Each order's count of every provider effect the saga of a completed order does.
fn per_order(effects: &Effects, orders: &[String]) -> BTreeMap<String, [u32; 4]> {
    let count = |counts: &BTreeMap<String, u32>, order: &str| counts.get(order).copied();
    orders
        .iter()
        .map(|order| {
            (
                order.clone(),
                [
                    count(&effects.reservations, order).unwrap_or(0),
                    count(&effects.authorizations, order).unwrap_or(0),
                    count(&effects.captures, order).unwrap_or(0),
                    count(&effects.shipments, order).unwrap_or(0),
                ],
            )
        })
        .collect()
}

/// Assert that each order was reserved, authorized, captured and shipped exactly once, and that
/// nothing was released, voided or refunded.
fn assert_each_effect_once(effects: &Effects, orders: &[String], when: &str) {
    let counts = per_order(effects, orders);
    let wrong: BTreeMap<_, _> = counts.iter().filter(|(_, n)| **n != [1, 1, 1, 1]).collect();
    assert!(
        wrong.is_empty(),
        "{when}: each order must have exactly 1 reservation, authorization, capture and \
         shipment; [reservations, authorizations, captures, shipments] per order: {wrong:?}; \
         all effects: {effects:?}"
    );
    for (what, counts) in [
        ("releases", &effects.releases),
        ("voids", &effects.voids),
        ("refunds", &effects.refunds),
        ("refusals", &effects.refusals),
    ] {
        assert!(counts.is_empty(), "{when}: no {what} expected: {effects:?}");
    }
    assert_eq!(effects.invalid_requests, 0, "{when}: {effects:?}");
}

/// Every order's status and event types, from the log.
async fn histories(
    stack: &Stack,
    orders: &[String],
) -> BTreeMap<String, (Option<pb::OrderStatus>, Vec<String>)> {
    let mut histories = BTreeMap::new();
    for order in orders {
        let events = stack.events(order).await;
        let status = stack.log(order).await.status();
        let types = events.into_iter().map(|e| e.event_type).collect();
        histories.insert(order.clone(), (status, types));
    }
    histories
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_again_after_a_restore_make_no_provider_act_twice() {
    let stub = Stub::start("127.0.0.1:0".parse().unwrap(), StubOptions::default())
        .await
        .unwrap();
    let within = Duration::from_secs(120);

    // Database A: the orders are placed and their sagas run to completion.
    let a = start(10).await;
    let worker_a = a.http_worker(&stub, &[]).await;
    let customer = id();
    let requests: Vec<pb::PlaceOrderRequest> = (0..ORDERS)
        .map(|_| place(&id(), &customer, &["SKU-1", "SKU-2"]))
        .collect();
    let orders: Vec<String> = requests.iter().map(|r| r.order_id.clone()).collect();
    for request in &requests {
        send(&a, request).await;
    }
    for order in &orders {
        a.wait_status(order, pb::OrderStatus::Completed, within)
            .await;
    }
    a.wait_queue_empty(within).await;
    let dead = a.drain_dlq().await;
    assert!(dead.is_empty(), "dead letters on A: {dead:?}");
    let before = stub.effects();
    assert_each_effect_once(&before, &orders, "before the restore");
    let on_a = histories(&a, &orders).await;
    worker_a.stop().await;
    drop(a);

    // The restore: a log that lost the orders (a fresh database), a fresh queue, the services
    // started again against it; the same providers.
    let b = start(10).await;
    for order in &orders {
        let lost = b
            .queries()
            .get_order_events(pb::GetOrderEventsRequest {
                order_id: order.clone(),
                after_version: 0,
                min_position: None,
                max_events: None,
            })
            .await;
        assert!(
            lost.as_ref().map_or_else(
                |status| status.code() == tonic::Code::NotFound,
                |answer| answer.get_ref().events.is_empty()
            ),
            "the restored log has lost order {order}: {lost:?}"
        );
    }
    let worker_b = b.http_worker(&stub, &[]).await;

    // The callers send again exactly what they sent: same command ids, orders, bodies.
    for request in &requests {
        send(&b, request).await;
    }
    for order in &orders {
        b.wait_status(order, pb::OrderStatus::Completed, within)
            .await;
    }
    b.wait_queue_empty(within).await;
    let dead = b.drain_dlq().await;
    assert!(dead.is_empty(), "dead letters on B: {dead:?}");

    let on_b = histories(&b, &orders).await;
    assert_eq!(on_b, on_a, "every order ends as it did before the restore");
    let after = stub.effects();
    assert_each_effect_once(
        &after,
        &orders,
        "after the restore and the commands sent again",
    );
    assert!(
        after.replays > before.replays,
        "the providers answered the repeated calls as replays: {after:?}"
    );
    worker_b.stop().await;
}

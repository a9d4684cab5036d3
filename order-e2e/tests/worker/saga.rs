//! The saga end to end: every order ends Completed or Cancelled, each effect once, with
//! transient provider failures, refusals, client cancellations and an unreachable order-grpc.

use std::time::Duration;

use order_proto::v1 as pb;
use order_proto::v1::order_service_client::OrderServiceClient;
use tonic::Request;

use crate::support::*;

const HAPPY: [&str; 8] = [
    "OrderPlaced",
    "InventoryReserved",
    "PaymentAuthorized",
    "OrderConfirmed",
    "FulfillmentStarted",
    "OrderShipped",
    "OrderDelivered",
    "OrderCompleted",
];

fn types(events: &[pb::Event]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

fn with_correlation<T>(message: T, correlation_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-correlation-id", correlation_id.parse().unwrap());
    request
}

/// Sends `message` until the service gives an answer that is not "retry later" (UNAVAILABLE,
/// RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED), as the contract tells a client to: the same message,
/// so the same command id, every time. A busy machine may run out of pooled database
/// connections for a moment; that is an answer to retry, not a test failure.
pub(crate) async fn until_answered<T: Clone>(
    stack: &Stack,
    message: T,
    correlation_id: &str,
    send: impl AsyncFn(
        OrderServiceClient<tonic::transport::Channel>,
        Request<T>,
    ) -> Result<tonic::Response<pb::CommandResponse>, tonic::Status>,
) -> Result<pb::CommandResponse, tonic::Status> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match send(
            stack.commands(),
            with_correlation(message.clone(), correlation_id),
        )
        .await
        {
            Err(status)
                if attempt < 50
                    && matches!(
                        status.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::ResourceExhausted
                            | tonic::Code::DeadlineExceeded
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answer => return answer.map(tonic::Response::into_inner),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Normal,
    OutOfStock,
    Declined,
    CancelledByClient,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_reaches_a_terminal_state_and_no_command_is_applied_twice() {
    let stack = start(10).await;
    let worker = stack
        .worker(&[
            "--sim-transient-failure-rate",
            "0.2",
            "--provider-attempts",
            "2",
            "--sim-seed",
            "6",
        ])
        .await;
    let customer = id();
    let mut orders = Vec::new();
    for i in 0..36 {
        let kind = match i % 9 {
            0 => Kind::OutOfStock,
            1 => Kind::Declined,
            2 => Kind::CancelledByClient,
            _ => Kind::Normal,
        };
        let skus: &[&str] = match kind {
            Kind::OutOfStock => &["SKU-1", "OOS-7"],
            Kind::Declined => &["DECLINE-1"],
            Kind::Normal | Kind::CancelledByClient => &["SKU-1", "SKU-2"],
        };
        let order = id();
        let correlation = format!("test-{order}");
        until_answered(
            &stack,
            place(&order, &customer, skus),
            &correlation,
            async |mut client, request| client.place_order(request).await,
        )
        .await
        .unwrap();
        if kind == Kind::CancelledByClient {
            // Races the worker: cancelled at once, or with compensations, or refused because
            // fulfillment already started (then it completes).
            let _ = until_answered(
                &stack,
                pb::CancelOrderRequest {
                    command_id: id(),
                    order_id: order.clone(),
                    expected_version: None,
                    reason: "changed my mind".into(),
                },
                &correlation,
                async |mut client, request| client.cancel_order(request).await,
            )
            .await;
        }
        orders.push((order, kind));
    }
    let ids: Vec<String> = orders.iter().map(|(o, _)| o.clone()).collect();
    stack.wait_terminal(&ids, Duration::from_secs(120)).await;

    for (order, kind) in &orders {
        let events = stack.events(order).await;
        assert_each_effect_once(order, &events);
        let expected: Option<Vec<&str>> = match kind {
            Kind::Normal => Some(HAPPY.to_vec()),
            Kind::OutOfStock => Some(vec![
                "OrderPlaced",
                "InventoryUnavailable",
                "OrderCancelled",
            ]),
            Kind::Declined => Some(vec![
                "OrderPlaced",
                "InventoryReserved",
                "PaymentFailed",
                "CancellationRequested",
                "InventoryReleased",
                "OrderCancelled",
            ]),
            Kind::CancelledByClient => None,
        };
        if let Some(expected) = expected {
            assert_eq!(types(&events), expected, "{kind:?} order {order}");
        }
        // A cancelled order gave back what it held.
        let seen = types(&events);
        if seen.last() == Some(&"OrderCancelled") {
            if seen.contains(&"InventoryReserved") {
                assert!(seen.contains(&"InventoryReleased"), "{order}: {seen:?}");
            }
            if seen.contains(&"PaymentAuthorized") {
                assert!(
                    seen.contains(&"PaymentVoided") || seen.contains(&"PaymentRefunded"),
                    "{order}: {seen:?}"
                );
            }
        }
        // The client's correlation id reached every command the worker sent.
        let correlation = format!("test-{order}");
        for event in &events {
            assert_eq!(
                event.correlation_id, correlation,
                "{} of order {order}",
                event.event_type
            );
        }
        // Every event the worker caused names the event it reacted to (x-causation-id): an
        // earlier event of this order; the reservation, the order's placement.
        for (i, event) in events.iter().enumerate() {
            if !event.causation_id.is_empty() {
                assert!(
                    events[..i].iter().any(|e| e.event_id == event.causation_id),
                    "{} of order {order} caused by {}, no earlier event of it",
                    event.event_type,
                    event.causation_id
                );
            }
        }
        if let Some(reserved) = events.iter().find(|e| e.event_type == "InventoryReserved") {
            assert_eq!(
                reserved.causation_id, events[0].event_id,
                "order {order}: the reservation reacted to the placement"
            );
        }
        // The read model agrees with the log.
        let last = events.last().unwrap();
        let read = stack
            .queries()
            .get_order(pb::GetOrderRequest {
                order_id: order.clone(),
                min_position: Some(last.global_position),
            })
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        assert_eq!(
            Some(read.status()),
            order_worker::saga::OrderLog::new(events.clone()).status()
        );
        assert_eq!(read.version, last.stream_version);
    }
    stack.wait_queue_empty(Duration::from_secs(20)).await;
    let dead = stack.drain_dlq().await;
    assert!(dead.is_empty(), "nothing belongs in the DLQ: {dead:?}");

    let metrics = http_get(worker.admin, "/metrics").await;
    assert!(
        metric(
            &metrics,
            "order_worker_step_duration_seconds_count{step=\"inventory\"}"
        )
        .unwrap_or(0.0)
            >= 24.0,
        "every order that was not cancelled first went through the inventory step: {metrics}"
    );
    assert!(
        metric(&metrics, "order_worker_messages_total{outcome=\"retry\"}").unwrap_or(0.0) >= 1.0,
        "with 20% transient failures and 2 attempts, some messages were retried: {metrics}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensations_release_and_refund_a_cancelled_confirmed_order() {
    let stack = start(5).await;
    let order = id();
    let commands = stack.commands();
    let placed = commands
        .clone()
        .place_order(place(&order, &id(), &["SKU-1"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(placed.version, 1);
    // The client drives the order to Confirmed and cancels it before any worker runs: the
    // worker then sees five messages, four of them for steps that are no longer owed.
    let mut client = commands.clone();
    client
        .reserve_inventory(pb::ReserveInventoryRequest {
            command_id: id(),
            order_id: order.clone(),
            expected_version: Some(1),
            reservation_id: "manual".into(),
        })
        .await
        .unwrap();
    client
        .authorize_payment(pb::AuthorizePaymentRequest {
            command_id: id(),
            order_id: order.clone(),
            expected_version: Some(2),
            payment_id: "pay-manual".into(),
            amount: Some(pb::Money {
                currency: "EUR".into(),
                amount_minor: 3000,
            }),
        })
        .await
        .unwrap();
    client
        .confirm_order(pb::ConfirmOrderRequest {
            command_id: id(),
            order_id: order.clone(),
            expected_version: Some(3),
        })
        .await
        .unwrap();
    client
        .cancel_order(pb::CancelOrderRequest {
            command_id: id(),
            order_id: order.clone(),
            expected_version: Some(4),
            reason: "customer asked".into(),
        })
        .await
        .unwrap();

    let worker = stack.worker(&[]).await;
    stack
        .wait_status(&order, pb::OrderStatus::Cancelled, Duration::from_secs(30))
        .await;
    let events = stack.events(&order).await;
    assert_each_effect_once(&order, &events);
    assert_eq!(
        types(&events),
        vec![
            "OrderPlaced",
            "InventoryReserved",
            "PaymentAuthorized",
            "OrderConfirmed",
            "CancellationRequested",
            "InventoryReleased",
            "PaymentRefunded",
            "OrderCancelled",
        ]
    );
    let refunded = events
        .iter()
        .find_map(|e| match &e.payload {
            Some(pb::event::Payload::PaymentRefunded(r)) => r.amount.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(refunded.amount_minor, 3000);

    stack.wait_queue_empty(Duration::from_secs(20)).await;
    let metrics = http_get(worker.admin, "/metrics").await;
    assert!(
        metric(
            &metrics,
            "order_worker_messages_total{outcome=\"obsolete\"}"
        )
        .unwrap_or(0.0)
            >= 4.0,
        "the four forward steps were no longer owed: {metrics}"
    );
    assert!(stack.drain_dlq().await.is_empty());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_order_grpc_is_unreachable_nothing_is_received_and_the_saga_resumes_after() {
    let stack = start(5).await;
    // The worker talks to an order-grpc that is not there yet.
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let worker = stack
        .worker(&["--grpc-endpoint", &endpoint, "--grpc-timeout-ms", "1000"])
        .await;
    let order = stack.place_new(&["SKU-1"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let not_ready = not_ready(worker.admin).await;
    assert!(not_ready.contains("order-grpc"), "{not_ready}");
    assert_eq!(
        stack.queue_counts().await,
        (1, 0),
        "the message waits on the queue, unreceived: no receive is used up by the outage"
    );

    // order-grpc comes up (a second instance on the same database).
    let (_, _grpc) = start_grpc(stack.db.url(), &format!("127.0.0.1:{port}"), &[]).await;
    stack
        .wait_terminal(std::slice::from_ref(&order), Duration::from_secs(30))
        .await;
    let events = stack.events(&order).await;
    assert_each_effect_once(&order, &events);
    assert_eq!(types(&events), HAPPY.to_vec());
    assert!(stack.drain_dlq().await.is_empty());
    worker.stop().await;
}

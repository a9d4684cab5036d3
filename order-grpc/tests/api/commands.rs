//! Every command RPC, idempotent retries, expected versions, refusals.

use order_proto::v1 as pb;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn an_order_goes_from_placement_to_completion() {
    let app = spawn_app().await;
    let order = id();
    let mut client = app.commands();
    let placed = client
        .place_order(place(&order))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (placed.order_id.as_str(), placed.version, placed.status()),
        (order.as_str(), 1, pb::OrderStatus::Placed)
    );
    assert!(!placed.duplicate);

    let o = || order.clone();
    let steps: Vec<(pb::CommandResponse, pb::OrderStatus)> = vec![
        (
            client
                .reserve_inventory(pb::ReserveInventoryRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: Some(1),
                    reservation_id: "res-1".into(),
                })
                .await
                .unwrap()
                .into_inner(),
            pb::OrderStatus::InventoryReserved,
        ),
        (
            client
                .authorize_payment(pb::AuthorizePaymentRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: Some(2),
                    payment_id: "pay-1".into(),
                    amount: eur(TOTAL),
                })
                .await
                .unwrap()
                .into_inner(),
            pb::OrderStatus::PaymentAuthorized,
        ),
        (
            client
                .confirm_order(pb::ConfirmOrderRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                })
                .await
                .unwrap()
                .into_inner(),
            pb::OrderStatus::Confirmed,
        ),
        (
            client
                .refund_payment(pb::RefundPaymentRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                    amount: eur(500),
                })
                .await
                .unwrap()
                .into_inner(),
            pb::OrderStatus::Confirmed,
        ),
        (
            client
                .start_fulfillment(pb::StartFulfillmentRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                })
                .await
                .unwrap()
                .into_inner(),
            pb::OrderStatus::Processing,
        ),
        (
            client
                .ship_order(pb::ShipOrderRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                    carrier: "DHL".into(),
                    tracking_number: "JD0001".into(),
                })
                .await
                .unwrap()
                .into_inner(),
            pb::OrderStatus::Shipped,
        ),
        (
            client
                .deliver_order(pb::DeliverOrderRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                })
                .await
                .unwrap()
                .into_inner(),
            pb::OrderStatus::Delivered,
        ),
        (
            client
                .complete_order(pb::CompleteOrderRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                })
                .await
                .unwrap()
                .into_inner(),
            pb::OrderStatus::Completed,
        ),
    ];
    let mut position = placed.global_position;
    for (index, (response, status)) in steps.iter().enumerate() {
        assert_eq!(response.status(), *status, "step {index}");
        assert_eq!(response.version, index as u64 + 2, "step {index}");
        assert!(response.global_position > position, "positions increase");
        position = response.global_position;
    }
    let events = app
        .queries()
        .get_order_events(pb::GetOrderEventsRequest {
            order_id: o(),
            after_version: 0,
            min_position: None,
            max_events: None,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 9);
    assert_eq!(events.last().unwrap().global_position, position);
    assert_eq!(events.last().unwrap().event_type, "OrderCompleted");
}

#[tokio::test]
async fn cancellations_run_their_compensations() {
    let app = spawn_app().await;
    let mut client = app.commands();

    // Inventory unavailable: cancelled at once.
    let rejected = order_in_state(&app, 0).await;
    let response = client
        .reject_inventory(pb::RejectInventoryRequest {
            command_id: id(),
            order_id: rejected,
            expected_version: None,
            reason: "out of stock".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (response.status(), response.version),
        (pb::OrderStatus::Cancelled, 3)
    );

    // Payment failed: inventory is released, then cancelled.
    let failed = order_in_state(&app, 1).await;
    let response = client
        .fail_payment(pb::FailPaymentRequest {
            command_id: id(),
            order_id: failed.clone(),
            expected_version: None,
            reason: "card declined".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.status(), pb::OrderStatus::CancellationPending);
    let response = client
        .release_inventory(pb::ReleaseInventoryRequest {
            command_id: id(),
            order_id: failed,
            expected_version: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.status(), pb::OrderStatus::Cancelled);

    // Confirmed: cancel owes inventory and the captured money.
    let confirmed = order_in_state(&app, 3).await;
    let c = || confirmed.clone();
    let response = client
        .cancel_order(pb::CancelOrderRequest {
            command_id: id(),
            order_id: c(),
            expected_version: None,
            reason: "changed my mind".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.status(), pb::OrderStatus::CancellationPending);
    client
        .refund_payment(pb::RefundPaymentRequest {
            command_id: id(),
            order_id: c(),
            expected_version: None,
            amount: eur(TOTAL),
        })
        .await
        .unwrap();
    let response = client
        .release_inventory(pb::ReleaseInventoryRequest {
            command_id: id(),
            order_id: c(),
            expected_version: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.status(), pb::OrderStatus::Cancelled);
}

#[tokio::test]
async fn a_retried_command_returns_the_first_response_and_writes_nothing() {
    let app = spawn_app().await;
    let order = id();
    let request = place(&order);
    let first = app
        .commands()
        .place_order(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = app
        .commands()
        .place_order(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(
        (again.version, again.global_position, again.status),
        (first.version, first.global_position, first.status)
    );

    // Concurrently: 16 retries of a new command, exactly one of them writes.
    let reserve = pb::ReserveInventoryRequest {
        command_id: id(),
        order_id: order.clone(),
        expected_version: None,
        reservation_id: "r".into(),
    };
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let mut client = app.commands();
            let request = reserve.clone();
            tokio::spawn(async move {
                client
                    .reserve_inventory(request)
                    .await
                    .map(|r| r.into_inner())
            })
        })
        .collect();
    let mut responses = Vec::new();
    for call in calls {
        responses.push(call.await.unwrap().unwrap());
    }
    assert_eq!(responses.iter().filter(|r| !r.duplicate).count(), 1);
    assert!(
        responses
            .iter()
            .all(|r| r.version == 2 && r.global_position == responses[0].global_position)
    );
    assert_eq!(app.event_count().await, 2);

    // The same id for another request is refused, naming the field.
    let misuse = app
        .commands()
        .place_order(pb::PlaceOrderRequest {
            order_id: id(),
            ..request
        })
        .await
        .unwrap_err();
    assert_eq!(misuse.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&misuse), ["command_id"]);
    assert_eq!(app.event_count().await, 2);
}

#[tokio::test]
async fn an_expected_version_that_does_not_hold_is_aborted() {
    let app = spawn_app().await;
    let order = order_in_state(&app, 1).await;
    let status = app
        .commands()
        .authorize_payment(pb::AuthorizePaymentRequest {
            command_id: id(),
            order_id: order,
            expected_version: Some(1),
            payment_id: "p".into(),
            amount: eur(TOTAL),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(
        status.message().contains("version 2"),
        "{}",
        status.message()
    );
    assert_eq!(app.event_count().await, 2);
}

#[tokio::test]
async fn forbidden_transitions_fail_their_precondition() {
    let app = spawn_app().await;
    let order = order_in_state(&app, 0).await;
    let status = app
        .commands()
        .ship_order(pb::ShipOrderRequest {
            command_id: id(),
            order_id: order.clone(),
            expected_version: None,
            carrier: "DHL".into(),
            tracking_number: "1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let failure = details(&status).precondition_failure().cloned().unwrap();
    assert_eq!(failure.violations[0].r#type, "STATE");
    assert!(
        status
            .message()
            .contains("ShipOrder is not allowed when the order is Placed"),
        "{}",
        status.message()
    );

    // A state-dependent rule: authorizing a different amount than the total.
    let reserved = order_in_state(&app, 1).await;
    let status = app
        .commands()
        .authorize_payment(pb::AuthorizePaymentRequest {
            command_id: id(),
            order_id: reserved,
            expected_version: None,
            payment_id: "p".into(),
            amount: eur(TOTAL + 1),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        details(&status).precondition_failure().unwrap().violations[0].subject,
        "amount.amount_minor"
    );

    let again = app.commands().place_order(place(&order)).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn commands_and_queries_on_an_unknown_order_are_not_found() {
    let app = spawn_app().await;
    let unknown = id();
    let status = app
        .commands()
        .confirm_order(pb::ConfirmOrderRequest {
            command_id: id(),
            order_id: unknown.clone(),
            expected_version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // With an expected version too: the order does not exist, whatever version was expected.
    let status = app
        .commands()
        .confirm_order(pb::ConfirmOrderRequest {
            command_id: id(),
            order_id: unknown.clone(),
            expected_version: Some(3),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = app
        .queries()
        .get_order(pb::GetOrderRequest {
            order_id: unknown.clone(),
            min_position: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = app
        .queries()
        .get_order_events(pb::GetOrderEventsRequest {
            order_id: unknown,
            after_version: 0,
            min_position: None,
            max_events: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn the_correlation_id_is_echoed_and_recorded_or_generated() {
    let app = spawn_app().await;
    let order = id();
    let mut request = tonic::Request::new(place(&order));
    request
        .metadata_mut()
        .insert("x-correlation-id", "checkout-42".parse().unwrap());
    request.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let response = app.commands().place_order(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-correlation-id").unwrap(),
        "checkout-42"
    );

    let generated = app
        .commands()
        .reserve_inventory(pb::ReserveInventoryRequest {
            command_id: id(),
            order_id: order.clone(),
            expected_version: None,
            reservation_id: "r".into(),
        })
        .await
        .unwrap();
    let generated_id = generated
        .metadata()
        .get("x-correlation-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        generated_id.len(),
        36,
        "a UUID was generated: {generated_id}"
    );
    // Not one token of visible characters (a space, a tab, too long): replaced too.
    for refused in ["a b", "a\tb", &"x".repeat(129)] {
        let mut request = tonic::Request::new(pb::GetOrderRequest {
            order_id: order.clone(),
            min_position: None,
        });
        request
            .metadata_mut()
            .insert("x-correlation-id", refused.parse().unwrap());
        let response = app.queries().get_order(request).await;
        let echoed = match &response {
            Ok(response) => response.metadata().get("x-correlation-id"),
            Err(status) => status.metadata().get("x-correlation-id"),
        };
        let echoed = echoed.unwrap().to_str().unwrap();
        assert_eq!(echoed.len(), 36, "{refused:?} replaced: {echoed}");
    }

    let events = app
        .queries()
        .get_order_events(pb::GetOrderEventsRequest {
            order_id: order,
            after_version: 0,
            min_position: None,
            max_events: None,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events[0].correlation_id, "checkout-42");
    assert_eq!(events[1].correlation_id, generated_id);
    let client = app.db.connect().await;
    let traceparent: Option<String> = client
        .query_one(
            "SELECT traceparent FROM orders.events WHERE stream_version = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        traceparent.as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
}

/// A `traceparent` that is not a W3C trace context is ignored with its `tracestate` (W3C
/// Trace Context: an invalid traceparent is discarded, and tracestate means nothing without
/// it): nothing of it is recorded with the events, so nothing of it reaches SQS, the worker or
/// the providers. A valid one is recorded with its tracestate. (Without tracing, both were
/// stored as sent: `garbage`, an all-zero trace id, version `ff`, upper-case hex.)
#[tokio::test]
async fn a_traceparent_that_is_no_trace_context_is_dropped_with_its_tracestate() {
    let app = spawn_app().await;
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let cases = [
        ("garbage", None),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            None,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            None,
        ),
        (
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            None,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            None,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            None,
        ),
        (valid, Some(valid)),
        // A later version may carry more after the flags (W3C: parse the version 00 part).
        (
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later",
            Some("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"),
        ),
    ];
    let client = app.db.connect().await;
    for (sent, recorded) in cases {
        let order = id();
        let mut request = tonic::Request::new(place(&order));
        request
            .metadata_mut()
            .insert("traceparent", sent.parse().unwrap());
        request
            .metadata_mut()
            .insert("tracestate", "vendor=abc".parse().unwrap());
        app.commands().place_order(request).await.unwrap();
        let row = client
            .query_one(
                "SELECT traceparent, tracestate FROM orders.events WHERE stream_id = $1::text::uuid",
                &[&order],
            )
            .await
            .unwrap();
        let (traceparent, tracestate): (Option<String>, Option<String>) = (row.get(0), row.get(1));
        assert_eq!(traceparent.as_deref(), recorded, "{sent}");
        assert_eq!(
            tracestate.as_deref(),
            recorded.map(|_| "vendor=abc"),
            "the tracestate sent with {sent}"
        );
    }
}

/// `x-causation-id` (the event a caller reacts to: a worker's saga step) is recorded as the
/// `causation_id` of the events the command appends; absent, none is recorded; anything but
/// a UUID (not nil) is refused with INVALID_ARGUMENT naming the header, and nothing is written.
#[tokio::test]
async fn the_causation_id_is_recorded_and_a_malformed_one_refused() {
    let app = spawn_app().await;
    let order = id();
    app.commands().place_order(place(&order)).await.unwrap();
    let trigger = id();
    let mut request = tonic::Request::new(pb::ReserveInventoryRequest {
        command_id: id(),
        order_id: order.clone(),
        expected_version: None,
        reservation_id: "r".into(),
    });
    request
        .metadata_mut()
        .insert("x-causation-id", trigger.parse().unwrap());
    app.commands().reserve_inventory(request).await.unwrap();

    for refused in ["not-a-uuid", "00000000-0000-0000-0000-000000000000", ""] {
        let mut request = tonic::Request::new(pb::AuthorizePaymentRequest {
            command_id: id(),
            order_id: order.clone(),
            expected_version: None,
            payment_id: "p".into(),
            amount: None,
        });
        request
            .metadata_mut()
            .insert("x-causation-id", refused.parse().unwrap());
        let status = app
            .commands()
            .authorize_payment(request)
            .await
            .expect_err(refused);
        assert_eq!(status.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            status.message().contains("x-causation-id"),
            "{refused:?}: {}",
            status.message()
        );
    }

    // A query records nothing: it ignores the header, whatever a proxy forwards in it.
    let mut query = tonic::Request::new(pb::GetOrderEventsRequest {
        order_id: order,
        after_version: 0,
        min_position: None,
        max_events: None,
    });
    query
        .metadata_mut()
        .insert("x-causation-id", "not-a-uuid".parse().unwrap());
    let events = app
        .queries()
        .get_order_events(query)
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 2, "the refused commands wrote nothing");
    assert_eq!(events[0].causation_id, "", "none given, none recorded");
    assert_eq!(events[1].causation_id, trigger);
}

/// `--command-event-ids`: `identity` (the default) names a command's events by the time and the
/// command id (UUID version 8, the worker's provider keys survive a restore); `random` gives
/// each a new UUID v7, as releases before it did, for a deploy during which older workers
/// still run.
#[tokio::test]
async fn command_event_ids_are_identities_unless_told_random() {
    for (args, version) in [
        (vec![], 8),
        (vec!["--command-event-ids=random".to_owned()], 7),
    ] {
        let app = spawn_app_with(Options {
            extra_args: args.clone(),
            ..Options::default()
        })
        .await;
        let order = id();
        app.commands().place_order(place(&order)).await.unwrap();
        let events = app
            .queries()
            .get_order_events(pb::GetOrderEventsRequest {
                order_id: order.clone(),
                after_version: 0,
                min_position: None,
                max_events: None,
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        let event_id = uuid::Uuid::parse_str(&events[0].event_id).unwrap();
        assert_eq!(event_id.get_version_num(), version, "{args:?}");
    }
}

//! Permissions per caller: every method against a token of every single scope. A call outside
//! the caller's scopes is PERMISSION_DENIED before any work (nothing is written), with the
//! method and the missing scope in the status details; inside them it reaches the service
//! (whatever the service then answers to the empty request).

use order_proto::v1 as pb;
use order_proto::v1::order_query_service_client::OrderQueryServiceClient;
use order_proto::v1::order_service_client::OrderServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::helpers::*;

const READER: &str = "reader-token-0123456789abcdef";
const PLACER: &str = "placer-token-0123456789abcdef";
const SAGA: &str = "saga-token-0123456789abcdefgh";
const ADMIN: &str = "admin-token-0123456789abcdefg";
const ALL: &str = "all-scopes-token-0123456789ab";

const METHODS: [&str; 17] = [
    "PlaceOrder",
    "ReserveInventory",
    "RejectInventory",
    "AuthorizePayment",
    "FailPayment",
    "ConfirmOrder",
    "StartFulfillment",
    "ShipOrder",
    "DeliverOrder",
    "CompleteOrder",
    "CancelOrder",
    "ReleaseInventory",
    "RefundPayment",
    "GetOrder",
    "ListOrders",
    "GetOrderEvents",
    "SubscribeEvents",
];

/// The matrix of the contract, written out independently of the server's table.
fn allowed(scope: &str, method: &str) -> bool {
    match scope {
        "orders.read" => matches!(
            method,
            "GetOrder" | "ListOrders" | "GetOrderEvents" | "SubscribeEvents"
        ),
        "orders.place" => method == "PlaceOrder",
        "orders.saga" => matches!(
            method,
            "ReserveInventory"
                | "RejectInventory"
                | "AuthorizePayment"
                | "FailPayment"
                | "ConfirmOrder"
                | "StartFulfillment"
                | "ShipOrder"
                | "DeliverOrder"
                | "CompleteOrder"
                | "ReleaseInventory"
                | "RefundPayment"
        ),
        "orders.admin" => matches!(method, "CancelOrder" | "RefundPayment"),
        _ => unreachable!("{scope}"),
    }
}

fn authorized<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Calls `method` with `token` and a request for an order that does not exist (commands would
/// otherwise succeed and change the log); Ok when the service answered anything but
/// PERMISSION_DENIED or UNAUTHENTICATED.
async fn call(channel: &Channel, method: &str, token: &str) -> Result<(), Status> {
    let mut commands = OrderServiceClient::new(channel.clone());
    let mut queries = OrderQueryServiceClient::new(channel.clone());
    let order_id = id();
    let command_id = id();
    // Every command but PlaceOrder: the same request shape for an order that does not exist.
    macro_rules! command {
        ($call:ident, $request:ident) => {
            commands
                .$call(authorized(
                    pb::$request {
                        order_id,
                        command_id,
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(|_| ())
        };
    }
    let outcome = match method {
        "PlaceOrder" => commands
            .place_order(authorized(pb::PlaceOrderRequest::default(), token))
            .await
            .map(|_| ()),
        "ReserveInventory" => command!(reserve_inventory, ReserveInventoryRequest),
        "RejectInventory" => command!(reject_inventory, RejectInventoryRequest),
        "AuthorizePayment" => command!(authorize_payment, AuthorizePaymentRequest),
        "FailPayment" => command!(fail_payment, FailPaymentRequest),
        "ConfirmOrder" => command!(confirm_order, ConfirmOrderRequest),
        "StartFulfillment" => command!(start_fulfillment, StartFulfillmentRequest),
        "ShipOrder" => command!(ship_order, ShipOrderRequest),
        "DeliverOrder" => command!(deliver_order, DeliverOrderRequest),
        "CompleteOrder" => command!(complete_order, CompleteOrderRequest),
        "CancelOrder" => command!(cancel_order, CancelOrderRequest),
        "ReleaseInventory" => command!(release_inventory, ReleaseInventoryRequest),
        "RefundPayment" => command!(refund_payment, RefundPaymentRequest),
        "GetOrder" => queries
            .get_order(authorized(
                pb::GetOrderRequest {
                    order_id,
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(|_| ()),
        "ListOrders" => queries
            .list_orders(authorized(pb::ListOrdersRequest::default(), token))
            .await
            .map(|_| ()),
        "GetOrderEvents" => queries
            .get_order_events(authorized(
                pb::GetOrderEventsRequest {
                    order_id,
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(|_| ()),
        "SubscribeEvents" => queries
            .subscribe_events(authorized(pb::SubscribeEventsRequest::default(), token))
            .await
            .map(|_| ()),
        other => unreachable!("{other}"),
    };
    match outcome {
        Err(status)
            if matches!(
                status.code(),
                Code::PermissionDenied | Code::Unauthenticated
            ) =>
        {
            Err(status)
        }
        _ => Ok(()),
    }
}

#[tokio::test]
async fn every_method_is_open_exactly_to_the_scopes_the_contract_gives_it() {
    let app = spawn_app_with(Options {
        tokens: Some(format!(
            "reader={READER},placer={PLACER},saga={SAGA},admin={ADMIN},all={ALL}"
        )),
        auth_scopes: Some(
            "reader=orders.read,placer=orders.place,saga=orders.saga,admin=orders.admin,\
             all=orders.read+orders.place+orders.saga+orders.admin"
                .to_owned(),
        ),
        ..Options::default()
    })
    .await;
    let tokens = [
        ("orders.read", "reader", READER),
        ("orders.place", "placer", PLACER),
        ("orders.saga", "saga", SAGA),
        ("orders.admin", "admin", ADMIN),
    ];
    let mut checked = 0;
    for method in METHODS {
        for (scope, caller, token) in tokens {
            let outcome = call(&app.channel, method, token).await;
            if allowed(scope, method) {
                assert!(
                    outcome.is_ok(),
                    "{caller} ({scope}) may call {method}: {outcome:?}"
                );
            } else {
                let status =
                    outcome.expect_err(&format!("{caller} ({scope}) may not call {method}"));
                assert_eq!(
                    status.code(),
                    Code::PermissionDenied,
                    "{method} by {caller}: {status:?}"
                );
                let path = if matches!(
                    method,
                    "GetOrder" | "ListOrders" | "GetOrderEvents" | "SubscribeEvents"
                ) {
                    format!("/orders.v1.OrderQueryService/{method}")
                } else {
                    format!("/orders.v1.OrderService/{method}")
                };
                let info = status
                    .get_details_error_info()
                    .expect("an ErrorInfo detail names what is missing");
                assert_eq!(info.reason, "MISSING_SCOPE");
                assert_eq!(info.metadata.get("method"), Some(&path));
                assert_eq!(
                    info.metadata.get("caller").map(String::as_str),
                    Some(caller)
                );
                let required = info.metadata.get("required_scope").unwrap();
                assert!(
                    tokens
                        .iter()
                        .filter(|(s, _, _)| allowed(s, method))
                        .all(|(s, _, _)| required.contains(s)),
                    "{method}: {required}"
                );
                assert!(status.message().contains(&path), "{}", status.message());
            }
            checked += 1;
        }
        assert!(
            call(&app.channel, method, ALL).await.is_ok(),
            "a token with every scope may call {method}"
        );
    }
    assert_eq!(checked, 17 * 4);
    assert_eq!(app.event_count().await, 0, "refused calls wrote nothing");

    let (_, metrics) = app.admin_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("order_grpc_permission_denied_total")
                && l.contains(r#"caller="reader""#)
                && l.contains(r#"method="/orders.v1.OrderService/CancelOrder""#)),
        "denials are counted by caller and method"
    );
}

#[tokio::test]
async fn a_refused_command_changes_nothing_and_an_allowed_one_works() {
    let app = spawn_app_with(Options {
        tokens: Some(format!("reader={READER},placer={PLACER}")),
        auth_scopes: Some("reader=orders.read,placer=orders.place".to_owned()),
        ..Options::default()
    })
    .await;
    let order = id();
    let refused = app
        .commands()
        .place_order(authorized(place(&order), READER))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(app.event_count().await, 0);
    let placed = app
        .commands()
        .place_order(authorized(place(&order), PLACER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(placed.version, 1);
    let events = app
        .queries()
        .get_order_events(authorized(
            pb::GetOrderEventsRequest {
                order_id: order.clone(),
                ..Default::default()
            },
            READER,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
}

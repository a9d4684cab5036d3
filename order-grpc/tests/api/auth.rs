//! Bearer tokens: required when configured, never for health checks.

use order_proto::v1 as pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::*;

const TOKEN: &str = "worker-token-0123456789abcdef";

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn with_tokens_configured_only_known_tokens_get_in() {
    let app = spawn_app_with(Options {
        tokens: Some(format!("worker={TOKEN}")),
        ..Options::default()
    })
    .await;
    let order = id();

    let missing = app.commands().place_order(place(&order)).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    let wrong = app
        .commands()
        .place_order(with_token(place(&order), "not-the-token-0123456789"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(app.event_count().await, 0);

    let ok = app
        .commands()
        .place_order(with_token(place(&order), TOKEN))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().version, 1);
    let client = app.db.connect().await;
    let actor: Option<String> = client
        .query_one("SELECT actor FROM orders.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        actor.as_deref(),
        Some("worker"),
        "the token's name is recorded as the actor"
    );

    assert_eq!(
        app.health("").await.unwrap(),
        ServingStatus::Serving,
        "health needs no token"
    );
    let query = app
        .queries()
        .get_order(pb::GetOrderRequest {
            order_id: order,
            min_position: None,
        })
        .await
        .unwrap_err();
    assert_eq!(query.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn without_tokens_configured_no_token_is_needed() {
    let app = spawn_app().await;
    assert!(app.commands().place_order(place(&id())).await.is_ok());
}

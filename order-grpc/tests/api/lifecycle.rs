//! Health, readiness, admin endpoints, reflection, and graceful shutdown.

use std::time::Duration;

use order_proto::v1 as pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::*;

#[tokio::test]
async fn health_follows_the_database_migrations_and_shutdown() {
    let app = spawn_app_with(Options {
        migrated: false,
        ..Options::default()
    })
    .await;
    // Wait for the first readiness check to finish (however slow the machine), not for a
    // fixed time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (code, body) = loop {
        let (code, body) = app.admin_get("/readyz").await;
        if !body.contains("starting") || tokio::time::Instant::now() > deadline {
            break (code, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(app.health("").await.unwrap(), ServingStatus::NotServing);
    assert_eq!(
        app.health("orders.v1.OrderService").await.unwrap(),
        ServingStatus::NotServing
    );
    assert_eq!(code, 503);
    assert!(body.contains("migrations are not current"), "{body}");
    assert_eq!(
        app.admin_get("/healthz").await.0,
        200,
        "alive while not ready"
    );
    // A client calling meanwhile is told to retry later, not that the server is broken.
    let order = uuid::Uuid::new_v4().to_string();
    let placed = app.commands().place_order(place(&order)).await.unwrap_err();
    assert_eq!(placed.code(), Code::Unavailable, "{placed:?}");
    assert!(placed.message().contains("not ready"), "{placed:?}");
    let read = app
        .queries()
        .get_order_events(pb::GetOrderEventsRequest {
            order_id: order.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(read.code(), Code::Unavailable, "{read:?}");
    assert!(read.message().contains("not ready"), "{read:?}");

    order_store::migrate(&order_store::StoreConfig::new(app.db.url()))
        .await
        .unwrap();
    app.wait_for_health(ServingStatus::Serving).await;
    assert_eq!(
        app.health("orders.v1.OrderQueryService").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(app.admin_get("/readyz").await.0, 200);

    let unknown = app.health("no.such.Service").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_count_commands_by_type_and_outcome() {
    let app = spawn_app().await;
    let order = order_in_state(&app, 1).await;
    let _ = app.commands().place_order(place(&order)).await;
    let (code, body) = app.admin_get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("order_commands_total{command=\"PlaceOrder\",outcome=\"ok\"}"),
        "{body}"
    );
    assert!(
        body.contains("order_commands_total{command=\"PlaceOrder\",outcome=\"rejected\"}"),
        "{body}"
    );
    assert!(
        body.contains("order_command_duration_seconds_bucket{command=\"ReserveInventory\""),
        "{body}"
    );
    // Rare events' counters are there before the first one.
    for series in [
        "order_grpc_requests_shed_total",
        "order_grpc_deadline_exceeded_total",
        "order_store_append_conflicts_total",
        "order_store_group_commit_fallbacks_total",
        "order_db_connections_replaced_total",
        "order_db_server_changes_total{reason=\"read_only\"}",
    ] {
        assert!(body.contains(&format!("\n{series} ")), "{series}: {body}");
    }
}

/// Watch as the health-checking protocol says: the current status, then only changes; an
/// unknown service is SERVICE_UNKNOWN on a stream that stays open; shutdown ends the streams
/// (an idle watcher does not hold the drain for its grace period).
#[tokio::test]
async fn health_watch_sends_changes_only_and_an_unknown_service_stays_open_until_shutdown() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let app = spawn_app().await;
    app.wait_for_health(ServingStatus::Serving).await;
    let mut client = HealthClient::new(app.channel.clone());
    let watch = |service: &str| HealthCheckRequest {
        service: service.to_owned(),
    };
    let mut whole = client.watch(watch("")).await.unwrap().into_inner();
    let first = whole.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    let mut unknown = client
        .watch(watch("no.such.Service"))
        .await
        .unwrap()
        .into_inner();
    let first = unknown.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::ServiceUnknown);
    // The readiness check runs every 2 s; nothing changed, so nothing more is sent.
    let quiet = tokio::time::timeout(Duration::from_millis(4_500), whole.message()).await;
    assert!(quiet.is_err(), "a message without a change: {quiet:?}");
    let open = tokio::time::timeout(Duration::from_millis(200), unknown.message()).await;
    assert!(
        open.is_err(),
        "the unknown service's stream stays open: {open:?}"
    );

    let started = std::time::Instant::now();
    app.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "open Watch streams held the drain for {:?}",
        started.elapsed()
    );
    // Both streams ended; the whole server's said NOT_SERVING first.
    let mut said = Vec::new();
    for mut stream in [whole, unknown] {
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            let mut statuses = Vec::new();
            while let Ok(Some(message)) = stream.message().await {
                statuses.push(message.status());
            }
            statuses
        })
        .await;
        said.push(ended.expect("a Watch stream outlived the server"));
    }
    assert_eq!(said, [vec![ServingStatus::NotServing], vec![]]);
}

/// The value of one series on a `/metrics` page (0 when absent).
fn series(body: &str, name_and_labels: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A caller's mistake is `invalid` under its own RPC's name, never `error` (which the console's
/// error-spike alarm counts) and never `command="unknown"`.
#[tokio::test]
async fn a_callers_mistakes_count_as_invalid_under_the_rpcs_name() {
    let app = spawn_app().await;
    let invalid = "order_commands_total{command=\"PlaceOrder\",outcome=\"invalid\"}";
    let error = "order_commands_total{command=\"PlaceOrder\",outcome=\"error\"}";
    let (_, before) = app.admin_get("/metrics").await;
    // A request the service refuses to parse.
    let mut empty = place(&uuid::Uuid::new_v4().to_string());
    empty.lines.clear();
    let status = app.commands().place_order(empty).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    // A command id used again for another request.
    let first = place(&uuid::Uuid::new_v4().to_string());
    app.commands().place_order(first.clone()).await.unwrap();
    let mut other = place(&uuid::Uuid::new_v4().to_string());
    other.command_id = first.command_id.clone();
    let status = app.commands().place_order(other).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let (_, after) = app.admin_get("/metrics").await;
    assert!(
        series(&after, invalid) >= series(&before, invalid) + 2.0,
        "both counted as invalid:\n{after}"
    );
    assert_eq!(
        series(&after, error),
        series(&before, error),
        "neither counted as an error of the service"
    );
    assert!(!after.contains("command=\"unknown\""), "{after}");
}

/// A command the gateway answers DEADLINE_EXCEEDED is counted too, under its name.
#[tokio::test]
async fn a_command_past_its_deadline_counts_as_deadline() {
    let app = spawn_app().await;
    let deadline = "order_commands_total{command=\"PlaceOrder\",outcome=\"deadline\"}";
    let (_, before) = app.admin_get("/metrics").await;
    let mut request = tonic::Request::new(place(&uuid::Uuid::new_v4().to_string()));
    request.set_timeout(Duration::from_nanos(1));
    let status = app.raw_commands().place_order(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let (_, after) = app.admin_get("/metrics").await;
    assert!(
        series(&after, deadline) >= series(&before, deadline) + 1.0,
        "{after}"
    );
}

#[tokio::test]
async fn reflection_lists_the_services_in_both_versions() {
    use futures::StreamExt;
    let app = spawn_app().await;
    // v1
    {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_request::MessageRequest,
            server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new(app.channel.clone())
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            responses.next().await.unwrap().unwrap().message_response
        else {
            panic!()
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for expected in [
            "orders.v1.OrderService",
            "orders.v1.OrderQueryService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
    }
    // v1alpha
    {
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_request::MessageRequest,
            server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new(app.channel.clone())
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            responses.next().await.unwrap().unwrap().message_response
        else {
            panic!()
        };
        assert!(
            list.service
                .iter()
                .any(|s| s.name == "orders.v1.OrderService")
        );
    }
}

#[tokio::test]
async fn shutdown_finishes_in_flight_calls_and_refuses_new_ones() {
    let mut app = spawn_app().await;
    let lock = block_commands(&app).await;
    let mut client = app.commands();
    let in_flight = tokio::spawn(async move { client.place_order(place(&id())).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    app.signal_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.admin_get("/readyz").await,
        (503, "not ready: shutting down\n".to_owned())
    );
    assert_eq!(
        app.health("")
            .await
            .map_err(|s| s.code())
            .unwrap_or(ServingStatus::NotServing),
        ServingStatus::NotServing
    );
    let fresh = tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr))
        .unwrap()
        .connect()
        .await;
    assert!(fresh.is_err(), "no new connections are accepted: {fresh:?}");

    lock.batch_execute("ROLLBACK").await.unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes during the drain");
    assert_eq!(response.into_inner().status(), pb::OrderStatus::Placed);
    tokio::time::timeout(Duration::from_secs(10), app.join())
        .await
        .expect("the server stops")
        .unwrap();
}

//! The load balancer's health check (`/AWS.ALB/healthcheck`) against a real database that is
//! stopped: grpc-status 14 while not ready, 0 when ready, and no token needed; meanwhile
//! `grpc.health.v1.Health/Check` keeps answering NOT_SERVING inside a grpc-status 0 response,
//! which is why the ALB cannot use it.

use std::time::Duration;

use clap::Parser;
use order_grpc::{App, ServeArgs};
use order_testkit::pg::{PrivateCluster, StopMode};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::*;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: ServeArgs,
}

/// The grpc-status of one ALB-style probe: a POST with an empty gRPC frame and no token.
async fn alb_probe(channel: &Channel) -> String {
    let request = http::Request::builder()
        .method("POST")
        .uri(order_grpc::alb_health::PATH)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(String::from("\0\0\0\0\0")))
        .unwrap();
    let response = tower::ServiceExt::oneshot(channel.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_else(|| "missing".to_owned())
}

async fn health(channel: &Channel) -> Result<ServingStatus, tonic::Status> {
    let response = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(response.into_inner().status())
}

async fn eventually(channel: &Channel, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = alb_probe(channel).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ALB health check stayed at grpc-status {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_alb_health_check_fails_while_the_database_is_stopped() {
    let cluster = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = cluster.url("orders");
    order_store::migrate(&order_store::StoreConfig::new(url.clone()))
        .await
        .unwrap();
    let args = Wrapper::try_parse_from([
        "order-grpc",
        "--grpc-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--database-url",
        &url,
        "--auth-tokens",
        "worker=aaaaaaaaaaaaaaaaaaaaaaaa",
        "--log-format",
        "pretty",
    ])
    .unwrap()
    .args;
    let app = App::build(args).await.unwrap();
    let addr = app.grpc_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();

    // ready: database reachable and migrated; no bearer token needed for the probe
    eventually(&channel, "0").await;
    assert_eq!(health(&channel).await.unwrap(), ServingStatus::Serving);

    // the database stops: the ALB sees UNAVAILABLE, the task is taken out of rotation
    let stopper = tokio::task::spawn_blocking(move || {
        cluster.stop(StopMode::Fast).unwrap();
        cluster
    });
    let cluster = stopper.await.unwrap();
    eventually(&channel, "14").await;
    // grpc.health.v1 says the same, but inside grpc-status 0: what the ALB cannot read
    assert_eq!(
        health(&channel).await.unwrap(),
        ServingStatus::NotServing,
        "grpc.health.v1.Health/Check answers NOT_SERVING with grpc-status 0"
    );

    // and back
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again().unwrap();
        cluster
    })
    .await
    .unwrap();
    eventually(&channel, "0").await;

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    drop(cluster);
}

#[tokio::test]
async fn the_alb_health_check_fails_before_the_migrations() {
    let app = spawn_app_with(Options {
        migrated: false,
        ..Options::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(alb_probe(&app.channel).await, "14");
    assert_eq!(app.health("").await.unwrap(), ServingStatus::NotServing);
    order_store::migrate(&order_store::StoreConfig::new(app.db.url()))
        .await
        .unwrap();
    eventually(&app.channel, "0").await;
    app.shutdown().await.unwrap();
}

//! Starting order-grpc and order-projector in process against one fresh database.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use order_proto::v1 as pb;
use order_proto::v1::order_query_service_client::OrderQueryServiceClient;
use order_proto::v1::order_service_client::OrderServiceClient;
use order_testkit::pg::TestDatabase;
use order_testkit::sqs::{self, QueuePair};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use uuid::Uuid;

#[derive(Parser)]
struct GrpcArgs {
    #[command(flatten)]
    args: order_grpc::ServeArgs,
}

#[derive(Parser)]
struct ProjectorArgs {
    #[command(flatten)]
    args: order_projector::config::RunArgs,
}

pub struct Stack {
    pub db: TestDatabase,
    pub queue: QueuePair,
    pub grpc_addr: SocketAddr,
    pub channel: Channel,
    stops: Vec<oneshot::Sender<()>>,
}

impl Stack {
    pub fn commands(&self) -> OrderServiceClient<Channel> {
        OrderServiceClient::new(self.channel.clone())
    }
    pub fn queries(&self) -> OrderQueryServiceClient<Channel> {
        OrderQueryServiceClient::new(self.channel.clone())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

pub async fn start() -> Stack {
    let db = TestDatabase::migrated().await;
    let queue = sqs::fifo_queue_pair(5).await;
    let mut stops = Vec::new();

    let grpc = GrpcArgs::try_parse_from([
        "order-grpc",
        "--grpc-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--database-url",
        db.url(),
        "--log-format",
        "pretty",
    ])
    .unwrap()
    .args;
    let app = order_grpc::App::build(grpc).await.unwrap();
    let grpc_addr = app.grpc_addr();
    let ready = format!("http://{}/readyz", app.admin_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    stops.push(stop);

    let projector = ProjectorArgs::try_parse_from([
        "order-projector",
        "--admin-addr",
        "127.0.0.1:0",
        "--database-url",
        db.url(),
        "--orders-queue-url",
        &queue.queue_url,
        "--poll-ms",
        "200",
        "--log-format",
        "pretty",
    ])
    .unwrap()
    .args;
    let app = order_projector::startup::App::start_with_sqs(projector, sqs::client())
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    stops.push(stop);

    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect_lazy();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while order_runtime::probe::check(&ready, Duration::from_secs(1))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "order-grpc never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Stack {
        db,
        queue,
        grpc_addr,
        channel,
        stops,
    }
}

pub fn id() -> String {
    Uuid::new_v4().to_string()
}

pub fn place(order_id: &str, customer_id: &str) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        command_id: id(),
        order_id: order_id.to_owned(),
        expected_version: None,
        customer_id: customer_id.to_owned(),
        lines: vec![pb::OrderLine {
            sku: "E2E-1".into(),
            quantity: 2,
            unit_price: Some(pb::Money {
                currency: "EUR".into(),
                amount_minor: 1500,
            }),
        }],
        shipping_address: Some(pb::Address {
            recipient: "Ada".into(),
            line1: "1 Main St".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
            ..Default::default()
        }),
        shipping_method: pb::ShippingMethod::Standard as i32,
    }
}

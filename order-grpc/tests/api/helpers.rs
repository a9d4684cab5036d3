//! Spawning the app and talking to it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use order_grpc::{App, ServeArgs};
use order_proto::v1 as pb;
use order_proto::v1::order_query_service_client::OrderQueryServiceClient;
use order_proto::v1::order_service_client::OrderServiceClient;
use order_testkit::pg::TestDatabase;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use uuid::Uuid;

/// A bare HTTP/2 client (see [`TestApp::raw_queries`]).
pub type RawClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    tonic::body::Body,
>;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: ServeArgs,
}

/// Settings a test may change.
#[derive(Debug, Clone)]
pub struct Options {
    pub tokens: Option<String>,
    pub auth_scopes: Option<String>,
    pub max_concurrent_requests: u32,
    pub max_subscriptions: u32,
    pub max_subscriptions_per_client: u32,
    pub pool_size: u16,
    pub pool_wait_ms: u64,
    pub max_message_bytes: u32,
    pub grace_seconds: u64,
    pub migrated: bool,
    /// PEM certificate and key files for TLS.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// More `serve` flags, given last (`--keepalive-interval-seconds=1`).
    pub extra_args: Vec<String>,
    /// Read GetOrder, ListOrders and GetOrderEvents through a "read replica" that is the
    /// test's own database, by a pool of its own (`--read-database-url`).
    pub replica_is_primary: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tokens: None,
            auth_scopes: None,
            max_concurrent_requests: 256,
            max_subscriptions: 16,
            max_subscriptions_per_client: 8,
            pool_size: 16,
            pool_wait_ms: 1000,
            max_message_bytes: 4 * 1024 * 1024,
            grace_seconds: 30,
            migrated: true,
            tls: None,
            extra_args: Vec::new(),
            replica_is_primary: false,
        }
    }
}

pub struct TestApp {
    pub db: TestDatabase,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let db = if options.migrated {
        TestDatabase::migrated().await
    } else {
        TestDatabase::empty().await
    };
    let mut argv: Vec<String> = [
        "order-grpc",
        "--grpc-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--database-url",
        db.url(),
        "--log-format",
        "pretty",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend([
        format!(
            "--max-concurrent-requests={}",
            options.max_concurrent_requests
        ),
        format!("--max-subscriptions={}", options.max_subscriptions),
        format!(
            "--max-subscriptions-per-client={}",
            options.max_subscriptions_per_client
        ),
        format!("--db-pool-size={}", options.pool_size),
        format!("--db-pool-wait-ms={}", options.pool_wait_ms),
        format!("--max-message-bytes={}", options.max_message_bytes),
        format!("--shutdown-grace-seconds={}", options.grace_seconds),
    ]);
    if let Some(tokens) = &options.tokens {
        argv.push(format!("--auth-tokens={tokens}"));
    }
    if let Some(scopes) = &options.auth_scopes {
        argv.push(format!("--auth-scopes={scopes}"));
    }
    if let Some((cert, key)) = &options.tls {
        argv.push(format!("--tls-cert-file={}", cert.display()));
        argv.push(format!("--tls-key-file={}", key.display()));
    }
    if options.replica_is_primary {
        argv.push(format!("--read-database-url={}", db.url()));
    }
    argv.extend(options.extra_args.iter().cloned());
    let args = Wrapper::try_parse_from(argv).unwrap().args;
    let app = App::build(args).await.unwrap();
    let grpc_addr = app.grpc_addr();
    let admin_addr = app.admin_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let app = TestApp {
        db,
        grpc_addr,
        admin_addr,
        channel,
        stop: Some(stop),
        task: Some(task),
    };
    if options.migrated && options.tls.is_none() {
        app.wait_for_health(ServingStatus::Serving).await;
    }
    app
}

impl TestApp {
    pub fn commands(&self) -> OrderServiceClient<Channel> {
        OrderServiceClient::new(self.channel.clone())
    }

    pub fn queries(&self) -> OrderQueryServiceClient<Channel> {
        OrderQueryServiceClient::new(self.channel.clone())
    }

    /// A query client over a bare HTTP/2 client: unlike tonic's `Channel`, it sends the
    /// request's `grpc-timeout` without enforcing it itself, so what comes back after the
    /// deadline is the server's own answer.
    pub fn raw_queries(&self) -> OrderQueryServiceClient<RawClient> {
        let (client, origin) = self.raw_client();
        OrderQueryServiceClient::with_origin(client, origin)
    }

    /// A command client over a bare HTTP/2 client (see [`TestApp::raw_queries`]).
    pub fn raw_commands(&self) -> OrderServiceClient<RawClient> {
        let (client, origin) = self.raw_client();
        OrderServiceClient::with_origin(client, origin)
    }

    fn raw_client(&self) -> (RawClient, http::Uri) {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http();
        let origin: http::Uri = format!("http://{}", self.grpc_addr).parse().unwrap();
        (client, origin)
    }

    pub async fn health(&self, service: &str) -> Result<ServingStatus, tonic::Status> {
        let response = HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?;
        Ok(response.into_inner().status())
    }

    /// Wait (up to 10 s) until the server reports `status` for the whole server.
    pub async fn wait_for_health(&self, status: ServingStatus) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if matches!(self.health("").await, Ok(s) if s == status) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "health never became {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signal shutdown and wait for the server to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap(),
            None => Ok(()),
        }
    }

    pub fn signal_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn join(mut self) -> anyhow::Result<()> {
        match self.task.take() {
            Some(task) => task.await.unwrap(),
            None => Ok(()),
        }
    }

    /// Rows in the event log.
    pub async fn event_count(&self) -> i64 {
        self.db
            .connect()
            .await
            .query_one("SELECT count(*) FROM orders.events", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// GET an admin path: (status code, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.admin_addr)
            .await
            .unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let code = response.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        (code, body)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

// ------------------------------------------------------------------ requests

pub const CUSTOMER: &str = "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001";

pub fn id() -> String {
    Uuid::new_v4().to_string()
}

pub fn eur(amount_minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency: "EUR".into(),
        amount_minor,
    })
}

pub fn address() -> pb::Address {
    pb::Address {
        recipient: "Ada Lovelace".into(),
        line1: "12 St James's Square".into(),
        city: "London".into(),
        postal_code: "SW1Y 4JH".into(),
        country: "GB".into(),
        ..Default::default()
    }
}

/// 2 x 12.50 + 1 x 5.00 = 30.00 EUR.
pub fn place(order_id: &str) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        command_id: id(),
        order_id: order_id.to_owned(),
        expected_version: None,
        customer_id: CUSTOMER.into(),
        lines: vec![
            pb::OrderLine {
                sku: "SKU-1".into(),
                quantity: 2,
                unit_price: eur(1250),
            },
            pb::OrderLine {
                sku: "SKU-2".into(),
                quantity: 1,
                unit_price: eur(500),
            },
        ],
        shipping_address: Some(address()),
        shipping_method: pb::ShippingMethod::Express as i32,
    }
}

pub const TOTAL: i64 = 3000;

/// The error details (field violations etc.) of a status.
pub fn details(status: &tonic::Status) -> tonic_types::ErrorDetails {
    use tonic_types::StatusExt;
    status.get_error_details()
}

/// The fields named by a status' BadRequest violations.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    details(status)
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Place an order and walk it through `steps` commands; returns the order id.
pub async fn order_in_state(app: &TestApp, steps: usize) -> String {
    let order = id();
    let mut client = app.commands();
    client.place_order(place(&order)).await.unwrap();
    let o = || order.clone();
    for step in 0..steps {
        match step {
            0 => client
                .reserve_inventory(pb::ReserveInventoryRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                    reservation_id: "res-1".into(),
                })
                .await
                .unwrap(),
            1 => client
                .authorize_payment(pb::AuthorizePaymentRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                    payment_id: "pay-1".into(),
                    amount: eur(TOTAL),
                })
                .await
                .unwrap(),
            2 => client
                .confirm_order(pb::ConfirmOrderRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                })
                .await
                .unwrap(),
            3 => client
                .start_fulfillment(pb::StartFulfillmentRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                })
                .await
                .unwrap(),
            4 => client
                .ship_order(pb::ShipOrderRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                    carrier: "DHL".into(),
                    tracking_number: "JD0001".into(),
                })
                .await
                .unwrap(),
            5 => client
                .deliver_order(pb::DeliverOrderRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                })
                .await
                .unwrap(),
            6 => client
                .complete_order(pb::CompleteOrderRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                })
                .await
                .unwrap(),
            _ => panic!("no step {step}"),
        };
    }
    order
}

/// Hold an exclusive lock on the commands table, so that every command blocks, until the
/// returned client is dropped or commits.
pub async fn block_commands(app: &TestApp) -> order_store::tokio_postgres::Client {
    let client = app.db.connect().await;
    client
        .batch_execute("BEGIN; LOCK TABLE orders.commands IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    client
}

// ------------------------------------------------------------------ a path that goes silent

/// A TCP proxy in front of the app whose path can go silent: after [`SilentProxy::go_silent`]
/// it forwards nothing more in either direction but keeps both sockets open (no FIN, no RST),
/// as a NAT or load balancer that dropped the flow does.
pub struct SilentProxy {
    pub addr: SocketAddr,
    silent: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentProxy {
    /// A proxy to `upstream` on a free local port.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (silent, silenced) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(forward(client_read, server_write, silenced.clone()));
                tokio::spawn(forward(server_read, client_write, silenced.clone()));
            }
        });
        Self { addr, silent, task }
    }

    /// Stop forwarding for good; the sockets stay open until the proxy is dropped.
    pub fn go_silent(&self) {
        let _ = self.silent.send(true);
    }

    /// A channel to the app through the proxy.
    pub fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy()
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copy `from` to `to` until the path goes silent, then hold both halves open, reading and
/// writing nothing.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut silenced: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = silenced.wait_for(|silent| *silent) => break,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if *silenced.borrow() || to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    // silent: keep both sockets open, as a dropped NAT entry does
    std::future::pending::<()>().await;
    drop((from, to));
}

//! The real order-grpc (and the projector's read model) in process against a fresh database,
//! and what the tests ask of them. Shared with order-cli's tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use order_client::{Client, Health, RetryPolicy, money, pb};
use order_projector::{Projector, ReadModel, Running};
use order_store::{EventStore, StoreConfig};
use order_testkit::pg::TestDatabase;
use tokio::sync::oneshot;
use uuid::Uuid;

#[derive(Parser)]
struct GrpcArgs {
    #[command(flatten)]
    args: order_grpc::ServeArgs,
}

/// One order-grpc, stoppable and restartable on the same address.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Settings of a server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `--auth-tokens`.
    pub tokens: Option<String>,
    /// PEM certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--max-message-bytes`.
    pub max_message_bytes: Option<u32>,
}

impl Server {
    /// Start order-grpc on `addr` (port 0: any free port).
    pub async fn start(db_url: &str, addr: SocketAddr, options: &ServerOptions) -> Self {
        let mut argv: Vec<String> = [
            "order-grpc",
            "--admin-addr",
            "127.0.0.1:0",
            "--database-url",
            db_url,
            "--log-format",
            "pretty",
            "--shutdown-grace-seconds=1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.push(format!("--grpc-addr={addr}"));
        if let Some(tokens) = &options.tokens {
            argv.push(format!("--auth-tokens={tokens}"));
        }
        if let Some(bytes) = options.max_message_bytes {
            argv.push(format!("--max-message-bytes={bytes}"));
        }
        if let Some((cert, key)) = &options.tls {
            argv.push(format!("--tls-cert-file={}", cert.display()));
            argv.push(format!("--tls-key-file={}", key.display()));
        }
        let args = GrpcArgs::try_parse_from(argv).unwrap().args;
        let app = order_grpc::App::build(args).await.unwrap();
        let addr = app.grpc_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shut it down gracefully and wait until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A database, an order-grpc on it and, when asked, the read model's projector.
pub struct Stack {
    pub db: TestDatabase,
    pub server: Option<Server>,
    pub addr: SocketAddr,
    projector: Option<Running>,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> Self {
        let db = TestDatabase::migrated().await;
        let server = Server::start(db.url(), "127.0.0.1:0".parse().unwrap(), &options).await;
        let addr = server.addr;
        let stack = Self {
            db,
            server: Some(server),
            addr,
            projector: None,
        };
        if options.tls.is_none() {
            stack.wait_until_serving().await;
        }
        stack
    }

    /// Also run the read model's projection (GetOrder, ListOrders).
    pub async fn with_read_model(mut self) -> Self {
        let store = EventStore::new(projector_config(&self.db)).unwrap();
        let running = Projector::builder(store)
            .owner("order-client-tests")
            .lease_ttl(Duration::from_secs(2))
            .poll(Duration::from_millis(50))
            .projection(ReadModel::new())
            .build()
            .unwrap()
            .start();
        self.projector = Some(running);
        self
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client of this stack with quick retries.
    pub fn client(&self) -> Client {
        Client::builder()
            .endpoint(self.url())
            .retry(quick_retries(4))
            .build()
            .unwrap()
    }

    /// Stop the server (gracefully).
    /// A connection holding `orders.commands` locked: every command blocks until
    /// `ROLLBACK` is sent on it.
    pub async fn hold_commands(&self) -> tokio_postgres::Client {
        let lock = self.db.connect().await;
        lock.batch_execute("BEGIN; LOCK TABLE orders.commands IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        lock
    }

    pub async fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// Start the server again on the same address.
    pub async fn restart_server(&mut self) {
        self.stop_server().await;
        self.server =
            Some(Server::start(self.db.url(), self.addr, &ServerOptions::default()).await);
    }

    pub async fn wait_until_serving(&self) {
        let client = Client::builder()
            .endpoint(self.url())
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !matches!(client.health("").await, Ok(Health::Serving)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "order-grpc never became SERVING"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many commands the service recorded under `command_id`.
    pub async fn commands_recorded(&self, command_id: &str) -> i64 {
        let id = Uuid::parse_str(command_id).unwrap();
        self.db
            .connect()
            .await
            .query_one(
                "SELECT count(*) FROM orders.commands WHERE command_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The ids of the order's events, in stream order.
    pub async fn order_events(&self, order_id: Uuid) -> Vec<Uuid> {
        self.db
            .connect()
            .await
            .query(
                "SELECT event_id FROM orders.events WHERE stream_id = $1 ORDER BY stream_version",
                &[&order_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// Every event id of the log, in position order (the tests write one command at a time,
    /// so that is also the order of their commits).
    /// The log's last event: its global position and its order. Panics on an empty log.
    pub async fn last_event(&self) -> (u64, Uuid) {
        let row = self
            .db
            .connect()
            .await
            .query_one(
                "SELECT global_position, stream_id FROM orders.events
                 ORDER BY global_position DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (u64::try_from(row.get::<_, i64>(0)).unwrap(), row.get(1))
    }

    pub async fn log(&self) -> Vec<Uuid> {
        self.db
            .connect()
            .await
            .query(
                "SELECT event_id FROM orders.events ORDER BY global_position",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(running) = self.projector.take() {
            tokio::spawn(running.stop(Duration::from_secs(1)));
        }
    }
}

/// The store's settings for `db` as the projector's role (its tables are its own).
fn projector_config(db: &TestDatabase) -> StoreConfig {
    let url = db.url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut config = StoreConfig::new(format!(
        "{url}{separator}options=-c%20role%3Dorders_projector"
    ));
    config.pool_size = 4;
    config.pool_wait_timeout = Duration::from_secs(10);
    config
}

/// Up to `attempts` attempts, 20 ms doubling to 200 ms.
pub fn quick_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(attempts)
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(200))
}

pub const CUSTOMER: &str = "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001";
/// 2 x 12.50 + 1 x 5.00 EUR.
pub const TOTAL: i64 = 3000;

pub fn customer() -> Uuid {
    Uuid::parse_str(CUSTOMER).unwrap()
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

/// Place the usual order (30.00 EUR).
pub fn place(client: &Client) -> order_client::Command<pb::PlaceOrderRequest> {
    client
        .place_order(customer())
        .line("SKU-1", 2, money("EUR", 1250))
        .line("SKU-2", 1, money("EUR", 500))
        .ship_to(address())
        .shipping_method(pb::ShippingMethod::Express)
}

/// A TCP proxy in front of a server whose connections can be cut at once (the network
/// failing under a call, not the service answering).
pub struct Proxy {
    pub addr: SocketAddr,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let connections = connections.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(task);
                }
            }
        });
        Self {
            addr,
            connections,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drop every open connection (both sides); returns how many there were.
    pub fn cut(&self) -> usize {
        let mut connections = self.connections.lock().unwrap();
        let open = connections.iter().filter(|c| !c.is_finished()).count();
        for connection in connections.drain(..) {
            connection.abort();
        }
        open
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

//! order-grpc and order-projector in process against a fresh database and a fresh queue pair,
//! and the worker: in process (`App::start_with`) or as the real binary in a child process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use order_proto::v1 as pb;
use order_proto::v1::order_query_service_client::OrderQueryServiceClient;
use order_proto::v1::order_service_client::OrderServiceClient;
use order_testkit::pg::TestDatabase;
use order_testkit::sqs::{self, QueuePair};
use order_worker::saga::OrderLog;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
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

#[derive(Parser)]
struct WorkerArgs {
    #[command(flatten)]
    args: order_worker::RunArgs,
}

/// The workers of this test process share one metrics registry, so a circuit gauge one test's
/// outage opens is what another test's worker reports. Tests that open a provider's circuit,
/// and tests that read the circuit gauges, hold this while they run.
pub static CIRCUIT_GAUGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The services a worker needs, and their queues.
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

    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Settings for a worker on this stack, fast enough for tests (visibility 3 s, long poll
    /// 1 s, short backoffs); a flag in `extra` replaces the default of the same name.
    pub fn worker_args(&self, extra: &[&str]) -> order_worker::RunArgs {
        let endpoint = self.grpc_endpoint();
        let defaults = [
            ("--orders-queue-url", self.queue.queue_url.as_str()),
            ("--orders-dlq-url", self.queue.dlq_url.as_str()),
            ("--grpc-endpoint", endpoint.as_str()),
            ("--admin-addr", "127.0.0.1:0"),
            ("--log-format", "pretty"),
            ("--wait-seconds", "1"),
            ("--visibility-seconds", "3"),
            ("--retry-base-ms", "300"),
            ("--retry-max-ms", "1000"),
            ("--provider-backoff-base-ms", "5"),
            ("--provider-backoff-max-ms", "20"),
            ("--breaker-cooldown-ms", "200"),
            ("--sim-latency-ms", "2"),
            ("--shutdown-grace-seconds", "10"),
        ];
        let mut argv: Vec<&str> = vec!["order-worker"];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                argv.extend([flag, value]);
            }
        }
        argv.extend_from_slice(extra);
        WorkerArgs::try_parse_from(argv).unwrap().args
    }

    /// Start a worker in this process.
    pub async fn worker(&self, extra: &[&str]) -> Worker {
        let app = order_worker::App::start_with(self.worker_args(extra), sqs::client())
            .await
            .unwrap();
        let admin = app.admin_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Worker {
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A worker in this process on the provider stub's three HTTP providers (1 s per call);
    /// `extra` adds flags.
    pub async fn http_worker(&self, stub: &order_provider_stub::Stub, extra: &[&str]) -> Worker {
        let inventory = stub.base_url("inventory");
        let payment = stub.base_url("payment");
        let shipping = stub.base_url("shipping");
        let mut args = vec![
            "--providers",
            "http",
            "--inventory-url",
            &inventory,
            "--payment-url",
            &payment,
            "--shipping-url",
            &shipping,
            "--provider-timeout-ms",
            "1000",
        ];
        args.extend_from_slice(extra);
        self.worker(&args).await
    }

    /// Place a new order of `skus` for a new customer; its id.
    pub async fn place_new(&self, skus: &[&str]) -> String {
        let order = id();
        self.commands()
            .place_order(place(&order, &id(), skus))
            .await
            .unwrap();
        order
    }

    /// The order's history from the log.
    pub async fn log(&self, order_id: &str) -> OrderLog {
        let events = self
            .queries()
            .get_order_events(pb::GetOrderEventsRequest {
                order_id: order_id.to_owned(),
                after_version: 0,
                min_position: None,
                max_events: None,
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        OrderLog::new(events)
    }

    pub async fn events(&self, order_id: &str) -> Vec<pb::Event> {
        self.queries()
            .get_order_events(pb::GetOrderEventsRequest {
                order_id: order_id.to_owned(),
                after_version: 0,
                min_position: None,
                max_events: None,
            })
            .await
            .unwrap()
            .into_inner()
            .events
    }

    /// Wait until every order is Completed or Cancelled; panics naming the stragglers.
    pub async fn wait_terminal(&self, orders: &[String], within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut pending = Vec::new();
            for order in orders {
                let status = self.log(order).await.status();
                if !matches!(
                    status,
                    Some(pb::OrderStatus::Completed | pb::OrderStatus::Cancelled)
                ) {
                    pending.push(format!("{order}: {status:?}"));
                }
            }
            if pending.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} orders did not finish within {within:?}: {pending:?}",
                pending.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Wait until the order's log shows `status`.
    pub async fn wait_status(&self, order: &str, status: pb::OrderStatus, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let now = self.log(order).await.status();
            if now == Some(status) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {order} is {now:?}, not {status:?}, after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every message on the DLQ now (received and deleted).
    pub async fn drain_dlq(&self) -> Vec<aws_sdk_sqs::types::Message> {
        sqs::drain_queue(&sqs::client(), &self.queue.dlq_url).await
    }

    /// Wait (up to `within`) until the DLQ holds messages, and take them; panics after.
    pub async fn wait_dead_letters(&self, within: Duration) -> Vec<aws_sdk_sqs::types::Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing reached the DLQ within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
            let dead = self.drain_dlq().await;
            if !dead.is_empty() {
                return dead;
            }
        }
    }

    /// Messages on the orders queue: (visible, in flight).
    pub async fn queue_counts(&self) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let output = sqs::client()
            .get_queue_attributes()
            .queue_url(&self.queue.queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attributes = output.attributes().cloned().unwrap_or_default();
        let count = |name: A| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (
            count(A::ApproximateNumberOfMessages),
            count(A::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Messages on the orders queue, visible and in flight.
    pub async fn queue_depth(&self) -> u64 {
        let (visible, in_flight) = self.queue_counts().await;
        visible + in_flight
    }

    /// Wait until the orders queue is empty (everything handled and deleted).
    pub async fn wait_queue_empty(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let depth = self.queue_depth().await;
            if depth == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{depth} messages still on the queue after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// A worker running in this process.
pub struct Worker {
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Worker {
    /// Graceful shutdown, as on SIGTERM.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the worker did not stop within 30 s")
                .unwrap();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// order-grpc and order-projector on a fresh database and a fresh queue pair (SQS moves a
/// message to the DLQ after `max_receive_count` receives).
///
/// Set `TEST_LOG=1` to see the services' log lines (with `--no-capture`).
pub async fn start(max_receive_count: u32) -> Stack {
    if std::env::var_os("TEST_LOG").is_some() {
        order_runtime::telemetry::init_logging(order_runtime::telemetry::LogFormat::Pretty);
    }
    let db = TestDatabase::migrated().await;
    let queue = sqs::fifo_queue_pair(max_receive_count).await;
    let mut stops = Vec::new();

    let (grpc_addr, stop) = start_grpc(db.url(), "127.0.0.1:0", &[]).await;
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
    Stack {
        db,
        queue,
        grpc_addr,
        channel,
        stops,
    }
}

/// An order-grpc on `database_url`, listening on `addr`, ready; stops when the sender is
/// dropped or sent to.
pub async fn start_grpc(
    database_url: &str,
    addr: &str,
    extra: &[&str],
) -> (SocketAddr, oneshot::Sender<()>) {
    let mut argv = vec![
        "order-grpc",
        "--grpc-addr",
        addr,
        "--admin-addr",
        "127.0.0.1:0",
        "--database-url",
        database_url,
        "--log-format",
        "pretty",
    ];
    argv.extend_from_slice(extra);
    let grpc = GrpcArgs::try_parse_from(argv).unwrap().args;
    let app = order_grpc::App::build(grpc).await.unwrap();
    let grpc_addr = app.grpc_addr();
    let ready = format!("http://{}/readyz", app.admin_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    wait_ready(&ready, Duration::from_secs(10)).await;
    (grpc_addr, stop)
}

/// Why the worker whose admin server is `admin` is not ready: its `/readyz` answer (it must
/// not be 200).
pub async fn not_ready(admin: SocketAddr) -> String {
    order_runtime::probe::check(&format!("http://{admin}/readyz"), Duration::from_secs(2))
        .await
        .expect_err("the worker is ready")
}

/// Wait until `url` answers 200.
pub async fn wait_ready(url: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match order_runtime::probe::check(url, Duration::from_secs(1)).await {
            Ok(()) => return,
            Err(why) => assert!(
                tokio::time::Instant::now() < deadline,
                "{url} not ready after {within:?}: {why}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn id() -> String {
    Uuid::new_v4().to_string()
}

/// A PlaceOrder request with one line per SKU (2 x 15.00 EUR each).
pub fn place(order_id: &str, customer_id: &str, skus: &[&str]) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        command_id: id(),
        order_id: order_id.to_owned(),
        expected_version: None,
        customer_id: customer_id.to_owned(),
        lines: skus
            .iter()
            .map(|sku| pb::OrderLine {
                sku: (*sku).to_owned(),
                quantity: 2,
                unit_price: Some(pb::Money {
                    currency: "EUR".into(),
                    amount_minor: 1500,
                }),
            })
            .collect(),
        shipping_address: Some(pb::Address {
            recipient: "Ada".into(),
            line1: "1 Main St".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
            ..Default::default()
        }),
        shipping_method: pb::ShippingMethod::Express as i32,
    }
}

/// Event types of an order, with how often each occurs.
pub fn type_counts(events: &[pb::Event]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for event in events {
        *counts.entry(event.event_type.clone()).or_default() += 1;
    }
    counts
}

/// No event type occurs twice in an order's log: no saga command was applied twice.
pub fn assert_each_effect_once(order: &str, events: &[pb::Event]) {
    let repeated: Vec<_> = type_counts(events)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(
        repeated.is_empty(),
        "order {order} has repeated events {repeated:?}: {:?}",
        events.iter().map(|e| &e.event_type).collect::<Vec<_>>()
    );
}

/// GET a plain-HTTP URL's whole response (the admin server's /metrics).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    try_get(addr, path)
        .await
        .unwrap_or_else(|| panic!("GET http://{addr}{path} failed"))
}

/// A CloudEvents body of an order event as the projector writes it (with an empty `data`:
/// the worker reads what it needs from the log).
pub fn envelope(
    event_id: &str,
    event_type: &str,
    order_id: &str,
    global_position: u64,
    stream_version: u64,
) -> String {
    let body = format!(
        r#"{{"specversion":"1.0","id":"{event_id}","source":"{source}","type":"{event_type}","subject":"{order_id}","time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","globalposition":{global_position},"streamversion":{stream_version},"schemaversion":1,"correlationid":"e2e-envelope","data":{{}}}}"#,
        source = order_messages::SOURCE,
    );
    assert!(order_messages::CloudEvent::parse(&body).is_ok(), "{body}");
    body
}

/// The value of a metric line that starts with `series` (name plus labels), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
}

/// The worker binary: order-e2e links each service into an `e2e-order-*` binary of its own,
/// built with exactly the code of this test.
pub fn worker_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_e2e-order-worker"))
}

/// A free local port, outside the range outgoing connections take theirs from.
pub fn free_port() -> u16 {
    order_testkit::net::free_port().expect("a free port")
}

/// The worker binary as a child process, configured through the environment only (as on
/// ECS). Killed on drop.
pub struct ChildWorker {
    pub child: Child,
    pub admin: SocketAddr,
}

impl ChildWorker {
    pub fn spawn(stack: &Stack, env: &[(&str, &str)]) -> Self {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new(worker_binary());
        command.env_clear();
        sqs::pass_environment(&mut command);
        command
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("WORKER_MODE", "sqs-consumer")
            .env("ORDERS_QUEUE_URL", &stack.queue.queue_url)
            .env("ORDERS_DLQ_URL", &stack.queue.dlq_url)
            .env("ORDER_GRPC_ENDPOINT", stack.grpc_endpoint())
            .env("ORDER_ADMIN_ADDR", admin.to_string())
            .env("ORDER_WORKER_WAIT_SECONDS", "1")
            .env("ORDER_WORKER_VISIBILITY_SECONDS", "3")
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "pretty");
        for (name, value) in env {
            command.env(name, value);
        }
        command.stdin(Stdio::null());
        let child = command.spawn().unwrap();
        Self { child, admin }
    }

    /// Wait until the worker reports at least one message in flight.
    pub async fn wait_in_flight(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the worker exited early: {status}");
            }
            if let Ok(Some(text)) =
                tokio::time::timeout(Duration::from_secs(1), try_get(self.admin, "/metrics")).await
                && metric(&text, "order_worker_messages_in_flight").unwrap_or(0.0) >= 1.0
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the worker had nothing in flight within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Send a signal (`KILL`, `TERM`) to the child.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Wait for the child to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the worker did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChildWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn try_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    Some(String::from_utf8_lossy(&response).into_owned())
}

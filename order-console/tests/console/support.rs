//! A console in process against a fresh database, read through a read-only login user, and
//! a plain HTTP client.

use std::net::SocketAddr;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use order_console::Console;
use order_console::config::{Cli, Command};
use order_testkit::pg::TestDatabase;
use tokio::sync::oneshot;

/// The read-only login user of the tests (cluster-wide, made once).
const READER: &str = "order_console_test";
/// A login user that may write (a member of orders_projector), for the refusal test.
pub const WRITER: &str = "order_console_writer_test";
const PASSWORD: &str = "console-test-password";

/// `url` with another user and password.
pub fn url_as(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (_, host) = rest.rsplit_once('@').unwrap();
    format!("{scheme}://{user}:{PASSWORD}@{host}")
}

/// Make the test login users, once per cluster (concurrent tests may race: a duplicate is
/// fine).
pub async fn ensure_users(db: &TestDatabase) {
    let client = db.connect().await;
    for (user, group) in [(READER, "orders_readonly"), (WRITER, "orders_projector")] {
        ensure_role(&client, user, group).await;
    }
}

/// A login user of the test password in `group`, unless the cluster has it already.
pub async fn ensure_role(client: &tokio_postgres::Client, user: &str, group: &str) {
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
        .await
        .unwrap()
        .is_some();
    if exists {
        return;
    }
    let made = client
        .batch_execute(&format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{PASSWORD}' IN ROLE {group}"
        ))
        .await;
    if let Err(error) = made {
        let duplicate = error.code().is_some_and(|c| {
            *c == tokio_postgres::error::SqlState::DUPLICATE_OBJECT
                || *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
        });
        assert!(duplicate, "{error}");
    }
}

/// The read-only URL of `db`.
pub async fn reader_url(db: &TestDatabase) -> String {
    ensure_users(db).await;
    url_as(db.url(), READER)
}

/// A running console.
pub struct TestConsole {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestConsole {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `order-console serve` arguments → settings (the queues and tokens off unless given).
pub fn settings(database_url: &str, extra: &[&str]) -> order_console::config::Settings {
    let mut args = vec![
        "order-console",
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--database-url",
        database_url,
        "--refresh-ms",
        "500",
    ];
    if !extra.contains(&"--scrape-ms") {
        args.extend(["--scrape-ms", "200"]);
    }
    // Off unless given (the environment of scripts/check has queue URLs).
    for flag in [
        "--orders-queue-url",
        "--orders-dlq-url",
        "--tokens",
        "--services",
    ] {
        if !extra.contains(&flag) {
            args.push(match flag {
                "--orders-queue-url" => "--orders-queue-url=",
                "--orders-dlq-url" => "--orders-dlq-url=",
                "--tokens" => "--tokens=",
                _ => "--services=",
            });
        }
    }
    args.extend_from_slice(extra);
    let Command::Serve(serve) = Cli::try_parse_from(args).unwrap().command else {
        panic!("not serve");
    };
    serve.settings().unwrap()
}

/// Start a console on `db`, read-only.
pub async fn start(db: &TestDatabase, extra: &[&str]) -> TestConsole {
    let url = reader_url(db).await;
    start_with(settings(&url, extra), None).await
}

pub async fn start_with(
    settings: order_console::config::Settings,
    sqs: Option<aws_sdk_sqs::Client>,
) -> TestConsole {
    let console = Console::build_with_sqs(settings, sqs).await.unwrap();
    let addr = console.addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(console.run_until(async {
        let _ = stopped.await;
    }));
    TestConsole {
        addr,
        stop: Some(stop),
    }
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// One request to the console.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    request_from(None, addr, method, path, headers, body).await
}

/// One request to the console from the local address `from` (e.g. 127.0.0.2: another
/// client as the console sees it), or any.
pub async fn request_from(
    from: Option<std::net::IpAddr>,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut connector = HttpConnector::new();
    connector.set_local_address(from);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client
        .request(
            builder
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, Method::GET, path, &[], "").await
}

/// Insert one event as the superuser (the console itself can write nothing); returns its
/// position.
pub async fn insert_event(
    db: &TestDatabase,
    order: uuid::Uuid,
    version: i64,
    event_type: &str,
    payload: &serde_json::Value,
) -> i64 {
    let client = db.connect().await;
    client
        .query_one(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, correlation_id, actor)
             VALUES ($1, $2, $3, $4, 1, $5, 'corr-1', 'tester') RETURNING global_position",
            &[&order, &version, &uuid::Uuid::new_v4(), &event_type, payload],
        )
        .await
        .unwrap()
        .get(0)
}

/// Wait until `check` holds for the body of `path` (at most `seconds`), or panic with the
/// last body.
pub async fn eventually(
    addr: SocketAddr,
    path: &str,
    seconds: u64,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let answer = get(addr, path).await;
        if check(&answer.body) {
            return answer.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never matched within {seconds} s; last answer:\n{}",
            answer.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

//! A database server that stops answering (frozen, cut off) for longer than a connection's and
//! a statement's time limits together: every append is answered within one limit counted from
//! when it began waiting, UNAVAILABLE when nothing can have been written, and a retry after the
//! server is back applies each command exactly once.
//!
//! The freeze is a TCP proxy between the store and the test database that stops forwarding:
//! what it reads is held (as in the kernel's buffers of a SIGSTOPped server) and delivered when
//! it thaws, so a statement sent during the freeze may still commit afterwards. The tests mark
//! the process's pooled connections for replacement (a process-wide mark), so they run in a
//! process of their own.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use order_store::{AppendOutcome, AppendRequest, Error, EventStore, ExpectedVersion, Idempotency};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use uuid::Uuid;

#[allow(dead_code)]
#[path = "../store/support.rs"]
mod support;

use support::*;

/// A TCP proxy to the test database that can stop forwarding.
struct Proxy {
    port: u16,
    frozen: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, watch) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (upstream, mut watch) = (upstream.clone(), watch.clone());
                tokio::spawn(async move {
                    // A frozen server's kernel takes the connection; the server answers nothing.
                    if watch.wait_for(|f| !*f).await.is_err() {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, watch.clone()),
                        pump(server_read, client_write, watch),
                    );
                });
            }
        });
        Self { port, frozen, task }
    }

    /// `url` with its server replaced by this proxy.
    fn url(&self, url: &str) -> String {
        let at = url.rfind('@').map_or(0, |i| i + 1);
        let end = url[at..].find('/').map_or(url.len(), |i| at + i);
        format!("{}127.0.0.1:{}{}", &url[..at], self.port, &url[end..])
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forward `from` to `to`, holding what it reads while frozen; the end of `from` is passed on
/// once thawed too (after what it held).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut watch: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await.unwrap_or(0);
        if watch.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if read == 0 || to.write_all(&buffer[..read]).await.is_err() {
            let _ = to.shutdown().await;
            return;
        }
    }
}

/// The server of the test database, `host:port`.
fn server_of(url: &str) -> String {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("a TCP host, not {other:?}"),
    };
    format!("{host}:{}", config.get_ports()[0])
}

/// One PlaceOrder-like append: a new stream, one event, a command id.
#[derive(Clone)]
struct Attempt {
    stream_id: Uuid,
    command_id: Uuid,
    event: order_store::NewEvent,
}

impl Attempt {
    fn new() -> Self {
        Self {
            stream_id: Uuid::new_v4(),
            command_id: Uuid::new_v4(),
            event: event("placed"),
        }
    }

    async fn run(&self, store: &EventStore) -> Result<AppendOutcome, Error> {
        let metadata = metadata();
        store
            .append(AppendRequest {
                stream_id: self.stream_id,
                category: "test",
                expected: ExpectedVersion::NoStream,
                events: std::slice::from_ref(&self.event),
                metadata: &metadata,
                idempotency: Some(Idempotency {
                    command_id: self.command_id,
                    fingerprint: [7; 32],
                    status: "placed",
                }),
            })
            .await
    }
}

/// How long the server stays frozen: longer than a connection's time limit and a call's
/// together (2.5 + 3.25 s), and than twice a call's.
const FREEZE: Duration = Duration::from_secs(10);
/// What a loaded machine may add to an answer's time.
const SLACK: Duration = Duration::from_millis(1500);

async fn every_append_is_answered_in_time_through_a_long_freeze(writer_thread: bool) {
    let db = order_testkit::pg::TestDatabase::migrated().await;
    let proxy = Proxy::start(server_of(db.url())).await;
    let mut config = order_store::StoreConfig::new(proxy.url(db.url()));
    config.statement_timeout = Duration::from_secs(1);
    config.connect_timeout = Duration::from_millis(2500);
    config.pool_wait_timeout = Duration::from_millis(250);
    config.group_commit_thread = writer_thread;
    // The documented bound: the pool wait + the statement timeout + 2 s, from when the append
    // began waiting.
    let limit = config.answer_timeout();
    assert_eq!(limit, Duration::from_millis(3250));
    let store = EventStore::new(config).unwrap();
    // Warm: the writer's connection is open and has its statements prepared.
    for _ in 0..5 {
        let outcome = Attempt::new().run(&store).await;
        assert!(
            matches!(outcome, Ok(AppendOutcome::Appended(_))),
            "{outcome:?}"
        );
    }

    // PlaceOrder load, 20 a second, from before the freeze until it ends.
    let began = Instant::now();
    let load = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut calls = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while began.elapsed() < FREEZE + Duration::from_millis(500) {
                tick.tick().await;
                let (store, attempt) = (store.clone(), Attempt::new());
                calls.push(tokio::spawn(async move {
                    let started = Instant::now();
                    let result = attempt.run(&store).await;
                    (attempt, started, started.elapsed(), result)
                }));
            }
            calls
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen_at = Instant::now();
    proxy.freeze(true);
    tokio::time::sleep(FREEZE).await;
    proxy.freeze(false);
    let thawed_at = Instant::now();
    let mut answers = Vec::new();
    for call in load.await.unwrap() {
        answers.push(call.await.unwrap());
    }

    // Every answer in time, with a code that tells whether something may have been written.
    let mut late = Vec::new();
    let (mut unavailable, mut timeouts) = (0, 0);
    for (_, started, took, result) in &answers {
        let at = started.saturating_duration_since(frozen_at).as_secs_f64();
        if *took > limit + SLACK {
            late.push(format!(
                "{:.2} s at {at:.2} s: {result:?}",
                took.as_secs_f64()
            ));
        }
        match result {
            Ok(AppendOutcome::Appended(_)) => {}
            Err(Error::Unavailable(_)) => unavailable += 1,
            Err(Error::Timeout) => timeouts += 1,
            other => panic!("append started {at:.2} s into the freeze answered {other:?}"),
        }
        // By a call's time into the freeze the connections that were open are all found
        // dead, and no new one can open: nothing is sent, nothing can be written.
        if *started > frozen_at + limit + SLACK && *started + limit + SLACK < thawed_at {
            assert!(
                matches!(result, Err(Error::Unavailable(_))),
                "append started {at:.2} s into the freeze, when no connection could open, \
                 answered {result:?} after {took:?}"
            );
        }
    }
    assert!(
        late.is_empty(),
        "{} of {} appends answered later than {limit:?} + {SLACK:?}:\n{}",
        late.len(),
        answers.len(),
        late.join("\n")
    );
    assert!(unavailable > 0, "the freeze failed no append");
    let slowest = answers.iter().map(|(_, _, took, _)| *took).max();
    eprintln!(
        "{} appends: {unavailable} unavailable, {timeouts} timeouts, slowest answer {slowest:?}",
        answers.len()
    );

    // After the freeze: every failed append, retried with its command id, is applied exactly
    // once; one answered UNAVAILABLE had written nothing.
    let back = Instant::now();
    while store.ping().await.is_err() {
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the store never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Appends answered `Timeout` whose statement, held by the proxy, committed after all.
    let mut committed_late = 0;
    for (attempt, _, _, result) in &answers {
        let Err(error) = result else { continue };
        let retry = loop {
            match attempt.run(&store).await {
                Err(Error::Unavailable(_) | Error::Timeout) => {
                    assert!(
                        back.elapsed() < Duration::from_secs(60),
                        "retries kept failing"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => break other,
            }
        };
        if matches!(retry, Ok(AppendOutcome::Duplicate(_))) {
            committed_late += 1;
        }
        match (error, &retry) {
            (Error::Unavailable(_), Ok(AppendOutcome::Appended(_))) => {}
            (Error::Timeout, Ok(AppendOutcome::Appended(_) | AppendOutcome::Duplicate(_))) => {}
            _ => panic!("an append answered {error:?} was retried: {retry:?}"),
        }
    }
    let streams: Vec<Uuid> = answers.iter().map(|(a, _, _, _)| a.stream_id).collect();
    let commands: Vec<Uuid> = answers.iter().map(|(a, _, _, _)| a.command_id).collect();
    // Statements the proxy held have been delivered and answered by now (the server's 1 s
    // statement timeout at most); count after them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = db.connect().await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM orders.events WHERE stream_id = ANY($1)), \
                    (SELECT count(DISTINCT stream_id) FROM orders.events WHERE stream_id = ANY($1)), \
                    (SELECT count(*) FROM orders.commands WHERE command_id = ANY($2))",
            &[&streams, &commands],
        )
        .await
        .unwrap();
    let (events, distinct, recorded): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let n = answers.len() as i64;
    assert_eq!(
        (events, distinct, recorded),
        (n, n, n),
        "every append written exactly once ({timeouts} timeouts, {unavailable} unavailable)"
    );
    eprintln!("{committed_late} of {timeouts} appends answered Timeout were written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_through_a_long_freeze_are_answered_in_time_with_a_writer_thread() {
    every_append_is_answered_in_time_through_a_long_freeze(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_through_a_long_freeze_are_answered_in_time_with_a_writer_task() {
    every_append_is_answered_in_time_through_a_long_freeze(false).await;
}

/// A call whose connection opened late (the server answered again just before the connect
/// timeout) and whose server then stopped answering again is still answered within its limit
/// plus the pool wait, counted from its start: opening a connection counts against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_connection_opened_late_is_answered_in_time() {
    let db = order_testkit::pg::TestDatabase::migrated().await;
    let proxy = Proxy::start(server_of(db.url())).await;
    let mut config = order_store::StoreConfig::new(proxy.url(db.url()));
    config.statement_timeout = Duration::from_secs(3);
    config.connect_timeout = Duration::from_secs(4);
    config.pool_wait_timeout = Duration::from_millis(250);
    let bound = config.answer_timeout();
    // No connection is open yet: the call opens one while the server is frozen.
    let store = EventStore::new(config).unwrap();
    proxy.freeze(true);
    let started = Instant::now();
    let call = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .timed(async {
                    let client = store.connection().await?;
                    client.simple_query("SELECT pg_sleep(1.5)").await?;
                    Ok(())
                })
                .await
        })
    };
    // Back just before the connect timeout: the connection opens and the statement goes out;
    // frozen again before it is answered.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    proxy.freeze(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.freeze(true);
    let result = call.await.unwrap();
    let took = started.elapsed();
    proxy.freeze(false);
    assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
    assert!(
        took <= bound + SLACK,
        "answered after {took:?}, later than {bound:?} + {SLACK:?}"
    );
}

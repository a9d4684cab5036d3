//! Tests that a pooled connection is kept: each asserts that nothing marked the process's
//! connections for replacement, a mark that is process-wide (see `order_store`'s `recycle`),
//! so they run in a process of their own, away from the tests that provoke it on purpose.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use order_store::{Error, EventStore, ServerRole, StoreConfig};
use order_testkit::pg::PrivateCluster;
use order_testkit::replication::Replication;
use uuid::Uuid;

#[allow(dead_code)]
#[path = "../store/support.rs"]
mod support;

use support::*;

fn blocking<T>(f: impl FnOnce() -> Result<T, String>) -> T {
    tokio::task::block_in_place(f).unwrap_or_else(|e| panic!("{e}"))
}

/// A pool wait set longer than a call may take is cut to half the call's time: an exhausted
/// pool is reported unavailable, never taken for a server that stopped answering (which
/// would discard every connection of the process).
#[tokio::test]
async fn a_pool_wait_longer_than_a_call_is_still_an_exhausted_pool() {
    let t = test_store_with(|c| {
        c.pool_size = 1;
        c.pool_wait_timeout = Duration::from_secs(10);
        c.statement_timeout = Duration::from_secs(1); // a call may take 3 s
    })
    .await;
    let held = t.store.pool().get().await.unwrap();
    let pid = backend_pid(&held).await;
    let result = t.store.read_stream(Uuid::new_v4(), 0).await;
    assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
    drop(held);
    let again = backend_pid(&t.store.pool().get().await.unwrap()).await;
    assert_eq!(again, pid, "the pool's connection was kept");
}

/// A call's time limit counts from when it has its connection: a caller that waited for a
/// busy pool, then ran a statement well within the server's limit, is answered, and nothing is
/// taken for a server that stopped answering (the pool's connections are kept).
#[tokio::test]
async fn a_call_that_waited_for_a_connection_still_has_its_whole_time() {
    let t = test_store_with(|c| {
        c.pool_size = 1;
        c.pool_wait_timeout = Duration::from_secs(3);
        c.statement_timeout = Duration::from_secs(5); // a call may take 7 s
    })
    .await;
    let held = t.store.pool().get().await.unwrap();
    let pid = backend_pid(&held).await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2800)).await;
        drop(held);
    });
    let store = t.store.clone();
    let answered = store
        .timed(async {
            let client = store.pool().get().await?;
            // Within the server's 5 s; with the wait, past 7 s from the call's start.
            client.simple_query("SELECT pg_sleep(4.5)").await?;
            Ok(())
        })
        .await;
    release.await.unwrap();
    assert!(answered.is_ok(), "{answered:?}");
    let again = backend_pid(&t.store.pool().get().await.unwrap()).await;
    assert_eq!(again, pid, "the pool's connection was kept");
}

/// A listener pointed at a standby (which cannot LISTEN) is refused there, and that refusal is
/// not taken for a primary turned read-only: the process's other connections are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_a_standby_leaves_the_other_connections_alone() {
    let primary = blocking(PrivateCluster::start);
    order_store::migrate(&StoreConfig::new(primary.url("orders")))
        .await
        .unwrap();
    let standby = blocking(|| primary.start_standby(Replication::Asynchronous));
    let writer = EventStore::new(StoreConfig::new(primary.url("orders"))).unwrap();
    let mut config = StoreConfig::new(standby.url("orders"));
    config.server = ServerRole::Any;
    let pid = |store: &EventStore| {
        let store = store.clone();
        async move {
            let client = store.pool().get().await.unwrap();
            client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get::<_, i32>(0)
        }
    };
    let before = pid(&writer).await;
    assert_eq!(
        pid(&writer).await,
        before,
        "an idle pool keeps its connection"
    );
    let _listener = order_store::EventListener::start(config);
    // Several of its tries (100 ms, 200 ms, ... apart).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pid(&writer).await,
        before,
        "the primary's pooled connection was not discarded"
    );
}

/// The server process behind a pooled connection.
async fn backend_pid(client: &deadpool_postgres::Object) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

//! A switch to another server: the store follows the primary named by a multi-host URL, never
//! keeps writing to a server that turned read-only, and the gap-safe log and the checkpoints
//! stay correct on a promoted standby (PostgreSQL's own streaming replication, pg_basebackup,
//! a SIGKILLed postmaster and `pg_ctl promote`: no simulation).

use std::time::{Duration, Instant};

use order_store::{
    AppendOutcome, AppendRequest, Cursor, Error, EventStore, ExpectedVersion, Idempotency,
    StoreConfig, advance_checkpoint, verify_read,
};
use order_testkit::pg::PrivateCluster;
use order_testkit::replication::Replication;
use uuid::Uuid;

use crate::support::*;

fn blocking<T>(f: impl FnOnce() -> Result<T, String>) -> T {
    tokio::task::block_in_place(f).unwrap_or_else(|e| panic!("{e}"))
}

async fn migrated_cluster() -> PrivateCluster {
    let cluster = blocking(PrivateCluster::start);
    order_store::migrate(&StoreConfig::new(cluster.url("orders")))
        .await
        .unwrap();
    cluster
}

/// Append `label` to a new stream as a careful client does: with a command id, retried with
/// the same id while the store answers UNAVAILABLE (a failover in progress). An attempt that
/// committed but whose answer was lost is answered as a duplicate on retry. The position, and
/// how many attempts failed.
async fn append_retrying(store: &EventStore, label: &str, within: Duration) -> (u64, u32) {
    let deadline = Instant::now() + within;
    let stream = Uuid::new_v4();
    let events = [event(label)];
    let metadata = metadata();
    let command_id = Uuid::new_v4();
    let mut failures = 0;
    loop {
        let request = AppendRequest {
            stream_id: stream,
            category: "test",
            expected: ExpectedVersion::NoStream,
            events: &events,
            metadata: &metadata,
            idempotency: Some(Idempotency {
                command_id,
                fingerprint: [7; 32],
                status: "Appended",
            }),
        };
        match store.append(request).await {
            Ok(AppendOutcome::Appended(c) | AppendOutcome::Duplicate(c)) => {
                return (c.global_position, failures);
            }
            Err(error @ (Error::Unavailable(_) | Error::Timeout)) if Instant::now() < deadline => {
                failures += 1;
                eprintln!("append {label}: {error} (retrying)");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("append {label}: {error:?}"),
        }
    }
}

/// Every event of the log after `cursor`, in the gap-safe order.
async fn read_after(store: &EventStore, mut cursor: Cursor) -> Vec<order_store::RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let page = store.read_all(cursor, 100).await.unwrap();
        let Some(last) = page.last() else { return all };
        cursor = last.cursor();
        all.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_continues_the_log_the_checkpoints_and_the_transaction_ids() {
    let primary = migrated_cluster().await;
    let standby = blocking(|| primary.start_standby(Replication::Synchronous));
    let url = PrivateCluster::multi_host_url(&[&primary, &standby], "orders", "");
    let mut config = StoreConfig::new(url);
    config.connect_timeout = Duration::from_secs(2);
    config.pool_wait_timeout = Duration::from_secs(2);
    let store = EventStore::new(config).unwrap();

    // Before the switch: events, a subscriber that read all of them and checkpointed under its
    // lease.
    let mut before = Vec::new();
    for i in 0..20 {
        before.push(
            append_retrying(&store, &format!("before-{i}"), Duration::ZERO)
                .await
                .0,
        );
    }
    let (lease, start) = store
        .acquire_lease(
            "failover_test",
            "instance-a",
            Duration::from_secs(600),
            false,
        )
        .await
        .unwrap()
        .unwrap();
    let delivered = read_after(&store, start).await;
    assert_eq!(delivered.len(), 20);
    let checkpoint = delivered.last().unwrap().cursor();
    {
        let mut client = store.pool().get().await.unwrap();
        let transaction = client.transaction().await.unwrap();
        advance_checkpoint(&transaction, &lease, start, checkpoint, 20, None)
            .await
            .unwrap();
        transaction.commit().await.unwrap();
    }
    let highest_xid_before = delivered.iter().map(|e| e.transaction_id).max().unwrap();
    // The same span as one page, read from the old primary (its digest names that server).
    let page_before = store.read_page(start, 100, None).await.unwrap();
    assert_eq!(page_before.end, Some(checkpoint));

    // A transaction in flight at the crash: it took a position and a transaction id, and
    // never committed.
    let in_flight = order_testkit::pg::try_connect(&primary.url("orders"))
        .await
        .unwrap();
    in_flight.batch_execute("BEGIN").await.unwrap();
    let lost_event = Uuid::now_v7();
    in_flight
        .execute(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload)
             VALUES ($1, 1, $2, 'TestEvent', 1, '{}')",
            &[&Uuid::new_v4(), &lost_event],
        )
        .await
        .unwrap();

    // The primary crashes, all of it at once (a postmaster killed alone leaves its backends a
    // moment in which an append may still commit and replicate: correct, but then nothing
    // failed). Until the standby is promoted there is no server to write to: an append is
    // refused as unavailable, never written to the standby.
    blocking(|| primary.crash());
    let crashed = Instant::now();
    match append(
        &store,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        &[event("between")],
    )
    .await
    {
        Err(Error::Unavailable(_) | Error::Timeout) => {}
        other => panic!("an append with no primary: {other:?}"),
    }
    // The standby is promoted 1 s after the crash; an append is attempted all along.
    let during = {
        let store = store.clone();
        tokio::spawn(
            // Generous bounds: a busy machine may take long to promote; how fast the store
            // finds the new primary is a figure of the fault suite (promotion to first
            // acknowledgement), not something a test times.
            async move { append_retrying(&store, "after-0", Duration::from_secs(90)).await },
        )
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    blocking(|| standby.promote());
    let (first_after, failures) = during.await.unwrap();
    let recovered = crashed.elapsed();
    let mut after = vec![first_after];
    for i in 1..20 {
        after.push(
            append_retrying(&store, &format!("after-{i}"), Duration::from_secs(30))
                .await
                .0,
        );
    }

    // Nothing acknowledged was lost (synchronous replication); the in-flight transaction is
    // gone without a trace.
    let new_primary = order_testkit::pg::try_connect(&standby.url("orders"))
        .await
        .unwrap();
    let positions: Vec<i64> = new_primary
        .query(
            "SELECT global_position FROM orders.events ORDER BY global_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for position in before.iter().chain(&after) {
        assert!(
            positions.contains(&(*position as i64)),
            "position {position} missing"
        );
    }
    assert_eq!(positions.len(), 40, "{positions:?}");
    let lost: i64 = new_primary
        .query_one(
            "SELECT count(*) FROM orders.events WHERE event_id = $1",
            &[&lost_event],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(lost, 0);

    // The promoted server continues the transaction ids: every transaction after the switch
    // is younger than every one before it, so the gap-safe order puts the new events after the
    // old checkpoint, and the fence has moved past every old transaction.
    let resumed = store.checkpoint("failover_test").await.unwrap();
    assert_eq!(resumed, checkpoint, "the checkpoint survived the switch");
    let delivered_after = read_after(&store, resumed).await;
    let mut delivered_positions: Vec<u64> =
        delivered_after.iter().map(|e| e.global_position).collect();
    delivered_positions.sort_unstable();
    let mut expected = after.clone();
    expected.sort_unstable();
    assert_eq!(
        delivered_positions, expected,
        "exactly the new events, once"
    );
    for event in &delivered_after {
        assert!(
            event.transaction_id > highest_xid_before,
            "{:?} is not younger than {highest_xid_before:?}",
            event.transaction_id
        );
    }
    let fence: order_store::Xid8 = new_primary
        .query_one("SELECT pg_snapshot_xmin(pg_current_snapshot())", &[])
        .await
        .unwrap()
        .get(0);
    assert!(fence > highest_xid_before);

    // A page read from the old primary, checked on the new one: another server, so its
    // events are counted and summed; nothing was lost (synchronous), so it holds, and one event
    // more or less does not.
    {
        let mut client = store.pool().get().await.unwrap();
        let transaction = client.transaction().await.unwrap();
        let (with_lost, short) = (
            page_before
                .digest
                .merge(order_store::LogDigest::of([lost_event])),
            order_store::LogDigest::of(delivered.iter().skip(1).map(|e| e.event_id)),
        );
        let span = (start, checkpoint);
        verify_read(
            &transaction,
            "failover_test",
            span.0,
            span.1,
            &page_before.digest,
        )
        .await
        .unwrap();
        for read in [with_lost, short] {
            assert!(matches!(
                verify_read(&transaction, "failover_test", span.0, span.1, &read).await,
                Err(Error::CheckpointMoved { .. })
            ));
        }
    }

    // The lease taken on the old primary still moves the checkpoint on the new one.
    {
        let last = delivered_after.last().unwrap().cursor();
        let mut client = store.pool().get().await.unwrap();
        let transaction = client.transaction().await.unwrap();
        advance_checkpoint(&transaction, &lease, checkpoint, last, 20, None)
            .await
            .unwrap();
        transaction.commit().await.unwrap();
        assert_eq!(store.checkpoint("failover_test").await.unwrap(), last);
    }
    eprintln!(
        "the store found the new primary {recovered:?} after the crash, after {failures} failed attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_one_read_only_answer_the_store_writes_to_the_writable_server_only() {
    let a = migrated_cluster().await;
    let b = migrated_cluster().await;
    let url = PrivateCluster::multi_host_url(&[&a, &b], "orders", "");
    let mut config = StoreConfig::new(url);
    config.pool_size = 4;
    config.group_commit_batch = 1;
    let store = EventStore::new(config).unwrap();

    // Four pooled connections, all to `a` (the first host that takes writes).
    {
        let held: Vec<_> = futures::future::join_all((0..4).map(|_| store.pool().get()))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(held.len(), 4);
    }
    append_retrying(&store, "on-a", Duration::ZERO).await;

    // `a` turns read-only (as a demoted primary, or a DNS name now pointing at a reader): its
    // open sessions stay open.
    blocking(|| {
        a.psql(
            "postgres",
            "ALTER SYSTEM SET default_transaction_read_only = on",
        )
    });
    blocking(|| a.psql("postgres", "SELECT pg_reload_conf()"));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stream = Uuid::new_v4();
    let first = append(&store, stream, ExpectedVersion::NoStream, &[event("x")]).await;
    match &first {
        Err(Error::Unavailable(why)) => assert!(why.contains("does not take writes"), "{why}"),
        // The pool may already have replaced a connection; then the write went to `b`.
        Ok(_) => {}
        other => panic!("{other:?}"),
    }
    // From now on every append goes to `b` at once: no second read-only answer, although
    // three more pooled connections to `a` were open.
    let mut retried = 0;
    if first.is_err() {
        append(&store, stream, ExpectedVersion::NoStream, &[event("x")])
            .await
            .unwrap();
        retried = 1;
    }
    for i in 0..20 {
        append(
            &store,
            Uuid::new_v4(),
            ExpectedVersion::NoStream,
            &[event(&format!("on-b-{i}"))],
        )
        .await
        .unwrap_or_else(|e| panic!("append {i} after the switch: {e:?}"));
    }
    let on_b: i64 = blocking(|| b.psql("orders", "SELECT count(*) FROM orders.events"))
        .parse()
        .unwrap();
    assert_eq!(on_b, 21, "the 21 appends after the switch are on b");
    let on_a: i64 = blocking(|| a.psql("orders", "SELECT count(*) FROM orders.events"))
        .parse()
        .unwrap();
    assert_eq!(on_a, 1, "nothing more was written to a");
    assert!(retried <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_writable_server_the_store_is_unavailable_and_says_why() {
    let a = migrated_cluster().await;
    blocking(|| {
        a.psql(
            "postgres",
            "ALTER SYSTEM SET default_transaction_read_only = on",
        )
    });
    blocking(|| a.psql("postgres", "SELECT pg_reload_conf()"));
    let mut config = StoreConfig::new(a.url("orders"));
    config.connect_timeout = Duration::from_secs(2);
    let store_call_timeout = config.call_timeout();
    let store = EventStore::new(config).unwrap();
    let started = Instant::now();
    let result = append(
        &store,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        &[event("x")],
    )
    .await;
    match result {
        Err(Error::Unavailable(why)) => assert!(why.contains("does not allow writes"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Answered as soon as the server said so, not when a timeout ran out (that would have
    // been Error::Timeout, after the call timeout).
    assert!(
        started.elapsed() < store_call_timeout,
        "{:?}",
        started.elapsed()
    );
    // A store for reads may use it.
    let mut config = StoreConfig::new(a.url("orders"));
    config.server = order_store::ServerRole::Any;
    let reader = EventStore::new(config).unwrap();
    assert_eq!(reader.head_position().await.unwrap(), 0);
}

/// A standby of `first`, promoted (on the next timeline) and running: two writable servers,
/// the later one ahead.
async fn promoted_standby_of(first: &PrivateCluster) -> PrivateCluster {
    let promoted = blocking(|| first.start_standby(Replication::Asynchronous));
    blocking(|| promoted.wait_replayed(first, Duration::from_secs(30)));
    blocking(|| promoted.promote());
    let deadline = Instant::now() + Duration::from_secs(30);
    while blocking(|| promoted.in_recovery()) {
        assert!(Instant::now() < deadline, "the standby was not promoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    promoted
}

/// A listener on a new port that never answers (the kernel completes the TCP handshake for
/// its backlog; nothing ever reads), and `live`'s URL with that port named first.
fn silent_host_first(live: &PrivateCluster) -> (std::net::TcpListener, String) {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let url = live.url("orders").replacen(
        "@127.0.0.1:",
        &format!("@127.0.0.1:{silent_port},127.0.0.1:"),
        1,
    );
    assert_ne!(url, live.url("orders"));
    (silent, url)
}

/// [`silent_host_first`] with the silent host named second, after `live`.
fn silent_host_second(live: &PrivateCluster) -> (std::net::TcpListener, String) {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let url = live.url("orders").replacen(
        &format!("127.0.0.1:{}/", live.port()),
        &format!("127.0.0.1:{},127.0.0.1:{silent_port}/", live.port()),
        1,
    );
    assert_ne!(url, live.url("orders"));
    (silent, url)
}

/// A first host that takes the TCP connection but never answers (a frozen server, a host whose
/// port is still held): each host has its own time to answer, handshake included, and the
/// store goes on to the next one, for pooled connections, its own connections (migrations,
/// LISTEN) and the readiness probe alike. Before, the silent host took the whole time of
/// every new connection and the live server behind it was never reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_accepts_and_never_answers_is_passed_over_for_the_next() {
    let live = migrated_cluster().await;
    let (silent, url) = silent_host_first(&live);
    let mut config = StoreConfig::new(url);
    config.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    order_store::migrate(&config).await.unwrap();
    let store = EventStore::new(config.clone()).unwrap();
    store.ping().await.unwrap();
    let outcome = append(
        &store,
        Uuid::new_v4(),
        ExpectedVersion::NoStream,
        &[event("x")],
    )
    .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    let mut probe = order_store::ReadinessProbe::new(config);
    probe.check().await.unwrap();
    // Each of the four connections paid the silent host's second at most once.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

/// An old primary that comes back writable after its standby was promoted (a server restarted
/// at boot, no `standby.signal`), still named first in the URL, is on the older timeline: the
/// store passes over it for the promoted server, and writes nothing there. Writing to both
/// would fork the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_primary_back_writable_after_a_promotion_gets_no_write() {
    let old = migrated_cluster().await;
    // Asynchronous: the old primary, back, takes a commit without waiting for a standby.
    let standby = blocking(|| old.start_standby(Replication::Asynchronous));
    let url = PrivateCluster::multi_host_url(&[&old, &standby], "orders", "");
    let mut config = StoreConfig::new(url);
    config.connect_timeout = Duration::from_secs(2);
    config.pool_wait_timeout = Duration::from_secs(2);
    let store = EventStore::new(config.clone()).unwrap();
    append_retrying(&store, "before", Duration::ZERO).await;
    blocking(|| standby.wait_replayed(&old, Duration::from_secs(30)));

    blocking(|| old.crash());
    blocking(|| standby.promote());
    append_retrying(&store, "after the promotion", Duration::from_secs(30)).await;

    // The old primary restarts as a primary of its own, on its old timeline (once the
    // crashed server's processes are gone: until then, pg_ctl refuses).
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(why) = tokio::task::block_in_place(|| old.start_again()) {
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!blocking(|| old.in_recovery()));
    // Every connection the store holds to the new primary ends: new ones are made, and the
    // old primary, first in the URL, takes writes again.
    blocking(|| {
        standby.psql(
            "postgres",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = 'orders' AND pid <> pg_backend_pid()",
        )
    });
    for i in 0..5 {
        append_retrying(&store, &format!("later-{i}"), Duration::from_secs(30)).await;
    }
    // Its connections outside the pool too (LISTEN, readiness, migrations): the same memory
    // of the servers' timelines, so they pass over the old primary as well.
    let mut probe = order_store::ReadinessProbe::new(config.clone());
    probe.check().await.unwrap();
    let mut listener = order_store::EventListener::start(config.clone());
    assert!(
        listener.wait(Duration::from_secs(60)).await,
        "the listener never listened"
    );
    // A process started now, which met no timeline of these servers yet, is not fooled
    // either: its first connection learns every host's before it writes.
    // The same servers spelt otherwise (with their addresses): a list of hosts this process
    // has no memory of, as a process started now would have none.
    let mut unmet = config.clone();
    unmet.database_url =
        PrivateCluster::multi_host_url(&[&old, &standby], "orders", "hostaddr=127.0.0.1,127.0.0.1");
    let fresh = EventStore::new(unmet).unwrap();
    for i in 0..3 {
        append_retrying(&fresh, &format!("fresh-{i}"), Duration::from_secs(30)).await;
    }
    let sessions = |cluster: &PrivateCluster| -> i64 {
        blocking(|| {
            cluster.psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'orders'",
            )
        })
        .parse()
        .unwrap()
    };
    // The first connection's look at the old primary ends at once; nothing stays there.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sessions(&old) > 0 {
        assert!(
            Instant::now() < deadline,
            "a session stays on the old primary (LISTEN or readiness?)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sessions(&standby) >= 2, "no LISTEN and readiness sessions");
    let count = |cluster: &PrivateCluster| -> i64 {
        blocking(|| cluster.psql("orders", "SELECT count(*) FROM orders.events"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        count(&old),
        1,
        "the old primary got a write after the promotion"
    );
    assert_eq!(count(&standby), 10);
    drop(listener);
}

/// A process's first connection for writing to a URL whose first host accepts and never
/// answers: the look at every host (which waits out the silent one) hands back the live
/// server's connection, so the whole takes one host's time. Before, the look was followed by
/// the hosts in turn, the silent one's time again included: more than the readiness probe's
/// whole limit (each host's time once), so a process's first probe failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_connection_past_a_silent_host_takes_one_hosts_time() {
    let live = migrated_cluster().await;
    // A list of hosts this process has met nothing of: the first connection looks at both.
    let (silent, url) = silent_host_first(&live);
    let mut config = StoreConfig::new(url);
    config.connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let client = config.connect().await.unwrap();
    let took = started.elapsed();
    let row = client
        .query_one("SHOW transaction_read_only", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "off");
    // One host's time (2 s) and a local connection; the hosts in turn after the look took
    // at least 4 s.
    assert!(took < Duration::from_millis(3_500), "took {took:?}");
    drop(silent);
}

/// After a server change the process learns of (here its connections to the server it writes
/// to are ended by an administrator, SQLSTATE 57P01), the next connection for writing looks at
/// every host again. The server named first is writable on the timeline the process knows,
/// and another, promoted meanwhile and unreachable at the process's first look, is on a later
/// one: the store writes to the later one. Before, the hosts were looked at once per process,
/// and the store went back to the first host, forking the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_change_the_hosts_are_looked_at_again() {
    let first = migrated_cluster().await;
    let promoted = promoted_standby_of(&first).await;
    // Down at the process's first look: it meets the first server's timeline only.
    blocking(|| promoted.stop(order_testkit::pg::StopMode::Fast));
    let url = PrivateCluster::multi_host_url(&[&first, &promoted], "orders", "");
    let mut config = StoreConfig::new(url);
    config.connect_timeout = Duration::from_secs(2);
    config.pool_wait_timeout = Duration::from_secs(2);
    let store = EventStore::new(config.clone()).unwrap();
    append_retrying(&store, "before", Duration::ZERO).await;

    blocking(|| promoted.start_again());
    // The store's connections to the first server are ended by an administrator.
    blocking(|| {
        first.psql(
            "postgres",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = 'orders' AND pid <> pg_backend_pid()",
        )
    });
    for i in 0..3 {
        append_retrying(&store, &format!("after-{i}"), Duration::from_secs(30)).await;
    }
    let count = |cluster: &PrivateCluster| -> i64 {
        blocking(|| cluster.psql("orders", "SELECT count(*) FROM orders.events"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        count(&first),
        1,
        "the server behind got writes after the change"
    );
    // Promoted before the first append: it has the three later ones only.
    assert_eq!(count(&promoted), 3);
}

/// The look at every host after a sign of a failover (here one pooled connection of four
/// ended by an administrator) meets a server on a later timeline: every connection the process
/// made before that, to the server behind, is replaced too, so that no later write goes there.
/// Before, the pool's three other connections went on writing to the server behind while new
/// ones wrote to the later one: one process, two logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_timeline_met_retires_every_connection_made_before() {
    let first = migrated_cluster().await;
    let promoted = promoted_standby_of(&first).await;
    blocking(|| promoted.stop(order_testkit::pg::StopMode::Fast));
    let url = PrivateCluster::multi_host_url(&[&first, &promoted], "orders", "");
    let mut config = StoreConfig::new(url);
    config.connect_timeout = Duration::from_secs(2);
    config.pool_wait_timeout = Duration::from_secs(2);
    config.pool_size = 4;
    let store = EventStore::new(config.clone()).unwrap();
    // The server each of the pool's four connections is on (its port), all taken at once. A
    // connection ended by the server may be handed out before its end was read: it fails
    // once (as a call on it would), and is not handed out again.
    let ports = || async {
        let deadline = Instant::now() + Duration::from_secs(30);
        'again: loop {
            let held: Vec<_> = futures::future::join_all((0..4).map(|_| store.connection()))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
            let mut ports = Vec::new();
            for client in &held {
                match client.query_one("SELECT inet_server_port()", &[]).await {
                    Ok(row) => ports.push(u16::try_from(row.get::<_, i32>(0)).unwrap()),
                    Err(error) if error.is_closed() && Instant::now() < deadline => {
                        drop(held);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue 'again;
                    }
                    Err(error) => panic!("{error}"),
                }
            }
            ports.sort_unstable();
            return ports;
        }
    };
    assert_eq!(ports().await, [first.port(); 4]);
    append_retrying(&store, "before", Duration::ZERO).await;
    let count = |cluster: &PrivateCluster| -> i64 {
        blocking(|| cluster.psql("orders", "SELECT count(*) FROM orders.events"))
            .parse()
            .unwrap()
    };
    assert_eq!(count(&first), 1);

    blocking(|| promoted.start_again());
    // One of the store's connections is ended by an administrator: a sign.
    let ended = blocking(|| {
        first.psql(
            "postgres",
            "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity \
             WHERE datname = 'orders' AND pid <> pg_backend_pid() LIMIT 1) AS one",
        )
    });
    assert_eq!(ended, "1");
    // Its replacement, once the pool has noticed it closed, looks at every host.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = ports().await;
        if now.contains(&promoted.port()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection to the later timeline: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // At their next use, the three made before are replaced as well.
    assert_eq!(
        ports().await,
        [promoted.port(); 4],
        "connections made before the later timeline was met are still on the server behind"
    );
    for _ in 0..3 {
        let appends = (0..4).map(|_| append_retrying(&store, "after", Duration::from_secs(30)));
        futures::future::join_all(appends).await;
    }
    assert_eq!(count(&first), 1, "a write went to the server behind");
    assert_eq!(count(&promoted), 12);
}

/// A session the server ends by its own settings (here `idle_session_timeout`, SQLSTATE
/// 57P05) is no sign of a failover: its replacement goes host by host, without a look at
/// every host (which waits out a silent one). Before, every connection that ended with an
/// error made the next one look, so a server's idle timeouts cost each new connection the
/// silent host's whole time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_server_ended_as_idle_is_no_sign_of_a_failover() {
    let live = migrated_cluster().await;
    // The silent host second: host by host, the live one answers at once.
    let (silent, url) = silent_host_second(&live);
    let mut config = StoreConfig::new(url);
    config.connect_timeout = Duration::from_secs(2);
    config.pool_size = 1;
    let store = EventStore::new(config).unwrap();
    let client = store.connection().await.unwrap();
    client
        .batch_execute("SET idle_session_timeout = '200ms'")
        .await
        .unwrap();
    drop(client);
    let sessions = || -> i64 {
        blocking(|| {
            live.psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'orders'",
            )
        })
        .parse()
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while sessions() > 0 {
        assert!(Instant::now() < deadline, "the idle session was not ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let client = store.connection().await.unwrap();
    let took = started.elapsed();
    client.simple_query("SELECT 1").await.unwrap();
    // A look at every host takes the silent host's 2 s.
    assert!(took < Duration::from_millis(1_500), "took {took:?}");
    drop(silent);
}

/// Connections waiting while every host is looked at do not each look again when the look
/// found nothing writable: each waits for one look at most, then tries the hosts in turn, and
/// the whole stays within `connect_time()`. Before, the k-th waiter waited for k looks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_waiting_for_a_look_at_every_host_do_not_each_look_again() {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://u:p@127.0.0.1:{},127.0.0.1:{}/orders",
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port()
    );
    let mut config = StoreConfig::new(url);
    config.connect_timeout = Duration::from_secs(1);
    // A look (1 s) and the hosts in turn (2 s).
    assert_eq!(config.connect_time(), Duration::from_secs(3));
    let tries = (0..6).map(|_| {
        let config = config.clone();
        async move {
            let started = Instant::now();
            let outcome = config.connect().await;
            (outcome.is_err(), started.elapsed())
        }
    });
    let outcomes = futures::future::join_all(tries).await;
    for (failed, took) in &outcomes {
        assert!(failed);
        // At most 3 s each; the sixth waited for six looks (6 s).
        assert!(*took < Duration::from_millis(4_500), "{outcomes:?}");
    }
    drop((a, b));
}

/// Connections that waited for the look at every host try first the host it chose: past a
/// silent host named first (an old primary gone after a failover), each takes about the look's
/// time. Before, each then began again with the silent host, and took its time twice: more
/// than an append's whole limit with the default settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_waited_for_a_look_try_the_host_it_chose_first() {
    let live = migrated_cluster().await;
    let (silent, url) = silent_host_first(&live);
    let mut config = StoreConfig::new(url);
    config.connect_timeout = Duration::from_secs(2);
    config.pool_size = 4;
    let store = EventStore::new(config).unwrap();
    let started = Instant::now();
    let held: Vec<_> = futures::future::join_all((0..4).map(|_| async {
        let connection = store.connection().await;
        (connection, started.elapsed())
    }))
    .await;
    for (connection, took) in &held {
        assert!(connection.is_ok(), "{connection:?}");
        // The look (2 s, the silent host's) and a local connection; before, 4 s and more.
        assert!(*took < Duration::from_millis(3_500), "took {took:?}");
    }
    drop(held);
    drop(silent);
}

/// The server the look at every host chose ends its connection while the look still waits
/// for a silent host (an administrator's or a shutdown's 57P01): that connection is not
/// handed out, and the chosen host is connected to again. Before, the look held the chosen
/// connection without reading it, and handed it out dead: its first statement failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_ended_during_the_look_is_not_handed_out() {
    let live = migrated_cluster().await;
    // The live host first: it answers at once, and the look then waits for the silent one.
    let (silent, url) = silent_host_second(&live);
    let mut config = StoreConfig::new(url);
    // Long enough for the session to be seen and ended while the look waits, on a busy machine.
    config.connect_timeout = Duration::from_secs(6);
    // Its sessions alone are looked for and ended (not the migration's, nor autovacuum's).
    config.application_name = "look-ended".to_owned();
    let started = Instant::now();
    let look = tokio::spawn({
        let config = config.clone();
        async move { config.connect().await }
    });
    let sessions = || -> i64 {
        blocking(|| {
            live.psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'look-ended' AND state = 'idle'",
            )
        })
        .parse()
        .unwrap()
    };
    while sessions() == 0 {
        assert!(
            !look.is_finished(),
            "the look ended before its session was seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ended: i64 = blocking(|| {
        live.psql(
            "postgres",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'look-ended'",
        )
    })
    .parse()
    .unwrap();
    assert_eq!(ended, 1);
    assert!(
        !look.is_finished(),
        "the look ended before its session was ended: {:?}",
        started.elapsed()
    );
    let client = look.await.unwrap().unwrap();
    let row = client
        .query_one("SHOW transaction_read_only", &[])
        .await
        .unwrap_or_else(|error| panic!("the connection handed out was dead: {error}"));
    assert_eq!(row.get::<_, String>(0), "off");
    drop(silent);
}

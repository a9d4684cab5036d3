//! Infrastructure failures become typed, fast errors.

use std::time::{Duration, Instant};

use order_store::{Error, EventStore, ExpectedVersion, StoreConfig};
use uuid::Uuid;

use crate::support::*;

#[tokio::test]
async fn an_unreachable_database_is_unavailable_quickly() {
    let mut config = StoreConfig::new("postgres://nobody:secret@127.0.0.1:1/none");
    config.connect_timeout = Duration::from_secs(1);
    let store = EventStore::new(config).unwrap();
    let started = Instant::now();
    let result = append(&store, Uuid::new_v4(), ExpectedVersion::Any, &[event("x")]).await;
    assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let message = result.unwrap_err().to_string();
    assert!(
        !message.contains("secret"),
        "no password in errors: {message}"
    );
}

/// A server that refuses our credentials or does not have our database is, for a caller,
/// a database it cannot reach: UNAVAILABLE (and readiness fails), never a defect of ours.
#[tokio::test]
async fn a_server_that_refuses_our_credentials_or_database_is_unavailable() {
    let admin = &order_testkit::settings().pg_admin_url;
    let server = admin
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(_, host)| host.split(['/', '?']).next().unwrap_or(host).to_owned())
        .expect("ORDER_PG_ADMIN_URL names user@host:port");
    let wrong_password = format!("postgres://no_such_role:wrong-secret@{server}/postgres");
    let no_database = order_testkit::pg::url_for_database(admin, "no_such_database_here");
    for (url, says) in [
        (wrong_password, "authentication"),
        (no_database, "does not exist"),
    ] {
        let store = EventStore::new(StoreConfig::new(&url)).unwrap();
        let result = append(&store, Uuid::new_v4(), ExpectedVersion::Any, &[event("x")]).await;
        let Err(Error::Unavailable(message)) = &result else {
            panic!("{url}: {result:?}");
        };
        assert!(message.contains(says), "{message}");
        assert!(
            !message.contains("wrong-secret"),
            "no password in errors: {message}"
        );
        assert!(matches!(store.ping().await, Err(Error::Unavailable(_))));
    }
}

/// A login refused for lack of the CONNECT privilege (SQLSTATE 42501, which on a statement
/// means a privilege of ours is missing) is, at login, a database out of reach too.
#[tokio::test]
async fn a_login_refused_for_lack_of_the_connect_privilege_is_unavailable() {
    let db = order_testkit::pg::TestDatabase::empty().await;
    let admin = order_testkit::pg::admin().await;
    let role = format!("refused_{}", Uuid::new_v4().simple());
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'refused-secret'; \
             REVOKE CONNECT ON DATABASE {} FROM PUBLIC",
            db.name()
        ))
        .await
        .unwrap();
    let admin_url = &order_testkit::settings().pg_admin_url;
    let server = admin_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(_, host)| host.split(['/', '?']).next().unwrap_or(host).to_owned())
        .expect("ORDER_PG_ADMIN_URL names user@host:port");
    let url = format!("postgres://{role}:refused-secret@{server}/{}", db.name());
    let store = EventStore::new(StoreConfig::new(&url)).unwrap();
    let result = append(&store, Uuid::new_v4(), ExpectedVersion::Any, &[event("x")]).await;
    let ping = store.ping().await;
    drop(store);
    // A connection of its own (migrations, LISTEN, the readiness probe) says the same.
    let own = StoreConfig::new(&url).connect().await.map(|_| ());
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
    let Err(Error::Unavailable(message)) = &result else {
        panic!("{result:?}");
    };
    assert!(message.contains("permission denied"), "{message}");
    assert!(matches!(ping, Err(Error::Unavailable(_))), "{ping:?}");
    assert!(matches!(own, Err(Error::Unavailable(_))), "{own:?}");
}

#[tokio::test]
async fn an_exhausted_pool_fails_fast_instead_of_queueing() {
    let t = test_store_with(|c| {
        c.pool_size = 1;
        c.pool_wait_timeout = Duration::from_millis(100);
    })
    .await;
    let held = t.store.pool().get().await.unwrap();
    let started = Instant::now();
    let result = t.store.read_stream(Uuid::new_v4(), 0).await;
    assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(held);
    assert!(
        t.store.read_stream(Uuid::new_v4(), 0).await.is_ok(),
        "recovers once a connection is free"
    );
}

#[tokio::test]
async fn a_slow_statement_hits_the_statement_timeout() {
    let t = test_store_with(|c| c.statement_timeout = Duration::from_millis(200)).await;
    let client = t.store.pool().get().await.unwrap();
    let error = client.simple_query("SELECT pg_sleep(2)").await.unwrap_err();
    assert!(matches!(Error::from(error), Error::Timeout));
}

/// A server out of resources (class 53: disk full, out of memory) or failing underneath
/// (class 58: an I/O error) is down for now, not a defect of the caller or of the data: a
/// retry later may succeed, so callers get UNAVAILABLE and a projector backs off instead of
/// stopping as on an event it cannot project.
#[tokio::test]
async fn a_server_out_of_resources_or_failing_underneath_is_unavailable() {
    let t = test_store().await;
    let client = t.store.pool().get().await.unwrap();
    for code in ["53100", "53200", "58030"] {
        let error = client
            .simple_query(&format!(
                "DO $$ BEGIN RAISE EXCEPTION 'made by the test' USING ERRCODE = '{code}'; END $$"
            ))
            .await
            .unwrap_err();
        let error = Error::from(error);
        assert!(
            matches!(&error, Error::Unavailable(m) if m.contains(code)),
            "SQLSTATE {code}: {error:?}"
        );
        assert!(error.is_transient(), "SQLSTATE {code}");
    }
    // A server error the store knows nothing about stays a defect to look into.
    let error = client
        .simple_query(
            "DO $$ BEGIN RAISE EXCEPTION 'made by the test' USING ERRCODE = 'XX000'; END $$",
        )
        .await
        .unwrap_err();
    assert!(matches!(Error::from(error), Error::Database(_)));
}

#[tokio::test]
async fn a_database_url_that_does_not_parse_is_invalid_input() {
    let result = EventStore::new(StoreConfig::new("not a url at all ::"));
    assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
}

#[tokio::test]
async fn store_sessions_plan_once_and_never_by_sequential_scan() {
    let t = test_store().await;
    let client = t.store.pool().get().await.unwrap();
    for (setting, expected) in [
        ("plan_cache_mode", "force_generic_plan"),
        ("enable_seqscan", "off"),
        ("jit", "off"),
        ("statement_timeout", "5s"),
        ("client_min_messages", "warning"),
    ] {
        let row = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), expected, "{setting}");
    }
}

#[tokio::test]
async fn store_sessions_never_compile_a_query_however_large_its_estimate() {
    // A page read of a log of tens of millions of events is estimated above the server's
    // `jit_above_cost`; a custom plan per page then meant an LLVM compilation per page.
    let costly = "EXPLAIN SELECT sum(g) FROM generate_series(1, 100000000) AS g";
    let plan = |rows: Vec<tokio_postgres::Row>| {
        rows.iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let t = test_store().await;
    let client = t.store.pool().get().await.unwrap();
    let ours = plan(client.query(costly, &[]).await.unwrap());
    assert!(!ours.contains("JIT"), "a store session compiles: {ours}");

    // The same query on a session with the server's defaults is compiled, where the server
    // can compile at all: what the setting above prevents.
    let available: bool = client
        .query_one("SELECT pg_jit_available()", &[])
        .await
        .unwrap()
        .get(0);
    if available {
        client.batch_execute("SET jit = on").await.unwrap();
        let default = plan(client.query(costly, &[]).await.unwrap());
        client.batch_execute("RESET jit").await.unwrap();
        assert!(
            default.contains("JIT"),
            "the server compiles it by default: {default}"
        );
    }
}

/// A statement naming a table, column or schema the database lacks (a database not migrated
/// to this binary's schema) is `SchemaMissing`; a function called with the wrong argument
/// types, or an unknown setting, stays a defect (`Database`).
#[tokio::test]
async fn a_missing_table_column_or_schema_is_schema_missing_and_a_defect_is_not() {
    let t = test_store().await;
    let client = t.store.pool().get().await.unwrap();
    for statement in [
        "SELECT * FROM orders.no_such_table",
        "SELECT no_such_column FROM orders.events",
        "SELECT * FROM no_such_schema.events",
    ] {
        let error = Error::from(client.simple_query(statement).await.unwrap_err());
        assert!(
            matches!(&error, Error::SchemaMissing(_)),
            "{statement}: {error:?}"
        );
        assert!(!error.is_transient(), "{statement}");
        // Not migrated yet: "retry later", as for a store out of reach.
        assert!(error.is_unavailable(), "{statement}");
    }
    for statement in ["SELECT 'a'::text = 1", "SET no_such_setting = 1"] {
        let error = Error::from(client.simple_query(statement).await.unwrap_err());
        assert!(
            matches!(&error, Error::Database(_)),
            "{statement}: {error:?}"
        );
        assert!(!error.is_unavailable(), "{statement}");
    }
}

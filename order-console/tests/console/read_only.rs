//! The console connects only as a role that cannot write.

use order_console::{Console, StartError};
use order_testkit::pg::TestDatabase;

use crate::support::*;

#[tokio::test]
async fn a_role_that_may_write_is_refused_at_start() {
    let db = TestDatabase::migrated().await;
    ensure_users(&db).await;
    for (url, expected) in [
        (db.url().to_owned(), "is a superuser"),
        (url_as(db.url(), WRITER), "may write orders."),
    ] {
        let error = Console::build_with_sqs(settings(&url, &[]), None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{expected}: the console started"));
        assert!(matches!(error, StartError::Database(_)), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("orders_readonly"), "{message}");
        assert!(!message.contains("console-test-password"), "{message}");
    }
}

/// A role that may write any table of the schema, not only those the console reads (here
/// the import progress), or create tables in it, is refused too.
#[tokio::test]
async fn a_role_that_may_write_any_table_of_the_schema_is_refused() {
    let db = TestDatabase::migrated().await;
    ensure_users(&db).await;
    let client = db.connect().await;
    let side = "order_console_side_writer_test";
    ensure_role(&client, side, "orders_readonly").await;
    client
        .batch_execute(&format!("GRANT INSERT ON orders.imports TO {side}"))
        .await
        .unwrap();
    let error = Console::build_with_sqs(settings(&url_as(db.url(), side), &[]), None)
        .await
        .err()
        .unwrap_or_else(|| panic!("the console started with a role that may write orders.imports"));
    assert!(
        error.to_string().contains("may write orders.imports"),
        "{error}"
    );

    client
        .batch_execute(&format!(
            "REVOKE INSERT ON orders.imports FROM {side}; GRANT CREATE ON SCHEMA orders TO {side}"
        ))
        .await
        .unwrap();
    let error = Console::build_with_sqs(settings(&url_as(db.url(), side), &[]), None)
        .await
        .err()
        .unwrap_or_else(|| panic!("the console started with a role that may create tables"));
    assert!(
        error.to_string().contains("the orders schema (CREATE)"),
        "{error}"
    );
    client
        .batch_execute(&format!("REVOKE CREATE ON SCHEMA orders FROM {side}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_database_that_cannot_answer_yet_does_not_stop_the_console() {
    // Nothing listens on port 1: the console starts, says what is wrong and is not ready.
    let console = start_with(
        settings(
            "postgres://order_console:x@127.0.0.1:1/orders?connect_timeout=1",
            &["--db-connect-timeout-ms", "500"],
        ),
        None,
    )
    .await;
    let ready = get(console.addr, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    // Open to anyone: which way it is not ready, not the database's own words.
    assert_eq!(ready.body, "not ready: database unavailable\n");
    assert_eq!(get(console.addr, "/healthz").await.status, 200);
    let page = get(console.addr, "/subscriptions").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("database unavailable"), "{}", page.body);
    assert!(
        !page.body.contains(":x@"),
        "the password is shown: {}",
        page.body
    );
}

/// Write privileges that are not a table's own: UPDATE on one column, and USAGE or UPDATE on
/// a sequence of the schema (`nextval`), are refused too, each naming what it may change.
#[tokio::test]
async fn column_and_sequence_privileges_are_refused() {
    let db = TestDatabase::migrated().await;
    ensure_users(&db).await;
    let client = db.connect().await;
    let side = "order_console_column_writer_test";
    ensure_role(&client, side, "orders_readonly").await;
    client
        .batch_execute(&format!(
            "GRANT UPDATE (status) ON orders.order_summaries TO {side}"
        ))
        .await
        .unwrap();
    let error = Console::build_with_sqs(settings(&url_as(db.url(), side), &[]), None)
        .await
        .err()
        .unwrap_or_else(|| panic!("the console started with a role that may update a column"));
    assert!(
        error
            .to_string()
            .contains("may write orders.order_summaries"),
        "{error}"
    );

    let sequence: String = client
        .query_one(
            "SELECT pg_get_serial_sequence('orders.events', 'global_position')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for privilege in ["USAGE", "UPDATE"] {
        let user = format!("order_console_sequence_{}_test", privilege.to_lowercase());
        ensure_role(&client, &user, "orders_readonly").await;
        client
            .batch_execute(&format!(
                "GRANT {privilege} ON SEQUENCE {sequence} TO {user}"
            ))
            .await
            .unwrap();
        let error = Console::build_with_sqs(settings(&url_as(db.url(), &user), &[]), None)
            .await
            .err()
            .unwrap_or_else(|| {
                panic!("the console started with a role that has {privilege} on {sequence}")
            });
        assert!(
            error
                .to_string()
                .contains(&format!("may write {sequence} (sequence)")),
            "{error}"
        );
    }
    // SELECT on a sequence reads it (currval, last_value): no refusal.
    let reader = "order_console_sequence_select_test";
    ensure_role(&client, reader, "orders_readonly").await;
    client
        .batch_execute(&format!("GRANT SELECT ON SEQUENCE {sequence} TO {reader}"))
        .await
        .unwrap();
    Console::build_with_sqs(settings(&url_as(db.url(), reader), &[]), None)
        .await
        .unwrap();
}

/// A login user made by the test (no group unless `grants` gives one), unless the cluster
/// has it already.
async fn ensure_login(client: &tokio_postgres::Client, user: &str, options: &str, grants: &str) {
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
        .await
        .unwrap()
        .is_some();
    if !exists {
        // A concurrent run may have made it first: a duplicate is fine.
        let _ = client
            .batch_execute(&format!(
                "CREATE ROLE {user} LOGIN {options} PASSWORD 'console-test-password'"
            ))
            .await;
    }
    if !grants.is_empty() {
        client
            .batch_execute(&format!("GRANT {grants} TO {user}"))
            .await
            .unwrap();
    }
}

/// A member of a role that may write is refused even when it does not inherit that role's
/// privileges (NOINHERIT: it may still `SET ROLE` to it), as is a member of a superuser role.
#[tokio::test]
async fn a_member_of_a_writing_role_is_refused_even_without_inheriting_it() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    let user = "order_console_noinherit_writer_test";
    ensure_login(&client, user, "NOINHERIT", "orders_readonly, orders_app").await;
    let error = Console::build_with_sqs(settings(&url_as(db.url(), user), &[]), None)
        .await
        .err()
        .unwrap_or_else(|| panic!("the console started with a NOINHERIT member of orders_app"));
    let message = error.to_string();
    assert!(message.contains("may write orders."), "{message}");
    assert!(message.contains("orders_app"), "{message}");
}

/// A database that answers but where the console's role cannot read the schema (a login
/// with CONNECT only, no orders_readonly): not ready, and the top strip says why.
#[tokio::test]
async fn a_database_that_refuses_the_reads_is_shown_in_the_top_strip() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    let user = "order_console_connect_only_test";
    ensure_login(&client, user, "", "").await;
    let console = start_with(settings(&url_as(db.url(), user), &[]), None).await;
    let ready = get(console.addr, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let strip = eventually(console.addr, "/fragments/services", 20, |b| {
        b.contains("database: ")
    })
    .await;
    assert!(strip.contains("database query failed"), "{strip}");
}

/// A SECURITY DEFINER function runs with its owner's privileges: a role that may execute one
/// whose owner may write the schema could write through it, and is refused (the error names
/// the function and its owner); once it may not execute it (not granted, nor to PUBLIC), the
/// console starts.
#[tokio::test]
async fn a_role_that_may_execute_a_writing_security_definer_function_is_refused() {
    let db = TestDatabase::migrated().await;
    ensure_users(&db).await;
    let client = db.connect().await;
    let side = "order_console_definer_test";
    ensure_role(&client, side, "orders_readonly").await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA console_side;
             CREATE FUNCTION console_side.forget_orders() RETURNS void
             LANGUAGE sql SECURITY DEFINER AS $$ DELETE FROM orders.order_summaries $$;
             ALTER FUNCTION console_side.forget_orders() OWNER TO orders_projector;
             REVOKE ALL ON FUNCTION console_side.forget_orders() FROM PUBLIC;
             GRANT USAGE ON SCHEMA console_side TO {side};
             GRANT EXECUTE ON FUNCTION console_side.forget_orders() TO {side};"
        ))
        .await
        .unwrap();
    let error = Console::build_with_sqs(settings(&url_as(db.url(), side), &[]), None)
        .await
        .err()
        .unwrap_or_else(|| {
            panic!("the console started with a role that may execute a writing SECURITY DEFINER function")
        });
    assert!(matches!(error, StartError::Database(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("may execute console_side.forget_orders()"),
        "{message}"
    );
    assert!(message.contains("SECURITY DEFINER"), "{message}");
    assert!(message.contains("orders_projector"), "{message}");
    assert!(message.contains("orders_readonly"), "{message}");

    // Not granted to it, nor to PUBLIC: nothing it can run writes.
    client
        .batch_execute(&format!(
            "REVOKE EXECUTE ON FUNCTION console_side.forget_orders() FROM {side}"
        ))
        .await
        .unwrap();
    let started = Console::build_with_sqs(settings(&url_as(db.url(), side), &[]), None).await;
    assert!(started.is_ok(), "{:?}", started.err());

    // Granted to PUBLIC (every new function's default) is granted to it.
    client
        .batch_execute("GRANT EXECUTE ON FUNCTION console_side.forget_orders() TO PUBLIC")
        .await
        .unwrap();
    let error = Console::build_with_sqs(settings(&url_as(db.url(), side), &[]), None)
        .await
        .err()
        .unwrap_or_else(|| panic!("the console started with PUBLIC allowed to execute it"));
    assert!(
        error.to_string().contains("console_side.forget_orders()"),
        "{error}"
    );
}

/// `rds-connections-high` counts every client connection to the server, not only the
/// console's own: the console's role (a member of orders_readonly, no pg_monitor) cannot see
/// what other roles' sessions are, so it must count them where every role may look.
#[tokio::test]
async fn the_connection_figure_counts_sessions_of_other_roles() {
    let db = TestDatabase::migrated().await;
    ensure_users(&db).await;
    let reader = order_console::db::Db::new(&settings(&reader_url(&db).await, &[]).store).unwrap();
    // More sessions of another role than any number of the test role's own consoles could
    // hold open in parallel tests (6 each at most).
    const OTHERS: usize = 40;
    let other = url_as(db.url(), WRITER);
    let mut held = Vec::new();
    for _ in 0..OTHERS {
        let (client, connection) = tokio_postgres::connect(&other, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client.simple_query("SELECT 1").await.unwrap();
        held.push(client);
    }
    let (used, max) = reader.connections().await.unwrap();
    assert!(max > 0.0, "max_connections {max}");
    assert!(
        used >= OTHERS as f64 + 1.0,
        "{OTHERS} sessions of {WRITER} and the console's own open, {used} counted"
    );
    drop(held);
}

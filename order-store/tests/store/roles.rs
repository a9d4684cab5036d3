//! Least privilege in the database: each role can do its job and nothing more.

use order_store::tokio_postgres;

use crate::support::*;

/// Run `statement` as `role` inside a rolled-back transaction: Ok if it was allowed.
async fn as_role(
    client: &tokio_postgres::Client,
    role: &str,
    statement: &str,
) -> Result<(), String> {
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(&format!("SET LOCAL ROLE {role}"))
        .await
        .unwrap();
    let result = client.batch_execute(statement).await.map_err(|e| {
        e.as_db_error()
            .map(|d| d.code().code().to_owned())
            .unwrap_or_else(|| e.to_string())
    });
    client.batch_execute("ROLLBACK").await.unwrap();
    result
}

const INSERT_EVENT: &str = "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload)
    VALUES (gen_random_uuid(), 1, gen_random_uuid(), 'TestEvent', 1, '{}')";
const INSERT_COMMAND: &str = "INSERT INTO orders.commands (command_id, stream_id, fingerprint, stream_version, global_position, status)
    VALUES (gen_random_uuid(), gen_random_uuid(), decode(repeat('00', 32), 'hex'), 1, 1, 'Placed')";
const INSERT_SUMMARY: &str = "INSERT INTO orders.order_summaries VALUES (gen_random_uuid(), gen_random_uuid(), 'Placed', 'EUR', 1, 0, 0, 1, 1, 1, now(), now())";
const UPSERT_TOTALS: &str =
    "INSERT INTO orders.customer_totals VALUES (gen_random_uuid(), 'EUR', 1, 1)";
const IMPORT_PROGRESS: &str = "INSERT INTO orders.imports (name) VALUES ('legacy'); UPDATE orders.imports SET batches = batches + 1 WHERE name = 'legacy'";
const LEFT_ALONE_ROW: &str =
    "INSERT INTO orders.import_left_alone VALUES ('left', 1, gen_random_uuid())";
const IMPORT_LEFT_ALONE: &str = "INSERT INTO orders.imports (name) VALUES ('left'); INSERT INTO orders.import_left_alone VALUES ('left', 1, gen_random_uuid())";
const INSERT_IMPORTED_EVENT: &str = "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, imported_from)
    VALUES (gen_random_uuid(), 1, gen_random_uuid(), 'TestEvent', 1, '{}', 'legacy:1')";
const MOVE_CHECKPOINT: &str = "INSERT INTO orders.subscriptions (name) VALUES ('x'); UPDATE orders.subscriptions SET checkpoint_position = 5";

#[tokio::test]
async fn each_role_can_do_its_job_and_nothing_more() {
    let t = test_store().await;
    let client = t.db.connect().await;
    let allowed = [
        ("orders_app", INSERT_EVENT),
        ("orders_app", INSERT_COMMAND),
        // order-import runs with the application's rights.
        ("orders_app", INSERT_IMPORTED_EVENT),
        ("orders_app", IMPORT_PROGRESS),
        ("orders_app", IMPORT_LEFT_ALONE),
        (
            "orders_app",
            "SELECT * FROM orders.events, orders.commands, orders.order_summaries, orders.subscriptions LIMIT 1",
        ),
        (
            "orders_app",
            "SELECT max(version) FROM orders.refinery_schema_history",
        ),
        ("orders_projector", "SELECT * FROM orders.events LIMIT 1"),
        ("orders_projector", INSERT_SUMMARY),
        ("orders_projector", UPSERT_TOTALS),
        ("orders_projector", MOVE_CHECKPOINT),
        (
            "orders_projector",
            "CREATE TABLE orders.order_summaries_shadow (LIKE orders.order_summaries)",
        ),
        (
            "orders_readonly",
            "SELECT * FROM orders.events, orders.commands, orders.order_summaries, orders.customer_totals, orders.subscriptions LIMIT 1",
        ),
    ];
    for (role, statement) in allowed {
        assert_eq!(
            as_role(&client, role, statement).await,
            Ok(()),
            "{role} may: {statement}"
        );
    }
    let refused = [
        ("orders_app", "UPDATE orders.events SET payload = '{}'"),
        // The writing transaction's id and the log position are the database's own: an event
        // under an old transaction id would sort behind every checkpoint (never delivered),
        // and a position ahead of the sequence would make appends fail when it gets there.
        (
            "orders_app",
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, transaction_id)
             VALUES (gen_random_uuid(), 1, gen_random_uuid(), 'TestEvent', 1, '{}', '3')",
        ),
        (
            "orders_app",
            "INSERT INTO orders.events (global_position, stream_id, stream_version, event_id, event_type, schema_version, payload)
             OVERRIDING SYSTEM VALUE
             VALUES (1000000, gen_random_uuid(), 1, gen_random_uuid(), 'TestEvent', 1, '{}')",
        ),
        ("orders_app", "DELETE FROM orders.events"),
        ("orders_app", "TRUNCATE orders.events"),
        ("orders_app", "UPDATE orders.commands SET status = 'x'"),
        ("orders_app", "DELETE FROM orders.commands"),
        ("orders_app", "DELETE FROM orders.refinery_schema_history"),
        (
            "orders_app",
            "INSERT INTO orders.refinery_schema_history (version, name, applied_on, checksum) VALUES (99, 'x', 'now', '0')",
        ),
        ("orders_app", INSERT_SUMMARY),
        ("orders_app", MOVE_CHECKPOINT),
        ("orders_app", "CREATE TABLE orders.sneaky (id int)"),
        ("orders_readonly", INSERT_EVENT),
        ("orders_readonly", INSERT_COMMAND),
        ("orders_readonly", INSERT_SUMMARY),
        ("orders_readonly", MOVE_CHECKPOINT),
        ("orders_readonly", IMPORT_PROGRESS),
        ("orders_projector", IMPORT_PROGRESS),
        ("orders_app", "DELETE FROM orders.imports"),
        ("orders_app", "DELETE FROM orders.import_left_alone"),
        ("orders_app", "UPDATE orders.import_left_alone SET run = 2"),
        ("orders_readonly", LEFT_ALONE_ROW),
        ("orders_projector", LEFT_ALONE_ROW),
        ("orders_projector", INSERT_EVENT),
        ("orders_projector", INSERT_COMMAND),
        (
            "orders_projector",
            "UPDATE orders.events SET payload = '{}'",
        ),
        (
            "orders_projector",
            "DELETE FROM orders.refinery_schema_history",
        ),
        ("orders_projector", "DROP TABLE orders.events"),
    ];
    for (role, statement) in refused {
        let result = as_role(&client, role, statement).await;
        assert!(
            matches!(
                result.as_ref().map_err(String::as_str),
                Err("42501" | "OL001")
            ),
            "{role} must not: {statement} (got {result:?})"
        );
    }
}

//! `order-grpc migrate --dry-run`: prints what a run would apply against the live schema
//! history, and applies nothing.

use order_testkit::pg::TestDatabase;

fn dry_run(url: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_order-grpc"))
        .args(["migrate", "--dry-run", "--database-url", url])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

async fn history_exists(db: &TestDatabase) -> bool {
    db.connect()
        .await
        .query_one(
            "SELECT to_regclass('orders.refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn dry_run_lists_pending_migrations_and_applies_nothing() {
    let db = TestDatabase::empty().await;
    let url = db.url().to_owned();
    let output = tokio::task::spawn_blocking(move || dry_run(&url))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("no schema history yet"), "{stdout}");
    assert!(stdout.contains("V1__event_log"), "{stdout}");
    assert!(stdout.contains("V2__read_models"), "{stdout}");
    assert!(!history_exists(&db).await, "the dry run applied something");

    order_store::migrate(&order_store::StoreConfig::new(db.url()))
        .await
        .unwrap();
    let url = db.url().to_owned();
    let output = tokio::task::spawn_blocking(move || dry_run(&url))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("nothing to apply"), "{stdout}");
}

#[tokio::test]
async fn dry_run_refuses_a_history_it_cannot_continue() {
    let db = TestDatabase::migrated().await;
    db.connect()
        .await
        .batch_execute("UPDATE orders.refinery_schema_history SET checksum = '1' WHERE version = 1")
        .await
        .unwrap();
    let url = db.url().to_owned();
    let output = tokio::task::spawn_blocking(move || dry_run(&url))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr.contains("was edited since it was applied"),
        "{stderr}"
    );
    assert!(
        stderr.contains("put the change in a new migration"),
        "{stderr}"
    );
}

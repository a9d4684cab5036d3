//! Migrations: idempotent, safe to run from several instances at once, roles in place.

use order_store::StoreConfig;
use order_testkit::pg::TestDatabase;

#[tokio::test]
async fn concurrent_migrations_apply_each_migration_once() {
    let db = TestDatabase::empty().await;
    let config = StoreConfig::new(db.url());
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { order_store::migrate(&config).await })
        })
        .collect();
    let mut applied = 0;
    for run in runs {
        let report = run.await.unwrap().unwrap();
        assert_eq!(report.version, order_store::migrate::latest_version());
        applied += report.applied.len();
    }
    assert_eq!(
        applied as i32,
        order_store::migrate::latest_version(),
        "each migration applied once"
    );

    let again = order_store::migrate(&config).await.unwrap();
    assert!(again.applied.is_empty(), "a second run applies nothing");

    let client = db.connect().await;
    assert!(order_store::migrate::is_current(&client).await.unwrap());
    let roles: Vec<String> = client
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'orders\\_%' ORDER BY rolname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for role in [
        "orders_app",
        "orders_owner",
        "orders_projector",
        "orders_readonly",
    ] {
        assert!(
            roles.iter().any(|r| r == role),
            "{role} missing from {roles:?}"
        );
    }
    let history: i64 = client
        .query_one("SELECT count(*) FROM orders.refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(history as i32, order_store::migrate::latest_version());
}

#[tokio::test]
async fn an_unmigrated_database_is_not_current() {
    let db = TestDatabase::empty().await;
    let client = db.connect().await;
    assert!(!order_store::migrate::is_current(&client).await.unwrap());
}

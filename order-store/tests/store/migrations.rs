//! Migrations: idempotent, safe to run from several instances at once, roles in place.

use order_store::{EventStore, StoreConfig};
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

/// An instance that waits for another's migrations longer than the store's statement time
/// limit still migrates: the wait for the lock, and the migrations, are not time-limited.
#[tokio::test]
async fn a_migration_waiting_for_another_longer_than_the_statement_limit_still_runs() {
    let db = TestDatabase::empty().await;
    let mut config = StoreConfig::new(db.url());
    config.statement_timeout = std::time::Duration::from_secs(1);
    let holder = db.connect().await;
    // The lock order_store::migrate takes ("order_mg").
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&0x6f72_6465_725f_6d67_i64])
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { order_store::migrate(&config).await });
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(!waiting.is_finished(), "it waits for the lock");
    holder
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&0x6f72_6465_725f_6d67_i64],
        )
        .await
        .unwrap();
    let report = waiting.await.unwrap().unwrap();
    assert!(!report.applied.is_empty(), "{report:?}");
}

/// A newer release's migration applied beside this binary (a blue/green deploy, or a rollback
/// to this one): the schema is still current for it, and its store ready.
#[tokio::test]
async fn a_schema_a_newer_release_migrated_further_is_still_current() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    let next = order_store::migrate::latest_version() + 1;
    client
        .execute(
            "INSERT INTO orders.refinery_schema_history (version, name, applied_on, checksum) \
             VALUES ($1, 'from_a_newer_release', now()::text, '0')",
            &[&next],
        )
        .await
        .unwrap();
    assert!(order_store::migrate::is_current(&client).await.unwrap());
    let config = StoreConfig::new(db.url());
    let store = EventStore::new(config.clone()).unwrap();
    assert!(store.is_ready().await.unwrap());
    // This binary's migrate (a redeploy of it) has nothing to do, and says so without error.
    let plan = order_store::migrate::plan(&config).await.unwrap();
    assert_eq!(plan.current, Some(next));
    assert!(plan.pending.is_empty());
    let report = order_store::migrate::migrate(&config).await.unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    // The version the database is at, not this binary's newest (it said 9 of a database at 10).
    assert_eq!(report.version, next, "{report:?}");
}

#[tokio::test]
async fn an_unmigrated_database_is_not_current() {
    let db = TestDatabase::empty().await;
    let client = db.connect().await;
    assert!(!order_store::migrate::is_current(&client).await.unwrap());
}

#[tokio::test]
async fn migrations_run_as_the_migration_owner_without_superuser_rights() {
    // As on RDS: deploy/dbinit makes the database belong to orders_owner and lets the
    // migrator log in as a member of it; nothing runs as a superuser.
    let db = TestDatabase::empty().await;
    let admin = order_testkit::pg::admin().await;
    let user = format!("migrator_{}", uuid::Uuid::new_v4().simple());
    let migrate_roles = "DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_owner') THEN CREATE ROLE orders_owner NOLOGIN; END IF;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_projector') THEN CREATE ROLE orders_projector NOLOGIN; END IF;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_app') THEN CREATE ROLE orders_app NOLOGIN; END IF;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_readonly') THEN CREATE ROLE orders_readonly NOLOGIN; END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$";
    admin.batch_execute(migrate_roles).await.unwrap();
    for statement in [
        "GRANT orders_projector TO orders_owner".to_owned(),
        format!(
            "CREATE ROLE {user} LOGIN PASSWORD 'pw' NOSUPERUSER NOCREATEROLE NOCREATEDB IN ROLE orders_owner"
        ),
        format!("ALTER ROLE {user} SET role = 'orders_owner'"),
        format!("ALTER DATABASE \"{}\" OWNER TO orders_owner", db.name()),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    let server_and_database = db.url().split_once('@').unwrap().1.to_owned();
    let url = format!("postgres://{user}:pw@{server_and_database}");
    let result = order_store::migrate(&StoreConfig::new(url)).await;
    let owner: String = db
        .connect()
        .await
        .query_one("SELECT tableowner::text FROM pg_tables WHERE schemaname = 'orders' AND tablename = 'order_summaries'", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or_default();
    drop(db);
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {user}"))
        .await
        .unwrap();
    let report = result.unwrap();
    assert_eq!(report.version, order_store::migrate::latest_version());
    assert_eq!(
        owner, "orders_projector",
        "the read model belongs to the projector's role"
    );
}

/// A migration that alters `orders.events` behind a long reader (a replay's page, a report,
/// pg_dump) waits for its lock a short while at a time: between its tries writes go on, where
/// a lock request waiting without limit would queue every append behind it for as long as the
/// reader runs. The migration completes once the reader has ended.
#[tokio::test]
async fn a_migration_behind_a_long_reader_does_not_hold_writes_up() {
    let db = TestDatabase::empty().await;
    let config = StoreConfig::new(db.url());
    // The database as the release before imports left it: V4 alters orders.events.
    order_store::migrate::migrate_to(&config, 3).await.unwrap();
    let reader = db.connect().await;
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM orders.events")
        .await
        .unwrap();
    let migration = {
        let config = config.clone();
        tokio::spawn(async move { order_store::migrate(&config).await })
    };
    let writer = db.connect().await;
    order_testkit::pg::wait_for_lock_waiters(&writer, 1, "the migration", || {
        migration.is_finished()
    })
    .await;
    // A write while the migration waits behind the reader, which does not end before it: it
    // goes through (without a bound on the migration's lock wait it would wait for the reader,
    // and its own 60 s limit would end it).
    writer
        .batch_execute(
            "SET statement_timeout = '60s';
             INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload)
             VALUES (gen_random_uuid(), 1, gen_random_uuid(), 'TestEvent', 1, '{}')",
        )
        .await
        .unwrap();
    assert!(!migration.is_finished(), "the reader still holds the table");
    reader.batch_execute("COMMIT").await.unwrap();
    let report = tokio::time::timeout(std::time::Duration::from_secs(120), migration)
        .await
        .expect("the migration ends once the reader has")
        .unwrap()
        .unwrap();
    assert_eq!(report.version, order_store::migrate::latest_version());
    assert!(
        report.applied.iter().any(|m| m.starts_with("V4__")),
        "{report:?}"
    );
}

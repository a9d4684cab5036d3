//! Schema migrations: plain SQL files in `migrations/`, embedded at compile time and applied
//! by refinery under an advisory lock, so that several instances starting at once apply each
//! migration exactly once.

use sha2::{Digest, Sha256};

use crate::config::StoreConfig;
use crate::error::Error;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// The schema holding the log and refinery's history table.
pub const SCHEMA: &str = "orders";
const HISTORY_TABLE: &str = "orders.refinery_schema_history";
/// Serialises concurrent migration runs across every database of the cluster.
const MIGRATION_LOCK: i64 = 0x6f72_6465_725f_6d67; // "order_mg"

fn runner() -> refinery::Runner {
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(HISTORY_TABLE);
    runner.set_abort_divergent(true).set_abort_missing(true)
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Names of the migrations applied by this run, oldest first.
    pub applied: Vec<String>,
    /// The version the database is at now.
    pub version: i32,
}

/// Apply every pending migration, holding an advisory lock while doing so.
pub async fn migrate(config: &StoreConfig) -> Result<MigrationReport, Error> {
    let mut client = config.connect().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        // refinery keeps its history table in our schema, so the schema comes first.
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            .await?;
        runner()
            .run_async(&mut client)
            .await
            .map_err(|e| Error::Database(format!("migration failed: {}", chain(&e))))
    }
    .await;
    // The lock is also released when the session ends; unlocking explicitly is tidier.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let report = result?;
    let applied = report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect();
    Ok(MigrationReport {
        applied,
        version: latest_version(),
    })
}

/// An error with every cause it wraps (refinery's own message says only "db error").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(db) = cause
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.as_db_error())
        {
            text.push_str(&format!(
                ": {} (SQLSTATE {})",
                db.message(),
                db.code().code()
            ));
        } else {
            text.push_str(&format!(": {cause}"));
        }
        source = cause.source();
    }
    text
}

/// The newest migration version this binary knows.
pub fn latest_version() -> i32 {
    runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Whether the database has every migration this binary knows (readiness).
pub async fn is_current(client: &tokio_postgres::Client) -> Result<bool, Error> {
    let row = client
        .query_opt(&format!("SELECT max(version) FROM {HISTORY_TABLE}"), &[])
        .await;
    match row {
        Ok(row) => Ok(row.and_then(|r| r.get::<_, Option<i32>>(0)) == Some(latest_version())),
        // No history table yet: nothing was migrated.
        Err(e)
            if e.as_db_error()
                .is_some_and(|db| db.code().code() == "42P01") =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// A short hash of every migration's name and SQL: equal hashes, equal schemas. Test
/// templates are keyed by it.
pub fn fingerprint() -> String {
    let mut hasher = Sha256::new();
    for migration in runner().get_migrations() {
        hasher.update(migration.name().as_bytes());
        hasher.update(migration.sql().unwrap_or_default().as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

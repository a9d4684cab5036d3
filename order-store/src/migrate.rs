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
/// Serialises concurrent migration runs on one database (advisory locks are per database).
const MIGRATION_LOCK: i64 = 0x6f72_6465_725f_6d67; // "order_mg"

/// How long a migration waits for a table's lock at a time. A lock request queues every later
/// one behind it: an `ALTER TABLE orders.events` waiting on a long reader (a replay's page, a
/// report, pg_dump) would hold up every append for as long as the reader runs. After this
/// wait the migration's transaction rolls back, writes go on, and it tries again.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a migration keeps trying for its locks before it gives up (the tables stay busy:
/// run it when no long reader holds them).
const LOCK_TRIES_FOR: std::time::Duration = std::time::Duration::from_secs(600);

fn runner() -> refinery::Runner {
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(HISTORY_TABLE);
    runner.set_abort_divergent(true).set_abort_missing(true)
}

/// A session for migrating: without the store's statement time limit, so that waiting for
/// another instance's migrations, or one long migration, is not cut off.
async fn migration_session(config: &StoreConfig) -> Result<tokio_postgres::Client, Error> {
    let client = config.connect().await?;
    client.batch_execute("SET statement_timeout = 0").await?;
    Ok(client)
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Names of the migrations applied by this run, oldest first.
    pub applied: Vec<String>,
    /// The version the database is at now (above [`latest_version`] when a newer release
    /// migrated it).
    pub version: i32,
}

/// Apply every pending migration, holding an advisory lock while doing so.
pub async fn migrate(config: &StoreConfig) -> Result<MigrationReport, Error> {
    let mut client = migration_session(config).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        // refinery keeps its history table in our schema, so the schema comes first.
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            .await?;
        // Nothing to apply (a schema a newer release migrated further included, which
        // refinery would refuse as "missing"): done, history untouched.
        let plan = compare(&history(&client).await?, runner().get_migrations())?;
        let current = plan.current.unwrap_or(0);
        if plan.pending.is_empty() {
            return Ok((Vec::new(), current));
        }
        let mut applied = Vec::new();
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(250);
        loop {
            // Each migration is a transaction of its own: those done before a lock wait ran
            // out stay applied, and the next try goes on from there.
            client
                .batch_execute(&format!("SET lock_timeout = '{}ms'", LOCK_WAIT.as_millis()))
                .await?;
            let run = runner().run_async(&mut client).await;
            // The setting the role or database has again. A failure here (a broken connection)
            // matters only when the run succeeded: a failed run's own error says more.
            let reset = client.batch_execute("RESET lock_timeout").await;
            if run.is_ok() {
                reset?;
            }
            match run {
                Ok(report) => {
                    applied.extend(report.applied_migrations().iter().map(|m| m.to_string()));
                    return Ok((applied, current));
                }
                Err(error) if lock_wait_ran_out(&error) && started.elapsed() < LOCK_TRIES_FOR => {
                    if let Some(report) = error.report() {
                        applied.extend(report.applied_migrations().iter().map(|m| m.to_string()));
                    }
                    tracing::warn!(
                        error = %chain(&error),
                        retry_in = ?pause,
                        "a migration waited {LOCK_WAIT:?} for a table another session holds \
                         (a long reader?); writes go on meanwhile, and it tries again"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(5));
                }
                Err(error) => {
                    return Err(Error::Database(format!(
                        "migration failed: {}",
                        chain(&error)
                    )));
                }
            }
        }
    }
    .await;
    // The lock is also released when the session ends; unlocking explicitly is tidier.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let (applied, before) = result?;
    Ok(MigrationReport {
        applied,
        // Every migration this binary knows is applied now; a newer release's may be too.
        version: before.max(latest_version()),
    })
}

/// Apply the pending migrations up to and including `version` only (tests of a migration
/// on a database as an older release left it), under the same lock as [`migrate`].
pub async fn migrate_to(config: &StoreConfig, version: i32) -> Result<MigrationReport, Error> {
    let mut client = migration_session(config).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            .await?;
        runner()
            .set_target(refinery::Target::Version(version))
            .run_async(&mut client)
            .await
            .map_err(|e| Error::Database(format!("migration failed: {}", chain(&e))))
    }
    .await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let report = result?;
    Ok(MigrationReport {
        applied: report
            .applied_migrations()
            .iter()
            .map(|m| m.to_string())
            .collect(),
        version,
    })
}

/// What [`plan`] found in the database's schema history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlan {
    /// The newest version in the schema history; `None` before the first migration.
    pub current: Option<i32>,
    /// The migrations a run would apply (`V{n}__{name}`), oldest first.
    pub pending: Vec<String>,
}

/// What [`migrate`] would do, without doing it (`order-grpc migrate --dry-run`): reads the
/// schema history in a read-only session and checks it as a run does, so that a history this
/// binary cannot continue (a migration applied but unknown here, one changed since it was
/// applied, one missing below the newest) is an error here too. Takes no lock and writes
/// nothing.
pub async fn plan(config: &StoreConfig) -> Result<MigrationPlan, Error> {
    let client = config.connect().await?;
    client
        .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        .await?;
    compare(&history(&client).await?, runner().get_migrations())
}

/// The schema history's (version, name, checksum) rows, oldest first; none before the first
/// migration.
async fn history(client: &tokio_postgres::Client) -> Result<Vec<(i32, String, String)>, Error> {
    let has_history: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .await?
        .get(0);
    if !has_history {
        return Ok(Vec::new());
    }
    Ok(client
        .query(
            &format!("SELECT version, name, checksum FROM {HISTORY_TABLE} ORDER BY version"),
            &[],
        )
        .await?
        .iter()
        .map(|row| {
            (
                row.get::<_, i32>(0),
                row.get::<_, Option<String>>(1).unwrap_or_default(),
                row.get::<_, Option<String>>(2).unwrap_or_default(),
            )
        })
        .collect())
}

/// The pending migrations, given the history's (version, name, checksum) rows.
fn compare(
    applied: &[(i32, String, String)],
    known: &[refinery::Migration],
) -> Result<MigrationPlan, Error> {
    let diverged = |what: String| Error::Database(format!("schema history: {what}"));
    let newest_known = known
        .iter()
        .map(refinery::Migration::version)
        .max()
        .unwrap_or(0);
    for (version, name, checksum) in applied {
        let Some(migration) = known.iter().find(|m| m.version() == *version) else {
            if *version > newest_known {
                // A newer release's migration (this binary runs beside it, or is rolled back
                // to): it only adds what this binary does not use.
                continue;
            }
            return Err(diverged(format!(
                "V{version}__{name} is applied but unknown to this binary"
            )));
        };
        if migration.name() != name {
            return Err(diverged(format!(
                "V{version}__{name} is applied, and this binary has {migration} in its place \
                 (renamed since it was applied): an applied migration must never change; \
                 restore its name and put any change in a new migration"
            )));
        }
        if migration.checksum().to_string() != *checksum {
            return Err(diverged(format!(
                "V{version}__{name} was edited since it was applied (checksum {checksum} in \
                 the history, {} in this binary): an applied migration must never change; \
                 restore it and put the change in a new migration",
                migration.checksum()
            )));
        }
    }
    let current = applied.iter().map(|(v, _, _)| *v).max();
    let mut pending: Vec<&refinery::Migration> = known
        .iter()
        .filter(|m| !applied.iter().any(|(v, _, _)| *v == m.version()))
        .collect();
    pending.sort_by_key(|m| m.version());
    if let (Some(current), Some(first)) = (current, pending.first())
        && first.version() <= current
    {
        return Err(diverged(format!(
            "{first} is missing below the applied version {current}"
        )));
    }
    Ok(MigrationPlan {
        current,
        pending: pending.iter().map(|m| m.to_string()).collect(),
    })
}

/// Whether `error` is a lock wait that ran out ([`LOCK_WAIT`]: SQLSTATE 55P03).
fn lock_wait_ran_out(error: &dyn std::error::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(db) = cause
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.as_db_error())
            && *db.code() == tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE
        {
            return true;
        }
        source = cause.source();
    }
    false
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

/// Whether the database has every migration this binary knows (readiness). A schema a newer
/// release migrated further is current too: migrations only add what older binaries do not
/// use, so the running version keeps working while the next one rolls out, and a rollback to
/// it is ready at once.
pub async fn is_current(client: &tokio_postgres::Client) -> Result<bool, Error> {
    let row = client
        .query_opt(&format!("SELECT max(version) FROM {HISTORY_TABLE}"), &[])
        .await;
    match row {
        Ok(row) => Ok(row
            .and_then(|r| r.get::<_, Option<i32>>(0))
            .is_some_and(|version| version >= latest_version())),
        // No history table (or no schema) yet: nothing was migrated.
        Err(e)
            if e.as_db_error()
                .is_some_and(|db| matches!(db.code().code(), "42P01" | "3F000")) =>
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

#[cfg(test)]
mod tests {
    use super::*;

    fn history(upto: usize) -> Vec<(i32, String, String)> {
        runner().get_migrations()[..upto]
            .iter()
            .map(|m| (m.version(), m.name().to_owned(), m.checksum().to_string()))
            .collect()
    }

    #[test]
    fn an_empty_history_has_every_migration_pending() {
        let plan = compare(&[], runner().get_migrations()).unwrap();
        assert_eq!(plan.current, None);
        assert_eq!(plan.pending.len(), runner().get_migrations().len());
        assert!(plan.pending[0].starts_with("V1__"), "{:?}", plan.pending);
    }

    #[test]
    fn a_complete_history_has_nothing_pending() {
        let all = runner().get_migrations().len();
        let plan = compare(&history(all), runner().get_migrations()).unwrap();
        assert_eq!(plan.current, Some(latest_version()));
        assert!(plan.pending.is_empty());
    }

    #[test]
    fn a_changed_or_unknown_migration_is_refused() {
        let mut changed = history(1);
        changed[0].2 = "1".to_owned();
        let error = compare(&changed, runner().get_migrations()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("was edited since it was applied"),
            "{error}"
        );
        let mut renamed = history(1);
        renamed[0].1 = "an_old_name".to_owned();
        let error = compare(&renamed, runner().get_migrations()).unwrap_err();
        assert!(
            error.to_string().contains("V1__an_old_name is applied")
                && error.to_string().contains("renamed since it was applied"),
            "{error}"
        );

        let mut unknown = history(2);
        unknown.insert(0, (0, "not_ours".to_owned(), "1".to_owned()));
        let error = compare(&unknown, runner().get_migrations()).unwrap_err();
        assert!(
            error.to_string().contains("unknown to this binary"),
            "{error}"
        );
    }

    /// A newer release migrated further (this binary runs beside it, or is rolled back to):
    /// nothing to apply, no error; but not when this binary's own migrations are missing.
    #[test]
    fn a_history_ahead_of_this_binary_has_nothing_pending() {
        let all = runner().get_migrations().len();
        let mut ahead = history(all);
        ahead.push((
            latest_version() + 1,
            "from_a_newer_release".to_owned(),
            "1".to_owned(),
        ));
        let plan = compare(&ahead, runner().get_migrations()).unwrap();
        assert_eq!(plan.current, Some(latest_version() + 1));
        assert!(plan.pending.is_empty());

        let mut gap = history(all - 1);
        gap.push((
            latest_version() + 1,
            "from_a_newer_release".to_owned(),
            "1".to_owned(),
        ));
        let error = compare(&gap, runner().get_migrations()).unwrap_err();
        assert!(error.to_string().contains("missing below"), "{error}");
    }
}

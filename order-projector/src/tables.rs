//! A projection's tables in the database: the registry (`orders.projections`), creating the
//! live tables of a new projection, shadow tables for a rebuild, and the atomic swap.

use std::time::Duration;

use order_store::deadpool_postgres::GenericClient;

use crate::projection::{SCHEMA, Table, Transaction};
use crate::subscription::Schema;

/// A projection as the registry records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registered {
    pub version: u32,
    pub tables: Vec<String>,
}

/// Why a projection's tables could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error(
        "table {SCHEMA}.{table} already exists (another projection's, or made by hand): drop it if it is nobody's, or give projection {projection} another table name (nothing was changed)"
    )]
    TableTaken { projection: String, table: String },
    /// The swap could not lock the live tables: other sessions held them throughout.
    #[error("{0}")]
    Locked(String),
    #[error(transparent)]
    Store(#[from] order_store::Error),
}

impl From<order_store::tokio_postgres::Error> for SetupError {
    fn from(error: order_store::tokio_postgres::Error) -> Self {
        Self::Store(error.into())
    }
}

impl From<SetupError> for crate::subscription::StepError {
    fn from(error: SetupError) -> Self {
        match error {
            SetupError::Store(store) => store.into(),
            taken @ SetupError::TableTaken { .. } => Self::Stopped(taken.to_string()),
            // Tried again after a backoff: the sessions holding the tables end some time.
            locked @ SetupError::Locked(_) => Self::Transient(locked.to_string()),
        }
    }
}

/// The registry's row of `name`, if any.
pub(crate) async fn registered<C: GenericClient>(
    client: &C,
    name: &str,
) -> Result<Option<Registered>, order_store::Error> {
    let row = client
        .query_opt(
            "SELECT version, tables FROM orders.projections WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(match row {
        Some(row) => Some(Registered {
            version: row.try_get::<_, i32>(0)? as u32,
            tables: row.try_get(1)?,
        }),
        None => None,
    })
}

/// Every registered projection: name, version, tables.
pub(crate) async fn all_registered<C: GenericClient>(
    client: &C,
) -> Result<Vec<(String, Registered)>, order_store::Error> {
    let rows = client
        .query(
            "SELECT name, version, tables FROM orders.projections ORDER BY name",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                Registered {
                    version: row.try_get::<_, i32>(1)? as u32,
                    tables: row.try_get(2)?,
                },
            ))
        })
        .collect()
}

async fn exists<C: GenericClient>(client: &C, table: &str) -> Result<bool, order_store::Error> {
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{SCHEMA}.{table}")],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Refuse to build `tables` for projection `name` when one of them exists and is not the
/// projection's own (its registered tables, `previous`): a rebuild swaps its shadows in place
/// of the live tables of those names, and must never drop another projection's table or one
/// made by hand.
pub(crate) async fn refuse_foreign<C: GenericClient>(
    client: &C,
    name: &str,
    tables: &[Table],
    previous: Option<&Registered>,
) -> Result<(), SetupError> {
    for table in tables {
        let own = previous.is_some_and(|p| p.tables.iter().any(|t| t == table.name()));
        if !own && exists(client, table.name()).await? {
            return Err(SetupError::TableTaken {
                projection: name.to_owned(),
                table: table.name().to_owned(),
            });
        }
    }
    Ok(())
}

/// Why a projection declaring `tables` at its registered version must not act on that
/// registration: it names other tables than those registered. Another build uses the name, or
/// the tables changed without a version bump; a rebuild would drop the registered tables it
/// does not declare (another team's live tables, in the first case).
pub(crate) fn other_tables_at_registered_version(
    name: &str,
    tables: &[Table],
    registered: &Registered,
) -> Option<String> {
    let declared: std::collections::BTreeSet<&str> = tables.iter().map(Table::name).collect();
    let known: std::collections::BTreeSet<&str> =
        registered.tables.iter().map(String::as_str).collect();
    (declared != known).then(|| {
        format!(
            "projection {name} is registered at version {} with tables {known:?}, but this \
             binary declares {declared:?} at that version: another build uses the name {name}, \
             or the tables changed without a version bump; give the projection a name of its \
             own, or, if these are its own new tables, raise its version() (a rebuild at a new \
             version drops the registered tables it does not declare: never raise it over \
             another build's projection) (nothing was changed)",
            registered.version
        )
    })
}

/// The declared tables that do not exist.
pub(crate) async fn missing<C: GenericClient>(
    client: &C,
    tables: &[Table],
) -> Result<Vec<String>, order_store::Error> {
    let mut missing = Vec::new();
    for table in tables {
        if !exists(client, table.name()).await? {
            missing.push(table.name().to_owned());
        }
    }
    Ok(missing)
}

/// Create a new projection's live tables (with their indexes and grants) and register it,
/// inside `tx`. Refuses tables that exist already.
pub(crate) async fn create_live(
    tx: &Transaction<'_>,
    name: &str,
    schema: &Schema,
) -> Result<(), SetupError> {
    for table in &schema.tables {
        if exists(tx, table.name()).await? {
            return Err(SetupError::TableTaken {
                projection: name.to_owned(),
                table: table.name().to_owned(),
            });
        }
        tx.batch_execute(&table.create_sql(table.name())).await?;
        for index in table.index_sql(table.name()) {
            tx.batch_execute(&index).await?;
        }
        own(tx, table.name()).await?;
        grant(tx, table, table.name()).await?;
    }
    register(tx, name, schema, false).await
}

/// The group role of every projector login (created by the migrations, which give it the
/// built-in read-model tables): the owner of every projection's tables too, so that any of its
/// logins may rebuild, rename and drop them, whichever created them.
const OWNER_ROLE: &str = "orders_projector";

/// Hand `physical` to [`OWNER_ROLE`] when the session's user owns it and has the role's
/// privileges (a login such as `order_projector` that inherits them, or a superuser).
/// Otherwise, or when the server refuses (a member without SET on PostgreSQL 16, a lock not
/// granted in time), it stays as it is: its owner's logins still work, as before.
async fn own<C: GenericClient>(client: &C, physical: &str) -> Result<(), order_store::Error> {
    client
        .batch_execute(&format!(
            "DO $own$ BEGIN
               IF current_user <> '{OWNER_ROLE}'
                  AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{OWNER_ROLE}')
                  AND EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = '{SCHEMA}'
                              AND tablename = '{physical}' AND tableowner = current_user) THEN
                 IF pg_has_role(current_user, '{OWNER_ROLE}', 'USAGE') THEN
                   ALTER TABLE {SCHEMA}.{physical} OWNER TO {OWNER_ROLE};
                 END IF;
               END IF;
             EXCEPTION WHEN insufficient_privilege OR lock_not_available THEN
               NULL;
             END $own$"
        ))
        .await?;
    Ok(())
}

/// Hand a projection's existing tables that their creator's login still owns (made before
/// projections' tables went to [`OWNER_ROLE`]) to the role. One catalog query when there is
/// nothing to do (every start after the first); a table being read is left for the next start
/// rather than waited for.
pub(crate) async fn own_existing(
    client: &mut order_store::deadpool_postgres::Object,
    tables: &[Table],
) -> Result<(), order_store::Error> {
    let names: Vec<&str> = tables.iter().map(Table::name).collect();
    let owned: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables
             WHERE schemaname = $1 AND tablename = ANY($2) AND tableowner = current_user",
            &[&SCHEMA, &names],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for table in owned {
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL lock_timeout = '2s'").await?;
        own(&tx, &table).await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn grant<C: GenericClient>(
    client: &C,
    table: &Table,
    physical: &str,
) -> Result<(), order_store::Error> {
    if !table.readers().is_empty() {
        client
            .batch_execute(&format!(
                "GRANT SELECT ON {SCHEMA}.{physical} TO {}",
                table.readers().join(", ")
            ))
            .await?;
    }
    Ok(())
}

async fn register(
    tx: &Transaction<'_>,
    name: &str,
    schema: &Schema,
    rebuilt: bool,
) -> Result<(), SetupError> {
    let tables: Vec<&str> = schema.tables.iter().map(Table::name).collect();
    tx.execute(
        "INSERT INTO orders.projections (name, version, tables, rebuilt_at)
         VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END)
         ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, tables = EXCLUDED.tables,
             rebuilt_at = EXCLUDED.rebuilt_at, updated_at = now()",
        &[&name, &(schema.version as i32), &tables, &rebuilt],
    )
    .await?;
    Ok(())
}

fn shadow_name(table: &Table) -> String {
    format!("{}_shadow", table.name())
}

/// Drop whatever shadow tables an earlier rebuild left, and create empty ones (without their
/// secondary indexes).
pub(crate) async fn create_shadows(
    tx: &Transaction<'_>,
    tables: &[Table],
) -> Result<(), order_store::Error> {
    drop_shadows(tx, tables).await?;
    for table in tables {
        tx.batch_execute(&table.create_sql(&shadow_name(table)))
            .await?;
        own(tx, &shadow_name(table)).await?;
    }
    Ok(())
}

/// Drop the shadow tables (after a failed rebuild; the next one would drop them anyway).
pub(crate) async fn drop_shadows<C: GenericClient>(
    client: &C,
    tables: &[Table],
) -> Result<(), order_store::Error> {
    let names: Vec<String> = tables
        .iter()
        .map(|t| format!("{SCHEMA}.{}", shadow_name(t)))
        .collect();
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {}", names.join(", ")))
        .await?;
    Ok(())
}

/// Build the shadow tables' secondary indexes and statistics (after the load).
pub(crate) async fn finish_shadows(
    tx: &Transaction<'_>,
    tables: &[Table],
) -> Result<(), order_store::Error> {
    for table in tables {
        let shadow = shadow_name(table);
        for index in table.index_sql(&shadow) {
            tx.batch_execute(&index).await?;
        }
        tx.batch_execute(&format!("ANALYZE {SCHEMA}.{shadow}"))
            .await?;
    }
    Ok(())
}

/// Rename a table's indexes, constraints and owned sequences whose names start with
/// `from` to start with `to` instead (they follow the table's name).
async fn rename_dependents(
    tx: &Transaction<'_>,
    table: &str,
    from: &str,
    to: &str,
) -> Result<(), order_store::Error> {
    let qualified = format!("{SCHEMA}.{table}");
    let renamed = |name: &str| -> Option<String> {
        name.strip_prefix(from)
            .map(|rest| format!("{to}{rest}"))
            .filter(|new| new != name)
    };
    // Indexes (renaming the index of a primary key or unique constraint renames the constraint).
    let indexes = tx
        .query(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = $1::text::regclass",
            &[&qualified],
        )
        .await?;
    for row in &indexes {
        let name: String = row.try_get(0)?;
        if let Some(new) = renamed(&name) {
            tx.batch_execute(&format!(
                "ALTER INDEX {SCHEMA}.\"{name}\" RENAME TO \"{new}\""
            ))
            .await?;
        }
    }
    let constraints = tx
        .query(
            "SELECT conname::text FROM pg_constraint
             WHERE conrelid = $1::text::regclass AND contype NOT IN ('p', 'u', 'x')",
            &[&qualified],
        )
        .await?;
    for row in &constraints {
        let name: String = row.try_get(0)?;
        if let Some(new) = renamed(&name) {
            tx.batch_execute(&format!(
                "ALTER TABLE {qualified} RENAME CONSTRAINT \"{name}\" TO \"{new}\""
            ))
            .await?;
        }
    }
    let sequences = tx
        .query(
            "SELECT s.relname::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
             WHERE d.classid = 'pg_class'::regclass AND d.refobjid = $1::text::regclass
               AND s.relkind = 'S'",
            &[&qualified],
        )
        .await?;
    for row in &sequences {
        let name: String = row.try_get(0)?;
        if let Some(new) = renamed(&name) {
            tx.batch_execute(&format!(
                "ALTER SEQUENCE {SCHEMA}.\"{name}\" RENAME TO \"{new}\""
            ))
            .await?;
        }
    }
    Ok(())
}

/// How long one try of the swap's lock on the live tables waits: every reader that comes
/// meanwhile waits behind it.
pub(crate) const SWAP_LOCK_TRY: Duration = Duration::from_millis(100);
/// How long the swap goes on trying for its lock, in all, at most (a replay gives it at most
/// half its lease's time, its leases renewed just before).
pub(crate) const SWAP_LOCK_PATIENCE: Duration = Duration::from_secs(20);

/// Lock `live` (schema-qualified) in ACCESS EXCLUSIVE mode inside `tx`, in tries of
/// [`SWAP_LOCK_TRY`] with pauses between them, for at most `patience`.
async fn lock_live(
    tx: &Transaction<'_>,
    live: &[String],
    patience: Duration,
) -> Result<(), SetupError> {
    let give_up = tokio::time::Instant::now() + patience;
    let mut pause = Duration::from_millis(50);
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{}ms'",
        SWAP_LOCK_TRY.as_millis()
    ))
    .await?;
    loop {
        tx.batch_execute("SAVEPOINT swap_lock").await?;
        let locked = tx
            .batch_execute(&format!(
                "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
                live.join(", ")
            ))
            .await;
        match locked {
            Ok(()) => {
                tx.batch_execute("RELEASE SAVEPOINT swap_lock").await?;
                return Ok(());
            }
            Err(error)
                if error.code()
                    == Some(&order_store::tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) =>
            {
                tx.batch_execute("ROLLBACK TO SAVEPOINT swap_lock").await?;
                if tokio::time::Instant::now() >= give_up {
                    let holders = lock_holders(tx, live).await?;
                    return Err(SetupError::Locked(format!(
                        "the live tables ({}) stayed locked by other sessions for {:.0} s, so the swap did not take place (nothing was changed; readers waited at most {} ms at a time): {holders}",
                        live.join(", "),
                        patience.as_secs_f64(),
                        SWAP_LOCK_TRY.as_millis()
                    )));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The sessions holding a lock on any of `live`, as one line: pid, for how long its
/// transaction has run, and its query (as far as this role may see it).
async fn lock_holders(tx: &Transaction<'_>, live: &[String]) -> Result<String, SetupError> {
    let rows = tx
        .query(
            "SELECT DISTINCT a.pid, coalesce(a.application_name, ''),
                    extract(epoch FROM now() - a.xact_start)::float8,
                    left(coalesce(a.query, ''), 200)
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.granted AND l.locktype = 'relation' AND a.pid <> pg_backend_pid()
                AND l.relation = ANY (SELECT to_regclass(t)::oid FROM unnest($1::text[]) AS t)
              ORDER BY 1",
            &[&live],
        )
        .await?;
    if rows.is_empty() {
        return Ok(
            "no session holds them now (they were released just after the last try): run it again"
                .to_owned(),
        );
    }
    let sessions: Vec<String> = rows
        .iter()
        .map(|row| {
            let pid: i32 = row.get(0);
            let application: String = row.get(1);
            let running: Option<f64> = row.get(2);
            let query: String = row.get(3);
            format!(
                "pid {pid}{}{} ({query:?})",
                if application.is_empty() {
                    String::new()
                } else {
                    format!(" [{application}]")
                },
                running.map_or(String::new(), |s| format!(
                    ", its transaction running for {s:.0} s"
                )),
            )
        })
        .collect();
    Ok(format!(
        "held by {}; end them (pg_cancel_backend / pg_terminate_backend) or wait, then run it again",
        sessions.join("; ")
    ))
}

/// Put the shadow tables in place of the live ones, inside `tx`: lock the live tables, rename
/// them away, rename the shadows into place (with their indexes and constraints), grant, drop
/// the old tables (and tables of the previous version the new one no longer has), and record
/// the version. Readers wait for the lock for the few milliseconds this takes; they never see
/// an empty or half-built table. The lock is asked for in tries of [`SWAP_LOCK_TRY`] (readers
/// queue behind a waiting ACCESS EXCLUSIVE request, so it must never wait long), for at most
/// `patience` in all; then [`SetupError::Locked`] names the sessions holding the tables.
pub(crate) async fn swap(
    tx: &Transaction<'_>,
    name: &str,
    schema: &Schema,
    previous: Option<&Registered>,
    patience: Duration,
) -> Result<(), SetupError> {
    // Checked when the rebuild began; again here, where a table would be dropped.
    refuse_foreign(tx, name, &schema.tables, previous).await?;
    let mut live: Vec<String> = Vec::new();
    let mut candidates: Vec<String> = schema.tables.iter().map(|t| t.name().to_owned()).collect();
    if let Some(previous) = previous {
        candidates.extend(previous.tables.iter().cloned());
    }
    candidates.sort();
    candidates.dedup();
    for table in &candidates {
        if exists(tx, table).await? {
            live.push(format!("{SCHEMA}.{table}"));
        }
    }
    if !live.is_empty() {
        lock_live(tx, &live, patience).await?;
    }
    // Renames, drops and the registry wait for nothing the lock above does not cover, but
    // a frozen server must not hold the swap (and the projection) for ever.
    tx.batch_execute("SET LOCAL lock_timeout = '10s'").await?;
    let mut retired = Vec::new();
    for table in &schema.tables {
        let name = table.name();
        if exists(tx, name).await? {
            let old = format!("{name}_retired");
            tx.batch_execute(&format!(
                "DROP TABLE IF EXISTS {SCHEMA}.{old}; ALTER TABLE {SCHEMA}.{name} RENAME TO {old}"
            ))
            .await?;
            rename_dependents(tx, &old, name, &old).await?;
            retired.push(format!("{SCHEMA}.{old}"));
        }
        let shadow = shadow_name(table);
        tx.batch_execute(&format!("ALTER TABLE {SCHEMA}.{shadow} RENAME TO {name}"))
            .await?;
        rename_dependents(tx, name, &shadow, name).await?;
        grant(tx, table, name).await?;
    }
    // Tables of the previous version that this version no longer has.
    if let Some(previous) = previous {
        for table in &previous.tables {
            if !schema.tables.iter().any(|t| t.name() == table) && exists(tx, table).await? {
                retired.push(format!("{SCHEMA}.{table}"));
            }
        }
    }
    if !retired.is_empty() {
        tx.batch_execute(&format!("DROP TABLE {}", retired.join(", ")))
            .await?;
    }
    register(tx, name, schema, true).await
}

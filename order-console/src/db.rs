//! What the console reads from PostgreSQL, through a role that can only read: every session
//! is `default_transaction_read_only`, and at start the console refuses a role that may write
//! any table of the `orders` schema.
//!
//! Every statement is a lookup by an index or a bounded range: the console must cost the
//! command path nothing measurable.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be had.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A statement failed.
    #[error("database query failed: {0}")]
    Query(String),
    /// The role may write: the console refuses to run with it.
    #[error("{0}")]
    NotReadOnly(String),
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => Self::Query(db.message().to_owned()),
            None => Self::Unavailable(order_runtime::with_causes(&error)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Unavailable(order_runtime::with_causes(&error))
    }
}

/// How many of a state's oldest orders (by placement) the longest waiting are looked for in.
pub const STUCK_CANDIDATES: i64 = 1000;

/// Orders in flight are counted up to this many a state at every refresh (one more read
/// tells that there are more: shown as "10,000+").
pub const IN_FLIGHT_COUNT_CAP: i64 = 10_000;

/// Positions one look of [`Db::cursor_since`] reads at most.
pub const CURSOR_WINDOW: i64 = 1000;

/// Looks [`Db::cursor_since`] takes at most (each at most [`CURSOR_WINDOW`] rows).
pub const CURSOR_MAX_LOOKS: usize = 100;

/// The order states, in the order the state machine visits them (the domain's own list).
pub const STATES: [order_domain::Status; 10] = order_domain::Status::ALL;

/// The read-only database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: Pool,
    /// The longest any read may take, whatever the server does (a frozen server, or a
    /// network path that stopped carrying packets, answers nothing and cancels nothing).
    call_timeout: std::time::Duration,
    /// Whether the role was found read-only (`Ok`) or able to write (`Err`), once known.
    verified: Arc<OnceLock<Result<(), String>>>,
}

/// The first thing of the `orders` schema the current user, or any role it is a member of
/// (directly or through other roles, inheriting its privileges or not: it may `SET ROLE` to
/// it), may change, if any: a table, partitioned table, view or foreign table it may write (a
/// privilege on the whole relation, or INSERT or UPDATE on any one of its columns), a sequence
/// it may advance (USAGE or UPDATE: `nextval`, `setval`), or the schema itself (CREATE). Every
/// table counts, not only those the console reads: a role that may write the import progress
/// or the projections' registry is no read-only role either.
const WRITABLE_SQL: &str = "
WITH roles AS (
    SELECT r.oid,
           CASE WHEN r.rolname = current_user THEN ''
                ELSE ' (as a member of ' || r.rolname || ')' END AS via
      FROM pg_roles r
     WHERE pg_has_role(current_user, r.oid, 'MEMBER'))
SELECT 'orders.' || c.relname || roles.via
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN roles
 WHERE n.nspname = 'orders' AND c.relkind IN ('r', 'p', 'v', 'f')
   AND (has_table_privilege(roles.oid, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
        OR has_any_column_privilege(roles.oid, c.oid, 'INSERT, UPDATE'))
UNION ALL
SELECT 'orders.' || c.relname || ' (sequence)' || roles.via
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN roles
 WHERE n.nspname = 'orders' AND c.relkind = 'S'
   AND has_sequence_privilege(roles.oid, c.oid, 'USAGE, UPDATE')
UNION ALL
SELECT 'the orders schema (CREATE)' || roles.via
  FROM roles
 WHERE has_schema_privilege(roles.oid, 'orders', 'CREATE')
ORDER BY 1 LIMIT 1";

/// The first SECURITY DEFINER function (or procedure) outside the system schemas that the
/// current user, or any role it is a member of (as in [`WRITABLE_SQL`]), may execute, and
/// whose owner may change the `orders` schema: a superuser, or a role that may write any of
/// its tables, views or foreign tables (or a column of one), advance any of its sequences, or
/// create in it, by its own privileges or those it inherits (a SECURITY DEFINER function
/// runs with them, and may not `SET ROLE`). Such a function writes for whoever calls it. The
/// project's migrations define none: `orders.log_fence()`, which `orders_readonly` may
/// execute, runs as its caller.
const WRITING_DEFINER_SQL: &str = "
WITH roles AS (
    SELECT r.oid,
           CASE WHEN r.rolname = current_user THEN ''
                ELSE ' (as a member of ' || r.rolname || ')' END AS via
      FROM pg_roles r
     WHERE pg_has_role(current_user, r.oid, 'MEMBER')),
definers AS (
    SELECT DISTINCT ON (p.oid) p.oid, p.proowner,
           quote_ident(n.nspname) || '.' || quote_ident(p.proname)
               || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS function,
           roles.via
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace CROSS JOIN roles
     WHERE p.prosecdef
       AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
       AND has_function_privilege(roles.oid, p.oid, 'EXECUTE')
     ORDER BY p.oid, roles.via)
SELECT d.function || d.via, pg_get_userbyid(d.proowner)::text, w.what
  FROM definers d
  CROSS JOIN LATERAL (
      SELECT 'anything (a superuser)' AS what
        FROM pg_roles o WHERE o.oid = d.proowner AND o.rolsuper
      UNION ALL
      SELECT 'orders.' || c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'orders' AND c.relkind IN ('r', 'p', 'v', 'f')
         AND (has_table_privilege(d.proowner, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
              OR has_any_column_privilege(d.proowner, c.oid, 'INSERT, UPDATE'))
      UNION ALL
      SELECT 'orders.' || c.relname || ' (sequence)'
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'orders' AND c.relkind = 'S'
         AND has_sequence_privilege(d.proowner, c.oid, 'USAGE, UPDATE')
      UNION ALL
      SELECT 'the orders schema (CREATE)'
       WHERE has_schema_privilege(d.proowner, 'orders', 'CREATE')
      LIMIT 1) AS w
 ORDER BY 1 LIMIT 1";

impl Db {
    /// A pool whose sessions are read-only. Nothing touches the network yet.
    pub fn new(config: &order_store::StoreConfig) -> Result<Self, String> {
        let mut pg = config.pg_config().map_err(|e| e.to_string())?;
        let mut options = pg.get_options().unwrap_or_default().to_owned();
        // Read-only sessions; and the planner free to scan (the store forbids it for its own
        // index lookups; the console's few aggregates may need it).
        options.push_str(
            " -c default_transaction_read_only=on -c enable_seqscan=on -c plan_cache_mode=auto",
        );
        pg.options(options.trim());
        let manager = Manager::from_connect(
            pg,
            config.connector().map_err(|e| e.to_string())?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .wait_timeout(Some(config.pool_wait_timeout))
            .create_timeout(Some(
                config.connect_time() + std::time::Duration::from_secs(1),
            ))
            .recycle_timeout(Some(config.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| format!("connection pool: {e}"))?;
        Ok(Self {
            pool,
            call_timeout: config.call_timeout(),
            verified: Arc::default(),
        })
    }

    /// `read`, or [`Error::Unavailable`] once the call's time limit passed without an answer.
    pub(crate) async fn timed<T>(
        &self,
        read: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::time::timeout(self.call_timeout, read)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unavailable(format!(
                    "the database did not answer within {} s",
                    self.call_timeout.as_secs_f64()
                )))
            })
    }

    /// A connection, once the role is known to be read-only: the first call (and every call
    /// while the database cannot tell, e.g. not reachable or not migrated yet) checks it; a
    /// role that may write gets no connection, ever.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        let client = self.pool.get().await?;
        match self.verified.get() {
            Some(Ok(())) => Ok(client),
            Some(Err(why)) => Err(Error::NotReadOnly(why.clone())),
            None => match check(&client).await {
                Ok(()) => {
                    let _ = self.verified.set(Ok(()));
                    Ok(client)
                }
                Err(Error::NotReadOnly(why)) => {
                    let _ = self.verified.set(Err(why.clone()));
                    Err(Error::NotReadOnly(why))
                }
                Err(other) => Err(other),
            },
        }
    }

    /// Refuse a role that may write: superuser, any write privilege on a table of the `orders`
    /// schema, or CREATE on it, or EXECUTE on a SECURITY DEFINER function whose owner may.
    /// `Unavailable` or `Query` when the database cannot tell yet.
    pub async fn check_read_only(&self) -> Result<(), Error> {
        self.timed(async { self.client().await.map(drop) }).await
    }
}

/// The read-only check itself, on one connection.
async fn check(client: &deadpool_postgres::Object) -> Result<(), Error> {
    // The user itself if it is a superuser, else a superuser role it is a member of.
    let row = client
        .query_one(
            "SELECT current_user::text,
                    (SELECT rolname::text FROM pg_roles
                      WHERE rolsuper AND pg_has_role(current_user, oid, 'MEMBER')
                      ORDER BY rolname <> current_user, rolname LIMIT 1)",
            &[],
        )
        .await?;
    let user: String = row.try_get(0)?;
    match row.try_get::<_, Option<String>>(1)? {
        Some(role) if role == user => {
            return Err(Error::NotReadOnly(format!(
                "the database user {user:?} is a superuser: the console needs a member of orders_readonly"
            )));
        }
        Some(role) => {
            return Err(Error::NotReadOnly(format!(
                "the database user {user:?} is a member of the superuser role {role:?}: the console needs a member of orders_readonly"
            )));
        }
        None => {}
    }
    if let Some(row) = client.query_opt(WRITABLE_SQL, &[]).await? {
        let table: String = row.try_get(0)?;
        return Err(Error::NotReadOnly(format!(
            "the database user {user:?} may write {table}: the console needs a member of orders_readonly"
        )));
    }
    if let Some(row) = client.query_opt(WRITING_DEFINER_SQL, &[]).await? {
        let function: String = row.try_get(0)?;
        let owner: String = row.try_get(1)?;
        let what: String = row.try_get(2)?;
        return Err(Error::NotReadOnly(format!(
            "the database user {user:?} may execute {function}, a SECURITY DEFINER function \
             of {owner:?}, who may write {what}: the console needs a member of orders_readonly \
             that may execute no such function (REVOKE EXECUTE from it and from PUBLIC)"
        )));
    }
    Ok(())
}

impl Db {
    /// The server answers and the schema is there.
    pub async fn ping(&self) -> Result<(), Error> {
        self.timed(async {
            let client = self.client().await?;
            client
                .query("SELECT 1 FROM orders.subscriptions LIMIT 0", &[])
                .await?;
            Ok(())
        })
        .await
    }

    /// Connections in use on the server (to every database, by every role) and
    /// `max_connections`.
    ///
    /// Counted from `pg_stat_database`'s `numbackends`, which every role may read:
    /// `pg_stat_activity` shows a role without `pg_monitor` (the console's) the
    /// `backend_type` of its own sessions only, so counting client backends there sees the
    /// console alone. `numbackends` counts the sessions connected to a database (clients,
    /// and while they run, autovacuum and parallel workers), much as RDS's
    /// `DatabaseConnections` does; the server's own processes, connected to none, are not
    /// counted.
    pub async fn connections(&self) -> Result<(f64, f64), Error> {
        self.timed(async {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT coalesce(sum(numbackends), 0)::float8, current_setting('max_connections')::float8
                       FROM pg_stat_database",
                    &[],
                )
                .await?;
            Ok((row.try_get(0)?, row.try_get(1)?))
        })
        .await
    }

    /// Orders per state (the read model), each counted up to `cap` (a state holding more
    /// says `cap`; `None`: counted whole).
    ///
    /// Only the states asked for, each a range of the index on `status`: with a cap, at most
    /// `cap` entries a state, however many orders a state holds (a worker outage leaves
    /// hundreds of thousands in one state, and counting them all at every refresh would load
    /// the database most when it matters most).
    pub async fn state_counts(
        &self,
        states: &[order_domain::Status],
        cap: Option<i64>,
    ) -> Result<BTreeMap<String, i64>, Error> {
        self.timed(async {
            let client = self.client().await?;
            let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
            let rows = client
                .query(
                    "SELECT state, (SELECT count(*) FROM (SELECT 1 FROM orders.order_summaries
                                                          WHERE status = state LIMIT $2) AS capped)
                       FROM unnest($1::text[]) AS state",
                    &[&names, &cap],
                )
                .await?;
            let mut counts = BTreeMap::new();
            for row in rows {
                let count: i64 = row.try_get(1)?;
                if count > 0 {
                    counts.insert(row.try_get::<_, String>(0)?, count);
                }
            }
            Ok(counts)
        })
        .await
    }

    /// The `limit` orders longest in each state that is not final, among its
    /// [`STUCK_CANDIDATES`] oldest (a bounded index range, whatever the state holds: a worker
    /// outage leaves hundreds of thousands of orders in one state, and sorting them all at
    /// every refresh would load the database most when it matters most).
    pub async fn stuck(&self, limit: i64) -> Result<BTreeMap<String, Vec<Stuck>>, Error> {
        self.timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT order_id, customer_id, extract(epoch FROM now() - updated_at)::float8, stream_version
                       FROM (SELECT order_id, customer_id, updated_at, stream_version
                               FROM orders.order_summaries WHERE status = $1
                              ORDER BY placed_at, order_id LIMIT $3) AS oldest
                      ORDER BY updated_at LIMIT $2",
                )
                .await?;
            let mut out = BTreeMap::new();
            for state in STATES.into_iter().filter(|s| !s.is_terminal()) {
                let state = state.as_str();
                let rows = client
                    .query(&statement, &[&state, &limit, &STUCK_CANDIDATES])
                    .await?;
                let mut list = Vec::new();
                for row in rows {
                    list.push(Stuck {
                        order_id: row.try_get(0)?,
                        customer_id: row.try_get(1)?,
                        seconds: row.try_get::<_, f64>(2)?.max(0.0),
                        version: row.try_get(3)?,
                    });
                }
                out.insert(state.to_owned(), list);
            }
            Ok(out)
        })
        .await
    }

    /// The gap-safe cursor just before the first event recorded at or after `since_seconds`
    /// ago, or earlier (never later: an event of the window is never skipped; one before it
    /// is read and not counted).
    ///
    /// A binary search over positions by the time of the events written by commands: their
    /// `recorded_at` rises with their position. Imported events carry their legacy time, at any
    /// position (an import of old history after today's orders), so they say nothing and are
    /// passed over: each step looks for a native event (`imported_from` NULL) near the middle,
    /// then further out both ways, then from the upper bound down, every look a bounded range
    /// of the primary key ([`CURSOR_WINDOW`] positions). The window starts at the first native
    /// event in it; after [`CURSOR_MAX_LOOKS`] looks (a long stretch of imported events between
    /// the bounds) it starts at the lower bound, before which every native event is older than
    /// the window, and the flow reads the rest page by page.
    ///
    /// The log is read in the gap-safe order, by writing transaction first, and a transaction
    /// that took its id before another's may write after it, at a later position. So the
    /// cursor is below every transaction that wrote an event of the window (the smallest id
    /// among them) and below the fence (transactions
    /// still in flight, which may write to the window yet), at the window's first position:
    /// every event of the window is read once. Events before the window by a transaction of a
    /// later id are read too, and counted in the minutes they were recorded in, before the
    /// window (the flow keeps only the window's minutes).
    pub async fn cursor_since(&self, since_seconds: f64) -> Result<FlowCursor, Error> {
        self.timed(async {
            let client = self.client().await?;
            let head: i64 = client
                .query_one(
                    "SELECT coalesce((SELECT global_position FROM orders.events ORDER BY global_position DESC LIMIT 1), 0)",
                    &[],
                )
                .await?
                .try_get(0)?;
            // The first (or last) native event in [$1, $2): its position, and whether it is
            // older than the window.
            let first_native = client
                .prepare_cached(
                    "SELECT global_position, now() - recorded_at > make_interval(secs => $3)
                       FROM orders.events
                      WHERE global_position >= $1 AND global_position < $2 AND imported_from IS NULL
                      ORDER BY global_position LIMIT 1",
                )
                .await?;
            let last_native = client
                .prepare_cached(
                    "SELECT global_position, now() - recorded_at > make_interval(secs => $3)
                       FROM orders.events
                      WHERE global_position >= $1 AND global_position < $2 AND imported_from IS NULL
                      ORDER BY global_position DESC LIMIT 1",
                )
                .await?;
            let (mut low, mut high) = (1i64, head + 1);
            let mut probes = 0usize;
            // Invariant: native events before `low` are older than the window; native events at
            // or after `high` are in it.
            'search: while low < high {
                let middle = low + (high - low) / 2;
                // Windows of CURSOR_WINDOW positions after and before the middle, at distances
                // 0, 1, 2, 4, ... windows from it, within [low, high).
                let mut distance = 0i64;
                let found = 'window: loop {
                    let after = (middle.saturating_add(distance), high);
                    let after = (after.0, after.0.saturating_add(CURSOR_WINDOW).min(after.1));
                    let before_end = middle.saturating_sub(distance);
                    let before = (before_end.saturating_sub(CURSOR_WINDOW).max(low), before_end);
                    if after.0 >= after.1 && before.0 >= before.1 {
                        break None;
                    }
                    for (statement, (from, to)) in [(&first_native, after), (&last_native, before)] {
                        if from >= to {
                            continue;
                        }
                        if probes >= CURSOR_MAX_LOOKS {
                            break 'search;
                        }
                        probes += 1;
                        if let Some(row) = client
                            .query_opt(statement, &[&from, &to, &since_seconds])
                            .await?
                        {
                            break 'window Some((row.try_get::<_, i64>(0)?, row.try_get::<_, bool>(1)?));
                        }
                    }
                    distance = if distance == 0 { CURSOR_WINDOW } else { distance.saturating_mul(2) };
                };
                match found {
                    Some((position, true)) => low = position + 1,
                    Some((position, false)) => high = position,
                    None => {
                        // None near the middle: look through [low, high) from the top down,
                        // window after window, for the last native event below `high`.
                        let mut to = high;
                        let last = loop {
                            if to <= low {
                                break None;
                            }
                            if probes >= CURSOR_MAX_LOOKS {
                                break 'search;
                            }
                            probes += 1;
                            let from = to.saturating_sub(CURSOR_WINDOW).max(low);
                            if let Some(row) = client
                                .query_opt(&last_native, &[&from, &to, &since_seconds])
                                .await?
                            {
                                break Some((row.try_get::<_, i64>(0)?, row.try_get::<_, bool>(1)?));
                            }
                            to = from;
                        };
                        match last {
                            Some((position, false)) => high = position,
                            // Older than the window, or none at all: no native event between
                            // the bounds is in the window.
                            Some((_, true)) | None => low = high,
                        }
                    }
                }
            }
            // The cursor: below the first position of the window (`low`), and below every
            // transaction that wrote an event of it. The log is read in transaction order,
            // and a transaction that took its id before another's may write after it, at a
            // later position: committed already (its id is among the window's events), or
            // still in flight (its id is at or above the fence). The store's statement for a
            // subscription that starts after a position takes the lower of the two, in one
            // snapshot, reading no more rows than the window holds.
            let xid: String = client
                .query_one(
                    &format!(
                        "SELECT below.xid::text FROM ({}) AS below(xid)",
                        order_store::CURSOR_BEFORE_POSITION_SQL
                    ),
                    &[&(low - 1)],
                )
                .await?
                .try_get(0)?;
            Ok(FlowCursor {
                xid,
                position: low - 1,
            })
        })
        .await
    }

    /// Events after `cursor` in the gap-safe order (committed, and older than every
    /// transaction still in flight), at most `limit`: (type, recorded at as Unix seconds).
    pub async fn events_after(
        &self,
        cursor: &FlowCursor,
        limit: i64,
    ) -> Result<(Vec<(String, f64)>, FlowCursor), Error> {
        self.timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT transaction_id::text AS xid, global_position, event_type, extract(epoch FROM recorded_at)::float8
                       FROM orders.events
                      WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
                        AND transaction_id < (SELECT orders.log_fence())
                      ORDER BY transaction_id, global_position LIMIT $3",
                )
                .await?;
            let rows = client
                .query(&statement, &[&cursor.xid, &cursor.position, &limit])
                .await?;
            let mut next = cursor.clone();
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                next = FlowCursor {
                    xid: row.try_get(0)?,
                    position: row.try_get(1)?,
                };
                out.push((row.try_get(2)?, row.try_get(3)?));
            }
            Ok((out, next))
        })
        .await
    }

    /// One order: its read-model row and its events.
    pub async fn order(&self, order_id: Uuid) -> Result<Option<OrderView>, Error> {
        self.timed(async {
            let client = self.client().await?;
            let summary = client
                .query_opt(
                    "SELECT order_id, customer_id, status, currency, total_minor, captured_minor,
                            refunded_minor, line_count, stream_version, last_position, placed_at, updated_at
                       FROM orders.order_summaries WHERE order_id = $1",
                    &[&order_id],
                )
                .await?
                .map(|row| summary_from(&row))
                .transpose()?;
            // The latest events (they decide the order's state), oldest first.
            let rows = client
                .query(
                    "SELECT * FROM (
                        SELECT global_position, stream_version, event_type, schema_version, payload::text,
                               correlation_id, causation_id, command_id, actor, traceparent, recorded_at
                          FROM orders.events WHERE stream_id = $1
                         ORDER BY stream_version DESC LIMIT $2) AS latest
                      ORDER BY stream_version",
                    &[&order_id, &TIMELINE_LIMIT],
                )
                .await?;
            // A stream's versions run from 1 without gaps: the last one is the count.
            let total = match rows.last() {
                Some(row) => row.try_get(1)?,
                None => 0,
            };
            let mut events = Vec::with_capacity(rows.len());
            for row in rows {
                let payload: String = row.try_get(4)?;
                // Pretty-printed for people; the text of every string is unchanged, the
                // characters that reorder text written as JSON's escapes (the same string).
                let pretty = serde_json::from_str::<Value>(&payload)
                    .ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .unwrap_or(payload);
                let pretty = crate::text::escape_bidi(&pretty).into_owned();
                events.push(EventView {
                    position: row.try_get(0)?,
                    version: row.try_get(1)?,
                    event_type: row.try_get(2)?,
                    schema_version: row.try_get(3)?,
                    payload: pretty,
                    correlation_id: row.try_get(5)?,
                    causation_id: row.try_get(6)?,
                    command_id: row.try_get(7)?,
                    actor: row.try_get(8)?,
                    traceparent: row.try_get(9)?,
                    recorded_at: row.try_get(10)?,
                });
            }
            if summary.is_none() && events.is_empty() {
                return Ok(None);
            }
            Ok(Some(OrderView {
                summary,
                events,
                total,
            }))
        })
        .await
    }

    /// A customer's orders, newest first.
    /// One page of a customer's orders, newest first: at most `limit` of them, all placed
    /// before `before` (a previous page's last row: its `placed_at` and `order_id`), or the
    /// newest without it. A keyset page: it costs the same at any depth.
    pub async fn customer_orders(
        &self,
        customer_id: Uuid,
        before: Option<(SystemTime, Uuid)>,
        limit: i64,
    ) -> Result<Vec<Summary>, Error> {
        self.timed(async {
            let client = self.client().await?;
            let (at, id) = before.unzip();
            let rows = client
                .query(
                    "SELECT order_id, customer_id, status, currency, total_minor, captured_minor,
                            refunded_minor, line_count, stream_version, last_position, placed_at, updated_at
                       FROM orders.order_summaries
                      WHERE customer_id = $1
                        AND ($2::timestamptz IS NULL OR (placed_at, order_id) < ($2, $3::uuid))
                      ORDER BY placed_at DESC, order_id DESC LIMIT $4",
                    &[&customer_id, &at, &id, &limit],
                )
                .await?;
            rows.iter().map(summary_from).collect()
        })
        .await
    }
}

fn summary_from(row: &Row) -> Result<Summary, Error> {
    Ok(Summary {
        order_id: row.try_get(0)?,
        customer_id: row.try_get(1)?,
        status: row.try_get(2)?,
        currency: row.try_get(3)?,
        total_minor: row.try_get(4)?,
        captured_minor: row.try_get(5)?,
        refunded_minor: row.try_get(6)?,
        line_count: row.try_get(7)?,
        stream_version: row.try_get(8)?,
        last_position: row.try_get(9)?,
        placed_at: row.try_get(10)?,
        updated_at: row.try_get(11)?,
    })
}

/// A position in the gap-safe order of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowCursor {
    /// The writing transaction (xid8 as text).
    pub xid: String,
    /// The global position.
    pub position: i64,
}

/// An order waiting in a state.
#[derive(Debug, Clone)]
pub struct Stuck {
    /// The order.
    pub order_id: Uuid,
    /// Its customer.
    pub customer_id: Uuid,
    /// Seconds since its last change.
    pub seconds: f64,
    /// Its version.
    pub version: i64,
}

/// A read-model row.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The order.
    pub order_id: Uuid,
    /// Its customer.
    pub customer_id: Uuid,
    /// Its state.
    pub status: String,
    /// ISO 4217.
    pub currency: String,
    /// Minor units.
    pub total_minor: i64,
    /// Minor units.
    pub captured_minor: i64,
    /// Minor units.
    pub refunded_minor: i64,
    /// Lines.
    pub line_count: i32,
    /// The stream version the row reflects.
    pub stream_version: i64,
    /// The position of the last event applied.
    pub last_position: i64,
    /// Placed.
    pub placed_at: SystemTime,
    /// Last change.
    pub updated_at: SystemTime,
}

/// One event of an order.
#[derive(Debug, Clone)]
pub struct EventView {
    /// Global position.
    pub position: i64,
    /// Stream version.
    pub version: i64,
    /// Type.
    pub event_type: String,
    /// Schema version.
    pub schema_version: i16,
    /// The payload, pretty-printed JSON.
    pub payload: String,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Causation id.
    pub causation_id: Option<Uuid>,
    /// Command id.
    pub command_id: Option<Uuid>,
    /// Who (the token's name).
    pub actor: Option<String>,
    /// W3C traceparent.
    pub traceparent: Option<String>,
    /// When.
    pub recorded_at: SystemTime,
}

impl EventView {
    /// The trace id of the traceparent (`00-<32 hex>-<16 hex>-<2 hex>`), when well-formed.
    pub fn trace_id(&self) -> Option<&str> {
        let parent = self.traceparent.as_deref()?;
        let mut parts = parent.split('-');
        let (_version, trace) = (parts.next()?, parts.next()?);
        (trace.len() == 32
            && trace.bytes().all(|b| b.is_ascii_hexdigit())
            && trace.bytes().any(|b| b != b'0'))
        .then_some(trace)
    }
}

/// The order page's data.
#[derive(Debug, Clone)]
pub struct OrderView {
    /// The read-model row (absent until projected).
    pub summary: Option<Summary>,
    /// The events: the latest [`TIMELINE_LIMIT`], oldest first.
    pub events: Vec<EventView>,
    /// How many events the order has (more than `events` holds when the timeline is cut).
    pub total: i64,
}

/// The most events an order's page shows (the latest ones).
pub const TIMELINE_LIMIT: i64 = 2000;

#[cfg(test)]
mod tests {
    use super::*;

    /// A database that cannot be reached is reported with why (it said only "Error occurred
    /// while creating a new object: error connecting to server").
    #[tokio::test]
    async fn an_unreachable_database_is_reported_with_its_cause() {
        // A port nothing listens on: bind one, note it, let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free local port");
        let config =
            order_store::StoreConfig::new(format!("postgres://nobody@127.0.0.1:{port}/nothing"));
        let db = Db::new(&config).expect("a pool");
        let error = db
            .check_read_only()
            .await
            .expect_err("nothing listens there");
        let text = error.to_string();
        assert!(
            text.starts_with("database unavailable") && text.contains("refused"),
            "{text}"
        );
    }
}

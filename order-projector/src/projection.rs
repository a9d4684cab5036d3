//! Projections: read tables in the database, kept up to date one page of events at a time, each
//! page in one transaction with the projection's fenced checkpoint.
//!
//! A projection names its tables as DDL templates ([`Table`]); the projector creates them,
//! rebuilds them into shadow tables and swaps those in ([`crate::replay`]), so a projection
//! always addresses its tables through [`Tables`] rather than by a fixed name.

use std::fmt;
use std::future::Future;
use std::time::SystemTime;

use futures::future::BoxFuture;
use order_domain::es::{Aggregate, EventSchema};
use order_store::{Cursor, RecordedEvent};
use uuid::Uuid;

pub use order_store::deadpool_postgres::{Client, Transaction};

/// Which streams a subscriber follows, by category (the aggregate's
/// [`Aggregate::CATEGORY`], recorded with every event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Categories {
    /// Every event of the log, whatever aggregate wrote it.
    All,
    /// Only the events of streams of these categories.
    Only(Vec<String>),
}

impl Categories {
    /// The streams of one aggregate type.
    ///
    /// ```
    /// use order_projector::Categories;
    /// assert_eq!(Categories::of::<order_domain::Order>(), Categories::only(["order"]));
    /// ```
    pub fn of<A: Aggregate>() -> Self {
        Self::Only(vec![A::CATEGORY.to_owned()])
    }

    /// These categories and the one of `A`.
    pub fn and<A: Aggregate>(self) -> Self {
        match self {
            Self::All => Self::All,
            Self::Only(mut categories) => {
                if !categories.iter().any(|c| c == A::CATEGORY) {
                    categories.push(A::CATEGORY.to_owned());
                }
                Self::Only(categories)
            }
        }
    }

    /// The streams of the named categories.
    pub fn only<I, S>(categories: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Only(categories.into_iter().map(Into::into).collect())
    }

    /// Whether events of `category` belong to these.
    pub fn contains(&self, category: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(categories) => categories.iter().any(|c| c == category),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            Self::All => Ok(()),
            Self::Only(categories) if categories.is_empty() => {
                Err("follows no category (use Categories::All for every event)".to_owned())
            }
            Self::Only(categories) => categories.iter().try_for_each(|category| {
                order_store::check_category(category).map_err(|_| {
                    format!(
                        "category {category:?} must be lowercase letters, digits or '_', starting with a letter"
                    )
                })
            }),
        }
    }
}

impl fmt::Display for Categories {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Only(categories) => f.write_str(&categories.join(",")),
        }
    }
}

/// How a subscriber turns stored events into its own type. Every [`EventSchema`] type (an
/// aggregate's event enum) decodes itself, upcasting older schema versions; implement it for
/// an enum of your own to follow several aggregates with one projection.
pub trait Decode: Sized + Send + Sync + 'static {
    /// The event, or why it cannot be decoded (the subscription then stops at it: it is never
    /// skipped).
    fn decode(event: &RecordedEvent) -> Result<Self, String>;
}

impl<E: EventSchema + Send + Sync + 'static> Decode for E {
    fn decode(event: &RecordedEvent) -> Result<Self, String> {
        event
            .decode::<E>()
            .map(|envelope| envelope.event)
            .map_err(|e| e.to_string())
    }
}

/// One event of a page: as stored, and decoded.
#[derive(Debug, Clone)]
pub struct Envelope<E> {
    /// The event as the log holds it: stream, version, position, metadata, payload.
    pub recorded: RecordedEvent,
    /// The decoded event.
    pub event: E,
}

impl<E> Envelope<E> {
    /// The stream (aggregate instance) the event belongs to.
    pub fn stream_id(&self) -> Uuid {
        self.recorded.stream_id
    }

    /// The event's 1-based version within its stream.
    pub fn stream_version(&self) -> u64 {
        self.recorded.stream_version
    }

    /// The event's position in the global log.
    pub fn position(&self) -> u64 {
        self.recorded.global_position
    }

    /// Where the event sits in the gap-safe order of the log.
    pub fn cursor(&self) -> Cursor {
        self.recorded.cursor()
    }

    /// A deduplication id for side effects: the event's id, the same on every delivery,
    /// replay or republish of the event.
    pub fn dedup_id(&self) -> Uuid {
        self.recorded.event_id
    }

    /// When the event was recorded.
    pub fn recorded_at(&self) -> SystemTime {
        self.recorded.recorded_at
    }
}

/// A page of events in the log's gap-safe order: within one stream, in version order.
#[derive(Debug, Clone)]
pub struct Page<E> {
    events: Vec<Envelope<E>>,
}

impl<E> Page<E> {
    /// A page of already decoded events (for testing a projection's `apply` on its own).
    pub fn new(events: Vec<Envelope<E>>) -> Self {
        Self { events }
    }

    /// Decode stored events; fails on the first that does not decode.
    pub fn decode(recorded: Vec<RecordedEvent>) -> Result<Self, ApplyError>
    where
        E: Decode,
    {
        let events = recorded
            .into_iter()
            .map(|recorded| match E::decode(&recorded) {
                Ok(event) => Ok(Envelope { recorded, event }),
                Err(reason) => Err(ApplyError::Invalid {
                    position: recorded.global_position,
                    reason,
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { events })
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the page holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Envelope<E>> {
        self.events.iter()
    }

    /// The events in order, as a slice.
    pub fn events(&self) -> &[Envelope<E>] {
        &self.events
    }

    /// The distinct streams of the page, sorted.
    pub fn stream_ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self.events.iter().map(Envelope::stream_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Keep only the events at these indexes (in page order); others are dropped.
    pub(crate) fn retain_indexes(&mut self, keep: &[usize]) {
        let mut index = 0;
        self.events.retain(|_| {
            let kept = keep.contains(&index);
            index += 1;
            kept
        });
    }
}

impl<'a, E> IntoIterator for &'a Page<E> {
    type Item = &'a Envelope<E>;
    type IntoIter = std::slice::Iter<'a, Envelope<E>>;

    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

/// Why a page could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// This event cannot be projected (it does not decode, or breaks what the projection
    /// relies on): the subscription stops here, visibly, and retries slowly; it never skips it.
    #[error("event at position {position} cannot be projected: {reason}")]
    Invalid {
        /// The event's global position.
        position: u64,
        /// Why, in words.
        reason: String,
    },
    /// The database failed or refused a statement: the page is rolled back. A connection
    /// failure, a timeout, a serialization failure or a deadlock is retried with backoff; any
    /// other SQL error (a constraint violation, a missing grant, a typo) stops the subscription
    /// like [`ApplyError::Invalid`], retried every 30 s.
    #[error(transparent)]
    Store(#[from] order_store::Error),
}

impl ApplyError {
    /// An event that cannot be projected, with the reason.
    pub fn invalid<E>(event: &Envelope<E>, reason: impl fmt::Display) -> Self {
        Self::Invalid {
            position: event.position(),
            reason: reason.to_string(),
        }
    }
}

impl From<order_store::tokio_postgres::Error> for ApplyError {
    fn from(error: order_store::tokio_postgres::Error) -> Self {
        Self::Store(error.into())
    }
}

/// The schema projection tables live in.
pub const SCHEMA: &str = "orders";
/// Longest name of a projection's table (so that `_shadow` and `_retired` and index suffixes
/// still fit PostgreSQL's 63 characters).
pub const MAX_TABLE_NAME_LEN: usize = 40;

/// A table a projection owns: its name and DDL templates in which `{table}` stands for the
/// table's schema-qualified name and `{name}` for its bare name (for naming indexes). The
/// projector creates it (live, or as a shadow during a rebuild), indexes it, and grants
/// `SELECT` on it to its readers.
///
/// ```
/// use order_projector::Table;
/// let table = Table::new(
///     "sales_per_sku_day",
///     "CREATE TABLE {table} (day date NOT NULL, sku text NOT NULL, units bigint NOT NULL,
///      PRIMARY KEY (day, sku))",
/// )
/// .index("CREATE INDEX {name}_by_sku ON {table} (sku, day)")
/// .readable_by("orders_app");
/// assert_eq!(table.name(), "sales_per_sku_day");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    name: String,
    create: String,
    indexes: Vec<String>,
    readers: Vec<String>,
}

/// The roles that may read every projection table.
pub const DEFAULT_READERS: &[&str] = &["orders_readonly"];
const RESERVED_TABLES: &[&str] = &[
    "events",
    "commands",
    "subscriptions",
    "projections",
    "imports",
    "refinery_schema_history",
];

impl Table {
    /// A table `name` (in schema `orders`) created by `create` (`CREATE TABLE {table} (...)`).
    /// Readable by `orders_readonly`; add readers with [`Table::readable_by`].
    pub fn new(name: &str, create: &str) -> Self {
        Self {
            name: name.to_owned(),
            create: create.to_owned(),
            indexes: Vec::new(),
            readers: DEFAULT_READERS.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    /// A secondary index (`CREATE INDEX {name}_by_x ON {table} (...)`), built after a rebuild
    /// has loaded the table (faster than maintaining it during the load). Its name must start
    /// with `{name}` (or be left out), and it must not say `IF NOT EXISTS`: index names are the
    /// schema's, and a fixed one would clash with the shadow table's in a rebuild. The same
    /// holds for a named primary key, unique or exclusion constraint in the table's DDL.
    pub fn index(mut self, create: &str) -> Self {
        self.indexes.push(create.to_owned());
        self
    }

    /// Let `role` read the table (`GRANT SELECT`), e.g. `orders_app` for order-grpc.
    pub fn readable_by(mut self, role: &str) -> Self {
        if !self.readers.iter().any(|r| r == role) {
            self.readers.push(role.to_owned());
        }
        self
    }

    /// The table's name (without schema).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The roles granted `SELECT`.
    pub fn readers(&self) -> &[String] {
        &self.readers
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if !is_identifier(name, MAX_TABLE_NAME_LEN) {
            return Err(format!(
                "table name {name:?} must be 1-{MAX_TABLE_NAME_LEN} lowercase letters, digits or '_', starting with a letter"
            ));
        }
        if name.ends_with("_shadow") || name.ends_with("_retired") {
            return Err(format!(
                "table name {name:?} ends with _shadow or _retired, which rebuilds use"
            ));
        }
        if RESERVED_TABLES.contains(&name.as_str()) {
            return Err(format!("table name {name:?} belongs to the event store"));
        }
        if !self.create.contains("{table}") {
            return Err(format!(
                "the DDL of table {name} must create {{table}} (the projector chooses the real name)"
            ));
        }
        if let Some(index) = self.indexes.iter().find(|i| !i.contains("{table}")) {
            return Err(format!(
                "index DDL {index:?} of table {name} must name {{table}}"
            ));
        }
        // Index and constraint names are the schema's, not the table's: a fixed one would be
        // taken already when a rebuild builds the shadow table's (failing the rebuild, or,
        // with IF NOT EXISTS, leaving the swapped-in table without it). Names that start with
        // {name} follow the table through rebuilds and swaps; unnamed ones do too.
        for index in &self.indexes {
            let tokens = ddl_tokens(index);
            let Some(at) = tokens.iter().position(|t| t.eq_ignore_ascii_case("index")) else {
                return Err(format!(
                    "index DDL {index:?} of table {name} must be a CREATE INDEX"
                ));
            };
            let mut rest = tokens[at + 1..]
                .iter()
                .skip_while(|t| t.eq_ignore_ascii_case("concurrently"));
            match rest.next() {
                Some(t) if t.eq_ignore_ascii_case("if") => {
                    return Err(format!(
                        "index DDL {index:?} of table {name} must not say IF NOT EXISTS: a rebuild \
                         would skip an index of that name it cannot build"
                    ));
                }
                Some(t) if t.eq_ignore_ascii_case("on") => {}
                Some(t) if t.trim_matches('"').starts_with("{name}") => {}
                _ => {
                    return Err(format!(
                        "index DDL {index:?} of table {name} must name its index {{name}}_... \
                         (or leave it unnamed): a fixed name clashes with the shadow table's \
                         index in a rebuild"
                    ));
                }
            }
        }
        // A named primary key, unique or exclusion constraint names its index too (a check or
        // a foreign key is named within its table only).
        let tokens = ddl_tokens(&self.create);
        if let Some(constraint) = tokens
            .windows(3)
            .find(|w| {
                w[0].eq_ignore_ascii_case("constraint")
                    && !w[1].trim_matches('"').starts_with("{name}")
                    && ["primary", "unique", "exclude"]
                        .iter()
                        .any(|kind| w[2].eq_ignore_ascii_case(kind))
            })
            .map(|w| w[1])
        {
            return Err(format!(
                "constraint {constraint} of table {name} must be named {{name}}_... (or left \
                 unnamed): its index's name would clash with the shadow table's in a rebuild"
            ));
        }
        if let Some(role) = self.readers.iter().find(|r| !is_identifier(r, 63)) {
            return Err(format!(
                "reader role {role:?} of table {name} is not a role name"
            ));
        }
        Ok(())
    }

    /// The DDL creating the table as `physical` (bare name, in [`SCHEMA`]).
    pub(crate) fn create_sql(&self, physical: &str) -> String {
        fill(&self.create, physical)
    }

    pub(crate) fn index_sql(&self, physical: &str) -> Vec<String> {
        self.indexes.iter().map(|i| fill(i, physical)).collect()
    }
}

/// The words of a DDL template: split at white space, parentheses and commas.
fn ddl_tokens(ddl: &str) -> Vec<&str> {
    ddl.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ','))
        .filter(|t| !t.is_empty())
        .collect()
}

fn fill(template: &str, physical: &str) -> String {
    template
        .replace("{table}", &format!("{SCHEMA}.{physical}"))
        .replace("{name}", physical)
}

/// `^[a-z][a-z0-9_]*$` of at most `max` bytes.
pub(crate) fn is_identifier(name: &str, max: usize) -> bool {
    let bytes = name.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.len() <= max
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// Where a projection's tables are right now: the live tables, or a rebuild's shadow tables.
/// Index it with a table's name to get the schema-qualified name to use in SQL.
///
/// ```
/// use order_projector::{Table, Tables};
/// let tables = Tables::live(&[Table::new("sales", "CREATE TABLE {table} (n int)")]);
/// assert_eq!(&tables["sales"], "orders.sales");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    names: Vec<(String, String)>,
}

impl Tables {
    /// The live tables.
    pub fn live(tables: &[Table]) -> Self {
        Self::with_suffix(tables, "")
    }

    /// A rebuild's shadow tables.
    pub fn shadow(tables: &[Table]) -> Self {
        Self::with_suffix(tables, "_shadow")
    }

    fn with_suffix(tables: &[Table], suffix: &str) -> Self {
        Self {
            names: tables
                .iter()
                .map(|t| (t.name.clone(), format!("{SCHEMA}.{}{suffix}", t.name)))
                .collect(),
        }
    }

    /// The schema-qualified name of the table declared as `name`, if it is declared.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|(declared, _)| declared == name)
            .map(|(_, physical)| physical.as_str())
    }
}

impl std::ops::Index<&str> for Tables {
    type Output = str;

    /// # Panics
    ///
    /// When the projection did not declare a table of that name in
    /// [`Projection::tables`]: a programming error its first test finds.
    fn index(&self, name: &str) -> &str {
        match self.get(name) {
            Some(physical) => physical,
            None => panic!("table {name:?} is not declared in the projection's tables()"),
        }
    }
}

/// A transactional projection: read tables kept in the database.
///
/// The projector reads the log after the projection's checkpoint (only the [`categories`]
/// it follows), decodes a page of events, and calls [`apply`] inside a transaction that also
/// moves the checkpoint, fenced by the projection's lease: the page is applied exactly when
/// the checkpoint moves past it. Crashes and lease changes can still make a page be applied
/// again after a rollback elsewhere, and a rebuild applies the whole log again, so `apply`
/// must be idempotent: [`crate::StreamVersions`] does that for any projection, a
/// per-row stream version does it for tables with one row per stream.
///
/// Bumping [`version`] rebuilds the projection at the next start (shadow tables, atomic
/// swap), so that its tables never mix two shapes.
///
/// [`categories`]: Projection::categories
/// [`apply`]: Projection::apply
/// [`version`]: Projection::version
///
/// ```
/// use order_domain::{EventSchema, Order, OrderEvent};
/// use order_projector::{ApplyError, Categories, Page, Projection, Table, Tables, Transaction};
///
/// /// Each order's latest event type.
/// struct LatestEvent;
///
/// impl Projection for LatestEvent {
///     type Event = OrderEvent;
///     fn name(&self) -> &str { "latest_event" }
///     fn version(&self) -> u32 { 1 }
///     fn categories(&self) -> Categories { Categories::of::<Order>() }
///     fn tables(&self) -> Vec<Table> {
///         vec![Table::new(
///             "latest_event",
///             "CREATE TABLE {table} (order_id uuid PRIMARY KEY, event_type text NOT NULL,
///              stream_version bigint NOT NULL)",
///         )]
///     }
///     async fn apply(
///         &self,
///         page: &Page<OrderEvent>,
///         tx: &Transaction<'_>,
///         tables: &Tables,
///     ) -> Result<(), ApplyError> {
///         let upsert = tx
///             .prepare_cached(&format!(
///                 "INSERT INTO {t} VALUES ($1, $2, $3) ON CONFLICT (order_id) DO UPDATE
///                  SET event_type = EXCLUDED.event_type, stream_version = EXCLUDED.stream_version
///                  WHERE {t}.stream_version < EXCLUDED.stream_version",
///                 t = &tables["latest_event"]
///             ))
///             .await?;
///         for e in page {
///             // One row per stream, guarded by its version: applying an event again
///             // changes nothing.
///             let version = e.stream_version() as i64;
///             tx.execute(&upsert, &[&e.stream_id(), &e.event.event_type(), &version]).await?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Projection: Send + Sync + 'static {
    /// What the projection decodes events into.
    type Event: Decode;

    /// The projection's name: its checkpoint, lease, metrics label and `status` line.
    /// 1 to 63 lowercase letters, digits and '_', starting with a letter.
    fn name(&self) -> &str;

    /// The version of the projection's code and tables (from 1). Bump it when `apply` or the
    /// tables change meaning: the next start rebuilds the projection.
    fn version(&self) -> u32;

    /// Which streams it follows.
    fn categories(&self) -> Categories;

    /// The tables it owns (at least one).
    fn tables(&self) -> Vec<Table>;

    /// Events per page (and per transaction) while following the log. A page applied while
    /// following must commit within twice the store's call time (`ORDER_DB_STATEMENT_TIMEOUT_MS`
    /// plus 2 s, doubled: 14 s by default), each statement within the statement timeout; a
    /// page that takes longer is rolled back and retried as a transient failure, so keep
    /// pages small enough for the slowest of them (rebuilds have no such limit).
    fn page_size(&self) -> u32 {
        1000
    }

    /// Apply a page of events inside `tx` (which also moves the checkpoint) to the tables
    /// named by `tables`. Must be idempotent (see the trait's documentation).
    fn apply(
        &self,
        page: &Page<Self::Event>,
        tx: &Transaction<'_>,
        tables: &Tables,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;

    /// A faster path for rebuilds, if the projection has one: fold many pages in memory and
    /// write each row once ([`BulkFold`]). Without it, a rebuild applies page after page with
    /// [`Projection::apply`].
    fn bulk(&self) -> Option<Box<dyn BulkFold<Self::Event>>> {
        None
    }
}

/// A rebuild's fast path: fold pages in memory, write out now and then, finish derived tables
/// at the end. After [`BulkFold::finish`], the shadow tables must be exactly what
/// [`Projection::apply`] would have built from the same events: the rebuild then catches up
/// to the head of the log with `apply`.
pub trait BulkFold<E>: Send {
    /// Fold a page into memory (may read back rows it wrote out earlier, through `client`).
    fn fold<'a>(
        &'a mut self,
        page: &'a Page<E>,
        client: &'a Client,
        tables: &'a Tables,
    ) -> BoxFuture<'a, Result<(), ApplyError>>;

    /// Whether enough is held in memory to write it out now.
    fn should_flush(&self) -> bool;

    /// Write everything folded so far into the tables and forget it (bounds memory).
    fn flush<'a>(
        &'a mut self,
        tx: &'a Transaction<'_>,
        tables: &'a Tables,
    ) -> BoxFuture<'a, Result<(), ApplyError>>;

    /// After the last flush: build what derives from the written rows (totals, say).
    fn finish<'a>(
        &'a mut self,
        tx: &'a Transaction<'_>,
        tables: &'a Tables,
    ) -> BoxFuture<'a, Result<(), ApplyError>>;
}

#[cfg(test)]
mod tests {
    use super::Table;

    fn table(create: &str, index: &str) -> Table {
        Table::new("sales", create).index(index)
    }

    #[test]
    fn index_and_constraint_names_must_follow_the_table() {
        let create = "CREATE TABLE {table} (sku text, day date, CONSTRAINT {name}_pk PRIMARY KEY (sku, day))";
        for good in [
            "CREATE INDEX {name}_by_day ON {table} (day)",
            "CREATE UNIQUE INDEX CONCURRENTLY \"{name}_x\" ON {table} (day)",
            "CREATE INDEX ON {table} (day)",
            "create index {name}_lower on {table}(day)",
        ] {
            assert_eq!(table(create, good).validate(), Ok(()), "{good}");
        }
        for bad in [
            "CREATE INDEX sales_by_day ON {table} (day)",
            "CREATE INDEX IF NOT EXISTS {name}_by_day ON {table} (day)",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name}_by_day ON {table} (day)",
            "ALTER TABLE {table} ADD CHECK (day > '2020-01-01')",
        ] {
            let refused = table(create, bad).validate();
            assert!(refused.is_err(), "{bad}: {refused:?}");
        }
        let fixed = "CREATE TABLE {table} (sku text, CONSTRAINT sales_pk PRIMARY KEY (sku))";
        let refused = table(fixed, "CREATE INDEX ON {table} (sku)").validate();
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("sales_pk")),
            "{refused:?}"
        );
        let unique = "CREATE TABLE {table} (sku text, CONSTRAINT one_sku UNIQUE (sku))";
        assert!(
            table(unique, "CREATE INDEX ON {table} (sku)")
                .validate()
                .is_err()
        );
        // A check or a foreign key is named within its table: any name.
        let checked = "CREATE TABLE {table} (n int, CONSTRAINT positive CHECK (n > 0))";
        assert_eq!(
            table(checked, "CREATE INDEX ON {table} (n)").validate(),
            Ok(())
        );
        let unnamed = "CREATE TABLE {table} (sku text PRIMARY KEY, n int CHECK (n > 0))";
        assert_eq!(
            table(unnamed, "CREATE INDEX {name}_n ON {table} (n)").validate(),
            Ok(())
        );
    }
}

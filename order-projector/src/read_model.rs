//! The read model: `order_summaries` and `customer_totals`, maintained from the log: the first
//! projection built on the public API ([`Projection`]), with no private path.
//!
//! A page of events is applied in one transaction together with the checkpoint. The current rows of
//! the page's orders are read, the events are folded in memory (skipping any at or below a row's
//! stream version: applying an event twice changes nothing), and the changed rows are written, in
//! order of their ids, with one multi-row upsert that is itself guarded by the stream version. The
//! rows are not locked when read: only the holder of the lease commits (the checkpoint write in the
//! same transaction is fenced by the lease token and serialised on the subscription's row), so an
//! instance that lost its lease rolls back whatever it read; locking them cost a sixth of a page's
//! time. Customer totals change by exactly the difference between the old and new contribution of
//! each changed row, so they stay equal to the sum over the summaries however often events are
//! replayed.
//!
//! Rebuilds take the fast path ([`Projection::bulk`]): orders are folded in memory and each
//! row is written once; when more than `batch_orders` are held, they are written out and
//! forgotten (an event of an order written out earlier fetches its row back), so memory stays
//! bounded; the totals are computed from the summaries at the end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use futures::future::BoxFuture;
use order_domain::order::{OrderEvent, OrderSummary, Status};
use order_domain::values::CustomerId;
use order_domain::{Currency, Money, Order};
use order_store::RecordedEvent;
use order_store::deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::projection::{
    ApplyError, BulkFold, Categories, Client, Envelope, Page, Projection, Table, Tables,
    Transaction,
};

/// The read model's subscription (and projection) name.
pub const READ_MODEL: &str = "read_model";
const SUMMARIES: &str = "order_summaries";
const TOTALS: &str = "customer_totals";

/// One order's row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SummaryRow {
    order_id: Uuid,
    summary: OrderSummary,
    stream_version: u64,
    last_position: u64,
    placed_at: SystemTime,
    updated_at: SystemTime,
}

impl SummaryRow {
    fn contribution(&self) -> ((Uuid, Currency), (i64, i64)) {
        (
            (
                self.summary.customer_id.as_uuid(),
                self.summary.total.currency(),
            ),
            self.summary.contribution(),
        )
    }

    /// Apply one event in order; events at or below the row's version were applied already.
    fn fold(
        row: Option<Self>,
        order_id: Uuid,
        event: &RecordedEvent,
        decoded: &OrderEvent,
    ) -> Result<Option<Self>, ApplyError> {
        if let Some(row) = &row
            && event.stream_version <= row.stream_version
        {
            return Ok(Some(row.clone()));
        }
        let expected = row.as_ref().map_or(1, |r| r.stream_version + 1);
        if event.stream_version != expected {
            return Err(ApplyError::Invalid {
                position: event.global_position,
                reason: format!(
                    "order {order_id} jumps from version {} to {}",
                    expected - 1,
                    event.stream_version
                ),
            });
        }
        let placed_at = row.as_ref().map_or(event.recorded_at, |r| r.placed_at);
        let summary = OrderSummary::fold(row.map(|r| r.summary), decoded).map_err(|e| {
            ApplyError::Invalid {
                position: event.global_position,
                reason: e.to_string(),
            }
        })?;
        Ok(summary.map(|summary| SummaryRow {
            order_id,
            summary,
            stream_version: event.stream_version,
            last_position: event.global_position,
            placed_at,
            updated_at: event.recorded_at,
        }))
    }
}

/// The columns of `order_summaries`, in the order [`row_from_sql`] reads them.
const SUMMARY_COLUMNS: &str = "order_id, customer_id, status, currency, total_minor, \
    captured_minor, refunded_minor, line_count, stream_version, last_position, placed_at, updated_at";

/// The read model: one row per order (`order_summaries`, read by order-grpc's GetOrder and
/// ListOrders) and per customer and currency (`customer_totals`).
#[derive(Debug, Clone)]
pub struct ReadModel {
    page: u32,
    batch_orders: usize,
}

impl Default for ReadModel {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadModel {
    /// Pages of up to 5,000 events; rebuilds hold up to 250,000 orders in memory.
    ///
    /// Following live traffic, a page holds what arrived since the last one (a few events);
    /// catching up, a full page. The larger the page, the more of an order's events fold into
    /// one row write: 5,000 caught up 1.4-1.6 times as fast as 1,000 (docs/benchmarks.md).
    pub fn new() -> Self {
        Self {
            page: 5000,
            batch_orders: 250_000,
        }
    }

    /// Events per transaction while following the log.
    pub fn page(mut self, page: u32) -> Self {
        self.page = page;
        self
    }

    /// Orders a rebuild folds in memory before writing them out (bounds its memory).
    pub fn batch_orders(mut self, orders: usize) -> Self {
        self.batch_orders = orders.max(1);
        self
    }
}

impl Projection for ReadModel {
    type Event = OrderEvent;

    fn name(&self) -> &str {
        READ_MODEL
    }

    fn version(&self) -> u32 {
        1
    }

    fn categories(&self) -> Categories {
        Categories::of::<Order>()
    }

    /// The same tables as `migrations/V2__read_models.sql` (which created them at version 1).
    fn tables(&self) -> Vec<Table> {
        vec![
            Table::new(
                SUMMARIES,
                "CREATE TABLE {table} (
                    order_id        uuid        PRIMARY KEY,
                    customer_id     uuid        NOT NULL,
                    status          text        NOT NULL,
                    currency        text        NOT NULL,
                    total_minor     bigint      NOT NULL,
                    captured_minor  bigint      NOT NULL,
                    refunded_minor  bigint      NOT NULL,
                    line_count      integer     NOT NULL,
                    stream_version  bigint      NOT NULL,
                    last_position   bigint      NOT NULL,
                    placed_at       timestamptz NOT NULL,
                    updated_at      timestamptz NOT NULL
                )",
            )
            .index("CREATE INDEX {name}_placed ON {table} (placed_at DESC, order_id DESC)")
            .index(
                "CREATE INDEX {name}_customer ON {table} (customer_id, placed_at DESC, order_id DESC)",
            )
            .index("CREATE INDEX {name}_status ON {table} (status, placed_at DESC, order_id DESC)")
            .readable_by("orders_app"),
            Table::new(
                TOTALS,
                "CREATE TABLE {table} (
                    customer_id          uuid   NOT NULL,
                    currency             text   NOT NULL,
                    order_count          bigint NOT NULL,
                    lifetime_total_minor bigint NOT NULL,
                    PRIMARY KEY (customer_id, currency)
                )",
            )
            .readable_by("orders_app"),
        ]
    }

    fn page_size(&self) -> u32 {
        self.page
    }

    async fn apply(
        &self,
        page: &Page<OrderEvent>,
        tx: &Transaction<'_>,
        tables: &Tables,
    ) -> Result<(), ApplyError> {
        apply(tx, page, &tables[SUMMARIES], &tables[TOTALS])
            .await
            .map(drop)
    }

    fn bulk(&self) -> Option<Box<dyn BulkFold<OrderEvent>>> {
        Some(Box::new(Folder {
            rows: HashMap::new(),
            dirty: HashSet::new(),
            written: 0,
            batch_orders: self.batch_orders,
        }))
    }
}

/// Build a row from the database's columns (in [`SUMMARY_COLUMNS`] order).
fn row_from_sql(row: &order_store::tokio_postgres::Row) -> Result<SummaryRow, ApplyError> {
    let corrupt = |what: &str| ApplyError::Invalid {
        position: 0,
        reason: format!("order_summaries row has an invalid {what}"),
    };
    let currency = Currency::parse(row.try_get::<_, &str>(3)?).map_err(|_| corrupt("currency"))?;
    let money = |index: usize| -> Result<Money, ApplyError> {
        Money::new(currency, row.try_get::<_, i64>(index)?).map_err(|_| corrupt("amount"))
    };
    Ok(SummaryRow {
        order_id: row.try_get(0)?,
        summary: OrderSummary {
            customer_id: CustomerId::from_uuid(row.try_get(1)?).map_err(|_| corrupt("customer"))?,
            status: Status::parse(row.try_get::<_, &str>(2)?).ok_or_else(|| corrupt("status"))?,
            total: money(4)?,
            captured: money(5)?,
            refunded: money(6)?,
            line_count: row.try_get::<_, i32>(7)? as u32,
        },
        stream_version: row.try_get::<_, i64>(8)? as u64,
        last_position: row.try_get::<_, i64>(9)? as u64,
        placed_at: row.try_get(10)?,
        updated_at: row.try_get(11)?,
    })
}

/// Apply a page of events (in gap-safe order) inside `tx` to the tables `summaries` and
/// `totals`. Returns how many order rows changed.
async fn apply<C: GenericClient>(
    tx: &C,
    page: &Page<OrderEvent>,
    summaries: &str,
    totals: &str,
) -> Result<usize, ApplyError> {
    let ids = page.stream_ids();
    let select = tx
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM {summaries} WHERE order_id = ANY($1)"
        ))
        .await?;
    let mut before: HashMap<Uuid, SummaryRow> = HashMap::with_capacity(ids.len());
    for row in tx.query(&select, &[&ids]).await? {
        let row = row_from_sql(&row)?;
        before.insert(row.order_id, row);
    }

    let mut after: HashMap<Uuid, Option<SummaryRow>> = HashMap::with_capacity(ids.len());
    for Envelope { recorded, event } in page {
        let current = match after.remove(&recorded.stream_id) {
            Some(current) => current,
            None => before.get(&recorded.stream_id).cloned(),
        };
        let next = SummaryRow::fold(current, recorded.stream_id, recorded, event)?;
        after.insert(recorded.stream_id, next);
    }

    // In order of ids: two instances writing at once (one of them about to find its lease
    // gone) take the rows' locks in the same order, and do not deadlock.
    let mut changed: Vec<&SummaryRow> = after
        .values()
        .flatten()
        .filter(|row| before.get(&row.order_id) != Some(row))
        .collect();
    changed.sort_unstable_by_key(|row| row.order_id);
    upsert(tx, summaries, &changed).await?;

    // Totals move by new minus old contribution of each changed row.
    let mut deltas: BTreeMap<(Uuid, Currency), (i64, i64)> = BTreeMap::new();
    for row in &changed {
        let (key, (count, money)) = row.contribution();
        let entry = deltas.entry(key).or_default();
        entry.0 += count;
        entry.1 += money;
        if let Some(old) = before.get(&row.order_id) {
            let (key, (count, money)) = old.contribution();
            let entry = deltas.entry(key).or_default();
            entry.0 -= count;
            entry.1 -= money;
        }
    }
    deltas.retain(|_, delta| *delta != (0, 0));
    add_to_totals(tx, totals, &deltas).await?;
    Ok(changed.len())
}

const UNNEST_SUMMARIES: &str = "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], \
    $4::text[], $5::int8[], $6::int8[], $7::int8[], $8::int4[], $9::int8[], $10::int8[], \
    $11::timestamptz[], $12::timestamptz[])";

/// Write rows with one statement; a row only replaces an older version of itself. Without
/// `upsert`, a plain insert (into a table known to hold none of the rows).
async fn write_rows<C: GenericClient>(
    client: &C,
    table: &str,
    rows: &[&SummaryRow],
    upsert: bool,
) -> Result<(), ApplyError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = if upsert {
        format!(
            "INSERT INTO {table} ({SUMMARY_COLUMNS}) {UNNEST_SUMMARIES}
             ON CONFLICT (order_id) DO UPDATE SET
                 customer_id = EXCLUDED.customer_id, status = EXCLUDED.status,
                 currency = EXCLUDED.currency, total_minor = EXCLUDED.total_minor,
                 captured_minor = EXCLUDED.captured_minor,
                 refunded_minor = EXCLUDED.refunded_minor, line_count = EXCLUDED.line_count,
                 stream_version = EXCLUDED.stream_version,
                 last_position = EXCLUDED.last_position, placed_at = EXCLUDED.placed_at,
                 updated_at = EXCLUDED.updated_at
             WHERE {table}.stream_version < EXCLUDED.stream_version"
        )
    } else {
        format!("INSERT INTO {table} ({SUMMARY_COLUMNS}) {UNNEST_SUMMARIES}")
    };
    let statement = client.prepare_cached(&sql).await?;
    let c = Columns::of(rows);
    client
        .execute(
            &statement,
            &[
                &c.order_id,
                &c.customer_id,
                &c.status,
                &c.currency,
                &c.total,
                &c.captured,
                &c.refunded,
                &c.lines,
                &c.version,
                &c.position,
                &c.placed_at,
                &c.updated_at,
            ],
        )
        .await?;
    Ok(())
}

async fn upsert<C: GenericClient>(
    client: &C,
    table: &str,
    rows: &[&SummaryRow],
) -> Result<(), ApplyError> {
    write_rows(client, table, rows, true).await
}

async fn add_to_totals<C: GenericClient>(
    client: &C,
    table: &str,
    deltas: &BTreeMap<(Uuid, Currency), (i64, i64)>,
) -> Result<(), ApplyError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let statement = client
        .prepare_cached(&format!(
            "INSERT INTO {table} (customer_id, currency, order_count, lifetime_total_minor)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int8[])
             ON CONFLICT (customer_id, currency) DO UPDATE SET
                 order_count = {table}.order_count + EXCLUDED.order_count,
                 lifetime_total_minor = {table}.lifetime_total_minor + EXCLUDED.lifetime_total_minor"
        ))
        .await?;
    let customers: Vec<Uuid> = deltas.keys().map(|(c, _)| *c).collect();
    let currencies: Vec<&str> = deltas.keys().map(|(_, c)| c.code()).collect();
    let counts: Vec<i64> = deltas.values().map(|d| d.0).collect();
    let money: Vec<i64> = deltas.values().map(|d| d.1).collect();
    client
        .execute(&statement, &[&customers, &currencies, &counts, &money])
        .await?;
    Ok(())
}

/// The rebuild's fast path: orders folded in memory, written out when there are too many.
struct Folder {
    rows: HashMap<Uuid, SummaryRow>,
    dirty: HashSet<Uuid>,
    /// Rows written out so far (0: the table is still empty, a plain insert will do).
    written: u64,
    batch_orders: usize,
}

impl BulkFold<OrderEvent> for Folder {
    fn fold<'a>(
        &'a mut self,
        page: &'a Page<OrderEvent>,
        client: &'a Client,
        tables: &'a Tables,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            // Rows of orders written out earlier are fetched back first.
            let missing: Vec<Uuid> = page
                .iter()
                .filter(|e| {
                    !matches!(e.event, OrderEvent::OrderPlaced(_))
                        && !self.rows.contains_key(&e.stream_id())
                })
                .map(Envelope::stream_id)
                .collect();
            if !missing.is_empty() && self.written > 0 {
                let statement = client
                    .prepare_cached(&format!(
                        "SELECT {SUMMARY_COLUMNS} FROM {} WHERE order_id = ANY($1)",
                        &tables[SUMMARIES]
                    ))
                    .await?;
                for row in client.query(&statement, &[&missing]).await? {
                    let row = row_from_sql(&row)?;
                    self.rows.insert(row.order_id, row);
                }
            }
            for Envelope { recorded, event } in page {
                let current = self.rows.remove(&recorded.stream_id);
                match SummaryRow::fold(current, recorded.stream_id, recorded, event)? {
                    Some(row) => {
                        self.dirty.insert(row.order_id);
                        self.rows.insert(row.order_id, row);
                    }
                    None => {
                        self.rows.remove(&recorded.stream_id);
                    }
                }
            }
            Ok(())
        })
    }

    fn should_flush(&self) -> bool {
        self.rows.len() > self.batch_orders
    }

    fn flush<'a>(
        &'a mut self,
        tx: &'a Transaction<'_>,
        tables: &'a Tables,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            let rows: Vec<&SummaryRow> = self
                .dirty
                .iter()
                .filter_map(|id| self.rows.get(id))
                .collect();
            for chunk in rows.chunks(5_000) {
                write_rows(tx, &tables[SUMMARIES], chunk, self.written > 0).await?;
            }
            self.written += rows.len() as u64;
            self.rows.clear();
            self.dirty.clear();
            Ok(())
        })
    }

    fn finish<'a>(
        &'a mut self,
        tx: &'a Transaction<'_>,
        tables: &'a Tables,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            tx.batch_execute(&format!(
                "INSERT INTO {totals} (customer_id, currency, order_count, lifetime_total_minor)
                 SELECT customer_id, currency, count(*), sum(captured_minor - refunded_minor)
                 FROM {summaries} GROUP BY customer_id, currency",
                totals = &tables[TOTALS],
                summaries = &tables[SUMMARIES],
            ))
            .await?;
            Ok(())
        })
    }
}

/// Rows as column arrays, for `unnest`.
#[derive(Debug)]
struct Columns {
    order_id: Vec<Uuid>,
    customer_id: Vec<Uuid>,
    status: Vec<&'static str>,
    currency: Vec<&'static str>,
    total: Vec<i64>,
    captured: Vec<i64>,
    refunded: Vec<i64>,
    lines: Vec<i32>,
    version: Vec<i64>,
    position: Vec<i64>,
    placed_at: Vec<SystemTime>,
    updated_at: Vec<SystemTime>,
}

impl Columns {
    fn of(rows: &[&SummaryRow]) -> Self {
        Self {
            order_id: rows.iter().map(|r| r.order_id).collect(),
            customer_id: rows
                .iter()
                .map(|r| r.summary.customer_id.as_uuid())
                .collect(),
            status: rows.iter().map(|r| r.summary.status.as_str()).collect(),
            currency: rows
                .iter()
                .map(|r| r.summary.total.currency().code())
                .collect(),
            total: rows
                .iter()
                .map(|r| r.summary.total.amount_minor())
                .collect(),
            captured: rows
                .iter()
                .map(|r| r.summary.captured.amount_minor())
                .collect(),
            refunded: rows
                .iter()
                .map(|r| r.summary.refunded.amount_minor())
                .collect(),
            lines: rows.iter().map(|r| r.summary.line_count as i32).collect(),
            version: rows.iter().map(|r| r.stream_version as i64).collect(),
            position: rows.iter().map(|r| r.last_position as i64).collect(),
            placed_at: rows.iter().map(|r| r.placed_at).collect(),
            updated_at: rows.iter().map(|r| r.updated_at).collect(),
        }
    }
}

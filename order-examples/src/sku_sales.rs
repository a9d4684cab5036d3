//! Units and revenue per SKU per day: a projection a sales team adds to the order ledger,
//! written only against the public API of `order-projector` (nothing in the core crates
//! knows it).
//!
//! A sale counts on the day (UTC) its order is confirmed, the payment captured: each line
//! adds its quantity and its total (quantity x unit price) to its SKU's row of that day, in
//! the order's currency. An order cancelled after confirmation counts its lines as cancelled
//! on the day of the cancellation. Refunds are per order, not per SKU, and are left to the
//! read model.
//!
//! What it shows:
//!
//! - **state across events in a table of its own**: a confirmation needs the lines of the
//!   order's placement, possibly thousands of events earlier; the projection keeps the lines
//!   of orders still open in `sku_sales_open_orders` and forgets them when the order ends;
//! - **idempotence for rows that are not per stream** (a day's total sums many orders):
//!   [`StreamVersions`] lets only events through that were not applied before, so a page
//!   applied again changes nothing;
//! - **set-based writes**: the page is folded in memory and written with one statement per
//!   table, however many events it holds.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use order_domain::{Order, OrderEvent};
use order_projector::{
    ApplyError, Categories, Envelope, Page, Projection, StreamVersions, Table, Tables, Transaction,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The projection's name (its checkpoint, lease, metrics label and `status` line).
pub const NAME: &str = "sku_sales";
/// Units and revenue per SKU per day.
pub const DAILY: &str = "sku_sales_daily";
/// The lines of orders placed and not yet ended.
pub const OPEN_ORDERS: &str = "sku_sales_open_orders";
/// The idempotence guard's table.
pub const STREAMS: &str = "sku_sales_streams";

/// What `sku_sales_daily` must hold, computed in SQL straight from the stored events, with
/// none of the projection's code (its tests and the fault suite's audit compare the table with
/// it): a confirmation sells the lines of the order's placement on its day, a cancellation
/// after a confirmation cancels them on its own day. Columns as the table's.
pub const DAILY_FROM_LOG_SQL: &str = "
    WITH lines AS (
        SELECT p.stream_id, l->>'sku' AS sku, p.payload->'total'->>'currency' AS currency,
            (l->>'quantity')::int8 AS quantity,
            (l->>'quantity')::int8 * (l->'unit_price'->>'amount_minor')::int8 AS amount
        FROM orders.events p, jsonb_array_elements(p.payload->'lines') l
        WHERE p.event_type = 'OrderPlaced' AND p.category = 'order'
    ), confirmed AS (
        SELECT stream_id, (recorded_at AT TIME ZONE 'UTC')::date AS day
        FROM orders.events WHERE event_type = 'OrderConfirmed' AND category = 'order'
    ), cancelled AS (
        SELECT c.stream_id, (c.recorded_at AT TIME ZONE 'UTC')::date AS day
        FROM orders.events c JOIN confirmed USING (stream_id)
        WHERE c.event_type = 'OrderCancelled' AND c.category = 'order'
    ), moves AS (
        SELECT day, sku, currency, quantity AS sold, amount AS revenue, 0::int8 AS cancelled,
            0::int8 AS revenue_cancelled
        FROM confirmed JOIN lines USING (stream_id)
        UNION ALL
        SELECT day, sku, currency, 0, 0, quantity, amount
        FROM cancelled JOIN lines USING (stream_id)
    )
    SELECT day, sku, currency, sum(sold)::int8 AS units_sold, sum(revenue)::int8 AS revenue_minor,
        sum(cancelled)::int8 AS units_cancelled,
        sum(revenue_cancelled)::int8 AS revenue_cancelled_minor
    FROM moves GROUP BY day, sku, currency";

/// What `sku_sales_open_orders` must hold (its `order_id`s), computed in SQL from the stored
/// events: the orders placed and neither completed nor cancelled.
pub const OPEN_ORDERS_FROM_LOG_SQL: &str = "
    SELECT stream_id AS order_id FROM orders.events
    WHERE event_type = 'OrderPlaced' AND category = 'order'
    EXCEPT
    SELECT stream_id FROM orders.events
    WHERE event_type IN ('OrderCompleted', 'OrderCancelled') AND category = 'order'";

/// The projection. `version` is 1; the tests bump it to prove the rebuild.
#[derive(Debug, Clone, Copy)]
pub struct SkuSales {
    version: u32,
    page: u32,
}

impl Default for SkuSales {
    fn default() -> Self {
        Self::new()
    }
}

impl SkuSales {
    /// The projection at its current version.
    pub fn new() -> Self {
        Self {
            version: 1,
            page: 1000,
        }
    }

    /// The same projection claiming another version (what a team does when it changes what
    /// the tables mean: bump the version, and the next start rebuilds them).
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Events per page (and per transaction) while following the log (default 1,000).
    pub fn page(mut self, page: u32) -> Self {
        self.page = page;
        self
    }

    fn guard() -> StreamVersions {
        StreamVersions::new(STREAMS)
    }
}

/// One line of an open order, as kept in `sku_sales_open_orders.lines`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Line {
    sku: String,
    quantity: i64,
    amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenOrder {
    currency: String,
    lines: Vec<Line>,
    confirmed: bool,
}

/// What a page adds to one row of `sku_sales_daily`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Delta {
    units_sold: i64,
    revenue_minor: i64,
    units_cancelled: i64,
    revenue_cancelled_minor: i64,
}

/// Days since 1970-01-01 (UTC) of an instant.
fn day_of(at: SystemTime) -> i32 {
    let nanos = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    };
    nanos.div_euclid(86_400 * 1_000_000_000) as i32
}

/// Does the projection care about this event?
fn relevant(event: &OrderEvent) -> bool {
    matches!(
        event,
        OrderEvent::OrderPlaced(_)
            | OrderEvent::OrderConfirmed(_)
            | OrderEvent::OrderCancelled(_)
            | OrderEvent::OrderCompleted(_)
    )
}

impl Projection for SkuSales {
    type Event = OrderEvent;

    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn categories(&self) -> Categories {
        Categories::of::<Order>()
    }

    fn page_size(&self) -> u32 {
        self.page
    }

    fn tables(&self) -> Vec<Table> {
        vec![
            Table::new(
                DAILY,
                "CREATE TABLE {table} (
                    day                     date   NOT NULL,
                    sku                     text   NOT NULL,
                    currency                text   NOT NULL,
                    units_sold              bigint NOT NULL,
                    revenue_minor           bigint NOT NULL,
                    units_cancelled         bigint NOT NULL,
                    revenue_cancelled_minor bigint NOT NULL,
                    PRIMARY KEY (day, sku, currency)
                )",
            )
            .index("CREATE INDEX {name}_by_sku ON {table} (sku, day)")
            .readable_by("orders_app"),
            Table::new(
                OPEN_ORDERS,
                "CREATE TABLE {table} (
                    order_id  uuid    PRIMARY KEY,
                    currency  text    NOT NULL,
                    lines     jsonb   NOT NULL,
                    confirmed boolean NOT NULL
                )",
            ),
            Self::guard().table(),
        ]
    }

    async fn apply(
        &self,
        page: &Page<OrderEvent>,
        tx: &Transaction<'_>,
        tables: &Tables,
    ) -> Result<(), ApplyError> {
        // Where a failure that no single event caused is reported: the page's first event.
        let at = page.events().first().map_or(0, |e| e.position());
        // 1. Only what was not applied before (and only the events this projection uses, so
        //    that the guard's table grows with orders, not with every event).
        let events = Self::guard()
            .unseen(tx, tables, page.iter().filter(|e| relevant(&e.event)))
            .await?;
        if events.is_empty() {
            return Ok(());
        }

        // 2. The open orders the page continues.
        let continued: Vec<Uuid> = events
            .iter()
            .filter(|e| !matches!(e.event, OrderEvent::OrderPlaced(_)))
            .map(|e| e.stream_id())
            .collect();
        let mut orders: HashMap<Uuid, Option<OpenOrder>> = HashMap::new();
        if !continued.is_empty() {
            let select = tx
                .prepare_cached(&format!(
                    "SELECT order_id, currency, lines, confirmed FROM {} WHERE order_id = ANY($1)",
                    &tables[OPEN_ORDERS]
                ))
                .await?;
            for row in tx.query(&select, &[&continued]).await? {
                let lines: serde_json::Value = row.try_get(2)?;
                let lines = serde_json::from_value(lines).map_err(|e| ApplyError::Invalid {
                    position: at,
                    reason: format!("{OPEN_ORDERS} holds lines it cannot read: {e}"),
                })?;
                orders.insert(
                    row.try_get(0)?,
                    Some(OpenOrder {
                        currency: row.try_get(1)?,
                        lines,
                        confirmed: row.try_get(3)?,
                    }),
                );
            }
        }

        // 3. Fold the page in memory, in log order.
        let mut changed: HashMap<Uuid, Option<OpenOrder>> = HashMap::new();
        let mut deltas: BTreeMap<(i32, String, String), Delta> = BTreeMap::new();
        for e in events {
            fold(e, &mut orders, &mut changed, &mut deltas)?;
        }

        // 4. Write: open orders (new, confirmed, ended), then the day rows.
        let (ended, open): (Vec<_>, Vec<_>) = changed.into_iter().partition(|(_, o)| o.is_none());
        if !ended.is_empty() {
            let ended: Vec<Uuid> = ended.into_iter().map(|(id, _)| id).collect();
            let delete = tx
                .prepare_cached(&format!(
                    "DELETE FROM {} WHERE order_id = ANY($1)",
                    &tables[OPEN_ORDERS]
                ))
                .await?;
            tx.execute(&delete, &[&ended]).await?;
        }
        if !open.is_empty() {
            let mut ids = Vec::new();
            let mut currencies = Vec::new();
            let mut lines = Vec::new();
            let mut confirmed = Vec::new();
            for (id, order) in open.into_iter() {
                let Some(order) = order else { continue };
                ids.push(id);
                currencies.push(order.currency);
                lines.push(serde_json::to_value(&order.lines).map_err(|e| {
                    ApplyError::Invalid {
                        position: at,
                        reason: e.to_string(),
                    }
                })?);
                confirmed.push(order.confirmed);
            }
            let upsert = tx
                .prepare_cached(&format!(
                    "INSERT INTO {t} (order_id, currency, lines, confirmed)
                     SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::bool[])
                     ON CONFLICT (order_id) DO UPDATE SET currency = EXCLUDED.currency,
                         lines = EXCLUDED.lines, confirmed = EXCLUDED.confirmed",
                    t = &tables[OPEN_ORDERS]
                ))
                .await?;
            tx.execute(&upsert, &[&ids, &currencies, &lines, &confirmed])
                .await?;
        }
        if !deltas.is_empty() {
            let mut days = Vec::new();
            let mut skus = Vec::new();
            let mut currencies = Vec::new();
            let (mut sold, mut revenue, mut cancelled, mut revenue_cancelled) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((day, sku, currency), d) in deltas {
                days.push(day);
                skus.push(sku);
                currencies.push(currency);
                sold.push(d.units_sold);
                revenue.push(d.revenue_minor);
                cancelled.push(d.units_cancelled);
                revenue_cancelled.push(d.revenue_cancelled_minor);
            }
            let upsert = tx
                .prepare_cached(&format!(
                    "INSERT INTO {t} AS d (day, sku, currency, units_sold, revenue_minor,
                         units_cancelled, revenue_cancelled_minor)
                     SELECT DATE '1970-01-01' + day, sku, currency, sold, revenue, cancelled,
                         revenue_cancelled
                     FROM unnest($1::int4[], $2::text[], $3::text[], $4::int8[], $5::int8[],
                         $6::int8[], $7::int8[])
                         AS u(day, sku, currency, sold, revenue, cancelled, revenue_cancelled)
                     ON CONFLICT (day, sku, currency) DO UPDATE SET
                         units_sold = d.units_sold + EXCLUDED.units_sold,
                         revenue_minor = d.revenue_minor + EXCLUDED.revenue_minor,
                         units_cancelled = d.units_cancelled + EXCLUDED.units_cancelled,
                         revenue_cancelled_minor =
                             d.revenue_cancelled_minor + EXCLUDED.revenue_cancelled_minor",
                    t = &tables[DAILY]
                ))
                .await?;
            tx.execute(
                &upsert,
                &[
                    &days,
                    &skus,
                    &currencies,
                    &sold,
                    &revenue,
                    &cancelled,
                    &revenue_cancelled,
                ],
            )
            .await?;
        }
        Ok(())
    }
}

/// Apply one event to the open orders and the day deltas.
fn fold(
    e: &Envelope<OrderEvent>,
    orders: &mut HashMap<Uuid, Option<OpenOrder>>,
    changed: &mut HashMap<Uuid, Option<OpenOrder>>,
    deltas: &mut BTreeMap<(i32, String, String), Delta>,
) -> Result<(), ApplyError> {
    let id = e.stream_id();
    let day = day_of(e.recorded_at());
    let current = orders.get(&id).cloned().flatten();
    let next = match (&e.event, current) {
        (OrderEvent::OrderPlaced(placed), _) => Some(OpenOrder {
            currency: placed.total.currency().code().to_owned(),
            lines: placed
                .lines
                .iter()
                .map(|line| Line {
                    sku: line.sku().as_str().to_owned(),
                    quantity: i64::from(line.quantity().get()),
                    amount_minor: line.total().amount_minor(),
                })
                .collect(),
            confirmed: false,
        }),
        (OrderEvent::OrderConfirmed(_), Some(mut order)) => {
            for line in &order.lines {
                let d = deltas
                    .entry((day, line.sku.clone(), order.currency.clone()))
                    .or_default();
                d.units_sold += line.quantity;
                d.revenue_minor += line.amount_minor;
            }
            order.confirmed = true;
            Some(order)
        }
        (OrderEvent::OrderCancelled(_), Some(order)) => {
            if order.confirmed {
                for line in &order.lines {
                    let d = deltas
                        .entry((day, line.sku.clone(), order.currency.clone()))
                        .or_default();
                    d.units_cancelled += line.quantity;
                    d.revenue_cancelled_minor += line.amount_minor;
                }
            }
            None
        }
        (OrderEvent::OrderCompleted(_), Some(_)) => None,
        // A confirmation, cancellation or completion of an order this projection never saw
        // placed: the log and the projection disagree. Stop here (visibly) rather than guess.
        (_, None) => {
            return Err(ApplyError::invalid(
                e,
                format!("order {id} continues, but its placement was never projected"),
            ));
        }
        (_, Some(order)) => Some(order),
    };
    orders.insert(id, next.clone());
    changed.insert(id, next);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_days() {
        let at = |secs: u64| UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(day_of(at(0)), 0);
        assert_eq!(day_of(at(86_399)), 0);
        assert_eq!(day_of(at(86_400)), 1);
        // 2026-12-01T00:00:00Z
        assert_eq!(day_of(at(1_796_083_200)), 20_788);
        let before = |secs: u64| UNIX_EPOCH - std::time::Duration::from_secs(secs);
        assert_eq!(day_of(before(1)), -1);
        assert_eq!(day_of(before(86_400)), -1);
        assert_eq!(day_of(before(86_401)), -2);
    }
}

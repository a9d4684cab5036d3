//! The read model: `order_summaries` and `customer_totals`, maintained from the log.
//!
//! A page of events is applied in one transaction together with the checkpoint. The current
//! rows of the page's orders are read `FOR UPDATE`, the events are folded in memory (skipping
//! any at or below a row's stream version: applying an event twice changes nothing), and the
//! changed rows are written with one multi-row upsert that is itself guarded by the stream
//! version. Customer totals change by exactly the difference between the old and new
//! contribution of each changed row, so they stay equal to the sum over the summaries however
//! often events are replayed.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use order_domain::order::{OrderEvent, OrderSummary, Status};
use order_domain::values::CustomerId;
use order_domain::{Currency, Money};
use order_store::RecordedEvent;
use order_store::deadpool_postgres::GenericClient;
use uuid::Uuid;

/// Why a page could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A stored event or row does not decode: the subscription stops here (never skips).
    #[error("event at position {position} cannot be applied: {reason}")]
    Undecodable { position: u64, reason: String },
    #[error(transparent)]
    Store(#[from] order_store::Error),
}

impl From<order_store::tokio_postgres::Error> for ApplyError {
    fn from(error: order_store::tokio_postgres::Error) -> Self {
        Self::Store(error.into())
    }
}

/// One order's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    pub order_id: Uuid,
    pub summary: OrderSummary,
    pub stream_version: u64,
    pub last_position: u64,
    pub placed_at: SystemTime,
    pub updated_at: SystemTime,
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
    pub fn fold(
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
            return Err(ApplyError::Undecodable {
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
            ApplyError::Undecodable {
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

/// Decode a page's events, failing on the first that does not decode.
pub fn decode(events: &[RecordedEvent]) -> Result<Vec<OrderEvent>, ApplyError> {
    events
        .iter()
        .map(|e| {
            e.decode::<OrderEvent>()
                .map(|envelope| envelope.event)
                .map_err(|error| ApplyError::Undecodable {
                    position: e.global_position,
                    reason: error.to_string(),
                })
        })
        .collect()
}

/// The tables a read model lives in (the live ones, or a replay's shadow tables).
#[derive(Debug, Clone)]
pub struct ReadModel {
    pub summaries: String,
    pub totals: String,
}

pub const SUMMARY_COLUMNS: &str = "order_id, customer_id, status, currency, total_minor, \
    captured_minor, refunded_minor, line_count, stream_version, last_position, placed_at, updated_at";

impl Default for ReadModel {
    fn default() -> Self {
        Self::named("order_summaries", "customer_totals")
    }
}

/// Build a row from the database's columns (in [`SUMMARY_COLUMNS`] order).
pub fn row_from_sql(row: &order_store::tokio_postgres::Row) -> Result<SummaryRow, ApplyError> {
    let corrupt = |what: &str| ApplyError::Undecodable {
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

impl ReadModel {
    pub fn named(summaries: &str, totals: &str) -> Self {
        Self {
            summaries: format!("orders.{summaries}"),
            totals: format!("orders.{totals}"),
        }
    }

    /// Apply a page of events (in gap-safe order) inside `transaction`. Returns how many
    /// order rows changed.
    pub async fn apply<C: GenericClient>(
        &self,
        transaction: &C,
        events: &[RecordedEvent],
        decoded: &[OrderEvent],
    ) -> Result<usize, ApplyError> {
        let mut ids: Vec<Uuid> = events.iter().map(|e| e.stream_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let select = transaction
            .prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM {} WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE",
                self.summaries
            ))
            .await?;
        let mut before: HashMap<Uuid, SummaryRow> = HashMap::with_capacity(ids.len());
        for row in transaction.query(&select, &[&ids]).await? {
            let row = row_from_sql(&row)?;
            before.insert(row.order_id, row);
        }

        let mut after: HashMap<Uuid, Option<SummaryRow>> = HashMap::with_capacity(ids.len());
        for (event, decoded) in events.iter().zip(decoded) {
            let current = match after.remove(&event.stream_id) {
                Some(current) => current,
                None => before.get(&event.stream_id).cloned(),
            };
            let next = SummaryRow::fold(current, event.stream_id, event, decoded)?;
            after.insert(event.stream_id, next);
        }

        let changed: Vec<&SummaryRow> = after
            .values()
            .flatten()
            .filter(|row| before.get(&row.order_id) != Some(row))
            .collect();
        self.upsert(transaction, &changed).await?;

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
        self.add_to_totals(transaction, &deltas).await?;
        Ok(changed.len())
    }

    /// Write rows with one statement; a row only replaces an older version of itself.
    pub async fn upsert<C: GenericClient>(
        &self,
        client: &C,
        rows: &[&SummaryRow],
    ) -> Result<(), ApplyError> {
        if rows.is_empty() {
            return Ok(());
        }
        let statement = client
            .prepare_cached(&format!(
                "INSERT INTO {table} ({SUMMARY_COLUMNS})
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int8[],
                     $6::int8[], $7::int8[], $8::int4[], $9::int8[], $10::int8[],
                     $11::timestamptz[], $12::timestamptz[])
                 ON CONFLICT (order_id) DO UPDATE SET
                     customer_id = EXCLUDED.customer_id, status = EXCLUDED.status,
                     currency = EXCLUDED.currency, total_minor = EXCLUDED.total_minor,
                     captured_minor = EXCLUDED.captured_minor,
                     refunded_minor = EXCLUDED.refunded_minor, line_count = EXCLUDED.line_count,
                     stream_version = EXCLUDED.stream_version,
                     last_position = EXCLUDED.last_position, placed_at = EXCLUDED.placed_at,
                     updated_at = EXCLUDED.updated_at
                 WHERE {table}.stream_version < EXCLUDED.stream_version",
                table = self.summaries
            ))
            .await?;
        let columns = Columns::of(rows);
        client
            .execute(
                &statement,
                &[
                    &columns.order_id,
                    &columns.customer_id,
                    &columns.status,
                    &columns.currency,
                    &columns.total,
                    &columns.captured,
                    &columns.refunded,
                    &columns.lines,
                    &columns.version,
                    &columns.position,
                    &columns.placed_at,
                    &columns.updated_at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn add_to_totals<C: GenericClient>(
        &self,
        client: &C,
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
                     lifetime_total_minor = {table}.lifetime_total_minor + EXCLUDED.lifetime_total_minor",
                table = self.totals
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
}

/// Rows as column arrays, for `unnest`.
#[derive(Debug)]
pub struct Columns {
    pub order_id: Vec<Uuid>,
    pub customer_id: Vec<Uuid>,
    pub status: Vec<&'static str>,
    pub currency: Vec<&'static str>,
    pub total: Vec<i64>,
    pub captured: Vec<i64>,
    pub refunded: Vec<i64>,
    pub lines: Vec<i32>,
    pub version: Vec<i64>,
    pub position: Vec<i64>,
    pub placed_at: Vec<SystemTime>,
    pub updated_at: Vec<SystemTime>,
}

impl Columns {
    pub fn of(rows: &[&SummaryRow]) -> Self {
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

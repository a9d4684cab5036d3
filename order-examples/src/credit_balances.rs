//! A projection of the store-credit aggregate: each customer's balance, granted and spent
//! totals. It follows only streams of category `store_credit`, so it never sees an order's
//! event (and the order read model never sees one of these).
//!
//! Idempotence the simplest way: one row per stream, holding the version of the last event
//! applied to it; only events above that version count, so applying a page again changes
//! nothing. The whole page is one statement (set-based: one round trip per page, not per
//! event).

use order_projector::{ApplyError, Categories, Page, Projection, Table, Tables, Transaction};

use crate::store_credit::{StoreCredit, StoreCreditEvent};

/// `store_credit_balances`: one row per customer with store credit.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreditBalances;

/// The table's name.
pub const TABLE: &str = "store_credit_balances";

impl Projection for CreditBalances {
    type Event = StoreCreditEvent;

    fn name(&self) -> &str {
        "credit_balances"
    }

    fn version(&self) -> u32 {
        1
    }

    fn categories(&self) -> Categories {
        Categories::of::<StoreCredit>()
    }

    fn tables(&self) -> Vec<Table> {
        vec![
            Table::new(
                TABLE,
                "CREATE TABLE {table} (
                    customer_id    uuid   PRIMARY KEY,
                    currency       text   NOT NULL,
                    balance_minor  bigint NOT NULL,
                    granted_minor  bigint NOT NULL,
                    spent_minor    bigint NOT NULL,
                    stream_version bigint NOT NULL
                )",
            )
            // order-grpc's role may read it (a checkout showing the balance, say).
            .readable_by("orders_app"),
        ]
    }

    async fn apply(
        &self,
        page: &Page<StoreCreditEvent>,
        tx: &Transaction<'_>,
        tables: &Tables,
    ) -> Result<(), ApplyError> {
        // The whole page in one statement: the events whose version is above their row's
        // are summed per customer and added; the others were applied before.
        let statement = tx
            .prepare_cached(&format!(
                "WITH ev AS (
                     SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int8[],
                         $5::int8[]) AS e(customer_id, currency, granted, spent, version)
                 ), new AS (
                     SELECT ev.customer_id, min(ev.currency) AS currency,
                         sum(ev.granted)::int8 AS granted, sum(ev.spent)::int8 AS spent,
                         max(ev.version) AS version
                     FROM ev LEFT JOIN {t} b USING (customer_id)
                     WHERE ev.version > coalesce(b.stream_version, 0)
                     GROUP BY ev.customer_id
                 )
                 INSERT INTO {t} AS b (customer_id, currency, balance_minor, granted_minor,
                     spent_minor, stream_version)
                 SELECT customer_id, currency, granted - spent, granted, spent, version FROM new
                 ON CONFLICT (customer_id) DO UPDATE SET
                     balance_minor = b.balance_minor + EXCLUDED.balance_minor,
                     granted_minor = b.granted_minor + EXCLUDED.granted_minor,
                     spent_minor = b.spent_minor + EXCLUDED.spent_minor,
                     stream_version = EXCLUDED.stream_version",
                t = &tables[TABLE]
            ))
            .await?;
        let mut customers = Vec::with_capacity(page.len());
        let mut currencies = Vec::with_capacity(page.len());
        let mut granted = Vec::with_capacity(page.len());
        let mut spent = Vec::with_capacity(page.len());
        let mut versions = Vec::with_capacity(page.len());
        for e in page {
            let (amount, g, s) = match &e.event {
                StoreCreditEvent::CreditGranted(x) => (x.amount, x.amount.amount_minor(), 0),
                StoreCreditEvent::CreditSpent(x) => (x.amount, 0, x.amount.amount_minor()),
            };
            customers.push(e.stream_id());
            currencies.push(amount.currency().code());
            granted.push(g);
            spent.push(s);
            versions.push(e.stream_version() as i64);
        }
        tx.execute(
            &statement,
            &[&customers, &currencies, &granted, &spent, &versions],
        )
        .await?;
        Ok(())
    }
}

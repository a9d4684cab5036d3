//! A migrated database per test, orders and store credit written through the command
//! handlers, and the expected tables computed from the log independently of the projections
//! (in SQL over the stored JSON, not with their code).

use std::time::Duration;

use order_domain::order::{LineInput, PlaceOrder, PlaceOrderInput};
use order_domain::values::{AddressInput, ShippingMethod};
use order_domain::{Currency, Metadata, Money, Order, OrderCommand};
use order_examples::{StoreCredit, StoreCreditCommand};
use order_store::{CommandContext, CommandHandler, EventStore, StoreConfig};
use order_testkit::pg::TestDatabase;
use uuid::Uuid;

pub struct Fixture {
    pub db: TestDatabase,
    pub store: EventStore,
    pub orders: CommandHandler<Order>,
    pub credit: CommandHandler<StoreCredit>,
}

pub async fn fixture() -> Fixture {
    let db = TestDatabase::migrated().await;
    let store = EventStore::new(config(&db)).unwrap();
    Fixture {
        orders: CommandHandler::new(store.clone(), 10),
        credit: CommandHandler::new(store.clone(), 10),
        db,
        store,
    }
}

/// The store's settings for `db`, connecting as the projector's role would: the URL's
/// startup option makes every session `orders_projector`, so the projections create, grant
/// and swap their tables with exactly that role's rights.
pub fn projector_config(db: &TestDatabase) -> StoreConfig {
    let url = db.url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut config = config(db);
    config.database_url = format!("{url}{separator}options=-c%20role%3Dorders_projector");
    config
}

fn config(db: &TestDatabase) -> StoreConfig {
    let mut config = StoreConfig::new(db.url());
    config.pool_size = 16;
    config.pool_wait_timeout = Duration::from_secs(10);
    config
}

pub fn context() -> CommandContext {
    CommandContext {
        command_id: Uuid::new_v4(),
        expected_version: None,
        metadata: Metadata {
            correlation_id: Some("examples-test".into()),
            ..Metadata::default()
        },
    }
}

const SKUS: [&str; 5] = ["SKU-A", "SKU-B", "SKU-C", "SKU-D", "SKU-E"];

/// Order `n`: 1-3 lines of different SKUs, on a path that depends on `n` (completed,
/// confirmed and open, cancelled before and after confirmation, payment failed).
pub async fn write_order(handler: &CommandHandler<Order>, n: usize) -> Uuid {
    let id = Uuid::new_v4();
    let currency = if n % 5 == 4 { "USD" } else { "EUR" };
    let lines: Vec<LineInput> = (0..1 + n % 3)
        .map(|l| LineInput {
            sku: SKUS[(n + l * 2) % SKUS.len()],
            quantity: 1 + ((n + l) % 4) as i64,
            currency,
            unit_price_minor: 500 + ((n * 7 + l * 3) % 11) as i64 * 125,
        })
        .collect();
    let total: i64 = lines.iter().map(|l| l.quantity * l.unit_price_minor).sum();
    let place = PlaceOrder::parse(&PlaceOrderInput {
        customer_id: "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001",
        lines,
        shipping_address: Some(AddressInput {
            recipient: "Ada",
            line1: "1 Main St",
            city: "Berlin",
            postal_code: "10115",
            country: "DE",
            ..AddressInput::default()
        }),
        shipping_method: Some(ShippingMethod::Standard),
    })
    .unwrap();
    let mut commands = vec![OrderCommand::PlaceOrder(place)];
    let confirmed = [
        OrderCommand::reserve_inventory("r").unwrap(),
        OrderCommand::authorize_payment("p", currency, total).unwrap(),
        OrderCommand::ConfirmOrder,
    ];
    match n % 5 {
        0 => commands.extend(confirmed.into_iter().chain([
            OrderCommand::StartFulfillment,
            OrderCommand::ship_order("DHL", "T1").unwrap(),
            OrderCommand::DeliverOrder,
            OrderCommand::CompleteOrder,
        ])),
        1 => commands.extend(confirmed),
        2 => commands.push(OrderCommand::cancel_order("changed mind").unwrap()),
        3 => commands.extend(confirmed.into_iter().chain([
            OrderCommand::cancel_order("changed mind").unwrap(),
            OrderCommand::refund_payment(currency, total).unwrap(),
            OrderCommand::ReleaseInventory,
        ])),
        _ => commands.extend([
            OrderCommand::reserve_inventory("r").unwrap(),
            OrderCommand::fail_payment("declined").unwrap(),
            OrderCommand::ReleaseInventory,
        ]),
    }
    for command in &commands {
        handler.handle(id, command, &context()).await.unwrap();
    }
    id
}

/// Write orders `from..from + count` from `writers` concurrent tasks.
pub async fn write_orders(
    handler: &CommandHandler<Order>,
    from: usize,
    count: usize,
    writers: usize,
) {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let handler = handler.clone();
            tokio::spawn(async move {
                for n in (from + w..from + count).step_by(writers) {
                    write_order(&handler, n).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Grant and spend store credit for `customers` customers; returns their ids.
pub async fn write_credit(handler: &CommandHandler<StoreCredit>, customers: usize) -> Vec<Uuid> {
    let eur = |minor| Money::new(Currency::parse("EUR").unwrap(), minor).unwrap();
    let mut ids = Vec::new();
    for c in 0..customers {
        let id = Uuid::new_v4();
        for g in 0..1 + c % 3 {
            let grant = StoreCreditCommand::grant(eur(1_000 + g as i64 * 250), "goodwill").unwrap();
            handler.handle(id, &grant, &context()).await.unwrap();
        }
        if c % 2 == 0 {
            let spend = StoreCreditCommand::spend(eur(600), Uuid::new_v4()).unwrap();
            handler.handle(id, &spend, &context()).await.unwrap();
        }
        ids.push(id);
    }
    ids
}

/// A table's rows, each row as text, sorted.
pub async fn rows(db: &TestDatabase, sql: &str) -> Vec<String> {
    let client = db.connect().await;
    let mut rows: Vec<String> = client
        .query(&format!("SELECT t::text FROM ({sql}) t"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    rows.sort();
    rows
}

/// `sku_sales_daily` as stored.
pub async fn sales_table(db: &TestDatabase) -> Vec<String> {
    rows(
        db,
        "SELECT day, sku, currency, units_sold, revenue_minor, units_cancelled, revenue_cancelled_minor
         FROM orders.sku_sales_daily",
    )
    .await
}

/// What `sku_sales_daily` must hold, folded from the log in SQL over the stored events
/// ([`order_examples::sku_sales::DAILY_FROM_LOG_SQL`]: none of the projection's code).
pub async fn sales_from_log(db: &TestDatabase) -> Vec<String> {
    rows(db, order_examples::sku_sales::DAILY_FROM_LOG_SQL).await
}

/// The orders placed and neither completed nor cancelled, as the projection's own table holds
/// them, and as the log says.
pub async fn open_orders(db: &TestDatabase) -> (Vec<String>, Vec<String>) {
    let stored = rows(db, "SELECT order_id FROM orders.sku_sales_open_orders").await;
    let expected = rows(db, order_examples::sku_sales::OPEN_ORDERS_FROM_LOG_SQL).await;
    (stored, expected)
}

/// `store_credit_balances` as stored, and as the log says.
pub async fn balances(db: &TestDatabase) -> (Vec<String>, Vec<String>) {
    let stored = rows(
        db,
        "SELECT customer_id, currency, balance_minor, granted_minor, spent_minor, stream_version
         FROM orders.store_credit_balances",
    )
    .await;
    let expected = rows(
        db,
        "SELECT stream_id, min(payload->'amount'->>'currency'),
             sum(CASE event_type WHEN 'CreditGranted' THEN 1 ELSE -1 END
                 * (payload->'amount'->>'amount_minor')::int8)::int8,
             coalesce(sum((payload->'amount'->>'amount_minor')::int8)
                 FILTER (WHERE event_type = 'CreditGranted'), 0)::int8,
             coalesce(sum((payload->'amount'->>'amount_minor')::int8)
                 FILTER (WHERE event_type = 'CreditSpent'), 0)::int8,
             max(stream_version)
         FROM orders.events WHERE category = 'store_credit' GROUP BY stream_id",
    )
    .await;
    (stored, expected)
}

/// Wait (up to 120 s: a loaded machine is slow, not wrong) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until no event of the log is past the subscription's checkpoint (of any category:
/// a subscriber of some categories moves its checkpoint past the others too) and nothing is
/// hidden behind the gap-safe fence (a transaction id it cannot place holds it for a moment).
pub async fn caught_up(store: &EventStore, name: &str) {
    eventually(&format!("{name} did not catch up"), || async {
        let Ok(checkpoint) = store.checkpoint(name).await else {
            return false;
        };
        let client = store.pool().get().await.unwrap();
        let after: i64 = client
            .query_one(
                "SELECT count(*) FROM orders.events
                 WHERE (transaction_id, global_position) > ($1::xid8, $2::int8)",
                &[
                    &checkpoint.transaction_id,
                    &(checkpoint.global_position as i64),
                ],
            )
            .await
            .unwrap()
            .get(0);
        after == 0 && hidden_events(store).await == 0
    })
    .await;
}

/// Events of the log the gap-safe fence still hides.
pub async fn hidden_events(store: &EventStore) -> i64 {
    order_testkit::pg::hidden_events(&store.pool().get().await.unwrap()).await
}

/// The projection registry's row: version, and whether it was ever rebuilt.
pub async fn registered(db: &TestDatabase, name: &str) -> Option<(i32, bool)> {
    db.connect()
        .await
        .query_opt(
            "SELECT version, rebuilt_at IS NOT NULL FROM orders.projections WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
}

//! Writing realistic histories, and folding the log independently to compare with.

use std::collections::BTreeMap;
use std::time::Duration;

use order_domain::order::{LineInput, PlaceOrder, PlaceOrderInput};
use order_domain::values::{AddressInput, ShippingMethod};
use order_domain::{Aggregate, Order, OrderCommand, OrderEvent};
use order_projector::{ReadModel, Step, Subscription};
use order_store::{CommandContext, CommandHandler, Cursor, EventStore, Lease, StoreConfig};
use order_testkit::pg::TestDatabase;
use tokio::sync::watch;
use uuid::Uuid;

pub struct Fixture {
    pub db: TestDatabase,
    pub store: EventStore,
    pub handler: CommandHandler<Order>,
}

pub async fn fixture() -> Fixture {
    let db = TestDatabase::migrated().await;
    let mut config = StoreConfig::new(db.url());
    config.pool_size = 24;
    // A slow machine (a CI runner opening dozens of connections at once) must not turn a
    // concurrency test into a pool-exhaustion failure; the tests of exhaustion set their own.
    config.pool_wait_timeout = Duration::from_secs(10);
    let store = EventStore::new(config).unwrap();
    let handler = CommandHandler::new(store.clone(), 10);
    Fixture { db, store, handler }
}

fn context() -> CommandContext {
    CommandContext {
        command_id: Uuid::new_v4(),
        expected_version: None,
        metadata: order_domain::Metadata {
            correlation_id: Some("projector-test".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..Default::default()
        },
    }
}

pub const CUSTOMERS: [&str; 3] = [
    "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001",
    "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c002",
    "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c003",
];

pub fn place(n: usize) -> (OrderCommand, i64) {
    let currency = if n % 4 == 3 { "USD" } else { "EUR" };
    let price = 1000 + (n as i64 % 7) * 150;
    let quantity = 1 + n as i64 % 3;
    let command = PlaceOrder::parse(&PlaceOrderInput {
        customer_id: CUSTOMERS[n % CUSTOMERS.len()],
        lines: vec![LineInput {
            sku: "SKU-A",
            quantity,
            currency,
            unit_price_minor: price,
        }],
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
    (OrderCommand::PlaceOrder(command), price * quantity)
}

/// Order `n` walks a path that depends on `n`: every end state and cancellation, refunds.
pub async fn write_order(handler: &CommandHandler<Order>, n: usize) -> Uuid {
    let id = Uuid::new_v4();
    let (placement, total) = place(n);
    let currency = if n % 4 == 3 { "USD" } else { "EUR" };
    let mut commands = vec![placement];
    let happy = [
        OrderCommand::reserve_inventory("r").unwrap(),
        OrderCommand::authorize_payment("p", currency, total).unwrap(),
        OrderCommand::ConfirmOrder,
        OrderCommand::refund_payment(currency, 100).unwrap(),
        OrderCommand::StartFulfillment,
        OrderCommand::ship_order("DHL", "T1").unwrap(),
        OrderCommand::DeliverOrder,
        OrderCommand::CompleteOrder,
    ];
    match n % 6 {
        0 => commands.extend(happy),
        1 => commands.extend(happy.into_iter().take(3)),
        2 => commands.push(OrderCommand::reject_inventory("none").unwrap()),
        3 => commands.extend([
            OrderCommand::reserve_inventory("r").unwrap(),
            OrderCommand::fail_payment("declined").unwrap(),
            OrderCommand::ReleaseInventory,
        ]),
        4 => commands.extend([
            OrderCommand::reserve_inventory("r").unwrap(),
            OrderCommand::authorize_payment("p", currency, total).unwrap(),
            OrderCommand::ConfirmOrder,
            OrderCommand::refund_payment(currency, 100).unwrap(),
            OrderCommand::cancel_order("changed mind").unwrap(),
            OrderCommand::refund_payment(currency, total - 100).unwrap(),
            OrderCommand::ReleaseInventory,
        ]),
        _ => {}
    }
    for command in &commands {
        handler.handle(id, command, &context()).await.unwrap();
    }
    id
}

/// Write `count` orders from `writers` concurrent tasks.
pub async fn write_orders(
    handler: &CommandHandler<Order>,
    count: usize,
    writers: usize,
) -> Vec<Uuid> {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in (w..count).step_by(writers) {
                    ids.push(write_order(&handler, n).await);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids
}

/// What the read model must hold, folded from the log with the domain aggregate itself.
pub type Expected = BTreeMap<Uuid, (String, String, i64, i64, i64, u64)>;

pub async fn expected_from_log(store: &EventStore) -> Expected {
    everything_visible(store).await;
    let mut expected = Expected::new();
    let mut cursor = Cursor::START;
    let mut orders: BTreeMap<Uuid, (Order, u64)> = BTreeMap::new();
    loop {
        let page = store.read_all(cursor, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.cursor();
        for recorded in &page {
            let event = recorded.decode::<OrderEvent>().unwrap().event;
            let entry = orders.entry(recorded.stream_id).or_default();
            entry.0.evolve(&event);
            entry.1 = recorded.stream_version;
        }
    }
    for (id, (order, version)) in orders {
        let d = order.details().unwrap();
        expected.insert(
            id,
            (
                d.status().as_str().to_owned(),
                d.currency().code().to_owned(),
                d.total().amount_minor(),
                d.captured().amount_minor(),
                d.refunded().amount_minor(),
                version,
            ),
        );
    }
    expected
}

/// The read model as stored.
pub async fn read_model(db: &TestDatabase) -> Expected {
    let client = db.connect().await;
    client
        .query(
            "SELECT order_id, status, currency, total_minor, captured_minor, refunded_minor, stream_version FROM orders.order_summaries",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get::<_, i64>(6) as u64),
            )
        })
        .collect()
}

/// Customer totals must equal the sum over the summaries; returns them.
pub async fn totals_consistent(db: &TestDatabase) -> BTreeMap<(Uuid, String), (i64, i64)> {
    let client = db.connect().await;
    let stored: BTreeMap<(Uuid, String), (i64, i64)> = client
        .query("SELECT customer_id, currency, order_count, lifetime_total_minor FROM orders.customer_totals", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect();
    let summed: BTreeMap<(Uuid, String), (i64, i64)> = client
        .query(
            "SELECT customer_id, currency, count(*), sum(captured_minor - refunded_minor)::int8 FROM orders.order_summaries GROUP BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect();
    assert_eq!(
        stored, summed,
        "customer totals equal the sum over the summaries"
    );
    stored
}

pub fn read_model_subscription(page: u32) -> Subscription {
    Subscription::projection(ReadModel::new().page(page))
}

pub async fn lease(store: &EventStore, name: &str, owner: &str) -> (Lease, Cursor) {
    store
        .acquire_lease(name, owner, Duration::from_secs(30), false)
        .await
        .unwrap()
        .unwrap()
}

/// Step until idle; returns the final cursor and how many events were applied.
pub async fn drain(
    store: &EventStore,
    subscription: &Subscription,
    lease: &Lease,
    mut cursor: Cursor,
) -> (Cursor, usize) {
    let (_stop, shutdown) = watch::channel(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut total = 0;
    let mut all_visible = false;
    loop {
        match subscription
            .step(store, lease, cursor, &shutdown)
            .await
            .unwrap()
        {
            Step::Progressed {
                cursor: next,
                events,
            } => {
                cursor = next;
                total += events;
            }
            // Idle means nothing visible past the cursor, which is not "nothing there": the
            // gap-safe fence hides events while any older transaction of the cluster is still
            // open (another test's, on a busy machine). Finish at an idle step taken *after*
            // the whole log was seen visible: an idle step followed by "nothing hidden" is not
            // enough, the fence may have moved between the two (the live table then missed
            // the events it hid; a replay test once compared against such a short table).
            Step::Idle if all_visible => return (cursor, total),
            Step::Idle => {
                if hidden_events(store).await == 0 {
                    all_visible = true;
                    continue;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "events stayed behind the gap-safe fence for 60 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Events of the log the gap-safe fence (`orders.log_fence()`) still hides.
async fn hidden_events(store: &EventStore) -> i64 {
    order_testkit::pg::hidden_events(&store.pool().get().await.unwrap()).await
}

/// Wait (up to 60 s) until every event of the log is past the gap-safe fence. Other tests'
/// transactions on the same cluster hold the fence back for a moment.
pub async fn everything_visible(store: &EventStore) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let hidden = hidden_events(store).await;
        if hidden == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{hidden} events stayed behind the gap-safe fence for 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes the position of every event of `page` into `table` (a test projection's one column
/// `position bigint PRIMARY KEY`), once however often the page is applied.
pub async fn insert_positions(
    page: &order_projector::Page<OrderEvent>,
    tx: &order_projector::Transaction<'_>,
    table: &str,
) -> Result<(), order_projector::ApplyError> {
    for event in page {
        tx.execute(
            &format!("INSERT INTO {table} VALUES ($1) ON CONFLICT DO NOTHING"),
            &[&(event.position() as i64)],
        )
        .await?;
    }
    Ok(())
}

/// Record subscription `name` as having delivered the whole log (its checkpoint at the last
/// event in the gap-safe order), as if the test had run that sink.
pub async fn delivered_through_head(f: &Fixture, name: &str) {
    delivered_through(f, name, i64::MAX).await;
}

/// Record subscription `name` as having delivered the log up to position `position`: its
/// checkpoint at the last cursor (in the gap-safe order) of the events at or before it;
/// returns the cursor.
pub async fn delivered_through(f: &Fixture, name: &str, position: i64) -> Cursor {
    everything_visible(&f.store).await;
    let client = f.db.connect().await;
    let moved = client
        .execute(
            "INSERT INTO orders.subscriptions (name, checkpoint_xid, checkpoint_position)
             SELECT $1, transaction_id, global_position FROM orders.events
             WHERE global_position <= $2
             ORDER BY transaction_id DESC, global_position DESC LIMIT 1
             ON CONFLICT (name) DO UPDATE
             SET checkpoint_xid = excluded.checkpoint_xid,
                 checkpoint_position = excluded.checkpoint_position",
            &[&name, &position],
        )
        .await
        .unwrap();
    assert_eq!(moved, 1, "the log holds events");
    f.store.checkpoint(name).await.unwrap()
}

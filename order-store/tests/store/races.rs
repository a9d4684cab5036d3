//! Exact answers under races: copies of one command (same command id, same request) sent at
//! once, through several handlers over separate stores (as several service instances would),
//! all get the first answer; nothing is written twice; no copy is told that the command it
//! duplicates was refused or conflicted.

use std::sync::Arc;

use order_domain::order::CommandKind;
use order_domain::{Order, OrderCommand};
use order_store::{CommandContext, CommandHandler, EventStore, Handled};
use uuid::Uuid;

use crate::support::*;

/// How many rounds per command kind and expectation; `ORDER_RACE_ROUNDS` raises it.
fn rounds() -> usize {
    std::env::var("ORDER_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

const COPIES: usize = 24;
const INSTANCES: usize = 3;

fn place() -> OrderCommand {
    use order_domain::order::{LineInput, PlaceOrder, PlaceOrderInput};
    use order_domain::values::{AddressInput, ShippingMethod};
    OrderCommand::PlaceOrder(
        PlaceOrder::parse(&PlaceOrderInput {
            customer_id: "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001",
            lines: vec![LineInput {
                sku: "SKU-1",
                quantity: 3,
                currency: "EUR",
                unit_price_minor: 1000,
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
        .unwrap(),
    )
}

/// The commands that bring a new order to where `kind` applies, and the command itself.
fn scenario(kind: CommandKind) -> (Vec<OrderCommand>, OrderCommand) {
    use OrderCommand as C;
    let reserve = || C::reserve_inventory("r-1").unwrap();
    let authorize = || C::authorize_payment("p-1", "EUR", 3000).unwrap();
    let to_confirmed = || vec![place(), reserve(), authorize(), C::ConfirmOrder];
    let to_shipped = || {
        let mut v = to_confirmed();
        v.extend([C::StartFulfillment, C::ship_order("DHL", "T-1").unwrap()]);
        v
    };
    match kind {
        CommandKind::PlaceOrder => (vec![], place()),
        CommandKind::ReserveInventory => (vec![place()], reserve()),
        CommandKind::RejectInventory => (vec![place()], C::reject_inventory("none").unwrap()),
        CommandKind::AuthorizePayment => (vec![place(), reserve()], authorize()),
        CommandKind::FailPayment => (
            vec![place(), reserve()],
            C::fail_payment("declined").unwrap(),
        ),
        CommandKind::ConfirmOrder => (vec![place(), reserve(), authorize()], C::ConfirmOrder),
        CommandKind::StartFulfillment => (to_confirmed(), C::StartFulfillment),
        CommandKind::ShipOrder => {
            let mut v = to_confirmed();
            v.push(C::StartFulfillment);
            (v, C::ship_order("DHL", "T-1").unwrap())
        }
        CommandKind::DeliverOrder => (to_shipped(), C::DeliverOrder),
        CommandKind::CompleteOrder => {
            let mut v = to_shipped();
            v.push(C::DeliverOrder);
            (v, C::CompleteOrder)
        }
        CommandKind::CancelOrder => (
            vec![place(), reserve()],
            C::cancel_order("changed my mind").unwrap(),
        ),
        CommandKind::ReleaseInventory => (
            vec![place(), reserve(), C::cancel_order("gone").unwrap()],
            C::ReleaseInventory,
        ),
        CommandKind::RefundPayment => (to_confirmed(), C::refund_payment("EUR", 500).unwrap()),
    }
}

async fn run_setup(handler: &CommandHandler<Order>, order: Uuid, setup: &[OrderCommand]) -> u64 {
    let mut version = 0;
    for command in setup {
        let context = CommandContext {
            command_id: Uuid::new_v4(),
            expected_version: None,
            metadata: metadata(),
        };
        version = handler
            .handle(order, command, &context)
            .await
            .unwrap()
            .stream_version;
    }
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_copies_of_a_command_all_get_the_first_answer() {
    let t = test_store_with(|c| c.pool_size = 24).await;
    // Several instances of the service: each its own store (pool, group commit) and handler.
    let mut handlers = vec![CommandHandler::<Order>::new(t.store.clone(), 5)];
    for _ in 1..INSTANCES {
        let mut config = t.store.config().clone();
        config.pool_size = 24;
        handlers.push(CommandHandler::new(EventStore::new(config).unwrap(), 5));
    }
    let handlers = Arc::new(handlers);

    let mut wrong = Vec::new();
    let mut copies_sent = 0;
    for kind in CommandKind::ALL {
        for pinned in [false, true] {
            for _ in 0..rounds() {
                let order = Uuid::new_v4();
                let (setup, command) = scenario(kind);
                let version = run_setup(&handlers[0], order, &setup).await;
                let context = CommandContext {
                    command_id: Uuid::new_v4(),
                    expected_version: pinned.then_some(version),
                    metadata: metadata(),
                };
                let barrier = Arc::new(tokio::sync::Barrier::new(COPIES));
                let tasks: Vec<_> = (0..COPIES)
                    .map(|i| {
                        let handlers = handlers.clone();
                        let (command, context, barrier) =
                            (command.clone(), context.clone(), barrier.clone());
                        tokio::spawn(async move {
                            barrier.wait().await;
                            handlers[i % INSTANCES]
                                .handle(order, &command, &context)
                                .await
                        })
                    })
                    .collect();
                let mut answers: Vec<Handled> = Vec::new();
                for task in tasks {
                    copies_sent += 1;
                    match task.await.unwrap() {
                        Ok(handled) => answers.push(handled),
                        Err(error) => wrong.push(format!("{kind:?} pinned={pinned}: {error}")),
                    }
                }
                // One answer for all: the same version, position and status; one copy wrote.
                let first = &answers[0];
                for answer in &answers {
                    assert_eq!(
                        (
                            answer.stream_version,
                            answer.global_position,
                            &answer.status
                        ),
                        (first.stream_version, first.global_position, &first.status),
                        "{kind:?}: copies answered differently"
                    );
                }
                let writers = answers.iter().filter(|a| !a.duplicate).count();
                if answers.len() == COPIES {
                    assert_eq!(writers, 1, "{kind:?}: exactly one copy writes");
                } else {
                    assert!(writers <= 1, "{kind:?}: {writers} copies wrote");
                }
                let events = t.store.read_stream(order, 0).await.unwrap();
                let by_command = events
                    .iter()
                    .filter(|e| e.metadata.command_id == Some(context.command_id))
                    .count();
                assert!(by_command > 0, "{kind:?}: the command wrote nothing");
                assert_eq!(
                    events.last().map(|e| e.stream_version),
                    Some(first.stream_version),
                    "{kind:?}: the stream ends at the command's answer"
                );
                let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
                assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>());
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {copies_sent} copies were refused or conflicted although their command \
         succeeded, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

//! The command handler with the real Order aggregate: decide, append, retry, re-decide.

use order_domain::order::{OrderError, RuleViolation, Status};
use order_domain::{Order, OrderCommand};
use order_store::{CommandContext, CommandHandler, Error, EventStore, HandleError};
use uuid::Uuid;

use crate::support::*;

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

fn context() -> CommandContext {
    CommandContext {
        command_id: Uuid::new_v4(),
        expected_version: None,
        metadata: metadata(),
    }
}

async fn confirmed_order(handler: &CommandHandler<Order>) -> Uuid {
    let order = Uuid::new_v4();
    for command in [
        place(),
        OrderCommand::reserve_inventory("r-1").unwrap(),
        OrderCommand::authorize_payment("p-1", "EUR", 3000).unwrap(),
        OrderCommand::ConfirmOrder,
    ] {
        handler.handle(order, &command, &context()).await.unwrap();
    }
    order
}

#[tokio::test]
async fn commands_run_through_decide_and_append() {
    let t = test_store().await;
    let handler = CommandHandler::<Order>::new(t.store.clone(), 5);
    let order = Uuid::new_v4();
    let placed = handler.handle(order, &place(), &context()).await.unwrap();
    assert_eq!(
        (
            placed.stream_version,
            placed.status.as_str(),
            placed.duplicate
        ),
        (1, "Placed", false)
    );
    let rejected = handler
        .handle(
            order,
            &OrderCommand::reject_inventory("none left").unwrap(),
            &context(),
        )
        .await
        .unwrap();
    assert_eq!(
        (rejected.stream_version, rejected.status.as_str()),
        (3, "Cancelled")
    );
    assert!(rejected.global_position > placed.global_position);

    let refused = handler
        .handle(order, &OrderCommand::ConfirmOrder, &context())
        .await;
    assert!(matches!(
        refused,
        Err(HandleError::Rejected(OrderError::InvalidTransition {
            status: Status::Cancelled,
            ..
        }))
    ));
    let unknown = handler
        .handle(Uuid::new_v4(), &OrderCommand::ConfirmOrder, &context())
        .await;
    assert!(matches!(
        unknown,
        Err(HandleError::Rejected(OrderError::NotFound))
    ));
    let again = handler.handle(order, &place(), &context()).await;
    assert!(matches!(
        again,
        Err(HandleError::Rejected(OrderError::AlreadyExists))
    ));
    assert_eq!(count(&t.db, "orders.events").await, 3);
}

#[tokio::test]
async fn a_retried_command_is_answered_from_its_record_even_after_the_state_moved_on() {
    let t = test_store().await;
    let handler = CommandHandler::<Order>::new(t.store.clone(), 5);
    let order = Uuid::new_v4();
    let place_context = context();
    let first = handler
        .handle(order, &place(), &place_context)
        .await
        .unwrap();
    handler
        .handle(
            order,
            &OrderCommand::reserve_inventory("r-1").unwrap(),
            &context(),
        )
        .await
        .unwrap();
    // Deciding PlaceOrder again would now be refused; the record answers instead.
    let retry = handler
        .handle(order, &place(), &place_context)
        .await
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(
        (
            retry.stream_version,
            retry.global_position,
            retry.status.as_str()
        ),
        (first.stream_version, first.global_position, "Placed")
    );

    let misuse = handler
        .handle(order, &OrderCommand::ConfirmOrder, &place_context)
        .await;
    assert!(
        matches!(
            misuse,
            Err(HandleError::Store(Error::CommandIdReused { .. }))
        ),
        "{misuse:?}"
    );
    assert_eq!(count(&t.db, "orders.events").await, 2);
}

#[tokio::test]
async fn an_expected_version_pins_the_command_to_that_version() {
    let t = test_store().await;
    let handler = CommandHandler::<Order>::new(t.store.clone(), 5);
    let order = Uuid::new_v4();
    handler.handle(order, &place(), &context()).await.unwrap();
    let stale = CommandContext {
        expected_version: Some(0),
        ..context()
    };
    let result = handler
        .handle(
            order,
            &OrderCommand::reserve_inventory("r").unwrap(),
            &stale,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(HandleError::Store(Error::WrongExpectedVersion {
                actual: 1,
                ..
            }))
        ),
        "{result:?}"
    );
    let current = CommandContext {
        expected_version: Some(1),
        ..context()
    };
    let ok = handler
        .handle(
            order,
            &OrderCommand::reserve_inventory("r").unwrap(),
            &current,
        )
        .await
        .unwrap();
    assert_eq!(ok.stream_version, 2);
}

/// Handlers over separate stores: as separate service instances, they race each other.
fn instances(t: &TestStore, count: usize, max_attempts: u32) -> Vec<CommandHandler<Order>> {
    (0..count)
        .map(|_| {
            let mut config = t.store.config().clone();
            config.pool_size = 16;
            CommandHandler::new(EventStore::new(config).unwrap(), max_attempts)
        })
        .collect()
}

#[tokio::test]
async fn racing_commands_from_several_instances_are_re_decided_and_never_overdraw() {
    let t = test_store().await;
    let handlers = instances(&t, 4, 50);
    // Races between instances are likely in every round, certain over several.
    let mut redecided = 0;
    for _round in 0..10 {
        let order = confirmed_order(&handlers[0]).await;
        // 40 refunds of 1.00 race for 30.00 of captured money, from four instances.
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let handler = handlers[i % handlers.len()].clone();
                tokio::spawn(async move {
                    handler
                        .handle(
                            order,
                            &OrderCommand::refund_payment("EUR", 100).unwrap(),
                            &context(),
                        )
                        .await
                })
            })
            .collect();
        let mut refunded = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(handled) => {
                    refunded += 1;
                    if handled.attempts > 1 {
                        redecided += 1;
                    }
                }
                Err(HandleError::Rejected(OrderError::Rule(
                    RuleViolation::RefundExceedsCaptured { .. },
                ))) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(refunded, 30, "exactly the captured amount was refunded");
        let events = t.store.read_stream(order, 0).await.unwrap();
        let refunds = events
            .iter()
            .filter(|e| e.event_type == "PaymentRefunded")
            .count();
        assert_eq!(refunds, 30);
        let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
        assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>());
        if redecided > 0 {
            return;
        }
    }
    panic!("in ten rounds of four instances racing, no command was ever decided again");
}

#[tokio::test]
async fn a_hot_stream_in_one_instance_never_bounces() {
    let t = test_store().await;
    // One attempt only: any conflict would be an error.
    let handler = CommandHandler::<Order>::new(t.store.clone(), 1);
    for _round in 0..20 {
        let order = confirmed_order(&handler).await;
        let contexts: Vec<CommandContext> = (0..16).map(|_| context()).collect();
        let tasks: Vec<_> = contexts
            .iter()
            .cloned()
            .map(|context| {
                let handler = handler.clone();
                tokio::spawn(async move {
                    handler
                        .handle(
                            order,
                            &OrderCommand::refund_payment("EUR", 10).unwrap(),
                            &context,
                        )
                        .await
                })
            })
            .collect();
        let mut positions = Vec::new();
        for task in tasks {
            let handled = task.await.unwrap().expect("every refund is acknowledged");
            assert!(!handled.duplicate);
            positions.push(handled.global_position);
        }
        let events = t.store.read_stream(order, 0).await.unwrap();
        for context in &contexts {
            let written = events
                .iter()
                .filter(|e| e.metadata.command_id == Some(context.command_id))
                .count();
            assert_eq!(written, 1, "each acknowledged refund is in the log once");
        }
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(positions.len(), 16, "each refund has its own event");
    }
}

#[tokio::test]
async fn a_state_kept_by_one_instance_and_made_stale_by_another_is_read_again() {
    let t = test_store().await;
    let handlers = instances(&t, 2, 5);
    let (a, b) = (&handlers[0], &handlers[1]);
    let order = Uuid::new_v4();
    a.handle(order, &place(), &context()).await.unwrap();
    // b moves the order on; a still keeps "Placed, version 1".
    b.handle(
        order,
        &OrderCommand::reserve_inventory("r-1").unwrap(),
        &context(),
    )
    .await
    .unwrap();
    // Decided on the kept state, authorization would be refused; a reads the stream again.
    let authorized = a
        .handle(
            order,
            &OrderCommand::authorize_payment("p-1", "EUR", 3000).unwrap(),
            &context(),
        )
        .await
        .unwrap();
    assert_eq!(
        (authorized.stream_version, authorized.status.as_str()),
        (3, "PaymentAuthorized")
    );
    // An expected version that the kept state contradicts, but the log confirms, applies.
    b.handle(order, &OrderCommand::ConfirmOrder, &context())
        .await
        .unwrap();
    let pinned = CommandContext {
        expected_version: Some(4),
        ..context()
    };
    let started = a
        .handle(order, &OrderCommand::StartFulfillment, &pinned)
        .await
        .unwrap();
    assert_eq!(started.stream_version, 5);
    // And a refusal on the fresh state is final.
    let again = a
        .handle(order, &OrderCommand::StartFulfillment, &context())
        .await
        .unwrap_err();
    assert!(
        matches!(
            again,
            HandleError::Rejected(OrderError::InvalidTransition { .. })
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn exhausted_re_decides_end_in_a_conflict() {
    let t = test_store().await;
    // One attempt only: the loser of a race between instances gets the conflict at once.
    let handlers = instances(&t, 4, 1);
    for _round in 0..10 {
        let order = confirmed_order(&handlers[0]).await;
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let handler = handlers[i % handlers.len()].clone();
                tokio::spawn(async move {
                    handler
                        .handle(
                            order,
                            &OrderCommand::refund_payment("EUR", 1).unwrap(),
                            &context(),
                        )
                        .await
                })
            })
            .collect();
        let mut conflicts = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => {}
                Err(HandleError::Store(Error::Conflict { .. })) => conflicts += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        if conflicts > 0 {
            return;
        }
    }
    panic!("in ten rounds of 16 refunds from four instances, none lost a race");
}

#[tokio::test]
async fn a_refusal_is_never_decided_on_a_write_of_its_batch_that_failed() {
    // Commands queued on one order are decided together, each on the state the one before it
    // leaves; a refusal on a state that includes a write not yet made must wait for that
    // write's outcome. Here every append times out, so the order never leaves Placed, and a
    // refusal "not allowed when InventoryReserved" would describe a state that never existed.
    let t = test_store_with(|c| c.statement_timeout = std::time::Duration::from_secs(2)).await;
    let handler = CommandHandler::<Order>::new(t.store.clone(), 5);
    let order = Uuid::new_v4();
    handler.handle(order, &place(), &context()).await.unwrap();

    // Another session holds version 2 of the order, uncommitted: every append waits on it.
    let holder = t.db.connect().await;
    holder
        .batch_execute(&format!(
            "BEGIN; INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, category) \
             VALUES ('{order}', 2, '{}', 'Held', 1, '{{}}', 'order')",
            Uuid::new_v4()
        ))
        .await
        .unwrap();
    let send = |reservation: &'static str| {
        let handler = handler.clone();
        tokio::spawn(async move {
            handler
                .handle(
                    order,
                    &OrderCommand::reserve_inventory(reservation).unwrap(),
                    &context(),
                )
                .await
        })
    };
    // The first reservation runs at once and waits on the held row; the next two queue
    // behind it and are decided together after it times out.
    let first = send("r-0");
    let watcher = t.db.connect().await;
    order_testkit::pg::wait_for_lock_waiters(&watcher, 1, "the first reservation", || {
        first.is_finished()
    })
    .await;
    let queued = [send("r-1"), send("r-2")];
    let first = first.await.unwrap();
    assert!(
        matches!(first, Err(HandleError::Store(_))),
        "the first reservation waits on the held row until its time limit: {first:?}"
    );
    for task in queued {
        let answer = task.await.unwrap();
        assert!(
            matches!(answer, Err(HandleError::Store(_))),
            "a queued reservation is answered by its own append's failure, never refused on \
             the state a failed write would have left: {answer:?}"
        );
    }
    holder.batch_execute("ROLLBACK").await.unwrap();
    let events = t.store.read_stream(order, 0).await.unwrap();
    assert_eq!(events.len(), 1, "only OrderPlaced was ever written");
}

/// After a restore to an earlier point, callers send again the commands whose answers came
/// later, with their command ids. Each event of a command applied again has a new id (a new
/// SQS message) of the same identity (`order_domain::event_id`), from which the worker derives
/// its providers' idempotency keys: the providers, outside the restored database, see the keys
/// they saw before.
#[tokio::test]
async fn a_command_applied_again_after_a_restore_gives_events_of_the_same_identity() {
    use order_domain::event_id::event_identity;
    let before = test_store().await;
    let restored = test_store().await;
    let order = Uuid::new_v4();
    let command = place();
    let same = context();
    let mut ids = Vec::new();
    for t in [&before, &restored] {
        let handler = CommandHandler::<Order>::new(t.store.clone(), 5);
        let done = handler.handle(order, &command, &same).await.unwrap();
        assert!(!done.duplicate);
        let events = t.store.read_stream(order, 0).await.unwrap();
        ids.push(events.iter().map(|e| e.event_id).collect::<Vec<_>>());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (first, again) = (&ids[0], &ids[1]);
    assert_eq!(first.len(), again.len());
    assert!(!first.is_empty());
    for (a, b) in first.iter().zip(again) {
        assert_ne!(a, b, "a new id on every append");
        assert_eq!(event_identity(*a), event_identity(*b));
    }
    // Another command on the same order: events of another identity.
    let handler = CommandHandler::<Order>::new(restored.store.clone(), 5);
    let other = Uuid::new_v4();
    handler.handle(other, &command, &context()).await.unwrap();
    let events = restored.store.read_stream(other, 0).await.unwrap();
    assert_ne!(event_identity(events[0].event_id), event_identity(first[0]));
}

/// `CommandEventIds::Random`: every event a new UUID v7, the ids of the releases before
/// command event ids (for a deploy whose workers of an earlier release still run: they key
/// provider calls on the whole event id).
#[tokio::test]
async fn random_event_ids_are_version_7_and_new_on_every_append() {
    use order_domain::event_id::event_identity;
    let configure = |config: &mut order_store::StoreConfig| {
        config.command_event_ids = order_store::CommandEventIds::Random;
    };
    let before = test_store_with(configure).await;
    let restored = test_store_with(configure).await;
    let order = Uuid::new_v4();
    let command = place();
    let same = context();
    let mut ids = Vec::new();
    for t in [&before, &restored] {
        let handler = CommandHandler::<Order>::new(t.store.clone(), 5);
        handler.handle(order, &command, &same).await.unwrap();
        let events = t.store.read_stream(order, 0).await.unwrap();
        ids.push(events[0].event_id);
    }
    assert_eq!(ids[0].get_version_num(), 7);
    assert_eq!(ids[1].get_version_num(), 7);
    assert_ne!(event_identity(ids[0]), event_identity(ids[1]));
}

/// A failover to a standby that had not received the last commits (asynchronous replication),
/// or a restore to an earlier point: the events a handler kept its state from are gone, and
/// another instance wrote different events at the same versions. Kept state is checked against
/// the event it ended at, not only its version: the handler reads the stream again and never
/// appends a step the order's actual history forbids.
#[tokio::test]
async fn a_state_kept_from_events_a_failover_lost_is_read_again() {
    let t = test_store().await;
    let handlers = instances(&t, 2, 5);
    let (a, b) = (&handlers[0], &handlers[1]);
    // a keeps "Confirmed, version 4".
    let order = confirmed_order(a).await;
    // The confirmation is lost, as in a failover to a standby it never reached (the log is
    // append-only for everyone: only replication's role passes its triggers).
    let admin = t.db.connect().await;
    admin
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             DELETE FROM orders.commands WHERE stream_id = '{order}' AND stream_version = 4;
             DELETE FROM orders.events WHERE stream_id = '{order}' AND stream_version = 4;
             SET session_replication_role = origin;"
        ))
        .await
        .unwrap();
    // b, on the server as it now is, cancels the authorized order: its version 4.
    let cancelled = b
        .handle(
            order,
            &OrderCommand::cancel_order("customer").unwrap(),
            &context(),
        )
        .await
        .unwrap();
    assert_eq!(cancelled.stream_version, 4);
    // a, decided on its kept state, would start fulfilment after the cancellation.
    let started = a
        .handle(order, &OrderCommand::StartFulfillment, &context())
        .await;
    assert!(
        matches!(
            started,
            Err(HandleError::Rejected(OrderError::InvalidTransition { .. }))
        ),
        "{started:?}"
    );
    let types: Vec<String> = t
        .store
        .read_stream(order, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(
        !types.iter().any(|t| t == "FulfillmentStarted"),
        "{types:?}"
    );
}

/// A decision on a kept or assumed state that the log contradicts is read again at once and
/// does not use up the attempts meant for races on fresh state: with a single attempt, an
/// order placed again by another instance is answered "already exists", and a kept state
/// another instance moved on is decided again, instead of either ending in a conflict.
#[tokio::test]
async fn a_stale_or_assumed_state_does_not_use_up_the_attempts() {
    let t = test_store().await;
    let handlers = instances(&t, 2, 1);
    let (a, b) = (&handlers[0], &handlers[1]);
    let order = Uuid::new_v4();
    a.handle(order, &place(), &context()).await.unwrap();
    // b assumes a new stream for a PlaceOrder.
    let again = b.handle(order, &place(), &context()).await.unwrap_err();
    assert!(
        matches!(again, HandleError::Rejected(OrderError::AlreadyExists)),
        "{again:?}"
    );
    // b keeps "Placed, version 1" from its own command; a moves the order on.
    let other = Uuid::new_v4();
    b.handle(other, &place(), &context()).await.unwrap();
    a.handle(
        other,
        &OrderCommand::reserve_inventory("r-1").unwrap(),
        &context(),
    )
    .await
    .unwrap();
    let authorized = b
        .handle(
            other,
            &OrderCommand::authorize_payment("p-1", "EUR", 3000).unwrap(),
            &context(),
        )
        .await
        .unwrap();
    assert_eq!(authorized.stream_version, 3);
}

//! The full transition matrix: every command in every state, plus given/when/then checks of
//! the exact events of the interesting transitions.

use order_domain::order::*;
use order_domain::testkit::Given;
use order_domain::{Aggregate, EventSchema, Money};

use crate::support::*;

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The command succeeds with events of these types, in this order.
    Events(&'static [&'static str]),
    NotFound,
    AlreadyExists,
    /// Refused by a state-dependent rule about this field.
    Rule(&'static str),
}

struct Scenario {
    name: &'static str,
    history: Vec<OrderCommand>,
    status: Option<Status>,
    /// Commands whose outcome is not "invalid transition".
    outcomes: Vec<(CommandKind, Expect)>,
}

fn scenarios() -> Vec<Scenario> {
    use CommandKind as K;
    use Expect::*;
    let placed = vec![cmd_place()];
    let reserved = [placed.clone(), vec![cmd_reserve()]].concat();
    let authorized = [reserved.clone(), vec![cmd_authorize()]].concat();
    let confirmed = [authorized.clone(), vec![OrderCommand::ConfirmOrder]].concat();
    let processing = [confirmed.clone(), vec![OrderCommand::StartFulfillment]].concat();
    let shipped = [processing.clone(), vec![cmd_ship()]].concat();
    let delivered = [shipped.clone(), vec![OrderCommand::DeliverOrder]].concat();
    let refund = Events(&["PaymentRefunded"]);
    vec![
        Scenario {
            name: "never placed",
            history: vec![],
            status: None,
            outcomes: K::ALL
                .iter()
                .map(|&k| {
                    (
                        k,
                        if k == K::PlaceOrder {
                            Events(&["OrderPlaced"])
                        } else {
                            NotFound
                        },
                    )
                })
                .collect(),
        },
        Scenario {
            name: "placed",
            history: placed.clone(),
            status: Some(Status::Placed),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (K::ReserveInventory, Events(&["InventoryReserved"])),
                (
                    K::RejectInventory,
                    Events(&["InventoryUnavailable", "OrderCancelled"]),
                ),
                (K::CancelOrder, Events(&["OrderCancelled"])),
            ],
        },
        Scenario {
            name: "inventory reserved",
            history: reserved.clone(),
            status: Some(Status::InventoryReserved),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (K::AuthorizePayment, Events(&["PaymentAuthorized"])),
                (
                    K::FailPayment,
                    Events(&["PaymentFailed", "CancellationRequested"]),
                ),
                (K::CancelOrder, Events(&["CancellationRequested"])),
            ],
        },
        Scenario {
            name: "payment authorized",
            history: authorized.clone(),
            status: Some(Status::PaymentAuthorized),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (K::ConfirmOrder, Events(&["OrderConfirmed"])),
                // Nothing is captured yet, so a refund is not a transition this state has.
                (K::CancelOrder, Events(&["CancellationRequested"])),
            ],
        },
        Scenario {
            name: "confirmed",
            history: confirmed.clone(),
            status: Some(Status::Confirmed),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (K::StartFulfillment, Events(&["FulfillmentStarted"])),
                (K::CancelOrder, Events(&["CancellationRequested"])),
                (K::RefundPayment, refund),
            ],
        },
        Scenario {
            name: "confirmed with a partial refund",
            history: [confirmed.clone(), vec![cmd_refund(1000)]].concat(),
            status: Some(Status::Confirmed),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (K::StartFulfillment, Events(&["FulfillmentStarted"])),
                (K::CancelOrder, Events(&["CancellationRequested"])),
                (K::RefundPayment, Rule("amount")),
            ],
        },
        Scenario {
            name: "processing",
            history: processing,
            status: Some(Status::Processing),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (K::ShipOrder, Events(&["OrderShipped"])),
                (K::RefundPayment, refund),
            ],
        },
        Scenario {
            name: "shipped",
            history: shipped,
            status: Some(Status::Shipped),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (K::DeliverOrder, Events(&["OrderDelivered"])),
                (K::RefundPayment, refund),
            ],
        },
        Scenario {
            name: "delivered",
            history: delivered.clone(),
            status: Some(Status::Delivered),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (K::CompleteOrder, Events(&["OrderCompleted"])),
                (K::RefundPayment, refund),
            ],
        },
        Scenario {
            name: "completed",
            history: [delivered, vec![OrderCommand::CompleteOrder]].concat(),
            status: Some(Status::Completed),
            // DESIGN: refunds in any state after PaymentAuthorized (a return after completion).
            outcomes: vec![(K::PlaceOrder, AlreadyExists), (K::RefundPayment, refund)],
        },
        Scenario {
            name: "cancellation pending, owes inventory",
            history: [reserved.clone(), vec![cmd_cancel()]].concat(),
            status: Some(Status::CancellationPending),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (
                    K::ReleaseInventory,
                    Events(&["InventoryReleased", "OrderCancelled"]),
                ),
            ],
        },
        Scenario {
            name: "cancellation pending after a failed payment",
            history: [reserved, vec![cmd_fail_payment()]].concat(),
            status: Some(Status::CancellationPending),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (
                    K::ReleaseInventory,
                    Events(&["InventoryReleased", "OrderCancelled"]),
                ),
            ],
        },
        Scenario {
            name: "cancellation pending, owes inventory and a void",
            history: [authorized.clone(), vec![cmd_cancel()]].concat(),
            status: Some(Status::CancellationPending),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (K::ReleaseInventory, Events(&["InventoryReleased"])),
                (K::RefundPayment, Events(&["PaymentVoided"])),
            ],
        },
        Scenario {
            name: "cancellation pending, owes only the void",
            history: [
                authorized,
                vec![cmd_cancel(), OrderCommand::ReleaseInventory],
            ]
            .concat(),
            status: Some(Status::CancellationPending),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (
                    K::RefundPayment,
                    Events(&["PaymentVoided", "OrderCancelled"]),
                ),
            ],
        },
        Scenario {
            name: "cancellation pending, owes inventory and a refund",
            history: [confirmed.clone(), vec![cmd_cancel()]].concat(),
            status: Some(Status::CancellationPending),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                (K::ReleaseInventory, Events(&["InventoryReleased"])),
                (K::RefundPayment, Events(&["PaymentRefunded"])),
            ],
        },
        Scenario {
            name: "cancellation pending, owes only the rest of a partially refunded payment",
            history: [
                confirmed.clone(),
                vec![
                    cmd_refund(1000),
                    cmd_cancel(),
                    OrderCommand::ReleaseInventory,
                ],
            ]
            .concat(),
            status: Some(Status::CancellationPending),
            outcomes: vec![
                (K::PlaceOrder, AlreadyExists),
                // The standard refund command asks for 30.00, but only 20.00 is owed.
                (K::RefundPayment, Rule("amount.amount_minor")),
            ],
        },
        Scenario {
            name: "cancelled directly",
            history: [placed.clone(), vec![cmd_cancel()]].concat(),
            status: Some(Status::Cancelled),
            outcomes: vec![(K::PlaceOrder, AlreadyExists)],
        },
        Scenario {
            name: "cancelled after compensations",
            history: [
                confirmed,
                vec![
                    cmd_cancel(),
                    OrderCommand::ReleaseInventory,
                    cmd_refund(TOTAL),
                ],
            ]
            .concat(),
            status: Some(Status::Cancelled),
            outcomes: vec![(K::PlaceOrder, AlreadyExists)],
        },
        Scenario {
            name: "cancelled because inventory was unavailable",
            history: [placed, vec![cmd_reject()]].concat(),
            status: Some(Status::Cancelled),
            outcomes: vec![(K::PlaceOrder, AlreadyExists)],
        },
    ]
}

#[test]
fn every_command_in_every_state_has_the_expected_outcome() {
    let mut checked = 0;
    for scenario in scenarios() {
        let state = Order::fold(&history(&scenario.history));
        assert_eq!(state.status(), scenario.status, "{}: status", scenario.name);
        for kind in CommandKind::ALL {
            let expect = scenario
                .outcomes
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, e)| *e);
            let result = state.decide(&command_of(kind));
            let context = format!("{} / {kind}", scenario.name);
            match (expect, result) {
                (Some(Expect::Events(types)), Ok(events)) => {
                    let produced: Vec<_> = events.iter().map(EventSchema::event_type).collect();
                    assert_eq!(produced, types, "{context}");
                }
                (Some(Expect::NotFound), Err(OrderError::NotFound)) => {}
                (Some(Expect::AlreadyExists), Err(OrderError::AlreadyExists)) => {}
                (Some(Expect::Rule(field)), Err(OrderError::Rule(rule))) => {
                    assert_eq!(rule.field(), field, "{context}: {rule}");
                }
                (None, Err(OrderError::InvalidTransition { command, status })) => {
                    assert_eq!(
                        (command, Some(status)),
                        (kind, scenario.status),
                        "{context}"
                    );
                }
                (expect, result) => panic!("{context}: expected {expect:?}, got {result:?}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 19 * CommandKind::ALL.len());
}

#[test]
fn placing_records_lines_total_address_and_method() {
    let after = Given::<Order>::no_history()
        .when(&cmd_place())
        .then_events(&[placed()]);
    let order = after.details().unwrap();
    assert_eq!(order.status(), Status::Placed);
    assert_eq!(order.total(), eur(TOTAL));
    assert_eq!(order.lines().len(), 2);
    assert_eq!(order.refunded(), Money::zero(order.currency()));
}

#[test]
fn authorizing_a_different_amount_is_refused() {
    Given::<Order>::events(history(&[cmd_place(), cmd_reserve()]))
        .when(&OrderCommand::authorize_payment("pay-1", "EUR", TOTAL - 1).unwrap())
        .then_error(&OrderError::Rule(RuleViolation::AmountMismatch {
            field: "amount.amount_minor",
            expected: eur(TOTAL),
            found: eur(TOTAL - 1),
        }));
}

#[test]
fn authorizing_in_another_currency_is_refused() {
    let result = Given::<Order>::events(history(&[cmd_place(), cmd_reserve()]))
        .when(&OrderCommand::authorize_payment("pay-1", "USD", TOTAL).unwrap());
    assert!(matches!(
        result.result(),
        Err(OrderError::Rule(RuleViolation::CurrencyMismatch {
            field: "amount.currency",
            ..
        }))
    ));
}

#[test]
fn confirming_captures_the_authorized_amount() {
    let after = Given::<Order>::events(history(&[cmd_place(), cmd_reserve(), cmd_authorize()]))
        .when(&OrderCommand::ConfirmOrder)
        .then_events(&[OrderConfirmed {
            captured: eur(TOTAL),
        }
        .into()]);
    assert_eq!(after.details().unwrap().captured(), eur(TOTAL));
}

#[test]
fn cancelling_a_confirmed_order_owes_inventory_and_the_unrefunded_rest() {
    let confirmed = [
        cmd_place(),
        cmd_reserve(),
        cmd_authorize(),
        OrderCommand::ConfirmOrder,
    ];
    let after = Given::<Order>::events(history(
        &[confirmed.to_vec(), vec![cmd_refund(700)]].concat(),
    ))
    .when(&cmd_cancel())
    .then_events(&[CancellationRequested {
        reason: order_domain::values::Reason::parse("customer asked").unwrap(),
        release_inventory: true,
        payment: Some(PaymentCompensation {
            action: PaymentAction::Refund,
            amount: eur(TOTAL - 700),
        }),
    }
    .into()]);
    let order = after.details().unwrap();
    assert_eq!(order.status(), Status::CancellationPending);
    assert!(!order.pending_compensations().is_settled());
}

#[test]
fn cancelling_an_authorized_order_voids_the_authorization() {
    let after = Given::<Order>::events(history(&[
        cmd_place(),
        cmd_reserve(),
        cmd_authorize(),
        cmd_cancel(),
    ]))
    .when(&cmd_refund(TOTAL))
    .then_events(&[PaymentVoided { amount: eur(TOTAL) }.into()]);
    let order = after.details().unwrap();
    assert_eq!(order.pending_compensations().payment, None);
    assert_eq!(
        order.status(),
        Status::CancellationPending,
        "inventory is still owed"
    );
}

#[test]
fn the_last_compensation_cancels_the_order() {
    let after = Given::<Order>::events(history(&[
        cmd_place(),
        cmd_reserve(),
        cmd_authorize(),
        cmd_cancel(),
        cmd_refund(TOTAL),
    ]))
    .when(&OrderCommand::ReleaseInventory)
    .then_events(&[
        InventoryReleased {}.into(),
        OrderCancelled {
            reason: order_domain::values::Reason::parse("customer asked").unwrap(),
        }
        .into(),
    ]);
    assert_eq!(after.status(), Some(Status::Cancelled));
    assert!(
        after
            .details()
            .unwrap()
            .pending_compensations()
            .is_settled()
    );
}

#[test]
fn partial_refunds_add_up_to_at_most_the_captured_amount() {
    let confirmed = history(&[
        cmd_place(),
        cmd_reserve(),
        cmd_authorize(),
        OrderCommand::ConfirmOrder,
    ]);
    let mut state = Order::fold(&confirmed);
    for amount in [1000, 1500, 500] {
        for event in state.decide(&cmd_refund(amount)).unwrap() {
            state.evolve(&event);
        }
    }
    assert_eq!(state.details().unwrap().refunded(), eur(TOTAL));
    assert_eq!(
        state.decide(&cmd_refund(1)),
        Err(OrderError::Rule(RuleViolation::RefundExceedsCaptured {
            refundable: Money::zero(eur(1).currency()),
            requested: eur(1),
        }))
    );
}

#[test]
fn a_completed_order_takes_refunds_up_to_the_captured_amount_and_stays_completed() {
    let completed = history(&[
        cmd_place(),
        cmd_reserve(),
        cmd_authorize(),
        OrderCommand::ConfirmOrder,
        OrderCommand::StartFulfillment,
        cmd_ship(),
        OrderCommand::DeliverOrder,
        OrderCommand::CompleteOrder,
    ]);
    let mut state = Order::fold(&completed);
    for amount in [1000, TOTAL - 1000] {
        for event in state.decide(&cmd_refund(amount)).unwrap() {
            state.evolve(&event);
        }
        assert_eq!(state.status(), Some(Status::Completed));
    }
    assert_eq!(state.details().unwrap().refunded(), eur(TOTAL));
    assert!(matches!(
        state.decide(&cmd_refund(1)),
        Err(OrderError::Rule(
            RuleViolation::RefundExceedsCaptured { .. }
        ))
    ));
    assert!(
        state.decide(&cmd_cancel()).is_err(),
        "nothing else changes it"
    );
}

#[test]
fn refund_in_another_currency_is_refused() {
    let confirmed = history(&[
        cmd_place(),
        cmd_reserve(),
        cmd_authorize(),
        OrderCommand::ConfirmOrder,
    ]);
    let result = Order::fold(&confirmed).decide(&OrderCommand::refund_payment("USD", 100).unwrap());
    assert!(matches!(
        result,
        Err(OrderError::Rule(RuleViolation::CurrencyMismatch { .. }))
    ));
}

#[test]
fn shipping_records_carrier_and_tracking_number() {
    let after = Given::<Order>::events(history(&[
        cmd_place(),
        cmd_reserve(),
        cmd_authorize(),
        OrderCommand::ConfirmOrder,
        OrderCommand::StartFulfillment,
    ]))
    .when(&cmd_ship())
    .then_events(&[OrderShipped {
        carrier: order_domain::values::Carrier::parse("DHL").unwrap(),
        tracking_number: order_domain::values::TrackingNumber::parse("JD0001").unwrap(),
    }
    .into()]);
    let (carrier, tracking) = after.details().unwrap().shipment().unwrap();
    assert_eq!((carrier.as_str(), tracking.as_str()), ("DHL", "JD0001"));
}

#[test]
fn status_labels_round_trip() {
    for status in Status::ALL {
        assert_eq!(Status::parse(status.as_str()), Some(status));
    }
    assert_eq!(Order::default().status_label(), "NotPlaced");
}

#[test]
fn a_summary_refuses_events_before_placement_and_a_second_placement() {
    let reserved = history(&[cmd_place(), cmd_reserve()]);
    assert!(matches!(
        OrderSummary::fold(None, &reserved[1]),
        Err(SummaryError::NotPlaced { .. })
    ));
    let placed = OrderSummary::fold(None, &reserved[0]).unwrap();
    assert!(matches!(
        OrderSummary::fold(placed, &reserved[0]),
        Err(SummaryError::PlacedTwice)
    ));
}

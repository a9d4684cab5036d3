//! Property tests over random command sequences.

use order_domain::order::*;
use order_domain::{Aggregate, EventSchema};
use proptest::prelude::*;

use crate::support::*;

fn any_command() -> impl Strategy<Value = OrderCommand> {
    let kinds = proptest::sample::select(CommandKind::ALL.to_vec());
    (kinds, 1..=TOTAL + 500, prop::bool::ANY).prop_map(|(kind, amount, exact)| match kind {
        // Refunds and authorizations with random amounts exercise the money rules; the
        // exact amount often enough to also reach the happy paths.
        CommandKind::RefundPayment => cmd_refund(if exact { TOTAL } else { amount }),
        CommandKind::AuthorizePayment => {
            OrderCommand::authorize_payment("pay-1", "EUR", if exact { TOTAL } else { amount })
                .unwrap()
        }
        other => command_of(other),
    })
}

fn sequences() -> impl Strategy<Value = Vec<OrderCommand>> {
    // Start with a placement most of the time so that the sequence goes somewhere.
    (
        prop::bool::weighted(0.9),
        prop::collection::vec(any_command(), 0..40),
    )
        .prop_map(|(place_first, mut commands)| {
            if place_first {
                commands.insert(0, cmd_place());
            }
            commands
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_every_invariant(commands in sequences()) {
        let mut state = Order::default();
        let mut log = Vec::new();
        for command in &commands {
            let before = state.clone();
            let decided = state.decide(command);
            if let Some(status) = before.status().filter(|s| s.is_terminal()) {
                // A terminal status never changes; a completed order still takes refunds
                // (DESIGN: any state after PaymentAuthorized), and nothing else.
                let refund = matches!(command, OrderCommand::RefundPayment { .. });
                if status == Status::Cancelled || !refund {
                    prop_assert!(decided.is_err(), "{status} accepted {command:?}");
                }
            }
            let Ok(events) = decided else {
                prop_assert_eq!(&state, &before, "a refused command changed nothing");
                continue;
            };
            prop_assert!(!events.is_empty(), "{command:?} succeeded without an event");
            for event in &events {
                state.evolve(event);
                // Every event survives its persisted form unchanged.
                let payload = event.encode().unwrap();
                let decoded = OrderEvent::decode(event.event_type(), event.schema_version(), payload);
                prop_assert_eq!(decoded.as_ref(), Ok(event));
            }
            log.extend(events);
            if let Some(status) = before.status().filter(|s| s.is_terminal()) {
                prop_assert_eq!(state.status(), Some(status), "a terminal status changed");
            }

            if let Some(order) = state.details() {
                prop_assert!(order.refunded().amount_minor() <= order.captured().amount_minor());
                prop_assert!(order.captured().amount_minor() <= order.total().amount_minor());
                if order.status() == Status::Cancelled || order.status() == Status::Completed {
                    prop_assert!(order.pending_compensations().is_settled());
                }
            }
        }
        prop_assert_eq!(&Order::fold(&log), &state, "folding from scratch equals stepping");

        // The read model's summary agrees with the aggregate on every field it has.
        let mut summary = None;
        for event in &log {
            summary = OrderSummary::fold(summary, event).unwrap();
        }
        match (state.details(), summary) {
            (None, None) => {}
            (Some(order), Some(summary)) => {
                prop_assert_eq!(summary.status, order.status());
                prop_assert_eq!(summary.customer_id, order.customer_id());
                prop_assert_eq!(summary.total, order.total());
                prop_assert_eq!(summary.captured, order.captured());
                prop_assert_eq!(summary.refunded, order.refunded());
                prop_assert_eq!(summary.line_count as usize, order.lines().len());
            }
            (order, summary) => prop_assert!(false, "aggregate {:?} vs summary {:?}", order, summary),
        }
    }

    #[test]
    fn any_command_on_a_terminal_order_is_refused_but_a_completed_orders_refund(commands in prop::collection::vec(any_command(), 1..10)) {
        let cancelled = Order::fold(&history(&[cmd_place(), cmd_cancel()]));
        let completed = Order::fold(&history(&[cmd_place(), cmd_reserve(), cmd_authorize(),
            OrderCommand::ConfirmOrder, OrderCommand::StartFulfillment, cmd_ship(),
            OrderCommand::DeliverOrder, OrderCommand::CompleteOrder]));
        for command in &commands {
            prop_assert!(cancelled.decide(command).is_err(), "cancelled accepted {command:?}");
            match (command, completed.decide(command)) {
                (OrderCommand::RefundPayment { .. }, Ok(events)) => {
                    prop_assert!(events.iter().all(|e| e.event_type() == "PaymentRefunded"));
                }
                (OrderCommand::RefundPayment { .. }, Err(_)) => {} // too much, or another currency
                (_, decided) => prop_assert!(decided.is_err(), "completed accepted {command:?}"),
            }
        }
    }
}

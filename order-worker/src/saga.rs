//! The fulfillment saga as a table, with no I/O: which event asks for which step, which
//! commands a step may end in, the id of each command, and whether a step is still owed.
//!
//! | event | step | command(s) |
//! |---|---|---|
//! | OrderPlaced | inventory | ReserveInventory, or RejectInventory when out of stock |
//! | InventoryReserved | payment | AuthorizePayment (the order total), or FailPayment when declined |
//! | PaymentAuthorized | confirm | ConfirmOrder |
//! | OrderConfirmed | start_fulfillment | StartFulfillment |
//! | FulfillmentStarted | ship | ShipOrder (carrier, tracking number) |
//! | OrderShipped | deliver | DeliverOrder |
//! | OrderDelivered | complete | CompleteOrder |
//! | CancellationRequested | release_inventory, refund_payment | ReleaseInventory if `release_inventory`; RefundPayment(`payment_amount`) if a `payment_action` is set |
//! | anything else | none | none (acknowledged) |
//!
//! **Command ids.** The id of every command is a UUID v5 of the triggering event's id and the
//! command's name ([`command_id`]), so a redelivered message sends the very same command and
//! the service answers with the first result instead of acting again. The request is
//! deterministic too (provider references derive from the same id), so a repeat is a true
//! duplicate, never a "command id reused" error.
//!
//! **Owed or obsolete.** Orders never return to a state they left. A forward step is owed
//! while the order, as its log shows it now, is still in the state the triggering event put it
//! in (OrderPlaced: Placed, InventoryReserved: InventoryReserved, ...). Once it left that state,
//! by this step, by an earlier delivery of this message or by a cancellation, the step is
//! obsolete and the message is acknowledged. A compensation is owed while the order is
//! CancellationPending and its effect (InventoryReleased; PaymentVoided or PaymentRefunded) is
//! not in the log after the CancellationRequested event.
//!
//! **Imported holds.** An order imported from a legacy system (order-import) may be cancelled
//! live while its history holds a reservation or a payment the legacy system made (a synthetic
//! `import-<order uuid>` reservation, the legacy payment id). No provider of this system holds
//! them, so a compensation for such a hold ([`legacy_hold`]: the event that recorded it was
//! imported) calls no provider and records nothing: the message is dead-lettered
//! (`imported_hold`), its reason saying what to give back in the legacy system and which
//! command to record then. The log never says that stock or money went back before it did.

use order_proto::v1 as pb;
use uuid::Uuid;

use crate::providers::PaymentAction;

/// The namespace of the worker's command ids (UUID v5).
pub const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_722d_776f_726b_6572_2d63_6d64);

/// The id of `command` (a command name such as `ReserveInventory`) triggered by `event_id`,
/// which is also the idempotency key of the provider call its answer is recorded with.
///
/// Derived from the event's identity ([`order_domain::event_id::event_identity`]), not its
/// whole id: after a restore, an event appended again by the same command (a caller sending
/// it again with its command id, or this worker redoing a step whose record was lost) has a
/// new id of the same identity, so the provider sees the key it saw before and answers as
/// it did, instead of reserving, charging or shipping a second time. For ids of appends
/// before these (version 7), the identity is the id itself: their keys are as they were.
pub fn command_id(event_id: Uuid, command: &str) -> Uuid {
    let identity = order_domain::event_id::event_identity(event_id);
    Uuid::new_v5(
        &COMMAND_NAMESPACE,
        format!("{identity}/{command}").as_bytes(),
    )
}

/// One unit of saga work triggered by an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Inventory,
    Payment,
    Confirm,
    StartFulfillment,
    Ship,
    Deliver,
    Complete,
    ReleaseInventory,
    RefundPayment {
        amount: pb::Money,
        action: PaymentAction,
    },
}

impl Step {
    /// The step's name (the `step` label of the duration metric).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Inventory => "inventory",
            Self::Payment => "payment",
            Self::Confirm => "confirm",
            Self::StartFulfillment => "start_fulfillment",
            Self::Ship => "ship",
            Self::Deliver => "deliver",
            Self::Complete => "complete",
            Self::ReleaseInventory => "release_inventory",
            Self::RefundPayment { .. } => "refund_payment",
        }
    }

    /// The commands this step can end in: the success first, then the refusal, if any.
    pub fn commands(&self) -> &'static [&'static str] {
        match self {
            Self::Inventory => &["ReserveInventory", "RejectInventory"],
            Self::Payment => &["AuthorizePayment", "FailPayment"],
            Self::Confirm => &["ConfirmOrder"],
            Self::StartFulfillment => &["StartFulfillment"],
            Self::Ship => &["ShipOrder"],
            Self::Deliver => &["DeliverOrder"],
            Self::Complete => &["CompleteOrder"],
            Self::ReleaseInventory => &["ReleaseInventory"],
            Self::RefundPayment { .. } => &["RefundPayment"],
        }
    }
}

/// Whether events of this type ask for any work (cheap check before reading the log).
pub fn triggers(event_type: &str) -> bool {
    matches!(
        event_type,
        "OrderPlaced"
            | "InventoryReserved"
            | "PaymentAuthorized"
            | "OrderConfirmed"
            | "FulfillmentStarted"
            | "OrderShipped"
            | "OrderDelivered"
            | "CancellationRequested"
    )
}

/// The steps `event` (as the order's log holds it) asks for, in order. An error means the
/// event cannot be acted on (its payload is missing or malformed).
pub fn steps(event: &pb::Event) -> Result<Vec<Step>, String> {
    Ok(match event.event_type.as_str() {
        "OrderPlaced" => vec![Step::Inventory],
        "InventoryReserved" => vec![Step::Payment],
        "PaymentAuthorized" => vec![Step::Confirm],
        "OrderConfirmed" => vec![Step::StartFulfillment],
        "FulfillmentStarted" => vec![Step::Ship],
        "OrderShipped" => vec![Step::Deliver],
        "OrderDelivered" => vec![Step::Complete],
        "CancellationRequested" => {
            let Some(pb::event::Payload::CancellationRequested(cancel)) = &event.payload else {
                return Err("CancellationRequested event without its payload".to_owned());
            };
            let mut steps = Vec::new();
            if cancel.release_inventory {
                steps.push(Step::ReleaseInventory);
            }
            let action = match cancel.payment_action.as_str() {
                "" => None,
                "void" => Some(PaymentAction::Void),
                "refund" => Some(PaymentAction::Refund),
                other => return Err(format!("unknown payment_action {other:?}")),
            };
            if let Some(action) = action {
                let amount = cancel
                    .payment_amount
                    .clone()
                    .ok_or_else(|| "payment_action without payment_amount".to_owned())?;
                steps.push(Step::RefundPayment { amount, action });
            }
            steps
        }
        _ => Vec::new(),
    })
}

/// A command the saga sends, with its payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    ReserveInventory {
        reservation_id: String,
    },
    RejectInventory {
        reason: String,
    },
    AuthorizePayment {
        payment_id: String,
        amount: pb::Money,
    },
    FailPayment {
        reason: String,
    },
    ConfirmOrder,
    StartFulfillment,
    ShipOrder {
        carrier: String,
        tracking_number: String,
    },
    DeliverOrder,
    CompleteOrder,
    ReleaseInventory,
    RefundPayment {
        amount: pb::Money,
    },
}

impl Command {
    /// The RPC's name, also the step part of the command id.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ReserveInventory { .. } => "ReserveInventory",
            Self::RejectInventory { .. } => "RejectInventory",
            Self::AuthorizePayment { .. } => "AuthorizePayment",
            Self::FailPayment { .. } => "FailPayment",
            Self::ConfirmOrder => "ConfirmOrder",
            Self::StartFulfillment => "StartFulfillment",
            Self::ShipOrder { .. } => "ShipOrder",
            Self::DeliverOrder => "DeliverOrder",
            Self::CompleteOrder => "CompleteOrder",
            Self::ReleaseInventory => "ReleaseInventory",
            Self::RefundPayment { .. } => "RefundPayment",
        }
    }
}

/// The status an event leaves the order in (`None`: the event does not change it).
pub fn status_after(event_type: &str) -> Option<pb::OrderStatus> {
    use pb::OrderStatus as S;
    Some(match event_type {
        "OrderPlaced" => S::Placed,
        "InventoryReserved" => S::InventoryReserved,
        "PaymentAuthorized" => S::PaymentAuthorized,
        "OrderConfirmed" => S::Confirmed,
        "FulfillmentStarted" => S::Processing,
        "OrderShipped" => S::Shipped,
        "OrderDelivered" => S::Delivered,
        "OrderCompleted" => S::Completed,
        "CancellationRequested" => S::CancellationPending,
        "OrderCancelled" => S::Cancelled,
        _ => return None,
    })
}

/// An order's history as `GetOrderEvents` returned it (in stream order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderLog {
    events: Vec<pb::Event>,
}

impl OrderLog {
    pub fn new(events: Vec<pb::Event>) -> Self {
        Self { events }
    }

    /// The stream version of the last event (0 for an empty log).
    pub fn version(&self) -> u64 {
        self.events.last().map_or(0, |e| e.stream_version)
    }

    /// The global position of the last event (0 for an empty log): a later read of the log
    /// asks for at least this much (`min_position`).
    pub fn last_position(&self) -> u64 {
        self.events.last().map_or(0, |e| e.global_position)
    }

    /// The current status, folded from the event types.
    pub fn status(&self) -> Option<pb::OrderStatus> {
        self.events
            .iter()
            .filter_map(|e| status_after(&e.event_type))
            .next_back()
    }

    pub fn at(&self, version: u64) -> Option<&pb::Event> {
        self.events.iter().find(|e| e.stream_version == version)
    }

    pub fn placed(&self) -> Option<&pb::OrderPlaced> {
        self.events.iter().find_map(|e| match &e.payload {
            Some(pb::event::Payload::OrderPlaced(placed)) => Some(placed),
            _ => None,
        })
    }

    pub fn reservation_id(&self) -> Option<&str> {
        self.reservation().map(|(_, id)| id)
    }

    pub fn payment_id(&self) -> Option<&str> {
        self.authorization().map(|(_, id)| id)
    }

    /// The latest InventoryReserved event and its reservation reference.
    fn reservation(&self) -> Option<(&pb::Event, &str)> {
        self.events.iter().rev().find_map(|e| match &e.payload {
            Some(pb::event::Payload::InventoryReserved(r)) => Some((e, r.reservation_id.as_str())),
            _ => None,
        })
    }

    /// The latest PaymentAuthorized event and its payment reference.
    fn authorization(&self) -> Option<(&pb::Event, &str)> {
        self.events.iter().rev().find_map(|e| match &e.payload {
            Some(pb::event::Payload::PaymentAuthorized(p)) => Some((e, p.payment_id.as_str())),
            _ => None,
        })
    }

    /// Whether an event of one of `types` follows stream version `version`.
    pub fn has_after(&self, version: u64, types: &[&str]) -> bool {
        self.events
            .iter()
            .any(|e| e.stream_version > version && types.contains(&e.event_type.as_str()))
    }
}

/// Whether `event` was imported from a legacy system's history (order-import) rather than
/// written by a command: it names the legacy record it tells (`imported_from`).
pub fn imported(event: &pb::Event) -> bool {
    !event.imported_from.is_empty()
}

/// A hold a compensation would give back that the legacy system made, not this worker: the
/// event that recorded it (InventoryReserved, PaymentAuthorized) was imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyHold {
    /// `reservation` (stock), `authorization` (money to void) or `capture` (money to refund).
    pub kind: &'static str,
    /// The legacy system's reference as the import recorded it (the reservation id, a
    /// synthetic `import-<order uuid>`, or the legacy export's payment id).
    pub reference: String,
    /// The legacy record the event came from (`<source>:<legacy id>`, its `imported_from`):
    /// where to give the hold back.
    pub legacy_record: String,
}

/// The legacy hold `step` (a compensation) would undo, if its reference came with the order's
/// imported history. No provider of this system ever issued that reference, so the worker
/// must not ask one to undo it (it would answer 404, for ever), nor record it undone: the
/// hold is given back in the legacy system, by a person.
pub fn legacy_hold(step: &Step, log: &OrderLog) -> Option<LegacyHold> {
    let (kind, (event, reference)) = match step {
        Step::ReleaseInventory => ("reservation", log.reservation()?),
        Step::RefundPayment { action, .. } => (
            match action {
                PaymentAction::Void => "authorization",
                PaymentAction::Refund => "capture",
            },
            log.authorization()?,
        ),
        _ => return None,
    };
    imported(event).then(|| LegacyHold {
        kind,
        reference: reference.to_owned(),
        legacy_record: event.imported_from.clone(),
    })
}

/// Whether `step`, triggered by `trigger`, still has to happen given the order's `log` (see
/// the module documentation).
pub fn owed(step: &Step, trigger: &pb::Event, log: &OrderLog) -> bool {
    let status = log.status();
    match step {
        Step::ReleaseInventory => {
            status == Some(pb::OrderStatus::CancellationPending)
                && !log.has_after(trigger.stream_version, &["InventoryReleased"])
        }
        Step::RefundPayment { .. } => {
            status == Some(pb::OrderStatus::CancellationPending)
                && !log.has_after(
                    trigger.stream_version,
                    &["PaymentVoided", "PaymentRefunded"],
                )
        }
        _ => status.is_some() && status == status_after(&trigger.event_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(amount_minor: i64) -> pb::Money {
        pb::Money {
            currency: "EUR".into(),
            amount_minor,
        }
    }

    fn event(version: u64, event_type: &str) -> pb::Event {
        let payload = match event_type {
            "OrderPlaced" => Some(pb::event::Payload::OrderPlaced(pb::OrderPlaced {
                customer_id: "c".into(),
                total: Some(money(3000)),
                ..Default::default()
            })),
            "InventoryReserved" => Some(pb::event::Payload::InventoryReserved(
                pb::InventoryReserved {
                    reservation_id: format!("r{version}"),
                },
            )),
            _ => None,
        };
        pb::Event {
            event_id: Uuid::from_u128(u128::from(version)).to_string(),
            stream_version: version,
            event_type: event_type.to_owned(),
            payload,
            ..Default::default()
        }
    }

    fn cancellation(release: bool, action: &str, amount: Option<i64>) -> pb::Event {
        pb::Event {
            event_type: "CancellationRequested".into(),
            stream_version: 4,
            payload: Some(pb::event::Payload::CancellationRequested(
                pb::CancellationRequested {
                    reason: "customer asked".into(),
                    release_inventory: release,
                    payment_action: action.into(),
                    payment_amount: amount.map(money),
                },
            )),
            ..Default::default()
        }
    }

    fn log(types: &[&str]) -> OrderLog {
        OrderLog::new(
            types
                .iter()
                .enumerate()
                .map(|(i, t)| event(i as u64 + 1, t))
                .collect(),
        )
    }

    fn commands_for(event_type: &str) -> Vec<&'static str> {
        steps(&event(1, event_type))
            .unwrap()
            .iter()
            .flat_map(|s| s.commands().iter().copied())
            .collect()
    }

    #[test]
    fn the_saga_table_maps_each_event_to_its_commands() {
        let table = [
            ("OrderPlaced", vec!["ReserveInventory", "RejectInventory"]),
            ("InventoryReserved", vec!["AuthorizePayment", "FailPayment"]),
            ("PaymentAuthorized", vec!["ConfirmOrder"]),
            ("OrderConfirmed", vec!["StartFulfillment"]),
            ("FulfillmentStarted", vec!["ShipOrder"]),
            ("OrderShipped", vec!["DeliverOrder"]),
            ("OrderDelivered", vec!["CompleteOrder"]),
        ];
        for (event_type, commands) in table {
            assert!(triggers(event_type), "{event_type}");
            assert_eq!(commands_for(event_type), commands, "{event_type}");
        }
    }

    #[test]
    fn other_events_ask_for_nothing() {
        for event_type in [
            "OrderCompleted",
            "OrderCancelled",
            "InventoryUnavailable",
            "PaymentFailed",
            "InventoryReleased",
            "PaymentVoided",
            "PaymentRefunded",
            "SomethingNew",
        ] {
            assert!(!triggers(event_type), "{event_type}");
            assert!(commands_for(event_type).is_empty(), "{event_type}");
        }
    }

    #[test]
    fn a_cancellation_asks_for_the_compensations_it_lists() {
        assert_eq!(
            steps(&cancellation(true, "", None)).unwrap(),
            vec![Step::ReleaseInventory]
        );
        assert_eq!(
            steps(&cancellation(true, "void", Some(3000))).unwrap(),
            vec![
                Step::ReleaseInventory,
                Step::RefundPayment {
                    amount: money(3000),
                    action: PaymentAction::Void
                }
            ]
        );
        assert_eq!(
            steps(&cancellation(false, "refund", Some(500))).unwrap(),
            vec![Step::RefundPayment {
                amount: money(500),
                action: PaymentAction::Refund
            }]
        );
        assert!(steps(&cancellation(true, "refund", None)).is_err());
        assert!(steps(&cancellation(true, "barter", Some(1))).is_err());
        let mut bare = cancellation(true, "", None);
        bare.payload = None;
        assert!(steps(&bare).is_err());
    }

    #[test]
    fn a_hold_is_the_legacy_systems_when_the_event_that_recorded_it_was_imported() {
        let authorized = |command_id: &str| pb::Event {
            stream_version: 3,
            event_type: "PaymentAuthorized".into(),
            command_id: command_id.into(),
            payload: Some(pb::event::Payload::PaymentAuthorized(
                pb::PaymentAuthorized {
                    payment_id: "P-1".into(),
                    amount: Some(money(3000)),
                },
            )),
            ..Default::default()
        };
        let void = Step::RefundPayment {
            amount: money(3000),
            action: PaymentAction::Void,
        };
        let refund = Step::RefundPayment {
            amount: money(3000),
            action: PaymentAction::Refund,
        };
        // Imported: every event names its legacy record.
        let mut events = vec![event(1, "OrderPlaced"), event(2, "InventoryReserved")];
        events.push(authorized(""));
        for event in &mut events {
            event.imported_from = "legacy:A-1".into();
        }
        let imported = OrderLog::new(events.clone());
        let hold = |kind: &'static str, reference: &str| {
            Some(LegacyHold {
                kind,
                reference: reference.into(),
                legacy_record: "legacy:A-1".into(),
            })
        };
        assert_eq!(
            legacy_hold(&Step::ReleaseInventory, &imported),
            hold("reservation", "r2")
        );
        assert_eq!(legacy_hold(&void, &imported), hold("authorization", "P-1"));
        assert_eq!(legacy_hold(&refund, &imported), hold("capture", "P-1"));
        assert_eq!(legacy_hold(&Step::Inventory, &imported), None);
        // An imported reservation, then an authorization a command recorded: only the
        // reservation is the legacy system's.
        events[2] = authorized("7d0b5c3a-52f5-4b8a-9a55-b4f1e9a7c001");
        assert!(events[2].imported_from.is_empty());
        let mixed = OrderLog::new(events.clone());
        assert_eq!(
            legacy_hold(&Step::ReleaseInventory, &mixed),
            hold("reservation", "r2")
        );
        assert_eq!(legacy_hold(&void, &mixed), None);
        // Written by commands: nothing is the legacy system's. An event without a command id
        // is not taken for an imported one.
        for event in &mut events {
            event.imported_from.clear();
        }
        events[1].command_id.clear();
        let live = OrderLog::new(events);
        assert_eq!(legacy_hold(&Step::ReleaseInventory, &live), None);
        assert_eq!(legacy_hold(&void, &live), None);
    }

    #[test]
    fn command_ids_are_stable_and_distinct_per_event_and_command() {
        let event = Uuid::parse_str("0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001").unwrap();
        let reserve = command_id(event, "ReserveInventory");
        assert_eq!(reserve, command_id(event, "ReserveInventory"));
        assert_eq!(reserve.get_version_num(), 5);
        // Pinned: changing the derivation would make redeliveries across a deploy act twice.
        assert_eq!(
            reserve,
            Uuid::new_v5(
                &COMMAND_NAMESPACE,
                b"0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001/ReserveInventory"
            )
        );
        let names = [
            "ReserveInventory",
            "RejectInventory",
            "AuthorizePayment",
            "FailPayment",
            "ConfirmOrder",
            "StartFulfillment",
            "ShipOrder",
            "DeliverOrder",
            "CompleteOrder",
            "ReleaseInventory",
            "RefundPayment",
        ];
        let mut ids: Vec<Uuid> = names.iter().map(|n| command_id(event, n)).collect();
        ids.push(command_id(Uuid::from_u128(1), "ReserveInventory"));
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn an_event_appended_again_after_a_restore_gives_the_same_command_ids() {
        // The same command applied before and after a restore: new event ids, one identity.
        let command = Uuid::from_u128(0x5eed);
        let before = order_domain::event_id::command_event_id(command, 0, 1_764_990_000_000);
        let after = order_domain::event_id::command_event_id(command, 0, 1_764_993_600_000);
        assert_ne!(before, after);
        for name in [
            "ReserveInventory",
            "AuthorizePayment",
            "ShipOrder",
            "ReserveInventory/undo",
        ] {
            assert_eq!(command_id(before, name), command_id(after, name), "{name}");
        }
        // Another event of that command, or of another command: other ids.
        let second = order_domain::event_id::command_event_id(command, 1, 1_764_990_000_000);
        assert_ne!(
            command_id(before, "ShipOrder"),
            command_id(second, "ShipOrder")
        );
        let other =
            order_domain::event_id::command_event_id(Uuid::from_u128(1), 0, 1_764_990_000_000);
        assert_ne!(
            command_id(before, "ShipOrder"),
            command_id(other, "ShipOrder")
        );
    }

    #[test]
    fn a_forward_step_is_owed_only_while_the_order_is_where_the_event_left_it() {
        let placed = event(1, "OrderPlaced");
        assert!(owed(&Step::Inventory, &placed, &log(&["OrderPlaced"])));
        for later in [
            log(&["OrderPlaced", "InventoryReserved"]),
            log(&["OrderPlaced", "InventoryUnavailable", "OrderCancelled"]),
            log(&["OrderPlaced", "OrderCancelled"]),
        ] {
            assert!(!owed(&Step::Inventory, &placed, &later), "{later:?}");
        }
        let confirmed = event(4, "OrderConfirmed");
        let history = [
            "OrderPlaced",
            "InventoryReserved",
            "PaymentAuthorized",
            "OrderConfirmed",
        ];
        assert!(owed(&Step::StartFulfillment, &confirmed, &log(&history)));
        let mut refunded = history.to_vec();
        refunded.push("PaymentRefunded");
        assert!(
            owed(&Step::StartFulfillment, &confirmed, &log(&refunded)),
            "a partial refund does not move the order"
        );
        let mut cancelling = history.to_vec();
        cancelling.push("CancellationRequested");
        assert!(!owed(
            &Step::StartFulfillment,
            &confirmed,
            &log(&cancelling)
        ));
        assert!(!owed(&Step::Inventory, &placed, &OrderLog::default()));
    }

    #[test]
    fn a_compensation_is_owed_until_its_effect_is_in_the_log() {
        let history = [
            "OrderPlaced",
            "InventoryReserved",
            "PaymentAuthorized",
            "CancellationRequested",
        ];
        let trigger = cancellation(true, "void", Some(3000));
        let refund = Step::RefundPayment {
            amount: money(3000),
            action: PaymentAction::Void,
        };
        let pending = log(&history);
        assert!(owed(&Step::ReleaseInventory, &trigger, &pending));
        assert!(owed(&refund, &trigger, &pending));

        let mut released = history.to_vec();
        released.push("InventoryReleased");
        assert!(!owed(&Step::ReleaseInventory, &trigger, &log(&released)));
        assert!(owed(&refund, &trigger, &log(&released)));

        released.push("PaymentVoided");
        released.push("OrderCancelled");
        assert!(!owed(&Step::ReleaseInventory, &trigger, &log(&released)));
        assert!(!owed(&refund, &trigger, &log(&released)));
    }

    #[test]
    fn the_log_answers_what_the_steps_need() {
        let log = log(&["OrderPlaced", "InventoryReserved", "PaymentRefunded"]);
        assert_eq!(log.version(), 3);
        assert_eq!(log.status(), Some(pb::OrderStatus::InventoryReserved));
        assert_eq!(log.reservation_id(), Some("r2"));
        assert_eq!(log.payment_id(), None);
        assert_eq!(
            log.placed().and_then(|p| p.total.clone()),
            Some(money(3000))
        );
        assert_eq!(
            log.at(2).map(|e| e.event_type.as_str()),
            Some("InventoryReserved")
        );
        assert!(log.has_after(2, &["PaymentRefunded"]));
        assert!(!log.has_after(3, &["PaymentRefunded"]));
    }
}

//! The Order aggregate: its state machine, decisions and evolution.
//!
//! ```text
//! Placed -> InventoryReserved -> PaymentAuthorized -> Confirmed -> Processing -> Shipped -> Delivered -> Completed
//!    \            \                    \                 \
//!     `------------`--------------------`-----------------`--> CancellationPending -> Cancelled
//! Placed -> Cancelled (nothing to compensate)      InventoryUnavailable / PaymentFailed -> Cancelled
//! Refunds: Confirmed..Completed, partial, summing to at most the captured amount.
//! ```

mod command;
mod event;
mod schema;
mod summary;

use std::fmt;

pub use command::{
    CommandKind, LineInput, MAX_LINES, OrderCommand, OrderLine, PlaceOrder, PlaceOrderInput,
};
pub use event::*;
pub use schema::upcasters;
pub use summary::{OrderSummary, SummaryError};

use crate::es::Aggregate;
use crate::money::{Currency, Money};
use crate::values::{
    Address, Carrier, CustomerId, PaymentId, Reason, ReservationId, ShippingMethod, TrackingNumber,
};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Placed; nothing reserved or paid yet.
    Placed,
    /// Inventory reserved.
    InventoryReserved,
    /// Payment authorized.
    PaymentAuthorized,
    /// Confirmed, the payment captured.
    Confirmed,
    /// Being fulfilled.
    Processing,
    /// Shipped.
    Shipped,
    /// Delivered.
    Delivered,
    /// Completed (final).
    Completed,
    /// Cancellation asked for; compensations owed.
    CancellationPending,
    /// Cancelled (final).
    Cancelled,
}

impl Status {
    /// Every status, in the order of the state machine.
    pub const ALL: [Status; 10] = [
        Self::Placed,
        Self::InventoryReserved,
        Self::PaymentAuthorized,
        Self::Confirmed,
        Self::Processing,
        Self::Shipped,
        Self::Delivered,
        Self::Completed,
        Self::CancellationPending,
        Self::Cancelled,
    ];

    /// The status's name (e.g. `Placed`), as stored in the read model.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "Placed",
            Self::InventoryReserved => "InventoryReserved",
            Self::PaymentAuthorized => "PaymentAuthorized",
            Self::Confirmed => "Confirmed",
            Self::Processing => "Processing",
            Self::Shipped => "Shipped",
            Self::Delivered => "Delivered",
            Self::Completed => "Completed",
            Self::CancellationPending => "CancellationPending",
            Self::Cancelled => "Cancelled",
        }
    }

    /// The inverse of [`Status::as_str`].
    pub fn parse(label: &str) -> Option<Status> {
        Self::ALL.into_iter().find(|s| s.as_str() == label)
    }

    /// Completed and Cancelled orders never change status again (a completed order still
    /// takes refunds of its captured money).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }

    /// States in which captured money may be partially refunded: every state after
    /// PaymentAuthorized on the way to completion, Completed included (a return after the
    /// order was closed). A cancellation refunds through its own compensation.
    fn accepts_refunds(self) -> bool {
        matches!(
            self,
            Self::Confirmed | Self::Processing | Self::Shipped | Self::Delivered | Self::Completed
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state-dependent rule a command broke (its input was well-formed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleViolation {
    /// An amount is in another currency than the order.
    #[error("{field} is in {found} but the order is in {expected}")]
    CurrencyMismatch {
        /// The command field.
        field: &'static str,
        /// The order's currency.
        expected: Currency,
        /// The field's currency.
        found: Currency,
    },
    /// An amount differs from the one the rule requires.
    #[error("{field} must be exactly {expected}, got {found}")]
    AmountMismatch {
        /// The command field.
        field: &'static str,
        /// The amount required.
        expected: Money,
        /// The amount given.
        found: Money,
    },
    /// A refund above what was captured and not yet refunded.
    #[error("refund of {requested} exceeds the refundable {refundable}")]
    RefundExceedsCaptured {
        /// What can still be refunded.
        refundable: Money,
        /// What was asked for.
        requested: Money,
    },
}

impl RuleViolation {
    /// The command field the rule is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::CurrencyMismatch { field, .. } | Self::AmountMismatch { field, .. } => field,
            Self::RefundExceedsCaptured { .. } => "amount",
        }
    }
}

/// Why an order refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// No order with that id was placed.
    #[error("the order does not exist")]
    NotFound,
    /// An order with that id exists already.
    #[error("the order already exists")]
    AlreadyExists,
    /// The command is not allowed in the order's status.
    #[error("{command} is not allowed when the order is {status}")]
    InvalidTransition {
        /// The command refused.
        command: CommandKind,
        /// The order's status.
        status: Status,
    },
    /// A rule about the command's values.
    #[error(transparent)]
    Rule(#[from] RuleViolation),
}

/// Compensations still owed before a pending cancellation completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingCompensations {
    /// Reserved inventory must be released.
    pub release_inventory: bool,
    /// A payment must be voided or refunded.
    pub payment: Option<PaymentCompensation>,
}

impl PendingCompensations {
    /// True when nothing is owed any more.
    pub fn is_settled(&self) -> bool {
        !self.release_inventory && self.payment.is_none()
    }
}

/// The state of a placed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDetails {
    status: Status,
    customer_id: CustomerId,
    lines: Vec<OrderLine>,
    total: Money,
    shipping_address: Address,
    shipping_method: ShippingMethod,
    reservation_id: Option<ReservationId>,
    payment_id: Option<PaymentId>,
    authorized: Money,
    captured: Money,
    refunded: Money,
    shipment: Option<(Carrier, TrackingNumber)>,
    pending: PendingCompensations,
    cancellation_reason: Option<Reason>,
}

impl OrderDetails {
    /// Where the order is in its life.
    pub fn status(&self) -> Status {
        self.status
    }
    /// Who ordered.
    pub fn customer_id(&self) -> CustomerId {
        self.customer_id
    }
    /// What was ordered.
    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
    }
    /// The order's currency.
    pub fn currency(&self) -> Currency {
        self.total.currency()
    }
    /// The sum of the lines.
    pub fn total(&self) -> Money {
        self.total
    }
    /// Where it ships.
    pub fn shipping_address(&self) -> &Address {
        &self.shipping_address
    }
    /// How fast it ships.
    pub fn shipping_method(&self) -> ShippingMethod {
        self.shipping_method
    }
    /// The inventory reservation, once reserved.
    pub fn reservation_id(&self) -> Option<&ReservationId> {
        self.reservation_id.as_ref()
    }
    /// The payment, once authorized.
    pub fn payment_id(&self) -> Option<&PaymentId> {
        self.payment_id.as_ref()
    }
    /// The authorized amount (0 before authorization or after a void).
    pub fn authorized(&self) -> Money {
        self.authorized
    }
    /// The captured amount.
    pub fn captured(&self) -> Money {
        self.captured
    }
    /// The refunded amount.
    pub fn refunded(&self) -> Money {
        self.refunded
    }
    /// Carrier and tracking number, once shipped.
    pub fn shipment(&self) -> Option<(&Carrier, &TrackingNumber)> {
        self.shipment.as_ref().map(|(c, t)| (c, t))
    }
    /// Compensations owed by a pending cancellation.
    pub fn pending_compensations(&self) -> PendingCompensations {
        self.pending
    }
    /// Why it was cancelled, once a cancellation was asked for.
    pub fn cancellation_reason(&self) -> Option<&Reason> {
        self.cancellation_reason.as_ref()
    }

    /// Captured money not yet refunded.
    pub fn refundable(&self) -> Money {
        self.captured
            .checked_sub(self.refunded)
            .unwrap_or(Money::zero(self.currency()))
    }
}

/// The Order aggregate: nothing until placed, then [`OrderDetails`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Order {
    details: Option<OrderDetails>,
}

impl Order {
    /// The order's state, or `None` while it was never placed.
    pub fn details(&self) -> Option<&OrderDetails> {
        self.details.as_ref()
    }

    /// The order's status, or `None` while it was never placed.
    pub fn status(&self) -> Option<Status> {
        self.details.as_ref().map(|d| d.status)
    }
}

fn transition(command: CommandKind, status: Status) -> OrderError {
    OrderError::InvalidTransition { command, status }
}

fn check_currency(field: &'static str, expected: Currency, found: Money) -> Result<(), OrderError> {
    if found.currency() != expected {
        return Err(RuleViolation::CurrencyMismatch {
            field,
            expected,
            found: found.currency(),
        }
        .into());
    }
    Ok(())
}

fn cancelled(reason: Reason) -> OrderEvent {
    OrderCancelled { reason }.into()
}

impl Aggregate for Order {
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    const CATEGORY: &'static str = "order";

    fn decide(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        let Some(order) = &self.details else {
            return match command {
                OrderCommand::PlaceOrder(place) => Ok(vec![
                    OrderPlaced {
                        customer_id: place.customer_id(),
                        lines: place.lines().to_vec(),
                        total: place.total(),
                        shipping_address: place.shipping_address().clone(),
                        shipping_method: place.shipping_method(),
                    }
                    .into(),
                ]),
                _ => Err(OrderError::NotFound),
            };
        };
        let kind = command.kind();
        let status = order.status;
        let refuse = || Err(transition(kind, status));
        use Status as S;
        match (command, status) {
            (OrderCommand::PlaceOrder(_), _) => Err(OrderError::AlreadyExists),

            (OrderCommand::ReserveInventory { reservation_id }, S::Placed) => Ok(vec![
                InventoryReserved {
                    reservation_id: reservation_id.clone(),
                }
                .into(),
            ]),
            (OrderCommand::RejectInventory { reason }, S::Placed) => Ok(vec![
                InventoryUnavailable {
                    reason: reason.clone(),
                }
                .into(),
                cancelled(reason.clone()),
            ]),

            (OrderCommand::AuthorizePayment { payment_id, amount }, S::InventoryReserved) => {
                check_currency("amount.currency", order.currency(), *amount)?;
                if *amount != order.total {
                    return Err(RuleViolation::AmountMismatch {
                        field: "amount.amount_minor",
                        expected: order.total,
                        found: *amount,
                    }
                    .into());
                }
                Ok(vec![
                    PaymentAuthorized {
                        payment_id: payment_id.clone(),
                        amount: *amount,
                    }
                    .into(),
                ])
            }
            (OrderCommand::FailPayment { reason }, S::InventoryReserved) => Ok(vec![
                PaymentFailed {
                    reason: reason.clone(),
                }
                .into(),
                CancellationRequested {
                    reason: reason.clone(),
                    release_inventory: true,
                    payment: None,
                }
                .into(),
            ]),

            (OrderCommand::ConfirmOrder, S::PaymentAuthorized) => Ok(vec![
                OrderConfirmed {
                    captured: order.authorized,
                }
                .into(),
            ]),
            (OrderCommand::StartFulfillment, S::Confirmed) => {
                Ok(vec![FulfillmentStarted {}.into()])
            }
            (
                OrderCommand::ShipOrder {
                    carrier,
                    tracking_number,
                },
                S::Processing,
            ) => Ok(vec![
                OrderShipped {
                    carrier: carrier.clone(),
                    tracking_number: tracking_number.clone(),
                }
                .into(),
            ]),
            (OrderCommand::DeliverOrder, S::Shipped) => Ok(vec![OrderDelivered {}.into()]),
            (OrderCommand::CompleteOrder, S::Delivered) => Ok(vec![OrderCompleted {}.into()]),

            (OrderCommand::CancelOrder { reason }, S::Placed) => {
                Ok(vec![cancelled(reason.clone())])
            }
            (
                OrderCommand::CancelOrder { reason },
                S::InventoryReserved | S::PaymentAuthorized | S::Confirmed,
            ) => {
                let payment = match status {
                    S::PaymentAuthorized => Some(PaymentCompensation {
                        action: PaymentAction::Void,
                        amount: order.authorized,
                    }),
                    S::Confirmed if !order.refundable().is_zero() => Some(PaymentCompensation {
                        action: PaymentAction::Refund,
                        amount: order.refundable(),
                    }),
                    _ => None,
                };
                Ok(vec![
                    CancellationRequested {
                        reason: reason.clone(),
                        release_inventory: true,
                        payment,
                    }
                    .into(),
                ])
            }

            (OrderCommand::ReleaseInventory, S::CancellationPending)
                if order.pending.release_inventory =>
            {
                let mut events = vec![InventoryReleased {}.into()];
                if order.pending.payment.is_none() {
                    events.push(cancelled(self.cancellation_reason()));
                }
                Ok(events)
            }
            (OrderCommand::RefundPayment { amount }, S::CancellationPending) => {
                let Some(owed) = order.pending.payment else {
                    return refuse();
                };
                check_currency("amount.currency", order.currency(), *amount)?;
                if *amount != owed.amount {
                    return Err(RuleViolation::AmountMismatch {
                        field: "amount.amount_minor",
                        expected: owed.amount,
                        found: *amount,
                    }
                    .into());
                }
                let mut events = vec![match owed.action {
                    PaymentAction::Void => PaymentVoided { amount: *amount }.into(),
                    PaymentAction::Refund => PaymentRefunded { amount: *amount }.into(),
                }];
                if !order.pending.release_inventory {
                    events.push(cancelled(self.cancellation_reason()));
                }
                Ok(events)
            }
            (OrderCommand::RefundPayment { amount }, status) if status.accepts_refunds() => {
                check_currency("amount.currency", order.currency(), *amount)?;
                let refundable = order.refundable();
                if amount.amount_minor() > refundable.amount_minor() {
                    return Err(RuleViolation::RefundExceedsCaptured {
                        refundable,
                        requested: *amount,
                    }
                    .into());
                }
                Ok(vec![PaymentRefunded { amount: *amount }.into()])
            }

            _ => refuse(),
        }
    }

    fn evolve(&mut self, event: &OrderEvent) {
        if let OrderEvent::OrderPlaced(placed) = event {
            let zero = Money::zero(placed.total.currency());
            self.details = Some(OrderDetails {
                status: Status::Placed,
                customer_id: placed.customer_id,
                lines: placed.lines.clone(),
                total: placed.total,
                shipping_address: placed.shipping_address.clone(),
                shipping_method: placed.shipping_method,
                reservation_id: None,
                payment_id: None,
                authorized: zero,
                captured: zero,
                refunded: zero,
                shipment: None,
                pending: PendingCompensations::default(),
                cancellation_reason: None,
            });
            return;
        }
        // Events of a stream that was never placed cannot be produced by `decide`; a log that
        // holds them anyway is left as it is rather than guessed at.
        let Some(order) = self.details.as_mut() else {
            return;
        };
        match event {
            OrderEvent::OrderPlaced(_) => {}
            OrderEvent::InventoryReserved(e) => {
                order.status = Status::InventoryReserved;
                order.reservation_id = Some(e.reservation_id.clone());
            }
            OrderEvent::InventoryUnavailable(_) => {}
            OrderEvent::PaymentAuthorized(e) => {
                order.status = Status::PaymentAuthorized;
                order.payment_id = Some(e.payment_id.clone());
                order.authorized = e.amount;
            }
            OrderEvent::PaymentFailed(_) => {}
            OrderEvent::OrderConfirmed(e) => {
                order.status = Status::Confirmed;
                order.captured = e.captured;
            }
            OrderEvent::FulfillmentStarted(_) => order.status = Status::Processing,
            OrderEvent::OrderShipped(e) => {
                order.status = Status::Shipped;
                order.shipment = Some((e.carrier.clone(), e.tracking_number.clone()));
            }
            OrderEvent::OrderDelivered(_) => order.status = Status::Delivered,
            OrderEvent::OrderCompleted(_) => order.status = Status::Completed,
            OrderEvent::CancellationRequested(e) => {
                order.status = Status::CancellationPending;
                order.cancellation_reason = Some(e.reason.clone());
                order.pending = PendingCompensations {
                    release_inventory: e.release_inventory,
                    payment: e.payment,
                };
            }
            OrderEvent::InventoryReleased(_) => order.pending.release_inventory = false,
            OrderEvent::PaymentVoided(_) => {
                order.pending.payment = None;
                order.authorized = Money::zero(order.currency());
            }
            OrderEvent::PaymentRefunded(e) => {
                if order.status == Status::CancellationPending {
                    order.pending.payment = None;
                }
                order.refunded = order
                    .refunded
                    .checked_add(e.amount)
                    .unwrap_or(order.refunded);
            }
            OrderEvent::OrderCancelled(e) => {
                order.status = Status::Cancelled;
                order.cancellation_reason = Some(e.reason.clone());
                order.pending = PendingCompensations::default();
            }
        }
    }

    fn creates_stream(command: &OrderCommand) -> bool {
        matches!(command, OrderCommand::PlaceOrder(_))
    }

    fn status_label(&self) -> &'static str {
        self.status().map_or("NotPlaced", Status::as_str)
    }
}

impl Order {
    /// The reason recorded when cancellation was requested (always present in
    /// CancellationPending; the fallback only guards a malformed log).
    fn cancellation_reason(&self) -> Reason {
        self.details
            .as_ref()
            .and_then(|d| d.cancellation_reason.clone())
            .unwrap_or_else(|| Reason::from_static("cancelled"))
    }
}

//! Commands: what callers ask of an order. Constructing one validates every stateless rule;
//! the rules that depend on the order's state live in `decide`.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{FieldExt, ValidationError, Violation};
use crate::money::{MAX_AMOUNT_MINOR, Money};
use crate::values::{
    Address, AddressInput, Carrier, CustomerId, PaymentId, Quantity, Reason, ReservationId,
    ShippingMethod, Sku, TrackingNumber,
};

/// Most lines one order may have.
pub const MAX_LINES: usize = 100;

/// One line of an order: a SKU, how many, and the price of one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawOrderLine")]
pub struct OrderLine {
    sku: Sku,
    quantity: Quantity,
    unit_price: Money,
}

impl OrderLine {
    /// A line whose unit price is positive and whose line total stays within the bound.
    pub fn new(sku: Sku, quantity: Quantity, unit_price: Money) -> Result<Self, ValidationError> {
        if unit_price.is_zero() {
            return Err(ValidationError::new(
                "unit_price.amount_minor",
                Violation::OutOfRange {
                    min: 1,
                    max: MAX_AMOUNT_MINOR,
                },
            ));
        }
        if unit_price.checked_mul(quantity.get()).is_none() {
            return Err(ValidationError::new(
                "quantity",
                Violation::TotalTooLarge {
                    max: MAX_AMOUNT_MINOR,
                },
            ));
        }
        Ok(Self {
            sku,
            quantity,
            unit_price,
        })
    }

    /// The article.
    pub fn sku(&self) -> &Sku {
        &self.sku
    }
    /// How many.
    pub fn quantity(&self) -> Quantity {
        self.quantity
    }
    /// The price of one unit.
    pub fn unit_price(&self) -> Money {
        self.unit_price
    }

    /// `quantity * unit_price`; within bounds by construction.
    pub fn total(&self) -> Money {
        self.unit_price
            .checked_mul(self.quantity.get())
            .unwrap_or(self.unit_price)
    }
}

/// The persisted shape of [`OrderLine`]; decoding validates through [`OrderLine::new`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrderLine {
    sku: Sku,
    quantity: Quantity,
    unit_price: Money,
}

impl TryFrom<RawOrderLine> for OrderLine {
    type Error = ValidationError;
    fn try_from(raw: RawOrderLine) -> Result<Self, Self::Error> {
        OrderLine::new(raw.sku, raw.quantity, raw.unit_price)
    }
}

/// Place a new order. Lines are non-empty, at most [`MAX_LINES`], one currency, each SKU
/// once, and the total within [`MAX_AMOUNT_MINOR`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlaceOrder {
    customer_id: CustomerId,
    lines: Vec<OrderLine>,
    total: Money,
    shipping_address: Address,
    shipping_method: ShippingMethod,
}

impl PlaceOrder {
    /// A placement of `lines` (see the type's rules; the total is computed).
    pub fn new(
        customer_id: CustomerId,
        lines: Vec<OrderLine>,
        shipping_address: Address,
        shipping_method: ShippingMethod,
    ) -> Result<Self, ValidationError> {
        let total = order_total(&lines)?;
        Ok(Self {
            customer_id,
            lines,
            total,
            shipping_address,
            shipping_method,
        })
    }

    /// Who orders.
    pub fn customer_id(&self) -> CustomerId {
        self.customer_id
    }
    /// What is ordered.
    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
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
}

/// One order line as raw API values.
#[derive(Debug, Clone, Default)]
pub struct LineInput<'a> {
    /// The article's SKU.
    pub sku: &'a str,
    /// How many (1 to the quantity bound).
    pub quantity: i64,
    /// ISO-4217 currency of the unit price.
    pub currency: &'a str,
    /// The price of one unit in minor units.
    pub unit_price_minor: i64,
}

/// A placement as raw API values; [`PlaceOrder::parse`] validates it.
#[derive(Debug, Clone, Default)]
pub struct PlaceOrderInput<'a> {
    /// The customer's id (a UUID).
    pub customer_id: &'a str,
    /// The lines.
    pub lines: Vec<LineInput<'a>>,
    /// `None` when the caller sent no address.
    pub shipping_address: Option<AddressInput<'a>>,
    /// `None` when the caller sent no method or one this version does not know.
    pub shipping_method: Option<ShippingMethod>,
}

impl PlaceOrder {
    /// Validate raw API values, naming the first offending field. The number of lines is
    /// checked before any line is looked at, so an oversized request costs nothing.
    pub fn parse(input: &PlaceOrderInput<'_>) -> Result<Self, ValidationError> {
        let customer_id = CustomerId::parse(input.customer_id).field("customer_id")?;
        if input.lines.len() > MAX_LINES {
            return Err(ValidationError::new(
                "lines",
                Violation::TooMany { max: MAX_LINES },
            ));
        }
        let lines = input
            .lines
            .iter()
            .enumerate()
            .map(|(index, line)| parse_line(line).field(&format!("lines[{index}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let address = input
            .shipping_address
            .as_ref()
            .ok_or_else(|| ValidationError::new("shipping_address", Violation::Missing))?;
        let address = Address::parse(address).field("shipping_address")?;
        let method = input
            .shipping_method
            .ok_or_else(|| ValidationError::new("shipping_method", Violation::UnknownValue))?;
        Self::new(customer_id, lines, address, method)
    }
}

fn parse_line(line: &LineInput<'_>) -> Result<OrderLine, ValidationError> {
    let sku = Sku::parse(line.sku).field("sku")?;
    let quantity = Quantity::new(line.quantity).field("quantity")?;
    let price = Money::parse_positive(line.currency, line.unit_price_minor).field("unit_price")?;
    OrderLine::new(sku, quantity, price)
}

/// The checked sum of the lines, enforcing every rule about the list as a whole.
pub(crate) fn order_total(lines: &[OrderLine]) -> Result<Money, ValidationError> {
    let Some(first) = lines.first() else {
        return Err(ValidationError::new("lines", Violation::NoEntries));
    };
    if lines.len() > MAX_LINES {
        return Err(ValidationError::new(
            "lines",
            Violation::TooMany { max: MAX_LINES },
        ));
    }
    let currency = first.unit_price.currency();
    let mut total = Money::zero(currency);
    let mut seen = HashSet::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        let at = |field: &str| format!("lines[{index}].{field}");
        if line.unit_price.currency() != currency {
            return Err(ValidationError::new(
                at("unit_price.currency"),
                Violation::MixedCurrency {
                    expected: currency.to_string(),
                    found: line.unit_price.currency().to_string(),
                },
            ));
        }
        if !seen.insert(line.sku.as_str()) {
            return Err(ValidationError::new(
                at("sku"),
                Violation::Duplicate {
                    value: line.sku.to_string(),
                },
            ));
        }
        total = total.checked_add(line.total()).ok_or_else(|| {
            ValidationError::new(
                at("quantity"),
                Violation::TotalTooLarge {
                    max: MAX_AMOUNT_MINOR,
                },
            )
        })?;
    }
    Ok(total)
}

/// Everything a caller can ask of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum OrderCommand {
    /// Place a new order.
    PlaceOrder(PlaceOrder),
    /// Record the inventory reservation.
    ReserveInventory {
        /// The inventory system's reservation.
        reservation_id: ReservationId,
    },
    /// Inventory is unavailable: the order is cancelled.
    RejectInventory {
        /// Why.
        reason: Reason,
    },
    /// Record the payment authorization (of exactly the order's total).
    AuthorizePayment {
        /// The payment provider's id.
        payment_id: PaymentId,
        /// The authorized amount.
        amount: Money,
    },
    /// The payment failed: compensations, then cancelled.
    FailPayment {
        /// Why.
        reason: Reason,
    },
    /// Confirm the order, capturing the payment.
    ConfirmOrder,
    /// Start fulfilment.
    StartFulfillment,
    /// Record the shipment.
    ShipOrder {
        /// Who carries it.
        carrier: Carrier,
        /// The carrier's tracking number.
        tracking_number: TrackingNumber,
    },
    /// Record the delivery.
    DeliverOrder,
    /// Complete the order.
    CompleteOrder,
    /// Cancel: at once, or through compensations when something was reserved or paid.
    CancelOrder {
        /// Why.
        reason: Reason,
    },
    /// Record that the reserved inventory was released (a compensation).
    ReleaseInventory,
    /// Refund captured money (a compensation, or a partial refund).
    RefundPayment {
        /// How much.
        amount: Money,
    },
}

/// The kind of a command without its data, named as the RPC that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandKind {
    /// [`OrderCommand::PlaceOrder`].
    PlaceOrder,
    /// [`OrderCommand::ReserveInventory`].
    ReserveInventory,
    /// [`OrderCommand::RejectInventory`].
    RejectInventory,
    /// [`OrderCommand::AuthorizePayment`].
    AuthorizePayment,
    /// [`OrderCommand::FailPayment`].
    FailPayment,
    /// [`OrderCommand::ConfirmOrder`].
    ConfirmOrder,
    /// [`OrderCommand::StartFulfillment`].
    StartFulfillment,
    /// [`OrderCommand::ShipOrder`].
    ShipOrder,
    /// [`OrderCommand::DeliverOrder`].
    DeliverOrder,
    /// [`OrderCommand::CompleteOrder`].
    CompleteOrder,
    /// [`OrderCommand::CancelOrder`].
    CancelOrder,
    /// [`OrderCommand::ReleaseInventory`].
    ReleaseInventory,
    /// [`OrderCommand::RefundPayment`].
    RefundPayment,
}

impl CommandKind {
    /// Every kind, in the order of the state machine.
    pub const ALL: [CommandKind; 13] = [
        Self::PlaceOrder,
        Self::ReserveInventory,
        Self::RejectInventory,
        Self::AuthorizePayment,
        Self::FailPayment,
        Self::ConfirmOrder,
        Self::StartFulfillment,
        Self::ShipOrder,
        Self::DeliverOrder,
        Self::CompleteOrder,
        Self::CancelOrder,
        Self::ReleaseInventory,
        Self::RefundPayment,
    ];

    /// The kind's name, as the RPC that carries it (e.g. `PlaceOrder`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlaceOrder => "PlaceOrder",
            Self::ReserveInventory => "ReserveInventory",
            Self::RejectInventory => "RejectInventory",
            Self::AuthorizePayment => "AuthorizePayment",
            Self::FailPayment => "FailPayment",
            Self::ConfirmOrder => "ConfirmOrder",
            Self::StartFulfillment => "StartFulfillment",
            Self::ShipOrder => "ShipOrder",
            Self::DeliverOrder => "DeliverOrder",
            Self::CompleteOrder => "CompleteOrder",
            Self::CancelOrder => "CancelOrder",
            Self::ReleaseInventory => "ReleaseInventory",
            Self::RefundPayment => "RefundPayment",
        }
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OrderCommand {
    /// The command's kind.
    pub fn kind(&self) -> CommandKind {
        match self {
            Self::PlaceOrder(_) => CommandKind::PlaceOrder,
            Self::ReserveInventory { .. } => CommandKind::ReserveInventory,
            Self::RejectInventory { .. } => CommandKind::RejectInventory,
            Self::AuthorizePayment { .. } => CommandKind::AuthorizePayment,
            Self::FailPayment { .. } => CommandKind::FailPayment,
            Self::ConfirmOrder => CommandKind::ConfirmOrder,
            Self::StartFulfillment => CommandKind::StartFulfillment,
            Self::ShipOrder { .. } => CommandKind::ShipOrder,
            Self::DeliverOrder => CommandKind::DeliverOrder,
            Self::CompleteOrder => CommandKind::CompleteOrder,
            Self::CancelOrder { .. } => CommandKind::CancelOrder,
            Self::ReleaseInventory => CommandKind::ReleaseInventory,
            Self::RefundPayment { .. } => CommandKind::RefundPayment,
        }
    }
}

/// Convenience constructors that validate raw API values and name the offending field.
impl OrderCommand {
    /// [`OrderCommand::ReserveInventory`], validating the reservation id.
    pub fn reserve_inventory(reservation_id: &str) -> Result<Self, ValidationError> {
        Ok(Self::ReserveInventory {
            reservation_id: ReservationId::parse(reservation_id).field("reservation_id")?,
        })
    }

    /// [`OrderCommand::RejectInventory`], validating the reason.
    pub fn reject_inventory(reason: &str) -> Result<Self, ValidationError> {
        Ok(Self::RejectInventory {
            reason: Reason::parse(reason).field("reason")?,
        })
    }

    /// [`OrderCommand::AuthorizePayment`], validating the payment id and amount.
    pub fn authorize_payment(
        payment_id: &str,
        currency: &str,
        amount_minor: i64,
    ) -> Result<Self, ValidationError> {
        Ok(Self::AuthorizePayment {
            payment_id: PaymentId::parse(payment_id).field("payment_id")?,
            amount: Money::parse_positive(currency, amount_minor).field("amount")?,
        })
    }

    /// [`OrderCommand::FailPayment`], validating the reason.
    pub fn fail_payment(reason: &str) -> Result<Self, ValidationError> {
        Ok(Self::FailPayment {
            reason: Reason::parse(reason).field("reason")?,
        })
    }

    /// [`OrderCommand::ShipOrder`], validating the carrier and tracking number.
    pub fn ship_order(carrier: &str, tracking_number: &str) -> Result<Self, ValidationError> {
        Ok(Self::ShipOrder {
            carrier: Carrier::parse(carrier).field("carrier")?,
            tracking_number: TrackingNumber::parse(tracking_number).field("tracking_number")?,
        })
    }

    /// [`OrderCommand::CancelOrder`], validating the reason.
    pub fn cancel_order(reason: &str) -> Result<Self, ValidationError> {
        Ok(Self::CancelOrder {
            reason: Reason::parse(reason).field("reason")?,
        })
    }

    /// [`OrderCommand::RefundPayment`], validating the amount (positive).
    pub fn refund_payment(currency: &str, amount_minor: i64) -> Result<Self, ValidationError> {
        Ok(Self::RefundPayment {
            amount: Money::parse_positive(currency, amount_minor).field("amount")?,
        })
    }
}

//! Builders for valid commands and histories.

use order_domain::order::*;
use order_domain::values::{Address, AddressInput, CustomerId, Quantity, ShippingMethod, Sku};
use order_domain::{Money, OrderCommand, OrderEvent};

pub const CUSTOMER: &str = "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001";

pub fn eur(amount_minor: i64) -> Money {
    Money::parse_positive("EUR", amount_minor).unwrap()
}

pub fn address() -> Address {
    Address::parse(&AddressInput {
        recipient: "Ada Lovelace",
        line1: "12 St James's Square",
        city: "London",
        postal_code: "SW1Y 4JH",
        country: "GB",
        ..AddressInput::default()
    })
    .unwrap()
}

pub fn line(sku: &str, quantity: i64, unit_price: Money) -> OrderLine {
    OrderLine::new(
        Sku::parse(sku).unwrap(),
        Quantity::new(quantity).unwrap(),
        unit_price,
    )
    .unwrap()
}

/// Two lines: 2 x 12.50 + 1 x 5.00 = 30.00 EUR.
pub fn place_order() -> PlaceOrder {
    PlaceOrder::new(
        CustomerId::parse(CUSTOMER).unwrap(),
        vec![line("SKU-1", 2, eur(1250)), line("SKU-2", 1, eur(500))],
        address(),
        ShippingMethod::Express,
    )
    .unwrap()
}

pub const TOTAL: i64 = 3000;

pub fn placed() -> OrderEvent {
    let place = place_order();
    OrderPlaced {
        customer_id: place.customer_id(),
        lines: place.lines().to_vec(),
        total: place.total(),
        shipping_address: place.shipping_address().clone(),
        shipping_method: place.shipping_method(),
    }
    .into()
}

pub fn cmd_place() -> OrderCommand {
    OrderCommand::PlaceOrder(place_order())
}
pub fn cmd_reserve() -> OrderCommand {
    OrderCommand::reserve_inventory("res-1").unwrap()
}
pub fn cmd_reject() -> OrderCommand {
    OrderCommand::reject_inventory("out of stock").unwrap()
}
pub fn cmd_authorize() -> OrderCommand {
    OrderCommand::authorize_payment("pay-1", "EUR", TOTAL).unwrap()
}
pub fn cmd_fail_payment() -> OrderCommand {
    OrderCommand::fail_payment("card declined").unwrap()
}
pub fn cmd_ship() -> OrderCommand {
    OrderCommand::ship_order("DHL", "JD0001").unwrap()
}
pub fn cmd_cancel() -> OrderCommand {
    OrderCommand::cancel_order("customer asked").unwrap()
}
pub fn cmd_refund(amount_minor: i64) -> OrderCommand {
    OrderCommand::refund_payment("EUR", amount_minor).unwrap()
}

/// One valid command of every kind, with amounts that fit the standard order.
pub fn command_of(kind: CommandKind) -> OrderCommand {
    match kind {
        CommandKind::PlaceOrder => cmd_place(),
        CommandKind::ReserveInventory => cmd_reserve(),
        CommandKind::RejectInventory => cmd_reject(),
        CommandKind::AuthorizePayment => cmd_authorize(),
        CommandKind::FailPayment => cmd_fail_payment(),
        CommandKind::ConfirmOrder => OrderCommand::ConfirmOrder,
        CommandKind::StartFulfillment => OrderCommand::StartFulfillment,
        CommandKind::ShipOrder => cmd_ship(),
        CommandKind::DeliverOrder => OrderCommand::DeliverOrder,
        CommandKind::CompleteOrder => OrderCommand::CompleteOrder,
        CommandKind::CancelOrder => cmd_cancel(),
        CommandKind::ReleaseInventory => OrderCommand::ReleaseInventory,
        // The full captured amount: what a pending cancellation owes, and refundable in full.
        CommandKind::RefundPayment => cmd_refund(TOTAL),
    }
}

/// Apply commands from scratch, panicking on a refusal; returns the history.
pub fn history(commands: &[OrderCommand]) -> Vec<OrderEvent> {
    use order_domain::Aggregate;
    let mut state = Order::default();
    let mut events = Vec::new();
    for command in commands {
        let produced = state
            .decide(command)
            .unwrap_or_else(|e| panic!("{command:?} refused while building a history: {e}"));
        for event in &produced {
            state.evolve(event);
        }
        events.extend(produced);
    }
    events
}

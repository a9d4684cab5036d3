//! The protobuf boundary: requests become domain commands through `TryFrom` (every violation
//! names its field), and domain events and states become protobuf messages.

use std::time::SystemTime;

use order_domain::order::{
    LineInput, OrderEvent, PaymentAction, PlaceOrder, PlaceOrderInput, Status,
};
use order_domain::values::{AddressInput, OrderId, ShippingMethod};
use order_domain::{Money, OrderCommand, ValidationError, Violation};
use order_proto::v1 as pb;
use order_store::{Cursor, RecordedEvent};
use uuid::Uuid;

/// Largest accepted `expected_version`.
const MAX_EXPECTED_VERSION: u64 = 1 << 40;

/// A validated command with its envelope.
#[derive(Debug, Clone)]
pub struct ParsedCommand {
    pub command_id: Uuid,
    pub order_id: OrderId,
    pub expected_version: Option<u64>,
    pub command: OrderCommand,
}

/// Everything wrong with a request, one entry per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequest(pub Vec<ValidationError>);

/// Parse a UUID field, recording a violation instead of failing early, so that one answer
/// names every bad field of the envelope.
fn uuid_field(field: &str, text: &str, violations: &mut Vec<ValidationError>) -> Option<Uuid> {
    match OrderId::parse(text) {
        Ok(id) => Some(id.as_uuid()),
        Err(violation) => {
            violations.push(ValidationError::new(field, violation));
            None
        }
    }
}

fn parse_command(
    command_id: &str,
    order_id: &str,
    expected_version: Option<u64>,
    command: Result<OrderCommand, ValidationError>,
) -> Result<ParsedCommand, InvalidRequest> {
    let mut violations = Vec::new();
    let command_id = uuid_field("command_id", command_id, &mut violations);
    let order_id = uuid_field("order_id", order_id, &mut violations)
        .and_then(|id| OrderId::from_uuid(id).ok());
    if let Some(version) = expected_version
        && version > MAX_EXPECTED_VERSION
    {
        violations.push(ValidationError::new(
            "expected_version",
            Violation::OutOfRange {
                min: 0,
                max: MAX_EXPECTED_VERSION as i64,
            },
        ));
    }
    let command = command.map_err(|e| violations.push(e)).ok();
    match (command_id, order_id, command) {
        (Some(command_id), Some(order_id), Some(command)) if violations.is_empty() => {
            Ok(ParsedCommand {
                command_id,
                order_id,
                expected_version,
                command,
            })
        }
        _ => Err(InvalidRequest(violations)),
    }
}

fn money(field: &str, money: Option<&pb::Money>) -> Result<Money, ValidationError> {
    let money = money.ok_or_else(|| ValidationError::new(field, Violation::Missing))?;
    Money::parse_positive(&money.currency, money.amount_minor).map_err(|e| e.within(field))
}

fn shipping_method(value: i32) -> Option<ShippingMethod> {
    match pb::ShippingMethod::try_from(value) {
        Ok(pb::ShippingMethod::Standard) => Some(ShippingMethod::Standard),
        Ok(pb::ShippingMethod::Express) => Some(ShippingMethod::Express),
        Ok(pb::ShippingMethod::Overnight) => Some(ShippingMethod::Overnight),
        // Unspecified or a value this version does not know.
        _ => None,
    }
}

/// A method left unset (the enum's zero, which is also what a client that never set the
/// field sends) is missing, like any other required field; the domain only learns that
/// there is no method it knows, which is the answer for any other value.
fn unset_shipping_method(value: i32, error: ValidationError) -> ValidationError {
    if value == pb::ShippingMethod::Unspecified as i32 && error.field == "shipping_method" {
        ValidationError::new("shipping_method", Violation::Missing)
    } else {
        error
    }
}

impl TryFrom<pb::PlaceOrderRequest> for ParsedCommand {
    type Error = InvalidRequest;

    fn try_from(request: pb::PlaceOrderRequest) -> Result<Self, Self::Error> {
        let mut line_errors = None;
        let lines: Vec<LineInput<'_>> = request
            .lines
            .iter()
            .enumerate()
            .map(|(index, line)| match &line.unit_price {
                Some(price) => LineInput {
                    sku: &line.sku,
                    quantity: line.quantity,
                    currency: &price.currency,
                    unit_price_minor: price.amount_minor,
                },
                None => {
                    line_errors.get_or_insert_with(|| {
                        ValidationError::new(
                            format!("lines[{index}].unit_price"),
                            Violation::Missing,
                        )
                    });
                    LineInput::default()
                }
            })
            .collect();
        let address = request.shipping_address.as_ref().map(|a| AddressInput {
            recipient: &a.recipient,
            line1: &a.line1,
            line2: &a.line2,
            city: &a.city,
            region: &a.region,
            postal_code: &a.postal_code,
            country: &a.country,
        });
        let command = match line_errors {
            Some(error) => Err(error),
            None => PlaceOrder::parse(&PlaceOrderInput {
                customer_id: &request.customer_id,
                lines,
                shipping_address: address,
                shipping_method: shipping_method(request.shipping_method),
            })
            .map(OrderCommand::PlaceOrder)
            .map_err(|e| unset_shipping_method(request.shipping_method, e)),
        };
        parse_command(
            &request.command_id,
            &request.order_id,
            request.expected_version,
            command,
        )
    }
}

/// Requests whose command is built by one domain constructor from their own fields.
macro_rules! simple_request {
    ($request:ty, |$r:ident| $command:expr) => {
        impl TryFrom<$request> for ParsedCommand {
            type Error = InvalidRequest;

            fn try_from($r: $request) -> Result<Self, Self::Error> {
                let command: Result<OrderCommand, ValidationError> = $command;
                parse_command(&$r.command_id, &$r.order_id, $r.expected_version, command)
            }
        }
    };
}

simple_request!(pb::ReserveInventoryRequest, |r| {
    OrderCommand::reserve_inventory(&r.reservation_id)
});
simple_request!(pb::RejectInventoryRequest, |r| {
    OrderCommand::reject_inventory(&r.reason)
});
simple_request!(pb::AuthorizePaymentRequest, |r| {
    match (
        order_domain::values::PaymentId::parse(r.payment_id.as_str()),
        money("amount", r.amount.as_ref()),
    ) {
        (Err(violation), _) => Err(ValidationError::new("payment_id", violation)),
        (_, Err(error)) => Err(error),
        (Ok(payment_id), Ok(amount)) => Ok(OrderCommand::AuthorizePayment { payment_id, amount }),
    }
});
simple_request!(pb::FailPaymentRequest, |r| OrderCommand::fail_payment(
    &r.reason
));
simple_request!(pb::ConfirmOrderRequest, |r| Ok(OrderCommand::ConfirmOrder));
simple_request!(pb::StartFulfillmentRequest, |r| Ok(
    OrderCommand::StartFulfillment
));
simple_request!(pb::ShipOrderRequest, |r| OrderCommand::ship_order(
    &r.carrier,
    &r.tracking_number
));
simple_request!(pb::DeliverOrderRequest, |r| Ok(OrderCommand::DeliverOrder));
simple_request!(pb::CompleteOrderRequest, |r| Ok(
    OrderCommand::CompleteOrder
));
simple_request!(pb::CancelOrderRequest, |r| OrderCommand::cancel_order(
    &r.reason
));
simple_request!(pb::ReleaseInventoryRequest, |r| Ok(
    OrderCommand::ReleaseInventory
));
simple_request!(pb::RefundPaymentRequest, |r| money(
    "amount",
    r.amount.as_ref()
)
.map(|amount| OrderCommand::RefundPayment { amount }));

/// Parse an order id of a query.
pub fn order_id(text: &str) -> Result<OrderId, InvalidRequest> {
    OrderId::parse(text).map_err(|v| InvalidRequest(vec![ValidationError::new("order_id", v)]))
}

// ------------------------------------------------------------------ domain -> protobuf

pub fn status(status: Status) -> pb::OrderStatus {
    match status {
        Status::Placed => pb::OrderStatus::Placed,
        Status::InventoryReserved => pb::OrderStatus::InventoryReserved,
        Status::PaymentAuthorized => pb::OrderStatus::PaymentAuthorized,
        Status::Confirmed => pb::OrderStatus::Confirmed,
        Status::Processing => pb::OrderStatus::Processing,
        Status::Shipped => pb::OrderStatus::Shipped,
        Status::Delivered => pb::OrderStatus::Delivered,
        Status::Completed => pb::OrderStatus::Completed,
        Status::CancellationPending => pb::OrderStatus::CancellationPending,
        Status::Cancelled => pb::OrderStatus::Cancelled,
    }
}

/// The protobuf status of a recorded status label (`Unspecified` for an unknown label).
pub fn status_label(label: &str) -> pb::OrderStatus {
    Status::parse(label).map_or(pb::OrderStatus::Unspecified, status)
}

/// The domain status of a protobuf status filter (`None` for unspecified or unknown).
pub fn status_filter(value: i32) -> Option<Status> {
    let wanted = pb::OrderStatus::try_from(value).ok()?;
    Status::ALL.into_iter().find(|s| status(*s) == wanted)
}

pub fn money_pb(money: Money) -> pb::Money {
    pb::Money {
        currency: money.currency().code().to_owned(),
        amount_minor: money.amount_minor(),
    }
}

pub fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

fn shipping_method_pb(method: ShippingMethod) -> pb::ShippingMethod {
    match method {
        ShippingMethod::Standard => pb::ShippingMethod::Standard,
        ShippingMethod::Express => pb::ShippingMethod::Express,
        ShippingMethod::Overnight => pb::ShippingMethod::Overnight,
    }
}

fn payload(event: &OrderEvent) -> pb::event::Payload {
    use pb::event::Payload as P;
    match event {
        OrderEvent::OrderPlaced(e) => P::OrderPlaced(pb::OrderPlaced {
            customer_id: e.customer_id.to_string(),
            lines: e
                .lines
                .iter()
                .map(|l| pb::OrderLine {
                    sku: l.sku().to_string(),
                    quantity: i64::from(l.quantity().get()),
                    unit_price: Some(money_pb(l.unit_price())),
                })
                .collect(),
            total: Some(money_pb(e.total)),
            shipping_address: Some(pb::Address {
                recipient: e.shipping_address.recipient().to_owned(),
                line1: e.shipping_address.line1().to_owned(),
                line2: e.shipping_address.line2().unwrap_or_default().to_owned(),
                city: e.shipping_address.city().to_owned(),
                region: e.shipping_address.region().unwrap_or_default().to_owned(),
                postal_code: e.shipping_address.postal_code().to_owned(),
                country: e.shipping_address.country().to_owned(),
            }),
            shipping_method: shipping_method_pb(e.shipping_method) as i32,
        }),
        OrderEvent::InventoryReserved(e) => P::InventoryReserved(pb::InventoryReserved {
            reservation_id: e.reservation_id.to_string(),
        }),
        OrderEvent::InventoryUnavailable(e) => P::InventoryUnavailable(pb::InventoryUnavailable {
            reason: e.reason.to_string(),
        }),
        OrderEvent::PaymentAuthorized(e) => P::PaymentAuthorized(pb::PaymentAuthorized {
            payment_id: e.payment_id.to_string(),
            amount: Some(money_pb(e.amount)),
        }),
        OrderEvent::PaymentFailed(e) => P::PaymentFailed(pb::PaymentFailed {
            reason: e.reason.to_string(),
        }),
        OrderEvent::OrderConfirmed(e) => P::OrderConfirmed(pb::OrderConfirmed {
            captured: Some(money_pb(e.captured)),
        }),
        OrderEvent::FulfillmentStarted(_) => P::FulfillmentStarted(pb::FulfillmentStarted {}),
        OrderEvent::OrderShipped(e) => P::OrderShipped(pb::OrderShipped {
            carrier: e.carrier.to_string(),
            tracking_number: e.tracking_number.to_string(),
        }),
        OrderEvent::OrderDelivered(_) => P::OrderDelivered(pb::OrderDelivered {}),
        OrderEvent::OrderCompleted(_) => P::OrderCompleted(pb::OrderCompleted {}),
        OrderEvent::CancellationRequested(e) => {
            P::CancellationRequested(pb::CancellationRequested {
                reason: e.reason.to_string(),
                release_inventory: e.release_inventory,
                payment_action: e
                    .payment
                    .map(|p| match p.action {
                        PaymentAction::Void => "void",
                        PaymentAction::Refund => "refund",
                    })
                    .unwrap_or_default()
                    .to_owned(),
                payment_amount: e.payment.map(|p| money_pb(p.amount)),
            })
        }
        OrderEvent::InventoryReleased(_) => P::InventoryReleased(pb::InventoryReleased {}),
        OrderEvent::PaymentVoided(e) => P::PaymentVoided(pb::PaymentVoided {
            amount: Some(money_pb(e.amount)),
        }),
        OrderEvent::PaymentRefunded(e) => P::PaymentRefunded(pb::PaymentRefunded {
            amount: Some(money_pb(e.amount)),
        }),
        OrderEvent::OrderCancelled(e) => P::OrderCancelled(pb::OrderCancelled {
            reason: e.reason.to_string(),
        }),
    }
}

/// An event's cursor as the API gives it: its place in the gap-safe delivery order and its id,
/// `<transaction id>-<global position>-<event id, 32 hex digits>`, so that a resume can tell
/// the event apart from another a new primary wrote at the same place after a failover lost it.
pub fn api_cursor(recorded: &RecordedEvent) -> String {
    format!("{}-{}", recorded.cursor(), recorded.event_id.simple())
}

/// Parse a cursor [`api_cursor`] gave, or one without the event id (as given before it was
/// added): the place, and the event id when given.
pub fn parse_api_cursor(text: &str) -> Option<(Cursor, Option<Uuid>)> {
    let mut parts = text.splitn(3, '-');
    let (xid, position) = (parts.next()?, parts.next()?);
    let cursor = format!("{xid}-{position}").parse::<Cursor>().ok()?;
    match parts.next() {
        None => Some((cursor, None)),
        Some(id) if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some((cursor, Some(Uuid::try_parse(id).ok()?)))
        }
        Some(_) => None,
    }
}

/// A recorded event as the API shows it (payload decoded and upcast).
pub fn event_pb(recorded: &RecordedEvent) -> Result<pb::Event, order_store::Error> {
    let envelope = recorded.decode::<OrderEvent>()?;
    let metadata = &recorded.metadata;
    let text = |value: Option<Uuid>| value.map(|v| v.to_string()).unwrap_or_default();
    Ok(pb::Event {
        event_id: recorded.event_id.to_string(),
        order_id: recorded.stream_id.to_string(),
        stream_version: recorded.stream_version,
        global_position: recorded.global_position,
        cursor: api_cursor(recorded),
        event_type: recorded.event_type.clone(),
        schema_version: u32::from(recorded.schema_version),
        recorded_at: Some(timestamp(recorded.recorded_at)),
        correlation_id: metadata.correlation_id.clone().unwrap_or_default(),
        causation_id: text(metadata.causation_id),
        command_id: text(metadata.command_id),
        imported_from: recorded.imported_from.clone().unwrap_or_default(),
        payload: Some(payload(&envelope.event)),
    })
}

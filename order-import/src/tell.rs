//! Telling a legacy order's history in this system's events, through the domain's own rules.
//!
//! A legacy order becomes the commands that would have produced its history (place it, then
//! for each status of its history the steps of the state machine that lead there, with its
//! refunds at their times), and each command goes through [`Order::decide`] exactly as a live
//! command does. Whatever the domain refuses (an unknown currency, a negative quantity, a
//! refund above what was captured, a status the state machine cannot reach from the previous
//! one) rejects the whole order: nothing of it is written.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use order_domain::order::{LineInput, PlaceOrder, PlaceOrderInput};
use order_domain::values::{AddressInput, ShippingMethod};
use order_domain::{Aggregate, EventSchema, Order, OrderCommand, OrderEvent, Status};
use order_store::import::MAX_IMPORTED_FROM_LEN;
use order_store::{ImportedEvent, ImportedStream};
use uuid::Uuid;

use crate::legacy::{LegacyOrder, LegacyStatus};

/// The namespace of every id the import derives (UUID v5): stream ids from
/// `<source>:order:<legacy order id>`, customer ids from `<source>:customer:<legacy customer
/// id>`; an event's id is built from its order's placement time, its stream id and the UUID
/// v5 of its stream version in its stream id's namespace ([`Ids::event`]). Fixed forever: a
/// second run must name the same streams and events.
pub const IMPORT_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_726c_6564_6765_7269_6d70_6f72);

/// The legacy statuses the import understands, in the order of the state machine.
pub const LEGACY_STATUSES: &[&str] = &[
    "placed",
    "reserved",
    "authorized",
    "paid",
    "processing",
    "shipped",
    "delivered",
    "completed",
    "cancelled",
    "payment_failed",
    "out_of_stock",
];

/// The longest legacy order or customer id, in bytes.
pub const MAX_LEGACY_ID_LEN: usize = 200;

/// Ids derived from a legacy source's records.
#[derive(Debug, Clone)]
pub struct Ids {
    source: String,
}

impl Ids {
    /// Ids of the source `source` (the same legacy id in two sources gives two orders).
    pub fn new(source: &str) -> Self {
        Self {
            source: source.to_owned(),
        }
    }

    /// The source's name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The stream (order) id of a legacy order.
    pub fn order(&self, legacy_id: &str) -> Uuid {
        Uuid::new_v5(
            &IMPORT_NAMESPACE,
            format!("{}:order:{legacy_id}", self.source).as_bytes(),
        )
    }

    /// The customer id of a legacy customer.
    pub fn customer(&self, legacy_id: &str) -> Uuid {
        Uuid::new_v5(
            &IMPORT_NAMESPACE,
            format!("{}:customer:{legacy_id}", self.source).as_bytes(),
        )
    }

    /// The id of the event at `version` of `stream`, an order placed at `placed_at`: a
    /// time-ordered UUID (version 7, RFC 9562) whose time is the order's placement (Unix
    /// milliseconds), whose next 12 bits are the stream id's (those after its version nibble)
    /// and whose last 62 bits are the last 62 bits of the UUID v5 of the version (decimal) in
    /// the stream id's namespace.
    ///
    /// Deterministic like the rest (a second run of the export names the same events), and
    /// the reason for its shape is speed: the log's unique index on event ids is a B-tree, and
    /// ids that start with the placement time put an order's events side by side, and orders
    /// placed close together (an export sorted by legacy id is, nearly always, sorted by time)
    /// close together, so a bulk import appends near the index's newest pages, which stay in
    /// memory, instead of reading and writing back one random page of it per order. Two events
    /// collide only if their orders were placed in the same millisecond and their ids agree on
    /// 74 hashed bits.
    pub fn event(stream: Uuid, placed_at: SystemTime, version: usize) -> Uuid {
        let hashed = Uuid::new_v5(&stream, version.to_string().as_bytes());
        let millis = placed_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis())
            .min((1 << 48) - 1) as u64;
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        bytes[6] = 0x70 | (stream.as_bytes()[6] & 0x0f);
        bytes[7] = stream.as_bytes()[7];
        // The variant bits (10) come with the hash.
        bytes[8..].copy_from_slice(&hashed.as_bytes()[8..]);
        Uuid::from_bytes(bytes)
    }

    /// Whether `logged`, an id the log holds at `version` of `stream`, is one that an earlier
    /// `order-import` derived for the event that is told now as `told` (docs/import.md,
    /// "Ids"): until 2026-12-03 the whole UUID v5 of the version in the stream id's namespace,
    /// then until 2026-12-04 the stream id's first 8 bytes and that UUID's last 8. Orders
    /// imported then keep those ids, and a run over them compares everything else. Only for
    /// a `told` id of this derivation (its last 8 bytes are that UUID's, as they were in both
    /// earlier ones).
    pub fn earlier_event_id(stream: Uuid, version: u64, told: Uuid, logged: Uuid) -> bool {
        let hashed = Uuid::new_v5(&stream, version.to_string().as_bytes());
        if told.as_bytes()[8..] != hashed.as_bytes()[8..] {
            return false;
        }
        let mut halves = *stream.as_bytes();
        halves[8..].copy_from_slice(&hashed.as_bytes()[8..]);
        logged == hashed || logged == Uuid::from_bytes(halves)
    }
}

/// Why a legacy order cannot be imported.
pub type Refusal = String;

/// Check a legacy order or customer id: not blank, at most [`MAX_LEGACY_ID_LEN`] bytes, no
/// control characters.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), Refusal> {
    if id.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if id.len() > MAX_LEGACY_ID_LEN {
        return Err(format!("{what} is longer than {MAX_LEGACY_ID_LEN} bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(())
}

/// How far past now a legacy time may be: the clocks of the legacy system, of the machine
/// that exported it and of this one may disagree by that much. A later time (a year 2999
/// placeholder, a wrong time zone taken for UTC) is refused, naming its field: it would put
/// the order in the future of every read model and of ListOrders' newest-first order.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

fn time(field: &str, text: &str) -> Result<SystemTime, Refusal> {
    time_before(field, text, SystemTime::now() + MAX_CLOCK_SKEW)
}

/// [`time`], refusing a time later than `latest`.
fn time_before(field: &str, text: &str, latest: SystemTime) -> Result<SystemTime, Refusal> {
    let refusal = |why: String| {
        format!(
            "{field}: {text:?} is not an RFC 3339 time in UTC from 1970 on, ending in Z \
                 or +00:00 (like 2019-03-04T10:15:00Z) ({why})"
        )
    };
    let utc = match time_shape(text) {
        Ok(utc) => utc,
        Err(why) => return Err(refusal(why.into())),
    };
    let at = humantime::parse_rfc3339(&utc).map_err(|e| refusal(e.to_string()))?;
    if at > latest {
        return Err(format!(
            "{field}: {text:?} is in the future (later than now plus {} minutes, the clock \
             skew allowed)",
            MAX_CLOCK_SKEW.as_secs() / 60
        ));
    }
    Ok(at)
}

/// Whether `text` is a time as the import reads one (RFC 3339 in UTC from 1970 on), whenever
/// it is: the form of the field, not whether the order may have it.
pub(crate) fn is_time(text: &str) -> bool {
    time_shape(text).is_ok_and(|utc| humantime::parse_rfc3339(&utc).is_ok())
}

/// Whether `status` is one of [`LEGACY_STATUSES`], as the import reads a status.
pub(crate) fn is_status(status: &str) -> bool {
    target(status).is_some()
}

/// `YYYY-MM-DDTHH:MM:SS`, an optional fraction of 1 to 9 digits, then `Z`, `+00:00` or
/// `-00:00` and nothing else; the time with a `Z` for the last two (RFC 3339 section 4.3:
/// both say the time is in UTC, `-00:00` that the local offset is unknown, which changes
/// nothing here). Second 60 (a leap second, which the log cannot hold) is refused rather than
/// moved. humantime alone lets some other endings through, and takes no offset.
fn time_shape(text: &str) -> Result<Cow<'_, str>, &'static str> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let at = |index: usize, byte: u8| bytes.get(index) == Some(&byte);
    if !(digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b'T')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19))
    {
        return Err("not in the form YYYY-MM-DDTHH:MM:SS");
    }
    if bytes[17] > b'5' {
        return Err("second 60 or more");
    }
    let rest = &bytes[19..];
    let fraction = match rest.strip_prefix(b".") {
        Some(after) => {
            let n = after.iter().take_while(|b| b.is_ascii_digit()).count();
            if !(1..=9).contains(&n) {
                return Err("a fraction of a second has 1 to 9 digits");
            }
            &after[n..]
        }
        None => rest,
    };
    match fraction {
        b"Z" => Ok(Cow::Borrowed(text)),
        // All ASCII up to here: the offset is the last 6 bytes.
        b"+00:00" | b"-00:00" => Ok(Cow::Owned(format!("{}Z", &text[..text.len() - 6]))),
        _ => Err("it must end in a single Z, +00:00 or -00:00"),
    }
}

/// One step of the history: a command at a time.
struct Step {
    at: SystemTime,
    command: OrderCommand,
    what: String,
}

/// Where a legacy status leads in the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A status of the main path (placed ... completed).
    Reach(Status),
    Cancelled,
    PaymentFailed,
    OutOfStock,
}

fn target(status: &str) -> Option<Target> {
    Some(match status {
        "placed" => Target::Reach(Status::Placed),
        "reserved" => Target::Reach(Status::InventoryReserved),
        "authorized" => Target::Reach(Status::PaymentAuthorized),
        "paid" => Target::Reach(Status::Confirmed),
        "processing" => Target::Reach(Status::Processing),
        "shipped" => Target::Reach(Status::Shipped),
        "delivered" => Target::Reach(Status::Delivered),
        "completed" => Target::Reach(Status::Completed),
        "cancelled" => Target::Cancelled,
        "payment_failed" => Target::PaymentFailed,
        "out_of_stock" => Target::OutOfStock,
        _ => return None,
    })
}

/// The rank of a status on the main path (`None` off it).
fn rank(status: Status) -> Option<usize> {
    const PATH: [Status; 8] = [
        Status::Placed,
        Status::InventoryReserved,
        Status::PaymentAuthorized,
        Status::Confirmed,
        Status::Processing,
        Status::Shipped,
        Status::Delivered,
        Status::Completed,
    ];
    PATH.iter().position(|s| *s == status)
}

/// Tells one legacy order: builds its commands and runs them through the domain.
struct Teller<'a> {
    legacy: &'a LegacyOrder,
    stream_id: Uuid,
    order: Order,
    events: Vec<(OrderEvent, SystemTime)>,
}

impl<'a> Teller<'a> {
    fn run(&mut self, step: &Step) -> Result<(), Refusal> {
        let events = self
            .order
            .decide(&step.command)
            .map_err(|e| format!("{}: {}", step.what, legacy_terms(&e.to_string())))?;
        for event in events {
            self.order.evolve(&event);
            self.events.push((event, step.at));
        }
        Ok(())
    }

    fn status(&self) -> Status {
        self.order.status().unwrap_or(Status::Placed)
    }

    /// The command that moves the order one step along the main path from `status`.
    fn next_on_path(&self, status: Status, what: &str) -> Result<OrderCommand, Refusal> {
        let legacy = self.legacy;
        let field = |e: order_domain::ValidationError| format!("{what}: {e}");
        Ok(match status {
            Status::Placed => {
                OrderCommand::reserve_inventory(&format!("import-{}", self.stream_id))
                    .map_err(field)?
            }
            Status::InventoryReserved => {
                let payment = legacy.payments.first().ok_or_else(|| {
                    format!("{what}: the order was authorized but has no payment")
                })?;
                OrderCommand::authorize_payment(
                    &payment.payment_id,
                    &payment.currency,
                    payment.amount_minor,
                )
                .map_err(|e| format!("{what}: payments[0].{e}"))?
            }
            Status::PaymentAuthorized => OrderCommand::ConfirmOrder,
            Status::Confirmed => OrderCommand::StartFulfillment,
            Status::Processing => {
                let shipment = legacy
                    .shipments
                    .first()
                    .ok_or_else(|| format!("{what}: the order was shipped but has no shipment"))?;
                OrderCommand::ship_order(&shipment.carrier, &shipment.tracking_number)
                    .map_err(|e| format!("{what}: shipments[0].{e}"))?
            }
            Status::Shipped => OrderCommand::DeliverOrder,
            Status::Delivered => OrderCommand::CompleteOrder,
            other => {
                return Err(format!("{what}: the order is {other} and cannot move on"));
            }
        })
    }

    fn reach(&mut self, goal: Status, at: SystemTime, what: &str) -> Result<(), Refusal> {
        let Some(goal_rank) = rank(goal) else {
            return Err(format!("{what}: not on the order's path"));
        };
        loop {
            let status = self.status();
            let Some(current) = rank(status) else {
                return Err(format!(
                    "{what}: the order is {status} and cannot become {goal}"
                ));
            };
            if current == goal_rank {
                return Ok(());
            }
            if current > goal_rank {
                return Err(format!(
                    "{what}: the order is {status} already and cannot go back to {goal}"
                ));
            }
            let command = self.next_on_path(status, what)?;
            let what = match command {
                OrderCommand::AuthorizePayment { .. } => format!("{what}: payments[0]"),
                _ => what.to_owned(),
            };
            self.run(&Step { at, command, what })?;
        }
    }

    /// Pay what a pending cancellation owes (release, void or refund), as the legacy system
    /// did before it closed the order.
    fn settle(&mut self, at: SystemTime, what: &str) -> Result<(), Refusal> {
        while self.status() == Status::CancellationPending {
            let Some(details) = self.order.details() else {
                return Err(format!("{what}: no order"));
            };
            let pending = details.pending_compensations();
            let command = if pending.release_inventory {
                OrderCommand::ReleaseInventory
            } else if let Some(payment) = pending.payment {
                OrderCommand::RefundPayment {
                    amount: payment.amount,
                }
            } else {
                return Err(format!("{what}: a cancellation with nothing to settle"));
            };
            self.run(&Step {
                at,
                command,
                what: what.to_owned(),
            })?;
        }
        Ok(())
    }

    fn reason(entry: &LegacyStatus, default: &str, what: &str) -> Result<String, Refusal> {
        match &entry.reason {
            Some(reason) if !reason.trim().is_empty() => Ok(reason.clone()),
            Some(_) => Err(format!("{what}.reason is blank")),
            None => Ok(default.to_owned()),
        }
    }

    fn status_entry(
        &mut self,
        index: usize,
        entry: &LegacyStatus,
        at: SystemTime,
    ) -> Result<(), Refusal> {
        let what = format!("status_history[{index}] ({})", entry.status);
        let Some(target) = target(&entry.status) else {
            return Err(format!(
                "{what}: unknown status (known: {})",
                LEGACY_STATUSES.join(", ")
            ));
        };
        if index > 0 && entry.status == "placed" {
            return Err(format!("{what}: only the first status can be placed"));
        }
        match target {
            Target::Reach(goal) => {
                check_no_reason(entry, &what)?;
                self.reach(goal, at, &what)
            }
            Target::Cancelled => {
                let reason = Self::reason(entry, "cancelled in the legacy system", &what)?;
                let command =
                    OrderCommand::cancel_order(&reason).map_err(|e| format!("{what}: {e}"))?;
                self.run(&Step {
                    at,
                    command,
                    what: what.clone(),
                })?;
                self.settle(at, &what)
            }
            Target::PaymentFailed => {
                if self.status() == Status::Placed {
                    self.reach(Status::InventoryReserved, at, &what)?;
                }
                let reason = Self::reason(entry, "payment failed in the legacy system", &what)?;
                let command =
                    OrderCommand::fail_payment(&reason).map_err(|e| format!("{what}: {e}"))?;
                self.run(&Step {
                    at,
                    command,
                    what: what.clone(),
                })?;
                self.settle(at, &what)
            }
            Target::OutOfStock => {
                let reason = Self::reason(entry, "out of stock in the legacy system", &what)?;
                let command =
                    OrderCommand::reject_inventory(&reason).map_err(|e| format!("{what}: {e}"))?;
                self.run(&Step { at, command, what })
            }
        }
    }
}

/// A reason on a status that records none (only cancelled, payment_failed and out_of_stock
/// do) would be lost: the order is refused instead, saying so.
fn check_no_reason(entry: &LegacyStatus, what: &str) -> Result<(), Refusal> {
    match &entry.reason {
        Some(reason) if !reason.is_empty() => Err(format!(
            "{what}.reason: only cancelled, payment_failed and out_of_stock record a reason; \
             this one would be lost"
        )),
        _ => Ok(()),
    }
}

/// The domain's command field names in the export's terms.
fn legacy_terms(message: &str) -> String {
    message
        .replace("amount.amount_minor", "amount_minor")
        .replace("amount.currency", "currency")
}

/// Tell `legacy` as a new stream of `ids`' source, or say why it cannot be imported.
pub fn tell(legacy: &LegacyOrder, ids: &Ids) -> Result<ImportedStream, Refusal> {
    check_id("order_id", &legacy.order_id)?;
    check_id("customer_id", &legacy.customer_id)?;
    let stream_id = ids.order(&legacy.order_id);
    let imported_from = format!("{}:{}", ids.source(), legacy.order_id);
    if imported_from.len() > MAX_IMPORTED_FROM_LEN {
        return Err("order_id is too long with the source's name".into());
    }

    // The history's times: ordered, parseable, starting with placed.
    let Some(first) = legacy.status_history.first() else {
        return Err("status_history is empty (it starts with placed)".into());
    };
    if first.status != "placed" {
        return Err(format!(
            "status_history[0] is {:?}; the history starts with placed",
            first.status
        ));
    }
    check_no_reason(first, "status_history[0] (placed)")?;
    let mut times = Vec::with_capacity(legacy.status_history.len());
    for (index, entry) in legacy.status_history.iter().enumerate() {
        let at = time(&format!("status_history[{index}].at"), &entry.at)?;
        if let Some(previous) = times.last()
            && at < *previous
        {
            return Err(format!(
                "status_history[{index}].at {} is before the status before it",
                entry.at
            ));
        }
        times.push(at);
    }
    if legacy.payments.len() > 1 {
        return Err(format!(
            "payments: {} payments; an order has at most one",
            legacy.payments.len()
        ));
    }
    if legacy.shipments.len() > 1 {
        return Err(format!(
            "shipments: {} shipments; an order has at most one",
            legacy.shipments.len()
        ));
    }
    let mut refunds = Vec::with_capacity(legacy.refunds.len());
    for (index, refund) in legacy.refunds.iter().enumerate() {
        let at = time(
            &format!("refunds[{index}].refunded_at"),
            &refund.refunded_at,
        )?;
        let command = OrderCommand::refund_payment(&refund.currency, refund.amount_minor)
            .map_err(|e| legacy_terms(&format!("refunds[{index}].{e}")))?;
        refunds.push((at, index, command));
    }
    // Refunds in time order (a stable sort keeps the export's order for equal times).
    refunds.sort_by_key(|(at, _, _)| *at);

    // Placement through the domain's own validation.
    let customer_id = ids.customer(&legacy.customer_id).to_string();
    let address = &legacy.ship_to;
    let input = PlaceOrderInput {
        customer_id: &customer_id,
        lines: legacy
            .lines
            .iter()
            .map(|line| LineInput {
                sku: &line.sku,
                quantity: line.quantity,
                currency: &legacy.currency,
                unit_price_minor: line.unit_price_minor,
            })
            .collect(),
        shipping_address: Some(AddressInput {
            recipient: &address.recipient,
            line1: &address.line1,
            line2: address.line2.as_deref().unwrap_or(""),
            city: &address.city,
            region: address.region.as_deref().unwrap_or(""),
            postal_code: &address.postal_code,
            country: &address.country,
        }),
        shipping_method: match legacy.shipping_method.as_str() {
            "standard" => Some(ShippingMethod::Standard),
            "express" => Some(ShippingMethod::Express),
            "overnight" => Some(ShippingMethod::Overnight),
            _ => None,
        },
    };
    let placement = PlaceOrder::parse(&input).map_err(|e| {
        let message = e.to_string();
        if message.starts_with("shipping_address") {
            message.replacen("shipping_address", "ship_to", 1)
        } else if let Some((_, violation)) = message.split_once("unit_price.currency ") {
            // Every line is in the order's currency: the order's currency is what is wrong.
            format!("currency {:?} {violation}", legacy.currency)
        } else {
            message.replace("unit_price.amount_minor", "unit_price_minor")
        }
    })?;

    let mut teller = Teller {
        legacy,
        stream_id,
        order: Order::default(),
        events: Vec::with_capacity(10),
    };
    teller.run(&Step {
        at: times[0],
        command: OrderCommand::PlaceOrder(placement),
        what: "placement".into(),
    })?;
    let mut refunds = refunds.into_iter().peekable();
    for (index, entry) in legacy.status_history.iter().enumerate().skip(1) {
        let at = times[index];
        // Refunds made before this status (or at its time), in their place.
        while let Some((refund_at, refund_index, command)) =
            refunds.next_if(|(refund_at, _, _)| *refund_at <= at)
        {
            teller.run(&Step {
                at: refund_at,
                command,
                what: format!("refunds[{refund_index}]"),
            })?;
        }
        teller.status_entry(index, entry, at)?;
    }
    for (refund_at, refund_index, command) in refunds {
        teller.run(&Step {
            at: refund_at,
            command,
            what: format!("refunds[{refund_index}]"),
        })?;
    }

    // A payment or a shipment the history never used would be lost without a word.
    let recorded = |event_type: &str| {
        teller
            .events
            .iter()
            .any(|(e, _)| e.event_type() == event_type)
    };
    if !legacy.payments.is_empty() && !recorded("PaymentAuthorized") {
        return Err(
            "payments[0]: the history never reaches authorized, so this payment would not be \
             recorded"
                .into(),
        );
    }
    if !legacy.shipments.is_empty() && !recorded("OrderShipped") {
        return Err(
            "shipments[0]: the history never reaches shipped, so this shipment would not be \
             recorded"
                .into(),
        );
    }

    let events = teller
        .events
        .iter()
        .enumerate()
        .map(|(index, (event, at))| {
            let payload_json = event
                .encode_json()
                .map_err(|e| format!("cannot encode {}: {e}", event.event_type()))?;
            Ok(ImportedEvent {
                event_id: Ids::event(stream_id, times[0], index + 1),
                event_type: event.event_type().into(),
                schema_version: event.schema_version(),
                payload_json,
                recorded_at: *at,
            })
        })
        .collect::<Result<Vec<_>, Refusal>>()?;
    Ok(ImportedStream {
        stream_id,
        category: Order::CATEGORY.into(),
        imported_from,
        correlation_id: None,
        events,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn only_rfc3339_times_in_utc_are_read() {
        for good in [
            "2019-01-01T00:00:00Z",
            "2019-01-01T23:59:59.5Z",
            "2019-01-01T23:59:59.123456789Z",
        ] {
            assert!(time("at", good).is_ok(), "{good}");
        }
        // An offset of zero is UTC (RFC 3339 4.3: -00:00 too, the local offset unknown): the
        // same instant as with Z.
        for (offset, utc) in [
            ("2019-01-01T00:00:00+00:00", "2019-01-01T00:00:00Z"),
            ("2019-01-01T00:00:00-00:00", "2019-01-01T00:00:00Z"),
            ("2019-01-01T23:59:59.125+00:00", "2019-01-01T23:59:59.125Z"),
        ] {
            assert_eq!(time("at", offset), Ok(at(utc)), "{offset}");
        }
        for bad in [
            "2019-01-01T00:00:00ZZ",
            "2019-01-01T00:00:00Zabc",
            "2019-01-01T00:00:00.Z",
            "2019-01-01T00:00:00.1234567890Z",
            "2019-01-01T23:59:60Z",
            "2019-01-01T00:00:00",
            "2019-01-01T00:00:00+01:00",
            "2019-01-01T00:00:00+00:01",
            "2019-01-01T00:00:00+00:00Z",
            "2019-01-01T00:00:00Z+00:00",
            "2019-01-01T00:00:00+0000",
            "2019-01-01T00:00:00.+00:00",
            "2019-01-01 00:00:00Z",
            "2019-01-01t00:00:00z",
            "2019-1-01T00:00:00Z",
            "2019-01-32T00:00:00Z",
            "2019-01-01T24:00:00Z",
            "",
        ] {
            let error = time("at", bad).unwrap_err();
            assert!(error.starts_with("at: "), "{bad}: {error}");
        }
    }

    #[test]
    fn times_later_than_now_and_the_clock_skew_allowed_are_refused_naming_the_field() {
        for future in ["2999-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z"] {
            let error = time("status_history[0].at", future).unwrap_err();
            assert!(
                error.starts_with("status_history[0].at: ") && error.contains("in the future"),
                "{future}: {error}"
            );
        }
        // At the bound itself, and a nanosecond past it.
        let latest = at("2026-12-06T10:00:00Z");
        assert_eq!(
            time_before("at", "2026-12-06T10:00:00Z", latest),
            Ok(latest)
        );
        assert!(time_before("at", "2026-12-06T10:00:00.000000001Z", latest).is_err());
        assert!(time_before("at", "2026-12-06T10:00:00.000000001+00:00", latest).is_err());
        // Now, and a minute ahead (a clock a little fast), are taken; ten minutes ahead is not.
        let text = |t: SystemTime| humantime::format_rfc3339_nanos(t).to_string();
        let now = SystemTime::now();
        assert!(time("at", &text(now)).is_ok());
        assert!(time("at", &text(now + Duration::from_secs(60))).is_ok());
        assert!(time("at", &text(now + MAX_CLOCK_SKEW + Duration::from_secs(300))).is_err());
    }

    fn legacy(placed: &str, refunded: Option<&str>) -> LegacyOrder {
        let (history, payments, refunds) = match refunded {
            None => (
                serde_json::json!([{"status": "placed", "at": placed}]),
                serde_json::json!([]),
                serde_json::json!([]),
            ),
            Some(refunded) => (
                serde_json::json!([{"status": "placed", "at": placed},
                                   {"status": "paid", "at": placed}]),
                serde_json::json!([{"payment_id": "P", "currency": "USD", "amount_minor": 1168}]),
                serde_json::json!([{"currency": "USD", "amount_minor": 100,
                                    "refunded_at": refunded}]),
            ),
        };
        serde_json::from_value(serde_json::json!({
            "order_id": "F1", "customer_id": "C1", "currency": "USD",
            "shipping_method": "express",
            "ship_to": {"recipient": "R", "line1": "1 Main Street", "city": "Berlin",
                        "postal_code": "10115", "country": "DE"},
            "lines": [{"sku": "SKU-1", "quantity": 4, "unit_price_minor": 292}],
            "payments": payments, "shipments": [], "refunds": refunds,
            "status_history": history,
        }))
        .unwrap()
    }

    #[test]
    fn an_order_with_a_time_in_the_future_is_refused_naming_the_field() {
        let ids = Ids::new("legacy");
        assert!(tell(&legacy("2019-01-01T00:00:00Z", None), &ids).is_ok());
        assert!(
            tell(
                &legacy("2019-01-01T00:00:00Z", Some("2019-01-02T00:00:00Z")),
                &ids
            )
            .is_ok()
        );
        assert!(tell(&legacy("2019-01-01T00:00:00+00:00", None), &ids).is_ok());
        for placed in ["2999-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z"] {
            let error = tell(&legacy(placed, None), &ids).unwrap_err();
            assert!(
                error.starts_with("status_history[0].at: ") && error.contains("in the future"),
                "{error}"
            );
        }
        let error = tell(
            &legacy("2019-01-01T00:00:00Z", Some("2999-01-01T00:00:00Z")),
            &ids,
        )
        .unwrap_err();
        assert!(
            error.starts_with("refunds[0].refunded_at: ") && error.contains("in the future"),
            "{error}"
        );
    }

    /// The ids are a contract with every log already imported (a second run must name the
    /// same streams and events): these values, computed independently (Python's
    /// `uuid.uuid5` and docs/import.md's recipe), must never change.
    #[test]
    fn ids_are_the_documented_ones() {
        let stream = Ids::new("legacy").order("L0000000001");
        assert_eq!(
            stream,
            Uuid::parse_str("3dbf7d86-14c4-5920-95d8-de96f2e704f5").unwrap()
        );
        let placed = at("2019-01-01T00:00:58Z");
        assert_eq!(
            Ids::event(stream, placed, 1),
            Uuid::parse_str("016806b6-9e90-7920-a1eb-b1accd68dbab").unwrap()
        );
        assert_eq!(
            Ids::event(stream, placed, 3),
            Uuid::parse_str("016806b6-9e90-7920-89a4-88f40a1df2aa").unwrap()
        );
    }

    /// The ids earlier versions wrote, as they were (git history; the first two values are
    /// docs/import.md's example under the formats of 2026-12-02 and of 2026-12-04 00:13).
    #[test]
    fn earlier_event_ids_are_recognized_for_their_own_version_only() {
        let stream = Ids::new("legacy").order("L0000000001");
        let placed = at("2019-01-01T00:00:58Z");
        let whole = Uuid::parse_str("6889217e-b613-5c19-a1eb-b1accd68dbab").unwrap();
        let halves = Uuid::parse_str("3dbf7d86-14c4-5920-a1eb-b1accd68dbab").unwrap();
        assert_eq!(whole, Uuid::new_v5(&stream, b"1"));
        let told = Ids::event(stream, placed, 1);
        assert!(Ids::earlier_event_id(stream, 1, told, whole));
        assert!(Ids::earlier_event_id(stream, 1, told, halves));
        // Another version's, another stream's, or a told id of another derivation: no.
        assert!(!Ids::earlier_event_id(
            stream,
            2,
            Ids::event(stream, placed, 2),
            whole
        ));
        assert!(!Ids::earlier_event_id(
            stream,
            2,
            Ids::event(stream, placed, 2),
            halves
        ));
        let other = Ids::new("legacy").order("L0000000002");
        assert!(!Ids::earlier_event_id(
            other,
            1,
            Ids::event(other, placed, 1),
            Uuid::new_v5(&other, b"2")
        ));
        assert!(!Ids::earlier_event_id(stream, 1, Uuid::from_u128(1), whole));
        assert!(!Ids::earlier_event_id(stream, 1, told, Uuid::from_u128(1)));
        assert!(Ids::earlier_event_id(
            other,
            3,
            Ids::event(other, placed, 3),
            Uuid::new_v5(&other, b"3")
        ));
    }

    #[test]
    fn event_ids_are_distinct_well_formed_v7_uuids_in_the_order_of_placement() {
        let ids = Ids::new("legacy");
        let mut seen = HashSet::new();
        let placements = [
            ("L1", at("2019-01-01T00:00:00Z")),
            // The same millisecond as L1: the hashed bits keep them apart.
            ("L2", at("2019-01-01T00:00:00Z")),
            (
                "a-much-longer-legacy-id/with:odd chars",
                at("2019-01-01T00:00:00.001Z"),
            ),
            ("L3", at("2024-06-30T23:59:59.999Z")),
        ];
        let mut firsts = Vec::new();
        for (order, placed) in placements {
            let stream = ids.order(order);
            firsts.push(Ids::event(stream, placed, 1));
            for version in 1..=2_000 {
                let event = Ids::event(stream, placed, version);
                assert_eq!(event, Ids::event(stream, placed, version), "deterministic");
                assert_eq!(event.get_version(), Some(uuid::Version::SortRand));
                assert_eq!(event.get_variant(), uuid::Variant::RFC4122);
                // Its time is the placement's, to the millisecond.
                let (secs, nanos) = event.get_timestamp().unwrap().to_unix();
                let millis = placed
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_millis();
                assert_eq!(
                    u128::from(secs) * 1_000 + u128::from(nanos) / 1_000_000,
                    millis
                );
                assert_ne!(event, stream);
                assert!(seen.insert(event), "{order} v{version} collides");
            }
        }
        // Orders placed later sort later (the last three placements increase).
        assert!(firsts[1] < firsts[2] && firsts[2] < firsts[3]);
        assert!(firsts[0] < firsts[2]);
    }

    #[test]
    fn placements_outside_what_48_bits_of_milliseconds_hold_are_clamped_not_wrapped() {
        let stream = Ids::new("legacy").order("L1");
        let before_1970 = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(Ids::event(stream, before_1970, 1).as_bytes()[..6], [0; 6]);
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 48);
        assert_eq!(Ids::event(stream, far, 1).as_bytes()[..6], [0xff; 6]);
    }
}

//! Tables for people, JSON for programs.

use std::time::{Duration, UNIX_EPOCH};

use order_client::{CommandAnswer, Error, code_name, pb};
use serde_json::{Value, json};

use crate::args::Print;

/// `println!` that does not panic: a reader that went away (`order-cli follow | head`) ends
/// the command quietly with exit 0, as the shell's own tools do; any other write error is
/// one line and exit 1.
macro_rules! say {
    ($($arg:tt)*) => {
        write_line(format_args!($($arg)*))
    };
}

fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(error) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("order-cli: cannot write the output: {error}");
        std::process::exit(1);
    }
}

/// Where results go: stdout (a table, or JSON); errors to stderr.
#[derive(Debug)]
pub struct Output {
    json: bool,
}

/// `ORDER_STATUS_SHIPPED` -> `SHIPPED`.
fn status_name(status: pb::OrderStatus) -> &'static str {
    let name = status.as_str_name();
    name.strip_prefix("ORDER_STATUS_").unwrap_or(name)
}

fn money_text(money: Option<&pb::Money>) -> String {
    money.map_or_else(String::new, |m| {
        format!("{} {}", m.amount_minor, m.currency)
    })
}

fn money_json(money: Option<&pb::Money>) -> Value {
    money.map_or(
        Value::Null,
        |m| json!({"currency": m.currency, "amount_minor": m.amount_minor}),
    )
}

fn time_text(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|t| {
            let seconds = u64::try_from(t.seconds).ok()?;
            let nanos = u32::try_from(t.nanos).ok()?;
            Some(
                humantime::format_rfc3339_millis(
                    UNIX_EPOCH + Duration::new(seconds, nanos.min(999_999_999)),
                )
                .to_string(),
            )
        })
        .unwrap_or_default()
}

/// The command id, and for a duplicate what applied the command: the service had recorded
/// the id before the attempt that answered, which may have been this very call's first
/// attempt (its answer lost), so "duplicate" never means "this call changed nothing".
fn command_id_text(answer: &CommandAnswer, own_id: bool) -> String {
    let id = &answer.command_id;
    if !answer.duplicate {
        return id.clone();
    }
    let by = match (own_id, answer.attempts > 1) {
        // An id made here is known to no one else.
        (true, true) => "applied by an earlier attempt of this call whose answer was lost",
        (false, false) => "applied by an earlier call with this command id",
        (false, true) => {
            "applied by an earlier call with this command id, or by an earlier attempt of \
             this call whose answer was lost"
        }
        (true, false) => "applied under this command id before this attempt",
    };
    format!("{id} ({by}; nothing applied twice)")
}

/// Columns padded to their widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == last {
                    (*cell).to_owned()
                } else {
                    format!("{cell:<width$}", width = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut text = line(headers.to_vec());
    for row in rows {
        text.push('\n');
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

/// One key and value per line.
fn pairs(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn order_json(order: &pb::Order) -> Value {
    json!({
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "status": status_name(order.status()),
        "total": money_json(order.total.as_ref()),
        "refunded": money_json(order.refunded.as_ref()),
        "line_count": order.line_count,
        "version": order.version,
        "last_position": order.last_position,
        "placed_at": time_text(order.placed_at.as_ref()),
        "updated_at": time_text(order.updated_at.as_ref()),
    })
}

/// The payload's fields, for both views.
fn payload(event: &pb::Event) -> Value {
    use pb::event::Payload as P;
    let Some(payload) = &event.payload else {
        return json!({});
    };
    match payload {
        P::OrderPlaced(p) => json!({
            "customer_id": p.customer_id,
            "lines": p.lines.iter().map(|l| json!({
                "sku": l.sku, "quantity": l.quantity, "unit_price": money_json(l.unit_price.as_ref()),
            })).collect::<Vec<_>>(),
            "total": money_json(p.total.as_ref()),
            "shipping_method": p.shipping_method().as_str_name().trim_start_matches("SHIPPING_METHOD_"),
            "country": p.shipping_address.as_ref().map(|a| a.country.clone()).unwrap_or_default(),
        }),
        P::InventoryReserved(p) => json!({"reservation_id": p.reservation_id}),
        P::InventoryUnavailable(p) => json!({"reason": p.reason}),
        P::PaymentAuthorized(p) => {
            json!({"payment_id": p.payment_id, "amount": money_json(p.amount.as_ref())})
        }
        P::PaymentFailed(p) => json!({"reason": p.reason}),
        P::OrderConfirmed(p) => json!({"captured": money_json(p.captured.as_ref())}),
        P::OrderShipped(p) => json!({"carrier": p.carrier, "tracking_number": p.tracking_number}),
        P::CancellationRequested(p) => json!({
            "reason": p.reason,
            "release_inventory": p.release_inventory,
            "payment_action": p.payment_action,
            "payment_amount": money_json(p.payment_amount.as_ref()),
        }),
        P::PaymentVoided(p) => json!({"amount": money_json(p.amount.as_ref())}),
        P::PaymentRefunded(p) => json!({"amount": money_json(p.amount.as_ref())}),
        P::OrderCancelled(p) => json!({"reason": p.reason}),
        P::FulfillmentStarted(_)
        | P::OrderDelivered(_)
        | P::OrderCompleted(_)
        | P::InventoryReleased(_) => json!({}),
    }
}

/// The payload's fields as JSON: those of the table view, and the whole shipping address.
fn payload_json(event: &pb::Event) -> Value {
    let mut value = payload(event);
    if let (Some(pb::event::Payload::OrderPlaced(p)), Value::Object(map)) =
        (&event.payload, &mut value)
        && let Some(a) = &p.shipping_address
    {
        map.insert(
            "shipping_address".to_owned(),
            json!({
                "recipient": a.recipient, "line1": a.line1, "line2": a.line2, "city": a.city,
                "region": a.region, "postal_code": a.postal_code, "country": a.country,
            }),
        );
    }
    value
}

/// `key=value` pairs of a payload, amounts as `3000 EUR`.
fn payload_text(value: &Value) -> String {
    fn scalar(value: &Value) -> String {
        match value {
            Value::String(s) => s.clone(),
            Value::Object(map) if map.contains_key("amount_minor") => format!(
                "{} {}",
                map.get("amount_minor").map(scalar).unwrap_or_default(),
                map.get("currency").map(scalar).unwrap_or_default()
            ),
            Value::Array(items) => format!("[{} items]", items.len()),
            other => other.to_string(),
        }
    }
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", scalar(v)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn event_json(event: &pb::Event) -> Value {
    json!({
        "event_id": event.event_id,
        "order_id": event.order_id,
        "stream_version": event.stream_version,
        "global_position": event.global_position,
        "cursor": event.cursor,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "recorded_at": time_text(event.recorded_at.as_ref()),
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "command_id": event.command_id,
        "imported_from": event.imported_from,
        "payload": payload_json(event),
    })
}

const EVENT_HEADERS: [&str; 6] = [
    "POSITION", "ORDER", "VERSION", "TYPE", "RECORDED", "DETAILS",
];

/// Column widths of a live tail, which cannot measure its rows first: a position, a UUID, a
/// version, the longest event type, a timestamp with milliseconds.
const TAIL_WIDTHS: [usize; 5] = [8, 36, 7, 21, 24];

/// One line of a live tail: fixed columns, the details last.
fn tail_line(cells: &[String]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        match TAIL_WIDTHS.get(i) {
            Some(width) => line.push_str(&format!("{cell:<width$}  ")),
            None => line.push_str(cell),
        }
    }
    line.trim_end().to_owned()
}

fn event_row(event: &pb::Event) -> Vec<String> {
    vec![
        event.global_position.to_string(),
        event.order_id.clone(),
        event.stream_version.to_string(),
        event.event_type.clone(),
        time_text(event.recorded_at.as_ref()),
        details(event),
    ]
}

/// The DETAILS column: the payload's pairs, and for an event imported from a legacy system
/// the record it tells (its references were issued there, not by this system's providers).
fn details(event: &pb::Event) -> String {
    let pairs = payload_text(&payload(event));
    if event.imported_from.is_empty() {
        pairs
    } else {
        format!("imported_from={} {pairs}", event.imported_from)
            .trim_end()
            .to_owned()
    }
}

impl Output {
    /// JSON or tables.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    fn print_json(value: &Value) {
        say!("{value}");
    }

    /// A command's answer; `own_id`: the command id was made by this invocation (so no
    /// other call can have used it).
    pub fn answer(&self, answer: &CommandAnswer, own_id: bool) {
        if self.json {
            Self::print_json(&json!({
                "command": answer.command,
                "command_id": answer.command_id,
                "order_id": answer.order_id.to_string(),
                "version": answer.version,
                "global_position": answer.global_position,
                "status": status_name(answer.status),
                "duplicate": answer.duplicate,
                "attempts": answer.attempts,
                "correlation_id": answer.correlation_id,
            }));
            return;
        }
        say!(
            "{}",
            pairs(&[
                ("command", answer.command.to_owned()),
                ("order", answer.order_id.to_string()),
                ("status", status_name(answer.status).to_owned()),
                ("version", answer.version.to_string()),
                ("position", answer.global_position.to_string()),
                ("command id", command_id_text(answer, own_id)),
            ])
        );
    }

    /// One field of a command's answer, alone.
    pub fn field(&self, answer: &CommandAnswer, field: Print) {
        let value = match field {
            Print::OrderId => answer.order_id.to_string(),
            Print::Version => answer.version.to_string(),
            Print::Position => answer.global_position.to_string(),
            Print::Status => status_name(answer.status).to_owned(),
            Print::CommandId => answer.command_id.clone(),
        };
        if self.json {
            Self::print_json(&Value::String(value));
        } else {
            say!("{value}");
        }
    }

    /// One order.
    pub fn order(&self, order: &pb::Order) {
        if self.json {
            Self::print_json(&order_json(order));
            return;
        }
        say!(
            "{}",
            pairs(&[
                ("order", order.order_id.clone()),
                ("customer", order.customer_id.clone()),
                ("status", status_name(order.status()).to_owned()),
                ("total", money_text(order.total.as_ref())),
                ("refunded", money_text(order.refunded.as_ref())),
                ("lines", order.line_count.to_string()),
                ("version", order.version.to_string()),
                ("position", order.last_position.to_string()),
                ("placed", time_text(order.placed_at.as_ref())),
                ("updated", time_text(order.updated_at.as_ref())),
            ])
        );
    }

    /// A page of orders.
    pub fn orders(&self, orders: &[pb::Order], next_page_token: &str) {
        if self.json {
            Self::print_json(&json!({
                "orders": orders.iter().map(order_json).collect::<Vec<_>>(),
                "next_page_token": next_page_token,
            }));
            return;
        }
        let rows: Vec<Vec<String>> = orders
            .iter()
            .map(|o| {
                vec![
                    o.order_id.clone(),
                    o.customer_id.clone(),
                    status_name(o.status()).to_owned(),
                    money_text(o.total.as_ref()),
                    o.version.to_string(),
                    time_text(o.updated_at.as_ref()),
                ]
            })
            .collect();
        say!(
            "{}",
            table(
                &["ORDER", "CUSTOMER", "STATUS", "TOTAL", "VERSION", "UPDATED"],
                &rows
            )
        );
        if !next_page_token.is_empty() {
            say!("more: --page-token {next_page_token} (with the same --customer and --status)");
        }
    }

    /// An order's events.
    pub fn events(&self, events: &[pb::Event]) {
        if self.json {
            Self::print_json(&Value::Array(events.iter().map(event_json).collect()));
            return;
        }
        let rows: Vec<Vec<String>> = events.iter().map(event_row).collect();
        say!("{}", table(&EVENT_HEADERS, &rows));
    }

    /// The header of a live tail (tables only).
    pub fn event_header(&self) {
        if !self.json {
            let headers: Vec<String> = EVENT_HEADERS.iter().map(|h| (*h).to_owned()).collect();
            say!("{}", tail_line(&headers));
        }
    }

    /// One event of a live tail (JSON: one object per line).
    pub fn event_line(&self, event: &pb::Event) {
        if self.json {
            Self::print_json(&event_json(event));
        } else {
            say!("{}", tail_line(&event_row(event)));
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }

    /// A client error, on stderr.
    pub fn client_error(&self, error: &Error) {
        match error {
            Error::Rpc {
                status,
                attempts,
                correlation_id,
            } => {
                if self.json {
                    eprintln!(
                        "{}",
                        json!({"error": {
                            "code": code_name(status.code()),
                            "message": status.message(),
                            "attempts": attempts,
                            "correlation_id": correlation_id,
                        }})
                    );
                } else {
                    eprintln!("order-cli: {error}");
                }
            }
            other => self.error(code_name(other.code()), &other.to_string()),
        }
    }

    /// Any other error, on stderr.
    pub fn error(&self, code: &str, message: &str) {
        if self.json {
            eprintln!("{}", json!({"error": {"code": code, "message": message}}));
        } else {
            eprintln!("order-cli: {message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_says_what_applied_it_and_never_that_nothing_changed() {
        let answer = |duplicate: bool, attempts: u32| CommandAnswer {
            command: "ConfirmOrder",
            command_id: "c-1".into(),
            order_id: uuid::Uuid::nil(),
            version: 4,
            global_position: 9,
            status: pb::OrderStatus::Confirmed,
            duplicate,
            attempts,
            correlation_id: "r-1".into(),
        };
        assert_eq!(command_id_text(&answer(false, 3), true), "c-1");
        assert_eq!(
            command_id_text(&answer(true, 2), true),
            "c-1 (applied by an earlier attempt of this call whose answer was lost; nothing \
             applied twice)"
        );
        assert_eq!(
            command_id_text(&answer(true, 1), false),
            "c-1 (applied by an earlier call with this command id; nothing applied twice)"
        );
        let either = command_id_text(&answer(true, 3), false);
        assert!(
            either.contains("earlier call") && either.contains("earlier attempt of this call"),
            "{either}"
        );
        for (attempts, own) in [(1, true), (1, false), (2, true), (2, false)] {
            let text = command_id_text(&answer(true, attempts), own);
            assert!(!text.contains("nothing changed"), "{text}");
        }
    }

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let text = table(
            &["A", "LONGER", "C"],
            &[vec!["xxxx".into(), "y".into(), "z".into()]],
        );
        assert_eq!(text, "A     LONGER  C\nxxxx  y       z");
    }

    #[test]
    fn payloads_read_as_pairs() {
        let event = pb::Event {
            payload: Some(pb::event::Payload::PaymentRefunded(pb::PaymentRefunded {
                amount: Some(order_client::money("EUR", 500)),
            })),
            ..Default::default()
        };
        assert_eq!(payload_text(&payload(&event)), "amount=500 EUR");
        assert_eq!(status_name(pb::OrderStatus::Shipped), "SHIPPED");
    }

    #[test]
    fn an_imported_event_says_which_legacy_record_it_tells() {
        let mut event = pb::Event {
            payload: Some(pb::event::Payload::PaymentRefunded(pb::PaymentRefunded {
                amount: Some(order_client::money("EUR", 500)),
            })),
            ..Default::default()
        };
        assert_eq!(details(&event), "amount=500 EUR");
        assert_eq!(event_json(&event)["imported_from"], "");
        event.imported_from = "legacy:A-1001".into();
        assert_eq!(
            details(&event),
            "imported_from=legacy:A-1001 amount=500 EUR"
        );
        assert_eq!(event_json(&event)["imported_from"], "legacy:A-1001");
        let row = event_row(&event);
        assert_eq!(
            row.last().map(String::as_str),
            Some("imported_from=legacy:A-1001 amount=500 EUR")
        );
    }

    #[test]
    fn json_has_the_whole_shipping_address_and_the_table_the_country() {
        let event = pb::Event {
            payload: Some(pb::event::Payload::OrderPlaced(pb::OrderPlaced {
                shipping_address: Some(pb::Address {
                    recipient: "Ada".into(),
                    line1: "1 Main St".into(),
                    line2: String::new(),
                    city: "Berlin".into(),
                    region: String::new(),
                    postal_code: "10115".into(),
                    country: "DE".into(),
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let json = payload_json(&event);
        assert_eq!(json["shipping_address"]["recipient"], "Ada");
        assert_eq!(json["shipping_address"]["line1"], "1 Main St");
        assert_eq!(json["shipping_address"]["postal_code"], "10115");
        assert_eq!(json["country"], "DE");
        let text = payload_text(&payload(&event));
        assert!(
            text.contains("country=DE") && !text.contains("Ada"),
            "{text}"
        );
    }
}

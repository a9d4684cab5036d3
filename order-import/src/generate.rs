//! A generator of realistic legacy exports, with a share of bad records of known kinds (the
//! import benchmark's input, and the rejects corpus of the tests).
//!
//! Orders are numbered `L0000000001`, `L0000000002`, ... (sorted as text). Their history
//! follows a realistic mix of outcomes: most completed, some still on their way, some
//! cancelled before or after payment, some whose payment failed or whose stock ran out; one
//! delivered order in twelve was partly refunded. Every `bad_every`-th record is bad, one kind
//! after the other from [`BAD_KINDS`]; the generator writes, beside the export, what the
//! import must reject (`expected.jsonl`: line, order id, kind, a phrase of the reason).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

use crate::legacy::{
    LegacyAddress, LegacyLine, LegacyOrder, LegacyPayment, LegacyRefund, LegacyShipment,
    LegacyStatus,
};
use crate::source::Format;

/// A kind of bad record: its name and a phrase the reject's reason contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadKind {
    /// The kind's name.
    pub name: &'static str,
    /// Part of the reason the import gives.
    pub reason: &'static str,
    /// Which exports carry it.
    pub formats: Formats,
}

/// The exports a kind of bad record can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formats {
    /// JSON Lines and CSV.
    Both,
    /// Only JSON Lines (it is about JSON syntax, or CSV's sort check would stop the import).
    Jsonl,
    /// Only CSV (it is about the tables' join).
    Csv,
}

const fn kind(name: &'static str, reason: &'static str, csv: bool) -> BadKind {
    BadKind {
        name,
        reason,
        formats: if csv { Formats::Both } else { Formats::Jsonl },
    }
}

/// Every kind of bad record the generator writes.
pub const BAD_KINDS: &[BadKind] = &[
    kind("unknown_currency", "ISO-4217", true),
    kind("lowercase_currency", "ISO-4217", true),
    kind("negative_quantity", "quantity", true),
    kind("zero_quantity", "quantity", true),
    kind("huge_quantity", "quantity", true),
    kind("quantity_not_a_number", "quantity", true),
    kind("negative_price", "unit_price", true),
    kind("zero_price", "unit_price", true),
    kind("no_lines", "lines", true),
    kind("too_many_lines", "lines", true),
    kind("duplicate_sku", "sku", true),
    kind("bad_sku", "sku", true),
    kind("total_overflow", "", true),
    kind("bad_country", "country", true),
    kind("blank_recipient", "recipient", true),
    kind("blank_postal_code", "postal_code", true),
    kind("unknown_shipping_method", "shipping_method", true),
    kind("missing_customer", "customer_id", false),
    kind("blank_order_id", "order_id is empty", false),
    kind("bad_timestamp", "RFC 3339", true),
    kind("empty_history", "status_history is empty", false),
    kind("history_not_starting_placed", "starts with placed", true),
    kind("unknown_status", "unknown status", true),
    kind("status_going_back", "cannot go back", true),
    kind("cancel_after_shipping", "not allowed", true),
    kind(
        "history_out_of_time_order",
        "before the status before it",
        true,
    ),
    kind("payment_amount_mismatch", "must be exactly", true),
    kind("payment_currency_mismatch", "but the order is in", true),
    kind("paid_without_payment", "has no payment", true),
    kind("shipped_without_shipment", "has no shipment", true),
    kind("refund_above_captured", "exceeds the refundable", true),
    kind("refund_before_payment", "not allowed", true),
    kind("refund_currency_mismatch", "but the order is in", true),
    kind("two_payments", "at most one", true),
    kind("unknown_field", "unknown field", false),
    kind("broken_utf8", "UTF-8", true),
    kind("truncated_record", "truncated record", false),
    kind("not_json", "not a legacy order record", false),
    kind("json_array", "not a legacy order record", false),
    kind("duplicate_order", "more than once", true),
    kind("order_out_of_place", "must be sorted", false),
    kind("overlong_record", "longer than", false),
    kind("blank_cancel_reason", "blank", true),
    kind("payment_failed_after_paid", "not allowed", true),
    kind("out_of_stock_after_reserved", "not allowed", true),
    BadKind {
        name: "row_without_order",
        reason: "no order",
        formats: Formats::Csv,
    },
    BadKind {
        name: "short_row",
        reason: "fields where the header has",
        formats: Formats::Csv,
    },
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Records (orders, good and bad).
    pub orders: u64,
    /// Every n-th record is bad (0: none).
    pub bad_every: u64,
    /// The random seed.
    pub seed: u64,
    /// JSON Lines (a file) or CSV (a directory).
    pub format: Format,
}

/// One rejected record the import must report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Expected {
    /// The file the reject names.
    pub file: String,
    /// Its line.
    pub line: u64,
    /// The kind of bad record.
    pub kind: String,
    /// A phrase of the reason.
    pub reason: String,
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Generated {
    /// Records written.
    pub records: u64,
    /// Good orders among them (the import appends exactly these).
    pub good: u64,
    /// Events the good orders tell.
    pub events: u64,
    /// Bad records among them.
    pub bad: u64,
    /// Bytes written.
    pub bytes: u64,
}

const SKUS: u32 = 5_000;
const CURRENCIES: [(&str, u32); 4] = [("EUR", 50), ("USD", 30), ("GBP", 15), ("JPY", 5)];
const CITIES: [(&str, &str, &str); 6] = [
    ("Berlin", "10115", "DE"),
    ("Lyon", "69001", "FR"),
    ("Austin", "73301", "US"),
    ("Leeds", "LS1 1UR", "GB"),
    ("Osaka", "530-0001", "JP"),
    ("Porto", "4000-322", "PT"),
];
const CARRIERS: [&str; 4] = ["DHL", "UPS", "FedEx", "La Poste"];

/// The statuses an order ends in, with their weights (out of 1,000).
const OUTCOMES: [(&str, u32); 12] = [
    ("completed", 550),
    ("delivered", 100),
    ("shipped", 70),
    ("processing", 30),
    ("paid", 30),
    ("authorized", 20),
    ("reserved", 10),
    ("placed", 20),
    ("cancelled_early", 50),
    ("cancelled_paid", 40),
    ("payment_failed", 40),
    ("out_of_stock", 40),
];

fn pick<T: Copy>(rng: &mut fastrand::Rng, weighted: &[(T, u32)]) -> T {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut roll = rng.u32(0..total);
    for (value, weight) in weighted {
        if roll < *weight {
            return *value;
        }
        roll -= weight;
    }
    weighted[weighted.len() - 1].0
}

/// Append `status` to `history`, 1 to 30 hours after the previous one.
fn push(
    history: &mut Vec<LegacyStatus>,
    at: &mut SystemTime,
    rng: &mut fastrand::Rng,
    status: &str,
    reason: Option<&str>,
) {
    *at += Duration::from_secs(rng.u64(1..30) * 3_600 + 60);
    history.push(LegacyStatus {
        status: status.into(),
        at: stamp(*at),
        reason: reason.map(str::to_owned),
    });
}

fn stamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The order id of record `n` (1-based).
pub fn order_id(n: u64) -> String {
    format!("L{n:010}")
}

/// A good legacy order numbered `n`.
pub fn good_order(rng: &mut fastrand::Rng, n: u64) -> LegacyOrder {
    let currency = pick(rng, &CURRENCIES);
    let line_count = rng.usize(1..=4);
    let first_sku = rng.u32(0..SKUS);
    let lines: Vec<LegacyLine> = (0..line_count)
        .map(|i| LegacyLine {
            sku: format!("SKU-{:05}", (first_sku + i as u32 * 7) % SKUS),
            quantity: rng.i64(1..=5),
            unit_price_minor: rng.i64(100..=20_000),
        })
        .collect();
    let total: i64 = lines.iter().map(|l| l.quantity * l.unit_price_minor).sum();
    let (city, postal_code, country) = CITIES[rng.usize(0..CITIES.len())];
    let placed =
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_546_300_800 + n * 37 + rng.u64(0..30));
    let outcome = pick(rng, &OUTCOMES);
    let mut history = vec![LegacyStatus {
        status: "placed".into(),
        at: stamp(placed),
        reason: None,
    }];
    let mut at = placed;
    let path = [
        "reserved",
        "authorized",
        "paid",
        "processing",
        "shipped",
        "delivered",
        "completed",
    ];
    let reach = |target: &str| path.iter().position(|s| *s == target).map_or(0, |i| i + 1);
    let mut refunds = Vec::new();
    match outcome {
        "cancelled_early" => {
            push(
                &mut history,
                &mut at,
                rng,
                "cancelled",
                Some("customer changed their mind"),
            );
        }
        "cancelled_paid" => {
            for status in &path[..3] {
                push(&mut history, &mut at, rng, status, None);
            }
            push(
                &mut history,
                &mut at,
                rng,
                "cancelled",
                Some("customer cancelled after payment"),
            );
        }
        "payment_failed" => {
            push(
                &mut history,
                &mut at,
                rng,
                "payment_failed",
                Some("card declined"),
            );
        }
        "out_of_stock" => {
            push(&mut history, &mut at, rng, "out_of_stock", None);
        }
        target => {
            let steps = reach(target);
            for (i, status) in path[..steps].iter().enumerate() {
                push(&mut history, &mut at, rng, status, None);
                // One delivered order in twelve was partly refunded, before completion.
                if *status == "delivered" && rng.u32(0..12) == 0 {
                    let refunded_at = at + Duration::from_secs(600);
                    refunds.push(LegacyRefund {
                        currency: currency.into(),
                        amount_minor: (total / 3).max(1),
                        refunded_at: stamp(refunded_at),
                    });
                    if i + 1 < steps {
                        at = refunded_at;
                    }
                }
            }
        }
    }
    let reached = |status: &str| history.iter().any(|h| h.status == status);
    let payments = if reached("authorized") {
        vec![LegacyPayment {
            payment_id: format!("PAY-{n}"),
            currency: currency.into(),
            amount_minor: total,
        }]
    } else {
        Vec::new()
    };
    let shipments = if reached("shipped") {
        vec![LegacyShipment {
            carrier: CARRIERS[rng.usize(0..CARRIERS.len())].into(),
            tracking_number: format!("TRK{n:012}"),
        }]
    } else {
        Vec::new()
    };
    LegacyOrder {
        order_id: order_id(n),
        customer_id: format!("C{}", rng.u64(1..=1_000_000)),
        currency: currency.into(),
        shipping_method: ["standard", "standard", "express", "overnight"][rng.usize(0..4)].into(),
        ship_to: LegacyAddress {
            recipient: format!("Customer {}", rng.u32(1..100_000)),
            line1: format!("{} Main Street", rng.u32(1..999)),
            line2: (rng.u32(0..5) == 0).then(|| format!("Apt {}", rng.u32(1..60))),
            city: city.into(),
            region: None,
            postal_code: postal_code.into(),
            country: country.into(),
        },
        lines,
        payments,
        shipments,
        refunds,
        status_history: history,
    }
}

/// A good order of record `n` whose history reaches `status` (for the kinds that need one).
fn order_reaching(rng: &mut fastrand::Rng, n: u64, status: &str) -> LegacyOrder {
    loop {
        let order = good_order(rng, n);
        if order.status_history.iter().any(|h| h.status == status)
            && order.refunds.is_empty()
            && !order.status_history.iter().any(|h| h.status == "cancelled")
        {
            return order;
        }
    }
}

fn with_status(order: &mut LegacyOrder, index: usize, status: &str) {
    if let Some(entry) = order.status_history.get_mut(index) {
        entry.status = status.into();
    }
}

fn later(at: &str, seconds: u64) -> String {
    humantime::parse_rfc3339(at)
        .map(|t| stamp(t + Duration::from_secs(seconds)))
        .unwrap_or_else(|_| at.to_owned())
}

/// The bad order of kind `kind` at record `n` (`previous_id`: the id of the record before),
/// as the domain-level change to a good order; `None` for kinds that are about the record's
/// bytes, handled by the writer.
fn bad_order(rng: &mut fastrand::Rng, n: u64, kind: &str, previous_id: &str) -> LegacyOrder {
    let mut order = match kind {
        "status_going_back" | "cancel_after_shipping" | "shipped_without_shipment" => {
            order_reaching(rng, n, "shipped")
        }
        "payment_amount_mismatch"
        | "payment_currency_mismatch"
        | "paid_without_payment"
        | "refund_above_captured"
        | "refund_currency_mismatch"
        | "two_payments"
        | "payment_failed_after_paid" => order_reaching(rng, n, "paid"),
        "out_of_stock_after_reserved" => order_reaching(rng, n, "reserved"),
        _ => good_order(rng, n),
    };
    let last_at = order
        .status_history
        .last()
        .map(|h| h.at.clone())
        .unwrap_or_default();
    let currency = order.currency.clone();
    let other_currency = if currency == "USD" { "EUR" } else { "USD" };
    match kind {
        "unknown_currency" => order.currency = "XQZ".into(),
        "lowercase_currency" => order.currency = currency.to_lowercase(),
        "negative_quantity" => order.lines[0].quantity = -2,
        "zero_quantity" => order.lines[0].quantity = 0,
        "huge_quantity" => order.lines[0].quantity = 5_000_000_000,
        "negative_price" => order.lines[0].unit_price_minor = -150,
        "zero_price" => order.lines[0].unit_price_minor = 0,
        "no_lines" => order.lines.clear(),
        "too_many_lines" => {
            order.lines = (0..101)
                .map(|i| LegacyLine {
                    sku: format!("SKU-X{i}"),
                    quantity: 1,
                    unit_price_minor: 100,
                })
                .collect();
        }
        "duplicate_sku" => {
            let line = order.lines[0].clone();
            order.lines.push(line);
        }
        "bad_sku" => order.lines[0].sku = "no spaces allowed!".into(),
        "total_overflow" => {
            order.lines[0].quantity = 1_000;
            order.lines[0].unit_price_minor = 900_000_000_000_000;
        }
        "bad_country" => order.ship_to.country = "Germany".into(),
        "blank_recipient" => order.ship_to.recipient = "   ".into(),
        "blank_postal_code" => order.ship_to.postal_code = String::new(),
        "unknown_shipping_method" => order.shipping_method = "teleport".into(),
        "blank_order_id" => order.order_id = String::new(),
        "bad_timestamp" => order.status_history[0].at = "yesterday at noon".into(),
        "empty_history" => order.status_history.clear(),
        "history_not_starting_placed" => with_status(&mut order, 0, "paid"),
        "unknown_status" => {
            let last = order.status_history.len() - 1;
            if last == 0 {
                order.status_history.push(LegacyStatus {
                    status: "lost_in_the_mail".into(),
                    at: later(&last_at, 60),
                    reason: None,
                });
            } else {
                with_status(&mut order, last, "lost_in_the_mail");
            }
        }
        "status_going_back" => order.status_history.push(LegacyStatus {
            status: "paid".into(),
            at: later(&last_at, 60),
            reason: None,
        }),
        "cancel_after_shipping" => {
            order
                .status_history
                .retain(|h| !matches!(h.status.as_str(), "delivered" | "completed"));
            let at = order
                .status_history
                .last()
                .map(|h| h.at.clone())
                .unwrap_or_default();
            order.status_history.push(LegacyStatus {
                status: "cancelled".into(),
                at: later(&at, 60),
                reason: Some("too late".into()),
            });
        }
        "history_out_of_time_order" => {
            order.status_history.push(LegacyStatus {
                status: order
                    .status_history
                    .last()
                    .map(|h| h.status.clone())
                    .unwrap_or_default(),
                at: "2001-01-01T00:00:00Z".into(),
                reason: None,
            });
        }
        "payment_amount_mismatch" => order.payments[0].amount_minor += 1,
        "payment_currency_mismatch" => order.payments[0].currency = other_currency.into(),
        "paid_without_payment" => order.payments.clear(),
        "shipped_without_shipment" => order.shipments.clear(),
        "refund_above_captured" => order.refunds.push(LegacyRefund {
            currency,
            amount_minor: order.payments[0].amount_minor + 100,
            refunded_at: later(&order_paid_at(&order), 30),
        }),
        "refund_before_payment" => {
            order.status_history.truncate(1);
            order.payments.clear();
            order.shipments.clear();
            order.refunds = vec![LegacyRefund {
                currency,
                amount_minor: 100,
                refunded_at: later(&order.status_history[0].at, 30),
            }];
        }
        "refund_currency_mismatch" => order.refunds.push(LegacyRefund {
            currency: other_currency.into(),
            amount_minor: 1,
            refunded_at: later(&order_paid_at(&order), 30),
        }),
        "two_payments" => {
            let payment = order.payments[0].clone();
            order.payments.push(payment);
        }
        "duplicate_order" => order.order_id = previous_id.to_owned(),
        "blank_cancel_reason" => {
            order.status_history.truncate(1);
            order.payments.clear();
            order.shipments.clear();
            order.refunds.clear();
            order.status_history.push(LegacyStatus {
                status: "cancelled".into(),
                at: later(&order.status_history[0].at, 60),
                reason: Some("  ".into()),
            });
        }
        "payment_failed_after_paid" | "out_of_stock_after_reserved" => {
            let (status, keep) = if kind == "payment_failed_after_paid" {
                ("payment_failed", "paid")
            } else {
                ("out_of_stock", "reserved")
            };
            let end = order
                .status_history
                .iter()
                .position(|h| h.status == keep)
                .map_or(order.status_history.len(), |i| i + 1);
            order.status_history.truncate(end);
            order.refunds.clear();
            let at = order
                .status_history
                .last()
                .map(|h| h.at.clone())
                .unwrap_or_default();
            order.status_history.push(LegacyStatus {
                status: status.into(),
                at: later(&at, 60),
                reason: None,
            });
        }
        _ => {}
    }
    order
}

fn order_paid_at(order: &LegacyOrder) -> String {
    order
        .status_history
        .iter()
        .find(|h| h.status == "paid")
        .map(|h| h.at.clone())
        .unwrap_or_default()
}

/// The JSON line of a bad record of a kind about JSON or bytes.
fn bad_line(order: &LegacyOrder, kind: &str) -> io::Result<Vec<u8>> {
    let mut value = serde_json::to_value(order)?;
    Ok(match kind {
        "quantity_not_a_number" => {
            value["lines"][0]["quantity"] = json!("two");
            serde_json::to_vec(&value)?
        }
        "missing_customer" => {
            if let Value::Object(map) = &mut value {
                map.remove("customer_id");
            }
            serde_json::to_vec(&value)?
        }
        "unknown_field" => {
            value["coupon_code"] = json!("SPRING19");
            serde_json::to_vec(&value)?
        }
        "broken_utf8" => {
            let text = serde_json::to_vec(&value)?;
            let marker = b"Customer ";
            let mut bytes = text.clone();
            if let Some(at) = text.windows(marker.len()).position(|w| w == marker) {
                bytes[at + 1] = 0xff;
            }
            bytes
        }
        "truncated_record" => {
            let text = serde_json::to_vec(&value)?;
            text[..text.len() / 2].to_vec()
        }
        "not_json" => b"order L? see attached spreadsheet".to_vec(),
        "json_array" => serde_json::to_vec(&json!([order.order_id, order.currency]))?,
        "overlong_record" => {
            value["ship_to"]["line1"] = json!("x".repeat(crate::source::MAX_RECORD_BYTES));
            serde_json::to_vec(&value)?
        }
        "order_out_of_place" => {
            value["order_id"] = json!(format!("A{}", order.order_id));
            serde_json::to_vec(&value)?
        }
        _ => serde_json::to_vec(&value)?,
    })
}

/// Kinds written as changes to the order (the rest are about the record's bytes).
fn is_byte_kind(kind: &str) -> bool {
    matches!(
        kind,
        "quantity_not_a_number"
            | "missing_customer"
            | "unknown_field"
            | "broken_utf8"
            | "truncated_record"
            | "not_json"
            | "json_array"
            | "overlong_record"
            | "order_out_of_place"
    )
}

/// Write an export to `out` (a file for JSON Lines, a directory for CSV) and its expected
/// rejects to `expected`.
pub fn generate(plan: &Plan, out: &Path, expected: &Path) -> io::Result<Generated> {
    generate_until(plan, out, expected, &AtomicBool::new(false))
}

/// [`generate`], stopping when `stop` is set (the binary sets it on SIGTERM or Ctrl-C): a
/// stopped generate's files would not agree (the expected rejects are written last, or
/// buffered), so it deletes both (for CSV, the six tables) and fails with
/// [`io::ErrorKind::Interrupted`], saying so. A generate killed outright leaves them: they are
/// unusable, and the same command run again rewrites them.
pub fn generate_until(
    plan: &Plan,
    out: &Path,
    expected: &Path,
    stop: &AtomicBool,
) -> io::Result<Generated> {
    let result = generate_checked(plan, out, expected, stop);
    if matches!(&result, Err(e) if e.kind() == io::ErrorKind::Interrupted) {
        let mut files = vec![expected.to_path_buf()];
        match plan.format {
            Format::Jsonl => files.push(out.to_path_buf()),
            Format::Csv => files.extend(
                crate::csv::TABLES
                    .iter()
                    .map(|(name, _)| crate::source::table_path(out, name)),
            ),
        }
        for file in files {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(named(&file, &e)),
                _ => {}
            }
        }
    }
    result
}

/// The error of a generate stopped by a signal (its files deleted by [`generate_until`]).
pub(crate) fn stopped() -> io::Error {
    io::Error::new(
        io::ErrorKind::Interrupted,
        "stopped by a signal: the partial export and its expected rejects were deleted (they \
         would not agree); run the same command again",
    )
}

fn generate_checked(
    plan: &Plan,
    out: &Path,
    expected: &Path,
    stop: &AtomicBool,
) -> io::Result<Generated> {
    if plan.bad_every == 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "every record bad leaves no order to duplicate: use 0 or at least 2",
        ));
    }
    match plan.format {
        Format::Jsonl => generate_jsonl(plan, out, expected, stop),
        Format::Csv => crate::generate_csv::generate_csv(plan, out, expected, stop),
    }
}

/// The kinds of bad records a format carries.
pub fn kinds_for(format: Format) -> Vec<BadKind> {
    BAD_KINDS
        .iter()
        .copied()
        .filter(|k| match k.formats {
            Formats::Both => true,
            Formats::Jsonl => format == Format::Jsonl,
            Formats::Csv => format == Format::Csv,
        })
        .collect()
}

/// The record `n` (1-based): good, or bad of a kind.
pub(crate) enum Planned {
    Good(LegacyOrder, u64),
    Bad(LegacyOrder, BadKind),
}

pub(crate) fn plan_record(
    rng: &mut fastrand::Rng,
    plan: &Plan,
    kinds: &[BadKind],
    n: u64,
    bad_so_far: u64,
    previous_id: &str,
) -> Planned {
    if plan.bad_every > 0 && n.is_multiple_of(plan.bad_every) && n > 1 {
        let kind = kinds[(bad_so_far % kinds.len() as u64) as usize];
        Planned::Bad(bad_order(rng, n, kind.name, previous_id), kind)
    } else {
        let order = good_order(rng, n);
        // The domain tells it exactly as the import will (and proves it good).
        let events = crate::tell::tell(&order, &crate::tell::Ids::new("generator"))
            .map_or(0, |stream| stream.events.len() as u64);
        Planned::Good(order, events)
    }
}

fn generate_jsonl(
    plan: &Plan,
    out: &Path,
    expected: &Path,
    stop: &AtomicBool,
) -> io::Result<Generated> {
    let mut writer =
        BufWriter::with_capacity(1 << 20, File::create(out).map_err(|e| named(out, &e))?);
    let mut expect = BufWriter::new(File::create(expected).map_err(|e| named(expected, &e))?);
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let kinds = kinds_for(Format::Jsonl);
    let file = out.display().to_string();
    let mut generated = Generated::default();
    let mut previous_id = String::new();
    for n in 1..=plan.orders {
        if stop.load(Ordering::Relaxed) {
            return Err(stopped());
        }
        let line = match plan_record(&mut rng, plan, &kinds, n, generated.bad, &previous_id) {
            Planned::Good(order, events) => {
                generated.good += 1;
                generated.events += events;
                previous_id = order.order_id.clone();
                serde_json::to_vec(&order)?
            }
            Planned::Bad(order, kind) => {
                generated.bad += 1;
                serde_json::to_writer(
                    &mut expect,
                    &Expected {
                        file: file.clone(),
                        line: n,
                        kind: kind.name.into(),
                        reason: kind.reason.into(),
                    },
                )?;
                expect.write_all(b"\n")?;
                if is_byte_kind(kind.name) {
                    bad_line(&order, kind.name)?
                } else {
                    if kind.name != "blank_order_id" && kind.name != "duplicate_order" {
                        previous_id = order.order_id.clone();
                    }
                    serde_json::to_vec(&order)?
                }
            }
        };
        writer.write_all(&line)?;
        writer.write_all(b"\n")?;
        generated.bytes += line.len() as u64 + 1;
        generated.records += 1;
    }
    writer.flush()?;
    expect.flush()?;
    Ok(generated)
}

/// The default path of the expected rejects of an export at `out`.
pub fn expected_path(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".expected.jsonl");
    out.with_file_name(name)
}

/// An I/O error that names the path it is about ("File exists (os error 17)" names none).
pub(crate) fn named(path: &Path, error: &io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

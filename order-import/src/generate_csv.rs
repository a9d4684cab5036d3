//! The generator's CSV export: the same orders as the JSON Lines one, in six tables.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use csv::{ByteRecord, Writer, WriterBuilder};

use crate::csv::TABLES;
use crate::generate::{Expected, Generated, Plan, Planned, kinds_for, plan_record};
use crate::legacy::LegacyOrder;
use crate::source::{Format, table_path};

struct Tables {
    writers: Vec<Writer<BufWriter<File>>>,
    /// The line the next row of each table lands on.
    lines: Vec<u64>,
}

const ORDERS: usize = 0;
const LINES: usize = 1;
const PAYMENTS: usize = 2;
const SHIPMENTS: usize = 3;
const REFUNDS: usize = 4;
const HISTORY: usize = 5;

impl Tables {
    fn create(directory: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(directory).map_err(|e| crate::generate::named(directory, &e))?;
        let mut writers = Vec::new();
        for (name, columns) in TABLES {
            let path = table_path(directory, name);
            let file = File::create(&path).map_err(|e| crate::generate::named(&path, &e))?;
            let mut writer = WriterBuilder::new()
                .flexible(true)
                .from_writer(BufWriter::with_capacity(1 << 18, file));
            writer.write_record(*columns)?;
            writers.push(writer);
        }
        Ok(Self {
            writers,
            lines: vec![2; TABLES.len()],
        })
    }

    /// Write a row; returns its line.
    fn row<I, T>(&mut self, table: usize, fields: I) -> io::Result<u64>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let record: ByteRecord = fields.into_iter().collect();
        self.writers[table].write_byte_record(&record)?;
        let line = self.lines[table];
        self.lines[table] += 1;
        Ok(line)
    }

    fn finish(self) -> io::Result<()> {
        for mut writer in self.writers {
            writer.flush()?;
        }
        Ok(())
    }
}

/// Lines of the rows an order was written to.
struct Written {
    order: u64,
    first_line: Option<u64>,
    /// The line of each row of each table, in [`TABLES`] order (orders.csv's one included).
    rows: Vec<Vec<u64>>,
}

impl Written {
    /// Where the import reports an order of bad `kind` that the domain refuses: the row of the
    /// entry its reason names (each kind spoils one, [`crate::generate`]'s `bad_order`), or
    /// the order's row of orders.csv when no row holds what is wrong (its currency, its
    /// address, its number of lines or payments).
    fn expected_at(&self, kind: &str, order: &LegacyOrder) -> (&'static str, u64) {
        let row = |table: usize, index: Option<usize>| {
            index
                .and_then(|i| self.rows[table].get(i).copied())
                .map_or(("orders.csv", self.order), |line| (FILES[table], line))
        };
        let last = |table: usize| self.rows[table].len().checked_sub(1);
        // The first status that needs the payment (authorized on) or the shipment (shipped
        // on).
        let first_of = |statuses: &[&str]| {
            order
                .status_history
                .iter()
                .position(|h| statuses.contains(&h.status.as_str()))
        };
        match kind {
            "negative_quantity" | "zero_quantity" | "huge_quantity" | "negative_price"
            | "zero_price" | "bad_sku" | "total_overflow" => row(LINES, Some(0)),
            "duplicate_sku" => row(LINES, last(LINES)),
            "bad_timestamp" | "history_not_starting_placed" => row(HISTORY, Some(0)),
            "unknown_status"
            | "status_going_back"
            | "cancel_after_shipping"
            | "history_out_of_time_order"
            | "blank_cancel_reason"
            | "payment_failed_after_paid"
            | "out_of_stock_after_reserved" => row(HISTORY, last(HISTORY)),
            "payment_amount_mismatch" | "payment_currency_mismatch" => row(PAYMENTS, Some(0)),
            "paid_without_payment" => row(
                HISTORY,
                first_of(&[
                    "authorized",
                    "paid",
                    "processing",
                    "shipped",
                    "delivered",
                    "completed",
                ]),
            ),
            "shipped_without_shipment" => {
                row(HISTORY, first_of(&["shipped", "delivered", "completed"]))
            }
            "refund_above_captured" | "refund_currency_mismatch" => row(REFUNDS, last(REFUNDS)),
            "refund_before_payment" => row(REFUNDS, Some(0)),
            _ => ("orders.csv", self.order),
        }
    }
}

/// The file of each table, in [`TABLES`] order.
const FILES: [&str; 6] = [
    "orders.csv",
    "order_lines.csv",
    "payments.csv",
    "shipments.csv",
    "refunds.csv",
    "status_history.csv",
];

fn write_order(
    tables: &mut Tables,
    order: &LegacyOrder,
    recipient: Option<&[u8]>,
    quantity_text: Option<&str>,
    short_first_line: bool,
) -> io::Result<Written> {
    let a = &order.ship_to;
    let line = tables.row(
        ORDERS,
        [
            order.order_id.as_bytes(),
            order.customer_id.as_bytes(),
            order.currency.as_bytes(),
            order.shipping_method.as_bytes(),
            recipient.unwrap_or(a.recipient.as_bytes()),
            a.line1.as_bytes(),
            a.line2.as_deref().unwrap_or("").as_bytes(),
            a.city.as_bytes(),
            a.region.as_deref().unwrap_or("").as_bytes(),
            a.postal_code.as_bytes(),
            a.country.as_bytes(),
        ],
    )?;
    let mut first_line = None;
    let mut rows = vec![
        vec![line],
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    ];
    for (index, l) in order.lines.iter().enumerate() {
        let quantity = match (index, quantity_text) {
            (0, Some(text)) => text.to_owned(),
            _ => l.quantity.to_string(),
        };
        let row_line = if index == 0 && short_first_line {
            tables.row(LINES, [order.order_id.as_str(), l.sku.as_str()])?
        } else {
            tables.row(
                LINES,
                [
                    order.order_id.as_str(),
                    l.sku.as_str(),
                    quantity.as_str(),
                    l.unit_price_minor.to_string().as_str(),
                ],
            )?
        };
        if index == 0 {
            first_line = Some(row_line);
        }
        rows[LINES].push(row_line);
    }
    for p in &order.payments {
        let row_line = tables.row(
            PAYMENTS,
            [
                order.order_id.as_str(),
                p.payment_id.as_str(),
                p.currency.as_str(),
                p.amount_minor.to_string().as_str(),
            ],
        )?;
        rows[PAYMENTS].push(row_line);
    }
    for s in &order.shipments {
        let row_line = tables.row(
            SHIPMENTS,
            [
                order.order_id.as_str(),
                s.carrier.as_str(),
                s.tracking_number.as_str(),
            ],
        )?;
        rows[SHIPMENTS].push(row_line);
    }
    for r in &order.refunds {
        let row_line = tables.row(
            REFUNDS,
            [
                order.order_id.as_str(),
                r.currency.as_str(),
                r.amount_minor.to_string().as_str(),
                r.refunded_at.as_str(),
            ],
        )?;
        rows[REFUNDS].push(row_line);
    }
    for h in &order.status_history {
        let row_line = tables.row(
            HISTORY,
            [
                order.order_id.as_str(),
                h.status.as_str(),
                h.at.as_str(),
                h.reason.as_deref().unwrap_or(""),
            ],
        )?;
        rows[HISTORY].push(row_line);
    }
    Ok(Written {
        order: line,
        first_line,
        rows,
    })
}

/// Write the CSV export of `plan` into the directory `out`.
pub(crate) fn generate_csv(
    plan: &Plan,
    out: &Path,
    expected: &Path,
    stop: &std::sync::atomic::AtomicBool,
) -> io::Result<Generated> {
    let mut tables = Tables::create(out)?;
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let kinds = kinds_for(Format::Csv);
    let mut generated = Generated::default();
    let mut expectations: Vec<Expected> = Vec::new();
    let mut previous_id = String::new();
    // The previous orders.csv row: its line, and its events when it was good.
    let mut previous: Option<(u64, Option<u64>)> = None;
    let expect = |file: &str, line: u64, kind: &str, reason: &str| Expected {
        file: file.to_owned(),
        line,
        kind: kind.to_owned(),
        reason: reason.to_owned(),
    };
    for n in 1..=plan.orders {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(crate::generate::stopped());
        }
        generated.records += 1;
        match plan_record(&mut rng, plan, &kinds, n, generated.bad, &previous_id) {
            Planned::Good(order, events) => {
                let written = write_order(&mut tables, &order, None, None, false)?;
                generated.good += 1;
                generated.events += events;
                previous_id = order.order_id.clone();
                previous = Some((written.order, Some(events)));
            }
            Planned::Bad(order, kind) => {
                generated.bad += 1;
                match kind.name {
                    "row_without_order" => {
                        let line = tables.row(
                            HISTORY,
                            [
                                order.order_id.as_str(),
                                "placed",
                                "2019-01-01T00:00:00Z",
                                "",
                            ],
                        )?;
                        expectations.push(expect(
                            "status_history.csv",
                            line,
                            kind.name,
                            kind.reason,
                        ));
                        continue;
                    }
                    "quantity_not_a_number" | "short_row" => {
                        let short = kind.name == "short_row";
                        let text = (!short).then_some("two");
                        let written = write_order(&mut tables, &order, None, text, short)?;
                        expectations.push(expect(
                            "order_lines.csv",
                            written.first_line.unwrap_or(0),
                            kind.name,
                            kind.reason,
                        ));
                        previous_id = order.order_id.clone();
                        previous = Some((written.order, None));
                    }
                    "broken_utf8" => {
                        let mut recipient = order.ship_to.recipient.clone().into_bytes();
                        if let Some(byte) = recipient.get_mut(1) {
                            *byte = 0xff;
                        }
                        let written =
                            write_order(&mut tables, &order, Some(&recipient), None, false)?;
                        expectations.push(expect(
                            "orders.csv",
                            written.order,
                            kind.name,
                            kind.reason,
                        ));
                        previous_id = order.order_id.clone();
                        previous = Some((written.order, None));
                    }
                    "duplicate_order" => {
                        // Two rows with one id: neither can be told apart from the other's
                        // rows, so both are rejected.
                        let written = write_order(&mut tables, &order, None, None, false)?;
                        // With every n-th record bad (n >= 2), the one before is good.
                        if let Some((line, Some(events))) = previous {
                            generated.good -= 1;
                            generated.events -= events;
                            expectations.push(expect("orders.csv", line, kind.name, kind.reason));
                        }
                        expectations.push(expect(
                            "orders.csv",
                            written.order,
                            kind.name,
                            kind.reason,
                        ));
                        previous = Some((written.order, None));
                    }
                    _ => {
                        let written = write_order(&mut tables, &order, None, None, false)?;
                        let (file, line) = written.expected_at(kind.name, &order);
                        expectations.push(expect(file, line, kind.name, kind.reason));
                        previous_id = order.order_id.clone();
                        previous = Some((written.order, None));
                    }
                }
            }
        }
    }
    tables.finish()?;
    let mut sorted = expectations;
    sorted.sort_by(|a, b| (a.file.as_str(), a.line).cmp(&(b.file.as_str(), b.line)));
    let mut writer =
        BufWriter::new(File::create(expected).map_err(|e| crate::generate::named(expected, &e))?);
    for e in &sorted {
        serde_json::to_writer(&mut writer, e)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()?;
    generated.bytes = TABLES
        .iter()
        .filter_map(|(name, _)| std::fs::metadata(table_path(out, name)).ok())
        .map(|m| m.len())
        .sum();
    Ok(generated)
}

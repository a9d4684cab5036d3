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
}

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
    }
    for p in &order.payments {
        tables.row(
            PAYMENTS,
            [
                order.order_id.as_str(),
                p.payment_id.as_str(),
                p.currency.as_str(),
                p.amount_minor.to_string().as_str(),
            ],
        )?;
    }
    for s in &order.shipments {
        tables.row(
            SHIPMENTS,
            [
                order.order_id.as_str(),
                s.carrier.as_str(),
                s.tracking_number.as_str(),
            ],
        )?;
    }
    for r in &order.refunds {
        tables.row(
            REFUNDS,
            [
                order.order_id.as_str(),
                r.currency.as_str(),
                r.amount_minor.to_string().as_str(),
                r.refunded_at.as_str(),
            ],
        )?;
    }
    for h in &order.status_history {
        tables.row(
            HISTORY,
            [
                order.order_id.as_str(),
                h.status.as_str(),
                h.at.as_str(),
                h.reason.as_deref().unwrap_or(""),
            ],
        )?;
    }
    Ok(Written {
        order: line,
        first_line,
    })
}

/// Write the CSV export of `plan` into the directory `out`.
pub(crate) fn generate_csv(plan: &Plan, out: &Path, expected: &Path) -> io::Result<Generated> {
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
                        expectations.push(expect(
                            "orders.csv",
                            written.order,
                            kind.name,
                            kind.reason,
                        ));
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

//! A CSV export: six tables in one directory, joined by `order_id`.
//!
//! Every table must be sorted by `order_id` (see [`IdOrder`]); the join then needs one order's
//! rows in memory, whatever the export's size: at most [`MAX_ROWS_PER_ORDER`] rows and
//! [`MAX_ORDER_TABLE_BYTES`] of each table (past either, the rest of that order's rows are
//! read and dropped, and the order is rejected once, naming the table), each row at most
//! [`MAX_RECORD_BYTES`](crate::source::MAX_RECORD_BYTES) (a longer row, well quoted, is
//! skipped and rejects its order). Before anything is imported, one pass checks that every
//! table is sorted: a join of unsorted tables would attach rows to the wrong orders or miss
//! them, so an unsorted table stops the import with the line to look at.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use csv::{ByteRecord, Reader, ReaderBuilder};

use crate::legacy::{
    IdOrder, LegacyAddress, LegacyLine, LegacyOrder, LegacyPayment, LegacyRefund, LegacyShipment,
    LegacyStatus,
};
use crate::source::{Progress, Record, Reject, RowLines, Source, table_path};

/// The tables of a CSV export and their columns (in any order, named by the header).
pub const TABLES: &[(&str, &[&str])] = &[
    (
        "orders",
        &[
            "order_id",
            "customer_id",
            "currency",
            "shipping_method",
            "recipient",
            "line1",
            "line2",
            "city",
            "region",
            "postal_code",
            "country",
        ],
    ),
    (
        "order_lines",
        &["order_id", "sku", "quantity", "unit_price_minor"],
    ),
    (
        "payments",
        &["order_id", "payment_id", "currency", "amount_minor"],
    ),
    ("shipments", &["order_id", "carrier", "tracking_number"]),
    (
        "refunds",
        &["order_id", "currency", "amount_minor", "refunded_at"],
    ),
    ("status_history", &["order_id", "status", "at", "reason"]),
];

/// The columns of free text (an address, a status's reason): a line break in one is text the
/// domain refuses (its order is rejected, naming the field). In any other column (ids, codes,
/// amounts, times, statuses) a line break can only be a quote that ran on, closed by a stray
/// quote rows later: the rows between are rejected with their orders.
pub const FREE_TEXT_COLUMNS: &[&str] = &["recipient", "line1", "line2", "city", "region", "reason"];

/// A row that a quoted field of an earlier row swallowed: a quote left open there and closed by
/// a stray quote rows later keeps that row the right width, and the lines between are the
/// field's text, not rows. Each swallowed row's order is rejected (its row is not read), naming
/// where the quote opened, so that no row is lost without a word.
#[derive(Debug, Clone)]
struct Swallowed {
    /// The order id the swallowed line starts with (in the order id's column).
    id: Vec<u8>,
    /// The swallowed line.
    line: u64,
    /// The line of the row whose field swallowed it (where the quote opened).
    quote_line: u64,
}

/// Reads `read` bytes into a shared progress counter.
struct Counted<R> {
    inner: R,
    progress: Progress,
    /// Bytes read since the current row began (the table resets it before each row).
    in_row: Arc<AtomicU64>,
}

/// Where the CSV reader gives up on a row: past the longest row read, as a JSON Lines record
/// may be, with room for the CSV reader's own buffer (a row is measured from the bytes it
/// asked for, which run ahead of the row by at most that). A longer row is then skipped by a
/// scan that holds none of it ([`skip_row`]), instead of holding it in memory whole.
const MAX_ROW_BYTES: u64 = crate::source::MAX_RECORD_BYTES as u64 + (64 << 10);

/// The most rows one order has in one table: past it, the rest of that order's rows in that
/// table are read and dropped, and the order is rejected (a JSON Lines record holds at most
/// 1 MiB; the domain takes at most 100 lines, one payment, one shipment).
pub const MAX_ROWS_PER_ORDER: usize = 10_000;

/// The most bytes of one order's rows in one table (its fields together), as a JSON Lines
/// record: past it, as past [`MAX_ROWS_PER_ORDER`].
pub const MAX_ORDER_TABLE_BYTES: usize = crate::source::MAX_RECORD_BYTES;

impl<R: Seek> Seek for Counted<R> {
    fn seek(&mut self, position: io::SeekFrom) -> io::Result<u64> {
        self.inner.seek(position)
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.in_row.load(AtomicOrdering::Relaxed) > MAX_ROW_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, RowTooLong));
        }
        let read = self.inner.read(buffer)?;
        self.progress.add(read as u64);
        self.in_row.fetch_add(read as u64, AtomicOrdering::Relaxed);
        Ok(read)
    }
}

/// The reading error of a row over [`MAX_ROW_BYTES`].
#[derive(Debug)]
struct RowTooLong;

impl std::fmt::Display for RowTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a row longer than {} bytes",
            crate::source::MAX_RECORD_BYTES
        )
    }
}

impl std::error::Error for RowTooLong {}

type TableReader = Reader<Counted<BufReader<File>>>;

/// A row of a table: its line, its fields, and whether it was longer than
/// [`MAX_RECORD_BYTES`](crate::source::MAX_RECORD_BYTES) (then skipped: its fields are empty
/// but its order id, and it rejects its order).
struct Row {
    line: u64,
    record: ByteRecord,
    too_long: bool,
    /// Why the row's own order is rejected when a field that cannot hold a line break holds
    /// one (a quote that ran on; see [`Swallowed`]).
    stray: Option<String>,
}

/// A row of a child table, read ([`Table::read_child`]).
enum Child {
    Line(LegacyLine),
    Payment(LegacyPayment),
    Shipment(LegacyShipment),
    Refund(LegacyRefund),
    Status(LegacyStatus),
}

/// One table being read: its next row held back until the join asks for it.
struct Table {
    name: &'static str,
    path: PathBuf,
    file: String,
    reader: TableReader,
    /// Column index of each expected column, in [`TABLES`] order.
    columns: Vec<usize>,
    /// The expected columns' names, in [`TABLES`] order.
    names: &'static [&'static str],
    /// Rows swallowed by a quoted field of the rows read so far, not yet taken by the join.
    swallowed: Vec<Swallowed>,
    /// Fields in the header: every row has as many.
    width: usize,
    /// How the export orders its order ids.
    id_order: IdOrder,
    /// Bytes read since the current row began (shared with the table's reader).
    in_row: Arc<AtomicU64>,
    /// The line each row starts on.
    lines: LineCounter,
    /// The next row, `None` at the end.
    head: Option<Row>,
}

/// The line a row starts on, as `grep -n` numbers lines (one more than the `\n` bytes before
/// it), whatever the line endings: the CSV reader's own line count lags by one after each
/// `\r\n` and after each empty line (it counts from where it began reading a row, before
/// the empty lines and the `\n` of a `\r\n` it skips), so the lines are counted here, on a
/// handle of the table's own, as the rows are read (each byte once).
struct LineCounter {
    reader: BufReader<File>,
    /// The byte `reader` is at.
    at: u64,
    /// `\n` bytes before `at`.
    newlines: u64,
}

impl LineCounter {
    fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Self {
            reader: BufReader::with_capacity(1 << 16, file),
            at: 0,
            newlines: 0,
        })
    }

    /// The line of the row the CSV reader began reading at byte `start` (not before the
    /// previous row's): the line of its first byte after the empty lines (`\n`, `\r`) it
    /// skips there.
    fn line_of(&mut self, start: u64) -> io::Result<u64> {
        while self.at < start {
            let buffer = self.reader.fill_buf()?;
            if buffer.is_empty() {
                break;
            }
            let take = buffer.len().min((start - self.at) as usize);
            self.newlines += buffer[..take].iter().filter(|b| **b == b'\n').count() as u64;
            self.reader.consume(take);
            self.at += take as u64;
        }
        loop {
            let buffer = self.reader.fill_buf()?;
            let blank = buffer
                .iter()
                .take_while(|b| matches!(b, b'\n' | b'\r'))
                .count();
            self.newlines += buffer[..blank].iter().filter(|b| **b == b'\n').count() as u64;
            let more = blank > 0 && blank == buffer.len();
            self.reader.consume(blank);
            self.at += blank as u64;
            if !more {
                return Ok(self.newlines + 1);
            }
        }
    }
}

fn open_table(
    directory: &Path,
    name: &'static str,
    expected: &'static [&'static str],
    progress: &Progress,
    id_order: IdOrder,
) -> io::Result<Table> {
    let path = table_path(directory, name);
    let file = File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let in_row = Arc::new(AtomicU64::new(0));
    let mut reader = ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(Counted {
            inner: BufReader::with_capacity(1 << 18, file),
            progress: progress.clone(),
            in_row: in_row.clone(),
        });
    let headers = reader
        .byte_headers()
        .map_err(|e| invalid(format!("{}: header: {e}", path.display())))?
        .clone();
    // Every column is one the import reads, once: the values of any other would be lost
    // without a word, on every row.
    for (i, header) in headers.iter().enumerate() {
        let name = String::from_utf8_lossy(header);
        if !expected.iter().any(|column| column.as_bytes() == header) {
            return Err(invalid(format!(
                "{}: column {name:?} is not one the import reads (expected {}): its values \
                 would be lost",
                path.display(),
                expected.join(",")
            )));
        }
        if headers.iter().take(i).any(|earlier| earlier == header) {
            return Err(invalid(format!(
                "{}: column {name:?} is twice in the header",
                path.display()
            )));
        }
    }
    let width = headers.len();
    let mut columns = Vec::with_capacity(expected.len());
    for column in expected {
        let index = headers
            .iter()
            .position(|h| h == column.as_bytes())
            .ok_or_else(|| {
                invalid(format!(
                    "{}: no column {column:?} in the header (expected {})",
                    path.display(),
                    expected.join(",")
                ))
            })?;
        columns.push(index);
    }
    let lines = LineCounter::open(&path)?;
    let mut table = Table {
        name,
        path,
        file: format!("{name}.csv"),
        reader,
        columns,
        names: expected,
        swallowed: Vec::new(),
        width,
        id_order,
        in_row,
        lines,
        head: None,
    };
    table.advance()?;
    Ok(table)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Table {
    /// Read the next row into `head`.
    fn advance(&mut self) -> io::Result<()> {
        let mut record = ByteRecord::new();
        let start = self.reader.position().clone();
        self.in_row.store(0, AtomicOrdering::Relaxed);
        match self.reader.read_byte_record(&mut record) {
            Ok(true) => {
                let line = self.lines.line_of(start.byte())?;
                let length = self.reader.position().byte() - start.byte();
                let stray = self.swallowed_by(&record, line)?;
                self.head = Some(Row {
                    line,
                    too_long: length > crate::source::MAX_RECORD_BYTES as u64,
                    record,
                    stray,
                });
                Ok(())
            }
            Ok(false) => {
                self.head = None;
                Ok(())
            }
            // A row longer than any is read: skipped by a scan that holds none of it, when
            // its quotes close on its line.
            Err(_) if self.in_row.load(AtomicOrdering::Relaxed) > MAX_ROW_BYTES => {
                let skipped = skip_row(&self.path, start.byte(), self.columns[0])?;
                let line = self.lines.line_of(start.byte())?;
                let runaway = if !skipped.closed {
                    Some("a quote that is not closed before the end of the file")
                } else if skipped.lines > 1 {
                    Some("a quoted field that runs over several lines: a quote that is not closed?")
                } else {
                    None
                };
                if let Some(why) = runaway {
                    return Err(invalid(format!(
                        "{} line {line}: {RowTooLong}, {why}; the rows after it cannot be read",
                        self.file
                    )));
                }
                let mut end = start.clone();
                end.set_byte(skipped.end)
                    .set_line(start.line() + skipped.newlines)
                    .set_record(start.record() + 1);
                self.reader
                    .seek_raw(io::SeekFrom::Start(skipped.end), end)
                    .map_err(|e| invalid(format!("{}: {e}", self.file)))?;
                // The row's order id, in its column (the others empty): the join puts it with
                // its order, which it rejects.
                let mut record = ByteRecord::new();
                for column in 0..skipped.fields.max(self.columns[0] + 1) {
                    if column == self.columns[0] {
                        record.push_field(&skipped.id);
                    } else {
                        record.push_field(b"");
                    }
                }
                self.head = Some(Row {
                    line,
                    record,
                    too_long: true,
                    stray: None,
                });
                Ok(())
            }
            // A row the CSV reader cannot read at all: the file's structure is broken from
            // there on.
            Err(e) => Err(invalid(format!("{}: {e}", self.file))),
        }
    }

    /// The rows the fields of `record` (the row at `line`) swallowed, added to
    /// [`Table::swallowed`]; the reason its own order is rejected when one of those fields is
    /// not free text.
    ///
    /// A field's lines after its first are read as rows of this table, the way the lines were
    /// written: a quote that runs on takes no quote in (one would close it), so each is its
    /// fields split at commas; the last is cut at the stray quote, in the field's column (the
    /// row's fields after it are that line's). A line counts as a swallowed row only when it
    /// reads as one ([`Table::reads_as_row`]): the row's number of fields, each column read as
    /// the import reads it, and an order id after `record`'s and not after the next row's (the
    /// table is sorted). A field's text (an address, a reason, a bad tracking number) that
    /// merely holds commas and line breaks swallows nothing.
    fn swallowed_by(&mut self, record: &ByteRecord, line: u64) -> io::Result<Option<String>> {
        let breaks = |field: &[u8]| field.iter().any(|b| matches!(b, b'\n' | b'\r'));
        if !record.iter().any(breaks) {
            return Ok(None);
        }
        let id_column = self.columns[0];
        let own = record.get(id_column).unwrap_or(b"");
        // The next row's order id, read ahead without moving the reader when a line reads as a
        // row (none at the end of the file).
        let mut next: Option<Option<Vec<u8>>> = None;
        let mut stray = None;
        let mut breaks_before = 0;
        for (index, field) in record.iter().enumerate() {
            if !breaks(field) {
                continue;
            }
            let column = self
                .columns
                .iter()
                .position(|c| *c == index)
                .map_or("?", |k| self.names[k]);
            let free = FREE_TEXT_COLUMNS.contains(&column);
            let lines = split_lines(field);
            let count = lines.len();
            let mut ids = Vec::new();
            let mut rows = Vec::new();
            for (k, text) in lines.iter().enumerate().skip(1) {
                let mut row = ByteRecord::new();
                for value in text.split(|b| *b == b',') {
                    row.push_field(value);
                }
                if k + 1 == count {
                    if row.len() != index + 1 {
                        continue;
                    }
                    for value in record.iter().skip(index + 1) {
                        row.push_field(value);
                    }
                }
                if !self.reads_as_row(&row, own, free) {
                    continue;
                }
                let id = row.get(id_column).unwrap_or(b"");
                if next.is_none() {
                    let ahead = skip_row(&self.path, self.reader.position().byte(), id_column)?;
                    next = Some((!ahead.id.is_empty()).then_some(ahead.id));
                }
                if let Some(Some(until)) = &next
                    && compare_ids(self.id_order, id, until) == Ordering::Greater
                {
                    continue;
                }
                let swallowed_line = line + breaks_before + k as u64;
                ids.push(String::from_utf8_lossy(id).into_owned());
                rows.push(swallowed_line);
                self.swallowed.push(Swallowed {
                    id: id.to_vec(),
                    line: swallowed_line,
                    quote_line: line,
                });
            }
            let last = line + breaks_before + count as u64 - 1;
            breaks_before += count as u64 - 1;
            if !free && stray.is_none() {
                ids.dedup();
                let named = match ids.len() {
                    0 => String::new(),
                    1 => format!(" (order {})", ids[0]),
                    n if n <= 5 => format!(" (orders {})", ids.join(", ")),
                    n => format!(" (orders {} and {} more)", ids[..5].join(", "), n - 5),
                };
                let lines = match rows.as_slice() {
                    [] => None,
                    [one] => Some(format!("line {one} is a row")),
                    [first, .., end] if (end - first) as usize + 1 == rows.len() => {
                        Some(format!("lines {first} to {end} are rows"))
                    }
                    _ => Some(format!(
                        "lines {} are rows",
                        rows.iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                };
                stray = Some(match lines {
                    Some(lines) => format!(
                        "{column}: holds a line break, which a {column} cannot: a quote opened \
                         in it runs on to line {last}, closed there by a stray quote, so {lines} \
                         of {} it swallowed{named}; the orders they belong to are rejected too; \
                         fix the quotes and run again",
                        self.file
                    ),
                    None => format!(
                        "{column}: holds a line break, which a {column} cannot: a quote opened \
                         in it runs on to line {last} (none of the lines it took in reads as a \
                         row of {}); fix the field and run again",
                        self.file
                    ),
                });
            }
        }
        Ok(stray)
    }

    /// Whether `record`, a line of a quoted field split at its commas, reads as a row of this
    /// table that the field swallowed: it reads as every row is read ([`Table::read_order`],
    /// [`Table::read_child`]), its order id is one (not blank, at most
    /// [`MAX_LEGACY_ID_LEN`](crate::tell::MAX_LEGACY_ID_LEN) bytes, valid in the id order), its
    /// codes, statuses and times have their forms (a known currency, a two-letter country, a
    /// known status, an RFC 3339 time), and its order id sorts after `after` (the row whose
    /// field it is in). (That it sorts not after the table's next row is for the caller.)
    ///
    /// Not `strict` (the field is one that can never hold a line break, so a stray quote is
    /// certain): the row's number of fields and its order id are enough, so that a swallowed
    /// row with a bad value of its own still has its order rejected, not imported without it.
    fn reads_as_row(&self, record: &ByteRecord, after: &[u8], strict: bool) -> bool {
        let Ok(id) = text(record, self.columns[0], "order_id") else {
            return false;
        };
        if crate::tell::check_id("order_id", &id).is_err()
            || self.id_order.check(&id).is_err()
            || compare_ids(self.id_order, id.as_bytes(), after) != Ordering::Greater
        {
            return false;
        }
        if !strict {
            return check_width(self, record).is_ok();
        }
        let currency = |code: &str| order_domain::Currency::parse(code).is_ok();
        if self.name == "orders" {
            return self.read_order(record).is_ok_and(|order| {
                crate::tell::check_id("customer_id", &order.customer_id).is_ok()
                    && currency(&order.currency)
                    && order_domain::values::CountryCode::parse(&order.ship_to.country).is_ok()
            });
        }
        match self.read_child(record) {
            Ok(Child::Line(_) | Child::Shipment(_)) => true,
            Ok(Child::Payment(payment)) => currency(&payment.currency),
            Ok(Child::Refund(refund)) => {
                currency(&refund.currency) && crate::tell::is_time(&refund.refunded_at)
            }
            Ok(Child::Status(status)) => {
                crate::tell::is_status(&status.status) && crate::tell::is_time(&status.at)
            }
            Err(_) => false,
        }
    }

    /// Read `record` as a row of orders.csv, its lists empty: the first column that cannot be
    /// read (its width, text that is not UTF-8, an order id not valid in the id order) is the
    /// error.
    fn read_order(&self, record: &ByteRecord) -> Result<LegacyOrder, String> {
        check_width(self, record)?;
        let c = &self.columns;
        let field = |i: usize, name: &str| text(record, c[i], name);
        let order_id = field(0, "order_id")?;
        self.id_order.check(&order_id)?;
        Ok(LegacyOrder {
            order_id,
            customer_id: field(1, "customer_id")?,
            currency: field(2, "currency")?,
            shipping_method: field(3, "shipping_method")?,
            ship_to: LegacyAddress {
                recipient: field(4, "recipient")?,
                line1: field(5, "line1")?,
                line2: optional(field(6, "line2")?),
                city: field(7, "city")?,
                region: optional(field(8, "region")?),
                postal_code: field(9, "postal_code")?,
                country: field(10, "country")?,
            },
            lines: Vec::new(),
            payments: Vec::new(),
            shipments: Vec::new(),
            refunds: Vec::new(),
            status_history: Vec::new(),
        })
    }

    /// Read `record` as a row of this child table: the first column that cannot be read (its
    /// width, text that is not UTF-8, an amount that is not an integer) is the error.
    fn read_child(&self, record: &ByteRecord) -> Result<Child, String> {
        check_width(self, record)?;
        let c = &self.columns;
        let field = |i: usize, name: &str| text(record, c[i], name);
        let integer = |i: usize, name: &str| number(record, c[i], name);
        Ok(match self.name {
            "order_lines" => Child::Line(LegacyLine {
                sku: field(1, "sku")?,
                quantity: integer(2, "quantity")?,
                unit_price_minor: integer(3, "unit_price_minor")?,
            }),
            "payments" => Child::Payment(LegacyPayment {
                payment_id: field(1, "payment_id")?,
                currency: field(2, "currency")?,
                amount_minor: integer(3, "amount_minor")?,
            }),
            "shipments" => Child::Shipment(LegacyShipment {
                carrier: field(1, "carrier")?,
                tracking_number: field(2, "tracking_number")?,
            }),
            "refunds" => Child::Refund(LegacyRefund {
                currency: field(1, "currency")?,
                amount_minor: integer(2, "amount_minor")?,
                refunded_at: field(3, "refunded_at")?,
            }),
            _ => Child::Status(LegacyStatus {
                status: field(1, "status")?,
                at: field(2, "at")?,
                reason: optional(field(3, "reason")?),
            }),
        })
    }

    /// The order id of the head row (bytes; not necessarily UTF-8).
    fn head_id(&self) -> Option<&[u8]> {
        self.head
            .as_ref()
            .map(|row| row.record.get(self.columns[0]).unwrap_or(b""))
    }
}

/// What [`skip_row`] found of a row.
#[derive(Debug, PartialEq, Eq)]
struct Skipped {
    /// Where the next row begins (the byte after the row's terminator, or the file's end).
    end: u64,
    /// Empty lines before the row (the CSV reader skips them too).
    blank_lines: u64,
    /// Lines the row spans (more than 1 when a quoted field holds a line break).
    lines: u64,
    /// Line breaks read, the row's end included.
    newlines: u64,
    /// Its fields.
    fields: usize,
    /// The field at the order id's column, unquoted (its first 1,024 bytes).
    id: Vec<u8>,
    /// Whether every quote closed before the file ended.
    closed: bool,
}

/// Read the row that starts at byte `start` of `path` to its end, holding none of it but the
/// field at `id_column`, the way the CSV reader reads (`,` between fields, `"` quotes, `""`
/// a quote within them, a line ending in `\n`, `\r` or `\r\n`, empty lines skipped).
fn skip_row(path: &Path, start: u64, id_column: usize) -> io::Result<Skipped> {
    let mut file = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    file.seek(io::SeekFrom::Start(start))?;
    scan_row(BufReader::with_capacity(1 << 16, file), start, id_column)
}

fn scan_row(mut input: impl BufRead, start: u64, id_column: usize) -> io::Result<Skipped> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        /// Before the row (empty lines are skipped).
        Before,
        FieldStart,
        Unquoted,
        Quoted,
        /// A quote within a quoted field: its end, or the first of `""`.
        QuoteInQuoted,
    }
    let mut state = State::Before;
    let mut at = start;
    let mut skipped = Skipped {
        end: start,
        blank_lines: 0,
        lines: 1,
        newlines: 0,
        fields: 1,
        id: Vec::new(),
        closed: true,
    };
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            skipped.closed = state != State::Quoted;
            skipped.end = at;
            return Ok(skipped);
        }
        let mut used = 0;
        for &byte in buffer {
            used += 1;
            at += 1;
            if byte == b'\n' {
                skipped.newlines += 1;
            }
            // The next state, and the byte the field gets (none for quotes that quote).
            let (next, content) = match (state, byte) {
                (State::Before, b'\n') => {
                    skipped.blank_lines += 1;
                    (State::Before, None)
                }
                (State::Before, b'\r') => (State::Before, None),
                (State::Quoted, b'"') => (State::QuoteInQuoted, None),
                (State::Quoted, _) => {
                    if byte == b'\n' {
                        skipped.lines += 1;
                    }
                    (State::Quoted, Some(byte))
                }
                (State::QuoteInQuoted, b'"') => (State::Quoted, Some(b'"')),
                (State::Before | State::FieldStart, b'"') => (State::Quoted, None),
                (_, b',') => {
                    skipped.fields += 1;
                    (State::FieldStart, None)
                }
                (_, b'\n' | b'\r') => {
                    input.consume(used);
                    skipped.end = at;
                    return Ok(skipped);
                }
                _ => (State::Unquoted, Some(byte)),
            };
            state = next;
            if let Some(byte) = content
                && skipped.fields == id_column + 1
                && skipped.id.len() < 1024
            {
                skipped.id.push(byte);
            }
        }
        input.consume(used);
    }
}

/// The lines of a field (split at `\n`, `\r\n` and `\r`, as the CSV reader ends rows).
fn split_lines(field: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at < field.len() {
        match field[at] {
            b'\n' => {
                lines.push(&field[start..at]);
                start = at + 1;
            }
            b'\r' => {
                lines.push(&field[start..at]);
                if field.get(at + 1) == Some(&b'\n') {
                    at += 1;
                }
                start = at + 1;
            }
            _ => {}
        }
        at += 1;
    }
    lines.push(&field[start..]);
    lines
}

/// A field of a row as text.
fn text(record: &ByteRecord, index: usize, column: &str) -> Result<String, String> {
    let bytes = record.get(index).unwrap_or(b"");
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| {
        format!(
            "{column}: not valid UTF-8 (byte {} of the field)",
            e.valid_up_to() + 1
        )
    })
}

fn number(record: &ByteRecord, index: usize, column: &str) -> Result<i64, String> {
    let field = text(record, index, column)?;
    field
        .trim()
        .parse::<i64>()
        .map_err(|_| format!("{column}: {field:?} is not an integer"))
}

fn optional(value: String) -> Option<String> {
    if value.is_empty() { None } else { Some(value) }
}

/// Compare two order ids in `id_order`; ids not valid in it (or not UTF-8) as bytes.
fn compare_ids(id_order: IdOrder, a: &[u8], b: &[u8]) -> Ordering {
    match (std::str::from_utf8(a), std::str::from_utf8(b)) {
        (Ok(a), Ok(b)) => id_order
            .compare(a, b)
            .unwrap_or_else(|_| a.as_bytes().cmp(b.as_bytes())),
        _ => a.cmp(b),
    }
}

fn check_width(table: &Table, record: &ByteRecord) -> Result<(), String> {
    if record.len() != table.width {
        return Err(format!(
            "{} fields where the header has {}",
            record.len(),
            table.width
        ));
    }
    Ok(())
}

/// A CSV export directory read as legacy orders.
pub struct CsvTables {
    directory: PathBuf,
    /// `orders` first, then the five child tables in [`TABLES`] order.
    tables: Vec<Table>,
    id_order: IdOrder,
    progress: Progress,
    /// The previous order id of orders.csv.
    previous: Option<Vec<u8>>,
    /// The row of orders.csv being joined (taken from its table) and its order id: handed out
    /// once the rows before it in the other tables, which have no order, are.
    current: Option<(Row, Vec<u8>)>,
    /// Rows swallowed by a quoted field (see [`Swallowed`]), by order id, whose orders are not
    /// joined yet: each such order is rejected. The first one of an order counts: its file,
    /// its line, and the line where the quote opened.
    swallowed: std::collections::BTreeMap<Vec<u8>, (String, u64, u64)>,
}

impl std::fmt::Debug for CsvTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvTables")
            .field("directory", &self.directory)
            .field("id_order", &self.id_order)
            .finish_non_exhaustive()
    }
}

impl CsvTables {
    /// Open the export in `directory`, after checking that every table is sorted by
    /// `order_id` in `id_order`.
    pub fn open(directory: &Path, id_order: IdOrder) -> io::Result<Self> {
        let mut total = 0;
        for (name, _) in TABLES {
            let path = table_path(directory, name);
            total += std::fs::metadata(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?
                .len();
        }
        check_sorted(directory, id_order)?;
        let progress = Progress::new(total);
        let tables = TABLES
            .iter()
            .map(|(name, columns)| open_table(directory, name, columns, &progress, id_order))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            directory: directory.to_owned(),
            tables,
            id_order,
            progress,
            previous: None,
            current: None,
            swallowed: std::collections::BTreeMap::new(),
        })
    }

    /// The export's directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    fn compare(&self, a: &[u8], b: &[u8]) -> Ordering {
        // Both were checked by `check_sorted`: valid in this order, or compared as bytes.
        compare_ids(self.id_order, a, b)
    }

    /// Take the rows swallowed by the rows read so far into [`CsvTables::swallowed`].
    fn gather_swallowed(&mut self) {
        for table in &mut self.tables {
            for row in table.swallowed.drain(..) {
                self.swallowed
                    .entry(row.id)
                    .or_insert_with(|| (table.file.clone(), row.line, row.quote_line));
            }
        }
    }

    /// The first row of the child tables before `id` (or of all that are left when `id` is
    /// `None`), consumed: it has no order, and is a reject. `None` when there is none.
    fn orphan_before(&mut self, id: Option<&[u8]>) -> io::Result<Option<Reject>> {
        self.gather_swallowed();
        for index in 1..self.tables.len() {
            let Some(head) = self.tables[index].head_id() else {
                continue;
            };
            if let Some(id) = id
                && self.compare(head, id) != Ordering::Less
            {
                continue;
            }
            let table = &self.tables[index];
            let line = table.head.as_ref().map_or(0, |row| row.line);
            let order_id = String::from_utf8_lossy(head).into_owned();
            // Its order's row swallowed by a quote that ran on in orders.csv: say so.
            let why = match self.swallowed.get(head) {
                Some((file, at, quote)) if file == &self.tables[0].file => format!(
                    " (its row there, line {at}, was swallowed by a quote that ran on from \
                     orders.csv line {quote}, closed by a stray quote: fix the quotes and run \
                     again)"
                ),
                _ => String::new(),
            };
            let reason = format!("no order {order_id} in orders.csv for this row{why}");
            let reject = Reject::new(table.file.clone(), line, Some(order_id), reason);
            self.tables[index].advance()?;
            return Ok(Some(reject));
        }
        Ok(None)
    }

    /// The rows of child table `index` for `id`, consumed; past [`MAX_ROWS_PER_ORDER`] rows or
    /// [`MAX_ORDER_TABLE_BYTES`], the rest are read and dropped, and the error is the line of
    /// the first row dropped and why.
    fn take_rows(
        &mut self,
        index: usize,
        id: &[u8],
    ) -> io::Result<Result<Vec<Row>, (u64, String)>> {
        let mut rows = Vec::new();
        let mut bytes = 0;
        let mut over = None;
        while self.tables[index].head_id() == Some(id) {
            if let Some(head) = self.tables[index].head.take()
                && over.is_none()
            {
                bytes += head.record.as_slice().len() + head.record.len();
                if rows.len() == MAX_ROWS_PER_ORDER || bytes > MAX_ORDER_TABLE_BYTES {
                    over = Some(head.line);
                    rows = Vec::new();
                } else {
                    rows.push(head);
                }
            }
            self.tables[index].advance()?;
        }
        Ok(match over {
            None => Ok(rows),
            Some(line) => Err((
                line,
                format!(
                    "the order has more rows in {} than an order may (at most {MAX_ROWS_PER_ORDER} \
                     rows and {} MiB of one order in each table): its rows from this line on \
                     were skipped",
                    self.tables[index].file,
                    MAX_ORDER_TABLE_BYTES >> 20
                ),
            )),
        })
    }

    /// The order of orders.csv whose row is `row` (taken from its table), with its rows from
    /// every table.
    fn join(&mut self, row: Row, id: Vec<u8>) -> io::Result<Record> {
        let Row {
            line,
            record,
            too_long,
            stray,
        } = row;
        let mut children = Vec::with_capacity(5);
        let mut too_many = None;
        for index in 1..self.tables.len() {
            match self.take_rows(index, &id)? {
                Ok(rows) => children.push(rows),
                Err((row_line, reason)) => {
                    children.push(Vec::new());
                    too_many.get_or_insert((index, row_line, reason));
                }
            }
        }
        // An id that is not UTF-8 is not named in its reject (its reason says which byte):
        // a stand-in text for it would be taken for an id, and judge the orders after it.
        let order_id = std::str::from_utf8(&id).ok().map(str::to_owned);
        let reject = |file: &str, line: u64, reason: String| Record::Unreadable {
            reject: Reject::new(file.to_owned(), line, order_id.clone(), reason),
            order: true,
        };
        // An id on more than one row of orders.csv: the other tables' rows cannot be told
        // apart, so every row of that id is rejected.
        if self.previous.as_deref() == Some(id.as_slice())
            || self.tables[0].head_id() == Some(id.as_slice())
        {
            self.previous = Some(id);
            return Ok(reject(
                "orders.csv",
                line,
                "order_id is more than once in orders.csv (each order has one row; the rows of the other tables cannot be told apart)".into(),
            ));
        }
        self.previous = Some(id.clone());
        if too_long {
            return Ok(reject("orders.csv", line, too_long_reason()));
        }
        if let Some(reason) = stray {
            return Ok(reject("orders.csv", line, reason));
        }
        // A row of this order swallowed by a quote that ran on: the order is not whole. (Every
        // row with this id or a smaller one has been read: the swallowing row came before.)
        self.gather_swallowed();
        let stale: Vec<Vec<u8>> = self
            .swallowed
            .keys()
            .filter(|other| self.compare(other, &id) == Ordering::Less)
            .cloned()
            .collect();
        for other in stale {
            self.swallowed.remove(&other);
        }
        if let Some((file, at, quote)) = self.swallowed.remove(id.as_slice()) {
            return Ok(reject(
                &file,
                at,
                format!(
                    "the order's row at {file} line {at} was swallowed by a quoted field that \
                     runs on from {file} line {quote} to a stray quote: the row cannot be read, \
                     so the order is not imported; fix the quotes and run again"
                ),
            ));
        }
        if let Some((index, row_line, reason)) = too_many {
            return Ok(reject(&self.tables[index].file, row_line, reason));
        }
        match self.build(&record, &children) {
            Ok(order) => Ok(Record::Order {
                order: Box::new(order),
                file: "orders.csv".into(),
                line,
                rows: self.row_lines(&children),
            }),
            Err((table, row_line, reason)) => {
                let (file, at) = match table {
                    Some(index) => (self.tables[index].file.clone(), row_line),
                    None => ("orders.csv".to_owned(), line),
                };
                Ok(reject(&file, at, reason))
            }
        }
    }

    /// Where the rows of each list of an order are, as reasons name the lists.
    fn row_lines(&self, children: &[Vec<Row>]) -> RowLines {
        let mut rows = RowLines::default();
        for (offset, table_rows) in children.iter().enumerate() {
            let table = &self.tables[offset + 1];
            let list = match table.name {
                "order_lines" => "lines",
                other => other,
            };
            rows.add(
                list,
                table.file.clone(),
                table_rows.iter().map(|row| row.line).collect(),
            );
        }
        rows
    }

    /// Assemble a legacy order from its rows; the first unreadable field names its table
    /// (`None`: orders.csv) and line.
    #[allow(clippy::type_complexity)]
    fn build(
        &self,
        record: &ByteRecord,
        children: &[Vec<Row>],
    ) -> Result<LegacyOrder, (Option<usize>, u64, String)> {
        let mut order = self.tables[0]
            .read_order(record)
            .map_err(|e| (None, 0, e))?;
        for (offset, rows) in children.iter().enumerate() {
            let index = offset + 1;
            let table = &self.tables[index];
            for Row {
                line,
                record: row,
                too_long,
                stray,
            } in rows
            {
                let at = |e: String| (Some(index), *line, e);
                if *too_long {
                    return Err(at(too_long_reason()));
                }
                if let Some(reason) = stray {
                    return Err(at(reason.clone()));
                }
                match table.read_child(row).map_err(at)? {
                    Child::Line(line) => order.lines.push(line),
                    Child::Payment(payment) => order.payments.push(payment),
                    Child::Shipment(shipment) => order.shipments.push(shipment),
                    Child::Refund(refund) => order.refunds.push(refund),
                    Child::Status(status) => order.status_history.push(status),
                }
            }
        }
        Ok(order)
    }
}

impl Source for CsvTables {
    fn next_record(&mut self) -> Option<io::Result<Record>> {
        let unreadable = |reject| {
            Some(Ok(Record::Unreadable {
                reject,
                order: false,
            }))
        };
        if self.current.is_none() {
            let Some(row) = self.tables[0].head.take() else {
                // The end of orders.csv: what is left of the other tables has no order.
                return match self.orphan_before(None) {
                    Ok(Some(reject)) => unreadable(reject),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                };
            };
            if let Err(e) = self.tables[0].advance() {
                return Some(Err(e));
            }
            let id = row
                .record
                .get(self.tables[0].columns[0])
                .unwrap_or(b"")
                .to_vec();
            self.current = Some((row, id));
        }
        let id = self
            .current
            .as_ref()
            .map(|(_, id)| id.clone())
            .unwrap_or_default();
        // Rows without an order come before it (they are earlier in their files), one at a
        // time, as they are found.
        match self.orphan_before(Some(&id)) {
            Ok(Some(reject)) => return unreadable(reject),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        let (row, id) = self.current.take()?;
        Some(self.join(row, id))
    }

    fn progress(&self) -> Progress {
        self.progress.clone()
    }
}

/// The reason a row longer than a record may be rejects its order.
fn too_long_reason() -> String {
    format!(
        "a row longer than {} bytes (the longest a record may be), skipped",
        crate::source::MAX_RECORD_BYTES
    )
}

/// One pass over every table: each must be sorted by `order_id` in `id_order` (orders.csv
/// strictly, except for a repeated id, which rejects that order).
fn check_sorted(directory: &Path, id_order: IdOrder) -> io::Result<()> {
    for (name, columns) in TABLES {
        let progress = Progress::default();
        let mut table = open_table(directory, name, columns, &progress, id_order)?;
        let mut previous: Option<Vec<u8>> = None;
        while let Some(Row {
            line,
            record,
            too_long,
            ..
        }) = table.head.take()
        {
            // (A row too long to read was judged as it was skipped.)
            let multiline = !too_long && record.iter().any(|field| field.contains(&b'\n'));
            if multiline && record.len() != table.width {
                return Err(invalid(format!(
                    "{name}.csv line {line}: a row ({} fields, the header has {}) running over \
                     several lines: a quote that is not closed? The rows after it cannot be read",
                    record.len(),
                    table.width
                )));
            }
            let id = record.get(table.columns[0]).unwrap_or(b"").to_vec();
            if let Ok(text) = std::str::from_utf8(&id)
                && id_order == IdOrder::Numeric
                && let Err(reason) = id_order.check(text)
            {
                return Err(invalid(format!(
                    "{name}.csv line {line}: {reason}; every table must be sorted by order_id"
                )));
            }
            if let Some(before) = &previous {
                let order = match (std::str::from_utf8(before), std::str::from_utf8(&id)) {
                    (Ok(a), Ok(b)) => id_order
                        .compare(a, b)
                        .unwrap_or(a.as_bytes().cmp(b.as_bytes())),
                    _ => before.as_slice().cmp(id.as_slice()),
                };
                if order == Ordering::Greater {
                    return Err(invalid(format!(
                        "{name}.csv line {line}: order id {:?} comes after {:?}: every table must be sorted by order_id ({} order; see --id-order)",
                        String::from_utf8_lossy(&id),
                        String::from_utf8_lossy(before),
                        match id_order {
                            IdOrder::Text => "byte",
                            IdOrder::Numeric => "numeric",
                        }
                    )));
                }
            }
            previous = Some(id);
            table.advance()?;
            // (The rows a quoted field swallowed are judged by the join.)
            table.swallowed.clear();
            // The last row, whose quoted field holds a line break: the CSV reader ends a quote
            // left open at the end of the file, which has then swallowed every row after it.
            if multiline
                && table.head.is_none()
                && !skip_row(
                    &table.path,
                    record.position().map_or(0, |p| p.byte()),
                    table.columns[0],
                )?
                .closed
            {
                return Err(invalid(format!(
                    "{name}.csv line {line}: a quote that is not closed before the end of the \
                     file: the rows after it cannot be read"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str, id_column: usize) -> Skipped {
        scan_row(text.as_bytes(), 0, id_column).unwrap()
    }

    #[test]
    fn a_skipped_row_is_read_as_the_csv_reader_reads_it() {
        let row = scan("\n\r\n\"A\"\"1\",x,\"a,\nb\"\"\"c,d\r\nA2,y\n", 0);
        assert_eq!(row.blank_lines, 2);
        assert_eq!((row.fields, row.lines, row.closed), (4, 2, true));
        assert_eq!(row.id, b"A\"1");
        // As the CSV reader reads it.
        let mut reader = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader("\n\r\n\"A\"\"1\",x,\"a,\nb\"\"\"c,d\r\nA2,y\n".as_bytes());
        let mut record = ByteRecord::new();
        assert!(reader.read_byte_record(&mut record).unwrap());
        assert_eq!(record.len(), 4);
        assert_eq!(&record[0], b"A\"1");
        assert_eq!(&record[2], b"a,\nb\"c");
        // It ends after its terminator (`\r`: the `\n` after it is an empty line).
        assert_eq!(
            row.end as usize,
            "\n\r\n\"A\"\"1\",x,\"a,\nb\"\"\"c,d\r".len()
        );
        assert_eq!(row.newlines, 3);
        assert_eq!(scan("x,\"A2\"\n", 1).id, b"A2");
        // A quote open at the end of the file.
        let open = scan("A1,\"abc\nA2,x\n", 0);
        assert!(!open.closed);
        assert_eq!(open.end as usize, "A1,\"abc\nA2,x\n".len());
        // A last row without a terminator.
        let last = scan("A1,x", 0);
        assert_eq!((last.fields, last.closed, last.end), (2, true, 4));
    }
}

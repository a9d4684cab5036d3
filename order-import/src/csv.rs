//! A CSV export: six tables in one directory, joined by `order_id`.
//!
//! Every table must be sorted by `order_id` (see [`IdOrder`]); the join then needs one row of
//! each table in memory, whatever the export's size. Before anything is imported, one pass
//! checks that every table is sorted: a join of unsorted tables would attach rows to the
//! wrong orders or miss them, so an unsorted table stops the import with the line to look at.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use csv::{ByteRecord, Reader, ReaderBuilder};

use crate::legacy::{
    IdOrder, LegacyAddress, LegacyLine, LegacyOrder, LegacyPayment, LegacyRefund, LegacyShipment,
    LegacyStatus,
};
use crate::source::{Progress, Record, Reject, Source, table_path};

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

/// Reads `read` bytes into a shared progress counter.
struct Counted<R> {
    inner: R,
    progress: Progress,
    /// Bytes read since the current row began (the table resets it before each row).
    in_row: Arc<AtomicU64>,
}

/// The longest row read: as a JSON Lines record may be, with room for the CSV reader's own
/// buffer (a row is measured from the bytes it asked for, which run ahead of the row by at
/// most that). A quote left open makes the rest of the file one row: this stops it there,
/// instead of holding the whole file in memory.
const MAX_ROW_BYTES: u64 = crate::source::MAX_RECORD_BYTES as u64 + (64 << 10);

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

/// One table being read: its next row held back until the join asks for it.
struct Table {
    name: &'static str,
    file: String,
    reader: TableReader,
    /// Column index of each expected column, in [`TABLES`] order.
    columns: Vec<usize>,
    /// Fields in the header: every row has as many.
    width: usize,
    /// Bytes read since the current row began (shared with the table's reader).
    in_row: Arc<AtomicU64>,
    /// The next row (its line and fields), `None` at the end.
    head: Option<(u64, ByteRecord)>,
}

fn open_table(
    directory: &Path,
    name: &'static str,
    expected: &[&str],
    progress: &Progress,
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
    let mut table = Table {
        name,
        file: format!("{name}.csv"),
        reader,
        columns,
        width,
        in_row,
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
        let starts = self.reader.position().line();
        self.in_row.store(0, AtomicOrdering::Relaxed);
        match self.reader.read_byte_record(&mut record) {
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                self.head = Some((line, record));
                Ok(())
            }
            Ok(false) => {
                self.head = None;
                Ok(())
            }
            // A row longer than any can be: a quote left open has made the rest of the file
            // one row.
            Err(_) if self.in_row.load(AtomicOrdering::Relaxed) > MAX_ROW_BYTES => {
                Err(invalid(format!(
                    "{} line {starts}: {RowTooLong} (a quote that is not closed?); the rows \
                     after it cannot be read",
                    self.file
                )))
            }
            // A row the CSV reader cannot read at all (an unterminated quote running to the
            // end of the file): the file's structure is broken from there on.
            Err(e) => Err(invalid(format!("{}: {e}", self.file))),
        }
    }

    /// The order id of the head row (bytes; not necessarily UTF-8).
    fn head_id(&self) -> Option<&[u8]> {
        self.head
            .as_ref()
            .map(|(_, record)| record.get(self.columns[0]).unwrap_or(b""))
    }
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

/// A quote that never closes (or closes rows later) has swallowed the rows after it, which no
/// reject could report: a row of the wrong width whose fields run over several lines, or, when
/// the quote is in the last column (the width is then right), a field that holds a line
/// reading as a whole row of the table (as many commas as the header, less one, or more).
fn runaway_quote(table: &Table, record: &ByteRecord) -> bool {
    let multiline = |field: &[u8]| field.contains(&b'\n');
    if record.len() != table.width {
        return record.iter().any(multiline);
    }
    let separators = table.width.saturating_sub(1).max(1);
    record.iter().filter(|field| multiline(field)).any(|field| {
        field
            .split(|&b| b == b'\n')
            .skip(1)
            .any(|line| line.iter().filter(|&&b| b == b',').count() >= separators)
    })
}

/// A CSV export directory read as legacy orders.
pub struct CsvTables {
    directory: PathBuf,
    /// `orders` first, then the five child tables in [`TABLES`] order.
    tables: Vec<Table>,
    id_order: IdOrder,
    progress: Progress,
    /// Rejects found while joining (orphan rows), handed out before the next order.
    pending: std::collections::VecDeque<Reject>,
    /// The previous order id of orders.csv.
    previous: Option<Vec<u8>>,
    /// The joined order, handed out after the pending rejects.
    ready: Option<Record>,
    finished: bool,
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
            .map(|(name, columns)| open_table(directory, name, columns, &progress))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            directory: directory.to_owned(),
            tables,
            id_order,
            progress,
            pending: Default::default(),
            previous: None,
            ready: None,
            finished: false,
        })
    }

    /// The export's directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    fn compare(&self, a: &[u8], b: &[u8]) -> Ordering {
        // Both were checked by `check_sorted`: valid in this order, or compared as bytes.
        match (std::str::from_utf8(a), std::str::from_utf8(b)) {
            (Ok(a), Ok(b)) => self
                .id_order
                .compare(a, b)
                .unwrap_or_else(|_| a.as_bytes().cmp(b.as_bytes())),
            _ => a.cmp(b),
        }
    }

    /// Rows of the child tables before `id` (or all that are left when `id` is `None`) have
    /// no order: each is a reject.
    fn orphans_before(&mut self, id: Option<&[u8]>) -> io::Result<()> {
        for index in 1..self.tables.len() {
            while let Some(head) = self.tables[index].head_id() {
                if let Some(id) = id
                    && self.compare(head, id) != Ordering::Less
                {
                    break;
                }
                let table = &self.tables[index];
                let (line, record) = table
                    .head
                    .as_ref()
                    .map_or((0, None), |(l, r)| (*l, Some(r)));
                let order_id = record
                    .and_then(|r| r.get(table.columns[0]))
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                self.pending.push_back(Reject {
                    file: table.file.clone(),
                    line,
                    order_id: order_id.clone(),
                    reason: format!(
                        "no order {} in orders.csv for this row",
                        order_id.as_deref().unwrap_or("?")
                    ),
                });
                self.tables[index].advance()?;
            }
        }
        Ok(())
    }

    /// The rows of child table `index` for `id`, consumed.
    fn take_rows(&mut self, index: usize, id: &[u8]) -> io::Result<Vec<(u64, ByteRecord)>> {
        let mut rows = Vec::new();
        while self.tables[index].head_id() == Some(id) {
            if let Some(head) = self.tables[index].head.take() {
                rows.push(head);
            }
            self.tables[index].advance()?;
        }
        Ok(rows)
    }

    /// The next order of orders.csv with its rows from every table.
    fn next_order(&mut self) -> io::Result<Option<Record>> {
        let Some((line, record)) = self.tables[0].head.take() else {
            self.orphans_before(None)?;
            return Ok(None);
        };
        self.tables[0].advance()?;
        let id = record
            .get(self.tables[0].columns[0])
            .unwrap_or(b"")
            .to_vec();
        self.orphans_before(Some(&id))?;
        let mut children = Vec::with_capacity(5);
        for index in 1..self.tables.len() {
            children.push(self.take_rows(index, &id)?);
        }
        // An id that is not UTF-8 is not named in its reject (its reason says which byte):
        // a stand-in text for it would be taken for an id, and judge the orders after it.
        let order_id = std::str::from_utf8(&id).ok().map(str::to_owned);
        let reject = |file: &str, line: u64, reason: String| Record::Unreadable {
            reject: Reject {
                file: file.to_owned(),
                line,
                order_id: order_id.clone(),
                reason,
            },
            order: true,
        };
        // An id on more than one row of orders.csv: the other tables' rows cannot be told
        // apart, so every row of that id is rejected.
        if self.previous.as_deref() == Some(id.as_slice())
            || self.tables[0].head_id() == Some(id.as_slice())
        {
            self.previous = Some(id.clone());
            return Ok(Some(reject(
                "orders.csv",
                line,
                "order_id is more than once in orders.csv (each order has one row; the rows of the other tables cannot be told apart)".into(),
            )));
        }
        self.previous = Some(id.clone());
        match self.build(&record, &children) {
            Ok(order) => Ok(Some(Record::Order {
                order: Box::new(order),
                file: "orders.csv".into(),
                line,
            })),
            Err((table, row_line, reason)) => {
                let (file, at) = match table {
                    Some(index) => (self.tables[index].file.clone(), row_line),
                    None => ("orders.csv".to_owned(), line),
                };
                Ok(Some(reject(&file, at, reason)))
            }
        }
    }

    /// Assemble a legacy order from its rows; the first unreadable field names its table
    /// (`None`: orders.csv) and line.
    #[allow(clippy::type_complexity)]
    fn build(
        &self,
        record: &ByteRecord,
        children: &[Vec<(u64, ByteRecord)>],
    ) -> Result<LegacyOrder, (Option<usize>, u64, String)> {
        let orders = &self.tables[0];
        check_width(orders, record).map_err(|e| (None, 0, e))?;
        let c = &orders.columns;
        let field = |i: usize, name: &str| text(record, c[i], name).map_err(|e| (None, 0, e));
        let order_id = field(0, "order_id")?;
        if let Err(reason) = self.id_order.check(&order_id) {
            return Err((None, 0, reason));
        }
        let mut order = LegacyOrder {
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
        };
        for (offset, rows) in children.iter().enumerate() {
            let index = offset + 1;
            let table = &self.tables[index];
            let c = &table.columns;
            for (line, row) in rows {
                let at = |e: String| (Some(index), *line, e);
                check_width(table, row).map_err(at)?;
                let field = |i: usize, name: &str| text(row, c[i], name).map_err(at);
                let integer = |i: usize, name: &str| number(row, c[i], name).map_err(at);
                match table.name {
                    "order_lines" => order.lines.push(LegacyLine {
                        sku: field(1, "sku")?,
                        quantity: integer(2, "quantity")?,
                        unit_price_minor: integer(3, "unit_price_minor")?,
                    }),
                    "payments" => order.payments.push(LegacyPayment {
                        payment_id: field(1, "payment_id")?,
                        currency: field(2, "currency")?,
                        amount_minor: integer(3, "amount_minor")?,
                    }),
                    "shipments" => order.shipments.push(LegacyShipment {
                        carrier: field(1, "carrier")?,
                        tracking_number: field(2, "tracking_number")?,
                    }),
                    "refunds" => order.refunds.push(LegacyRefund {
                        currency: field(1, "currency")?,
                        amount_minor: integer(2, "amount_minor")?,
                        refunded_at: field(3, "refunded_at")?,
                    }),
                    _ => order.status_history.push(LegacyStatus {
                        status: field(1, "status")?,
                        at: field(2, "at")?,
                        reason: optional(field(3, "reason")?),
                    }),
                }
            }
        }
        Ok(order)
    }
}

impl Source for CsvTables {
    fn next_record(&mut self) -> Option<io::Result<Record>> {
        loop {
            // Orphan rows found while joining an order come before it (they are earlier in
            // their files).
            if let Some(reject) = self.pending.pop_front() {
                return Some(Ok(Record::Unreadable {
                    reject,
                    order: false,
                }));
            }
            if let Some(record) = self.ready.take() {
                return Some(Ok(record));
            }
            if self.finished {
                return None;
            }
            match self.next_order() {
                Ok(Some(record)) => self.ready = Some(record),
                Ok(None) => self.finished = true,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn progress(&self) -> Progress {
        self.progress.clone()
    }
}

/// One pass over every table: each must be sorted by `order_id` in `id_order` (orders.csv
/// strictly, except for a repeated id, which rejects that order).
fn check_sorted(directory: &Path, id_order: IdOrder) -> io::Result<()> {
    for (name, columns) in TABLES {
        let progress = Progress::default();
        let mut table = open_table(directory, name, columns, &progress)?;
        let mut previous: Option<Vec<u8>> = None;
        while let Some((line, record)) = table.head.take() {
            if runaway_quote(&table, &record) {
                return Err(invalid(format!(
                    "{name}.csv line {line}: a row ({} fields, the header has {}) running over \
                     several lines that read as rows of their own: a quote that is not closed? \
                     The rows after it cannot be read",
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
        }
    }
    Ok(())
}

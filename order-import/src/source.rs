//! Reading an export: legacy orders one at a time, each with where it came from, or the
//! reason a record could not be read (which rejects that record only).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::legacy::LegacyOrder;

/// The longest record (line) accepted, in bytes: a longer one is rejected without being held
/// in memory.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// A record that cannot be imported, with where it is and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// The file (as given on the command line, or the CSV table's file name).
    pub file: String,
    /// The 1-based line number of the record (for CSV, of the offending row).
    pub line: u64,
    /// The legacy order id, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Why.
    pub reason: String,
}

/// One record of the export.
#[derive(Debug)]
pub enum Record {
    /// A legacy order that was read (the domain has not looked at it yet).
    Order {
        /// The order.
        order: Box<LegacyOrder>,
        /// Where its record starts.
        file: String,
        /// Its line.
        line: u64,
    },
    /// A record that could not be read or joined.
    Unreadable {
        /// Where and why.
        reject: Reject,
        /// True when the record is a legacy order (a JSON line, a row of orders.csv), false
        /// for a CSV row of another table that belongs to no order.
        order: bool,
    },
}

/// An export read record by record.
pub trait Source: Send {
    /// The next record; `None` at the end; `Err` when reading fails altogether (a missing
    /// file, an I/O error, a CSV export that is not sorted): the import stops.
    fn next_record(&mut self) -> Option<io::Result<Record>>;
    /// Bytes read so far and the export's size, for progress.
    fn progress(&self) -> Progress;
}

/// Bytes read out of the total, shared with a progress reporter.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    read: Arc<AtomicU64>,
    total: u64,
}

impl Progress {
    /// A counter for an export of `total` bytes.
    pub fn new(total: u64) -> Self {
        Self {
            read: Arc::new(AtomicU64::new(0)),
            total,
        }
    }

    /// Bytes read so far.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// The export's size in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn add(&self, bytes: u64) {
        self.read.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A JSON Lines export: one legacy order per line.
pub struct JsonLines<R> {
    reader: R,
    file: String,
    line: u64,
    buffer: Vec<u8>,
    progress: Progress,
}

impl<R> std::fmt::Debug for JsonLines<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines")
            .field("file", &self.file)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl JsonLines<BufReader<File>> {
    /// Open the export at `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let metadata = file.metadata()?;
        if metadata.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: a directory; a JSON Lines export is a file (a directory of CSV tables \
                     is --format csv)",
                    path.display()
                ),
            ));
        }
        let size = metadata.len();
        Ok(Self::new(
            BufReader::with_capacity(1 << 20, file),
            path.display().to_string(),
            size,
        ))
    }
}

impl<R: BufRead + Send> JsonLines<R> {
    /// Read `reader`, naming it `file` in rejects; `size` is its length for progress.
    pub fn new(reader: R, file: String, size: u64) -> Self {
        Self {
            reader,
            file,
            line: 0,
            buffer: Vec::with_capacity(4096),
            progress: Progress::new(size),
        }
    }

    fn reject(&self, order_id: Option<String>, reason: String) -> Record {
        Record::Unreadable {
            reject: Reject {
                file: self.file.clone(),
                line: self.line,
                order_id,
                reason,
            },
            order: true,
        }
    }

    /// Skip the rest of an overlong line; true when it ended with a newline.
    fn skip_line(&mut self) -> io::Result<bool> {
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                return Ok(false);
            }
            match memchr(b'\n', available) {
                Some(at) => {
                    self.reader.consume(at + 1);
                    self.progress.add(at as u64 + 1);
                    return Ok(true);
                }
                None => {
                    let length = available.len();
                    self.reader.consume(length);
                    self.progress.add(length as u64);
                }
            }
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

/// Best effort: the `order_id` of a record that does not parse as a whole.
fn order_id_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        order_id: Option<serde_json::Value>,
    }
    match serde_json::from_str::<Id>(text).ok()?.order_id? {
        serde_json::Value::String(id) => Some(id),
        other => Some(other.to_string()),
    }
}

impl<R: BufRead + Send> Source for JsonLines<R> {
    fn next_record(&mut self) -> Option<io::Result<Record>> {
        loop {
            self.buffer.clear();
            let limit = MAX_RECORD_BYTES as u64 + 1;
            let read = match (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut self.buffer)
            {
                Ok(read) => read,
                Err(e) => return Some(Err(e)),
            };
            if read == 0 {
                return None;
            }
            self.progress.add(read as u64);
            self.line += 1;
            let complete = self.buffer.last() == Some(&b'\n');
            if !complete && self.buffer.len() > MAX_RECORD_BYTES {
                if let Err(e) = self.skip_line() {
                    return Some(Err(e));
                }
                return Some(Ok(self.reject(
                    None,
                    format!("the record is longer than {MAX_RECORD_BYTES} bytes"),
                )));
            }
            if complete {
                self.buffer.pop();
                if self.buffer.last() == Some(&b'\r') {
                    self.buffer.pop();
                }
            }
            // A byte order mark some tools write at the start of a UTF-8 file.
            if self.line == 1 && self.buffer.starts_with(b"\xEF\xBB\xBF") {
                self.buffer.drain(..3);
            }
            if self.buffer.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let text = match std::str::from_utf8(&self.buffer) {
                Ok(text) => text,
                Err(e) => {
                    // Its id, when the bad bytes are elsewhere: the record is that order's
                    // first copy still, and a later copy a duplicate.
                    let order_id = order_id_of(&String::from_utf8_lossy(&self.buffer))
                        .filter(|id| !id.contains(char::REPLACEMENT_CHARACTER));
                    return Some(Ok(self.reject(
                        order_id,
                        format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1),
                    )));
                }
            };
            return Some(Ok(match serde_json::from_str::<LegacyOrder>(text) {
                Ok(order) => Record::Order {
                    order: Box::new(order),
                    file: self.file.clone(),
                    line: self.line,
                },
                Err(e) => {
                    let reason = if e.is_eof() && !complete {
                        format!("truncated record: the file ends inside it ({e})")
                    } else if e.is_eof() {
                        format!("truncated record ({e})")
                    } else {
                        // Parse again, slowly, to name the field (only for bad records).
                        let mut deserializer = serde_json::Deserializer::from_str(text);
                        match serde_path_to_error::deserialize::<_, LegacyOrder>(&mut deserializer)
                        {
                            Err(traced) if traced.path().iter().next().is_some() => format!(
                                "not a legacy order record: {}: {}",
                                traced.path(),
                                traced.inner()
                            ),
                            _ => format!("not a legacy order record: {e}"),
                        }
                    };
                    let order_id = order_id_of(text);
                    self.reject(order_id, reason)
                }
            }));
        }
    }

    fn progress(&self) -> Progress {
        self.progress.clone()
    }
}

/// The formats an export can come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line (a file).
    Jsonl,
    /// Six CSV tables in a directory (orders.csv, order_lines.csv, payments.csv,
    /// shipments.csv, refunds.csv, status_history.csv).
    Csv,
}

impl Format {
    /// The format of `path`: a directory is CSV, a file JSON Lines.
    pub fn guess(path: &Path) -> Self {
        if path.is_dir() {
            Self::Csv
        } else {
            Self::Jsonl
        }
    }
}

/// Open an export.
pub fn open(
    path: &Path,
    format: Format,
    id_order: crate::legacy::IdOrder,
) -> io::Result<Box<dyn Source>> {
    Ok(match format {
        Format::Jsonl => Box::new(JsonLines::open(path)?),
        Format::Csv => Box::new(crate::csv::CsvTables::open(path, id_order)?),
    })
}

/// The path of one CSV table of an export directory.
pub(crate) fn table_path(directory: &Path, table: &str) -> PathBuf {
    directory.join(format!("{table}.csv"))
}

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

/// The longest order id a [`Reject`] names, in bytes: a longer one (read from a bad record,
/// which may be up to [`MAX_RECORD_BYTES`]) is cut to this, marker included. Every order id
/// the import takes ([`MAX_LEGACY_ID_LEN`](crate::tell::MAX_LEGACY_ID_LEN), 200 bytes) is
/// named whole.
pub const MAX_REJECT_ORDER_ID_BYTES: usize = 256;

/// The longest reason a [`Reject`] gives, in bytes: a longer one (one that quotes a long value
/// of its record) is cut in the middle to this, marker included, keeping its start and end
/// (what is wrong, and often where).
pub const MAX_REJECT_REASON_BYTES: usize = 1024;

/// A record that cannot be imported, with where it is and why.
///
/// Made with [`Reject::new`], which bounds `order_id` to [`MAX_REJECT_ORDER_ID_BYTES`] and
/// `reason` to [`MAX_REJECT_REASON_BYTES`], so that a reject is small whatever its record
/// held: the import holds up to thousands of them per batch in memory, and writes each as one
/// line of the rejects file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// The file (as given on the command line, or the CSV table's file name).
    pub file: String,
    /// The 1-based line number of the record (for CSV, of the offending row).
    pub line: u64,
    /// The legacy order id, when it could be read (cut past [`MAX_REJECT_ORDER_ID_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Why (cut past [`MAX_REJECT_REASON_BYTES`]).
    pub reason: String,
}

impl Reject {
    /// The reject of the record at `file`'s `line`, with its order id if it could be read,
    /// and why. An order id over [`MAX_REJECT_ORDER_ID_BYTES`] keeps its start, cut on a
    /// character boundary, followed by `…[N bytes, cut]` (N its length in bytes); a reason
    /// over [`MAX_REJECT_REASON_BYTES`] keeps its start and end around `…[N bytes, cut]…`.
    /// Each is then at most its bound, and holds no more memory than its text: the text cut
    /// from is dropped. A reject made again from a reject's fields is the same reject.
    pub fn new(file: String, line: u64, order_id: Option<String>, reason: String) -> Self {
        Self {
            file,
            line,
            order_id: order_id.map(|id| cut_end(id, MAX_REJECT_ORDER_ID_BYTES)),
            reason: cut_middle(reason, MAX_REJECT_REASON_BYTES),
        }
    }

    /// The memory the reject holds, in bytes: itself and its text.
    pub fn held_bytes(&self) -> usize {
        size_of::<Self>()
            + self.file.capacity()
            + self.order_id.as_ref().map_or(0, String::capacity)
            + self.reason.capacity()
    }
}

/// What stands for the text cut out of a value of `bytes` bytes.
fn cut_marker(bytes: usize) -> String {
    format!("…[{bytes} bytes, cut]")
}

/// The longest start of `text` of at most `bytes` bytes that ends on a character boundary.
fn head_of(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The longest end of `text` of at most `bytes` bytes that starts on a character boundary.
fn tail_of(text: &str, bytes: usize) -> &str {
    let mut from = text.len() - bytes.min(text.len());
    while !text.is_char_boundary(from) {
        from += 1;
    }
    &text[from..]
}

/// `text` whole if it is at most `bound` bytes, else its start and the cut's marker, `bound`
/// bytes at most in all.
fn cut_end(mut text: String, bound: usize) -> String {
    if text.len() <= bound {
        text.shrink_to_fit();
        return text;
    }
    let marker = cut_marker(text.len());
    let mut cut = String::with_capacity(bound);
    cut.push_str(head_of(&text, bound.saturating_sub(marker.len())));
    cut.push_str(&marker);
    cut
}

/// `text` whole if it is at most `bound` bytes, else its start, the cut's marker and its end,
/// `bound` bytes at most in all.
fn cut_middle(mut text: String, bound: usize) -> String {
    if text.len() <= bound {
        text.shrink_to_fit();
        return text;
    }
    let marker = format!("{}…", cut_marker(text.len()));
    let kept = bound.saturating_sub(marker.len());
    let head = head_of(&text, kept - kept / 2);
    let tail = tail_of(&text, kept / 2);
    let mut cut = String::with_capacity(bound);
    cut.push_str(head);
    cut.push_str(&marker);
    cut.push_str(tail);
    cut
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
        /// Where each of its CSV rows of the other tables is (none for JSON Lines, whose
        /// record holds them all): a reject that names one is reported at its row.
        rows: RowLines,
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

/// Where the rows of a CSV order's lists are: for a reason that names an entry (`lines[1]`,
/// `payments[0]`, `shipments[0]`, `refunds[2]`, `status_history[3]`), the file and line of
/// its row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowLines {
    /// For each list: its name in reasons (`lines`, ...), its table's file, and the line of
    /// each of its rows, in the order's order.
    lists: Vec<(&'static str, String, Vec<u64>)>,
}

impl RowLines {
    /// Record that the entries of `list` (as reasons name it) are the rows of `file` at
    /// `lines`.
    pub fn add(&mut self, list: &'static str, file: String, lines: Vec<u64>) {
        self.lists.push((list, file, lines));
    }

    /// The file and line of the row of the entry `reason` names last (`status_history[2]
    /// (authorized): payments[0]: amount_minor ...` is about the row of `payments[0]`), if it
    /// names one whose row is known.
    pub fn locate(&self, reason: &str) -> Option<(&str, u64)> {
        let mut found: Option<(usize, &str, u64)> = None;
        for (list, file, lines) in &self.lists {
            let pattern = format!("{list}[");
            for (at, _) in reason.match_indices(&pattern) {
                // A whole name: `lines[` is not the end of another word.
                let before = reason[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                    continue;
                }
                let rest = &reason[at + pattern.len()..];
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                if digits == 0 || rest.as_bytes().get(digits) != Some(&b']') {
                    continue;
                }
                let Some(line) = rest[..digits]
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| lines.get(index))
                else {
                    continue;
                };
                if found.is_none_or(|(earlier, _, _)| at > earlier) {
                    found = Some((at, file.as_str(), *line));
                }
            }
        }
        found.map(|(_, file, line)| (file, line))
    }
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
        let mut reader = BufReader::with_capacity(1 << 20, file);
        if let Some(problem) = not_json_lines(reader.fill_buf()?, metadata.is_file(), path) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {problem}", path.display()),
            ));
        }
        Ok(Self::new(reader, path.display().to_string(), size))
    }
}

/// Why a file that starts with `start` is not a JSON Lines export at all, if it is not: a CSV
/// table (its header line), text in UTF-16 or UTF-32 (a byte order mark, or NUL bytes), NUL
/// bytes, which no JSON text holds, one JSON array or pretty-printed JSON, or lines ended by
/// carriage returns only. Each line of it would be a reject of its own (or the whole file one).
fn not_json_lines(start: &[u8], regular: bool, path: &Path) -> Option<String> {
    let utf8 = |from: &str| {
        format!("re-encode the export as UTF-8 (iconv -f {from} -t UTF-8) and run again")
    };
    for (mark, encoding) in [
        (&b"\x00\x00\xFE\xFF"[..], "UTF-32"),
        (b"\xFF\xFE\x00\x00", "UTF-32"),
        (b"\xFE\xFF", "UTF-16"),
        (b"\xFF\xFE", "UTF-16"),
    ] {
        if start.starts_with(mark) {
            return Some(format!(
                "the file is text in {encoding} (it starts with a {encoding} byte order mark), \
                 not UTF-8 JSON Lines: {}",
                utf8(encoding)
            ));
        }
    }
    if start.contains(&0) {
        return Some(format!(
            "the file holds NUL bytes, which no JSON Lines export does (text in UTF-16 or UTF-32 \
             without a byte order mark, or not text): {}",
            utf8("ITS-ENCODING")
        ));
    }
    let text = start.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(start);
    let name = path.display();
    if text.trim_ascii_start().starts_with(b"[") {
        return Some(format!(
            "the file is one JSON array, not JSON Lines (one order object per line): convert it \
             with `jq -c '.[]' {name} > orders.jsonl` and pass that"
        ));
    }
    // A pipe's first read may end anywhere: only a file's start is the file's.
    if regular
        && !text.contains(&b'\n')
        && text
            .split(|b| *b == b'\r')
            .filter(|line| !line.trim_ascii().is_empty())
            .nth(1)
            .is_some()
    {
        return Some(format!(
            "the file's lines end in carriage returns only (an old Mac's line ends), so it \
             would be read as one record: convert it with `tr '\\r' '\\n' < {name} > \
             orders.jsonl` and pass that"
        ));
    }
    let first = text
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .find(|line| !line.iter().all(u8::is_ascii_whitespace))?;
    if first.trim_ascii() == b"{" && text.contains(&b'\n') {
        return Some(format!(
            "the file is pretty-printed JSON (line 1 is a lone `{{`), not JSON Lines (one order \
             object per line): convert it with `jq -c . {name} > orders.jsonl` and pass that"
        ));
    }
    let columns: Vec<&[u8]> = first.split(|b| *b == b',').collect();
    let header = columns.len() > 1
        && columns.iter().any(|c| c.trim_ascii() == b"order_id")
        && columns.iter().all(|c| {
            let c = c.trim_ascii();
            let c = c
                .strip_prefix(b"\"")
                .and_then(|c| c.strip_suffix(b"\""))
                .unwrap_or(c);
            !c.is_empty() && c.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        });
    header.then(|| {
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.display().to_string(),
            _ => ".".to_owned(),
        };
        format!(
            "line 1 is a CSV header ({}), not a JSON record: this is a CSV table, and a CSV \
             export is the directory of its six tables: pass that directory (--input \
             {directory}, read as --format csv)",
            String::from_utf8_lossy(first)
        )
    })
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
            reject: Reject::new(self.file.clone(), self.line, order_id, reason),
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

/// Best effort: the `order_id` of a record that does not parse as a whole, read from its
/// top-level `order_id`: a record cut off after it, longer than a record may be, or holding a
/// bad byte or field after it still names its order (so that a later copy of that order is a
/// duplicate, not the one imported). An id that is no string is given as JSON, once the token
/// after it shows it whole (`12` of a record cut inside `12345` is no id); a record with two
/// `order_id`s names none.
fn order_id_of(record: &[u8]) -> Option<String> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

    struct Find<'a>(&'a mut Option<String>);
    impl<'de> DeserializeSeed<'de> for Find<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            // An id that is a number (or any non-string) is whole once the next token is read.
            let mut pending: Option<String> = None;
            let mut seen = false;
            loop {
                let key = map.next_key::<std::borrow::Cow<'de, str>>();
                if let Some(id) = pending.take()
                    && key.is_ok()
                {
                    *self.0 = Some(id);
                }
                let Some(key) = key? else { return Ok(()) };
                if key != "order_id" {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                if seen {
                    // Two ids: which one counts is not for a reader of a broken record to say.
                    *self.0 = None;
                    return Ok(());
                }
                seen = true;
                // What follows may not parse: the id is kept as far as it was read.
                match map.next_value::<serde_json::Value>()? {
                    serde_json::Value::String(id) => *self.0 = Some(id),
                    other => pending = Some(other.to_string()),
                }
            }
        }
    }
    let record = record.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(record);
    let mut found = None;
    let _ = Find(&mut found).deserialize(&mut serde_json::Deserializer::from_slice(record));
    found
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
                let order_id = order_id_of(&self.buffer);
                if let Err(e) = self.skip_line() {
                    return Some(Err(e));
                }
                return Some(Ok(self.reject(
                    order_id,
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
                    let order_id = order_id_of(&self.buffer);
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
                    rows: RowLines::default(),
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
                    let order_id = order_id_of(text.as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The id of a record that does not parse whole: its top-level `order_id` as far as it was
    /// read whole, none when there are two or the record is no object.
    #[test]
    fn a_broken_record_names_its_order_when_it_can() {
        for (record, id) in [
            (r#"{"order_id":"A","lines":[1,"#, Some("A")),
            (r#"{"order_id":"A","x":1}"#, Some("A")),
            ("\u{feff}{\"order_id\":\"A\",", Some("A")),
            (r#"{"x":{"order_id":"N"},"order_id":"A","#, Some("A")),
            (r#"{"order_id":12,"x""#, Some("12")),
            (r#"{"order_id":12}"#, Some("12")),
            (r#"{"order_id":{"a":1}}"#, Some(r#"{"a":1}"#)),
            // Cut inside the id: a number that may go on, a string without its end.
            (r#"{"order_id":12"#, None),
            (r#"{"order_id":"A"#, None),
            (r#"{"order_id":"A","order_id":"B"}"#, None),
            (r#"{"order_id":12,"order_id":"B""#, None),
            (r#"{"x":1,"#, None),
            (r#"["order_id","A"]"#, None),
            ("", None),
        ] {
            assert_eq!(order_id_of(record.as_bytes()).as_deref(), id, "{record}");
        }
        // Not UTF-8 after the id.
        let mut bytes = br#"{"order_id":"A","x":""#.to_vec();
        bytes.extend([0xC0, b'"', b'}']);
        assert_eq!(order_id_of(&bytes).as_deref(), Some("A"));
    }

    /// A long order id keeps its start, a long reason its start and end, each cut on a
    /// character boundary (of one to four bytes) to at most its bound with the marker that
    /// says how long it was; neither holds the memory of the text it was cut from; short ones
    /// are kept whole; and a reject made again from its fields is the same.
    #[test]
    fn a_reject_is_cut_to_its_bounds_on_character_boundaries() {
        let short = Reject::new("f".into(), 1, Some("A1".into()), "bad".into());
        assert_eq!(
            (short.order_id.as_deref(), short.reason.as_str()),
            (Some("A1"), "bad")
        );
        for unit in ["x", "\u{e9}", "\u{20ac}", "\u{1f600}"] {
            let id = format!("I{}", unit.repeat(100 << 10));
            let reason = format!("R{}E", unit.repeat(100 << 10));
            let (id_len, reason_len) = (id.len(), reason.len());
            let reject = Reject::new("f".into(), 7, Some(id), reason);
            let cut_id = reject.order_id.clone().unwrap_or_default();
            let marker = format!("…[{id_len} bytes, cut]");
            assert!(
                cut_id.len() <= MAX_REJECT_ORDER_ID_BYTES
                    && cut_id.len() > MAX_REJECT_ORDER_ID_BYTES - marker.len() - 4
                    && cut_id.starts_with(&format!("I{unit}"))
                    && cut_id.ends_with(&format!("{unit}{marker}")),
                "{cut_id}"
            );
            let marker = format!("…[{reason_len} bytes, cut]…");
            let reason = &reject.reason;
            assert!(
                reason.len() <= MAX_REJECT_REASON_BYTES
                    && reason.len() > MAX_REJECT_REASON_BYTES - marker.len() - 8
                    && reason.starts_with(&format!("R{unit}"))
                    && reason.contains(&format!("{unit}{marker}{unit}"))
                    && reason.ends_with(&format!("{unit}E")),
                "{reason}"
            );
            assert!(
                reject.held_bytes()
                    <= size_of::<Reject>()
                        + 1
                        + MAX_REJECT_ORDER_ID_BYTES
                        + MAX_REJECT_REASON_BYTES,
                "{}",
                reject.held_bytes()
            );
            let again = Reject::new(
                reject.file.clone(),
                reject.line,
                reject.order_id.clone(),
                reject.reason.clone(),
            );
            assert_eq!(again, reject);
        }
    }

    #[test]
    fn a_reason_is_located_at_the_row_of_the_entry_it_names_last() {
        let mut rows = RowLines::default();
        rows.add("lines", "order_lines.csv".into(), vec![7, 8]);
        rows.add("payments", "payments.csv".into(), vec![3]);
        rows.add(
            "status_history",
            "status_history.csv".into(),
            vec![20, 21, 22],
        );
        assert_eq!(
            rows.locate("lines[1].quantity must be between 1 and 10000"),
            Some(("order_lines.csv", 8))
        );
        assert_eq!(
            rows.locate("status_history[2] (authorized): payments[0]: amount_minor must be ..."),
            Some(("payments.csv", 3))
        );
        assert_eq!(
            rows.locate("status_history[1] (paid): the order was authorized but has no payment"),
            Some(("status_history.csv", 21))
        );
        // No row of that entry, a name inside another word, or no entry at all.
        assert_eq!(rows.locate("lines[5].sku is bad"), None);
        assert_eq!(rows.locate("order_lines[0] is not a list"), None);
        assert_eq!(rows.locate("currency \"XQZ\" is not active"), None);
        assert_eq!(RowLines::default().locate("lines[0].sku"), None);
    }
}

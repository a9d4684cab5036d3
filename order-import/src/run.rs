//! The import: read the export on a thread of its own, tell each order through the domain,
//! and append batches of whole streams with [`EventStore::import_batch`] on a few connections
//! at once, each batch with the import's progress in one transaction.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as Atomic};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use order_store::{EventStore, ImportProgress, ImportedStream};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::legacy::IdOrder;
use crate::source::{Progress, Record, Reject, Source};
use crate::tell::{Ids, MAX_LEGACY_ID_LEN, tell};

/// How an import runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The import's name (its progress row).
    pub name: String,
    /// The legacy source's name: part of every derived id (`legacy` by default).
    pub source: String,
    /// Whether `source` was named by the user rather than left at its default. An import begun
    /// before sources were recorded, with orders imported, continues only with a named
    /// source: its earlier runs' source is not known, and a default that differs from it
    /// would import every order again under other ids.
    pub source_named: bool,
    /// Orders per batch (per transaction), at most.
    pub batch_orders: usize,
    /// Events per batch, at most.
    pub batch_events: usize,
    /// Batches written at once, on as many connections.
    pub writers: usize,
    /// Events per second at most (to leave the database to live traffic), if any.
    pub max_rate: Option<u64>,
    /// How the export is sorted.
    pub id_order: IdOrder,
    /// Where the rejects go (JSON Lines, rewritten by every run; locked while it runs, so a
    /// run whose rejects file another run holds is refused before it writes anything).
    pub rejects: PathBuf,
    /// A progress bar on the terminal (else a log line every 10 s).
    pub progress_bar: bool,
}

impl Options {
    /// Defaults for the import `name`: source `legacy`, batches of 2,000 orders or 40,000
    /// events, 2 writers, no rate limit, text id order, rejects in `<name>.rejects.jsonl`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            source: "legacy".to_owned(),
            source_named: false,
            batch_orders: 2_000,
            batch_events: 40_000,
            writers: 2,
            max_rate: None,
            id_order: IdOrder::Text,
            rejects: PathBuf::from(format!("{name}.rejects.jsonl")),
            progress_bar: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// The import's name.
    pub name: String,
    /// Legacy orders read (JSON Lines: records; CSV: rows of orders.csv).
    pub orders_read: u64,
    /// Orders appended by this run.
    pub orders_imported: u64,
    /// Events appended by this run.
    pub events_imported: u64,
    /// Orders of the export already in the log, whole (an earlier run, or a concurrent one).
    pub orders_present: u64,
    /// Orders an earlier run imported that moved on in the legacy system since: the rest of
    /// their history was appended.
    pub orders_updated: u64,
    /// Rejects written: `orders_rejected` and `rows_rejected` together (the exit status is 2
    /// when it is not 0).
    pub rejected: u64,
    /// Legacy orders rejected: records that do not read, orders the domain refuses, orders
    /// imported before that could not be updated (the progress row's `orders_rejected`,
    /// which counts the last ones as each batch commits).
    pub orders_rejected: u64,
    /// CSV rows of the other tables whose order is not in orders.csv (each a reject of its
    /// own, and no order).
    pub rows_rejected: u64,
    /// Batches committed.
    pub batches: u64,
    /// Seconds the run took.
    pub seconds: f64,
    /// Events appended per second.
    pub events_per_second: f64,
    /// The rejects file.
    pub rejects_file: String,
}

/// A batch on its way from the reader to a writer.
struct Batch {
    streams: Vec<ImportedStream>,
    /// Where each stream's legacy order is in the export (for a reject found when writing).
    origins: Vec<Origin>,
    events: usize,
    progress: ImportProgress,
    /// The rejects of the records read since the batch before (`progress` counts them):
    /// written to the rejects file once this batch, or a later one, commits.
    rejects: Vec<Reject>,
    /// The memory `rejects` hold ([`Reject::held_bytes`]).
    reject_bytes: usize,
}

impl Batch {
    fn new(options: &Options) -> Self {
        Self {
            streams: Vec::with_capacity(options.batch_orders),
            origins: Vec::with_capacity(options.batch_orders),
            events: 0,
            progress: ImportProgress::default(),
            rejects: Vec::new(),
            reject_bytes: 0,
        }
    }
}

/// The most rejects a batch carries: past them it is sent as it is (with no orders, if none
/// came), so that an export of bad records is not held in memory until an order comes.
const MAX_REJECTS_PER_BATCH: usize = 10_000;

/// The most memory the rejects of a batch hold ([`Reject::held_bytes`]): once they reach it,
/// the batch is sent as it is, as at [`MAX_REJECTS_PER_BATCH`]. A reject holds at most about
/// 1.4 KiB and its file's name (its order id and reason are bounded by [`Reject::new`]), so
/// the count alone would let a batch of large rejects hold some 14 MiB, times the batches in
/// flight (up to three per writer, and two more) and those committed past one still being
/// written (up to [`REJECTS_BACKLOG_PER_WRITER`] per writer); rejects of a usual size (a few
/// hundred bytes) reach the count first.
const MAX_REJECT_BYTES_PER_BATCH: usize = 4 << 20;

/// Batches per writer that may commit past one still being written (retried, say) before the run
/// sends no more: their rejects wait for it, to keep the file in the order of the export.
const REJECTS_BACKLOG_PER_WRITER: usize = 4;

/// The rejects file, written in step with the batches: the rejects a batch carries are held from
/// when it is taken for writing, and written, in the order of the export, as soon as it and every
/// batch before it committed. The orders its append left alone, found in its transaction (imported
/// before and diverged since, or a stream id another order holds: [`diverged_reason`]), join its
/// rejects as it commits, each at its place in the export ([`RejectsLog::join`]), and are written
/// with them: nothing is held past the commit of a batch and of those before it, and while an
/// earlier batch is retried the run sends at most [`REJECTS_BACKLOG_PER_WRITER`] batches per writer
/// past it.
///
/// The progress row counts the rejects of the records read up to the latest batch committed and the
/// orders left alone by the batches committed (the store records those in each batch's
/// transaction), so a run stopped by a signal, or killed, leaves a file that holds what the row
/// counts (a kill in the instant between a commit and its rejects' write, or while an earlier batch
/// is still being written, leaves that batch's out); the records read ahead of the last commit are
/// read again, and reported, by the next run, which reads the whole export again.
struct RejectsLog {
    file: File,
    path: PathBuf,
    /// Rejects of the batches not written yet, by batch number.
    held: std::collections::BTreeMap<u64, Vec<Reject>>,
    /// Batches that committed, not written yet: one before them has not committed.
    committed: std::collections::BTreeSet<u64>,
    /// The first batch not written yet.
    next: u64,
}

impl RejectsLog {
    /// Hold the rejects of batch `index` until it and every batch before it committed.
    fn hold(&mut self, index: u64, rejects: Vec<Reject>) {
        if !rejects.is_empty() {
            self.held.insert(index, rejects);
        }
    }

    /// Batch `index` committed and left alone the orders `diverged`, each given with its place
    /// in the batch: how many of the rejects the batch carries were read before it (the
    /// reader's [`Origin::rejects_before`]). They join the rejects held for it, each after
    /// those read before it and before those read after it, so that the file stays in the
    /// order of the export. Called before [`RejectsLog::committed`] for the same batch.
    fn join(&mut self, index: u64, mut diverged: Vec<(usize, Reject)>) {
        if diverged.is_empty() {
            return;
        }
        diverged.sort_by_key(|(before, _)| *before);
        let held = self.held.entry(index).or_default();
        let mut read = std::mem::take(held).into_iter();
        let mut merged = Vec::with_capacity(read.len() + diverged.len());
        let mut taken = 0;
        for (before, reject) in diverged {
            while taken < before
                && let Some(earlier) = read.next()
            {
                merged.push(earlier);
                taken += 1;
            }
            merged.push(reject);
        }
        merged.extend(read);
        *held = merged;
    }

    /// Batch `index` committed: write the rejects of every batch up to the first that has not
    /// (in the order of the export: a batch before it, still being written, may yet leave
    /// orders alone, whose rejects go before this one's).
    fn committed(&mut self, index: u64) -> anyhow::Result<()> {
        self.committed.insert(index);
        let mut due = Vec::new();
        while self.committed.remove(&self.next) {
            due.extend(self.held.remove(&self.next).unwrap_or_default());
            self.next += 1;
        }
        self.write(due)
    }

    /// Batches committed whose rejects wait for an earlier batch still being written.
    fn waiting(&self) -> usize {
        self.committed.len()
    }

    /// The run's writers are done: write the rejects of every batch up to the last that
    /// committed, in order, including those read before a batch that did not (a failed one),
    /// as the progress row counts them. Those of batches after the last commit, never sent or
    /// never written, are not written.
    fn finish(&mut self) -> anyhow::Result<()> {
        let Some(last) = self.committed.last().copied() else {
            return Ok(());
        };
        let later = self.held.split_off(&(last + 1));
        let due = std::mem::replace(&mut self.held, later);
        self.committed.clear();
        self.next = last + 1;
        self.write(due.into_values().flatten())
    }

    /// Write `rejects` after those written so far.
    fn write(&mut self, rejects: impl IntoIterator<Item = Reject>) -> anyhow::Result<()> {
        let mut text = Vec::new();
        for reject in rejects {
            serde_json::to_writer(&mut text, &reject)?;
            text.push(b'\n');
        }
        if text.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&text)
            .with_context(|| format!("cannot write the rejects to {}", self.path.display()))
    }
}

/// The run's rejects file, shared by the writers.
type SharedRejects = Arc<std::sync::Mutex<RejectsLog>>;

fn lock_log(log: &SharedRejects) -> std::sync::MutexGuard<'_, RejectsLog> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where a legacy order is in the export.
struct Origin {
    file: String,
    line: u64,
    order_id: String,
    /// How many of its batch's rejects were read before it: where a reject of it found when
    /// the batch is written goes among them ([`RejectsLog::join`]).
    rejects_before: usize,
}

/// What the reader thread counted.
#[derive(Debug, Default)]
struct ReadCounts {
    orders_read: u64,
    /// Orders rejected (unreadable records included).
    orders_rejected: u64,
    /// CSV rows without an order.
    rows_rejected: u64,
}

/// Shared counters for progress lines.
#[derive(Debug, Default)]
struct Counters {
    orders_imported: AtomicU64,
    events_imported: AtomicU64,
    orders_present: AtomicU64,
    orders_updated: AtomicU64,
    batches: AtomicU64,
    /// Events of committed batches that were told but not written (their orders were in the
    /// log already): `--max-rate` paces the events written only.
    events_not_written: AtomicU64,
    /// Orders of committed batches left alone and rejected (imported before and diverged
    /// since, or a stream id another order holds), found when writing: their rejects are
    /// written with their batch, the store records them for the progress row in the batch's
    /// transaction, and the count joins the reader's in the run's summary.
    orders_diverged: AtomicU64,
}

/// Open the rejects file at `path` without truncating it, and lock it for the run (an advisory
/// lock, released when the run's handles close): two runs writing one rejects file would
/// leave a report of neither, so the second is refused at once, before it writes anything.
fn lock_rejects(path: &Path) -> anyhow::Result<File> {
    // Every run rewrites the file from its start: a pipe, a terminal or a device cannot be
    // (`/dev/stdout` in a pipeline failed only after the run had begun), and opening a FIFO for
    // writing waits for a reader.
    if let Ok(metadata) = std::fs::metadata(path)
        && !metadata.is_file()
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = metadata.file_type();
        let kind = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a pipe"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "no file"
        };
        bail!(
            "the rejects file {} is not a regular file ({kind}): every run rewrites its rejects \
             from the start, so give --rejects a file path (this run did not begin and wrote \
             nothing)",
            path.display()
        );
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot write the rejects to {}", path.display()))?;
    let locked = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
    lock_outcome(path, locked)?;
    Ok(file)
}

/// What the run does with the answer to its lock of the rejects file at `path`: locked, it
/// goes on; held by another run, it stops; on a filesystem that takes no locks (some FUSE and
/// network mounts answer ENOLCK, EOPNOTSUPP or ENOSYS), it goes on without one, as runs did
/// before the lock, with a warning; any other error stops it.
fn lock_outcome(path: &Path, locked: Result<(), rustix::io::Errno>) -> anyhow::Result<()> {
    use rustix::io::Errno;
    match locked {
        Ok(()) => Ok(()),
        Err(e @ (Errno::NOLCK | Errno::OPNOTSUPP | Errno::NOSYS)) => {
            tracing::warn!(
                rejects = %path.display(),
                error = %std::io::Error::from(e),
                "the rejects file cannot be locked on this filesystem: going on without the \
                 lock (two runs at once with this rejects file would mix their reports)"
            );
            Ok(())
        }
        Err(Errno::WOULDBLOCK) => bail!(
            "another run is writing the rejects file {} (a run of this import, or one with the \
             same --rejects): this run did not begin and wrote nothing; wait for that run to \
             end, or give this one its own --rejects",
            path.display()
        ),
        Err(e) => Err(std::io::Error::from(e))
            .with_context(|| format!("cannot lock the rejects file {}", path.display())),
    }
}

/// Read the export and send its orders to the writers in batches, each with the rejects of
/// the records read since the batch before (the writers write them once it commits).
fn read_export(
    mut source: Box<dyn Source>,
    options: &Options,
    batches: &mpsc::Sender<Batch>,
) -> anyhow::Result<ReadCounts> {
    let ids = Ids::new(&options.source);
    let mut counts = ReadCounts::default();
    let mut previous: Option<String> = None;
    let mut batch = Batch::new(options);
    // Every reject is of an order but a CSV row without one (`order: false`). Made again,
    // so that it is bounded whatever source made it (the same reject, if bounded already).
    let reject = |counts: &mut ReadCounts, batch: &mut Batch, reject: Reject, order: bool| {
        if order {
            counts.orders_rejected += 1;
        } else {
            counts.rows_rejected += 1;
        }
        let Reject {
            file,
            line,
            order_id,
            reason,
        } = reject;
        let reject = Reject::new(file, line, order_id, reason);
        batch.reject_bytes += reject.held_bytes();
        batch.rejects.push(reject);
    };
    let send = |batch: &mut Batch, counts: &ReadCounts| -> anyhow::Result<()> {
        let full = std::mem::replace(batch, Batch::new(options));
        let full = Batch {
            progress: ImportProgress {
                orders_read: counts.orders_read,
                orders_rejected: counts.orders_rejected,
            },
            ..full
        };
        batches
            .blocking_send(full)
            .map_err(|_| anyhow::anyhow!("the writers stopped"))
    };
    while let Some(record) = source.next_record() {
        if batch.rejects.len() >= MAX_REJECTS_PER_BATCH
            || batch.reject_bytes >= MAX_REJECT_BYTES_PER_BATCH
        {
            send(&mut batch, &counts)?;
        }
        match record.context("reading the export")? {
            Record::Unreadable {
                reject: unreadable,
                order,
            } => {
                if order {
                    counts.orders_read += 1;
                    // Its id, when it could be read, is the first of that order: a later copy
                    // is a duplicate, not the one that counts. Not an id longer than an order
                    // id may be: no copy of it is ever imported, and its reject holds it cut
                    // (past MAX_REJECT_ORDER_ID_BYTES), which would misplace the ids after it.
                    if let Some(id) = &unreadable.order_id
                        && !id.trim().is_empty()
                        && id.len() <= MAX_LEGACY_ID_LEN
                        // A string id only (an object or array id, printed as JSON, would sort
                        // after every real one and push the rest of the export out of order).
                        && !matches!(
                            serde_json::from_str::<serde_json::Value>(id),
                            Ok(serde_json::Value::Object(_)
                                | serde_json::Value::Array(_)
                                | serde_json::Value::Null
                                | serde_json::Value::Bool(_))
                        )
                        && options.id_order.check(id).is_ok()
                        && previous.as_ref().is_none_or(|before| {
                            options.id_order.compare(before, id) == Ok(Ordering::Less)
                        })
                    {
                        previous = Some(id.clone());
                    }
                }
                reject(&mut counts, &mut batch, unreadable, order);
            }
            Record::Order {
                order,
                file,
                line,
                rows,
            } => {
                counts.orders_read += 1;
                let refuse = |reason: String| {
                    Reject::new(file.clone(), line, Some(order.order_id.clone()), reason)
                };
                // Sorted input: a duplicate or an order out of place is found with one id in
                // memory (the export documents the order).
                let id = &order.order_id;
                if !id.trim().is_empty() {
                    if let Err(reason) = options.id_order.check(id) {
                        reject(&mut counts, &mut batch, refuse(reason), true);
                        continue;
                    }
                    if let Some(before) = &previous {
                        let ordering = options
                            .id_order
                            .compare(before, id)
                            .unwrap_or(Ordering::Less);
                        if ordering != Ordering::Less {
                            let reason = if ordering == Ordering::Equal {
                                format!(
                                    "order {id} is in the export more than once (the first one counts)"
                                )
                            } else {
                                format!(
                                    "order {id} comes after order {before}: the export must be sorted by order_id (see --id-order)"
                                )
                            };
                            reject(&mut counts, &mut batch, refuse(reason), true);
                            continue;
                        }
                    }
                    previous = Some(id.clone());
                }
                match tell(&order, &ids) {
                    Ok(stream) => {
                        batch.events += stream.events.len();
                        batch.streams.push(stream);
                        batch.origins.push(Origin {
                            file: file.clone(),
                            line,
                            order_id: order.order_id.clone(),
                            rejects_before: batch.rejects.len(),
                        });
                        if batch.streams.len() >= options.batch_orders
                            || batch.events >= options.batch_events
                        {
                            send(&mut batch, &counts)?;
                        }
                    }
                    Err(reason) => {
                        // At the CSV row the reason is about, when it names one.
                        let (file, line) = rows
                            .locate(&reason)
                            .map_or((file.as_str(), line), |(file, line)| (file, line));
                        let rejected = Reject::new(
                            file.to_owned(),
                            line,
                            Some(order.order_id.clone()),
                            reason,
                        );
                        reject(&mut counts, &mut batch, rejected, true);
                    }
                }
            }
        }
    }
    // The last batch, also when empty: it records the final counts (and carries the last
    // rejects).
    send(&mut batch, &counts)?;
    Ok(counts)
}

/// Append one batch, number `index`, retrying while the database is unavailable (each try is
/// a whole transaction; a retry after a commit whose answer was lost finds its streams
/// present); once it commits, add the rejects of the orders its append left alone to those it
/// carries, and write the rejects held up to it to the rejects file.
async fn write_batch(
    store: EventStore,
    name: String,
    (index, batch): (u64, Batch),
    counters: Arc<Counters>,
    rejects: SharedRejects,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(100);
    let started = Instant::now();
    loop {
        match store
            .import_batch_with(&name, &batch.streams, batch.progress, Ids::earlier_event_id)
            .await
        {
            Ok(outcome) => {
                counters
                    .orders_imported
                    .fetch_add(outcome.streams_appended, Atomic::Relaxed);
                counters
                    .events_imported
                    .fetch_add(outcome.events_appended, Atomic::Relaxed);
                counters
                    .orders_present
                    .fetch_add(outcome.streams_present, Atomic::Relaxed);
                counters
                    .orders_updated
                    .fetch_add(outcome.streams_updated, Atomic::Relaxed);
                counters.events_not_written.fetch_add(
                    (batch.events as u64).saturating_sub(outcome.events_appended),
                    Atomic::Relaxed,
                );
                // The orders left alone, each at its place among the batch's rejects.
                let mut found = Vec::with_capacity(outcome.streams_diverged.len());
                for (stream_id, why) in outcome.streams_diverged {
                    let at = batch.streams.iter().position(|s| s.stream_id == stream_id);
                    let origin = at.and_then(|at| batch.origins.get(at));
                    let order = origin.map_or("?", |o| o.order_id.as_str());
                    let told = at.map(|at| batch.streams[at].imported_from.as_str());
                    let reason = diverged_reason(&store, stream_id, told, order, &why).await;
                    let reject = Reject::new(
                        origin.map(|o| o.file.clone()).unwrap_or_default(),
                        origin.map_or(0, |o| o.line),
                        origin.map(|o| o.order_id.clone()),
                        reason,
                    );
                    // An order not found in the batch (never: the store names its streams)
                    // after its rejects.
                    found.push((origin.map_or(usize::MAX, |o| o.rejects_before), reject));
                }
                counters
                    .orders_diverged
                    .fetch_add(found.len() as u64, Atomic::Relaxed);
                counters.batches.fetch_add(1, Atomic::Relaxed);
                let mut log = lock_log(&rejects);
                log.join(index, found);
                return log.committed(index);
            }
            Err(error) if error.is_transient() && started.elapsed() < Duration::from_secs(300) => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "a batch failed; retrying it");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error).context("appending a batch"),
        }
    }
}

/// The reason the order `order` (its stream `stream_id`, whose events this import tells as
/// imported from `told`) is left alone, the store having found it diverged for `why` (a
/// clause that reads after "was imported before and"). When the stream's first event is not
/// from this import, the order was never imported: the stream id is taken by a live order (or
/// by events of another origin), and the reason says so rather than that a record moved on.
async fn diverged_reason(
    store: &EventStore,
    stream_id: uuid::Uuid,
    told: Option<&str>,
    order: &str,
    why: &str,
) -> String {
    let first = match store.read_stream_slice(stream_id, 0, Some(1)).await {
        Ok(slice) => slice.events.into_iter().next(),
        Err(error) => {
            tracing::warn!(%error, %stream_id, "cannot read the first event of a stream left alone");
            None
        }
    };
    match first {
        Some(event) if told.is_some() && event.imported_from.as_deref() != told => {
            let whose = match &event.imported_from {
                None => "recorded by this system: a live order with that id".to_owned(),
                Some(other) => format!("imported from {other:?}, not from this record"),
            };
            format!(
                "order {order} was not imported: its stream {stream_id} (the id derived from \
                 its source and legacy order id) already holds events not from this import, \
                 from its event 1 ({}) on, {whose}; the stream is left alone",
                event.event_type
            )
        }
        _ => format!("order {order} was imported before and {why}"),
    }
}

fn progress_line(progress: &Progress, counters: &Counters, started: Instant) -> String {
    let seconds = started.elapsed().as_secs_f64().max(0.001);
    let events = counters.events_imported.load(Atomic::Relaxed);
    let (read, total) = (progress.read(), progress.total());
    let share = if total == 0 {
        1.0
    } else {
        read as f64 / total as f64
    };
    let eta = if share > 0.0 {
        (seconds / share - seconds).max(0.0)
    } else {
        0.0
    };
    format!(
        "{:.1}% of the export, {} orders and {} events imported ({:.0} events/s), {} present already, ETA {:.0} s",
        share * 100.0,
        counters.orders_imported.load(Atomic::Relaxed),
        events,
        events as f64 / seconds,
        counters.orders_present.load(Atomic::Relaxed),
        eta
    )
}

/// An export whose first record was read ahead.
struct Peeked {
    first: Option<Record>,
    inner: Box<dyn Source>,
}

impl Source for Peeked {
    fn next_record(&mut self) -> Option<std::io::Result<Record>> {
        match self.first.take() {
            Some(first) => Some(Ok(first)),
            None => self.inner.next_record(),
        }
    }

    fn progress(&self) -> Progress {
        self.inner.progress()
    }
}

/// Run the import `options.name` of `source` into `store`.
pub async fn import(
    store: &EventStore,
    source: Box<dyn Source>,
    options: &Options,
) -> anyhow::Result<Summary> {
    import_until(store, source, options, std::future::pending()).await
}

/// [`import`], stopping early when `stop` resolves (the binary passes SIGTERM and Ctrl-C): no
/// new batch starts, the batches being written commit, and the result is an error saying how
/// much this run imported. Every batch is whole, and the next run resumes where this one
/// stopped.
pub async fn import_until(
    store: &EventStore,
    source: Box<dyn Source>,
    options: &Options,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<Summary> {
    if options.writers == 0 || options.batch_orders == 0 || options.batch_events == 0 {
        bail!("writers, batch orders and batch events must be at least 1");
    }
    // A bad name is refused before the rejects file (named after it by default) is touched.
    order_store::import::check_name(&options.name)?;
    // An export without a single record (an empty file, a transfer that wrote nothing) is
    // refused before anything is written: it would look like a run that imported everything.
    let (source, first) = tokio::task::spawn_blocking(move || {
        let mut source = source;
        let first = source.next_record();
        (source, first)
    })
    .await
    .context("the reader panicked")?;
    let first = match first {
        None => bail!(
            "the export holds no order record (an empty file, or tables with their headers \
             only): nothing was imported and nothing written; check the export and run again"
        ),
        Some(first) => first.context("reading the export")?,
    };
    let source: Box<dyn Source> = Box::new(Peeked {
        first: Some(first),
        inner: source,
    });
    let started = Instant::now();
    // A rejects file that cannot be written, or that another run is writing, fails the run
    // before its progress row changes (opened without truncating: a run refused below leaves
    // the last run's report).
    let rejects_file = lock_rejects(&options.rejects)?;
    if !options.source_named
        && let Some(before) = store.import_status(&options.name).await?
        && before.source.is_none()
        && before.orders_imported > 0
    {
        bail!(
            "import {:?} began before sources were recorded and has imported {} orders: name \
             the source its earlier runs used with --source (`legacy` unless they named \
             another), so that this run cannot import them again under other ids",
            options.name,
            before.orders_imported
        );
    }
    let record = store.import_begin(&options.name, &options.source).await?;
    tracing::info!(name = %options.name, run = record.runs, imported_before = record.orders_imported, "import started");
    let progress = source.progress();
    let counters = Arc::new(Counters::default());

    // Emptied now: every run rewrites it, in step with its batches (see [`RejectsLog`]).
    rejects_file
        .set_len(0)
        .with_context(|| format!("cannot write the rejects to {}", options.rejects.display()))?;
    let rejects_log: SharedRejects = Arc::new(std::sync::Mutex::new(RejectsLog {
        file: rejects_file,
        path: options.rejects.clone(),
        held: std::collections::BTreeMap::new(),
        committed: std::collections::BTreeSet::new(),
        next: 0,
    }));

    let (sender, mut receiver) = mpsc::channel::<Batch>(options.writers * 2);
    let reader_options = options.clone();
    let reader = tokio::task::spawn_blocking(move || read_export(source, &reader_options, &sender));

    let bar = options.progress_bar && std::io::stderr().is_terminal();
    let reporter = {
        let (progress, counters) = (progress.clone(), counters.clone());
        tokio::spawn(async move {
            let bar = bar.then(|| {
                let bar = indicatif::ProgressBar::new(progress.total());
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {bytes}/{total_bytes} {msg} (ETA {eta})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar
            });
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut last_line = Instant::now();
            loop {
                tick.tick().await;
                match &bar {
                    Some(bar) => {
                        bar.set_position(progress.read());
                        bar.set_message(format!(
                            "{} events",
                            counters.events_imported.load(Atomic::Relaxed)
                        ));
                    }
                    None if last_line.elapsed() >= Duration::from_secs(10) => {
                        last_line = Instant::now();
                        tracing::info!("{}", progress_line(&progress, &counters, started));
                    }
                    None => {}
                }
            }
        })
    };

    let mut writers = JoinSet::new();
    // `--max-rate`: each batch sent moves `due` on by the time its events take at the rate,
    // and the next waits for it; events a committed batch did not write (present already)
    // give their time back. Time spent idle or re-reading builds up no credit.
    let mut due = tokio::time::Instant::now();
    let mut given_back = 0u64;
    let mut failure = None;
    let mut stopped = false;
    let mut stop = std::pin::pin!(stop);
    let mut taken = 0u64;
    loop {
        let mut batch = tokio::select! {
            biased;
            () = &mut stop => {
                stopped = true;
                break;
            }
            batch = receiver.recv() => match batch {
                Some(batch) => batch,
                None => break,
            },
        };
        // Its rejects, held until it and every batch before it committed (or, at the end, a
        // later batch did); never written if neither.
        let index = taken;
        taken += 1;
        lock_log(&rejects_log).hold(index, std::mem::take(&mut batch.rejects));
        // A free writer first; a batch being retried may hold one for minutes, and the stop
        // is watched meanwhile (the batch received here is then dropped, never written).
        // Nor too many batches committed past one still being written, whose rejects wait
        // for it: memory, and a file that lags the progress row.
        // Those in flight but the one held back may commit past it too.
        let backlog = options.writers.max(1) * REJECTS_BACKLOG_PER_WRITER;
        while (writers.len() >= options.writers
            || (!writers.is_empty()
                && lock_log(&rejects_log).waiting() + writers.len().saturating_sub(1) >= backlog))
            && !stopped
            && failure.is_none()
        {
            tokio::select! {
                biased;
                () = &mut stop => stopped = true,
                done = writers.join_next() => {
                    if let Some(done) = done
                        && let Err(e) = done.context("a writer panicked").and_then(|r| r)
                    {
                        failure = Some(e);
                    }
                }
            }
        }
        if stopped || failure.is_some() {
            break;
        }
        if let Some(rate) = options.max_rate {
            let per_event =
                |events: u64| Duration::from_secs_f64(events as f64 / rate.max(1) as f64);
            let not_written = counters.events_not_written.load(Atomic::Relaxed);
            due = due
                .checked_sub(per_event(not_written - given_back))
                .unwrap_or(due)
                .max(tokio::time::Instant::now());
            given_back = not_written;
            tokio::select! {
                biased;
                () = &mut stop => {
                    stopped = true;
                    break;
                }
                () = tokio::time::sleep_until(due) => {}
            }
            due += per_event(batch.events as u64);
        }
        writers.spawn(write_batch(
            store.clone(),
            options.name.clone(),
            (index, batch),
            counters.clone(),
            rejects_log.clone(),
        ));
    }
    drop(receiver);
    // The last batches: a signal now is heard too (the caller's `stop` says so, and a second
    // one stops at once); the batches being written still commit.
    loop {
        let done = tokio::select! {
            biased;
            () = &mut stop, if !stopped => {
                stopped = true;
                continue;
            }
            done = writers.join_next() => done,
        };
        let Some(done) = done else { break };
        if let Err(e) = done.context("a writer panicked").and_then(|r| r) {
            failure.get_or_insert(e);
        }
    }
    // Batches that committed after one that did not (a failed one): their rejects, in order.
    let flushed = lock_log(&rejects_log).finish();
    reporter.abort();
    let read = reader.await.context("the reader panicked")?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    flushed?;
    if stopped {
        // The reader stopped too, on the closed channel: its error says only that.
        bail!(
            "stopped by a signal: this run imported {} orders ({} events), each batch whole; \
             run the same command again to resume",
            counters.orders_imported.load(Atomic::Relaxed),
            counters.events_imported.load(Atomic::Relaxed),
        );
    }
    let mut counts = read?;
    // The reader's own rejects: the store recorded the orders the writers left alone as each
    // batch committed, and counts them in the progress row itself.
    store
        .import_finish(
            &options.name,
            ImportProgress {
                orders_read: counts.orders_read,
                orders_rejected: counts.orders_rejected,
            },
        )
        .await?;
    // They are rejected too (their rejects written with their batches).
    counts.orders_rejected += counters.orders_diverged.load(Atomic::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let events = counters.events_imported.load(Atomic::Relaxed);
    Ok(Summary {
        name: options.name.clone(),
        orders_read: counts.orders_read,
        orders_imported: counters.orders_imported.load(Atomic::Relaxed),
        events_imported: events,
        orders_present: counters.orders_present.load(Atomic::Relaxed),
        orders_updated: counters.orders_updated.load(Atomic::Relaxed),
        rejected: counts.orders_rejected + counts.rows_rejected,
        orders_rejected: counts.orders_rejected,
        rows_rejected: counts.rows_rejected,
        batches: counters.batches.load(Atomic::Relaxed),
        seconds,
        events_per_second: events as f64 / seconds.max(0.001),
        rejects_file: options.rejects.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::Errno;

    /// A source of `left` unreadable records, each with an order id and a reason of `bytes`
    /// bytes (as a source of another crate could make them, unbounded).
    struct Garbage {
        left: usize,
        bytes: usize,
        line: u64,
    }

    impl Source for Garbage {
        fn next_record(&mut self) -> Option<std::io::Result<Record>> {
            self.left = self.left.checked_sub(1)?;
            self.line += 1;
            Some(Ok(Record::Unreadable {
                reject: Reject {
                    file: "garbage.jsonl".into(),
                    line: self.line,
                    order_id: Some(format!("{:08}{}", self.line, "x".repeat(self.bytes))),
                    reason: "r".repeat(self.bytes),
                },
                order: true,
            }))
        }

        fn progress(&self) -> Progress {
            Progress::default()
        }
    }

    /// The rejects a batch holds are bounded in bytes as well as in number: an export of
    /// records whose rejects are large is sent in batches of at most a few MiB of them (else
    /// 10,000 per batch, times the batches in flight).
    #[test]
    fn a_batch_is_sent_once_its_rejects_pass_the_byte_budget() {
        let records = 3_500;
        let source = Garbage {
            left: records,
            bytes: 4 << 10,
            line: 0,
        };
        let (sender, mut receiver) = mpsc::channel(records + 1);
        let counts = read_export(Box::new(source), &Options::new("garbage"), &sender).unwrap();
        drop(sender);
        assert_eq!(counts.orders_rejected, records as u64);
        let mut batches = Vec::new();
        while let Ok(batch) = receiver.try_recv() {
            batches.push(batch);
        }
        let held: Vec<(usize, usize)> = batches
            .iter()
            .map(|batch| {
                let bytes = batch.rejects.iter().map(|r| {
                    r.file.len() + r.order_id.as_ref().map_or(0, String::len) + r.reason.len()
                });
                (batch.rejects.len(), bytes.sum())
            })
            .collect();
        assert_eq!(
            held.iter().map(|(count, _)| count).sum::<usize>(),
            records,
            "{held:?}"
        );
        assert!(
            held.iter()
                .all(|(_, bytes)| *bytes <= MAX_REJECT_BYTES_PER_BATCH),
            "rejects held per batch (count, bytes): {held:?}"
        );
        assert!(held.len() >= 2, "one batch: {held:?}");
    }

    /// The orders a batch left alone join its rejects each at its place in the export (by how
    /// many of them were read before it; a CSV batch's rejects are of several tables, so not
    /// sorted by file and line), and are written once it and every batch before it committed;
    /// at the end, those of every batch up to the last that committed.
    #[test]
    fn a_batch_s_orders_left_alone_join_its_rejects_in_the_order_of_the_export() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.rejects.jsonl");
        let mut log = RejectsLog {
            file: File::create(&path).unwrap(),
            path: path.clone(),
            held: std::collections::BTreeMap::new(),
            committed: std::collections::BTreeSet::new(),
            next: 0,
        };
        let reject = |file: &str, line: u64| Reject::new(file.into(), line, None, String::new());
        let written = || -> Vec<(String, u64)> {
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|line| {
                    let reject: Reject = serde_json::from_str(line).unwrap();
                    (reject.file, reject.line)
                })
                .collect()
        };
        // Batch 0 read the order at orders.csv:3, a reject at order_lines.csv:9, the order at
        // orders.csv:4, a reject at payments.csv:2 and the order at orders.csv:5; its append
        // left the three orders alone (given here out of order).
        log.hold(
            0,
            vec![reject("order_lines.csv", 9), reject("payments.csv", 2)],
        );
        log.hold(1, vec![reject("orders.csv", 7)]);
        log.hold(2, vec![reject("orders.csv", 9)]);
        log.join(
            0,
            vec![
                (2, reject("orders.csv", 5)),
                (0, reject("orders.csv", 3)),
                (1, reject("orders.csv", 4)),
            ],
        );
        log.committed(0).unwrap();
        let want = |rejects: &[(&str, u64)]| -> Vec<(String, u64)> {
            rejects.iter().map(|(f, l)| ((*f).to_owned(), *l)).collect()
        };
        assert_eq!(
            written(),
            want(&[
                ("orders.csv", 3),
                ("order_lines.csv", 9),
                ("orders.csv", 4),
                ("payments.csv", 2),
                ("orders.csv", 5),
            ])
        );
        assert_eq!(log.held.keys().copied().collect::<Vec<_>>(), [1, 2]);
        // Batch 2 commits before batch 1: its rejects wait for batch 1's, whose order left
        // alone comes first in the export.
        log.committed(2).unwrap();
        assert_eq!(written().len(), 5, "batch 1 is still being written");
        log.join(1, vec![(0, reject("orders.csv", 6))]);
        log.committed(1).unwrap();
        assert_eq!(
            written()[5..],
            want(&[("orders.csv", 6), ("orders.csv", 7), ("orders.csv", 9)])
        );
        assert!(
            log.held.is_empty(),
            "nothing held once every batch committed"
        );
        // Orders left alone with as many rejects read before them (next to each other in the
        // export) keep the order the store names them in, which is the batch's.
        log.hold(3, vec![reject("orders.csv", 20), reject("orders.csv", 23)]);
        log.join(
            3,
            vec![
                (1, reject("orders.csv", 21)),
                (0, reject("orders.csv", 18)),
                (1, reject("orders.csv", 22)),
                (0, reject("orders.csv", 19)),
            ],
        );
        log.committed(3).unwrap();
        assert_eq!(
            written()[8..],
            want(&[
                ("orders.csv", 18),
                ("orders.csv", 19),
                ("orders.csv", 20),
                ("orders.csv", 21),
                ("orders.csv", 22),
                ("orders.csv", 23),
            ])
        );
        // Batch 4 fails, batch 5 commits, batch 6 was never sent: at the end, the rejects read
        // before batch 4 and batch 5's are written (the progress row counts them), not 6's.
        log.hold(4, vec![reject("orders.csv", 30)]);
        log.hold(5, vec![reject("orders.csv", 40)]);
        log.hold(6, vec![reject("orders.csv", 50)]);
        log.committed(5).unwrap();
        assert_eq!(written().len(), 14);
        log.finish().unwrap();
        assert_eq!(
            written()[14..],
            want(&[("orders.csv", 30), ("orders.csv", 40)])
        );
    }

    /// A filesystem that takes no locks (some FUSE and network mounts answer flock with
    /// ENOLCK, EOPNOTSUPP or ENOSYS) lets the run go on without one, as runs did before the
    /// lock; another run holding the lock, or any other error, stops it.
    #[test]
    fn a_rejects_file_on_a_filesystem_without_locks_is_written_unlocked() {
        let path = Path::new("/tmp/x.rejects.jsonl");
        for unsupported in [Errno::NOLCK, Errno::OPNOTSUPP, Errno::NOTSUP, Errno::NOSYS] {
            assert!(
                lock_outcome(path, Err(unsupported)).is_ok(),
                "{unsupported:?}"
            );
        }
        assert!(lock_outcome(path, Ok(())).is_ok());
        let busy = lock_outcome(path, Err(Errno::WOULDBLOCK)).unwrap_err();
        assert!(busy.to_string().contains("another run"), "{busy:#}");
        for other in [Errno::IO, Errno::BADF, Errno::INTR, Errno::ACCESS] {
            let error = lock_outcome(path, Err(other)).unwrap_err();
            assert!(
                format!("{error:#}").contains("cannot lock the rejects file"),
                "{error:#}"
            );
        }
    }
}

//! `order-projector replay --projection read_model`: rebuild the read model from position 0
//! into shadow tables and swap them in atomically, without downtime for readers.
//!
//! 1. Create `order_summaries_shadow` (no indexes) and fold the whole log into it: orders are
//!    folded in memory; when more than `batch_orders` are held, they are written out (COPY-like
//!    multi-row inserts; upserts once the table has its primary key) and forgotten, so memory
//!    stays bounded. An event of an order written out earlier fetches its row back.
//! 2. Build the indexes (after the load, which is faster than maintaining them during it).
//! 3. Take the read model's lease, preempting the live projector (its next checkpoint write
//!    fails and rolls back), and catch up to the head of the log.
//! 4. Build `customer_totals_shadow` from the summaries, then in one transaction rename the
//!    live tables away, the shadows into place, set the checkpoint, and drop the old tables.
//!    Readers wait for that transaction's lock for milliseconds; they never see an empty or
//!    half-built table.
//! 5. Release the lease; the live projector continues from the new checkpoint.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use order_domain::order::OrderEvent;
use order_store::{Cursor, EventStore, RecordedEvent, advance_checkpoint};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::read_model::{
    ApplyError, Columns, ReadModel, SUMMARY_COLUMNS, SummaryRow, decode, row_from_sql,
};
use crate::subscription::READ_MODEL;

/// The projections `replay` knows.
pub const PROJECTIONS: &[&str] = &[READ_MODEL];

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    /// A bar on a terminal, log lines otherwise.
    Auto,
    Bar,
    Log,
    None,
}

/// Replay settings.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub projection: String,
    pub owner: String,
    /// Orders folded in memory before they are written out.
    pub batch_orders: usize,
    /// Events read per query.
    pub page: u32,
    pub progress: Progress,
    /// How long the replay's lease lasts (it is renewed while catching up).
    pub lease_ttl: Duration,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub events: u64,
    pub orders: u64,
    pub checkpoint: Cursor,
    pub elapsed: Duration,
}

/// Why a replay failed. Nothing live was changed unless the swap committed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("unknown projection {0:?}; known: {PROJECTIONS:?}")]
    UnknownProjection(String),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Store(#[from] order_store::Error),
    #[error("the read model's lease could not be taken")]
    NoLease,
}

impl From<order_store::tokio_postgres::Error> for ReplayError {
    fn from(error: order_store::tokio_postgres::Error) -> Self {
        Self::Store(error.into())
    }
}

const SHADOW_SUMMARIES: &str = "order_summaries_shadow";
const SHADOW_TOTALS: &str = "customer_totals_shadow";
/// Secondary indexes of `order_summaries`: (name, columns).
const INDEXES: &[(&str, &str)] = &[
    ("order_summaries_placed", "(placed_at DESC, order_id DESC)"),
    (
        "order_summaries_customer",
        "(customer_id, placed_at DESC, order_id DESC)",
    ),
    (
        "order_summaries_status",
        "(status, placed_at DESC, order_id DESC)",
    ),
];

/// Orders folded in memory, and whether the shadow table has its primary key yet.
struct Folder {
    rows: HashMap<Uuid, SummaryRow>,
    dirty: std::collections::HashSet<Uuid>,
    keyed: bool,
    written: u64,
    shadow: ReadModel,
}

impl Folder {
    /// Fold a page; rows of orders written out earlier are fetched back first.
    async fn fold(
        &mut self,
        client: &order_store::deadpool_postgres::Client,
        events: &[RecordedEvent],
        decoded: &[OrderEvent],
    ) -> Result<(), ReplayError> {
        let missing: Vec<Uuid> = events
            .iter()
            .zip(decoded)
            .filter(|(e, d)| {
                !matches!(d, OrderEvent::OrderPlaced(_)) && !self.rows.contains_key(&e.stream_id)
            })
            .map(|(e, _)| e.stream_id)
            .collect();
        if !missing.is_empty() && self.written > 0 {
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {SUMMARY_COLUMNS} FROM {} WHERE order_id = ANY($1)",
                    self.shadow.summaries
                ))
                .await?;
            for row in client.query(&statement, &[&missing]).await? {
                let row = row_from_sql(&row)?;
                self.rows.insert(row.order_id, row);
            }
        }
        for (event, decoded) in events.iter().zip(decoded) {
            let current = self.rows.remove(&event.stream_id);
            match SummaryRow::fold(current, event.stream_id, event, decoded)? {
                Some(row) => {
                    self.dirty.insert(row.order_id);
                    self.rows.insert(row.order_id, row);
                }
                None => {
                    self.rows.remove(&event.stream_id);
                }
            }
        }
        Ok(())
    }

    /// Write every changed row out and forget them all.
    async fn flush(
        &mut self,
        client: &order_store::deadpool_postgres::Client,
    ) -> Result<(), ReplayError> {
        let rows: Vec<&SummaryRow> = self
            .dirty
            .iter()
            .filter_map(|id| self.rows.get(id))
            .collect();
        for chunk in rows.chunks(5_000) {
            if self.keyed {
                self.shadow.upsert(client, chunk).await?;
            } else {
                insert(client, &self.shadow.summaries, chunk).await?;
            }
        }
        self.written += rows.len() as u64;
        self.rows.clear();
        self.dirty.clear();
        Ok(())
    }
}

/// Plain multi-row insert (the table has no key yet and no row twice).
async fn insert(
    client: &order_store::deadpool_postgres::Client,
    table: &str,
    rows: &[&SummaryRow],
) -> Result<(), ReplayError> {
    let statement = client
        .prepare_cached(&format!(
            "INSERT INTO {table} ({SUMMARY_COLUMNS})
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int8[],
                 $6::int8[], $7::int8[], $8::int4[], $9::int8[], $10::int8[],
                 $11::timestamptz[], $12::timestamptz[])"
        ))
        .await?;
    let c = Columns::of(rows);
    client
        .execute(
            &statement,
            &[
                &c.order_id,
                &c.customer_id,
                &c.status,
                &c.currency,
                &c.total,
                &c.captured,
                &c.refunded,
                &c.lines,
                &c.version,
                &c.position,
                &c.placed_at,
                &c.updated_at,
            ],
        )
        .await?;
    Ok(())
}

/// Shows progress on a terminal or as log lines.
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_log: Instant,
    total: u64,
}

impl Reporter {
    fn new(progress: Progress, total: u64) -> Self {
        let bar = match progress {
            Progress::Bar => true,
            Progress::Auto => std::io::stderr().is_terminal(),
            Progress::Log | Progress::None => false,
        }
        .then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} replay [{elapsed_precise}] {wide_bar} {pos}/{len} events {per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last_log: Instant::now(),
            total,
        }
    }

    fn update(&mut self, done: u64, log: bool) {
        if let Some(bar) = &self.bar {
            bar.set_length(self.total.max(done));
            bar.set_position(done);
        } else if log && self.last_log.elapsed() >= Duration::from_secs(5) {
            self.last_log = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            let eta = self.total.saturating_sub(done) as f64 / rate.max(1.0);
            tracing::info!(
                events = done,
                total = self.total,
                events_per_second = rate as u64,
                eta_seconds = eta as u64,
                "replay progress"
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Rebuild a projection and swap it in. See the module documentation.
pub async fn replay(
    store: &EventStore,
    options: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    if !PROJECTIONS.contains(&options.projection.as_str()) {
        return Err(ReplayError::UnknownProjection(options.projection.clone()));
    }
    let started = Instant::now();
    let client = store.pool().get().await.map_err(order_store::Error::from)?;
    client
        .batch_execute(&format!(
            "SET statement_timeout = 0;
             DROP TABLE IF EXISTS orders.{SHADOW_SUMMARIES}, orders.{SHADOW_TOTALS};
             CREATE TABLE orders.{SHADOW_SUMMARIES} (LIKE orders.order_summaries INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
             CREATE TABLE orders.{SHADOW_TOTALS} (LIKE orders.customer_totals INCLUDING DEFAULTS INCLUDING CONSTRAINTS);"
        ))
        .await?;
    let mut folder = Folder {
        rows: HashMap::new(),
        dirty: std::collections::HashSet::new(),
        keyed: false,
        written: 0,
        shadow: ReadModel::named(SHADOW_SUMMARIES, SHADOW_TOTALS),
    };
    let total = store.head_position().await?;
    let mut reporter = Reporter::new(options.progress, total);
    let log = options.progress != Progress::None;
    tracing::info!(projection = %options.projection, head = total, "replay: folding the log into shadow tables");

    // Phase 1: everything visible now, read ahead on its own task.
    let (pages, mut receiver) = mpsc::channel::<Result<Vec<RecordedEvent>, order_store::Error>>(2);
    let reader = {
        let store = store.clone();
        let page = options.page;
        tokio::spawn(async move {
            let mut cursor = Cursor::START;
            loop {
                let events = store.read_all(cursor, page).await;
                let done = matches!(&events, Ok(e) if e.len() < page as usize);
                if let Ok(Some(last)) = events.as_ref().map(|e| e.last()) {
                    cursor = last.cursor();
                }
                let failed = events.is_err();
                if pages.send(events).await.is_err() || done || failed {
                    return cursor;
                }
            }
        })
    };
    let mut events_done = 0u64;
    while let Some(page) = receiver.recv().await {
        let events = page?;
        let decoded = decode(&events)?;
        folder.fold(&client, &events, &decoded).await?;
        events_done += events.len() as u64;
        if folder.rows.len() > options.batch_orders {
            folder.flush(&client).await?;
            ensure_key(&client, &mut folder).await?;
        }
        reporter.update(events_done, log);
    }
    let mut cursor = reader.await.unwrap_or(Cursor::START);

    // Phase 2: write out, then index, before the live projector is paused.
    folder.flush(&client).await?;
    ensure_key(&client, &mut folder).await?;
    for (name, columns) in INDEXES {
        client
            .batch_execute(&format!(
                "CREATE INDEX {name}_shadow ON orders.{SHADOW_SUMMARIES} {columns}"
            ))
            .await?;
    }

    // Phase 3: take the lease from the live projector and catch up to the head.
    let (lease, _) = store
        .acquire_lease(READ_MODEL, &options.owner, options.lease_ttl, true)
        .await?
        .ok_or(ReplayError::NoLease)?;
    tracing::info!(
        token = lease.token,
        "replay: holding the read model's lease; catching up"
    );
    let result = async {
        loop {
            let events = store.read_all(cursor, options.page).await?;
            let Some(last) = events.last() else { break };
            cursor = last.cursor();
            let decoded = decode(&events)?;
            folder.fold(&client, &events, &decoded).await?;
            events_done += events.len() as u64;
            reporter.update(events_done, log);
            if !store.renew_lease(&lease, options.lease_ttl).await? {
                return Err(ReplayError::NoLease);
            }
        }
        folder.flush(&client).await?;

        // Phase 4: totals from the summaries, then the swap.
        client
            .batch_execute(&format!(
                "INSERT INTO orders.{SHADOW_TOTALS} (customer_id, currency, order_count, lifetime_total_minor)
                 SELECT customer_id, currency, count(*), sum(captured_minor - refunded_minor)
                 FROM orders.{SHADOW_SUMMARIES} GROUP BY customer_id, currency;
                 ALTER TABLE orders.{SHADOW_TOTALS} ADD CONSTRAINT {SHADOW_TOTALS}_pkey PRIMARY KEY (customer_id, currency);
                 ANALYZE orders.{SHADOW_SUMMARIES}, orders.{SHADOW_TOTALS};"
            ))
            .await?;
        swap(store, &lease, cursor, events_done).await
    }
    .await;
    reporter.finish();
    let _ = store.release_lease(&lease).await;
    result?;
    let orders = {
        let row = client
            .query_one("SELECT count(*) FROM orders.order_summaries", &[])
            .await?;
        row.try_get::<_, i64>(0)? as u64
    };
    let report = ReplayReport {
        events: events_done,
        orders,
        checkpoint: cursor,
        elapsed: started.elapsed(),
    };
    tracing::info!(events = report.events, orders = report.orders, checkpoint = %report.checkpoint, seconds = report.elapsed.as_secs_f64(), "replay: swapped in");
    Ok(report)
}

async fn ensure_key(
    client: &order_store::deadpool_postgres::Client,
    folder: &mut Folder,
) -> Result<(), ReplayError> {
    if !folder.keyed {
        client
            .batch_execute(&format!(
                "ALTER TABLE orders.{SHADOW_SUMMARIES} ADD CONSTRAINT {SHADOW_SUMMARIES}_pkey PRIMARY KEY (order_id)"
            ))
            .await?;
        folder.keyed = true;
    }
    Ok(())
}

/// Put the shadow tables in place of the live ones and move the checkpoint, atomically.
async fn swap(
    store: &EventStore,
    lease: &order_store::Lease,
    cursor: Cursor,
    events: u64,
) -> Result<(), ReplayError> {
    let mut client = store.pool().get().await.map_err(order_store::Error::from)?;
    let transaction = client.transaction().await?;
    let mut statements = vec![
        "SET LOCAL lock_timeout = '10s'".to_owned(),
        "LOCK TABLE orders.order_summaries, orders.customer_totals IN ACCESS EXCLUSIVE MODE".to_owned(),
        "DROP TABLE IF EXISTS orders.order_summaries_retired, orders.customer_totals_retired".to_owned(),
        "ALTER TABLE orders.order_summaries RENAME TO order_summaries_retired".to_owned(),
        "ALTER TABLE orders.order_summaries_retired RENAME CONSTRAINT order_summaries_pkey TO order_summaries_retired_pkey".to_owned(),
        "ALTER TABLE orders.customer_totals RENAME TO customer_totals_retired".to_owned(),
        "ALTER TABLE orders.customer_totals_retired RENAME CONSTRAINT customer_totals_pkey TO customer_totals_retired_pkey".to_owned(),
    ];
    for (name, _) in INDEXES {
        statements.push(format!(
            "ALTER INDEX orders.{name} RENAME TO {name}_retired"
        ));
        statements.push(format!("ALTER INDEX orders.{name}_shadow RENAME TO {name}"));
    }
    statements.extend([
        format!("ALTER TABLE orders.{SHADOW_SUMMARIES} RENAME TO order_summaries"),
        format!("ALTER TABLE orders.order_summaries RENAME CONSTRAINT {SHADOW_SUMMARIES}_pkey TO order_summaries_pkey"),
        format!("ALTER TABLE orders.{SHADOW_TOTALS} RENAME TO customer_totals"),
        format!("ALTER TABLE orders.customer_totals RENAME CONSTRAINT {SHADOW_TOTALS}_pkey TO customer_totals_pkey"),
        "GRANT SELECT ON orders.order_summaries, orders.customer_totals TO orders_app, orders_readonly".to_owned(),
        "DROP TABLE orders.order_summaries_retired, orders.customer_totals_retired".to_owned(),
    ]);
    for statement in statements {
        transaction.batch_execute(&statement).await?;
    }
    advance_checkpoint(&transaction, lease, cursor, events, None).await?;
    transaction.commit().await?;
    Ok(())
}

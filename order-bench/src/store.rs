//! `order-bench store`: append throughput and latency of the library against the raw-SQL
//! ceiling of the very same statement, at several writer counts and event counts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use order_domain::es::{EventSchema, Metadata};
use order_domain::order::{LineInput, PlaceOrder, PlaceOrderInput};
use order_domain::values::{AddressInput, ShippingMethod};
use order_domain::{Aggregate, Order, OrderCommand};
use order_store::{
    APPEND_SQL, AppendRequest, EventStore, ExpectedVersion, Idempotency, NewEvent, StoreConfig,
};
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::stats::{Run, Samples};

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Seconds per measured run.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Concurrent writers, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64], value_parser = crate::at_least_one)]
    writers: Vec<usize>,
    /// Events per command, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 3], value_parser = crate::at_least_one)]
    events: Vec<usize>,
    /// Group-commit writers of the library (default: the store's default).
    #[arg(long, value_parser = crate::at_least_one)]
    group_commit_writers: Option<usize>,
    /// The library's group-commit writers on threads of their own (default: the library's
    /// default, off; the services turn it on).
    #[arg(long)]
    group_commit_thread: Option<bool>,
    /// Microseconds without a new append that end a batch's gathering of the callers just
    /// answered (default: the library's, 20; 0 = no gathering).
    #[arg(long)]
    group_commit_gather_us: Option<u64>,
}

/// A realistic payload: the OrderPlaced event of a two-line order (about 450 bytes).
pub fn order_placed_payload() -> anyhow::Result<(String, u16, String)> {
    let place = PlaceOrder::parse(&PlaceOrderInput {
        customer_id: "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001",
        lines: vec![
            LineInput {
                sku: "SKU-10042-BLUE-M",
                quantity: 2,
                currency: "EUR",
                unit_price_minor: 2499,
            },
            LineInput {
                sku: "SKU-20077-GREY-XL",
                quantity: 1,
                currency: "EUR",
                unit_price_minor: 8900,
            },
        ],
        shipping_address: Some(AddressInput {
            recipient: "Ada Lovelace",
            line1: "12 St James's Square",
            line2: "Flat 3",
            city: "London",
            region: "Greater London",
            postal_code: "SW1Y 4JH",
            country: "GB",
        }),
        shipping_method: Some(ShippingMethod::Express),
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let events = Order::default()
        .decide(&OrderCommand::PlaceOrder(place))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let event = events.first().context("placement produced no event")?;
    Ok((
        event.event_type().to_owned(),
        event.schema_version(),
        event.encode()?.to_string(),
    ))
}

pub struct Workload {
    pub event_type: String,
    pub schema_version: u16,
    pub payload: String,
    pub events: usize,
}

impl Workload {
    fn events(&self) -> Vec<NewEvent> {
        (0..self.events)
            .map(|_| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: self.event_type.clone(),
                schema_version: self.schema_version,
                payload: self.payload.clone(),
            })
            .collect()
    }
}

fn fingerprint() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes
}

/// What the raw writers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raw {
    /// A plain prepared `INSERT` of the events into `orders.events` (same table, same
    /// indexes), one transaction per command: the ceiling other event stores are measured
    /// against.
    Insert,
    /// The store's own append statement ([`APPEND_SQL`]), one command per statement.
    Statement,
}

const INSERT_ONE_SQL: &str = "INSERT INTO orders.events (stream_id, stream_version, event_id, \
    event_type, schema_version, payload, correlation_id) VALUES ($1, 1, $2, $3, $4, $5::text::jsonb, $6)";

const INSERT_MANY_SQL: &str = "INSERT INTO orders.events (stream_id, stream_version, event_id, \
    event_type, schema_version, payload, correlation_id) \
    SELECT $1, e.ord, e.id, e.t, e.v, e.p::jsonb, $6 \
    FROM unnest($2::uuid[], $3::text[], $4::int2[], $5::text[]) WITH ORDINALITY AS e(id, t, v, p, ord)";

/// Raw SQL issued directly on one connection per writer: no pool, no checks.
pub async fn raw(
    url: &str,
    kind: Raw,
    writers: usize,
    duration: Duration,
    work: Arc<Workload>,
) -> anyhow::Result<Run> {
    let mut clients = Vec::new();
    for _ in 0..writers {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(connection);
        if kind == Raw::Statement {
            // As the store's own sessions run it: planned once, not per execution.
            client
                .batch_execute("SET plan_cache_mode = force_generic_plan")
                .await?;
        }
        clients.push(Arc::new(client));
    }
    // The connections stay open until the CPU is read: a backend that exits takes its
    // figures with it.
    let kept = clients.clone();
    let meter = Meter::start();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let work = work.clone();
            tokio::spawn(async move {
                let sql = match (kind, work.events) {
                    (Raw::Statement, _) => APPEND_SQL,
                    (Raw::Insert, 1) => INSERT_ONE_SQL,
                    (Raw::Insert, _) => INSERT_MANY_SQL,
                };
                let statement = client.prepare(sql).await?;
                let mut samples = Samples::default();
                let mut errors = 0;
                let correlation = Some("bench".to_owned());
                let nulls_uuid: Vec<Option<Uuid>> = vec![None];
                let nulls_text: Vec<Option<String>> = vec![None];
                while Instant::now() < deadline {
                    let events = work.events();
                    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
                    let versions: Vec<i16> =
                        events.iter().map(|e| e.schema_version as i16).collect();
                    let payloads: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
                    let stream = Uuid::new_v4();
                    let op = Instant::now();
                    let result = match (kind, work.events) {
                        (Raw::Statement, _) => {
                            let fingerprint = vec![Some(fingerprint().to_vec())];
                            let ev_cmd: Vec<i64> = vec![1; events.len()];
                            let ev_seq: Vec<i64> = (1..=events.len() as i64).collect();
                            client
                                .query(
                                    &statement,
                                    &[
                                        &vec![stream],
                                        &vec![0i64],
                                        &vec![1i64],
                                        &vec![Some(Uuid::new_v4())],
                                        &fingerprint,
                                        &vec![Some("Placed")],
                                        &vec![correlation.clone()],
                                        &nulls_uuid,
                                        &nulls_text,
                                        &nulls_text,
                                        &nulls_text,
                                        &ev_cmd,
                                        &ids,
                                        &types,
                                        &versions,
                                        &payloads,
                                        &vec![ids[ids.len() - 1]],
                                        &ev_cmd,
                                        &ev_seq,
                                        &vec!["order"],
                                        &nulls_uuid,
                                    ],
                                )
                                .await
                                .map(drop)
                        }
                        (Raw::Insert, 1) => client
                            .execute(
                                &statement,
                                &[
                                    &stream,
                                    &ids[0],
                                    &types[0],
                                    &versions[0],
                                    &payloads[0],
                                    &correlation,
                                ],
                            )
                            .await
                            .map(drop),
                        (Raw::Insert, _) => client
                            .execute(
                                &statement,
                                &[&stream, &ids, &types, &versions, &payloads, &correlation],
                            )
                            .await
                            .map(drop),
                    };
                    match result {
                        Ok(()) => samples.record(op.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                anyhow::Ok((samples, errors))
            })
        })
        .collect();
    let mut run = collect(tasks, started).await?;
    meter.stop(&mut run);
    drop(kept);
    Ok(run)
}

/// The library: pool, validation, idempotency record, coalesced NOTIFY.
async fn library(
    store: &EventStore,
    writers: usize,
    duration: Duration,
    work: Arc<Workload>,
) -> anyhow::Result<Run> {
    let meter = Meter::start();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let store = store.clone();
            let work = work.clone();
            tokio::spawn(async move {
                let mut samples = Samples::default();
                let mut errors = 0;
                let metadata = Metadata {
                    correlation_id: Some("bench".to_owned()),
                    ..Metadata::default()
                };
                while Instant::now() < deadline {
                    let events = work.events();
                    let op = Instant::now();
                    let result = store
                        .append(AppendRequest {
                            stream_id: Uuid::new_v4(),
                            category: "order",
                            expected: ExpectedVersion::NoStream,
                            events: &events,
                            metadata: &metadata,
                            idempotency: Some(Idempotency {
                                command_id: Uuid::new_v4(),
                                fingerprint: fingerprint(),
                                status: "Placed",
                            }),
                        })
                        .await;
                    match result {
                        Ok(_) => samples.record(op.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                anyhow::Ok((samples, errors))
            })
        })
        .collect();
    let mut run = collect(tasks, started).await?;
    meter.stop(&mut run);
    Ok(run)
}

/// The CPU figures of a run: PostgreSQL's, the bench process's own and the machine's idle share.
struct Meter {
    pg: f64,
    own: f64,
    machine: (u64, u64),
}

impl Meter {
    fn start() -> Self {
        Self {
            pg: crate::grpc::postgres_cpu_seconds(),
            own: crate::grpc::cpu_seconds(std::process::id()),
            machine: crate::grpc::machine_ticks(),
        }
    }

    fn stop(self, run: &mut Run) {
        run.pg_cpu = crate::grpc::postgres_cpu_seconds() - self.pg;
        run.own_cpu = crate::grpc::cpu_seconds(std::process::id()) - self.own;
        let machine = crate::grpc::machine_ticks();
        run.machine = (
            machine.0.saturating_sub(self.machine.0),
            machine.1.saturating_sub(self.machine.1),
        );
    }
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<(Samples, usize)>>>,
    started: Instant,
) -> anyhow::Result<Run> {
    let mut samples = Samples::default();
    let mut errors = 0;
    for task in tasks {
        let (s, e) = task.await??;
        samples.merge(s);
        errors += e;
    }
    Ok(Run {
        samples,
        elapsed: started.elapsed(),
        errors,
        pg_cpu: 0.0,
        own_cpu: 0.0,
        machine: (0, 0),
    })
}

fn merge(a: Run, b: Run) -> Run {
    let mut samples = a.samples;
    samples.merge(b.samples);
    Run {
        samples,
        elapsed: a.elapsed + b.elapsed,
        errors: a.errors + b.errors,
        pg_cpu: a.pg_cpu + b.pg_cpu,
        own_cpu: a.own_cpu + b.own_cpu,
        machine: (a.machine.0 + b.machine.0, a.machine.1 + b.machine.1),
    }
}

/// One configuration on a fresh database: INSERT, statement, library, library, statement,
/// INSERT (ABBA), so that no side profits from running on the smaller or the warmer table.
async fn measure(
    writers: usize,
    group_commit_writers: Option<usize>,
    group_commit_thread: Option<bool>,
    group_commit_gather_us: Option<u64>,
    duration: Duration,
    work: Arc<Workload>,
) -> anyhow::Result<(Run, Run, Run)> {
    let db = crate::fresh_database().await;
    let mut config = StoreConfig::new(db.url());
    config.pool_size = writers;
    if let Some(group_commit_writers) = group_commit_writers {
        config.group_commit_writers = group_commit_writers;
    }
    if let Some(thread) = group_commit_thread {
        config.group_commit_thread = thread;
    }
    if let Some(gather) = group_commit_gather_us {
        config.group_commit_gather = Duration::from_micros(gather);
    }
    config.pool_wait_timeout = Duration::from_secs(5);
    let store = EventStore::new(config)?;
    let warm = Duration::from_millis(500);
    library(&store, writers, warm, work.clone()).await?;
    raw(db.url(), Raw::Statement, writers, warm, work.clone()).await?;
    raw(db.url(), Raw::Insert, writers, warm, work.clone()).await?;
    let half = duration / 2;
    let mut runs = Vec::new();
    for side in [0, 1, 2, 2, 1, 0] {
        crate::checkpoint().await;
        let run = match side {
            0 => raw(db.url(), Raw::Insert, writers, half, work.clone()).await?,
            1 => raw(db.url(), Raw::Statement, writers, half, work.clone()).await?,
            _ => library(&store, writers, half, work.clone()).await?,
        };
        runs.push((side, run));
    }
    let mut merged: Vec<Option<Run>> = vec![None, None, None];
    for (side, run) in runs {
        merged[side] = Some(match merged[side].take() {
            Some(before) => merge(before, run),
            None => run,
        });
    }
    let mut take = |i: usize| merged[i].take().context("a side was not measured");
    Ok((take(0)?, take(1)?, take(2)?))
}

pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let (event_type, schema_version, payload) = order_placed_payload()?;
    println!(
        "order-bench store: {}s per side and configuration, payload {} bytes ({event_type}), a fresh database per configuration",
        args.seconds,
        payload.len(),
    );
    println!(
        "INSERT = a plain prepared INSERT of the events into orders.events, one connection per writer (the ceiling)"
    );
    println!(
        "stmt   = the store's append statement, raw, one command per statement, one connection per writer"
    );
    println!(
        "lib    = EventStore::append (pool, validation, idempotency record, group commit, coalesced NOTIFY)\n"
    );
    println!(
        "{:>6} {:>7} | {:>9} {:>7} {:>7} | {:>9} {:>7} | {:>9} {:>7} {:>7} | {:>9} | {:>8} {:>8}",
        "events",
        "writers",
        "INSERT/s",
        "p50 ms",
        "p99 ms",
        "stmt/s",
        "p99 ms",
        "lib cmd/s",
        "p50 ms",
        "p99 ms",
        "lib ev/s",
        "lib/INS",
        "lib/stmt"
    );
    let duration = Duration::from_secs(args.seconds);
    for &events in &args.events {
        for &writers in &args.writers {
            let work = Arc::new(Workload {
                event_type: event_type.clone(),
                schema_version,
                payload: payload.clone(),
                events,
            });
            let (mut insert, mut statement, mut lib) = measure(
                writers,
                args.group_commit_writers,
                args.group_commit_thread,
                args.group_commit_gather_us,
                duration,
                work,
            )
            .await?;
            let errors = insert.errors + statement.errors + lib.errors;
            println!(
                "{:>6} {:>7} | {:>9.0} {:>7.2} {:>7.2} | {:>9.0} {:>7.2} | {:>9.0} {:>7.2} {:>7.2} | {:>9.0} | {:>8.2} {:>8.2}{}",
                events,
                writers,
                insert.rate(),
                insert.samples.quantile_ms(0.5),
                insert.samples.quantile_ms(0.99),
                statement.rate(),
                statement.samples.quantile_ms(0.99),
                lib.rate(),
                lib.samples.quantile_ms(0.5),
                lib.samples.quantile_ms(0.99),
                lib.rate() * events as f64,
                lib.rate() / insert.rate(),
                lib.rate() / statement.rate(),
                if errors > 0 {
                    format!(
                        "  (errors: INSERT {}, stmt {}, lib {})",
                        insert.errors, statement.errors, lib.errors
                    )
                } else {
                    String::new()
                }
            );
            println!(
                "{:>14} | CPU per command, PostgreSQL / bench process (machine idle): INSERT {:.0} / {:.0} µs ({:.0} %), stmt {:.0} / {:.0} µs ({:.0} %), lib {:.0} / {:.0} µs ({:.0} %)",
                "",
                insert.pg_micros(),
                insert.own_micros(),
                insert.idle_percent(),
                statement.pg_micros(),
                statement.own_micros(),
                statement.idle_percent(),
                lib.pg_micros(),
                lib.own_micros(),
                lib.idle_percent(),
            );
        }
    }
    Ok(())
}

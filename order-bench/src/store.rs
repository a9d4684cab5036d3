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
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent writers, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64])]
    writers: Vec<usize>,
    /// Events per command, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 3])]
    events: Vec<usize>,
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

/// The statement issued directly on one connection per writer: no pool, no checks.
pub async fn raw(
    url: &str,
    writers: usize,
    duration: Duration,
    work: Arc<Workload>,
) -> anyhow::Result<Run> {
    let mut clients = Vec::new();
    for _ in 0..writers {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(connection);
        clients.push(client);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let work = work.clone();
            tokio::spawn(async move {
                let statement = client.prepare(APPEND_SQL).await?;
                let mut samples = Samples::default();
                let mut errors = 0;
                let correlation = Some("bench".to_owned());
                let none_uuid: Option<Uuid> = None;
                let none_text: Option<String> = None;
                while Instant::now() < deadline {
                    let events = work.events();
                    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
                    let versions: Vec<i16> =
                        events.iter().map(|e| e.schema_version as i16).collect();
                    let payloads: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
                    let command = Some(Uuid::new_v4());
                    let fingerprint = Some(fingerprint().to_vec());
                    let status = Some("Placed");
                    let op = Instant::now();
                    let result = client
                        .query_one(
                            &statement,
                            &[
                                &Uuid::new_v4(),
                                &0i64,
                                &ids,
                                &types,
                                &versions,
                                &payloads,
                                &correlation,
                                &none_uuid,
                                &command,
                                &none_text,
                                &none_text,
                                &none_text,
                                &fingerprint,
                                &status,
                            ],
                        )
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
    collect(tasks, started).await
}

/// The library: pool, validation, idempotency record, coalesced NOTIFY.
async fn library(
    store: &EventStore,
    writers: usize,
    duration: Duration,
    work: Arc<Workload>,
) -> anyhow::Result<Run> {
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
    collect(tasks, started).await
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
    })
}

fn merge(a: Run, b: Run) -> Run {
    let mut samples = a.samples;
    samples.merge(b.samples);
    Run {
        samples,
        elapsed: a.elapsed + b.elapsed,
        errors: a.errors + b.errors,
    }
}

/// One configuration on a fresh database: raw, library, library, raw (ABBA), so that neither
/// side profits from running on the smaller or the warmer table.
async fn measure(
    writers: usize,
    duration: Duration,
    work: Arc<Workload>,
) -> anyhow::Result<(Run, Run)> {
    let db = crate::fresh_database().await;
    let mut config = StoreConfig::new(db.url());
    config.pool_size = writers;
    config.pool_wait_timeout = Duration::from_secs(5);
    let store = EventStore::new(config)?;
    let warm = Duration::from_millis(500);
    library(&store, writers, warm, work.clone()).await?;
    raw(db.url(), writers, warm, work.clone()).await?;
    let half = duration / 2;
    crate::checkpoint().await;
    let raw_a = raw(db.url(), writers, half, work.clone()).await?;
    crate::checkpoint().await;
    let lib_a = library(&store, writers, half, work.clone()).await?;
    crate::checkpoint().await;
    let lib_b = library(&store, writers, half, work.clone()).await?;
    crate::checkpoint().await;
    let raw_b = raw(db.url(), writers, half, work).await?;
    Ok((merge(raw_a, raw_b), merge(lib_a, lib_b)))
}

pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let (event_type, schema_version, payload) = order_placed_payload()?;
    println!(
        "order-bench store: {}s per side and configuration, payload {} bytes ({event_type}), a fresh database per configuration",
        args.seconds,
        payload.len(),
    );
    println!(
        "raw = the append statement on one dedicated connection per writer (prepared, no pool)"
    );
    println!("lib = EventStore::append (pool, validation, idempotency record, coalesced NOTIFY)\n");
    println!(
        "{:>6} {:>7} | {:>9} {:>8} {:>8} | {:>9} {:>8} {:>8} | {:>9} {:>6}",
        "events",
        "writers",
        "raw cmd/s",
        "p50 ms",
        "p99 ms",
        "lib cmd/s",
        "p50 ms",
        "p99 ms",
        "lib ev/s",
        "ratio"
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
            let (mut raw_run, mut lib_run) = measure(writers, duration, work).await?;
            println!(
                "{:>6} {:>7} | {:>9.0} {:>8.2} {:>8.2} | {:>9.0} {:>8.2} {:>8.2} | {:>9.0} {:>6.2}{}",
                events,
                writers,
                raw_run.rate(),
                raw_run.samples.quantile_ms(0.5),
                raw_run.samples.quantile_ms(0.99),
                lib_run.rate(),
                lib_run.samples.quantile_ms(0.5),
                lib_run.samples.quantile_ms(0.99),
                lib_run.rate() * events as f64,
                lib_run.rate() / raw_run.rate(),
                if raw_run.errors + lib_run.errors > 0 {
                    format!("  (errors: raw {}, lib {})", raw_run.errors, lib_run.errors)
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}

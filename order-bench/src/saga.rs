//! `order-bench saga`: how many orders one worker task settles per second when its providers
//! are slow. The real binaries (release builds) on a private PostgreSQL cluster and SQS
//! emulator (order-faults' stack), one `order-worker` with its default concurrency, calling the
//! HTTP provider stub (in this process) whose every answer takes the given latency. PlaceOrder
//! at a steady rate for a bounded time; then, from the log: orders settled per second while the
//! load ran (steady window), time from PlaceOrder to Completed (p50, p99, max), how long the
//! backlog took to drain after the load stopped, and the worker's peak RSS.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use order_faults::audit::{provider_effects, settle_and_audit};
use order_faults::load::{self, LoadOptions};
use order_faults::stack::{Binaries, HttpProviders, Stack, StackOptions};
use order_provider_stub::{FaultPlan, PROVIDERS};

/// Settings of `order-bench saga`.
#[derive(Debug, clap::Args)]
pub struct SagaArgs {
    /// Latency of every provider answer, in ms (one run each), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 500, 2500])]
    latency_ms: Vec<u64>,
    /// Orders placed per second (above the target of 33/s: what the worker cannot settle
    /// shows as a lower settled rate and a longer drain).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rate: u64,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Latency applies to the payment provider only (the others answer in 10 ms).
    #[arg(long)]
    payment_only: bool,
    /// Folder with order-grpc, order-projector and order-worker (release builds).
    #[arg(long, default_value = "target/release")]
    binaries: PathBuf,
}

/// Peak resident set size (VmHWM) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Run the benchmark and print one row per latency.
pub async fn run(args: SagaArgs) -> anyhow::Result<()> {
    let binaries = Binaries::in_dir(&args.binaries);
    println!(
        "| provider latency | offered orders/s | settled orders/s (steady) | PlaceOrder -> Completed p50 / p99 / max s | drain after load s | worker concurrency | worker peak RSS MiB | provider effects exactly once |"
    );
    println!("|---:|---:|---:|---|---:|---:|---:|---|");
    for latency_ms in &args.latency_ms {
        let row = one(&binaries, *latency_ms, &args).await?;
        println!("{row}");
    }
    Ok(())
}

async fn one(binaries: &Binaries, latency_ms: u64, args: &SagaArgs) -> anyhow::Result<String> {
    let options = StackOptions {
        transient_failure_rate: 0.0,
        http_providers: Some(HttpProviders {
            latency_ms,
            ..HttpProviders::default()
        }),
        // Provider calls take the latency; the call timeout must exceed it.
        worker_env: vec![(
            "ORDER_WORKER_PROVIDER_TIMEOUT_MS".into(),
            (latency_ms * 4).max(5_000).to_string(),
        )],
        ..StackOptions::default()
    };
    let mut stack = Stack::start(binaries, &options).await?;
    if args.payment_only
        && let Some(stub) = &stack.stub
    {
        for provider in PROVIDERS {
            stub.set_faults(
                provider,
                &FaultPlan {
                    latency_ms: if provider == "payment" {
                        latency_ms
                    } else {
                        10
                    },
                    ..FaultPlan::default()
                },
            );
        }
    }
    let pid = stack
        .worker
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the worker is not running"))?;
    let concurrency = worker_concurrency(&stack).await;
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(mib) = peak_rss_mib(pid) {
                    peak.fetch_max((mib * 1000.0) as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let started = SystemTime::now();
    let load_options = LoadOptions {
        rate: args.rate,
        duration: Duration::from_secs(args.seconds),
        out_of_stock: 0.0,
        declined: 0.0,
        ..LoadOptions::default()
    };
    let report = load::run(&stack.endpoint(), &load_options).await?;
    let load_ended = Instant::now();
    let audit = settle_and_audit(&stack, &report, Duration::from_secs(600)).await?;
    let drained = load_ended.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let rss = peak_rss_mib(pid)
        .unwrap_or(0.0)
        .max(peak.load(Ordering::Relaxed) as f64 / 1000.0);
    anyhow::ensure!(audit.clean(), "the run did not settle cleanly: {audit:?}");
    let effects = provider_effects(&stack).await?;

    // From the log: when each order was placed and completed.
    let db = stack.db().await?;
    let rows = db
        .query(
            "SELECT extract(epoch FROM min(recorded_at) FILTER (WHERE event_type = 'OrderPlaced') - $1::timestamptz)::float8, \
                    extract(epoch FROM max(recorded_at) FILTER (WHERE event_type = 'OrderCompleted') - $1::timestamptz)::float8 \
             FROM orders.events GROUP BY stream_id",
            &[&started],
        )
        .await?;
    let mut latencies = Vec::new();
    let mut completed_at = Vec::new();
    for row in &rows {
        let (placed, completed): (Option<f64>, Option<f64>) = (row.get(0), row.get(1));
        if let (Some(placed), Some(completed)) = (placed, completed) {
            latencies.push(completed - placed);
            completed_at.push(completed);
        }
    }
    latencies.sort_by(f64::total_cmp);
    // Steady window: from a sixth of the load to its end (the start-up ramp left out).
    let (from, to) = (args.seconds as f64 / 6.0, args.seconds as f64);
    let in_window = completed_at
        .iter()
        .filter(|t| (from..to).contains(*t))
        .count();
    let settled_rate = in_window as f64 / (to - from);
    stack.stop().await;
    Ok(format!(
        "| {} ms | {} | **{:.1}** | {:.1} / **{:.1}** / {:.1} | {:.1} | {} | **{:.0}** | {} ({} effects, {} mismatched) |",
        latency_ms,
        args.rate,
        settled_rate,
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        quantile(&latencies, 1.0),
        drained,
        concurrency,
        rss,
        if effects.clean() { "yes" } else { "NO" },
        effects.total,
        effects.mismatched + effects.doubled,
    ))
}

/// The concurrency the worker chose (its `order_worker_concurrency` gauge).
async fn worker_concurrency(stack: &Stack) -> String {
    let Ok((200, metrics)) = stack.worker.admin_get("/metrics").await else {
        return "?".to_owned();
    };
    metrics
        .lines()
        .find(|l| l.starts_with("order_worker_concurrency "))
        .and_then(|l| l.rsplit(' ').next())
        .map_or_else(|| "?".to_owned(), str::to_owned)
}

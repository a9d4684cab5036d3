//! `order-bench import`: a legacy import at volume, end to end. A generated legacy export
//! (`order-import generate`, cached) is imported by the `order-import` binary into a fresh
//! database (events per second, peak RSS), the read model is rebuilt from it by
//! `order-projector replay` (events per second), and the two together are the time until the
//! imported orders are visible. Then live PlaceOrder latency through order-grpc, at a steady
//! rate, alone and while another import runs, unthrottled and with `--max-rate`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use order_proto::v1::order_service_client::OrderServiceClient;
use tokio::process::Command;
use tonic::transport::Channel;

use crate::grpc::{Server, place_request};
use crate::projector::peak_rss;
use crate::stats::Samples;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Legacy orders in the export.
    #[arg(long, default_value_t = 5_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    orders: u64,
    /// Where generated exports are kept between runs.
    #[arg(long, default_value = ".dev/bench-import")]
    export_dir: PathBuf,
    /// Directory of the release binaries (order-import, order-projector, order-grpc).
    #[arg(long, default_value = "target/release")]
    binaries: PathBuf,
    /// Live PlaceOrder per second while measuring latency.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    live_rate: u64,
    /// Seconds of each live-latency measurement.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    live_seconds: u64,
    /// Events per second of the throttled import beside live traffic.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_rate: u64,
    /// Skip the live-traffic part.
    #[arg(long)]
    no_live: bool,
    /// Stop after the import step (no replay, no live part): for comparing importers side by
    /// side.
    #[arg(long)]
    import_only: bool,
    /// An argument for the measured `order-import run` (repeat it: `--import-arg=--writers
    /// --import-arg=3`), for trying its settings.
    #[arg(long, allow_hyphen_values = true)]
    import_arg: Vec<String>,
}

/// The export of `orders` orders, generated unless it is there already.
async fn export(args: &ImportArgs, importer: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&args.export_dir)?;
    let path = args
        .export_dir
        .join(format!("legacy-{}.jsonl", args.orders));
    let done = args.export_dir.join(format!("legacy-{}.done", args.orders));
    if done.exists() {
        return Ok(path);
    }
    let started = Instant::now();
    let status = Command::new(importer)
        .args(["generate", "--orders", &args.orders.to_string(), "--out"])
        .arg(&path)
        .args(["--bad-every", "1000", "--seed", "1"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .with_context(|| format!("starting {}", importer.display()))?;
    anyhow::ensure!(status.success(), "generating the export failed");
    std::fs::write(&done, b"")?;
    println!(
        "export: {} orders, {:.1} GB, generated in {:.0} s",
        args.orders,
        std::fs::metadata(&path)?.len() as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
    Ok(path)
}

/// What one `order-import run` did.
struct Imported {
    seconds: f64,
    rss_mib: f64,
    summary: serde_json::Value,
}

/// Start `order-import run` on `input` (source `source`) with `extra` arguments.
fn start_import(
    importer: &Path,
    database_url: &str,
    input: &Path,
    source: &str,
    rejects: &Path,
    extra: &[String],
) -> anyhow::Result<tokio::process::Child> {
    Command::new(importer)
        .args([
            "run",
            "--no-progress",
            "--json",
            "--name",
            source,
            "--source",
            source,
        ])
        .arg("--input")
        .arg(input)
        .arg("--rejects")
        .arg(rejects)
        .args(extra)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", importer.display()))
}

async fn finish_import(mut child: tokio::process::Child) -> anyhow::Result<Imported> {
    let started = Instant::now();
    let pid = child.id().unwrap_or_default();
    let mut rss = 0f64;
    let status = loop {
        if let Some(now) = peak_rss(pid) {
            rss = rss.max(now);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // 0: clean; 2: finished with rejects (the export has some on purpose).
    anyhow::ensure!(
        matches!(status.code(), Some(0 | 2)),
        "order-import failed: {status}"
    );
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        use tokio::io::AsyncReadExt;
        out.read_to_string(&mut stdout).await?;
    }
    let summary: serde_json::Value =
        serde_json::from_str(stdout.trim()).context("the import's JSON summary")?;
    Ok(Imported {
        seconds: started.elapsed().as_secs_f64(),
        rss_mib: rss,
        summary,
    })
}

/// PlaceOrder at `rate` per second for `duration` (8 clients, each on its own connection):
/// the latencies and the errors. Open loop as far as each client goes: a latency counts from
/// when the call was due, so a slow answer that holds back its client's next calls counts in
/// theirs too (rather than the calls it held back going unsent and unmeasured).
async fn paced(
    addr: std::net::SocketAddr,
    rate: u64,
    duration: Duration,
    offset: u64,
) -> anyhow::Result<(Samples, usize)> {
    const CLIENTS: u64 = 8;
    let interval = Duration::from_secs_f64(CLIENTS as f64 / rate.max(1) as f64);
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        tasks.push(tokio::spawn(async move {
            let mut client = OrderServiceClient::new(channel);
            let mut samples = Samples::default();
            let mut errors = 0;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = offset + c;
            while Instant::now() < deadline {
                let due = tick.tick().await;
                n += CLIENTS;
                let request = place_request(&uuid::Uuid::new_v4().to_string(), n);
                match client.place_order(request).await {
                    Ok(_) => samples.record(due.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (samples, errors)
        }));
    }
    let mut samples = Samples::default();
    let mut errors = 0;
    for task in tasks {
        let (s, e) = task.await?;
        samples.merge(s);
        errors += e;
    }
    Ok((samples, errors))
}

/// One row of the live-latency table.
fn row(label: &str, mut samples: Samples, errors: usize, import: Option<&Imported>) {
    let rate = import.map_or(String::from("-"), |i| {
        let events = i.summary["events_imported"].as_u64().unwrap_or(0);
        format!("{:.0}", events as f64 / i.seconds)
    });
    println!(
        "| {label} | {} | {errors} | {:.1} | {:.1} | {:.1} | {rate} |",
        samples.count(),
        samples.quantile_ms(0.5),
        samples.quantile_ms(0.99),
        samples.quantile_ms(1.0),
    );
}

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let importer = args.binaries.join("order-import");
    let projector = args.binaries.join("order-projector");
    let server = args.binaries.join("order-grpc");
    let input = export(&args, &importer).await?;
    let scratch = tempfile::tempdir()?;

    // 1. The import into a fresh database.
    let db = crate::fresh_database().await;
    crate::checkpoint().await;
    let child = start_import(
        &importer,
        db.url(),
        &input,
        "legacy",
        &scratch.path().join("rejects.jsonl"),
        &args.import_arg,
    )?;
    let imported = finish_import(child).await?;
    let events = imported.summary["events_imported"].as_u64().unwrap_or(0);
    let orders = imported.summary["orders_imported"].as_u64().unwrap_or(0);
    println!(
        "import: {} orders ({} rejected), {} events in {:.1} s: {:.0} events/s, {:.0} orders/s, order-import peak RSS {:.0} MiB",
        orders,
        imported.summary["rejected"],
        events,
        imported.seconds,
        events as f64 / imported.seconds,
        orders as f64 / imported.seconds,
        imported.rss_mib
    );
    if args.import_only {
        return Ok(());
    }

    // 2. The read model rebuilt from the imported log.
    crate::checkpoint().await;
    let started = Instant::now();
    let status = Command::new(&projector)
        .args(["replay", "--projection", "read_model", "--progress", "none"])
        .env("DATABASE_URL", db.url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .with_context(|| format!("starting {}", projector.display()))?;
    anyhow::ensure!(status.success(), "replay failed: {status}");
    let replay = started.elapsed().as_secs_f64();
    let visible: i64 = db
        .connect()
        .await
        .query_one("SELECT count(*) FROM orders.order_summaries", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        visible as u64 == orders,
        "the read model has {visible} orders, the import appended {orders}"
    );
    println!(
        "read model: {visible} orders visible after a replay of {replay:.1} s ({:.0} events/s); import + replay: {:.1} s ({:.1} min)",
        events as f64 / replay,
        imported.seconds + replay,
        (imported.seconds + replay) / 60.0
    );
    if args.no_live {
        return Ok(());
    }

    // 3. Live PlaceOrder beside an import: alone, unthrottled, throttled.
    let grpc = Server::start(&server, db.url(), 8).await?;
    let seconds = Duration::from_secs(args.live_seconds);
    let mut offset = 1u64 << 40;
    println!(
        "\n| live PlaceOrder at {}/s, {} s | commands | errors | p50 ms | p99 ms | max ms | import events/s |\n|---|---:|---:|---:|---:|---:|---:|",
        args.live_rate, args.live_seconds
    );
    let (samples, errors) = paced(grpc.addr, args.live_rate, seconds, offset).await?;
    row("alone", samples, errors, None);
    for (n, throttle) in [None, Some(args.max_rate)].into_iter().enumerate() {
        offset += 1 << 30;
        let source = format!("live-{n}");
        let extra: Vec<String> = throttle
            .map(|rate| vec!["--max-rate".to_owned(), rate.to_string()])
            .unwrap_or_default();
        crate::checkpoint().await;
        let child = start_import(
            &importer,
            db.url(),
            &input,
            &source,
            &scratch.path().join(format!("{source}.rejects.jsonl")),
            &extra,
        )?;
        let waiter = tokio::spawn(finish_import(child));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (samples, errors) = paced(grpc.addr, args.live_rate, seconds, offset).await?;
        anyhow::ensure!(
            !waiter.is_finished(),
            "the import ended before the measurement did: use more --orders"
        );
        waiter.abort();
        let label = match throttle {
            None => "during an import, unthrottled".to_owned(),
            Some(rate) => format!("during an import, --max-rate {rate}"),
        };
        // The import's own rate while it ran beside the live traffic: its events so far.
        let appended: i64 = db
            .connect()
            .await
            .query_one(
                "SELECT events_imported FROM orders.imports WHERE name = $1",
                &[&source],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        let beside = Imported {
            seconds: seconds.as_secs_f64() + 2.0,
            rss_mib: 0.0,
            summary: serde_json::json!({ "events_imported": appended }),
        };
        row(&label, samples, errors, Some(&beside));
    }
    Ok(())
}

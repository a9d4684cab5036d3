//! `order-bench projector`: load a realistic log (1,000,000 events by default, 5-8 events per
//! order, orders interleaved as live traffic interleaves them), then measure
//!
//! - the raw paged read rate of that log (the ceiling of any subscriber),
//! - catch-up of the read model from position 0 (in process, the real subscription step),
//! - the `order-projector` release binary as operators run it: catch-up (`run`) and replay
//!   with swap, with peak RSS, beside a baseline build's binary (`--baseline DIR`) in the same
//!   run, alternately; and the replay's generic path (`--no-bulk`),
//! - a team's projection on the generic path (the example `sku_sales`, rebuilt in process),
//! - SQS publishing against the emulator (a bounded slice of the log),
//! - command acknowledgement to read-model visibility at a steady rate (order-grpc and
//!   order-projector binaries, PlaceOrder at a fixed rate, GetOrder with min_position).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use order_domain::es::Metadata;
use order_domain::order::{LineInput, PlaceOrder, PlaceOrderInput};
use order_domain::values::{AddressInput, ShippingMethod};
use order_domain::{Aggregate, Order, OrderCommand};
use order_projector::sqs::Publisher;
use order_projector::{ReadModel, SqsPublisher, Step, Subscription};
use order_proto::v1 as pb;
use order_store::{AppendRequest, Cursor, EventStore, ExpectedVersion, NewEvent, StoreConfig};
use tokio::process::Command;
use tokio::sync::watch;
use uuid::Uuid;

use crate::stats::Samples;

#[derive(Debug, clap::Args)]
pub struct ProjectorArgs {
    /// Orders to load (about 6.5 events each).
    #[arg(long, default_value_t = 154_000, value_parser = crate::at_least_one)]
    orders: usize,
    /// Events sent to SQS in the publish measurement.
    #[arg(long, default_value_t = 100_000, value_parser = crate::at_least_one)]
    sqs_events: usize,
    /// Commands per second in the latency measurement.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rate: u64,
    /// Seconds of the latency measurement.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    latency_seconds: u64,
    /// Directory of the release binaries (order-grpc, order-projector).
    #[arg(long, default_value = "target/release")]
    binaries: PathBuf,
    /// Directory of a baseline `order-projector` release binary (built from an earlier
    /// commit): its catch-up and replay are measured beside this build's, alternately, on
    /// the same log in the same run.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Rounds of the side-by-side measurements (each binary's catch-up and replay once per
    /// round, alternating which goes first).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// Skip the SQS and read-your-writes measurements.
    #[arg(long)]
    projections_only: bool,
    /// Events per page of the read model's catch-up (in process and `order-projector run`);
    /// the default is the product's (`ORDER_PROJECTOR_READ_MODEL_PAGE`).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    page: u32,
}

/// The commands of order `n`: a mix of every path, 5 to 8 events each.
fn history(n: usize) -> Vec<OrderCommand> {
    let currency = ["EUR", "EUR", "USD", "GBP"][n % 4];
    let quantity = 1 + (n % 3) as i64;
    let price = 990 + (n % 17) as i64 * 310;
    let total = quantity * price + 450;
    let customer = format!("0b5c3a3e-52f5-4b8a-9a55-{:012x}", n % 20_000 + 1);
    let place = PlaceOrder::parse(&PlaceOrderInput {
        customer_id: &customer,
        lines: vec![
            LineInput {
                sku: "SKU-10042-BLUE-M",
                quantity,
                currency,
                unit_price_minor: price,
            },
            LineInput {
                sku: "SKU-GIFTWRAP",
                quantity: 1,
                currency,
                unit_price_minor: 450,
            },
        ],
        shipping_address: Some(AddressInput {
            recipient: "Ada Lovelace",
            line1: "12 St James's Square",
            city: "London",
            postal_code: "SW1Y 4JH",
            country: "GB",
            ..AddressInput::default()
        }),
        shipping_method: Some(ShippingMethod::Express),
    });
    let Ok(place) = place else { return Vec::new() };
    let step = |c: Result<OrderCommand, order_domain::ValidationError>| c.ok();
    let mut commands = vec![OrderCommand::PlaceOrder(place)];
    let happy = [
        step(OrderCommand::reserve_inventory("res")),
        step(OrderCommand::authorize_payment("pay", currency, total)),
        Some(OrderCommand::ConfirmOrder),
        Some(OrderCommand::StartFulfillment),
        step(OrderCommand::ship_order("DHL", "JD0001")),
        Some(OrderCommand::DeliverOrder),
        Some(OrderCommand::CompleteOrder),
    ];
    match n % 10 {
        // 8 events: the whole way.
        0..=5 => commands.extend(happy.into_iter().flatten()),
        // 7 events: delivered, not yet completed, one partial refund on the way.
        6 => {
            commands.extend(happy.into_iter().take(4).flatten());
            commands.extend(step(OrderCommand::refund_payment(currency, 100)));
            commands.extend(
                [
                    step(OrderCommand::ship_order("DHL", "JD0002")),
                    Some(OrderCommand::DeliverOrder),
                ]
                .into_iter()
                .flatten(),
            );
        }
        // 6 events: payment failed, inventory released, cancelled.
        7 => commands.extend(
            [
                step(OrderCommand::reserve_inventory("res")),
                step(OrderCommand::fail_payment("declined")),
                Some(OrderCommand::ReleaseInventory),
            ]
            .into_iter()
            .flatten(),
        ),
        // 7 events: cancelled after authorization (void) and release.
        _ => commands.extend(
            [
                step(OrderCommand::reserve_inventory("res")),
                step(OrderCommand::authorize_payment("pay", currency, total)),
                step(OrderCommand::cancel_order("customer changed their mind")),
                Some(OrderCommand::ReleaseInventory),
                step(OrderCommand::refund_payment(currency, total)),
            ]
            .into_iter()
            .flatten(),
        ),
    }
    commands
}

/// Each command's events, decided with the real aggregate.
fn events_of(n: usize) -> Vec<Vec<NewEvent>> {
    let mut order = Order::default();
    let mut out = Vec::new();
    for command in history(n) {
        let Ok(events) = order.decide(&command) else {
            break;
        };
        let encoded: Vec<NewEvent> = events
            .iter()
            .filter_map(|e| NewEvent::encode(e).ok())
            .collect();
        for event in &events {
            order.evolve(event);
        }
        out.push(encoded);
    }
    out
}

/// Append the histories of `orders` orders, chunk by chunk; within a chunk each round appends
/// the next command of every order, so that pages interleave many orders as traffic does.
async fn load(store: &EventStore, orders: usize) -> anyhow::Result<u64> {
    const CHUNK: usize = 2_000;
    const WRITERS: usize = 32;
    let metadata = Arc::new(Metadata {
        correlation_id: Some("bench-load".into()),
        ..Metadata::default()
    });
    let mut total = 0u64;
    let started = Instant::now();
    for chunk in (0..orders).step_by(CHUNK) {
        let members: Vec<(Uuid, Vec<Vec<NewEvent>>)> = (chunk..(chunk + CHUNK).min(orders))
            .map(|n| (Uuid::new_v4(), events_of(n)))
            .collect();
        let rounds = members.iter().map(|m| m.1.len()).max().unwrap_or(0);
        let members = Arc::new(members);
        for round in 0..rounds {
            let tasks: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let (store, members, metadata) =
                        (store.clone(), members.clone(), metadata.clone());
                    tokio::spawn(async move {
                        let mut written = 0u64;
                        for (id, commands) in members.iter().skip(w).step_by(WRITERS) {
                            let Some(events) = commands.get(round) else {
                                continue;
                            };
                            let version: u64 =
                                commands[..round].iter().map(|c| c.len() as u64).sum();
                            store
                                .append(AppendRequest {
                                    stream_id: *id,
                                    category: "order",
                                    expected: ExpectedVersion::Exact(version),
                                    events,
                                    metadata: &metadata,
                                    idempotency: None,
                                })
                                .await?;
                            written += events.len() as u64;
                        }
                        anyhow::Ok(written)
                    })
                })
                .collect();
            for task in tasks {
                total += task.await??;
            }
        }
        if chunk % 20_000 == 0 {
            eprint!(
                "\rloaded {total} events ({:.0}/s)   ",
                total as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!();
    Ok(total)
}

/// The cursor of the log's last event in the gap-safe order: a subscriber whose checkpoint
/// reached it has caught up.
async fn last_cursor(store: &EventStore) -> anyhow::Result<Cursor> {
    let client = store.pool().get().await?;
    let row = client
        .query_one(
            "SELECT transaction_id, global_position FROM orders.events
             ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
            &[],
        )
        .await?;
    Ok(Cursor {
        transaction_id: row.try_get(0)?,
        global_position: row.try_get::<_, i64>(1)? as u64,
    })
}

/// Empty read tables and the read model's checkpoint back at the start.
async fn reset_read_model(db: &order_testkit::pg::TestDatabase) -> anyhow::Result<()> {
    let client = db.connect().await;
    client
        .batch_execute(
            "TRUNCATE orders.order_summaries, orders.customer_totals;
             UPDATE orders.subscriptions SET checkpoint_xid = '0', checkpoint_position = 0,
                 owner = NULL, lease_expires_at = NULL WHERE name = 'read_model'",
        )
        .await
        .context("resetting the read model")?;
    // Apart: several statements in one simple query run as one transaction, and VACUUM
    // cannot run inside one.
    client
        .batch_execute("VACUUM ANALYZE orders.order_summaries, orders.customer_totals")
        .await
        .context("vacuuming the read model")?;
    Ok(())
}

/// `order-projector run` (the read model only, pages of `page`) from position 0 until its
/// checkpoint reaches `target`: events per second from the start of the process, and its
/// peak RSS.
async fn catch_up_binary(
    binary: &std::path::Path,
    db: &order_testkit::pg::TestDatabase,
    store: &EventStore,
    target: Cursor,
    events: u64,
    page: u32,
) -> anyhow::Result<(f64, f64)> {
    reset_read_model(db).await?;
    crate::checkpoint().await;
    let admin = order_testkit::net::free_addr()?;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("run")
        .env("DATABASE_URL", db.url())
        .env("ORDER_ADMIN_ADDR", admin.to_string())
        .env("ORDER_PROJECTOR_SUBSCRIPTIONS", "read_model")
        .env("ORDER_PROJECTOR_READ_MODEL_PAGE", page.to_string())
        .env("ORDER_PROJECTOR_POLL_MS", "50")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().unwrap_or_default();
    let mut rss = 0f64;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        if let Some(now) = peak_rss(pid) {
            rss = rss.max(now);
        }
        if store.checkpoint("read_model").await? >= target {
            break;
        }
        anyhow::ensure!(child.try_wait()?.is_none(), "{} exited", binary.display());
        anyhow::ensure!(Instant::now() < deadline, "no catch-up in 30 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    Ok((rate, rss))
}

/// `order-projector replay --projection read_model` (with `extra` arguments): events per
/// second, and the process's peak RSS.
async fn replay_binary(
    binary: &std::path::Path,
    db: &order_testkit::pg::TestDatabase,
    extra: &[&str],
    events: u64,
) -> anyhow::Result<(f64, f64)> {
    crate::checkpoint().await;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["replay", "--projection", "read_model", "--progress", "none"])
        .args(extra)
        .env("DATABASE_URL", db.url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (cargo build --release -p order-projector)",
                binary.display()
            )
        })?;
    let pid = child.id().unwrap_or_default();
    let mut rss = 0f64;
    let deadline = started + Duration::from_secs(30 * 60);
    let status = loop {
        anyhow::ensure!(Instant::now() < deadline, "no replay in 30 minutes");
        if let Some(now) = peak_rss(pid) {
            rss = rss.max(now);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    anyhow::ensure!(status.success(), "replay failed: {status}");
    Ok((events as f64 / started.elapsed().as_secs_f64(), rss))
}

/// Peak RSS (VmHWM, MiB) of a running process.
pub(crate) fn peak_rss(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

pub async fn run(args: ProjectorArgs) -> anyhow::Result<()> {
    let db = crate::fresh_database().await;
    let mut config = StoreConfig::new(db.url());
    config.pool_size = 40;
    let store = EventStore::new(config)?;
    println!("order-bench projector: database {}", db.name());

    let started = Instant::now();
    let events = load(&store, args.orders).await?;
    let load_secs = started.elapsed().as_secs_f64();
    println!(
        "load: {events} events of {} orders in {load_secs:.1}s ({:.0} events/s through EventStore::append)",
        args.orders,
        events as f64 / load_secs
    );
    db.connect()
        .await
        .batch_execute("VACUUM ANALYZE orders.events")
        .await?;
    crate::checkpoint().await;

    // Raw paged read: the ceiling of any subscriber.
    let started = Instant::now();
    let mut cursor = Cursor::START;
    let mut read = 0u64;
    loop {
        let page = store.read_all(cursor, 1000).await?;
        let Some(last) = page.last() else { break };
        cursor = last.cursor();
        read += page.len() as u64;
    }
    let raw_rate = read as f64 / started.elapsed().as_secs_f64();
    println!("raw paged read (pages of 1000): {read} events, {raw_rate:.0} events/s");

    // Catch-up of the read model from position 0.
    crate::checkpoint().await;
    let (lease, cursor) = store
        .acquire_lease("read_model", "bench", Duration::from_secs(600), true)
        .await?
        .context("no lease")?;
    let subscription = Subscription::projection(ReadModel::new().page(args.page));
    let (_stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let mut cursor = cursor;
    let mut applied = 0usize;
    while let Step::Progressed {
        cursor: next,
        events,
    } = subscription
        .step(&store, &lease, cursor, &shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        cursor = next;
        applied += events;
    }
    let catch_up = applied as f64 / started.elapsed().as_secs_f64();
    store.release_lease(&lease).await?;
    println!(
        "read-model catch-up (pages of {}, one transaction each): {applied} events, {catch_up:.0} events/s ({:.2} of the raw read rate)",
        args.page,
        catch_up / raw_rate
    );

    // The binaries, as operators run them: catch-up (`run`) and replay with swap, this
    // build beside the baseline's when there is one, alternately, on the same log.
    let target = last_cursor(&store).await?;
    let current = args.binaries.join("order-projector");
    let mut binaries = vec![("this build", current.clone())];
    if let Some(baseline) = &args.baseline {
        binaries.push(("baseline", baseline.join("order-projector")));
    }
    let mut figures: Vec<(&str, &str, f64, f64)> = Vec::new();
    for round in 0..args.rounds {
        let mut order = binaries.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for (label, binary) in &order {
            let (rate, rss) =
                catch_up_binary(binary, &db, &store, target, events, args.page).await?;
            println!(
                "read-model catch-up (order-projector run, {label}, round {}): {rate:.0} events/s, peak RSS {rss:.0} MB",
                round + 1
            );
            figures.push((label, "catch-up", rate, rss));
        }
        for (label, binary) in &order {
            let (rate, rss) = replay_binary(binary, &db, &[], events).await?;
            println!(
                "replay with swap (order-projector replay, {label}, round {}): {rate:.0} events/s, peak RSS {rss:.0} MB",
                round + 1
            );
            figures.push((label, "replay", rate, rss));
        }
    }
    let (rate, rss) = replay_binary(&current, &db, &["--no-bulk"], events).await?;
    println!(
        "replay with swap, generic path (order-projector replay --no-bulk, this build): {rate:.0} events/s, peak RSS {rss:.0} MB"
    );
    if binaries.len() > 1 {
        println!(
            "\n| measurement | this build | baseline | this / baseline |\n|---|---:|---:|---:|"
        );
        for what in ["catch-up", "replay"] {
            let best = |label: &str| {
                figures
                    .iter()
                    .filter(|f| f.0 == label && f.1 == what)
                    .fold((0f64, 0f64), |(r, m), f| (r.max(f.2), m.max(f.3)))
            };
            let (new, old) = (best("this build"), best("baseline"));
            println!(
                "| {what} (best of {}) | {:.0} events/s, {:.0} MB | {:.0} events/s, {:.0} MB | {:.2} |",
                args.rounds,
                new.0,
                new.1,
                old.0,
                old.1,
                new.0 / old.0.max(1.0)
            );
        }
        println!();
    }

    // A team's projection on the generic path: the example sku_sales (no bulk path), rebuilt
    // in process from the whole log.
    crate::checkpoint().await;
    let (_stop, shutdown) = watch::channel(false);
    let report = order_projector::replay::replay(
        &store,
        &Subscription::projection(order_examples::SkuSales::new()),
        &order_projector::replay::ReplayOptions {
            progress: order_projector::replay::Progress::None,
            ..Default::default()
        },
        &shutdown,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "replay with swap of the example sku_sales (generic path, in process): {} events in {:.1}s = {:.0} events/s",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events as f64 / report.elapsed.as_secs_f64()
    );
    if args.projections_only {
        return Ok(());
    }

    // SQS publishing against the emulator.
    let pair = order_testkit::sqs::fifo_queue_pair(5).await;
    let publisher = Publisher::new(order_testkit::sqs::client(), pair.queue_url.clone(), 8);
    let (lease, cursor) = store
        .acquire_lease("sqs_publisher", "bench", Duration::from_secs(600), true)
        .await?
        .context("no lease")?;
    let subscription = Subscription::sink(SqsPublisher::new(publisher).page(500));
    let started = Instant::now();
    let mut cursor = cursor;
    let mut sent = 0usize;
    while sent < args.sqs_events {
        match subscription
            .step(&store, &lease, cursor, &shutdown)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            Step::Progressed {
                cursor: next,
                events,
            } => {
                cursor = next;
                sent += events;
            }
            Step::Idle => break,
        }
    }
    println!(
        "SQS publish (SendMessageBatch of 10, 8 lanes, fauxqs): {sent} events, {:.0} events/s",
        sent as f64 / started.elapsed().as_secs_f64()
    );
    store.release_lease(&lease).await?;
    let _ = order_testkit::sqs::client()
        .delete_queue()
        .queue_url(&pair.queue_url)
        .send()
        .await;

    latency(&args, db.url()).await?;
    Ok(())
}

/// Command acknowledgement to read-model visibility at a steady command rate.
async fn latency(args: &ProjectorArgs, database_url: &str) -> anyhow::Result<()> {
    let free = order_testkit::net::free_addr;
    let (grpc_addr, grpc_admin, projector_admin) = (free()?, free()?, free()?);
    let mut grpc = Command::new(args.binaries.join("order-grpc"))
        .arg("serve")
        // A shell that sourced .dev/env (`scripts/dev up --standby`) names the dev standby
        // here: GetOrder would read another database (see `Server::start_with`).
        .env_remove("ORDER_GRPC_READ_DATABASE_URL")
        .env("DATABASE_URL", database_url)
        .env("ORDER_GRPC_ADDR", grpc_addr.to_string())
        .env("ORDER_ADMIN_ADDR", grpc_admin.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut projector = Command::new(args.binaries.join("order-projector"))
        .arg("run")
        .env("DATABASE_URL", database_url)
        .env("ORDER_ADMIN_ADDR", projector_admin.to_string())
        .env("ORDER_PROJECTOR_SUBSCRIPTIONS", "read_model")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc_addr}"))?
        .connect()
        .await?;
    // Let the projector take its lease and reach the head first.
    let queries = pb::order_query_service_client::OrderQueryServiceClient::new(channel.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;

    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let deadline = Instant::now() + Duration::from_secs(args.latency_seconds);
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut issued = 0u64;
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    while Instant::now() < deadline {
        ticker.tick().await;
        issued += 1;
        let (mut commands, mut queries, sender, failures) = (
            pb::order_service_client::OrderServiceClient::new(channel.clone()),
            queries.clone(),
            sender.clone(),
            failures.clone(),
        );
        tokio::spawn(async move {
            let order = Uuid::new_v4().to_string();
            let request = crate::grpc::place_request(&order, issued);
            let Ok(response) = commands.place_order(request).await else {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            };
            let acknowledged = Instant::now();
            let position = response.into_inner().global_position;
            let read = queries
                .get_order(pb::GetOrderRequest {
                    order_id: order,
                    min_position: Some(position),
                })
                .await;
            if read.is_ok() {
                let _ = sender.send(acknowledged.elapsed());
            } else {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    drop(sender);
    let mut samples = Samples::default();
    while let Some(latency) = receiver.recv().await {
        samples.record(latency);
    }
    println!(
        "command acknowledged -> visible in the read model, at {} PlaceOrder/s for {}s: {} commands, p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms, max {:.1} ms, failures {}",
        args.rate,
        args.latency_seconds,
        samples.count(),
        samples.quantile_ms(0.5),
        samples.quantile_ms(0.99),
        samples.quantile_ms(0.999),
        samples.quantile_ms(1.0),
        failures.load(std::sync::atomic::Ordering::Relaxed),
    );
    let _ = grpc.kill().await;
    let _ = projector.kill().await;
    Ok(())
}

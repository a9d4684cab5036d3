//! `order-demo`: the load of `scripts/demo`. Places orders through the real gRPC API at a
//! steady rate for a bounded time (some out of stock, some declined, some cancelled by the
//! customer), shows live progress (this run's orders by status), waits until every order is
//! settled, and prints a summary with what the projector and the workers report.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Parser;
use order_client::{Client, Command, money, pb};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(about = "Drive demo orders through the order ledger's gRPC API and report what happened")]
struct Args {
    /// The gRPC endpoint.
    #[arg(
        long,
        env = "ORDER_GRPC_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    /// Seconds to place orders for.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Orders placed per second.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// Share of orders with an out-of-stock item (SKU prefix OOS-).
    #[arg(long, default_value_t = 0.05)]
    out_of_stock: f64,
    /// Share of orders whose payment is declined (SKU prefix DECLINE-).
    #[arg(long, default_value_t = 0.05)]
    declined: f64,
    /// Share of orders the customer cancels soon after placing them.
    #[arg(long, default_value_t = 0.05)]
    cancelled: f64,
    /// Seconds to wait, after the last order, for every order to settle.
    #[arg(long, default_value_t = 120)]
    settle_seconds: u64,
    /// Admin address of order-projector, for the summary (lag, SQS messages sent).
    #[arg(long)]
    projector_admin: Option<String>,
    /// Admin address of order-worker, for the summary (DLQ sends).
    #[arg(long)]
    worker_admin: Option<String>,
}

/// A value in [0, 1) from an order number, so that a run's mix is reproducible.
fn fraction(n: u64, salt: u64) -> f64 {
    let hash = (n ^ salt)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(17);
    (hash % 10_000) as f64 / 10_000.0
}

fn place(client: &Client, customer: Uuid, n: u64, args: &Args) -> Command<pb::PlaceOrderRequest> {
    let sku = if fraction(n, 1) < args.out_of_stock {
        format!("OOS-{}", n % 50)
    } else if fraction(n, 2) < args.declined {
        format!("DECLINE-{}", n % 50)
    } else {
        format!("DEMO-{}", n % 50)
    };
    client
        .place_order(customer)
        .line(sku, 1 + (n % 3) as i64, money("EUR", 1999))
        .line("DEMO-GIFTWRAP", 1, money("EUR", 250))
        .ship_to(pb::Address {
            recipient: "Demo Customer".into(),
            line1: "1 Example Street".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
            ..Default::default()
        })
        .shipping_method(pb::ShippingMethod::Standard)
}

const STATUSES: [pb::OrderStatus; 10] = [
    pb::OrderStatus::Placed,
    pb::OrderStatus::InventoryReserved,
    pb::OrderStatus::PaymentAuthorized,
    pb::OrderStatus::Confirmed,
    pb::OrderStatus::Processing,
    pb::OrderStatus::Shipped,
    pb::OrderStatus::Delivered,
    pb::OrderStatus::CancellationPending,
    pb::OrderStatus::Completed,
    pb::OrderStatus::Cancelled,
];

fn short(status: pb::OrderStatus) -> &'static str {
    match status {
        pb::OrderStatus::Placed => "placed",
        pb::OrderStatus::InventoryReserved => "reserved",
        pb::OrderStatus::PaymentAuthorized => "authorized",
        pb::OrderStatus::Confirmed => "confirmed",
        pb::OrderStatus::Processing => "processing",
        pb::OrderStatus::Shipped => "shipped",
        pb::OrderStatus::Delivered => "delivered",
        pb::OrderStatus::CancellationPending => "cancelling",
        pb::OrderStatus::Completed => "completed",
        pb::OrderStatus::Cancelled => "cancelled",
        pb::OrderStatus::Unspecified => "?",
    }
}

/// This run's orders by status (from the read model), and the events they hold.
async fn census(
    client: &Client,
    customer: Uuid,
) -> anyhow::Result<(BTreeMap<&'static str, u64>, u64)> {
    let mut counts = BTreeMap::new();
    let mut events = 0;
    for status in STATUSES {
        let orders = client
            .list_orders()
            .customer(customer)
            .status(status)
            .page_size(500)
            .all(usize::MAX)
            .await?;
        events += orders.iter().map(|o| o.version).sum::<u64>();
        counts.insert(short(status), orders.len() as u64);
    }
    Ok((counts, events))
}

fn render(counts: &BTreeMap<&'static str, u64>) -> String {
    STATUSES
        .iter()
        .map(|s| short(*s))
        .filter(|s| counts.get(s).copied().unwrap_or(0) > 0)
        .map(|s| format!("{s} {}", counts[s]))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// One metric's value from a Prometheus text page (summed over label sets).
async fn metric(admin: &str, name: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::builder()
        .endpoint(args.endpoint.clone())
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let customer = Uuid::new_v4();
    let tty = std::io::stdout().is_terminal();
    println!(
        "placing {} orders/s for {} s (about {:.0}% out of stock, {:.0}% declined, {:.0}% cancelled by the customer); customer {customer}",
        args.rate,
        args.seconds,
        args.out_of_stock * 100.0,
        args.declined * 100.0,
        args.cancelled * 100.0
    );

    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(1) as f64));
    let mut placed = 0u64;
    let mut refused = 0u64;
    let mut last_report = Instant::now();
    let (results, mut outcomes) = tokio::sync::mpsc::unbounded_channel::<bool>();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        ticker.tick().await;
        let n = placed + refused;
        let place = place(&client, customer, n, &args);
        let cancel = fraction(n, 3) < args.cancelled;
        let canceller = client.clone();
        let results = results.clone();
        tokio::spawn(async move {
            let placed = place.await;
            if let (Ok(placed), true) = (&placed, cancel) {
                // The customer changes their mind while the saga runs.
                tokio::time::sleep(Duration::from_millis(30)).await;
                let _ = canceller
                    .cancel_order(placed.order_id, "demo: the customer changed their mind")
                    .await;
            }
            let _ = results.send(placed.is_ok());
        });
        while let Ok(ok) = outcomes.try_recv() {
            if ok { placed += 1 } else { refused += 1 }
        }
        if last_report.elapsed() >= Duration::from_secs(if tty { 1 } else { 5 }) {
            last_report = Instant::now();
            let (counts, _) = census(&client, customer).await?;
            let line = format!(
                "[{:>3}s] placed {placed:>5} | {}",
                started.elapsed().as_secs(),
                render(&counts)
            );
            if tty {
                print!("\r\x1b[2K{line}");
            } else {
                println!("{line}");
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
    }
    drop(results);
    while let Some(ok) = outcomes.recv().await {
        if ok { placed += 1 } else { refused += 1 }
    }
    if tty {
        println!();
    }

    // Let the saga finish every order.
    let settle = Instant::now();
    let (counts, events) = loop {
        let (counts, events) = census(&client, customer).await?;
        let terminal = counts.get("completed").copied().unwrap_or(0)
            + counts.get("cancelled").copied().unwrap_or(0);
        let line = format!(
            "[settling {:>3}s] {} of {placed} settled | {}",
            settle.elapsed().as_secs(),
            terminal,
            render(&counts)
        );
        if terminal >= placed || settle.elapsed() > Duration::from_secs(args.settle_seconds) {
            println!("{line}");
            break (counts, events);
        }
        if tty {
            print!("\r\x1b[2K{line}");
        } else {
            println!("{line}");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(1)).await;
    };

    println!("\nsummary");
    println!("  orders placed:            {placed} (refused by the API: {refused})");
    for status in STATUSES {
        let count = counts.get(short(status)).copied().unwrap_or(0);
        if count > 0 {
            println!("  {:<25} {count}", format!("{}:", short(status)));
        }
    }
    println!("  events written:           {events}");
    if let Some(admin) = &args.projector_admin {
        let sent = metric(admin, "order_sqs_messages_sent_total")
            .await
            .unwrap_or(0.0);
        let lag = metric(admin, "order_projector_lag_events")
            .await
            .unwrap_or(0.0);
        println!("  SQS messages sent:        {sent:.0}");
        println!("  projector lag:            {lag:.0} events (sum over subscriptions)");
    }
    if let Some(admin) = &args.worker_admin {
        let dlq = metric(admin, "order_worker_dlq_sends_total")
            .await
            .unwrap_or(0.0);
        println!("  sent to the DLQ:          {dlq:.0}");
    }
    let terminal = counts.get("completed").copied().unwrap_or(0)
        + counts.get("cancelled").copied().unwrap_or(0);
    anyhow::ensure!(
        terminal == placed,
        "{} orders did not settle within {} s",
        placed - terminal,
        args.settle_seconds
    );
    Ok(())
}

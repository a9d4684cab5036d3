//! Run the example projections in process until they have caught up with the log, then
//! print the best-selling SKUs of each day and the store-credit balances.
//!
//! ```sh
//! scripts/dev up && source .dev/env
//! scripts/demo                              # (or any traffic) so that there are orders
//! DATABASE_URL=$ORDER_PROJECTOR_DATABASE_URL cargo run -p order-examples --example sku_sales
//! ```
//!
//! The first run creates the tables (`orders.sku_sales_daily`, ...) and folds the whole log;
//! later runs continue from their checkpoints. A running `sales-projector` holds the leases:
//! this example then waits as a standby would, and prints once the tables are current.

use std::time::Duration;

use clap::Parser;
use order_examples::{CreditBalances, SkuSales};
use order_projector::Projector;
use order_store::{DatabaseArgs, EventStore};

#[derive(Debug, Parser)]
struct Args {
    /// Rows to print.
    #[arg(long, default_value_t = 10)]
    rows: i64,
    #[command(flatten)]
    database: DatabaseArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The projector reports through `tracing` (a subscription that stops says why in an ERROR
    // line): a process of your own installs a subscriber to see it.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let store = EventStore::new(args.database.store_config("sku-sales-example"))?;
    let started = std::time::SystemTime::now();
    let running = Projector::builder(store.clone())
        .projection(SkuSales::new())
        .projection(CreditBalances)
        // The owner: the default (host, process id, random suffix), unique per process.
        .build()?
        .start();

    // Caught up: each checkpoint past the head of the log as it was when we started, or with
    // nothing after it. Checkpoints follow the order transactions committed in, not positions:
    // on a quiet log a subscription that has everything can rest at a position below the head
    // (an earlier transaction wrote the head's event), so the position alone is not enough.
    let head = store.head_position().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let mut caught_up = true;
        let mut reached = Vec::new();
        for name in ["sku_sales", "credit_balances"] {
            let checkpoint = store.checkpoint(name).await?;
            reached.push(checkpoint.global_position);
            caught_up &= checkpoint.global_position >= head
                || store.first_recorded_after(checkpoint).await?.is_none();
        }
        println!(
            "caught up to {} (sales) and {} (credit) of {head}",
            reached[0], reached[1]
        );
        if caught_up {
            break;
        }
        // A subscription that stopped at an event while we ran will not catch up by waiting:
        // say why. (An error recorded before this run is left from an earlier one: a fixed
        // build clears it as it moves on.)
        for state in store.subscriptions().await? {
            if ["sku_sales", "credit_balances"].contains(&state.name.as_str())
                && state.last_error_at.is_some_and(|at| at >= started)
                && let Some(error) = state.last_error.filter(|e| e.starts_with("stopped"))
            {
                running.stop(Duration::from_secs(30)).await;
                anyhow::bail!("{} stopped: {error}", state.name);
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not caught up in 10 minutes"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    running.stop(Duration::from_secs(30)).await;

    let client = store.pool().get().await?;
    println!("\nbest sellers by day (units sold, revenue, cancelled):");
    for row in client
        .query(
            "SELECT day::text, sku, currency, units_sold, revenue_minor, units_cancelled
             FROM orders.sku_sales_daily ORDER BY day DESC, units_sold DESC LIMIT $1",
            &[&args.rows],
        )
        .await?
    {
        let (day, sku, currency): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let (sold, revenue, cancelled): (i64, i64, i64) = (row.get(3), row.get(4), row.get(5));
        println!(
            "  {day}  {sku:<24} {sold:>6} units  {revenue:>12} {currency} minor  {cancelled:>4} cancelled"
        );
    }
    println!("\nstore credit:");
    for row in client
        .query(
            "SELECT customer_id::text, currency, balance_minor FROM orders.store_credit_balances
             ORDER BY balance_minor DESC LIMIT $1",
            &[&args.rows],
        )
        .await?
    {
        let (customer, currency, balance): (String, String, i64) =
            (row.get(0), row.get(1), row.get(2));
        println!("  {customer}  {balance:>10} {currency} minor");
    }
    Ok(())
}

//! Benchmarks of the order ledger. Each one runs against 127.0.0.1 only, is bounded in time
//! and count, prints its figures and stops by itself. See docs/benchmarks.md.

mod stats;
mod store;

use clap::{Parser, Subcommand};
use order_testkit::pg::TestDatabase;

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of the order ledger (local, bounded, printed figures)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append throughput and latency against the raw-SQL ceiling of the same statement.
    Store(store::StoreArgs),
}

/// A fresh, migrated database on the local cluster (dropped at the end).
pub async fn fresh_database() -> TestDatabase {
    TestDatabase::migrated().await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Store(args) => store::run(args).await,
    }
}

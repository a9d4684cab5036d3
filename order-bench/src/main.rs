//! Benchmarks of the order ledger. Each one runs against 127.0.0.1 only, is bounded in time
//! and count, prints its figures and stops by itself. See docs/benchmarks.md.

mod grpc;
mod hot;
mod import;
mod projector;
mod replica;
mod saga;
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
    /// Append throughput and latency against a plain INSERT and the store's own statement.
    Store(store::StoreArgs),
    /// PlaceOrder through the order-grpc binary against a plain INSERT and the statement.
    Grpc(grpc::GrpcArgs),
    /// Many clients on few orders, through the library and through order-grpc.
    Hot(hot::HotArgs),
    /// Read-model catch-up, replay, SQS publishing and read-your-writes latency on a large log.
    Projector(projector::ProjectorArgs),
    /// Orders settled per second by one worker task with slow HTTP providers, and its RSS.
    Saga(saga::SagaArgs),
    /// Queries with and without a read replica, and PlaceOrder while they run.
    Replica(replica::ReplicaArgs),
    /// A legacy import at volume (order-import), the read model rebuilt from it, and live
    /// PlaceOrder latency beside an import.
    Import(import::ImportArgs),
}

/// A count of at least one (clients, writers, orders, events): zero would measure nothing, or
/// divide by it.
pub(crate) fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A fresh, migrated database on the local cluster (dropped at the end).
///
/// Autovacuum is off for its tables: in a run of seconds the tables are tiny and grow by half
/// every second, so autovacuum would ANALYZE them again and again, and every ANALYZE makes
/// every connection plan its prepared statements anew. A production log (millions of rows)
/// is analyzed rarely; measuring the storm of a toy table would mislead.
pub async fn fresh_database() -> TestDatabase {
    let db = TestDatabase::migrated().await;
    let tuned = db
        .connect()
        .await
        .batch_execute(
            "ALTER TABLE orders.events SET (autovacuum_enabled = false);
             ALTER TABLE orders.commands SET (autovacuum_enabled = false)",
        )
        .await;
    if let Err(e) = tuned {
        eprintln!("could not tune the benchmark database: {e}");
    }
    db
}

/// Flush dirty pages before a measured run, so that no run pays for another's checkpoint
/// (the first change of a page after a checkpoint writes the whole page to the WAL).
pub async fn checkpoint() {
    if let Err(e) = order_testkit::pg::admin()
        .await
        .batch_execute("CHECKPOINT")
        .await
    {
        eprintln!("checkpoint failed: {e}");
    }
}

/// Runs the benchmark; SIGINT or SIGTERM ends it early and stops what it started (its
/// databases, private clusters and servers: their `Drop`s run as the work is dropped).
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    order_faults::until_signal(async {
        grpc::local_cluster().await?;
        match command {
            Command::Store(args) => store::run(args).await,
            Command::Grpc(args) => grpc::run(args).await,
            Command::Hot(args) => hot::run(args).await,
            Command::Projector(args) => projector::run(args).await,
            Command::Saga(args) => saga::run(args).await,
            Command::Replica(args) => replica::run(args).await,
            Command::Import(args) => import::run(args).await,
        }
    })
    .await
}

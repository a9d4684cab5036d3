//! `order-faults`: run the fault scenarios and print their figures.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use order_faults::load::LoadOptions;
use order_faults::scenarios::{self, Scenario};
use order_faults::stack::Binaries;

#[derive(Debug, Parser)]
#[command(
    about = "Inject faults into the running services under load and audit what was acknowledged"
)]
struct Args {
    /// Runs of each scenario (a fresh stack each).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of load per run (the fault comes after a third of it).
    #[arg(long, default_value_t = 12)]
    seconds: u64,
    /// Orders per second.
    #[arg(long, default_value_t = 25)]
    rate: u64,
    /// payment-outage: seconds the payment provider is down (the load goes on through it).
    #[arg(long, default_value_t = 30)]
    outage_seconds: u64,
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// Folder with order-grpc, order-projector and order-worker.
    #[arg(long, default_value = "target/release")]
    binaries: PathBuf,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binaries = Binaries::in_dir(&args.binaries);
    let load = LoadOptions {
        rate: args.rate,
        duration: Duration::from_secs(args.seconds),
        outage: Duration::from_secs(args.outage_seconds),
        ..LoadOptions::default()
    };
    let chosen = if args.scenario.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenario.clone()
    };
    let (reports, failed) = order_faults::until_signal(async {
        let mut reports = Vec::new();
        let mut failed = false;
        for scenario in chosen {
            eprintln!("[faults] {} x{}", scenario.name(), args.rounds);
            match scenarios::run(scenario, &binaries, args.rounds, &load).await {
                Ok(report) => {
                    failed |= !report.clean();
                    reports.push(report);
                }
                Err(error) => {
                    eprintln!("[faults] {}: FAILED: {error:#}", scenario.name());
                    failed = true;
                }
            }
        }
        Ok((reports, failed))
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!(
            "| scenario | runs | commands acknowledged | lost | duplicated | skipped events | of which not in SQS | unsettled orders | dead letters | failed attempts (retried) | slowest failure | max time to recover | notes |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in &reports {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ms | {:.1} s | {} |",
                r.scenario.name(),
                r.runs,
                r.acknowledged,
                r.lost,
                r.duplicated,
                r.skipped,
                r.unsent,
                r.unsettled,
                r.dead_letters,
                r.failed_attempts,
                r.slowest_failure_ms,
                r.max_recovery_seconds,
                r.condensed_notes().join("; ")
            );
        }
    }
    anyhow::ensure!(
        !failed,
        "a scenario lost, doubled or skipped something, or failed"
    );
    Ok(())
}

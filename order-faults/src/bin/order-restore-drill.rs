//! `order-restore-drill`: rehearse a point-in-time restore of the event log end to end and
//! print the time each step took and the audit (`scripts/restore-drill`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use order_faults::drill::{self, DrillOptions};
use order_faults::load::LoadOptions;
use order_faults::stack::Binaries;

#[derive(Debug, Parser)]
#[command(
    about = "Restore the event log to a point in time after a destructive mistake, rebuild, republish, and audit"
)]
struct Args {
    /// Seconds of load before the damage (the target time is two thirds in).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=3600))]
    seconds: u64,
    /// Orders per second.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    rate: u64,
    /// Commands the buggy client sends after the target.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(2..=10_000))]
    buggy_commands: u64,
    /// Folder with order-grpc, order-projector and order-worker.
    #[arg(long, default_value = "target/release")]
    binaries: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = DrillOptions {
        load: LoadOptions {
            rate: args.rate,
            duration: Duration::from_secs(args.seconds),
            ..LoadOptions::default()
        },
        buggy_commands: usize::try_from(args.buggy_commands)?,
        ..DrillOptions::default()
    };
    let report =
        order_faults::until_signal(drill::run(&Binaries::in_dir(&args.binaries), &options)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    anyhow::ensure!(report.clean(), "the restore drill found a problem");
    Ok(())
}

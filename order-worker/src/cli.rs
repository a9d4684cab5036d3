//! `order-worker`: consume order events and drive the fulfillment saga (default), or probe
//! readiness.

use crate::{App, RunArgs};
use clap::{Parser, Subcommand};
use order_runtime::{cli, probe, shutdown, telemetry};

const NAME: &str = "order-worker";

#[derive(Debug, Parser)]
#[command(
    name = NAME,
    version,
    about = "The order ledger's worker: drives each order's fulfillment saga from the SQS queue"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume the orders queue and drive the saga (the default).
    Run(Box<RunArgs>),
    /// Exit 0 when the admin readiness endpoint answers 200 (for container health checks).
    Healthcheck {
        /// The URL to probe; default: /readyz on ORDER_ADMIN_ADDR.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, env = "ORDER_ADMIN_ADDR", default_value = "127.0.0.1:9466")]
        admin_addr: String,
    },
}

/// The binary's entry point (also linked into order-e2e's test binaries).
pub fn main() {
    // `order-worker` alone (or with only flags) means `order-worker run`.
    let mut args: Vec<String> = std::env::args().collect();
    let known = [
        "run",
        "healthcheck",
        "help",
        "-h",
        "--help",
        "-V",
        "--version",
    ];
    if args.get(1).is_none_or(|a| !known.contains(&a.as_str())) {
        args.insert(1, "run".to_owned());
    }
    let parsed = match Cli::try_parse_from(&args) {
        Ok(parsed) => parsed,
        Err(error) => match error.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                error.exit()
            }
            _ => cli::fail(NAME, &error.render().to_string()),
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => cli::fail(NAME, &format!("cannot start the runtime: {e}")),
    };
    std::process::exit(runtime.block_on(execute(parsed.command)));
}

async fn execute(command: Command) -> i32 {
    match command {
        Command::Run(args) => {
            if let Err(why) = args.validate() {
                cli::fail(NAME, &why);
            }
            telemetry::init(NAME, args.log_format);
            match App::start(*args).await {
                Ok(app) => {
                    app.run_until(shutdown::signal()).await;
                    order_runtime::trace::shutdown();
                    0
                }
                Err(e) => cli::fail(NAME, &format!("{e:#}")),
            }
        }
        Command::Healthcheck { url, admin_addr } => {
            let url = url.unwrap_or_else(|| format!("http://{admin_addr}/readyz"));
            probe::run(&url).await
        }
    }
}

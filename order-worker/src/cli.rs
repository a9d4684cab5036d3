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
        /// The URL to probe; default: /readyz on ORDER_ADMIN_ADDR (readiness). A container
        /// health check passes `/healthz`, liveness: an outage of SQS or order-grpc must not
        /// get the task killed.
        #[arg(long, env = "ORDER_HEALTHCHECK_URL")]
        url: Option<String>,
        /// The admin address of the instance to probe.
        #[arg(long, env = "ORDER_ADMIN_ADDR", default_value = "127.0.0.1:9466")]
        admin_addr: String,
    },
}

/// The binary's entry point (also linked into order-e2e's test binaries).
pub fn main() {
    let parsed: Cli = cli::parse_or_default(NAME, "run");
    let runtime = cli::runtime(NAME);
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_setting_of_every_subcommand_has_an_environment_variable() {
        let missing = order_runtime::cli::settings_without_environment(&super::Cli::command());
        let undocumented = order_runtime::cli::settings_without_help(&super::Cli::command());
        assert!(
            undocumented.is_empty(),
            "no description in --help: {undocumented:?}"
        );
        assert!(missing.is_empty(), "no environment variable: {missing:?}");
        let not_boolish = order_runtime::cli::booleans_not_boolish(&super::Cli::command());
        assert!(
            not_boolish.is_empty(),
            "booleans without --flag=false and yes/no/1/0: {not_boolish:?}"
        );
    }
}

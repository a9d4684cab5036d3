//! `order-projector`: run the subscriptions (default), rebuild a projection, re-send a range
//! to SQS, show status, or probe readiness.

use crate::config::{QueueArgs, RunArgs, default_instance_id, sqs_client};
use crate::replay::{Progress, ReplayOptions};
use crate::sqs::Publisher;
use crate::startup::App;
use clap::{Parser, Subcommand};
use order_runtime::{cli, probe, shutdown, telemetry};
use order_store::{DatabaseArgs, EventStore};

const NAME: &str = "order-projector";

#[derive(Debug, Parser)]
#[command(name = NAME, version, about = "The order ledger's projector: read models, SQS, replay")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Follow the log into the read model and SQS (the default).
    Run(Box<RunArgs>),
    /// Rebuild a projection from position 0 into shadow tables and swap it in.
    Replay {
        /// The projection to rebuild (read_model).
        #[arg(long)]
        projection: String,
        #[command(flatten)]
        database: DatabaseArgs,
        /// Orders folded in memory before they are written out (bounds memory).
        #[arg(long, default_value_t = 250_000)]
        batch_orders: usize,
        /// Events per read.
        #[arg(long, default_value_t = 5_000)]
        page: u32,
        /// Progress display.
        #[arg(long, value_enum, default_value = "auto")]
        progress: Progress,
        #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
        log_format: telemetry::LogFormat,
    },
    /// Send events with FROM <= position <= TO to SQS again (same deduplication ids).
    Republish {
        /// First global position to send again.
        #[arg(long)]
        from: u64,
        /// Default: the current head of the log.
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        queue: QueueArgs,
        #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
        log_format: telemetry::LogFormat,
    },
    /// Head of the log, and each subscription's checkpoint, lag, owner and last error.
    Status {
        #[command(flatten)]
        database: DatabaseArgs,
        /// JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when the admin readiness endpoint answers 200 (for container health checks).
    Healthcheck {
        #[arg(long)]
        url: Option<String>,
        #[arg(long, env = "ORDER_ADMIN_ADDR", default_value = "127.0.0.1:9465")]
        admin_addr: String,
    },
}

/// The binary's entry point (also linked into order-e2e's test binaries).
pub fn main() {
    let parsed: Cli = cli::parse_or_default(NAME, "run");
    let runtime = cli::runtime(NAME);
    std::process::exit(runtime.block_on(execute(parsed.command)));
}

fn store(database: &DatabaseArgs, role: &str) -> EventStore {
    match EventStore::new(database.store_config(role)) {
        Ok(store) => store,
        Err(e) => cli::fail(NAME, &e.to_string()),
    }
}

async fn execute(command: Command) -> i32 {
    match command {
        Command::Run(args) => {
            telemetry::init(NAME, args.log_format);
            if let Err(why) = args.validate() {
                cli::fail(NAME, &why);
            }
            match App::start(*args).await {
                Ok(app) => {
                    app.run_until(shutdown::signal()).await;
                    order_runtime::trace::shutdown();
                    0
                }
                Err(e) => cli::fail(NAME, &format!("{e:#}")),
            }
        }
        Command::Replay {
            projection,
            database,
            batch_orders,
            page,
            progress,
            log_format,
        } => {
            telemetry::init_logging(log_format);
            let store = store(&database, "order-projector-replay");
            let options = ReplayOptions {
                projection,
                owner: format!("replay-{}", default_instance_id()),
                batch_orders: batch_orders.max(1),
                page: page.max(1),
                progress,
                lease_ttl: std::time::Duration::from_secs(60),
            };
            match crate::replay::replay(&store, &options).await {
                Ok(report) => {
                    println!(
                        "replayed {} events into {} orders in {:.1}s ({:.0} events/s); checkpoint {}",
                        report.events,
                        report.orders,
                        report.elapsed.as_secs_f64(),
                        report.events as f64 / report.elapsed.as_secs_f64().max(0.001),
                        report.checkpoint
                    );
                    0
                }
                Err(e) => {
                    eprintln!("{NAME}: replay failed: {e} (the live read model is unchanged)");
                    1
                }
            }
        }
        Command::Republish {
            from,
            to,
            database,
            queue,
            log_format,
        } => {
            telemetry::init_logging(log_format);
            let Some(url) = queue.orders_queue_url.clone() else {
                cli::fail(
                    NAME,
                    "republish needs --orders-queue-url (ORDERS_QUEUE_URL)",
                );
            };
            let store = store(&database, "order-projector-republish");
            let through = match to {
                Some(to) => to,
                None => match store.head_position().await {
                    Ok(head) => head,
                    Err(e) => cli::fail(NAME, &e.to_string()),
                },
            };
            let publisher = Publisher::new(sqs_client().await, url, usize::from(queue.sqs_lanes));
            let (_stop, shutdown) = tokio::sync::watch::channel(false);
            match crate::republish::republish(&store, &publisher, from, through, &shutdown).await {
                Ok(sent) => {
                    println!("republished {sent} events (positions {from}..={through})");
                    0
                }
                Err(e) => {
                    eprintln!("{NAME}: republish failed: {e:#}");
                    1
                }
            }
        }
        Command::Status { database, json } => {
            let store = store(&database, "order-projector-status");
            match crate::status::collect(&store).await {
                Ok(status) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&status).unwrap_or_default()
                        );
                    } else {
                        print!("{}", crate::status::render(&status));
                    }
                    0
                }
                Err(e) => {
                    eprintln!("{NAME}: status failed: {e}");
                    1
                }
            }
        }
        Command::Healthcheck { url, admin_addr } => {
            let url = url.unwrap_or_else(|| format!("http://{admin_addr}/readyz"));
            probe::run(&url).await
        }
    }
}

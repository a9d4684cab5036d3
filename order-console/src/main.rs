//! `order-console`: the health board. See the library documentation.

use order_console::Console;
use order_console::config::{Cli, Command};
use order_runtime::{cli, telemetry};

const NAME: &str = "order-console";

fn main() {
    let args: Cli = cli::parse(NAME);
    let runtime = cli::runtime(NAME);
    let code = runtime.block_on(async move {
        match args.command {
            Command::Healthcheck { url, addr } => {
                order_runtime::probe::run(&url.unwrap_or_else(|| format!("http://{addr}/readyz")))
                    .await
            }
            Command::Serve(serve) => {
                let settings = serve
                    .settings()
                    .unwrap_or_else(|message| cli::fail(NAME, &message));
                telemetry::init(NAME, serve.log_format);
                let console = match Console::build(settings).await {
                    Ok(console) => console,
                    Err(error) => cli::fail(NAME, &error.to_string()),
                };
                tracing::info!(addr = %console.addr(), "order-console serving");
                // Printed for scripts/demo and people: where to look.
                println!("order-console: http://{}/", console.addr());
                match console.run_until(order_runtime::shutdown::signal()).await {
                    Ok(()) => {
                        tracing::info!("order-console stopped");
                        0
                    }
                    Err(error) => {
                        tracing::error!(%error, "order-console stopped");
                        1
                    }
                }
            }
        }
    });
    std::process::exit(code);
}

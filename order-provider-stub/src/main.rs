//! `order-provider-stub`: the stub inventory, payment and shipping providers on one port, for
//! `scripts/demo --providers http` and for trying the HTTP adapters by hand.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use order_provider_stub::{FaultPlan, PROVIDERS, Stub, StubOptions};

/// Stub providers (docs/providers/*.yaml) under /inventory, /payment and /shipping.
#[derive(Debug, Parser)]
#[command(name = "order-provider-stub", version)]
struct Args {
    /// Listen address.
    #[arg(
        long,
        env = "ORDER_PROVIDER_STUB_ADDR",
        default_value = "127.0.0.1:9471"
    )]
    addr: SocketAddr,
    /// Bearer token every request must carry (default: none).
    #[arg(long, env = "ORDER_PROVIDER_STUB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Seconds from shipment to delivery.
    #[arg(
        long,
        env = "ORDER_PROVIDER_STUB_DELIVERY_SECONDS",
        default_value_t = 0.0
    )]
    delivery_seconds: f64,
    /// Latency added to every request, in ms (all three providers).
    #[arg(long, env = "ORDER_PROVIDER_STUB_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Latency added to payment requests only, in ms (overrides --latency-ms for payment).
    #[arg(long, env = "ORDER_PROVIDER_STUB_PAYMENT_LATENCY_MS")]
    payment_latency_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = order_runtime::cli::parse_with_footer(
        "order-provider-stub",
        order_runtime::cli::LOG_ENVIRONMENT_HELP,
    );
    if let Err(why) = order_runtime::telemetry::init_tool_logging() {
        eprintln!("order-provider-stub: error: {why}");
        std::process::exit(2);
    }
    if !(0.0..=86_400.0).contains(&args.delivery_seconds) {
        eprintln!("order-provider-stub: error: --delivery-seconds must be 0-86400");
        std::process::exit(2);
    }
    let stub = Stub::start(
        args.addr,
        StubOptions {
            token: args.token.clone().filter(|t| !t.is_empty()),
            delivery_after: Duration::from_secs_f64(args.delivery_seconds),
            ..StubOptions::default()
        },
    )
    .await?;
    for provider in PROVIDERS {
        let latency_ms = match (provider, args.payment_latency_ms) {
            ("payment", Some(ms)) => ms,
            _ => args.latency_ms,
        };
        stub.set_faults(
            provider,
            &FaultPlan {
                latency_ms,
                ..FaultPlan::default()
            },
        );
    }
    tracing::info!(
        addr = %stub.addr(),
        inventory = %stub.base_url("inventory"),
        payment = %stub.base_url("payment"),
        shipping = %stub.base_url("shipping"),
        "order-provider-stub serving"
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    stub.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_setting_has_an_environment_variable() {
        let missing = order_runtime::cli::settings_without_environment(&super::Args::command());
        let undocumented = order_runtime::cli::settings_without_help(&super::Args::command());
        assert!(
            undocumented.is_empty(),
            "no description in --help: {undocumented:?}"
        );
        assert!(missing.is_empty(), "no environment variable: {missing:?}");
        let not_boolish = order_runtime::cli::booleans_not_boolish(&super::Args::command());
        assert!(
            not_boolish.is_empty(),
            "booleans without --flag=false and yes/no/1/0: {not_boolish:?}"
        );
    }
}

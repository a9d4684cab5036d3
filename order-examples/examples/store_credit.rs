//! Grant and spend a customer's store credit against the local environment: the second
//! aggregate beside orders, through the same command handler, in the same log.
//!
//! ```sh
//! scripts/dev up && source .dev/env
//! DATABASE_URL=$ORDER_GRPC_DATABASE_URL cargo run -p order-examples --example store_credit -- \
//!     --grant 2000 --spend 1500
//! ```
//!
//! Run it twice with the same `--customer` and the balance carries over; spend more than the
//! balance and the command is refused (nothing is written).

use anyhow::Context;
use clap::Parser;
use order_domain::{Currency, Metadata, Money};
use order_examples::{StoreCredit, StoreCreditCommand};
use order_store::{CommandContext, CommandHandler, DatabaseArgs, EventStore, HandleError};
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    /// The customer (default: a new one).
    #[arg(long)]
    customer: Option<Uuid>,
    /// ISO-4217 currency of the amounts.
    #[arg(long, default_value = "EUR")]
    currency: String,
    /// Credit to grant, in minor units (0: none).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(i64).range(0..))]
    grant: i64,
    /// Credit to spend on a new order, in minor units (0: none).
    #[arg(long, default_value_t = 1_500, value_parser = clap::value_parser!(i64).range(0..))]
    spend: i64,
    #[command(flatten)]
    database: DatabaseArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = EventStore::new(args.database.store_config("store-credit-example"))?;
    let credit = CommandHandler::<StoreCredit>::new(store.clone(), 5);
    let customer = args.customer.unwrap_or_else(Uuid::new_v4);
    let currency = Currency::parse(&args.currency).context("--currency")?;
    let money = |minor| Money::new(currency, minor).context("amount");
    let context = || CommandContext {
        command_id: Uuid::new_v4(),
        expected_version: None,
        metadata: Metadata {
            correlation_id: Some("store-credit-example".into()),
            ..Metadata::default()
        },
    };

    let mut commands = Vec::new();
    if args.grant > 0 {
        commands.push(StoreCreditCommand::grant(
            money(args.grant)?,
            "example: late delivery",
        )?);
    }
    if args.spend > 0 {
        commands.push(StoreCreditCommand::spend(
            money(args.spend)?,
            Uuid::new_v4(),
        )?);
    }
    for command in &commands {
        match credit.handle(customer, command, &context()).await {
            Ok(done) => println!(
                "{command:?}: stream version {}, log position {}, now {}",
                done.stream_version, done.global_position, done.status
            ),
            Err(HandleError::Rejected(why)) => println!("{command:?}: refused: {why}"),
            Err(HandleError::Store(error)) => return Err(error.into()),
        }
    }

    // The account as its events say (the credit_balances projection shows the same once the
    // sales-projector has caught up).
    let history = store.read_stream(customer, 0).await?;
    let mut account = StoreCredit::default();
    for stored in &history {
        anyhow::ensure!(
            stored.category == "store_credit",
            "stream {customer} is not a store-credit account"
        );
        let event = stored.decode::<order_examples::StoreCreditEvent>()?.event;
        order_domain::Aggregate::evolve(&mut account, &event);
    }
    match account.balance() {
        Some(balance) => println!(
            "customer {customer}: balance {balance} after {} events",
            history.len()
        ),
        None => println!("customer {customer}: no store credit"),
    }
    Ok(())
}

//! `order-bench hot`: many clients on few orders. Each client refunds one cent of its order
//! again and again, without `expected_version` (each refund is valid on its own), retrying a
//! command with the same command id when the service answers that it may succeed later
//! (ABORTED, UNAVAILABLE, RESOURCE_EXHAUSTED). Through the library (a command handler in this
//! process) and through the order-grpc binary, in the same run; each on a fresh database.
//! Reports acknowledged commands per second, the share of commands that needed a client
//! retry, and the deadlocks PostgreSQL counted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_domain::es::Metadata;
use order_domain::order::{LineInput, PlaceOrder, PlaceOrderInput};
use order_domain::values::{AddressInput, ShippingMethod};
use order_domain::{Order, OrderCommand};
use order_proto::v1 as pb;
use order_proto::v1::order_service_client::OrderServiceClient;
use order_store::{CommandContext, CommandHandler, EventStore, HandleError, StoreConfig};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::grpc::{Server, context_switches, cpu_seconds, postgres_cpu_seconds};
use crate::stats::Samples;

#[derive(Debug, clap::Args)]
pub struct HotArgs {
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Concurrent clients, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64], value_parser = crate::at_least_one)]
    clients: Vec<usize>,
    /// How many orders the clients share (client i works on order i mod this).
    #[arg(long, default_value_t = 8, value_parser = crate::at_least_one)]
    orders: usize,
    /// The order-grpc binary (build it with `cargo build --release -p order-grpc`).
    #[arg(long, default_value = "target/release/order-grpc")]
    server: PathBuf,
    /// Microseconds without a new append that end a library batch's gathering of the callers
    /// just answered (default: the library's, 20; 0 = no gathering).
    #[arg(long)]
    group_commit_gather_us: Option<u64>,
}

/// 1,000 x 1,000.00 EUR: room for a hundred million one-cent refunds.
const QUANTITY: i64 = 1000;
const UNIT_MINOR: i64 = 100_000;
const TOTAL_MINOR: i64 = QUANTITY * UNIT_MINOR;

#[derive(Default)]
struct Outcome {
    samples: Samples,
    retries: u64,
    errors: u64,
    /// Commands still refused as "try again" this long past the run's end: the server or the
    /// database is gone (a retry loop without this bound would never end).
    abandoned: u64,
    /// The last answer of an abandoned command.
    last_refusal: Option<String>,
    elapsed: Duration,
}

/// How long past the run's end a command may still be retried.
const RETRY_PAST_THE_END: Duration = Duration::from_secs(10);

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.samples.merge(other.samples);
        self.retries += other.retries;
        self.errors += other.errors;
        self.abandoned += other.abandoned;
        if other.last_refusal.is_some() {
            self.last_refusal = other.last_refusal;
        }
    }

    /// Whether a command refused with `refusal` is given up (counted as abandoned) rather
    /// than retried: the run ended [`RETRY_PAST_THE_END`] ago.
    fn gives_up(&mut self, deadline: Instant, refusal: impl FnOnce() -> String) -> bool {
        if Instant::now() < deadline + RETRY_PAST_THE_END {
            return false;
        }
        self.abandoned += 1;
        self.last_refusal = Some(refusal());
        true
    }

    /// The outcome, or an error when commands were abandoned: the figures would not be of
    /// the workload asked for.
    fn checked(self, path: &str) -> anyhow::Result<Self> {
        if self.abandoned > 0 {
            anyhow::bail!(
                "{path}: {} commands were still refused {RETRY_PAST_THE_END:?} after the run's \
                 end (the last: {}); is the server or the database down?",
                self.abandoned,
                self.last_refusal.as_deref().unwrap_or("?")
            );
        }
        Ok(self)
    }
}

fn place_domain() -> anyhow::Result<OrderCommand> {
    let place = PlaceOrder::parse(&PlaceOrderInput {
        customer_id: "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001",
        lines: vec![LineInput {
            sku: "SKU-HOT",
            quantity: QUANTITY,
            currency: "EUR",
            unit_price_minor: UNIT_MINOR,
        }],
        shipping_address: Some(AddressInput {
            recipient: "Ada Lovelace",
            line1: "12 St James's Square",
            city: "London",
            postal_code: "SW1Y 4JH",
            country: "GB",
            ..AddressInput::default()
        }),
        shipping_method: Some(ShippingMethod::Express),
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(OrderCommand::PlaceOrder(place))
}

fn context() -> CommandContext {
    CommandContext {
        command_id: Uuid::new_v4(),
        expected_version: None,
        metadata: Metadata {
            correlation_id: Some("bench".to_owned()),
            ..Metadata::default()
        },
    }
}

async fn library(
    store: &EventStore,
    clients: usize,
    orders: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let handler = CommandHandler::<Order>::new(store.clone(), 5);
    let mut ids = Vec::new();
    for _ in 0..orders {
        let order = Uuid::new_v4();
        for command in [
            place_domain()?,
            OrderCommand::reserve_inventory("r-1").map_err(|e| anyhow::anyhow!("{e}"))?,
            OrderCommand::authorize_payment("p-1", "EUR", TOTAL_MINOR)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            OrderCommand::ConfirmOrder,
        ] {
            handler
                .handle(order, &command, &context())
                .await
                .map_err(|e| anyhow::anyhow!("setting up: {e}"))?;
        }
        ids.push(order);
    }
    let refund = OrderCommand::refund_payment("EUR", 1).map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (handler, refund, order) = (handler.clone(), refund.clone(), ids[i % orders]);
            tokio::spawn(async move {
                let mut out = Outcome::default();
                while Instant::now() < deadline {
                    let context = context();
                    let op = Instant::now();
                    loop {
                        match handler.handle(order, &refund, &context).await {
                            Ok(_) => {
                                out.samples.record(op.elapsed());
                                break;
                            }
                            Err(HandleError::Store(e)) if e.is_transient() => {
                                if out.gives_up(deadline, || e.to_string()) {
                                    break;
                                }
                                out.retries += 1;
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            Err(_) => {
                                out.errors += 1;
                                break;
                            }
                        }
                    }
                }
                out
            })
        })
        .collect();
    let mut total = Outcome::default();
    for task in tasks {
        total.merge(task.await?);
    }
    total.elapsed = started.elapsed();
    total.checked("library")
}

async fn grpc_setup(client: &mut OrderServiceClient<Channel>) -> anyhow::Result<String> {
    let order = Uuid::new_v4().to_string();
    let eur = |amount_minor| {
        Some(pb::Money {
            currency: "EUR".into(),
            amount_minor,
        })
    };
    let mut place = crate::grpc::place_request(&order, 0);
    place.lines = vec![pb::OrderLine {
        sku: "SKU-HOT".into(),
        quantity: QUANTITY,
        unit_price: eur(UNIT_MINOR),
    }];
    client.place_order(place).await?;
    client
        .reserve_inventory(pb::ReserveInventoryRequest {
            command_id: Uuid::new_v4().to_string(),
            order_id: order.clone(),
            expected_version: None,
            reservation_id: "r-1".into(),
        })
        .await?;
    client
        .authorize_payment(pb::AuthorizePaymentRequest {
            command_id: Uuid::new_v4().to_string(),
            order_id: order.clone(),
            expected_version: None,
            payment_id: "p-1".into(),
            amount: eur(TOTAL_MINOR),
        })
        .await?;
    client
        .confirm_order(pb::ConfirmOrderRequest {
            command_id: Uuid::new_v4().to_string(),
            order_id: order.clone(),
            expected_version: None,
        })
        .await?;
    Ok(order)
}

async fn grpc(
    server: &Server,
    clients: usize,
    orders: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let mut channels = Vec::new();
    for _ in 0..clients {
        channels.push(
            Channel::from_shared(format!("http://{}", server.addr))?
                .connect()
                .await?,
        );
    }
    let mut setup = OrderServiceClient::new(channels[0].clone());
    let mut ids = Vec::new();
    for _ in 0..orders {
        ids.push(grpc_setup(&mut setup).await?);
    }
    let ids = Arc::new(ids);
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = channels
        .into_iter()
        .enumerate()
        .map(|(i, channel)| {
            let ids = ids.clone();
            tokio::spawn(async move {
                let mut client = OrderServiceClient::new(channel);
                let mut out = Outcome::default();
                let order = ids[i % ids.len()].clone();
                while Instant::now() < deadline {
                    let request = pb::RefundPaymentRequest {
                        command_id: Uuid::new_v4().to_string(),
                        order_id: order.clone(),
                        expected_version: None,
                        amount: Some(pb::Money {
                            currency: "EUR".into(),
                            amount_minor: 1,
                        }),
                    };
                    let op = Instant::now();
                    loop {
                        match client.refund_payment(request.clone()).await {
                            Ok(_) => {
                                out.samples.record(op.elapsed());
                                break;
                            }
                            Err(status)
                                if matches!(
                                    status.code(),
                                    Code::Aborted | Code::Unavailable | Code::ResourceExhausted
                                ) =>
                            {
                                if out.gives_up(deadline, || status.to_string()) {
                                    break;
                                }
                                out.retries += 1;
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            Err(_) => {
                                out.errors += 1;
                                break;
                            }
                        }
                    }
                }
                out
            })
        })
        .collect();
    let mut total = Outcome::default();
    for task in tasks {
        total.merge(task.await?);
    }
    total.elapsed = started.elapsed();
    total.checked("gRPC")
}

/// Deadlocks PostgreSQL counted in `database` (call after its sessions ended: a backend
/// flushes its statistics when it exits).
async fn deadlocks(database: &str) -> i64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let admin = order_testkit::pg::admin().await;
    let _ = admin.batch_execute("SELECT pg_stat_clear_snapshot()").await;
    admin
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1)
}

fn database_name(url: &str) -> String {
    url.rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .unwrap_or_default()
        .to_owned()
}

fn report(
    through: &str,
    clients: usize,
    orders: usize,
    mut out: Outcome,
    deadlocks: i64,
    cpu: &str,
) {
    let ok = out.samples.count();
    println!(
        "{:>8} {:>7} {:>6} | {:>9.0} {:>7.2} {:>7.2} {:>8.2} | {:>8.2}% {:>6} | {:>9} | {cpu}",
        through,
        clients,
        orders,
        ok as f64 / out.elapsed.as_secs_f64(),
        out.samples.quantile_ms(0.5),
        out.samples.quantile_ms(0.99),
        out.samples.quantile_ms(1.0),
        out.retries as f64 * 100.0 / ok.max(1) as f64,
        out.errors,
        deadlocks,
    );
}

pub async fn run(args: HotArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let orders = args.orders.max(1);
    println!(
        "order-bench hot: {}s per run; clients refund one cent of one of {orders} orders, back to back, retrying (same command id) on ABORTED/UNAVAILABLE/RESOURCE_EXHAUSTED",
        args.seconds
    );
    println!(
        "library = CommandHandler in this process (pool = clients); grpc = {} with default settings, pool = clients\n",
        args.server.display()
    );
    println!(
        "{:>8} {:>7} {:>6} | {:>9} {:>7} {:>7} {:>8} | {:>9} {:>6} | {:>9} | CPU",
        "through",
        "clients",
        "orders",
        "ok cmd/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "retried",
        "errors",
        "deadlocks"
    );
    for &clients in &args.clients {
        {
            let db = crate::fresh_database().await;
            let name = database_name(db.url());
            let mut config = StoreConfig::new(db.url());
            config.pool_size = clients;
            config.pool_wait_timeout = Duration::from_secs(5);
            if let Some(gather) = args.group_commit_gather_us {
                config.group_commit_gather = Duration::from_micros(gather);
            }
            let store = EventStore::new(config)?;
            let cpu_before = (cpu_seconds(std::process::id()), postgres_cpu_seconds());
            let out = library(&store, clients, orders, duration).await?;
            let cpu_after = (cpu_seconds(std::process::id()), postgres_cpu_seconds());
            let commands = out.samples.count().max(1) as f64;
            let cpu = format!(
                "process {:.0} us, PostgreSQL {:.0} us per command",
                (cpu_after.0 - cpu_before.0) / commands * 1e6,
                (cpu_after.1 - cpu_before.1) / commands * 1e6
            );
            drop(store);
            let deadlocks = deadlocks(&name).await;
            report("library", clients, orders, out, deadlocks, &cpu);
        }
        {
            let db = crate::fresh_database().await;
            let name = database_name(db.url());
            let server = Server::start(&args.server, db.url(), clients).await?;
            let pid = server.pid();
            let before = (
                cpu_seconds(pid),
                postgres_cpu_seconds(),
                context_switches(pid),
            );
            let out = grpc(&server, clients, orders, duration).await?;
            let after = (
                cpu_seconds(pid),
                postgres_cpu_seconds(),
                context_switches(pid),
            );
            drop(server);
            let commands = out.samples.count().max(1) as f64;
            let cpu = format!(
                "server {:.0} us, PostgreSQL {:.0} us per command; server context switches {:.2}",
                (after.0 - before.0) / commands * 1e6,
                (after.1 - before.1) / commands * 1e6,
                (after.2 - before.2) as f64 / commands
            );
            let deadlocks = deadlocks(&name).await;
            report("grpc", clients, orders, out, deadlocks, &cpu);
        }
    }
    Ok(())
}

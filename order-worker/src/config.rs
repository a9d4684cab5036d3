//! `order-worker run` settings: flags with environment fallbacks (`--help` lists them all).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use order_runtime::telemetry::LogFormat;

use crate::backoff::Backoff;
use crate::breaker::BreakerSettings;
use crate::consumer::ConsumerSettings;
use crate::process::DeliverySettings;
use crate::providers::guard::GuardSettings;
use crate::providers::http::{HttpSettings, HttpVersion, Pem, ProviderEndpoint};
use crate::providers::simulated::SimulationSettings;

/// The only worker mode there is.
pub const SQS_CONSUMER: &str = "sqs-consumer";

/// The most messages a worker works on at once, whatever its memory.
pub const MAX_CONCURRENCY: usize = 1000;
/// The fewest, whatever its memory.
pub const MIN_AUTO_CONCURRENCY: usize = 16;
/// Memory budgeted per message in flight when the concurrency is derived from the memory
/// limit (measured: `order-bench saga` reports the worker's RSS at full concurrency).
pub const MEMORY_PER_MESSAGE: u64 = 128 * 1024;
/// Memory set aside for everything but the messages in flight.
pub const BASE_MEMORY: u64 = 64 * 1024 * 1024;

/// The longest one message may be worked on: SQS extends a message's visibility up to 12
/// hours from its receipt, less an hour's margin (the heartbeat renews every third of the
/// visibility timeout; a message kept past it is taken by another worker meanwhile).
pub const LONGEST_HANDLING: Duration = Duration::from_secs(11 * 3600);

/// The most provider calls one message makes one after another: a cancellation's release
/// and its void refused `already_captured` then refunded, each decided up to
/// [`crate::process::REDECIDE_ATTEMPTS`] (3) times: 3 x (1 + 2). (A forward step: 3 calls
/// and its undo, 4.)
pub const PROVIDER_CALLS_PER_MESSAGE: u32 = 9;

/// The most gRPC calls one message makes: per step (two for a cancellation), its log read and
/// up to [`crate::process::REDECIDE_ATTEMPTS`] commands each followed by a read: 2 x (1 + 2 x 3).
pub const GRPC_CALLS_PER_MESSAGE: u32 = 14;

/// Which adapters stand behind the inventory, payment and shipping ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderKind {
    /// The built-in simulation (`ORDER_WORKER_SIM_*`).
    Simulated,
    /// HTTP/JSON services (`ORDER_PROVIDER_*`; contracts in `docs/providers/`).
    Http,
}

/// One HTTP provider's settings, as parsed (the endpoint is built by [`HttpArgs`]).
macro_rules! provider_args {
    ($name:ident, $heading:literal, $url:literal, $token:literal, $cert:literal, $cert_file:literal, $ca:literal, $ca_file:literal,
     $f_url:ident, $f_token:ident, $f_cert:ident, $f_cert_file:ident, $f_ca:ident, $f_ca_file:ident) => {
        /// Settings of one HTTP provider.
        #[derive(Clone, Default, clap::Args)]
        #[command(next_help_heading = $heading)]
        pub struct $name {
            /// Base URL (`http(s)://host[:port][/prefix]`); the contract's paths follow it.
            #[arg(long, env = $url)]
            pub $f_url: Option<String>,
            /// Bearer token (secret).
            #[arg(long, env = $token, hide_env_values = true)]
            pub $f_token: Option<String>,
            /// Client certificate chain and private key, PEM text (mTLS; secret: from Secrets
            /// Manager in AWS).
            #[arg(long, env = $cert, hide_env_values = true)]
            pub $f_cert: Option<String>,
            /// Client certificate chain and private key, PEM file (mTLS).
            #[arg(long, env = $cert_file)]
            pub $f_cert_file: Option<PathBuf>,
            /// CA certificates that sign the provider's certificate, PEM text (only these are
            /// trusted; default: the system's roots).
            #[arg(long, env = $ca)]
            pub $f_ca: Option<String>,
            /// The same, from a PEM file.
            #[arg(long, env = $ca_file)]
            pub $f_ca_file: Option<PathBuf>,
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // Never the token or the client key.
                f.debug_struct(stringify!($name))
                    .field("url", &self.$f_url)
                    .field("token", &self.$f_token.as_ref().map(|_| "***"))
                    .field("client_cert", &self.$f_cert.as_ref().map(|_| "***"))
                    .field("client_cert_file", &self.$f_cert_file)
                    .field("ca_file", &self.$f_ca_file)
                    .finish_non_exhaustive()
            }
        }

        impl $name {
            fn endpoint(&self) -> Result<Option<ProviderEndpoint>, String> {
                // A setting set but empty (a secret created and never filled) is refused,
                // never taken for one not set: the worker would start and every call fail.
                let empty = |what: &str| Err(format!("{what} is set but empty"));
                if self
                    .$f_token
                    .as_deref()
                    .is_some_and(|t| t.trim().is_empty())
                {
                    return empty($token);
                }
                for (text, what) in [(&self.$f_cert, $cert), (&self.$f_ca, $ca)] {
                    if text.as_deref().is_some_and(|t| t.trim().is_empty()) {
                        return empty(what);
                    }
                }
                let pem = |text: &Option<String>, file: &Option<PathBuf>, what: &str| match (
                    text.as_deref(),
                    file,
                ) {
                    (Some(_), Some(_)) => Err(format!("set {what} or {what}_FILE, not both")),
                    (Some(text), None) => Ok(Some(Pem::Inline(text.to_owned()))),
                    (None, Some(path)) => Ok(Some(Pem::File(path.clone()))),
                    (None, None) => Ok(None),
                };
                let client_identity = pem(&self.$f_cert, &self.$f_cert_file, $cert)?;
                let ca = pem(&self.$f_ca, &self.$f_ca_file, $ca)?;
                let Some(url) = self
                    .$f_url
                    .as_deref()
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                else {
                    if self.$f_token.is_some() || client_identity.is_some() || ca.is_some() {
                        return Err(format!("{} is required with its credentials", $url));
                    }
                    return Ok(None);
                };
                let endpoint = ProviderEndpoint {
                    base_url: url.to_owned(),
                    token: self.$f_token.clone(),
                    client_identity,
                    ca,
                };
                endpoint.validate($url)?;
                Ok(Some(endpoint))
            }
        }
    };
}

provider_args!(
    InventoryArgs,
    "Inventory provider (ORDER_WORKER_PROVIDERS=http)",
    "ORDER_PROVIDER_INVENTORY_URL",
    "ORDER_PROVIDER_INVENTORY_TOKEN",
    "ORDER_PROVIDER_INVENTORY_CLIENT_CERT",
    "ORDER_PROVIDER_INVENTORY_CLIENT_CERT_FILE",
    "ORDER_PROVIDER_INVENTORY_CA",
    "ORDER_PROVIDER_INVENTORY_CA_FILE",
    inventory_url,
    inventory_token,
    inventory_client_cert,
    inventory_client_cert_file,
    inventory_ca,
    inventory_ca_file
);
provider_args!(
    PaymentArgs,
    "Payment provider (ORDER_WORKER_PROVIDERS=http)",
    "ORDER_PROVIDER_PAYMENT_URL",
    "ORDER_PROVIDER_PAYMENT_TOKEN",
    "ORDER_PROVIDER_PAYMENT_CLIENT_CERT",
    "ORDER_PROVIDER_PAYMENT_CLIENT_CERT_FILE",
    "ORDER_PROVIDER_PAYMENT_CA",
    "ORDER_PROVIDER_PAYMENT_CA_FILE",
    payment_url,
    payment_token,
    payment_client_cert,
    payment_client_cert_file,
    payment_ca,
    payment_ca_file
);
provider_args!(
    ShippingArgs,
    "Shipping provider (ORDER_WORKER_PROVIDERS=http)",
    "ORDER_PROVIDER_SHIPPING_URL",
    "ORDER_PROVIDER_SHIPPING_TOKEN",
    "ORDER_PROVIDER_SHIPPING_CLIENT_CERT",
    "ORDER_PROVIDER_SHIPPING_CLIENT_CERT_FILE",
    "ORDER_PROVIDER_SHIPPING_CA",
    "ORDER_PROVIDER_SHIPPING_CA_FILE",
    shipping_url,
    shipping_token,
    shipping_client_cert,
    shipping_client_cert_file,
    shipping_ca,
    shipping_ca_file
);

/// The HTTP providers: one endpoint each, and the client settings they share.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "HTTP providers (ORDER_WORKER_PROVIDERS=http)")]
pub struct HttpArgs {
    /// Time to open a connection to a provider (TCP and TLS), in ms.
    #[arg(long, env = "ORDER_PROVIDER_CONNECT_TIMEOUT_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub provider_connect_timeout_ms: u64,
    /// HTTP version: auto (HTTP/2 where TLS offers it), http1, http2 (prior knowledge).
    #[arg(
        long,
        env = "ORDER_PROVIDER_HTTP_VERSION",
        value_enum,
        default_value = "auto"
    )]
    pub provider_http_version: HttpVersion,
    /// Idle connections kept per provider.
    #[arg(long, env = "ORDER_PROVIDER_POOL_IDLE_PER_HOST", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub provider_pool_idle_per_host: u32,
    /// Seconds an idle provider connection is kept.
    #[arg(long, env = "ORDER_PROVIDER_POOL_IDLE_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub provider_pool_idle_seconds: u64,
    #[command(flatten)]
    pub inventory: InventoryArgs,
    #[command(flatten)]
    pub payment: PaymentArgs,
    #[command(flatten)]
    pub shipping: ShippingArgs,
}

/// The three endpoints, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpEndpoints {
    /// Stock.
    pub inventory: ProviderEndpoint,
    /// Money.
    pub payment: ProviderEndpoint,
    /// Parcels.
    pub shipping: ProviderEndpoint,
}

impl HttpArgs {
    /// The endpoints; with `required`, each URL must be set.
    pub fn endpoints(&self, required: bool) -> Result<Option<HttpEndpoints>, String> {
        let inventory = self.inventory.endpoint()?;
        let payment = self.payment.endpoint()?;
        let shipping = self.shipping.endpoint()?;
        match (inventory, payment, shipping) {
            (Some(inventory), Some(payment), Some(shipping)) => Ok(Some(HttpEndpoints {
                inventory,
                payment,
                shipping,
            })),
            (inventory, payment, _) if required => {
                let missing = if inventory.is_none() {
                    "ORDER_PROVIDER_INVENTORY_URL"
                } else if payment.is_none() {
                    "ORDER_PROVIDER_PAYMENT_URL"
                } else {
                    "ORDER_PROVIDER_SHIPPING_URL"
                };
                Err(format!("ORDER_WORKER_PROVIDERS=http needs {missing}"))
            }
            _ => Ok(None),
        }
    }

    /// The client settings; `request_timeout` is the provider call timeout.
    pub fn settings(&self, request_timeout: Duration) -> HttpSettings {
        HttpSettings {
            connect_timeout: Duration::from_millis(self.provider_connect_timeout_ms),
            request_timeout,
            version: self.provider_http_version,
            pool_max_idle_per_host: self.provider_pool_idle_per_host as usize,
            pool_idle_timeout: Duration::from_secs(self.provider_pool_idle_seconds),
        }
    }
}

/// The memory this process may use: the cgroup limit (v2 or v1) or, without one, the
/// machine's memory.
pub fn memory_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|text| text.trim().parse::<u64>().ok());
    let machine = read("/proc/meminfo").and_then(|text| {
        text.lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
    });
    match (cgroup, machine) {
        (Some(limit), Some(total)) => Some(limit.min(total)),
        (limit, total) => limit.or(total),
    }
}

/// The concurrency a worker with `memory` bytes gets by default: half the memory, less a base,
/// in [`MEMORY_PER_MESSAGE`] per message, within [`MIN_AUTO_CONCURRENCY`]..[`MAX_CONCURRENCY`].
pub fn concurrency_for_memory(memory: Option<u64>) -> usize {
    let Some(memory) = memory else {
        return MIN_AUTO_CONCURRENCY * 4;
    };
    let budget = (memory / 2).saturating_sub(BASE_MEMORY);
    usize::try_from(budget / MEMORY_PER_MESSAGE)
        .unwrap_or(MAX_CONCURRENCY)
        .clamp(MIN_AUTO_CONCURRENCY, MAX_CONCURRENCY)
}

/// Settings of the simulated inventory, payment and shipping providers.
///
/// Permanent refusals are decided per order (the same order always gets the same answer, on
/// every delivery): a SKU prefix, a customer list, an amount limit, or a share of the orders
/// picked by a hash of the order id. Transient failures and latency are random per call.
#[derive(Debug, Clone, clap::Args)]
#[command(
    next_help_heading = "Provider simulation (refusals are decided per order, the same on every delivery)"
)]
pub struct SimulationArgs {
    /// Mean latency of each simulated provider call, in ms (actual: 0.5x to 1.5x).
    #[arg(long, env = "ORDER_WORKER_SIM_LATENCY_MS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub sim_latency_ms: u64,
    /// Share of simulated provider calls (0-1) that fail transiently (retried).
    #[arg(long, env = "ORDER_WORKER_SIM_TRANSIENT_FAILURE_RATE", default_value_t = 0.0,
          value_parser = parse_rate)]
    pub sim_transient_failure_rate: f64,
    /// Share of orders (0-1) that are out of stock: RejectInventory, then Cancelled.
    #[arg(long, env = "ORDER_WORKER_SIM_OUT_OF_STOCK_RATE", default_value_t = 0.0,
          value_parser = parse_rate)]
    pub sim_out_of_stock_rate: f64,
    /// Share of orders (0-1) whose payment is declined: FailPayment, then Cancelled.
    #[arg(long, env = "ORDER_WORKER_SIM_DECLINE_RATE", default_value_t = 0.0,
          value_parser = parse_rate)]
    pub sim_decline_rate: f64,
    /// An order with a SKU starting with this is out of stock (empty: off).
    #[arg(
        long,
        env = "ORDER_WORKER_SIM_OUT_OF_STOCK_SKU_PREFIX",
        default_value = "OOS-"
    )]
    pub sim_out_of_stock_sku_prefix: String,
    /// An order with a SKU starting with this has its payment declined (empty: off).
    #[arg(
        long,
        env = "ORDER_WORKER_SIM_DECLINE_SKU_PREFIX",
        default_value = "DECLINE-"
    )]
    pub sim_decline_sku_prefix: String,
    /// Payments above this amount (minor units) are declined (default: no limit).
    #[arg(long, env = "ORDER_WORKER_SIM_DECLINE_AMOUNT_OVER")]
    pub sim_decline_amount_over: Option<i64>,
    /// Customers (UUIDs, comma separated) whose payments are declined.
    #[arg(
        long,
        env = "ORDER_WORKER_SIM_DECLINE_CUSTOMERS",
        value_delimiter = ','
    )]
    pub sim_decline_customers: Vec<String>,
    /// Seed of the simulation's and the jitter's randomness (default: random per process).
    #[arg(long, env = "ORDER_WORKER_SIM_SEED")]
    pub sim_seed: Option<u64>,
}

impl SimulationArgs {
    pub fn settings(&self) -> SimulationSettings {
        SimulationSettings {
            latency: Duration::from_millis(self.sim_latency_ms),
            transient_failure_rate: self.sim_transient_failure_rate,
            out_of_stock_rate: self.sim_out_of_stock_rate,
            decline_rate: self.sim_decline_rate,
            out_of_stock_sku_prefix: Some(self.sim_out_of_stock_sku_prefix.clone()),
            decline_sku_prefix: Some(self.sim_decline_sku_prefix.clone()),
            decline_amount_over: self.sim_decline_amount_over,
            decline_customers: self
                .sim_decline_customers
                .iter()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect(),
        }
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err("must be a number from 0 to 1".to_owned()),
    }
}

fn parse_mode(text: &str) -> Result<String, String> {
    if text == SQS_CONSUMER {
        Ok(text.to_owned())
    } else {
        Err(format!("the only worker mode is {SQS_CONSUMER}"))
    }
}

#[derive(Clone, clap::Args)]
pub struct RunArgs {
    /// Worker mode; the only one is sqs-consumer.
    #[arg(long, env = "WORKER_MODE", default_value = SQS_CONSUMER, value_parser = parse_mode)]
    pub mode: String,
    /// URL of the FIFO queue of order events (required).
    #[arg(long, env = "ORDERS_QUEUE_URL")]
    pub orders_queue_url: Option<String>,
    /// URL of its FIFO dead-letter queue, for messages that can never succeed (required).
    #[arg(long, env = "ORDERS_DLQ_URL")]
    pub orders_dlq_url: Option<String>,
    /// order-grpc's address (http://host:port).
    #[arg(
        long,
        env = "ORDER_GRPC_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub grpc_endpoint: String,
    /// PEM file of the CA that signed order-grpc's certificate; required for an https://
    /// endpoint (this build has no system root store).
    #[arg(long, env = "ORDER_GRPC_CA_FILE")]
    pub grpc_ca_file: Option<PathBuf>,
    /// The name order-grpc's certificate is checked against (default: the endpoint's host).
    #[arg(long, env = "ORDER_GRPC_TLS_DOMAIN")]
    pub grpc_tls_domain: Option<String>,
    /// Bearer token presented to order-grpc (16-512 visible ASCII characters; secret).
    #[arg(long, env = "ORDER_GRPC_AUTH_TOKEN", hide_env_values = true)]
    pub grpc_auth_token: Option<String>,
    /// Deadline of each gRPC call, in ms.
    #[arg(long, env = "ORDER_GRPC_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub grpc_timeout_ms: u64,
    /// Admin HTTP listen address (/healthz, /readyz, /metrics).
    #[arg(long, env = "ORDER_ADMIN_ADDR", default_value = "127.0.0.1:9466")]
    pub admin_addr: SocketAddr,
    /// Messages worked on at once (default: from the memory limit, 128 KiB per message in
    /// half the memory, 16-1000; a 512 MiB task gets 1000).
    #[arg(long, env = "ORDER_WORKER_CONCURRENCY",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub concurrency: Option<u32>,
    /// Long-poll wait of each receive, in seconds (0-20).
    #[arg(long, env = "ORDER_WORKER_WAIT_SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(0..=20))]
    pub wait_seconds: u64,
    /// Messages per receive (1-10).
    #[arg(long, env = "ORDER_WORKER_BATCH", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=10))]
    pub batch: u32,
    /// Visibility timeout in seconds (2-3600), set at receive and renewed every third of it
    /// while a message is worked on. At most an hour, so that no renewal of a message that may
    /// still be worked on (at most 11 hours, below) asks SQS for more than its 12 hours.
    #[arg(long, env = "ORDER_WORKER_VISIBILITY_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub visibility_seconds: u64,
    /// First retry delay of a failed message, in ms; doubles per receive, with jitter.
    #[arg(long, env = "ORDER_WORKER_RETRY_BASE_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_base_ms: u64,
    /// Longest retry delay of a failed message, in ms.
    #[arg(long, env = "ORDER_WORKER_RETRY_MAX_MS", default_value_t = 300_000,
          value_parser = clap::value_parser!(u64).range(1..=43_200_000))]
    pub retry_max_ms: u64,
    /// Time each provider call may take, in ms.
    #[arg(long, env = "ORDER_WORKER_PROVIDER_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=120_000))]
    pub provider_timeout_ms: u64,
    /// Attempts per provider call (1 = no retry).
    #[arg(long, env = "ORDER_WORKER_PROVIDER_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=20))]
    pub provider_attempts: u32,
    /// First wait between provider attempts, in ms; doubles per attempt, with jitter.
    #[arg(long, env = "ORDER_WORKER_PROVIDER_BACKOFF_BASE_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub provider_backoff_base_ms: u64,
    /// Longest wait between provider attempts, in ms (at most an hour).
    #[arg(long, env = "ORDER_WORKER_PROVIDER_BACKOFF_MAX_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub provider_backoff_max_ms: u64,
    /// Consecutive failed calls that open a provider's circuit breaker.
    #[arg(long, env = "ORDER_WORKER_BREAKER_THRESHOLD", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_threshold: u32,
    /// How long an open circuit refuses calls before trial calls, in ms (100 ms to an hour;
    /// longer when the failure that opened it came with a longer `Retry-After`).
    #[arg(long, env = "ORDER_WORKER_BREAKER_COOLDOWN_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub breaker_cooldown_ms: u64,
    /// Trial calls a half-open circuit lets through; this many successes close it.
    #[arg(long, env = "ORDER_WORKER_BREAKER_HALF_OPEN_CALLS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub breaker_half_open_calls: u32,
    /// How long a provider call waits for an open circuit to close (the message stays in
    /// flight), in seconds, trial calls that fail included; then the message is retried
    /// later (0: fail at once; at most an hour).
    #[arg(long, env = "ORDER_WORKER_CIRCUIT_WAIT_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub circuit_wait_seconds: u64,
    /// Which adapters serve the inventory, payment and shipping ports.
    #[arg(
        long,
        env = "ORDER_WORKER_PROVIDERS",
        value_enum,
        default_value = "simulated"
    )]
    pub providers: ProviderKind,
    /// How long one delivery of an OrderShipped message polls the carrier, in seconds; then
    /// the message comes back after the recheck delay.
    #[arg(long, env = "ORDER_WORKER_DELIVERY_WAIT_SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub delivery_wait_seconds: u64,
    /// Pause between two polls of the carrier when it sends no Retry-After, in ms.
    #[arg(long, env = "ORDER_WORKER_DELIVERY_POLL_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub delivery_poll_ms: u64,
    /// When a parcel still in transit is asked about again, in seconds (at most 12 hours).
    #[arg(long, env = "ORDER_WORKER_DELIVERY_RECHECK_SECONDS", default_value_t = 21_600,
          value_parser = clap::value_parser!(u64).range(1..=43_200))]
    pub delivery_recheck_seconds: u64,
    /// How long the providers remember an idempotency key, in seconds (their contract: at
    /// least 24 hours). A redelivered message whose event is older (less a tenth, at most an
    /// hour) is dead-lettered (`key_lifetime`) rather than repeat a call that creates
    /// something: the provider may have forgotten the first one. 0: never (keys are kept for
    /// ever).
    #[arg(long, env = "ORDER_WORKER_PROVIDER_KEY_LIFETIME_SECONDS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub provider_key_lifetime_seconds: u64,
    /// Seconds in-flight messages get to finish after SIGTERM (a receive under way is let
    /// finish, up to the long-poll wait, before the unfinished ones are released).
    #[arg(long, env = "ORDER_SHUTDOWN_GRACE_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_seconds: u64,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub simulation: SimulationArgs,
    #[command(flatten)]
    pub http: HttpArgs,
}

impl std::fmt::Debug for RunArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Everything but the token.
        f.debug_struct("RunArgs")
            .field("mode", &self.mode)
            .field("orders_queue_url", &self.orders_queue_url)
            .field("orders_dlq_url", &self.orders_dlq_url)
            .field("grpc_endpoint", &self.grpc_endpoint)
            .field("grpc_ca_file", &self.grpc_ca_file)
            .field(
                "grpc_auth_token",
                &self.grpc_auth_token.as_ref().map(|_| "***"),
            )
            .field("admin_addr", &self.admin_addr)
            .field("providers", &self.providers)
            .field("concurrency", &self.concurrency)
            .field("visibility_seconds", &self.visibility_seconds)
            .finish_non_exhaustive()
    }
}

impl RunArgs {
    /// Check what clap cannot. The message names the setting and never shows the token.
    pub fn validate(&self) -> Result<(), String> {
        parse_mode(&self.mode).map_err(|why| format!("WORKER_MODE {:?}: {why}", self.mode))?;
        for (value, name) in [
            (
                &self.orders_queue_url,
                "--orders-queue-url (ORDERS_QUEUE_URL)",
            ),
            (&self.orders_dlq_url, "--orders-dlq-url (ORDERS_DLQ_URL)"),
        ] {
            match value.as_deref().map(str::trim) {
                None | Some("") => return Err(format!("{name} is required")),
                Some(url) if !url.starts_with("http://") && !url.starts_with("https://") => {
                    return Err(format!("{name} must be an http(s) URL, got {url:?}"));
                }
                Some(_) => {}
            }
        }
        if self.orders_queue_url.as_deref().map(str::trim)
            == self.orders_dlq_url.as_deref().map(str::trim)
        {
            return Err("ORDERS_DLQ_URL must differ from ORDERS_QUEUE_URL".to_owned());
        }
        let endpoint = self.grpc_endpoint.trim();
        let https = endpoint.starts_with("https://");
        if !https && !endpoint.starts_with("http://") {
            return Err(format!(
                "--grpc-endpoint (ORDER_GRPC_ENDPOINT) must be http://host:port or \
                 https://host:port, got {endpoint:?}"
            ));
        }
        tonic::transport::Endpoint::from_shared(endpoint.to_owned()).map_err(|e| {
            format!("--grpc-endpoint (ORDER_GRPC_ENDPOINT) {endpoint:?} is not a URL: {e}")
        })?;
        match (https, &self.grpc_ca_file) {
            (true, None) => {
                return Err(
                    "an https:// ORDER_GRPC_ENDPOINT needs --grpc-ca-file (ORDER_GRPC_CA_FILE): \
                     this build has no system root store"
                        .to_owned(),
                );
            }
            (false, Some(_)) => {
                return Err(
                    "--grpc-ca-file (ORDER_GRPC_CA_FILE) only applies to an https:// endpoint"
                        .to_owned(),
                );
            }
            _ => {}
        }
        if let Some(token) = &self.grpc_auth_token
            && (!(16..=512).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err("ORDER_GRPC_AUTH_TOKEN must be 16-512 visible ASCII characters".to_owned());
        }
        if self.retry_base_ms > self.retry_max_ms {
            return Err(format!(
                "ORDER_WORKER_RETRY_BASE_MS ({}) exceeds ORDER_WORKER_RETRY_MAX_MS ({})",
                self.retry_base_ms, self.retry_max_ms
            ));
        }
        if self.provider_backoff_base_ms > self.provider_backoff_max_ms {
            return Err(format!(
                "ORDER_WORKER_PROVIDER_BACKOFF_BASE_MS ({}) exceeds \
                 ORDER_WORKER_PROVIDER_BACKOFF_MAX_MS ({})",
                self.provider_backoff_base_ms, self.provider_backoff_max_ms
            ));
        }
        // The messages of one order from one receive are worked on one after another, all
        // received at once: the last of a batch waits for the others.
        let longest = self.longest_handling().saturating_mul(self.batch.max(1));
        if longest > LONGEST_HANDLING {
            return Err(format!(
                "the last of ORDER_WORKER_BATCH ({}) messages of one order could be worked on \
                 for {:.1} hours after their receipt, past the {} hours its visibility can be \
                 extended (SQS: 12 hours from its receipt, less a margin), then another worker \
                 would take it while this one still works on it: each message up to {} \
                 provider calls in a row, each up to ORDER_WORKER_CIRCUIT_WAIT_SECONDS ({}) \
                 plus ORDER_WORKER_PROVIDER_ATTEMPTS ({}) + 1 times \
                 ORDER_WORKER_PROVIDER_TIMEOUT_MS ({}) plus as many waits of \
                 ORDER_WORKER_PROVIDER_BACKOFF_MAX_MS ({}) less one, with \
                 {} times ORDER_WORKER_DELIVERY_WAIT_SECONDS ({}) and {} calls of \
                 ORDER_GRPC_TIMEOUT_MS ({}); lower some of them",
                self.batch.max(1),
                longest.as_secs_f64() / 3600.0,
                LONGEST_HANDLING.as_secs() / 3600,
                PROVIDER_CALLS_PER_MESSAGE,
                self.circuit_wait_seconds,
                self.provider_attempts,
                self.provider_timeout_ms,
                self.provider_backoff_max_ms,
                crate::process::REDECIDE_ATTEMPTS,
                self.delivery_wait_seconds,
                GRPC_CALLS_PER_MESSAGE,
                self.grpc_timeout_ms,
            ));
        }
        self.http.endpoints(self.providers == ProviderKind::Http)?;
        for customer in &self.simulation.sim_decline_customers {
            let customer = customer.trim();
            if !customer.is_empty() && uuid::Uuid::parse_str(customer).is_err() {
                return Err(format!(
                    "ORDER_WORKER_SIM_DECLINE_CUSTOMERS: {customer:?} is not a UUID"
                ));
            }
        }
        Ok(())
    }

    /// The longest one message can be worked on with these settings, at worst: every
    /// provider call it can make in a row ([`PROVIDER_CALLS_PER_MESSAGE`]) waiting the whole
    /// circuit wait (failed trial calls count towards it, the last one may run past it), then
    /// using every attempt up to the timeout with the longest backoff between them; the
    /// deliver step's polling ([`crate::process::REDECIDE_ATTEMPTS`] decisions); every gRPC
    /// call ([`GRPC_CALLS_PER_MESSAGE`]) up to its deadline.
    pub fn longest_handling(&self) -> Duration {
        let guard = self.guard_settings();
        let attempts = guard.attempts.max(1);
        let call = guard.circuit_wait
            + guard.timeout.saturating_mul(attempts + 1)
            + guard.backoff.max.saturating_mul(attempts - 1);
        call.saturating_mul(PROVIDER_CALLS_PER_MESSAGE)
            + Duration::from_secs(self.delivery_wait_seconds)
                .saturating_mul(crate::process::REDECIDE_ATTEMPTS)
            + self.grpc_timeout().saturating_mul(GRPC_CALLS_PER_MESSAGE)
    }

    /// The TLS settings of the gRPC client (https endpoints); reads the CA file.
    pub fn grpc_tls(&self) -> Result<Option<crate::api::GrpcTls>, String> {
        let Some(path) = &self.grpc_ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read --grpc-ca-file (ORDER_GRPC_CA_FILE) {}: {e}",
                path.display()
            )
        })?;
        Ok(Some(crate::api::GrpcTls {
            ca_pem: pem,
            domain: self.grpc_tls_domain.clone().filter(|d| !d.is_empty()),
        }))
    }

    pub fn consumer_settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            // Used as validated: without the spaces an environment file may leave around them.
            queue_url: self
                .orders_queue_url
                .as_deref()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            dlq_url: self
                .orders_dlq_url
                .as_deref()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            concurrency: self.concurrency(),
            batch: self.batch as usize,
            wait: Duration::from_secs(self.wait_seconds),
            visibility: Duration::from_secs(self.visibility_seconds),
            retry: Backoff::new(
                Duration::from_millis(self.retry_base_ms),
                Duration::from_millis(self.retry_max_ms),
            ),
        }
    }

    pub fn guard_settings(&self) -> GuardSettings {
        GuardSettings {
            attempts: self.provider_attempts,
            backoff: Backoff::new(
                Duration::from_millis(self.provider_backoff_base_ms),
                Duration::from_millis(self.provider_backoff_max_ms),
            ),
            timeout: Duration::from_millis(self.provider_timeout_ms),
            breaker: BreakerSettings {
                failure_threshold: self.breaker_threshold,
                cooldown: Duration::from_millis(self.breaker_cooldown_ms),
                half_open_calls: self.breaker_half_open_calls,
            },
            circuit_wait: Duration::from_secs(self.circuit_wait_seconds),
        }
    }

    /// Messages worked on at once: the setting, or derived from the memory limit.
    pub fn concurrency(&self) -> usize {
        self.concurrency
            .map_or_else(|| concurrency_for_memory(memory_limit()), |n| n as usize)
    }

    /// How the deliver step waits for carriers.
    pub fn delivery_settings(&self) -> DeliverySettings {
        DeliverySettings {
            wait: Duration::from_secs(self.delivery_wait_seconds),
            poll: Duration::from_millis(self.delivery_poll_ms),
            recheck: Duration::from_secs(self.delivery_recheck_seconds),
        }
    }

    /// How long the providers remember an idempotency key (`None`: for ever).
    pub fn provider_key_lifetime(&self) -> Option<Duration> {
        (self.provider_key_lifetime_seconds > 0)
            .then(|| Duration::from_secs(self.provider_key_lifetime_seconds))
    }

    /// The HTTP client settings of the providers.
    pub fn http_settings(&self) -> HttpSettings {
        // The guard times each attempt out (result="timeout"); the client's own limit, a
        // second later, is only a backstop.
        self.http
            .settings(Duration::from_millis(self.provider_timeout_ms) + HTTP_TIMEOUT_BACKSTOP)
    }

    pub fn grpc_timeout(&self) -> Duration {
        Duration::from_millis(self.grpc_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}

pub use order_runtime::sqs::client as sqs_client;

/// How much longer than the guard's timeout the HTTP client's own limit is.
const HTTP_TIMEOUT_BACKSTOP: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: RunArgs,
    }

    const QUEUE: &str = "http://127.0.0.1:9324/000000000000/orders.fifo";
    const DLQ: &str = "http://127.0.0.1:9324/000000000000/orders-dlq.fifo";

    /// Parse with every required setting given as a flag (flags beat the environment).
    fn parse(extra: &[&str]) -> Result<RunArgs, String> {
        let base = [
            ("--mode", "sqs-consumer"),
            ("--orders-queue-url", QUEUE),
            ("--orders-dlq-url", DLQ),
            ("--grpc-endpoint", "http://127.0.0.1:50051"),
        ];
        let mut argv = vec!["order-worker"];
        for (flag, value) in base {
            if !extra.contains(&flag) {
                argv.extend([flag, value]);
            }
        }
        argv.extend_from_slice(extra);
        let args = Cli::try_parse_from(argv).map_err(|e| e.to_string())?.args;
        args.validate()?;
        Ok(args)
    }

    #[test]
    fn defaults_follow_the_design() {
        let args = parse(&[]).unwrap();
        let consumer = args.consumer_settings();
        assert_eq!(consumer.batch, 10);
        assert_eq!(consumer.wait, Duration::from_secs(20));
        assert_eq!(consumer.visibility, Duration::from_secs(30));
        assert_eq!(args.shutdown_grace(), Duration::from_secs(30));
        let simulation = args.simulation.settings();
        assert_eq!(simulation.out_of_stock_sku_prefix.as_deref(), Some("OOS-"));
        assert_eq!(simulation.decline_sku_prefix.as_deref(), Some("DECLINE-"));
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--mode", "lambda"],
                "the only worker mode is sqs-consumer",
            ),
            (&["--concurrency", "0"], "--concurrency"),
            (&["--wait-seconds", "21"], "--wait-seconds"),
            (&["--batch", "11"], "--batch"),
            (&["--visibility-seconds", "1"], "--visibility-seconds"),
            (&["--sim-decline-rate", "1.5"], "from 0 to 1"),
            (&["--sim-transient-failure-rate", "x"], "from 0 to 1"),
            (
                &["--grpc-endpoint", "https://grpc:443"],
                "needs --grpc-ca-file",
            ),
            (
                &["--grpc-ca-file", "/tmp/ca.pem"],
                "only applies to an https",
            ),
            (
                &["--grpc-endpoint", "ftp://grpc:443"],
                "ORDER_GRPC_ENDPOINT",
            ),
            (&["--grpc-endpoint", "grpc:50051"], "ORDER_GRPC_ENDPOINT"),
            (&["--grpc-auth-token", "short"], "16-512"),
            (&["--orders-queue-url", ""], "ORDERS_QUEUE_URL) is required"),
            (&["--orders-dlq-url", "queue"], "http(s) URL"),
            (&["--orders-dlq-url", QUEUE], "must differ"),
            (
                &["--retry-base-ms", "5000", "--retry-max-ms", "1000"],
                "exceeds",
            ),
            (&["--sim-decline-customers", "bob"], "not a UUID"),
            (
                &["--providers", "http"],
                "needs ORDER_PROVIDER_INVENTORY_URL",
            ),
            (
                &[
                    "--providers",
                    "http",
                    "--inventory-url",
                    "http://inv",
                    "--payment-url",
                    "http://pay",
                ],
                "needs ORDER_PROVIDER_SHIPPING_URL",
            ),
            (
                &["--payment-url", "pay.internal"],
                "ORDER_PROVIDER_PAYMENT_URL",
            ),
            (
                &["--payment-token", "a-token-without-a-url"],
                "ORDER_PROVIDER_PAYMENT_URL is required",
            ),
            (
                &[
                    "--shipping-url",
                    "http://ship",
                    "--shipping-client-cert",
                    "pem",
                ],
                "needs an https:// URL",
            ),
            (
                &[
                    "--inventory-url",
                    "https://inv",
                    "--inventory-ca",
                    "pem",
                    "--inventory-ca-file",
                    "/ca.pem",
                ],
                "not both",
            ),
            (
                &["--payment-url", "https://pay", "--payment-token", ""],
                "ORDER_PROVIDER_PAYMENT_TOKEN is set but empty",
            ),
            (
                &["--inventory-url", "https://inv", "--inventory-token", ""],
                "ORDER_PROVIDER_INVENTORY_TOKEN is set but empty",
            ),
            (
                &["--shipping-url", "https://ship", "--shipping-token", ""],
                "ORDER_PROVIDER_SHIPPING_TOKEN is set but empty",
            ),
            (
                &[
                    "--payment-url",
                    "https://pay",
                    "--payment-client-cert",
                    "\n",
                ],
                "ORDER_PROVIDER_PAYMENT_CLIENT_CERT is set but empty",
            ),
            (
                &[
                    "--payment-url",
                    "https://pay",
                    "--payment-client-cert-file",
                    "",
                ],
                // Refused by the parser (a path must not be empty).
                "a value is required for '--payment-client-cert-file",
            ),
            (
                &["--inventory-url", "https://inv", "--inventory-ca", ""],
                "ORDER_PROVIDER_INVENTORY_CA is set but empty",
            ),
            (
                &["--inventory-url", "https://inv", "--inventory-ca-file", ""],
                "a value is required for '--inventory-ca-file",
            ),
            (&["--providers", "soap"], "--providers"),
            (
                &["--breaker-half-open-calls", "0"],
                "--breaker-half-open-calls",
            ),
            // A cooldown of 0 would send a failed trial's retry at once, back to back.
            (&["--breaker-cooldown-ms", "0"], "--breaker-cooldown-ms"),
            (&["--breaker-cooldown-ms", "99"], "--breaker-cooldown-ms"),
            (
                &["--delivery-recheck-seconds", "50000"],
                "--delivery-recheck-seconds",
            ),
        ];
        for (flags, expected) in cases {
            let error = parse(flags).unwrap_err();
            assert!(error.contains(expected), "{flags:?}: {error}");
        }
    }

    #[test]
    fn no_setting_lets_a_message_be_held_past_what_sqs_allows() {
        // Each alone, past an hour: refused by its range.
        for (flag, value) in [
            ("--provider-backoff-max-ms", "3600001"),
            ("--provider-backoff-base-ms", "3600001"),
            ("--breaker-cooldown-ms", "3600001"),
            ("--circuit-wait-seconds", "3601"),
            ("--provider-backoff-max-ms", "18446744073709551615"),
        ] {
            let error = parse(&[flag, value]).unwrap_err();
            assert!(error.contains(flag), "{flag} {value}: {error}");
        }
        // Each within its range, together past the 11 hours one message may be kept: refused,
        // naming the settings.
        let error = parse(&[
            "--circuit-wait-seconds",
            "3600",
            "--provider-attempts",
            "20",
            "--provider-timeout-ms",
            "120000",
            "--provider-backoff-max-ms",
            "3600000",
        ])
        .unwrap_err();
        for named in [
            "ORDER_WORKER_CIRCUIT_WAIT_SECONDS",
            "ORDER_WORKER_PROVIDER_ATTEMPTS",
            "ORDER_WORKER_PROVIDER_TIMEOUT_MS",
            "ORDER_WORKER_PROVIDER_BACKOFF_MAX_MS",
        ] {
            assert!(error.contains(named), "{named}: {error}");
        }
        // The worst case is what the calls can add up to, for each of a batch's messages of
        // one order in turn: the defaults, and the end-to-end tests' settings, are far from it.
        let defaults = parse(&[]).unwrap();
        assert!(defaults.longest_handling() * defaults.batch < LONGEST_HANDLING);
        let edge = |circuit_wait: u64, batch: u32| {
            let args = Cli::try_parse_from([
                "order-worker",
                "--orders-queue-url",
                QUEUE,
                "--orders-dlq-url",
                DLQ,
                "--batch",
                &batch.to_string(),
                "--circuit-wait-seconds",
                &circuit_wait.to_string(),
                "--provider-attempts",
                "3",
                "--provider-timeout-ms",
                "60000",
                "--provider-backoff-max-ms",
                "1800000",
            ])
            .unwrap()
            .args;
            (args.longest_handling(), args.validate())
        };
        // One message takes 9.6 hours at worst with these settings, 10.6 with a circuit wait
        // of 400 s, 12.1 with one of 1000 s.
        let (longest, fits) = edge(0, 1);
        assert!(fits.is_ok(), "{longest:?}: {fits:?}");
        let (longest, fits) = edge(400, 1);
        assert!(
            fits.is_ok() && longest <= LONGEST_HANDLING,
            "{longest:?}: {fits:?}"
        );
        let (longest, refused) = edge(1000, 1);
        assert!(
            refused.is_err() && longest > LONGEST_HANDLING,
            "{longest:?}"
        );
        // Two messages of one order in one receive: the second waits for the first.
        let (longest, refused) = edge(0, 2);
        let error = refused.expect_err("two messages of 9.6 hours in a row");
        assert!(
            error.contains("ORDER_WORKER_BATCH (2)") && longest * 2 > LONGEST_HANDLING,
            "{error}"
        );
    }

    #[test]
    fn queue_urls_are_used_as_validated() {
        let padded = format!(" {QUEUE}\t");
        let args = parse(&["--orders-queue-url", &padded]).unwrap();
        assert_eq!(args.consumer_settings().queue_url, QUEUE);
        // The same queue, only padded: not a dead-letter queue of its own.
        let padded = format!("{QUEUE} ");
        let error = parse(&["--orders-dlq-url", &padded]).unwrap_err();
        assert!(error.contains("must differ"), "{error}");
        let padded = format!("\n{DLQ}");
        let args = parse(&["--orders-dlq-url", &padded]).unwrap();
        assert_eq!(args.consumer_settings().dlq_url, DLQ);
    }

    #[test]
    fn an_https_endpoint_reads_its_ca_file() {
        let args = parse(&[
            "--grpc-endpoint",
            "https://order-grpc:50051",
            "--grpc-ca-file",
            "/nonexistent/ca.pem",
        ])
        .unwrap();
        let error = args.grpc_tls().unwrap_err();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
        let plain = parse(&[]).unwrap();
        assert!(plain.grpc_tls().unwrap().is_none());
    }

    #[test]
    fn a_missing_queue_is_refused_by_validation() {
        let mut args = parse(&[]).unwrap();
        args.orders_queue_url = None;
        let error = args.validate().unwrap_err();
        assert!(error.contains("ORDERS_QUEUE_URL"), "{error}");
    }

    #[test]
    fn http_providers_need_all_three_urls_and_keep_their_secrets() {
        let args = parse(&[
            "--providers",
            "http",
            "--inventory-url",
            "http://127.0.0.1:7000/inventory",
            "--payment-url",
            "https://payments.internal",
            "--payment-token",
            "payment-secret-token",
            "--shipping-url",
            "http://127.0.0.1:7000/shipping",
        ])
        .unwrap();
        let endpoints = args.http.endpoints(true).unwrap().unwrap();
        assert_eq!(
            endpoints.payment.token.as_deref(),
            Some("payment-secret-token")
        );
        assert_eq!(endpoints.inventory.token, None);
        assert!(!format!("{args:?}").contains("payment-secret"));
        assert!(!format!("{endpoints:?}").contains("payment-secret"));
        // The guard times an attempt out first (counted as result="timeout"); the client's
        // own limit is a backstop behind it.
        assert!(
            args.http_settings().request_timeout > args.guard_settings().timeout,
            "{:?} vs {:?}",
            args.http_settings().request_timeout,
            args.guard_settings().timeout
        );
    }

    #[test]
    fn concurrency_follows_memory_unless_set() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(concurrency_for_memory(Some(512 * MIB)), 1000);
        assert_eq!(concurrency_for_memory(Some(256 * MIB)), 512);
        assert_eq!(concurrency_for_memory(Some(64 * MIB)), MIN_AUTO_CONCURRENCY);
        assert_eq!(
            concurrency_for_memory(Some(64 * 1024 * MIB)),
            MAX_CONCURRENCY
        );
        assert_eq!(concurrency_for_memory(None), 64);
        let set = parse(&["--concurrency", "7"]).unwrap();
        assert_eq!(set.consumer_settings().concurrency, 7);
        let auto = parse(&[]).unwrap();
        assert!(auto.consumer_settings().concurrency >= MIN_AUTO_CONCURRENCY);
    }

    #[test]
    fn the_seed_breaker_is_the_default() {
        let guard = parse(&[]).unwrap().guard_settings();
        assert_eq!(guard.breaker.failure_threshold, 5);
        assert_eq!(guard.breaker.cooldown, Duration::from_secs(10));
        assert_eq!(guard.breaker.half_open_calls, 3);
    }

    #[test]
    fn the_token_is_never_shown() {
        let args = parse(&["--grpc-auth-token", "a-secret-token-of-some-length"]).unwrap();
        assert!(!format!("{args:?}").contains("secret"));
        let bad = parse(&["--grpc-auth-token", "short secret"]).unwrap_err();
        assert!(!bad.contains("short secret"), "{bad}");
    }

    #[test]
    fn simulation_lists_and_empty_prefixes_are_read() {
        let args = parse(&[
            "--sim-decline-customers",
            "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001, 0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c002",
            "--sim-out-of-stock-sku-prefix",
            "",
        ])
        .unwrap();
        let settings = args.simulation.settings();
        assert_eq!(settings.decline_customers.len(), 2);
        assert_eq!(settings.out_of_stock_sku_prefix.as_deref(), Some(""));
    }
}

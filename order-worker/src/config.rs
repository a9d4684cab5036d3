//! `order-worker run` settings: flags with environment fallbacks (`--help` lists them all).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use order_runtime::telemetry::LogFormat;
use tonic::transport::{Certificate, ClientTlsConfig};

use crate::backoff::Backoff;
use crate::breaker::BreakerSettings;
use crate::consumer::ConsumerSettings;
use crate::providers::guard::GuardSettings;
use crate::providers::simulated::SimulationSettings;

/// The only worker mode there is.
pub const SQS_CONSUMER: &str = "sqs-consumer";

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
    #[arg(long, env = "ORDER_WORKER_SIM_LATENCY_MS", default_value_t = 10)]
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
    /// Messages worked on at once.
    #[arg(long, env = "ORDER_WORKER_CONCURRENCY", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub concurrency: u32,
    /// Long-poll wait of each receive, in seconds (0-20).
    #[arg(long, env = "ORDER_WORKER_WAIT_SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(0..=20))]
    pub wait_seconds: u64,
    /// Messages per receive (1-10).
    #[arg(long, env = "ORDER_WORKER_BATCH", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=10))]
    pub batch: u32,
    /// Visibility timeout in seconds, set at receive and renewed every third of it while a
    /// message is worked on.
    #[arg(long, env = "ORDER_WORKER_VISIBILITY_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(2..=43_200))]
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
          value_parser = clap::value_parser!(u64).range(1..))]
    pub provider_timeout_ms: u64,
    /// Attempts per provider call (1 = no retry).
    #[arg(long, env = "ORDER_WORKER_PROVIDER_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=20))]
    pub provider_attempts: u32,
    /// First wait between provider attempts, in ms; doubles per attempt, with jitter.
    #[arg(
        long,
        env = "ORDER_WORKER_PROVIDER_BACKOFF_BASE_MS",
        default_value_t = 100
    )]
    pub provider_backoff_base_ms: u64,
    /// Longest wait between provider attempts, in ms.
    #[arg(
        long,
        env = "ORDER_WORKER_PROVIDER_BACKOFF_MAX_MS",
        default_value_t = 2_000
    )]
    pub provider_backoff_max_ms: u64,
    /// Consecutive failed calls that open a provider's circuit breaker.
    #[arg(long, env = "ORDER_WORKER_BREAKER_THRESHOLD", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_threshold: u32,
    /// How long an open circuit refuses calls before one probe, in ms.
    #[arg(
        long,
        env = "ORDER_WORKER_BREAKER_COOLDOWN_MS",
        default_value_t = 10_000
    )]
    pub breaker_cooldown_ms: u64,
    /// Seconds in-flight messages get to finish after SIGTERM.
    #[arg(long, env = "ORDER_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub simulation: SimulationArgs,
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
        if self.orders_queue_url == self.orders_dlq_url {
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

    /// The TLS settings of the gRPC client (https endpoints); reads the CA file.
    pub fn grpc_tls(&self) -> Result<Option<ClientTlsConfig>, String> {
        let Some(path) = &self.grpc_ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read --grpc-ca-file (ORDER_GRPC_CA_FILE) {}: {e}",
                path.display()
            )
        })?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        if let Some(domain) = self.grpc_tls_domain.as_deref().filter(|d| !d.is_empty()) {
            tls = tls.domain_name(domain);
        }
        Ok(Some(tls))
    }

    pub fn consumer_settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            queue_url: self.orders_queue_url.clone().unwrap_or_default(),
            dlq_url: self.orders_dlq_url.clone().unwrap_or_default(),
            concurrency: self.concurrency as usize,
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
            },
        }
    }

    pub fn grpc_timeout(&self) -> Duration {
        Duration::from_millis(self.grpc_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}

pub use order_runtime::sqs::client as sqs_client;

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
        ];
        for (flags, expected) in cases {
            let error = parse(flags).unwrap_err();
            assert!(error.contains(expected), "{flags:?}: {error}");
        }
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

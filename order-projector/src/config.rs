//! Settings of projector binaries: flags with environment fallbacks (`--help` lists them all).

use std::net::SocketAddr;
use std::time::Duration;

use order_runtime::telemetry::LogFormat;
use order_store::DatabaseArgs;

use crate::read_model::READ_MODEL;
use crate::sqs::SQS_PUBLISHER;
use crate::subscription::RunSettings;

/// SQS settings (the endpoint, region and credentials come from the AWS SDK's own settings:
/// `AWS_ENDPOINT_URL_SQS`, `AWS_REGION`, the task role or `AWS_ACCESS_KEY_ID`...).
#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    /// URL of the FIFO queue events are published to.
    #[arg(long, env = "ORDERS_QUEUE_URL")]
    pub orders_queue_url: Option<String>,
    /// Concurrent send lanes (each lane keeps its orders' messages in order).
    #[arg(long, env = "ORDER_SQS_LANES", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub sqs_lanes: u16,
}

impl QueueArgs {
    /// The queue URL given, trimmed: `None` when absent or blank, an error naming the setting
    /// when it is not an http(s) URL (the SDK would only refuse it at the first send, and the
    /// service would run unready for ever).
    pub fn queue_url(&self) -> Result<Option<String>, String> {
        match self.orders_queue_url.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                Ok(Some(url.to_owned()))
            }
            Some(url) => Err(format!(
                "--orders-queue-url (ORDERS_QUEUE_URL) must be an http(s) URL, got {url:?}"
            )),
        }
    }
}

/// How the subscriptions' loops behave: leases, polling, shutdown.
#[derive(Debug, Clone, clap::Args)]
pub struct LoopArgs {
    /// How long a subscription's lease lasts without renewal (ms): a dead owner is replaced
    /// within this time.
    #[arg(long, env = "ORDER_PROJECTOR_LEASE_TTL_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1000..))]
    pub lease_ttl_ms: u64,
    /// How long a caught-up subscription waits for a notification before polling (ms).
    #[arg(long, env = "ORDER_PROJECTOR_POLL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub poll_ms: u64,
    /// How often a standby instance tries to take a lease (ms).
    #[arg(long, env = "ORDER_PROJECTOR_STANDBY_POLL_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub standby_poll_ms: u64,
    /// This instance's name in leases (default: host name, process id and a random suffix).
    /// One per running process: a second process under the same name is found and stands by
    /// under a name of its own (an ERROR line); a restart under it takes the lease back at once.
    #[arg(long, env = "ORDER_PROJECTOR_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Seconds in-flight work gets to finish after SIGTERM.
    #[arg(long, env = "ORDER_SHUTDOWN_GRACE_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_seconds: u64,
}

impl LoopArgs {
    /// This instance's name in leases.
    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(default_instance_id)
    }

    /// The lease's time to live.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    /// The loop settings these flags describe.
    pub fn settings(&self) -> RunSettings {
        RunSettings {
            owner: self.instance_id(),
            lease_ttl: self.lease_ttl(),
            poll: Duration::from_millis(self.poll_ms),
            standby_poll: Duration::from_millis(self.standby_poll_ms),
            ..RunSettings::default()
        }
    }

    /// How long subscriptions get to finish after SIGTERM.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}

/// `order-projector run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Admin HTTP listen address (/healthz, /readyz, /metrics).
    #[arg(long, env = "ORDER_ADMIN_ADDR", default_value = "127.0.0.1:9465")]
    pub admin_addr: SocketAddr,
    /// Where the database is.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Where SQS is.
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Subscriptions this instance runs (comma separated): read_model, sqs_publisher.
    #[arg(long, env = "ORDER_PROJECTOR_SUBSCRIPTIONS", value_delimiter = ',',
          default_value = "read_model,sqs_publisher", value_parser = subscription_name)]
    pub subscriptions: Vec<String>,
    /// Events per read-model transaction (at most: a page holds what the log has).
    #[arg(long, env = "ORDER_PROJECTOR_READ_MODEL_PAGE", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub read_model_page: u32,
    /// Events per SQS publishing round.
    #[arg(long, env = "ORDER_PROJECTOR_SQS_PAGE", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sqs_page: u32,
    /// Leases, polling, shutdown.
    #[command(flatten)]
    pub run: LoopArgs,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
}

impl RunArgs {
    /// Check what clap cannot: known subscription names, a queue URL when publishing.
    pub fn validate(&self) -> Result<(), String> {
        for name in &self.subscriptions {
            if name != READ_MODEL && name != SQS_PUBLISHER {
                return Err(format!(
                    "unknown subscription {name:?} in --subscriptions (known: {READ_MODEL}, {SQS_PUBLISHER})"
                ));
            }
        }
        let queue_url = self.queue.queue_url()?;
        if self.subscriptions.iter().any(|s| s == SQS_PUBLISHER) && queue_url.is_none() {
            return Err(
                "the sqs_publisher subscription needs --orders-queue-url (ORDERS_QUEUE_URL)"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// This instance's name in leases.
    pub fn instance_id(&self) -> String {
        self.run.instance_id()
    }

    /// The lease's time to live.
    pub fn lease_ttl(&self) -> Duration {
        self.run.lease_ttl()
    }
}

/// `host-pid-random`: unique per process, readable in `status`.
pub fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..6])
}

pub use order_runtime::sqs::client as sqs_client;

/// A subscription name of `--subscriptions`, spaces around it trimmed (`read_model, sqs_publisher`).
pub(crate) fn subscription_name(name: &str) -> Result<String, String> {
    Ok(name.trim().to_owned())
}

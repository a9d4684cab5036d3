//! Command lines: [`main`] is the `order-projector` binary (the read model and the SQS
//! publisher: run, replay, republish, status); [`Service`] is the same for a team's own
//! projector binary, with its own projections and sinks, in one call.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use order_runtime::{cli, probe, shutdown, telemetry};
use order_store::{DatabaseArgs, EventStore};

use crate::config::{LoopArgs, QueueArgs, RunArgs, default_instance_id, sqs_client};
use crate::projection::Projection;
use crate::projector::Projector;
use crate::read_model::ReadModel;
use crate::replay::{Progress, ReplayError, ReplayOptions};
use crate::sink::Sink;
use crate::sqs::{Publisher, SQS_PUBLISHER, SqsPublisher};
use crate::startup::App;
use crate::subscription::Subscription;

const NAME: &str = "order-projector";

/// `replay`'s settings, shared by every projector binary.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The projection to rebuild.
    #[arg(long, env = "ORDER_PROJECTOR_REPLAY_PROJECTION")]
    pub projection: String,
    /// Where the database is.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Events per read.
    #[arg(long, env = "ORDER_PROJECTOR_REPLAY_PAGE", default_value_t = 5_000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub page: u32,
    /// Progress display.
    #[arg(
        long,
        env = "ORDER_PROJECTOR_REPLAY_PROGRESS",
        value_enum,
        default_value = "auto"
    )]
    pub progress: Progress,
    /// Rebuild even if the tables were built by a newer version of the projection (after
    /// rolling its code back).
    #[arg(long, env = "ORDER_PROJECTOR_REPLAY_ALLOW_OLDER_VERSION", num_args = 0..=1, require_equals = true,

          default_missing_value = "true", default_value = "false",

          action = clap::ArgAction::Set,

          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_older_version: bool,
    /// How long the rebuild's lease lasts without renewal (ms). Should the replay die, another
    /// replay may start after at most this.
    #[arg(long, env = "ORDER_PROJECTOR_REPLAY_LEASE_TTL_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1000..=3_600_000))]
    pub lease_ttl_ms: u64,
    /// How long the projection's lease lasts once the replay takes it from the live projector
    /// for its catch-up and swap, its last seconds (ms; renewed meanwhile). Should the replay
    /// die then, the live projector resumes after at most this. Default: the live
    /// projector's own lease time, `run --lease-ttl-ms` (`ORDER_PROJECTOR_LEASE_TTL_MS` when
    /// set, else 10000).
    #[arg(long, env = "ORDER_PROJECTOR_REPLAY_PROJECTION_LEASE_TTL_MS",
          value_parser = clap::value_parser!(u64).range(1000..=3_600_000))]
    pub projection_lease_ttl_ms: Option<u64>,
    /// Apply page after page with the projection's own apply, even when it has a faster bulk
    /// path (the same tables; to compare the two, or to measure the generic path).
    #[arg(long, env = "ORDER_PROJECTOR_REPLAY_NO_BULK", num_args = 0..=1, require_equals = true,

          default_missing_value = "true", default_value = "false",

          action = clap::ArgAction::Set,

          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_bulk: bool,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: telemetry::LogFormat,
}

/// `status`'s settings.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Where the database is.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// JSON for scripts instead of a table.
    #[arg(long, env = "ORDER_PROJECTOR_STATUS_JSON", num_args = 0..=1, require_equals = true,

          default_missing_value = "true", default_value = "false",

          action = clap::ArgAction::Set,

          value_parser = clap::builder::BoolishValueParser::new())]
    pub json: bool,
}

/// `healthcheck`'s settings.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to probe (default: `/readyz` on the admin address, readiness). A container
    /// health check passes `/healthz`, liveness: a database outage must not get the task
    /// killed.
    #[arg(long, env = "ORDER_HEALTHCHECK_URL")]
    pub url: Option<String>,
    /// The admin address of the instance to probe.
    #[arg(long, env = "ORDER_ADMIN_ADDR", default_value = "127.0.0.1:9465")]
    pub admin_addr: String,
}

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
        #[command(flatten)]
        replay: ReplayArgs,
        /// Orders folded in memory before they are written out (bounds memory).
        #[arg(
            long,
            env = "ORDER_PROJECTOR_REPLAY_BATCH_ORDERS",
            default_value_t = 250_000,
            value_parser = clap::value_parser!(u64).range(1..=100_000_000)
        )]
        batch_orders: u64,
    },
    /// Send events with FROM <= position <= TO to SQS again (same deduplication ids).
    Republish {
        #[command(flatten)]
        range: RepublishRange,
        #[command(flatten)]
        queue: QueueArgs,
    },
    /// Head of the log, and each subscription's version, checkpoint, lag, owner and last error.
    Status(StatusArgs),
    /// Exit 0 when the admin readiness endpoint answers 200 (for container health checks).
    Healthcheck(HealthcheckArgs),
}

/// What `republish` sends again (FROM <= position <= TO), the database it reads, and its logs:
/// the same flags in `order-projector republish` and a team's `republish --sink NAME`.
#[derive(Debug, clap::Args)]
struct RepublishRange {
    /// First global position to send again.
    #[arg(long, env = "ORDER_PROJECTOR_REPUBLISH_FROM")]
    from: u64,
    /// Default: the current head of the log.
    #[arg(long, env = "ORDER_PROJECTOR_REPUBLISH_TO")]
    to: Option<u64>,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: telemetry::LogFormat,
}

/// The `order-projector` binary's entry point (also linked into order-e2e's test binaries).
pub fn main() {
    let parsed: Cli = cli::parse_or_default(NAME, "run");
    let runtime = cli::runtime(NAME);
    std::process::exit(runtime.block_on(execute(parsed.command)));
}

fn store(binary: &str, database: &DatabaseArgs, role: &str) -> EventStore {
    match EventStore::new(database.store_config(role)) {
        Ok(store) => store,
        Err(e) => cli::fail(binary, &e.to_string()),
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
            replay,
            batch_orders,
        } => {
            let known = [Subscription::projection(
                ReadModel::new().batch_orders(usize::try_from(batch_orders).unwrap_or(usize::MAX)),
            )];
            run_replay(NAME, &known, replay).await
        }
        Command::Republish { range, queue } => {
            telemetry::init_logging(range.log_format);
            let url = match queue.queue_url() {
                Ok(Some(url)) => url,
                Ok(None) => cli::fail(
                    NAME,
                    "republish needs --orders-queue-url (ORDERS_QUEUE_URL)",
                ),
                Err(why) => cli::fail(NAME, &why),
            };
            let (store, through, shutdown) = match republish_range(NAME, &range).await {
                Ok(range) => range,
                Err(code) => return code,
            };
            let from = range.from;
            let publisher = Publisher::new(sqs_client().await, url, usize::from(queue.sqs_lanes));
            let sink = SqsPublisher::new(publisher);
            let republished =
                crate::republish::republish_sqs(&store, &sink, from, through, &shutdown).await;
            republish_done(
                NAME,
                SQS_PUBLISHER,
                republished,
                from,
                through,
                " to SQS, which drops any whose deduplication id it saw in the last 5 minutes",
            )
        }
        Command::Status(args) => {
            let known = [Subscription::projection(ReadModel::new())];
            run_status(NAME, &known, args).await
        }
        Command::Healthcheck(args) => run_healthcheck(args).await,
    }
}

/// `replay --projection NAME` among `known`: prints one line, returns the exit code.
async fn run_replay(binary: &str, known: &[Subscription], args: ReplayArgs) -> i32 {
    telemetry::init_logging(args.log_format);
    let projections: Vec<&Subscription> = known.iter().filter(|s| s.version().is_some()).collect();
    let Some(subscription) = projections.iter().find(|s| s.name() == args.projection) else {
        let known: Vec<&str> = projections.iter().map(|s| s.name()).collect();
        cli::fail(
            binary,
            &format!(
                "unknown projection {:?} (known: {})",
                args.projection,
                known.join(", ")
            ),
        );
    };
    cli::note_from_environment(
        binary,
        &[
            "ORDER_PROJECTOR_REPLAY_PROJECTION",
            "ORDER_PROJECTOR_REPLAY_ALLOW_OLDER_VERSION",
        ],
        &format!(
            "rebuilding {}{}",
            args.projection,
            if args.allow_older_version {
                " even over tables of a newer version"
            } else {
                ""
            }
        ),
    );
    let store = store(binary, &args.database, &format!("{binary}-replay"));
    let options = ReplayOptions {
        owner: format!("replay-{}", default_instance_id()),
        page: args.page,
        progress: args.progress,
        lease_ttl: Duration::from_millis(args.lease_ttl_ms),
        live_lease_ttl: Duration::from_millis(args.projection_lease_ttl_ms.unwrap_or_else(|| {
            // The live projector's lease time, as its task would have it (a value `run`
            // would refuse counts as unset).
            std::env::var("ORDER_PROJECTOR_LEASE_TTL_MS")
                .ok()
                .and_then(|ms| ms.trim().parse::<u64>().ok())
                .filter(|ms| (1000..=3_600_000).contains(ms))
                .unwrap_or(10_000)
        })),
        allow_older: args.allow_older_version,
        bulk: !args.no_bulk,
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown::signal().await;
        let _ = stop.send(true);
    });
    let replayed = crate::subscription::caught(crate::replay::replay(
        &store,
        subscription,
        &options,
        &shutdown,
    ))
    .await
    .unwrap_or_else(|panic| Err(ReplayError::Panicked(panic)));
    match replayed {
        Ok(report) => {
            let rows: Vec<String> = report
                .rows
                .iter()
                .map(|(table, rows)| format!("{table} {rows} rows"))
                .collect();
            println!(
                "replayed {} events into {} (version {}) in {:.1}s ({:.0} events/s); checkpoint {}",
                report.events,
                rows.join(", "),
                report.version,
                report.elapsed.as_secs_f64(),
                report.events as f64 / report.elapsed.as_secs_f64().max(0.001),
                report.checkpoint
            );
            0
        }
        Err(e @ (ReplayError::Busy { .. } | ReplayError::Newer { .. })) => {
            eprintln!("{binary}: replay refused: {e} (nothing was changed)");
            1
        }
        Err(e) => {
            eprintln!("{binary}: replay failed: {e} (the live tables are unchanged)");
            1
        }
    }
}

/// What `republish` checks before it sends anything: the range (exits 2 when it is reversed, ends
/// before position 1 or starts past the head; a range inside the log whose positions hold nothing
/// to send, say only imported history, sends 0 events and exits 0), the database (1 when out of
/// reach). Returns the store, the last position to send (`to`, at most the head) and a shutdown
/// that SIGTERM or Ctrl-C sets (the page in flight ends, and the error says where to resume).
async fn republish_range(
    binary: &str,
    &RepublishRange {
        from,
        to,
        ref database,
        ..
    }: &RepublishRange,
) -> Result<(EventStore, u64, tokio::sync::watch::Receiver<bool>), i32> {
    cli::note_values_from_environment(
        binary,
        &[
            "ORDER_PROJECTOR_REPUBLISH_FROM",
            "ORDER_PROJECTOR_REPUBLISH_TO",
        ],
        &format!("republishing from position {from}"),
    );
    if let Some(to) = to
        && to < from.max(1)
    {
        let why = if to == 0 {
            "--to 0: log positions start at 1".to_owned()
        } else {
            format!("--to {to} is before --from {}", from.max(1))
        };
        cli::fail(
            binary,
            &format!("{why}: no event to republish (nothing was sent)"),
        );
    }
    let store = store(binary, database, &format!("{binary}-republish"));
    let head = match store.head_position().await {
        Ok(head) => head,
        // Not a usage error (exit 2): the database is out of reach for now.
        Err(e) => {
            eprintln!("{binary}: republish failed: {e} (nothing was sent)");
            return Err(1);
        }
    };
    if from > head {
        cli::fail(
            binary,
            &format!(
                "--from {from} is beyond the log's head ({head}): no event to republish \
                 (nothing was sent)"
            ),
        );
    }
    let through = to.map_or(head, |to| to.min(head));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown::signal().await;
        let _ = stop.send(true);
    });
    Ok((store, through, shutdown))
}

/// The line a republish ends with (`note` after the count), and its exit code.
fn republish_done(
    binary: &str,
    sink: &str,
    republished: Result<crate::republish::Republished, crate::republish::RepublishError>,
    from: u64,
    through: u64,
    note: &str,
) -> i32 {
    match republished {
        Ok(crate::republish::Republished {
            sent,
            left,
            unsent_at,
        }) => {
            let left = match unsent_at {
                _ if left == 0 => String::new(),
                Some(at) => format!(
                    "; {left} events after {sink}'s checkpoint were left to it: its event at \
                     position {at}, before --from {from}, is not sent yet, and they could \
                     overtake it (it sends them in order; to send them too, start at or before \
                     position {at})"
                ),
                None => format!(
                    "; {left} events written since it began were left to {sink}, which sends \
                     them"
                ),
            };
            println!("republished {sent} events (positions {from}..={through}){note}{left}");
            0
        }
        Err(e) => {
            eprintln!("{binary}: republish failed: {e}");
            1
        }
    }
}

async fn run_status(binary: &str, known: &[Subscription], args: StatusArgs) -> i32 {
    let store = store(binary, &args.database, &format!("{binary}-status"));
    match crate::status::collect(&store, known).await {
        Ok(status) => {
            if args.json {
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
            eprintln!("{binary}: status failed: {e}");
            1
        }
    }
}

async fn run_healthcheck(args: HealthcheckArgs) -> i32 {
    let url = args
        .url
        .unwrap_or_else(|| format!("http://{}/readyz", args.admin_addr));
    probe::run(&url).await
}

/// The admin address of a team's projector binary unless `ORDER_ADMIN_ADDR` says otherwise
/// (order-projector's is 9465).
const SERVICE_ADMIN_ADDR: &str = "127.0.0.1:9467";

/// `run` of a team's projector binary.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceRunArgs {
    /// Admin HTTP listen address (/healthz, /readyz, /metrics).
    #[arg(long, env = "ORDER_ADMIN_ADDR", default_value = SERVICE_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,
    /// Where the database is.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Subscriptions this instance runs (comma separated; default: all of the binary's).
    #[arg(long, env = "ORDER_PROJECTOR_SUBSCRIPTIONS", value_delimiter = ',',
          value_parser = crate::config::subscription_name)]
    pub subscriptions: Vec<String>,
    /// Leases, polling, shutdown.
    #[command(flatten)]
    pub run: LoopArgs,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: telemetry::LogFormat,
}

#[derive(Debug, Parser)]
struct ServiceCli {
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Follow the log into the projections and sinks (the default).
    Run(Box<ServiceRunArgs>),
    /// Rebuild a projection from position 0 into shadow tables and swap it in.
    Replay(ReplayArgs),
    /// Offer one of the binary's sinks the events with FROM <= position <= TO again (its
    /// checkpoint does not move).
    Republish {
        /// The sink.
        #[arg(long, env = "ORDER_PROJECTOR_REPUBLISH_SINK")]
        sink: String,
        #[command(flatten)]
        range: RepublishRange,
    },
    /// Head of the log, and each subscription's version, checkpoint, lag, owner and last error.
    Status(StatusArgs),
    /// Exit 0 when the admin readiness endpoint answers 200 (for container health checks).
    Healthcheck(HealthcheckArgs),
}

/// [`ServiceCli`]'s command, its `healthcheck` probing the team binary's own admin address.
fn service_command() -> clap::Command {
    use clap::CommandFactory;
    ServiceCli::command().mut_subcommand("healthcheck", |healthcheck| {
        healthcheck.mut_arg("admin_addr", |arg| arg.default_value(SERVICE_ADMIN_ADDR))
    })
}

/// A team's projector binary in one call: `run` (the default), `replay --projection NAME`,
/// `republish --sink NAME --from POS [--to POS]`, `status [--json]` and `healthcheck`, with the
/// same settings, logs, metrics, leases and shutdown as `order-projector`.
///
/// ```no_run
/// use order_projector::cli::Service;
/// use order_projector::ReadModel;
///
/// fn main() {
///     Service::new("my-projector", "Our read tables")
///         .projection(ReadModel::new())
///         .main()
/// }
/// ```
#[derive(Debug)]
pub struct Service {
    name: &'static str,
    about: &'static str,
    subscriptions: Vec<Subscription>,
}

impl Service {
    /// A binary called `name` (in logs, `--help` and the database's application name).
    pub fn new(name: &'static str, about: &'static str) -> Self {
        Self {
            name,
            about,
            subscriptions: Vec::new(),
        }
    }

    /// Add a projection.
    pub fn projection<P: Projection>(mut self, projection: P) -> Self {
        self.subscriptions
            .push(Subscription::projection(projection));
        self
    }

    /// Add a sink.
    pub fn sink<S: Sink>(mut self, sink: S) -> Self {
        self.subscriptions.push(Subscription::sink(sink));
        self
    }

    /// Parse the command line, run the subcommand, exit with its status.
    pub fn main(self) -> ! {
        let command = service_command()
            .name(self.name)
            .bin_name(self.name)
            .about(self.about)
            .version(env!("CARGO_PKG_VERSION"));
        let command = cli::with_footer(command, cli::ENVIRONMENT_HELP);
        // No subcommand (nothing, or flags only) means `run`, as for order-projector.
        let parsed: ServiceCli = cli::parse_or_default_command(self.name, command, "run");
        let runtime = cli::runtime(self.name);
        std::process::exit(runtime.block_on(self.execute(parsed.command)))
    }

    async fn execute(self, command: ServiceCommand) -> i32 {
        let name = self.name;
        // A replay or a republish of subscriptions whose names `run` would refuse must not
        // run either (a table name is SQL); `run` checks those it runs, `status` only reads.
        if let Err(why) = crate::projector::check_subscriptions(&self.subscriptions)
            && matches!(
                command,
                ServiceCommand::Replay(_) | ServiceCommand::Republish { .. }
            )
        {
            cli::fail(name, &why);
        }
        match command {
            ServiceCommand::Run(args) => {
                telemetry::init(name, args.log_format);
                let known: Vec<&str> = self.subscriptions.iter().map(Subscription::name).collect();
                if let Some(unknown) = args
                    .subscriptions
                    .iter()
                    .find(|s| !known.contains(&s.as_str()))
                {
                    cli::fail(
                        name,
                        &format!(
                            "unknown subscription {unknown:?} in --subscriptions (known: {})",
                            known.join(", ")
                        ),
                    );
                }
                let store = store(name, &args.database, name);
                let mut builder = Projector::builder(store).settings(args.run.settings());
                for subscription in self.subscriptions {
                    if args.subscriptions.is_empty()
                        || args.subscriptions.iter().any(|s| s == subscription.name())
                    {
                        builder = builder.subscription(subscription);
                    }
                }
                let projector = match builder.build() {
                    Ok(projector) => projector,
                    Err(e) => cli::fail(name, &e.to_string()),
                };
                match crate::service::App::start(projector, args.admin_addr, args.run.grace()).await
                {
                    Ok(app) => {
                        tracing::info!(admin = %app.admin_addr(), "{name} running");
                        app.run_until(shutdown::signal()).await;
                        order_runtime::trace::shutdown();
                        0
                    }
                    Err(e) => cli::fail(name, &e.to_string()),
                }
            }
            ServiceCommand::Replay(args) => run_replay(name, &self.subscriptions, args).await,
            ServiceCommand::Republish { sink, range } => {
                telemetry::init_logging(range.log_format);
                let sinks: Vec<&Subscription> = self
                    .subscriptions
                    .iter()
                    .filter(|s| s.version().is_none())
                    .collect();
                let Some(subscription) = sinks.iter().find(|s| s.name() == sink) else {
                    let known: Vec<&str> = sinks.iter().map(|s| s.name()).collect();
                    let known = if known.is_empty() {
                        "this binary has none".to_owned()
                    } else {
                        format!("known: {}", known.join(", "))
                    };
                    cli::fail(name, &format!("unknown sink {sink:?} ({known})"));
                };
                let (store, through, shutdown) = match republish_range(name, &range).await {
                    Ok(range) => range,
                    Err(code) => return code,
                };
                let republished = subscription
                    .republish_reporting(&store, range.from, through, &shutdown)
                    .await;
                republish_done(name, &sink, republished, range.from, through, "")
            }
            ServiceCommand::Status(args) => run_status(name, &self.subscriptions, args).await,
            ServiceCommand::Healthcheck(args) => run_healthcheck(args).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_setting_of_every_subcommand_has_an_environment_variable() {
        for command in [super::Cli::command(), super::service_command()] {
            let missing = order_runtime::cli::settings_without_environment(&command);
            let undocumented = order_runtime::cli::settings_without_help(&command);
            assert!(
                undocumented.is_empty(),
                "no description in --help: {undocumented:?}"
            );
            assert!(missing.is_empty(), "no environment variable: {missing:?}");
            let not_boolish = order_runtime::cli::booleans_not_boolish(&command);
            assert!(
                not_boolish.is_empty(),
                "booleans without --flag=false and yes/no/1/0: {not_boolish:?}"
            );
        }
    }

    /// `--subscriptions` takes names with spaces around them, as its default is written.
    #[test]
    fn a_teams_binary_republishes_to_a_sink_it_names() {
        use clap::FromArgMatches;
        let matches = super::service_command()
            .try_get_matches_from([
                "my-projector",
                "republish",
                "--sink",
                "webhook",
                "--from",
                "5",
                "--database-url",
                "postgres://x",
            ])
            .unwrap();
        match super::ServiceCli::from_arg_matches(&matches)
            .unwrap()
            .command
        {
            super::ServiceCommand::Republish { sink, range } => {
                assert_eq!((sink.as_str(), range.from, range.to), ("webhook", 5, None));
            }
            other => panic!("{other:?}"),
        }
        // The sink is named: there is no default.
        assert!(
            super::service_command()
                .try_get_matches_from(["my-projector", "republish", "--from", "5"])
                .is_err()
        );
    }

    /// A queue URL that is blank or not an http(s) URL is bad configuration: the service
    /// exits saying so, instead of running unready for ever (it did).
    #[test]
    fn a_blank_or_non_url_queue_url_is_refused_at_the_start() {
        let run = |queue_url: &str, subscriptions: &str| {
            run_args(&[
                "--subscriptions",
                subscriptions,
                "--orders-queue-url",
                queue_url,
            ])
            .validate()
        };
        let both = "read_model,sqs_publisher";
        for (url, why) in [
            ("", "needs --orders-queue-url (ORDERS_QUEUE_URL)"),
            ("  ", "needs --orders-queue-url (ORDERS_QUEUE_URL)"),
            ("notaurl", "must be an http(s) URL, got \"notaurl\""),
            ("sqs://q", "must be an http(s) URL"),
        ] {
            let error = run(url, both).unwrap_err();
            assert!(error.contains(why), "{url:?}: {error}");
        }
        // Not publishing, a blank URL is no URL; one that is not a URL is still refused.
        assert_eq!(run("", "read_model"), Ok(()));
        assert!(run("notaurl", "read_model").is_err());
        assert_eq!(
            run(" http://127.0.0.1:9324/000000000000/orders.fifo ", both),
            Ok(())
        );
    }

    /// `order-projector run` with a database URL and `args`, parsed.
    fn run_args(args: &[&str]) -> crate::config::RunArgs {
        use clap::FromArgMatches;
        let mut argv = vec!["order-projector", "run", "--database-url", "postgres://x"];
        argv.extend(args);
        let matches = super::Cli::command().try_get_matches_from(argv).unwrap();
        match super::Cli::from_arg_matches(&matches).unwrap().command {
            super::Command::Run(run) => *run,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subscription_names_are_trimmed() {
        let run = run_args(&["--subscriptions", "read_model, sqs_publisher"]);
        assert_eq!(run.subscriptions, ["read_model", "sqs_publisher"]);
    }

    /// A boolean flag: bare, or with a value as its environment variable takes it.
    #[test]
    fn a_boolean_flag_takes_a_value_too_so_that_it_can_be_turned_off() {
        use clap::FromArgMatches;
        let json = |flag: Option<&str>| {
            let mut args = vec![
                "order-projector",
                "status",
                "--database-url",
                "postgres://x",
            ];
            args.extend(flag);
            let matches = super::Cli::command().try_get_matches_from(args).unwrap();
            match super::Cli::from_arg_matches(&matches).unwrap().command {
                super::Command::Status(status) => status.json,
                other => panic!("{other:?}"),
            }
        };
        assert!(!json(None));
        for on in ["--json", "--json=true", "--json=1", "--json=yes"] {
            assert!(json(Some(on)), "{on}");
        }
        for off in ["--json=false", "--json=0", "--json=no"] {
            assert!(!json(Some(off)), "{off}");
        }
        let bad = super::Cli::command().try_get_matches_from([
            "order-projector",
            "status",
            "--database-url",
            "postgres://x",
            "--json=maybe",
        ]);
        assert!(bad.is_err());
    }

    /// A team's binary runs its admin endpoint on 9467, and its healthcheck probes that
    /// (order-projector's 9465 would be another process, or none).
    #[test]
    fn a_team_binary_probes_its_own_admin_address() {
        let default = |command: &clap::Command, subcommand: &str| {
            let arg = command
                .find_subcommand(subcommand)
                .and_then(|s| s.get_arguments().find(|a| a.get_id() == "admin_addr"))
                .map(|a| a.get_default_values().to_vec());
            arg.unwrap_or_default()
        };
        let team = super::service_command();
        assert_eq!(default(&team, "run"), [super::SERVICE_ADMIN_ADDR]);
        assert_eq!(default(&team, "healthcheck"), [super::SERVICE_ADMIN_ADDR]);
        let order_projector = super::Cli::command();
        assert_eq!(default(&order_projector, "run"), ["127.0.0.1:9465"]);
        assert_eq!(default(&order_projector, "healthcheck"), ["127.0.0.1:9465"]);
    }
}

//! `order-grpc`: serve the gRPC API (default), apply migrations, or probe readiness.

use crate::{App, ServeArgs};
use clap::{Parser, Subcommand};
use order_runtime::{cli, probe, shutdown, telemetry};
use order_store::DatabaseArgs;

#[derive(Debug, Parser)]
#[command(
    name = "order-grpc",
    version,
    about = "The order ledger's gRPC service"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gRPC API and the admin HTTP endpoints (the default).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations (under an advisory lock) and exit.
    Migrate {
        /// Print the migrations a run would apply, read from the database's schema history,
        /// and apply nothing (read-only session, no lock).
        #[arg(long, env = "ORDER_MIGRATE_DRY_RUN", num_args = 0..=1, require_equals = true,

              default_missing_value = "true", default_value = "false",

              action = clap::ArgAction::Set,

              value_parser = clap::builder::BoolishValueParser::new())]
        dry_run: bool,
        #[command(flatten)]
        database: DatabaseArgs,
        /// Log line format.
        #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
        log_format: telemetry::LogFormat,
    },
    /// Exit 0 when the admin readiness endpoint answers 200 (for container health checks).
    Healthcheck {
        /// The URL to probe; default: /readyz on ORDER_ADMIN_ADDR (readiness). A container
        /// health check passes `/healthz`, liveness: a database outage must not get the task
        /// killed.
        #[arg(long, env = "ORDER_HEALTHCHECK_URL")]
        url: Option<String>,
        /// The admin address of the instance to probe.
        #[arg(long, env = "ORDER_ADMIN_ADDR", default_value = "127.0.0.1:9464")]
        admin_addr: String,
    },
}

const NAME: &str = "order-grpc";

/// The binary's entry point (also linked into order-e2e's test binaries).
pub fn main() {
    let parsed: Cli = cli::parse_or_default(NAME, "serve");
    let runtime = cli::runtime(NAME);
    let code = runtime.block_on(async {
        match parsed.command {
            Some(Command::Serve(args)) => serve(*args).await,
            Some(Command::Migrate {
                dry_run: true,
                database,
                log_format,
            }) => migrate_dry_run(database, log_format).await,
            Some(Command::Migrate {
                dry_run: false,
                database,
                log_format,
            }) => migrate(database, log_format).await,
            Some(Command::Healthcheck { url, admin_addr }) => {
                let url = url.unwrap_or_else(|| format!("http://{admin_addr}/readyz"));
                probe::run(&url).await
            }
            None => unreachable_default(),
        }
    });
    std::process::exit(code);
}

fn unreachable_default() -> i32 {
    // `serve` is inserted above when no subcommand is given.
    cli::fail(NAME, "no subcommand")
}

async fn serve(args: ServeArgs) -> i32 {
    telemetry::init(NAME, args.log_format);
    if let Err(why) = args.tokens().and(args.tls().map(|_| ())) {
        cli::fail(NAME, &why);
    }
    let app = match App::build(args).await {
        Ok(app) => app,
        Err(e) => cli::fail(NAME, &format!("{e:#}")),
    };
    let code = match app.run_until(shutdown::signal()).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "order-grpc failed");
            1
        }
    };
    order_runtime::trace::shutdown();
    code
}

async fn migrate(database: DatabaseArgs, log_format: telemetry::LogFormat) -> i32 {
    telemetry::init_logging(log_format);
    let mut config = database.store_config("order-grpc-migrate");
    // Migrations may take longer than a request may.
    config.statement_timeout = std::time::Duration::ZERO;
    match order_store::migrate(&config).await {
        Ok(report) if report.applied.is_empty() => {
            let latest = order_store::migrate::latest_version();
            let ahead = if report.version > latest {
                format!(" (ahead of this binary's newest, {latest}: a newer release migrated it)")
            } else {
                String::new()
            };
            tracing::info!(
                version = report.version,
                "nothing to apply: the schema is at version {}{ahead}",
                report.version
            );
            0
        }
        Ok(report) => {
            tracing::info!(applied = ?report.applied, version = report.version, "migrations applied");
            0
        }
        Err(e) => {
            tracing::error!(error = %e, "migration failed");
            eprintln!("{NAME}: migration failed: {e}");
            1
        }
    }
}

async fn migrate_dry_run(database: DatabaseArgs, log_format: telemetry::LogFormat) -> i32 {
    telemetry::init_logging(log_format);
    cli::note_from_environment(
        NAME,
        &["ORDER_MIGRATE_DRY_RUN"],
        "a dry run, nothing is applied",
    );
    let config = database.store_config("order-grpc-migrate-dry-run");
    match order_store::migrate::plan(&config).await {
        Ok(plan) => {
            print!("{}", describe_plan(&plan));
            0
        }
        Err(e) => {
            eprintln!("{NAME}: migrate --dry-run failed: {e}");
            1
        }
    }
}

/// The dry run's report: where the schema history is, and what a run would apply.
fn describe_plan(plan: &order_store::migrate::MigrationPlan) -> String {
    let at = match plan.current {
        Some(version) => format!("schema history at version {version}"),
        None => "no schema history yet".to_owned(),
    };
    if plan.pending.is_empty() {
        let latest = order_store::migrate::latest_version();
        let ahead = match plan.current {
            Some(version) if version > latest => {
                format!(" (ahead of this binary's newest, {latest}: a newer release migrated it)")
            }
            _ => String::new(),
        };
        return format!("{NAME} migrate --dry-run: {at}{ahead}; nothing to apply\n");
    }
    let mut text = format!(
        "{NAME} migrate --dry-run: {at}; {} migration(s) would be applied:\n",
        plan.pending.len()
    );
    for name in &plan.pending {
        text.push_str(&format!("  {name}\n"));
    }
    text
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

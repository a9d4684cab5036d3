//! `order-import`: move a legacy order system's history into the log.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use order_import::generate::{Plan, expected_path, generate_until};
use order_import::legacy::IdOrder;
use order_import::run::{Options, import_until};
use order_import::source::{Format, open};
use order_store::{DatabaseArgs, EventStore};

// The importer turns every legacy record into a few dozen short-lived strings and vectors
// (JSON fields, payloads, COPY rows): with glibc's allocator, malloc and free were a third of
// its CPU, and its CPU is taken from the two PostgreSQL backends it feeds on a small machine.
// So it runs on mimalloc, which order-runtime sets as every linking binary's allocator.

/// Import a legacy order system's export (JSON Lines or CSV, docs/import.md) into the log:
/// each legacy order becomes a stream telling its history in this system's events, exactly
/// once (ids derived from the legacy ids), resumable after any crash, with no side effects
/// (imported events are never published to SQS, so the worker never acts on them).
///
/// Exit status: 0 when everything was imported (or was already), 2 when some records were
/// rejected (see the rejects file), 1 on an error that stopped the import or a bad setting
/// (which stops it before it begins). SIGTERM or Ctrl-C
/// stops it gracefully (exit 1): no new batch starts, the batches being written commit, and the
/// same command run again resumes.
#[derive(Debug, Parser)]
#[command(name = "order-import", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import an export.
    Run(RunArgs),
    /// Write a realistic legacy export (with a share of bad records) for benchmarks and tests.
    /// Stopped by SIGTERM or Ctrl-C, it deletes what it wrote (a partial export and its
    /// expected rejects would not agree) and exits 1; after a kill the files are unusable:
    /// run it again.
    Generate(GenerateArgs),
    /// Show an import's progress row.
    Status {
        /// The import's name.
        // Not ORDER_IMPORT_NAME: a name exported to look at one import must not make the next
        // `run` of another export continue this one's row.
        #[arg(long, env = "ORDER_IMPORT_STATUS_NAME")]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The export: a JSON Lines file, or a directory of CSV tables.
    #[arg(long, env = "ORDER_IMPORT_INPUT")]
    input: PathBuf,
    /// The export's format (default: a directory is CSV, a file JSON Lines).
    #[arg(long, env = "ORDER_IMPORT_FORMAT", value_enum)]
    format: Option<Format>,
    /// The import's name: its progress row, and the rejects file's default name. Runs of the
    /// same export should use the same name. Default: the input's file name without its
    /// extension, in lowercase, other characters than a-z 0-9 _ . - as `-` (`Legacy
    /// 2026.jsonl` -> `legacy-2026`, a directory `export/` -> `export`, `/dev/null` -> `null`).
    #[arg(long, env = "ORDER_IMPORT_NAME")]
    name: Option<String>,
    /// The legacy system's name: part of every derived id, so that two systems with the same
    /// order ids give different orders. An import's first run records it, and a later run of
    /// the same import (`--name`) naming another is refused. Default: `legacy` (an import begun
    /// before sources were recorded needs it named).
    #[arg(long, env = "ORDER_IMPORT_SOURCE")]
    source: Option<String>,
    /// How the export is sorted by order_id.
    #[arg(long, env = "ORDER_IMPORT_ID_ORDER", value_enum, default_value_t = IdOrder::Text)]
    id_order: IdOrder,
    /// Where to write the rejects (JSON Lines; rewritten by every run, and locked while it
    /// runs: a run started while another writes the same file stops at once). Default:
    /// `<name>.rejects.jsonl` in the current directory.
    #[arg(long, env = "ORDER_IMPORT_REJECTS")]
    rejects: Option<PathBuf>,
    /// Orders per batch (one transaction).
    #[arg(long, env = "ORDER_IMPORT_BATCH_ORDERS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_orders: u64,
    /// Events per batch: a batch closes once it holds this many (an order is never split, so
    /// a batch may exceed it by the events of its last order).
    #[arg(long, env = "ORDER_IMPORT_BATCH_EVENTS", default_value_t = 40_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batch_events: u64,
    /// Batches written at once.
    #[arg(long, env = "ORDER_IMPORT_WRITERS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    writers: u64,
    /// At most this many events per second (leaves the database to live traffic).
    #[arg(long, env = "ORDER_IMPORT_MAX_RATE", value_parser = clap::value_parser!(u64).range(1..))]
    max_rate: Option<u64>,
    /// Print the summary as JSON on stdout.
    #[arg(long, env = "ORDER_IMPORT_JSON", num_args = 0..=1, require_equals = true,

          default_missing_value = "true", default_value = "false",

          action = clap::ArgAction::Set,

          value_parser = clap::builder::BoolishValueParser::new())]
    json: bool,
    /// No progress bar, even on a terminal (log lines every 10 s instead).
    #[arg(long, env = "ORDER_IMPORT_NO_PROGRESS", num_args = 0..=1, require_equals = true,

          default_missing_value = "true", default_value = "false",

          action = clap::ArgAction::Set,

          value_parser = clap::builder::BoolishValueParser::new())]
    no_progress: bool,
    #[command(flatten)]
    database: DatabaseArgs,
}

#[derive(Debug, clap::Args)]
struct GenerateArgs {
    /// Records to write.
    #[arg(long, env = "ORDER_IMPORT_GENERATE_ORDERS")]
    orders: u64,
    /// Where: a file (JSON Lines) or a directory (CSV).
    #[arg(long, env = "ORDER_IMPORT_GENERATE_OUT")]
    out: PathBuf,
    /// The format.
    #[arg(long, env = "ORDER_IMPORT_GENERATE_FORMAT", value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Every n-th record is bad (0: none; 1 is refused).
    #[arg(long, env = "ORDER_IMPORT_GENERATE_BAD_EVERY", default_value_t = 1_000)]
    bad_every: u64,
    /// Random seed.
    #[arg(long, env = "ORDER_IMPORT_GENERATE_SEED", default_value_t = 1)]
    seed: u64,
    /// Where to write the rejects the import must report (default: `<out>.expected.jsonl`).
    #[arg(long, env = "ORDER_IMPORT_GENERATE_EXPECTED")]
    expected: Option<PathBuf>,
}

/// `status`'s lines: what the progress row says, for a person.
fn describe(record: &order_store::ImportRecord) -> String {
    let latest = match record.finished_at {
        Some(at) => format!("finished at {}", humantime::format_rfc3339_seconds(at)),
        None => "not finished (running now, or stopped early: run it again to resume)".to_owned(),
    };
    format!(
        "import:      {}\n\
         source:      {}\n\
         runs:        {}\n\
         latest run:  {latest}; {} legacy orders read, {} orders rejected\n\
         every run:   {} orders imported ({} events); {} batches committed (those that \
         appended nothing too)\n",
        record.name,
        record
            .source
            .as_deref()
            .unwrap_or("(not recorded: its next run records it)"),
        record.runs,
        record.orders_read,
        record.orders_rejected,
        record.orders_imported,
        record.events_imported,
        record.batches,
    )
}

/// The settings read from the environment only, at the end of every subcommand's help: the
/// log lines' filter and format (on stderr; the summary, `status`'s lines and an error stay
/// plain text).
const ENVIRONMENT_HELP: &str = "\
Also read from the environment:
  RUST_LOG                     log filter (default info), e.g. info,order_store=debug
  LOG_FORMAT                   log lines on stderr: pretty (default) or json (one object a
                               line); the summary and error lines stay plain text
";

fn default_name(input: &Path) -> String {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        format!("import-{name}").chars().take(100).collect()
    } else {
        name
    }
}

/// The input file (or a file of the input directory) that `rejects` is, if it is one: every
/// run rewrites the rejects file, and would empty the export it reads.
fn rejects_overwrite_input(input: &Path, rejects: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let target = std::fs::metadata(rejects).ok()?;
    let same = |path: &Path| {
        std::fs::metadata(path)
            .is_ok_and(|m| m.is_file() && m.dev() == target.dev() && m.ino() == target.ino())
    };
    if input.is_dir() {
        std::fs::read_dir(input)
            .ok()?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| same(path))
    } else {
        same(input).then(|| input.to_path_buf())
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_name(&args.input));
    let mut config = args.database.store_config("order-import");
    // A batch is one COPY of up to tens of thousands of events: give it time on a busy server.
    config.statement_timeout = config
        .statement_timeout
        .max(std::time::Duration::from_secs(120));
    config.pool_size = config.pool_size.max(args.writers as usize + 1);
    let store = EventStore::new(config).context("the database settings")?;
    let rejects = args
        .rejects
        .clone()
        .unwrap_or_else(|| Options::new(&name).rejects);
    if let Some(clash) = rejects_overwrite_input(&args.input, &rejects) {
        anyhow::bail!(
            "--rejects {} is {}, which the run reads: it would be emptied (choose another rejects file)",
            rejects.display(),
            clash.display()
        );
    }
    let format = args.format.unwrap_or_else(|| Format::guess(&args.input));
    let input = args.input.clone();
    let id_order = args.id_order;
    let source = tokio::task::spawn_blocking(move || open(&input, format, id_order))
        .await
        .context("opening the export")??;
    let mut options = Options::new(&name);
    if let Some(source) = args.source {
        options.source = source;
        options.source_named = true;
    }
    options.batch_orders = args.batch_orders as usize;
    options.batch_events = args.batch_events as usize;
    options.writers = args.writers as usize;
    options.max_rate = args.max_rate;
    options.id_order = args.id_order;
    options.progress_bar = !args.no_progress;
    options.rejects = rejects;
    if let Some(rate) = options.max_rate {
        // Small batches keep a low rate smooth (about ten a second).
        options.batch_events = options.batch_events.min((rate as usize / 10).max(1));
    }
    // The first SIGTERM or Ctrl-C lets the batches being written commit; a second one stops at
    // once (they roll back, and the next run writes them).
    let stop = async {
        order_runtime::shutdown::signal().await;
        eprintln!(
            "[order-import] stopping once the batches being written commit (a second signal stops at once)"
        );
        tokio::spawn(async {
            order_runtime::shutdown::signal().await;
            eprintln!(
                "[order-import] stopped at once: the batches being written roll back; the next run writes them"
            );
            std::process::exit(1);
        });
    };
    let summary = import_until(&store, source, &options, stop).await?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    eprintln!(
        "[order-import] {}: {} orders read, {} imported, {} updated ({} events, {:.0} events/s), {} already in the log, {} rejected{}{} in {:.1} s",
        summary.name,
        summary.orders_read,
        summary.orders_imported,
        summary.orders_updated,
        summary.events_imported,
        summary.events_per_second,
        summary.orders_present,
        summary.orders_rejected,
        if summary.rows_rejected > 0 {
            format!(
                ", {} CSV rows without an order rejected",
                summary.rows_rejected
            )
        } else {
            String::new()
        },
        if summary.rejected > 0 {
            format!(" (see {})", summary.rejects_file)
        } else {
            String::new()
        },
        summary.seconds
    );
    Ok(if summary.rejected > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn main() -> ExitCode {
    // Exit status 2 says "finished with rejects": a bad setting is 1, an error that stopped
    // the import before it began.
    let cli: Cli =
        order_runtime::cli::parse_with_footer_exiting("order-import", ENVIRONMENT_HELP, 1);
    if let Err(why) = order_runtime::telemetry::init_tool_logging() {
        eprintln!("order-import: {why}");
        return ExitCode::from(1);
    }
    let result = match cli.command {
        Command::Generate(args) => {
            let expected = args.expected.unwrap_or_else(|| expected_path(&args.out));
            let plan = Plan {
                orders: args.orders,
                bad_every: args.bad_every,
                seed: args.seed,
                format: args.format,
            };
            // SIGTERM or Ctrl-C: the generator stops at the next record and deletes its files.
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(order_runtime::shutdown::signal());
                    flag.store(true, Ordering::Relaxed);
                }
            });
            generate_until(&plan, &args.out, &expected, &stop)
                .map(|generated| {
                    eprintln!(
                        "[order-import] wrote {} records ({} good orders telling {} events, {} bad) to {}, {} bytes; expected rejects in {}",
                        generated.records,
                        generated.good,
                        generated.events,
                        generated.bad,
                        args.out.display(),
                        generated.bytes,
                        expected.display()
                    );
                    println!("{}", serde_json::to_string(&generated).unwrap_or_default());
                    ExitCode::SUCCESS
                })
                .map_err(anyhow::Error::from)
        }
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the runtime")
            .and_then(|runtime| runtime.block_on(run(args))),
        Command::Status { name, database } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")
            .and_then(|runtime| {
                runtime.block_on(async {
                    let store = EventStore::new(database.store_config("order-import"))?;
                    match store.import_status(&name).await? {
                        Some(record) => {
                            print!("{}", describe(&record));
                            Ok(ExitCode::SUCCESS)
                        }
                        None => {
                            eprintln!("[order-import] no import named {name:?} ran");
                            Ok(ExitCode::from(1))
                        }
                    }
                })
            }),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("[order-import] error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn status_reads_as_lines_with_the_finish_time_in_rfc_3339() {
        let mut record = order_store::ImportRecord {
            name: "legacy-2026-12".into(),
            runs: 2,
            orders_read: 1000,
            orders_rejected: 3,
            orders_imported: 997,
            events_imported: 5012,
            batches: 4,
            source: Some("shop-eu".into()),
            finished_at: Some(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_392_624),
            ),
        };
        let text = super::describe(&record);
        assert_eq!(
            text,
            "import:      legacy-2026-12\n\
             source:      shop-eu\n\
             runs:        2\n\
             latest run:  finished at 2026-12-04T13:57:04Z; 1000 legacy orders read, 3 orders rejected\n\
             every run:   997 orders imported (5012 events); 4 batches committed (those that appended nothing too)\n"
        );
        record.finished_at = None;
        record.source = None;
        let text = super::describe(&record);
        assert!(text.contains("not finished"));
        // Counted as each batch commits: nothing to add while it runs.
        assert!(text.contains("3 orders rejected\n"), "{text}");
        assert!(text.contains("source:      (not recorded"));
    }

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

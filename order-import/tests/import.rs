//! The import against a real PostgreSQL: exact rejects, exactly once, resumable, real orders.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use order_import::generate::{Expected, Generated, Plan, generate, kinds_for};
use order_import::run::{Options, Summary, import};
use order_import::source::{Format, Reject, open};
use order_store::{EventStore, StoreConfig};
use order_testkit::pg::TestDatabase;

struct Setup {
    db: TestDatabase,
    store: EventStore,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let db = TestDatabase::migrated().await;
    let mut config = StoreConfig::new(db.url());
    config.statement_timeout = std::time::Duration::from_secs(120);
    config.pool_wait_timeout = std::time::Duration::from_secs(10);
    let store = EventStore::new(config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    Setup { db, store, dir }
}

fn export(
    dir: &Path,
    format: Format,
    orders: u64,
    bad_every: u64,
    seed: u64,
) -> (PathBuf, Generated, Vec<Expected>) {
    let out = match format {
        Format::Jsonl => dir.join("export.jsonl"),
        Format::Csv => dir.join("export"),
    };
    let expected_path = dir.join("expected.jsonl");
    let plan = Plan {
        orders,
        bad_every,
        seed,
        format,
    };
    let generated = generate(&plan, &out, &expected_path).unwrap();
    let expected = read_lines(&expected_path);
    (out, generated, expected)
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

async fn run(setup: &Setup, input: &Path, format: Format, name: &str) -> (Summary, Vec<Reject>) {
    let source = open(input, format, Default::default()).unwrap();
    let mut options = Options::new(name);
    options.rejects = setup.dir.path().join(format!("{name}.rejects.jsonl"));
    options.batch_orders = 97; // many batches, an uneven last one
    let summary = import(&setup.store, source, &options).await.unwrap();
    let rejects = read_lines(&options.rejects);
    (summary, rejects)
}

/// Streams and their event counts, and whether any event id or (stream, version) repeats.
async fn log_audit(db: &TestDatabase) -> (BTreeMap<uuid::Uuid, i64>, i64, i64) {
    let client = db.connect().await;
    let streams = client
        .query(
            "SELECT stream_id, count(*), max(stream_version) FROM orders.events GROUP BY stream_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let count: i64 = r.get(1);
            let max: i64 = r.get(2);
            assert_eq!(count, max, "versions of a stream are dense");
            (r.get(0), count)
        })
        .collect();
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE imported_from IS NULL OR command_id IS NOT NULL) FROM orders.events",
            &[],
        )
        .await
        .unwrap();
    (streams, row.get(0), row.get(1))
}

fn check_rejects(rejects: &[Reject], expected: &[Expected]) {
    let got: BTreeMap<(String, u64), &Reject> = rejects
        .iter()
        .map(|r| {
            (
                (
                    Path::new(&r.file)
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    r.line,
                ),
                r,
            )
        })
        .collect();
    assert_eq!(
        got.len(),
        rejects.len(),
        "one reject per record: {rejects:#?}"
    );
    let want: BTreeMap<(String, u64), &Expected> = expected
        .iter()
        .map(|e| {
            (
                (
                    Path::new(&e.file)
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    e.line,
                ),
                e,
            )
        })
        .collect();
    let missing: Vec<_> = want
        .iter()
        .filter(|(k, _)| !got.contains_key(*k))
        .map(|(_, e)| e)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, _)| !want.contains_key(*k))
        .map(|(_, r)| r)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not rejected: {missing:#?}\nrejected but good: {extra:#?}"
    );
    for (key, expected) in &want {
        let reject = got[key];
        assert!(
            reject.reason.contains(&expected.reason),
            "{} at {:?}: reason {:?} does not say {:?}",
            expected.kind,
            key,
            reject.reason,
            expected.reason
        );
    }
}

async fn exact_rejects(format: Format) {
    let setup = setup().await;
    let kinds = kinds_for(format);
    // Every kind twice, with good orders between them.
    let orders = kinds.len() as u64 * 2 * 3 + 5;
    let (input, generated, expected) = export(setup.dir.path(), format, orders, 3, 7);
    assert!(kinds.len() >= 30, "{} kinds", kinds.len());
    let found: BTreeSet<&str> = expected.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(found.len(), kinds.len(), "every kind is in the corpus");

    let (summary, rejects) = run(&setup, &input, format, "exact").await;
    check_rejects(&rejects, &expected);
    assert_eq!(summary.orders_imported, generated.good, "{summary:?}");
    assert_eq!(summary.events_imported, generated.events, "{summary:?}");
    assert_eq!(summary.rejected, expected.len() as u64);
    // Rows without an order are rejects of no order: counted apart, and the progress row
    // counts orders only.
    let orphans = expected
        .iter()
        .filter(|e| e.kind == "row_without_order")
        .count() as u64;
    assert_eq!(orphans > 0, format == Format::Csv);
    assert_eq!(
        (summary.orders_rejected, summary.rows_rejected),
        (expected.len() as u64 - orphans, orphans),
        "{summary:?}"
    );
    assert_eq!(
        summary.orders_read,
        summary.orders_imported + summary.orders_rejected,
        "{summary:?}"
    );
    let status = setup.store.import_status("exact").await.unwrap().unwrap();
    assert_eq!(
        (status.orders_read, status.orders_rejected),
        (summary.orders_read, summary.orders_rejected)
    );
    let (streams, events, not_imported) = log_audit(&setup.db).await;
    assert_eq!(streams.len() as u64, generated.good);
    assert_eq!(events as u64, generated.events);
    assert_eq!(
        not_imported, 0,
        "every event is marked imported and has no command id"
    );
}

#[tokio::test]
async fn the_rejects_report_is_exact_for_every_kind_of_bad_json_record() {
    exact_rejects(Format::Jsonl).await;
}

#[tokio::test]
async fn the_rejects_report_is_exact_for_every_kind_of_bad_csv_row() {
    exact_rejects(Format::Csv).await;
}

/// The final state of each good legacy order, folded from its imported stream, is the legacy
/// state: the status its history ends in, the refunds it had, the total it was placed for.
#[tokio::test]
async fn imported_orders_are_real_orders_in_their_legacy_state() {
    use order_domain::{Aggregate, Order, OrderCommand, OrderEvent, Status};
    use order_import::legacy::LegacyOrder;
    use order_import::tell::Ids;
    use order_store::{CommandContext, CommandHandler};

    let setup = setup().await;
    let (input, generated, _) = export(setup.dir.path(), Format::Jsonl, 1_500, 0, 11);
    let (summary, rejects) = run(&setup, &input, Format::Jsonl, "state").await;
    assert!(rejects.is_empty(), "{rejects:#?}");
    assert_eq!(summary.orders_imported, generated.good);

    let ids = Ids::new("legacy");
    let mut delivered = None;
    let mut outcomes = BTreeMap::<String, usize>::new();
    for line in std::fs::read_to_string(&input).unwrap().lines() {
        let legacy: LegacyOrder = serde_json::from_str(line).unwrap();
        let stream_id = ids.order(&legacy.order_id);
        let placed_at = humantime::parse_rfc3339(&legacy.status_history[0].at).unwrap();
        let mut order = Order::default();
        for recorded in setup.store.read_stream(stream_id, 0).await.unwrap() {
            assert_eq!(
                recorded.imported_from.as_deref(),
                Some(format!("legacy:{}", legacy.order_id).as_str())
            );
            assert!(recorded.metadata.command_id.is_none());
            // The documented ids (docs/import.md, "Ids"): time-ordered by the order's
            // placement, so that a bulk import appends near the event-id index's newest pages.
            assert_eq!(
                recorded.event_id,
                Ids::event(stream_id, placed_at, recorded.stream_version as usize)
            );
            assert_eq!(recorded.event_id.get_version_num(), 7);
            let event: OrderEvent = recorded.decode().unwrap().event;
            order.evolve(&event);
        }
        let details = order
            .details()
            .unwrap_or_else(|| panic!("{} was not imported", legacy.order_id));
        let last = legacy.status_history.last().unwrap().status.as_str();
        let expected = match last {
            "placed" => Status::Placed,
            "reserved" => Status::InventoryReserved,
            "authorized" => Status::PaymentAuthorized,
            "paid" => Status::Confirmed,
            "processing" => Status::Processing,
            "shipped" => Status::Shipped,
            "delivered" => Status::Delivered,
            "completed" => Status::Completed,
            "cancelled" | "payment_failed" | "out_of_stock" => Status::Cancelled,
            other => panic!("unexpected legacy status {other}"),
        };
        *outcomes.entry(last.to_owned()).or_default() += 1;
        assert_eq!(details.status(), expected, "{}", legacy.order_id);
        let total: i64 = legacy
            .lines
            .iter()
            .map(|l| l.quantity * l.unit_price_minor)
            .sum();
        assert_eq!(details.total().amount_minor(), total);
        assert_eq!(details.currency().code(), legacy.currency);
        let refunds: i64 = legacy.refunds.iter().map(|r| r.amount_minor).sum();
        let compensation = if last == "cancelled" && details.captured().amount_minor() > 0 {
            details.captured().amount_minor()
        } else {
            0
        };
        assert_eq!(
            details.refunded().amount_minor(),
            refunds + compensation,
            "{}",
            legacy.order_id
        );
        if expected == Status::Delivered && legacy.refunds.is_empty() && delivered.is_none() {
            delivered = Some((stream_id, details.total()));
        }
    }
    assert!(
        outcomes.len() >= 10,
        "a realistic mix of outcomes: {outcomes:?}"
    );

    // Commands work on imported orders: a refund of a delivered order, then completion.
    let (stream_id, total) = delivered.expect("a delivered order without refunds");
    let handler = CommandHandler::<Order>::new(setup.store.clone(), 3);
    let context = |n: u128| CommandContext {
        command_id: uuid::Uuid::from_u128(n),
        expected_version: None,
        metadata: Default::default(),
    };
    let refund = OrderCommand::refund_payment(total.currency().code(), 1).unwrap();
    handler
        .handle(stream_id, &refund, &context(1))
        .await
        .unwrap();
    handler
        .handle(stream_id, &OrderCommand::CompleteOrder, &context(2))
        .await
        .unwrap();
    let last = setup.store.read_stream(stream_id, 0).await.unwrap();
    let last = last.last().unwrap();
    assert_eq!(last.event_type, "OrderCompleted");
    assert!(
        last.imported_from.is_none(),
        "a live command's event is not imported"
    );
}

/// A second run of the same export appends nothing and says the orders are there already.
#[tokio::test]
async fn a_second_run_imports_nothing_new() {
    let setup = setup().await;
    let (input, generated, expected) = export(setup.dir.path(), Format::Jsonl, 2_000, 40, 5);
    let (first, _) = run(&setup, &input, Format::Jsonl, "twice").await;
    assert_eq!(first.orders_imported, generated.good);
    let (second, rejects) = run(&setup, &input, Format::Jsonl, "twice").await;
    assert_eq!(second.orders_imported, 0);
    assert_eq!(second.events_imported, 0);
    assert_eq!(second.orders_present, generated.good);
    check_rejects(&rejects, &expected);
    let (streams, events, _) = log_audit(&setup.db).await;
    assert_eq!(streams.len() as u64, generated.good);
    assert_eq!(events as u64, generated.events);
    let record = setup.store.import_status("twice").await.unwrap().unwrap();
    assert_eq!(record.runs, 2);
    assert_eq!(record.orders_imported, generated.good);
    assert_eq!(record.events_imported, generated.events);
    assert_eq!(record.orders_rejected, expected.len() as u64);
    assert!(record.finished_at.is_some());
}

/// An order id that is not UTF-8 rejects its row, and the orders after it are judged by the
/// last id that was read, not by a stand-in for the unreadable one: a correctly sorted order
/// that follows is imported.
#[tokio::test]
async fn an_order_after_one_whose_id_is_not_utf8_is_imported() {
    let setup = setup().await;
    let dir = setup.dir.path().join("export");
    std::fs::create_dir_all(&dir).unwrap();
    let ids: [&[u8]; 3] = [b"A1", b"A1\xC0", "A1\u{ea}".as_bytes()];
    let table = |name: &str, header: &str, suffix: &str| {
        let mut bytes = format!("{header}\n").into_bytes();
        for id in ids {
            bytes.extend([id, suffix.as_bytes(), b"\n"].concat());
        }
        std::fs::write(dir.join(format!("{name}.csv")), bytes).unwrap();
    };
    table(
        "orders",
        "order_id,customer_id,currency,shipping_method,recipient,line1,line2,city,region,postal_code,country",
        ",C1,EUR,standard,Ada,1 Main St,,Porto,,4000-322,PT",
    );
    table(
        "order_lines",
        "order_id,sku,quantity,unit_price_minor",
        ",SKU-1,1,1000",
    );
    table(
        "status_history",
        "order_id,status,at,reason",
        ",placed,2019-01-01T00:00:00Z,",
    );
    for (name, header) in [
        ("payments", "order_id,payment_id,currency,amount_minor"),
        ("shipments", "order_id,carrier,tracking_number"),
        ("refunds", "order_id,currency,amount_minor,refunded_at"),
    ] {
        std::fs::write(dir.join(format!("{name}.csv")), format!("{header}\n")).unwrap();
    }
    let (summary, rejects) = run(&setup, &dir, Format::Csv, "utf8").await;
    assert_eq!(rejects.len(), 1, "{rejects:#?}");
    assert_eq!(
        (rejects[0].file.as_str(), rejects[0].line),
        ("orders.csv", 3),
        "{rejects:#?}"
    );
    assert!(rejects[0].reason.contains("UTF-8"), "{rejects:#?}");
    assert_eq!(summary.orders_imported, 2, "{summary:?}");
}

/// `max_rate` paces the events a run writes: a run over an export whose orders are all in the
/// log already is not held back by it (a throttled resume re-reads at full speed), while a run
/// that writes them is.
#[tokio::test]
async fn a_throttled_run_paces_the_events_it_writes_not_those_already_in_the_log() {
    let throttled = |name: &str, rate: u64| {
        let mut options = Options::new(name);
        options.batch_orders = 97;
        options.max_rate = Some(rate);
        options.batch_events = (rate as usize / 10).max(1);
        options
    };
    let setup = setup().await;
    let (input, generated, _) = export(setup.dir.path(), Format::Jsonl, 2_000, 40, 7);
    let (first, _) = run(&setup, &input, Format::Jsonl, "paced").await;
    assert_eq!(first.events_imported, generated.events);

    // Paced by the events told, this run would take 20 s.
    let rate = generated.events / 20;
    let mut options = throttled("paced", rate);
    options.rejects = setup.dir.path().join("again.rejects.jsonl");
    let started = std::time::Instant::now();
    let source = open(&input, Format::Jsonl, Default::default()).unwrap();
    let again = import(&setup.store, source, &options).await.unwrap();
    let took = started.elapsed();
    assert_eq!(
        (again.events_imported, again.orders_present),
        (0, generated.good)
    );
    assert!(
        took < std::time::Duration::from_secs(10),
        "a run that writes nothing took {took:?} at --max-rate {rate}"
    );

    // Writing them at a rate that takes 3 s: paced.
    let fresh = self::setup().await;
    let rate = generated.events / 3;
    let mut options = throttled("paced", rate);
    options.rejects = fresh.dir.path().join("fresh.rejects.jsonl");
    let started = std::time::Instant::now();
    let source = open(&input, Format::Jsonl, Default::default()).unwrap();
    let written = import(&fresh.store, source, &options).await.unwrap();
    let took = started.elapsed();
    assert_eq!(written.events_imported, generated.events);
    assert!(
        took >= std::time::Duration::from_secs(2),
        "{} events at --max-rate {rate} took {took:?}",
        generated.events
    );
}

/// The binary killed with SIGKILL at 20 random moments, then run to the end: every good order
/// is in the log exactly once and whole, and no run left a part of an order behind.
#[tokio::test]
async fn runs_killed_at_random_moments_resume_and_import_every_order_exactly_once() {
    use order_import::tell::{Ids, tell};

    let setup = setup().await;
    // Every kind of bad record at least once, among 20,000.
    let (input, generated, _) = export(setup.dir.path(), Format::Jsonl, 20_000, 400, 3);
    // What each stream must hold, from the export itself.
    let ids = Ids::new("legacy");
    let mut want = BTreeMap::new();
    let mut previous = String::new();
    for line in std::fs::read(&input).unwrap().split(|b| *b == b'\n') {
        let Ok(order) = serde_json::from_slice::<order_import::legacy::LegacyOrder>(line) else {
            continue;
        };
        // The export is sorted: an order not after the one before is a duplicate or out of
        // place, and rejected.
        if order.order_id.trim().is_empty() || order.order_id <= previous {
            continue;
        }
        previous = order.order_id.clone();
        if let Ok(stream) = tell(&order, &ids) {
            want.insert(stream.stream_id, stream.events.len() as i64);
        }
    }
    assert_eq!(want.len() as u64, generated.good);

    let binary = env!("CARGO_BIN_EXE_order-import");
    let rejects = setup.dir.path().join("killed.rejects.jsonl");
    let command = || {
        let mut command = std::process::Command::new(binary);
        command
            .args([
                "run",
                "--name",
                "killed",
                "--no-progress",
                "--batch-orders",
                "500",
                "--input",
            ])
            .arg(&input)
            .arg("--rejects")
            .arg(&rejects)
            .env("DATABASE_URL", setup.db.url())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    };
    let mut rng = fastrand::Rng::with_seed(42);
    let mut kills = 0;
    let mut finished_early = 0;
    // Kill moments are random within a bound that follows the machine's speed: killed runs
    // resume, so on a fast machine 20 kills at up to 2.5 s each once left no work for the
    // later ones (CI: "the import finishes before any kill"). The bound is set so that the
    // kills left are expected to use part of the work left, never all of it.
    let mut upper_ms = 800.0f64;
    let mut ran = std::time::Duration::ZERO;
    while kills < 20 {
        let mut child = command().spawn().unwrap();
        let wait = std::time::Duration::from_millis(rng.u64(20..upper_ms as u64));
        tokio::time::sleep(wait).await;
        ran += wait;
        if child.try_wait().unwrap().is_some() {
            finished_early += 1;
            assert!(
                finished_early < 10,
                "the import finishes before any kill; give it more orders"
            );
            continue;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        // Whatever is in the log is whole: every stream has all of its events.
        let (streams, _, _) = log_audit(&setup.db).await;
        for (stream, count) in &streams {
            assert_eq!(
                Some(count),
                want.get(stream),
                "stream {stream} after kill {kills}"
            );
        }
        let done = streams.len() as f64;
        if done > 0.0 {
            let per_ms = done / ran.as_secs_f64().max(0.001) / 1000.0;
            let left_ms = (want.len() as f64 - done) / per_ms;
            let kills_left = f64::from(20 - kills);
            upper_ms = (1.5 * left_ms / (kills_left + 2.0)).clamp(40.0, 2_500.0);
        }
    }
    let status = command().status().unwrap();
    assert_eq!(status.code(), Some(2), "finished, with rejects");
    let (streams, events, not_imported) = log_audit(&setup.db).await;
    assert_eq!(streams, want, "every good order exactly once, whole");
    assert_eq!(events as u64, generated.events);
    assert_eq!(not_imported, 0);
    let record = setup.store.import_status("killed").await.unwrap().unwrap();
    assert_eq!(record.orders_imported, generated.good, "{record:?}");
    assert_eq!(record.events_imported, generated.events);
}

/// SIGTERM stops the binary gracefully: exit 1 with a line saying what this run imported, every
/// stream in the log whole, and the same command run again imports the rest.
#[tokio::test]
async fn sigterm_stops_after_the_batches_in_flight_and_the_next_run_resumes() {
    let setup = setup().await;
    let (input, generated, _) = export(setup.dir.path(), Format::Jsonl, 20_000, 400, 5);
    let binary = env!("CARGO_BIN_EXE_order-import");
    let rejects = setup.dir.path().join("stopped.rejects.jsonl");
    // The rate bounds how fast it can go (over 5 s for the whole export, on any machine), so
    // the signal arrives mid-run.
    let command = |rate: &str| {
        let mut command = std::process::Command::new(binary);
        command
            .args(["run", "--name", "stopped", "--no-progress", "--input"])
            .arg(&input)
            .arg("--rejects")
            .arg(&rejects)
            .args(["--max-rate", rate])
            .env("DATABASE_URL", setup.db.url())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        command
    };
    let child = command("20000").spawn().unwrap();
    // Signal once the first batches are in.
    let waited = std::time::Instant::now();
    loop {
        let (streams, _, _) = log_audit(&setup.db).await;
        if !streams.is_empty() {
            break;
        }
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(60),
            "nothing imported in 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pid = child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stopped by a signal") && stderr.contains("run the same command again"),
        "{stderr}"
    );
    let (streams, _, _) = log_audit(&setup.db).await;
    assert!(
        !streams.is_empty() && (streams.len() as u64) < generated.good,
        "stopped mid-run: {} of {} orders",
        streams.len(),
        generated.good
    );
    let record = setup.store.import_status("stopped").await.unwrap().unwrap();
    assert!(record.finished_at.is_none(), "{record:?}");
    assert_eq!(
        record.orders_imported,
        streams.len() as u64,
        "the progress row counts what is in the log"
    );
    // The rejects file holds the rejects the progress row counts (of the records up to the
    // last batch committed), not those read ahead of it.
    let reported: Vec<Reject> = read_lines(&rejects);
    assert_eq!(reported.len() as u64, record.orders_rejected, "{record:?}");
    // The next run, without a rate limit, imports the rest.
    let output = command("100000000").output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "finished, with rejects: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (streams, events, not_imported) = log_audit(&setup.db).await;
    assert_eq!(streams.len() as u64, generated.good);
    assert_eq!(events as u64, generated.events);
    assert_eq!(not_imported, 0);
    let record = setup.store.import_status("stopped").await.unwrap().unwrap();
    assert_eq!(record.runs, 2);
    assert_eq!(record.orders_imported, generated.good);
    assert!(record.finished_at.is_some());
}

/// A signal while the last batches are being written (the export read to its end) is heard:
/// the first says it stops once they commit, a second stops at once (they roll back).
#[tokio::test]
async fn a_signal_while_the_last_batches_wait_is_heard_and_a_second_stops_at_once() {
    let setup = setup().await;
    let (input, _, _) = export(setup.dir.path(), Format::Jsonl, 300, 50, 3);
    let binary = env!("CARGO_BIN_EXE_order-import");
    // Hold the log's table: the batches wait for it.
    let mut locker = setup.db.connect().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE orders.events IN SHARE MODE")
        .await
        .unwrap();
    let mut child = std::process::Command::new(binary)
        .args(["run", "--name", "waiting", "--no-progress", "--input"])
        .arg(&input)
        .arg("--rejects")
        .arg(setup.dir.path().join("waiting.rejects.jsonl"))
        .env("DATABASE_URL", setup.db.url())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = setup.db.connect().await;
    order_testkit::pg::wait_for_lock_waiters(&client, 1, "the import", || {
        child.try_wait().is_ok_and(|status| status.is_some())
    })
    .await;
    let pid = child.id().to_string();
    let signal = || {
        assert!(
            std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    signal();
    let waited = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if waited.elapsed() > std::time::Duration::from_secs(20) {
            break None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    lock.rollback().await.unwrap();
    let status = match status {
        Some(status) => status,
        None => {
            let _ = child.kill();
            panic!("two signals did not stop the import within 20 s");
        }
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped at once"), "{stderr}");
    let (streams, _, _) = log_audit(&setup.db).await;
    assert!(streams.is_empty(), "the waiting batches rolled back");
}

/// `--rejects` naming the export itself (a file of it, for CSV) is refused before anything is
/// opened for writing: every run rewrites the rejects file, which would empty the export.
#[tokio::test]
async fn a_rejects_file_that_is_the_export_is_refused_and_the_export_kept() {
    let setup = setup().await;
    let binary = env!("CARGO_BIN_EXE_order-import");
    for format in [Format::Jsonl, Format::Csv] {
        let (input, _, _) = export(setup.dir.path(), format, 20, 2, 9);
        let target = if input.is_dir() {
            input.join("orders.csv")
        } else {
            input.clone()
        };
        let before = std::fs::read(&target).unwrap();
        let output = std::process::Command::new(binary)
            .args(["run", "--name", "clash", "--no-progress", "--input"])
            .arg(&input)
            .arg("--rejects")
            .arg(&target)
            .env("DATABASE_URL", setup.db.url())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("it would be emptied"), "{stderr}");
        assert_eq!(
            std::fs::read(&target).unwrap(),
            before,
            "the export is intact"
        );
        assert!(setup.store.import_status("clash").await.unwrap().is_none());
        std::fs::remove_dir_all(&input)
            .or_else(|_| std::fs::remove_file(&input))
            .unwrap();
    }
    // A name that cannot be one is refused before its rejects file is created.
    let (input, _, _) = export(setup.dir.path(), Format::Jsonl, 5, 2, 9);
    let output = std::process::Command::new(binary)
        .args(["run", "--name", "Legacy 2026", "--no-progress", "--input"])
        .arg(&input)
        .current_dir(setup.dir.path())
        .env("DATABASE_URL", setup.db.url())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("import name"), "{stderr}");
    assert!(
        !setup.dir.path().join("Legacy 2026.rejects.jsonl").exists(),
        "a rejects file was left behind"
    );
}

/// A rejects file that is no regular file (`/dev/stdout` in a pipeline, `/dev/null`, a FIFO)
/// cannot be rewritten from its start as every run does: refused before the run begins, its
/// progress row not written (it was, and the write failed after: "Invalid argument", and a run
/// to resume that never began).
#[tokio::test]
async fn a_rejects_file_that_is_no_regular_file_is_refused_before_the_run_begins() {
    let setup = setup().await;
    let binary = env!("CARGO_BIN_EXE_order-import");
    let (input, _, _) = export(setup.dir.path(), Format::Jsonl, 5, 2, 9);
    let fifo = setup.dir.path().join("rejects.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for (n, rejects) in [PathBuf::from("/dev/null"), fifo].iter().enumerate() {
        let name = format!("pipe{n}");
        let mut child = std::process::Command::new(binary)
            .args(["run", "--name", &name, "--no-progress", "--input"])
            .arg(&input)
            .arg("--rejects")
            .arg(rejects)
            .env("DATABASE_URL", setup.db.url())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Opening a FIFO for writing waits for a reader: a run that tried would hang.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("{}: the run did not end", rejects.display());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
        assert!(
            setup.store.import_status(&name).await.unwrap().is_none(),
            "{}: no run was recorded",
            rejects.display()
        );
    }
}

/// Every id derives from the source's name, so a run that continued an import under another
/// `--source` would append every order again under new ids. It is refused before anything is
/// written, the progress row unchanged; the recorded source resumes as before.
#[tokio::test]
async fn a_run_naming_another_source_than_the_import_began_with_is_refused_and_changes_nothing() {
    let setup = setup().await;
    let (input, generated, _) = export(setup.dir.path(), Format::Jsonl, 500, 0, 11);
    let (first, _) = run(&setup, &input, Format::Jsonl, "sourced").await;
    assert_eq!(first.orders_imported, generated.good);
    let before = setup.store.import_status("sourced").await.unwrap().unwrap();
    assert_eq!(before.source.as_deref(), Some("legacy"));

    let source = open(&input, Format::Jsonl, Default::default()).unwrap();
    let mut options = Options::new("sourced");
    options.rejects = setup.dir.path().join("other.rejects.jsonl");
    options.source = "shop-eu".to_owned();
    let error = import(&setup.store, source, &options).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("\"legacy\"") && message.contains("\"shop-eu\""),
        "the error names both sources: {message}"
    );
    let (streams, events, _) = log_audit(&setup.db).await;
    assert_eq!(
        streams.len() as u64,
        generated.good,
        "no order appended twice"
    );
    assert_eq!(events as u64, generated.events);
    let after = setup.store.import_status("sourced").await.unwrap().unwrap();
    assert_eq!(
        after, before,
        "the refused run left the progress row as it was"
    );
    assert!(
        std::fs::read(&options.rejects).map_or(true, |bytes| bytes.is_empty()),
        "the refused run wrote no rejects"
    );

    // A bad source name is refused the same way, before anything is written.
    for bad in ["", "a\u{7}b", &"s".repeat(101)] {
        let source = open(&input, Format::Jsonl, Default::default()).unwrap();
        let mut options = Options::new("fresh");
        options.rejects = setup.dir.path().join("fresh.rejects.jsonl");
        options.source = bad.to_owned();
        let error = import(&setup.store, source, &options).await.unwrap_err();
        assert!(format!("{error:#}").contains("source"), "{error:#}");
        assert!(setup.store.import_status("fresh").await.unwrap().is_none());
    }

    // The same source resumes as before.
    let (again, _) = run(&setup, &input, Format::Jsonl, "sourced").await;
    assert_eq!(again.orders_imported, 0);
    assert_eq!(again.orders_present, generated.good);
    let record = setup.store.import_status("sourced").await.unwrap().unwrap();
    assert_eq!(record.runs, 2);
}

/// An import begun before sources were recorded (its row's source is NULL) takes the source of
/// its next run, and from then on refuses another.
#[tokio::test]
async fn an_import_begun_before_sources_were_recorded_takes_its_next_runs_source() {
    let setup = setup().await;
    let (input, generated, _) = export(setup.dir.path(), Format::Jsonl, 200, 0, 12);
    let (first, _) = run(&setup, &input, Format::Jsonl, "older").await;
    assert_eq!(first.orders_imported, generated.good);
    setup
        .db
        .connect()
        .await
        .execute(
            "UPDATE orders.imports SET source = NULL WHERE name = 'older'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        setup
            .store
            .import_status("older")
            .await
            .unwrap()
            .unwrap()
            .source,
        None
    );
    // Its earlier runs' source is not known: the default is not taken for it.
    let source = open(&input, Format::Jsonl, Default::default()).unwrap();
    let mut options = Options::new("older");
    options.rejects = setup.dir.path().join("older1.rejects.jsonl");
    let error = import(&setup.store, source, &options).await.unwrap_err();
    assert!(format!("{error:#}").contains("--source"), "{error:#}");
    assert_eq!(
        setup
            .store
            .import_status("older")
            .await
            .unwrap()
            .unwrap()
            .runs,
        1,
        "refused before it began"
    );
    let source = open(&input, Format::Jsonl, Default::default()).unwrap();
    options.source_named = true;
    let second = import(&setup.store, source, &options).await.unwrap();
    assert_eq!(second.orders_present, generated.good);
    let record = setup.store.import_status("older").await.unwrap().unwrap();
    assert_eq!(record.source.as_deref(), Some("legacy"));
    let source = open(&input, Format::Jsonl, Default::default()).unwrap();
    let mut options = Options::new("older");
    options.rejects = setup.dir.path().join("older2.rejects.jsonl");
    options.source = "other".to_owned();
    assert!(import(&setup.store, source, &options).await.is_err());
}

/// An order whose first copy could not be read is that order's first copy still: a later one
/// is a duplicate, never the one imported. And a run that cannot write its rejects fails
/// before the progress row of the finished import changes.
#[tokio::test]
async fn a_later_copy_of_an_unreadable_order_is_a_duplicate_and_a_run_that_cannot_start_changes_nothing()
 {
    let setup = setup().await;
    let good = |id: &str, customer: &str| {
        format!(
            r#"{{"order_id":"{id}","customer_id":"{customer}","currency":"EUR","shipping_method":"standard","ship_to":{{"recipient":"Ada","line1":"1 Main St","city":"Porto","postal_code":"4000-322","country":"PT"}},"lines":[{{"sku":"SKU-1","quantity":1,"unit_price_minor":1000}}],"status_history":[{{"status":"placed","at":"2019-01-01T00:00:00Z"}}]}}"#
        )
    };
    let unreadable = good("B1", "FIRST").replacen('{', r#"{"note":"x","#, 1);
    let input = setup.dir.path().join("dup.jsonl");
    std::fs::write(
        &input,
        [
            good("B0", "C"),
            unreadable,
            good("B1", "SECOND"),
            // An id that is no string: rejected, and no reason to reject what follows.
            r#"{"order_id":{"a":1}}"#.to_owned(),
            good("B2", "C"),
        ]
        .join("\n"),
    )
    .unwrap();
    let (summary, rejects) = run(&setup, &input, Format::Jsonl, "dup").await;
    assert_eq!(summary.orders_imported, 2, "{rejects:?}");
    let reasons: Vec<(u64, &str)> = rejects
        .iter()
        .map(|r| (r.line, r.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons[2].0, 4, "{reasons:?}");
    assert!(
        reasons[0].0 == 2 && reasons[0].1.contains("note"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == 3 && reasons[1].1.contains("more than once"),
        "{reasons:?}"
    );

    let finished = setup.store.import_status("dup").await.unwrap().unwrap();
    assert!(finished.finished_at.is_some());
    let source = open(&input, Format::Jsonl, Default::default()).unwrap();
    let mut options = Options::new("dup");
    options.rejects = setup.dir.path().join("no-such-dir").join("r.jsonl");
    let error = import(&setup.store, source, &options).await.unwrap_err();
    assert!(format!("{error:#}").contains("rejects"), "{error:#}");
    let after = setup.store.import_status("dup").await.unwrap().unwrap();
    assert_eq!(
        after, finished,
        "the progress row is as the finished run left it"
    );

    // A first copy that is not UTF-8 (a byte outside its id) is that order's first copy too.
    let not_utf8 = good("B5", "FIRST")
        .replacen("Porto", "Port\u{fffd}", 1)
        .into_bytes();
    let at = not_utf8
        .windows(3)
        .position(|w| w == "\u{fffd}".as_bytes())
        .unwrap();
    let mut bytes = not_utf8[..at].to_vec();
    bytes.push(0xC0);
    bytes.extend(&not_utf8[at + 3..]);
    let input = setup.dir.path().join("dup-utf8.jsonl");
    let lines = [
        good("B4", "C").into_bytes(),
        bytes,
        good("B5", "SECOND").into_bytes(),
    ];
    std::fs::write(&input, lines.join(&b'\n')).unwrap();
    let (summary, rejects) = run(&setup, &input, Format::Jsonl, "dup-utf8").await;
    let reasons: Vec<(u64, &str)> = rejects
        .iter()
        .map(|r| (r.line, r.reason.as_str()))
        .collect();
    assert_eq!(summary.orders_imported, 1, "{reasons:?}");
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].0 == 2 && reasons[0].1.contains("UTF-8"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == 3 && reasons[1].1.contains("more than once"),
        "{reasons:?}"
    );
    assert_eq!(rejects[0].order_id.as_deref(), Some("B5"), "{rejects:?}");

    // So is a first copy cut off (a line that ends inside the record) or longer than a record
    // may be (a JSON Lines line over 1 MiB): its id comes before what breaks it.
    let cut = good("B7", "FIRST");
    let cut = &cut[..cut.len() - 30];
    let long = good("B8", "FIRST").replacen(
        r#""line1":"1 Main St""#,
        &format!(r#""line1":"1 Main St","line2":"{}""#, "x".repeat(1_100_000)),
        1,
    );
    let input = setup.dir.path().join("dup-broken.jsonl");
    let lines = [
        good("B6", "C"),
        cut.to_owned(),
        good("B7", "SECOND"),
        long,
        good("B8", "SECOND"),
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let (summary, rejects) = run(&setup, &input, Format::Jsonl, "dup-broken").await;
    let reasons: Vec<(u64, Option<&str>, &str)> = rejects
        .iter()
        .map(|r| (r.line, r.order_id.as_deref(), r.reason.as_str()))
        .collect();
    assert_eq!(summary.orders_imported, 1, "only B6: {reasons:?}");
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].0 == 2 && reasons[0].1 == Some("B7") && reasons[0].2.contains("truncated"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == 3 && reasons[1].2.contains("more than once"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].0 == 4 && reasons[2].1 == Some("B8") && reasons[2].2.contains("longer than"),
        "{reasons:?}"
    );
    assert!(
        reasons[3].0 == 5 && reasons[3].2.contains("more than once"),
        "{reasons:?}"
    );
}

/// A later export in which legacy orders moved on (the cut-over's last delta): a run over it
/// appends the rest of each moved order's history, as if it had been imported whole; an
/// order that this system changed since its import is not touched and is reported.
#[tokio::test]
async fn a_later_export_brings_orders_that_moved_on_up_to_date() {
    let setup = setup().await;
    let (later, generated, expected) = export(setup.dir.path(), Format::Jsonl, 1_000, 50, 11);
    // The earlier export: the same records, but orders that went on after "paid" (and have
    // no refunds) stopped there, before any shipment.
    let mut cut = BTreeSet::new();
    let earlier_text: String = std::fs::read_to_string(&later)
        .unwrap()
        .lines()
        .map(|line| {
            let Ok(mut record) = serde_json::from_str::<serde_json::Value>(line) else {
                return format!("{line}\n");
            };
            let statuses: Vec<String> = record["status_history"]
                .as_array()
                .map(|h| {
                    h.iter()
                        .map(|s| s["status"].as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            let refunds = record["refunds"].as_array().map_or(0, Vec::len);
            let paid = statuses.iter().position(|s| s == "paid");
            if let Some(paid) = paid
                && statuses.len() > paid + 1
                && refunds == 0
            {
                record["status_history"]
                    .as_array_mut()
                    .unwrap()
                    .truncate(paid + 1);
                record["shipments"] = serde_json::json!([]);
                cut.insert(record["order_id"].as_str().unwrap().to_owned());
                format!("{record}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    // The same file name (the rejects name it), in a directory of its own.
    std::fs::create_dir(setup.dir.path().join("earlier")).unwrap();
    let earlier = setup.dir.path().join("earlier").join("export.jsonl");
    std::fs::write(&earlier, earlier_text).unwrap();
    assert!(cut.len() > 50, "only {} orders cut", cut.len());

    let (first, rejects) = run(&setup, &earlier, Format::Jsonl, "delta").await;
    check_rejects(&rejects, &expected);
    assert_eq!(first.orders_imported, generated.good);
    let (_, events_before, _) = log_audit(&setup.db).await;
    assert!((events_before as u64) < generated.events);

    // One cut order lives here now: a command recorded after its import. (Some cut records
    // are bad ones, rejected in both runs: the first that was imported.)
    let client = setup.db.connect().await;
    let mut live = None;
    for id in &cut {
        if let Some(row) = client
            .query_opt(
                "SELECT stream_id FROM orders.events WHERE imported_from = $1 LIMIT 1",
                &[&format!("legacy:{id}")],
            )
            .await
            .unwrap()
        {
            live = Some((id.clone(), row.get::<_, uuid::Uuid>(0)));
            break;
        }
    }
    let (live_id, live_stream) = live.unwrap();
    let live_events: i64 = client
        .query_one(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, category)
             SELECT $1, max(stream_version) + 1, gen_random_uuid(), 'OrderNoted', 1, '{}', 'order'
             FROM orders.events WHERE stream_id = $1 RETURNING stream_version",
            &[&live_stream],
        )
        .await
        .unwrap()
        .get(0);

    let (second, rejects) = run(&setup, &later, Format::Jsonl, "delta").await;
    assert_eq!(second.orders_imported, 0);
    assert!(second.orders_updated > 50, "{second:?}");
    assert_eq!(
        second.orders_updated + second.orders_present,
        generated.good - 1,
        "{second:?}"
    );
    // The reader's rejects, then the order that could not be updated.
    let (diverged, read): (Vec<Reject>, Vec<Reject>) = rejects.into_iter().partition(|r| {
        r.order_id.as_deref() == Some(live_id.as_str()) && r.reason.contains("moved on")
    });
    check_rejects(&read, &expected);
    assert_eq!(diverged.len(), 1, "{diverged:?}");
    assert!(
        diverged[0].reason.contains(&format!(
            "order {live_id} was imported before and its legacy record moved on since, but its \
             event {live_events} (OrderNoted) was recorded by this system since the import"
        )),
        "{diverged:?}"
    );
    assert!(diverged[0].line > 0);
    assert_eq!(second.rejected, expected.len() as u64 + 1);

    // Every other order is as a whole import of the later export tells it.
    let (streams, events, not_imported) = log_audit(&setup.db).await;
    assert_eq!(streams.len() as u64, generated.good);
    assert_eq!(
        events as u64,
        events_before as u64 + second.events_imported + 1
    );
    assert_eq!(not_imported, 1, "the live event only");
    let live_told: i64 = streams[&live_stream];
    assert_eq!(live_told, live_events);
    let fresh = self::setup().await;
    let (whole, _) = run(&fresh, &later, Format::Jsonl, "whole").await;
    assert_eq!(whole.events_imported, generated.events);
    let (fresh_streams, _, _) = log_audit(&fresh.db).await;
    for (stream, count) in &fresh_streams {
        if *stream != live_stream {
            assert_eq!(streams.get(stream), Some(count), "stream {stream}");
        }
    }
    let digest = |db: &TestDatabase| {
        let db = db.url().to_owned();
        async move {
            let client = order_testkit::pg::try_connect(&db).await.unwrap();
            client
                .query_one(
                    "SELECT md5(string_agg(stream_id::text || stream_version || event_id::text \
                         || event_type || payload::text, ',' ORDER BY stream_id, stream_version)) \
                     FROM orders.events WHERE stream_id <> $1",
                    &[&live_stream],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    assert_eq!(digest(&setup.db).await, digest(&fresh.db).await);

    // And a third run changes nothing.
    let (third, _) = run(&setup, &later, Format::Jsonl, "delta").await;
    assert_eq!(
        (
            third.orders_imported,
            third.orders_updated,
            third.events_imported
        ),
        (0, 0, 0)
    );
}

/// Orders imported before 2026-12-04 keep the event ids of then (docs/import.md, "Ids"): a run
/// of this version over them leaves them alone (present), brings one that moved on up to date,
/// and still reports one whose past changed.
#[tokio::test]
async fn orders_imported_with_the_earlier_event_id_formats_are_left_alone_unless_they_changed() {
    use order_import::legacy::LegacyOrder;
    use order_import::tell::{Ids, tell};
    use order_store::ImportProgress;

    let setup = setup().await;
    let (path, generated, expected) = export(setup.dir.path(), Format::Jsonl, 300, 0, 5);
    assert!(expected.is_empty());
    let ids = Ids::new("legacy");
    // The log as the earlier versions wrote it: every id in one of the two earlier forms.
    let mut streams = Vec::new();
    for (index, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
        let legacy: LegacyOrder = serde_json::from_str(line).unwrap();
        let mut stream = tell(&legacy, &ids).unwrap();
        let stream_id = stream.stream_id;
        for (version, event) in stream.events.iter_mut().enumerate() {
            let whole = uuid::Uuid::new_v5(&stream_id, (version + 1).to_string().as_bytes());
            event.event_id = if index % 2 == 0 {
                whole
            } else {
                let mut bytes = *stream_id.as_bytes();
                bytes[8..].copy_from_slice(&whole.as_bytes()[8..]);
                uuid::Uuid::from_bytes(bytes)
            };
        }
        streams.push(stream);
    }
    assert_eq!(streams.len() as u64, generated.good);
    // One order imported when its record told less (it moved on since), one whose record's
    // past changed since (its placement's time, as the log holds it, is another).
    let moved = streams.iter().position(|s| s.events.len() > 2).unwrap();
    let changed = (moved + 1) % streams.len();
    streams[moved].events.truncate(2);
    streams[changed].events[0].recorded_at += std::time::Duration::from_secs(1);
    setup.store.import_begin("earlier", "legacy").await.unwrap();
    for chunk in streams.chunks(100) {
        setup
            .store
            .import_batch("earlier", chunk, ImportProgress::default())
            .await
            .unwrap();
    }
    let (_, events_before, _) = log_audit(&setup.db).await;

    let (summary, rejects) = run(&setup, &path, Format::Jsonl, "earlier").await;
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(
        rejects[0].order_id.as_deref(),
        Some(streams[changed].imported_from.trim_start_matches("legacy:"))
    );
    assert!(
        rejects[0]
            .reason
            .contains("its imported event 1 (OrderPlaced) is not what the legacy record tells now"),
        "{rejects:?}"
    );
    // Its record did not move on: the reason does not say it did.
    assert!(
        rejects[0].reason.starts_with(&format!(
            "order {} was imported before and its imported event 1 (OrderPlaced)",
            streams[changed].imported_from.trim_start_matches("legacy:")
        )) && !rejects[0].reason.contains("moved on"),
        "{rejects:?}"
    );
    assert_eq!(
        (
            summary.orders_imported,
            summary.orders_updated,
            summary.orders_present,
            summary.rejected
        ),
        (0, 1, generated.good - 2, 1),
        "{summary:?}"
    );
    // The moved-on order's new events, under this version's ids.
    let (streams_now, events_now, _) = log_audit(&setup.db).await;
    assert_eq!(streams_now.len() as u64, generated.good);
    assert_eq!(events_now, events_before + summary.events_imported as i64);
    assert!(summary.events_imported > 0);
}

/// A CSV order the domain refuses is reported at the row that is wrong: `lines[1]` at its row
/// of order_lines.csv, `status_history[1]` at its row of status_history.csv, `payments[0]` at
/// its row of payments.csv; what no row holds (the currency) at the order's row of orders.csv.
#[tokio::test]
async fn a_csv_order_the_domain_refuses_is_reported_at_the_row_that_is_wrong() {
    let setup = setup().await;
    let dir = setup.dir.path().join("export");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    let order = |id: &str, currency: &str| {
        format!("{id},C1,{currency},standard,Ada,1 Main St,,Porto,,4000-322,PT\n")
    };
    write(
        "orders.csv",
        &format!(
            "order_id,customer_id,currency,shipping_method,recipient,line1,line2,city,region,postal_code,country\n{}{}{}{}{}",
            order("A1", "EUR"),
            order("A2", "EUR"),
            order("A3", "EUR"),
            order("A4", "XQZ"),
            order("A5", "EUR"),
        ),
    );
    write(
        "order_lines.csv",
        "order_id,sku,quantity,unit_price_minor\n\
         A1,SKU-1,1,1000\n\
         A1,SKU-2,0,1000\n\
         A2,SKU-1,1,1000\n\
         A3,SKU-1,1,1000\n\
         A4,SKU-1,1,1000\n\
         A5,SKU-1,1,1000\n",
    );
    write(
        "payments.csv",
        "order_id,payment_id,currency,amount_minor\n\
         A3,PAY-3,EUR,999\n",
    );
    write("shipments.csv", "order_id,carrier,tracking_number\n");
    write(
        "refunds.csv",
        "order_id,currency,amount_minor,refunded_at\n",
    );
    write(
        "status_history.csv",
        "order_id,status,at,reason\n\
         A1,placed,2019-01-01T00:00:00Z,\n\
         A2,placed,2019-01-01T00:00:00Z,\n\
         A2,lost_in_the_mail,2019-01-02T00:00:00Z,\n\
         A3,placed,2019-01-01T00:00:00Z,\n\
         A3,authorized,2019-01-02T00:00:00Z,\n\
         A4,placed,2019-01-01T00:00:00Z,\n\
         A5,placed,2019-01-01T00:00:00Z,\n",
    );
    let (summary, rejects) = run(&setup, &dir, Format::Csv, "rows").await;
    assert_eq!(summary.orders_imported, 1, "{rejects:#?}");
    let at: BTreeMap<String, (String, u64, String)> = rejects
        .into_iter()
        .map(|r| (r.order_id.unwrap(), (r.file, r.line, r.reason)))
        .collect();
    let place = |id: &str| (at[id].0.as_str(), at[id].1);
    assert_eq!(place("A1"), ("order_lines.csv", 3), "{at:#?}");
    assert!(at["A1"].2.contains("lines[1].quantity"), "{at:#?}");
    assert_eq!(place("A2"), ("status_history.csv", 4), "{at:#?}");
    assert!(at["A2"].2.starts_with("status_history[1]"), "{at:#?}");
    assert_eq!(place("A3"), ("payments.csv", 2), "{at:#?}");
    assert!(at["A3"].2.contains("payments[0]"), "{at:#?}");
    assert_eq!(place("A4"), ("orders.csv", 5), "{at:#?}");
}

/// Two runs at once with one rejects file would write one report of both, mixed up: the run
/// that comes second finds the file locked and stops at once (exit 1), before it writes
/// anything, the progress row and the first run's report untouched.
#[tokio::test]
async fn a_second_run_with_the_same_rejects_file_is_refused_while_the_first_runs() {
    let setup = setup().await;
    let (input, _, expected) = export(setup.dir.path(), Format::Jsonl, 3_000, 100, 21);
    let binary = env!("CARGO_BIN_EXE_order-import");
    let rejects = setup.dir.path().join("both.rejects.jsonl");
    let command = |name: &str, rate: &str| {
        let mut command = std::process::Command::new(binary);
        command
            .args(["run", "--no-progress", "--name", name, "--input"])
            .arg(&input)
            .arg("--rejects")
            .arg(&rejects)
            .args(["--max-rate", rate])
            .env("DATABASE_URL", setup.db.url())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        command
    };
    // The first run takes over 20 s whatever the machine (the rate bounds it from above).
    let mut first = command("both", "1000").spawn().unwrap();
    // It holds the rejects file once its progress row exists.
    let waited = std::time::Instant::now();
    while setup.store.import_status("both").await.unwrap().is_none() {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(60),
            "the first run did not begin in 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for name in ["both", "other"] {
        let output = command(name, "100000000").output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("another run") && stderr.contains("both.rejects.jsonl"),
            "{stderr}"
        );
    }
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run was still running while the second was refused"
    );
    let record = setup.store.import_status("both").await.unwrap().unwrap();
    assert_eq!(record.runs, 1, "the refused runs changed the progress row");
    assert!(setup.store.import_status("other").await.unwrap().is_none());
    // The first run goes on to its end, its report whole: one line per reject.
    first.kill().unwrap();
    first.wait().unwrap();
    let output = command("both", "100000000").output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Reject> = read_lines(&rejects);
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
}

/// A stray quote in a CSV export loses no row: the order whose field it closed and every order
/// whose row it swallowed are rejected (whole: nothing of them is written), the rest imported,
/// and a run of the fixed export imports the rejected orders.
#[tokio::test]
async fn a_stray_quote_rejects_the_orders_whose_rows_it_swallowed_and_the_fixed_export_completes_them()
 {
    let setup = setup().await;
    let (input, generated, _) = export(setup.dir.path(), Format::Csv, 300, 0, 17);
    let refunds = input.join("refunds.csv");
    let original = std::fs::read_to_string(&refunds).unwrap();
    let mut rows: Vec<String> = original.lines().map(str::to_owned).collect();
    // Two rows of two orders, one after the other: a quote opens in the first one's
    // refunded_at and a stray quote closes it at the end of the second's.
    let id = |row: &str| row.split(',').next().unwrap().to_owned();
    let at = (1..rows.len() - 1)
        .find(|&i| id(&rows[i]) != id(&rows[i + 1]) && id(&rows[i]) != id(&rows[i - 1]))
        .unwrap();
    let (first, second) = (id(&rows[at]), id(&rows[at + 1]));
    let (head, time) = rows[at].rsplit_once(',').unwrap();
    rows[at] = format!("{head},\"{time}");
    rows[at + 1].push('"');
    std::fs::write(&refunds, rows.join("\n") + "\n").unwrap();
    let (summary, rejects) = run(&setup, &input, Format::Csv, "stray").await;
    let rejected: BTreeSet<&str> = rejects
        .iter()
        .filter_map(|r| r.order_id.as_deref())
        .collect();
    assert_eq!(
        rejected,
        BTreeSet::from([first.as_str(), second.as_str()]),
        "{rejects:#?}"
    );
    assert_eq!(summary.orders_rejected, 2);
    assert_eq!(summary.orders_imported, generated.good - 2);
    let (streams, _, _) = log_audit(&setup.db).await;
    assert_eq!(
        streams.len() as u64,
        generated.good - 2,
        "nothing of them written"
    );
    // The fixed export: the two orders are imported, the rest are in the log already.
    std::fs::write(&refunds, original).unwrap();
    let (summary, rejects) = run(&setup, &input, Format::Csv, "stray").await;
    assert!(rejects.is_empty(), "{rejects:#?}");
    assert_eq!(
        (summary.orders_imported, summary.orders_present),
        (2, generated.good - 2)
    );
    let (streams, events, not_imported) = log_audit(&setup.db).await;
    assert_eq!(streams.len() as u64, generated.good);
    assert_eq!(events as u64, generated.events);
    assert_eq!(not_imported, 0);
}

/// An export that stops before record `gate` until released, and says when it got there.
struct Gated {
    inner: Box<dyn order_import::source::Source>,
    read: usize,
    gate: usize,
    reached: Option<tokio::sync::oneshot::Sender<()>>,
    release: std::sync::mpsc::Receiver<()>,
}

impl Gated {
    /// `text` read as the JSON Lines file `file`, held at record `gate`: the receiver hears
    /// when the reader got there, and the sender lets it go on.
    fn over(
        text: String,
        file: &str,
        gate: usize,
    ) -> (
        Self,
        tokio::sync::oneshot::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let size = text.len() as u64;
        let (reached, reached_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release) = std::sync::mpsc::channel();
        let source = Self {
            inner: Box::new(order_import::source::JsonLines::new(
                std::io::Cursor::new(text.into_bytes()),
                file.into(),
                size,
            )),
            read: 0,
            gate,
            reached: Some(reached),
            release,
        };
        (source, reached_rx, release_tx)
    }
}

impl order_import::source::Source for Gated {
    fn next_record(&mut self) -> Option<std::io::Result<order_import::source::Record>> {
        if self.read == self.gate {
            if let Some(reached) = self.reached.take() {
                let _ = reached.send(());
            }
            let _ = self.release.recv();
        }
        self.read += 1;
        self.inner.next_record()
    }

    fn progress(&self) -> order_import::source::Progress {
        self.inner.progress()
    }
}

/// A run stopped by a signal leaves the rejects file in step with the progress row: the
/// rejects of the records up to the last batch committed, which the row counts, and not those
/// of records read ahead of it (they are read again, and reported, by the next run).
#[tokio::test]
async fn a_stopped_run_leaves_the_rejects_of_the_batches_committed_as_the_progress_row_counts() {
    let setup = setup().await;
    let (input, _, _) = export(setup.dir.path(), Format::Jsonl, 8, 0, 11);
    let good: Vec<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // Two rejects, two orders (a batch), two rejects, then the gate, then the rest.
    let text = [
        "not json 1",
        "not json 2",
        &good[0],
        &good[1],
        "not json 3",
        "not json 4",
        &good[2],
        &good[3],
    ]
    .join("\n");
    let (source, reached_rx, release_tx) = Gated::over(text, "gated.jsonl", 6);
    let mut options = Options::new("gated");
    options.rejects = setup.dir.path().join("gated.rejects.jsonl");
    options.batch_orders = 2;
    options.writers = 1;
    let store = setup.store.clone();
    // The signal: once the reader waits at the gate (the first batch sent, two more rejects
    // read) and the first batch committed; the reader is let go as it comes.
    let stop = async move {
        reached_rx.await.unwrap();
        let waited = std::time::Instant::now();
        while store
            .import_status("gated")
            .await
            .unwrap()
            .is_none_or(|record| record.batches == 0)
        {
            assert!(waited.elapsed() < std::time::Duration::from_secs(30));
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        release_tx.send(()).unwrap();
    };
    let error = order_import::run::import_until(&setup.store, Box::new(source), &options, stop)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("stopped by a signal"),
        "{error:#}"
    );
    let record = setup.store.import_status("gated").await.unwrap().unwrap();
    assert_eq!(
        (record.orders_read, record.orders_rejected),
        (4, 2),
        "{record:?}"
    );
    let rejects: Vec<Reject> = read_lines(&options.rejects);
    assert_eq!(
        rejects.iter().map(|r| r.line).collect::<Vec<_>>(),
        [1, 2],
        "the rejects file holds what the progress row counts: {rejects:?}"
    );
}

/// A live order whose id is the one the import derives for a legacy order (a collision of
/// stream ids) is left alone, and its reject says what is true: the stream holds events not
/// from this import, a live order with that id; the order was never imported.
#[tokio::test]
async fn a_live_order_with_the_stream_id_of_a_legacy_order_is_reported_as_such() {
    let setup = setup().await;
    let (input, generated, _) = export(setup.dir.path(), Format::Jsonl, 150, 0, 13);
    let stream = order_import::tell::Ids::new("legacy").order("L0000000100");
    let client = setup.db.connect().await;
    client
        .execute(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, category)
             VALUES ($1, 1, gen_random_uuid(), 'OrderPlaced', 1, '{}', 'order')",
            &[&stream],
        )
        .await
        .unwrap();
    let (summary, rejects) = run(&setup, &input, Format::Jsonl, "collision").await;
    assert_eq!(summary.orders_imported, generated.good - 1, "{summary:?}");
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    let reason = &rejects[0].reason;
    assert_eq!(rejects[0].order_id.as_deref(), Some("L0000000100"));
    assert_eq!(rejects[0].line, 100);
    assert!(!reason.contains("imported before"), "{reason}");
    assert!(
        reason.contains("was not imported")
            && reason.contains(&stream.to_string())
            && reason.contains("not from this import")
            && reason.contains("a live order"),
        "{reason}"
    );
    // The live stream is left as it was.
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM orders.events WHERE stream_id = $1",
            &[&stream],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 1);
}

/// An empty export (an empty file, `/dev/null`, a file of blank lines, CSV tables with their
/// headers only) is refused: a transfer that produced an empty file must not look like a run
/// that imported everything. Exit 1, one line, and nothing written (no progress row).
#[tokio::test]
async fn an_empty_export_is_refused_and_writes_nothing() {
    let setup = setup().await;
    let empty = setup.dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let blank = setup.dir.path().join("blank.jsonl");
    std::fs::write(&blank, "\n  \n\n").unwrap();
    let (csv, _, _) = export(setup.dir.path(), Format::Csv, 0, 0, 1);
    for (input, format) in [
        (empty.as_path(), Format::Jsonl),
        (blank.as_path(), Format::Jsonl),
        (csv.as_path(), Format::Csv),
    ] {
        let source = open(input, format, Default::default()).unwrap();
        let mut options = Options::new("empty");
        options.rejects = setup.dir.path().join("empty.rejects.jsonl");
        let error = import(&setup.store, source, &options).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the export holds no order record"),
            "{input:?}: {error:#}"
        );
        assert!(setup.store.import_status("empty").await.unwrap().is_none());
        assert!(!options.rejects.exists(), "{input:?}");
    }
    // The binary: exit 1 with one line.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_order-import"))
        .args(["run", "--no-progress", "--input", "/dev/null", "--rejects"])
        .arg(setup.dir.path().join("null.rejects.jsonl"))
        .env("DATABASE_URL", setup.db.url())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("the export holds no order record"),
        "{stderr}"
    );
    assert!(setup.store.import_status("null").await.unwrap().is_none());
}

/// A bad record may be up to 1 MiB, and its order id (or a reason quoting a value of it) as
/// long: its reject is cut to a bound when it is made, so that the rejects held per batch are
/// small and the rejects file stays readable. The cut is on a character boundary and says so
/// (`…` and the original length in bytes); a reason keeps its start and its end; the orders
/// around such records import.
#[tokio::test]
async fn a_reject_of_a_record_with_a_huge_order_id_is_cut_to_its_bound_and_the_orders_around_it_import()
 {
    let setup = setup().await;
    let good = |id: &str| {
        format!(
            r#"{{"order_id":"{id}","customer_id":"C","currency":"EUR","shipping_method":"standard","ship_to":{{"recipient":"Ada","line1":"1 Main St","city":"Porto","postal_code":"4000-322","country":"PT"}},"lines":[{{"sku":"SKU-1","quantity":1,"unit_price_minor":1000}}],"status_history":[{{"status":"placed","at":"2019-01-01T00:00:00Z"}}]}}"#
        )
    };
    // 102,401 bytes each; two-byte characters, so that a cut at an even byte would split one.
    let huge_b = format!("B{}", "\u{e9}".repeat(51_200));
    let huge_c = format!("C{}", "y".repeat(102_400));
    let unknown_field = "z".repeat(102_400);
    let input = setup.dir.path().join("huge.jsonl");
    std::fs::write(
        &input,
        [
            good("A1"),
            // Read, refused by the domain (an id longer than 200 bytes).
            good(&huge_b),
            // The same again: a duplicate, whose reason quotes the id.
            good(&huge_b),
            // Unreadable: an unknown field the reason quotes.
            good(&huge_c).replacen('{', &format!(r#"{{"{unknown_field}":1,"#), 1),
            good("D1"),
        ]
        .join("\n"),
    )
    .unwrap();
    let (summary, rejects) = run(&setup, &input, Format::Jsonl, "huge").await;
    assert_eq!(summary.orders_imported, 2, "{summary:?}");
    assert_eq!(
        rejects.iter().map(|r| r.line).collect::<Vec<_>>(),
        [2, 3, 4],
        "{summary:?}"
    );
    let text = std::fs::read_to_string(setup.dir.path().join("huge.rejects.jsonl")).unwrap();
    for line in text.lines() {
        assert!(
            line.len() <= 256 + 1024 + input.as_os_str().len() + 100,
            "a line of the rejects file of {} bytes: {}",
            line.len(),
            start_of(line, 2000)
        );
    }
    let short = |text: &str| start_of(text, 300).to_owned();
    for (reject, start) in rejects.iter().zip(["B\u{e9}", "B\u{e9}", "Cy"]) {
        let id = reject.order_id.as_deref().unwrap_or_default();
        assert!(
            id.len() <= 256
                && id.starts_with(start)
                && id.contains('…')
                && id.contains("102401 bytes"),
            "order id of line {}: {}",
            reject.line,
            short(id)
        );
        assert!(
            reject.reason.len() <= 1024,
            "reason of line {} of {} bytes: {}",
            reject.line,
            reject.reason.len(),
            short(&reject.reason)
        );
    }
    assert!(
        rejects[0].reason.contains("longer than 200 bytes"),
        "{}",
        rejects[0].reason
    );
    // The reasons that quote a huge value keep their start and end, and say where they are cut.
    let duplicate = &rejects[1].reason;
    assert!(
        duplicate.starts_with("order B\u{e9}")
            && duplicate.contains('…')
            && duplicate.contains(" bytes")
            && duplicate.ends_with("more than once (the first one counts)"),
        "{duplicate}"
    );
    let unknown = &rejects[2].reason;
    assert!(
        unknown.starts_with("not a legacy order record: zzz")
            && unknown.contains('…')
            && unknown.contains("expected one of"),
        "{unknown}"
    );
}

/// The start of `text`, at most `bytes` long, cut on a character boundary.
fn start_of(text: &str, bytes: usize) -> &str {
    let end = (0..=bytes.min(text.len()))
        .rev()
        .find(|&at| text.is_char_boundary(at))
        .unwrap_or(0);
    &text[..end]
}

/// The JSON line `line` of a legacy order, its recipient changed: its OrderPlaced is no longer
/// what the log holds of it, so an order imported from it before has diverged.
fn with_recipient_changed(line: &str) -> String {
    let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
    let recipient = record["ship_to"]["recipient"].as_str().unwrap().to_owned();
    record["ship_to"]["recipient"] = serde_json::Value::String(format!("{recipient} Moved"));
    record.to_string()
}

/// The lines of the rejects file at `path` that are whole (ending in a newline), read while a
/// run may be writing it.
fn whole_reject_lines(path: &Path) -> Vec<Reject> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// An order imported before whose record changed since (it diverged: left alone, and
/// reported) is found by its batch's append: its reject goes to the rejects file with that
/// batch, in the order of the export among the rejects of the records read with it, and is
/// not held in memory until the run ends. The run's summary and its progress row count it
/// once.
#[tokio::test]
async fn a_diverged_orders_reject_is_written_with_its_batch_not_held_until_the_run_ends() {
    let setup = setup().await;
    let (input, generated, _) = export(setup.dir.path(), Format::Jsonl, 6, 0, 17);
    let (first, _) = run(&setup, &input, Format::Jsonl, "held").await;
    assert_eq!(first.orders_imported, generated.good);
    let good: Vec<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // Batches of two orders: [1*, (2), 3], [(4), 5, 6*], then the gate, then [7, (8), 9*]
    // (* a changed order, (n) a line that is no JSON).
    let text = [
        with_recipient_changed(&good[0]),
        "not json 2".into(),
        good[1].clone(),
        "not json 4".into(),
        good[2].clone(),
        with_recipient_changed(&good[3]),
        good[4].clone(),
        "not json 8".into(),
        with_recipient_changed(&good[5]),
    ]
    .join("\n");
    let (source, reached_rx, release_tx) = Gated::over(text, "changed.jsonl", 6);
    let mut options = Options::new("held");
    options.rejects = setup.dir.path().join("changed.rejects.jsonl");
    options.batch_orders = 2;
    options.writers = 1;
    let batches_before = setup
        .store
        .import_status("held")
        .await
        .unwrap()
        .unwrap()
        .batches;
    // Once the reader waits at the gate and the second batch committed (one writer: the
    // first batch's writer, its rejects' write included, was done before the second began),
    // the rejects file is read; then the reader goes on and the run finishes.
    let store = setup.store.clone();
    let rejects_path = options.rejects.clone();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let watch = async move {
        reached_rx.await.unwrap();
        let waited = std::time::Instant::now();
        while store
            .import_status("held")
            .await
            .unwrap()
            .is_none_or(|record| record.batches < batches_before + 2)
        {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(60),
                "the second batch did not commit in 60 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        seen_tx.send(whole_reject_lines(&rejects_path)).unwrap();
        release_tx.send(()).unwrap();
        std::future::pending::<()>().await;
    };
    let summary = order_import::run::import_until(&setup.store, Box::new(source), &options, watch)
        .await
        .unwrap();
    let midway = seen_rx.await.unwrap();
    let lines = |rejects: &[Reject]| rejects.iter().map(|r| r.line).collect::<Vec<_>>();
    assert!(
        lines(&midway).starts_with(&[1, 2]),
        "once the first batch committed, the rejects file holds its diverged order (line 1) \
         before the line read after it (2): {midway:#?}"
    );
    let rejects: Vec<Reject> = read_lines(&options.rejects);
    assert_eq!(lines(&rejects), [1, 2, 4, 6, 8, 9], "{rejects:#?}");
    assert!(rejects.starts_with(&midway), "{midway:#?}\n{rejects:#?}");
    for reject in rejects.iter().filter(|r| [1, 6, 9].contains(&r.line)) {
        assert!(
            reject
                .reason
                .contains("was imported before and its imported event 1 (OrderPlaced)")
                && reject.order_id.is_some(),
            "{reject:?}"
        );
    }
    assert_eq!(
        (
            summary.orders_read,
            summary.orders_rejected,
            summary.rejected,
            summary.orders_present
        ),
        (9, 6, 6, 3),
        "{summary:?}"
    );
    let record = setup.store.import_status("held").await.unwrap().unwrap();
    assert_eq!(
        (record.orders_read, record.orders_rejected),
        (9, 6),
        "{record:?}"
    );
}

/// A re-import of a changed export, stopped by SIGTERM after some batches committed, leaves a
/// rejects file that names the diverged orders (imported before, their records changed since)
/// of the batches committed, in the order of the export with the other rejects, and none of
/// those read ahead; the progress row counts them all, the diverged orders included (before,
/// those were counted in it only once a run finished).
#[tokio::test]
async fn a_stopped_reimport_of_a_changed_export_leaves_the_diverged_rejects_of_its_committed_batches()
 {
    let setup = setup().await;
    let (input, _, expected) = export(setup.dir.path(), Format::Jsonl, 3_000, 100, 23);
    let lines: Vec<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 3_000, "one record a line");
    let bad: BTreeSet<u64> = expected.iter().map(|e| e.line).collect();
    // The earlier export: every other good record. The later one: the whole export, with the
    // records of every fourth order imported from the earlier one changed (they diverge), and
    // the orders the earlier one did not have to append (paced by --max-rate).
    let imported: Vec<u64> = (1..=lines.len() as u64)
        .filter(|line| !bad.contains(line))
        .step_by(2)
        .collect();
    let changed: BTreeSet<u64> = imported.iter().copied().step_by(4).collect();
    let earlier = setup.dir.path().join("earlier.jsonl");
    let earlier_text: Vec<&str> = imported
        .iter()
        .map(|&line| lines[line as usize - 1].as_str())
        .collect();
    std::fs::write(&earlier, earlier_text.join("\n")).unwrap();
    let (first, _) = run(&setup, &earlier, Format::Jsonl, "changed").await;
    assert_eq!(first.orders_imported, imported.len() as u64);
    let later = setup.dir.path().join("later.jsonl");
    let later_text: Vec<String> = lines
        .iter()
        .zip(1u64..)
        .map(|(text, line)| {
            if changed.contains(&line) {
                with_recipient_changed(text)
            } else {
                text.clone()
            }
        })
        .collect();
    std::fs::write(&later, later_text.join("\n")).unwrap();
    let batches_before = setup
        .store
        .import_status("changed")
        .await
        .unwrap()
        .unwrap()
        .batches;

    let rejects = setup.dir.path().join("later.rejects.jsonl");
    // The rate bounds how fast it can go (some 10 s for the orders it appends), so the signal
    // arrives mid-run.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_order-import"))
        .args(["run", "--name", "changed", "--no-progress", "--input"])
        .arg(&later)
        .arg("--rejects")
        .arg(&rejects)
        .args(["--batch-orders", "20", "--max-rate", "1000"])
        .env("DATABASE_URL", setup.db.url())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signal once a few batches committed.
    let waited = std::time::Instant::now();
    while setup
        .store
        .import_status("changed")
        .await
        .unwrap()
        .is_none_or(|record| record.batches < batches_before + 5)
    {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(60),
            "no batches committed in 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped by a signal"), "{stderr}");

    // Every batch taken committed: the records through the last one's are those the progress
    // row says were read, and their rejects are the file's, in the order of the export.
    let record = setup.store.import_status("changed").await.unwrap().unwrap();
    assert!(record.finished_at.is_none(), "{record:?}");
    let read = record.orders_read;
    assert!(
        read < lines.len() as u64,
        "stopped mid-run: {read} records read"
    );
    let diverged: Vec<u64> = changed.iter().copied().filter(|&l| l <= read).collect();
    assert!(diverged.len() >= 5, "{read} records read: {diverged:?}");
    let want: Vec<u64> = bad
        .iter()
        .copied()
        .filter(|&l| l <= read)
        .chain(diverged.iter().copied())
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect();
    let reported: Vec<Reject> = read_lines(&rejects);
    assert_eq!(
        reported.iter().map(|r| r.line).collect::<Vec<_>>(),
        want,
        "the rejects of the records through line {read} (diverged: {diverged:?})"
    );
    for reject in reported.iter().filter(|r| changed.contains(&r.line)) {
        assert!(
            reject.reason.contains(
                "its imported event 1 (OrderPlaced) is not what the legacy record tells now"
            ),
            "{reject:?}"
        );
    }
    assert_eq!(
        record.orders_rejected,
        reported.len() as u64,
        "the progress row counts every reject of the file, the diverged orders ({}) included: \
         {record:?}",
        diverged.len()
    );
}

/// While one batch cannot commit (its order's first row is held by another transaction), the
/// other writer goes on with the batches after it, but no further than the bound on batches
/// whose rejects wait for it (4 per writer): then the run waits. Once the held batch
/// commits, the run imports everything and its rejects file is in the order of the export.
#[tokio::test]
async fn batches_past_one_that_cannot_commit_are_bounded_and_the_run_ends_whole() {
    let setup = setup().await;
    // 60 orders, every 7th record bad: batches of 2 orders, 30 of them, most with rejects.
    let (input, generated, expected) = export(setup.dir.path(), Format::Jsonl, 70, 7, 29);
    assert_eq!(generated.good, 60);
    let first = order_import::tell::Ids::new("legacy").order(&order_import::generate::order_id(1));
    let holder = setup.db.connect().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, \
             schema_version, payload) VALUES ($1, 1, gen_random_uuid(), 'Holder', 1, '{}')",
            &[&first],
        )
        .await
        .unwrap();
    let mut options = Options::new("bounded");
    options.rejects = setup.dir.path().join("bounded.rejects.jsonl");
    options.batch_orders = 2;
    options.writers = 2;
    let store = setup.store.clone();
    let watcher = setup.db.connect().await;
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let watch = async move {
        let streams = || async {
            let row = watcher
                .query_one("SELECT count(DISTINCT stream_id) FROM orders.events", &[])
                .await
                .unwrap();
            row.get::<_, i64>(0)
        };
        // The other writer commits the batches after the held one, up to the bound: 4 per
        // writer, 8 batches of 2 orders. Seen as they commit, then for 2 s more: a run
        // without the bound commits all 29 meanwhile.
        let waited = std::time::Instant::now();
        while streams().await < 16 {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(60),
                "the batches after the held one did not commit in 60 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let past = streams().await;
        let record = store.import_status("bounded").await.unwrap();
        seen_tx.send((past, record.map(|r| r.batches))).unwrap();
        holder.batch_execute("ROLLBACK").await.unwrap();
        std::future::pending::<()>().await;
    };
    let summary = order_import::run::import_until(
        &setup.store,
        open(&input, Format::Jsonl, Default::default()).unwrap(),
        &options,
        watch,
    )
    .await
    .unwrap();
    let (past, batches) = seen_rx.await.unwrap();
    assert_eq!(
        (past, batches),
        (16, Some(8)),
        "while the first batch was held, the orders (and batches) committed past it"
    );
    assert_eq!(summary.orders_imported, generated.good, "{summary:?}");
    let (streams, events, _) = log_audit(&setup.db).await;
    assert_eq!(streams.len() as u64, generated.good);
    assert_eq!(events as u64, generated.events);
    let rejects: Vec<Reject> = read_lines(&options.rejects);
    check_rejects(&rejects, &expected);
}

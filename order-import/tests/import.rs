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

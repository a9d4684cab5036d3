//! A legacy import beside the running services has no side effects: the worker (calling the
//! HTTP provider stub) never acts on imported history, no command is recorded for it, and the
//! projector still folds it into the read model. Live orders placed at the same time go through
//! the whole saga, so the test sees the worker at work.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use order_faults::load::{self, LoadOptions};
use order_faults::stack::{HttpProviders, Stack, StackOptions};
use order_import::generate::{Plan, generate};
use order_import::run::{Options, import};
use order_import::source::{Format, open};
use order_import::tell::Ids;
use order_store::{EventStore, StoreConfig};

/// Orders imported: `ORDER_E2E_IMPORT_ORDERS`, 100,000 (the figure) unless set.
fn imported_orders() -> u64 {
    std::env::var("ORDER_E2E_IMPORT_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_beside_the_running_worker_calls_no_provider_and_records_no_command() {
    let options = StackOptions {
        transient_failure_rate: 0.0,
        http_providers: Some(HttpProviders::default()),
        ..StackOptions::default()
    };
    let stack = Stack::start(&crate::binaries(), &options).await.unwrap();
    let imported_orders = imported_orders();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("legacy.jsonl");
    let plan = Plan {
        orders: imported_orders,
        bad_every: 0,
        seed: 17,
        format: Format::Jsonl,
    };
    let generated = generate(&plan, &input, &dir.path().join("expected.jsonl")).unwrap();

    // Live orders through order-grpc while the import runs.
    let endpoint = stack.endpoint();
    let load_options = LoadOptions {
        rate: 20,
        duration: Duration::from_secs(4),
        ..LoadOptions::default()
    };
    let live = tokio::spawn(async move { load::run(&endpoint, &load_options).await });
    let mut config = StoreConfig::new(stack.database_url.clone());
    config.statement_timeout = Duration::from_secs(120);
    let store = EventStore::new(config).unwrap();
    let source = open(&input, Format::Jsonl, Default::default()).unwrap();
    let mut import_options = Options::new("beside-the-worker");
    import_options.rejects = dir.path().join("rejects.jsonl");
    let summary = import(&store, source, &import_options).await.unwrap();
    assert_eq!(summary.orders_imported, generated.good);
    let report = live.await.unwrap().unwrap();
    assert!(
        report.acknowledged.len() >= 40,
        "{} live orders",
        report.acknowledged.len()
    );

    // The read model shows every order; the live ones settle through the providers.
    let db = stack.db().await.unwrap();
    let live_orders: Vec<uuid::Uuid> = report.acknowledged.iter().map(|a| a.order_id).collect();
    let expected = generated.good as i64 + live_orders.len() as i64;
    // Generous: a busy CI machine folds 100k orders slowly; only a failure waits it out.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let summaries: i64 = db
            .query_one("SELECT count(*) FROM orders.order_summaries", &[])
            .await
            .unwrap()
            .get(0);
        let unsettled: i64 = db
            .query_one(
                "SELECT count(*) FROM unnest($1::uuid[]) AS live(id)
                 WHERE NOT EXISTS (SELECT 1 FROM orders.order_summaries s
                                   WHERE s.order_id = live.id
                                     AND s.status IN ('Completed', 'Cancelled'))",
                &[&live_orders],
            )
            .await
            .unwrap()
            .get(0);
        if summaries == expected && unsettled == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "read model {summaries} of {expected} orders, {unsettled} live orders unsettled"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Give the worker time to act on anything it received.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let ids = Ids::new("legacy");
    let imported: BTreeSet<String> = (1..=imported_orders)
        .map(|n| ids.order(&order_import::generate::order_id(n)).to_string())
        .collect();
    let live_ids: BTreeSet<String> = live_orders.iter().map(uuid::Uuid::to_string).collect();
    let effects = stack.stub.as_ref().unwrap().effects();
    let touched: BTreeSet<String> = [
        &effects.reservations,
        &effects.releases,
        &effects.authorizations,
        &effects.captures,
        &effects.voids,
        &effects.refunds,
        &effects.shipments,
        &effects.refusals,
    ]
    .iter()
    .flat_map(|m| m.keys().cloned())
    .collect();
    assert!(
        touched.intersection(&imported).next().is_none(),
        "a provider was called for an imported order"
    );
    assert!(
        touched.is_superset(&live_ids),
        "every live order went through the providers (the worker was at work)"
    );
    let commands: Vec<(uuid::Uuid,)> = db
        .query("SELECT DISTINCT stream_id FROM orders.commands", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0),))
        .collect();
    assert!(!commands.is_empty());
    for (stream,) in &commands {
        assert!(
            !imported.contains(&stream.to_string()),
            "a command was recorded for imported order {stream}"
        );
    }
    let imported_events: i64 = db
        .query_one(
            "SELECT count(*) FROM orders.events WHERE imported_from IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(imported_events as u64, generated.events);
}

//! A second aggregate in the same log: its commands run through the same handler, its
//! events carry their category, and each projection sees only the categories it follows.

use std::time::Duration;

use order_domain::{Currency, Money};
use order_examples::{CreditBalances, SkuSales, StoreCreditCommand, StoreCreditError};
use order_projector::{Projector, ReadModel};
use order_store::HandleError;
use uuid::Uuid;

use crate::support::*;

#[tokio::test]
async fn store_credit_lives_beside_orders_and_each_projection_sees_only_its_own() {
    let f = fixture().await;
    // Interleaved in the log: orders and credit at the same time.
    let (_, customers) = tokio::join!(
        write_orders(&f.orders, 0, 40, 3),
        write_credit(&f.credit, 25)
    );
    let categories: Vec<(String, i64)> = f
        .db
        .connect()
        .await
        .query(
            "SELECT category, count(DISTINCT stream_id) FROM orders.events GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        categories,
        [("order".to_owned(), 40), ("store_credit".to_owned(), 25)]
    );

    let store = order_store::EventStore::new(projector_config(&f.db)).unwrap();
    let running = Projector::builder(store.clone())
        .owner("mixed")
        .poll(Duration::from_millis(50))
        .projection(ReadModel::new().page(13))
        .projection(SkuSales::new().page(13))
        .projection(CreditBalances)
        .build()
        .unwrap()
        .start();
    for name in ["read_model", "sku_sales", "credit_balances"] {
        caught_up(&store, name).await;
    }
    // The order read model did not stop at a credit event (it never saw one) ...
    let summaries: i64 =
        f.db.connect()
            .await
            .query_one("SELECT count(*) FROM orders.order_summaries", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(summaries, 40);
    let errors: Vec<_> = store
        .subscriptions()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|s| s.last_error.map(|e| (s.name, e)))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    // ... and the credit projection holds exactly the credit streams, as the log says.
    let (stored, expected) = balances(&f.db).await;
    assert_eq!(stored.len(), customers.len());
    assert_eq!(stored, expected);

    // More credit: the balances follow.
    write_credit(&f.credit, 5).await;
    caught_up(&store, "credit_balances").await;
    let (stored, expected) = balances(&f.db).await;
    assert_eq!(stored, expected);
    running.stop(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_refused_or_repeated_credit_command_writes_nothing() {
    let f = fixture().await;
    let eur = |minor| Money::new(Currency::parse("EUR").unwrap(), minor).unwrap();
    let customer = Uuid::new_v4();
    let grant = StoreCreditCommand::grant(eur(1_000), "goodwill").unwrap();
    let context = context();
    let first = f.credit.handle(customer, &grant, &context).await.unwrap();
    let again = f.credit.handle(customer, &grant, &context).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.global_position, first.global_position);

    let spend = StoreCreditCommand::spend(eur(1_001), Uuid::new_v4()).unwrap();
    match f
        .credit
        .handle(customer, &spend, &crate::support::context())
        .await
    {
        Err(HandleError::Rejected(StoreCreditError::Insufficient { .. })) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let events = f.store.read_stream(customer, 0).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].category, "store_credit");
    assert_eq!(events[0].event_type, "CreditGranted");
}

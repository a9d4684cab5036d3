//! The test services themselves: databases from templates are isolated, queues are FIFO
//! with a working redrive policy.

#![allow(clippy::unwrap_used)]

use aws_sdk_sqs::types::QueueAttributeName;
use order_testkit::pg::TestDatabase;
use order_testkit::sqs;

async fn init(url: String) -> Result<(), tokio_postgres::Error> {
    let client = order_testkit::pg::try_connect(&url).await.unwrap();
    client
        .batch_execute("CREATE TABLE marker (id int PRIMARY KEY); INSERT INTO marker VALUES (1)")
        .await
}

#[tokio::test]
async fn databases_cloned_from_a_template_are_isolated() {
    let key = format!("selftest_{}", env!("CARGO_PKG_VERSION").replace('.', "_"));
    let a = TestDatabase::from_template(&key, init).await;
    let b = TestDatabase::from_template(&key, init).await;
    assert_ne!(a.name(), b.name());
    a.connect()
        .await
        .batch_execute("INSERT INTO marker VALUES (2)")
        .await
        .unwrap();
    let count = |db: &TestDatabase| {
        let url = db.url().to_owned();
        async move {
            let client = order_testkit::pg::try_connect(&url).await.unwrap();
            let row = client
                .query_one("SELECT count(*) FROM marker", &[])
                .await
                .unwrap();
            row.get::<_, i64>(0)
        }
    };
    assert_eq!((count(&a).await, count(&b).await), (2, 1));
}

#[tokio::test]
async fn fifo_queue_pairs_deduplicate_and_redrive() {
    let pair = sqs::fifo_queue_pair(2).await;
    let client = sqs::client();
    for _ in 0..2 {
        client
            .send_message()
            .queue_url(&pair.queue_url)
            .message_body("hello")
            .message_group_id("g")
            .message_deduplication_id("same-id")
            .send()
            .await
            .unwrap();
    }
    let attributes = client
        .get_queue_attributes()
        .queue_url(&pair.queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attributes = attributes.attributes().unwrap();
    assert_eq!(
        attributes[&QueueAttributeName::ApproximateNumberOfMessages],
        "1"
    );
    assert!(attributes[&QueueAttributeName::RedrivePolicy].contains("-dlq.fifo"));
}

#[tokio::test]
async fn a_private_cluster_restarts_and_freezes_on_demand() {
    use order_testkit::pg::{PrivateCluster, StopMode};
    let cluster = PrivateCluster::start().unwrap();
    let url = cluster.url("orders");
    let client = order_testkit::pg::try_connect(&url).await.unwrap();
    client
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    cluster.stop(StopMode::Immediate).unwrap();
    assert!(
        client.batch_execute("SELECT 1").await.is_err(),
        "the old session is gone"
    );
    cluster.start_again().unwrap();
    let client = order_testkit::pg::try_connect(&url).await.unwrap();
    let row = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        1,
        "committed data survives an immediate stop"
    );

    cluster.signal("STOP");
    let frozen = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        client.batch_execute("SELECT 1"),
    )
    .await;
    assert!(frozen.is_err(), "a frozen cluster does not answer");
    cluster.signal("CONT");
    client.batch_execute("SELECT 1").await.unwrap();
}

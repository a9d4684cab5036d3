//! A migrated database and a store per test.

use order_domain::es::Metadata;
use order_store::{
    AppendOutcome, AppendRequest, Committed, EventStore, ExpectedVersion, NewEvent, StoreConfig,
};
use order_testkit::pg::TestDatabase;
use uuid::Uuid;

pub struct TestStore {
    pub db: TestDatabase,
    pub store: EventStore,
}

pub async fn test_store() -> TestStore {
    test_store_with(|_| {}).await
}

pub async fn test_store_with(configure: impl FnOnce(&mut StoreConfig)) -> TestStore {
    let db = TestDatabase::migrated().await;
    let mut config = StoreConfig::new(db.url());
    config.pool_size = 32;
    // A slow machine (a CI runner opening dozens of connections at once) must not turn a
    // concurrency test into a pool-exhaustion failure; the tests of exhaustion set their own.
    config.pool_wait_timeout = std::time::Duration::from_secs(10);
    configure(&mut config);
    let store = EventStore::new(config).unwrap();
    TestStore { db, store }
}

/// A small event with a recognisable payload.
pub fn event(label: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "TestEvent".to_owned(),
        schema_version: 1,
        payload: serde_json::json!({ "label": label }).to_string(),
    }
}

pub fn metadata() -> Metadata {
    Metadata {
        correlation_id: Some("corr-1".to_owned()),
        ..Metadata::default()
    }
}

/// Append without an idempotency record.
pub async fn append(
    store: &EventStore,
    stream_id: Uuid,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<Committed, order_store::Error> {
    let metadata = metadata();
    let outcome = store
        .append(AppendRequest {
            stream_id,
            category: "test",
            expected,
            events,
            metadata: &metadata,
            idempotency: None,
        })
        .await?;
    match outcome {
        AppendOutcome::Appended(committed) => Ok(committed),
        AppendOutcome::Duplicate(committed) => panic!("unexpected duplicate {committed:?}"),
    }
}

/// Count rows of a table in the test database.
pub async fn count(db: &TestDatabase, table: &str) -> i64 {
    let client = db.connect().await;
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

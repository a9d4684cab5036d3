//! An aggregate's code that panics (a bug in a team's `decide`) fails the commands it was
//! deciding, and never leaves its stream stuck for the process's later commands.

use std::time::Duration;

use order_domain::upcast::{DecodeError, EncodeError};
use order_domain::{Aggregate, EventSchema};
use order_store::{CommandContext, CommandHandler, HandleError};
use uuid::Uuid;

use crate::support::*;

/// A counter whose `decide` panics on a negative amount.
#[derive(Debug, Clone, Default)]
struct Tally {
    total: i64,
}

#[derive(Debug, Clone)]
struct Added(i64);

impl EventSchema for Added {
    fn event_type(&self) -> &'static str {
        "Added"
    }
    fn schema_version(&self) -> u16 {
        1
    }
    fn encode(&self) -> Result<serde_json::Value, EncodeError> {
        Ok(serde_json::json!({ "n": self.0 }))
    }
    fn decode(
        event_type: &str,
        _schema_version: u16,
        payload: serde_json::Value,
    ) -> Result<Self, DecodeError> {
        payload["n"]
            .as_i64()
            .map(Added)
            .ok_or_else(|| DecodeError::Payload {
                event_type: event_type.to_owned(),
                reason: "no n".into(),
            })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Aggregate for Tally {
    type Command = i64;
    type Event = Added;
    type Error = Never;
    const CATEGORY: &'static str = "tally";

    fn decide(&self, command: &i64) -> Result<Vec<Added>, Never> {
        assert!(*command >= 0, "a bug in decide: {command}");
        Ok(vec![Added(*command)])
    }
    fn evolve(&mut self, event: &Added) {
        self.total += event.0;
    }
    fn status_label(&self) -> &'static str {
        "Counting"
    }
}

fn context() -> CommandContext {
    CommandContext {
        command_id: Uuid::new_v4(),
        expected_version: None,
        metadata: metadata(),
    }
}

/// Commands queued behind a running one are decided by a task of their own: a panic there
/// fails that batch's commands (UNAVAILABLE), and the stream takes commands again.
#[tokio::test]
async fn a_panic_deciding_queued_commands_leaves_the_stream_usable() {
    let t = test_store().await;
    let handler = CommandHandler::<Tally>::new(t.store.clone(), 5);
    let stream = Uuid::new_v4();
    handler.handle(stream, &1, &context()).await.unwrap();
    // Appends wait while another transaction holds the log in SHARE mode: the next command
    // runs, and those after it queue behind it.
    let admin = t.db.connect().await;
    admin
        .batch_execute("BEGIN; LOCK TABLE orders.events IN SHARE MODE")
        .await
        .unwrap();
    let running = tokio::spawn({
        let handler = handler.clone();
        async move { handler.handle(stream, &2, &context()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued: Vec<_> = [-1i64, 3]
        .into_iter()
        .map(|n| {
            let handler = handler.clone();
            tokio::spawn(async move { handler.handle(stream, &n, &context()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin.batch_execute("COMMIT").await.unwrap();
    running.await.unwrap().unwrap();
    // Both queued behind the running command (this runtime has one thread: they entered the
    // queue while the test slept) and were decided together by its drainer, which panicked:
    // both answered UNAVAILABLE, neither caller's own task panicked.
    for task in queued {
        let answer = task.await.expect("the caller's own task panicked");
        assert!(
            matches!(
                &answer,
                Err(HandleError::Store(order_store::Error::Unavailable(why))) if why.contains("stopped")
            ),
            "{answer:?}"
        );
    }
    let after = tokio::time::timeout(
        Duration::from_secs(20),
        handler.handle(stream, &4, &context()),
    )
    .await
    .expect("the stream takes commands again after a panic in its queue")
    .unwrap();
    assert!(after.stream_version >= 3, "{after:?}");
}

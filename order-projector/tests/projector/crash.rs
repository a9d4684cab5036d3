//! Crash safety: the projector process is killed with SIGKILL at random points, again and
//! again, while catching up. Afterwards the read tables equal a fold of the log and SQS holds
//! every event, in per-order order, with no duplicate deduplication id.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use order_testkit::sqs::{self, drain_queue};

use crate::sqs::{log_ids, received_per_order};
use crate::support::*;

fn spawn(f: &Fixture, queue_url: &str) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_order-projector"));
    command
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", f.db.url())
        .env("ORDERS_QUEUE_URL", queue_url)
        .env("ORDER_ADMIN_ADDR", "127.0.0.1:0")
        .env("ORDER_PROJECTOR_INSTANCE_ID", "crash-test")
        .env("ORDER_PROJECTOR_READ_MODEL_PAGE", "3")
        .env("ORDER_PROJECTOR_SQS_PAGE", "4")
        .env("ORDER_PROJECTOR_LEASE_TTL_MS", "2000")
        .env("ORDER_PROJECTOR_STANDBY_POLL_MS", "100")
        .env("ORDER_PROJECTOR_POLL_MS", "100")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    sqs::pass_environment(&mut command);
    command.spawn().unwrap()
}

fn random_millis(low: u64, high: u64) -> u64 {
    low + (uuid::Uuid::new_v4().as_u128() as u64) % (high - low)
}

#[tokio::test]
async fn killing_the_projector_twenty_times_loses_and_doubles_nothing() {
    let f = fixture().await;
    write_orders(&f.handler, 120, 8).await;
    let pair = sqs::fifo_queue_pair(5).await;
    let head = f.store.head_position().await.unwrap();
    // Another test's open transaction would hold the projector back and the kills would
    // all land before its first page.
    everything_visible(&f.store).await;

    // Each process is killed at a random moment after it has moved a checkpoint, however
    // long it took to start (a slow machine needs longer than any fixed delay), so that every
    // kill lands mid catch-up, between pages or inside one.
    let checkpoints = || async {
        (
            f.store
                .checkpoint("read_model")
                .await
                .unwrap()
                .global_position,
            f.store
                .checkpoint("sqs_publisher")
                .await
                .unwrap()
                .global_position,
        )
    };
    let mut progress = Vec::new();
    for _ in 0..20 {
        let before = checkpoints().await;
        let mut child = spawn(&f, &pair.queue_url);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let now = checkpoints().await;
            if now != before || now == (head, head) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a projector made no progress in 60 s (checkpoints {now:?}, head {head})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(random_millis(0, 80))).await;
        child.kill().unwrap(); // SIGKILL: no cleanup, no lease release
        child.wait().unwrap();
        progress.push(checkpoints().await);
    }
    let mid = progress
        .iter()
        .filter(|(read, sent)| *read < head || *sent < head)
        .count();
    assert!(
        mid >= 10,
        "at least half the kills landed mid catch-up: {progress:?} (head {head})"
    );

    // A last run finishes the catch-up, then stops gracefully.
    let mut child = spawn(&f, &pair.queue_url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let read = f
            .store
            .checkpoint("read_model")
            .await
            .unwrap()
            .global_position;
        let sent = f
            .store
            .checkpoint("sqs_publisher")
            .await
            .unwrap()
            .global_position;
        if read == head && sent == head {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no catch-up: read model {read}, sqs {sent}, head {head}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait().unwrap();

    assert_eq!(read_model(&f.db).await, expected_from_log(&f.store).await);
    totals_consistent(&f.db).await;

    let client = sqs::client();
    let messages = drain_queue(&client, &pair.queue_url).await;
    let (ids, per_order) = received_per_order(&messages);
    let unique: BTreeSet<_> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "no event delivered twice (deduplicated by event id)"
    );
    assert_eq!(unique, log_ids(&f).await, "every event reached SQS");
    for (order, versions) in &per_order {
        let numbers: Vec<u64> = versions.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            numbers,
            (1..=numbers.len() as u64).collect::<Vec<_>>(),
            "order {order} out of order"
        );
    }
}

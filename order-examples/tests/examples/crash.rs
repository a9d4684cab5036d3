//! kill -9 of the example's own projector binary (`sales-projector`), ten times during its
//! catch-up and ten times during a replay while orders keep coming: afterwards its table
//! equals a fold of the log, nothing counted twice, nothing skipped, no shadow table left.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::*;

/// A child process killed when dropped: a failing assertion must not leave a projector
/// running after the test (one left by an interrupted run kept polling for 48 minutes).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Process {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn spawn(f: &Fixture, args: &[&str], instance: &str) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_sales-projector"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", projector_config(&f.db).database_url)
            .env("ORDER_ADMIN_ADDR", "127.0.0.1:0")
            .env("ORDER_PROJECTOR_INSTANCE_ID", instance)
            .env("ORDER_PROJECTOR_SUBSCRIPTIONS", "sku_sales")
            .env("ORDER_PROJECTOR_LEASE_TTL_MS", "2000")
            .env("ORDER_PROJECTOR_REPLAY_LEASE_TTL_MS", "2000")
            .env("ORDER_PROJECTOR_STANDBY_POLL_MS", "100")
            .env("ORDER_PROJECTOR_POLL_MS", "100")
            .env("SKU_SALES_PAGE", "7")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn random_millis(low: u64, high: u64) -> u64 {
    low + (uuid::Uuid::new_v4().as_u128() as u64) % (high - low)
}

fn kill(child: &mut Child) -> Option<ExitStatus> {
    let exited = child.try_wait().unwrap();
    if exited.is_none() {
        child.kill().unwrap(); // SIGKILL: no cleanup, no lease released
    }
    child.wait().unwrap();
    exited
}

async fn checkpoint(f: &Fixture, name: &str) -> u64 {
    f.store.checkpoint(name).await.unwrap().global_position
}

/// Wait until `name`'s checkpoint moved from `before`, the process exited, or 60 s passed.
async fn progressed(f: &Fixture, child: &mut Child, name: &str, before: u64) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if checkpoint(f, name).await != before {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} made no progress in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_sales_projector_during_catch_up_and_replay_loses_and_doubles_nothing() {
    let f = fixture().await;
    write_orders(&f.orders, 0, 150, 4).await;
    let head = f.store.head_position().await.unwrap();

    // 1. Ten kills while it catches up, each at a random moment after it moved its checkpoint.
    let mut mid = 0;
    for round in 0..10 {
        let before = checkpoint(&f, "sku_sales").await;
        if before >= head {
            // Caught up already: nothing left to interrupt (the count below says whether
            // enough kills landed mid-way).
            break;
        }
        let mut child = spawn(&f, &["run"], &format!("sales-{round}"));
        progressed(&f, &mut child, "sku_sales", before).await;
        tokio::time::sleep(Duration::from_millis(random_millis(0, 80))).await;
        kill(&mut child);
        if checkpoint(&f, "sku_sales").await < head {
            mid += 1;
        }
    }
    assert!(
        mid >= 5,
        "at least half the kills landed mid catch-up ({mid})"
    );

    // 2. A live projector runs and orders keep coming; ten replays are killed mid-way.
    let mut live = spawn(&f, &["run"], "sales-live");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (orders, stop) = (f.orders.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 1000;
            while !stop.load(Ordering::Relaxed) {
                write_order(&orders, n).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let rebuild = "sku_sales#rebuild";
    let replay = [
        "replay",
        "--projection",
        "sku_sales",
        "--page",
        "13",
        "--progress",
        "none",
    ];
    let mut killed_mid = 0;
    for round in 0..10 {
        loop {
            let before = checkpoint(&f, rebuild).await;
            let mut child = spawn(&f, &replay, &format!("replay-{round}"));
            // A replay refused because the last one's rebuild lease has not expired yet
            // (2 s) exits at once: try again.
            if !progressed(&f, &mut child, rebuild, before).await {
                kill(&mut child);
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            tokio::time::sleep(Duration::from_millis(random_millis(0, 150))).await;
            if kill(&mut child).is_none() {
                killed_mid += 1;
            }
            break;
        }
    }
    assert!(
        killed_mid >= 5,
        "at least half the kills landed mid replay ({killed_mid})"
    );

    // 3. A last replay runs to its end (after the dead one's lease expired), then the live
    //    projector catches up with what the writer added.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut child = spawn(&f, &replay, "replay-last");
        let status = tokio::task::block_in_place(|| child.wait().unwrap());
        if status.success() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no replay succeeded"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    caught_up(&f.store, "sku_sales").await;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(live.id().to_string())
        .status();
    assert!(tokio::task::block_in_place(|| live.wait().unwrap()).success());

    assert_eq!(sales_table(&f.db).await, sales_from_log(&f.db).await);
    let (open, expected) = open_orders(&f.db).await;
    assert_eq!(open, expected);
    assert_eq!(registered(&f.db, "sku_sales").await, Some((1, true)));
    let leftovers = rows(
        &f.db,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'orders' AND (tablename LIKE '%\\_shadow' OR tablename LIKE '%\\_retired')",
    )
    .await;
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The README promises every setting in `--help` with its environment variable: the example's
/// own one too. A bad value is refused with its reason and exit status 2, before anything runs.
#[test]
fn help_names_the_examples_setting_and_a_bad_value_is_refused() {
    let help = Command::new(env!("CARGO_BIN_EXE_sales-projector"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("SKU_SALES_PAGE"), "{text}");

    let refused = Command::new(env!("CARGO_BIN_EXE_sales-projector"))
        .arg("status")
        .env("SKU_SALES_PAGE", "many")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains(r#"SKU_SALES_PAGE="many" is not a number of events"#),
        "{why}"
    );
}

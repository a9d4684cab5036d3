//! Each fault scenario once, under a short load: nothing acknowledged lost, nothing applied
//! twice, no event skipped, every order settled.

use std::time::Duration;

use order_faults::load::LoadOptions;
use order_faults::scenarios::{self, Scenario};

async fn once(scenario: Scenario) {
    let load = LoadOptions {
        rate: 15,
        duration: Duration::from_secs(9),
        ..LoadOptions::default()
    };
    let report = scenarios::run(scenario, &crate::binaries(), 1, &load)
        .await
        .unwrap();
    assert!(report.clean(), "{report:?}");
    assert!(report.acknowledged > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_grpc_mid_load() {
    once(Scenario::KillGrpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_fast_mid_load() {
    once(Scenario::PostgresRestartFast).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_immediate_mid_load() {
    once(Scenario::PostgresRestartImmediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frozen_mid_load() {
    once(Scenario::PostgresFreeze).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_emulator_killed_and_restarted() {
    once(Scenario::SqsRestart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projector_and_worker_killed_repeatedly() {
    once(Scenario::KillProjectorAndWorker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_streams() {
    once(Scenario::HotStreams).await;
}

/// The audit's SQS check can fail: after the emulator lost everything it held (and its
/// deduplication memory), every event of the log counts as never received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_audit_finds_events_sqs_never_received() {
    use order_faults::audit::{settle_and_audit, unsent_events};
    use order_faults::stack::{Stack, StackOptions};

    let mut stack = Stack::start(&crate::binaries(), &StackOptions::default())
        .await
        .unwrap();
    let load = LoadOptions {
        rate: 10,
        duration: Duration::from_secs(2),
        ..LoadOptions::default()
    };
    let report = order_faults::load::run(&stack.endpoint(), &load)
        .await
        .unwrap();
    let audit = settle_and_audit(&stack, &report, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(audit.clean(), "{audit:?}");
    let events: i64 = stack
        .db()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM orders.events", &[])
        .await
        .unwrap()
        .get(0);
    assert!(events > 0);

    stack.projector.terminate(Duration::from_secs(10)).await;
    stack.restart_emulator().await;
    assert_eq!(unsent_events(&mut stack).await.unwrap(), events as usize);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_a_teams_projector_in_catch_up_and_replay_mid_load() {
    once(Scenario::KillExampleProjector).await;
}

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

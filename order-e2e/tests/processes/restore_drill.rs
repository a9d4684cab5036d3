//! The restore drill once, bounded (`scripts/restore-drill` at full length): base backup,
//! load, damage after a target time, point-in-time recovery into a fresh cluster, replay,
//! republish, settle, audit.

use std::time::Duration;

use order_faults::drill::{self, DrillOptions};
use order_faults::load::LoadOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_in_time_restore_gives_back_the_log_up_to_the_target_and_the_stack_recovers() {
    let options = DrillOptions {
        load: LoadOptions {
            rate: 10,
            duration: Duration::from_secs(6),
            ..LoadOptions::default()
        },
        buggy_commands: 10,
        ..DrillOptions::default()
    };
    let report = drill::run(&crate::binaries(), &options).await.unwrap();
    println!("{}", report.render());
    assert!(report.clean(), "{}", report.render());
    assert!(report.events_at_target > 0);
    assert!(report.acknowledged_before_target > 0);
    assert!(
        report.buggy_acknowledged > 0,
        "the damage happened on the original"
    );
    assert!(
        report.steps.len() >= 6,
        "every step of the runbook ran and was timed"
    );
}

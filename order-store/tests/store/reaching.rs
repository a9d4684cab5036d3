//! Waiting for a position (read-your-writes on a replica): the wait looks at the server a few
//! times a second, not every few milliseconds. A replica that is behind is one under load,
//! and every read-your-writes call waits on it at once.

use std::time::Duration;

use order_store::Reach;

use crate::support::test_store;

#[tokio::test]
async fn a_wait_for_a_position_not_reached_looks_a_few_times_a_second() {
    let test = test_store().await;
    let admin = order_testkit::pg::admin().await;
    let before = test.db.commits(&admin).await;

    let wait = Duration::from_secs(2);
    let started = tokio::time::Instant::now();
    let reached = test
        .store
        .connection_reaching(1_000_000_000_000, Reach::Log, started + wait)
        .await
        .unwrap();
    assert!(
        reached.is_err(),
        "a position the log never used was reached"
    );
    let waited = started.elapsed();
    assert!(
        waited >= wait,
        "the wait gave up after {waited:?}, before its {wait:?}"
    );
    drop(reached);

    let commits = test.db.commits(&admin).await - before;
    // From 5 ms to 100 ms between looks, one statement each: about 25 in 2 s (a loaded
    // machine only makes fewer). Looking every 5 ms made a few hundred (232 beside other
    // work, up to 400 on a quiet machine).
    assert!(
        commits <= 60,
        "a wait of {wait:?} committed {commits} transactions"
    );
    eprintln!("a wait of {waited:?} committed {commits} transactions");
}

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

/// A replica pool held by waits (a projector down, every read-your-writes call waiting) is
/// busy, not broken: a further wait that finds no connection free is "not reached yet". It
/// asks `may_wait` (a service gives its place under the concurrency limit back there), looks
/// again after each pause instead of queueing for the pool's wait under that place, and is
/// answered once a connection frees up and the position is reached. It used to wait for the
/// pool (here 250 ms) and fail as `Unavailable`, which a service counts as a failed replica.
#[tokio::test]
async fn a_wait_that_finds_the_pool_held_by_waits_waits_too_instead_of_failing() {
    let test = crate::support::test_store_with(|config| {
        config.pool_size = 1;
        config.pool_wait_timeout = Duration::from_millis(250);
    })
    .await;
    // The writer has a pool of its own: the reader's one connection is held.
    let writer =
        order_store::EventStore::new(order_store::StoreConfig::new(test.db.url())).unwrap();
    let first = crate::support::append(
        &writer,
        uuid::Uuid::new_v4(),
        order_store::ExpectedVersion::NoStream,
        &[crate::support::event("first")],
    )
    .await
    .unwrap();
    let next = first.global_position + 1;

    // A wait that holds the pool's one connection for 1.5 s and gives up.
    let holder = {
        let store = test.store.clone();
        let give_up = tokio::time::Instant::now() + Duration::from_millis(1500);
        tokio::spawn(async move {
            let held = store
                .connection_reaching(1_000_000_000_000, Reach::Log, give_up)
                .await;
            held.map(|reached| reached.is_ok())
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while test.store.pool().status().available > 0 || test.store.pool().status().size < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the wait never took the connection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A wait the pool has no connection for: not a failure, and it may say so at once.
    let mut asked = 0;
    let mut no = || {
        asked += 1;
        false
    };
    let started = tokio::time::Instant::now();
    let refused = test
        .store
        .connection_reaching_if(
            first.global_position,
            Reach::Log,
            started + Duration::from_secs(5),
            &mut no,
        )
        .await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a busy pool is \"not reached\", not an error: {:?}",
        refused.as_ref().map(|r| r.as_ref().map(|_| ()))
    );
    assert_eq!(asked, 1, "it asked whether it may wait, once");
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "it did not queue for the pool first: {:?}",
        started.elapsed()
    );

    // One that may wait does, and is answered once a connection frees and the event is there.
    let waiter = {
        let store = test.store.clone();
        let give_up = tokio::time::Instant::now() + Duration::from_secs(8);
        tokio::spawn(async move {
            let mut asked = 0;
            let mut yes = || {
                asked += 1;
                true
            };
            let reached = store
                .connection_reaching_if(next, Reach::Log, give_up, &mut yes)
                .await
                .map(|reached| reached.is_ok());
            (reached, asked)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = crate::support::append(
        &writer,
        uuid::Uuid::new_v4(),
        order_store::ExpectedVersion::NoStream,
        &[crate::support::event("second")],
    )
    .await
    .unwrap();
    assert_eq!(
        second.global_position, next,
        "positions are handed out in order"
    );
    assert!(
        matches!(holder.await.unwrap(), Ok(false)),
        "the holder gave up, not reached"
    );
    let (reached, asked) = waiter.await.unwrap();
    assert!(
        matches!(reached, Ok(true)),
        "the wait behind a busy pool is answered once the position is reached: {reached:?}"
    );
    assert_eq!(asked, 1, "it asked whether it may wait once");
}

/// A server that cannot be reached is still a failure, not "not reached".
#[tokio::test]
async fn a_wait_on_a_server_that_cannot_be_reached_fails() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut config =
        order_store::StoreConfig::new(format!("postgres://nobody@127.0.0.1:{port}/none"));
    config.connect_timeout = Duration::from_secs(1);
    let store = order_store::EventStore::new(config).unwrap();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(2);
    let reached = store
        .connection_reaching_if(1, Reach::Log, give_up, &mut || true)
        .await;
    match reached {
        Err(error) => assert!(error.is_transient(), "{error:?}"),
        Ok(reached) => panic!("an unreachable server answered {:?}", reached.map(|_| ())),
    }
}

//! One owner per subscription; standbys take over a dead owner's lease; a stale owner can
//! never move the checkpoint.

use std::time::Duration;

use order_projector::subscription::{RunSettings, StepError, run};
use order_store::EventListener;
use tokio::sync::watch;

use crate::support::*;

fn settings(owner: &str) -> RunSettings {
    RunSettings {
        owner: owner.into(),
        lease_ttl: Duration::from_millis(1500),
        poll: Duration::from_millis(50),
        standby_poll: Duration::from_millis(100),
        ..RunSettings::default()
    }
}

/// Another holder ("new") preempts `stale`'s lease, as an operator or a replay does.
async fn preempt(store: &order_store::EventStore, stale: &order_store::Lease) {
    let (current, _) = store
        .acquire_lease("read_model", "new", Duration::from_secs(30), true)
        .await
        .unwrap()
        .unwrap();
    assert!(current.token > stale.token);
}

#[tokio::test]
async fn a_stale_owner_cannot_move_the_checkpoint() {
    let f = fixture().await;
    write_orders(&f.handler, 5, 1).await;
    everything_visible(&f.store).await;
    let (stale, cursor) = lease(&f.store, "read_model", "old").await;
    // An operator (or a replay) preempts the lease.
    preempt(&f.store, &stale).await;
    let (_stop, shutdown) = watch::channel(false);
    let error = read_model_subscription(100)
        .step(&f.store, &stale, cursor, &shutdown)
        .await
        .unwrap_err();
    assert!(matches!(error, StepError::LeaseLost));
    assert!(
        read_model(&f.db).await.is_empty(),
        "the stale owner's writes were rolled back"
    );
    assert!(
        !f.store
            .renew_lease(&stale, Duration::from_secs(30))
            .await
            .unwrap()
    );
    // A live lease is not taken without preempting.
    assert!(
        f.store
            .acquire_lease("read_model", "third", Duration::from_secs(30), false)
            .await
            .unwrap()
            .is_none()
    );
}

async fn caught_up(f: &Fixture, what: &str) {
    // Generous: a loaded machine (other tests, other builds) is slow, not wrong.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if read_model(&f.db).await == expected_from_log(&f.store).await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_instances_one_owner_and_a_handover_when_it_dies() {
    let f = fixture().await;
    write_orders(&f.handler, 20, 4).await;
    let start = |owner: &'static str| {
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run(
            read_model_subscription(7),
            f.store.clone(),
            EventListener::start(f.store.config().clone()),
            settings(owner),
            shutdown,
        ));
        (stop, task)
    };
    let owner = || async {
        f.store
            .subscriptions()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "read_model")
            .and_then(|s| s.owner)
    };
    let (_stop_a, task_a) = start("instance-a");
    // B starts once A holds the lease (a loaded machine may take a while to start A).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while owner().await.as_deref() != Some("instance-a") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (stop_b, task_b) = start("instance-b");
    caught_up(&f, "the owner did not catch up").await;
    assert_eq!(owner().await.as_deref(), Some("instance-a"));

    // The owner dies without releasing its lease (as with kill -9).
    task_a.abort();
    let _ = task_a.await;
    let died = tokio::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while owner().await.as_deref() != Some("instance-b") {
        assert!(tokio::time::Instant::now() < deadline, "no handover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The lease (1.5 s) expires and a standby poll (0.1 s) takes it; a loaded machine may add
    // a few seconds, never many leases' worth.
    let handover = died.elapsed();
    assert!(
        handover < Duration::from_secs(6),
        "handover within the lease TTL plus a standby poll, took {handover:?}"
    );
    write_orders(&f.handler, 10, 2).await;
    caught_up(&f, "the new owner did not catch up").await;
    totals_consistent(&f.db).await;

    stop_b.send(true).unwrap();
    task_b.await.unwrap();
    assert_eq!(owner().await, None, "a clean shutdown releases the lease");
}

/// Two processes given one instance name (a fixed `ORDER_PROJECTOR_INSTANCE_ID` in a task
/// definition run twice): the one that loses the lease to its namesake stands by under a name
/// of its own, so the two settle instead of taking the lease from each other for ever.
#[tokio::test]
async fn two_instances_of_one_name_settle_instead_of_taking_the_lease_in_turn() {
    let f = fixture().await;
    write_orders(&f.handler, 20, 4).await;
    let settings = || RunSettings {
        lease_ttl: Duration::from_secs(3),
        ..settings("same-name")
    };
    let start = || {
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run(
            read_model_subscription(7),
            f.store.clone(),
            EventListener::start(f.store.config().clone()),
            settings(),
            shutdown,
        ));
        (stop, task)
    };
    let lease = || async {
        f.store
            .subscriptions()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "read_model")
            .map(|s| (s.owner, s.lease_token))
            .unwrap_or((None, 0))
    };
    let (stop_a, task_a) = start();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while lease().await.0.as_deref() != Some("same-name") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (stop_b, task_b) = start();
    // B takes the lease from A once (its own name's lease, as after a restart); A finds it
    // held under its own name and stands by under a name of its own.
    tokio::time::sleep(Duration::from_millis(500)).await;
    write_orders(&f.handler, 10, 2).await;
    caught_up(&f, "the two did not catch up").await;
    // Settled: three renewals of the owner and thirty standby polls, and no lease taken.
    // Taking it in turn would move the token at every renewal (a third of the lease's time).
    let (_, before) = lease().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (owner, after) = lease().await;
    assert_eq!(
        before,
        after,
        "the lease changed hands {} times in 3 s",
        after - before
    );
    assert!(
        owner.as_deref().is_some_and(|o| o.starts_with("same-name")),
        "{owner:?}"
    );
    write_orders(&f.handler, 10, 2).await;
    caught_up(&f, "the owner did not catch up after settling").await;
    totals_consistent(&f.db).await;

    stop_a.send(true).unwrap();
    stop_b.send(true).unwrap();
    task_a.await.unwrap();
    task_b.await.unwrap();
    assert_eq!(lease().await.0, None, "a clean shutdown releases the lease");
}

/// An instance at the head whose lease another holder took, and whose checkpoint that holder
/// moved back (an operator's reset, a replay starting over), is told it lost the lease, not
/// that the database lost its writes: the check at the head reads the lease with the
/// checkpoint. (It was reported as a moved checkpoint, with a WARN saying the database lost
/// writes it had made.)
#[tokio::test]
async fn a_stale_owner_at_the_head_is_told_it_lost_the_lease() {
    let f = fixture().await;
    write_orders(&f.handler, 3, 2).await;
    everything_visible(&f.store).await;
    let (stale, cursor) = lease(&f.store, "read_model", "old").await;
    let subscription = read_model_subscription(100);
    let (head, applied) = drain(&f.store, &subscription, &stale, cursor).await;
    assert!(applied > 0, "the stale owner projected the orders first");
    // Another holder preempts the lease and starts the checkpoint over.
    preempt(&f.store, &stale).await;
    f.store
        .pool()
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE orders.subscriptions SET checkpoint_xid = '0'::xid8, checkpoint_position = 0
              WHERE name = 'read_model'",
            &[],
        )
        .await
        .unwrap();
    let (_stop, shutdown) = watch::channel(false);
    // A new instance of the subscription (nothing remembered of an earlier check).
    let error = read_model_subscription(100)
        .step(&f.store, &stale, head, &shutdown)
        .await
        .unwrap_err();
    assert!(matches!(error, StepError::LeaseLost), "{error}");
}

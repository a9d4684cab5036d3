//! Exact answers under races, through the service: copies of one command sent at once all get
//! the first answer, and concurrent commands on one hot order are all acknowledged at once.

use std::sync::Arc;
use std::time::Duration;

use order_proto::v1 as pb;
use tonic::Code;

use crate::helpers::*;

/// The outside client team's reproduction: 50 copies of one ReserveInventory (same command id,
/// same payload) at once to a fresh Placed order, with and without `expected_version = 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_copies_of_a_command_at_once_all_get_the_first_answer() {
    let app = spawn_app_with(Options {
        pool_size: 32,
        ..Options::default()
    })
    .await;
    let mut wrong = Vec::new();
    for round in 0..40 {
        let order = order_in_state(&app, 0).await;
        let request = pb::ReserveInventoryRequest {
            command_id: id(),
            order_id: order.clone(),
            expected_version: (round % 2 == 1).then_some(1),
            reservation_id: "res-1".into(),
        };
        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (mut client, request, barrier) =
                    (app.commands(), request.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    client.reserve_inventory(request).await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(response) => answers.push(response.into_inner()),
                Err(status) => wrong.push(format!("{:?}: {}", status.code(), status.message())),
            }
        }
        let first = (answers[0].version, answers[0].global_position);
        assert!(
            answers
                .iter()
                .all(|a| (a.version, a.global_position) == first),
            "every copy answers the same version and position"
        );
        assert_eq!(
            answers.iter().filter(|a| !a.duplicate).count(),
            1.min(answers.len())
        );
        let events = app
            .queries()
            .get_order_events(pb::GetOrderEventsRequest {
                order_id: order,
                after_version: 0,
                min_position: None,
                max_events: None,
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        assert_eq!(events.len(), 2, "placed and reserved, once");
    }
    assert!(
        wrong.is_empty(),
        "{} copies failed: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// Sixteen clients refunding one order at once, without `expected_version` (each refund is
/// valid on its own): every refund is acknowledged on its first try and is in the log once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_refunds_on_one_order_are_all_acknowledged_at_once() {
    let app = spawn_app().await;
    for _round in 0..10 {
        // Confirmed, 30.00 captured; 16 refunds of 1.00.
        let order = order_in_state(&app, 3).await;
        let requests: Vec<pb::RefundPaymentRequest> = (0..16)
            .map(|_| pb::RefundPaymentRequest {
                command_id: id(),
                order_id: order.clone(),
                expected_version: None,
                amount: eur(100),
            })
            .collect();
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = requests
            .iter()
            .cloned()
            .map(|request| {
                let (mut client, barrier) = (app.commands(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    client.refund_payment(request).await
                })
            })
            .collect();
        let mut acknowledged = Vec::new();
        let mut aborted = Vec::new();
        for (request, task) in requests.iter().zip(tasks) {
            match task.await.unwrap() {
                Ok(_) => acknowledged.push(request.command_id.clone()),
                Err(status) if status.code() == Code::Aborted => {
                    aborted.push(request.command_id.clone());
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        let events = app
            .queries()
            .get_order_events(pb::GetOrderEventsRequest {
                order_id: order.clone(),
                after_version: 0,
                min_position: None,
                max_events: None,
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        let by_command =
            |command_id: &str| events.iter().filter(|e| e.command_id == command_id).count();
        for command_id in &acknowledged {
            assert_eq!(
                by_command(command_id),
                1,
                "an acknowledged refund is in the log once"
            );
        }
        for command_id in &aborted {
            assert_eq!(
                by_command(command_id),
                0,
                "an aborted refund is not in the log"
            );
        }
        assert!(
            aborted.is_empty(),
            "{} of 16 refunds were aborted: commands to one order are serialised in the \
             service and never need a client retry",
            aborted.len()
        );
    }
}

/// A call whose deadline passes while it waits is answered DEADLINE_EXCEEDED by the server,
/// never with tonic's CANCELLED "Timeout expired", however close the timers run (hundreds of
/// tries). The client here does not enforce the deadline itself (a tonic `Channel` would, and
/// would then report its own CANCELLED first).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_deadline_is_always_deadline_exceeded() {
    let app = spawn_app().await;
    let order = order_in_state(&app, 0).await;
    let mut codes = std::collections::BTreeMap::new();
    let tasks: Vec<_> = (0..300u64)
        .map(|i| {
            let (mut queries, order) = (app.raw_queries(), order.clone());
            tokio::spawn(async move {
                // Nothing projects: GetOrder waits for a position the read model never reaches.
                let mut request = tonic::Request::new(pb::GetOrderRequest {
                    order_id: order,
                    min_position: Some(1),
                });
                request.set_timeout(Duration::from_millis(1 + i % 25));
                queries.get_order(request).await.map(|_| ())
            })
        })
        .collect();
    let mut others = Vec::new();
    for task in tasks {
        let code = match task.await.unwrap() {
            Ok(()) => Code::Ok,
            Err(status) => {
                if status.code() != Code::DeadlineExceeded {
                    others.push(format!("{status:?}"));
                }
                status.code()
            }
        };
        *codes.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    assert_eq!(
        codes.keys().collect::<Vec<_>>(),
        ["DeadlineExceeded"],
        "{codes:?}: {others:#?}"
    );
}

//! Saturation answers at once instead of queueing: RESOURCE_EXHAUSTED at the concurrency
//! limit, UNAVAILABLE when no database connection frees up in time.

use std::time::{Duration, Instant};

use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_shed_at_once() {
    let app = spawn_app_with(Options {
        max_concurrent_requests: 1,
        ..Options::default()
    })
    .await;
    let lock = block_commands(&app).await;
    let mut blocked_client = app.commands();
    let blocked = tokio::spawn(async move { blocked_client.place_order(place(&id())).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let shed = app.commands().place_order(place(&id())).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused at once, not queued"
    );
    assert!(app.health("").await.is_ok(), "health checks are never shed");

    lock.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        blocked.await.unwrap().is_ok(),
        "the admitted call completes"
    );
    assert!(
        app.commands().place_order(place(&id())).await.is_ok(),
        "capacity is back"
    );
}

#[tokio::test]
async fn an_exhausted_database_pool_answers_unavailable_quickly() {
    let app = spawn_app_with(Options {
        pool_size: 1,
        pool_wait_ms: 100,
        ..Options::default()
    })
    .await;
    let lock = block_commands(&app).await;
    let mut blocked_client = app.commands();
    let blocked = tokio::spawn(async move { blocked_client.place_order(place(&id())).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let status = app.commands().place_order(place(&id())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(1));

    lock.batch_execute("ROLLBACK").await.unwrap();
    assert!(blocked.await.unwrap().is_ok());
}

/// A request larger than `--max-message-bytes` is refused before any handler runs, as
/// RESOURCE_EXHAUSTED with an ErrorInfo (reason `REQUEST_TOO_LARGE`) that tells clients not to
/// send it again: the same request can never fit.
#[tokio::test]
async fn a_request_over_the_message_limit_is_refused_as_too_large_for_good() {
    let app = spawn_app_with(Options {
        max_message_bytes: 1024,
        ..Options::default()
    })
    .await;
    let before = app.event_count().await;
    let mut request = place(&id());
    request.shipping_address.as_mut().unwrap().line2 = "y".repeat(2000);
    let bytes = prost::Message::encoded_len(&request);
    let status = app.commands().place_order(request).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("1024") && status.message().contains(&bytes.to_string()),
        "the message gives the size and the limit: {status:?}"
    );
    let info = details(&status)
        .error_info()
        .cloned()
        .expect("an ErrorInfo says why, for clients to act on");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("REQUEST_TOO_LARGE", "order-ledger")
    );
    assert_eq!(info.metadata["limit_bytes"], "1024");
    assert_eq!(info.metadata["bytes"], bytes.to_string());
    assert_eq!(app.event_count().await, before, "nothing was written");
}

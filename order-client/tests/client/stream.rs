//! The event stream resumes after its service restarts: every event once, in order.

use std::time::Duration;

use futures::StreamExt;
use order_client::{EventStream, Start, pb};

use crate::support::*;

/// The next event; a minute is far beyond any wait a working stream has, even on a busy
/// machine.
async fn next(events: &mut EventStream) -> pb::Event {
    match tokio::time::timeout(Duration::from_secs(60), events.next()).await {
        Ok(event) => event.expect("the stream goes on").expect("no error"),
        Err(_) => panic!(
            "no event within 60 s ({} reconnects, resuming from {:?})",
            events.reconnects(),
            events.resume_point()
        ),
    }
}

/// Place an order and take it two steps: three events.
async fn three_events(client: &order_client::Client) {
    let placed = place(client).await.unwrap();
    client
        .reserve_inventory(placed.order_id, "res-1")
        .await
        .unwrap();
    client.cancel_order(placed.order_id, "test").await.unwrap();
}

#[tokio::test]
async fn the_event_stream_resumes_after_a_restart_without_gaps_or_repeats() {
    let mut stack = Stack::start().await;
    let client = stack.client().with_retry(quick_retries(10));
    for _ in 0..3 {
        three_events(&client).await;
    }
    let before = stack.log().await.len();
    assert!(before >= 9, "{before} events");

    let mut events = client
        .subscribe_events(Start::Beginning)
        .max_reconnects(200);
    let mut received = Vec::new();
    for _ in 0..4 {
        received.push(next(&mut events).await);
    }

    // Mid-stream: the service stops (ending the subscription), events are written by
    // another instance meanwhile, and it comes back on the same address.
    stack.stop_server().await;
    let other = Server::start(
        stack.db.url(),
        "127.0.0.1:0".parse().unwrap(),
        &ServerOptions::default(),
    )
    .await;
    let other_client = order_client::Client::builder()
        .endpoint(other.url())
        .retry(quick_retries(10))
        .build()
        .unwrap();
    three_events(&other_client).await;
    stack.restart_server().await;
    three_events(&client).await;

    let log = stack.log().await;
    while received.len() < log.len() {
        received.push(next(&mut events).await);
    }
    let ids: Vec<uuid::Uuid> = received
        .iter()
        .map(|e| e.event_id.parse().unwrap())
        .collect();
    assert_eq!(ids, log, "every event once, in the log's order");
    assert!(events.reconnects() >= 1, "it did resume");
    let positions: Vec<u64> = received.iter().map(|e| e.global_position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(
        events.resume_point(),
        &Start::AfterCursor(received.last().unwrap().cursor.clone())
    );

    // Nothing more is pending: the next event is the next one written.
    three_events(&client).await;
    let after = next(&mut events).await;
    assert_eq!(after.global_position, positions.last().unwrap() + 1);
    other.stop().await;
}

#[tokio::test]
async fn a_stream_from_a_position_starts_after_it_and_gives_up_on_a_permanent_error() {
    let stack = Stack::start().await;
    let client = stack.client();
    three_events(&client).await;
    let mut events = client.subscribe_events(Start::AfterPosition(1));
    assert_eq!(next(&mut events).await.global_position, 2);

    let mut bad = client.subscribe_events(Start::AfterCursor("not a cursor".into()));
    let error = bad.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), order_client::Code::InvalidArgument);
    assert!(bad.next().await.is_none(), "it ended");
}

#[tokio::test]
async fn the_event_stream_resumes_after_its_connection_is_cut() {
    let stack = Stack::start().await;
    let proxy = Proxy::start(stack.addr).await;
    let writer = stack.client();
    for _ in 0..2 {
        three_events(&writer).await;
    }
    let client = order_client::Client::builder()
        .endpoint(proxy.url())
        .retry(quick_retries(10))
        .build()
        .unwrap();
    let mut events = client.subscribe_events(Start::Beginning);
    let mut received = Vec::new();
    for _ in 0..4 {
        received.push(next(&mut events).await);
    }
    // The network fails under the stream, twice, with events written after each cut.
    for round in 1..=2 {
        assert!(proxy.cut() >= 1, "the stream's connection was open");
        three_events(&writer).await;
        let log = stack.log().await;
        while received.len() < log.len() {
            received.push(next(&mut events).await);
        }
        assert!(
            events.reconnects() >= round,
            "{} reconnects",
            events.reconnects()
        );
    }

    let log = stack.log().await;
    let ids: Vec<uuid::Uuid> = received
        .iter()
        .map(|e| e.event_id.parse().unwrap())
        .collect();
    assert_eq!(ids, log, "every event once, in the log's order");
}

#[tokio::test]
async fn a_stream_on_a_quiet_log_survives_more_separate_cuts_than_its_reconnect_limit() {
    let stack = Stack::start().await;
    let proxy = Proxy::start(stack.addr).await;
    let client = order_client::Client::builder()
        .endpoint(proxy.url())
        .retry(quick_retries(10))
        .build()
        .unwrap();
    let mut events = client.subscribe_events(Start::Beginning).max_reconnects(2);

    // Five interruptions, each after the stream had subscribed again; no event in between.
    for round in 1..=5u64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !events.is_subscribed() {
            assert!(
                std::time::Instant::now() < deadline,
                "not subscribed in 60 s"
            );
            if let Ok(item) = tokio::time::timeout(Duration::from_millis(50), events.next()).await {
                panic!("round {round}: the quiet stream yielded {item:?}");
            }
        }
        assert!(proxy.cut() >= 1, "the subscription's connection was open");
        assert_eq!(events.reconnects(), round - 1);
        // Let it see the cut.
        let _ = tokio::time::timeout(Duration::from_millis(50), events.next()).await;
    }

    three_events(&stack.client()).await;
    let first = next(&mut events).await;
    assert_eq!(first.global_position, 1, "nothing skipped");
    assert!(
        events.reconnects() >= 5,
        "{} reconnects",
        events.reconnects()
    );
}

/// A server that opens every subscription (200, gRPC headers) and then ends it at once with
/// UNAVAILABLE (a service that cannot read its log): the stream backs off, counts each as a
/// failure and, after its limit, yields the error; it does not subscribe again for ever.
#[tokio::test]
async fn a_subscription_the_server_opens_then_fails_at_once_counts_toward_the_limit() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    let calls = Arc::new(AtomicU32::new(0));
    let transport = {
        let calls = calls.clone();
        move |_inner: order_client::Transport| {
            let calls = calls.clone();
            order_client::Transport::new(tower::service_fn(
                move |_request: http::Request<tonic::body::Body>| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
                        trailers.insert(
                            "grpc-message",
                            http::HeaderValue::from_static("the log cannot be read"),
                        );
                        let frames = futures::stream::iter([Ok::<_, std::convert::Infallible>(
                            http_body::Frame::<bytes::Bytes>::trailers(trailers),
                        )]);
                        let body = tonic::body::Body::new(http_body_util::StreamBody::new(frames));
                        let response = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(body)
                            .unwrap();
                        Ok::<_, order_client::TransportError>(response)
                    }
                },
            ))
        }
    };
    let client = order_client::Client::builder()
        .endpoint("http://127.0.0.1:9")
        .retry(quick_retries(10))
        .wrap_transport(transport)
        .build()
        .unwrap();
    let mut events = client.subscribe_events(Start::Beginning).max_reconnects(3);
    let item = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("the stream gave up within 30 s");
    let error = item.expect("an item").expect_err("an error");
    assert_eq!(error.code(), order_client::Code::Unavailable, "{error}");
    assert_eq!(calls.load(Ordering::SeqCst), 4, "the first call and 3 more");
    assert!(events.next().await.is_none(), "then it ends");
}

/// With its default limits (and the client's quick retries, which spend a count of ten
/// reconnects in about two seconds), a stream outlasts a restart of four seconds: it gives up
/// only after a minute without a subscription.
#[tokio::test]
async fn a_stream_with_its_default_limits_outlasts_a_service_restart() {
    let mut stack = Stack::start().await;
    let client = stack.client().with_retry(quick_retries(10));
    three_events(&client).await;
    let mut events = client.subscribe_events(Start::Beginning);
    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(next(&mut events).await);
    }

    stack.stop_server().await;
    // Let it try to subscribe again while the service is down.
    let waiting = tokio::time::timeout(Duration::from_secs(4), events.next()).await;
    assert!(waiting.is_err(), "it waits for the service: {waiting:?}");
    stack.restart_server().await;
    three_events(&client).await;

    let log = stack.log().await;
    while received.len() < log.len() {
        received.push(next(&mut events).await);
    }
    let ids: Vec<uuid::Uuid> = received
        .iter()
        .map(|e| e.event_id.parse().unwrap())
        .collect();
    assert_eq!(ids, log, "every event once, in the log's order");
    assert!(
        events.reconnects() >= 10,
        "{} reconnects",
        events.reconnects()
    );
}

/// A stream that cannot subscribe again gives up once it has tried for its reconnect time,
/// however many attempts that took.
#[tokio::test]
async fn a_stream_gives_up_after_its_reconnect_time() {
    let transport = |_inner: order_client::Transport| {
        order_client::Transport::new(tower::service_fn(
            |_request: http::Request<tonic::body::Body>| async {
                Ok::<_, order_client::TransportError>(
                    tonic::Status::unavailable("down").into_http::<tonic::body::Body>(),
                )
            },
        ))
    };
    let client = order_client::Client::builder()
        .endpoint("http://127.0.0.1:9")
        .retry(quick_retries(10))
        .wrap_transport(transport)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let mut events = client
        .subscribe_events(Start::Beginning)
        .reconnect_for(Duration::from_millis(1500));
    let item = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("the stream gave up within 30 s");
    let error = item.expect("an item").expect_err("an error");
    assert_eq!(error.code(), order_client::Code::Unavailable, "{error}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(events.next().await.is_none(), "then it ends");
}

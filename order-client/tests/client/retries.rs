//! A retried command is the same command: one id on every attempt, recorded once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use order_client::{Client, Code, Transport, TransportError, pb};
use prost::Message;
use tower::{Service, ServiceExt};

use crate::support::*;

/// What a recording transport saw: the command id of every attempt.
type Seen = Arc<Mutex<Vec<String>>>;

/// A transport that records each attempt's command id and, for the first `lose` attempts,
/// forwards the call to the service and then throws its answer away, answering UNAVAILABLE
/// instead: the service applied the command, the client cannot know.
fn recording(seen: Seen, lose: usize) -> impl Fn(Transport) -> Transport + Send + Sync {
    answering(seen, lose, Code::Unavailable)
}

/// The same, answering `code` instead of the first `lose` answers.
fn answering(seen: Seen, lose: usize, code: Code) -> impl Fn(Transport) -> Transport + Send + Sync {
    move |inner: Transport| {
        let seen = seen.clone();
        Transport::new(tower::service_fn(
            move |request: http::Request<tonic::body::Body>| {
                let mut inner = inner.clone();
                let seen = seen.clone();
                let attempt = async move {
                    let (parts, body) = request.into_parts();
                    let bytes = body.collect().await?.to_bytes();
                    // One gRPC frame: flag, length, message. Every command's field 1 is its
                    // command id.
                    let command = pb::ConfirmOrderRequest::decode(&bytes[5..])?;
                    let attempt = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(command.command_id);
                        seen.len()
                    };
                    let request = http::Request::from_parts(
                        parts,
                        tonic::body::Body::new(http_body_util::Full::new(bytes)),
                    );
                    let response = inner.ready().await?.call(request).await?;
                    if attempt <= lose {
                        // Wait for the whole answer (the command is applied), then lose it.
                        let _ = response.into_body().collect().await;
                        return Ok(tonic::Status::new(code, "answer lost on the way")
                            .into_http::<tonic::body::Body>());
                    }
                    Ok::<_, tower::BoxError>(response)
                };
                async move { attempt.await.map_err(TransportError::new) }
            },
        ))
    }
}

#[tokio::test]
async fn a_command_whose_answer_was_lost_is_retried_under_its_id_and_recorded_once() {
    let stack = Stack::start().await;
    let placed = place(&stack.client()).await.unwrap();
    let seen = Seen::default();
    let client = Client::builder()
        .endpoint(stack.url())
        .retry(quick_retries(4))
        .wrap_transport(recording(seen.clone(), 2))
        .build()
        .unwrap();

    let reserve = client.reserve_inventory(placed.order_id, "res-1");
    let answer = reserve.send().await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two lost answers, then the third attempt");
    assert!(seen.iter().all(|id| *id == answer.command_id), "{seen:?}");
    assert_eq!(answer.command_id, reserve.request().command_id);
    assert_eq!(answer.attempts, 3);
    assert!(
        answer.duplicate,
        "the service had applied it on the first attempt"
    );
    assert_eq!(answer.version, 2);
    assert_eq!(answer.status, pb::OrderStatus::InventoryReserved);
    assert_eq!(stack.commands_recorded(&answer.command_id).await, 1);
    assert_eq!(stack.order_events(placed.order_id).await.len(), 2);

    // The builder keeps its id: sending it again is still the same command.
    let again = reserve.send().await.unwrap();
    assert!(again.duplicate);
    assert_eq!(stack.commands_recorded(&answer.command_id).await, 1);
}

#[tokio::test]
async fn a_command_held_past_its_deadline_is_retried_under_its_id_and_applied_once() {
    let stack = Stack::start().await;
    let placed = place(&stack.client()).await.unwrap();
    let seen = Seen::default();
    let client = Client::builder()
        .endpoint(stack.url())
        .timeout(Duration::from_millis(400))
        .retry(quick_retries(40))
        .wrap_transport(recording(seen.clone(), 0))
        .build()
        .unwrap();

    // Every command blocks on this lock until it is released.
    let lock = stack.hold_commands().await;
    let confirm_after = client.reserve_inventory(placed.order_id, "res-1");
    let command_id = confirm_after.request().command_id.clone();
    let sent = tokio::spawn(async move { confirm_after.send().await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    lock.batch_execute("ROLLBACK").await.unwrap();

    let answer = sent.await.unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(answer.attempts >= 2, "{} attempts", answer.attempts);
    assert_eq!(seen.len() as u32, answer.attempts);
    assert!(seen.iter().all(|id| *id == command_id), "{seen:?}");
    assert_eq!(answer.version, 2);
    assert_eq!(stack.commands_recorded(&command_id).await, 1);
    assert_eq!(stack.order_events(placed.order_id).await.len(), 2);
}

#[tokio::test]
async fn a_command_sent_while_the_service_restarts_goes_through_once_it_is_back() {
    let mut stack = Stack::start().await;
    let client = stack.client().with_retry(quick_retries(60));
    let placed = place(&client).await.unwrap();

    stack.stop_server().await;
    let confirm = client.reserve_inventory(placed.order_id, "res-1");
    let command_id = confirm.request().command_id.clone();
    let sent = tokio::spawn(async move { confirm.send().await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    stack.restart_server().await;

    let answer = sent.await.unwrap().unwrap();
    assert!(answer.attempts >= 2, "{} attempts", answer.attempts);
    assert!(!answer.duplicate);
    assert_eq!(answer.command_id, command_id);
    assert_eq!(stack.commands_recorded(&command_id).await, 1);
    assert_eq!(stack.order_events(placed.order_id).await.len(), 2);
}

#[tokio::test]
async fn refusals_are_not_retried_and_a_pinned_version_conflict_is_not_either() {
    let stack = Stack::start().await;
    let seen = Seen::default();
    let client = Client::builder()
        .endpoint(stack.url())
        .retry(quick_retries(4))
        .wrap_transport(recording(seen.clone(), 0))
        .build()
        .unwrap();
    let placed = place(&client).await.unwrap();

    let stale = client
        .reserve_inventory(placed.order_id, "res-1")
        .expected_version(7)
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale}");
    assert_eq!(stale.attempts(), 1);

    let early = client.confirm_order(placed.order_id).await.unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition, "{early}");
    assert_eq!(early.attempts(), 1);

    let bad = client
        .authorize_payment(placed.order_id, "", order_client::money("EUR", -1))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad}");
    assert_eq!(seen.lock().unwrap().len(), 4, "one attempt each");

    let unknown = stack
        .client()
        .get_order_events(uuid::Uuid::new_v4())
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(unknown.attempts(), 1);
}

#[tokio::test]
async fn a_command_whose_connection_breaks_mid_call_is_retried_under_its_id_and_applied_once() {
    let stack = Stack::start().await;
    let placed = place(&stack.client()).await.unwrap();
    let proxy = Proxy::start(stack.addr).await;
    let seen = Seen::default();
    let client = Client::builder()
        .endpoint(proxy.url())
        .retry(quick_retries(20))
        .wrap_transport(recording(seen.clone(), 0))
        .build()
        .unwrap();

    // The command waits on the lock while its connection is cut under it.
    let lock = stack.hold_commands().await;
    let reserve = client.reserve_inventory(placed.order_id, "res-1");
    let command_id = reserve.request().command_id.clone();
    let sent = tokio::spawn(async move { reserve.send().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(proxy.cut(), 1, "the call's connection was open");
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.batch_execute("ROLLBACK").await.unwrap();

    let answer = sent.await.unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(answer.attempts >= 2, "{} attempts", answer.attempts);
    assert!(seen.iter().all(|id| *id == command_id), "{seen:?}");
    assert_eq!(answer.version, 2);
    assert_eq!(stack.commands_recorded(&command_id).await, 1);
    assert_eq!(stack.order_events(placed.order_id).await.len(), 2);
}

#[tokio::test]
async fn aborted_and_resource_exhausted_are_retried_unless_the_command_pins_its_version() {
    let stack = Stack::start().await;
    let placed = place(&stack.client()).await.unwrap();
    let client = |code| {
        let seen = Seen::default();
        let client = Client::builder()
            .endpoint(stack.url())
            .retry(quick_retries(4))
            .wrap_transport(answering(seen.clone(), 1, code))
            .build()
            .unwrap();
        (client, seen)
    };

    // Unpinned: ABORTED is a lost race; the repeat finds the command applied.
    let (aborting, seen) = client(Code::Aborted);
    let reserved = aborting
        .reserve_inventory(placed.order_id, "res-1")
        .await
        .unwrap();
    assert_eq!((reserved.attempts, reserved.duplicate), (2, true));
    assert_eq!(seen.lock().unwrap().len(), 2);

    let (exhausted, _) = client(Code::ResourceExhausted);
    let authorized = exhausted
        .authorize_payment(placed.order_id, "pay-1", order_client::money("EUR", TOTAL))
        .await
        .unwrap();
    assert_eq!((authorized.attempts, authorized.duplicate), (2, true));

    // Pinned: ABORTED means another version; the caller decides again (here: the service
    // did apply it, and only a fresh read would tell).
    let (aborting, seen) = client(Code::Aborted);
    let error = aborting
        .confirm_order(placed.order_id)
        .expected_version(authorized.version)
        .await
        .unwrap_err();
    assert_eq!((error.code(), error.attempts()), (Code::Aborted, 1));
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(stack.order_events(placed.order_id).await.len(), 4);
}

#[tokio::test]
async fn a_call_past_the_clients_own_deadline_fails_as_deadline_exceeded() {
    let stack = Stack::start().await;
    let placed = place(&stack.client()).await.unwrap();
    let client = Client::builder()
        .endpoint(stack.url())
        .timeout(Duration::from_millis(300))
        .retry(quick_retries(1))
        .build()
        .unwrap();

    // The service holds the command on the lock; the client's timer fires first or with it.
    let lock = stack.hold_commands().await;
    let error = client
        .reserve_inventory(placed.order_id, "res-1")
        .await
        .unwrap_err();
    lock.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error}");
    assert_eq!(error.attempts(), 1);

    // A peer that accepts the connection and never speaks: the attempt's deadline bounds the
    // whole attempt, connection included, not the 30 s connect timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let mute = Client::builder()
        .endpoint(format!("http://{addr}"))
        .timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_secs(30))
        .retry(quick_retries(1))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let error = mute.get_order(placed.order_id).await.unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let health = mute.health("").await.unwrap_err();
    assert_eq!(health.code(), Code::DeadlineExceeded, "{health}");
    held.abort();
}

#[tokio::test]
async fn a_total_timeout_bounds_the_call_across_its_retries() {
    let stack = Stack::start().await;
    let placed = place(&stack.client()).await.unwrap();
    // Read-your-writes for a position the log never reaches: each attempt waits its whole
    // deadline and ends DEADLINE_EXCEEDED, which is retried.
    let far = u64::MAX / 2;
    let per_attempt = |retry: order_client::RetryPolicy| {
        Client::builder()
            .endpoint(stack.url())
            .timeout(Duration::from_millis(300))
            .retry(retry)
            .build()
            .unwrap()
    };

    let unbounded = per_attempt(quick_retries(6));
    let error = unbounded
        .get_order(placed.order_id)
        .min_position(far)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error}");
    assert_eq!(
        error.attempts(),
        6,
        "every attempt is spent without a bound"
    );

    // 1 s in all: at most four 300 ms attempts fit (fewer on a slow machine), never six.
    let bounded = per_attempt(quick_retries(6).total_timeout(Duration::from_secs(1)));
    let error = bounded
        .get_order(placed.order_id)
        .min_position(far)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error}");
    assert!((1..=4).contains(&error.attempts()), "{error}");
}

/// A transport that answers every call UNAVAILABLE after 5 ms, without a server, and records
/// each attempt's `grpc-timeout`.
fn always_unavailable(timeouts: Seen) -> impl Fn(Transport) -> Transport + Send + Sync {
    move |_inner: Transport| {
        let timeouts = timeouts.clone();
        Transport::new(tower::service_fn(
            move |request: http::Request<tonic::body::Body>| {
                let timeouts = timeouts.clone();
                async move {
                    let timeout = request
                        .headers()
                        .get("grpc-timeout")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_owned();
                    timeouts.lock().unwrap().push(timeout);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok::<_, TransportError>(
                        tonic::Status::new(Code::Unavailable, "no server here")
                            .into_http::<tonic::body::Body>(),
                    )
                }
            },
        ))
    }
}

/// With waits as long as the bound allows (200-400 ms within 1 s), a call never overruns
/// its total, never sends an attempt without time left, and ends with its last attempt's
/// status, whatever the random waits come out as.
#[tokio::test]
async fn a_total_timeout_is_never_overrun_by_a_wait_and_ends_with_the_last_status() {
    let timeouts: Seen = Arc::default();
    let client = Client::builder()
        .endpoint("http://127.0.0.1:9")
        .timeout(Duration::from_secs(5))
        .retry(
            order_client::RetryPolicy::default()
                .max_attempts(10)
                .initial_backoff(Duration::from_millis(400))
                .max_backoff(Duration::from_millis(400))
                .total_timeout(Duration::from_secs(1)),
        )
        .wrap_transport(always_unavailable(timeouts.clone()))
        .build()
        .unwrap();
    for _ in 0..40 {
        let started = tokio::time::Instant::now();
        let error = client.get_order(uuid::Uuid::new_v4()).await.unwrap_err();
        assert_eq!(error.code(), Code::Unavailable, "{error}");
        assert!((2..=5).contains(&error.attempts()), "{error}");
        // The bound, and a little for the last 5 ms answer and the scheduler.
        assert!(
            started.elapsed() < Duration::from_millis(1_150),
            "{:?}",
            started.elapsed()
        );
    }
    let timeouts = timeouts.lock().unwrap();
    for timeout in timeouts.iter() {
        // grpc-timeout: digits and a unit; "0" of any unit is an attempt out of time.
        let digits: String = timeout.chars().take_while(char::is_ascii_digit).collect();
        assert!(
            digits.parse::<u64>().is_ok_and(|n| n > 0),
            "an attempt sent with grpc-timeout {timeout:?}"
        );
    }
}

/// A command larger than the service's message limit can never succeed: it is sent once, and
/// the error says why (RESOURCE_EXHAUSTED, ErrorInfo reason `REQUEST_TOO_LARGE`), while any
/// other RESOURCE_EXHAUSTED is still retried (see above).
#[tokio::test]
async fn a_command_over_the_servers_message_limit_is_sent_once_and_says_why() {
    let stack = Stack::start_with(ServerOptions {
        max_message_bytes: Some(32 * 1024),
        ..ServerOptions::default()
    })
    .await;
    let seen = Seen::default();
    let client = Client::builder()
        .endpoint(stack.url())
        .retry(quick_retries(4))
        .wrap_transport(recording(seen.clone(), 0))
        .build()
        .unwrap();
    let mut placing = place(&client);
    // Over 32 KiB (the size is checked before the SKUs are: too long, but never looked at).
    for line in 0..40 {
        placing = placing.line(
            format!("SKU-{line:03}-{}", "x".repeat(1000)),
            1,
            money_eur(1),
        );
    }
    let error = placing.await.unwrap_err();

    assert_eq!(error.code(), Code::ResourceExhausted, "{error}");
    assert_eq!(error.attempts(), 1, "{error}");
    assert_eq!(seen.lock().unwrap().len(), 1, "sent exactly once");
    let status = error.status().unwrap();
    let info =
        tonic_types::StatusExt::get_details_error_info(status).expect("an ErrorInfo says why");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("REQUEST_TOO_LARGE", "order-ledger")
    );
    assert!(
        error.to_string().contains("32768"),
        "the error names the limit: {error}"
    );
}

fn money_eur(amount_minor: i64) -> pb::Money {
    order_client::money("EUR", amount_minor)
}

/// A transport that answers UNAVAILABLE, without a server, to every attempt that starts less
/// than `outage` after the first one (a service restarting), and passes later ones on.
fn down_for(outage: Duration, attempts: Seen) -> impl Fn(Transport) -> Transport + Send + Sync {
    let first = Arc::new(Mutex::new(None::<std::time::Instant>));
    move |inner: Transport| {
        let (first, attempts) = (first.clone(), attempts.clone());
        Transport::new(tower::service_fn(
            move |request: http::Request<tonic::body::Body>| {
                let mut inner = inner.clone();
                let started = *first
                    .lock()
                    .unwrap()
                    .get_or_insert_with(std::time::Instant::now);
                let down = started.elapsed() < outage;
                attempts
                    .lock()
                    .unwrap()
                    .push(format!("{:?} {down}", started.elapsed()));
                async move {
                    if down {
                        return Ok(tonic::Status::new(Code::Unavailable, "restarting")
                            .into_http::<tonic::body::Body>());
                    }
                    inner.ready().await?.call(request).await
                }
            },
        ))
    }
}

/// The default policy outlasts a restart of two seconds: its waits add up to at least 2.5 s
/// whatever the jitter draws (a busy machine only makes them longer), so an attempt lands
/// after the outage.
#[tokio::test]
async fn the_default_retries_outlast_a_service_restart_of_two_seconds() {
    let stack = Stack::start().await;
    let placed = place(&stack.client()).await.unwrap();
    for _ in 0..2 {
        let attempts = Seen::default();
        let client = Client::builder()
            .endpoint(stack.url())
            .wrap_transport(down_for(Duration::from_secs(2), attempts.clone()))
            .build()
            .unwrap();
        let order = client.get_order_events(placed.order_id).await;
        let attempts = attempts.lock().unwrap().clone();
        let events = order.unwrap_or_else(|e| panic!("{e}; attempts at {attempts:?}"));
        assert_eq!(events.len(), 1);
        assert!(attempts.len() >= 2, "{attempts:?}");
    }
}

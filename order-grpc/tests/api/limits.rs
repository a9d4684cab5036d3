//! Saturation answers at once instead of queueing: RESOURCE_EXHAUSTED at the concurrency
//! limit, UNAVAILABLE when no database connection frees up in time.

use std::time::{Duration, Instant};

use order_proto::v1 as pb;
use order_proto::v1::order_query_service_client::OrderQueryServiceClient;
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
        max_message_bytes: SMALLEST_LIMIT,
        ..Options::default()
    })
    .await;
    let before = app.event_count().await;
    let mut request = place(&id());
    request.shipping_address.as_mut().unwrap().line2 = "y".repeat(40_000);
    let bytes = prost::Message::encoded_len(&request);
    let status = app.commands().place_order(request).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(&SMALLEST_LIMIT.to_string())
            && status.message().contains(&bytes.to_string()),
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
    assert_eq!(info.metadata["limit_bytes"], SMALLEST_LIMIT.to_string());
    assert_eq!(info.metadata["bytes"], bytes.to_string());
    assert_eq!(app.event_count().await, before, "nothing was written");
}

/// The smallest `--max-message-bytes` (32 KiB).
const SMALLEST_LIMIT: u32 = 32 * 1024;

/// At the smallest message limit, the largest order the domain accepts (100 lines, every text
/// at its longest in 4-byte characters) is placed, and its event comes back: alone from
/// GetOrderEvents and from SubscribeEvents. (With a limit of 1 KiB the order was accepted and
/// its event could never be read.)
#[tokio::test]
async fn at_the_smallest_message_limit_the_largest_event_can_be_read() {
    let app = spawn_app_with(Options {
        max_message_bytes: SMALLEST_LIMIT,
        ..Options::default()
    })
    .await;
    let order = id();
    let text = |chars: usize| "\u{1D11E}".repeat(chars);
    let mut request = place(&order);
    request.lines = (0..100)
        .map(|n| pb::OrderLine {
            sku: format!("S{n:0>63}"),
            quantity: 10_000,
            unit_price: eur(1_000_000),
        })
        .collect();
    request.shipping_address = Some(pb::Address {
        recipient: text(200),
        line1: text(200),
        line2: text(200),
        city: text(100),
        region: text(100),
        postal_code: "SW1Y 4JH".into(),
        country: "GB".into(),
    });
    app.commands().place_order(request).await.expect("placed");
    let events = app
        .queries()
        .get_order_events(pb::GetOrderEventsRequest {
            order_id: order.clone(),
            after_version: 0,
            min_position: None,
            max_events: None,
        })
        .await
        .expect("the order's one event")
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    let bytes = prost::Message::encoded_len(&events[0]);
    assert!(bytes > 11_000, "the largest event takes {bytes} bytes");
    let mut stream = app
        .queries()
        .subscribe_events(pb::SubscribeEventsRequest { start: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut stream).await.order_id, order);
}

/// A response over the message limit (ListOrders with a page larger than a message) is
/// RESOURCE_EXHAUSTED with an ErrorInfo of reason `RESPONSE_TOO_LARGE`, as docs/security.md
/// says: tonic answered OUT_OF_RANGE "Error, encoded message length too large". A smaller
/// page is answered.
#[tokio::test]
async fn a_response_over_the_message_limit_is_resource_exhausted_saying_so() {
    let app = spawn_app_with(Options {
        max_message_bytes: SMALLEST_LIMIT,
        ..Options::default()
    })
    .await;
    app.db
        .connect()
        .await
        .execute(
            "INSERT INTO orders.order_summaries (order_id, customer_id, status, currency, total_minor, captured_minor, refunded_minor, line_count, stream_version, last_position, placed_at, updated_at)
             SELECT gen_random_uuid(), $1, 'Confirmed', 'EUR', 3000, 3000, 500, 2, 4, n, now(), now()
             FROM generate_series(1, 500) AS n",
            &[&uuid::Uuid::parse_str(CUSTOMER).unwrap()],
        )
        .await
        .unwrap();
    let list = |page_size: u32| {
        let mut queries = app.queries();
        async move {
            queries
                .list_orders(pb::ListOrdersRequest {
                    page_size,
                    ..Default::default()
                })
                .await
        }
    };
    let status = list(500).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(&SMALLEST_LIMIT.to_string()),
        "the message gives the limit: {status:?}"
    );
    let info = details(&status)
        .error_info()
        .cloned()
        .expect("an ErrorInfo says why");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("RESPONSE_TOO_LARGE", "order-ledger")
    );
    assert_eq!(info.metadata["limit_bytes"], SMALLEST_LIMIT.to_string());
    let bytes: usize = info.metadata["bytes"].parse().unwrap();
    assert!(bytes > SMALLEST_LIMIT as usize, "{info:?}");
    assert_eq!(
        list(50)
            .await
            .expect("a page that fits")
            .into_inner()
            .orders
            .len(),
        50
    );
}

/// The next event of a subscription, within 10 s.
async fn next_event(stream: &mut tonic::Streaming<pb::Event>) -> pb::Event {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event within 10 s")
        .expect("the stream goes on")
        .expect("not ended")
}

/// Keepalive settings small enough for a test: a ping after 1 s without a frame from the
/// client, 1 s to answer it.
const KEEPALIVE_SECONDS: u64 = 1;

fn with_keepalive(options: Options) -> Options {
    Options {
        extra_args: vec![
            format!("--keepalive-interval-seconds={KEEPALIVE_SECONDS}"),
            format!("--keepalive-timeout-seconds={KEEPALIVE_SECONDS}"),
        ],
        ..options
    }
}

/// A client whose network path goes silent (no FIN, no RST: a NAT entry or a load balancer's
/// flow dropped) does not hold its SubscribeEvents slot for ever: the server's HTTP/2 PING goes
/// unanswered, the connection is closed, and the same client can subscribe again within the
/// keepalive interval and timeout (plus slack for a loaded machine). Without pings the slot
/// stayed taken until the path itself closed.
#[tokio::test]
async fn a_subscription_whose_path_goes_silent_frees_its_slot_after_the_keepalive() {
    let app = spawn_app_with(with_keepalive(Options {
        max_subscriptions_per_client: 1,
        ..Options::default()
    }))
    .await;
    let proxy = SilentProxy::start(app.grpc_addr).await;
    let mut far = OrderQueryServiceClient::new(proxy.channel())
        .subscribe_events(pb::SubscribeEventsRequest { start: None })
        .await
        .expect("subscribed through the proxy")
        .into_inner();
    order_in_state(&app, 0).await;
    next_event(&mut far).await;

    proxy.go_silent();
    let refused = app
        .queries()
        .subscribe_events(pb::SubscribeEventsRequest { start: None })
        .await
        .expect_err("the client's one slot is taken");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    // the ping is sent after the interval, the connection closed after the timeout
    let bound = Duration::from_secs(2 * KEEPALIVE_SECONDS + 6);
    let started = Instant::now();
    let mut near = loop {
        match app
            .queries()
            .subscribe_events(pb::SubscribeEventsRequest { start: None })
            .await
        {
            Ok(stream) => break stream.into_inner(),
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    started.elapsed() < bound,
                    "the silent client still holds its slot after {:?}",
                    started.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    order_in_state(&app, 0).await;
    next_event(&mut near).await;
    drop(far);
}

/// Pings never end a healthy connection, busy or quiet: a subscription that only receives (the
/// client sends no frame for many keepalive intervals) and a client calling all the while keep
/// their connection, beside two CPU-bound tasks.
#[tokio::test]
async fn keepalive_pings_never_end_a_healthy_connection() {
    let app = spawn_app_with(with_keepalive(Options::default())).await;
    let mut stream = app
        .queries()
        .subscribe_events(pb::SubscribeEventsRequest { start: None })
        .await
        .unwrap()
        .into_inner();
    let started = Instant::now();
    let mut placed = 0;
    while started.elapsed() < Duration::from_secs(6 * KEEPALIVE_SECONDS) {
        order_in_state(&app, 0).await;
        placed += 1;
        next_event(&mut stream).await;
        // quiet for more than an interval now and then
        if placed % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(1500 * KEEPALIVE_SECONDS)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3 * KEEPALIVE_SECONDS)).await;
    order_in_state(&app, 0).await;
    next_event(&mut stream).await;
}

/// Wait (at most 30 s) until `reads` reads wait for their position (the service's
/// `order_grpc_waiting_reads`: a read counts once it gave its place under the concurrency
/// limit back). The gauge is the process's: nextest (which `scripts/check` runs) gives each
/// test a process of its own; under `cargo test` other tests' waiting reads count too.
async fn reads_waiting(app: &TestApp, reads: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = app.admin_get("/metrics").await;
        if series(&metrics, "order_grpc_waiting_reads") >= reads as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{reads} reads never waited at once:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A read waiting for a position no event has reached: GetOrder (the read model's checkpoint)
/// or GetOrderEvents (the log), with `timeout` as its deadline.
fn waiting_read(
    app: &TestApp,
    order: &str,
    events: bool,
    timeout: Duration,
) -> tokio::task::JoinHandle<tonic::Status> {
    let mut client = app.raw_queries();
    let order = order.to_owned();
    tokio::spawn(async move {
        let far = Some(1_000_000_000_000);
        let answer = if events {
            let mut request = tonic::Request::new(pb::GetOrderEventsRequest {
                order_id: order,
                after_version: 0,
                min_position: far,
                max_events: None,
            });
            request.set_timeout(timeout);
            client.get_order_events(request).await.map(|_| ())
        } else {
            let mut request = tonic::Request::new(pb::GetOrderRequest {
                order_id: order,
                min_position: far,
            });
            request.set_timeout(timeout);
            client.get_order(request).await.map(|_| ())
        };
        match answer {
            Ok(()) => panic!("a read of a position never reached was answered"),
            Err(status) => status,
        }
    })
}

/// While a projector is down, every read-your-writes call waits until its deadline, and its
/// client retries: those waits must not take the places of commands under the concurrency
/// limit. Here they outnumber the limit twice, and commands still go through.
#[tokio::test]
async fn reads_waiting_for_their_position_leave_the_concurrency_limit_to_commands() {
    waiting_reads_beside_commands(false).await;
}

/// The same with a read replica (here the primary's own database, by another pool): a read
/// the replica makes wait gives its place up as well.
#[tokio::test]
async fn reads_waiting_on_a_replica_leave_the_concurrency_limit_to_commands() {
    waiting_reads_beside_commands(true).await;
}

async fn waiting_reads_beside_commands(replica: bool) {
    let app = spawn_app_with(Options {
        max_concurrent_requests: 3,
        replica_is_primary: replica,
        // The whole call on the replica (at most half its deadline), not 1 s of it.
        extra_args: vec!["--read-replica-wait-ms=10000".to_owned()],
        ..Options::default()
    })
    .await;
    let order = id();
    app.commands().place_order(place(&order)).await.unwrap();

    let wait = Duration::from_secs(6);
    let mut waits = Vec::new();
    for i in 0..6 {
        waits.push(waiting_read(&app, &order, i % 2 == 1, wait));
        // One at a time: each looks once under the limit before it waits (a pause of 150 ms
        // was not always enough on a loaded machine: four looked at once, one was refused).
        reads_waiting(&app, i + 1).await;
    }
    for _ in 0..3 {
        let placed = app.commands().place_order(place(&id())).await;
        assert!(
            placed.is_ok(),
            "a command beside six waiting reads (limit 3): {placed:?}"
        );
    }
    for waiting in waits {
        let status = waiting.await.unwrap();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    }
}

/// Waiting reads have a limit of their own: one that has to wait when all places are taken
/// is refused at once, saying why; a read that needs no wait is still answered.
#[tokio::test]
async fn reads_that_would_wait_beyond_their_own_limit_are_shed() {
    let app = spawn_app_with(Options {
        extra_args: vec!["--max-waiting-reads=2".to_owned()],
        ..Options::default()
    })
    .await;
    let order = id();
    let placed = app
        .commands()
        .place_order(place(&order))
        .await
        .unwrap()
        .into_inner();

    let wait = Duration::from_secs(6);
    let waits = [
        waiting_read(&app, &order, false, wait),
        waiting_read(&app, &order, true, wait),
    ];
    reads_waiting(&app, 2).await;

    let started = Instant::now();
    let shed = waiting_read(&app, &order, true, wait).await.unwrap();
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert!(shed.message().contains("min_position"), "{shed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, not after a wait"
    );

    let answered = app
        .raw_queries()
        .get_order_events(pb::GetOrderEventsRequest {
            order_id: order.clone(),
            after_version: 0,
            min_position: Some(placed.global_position),
            max_events: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answered.events.len(), 1);

    for waiting in waits {
        let status = waiting.await.unwrap();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    }
}

/// The value of one series on a `/metrics` page (0 when absent).
fn series(body: &str, name_and_labels: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// GetOrderEvents of `order` with `min_position`, `timeout` as its deadline; a read the
/// concurrency limit sheds is sent again when `retry_shed`.
fn events_after(
    app: &TestApp,
    order: &str,
    min_position: u64,
    timeout: Duration,
    retry_shed: bool,
) -> tokio::task::JoinHandle<Result<usize, tonic::Status>> {
    let mut client = app.raw_queries();
    let order = order.to_owned();
    tokio::spawn(async move {
        loop {
            let mut request = tonic::Request::new(pb::GetOrderEventsRequest {
                order_id: order.clone(),
                after_version: 0,
                min_position: Some(min_position),
                max_events: None,
            });
            request.set_timeout(timeout);
            match client.get_order_events(request).await {
                Ok(answer) => return Ok(answer.into_inner().events.len()),
                Err(status) if retry_shed && status.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => return Err(status),
            }
        }
    })
}

/// An order placed, and both connections of `app`'s replica pool (of 2) held by GetOrderEvents
/// reads waiting for the position after it (each with the deadline `timeout`): the order, that
/// position and the reads.
async fn replica_pool_held_by_waiting_reads(
    app: &TestApp,
    timeout: Duration,
) -> (
    String,
    u64,
    Vec<tokio::task::JoinHandle<Result<usize, tonic::Status>>>,
) {
    let order = id();
    let placed = app
        .commands()
        .place_order(place(&order))
        .await
        .unwrap()
        .into_inner();
    // The next event's position: the reads wait for it.
    let next = placed.global_position + 1;
    let in_use = "order_db_pool_connections{pool=\"order-grpc-read\",state=\"in_use\"}";
    let mut reads = Vec::new();
    for held in 1..=2 {
        reads.push(events_after(app, &order, next, timeout, true));
        let started = Instant::now();
        while series(&app.admin_get("/metrics").await.1, in_use) < f64::from(held) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the waiting read did not take a replica connection"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    (order, next, reads)
}

/// A replica pool held by reads waiting for their position is busy, not broken: a further
/// read that finds no replica connection free gives its place under the concurrency limit
/// back and waits like them (a command beside it goes through), is never shed nor counted as
/// a failed replica read, and is answered by the replica once its position is reached. It
/// used to queue for a replica connection under its place (the pool wait, 1 s here),
/// shedding commands meanwhile, and then count the replica as failed.
#[tokio::test]
async fn a_read_finding_the_replica_pool_held_by_waiting_reads_waits_too() {
    let app = spawn_app_with(Options {
        max_concurrent_requests: 1,
        pool_size: 2,
        replica_is_primary: true,
        // The whole call on the replica (at most half its deadline), not 1 s of it.
        extra_args: vec!["--read-replica-wait-ms=10000".to_owned()],
        ..Options::default()
    })
    .await;
    let wait = Duration::from_secs(10);
    let (order, next, reads) = replica_pool_held_by_waiting_reads(&app, wait).await;
    // Both replica connections are held by waiting reads: this one finds none free.
    // Retried if shed, so that neither call depends on which the loaded machine admits
    // first; given half a second, it is admitted and waits before the command comes.
    let further = events_after(&app, &order, next, wait, true);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The further read gives its place back after its first 5 ms in the pool's queue; on a
    // loaded machine that may take a moment, so the command is retried when shed (what tells
    // the old behaviour apart is below: it counted the replica as failed).
    let started = Instant::now();
    let other = loop {
        match app.commands().place_order(place(&id())).await {
            Err(status)
                if status.code() == Code::ResourceExhausted
                    && started.elapsed() < Duration::from_secs(10) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other,
        }
    };
    let other = other
        .expect("a command beside reads waiting for the replica (limit 1)")
        .into_inner();
    assert_eq!(
        other.global_position, next,
        "positions are handed out in order"
    );

    let answered = tokio::time::timeout(Duration::from_secs(15), further)
        .await
        .expect("the further read answers")
        .unwrap();
    assert_eq!(
        answered.as_ref().ok(),
        Some(&1),
        "answered once the position is reached: {answered:?}"
    );
    for read in reads {
        assert_eq!(read.await.unwrap().ok(), Some(1));
    }
    let (_, metrics) = app.admin_get("/metrics").await;
    let outcome = |outcome: &str| {
        series(
            &metrics,
            &format!(
                "order_grpc_replica_reads_total{{rpc=\"GetOrderEvents\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(
        outcome("primary_replica_failed"),
        0.0,
        "a busy replica pool is no failed replica:\n{metrics}"
    );
    assert_eq!(
        outcome("replica"),
        3.0,
        "the replica answered all three:\n{metrics}"
    );
}

/// A read without `min_position` that finds every replica connection held (here by reads
/// waiting for their position) is answered by the primary and counted as a busy replica
/// (`primary_replica_behind`), never as a failed one, for GetOrder, ListOrders and
/// GetOrderEvents alike. Before, it waited in the pool until the replica wait ran out and
/// counted `primary_replica_failed`, as for a broken replica (the docs said busy, not failed).
#[tokio::test]
async fn a_read_without_a_position_finding_the_replica_pool_busy_counts_no_failure() {
    let app = spawn_app_with(Options {
        max_concurrent_requests: 8,
        pool_size: 2,
        replica_is_primary: true,
        // A waiting read holds its replica connection for the replica wait, at most half of
        // its deadline, and the server cuts every deadline to its default (10 s): without
        // both, the holds below would let go after 5 s, about when the reads below end, and
        // a read a little late (a loaded machine) would find a connection free.
        extra_args: vec![
            "--read-replica-wait-ms=60000".to_owned(),
            "--default-deadline-ms=120000".to_owned(),
        ],
        ..Options::default()
    })
    .await;
    let held = Instant::now();
    let (order, _, reads) =
        replica_pool_held_by_waiting_reads(&app, Duration::from_secs(120)).await;
    // Both replica connections are held for up to 60 s (until the command at the end): each
    // read below gives up on the replica after the replica pool's wait (1 s), and the primary
    // answers it. Counted from here (the recorder is the process's: under `cargo test`, other
    // tests' apps count too).
    let outcomes = |metrics: &str, rpc: &str| -> (f64, f64) {
        let outcome = |outcome: &str| {
            series(
                metrics,
                &format!("order_grpc_replica_reads_total{{rpc=\"{rpc}\",outcome=\"{outcome}\"}}"),
            )
        };
        (
            outcome("primary_replica_failed"),
            outcome("primary_replica_behind"),
        )
    };
    let (_, before) = app.admin_get("/metrics").await;
    // Room for the primary on a loaded machine: the replica is still given only its pool's
    // wait (1 s; the replica wait would be half of this, 10 s).
    let timeout = Duration::from_secs(20);
    let mut queries = app.raw_queries();
    let mut request = tonic::Request::new(pb::GetOrderRequest {
        order_id: order.clone(),
        min_position: None,
    });
    request.set_timeout(timeout);
    // No projector runs here: the read model has no order, and the primary says so.
    let got = queries.get_order(request).await;
    assert_eq!(got.map(|_| ()).map_err(|s| s.code()), Err(Code::NotFound));
    let mut request = tonic::Request::new(pb::ListOrdersRequest::default());
    request.set_timeout(timeout);
    let listed = queries.list_orders(request).await;
    assert!(listed.is_ok(), "{listed:?}");
    let mut request = tonic::Request::new(pb::GetOrderEventsRequest {
        order_id: order.clone(),
        after_version: 0,
        min_position: None,
        max_events: None,
    });
    request.set_timeout(timeout);
    let events = queries.get_order_events(request).await;
    assert_eq!(events.map(|e| e.into_inner().events.len()).ok(), Some(1));

    let (_, metrics) = app.admin_get("/metrics").await;
    // What the counts say holds only while the waiting reads held both replica connections.
    assert!(
        held.elapsed() < Duration::from_secs(55),
        "the waiting reads may have let go of the replica (after 60 s) before the reads ended"
    );
    for rpc in ["GetOrder", "ListOrders", "GetOrderEvents"] {
        let ((failed_before, behind_before), (failed, behind)) =
            (outcomes(&before, rpc), outcomes(&metrics, rpc));
        assert_eq!(
            (failed - failed_before, behind - behind_before),
            (0.0, 1.0),
            "{rpc}: a busy replica pool is no failed replica:\n{metrics}"
        );
    }
    // The waiting reads are answered once their position is reached.
    app.commands().place_order(place(&id())).await.unwrap();
    for read in reads {
        assert_eq!(read.await.unwrap().ok(), Some(1));
    }
}

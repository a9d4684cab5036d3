//! Reads from a read replica (`ORDER_GRPC_READ_DATABASE_URL`): a real hot standby of a
//! private cluster, made lag with `recovery_min_apply_delay`, under order-grpc and
//! order-projector in process. Read-your-writes holds on every read (`min_position`): the
//! replica answers once it has replayed that far, otherwise the primary does; a replica that
//! fails is replaced by the primary.

use std::time::{Duration, Instant};

use clap::Parser;
use order_proto::v1 as pb;
use order_proto::v1::order_query_service_client::OrderQueryServiceClient;
use order_proto::v1::order_service_client::OrderServiceClient;
use order_testkit::pg::{PrivateCluster, StopMode};
use order_testkit::replication::Replication;
use order_testkit::sqs;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{id, place};

#[derive(Parser)]
struct GrpcArgs {
    #[command(flatten)]
    args: order_grpc::ServeArgs,
}

#[derive(Parser)]
struct ProjectorArgs {
    #[command(flatten)]
    args: order_projector::config::RunArgs,
}

struct ReplicaStack {
    primary: PrivateCluster,
    replica: PrivateCluster,
    channel: Channel,
    admin: std::net::SocketAddr,
    stops: Vec<oneshot::Sender<()>>,
}

impl Drop for ReplicaStack {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

impl ReplicaStack {
    fn commands(&self) -> OrderServiceClient<Channel> {
        OrderServiceClient::new(self.channel.clone())
    }

    fn queries(&self) -> OrderQueryServiceClient<Channel> {
        OrderQueryServiceClient::new(self.channel.clone())
    }

    /// `order_grpc_replica_reads_total{outcome="primary_replica_failed"}` of GetOrder,
    /// GetOrderEvents and ListOrders.
    async fn failed_reads(&self) -> [(&'static str, u64); 3] {
        let mut counts = [("GetOrder", 0), ("GetOrderEvents", 0), ("ListOrders", 0)];
        for (rpc, count) in &mut counts {
            *count = self.served(rpc, "primary_replica_failed").await;
        }
        counts
    }

    /// `order_grpc_replica_reads_total` of one rpc and outcome.
    async fn served(&self, rpc: &str, outcome: &str) -> u64 {
        let text = http_get(self.admin, "/metrics").await;
        let wanted =
            format!("order_grpc_replica_reads_total{{rpc=\"{rpc}\",outcome=\"{outcome}\"}}");
        text.lines()
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                // Label order is the exporter's: compare as sets of labels.
                same_series(name, &wanted).then(|| value.parse::<f64>().ok())?
            })
            .sum::<f64>() as u64
    }
}

fn same_series(a: &str, b: &str) -> bool {
    let split = |s: &str| -> Option<(String, Vec<String>)> {
        let (name, labels) = s.split_once('{')?;
        let mut labels: Vec<String> = labels
            .trim_end_matches('}')
            .split(',')
            .map(str::to_owned)
            .collect();
        labels.sort();
        Some((name.to_owned(), labels))
    };
    matches!((split(a), split(b)), (Some(x), Some(y)) if x == y)
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut body = Vec::new();
    stream.read_to_end(&mut body).await.unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

fn blocking<T>(f: impl FnOnce() -> Result<T, String>) -> T {
    tokio::task::block_in_place(f).unwrap_or_else(|e| panic!("{e}"))
}

/// A primary with an asynchronous hot standby (as an RDS read replica) that applies WAL
/// `apply_delay` late; order-grpc reading from the standby, waiting up to `replica_wait`;
/// order-projector on the primary.
async fn start(apply_delay: Duration, replica_wait: Duration) -> ReplicaStack {
    let primary = blocking(PrivateCluster::start);
    order_store::migrate(&order_store::StoreConfig::new(primary.url("orders")))
        .await
        .unwrap();
    let replica = blocking(|| primary.start_standby(Replication::Asynchronous));
    blocking(|| replica.set_apply_delay(apply_delay));
    let queue = sqs::fifo_queue_pair(5).await;
    let mut stops = Vec::new();

    let grpc = GrpcArgs::try_parse_from([
        "order-grpc".to_owned(),
        "--grpc-addr=127.0.0.1:0".to_owned(),
        "--admin-addr=127.0.0.1:0".to_owned(),
        format!("--database-url={}", primary.url("orders")),
        format!("--read-database-url={}", replica.url("orders")),
        format!("--read-replica-wait-ms={}", replica_wait.as_millis()),
        "--log-format=pretty".to_owned(),
    ])
    .unwrap()
    .args;
    let app = order_grpc::App::build(grpc).await.unwrap();
    let grpc_addr = app.grpc_addr();
    let admin = app.admin_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    stops.push(stop);

    let projector = ProjectorArgs::try_parse_from([
        "order-projector".to_owned(),
        "--admin-addr=127.0.0.1:0".to_owned(),
        format!("--database-url={}", primary.url("orders")),
        format!("--orders-queue-url={}", queue.queue_url),
        "--poll-ms=200".to_owned(),
        "--log-format=pretty".to_owned(),
    ])
    .unwrap()
    .args;
    let app = order_projector::startup::App::start_with_sqs(projector, sqs::client())
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    stops.push(stop);

    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect_lazy();
    let ready = format!("http://{admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    while order_runtime::probe::check(&ready, Duration::from_secs(1))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "order-grpc never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ReplicaStack {
        primary,
        replica,
        channel,
        admin,
        stops,
    }
}

fn get(order: &str, min_position: Option<u64>) -> pb::GetOrderRequest {
    pb::GetOrderRequest {
        order_id: order.to_owned(),
        min_position,
    }
}

/// 100 orders, two commands each: after every command, GetOrder and GetOrderEvents with the
/// response's position as min_position show that command's effect, never an older state,
/// although the replica applies the WAL 100 ms late (reads without min_position right after
/// a command do see the replica's older state: the wait is what gives read-your-writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_holds_200_times_on_a_lagging_replica() {
    let stack = start(Duration::from_millis(100), Duration::from_secs(2)).await;
    let customer = id();
    let (mut checks, mut stale_without_min_position) = (0, 0);
    for _ in 0..100 {
        let order = id();
        let placed = stack
            .commands()
            .place_order(place(&order, &customer))
            .await
            .unwrap()
            .into_inner();
        // A read right after the write, without min_position: the lagging replica does not
        // know the order yet.
        match stack.queries().get_order(get(&order, None)).await {
            Err(status) if status.code() == Code::NotFound => stale_without_min_position += 1,
            Err(status) => panic!("{status:?}"),
            Ok(_) => {}
        }
        let cancelled = stack
            .commands()
            .cancel_order(pb::CancelOrderRequest {
                command_id: id(),
                order_id: order.clone(),
                expected_version: Some(placed.version),
                reason: "changed my mind".into(),
            })
            .await
            .unwrap()
            .into_inner();
        for (response, status) in [
            (&placed, pb::OrderStatus::Placed),
            (&cancelled, pb::OrderStatus::Cancelled),
        ] {
            // The first read comes after the cancellation too: an answer at or after the
            // position asked for is right; older is never.
            let got = stack
                .queries()
                .get_order(get(&order, Some(response.global_position)))
                .await
                .unwrap()
                .into_inner()
                .order
                .unwrap();
            assert!(
                got.last_position >= response.global_position && got.version >= response.version,
                "GetOrder older than min_position {}: {got:?}",
                response.global_position
            );
            if response.global_position == cancelled.global_position {
                assert_eq!(got.status(), status);
            }
            let events = stack
                .queries()
                .get_order_events(pb::GetOrderEventsRequest {
                    order_id: order.clone(),
                    after_version: 0,
                    min_position: Some(response.global_position),
                    max_events: None,
                })
                .await
                .unwrap()
                .into_inner()
                .events;
            assert!(
                events
                    .iter()
                    .any(|e| e.global_position == response.global_position),
                "GetOrderEvents without the event at min_position {}",
                response.global_position
            );
            checks += 1;
        }
    }
    assert_eq!(checks, 200);
    let by_replica = stack.served("GetOrder", "replica").await;
    let by_primary = stack.served("GetOrder", "primary_replica_behind").await;
    println!(
        "GetOrder: {by_replica} answered by the replica, {by_primary} by the primary (replica behind); {stale_without_min_position} of 100 reads without min_position stale"
    );
    assert!(
        by_replica >= 200,
        "the replica answered the 100 plain reads and most of the 200 with min_position ({by_replica} of 300, {by_primary} by the primary)"
    );
    assert!(
        stale_without_min_position > 0,
        "the replica lagged: reads without min_position saw it"
    );
    assert!(stack.served("GetOrderEvents", "replica").await >= 100);
    // ListOrders reads the replica too and finds the orders once it caught up.
    blocking(|| {
        stack
            .replica
            .wait_replayed(&stack.primary, Duration::from_secs(30))
    });
    let listed = stack
        .queries()
        .list_orders(pb::ListOrdersRequest {
            customer_id: customer.clone(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(listed.len(), 100);
    assert!(stack.served("ListOrders", "replica").await >= 1);

    // An order read in parts from the replica: one event at a time, then past its end (the
    // order exists: no events, no error); an unknown order is NOT_FOUND at any version.
    let before = stack.served("GetOrderEvents", "replica").await;
    let part = |order_id: String, after_version: u64| pb::GetOrderEventsRequest {
        order_id,
        after_version,
        min_position: None,
        max_events: Some(1),
    };
    let order = listed[0].order_id.clone();
    let mut versions = Vec::new();
    for after in 0..3 {
        let events = stack
            .queries()
            .get_order_events(part(order.clone(), after))
            .await
            .unwrap()
            .into_inner()
            .events;
        versions.push(events.iter().map(|e| e.stream_version).collect::<Vec<_>>());
    }
    assert_eq!(versions, [vec![1], vec![2], vec![]]);
    for after in [0, 1, 5] {
        let status = stack
            .queries()
            .get_order_events(part(id(), after))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    assert_eq!(stack.served("GetOrderEvents", "replica").await, before + 6);
}

/// A replica further behind than the read may wait: the primary answers, correctly and in
/// time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_too_far_behind_is_replaced_by_the_primary() {
    let stack = start(Duration::from_secs(30), Duration::from_millis(200)).await;
    let order = id();
    let placed = stack
        .commands()
        .place_order(place(&order, &id()))
        .await
        .unwrap()
        .into_inner();
    let started = Instant::now();
    let got = stack
        .queries()
        .get_order(get(&order, Some(placed.global_position)))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(got.last_position, placed.global_position);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let events = stack
        .queries()
        .get_order_events(pb::GetOrderEventsRequest {
            order_id: order.clone(),
            after_version: 0,
            min_position: Some(placed.global_position),
            max_events: None,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    assert_eq!(stack.served("GetOrder", "primary_replica_behind").await, 1);
    assert_eq!(
        stack
            .served("GetOrderEvents", "primary_replica_behind")
            .await,
        1
    );
    // Without min_position the replica answers with what it has: nothing yet.
    let stale = stack
        .queries()
        .get_order(get(&order, None))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::NotFound);
}

/// A replica that is down costs nothing but a metric and a warning: the primary answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_replica_is_replaced_by_the_primary() {
    let _counting = FAILED_READS.lock().await;
    let stack = start(Duration::ZERO, Duration::from_millis(500)).await;
    let before = stack.failed_reads().await;
    let order = id();
    let placed = stack
        .commands()
        .place_order(place(&order, &id()))
        .await
        .unwrap()
        .into_inner();
    blocking(|| stack.replica.stop(StopMode::Fast));
    let got = stack
        .queries()
        .get_order(get(&order, Some(placed.global_position)))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(got.last_position, placed.global_position);
    let events = stack
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
    assert_eq!(events.len(), 1);
    let listed = stack
        .queries()
        .list_orders(pb::ListOrdersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(listed.len(), 1);
    let after = stack.failed_reads().await;
    for ((rpc, before), (_, after)) in before.iter().zip(after.iter()) {
        assert_eq!(after - before, 1, "{rpc}");
    }
}

/// The metrics are the test process's: the tests that count failed replica reads take turns.
static FAILED_READS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A replica that hangs (frozen, or behind a network that drops packets) is not refused at
/// once as a stopped one is: it simply does not answer. The primary answers every read soon
/// after the replica wait, not at the store's own limit (the statement timeout and 2 s, past a
/// short deadline), and the primary's own connections are left alone: commands keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_replica_is_replaced_by_the_primary_within_the_replica_wait() {
    let _counting = FAILED_READS.lock().await;
    let stack = start(Duration::ZERO, Duration::from_millis(500)).await;
    let order = id();
    let placed = stack
        .commands()
        .place_order(place(&order, &id()))
        .await
        .unwrap()
        .into_inner();
    // The replica's pool holds a live connection when it freezes.
    stack
        .queries()
        .list_orders(pb::ListOrdersRequest::default())
        .await
        .unwrap();
    let before = stack.failed_reads().await;
    stack.replica.signal("STOP");

    let within = Duration::from_secs(4);
    let started = Instant::now();
    let got = stack
        .queries()
        .get_order(get(&order, Some(placed.global_position)))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(got.last_position, placed.global_position);
    let started_plain = Instant::now();
    stack.queries().get_order(get(&order, None)).await.unwrap();
    assert!(
        started_plain.elapsed() < within,
        "{:?}",
        started_plain.elapsed()
    );
    let events = stack
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
    assert_eq!(events.len(), 1);
    let mut short = tonic::Request::new(pb::ListOrdersRequest::default());
    short.set_timeout(Duration::from_secs(3));
    let listed = stack
        .queries()
        .list_orders(short)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.orders.len(), 1);
    // Four reads, each the replica wait (0.5 s) and the primary's answer.
    assert!(
        started.elapsed() < within * 4,
        "the reads took {:?}",
        started.elapsed()
    );
    // Commands still go through, on the primary's connections.
    for _ in 0..5 {
        let mut request = tonic::Request::new(place(&id(), &id()));
        request.set_timeout(Duration::from_secs(3));
        stack.commands().place_order(request).await.unwrap();
    }
    let after = stack.failed_reads().await;
    for ((rpc, before), (_, after)) in before.iter().zip(after.iter()) {
        let expected = if *rpc == "GetOrder" { 2 } else { 1 };
        assert_eq!(after - before, expected, "{rpc}");
    }
    stack.replica.signal("CONT");
}

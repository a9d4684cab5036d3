//! `order-bench replica`: queries (GetOrder, ListOrders, GetOrderEvents) through the real
//! order-grpc binary with and without a read replica (`ORDER_GRPC_READ_DATABASE_URL`), and
//! PlaceOrder throughput while they run. A private primary and its asynchronous hot standby
//! (pg_basebackup, streaming replication) on this machine; the CPU each server's processes
//! used is read from /proc. Both servers, the service and the clients share the machine's
//! cores, so a replica here moves work rather than adding capacity: the figure that carries
//! over to separate hosts is the primary's CPU per query.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_proto::v1 as pb;
use order_proto::v1::order_query_service_client::OrderQueryServiceClient;
use order_proto::v1::order_service_client::OrderServiceClient;
use order_testkit::pg::PrivateCluster;
use order_testkit::replication::Replication;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::grpc::{Server, cpu_seconds, place_request};
use crate::stats::{Run, Samples};

#[derive(Debug, clap::Args)]
pub struct ReplicaArgs {
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Orders placed (and projected) before the runs.
    #[arg(long, default_value_t = 5_000, value_parser = crate::at_least_one)]
    orders: usize,
    /// Concurrent query clients.
    #[arg(long, default_value_t = 16, value_parser = crate::at_least_one)]
    query_clients: usize,
    /// Concurrent PlaceOrder clients.
    #[arg(long, default_value_t = 4, value_parser = crate::at_least_one)]
    append_clients: usize,
    /// The order-grpc binary (build it with `cargo build --release -p order-grpc`).
    #[arg(long, default_value = "target/release/order-grpc")]
    server: PathBuf,
}

/// CPU seconds used so far by a private cluster (see [`crate::grpc::cluster_cpu_seconds`]).
fn cluster_cpu_seconds(cluster: &PrivateCluster) -> f64 {
    cluster
        .postmaster_pid()
        .map_or(0.0, crate::grpc::cluster_cpu_seconds)
}

/// What was seeded: order ids with the position of their last event.
struct Seeded {
    orders: Vec<(String, u64)>,
}

async fn seed(addr: SocketAddr, orders: usize) -> anyhow::Result<Seeded> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let per_client = orders.div_ceil(16);
    let tasks: Vec<_> = (0..16)
        .map(|c| {
            let channel = channel.clone();
            tokio::spawn(async move {
                let mut client = OrderServiceClient::new(channel);
                let mut placed = Vec::new();
                for i in 0..per_client {
                    let order = Uuid::new_v4().to_string();
                    let n = (c * per_client + i) as u64;
                    let response = client.place_order(place_request(&order, n)).await?;
                    placed.push((order, response.into_inner().global_position));
                }
                Ok::<_, tonic::Status>(placed)
            })
        })
        .collect();
    let mut seeded = Vec::new();
    for task in tasks {
        seeded.extend(task.await??);
    }
    Ok(Seeded { orders: seeded })
}

/// `clients` query clients for `duration`: GetOrder (half of them with min_position),
/// ListOrders (a page of 20) and GetOrderEvents (with min_position), in turn.
async fn queries(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    seeded: Arc<Seeded>,
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let seeded = seeded.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = OrderQueryServiceClient::new(channel);
            let mut samples = Samples::default();
            let mut errors = 0;
            let mut i = c;
            while Instant::now() < deadline {
                i += clients;
                let (order, position) = &seeded.orders[(i * 7919) % seeded.orders.len()];
                let op = Instant::now();
                let result = match i % 4 {
                    0 | 1 => client
                        .get_order(pb::GetOrderRequest {
                            order_id: order.clone(),
                            min_position: (i % 4 == 1).then_some(*position),
                        })
                        .await
                        .map(|_| ()),
                    2 => client
                        .list_orders(pb::ListOrdersRequest {
                            customer_id: "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001".into(),
                            page_size: 20,
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    _ => client
                        .get_order_events(pb::GetOrderEventsRequest {
                            order_id: order.clone(),
                            after_version: 0,
                            min_position: Some(*position),
                            max_events: None,
                        })
                        .await
                        .map(|_| ()),
                };
                match result {
                    Ok(()) => samples.record(op.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (samples, errors)
        }));
    }
    let mut samples = Samples::default();
    let mut errors = 0;
    for task in tasks {
        let (s, e) = task.await?;
        samples.merge(s);
        errors += e;
    }
    Ok(Run {
        samples,
        elapsed: started.elapsed(),
        errors,
        pg_cpu: 0.0,
        own_cpu: 0.0,
        machine: (0, 0),
    })
}

/// One measured configuration.
struct Measured {
    queries: Option<Run>,
    appends: Option<Run>,
    primary_cores: f64,
    replica_cores: f64,
    service_cores: f64,
}

async fn measure(
    server: &Server,
    primary: &PrivateCluster,
    replica: &PrivateCluster,
    args: &ReplicaArgs,
    seeded: &Arc<Seeded>,
    with_queries: bool,
    with_appends: bool,
) -> anyhow::Result<Measured> {
    let duration = Duration::from_secs(args.seconds);
    let cpu = || {
        (
            cluster_cpu_seconds(primary),
            cluster_cpu_seconds(replica),
            cpu_seconds(server.pid()),
        )
    };
    let before = cpu();
    let started = Instant::now();
    let query_run = with_queries.then(|| {
        tokio::spawn(queries(
            server.addr,
            args.query_clients,
            duration,
            seeded.clone(),
        ))
    });
    let append_run = with_appends.then(|| {
        tokio::spawn(crate::grpc::drive(
            server.addr,
            args.append_clients,
            duration,
        ))
    });
    let queries = match query_run {
        Some(task) => Some(task.await??),
        None => None,
    };
    let appends = match append_run {
        Some(task) => Some(task.await??),
        None => None,
    };
    let elapsed = started.elapsed().as_secs_f64();
    let after = cpu();
    Ok(Measured {
        queries,
        appends,
        primary_cores: (after.0 - before.0) / elapsed,
        replica_cores: (after.1 - before.1) / elapsed,
        service_cores: (after.2 - before.2) / elapsed,
    })
}

pub async fn run(args: ReplicaArgs) -> anyhow::Result<()> {
    eprintln!("[replica] a private primary and its asynchronous hot standby");
    let primary = tokio::task::spawn_blocking(|| {
        let primary = PrivateCluster::start()?;
        Ok::<_, String>(primary)
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    order_store::migrate(&order_store::StoreConfig::new(primary.url("orders"))).await?;
    let primary = Arc::new(primary);
    let replica = {
        let primary = primary.clone();
        tokio::task::spawn_blocking(move || primary.start_standby(Replication::Asynchronous))
            .await?
            .map_err(anyhow::Error::msg)?
    };
    let pool = args.query_clients + args.append_clients;
    let plain = Server::start(&args.server, &primary.url("orders"), pool).await?;
    eprintln!("[replica] seeding {} orders", args.orders);
    let seeded = Arc::new(seed(plain.addr, args.orders).await?);
    let store = order_store::EventStore::new(order_store::StoreConfig::new(primary.url("orders")))?;
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    order_projector::replay::replay(
        &store,
        &order_projector::Subscription::projection(order_projector::ReadModel::new()),
        &order_projector::replay::ReplayOptions {
            owner: "bench".into(),
            page: 5_000,
            progress: order_projector::replay::Progress::None,
            lease_ttl: Duration::from_secs(60),
            ..Default::default()
        },
        &shutdown,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    {
        let (primary, replica) = (primary.clone(), &replica);
        tokio::task::block_in_place(|| replica.wait_replayed(&primary, Duration::from_secs(60)))
            .map_err(anyhow::Error::msg)?;
    }
    let with_replica = Server::start_with(
        &args.server,
        &primary.url("orders"),
        pool,
        &[("ORDER_GRPC_READ_DATABASE_URL", replica.url("orders"))],
    )
    .await?;

    println!(
        "| reads go to | load | queries/s | query p50 / p99 ms | PlaceOrder/s | PlaceOrder p50 / p99 ms | primary CPU (cores) | replica CPU (cores) | order-grpc CPU (cores) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let configurations = [
        ("primary", "PlaceOrder only", &plain, false, true),
        ("primary", "queries only", &plain, true, false),
        ("replica", "queries only", &with_replica, true, false),
        ("primary", "queries + PlaceOrder", &plain, true, true),
        ("replica", "queries + PlaceOrder", &with_replica, true, true),
    ];
    for (reads, load, server, with_queries, with_appends) in configurations {
        let mut measured = measure(
            server,
            &primary,
            &replica,
            &args,
            &seeded,
            with_queries,
            with_appends,
        )
        .await?;
        let rate = |run: &mut Option<Run>| match run {
            Some(run) => {
                let errors = if run.errors > 0 {
                    format!(" ({} errors)", run.errors)
                } else {
                    String::new()
                };
                (
                    format!("{:.0}{errors}", run.rate()),
                    format!(
                        "{:.2} / {:.2}",
                        run.samples.quantile_ms(0.5),
                        run.samples.quantile_ms(0.99)
                    ),
                )
            }
            None => ("-".to_owned(), "-".to_owned()),
        };
        let (qps, qlat) = rate(&mut measured.queries);
        let (aps, alat) = rate(&mut measured.appends);
        println!(
            "| {reads} | {load} | {qps} | {qlat} | {aps} | {alat} | {:.2} | {:.2} | {:.2} |",
            measured.primary_cores, measured.replica_cores, measured.service_cores
        );
    }
    Ok(())
}

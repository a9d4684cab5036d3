//! A database that turns read-only under the service (a demoted primary, a DNS name still on a
//! reader during a failover): commands are answered UNAVAILABLE, never written there, the
//! service reports not ready, and once a server takes writes again the same command id
//! succeeds.

use std::time::Duration;

use clap::Parser;
use order_grpc::{App, ServeArgs};
use order_testkit::pg::PrivateCluster;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::*;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: ServeArgs,
}

fn read_only(cluster: &PrivateCluster, on: bool) {
    let value = if on { "on" } else { "off" };
    cluster
        .psql(
            "postgres",
            &format!("ALTER SYSTEM SET default_transaction_read_only = {value}"),
        )
        .unwrap();
    cluster.psql("postgres", "SELECT pg_reload_conf()").unwrap();
}

async fn readyz(admin: std::net::SocketAddr) -> bool {
    order_runtime::probe::check(&format!("http://{admin}/readyz"), Duration::from_secs(2))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_unavailable_and_the_service_not_ready_until_it_takes_writes() {
    let cluster = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = cluster.url("orders");
    order_store::migrate(&order_store::StoreConfig::new(url.clone()))
        .await
        .unwrap();
    let args = Wrapper::try_parse_from([
        "order-grpc",
        "--grpc-addr=127.0.0.1:0",
        "--admin-addr=127.0.0.1:0",
        &format!("--database-url={url}"),
        "--log-format=pretty",
    ])
    .unwrap()
    .args;
    let app = App::build(args).await.unwrap();
    let (addr, admin) = (app.grpc_addr(), app.admin_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut commands = order_proto::v1::order_service_client::OrderServiceClient::new(channel);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !readyz(admin).await {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    commands.place_order(place(&id())).await.unwrap();

    tokio::task::block_in_place(|| read_only(&cluster, true));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let request = place(&id());
    let refused = commands.place_order(request.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    // Not ready: the readiness probe's connection is replaced too, and a new one finds no
    // server that takes writes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while readyz(admin).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready while the database refuses writes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it stays not ready while the server refuses writes: the probe does not go back to
    // the connection it gave up on (several of its rounds, every 500 ms).
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        assert!(
            !readyz(admin).await,
            "ready again while the database still refuses writes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = commands.place_order(request.clone()).await.unwrap_err();
    assert_eq!(again.code(), Code::Unavailable);

    tokio::task::block_in_place(|| read_only(&cluster, false));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let placed = loop {
        match commands.place_order(request.clone()).await {
            Ok(response) => break response.into_inner(),
            Err(status) if status.code() == Code::Unavailable => {
                assert!(tokio::time::Instant::now() < deadline, "{status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    assert_eq!(placed.version, 1);
    let events: i64 = cluster
        .psql("orders", "SELECT count(*) FROM orders.events")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(events, 2, "the refused attempts wrote nothing");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !readyz(admin).await {
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

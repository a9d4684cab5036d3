//! `order-bench grpc`: PlaceOrder through the real order-grpc binary (release build, default
//! settings) at 16 and 64 concurrent clients, next to two ceilings measured in the same run: a
//! plain prepared INSERT of the same event, and the store's own append statement, raw.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use order_proto::v1 as pb;
use order_proto::v1::order_service_client::OrderServiceClient;
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use uuid::Uuid;

use crate::stats::{Run, Samples};
use crate::store::{Raw, Workload, order_placed_payload, raw};

#[derive(Debug, clap::Args)]
pub struct GrpcArgs {
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Concurrent clients, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64], value_parser = crate::at_least_one)]
    clients: Vec<usize>,
    /// The order-grpc binary (build it with `cargo build --release -p order-grpc`).
    #[arg(long, default_value = "target/release/order-grpc")]
    server: PathBuf,
    /// Only drive an order-grpc already listening here (for profiling it): no ceilings, no
    /// process of ours.
    #[arg(long)]
    external: Option<SocketAddr>,
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(order_testkit::net::free_addr()?)
}

/// A running order-grpc child process; killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Server {
    /// Start order-grpc with its default settings, but for the addresses, the database and a
    /// pool of `pool` connections (one per client, as a deployment sized for its load would).
    pub(crate) async fn start(
        binary: &PathBuf,
        database_url: &str,
        pool: usize,
    ) -> anyhow::Result<Self> {
        Self::start_with(binary, database_url, pool, &[]).await
    }

    /// [`Server::start`] with more environment (e.g. a read replica's URL).
    pub(crate) async fn start_with(
        binary: &PathBuf,
        database_url: &str,
        pool: usize,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let addr = free_port()?;
        let admin = free_port()?;
        let mut child = Command::new(binary)
            .arg("serve")
            // A shell that sourced .dev/env (`scripts/dev up --standby`) names the dev
            // standby here: the server reads from a replica only when `env` says so.
            .env_remove("ORDER_GRPC_READ_DATABASE_URL")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("RUST_LOG")
            .env_remove("LOG_FORMAT")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("DATABASE_URL", database_url)
            .env("ORDER_GRPC_ADDR", addr.to_string())
            .env("ORDER_ADMIN_ADDR", admin.to_string())
            .env("ORDER_DB_POOL_SIZE", pool.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it with cargo build --release -p order-grpc)",
                    binary.display()
                )
            })?;
        let ready = format!("http://{admin}/readyz");
        for _ in 0..100 {
            if order_runtime_probe(&ready).await {
                return Ok(Self { child, addr });
            }
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("order-grpc exited with {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("order-grpc did not become ready")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    /// Peak resident set size (VmHWM) in MiB.
    pub(crate) fn peak_rss_mib(&self) -> Option<f64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

/// Context switches (voluntary + involuntary) of every thread of a process so far.
pub(crate) fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// CPU seconds (user + system) used so far by a process.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

/// The machine's idle and total CPU ticks so far (`/proc/stat`, all cores).
pub(crate) fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: idle and iowait are idle.
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (idle, ticks.iter().take(8).sum())
}

/// The postmaster of the cluster the benchmarks run on (set by [`local_cluster`]).
static POSTMASTER: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Finds the cluster the benchmarks' databases are on and checks it is on this machine, at
/// 127.0.0.1 or a local socket: the benchmarks send traffic nowhere else, and measure the CPU
/// of that cluster's processes only (not of other clusters on the machine).
pub(crate) async fn local_cluster() -> anyhow::Result<()> {
    let admin = order_testkit::pg::admin().await;
    let row = admin
        .query_one(
            "SELECT pg_backend_pid(), host(inet_server_addr()), \
             coalesce(inet_server_addr() << '127.0.0.0/8'::inet OR inet_server_addr() = '::1', true)",
            &[],
        )
        .await?;
    let (backend, address, loopback): (i32, Option<String>, bool) =
        (row.get(0), row.get(1), row.get(2));
    anyhow::ensure!(
        loopback,
        "the benchmarks run against a PostgreSQL on 127.0.0.1 or a local socket only; \
         ORDER_PG_ADMIN_URL reaches {}",
        address.as_deref().unwrap_or("?")
    );
    let postmaster = u32::try_from(backend)
        .ok()
        .and_then(parent_pid)
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "PostgreSQL answers at a loopback address, but its backend {backend} is not a \
                 process of this machine (a container or a forwarded port?): the benchmarks \
                 measure its CPU, so they run beside it"
            )
        })?;
    let _ = POSTMASTER.set(postmaster);
    Ok(())
}

/// The parent of process `pid`.
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds used so far by the benchmarks' PostgreSQL cluster (see [`local_cluster`]).
pub(crate) fn postgres_cpu_seconds() -> f64 {
    POSTMASTER
        .get()
        .map_or(0.0, |&pid| cluster_cpu_seconds(pid))
}

/// CPU seconds used so far by the cluster of `postmaster`: the postmaster, its live children,
/// and the children it already reaped (backends of closed connections).
pub(crate) fn cluster_cpu_seconds(postmaster: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{postmaster}/stat")).unwrap_or_default();
    let reaped = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // cutime and cstime: the reaped children's user and system time.
            [13, 14]
                .iter()
                .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
                .sum::<f64>()
                / 100.0
        })
        .unwrap_or(0.0);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let children: f64 = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| parent_pid(pid) == Some(postmaster))
        .map(cpu_seconds)
        .sum();
    cpu_seconds(postmaster) + reaped + children
}

async fn order_runtime_probe(url: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let Some((authority, path)) = rest.split_once('/') else {
        return false;
    };
    let Ok(mut stream) = tokio::net::TcpStream::connect(authority).await else {
        return false;
    };
    let request = format!("GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response.starts_with("HTTP/1.1 200")
}

fn place(n: u64) -> pb::PlaceOrderRequest {
    place_request(&Uuid::new_v4().to_string(), n)
}

/// A two-line PlaceOrder for `order_id`.
pub fn place_request(order_id: &str, n: u64) -> pb::PlaceOrderRequest {
    let money = |amount_minor| {
        Some(pb::Money {
            currency: "EUR".into(),
            amount_minor,
        })
    };
    pb::PlaceOrderRequest {
        command_id: Uuid::new_v4().to_string(),
        order_id: order_id.to_owned(),
        expected_version: None,
        customer_id: "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001".into(),
        lines: vec![
            pb::OrderLine {
                sku: "SKU-10042-BLUE-M".into(),
                quantity: 2,
                unit_price: money(2499),
            },
            pb::OrderLine {
                sku: format!("SKU-{}", n % 1000),
                quantity: 1,
                unit_price: money(8900),
            },
        ],
        shipping_address: Some(pb::Address {
            recipient: "Ada Lovelace".into(),
            line1: "12 St James's Square".into(),
            line2: "Flat 3".into(),
            city: "London".into(),
            region: "Greater London".into(),
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
        }),
        shipping_method: pb::ShippingMethod::Express as i32,
    }
}

/// The call the clients of [`drive_calls`] make back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// PlaceOrder of a new order (one append).
    Place,
    /// `grpc.health.v1.Health/Check` of the order service: the same HTTP/2 server, gateway and
    /// tonic stack, no database. What any unary call costs on this machine.
    Health,
}

/// `clients` independent clients (one HTTP/2 connection each), back to back PlaceOrder.
pub(crate) async fn drive(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    drive_calls(addr, clients, duration, Call::Place).await
}

/// `clients` independent clients (one HTTP/2 connection each), back to back `call`s.
pub(crate) async fn drive_calls(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    call: Call,
) -> anyhow::Result<Run> {
    let mut channels = Vec::new();
    for _ in 0..clients {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await?,
        );
    }
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = channels
        .into_iter()
        .enumerate()
        .map(|(i, channel)| {
            tokio::spawn(async move {
                let mut client = OrderServiceClient::new(channel.clone());
                let mut health = HealthClient::new(channel);
                let mut samples = Samples::default();
                let mut errors = 0;
                let mut n = i as u64;
                while Instant::now() < deadline {
                    n += clients as u64;
                    let ok = match call {
                        Call::Place => {
                            let request = place(n);
                            let op = Instant::now();
                            client
                                .place_order(request)
                                .await
                                .is_ok()
                                .then(|| op.elapsed())
                        }
                        Call::Health => {
                            let request = HealthCheckRequest {
                                service: "orders.v1.OrderService".into(),
                            };
                            let op = Instant::now();
                            health.check(request).await.is_ok().then(|| op.elapsed())
                        }
                    };
                    match ok {
                        Some(elapsed) => samples.record(elapsed),
                        None => errors += 1,
                    }
                }
                (samples, errors)
            })
        })
        .collect();
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

pub async fn run(args: GrpcArgs) -> anyhow::Result<()> {
    let (event_type, schema_version, payload) = order_placed_payload()?;
    let duration = Duration::from_secs(args.seconds);
    if let Some(addr) = args.external {
        for &clients in &args.clients {
            let mut run = drive(addr, clients, duration).await?;
            println!(
                "{clients} clients: {:.0} cmd/s, p50 {:.2} ms, p99 {:.2} ms, errors {}",
                run.rate(),
                run.samples.quantile_ms(0.5),
                run.samples.quantile_ms(0.99),
                run.errors
            );
        }
        return Ok(());
    }
    println!(
        "order-bench grpc: {}s per run; PlaceOrder (2 lines, one ~500-byte OrderPlaced event) through {} with default settings, pool = clients",
        args.seconds,
        args.server.display()
    );
    println!(
        "ceilings, each on its own fresh database, one connection per writer: INSERT = a plain prepared INSERT of the event; stmt = the store's append statement\n"
    );
    println!(
        "{:>7} | {:>9} {:>9} | {:>10} {:>7} {:>7} {:>7} | {:>6} {:>6} | {:>8} | {:>6}",
        "clients",
        "INSERT/s",
        "stmt/s",
        "grpc cmd/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "/INS",
        "/stmt",
        "peak RSS",
        "errors"
    );
    for &clients in &args.clients {
        let work = Arc::new(Workload {
            event_type: event_type.clone(),
            schema_version,
            payload: payload.clone(),
            events: 1,
        });
        let mut ceilings = Vec::new();
        for kind in [Raw::Insert, Raw::Statement] {
            let db = crate::fresh_database().await;
            raw(
                db.url(),
                kind,
                clients,
                Duration::from_millis(500),
                work.clone(),
            )
            .await?;
            crate::checkpoint().await;
            ceilings.push(raw(db.url(), kind, clients, duration, work.clone()).await?);
        }

        let db = crate::fresh_database().await;
        let server = Server::start(&args.server, db.url(), clients).await?;
        drive(server.addr, clients, Duration::from_millis(500)).await?;
        crate::checkpoint().await;
        let server_pid = server.pid();
        let before = (
            cpu_seconds(server_pid),
            cpu_seconds(std::process::id()),
            postgres_cpu_seconds(),
            context_switches(server_pid),
        );
        let mut run = drive(server.addr, clients, duration).await?;
        let after = (
            cpu_seconds(server_pid),
            cpu_seconds(std::process::id()),
            postgres_cpu_seconds(),
            context_switches(server_pid),
        );
        let commands = run.samples.count().max(1) as f64;
        let per_command = |before: f64, after: f64| (after - before) / commands * 1e6;
        let cpu = format!(
            "CPU per command: server {:.0} us, client {:.0} us, PostgreSQL {:.0} us (INSERT {:.0} us, stmt {:.0} us); server context switches per command {:.2}",
            per_command(before.0, after.0),
            per_command(before.1, after.1),
            per_command(before.2, after.2),
            ceilings[0].pg_micros(),
            ceilings[1].pg_micros(),
            (after.3 - before.3) as f64 / commands,
        );
        // The transport's floor: the same clients and server, Health/Check instead (no
        // database), so that the printout says what any unary call costs here.
        let before = (cpu_seconds(server_pid), cpu_seconds(std::process::id()));
        let mut floor = drive_calls(server.addr, clients, duration, Call::Health).await?;
        let after = (cpu_seconds(server_pid), cpu_seconds(std::process::id()));
        let calls = floor.samples.count().max(1) as f64;
        let floor_line = format!(
            "transport floor (Health/Check, same server and clients, no database): {:.0} calls/s, p50 {:.2} ms, CPU per call: server {:.0} us, client {:.0} us",
            floor.rate(),
            floor.samples.quantile_ms(0.5),
            (after.0 - before.0) / calls * 1e6,
            (after.1 - before.1) / calls * 1e6,
        );
        let rss = server.peak_rss_mib().unwrap_or(f64::NAN);
        drop(server);
        println!(
            "{:>7} | {:>9.0} {:>9.0} | {:>10.0} {:>7.2} {:>7.2} {:>7.2} | {:>6.2} {:>6.2} | {:>5.1} MB | {:>6}",
            clients,
            ceilings[0].rate(),
            ceilings[1].rate(),
            run.rate(),
            run.samples.quantile_ms(0.5),
            run.samples.quantile_ms(0.99),
            run.samples.quantile_ms(0.999),
            run.rate() / ceilings[0].rate(),
            run.rate() / ceilings[1].rate(),
            rss,
            run.errors
        );
        println!("        {cpu}");
        println!("        {floor_line}");
    }
    Ok(())
}

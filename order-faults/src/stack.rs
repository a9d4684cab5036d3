//! The real services as child processes, on a PostgreSQL cluster and an SQS emulator of
//! their own, so that a fault injected here (a restart, a freeze, a kill) touches nothing else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use order_provider_stub::{FaultPlan, PROVIDERS, Stub, StubOptions};
use order_testkit::pg::PrivateCluster;
use order_testkit::replication::{Replication, ServerDir};
use order_testkit::sqs::{PrivateEmulator, QueuePair, fifo_queue_pair_named};
use tokio::process::{Child, Command};

/// Where the service binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub grpc: PathBuf,
    pub projector: PathBuf,
    pub worker: PathBuf,
    /// A team's own projector built on the projector library (order-examples).
    pub sales_projector: PathBuf,
}

impl Binaries {
    /// `order-grpc`, `order-projector`, `order-worker`, `sales-projector` in one folder (e.g.
    /// target/release).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            grpc: dir.join("order-grpc"),
            projector: dir.join("order-projector"),
            worker: dir.join("order-worker"),
            sales_projector: dir.join("sales-projector"),
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(order_testkit::net::free_port()?)
}

/// One service process: the same command, environment and ports every time it is started.
#[derive(Debug)]
pub struct Service {
    pub name: &'static str,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub admin: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no cleanup, no lease released, nothing flushed.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM and wait (at most `within`, then SIGKILL).
    pub async fn terminate(&mut self, within: Duration) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .stderr(Stdio::null())
                    .status();
            }
            if tokio::time::timeout(within, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }

    /// Run the same binary once with other arguments (e.g. `republish`) and the same
    /// environment; returns whether it succeeded.
    pub async fn run_once(&self, args: &[&str]) -> anyhow::Result<bool> {
        let status = Command::new(&self.binary)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await?;
        Ok(status.success())
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Set one environment variable for the next start (e.g. a new `DATABASE_URL`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Wait until the process started with [`Service::start`] exits; whether it succeeded.
    /// After `within` it is killed and counts as failed.
    pub async fn finish(&mut self, within: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        match tokio::time::timeout(within, child.wait()).await {
            Ok(status) => status.is_ok_and(|s| s.success()),
            Err(_) => {
                let _ = child.kill().await;
                false
            }
        }
    }

    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether `/readyz` answers 200 now.
    pub async fn ready(&self) -> bool {
        matches!(http_get(self.admin, "/readyz").await, Some((200, _)))
    }

    /// `GET path` on the admin port (e.g. `/metrics`): the status code and the body.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(self.admin, path)
            .await
            .with_context(|| format!("GET {path} on {} failed", self.name))
    }

    /// The service's log file (JSON lines, stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Wait until ready, or fail after `within` with the end of the service's log.
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.ready().await {
                return Ok(());
            }
            anyhow::ensure!(self.running(), "{} exited:\n{}", self.name, self.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "{} not ready within {within:?}:\n{}",
            self.name,
            self.log_tail()
        )
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// `GET path` on `authority` over plain HTTP/1.1: the status code and the body.
async fn http_get(authority: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect(authority);
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await else {
        return None;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// The HTTP provider stub the worker calls instead of its simulation.
#[derive(Debug, Clone)]
pub struct HttpProviders {
    /// Latency of every provider call, in ms.
    pub latency_ms: u64,
    /// Time from shipment to delivery.
    pub delivery_after: Duration,
    /// Bearer token the stub requires and the worker sends.
    pub token: String,
}

impl Default for HttpProviders {
    fn default() -> Self {
        Self {
            latency_ms: 2,
            delivery_after: Duration::ZERO,
            token: "faults-provider-token-0123456789".to_owned(),
        }
    }
}

/// Settings of a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Share of provider calls failing transiently (worker simulation).
    pub transient_failure_rate: f64,
    /// Receives before SQS dead-letters a message.
    pub max_receive_count: u32,
    /// When set, order-grpc requires this bearer token and the worker sends it.
    pub auth_token: Option<String>,
    /// When set, PostgreSQL requires this password (SCRAM) and every URL carries it.
    pub database_password: Option<String>,
    /// `RUST_LOG` of every service.
    pub log_level: String,
    /// More environment for every service (e.g. `OTEL_*`).
    pub extra_env: Vec<(String, String)>,
    /// With this, the worker calls the HTTP provider stub (in this process) instead of its
    /// simulation.
    pub http_providers: Option<HttpProviders>,
    /// More environment for the worker only.
    pub worker_env: Vec<(String, String)>,
    /// A hot standby of the cluster, streaming as said; every URL then names both servers
    /// (primary first), so that the services follow a failover.
    pub standby: Option<Replication>,
    /// Archive every finished WAL segment of the cluster into a folder of its own
    /// ([`Stack::archive`]; with commit timestamps kept), for base backups and
    /// point-in-time recovery.
    pub archive: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            transient_failure_rate: 0.02,
            max_receive_count: 10,
            auth_token: None,
            database_password: None,
            log_level: "warn".to_owned(),
            extra_env: Vec::new(),
            http_providers: None,
            worker_env: Vec::new(),
            standby: None,
            archive: false,
        }
    }
}

/// PostgreSQL, the SQS emulator and the three services.
#[derive(Debug)]
pub struct Stack {
    pub cluster: PrivateCluster,
    /// The standby of [`StackOptions::standby`].
    pub standby: Option<PrivateCluster>,
    /// The WAL archive of [`StackOptions::archive`].
    pub archive: Option<ServerDir>,
    pub emulator: PrivateEmulator,
    pub queue: QueuePair,
    pub queue_name: String,
    pub max_receive_count: u32,
    pub database_url: String,
    pub grpc_addr: SocketAddr,
    pub grpc: Service,
    pub projector: Service,
    pub worker: Service,
    pub logs: PathBuf,
    /// The HTTP provider stub, when the worker uses it.
    pub stub: Option<Stub>,
}

impl Stack {
    /// Start everything and wait until every service is ready.
    pub async fn start(binaries: &Binaries, options: &StackOptions) -> anyhow::Result<Self> {
        let password = options.database_password.clone();
        let replication = options.standby;
        let archive = if options.archive {
            Some(ServerDir::new().map_err(anyhow::Error::msg)?)
        } else {
            None
        };
        let conf = archive
            .as_ref()
            .map(|a| PrivateCluster::archiving_conf(a.path()))
            .unwrap_or_default();
        let (cluster, standby) = tokio::task::spawn_blocking(move || {
            let mut cluster = PrivateCluster::start_with(&conf)?;
            if let Some(password) = password {
                cluster.require_password(&password)?;
            }
            let standby = match replication {
                Some(replication) => Some(cluster.start_standby(replication)?),
                None => None,
            };
            Ok::<_, String>((cluster, standby))
        })
        .await?
        .map_err(anyhow::Error::msg)?;
        let database_url = match &standby {
            Some(standby) => PrivateCluster::multi_host_url(
                &[&cluster, standby],
                "orders",
                "target_session_attrs=read-write",
            ),
            None => cluster.url("orders"),
        };
        order_store::migrate(&order_store::StoreConfig::new(database_url.clone())).await?;
        let emulator = PrivateEmulator::start().await;
        let queue_name = format!("faults{}", uuid::Uuid::new_v4().simple());
        let queue =
            fifo_queue_pair_named(&emulator.client(), &queue_name, options.max_receive_count).await;
        let logs =
            std::env::temp_dir().join(format!("order-faults-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&logs)?;

        let grpc_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let aws = [
            ("AWS_ENDPOINT_URL_SQS", emulator.endpoint.clone()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "local".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "local".to_owned()),
        ];
        let env = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
            let mut all: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            all.push(("RUST_LOG".into(), options.log_level.clone()));
            all.push(("LOG_FORMAT".into(), "json".into()));
            all.extend(options.extra_env.iter().cloned());
            all
        };
        let service = |name: &'static str,
                       binary: &Path,
                       args: &[&str],
                       env: Vec<(String, String)>|
         -> anyhow::Result<Service> {
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            let mut env = env;
            env.push(("ORDER_ADMIN_ADDR".into(), admin.to_string()));
            Ok(Service {
                name,
                binary: binary.to_path_buf(),
                args: args.iter().map(|a| (*a).to_owned()).collect(),
                env,
                admin,
                log: logs.join(format!("{name}.log")),
                child: None,
            })
        };
        let mut grpc_env = vec![
            ("DATABASE_URL", database_url.clone()),
            ("ORDER_GRPC_ADDR", grpc_addr.to_string()),
            ("ORDER_DB_STATEMENT_TIMEOUT_MS", "3000".into()),
        ];
        if let Some(token) = &options.auth_token {
            grpc_env.push(("ORDER_GRPC_AUTH_TOKENS", format!("faults={token}")));
        }
        let mut grpc = service("order-grpc", &binaries.grpc, &["serve"], env(&grpc_env))?;
        let mut projector_env = vec![
            ("DATABASE_URL", database_url.clone()),
            ("ORDERS_QUEUE_URL", queue.queue_url.clone()),
            ("ORDER_PROJECTOR_INSTANCE_ID", "faults-projector".into()),
            ("ORDER_PROJECTOR_LEASE_TTL_MS", "3000".into()),
            ("ORDER_PROJECTOR_STANDBY_POLL_MS", "200".into()),
            ("ORDER_PROJECTOR_POLL_MS", "200".into()),
            ("ORDER_DB_STATEMENT_TIMEOUT_MS", "3000".into()),
        ];
        projector_env.extend(aws.iter().map(|(k, v)| (*k, v.clone())));
        let mut projector = service(
            "order-projector",
            &binaries.projector,
            &["run"],
            env(&projector_env),
        )?;
        let mut worker_env = vec![
            ("WORKER_MODE", "sqs-consumer".to_owned()),
            ("ORDERS_QUEUE_URL", queue.queue_url.clone()),
            ("ORDERS_DLQ_URL", queue.dlq_url.clone()),
            ("ORDER_GRPC_ENDPOINT", format!("http://{grpc_addr}")),
            ("ORDER_WORKER_WAIT_SECONDS", "1".into()),
            ("ORDER_WORKER_VISIBILITY_SECONDS", "5".into()),
            ("ORDER_WORKER_RETRY_BASE_MS", "300".into()),
            ("ORDER_WORKER_RETRY_MAX_MS", "2000".into()),
            ("ORDER_WORKER_SIM_LATENCY_MS", "2".into()),
            (
                "ORDER_WORKER_SIM_TRANSIENT_FAILURE_RATE",
                options.transient_failure_rate.to_string(),
            ),
        ];
        worker_env.extend(aws.iter().map(|(k, v)| (*k, v.clone())));
        if let Some(token) = &options.auth_token {
            worker_env.push(("ORDER_GRPC_AUTH_TOKEN", token.clone()));
        }
        let stub = match &options.http_providers {
            None => None,
            Some(http) => {
                let stub = Stub::start(
                    "127.0.0.1:0".parse()?,
                    StubOptions {
                        token: Some(http.token.clone()),
                        delivery_after: http.delivery_after,
                        ..StubOptions::default()
                    },
                )
                .await?;
                for provider in PROVIDERS {
                    stub.set_faults(
                        provider,
                        &FaultPlan {
                            latency_ms: http.latency_ms,
                            ..FaultPlan::default()
                        },
                    );
                }
                worker_env.push(("ORDER_WORKER_PROVIDERS", "http".to_owned()));
                for (provider, url, token) in [
                    (
                        "inventory",
                        "ORDER_PROVIDER_INVENTORY_URL",
                        "ORDER_PROVIDER_INVENTORY_TOKEN",
                    ),
                    (
                        "payment",
                        "ORDER_PROVIDER_PAYMENT_URL",
                        "ORDER_PROVIDER_PAYMENT_TOKEN",
                    ),
                    (
                        "shipping",
                        "ORDER_PROVIDER_SHIPPING_URL",
                        "ORDER_PROVIDER_SHIPPING_TOKEN",
                    ),
                ] {
                    worker_env.push((url, stub.base_url(provider)));
                    worker_env.push((token, http.token.clone()));
                }
                worker_env.push(("ORDER_WORKER_DELIVERY_POLL_MS", "200".to_owned()));
                Some(stub)
            }
        };
        let mut worker_env = env(&worker_env);
        worker_env.extend(options.worker_env.iter().cloned());
        let mut worker = service("order-worker", &binaries.worker, &["run"], worker_env)?;

        for service in [&mut grpc, &mut projector, &mut worker] {
            service.start()?;
            service.wait_ready(Duration::from_secs(30)).await?;
        }
        Ok(Self {
            cluster,
            standby,
            archive,
            emulator,
            queue,
            queue_name,
            max_receive_count: options.max_receive_count,
            database_url,
            grpc_addr,
            grpc,
            projector,
            worker,
            logs,
            stub,
        })
    }

    /// Another process on this stack's database, not started: `binary args` with `env` (and
    /// the database URL, an admin port, the stack's log settings); its log goes beside the
    /// others'.
    pub fn service(
        &self,
        name: &'static str,
        binary: &Path,
        args: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Service> {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let mut all: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("ORDER_ADMIN_ADDR".into(), admin.to_string()),
            ("RUST_LOG".into(), "warn".into()),
            ("LOG_FORMAT".into(), "json".into()),
        ];
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        Ok(Service {
            name,
            binary: binary.to_path_buf(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: all,
            admin,
            log: self.logs.join(format!("{name}.log")),
            child: None,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// A superuser connection to the stack's database.
    pub async fn db(&self) -> anyhow::Result<order_store::tokio_postgres::Client> {
        order_testkit::pg::try_connect(&self.database_url)
            .await
            .map_err(anyhow::Error::msg)
    }

    /// Kill the SQS emulator and start an empty one on the same port with the same queues
    /// (fauxqs keeps messages in memory: whatever it held is lost, as with a lost queue).
    pub async fn restart_emulator(&mut self) {
        self.emulator.restart().await;
        self.queue = fifo_queue_pair_named(
            &self.emulator.client(),
            &self.queue_name,
            self.max_receive_count,
        )
        .await;
    }

    /// From the next start on, the services use the database `orders` of `cluster`; returns
    /// the cluster used so far (kept, e.g. for a comparison).
    pub fn repoint_database(&mut self, cluster: PrivateCluster) -> PrivateCluster {
        self.database_url = cluster.url("orders");
        for service in [&mut self.grpc, &mut self.projector] {
            service.set_env("DATABASE_URL", &self.database_url);
        }
        std::mem::replace(&mut self.cluster, cluster)
    }

    /// From the next start on, the projector and the worker use the FIFO queue pair `name`
    /// (created empty when new).
    pub async fn repoint_queue(&mut self, name: &str) {
        self.queue =
            fifo_queue_pair_named(&self.emulator.client(), name, self.max_receive_count).await;
        self.queue_name = name.to_owned();
        for service in [&mut self.projector, &mut self.worker] {
            service.set_env("ORDERS_QUEUE_URL", &self.queue.queue_url);
        }
        self.worker.set_env("ORDERS_DLQ_URL", &self.queue.dlq_url);
    }

    /// Stop every service (gracefully) before the stack is dropped.
    pub async fn stop(&mut self) {
        for service in [&mut self.worker, &mut self.projector, &mut self.grpc] {
            service.terminate(Duration::from_secs(10)).await;
        }
        if let Some(stub) = self.stub.take() {
            stub.stop().await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // A failing test keeps the services' logs for the post-mortem.
        if std::thread::panicking() {
            eprintln!("service logs kept in {}", self.logs.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.logs);
        }
    }
}

//! Connecting: pool settings, server-side timeouts, TLS, and which server of a multi-host URL
//! to use.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Error;

/// Which server of the URL a connection may be opened to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    /// Only a server that takes writes: tokio-postgres's `target_session_attrs=read-write`,
    /// which tries the URL's hosts in order and skips a read-only one (a standby). With
    /// `postgres://u:p@a:5432,b:5432/db`, the connection goes to whichever of `a` and `b` is
    /// the primary now. The default: the store writes.
    Primary,
    /// Any server that answers, a read replica included (`target_session_attrs=any`).
    Any,
}

/// How the store connects. Defaults suit one service instance on a small database.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/database?sslmode=...`; several hosts for a primary
    /// and its standbys: `postgres://user:password@a:5432,b:5432/database` (or the key-value
    /// form `host=a,b port=5432,5432 ...`).
    pub database_url: String,
    /// Which server the connections go to. A `target_session_attrs` in the URL wins.
    pub server: ServerRole,
    /// Most connections held at once.
    pub pool_size: usize,
    /// How long a caller waits for a free connection before the store reports the database
    /// unavailable (fail fast instead of queueing without bound); at most half of
    /// [`StoreConfig::call_timeout`] (a longer setting is cut to that), so that an exhausted
    /// pool is never taken for a server that stopped answering. It also bounds how long an
    /// append waits for its group-commit writer to take it; an append not taken in time is
    /// withdrawn, never written, and answered unavailable.
    pub pool_wait_timeout: Duration,
    /// How long opening a connection may take (each host of the URL). It is no extra time for
    /// a call: opening the connection a call waits for counts against the call's own limit
    /// ([`StoreConfig::answer_timeout`]).
    pub connect_timeout: Duration,
    /// Server-side limit for one statement (`statement_timeout`); the client-side limit of a
    /// call is 2 s more ([`StoreConfig::call_timeout`]).
    pub statement_timeout: Duration,
    /// Server-side limit for a transaction left idle (`idle_in_transaction_session_timeout`).
    pub idle_in_transaction_timeout: Duration,
    /// Extra CA certificates (PEM) to trust for TLS, e.g. the RDS bundle.
    pub ca_file: Option<PathBuf>,
    /// Shown in `pg_stat_activity`.
    pub application_name: String,
    /// Group commit: the most appends written with one statement (1 = no group commit).
    pub group_commit_batch: usize,
    /// Group commit: how many batches may be written at once. One by default: measured on
    /// 2 cores, a second writer halves each batch, and PostgreSQL's cost per statement then
    /// nearly doubles its CPU per append (96 against 63 µs) for no more commits in flight
    /// than the server flushes together anyway (docs/benchmarks.md, "Group-commit writers").
    pub group_commit_writers: usize,
    /// Group commit: run each writer on an OS thread of its own (with its own connection, and
    /// the first writer's also sending the NOTIFYs on a second one), instead of as a task of
    /// the caller's runtime. Off by default in the library, on in the services
    /// (`ORDER_DB_GROUP_COMMIT_THREAD`). Measured on 2 cores (docs/benchmarks.md, "A writer
    /// thread of its own"): a server whose runtime is busy with many network connections
    /// answers PlaceOrder 8-10 % faster with it (the writer no longer waits behind them for a
    /// turn), while callers in the same process that return within microseconds (an
    /// in-process loop on a few hot streams) lose up to a quarter, because the writer then
    /// takes the next batch before they have queued into it. The connections come on top of
    /// [`StoreConfig::pool_size`].
    pub group_commit_thread: bool,
    /// Group commit, for writers that run as tasks of the callers' runtime (not
    /// [`StoreConfig::group_commit_thread`]): once a batch has taken the appends waiting, it
    /// keeps gathering the callers of the batch just answered while they queue their next
    /// appends, until they have all arrived, none came for this long, or 300 µs passed. A
    /// closed loop of callers is then written as one batch, not as two halves taking turns
    /// (each paying the statement's fixed cost and a WAL flush). A lone caller never waits.
    /// 20 µs by default; zero turns it off. Measured on 2 cores (docs/benchmarks.md,
    /// "Gathering the callers just answered"): 16 callers in one process append about 45 %
    /// faster with it, 64 about 15 %. A writer on a thread of its own does not gather: its
    /// callers come back over the network, and waiting for them only spins that thread.
    pub group_commit_gather: Duration,
    /// How the command handler names the events of a command ([`CommandEventIds`]).
    pub command_event_ids: CommandEventIds,
}

/// How the command handler names the events it appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum CommandEventIds {
    /// The time of the append and bits hashed from the command id and the event's place in it
    /// ([`order_domain::event_id::command_event_id`]): the same command applied again after a
    /// restore gives events of the same identity, and the worker's provider keys with them.
    #[default]
    Identity,
    /// A new UUID v7 for every event, as before command event ids (2026-12-06): for a deploy
    /// during which workers of an earlier release still run, which key their provider calls on
    /// the whole event id (docs/operations.md, "Upgrading").
    Random,
}

impl StoreConfig {
    /// Defaults for everything but the URL (a primary): a pool of 16 connections, 500 ms pool
    /// wait, 5 s connect and statement timeouts, group commit of up to 64 appends by one writer (a
    /// task of the caller's runtime).
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            server: ServerRole::Primary,
            pool_size: 16,
            pool_wait_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            idle_in_transaction_timeout: Duration::from_secs(10),
            ca_file: None,
            application_name: "order-ledger".to_owned(),
            group_commit_batch: 64,
            group_commit_writers: 1,
            group_commit_thread: false,
            group_commit_gather: Duration::from_micros(20),
            command_event_ids: CommandEventIds::Identity,
        }
    }

    /// The wait for a free connection: `pool_wait_timeout`, at most half the call's time.
    pub fn pool_wait(&self) -> Duration {
        self.pool_wait_timeout.min(self.call_timeout() / 2)
    }

    /// The client-side limit for one database call: the server's statement timeout plus a
    /// margin (2 s; 300 s without a statement timeout). A server that stops answering
    /// altogether (frozen, partitioned) cannot cancel anything itself; this bound makes sure
    /// nothing waits forever. A call counts it from when it got its connection, at most the
    /// pool wait after it began: see [`StoreConfig::answer_timeout`].
    pub fn call_timeout(&self) -> Duration {
        if self.statement_timeout.is_zero() {
            Duration::from_secs(300)
        } else {
            self.statement_timeout + Duration::from_secs(2)
        }
    }

    /// The longest any call, an append included, waits for the database, counted from when it
    /// begins waiting: the pool wait ([`StoreConfig::pool_wait_timeout`], at most half the
    /// call's time) plus [`StoreConfig::call_timeout`] (the statement timeout + 2 s): 7.25 s
    /// with the services' defaults. Everything counts: the wait for a group-commit writer and
    /// for a pooled connection, opening one (however many hosts the URL names), the
    /// statement. An append out of time before its statement went out is
    /// [`Error::Unavailable`] (nothing was written); after, [`Error::Timeout`] (it may have
    /// been written: a retry with its command id tells). An append's statement goes out only
    /// while the server's statement timeout and half a second still fit before this limit,
    /// so that a server that is slow, not gone, refuses it itself (a definite answer) in time;
    /// one that could not go out by then (no connection) is answered unavailable at that
    /// moment (1.75 s with the services' defaults), and one that went out has at most
    /// [`StoreConfig::call_timeout`].
    pub fn answer_timeout(&self) -> Duration {
        self.pool_wait() + self.call_timeout()
    }

    /// The parsed connection settings with timeouts and application name applied.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, Error> {
        let mut config: tokio_postgres::Config = rustls_sslmode(&self.database_url)
            .parse()
            .map_err(|e: tokio_postgres::Error| {
                Error::InvalidInput(format!("invalid database URL: {e}"))
            })?;
        let (hosts, ports) = (config.get_hosts().len(), config.get_ports().len());
        if hosts == 0 && config.get_hostaddrs().is_empty() {
            return Err(Error::InvalidInput(
                "invalid database URL: it names no host".into(),
            ));
        }
        if ports > 1 && ports != hosts {
            return Err(Error::InvalidInput(format!(
                "invalid database URL: {hosts} hosts but {ports} ports (give one port, or one per host)"
            )));
        }
        config.application_name(&self.application_name);
        config.connect_timeout(self.connect_timeout);
        if self.server == ServerRole::Primary && !self.database_url.contains("target_session_attrs")
        {
            config.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
        }
        // A server that vanished without closing its connections (a crashed host, a network
        // partition) is noticed by the kernel: an idle connection after 10 + 3 x 2 s of
        // unanswered keepalives, one with unacknowledged data after TCP_USER_TIMEOUT. The pool
        // then drops it at its next checkout instead of handing out a dead connection.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.keepalives_interval(Duration::from_secs(2));
        config.keepalives_retries(3);
        config.tcp_user_timeout(self.connect_timeout.max(Duration::from_secs(10)));
        let mut options = config.get_options().unwrap_or_default().to_owned();
        for (name, value) in [
            ("statement_timeout", self.statement_timeout),
            (
                "idle_in_transaction_session_timeout",
                self.idle_in_transaction_timeout,
            ),
        ] {
            options.push_str(&format!(" -c {name}={}", value.as_millis()));
        }
        // Every statement the store prepares is a lookup or insert keyed by an index, whose best
        // plan does not depend on the values: plan once per connection (planning each
        // execution anew costs more than the statement), and never by sequential scan. A
        // planner reading the statistics of a new, empty or small table would pick one, and
        // the plan would stay while the table grows (measured: five times the CPU per append
        // after a minute of load).
        options.push_str(" -c plan_cache_mode=force_generic_plan -c enable_seqscan=off");
        // No JIT compilation. PostgreSQL compiles any query whose estimated cost passes
        // `jit_above_cost`, and every page a projection or a replay reads of a log of tens of
        // millions of events passes it: measured on a 33.6-million-event log, four fifths of
        // the database's CPU during a read-model replay went to LLVM, compiling each page's
        // query anew (a custom plan per page). Our statements are index lookups and page reads
        // that run for milliseconds; compiling them costs more than it can ever save.
        options.push_str(" -c jit=off");
        // No NOTICEs ("table ... does not exist, skipping" of every DROP ... IF EXISTS a replay
        // runs), which the client would log as INFO lines of no use to anyone; WARNINGs and
        // errors still come.
        options.push_str(" -c client_min_messages=warning");
        config.options(options.trim());
        Ok(config)
    }

    /// A TLS connector trusting the web PKI roots plus `ca_file`. Plain connections are still
    /// made when the URL's `sslmode` allows them (`disable`, `prefer` on a server without TLS).
    pub fn tls(&self) -> Result<MakeRustlsConnect, Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::InvalidInput(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| {
                    Error::InvalidInput(format!("invalid certificate in {}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    Error::InvalidInput(format!("unusable certificate in {}: {e}", path.display()))
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InvalidInput(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// A connection pool. Connections are opened lazily; nothing here touches the network.
    /// A connection opened before its server turned read-only, began shutting down or stopped
    /// answering is replaced at its next checkout (see the `recycle` module).
    pub fn pool(&self) -> Result<Pool, Error> {
        self.pool_fenced(Some(crate::connect::timelines_for(&self.pg_config()?)))
    }

    /// [`StoreConfig::pool`], its connections for writing fenced by `timelines` (shared by the
    /// pools of one store: see the `connect` module).
    pub(crate) fn pool_fenced(
        &self,
        timelines: Option<Arc<crate::connect::Timelines>>,
    ) -> Result<Pool, Error> {
        let pg_config = self.pg_config()?;
        let whole = crate::connect::whole_time(&pg_config, self.connect_timeout);
        let writes = crate::connect::for_writing(&pg_config);
        let check = timelines
            .as_ref()
            .filter(|_| writes)
            .map(|timelines| crate::connect::timeline_hook(timelines.clone()));
        let connector = match timelines {
            Some(timelines) => self.connector()?.fenced(timelines),
            None => self.connector()?,
        };
        let manager = Manager::from_connect(
            pg_config,
            connector,
            ManagerConfig {
                // No "ping" before every checkout: a broken connection shows up as an error
                // on use and is then discarded.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let builder = Pool::builder(manager);
        let builder = match check {
            Some(check) => builder.post_create(check),
            None => builder,
        };
        builder
            .max_size(self.pool_size.max(1))
            .wait_timeout(Some(self.pool_wait()))
            // Every host's time in turn (the connector bounds each) and, for several hosts,
            // one look at every host first (one at most: see the `connect` module), with a
            // margin so that the connector's own answer, which says why, comes first.
            .create_timeout(Some(whole + Duration::from_secs(1)))
            .recycle_timeout(Some(self.connect_timeout))
            .pre_recycle(crate::recycle::pre_recycle_hook())
            .post_recycle(crate::recycle::acquired_hook())
            .post_create(crate::recycle::acquired_hook())
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::InvalidInput(format!("connection pool: {e}")))
    }

    /// [`StoreConfig::tls`] for async code: a CA file is read on the blocking pool, not on a
    /// runtime thread.
    pub(crate) async fn tls_off_thread(&self) -> Result<MakeRustlsConnect, Error> {
        if self.ca_file.is_none() {
            return self.tls();
        }
        let config = self.clone();
        tokio::task::spawn_blocking(move || config.tls())
            .await
            .map_err(|e| Error::InvalidInput(format!("reading the CA file: {e}")))?
    }

    /// How new connections are made: host by host, each host given `connect_timeout` for
    /// everything (TCP, TLS, the startup handshake and, for a primary, the check that it takes
    /// writes), so that a host that takes the connection and never answers is passed over for
    /// the next one of a multi-host URL. For pools of your own
    /// (`deadpool_postgres::Manager::from_connect`).
    pub fn connector(&self) -> Result<crate::HostByHost<MakeRustlsConnect>, Error> {
        Ok(crate::HostByHost::new(self.tls()?, self.connect_timeout))
    }

    /// The longest a new connection can take: `connect_timeout` for each host of the URL in
    /// turn and, for a URL of several hosts, once more for the look at every host at once a
    /// connection for writing may wait for first (a process's first, and the first after each
    /// sign of a failover: see the `connect` module).
    pub fn connect_time(&self) -> Duration {
        match self.pg_config() {
            Ok(config) => crate::connect::whole_time(&config, self.connect_timeout),
            Err(_) => self.connect_timeout,
        }
    }

    /// One connection outside the pool (migrations, LISTEN, readiness), made host by host
    /// (see [`StoreConfig::connector`]).
    pub async fn connect(&self) -> Result<tokio_postgres::Client, Error> {
        let writes = self
            .pg_config()
            .is_ok_and(|config| crate::connect::for_writing(&config));
        let (client, connection) = self.connect_with_connection().await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "database connection ended");
                if writes {
                    crate::connect::connection_ended(&error);
                }
            }
        });
        Ok(client)
    }

    /// One connection outside the pool with its connection half, to drive yourself (LISTEN
    /// reads its notifications from it).
    pub(crate) async fn connect_with_connection(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<
                tokio_postgres::Socket,
                <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
                    tokio_postgres::Socket,
                >>::Stream,
            >,
        ),
        Error,
    > {
        let config = self.pg_config()?;
        let fence = crate::connect::timelines_for(&config);
        crate::connect::host_by_host(
            &config,
            self.tls_off_thread().await?,
            self.connect_timeout,
            Some(&fence),
        )
        .await
        .map_err(Error::at_login)
    }
}

/// libpq's `sslmode=verify-full` (and `verify-ca`) as tokio-postgres understands it. TLS here is
/// rustls, which always checks the server's certificate chain against the trusted roots (web
/// PKI plus `ca_file`) and its host name, so `require` gives exactly verify-full; tokio-postgres
/// itself knows only disable / prefer / require and would refuse the URL.
fn rustls_sslmode(url: &str) -> std::borrow::Cow<'_, str> {
    if url.contains("sslmode=verify-full") || url.contains("sslmode=verify-ca") {
        std::borrow::Cow::Owned(
            url.replace("sslmode=verify-full", "sslmode=require")
                .replace("sslmode=verify-ca", "sslmode=require"),
        )
    } else {
        std::borrow::Cow::Borrowed(url)
    }
}

/// The database settings as command-line arguments with environment fallbacks.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL (postgres://user:password@host:port/database?sslmode=...).
    /// Several hosts (postgres://user:password@a:5432,b:5432/database) for a primary and its
    /// standbys: connections go to whichever takes writes (target_session_attrs=read-write
    /// unless the URL says otherwise).
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Most database connections held at once.
    #[arg(long = "db-pool-size", env = "ORDER_DB_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub pool_size: u16,
    /// Milliseconds a request waits for a free connection (or for its group-commit writer)
    /// before the service answers UNAVAILABLE; nothing was written then. The wait for a
    /// connection is at most half of (statement timeout + 2 s).
    #[arg(
        long = "db-pool-wait-ms",
        env = "ORDER_DB_POOL_WAIT_MS",
        default_value_t = 250,
        value_parser = clap::value_parser!(u64).range(1..=600_000)
    )]
    pub pool_wait_ms: u64,
    /// Milliseconds opening a connection may take.
    #[arg(
        long = "db-connect-timeout-ms",
        env = "ORDER_DB_CONNECT_TIMEOUT_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..=600_000)
    )]
    pub connect_timeout_ms: u64,
    /// Server-side statement_timeout in milliseconds (0 = none). A database call, a command's
    /// append included, is answered within this + 2 s + the pool wait of when it began
    /// waiting for the database, however long the server does not answer.
    #[arg(
        long = "db-statement-timeout-ms",
        env = "ORDER_DB_STATEMENT_TIMEOUT_MS",
        default_value_t = 5000,
        // PostgreSQL's own bound for the setting.
        value_parser = clap::value_parser!(u64).range(0..=2_147_483_647)
    )]
    pub statement_timeout_ms: u64,
    /// Server-side idle_in_transaction_session_timeout in milliseconds (0 = none).
    #[arg(
        long = "db-idle-in-transaction-timeout-ms",
        env = "ORDER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
        default_value_t = 10000,
        value_parser = clap::value_parser!(u64).range(0..=2_147_483_647)
    )]
    pub idle_in_transaction_timeout_ms: u64,
    /// Extra CA certificates (PEM file) to trust for TLS to the database, e.g. the RDS bundle.
    #[arg(long = "db-ca-file", env = "ORDER_DB_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Group commit: the most concurrent appends written with one statement (1 = off).
    #[arg(long = "db-group-commit-batch", env = "ORDER_DB_GROUP_COMMIT_BATCH", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub group_commit_batch: u16,
    /// Group commit: how many batches may be written at once.
    #[arg(long = "db-group-commit-writers", env = "ORDER_DB_GROUP_COMMIT_WRITERS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub group_commit_writers: u16,
    /// Group commit: each writer on an OS thread of its own, with its own connection (one
    /// more for the NOTIFYs), on top of the pool; `false` runs them as tasks of the runtime.
    #[arg(long = "db-group-commit-thread", env = "ORDER_DB_GROUP_COMMIT_THREAD",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "true", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub group_commit_thread: bool,
    /// Group commit, for writers that run as tasks: how many microseconds without a new append
    /// end the gathering of the callers just answered (0 = no gathering).
    #[arg(long = "db-group-commit-gather-us", env = "ORDER_DB_GROUP_COMMIT_GATHER_US",
          default_value_t = 20, value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub group_commit_gather_us: u16,
}

#[cfg(feature = "cli")]
impl DatabaseArgs {
    /// The store configuration these arguments describe.
    pub fn store_config(&self, application_name: &str) -> StoreConfig {
        StoreConfig {
            database_url: self.database_url.clone(),
            server: ServerRole::Primary,
            pool_size: usize::from(self.pool_size),
            pool_wait_timeout: Duration::from_millis(self.pool_wait_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            statement_timeout: Duration::from_millis(self.statement_timeout_ms),
            idle_in_transaction_timeout: Duration::from_millis(self.idle_in_transaction_timeout_ms),
            ca_file: self.ca_file.clone(),
            application_name: application_name.to_owned(),
            group_commit_batch: usize::from(self.group_commit_batch),
            group_commit_writers: usize::from(self.group_commit_writers),
            group_commit_thread: self.group_commit_thread,
            group_commit_gather: Duration::from_micros(u64::from(self.group_commit_gather_us)),
            command_event_ids: CommandEventIds::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "cli")]
    #[test]
    fn the_services_run_group_commit_on_a_thread_unless_told_not_to() {
        use clap::Parser;
        #[derive(Parser)]
        struct Args {
            #[command(flatten)]
            database: DatabaseArgs,
        }
        let parse = |extra: &[&str]| {
            let mut argv = vec!["x", "--database-url", "postgres://u:p@h/d"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).map(|a| a.database.store_config("x").group_commit_thread)
        };
        assert!(!StoreConfig::new("postgres://u:p@h/d").group_commit_thread);
        assert_eq!(parse(&[]).ok(), Some(true));
        // The forms every boolean setting takes (README): the flag, `=true|false`, yes/no, 1/0.
        assert_eq!(parse(&["--db-group-commit-thread"]).ok(), Some(true));
        assert_eq!(parse(&["--db-group-commit-thread=false"]).ok(), Some(false));
        assert_eq!(parse(&["--db-group-commit-thread=no"]).ok(), Some(false));
        assert_eq!(parse(&["--db-group-commit-thread=1"]).ok(), Some(true));
        assert!(parse(&["--db-group-commit-thread=maybe"]).is_err());
        // A value after a space is not the flag's: refused, not taken for true.
        assert!(parse(&["--db-group-commit-thread", "false"]).is_err());
    }
    use tokio_postgres::config::{Host, TargetSessionAttrs};

    #[test]
    fn multi_host_urls_name_every_server_and_a_writer_asks_for_the_primary() {
        for url in [
            "postgres://u:p@db-a.example.com:5432,db-b.example.com:5433/orders",
            "host=db-a.example.com,db-b.example.com port=5432,5433 user=u password=p dbname=orders",
        ] {
            let config = StoreConfig::new(url).pg_config().unwrap();
            assert_eq!(
                config.get_hosts(),
                [
                    Host::Tcp("db-a.example.com".into()),
                    Host::Tcp("db-b.example.com".into())
                ],
                "{url}"
            );
            assert_eq!(config.get_ports(), [5432, 5433], "{url}");
            assert_eq!(
                config.get_target_session_attrs(),
                TargetSessionAttrs::ReadWrite,
                "{url}"
            );
        }
    }

    #[test]
    fn a_replica_pool_takes_any_server_and_the_url_has_the_last_word() {
        let mut replica = StoreConfig::new("postgres://u:p@replica.example.com/orders");
        replica.server = ServerRole::Any;
        assert_eq!(
            replica.pg_config().unwrap().get_target_session_attrs(),
            TargetSessionAttrs::Any
        );
        let explicit = StoreConfig::new("postgres://u:p@a,b/orders?target_session_attrs=any");
        assert_eq!(
            explicit.pg_config().unwrap().get_target_session_attrs(),
            TargetSessionAttrs::Any
        );
        let mut read_only =
            StoreConfig::new("postgres://u:p@a,b/orders?target_session_attrs=read-only");
        read_only.server = ServerRole::Primary;
        assert_eq!(
            read_only.pg_config().unwrap().get_target_session_attrs(),
            TargetSessionAttrs::ReadOnly
        );
    }

    #[test]
    fn a_bad_multi_host_url_is_an_invalid_input_naming_the_url() {
        for url in [
            "postgres://u:p@a:5432,b:5432,c:5432/orders?target_session_attrs=sometimes",
            "host=a,b port=1,2,3 user=u",
        ] {
            // tokio-postgres would find the port count wrong only when connecting: the
            // settings must be refused before anything starts.
            match StoreConfig::new(url).pg_config() {
                Err(Error::InvalidInput(message)) => {
                    assert!(message.starts_with("invalid database URL"), "{message}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn verify_full_urls_are_accepted_and_mean_tls_required() {
        for mode in ["verify-full", "verify-ca", "require"] {
            let config = StoreConfig::new(format!(
                "postgres://u:p@db.example.com:5432/orders?sslmode={mode}"
            ))
            .pg_config()
            .unwrap();
            assert_eq!(
                config.get_ssl_mode(),
                tokio_postgres::config::SslMode::Require,
                "{mode}"
            );
        }
        let plain = StoreConfig::new("postgres://u:p@localhost/orders")
            .pg_config()
            .unwrap();
        assert_eq!(
            plain.get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
    }
}

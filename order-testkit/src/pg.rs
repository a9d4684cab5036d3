//! A fresh PostgreSQL database per test, cloned from a migrated template.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::{START_COMMAND, settings};

/// The URL of `database` on the server of `admin_url` (which names some other database).
pub fn url_for_database(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A PostgreSQL error with the server's own message (tokio-postgres prints only "db error").
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// Connect to `url`, or explain which command starts the server.
pub async fn try_connect(url: &str) -> Result<Client, String> {
    let connect = tokio_postgres::connect(url, NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| unreachable_message("the connection attempt timed out"))?
        .map_err(|e| unreachable_message(&describe(&e)))?;
    tokio::spawn(async move {
        // The connection ends when the client is dropped; errors then are not interesting.
        let _ = connection.await;
    });
    Ok(client)
}

fn unreachable_message(cause: &str) -> String {
    format!(
        "PostgreSQL is not reachable for the tests ({cause}): start it with `{START_COMMAND}` \
         (or run every check with `scripts/check`)"
    )
}

/// A superuser connection to the `postgres` database.
pub async fn admin() -> Client {
    match try_connect(&settings().pg_admin_url).await {
        Ok(client) => client,
        Err(message) => panic!("{message}"),
    }
}

/// A database that exists for one test and is dropped with it (kept when the test fails, so
/// that it can be inspected; its name is printed).
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// An empty database.
    pub async fn empty() -> Self {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        create_database(&admin().await, &name, None).await;
        Self::named(name)
    }

    /// A database cloned from the template `key`, which `init` builds (once per key, across
    /// every test process) from an empty database. Put a hash of whatever `init` depends on
    /// (e.g. the migrations) into `key`, so that a change builds a new template.
    pub async fn from_template<F, Fut, E>(key: &str, init: F) -> Self
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let template = format!("tmpl_{key}");
        assert!(template.len() <= 63, "template key too long: {key}");
        let admin = admin().await;
        ensure_template(&admin, &template, init).await;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        create_database(&admin, &name, Some(&template)).await;
        Self::named(name)
    }

    /// A database with every migration of order-store applied (cloned from a template keyed
    /// by the migrations' fingerprint).
    #[cfg(feature = "store")]
    pub async fn migrated() -> Self {
        let key = format!("store_{}", order_store::migrate::fingerprint());
        Self::from_template(&key, |url| async move {
            order_store::migrate(&order_store::StoreConfig::new(url))
                .await
                .map(|_| ())
        })
        .await
    }

    fn named(name: String) -> Self {
        let url = url_for_database(&settings().pg_admin_url, &name);
        Self { name, url }
    }

    /// The database's name (printed when a failed test keeps it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A superuser URL for this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A superuser connection to this database.
    pub async fn connect(&self) -> Client {
        match try_connect(&self.url).await {
            Ok(client) => client,
            Err(message) => panic!("{message}"),
        }
    }

    /// Transactions committed in this database so far, as the statistics show them once
    /// every backend that worked in it has reported: to count what a piece of code asked the
    /// database (each autocommitted statement is one transaction). A backend reports its
    /// counts at most once a second while it works, and 10 s after it went idle; ending it
    /// reports them at once, so this ends every other connection to the database first. An
    /// application's pool replaces a closed connection at its next checkout.
    pub async fn commits(&self, admin: &Client) -> i64 {
        let terminated = admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await;
        if let Err(error) = terminated {
            panic!("ending the connections to {}: {error}", self.name);
        }
        let gone = std::time::Instant::now();
        loop {
            let left: i64 = match admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[&self.name],
                )
                .await
            {
                Ok(row) => row.get(0),
                Err(error) => panic!("reading pg_stat_activity: {error}"),
            };
            if left == 0 {
                break;
            }
            assert!(
                gone.elapsed() < Duration::from_secs(10),
                "connections to {} are still there 10 s after they were ended",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let commits = async {
            admin
                .batch_execute("SELECT pg_stat_clear_snapshot()")
                .await?;
            admin
                .query_one(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
                    &[&self.name],
                )
                .await
        };
        match commits.await {
            Ok(row) => row.get(0),
            Err(error) => panic!("reading pg_stat_database: {error}"),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the database of the failed test: {}", self.name);
            return;
        }
        let name = self.name.clone();
        // Drop may run inside or outside a runtime; a thread with its own runtime works in both.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let admin = try_connect(&settings().pg_admin_url).await?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .map_err(|e| describe(&e))
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

async fn create_database(admin: &Client, name: &str, template: Option<&str>) {
    let statement = match template {
        Some(template) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""),
        None => format!("CREATE DATABASE \"{name}\""),
    };
    // A template that another session touches at this instant makes CREATE DATABASE fail
    // with "being accessed by other users"; that passes within moments.
    let mut attempt = 0;
    loop {
        match admin.batch_execute(&statement).await {
            Ok(()) => return,
            Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{statement}: {}", describe(&e)),
        }
    }
}

async fn ensure_template<F, Fut, E>(admin: &Client, template: &str, init: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    if template_exists(admin, template).await.unwrap_or(false) {
        return;
    }
    // One builder across all test processes; the others wait and then find the template.
    admin
        .batch_execute("SELECT pg_advisory_lock(7403202611210001)")
        .await
        .unwrap_or_else(|e| panic!("taking the template lock: {}", describe(&e)));
    let result: Result<(), String> = async {
        if template_exists(admin, template).await.map_err(|e| describe(&e))? {
            return Ok(());
        }
        let building = format!("{template}_building");
        // Separate statements: DROP/CREATE DATABASE refuse to run inside a transaction block.
        for statement in [
            format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{building}\""),
        ] {
            admin.batch_execute(&statement).await.map_err(|e| describe(&e))?;
        }
        init(url_for_database(&settings().pg_admin_url, &building))
            .await
            .map_err(|e| format!("building template {template}: {e}"))?;
        for statement in [
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{building}'"
            ),
            format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\""),
        ] {
            admin.batch_execute(&statement).await.map_err(|e| describe(&e))?;
        }
        Ok(())
    }
    .await;
    let _ = admin
        .batch_execute("SELECT pg_advisory_unlock(7403202611210001)")
        .await;
    if let Err(message) = result {
        panic!("{message}");
    }
}

async fn template_exists(admin: &Client, template: &str) -> Result<bool, tokio_postgres::Error> {
    let row = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await?;
    Ok(row.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_server_and_options() {
        assert_eq!(
            url_for_database("postgres://u:p@127.0.0.1:5432/postgres", "x"),
            "postgres://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_for_database("postgres://u:p@h/postgres?sslmode=require", "x"),
            "postgres://u:p@h/x?sslmode=require"
        );
    }

    #[tokio::test]
    async fn an_absent_server_fails_with_the_command_that_starts_it() {
        // Port 1 on loopback: nothing listens there.
        let error = try_connect("postgres://postgres:x@127.0.0.1:1/postgres")
            .await
            .err()
            .unwrap_or_default();
        assert!(error.contains("PostgreSQL is not reachable"), "{error}");
        assert!(error.contains(START_COMMAND), "{error}");
    }
}

/// A PostgreSQL cluster of its own (initdb in a temporary folder, its own port), for tests
/// that restart, kill or freeze the database without disturbing anything else. Stopped and
/// deleted on drop.
#[derive(Debug)]
pub struct PrivateCluster {
    pub(crate) dir: std::path::PathBuf,
    pub(crate) port: u16,
    pub(crate) bin: std::path::PathBuf,
    /// The superuser's password, once [`PrivateCluster::require_password`] was called.
    pub(crate) password: Option<String>,
}

/// How to restart a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnect clients, checkpoint, stop.
    Fast,
    /// Stop at once; recovery replays the WAL on start (as after a crash).
    Immediate,
}

pub(crate) fn as_postgres(
    program: &std::path::Path,
    args: &[&str],
) -> Result<std::process::Output, String> {
    let mut command = if nix_is_root() {
        let mut c = std::process::Command::new("runuser");
        // From /: postgres may not enter the test's folder (a checkout in a home directory).
        c.args(["-u", "postgres", "--"])
            .arg(program)
            .current_dir("/");
        c
    } else {
        std::process::Command::new(program)
    };
    command
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))
}

/// The folder that holds private clusters: the temporary folder, unless the server's user
/// (`postgres`, when the tests run as root) cannot enter it (`TMPDIR` inside a home directory
/// only its owner may enter); then `/var/tmp`.
pub(crate) fn cluster_base() -> std::path::PathBuf {
    let temp = std::env::temp_dir();
    if !nix_is_root() {
        return temp;
    }
    let reachable = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(&temp)
        .status()
        .is_ok_and(|s| s.success());
    if reachable {
        temp
    } else {
        std::path::PathBuf::from("/var/tmp")
    }
}

pub(crate) fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

impl PrivateCluster {
    /// Create and start a cluster with a database `orders` (trust authentication, loopback
    /// only).
    pub fn start() -> Result<Self, String> {
        Self::start_with("")
    }

    /// [`PrivateCluster::start`] with more `postgresql.conf` lines (e.g. WAL archiving).
    pub fn start_with(extra_conf: &str) -> Result<Self, String> {
        let bin = std::path::PathBuf::from(
            std::env::var("ORDER_PG_BIN")
                .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned()),
        );
        let port = crate::net::free_port().map_err(|e| e.to_string())?;
        let dir = cluster_base().join(format!("order-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if nix_is_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("chown of the cluster folder failed".into());
            }
        }
        let data = dir.join("data");
        let data_str = data.to_string_lossy().into_owned();
        let init = as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                &data_str,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
        )?;
        if !init.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        let cluster = Self {
            dir,
            port,
            bin,
            password: None,
        };
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nmax_connections = 200\nshared_buffers = 128MB\n{extra_conf}\n",
            cluster.dir.to_string_lossy()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .map_err(|e| e.to_string())?;
        cluster.pg_ctl(&["start", "-w", "-t", "60"])?;
        let created = std::process::Command::new("psql")
            .arg(cluster.url("postgres"))
            .args(["-XAtqc", "CREATE DATABASE orders"])
            .output()
            .map_err(|e| e.to_string())?;
        if !created.status.success() {
            return Err(format!(
                "create database: {}",
                String::from_utf8_lossy(&created.stderr)
            ));
        }
        Ok(cluster)
    }

    pub(crate) fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let data = self.dir.join("data").to_string_lossy().into_owned();
        let log = self.dir.join("postgres.log").to_string_lossy().into_owned();
        let mut all = vec!["-D", data.as_str(), "-l", log.as_str()];
        all.extend_from_slice(args);
        let output = as_postgres(&self.bin.join("pg_ctl"), &all)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A superuser URL of `database`.
    pub fn url(&self, database: &str) -> String {
        match &self.password {
            Some(password) => format!(
                "postgres://postgres:{password}@127.0.0.1:{}/{database}",
                self.port
            ),
            None => format!("postgres://postgres@127.0.0.1:{}/{database}", self.port),
        }
    }

    /// From now on, TCP connections must authenticate with `password` (SCRAM); [`Self::url`]
    /// includes it. `password` must be URL-safe (letters, digits, `-`, `_`).
    pub fn require_password(&mut self, password: &str) -> Result<(), String> {
        if !password
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("the password must be URL-safe".into());
        }
        let set = std::process::Command::new("psql")
            .arg(self.url("postgres"))
            .arg("-XAtqc")
            .arg(format!("ALTER ROLE postgres PASSWORD '{password}'"))
            .output()
            .map_err(|e| e.to_string())?;
        if !set.status.success() {
            return Err(format!(
                "setting the password: {}",
                String::from_utf8_lossy(&set.stderr)
            ));
        }
        let hba = "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n";
        let path = self.dir.join("data").join("pg_hba.conf");
        std::fs::write(&path, hba).map_err(|e| e.to_string())?;
        if nix_is_root() {
            let _ = std::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(&path)
                .status();
        }
        self.pg_ctl(&["reload"])?;
        self.password = Some(password.to_owned());
        Ok(())
    }

    /// Stop the server (`mode`: fast or immediate).
    pub fn stop(&self, mode: StopMode) -> Result<(), String> {
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        self.pg_ctl(&["stop", "-w", "-m", mode])
    }

    /// Start the stopped server again on the same port and data.
    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl(&["start", "-w", "-t", "60"])
    }

    /// Every process of the cluster (postmaster and its children).
    pub(crate) fn pids(&self) -> Vec<String> {
        let pid_file = self.dir.join("data/postmaster.pid");
        let Some(main) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned))
        else {
            return Vec::new();
        };
        let children = std::process::Command::new("pgrep")
            .args(["-P", &main])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        std::iter::once(main).chain(children).collect()
    }

    /// Freeze (SIGSTOP) or thaw (SIGCONT) the whole cluster.
    pub fn signal(&self, signal: &str) {
        for pid in self.pids() {
            // A backend may have ended since `pids()`: nothing to report then.
            let _ = std::process::Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.stop(StopMode::Immediate);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How many events of the log the gap-safe fence (`orders.log_fence()`) still hides: those
/// written by transactions not older than the oldest transaction that may still write to this
/// database. Subscribers see them once this is 0.
pub async fn hidden_events(client: &Client) -> i64 {
    match client
        .query_one(
            "SELECT count(*) FROM orders.events \
             WHERE transaction_id >= (SELECT orders.log_fence())",
            &[],
        )
        .await
    {
        Ok(row) => row.get(0),
        Err(error) => panic!("counting hidden events: {}", describe(&error)),
    }
}

/// Wait until at least `sessions` sessions of `client`'s database wait for a lock (a row or
/// table another session holds), asking every 20 ms: how a test knows, without timing, that
/// the code under test has reached the statement it blocks. Panics after 60 s, saying `what`
/// never waited, or at once when `gave_up()` says the code under test ended instead.
pub async fn wait_for_lock_waiters(
    client: &Client,
    sessions: i64,
    what: &str,
    mut gave_up: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: i64 = match client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
        {
            Ok(row) => row.get(0),
            Err(error) => panic!("reading pg_stat_activity: {}", describe(&error)),
        };
        if waiting >= sessions {
            return;
        }
        assert!(!gave_up(), "{what} ended before waiting for the lock");
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never waited for the lock ({waiting} of {sessions} sessions wait)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

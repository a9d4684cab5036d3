//! PostgreSQL's own high-availability and recovery mechanisms on a [`PrivateCluster`]: a hot
//! standby made by `pg_basebackup` that streams the primary's WAL (synchronously or not), a
//! crash of the primary (SIGKILL of its postmaster), `pg_ctl promote`, WAL archiving, base
//! backups and point-in-time recovery into a fresh cluster. Nothing is simulated: these are the
//! server's real code paths, as RDS runs them behind its API.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::pg::{PrivateCluster, as_postgres, cluster_base, nix_is_root};
use crate::process::{children_of, signal_pid};

/// How the primary waits for its standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// A commit is acknowledged only once the standby has flushed it
    /// (`synchronous_standby_names` names the standby, `synchronous_commit = on`): a crash of
    /// the primary loses no acknowledged commit. As RDS Multi-AZ.
    Synchronous,
    /// A commit is acknowledged once the primary flushed it; the standby follows as fast as it
    /// can. A crash of the primary loses what the standby had not received yet. As an RDS read
    /// replica (in a region of its own, too).
    Asynchronous,
}

/// A folder of the server's user for a WAL archive or a base backup; deleted on drop.
#[derive(Debug)]
pub struct ServerDir(PathBuf);

impl ServerDir {
    /// A new empty folder (mode of the temporary folder's children, owned by the server's
    /// user).
    pub fn new() -> Result<Self, String> {
        new_cluster_dir().map(Self)
    }

    /// Where the folder is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ServerDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The name the standby reports to the primary (`synchronous_standby_names`).
const STANDBY_NAME: &str = "order_standby";

fn free_port() -> Result<u16, String> {
    crate::net::free_port().map_err(|e| e.to_string())
}

/// A folder for a new cluster, owned by the server's user.
fn new_cluster_dir() -> Result<PathBuf, String> {
    let dir = cluster_base().join(format!("order-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    chown_to_server(&dir)?;
    Ok(dir)
}

fn chown_to_server(path: &Path) -> Result<(), String> {
    if !nix_is_root() {
        return Ok(());
    }
    let status = std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("chown of {} failed", path.display()))
    }
}

fn check(output: &std::process::Output, what: &str) -> Result<String, String> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Append lines to a cluster's `postgresql.conf` (later lines win).
fn append_conf(data: &Path, lines: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, lines.as_bytes()))
        .map_err(|e| format!("postgresql.conf: {e}"))
}

impl PrivateCluster {
    /// The cluster's folder (data, log, socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Run `sql` with psql as the superuser on `database`; its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let output = std::process::Command::new("psql")
            .arg(self.url(database))
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        check(&output, sql)
    }

    /// A URL naming every cluster of `clusters` (in that order) for `database`:
    /// `postgres://postgres@127.0.0.1:A,127.0.0.1:B/database`, so that a client finds whichever
    /// one is the primary now. `query` is appended as the URL's query string when not empty
    /// (e.g. `target_session_attrs=read-write`).
    pub fn multi_host_url(clusters: &[&PrivateCluster], database: &str, query: &str) -> String {
        let hosts: Vec<String> = clusters
            .iter()
            .map(|c| format!("127.0.0.1:{}", c.port))
            .collect();
        let auth = match clusters.first().and_then(|c| c.password.as_deref()) {
            Some(password) => format!("postgres:{password}"),
            None => "postgres".to_owned(),
        };
        let mut url = format!("postgres://{auth}@{}/{database}", hosts.join(","));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// A hot standby of this cluster: `pg_basebackup` through a replication slot, then
    /// streaming replication (`standby.signal`, `primary_conninfo`), on a port of its own.
    /// With [`Replication::Synchronous`], this primary then waits for the standby on every
    /// commit. Returns once the standby streams (and, synchronous, is the sync standby).
    pub fn start_standby(&self, replication: Replication) -> Result<PrivateCluster, String> {
        let dir = new_cluster_dir()?;
        let port = free_port()?;
        let data = dir.join("data");
        let data_str = data.to_string_lossy().into_owned();
        let primary_port = self.port.to_string();
        let slot = format!(
            "standby_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut args = vec![
            "-h",
            "127.0.0.1",
            "-p",
            primary_port.as_str(),
            "-U",
            "postgres",
            "-D",
            data_str.as_str(),
            "-X",
            "stream",
            "-C",
            "-S",
            slot.as_str(),
            "-R",
            "-c",
            "fast",
        ];
        let password_arg;
        if let Some(password) = &self.password {
            // -R writes the connection's settings, the password included, into the standby's
            // primary_conninfo (postgresql.auto.conf, in a folder only the server's user reads).
            password_arg = format!("password={password}");
            args.extend(["-d", password_arg.as_str()]);
        }
        check(
            &as_postgres(&self.bin.join("pg_basebackup"), &args)?,
            "pg_basebackup",
        )?;
        append_conf(
            &data,
            &format!(
                "\n# --- standby ---\nport = {port}\nunix_socket_directories = '{}'\ncluster_name = '{STANDBY_NAME}'\nhot_standby = on\nhot_standby_feedback = on\n",
                dir.to_string_lossy()
            ),
        )?;
        let standby = PrivateCluster {
            dir,
            port,
            bin: self.bin.clone(),
            password: self.password.clone(),
        };
        standby.pg_ctl(&["start", "-w", "-t", "60"])?;
        // Only now: a standby made while the primary named a synchronous standby would inherit
        // the setting and, once promoted, wait for a standby of its own that does not exist.
        let names = match replication {
            Replication::Synchronous => STANDBY_NAME,
            Replication::Asynchronous => "",
        };
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'"),
        )?;
        self.psql("postgres", "SELECT pg_reload_conf()")?;
        let wanted = match replication {
            Replication::Synchronous => "sync",
            Replication::Asynchronous => "async",
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = self.psql(
                "postgres",
                &format!(
                    "SELECT state || '/' || sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}'"
                ),
            )?;
            if state == format!("streaming/{wanted}") {
                return Ok(standby);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the standby does not stream as {wanted} within 60 s (replication state: {state:?})"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The postmaster's process id.
    pub fn postmaster_pid(&self) -> Result<u32, String> {
        let text = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .map_err(|e| format!("postmaster.pid: {e}"))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| "postmaster.pid has no process id".to_owned())
    }

    /// SIGKILL the postmaster: nothing is flushed or shut down cleanly. Its backends and
    /// walsenders notice that their postmaster died only at their next check, so for a moment
    /// they may still commit and send WAL to a standby; for a crash after which nothing more
    /// happens, use [`PrivateCluster::crash`].
    pub fn kill_postmaster(&self) -> Result<(), String> {
        signal_pid(self.postmaster_pid()?, "KILL")
    }

    /// The whole server dies at once, as when its machine does: the postmaster is frozen (so
    /// that it starts nothing more), every process it started is SIGKILLed, then the
    /// postmaster. Unlike [`PrivateCluster::kill_postmaster`], no backend lives on for a
    /// moment to finish a command, and no walsender sends anything more.
    pub fn crash(&self) -> Result<(), String> {
        let postmaster = self.postmaster_pid()?;
        signal_pid(postmaster, "STOP")?;
        for child in children_of(postmaster) {
            // A child may have exited in between: nothing to kill.
            let _ = signal_pid(child, "KILL");
        }
        signal_pid(postmaster, "KILL")
    }

    /// The processes the postmaster started and has not reaped (backends, walsenders,
    /// background workers).
    pub fn postmaster_children(&self) -> Result<Vec<u32>, String> {
        Ok(children_of(self.postmaster_pid()?))
    }

    /// A standby: freeze its WAL receiver (SIGSTOP), so that it falls behind the primary as a
    /// lagging replica does; returns the receiver's process id for
    /// [`PrivateCluster::resume_wal_receiver`].
    pub fn pause_wal_receiver(&self) -> Result<u32, String> {
        let pid: u32 = self
            .psql("postgres", "SELECT pid FROM pg_stat_wal_receiver")?
            .parse()
            .map_err(|_| "the standby has no WAL receiver".to_owned())?;
        signal_pid(pid, "STOP")?;
        Ok(pid)
    }

    /// Thaw the WAL receiver paused by [`PrivateCluster::pause_wal_receiver`]. It then reads
    /// whatever the kernel buffered in its socket meanwhile (the primary's walsender went on
    /// writing into it: megabytes on loopback), so a standby thawed after the primary's crash
    /// still receives the WAL written while it was frozen: to lose it, use
    /// [`PrivateCluster::kill_wal_receiver`] instead.
    pub fn resume_wal_receiver(&self, pid: u32) -> Result<(), String> {
        signal_pid(pid, "CONT")
    }

    /// SIGKILL the WAL receiver `pid` (frozen by [`PrivateCluster::pause_wal_receiver`] or
    /// not): it reads nothing more, and its socket, with the WAL the kernel buffered in it,
    /// is dropped, so the standby keeps only what the receiver had written to its `pg_wal`.
    /// The standby's postmaster treats the killed child as a crash and restarts its processes
    /// (crash recovery from its `pg_wal`, still a standby); this returns once it answers
    /// queries again (at most `within`).
    pub fn kill_wal_receiver(&self, pid: u32, within: Duration) -> Result<(), String> {
        // Every process of the standby before the kill: the crash restart ends them all (the
        // startup process among them), so once they are gone and the server answers in
        // recovery, a new startup process runs (one that would miss a promotion signalled
        // during the restart cannot be asked to promote yet).
        let before = self.postmaster_children()?;
        signal_pid(pid, "KILL")?;
        let deadline = Instant::now() + within;
        loop {
            if before.iter().all(|p| crate::process::has_ended(*p))
                && self.in_recovery().unwrap_or(false)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the standby did not restart and answer within {within:?} after its WAL receiver was killed"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's current WAL write position (`pg_current_wal_lsn()`, a primary's), as
    /// PostgreSQL prints it (`0/1A2B3C8`).
    pub fn current_wal_lsn(&self) -> Result<String, String> {
        self.psql("postgres", "SELECT pg_current_wal_lsn()")
    }

    /// The end of the last WAL record this server replayed (`pg_last_wal_replay_lsn()`): a
    /// standby's progress; after a promotion it stays at the end of the recovery that
    /// preceded it. `None` for a server started without recovery.
    pub fn replayed_wal_lsn(&self) -> Result<Option<String>, String> {
        let lsn = self.psql("postgres", "SELECT pg_last_wal_replay_lsn()")?;
        Ok((!lsn.is_empty()).then_some(lsn))
    }

    /// Bytes of WAL from `from` to `to` (`pg_wal_lsn_diff(to, from)`; negative when `to` is
    /// before `from`), computed by this server.
    pub fn wal_bytes_between(&self, from: &str, to: &str) -> Result<i64, String> {
        for lsn in [from, to] {
            let valid = lsn.split_once('/').is_some_and(|(high, low)| {
                [high, low]
                    .iter()
                    .all(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            });
            if !valid {
                return Err(format!("not a WAL position: {lsn:?}"));
            }
        }
        let bytes = self.psql(
            "postgres",
            &format!("SELECT pg_wal_lsn_diff('{to}'::pg_lsn, '{from}'::pg_lsn)::bigint"),
        )?;
        bytes
            .parse()
            .map_err(|_| format!("pg_wal_lsn_diff gave {bytes:?}"))
    }

    /// `pg_ctl promote`: this standby ends recovery and becomes a primary that takes writes.
    /// Returns once it does.
    pub fn promote(&self) -> Result<(), String> {
        self.pg_ctl(&["promote", "-w", "-t", "60"])
    }

    /// Whether the server is a standby (in recovery).
    pub fn in_recovery(&self) -> Result<bool, String> {
        Ok(self.psql("postgres", "SELECT pg_is_in_recovery()")? == "t")
    }

    /// A standby: apply WAL only `delay` after its commit on the primary
    /// (`recovery_min_apply_delay`), as a replica that lags. Zero: apply at once again.
    pub fn set_apply_delay(&self, delay: Duration) -> Result<(), String> {
        self.psql(
            "postgres",
            &format!(
                "ALTER SYSTEM SET recovery_min_apply_delay = '{}ms'",
                delay.as_millis()
            ),
        )?;
        self.psql("postgres", "SELECT pg_reload_conf()").map(|_| ())
    }

    /// A standby: wait until it has replayed everything the primary `primary` has written up
    /// to now.
    pub fn wait_replayed(&self, primary: &PrivateCluster, within: Duration) -> Result<(), String> {
        let target = primary.psql("postgres", "SELECT pg_current_wal_lsn()")?;
        let deadline = Instant::now() + within;
        loop {
            let caught_up = self.psql(
                "postgres",
                &format!("SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"),
            )?;
            if caught_up == "t" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("the standby did not replay up to {target} in time"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `postgresql.conf` lines that archive every finished WAL segment into `archive` (a
    /// folder the server's user may write: a [`ServerDir`]), and keep commit timestamps.
    pub fn archiving_conf(archive: &Path) -> String {
        let archive = archive.to_string_lossy();
        format!(
            "wal_level = replica\narchive_mode = on\narchive_command = 'test ! -f {archive}/%f && cp %p {archive}/%f'\narchive_timeout = 60\ntrack_commit_timestamp = on\n"
        )
    }

    /// A base backup of the running cluster into `into` (an empty folder of the server's
    /// user): `pg_basebackup` in plain format with the WAL it needs to be consistent.
    pub fn base_backup(&self, into: &Path) -> Result<(), String> {
        let port = self.port.to_string();
        let target = into.join("data");
        let target = target.to_string_lossy();
        let mut args = vec![
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-D",
            &target,
            "-X",
            "stream",
            "-c",
            "fast",
        ];
        let password_arg;
        if let Some(password) = &self.password {
            password_arg = format!("password={password}");
            args.extend(["-d", password_arg.as_str()]);
        }
        check(
            &as_postgres(&self.bin.join("pg_basebackup"), &args)?,
            "pg_basebackup",
        )
        .map(|_| ())
    }

    /// Point-in-time recovery: a new cluster from the base backup in `backup` (made by
    /// [`PrivateCluster::base_backup`]), replaying the archived WAL of `archive` up to
    /// `target_time` (a timestamp with time zone as PostgreSQL reads it; the commits at or
    /// before it are kept), then promoted. Returns once it takes writes.
    pub fn restore_to_time(
        backup: &Path,
        archive: &Path,
        target_time: &str,
        within: Duration,
    ) -> Result<PrivateCluster, String> {
        let dir = new_cluster_dir()?;
        let port = free_port()?;
        let data = dir.join("data");
        let copy = std::process::Command::new("cp")
            .arg("-a")
            .arg(backup.join("data"))
            .arg(&data)
            .output()
            .map_err(|e| e.to_string())?;
        check(&copy, "copying the base backup")?;
        chown_to_server(&dir)?;
        for leftover in ["postmaster.pid", "standby.signal"] {
            let _ = std::fs::remove_file(data.join(leftover));
        }
        let archive = archive.to_string_lossy();
        append_conf(
            &data,
            &format!(
                "\n# --- point-in-time recovery ---\nport = {port}\nunix_socket_directories = '{}'\narchive_mode = off\nrestore_command = 'cp {archive}/%f %p'\nrecovery_target_time = '{target_time}'\nrecovery_target_inclusive = on\nrecovery_target_action = 'promote'\n",
                dir.to_string_lossy()
            ),
        )?;
        std::fs::write(data.join("recovery.signal"), "").map_err(|e| e.to_string())?;
        chown_to_server(&data)?;
        let cluster = PrivateCluster {
            dir,
            port,
            bin: PathBuf::from(
                std::env::var("ORDER_PG_BIN")
                    .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned()),
            ),
            password: None,
        };
        let seconds = within.as_secs().max(1).to_string();
        cluster.pg_ctl(&["start", "-w", "-t", &seconds])?;
        let deadline = Instant::now() + within;
        while cluster.in_recovery()? {
            if Instant::now() > deadline {
                return Err("the restored cluster did not finish recovery in time".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(cluster)
    }

    /// Use `password` for this cluster's URLs (a cluster restored from a backup of a cluster
    /// with [`PrivateCluster::require_password`] has its roles and `pg_hba.conf`).
    pub fn with_password(mut self, password: Option<String>) -> Self {
        self.password = password;
        self
    }
}

//! Connecting host by host. tokio-postgres tries a multi-host URL's hosts in order, but its
//! `connect_timeout` bounds only each TCP connect: a host that takes the connection and never
//! answers (a frozen server, a port still held by a dying one) holds the startup handshake
//! forever, and the pool's limit for a whole new connection then runs out before the next host
//! is tried. Here every host gets `connect_timeout` for everything, handshake and the
//! read-write check included, and a host that does not make it in time is passed over.
//!
//! And a store that writes never goes back in time: the process remembers the highest
//! timeline of the servers it connected to for writing (per list of hosts), and passes over a
//! writable server on a lower one (an old primary come back writable after its standby was
//! promoted, still named first in a `host=a,b` URL). Writing there would fork the log:
//! acknowledged commands on one server, later ones on the other. Its first connection for
//! writing to a multi-host URL looks at every host first, and so does the first after each
//! sign of a failover the process meets, so that a process started after the promotion, or
//! one meeting a second failover, is not fooled either.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Connect;
use futures::future::BoxFuture;
use tokio_postgres::config::Host;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Connection, Socket};

/// How many hosts a connection setting names.
pub(crate) fn host_count(config: &Config) -> usize {
    config
        .get_hosts()
        .len()
        .max(config.get_hostaddrs().len())
        .max(1)
}

/// The longest a new connection can take: every host's time in turn, and for a URL of
/// several hosts one more, for the look at every host at once that a connection for writing
/// may wait for first (see [`survey`]).
pub(crate) fn whole_time(config: &Config, per_host: Duration) -> Duration {
    let hosts = host_count(config);
    let turns = if hosts > 1 { hosts + 1 } else { hosts };
    per_host.saturating_mul(u32::try_from(turns).unwrap_or(u32::MAX))
}

/// The settings of `config` for its `index`-th host alone.
fn one_host(config: &Config, index: usize) -> Config {
    let mut one = Config::new();
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    if let Some(name) = config.get_application_name() {
        one.application_name(name);
    }
    one.ssl_mode(config.get_ssl_mode());
    one.ssl_negotiation(config.get_ssl_negotiation());
    match config.get_hosts().get(index) {
        Some(Host::Tcp(host)) => {
            one.host(host);
        }
        Some(Host::Unix(path)) => {
            one.host_path(path);
        }
        None => {}
    }
    if let Some(address) = config.get_hostaddrs().get(index) {
        one.hostaddr(*address);
    }
    let ports = config.get_ports();
    if let Some(port) = ports.get(index).or_else(|| ports.first()) {
        one.port(*port);
    }
    if let Some(timeout) = config.get_connect_timeout() {
        one.connect_timeout(*timeout);
    }
    if let Some(timeout) = config.get_tcp_user_timeout() {
        one.tcp_user_timeout(*timeout);
    }
    one.keepalives(config.get_keepalives());
    one.keepalives_idle(config.get_keepalives_idle());
    if let Some(interval) = config.get_keepalives_interval() {
        one.keepalives_interval(interval);
    }
    if let Some(retries) = config.get_keepalives_retries() {
        one.keepalives_retries(retries);
    }
    one.target_session_attrs(config.get_target_session_attrs());
    one.channel_binding(config.get_channel_binding());
    one.load_balance_hosts(config.get_load_balance_hosts());
    one
}

/// What this process knows of one set of servers' timelines (see [`timelines_for`]).
#[derive(Debug)]
pub(crate) struct Timelines {
    /// The highest timeline its connections for writing met (0: none yet).
    highest: AtomicU32,
    /// Held by the look at every host under way ([`survey`]); holds the server change (see
    /// [`SERVER_CHANGES`]) after which the last look found a writable host (`None`: never).
    survey: tokio::sync::Mutex<Option<u64>>,
    /// How many looks at every host ended, whatever they found.
    surveys: AtomicU64,
    /// The host the last look chose, tried first by the connections that go host by host
    /// (`usize::MAX`: none yet): after a failover, the promoted server, not a silent old
    /// primary named before it.
    chosen: std::sync::atomic::AtomicUsize,
}

impl Default for Timelines {
    fn default() -> Self {
        Self {
            highest: AtomicU32::new(0),
            survey: tokio::sync::Mutex::new(None),
            surveys: AtomicU64::new(0),
            chosen: std::sync::atomic::AtomicUsize::new(usize::MAX),
        }
    }
}

/// How many times this process has learnt that a database server changed (it refused a
/// write, was shutting down, or did not answer: see the `recycle` module). Each is a possible
/// failover, after which the hosts are looked at again before the next connection for writing:
/// a second failover's old primary, come back writable on the timeline the process knows,
/// would otherwise be taken.
pub(crate) static SERVER_CHANGES: AtomicU64 = AtomicU64::new(0);

/// A sign of a possible failover: the next connection for writing looks at every host again
/// (the pools are not emptied for it: see [`connection_ended`] and the `recycle` module).
pub(crate) fn connection_lost() {
    SERVER_CHANGES.fetch_add(1, Ordering::SeqCst);
}

/// A connection for writing ended with `error`: a sign of a failover when its server went
/// away (the connection broke or closed without a word: a crash, a network cut) or is
/// shutting down (SQLSTATE 57P01-57P03), not when the server ended an idle session by its own
/// settings (57P05 `idle_session_timeout`, 25P03 `idle_in_transaction_session_timeout`) or
/// for any other reason it gave.
pub(crate) fn connection_ended(error: &tokio_postgres::Error) {
    use tokio_postgres::error::SqlState;
    let sign = match error.code() {
        None => true,
        Some(code) => [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code),
    };
    if sign {
        connection_lost();
    }
}

/// Whether connections made with `config` are for writing (and so fenced, and their end a
/// sign worth a look at every host: a standby's ends are not).
pub(crate) fn for_writing(config: &Config) -> bool {
    config.get_target_session_attrs() == tokio_postgres::config::TargetSessionAttrs::ReadWrite
}

/// The memory of timelines for the servers `config` names: one per list of hosts and ports in
/// the process, shared by every connection for writing to them, pooled or not (the store's
/// pools, its LISTEN, the readiness probe, migrations): none of them goes to a server behind
/// one another met.
pub(crate) fn timelines_for(config: &Config) -> Arc<Timelines> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex, PoisonError};
    static KNOWN: LazyLock<Mutex<HashMap<String, Arc<Timelines>>>> = LazyLock::new(Mutex::default);
    let servers = format!(
        "{:?} {:?} {:?}",
        config.get_hosts(),
        config.get_hostaddrs(),
        config.get_ports()
    );
    KNOWN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(servers)
        .or_default()
        .clone()
}

/// The timeline of a writable server (the first 8 hex digits of its current WAL file's name).
async fn timeline(client: &Client) -> Result<u32, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await?;
    let name: String = row.try_get(0)?;
    // A name that is not one (it always is) reads as timeline 0: never refused for it.
    Ok(name
        .get(..8)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .unwrap_or(0))
}

/// A connection with its connection half, and the timeline of its server (0 when not asked).
type Connected<S> = (Client, Connection<Socket, S>, u32);

/// One host: connect, and with `fence`, refuse a server behind the highest timeline met.
/// `Ok(None)`: connected, and refused by the fence.
async fn connect_one<T>(
    config: &Config,
    index: usize,
    tls: T,
    fence: Option<&Timelines>,
) -> Result<Option<Connected<T::Stream>>, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
{
    let (client, mut connection) = config.connect(tls).await?;
    let Some(fence) = fence else {
        return Ok(Some((client, connection, 0)));
    };
    // The connection must be driven for the query to be answered; it is handed back after.
    let line = {
        let query = timeline(&client);
        let mut query = std::pin::pin!(query);
        // A plain close is left to the query, which fails with it.
        let drive = std::future::poll_fn(|cx| match poll_end(&mut connection, cx) {
            std::task::Poll::Ready(Some(error)) => std::task::Poll::Ready(error),
            std::task::Poll::Ready(None) | std::task::Poll::Pending => std::task::Poll::Pending,
        });
        let mut drive = std::pin::pin!(drive);
        tokio::select! {
            line = &mut query => line?,
            error = &mut drive => return Err(error),
        }
    };
    let previous = fence.highest.fetch_max(line, Ordering::SeqCst);
    let highest = previous.max(line);
    if line < highest {
        passed_over(index, line, highest);
        return Ok(None);
    }
    if previous != 0 && line > previous {
        // A server on a later timeline than every connection of the process was made on:
        // those may be on the server behind it (an old primary), and must write no more. Each
        // is replaced at its next checkout, as after any server change; LISTEN and readiness
        // connect again. (One opened after this instant was made knowing the new timeline.)
        tracing::warn!(
            host = index,
            timeline = line,
            previous,
            "a writable database server is on a later timeline than the servers this process \
             wrote to (a failover): its connections to them are replaced"
        );
        crate::recycle::discard_connections_opened_before_now(
            crate::recycle::Reason::NewerTimeline,
        );
    }
    Ok(Some((client, connection, line)))
}

/// Whether a connection made on `line` is still on no older timeline than `fence` knows: a
/// look at every host elsewhere in the process may have met a later one since it was checked.
fn still_current(fence: Option<&Timelines>, index: usize, line: u32) -> bool {
    let Some(fence) = fence else { return true };
    let highest = fence.highest.load(Ordering::SeqCst);
    if line < highest {
        passed_over(index, line, highest);
        return false;
    }
    true
}

/// Say that host `index`, writable on timeline `line`, is passed over for being behind.
fn passed_over(index: usize, line: u32, highest: u32) {
    tracing::error!(
        host = index,
        timeline = line,
        highest,
        "a writable database server is on an older timeline than another of the URL's \
         servers this process met (an old primary come back writable after a failover?): \
         passed over, never written to; rebuild it as a standby of the new primary, or \
         take it out of the database URL"
    );
}

/// Connect to the first host of `config` that answers in `per_host` (and, when the settings
/// ask for it, takes writes; with `fence`, also is on no older timeline than the store met).
/// When none does, the error of the last host that said why, or a timeout when none said
/// anything (a host passed over by the fence is logged).
pub(crate) async fn host_by_host<T>(
    config: &Config,
    tls: T,
    per_host: Duration,
    fence: Option<&Timelines>,
) -> Result<(Client, Connection<Socket, T::Stream>), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + Clone,
{
    // Only connections that must take writes are fenced: a standby has no current WAL.
    let fence = fence.filter(|_| for_writing(config));
    let hosts = host_count(config);
    if let Some(fence) = fence
        && hosts > 1
        && let Some(surveyed) = survey(config, &tls, per_host, fence).await
    {
        return surveyed;
    }
    let mut said = None;
    // The host the last look at every host chose first, then the others in their order.
    let chosen = fence.map_or(usize::MAX, |fence| fence.chosen.load(Ordering::SeqCst));
    let first = (chosen < hosts).then_some(chosen);
    let order = first
        .into_iter()
        .chain((0..hosts).filter(|&index| Some(index) != first));
    for index in order {
        let one;
        let config = if hosts == 1 {
            config
        } else {
            one = one_host(config, index);
            &one
        };
        match tokio::time::timeout(per_host, connect_one(config, index, tls.clone(), fence)).await {
            Ok(Ok(Some((client, connection, line)))) => {
                if still_current(fence, index, line) {
                    return Ok((client, connection));
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => said = Some(error),
            Err(_) => tracing::debug!(host = index, "database host did not answer in time"),
        }
    }
    // tokio-postgres has no public constructor for its timeout error but this one.
    Err(said.unwrap_or_else(tokio_postgres::Error::__private_api_timeout))
}

/// Before the first connection of the process for writing to a multi-host URL's servers, and
/// again after each server change it learns of: look at every host at once (each given
/// `per_host`), note the highest timeline of the writable ones, and answer with the first
/// host's connection among those on it. So the choice passes over an old primary back
/// writable, named first, even in a process started after the promotion (which has written
/// nowhere yet), and the first connection takes one host's time, not that and then every
/// host's in turn. One look at a time per set of servers; connections that waited for it go
/// host by host with what it found, so that none waits for more than one look. `None`: no
/// look was due (go host by host); an error: no host was writable and on the highest timeline
/// (the last host's that said why, else a timeout), and the next connection that did not wait
/// for this look looks again. A chosen connection its server ended while the look waited is
/// not handed out: `None`, and the chosen host is tried first.
async fn survey<T>(
    config: &Config,
    tls: &T,
    per_host: Duration,
    fence: &Timelines,
) -> Option<Result<(Client, Connection<Socket, T::Stream>), tokio_postgres::Error>>
where
    T: MakeTlsConnect<Socket> + Clone,
{
    let ended = fence.surveys.load(Ordering::SeqCst);
    let mut surveyed = fence.survey.lock().await;
    let changes = SERVER_CHANGES.load(Ordering::SeqCst);
    // Looked at since the last sign, or while this waited (whatever that look found: its
    // timelines stand, and the hosts in turn are tried with them): not again.
    if *surveyed == Some(changes) || fence.surveys.load(Ordering::SeqCst) != ended {
        return None;
    }
    let looks = (0..host_count(config)).map(|index| {
        let one = one_host(config, index);
        let tls = tls.clone();
        async move {
            // A standby refuses (it takes no writes), a host down says nothing.
            tokio::time::timeout(per_host, connect_one(&one, index, tls, Some(fence))).await
        }
    });
    let answers = futures::future::join_all(looks).await;
    fence.surveys.fetch_add(1, Ordering::SeqCst);
    let highest = fence.highest.load(Ordering::SeqCst);
    let mut chosen = None;
    let mut said = None;
    for (index, answer) in answers.into_iter().enumerate() {
        match answer {
            Ok(Ok(Some((client, connection, line)))) => {
                if line < highest {
                    // Taken before a later server showed a higher timeline.
                    passed_over(index, line, highest);
                } else if chosen.is_none() {
                    chosen = Some((index, client, connection));
                }
                // Any other is closed as it is dropped.
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => said = Some(error),
            Err(_) => tracing::debug!(host = index, "database host did not answer in time"),
        }
    }
    match chosen {
        Some((index, client, mut connection)) => {
            fence.chosen.store(index, Ordering::SeqCst);
            *surveyed = Some(changes);
            match ended_unread(&mut connection) {
                None => Some(Ok((client, connection))),
                Some(error) => {
                    // Ended while the look waited for the slowest host (a shutdown, an
                    // administrator): connect again, host by host, the chosen host first.
                    tracing::debug!(
                        host = index,
                        error = ?error,
                        "the connection the look at every host chose ended while it waited"
                    );
                    match error {
                        Some(error) => connection_ended(&error),
                        None => connection_lost(),
                    }
                    None
                }
            }
        }
        None => Some(Err(
            said.unwrap_or_else(tokio_postgres::Error::__private_api_timeout)
        )),
    }
}

/// Drive `connection` until it ends: `Ready` with the error it ended with (a server's FATAL
/// message, a broken socket), or `None` for a plain close. A notice or a parameter's new value
/// is read and passed over (the connection lives); `Pending` while it is open.
fn poll_end<S>(
    connection: &mut Connection<Socket, S>,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<Option<tokio_postgres::Error>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use std::task::Poll;
    loop {
        match std::pin::Pin::new(&mut *connection).poll_message(cx) {
            Poll::Ready(Some(Ok(_))) => continue,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(error)),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Whether the server ended `connection` while nothing read it: what has arrived is read,
/// without waiting. `Some` with the error it ended with (a server's FATAL message, a broken
/// socket), or `None` for a plain close; `None` when it is still open.
fn ended_unread<S>(connection: &mut Connection<Socket, S>) -> Option<Option<tokio_postgres::Error>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use std::task::Poll;
    // Unconstrained: a task whose cooperative budget is spent would read nothing, and take a
    // connection its server ended for an open one.
    let read =
        tokio::task::unconstrained(std::future::poll_fn(|cx| poll_end(&mut *connection, cx)));
    let mut read = std::pin::pin!(read);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match read.as_mut().poll(&mut cx) {
        Poll::Ready(ended) => Some(ended),
        Poll::Pending => None,
    }
}

/// The pool hook, for a pool of connections for writing, that checks a new connection once
/// the pool has noted its creation: on no older timeline than the process knows now. The
/// check when it was made came before that instant, and a later timeline met in between (by
/// another connection's look at every host) marks only the connections created before the
/// mark: this one would escape it, and write to the server behind. Refused, the pool's caller
/// is told the store is unavailable, and its retry connects again. One query per new
/// connection.
pub(crate) fn timeline_hook(fence: Arc<Timelines>) -> deadpool_postgres::Hook {
    deadpool_postgres::Hook::async_fn(move |client, _| {
        let fence = fence.clone();
        Box::pin(async move {
            let line = timeline(client)
                .await
                .map_err(deadpool_postgres::HookError::Backend)?;
            let highest = fence.highest.load(Ordering::SeqCst);
            if line < highest {
                tracing::error!(
                    timeline = line,
                    highest,
                    "a new database connection's server is on an older timeline than another \
                     of the URL's servers this process met, found after it was made: refused"
                );
                return Err(deadpool_postgres::HookError::message(
                    "the new connection's server is on an older timeline than another the \
                     process met (an old primary?)",
                ));
            }
            Ok(())
        })
    })
}

/// The pool's way to open a connection: host by host, each host given its time, with its
/// connection driven by a task of its own.
#[derive(Debug, Clone)]
pub struct HostByHost<T> {
    tls: T,
    per_host: Duration,
    fence: Option<Arc<Timelines>>,
}

impl<T> HostByHost<T> {
    /// Connections made with `tls`, each host given `per_host`.
    pub fn new(tls: T, per_host: Duration) -> Self {
        Self {
            tls,
            per_host,
            fence: None,
        }
    }

    /// Pass over a writable server on an older timeline than these connections met.
    pub(crate) fn fenced(mut self, fence: Arc<Timelines>) -> Self {
        self.fence = Some(fence);
        self
    }
}

impl<T> Connect for HostByHost<T>
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(
        &self,
        pg_config: &Config,
    ) -> BoxFuture<'_, Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>> {
        let tls = self.tls.clone();
        let pg_config = pg_config.clone();
        let per_host = self.per_host;
        let fence = self.fence.clone();
        Box::pin(async move {
            let writes = fence.is_some() && for_writing(&pg_config);
            let (client, connection) =
                host_by_host(&pg_config, tls, per_host, fence.as_deref()).await?;
            let task = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "database connection ended");
                    if writes {
                        connection_ended(&error);
                    }
                }
            });
            Ok((client, task))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_host_keeps_every_setting_but_the_other_hosts() {
        let config: Config = "postgres://u:p@a:1,b:2/db?application_name=x&connect_timeout=3&target_session_attrs=read-write&sslmode=require&options=-c%20jit%3Doff&keepalives_idle=7"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(host_count(&config), 2);
        // Each host in turn, and the look at both first.
        assert_eq!(
            whole_time(&config, Duration::from_secs(3)),
            Duration::from_secs(9)
        );
        let single: Config = "host=a user=u".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            whole_time(&single, Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        let second = one_host(&config, 1);
        assert_eq!(second.get_hosts(), &[Host::Tcp("b".into())]);
        assert_eq!(second.get_ports(), &[2]);
        assert_eq!(second.get_user(), Some("u"));
        assert_eq!(second.get_password(), Some(&b"p"[..]));
        assert_eq!(second.get_dbname(), Some("db"));
        assert_eq!(second.get_application_name(), Some("x"));
        assert_eq!(second.get_options(), Some("-c jit=off"));
        assert_eq!(second.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(second.get_keepalives_idle(), Duration::from_secs(7));
        assert_eq!(
            second.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(
            second.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        // One port for all hosts.
        let shared: Config = "host=a,b port=5 user=u dbname=db"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(one_host(&shared, 0).get_ports(), &[5]);
        assert_eq!(one_host(&shared, 1).get_ports(), &[5]);
    }
}

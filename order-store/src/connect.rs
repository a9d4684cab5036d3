//! Connecting host by host. tokio-postgres tries a multi-host URL's hosts in order, but its
//! `connect_timeout` bounds only each TCP connect: a host that takes the connection and never
//! answers (a frozen server, a port still held by a dying one) holds the startup handshake
//! forever, and the pool's limit for a whole new connection then runs out before the next host
//! is tried. Here every host gets `connect_timeout` for everything, handshake and the
//! read-write check included, and a host that does not make it in time is passed over.

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

/// The longest a new connection can take: every host's time in turn.
pub(crate) fn whole_time(config: &Config, per_host: Duration) -> Duration {
    per_host.saturating_mul(u32::try_from(host_count(config)).unwrap_or(u32::MAX))
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

/// Connect to the first host of `config` that answers in `per_host` (and, when the settings
/// ask for it, takes writes). When none does, the error of the last host that said why, or a
/// timeout when none said anything.
pub(crate) async fn host_by_host<T>(
    config: &Config,
    tls: T,
    per_host: Duration,
) -> Result<(Client, Connection<Socket, T::Stream>), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + Clone,
{
    let hosts = host_count(config);
    if hosts == 1 {
        return tokio::time::timeout(per_host, config.connect(tls))
            .await
            .unwrap_or_else(|_| Err(tokio_postgres::Error::__private_api_timeout()));
    }
    let mut said = None;
    for index in 0..hosts {
        let one = one_host(config, index);
        match tokio::time::timeout(per_host, one.connect(tls.clone())).await {
            Ok(Ok(connected)) => return Ok(connected),
            Ok(Err(error)) => said = Some(error),
            Err(_) => tracing::debug!(host = index, "database host did not answer in time"),
        }
    }
    // tokio-postgres has no public constructor for its timeout error but this one.
    Err(said.unwrap_or_else(tokio_postgres::Error::__private_api_timeout))
}

/// The pool's way to open a connection: [`host_by_host`], with its connection driven by a
/// task of its own.
#[derive(Debug, Clone)]
pub struct HostByHost<T> {
    tls: T,
    per_host: Duration,
}

impl<T> HostByHost<T> {
    /// Connections made with `tls`, each host given `per_host`.
    pub fn new(tls: T, per_host: Duration) -> Self {
        Self { tls, per_host }
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
        Box::pin(async move {
            let (client, connection) = host_by_host(&pg_config, tls, per_host).await?;
            let task = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "database connection ended");
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
        assert_eq!(
            whole_time(&config, Duration::from_secs(3)),
            Duration::from_secs(6)
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

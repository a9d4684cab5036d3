//! Waking subscribers: a dedicated connection LISTENs for the store's NOTIFY and bumps a
//! counter that any number of subscribers wait on. It reconnects by itself; subscribers also
//! poll, so a lost notification delays them but never stalls them.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use crate::config::StoreConfig;
use crate::store::NOTIFY_CHANNEL;

/// Subscribers' view of the log's notifications.
#[derive(Debug, Clone)]
pub struct EventListener {
    changes: watch::Receiver<u64>,
}

impl EventListener {
    /// Start listening in the background. The task ends when every clone of the listener is
    /// dropped. Point it at the primary: a standby (a read replica) cannot LISTEN, and is
    /// only asked again every 30 s, in case it was promoted; subscribers poll meanwhile.
    pub fn start(config: StoreConfig) -> Self {
        let (sender, changes) = watch::channel(0);
        tokio::spawn(listen_forever(config, sender));
        Self { changes }
    }

    /// Wait until something was appended since the last call, or until `timeout` passes
    /// (the polling fallback). Returns true when woken by a notification.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.changes.changed()).await,
            Ok(Ok(()))
        )
    }
}

/// The first wait before listening again; it doubles up to [`MAX_BACKOFF`], and starts over
/// once a LISTEN succeeded.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a server in recovery (a standby, which cannot LISTEN) is asked again: it may be
/// promoted.
const STANDBY_BACKOFF: Duration = Duration::from_secs(30);

async fn listen_forever(config: StoreConfig, sender: watch::Sender<u64>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if sender.is_closed() {
            return;
        }
        match listen_once(&config, &sender, &mut backoff).await {
            Ok(()) => return,
            Err(Refused::Standby(why)) => {
                tracing::warn!(
                    error = %why,
                    "the listener's server is a standby, which cannot LISTEN: point it at the \
                     primary; subscribers poll meanwhile"
                );
                tokio::select! {
                    () = tokio::time::sleep(STANDBY_BACKOFF) => {}
                    () = sender.closed() => return,
                }
            }
            Err(Refused::Other(error)) => {
                tracing::warn!(error = %error, "listening for new events failed; reconnecting");
                // Whatever was appended while disconnected: let subscribers look.
                sender.send_modify(|n| *n += 1);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = sender.closed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Why listening stopped.
enum Refused {
    /// The server is in recovery: LISTEN is refused there (SQLSTATE 25006). Not a primary
    /// turned read-only, so nothing else of the process is touched.
    Standby(String),
    Other(crate::error::Error),
}

impl<E: Into<crate::error::Error>> From<E> for Refused {
    fn from(error: E) -> Self {
        Self::Other(error.into())
    }
}

/// Listen on one connection until it breaks (`Err`) or nobody waits any more (`Ok`).
async fn listen_once(
    config: &StoreConfig,
    sender: &watch::Sender<u64>,
    backoff: &mut Duration,
) -> Result<(), Refused> {
    let opened = std::time::Instant::now();
    let (client, mut connection) = config.connect_with_connection().await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {NOTIFY_CHANNEL}");
    let listen = client.batch_execute(&statement);
    // The connection must be polled for LISTEN to complete.
    tokio::pin!(listen);
    loop {
        tokio::select! {
            result = &mut listen => match result {
                Ok(()) => break,
                Err(error) => {
                    // Not through the store's error conversion: that takes 25006 for a primary
                    // that turned read-only, and discards every connection of the process.
                    if let Some(db) = error.as_db_error()
                        && db.code().code() == crate::error::sqlstate::READ_ONLY_TRANSACTION
                    {
                        return Err(Refused::Standby(db.message().to_owned()));
                    }
                    return Err(error.into());
                }
            },
            message = messages.next() => match message {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(Refused::Other(crate::error::Error::Unavailable("connection closed".into()))),
            },
        }
    }
    sender.send_modify(|n| *n += 1);
    *backoff = FIRST_BACKOFF;
    // A connection to a server that has since stopped being the primary hears nothing the new
    // one sends: listen again once the store noticed the change (`crate::recycle`).
    let mut stale_check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => sender.send_modify(|n| *n += 1),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    crate::connect::connection_ended(&e);
                    return Err(e.into());
                }
                None => {
                    crate::connect::connection_lost();
                    return Err(Refused::Other(crate::error::Error::Unavailable("connection closed".into())));
                }
            },
            _ = stale_check.tick() => {
                if crate::recycle::is_stale(opened) {
                    return Err(Refused::Other(crate::error::Error::Unavailable(
                        "the database server changed".into(),
                    )));
                }
            }
            () = sender.closed() => return Ok(()),
        }
    }
}

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
    /// dropped.
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

async fn listen_forever(config: StoreConfig, sender: watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if sender.is_closed() {
            return;
        }
        match listen_once(&config, &sender).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(error = %error, "listening for new events failed; reconnecting");
                // Whatever was appended while disconnected: let subscribers look.
                sender.send_modify(|n| *n += 1);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = sender.closed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Listen on one connection until it breaks (`Err`) or nobody waits any more (`Ok`).
async fn listen_once(
    config: &StoreConfig,
    sender: &watch::Sender<u64>,
) -> Result<(), crate::error::Error> {
    let pg_config = config.pg_config()?;
    let opened = std::time::Instant::now();
    let (client, mut connection) = pg_config.connect(config.tls_off_thread().await?).await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {NOTIFY_CHANNEL}");
    let listen = client.batch_execute(&statement);
    // The connection must be polled for LISTEN to complete.
    tokio::pin!(listen);
    loop {
        tokio::select! {
            result = &mut listen => { result?; break; }
            message = messages.next() => match message {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(crate::error::Error::Unavailable("connection closed".into())),
            },
        }
    }
    sender.send_modify(|n| *n += 1);
    // A connection to a server that has since stopped being the primary hears nothing the new
    // one sends: listen again once the store noticed the change (`crate::recycle`).
    let mut stale_check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => sender.send_modify(|n| *n += 1),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(crate::error::Error::Unavailable("connection closed".into())),
            },
            _ = stale_check.tick() => {
                if crate::recycle::is_stale(opened) {
                    return Err(crate::error::Error::Unavailable(
                        "the database server changed".into(),
                    ));
                }
            }
            () = sender.closed() => return Ok(()),
        }
    }
}

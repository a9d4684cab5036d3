//! Readiness: the database answers on a connection of its own and has every migration this
//! binary knows. A dedicated connection, so that a busy pool does not look like an outage.

use std::time::Duration;

use crate::config::StoreConfig;

/// Checks the database for readiness endpoints and health services.
#[derive(Debug)]
pub struct ReadinessProbe {
    config: StoreConfig,
    client: Option<tokio_postgres::Client>,
    /// When `client` was opened: a connection opened before the server changed is replaced.
    opened: std::time::Instant,
}

impl ReadinessProbe {
    /// A probe connecting with `config`.
    pub fn new(config: StoreConfig) -> Self {
        Self {
            config,
            client: None,
            opened: std::time::Instant::now(),
        }
    }

    /// `Ok` when the database is reachable and migrated, else why not (one line).
    pub async fn check(&mut self) -> Result<(), String> {
        if self
            .client
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
            || crate::recycle::is_stale(self.opened)
        {
            // Never go back to a connection given up on: a failed reconnect must not leave
            // the stale one in place to answer the next round as if it were new.
            self.client = None;
            self.opened = std::time::Instant::now();
            // With a margin, so that the connector's own answer, which says why, comes first.
            let limit = self.config.connect_time() + Duration::from_secs(1);
            let connect = tokio::time::timeout(limit, self.config.connect());
            self.client = match connect.await {
                Ok(Ok(client)) => Some(client),
                Ok(Err(e)) => return Err(format!("database: {e}")),
                Err(_) => return Err("database: connect timed out".to_owned()),
            };
        }
        let Some(client) = self.client.as_ref() else {
            return Err("database: no connection".to_owned());
        };
        match tokio::time::timeout(Duration::from_secs(2), crate::migrate::is_current(client)).await
        {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => {
                Err("database migrations are not current (run `order-grpc migrate`)".to_owned())
            }
            Ok(Err(e)) => {
                self.client = None;
                Err(format!("database: {e}"))
            }
            Err(_) => {
                self.client = None;
                Err("database: no answer within 2 s".to_owned())
            }
        }
    }
}

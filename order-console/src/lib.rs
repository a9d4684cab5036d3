//! The health board of the order ledger: one read-only web console where engineers see the
//! whole system live.
//!
//! - **Services**: every admin endpoint scraped on an interval (`/readyz`, `/metrics`):
//!   readiness, version, uptime, and the recent rates ([`services`]).
//! - **Flow**: orders placed, completed and cancelled per minute (from the log), orders per
//!   state drawn as the state machine, the orders waiting longest ([`db`], [`board`]).
//! - **Subscriptions**: checkpoints, lag, leases, last errors, a running replay
//!   ([`subscriptions`]).
//! - **Queues**: depths, the oldest message's age, the dead letters read in place
//!   ([`queues`]).
//! - **Orders**: search by order or customer id; an order's read-model row and timeline.
//! - **Alarms**: the CloudWatch alarms evaluated locally ([`alarms`]).
//!
//! It reads through a database role that cannot write (checked at start) and the services'
//! admin endpoints; it never calls the gRPC API and changes nothing. Pages are rendered on the
//! server with every value escaped ([`web`]); a strict Content Security Policy allows scripts
//! from the console's own origin only.

pub mod alarms;
pub mod board;
pub mod config;
pub mod db;
pub mod prom;
pub mod queues;
pub mod services;
pub mod subscriptions;
pub mod text;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use board::Board;
use config::Settings;

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
    /// The database refused or is unusable for the console.
    #[error("{0}")]
    Database(#[from] db::Error),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A console ready to serve.
#[derive(Debug)]
pub struct Console {
    listener: TcpListener,
    addr: SocketAddr,
    board: Arc<Board>,
    auth: Arc<web::auth::Auth>,
}

impl Console {
    /// Check the database role (read-only, or refuse), bind the address. A database, services
    /// and queues that do not answer yet are shown as such; they do not stop the console.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let sqs = if settings.queue_url.is_some() || settings.dlq_url.is_some() {
            Some(order_runtime::sqs::client().await)
        } else {
            None
        };
        Self::build_with_sqs(settings, sqs).await
    }

    /// [`Console::build`] with a given SQS client (tests point it at an emulator); `None`
    /// reads no queue.
    pub async fn build_with_sqs(
        settings: Settings,
        sqs: Option<aws_sdk_sqs::Client>,
    ) -> Result<Self, StartError> {
        let db = db::Db::new(&settings.store).map_err(StartError::Config)?;
        match db.check_read_only().await {
            Ok(()) => {}
            Err(error @ db::Error::NotReadOnly(_)) => return Err(StartError::Database(error)),
            // Not reachable or not migrated yet: checked again before the first read; the
            // pages say what is wrong meanwhile, and /readyz answers 503.
            Err(error) => {
                tracing::warn!(%error, "the database cannot tell yet whether the console's role is read-only");
            }
        }
        let listener =
            TcpListener::bind(settings.addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: settings.addr,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: settings.addr,
            source,
        })?;
        let auth = Arc::new(web::auth::Auth::new(&settings.tokens, settings.login_limit));
        let board = Arc::new(Board::new(settings, db, sqs));
        Ok(Self {
            listener,
            addr,
            board,
            auth,
        })
    }

    /// The bound address (port 0 picks one).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Scrape and serve until `shutdown` resolves.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let scraper = tokio::spawn(self.board.clone().run());
        let app = web::router(web::AppState {
            board: self.board,
            auth: self.auth,
            ready: Default::default(),
        });
        // The peer's address: the limit of failed sign-ins is per client address.
        let result = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        scraper.abort();
        result
    }
}

//! The admin HTTP server: `/healthz` (the process runs), `/readyz` (it can do its job),
//! `/metrics` (Prometheus text). It listens on its own address, apart from the service port.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Whether the binary can do its job, and if not, why (shown by `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready: `/readyz` answers 200.
    Ready,
    /// Not ready, and why: `/readyz` answers 503 with the reason.
    NotReady(String),
}

impl Readiness {
    /// Whether it is [`Readiness::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready)
    }
}

/// A running admin server.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Bind `addr` (port 0 picks a free port) and serve until `shutdown` resolves or the
    /// server is dropped.
    pub async fn start(
        addr: SocketAddr,
        readiness: watch::Receiver<Readiness>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr} (admin port): {e}"),
            )
        })?;
        let addr = listener.local_addr()?;
        crate::telemetry::metrics();
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(readiness);
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "admin server stopped");
            }
        });
        Ok(Self { addr, task })
    }

    /// The address it listens on (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn readyz(State(readiness): State<watch::Receiver<Readiness>>) -> impl IntoResponse {
    match &*readiness.borrow() {
        Readiness::Ready => (StatusCode::OK, "ready\n".to_owned()),
        Readiness::NotReady(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics().render(),
    )
}

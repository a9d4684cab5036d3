//! A projector as a service: the [`Projector`] plus the admin server (`/healthz`, `/readyz`,
//! `/metrics`) and readiness (database reachable and migrated, every sink's destination
//! answering), until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use order_runtime::{AdminServer, Readiness};
use order_store::ReadinessProbe;
use tokio::sync::watch;

use crate::projector::{Projector, Running};
use crate::subscription::Subscription;

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The admin server could not listen.
    #[error("the admin server cannot listen: {0}")]
    Admin(String),
}

/// A started projector service.
pub struct App {
    admin: AdminServer,
    running: Running,
    grace: Duration,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("admin", &self.admin.addr())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Serve the admin endpoints on `admin_addr` (port 0: any free port) and start
    /// `projector`. After a shutdown signal, subscriptions get `grace` to finish their page.
    pub async fn start(
        projector: Projector,
        admin_addr: SocketAddr,
        grace: Duration,
    ) -> Result<Self, StartError> {
        let (readiness, readiness_rx) = watch::channel(Readiness::NotReady("starting".to_owned()));
        let admin = AdminServer::start(admin_addr, readiness_rx)
            .await
            .map_err(|e| StartError::Admin(e.to_string()))?;
        // The recorder is installed now: the store's rare counters from the start, at 0.
        order_store::register_metrics();
        let probe = ReadinessProbe::new(projector.store().config().clone());
        let subscriptions = projector.subscriptions().to_vec();
        let running = projector.start();
        tokio::spawn(watch_readiness(
            probe,
            subscriptions,
            readiness,
            running.shutdown_signal(),
        ));
        Ok(Self {
            admin,
            running,
            grace,
        })
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.addr()
    }

    /// Run until `signal`, then let every subscription finish its page and release its lease.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down: finishing the current pages, releasing leases");
        self.running.stop(self.grace).await;
        tracing::info!("projector stopped");
    }
}

/// How long a sink's `ready` may take before it counts as not ready.
const SINK_READY_TIMEOUT: Duration = Duration::from_secs(5);

/// A subscription's `ready`, bounded: one that does not answer within `limit`, or panics, is
/// not ready (and the readiness loop goes on: its last state must not freeze).
async fn sink_ready(subscription: &Subscription, limit: Duration) -> Result<(), String> {
    use futures::FutureExt as _;
    let ready = std::panic::AssertUnwindSafe(subscription.ready()).catch_unwind();
    match tokio::time::timeout(limit, ready).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(format!(
            "subscription {}: its readiness check panicked",
            subscription.name()
        )),
        Err(_) => Err(format!(
            "subscription {}: its readiness check did not answer within {} s",
            subscription.name(),
            limit.as_secs_f64()
        )),
    }
}

/// Ready while the database is reachable and migrated and every sink's destination answers.
async fn watch_readiness(
    mut probe: ReadinessProbe,
    subscriptions: Vec<Subscription>,
    readiness: watch::Sender<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mut state = match probe.check().await {
            Ok(()) => Readiness::Ready,
            Err(why) => Readiness::NotReady(why),
        };
        for subscription in &subscriptions {
            if state != Readiness::Ready {
                break;
            }
            if let Err(why) = sink_ready(subscription, SINK_READY_TIMEOUT).await {
                state = Readiness::NotReady(why);
            }
        }
        if *readiness.borrow() != state {
            match &state {
                Readiness::Ready => tracing::info!("ready"),
                Readiness::NotReady(why) => tracing::warn!(reason = %why, "not ready"),
            }
        }
        let _ = readiness.send(state);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Categories, Page, Sink, Undelivered};
    use order_domain::{Order, OrderEvent};

    /// A sink whose readiness check hangs or panics.
    struct Odd {
        panics: bool,
    }

    impl Sink for Odd {
        type Event = OrderEvent;
        fn name(&self) -> &str {
            "odd"
        }
        fn categories(&self) -> Categories {
            Categories::of::<Order>()
        }
        async fn deliver(&self, _page: &Page<OrderEvent>) -> Result<(), Undelivered> {
            Ok(())
        }
        async fn ready(&self) -> Result<(), String> {
            if self.panics {
                panic!("a sink's readiness check that panics");
            }
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_sink_readiness_check_that_hangs_or_panics_is_not_ready() {
        let hangs = Subscription::sink(Odd { panics: false });
        let why = sink_ready(&hangs, Duration::from_millis(50))
            .await
            .expect_err("a check that never answers");
        assert!(why.contains("did not answer"), "{why}");
        let panics = Subscription::sink(Odd { panics: true });
        let why = sink_ready(&panics, Duration::from_secs(5))
            .await
            .expect_err("a check that panics");
        assert!(why.contains("panicked"), "{why}");
    }
}

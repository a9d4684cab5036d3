//! `grpc.health.v1.Health` as the health-checking protocol describes it, around tonic-health's
//! service: `Watch` of a service this server does not know answers `SERVICE_UNKNOWN` on a
//! stream that stays open (tonic-health ends it with NOT_FOUND), and every `Watch` stream ends
//! when the server begins to shut down (a known service's with NOT_SERVING last), so that an
//! idle watcher never holds the drain of in-flight calls until its grace period is over. `Check` is tonic-health's (an unknown
//! service is NOT_FOUND there, as the protocol says).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health as HealthApi;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthService;

/// The health service order-grpc serves.
#[derive(Debug)]
pub struct Health {
    inner: HealthService,
    shutdown: watch::Receiver<bool>,
}

impl Health {
    /// Around `inner`; every `Watch` stream ends once `shutdown` holds `true`.
    pub fn new(inner: HealthService, shutdown: watch::Receiver<bool>) -> Self {
        Self { inner, shutdown }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl HealthApi for Health {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut shutdown = self.shutdown.clone();
        let stopping = async move {
            // Ends when shutdown begins, or when the sender is gone (the server is).
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        };
        let not_serving = ServingStatus::NotServing as i32;
        let stream: WatchStream = match self.inner.watch(request).await {
            Ok(response) => {
                // The last status sent: a watcher learns of the shutdown (NOT_SERVING) before
                // its stream ends, whichever of the two the server did first.
                let last = Arc::new(AtomicI32::new(-1));
                let seen = last.clone();
                let statuses = response.into_inner().inspect(move |item| {
                    if let Ok(message) = item {
                        seen.store(message.status, Ordering::Relaxed);
                    }
                });
                let farewell = futures::stream::once(async move {
                    (last.load(Ordering::Relaxed) != not_serving).then_some(Ok(
                        HealthCheckResponse {
                            status: not_serving,
                        },
                    ))
                })
                .filter_map(std::future::ready);
                Box::pin(statuses.take_until(stopping).chain(farewell))
            }
            Err(status) if status.code() == Code::NotFound => {
                let unknown = HealthCheckResponse {
                    status: ServingStatus::ServiceUnknown as i32,
                };
                Box::pin(
                    futures::stream::once(async move { Ok(unknown) })
                        .chain(futures::stream::pending())
                        .take_until(stopping),
                )
            }
            Err(status) => return Err(status),
        };
        Ok(Response::new(stream))
    }
}

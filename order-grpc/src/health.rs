//! `grpc.health.v1.Health` as the health-checking protocol describes it, around tonic-health's
//! service: `Watch` of a service this server does not know answers `SERVICE_UNKNOWN` on a stream
//! that stays open (tonic-health ends it with NOT_FOUND), and every `Watch` stream ends when the
//! server begins to shut down (a known service's with NOT_SERVING last), so that an idle watcher
//! never holds the drain of in-flight calls until its grace period is over. `Check` is
//! tonic-health's (an unknown service is NOT_FOUND there, as the protocol says).
//!
//! Health needs no token and is outside the concurrency limit (a probe must get through a
//! busy server), so the `Watch` streams open at once are capped instead
//! ([`MAX_WATCHERS`]): past it, RESOURCE_EXHAUSTED, and an anonymous caller cannot hold an
//! unbounded number of streams open.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use futures::{Stream, StreamExt};
use tokio::sync::{Semaphore, watch};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health as HealthApi;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthService;

/// How many `Watch` streams may be open at once (a load balancer or orchestrator holds one or
/// two per instance).
pub const MAX_WATCHERS: usize = 256;

/// The health service order-grpc serves.
#[derive(Debug)]
pub struct Health {
    inner: HealthService,
    shutdown: watch::Receiver<bool>,
    watchers: Arc<Semaphore>,
    max_watchers: usize,
}

impl Health {
    /// Around `inner`; every `Watch` stream ends once `shutdown` holds `true`; at most
    /// [`MAX_WATCHERS`] at once.
    pub fn new(inner: HealthService, shutdown: watch::Receiver<bool>) -> Self {
        Self::with_max_watchers(inner, shutdown, MAX_WATCHERS)
    }

    /// The same, with another cap on open `Watch` streams.
    pub fn with_max_watchers(
        inner: HealthService,
        shutdown: watch::Receiver<bool>,
        max_watchers: usize,
    ) -> Self {
        Self {
            inner,
            shutdown,
            watchers: Arc::new(Semaphore::new(max_watchers)),
            max_watchers,
        }
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
        let Ok(watcher) = self.watchers.clone().try_acquire_owned() else {
            metrics::counter!("order_grpc_requests_shed_total").increment(1);
            return Err(Status::resource_exhausted(format!(
                "{} health Watch streams are open, the most this server holds; use Check, or \
                 retry with backoff",
                self.max_watchers
            )));
        };
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
        // The permit lives as long as the stream.
        let stream: WatchStream = Box::pin(stream.inspect(move |_| {
            let _ = &watcher;
        }));
        Ok(Response::new(stream))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn watch_streams_are_capped_and_a_closed_one_frees_its_place() {
        let reporter = tonic_health::server::HealthReporter::new();
        let inner = HealthService::from_health_reporter(reporter);
        let (_stop, shutdown) = watch::channel(false);
        let health = Health::with_max_watchers(inner, shutdown, 2);
        let watch = || {
            health.watch(Request::new(HealthCheckRequest {
                service: String::new(),
            }))
        };
        let first = watch().await.unwrap();
        let second = watch().await.unwrap();
        let Err(refused) = watch().await else {
            panic!("a third watcher got a stream");
        };
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        drop(first);
        let third = watch().await.unwrap();
        assert!(watch().await.is_err());
        drop((second, third));
        assert!(watch().await.is_ok());
    }
}

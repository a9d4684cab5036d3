//! The load balancer's health check: `/AWS.ALB/healthcheck` answers grpc-status 0 (OK) while
//! the service is ready (database reachable and migrated) and 14 (UNAVAILABLE) otherwise.
//!
//! An AWS ALB with a gRPC target group judges a target by the grpc-status of its health check
//! alone. `grpc.health.v1.Health/Check` reports NOT_SERVING inside a grpc-status 0 answer, so
//! the ALB would count a task that cannot reach or migrate its database as healthy; that
//! service stays as it is for the probes that read its answer. This path is the ALB's own
//! default for gRPC health checks; it is answered before the gateway (no bearer token, never
//! shed), with the status in a trailers-only response and no message, and reveals nothing
//! but ready / not ready (the reason is on the admin port's `/readyz`).

use std::task::{Context, Poll};

use futures::future::Either;
use http::{Request, Response};
use order_runtime::Readiness;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{Layer, Service};

/// The path the load balancer's target groups probe.
pub const PATH: &str = "/AWS.ALB/healthcheck";

/// Wraps the server's services; answers [`PATH`] from the readiness it watches.
#[derive(Debug, Clone)]
pub struct AlbHealthLayer {
    readiness: watch::Receiver<Readiness>,
}

impl AlbHealthLayer {
    pub fn new(readiness: watch::Receiver<Readiness>) -> Self {
        Self { readiness }
    }
}

impl<S> Layer<S> for AlbHealthLayer {
    type Service = AlbHealth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AlbHealth {
            inner,
            readiness: self.readiness.clone(),
        }
    }
}

/// See [`AlbHealthLayer`].
#[derive(Debug, Clone)]
pub struct AlbHealth<S> {
    inner: S,
    readiness: watch::Receiver<Readiness>,
}

/// The answer to a health check: trailers-only, grpc-status 0 or 14.
pub fn answer(readiness: &Readiness) -> Response<Body> {
    let status = if readiness.is_ready() {
        Status::new(Code::Ok, "ready")
    } else {
        Status::unavailable("not ready")
    };
    status.into_http()
}

impl<S, B> Service<Request<B>> for AlbHealth<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<std::future::Ready<Result<Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.uri().path() == PATH {
            let response = answer(&self.readiness.borrow());
            Either::Left(std::future::ready(Ok(response)))
        } else {
            Either::Right(self.inner.call(request))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn grpc_status(response: &Response<Body>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    async fn probe(readiness: Readiness, path: &str) -> Response<Body> {
        let (_tx, rx) = watch::channel(readiness);
        let inner = tower::service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(Status::unimplemented("inner").into_http())
        });
        let service = AlbHealthLayer::new(rx).layer(inner);
        let request = Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/grpc")
            .body(Body::empty())
            .unwrap();
        service.oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn ready_is_grpc_status_ok() {
        let response = probe(Readiness::Ready, PATH).await;
        assert_eq!(response.status(), 200);
        assert_eq!(grpc_status(&response), Some("0"));
    }

    #[tokio::test]
    async fn not_ready_is_unavailable_without_the_reason() {
        let response = probe(
            Readiness::NotReady("database: connection refused at db.internal".to_owned()),
            PATH,
        )
        .await;
        assert_eq!(grpc_status(&response), Some("14"));
        let message = response.headers().get("grpc-message").unwrap();
        assert_eq!(message, "not%20ready");
    }

    #[tokio::test]
    async fn other_paths_pass_through() {
        let response = probe(Readiness::Ready, "/grpc.health.v1.Health/Check").await;
        assert_eq!(grpc_status(&response), Some("12"));
    }
}

//! Calls spread over several endpoints, around the ones that cannot be reached.
//!
//! tonic's own balancer (`Channel::balance_list`) keeps sending calls to an endpoint that
//! refuses connections: a lazily connected endpoint reports itself ready even after its
//! connection failed, so power-of-two-choices keeps choosing it (about one call in three, with
//! two endpoints and one down). Here calls go round the endpoints in turn, and an endpoint
//! whose call failed in the transport (no connection, a TLS handshake refused, a connection
//! that broke; not a call that only ran out of time) is left out. A task of its own asks it a
//! gRPC health check over the endpoint's own channel (so TLS and HTTP/2 are tried as calls try
//! them), after 0.25 s, doubling to 5 s with each failure since its last successful call,
//! until the endpoint answers anything (an answer of the service, even an error, shows it is
//! reachable): then calls go to it again. No call is spent finding out whether an endpoint is
//! back. When every endpoint is left out, calls go to all of them in turn (and fail fast, for
//! the retry policy to deal with); a call that succeeds on one brings it back at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::{Service, ServiceExt};

/// The first wait before an endpoint left out is tried again, and the longest.
const FIRST_PROBE: Duration = Duration::from_millis(250);
const LONGEST_PROBE: Duration = Duration::from_secs(5);

/// A [`Service`] over several endpoints' channels.
#[derive(Clone)]
pub(crate) struct Endpoints {
    shared: Arc<Shared>,
}

struct Shared {
    members: Vec<Member>,
    next: AtomicUsize,
    connect_timeout: Duration,
}

struct Member {
    /// `host:port`, for the log.
    address: String,
    channel: Channel,
    /// Left out of the rotation (a probe task is trying it).
    down: AtomicBool,
    /// Transport failures since its last successful call: the probe's first wait grows with
    /// them (an endpoint that accepts health checks but fails calls is not brought back four
    /// times a second).
    failures: AtomicU32,
}

impl Endpoints {
    /// `endpoints`: each endpoint's URL and its (lazily connecting) channel.
    pub(crate) fn new(endpoints: Vec<(http::Uri, Channel)>, connect_timeout: Duration) -> Self {
        let members = endpoints
            .into_iter()
            .map(|(uri, channel)| Member {
                address: address(&uri),
                channel,
                down: AtomicBool::new(false),
                failures: AtomicU32::new(0),
            })
            .collect();
        Self {
            shared: Arc::new(Shared {
                members,
                next: AtomicUsize::new(0),
                connect_timeout,
            }),
        }
    }

    /// The next endpoint in turn that is not left out; when all are, the next in turn.
    fn pick(&self) -> usize {
        let members = &self.shared.members;
        let start = self.shared.next.fetch_add(1, Ordering::Relaxed) % members.len();
        (0..members.len())
            .map(|step| (start + step) % members.len())
            .find(|&i| !members[i].down.load(Ordering::Acquire))
            .unwrap_or(start)
    }
}

/// `host:port` of an endpoint's URI (the scheme's port when it names none).
fn address(uri: &http::Uri) -> String {
    let host = uri.host().unwrap_or("localhost");
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Whether a failed call says the endpoint cannot be reached: any transport failure but
/// the call's own deadline running out (a slow answer, a read-your-writes wait), which says
/// nothing about the endpoint.
fn unreachable(error: &tonic::transport::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<tonic::TimeoutExpired>() {
            return false;
        }
        source = cause.source();
    }
    true
}

/// Leave member `index` out, and try it again from a task of its own until it answers a health
/// check. The task ends with the client (it holds the members only weakly between tries).
fn leave_out(shared: &Arc<Shared>, index: usize) {
    let member = &shared.members[index];
    let failures = member
        .failures
        .fetch_add(1, Ordering::Relaxed)
        .saturating_add(1);
    if member.down.swap(true, Ordering::AcqRel) {
        return; // already left out: its probe runs
    }
    tracing::debug!(
        endpoint = %member.address,
        "endpoint unreachable; calls go to the others until it answers"
    );
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let connect_timeout = shared.connect_timeout;
    let mut wait = FIRST_PROBE
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(LONGEST_PROBE);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(wait).await;
            let Some(channel) = weak
                .upgrade()
                .map(|shared| shared.members[index].channel.clone())
            else {
                return;
            };
            let mut health = HealthClient::new(channel);
            let check = health.check(HealthCheckRequest {
                service: String::new(),
            });
            let reachable = match tokio::time::timeout(connect_timeout, check).await {
                Ok(Ok(_)) => true,
                // The service answered (NOT_SERVING, UNIMPLEMENTED, ...): it is reachable.
                Ok(Err(status)) => std::error::Error::source(&status).is_none(),
                Err(_) => false,
            };
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let member = &shared.members[index];
            if reachable {
                member.down.store(false, Ordering::Release);
                tracing::debug!(endpoint = %member.address, "endpoint reachable again");
                return;
            }
            wait = (wait * 2).min(LONGEST_PROBE);
        }
    });
}

impl Service<http::Request<Body>> for Endpoints {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call waits for its own endpoint's channel (a buffer) below.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let index = self.pick();
        let shared = self.shared.clone();
        Box::pin(async move {
            let member = &shared.members[index];
            let answer = member.channel.clone().oneshot(request).await;
            match &answer {
                Ok(_) => {
                    member.failures.store(0, Ordering::Relaxed);
                    member.down.store(false, Ordering::Release);
                }
                Err(error) if unreachable(error) => leave_out(&shared, index),
                Err(_) => {}
            }
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoints_address_has_its_port_or_the_schemes() {
        for (uri, expected) in [
            ("http://127.0.0.1:50051", "127.0.0.1:50051"),
            ("https://orders.example.com", "orders.example.com:443"),
            ("http://orders", "orders:80"),
            ("http://[::1]:50051", "[::1]:50051"),
        ] {
            assert_eq!(address(&uri.parse().unwrap()), expected, "{uri}");
        }
    }
}

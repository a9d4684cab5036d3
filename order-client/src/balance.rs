//! Calls spread over several endpoints, around the ones that cannot be reached.
//!
//! tonic's own balancer (`Channel::balance_list`) keeps sending calls to an endpoint that
//! refuses connections: a lazily connected endpoint reports itself ready even after its
//! connection failed, so power-of-two-choices keeps choosing it (about one call in three, with
//! two endpoints and one down). Here calls go round the endpoints in turn, and an endpoint
//! whose call failed in the transport (no connection, a TLS handshake refused, a connection
//! that broke) is left out; after a call that only ran out of time, when a health check then
//! gets no answer from it (a host gone silent). A task of its own asks it a
//! gRPC health check over the endpoint's own channel (so TLS and HTTP/2 are tried as calls try
//! them), after 0.25 s, doubling to 5 s with each failure since its last successful call,
//! until the endpoint answers anything (an answer of the service, even an error, shows it is
//! reachable): then calls go to it again. No call is spent finding out whether an endpoint is
//! back. When every endpoint is left out, calls go to all of them in turn (and fail fast, for
//! the retry policy to deal with); a call that succeeds on one brings it back at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
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
    /// Times it was left out since its last successful call: the probe's first wait grows
    /// with them (an endpoint that answers health checks but fails calls is not brought back
    /// four times a second).
    failures: AtomicU32,
    /// Which leaving-out the running probe task belongs to: a task of an earlier one (the
    /// endpoint came back by a successful call meanwhile) ends when it sees another.
    epoch: AtomicU64,
    /// A health check runs after a call that ran out of time on it.
    checking: AtomicBool,
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
                epoch: AtomicU64::new(0),
                checking: AtomicBool::new(false),
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

/// Whether a failed call ran out of its own deadline (a slow answer, a read-your-writes
/// wait), which alone says nothing about its endpoint; any other transport failure (no
/// connection, a TLS handshake refused, a connection that broke) says it cannot be reached.
fn timed_out(error: &tonic::transport::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether `channel` answers a health check within `within`: anything the service answers
/// (SERVING, NOT_SERVING, UNIMPLEMENTED, an error status) shows it reachable; a transport
/// failure or no answer does not. Over the endpoint's own channel, so TLS and HTTP/2 are
/// tried as calls try them (order-grpc answers health checks without a token).
async fn answers(mut channel: Channel, within: Duration) -> bool {
    let check = async {
        // Ready first: a failed `ready` would come back from the generated client as a status
        // with no transport source, as if the service had answered.
        if channel.ready().await.is_err() {
            return false;
        }
        match HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
        {
            Ok(_) => true,
            Err(status) => std::error::Error::source(&status).is_none(),
        }
    };
    tokio::time::timeout(within, check).await.unwrap_or(false)
}

/// Leave member `index` out, and try it again from a task of its own until it answers a health
/// check. The task ends with the client (it holds the members only weakly between tries), or
/// when the endpoint came back by a successful call meanwhile.
fn leave_out(shared: &Arc<Shared>, index: usize) {
    let member = &shared.members[index];
    if member.down.swap(true, Ordering::AcqRel) {
        return; // already left out: its probe runs
    }
    let failures = member
        .failures
        .fetch_add(1, Ordering::Relaxed)
        .saturating_add(1);
    let epoch = member.epoch.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
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
            // This leaving-out still stands?
            let current = |shared: &Shared| {
                let member = &shared.members[index];
                member.down.load(Ordering::Acquire) && member.epoch.load(Ordering::Acquire) == epoch
            };
            let Some(channel) = weak
                .upgrade()
                .and_then(|shared| current(&shared).then(|| shared.members[index].channel.clone()))
            else {
                return;
            };
            let reachable = answers(channel, connect_timeout).await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            if !current(&shared) {
                return;
            }
            if reachable {
                let member = &shared.members[index];
                member.down.store(false, Ordering::Release);
                tracing::debug!(endpoint = %member.address, "endpoint reachable again");
                return;
            }
            wait = (wait * 2).min(LONGEST_PROBE);
        }
    });
}

/// After a call that ran out of time on member `index`: one health check (at a time), and the
/// endpoint left out only if it does not answer (a host gone silent: its calls would otherwise
/// wait their whole deadline until the connection's keepalive gives up).
fn check_after_timeout(shared: &Arc<Shared>, index: usize) {
    let member = &shared.members[index];
    if member.down.load(Ordering::Acquire) || member.checking.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let channel = member.channel.clone();
    let within = shared.connect_timeout;
    tokio::spawn(async move {
        let reachable = answers(channel, within).await;
        if let Some(shared) = weak.upgrade() {
            shared.members[index]
                .checking
                .store(false, Ordering::Release);
            if !reachable {
                leave_out(&shared, index);
            }
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
                // Loads first: stores on every call would bounce the cache line between cores.
                Ok(_) => {
                    if member.failures.load(Ordering::Relaxed) != 0 {
                        member.failures.store(0, Ordering::Relaxed);
                    }
                    if member.down.load(Ordering::Relaxed) {
                        member.down.store(false, Ordering::Release);
                    }
                }
                Err(error) if timed_out(error) => check_after_timeout(&shared, index),
                Err(_) => leave_out(&shared, index),
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

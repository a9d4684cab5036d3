//! Calls spread over several endpoints, around the ones that cannot be reached.
//!
//! tonic's own balancer (`Channel::balance_list`) keeps sending calls to an endpoint that
//! refuses connections: a lazily connected endpoint reports itself ready even after its
//! connection failed, so power-of-two-choices keeps choosing it (about one call in three, with
//! two endpoints and one down). Here calls go round the endpoints in turn, an endpoint whose
//! call failed in the transport (no connection, or one that broke) is left out, and a task of
//! its own tries to open a TCP connection to it, at growing intervals (0.25 s, doubling to 5 s),
//! until one opens: then calls go to it again. No call is spent finding out whether an endpoint
//! is back. When every endpoint is left out, calls go to all of them in turn (and fail fast,
//! for the retry policy to deal with).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::transport::Channel;
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
    /// `host:port`, for the TCP probe.
    address: String,
    channel: Channel,
    /// Left out of the rotation (a probe task is trying it).
    down: AtomicBool,
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
        let start = self.shared.next.fetch_add(1, Ordering::Relaxed);
        (0..members.len())
            .map(|step| (start + step) % members.len())
            .find(|&i| !members[i].down.load(Ordering::Acquire))
            .unwrap_or(start % members.len())
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

/// Leave member `index` out, and try it again from a task of its own until a TCP connection
/// to it opens. The task ends with the client (it holds the members only weakly).
fn leave_out(shared: &Arc<Shared>, index: usize) {
    if shared.members[index].down.swap(true, Ordering::AcqRel) {
        return; // already left out: its probe runs
    }
    tracing::debug!(
        endpoint = %shared.members[index].address,
        "endpoint unreachable; calls go to the others until it answers"
    );
    let weak: Weak<Shared> = Arc::downgrade(shared);
    tokio::spawn(async move {
        let mut wait = FIRST_PROBE;
        loop {
            tokio::time::sleep(wait).await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let member = &shared.members[index];
            let connect = tokio::net::TcpStream::connect(member.address.clone());
            if let Ok(Ok(_)) = tokio::time::timeout(shared.connect_timeout, connect).await {
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
            let channel = shared.members[index].channel.clone();
            let answer = channel.oneshot(request).await;
            if answer.is_err() {
                leave_out(&shared, index);
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

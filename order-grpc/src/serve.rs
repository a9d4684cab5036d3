//! The HTTP/2 server under the gRPC services: accepts TCP (and TLS) connections and serves
//! each with hyper, the gateway outermost.
//!
//! tonic's own `Server` wraps whatever layers it is given in a timer of its own for the
//! caller's `grpc-timeout`, which answers CANCELLED ("Timeout expired") when it fires. The
//! gRPC specification (and our contract) says an expired call is DEADLINE_EXCEEDED, and the
//! gateway answers that; but with two timers for one deadline, the task could be woken by
//! tonic's first on a loaded machine, and the caller was told CANCELLED. Here there is one
//! timer, the gateway's: the services are tonic's [`Routes`](tonic::service::Routes) served
//! by hyper directly, with the same HTTP/2 settings tonic's server uses (hyper's defaults,
//! HTTP/2 only), plus `TCP_NODELAY` on every connection, and the settings of
//! [`ConnectionSettings`]: HTTP/2 keepalive pings and TCP keepalive, so that a client whose
//! network path went silent (no FIN, no RST: a NAT entry or a load balancer's flow dropped)
//! does not hold its calls and SubscribeEvents slots for ever, and a bound on streams a client
//! resets before the server took them that a paused server's clients stay within.
//!
//! Shutdown is graceful: the listening socket is closed at once (new clients are refused, not
//! left hanging), every open connection is sent GOAWAY and finishes its calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tonic::transport::server::TcpConnectInfo;
use tower::{Service, ServiceExt};

/// The listening socket's accept queue: connections the kernel has completed and the server
/// has not yet accepted. The standard library's (and tokio's) 128 overflows when a few hundred
/// clients connect at once (a reconnection storm after a failover or a deploy, a load
/// balancer's new targets): the kernel then drops handshakes and some clients see their new
/// connection reset. Linux caps it at `net.core.somaxconn` (4096 by default).
pub const ACCEPT_BACKLOG: u32 = 4096;

/// Bind the gRPC port with an accept queue of [`ACCEPT_BACKLOG`] connections. The error names
/// the address ("cannot listen on 127.0.0.1:50051 (gRPC port): Address already in use").
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let listen = || {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // a restarted server can bind again while old connections are in TIME_WAIT
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(ACCEPT_BACKLOG)
    };
    listen().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (gRPC port): {e}"),
        )
    })
}

/// The HTTP/2 and TCP settings of every gRPC connection
/// ([`ServeArgs::connection_settings`](crate::ServeArgs::connection_settings)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// A connection that received no frame for this long is sent an HTTP/2 PING (hyper
    /// counts every frame it reads, not the ones it writes: a subscription that only receives
    /// is pinged too); TCP keepalive probes start after the same idle time.
    pub keepalive_interval: Duration,
    /// A PING not acknowledged within this closes the connection, ending its calls (their
    /// SubscribeEvents slots are freed). TCP keepalive gives up after about as long.
    pub keepalive_timeout: Duration,
    /// Streams a client may reset before the server accepted them, at once, before the
    /// connection is closed with GOAWAY ENHANCE_YOUR_CALM ("too_many_resets"): see
    /// [`pending_accept_reset_streams`].
    pub max_pending_accept_reset_streams: usize,
}

impl Default for ConnectionSettings {
    /// The defaults of `order-grpc serve`: pings after 20 s, 20 s to answer, and the reset
    /// bound of 512 concurrent requests.
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(20),
            max_pending_accept_reset_streams: pending_accept_reset_streams(512),
        }
    }
}

/// The fewest streams a client may reset before the server accepted them (h2's default, 20).
pub const MIN_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// How many streams one connection may have reset by the client while they wait for the
/// server to accept them: the concurrency limit (`--max-concurrent-requests`), at least
/// [`MIN_PENDING_ACCEPT_RESET_STREAMS`].
///
/// h2 closes a connection that goes over it with GOAWAY ENHANCE_YOUR_CALM, its defence against
/// the rapid-reset attack (CVE-2023-44487: HEADERS then RST_STREAM, over and over, each making
/// the server start work the client never waits for). Its default, 20, also closes a legitimate
/// client's connection after the server paused (a long GC-like stall, a SIGSTOP, a VM
/// migration): the client's calls whose deadlines passed meanwhile are all reset at once,
/// before the server resumes and accepts them. A client can legitimately have as many calls
/// waiting as the server serves at once; more than that is shed anyway. The bound still stops
/// the attack: a stream reset before it was accepted costs a slot in the accept queue and no
/// handler, and a connection holding more than this many is closed.
pub fn pending_accept_reset_streams(max_concurrent_requests: u32) -> usize {
    (max_concurrent_requests as usize).max(MIN_PENDING_ACCEPT_RESET_STREAMS)
}

/// Streams the server itself may reset because of the client's protocol errors before it
/// closes the connection: hyper's and h2's default, set here so that it is visibly kept
/// (RUSTSEC-2024-0003).
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// TCP keepalive probes sent before a silent peer is given up (after the idle time).
const TCP_KEEPALIVE_PROBES: u32 = 4;

/// TCP keepalive on an accepted socket: probes after `settings.keepalive_interval` idle,
/// [`TCP_KEEPALIVE_PROBES`] of them spread over `settings.keepalive_timeout`. It catches a
/// peer whose host vanished even when HTTP/2 has nothing to send (it is the kernel that
/// probes); the HTTP/2 PING catches a path that still acknowledges TCP but forwards nothing.
fn set_tcp_keepalive(
    stream: &tokio::net::TcpStream,
    settings: &ConnectionSettings,
) -> std::io::Result<()> {
    let probes = TCP_KEEPALIVE_PROBES;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(settings.keepalive_interval)
        .with_interval((settings.keepalive_timeout / probes).max(Duration::from_secs(1)))
        .with_retries(probes);
    socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)
}

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings for the gRPC port: a certificate chain and its private key, HTTP/2 by ALPN.
#[derive(Clone)]
pub struct Tls(tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl Tls {
    /// From PEM text: the certificate chain (leaf first) and the private key (PKCS#8, PKCS#1
    /// or SEC1). Errors name what is wrong; the key's content is never in them.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the certificate file is not valid PEM: {e}"))?;
        if certs.is_empty() {
            return Err("the certificate file holds no certificate".to_owned());
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| format!("the key file holds no usable private key: {e}"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}

/// Serve `service` on `listener` with `settings` until `shutdown` resolves, then stop
/// accepting and wait for every open connection to finish its calls (the caller bounds that
/// wait).
pub async fn serve<S>(
    listener: TcpListener,
    tls: Option<Tls>,
    settings: ConnectionSettings,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<tonic::body::Body>, Response = Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(None)
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout)
        .max_pending_accept_reset_streams(settings.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS)
        .adaptive_window(false);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    {
        // dropped when the loop ends: the listening socket closes at once
        let listener = listener;
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // out of file descriptors or a connection reset before it was
                        // accepted: keep serving the others; a short pause so that a lack
                        // of descriptors does not spin
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            if let Err(error) = set_tcp_keepalive(&stream, &settings) {
                tracing::debug!(%peer, %error, "cannot set TCP keepalive");
            }
            let info = TcpConnectInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: Some(peer),
            };
            let service = service
                .clone()
                .map_request(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(info.clone());
                    request.map(tonic::body::Body::new)
                })
                // an oversized response's status, which tonic writes in the trailers
                .map_response(|response: Response<tonic::body::Body>| {
                    response.map(crate::gateway::CorrectedBody)
                });
            let service = TowerToHyperService::new(service);
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let tls = tls.clone();
            tokio::spawn(async move {
                let served = match tls {
                    None => {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(connection).await
                    }
                    Some(Tls(acceptor)) => {
                        let handshake =
                            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                        let stream = match handshake.await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake took too long");
                                return;
                            }
                        };
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(connection).await
                    }
                };
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            });
        }
    }
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_or_key_that_is_not_pem_is_refused_with_a_reason() {
        let not_pem = b"hello, I am not a certificate";
        let error = Tls::from_pem(not_pem, not_pem).unwrap_err();
        assert!(error.contains("no certificate"), "{error}");

        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a self-signed certificate");
        let cert = certified.cert.pem();
        let error = Tls::from_pem(cert.as_bytes(), not_pem).unwrap_err();
        assert!(error.contains("no usable private key"), "{error}");

        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a self-signed certificate");
        let error = Tls::from_pem(
            cert.as_bytes(),
            other.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap_err();
        assert!(error.contains("do not make a TLS identity"), "{error}");

        Tls::from_pem(
            cert.as_bytes(),
            certified.signing_key.serialize_pem().as_bytes(),
        )
        .expect("a matching certificate and key");
    }

    /// What a client's connection gets when it sends `streams` requests and then resets them
    /// all before the server has accepted any (a client whose calls all passed their deadline
    /// while the server was paused): the error code of the server's GOAWAY, if it sent one
    /// within a second.
    async fn reset_before_accept(settings: ConnectionSettings, streams: usize) -> Option<u32> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = bind("127.0.0.1:0".parse().expect("an address")).expect("bound");
        let addr = listener.local_addr().expect("an address");
        let service = tower::service_fn(|_: Request<tonic::body::Body>| async {
            Ok::<_, std::convert::Infallible>(Response::new(tonic::body::Body::empty()))
        });
        let server = tokio::spawn(serve(
            listener,
            None,
            settings,
            service,
            std::future::pending(),
        ));

        // An h2 client writes into memory; what it wrote reaches the server in one piece, so
        // the server reads every HEADERS and RST_STREAM before it accepts a stream.
        let (client_io, mut written) = tokio::io::duplex(4 << 20);
        let (mut client, connection) = h2::client::handshake(client_io).await.expect("client");
        tokio::spawn(connection);
        let mut bytes = Vec::new();
        let mut drain = async |bytes: &mut Vec<u8>| {
            let mut buffer = [0u8; 16 * 1024];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(200), written.read(&mut buffer)).await
            {
                bytes.extend_from_slice(&buffer[..n]);
            }
        };
        let mut sent = Vec::new();
        for _ in 0..streams {
            client = client.ready().await.expect("ready");
            let request = Request::post("http://localhost/orders.v1.OrderQueryService/GetOrder")
                .body(())
                .expect("a request");
            let (_, stream) = client.send_request(request, false).expect("sent");
            sent.push(stream);
        }
        // every HEADERS out before the first RST_STREAM
        drain(&mut bytes).await;
        for stream in &mut sent {
            stream.send_reset(h2::Reason::CANCEL);
        }
        drain(&mut bytes).await;

        let mut socket = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connected");
        socket.write_all(&bytes).await.expect("written");
        let mut answer = Vec::new();
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buffer)).await
        {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
        server.abort();
        // frames: 3 bytes length, type, flags, 4 bytes stream id; GOAWAY (7): last stream id,
        // error code
        let mut rest = &answer[..];
        while rest.len() >= 9 {
            let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let Some(payload) = rest.get(9..9 + length) else {
                break;
            };
            if rest[3] == 7 && payload.len() >= 8 {
                return Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
            }
            rest = &rest[9 + length..];
        }
        None
    }

    /// h2's ENHANCE_YOUR_CALM: the rapid-reset defence closed the connection.
    const ENHANCE_YOUR_CALM: u32 = 0xb;

    #[tokio::test]
    async fn a_paused_servers_clients_may_reset_their_waiting_calls_but_a_flood_is_refused() {
        let settings = ConnectionSettings::default();
        assert_eq!(settings.max_pending_accept_reset_streams, 512);
        // A client resets 400 calls that waited while the server was stopped (h2's default
        // limit, 20, sent it GOAWAY ENHANCE_YOUR_CALM "too_many_resets").
        let paused = reset_before_accept(settings, 400).await;
        assert_ne!(paused, Some(ENHANCE_YOUR_CALM), "{paused:?}");
        // The rapid-reset attack is still cut off.
        let flood = reset_before_accept(settings, 2 * 512 + 1).await;
        assert_eq!(flood, Some(ENHANCE_YOUR_CALM), "{flood:?}");
    }

    #[test]
    fn the_reset_bound_follows_the_concurrency_limit_and_keeps_h2s_floor() {
        assert_eq!(pending_accept_reset_streams(512), 512);
        assert_eq!(pending_accept_reset_streams(4000), 4000);
        assert_eq!(
            pending_accept_reset_streams(1),
            MIN_PENDING_ACCEPT_RESET_STREAMS
        );
    }

    #[tokio::test]
    async fn the_grpc_port_keeps_a_deep_accept_queue() {
        // Three hundred clients connect while the server accepts nothing (a server busy with
        // a reconnection storm). With the standard backlog of 128 the kernel drops the
        // handshakes beyond the queue, and those connects hang in SYN retries for seconds.
        let listener = bind("127.0.0.1:0".parse().expect("an address")).expect("bound");
        let addr = listener.local_addr().expect("an address");
        let mut clients = Vec::new();
        for n in 0..300 {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(Duration::from_secs(2), connect).await {
                Ok(Ok(client)) => clients.push(client),
                other => panic!("connection {n} was not queued: {other:?}"),
            }
        }
        let mut accepted = 0;
        while accepted < clients.len() {
            match tokio::time::timeout(Duration::from_secs(2), listener.accept()).await {
                Ok(Ok(_)) => accepted += 1,
                other => panic!("after {accepted} accepted: {other:?}"),
            }
        }
    }
}

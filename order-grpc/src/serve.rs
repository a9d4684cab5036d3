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
//! HTTP/2 only), plus `TCP_NODELAY` on every connection.
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

/// Serve `service` on `listener` until `shutdown` resolves, then stop accepting and wait for
/// every open connection to finish its calls (the caller bounds that wait).
pub async fn serve<S>(
    listener: TcpListener,
    tls: Option<Tls>,
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
        .keep_alive_interval(None)
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
            let info = TcpConnectInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: Some(peer),
            };
            let service = service
                .clone()
                .map_request(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(info.clone());
                    request.map(tonic::body::Body::new)
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

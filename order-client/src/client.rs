//! The client, its settings, and the one loop every unary call goes through.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use order_proto::v1::order_query_service_client::OrderQueryServiceClient;
use order_proto::v1::order_service_client::OrderServiceClient;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::util::BoxCloneSyncService;

use crate::balance::Endpoints;
use crate::context::{CAUSATION_HEADER, CORRELATION_HEADER, CallContext, current_trace_context};
use crate::error::Error;
use crate::retry::{CallKind, RetryPolicy, retryable};

/// The HTTP/2 service calls go through: a tonic [`Channel`](tonic::transport::Channel) (with
/// several endpoints, one per endpoint behind the client's own rotation), or any tower service
/// wrapping one (see [`ClientBuilder::wrap_transport`]).
pub type Transport = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    TransportError,
>;

/// A failure of the [`Transport`] (a connection that could not be made or broke). tonic turns
/// it into a status by its source chain: a refused connection is UNAVAILABLE.
#[derive(Debug)]
pub struct TransportError(tower::BoxError);

impl TransportError {
    /// Wrap any error of a transport.
    pub fn new(error: impl Into<tower::BoxError>) -> Self {
        Self(error.into())
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// The default deadline of one attempt of a call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// With a [`RetryPolicy::total_timeout`], no retry is started with less time than this left.
const MIN_ATTEMPT: Duration = Duration::from_millis(10);

/// The default time allowed to open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default largest answer the client decodes: 64 MiB, the most order-grpc may be
/// configured to send (`ORDER_GRPC_MAX_MESSAGE_BYTES`). tonic's own default, 4 MiB, would
/// refuse an answer a server with a raised limit sends whole (OUT_OF_RANGE "decoded message
/// length too large"), where the client could neither retry nor read it in parts.
pub const DEFAULT_MAX_DECODING_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

type Wrap = Arc<dyn Fn(Transport) -> Transport + Send + Sync>;

/// Settings of a [`Client`]; start with [`Client::builder`].
///
/// ```no_run
/// # async fn run() -> Result<(), order_client::Error> {
/// use std::time::Duration;
/// use order_client::{Client, RetryPolicy};
///
/// let ca = std::fs::read("ca.pem").expect("the CA file");
/// let client = Client::builder()
///     .endpoint("https://orders-1.internal:50051")
///     .endpoint("https://orders-2.internal:50051")
///     .tls_ca_pem(ca)
///     .tls_domain("orders.internal")
///     .bearer_token("a-token-of-at-least-sixteen-characters")
///     .timeout(Duration::from_secs(5))
///     .retry(RetryPolicy::default().max_attempts(6))
///     .build()?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    token: Option<String>,
    tls_ca_pem: Option<Vec<u8>>,
    tls_domain: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    max_decoding_message_size: usize,
    retry: RetryPolicy,
    context: CallContext,
    wrap: Option<Wrap>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        f.debug_struct("ClientBuilder")
            .field("endpoints", &self.endpoints)
            .field("authenticated", &self.token.is_some())
            .field("tls_ca", &self.tls_ca_pem.is_some())
            .field("tls_domain", &self.tls_domain)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_decoding_message_size", &self.max_decoding_message_size)
            .field("retry", &self.retry)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            token: None,
            tls_ca_pem: None,
            tls_domain: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_decoding_message_size: DEFAULT_MAX_DECODING_MESSAGE_SIZE,
            retry: RetryPolicy::default(),
            context: CallContext::default(),
            wrap: None,
        }
    }
}

impl ClientBuilder {
    /// Add an endpoint (`http://host:port`, or `https://` for TLS). With several, calls go
    /// to them in turn, around those that cannot be reached: an endpoint whose call failed in
    /// the transport (a refused or broken connection, a TLS handshake refused; after a call
    /// that ran out of time, when a health check then gets no answer) gets no calls until it
    /// answers a gRPC health check, which
    /// the client asks by itself over that endpoint's connection (after 0.25 s, doubling to
    /// 5 s; an endpoint that never comes back is asked every 5 s for the client's life). The
    /// call that found it down fails like any transport failure (UNAVAILABLE, and is retried,
    /// on another endpoint, by the [`RetryPolicy`]).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoints.push(url.into());
        self
    }

    /// Add several endpoints (see [`endpoint`](Self::endpoint)).
    pub fn endpoints<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints.extend(urls.into_iter().map(Into::into));
        self
    }

    /// Send `authorization: Bearer <token>` on every call. An empty token (or one of only
    /// white space), or one that starts with the scheme itself (`Bearer ...`), is refused by
    /// [`build`](Self::build) as [`Error::Config`].
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Trust this CA (PEM) for the service's certificate. Required for an `https://`
    /// endpoint: the client has no root store of its own. [`build`](Self::build) refuses
    /// PEM text with no certificate in it (a private key, an empty file) as
    /// [`Error::Config`]; other blocks beside a certificate (a key in a bundle) are passed
    /// over.
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca_pem = Some(pem.into());
        self
    }

    /// The name the service's certificate must carry, when it is not the endpoint's host.
    /// Implies TLS.
    pub fn tls_domain(mut self, domain: impl Into<String>) -> Self {
        self.tls_domain = Some(domain.into());
        self
    }

    /// The deadline of each attempt of a unary call (default 10 s), sent as `grpc-timeout`
    /// and enforced by the client too, over the whole attempt (opening a connection
    /// included); an attempt past it fails as DEADLINE_EXCEEDED (and is retried like one).
    /// It also bounds each attempt's read-your-writes wait (`GetOrder` with `min_position`);
    /// a wait that runs out is retried like any DEADLINE_EXCEEDED, so the whole call is
    /// bounded by [`RetryPolicy::total_timeout`], when set, not by this.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long opening a connection may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The largest answer, in bytes, the client decodes (default
    /// [`DEFAULT_MAX_DECODING_MESSAGE_SIZE`], 64 MiB: as much as order-grpc may send). A larger
    /// one fails the call with OUT_OF_RANGE, not retried. An order's history larger than the
    /// *server's* limit is read in parts by [`Client::get_order_events`] whatever this is; set
    /// it lower only to bound the client's memory, to no less than the server's
    /// `ORDER_GRPC_MAX_MESSAGE_BYTES`.
    pub fn max_decoding_message_size(mut self, bytes: usize) -> Self {
        self.max_decoding_message_size = bytes;
        self
    }

    /// The retry policy of every call (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The correlation id and trace context of every call (see [`Client::with_context`]).
    pub fn context(mut self, context: CallContext) -> Self {
        self.context = context;
        self
    }

    /// Wrap the transport in a tower service of your own (metrics, fault injection in
    /// tests). It sees every attempt: a retried call passes through it again.
    pub fn wrap_transport(
        mut self,
        wrap: impl Fn(Transport) -> Transport + Send + Sync + 'static,
    ) -> Self {
        self.wrap = Some(Arc::new(wrap));
        self
    }

    /// The client. It connects on first use (so it can be built while the service is still
    /// starting) and reconnects by itself. Must be called inside a Tokio runtime.
    pub fn build(self) -> Result<Client, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "a client must be built inside a Tokio runtime".into(),
            ));
        }
        if self.endpoints.is_empty() {
            return Err(Error::Config("no endpoint".into()));
        }
        let authorization = self
            .token
            .as_deref()
            .map(|token| {
                if token.trim().is_empty() {
                    return Err(Error::Config(
                        "the bearer token is empty (order-cli: --token or ORDER_GRPC_TOKEN)".into(),
                    ));
                }
                // `Bearer Bearer <token>` on the wire: refused by the service as an unknown
                // token, which does not say why.
                if token
                    .trim_start()
                    .get(..7)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "))
                {
                    return Err(Error::Config(
                        "the bearer token starts with \"Bearer \": give the token alone (the \
                         client sends `authorization: Bearer <token>` itself)"
                            .into(),
                    ));
                }
                let mut value =
                    AsciiMetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                        Error::Config("the bearer token is not valid header text".into())
                    })?;
                value.set_sensitive(true);
                Ok::<_, Error>(value)
            })
            .transpose()?;
        let endpoints = self
            .endpoints
            .iter()
            .map(|url| self.endpoint_for(url))
            .collect::<Result<Vec<_>, _>>()?;
        let mut transport = match <[Endpoint; 1]>::try_from(endpoints) {
            Ok([endpoint]) => Transport::new(
                tower::ServiceBuilder::new()
                    .map_err(TransportError::new)
                    .service(endpoint.connect_lazy()),
            ),
            Err(endpoints) => Transport::new(
                tower::ServiceBuilder::new()
                    .map_err(TransportError::new)
                    .service(Endpoints::new(
                        endpoints
                            .into_iter()
                            .map(|endpoint| (endpoint.uri().clone(), endpoint.connect_lazy()))
                            .collect(),
                        self.connect_timeout,
                    )),
            ),
        };
        if let Some(wrap) = &self.wrap {
            transport = wrap(transport);
        }
        Ok(Client {
            shared: Arc::new(Shared {
                transport,
                authorization,
                endpoints: self.endpoints,
                max_decoding_message_size: self.max_decoding_message_size,
            }),
            context: self.context,
            timeout: self.timeout,
            retry: self.retry,
        })
    }

    fn endpoint_for(&self, url: &str) -> Result<Endpoint, Error> {
        let url = url.trim();
        // `127.0.0.1:50051` parses as a URI of scheme "127.0.0.1" and fails only when called,
        // as a transport error after every retry; `ftp://` would be sent as plain HTTP/2.
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "the endpoint {url:?} must start with http:// (or https:// for TLS)"
            )));
        }
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::Config(format!("invalid endpoint {url:?}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let https = url.starts_with("https://");
        if https || self.tls_ca_pem.is_some() || self.tls_domain.is_some() {
            if !https {
                return Err(Error::Config(format!(
                    "TLS settings were given but the endpoint {url:?} is not https://"
                )));
            }
            let Some(pem) = &self.tls_ca_pem else {
                return Err(Error::Config(format!(
                    "the https:// endpoint {url:?} needs a CA certificate (tls_ca_pem; \
                     order-cli: --tls-ca-file): the client has no root store of its own"
                )));
            };
            check_ca_pem(pem)?;
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            if let Some(domain) = &self.tls_domain {
                tls = tls.domain_name(domain.clone());
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| Error::Config(format!("TLS settings for {url:?}: {e}")))?;
        }
        Ok(endpoint)
    }
}

struct Shared {
    transport: Transport,
    authorization: Option<AsciiMetadataValue>,
    endpoints: Vec<String>,
    /// The largest answer decoded (see [`ClientBuilder::max_decoding_message_size`]).
    max_decoding_message_size: usize,
}

/// A client of order-grpc's `OrderService`, `OrderQueryService` and health service.
///
/// Cheap to clone (clones share the connections). Every call carries the bearer token (when
/// set), a correlation id (the context's, or a fresh one per call), the trace context, and a
/// deadline per attempt; transient failures are retried by the [`RetryPolicy`].
///
/// ```no_run
/// # async fn run() -> Result<(), order_client::Error> {
/// use order_client::{Client, pb};
///
/// let client = Client::connect("http://127.0.0.1:50051")?;
/// let placed = client
///     .place_order("0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001".parse().expect("a UUID"))
///     .line("SKU-1", 2, order_client::money("EUR", 1250))
///     .ship_to(pb::Address {
///         recipient: "Ada Lovelace".into(),
///         line1: "12 St James's Square".into(),
///         city: "London".into(),
///         postal_code: "SW1Y 4JH".into(),
///         country: "GB".into(),
///         ..Default::default()
///     })
///     .await?;
/// // Read-your-writes: waits until the read model holds the order at least this far.
/// let order = client.get_order_after(&placed).await?;
/// assert_eq!(order.version, placed.version);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    context: CallContext,
    timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        f.debug_struct("Client")
            .field("endpoints", &self.shared.endpoints)
            .field("authenticated", &self.shared.authorization.is_some())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// The health of a service, as `grpc.health.v1.Health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It serves.
    Serving,
    /// It does not serve (starting, its database is down, shutting down).
    NotServing,
    /// It reports UNKNOWN or a value this client does not know.
    Unknown,
}

impl Client {
    /// Settings for a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client of one endpoint with the default settings (connects on first use).
    pub fn connect(url: impl Into<String>) -> Result<Self, Error> {
        Self::builder().endpoint(url).build()
    }

    /// The same client (sharing its connections) whose calls carry `context`.
    pub fn with_context(&self, context: CallContext) -> Self {
        Self {
            context,
            ..self.clone()
        }
    }

    /// The same client with another deadline per attempt.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    /// The same client with another retry policy.
    pub fn with_retry(&self, retry: RetryPolicy) -> Self {
        Self {
            retry,
            ..self.clone()
        }
    }

    /// The context the calls carry.
    pub fn context(&self) -> &CallContext {
        &self.context
    }

    /// The deadline of each attempt.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The endpoints the client balances across.
    pub fn endpoints(&self) -> &[String] {
        &self.shared.endpoints
    }

    pub(crate) fn commands(&self) -> OrderServiceClient<Transport> {
        OrderServiceClient::new(self.shared.transport.clone())
            .max_decoding_message_size(self.shared.max_decoding_message_size)
    }

    pub(crate) fn queries(&self) -> OrderQueryServiceClient<Transport> {
        OrderQueryServiceClient::new(self.shared.transport.clone())
            .max_decoding_message_size(self.shared.max_decoding_message_size)
    }

    /// The correlation id of one call (the same for its retries).
    pub(crate) fn correlation_id(&self) -> String {
        self.context
            .correlation_id()
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
    }

    /// Put the token, correlation id and trace context on `metadata`.
    pub(crate) fn decorate(&self, metadata: &mut MetadataMap, correlation_id: &str) {
        if let Ok(value) = AsciiMetadataValue::try_from(correlation_id) {
            metadata.insert(CORRELATION_HEADER, value);
        }
        if let Some(causation) = self.context.causation_id()
            && let Ok(value) = AsciiMetadataValue::try_from(causation.to_string())
        {
            metadata.insert(CAUSATION_HEADER, value);
        }
        let (traceparent, tracestate) = match self.context.traceparent() {
            Some(traceparent) => (
                Some(traceparent.to_owned()),
                self.context.tracestate().map(str::to_owned),
            ),
            None => match current_trace_context() {
                Some((traceparent, tracestate)) => (Some(traceparent), tracestate),
                None => (None, None),
            },
        };
        for (name, value) in [("traceparent", traceparent), ("tracestate", tracestate)] {
            if let Some(value) = value.and_then(|v| AsciiMetadataValue::try_from(v).ok()) {
                metadata.insert(name, value);
            }
        }
        if let Some(token) = &self.shared.authorization {
            metadata.insert("authorization", token.clone());
        }
    }

    /// A request for one attempt: the message, the metadata, and the deadline.
    pub(crate) fn request<T>(
        &self,
        message: T,
        correlation_id: &str,
        timeout: Option<Duration>,
    ) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        self.decorate(request.metadata_mut(), correlation_id);
        request
    }

    /// Send `message` through `rpc` until it succeeds, fails for good, or the retry policy
    /// is spent. Every attempt carries the same message (and so the same command id) and the
    /// same correlation id.
    pub(crate) async fn unary<M, R, F, Fut>(
        &self,
        message: &M,
        kind: CallKind,
        rpc: F,
    ) -> Result<Answered<R>, Error>
    where
        M: Clone,
        F: Fn(Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let correlation_id = self.correlation_id();
        let ends = self
            .retry
            .total()
            .and_then(|total| tokio::time::Instant::now().checked_add(total));
        let left = || ends.map(|ends| ends.saturating_duration_since(tokio::time::Instant::now()));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let deadline = left().map_or(self.timeout, |left| left.min(self.timeout));
            let request = self.request(message.clone(), &correlation_id, Some(deadline));
            let answer = self.within_deadline(deadline, rpc(request)).await;
            // The wait before the next attempt, drawn once: the check below and the sleep
            // must agree on it (it is random).
            let wait = self.retry.backoff(attempt);
            match answer {
                Ok(response) => {
                    return Ok(Answered {
                        message: response.into_inner(),
                        attempts: attempt,
                        correlation_id,
                    });
                }
                Err(status)
                    if attempt < self.retry.attempts()
                        && retryable(&status, kind)
                        // Time for the wait and a useful attempt after it.
                        && left().is_none_or(|left| left > wait + MIN_ATTEMPT) =>
                {
                    tracing::debug!(
                        code = ?status.code(),
                        message = status.message(),
                        attempt,
                        ?wait,
                        %correlation_id,
                        "call failed, retrying"
                    );
                    tokio::time::sleep(wait).await;
                    // A wait that overslept (a busy machine) leaves no time for an attempt:
                    // the call ends with what the last one answered, rather than send one
                    // that cannot finish.
                    if left().is_some_and(|left| left < MIN_ATTEMPT) {
                        return Err(Error::Rpc {
                            status: Box::new(status),
                            attempts: attempt,
                            correlation_id,
                        });
                    }
                }
                Err(status) => {
                    return Err(Error::Rpc {
                        status: Box::new(status),
                        attempts: attempt,
                        correlation_id,
                    });
                }
            }
        }
    }

    /// Ask `grpc.health.v1.Health` about `service` (`""`: the server as a whole;
    /// `orders.v1.OrderService`, `orders.v1.OrderQueryService`). Not retried: a health check
    /// reports what it finds.
    pub async fn health(&self, service: &str) -> Result<Health, Error> {
        let correlation_id = self.correlation_id();
        let request = self.request(
            tonic_health::pb::HealthCheckRequest {
                service: service.to_owned(),
            },
            &correlation_id,
            Some(self.timeout),
        );
        let mut health = HealthClient::new(self.shared.transport.clone());
        match self
            .within_deadline(self.timeout, health.check(request))
            .await
        {
            Ok(response) => Ok(match response.get_ref().status() {
                ServingStatus::Serving => Health::Serving,
                ServingStatus::NotServing => Health::NotServing,
                _ => Health::Unknown,
            }),
            Err(status) => Err(Error::Rpc {
                status: Box::new(status),
                attempts: 1,
                correlation_id,
            }),
        }
    }
}

impl Client {
    /// One attempt, bounded by the deadline as a whole (opening a connection included, which
    /// `grpc-timeout` does not cover). The client's own timer firing is DEADLINE_EXCEEDED, as
    /// the service would say, not the CANCELLED ("Timeout expired") tonic makes of it.
    async fn within_deadline<R>(
        &self,
        deadline: Duration,
        attempt: impl Future<Output = Result<Response<R>, Status>>,
    ) -> Result<Response<R>, Status> {
        let expired = || {
            Status::deadline_exceeded(format!(
                "the client's deadline of {deadline:?} passed before an answer came"
            ))
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(Err(status)) if timed_out(&status) => Err(expired()),
            Ok(answer) => answer,
            Err(_) => Err(expired()),
        }
    }
}

/// Refuse CA PEM text that holds no certificate: tonic would take it and trust nothing, so
/// every call would fail its TLS handshake as if the service were down. Each `CERTIFICATE`
/// block must be base64 of a DER sequence (a certificate's outer shape); blocks of other
/// kinds (a key in a bundle) are passed over.
fn check_ca_pem(pem: &[u8]) -> Result<(), Error> {
    const WHAT: &str = "the CA certificate (tls_ca_pem; order-cli: --tls-ca-file)";
    let mut certificates = 0;
    let mut keys = 0;
    for item in rustls_pemfile::read_all(&mut &pem[..]) {
        match item {
            Ok(rustls_pemfile::Item::X509Certificate(der)) => {
                if der.len() <= 2 || der[0] != 0x30 {
                    return Err(Error::Config(format!(
                        "{WHAT} has a CERTIFICATE block that is not a certificate"
                    )));
                }
                certificates += 1;
            }
            Ok(
                rustls_pemfile::Item::Pkcs1Key(_)
                | rustls_pemfile::Item::Pkcs8Key(_)
                | rustls_pemfile::Item::Sec1Key(_),
            ) => keys += 1,
            Ok(_) => {}
            Err(error) => {
                return Err(Error::Config(format!(
                    "{WHAT} is not readable PEM: {error:?}"
                )));
            }
        }
    }
    if certificates == 0 {
        let what = if keys > 0 {
            "a private key and no certificate"
        } else {
            "no certificate"
        };
        return Err(Error::Config(format!(
            "{WHAT} holds {what}: give the PEM file of the CA that signed the service's \
             certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(())
}

/// Whether `status` is tonic's client-side timer firing (its source chain holds
/// [`tonic::TimeoutExpired`]).
fn timed_out(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// A successful answer and how it came.
#[derive(Debug)]
pub(crate) struct Answered<R> {
    pub message: R,
    pub attempts: u32,
    pub correlation_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_carry_context_token_and_deadline() {
        let client = Client::builder()
            .endpoint("http://127.0.0.1:1")
            .bearer_token("a-token-of-sixteen-chars")
            .timeout(Duration::from_millis(1500))
            .context(
                CallContext::new(Some("req-1"), Some("00-t-s-01"))
                    .with_causation(Some(uuid::Uuid::from_u128(0xc0ffee))),
            )
            .build()
            .unwrap();
        let request = client.request((), "req-1", Some(client.timeout()));
        let metadata = request.metadata();
        assert_eq!(metadata.get("x-correlation-id").unwrap(), "req-1");
        assert_eq!(
            metadata.get("x-causation-id").unwrap(),
            "00000000-0000-0000-0000-000000c0ffee"
        );
        assert_eq!(metadata.get("traceparent").unwrap(), "00-t-s-01");
        assert_eq!(
            metadata.get("authorization").unwrap(),
            "Bearer a-token-of-sixteen-chars"
        );
        assert_eq!(metadata.get("grpc-timeout").unwrap(), "1500000u");
        assert!(
            !format!("{client:?}").contains("sixteen"),
            "no token in Debug"
        );
    }

    #[tokio::test]
    async fn without_context_each_call_gets_a_fresh_correlation_id_and_no_trace() {
        let client = Client::connect("http://127.0.0.1:1").unwrap();
        let (a, b) = (client.correlation_id(), client.correlation_id());
        assert_ne!(a, b);
        assert!(uuid::Uuid::parse_str(&a).is_ok());
        let request = client.request((), &a, None);
        assert!(request.metadata().get("traceparent").is_none());
        assert!(request.metadata().get("x-causation-id").is_none());
        assert!(request.metadata().get("authorization").is_none());
        assert!(request.metadata().get("grpc-timeout").is_none());
    }

    #[tokio::test]
    async fn bad_settings_are_configuration_errors() {
        let bad = |builder: ClientBuilder| matches!(builder.build(), Err(Error::Config(_)));
        assert!(bad(Client::builder()), "no endpoint");
        assert!(bad(Client::builder().endpoint("not a url")));
        assert!(
            bad(Client::builder().endpoint("127.0.0.1:50051")),
            "no scheme"
        );
        assert!(bad(Client::builder().endpoint("ftp://127.0.0.1:50051")));
        assert!(bad(Client::builder()
            .endpoint("http://127.0.0.1:1")
            .bearer_token("line\nbreak")));
        for with_scheme in [
            "Bearer a-token-of-sixteen-chars",
            "bearer a-token-of-sixteen-chars",
        ] {
            match Client::builder()
                .endpoint("http://127.0.0.1:1")
                .bearer_token(with_scheme)
                .build()
            {
                Err(Error::Config(message)) => {
                    assert!(message.contains("give the token alone"), "{message}");
                }
                other => panic!("{with_scheme:?}: {other:?}"),
            }
        }
        for empty in ["", "  ", "\t"] {
            match Client::builder()
                .endpoint("http://127.0.0.1:1")
                .bearer_token(empty)
                .build()
            {
                Err(Error::Config(message)) => assert!(message.contains("empty"), "{message}"),
                other => panic!("{empty:?}: {other:?}"),
            }
        }
        assert!(bad(Client::builder()
            .endpoint("http://127.0.0.1:1")
            .tls_domain("orders")));
        assert!(
            bad(Client::builder().endpoint("https://127.0.0.1:1")),
            "https needs a CA"
        );
        assert!(
            bad(Client::builder()
                .endpoint("https://127.0.0.1:1")
                .tls_ca_pem(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_vec())
                .tls_domain("order-grpc")),
            "an empty certificate block"
        );
        // The outer shape of a certificate (a DER sequence) is what is checked here.
        assert!(
            Client::builder()
                .endpoint("https://127.0.0.1:1")
                .tls_ca_pem(
                    b"-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n".to_vec()
                )
                .tls_domain("order-grpc")
                .build()
                .is_ok()
        );
        assert!(
            Client::builder()
                .endpoints(["http://127.0.0.1:1", "http://127.0.0.1:2"])
                .build()
                .is_ok()
        );
    }

    #[test]
    fn building_outside_a_runtime_is_refused() {
        assert!(matches!(
            Client::connect("http://127.0.0.1:1"),
            Err(Error::Config(_))
        ));
    }
}

//! The HTTP/JSON adapters: inventory, payment and shipping services as the OpenAPI documents in
//! `docs/providers/` describe them, one base URL per provider.
//!
//! **The client.** reqwest over rustls (aws-lc-rs): connection pooling per provider, HTTP/1.1 or
//! HTTP/2 (negotiated by ALPN over TLS; `http2` = HTTP/2 with prior knowledge, also over plain
//! HTTP), a connect timeout and a whole-request timeout, no redirects, no proxy. Each provider
//! has its own credentials: a bearer token, or a client certificate (mTLS), or both, and
//! optionally its own CA (then only that CA is trusted; otherwise the system's roots).
//!
//! **Idempotency.** Every mutating request carries `Idempotency-Key` = the id of the command the
//! answer will be recorded with (UUID v5 of the triggering event and the command name), so a
//! redelivered message repeats the request with the same key and the provider answers as the
//! first time.
//!
//! **Answers, classified exactly** ([`interpret`]):
//!
//! | answer | class |
//! |---|---|
//! | 2xx with the documented body | success |
//! | 409 or 422 with a problem body (`application/problem+json`) naming a business `code` | refused: out of stock, declined (the saga records it) |
//! | 408, 429, 5xx; connection refused or reset, timeouts | transient: retried, not before `Retry-After` when given |
//! | 400, 413, 414, 415, 431 | rejected: the request breaks the contract and can never succeed (dead-lettered) |
//! | 401, 403 | transient, with an ERROR line: the credentials are wrong (fix the deployment; the message must not be lost for it) |
//! | any other status (3xx, 404, 405, ...) | transient, with an ERROR line: wrong base URL or version skew |
//! | anything unparseable (a 2xx, 409 or 422 body that is not the documented JSON) | transient, with an ERROR line naming the provider and the status |

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::providers::{
    AuthorizeRequest, CaptureRequest, Delivery, DeliveryRequest, InventoryProvider, Line,
    PaymentAction, PaymentProvider, ProviderError, RefundRequest, ReleaseRequest, ReserveRequest,
    ShipRequest, Shipment, ShippingProvider,
};

/// The header that carries the idempotency key of a mutating request.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The longest `Retry-After` honoured (longer ones are cut to this): SQS hides a message for
/// at most 12 hours.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(43_200);

/// The largest answer body read; a longer one is unparseable.
const MAX_BODY: usize = 256 * 1024;

/// Which HTTP version the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HttpVersion {
    /// HTTP/2 where the server offers it over TLS (ALPN), HTTP/1.1 otherwise.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only, with prior knowledge (also over plain HTTP).
    Http2,
}

/// Client settings shared by the three providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// Time to open a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time one request may take from start to the end of its answer.
    pub request_timeout: Duration,
    /// HTTP version.
    pub version: HttpVersion,
    /// Idle connections kept per provider host.
    pub pool_max_idle_per_host: usize,
    /// How long an idle connection is kept.
    pub pool_idle_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            version: HttpVersion::Auto,
            pool_max_idle_per_host: 512,
            pool_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Where a PEM document comes from: the value itself (as Secrets Manager injects it into the
/// environment) or a file.
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    /// The PEM text.
    Inline(String),
    /// A file holding it.
    File(PathBuf),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A client identity holds a private key: never shown.
            Self::Inline(_) => f.write_str("Inline(..)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl Pem {
    fn read(&self, what: &str) -> Result<Vec<u8>, String> {
        match self {
            Self::Inline(text) => Ok(text.as_bytes().to_vec()),
            Self::File(path) => std::fs::read(path)
                .map_err(|e| format!("cannot read {what} {}: {e}", path.display())),
        }
    }
}

/// How to reach one provider.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderEndpoint {
    /// `http(s)://host[:port][/prefix]`; the contract's paths (`/v1/...`) follow it.
    pub base_url: String,
    /// Bearer token (secret).
    pub token: Option<String>,
    /// Client certificate chain and private key, PEM (mTLS; secret).
    pub client_identity: Option<Pem>,
    /// The CA that signed the provider's certificate, PEM (default: the system's roots).
    pub ca: Option<Pem>,
}

impl fmt::Debug for ProviderEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderEndpoint")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("client_identity", &self.client_identity)
            .field("ca", &self.ca)
            .finish()
    }
}

impl ProviderEndpoint {
    /// An endpoint with only a base URL.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            token: None,
            client_identity: None,
            ca: None,
        }
    }

    /// Check what can be checked without the network; `setting` names the variable in errors.
    pub fn validate(&self, setting: &str) -> Result<(), String> {
        // The parsed URL's scheme: lower case, whatever the setting's case.
        let https = parse_base(&self.base_url, setting)?.scheme() == "https";
        if let Some(token) = &self.token
            && (token.is_empty()
                || token.len() > 4096
                || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(format!(
                "{} must be 1-4096 visible ASCII characters",
                sibling(setting, "TOKEN")
            ));
        }
        if self.client_identity.is_some() && !https {
            return Err(format!(
                "a client certificate for {setting} needs an https:// URL"
            ));
        }
        if self.ca.is_some() && !https {
            return Err(format!("a CA for {setting} needs an https:// URL"));
        }
        Ok(())
    }
}

/// The name of a provider's other setting: `ORDER_PROVIDER_PAYMENT_URL` → `..._TOKEN`.
fn sibling(setting: &str, suffix: &str) -> String {
    match setting.strip_suffix("_URL") {
        Some(stem) => format!("{stem}_{suffix}"),
        None => format!("the {suffix} of {setting}"),
    }
}

fn parse_base(base: &str, setting: &str) -> Result<Url, String> {
    let base = base.trim();
    // The URL library follows the WHATWG standard, which repairs what a browser's address
    // bar gets: `http:payments`, `http:///shipping` and `http:\\host` all get a host. A
    // setting must say what it means.
    let lower = base.to_ascii_lowercase();
    let authority = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    if !authority.is_some_and(|a| !a.is_empty() && !a.starts_with('/')) {
        return Err(format!(
            "{setting} must start with http:// or https:// and a host, got {:?}",
            redacted(base)
        ));
    }
    if base
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(format!(
            "{setting} must not hold spaces, control characters or backslashes, got {:?}",
            redacted(base)
        ));
    }
    let url = Url::parse(base)
        .map_err(|e| format!("{setting} {:?} is not a URL: {e}", redacted(base)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{setting} must be an http:// or https:// URL with a host, got {:?}",
            redacted(base)
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{setting} must not carry a query, a fragment or credentials, got {:?}",
            redacted(base)
        ));
    }
    Ok(url)
}

/// One provider's HTTP client: its base URL, credentials and connection pool.
#[derive(Clone)]
pub struct ProviderClient {
    name: &'static str,
    base: Url,
    client: reqwest::Client,
    authorization: Option<HeaderValue>,
}

impl fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderClient")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .field("authenticated", &self.authorization.is_some())
            .finish_non_exhaustive()
    }
}

/// A `GET` or a mutating request with its idempotency key and JSON body.
struct Call<'a> {
    operation: &'static str,
    method: Method,
    path: &'a [&'a str],
    key: Option<Uuid>,
    body: Option<Value>,
}

impl ProviderClient {
    /// A client for the provider `name` (inventory, payment, shipping); `setting` names the
    /// URL's variable in errors.
    pub fn new(
        name: &'static str,
        setting: &str,
        endpoint: &ProviderEndpoint,
        settings: &HttpSettings,
    ) -> Result<Self, String> {
        endpoint.validate(setting)?;
        let base = parse_base(&endpoint.base_url, setting)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            .pool_idle_timeout(settings.pool_idle_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tcp_nodelay(true)
            .user_agent(concat!("order-worker/", env!("CARGO_PKG_VERSION")));
        builder = match settings.version {
            HttpVersion::Auto => builder,
            HttpVersion::Http1 => builder.http1_only(),
            HttpVersion::Http2 => builder.http2_prior_knowledge(),
        };
        if let Some(ca) = &endpoint.ca {
            let name = format!("{}(_FILE)", sibling(setting, "CA"));
            let pem = ca.read(&name)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{name} is not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err(format!("{name} holds no certificate"));
            }
            builder = builder.tls_certs_only(certs);
        }
        if let Some(identity) = &endpoint.client_identity {
            let name = format!("{}(_FILE)", sibling(setting, "CLIENT_CERT"));
            let pem = identity.read(&name)?;
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!(
                    "{name} must be PEM: a certificate chain and \
                     its private key ({e})"
                )
            })?;
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(|e| {
            format!(
                "the HTTP client of {setting} (its CA or client certificate?): {}",
                order_runtime::with_causes(&e)
            )
        })?;
        let authorization = endpoint
            .token
            .as_deref()
            .map(|token| {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        format!("{} is not valid header text", sibling(setting, "TOKEN"))
                    })?;
                value.set_sensitive(true);
                Ok::<_, String>(value)
            })
            .transpose()?;
        Ok(Self {
            name,
            base,
            client,
            authorization,
        })
    }

    /// The provider's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The base URL and `segments` (escaped). A segment that is empty or only dots (a
    /// reference no provider answer gave: `..` would be "one level up") is refused: the
    /// request could never reach what it names.
    fn url(&self, segments: &[&str]) -> Result<Url, ProviderError> {
        if let Some(bad) = segments.iter().find(|s| s.chars().all(|c| c == '.')) {
            return Err(ProviderError::Rejected(format!(
                "{}: {bad:?} cannot be a reference in a URL path (empty or only dots)",
                self.name
            )));
        }
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                ProviderError::transient(format!("{}: the base URL cannot have a path", self.name))
            })?;
            path.pop_if_empty();
            path.extend(segments);
        }
        Ok(url)
    }

    async fn send<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, ProviderError> {
        self.exchange(call).await.map(|(value, _)| value)
    }

    /// Send `call`; the documented answer and the `Retry-After` that came with it.
    async fn exchange<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
    ) -> Result<(T, Option<Duration>), ProviderError> {
        let url = self.url(call.path)?;
        let what = format!("{} {}", self.name, call.operation);
        let mut request = self.client.request(call.method, url);
        if let Some(value) = &self.authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        if let Some(key) = call.key {
            request = request.header(IDEMPOTENCY_KEY, key.to_string());
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| ProviderError::transient(format!("{what}: {}", transport(&e))))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        tracing::error!(
                            provider = self.name,
                            operation = call.operation,
                            status,
                            "provider answer longer than {MAX_BODY} bytes; treated as transient"
                        );
                        return Err(ProviderError::transient(format!(
                            "{what}: HTTP {status} with an answer longer than {MAX_BODY} bytes"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(ProviderError::transient(format!(
                        "{what}: HTTP {status}, reading the answer failed: {}",
                        transport(&e)
                    )));
                }
            }
        }
        interpret(self.name, call.operation, status, retry_after, &body).map(|v| (v, retry_after))
    }
}

/// A transport error in a few words (no URL: it is in the context already).
fn transport(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}

/// `Retry-After`: delta-seconds or an HTTP date, at most 12 hours; anything else is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let after = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(after.min(LONGEST_RETRY_AFTER))
}

/// An error answer (RFC 9457 problem details); `code` is the machine-readable business reason.
#[derive(Debug, Deserialize)]
struct Problem {
    code: String,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

impl Problem {
    fn parse(body: &[u8]) -> Option<Self> {
        let problem: Self = serde_json::from_slice(body).ok()?;
        let code_ok = !problem.code.is_empty()
            && problem.code.len() <= 100
            && problem
                .code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        code_ok.then_some(problem)
    }

    fn describe(&self) -> String {
        match self.detail.as_deref().or(self.title.as_deref()) {
            Some(text) if !text.trim().is_empty() && text.trim() != self.code => {
                format!("{}: {}", self.code, text.trim())
            }
            _ => self.code.clone(),
        }
    }
}

fn unparseable(
    provider: &'static str,
    operation: &'static str,
    status: u16,
    why: &str,
) -> ProviderError {
    tracing::error!(
        provider,
        operation,
        status,
        error = why,
        "provider answer could not be parsed; treated as transient"
    );
    ProviderError::transient(format!(
        "{provider} {operation}: HTTP {status} with an answer that could not be parsed ({why})"
    ))
}

/// Classify an answer (see the module documentation): the documented body of a 2xx, or the
/// error class.
pub fn interpret<T: DeserializeOwned>(
    provider: &'static str,
    operation: &'static str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<T, ProviderError> {
    let what = || format!("{provider} {operation}");
    match status {
        200..=299 => serde_json::from_slice::<T>(body)
            .map_err(|e| unparseable(provider, operation, status, &e.to_string())),
        409 | 422 => match Problem::parse(body) {
            Some(problem) => Err(ProviderError::Refused(problem.describe())),
            None => Err(unparseable(
                provider,
                operation,
                status,
                "no problem body with a business code",
            )),
        },
        408 | 429 | 500..=599 => Err(ProviderError::Transient {
            reason: format!("{}: HTTP {status}", what()),
            retry_after,
        }),
        400 | 413 | 414 | 415 | 431 => {
            let detail = Problem::parse(body).map(|p| format!(" ({})", p.describe()));
            Err(ProviderError::Rejected(format!(
                "{}: HTTP {status}, the provider rejects the request{}",
                what(),
                detail.unwrap_or_default()
            )))
        }
        401 | 403 => {
            tracing::error!(
                provider,
                operation,
                status,
                "provider refuses our credentials; check the token or client certificate"
            );
            Err(ProviderError::transient(format!(
                "{}: HTTP {status}, credentials refused",
                what()
            )))
        }
        _ => {
            tracing::error!(
                provider,
                operation,
                status,
                "provider answered an unexpected status; check its base URL and API version"
            );
            Err(ProviderError::transient(format!(
                "{}: unexpected HTTP {status}",
                what()
            )))
        }
    }
}

fn items(lines: &[Line]) -> Value {
    Value::Array(
        lines
            .iter()
            .map(|l| json!({ "sku": l.sku, "quantity": l.quantity }))
            .collect(),
    )
}

fn money(amount: &order_proto::v1::Money) -> Value {
    json!({ "currency": amount.currency, "amount_minor": amount.amount_minor })
}

/// A provider's reference as its contract defines it (`Reference`: 1-128 characters of
/// `A-Z a-z 0-9 . _ : -`, not only dots); anything else is an answer off the contract
/// (transient, ERROR line): the order ledger could not record it, or (`.`, `..`) a URL path
/// holding it would lead elsewhere.
fn reference(
    provider: &'static str,
    operation: &'static str,
    field: &str,
    value: String,
) -> Result<String, ProviderError> {
    let count = value.chars().count();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    let dots = value.chars().all(|c| c == '.');
    if count == 0 || count > 128 || !value.chars().all(allowed) || dots {
        Err(unparseable(
            provider,
            operation,
            200,
            &format!(
                "{field} {:?} is not a reference (1-128 characters of A-Z, a-z, 0-9, '.', '_', \
                 ':', '-', not only dots)",
                value.chars().take(140).collect::<String>()
            ),
        ))
    } else {
        Ok(value)
    }
}

/// The carrier's name, by the domain's own rule (what ShipOrder accepts): 1-64 characters,
/// not only blank or invisible ones, no control or line-separator characters. A name the
/// order's log could not record is off the contract, never the order's fault.
fn carrier(value: String) -> Result<String, ProviderError> {
    match order_domain::values::Carrier::parse(value.as_str()) {
        Ok(_) => Ok(value),
        Err(violation) => Err(unparseable(
            "shipping",
            "ship",
            200,
            &format!(
                "carrier {:?} is not 1-64 printable characters ({violation})",
                value.chars().take(80).collect::<String>()
            ),
        )),
    }
}

/// A 2xx answer must say the state the operation leads to (`reserved`, `captured`, ...) and,
/// when it names an amount, the amount asked for: a `declined` status or a partial
/// authorization inside a 2xx is off the contract, never a success.
fn settled(
    provider: &'static str,
    operation: &'static str,
    status: &str,
    expected: &str,
    amount: Option<&AnsweredMoney>,
    asked: Option<&order_proto::v1::Money>,
) -> Result<(), ProviderError> {
    if status != expected {
        return Err(unparseable(
            provider,
            operation,
            200,
            &format!(
                "status {:?} where the contract says {expected:?}",
                status.chars().take(40).collect::<String>()
            ),
        ));
    }
    if let (Some(amount), Some(asked)) = (amount, asked)
        && (amount.currency != asked.currency || amount.amount_minor != asked.amount_minor)
    {
        return Err(unparseable(
            provider,
            operation,
            200,
            &format!(
                "amount {} {} where {} {} was asked for",
                amount.amount_minor, amount.currency, asked.amount_minor, asked.currency
            ),
        ));
    }
    Ok(())
}

/// The inventory service: `POST /v1/reservations`, `POST /v1/reservations/{id}/release`.
#[derive(Debug, Clone)]
pub struct HttpInventory {
    client: ProviderClient,
}

/// The payment service: `POST /v1/authorizations`, `POST /v1/payments/{id}/capture`,
/// `/void` and `/refunds`.
#[derive(Debug, Clone)]
pub struct HttpPayment {
    client: ProviderClient,
}

/// The shipping service: `POST /v1/shipments`, `GET /v1/shipments/{tracking_number}`.
#[derive(Debug, Clone)]
pub struct HttpShipping {
    client: ProviderClient,
}

impl HttpInventory {
    /// The adapter over `client`.
    pub fn new(client: ProviderClient) -> Self {
        Self { client }
    }
}

impl HttpPayment {
    /// The adapter over `client`.
    pub fn new(client: ProviderClient) -> Self {
        Self { client }
    }
}

impl HttpShipping {
    /// The adapter over `client`.
    pub fn new(client: ProviderClient) -> Self {
        Self { client }
    }
}

#[derive(Deserialize)]
struct Reservation {
    reservation_id: String,
    status: String,
}

#[derive(Deserialize)]
struct Authorization {
    payment_id: String,
    status: String,
    #[serde(default)]
    amount: Option<AnsweredMoney>,
}

/// The answer to release, capture, void and refund: the state it left the reference in.
#[derive(Deserialize)]
struct Acknowledged {
    status: String,
    #[serde(default)]
    amount: Option<AnsweredMoney>,
}

#[derive(Deserialize, PartialEq, Eq)]
struct AnsweredMoney {
    currency: String,
    amount_minor: i64,
}

#[derive(Deserialize)]
struct ShipmentAnswer {
    carrier: String,
    tracking_number: String,
    status: String,
}

/// The statuses a shipment can have (`Shipment.status` in shipping.yaml).
const SHIPMENT_STATUSES: [&str; 6] = [
    "label_created",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "returned",
    "lost",
];

#[derive(Deserialize)]
struct Tracking {
    status: String,
}

impl InventoryProvider for HttpInventory {
    fn reserve(&self, request: ReserveRequest) -> BoxFuture<'_, Result<String, ProviderError>> {
        Box::pin(async move {
            let answer: Reservation = self
                .client
                .send(Call {
                    operation: "reserve",
                    method: Method::POST,
                    path: &["v1", "reservations"],
                    key: Some(request.idempotency_key),
                    body: Some(json!({
                        "order_id": request.order_id,
                        "lines": items(&request.lines),
                    })),
                })
                .await?;
            settled(
                "inventory",
                "reserve",
                &answer.status,
                "reserved",
                None,
                None,
            )?;
            reference(
                "inventory",
                "reserve",
                "reservation_id",
                answer.reservation_id,
            )
        })
    }

    fn release(&self, request: ReleaseRequest) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            let answer: Acknowledged = self
                .client
                .send(Call {
                    operation: "release",
                    method: Method::POST,
                    path: &["v1", "reservations", &request.reservation_id, "release"],
                    key: Some(request.idempotency_key),
                    body: Some(json!({ "order_id": request.order_id })),
                })
                .await?;
            settled(
                "inventory",
                "release",
                &answer.status,
                "released",
                None,
                None,
            )
        })
    }
}

impl PaymentProvider for HttpPayment {
    fn authorize(&self, request: AuthorizeRequest) -> BoxFuture<'_, Result<String, ProviderError>> {
        Box::pin(async move {
            let answer: Authorization = self
                .client
                .send(Call {
                    operation: "authorize",
                    method: Method::POST,
                    path: &["v1", "authorizations"],
                    key: Some(request.idempotency_key),
                    body: Some(json!({
                        "order_id": request.order_id,
                        "customer_id": request.customer_id,
                        "amount": money(&request.amount),
                        "line_items": items(&request.lines),
                    })),
                })
                .await?;
            settled(
                "payment",
                "authorize",
                &answer.status,
                "authorized",
                answer.amount.as_ref(),
                Some(&request.amount),
            )?;
            reference("payment", "authorize", "payment_id", answer.payment_id)
        })
    }

    fn capture(&self, request: CaptureRequest) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            let answer: Acknowledged = self
                .client
                .send(Call {
                    operation: "capture",
                    method: Method::POST,
                    path: &["v1", "payments", &request.payment_id, "capture"],
                    key: Some(request.idempotency_key),
                    body: Some(json!({
                        "order_id": request.order_id,
                        "amount": money(&request.amount),
                    })),
                })
                .await?;
            settled(
                "payment",
                "capture",
                &answer.status,
                "captured",
                answer.amount.as_ref(),
                Some(&request.amount),
            )
        })
    }

    fn refund(&self, request: RefundRequest) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            let (operation, last, body, expected) = match request.action {
                PaymentAction::Void => (
                    "void",
                    "void",
                    json!({ "order_id": request.order_id }),
                    "voided",
                ),
                PaymentAction::Refund => (
                    "refund",
                    "refunds",
                    json!({ "order_id": request.order_id, "amount": money(&request.amount) }),
                    "refunded",
                ),
            };
            let answer: Acknowledged = self
                .client
                .send(Call {
                    operation,
                    method: Method::POST,
                    path: &["v1", "payments", &request.payment_id, last],
                    key: Some(request.idempotency_key),
                    body: Some(body),
                })
                .await?;
            // A void's answer may name the authorization's amount; only a refund's must match.
            let asked = (request.action == PaymentAction::Refund).then_some(&request.amount);
            settled(
                "payment",
                operation,
                &answer.status,
                expected,
                answer.amount.as_ref(),
                asked,
            )
        })
    }
}

impl ShippingProvider for HttpShipping {
    fn ship(&self, request: ShipRequest) -> BoxFuture<'_, Result<Shipment, ProviderError>> {
        Box::pin(async move {
            use order_proto::v1::ShippingMethod as M;
            let method = match request.method {
                M::Express => "express",
                M::Overnight => "overnight",
                M::Standard | M::Unspecified => "standard",
            };
            let address = &request.address;
            let mut to = json!({
                "recipient": address.recipient,
                "line1": address.line1,
                "city": address.city,
                "postal_code": address.postal_code,
                "country": address.country,
            });
            if !address.line2.is_empty()
                && let Some(map) = to.as_object_mut()
            {
                map.insert("line2".to_owned(), json!(address.line2));
            }
            let answer: ShipmentAnswer = self
                .client
                .send(Call {
                    operation: "ship",
                    method: Method::POST,
                    path: &["v1", "shipments"],
                    key: Some(request.idempotency_key),
                    body: Some(json!({
                        "order_id": request.order_id,
                        "method": method,
                        "address": to,
                        "items": items(&request.lines),
                    })),
                })
                .await?;
            if !SHIPMENT_STATUSES.contains(&answer.status.as_str()) {
                return Err(unparseable(
                    "shipping",
                    "ship",
                    200,
                    &format!(
                        "unknown shipment status {:?}",
                        answer.status.chars().take(40).collect::<String>()
                    ),
                ));
            }
            Ok(Shipment {
                carrier: carrier(answer.carrier)?,
                tracking_number: reference(
                    "shipping",
                    "ship",
                    "tracking_number",
                    answer.tracking_number,
                )?,
            })
        })
    }

    fn delivery(&self, request: DeliveryRequest) -> BoxFuture<'_, Result<Delivery, ProviderError>> {
        Box::pin(async move {
            let (tracking, hint): (Tracking, _) = self
                .client
                .exchange(Call {
                    operation: "delivery",
                    method: Method::GET,
                    path: &["v1", "shipments", &request.tracking_number],
                    key: None,
                    body: None,
                })
                .await?;
            match tracking.status.as_str() {
                "delivered" => Ok(Delivery::Delivered),
                "label_created" | "in_transit" | "out_for_delivery" => Ok(Delivery::InTransit {
                    recheck_after: hint,
                }),
                "returned" | "lost" => Err(ProviderError::Refused(format!(
                    "parcel {} was {}: the carrier will not deliver it",
                    request.tracking_number, tracking.status
                ))),
                other => Err(unparseable(
                    "shipping",
                    "delivery",
                    200,
                    &format!("unknown shipment status {other:?}"),
                )),
            }
        })
    }
}

/// The three HTTP adapters, built from their endpoints.
#[derive(Debug, Clone)]
pub struct HttpProviders {
    /// Stock.
    pub inventory: HttpInventory,
    /// Money.
    pub payment: HttpPayment,
    /// Parcels.
    pub shipping: HttpShipping,
}

impl HttpProviders {
    /// Build the three clients; errors name the setting at fault.
    pub fn new(
        inventory: &ProviderEndpoint,
        payment: &ProviderEndpoint,
        shipping: &ProviderEndpoint,
        settings: &HttpSettings,
    ) -> Result<Self, String> {
        Ok(Self {
            inventory: HttpInventory::new(ProviderClient::new(
                "inventory",
                "ORDER_PROVIDER_INVENTORY_URL",
                inventory,
                settings,
            )?),
            payment: HttpPayment::new(ProviderClient::new(
                "payment",
                "ORDER_PROVIDER_PAYMENT_URL",
                payment,
                settings,
            )?),
            shipping: HttpShipping::new(ProviderClient::new(
                "shipping",
                "ORDER_PROVIDER_SHIPPING_URL",
                shipping,
                settings,
            )?),
        })
    }

    /// As the saga's ports.
    pub fn into_ports(self) -> crate::providers::Providers {
        use std::sync::Arc;
        crate::providers::Providers {
            inventory: Arc::new(self.inventory),
            payment: Arc::new(self.payment),
            shipping: Arc::new(self.shipping),
        }
    }
}

/// `base` as an error may show it: any `user:password@` before the host is replaced by
/// `***@` (a credential must never reach a log), and a query by `?***`.
fn redacted(base: &str) -> String {
    let (scheme, rest) = match base.find("://") {
        Some(at) => base.split_at(at + 3),
        None => ("", base),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    let path = match path.find('?') {
        Some(at) => format!("{}?***", &path[..at]),
        None => path.to_owned(),
    };
    format!("{scheme}{authority}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Answer {
        id: String,
    }

    fn answer(status: u16, retry_after: Option<u64>, body: &str) -> Result<Answer, ProviderError> {
        interpret(
            "payment",
            "authorize",
            status,
            retry_after.map(Duration::from_secs),
            body.as_bytes(),
        )
    }

    #[test]
    fn a_2xx_with_the_documented_body_is_a_success() {
        for status in [200, 201] {
            assert_eq!(
                answer(status, None, r#"{"id":"p-1","extra":true}"#),
                Ok(Answer { id: "p-1".into() })
            );
        }
    }

    #[test]
    fn a_409_or_422_with_a_business_code_is_a_refusal() {
        for status in [409, 422] {
            let body = r#"{"type":"about:blank","title":"declined","status":422,"code":"card_declined","detail":"insufficient funds"}"#;
            assert_eq!(
                answer(status, None, body),
                Err(ProviderError::Refused(
                    "card_declined: insufficient funds".into()
                ))
            );
        }
    }

    #[test]
    fn timeouts_throttling_and_server_errors_are_transient_with_their_retry_after() {
        for status in [408, 429, 500, 502, 503, 504] {
            match answer(status, Some(7), "") {
                Err(ProviderError::Transient {
                    reason,
                    retry_after,
                }) => {
                    assert!(reason.contains(&status.to_string()), "{reason}");
                    assert_eq!(retry_after, Some(Duration::from_secs(7)));
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn unparseable_answers_are_transient() {
        for (status, body) in [
            (200, "<html>oops</html>"),
            (201, r#"{"payment":"p-1"}"#),
            (200, ""),
            (409, "conflict"),
            (422, r#"{"title":"no code"}"#),
            (422, r#"{"code":"has spaces in it"}"#),
        ] {
            assert!(
                matches!(
                    answer(status, None, body),
                    Err(ProviderError::Transient { ref reason, retry_after: None })
                        if reason.contains("could not be parsed")
                ),
                "{status} {body}"
            );
        }
    }

    /// Log lines written while `f` runs, as text.
    fn logged(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer(Arc::new(Mutex::new(Vec::new())));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn an_unparseable_answer_logs_an_error_naming_the_provider_and_the_status() {
        let log = logged(|| {
            let _ = answer(200, None, "<html>");
        });
        assert!(log.contains("ERROR"), "{log}");
        assert!(log.contains("provider=\"payment\""), "{log}");
        assert!(log.contains("status=200"), "{log}");
        assert!(log.contains("could not be parsed"), "{log}");
        let quiet = logged(|| {
            let _ = answer(503, None, "");
            let _ = answer(422, None, r#"{"code":"card_declined"}"#);
        });
        assert!(
            !quiet.contains("ERROR"),
            "transient and refused answers log nothing: {quiet}"
        );
    }

    #[test]
    fn a_request_the_provider_calls_malformed_is_rejected() {
        for status in [400, 413, 415] {
            assert!(
                matches!(answer(status, None, r#"{"code":"invalid_request","detail":"lines: empty"}"#),
                    Err(ProviderError::Rejected(ref why)) if why.contains("invalid_request: lines: empty")),
                "{status}"
            );
        }
        assert!(matches!(
            answer(400, None, "bad"),
            Err(ProviderError::Rejected(_))
        ));
    }

    #[test]
    fn credentials_and_unexpected_statuses_are_transient() {
        for status in [401, 403, 404, 405, 301, 302, 410] {
            assert!(
                matches!(
                    answer(status, None, ""),
                    Err(ProviderError::Transient { .. })
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_bounded() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("5", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("999999999", now),
            Some(Duration::from_secs(43_200))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn endpoints_are_checked_without_the_network() {
        let ok = ProviderEndpoint::new("https://payments.internal:8443/api");
        assert!(ok.validate("X").is_ok());
        assert!(
            ProviderEndpoint::new("HTTP://payments.internal")
                .validate("X")
                .is_ok()
        );
        for (url, expected) in [
            ("payments.internal", "http:// or https://"),
            ("ftp://payments", "http:// or https://"),
            ("https://payments/?a=1", "query"),
            ("https://user:pw@payments/", "credentials"),
            // What the URL standard would repair into a host of its own choosing.
            ("http:///shipping", "http:// or https:// and a host"),
            ("http:payments", "http:// or https:// and a host"),
            ("http:\\\\payments", "http:// or https:// and a host"),
            ("http://payments/v 1", "spaces"),
            ("http://pay\\ments", "backslashes"),
        ] {
            let error = ProviderEndpoint::new(url).validate("X").unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
        }
        let mut plain_with_cert = ProviderEndpoint::new("http://payments");
        plain_with_cert.client_identity = Some(Pem::Inline("x".into()));
        assert!(
            plain_with_cert
                .validate("X")
                .unwrap_err()
                .contains("https://")
        );
        let mut token = ProviderEndpoint::new("http://payments");
        token.token = Some("has space".into());
        let error = token.validate("X").unwrap_err();
        assert!(
            !error.contains("has space"),
            "the token is not echoed: {error}"
        );
        let error = token.validate("ORDER_PROVIDER_PAYMENT_URL").unwrap_err();
        assert!(
            error.starts_with("ORDER_PROVIDER_PAYMENT_TOKEN "),
            "the error names the token's variable: {error}"
        );
    }

    /// A URL's scheme is case-insensitive: `HTTPS://` is https, for a client certificate and a
    /// CA as for the URL itself; `HTTP://` is not.
    #[test]
    fn an_upper_case_https_scheme_takes_a_client_certificate_and_a_ca() {
        let pem = || Some(Pem::Inline("-----BEGIN CERTIFICATE-----".into()));
        for base in [
            "HTTPS://payments/p",
            "Https://payments",
            " https://payments",
        ] {
            let mut endpoint = ProviderEndpoint::new(base);
            endpoint.client_identity = pem();
            endpoint.ca = pem();
            assert_eq!(
                endpoint.validate("ORDER_PROVIDER_PAYMENT_URL"),
                Ok(()),
                "{base}"
            );
        }
        let mut endpoint = ProviderEndpoint::new("HTTP://payments");
        endpoint.client_identity = pem();
        assert!(
            endpoint
                .validate("ORDER_PROVIDER_PAYMENT_URL")
                .is_err_and(|e| e.contains("needs an https:// URL"))
        );
        let mut endpoint = ProviderEndpoint::new("HTTP://payments");
        endpoint.ca = pem();
        assert!(
            endpoint
                .validate("ORDER_PROVIDER_PAYMENT_URL")
                .is_err_and(|e| e.contains("needs an https:// URL"))
        );
    }

    /// A problem says its code once: a detail that only repeats it adds nothing.
    #[test]
    fn a_problem_whose_detail_repeats_its_code_says_it_once() {
        let describe = |body: &str| Problem::parse(body.as_bytes()).unwrap().describe();
        assert_eq!(
            describe(r#"{"code":"card_declined","detail":"card_declined"}"#),
            "card_declined"
        );
        assert_eq!(
            describe(r#"{"code":"card_declined","detail":"insufficient funds"}"#),
            "card_declined: insufficient funds"
        );
        assert_eq!(describe(r#"{"code":"card_declined"}"#), "card_declined");
    }

    #[test]
    fn secrets_are_never_shown() {
        let mut endpoint = ProviderEndpoint::new("https://payments");
        endpoint.token = Some("very-secret-token".into());
        endpoint.client_identity = Some(Pem::Inline("-----BEGIN PRIVATE KEY-----".into()));
        let shown = format!("{endpoint:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }

    #[test]
    fn a_reference_of_dots_only_is_off_the_contract() {
        // A URL path takes `.` and `..` as "here" and "up": the call would go elsewhere.
        for value in [".", "..", "...", "...."] {
            let answer = reference("payment", "authorize", "payment_id", value.to_owned());
            assert!(
                matches!(answer, Err(ProviderError::Transient { .. })),
                "{value:?}: {answer:?}"
            );
        }
        for value in ["a.", ".a", "a..b", "..:", "-", "PAY-1.2"] {
            assert_eq!(
                reference("payment", "authorize", "payment_id", value.to_owned()),
                Ok(value.to_owned())
            );
        }
    }

    #[test]
    fn a_path_segment_of_dots_only_or_empty_is_never_sent() {
        let client = ProviderClient::new(
            "payment",
            "X",
            &ProviderEndpoint::new("http://127.0.0.1:1/payments"),
            &HttpSettings::default(),
        )
        .unwrap();
        // A reference from the log that no provider answer gave (recorded through the API):
        // the request could never reach the payment it names.
        for id in [".", "..", "...", ""] {
            let url = client.url(&["v1", "payments", id, "capture"]);
            assert!(
                matches!(url, Err(ProviderError::Rejected(_))),
                "{id:?}: {url:?}"
            );
        }
        assert_eq!(
            client
                .url(&["v1", "payments", "..a", "capture"])
                .unwrap()
                .as_str(),
            "http://127.0.0.1:1/payments/v1/payments/..a/capture"
        );
    }

    #[test]
    fn paths_are_escaped_under_the_base_url() {
        let client = ProviderClient::new(
            "payment",
            "X",
            &ProviderEndpoint::new("http://127.0.0.1:1/payments/"),
            &HttpSettings::default(),
        )
        .unwrap();
        let url = client.url(&["v1", "payments", "p/1 ?", "capture"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/payments/v1/payments/p%2F1%20%3F/capture"
        );
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn a_bad_provider_url_is_never_echoed_with_its_credentials() {
        for bad in [
            "https://svc:s3cr3t-pa55@payments.internal/v1",
            "https://svc:s3cr3t-pa55@payments.internal/v1?token=s3cr3t-pa55",
            "ftp://svc:s3cr3t-pa55@payments.internal",
            "https://svc:s3cr3t-pa55@payments.internal/a b",
        ] {
            let Err(error) = parse_base(bad, "ORDER_PAYMENTS_URL") else {
                panic!("{bad} was accepted");
            };
            assert!(!error.contains("s3cr3t"), "{bad}: {error}");
            assert!(error.contains("payments.internal"), "{bad}: {error}");
        }
    }
}

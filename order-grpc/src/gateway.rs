//! The layer every request passes first: correlation id, W3C trace context, bearer-token
//! authentication, the concurrency limit that sheds load at once instead of queueing, and the
//! call's deadline (the caller's `grpc-timeout`, at most the server's default): a call still
//! running when it passes is answered DEADLINE_EXCEEDED, as the gRPC specification says.
//!
//! Health checks (`/grpc.health.v1.Health/...`) are exempt from authentication and from the
//! limit, so that a load balancer can always ask. Reflection needs a token when tokens are
//! configured (it describes the API, which is not secret, but anonymous access is not
//! granted by default).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tower::{Layer, Service};

use crate::scopes::{Needs, Scope, Scopes, describe, needs};

/// The correlation id header, accepted and echoed.
pub const CORRELATION_HEADER: &str = "x-correlation-id";
/// The causation id header: the id of the event a caller reacts to with this call (a worker's
/// saga step), recorded as the `causation_id` of the events the command appends.
pub const CAUSATION_HEADER: &str = "x-causation-id";
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// What the gateway learned about a request; handlers find it in the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub correlation_id: String,
    /// The event the caller reacts to ([`CAUSATION_HEADER`]), when it said.
    pub causation_id: Option<uuid::Uuid>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// The name of the token the caller presented, when tokens are required.
    pub actor: Option<String>,
    /// When the gateway answers DEADLINE_EXCEEDED for the call (its `grpc-timeout`, at most
    /// the server's default): handlers that wait give up a little before, with an answer that
    /// says what they waited for.
    pub deadline: tokio::time::Instant,
}

/// A call's place under the concurrency limit, in the request's extensions (not for health
/// checks, which are outside the limit). A handler about to wait for something that is not
/// work of its own (a read-your-writes wait for a projector that is behind) gives it back, so
/// that waiting reads never take the places of commands; such waits have a limit of their
/// own. The place is given back when the call ends at the latest.
#[derive(Debug, Clone)]
pub struct CallSlot(Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>);

impl CallSlot {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(permit))))
    }

    /// Give the call's place back to the limit now (nothing when it was given back already).
    pub fn release(&self) {
        let permit = match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(permit);
    }
}

/// Gives a call's place back when the gateway's part of the call ends (dropped or finished).
struct ReleasedAtEnd(Option<CallSlot>);

impl Drop for ReleasedAtEnd {
    fn drop(&mut self) {
        if let Some(slot) = &self.0 {
            slot.release();
        }
    }
}

/// Accepted bearer tokens, the names they stand for, and what each may do.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<Token>,
}

#[derive(Clone)]
struct Token {
    name: String,
    secret: Vec<u8>,
    scopes: Scopes,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("Tokens")
            .field(
                "names",
                &self
                    .entries
                    .iter()
                    .map(|t| (&t.name, &t.scopes))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Tokens {
    /// Parse a token file (`--auth-tokens-file`): `name=token` or bare `token` entries,
    /// separated by commas or newlines. A line whose first non-blank character is `#` is a
    /// comment (the whole line, commas included); blank lines and empty entries are skipped.
    /// Elsewhere an entry is read as in [`Tokens::parse_setting`]. An empty result is not an
    /// error here: [`ServeArgs::tokens`](crate::ServeArgs::tokens) refuses a file that was
    /// given and holds no token.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Self::default();
        tokens.add_file(text)?;
        Ok(tokens)
    }

    /// Parse the inline token setting (`--auth-tokens`, `ORDER_GRPC_AUTH_TOKENS`): `name=token`
    /// or bare `token` entries separated by commas or newlines, so a `,` can never be part of a
    /// token. The setting has no comments: an entry starting with `#` is refused, so that text
    /// meant as a comment never becomes a token, nor leaves the list empty (give a token that
    /// starts with `#` a name: `svc=#…`).
    ///
    /// Tokens must be 16-512 visible ASCII characters; a name is 1-64 of
    /// `A-Z a-z 0-9 _ . -`. An entry is `name=token` only when both halves are valid;
    /// otherwise the whole entry is a bare token (so a base64 token ending in `=` padding is
    /// read whole, never split), named `token-N` by its position; `name=` followed by anything
    /// but padding must be a valid token. Give a bare token that contains `=` an explicit name
    /// (`svc=ab=cd…`). Errors name an entry by its position and never quote it: the text may be
    /// a secret. Two entries with one secret are refused (a caller's `actor` would depend on
    /// the order of the list). Every token may call every method; see
    /// [`Tokens::with_scopes`]. An empty result is not an error here (see [`Tokens::parse`]).
    pub fn parse_setting(text: &str) -> Result<Self, String> {
        let mut tokens = Self::default();
        tokens.add_setting(text)?;
        Ok(tokens)
    }

    /// Add the entries of an inline setting (see [`Tokens::parse_setting`]); returns how many.
    /// Positions and `token-N` names continue the list.
    pub(crate) fn add_setting(&mut self, text: &str) -> Result<usize, String> {
        let before = self.entries.len();
        for entry in text.split([',', '\n']).map(str::trim) {
            self.add_entry(entry)?;
        }
        Ok(self.entries.len() - before)
    }

    /// Add the entries of a token file (see [`Tokens::parse`]); returns how many. Positions
    /// and `token-N` names continue the list.
    pub(crate) fn add_file(&mut self, text: &str) -> Result<usize, String> {
        let before = self.entries.len();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            for entry in line.split(',').map(str::trim) {
                self.add_entry(entry)?;
            }
        }
        Ok(self.entries.len() - before)
    }

    /// Add one caller's token from its own variable (see
    /// [`CALLER_TOKEN_PREFIX`](crate::config::CALLER_TOKEN_PREFIX)): `suffix` is the variable's
    /// name after the prefix, 1-64 of `A-Z 0-9 _` (a lower-case letter is refused: the
    /// caller's name is the suffix in lower case, and two spellings of one name must not both
    /// be read), `value` the whole token. Errors never quote the value.
    pub(crate) fn add_caller(&mut self, suffix: &str, value: &str) -> Result<(), String> {
        if suffix.is_empty()
            || suffix.len() > 64
            || !suffix
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(
                "the caller's name after ORDER_GRPC_AUTH_TOKEN_ must be 1-64 of A-Z 0-9 _"
                    .to_owned(),
            );
        }
        let name = suffix.to_ascii_lowercase();
        let token = value.trim();
        if token.is_empty() {
            return Err("is set but empty: give it the caller's token, or unset it".to_owned());
        }
        self.add_entry(&format!("{name}={token}"))
    }

    /// Add one trimmed entry (an empty one is skipped).
    fn add_entry(&mut self, entry: &str) -> Result<(), String> {
        fn valid_token(token: &str) -> bool {
            (16..=512).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
        }
        fn valid_name(name: &str) -> bool {
            (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        }
        if entry.is_empty() {
            return Ok(());
        }
        let position = self.entries.len() + 1;
        if entry.starts_with('#') {
            return Err(format!(
                "auth token entry {position} starts with `#`: only a whole line of a token file \
                 is a comment (a token that starts with `#` needs a name: `name=#...`)"
            ));
        }
        let (name, token) = match entry.split_once('=') {
            Some((name, token)) if valid_name(name.trim()) && valid_token(token.trim()) => {
                (name.trim().to_owned(), token.trim())
            }
            // `name=short`: a named token that is too short or has a space, not a bare
            // token that happens to contain '=' (only base64 padding may end one).
            Some((name, token))
                if valid_name(name.trim()) && !token.trim().bytes().all(|b| b == b'=') =>
            {
                return Err(format!(
                    "auth token entry {position} is `name=token` but its token is not \
                     16-512 visible ASCII characters"
                ));
            }
            _ if valid_token(entry) => (format!("token-{position}"), entry),
            _ => {
                return Err(format!(
                    "auth token entry {position} is neither `name=token` nor a bare token \
                     (names: 1-64 of A-Z a-z 0-9 _ . -; tokens: 16-512 visible ASCII \
                     characters)"
                ));
            }
        };
        if let Some(earlier) = self.entries.iter().position(|t| t.name == name) {
            return Err(format!(
                "auth token entries {} and {position} are both named {name}",
                earlier + 1
            ));
        }
        if let Some(earlier) = self
            .entries
            .iter()
            .position(|t| t.secret == token.as_bytes())
        {
            return Err(format!(
                "auth token entries {} and {position} are the same token",
                earlier + 1
            ));
        }
        self.entries.push(Token {
            name,
            secret: token.as_bytes().to_vec(),
            scopes: Scope::ALL.into(),
        });
        Ok(())
    }

    /// Give each token exactly the scopes `assignments` (from `--auth-scopes`) name for it.
    /// Every token must be named there and every name must be a token: a token left out
    /// would otherwise silently get all rights or none.
    pub fn with_scopes(mut self, assignments: &[(String, Scopes)]) -> Result<Self, String> {
        if self.entries.is_empty() {
            return Err(
                "--auth-scopes needs --auth-tokens (there is no caller to give scopes to)"
                    .to_owned(),
            );
        }
        for (name, _) in assignments {
            if !self.entries.iter().any(|t| &t.name == name) {
                return Err(format!(
                    "--auth-scopes names {name}, which is not a token's name (tokens: {})",
                    self.names().join(", ")
                ));
            }
        }
        for token in &mut self.entries {
            let Some((_, scopes)) = assignments.iter().find(|(n, _)| *n == token.name) else {
                return Err(format!(
                    "token {} has no scopes in --auth-scopes (e.g. {}=orders.read)",
                    token.name, token.name
                ));
            };
            token.scopes = scopes.clone();
        }
        Ok(self)
    }

    /// The tokens' names.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|t| t.name.as_str()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of the token `presented` is, if any (for tests).
    #[cfg(test)]
    pub(crate) fn name_of(&self, presented: &[u8]) -> Option<&str> {
        self.find(presented).map(|t| t.name.as_str())
    }

    /// The matching token. Compares in constant time per candidate.
    fn find(&self, presented: &[u8]) -> Option<&Token> {
        let mut found = None;
        for token in &self.entries {
            if constant_time_eq(&token.secret, presented) {
                found = Some(token);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A header value that is printable ASCII and at most `max` bytes, else `None`.
fn header_text(request: &Request<impl Sized>, name: &str, max: usize) -> Option<String> {
    let value = request.headers().get(name)?.to_str().ok()?;
    (!value.is_empty() && value.len() <= max && value.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .then(|| value.to_owned())
}

/// The caller's correlation id, when it is 1 to 128 visible ASCII characters (no spaces: it is
/// written into log lines and message attributes as one token).
fn correlation_id(request: &Request<impl Sized>) -> Option<String> {
    header_text(request, CORRELATION_HEADER, 128)
        .filter(|id| id.bytes().all(|b| b.is_ascii_graphic()))
}

/// The caller's causation id, on a command (the only calls that record it): absent, or the
/// canonical text of a UUID that is not nil; any other value is refused (INVALID_ARGUMENT
/// naming the header), never dropped silently. Other calls ignore the header.
fn causation_id(request: &Request<impl Sized>) -> Result<Option<uuid::Uuid>, Status> {
    if !request.uri().path().starts_with(crate::scopes::COMMANDS) {
        return Ok(None);
    }
    let Some(value) = request.headers().get(CAUSATION_HEADER) else {
        return Ok(None);
    };
    let refused = |why: &str| {
        bad_request(
            &format!("{CAUSATION_HEADER} {why}"),
            CAUSATION_HEADER,
            &format!("{why}: the id of the event this call reacts to (a UUID, not nil)"),
        )
    };
    let text = value.to_str().map_err(|_| refused("is not text"))?;
    // The rule of every id the API takes (an order id's).
    order_domain::values::OrderId::parse(text)
        .map(|id| Some(id.as_uuid()))
        .map_err(|violation| refused(&violation.to_string()))
}

/// The gateway layer.
#[derive(Debug, Clone)]
pub struct GatewayLayer {
    tokens: Arc<Tokens>,
    limit: Arc<Semaphore>,
    default_deadline: Duration,
}

impl GatewayLayer {
    /// `default_deadline` bounds calls that bring no `grpc-timeout` (and those that bring a
    /// longer one).
    pub fn new(tokens: Tokens, max_concurrent: usize, default_deadline: Duration) -> Self {
        Self {
            tokens: Arc::new(tokens),
            limit: Arc::new(Semaphore::new(max_concurrent.max(1))),
            default_deadline,
        }
    }
}

/// `grpc-timeout` is digits followed by a unit: H, M, S, m (ms), u (µs), n (ns).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// How much earlier than tonic's own timer the gateway answers an expired call, so that the
/// answer is always ours (DEADLINE_EXCEEDED) and never tonic's (CANCELLED "Timeout expired").
const DEADLINE_MARGIN: Duration = Duration::from_millis(1);

/// Runs `call` until `deadline`; `None` when the deadline passed first.
///
/// tonic wraps every service in a timer of its own for the same `grpc-timeout`, started a
/// little later than ours and answering CANCELLED. Its timer and ours may sit in different
/// shards of tokio's timer wheel, fired one after the other: the task can be woken and polled
/// by tonic's timer while ours is not yet marked as fired. So the clock decides, not the order
/// in which timers fire: every poll that finds the call unfinished at or after the deadline
/// answers at once, and tonic's wrapper, which polls us first, never gets to answer.
async fn until_deadline<F: Future>(call: F, deadline: tokio::time::Instant) -> Option<F::Output> {
    let mut call = std::pin::pin!(call);
    let mut sleep = std::pin::pin!(tokio::time::sleep_until(deadline));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = call.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if tokio::time::Instant::now() >= deadline || sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

impl<S> Layer<S> for GatewayLayer {
    type Service = Gateway<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gateway {
            inner,
            tokens: self.tokens.clone(),
            limit: self.limit.clone(),
            default_deadline: self.default_deadline,
        }
    }
}

/// The gateway service (see the module documentation).
#[derive(Debug, Clone)]
pub struct Gateway<S> {
    inner: S,
    tokens: Arc<Tokens>,
    limit: Arc<Semaphore>,
    default_deadline: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

fn refuse(
    status: Status,
    correlation_id: &str,
    method: Option<&str>,
) -> Response<tonic::body::Body> {
    let mut response = status.into_http::<tonic::body::Body>();
    if let Ok(value) = HeaderValue::from_str(correlation_id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    log_error_answer(method, correlation_id, &response);
    response
}

/// At DEBUG, one line for a call answered with an error status in its headers (every unary
/// error: a refusal of the gateway, bad input, NOT_FOUND, a state the command does not fit, a
/// version conflict), so that a caller's correlation id finds it: such calls are the caller's
/// mistakes, not the service's, and log nothing above DEBUG. `method` is `None` when DEBUG
/// is off (nothing is logged, nothing allocated).
fn log_error_answer<B>(method: Option<&str>, correlation_id: &str, response: &Response<B>) {
    let Some(method) = method else {
        return;
    };
    // The status as the caller reads it (its message percent-decoded).
    if let Some(status) = Status::from_header_map(response.headers())
        && status.code() != tonic::Code::Ok
    {
        tracing::debug!(
            method,
            grpc_status = status.code() as i32,
            code = ?status.code(),
            message = status.message(),
            correlation_id,
            "call answered with an error"
        );
    }
}

impl<S, B> Service<Request<B>> for Gateway<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map_or(self.default_deadline, |t| t.min(self.default_deadline));
        let deadline = tokio::time::Instant::now() + timeout.saturating_sub(DEADLINE_MARGIN);
        let correlation_id =
            correlation_id(&request).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let health = request.uri().path().starts_with(HEALTH_PREFIX);
        // The subscriber's level hint, not `tracing::enabled!`: with per-layer filters, asking
        // `enabled` without making the span or event leaves the filters' answer for the next
        // span made on this thread, and the OpenTelemetry layer then passed over the command's
        // span (its trace id went missing from the log lines).
        let method = (tracing::level_filters::LevelFilter::current()
            >= tracing::level_filters::LevelFilter::DEBUG)
            .then(|| request.uri().path().to_owned());

        let mut actor = None;
        if !health && !self.tokens.is_empty() {
            match self.authenticate(&request) {
                Ok(token) => {
                    if let Some(status) = permission_denied(token, request.uri().path()) {
                        return Box::pin(std::future::ready(Ok(refuse(
                            status,
                            &correlation_id,
                            method.as_deref(),
                        ))));
                    }
                    actor = Some(token.name.clone());
                }
                Err(why) => {
                    let status = Status::unauthenticated(why);
                    return Box::pin(std::future::ready(Ok(refuse(
                        status,
                        &correlation_id,
                        method.as_deref(),
                    ))));
                }
            }
        }

        let causation_id = match causation_id(&request) {
            Ok(id) => id,
            Err(status) => {
                return Box::pin(std::future::ready(Ok(refuse(
                    status,
                    &correlation_id,
                    method.as_deref(),
                ))));
            }
        };

        let slot = if health {
            None
        } else {
            match self.limit.clone().try_acquire_owned() {
                Ok(permit) => Some(CallSlot::new(permit)),
                Err(_) => {
                    metrics::counter!("order_grpc_requests_shed_total").increment(1);
                    let status = Status::resource_exhausted(
                        "the service is at its concurrency limit; retry with backoff",
                    );
                    return Box::pin(std::future::ready(Ok(refuse(
                        status,
                        &correlation_id,
                        method.as_deref(),
                    ))));
                }
            }
        };

        // A traceparent that is no W3C trace context is ignored, and its tracestate with it.
        let (traceparent, tracestate) = order_runtime::trace::pass_through(
            header_text(&request, "traceparent", 512).as_deref(),
            header_text(&request, "tracestate", 512).as_deref(),
        );
        let context = RequestContext {
            correlation_id: correlation_id.clone(),
            causation_id,
            traceparent,
            tracestate,
            actor,
            deadline,
        };
        request.extensions_mut().insert(context);
        if let Some(slot) = &slot {
            request.extensions_mut().insert(slot.clone());
        }
        // A known command's name only: a label value never comes from what a caller made up.
        let command = request
            .uri()
            .path()
            .strip_prefix("/orders.v1.OrderService/")
            .and_then(|method| {
                order_domain::order::CommandKind::ALL
                    .iter()
                    .map(|kind| kind.as_str())
                    .find(|name| *name == method)
            });

        // The clone that was polled ready handles this call; the fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            // The call's place goes back when its answer does, whoever else holds the slot.
            let _slot = ReleasedAtEnd(slot);
            let mut response = match until_deadline(inner.call(request), deadline).await {
                Some(response) => response?,
                None => {
                    metrics::counter!("order_grpc_deadline_exceeded_total").increment(1);
                    let status = match command {
                        Some(command) => {
                            metrics::counter!("order_commands_total", "command" => command, "outcome" => "deadline")
                                .increment(1);
                            Status::deadline_exceeded(
                                "the call's deadline passed before it finished; a command may or \
                                 may not have been applied: retry it with the same command id to \
                                 know",
                            )
                        }
                        None => Status::deadline_exceeded(
                            "the call's deadline passed before it finished",
                        ),
                    };
                    return Ok(refuse(status, &correlation_id, method.as_deref()));
                }
            };
            correct_status(&mut response);
            if let Ok(value) = HeaderValue::from_str(&correlation_id) {
                response.headers_mut().insert(CORRELATION_HEADER, value);
            }
            log_error_answer(method.as_deref(), &correlation_id, &response);
            Ok(response)
        })
    }
}

impl<S> Gateway<S> {
    /// The token the request's one `authorization` header presents, or why the call is
    /// UNAUTHENTICATED: no header, more than one (only one may count, and which one must not
    /// depend on their order), one that is not `Bearer <token>`, or an unknown token. No
    /// allocation: the answers are static text.
    fn authenticate<B>(&self, request: &Request<B>) -> Result<&Token, &'static str> {
        let mut values = request
            .headers()
            .get_all(http::header::AUTHORIZATION)
            .iter();
        let Some(value) = values.next() else {
            return Err("missing bearer token (authorization: Bearer <token>)");
        };
        if values.next().is_some() {
            return Err(
                "more than one authorization header: send exactly one (authorization: Bearer \
                 <token>)",
            );
        }
        let presented = value.to_str().ok().and_then(bearer_token).ok_or(
            "the authorization header is not `Bearer <token>` (the scheme, a space, the \
             token)",
        )?;
        self.tokens
            .find(presented.as_bytes())
            .ok_or("invalid bearer token")
    }
}

/// The token of an `authorization` value `Bearer <token>`; the scheme's case does not matter
/// (RFC 9110, 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// PERMISSION_DENIED when `token` has none of the scopes the method at `path` needs: the
/// method, the scopes that would do and the caller are in the message and in an ErrorInfo
/// detail (reason `MISSING_SCOPE`), and counted by caller and method.
fn permission_denied(token: &Token, path: &str) -> Option<Status> {
    let Needs::AnyOf(needed) = needs(path) else {
        return None;
    };
    if needed.iter().any(|s| token.scopes.contains(s)) {
        return None;
    }
    metrics::counter!(
        "order_grpc_permission_denied_total",
        "caller" => token.name.clone(),
        "method" => path.to_owned(),
    )
    .increment(1);
    let required = describe(needed);
    let message = format!("{} may not call {path}: it needs {required}", token.name);
    Some(crate::error::error_info_status(
        tonic::Code::PermissionDenied,
        "MISSING_SCOPE",
        &[
            ("method", path.to_owned()),
            ("required_scope", required),
            ("caller", token.name.clone()),
        ],
        message,
    ))
}

/// A request that does not decode (e.g. invalid UTF-8 in a string field) is the caller's
/// mistake: tonic answers INTERNAL, the contract says INVALID_ARGUMENT with a
/// `google.rpc.BadRequest` naming the field. A message over the size limit is
/// RESOURCE_EXHAUSTED in the gRPC specification; tonic answers OUT_OF_RANGE. A request over
/// it gets an ErrorInfo too (see [`request_too_large`]), so that clients do not send it
/// again. Both arrive as trailers-only responses, with the status in the headers.
fn correct_status<B>(response: &mut Response<B>) {
    let headers = response.headers();
    let (Some(code), Some(message)) = (headers.get("grpc-status"), headers.get("grpc-message"))
    else {
        return;
    };
    let message = message.to_str().unwrap_or_default();
    if code.as_bytes() == b"13" {
        let message = percent_encoding::percent_decode_str(message).decode_utf8_lossy();
        let status = if message.starts_with("failed to decode") {
            Some(undecodable(&message))
        } else {
            // tonic's words for a body without a message, or with one cut off mid-way.
            match &*message {
                "Missing request message." => Some(bad_request(
                    "the request body holds no message",
                    "request",
                    "no message: a unary call sends exactly one",
                )),
                "Unexpected EOF decoding stream." => Some(bad_request(
                    "the request body ends inside a message",
                    "request",
                    "the message is shorter than its length prefix says",
                )),
                // A frame flag other than 0 and 1. (Flag 1 without a grpc-encoding stays
                // INTERNAL: the gRPC compression specification requires it.)
                _ if message.starts_with(
                    "protocol error: received message with invalid compression flag",
                ) =>
                {
                    Some(bad_request(
                        "the request body holds a message with an unknown flag",
                        "request",
                        "a message's flag byte is 0 (or 1 with a grpc-encoding)",
                    ))
                }
                _ => None,
            }
        };
        if let Some(status) = status {
            // On a status this function made itself, add_header cannot fail: the message is
            // percent-encoded and the details base64.
            let _ = status.add_header(response.headers_mut());
        }
        return;
    }
    if code.as_bytes() == b"11" {
        let message = percent_encoding::percent_decode_str(message).decode_utf8_lossy();
        if let Some((bytes, limit)) = decoded_too_large(&message) {
            // As above: a status made here always fits in headers.
            let _ = request_too_large(bytes, limit).add_header(response.headers_mut());
            return;
        }
    }
    let corrected = match code.as_bytes() {
        b"11" if message.contains("message%20length%20too%20large") => {
            Some(tonic::Code::ResourceExhausted)
        }
        _ => None,
    };
    if let Some(code) = corrected {
        let value = HeaderValue::from(code as i32);
        response.headers_mut().insert("grpc-status", value);
    }
}

/// A response body whose trailers are corrected: a response message over the size limit,
/// which tonic ends with OUT_OF_RANGE in the trailers, is RESOURCE_EXHAUSTED with an ErrorInfo
/// of reason `RESPONSE_TOO_LARGE` (domain `order-ledger`, metadata `bytes`, `limit_bytes`).
/// The body of every gRPC response the server sends (`crate::serve` wraps it; no allocation,
/// one check per trailers frame).
#[derive(Debug)]
pub struct CorrectedBody<B>(pub B);

impl<B> http_body::Body for CorrectedBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.0).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = polled {
            return Poll::Ready(Some(Ok(match frame.into_trailers() {
                Ok(mut trailers) => {
                    correct_trailers(&mut trailers);
                    http_body::Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// A response message over the size limit is RESOURCE_EXHAUSTED (gRPC specification, our
/// contract); tonic ends the call with OUT_OF_RANGE ("Error, encoded message length too large")
/// in the trailers, the headers having gone out. The answer gets an ErrorInfo (see
/// [`response_too_large`]).
fn correct_trailers(trailers: &mut http::HeaderMap) {
    if trailers.get("grpc-status").map(HeaderValue::as_bytes) != Some(b"11") {
        return;
    }
    let Some(message) = trailers.get("grpc-message").and_then(|m| m.to_str().ok()) else {
        return;
    };
    let message = percent_encoding::percent_decode_str(message).decode_utf8_lossy();
    if let Some((bytes, limit)) = too_large("encoded", &message) {
        let status = response_too_large(bytes, limit);
        // A status made here always fits in headers (percent-encoded message, base64 details).
        let _ = status.add_header(trailers);
    }
}

/// RESOURCE_EXHAUSTED for a response message larger than the service sends, with an ErrorInfo
/// (reason `RESPONSE_TOO_LARGE`, domain `order-ledger`, metadata `bytes` and `limit_bytes`):
/// asking for less (a smaller `page_size`, `max_events`) succeeds; the same request again
/// cannot.
fn response_too_large(bytes: &str, limit: &str) -> Status {
    too_large_status(
        "RESPONSE_TOO_LARGE",
        bytes,
        limit,
        format!(
            "the response message takes {bytes} bytes, more than the {limit} this service \
             sends (ORDER_GRPC_MAX_MESSAGE_BYTES): ask for less (a smaller page_size or \
             max_events); the same request again cannot succeed"
        ),
    )
}

/// RESOURCE_EXHAUSTED with `message` and an ErrorInfo of `reason` (domain `order-ledger`,
/// metadata `bytes` and `limit_bytes`).
fn too_large_status(reason: &str, bytes: &str, limit: &str, message: String) -> Status {
    crate::error::error_info_status(
        tonic::Code::ResourceExhausted,
        reason,
        &[
            ("bytes", bytes.to_owned()),
            ("limit_bytes", limit.to_owned()),
        ],
        message,
    )
}

/// The size and the limit in tonic's refusal of a request message over the limit ("Error,
/// decoded message length too large: found 2738 bytes, the limit is: 1024 bytes"); `None`
/// for any other message.
fn decoded_too_large(message: &str) -> Option<(&str, &str)> {
    too_large("decoded", message)
}

/// The size and the limit in tonic's "Error, {coded} message length too large: found 2738
/// bytes, the limit is: 1024 bytes"; `None` for any other message.
fn too_large<'m>(coded: &str, message: &'m str) -> Option<(&'m str, &'m str)> {
    let rest = message
        .strip_prefix("Error, ")?
        .strip_prefix(coded)?
        .strip_prefix(" message length too large: found ")?;
    let (bytes, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(bytes) && digits(limit)).then_some((bytes, limit))
}

/// RESOURCE_EXHAUSTED for a request message larger than the service accepts, with an
/// ErrorInfo (reason `REQUEST_TOO_LARGE`, domain `order-ledger`, metadata `bytes` and
/// `limit_bytes`): the same request can never succeed, and clients that see the reason do not
/// send it again (unlike the other RESOURCE_EXHAUSTED answers, which are worth a retry).
fn request_too_large(bytes: &str, limit: &str) -> Status {
    too_large_status(
        "REQUEST_TOO_LARGE",
        bytes,
        limit,
        format!(
            "the request message takes {bytes} bytes, more than the {limit} this service \
             accepts (ORDER_GRPC_MAX_MESSAGE_BYTES); sending it again cannot succeed"
        ),
    )
}

/// INVALID_ARGUMENT for prost's "failed to decode Protobuf message: Inner.field: Outer.field:
/// what", with one field violation on the path from the request (`outer.inner`; `request`
/// when prost named no field).
fn undecodable(message: &str) -> Status {
    let rest = message
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(message);
    let identifier =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut fields = Vec::new();
    let mut what = rest;
    while let Some((segment, after)) = what.split_once(": ") {
        match segment.split_once('.') {
            Some((type_name, field)) if identifier(type_name) && identifier(field) => {
                fields.push(field);
                what = after;
            }
            _ => break,
        }
    }
    // prost names the innermost field first; no field named: the request as a whole, as
    // elsewhere in this service.
    fields.reverse();
    let path = if fields.is_empty() {
        "request".to_owned()
    } else {
        fields.join(".")
    };
    bad_request(
        message,
        &path,
        &format!("not a valid protobuf encoding: {what}"),
    )
}

/// INVALID_ARGUMENT with `message` and one field violation of `field`.
pub(crate) fn bad_request(message: &str, field: &str, description: &str) -> Status {
    use tonic_types::{ErrorDetails, FieldViolation, StatusExt};
    let details = ErrorDetails::with_bad_request(vec![FieldViolation::new(field, description)]);
    Status::with_error_details(tonic::Code::InvalidArgument, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undecodable_message_names_the_field_from_the_request_down() {
        let cases = [
            (
                "failed to decode Protobuf message: LineItem.sku: PlaceOrderRequest.lines: invalid string value: data is not UTF-8 encoded",
                "lines.sku",
                "invalid string value: data is not UTF-8 encoded",
            ),
            (
                "failed to decode Protobuf message: PlaceOrderRequest.order_id: invalid wire type: Varint (expected LengthDelimited)",
                "order_id",
                "invalid wire type: Varint (expected LengthDelimited)",
            ),
            (
                "failed to decode Protobuf message: invalid tag value: 0",
                "request",
                "invalid tag value: 0",
            ),
            ("failed to decode Protobuf message: ", "request", ""),
        ];
        for (message, field, what) in cases {
            let status = undecodable(message);
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert_eq!(status.message(), message);
            let details = tonic_types::StatusExt::get_error_details(&status);
            let violations = &details.bad_request().expect(message).field_violations;
            assert_eq!(violations.len(), 1, "{message}");
            assert_eq!(violations[0].field, field, "{message}");
            assert_eq!(
                violations[0].description,
                format!("not a valid protobuf encoding: {what}"),
                "{message}"
            );
        }
    }

    #[test]
    fn only_tonics_refusal_of_a_large_request_reads_as_request_too_large() {
        assert_eq!(
            decoded_too_large(
                "Error, decoded message length too large: found 2738 bytes, the limit is: 1024 bytes"
            ),
            Some(("2738", "1024"))
        );
        for other in [
            "Error, encoded message length too large: found 2738 bytes, the limit is: 1024 bytes",
            "Error, decoded message length too large: found many bytes, the limit is: 1024 bytes",
            "decoded message length too large",
            "",
        ] {
            assert_eq!(decoded_too_large(other), None, "{other}");
        }
        let status = request_too_large("2738", "1024");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let info = tonic_types::StatusExt::get_details_error_info(&status).unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("REQUEST_TOO_LARGE", "order-ledger")
        );
        assert_eq!(info.metadata["bytes"], "2738");
        assert_eq!(info.metadata["limit_bytes"], "1024");
    }

    /// Polls `future` once with the calling task's waker.
    async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
    }

    #[test]
    fn an_oversized_response_in_the_trailers_becomes_resource_exhausted_with_a_reason() {
        let mut trailers = http::HeaderMap::new();
        Status::out_of_range(
            "Error, encoded message length too large: found 40000 bytes, the limit is: 32768 bytes",
        )
        .add_header(&mut trailers)
        .unwrap();
        correct_trailers(&mut trailers);
        let status = Status::from_header_map(&trailers).expect("a status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("40000") && status.message().contains("32768"));
        let info = tonic_types::StatusExt::get_details_error_info(&status).unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("RESPONSE_TOO_LARGE", "order-ledger")
        );
        assert_eq!(info.metadata["bytes"], "40000");
        assert_eq!(info.metadata["limit_bytes"], "32768");

        // Any other status, OUT_OF_RANGE of a handler included, is left as it is.
        for status in [
            Status::out_of_range("after_version is past the order's last event"),
            Status::ok(""),
        ] {
            let mut trailers = http::HeaderMap::new();
            status.add_header(&mut trailers).unwrap();
            let before = trailers.clone();
            correct_trailers(&mut trailers);
            assert_eq!(trailers, before);
        }
    }

    #[test]
    fn the_bearer_scheme_is_read_whatever_its_case() {
        for value in ["Bearer abc", "bearer abc", "BEARER  abc", " Bearer abc"] {
            assert_eq!(bearer_token(value), Some("abc"), "{value}");
        }
        for value in ["Basic abc", "Bearerabc", "abc", ""] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }

    /// A task woken by another timer (tonic's) after the deadline answers DEADLINE_EXCEEDED even
    /// if tokio has not fired the gateway's own timer yet: here the current-thread runtime's
    /// timer driver does not run while the thread sleeps, so no timer fires before the poll.
    #[tokio::test(flavor = "current_thread")]
    async fn a_call_polled_after_its_deadline_is_over_whatever_the_timers_say() {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(5);
        let mut call = Box::pin(until_deadline(std::future::pending::<()>(), deadline));
        assert!(poll_once(&mut call).await.is_pending());
        std::thread::sleep(Duration::from_millis(30));
        assert!(matches!(poll_once(&mut call).await, Poll::Ready(None)));
        let mut finished = Box::pin(until_deadline(std::future::ready(7), deadline));
        assert!(matches!(
            poll_once(&mut finished).await,
            Poll::Ready(Some(7))
        ));
    }

    #[test]
    fn tokens_parse_with_and_without_names() {
        let tokens =
            Tokens::parse("worker=aaaaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbb\n# comment\n")
                .unwrap();
        let name = |secret: &[u8]| tokens.find(secret).map(|t| t.name.as_str());
        assert_eq!(name(b"aaaaaaaaaaaaaaaaaaaa"), Some("worker"));
        assert_eq!(name(b"bbbbbbbbbbbbbbbbbbbb"), Some("token-2"));
        assert_eq!(name(b"cccccccccccccccccccc"), None);
        assert!(Tokens::parse("short").is_err());
        assert!(Tokens::parse("x=has space in the token value").is_err());
        assert!(Tokens::parse("").unwrap().is_empty());
    }

    #[test]
    fn scopes_go_to_every_token_by_name_and_a_token_left_out_is_an_error() {
        let tokens = Tokens::parse("worker=aaaaaaaaaaaaaaaaaaaa,ops=bbbbbbbbbbbbbbbbbbbb").unwrap();
        assert!(
            tokens
                .entries
                .iter()
                .all(|t| t.scopes == Scopes::from(Scope::ALL)),
            "without --auth-scopes every token may do everything"
        );
        let scoped = tokens
            .clone()
            .with_scopes(
                &crate::scopes::parse_assignments(
                    "worker=orders.read+orders.saga,ops=orders.admin",
                )
                .unwrap(),
            )
            .unwrap();
        let scopes = |secret: &[u8]| scoped.find(secret).map(|t| t.scopes.clone());
        assert_eq!(
            scopes(b"aaaaaaaaaaaaaaaaaaaa"),
            Some(Scopes::from([Scope::Read, Scope::Saga]))
        );
        assert_eq!(
            scopes(b"bbbbbbbbbbbbbbbbbbbb"),
            Some(Scopes::from([Scope::Admin]))
        );

        let left_out = tokens
            .clone()
            .with_scopes(&crate::scopes::parse_assignments("worker=orders.read").unwrap())
            .unwrap_err();
        assert!(left_out.contains("token ops has no scopes"), "{left_out}");
        let stranger = tokens
            .with_scopes(
                &crate::scopes::parse_assignments(
                    "worker=orders.read,ops=orders.read,eve=orders.admin",
                )
                .unwrap(),
            )
            .unwrap_err();
        assert!(
            stranger.contains("names eve, which is not a token"),
            "{stranger}"
        );
        let no_tokens = Tokens::default()
            .with_scopes(&crate::scopes::parse_assignments("worker=orders.read").unwrap())
            .unwrap_err();
        assert!(no_tokens.contains("needs --auth-tokens"), "{no_tokens}");
        assert!(
            Tokens::parse("a=aaaaaaaaaaaaaaaaaaaa,a=bbbbbbbbbbbbbbbbbbbb")
                .unwrap_err()
                .contains("entries 1 and 2 are both named a")
        );
    }

    #[test]
    fn a_padded_base64_token_is_read_whole_and_errors_never_quote_an_entry() {
        // base64 of 18 bytes ends in "=="; splitting at the first '=' would have made the
        // secret a name and quoted it in the start-up error.
        let tokens =
            Tokens::parse("c2VjcmV0LXNlY3JldC1zZWNyZXQ=,ops=Zm9vYmFyYmF6cXV4cXV1eA==").unwrap();
        let name = |secret: &[u8]| tokens.find(secret).map(|t| t.name.as_str());
        assert_eq!(name(b"c2VjcmV0LXNlY3JldC1zZWNyZXQ="), Some("token-1"));
        assert_eq!(name(b"Zm9vYmFyYmF6cXV4cXV1eA=="), Some("ops"));
        // An explicit name keeps a token containing '=' whole.
        let named = Tokens::parse("svc=abc=0123456789abcdef0").unwrap();
        assert_eq!(
            named
                .find(b"abc=0123456789abcdef0")
                .map(|t| t.name.as_str()),
            Some("svc")
        );
        for bad in [
            "Zm9vYmFy==",                          // a short padded secret
            "worker=tooshort",                     // a named short token
            "worker=tooshort12345",                // named, short, 20 chars in all
            "bad nombre=aaaaaaaaaaaaaaaaaaaa x",   // a space: neither form
            "ok=aaaaaaaaaaaaaaaaaaaa,s3cr3tPart=", // second entry, empty token
        ] {
            let err = Tokens::parse(bad).unwrap_err();
            assert!(err.contains("auth token entry"), "{bad}: {err}");
            for part in bad.split([',', '=', ' ']).filter(|p| p.len() > 5) {
                assert!(
                    !err.contains(part),
                    "{bad}: the error quotes {part:?}: {err}"
                );
            }
        }
        assert!(
            Tokens::parse("ok=aaaaaaaaaaaaaaaaaaaa,s3cr3tPart=")
                .unwrap_err()
                .contains("entry 2")
        );
    }

    #[test]
    fn one_secret_under_two_names_is_refused() {
        let err = Tokens::parse("a=aaaaaaaaaaaaaaaaaaaa,b=aaaaaaaaaaaaaaaaaaaa").unwrap_err();
        assert!(err.contains("entries 1 and 2 are the same token"), "{err}");
        assert!(!err.contains("aaaaaaaaaaaaaaaa"), "{err}");
        let bare =
            Tokens::parse("aaaaaaaaaaaaaaaaaaaa,x=bbbbbbbbbbbbbbbbbbbb,aaaaaaaaaaaaaaaaaaaa")
                .unwrap_err();
        assert!(
            bare.contains("entries 1 and 3 are the same token"),
            "{bare}"
        );
    }

    #[test]
    fn the_inline_setting_has_no_comments_and_refuses_a_hash_entry_without_quoting_it() {
        for setting in [
            "#aaaaaaaaaaaaaaaaaaaa",
            "worker=bbbbbbbbbbbbbbbbbbbb,#aaaaaaaaaaaaaaaaaaaa",
            "worker=bbbbbbbbbbbbbbbbbbbb\n# aaaaaaaaaaaaaaaaaaaa",
        ] {
            let err = Tokens::parse_setting(setting).unwrap_err();
            assert!(err.contains("starts with `#`"), "{setting:?}: {err}");
            assert!(!err.contains("aaaaaaaaaaaa"), "{setting:?}: quoted: {err}");
        }
        // Named, a token may start with `#`; a separator alone holds no entry.
        let named = Tokens::parse_setting("svc=#aaaaaaaaaaaaaaaaaaaa").unwrap();
        assert_eq!(named.names(), ["svc"]);
        assert!(Tokens::parse_setting(" , \n").unwrap().is_empty());
        // In a file, a whole line starting with `#` is a comment, commas and all.
        let file = Tokens::parse(
            "# old, rotated out: bbbbbbbbbbbbbbbbbbbb\n  #x\nops=cccccccccccccccccccc\n",
        )
        .unwrap();
        assert_eq!(file.names(), ["ops"]);
        assert!(Tokens::parse("#aaaaaaaaaaaaaaaaaaaa").unwrap().is_empty());
    }

    #[test]
    fn debug_output_never_shows_tokens() {
        let tokens = Tokens::parse("worker=supersecretvalue12345").unwrap();
        assert!(!format!("{tokens:?}").contains("supersecret"));
    }
}

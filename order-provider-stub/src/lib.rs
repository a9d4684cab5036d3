//! Stub inventory, payment and shipping providers for local runs and tests: the contracts of
//! `docs/providers/*.yaml` on one HTTP server (HTTP/1.1 and HTTP/2 with prior knowledge),
//! under the base URLs `/inventory`, `/payment` and `/shipping`.
//!
//! - **Validated**: every request is checked against its OpenAPI document (body schema,
//!   `Idempotency-Key`, bearer token); a violation is answered 400 with a problem body naming
//!   where, and changes nothing.
//! - **Idempotent**: the first answer to each `Idempotency-Key` is kept and repeated for the
//!   same key (same status, same body); the same key with another body gets 400
//!   `idempotency_key_reused`. Requests are carried out one at a time, so the contract's 429
//!   for a key still being processed never happens here (a throttle plan sends 429s).
//! - **Counting**: [`Effects`] counts what was done per order (reservations, releases,
//!   authorizations, captures, voids, refunds, shipments), so a test can prove each happened
//!   exactly once, and how many answers were replays.
//! - **Business rules** (as the worker's simulation): a SKU starting `OOS-` is out of stock
//!   (409), a line item starting `DECLINE-` has its payment declined (422). A parcel is
//!   delivered `delivery_after` after it was shipped; until then tracking says `in_transit`
//!   with `Retry-After`.
//! - **Faults on demand**, per provider (`Faults`): an outage for N seconds (503, nothing
//!   done), latency on every request, bursts of 429 with `Retry-After`, malformed answer bodies
//!   (after the work was done: the retry with the same key gets the real answer), answers
//!   held past the client's timeout (likewise), and answers lost (503 after the work was
//!   done).
//!
//! Control (not part of the contracts): `GET /_stub/effects`, `PUT /_stub/faults/{provider}`
//! with a [`FaultPlan`], `DELETE /_stub/faults`.

pub mod contract;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::contract::Contract;

/// The three providers the stub serves.
pub const PROVIDERS: [&str; 3] = ["inventory", "payment", "shipping"];

/// How the stub behaves when nothing is wrong.
#[derive(Debug, Clone)]
pub struct StubOptions {
    /// Bearer token every provider request must carry (None: no authentication).
    pub token: Option<String>,
    /// Time from shipment to delivery.
    pub delivery_after: Duration,
    /// `Retry-After` of a tracking answer while the parcel is in transit, at most.
    pub tracking_retry_after: Duration,
}

impl Default for StubOptions {
    fn default() -> Self {
        Self {
            token: None,
            delivery_after: Duration::ZERO,
            tracking_retry_after: Duration::from_secs(1),
        }
    }
}

/// Misbehaviour of one provider, as set through the control API or [`Stub::set_faults`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// Answer every request 503 (doing nothing) for this many seconds from now.
    #[serde(default)]
    pub outage_seconds: u64,
    /// Wait this long before answering every request.
    #[serde(default)]
    pub latency_ms: u64,
    /// Answer the next requests 429 with `Retry-After` (doing nothing).
    #[serde(default)]
    pub throttle: Option<Throttle>,
    /// Do the next requests' work but answer each with a body that is not JSON.
    #[serde(default)]
    pub malformed: u32,
    /// Do the next requests' work but hold each answer this long (past the client's timeout).
    #[serde(default)]
    pub slow: Option<Slow>,
    /// Do the next requests' work but answer each 503, as if the answer were lost on its way
    /// back (a proxy's timeout, a connection reset): the caller cannot know the work was done.
    /// A repeated key is answered 503 too while this lasts.
    #[serde(default)]
    pub lost: u32,
}

impl FaultPlan {
    /// The longest outage, latency or held answer a plan may ask for (a day).
    pub const MAX_SECONDS: u64 = 86_400;

    /// Whether the stub can carry the plan out: every duration at most a day.
    pub fn check(&self) -> Result<(), String> {
        let too_long = |name: &str, seconds: u64| {
            (seconds > Self::MAX_SECONDS)
                .then(|| format!("{name} is longer than {} s", Self::MAX_SECONDS))
        };
        let slow_ms = self.slow.map_or(0, |s| s.delay_ms);
        match too_long("outage_seconds", self.outage_seconds)
            .or_else(|| too_long("latency_ms", self.latency_ms / 1000))
            .or_else(|| too_long("slow.delay_ms", slow_ms / 1000))
        {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

/// A burst of 429 answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    /// How many requests.
    pub count: u32,
    /// The `Retry-After` each carries, in seconds.
    pub retry_after_seconds: u64,
}

/// Answers held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slow {
    /// How many requests.
    pub count: u32,
    /// How long each answer is held.
    pub delay_ms: u64,
}

/// The faults in force for one provider.
#[derive(Debug, Clone, Default)]
struct Faults {
    outage_until: Option<Instant>,
    latency: Duration,
    throttle_left: u32,
    throttle_retry_after: u64,
    malformed_left: u32,
    slow_left: u32,
    slow_by: Duration,
    lost_left: u32,
}

impl Faults {
    fn from_plan(plan: &FaultPlan) -> Self {
        Self {
            outage_until: (plan.outage_seconds > 0).then(|| {
                Instant::now()
                    + Duration::from_secs(plan.outage_seconds.min(FaultPlan::MAX_SECONDS))
            }),
            latency: Duration::from_millis(plan.latency_ms),
            throttle_left: plan.throttle.map_or(0, |t| t.count),
            throttle_retry_after: plan.throttle.map_or(0, |t| t.retry_after_seconds),
            malformed_left: plan.malformed,
            slow_left: plan.slow.map_or(0, |s| s.count),
            slow_by: Duration::from_millis(plan.slow.map_or(0, |s| s.delay_ms)),
            lost_left: plan.lost,
        }
    }
}

/// What the providers did, per order id, and how often an answer was a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effects {
    /// Stock reserved (inventory `reserve` that succeeded).
    pub reservations: BTreeMap<String, u32>,
    /// Reservations released.
    pub releases: BTreeMap<String, u32>,
    /// Payments authorized.
    pub authorizations: BTreeMap<String, u32>,
    /// Payments captured.
    pub captures: BTreeMap<String, u32>,
    /// Authorizations voided.
    pub voids: BTreeMap<String, u32>,
    /// Refunds.
    pub refunds: BTreeMap<String, u32>,
    /// Parcels booked.
    pub shipments: BTreeMap<String, u32>,
    /// Refusals answered (out of stock, declined), per order.
    pub refusals: BTreeMap<String, u32>,
    /// Answers repeated for a known idempotency key.
    pub replays: u64,
    /// Requests answered 503 by an outage or a lost answer, 429 by a throttle, with a
    /// malformed body, or held.
    pub faults_injected: u64,
    /// Requests refused as breaking the contract (400) or unauthenticated (401).
    pub invalid_requests: u64,
    /// Requests seen, per provider.
    pub requests: BTreeMap<String, u64>,
}

impl Effects {
    /// Orders with any effect done more than once (the number of such order/effect pairs).
    pub fn doubled(&self) -> usize {
        [
            &self.reservations,
            &self.releases,
            &self.authorizations,
            &self.captures,
            &self.voids,
            &self.refunds,
            &self.shipments,
        ]
        .iter()
        .map(|counts| counts.values().filter(|n| **n > 1).count())
        .sum()
    }
}

/// A kept answer.
#[derive(Debug, Clone)]
struct Kept {
    body_fingerprint: Value,
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

#[derive(Debug, Clone)]
struct Payment {
    order_id: String,
    amount: Value,
    amount_minor: i64,
    state: &'static str,
    refunded_minor: i64,
}

#[derive(Debug, Clone)]
struct Shipment {
    carrier: String,
    shipped_at: Instant,
}

#[derive(Debug, Default)]
struct Books {
    /// Kept answers by (provider, idempotency key). The work of a request runs under the
    /// books' lock, so a key is never seen half-processed.
    keys: HashMap<(String, String), Kept>,
    reservations: HashMap<String, (String, bool)>,
    payments: HashMap<String, Payment>,
    shipments: HashMap<String, Shipment>,
    effects: Effects,
    faults: HashMap<String, Faults>,
}

/// The stub's state, shared by its handlers.
#[derive(Debug)]
struct Shared {
    options: StubOptions,
    contracts: HashMap<&'static str, Contract>,
    books: Mutex<Books>,
}

impl Shared {
    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running stub.
#[derive(Debug)]
pub struct Stub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// An answer: status, body, optional `Retry-After`.
type Answer = (u16, Value, Option<u64>);

fn problem(status: u16, code: &str, detail: impl Into<String>) -> Answer {
    (
        status,
        json!({
            "type": "about:blank",
            "title": code.replace('_', " "),
            "status": status,
            "code": code,
            "detail": detail.into(),
        }),
        None,
    )
}

fn respond(answer: Answer) -> Response {
    let (status, body, retry_after) = answer;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(seconds) = retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

impl Stub {
    /// Serve on `addr` (port 0: any free port).
    pub async fn start(addr: SocketAddr, options: StubOptions) -> anyhow::Result<Self> {
        let contracts = Contract::all()?;
        let shared = Arc::new(Shared {
            options,
            contracts,
            books: Mutex::new(Books::default()),
        });
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let router = Router::new()
            .route("/inventory/v1/reservations", post(reserve))
            .route(
                "/inventory/v1/reservations/{reservation_id}/release",
                post(release),
            )
            .route("/payment/v1/authorizations", post(authorize))
            .route("/payment/v1/payments/{payment_id}/capture", post(capture))
            .route("/payment/v1/payments/{payment_id}/void", post(void))
            .route("/payment/v1/payments/{payment_id}/refunds", post(refund))
            .route("/shipping/v1/shipments", post(ship))
            .route("/shipping/v1/shipments/{tracking_number}", get(track))
            .route("/_stub/effects", get(effects))
            .route("/_stub/faults/{provider}", put(put_faults))
            .route("/_stub/faults", delete(clear_faults))
            .fallback(|| async {
                respond(problem(
                    404,
                    "not_found",
                    "no such operation in the contracts",
                ))
            })
            .with_state(shared.clone());
        let (shutdown, mut stop) = watch::channel(false);
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "provider stub stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            shutdown,
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of `provider` (inventory, payment or shipping).
    pub fn base_url(&self, provider: &str) -> String {
        format!("http://{}/{provider}", self.addr)
    }

    /// Replace the faults of `provider`.
    pub fn set_faults(&self, provider: &str, plan: &FaultPlan) {
        self.shared
            .books()
            .faults
            .insert(provider.to_owned(), Faults::from_plan(plan));
    }

    /// No faults anywhere.
    pub fn clear_faults(&self) {
        self.shared.books().faults.clear();
    }

    /// What was done so far.
    pub fn effects(&self) -> Effects {
        self.shared.books().effects.clone()
    }

    /// Stop serving.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// The checks and bookkeeping around one operation.
struct Request<'a> {
    provider: &'static str,
    operation: &'static str,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    /// The path parameter, if any (part of what a key stands for).
    path: &'a str,
    /// Whether the operation changes anything (needs an idempotency key).
    mutating: bool,
}

async fn handle(
    shared: &Shared,
    request: Request<'_>,
    work: impl FnOnce(&mut Books, &Value, &Uuid) -> Answer,
) -> Response {
    let provider = request.provider;
    // Faults that come before any work.
    let (latency, early) = {
        let mut books = shared.books();
        *books
            .effects
            .requests
            .entry(provider.to_owned())
            .or_default() += 1;
        let faults = books.faults.entry(provider.to_owned()).or_default();
        let latency = faults.latency;
        let early = if faults
            .outage_until
            .is_some_and(|until| Instant::now() < until)
        {
            Some(problem(503, "unavailable", format!("{provider} is down")))
        } else if faults.throttle_left > 0 {
            faults.throttle_left -= 1;
            let mut answer = problem(429, "rate_limited", "slow down");
            answer.2 = Some(faults.throttle_retry_after);
            Some(answer)
        } else {
            None
        };
        if early.is_some() {
            books.effects.faults_injected += 1;
        }
        (latency, early)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(answer) = early {
        return respond(answer);
    }
    if let Some(expected) = &shared.options.token {
        let given = request
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(format!("Bearer {expected}").as_str()) {
            shared.books().effects.invalid_requests += 1;
            return respond(problem(
                401,
                "unauthorized",
                "missing or wrong bearer token",
            ));
        }
    }
    let (body, key) = if request.mutating {
        let key = match request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(Uuid::parse_str)
        {
            Some(Ok(key)) => key,
            Some(Err(_)) => {
                return invalid(shared, "Idempotency-Key must be a UUID");
            }
            None => return invalid(shared, "Idempotency-Key is required"),
        };
        let body: Value = match serde_json::from_slice(request.body) {
            Ok(body) => body,
            Err(e) => return invalid(shared, format!("the body is not JSON: {e}")),
        };
        let contract = &shared.contracts[provider];
        if let Err(violations) = contract.check_request(request.operation, &body) {
            let detail = violations
                .iter()
                .map(|v| {
                    format!(
                        "{}: {}",
                        if v.at.is_empty() { "/" } else { &v.at },
                        v.reason
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return invalid(shared, detail);
        }
        (body, key)
    } else {
        (Value::Null, Uuid::nil())
    };

    // Idempotency: a known key answers as the first time.
    let fingerprint = json!({
        "operation": request.operation,
        "path": request.path,
        "body": body,
    });
    let slot = (provider.to_owned(), key.to_string());
    let answer = {
        let mut books = shared.books();
        let known = if request.mutating {
            books.keys.get(&slot).cloned()
        } else {
            None
        };
        match known {
            Some(kept) if kept.body_fingerprint == fingerprint => {
                books.effects.replays += 1;
                (kept.status, kept.body, kept.retry_after)
            }
            Some(_) => {
                books.effects.invalid_requests += 1;
                problem(
                    400,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with another request",
                )
            }
            None => {
                let answer = work(&mut books, &body, &key);
                if request.mutating {
                    books.keys.insert(
                        slot,
                        Kept {
                            body_fingerprint: fingerprint,
                            status: answer.0,
                            body: answer.1.clone(),
                            retry_after: answer.2,
                        },
                    );
                }
                answer
            }
        }
    };
    finish(shared, provider, answer).await
}

fn invalid(shared: &Shared, detail: impl Into<String>) -> Response {
    shared.books().effects.invalid_requests += 1;
    respond(problem(400, "invalid_request", detail))
}

/// Faults that come after the work: an answer lost, a malformed body, an answer held back.
async fn finish(shared: &Shared, provider: &str, answer: Answer) -> Response {
    let (malformed, slow) = {
        let mut books = shared.books();
        let faults = books.faults.entry(provider.to_owned()).or_default();
        if faults.lost_left > 0 {
            faults.lost_left -= 1;
            books.effects.faults_injected += 1;
            return respond(problem(
                503,
                "unavailable",
                format!("{provider}: the answer was lost"),
            ));
        }
        let malformed = faults.malformed_left > 0;
        if malformed {
            faults.malformed_left -= 1;
        }
        let slow = if !malformed && faults.slow_left > 0 {
            faults.slow_left -= 1;
            Some(faults.slow_by)
        } else {
            None
        };
        if malformed || slow.is_some() {
            books.effects.faults_injected += 1;
        }
        (malformed, slow)
    };
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    if malformed {
        let mut response =
            (StatusCode::OK, "<html>502 bad gateway (not JSON)</html>").into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return response;
    }
    respond(answer)
}

fn count(map: &mut BTreeMap<String, u32>, order: &str) {
    *map.entry(order.to_owned()).or_default() += 1;
}

fn text<'a>(body: &'a Value, field: &str) -> &'a str {
    body.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn skus(body: &Value, field: &str) -> Vec<String> {
    body.get(field)
        .and_then(Value::as_array)
        .map(|lines| {
            lines
                .iter()
                .filter_map(|l| l.get("sku").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn reference(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

async fn reserve(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = Request {
        provider: "inventory",
        operation: "reserve",
        headers: &headers,
        body: &body,
        path: "",
        mutating: true,
    };
    handle(&shared, request, |books, body, _| {
        let order = text(body, "order_id").to_owned();
        if let Some(sku) = skus(body, "lines").iter().find(|s| s.starts_with("OOS-")) {
            count(&mut books.effects.refusals, &order);
            return problem(409, "out_of_stock", format!("{sku} is out of stock"));
        }
        let id = reference("RSV");
        books
            .reservations
            .insert(id.clone(), (order.clone(), false));
        count(&mut books.effects.reservations, &order);
        (
            201,
            json!({ "reservation_id": id, "status": "reserved" }),
            None,
        )
    })
    .await
}

async fn release(
    State(shared): State<Arc<Shared>>,
    Path(reservation_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Request {
        provider: "inventory",
        operation: "release",
        headers: &headers,
        body: &body,
        path: &reservation_id,
        mutating: true,
    };
    handle(&shared, request, |books, _, _| {
        let Some((order, released)) = books.reservations.get_mut(&reservation_id) else {
            return problem(404, "not_found", format!("no reservation {reservation_id}"));
        };
        if !*released {
            *released = true;
            let order = order.clone();
            count(&mut books.effects.releases, &order);
        }
        (
            200,
            json!({ "reservation_id": reservation_id, "status": "released" }),
            None,
        )
    })
    .await
}

async fn authorize(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = Request {
        provider: "payment",
        operation: "authorize",
        headers: &headers,
        body: &body,
        path: "",
        mutating: true,
    };
    handle(&shared, request, |books, body, _| {
        let order = text(body, "order_id").to_owned();
        if let Some(sku) = skus(body, "line_items")
            .iter()
            .find(|s| s.starts_with("DECLINE-"))
        {
            count(&mut books.effects.refusals, &order);
            return problem(
                422,
                "card_declined",
                format!("declined: the order contains {sku}"),
            );
        }
        let amount = body.get("amount").cloned().unwrap_or(Value::Null);
        let amount_minor = amount
            .get("amount_minor")
            .and_then(Value::as_i64)
            .unwrap_or_default();
        let id = reference("PAY");
        books.payments.insert(
            id.clone(),
            Payment {
                order_id: order.clone(),
                amount: amount.clone(),
                amount_minor,
                state: "authorized",
                refunded_minor: 0,
            },
        );
        count(&mut books.effects.authorizations, &order);
        (
            201,
            json!({ "payment_id": id, "status": "authorized", "amount": amount }),
            None,
        )
    })
    .await
}

/// A payment operation: find the payment, check the order, then `change` it.
fn on_payment(
    books: &mut Books,
    payment_id: &str,
    body: &Value,
    change: impl FnOnce(&mut Payment, &mut Effects) -> Answer,
) -> Answer {
    let Some(payment) = books.payments.get_mut(payment_id) else {
        return problem(404, "not_found", format!("no payment {payment_id}"));
    };
    if payment.order_id != text(body, "order_id") {
        return problem(
            400,
            "invalid_request",
            "order_id is not the payment's order",
        );
    }
    change(payment, &mut books.effects)
}

async fn capture(
    State(shared): State<Arc<Shared>>,
    Path(payment_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Request {
        provider: "payment",
        operation: "capture",
        headers: &headers,
        body: &body,
        path: &payment_id,
        mutating: true,
    };
    handle(&shared, request, |books, body, _| {
        on_payment(books, &payment_id, body, |payment, effects| {
            match payment.state {
                "authorized" => {}
                "captured" => return problem(409, "already_captured", "captured before"),
                _ => return problem(409, "already_voided", "the authorization was voided"),
            }
            if body.get("amount") != Some(&payment.amount) {
                return problem(422, "amount_mismatch", "capture the authorized amount");
            }
            payment.state = "captured";
            count(&mut effects.captures, &payment.order_id);
            (
                200,
                json!({ "payment_id": payment_id, "status": "captured", "amount": payment.amount }),
                None,
            )
        })
    })
    .await
}

async fn void(
    State(shared): State<Arc<Shared>>,
    Path(payment_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Request {
        provider: "payment",
        operation: "void",
        headers: &headers,
        body: &body,
        path: &payment_id,
        mutating: true,
    };
    handle(&shared, request, |books, body, _| {
        on_payment(books, &payment_id, body, |payment, effects| {
            match payment.state {
                "authorized" => {}
                "captured" => return problem(409, "already_captured", "refund it instead"),
                _ => return problem(409, "already_voided", "voided before"),
            }
            payment.state = "voided";
            count(&mut effects.voids, &payment.order_id);
            (
                200,
                json!({ "payment_id": payment_id, "status": "voided" }),
                None,
            )
        })
    })
    .await
}

async fn refund(
    State(shared): State<Arc<Shared>>,
    Path(payment_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Request {
        provider: "payment",
        operation: "refund",
        headers: &headers,
        body: &body,
        path: &payment_id,
        mutating: true,
    };
    handle(&shared, request, |books, body, _| {
        on_payment(books, &payment_id, body, |payment, effects| {
            let amount = body.get("amount").cloned().unwrap_or(Value::Null);
            let minor = amount
                .get("amount_minor")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            if payment.state != "captured" || payment.refunded_minor + minor > payment.amount_minor
            {
                return problem(422, "refund_exceeds_capture", "more than is refundable");
            }
            payment.refunded_minor += minor;
            count(&mut effects.refunds, &payment.order_id);
            (
                201,
                json!({
                    "refund_id": reference("RFD"),
                    "payment_id": payment_id,
                    "status": "refunded",
                    "amount": amount,
                }),
                None,
            )
        })
    })
    .await
}

async fn ship(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = Request {
        provider: "shipping",
        operation: "ship",
        headers: &headers,
        body: &body,
        path: "",
        mutating: true,
    };
    handle(&shared, request, |books, body, key| {
        let order = text(body, "order_id").to_owned();
        let carrier = match text(body, "method") {
            "express" => "UPS",
            "overnight" => "FedEx",
            _ => "DHL",
        };
        let tracking = format!(
            "{}{}",
            body.pointer("/address/country")
                .and_then(Value::as_str)
                .unwrap_or("XX"),
            &key.simple().to_string().to_uppercase()[..20]
        );
        books.shipments.insert(
            tracking.clone(),
            Shipment {
                carrier: carrier.to_owned(),
                shipped_at: Instant::now(),
            },
        );
        count(&mut books.effects.shipments, &order);
        (
            201,
            json!({ "tracking_number": tracking, "carrier": carrier, "status": "in_transit" }),
            None,
        )
    })
    .await
}

async fn track(
    State(shared): State<Arc<Shared>>,
    Path(tracking_number): Path<String>,
    headers: HeaderMap,
) -> Response {
    let empty = Bytes::new();
    let request = Request {
        provider: "shipping",
        operation: "track",
        headers: &headers,
        body: &empty,
        path: &tracking_number,
        mutating: false,
    };
    let options = shared.options.clone();
    handle(&shared, request, |books, _, _| {
        let Some(shipment) = books.shipments.get(&tracking_number) else {
            return problem(404, "not_found", format!("no shipment {tracking_number}"));
        };
        let age = shipment.shipped_at.elapsed();
        if age >= options.delivery_after {
            return (
                200,
                json!({
                    "tracking_number": tracking_number,
                    "carrier": shipment.carrier,
                    "status": "delivered",
                }),
                None,
            );
        }
        let remaining = (options.delivery_after - age).min(options.tracking_retry_after);
        (
            200,
            json!({
                "tracking_number": tracking_number,
                "carrier": shipment.carrier,
                "status": "in_transit",
            }),
            Some(remaining.as_secs().max(1)),
        )
    })
    .await
}

async fn effects(State(shared): State<Arc<Shared>>) -> Response {
    let effects = shared.books().effects.clone();
    respond((200, json!(effects), None))
}

async fn put_faults(
    State(shared): State<Arc<Shared>>,
    Path(provider): Path<String>,
    body: Bytes,
) -> Response {
    if !PROVIDERS.contains(&provider.as_str()) {
        return respond(problem(404, "not_found", format!("no provider {provider}")));
    }
    let plan: FaultPlan = match serde_json::from_slice(&body) {
        Ok(plan) => plan,
        Err(e) => return respond(problem(400, "invalid_request", e.to_string())),
    };
    if let Err(why) = plan.check() {
        return respond(problem(400, "invalid_request", why));
    }
    shared
        .books()
        .faults
        .insert(provider.clone(), Faults::from_plan(&plan));
    tracing::info!(provider, ?plan, "faults set");
    respond((200, json!(plan), None))
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.books().faults.clear();
    respond((200, json!({}), None))
}

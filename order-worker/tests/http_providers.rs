//! The HTTP adapters against the provider stub (real HTTP over loopback): every class of
//! answer, idempotency keys, Retry-After, HTTP/1.1 and HTTP/2, credentials. No database, no
//! queue.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use order_proto::v1 as pb;
use order_provider_stub::{FaultPlan, Slow, Stub, StubOptions, Throttle};
use order_worker::backoff::Backoff;
use order_worker::breaker::{BreakerSettings, CircuitState};
use order_worker::clock::SystemClock;
use order_worker::providers::guard::{CallError, Guard, GuardSettings};
use order_worker::providers::http::{
    HttpProviders, HttpSettings, HttpVersion, Pem, ProviderClient, ProviderEndpoint,
};
use order_worker::providers::{
    Address, AuthorizeRequest, CaptureRequest, Delivery, DeliveryRequest, InventoryProvider, Line,
    PaymentAction, PaymentProvider, ProviderError, RefundRequest, ReserveRequest, ShipRequest,
    ShippingProvider,
};
use order_worker::random::Random;
use uuid::Uuid;

const TOKEN: &str = "stub-token-0123456789";

async fn stub(options: StubOptions) -> Stub {
    Stub::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap()
}

fn endpoint(stub: &Stub, provider: &str, token: Option<&str>) -> ProviderEndpoint {
    let mut endpoint = ProviderEndpoint::new(stub.base_url(provider));
    endpoint.token = token.map(str::to_owned);
    endpoint
}

fn providers(stub: &Stub, settings: &HttpSettings) -> HttpProviders {
    HttpProviders::new(
        &endpoint(stub, "inventory", Some(TOKEN)),
        &endpoint(stub, "payment", Some(TOKEN)),
        &endpoint(stub, "shipping", Some(TOKEN)),
        settings,
    )
    .unwrap()
}

fn settings() -> HttpSettings {
    HttpSettings {
        request_timeout: Duration::from_secs(2),
        ..HttpSettings::default()
    }
}

async fn with_token() -> (Stub, HttpProviders) {
    let stub = stub(StubOptions {
        token: Some(TOKEN.into()),
        ..StubOptions::default()
    })
    .await;
    let providers = providers(&stub, &settings());
    (stub, providers)
}

fn reserve(order: Uuid, key: Uuid, sku: &str) -> ReserveRequest {
    ReserveRequest {
        order_id: order,
        lines: vec![Line {
            sku: sku.into(),
            quantity: 2,
        }],
        idempotency_key: key,
    }
}

fn eur(amount_minor: i64) -> pb::Money {
    pb::Money {
        currency: "EUR".into(),
        amount_minor,
    }
}

fn authorize(order: Uuid, key: Uuid, sku: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        order_id: order,
        customer_id: "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c0ff".into(),
        amount: eur(4248),
        lines: vec![Line {
            sku: sku.into(),
            quantity: 1,
        }],
        idempotency_key: key,
    }
}

#[tokio::test]
async fn a_success_is_done_once_and_a_repeated_key_gets_the_same_answer() {
    let (stub, http) = with_token().await;
    let order_id = Uuid::new_v4();
    let key = Uuid::new_v4();
    let first = http
        .inventory
        .reserve(reserve(order_id, key, "A-1"))
        .await
        .unwrap();
    let again = http
        .inventory
        .reserve(reserve(order_id, key, "A-1"))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert!(first.starts_with("RSV-"), "{first}");
    let effects = stub.effects();
    assert_eq!(effects.reservations[&order_id.to_string()], 1);
    assert_eq!(effects.replays, 1);
    stub.stop().await;
}

#[tokio::test]
async fn out_of_stock_and_declined_are_refusals() {
    let (stub, http) = with_token().await;
    let refused = http
        .inventory
        .reserve(reserve(Uuid::new_v4(), Uuid::new_v4(), "OOS-7"))
        .await;
    assert!(
        matches!(&refused, Err(ProviderError::Refused(why)) if why.starts_with("out_of_stock") && why.contains("OOS-7")),
        "{refused:?}"
    );
    let declined = http
        .payment
        .authorize(authorize(Uuid::new_v4(), Uuid::new_v4(), "DECLINE-1"))
        .await;
    assert!(
        matches!(&declined, Err(ProviderError::Refused(why)) if why.starts_with("card_declined")),
        "{declined:?}"
    );
    assert!(stub.effects().reservations.is_empty());
    stub.stop().await;
}

#[tokio::test]
async fn an_outage_is_transient_and_does_nothing() {
    let (stub, http) = with_token().await;
    stub.set_faults(
        "payment",
        &FaultPlan {
            outage_seconds: 60,
            ..FaultPlan::default()
        },
    );
    let answer = http
        .payment
        .authorize(authorize(Uuid::new_v4(), Uuid::new_v4(), "A"))
        .await;
    assert!(
        matches!(&answer, Err(ProviderError::Transient { reason, .. }) if reason.contains("HTTP 503")),
        "{answer:?}"
    );
    assert!(stub.effects().authorizations.is_empty());
    stub.stop().await;
}

#[tokio::test]
async fn throttling_is_transient_with_the_retry_after_the_provider_sent() {
    let (stub, http) = with_token().await;
    stub.set_faults(
        "inventory",
        &FaultPlan {
            throttle: Some(Throttle {
                count: 1,
                retry_after_seconds: 2,
            }),
            ..FaultPlan::default()
        },
    );
    let (order_id, key) = (Uuid::new_v4(), Uuid::new_v4());
    let answer = http.inventory.reserve(reserve(order_id, key, "A")).await;
    assert_eq!(
        answer,
        Err(ProviderError::Transient {
            reason: "inventory reserve: HTTP 429".into(),
            retry_after: Some(Duration::from_secs(2)),
        })
    );
    http.inventory
        .reserve(reserve(order_id, key, "A"))
        .await
        .unwrap();
    assert_eq!(stub.effects().reservations[&order_id.to_string()], 1);
    stub.stop().await;
}

#[tokio::test]
async fn a_malformed_answer_is_transient_and_the_retry_gets_the_real_one() {
    let (stub, http) = with_token().await;
    stub.set_faults(
        "payment",
        &FaultPlan {
            malformed: 1,
            ..FaultPlan::default()
        },
    );
    let (order_id, key) = (Uuid::new_v4(), Uuid::new_v4());
    let answer = http.payment.authorize(authorize(order_id, key, "A")).await;
    assert!(
        matches!(&answer, Err(ProviderError::Transient { reason, .. }) if reason.contains("HTTP 200") && reason.contains("could not be parsed")),
        "{answer:?}"
    );
    let payment_id = http
        .payment
        .authorize(authorize(order_id, key, "A"))
        .await
        .unwrap();
    assert!(payment_id.starts_with("PAY-"));
    let effects = stub.effects();
    assert_eq!(
        effects.authorizations[&order_id.to_string()],
        1,
        "authorized once"
    );
    assert_eq!(effects.replays, 1);
    stub.stop().await;
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_transient_and_the_retry_gets_the_first_answer() {
    let stub = stub(StubOptions::default()).await;
    let http = HttpProviders::new(
        &endpoint(&stub, "inventory", None),
        &endpoint(&stub, "payment", None),
        &endpoint(&stub, "shipping", None),
        &HttpSettings {
            request_timeout: Duration::from_millis(300),
            ..HttpSettings::default()
        },
    )
    .unwrap();
    stub.set_faults(
        "inventory",
        &FaultPlan {
            slow: Some(Slow {
                count: 1,
                delay_ms: 3_000,
            }),
            ..FaultPlan::default()
        },
    );
    let (order_id, key) = (Uuid::new_v4(), Uuid::new_v4());
    let answer = http.inventory.reserve(reserve(order_id, key, "A")).await;
    assert!(
        matches!(&answer, Err(ProviderError::Transient { reason, .. }) if reason.contains("timed out")),
        "{answer:?}"
    );
    http.inventory
        .reserve(reserve(order_id, key, "A"))
        .await
        .unwrap();
    assert_eq!(stub.effects().reservations[&order_id.to_string()], 1);
    stub.stop().await;
}

#[tokio::test]
async fn a_request_that_breaks_the_contract_is_rejected_and_changes_nothing() {
    let (stub, http) = with_token().await;
    let mut bad = reserve(Uuid::new_v4(), Uuid::new_v4(), "A");
    bad.lines[0].quantity = 0;
    let answer = http.inventory.reserve(bad).await;
    assert!(
        matches!(&answer, Err(ProviderError::Rejected(why)) if why.contains("HTTP 400") && why.contains("/lines/0/quantity")),
        "{answer:?}"
    );
    let effects = stub.effects();
    assert!(effects.reservations.is_empty());
    assert_eq!(effects.invalid_requests, 1);
    stub.stop().await;
}

#[tokio::test]
async fn wrong_credentials_are_transient_never_a_refusal() {
    let stub = stub(StubOptions {
        token: Some(TOKEN.into()),
        ..StubOptions::default()
    })
    .await;
    let client = ProviderClient::new(
        "inventory",
        "X",
        &endpoint(&stub, "inventory", Some("not-the-token")),
        &settings(),
    )
    .unwrap();
    let inventory = order_worker::providers::http::HttpInventory::new(client);
    let answer = inventory
        .reserve(reserve(Uuid::new_v4(), Uuid::new_v4(), "A"))
        .await;
    assert!(
        matches!(&answer, Err(ProviderError::Transient { reason, .. }) if reason.contains("HTTP 401")),
        "{answer:?}"
    );
    stub.stop().await;
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    let port = order_testkit::net::free_port().expect("a free port");
    let client = ProviderClient::new(
        "inventory",
        "X",
        &ProviderEndpoint::new(format!("http://127.0.0.1:{port}/inventory")),
        &settings(),
    )
    .unwrap();
    let inventory = order_worker::providers::http::HttpInventory::new(client);
    let answer = inventory
        .reserve(reserve(Uuid::new_v4(), Uuid::new_v4(), "A"))
        .await;
    assert!(
        matches!(&answer, Err(ProviderError::Transient { reason, .. }) if reason.contains("could not connect")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn http2_and_http1_both_work() {
    let stub = stub(StubOptions::default()).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2, HttpVersion::Auto] {
        let http = HttpProviders::new(
            &endpoint(&stub, "inventory", None),
            &endpoint(&stub, "payment", None),
            &endpoint(&stub, "shipping", None),
            &HttpSettings {
                version,
                ..settings()
            },
        )
        .unwrap();
        http.inventory
            .reserve(reserve(Uuid::new_v4(), Uuid::new_v4(), "A"))
            .await
            .unwrap();
    }
    assert_eq!(stub.effects().reservations.len(), 3);
    stub.stop().await;
}

#[tokio::test]
async fn the_payment_life_cycle_moves_money_once_per_key() {
    let (stub, http) = with_token().await;
    let order_id = Uuid::new_v4();
    let payment_id = http
        .payment
        .authorize(authorize(order_id, Uuid::new_v4(), "A"))
        .await
        .unwrap();
    let capture = CaptureRequest {
        order_id,
        payment_id: payment_id.clone(),
        amount: eur(4248),
        idempotency_key: Uuid::new_v4(),
    };
    http.payment.capture(capture.clone()).await.unwrap();
    http.payment.capture(capture).await.unwrap();
    // A second capture under another key is a bug the provider refuses.
    let twice = http
        .payment
        .capture(CaptureRequest {
            order_id,
            payment_id: payment_id.clone(),
            amount: eur(4248),
            idempotency_key: Uuid::new_v4(),
        })
        .await;
    assert!(
        matches!(&twice, Err(ProviderError::Refused(why)) if why.starts_with("already_captured")),
        "{twice:?}"
    );
    let refund = RefundRequest {
        order_id,
        payment_id: payment_id.clone(),
        amount: eur(4248),
        action: PaymentAction::Refund,
        idempotency_key: Uuid::new_v4(),
    };
    http.payment.refund(refund.clone()).await.unwrap();
    http.payment.refund(refund).await.unwrap();
    let effects = stub.effects();
    let order = order_id.to_string();
    assert_eq!(effects.authorizations[&order], 1);
    assert_eq!(effects.captures[&order], 1);
    assert_eq!(effects.refunds[&order], 1);
    assert_eq!(effects.doubled(), 0);

    let other = Uuid::new_v4();
    let payment_id = http
        .payment
        .authorize(authorize(other, Uuid::new_v4(), "A"))
        .await
        .unwrap();
    http.payment
        .refund(RefundRequest {
            order_id: other,
            payment_id,
            amount: eur(4248),
            action: PaymentAction::Void,
            idempotency_key: Uuid::new_v4(),
        })
        .await
        .unwrap();
    assert_eq!(stub.effects().voids[&other.to_string()], 1);
    stub.stop().await;
}

#[tokio::test]
async fn delivery_is_reported_later_with_a_retry_after_until_then() {
    let stub = stub(StubOptions {
        delivery_after: Duration::from_secs(1),
        ..StubOptions::default()
    })
    .await;
    let http = providers(&stub, &settings());
    let order_id = Uuid::new_v4();
    let shipment = http
        .shipping
        .ship(ShipRequest {
            order_id,
            method: pb::ShippingMethod::Express,
            address: Address {
                recipient: "R. Cipient".into(),
                line1: "1 Main St".into(),
                line2: String::new(),
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
            lines: vec![Line {
                sku: "A".into(),
                quantity: 1,
            }],
            idempotency_key: Uuid::new_v4(),
        })
        .await
        .unwrap();
    assert_eq!(shipment.carrier, "UPS");
    assert!(shipment.tracking_number.starts_with("DE"));
    let request = DeliveryRequest {
        order_id,
        tracking_number: shipment.tracking_number.clone(),
    };
    let first = http.shipping.delivery(request.clone()).await.unwrap();
    assert_eq!(
        first,
        Delivery::InTransit {
            recheck_after: Some(Duration::from_secs(1))
        }
    );
    // Poll as the worker does, bounded.
    let mut delivered = false;
    for _ in 0..50 {
        if http.shipping.delivery(request.clone()).await.unwrap() == Delivery::Delivered {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered);
    stub.stop().await;
}

#[tokio::test]
async fn the_guard_opens_on_an_outage_and_the_held_call_goes_through_when_it_ends() {
    let (stub, http) = with_token().await;
    let guard = Guard::new(
        "payment",
        GuardSettings {
            attempts: 1,
            backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(50)),
            timeout: Duration::from_secs(2),
            breaker: BreakerSettings {
                failure_threshold: 5,
                cooldown: Duration::from_millis(200),
                half_open_calls: 3,
            },
            circuit_wait: Duration::from_secs(60),
        },
        Arc::new(SystemClock::new()),
        Arc::new(Random::seeded(1)),
    );
    stub.set_faults(
        "payment",
        &FaultPlan {
            outage_seconds: 3_600,
            ..FaultPlan::default()
        },
    );
    for _ in 0..4 {
        let answer = guard
            .call("authorize", || {
                http.payment
                    .authorize(authorize(Uuid::new_v4(), Uuid::new_v4(), "A"))
            })
            .await;
        assert!(matches!(answer, Err(CallError::Unavailable { .. })));
    }
    assert_eq!(guard.circuit(), CircuitState::Closed, "4 of 5 failures");
    // The fifth failure opens the circuit; that call is held, and so is every trial that
    // fails, until the outage ends.
    let order_id = Uuid::new_v4();
    let held = guard.call("authorize", || {
        http.payment
            .authorize(authorize(order_id, Uuid::new_v4(), "A"))
    });
    let heal = async {
        while guard.circuit() != CircuitState::Open {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // At least one trial call after the cooldown failed too.
        while stub.effects().requests["payment"] < 6 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stub.clear_faults();
    };
    let (answer, ()) = tokio::join!(held, heal);
    assert!(answer.unwrap().starts_with("PAY-"));
    assert_eq!(stub.effects().authorizations[&order_id.to_string()], 1);
    for _ in 0..2 {
        guard
            .call("authorize", || {
                http.payment
                    .authorize(authorize(Uuid::new_v4(), Uuid::new_v4(), "A"))
            })
            .await
            .unwrap();
    }
    assert_eq!(guard.circuit(), CircuitState::Closed, "3 trial successes");
    stub.stop().await;
}

#[test]
fn a_client_certificate_is_read_as_pem_and_garbage_is_refused_clearly() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["order-worker".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let identity = format!("{}{}", cert.pem(), key.serialize_pem());
    let mut good = ProviderEndpoint::new("https://payments.internal");
    good.client_identity = Some(Pem::Inline(identity));
    good.ca = Some(Pem::Inline(cert.pem()));
    ProviderClient::new("payment", "ORDER_PROVIDER_PAYMENT_URL", &good, &settings()).unwrap();

    let mut bad = ProviderEndpoint::new("https://payments.internal");
    bad.client_identity = Some(Pem::Inline("not a pem".into()));
    let error = ProviderClient::new("payment", "ORDER_PROVIDER_PAYMENT_URL", &bad, &settings())
        .unwrap_err();
    assert!(
        error.contains("ORDER_PROVIDER_PAYMENT_CLIENT_CERT(_FILE)"),
        "{error}"
    );
    assert!(!error.contains("not a pem"), "{error}");

    // PEM framing around bytes that are no certificate: the error says why, not only
    // "builder error".
    let mut garbled = ProviderEndpoint::new("https://payments.internal");
    garbled.ca = Some(Pem::Inline(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
    ));
    let error = ProviderClient::new(
        "payment",
        "ORDER_PROVIDER_PAYMENT_URL",
        &garbled,
        &settings(),
    )
    .unwrap_err();
    assert!(error.contains("ORDER_PROVIDER_PAYMENT"), "{error}");
    assert!(error != "builder error" && error.len() > 40, "{error}");
    eprintln!("{error}");

    let mut missing = ProviderEndpoint::new("https://payments.internal");
    missing.ca = Some(Pem::File("/nonexistent/ca.pem".into()));
    let error = ProviderClient::new(
        "payment",
        "ORDER_PROVIDER_PAYMENT_URL",
        &missing,
        &settings(),
    )
    .unwrap_err();
    assert!(error.contains("/nonexistent/ca.pem"), "{error}");
}

/// A provider that answers every request with `status` and `body` (HTTP/1.1, one request per
/// connection), for answers the stub never gives.
async fn canned(status: u16, body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the head and the body its Content-Length announces.
                let mut seen = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&seen).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (name, value) = l.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

async fn canned_providers(status: u16, body: &'static str) -> HttpProviders {
    let url = canned(status, body).await;
    HttpProviders::new(
        &ProviderEndpoint::new(url.clone()),
        &ProviderEndpoint::new(url.clone()),
        &ProviderEndpoint::new(url),
        &settings(),
    )
    .unwrap()
}

fn is_transient<T: std::fmt::Debug>(result: &Result<T, ProviderError>, why: &str) {
    assert!(
        matches!(result, Err(ProviderError::Transient { .. })),
        "{why}: {result:?}"
    );
}

#[tokio::test]
async fn a_2xx_that_says_something_else_than_done_is_off_the_contract_never_a_success() {
    let order = Uuid::new_v4();
    // Payment: a declined status, a partial authorization, a reference the ledger cannot hold.
    let declined = canned_providers(201, r#"{"payment_id":"PAY-1","status":"declined"}"#).await;
    is_transient(
        &declined
            .payment
            .authorize(authorize(order, Uuid::new_v4(), "A"))
            .await,
        "authorize: declined",
    );
    is_transient(
        &declined
            .payment
            .capture(CaptureRequest {
                order_id: order,
                payment_id: "PAY-1".into(),
                amount: eur(4248),
                idempotency_key: Uuid::new_v4(),
            })
            .await,
        "capture: declined",
    );
    let partial = canned_providers(
        201,
        r#"{"payment_id":"PAY-1","status":"authorized","amount":{"currency":"EUR","amount_minor":1000}}"#,
    )
    .await;
    is_transient(
        &partial
            .payment
            .authorize(authorize(order, Uuid::new_v4(), "A"))
            .await,
        "authorize: partial",
    );
    let long = canned_providers(
        201,
        r#"{"payment_id":"PAY-0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789","status":"authorized"}"#,
    )
    .await;
    is_transient(
        &long
            .payment
            .authorize(authorize(order, Uuid::new_v4(), "A"))
            .await,
        "authorize: 135 characters",
    );
    // The same answers on the contract are successes.
    let whole = canned_providers(
        201,
        r#"{"payment_id":"PAY-1","status":"authorized","amount":{"currency":"EUR","amount_minor":4248}}"#,
    )
    .await;
    assert_eq!(
        whole
            .payment
            .authorize(authorize(order, Uuid::new_v4(), "A"))
            .await,
        Ok("PAY-1".to_owned())
    );
    let voided = canned_providers(200, r#"{"payment_id":"PAY-1","status":"voided"}"#).await;
    let void = RefundRequest {
        order_id: order,
        payment_id: "PAY-1".into(),
        amount: eur(4248),
        action: PaymentAction::Void,
        idempotency_key: Uuid::new_v4(),
    };
    assert_eq!(voided.payment.refund(void.clone()).await, Ok(()));
    is_transient(
        &voided
            .payment
            .refund(RefundRequest {
                action: PaymentAction::Refund,
                ..void
            })
            .await,
        "refund answered voided",
    );

    // Inventory: a reservation answered as released, a release answered as reserved.
    let released = canned_providers(201, r#"{"reservation_id":"RSV-1","status":"released"}"#).await;
    is_transient(
        &released
            .inventory
            .reserve(reserve(order, Uuid::new_v4(), "A"))
            .await,
        "reserve: released",
    );
    let reserved = canned_providers(200, r#"{"reservation_id":"RSV-1","status":"reserved"}"#).await;
    assert_eq!(
        reserved
            .inventory
            .reserve(reserve(order, Uuid::new_v4(), "A"))
            .await,
        Ok("RSV-1".to_owned())
    );
    is_transient(
        &reserved
            .inventory
            .release(order_worker::providers::ReleaseRequest {
                order_id: order,
                reservation_id: "RSV-1".into(),
                idempotency_key: Uuid::new_v4(),
            })
            .await,
        "release: reserved",
    );

    // Shipping: a tracking number with a space, an empty carrier, an unknown status.
    let ship = || ShipRequest {
        order_id: order,
        method: pb::ShippingMethod::Standard,
        address: Address {
            recipient: "A".into(),
            line1: "1 Road".into(),
            city: "Town".into(),
            postal_code: "1000".into(),
            country: "DE".into(),
            ..Address::default()
        },
        lines: vec![Line {
            sku: "A".into(),
            quantity: 1,
        }],
        idempotency_key: Uuid::new_v4(),
    };
    for body in [
        r#"{"tracking_number":"T 1","carrier":"DHL","status":"in_transit"}"#,
        r#"{"tracking_number":"T1","carrier":" ","status":"in_transit"}"#,
        r#"{"tracking_number":"T1","carrier":"DHL","status":"cancelled"}"#,
        // Carriers ShipOrder would refuse: only invisible characters, a line separator.
        r#"{"tracking_number":"T1","carrier":"\u200b","status":"in_transit"}"#,
        r#"{"tracking_number":"T1","carrier":"DHL\u2028Express","status":"in_transit"}"#,
    ] {
        is_transient(
            &canned_providers(201, body)
                .await
                .shipping
                .ship(ship())
                .await,
            body,
        );
    }
    assert_eq!(
        canned_providers(
            201,
            r#"{"tracking_number":"T1","carrier":"DHL","status":"label_created"}"#
        )
        .await
        .shipping
        .ship(ship())
        .await
        .map(|s| s.tracking_number),
        Ok("T1".to_owned())
    );
}

//! TLS, bearer tokens, correlation id and trace context on every call; several endpoints.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use order_client::{CallContext, Client, Code, Transport};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

use crate::support::*;

const TOKEN: &str = "client-tests-token-0123456789";

fn certificate() -> (rcgen::CertifiedKey<rcgen::KeyPair>, std::path::PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("order-client-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    (certified, dir)
}

#[tokio::test]
async fn over_tls_with_a_token_every_event_carries_the_callers_correlation_id() {
    let (certified, dir) = certificate();
    let stack = Stack::start_with(ServerOptions {
        tokens: Some(format!("tester={TOKEN}")),
        tls: Some((dir.join("cert.pem"), dir.join("key.pem"))),
        ..ServerOptions::default()
    })
    .await;
    let url = format!("https://localhost:{}", stack.addr.port());
    let client = Client::builder()
        .endpoint(&url)
        .tls_ca_pem(certified.cert.pem())
        .bearer_token(TOKEN)
        .retry(quick_retries(20))
        .build()
        .unwrap()
        .with_context(CallContext::new(Some("checkout-42"), None));
    let placed = place(&client).await.unwrap();
    assert_eq!(placed.correlation_id, "checkout-42");
    let events = client.get_order_events(placed.order_id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].correlation_id, "checkout-42");

    let anonymous = Client::builder()
        .endpoint(&url)
        .tls_ca_pem(certified.cert.pem())
        .build()
        .unwrap();
    let refused = place(&anonymous).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused}");
    assert_eq!(refused.attempts(), 1, "not retried");

    let plaintext = Client::builder()
        .endpoint(format!("http://localhost:{}", stack.addr.port()))
        .bearer_token(TOKEN)
        .retry(quick_retries(1))
        .build()
        .unwrap();
    assert!(place(&plaintext).await.is_err(), "TLS only");
    let _ = std::fs::remove_dir_all(dir);
}

/// A transport that records each attempt's headers.
fn headers(
    seen: Arc<Mutex<Vec<http::HeaderMap>>>,
) -> impl Fn(Transport) -> Transport + Send + Sync {
    move |inner: Transport| {
        let seen = seen.clone();
        Transport::new(
            tower::ServiceBuilder::new()
                .map_request(move |request: http::Request<tonic::body::Body>| {
                    seen.lock().unwrap().push(request.headers().clone());
                    request
                })
                .service(inner),
        )
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_current_spans_trace_context_is_sent_and_recorded_with_the_event() {
    use opentelemetry::trace::TracerProvider as _;

    let stack = Stack::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = Client::builder()
        .endpoint(stack.url())
        .wrap_transport(headers(seen.clone()))
        .build()
        .unwrap();

    // Without OpenTelemetry: no traceparent, a fresh correlation id.
    let plain = place(&client).await.unwrap();
    {
        let seen = seen.lock().unwrap();
        assert!(seen[0].get("traceparent").is_none());
        assert_eq!(seen[0]["x-correlation-id"], plain.correlation_id.as_str());
    }

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("order-client-tests")));
    let _default = tracing::subscriber::set_default(subscriber);
    let span = tracing::info_span!("checkout");
    let (traceparent, _) = {
        let _entered = span.enter();
        order_client::current_trace_context().expect("a trace context inside the span")
    };
    let traced = place(&client).send().instrument(span).await.unwrap();
    let sent = seen.lock().unwrap()[1].clone();
    assert_eq!(sent["traceparent"], traceparent.as_str());
    let trace_id = traceparent.split('-').nth(1).unwrap();
    let recorded: Option<String> = stack
        .db
        .connect()
        .await
        .query_one(
            "SELECT traceparent FROM orders.events WHERE stream_id = $1",
            &[&traced.order_id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        recorded.as_deref().is_some_and(|t| t.contains(trace_id)),
        "{recorded:?} continues trace {trace_id}"
    );
}

#[tokio::test]
async fn calls_are_balanced_over_several_endpoints_and_go_on_while_one_is_down() {
    let mut stack = Stack::start().await;
    let second = Server::start(
        stack.db.url(),
        "127.0.0.1:0".parse().unwrap(),
        &ServerOptions::default(),
    )
    .await;
    let client = Client::builder()
        .endpoints([stack.url(), second.url()])
        .retry(quick_retries(30))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut orders = Vec::new();
    // Both up; then only the second; then only the first: every call is answered.
    for _ in 0..6 {
        orders.push(place(&client).await.unwrap().order_id);
    }
    stack.stop_server().await;
    for _ in 0..6 {
        orders.push(place(&client).await.unwrap().order_id);
    }
    stack.restart_server().await;
    second.stop().await;
    for _ in 0..6 {
        orders.push(place(&client).await.unwrap().order_id);
    }
    for order in orders {
        assert_eq!(stack.order_events(order).await.len(), 1);
    }
}

/// An endpoint that refuses connections takes no calls after the first that finds it down
/// (tonic's own balancer sent it about one call in three, for as long as it was down), and
/// takes its turn again once it is back, found by the client's own health checks (the other
/// endpoint stays up all along, so no call is spent finding out).
#[tokio::test]
async fn an_endpoint_that_cannot_be_reached_is_left_out_until_it_can() {
    // The two servers take one token under two names: the actor of each event says which
    // server wrote it.
    let stack = Stack::start_with(ServerOptions {
        tokens: Some(format!("front={TOKEN}")),
        ..ServerOptions::default()
    })
    .await;
    // A port nothing listens on, for now.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Client::builder()
        .endpoints([format!("http://{dead}"), stack.url()])
        .bearer_token(TOKEN)
        .retry(order_client::RetryPolicy::none())
        .build()
        .unwrap();
    let mut failed = Vec::new();
    for _ in 0..40 {
        if let Err(error) = place(&client).await {
            assert_eq!(error.code(), Code::Unavailable, "{error}");
            failed.push(error.to_string());
        }
    }
    assert!(
        failed.len() <= 1,
        "{} of 40 calls failed: {failed:?}",
        failed.len()
    );
    let mut health = std::collections::HashMap::<String, usize>::new();
    for _ in 0..20 {
        let answer = client.health("").await.map_err(|e| e.code());
        *health.entry(format!("{answer:?}")).or_default() += 1;
    }
    assert_eq!(health.len(), 1, "the health check flaps: {health:?}");

    let actors = || async {
        let rows = stack
            .db
            .connect()
            .await
            .query(
                "SELECT actor, count(*) FROM orders.events GROUP BY actor",
                &[],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
            .collect::<std::collections::HashMap<_, _>>()
    };
    assert_eq!(
        actors().await.get("front"),
        Some(&(40 - failed.len() as i64))
    );

    // The endpoint comes up: its turn comes back (calls alternate) while the other never went.
    let back = Server::start(
        stack.db.url(),
        dead,
        &ServerOptions {
            tokens: Some(format!("back={TOKEN}")),
            ..ServerOptions::default()
        },
    )
    .await;
    let started = std::time::Instant::now();
    while !actors().await.contains_key("back") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the endpoint that came back took no call in 60 s"
        );
        place(&client).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = actors().await;
    for _ in 0..20 {
        place(&client).await.unwrap();
    }
    let after = actors().await;
    let took =
        |name: &str| after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
    assert_eq!(
        (took("front"), took("back")),
        (10, 10),
        "in turn: {after:?}"
    );
    back.stop().await;
}

/// An endpoint that takes TCP connections but whose certificate the client refuses stays left
/// out: the client's health check goes through TLS as calls do (a TCP probe let it back
/// within a quarter of a second, for another call to fail, again and again).
#[tokio::test]
async fn an_endpoint_whose_certificate_is_refused_stays_left_out() {
    let stack = Stack::start().await;
    let (_, dir) = certificate();
    let refused = Server::start(
        stack.db.url(),
        "127.0.0.1:0".parse().unwrap(),
        &ServerOptions {
            tls: Some((dir.join("cert.pem"), dir.join("key.pem"))),
            ..ServerOptions::default()
        },
    )
    .await;
    // The client trusts another CA than the one that signed that server's certificate: the
    // one of the other server.
    let (other_ca, other_dir) = certificate();
    let trusted = Server::start(
        stack.db.url(),
        "127.0.0.1:0".parse().unwrap(),
        &ServerOptions {
            tls: Some((other_dir.join("cert.pem"), other_dir.join("key.pem"))),
            ..ServerOptions::default()
        },
    )
    .await;
    let client = Client::builder()
        .endpoints([
            format!("https://localhost:{}", refused.addr.port()),
            format!("https://localhost:{}", trusted.addr.port()),
        ])
        .tls_ca_pem(other_ca.cert.pem())
        .retry(order_client::RetryPolicy::none())
        .build()
        .unwrap();
    let mut failed = Vec::new();
    for _ in 0..30 {
        if let Err(error) = place(&client).await {
            assert!(error.tls_certificate_problem().is_some(), "{error}");
            failed.push(error.to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        failed.len() <= 1,
        "{} of 30 calls over 3 s failed: {failed:?}",
        failed.len()
    );
    refused.stop().await;
    trusted.stop().await;
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(other_dir);
}

/// An error the transport made carries its cause as the error's source (`{:#}` of an
/// `anyhow::Error` shows why no connection was made).
#[tokio::test]
async fn a_transport_failure_carries_its_cause_as_the_errors_source() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Client::builder()
        .endpoint(format!("http://{dead}"))
        .retry(order_client::RetryPolicy::none())
        .build()
        .unwrap();
    let error = place(&client).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error}");
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    assert!(
        causes.iter().any(|cause| cause.contains("refused")),
        "{error}: {causes:?}"
    );
    let shown = format!("{:#}", anyhow::Error::new(error));
    assert!(shown.contains("refused"), "{shown}");
}

/// A certificate for `localhost`, valid only in 2000 (long expired).
fn expired_certificate() -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

#[tokio::test]
async fn a_ca_file_without_a_certificate_is_refused_when_the_client_is_built() {
    let (certified, dir) = certificate();
    let build = |pem: Vec<u8>| {
        Client::builder()
            .endpoint("https://localhost:1")
            .tls_ca_pem(pem)
            .build()
    };
    for pem in [
        certified.signing_key.serialize_pem().into_bytes(),
        Vec::new(),
        b"not a PEM file".to_vec(),
        b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_vec(),
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec(),
    ] {
        match build(pem.clone()) {
            Err(order_client::Error::Config(message)) => {
                assert!(message.contains("certificate"), "{message}");
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(&pem)),
        }
    }
    assert!(build(certified.cert.pem().into_bytes()).is_ok());
    // A bundle: a key and a certificate in one file.
    let bundle = format!(
        "{}{}",
        certified.signing_key.serialize_pem(),
        certified.cert.pem()
    );
    assert!(build(bundle.into_bytes()).is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

/// A certificate the client cannot trust is a settings problem, found on the first attempt
/// and not retried: an unknown issuer, another name, an expired one; each error says which.
#[tokio::test]
async fn a_certificate_the_client_cannot_trust_fails_at_once_as_a_settings_problem() {
    let (certified, dir) = certificate();
    let stack = Stack::start_with(ServerOptions {
        tls: Some((dir.join("cert.pem"), dir.join("key.pem"))),
        ..ServerOptions::default()
    })
    .await;
    let port = stack.addr.port();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let build = |url: String, ca: String, domain: Option<&str>| {
        let mut builder = Client::builder()
            .endpoint(url)
            .tls_ca_pem(ca)
            .retry(quick_retries(4))
            .wrap_transport(headers(calls.clone()));
        if let Some(domain) = domain {
            builder = builder.tls_domain(domain);
        }
        builder.build().unwrap()
    };
    // The right CA and name: it works (retries while the server starts).
    let good = build(
        format!("https://localhost:{port}"),
        certified.cert.pem(),
        None,
    )
    .with_retry(quick_retries(20));
    place(&good).await.unwrap();

    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (expired, expired_key) = expired_certificate();
    let cases = [
        (
            build(format!("https://localhost:{port}"), other.cert.pem(), None),
            "not signed by",
        ),
        (
            build(
                format!("https://127.0.0.1:{port}"),
                certified.cert.pem(),
                None,
            ),
            "not valid for the name",
        ),
        (
            build(
                format!("https://127.0.0.1:{port}"),
                certified.cert.pem(),
                Some("orders.internal"),
            ),
            "not valid for the name",
        ),
    ];
    for (client, says) in cases {
        calls.lock().unwrap().clear();
        let error = client
            .get_order_events(uuid::Uuid::new_v4())
            .await
            .unwrap_err();
        let problem = error
            .tls_certificate_problem()
            .unwrap_or_else(|| panic!("{says}: {error:?}"));
        assert!(problem.contains(says), "{says}: {problem}");
        // UNAVAILABLE (nothing sent; a fixed setting makes the same call work), once.
        assert_eq!(
            (error.code(), error.attempts()),
            (Code::Unavailable, 1),
            "{says}: {error}"
        );
        assert_eq!(calls.lock().unwrap().len(), 1, "{says}: not retried");
        // A subscription gives up at once too.
        let mut events = client.subscribe_events(order_client::Start::Beginning);
        let ended = tokio::time::timeout(
            Duration::from_secs(30),
            futures::StreamExt::next(&mut events),
        )
        .await
        .expect("the stream gave up at once")
        .expect("an item")
        .expect_err("an error");
        assert!(
            ended.tls_certificate_problem().is_some(),
            "{says}: {ended:?}"
        );
    }

    // An expired certificate, served by a server of its own.
    let expired_dir = dir.join("expired");
    std::fs::create_dir_all(&expired_dir).unwrap();
    std::fs::write(expired_dir.join("cert.pem"), expired.pem()).unwrap();
    std::fs::write(expired_dir.join("key.pem"), expired_key.serialize_pem()).unwrap();
    let old = Server::start(
        stack.db.url(),
        "127.0.0.1:0".parse().unwrap(),
        &ServerOptions {
            tls: Some((expired_dir.join("cert.pem"), expired_dir.join("key.pem"))),
            ..ServerOptions::default()
        },
    )
    .await;
    calls.lock().unwrap().clear();
    let client = build(
        format!("https://localhost:{}", old.addr.port()),
        expired.pem(),
        None,
    );
    let error = client
        .get_order_events(uuid::Uuid::new_v4())
        .await
        .unwrap_err();
    let problem = error
        .tls_certificate_problem()
        .unwrap_or_else(|| panic!("expired: {error:?}"));
    assert!(problem.contains("expired"), "{problem}");
    assert_eq!(calls.lock().unwrap().len(), 1, "expired: not retried");
    old.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

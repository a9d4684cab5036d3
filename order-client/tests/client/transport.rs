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

//! Bearer tokens: required when configured, never for health checks.

use order_proto::v1 as pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::*;

const TOKEN: &str = "worker-token-0123456789abcdef";

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn with_tokens_configured_only_known_tokens_get_in() {
    let app = spawn_app_with(Options {
        tokens: Some(format!("worker={TOKEN}")),
        ..Options::default()
    })
    .await;
    let order = id();

    let missing = app.commands().place_order(place(&order)).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    let wrong = app
        .commands()
        .place_order(with_token(place(&order), "not-the-token-0123456789"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(app.event_count().await, 0);

    let ok = app
        .commands()
        .place_order(with_token(place(&order), TOKEN))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().version, 1);
    let client = app.db.connect().await;
    let actor: Option<String> = client
        .query_one("SELECT actor FROM orders.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        actor.as_deref(),
        Some("worker"),
        "the token's name is recorded as the actor"
    );

    assert_eq!(
        app.health("").await.unwrap(),
        ServingStatus::Serving,
        "health needs no token"
    );
    let query = app
        .queries()
        .get_order(pb::GetOrderRequest {
            order_id: order,
            min_position: None,
        })
        .await
        .unwrap_err();
    assert_eq!(query.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn without_tokens_configured_no_token_is_needed() {
    let app = spawn_app().await;
    assert!(app.commands().place_order(place(&id())).await.is_ok());
}

/// A caller's token in a variable of its own (`ORDER_GRPC_AUTH_TOKEN_<NAME>`, what Terraform's
/// `grpc_callers` gives order-grpc): the real binary accepts it under that name, records the
/// name as the actor, and gives it the scopes `ORDER_GRPC_AUTH_SCOPES` names for it.
#[tokio::test]
async fn the_binary_takes_each_callers_token_from_a_variable_of_its_own() {
    const CHECKOUT: &str = "checkout-token-0123456789abcdef";
    let db = order_testkit::pg::TestDatabase::migrated().await;
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (grpc_addr, admin_addr) = (free(), free());
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-grpc"));
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let mut child = command
        .envs([
            ("DATABASE_URL", db.url()),
            ("ORDER_GRPC_ADDR", &grpc_addr.to_string()),
            ("ORDER_ADMIN_ADDR", &admin_addr.to_string()),
            ("ORDER_GRPC_AUTH_TOKEN_CHECKOUT", &format!("{CHECKOUT}\n")),
            ("ORDER_GRPC_AUTH_TOKEN_WORKER", TOKEN),
            (
                "ORDER_GRPC_AUTH_SCOPES",
                "checkout=orders.place+orders.read,worker=orders.read+orders.saga",
            ),
            ("RUST_LOG", "off"),
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect_lazy();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await;
        if matches!(&health, Ok(r) if r.get_ref().status() == ServingStatus::Serving) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "order-grpc exited: {health:?}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "never serving: {health:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut commands = pb::order_service_client::OrderServiceClient::new(channel);
    let order = id();
    let refused = commands
        .place_order(with_token(place(&order), TOKEN))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::PermissionDenied,
        "the worker's scopes"
    );
    let placed = commands
        .place_order(with_token(place(&order), CHECKOUT))
        .await
        .unwrap();
    assert_eq!(placed.into_inner().version, 1);
    let actor: Option<String> = db
        .connect()
        .await
        .query_one("SELECT actor FROM orders.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(actor.as_deref(), Some("checkout"));
    child.kill().await.unwrap();
}

/// `authorization` values, in order, on one request.
fn with_authorization<T>(message: T, values: &[&str]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for value in values {
        request
            .metadata_mut()
            .append("authorization", value.parse().unwrap());
    }
    request
}

/// A call with more than one `authorization` header is refused whatever their order: only the
/// first counted, so wrong-then-right was refused and right-then-wrong let in.
#[tokio::test]
async fn a_call_with_several_authorization_headers_is_refused() {
    let app = spawn_app_with(Options {
        tokens: Some(format!("worker={TOKEN}")),
        ..Options::default()
    })
    .await;
    let right = format!("Bearer {TOKEN}");
    let wrong = "Bearer not-the-token-0123456789";
    for values in [[wrong, &right], [&right, wrong], [&right, &right]] {
        let status = app
            .commands()
            .place_order(with_authorization(place(&id()), &values))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{values:?}: {status:?}"
        );
        assert!(
            status
                .message()
                .contains("more than one authorization header"),
            "{values:?}: {status:?}"
        );
    }
    assert_eq!(app.event_count().await, 0);
    assert!(
        app.commands()
            .place_order(with_authorization(place(&id()), &[&right]))
            .await
            .is_ok()
    );
}

/// A present but malformed `authorization` header is told apart from a missing one: the
/// caller is told the header is not `Bearer <token>`, not that the token is missing.
#[tokio::test]
async fn a_malformed_authorization_header_is_named_as_such() {
    let app = spawn_app_with(Options {
        tokens: Some(format!("worker={TOKEN}")),
        ..Options::default()
    })
    .await;
    let tab = format!("Bearer\t{TOKEN}");
    for value in [tab.as_str(), "Bearer", TOKEN, "Basic dXNlcjpwYXNz"] {
        let status = app
            .commands()
            .place_order(with_authorization(place(&id()), &[value]))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{value:?}: {status:?}"
        );
        assert!(
            status
                .message()
                .contains("the authorization header is not `Bearer <token>`"),
            "{value:?}: {status:?}"
        );
        assert!(!status.message().contains(TOKEN), "quoted: {status:?}");
    }
    let missing = app.commands().place_order(place(&id())).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("missing bearer token"),
        "{missing:?}"
    );
    let unknown = app
        .commands()
        .place_order(with_token(place(&id()), "not-the-token-0123456789"))
        .await
        .unwrap_err();
    assert_eq!(unknown.message(), "invalid bearer token");
    assert_eq!(app.event_count().await, 0);
}

fn correlated<T>(message: T, correlation_id: &str) -> tonic::Request<T> {
    let mut request = with_token(message, TOKEN);
    request
        .metadata_mut()
        .insert("x-correlation-id", correlation_id.parse().unwrap());
    request
}

/// Every call answered with an error is found in the service's log at DEBUG by the caller's
/// correlation id (order-client's errors tell callers to search for it): refusals of the
/// gateway (no token), bad input and NOT_FOUND alike; nothing is written above DEBUG.
#[tokio::test]
async fn a_refused_call_is_logged_at_debug_with_its_correlation_id() {
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The server runs on this test's (single-threaded) runtime: its lines reach this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = spawn_app_with(Options {
        tokens: Some(format!("worker={TOKEN}")),
        ..Options::default()
    })
    .await;

    let mut anonymous = tonic::Request::new(place(&id()));
    anonymous
        .metadata_mut()
        .insert("x-correlation-id", "probe-no-token".parse().unwrap());
    let refused = app.commands().place_order(anonymous).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut bad = place(&id());
    bad.lines[0].quantity = 0;
    let invalid = app
        .commands()
        .place_order(correlated(bad, "probe-bad-input"))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let missing = app
        .queries()
        .get_order(correlated(
            pb::GetOrderRequest {
                order_id: id(),
                ..Default::default()
            },
            "probe-not-found",
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    for (correlation_id, code, message) in [
        (
            "probe-no-token",
            16,
            "missing bearer token (authorization: Bearer <token>)",
        ),
        ("probe-bad-input", 3, "lines[0].quantity"),
        ("probe-not-found", 5, "not found"),
    ] {
        let line = log
            .lines()
            .find(|line| {
                line.contains(correlation_id) && line.contains("call answered with an error")
            })
            .unwrap_or_else(|| panic!("no line for {correlation_id} in:\n{log}"));
        assert!(line.contains("DEBUG"), "{line}");
        // The message as the caller reads it, not percent-encoded as on the wire.
        assert!(line.contains(message), "{line}");
        assert!(line.contains(&format!("grpc_status={code} ")), "{line}");
    }
    assert!(
        !log.lines()
            .any(|line| line.contains("probe-")
                && (line.contains(" WARN ") || line.contains(" ERROR "))),
        "{log}"
    );
}

//! Observability of the real processes: one trace from a client's PlaceOrder to the worker's
//! next command (received by an in-process OTLP collector), the Prometheus metrics of every
//! binary after a short load, and log lines that carry their context but never a secret.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use order_faults::load::{self, LoadOptions};
use order_faults::stack::{Stack, StackOptions};
use order_proto::v1 as pb;
use order_proto::v1::order_service_client::OrderServiceClient;
use tonic::{Request, Response, Status};

/// One span as the collector received it (ids in lowercase hex, as in `traceparent`).
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    linked_trace_ids: Vec<String>,
}

/// A minimal OTLP/gRPC trace collector that keeps every span it is sent.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(Received {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        linked_trace_ids: span.links.iter().map(|l| hex(&l.trace_id)).collect(),
                    });
                }
            }
        }
        self.spans.lock().unwrap().extend(received);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serve OTLP on a free loopback port; returns its address.
    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        addr
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

fn money(amount_minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency: "EUR".into(),
        amount_minor,
    })
}

fn place_order(order_id: uuid::Uuid) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        command_id: uuid::Uuid::new_v4().to_string(),
        order_id: order_id.to_string(),
        expected_version: None,
        customer_id: uuid::Uuid::new_v4().to_string(),
        lines: vec![pb::OrderLine {
            sku: "TRACE-1".into(),
            quantity: 2,
            unit_price: money(1250),
        }],
        shipping_address: Some(pb::Address {
            recipient: "Trace Tester".into(),
            line1: "1 Span Street".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
            ..Default::default()
        }),
        shipping_method: pb::ShippingMethod::Standard as i32,
    }
}

/// Wait until the order's summary reached a terminal state.
async fn wait_terminal(stack: &Stack, order_id: uuid::Uuid, within: Duration) -> String {
    let db = stack.db().await.unwrap();
    let deadline = Instant::now() + within;
    loop {
        let status: Option<String> = db
            .query_opt(
                "SELECT status FROM orders.order_summaries WHERE order_id = $1",
                &[&order_id],
            )
            .await
            .unwrap()
            .map(|row| row.get(0));
        if let Some(status) = status.filter(|s| s == "Completed" || s == "Cancelled") {
            return status;
        }
        assert!(Instant::now() < deadline, "order {order_id} not settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sum of the samples of `name` whose labels include every pair of `labels`; `None` when
/// no such sample exists.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let matches = labels.iter().all(|(k, v)| {
            series_labels
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        });
        if matches && let Ok(value) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_connects_place_order_append_publish_and_the_workers_next_command() {
    let collector = Collector::default();
    let otlp = collector.start().await;
    let options = StackOptions {
        transient_failure_rate: 0.0,
        extra_env: vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                format!("http://{otlp}"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ],
        ..StackOptions::default()
    };
    let mut stack = Stack::start(&crate::binaries(), &options).await.unwrap();

    // The client is the root of the trace: its traceparent names a trace id we know.
    let trace_id = hex(uuid::Uuid::new_v4().as_bytes());
    let client_span = &hex(uuid::Uuid::new_v4().as_bytes())[..16];
    let order_id = uuid::Uuid::new_v4();
    let mut client = OrderServiceClient::connect(stack.endpoint()).await.unwrap();
    let mut request = Request::new(place_order(order_id));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{client_span}-01").parse().unwrap(),
    );
    request
        .metadata_mut()
        .insert("x-correlation-id", "trace-test".parse().unwrap());
    client.place_order(request).await.unwrap();
    assert_eq!(
        wait_terminal(&stack, order_id, Duration::from_secs(60)).await,
        "Completed"
    );

    // A short load, then every binary's metrics.
    let report = load::run(
        &stack.endpoint(),
        &LoadOptions {
            rate: 20,
            duration: Duration::from_secs(3),
            out_of_stock: 0.0,
            declined: 0.0,
            ..LoadOptions::default()
        },
    )
    .await
    .unwrap();
    let placed = report.acknowledged.len() as f64 + 1.0;
    let audit = order_faults::audit::settle_and_audit(&stack, &report, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(audit.clean(), "{audit:?}");
    // On a loaded machine a call can outlast the client's 10 s: the client gives up on it
    // (abandoned), and the server may still have placed the order.
    assert_metrics(
        &stack,
        placed,
        report.abandoned.len() as f64,
        report.attempts as f64 + 1.0,
    )
    .await;

    // Stopping the services flushes their spans.
    stack.stop().await;
    if std::env::var_os("ORDER_TEST_KEEP_LOGS").is_some() {
        eprintln!("logs: {}", stack.logs.display());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let chain = loop {
        match trace_chain(&collector.spans(), &trace_id, client_span) {
            Ok(chain) => break chain,
            Err(missing) if Instant::now() > deadline => panic!(
                "{missing}; {} spans received; those of the trace: {:#?}",
                collector.spans().len(),
                collector
                    .spans()
                    .into_iter()
                    .filter(|s| s.trace_id == trace_id)
                    .collect::<Vec<_>>()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert_eq!(
        chain,
        [
            "order-grpc orders.v1.OrderService/PlaceOrder",
            "order-grpc append",
            "order-projector orders.fifo publish",
            "order-worker order-worker OrderPlaced",
            "order-grpc orders.v1.OrderService/ReserveInventory",
        ]
    );
    // The projector's batch span (a trace of its own) links to the producing trace.
    assert!(
        collector
            .spans()
            .iter()
            .any(|s| s.service == "order-projector"
                && s.name == "project"
                && s.linked_trace_ids.contains(&trace_id)),
        "no projector batch links to the trace"
    );
}

/// Follow the trace from the client's span: PlaceOrder (child of the client), its append,
/// the SQS publish (child of PlaceOrder), the worker's message span (child of the publish)
/// and the worker's next command (child of the message span).
fn trace_chain(
    spans: &[Received],
    trace_id: &str,
    client_span: &str,
) -> Result<Vec<String>, String> {
    let of_trace: Vec<&Received> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let by_id: HashMap<&str, &Received> =
        of_trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let descends_from = |span: &Received, ancestor: &str| {
        let mut current = span;
        for _ in 0..32 {
            if current.parent_span_id == ancestor {
                return true;
            }
            match by_id.get(current.parent_span_id.as_str()) {
                Some(parent) => current = parent,
                None => return false,
            }
        }
        false
    };
    let find = |what: &str, test: &dyn Fn(&Received) -> bool| {
        of_trace
            .iter()
            .copied()
            .find(|s| test(s))
            .ok_or_else(|| format!("no {what} span in the trace"))
    };
    let place = find("PlaceOrder", &|s| {
        s.service == "order-grpc"
            && s.name.ends_with("/PlaceOrder")
            && s.parent_span_id == client_span
    })?;
    let append = find("append", &|s| {
        s.service == "order-grpc" && s.name == "append" && descends_from(s, &place.span_id)
    })?;
    let publish = find("publish", &|s| {
        s.service == "order-projector" && s.parent_span_id == place.span_id
    })?;
    let message = find("worker message", &|s| {
        s.service == "order-worker" && s.parent_span_id == publish.span_id
    })?;
    let next = find("next command", &|s| {
        s.service == "order-grpc"
            && s.name.starts_with("orders.v1.OrderService/")
            && descends_from(s, &message.span_id)
    })?;
    Ok([place, append, publish, message, next]
        .iter()
        .map(|s| format!("{} {}", s.service, s.name))
        .collect())
}

/// Every binary's `/metrics` after `placed` orders completed without faults, `abandoned` more
/// were given up on by the client (placed or not), in `calls` PlaceOrder calls in all.
async fn assert_metrics(stack: &Stack, placed: f64, abandoned: f64, calls: f64) {
    let (code, grpc) = stack.grpc.admin_get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    let place_ok = metric(
        &grpc,
        "order_commands_total",
        &[("command", "PlaceOrder"), ("outcome", "ok")],
    )
    .unwrap_or(0.0);
    // A call whose deadline passed is answered DEADLINE_EXCEEDED and counted so, though its
    // append may still commit; the client's retry is then a duplicate, and acknowledged.
    let deadline = metric(
        &grpc,
        "order_commands_total",
        &[("command", "PlaceOrder"), ("outcome", "deadline")],
    )
    .unwrap_or(0.0);
    assert!(
        (placed - deadline..=placed + abandoned).contains(&place_ok),
        "{place_ok} placed, {placed} acknowledged, {abandoned} abandoned, {deadline} past their \
         deadline\n{grpc}"
    );
    let timed = metric(
        &grpc,
        "order_command_duration_seconds_count",
        &[("command", "PlaceOrder")],
    )
    .unwrap_or(0.0);
    assert!(
        (place_ok..=calls).contains(&timed),
        "{timed} timed, {place_ok} placed, {calls} calls\n{grpc}"
    );
    // Each completed order took seven more commands from the worker.
    for command in [
        "ReserveInventory",
        "AuthorizePayment",
        "ConfirmOrder",
        "StartFulfillment",
        "ShipOrder",
        "DeliverOrder",
        "CompleteOrder",
    ] {
        let ok = metric(
            &grpc,
            "order_commands_total",
            &[("command", command), ("outcome", "ok")],
        )
        .unwrap_or(0.0);
        assert!(ok >= placed, "{command}: {ok} < {placed}\n{grpc}");
    }
    assert!(metric(&grpc, "order_db_pool_connections", &[]).is_some_and(|n| n >= 1.0));
    assert!(metric(&grpc, "order_db_pool_waiting", &[]).is_some());
    // The group-commit writer's thread holds connections of its own (it has appended): they
    // are in the gauges too, under a pool of their own. Sampled every second: wait for one.
    let writer = [("pool", "order-grpc-writer-0")];
    let deadline = Instant::now() + Duration::from_secs(10);
    let grpc = loop {
        let (code, grpc) = stack.grpc.admin_get("/metrics").await.unwrap();
        assert_eq!(code, 200);
        let open = metric(&grpc, "order_db_pool_connections", &writer);
        if open.is_some_and(|n| n >= 1.0) || Instant::now() > deadline {
            break grpc;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        metric(&grpc, "order_db_pool_connections", &writer).is_some_and(|n| n >= 1.0),
        "{grpc}"
    );
    // Its appends and its NOTIFYs, one connection each.
    assert_eq!(metric(&grpc, "order_db_pool_max", &writer), Some(2.0));

    let db = stack.db().await.unwrap();
    let events: i64 = db
        .query_one("SELECT count(*) FROM orders.events", &[])
        .await
        .unwrap()
        .get(0);
    // Lag is sampled every two seconds: wait for a sample of the final head.
    let deadline = Instant::now() + Duration::from_secs(10);
    let projector = loop {
        let (code, projector) = stack.projector.admin_get("/metrics").await.unwrap();
        assert_eq!(code, 200);
        let caught_up = ["read_model", "sqs_publisher"].iter().all(|subscription| {
            metric(
                &projector,
                "order_projector_lag_events",
                &[("subscription", subscription)],
            ) == Some(0.0)
        });
        let head = metric(&projector, "order_log_head_position", &[]);
        if (caught_up && head == Some(events as f64)) || Instant::now() > deadline {
            break projector;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Every service counts its ERROR lines (the board's api-error-spike reads order-grpc's).
    for (service, text) in [("order-grpc", &grpc), ("order-projector", &projector)] {
        assert!(
            metric(text, "order_log_errors_total", &[]).is_some(),
            "{service}\n{text}"
        );
    }
    // The store's rare counters are there before the first change, as in order-grpc.
    for reason in ["read_only", "shutting_down", "no_answer", "newer_timeline"] {
        assert_eq!(
            metric(
                &projector,
                "order_db_server_changes_total",
                &[("reason", reason)]
            ),
            Some(0.0),
            "{reason}\n{projector}"
        );
    }
    for subscription in ["read_model", "sqs_publisher"] {
        let projected = metric(
            &projector,
            "order_projector_events_total",
            &[("subscription", subscription)],
        );
        assert_eq!(
            projected,
            Some(events as f64),
            "{subscription}\n{projector}"
        );
        assert_eq!(
            metric(
                &projector,
                "order_projector_lag_events",
                &[("subscription", subscription)]
            ),
            Some(0.0),
            "{subscription} caught up"
        );
        assert_eq!(
            metric(
                &projector,
                "order_projector_lag_seconds",
                &[("subscription", subscription)]
            ),
            Some(0.0)
        );
    }
    assert_eq!(
        metric(&projector, "order_log_head_position", &[]),
        Some(events as f64)
    );
    assert_eq!(
        metric(&projector, "order_sqs_messages_sent_total", &[]),
        Some(events as f64)
    );
    assert!(
        metric(&projector, "order_sqs_batch_duration_seconds_count", &[]).is_some_and(|n| n >= 1.0)
    );

    let (code, worker) = stack.worker.admin_get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    // Every event reached the worker once, or more often (a redelivery ends "obsolete").
    let ok = metric(&worker, "order_worker_messages_total", &[("outcome", "ok")]).unwrap_or(0.0);
    let obsolete = metric(
        &worker,
        "order_worker_messages_total",
        &[("outcome", "obsolete")],
    )
    .unwrap_or(0.0);
    assert!(ok >= placed && ok + obsolete >= events as f64, "{worker}");
    assert!(
        metric(
            &worker,
            "order_worker_step_duration_seconds_count",
            &[("step", "inventory")]
        )
        .is_some_and(|n| n >= placed),
        "{worker}"
    );
    assert_eq!(
        metric(&worker, "order_worker_dlq_sends_total", &[]).unwrap_or(0.0),
        0.0
    );
    assert!(
        metric(&worker, "order_worker_circuit_state", &[]).is_some(),
        "{worker}"
    );
    // Per provider: calls by result (the failure classes), latency, breaker state.
    for provider in ["inventory", "payment", "shipping"] {
        assert!(
            metric(
                &worker,
                "order_worker_provider_calls_total",
                &[("provider", provider), ("result", "ok")]
            )
            .is_some_and(|n| n >= 1.0),
            "{provider}: {worker}"
        );
        assert!(
            metric(
                &worker,
                "order_worker_provider_call_duration_seconds_count",
                &[("provider", provider)]
            )
            .is_some_and(|n| n >= 1.0),
            "{provider}: {worker}"
        );
        assert_eq!(
            metric(
                &worker,
                "order_worker_circuit_state",
                &[("provider", provider)]
            ),
            Some(0.0),
            "{provider}: {worker}"
        );
    }
}

/// A port nothing listens on (the OTLP collector is down).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_their_context_and_never_a_secret_even_at_debug() {
    let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let options = StackOptions {
        auth_token: Some(token.clone()),
        database_password: Some(password.clone()),
        log_level: "debug".to_owned(),
        // Tracing on, but the collector is down: requests must not notice.
        extra_env: vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                format!("http://127.0.0.1:{}", dead_port()),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ],
        ..StackOptions::default()
    };
    let mut stack = Stack::start(&crate::binaries(), &options).await.unwrap();
    assert!(stack.database_url.contains(&password));
    let without_password = stack.database_url.replace(&format!(":{password}@"), "@");
    assert!(
        order_testkit::pg::try_connect(&without_password)
            .await
            .is_err(),
        "PostgreSQL must demand the password"
    );

    // A wrong token is refused (and a missing one).
    let mut client = OrderServiceClient::connect(stack.endpoint()).await.unwrap();
    let mut request = Request::new(place_order(uuid::Uuid::new_v4()));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}x").parse().unwrap());
    let refused = client.place_order(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = client
        .place_order(place_order(uuid::Uuid::new_v4()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // Load with the right token; then PostgreSQL restarts under the services (connection
    // errors are logged) and they recover by themselves.
    let load_options = LoadOptions {
        rate: 15,
        duration: Duration::from_secs(2),
        token: Some(token.clone()),
        ..LoadOptions::default()
    };
    let report = load::run(&stack.endpoint(), &load_options).await.unwrap();
    assert!(!report.acknowledged.is_empty());
    // A caller's mistake is no API error...
    let authorized = |body| {
        let mut request = Request::new(body);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    let mut invalid = place_order(uuid::Uuid::new_v4());
    invalid.lines.clear();
    let refused = client.place_order(authorized(invalid)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    stack
        .cluster
        .stop(order_testkit::pg::StopMode::Fast)
        .unwrap();
    // ...a call failing because the database is down is one.
    let down = client
        .place_order(authorized(place_order(uuid::Uuid::new_v4())))
        .await
        .unwrap_err();
    assert_eq!(down.code(), tonic::Code::Unavailable, "{down:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.cluster.start_again().unwrap();
    for service in [&mut stack.grpc, &mut stack.projector, &mut stack.worker] {
        service.wait_ready(Duration::from_secs(30)).await.unwrap();
    }
    let audit = order_faults::audit::settle_and_audit(&stack, &report, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(audit.clean(), "{audit:?}");
    stack.stop().await;

    let mut lines = 0;
    let mut in_context = 0;
    for service in [&stack.grpc, &stack.projector, &stack.worker] {
        let text = std::fs::read_to_string(service.log_path()).unwrap();
        for line in text.lines() {
            lines += 1;
            assert!(
                !line.contains(&password),
                "{} logged the database password: {line}",
                service.name
            );
            assert!(
                !line.contains(&token),
                "{} logged the bearer token: {line}",
                service.name
            );
            // Every line inside a command or a message carries its context.
            let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let spans = json["spans"].as_array().cloned().unwrap_or_default();
            for span in spans
                .iter()
                .filter(|s| s["name"] == "command" || s["name"] == "message")
                .filter(|s| s.get("event_id").is_some() || s["name"] == "command")
            {
                in_context += 1;
                for field in ["correlation_id", "order_id", "trace_id"] {
                    let value = span[field].as_str().unwrap_or_default();
                    assert!(!value.is_empty(), "{field} missing in {line}");
                }
                assert_eq!(span["trace_id"].as_str().unwrap_or_default().len(), 32);
            }
        }
    }
    // ApiErrorCount counts order-grpc's ERROR lines: here, exactly the outage.
    let grpc_log = std::fs::read_to_string(stack.grpc.log_path()).unwrap();
    let errors: Vec<&str> = grpc_log
        .lines()
        .filter(|line| line.contains(r#""level":"ERROR""#))
        .collect();
    assert!(!errors.is_empty(), "the outage logged no ERROR line");
    assert!(
        errors
            .iter()
            .all(|line| line.contains("answered UNAVAILABLE")),
        "{errors:#?}"
    );
    eprintln!("{lines} log lines checked, {in_context} inside a command or message");
    assert!(lines > 100, "only {lines} log lines");
    assert!(in_context > 10, "only {in_context} lines inside a request");
}

//! order-cli, the built binary, against the real order-grpc (in process) and read model: the
//! README's example verbatim, exit codes, JSON in and out.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

#[path = "../../order-client/tests/client/support.rs"]
mod support;

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_order-cli");
const MARKER: &str = "<!-- order-cli example: run by order-cli/tests/cli.rs -->";

/// The shell block after the marker in README.md.
fn readme_example() -> String {
    let readme = include_str!("../../README.md");
    let after = &readme[readme.find(MARKER).expect("the marker in README.md") + MARKER.len()..];
    let body = after
        .trim_start()
        .strip_prefix("```sh\n")
        .expect("a ```sh block after the marker");
    body[..body.find("```").expect("the block's end")].to_owned()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn order_cli(url: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = tokio::process::Command::new(BIN)
        .args(args)
        .env("ORDER_GRPC_URL", url)
        .env_remove("ORDER_GRPC_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[tokio::test]
async fn the_readme_example_walks_an_order_through_its_whole_life() {
    let stack = Stack::start().await.with_read_model().await;
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("set -euo pipefail\n{}", readme_example());
    let output = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", path)
        .env("ORDER_GRPC_URL", stack.url())
        .env_remove("ORDER_GRPC_TOKEN")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the example failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    // Shown with --nocapture.
    eprintln!("{stdout}");

    // The first order went all the way, the second was cancelled: in the log...
    let client = stack.client();
    // (The read model follows the log a moment behind the commands: read once it has applied
    // the whole example, as a caller would with min_position.)
    let (head, last_order) = stack.last_event().await;
    client
        .get_order(last_order)
        .min_position(head)
        .await
        .unwrap();
    let orders = client
        .list_orders()
        .customer(customer())
        .all(10)
        .await
        .unwrap();
    assert_eq!(orders.len(), 2, "{stdout}");
    let statuses: Vec<_> = orders.iter().map(|o| o.status()).collect();
    use order_client::pb::OrderStatus;
    assert!(statuses.contains(&OrderStatus::Completed), "{statuses:?}");
    assert!(statuses.contains(&OrderStatus::Cancelled), "{statuses:?}");
    let completed = orders
        .iter()
        .find(|o| o.status() == OrderStatus::Completed)
        .unwrap();
    let events = client
        .get_order_events(completed.order_id.parse().unwrap())
        .await
        .unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "OrderPlaced",
            "InventoryReserved",
            "PaymentAuthorized",
            "OrderConfirmed",
            "FulfillmentStarted",
            "OrderShipped",
            "OrderDelivered",
            "PaymentRefunded",
            "OrderCompleted"
        ]
    );
    assert_eq!(completed.refunded, Some(order_client::money("EUR", 500)));
    // ...and in what the example printed: the read-your-writes `get`, the events table, the
    // JSON list, the live tail.
    assert!(stdout.contains("status    COMPLETED"), "{stdout}");
    assert!(stdout.contains("tracking_number=JD0001"), "{stdout}");
    assert!(stdout.contains(r#""status":"COMPLETED""#), "{stdout}");
    assert!(stdout.contains("OrderCancelled"), "{stdout}");
}

#[tokio::test]
async fn exit_codes_follow_the_grpc_class_of_the_failure() {
    let stack = Stack::start_with(ServerOptions {
        tokens: Some("cli=order-cli-tests-token-0123".into()),
        ..ServerOptions::default()
    })
    .await;
    let url = stack.url();
    let unknown = uuid::Uuid::new_v4().to_string();

    let denied = order_cli(&url, &["events", &unknown], None).await;
    assert_eq!(denied.code, 6, "UNAUTHENTICATED: {}", denied.stderr);
    assert!(
        denied.stderr.contains("UNAUTHENTICATED"),
        "{}",
        denied.stderr
    );

    let with_token = |args: &[&str]| {
        let mut all = vec!["--token", "order-cli-tests-token-0123"];
        all.extend_from_slice(args);
        all.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let url = url.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            order_cli(&url, &args, None).await
        }
    };
    let missing = run(with_token(&["events", &unknown])).await;
    assert_eq!(missing.code, 4, "NOT_FOUND: {}", missing.stderr);

    let placed = run(with_token(&[
        "place",
        "--customer",
        CUSTOMER,
        "--line",
        "SKU-1:1:3000",
        "--country",
        "DE",
        "--recipient",
        "R",
        "--line1",
        "L",
        "--city",
        "C",
        "--postal-code",
        "1",
        "--print",
        "order-id",
    ]))
    .await;
    assert_eq!(placed.code, 0, "{}", placed.stderr);
    let order = placed.stdout.trim().to_owned();

    let too_early = run(with_token(&[
        "ship",
        &order,
        "--carrier",
        "DHL",
        "--tracking-number",
        "1",
    ]))
    .await;
    assert_eq!(
        too_early.code, 3,
        "FAILED_PRECONDITION: {}",
        too_early.stderr
    );
    let stale = run(with_token(&[
        "reserve",
        &order,
        "--reservation-id",
        "r",
        "--expected-version",
        "9",
    ]))
    .await;
    assert_eq!(stale.code, 3, "ABORTED: {}", stale.stderr);

    let usage = run(with_token(&["reserve", &order])).await;
    assert_eq!(usage.code, 2, "no reservation id: {}", usage.stderr);
    let usage = run(with_token(&["get", "not-a-uuid"])).await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    // A URL without its scheme is a setting to fix, not a service that is down.
    let schemeless = url.trim_start_matches("http://").to_owned();
    let usage = order_cli(&schemeless, &["events", &unknown], None).await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    assert!(
        usage.stderr.contains("must start with http://"),
        "{}",
        usage.stderr
    );

    let down = order_cli(
        "http://127.0.0.1:1",
        &["--attempts", "2", "--timeout", "1s", "events", &unknown],
        None,
    )
    .await;
    assert_eq!(down.code, 5, "UNAVAILABLE: {}", down.stderr);
    assert!(down.stderr.contains("after 2 attempts"), "{}", down.stderr);
}

#[tokio::test]
async fn commands_read_json_input_and_answer_in_json() {
    let stack = Stack::start().await;
    let url = stack.url();
    let order = uuid::Uuid::new_v4();
    let place = format!(
        r#"{{"order_id": "{order}", "customer_id": "{CUSTOMER}",
            "lines": [{{"sku": "SKU-1", "quantity": 2, "unit_price": {{"currency": "EUR", "amount_minor": 1500}}}}],
            "shipping_address": {{"recipient": "Ada", "line1": "1 Road", "city": "Berlin", "postal_code": "10115", "country": "DE"}},
            "shipping_method": "overnight"}}"#
    );
    let placed = order_cli(
        &url,
        &["place", "--json-input", "-", "--json"],
        Some(&place),
    )
    .await;
    assert_eq!(placed.code, 0, "{}", placed.stderr);
    let answer: serde_json::Value = serde_json::from_str(&placed.stdout).unwrap();
    assert_eq!(answer["order_id"], order.to_string());
    assert_eq!(answer["status"], "PLACED");
    assert_eq!(answer["version"], 1);

    let command_id = uuid::Uuid::new_v4().to_string();
    let reserve = format!(r#"{{"reservation_id": "res-9", "command_id": "{command_id}"}}"#);
    for duplicate in [false, true] {
        let run = order_cli(
            &url,
            &["reserve", &order.to_string(), "--json-input", "-", "--json"],
            Some(&reserve),
        )
        .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(answer["command_id"], command_id);
        assert_eq!(answer["duplicate"], duplicate);
        assert_eq!(answer["version"], 2);
    }

    let bad = order_cli(
        &url,
        &["reserve", "--json-input", "-"],
        Some(r#"{"order": 1}"#),
    )
    .await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);

    let events = order_cli(&url, &["events", &order.to_string(), "--json"], None).await;
    let events: serde_json::Value = serde_json::from_str(&events.stdout).unwrap();
    assert_eq!(events[0]["payload"]["shipping_method"], "OVERNIGHT");
    assert_eq!(events[1]["payload"]["reservation_id"], "res-9");

    let follow = order_cli(
        &url,
        &["follow", "--after-position", "1", "--limit", "1", "--json"],
        None,
    )
    .await;
    assert_eq!(follow.code, 0, "{}", follow.stderr);
    let event: serde_json::Value = serde_json::from_str(follow.stdout.trim()).unwrap();
    assert_eq!(event["event_type"], "InventoryReserved");

    // A reader that went away (`| head`) ends the command quietly, not with a panic.
    for args in [
        vec!["events", &*order.to_string()],
        vec!["follow", "--after-position", "0"],
    ] {
        let mut child = tokio::process::Command::new(BIN)
            .args(&args)
            .env("ORDER_GRPC_URL", &url)
            .env_remove("ORDER_GRPC_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output =
            tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
                .await
                .expect("order-cli ended once its reader was gone")
                .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }

    for bad in [
        ["--correlation-id", "two words"],
        ["--timeout", "0s"],
        ["--attempts", "0"],
    ] {
        let run = order_cli(&url, &["get", &*order.to_string(), bad[0], bad[1]], None).await;
        assert_eq!(run.code, 2, "{bad:?} is a usage error: {}", run.stderr);
        assert!(run.stderr.contains(bad[0]), "{bad:?}: {}", run.stderr);
    }

    let none = order_cli(&url, &["follow", "--limit", "0"], None).await;
    assert_eq!(none.code, 2, "--limit 0 is a usage error: {}", none.stderr);
    assert!(none.stdout.is_empty(), "{}", none.stdout);

    let help = order_cli(&url, &["--help"], None).await;
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes"), "{}", help.stdout);
}

/// Run order-cli with these environment variables set (and `ORDER_GRPC_URL` to `url`).
async fn order_cli_with_env(url: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = tokio::process::Command::new(BIN)
        .args(args)
        .env("ORDER_GRPC_URL", url)
        .env_remove("ORDER_GRPC_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// An `OrderService` in front of the real one that applies the first command it is given and
/// throws its answer away, answering UNAVAILABLE instead: the answer lost on the network.
#[derive(Clone)]
struct LoseFirstAnswer {
    upstream: tonic::transport::Channel,
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl tonic::server::NamedService for LoseFirstAnswer {
    const NAME: &'static str = "orders.v1.OrderService";
}

impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>> for LoseFirstAnswer {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        use tonic::codegen::Body;
        let mut upstream = self.upstream.clone();
        let lose = !self.lost.swap(true, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            let unavailable = |message: String| tonic::Status::unavailable(message).into_http();
            if let Err(error) = std::future::poll_fn(|cx| upstream.poll_ready(cx)).await {
                return Ok(unavailable(error.to_string()));
            }
            let response = match upstream.call(request).await {
                Ok(response) => response,
                Err(error) => return Ok(unavailable(error.to_string())),
            };
            if !lose {
                return Ok(response);
            }
            // The whole answer (the command is applied), then lose it.
            let mut body = std::pin::pin!(response.into_body());
            while std::future::poll_fn(|cx| body.as_mut().poll_frame(cx))
                .await
                .is_some()
            {}
            Ok(unavailable("the answer was lost on the way".to_owned()))
        })
    }
}

#[tokio::test]
async fn a_command_applied_by_this_calls_first_attempt_is_not_called_a_change_of_nothing() {
    let stack = Stack::start().await;
    let client = stack.client();
    let placed = place(&client).await.unwrap();
    client
        .reserve_inventory(placed.order_id, "res-1")
        .await
        .unwrap();
    let authorized = client
        .authorize_payment(placed.order_id, "pay-1", order_client::money("EUR", TOTAL))
        .await
        .unwrap();
    assert_eq!(authorized.version, 3);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let upstream = tonic::transport::Channel::from_shared(stack.url())
        .unwrap()
        .connect_lazy();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LoseFirstAnswer {
                upstream,
                lost: Default::default(),
            })
            .serve_with_incoming(
                tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener),
            ),
    );

    let order = placed.order_id.to_string();
    let confirm = order_cli(
        &proxy,
        &["confirm", &order, "--expected-version", "3"],
        None,
    )
    .await;
    assert_eq!(confirm.code, 0, "{}", confirm.stderr);
    assert_eq!(
        stack.order_events(placed.order_id).await.len(),
        4,
        "applied once"
    );
    // This invocation applied it (its first attempt): not "nothing changed".
    assert!(
        !confirm.stdout.contains("nothing changed"),
        "{}",
        confirm.stdout
    );
    assert!(
        confirm
            .stdout
            .contains("applied by an earlier attempt of this call whose answer was lost"),
        "{}",
        confirm.stdout
    );
    assert!(
        confirm.stdout.contains("nothing applied twice"),
        "{}",
        confirm.stdout
    );
    let command_id = confirm
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("command id"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();

    // The same id again, in another call: that one was applied by an earlier call.
    let again = order_cli(
        &stack.url(),
        &[
            "confirm",
            &order,
            "--expected-version",
            "3",
            "--command-id",
            &command_id,
        ],
        None,
    )
    .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again
            .stdout
            .contains("applied by an earlier call with this command id"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("nothing applied twice"),
        "{}",
        again.stdout
    );
    assert_eq!(stack.order_events(placed.order_id).await.len(), 4);
    serving.abort();
}

#[tokio::test]
async fn a_field_the_subcommand_does_not_take_is_refused_and_nothing_is_sent() {
    let stack = Stack::start().await;
    let url = stack.url();
    let placed = place(&stack.client()).await.unwrap();
    let order = placed.order_id.to_string();

    // A flag of another command sharing the same arguments.
    let refund = order_cli(
        &url,
        &[
            "refund",
            &order,
            "--payment-id",
            "pay-ignored",
            "--amount",
            "1",
        ],
        None,
    )
    .await;
    assert_eq!(refund.code, 2, "{}", refund.stderr);
    assert!(refund.stderr.contains("--payment-id"), "{}", refund.stderr);
    assert!(refund.stderr.contains("refund"), "{}", refund.stderr);

    // A JSON key of another command.
    let json = format!(r#"{{"order_id": "{order}", "reservation_id": "r", "carrier": "DHL"}}"#);
    let reserve = order_cli(&url, &["reserve", "--json-input", "-"], Some(&json)).await;
    assert_eq!(reserve.code, 2, "{}", reserve.stderr);
    assert!(reserve.stderr.contains("carrier"), "{}", reserve.stderr);
    assert!(reserve.stderr.contains("reserve"), "{}", reserve.stderr);
    for (command, json) in [
        (
            "refund",
            r#"{"payment_id": "p", "amount": {"currency": "EUR", "amount_minor": 1}}"#,
        ),
        ("confirm", r#"{"reason": "why"}"#),
        ("cancel", r#"{"reason": "why", "tracking_number": "1"}"#),
    ] {
        let run = order_cli(&url, &[command, &order, "--json-input", "-"], Some(json)).await;
        assert_eq!(run.code, 2, "{command} {json}: {}", run.stderr);
        assert!(run.stderr.contains(command), "{command}: {}", run.stderr);
    }
    assert_eq!(
        stack.order_events(placed.order_id).await.len(),
        1,
        "nothing sent"
    );

    // A command's own fields still work.
    let reserved = order_cli(
        &url,
        &["reserve", "--json-input", "-"],
        Some(&format!(
            r#"{{"order_id": "{order}", "reservation_id": "r", "expected_version": 1}}"#
        )),
    )
    .await;
    assert_eq!(reserved.code, 0, "{}", reserved.stderr);
}

#[tokio::test]
async fn an_empty_token_and_a_ca_file_without_a_certificate_are_unusable_settings() {
    let unknown = uuid::Uuid::new_v4().to_string();
    // Nothing listens there: a settings error must come before any call.
    let nowhere = "http://127.0.0.1:1";
    for empty in ["", "  "] {
        let run = order_cli_with_env(
            nowhere,
            &["events", &unknown],
            &[("ORDER_GRPC_TOKEN", empty)],
        )
        .await;
        assert_eq!(run.code, 2, "{empty:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("ORDER_GRPC_TOKEN is set but empty"),
            "{empty:?}: {}",
            run.stderr
        );
    }
    let flag = order_cli_with_env(nowhere, &["--token", "", "events", &unknown], &[]).await;
    assert_eq!(flag.code, 2, "{}", flag.stderr);
    assert!(flag.stderr.contains("--token"), "{}", flag.stderr);

    let dir = std::env::temp_dir().join(format!("order-cli-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\n\
         MC4CAQAwBQYDK2VwBCIEIPzGJ6YQf4cJYbX6QyW1m7pFx1v6hXb3q2a8n7zQ2m1k\n\
         -----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let run = order_cli_with_env(
        "https://127.0.0.1:1",
        &["--tls-ca-file", key.to_str().unwrap(), "events", &unknown],
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no certificate"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

/// `place` with the flags of the README's repro, under `command_id`.
fn place_args<'a>(command_id: &'a str, output: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "place",
        "--command-id",
        command_id,
        "--customer",
        CUSTOMER,
        "--line",
        "SKU-1:1:100",
        "--recipient",
        "R",
        "--line1",
        "L",
        "--city",
        "C",
        "--postal-code",
        "1",
        "--country",
        "DE",
    ];
    args.extend_from_slice(output);
    args
}

#[tokio::test]
async fn a_place_retried_with_its_command_id_names_the_same_order_and_writes_nothing() {
    let stack = Stack::start().await;
    let url = stack.url();
    let command_id = uuid::Uuid::new_v4().to_string();

    let first = order_cli(
        &url,
        &place_args(&command_id, &["--print", "order-id"]),
        None,
    )
    .await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let order = first.stdout.trim().to_owned();
    // The same command again, exactly as it was (the caller never saw the first answer).
    let again = order_cli(
        &url,
        &place_args(&command_id, &["--print", "order-id"]),
        None,
    )
    .await;
    assert_eq!(again.code, 0, "the retry is refused: {}", again.stderr);
    assert_eq!(again.stdout.trim(), order, "the retry names another order");
    let json = order_cli(&url, &place_args(&command_id, &["--json"]), None).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let answer: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(answer["order_id"], order);
    assert_eq!(answer["command_id"], command_id);
    assert_eq!(answer["duplicate"], true, "{}", json.stdout);
    assert_eq!(answer["version"], 1);

    let order_id: uuid::Uuid = order.parse().unwrap();
    let events = stack.client().get_order_events(order_id).await.unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["OrderPlaced"], "placed once");
    assert_eq!(stack.log().await.len(), 1, "nothing else written");
    assert_eq!(stack.commands_recorded(&command_id).await, 1);

    // Without --command-id, each run is a new order, under ids of its own.
    let fresh: Vec<&str> = place_args(&command_id, &["--print", "order-id"])
        .into_iter()
        .skip(3)
        .collect();
    let mut orders = std::collections::HashSet::new();
    for _ in 0..2 {
        let run = order_cli(&url, &[&["place"], &fresh[..]].concat(), None).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        orders.insert(run.stdout.trim().to_owned());
    }
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert!(!orders.contains(&order), "{orders:?}");
}

#[tokio::test]
async fn json_input_that_is_not_an_object_or_repeats_a_key_is_refused_and_nothing_is_sent() {
    let stack = Stack::start().await;
    let url = stack.url();
    let placed = place(&stack.client()).await.unwrap();
    let order = placed.order_id.to_string();
    let log = stack.log().await.len();

    let twice = order_cli(
        &url,
        &["ship", &order, "--json-input", "-"],
        Some(r#"{"carrier":"FIRST","carrier":"SECOND","tracking_number":"T1"}"#),
    )
    .await;
    assert_eq!(twice.code, 2, "{}", twice.stderr);
    assert!(
        twice.stderr.contains(r#""carrier""#) && twice.stderr.contains("twice"),
        "{}",
        twice.stderr
    );
    assert_eq!(twice.stderr.trim().lines().count(), 1, "{}", twice.stderr);

    for (args, json) in [
        (vec!["confirm", "--json-input", "-"], "[1]"),
        (vec!["reserve", &order, "--json-input", "-"], r#"["r"]"#),
        (
            vec!["place", "--json-input", "-"],
            r#"[null, null, "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001"]"#,
        ),
    ] {
        let run = order_cli(&url, &args, Some(json)).await;
        assert_eq!(run.code, 2, "{args:?} {json}: {}", run.stderr);
        assert!(
            run.stderr.contains("object"),
            "{args:?} {json}: {}",
            run.stderr
        );
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    }
    assert_eq!(stack.log().await.len(), log, "nothing sent");
}

//! The binary's command line: every setting in `--help`, one-line errors with exit code 2 for
//! bad settings, and the `healthcheck` probe. No services needed.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn worker(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_order-worker"));
    command.env_clear().args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

const QUEUES: [(&str, &str); 2] = [
    (
        "ORDERS_QUEUE_URL",
        "http://127.0.0.1:1/000000000000/orders.fifo",
    ),
    (
        "ORDERS_DLQ_URL",
        "http://127.0.0.1:1/000000000000/orders-dlq.fifo",
    ),
];

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let output = worker(&["run", "--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "WORKER_MODE",
        "ORDERS_QUEUE_URL",
        "ORDERS_DLQ_URL",
        "ORDER_GRPC_ENDPOINT",
        "ORDER_GRPC_AUTH_TOKEN",
        "ORDER_GRPC_CA_FILE",
        "ORDER_GRPC_TIMEOUT_MS",
        "ORDER_ADMIN_ADDR",
        "ORDER_WORKER_CONCURRENCY",
        "ORDER_WORKER_WAIT_SECONDS",
        "ORDER_WORKER_BATCH",
        "ORDER_WORKER_VISIBILITY_SECONDS",
        "ORDER_WORKER_RETRY_BASE_MS",
        "ORDER_WORKER_PROVIDER_TIMEOUT_MS",
        "ORDER_WORKER_BREAKER_THRESHOLD",
        "ORDER_WORKER_SIM_LATENCY_MS",
        "ORDER_WORKER_SIM_TRANSIENT_FAILURE_RATE",
        "ORDER_WORKER_SIM_OUT_OF_STOCK_SKU_PREFIX",
        "ORDER_WORKER_SIM_DECLINE_SKU_PREFIX",
        "ORDER_SHUTDOWN_GRACE_SECONDS",
        "LOG_FORMAT",
        "ORDER_WORKER_PROVIDERS",
        "ORDER_WORKER_BREAKER_HALF_OPEN_CALLS",
        "ORDER_WORKER_CIRCUIT_WAIT_SECONDS",
        "ORDER_WORKER_DELIVERY_WAIT_SECONDS",
        "ORDER_WORKER_DELIVERY_POLL_MS",
        "ORDER_WORKER_DELIVERY_RECHECK_SECONDS",
        "ORDER_WORKER_PROVIDER_KEY_LIFETIME_SECONDS",
        "ORDER_PROVIDER_CONNECT_TIMEOUT_MS",
        "ORDER_PROVIDER_HTTP_VERSION",
        "ORDER_PROVIDER_POOL_IDLE_PER_HOST",
        "ORDER_PROVIDER_INVENTORY_URL",
        "ORDER_PROVIDER_INVENTORY_TOKEN",
        "ORDER_PROVIDER_PAYMENT_URL",
        "ORDER_PROVIDER_PAYMENT_CLIENT_CERT",
        "ORDER_PROVIDER_PAYMENT_CLIENT_CERT_FILE",
        "ORDER_PROVIDER_PAYMENT_CA_FILE",
        "ORDER_PROVIDER_SHIPPING_URL",
        "ORDER_PROVIDER_SHIPPING_CA",
    ] {
        assert!(help.contains(variable), "{variable} missing from --help");
    }
    assert!(help.contains("AWS_ENDPOINT_URL_SQS"), "{help}");
    // Without a subcommand, --help lists the subcommands and every setting of `run`.
    let top = worker(&["--help"], &[]);
    assert!(top.status.success(), "{top:?}");
    let top = String::from_utf8(top.stdout).unwrap();
    assert!(top.contains("healthcheck"), "{top}");
    for variable in help
        .split("[env: ")
        .skip(1)
        .filter_map(|r| r.split('=').next())
    {
        assert!(
            top.contains(variable),
            "{variable} missing from the top --help"
        );
    }
    for variable in [
        "RUST_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "AWS_ENDPOINT_URL_SQS",
    ] {
        assert!(
            top.contains(variable),
            "{variable} missing from the top --help"
        );
    }
}

#[test]
fn the_token_value_never_appears_in_help() {
    let output = worker(
        &["run", "--help"],
        &[
            ("ORDER_GRPC_AUTH_TOKEN", "a-very-secret-token-value"),
            (
                "ORDER_PROVIDER_PAYMENT_TOKEN",
                "a-very-secret-payment-token",
            ),
            (
                "ORDER_PROVIDER_PAYMENT_CLIENT_CERT",
                "a-very-secret-private-key",
            ),
        ],
    );
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(!help.contains("a-very-secret"), "{help}");
}

#[test]
fn bad_settings_fail_on_one_line_with_exit_code_2() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("WORKER_MODE", "lambda")],
            "the only worker mode is sqs-consumer",
        ),
        (&[QUEUES[1]], "ORDERS_QUEUE_URL"),
        (&[QUEUES[0]], "ORDERS_DLQ_URL"),
        (
            &[QUEUES[0], QUEUES[1], ("ORDER_WORKER_CONCURRENCY", "0")],
            "concurrency",
        ),
        (
            &[QUEUES[0], QUEUES[1], ("ORDER_GRPC_AUTH_TOKEN", "short")],
            "16-512",
        ),
        (
            &[QUEUES[0], QUEUES[1], ("ORDER_WORKER_SIM_DECLINE_RATE", "2")],
            "from 0 to 1",
        ),
        (
            &[QUEUES[0], QUEUES[1], ("ORDER_WORKER_PROVIDERS", "http")],
            "needs ORDER_PROVIDER_INVENTORY_URL",
        ),
        (
            &[
                QUEUES[0],
                QUEUES[1],
                ("ORDER_PROVIDER_PAYMENT_URL", "http://payments"),
                ("ORDER_PROVIDER_PAYMENT_TOKEN", "short secret"),
            ],
            "ORDER_PROVIDER_PAYMENT_TOKEN must be",
        ),
        // Set but empty (a secret created and never filled): refused, never taken for
        // "no token" (every call would be answered 401).
        (
            &[
                QUEUES[0],
                QUEUES[1],
                ("ORDER_WORKER_PROVIDERS", "http"),
                ("ORDER_PROVIDER_INVENTORY_URL", "http://inventory"),
                ("ORDER_PROVIDER_PAYMENT_URL", "https://payments"),
                ("ORDER_PROVIDER_SHIPPING_URL", "http://shipping"),
                ("ORDER_PROVIDER_PAYMENT_TOKEN", ""),
            ],
            "ORDER_PROVIDER_PAYMENT_TOKEN is set but empty",
        ),
        (
            &[
                QUEUES[0],
                QUEUES[1],
                ("ORDER_PROVIDER_PAYMENT_URL", "https://payments"),
                ("ORDER_PROVIDER_PAYMENT_CLIENT_CERT", ""),
            ],
            "ORDER_PROVIDER_PAYMENT_CLIENT_CERT is set but empty",
        ),
        (
            &[
                QUEUES[0],
                QUEUES[1],
                ("ORDER_PROVIDER_SHIPPING_URL", "https://shipping"),
                ("ORDER_PROVIDER_SHIPPING_CA", " "),
            ],
            "ORDER_PROVIDER_SHIPPING_CA is set but empty",
        ),
        (
            &[
                QUEUES[0],
                QUEUES[1],
                ("ORDER_PROVIDER_SHIPPING_URL", "http:///shipping"),
            ],
            "ORDER_PROVIDER_SHIPPING_URL must start with http:// or https:// and a host",
        ),
        (
            &[
                QUEUES[0],
                QUEUES[1],
                ("ORDER_WORKER_PROVIDER_TIMEOUT_MS", "600000"),
            ],
            "provider-timeout-ms <PROVIDER_TIMEOUT_MS>': 600000 is not in 1..=120000",
        ),
    ];
    for (env, expected) in cases {
        let output = worker(&[], env);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "{env:?}: {stderr}");
        assert!(stderr.starts_with("order-worker: error: "), "{stderr}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
        assert!(
            !stderr.contains("short\""),
            "the token is not echoed: {stderr}"
        );
    }
}

#[test]
fn healthcheck_fails_when_nothing_answers() {
    let port = order_testkit::net::free_port().expect("a free port");
    let url = format!("http://127.0.0.1:{port}/readyz");
    let output = worker(&["healthcheck", "--url", &url], &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let output = worker(
        &["healthcheck"],
        &[("ORDER_ADMIN_ADDR", &format!("127.0.0.1:{port}"))],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("unhealthy"));
}

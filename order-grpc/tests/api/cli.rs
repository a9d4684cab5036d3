//! The binary's command line: `--help` without a subcommand lists every setting of `serve`
//! (the default) with its environment variable, and what else is read from the environment;
//! a missing setting is named on one line, exit code 2.

use std::process::{Command, Output};

fn grpc(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_order-grpc"));
    command.env_clear().args(args);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

/// The `[env: NAME=...]` variables a help text names.
fn variables(help: &str) -> Vec<String> {
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_without_a_subcommand_lists_every_setting_of_serve_and_the_environment_read() {
    let serve = grpc(&["serve", "--help"], &[]);
    assert!(serve.status.success(), "{serve:?}");
    let serve = String::from_utf8(serve.stdout).unwrap();
    let settings = variables(&serve);
    assert!(
        settings.len() >= 20 && settings.iter().any(|v| v == "DATABASE_URL"),
        "{settings:?}"
    );
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let top = grpc(args, &[]);
        assert!(top.status.success(), "{args:?}: {top:?}");
        let top = String::from_utf8(top.stdout).unwrap();
        for subcommand in ["serve", "migrate", "healthcheck"] {
            assert!(top.contains(subcommand), "{args:?}: {subcommand}\n{top}");
        }
        for variable in settings.iter().map(String::as_str).chain([
            "RUST_LOG",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_SERVICE_NAME",
        ]) {
            assert!(
                top.contains(variable),
                "{args:?}: {variable} missing\n{top}"
            );
        }
    }
    assert!(serve.contains("RUST_LOG"), "{serve}");
}

/// Arguments, environment, and the words the error line must hold.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);

#[test]
fn a_missing_setting_is_named_on_one_line_with_its_environment_variable() {
    let cases: &[Case] = &[
        (&[], &[], &["--database-url", "DATABASE_URL"]),
        (&["serve"], &[], &["--database-url", "DATABASE_URL"]),
        (&["migrate"], &[], &["DATABASE_URL"]),
        (
            &[],
            &[
                ("DATABASE_URL", "postgres://u@127.0.0.1:1/db"),
                ("ORDER_GRPC_TLS_CERT_FILE", "/nonexistent/cert.pem"),
            ],
            &["--tls-key-file", "ORDER_GRPC_TLS_KEY_FILE"],
        ),
    ];
    for (args, env, expected) in cases {
        let output = grpc(args, env);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?} {env:?}: {output:?}"
        );
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("order-grpc: error: missing setting: "),
            "{stderr}"
        );
        for word in *expected {
            assert!(
                stderr.contains(word),
                "{args:?} {env:?}: {word} in {stderr}"
            );
        }
    }
}

#[test]
fn a_port_already_taken_is_named_on_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let free = || {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let (grpc_free, admin_free) = (free(), free());
    for (grpc_addr, admin_addr, port) in [
        (taken.as_str(), admin_free.as_str(), "gRPC port"),
        (grpc_free.as_str(), taken.as_str(), "admin port"),
    ] {
        let output = grpc(
            &[],
            &[
                ("DATABASE_URL", "postgres://u@127.0.0.1:1/db"),
                ("ORDER_GRPC_ADDR", grpc_addr),
                ("ORDER_ADMIN_ADDR", admin_addr),
                ("LOG_FORMAT", "json"),
                ("RUST_LOG", "off"),
            ],
        );
        assert_eq!(output.status.code(), Some(2), "{port}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "order-grpc: error: cannot listen on {taken} ({port}): "
            )),
            "{stderr}"
        );
    }
}

/// A dry run asked for by the environment (a variable left on a task definition, say) says so
/// before anything else; one turned off there is a real run.
#[test]
fn a_dry_run_from_the_environment_is_announced() {
    let unreachable = ("DATABASE_URL", "postgres://u@127.0.0.1:1/db");
    let quiet = ("RUST_LOG", "off");
    let output = grpc(
        &["migrate"],
        &[unreachable, quiet, ("ORDER_MIGRATE_DRY_RUN", "yes")],
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with(
            "order-grpc: note: ORDER_MIGRATE_DRY_RUN set in the environment: a dry run, nothing is applied\n"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("migrate --dry-run failed"), "{stderr}");
    for off in ["no", "false", "0"] {
        let output = grpc(
            &["migrate"],
            &[unreachable, quiet, ("ORDER_MIGRATE_DRY_RUN", off)],
        );
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!stderr.contains("note:"), "{off}: {stderr}");
        assert!(stderr.contains("migration failed"), "{off}: {stderr}");
    }
    // The command line wins over the environment.
    let output = grpc(
        &["migrate", "--dry-run=false"],
        &[unreachable, quiet, ("ORDER_MIGRATE_DRY_RUN", "yes")],
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("migration failed"), "{stderr}");
}

/// A caller token variable that holds nothing stops start-up, naming it, before the database
/// is reached: a secret left empty never serves calls with one caller fewer or none.
#[test]
fn an_empty_caller_token_variable_is_named_on_one_line() {
    for value in ["", "  \n"] {
        let output = grpc(
            &[],
            &[
                ("DATABASE_URL", "postgres://u@127.0.0.1:1/db"),
                ("ORDER_GRPC_AUTH_TOKEN_CHECKOUT", value),
                ("RUST_LOG", "off"),
            ],
        );
        assert_eq!(output.status.code(), Some(2), "{value:?}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("order-grpc: error: ORDER_GRPC_AUTH_TOKEN_CHECKOUT: ")
                && stderr.contains("empty"),
            "{stderr}"
        );
    }
}

/// A caller token variable whose name is not `A-Z 0-9 _` after the prefix (a lower-case
/// `ORDER_GRPC_AUTH_TOKEN_checkout`) stops start-up on one line naming it, as docs/security.md
/// says: it was accepted as the caller `checkout`.
#[test]
fn a_caller_token_variable_with_a_lower_case_name_is_refused_on_one_line() {
    for var in [
        "ORDER_GRPC_AUTH_TOKEN_checkout",
        "ORDER_GRPC_AUTH_TOKEN_Checkout",
    ] {
        let output = grpc_within(
            &[
                ("DATABASE_URL", "postgres://u@127.0.0.1:1/db"),
                ("ORDER_GRPC_ADDR", "127.0.0.1:0"),
                ("ORDER_ADMIN_ADDR", "127.0.0.1:0"),
                (var, "aaaaaaaaaaaaaaaaaaaa"),
                ("RUST_LOG", "off"),
            ],
            std::time::Duration::from_secs(20),
        );
        assert_eq!(output.status.code(), Some(2), "{var}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("order-grpc: error: {var}: "))
                && stderr.contains("A-Z 0-9 _"),
            "{stderr}"
        );
        assert!(!stderr.contains("aaaaaaaaaa"), "quoted: {stderr}");
    }
}

/// `order-grpc` (serve) with `env`; killed if it has not exited within `limit` (a binary that
/// started serving instead of refusing its settings).
fn grpc_within(env: &[(&str, &str)], limit: std::time::Duration) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_order-grpc"));
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let mut child = command
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}: {output:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

//! The domain crate must stay pure: no async runtime, database, gRPC, HTTP or AWS crate may
//! enter its dependency graph (normal dependencies, transitively).

use std::collections::BTreeSet;
use std::process::Command;

const FORBIDDEN_PREFIXES: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "mio",
    "futures",
    "postgres",
    "tokio-postgres",
    "deadpool",
    "sqlx",
    "diesel",
    "refinery",
    "tonic",
    "prost",
    "hyper",
    "h2",
    "http",
    "reqwest",
    "axum",
    "tower",
    "aws-",
    "socket2",
    "rustls",
    "openssl",
    "opentelemetry",
    "tracing-subscriber",
    "getrandom",
    "rand",
    "chrono",
    "time",
];

#[test]
fn order_domain_depends_on_no_io_or_infrastructure_crate() {
    // `cargo tree -p` resolves features for this crate alone, so what other workspace members
    // switch on (e.g. uuid's random generator for the tests) does not count against it.
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "order-domain",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let crates: BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(
        crates.contains("serde_json"),
        "the tree lists the known dependencies: {crates:?}"
    );
    let offending: Vec<_> = crates
        .iter()
        .filter(|name| {
            FORBIDDEN_PREFIXES.iter().any(|p| {
                name.as_str() == *p
                    || (p.ends_with('-') && name.starts_with(p))
                    || name.starts_with(&format!("{p}-"))
            })
        })
        .collect();
    assert!(offending.is_empty(), "order-domain pulls in {offending:?}");
}

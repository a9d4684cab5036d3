//! The domain crate must stay pure: no async runtime, database, gRPC, HTTP or AWS crate may
//! enter its dependency graph (normal dependencies, transitively).

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

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
    // Only the host's dependency graph: crates that exist for other targets (wasm) are not
    // part of what this crate links here.
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host");
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host,
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();

    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = names
        .iter()
        .find(|(_, name)| **name == "order-domain")
        .map(|(id, _)| *id)
        .unwrap();

    // Walk normal (non-dev, non-build) dependency edges from order-domain.
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let dep_id = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(names[dep_id]) {
                stack.push(dep_id);
            }
        }
    }
    assert!(
        seen.contains("serde_json"),
        "the walk found the known dependencies: {seen:?}"
    );
    let offending: Vec<_> = seen
        .iter()
        .filter(|name| {
            FORBIDDEN_PREFIXES.iter().any(|p| {
                **name == *p
                    || (p.ends_with('-') && name.starts_with(p))
                    || name.starts_with(&format!("{p}-"))
            })
        })
        .collect();
    assert!(offending.is_empty(), "order-domain pulls in {offending:?}");
}

//! An independent client: Python grpcio, using only reflection (no generated code), lists the
//! services, checks health, places an order and reads it back through the read model.

use std::path::PathBuf;
use std::process::Command;

use crate::support::*;

fn python() -> PathBuf {
    let venv = order_testkit::settings::workspace_root().join(".dev/venv-grpc/bin/python");
    assert!(
        venv.exists(),
        "the Python gRPC client needs {}: run `scripts/dev python-client` (scripts/check does)",
        venv.display()
    );
    venv
}

#[tokio::test]
async fn a_python_grpcio_client_works_through_reflection() {
    let stack = start().await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/reflection_client.py");
    let python = python();
    let address = stack.grpc_addr.to_string();
    let output =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).arg(address).output())
            .await
            .unwrap()
            .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python client failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("services: grpc.health.v1.Health"),
        "{stdout}"
    );
    assert!(stdout.contains("health: SERVING"), "{stdout}");
    assert!(
        stdout.contains("placed: version=1 status=ORDER_STATUS_PLACED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("read back: status=ORDER_STATUS_PLACED total=3000 EUR"),
        "{stdout}"
    );
    assert!(stdout.contains("bad request: INVALID_ARGUMENT"), "{stdout}");
    let count: i64 = stack
        .db
        .connect()
        .await
        .query_one("SELECT count(*) FROM orders.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

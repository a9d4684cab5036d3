//! The stub's control API: a plan it cannot carry out is refused, and the stub keeps serving.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use order_provider_stub::{Stub, StubOptions};

#[tokio::test]
async fn a_fault_plan_out_of_range_is_refused_and_the_stub_keeps_answering() {
    let stub = Stub::start("127.0.0.1:0".parse().unwrap(), StubOptions::default())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{}/_stub/faults/payment", stub.addr());
    for plan in [
        r#"{"outage_seconds":18446744073709551615}"#,
        r#"{"latency_ms":18446744073709551615}"#,
        r#"{"slow":{"count":1,"delay_ms":18446744073709551615}}"#,
    ] {
        let answer = client.put(&url).body(plan).send().await.unwrap();
        assert_eq!(answer.status(), 400, "{plan}");
        let body = answer.text().await.unwrap();
        assert!(body.contains("invalid_request"), "{plan}: {body}");
    }
    // Still serving, with no fault in force.
    let answer = client
        .put(&url)
        .body(r#"{"outage_seconds":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    stub.stop().await;
}

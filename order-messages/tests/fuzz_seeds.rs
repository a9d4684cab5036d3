//! The seeds of the `sqs_message` fuzz target (fuzz/seeds/sqs_message), replayed in the normal
//! test suite through the target's own check (fuzz/harness/sqs_message.rs): none panics,
//! `invalid-*` bodies are refused, every other one parses. An input that `scripts/fuzz` finds
//! crashing becomes a seed here, named for the result it must have once fixed.

// What the harness returns is printed when a seed fails, not otherwise read.
#[allow(dead_code)]
#[path = "../../fuzz/harness/sqs_message.rs"]
mod harness;
#[path = "../../fuzz/harness/seeds.rs"]
mod seeds;

use harness::Outcome;

#[test]
fn every_sqs_message_seed_gives_its_documented_result() {
    for (name, data) in seeds::seeds("sqs_message") {
        match (harness::check(&data), seeds::expects_refusal(&name)) {
            (Outcome::Parsed(_), false) | (Outcome::Refused(_), true) => {}
            (outcome, refusal_expected) => panic!(
                "{name}: {outcome:?} (expected {})",
                if refusal_expected {
                    "a refusal"
                } else {
                    "a parsed envelope"
                }
            ),
        }
    }
}

/// A body that parses but writes back larger than the limit (each emoji's 4 bytes become a
/// 12-byte escape pair): the check must not demand that it parse again.
#[test]
fn a_body_near_the_limit_that_writes_back_larger_still_passes_the_check() {
    let sample = order_messages::CloudEvent::new(order_messages::EnvelopeInput {
        event_id: uuid::Uuid::from_u128(1),
        event_type: "OrderPlaced",
        order_id: uuid::Uuid::from_u128(2),
        recorded_at: std::time::SystemTime::UNIX_EPOCH,
        global_position: 1,
        stream_version: 1,
        schema_version: 1,
        correlation_id: None,
        traceparent: None,
        data: serde_json::json!({ "note": "\u{1F600}".repeat(60_000) }),
    });
    let raw = serde_json::to_string(&sample).unwrap();
    assert!(raw.len() <= order_messages::MAX_BODY_BYTES, "{}", raw.len());
    assert!(sample.to_body().len() > order_messages::MAX_BODY_BYTES);
    assert!(matches!(harness::check(raw.as_bytes()), Outcome::Parsed(_)));
}

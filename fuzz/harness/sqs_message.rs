//! What the `sqs_message` fuzz target checks, one input at a time. The target calls [`check`]
//! with whatever libFuzzer makes; `order-messages/tests/fuzz_seeds.rs` calls it with every file
//! of `fuzz/seeds/sqs_message`, so the seeds are regression tests of the normal test suite.
//!
//! An SQS message body as the worker receives it: the CloudEvents envelope parses or is
//! refused with a reason; never a panic, never an unbounded allocation. And any text an event
//! holds leaves the projector as a body SQS accepts and comes back unchanged.

use order_messages::{CloudEvent, EnvelopeError, EnvelopeInput, sqs_accepts};

/// What became of one input.
#[derive(Debug)]
pub enum Outcome {
    /// Not UTF-8: SQS carries text only.
    NotText,
    /// The envelope the body holds.
    Parsed(Box<CloudEvent>),
    /// A body refused with its reason.
    Refused(EnvelopeError),
}

/// An input is a message body. Panics when a property fails.
pub fn check(data: &[u8]) -> Outcome {
    let Ok(body) = std::str::from_utf8(data) else {
        return Outcome::NotText;
    };
    let outgoing = CloudEvent::new(EnvelopeInput {
        event_id: uuid::Uuid::from_u128(1),
        event_type: "OrderPlaced",
        order_id: uuid::Uuid::from_u128(2),
        recorded_at: std::time::SystemTime::UNIX_EPOCH,
        global_position: 1,
        stream_version: 1,
        schema_version: 1,
        correlation_id: None,
        traceparent: None,
        data: serde_json::json!({ "text": body, body: [body] }),
    });
    let sent = outgoing.to_body();
    assert!(
        sqs_accepts(&sent),
        "a body we send is one SQS accepts: {sent:?}"
    );
    if sent.len() <= order_messages::MAX_BODY_BYTES {
        assert_eq!(
            CloudEvent::parse(&sent).expect("our own body parses"),
            outgoing,
            "our own body parses back unchanged"
        );
    }
    match CloudEvent::parse(body) {
        Ok(event) => {
            // Writing escapes what SQS refuses (an emoji's 4 bytes become 12), so a body near
            // the limit may write back larger than it: only one that fits must parse again.
            let written = event.to_body();
            if written.len() <= order_messages::MAX_BODY_BYTES {
                let again = CloudEvent::parse(&written).expect("a parsed envelope re-parses");
                assert_eq!(again, event, "a parsed envelope re-parses unchanged");
            }
            Outcome::Parsed(Box::new(event))
        }
        Err(reason) => Outcome::Refused(reason),
    }
}

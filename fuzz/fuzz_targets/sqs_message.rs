//! An SQS message body as the worker receives it: the CloudEvents envelope parses or is
//! refused with a reason; never a panic, never an unbounded allocation. And any text an event
//! holds leaves the projector as a body SQS accepts and comes back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use order_messages::{CloudEvent, EnvelopeInput, sqs_accepts};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    let outgoing = CloudEvent::new(EnvelopeInput {
        event_id: uuid::Uuid::nil(),
        event_type: "OrderPlaced",
        order_id: uuid::Uuid::nil(),
        recorded_at: std::time::SystemTime::UNIX_EPOCH,
        global_position: 1,
        stream_version: 1,
        schema_version: 1,
        correlation_id: None,
        traceparent: None,
        data: serde_json::json!({ "text": body, body: [body] }),
    });
    let sent = outgoing.to_body();
    assert!(sqs_accepts(&sent), "{sent:?}");
    if sent.len() <= order_messages::MAX_BODY_BYTES {
        assert_eq!(CloudEvent::parse(&sent).expect("our own body parses"), outgoing);
    }
    if let Ok(event) = CloudEvent::parse(body) {
        let again = CloudEvent::parse(&event.to_body()).expect("a parsed envelope re-parses");
        assert_eq!(again, event);
    }
});

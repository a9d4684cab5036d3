//! What the `stored_event` fuzz target checks, one input at a time. The target calls
//! [`check`] with whatever libFuzzer makes; `order-domain/tests/fuzz_seeds.rs` calls it with
//! every file of `fuzz/seeds/stored_event`, so the seeds are regression tests of the normal
//! test suite.
//!
//! Decoding a stored event (any type name, any schema version, any JSON) and upcasting it
//! never panics; whatever decodes re-encodes and decodes to the same event.

use order_domain::{EventSchema, OrderEvent};

/// The type names the first byte of an input picks from (the last one is unknown).
pub const TYPES: &[&str] = &[
    "OrderPlaced",
    "InventoryReserved",
    "InventoryUnavailable",
    "PaymentAuthorized",
    "PaymentFailed",
    "OrderConfirmed",
    "FulfillmentStarted",
    "OrderShipped",
    "OrderDelivered",
    "OrderCompleted",
    "CancellationRequested",
    "InventoryReleased",
    "PaymentVoided",
    "PaymentRefunded",
    "OrderCancelled",
    "Unknown",
];

/// An input is one byte picking the type name, one byte the schema version (modulo 5), then
/// the JSON payload. The decoded event, or `None` when the input is refused (too short, not
/// JSON, or not a valid event of that type and version). Panics when a property fails.
pub fn check(data: &[u8]) -> Option<OrderEvent> {
    let [kind, version, rest @ ..] = data else {
        return None;
    };
    let event_type = TYPES[usize::from(*kind) % TYPES.len()];
    let payload = serde_json::from_slice::<serde_json::Value>(rest).ok()?;
    let event = OrderEvent::decode(event_type, u16::from(*version % 5), payload).ok()?;
    let encoded = event.encode().expect("a decoded event encodes");
    let again = OrderEvent::decode(event.event_type(), event.schema_version(), encoded);
    assert_eq!(
        again.as_ref(),
        Ok(&event),
        "a re-encoded event decodes the same"
    );
    Some(event)
}

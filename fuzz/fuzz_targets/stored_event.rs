//! Decoding a stored event (any type name, any schema version, any JSON) and upcasting it:
//! never a panic; whatever decodes re-encodes and decodes to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use order_domain::{EventSchema, OrderEvent};

const TYPES: &[&str] = &[
    "OrderPlaced", "InventoryReserved", "InventoryUnavailable", "PaymentAuthorized", "PaymentFailed",
    "OrderConfirmed", "FulfillmentStarted", "OrderShipped", "OrderDelivered", "OrderCompleted",
    "CancellationRequested", "InventoryReleased", "PaymentVoided", "PaymentRefunded", "OrderCancelled",
    "Unknown",
];

fuzz_target!(|data: &[u8]| {
    let [kind, version, rest @ ..] = data else { return };
    let event_type = TYPES[usize::from(*kind) % TYPES.len()];
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
    if let Ok(event) = OrderEvent::decode(event_type, u16::from(*version % 5), payload) {
        let encoded = event.encode().expect("a decoded event encodes");
        let again = OrderEvent::decode(event.event_type(), event.schema_version(), encoded);
        assert_eq!(again.as_ref(), Ok(&event));
    }
});

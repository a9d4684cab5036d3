//! The history of the order events' persisted shapes, one upcaster per change.
//!
//! | event | version | change |
//! |---|---|---|
//! | `OrderPlaced` | 1 -> 2 | `shipping_method` added; orders placed before it shipped `standard` |
//! | `OrderPlaced` | 2 -> 3 | `customer` renamed to `customer_id` |
//! | `PaymentAuthorized` | 1 -> 2 | flat `currency` + `amount_minor` became the `amount` Money object |
//! | `OrderShipped` | 1 -> 2 | `tracking` renamed to `tracking_number` |

use serde_json::{Value, json};

use crate::upcast::json::{object, rename};
use crate::upcast::{Upcaster, UpcasterChain};

pub(crate) static UPCASTERS: UpcasterChain = UpcasterChain::new(&[
    Upcaster {
        event_type: "OrderPlaced",
        from_version: 1,
        upcast: order_placed_v1_to_v2,
    },
    Upcaster {
        event_type: "OrderPlaced",
        from_version: 2,
        upcast: order_placed_v2_to_v3,
    },
    Upcaster {
        event_type: "PaymentAuthorized",
        from_version: 1,
        upcast: payment_authorized_v1_to_v2,
    },
    Upcaster {
        event_type: "OrderShipped",
        from_version: 1,
        upcast: order_shipped_v1_to_v2,
    },
]);

/// The upcaster chain of the order events (for tests and tooling).
pub fn upcasters() -> &'static UpcasterChain {
    &UPCASTERS
}

fn order_placed_v1_to_v2(payload: Value) -> Result<Value, String> {
    let mut map = object(payload)?;
    if map.contains_key("shipping_method") {
        return Err("version 1 has no shipping_method".to_owned());
    }
    map.insert("shipping_method".to_owned(), json!("standard"));
    Ok(Value::Object(map))
}

fn order_placed_v2_to_v3(payload: Value) -> Result<Value, String> {
    let mut map = object(payload)?;
    rename(&mut map, "customer", "customer_id")?;
    Ok(Value::Object(map))
}

fn payment_authorized_v1_to_v2(payload: Value) -> Result<Value, String> {
    let mut map = object(payload)?;
    let currency = map.remove("currency").ok_or("missing field \"currency\"")?;
    let amount_minor = map
        .remove("amount_minor")
        .ok_or("missing field \"amount_minor\"")?;
    map.insert(
        "amount".to_owned(),
        json!({ "currency": currency, "amount_minor": amount_minor }),
    );
    Ok(Value::Object(map))
}

fn order_shipped_v1_to_v2(payload: Value) -> Result<Value, String> {
    let mut map = object(payload)?;
    rename(&mut map, "tracking", "tracking_number")?;
    Ok(Value::Object(map))
}

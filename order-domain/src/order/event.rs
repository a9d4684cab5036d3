//! Events: what happened to an order, in the past tense, with their persisted schema.
//!
//! Each event is its own struct so that its JSON payload is exactly its fields; the type name
//! and schema version live next to the payload in the store. Changing a payload's shape means
//! bumping its version below and adding an upcaster from the previous one in
//! [`super::schema`], with a fixture of the old shape under `tests/fixtures/events/`.

use serde::{Deserialize, Serialize};

use super::command::{OrderLine, order_total};
use crate::error::ValidationError;
use crate::es::EventSchema;
use crate::money::Money;
use crate::upcast::{DecodeError, EncodeError};
use crate::values::{
    Address, Carrier, CustomerId, PaymentId, Reason, ReservationId, ShippingMethod, TrackingNumber,
};

/// The order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawOrderPlaced")]
pub struct OrderPlaced {
    /// Who ordered.
    pub customer_id: CustomerId,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
    /// The sum of the lines.
    pub total: Money,
    /// Where it ships.
    pub shipping_address: Address,
    /// How fast it ships.
    pub shipping_method: ShippingMethod,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrderPlaced {
    customer_id: CustomerId,
    lines: Vec<OrderLine>,
    total: Money,
    shipping_address: Address,
    shipping_method: ShippingMethod,
}

impl TryFrom<RawOrderPlaced> for OrderPlaced {
    type Error = String;
    fn try_from(raw: RawOrderPlaced) -> Result<Self, Self::Error> {
        let total = order_total(&raw.lines).map_err(|e: ValidationError| e.to_string())?;
        if total != raw.total {
            return Err(format!(
                "total {:?} is not the sum of the lines {:?}",
                raw.total, total
            ));
        }
        Ok(Self {
            customer_id: raw.customer_id,
            lines: raw.lines,
            total: raw.total,
            shipping_address: raw.shipping_address,
            shipping_method: raw.shipping_method,
        })
    }
}

/// Inventory was reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryReserved {
    /// The inventory system's reservation.
    pub reservation_id: ReservationId,
}

/// Inventory was unavailable (the order is cancelled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryUnavailable {
    /// Why.
    pub reason: Reason,
}

/// The payment was authorized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentAuthorized {
    /// The payment provider's id.
    pub payment_id: PaymentId,
    /// The authorized amount.
    pub amount: Money,
}

/// The payment failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentFailed {
    /// Why.
    pub reason: Reason,
}

/// The order is confirmed and the authorized amount captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderConfirmed {
    /// The amount captured.
    pub captured: Money,
}

/// Fulfilment started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FulfillmentStarted {}

/// The order was shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderShipped {
    /// Who carries it.
    pub carrier: Carrier,
    /// The carrier's tracking number.
    pub tracking_number: TrackingNumber,
}

/// The order was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderDelivered {}

/// The order was completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderCompleted {}

/// How the payment is compensated when an order is cancelled after authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentAction {
    /// Release an authorization that was never captured.
    Void,
    /// Return captured money.
    Refund,
}

/// A payment compensation owed by a cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentCompensation {
    /// Void or refund.
    pub action: PaymentAction,
    /// How much.
    pub amount: Money,
}

/// Cancellation was asked for after something was reserved or paid: the listed
/// compensations must happen before the order is cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancellationRequested {
    /// Why.
    pub reason: Reason,
    /// Whether reserved inventory must be released.
    pub release_inventory: bool,
    /// The payment compensation owed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentCompensation>,
}

/// The reserved inventory was released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryReleased {}

/// An authorization was voided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentVoided {
    /// How much.
    pub amount: Money,
}

/// Captured money was refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRefunded {
    /// How much.
    pub amount: Money,
}

/// The order was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderCancelled {
    /// Why.
    pub reason: Reason,
}

macro_rules! order_events {
    ($($name:ident => $version:literal),* $(,)?) => {
        /// Everything that can happen to an order.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum OrderEvent {
            $(#[doc = concat!("[`", stringify!($name), "`]")] $name($name),)*
        }

        impl OrderEvent {
            /// Every event type with the schema version this code writes.
            pub const CURRENT_VERSIONS: &'static [(&'static str, u16)] =
                &[$((stringify!($name), $version),)*];
        }

        $(
            impl From<$name> for OrderEvent {
                fn from(event: $name) -> Self {
                    Self::$name(event)
                }
            }
        )*

        impl EventSchema for OrderEvent {
            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$name(_) => stringify!($name),)*
                }
            }

            fn schema_version(&self) -> u16 {
                match self {
                    $(Self::$name(_) => $version,)*
                }
            }

            fn encode(&self) -> Result<serde_json::Value, EncodeError> {
                let encoded = match self {
                    $(Self::$name(event) => serde_json::to_value(event),)*
                };
                encoded.map_err(|e| EncodeError {
                    event_type: self.event_type(),
                    reason: e.to_string(),
                })
            }

            fn encode_json(&self) -> Result<String, EncodeError> {
                let encoded = match self {
                    $(Self::$name(event) => serde_json::to_string(event),)*
                };
                encoded.map_err(|e| EncodeError {
                    event_type: self.event_type(),
                    reason: e.to_string(),
                })
            }

            fn decode(
                event_type: &str,
                schema_version: u16,
                payload: serde_json::Value,
            ) -> Result<Self, DecodeError> {
                let payload_error = |e: serde_json::Error| DecodeError::Payload {
                    event_type: event_type.to_owned(),
                    reason: e.to_string(),
                };
                match event_type {
                    $(stringify!($name) => {
                        let payload = super::schema::UPCASTERS.upcast(
                            event_type,
                            schema_version,
                            $version,
                            payload,
                        )?;
                        // serde reads a struct from a JSON array too; a payload is an object.
                        if !payload.is_object() {
                            return Err(DecodeError::Payload {
                                event_type: event_type.to_owned(),
                                reason: "not a JSON object".to_owned(),
                            });
                        }
                        serde_json::from_value::<$name>(payload)
                            .map(Self::$name)
                            .map_err(payload_error)
                    })*
                    _ => Err(DecodeError::UnknownType {
                        event_type: event_type.to_owned(),
                    }),
                }
            }
        }
    };
}

order_events! {
    OrderPlaced => 3,
    InventoryReserved => 1,
    InventoryUnavailable => 1,
    PaymentAuthorized => 2,
    PaymentFailed => 1,
    OrderConfirmed => 1,
    FulfillmentStarted => 1,
    OrderShipped => 2,
    OrderDelivered => 1,
    OrderCompleted => 1,
    CancellationRequested => 1,
    InventoryReleased => 1,
    PaymentVoided => 1,
    PaymentRefunded => 1,
    OrderCancelled => 1,
}

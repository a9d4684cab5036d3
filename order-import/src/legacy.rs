//! The legacy export's records, as `docs/import.md` documents them.
//!
//! One [`LegacyOrder`] is one order of the legacy system with everything that happened to it:
//! its lines, its payment, its shipment, its refunds and its status history. In JSON Lines it
//! is one line; in CSV it is joined from six tables by `order_id`.

use std::cmp::Ordering;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// One legacy order with its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LegacyOrder {
    /// The legacy system's order id (1 to 200 bytes, no control characters).
    pub order_id: String,
    /// The legacy system's customer id (mapped to a UUID v5).
    pub customer_id: String,
    /// ISO-4217 currency of every amount of the order.
    pub currency: String,
    /// `standard`, `express` or `overnight`.
    pub shipping_method: String,
    /// Where it ships.
    pub ship_to: LegacyAddress,
    /// What was ordered.
    pub lines: Vec<LegacyLine>,
    /// The payment (at most one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payments: Vec<LegacyPayment>,
    /// The shipment (at most one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shipments: Vec<LegacyShipment>,
    /// Partial refunds of captured money, each at its time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<LegacyRefund>,
    /// Every status the order went through, oldest first, starting with `placed`.
    pub status_history: Vec<LegacyStatus>,
}

/// A shipping address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LegacyAddress {
    /// Recipient name.
    pub recipient: String,
    /// First address line.
    pub line1: String,
    /// Second address line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// State or region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: String,
    /// ISO-3166 alpha-2 country.
    pub country: String,
}

/// An order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LegacyLine {
    /// The article.
    pub sku: String,
    /// How many.
    pub quantity: i64,
    /// The price of one, in minor units of the order's currency.
    pub unit_price_minor: i64,
}

/// The payment: authorized for the order's total, captured when the order was paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LegacyPayment {
    /// The payment provider's reference.
    pub payment_id: String,
    /// Its currency (the order's).
    pub currency: String,
    /// The amount, in minor units.
    pub amount_minor: i64,
}

/// The shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LegacyShipment {
    /// The carrier.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
}

/// A refund of captured money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LegacyRefund {
    /// Its currency (the order's).
    pub currency: String,
    /// The amount, in minor units.
    pub amount_minor: i64,
    /// When (RFC 3339, UTC).
    pub refunded_at: String,
}

/// One entry of the status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LegacyStatus {
    /// The legacy status (see [`crate::tell::LEGACY_STATUSES`]).
    pub status: String,
    /// When the order entered it (RFC 3339, UTC).
    pub at: String,
    /// Why, for `cancelled`, `payment_failed` and `out_of_stock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A record and every object in it are JSON objects with named fields (docs/import.md): serde's
/// derived decoding would also take a JSON array of the values in field order, and import it
/// as an order, so each legacy type is decoded through [`ObjectOnly`], which takes a map only.
/// (`#[serde(remote = "Self")]` makes the derived code inherent functions, called here.)
macro_rules! objects_only {
    ($($type:ident: $what:literal),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_map(ObjectOnly::<Self>(std::marker::PhantomData))
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                $type::serialize(self, serializer)
            }
        }

        impl Derived for $type {
            const WHAT: &'static str = $what;

            fn derived<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $type::deserialize(deserializer)
            }
        }
    )*};
}

objects_only!(
    LegacyOrder: "an order record",
    LegacyAddress: "an address",
    LegacyLine: "an order line",
    LegacyPayment: "a payment",
    LegacyShipment: "a shipment",
    LegacyRefund: "a refund",
    LegacyStatus: "a status entry",
);

/// A legacy type's derived decoding (which takes a map or a sequence) and what it is called.
trait Derived: Sized {
    /// What a value of it is, for a reason (`an address`).
    const WHAT: &'static str;
    /// serde's derived decoding.
    fn derived<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
}

/// Takes a JSON object only, decoded in place by the derived code (so an error inside it names
/// its path); anything else is refused: "invalid type: sequence, expected an address: a JSON
/// object with named fields".
struct ObjectOnly<T>(std::marker::PhantomData<T>);

impl<'de, T: Derived> Visitor<'de> for ObjectOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: a JSON object with named fields", T::WHAT)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::derived(de::value::MapAccessDeserializer::new(map))
    }
}

/// How the export orders its orders: every file sorted by `order_id` ascending, either byte
/// by byte (`LC_ALL=C sort`, SQL `ORDER BY order_id COLLATE "C"`) or, when every id is a
/// decimal integer, numerically (`ORDER BY order_id` of an integer column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IdOrder {
    /// Byte order of the UTF-8 text.
    #[default]
    Text,
    /// Numeric order; every id must be a decimal integer without leading zeros.
    Numeric,
}

impl IdOrder {
    /// Compare two ids; `Err` names an id that is not valid in this order.
    pub fn compare(self, a: &str, b: &str) -> Result<Ordering, String> {
        match self {
            Self::Text => Ok(a.as_bytes().cmp(b.as_bytes())),
            Self::Numeric => {
                for id in [a, b] {
                    Self::check_numeric(id)?;
                }
                Ok(a.len().cmp(&b.len()).then_with(|| a.cmp(b)))
            }
        }
    }

    /// Check one id against this order's rules.
    pub fn check(self, id: &str) -> Result<(), String> {
        match self {
            Self::Text => Ok(()),
            Self::Numeric => Self::check_numeric(id),
        }
    }

    fn check_numeric(id: &str) -> Result<(), String> {
        let digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
        if !digits || (id.len() > 1 && id.starts_with('0')) {
            return Err(format!(
                "order id {id:?} is not a decimal integer without leading zeros (--id-order numeric)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_order_is_by_value() {
        let order = IdOrder::Numeric;
        assert_eq!(order.compare("9", "10"), Ok(Ordering::Less));
        assert_eq!(order.compare("10", "10"), Ok(Ordering::Equal));
        assert_eq!(order.compare("11", "10"), Ok(Ordering::Greater));
        assert!(order.compare("010", "10").is_err());
        assert!(order.compare("1a", "10").is_err());
        assert_eq!(IdOrder::Text.compare("9", "10"), Ok(Ordering::Greater));
    }
}

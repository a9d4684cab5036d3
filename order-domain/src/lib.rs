//! The order domain: pure decisions over an event-sourced Order aggregate.
//!
//! This crate does no I/O, reads no clock, draws no random numbers and knows nothing of
//! PostgreSQL, protobuf, SQS or async runtimes. It fails only with domain errors: a
//! [`ValidationError`] for malformed input, an [`order::OrderError`] for a command the order's
//! state refuses, a [`upcast::DecodeError`] for a stored payload that does not fit its schema.
//!
//! An aggregate decides and evolves; the store persists what it decided:
//!
//! ```
//! use order_domain::order::{LineInput, PlaceOrder, PlaceOrderInput};
//! use order_domain::values::{AddressInput, ShippingMethod};
//! use order_domain::{Aggregate, EventSchema, Order, OrderCommand, OrderError, Status};
//!
//! let placement = PlaceOrder::parse(&PlaceOrderInput {
//!     customer_id: "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001",
//!     lines: vec![LineInput { sku: "SKU-1", quantity: 2, currency: "EUR", unit_price_minor: 1250 }],
//!     shipping_address: Some(AddressInput {
//!         recipient: "Ada", line1: "1 Main St", city: "Berlin", postal_code: "10115",
//!         country: "DE", ..AddressInput::default()
//!     }),
//!     shipping_method: Some(ShippingMethod::Standard),
//! })?;
//! let mut order = Order::default();
//! let events = order.decide(&OrderCommand::PlaceOrder(placement)).unwrap();
//! assert_eq!(events[0].event_type(), "OrderPlaced");
//! events.iter().for_each(|e| order.evolve(e));
//! assert_eq!(order.status(), Some(Status::Placed));
//! // Shipping before payment is refused, with a typed error and no event.
//! assert!(matches!(
//!     order.decide(&OrderCommand::ship_order("DHL", "T1")?),
//!     Err(OrderError::InvalidTransition { .. })
//! ));
//! # Ok::<(), order_domain::ValidationError>(())
//! ```

#![deny(missing_docs)]

pub mod error;
pub mod es;
pub mod event_id;
pub mod money;
pub mod order;
pub mod testkit;
pub mod upcast;
pub mod values;

pub use error::{FieldExt, ValidationError, Violation};
pub use es::{Aggregate, EventEnvelope, EventSchema, Metadata};
pub use money::{Currency, MAX_AMOUNT_MINOR, Money};
pub use order::{Order, OrderCommand, OrderError, OrderEvent, Status};

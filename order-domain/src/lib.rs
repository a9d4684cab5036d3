//! The order domain: pure decisions over an event-sourced Order aggregate.
//!
//! This crate does no I/O, reads no clock, draws no random numbers and knows nothing of
//! PostgreSQL, protobuf, SQS or async runtimes. It fails only with domain errors: a
//! [`ValidationError`] for malformed input, an [`order::OrderError`] for a command the order's
//! state refuses, a [`upcast::DecodeError`] for a stored payload that does not fit its schema.

#![deny(missing_docs)]

pub mod error;
pub mod es;
pub mod money;
pub mod order;
pub mod testkit;
pub mod upcast;
pub mod values;

pub use error::{FieldExt, ValidationError, Violation};
pub use es::{Aggregate, EventEnvelope, EventSchema, Metadata};
pub use money::{Currency, MAX_AMOUNT_MINOR, Money};
pub use order::{Order, OrderCommand, OrderError, OrderEvent, Status};

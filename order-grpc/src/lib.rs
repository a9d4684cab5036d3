//! order-grpc: the gRPC front service of the order ledger.
//!
//! Requests pass the [`gateway`] (correlation id, trace context, bearer tokens, concurrency
//! limit), are converted to domain commands in [`convert`] (`TryFrom`, field violations), run
//! through the store's command handler ([`commands`]) or read the log ([`queries`]), and
//! errors become gRPC statuses in one place ([`error`]). [`startup::App`] wires it together.
//!
//! This is the only crate that knows both the domain and protobuf.

pub mod cli;

pub mod alb_health;
pub mod commands;
pub mod config;
pub mod convert;
pub mod error;
pub mod gateway;
pub mod health;
pub mod one_message;
pub mod queries;
pub mod read_model;
pub mod scopes;
pub mod serve;
pub mod startup;

pub use config::ServeArgs;
pub use startup::App;

//! Plumbing shared by `order-grpc`, `order-projector` and `order-worker`: logging, the admin
//! HTTP server (`/healthz`, `/readyz`, `/metrics`), readiness, signals, the `healthcheck`
//! probe, and configuration errors reported on one line.
//!
//! Nothing here knows about orders, the database or SQS.

pub mod admin;
pub mod cli;
pub mod probe;
pub mod shutdown;
#[cfg(feature = "sqs")]
pub mod sqs;
pub mod telemetry;
pub mod trace;

pub use admin::{AdminServer, Readiness};

//! Plumbing shared by `order-grpc`, `order-projector` and `order-worker`: logging, the admin
//! HTTP server (`/healthz`, `/readyz`, `/metrics`), readiness, signals, the `healthcheck`
//! probe, and configuration errors reported on one line.
//!
//! Nothing here knows about orders, the database or SQS.
//!
//! Every binary that links this crate allocates with mimalloc: the command path allocates
//! and frees many small buffers per request (protobuf, HTTP/2 headers, JSON, SQL parameters),
//! where glibc's allocator measured about a tenth of the service's CPU.

#![deny(missing_docs)]

pub mod admin;
pub mod cli;
pub mod probe;
pub mod shutdown;
#[cfg(feature = "sqs")]
pub mod sqs;
pub mod telemetry;
pub mod trace;

pub use admin::{AdminServer, Readiness};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

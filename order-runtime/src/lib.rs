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

/// An error's message followed by each cause it wraps that the message does not already say
/// (`error connecting to server: Connection refused (os error 111)`): some libraries' own
/// messages name no cause.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

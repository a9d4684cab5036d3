//! The services together: order-grpc and order-projector in process, a real client.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod hostile;
mod python_client;
mod read_your_writes;
mod replica;
mod support;

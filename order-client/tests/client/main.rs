//! order-client against the real order-grpc (in process) on a fresh PostgreSQL database.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod queries;
mod retries;
mod stream;
mod support;
mod transport;

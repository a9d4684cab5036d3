//! order-projector against a real PostgreSQL and the SQS emulator.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod crash;
mod leases;
mod long_steps;
mod read_model;
mod replay;
mod sink_fencing;
mod sinks;
mod sqs;
mod support;
mod swap_lock;
mod visibility;

//! The worker with the services it drives: order-grpc and order-projector in process on a
//! fresh database and fresh queues, the worker in process or as its real binary.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod dead_letters;
mod last_receive;
mod processes;
mod redelivery;
mod restore_effects;
mod saga;
mod support;
mod unrecorded;

//! The example projections and the second aggregate against a real PostgreSQL: catch-up,
//! lease failover, replay with swap, a rebuild after a version bump, status, and kill -9 of
//! the example's own projector binary during catch-up and during replay.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod crash;
mod sales;
mod store_credit;
mod support;

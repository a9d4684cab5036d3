//! Event store tests against a real PostgreSQL, a fresh database per test.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod append;
mod bad_input;
mod categories;
mod concurrency;
mod errors;
mod failover;
mod group_commit;
mod handler;
mod idempotency;
mod import;
mod migrations;
mod panics;
mod races;
mod reaching;
mod roles;
mod standby;
mod subscription;
mod support;

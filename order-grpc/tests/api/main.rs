//! order-grpc, end to end: the real server on port 0 against a fresh database, driven by a
//! real tonic client.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod alb_health;
mod auth;
mod bad_input;
mod cli;
mod commands;
mod fuzz_seeds;
mod helpers;
mod lifecycle;
mod limits;
mod migrate_dry_run;
mod permissions;
mod queries;
mod races;
mod read_model;
mod read_only;
mod tls;

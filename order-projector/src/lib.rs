//! order-projector: follows the gap-safe log into read tables and SQS.
//!
//! Each sink is a [`subscription::Subscription`] with its own checkpoint and lease; a step
//! reads a page after the checkpoint, applies it, and advances the checkpoint in a write
//! fenced by the lease token. [`read_model`] keeps `order_summaries` and `customer_totals`
//! idempotently; [`sqs`] publishes CloudEvents in per-order order; [`replay`] rebuilds the
//! read model into shadow tables and swaps them in; [`republish`] re-sends a range;
//! [`status`] shows checkpoints, lag and owners.

pub mod cli;

pub mod config;
pub mod read_model;
pub mod replay;
pub mod republish;
pub mod sqs;
pub mod startup;
pub mod status;
pub mod subscription;

//! order-projector: a library for following the order ledger's event log into projections
//! (read tables in the database) and sinks (side effects outside it), and the
//! `order-projector` binary built on it.
//!
//! A team adds its own projection or sink by implementing one trait, and gets catch-up from
//! the start of the log, leases (run several instances: one owns each subscription, the
//! others take over when it dies), fenced checkpoints, backoff, metrics, tracing spans, a
//! `status` line, replay into shadow tables with an atomic swap, and a rebuild when the
//! projection's version changes:
//!
//! - [`Projection`]: a name, a version, the DDL of its [`Table`]s and
//!   [`apply`](Projection::apply)`(page, transaction, tables)`. Each page is applied in one
//!   transaction with the checkpoint, fenced by the lease. [`StreamVersions`] makes any
//!   projection idempotent; [`BulkFold`] is an optional faster path for rebuilds.
//! - [`Sink`]: [`deliver`](Sink::deliver)`(page)`, at least once; the checkpoint moves only
//!   after every event was acknowledged, failed events are retried alone, each with a stable
//!   deduplication id ([`Envelope::dedup_id`]).
//! - [`Projector::builder`]`(store).projection(a).sink(b).run(shutdown)` runs any set of
//!   them; [`cli::Service`] makes a whole binary of them (`run`, `replay`, `status`,
//!   `healthcheck`); [`replay::replay`] rebuilds one.
//!
//! Subscribers follow the log in its gap-safe order (no event is ever skipped, even one whose
//! transaction commits late) and only the [`Categories`] (aggregate types) they handle. An
//! event a subscriber cannot decode or apply stops it, visibly; it is never skipped.
//!
//! The two built-in subscriptions are the first users of this API, with no private path:
//! [`ReadModel`] (`order_summaries`, `customer_totals`) and [`SqsPublisher`] (CloudEvents on
//! a FIFO queue). See `docs/library.md` for a guide from an empty crate to a running service.

#![deny(missing_docs)]

pub mod cli;
pub mod config;
mod guard;
pub mod projection;
mod projector;
pub mod read_model;
pub mod replay;
pub mod republish;
pub mod service;
pub mod sink;
pub mod sqs;
pub mod startup;
pub mod status;
pub mod subscription;
mod tables;

pub use guard::StreamVersions;
pub use projection::{
    ApplyError, BulkFold, Categories, Client, Decode, Envelope, Page, Projection, Table, Tables,
    Transaction,
};
pub use projector::{BuildError, Projector, ProjectorBuilder, Running};
pub use read_model::ReadModel;
pub use sink::{Failure, Sink, Undelivered};
pub use sqs::SqsPublisher;
pub use subscription::{Prepared, RunSettings, Step, StepError, Subscription};

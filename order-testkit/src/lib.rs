//! Test support for the order ledger: the local PostgreSQL and SQS emulator that
//! `scripts/dev up` starts, a fresh database per test, fresh queues per test.
//!
//! Settings come from the environment or, when a variable is absent, from `.dev/env` (written
//! by `scripts/dev up`). A test that needs a service which is not running fails with a message
//! naming the command that starts it; nothing is skipped silently.

#![deny(missing_docs)]

pub mod net;
pub mod pg;
pub mod process;
pub mod replication;
pub mod settings;
pub mod sqs;

pub use settings::settings;

/// The command that starts everything the tests need.
pub const START_COMMAND: &str = "scripts/dev up";

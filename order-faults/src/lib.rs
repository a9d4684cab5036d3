//! Fault injection for the order ledger: the real services (`order-grpc`, `order-projector`,
//! `order-worker`) as child processes on a PostgreSQL cluster and an SQS emulator of their own
//! ([`stack`]), a steady load of orders retried with the same command ids ([`load`]), faults
//! ([`scenarios`]), and an audit of every acknowledged command ([`audit`]): nothing lost,
//! nothing applied twice, no event skipped, every order settled.
//!
//! The `order-faults` binary runs the scenarios many times and prints the figures
//! (`scripts/faults`); order-e2e's tests run each once. The `order-restore-drill` binary
//! rehearses a point-in-time restore of the log end to end ([`drill`], `scripts/restore-drill`).

pub mod audit;
pub mod drill;
pub mod load;
pub mod scenarios;
pub mod stack;

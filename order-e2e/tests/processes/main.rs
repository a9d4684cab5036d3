//! The real binaries as child processes, on a PostgreSQL cluster and an SQS emulator of their
//! own (order-faults' stack): the whole saga at volume, and every fault scenario once (the
//! bounded form of `scripts/faults`).

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod client;
mod faults;
mod import;
mod restore_drill;
mod saga;
mod telemetry;

use std::path::PathBuf;

use order_faults::stack::Binaries;

/// The services, linked into this crate's own binaries (built with exactly this code).
pub fn binaries() -> Binaries {
    Binaries {
        grpc: PathBuf::from(env!("CARGO_BIN_EXE_e2e-order-grpc")),
        projector: PathBuf::from(env!("CARGO_BIN_EXE_e2e-order-projector")),
        worker: PathBuf::from(env!("CARGO_BIN_EXE_e2e-order-worker")),
        sales_projector: PathBuf::from(env!("CARGO_BIN_EXE_e2e-sales-projector")),
    }
}

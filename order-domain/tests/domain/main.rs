//! Domain tests: one binary, one module per concern.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod bad_input;
mod properties;
mod support;
mod transitions;
mod upcasting;
mod without_infrastructure;

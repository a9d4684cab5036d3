//! End-to-end tests of the order ledger live in `tests/`; this crate has no code of its own.

//! Decoding a stored event (any type name, any schema version, any JSON) and upcasting it:
//! never a panic; whatever decodes re-encodes and decodes to the same event.
//!
//! The check itself is fuzz/harness/stored_event.rs; the normal test suite runs it on every seed
//! (fuzz/seeds/stored_event).
#![no_main]

use libfuzzer_sys::fuzz_target;

// What the harness returns is for the regression tests (fuzz/harness/seeds.rs).
#[allow(dead_code)]
#[path = "../harness/stored_event.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    let _ = harness::check(data);
});

//! Protobuf bytes to domain commands: any request decodes or is refused, and conversion either
//! yields a command or names the offending fields; never a panic.
//!
//! The check itself is fuzz/harness/proto_command.rs; the normal test suite runs it on every seed
//! (fuzz/seeds/proto_command).
#![no_main]

use libfuzzer_sys::fuzz_target;

// What the harness returns is for the regression tests (fuzz/harness/seeds.rs).
#[allow(dead_code)]
#[path = "../harness/proto_command.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    let _ = harness::check(data);
});

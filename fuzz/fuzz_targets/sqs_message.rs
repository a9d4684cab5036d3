//! An SQS message body as the worker receives it: the CloudEvents envelope parses or is
//! refused with a reason; never a panic, never an unbounded allocation. And any text an event
//! holds leaves the projector as a body SQS accepts and comes back unchanged.
//!
//! The check itself is fuzz/harness/sqs_message.rs; the normal test suite runs it on every seed
//! (fuzz/seeds/sqs_message).
#![no_main]

use libfuzzer_sys::fuzz_target;

// What the harness returns is for the regression tests (fuzz/harness/seeds.rs).
#[allow(dead_code)]
#[path = "../harness/sqs_message.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    let _ = harness::check(data);
});

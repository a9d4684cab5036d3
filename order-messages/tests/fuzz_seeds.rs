//! The seeds of the `sqs_message` fuzz target (fuzz/seeds/sqs_message), replayed in the normal
//! test suite through the target's own check (fuzz/harness/sqs_message.rs): none panics,
//! `invalid-*` bodies are refused, every other one parses. An input that `scripts/fuzz` finds
//! crashing becomes a seed here, named for the result it must have once fixed.

// What the harness returns is printed when a seed fails, not otherwise read.
#[allow(dead_code)]
#[path = "../../fuzz/harness/sqs_message.rs"]
mod harness;
#[path = "../../fuzz/harness/seeds.rs"]
mod seeds;

use harness::Outcome;

#[test]
fn every_sqs_message_seed_gives_its_documented_result() {
    for (name, data) in seeds::seeds("sqs_message") {
        match (harness::check(&data), seeds::expects_refusal(&name)) {
            (Outcome::Parsed(_), false) | (Outcome::Refused(_), true) => {}
            (outcome, refusal_expected) => panic!(
                "{name}: {outcome:?} (expected {})",
                if refusal_expected {
                    "a refusal"
                } else {
                    "a parsed envelope"
                }
            ),
        }
    }
}

//! The seeds of the `proto_command` fuzz target (fuzz/seeds/proto_command) are real requests:
//! one byte choosing the request type (as the target reads it), then the encoded message.
//! Valid seeds convert into commands, `invalid-*` seeds are refused with named fields, so the
//! fuzzer starts from both sides of every check. Every file of the folder (these, and any
//! input `scripts/fuzz` found crashing, once fixed) is replayed here through the target's own
//! check (fuzz/harness/proto_command.rs), so the seeds are regression tests of the normal
//! test suite.
//!
//! Regenerate them with `WRITE_FUZZ_SEEDS=1 cargo nextest run -p order-grpc fuzz_seeds`.

// What the harness returns is printed when a seed fails, not otherwise read.
#[allow(dead_code)]
#[path = "../../../fuzz/harness/proto_command.rs"]
mod harness;
#[path = "../../../fuzz/harness/seeds.rs"]
mod seeds;

use harness::Outcome;
use order_proto::v1 as pb;
use prost::Message;

const ORDER: &str = "0190f5a2-7c3e-7d4a-9b1e-1234567890ab";
const COMMAND: &str = "0190f5a2-7c3e-7d4a-9b1e-0000000000c1";

fn money(amount_minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency: "EUR".to_owned(),
        amount_minor,
    })
}

fn place(lines: Vec<pb::OrderLine>, order_id: &str) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        command_id: COMMAND.to_owned(),
        order_id: order_id.to_owned(),
        expected_version: None,
        customer_id: "0190f5a2-7c3e-7d4a-9b1e-00000000c0de".to_owned(),
        lines,
        shipping_address: Some(pb::Address {
            recipient: "Ada Lovelace".to_owned(),
            line1: "12 St James's Square".to_owned(),
            line2: String::new(),
            city: "London".to_owned(),
            region: String::new(),
            postal_code: "SW1Y 4JH".to_owned(),
            country: "GB".to_owned(),
        }),
        shipping_method: pb::ShippingMethod::Express as i32,
    }
}

fn line(sku: &str, quantity: i64, price: i64) -> pb::OrderLine {
    pb::OrderLine {
        sku: sku.to_owned(),
        quantity,
        unit_price: money(price),
    }
}

/// Every generated seed: its file name, the selector byte and the encoded request.
fn generated_seeds() -> Vec<(&'static str, u8, Vec<u8>)> {
    vec![
        (
            "place-order",
            0,
            place(vec![line("SKU-1", 2, 1999), line("SKU-2", 1, 500)], ORDER).encode_to_vec(),
        ),
        (
            "authorize-payment",
            1,
            pb::AuthorizePaymentRequest {
                command_id: COMMAND.to_owned(),
                order_id: ORDER.to_owned(),
                expected_version: Some(2),
                payment_id: "pay-1".to_owned(),
                amount: money(4498),
            }
            .encode_to_vec(),
        ),
        (
            "refund-payment",
            2,
            pb::RefundPaymentRequest {
                command_id: COMMAND.to_owned(),
                order_id: ORDER.to_owned(),
                expected_version: None,
                amount: money(500),
            }
            .encode_to_vec(),
        ),
        (
            "ship-order",
            3,
            pb::ShipOrderRequest {
                command_id: COMMAND.to_owned(),
                order_id: ORDER.to_owned(),
                expected_version: Some(5),
                carrier: "DHL".to_owned(),
                tracking_number: "JD014600006281234567".to_owned(),
            }
            .encode_to_vec(),
        ),
        (
            "cancel-order",
            4,
            pb::CancelOrderRequest {
                command_id: COMMAND.to_owned(),
                order_id: ORDER.to_owned(),
                expected_version: None,
                reason: "customer changed their mind".to_owned(),
            }
            .encode_to_vec(),
        ),
        (
            "invalid-place-order",
            0,
            place(
                vec![line("", 0, -1), line("SKU-1", 10_001, 5)],
                "not-a-uuid",
            )
            .encode_to_vec(),
        ),
    ]
}

#[test]
fn the_proto_command_fuzz_seeds_are_the_requests_they_claim_to_be() {
    let dir = seeds::seed_dir("proto_command");
    if std::env::var_os("WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).expect("create the seed folder");
        for (name, which, bytes) in generated_seeds() {
            let mut data = vec![which];
            data.extend_from_slice(&bytes);
            std::fs::write(dir.join(name), data).expect("write a seed");
        }
    }
    for (name, which, bytes) in generated_seeds() {
        let stored = std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!("fuzz seed {name} missing ({e}); regenerate with WRITE_FUZZ_SEEDS=1")
        });
        assert_eq!(stored.first(), Some(&which), "{name}: selector byte");
        assert_eq!(
            &stored[1..],
            bytes.as_slice(),
            "{name}: stale seed, regenerate"
        );
    }
    match harness::check(&std::fs::read(dir.join("invalid-place-order")).unwrap()) {
        Outcome::Refused(invalid) => {
            let fields: Vec<&str> = invalid.0.iter().map(|v| v.field.as_str()).collect();
            assert!(
                fields.contains(&"order_id") && fields.iter().any(|f| f.starts_with("lines[")),
                "invalid-place-order: the envelope and the line are named: {fields:?}"
            );
        }
        outcome => panic!("invalid-place-order: {outcome:?}"),
    }
}

#[test]
fn every_proto_command_seed_gives_its_documented_result() {
    for (name, data) in seeds::seeds("proto_command") {
        match (harness::check(&data), seeds::expects_refusal(&name)) {
            (Outcome::Accepted(_), false) | (Outcome::Refused(_), true) => {}
            (outcome, refusal_expected) => panic!(
                "{name}: {outcome:?} (expected {})",
                if refusal_expected {
                    "a refusal naming the fields"
                } else {
                    "a command"
                }
            ),
        }
    }
}

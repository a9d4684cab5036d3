//! The seeds of the `proto_command` fuzz target (fuzz/seeds/proto_command) are real requests:
//! one byte choosing the request type (as the target reads it), then the encoded message.
//! Valid seeds convert into commands, `invalid-*` seeds are refused with named fields, so the
//! fuzzer starts from both sides of every check.
//!
//! Regenerate them with `WRITE_FUZZ_SEEDS=1 cargo nextest run -p order-grpc fuzz_seeds`.

use std::path::PathBuf;

use order_grpc::convert::ParsedCommand;
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

/// Every seed: its file name, the selector byte and the encoded request.
fn seeds() -> Vec<(&'static str, u8, Vec<u8>)> {
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

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/proto_command")
}

fn convert(which: u8, bytes: &[u8]) -> Result<ParsedCommand, order_grpc::convert::InvalidRequest> {
    fn go<M>(bytes: &[u8]) -> Result<ParsedCommand, order_grpc::convert::InvalidRequest>
    where
        M: Message + Default,
        ParsedCommand: TryFrom<M, Error = order_grpc::convert::InvalidRequest>,
    {
        ParsedCommand::try_from(M::decode(bytes).expect("a seed decodes"))
    }
    match which % 5 {
        0 => go::<pb::PlaceOrderRequest>(bytes),
        1 => go::<pb::AuthorizePaymentRequest>(bytes),
        2 => go::<pb::RefundPaymentRequest>(bytes),
        3 => go::<pb::ShipOrderRequest>(bytes),
        _ => go::<pb::CancelOrderRequest>(bytes),
    }
}

#[test]
fn the_proto_command_fuzz_seeds_are_the_requests_they_claim_to_be() {
    let dir = seed_dir();
    if std::env::var_os("WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).expect("create the seed folder");
        for (name, which, bytes) in seeds() {
            let mut data = vec![which];
            data.extend_from_slice(&bytes);
            std::fs::write(dir.join(name), data).expect("write a seed");
        }
    }
    for (name, which, bytes) in seeds() {
        let stored = std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!("fuzz seed {name} missing ({e}); regenerate with WRITE_FUZZ_SEEDS=1")
        });
        assert_eq!(stored.first(), Some(&which), "{name}: selector byte");
        assert_eq!(
            &stored[1..],
            bytes.as_slice(),
            "{name}: stale seed, regenerate"
        );
        match convert(which, &stored[1..]) {
            Ok(parsed) => assert!(
                !name.starts_with("invalid"),
                "{name} was accepted: {parsed:?}"
            ),
            Err(invalid) => {
                assert!(
                    name.starts_with("invalid"),
                    "{name} refused: {:?}",
                    invalid.0
                );
                let fields: Vec<&str> = invalid.0.iter().map(|v| v.field.as_str()).collect();
                assert!(
                    fields.contains(&"order_id") && fields.iter().any(|f| f.starts_with("lines[")),
                    "{name}: the envelope and the line are named: {fields:?}"
                );
            }
        }
    }
}

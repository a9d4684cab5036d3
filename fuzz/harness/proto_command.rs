//! What the `proto_command` fuzz target checks, one input at a time. The target calls
//! [`check`] with whatever libFuzzer makes; `order-grpc/tests/api/fuzz_seeds.rs` calls it with
//! every file of `fuzz/seeds/proto_command`, so the seeds are regression tests of the normal
//! test suite.
//!
//! Protobuf bytes to domain commands: any request decodes or is refused, and conversion either
//! yields a command or names the offending fields; never a panic.

use order_grpc::convert::{InvalidRequest, ParsedCommand};
use order_proto::v1 as pb;
use prost::Message;

/// What became of one input.
#[derive(Debug)]
pub enum Outcome {
    /// Empty, or not a protobuf message of the chosen request type.
    Undecodable,
    /// A valid command.
    Accepted(Box<ParsedCommand>),
    /// A request refused with the fields it got wrong (at least one, each named).
    Refused(InvalidRequest),
}

fn convert<M>(bytes: &[u8]) -> Outcome
where
    M: Message + Default,
    ParsedCommand: TryFrom<M, Error = InvalidRequest>,
{
    let Ok(request) = M::decode(bytes) else {
        return Outcome::Undecodable;
    };
    match ParsedCommand::try_from(request) {
        Ok(command) => Outcome::Accepted(Box::new(command)),
        Err(invalid) => {
            assert!(!invalid.0.is_empty(), "a refusal names at least one field");
            assert!(
                invalid.0.iter().all(|v| !v.field.is_empty()),
                "every violation names its field: {invalid:?}"
            );
            Outcome::Refused(invalid)
        }
    }
}

/// An input is one byte choosing the request type (modulo 5: PlaceOrder, AuthorizePayment,
/// RefundPayment, ShipOrder, CancelOrder), then the encoded request. Panics when a property
/// fails.
pub fn check(data: &[u8]) -> Outcome {
    let [which, rest @ ..] = data else {
        return Outcome::Undecodable;
    };
    match which % 5 {
        0 => convert::<pb::PlaceOrderRequest>(rest),
        1 => convert::<pb::AuthorizePaymentRequest>(rest),
        2 => convert::<pb::RefundPaymentRequest>(rest),
        3 => convert::<pb::ShipOrderRequest>(rest),
        _ => convert::<pb::CancelOrderRequest>(rest),
    }
}

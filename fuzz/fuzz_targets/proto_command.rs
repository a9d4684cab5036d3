//! Protobuf bytes to domain commands: any request decodes or is refused, and conversion either
//! yields a command or names the offending fields; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use order_grpc::convert::ParsedCommand;
use order_proto::v1 as pb;
use prost::Message;

fn check<M: Message + Default>(bytes: &[u8])
where
    ParsedCommand: TryFrom<M, Error = order_grpc::convert::InvalidRequest>,
{
    if let Ok(request) = M::decode(bytes) {
        if let Err(invalid) = ParsedCommand::try_from(request) {
            assert!(!invalid.0.is_empty(), "a refusal names at least one field");
            assert!(invalid.0.iter().all(|v| !v.field.is_empty()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [which, rest @ ..] = data else { return };
    match which % 5 {
        0 => check::<pb::PlaceOrderRequest>(rest),
        1 => check::<pb::AuthorizePaymentRequest>(rest),
        2 => check::<pb::RefundPaymentRequest>(rest),
        3 => check::<pb::ShipOrderRequest>(rest),
        _ => check::<pb::CancelOrderRequest>(rest),
    }
});

//! An SQS message body as the worker receives it: the CloudEvents envelope parses or is
//! refused with a reason; never a panic, never an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use order_messages::CloudEvent;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    if let Ok(event) = CloudEvent::parse(body) {
        let again = CloudEvent::parse(&event.to_body()).expect("a parsed envelope re-parses");
        assert_eq!(again, event);
    }
});

//! Command ids: a retry returns the first result and writes nothing, also concurrently.

use order_store::{AppendOutcome, AppendRequest, Error, ExpectedVersion, Idempotency};
use uuid::Uuid;

use crate::support::*;

fn request<'a>(
    stream_id: Uuid,
    expected: ExpectedVersion,
    events: &'a [order_store::NewEvent],
    metadata: &'a order_domain::es::Metadata,
    command_id: Uuid,
    fingerprint: [u8; 32],
) -> AppendRequest<'a> {
    AppendRequest {
        stream_id,
        category: "test",
        expected,
        events,
        metadata,
        idempotency: Some(Idempotency {
            command_id,
            fingerprint,
            status: "Placed",
        }),
    }
}

#[tokio::test]
async fn a_retried_command_returns_the_first_result_and_writes_nothing() {
    let t = test_store().await;
    let stream = Uuid::new_v4();
    let command = Uuid::new_v4();
    let metadata = metadata();
    let events = [event("once")];
    let first = t
        .store
        .append(request(
            stream,
            ExpectedVersion::NoStream,
            &events,
            &metadata,
            command,
            [1; 32],
        ))
        .await
        .unwrap();
    let AppendOutcome::Appended(first) = first else {
        panic!("first attempt was a duplicate")
    };
    assert_eq!(first.status, "Placed");

    // The retry carries new event ids and an expected version that no longer holds: the
    // command record answers before either matters.
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Any,
        ExpectedVersion::Exact(1),
    ] {
        let retry = t
            .store
            .append(request(
                stream,
                expected,
                &[event("again")],
                &metadata,
                command,
                [1; 32],
            ))
            .await
            .unwrap();
        assert_eq!(retry, AppendOutcome::Duplicate(first.clone()), "{expected}");
    }
    assert_eq!(count(&t.db, "orders.events").await, 1);
    assert_eq!(count(&t.db, "orders.commands").await, 1);
    let found = t.store.find_command(command).await.unwrap().unwrap();
    assert_eq!(found.committed, first);
}

#[tokio::test]
async fn a_reused_command_id_with_another_request_is_refused() {
    let t = test_store().await;
    let stream = Uuid::new_v4();
    let command = Uuid::new_v4();
    let metadata = metadata();
    t.store
        .append(request(
            stream,
            ExpectedVersion::NoStream,
            &[event("a")],
            &metadata,
            command,
            [1; 32],
        ))
        .await
        .unwrap();
    let other_request = t
        .store
        .append(request(
            stream,
            ExpectedVersion::Any,
            &[event("b")],
            &metadata,
            command,
            [2; 32],
        ))
        .await;
    assert!(
        matches!(other_request, Err(Error::CommandIdReused { .. })),
        "{other_request:?}"
    );
    let other_stream = t
        .store
        .append(request(
            Uuid::new_v4(),
            ExpectedVersion::NoStream,
            &[event("c")],
            &metadata,
            command,
            [1; 32],
        ))
        .await;
    assert!(
        matches!(other_stream, Err(Error::CommandIdReused { .. })),
        "{other_stream:?}"
    );
    assert_eq!(count(&t.db, "orders.events").await, 1);
}

#[tokio::test]
async fn concurrent_retries_of_one_command_write_it_exactly_once() {
    let t = test_store().await;
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
        let stream = Uuid::new_v4();
        let command = Uuid::new_v4();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = t.store.clone();
                tokio::spawn(async move {
                    let metadata = metadata();
                    let events = [event("concurrent")];
                    store
                        .append(request(
                            stream, expected, &events, &metadata, command, [9; 32],
                        ))
                        .await
                })
            })
            .collect();
        let mut appended = Vec::new();
        let mut duplicates = Vec::new();
        for task in tasks {
            match task.await.unwrap().unwrap() {
                AppendOutcome::Appended(c) => appended.push(c),
                AppendOutcome::Duplicate(c) => duplicates.push(c),
            }
        }
        assert_eq!(appended.len(), 1, "{expected}: exactly one attempt writes");
        assert!(
            duplicates.iter().all(|d| *d == appended[0]),
            "{expected}: every retry sees the first result"
        );
        assert_eq!(t.store.read_stream(stream, 0).await.unwrap().len(), 1);
    }
}

/// A request's fingerprint is stored with its command id and compared with every retry's, also
/// across deployments: a retry sent before an upgrade and answered after it must still match.
/// This pins it for one request of each shape; if it fails, retries of commands recorded by
/// the previous version would be refused as reused ids.
#[test]
fn request_fingerprints_never_change_between_versions() {
    use order_domain::OrderCommand;
    use order_domain::order::{LineInput, PlaceOrder, PlaceOrderInput};
    use order_domain::values::{AddressInput, ShippingMethod};
    let stream = Uuid::from_u128(0x0b5c_3a3e_52f5_4b8a_9a55_b4f1_e9a7_c0ff);
    let place = OrderCommand::PlaceOrder(
        PlaceOrder::parse(&PlaceOrderInput {
            customer_id: "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001",
            lines: vec![LineInput {
                sku: "SKU-1",
                quantity: 3,
                currency: "EUR",
                unit_price_minor: 1000,
            }],
            shipping_address: Some(AddressInput {
                recipient: "Ada \"Countess\" Lovelace",
                line1: "1 Main St",
                line2: "Flat 3",
                city: "Berlin",
                region: "Berlin",
                postal_code: "10115",
                country: "DE",
            }),
            shipping_method: Some(ShippingMethod::Express),
        })
        .unwrap(),
    );
    let hex = |bytes: [u8; 32]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let cases = [
        (
            place,
            "5949a59bbb63ae8ee4a6e3401b5624c4bea1f5df84fb5625d9b22e3baa58ecea",
        ),
        (
            OrderCommand::refund_payment("EUR", 250).unwrap(),
            "e70b7b017803c2ced8fe8f30fa92722e5ac9cd434043883b08c4298628544ff5",
        ),
        (
            OrderCommand::ConfirmOrder,
            "822df500ae3ef5e5a2535667c8d61f9da49edb64cefc4bdb4b948a5d52bc8f60",
        ),
    ];
    for (command, pinned) in cases {
        assert_eq!(
            hex(order_store::fingerprint(stream, &command).unwrap()),
            pinned,
            "{command:?}"
        );
    }
}

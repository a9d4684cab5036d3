//! Bad input, table-driven: every case gets INVALID_ARGUMENT naming the field (or the code
//! the contract names), and the log is unchanged.

use std::future::Future;
use std::pin::Pin;

use order_proto::v1 as pb;
use order_proto::v1::order_service_client::OrderServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::*;

type Call = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

fn placing(
    client: &OrderServiceClient<Channel>,
    change: impl FnOnce(&mut pb::PlaceOrderRequest),
) -> Call {
    let mut request = place(&id());
    change(&mut request);
    let mut client = client.clone();
    Box::pin(async move { client.place_order(request).await.map(|_| ()) })
}

fn line(sku: &str, quantity: i64, unit_price: Option<pb::Money>) -> pb::OrderLine {
    pb::OrderLine {
        sku: sku.into(),
        quantity,
        unit_price,
    }
}

fn money(currency: &str, amount_minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency: currency.into(),
        amount_minor,
    })
}

#[tokio::test]
async fn every_bad_request_names_its_field_and_changes_nothing() {
    let app = spawn_app().await;
    let order = order_in_state(&app, 1).await;
    let before = app.event_count().await;
    let c = app.commands();
    let megabyte = "x".repeat(1 << 20);
    let o = || order.clone();

    let cases: Vec<(&str, Call, Code, &str)> = vec![
        (
            "missing command id",
            placing(&c, |r| r.command_id.clear()),
            Code::InvalidArgument,
            "command_id",
        ),
        (
            "command id not a uuid",
            placing(&c, |r| r.command_id = "retry-1".into()),
            Code::InvalidArgument,
            "command_id",
        ),
        (
            "missing order id",
            placing(&c, |r| r.order_id.clear()),
            Code::InvalidArgument,
            "order_id",
        ),
        (
            "order id with sql",
            placing(&c, |r| {
                r.order_id = "1'; DROP TABLE orders.events;--".into();
            }),
            Code::InvalidArgument,
            "order_id",
        ),
        (
            "nil order id",
            placing(&c, |r| {
                r.order_id = "00000000-0000-0000-0000-000000000000".into();
            }),
            Code::InvalidArgument,
            "order_id",
        ),
        (
            "missing customer",
            placing(&c, |r| r.customer_id.clear()),
            Code::InvalidArgument,
            "customer_id",
        ),
        (
            "no lines",
            placing(&c, |r| r.lines.clear()),
            Code::InvalidArgument,
            "lines",
        ),
        (
            "too many lines",
            placing(&c, |r| {
                r.lines = (0..101)
                    .map(|i| line(&format!("S{i}"), 1, eur(1)))
                    .collect();
            }),
            Code::InvalidArgument,
            "lines",
        ),
        (
            "zero quantity",
            placing(&c, |r| r.lines[0].quantity = 0),
            Code::InvalidArgument,
            "lines[0].quantity",
        ),
        (
            "negative quantity",
            placing(&c, |r| r.lines[1].quantity = -5),
            Code::InvalidArgument,
            "lines[1].quantity",
        ),
        (
            "overflowing quantity",
            placing(&c, |r| r.lines[0].quantity = i64::MAX),
            Code::InvalidArgument,
            "lines[0].quantity",
        ),
        (
            "zero price",
            placing(&c, |r| r.lines[0].unit_price = eur(0)),
            Code::InvalidArgument,
            "lines[0].unit_price.amount_minor",
        ),
        (
            "negative price",
            placing(&c, |r| r.lines[0].unit_price = eur(-100)),
            Code::InvalidArgument,
            "lines[0].unit_price.amount_minor",
        ),
        (
            "missing price",
            placing(&c, |r| r.lines[0].unit_price = None),
            Code::InvalidArgument,
            "lines[0].unit_price",
        ),
        (
            "total overflows",
            placing(&c, |r| {
                r.lines = vec![
                    line("A", 10_000, eur(999_999_999_999)),
                    line("B", 1, eur(1)),
                ];
            }),
            Code::InvalidArgument,
            "lines[0].quantity",
        ),
        (
            "unknown currency",
            placing(&c, |r| r.lines[0].unit_price = money("EURO", 100)),
            Code::InvalidArgument,
            "lines[0].unit_price.currency",
        ),
        (
            "mixed currencies",
            placing(&c, |r| r.lines[1].unit_price = money("USD", 100)),
            Code::InvalidArgument,
            "lines[1].unit_price.currency",
        ),
        (
            "duplicate sku",
            placing(&c, |r| r.lines[1].sku = "SKU-1".into()),
            Code::InvalidArgument,
            "lines[1].sku",
        ),
        (
            "1 MB sku",
            placing(&c, |r| r.lines[0].sku = megabyte.clone()),
            Code::InvalidArgument,
            "lines[0].sku",
        ),
        (
            "1 MB recipient",
            placing(&c, |r| {
                r.shipping_address.as_mut().unwrap().recipient = megabyte.clone();
            }),
            Code::InvalidArgument,
            "shipping_address.recipient",
        ),
        (
            "a recipient of one blank Braille cell",
            placing(&c, |r| {
                r.shipping_address.as_mut().unwrap().recipient = "\u{2800}".into();
            }),
            Code::InvalidArgument,
            "shipping_address.recipient",
        ),
        (
            "a recipient of a lone combining mark",
            placing(&c, |r| {
                r.shipping_address.as_mut().unwrap().recipient = "\u{0301}".into();
            }),
            Code::InvalidArgument,
            "shipping_address.recipient",
        ),
        (
            "missing address",
            placing(&c, |r| r.shipping_address = None),
            Code::InvalidArgument,
            "shipping_address",
        ),
        (
            "control character",
            placing(&c, |r| {
                r.shipping_address.as_mut().unwrap().city = "Lon\u{0}don".into();
            }),
            Code::InvalidArgument,
            "shipping_address.city",
        ),
        (
            "bad country",
            placing(&c, |r| {
                r.shipping_address.as_mut().unwrap().country = "Britain".into();
            }),
            Code::InvalidArgument,
            "shipping_address.country",
        ),
        (
            "a country code ISO 3166-1 does not assign",
            placing(&c, |r| {
                r.shipping_address.as_mut().unwrap().country = "UK".into();
            }),
            Code::InvalidArgument,
            "shipping_address.country",
        ),
        (
            "unspecified shipping method",
            placing(&c, |r| r.shipping_method = 0),
            Code::InvalidArgument,
            "shipping_method",
        ),
        (
            "unknown shipping method",
            placing(&c, |r| r.shipping_method = 99),
            Code::InvalidArgument,
            "shipping_method",
        ),
        (
            "absurd expected version",
            placing(&c, |r| r.expected_version = Some(u64::MAX)),
            Code::InvalidArgument,
            "expected_version",
        ),
        (
            "empty reservation",
            {
                let mut c = c.clone();
                let r = pb::ReserveInventoryRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                    reservation_id: String::new(),
                };
                Box::pin(async move { c.reserve_inventory(r).await.map(|_| ()) })
            },
            Code::InvalidArgument,
            "reservation_id",
        ),
        (
            "missing authorization amount",
            {
                let mut c = c.clone();
                let r = pb::AuthorizePaymentRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                    payment_id: "p".into(),
                    amount: None,
                };
                Box::pin(async move { c.authorize_payment(r).await.map(|_| ()) })
            },
            Code::InvalidArgument,
            "amount",
        ),
        (
            "negative authorization",
            {
                let mut c = c.clone();
                let r = pb::AuthorizePaymentRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                    payment_id: "p".into(),
                    amount: eur(-1),
                };
                Box::pin(async move { c.authorize_payment(r).await.map(|_| ()) })
            },
            Code::InvalidArgument,
            "amount.amount_minor",
        ),
        (
            "1 MB cancel reason",
            {
                let mut c = c.clone();
                let r = pb::CancelOrderRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                    reason: megabyte.clone(),
                };
                Box::pin(async move { c.cancel_order(r).await.map(|_| ()) })
            },
            Code::InvalidArgument,
            "reason",
        ),
        (
            "refund in unknown currency",
            {
                let mut c = c.clone();
                let r = pb::RefundPaymentRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                    amount: money("XYZ", 5),
                };
                Box::pin(async move { c.refund_payment(r).await.map(|_| ()) })
            },
            Code::InvalidArgument,
            "amount.currency",
        ),
        (
            "empty carrier",
            {
                let mut c = c.clone();
                let r = pb::ShipOrderRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: None,
                    carrier: String::new(),
                    tracking_number: "1".into(),
                };
                Box::pin(async move { c.ship_order(r).await.map(|_| ()) })
            },
            Code::InvalidArgument,
            "carrier",
        ),
        (
            "wrong expected version",
            {
                let mut c = c.clone();
                let r = pb::ConfirmOrderRequest {
                    command_id: id(),
                    order_id: o(),
                    expected_version: Some(7),
                };
                Box::pin(async move { c.confirm_order(r).await.map(|_| ()) })
            },
            Code::Aborted,
            "",
        ),
        (
            "oversized message",
            placing(&c, |r| {
                r.shipping_address.as_mut().unwrap().line2 = "y".repeat(5 << 20);
            }),
            Code::ResourceExhausted,
            "",
        ),
    ];
    assert!(cases.len() >= 25);
    for (name, call, code, field) in cases {
        let status = call.await.expect_err(name);
        assert_eq!(status.code(), code, "{name}: {status:?}");
        if !field.is_empty() {
            assert_eq!(
                violated_fields(&status),
                [field],
                "{name}: {}",
                status.message()
            );
            assert!(
                status.message().contains(field),
                "{name}: the message names the field: {}",
                status.message()
            );
        }
    }
    assert_eq!(
        app.event_count().await,
        before,
        "no bad request wrote anything"
    );
}

/// The description of each BadRequest violation of `status`: (field, description).
fn violations(status: &Status) -> Vec<(String, String)> {
    details(status)
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// An enum field left unset is missing, and says so like every other missing field; a value
/// this version does not know is unknown.
#[tokio::test]
async fn an_unset_shipping_method_is_required_and_an_unknown_one_unknown() {
    let app = spawn_app().await;
    let c = app.commands();
    let missing_address = placing(&c, |r| r.shipping_address = None)
        .await
        .unwrap_err();
    let [(_, required)] = &violations(&missing_address)[..] else {
        panic!("{missing_address:?}")
    };
    assert_eq!(required, "is required");
    for (value, description) in [(0, required.as_str()), (99, "is not a known value")] {
        let status = placing(&c, |r| r.shipping_method = value)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            violations(&status),
            [("shipping_method".to_owned(), description.to_owned())],
            "{value}"
        );
        assert_eq!(
            status.message(),
            format!("shipping_method {description}"),
            "{value}"
        );
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn several_bad_envelope_fields_are_reported_together() {
    let app = spawn_app().await;
    let mut request = place(&id());
    request.command_id = "nope".into();
    request.order_id = "nope".into();
    request.lines.clear();
    let status = app.commands().place_order(request).await.unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["command_id", "order_id", "lines"]
    );
}

/// Sends raw bytes as the request message, for what a well-behaved client cannot build.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

#[tokio::test]
async fn a_message_that_does_not_decode_is_invalid_argument_not_internal() {
    let app = spawn_app().await;
    let mut client = tonic::client::Grpc::new(app.channel.clone());
    // Each body, and the field its BadRequest violation must name (the path from the request).
    let cases: [(Vec<u8>, &str); 4] = [
        // Field 1 (command_id, a string) holding invalid UTF-8.
        (vec![0x0a, 0x02, 0xff, 0xfe], "command_id"),
        // Field 2 (order_id, a string) sent as a varint.
        (vec![0x10, 0xff], "order_id"),
        // Field 5 (lines), its first line's field 1 (sku) holding invalid UTF-8.
        (vec![0x2a, 0x04, 0x0a, 0x02, 0xff, 0xfe], "lines.sku"),
        // Field 3 (expected_version, a varint) cut off after its key.
        (vec![0x18], "expected_version"),
    ];
    for (body, field) in cases {
        client.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/orders.v1.OrderService/PlaceOrder");
        let status = client
            .unary(tonic::Request::new(body.clone()), path, RawCodec)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{body:?}: {status:?}");
        assert_eq!(violated_fields(&status), [field], "{body:?}: {status:?}");
        assert!(
            status.message().contains("failed to decode"),
            "{body:?}: {status:?}"
        );
    }
    // A body that fails before any field is named still carries one violation, on the request
    // as a whole (named `request`, as the service's other whole-request violations).
    client.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/orders.v1.OrderService/PlaceOrder");
    let status = client
        .unary(tonic::Request::new(vec![0x00]), path, RawCodec)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), ["request"], "{status:?}");
    assert_eq!(app.event_count().await, 0);
}

/// A body without a message, or with its message cut off, is the caller's mistake too:
/// INVALID_ARGUMENT naming the request, where tonic says INTERNAL.
#[tokio::test]
async fn an_empty_or_cut_off_body_is_invalid_argument_not_internal() {
    use tower::ServiceExt;
    let app = spawn_app().await;
    let bodies: [(&str, &[u8]); 5] = [
        ("/orders.v1.OrderService/PlaceOrder", b""),
        ("/orders.v1.OrderQueryService/GetOrder", b""),
        // A length prefix of 100 bytes, and 10 of them.
        (
            "/orders.v1.OrderService/PlaceOrder",
            &[0, 0, 0, 0, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        ),
        // A frame flag gRPC does not have (0 and 1 only).
        ("/orders.v1.OrderQueryService/GetOrder", &[2, 0, 0, 0, 0]),
        ("/orders.v1.OrderService/PlaceOrder", &[0xff, 0, 0, 0, 0]),
    ];
    for (path, body) in bodies {
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", app.grpc_addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::new(http_body_util::Full::new(
                bytes::Bytes::from_static(body),
            )))
            .unwrap();
        let response = app.channel.clone().oneshot(request).await.unwrap();
        let status = Status::from_header_map(response.headers()).expect("a trailers-only status");
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{path} {body:?}: {status:?}"
        );
        assert_eq!(
            violated_fields(&status),
            ["request"],
            "{path} {body:?}: {status:?}"
        );
    }
    // A message flagged compressed: without a grpc-encoding INTERNAL, as the gRPC compression
    // specification requires; with one, UNIMPLEMENTED (the service takes none).
    for (encoding, code) in [(None, Code::Internal), (Some("gzip"), Code::Unimplemented)] {
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://{}/orders.v1.OrderService/PlaceOrder",
                app.grpc_addr
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(encoding) = encoding {
            request = request.header("grpc-encoding", encoding);
        }
        let request = request
            .body(tonic::body::Body::new(http_body_util::Full::new(
                bytes::Bytes::from_static(&[1, 0, 0, 0, 2, 0x0a, 0x00]),
            )))
            .unwrap();
        let response = app.channel.clone().oneshot(request).await.unwrap();
        let status = final_status(response).await;
        assert_eq!(status.code(), code, "{encoding:?}: {status:?}");
    }
    assert_eq!(app.event_count().await, 0);
}

/// The status a call ended with: in the headers (trailers-only) or in the trailers.
async fn final_status(response: http::Response<tonic::body::Body>) -> Status {
    use http_body_util::BodyExt;
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status;
    }
    let collected = response.into_body().collect().await.unwrap();
    Status::from_header_map(&collected.trailers().cloned().unwrap_or_default())
        .expect("a grpc-status in the trailers")
}

/// A gRPC request to `path` whose body arrives as `chunks`, one DATA frame each.
fn chunked_request(
    app: &TestApp,
    path: &str,
    chunks: Vec<Vec<u8>>,
) -> http::Request<tonic::body::Body> {
    let stream =
        futures::stream::iter(chunks.into_iter().map(|c| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from(c)))
        }));
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{path}", app.grpc_addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(
            stream,
        )))
        .unwrap()
}

/// A call whose body holds two messages: tonic would run the first and drop the second unread,
/// answering OK. The service refuses the whole call instead (INVALID_ARGUMENT on `request`),
/// before any handler runs: neither order is placed. A body split over several DATA frames,
/// with the message boundaries anywhere, counts the same.
#[tokio::test]
async fn a_call_with_two_messages_is_refused_whole_and_changes_nothing() {
    use prost::Message;
    use tower::ServiceExt;
    let app = spawn_app().await;
    let frame = |message: Vec<u8>| {
        let mut framed = vec![0];
        framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        framed.extend_from_slice(&message);
        framed
    };
    let first = frame(place(&id()).encode_to_vec());
    let second = frame(place(&id()).encode_to_vec());
    let query = frame(
        pb::GetOrderRequest {
            order_id: id(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let both = [first.clone(), second.clone()].concat();
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("/orders.v1.OrderService/PlaceOrder", vec![both.clone()]),
        // the same bytes in three DATA frames, cut inside each message
        (
            "/orders.v1.OrderService/PlaceOrder",
            vec![
                both[..3].to_vec(),
                both[3..first.len() + 2].to_vec(),
                both[first.len() + 2..].to_vec(),
            ],
        ),
        // one message and one stray byte
        (
            "/orders.v1.OrderService/PlaceOrder",
            vec![first.clone(), vec![0]],
        ),
        (
            "/orders.v1.OrderQueryService/GetOrder",
            vec![query.clone(), query.clone()],
        ),
    ];
    for (path, chunks) in cases {
        let request = chunked_request(&app, path, chunks.clone());
        let response = app.channel.clone().oneshot(request).await.unwrap();
        let status = final_status(response).await;
        let lengths: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{path} {lengths:?}: {status:?}"
        );
        assert_eq!(
            violated_fields(&status),
            ["request"],
            "{path} {lengths:?}: {status:?}"
        );
        assert!(
            status.message().contains("more than one message"),
            "{path} {lengths:?}: {status:?}"
        );
    }
    assert_eq!(
        app.event_count().await,
        0,
        "an order of a refused call was placed"
    );
    // One message alone, in the same frames, is placed as always.
    let request = chunked_request(
        &app,
        "/orders.v1.OrderService/PlaceOrder",
        vec![first[..3].to_vec(), first[3..].to_vec()],
    );
    let response = app.channel.clone().oneshot(request).await.unwrap();
    let status = final_status(response).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    assert_eq!(app.event_count().await, 1);
}

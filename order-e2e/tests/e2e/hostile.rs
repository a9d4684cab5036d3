//! Hostile strings through the whole path: accepted text comes back byte for byte from the log
//! (GetOrderEvents) and in the SQS CloudEvents, the projection does not choke on it; text the
//! rules refuse (control characters, over-long values) is INVALID_ARGUMENT and writes nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use order_e2e::HOSTILE;
use order_messages::CloudEvent;
use order_proto::v1 as pb;
use order_testkit::sqs;
use tonic::Code;

use crate::support::*;

fn hostile_place(order_id: &str, customer: &str, text: &str) -> pb::PlaceOrderRequest {
    let mut request = place(order_id, customer);
    request.shipping_address = Some(pb::Address {
        recipient: text.to_owned(),
        line1: text.to_owned(),
        line2: text.to_owned(),
        city: text.to_owned(),
        region: text.to_owned(),
        postal_code: "10115".into(),
        country: "DE".into(),
    });
    request
}

/// Every string anywhere inside a JSON value.
fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn hostile_text_is_stored_and_returned_verbatim() {
    let stack = start().await;
    let customer = id();
    let mut orders: HashMap<String, &str> = HashMap::new();
    let mut last_position = 0;
    for text in HOSTILE {
        let order = id();
        stack
            .commands()
            .place_order(hostile_place(&order, &customer, text))
            .await
            .unwrap_or_else(|s| panic!("{text:?} refused: {s:?}"));
        let cancelled = stack
            .commands()
            .cancel_order(pb::CancelOrderRequest {
                command_id: id(),
                order_id: order.clone(),
                expected_version: Some(1),
                reason: (*text).to_owned(),
            })
            .await
            .unwrap_or_else(|s| panic!("{text:?} refused as a reason: {s:?}"))
            .into_inner();
        last_position = last_position.max(cancelled.global_position);
        orders.insert(order, text);
    }

    // From the log: byte for byte.
    for (order, text) in &orders {
        let events = stack
            .queries()
            .get_order_events(pb::GetOrderEventsRequest {
                order_id: order.clone(),
                after_version: 0,
                min_position: None,
                max_events: None,
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        let mut reasons = Vec::new();
        let mut addresses = Vec::new();
        for event in events {
            match event.payload {
                Some(pb::event::Payload::OrderPlaced(placed)) => {
                    addresses.push(placed.shipping_address.unwrap());
                }
                Some(pb::event::Payload::OrderCancelled(c)) => reasons.push(c.reason),
                Some(pb::event::Payload::CancellationRequested(c)) => reasons.push(c.reason),
                _ => {}
            }
        }
        let address = addresses.pop().expect("an OrderPlaced event");
        for field in [
            &address.recipient,
            &address.line1,
            &address.line2,
            &address.city,
            &address.region,
        ] {
            assert_eq!(field.as_bytes(), text.as_bytes());
        }
        assert!(!reasons.is_empty());
        assert!(reasons.iter().all(|r| r == text), "{reasons:?} vs {text:?}");
    }

    // The read model took every event (it waits for the last position) and lists the orders.
    for order in orders.keys() {
        let got = stack
            .queries()
            .get_order(pb::GetOrderRequest {
                order_id: order.clone(),
                min_position: Some(last_position),
            })
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        assert_eq!(got.status(), pb::OrderStatus::Cancelled);
    }
    let listed = stack
        .queries()
        .list_orders(pb::ListOrdersRequest {
            customer_id: customer.clone(),
            status: 0,
            page_size: 50,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.orders.len(), HOSTILE.len());

    // In SQS: the CloudEvent data carries the same strings.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    // recipient, line1, line2, city, region, and the cancellation reason.
    let complete = |seen: &HashMap<String, Vec<String>>| {
        orders.iter().all(|(order, text)| {
            seen.get(order)
                .is_some_and(|found| found.iter().filter(|s| s.as_str() == *text).count() >= 6)
        })
    };
    while !complete(&seen) && Instant::now() < deadline {
        for message in sqs::drain_queue(&sqs::client(), &stack.queue.queue_url).await {
            let event = CloudEvent::parse(message.body().unwrap()).unwrap();
            let mut found = Vec::new();
            strings(&event.data, &mut found);
            seen.entry(event.subject.to_string())
                .or_default()
                .extend(found);
        }
    }
    for (order, text) in &orders {
        let found = seen.get(order).cloned().unwrap_or_default();
        let exact = found.iter().filter(|s| s.as_str() == *text).count();
        assert!(
            exact >= 6,
            "{text:?} in SQS {exact} times: {found:?}; orders seen: {}",
            seen.len()
        );
    }
}

#[tokio::test]
async fn control_characters_and_over_long_text_are_refused_and_write_nothing() {
    let stack = start().await;
    let customer = id();
    let refused: Vec<(String, &str)> = vec![
        ("nul \u{0} inside".to_owned(), "NUL"),
        ("line\nbreak".to_owned(), "newline"),
        ("\u{1b}[31mred".to_owned(), "terminal escape"),
        ("del \u{7f}".to_owned(), "DEL"),
        ("next line \u{85}".to_owned(), "C1 control"),
        ("line \u{2028} separator".to_owned(), "U+2028"),
        ("paragraph \u{2029} separator".to_owned(), "U+2029"),
        ("\u{20ac}".repeat(201), "201 characters"),
        (" \t ".to_owned(), "blank"),
    ];
    for (text, what) in &refused {
        let status = stack
            .commands()
            .place_order(hostile_place(&id(), &customer, text))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains("shipping_address"),
            "{what}: {}",
            status.message()
        );
    }
    // The longest accepted recipient: 200 characters (600 bytes in UTF-8).
    let mut request = place(&id(), &customer);
    if let Some(address) = request.shipping_address.as_mut() {
        address.recipient = "\u{20ac}".repeat(200);
    }
    let placed = stack.commands().place_order(request).await.unwrap();
    assert_eq!(placed.into_inner().version, 1);

    let written: i64 = order_testkit::pg::try_connect(stack.db.url())
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM orders.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 1, "only the valid order was written");
}

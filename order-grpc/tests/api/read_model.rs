//! GetOrder and ListOrders read the projector's read model; GetOrder with min_position waits
//! for it. The rows here are written directly, as the projector would (the projector's own
//! tests and the end-to-end tests cover the real thing).

use std::time::{Duration, SystemTime};

use order_proto::v1 as pb;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::*;

const OTHER_CUSTOMER: &str = "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c099";

async fn insert_summary(
    app: &TestApp,
    order: Uuid,
    customer: &str,
    status: &str,
    placed_at: SystemTime,
    position: i64,
) {
    app.db
        .connect()
        .await
        .execute(
            "INSERT INTO orders.order_summaries (order_id, customer_id, status, currency, total_minor, captured_minor, refunded_minor, line_count, stream_version, last_position, placed_at, updated_at)
             VALUES ($1, $2, $3, 'EUR', 3000, 3000, 500, 2, 4, $4, $5, $5)",
            &[&order, &Uuid::parse_str(customer).unwrap(), &status, &position, &placed_at],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn get_order_returns_the_read_model_row() {
    let app = spawn_app().await;
    let order = Uuid::new_v4();
    insert_summary(&app, order, CUSTOMER, "Confirmed", SystemTime::now(), 17).await;
    let got = app
        .queries()
        .get_order(pb::GetOrderRequest {
            order_id: order.to_string(),
            min_position: None,
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(got.order_id, order.to_string());
    assert_eq!(got.status(), pb::OrderStatus::Confirmed);
    assert_eq!((got.version, got.last_position, got.line_count), (4, 17, 2));
    assert_eq!(got.total, eur(3000));
    assert_eq!(got.refunded, eur(500));
    let unknown = app
        .queries()
        .get_order(pb::GetOrderRequest {
            order_id: id(),
            min_position: None,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn list_orders_filters_and_pages_newest_first() {
    let app = spawn_app().await;
    let start = SystemTime::now() - Duration::from_secs(3600);
    let statuses = ["Placed", "Confirmed", "Cancelled"];
    let mut mine = Vec::new();
    for n in 0..23u64 {
        let order = Uuid::new_v4();
        let customer = if n % 4 == 0 { OTHER_CUSTOMER } else { CUSTOMER };
        // Some orders share a timestamp: the order id breaks the tie.
        let placed_at = start + Duration::from_secs(n / 2);
        insert_summary(
            &app,
            order,
            customer,
            statuses[n as usize % 3],
            placed_at,
            n as i64,
        )
        .await;
        if customer == CUSTOMER {
            mine.push((placed_at, order, statuses[n as usize % 3]));
        }
    }
    mine.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));

    let list = |customer: &str, status: pb::OrderStatus, page_size: u32, token: String| {
        let mut client = app.queries();
        let request = pb::ListOrdersRequest {
            customer_id: customer.to_owned(),
            status: status as i32,
            page_size,
            page_token: token,
        };
        async move { client.list_orders(request).await.map(|r| r.into_inner()) }
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(CUSTOMER, pb::OrderStatus::Unspecified, 4, token)
            .await
            .unwrap();
        assert!(page.orders.len() <= 4);
        seen.extend(
            page.orders
                .iter()
                .map(|o| Uuid::parse_str(&o.order_id).unwrap()),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        mine.iter().map(|m| m.1).collect::<Vec<_>>(),
        "every order of the customer, newest first, once"
    );

    let confirmed = list(CUSTOMER, pb::OrderStatus::Confirmed, 100, String::new())
        .await
        .unwrap();
    let expected: Vec<String> = mine
        .iter()
        .filter(|m| m.2 == "Confirmed")
        .map(|m| m.1.to_string())
        .collect();
    assert_eq!(
        confirmed
            .orders
            .iter()
            .map(|o| o.order_id.clone())
            .collect::<Vec<_>>(),
        expected
    );
    assert!(confirmed.next_page_token.is_empty());
    let everything = list("", pb::OrderStatus::Unspecified, 0, String::new())
        .await
        .unwrap();
    assert_eq!(
        everything.orders.len(),
        23,
        "page size 0 means the default of 50"
    );
    let cancelled_anyone = list("", pb::OrderStatus::Cancelled, 500, String::new())
        .await
        .unwrap();
    assert!(
        cancelled_anyone
            .orders
            .iter()
            .all(|o| o.status() == pb::OrderStatus::Cancelled)
    );

    for (customer, status, page_size, token, field) in [
        ("not-a-uuid", 0, 10, "", "customer_id"),
        (CUSTOMER, 42, 10, "", "status"),
        (CUSTOMER, 0, 10, "v1.garbage", "page_token"),
        // The contract says 1-500 (0 = 50): more is refused, not clamped.
        (CUSTOMER, 0, 501, "", "page_size"),
        (CUSTOMER, 0, u32::MAX, "", "page_size"),
    ] {
        let error = app
            .queries()
            .list_orders(pb::ListOrdersRequest {
                customer_id: customer.into(),
                status,
                page_size,
                page_token: token.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&error), [field]);
    }
}

/// GetOrderEvents with a position the log has not reached (of the future, or of a database
/// restored to an earlier point) waits for it, and answers once it is there; never at once
/// without it.
#[tokio::test]
async fn get_order_events_with_a_position_beyond_the_log_waits_for_it() {
    let app = spawn_app().await;
    let order = id();
    let placed = app
        .commands()
        .place_order(place(&order))
        .await
        .unwrap()
        .into_inner();
    let beyond = placed.global_position + 1;
    let mut request = tonic::Request::new(pb::GetOrderEventsRequest {
        order_id: order.clone(),
        after_version: 0,
        min_position: Some(beyond),
        max_events: None,
    });
    request.set_timeout(Duration::from_millis(300));
    let status = app
        .raw_queries()
        .get_order_events(request)
        .await
        .unwrap_err();
    // Whose answer it is (the handler's "the log has not reached position", or the gateway's
    // timer on a machine too busy for the handler to answer first) does not matter: not OK.
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    // Its own position answers at once; the one beyond, once another order is placed.
    let events = app
        .queries()
        .get_order_events(pb::GetOrderEventsRequest {
            order_id: order.clone(),
            after_version: 0,
            min_position: Some(placed.global_position),
            max_events: None,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    let waiting = {
        let mut client = app.queries();
        let request = pb::GetOrderEventsRequest {
            order_id: order.clone(),
            after_version: 0,
            min_position: Some(beyond),
            max_events: None,
        };
        tokio::spawn(async move { client.get_order_events(request).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "it waits while the log is short of it"
    );
    app.commands().place_order(place(&id())).await.unwrap();
    let answered = waiting.await.unwrap().unwrap().into_inner().events;
    assert_eq!(answered.len(), 1);
}

#[tokio::test]
async fn get_order_with_min_position_waits_for_the_read_model() {
    let app = spawn_app().await;
    let order = id();
    let placed = app
        .commands()
        .place_order(place(&order))
        .await
        .unwrap()
        .into_inner();

    // Nothing projects this order: a short deadline ends in the server's DEADLINE_EXCEEDED
    // (asked through a client that does not enforce the deadline itself, so that the answer
    // is the server's, however slow the machine).
    let mut request = tonic::Request::new(pb::GetOrderRequest {
        order_id: order.clone(),
        min_position: Some(placed.global_position),
    });
    request.set_timeout(Duration::from_millis(300));
    let status = app.raw_queries().get_order(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    // The "projector" catches up a moment later: the waiting call then answers.
    let waiting = {
        let mut client = app.queries();
        let request = pb::GetOrderRequest {
            order_id: order.clone(),
            min_position: Some(placed.global_position),
        };
        tokio::spawn(async move { client.get_order(request).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "GetOrder waits while the read model is behind"
    );
    let order_id = Uuid::parse_str(&order).unwrap();
    insert_summary(
        &app,
        order_id,
        CUSTOMER,
        "Placed",
        SystemTime::now(),
        placed.global_position as i64,
    )
    .await;
    app.db
        .connect()
        .await
        .execute(
            "INSERT INTO orders.subscriptions (name, checkpoint_xid, checkpoint_position)
             SELECT 'read_model', transaction_id, global_position FROM orders.events WHERE global_position = $1",
            &[&(placed.global_position as i64)],
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.into_inner().order.unwrap().order_id, order);
}

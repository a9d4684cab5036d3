//! What the pages show, and that they show it safely.

use std::time::Duration;

use order_testkit::pg::TestDatabase;
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

/// Texts that must be shown as they are, never interpreted (the e2e tests' corpus, and some
/// aimed at HTML and SVG).
const HOSTILE: &[&str] = &[
    "Robert'); DROP TABLE orders.events;--",
    "<script>alert(1)</script> &amp; &#0;",
    "\"><img src=x onerror=alert(1)>",
    "</pre><svg onload=alert(1)>",
    "javascript:alert(1)",
    "\u{202e}fdp.exe \u{200b}zero\u{feff}width\u{2028}sep",
    "{{7*7}} ${7*7} <%= 7*7 %>",
];

#[tokio::test]
async fn every_answer_carries_a_strict_policy_and_no_page_has_inline_script_or_style() {
    let db = TestDatabase::migrated().await;
    let order = Uuid::new_v4();
    insert_event(&db, order, 1, "OrderPlaced", &json!({"note": "x"})).await;
    let console = start(&db, &[]).await;
    for path in [
        "/services",
        "/flow",
        "/subscriptions",
        "/queues",
        "/alarms",
        "/orders",
        &format!("/orders/{order}"),
        "/fragments/flow",
        "/api/charts/services",
        "/no-such-page",
        "/login",
    ] {
        let answer = get(console.addr, path).await;
        assert_eq!(
            answer.header("content-security-policy"),
            order_console::web::CSP,
            "{path}"
        );
        assert!(
            answer
                .header("content-security-policy")
                .contains("script-src 'self'")
        );
        assert_eq!(answer.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(answer.header("x-frame-options"), "DENY", "{path}");
        assert_eq!(answer.header("cache-control"), "no-store", "{path}");
        let html = answer.body.to_lowercase();
        for (i, _) in html.match_indices("<script") {
            let tag = &html[i..html[i..].find('>').map_or(html.len(), |e| i + e)];
            assert!(
                tag.contains(" src=\"/static/"),
                "{path}: inline script {tag}"
            );
        }
        assert!(!html.contains(" style="), "{path}: inline style");
        assert!(!html.contains("<style"), "{path}: inline style");
        for handler in [" onload=", " onerror=", " onclick=", "javascript:"] {
            assert!(!html.contains(handler), "{path}: {handler}");
        }
    }
    assert_eq!(get(console.addr, "/no-such-page").await.status, 404);
    // The static files are ours and typed.
    let js = get(console.addr, "/static/console.js").await;
    assert_eq!(js.header("content-type"), "text/javascript; charset=utf-8");
    assert_eq!(get(console.addr, "/static/../Cargo.toml").await.status, 404);
}

#[tokio::test]
async fn hostile_text_in_an_event_is_shown_escaped() {
    let db = TestDatabase::migrated().await;
    let order = Uuid::new_v4();
    let payload = json!({ "texts": HOSTILE, HOSTILE[2]: HOSTILE[1] });
    insert_event(&db, order, 1, "OrderPlaced", &payload).await;
    let console = start(&db, &[]).await;
    let page = get(console.addr, &format!("/orders/{order}")).await;
    assert_eq!(page.status, 200);
    for text in HOSTILE {
        // As text: the characters HTML would read are escaped, the rest is unchanged.
        let escaped = text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;");
        // In a payload, JSON's own escapes stand for the characters that reorder text.
        let in_json = serde_json::to_string(text).unwrap();
        let in_json = in_json[1..in_json.len() - 1]
            .replace('\u{202e}', "\\u202e")
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;");
        assert!(
            page.body.contains(&escaped) || page.body.contains(&in_json),
            "{text:?} is not shown as text"
        );
    }
    for raw in ["<script>alert", "<img src=x", "<svg onload"] {
        assert!(!page.body.contains(raw), "{raw} reached the page unescaped");
    }
    // A bidi override inside the payload would reorder the JSON around it on screen (the
    // closing quote and comma): the payload shows it as JSON's escape instead.
    let payload_box = page
        .body
        .split_once("data-payload>")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(payload, _)| payload)
        .expect("a payload box");
    assert!(payload_box.contains("\\u202efdp.exe"), "{payload_box}");
    assert!(!payload_box.contains('\u{202e}'), "{payload_box}");
}

#[tokio::test]
async fn a_long_timeline_shows_its_latest_events_and_says_how_many_it_left_out() {
    let db = TestDatabase::migrated().await;
    let order = Uuid::new_v4();
    db.connect()
        .await
        .execute(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload)
             SELECT $1, v, gen_random_uuid(), CASE WHEN v = 2050 THEN 'OrderCancelled' ELSE 'Noted' END, 1, '{}'
               FROM generate_series(1, 2050) AS v",
            &[&order],
        )
        .await
        .unwrap();
    let console = start(&db, &[]).await;
    let page = get(console.addr, &format!("/orders/{order}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-events=\"2000\""), "{}", page.body);
    assert!(
        page.body.contains("data-type=\"OrderCancelled\""),
        "the newest event is shown"
    );
    assert!(page.body.contains("data-version=\"51\""));
    assert!(!page.body.contains("data-version=\"50\""));
    assert!(
        page.body
            .contains("2050 events; the latest 2000 are shown (v51 to v2050)"),
        "the page says the timeline is cut"
    );
}

#[tokio::test]
async fn orders_are_found_by_id_or_customer_and_bad_ids_are_explained() {
    let db = TestDatabase::migrated().await;
    let order = Uuid::new_v4();
    for (version, event_type) in [(1, "OrderPlaced"), (2, "InventoryReserved")] {
        insert_event(&db, order, version, event_type, &json!({})).await;
    }
    // An event written inside a trace links to it; a malformed traceparent links nowhere.
    let client = db.connect().await;
    for (version, traceparent) in [
        (
            3i64,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        (4, "00-<script>-00f067aa0ba902b7-01"),
    ] {
        client
            .execute(
                "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, traceparent)
                 VALUES ($1, $2, $3, 'PaymentAuthorized', 1, '{}', $4)",
                &[&order, &version, &Uuid::new_v4(), &traceparent],
            )
            .await
            .unwrap();
    }
    let console = start(
        &db,
        &["--trace-url", "https://traces.example/trace/{trace_id}?x=1"],
    )
    .await;
    let found = get(console.addr, &format!("/orders?q=%20{order}%20")).await;
    assert_eq!(found.status, 303);
    assert_eq!(found.header("location"), format!("/orders/{order}"));
    let page = get(console.addr, &format!("/orders/{order}")).await;
    assert!(page.body.contains("data-events=\"4\""), "{}", page.body);
    assert!(
        page.body
            .contains("href=\"https://traces.example/trace/4bf92f3577b34da6a3ce929d0e0e4736?x=1\""),
        "{}",
        page.body
    );
    assert_eq!(
        page.body.matches("href=\"https://traces.example").count(),
        1
    );
    assert!(page.body.contains("InventoryReserved"));
    assert!(page.body.contains("Not in the read model yet"));
    assert!(page.body.contains("corr-1") && page.body.contains("tester"));

    let unknown = get(console.addr, &format!("/orders?q={}", Uuid::new_v4())).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("data-error=\"not-found\""));
    let bad = get(console.addr, "/orders?q=%3Cb%3Enot-an-id").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("&lt;b&gt;not-an-id"), "{}", bad.body);
    assert_eq!(get(console.addr, "/orders/not-an-id").await.status, 400);
    let long = "x".repeat(5000);
    let too_long = get(console.addr, &format!("/orders?q={long}")).await;
    assert_eq!(too_long.status, 400);
    assert!(
        !too_long.body.contains(&long[..300]),
        "the whole input is echoed"
    );
}

/// A customer with more orders than a page: the pages, followed by their "older orders" links,
/// show every order once, newest first, ties on the placing time broken by order id, and the
/// last page has no link. Another customer's orders never appear. A cursor the list did not
/// write is explained, not guessed at.
#[tokio::test]
async fn a_customer_with_more_orders_than_a_page_is_listed_page_by_page_each_order_once() {
    let db = TestDatabase::migrated().await;
    let customer = Uuid::new_v4();
    let other = Uuid::new_v4();
    // 250 orders, in groups of 3 placed in the same microsecond (ties across page boundaries),
    // and 5 of another customer placed among them.
    db.connect()
        .await
        .execute(
            "INSERT INTO orders.order_summaries (order_id, customer_id, status, currency, total_minor,
                    captured_minor, refunded_minor, line_count, stream_version, last_position,
                    placed_at, updated_at)
             SELECT gen_random_uuid(), CASE WHEN n > 250 THEN $2::uuid ELSE $1::uuid END, 'Placed', 'EUR', 100,
                    0, 0, 1, 1, n, timestamptz '2026-01-01 00:00:00.123456+00' + (n / 3) * interval '1 second',
                    now()
               FROM generate_series(1, 255) AS n",
            &[&customer, &other],
        )
        .await
        .unwrap();
    let expected: Vec<String> = db
        .connect()
        .await
        .query(
            "SELECT order_id::text FROM orders.order_summaries WHERE customer_id = $1
              ORDER BY placed_at DESC, order_id DESC",
            &[&customer],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(expected.len(), 250);
    let console = start(&db, &[]).await;

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut path = format!("/orders?q={customer}");
    loop {
        let page = get(console.addr, &path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let rows: Vec<String> = page
            .body
            .split("data-order=\"")
            .skip(1)
            .map(|rest| rest[..36].to_owned())
            .collect();
        sizes.push(rows.len());
        seen.extend(rows);
        // the "older orders" link, `<a href="..." rel="next" data-next>`
        let Some(anchor) = page.body.split("<a ").find(|a| a.contains("data-next")) else {
            break;
        };
        let href = anchor.split("href=\"").nth(1).unwrap();
        path = href[..href.find('"').unwrap()].replace("&amp;", "&");
        assert!(sizes.len() < 10, "the pages never end");
    }
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(
        seen, expected,
        "the pages together are not the customer's orders, newest first, each once"
    );

    // A cursor the list did not write: explained; one past the last order: an empty page.
    for bad in ["yesterday", "12_not-a-uuid", "99999999999999999999_x"] {
        let page = get(console.addr, &format!("/orders?q={customer}&before={bad}")).await;
        assert_eq!(page.status, 400, "{bad}: {}", page.body);
        assert!(page.body.contains("not a page of this list"), "{bad}");
    }
    let end = get(
        console.addr,
        &format!("/orders?q={customer}&before=0_{}", Uuid::nil()),
    )
    .await;
    assert_eq!(end.status, 200);
    assert!(end.body.contains("data-page-orders=\"0\""), "{}", end.body);
    assert!(!end.body.contains("data-next"));
}

/// Transaction ids of different widths (9, 10, 99, 100, ...): the flow reads the log in the
/// gap-safe order (numeric, not text) and counts each event once, however often it is asked.
#[tokio::test]
async fn flow_counts_each_event_once_whatever_the_width_of_the_transaction_ids() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    // Only ids older than every transaction in flight are read.
    let horizon: i64 = client
        .query_one(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let xids: Vec<String> = [9, 10, 99, 100, 999, 1000, 9999, 10000]
        .into_iter()
        .filter(|x| *x < horizon)
        .map(|x: i64| x.to_string())
        .collect();
    assert!(xids.len() >= 4, "the cluster is too young: {horizon}");
    let mut expected = 0;
    for xid in &xids {
        for _ in 0..3 {
            client
                .execute(
                    "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, transaction_id)
                     VALUES ($1, 1, $2, 'OrderPlaced', 1, '{}', $3::text::xid8)",
                    &[&Uuid::new_v4(), &Uuid::new_v4(), &xid],
                )
                .await
                .unwrap();
            expected += 1;
        }
    }
    let console = start(&db, &[]).await;
    let placed = |body: &str| -> u64 {
        body.match_indices("data-placed>")
            .map(|(i, m)| {
                let rest = &body[i + m.len()..];
                rest[..rest.find('<').unwrap()].parse::<u64>().unwrap()
            })
            .sum()
    };
    for _ in 0..3 {
        let body = get(console.addr, "/fragments/flow").await.body;
        assert_eq!(placed(&body), expected, "{body}");
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    // And new events are added as they come: once past the gap-safe fence (another test's
    // transaction on the cluster, older than this event's, can hold it back for a while on a
    // busy machine), within the board's refresh.
    insert_event(&db, Uuid::new_v4(), 1, "OrderPlaced", &json!({})).await;
    let fenced = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if order_testkit::pg::hidden_events(&client).await == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < fenced,
            "the new event stayed behind the fence for 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually(console.addr, "/fragments/flow", 10, |body| {
        placed(body) == expected + 1
    })
    .await;
}

/// A stand-in admin endpoint: `/readyz` and `/metrics` as given.
async fn fake_admin(ready: (u16, &'static str), metrics: &'static str) -> std::net::SocketAddr {
    use axum::http::StatusCode;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let status = StatusCode::from_u16(ready.0).unwrap();
    let app = axum::Router::new()
        .route(
            "/readyz",
            axum::routing::get(move || async move { (status, ready.1) }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || async move { metrics }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn services_show_readiness_version_and_rates_and_say_why_one_is_down() {
    let db = TestDatabase::migrated().await;
    let grpc = fake_admin(
        (200, "ready"),
        "order_build_info{service=\"order-grpc\",version=\"9.8.7\"} 1\nprocess_start_time_seconds 1\norder_commands_total{command=\"PlaceOrder\",outcome=\"ok\"} 5\n",
    )
    .await;
    let sick = fake_admin(
        (503, "not ready: database <b>unavailable</b>"),
        "order_build_info{service=\"order-worker\",version=\"9.8.7\"} 1\n",
    )
    .await;
    // Nothing listens there.
    let gone = order_testkit::net::free_addr().expect("a free port");
    let services = format!("grpc=http://{grpc},http://{sick},gone=http://{gone}");
    let console = start(&db, &["--services", &services]).await;
    let body = eventually(console.addr, "/fragments/services", 20, |b| {
        b.contains("data-health=\"bad\"") && b.contains("9.8.7") && b.contains("refused")
    })
    .await;
    assert!(body.contains("data-service=\"grpc\""), "{body}");
    assert!(body.contains("1/3 services ready"), "{body}");
    assert!(
        body.contains(&format!("data-service=\"order-worker {sick}\"")),
        "{body}"
    );
    assert!(
        body.contains("database &lt;b&gt;unavailable&lt;/b&gt;"),
        "{body}"
    );
    assert!(body.contains("data-service=\"gone\""), "{body}");
    let charts = get(console.addr, "/api/charts/services").await;
    assert_eq!(charts.header("content-type"), "application/json");
    let charts: serde_json::Value = serde_json::from_str(&charts.body).unwrap();
    assert!(charts.as_array().is_some_and(|c| !c.is_empty()), "{charts}");
}

#[tokio::test]
async fn a_subscription_without_a_live_owner_is_red_and_a_followed_one_green() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    let order = Uuid::new_v4();
    let position = insert_event(&db, order, 1, "OrderPlaced", &json!({})).await;
    client
        .execute(
            "INSERT INTO orders.subscriptions (name, checkpoint_xid, checkpoint_position, owner, lease_expires_at, events_processed)
             SELECT 'read_model', transaction_id, global_position, 'p-1', now() + interval '1 hour', 1 FROM orders.events WHERE global_position = $1",
            &[&position],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO orders.subscriptions (name, owner, lease_expires_at, last_error, last_error_at)
             VALUES ('sqs_publisher', 'p-0', now() - interval '1 minute', 'sqs: <unreachable>', now())",
            &[],
        )
        .await
        .unwrap();
    let console = start(&db, &[]).await;
    let body = get(console.addr, "/fragments/subscriptions").await.body;
    let row = |name: &str| -> String {
        let start = body.find(&format!("data-subscription=\"{name}\"")).unwrap();
        body[start..start + body[start..].find("</tr>").unwrap()].to_owned()
    };
    let followed = row("read_model");
    assert!(followed.contains("data-health=\"ok\""), "{followed}");
    assert!(followed.contains("data-lag-events>0<"), "{followed}");
    let orphan = row("sqs_publisher");
    assert!(orphan.contains("data-health=\"bad\""), "{orphan}");
    assert!(orphan.contains("no owner"), "{orphan}");
    assert!(orphan.contains("data-lag-events>1<"), "{orphan}");
    assert!(orphan.contains("sqs: &lt;unreachable&gt;"), "{orphan}");
    assert!(body.contains("data-replay=\"none\""));
}

#[tokio::test]
async fn dead_letters_are_read_and_left_in_the_queue() {
    let db = TestDatabase::migrated().await;
    let queues = order_testkit::sqs::fifo_queue_pair(3).await;
    let sqs = order_testkit::sqs::client();
    let order = Uuid::new_v4();
    sqs.send_message()
        .queue_url(&queues.dlq_url)
        .message_body("{\"type\":\"OrderPlaced\",\"data\":\"<script>alert(1)</script>\"}")
        .message_group_id(order.to_string())
        .message_deduplication_id("d1")
        .message_attributes(
            "dlq_kind",
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("permanent")
                .build()
                .unwrap(),
        )
        .message_attributes(
            "dlq_reason",
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("FAILED_PRECONDITION: <cannot ship>")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let url = reader_url(&db).await;
    let settings = settings(
        &url,
        &[
            "--orders-queue-url",
            &queues.queue_url,
            "--orders-dlq-url",
            &queues.dlq_url,
        ],
    );
    let console = start_with(settings, Some(sqs.clone())).await;
    let body = eventually(console.addr, "/fragments/queues", 20, |b| {
        b.contains("data-dead-letters=\"1\"")
    })
    .await;
    assert!(body.contains("permanent"), "{body}");
    assert!(
        body.contains("FAILED_PRECONDITION: &lt;cannot ship&gt;"),
        "{body}"
    );
    assert!(
        body.contains(&format!("href=\"/orders/{order}\"")),
        "{body}"
    );
    assert!(body.contains("OrderPlaced"), "{body}");
    assert!(!body.contains("<script>alert"), "{body}");
    // Still there: the board reads, it never removes.
    let left = order_testkit::sqs::drain_queue(&sqs, &queues.dlq_url).await;
    assert_eq!(left.len(), 1);
    eventually(console.addr, "/fragments/queues", 20, |b| {
        b.contains("tr data-queue=\"dlq\" data-health=\"ok\"")
    })
    .await;

    // A dead letter someone is reading (in flight) is a dead letter still, as the alarm counts.
    sqs.send_message()
        .queue_url(&queues.dlq_url)
        .message_body("{}")
        .message_group_id(order.to_string())
        .message_deduplication_id("d2")
        .send()
        .await
        .unwrap();
    let read = sqs
        .receive_message()
        .queue_url(&queues.dlq_url)
        .visibility_timeout(60)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    assert_eq!(read.messages().len(), 1);
    eventually(console.addr, "/fragments/queues", 20, |b| {
        b.contains("tr data-queue=\"dlq\" data-health=\"bad\"")
    })
    .await;
}

/// SQS that accepts connections and never answers: each source is read on its own, within its
/// own time limit, so a service that dies still turns red within a few scrapes; and the
/// alarms fed by the queues say they cannot be read instead of OK, with the queues' error in
/// the top strip.
#[tokio::test]
async fn a_source_that_stops_answering_freezes_nothing_else_and_is_not_shown_as_fine() {
    let db = TestDatabase::migrated().await;
    // Accepts, holds every connection open, answers nothing.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hole.accept().await {
            held.push(socket);
        }
    });
    let sqs = order_testkit::sqs::client_for(&format!("http://{hole_addr}"));
    // A service that can be stopped.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/readyz", axum::routing::get(|| async { "ready" }))
        .route(
            "/metrics",
            axum::routing::get(|| async {
                "order_build_info{service=\"order-worker\",version=\"1.2.3\"} 1\n"
            }),
        );
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let queue = format!("http://{hole_addr}/000000000000/orders.fifo");
    let dlq = format!("http://{hole_addr}/000000000000/orders-dlq.fifo");
    let url = reader_url(&db).await;
    let console = start_with(
        settings(
            &url,
            &[
                "--services",
                &format!("worker=http://{service}"),
                "--orders-queue-url",
                &queue,
                "--orders-dlq-url",
                &dlq,
            ],
        ),
        Some(sqs),
    )
    .await;
    eventually(console.addr, "/fragments/services", 20, |b| {
        b.contains("1/1 services ready")
    })
    .await;
    serving.abort();
    eventually(console.addr, "/fragments/services", 15, |b| {
        b.contains("0/1 services ready")
    })
    .await;
    // The queues' errors in the top strip, each queue named, once their reads timed out.
    eventually(console.addr, "/fragments/services", 20, |b| {
        b.contains("queues: orders queue: SQS did not answer")
            && b.contains("; DLQ: SQS did not answer")
    })
    .await;
    let alarms = eventually(console.addr, "/fragments/alarms", 15, |b| {
        b.contains("data-alarm=\"dlq-nonempty\"")
    })
    .await;
    assert!(
        !alarms.contains("data-alarm=\"dlq-nonempty\" data-state=\"OK\""),
        "a DLQ that cannot be read is not fine: {alarms}"
    );
}

/// A burst larger than one page of the flow's log read (20,000 events) is counted whole at
/// the next refresh, not a page per refresh (which looked like orders had stopped).
#[tokio::test]
async fn a_burst_of_events_is_counted_whole_at_the_next_refresh() {
    let db = TestDatabase::migrated().await;
    let console = start(&db, &[]).await;
    // The flow's cursor starts before the burst.
    eventually(console.addr, "/fragments/flow", 20, |b| {
        b.contains("data-total-placed")
    })
    .await;
    db.connect()
        .await
        .execute(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload)
             SELECT gen_random_uuid(), 1, gen_random_uuid(), 'OrderPlaced', 1, '{}' FROM generate_series(1, 50000)",
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await; // past the page cache
    let body = get(console.addr, "/fragments/flow").await.body;
    let at = body.find("data-total-placed").unwrap_or(0);
    assert!(
        body.contains("<strong data-total-placed>50000</strong>"),
        "{}",
        &body[at..(at + 200).min(body.len())]
    );
}

/// A rate is the difference of two readings: after one scrape it is not known yet, and the
/// card says "-", not 0.
#[tokio::test]
async fn a_rate_not_measured_yet_is_shown_as_unknown_not_zero() {
    let db = TestDatabase::migrated().await;
    let worker = fake_admin(
        (200, "ready"),
        "order_build_info{service=\"order-worker\",version=\"1.0.0\"} 1\norder_worker_messages_total{outcome=\"done\"} 7\n",
    )
    .await;
    // One scrape (the first comes at once; the next a minute later).
    let console = start(
        &db,
        &[
            "--services",
            &format!("worker=http://{worker}"),
            "--scrape-ms",
            "60000",
        ],
    )
    .await;
    let body = eventually(console.addr, "/fragments/services", 20, |b| {
        b.contains("1/1 services ready")
    })
    .await;
    assert!(body.contains("data-rate=\"messages\">-<"), "{body}");
}

/// Times no RFC 3339 formatter of the year 1970 to 9999 takes (history imported from before
/// 1970, a mistyped year 10000) are shown, never a failed page.
#[tokio::test]
async fn an_order_with_times_before_1970_or_after_9999_is_shown() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    let order = Uuid::new_v4();
    for (version, at) in [(1i64, "1969-12-31T00:00:00Z"), (2, "10000-01-01T00:00:00Z")] {
        client
            .execute(
                "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, recorded_at)
                 VALUES ($1, $2, gen_random_uuid(), 'OrderPlaced', 1, '{}', $3::text::timestamptz)",
                &[&order, &version, &at],
            )
            .await
            .unwrap();
    }
    let console = start(&db, &[]).await;
    let addr = console.addr;
    let page = tokio::spawn(async move { get(addr, &format!("/orders/{order}")).await })
        .await
        .expect("the page answers");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("1969-12-31T00:00:00Z"), "{}", page.body);
    assert!(page.body.contains("data-events=\"2\""), "{}", page.body);
}

/// One scrape of a service (`/readyz`, then `/metrics`) takes at most the scraper's time
/// limit in all, not that limit per request: a service that answers each request slowly,
/// each within the limit, is down.
#[tokio::test]
async fn a_scrape_is_bounded_as_a_whole() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        "ready"
    };
    let app = axum::Router::new()
        .route("/readyz", axum::routing::get(slow))
        .route("/metrics", axum::routing::get(slow));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let scraper = order_console::services::Scraper::new(Duration::from_millis(1000));
    let started = std::time::Instant::now();
    let outcome = scraper.scrape(&addr.to_string()).await;
    let took = started.elapsed();
    assert!(
        matches!(&outcome, order_console::services::ScrapeOutcome::Unreachable(why) if why.contains("1000 ms")),
        "{outcome:?}"
    );
    assert!(
        took < Duration::from_millis(1400),
        "the scrape took {took:?}"
    );
}

/// With the read model behind the log (the projector down), a customer whose orders are not
/// projected yet is not said not to exist: the answer says how far behind the read model is;
/// once it caught up, nothing is said about it.
#[tokio::test]
async fn a_customer_search_says_when_the_read_model_is_behind() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    let customer = Uuid::new_v4();
    let first = insert_event(&db, Uuid::new_v4(), 1, "OrderPlaced", &json!({})).await;
    // The read model projected everything up to the first event.
    client
        .execute(
            "INSERT INTO orders.subscriptions (name, checkpoint_xid, checkpoint_position, owner, lease_expires_at, events_processed)
             SELECT 'read_model', transaction_id, global_position, 'p-1', now() + interval '1 hour', 1 FROM orders.events WHERE global_position = $1",
            &[&first],
        )
        .await
        .unwrap();
    let console = start(&db, &[]).await;
    let caught_up = get(console.addr, &format!("/orders?q={customer}")).await;
    assert_eq!(caught_up.status, 404);
    assert!(
        !caught_up.body.contains("data-read-model-behind"),
        "{}",
        caught_up.body
    );
    // The customer's order, and another, placed while the projector is down.
    let order = Uuid::new_v4();
    insert_event(
        &db,
        order,
        1,
        "OrderPlaced",
        &json!({"customer_id": customer.to_string()}),
    )
    .await;
    insert_event(&db, Uuid::new_v4(), 1, "OrderPlaced", &json!({})).await;
    let behind = eventually(console.addr, &format!("/orders?q={customer}"), 10, |b| {
        b.contains("data-read-model-behind=\"2\"")
    })
    .await;
    assert!(
        behind.contains("the read model is 2 events behind the log"),
        "{behind}"
    );
    assert!(
        !behind.contains("No order and no customer has the id"),
        "{behind}"
    );
}

/// A database that holds every read of the flow page (here: the tables locked, each read
/// ended by the statement timeout) delays the page by one read's limit, not by the sum of
/// its reads': the flow and the states are read side by side.
#[tokio::test]
async fn the_flow_page_waits_for_one_read_limit_not_their_sum() {
    let db = TestDatabase::migrated().await;
    insert_event(&db, Uuid::new_v4(), 1, "OrderPlaced", &json!({})).await;
    let console = start(&db, &["--db-statement-timeout-ms", "5000"]).await;
    assert_eq!(get(console.addr, "/readyz").await.status, 200);
    let mut locker = db.connect().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE orders.events, orders.order_summaries IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let page = get(console.addr, "/fragments/flow").await;
    let took = started.elapsed();
    tx.rollback().await.unwrap();
    assert!(page.body.contains("role=\"alert\""), "{}", page.body);
    // Each read waits 5 s for its lock; one after the other they took 10 s. Together, 5 s
    // and what a loaded machine adds.
    assert!(
        took < Duration::from_millis(8000),
        "the flow page took {took:?}"
    );
}

/// Messages waiting and no projector scraped (no sent count): the oldest message's age is
/// unknown, said so, and its alarm is not OK (CloudWatch still measures the age).
#[tokio::test]
async fn without_a_sent_count_the_oldest_message_age_is_unknown_not_fine() {
    let db = TestDatabase::migrated().await;
    let queues = order_testkit::sqs::fifo_queue_pair(3).await;
    let sqs = order_testkit::sqs::client();
    sqs.send_message()
        .queue_url(&queues.queue_url)
        .message_body("{}")
        .message_group_id(Uuid::new_v4().to_string())
        .message_deduplication_id("m1")
        .send()
        .await
        .unwrap();
    let url = reader_url(&db).await;
    let settings = settings(
        &url,
        &[
            "--orders-queue-url",
            &queues.queue_url,
            "--orders-dlq-url",
            &queues.dlq_url,
        ],
    );
    let console = start_with(settings, Some(sqs.clone())).await;
    let page = eventually(console.addr, "/fragments/queues", 15, |b| {
        b.contains("data-queue=\"orders\"") && !b.contains("<td class=\"num\" data-visible>-")
    })
    .await;
    assert!(page.contains("data-oldest=\"unknown\""), "{page}");
    let alarms = get(console.addr, "/fragments/alarms").await.body;
    assert!(
        alarms.contains("data-alarm=\"queue-oldest-message-age\" data-state=\"INSUFFICIENT_DATA\""),
        "{alarms}"
    );
}

/// An open page waits for a refresh as long as the server may take to answer one (three
/// database reads' limits, each the statement timeout + 2 s, and a second's margin), never
/// less than two refreshes: a slow fragment that is still working
/// is shown, not given up every cycle and asked again.
#[tokio::test]
async fn a_page_waits_for_a_refresh_as_long_as_the_server_may_take() {
    let db = TestDatabase::migrated().await;
    let console = start(&db, &["--db-statement-timeout-ms", "3000"]).await;
    for path in ["/services", "/flow", "/subscriptions", "/queues", "/alarms"] {
        let page = get(console.addr, path).await.body;
        // 3 x (3 s + 2 s) + 1 s, more than two refreshes of 500 ms.
        assert!(
            page.contains(r#"data-refresh-ms="500""#)
                && page.contains(r#"data-patience-ms="16000""#),
            "{path}: {page}"
        );
    }
    // A long refresh interval: two of them.
    let mut settings = settings(
        &reader_url(&db).await,
        &["--db-statement-timeout-ms", "1000"],
    );
    settings.refresh_interval = Duration::from_secs(30);
    let slow = start_with(settings, None).await;
    let page = get(slow.addr, "/flow").await.body;
    assert!(page.contains(r#"data-patience-ms="60000""#), "{page}");
    // The script takes its patience from the page.
    let js = get(console.addr, "/static/console.js").await.body;
    assert!(js.contains("body.dataset.patienceMs"), "{js}");
}

/// The state of a queue alarm on the alarms fragment.
fn alarm_state<'a>(alarms: &'a str, name: &str) -> &'a str {
    let row = &alarms[alarms
        .find(&format!("data-alarm=\"{name}\""))
        .unwrap_or_else(|| panic!("no {name}: {alarms}"))..];
    let state = &row[row.find("data-state=\"").unwrap() + "data-state=\"".len()..];
    &state[..state.find('"').unwrap()]
}

/// A queue the board does not read is never shown as fine: with only the DLQ configured and
/// failing to answer, the top strip says so and `dlq-nonempty` is INSUFFICIENT_DATA; the
/// alarms of the orders queue, which is not configured, are not OK either, and say why.
#[tokio::test]
async fn queue_alarms_of_a_queue_not_read_or_not_configured_are_not_ok() {
    let db = TestDatabase::migrated().await;
    // A port nothing listens on: every read of the DLQ fails.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let sqs = order_testkit::sqs::client_for(&format!("http://{closed}"));
    let dlq = format!("http://{closed}/000000000000/orders-dlq.fifo");
    let url = reader_url(&db).await;
    let console = start_with(settings(&url, &["--orders-dlq-url", &dlq]), Some(sqs)).await;
    eventually(console.addr, "/fragments/services", 30, |b| {
        b.contains("queues: ")
    })
    .await;
    let alarms = get(console.addr, "/fragments/alarms").await.body;
    assert_eq!(alarm_state(&alarms, "dlq-nonempty"), "INSUFFICIENT_DATA");
    for name in [
        "scaleout-sqs-backlog-high",
        "scalein-sqs-backlog-empty",
        "queue-backlog-high-sustained",
        "queue-oldest-message-age",
    ] {
        assert_eq!(alarm_state(&alarms, name), "INSUFFICIENT_DATA", "{name}");
    }
    assert!(alarms.contains("ORDERS_QUEUE_URL not set"), "{alarms}");
    let queues = get(console.addr, "/fragments/queues").await.body;
    assert!(
        queues.contains("role=\"alert\""),
        "the DLQ's error: {queues}"
    );

    // No queue at all: every queue alarm says it is not configured, none is OK.
    let console = start(&db, &[]).await;
    let alarms = get(console.addr, "/fragments/alarms").await.body;
    for name in [
        "dlq-nonempty",
        "scaleout-sqs-backlog-high",
        "scalein-sqs-backlog-empty",
        "queue-backlog-high-sustained",
        "queue-oldest-message-age",
    ] {
        assert_eq!(alarm_state(&alarms, name), "INSUFFICIENT_DATA", "{name}");
    }
    assert!(alarms.contains("ORDERS_DLQ_URL not set"), "{alarms}");
}

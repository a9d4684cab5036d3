//! GetOrder, GetOrderEvents and SubscribeEvents.

use std::time::Duration;

use futures::StreamExt;
use order_proto::v1 as pb;
use pb::event::Payload;
use pb::subscribe_events_request::Start;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn order_events_come_back_typed_and_in_version_order() {
    let app = spawn_app().await;
    let order = order_in_state(&app, 2).await;
    let events = app
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
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["OrderPlaced", "InventoryReserved", "PaymentAuthorized"]
    );
    assert_eq!(
        events.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let Some(Payload::OrderPlaced(placed)) = &events[0].payload else {
        panic!("{:?}", events[0].payload)
    };
    assert_eq!(placed.total, eur(TOTAL));
    assert_eq!(placed.lines.len(), 2);
    assert_eq!(placed.shipping_method(), pb::ShippingMethod::Express);
    assert_eq!(placed.shipping_address.as_ref().unwrap().country, "GB");
    let Some(Payload::PaymentAuthorized(authorized)) = &events[2].payload else {
        panic!()
    };
    assert_eq!(authorized.payment_id, "pay-1");
    assert!(
        events
            .iter()
            .all(|e| e.order_id == order && !e.command_id.is_empty() && !e.cursor.is_empty())
    );

    let tail = app
        .queries()
        .get_order_events(pb::GetOrderEventsRequest {
            order_id: order,
            after_version: 2,
            min_position: None,
            max_events: None,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].event_type, "PaymentAuthorized");
}

async fn next_event(stream: &mut tonic::Streaming<pb::Event>) -> pb::Event {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream is open")
        .expect("no error")
}

#[tokio::test]
async fn a_subscription_catches_up_then_follows_the_log_live() {
    let app = spawn_app().await;
    let first = order_in_state(&app, 1).await;
    let mut stream = app
        .queries()
        .subscribe_events(pb::SubscribeEventsRequest { start: None })
        .await
        .unwrap()
        .into_inner();
    let caught_up = [next_event(&mut stream).await, next_event(&mut stream).await];
    assert!(caught_up.iter().all(|e| e.order_id == first));

    // Live: a new order appears without polling delay worth mentioning.
    let started = std::time::Instant::now();
    let second = order_in_state(&app, 0).await;
    let live = next_event(&mut stream).await;
    assert_eq!(
        (live.order_id.as_str(), live.event_type.as_str()),
        (second.as_str(), "OrderPlaced")
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Resume after a cursor: exactly what came after it.
    let mut resumed = app
        .queries()
        .subscribe_events(pb::SubscribeEventsRequest {
            start: Some(Start::AfterCursor(caught_up[0].cursor.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    let again = [
        next_event(&mut resumed).await,
        next_event(&mut resumed).await,
    ];
    assert_eq!(again[0].event_id, caught_up[1].event_id);
    assert_eq!(again[1].event_id, live.event_id);

    // After a position: every event above it.
    let mut by_position = app
        .queries()
        .subscribe_events(pb::SubscribeEventsRequest {
            start: Some(Start::AfterPosition(caught_up[1].global_position)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut by_position).await.event_id, live.event_id);
}

#[tokio::test]
async fn a_bad_cursor_is_invalid_and_subscriptions_are_limited() {
    let app = spawn_app_with(Options {
        max_subscriptions: 1,
        ..Options::default()
    })
    .await;
    let status = app
        .queries()
        .subscribe_events(pb::SubscribeEventsRequest {
            start: Some(Start::AfterCursor("12;DROP".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["after_cursor"]);

    let open = app
        .queries()
        .subscribe_events(pb::SubscribeEventsRequest { start: None })
        .await
        .unwrap();
    let refused = app
        .queries()
        .subscribe_events(pb::SubscribeEventsRequest { start: None })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);

    // The client going away ends the server's work and frees the slot.
    drop(open);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match app
            .queries()
            .subscribe_events(pb::SubscribeEventsRequest { start: None })
            .await
        {
            Ok(_) => break,
            Err(status)
                if status.code() == Code::ResourceExhausted
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("the slot was never freed: {status:?}"),
        }
    }
}

#[tokio::test]
async fn one_client_cannot_take_every_subscription() {
    const A: &str = "client-a-0123456789abcdef";
    const B: &str = "client-b-0123456789abcdef";
    let app = spawn_app_with(Options {
        tokens: Some(format!("a={A},b={B}")),
        max_subscriptions: 16,
        max_subscriptions_per_client: 2,
        ..Options::default()
    })
    .await;
    let subscribe = |token: &'static str| {
        let mut queries = app.queries();
        async move {
            let mut request = tonic::Request::new(pb::SubscribeEventsRequest { start: None });
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            queries.subscribe_events(request).await
        }
    };
    let first = subscribe(A).await.unwrap();
    let _second = subscribe(A).await.unwrap();
    let refused = subscribe(A).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("this client"), "{refused:?}");
    // Another client is not affected.
    let _other = subscribe(B).await.unwrap();
    let _other_too = subscribe(B).await.unwrap();

    // Closing a stream gives its slot back to its client.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match subscribe(A).await {
            Ok(_) => break,
            Err(status)
                if status.code() == Code::ResourceExhausted
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("the slot was never given back: {status:?}"),
        }
    }
}

/// The log is shared with other aggregates (order-examples' store credit, keyed by the
/// customer's id): a stream of another one is no order. Reading it is NOT_FOUND, a command on
/// it NOT_FOUND, placing an order with its id ALREADY_EXISTS, each writing nothing; and a
/// subscription passes its events instead of failing on them (it failed with INTERNAL, and
/// every resume from its cursor failed the same way).
#[tokio::test]
async fn a_stream_of_another_aggregate_is_no_order_and_subscriptions_pass_it() {
    let app = spawn_app().await;
    let before = order_in_state(&app, 0).await;
    let credit = id();
    app.db
        .connect()
        .await
        .batch_execute(&format!(
            "INSERT INTO orders.events (stream_id, stream_version, event_id, event_type, schema_version, payload, category) \
             VALUES ('{credit}', 1, '{}', 'CreditGranted', 1, '{{\"amount_minor\": 500}}', 'store_credit')",
            id()
        ))
        .await
        .unwrap();
    let after = order_in_state(&app, 0).await;
    let events = app.event_count().await;

    let read = app
        .queries()
        .get_order_events(pb::GetOrderEventsRequest {
            order_id: credit.clone(),
            after_version: 0,
            min_position: None,
            max_events: None,
        })
        .await
        .unwrap_err();
    assert_eq!(read.code(), Code::NotFound, "{read:?}");
    let mut commands = app.commands();
    let reserve = commands
        .reserve_inventory(pb::ReserveInventoryRequest {
            command_id: id(),
            order_id: credit.clone(),
            expected_version: None,
            reservation_id: "r-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reserve.code(), Code::NotFound, "{reserve:?}");
    let placed = commands.place_order(place(&credit)).await.unwrap_err();
    assert_eq!(placed.code(), Code::AlreadyExists, "{placed:?}");
    assert_eq!(app.event_count().await, events, "nothing was written");

    let mut stream = app
        .queries()
        .subscribe_events(pb::SubscribeEventsRequest { start: None })
        .await
        .unwrap()
        .into_inner();
    let first = next_event(&mut stream).await;
    let second = next_event(&mut stream).await;
    assert_eq!(
        (first.order_id.as_str(), second.order_id.as_str()),
        (before.as_str(), after.as_str()),
        "the orders' events, the other aggregate's passed"
    );
}

/// An order whose history outgrows the message size limit is read in parts with max_events;
/// asked for whole, the answer is RESOURCE_EXHAUSTED saying so (tonic failed while encoding
/// it, and the caller got OUT_OF_RANGE).
#[tokio::test]
async fn an_order_larger_than_a_message_is_read_in_parts() {
    // The smallest limit the server takes (32 KiB); a refund's event is about 200 bytes
    // encoded, so 300 of them outgrow it whole, and 3 events fit in a part.
    const REFUNDS: u64 = 300;
    let app = spawn_app_with(Options {
        max_message_bytes: 32 * 1024,
        ..Options::default()
    })
    .await;
    let order = order_in_state(&app, 3).await; // confirmed: payment captured
    let mut commands = app.commands();
    for _ in 0..REFUNDS {
        commands
            .refund_payment(pb::RefundPaymentRequest {
                command_id: id(),
                order_id: order.clone(),
                expected_version: None,
                amount: eur(1),
            })
            .await
            .unwrap();
    }
    let read = |after_version: u64, max_events: Option<u32>| {
        let mut queries = app.queries();
        let order = order.clone();
        async move {
            queries
                .get_order_events(pb::GetOrderEventsRequest {
                    order_id: order,
                    after_version,
                    min_position: None,
                    max_events,
                })
                .await
        }
    };
    for whole in [None, Some(0)] {
        let status = read(0, whole).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("max_events"), "{status:?}");
        let info = details(&status)
            .error_info()
            .cloned()
            .expect("an ErrorInfo says why, for clients to act on");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("HISTORY_TOO_LARGE", "order-ledger")
        );
        let bytes: usize = info.metadata["bytes"].parse().unwrap();
        let limit: usize = info.metadata["limit_bytes"].parse().unwrap();
        assert!(bytes > limit, "{info:?}");
    }
    let mut versions = Vec::new();
    let mut after = 0;
    loop {
        let part = read(after, Some(3)).await.unwrap().into_inner().events;
        assert!(part.len() <= 3);
        let Some(last) = part.last() else { break };
        after = last.stream_version;
        versions.extend(part.iter().map(|e| e.stream_version));
    }
    let expected: Vec<u64> = (1..=versions.len() as u64).collect();
    assert_eq!(versions, expected, "every event once, in order");
    assert_eq!(
        versions.len() as u64,
        4 + REFUNDS,
        "placed, reserved, authorized, confirmed and the refunds"
    );
}

/// An event imported from a legacy system says so (`imported_from`, and no command id): the
/// worker must not ask this system's providers to undo what the legacy system reserved or
/// authorized. A command's event says nothing of the kind.
#[tokio::test]
async fn imported_events_say_where_they_came_from() {
    let app = spawn_app().await;
    let store = order_store::EventStore::new(order_store::StoreConfig::new(app.db.url())).unwrap();
    store.import_begin("legacy-2019", "legacy").await.unwrap();
    let imported = uuid::Uuid::new_v4();
    let placed = include_str!("../../../order-domain/tests/fixtures/events/OrderPlaced.v3.json");
    let outcome = store
        .import_batch(
            "legacy-2019",
            &[order_store::ImportedStream {
                stream_id: imported,
                category: "order".into(),
                imported_from: "legacy:A-1001".into(),
                correlation_id: None,
                events: vec![order_store::ImportedEvent {
                    event_id: uuid::Uuid::new_v4(),
                    event_type: "OrderPlaced".into(),
                    schema_version: 3,
                    payload_json: placed.to_owned(),
                    recorded_at: std::time::SystemTime::UNIX_EPOCH
                        + Duration::from_secs(1_546_300_800),
                }],
            }],
            order_store::ImportProgress::default(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.streams_appended, 1, "{outcome:?}");
    let native = id();
    app.commands().place_order(place(&native)).await.unwrap();
    let events = |order: String| {
        let mut queries = app.queries();
        async move {
            queries
                .get_order_events(pb::GetOrderEventsRequest {
                    order_id: order,
                    after_version: 0,
                    min_position: None,
                    max_events: None,
                })
                .await
                .unwrap()
                .into_inner()
                .events
        }
    };
    let old = events(imported.to_string()).await;
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].imported_from, "legacy:A-1001");
    assert_eq!(old[0].command_id, "");
    let new = events(native).await;
    assert_eq!(new[0].imported_from, "");
    assert_ne!(new[0].command_id, "");
}

/// A GetOrder waiting for the read model (here: no projector runs) looks at the database a
/// few times a second, not every few milliseconds: while the projector is down or behind,
/// every read-your-writes call waits, and must not load the database that is already in
/// trouble. Both kinds of position: an event the read model has not applied, and one the log
/// has not reached.
#[tokio::test]
async fn a_read_your_writes_wait_looks_a_few_times_a_second() {
    let app = spawn_app().await;
    let order = id();
    let placed = app
        .commands()
        .place_order(place(&order))
        .await
        .unwrap()
        .into_inner();
    let admin = order_testkit::pg::admin().await;
    let before = app.db.commits(&admin).await;

    let wait = Duration::from_secs(2);
    let waits = [placed.global_position, 1_000_000_000_000].map(|position| {
        let mut client = app.raw_queries();
        let mut request = tonic::Request::new(pb::GetOrderRequest {
            order_id: order.clone(),
            min_position: Some(position),
        });
        request.set_timeout(wait);
        tokio::spawn(async move { client.get_order(request).await })
    });
    let started = std::time::Instant::now();
    for waiting in waits {
        let status = waiting.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    }
    assert!(started.elapsed() >= wait - Duration::from_millis(100));

    let commits = app.db.commits(&admin).await - before;
    // From 5 ms to 100 ms between looks, one query each: about 25 in 2 s per wait. Looking
    // every 5 ms made several hundred.
    assert!(
        commits <= 120,
        "two waits of {wait:?} committed {commits} transactions"
    );
}

/// A cursor names its event: a resume after one the log does not hold (lost by a failover to
/// an asynchronous standby or a restore, or from another database) is refused, not followed
/// from a place whose transaction id and position the new primary may have given to other
/// events. A cursor without the event id, as given before, is still taken.
#[tokio::test]
async fn a_resume_after_a_cursor_the_log_does_not_hold_is_refused() {
    let app = spawn_app().await;
    let order = order_in_state(&app, 1).await;
    let mut stream = app
        .queries()
        .subscribe_events(pb::SubscribeEventsRequest { start: None })
        .await
        .unwrap()
        .into_inner();
    let first = next_event(&mut stream).await;
    let second = next_event(&mut stream).await;
    assert_eq!(first.order_id, order);
    let parts: Vec<&str> = first.cursor.split('-').collect();
    let event_id = uuid::Uuid::parse_str(&first.event_id).unwrap();
    assert_eq!(
        parts,
        [
            parts[0],
            first.global_position.to_string().as_str(),
            event_id.simple().to_string().as_str()
        ],
        "a cursor is the transaction id, the position and the event id"
    );
    let xid: u64 = parts[0].parse().unwrap();
    let subscribe = |cursor: String| {
        let mut queries = app.queries();
        async move {
            queries
                .subscribe_events(pb::SubscribeEventsRequest {
                    start: Some(Start::AfterCursor(cursor)),
                })
                .await
        }
    };
    for lost in [
        // Another event at the same place: what a new primary may write there.
        format!(
            "{xid}-{}-{}",
            first.global_position,
            uuid::Uuid::new_v4().simple()
        ),
        // Another transaction at the same position.
        format!(
            "{}-{}-{}",
            xid + 1,
            first.global_position,
            event_id.simple()
        ),
        format!("{}-{}", xid + 1, first.global_position),
        // A place the log has not reached.
        format!("{}-{}", xid + 1000, first.global_position + 1000),
    ] {
        let status = subscribe(lost.clone()).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{lost}: {status:?}"
        );
        let info = details(&status)
            .error_info()
            .cloned()
            .expect("an ErrorInfo says why, for clients to act on");
        assert_eq!(
            (
                info.reason.as_str(),
                info.domain.as_str(),
                info.metadata["cursor"].as_str()
            ),
            ("CURSOR_NOT_IN_LOG", "order-ledger", lost.as_str())
        );
        assert!(status.message().contains("after_position"), "{status:?}");
    }
    // The cursor as given, and without its event id: the next event follows.
    for held in [
        first.cursor.clone(),
        format!("{xid}-{}", first.global_position),
    ] {
        let mut resumed = subscribe(held).await.unwrap().into_inner();
        assert_eq!(next_event(&mut resumed).await.event_id, second.event_id);
    }
    // The start of the log needs no event.
    let mut from_start = subscribe("0-0".into()).await.unwrap().into_inner();
    assert_eq!(next_event(&mut from_start).await.event_id, first.event_id);
}

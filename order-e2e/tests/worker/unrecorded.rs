//! Provider effects the order's log never recorded: a reservation, an authorization or a
//! capture whose answer was lost (the provider did the work and answered 503), after which the
//! order was cancelled. Compensations are built from the log, so without the worker undoing
//! these the stock and the money stay held at the provider. The worker talks to the provider
//! stub over HTTP.

use std::time::Duration;

use order_proto::v1 as pb;
use order_provider_stub::{Effects, FaultPlan, Stub, StubOptions};
use order_testkit::sqs;
use order_worker::providers::http::{HttpProviders, HttpSettings, ProviderEndpoint};
use order_worker::providers::{
    AuthorizeRequest, InventoryProvider, Line, PaymentProvider, ReserveRequest,
};
use uuid::Uuid;

use crate::support::*;

async fn stub() -> Stub {
    Stub::start("127.0.0.1:0".parse().unwrap(), StubOptions::default())
        .await
        .unwrap()
}

fn count(counts: &std::collections::BTreeMap<String, u32>, order: &str) -> u32 {
    counts.get(order).copied().unwrap_or(0)
}

/// Wait until `done` holds for the stub's effects; panics with them after `within`.
async fn until(stub: &Stub, within: Duration, what: &str, done: impl Fn(&Effects) -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let effects = stub.effects();
        if done(&effects) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}: {effects:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cancel(stack: &Stack, order: &str) {
    stack
        .commands()
        .cancel_order(pb::CancelOrderRequest {
            command_id: id(),
            order_id: order.to_owned(),
            expected_version: None,
            reason: "customer asked".into(),
        })
        .await
        .unwrap();
}

/// The stub, with every reserve done but answered 503, and an HTTP worker on it (`extra`
/// adds flags) that releases the message after each delivery (no waiting for the circuit), so
/// the next delivery knows an earlier one called.
async fn reserves_answered_503(stack: &Stack, extra: &[&str]) -> (Stub, Worker) {
    let stub = stub().await;
    stub.set_faults(
        "inventory",
        &FaultPlan {
            lost: 1_000_000,
            ..FaultPlan::default()
        },
    );
    let mut flags = vec!["--circuit-wait-seconds", "0", "--breaker-threshold", "1000"];
    flags.extend_from_slice(extra);
    let worker = stack.http_worker(&stub, &flags).await;
    (stub, worker)
}

/// The DLQ's messages once there are any (within a minute; panics with the stub's effects).
async fn dead_letters(stack: &Stack, stub: &Stub) -> Vec<aws_sdk_sqs::types::Message> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let dead = stack.drain_dlq().await;
        if !dead.is_empty() {
            return dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing dead-lettered: {:?}",
            stub.effects()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn types(events: &[pb::Event]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_whose_answer_was_lost_is_released_when_the_order_is_cancelled_first() {
    let stack = start(10).await;
    let (stub, worker) = reserves_answered_503(&stack, &[]).await;
    let order = stack.place_new(&["SKU-1"]).await;
    until(&stub, Duration::from_secs(30), "the reservation", |e| {
        count(&e.reservations, &order) == 1
    })
    .await;
    // Placed, as far as the log knows: the cancellation compensates nothing.
    cancel(&stack, &order).await;
    stub.set_faults("inventory", &FaultPlan::default());

    until(&stub, Duration::from_secs(30), "the release", |e| {
        count(&e.releases, &order) == 1
    })
    .await;
    stack.wait_queue_empty(Duration::from_secs(30)).await;
    let effects = stub.effects();
    assert_eq!(
        count(&effects.reservations, &order),
        1,
        "the repeated request with the same key reserved nothing more: {effects:?}"
    );
    assert_eq!(count(&effects.releases, &order), 1, "{effects:?}");
    assert_eq!(
        types(&stack.events(&order).await),
        ["OrderPlaced", "OrderCancelled"]
    );
    assert!(stack.drain_dlq().await.is_empty());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_whose_answer_was_lost_is_voided_when_the_order_is_cancelled_first() {
    let _gauges = CIRCUIT_GAUGES.lock().await;
    let stack = start(10).await;
    let stub = stub().await;
    stub.set_faults(
        "payment",
        &FaultPlan {
            lost: 1_000_000,
            ..FaultPlan::default()
        },
    );
    // The default circuit wait: the message waits in flight for the payment circuit, and the
    // call that finally gets an answer is the one that learns the payment id.
    let worker = stack.http_worker(&stub, &[]).await;
    let order = stack.place_new(&["SKU-1"]).await;
    until(&stub, Duration::from_secs(30), "the authorization", |e| {
        count(&e.authorizations, &order) == 1
    })
    .await;
    // InventoryReserved, as far as the log knows: the cancellation releases the stock only.
    cancel(&stack, &order).await;
    stub.set_faults("payment", &FaultPlan::default());

    stack
        .wait_status(&order, pb::OrderStatus::Cancelled, Duration::from_secs(30))
        .await;
    until(&stub, Duration::from_secs(30), "the void", |e| {
        count(&e.voids, &order) == 1
    })
    .await;
    stack.wait_queue_empty(Duration::from_secs(30)).await;
    let effects = stub.effects();
    assert_eq!(count(&effects.authorizations, &order), 1, "{effects:?}");
    assert_eq!(count(&effects.voids, &order), 1, "{effects:?}");
    assert_eq!(count(&effects.releases, &order), 1, "{effects:?}");
    assert_eq!(count(&effects.captures, &order), 0, "{effects:?}");
    assert_eq!(
        types(&stack.events(&order).await),
        [
            "OrderPlaced",
            "InventoryReserved",
            "CancellationRequested",
            "InventoryReleased",
            "OrderCancelled"
        ]
    );
    assert!(stack.drain_dlq().await.is_empty());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_whose_answer_was_lost_is_refunded_when_the_void_finds_it_captured() {
    let _gauges = CIRCUIT_GAUGES.lock().await;
    let stack = start(10).await;
    let stub = stub().await;
    let order = id();
    let commands = stack.commands();
    commands
        .clone()
        .place_order(place(&order, &id(), &["SKU-1"]))
        .await
        .unwrap();
    let total = stack
        .log(&order)
        .await
        .placed()
        .and_then(|p| p.total.clone())
        .unwrap();
    // Stock and authorization at the stub, recorded by hand, before any worker runs.
    let direct = HttpProviders::new(
        &ProviderEndpoint::new(stub.base_url("inventory")),
        &ProviderEndpoint::new(stub.base_url("payment")),
        &ProviderEndpoint::new(stub.base_url("shipping")),
        &HttpSettings::default(),
    )
    .unwrap();
    let order_id = Uuid::parse_str(&order).unwrap();
    let lines = vec![Line {
        sku: "SKU-1".into(),
        quantity: 2,
    }];
    let reservation_id = direct
        .inventory
        .reserve(ReserveRequest {
            order_id,
            lines: lines.clone(),
            idempotency_key: Uuid::new_v4(),
        })
        .await
        .unwrap();
    let payment_id = direct
        .payment
        .authorize(AuthorizeRequest {
            order_id,
            customer_id: "customer".into(),
            amount: total.clone(),
            lines,
            idempotency_key: Uuid::new_v4(),
        })
        .await
        .unwrap();
    let mut client = commands.clone();
    client
        .reserve_inventory(pb::ReserveInventoryRequest {
            command_id: id(),
            order_id: order.clone(),
            expected_version: Some(1),
            reservation_id,
        })
        .await
        .unwrap();
    client
        .authorize_payment(pb::AuthorizePaymentRequest {
            command_id: id(),
            order_id: order.clone(),
            expected_version: Some(2),
            payment_id,
            amount: Some(total.clone()),
        })
        .await
        .unwrap();
    // The worker's capture is done but answered 503.
    stub.set_faults(
        "payment",
        &FaultPlan {
            lost: 1_000_000,
            ..FaultPlan::default()
        },
    );
    let worker = stack.http_worker(&stub, &[]).await;
    until(&stub, Duration::from_secs(30), "the capture", |e| {
        count(&e.captures, &order) == 1
    })
    .await;
    // PaymentAuthorized, as far as the log knows: the cancellation voids.
    cancel(&stack, &order).await;
    stub.set_faults("payment", &FaultPlan::default());

    stack
        .wait_status(&order, pb::OrderStatus::Cancelled, Duration::from_secs(30))
        .await;
    stack.wait_queue_empty(Duration::from_secs(30)).await;
    let effects = stub.effects();
    assert_eq!(count(&effects.captures, &order), 1, "{effects:?}");
    assert_eq!(
        count(&effects.refunds, &order),
        1,
        "the captured money went back: {effects:?}"
    );
    assert_eq!(count(&effects.voids, &order), 0, "{effects:?}");
    assert_eq!(count(&effects.releases, &order), 1, "{effects:?}");
    let events = stack.events(&order).await;
    assert_eq!(
        types(&events),
        [
            "OrderPlaced",
            "InventoryReserved",
            "PaymentAuthorized",
            "CancellationRequested",
            "InventoryReleased",
            "PaymentVoided",
            "OrderCancelled"
        ]
    );
    assert!(stack.drain_dlq().await.is_empty());
    worker.stop().await;
}

/// A message that first arrives long after its event (one redriven from the DLQ, or
/// republished after a restore: SQS counts its receives from one again) counts as delivered
/// before: past the providers' key lifetime its call is not sent, and it is dead-lettered for
/// an operator, although no earlier receive of it is known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_first_received_past_the_key_lifetime_is_dead_lettered_not_sent() {
    let stack = start(10).await;
    let order = stack.place_new(&["SKU-1"]).await;
    // No worker yet: the message waits past the key lifetime (2 s, less a tenth).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stub = stub().await;
    let worker = stack
        .http_worker(&stub, &["--provider-key-lifetime-seconds", "2"])
        .await;
    let dead = dead_letters(&stack, &stub).await;
    let kind = dead[0]
        .message_attributes()
        .and_then(|a| a.get("dlq_kind"))
        .and_then(|v| v.string_value())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(kind, "key_lifetime");
    assert_eq!(
        count(&stub.effects().reservations, &order),
        0,
        "nothing sent"
    );
    assert_eq!(types(&stack.events(&order).await), ["OrderPlaced"]);
    worker.stop().await;
}

/// A reservation whose answer keeps getting lost, for longer than the provider remembers its
/// idempotency keys: the worker stops sending it again (a provider that forgot the key would
/// reserve a second time) and dead-letters the message for an operator, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_repeat_past_the_providers_key_lifetime_is_dead_lettered_not_sent() {
    // Receives enough never to run out while the lifetime passes.
    let stack = start(1000).await;
    let (stub, worker) =
        reserves_answered_503(&stack, &["--provider-key-lifetime-seconds", "4"]).await;
    let order = stack.place_new(&["SKU-1"]).await;
    until(&stub, Duration::from_secs(30), "the reservation", |e| {
        count(&e.reservations, &order) == 1
    })
    .await;

    let dead = dead_letters(&stack, &stub).await;
    assert_eq!(dead.len(), 1);
    let attributes = dead[0].message_attributes().cloned().unwrap_or_default();
    let attribute = |name: &str| {
        attributes
            .get(name)
            .and_then(|v| v.string_value())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(attribute("dlq_kind"), "key_lifetime", "{attributes:?}");
    let key = order_worker::saga::command_id(
        stack.events(&order).await[0].event_id.parse().unwrap(),
        "ReserveInventory",
    );
    let reason = attribute("dlq_reason");
    assert!(
        reason.contains("reserve") && reason.contains(&key.to_string()),
        "{reason}"
    );
    // Nothing more was asked of the provider, and the order waits where it was.
    stub.set_faults("inventory", &FaultPlan::default());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&stub.effects().reservations, &order), 1);
    assert_eq!(types(&stack.events(&order).await), ["OrderPlaced"]);
    worker.stop().await;
}

/// A cancellation's compensations are independent: a release the inventory provider cannot
/// do now (an outage) holds up neither the refund of the captured money nor the order's end;
/// the release follows once the provider is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_fails_does_not_hold_up_the_refund() {
    let stack = start(1000).await;
    let stub = stub().await;
    // Nothing ships: the order waits after its capture.
    stub.set_faults(
        "shipping",
        &FaultPlan {
            outage_seconds: 3_600,
            ..FaultPlan::default()
        },
    );
    let worker = stack
        .http_worker(&stub, &["--circuit-wait-seconds", "0"])
        .await;
    let order = stack.place_new(&["SKU-1"]).await;
    until(&stub, Duration::from_secs(30), "the capture", |e| {
        count(&e.captures, &order) == 1
    })
    .await;
    stub.set_faults(
        "inventory",
        &FaultPlan {
            outage_seconds: 3_600,
            ..FaultPlan::default()
        },
    );
    cancel(&stack, &order).await;
    until(&stub, Duration::from_secs(30), "the refund", |e| {
        count(&e.refunds, &order) == 1
    })
    .await;
    assert_eq!(count(&stub.effects().releases, &order), 0);
    stub.set_faults("inventory", &FaultPlan::default());
    stack
        .wait_status(&order, pb::OrderStatus::Cancelled, Duration::from_secs(60))
        .await;
    let effects = stub.effects();
    assert_eq!(count(&effects.releases, &order), 1, "{effects:?}");
    assert_eq!(count(&effects.refunds, &order), 1, "{effects:?}");
    worker.stop().await;
}

/// A live cancellation of an order imported with a reservation and an authorization (the
/// synthetic `import-<uuid>` and the legacy payment id, which no provider issued): the worker
/// asks no provider to give them back and records nothing; it dead-letters the message as
/// `imported_hold`, its reason giving the `order-cli` command that records the release once it
/// is done in the legacy system, then a redrive. Followed (here through gRPC, as order-cli
/// sends it), the redriven message dead-letters the authorization the same way, and once that
/// is recorded too the cancellation completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_imported_orders_holds_are_dead_lettered_for_a_person_never_sent_to_a_provider()
{
    let stack = start(2).await;
    let stub = stub().await;
    let worker = stack.http_worker(&stub, &[]).await;
    let store =
        order_store::EventStore::new(order_store::StoreConfig::new(stack.db.url())).unwrap();
    store.import_begin("legacy-e2e", "legacy").await.unwrap();
    let order = Uuid::new_v4();
    let reservation = format!("import-{order}");
    let event = |event_type: &'static str, version: u16, payload: String, at: u64| {
        order_store::ImportedEvent {
            event_id: Uuid::new_v4(),
            event_type: event_type.into(),
            schema_version: version,
            payload_json: payload,
            recorded_at: std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(at),
        }
    };
    let placed = include_str!("../../../order-domain/tests/fixtures/events/OrderPlaced.v3.json");
    let outcome = store
        .import_batch(
            "legacy-e2e",
            &[order_store::ImportedStream {
                stream_id: order,
                category: "order".into(),
                imported_from: "legacy:A-1001".into(),
                correlation_id: None,
                events: vec![
                    event("OrderPlaced", 3, placed.to_owned(), 1_700_000_000),
                    event(
                        "InventoryReserved",
                        1,
                        format!(r#"{{"reservation_id":"{reservation}"}}"#),
                        1_700_000_060,
                    ),
                    event(
                        "PaymentAuthorized",
                        2,
                        r#"{"payment_id":"LEGACY-PAY-881","amount":{"currency":"EUR","amount_minor":3000}}"#
                            .to_owned(),
                        1_700_000_120,
                    ),
                ],
            }],
            order_store::ImportProgress::default(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.streams_appended, 1, "{outcome:?}");
    let order = order.to_string();
    stack
        .commands()
        .cancel_order(pb::CancelOrderRequest {
            command_id: id(),
            order_id: order.clone(),
            expected_version: Some(3),
            reason: "customer asked".into(),
        })
        .await
        .unwrap();

    // The next dead letter: its message, and its `order-cli ... --command-id` id.
    let next_dead_letter = |command: String| {
        let stack = &stack;
        async move {
            let mut dead = stack.wait_dead_letters(Duration::from_secs(60)).await;
            assert_eq!(dead.len(), 1);
            let message = dead.remove(0);
            let attribute = |name: &str| {
                message
                    .message_attributes()
                    .and_then(|a| a.get(name))
                    .and_then(|v| v.string_value())
                    .unwrap_or_default()
                    .to_owned()
            };
            assert_eq!(attribute("dlq_kind"), "imported_hold");
            let reason = attribute("dlq_reason");
            assert!(reason.contains("redrive this dead letter"), "{reason}");
            let command_id = reason
                .split(&format!("order-cli {command} --command-id "))
                .nth(1)
                .and_then(|rest| rest.split('`').next())
                .unwrap_or_else(|| panic!("no `order-cli {command}` in {reason}"))
                .to_owned();
            (message, reason, command_id)
        }
    };
    let (message, reason, command_id) =
        next_dead_letter(format!("release-inventory {order}")).await;
    assert!(
        reason.contains(&reservation) && reason.contains("(legacy record legacy:A-1001)"),
        "{reason}"
    );
    assert_eq!(
        stack.log(&order).await.status(),
        Some(pb::OrderStatus::CancellationPending),
        "nothing recorded as given back"
    );

    // Released in the legacy system: record it as the reason says, and redrive.
    stack
        .commands()
        .release_inventory(pb::ReleaseInventoryRequest {
            command_id,
            order_id: order.clone(),
            expected_version: None,
        })
        .await
        .unwrap();
    let client = sqs::client();
    client
        .send_message()
        .queue_url(&stack.queue.queue_url)
        .message_body(message.body().unwrap_or_default())
        .set_message_attributes(message.message_attributes().cloned())
        .message_group_id(order.clone())
        .message_deduplication_id(id())
        .send()
        .await
        .unwrap();
    let (_, reason, command_id) =
        next_dead_letter(format!("refund {order} --amount 3000 --currency EUR")).await;
    assert!(
        reason.contains("LEGACY-PAY-881") && reason.contains("void"),
        "{reason}"
    );

    // Voided in the legacy system: record it; the cancellation completes.
    stack
        .commands()
        .refund_payment(pb::RefundPaymentRequest {
            command_id,
            order_id: order.clone(),
            expected_version: None,
            amount: Some(pb::Money {
                currency: "EUR".into(),
                amount_minor: 3000,
            }),
        })
        .await
        .unwrap();
    stack
        .wait_status(&order, pb::OrderStatus::Cancelled, Duration::from_secs(30))
        .await;
    stack.wait_queue_empty(Duration::from_secs(30)).await;
    assert!(stack.drain_dlq().await.is_empty());
    let effects = stub.effects();
    assert!(
        effects.releases.is_empty() && effects.voids.is_empty() && effects.refunds.is_empty(),
        "{effects:?}"
    );
    worker.stop().await;
}

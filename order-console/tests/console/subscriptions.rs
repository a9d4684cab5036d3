//! The Subscriptions page: rebuild leases shown on their projection's row, owners the console
//! does not scrape, leases that stopped being renewed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use order_testkit::pg::TestDatabase;
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

/// The row of subscription `name` in a subscriptions fragment, or `None`.
fn row(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("data-subscription=\"{name}\""))?;
    let end = body[start..].find("</tr>")?;
    Some(body[start..start + end].to_owned())
}

/// A subscriptions row: `name` at the checkpoint of the event at `position`, held by `owner`
/// (NULL: released) until `lease` from now (a PostgreSQL interval; NULL: none).
async fn subscription(
    client: &tokio_postgres::Client,
    name: &str,
    position: i64,
    owner: Option<&str>,
    lease: Option<&str>,
) {
    client
        .execute(
            "INSERT INTO orders.subscriptions (name, checkpoint_xid, checkpoint_position, owner, lease_expires_at, events_processed)
             SELECT $2, transaction_id, global_position, $3, now() + $4::text::interval, 1
               FROM orders.events WHERE global_position = $1",
            &[&position, &name, &owner, &lease],
        )
        .await
        .unwrap();
}

/// A replay leaves its rebuild lease's row behind (released: owner and lease NULL); a live
/// one belongs to its projection's row, whatever the projection (not only the read model),
/// and is never a subscription of its own.
#[tokio::test]
async fn rebuild_leases_show_on_their_projection_never_as_rows_of_their_own() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    let first = insert_event(&db, Uuid::new_v4(), 1, "OrderPlaced", &json!({})).await;
    let mut head = first;
    for _ in 0..4 {
        head = insert_event(&db, Uuid::new_v4(), 1, "OrderPlaced", &json!({})).await;
    }
    subscription(&client, "read_model", head, Some("p-1"), Some("1 hour")).await;
    // What a finished replay of the read model leaves behind.
    subscription(&client, "read_model#rebuild", head, None, None).await;
    // A rebuild of a team's projection under way: at the first event, 4 positions behind.
    subscription(&client, "sku_sales", head, Some("p-1"), Some("1 hour")).await;
    subscription(
        &client,
        "sku_sales#rebuild",
        first,
        Some("replay-host-7"),
        Some("1 minute"),
    )
    .await;
    // A projection rebuilt before it ever ran: no row of its own yet.
    subscription(
        &client,
        "fresh#rebuild",
        first,
        Some("replay-host-8"),
        Some("1 minute"),
    )
    .await;

    // What the rebuilds have read so far, recorded before their first flush.
    client
        .execute(
            "UPDATE orders.subscriptions
                SET events_processed = CASE name WHEN 'sku_sales#rebuild' THEN 12345 ELSE 678 END,
                    last_event_at = '2026-05-04T13:20:00Z'
              WHERE name IN ('sku_sales#rebuild', 'fresh#rebuild')",
            &[],
        )
        .await
        .unwrap();

    let console = start(&db, &[]).await;
    let body = get(console.addr, "/fragments/subscriptions").await.body;
    for leftover in ["read_model#rebuild", "sku_sales#rebuild", "fresh#rebuild"] {
        assert_eq!(row(&body, leftover), None, "{leftover} has a row: {body}");
    }
    let read_model = row(&body, "read_model").unwrap();
    assert!(read_model.contains("data-health=\"ok\""), "{read_model}");
    assert!(!read_model.contains("data-rebuild"), "{read_model}");

    let sales = row(&body, "sku_sales").unwrap();
    assert!(sales.contains("data-health=\"ok\""), "{sales}");
    assert!(
        sales.contains("data-rebuild-owner=\"replay-host-7\""),
        "{sales}"
    );
    assert!(
        sales.contains(&format!("data-rebuild-position=\"{first}\"")),
        "{sales}"
    );
    assert!(sales.contains("data-rebuild-lag-events=\"4\""), "{sales}");
    assert!(
        sales.contains("data-rebuild-events-read=\"12345\""),
        "{sales}"
    );
    assert!(
        sales.contains("read 12345 events (the newest recorded 2026-05-04T13:20:00Z)"),
        "{sales}"
    );

    assert!(body.contains("data-replay=\"running\""), "{body}");
    assert!(body.contains("data-rebuild-of=\"fresh\""), "{body}");
    assert!(body.contains("replay-host-8"), "{body}");
    assert!(body.contains("read 678 events"), "{body}");
}

/// A minimal projector admin endpoint: ready, and `order_projector_owner` 1 for
/// `read_model` while `reports` holds.
async fn fake_projector(reports: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/readyz", axum::routing::get(|| async { "ready" }))
        .route(
            "/metrics",
            axum::routing::get(move || {
                let owner = u8::from(reports.load(Ordering::SeqCst));
                async move {
                    format!(
                        "order_build_info{{service=\"order-projector\",version=\"1\"}} 1\n\
                         order_projector_owner{{subscription=\"read_model\"}} {owner}\n\
                         order_projector_stopped{{subscription=\"read_model\"}} 0\n"
                    )
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A lease held by an owner the console does not scrape (a team's own projector binary) is
/// amber while it is renewed, red once it is not; an owner a scraped projector was seen to be
/// is red as soon as no scraped projector reports it.
#[tokio::test]
async fn an_owner_not_scraped_is_amber_while_its_lease_is_renewed() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    let position = insert_event(&db, Uuid::new_v4(), 1, "OrderPlaced", &json!({})).await;
    subscription(&client, "read_model", position, Some("p-1"), Some("1 hour")).await;
    subscription(
        &client,
        "sku_sales",
        position,
        Some("team-1"),
        Some("1 hour"),
    )
    .await;
    let reports = Arc::new(AtomicBool::new(true));
    let projector = fake_projector(reports.clone()).await;
    let console = start(
        &db,
        &["--services", &format!("projector=http://{projector}")],
    )
    .await;
    eventually(console.addr, "/fragments/services", 20, |b| {
        b.contains("1/1 services ready")
    })
    .await;
    let body = get(console.addr, "/fragments/subscriptions").await.body;
    let read_model = row(&body, "read_model").unwrap();
    assert!(read_model.contains("data-health=\"ok\""), "{read_model}");
    let sales = row(&body, "sku_sales").unwrap();
    assert!(sales.contains("data-health=\"warn\""), "{sales}");
    assert!(sales.contains("owner not scraped"), "{sales}");

    // team-1 stops renewing: its lease runs down (here: moved to 20 minutes from now, under
    // half of the hour it was seen to have).
    client
        .execute(
            "UPDATE orders.subscriptions SET lease_expires_at = now() + interval '20 minutes' WHERE name = 'sku_sales'",
            &[],
        )
        .await
        .unwrap();
    let body = eventually(console.addr, "/fragments/subscriptions", 20, |b| {
        row(b, "sku_sales").is_some_and(|r| r.contains("data-health=\"bad\""))
    })
    .await;
    let sales = row(&body, "sku_sales").unwrap();
    assert!(sales.contains("not being renewed"), "{sales}");

    // Renewed again: amber again.
    client
        .execute(
            "UPDATE orders.subscriptions SET lease_expires_at = now() + interval '1 hour' WHERE name = 'sku_sales'",
            &[],
        )
        .await
        .unwrap();
    eventually(console.addr, "/fragments/subscriptions", 20, |b| {
        row(b, "sku_sales").is_some_and(|r| r.contains("data-health=\"warn\""))
    })
    .await;

    // The scraped projector that owned read_model no longer reports it: red, though its
    // lease is still live.
    reports.store(false, Ordering::SeqCst);
    let body = eventually(console.addr, "/fragments/subscriptions", 20, |b| {
        row(b, "read_model").is_some_and(|r| r.contains("data-health=\"bad\""))
    })
    .await;
    let read_model = row(&body, "read_model").unwrap();
    assert!(read_model.contains("does not answer"), "{read_model}");
    let sales = row(&body, "sku_sales").unwrap();
    assert!(sales.contains("data-health=\"warn\""), "{sales}");
}

/// A dead replay (`kill -9` during its fold) keeps its rebuild lease until it runs out: the
/// rebuild shows its lease's time left and when its row was last written, amber once nothing
/// was written for over 30 s (a long flush or index build, or a dead replay), red once its
/// lease ran out unreleased, which is no rebuild running. Rows made by hand, as such a replay
/// leaves them.
#[tokio::test]
async fn a_rebuild_that_stopped_writing_its_progress_is_amber_then_red() {
    let db = TestDatabase::migrated().await;
    let client = db.connect().await;
    let first = insert_event(&db, Uuid::new_v4(), 1, "OrderPlaced", &json!({})).await;
    subscription(&client, "read_model", first, Some("p-1"), Some("1 hour")).await;
    subscription(
        &client,
        "read_model#rebuild",
        first,
        Some("replay-host-7"),
        Some("10 minutes"),
    )
    .await;
    // The first rebuild of a projection that never ran, its replay dead long ago.
    subscription(
        &client,
        "fresh#rebuild",
        first,
        Some("replay-host-8"),
        Some("-5 minutes"),
    )
    .await;
    client
        .execute(
            "UPDATE orders.subscriptions SET events_processed = 70000, updated_at = now() - interval '6 minutes'
              WHERE name = 'fresh#rebuild'",
            &[],
        )
        .await
        .unwrap();
    let console = start(&db, &[]).await;

    // Writing its progress: green, with its lease and when it last wrote.
    let body = get(console.addr, "/fragments/subscriptions").await.body;
    let read_model = row(&body, "read_model").unwrap();
    assert!(
        read_model.contains("data-rebuild-health=\"ok\"")
            && read_model.contains("rebuild in progress: ")
            && read_model.contains("; lease runs out in ")
            && read_model.contains(" ago"),
        "{read_model}"
    );
    assert!(body.contains("data-replay=\"running\""), "{body}");

    // Nothing written for 45 s: amber, saying what it may be and when its lease runs out.
    client
        .execute(
            "UPDATE orders.subscriptions SET updated_at = now() - interval '45 seconds'
              WHERE name = 'read_model#rebuild'",
            &[],
        )
        .await
        .unwrap();
    let body = eventually(console.addr, "/fragments/subscriptions", 20, |b| {
        row(b, "read_model").is_some_and(|r| r.contains("data-rebuild-health=\"warn\""))
    })
    .await;
    let read_model = row(&body, "read_model").unwrap();
    assert!(
        read_model.contains("no progress for 4")
            && read_model.contains(
                " s: a long flush or index build, or a dead replay: its lease runs out in 9 min "
            ),
        "{read_model}"
    );
    assert!(body.contains("data-replay=\"running\""), "{body}");

    // Its lease ran out: red, and no rebuild is running.
    client
        .execute(
            "UPDATE orders.subscriptions SET lease_expires_at = now() - interval '5 seconds'
              WHERE name = 'read_model#rebuild'",
            &[],
        )
        .await
        .unwrap();
    let body = eventually(console.addr, "/fragments/subscriptions", 20, |b| {
        row(b, "read_model").is_some_and(|r| r.contains("data-rebuild-health=\"bad\""))
    })
    .await;
    let read_model = row(&body, "read_model").unwrap();
    assert!(
        read_model.contains("data-rebuild-health=\"bad\"")
            && read_model.contains("rebuild stopped: ")
            && read_model.contains("its lease ran out "),
        "{read_model}"
    );
    assert!(!read_model.contains("rebuild in progress"), "{read_model}");
    assert!(body.contains("data-replay=\"none\""), "{body}");
    assert!(!body.contains("data-replay=\"running\""), "{body}");

    // The same for a projection with no row of its own yet.
    let fresh = &body[body.find("data-rebuild-of=\"fresh\"").expect(&body)..];
    let fresh = &fresh[..fresh.find("</p>").unwrap_or(fresh.len())];
    assert!(
        fresh.contains("data-rebuild-health=\"bad\"")
            && fresh.contains("read 70000 events")
            && fresh.contains("its lease ran out 5 min ")
            && fresh.contains(" ago, no progress for 6 min "),
        "{fresh}"
    );
}

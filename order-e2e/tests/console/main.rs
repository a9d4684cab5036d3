//! The console in a real browser (headless Chromium over WebDriver), with the real services
//! as child processes under the demo's kind of load: what an on-call engineer does with it.
//!
//! Screenshots of every page, on a laptop screen and a phone-sized one, are written to
//! `$ORDER_CONSOLE_SCREENSHOTS` (the README's are `docs/console/`) or else to the target
//! folder, as test artifacts.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod browser;

use std::path::PathBuf;
use std::time::Duration;

use browser::{Browser, LAPTOP, PHONE};
use clap::Parser;
use fantoccini::Locator;
use order_console::Console;
use order_console::config::{Cli, Command};
use order_e2e::HOSTILE;
use order_faults::load::{self, LoadOptions};
use order_faults::stack::{Binaries, Stack, StackOptions};
use order_proto::v1 as pb;
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

const TOKEN: &str = "on-call-0123456789abcdef";
/// The load's customer (order-faults' load places every order for it).
const LOAD_CUSTOMER: &str = "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c0ff";
const SCRAPE_MS: u64 = 500;
const REFRESH_MS: u64 = 1000;

fn binaries() -> Binaries {
    Binaries {
        grpc: PathBuf::from(env!("CARGO_BIN_EXE_e2e-order-grpc")),
        projector: PathBuf::from(env!("CARGO_BIN_EXE_e2e-order-projector")),
        worker: PathBuf::from(env!("CARGO_BIN_EXE_e2e-order-worker")),
        sales_projector: PathBuf::from(env!("CARGO_BIN_EXE_e2e-sales-projector")),
    }
}

fn screenshots() -> PathBuf {
    let dir = std::env::var_os("ORDER_CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The console in process, reading as a login user of orders_readonly, scraping the stack's
/// three admin endpoints and its queues, behind a console token.
async fn start_console(stack: &Stack) -> (String, oneshot::Sender<()>) {
    let db = stack.db().await.unwrap();
    db.batch_execute("CREATE ROLE order_console LOGIN IN ROLE orders_readonly")
        .await
        .unwrap();
    // Trust authentication on the private cluster: the user is what matters.
    let url = stack
        .database_url
        .replacen("postgres://postgres", "postgres://order_console", 1);
    let services = format!(
        "grpc=http://{},projector=http://{},worker=http://{}",
        stack.grpc.admin, stack.projector.admin, stack.worker.admin
    );
    let tokens = format!("on-call={TOKEN}");
    let scrape = SCRAPE_MS.to_string();
    let refresh = REFRESH_MS.to_string();
    let cli = Cli::try_parse_from([
        "order-console",
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--database-url",
        &url,
        "--services",
        &services,
        "--tokens",
        &tokens,
        "--orders-queue-url",
        &stack.queue.queue_url,
        "--orders-dlq-url",
        &stack.queue.dlq_url,
        "--scrape-ms",
        &scrape,
        "--refresh-ms",
        &refresh,
        "--trace-url",
        "http://127.0.0.1:16686/trace/{trace_id}",
    ])
    .unwrap();
    let Command::Serve(serve) = cli.command else {
        panic!("not serve");
    };
    let console = Console::build_with_sqs(serve.settings().unwrap(), Some(stack.emulator.client()))
        .await
        .unwrap();
    let base = format!("http://{}", console.addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(console.run_until(async {
        let _ = stopped.await;
    }));
    (base, stop)
}

/// A script: the sum of the numbers in the elements matching `css` (their `attribute`, or
/// their text).
fn sum_of(css: &str, attribute: Option<&str>) -> String {
    let value = match attribute {
        Some(attribute) => format!("e.getAttribute({attribute:?})"),
        None => "e.textContent".to_owned(),
    };
    format!(
        "return Array.from(document.querySelectorAll({css:?})).reduce((s, e) => s + Number({value} || 0), 0);"
    )
}

async fn number(browser: &Browser, script: &str) -> u64 {
    browser.js(script).await.as_f64().unwrap_or(0.0) as u64
}

/// Place an order whose every text field is `text`, then cancel it with `text` as the reason.
async fn place_hostile(stack: &Stack, customer: Uuid, text: &str) -> Uuid {
    let channel = tonic::transport::Channel::from_shared(stack.endpoint())
        .unwrap()
        .connect_lazy();
    let mut commands = pb::order_service_client::OrderServiceClient::new(channel);
    let order = Uuid::new_v4();
    commands
        .place_order(pb::PlaceOrderRequest {
            command_id: Uuid::new_v4().to_string(),
            order_id: order.to_string(),
            expected_version: None,
            customer_id: customer.to_string(),
            lines: vec![pb::OrderLine {
                sku: "HOSTILE-1".into(),
                quantity: 1,
                unit_price: Some(pb::Money {
                    currency: "EUR".into(),
                    amount_minor: 1000,
                }),
            }],
            shipping_address: Some(pb::Address {
                recipient: text.to_owned(),
                line1: text.to_owned(),
                line2: text.to_owned(),
                city: text.to_owned(),
                region: text.to_owned(),
                postal_code: "10115".into(),
                country: "DE".into(),
            }),
            shipping_method: pb::ShippingMethod::Standard as i32,
        })
        .await
        .unwrap_or_else(|s| panic!("{text:?} refused: {s:?}"));
    // Cancelled at once, or after the worker reserved inventory: retried on a lost race.
    for _ in 0..20 {
        match commands
            .cancel_order(pb::CancelOrderRequest {
                command_id: Uuid::new_v4().to_string(),
                order_id: order.to_string(),
                expected_version: None,
                reason: text.to_owned(),
            })
            .await
        {
            Ok(_) => return order,
            Err(status) if status.code() == tonic::Code::Aborted => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("cancel of {text:?} refused: {status:?}"),
        }
    }
    panic!("cancel of {text:?} kept losing races");
}

/// Every string inside a JSON value.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// A page has refreshed its live part at least once and drawn its charts (pages without a
/// live part are settled when loaded).
const SETTLED: &str = "const live = document.getElementById('live'); \
    const status = document.getElementById('live-status'); \
    const charts = document.querySelector('[data-charts]'); \
    return (!live || status.dataset.state === 'ok') && (!charts || charts.dataset.ready === 'true');";

const PAGES: [&str; 6] = [
    "services",
    "flow",
    "subscriptions",
    "queues",
    "orders",
    "alarms",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engineer_watches_orders_flow_finds_an_order_and_sees_the_projector_die_and_return() {
    let started = std::time::Instant::now();
    let step = |what: &str| eprintln!("[{:>5.1} s] {what}", started.elapsed().as_secs_f64());
    let shots = screenshots();
    let mut stack = Stack::start(&binaries(), &StackOptions::default())
        .await
        .unwrap();
    let (base, _stop) = start_console(&stack).await;
    let browser = Browser::start(LAPTOP).await;
    let within = |seconds: u64| Duration::from_secs(seconds);

    step("sign in: every page sends a stranger to the sign-in form");
    browser.goto(&format!("{base}/flow")).await;
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/login", "{url}");
    let token = browser.client.find(Locator::Css("#token")).await.unwrap();
    token.send_keys("not-the-token-at-all").await.unwrap();
    browser
        .client
        .find(Locator::Css("form.login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The form posts and the answer is a new page: wait for it, not for the old one.
    browser
        .wait_for(
            "a wrong token is refused with a reason",
            "const e = document.querySelector('p.error'); \
             return !!e && e.textContent.includes('not valid');",
            within(10),
        )
        .await;
    let token = browser.client.find(Locator::Css("#token")).await.unwrap();
    token.send_keys(TOKEN).await.unwrap();
    browser
        .client
        .find(Locator::Css("form.login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The click returns before the posted form's answer has replaced the page: wait for it.
    browser
        .wait_for(
            "signed in, back on the page the engineer asked for",
            "return location.pathname === '/flow';",
            within(10),
        )
        .await;
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(
        url.path(),
        "/flow",
        "back where the engineer was going: {url}"
    );
    assert_eq!(
        browser.text("form.signout .who").await.as_deref(),
        Some("on-call")
    );

    step("services: all three ready");
    browser.goto(&format!("{base}/services")).await;
    browser
        .wait_for(
            "three services ready",
            "return document.querySelectorAll('article.card[data-health=\"ok\"]').length === 3;",
            within(60),
        )
        .await;
    for kind in ["order-grpc", "order-projector", "order-worker"] {
        let card = format!("article.card[data-kind=\"{kind}\"]");
        let text = browser.text(&card).await.unwrap_or_default();
        assert!(
            text.contains(env!("CARGO_PKG_VERSION")),
            "{kind}: no version in {text}"
        );
        assert!(text.contains("uptime"), "{text}");
    }

    step("the demo's kind of load starts");
    let endpoint = stack.endpoint();
    let load = tokio::spawn(async move {
        load::run(
            &endpoint,
            &LoadOptions {
                rate: 12,
                duration: Duration::from_secs(25),
                ..LoadOptions::default()
            },
        )
        .await
    });

    step("services: rates appear and move without a reload");
    browser
        .js("window.__sameDocument = true; return true;")
        .await;
    browser
        .wait_for(
            "commands per second of order-grpc above zero",
            "const d = document.querySelector('article.card[data-kind=\"order-grpc\"] dd[data-rate=\"commands\"]'); \
             return !!d && /ok [1-9]/.test(d.textContent);",
            within(60),
        )
        .await;
    browser
        .wait_for(
            "charts drawn",
            "return document.querySelectorAll('[data-charts] .uplot canvas').length >= 4;",
            within(30),
        )
        .await;
    assert_eq!(
        browser.js("return window.__sameDocument === true;").await,
        Value::Bool(true)
    );

    step("flow: counts move, refreshed in place");
    browser.goto(&format!("{base}/flow")).await;
    browser
        .js("window.__sameDocument = true; return true;")
        .await;
    let placed = sum_of("td[data-placed]", None);
    let first = number(&browser, &placed).await;
    for round in 0..2 {
        let before = number(&browser, &placed).await;
        browser
            .wait_for(
                &format!("placed orders counted beyond {before} (round {round})"),
                &format!(
                    "return (function() {{ {} }})() > {before};",
                    placed.trim_end_matches(';')
                ),
                within(30),
            )
            .await;
    }
    assert!(number(&browser, &placed).await > first);
    assert_eq!(
        browser.js("return window.__sameDocument === true;").await,
        Value::Bool(true),
        "the page was reloaded instead of refreshed in place"
    );
    let in_states = number(&browser, &sum_of("g.node", Some("data-count"))).await;
    assert!(in_states > 0, "the state machine shows no order");
    browser
        .wait_for(
            "the flow chart",
            "return !!document.querySelector('[data-chart=\"flow\"] canvas');",
            within(30),
        )
        .await;

    step("hostile text: placed and cancelled through the API");
    let customer = Uuid::new_v4();
    let mut hostile = Vec::new();
    for text in HOSTILE {
        hostile.push((place_hostile(&stack, customer, text).await, *text));
    }

    let report = load.await.unwrap().unwrap();
    step(&format!(
        "load done: {} orders acknowledged",
        report.acknowledged.len()
    ));
    assert!(
        report.acknowledged.len() >= 100,
        "{}",
        report.acknowledged.len()
    );

    step("subscriptions: lag returns to zero, both green");
    browser.goto(&format!("{base}/subscriptions")).await;
    browser
        .wait_for(
            "both subscriptions following the log with no lag",
            "const rows = document.querySelectorAll('tr[data-subscription]'); \
             return rows.length === 2 && Array.from(rows).every(r => r.dataset.health === 'ok' \
               && r.querySelector('[data-lag-events]').textContent.trim() === '0');",
            within(120),
        )
        .await;

    step("an order found by id: its full timeline and read-model row");
    let db = stack.db().await.unwrap();
    let order = report.acknowledged[report.acknowledged.len() / 2].order_id;
    let events = loop {
        let before: i64 = db
            .query_one(
                "SELECT count(*) FROM orders.events WHERE stream_id = $1",
                &[&order],
            )
            .await
            .unwrap()
            .get(0);
        browser.goto(&format!("{base}/orders")).await;
        let search = browser.client.find(Locator::Css("#q")).await.unwrap();
        search.send_keys(&order.to_string()).await.unwrap();
        browser
            .client
            .find(Locator::Css("form.search button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // The click returns before the search's answer replaces the page.
        browser
            .wait_for(
                "the order's page after the search",
                "const t = document.querySelector('ol.timeline'); return !!t && t.dataset.events !== undefined;",
                within(10),
            )
            .await;
        let shown = number(
            &browser,
            "return Number(document.querySelector('ol.timeline').dataset.events);",
        )
        .await;
        let after: i64 = db
            .query_one(
                "SELECT count(*) FROM orders.events WHERE stream_id = $1",
                &[&order],
            )
            .await
            .unwrap()
            .get(0);
        if before == after {
            assert_eq!(shown as i64, before, "the timeline misses events");
            break shown;
        }
    };
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.path(), format!("/orders/{order}"));
    let versions = browser.attributes("li.event", "data-version").await;
    let expected: Vec<String> = (1..=events).map(|v| v.to_string()).collect();
    assert_eq!(versions, expected, "the timeline is not in stream order");
    assert_eq!(
        browser.attributes("li.event", "data-type").await[0],
        "OrderPlaced"
    );
    assert!(
        browser.text("table.orders td[data-status]").await.is_some(),
        "no read-model row"
    );
    browser
        .full_page_screenshot(&shots.join("order.png"), LAPTOP.0)
        .await;
    browser.resize(LAPTOP).await;

    step("hostile text renders as text, verbatim, and runs nothing");
    browser.goto(&format!("{base}/orders?q={customer}")).await;
    assert_eq!(
        browser
            .attributes("table.orders tr[data-order]", "data-order")
            .await
            .len(),
        HOSTILE.len(),
        "the customer's orders"
    );
    for (order, text) in &hostile {
        browser.goto(&format!("{base}/orders/{order}")).await;
        let payloads = browser
            .js("return Array.from(document.querySelectorAll('pre[data-payload]')).map(e => e.textContent);")
            .await;
        let mut found = Vec::new();
        for payload in payloads.as_array().unwrap() {
            let json: Value = serde_json::from_str(payload.as_str().unwrap()).unwrap();
            strings(&json, &mut found);
        }
        assert!(
            found.iter().any(|s| s == text),
            "{text:?} not shown verbatim: {found:?}"
        );
        // Only our two scripts; nothing the text could have added; no dialog open.
        assert_eq!(number(&browser, "return document.scripts.length;").await, 2);
        assert_eq!(
            number(
                &browser,
                "return document.querySelectorAll('img, iframe, object, embed').length;"
            )
            .await,
            0
        );
        assert!(
            browser.client.get_alert_text().await.is_err(),
            "{text:?} opened a dialog"
        );
        assert_eq!(browser.csp_violations().await, 0);
    }

    step("screenshots of every page, laptop and phone; no page scrolls sideways on a phone");
    let customer_list = format!("orders?q={LOAD_CUSTOMER}");
    for page in PAGES {
        let path = if page == "orders" {
            customer_list.as_str()
        } else {
            page
        };
        browser.resize(LAPTOP).await;
        browser.goto(&format!("{base}/{path}")).await;
        browser
            .wait_for(&format!("{page} refreshed"), SETTLED, within(30))
            .await;
        assert_eq!(browser.csp_violations().await, 0, "{page}: CSP violations");
        browser
            .full_page_screenshot(&shots.join(format!("{page}.png")), LAPTOP.0)
            .await;
        browser.resize(PHONE).await;
        browser.goto(&format!("{base}/{path}")).await;
        browser
            .wait_for(&format!("{page} refreshed"), SETTLED, within(30))
            .await;
        assert!(
            browser.fits_the_width().await,
            "{page} scrolls sideways on a phone"
        );
        assert_eq!(browser.csp_violations().await, 0, "{page}: CSP violations");
        browser
            .screenshot(&shots.join(format!("{page}-phone.png")))
            .await;
    }
    browser.resize(LAPTOP).await;
    browser
        .goto(&format!("{base}/orders/{}", hostile[3].0))
        .await;
    browser
        .full_page_screenshot(&shots.join("order-hostile.png"), LAPTOP.0)
        .await;
    browser.resize(LAPTOP).await;

    step("the projector is killed: its subscriptions turn red within the refresh interval");
    browser.goto(&format!("{base}/subscriptions")).await;
    stack.projector.kill().await;
    let red = browser
        .wait_for(
            "both subscriptions red",
            "const rows = document.querySelectorAll('tr[data-subscription]'); \
             return rows.length === 2 && Array.from(rows).every(r => r.dataset.health === 'bad');",
            within(30),
        )
        .await;
    step(&format!("red after {red:?}"));
    // One scrape to notice, one refresh to show it, and slack for a loaded machine.
    let bound = Duration::from_millis(SCRAPE_MS + REFRESH_MS) + Duration::from_secs(4);
    assert!(red <= bound, "red only after {red:?} (bound {bound:?})");
    browser
        .screenshot(&shots.join("subscriptions-projector-down.png"))
        .await;
    browser.goto(&format!("{base}/services")).await;
    browser
        .wait_for(
            "the projector's card red",
            "const c = document.querySelector('article.card[data-kind=\"order-projector\"]'); return !!c && c.dataset.health === 'bad';",
            within(10),
        )
        .await;

    step("the projector restarts: green again");
    stack.projector.start().unwrap();
    stack.projector.wait_ready(within(60)).await.unwrap();
    browser.goto(&format!("{base}/subscriptions")).await;
    browser
        .wait_for(
            "both subscriptions green again",
            "const rows = document.querySelectorAll('tr[data-subscription]'); \
             return rows.length === 2 && Array.from(rows).every(r => r.dataset.health === 'ok');",
            within(60),
        )
        .await;

    browser.close().await;
    stack.stop().await;
    step(&format!("screenshots in {}", shots.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_dropped_without_closing_its_session_leaves_no_process_behind() {
    // What a failing (panicking) test does: its browser is dropped, never closed. Killing
    // chromedriver alone left headless Chromium running after the suite.
    let browser = Browser::start(LAPTOP).await;
    browser.goto("about:blank").await;
    let driver = browser.driver_pid().expect("chromedriver runs");
    let mut tree = order_testkit::process::descendants(driver);
    assert!(!tree.is_empty(), "Chromium runs below chromedriver");
    tree.push(driver);
    drop(browser);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let alive: Vec<u32> = tree
            .iter()
            .copied()
            .filter(|pid| !order_testkit::process::has_ended(*pid))
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 30 s after the browser was dropped: {alive:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP proxy in front of `to` that can be paused: while paused, nothing read from either
/// side is passed on (the console, as a browser sees it, stops answering: a process stopped
/// with SIGSTOP, a network that drops the answers).
async fn pausable_proxy(to: std::net::SocketAddr) -> (String, tokio::sync::watch::Sender<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (pause, paused) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(to).await else {
                continue;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            for (mut from, mut into) in [
                (
                    Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                    Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                ),
                (Box::new(server_read) as _, Box::new(client_write) as _),
            ] {
                let mut paused = paused.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 16 * 1024];
                    // Until either side closes (or fails).
                    while let Ok(n @ 1..) = from.read(&mut buffer).await {
                        if paused.wait_for(|p| !*p).await.is_err() {
                            break;
                        }
                        if into.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = into.shutdown().await;
                });
            }
        }
    });
    (format!("http://{addr}"), pause)
}

/// An open page whose console stops answering says so within a few refreshes (its requests
/// give up instead of waiting for ever, and "live" is never shown over a stale page), and
/// says "live" again once the console answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_page_says_so_when_the_console_stops_answering() {
    const READER: &str = "order_console_browser_test";
    const PASSWORD: &str = "console-browser-password";
    let db = order_testkit::pg::TestDatabase::migrated().await;
    let admin = db.connect().await;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&READER])
        .await
        .unwrap()
        .is_some();
    if !exists {
        // A concurrent run may have made it first: a duplicate is fine.
        let _ = admin
            .batch_execute(&format!(
                "CREATE ROLE {READER} LOGIN PASSWORD '{PASSWORD}' IN ROLE orders_readonly"
            ))
            .await;
    }
    let (scheme, rest) = db.url().split_once("://").unwrap();
    let (_, host) = rest.rsplit_once('@').unwrap();
    let url = format!("{scheme}://{READER}:{PASSWORD}@{host}");
    let refresh = REFRESH_MS.to_string();
    let cli = Cli::try_parse_from([
        "order-console",
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--database-url",
        &url,
        "--services=",
        "--tokens=",
        "--orders-queue-url=",
        "--orders-dlq-url=",
        "--scrape-ms",
        "500",
        "--refresh-ms",
        &refresh,
        // The page waits for a refresh as long as the console may take to answer one (three
        // reads within statement timeout + 2 s, and 1 s): 10 s here, 22 s by default.
        "--db-statement-timeout-ms",
        "1000",
    ])
    .unwrap();
    let Command::Serve(serve) = cli.command else {
        panic!("not serve");
    };
    let console = Console::build_with_sqs(serve.settings().unwrap(), None)
        .await
        .unwrap();
    let (base, pause) = pausable_proxy(console.addr()).await;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(console.run_until(async {
        let _ = stopped.await;
    }));

    let browser = Browser::start(LAPTOP).await;
    browser.goto(&format!("{base}/services")).await;
    let state = "return document.getElementById('live-status').dataset.state;";
    let is = |wanted: &str| {
        format!("return document.getElementById('live-status').dataset.state === '{wanted}';")
    };
    browser
        .wait_for("the page live", &is("ok"), Duration::from_secs(30))
        .await;
    pause.send_replace(true);
    // A refresh in flight when paused may still have been answered: a few refreshes later
    // the page no longer claims to be live.
    browser
        .wait_for(
            "the page says it lost the console",
            "const s = document.getElementById('live-status'); \
             return s.dataset.state === 'error' && !/^live/.test(s.textContent);",
            Duration::from_millis(REFRESH_MS * 15),
        )
        .await;
    // And keeps saying so while the console does not answer.
    tokio::time::sleep(Duration::from_millis(REFRESH_MS * 3)).await;
    assert_eq!(browser.js(state).await, Value::from("error"));
    pause.send_replace(false);
    browser
        .wait_for("the page live again", &is("ok"), Duration::from_secs(30))
        .await;
    browser.close().await;
    let _ = stop.send(());
}

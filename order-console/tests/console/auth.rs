//! Sign-in with console tokens: pages send people to the sign-in form, data answers 401,
//! scripts send a bearer token, people get an HttpOnly session cookie.

use hyper::Method;
use order_testkit::pg::TestDatabase;

use crate::support::*;

const TOKEN: &str = "ops-token-0123456789abcdef";

#[tokio::test]
async fn without_a_token_nothing_is_shown_and_with_one_everything_is() {
    let db = TestDatabase::migrated().await;
    let console = start(&db, &["--tokens", &format!("ops={TOKEN}")]).await;
    let addr = console.addr;

    // Pages send people to the sign-in form, remembering where they were going.
    let page = get(addr, "/flow?x=1").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/login?next=/flow%3Fx%3D1");
    for path in ["/fragments/services", "/api/charts/flow"] {
        let answer = get(addr, path).await;
        assert_eq!(answer.status, 401, "{path}");
        assert_eq!(answer.header("www-authenticate"), "Bearer");
    }
    // Liveness, readiness, the sign-in form and the static files need no token.
    for path in ["/healthz", "/readyz", "/login", "/static/console.js"] {
        assert_eq!(get(addr, path).await.status, 200, "{path}");
    }

    // A script with a bearer token; a wrong one is refused.
    let bearer = format!("Bearer {TOKEN}");
    let answer = request(
        addr,
        Method::GET,
        "/fragments/services",
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(answer.status, 200);
    // The scheme in any case (RFC 9110), as order-grpc takes it.
    for scheme in ["bearer", "BEARER"] {
        let answer = request(
            addr,
            Method::GET,
            "/fragments/services",
            &[("authorization", &format!("{scheme} {TOKEN}"))],
            "",
        )
        .await;
        assert_eq!(answer.status, 200, "{scheme}");
    }
    // A wrong one is refused as such on every path: a script is told its token is not valid,
    // not sent to the sign-in form (a 303 that `curl -L` followed to a 200) nor told to sign in.
    for path in ["/fragments/services", "/api/charts/flow", "/services"] {
        let wrong = request(
            addr,
            Method::GET,
            path,
            &[("authorization", "Bearer ops-token-0123456789abcdeX")],
            "",
        )
        .await;
        assert_eq!(wrong.status, 401, "{path}");
        assert_eq!(
            wrong.header("www-authenticate"),
            "Bearer error=\"invalid_token\"",
            "{path}"
        );
        assert!(
            wrong.body.contains("that token is not valid"),
            "{path}: {}",
            wrong.body
        );
    }

    // A person signs in: a wrong token gets the form again and no cookie.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let refused = request(
        addr,
        Method::POST,
        "/login",
        &form,
        "token=nope&next=%2Fflow",
    )
    .await;
    assert_eq!(refused.status, 401);
    assert!(refused.header("set-cookie").is_empty());
    assert!(refused.body.contains("that token is not valid"));
    let signed_in = request(
        addr,
        Method::POST,
        "/login",
        &form,
        &format!("token={TOKEN}&next=%2Fflow"),
    )
    .await;
    assert_eq!(signed_in.status, 303);
    assert_eq!(signed_in.header("location"), "/flow");
    let cookie = signed_in.header("set-cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the cookie carries the token: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = request(addr, Method::GET, "/flow", &[("cookie", &session)], "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(">ops<"), "who is signed in is shown");
    assert!(!page.body.contains(TOKEN), "the token is shown");

    // Signing out ends the session on the server, not only in the browser.
    let out = request(addr, Method::POST, "/logout", &[("cookie", &session)], "").await;
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    let after = request(
        addr,
        Method::GET,
        "/fragments/flow",
        &[("cookie", &session)],
        "",
    )
    .await;
    assert_eq!(after.status, 401);

    // After sign-in the console goes only to its own pages.
    for next in [
        "https%3A%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "%2F%5Cevil.example",
        // Same-site paths that are none of the console's pages.
        "%2Flogout",
        "%2Fapi%2Fcharts%2Fflow",
        "%2Fstatic%2Fconsole.js",
        "%2Forders%2Fx%2Fy",
    ] {
        let answer = request(
            addr,
            Method::POST,
            "/login",
            &form,
            &format!("token={TOKEN}&next={next}"),
        )
        .await;
        assert_eq!(answer.header("location"), "/services", "{next}");
    }
    for own in [
        "/flow",
        "/orders?q=abc",
        "/orders/0196a3c4-7f5e-7c1a-9c2b-2f0d4f1e8a10",
        "/",
    ] {
        let answer = request(
            addr,
            Method::POST,
            "/login",
            &form,
            &format!(
                "token={TOKEN}&next={}",
                order_console::web::percent_encode(own)
            ),
        )
        .await;
        assert_eq!(answer.header("location"), own, "{own}");
    }
}

#[tokio::test]
async fn a_console_without_tokens_listens_on_loopback_only() {
    let args = [
        "order-console",
        "serve",
        "--addr",
        "0.0.0.0:9470",
        "--database-url",
        "postgres://x@127.0.0.1/db",
        "--tokens=",
    ];
    let cli = <order_console::config::Cli as clap::Parser>::try_parse_from(args).unwrap();
    let order_console::config::Command::Serve(serve) = cli.command else {
        panic!("not serve");
    };
    let error = serve.settings().unwrap_err();
    assert!(error.contains("without ORDER_CONSOLE_TOKENS"), "{error}");
}

/// With sign-in off, a page of another site open in the operator's browser must not read the
/// console by rebinding its own name to 127.0.0.1: only requests addressed to a loopback
/// name are answered.
#[tokio::test]
async fn without_sign_in_only_requests_to_a_loopback_name_are_answered() {
    let db = TestDatabase::migrated().await;
    let console = start(&db, &[]).await;
    let port = console.addr.port();
    for host in [
        format!("attacker.example:{port}"),
        "attacker.example".to_owned(),
        format!("127.0.0.1.attacker.example:{port}"),
        format!("localhost.attacker.example:{port}"),
        format!("10.0.0.1:{port}"),
        format!("[::2]:{port}"),
    ] {
        for path in [
            "/services",
            "/orders",
            "/api/charts/flow",
            "/fragments/services",
        ] {
            let answer = request(console.addr, Method::GET, path, &[("host", &host)], "").await;
            assert_eq!(answer.status, 421, "{host} {path}: {}", answer.body);
            assert!(!answer.body.contains("order"), "{}", answer.body);
        }
    }
    for host in [
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.1.2.3:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
    ] {
        let answer = request(
            console.addr,
            Method::GET,
            "/services",
            &[("host", &host)],
            "",
        )
        .await;
        assert_eq!(answer.status, 200, "{host}");
    }
    // A request naming no host, or one that is no text, is not addressed to a loopback name;
    // nor is one whose absolute URI names another, whatever its Host says.
    for raw in [
        b"GET /services HTTP/1.0\r\n\r\n".to_vec(),
        [
            &b"GET /services HTTP/1.1\r\nhost: evil"[..],
            &[0xff],
            &b".example\r\nconnection: close\r\n\r\n"[..],
        ]
        .concat(),
        format!(
            "GET http://evil.example/services HTTP/1.1\r\nhost: localhost:{port}\r\nconnection: close\r\n\r\n"
        )
        .into_bytes(),
    ] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(console.addr).await.unwrap();
        socket.write_all(&raw).await.unwrap();
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.0 421") || answer.starts_with("HTTP/1.1 421"),
            "{}: {answer}",
            String::from_utf8_lossy(&raw)
        );
    }
}

/// A request the handlers cannot read (a sign-in without its form, a repeated query
/// parameter) gets the console's own page with what was wrong, not the framework's bare text.
#[tokio::test]
async fn malformed_requests_get_the_consoles_own_error_page() {
    let db = TestDatabase::migrated().await;
    let console = start(&db, &["--tokens", &format!("ops={TOKEN}")]).await;
    let addr = console.addr;
    let is_page = |answer: &Answer| {
        answer.header("content-type").starts_with("text/html")
            && answer.body.contains("<!DOCTYPE html>")
            && answer.body.contains("role=\"alert\"")
    };
    // No form at all, and a form that lacks the token.
    for (headers, body) in [
        (&[][..], ""),
        (
            &[("content-type", "application/x-www-form-urlencoded")][..],
            "next=%2Fflow",
        ),
    ] {
        let answer = request(addr, Method::POST, "/login", headers, body).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert!(is_page(&answer), "{}", answer.body);
        assert!(answer.body.contains("sign-in form"), "{}", answer.body);
        assert!(answer.header("set-cookie").is_empty());
    }
    let answer = get(addr, "/login?next=%2Fflow&next=%2Fqueues").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("name=\"token\""), "{}", answer.body);

    let signed_in = request(
        addr,
        Method::POST,
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("token={TOKEN}"),
    )
    .await;
    let session = signed_in
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let cookie = [("cookie", session.as_str())];
    let a = uuid::Uuid::new_v4();
    let answer = request(
        addr,
        Method::GET,
        &format!("/orders?q={a}&q={}", uuid::Uuid::new_v4()),
        &cookie,
        "",
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(is_page(&answer), "{}", answer.body);
    assert!(answer.body.contains("one search"), "{}", answer.body);
}

/// Failed sign-ins are limited per client address: after `failures` wrong tokens within the
/// window the address gets 429 with Retry-After, whatever it sends (the right token
/// included, unchecked; a bearer token too); another address is unaffected; a sign-in clears
/// the address's count; after the window it may try again.
#[tokio::test]
async fn failed_sign_ins_are_limited_per_address() {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, Instant};

    let db = TestDatabase::migrated().await;
    let url = reader_url(&db).await;
    let mut settings = settings(&url, &["--tokens", &format!("ops={TOKEN}")]);
    // Long enough for a few requests on a loaded machine, short enough to wait out.
    let window = Duration::from_secs(3);
    settings.login_limit.window = window;
    let failures = settings.login_limit.failures;
    assert_eq!(failures, 5, "the default");
    let console = start_with(settings, None).await;
    let addr = console.addr;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let wrong = "token=ops-token-0123456789abcdeX&next=%2Fflow";
    let right = format!("token={TOKEN}&next=%2Fflow");
    let one = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
    let two = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let three = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    let login = |from, body: String| async move {
        request_from(from, addr, Method::POST, "/login", &form, &body).await
    };

    // The window starts at the first failure, which the server saw before this instant.
    let first = login(one, wrong.to_owned()).await;
    let window_started_by = Instant::now();
    assert_eq!(first.status, 401);
    for _ in 1..failures {
        assert_eq!(login(one, wrong.to_owned()).await.status, 401);
    }
    let refused = login(one, right.clone()).await;
    assert!(
        window_started_by.elapsed() < window,
        "the machine is too slow for this test's window"
    );
    assert_eq!(refused.status, 429, "{}", refused.body);
    let retry_after: u64 = refused.header("retry-after").parse().unwrap();
    assert!(
        (1..=window.as_secs()).contains(&retry_after),
        "{retry_after}"
    );
    assert!(refused.header("set-cookie").is_empty());
    assert!(
        refused.body.contains("too many failed sign-ins"),
        "the console's own page: {}",
        refused.body
    );
    assert!(refused.body.contains("<form"), "{}", refused.body);
    // A script's bearer token from that address is not checked either.
    let bearer = format!("Bearer {TOKEN}");
    let script = request_from(
        one,
        addr,
        Method::GET,
        "/fragments/services",
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(script.status, 429, "{}", script.body);
    assert!(!script.header("retry-after").is_empty());

    // Another address signs in.
    let other = login(two, right.clone()).await;
    assert_eq!(other.status, 303, "{}", other.body);
    assert!(!other.header("set-cookie").is_empty());

    // A sign-in clears the count: a third address fails all but once, signs in, and may
    // fail as often again.
    for _ in 1..failures {
        assert_eq!(login(three, wrong.to_owned()).await.status, 401);
    }
    assert_eq!(login(three, right.clone()).await.status, 303);
    for _ in 1..failures {
        assert_eq!(login(three, wrong.to_owned()).await.status, 401);
    }
    assert_eq!(login(three, right.clone()).await.status, 303);

    // Failed bearer tokens count as failed sign-ins.
    let four = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)));
    let four_started = Instant::now();
    for _ in 0..failures {
        let answer = request_from(
            four,
            addr,
            Method::GET,
            "/fragments/services",
            &[("authorization", "Bearer ops-token-0123456789abcdeX")],
            "",
        )
        .await;
        assert_eq!(answer.status, 401);
    }
    let refused = login(four, right.clone()).await;
    assert!(
        four_started.elapsed() < window,
        "the machine is too slow for this test's window"
    );
    assert_eq!(refused.status, 429, "{}", refused.body);

    // After the window the first address may sign in again.
    tokio::time::sleep_until((window_started_by + window + Duration::from_millis(50)).into()).await;
    let again = login(one, right).await;
    assert_eq!(again.status, 303, "{}", again.body);
    assert!(!again.header("set-cookie").is_empty());
}

/// Behind a proxy of `--trusted-proxies`, failed sign-ins count against the client the proxy
/// names in `X-Forwarded-For`, not against the proxy that everyone shares: one client that
/// guesses is refused, another behind the same proxy signs in, and a client that forges an
/// `X-Forwarded-For` entry of its own (left of what the proxy appended) changes nothing. A
/// peer that is no trusted proxy is counted as itself, whatever it sends.
#[tokio::test]
async fn behind_a_trusted_proxy_failed_sign_ins_count_against_the_forwarded_client() {
    use std::net::{IpAddr, Ipv4Addr};

    let db = TestDatabase::migrated().await;
    let url = reader_url(&db).await;
    let settings = settings(
        &url,
        &[
            "--tokens",
            &format!("ops={TOKEN}"),
            "--trusted-proxies",
            "127.0.0.5/32, 127.0.0.6",
        ],
    );
    let failures = settings.login_limit.failures;
    let console = start_with(settings, None).await;
    let addr = console.addr;
    let proxy = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)));
    let untrusted = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)));
    let wrong = "token=ops-token-0123456789abcdeX&next=%2Fflow";
    let right = format!("token={TOKEN}&next=%2Fflow");
    let login = |from, forwarded: &'static str, body: String| async move {
        request_from(
            from,
            addr,
            Method::POST,
            "/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-forwarded-for", forwarded),
            ],
            &body,
        )
        .await
    };

    // The guessing client, each time with a different forged entry of its own in front.
    let forged = [
        "198.51.100.1, 203.0.113.9",
        "198.51.100.2, 203.0.113.9",
        "198.51.100.3, 203.0.113.9",
        "198.51.100.4, 203.0.113.9",
        "198.51.100.5, 203.0.113.9",
    ];
    for forwarded in forged.iter().take(failures as usize) {
        assert_eq!(login(proxy, forwarded, wrong.to_owned()).await.status, 401);
    }
    // Through a second trusted proxy (a chain) it is still the same client.
    let refused = login(proxy, "203.0.113.9, 127.0.0.6", right.clone()).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    // Another client behind the same proxy signs in.
    let other = login(proxy, "203.0.113.10", right.clone()).await;
    assert_eq!(other.status, 303, "{}", other.body);

    // A peer that is not a trusted proxy is itself, whatever it forwards.
    for _ in 0..failures {
        assert_eq!(
            login(untrusted, "203.0.113.11", wrong.to_owned())
                .await
                .status,
            401
        );
    }
    assert_eq!(
        login(untrusted, "203.0.113.12", right.clone()).await.status,
        429
    );
    assert_eq!(login(proxy, "203.0.113.11", right).await.status, 303);
}

/// `order-console healthcheck` probes the console where `ORDER_CONSOLE_ADDR` says it listens
/// (as `serve` does), and a failed probe names the URL it tried.
#[tokio::test]
async fn the_healthcheck_probes_the_address_the_console_listens_on() {
    let db = TestDatabase::migrated().await;
    let console = start(&db, &[]).await;
    let binary = env!("CARGO_BIN_EXE_order-console");
    let probe = |addr: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(binary)
                .arg("healthcheck")
                .env_clear()
                .env("ORDER_CONSOLE_ADDR", addr)
                .output()
                .unwrap()
        })
    };
    let ok = probe(console.addr.to_string()).await.unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let closed = order_testkit::net::free_port().unwrap();
    let refused = probe(format!("127.0.0.1:{closed}")).await.unwrap();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{closed}/readyz")),
        "{stderr}"
    );
}

/// Another website cannot lock an operator out: a sign-in form posted from a page of another
/// origin (`Origin` not the console's, or `Sec-Fetch-Site: cross-site`) is refused with 403
/// and not counted against the address, however often it comes; the console's own form
/// (same origin, or the `Origin: null` a browser sends under the console's own
/// `Referrer-Policy: no-referrer`, with `Sec-Fetch-Site: same-origin`) and a client that sends
/// neither header (curl, a script) sign in as before.
#[tokio::test]
async fn a_sign_in_posted_by_another_website_is_refused_and_not_counted() {
    let db = TestDatabase::migrated().await;
    let url = reader_url(&db).await;
    let settings = settings(&url, &["--tokens", &format!("ops={TOKEN}")]);
    let failures = settings.login_limit.failures;
    let console = start_with(settings, None).await;
    let addr = console.addr;
    let own = format!("http://{addr}");
    let wrong = "token=ops-token-0123456789abcdeX&next=%2Fflow";
    let right = format!("token={TOKEN}&next=%2Fflow");
    let form = ("content-type", "application/x-www-form-urlencoded");
    let login = |headers: Vec<(&'static str, String)>, body: String| async move {
        let mut all: Vec<(&str, &str)> = vec![form];
        all.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
        request(addr, Method::POST, "/login", &all, &body).await
    };
    let foreign: Vec<Vec<(&'static str, String)>> = vec![
        vec![("origin", "https://evil.example".to_owned())],
        vec![("origin", format!("http://{addr}.evil.example"))],
        vec![("sec-fetch-site", "cross-site".to_owned())],
        vec![
            ("origin", "null".to_owned()),
            ("sec-fetch-site", "cross-site".to_owned()),
        ],
        vec![
            ("origin", own.clone()),
            ("sec-fetch-site", "cross-site".to_owned()),
        ],
    ];
    // Many more than the limit, wrong tokens and right ones: none is looked at or counted.
    for _ in 0..=failures {
        for headers in &foreign {
            for body in [wrong.to_owned(), right.clone()] {
                let answer = login(headers.clone(), body).await;
                assert_eq!(answer.status, 403, "{headers:?}: {}", answer.body);
                assert!(answer.header("set-cookie").is_empty());
                assert!(
                    answer.body.contains("another website"),
                    "a clear refusal: {}",
                    answer.body
                );
            }
        }
    }
    // The console's own form, and a script, still sign in from the same address.
    for headers in [
        vec![
            ("origin", own.clone()),
            ("sec-fetch-site", "same-origin".to_owned()),
        ],
        vec![("origin", own.clone())],
        vec![
            ("origin", "null".to_owned()),
            ("sec-fetch-site", "same-origin".to_owned()),
        ],
        vec![("sec-fetch-site", "same-origin".to_owned())],
        vec![],
    ] {
        let answer = login(headers.clone(), right.clone()).await;
        assert_eq!(answer.status, 303, "{headers:?}: {}", answer.body);
        assert!(!answer.header("set-cookie").is_empty());
    }
    // And wrong tokens from the console's own form still count.
    for _ in 0..failures {
        let answer = login(vec![("origin", own.clone())], wrong.to_owned()).await;
        assert_eq!(answer.status, 401, "{}", answer.body);
    }
    let answer = login(vec![("origin", own.clone())], right.clone()).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
}

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
    let wrong = request(
        addr,
        Method::GET,
        "/fragments/services",
        &[("authorization", "Bearer ops-token-0123456789abcdeX")],
        "",
    )
    .await;
    assert_eq!(wrong.status, 401);

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

//! The HTTP side: routes, sign-in, security headers. Every page is rendered on the server
//! with maud, which escapes every value it interpolates; the browser runs one script of ours
//! (`/static/console.js`: refresh the live part of the page, draw the charts) and the vendored
//! chart library, both from this origin. No inline script, no inline style; the Content
//! Security Policy forbids both.

pub mod auth;
pub mod pages;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::board::Board;
use auth::Auth;

/// The Content Security Policy of every answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The data.
    pub board: Arc<Board>,
    /// Sign-in.
    pub auth: Arc<Auth>,
    /// The latest readiness answer, and when it was had (`/readyz` asks the database at most
    /// once a second, however often it is called).
    pub ready: Arc<tokio::sync::Mutex<Option<Readiness>>>,
}

/// A readiness answer and when it was had: ready, or which way not.
pub type Readiness = (std::time::Instant, Result<(), &'static str>);

/// Who is looking (the token's name; `None` when sign-in is off).
#[derive(Debug, Clone)]
pub struct Viewer(pub Option<String>);

/// The client's address as the console sees it: the connection's peer, or, when the peer is
/// one of `--trusted-proxies`, the right-most `X-Forwarded-For` entry that is not itself one
/// of them (each proxy appends the address it was reached from, so the entries to the left of
/// the last trusted hop are whatever the client chose to send, never trusted). Unspecified
/// (`0.0.0.0`) when the router is served without connection info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    fn of(extensions: &http::Extensions, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> Self {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        Self(client_address(peer, headers, trusted))
    }
}

/// See [`ClientAddr`]. A forwarded entry that does not read as an address (an obfuscated
/// name, `unknown`) ends the walk: the hop it came through is the client.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| {
        let address = address.to_canonical();
        trusted.iter().any(|range| range.contains(&address))
    };
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for entry in entries.iter().rev() {
        let Some(address) = forwarded_address(entry.trim()) else {
            break;
        };
        client = address;
        if !is_trusted(&address) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry's address: `203.0.113.9`, `2001:db8::1`, and as some proxies
/// write them, with a port (`203.0.113.9:5678`, `[2001:db8::1]:443`) or in brackets.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse::<IpAddr>().ok())
        })
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(
            &parts.extensions,
            &parts.headers,
            &state.board.settings.trusted_proxies,
        ))
    }
}

/// What a client that failed too many sign-ins is told, and the `Retry-After` seconds.
fn too_many(wait: Duration) -> (String, HeaderValue) {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    (
        format!("too many failed sign-ins from this address: try again in {seconds} s"),
        HeaderValue::from(seconds),
    )
}

/// The router.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/", get(|| async { Redirect::to("/services") }))
        .route("/services", get(pages::services_page))
        .route("/flow", get(pages::flow_page))
        .route("/subscriptions", get(pages::subscriptions_page))
        .route("/queues", get(pages::queues_page))
        .route("/alarms", get(pages::alarms_page))
        .route("/orders", get(pages::orders_page))
        .route("/orders/{id}", get(pages::order_page))
        .route("/fragments/{page}", get(pages::fragment))
        .route("/api/charts/{page}", get(pages::charts))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_viewer,
        ));
    Router::new()
        .merge(protected)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/login", get(login_form).post(login))
        .route("/static/{*file}", get(static_file))
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers on every answer: CSP, no sniffing, no framing, no referrer, no caching of data.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=()",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if is_static {
            "public, max-age=300"
        } else {
            "no-store"
        }),
    );
    response
}

/// Let a signed-in viewer through; send others to sign in (pages) or answer 401 (the rest).
/// The token of an `authorization: Bearer <token>` header; the scheme in any case (RFC 9110).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn require_viewer(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if !state.auth.required() {
        // Without sign-in the console listens on loopback only, and a page of any site open
        // in the operator's browser could still reach it under its own name (DNS
        // rebinding): only a request addressed to a loopback name is answered.
        // Every name the request carries must be a loopback one, and it must carry one: the
        // Host header (HTTP/1.1) and the URI's authority (HTTP/2's `:authority`, or an
        // absolute URI), whichever are there; a Host that is not text is no loopback name.
        let host = (request.headers().get(header::HOST)).map(|v| v.to_str().unwrap_or(""));
        let authority = request.uri().authority().map(|a| a.as_str());
        let named = [host, authority];
        if named.iter().all(Option::is_none)
            || named.iter().flatten().any(|name| !is_loopback_host(name))
        {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                "this console answers only requests addressed to localhost, 127.0.0.1 or [::1] \
                 (sign-in is off)\n",
            )
                .into_response();
        }
        request.extensions_mut().insert(Viewer(None));
        return next.run(request).await;
    }
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    // A bearer token is a sign-in: one of a client that failed too often is not checked, and
    // a wrong one counts as a failure.
    let client = ClientAddr::of(
        request.extensions(),
        request.headers(),
        &state.board.settings.trusted_proxies,
    )
    .0;
    let from_bearer = match bearer {
        Some(token) => {
            if let Err(wait) = state.auth.limiter.attempt(client) {
                let (text, retry_after) = too_many(wait);
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, retry_after)],
                    format!("{text}\n"),
                )
                    .into_response();
            }
            let name = state.auth.token_name(token);
            match name {
                Some(_) => state.auth.limiter.forgive(client),
                None => tracing::info!(%client, "console bearer token refused: unknown token"),
            }
            name
        }
        None => None,
    };
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(auth::session_cookie)
        .and_then(|id| state.auth.session(id));
    match from_bearer.or(from_cookie) {
        Some(name) => {
            request.extensions_mut().insert(Viewer(Some(name)));
            next.run(request).await
        }
        // A script whose token was refused is told so, whatever it asked for (not sent to the
        // sign-in form, which `curl -L` follows to a 200).
        None if bearer.is_some() => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
            "that token is not valid\n",
        )
            .into_response(),
        None => {
            let path = request.uri().path();
            let wants_page = request.method() == http::Method::GET
                && !path.starts_with("/fragments/")
                && !path.starts_with("/api/");
            if wants_page {
                let next_path = request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "/services".to_owned());
                let target = format!("/login?next={}", percent_encode(&next_path));
                Redirect::to(&target).into_response()
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "sign in first: a console token is required\n",
                )
                    .into_response()
            }
        }
    }
}

/// Whether a `Host` header names this machine's loopback: `localhost`, an address of
/// 127.0.0.0/8 or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((address, port)) if port.is_empty() || port.starts_with(':') => address,
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Percent-encode everything but unreserved characters and `/`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The login page's query.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

async fn login_form(
    State(state): State<AppState>,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    // A query it cannot read (`next` twice): the form, going to the start page.
    let next = query.ok().and_then(|Query(q)| q.next);
    if !state.auth.required() {
        return Redirect::to(&auth::safe_next(next.as_deref())).into_response();
    }
    pages::login(&auth::safe_next(next.as_deref()), None).into_response()
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Why a sign-in was sent by another website, if it was: its `Sec-Fetch-Site` says anything
/// but `same-origin` or `none` (`cross-site`, or `same-site`: a sibling subdomain is another
/// website too), or, from a browser that sends no `Sec-Fetch-Site`, its `Origin` is another
/// origin than the one the request is addressed to (its `Host`, or HTTP/2's `:authority`). `Origin: null` says nothing (a browser sends it for the console's
/// own form, whose page has `Referrer-Policy: no-referrer`), and neither header at all is a
/// client that is no browser (curl, a script): both are let through. A browser sends
/// `Sec-Fetch-Site` and `Origin` on every form post, and a page cannot change either.
pub fn foreign_sign_in(headers: &HeaderMap, authority: Option<&str>) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        // A browser that says where the post comes from is believed (it cannot be forged by
        // a page): the Origin check below would refuse the console's own form behind a proxy
        // that rewrites Host.
        let site = site.to_str().unwrap_or("").trim();
        return (!(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")))
            .then(|| format!("Sec-Fetch-Site: {site}"));
    }
    let origin = headers.get(header::ORIGIN)?;
    let Ok(origin) = origin.to_str() else {
        return Some("an Origin that is not text".to_owned());
    };
    let origin = origin.trim();
    if origin.eq_ignore_ascii_case("null") {
        return None;
    }
    let own = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(authority);
    let same = origin.split_once("://").is_some_and(|(scheme, host)| {
        let scheme = scheme.to_ascii_lowercase();
        own.is_some_and(|own| {
            without_default_port(&scheme, host)
                .eq_ignore_ascii_case(without_default_port(&scheme, own.trim()))
        })
    });
    (!same).then(|| format!("Origin: {origin}"))
}

/// `host` without the port its scheme implies (`:80` for http, `:443` for https).
fn without_default_port<'a>(scheme: &str, host: &'a str) -> &'a str {
    let default = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return host,
    };
    host.strip_suffix(default).unwrap_or(host)
}

async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    uri: http::Uri,
    headers: HeaderMap,
    form: Result<axum::Form<LoginForm>, FormRejection>,
) -> Response {
    // A form another website's page posted (to lock this address out with wrong tokens, or
    // to sign the browser in to a session of its choosing) is refused before anything else,
    // and not counted: only the console's own page, or a client that is no browser, signs in.
    if let Some(why) = foreign_sign_in(&headers, uri.authority().map(|a| a.as_str())) {
        tracing::info!(%client, %why, "console sign-in refused: sent by another website");
        return (
            StatusCode::FORBIDDEN,
            pages::login(
                &auth::safe_next(None),
                Some(&format!(
                    "this sign-in was sent by another website ({why}), not by the console's own \
                     page: sign in here"
                )),
            ),
        )
            .into_response();
    }
    // A client that failed too often is refused before its token is even looked at; this
    // try counts as a failure until its token proves valid.
    if let Err(wait) = state.auth.limiter.attempt(client) {
        let next = form
            .as_ref()
            .ok()
            .and_then(|axum::Form(form)| form.next.as_deref());
        let (text, retry_after) = too_many(wait);
        tracing::info!(%client, "console sign-in refused: too many failures");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after)],
            pages::login(&auth::safe_next(next), Some(&text)),
        )
            .into_response();
    }
    let Ok(axum::Form(form)) = form else {
        return (
            StatusCode::BAD_REQUEST,
            pages::login(
                &auth::safe_next(None),
                Some("the sign-in form did not arrive: sign in with the token in this form"),
            ),
        )
            .into_response();
    };
    let next = auth::safe_next(form.next.as_deref());
    let Some(name) = state.auth.token_name(form.token.trim()) else {
        tracing::info!(%client, "console sign-in refused: unknown token");
        return (
            StatusCode::UNAUTHORIZED,
            pages::login(&next, Some("that token is not valid")),
        )
            .into_response();
    };
    tracing::info!(token = %name, "console sign-in");
    state.auth.limiter.succeeded(client);
    let id = state.auth.start_session(name);
    let secure = if state.board.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        auth::COOKIE,
        auth::SESSION.as_secs()
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(auth::session_cookie)
    {
        state.auth.end_session(id);
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "order_console_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

/// Ready when the database answers. Open to anyone, so it says only which way it is not
/// (the database's own words, which may name users and schemas, go to the log and to the
/// signed-in pages), and asks the database at most once a second.
async fn readyz(State(state): State<AppState>) -> Response {
    let answer = {
        let mut latest = state.ready.lock().await;
        match *latest {
            Some((at, answer)) if at.elapsed() < Duration::from_secs(1) => answer,
            _ => {
                let answer = state.board.db.ping().await.map_err(|error| {
                    tracing::warn!(%error, "not ready");
                    match error {
                        crate::db::Error::Unavailable(_) => "database unavailable",
                        crate::db::Error::Query(_) => "database query failed",
                        crate::db::Error::NotReadOnly(_) => "database role may write",
                    }
                });
                *latest = Some((std::time::Instant::now(), answer));
                answer
            }
        }
    };
    match answer {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        pages::message_page("not found", "There is no such page."),
    )
        .into_response()
}

mod vendored {
    include!(concat!(env!("OUT_DIR"), "/vendored.rs"));
}

pub use vendored::{CHARTS, UPLOT_VERSION};

const CSS: &str = include_str!("../../assets/console.css");
const JS: &str = include_str!("../../assets/console.js");
const UPLOT_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/uPlot.iife.min.js"));
const UPLOT_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/uPlot.min.css"));
const UPLOT_LICENSE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/uPlot.LICENSE.txt"));

async fn static_file(Path(file): Path<String>) -> Response {
    let (content_type, body): (&str, &[u8]) = match file.as_str() {
        "console.css" => ("text/css; charset=utf-8", CSS.as_bytes()),
        "console.js" => ("text/javascript; charset=utf-8", JS.as_bytes()),
        "vendor/uPlot.iife.min.js" if CHARTS => ("text/javascript; charset=utf-8", UPLOT_JS),
        "vendor/uPlot.min.css" if CHARTS => ("text/css; charset=utf-8", UPLOT_CSS),
        "vendor/uPlot.LICENSE.txt" if CHARTS => ("text/plain; charset=utf-8", UPLOT_LICENSE),
        _ => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[cfg(test)]
mod client_address_tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_right_most_untrusted_forwarded_entry_is_the_client() {
        let trusted = [
            crate::config::parse_proxy("10.0.0.0/16").unwrap(),
            crate::config::parse_proxy("::1").unwrap(),
        ];
        let from =
            |peer: &str, values: &[&str]| client_address(ip(peer), &headers(values), &trusted);
        // No trusted proxy: the peer, whatever it sends.
        assert_eq!(from("192.0.2.1", &["203.0.113.9"]), ip("192.0.2.1"));
        assert_eq!(from("192.0.2.1", &[]), ip("192.0.2.1"));
        // A trusted proxy names its client; entries left of it are the client's own.
        assert_eq!(
            from("10.0.1.2", &["198.51.100.1, 203.0.113.9"]),
            ip("203.0.113.9")
        );
        // A chain of trusted proxies, in one header or several.
        assert_eq!(
            from("10.0.1.2", &["203.0.113.9, 10.0.3.4"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            from("10.0.1.2", &["203.0.113.9", "10.0.3.4"]),
            ip("203.0.113.9")
        );
        // An IPv4-mapped peer is its IPv4 address.
        assert_eq!(from("::ffff:10.0.1.2", &["203.0.113.9"]), ip("203.0.113.9"));
        assert_eq!(from("::1", &["2001:db8::7"]), ip("2001:db8::7"));
        // Nothing forwarded, or an entry that is no address: the last hop that was one.
        assert_eq!(from("10.0.1.2", &[]), ip("10.0.1.2"));
        assert_eq!(from("10.0.1.2", &["unknown"]), ip("10.0.1.2"));
        assert_eq!(from("10.0.1.2", &["203.0.113.9, _hidden"]), ip("10.0.1.2"));
        // Entries with a port, or in brackets, as some proxies write them.
        assert_eq!(from("10.0.1.2", &["203.0.113.9:5678"]), ip("203.0.113.9"));
        assert_eq!(
            from("10.0.1.2", &["203.0.113.9, 10.0.3.4:80"]),
            ip("203.0.113.9")
        );
        assert_eq!(from("10.0.1.2", &["[2001:db8::7]:443"]), ip("2001:db8::7"));
        assert_eq!(from("10.0.1.2", &["[2001:db8::7]"]), ip("2001:db8::7"));
        // Every entry trusted: the left-most.
        assert_eq!(from("10.0.1.2", &["10.0.9.9, 10.0.3.4"]), ip("10.0.9.9"));
    }

    #[test]
    fn a_bad_trusted_proxy_is_refused() {
        assert!(crate::config::parse_proxy("10.0.0.0/33").is_err());
        assert!(crate::config::parse_proxy("load-balancer").is_err());
        assert_eq!(
            crate::config::parse_proxy("10.1.2.3").unwrap().to_string(),
            "10.1.2.3/32"
        );
    }
}

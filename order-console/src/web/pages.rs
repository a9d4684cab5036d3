//! The pages. Every value goes through maud's `(...)` interpolation, which escapes it; the
//! only markup not built that way is the fixed SVG of the state machine's arrows.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{AppState, CHARTS, UPLOT_VERSION, Viewer};
use crate::alarms::State as AlarmState;
use crate::board::Board;
use crate::db::{self, STATES};
use crate::services::{Instance, Kind, unix_now};
use crate::subscriptions;

/// The pages of the navigation: (path, title).
const NAV: [(&str, &str); 6] = [
    ("/services", "Services"),
    ("/flow", "Flow"),
    ("/subscriptions", "Subscriptions"),
    ("/queues", "Queues"),
    ("/orders", "Orders"),
    ("/alarms", "Alarms"),
];

/// How healthy something is; the CSS colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Green.
    Ok,
    /// Amber.
    Warn,
    /// Red.
    Bad,
    /// Grey: not known, not applicable.
    Off,
}

impl Health {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Bad => "bad",
            Self::Off => "off",
        }
    }
}

fn badge(health: Health, text: &str) -> Markup {
    html! { span class={"badge " (health.as_str())} data-health=(health.as_str()) { (text) } }
}

/// `2026-05-04T13:20:00Z`, any time at all: before 1970 (imported history) or after 9999
/// (`+10000-01-01T00:00:00Z`) too.
fn time(at: SystemTime) -> String {
    let seconds = match at.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).ok(),
        // Whole seconds, rounded down: 0.5 s before 1970 is 1969-12-31T23:59:59Z.
        Err(before) => {
            let before = before.duration();
            i64::try_from(before.as_secs())
                .ok()
                .map(|s| -s - i64::from(before.subsec_nanos() > 0))
        }
    };
    seconds.map_or_else(|| "-".to_owned(), rfc3339_seconds)
}

/// Unix seconds as [`time`] shows them; `-` for what is no time (not finite, or beyond any
/// calendar: an SQS attribute is any text).
fn unix_time(seconds: f64) -> String {
    // ±2^53: exact in f64, and hundreds of millions of years either way.
    const LIMIT: f64 = 9_007_199_254_740_992.0;
    if !seconds.is_finite() || seconds.abs() >= LIMIT {
        return "-".to_owned();
    }
    rfc3339_seconds(seconds.floor() as i64)
}

/// The UTC date and time of `seconds` since 1970 (before it: negative), to the second.
fn rfc3339_seconds(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Days to a civil date (H. Hinnant's algorithm: eras of 400 years from 0000-03-01).
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    let year = match year {
        0..=9999 => format!("{year:04}"),
        10_000.. => format!("+{year}"),
        _ => format!("-{:04}", -year),
    };
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// `45 s`, `12 min 05 s`, `3 h 04 min`, `2 d 03 h`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {:02} h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn number(value: f64) -> String {
    if value.abs() >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// `1,234,567`.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Orders in `state` as counted: those in flight up to [`db::IN_FLIGHT_COUNT_CAP`], shown
/// as `10,000+` beyond it; the terminal states (Completed, Cancelled) in full.
fn state_count(state: &str, count: i64) -> String {
    let terminal = order_domain::Status::parse(state).is_some_and(|s| s.is_terminal());
    if !terminal && count > db::IN_FLIGHT_COUNT_CAP {
        format!("{}+", grouped(db::IN_FLIGHT_COUNT_CAP.unsigned_abs()))
    } else {
        grouped(count.unsigned_abs())
    }
}

fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", minor / 100, minor % 100)
}

/// The whole page around a body.
fn layout(state: &AppState, viewer: &Viewer, title: &str, active: &str, body: &Markup) -> Markup {
    let refresh = state.board.settings.refresh_interval.as_millis();
    let patience = state.board.settings.page_patience().as_millis();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · order ledger" }
                link rel="stylesheet" href="/static/console.css";
                @if CHARTS {
                    link rel="stylesheet" href="/static/vendor/uPlot.min.css";
                    script src="/static/vendor/uPlot.iife.min.js" defer {}
                }
                script src="/static/console.js" defer {}
            }
            body data-refresh-ms=(refresh) data-patience-ms=(patience) data-page=(active) {
                header.top {
                    a.brand href="/services" { "order ledger" }
                    nav {
                        @for (path, name) in NAV {
                            @if path == active {
                                a href=(path) aria-current="page" { (name) }
                            } @else {
                                a href=(path) { (name) }
                            }
                        }
                    }
                    span.live id="live-status" data-state="idle" { "live" }
                    @if let Some(name) = &viewer.0 {
                        form.signout method="post" action="/logout" {
                            span.who { (name) }
                            button type="submit" { "sign out" }
                        }
                    }
                }
                main { (body) }
                footer {
                    "Read-only: nothing here changes an order. "
                    @if CHARTS {
                        "Charts: "
                        a href="/static/vendor/uPlot.LICENSE.txt" { "uPlot " (UPLOT_VERSION) " (MIT)" }
                        "."
                    } @else {
                        "Charts are off: the chart library was not installed when this console was built (scripts/dev install)."
                    }
                }
            }
        }
    }
}

/// A page whose main part refreshes live from `/fragments/<page>`, with charts from
/// `/api/charts/<page>` when `charts`.
fn live_page(
    state: &AppState,
    viewer: &Viewer,
    page: &str,
    title: &str,
    fragment: &Markup,
    charts: bool,
) -> Markup {
    let active = format!("/{page}");
    layout(
        state,
        viewer,
        title,
        &active,
        &html! {
            h1 { (title) }
            section #live data-src={"/fragments/" (page)} { (fragment) }
            @if charts {
                section.charts data-charts={"/api/charts/" (page)} {}
            }
        },
    )
}

/// A small page with a heading and a sentence (errors, not found).
pub fn message_page(title: &str, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · order ledger" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                main.narrow {
                    h1 { (title) }
                    p { (text) }
                    p { a href="/services" { "back to the board" } }
                }
            }
        }
    }
}

/// The sign-in page.
pub fn login(next: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "sign in · order ledger" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                main.narrow {
                    h1 { "order ledger console" }
                    p { "Sign in with a console token (ORDER_CONSOLE_TOKENS)." }
                    @if let Some(error) = error {
                        p.error role="alert" { (error) }
                    }
                    form.login method="post" action="/login" {
                        input type="hidden" name="next" value=(next);
                        label for="token" { "token" }
                        input #token type="password" name="token" autocomplete="current-password" required;
                        button type="submit" { "sign in" }
                    }
                }
            }
        }
    }
}

fn error_box(text: &str) -> Markup {
    html! { p.error role="alert" { (text) } }
}

/// The strip at the top of every live fragment: how many services ready, alarms firing.
fn summary(board: &Board) -> Markup {
    let instances = board.instances();
    let ready = instances.iter().filter(|i| i.ready).count();
    let alarms = board.alarms();
    let firing: Vec<&str> = alarms
        .iter()
        .filter(|e| e.state == AlarmState::Alarm && !e.alarm.scaling)
        .map(|e| e.alarm.name.as_ref())
        .collect();
    let services_health = if instances.is_empty() {
        Health::Off
    } else if ready == instances.len() {
        Health::Ok
    } else {
        Health::Bad
    };
    html! {
        div.summary {
            a href="/services" { (badge(services_health, &format!("{ready}/{} services ready", instances.len()))) }
            @if firing.is_empty() {
                a href="/alarms" { (badge(Health::Ok, "no alarm")) }
            } @else {
                a href="/alarms" { (badge(Health::Bad, &format!("{} in alarm: {}", firing.len(), firing.join(", ")))) }
            }
            @if let Some(error) = board.db_error() {
                (badge(Health::Bad, &format!("database: {error}")))
            }
            @if let Some(error) = board.queue_error() {
                (badge(Health::Bad, &format!("queues: {error}")))
            }
            span.updated { "updated " (unix_time(unix_now())) }
        }
    }
}

// ------------------------------------------------------------------------------ services

/// The average of `name` over the last `n` points that have it.
fn recent(instance: &Instance, name: &str, n: usize) -> Option<f64> {
    let values: Vec<f64> = instance
        .points
        .iter()
        .rev()
        .take(n)
        .filter_map(|p| p.get(name))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The sum over labels of `prefix:*`, averaged over the last `n` points.
fn recent_sum(instance: &Instance, prefix: &str, n: usize) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for point in instance.points.iter().rev().take(n) {
        for (key, value) in &point.values {
            if let Some(label) = key.strip_prefix(prefix).and_then(|k| k.strip_prefix(':')) {
                let entry = sums.entry(label.to_owned()).or_default();
                entry.0 += value;
                entry.1 += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(k, (sum, count))| (k, sum / count.max(1) as f64))
        .collect()
}

/// Whether a rate can be told yet: two answers in a row since the instance was last down (a
/// rate is the difference of two readings).
fn rates_known(instance: &Instance) -> bool {
    instance
        .points
        .iter()
        .rev()
        .take_while(|point| point.up)
        .nth(1)
        .is_some()
}

/// The rates worth reading: those above zero (shown to two decimals).
fn nonzero(rates: BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    rates
        .into_iter()
        .filter(|(_, rate)| *rate >= 0.005)
        .collect()
}

fn instance_health(instance: &Instance) -> (Health, String) {
    if instance.scrapes == 0 {
        (Health::Off, "not scraped yet".to_owned())
    } else if !instance.up {
        (Health::Bad, format!("down: {}", instance.detail))
    } else if !instance.ready {
        (Health::Bad, instance.detail.clone())
    } else {
        (Health::Ok, "ready".to_owned())
    }
}

fn services_fragment(board: &Board) -> Markup {
    let instances = board.instances();
    let now = unix_now();
    html! {
        (summary(board))
        @if instances.is_empty() {
            p.note { "No service is configured: start the console with ORDER_CONSOLE_SERVICES (the admin endpoints, e.g. http://127.0.0.1:9464)." }
        }
        div.cards {
            @for instance in &instances {
                @let (health, state) = instance_health(instance);
                article.card data-service=(instance.name()) data-kind=(instance.kind.as_str()) data-health=(health.as_str()) {
                    h2 { (instance.name()) }
                    p.state {
                        (badge(health, if health == Health::Ok { "ready" } else if instance.up { "not ready" } else if instance.scrapes == 0 { "waiting" } else { "down" }))
                        @if health != Health::Ok { " " span.detail data-detail { (state) } }
                    }
                    dl {
                        dt { "service" } dd { (instance.kind.as_str()) }
                        dt { "admin" } dd { code { "http://" (instance.target.authority) } }
                        dt { "version" } dd { (instance.version.as_deref().unwrap_or("-")) }
                        dt { "uptime" } dd data-uptime {
                            @match (instance.up, instance.started_at) {
                                (true, Some(started)) => (duration(now - started)),
                                _ => "-",
                            }
                        }
                        @if !instance.up && let Some(seen) = instance.last_seen {
                            dt { "last seen" } dd { (duration(now - seen)) " ago" }
                        }
                        @match instance.kind {
                            Kind::Grpc => {
                                dt { "commands/s" } dd data-rate="commands" {
                                    @let by_outcome = nonzero(recent_sum(instance, "commands_per_s", 5));
                                    @if by_outcome.is_empty() { (if rates_known(instance) { "0" } else { "-" }) }
                                    @for (outcome, rate) in &by_outcome {
                                        span.rate { (outcome) " " (number(*rate)) } " "
                                    }
                                }
                                dt { "latency p50 / p99" } dd {
                                    (recent(instance, "p50_ms", 5).map_or("-".to_owned(), |v| format!("{} ms", number(v))))
                                    " / "
                                    (recent(instance, "p99_ms", 5).map_or("-".to_owned(), |v| format!("{} ms", number(v))))
                                }
                                dt { "shed/s" } dd { (recent(instance, "shed_per_s", 5).map_or("-".to_owned(), number)) }
                            }
                            Kind::Worker => {
                                dt { "messages/s" } dd data-rate="messages" {
                                    @let by_outcome = nonzero(recent_sum(instance, "messages_per_s", 5));
                                    @if by_outcome.is_empty() { (if rates_known(instance) { "0" } else { "-" }) }
                                    @for (outcome, rate) in &by_outcome {
                                        span.rate { (outcome) " " (number(*rate)) } " "
                                    }
                                }
                                dt { "in flight" } dd { (recent(instance, "in_flight", 1).map_or("-".to_owned(), number)) }
                                @for (provider, state) in recent_sum(instance, "circuit", 1) {
                                    dt { "circuit " (provider) } dd { (match state as i64 { 0 => "closed", 1 => "half-open", _ => "open" }) }
                                }
                            }
                            Kind::Projector => {
                                @for (subscription, rate) in recent_sum(instance, "events_per_s", 5) {
                                    dt { (subscription) " events/s" } dd { (number(rate)) }
                                }
                                @for (subscription, lag) in recent_sum(instance, "lag_s", 1) {
                                    dt { (subscription) " lag" } dd { (number(lag)) " s" }
                                }
                            }
                            Kind::Unknown => {}
                        }
                        @if let Some(pool) = recent(instance, "pool_in_use", 1) {
                            dt { "db pool" } dd data-pool {
                                (number(pool)) " in use, "
                                (recent(instance, "pool_open", 1).map_or("-".to_owned(), number)) " open, max "
                                (recent(instance, "pool_max", 1).map_or("-".to_owned(), number))
                                @if let Some(waiting) = recent(instance, "pool_waiting", 1).filter(|w| *w > 0.0) {
                                    ", " (number(waiting)) " waiting"
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Picks one series' value out of a scrape's point.
type Pick = Box<dyn Fn(&crate::services::Point) -> Option<f64>>;

fn services_charts(board: &Board) -> Value {
    let mut charts = Vec::new();
    for (index, instance) in board.instances().iter().enumerate() {
        let name = instance.name();
        let mut chart = |suffix: &str, title: String, unit: &str, series: Vec<(String, Pick)>| {
            if series.is_empty() {
                return;
            }
            let xs: Vec<f64> = instance.points.iter().map(|p| p.t.floor()).collect();
            let mut data = vec![json!(xs)];
            for (_, pick) in &series {
                let ys: Vec<Value> = instance
                    .points
                    .iter()
                    .map(|p| pick(p).map_or(Value::Null, |v| json!((v * 1000.0).round() / 1000.0)))
                    .collect();
                data.push(Value::Array(ys));
            }
            charts.push(json!({
                "id": format!("i{index}-{suffix}"),
                "title": title,
                "unit": unit,
                "labels": series.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(),
                "data": data,
            }));
        };
        let labels = |prefix: &str| -> Vec<String> {
            let mut set = std::collections::BTreeSet::new();
            for point in &instance.points {
                for key in point.values.keys() {
                    if let Some(label) = key.strip_prefix(prefix).and_then(|k| k.strip_prefix(':'))
                    {
                        set.insert(label.to_owned());
                    }
                }
            }
            set.into_iter().collect()
        };
        let by = |prefix: &'static str, labels: Vec<String>| -> Vec<(String, Pick)> {
            labels
                .into_iter()
                .map(|label| {
                    let key = format!("{prefix}:{label}");
                    (
                        label,
                        Box::new(move |p: &crate::services::Point| p.get(&key)) as Pick,
                    )
                })
                .collect()
        };
        match instance.kind {
            Kind::Grpc => {
                chart(
                    "cmd",
                    format!("{name}: commands/s by outcome"),
                    "/s",
                    by("commands_per_s", labels("commands_per_s")),
                );
                chart(
                    "lat",
                    format!("{name}: latency p50 / p99"),
                    "ms",
                    vec![
                        (
                            "p50".to_owned(),
                            Box::new(|p: &crate::services::Point| p.get("p50_ms")),
                        ),
                        (
                            "p99".to_owned(),
                            Box::new(|p: &crate::services::Point| p.get("p99_ms")),
                        ),
                        (
                            "shed/s".to_owned(),
                            Box::new(|p: &crate::services::Point| p.get("shed_per_s")),
                        ),
                    ],
                );
            }
            Kind::Worker => chart(
                "msg",
                format!("{name}: messages/s by outcome"),
                "/s",
                by("messages_per_s", labels("messages_per_s")),
            ),
            Kind::Projector => {
                chart(
                    "ev",
                    format!("{name}: events projected/s"),
                    "/s",
                    by("events_per_s", labels("events_per_s")),
                );
                chart(
                    "lag",
                    format!("{name}: lag"),
                    "s",
                    by("lag_s", labels("lag_s")),
                );
            }
            Kind::Unknown => {}
        }
    }
    Value::Array(charts)
}

// ------------------------------------------------------------------------------ flow

/// (state, column, row) of the drawing.
const LAYOUT: [(&str, u32, u32); 10] = [
    ("Cancelled", 0, 0),
    ("CancellationPending", 2, 0),
    ("Placed", 0, 1),
    ("InventoryReserved", 1, 1),
    ("PaymentAuthorized", 2, 1),
    ("Confirmed", 3, 1),
    ("Processing", 3, 2),
    ("Shipped", 2, 2),
    ("Delivered", 1, 2),
    ("Completed", 0, 2),
];

/// The transitions drawn: every change of state a command can make (a test derives them from
/// the domain's `decide`).
const EDGES: [(&str, &str); 12] = [
    ("Placed", "InventoryReserved"),
    ("InventoryReserved", "PaymentAuthorized"),
    ("PaymentAuthorized", "Confirmed"),
    ("Confirmed", "Processing"),
    ("Processing", "Shipped"),
    ("Shipped", "Delivered"),
    ("Delivered", "Completed"),
    ("Placed", "Cancelled"),
    ("InventoryReserved", "CancellationPending"),
    ("PaymentAuthorized", "CancellationPending"),
    ("Confirmed", "CancellationPending"),
    ("CancellationPending", "Cancelled"),
];

const NODE_W: f64 = 170.0;
const NODE_H: f64 = 58.0;

fn centre(state: &str) -> (f64, f64) {
    let (_, column, row) = LAYOUT
        .iter()
        .find(|(s, _, _)| *s == state)
        .copied()
        .unwrap_or(("", 0, 0));
    (
        20.0 + f64::from(column) * 200.0 + NODE_W / 2.0,
        20.0 + f64::from(row) * 110.0 + NODE_H / 2.0,
    )
}

/// Where the segment from the centre of a node towards `(tx, ty)` leaves its box.
fn border(cx: f64, cy: f64, tx: f64, ty: f64) -> (f64, f64) {
    let (dx, dy) = (tx - cx, ty - cy);
    let sx = if dx == 0.0 {
        f64::INFINITY
    } else {
        (NODE_W / 2.0 + 4.0) / dx.abs()
    };
    let sy = if dy == 0.0 {
        f64::INFINITY
    } else {
        (NODE_H / 2.0 + 4.0) / dy.abs()
    };
    let s = sx.min(sy);
    (cx + dx * s, cy + dy * s)
}

fn state_machine(
    counts: &BTreeMap<String, i64>,
    stuck: &BTreeMap<String, Vec<db::Stuck>>,
) -> Markup {
    html! {
        svg.machine viewBox="0 0 810 318" role="img" aria-label="orders per state of the order state machine" {
            defs {
                marker #arrow viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" {}
                }
            }
            @for (from, to) in EDGES {
                @let (fx, fy) = centre(from);
                @let (tx, ty) = centre(to);
                @let (x1, y1) = border(fx, fy, tx, ty);
                @let (x2, y2) = border(tx, ty, fx, fy);
                line.edge x1=(format!("{x1:.1}")) y1=(format!("{y1:.1}")) x2=(format!("{x2:.1}")) y2=(format!("{y2:.1}")) marker-end="url(#arrow)" {}
            }
            @for (state, _, _) in LAYOUT {
                @let (cx, cy) = centre(state);
                @let count = counts.get(state).copied().unwrap_or(0);
                @let oldest = stuck.get(state).and_then(|l| l.first()).map(|s| s.seconds);
                @let health = match oldest {
                    Some(s) if s > 600.0 => Health::Bad,
                    Some(s) if s > 60.0 => Health::Warn,
                    _ if order_domain::Status::parse(state).is_some_and(|s| s.is_terminal()) => Health::Off,
                    _ => Health::Ok,
                };
                g.node data-state=(state) data-count=(count) data-health=(health.as_str()) {
                    rect class={"node " (health.as_str())} x=(format!("{:.1}", cx - NODE_W / 2.0)) y=(format!("{:.1}", cy - NODE_H / 2.0)) width=(NODE_W) height=(NODE_H) rx="8" {}
                    text.name x=(format!("{cx:.1}")) y=(format!("{:.1}", cy - 6.0)) text-anchor="middle" { (state) }
                    text.count x=(format!("{cx:.1}")) y=(format!("{:.1}", cy + 16.0)) text-anchor="middle" { (state_count(state, count)) }
                }
            }
        }
    }
}

async fn flow_fragment(board: &Board) -> Markup {
    // Side by side: a database that stops answering delays the page by one read's limit.
    let (flow, states) = tokio::join!(board.flow(), board.states());
    let catching_up = board.flow_catching_up().await;
    html! {
        (summary(board))
        @if catching_up {
            p.note data-flow="catching-up" role="status" { "Catching up with the log: the orders per minute of the last few minutes are not all counted yet (more of the log than one refresh reads is still to come)." }
        }
        h2 { "Where orders are now" }
        @match &states {
            Ok((counts, stuck)) => {
                div.scroll.machine-box { (state_machine(counts, stuck)) }
                p.muted { "Orders in flight are counted at every refresh, up to 10,000 a state (10,000+ beyond); Completed and Cancelled, which only grow, once a minute. A state turns amber when its oldest order has waited over a minute, red over ten." }
                h2 { "Longest in each state" }
                div.scroll {
                    table.stuck {
                        thead { tr { th { "state" } th { "orders" } th { "waiting longest" } } }
                        tbody {
                            @for state in STATES.into_iter().filter(|s| !s.is_terminal()).map(|s| s.as_str()) {
                                tr data-state=(state) {
                                    td { (state) }
                                    td.num { (state_count(state, counts.get(state).copied().unwrap_or(0))) }
                                    td {
                                        @let list = stuck.get(state).cloned().unwrap_or_default();
                                        @if list.is_empty() { "-" }
                                        @for s in &list {
                                            a href={"/orders/" (s.order_id)} { (s.order_id) } " " span.age { (duration(s.seconds)) } br;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Err(error) => (error_box(error)),
        }
        h2 { "Per minute (UTC)" }
        @match &flow {
            Ok(minutes) => {
                @let total = |f: fn(&crate::board::FlowMinute) -> u64| minutes.iter().map(|(_, c)| f(c)).sum::<u64>();
                details.minutes data-key="flow-minutes" {
                    summary {
                        "last " (minutes.len()) " minutes: "
                        strong data-total-placed { (total(|c| c.placed)) } " placed, "
                        strong data-total-completed { (total(|c| c.completed)) } " completed, "
                        strong data-total-cancelled { (total(|c| c.cancelled)) } " cancelled (the chart below; the table here)"
                    }
                div.scroll {
                    table.flow {
                        thead { tr { th { "minute" } th { "placed" } th { "completed" } th { "cancelled" } } }
                        tbody {
                            @for (minute, counts) in minutes.iter().rev() {
                                tr data-minute=(minute) {
                                    td { (unix_time(*minute as f64 * 60.0).get(11..16).unwrap_or("")) }
                                    td.num data-placed { (counts.placed) }
                                    td.num data-completed { (counts.completed) }
                                    td.num data-cancelled { (counts.cancelled) }
                                }
                            }
                        }
                    }
                }
                }
            }
            Err(error) => (error_box(error)),
        }
    }
}

async fn flow_charts(board: &Board) -> Value {
    let Ok(minutes) = board.flow().await else {
        return json!([]);
    };
    let xs: Vec<i64> = minutes.iter().map(|(m, _)| m * 60).collect();
    json!([{
        "id": "flow",
        "title": "orders per minute",
        "unit": "",
        "labels": ["placed", "completed", "cancelled"],
        "data": [
            xs,
            minutes.iter().map(|(_, c)| c.placed).collect::<Vec<_>>(),
            minutes.iter().map(|(_, c)| c.completed).collect::<Vec<_>>(),
            minutes.iter().map(|(_, c)| c.cancelled).collect::<Vec<_>>(),
        ],
    }])
}

// ------------------------------------------------------------------------------ subscriptions

async fn subscriptions_fragment(board: &Board) -> Markup {
    let view = board.subscriptions().await;
    let instances = board.instances();
    html! {
        (summary(board))
        @match &view {
            Err(error) => (error_box(error)),
            Ok(view) => {
                p { "Head of the log: " strong data-head { (view.head) } }
                @if view.rebuilds().next().is_some() {
                    div.note data-replay="running" {
                        p { "A rebuild is running: it folds the log into shadow tables; when it has caught up it takes the projection's lease and swaps the tables in. Its progress is on the projection's row." }
                    }
                } @else {
                    p.muted data-replay="none" { "No rebuild is running." }
                }
                @for (projection, rebuild) in &view.rebuilds_of_new_projections {
                    p data-rebuild-of=(projection) {
                        strong { (projection) } " (no checkpoint of its own yet): "
                        (rebuild_line(rebuild))
                    }
                }
                @if view.subscriptions.is_empty() {
                    p.note { "No subscription has run yet." }
                }
                div.scroll {
                    table.subscriptions {
                        thead { tr {
                            th { "subscription" } th { "health" } th { "checkpoint" } th title="log positions to the head, and at least 1 while an event after the checkpoint waits (as order-projector status counts it): an estimate of the events behind, not exact either way (a rolled-back append leaves its position unused; a later-committed transaction may hold lower positions)" { "lag (positions)" } th { "lag" }
                            th { "owner" } th { "lease" } th { "projected" } th { "last error" }
                        } }
                        tbody {
                            @for s in &view.subscriptions {
                                @let (health, why) = subscriptions::health(s, &instances);
                                @let health = match health {
                                    subscriptions::Health::Ok => Health::Ok,
                                    subscriptions::Health::Warn => Health::Warn,
                                    subscriptions::Health::Bad => Health::Bad,
                                };
                                tr data-subscription=(s.name) data-health=(health.as_str()) {
                                    td {
                                        strong { (s.name) }
                                        @if let Some(rebuild) = &s.rebuild {
                                            br;
                                            (rebuild_line(rebuild))
                                        }
                                    }
                                    td { (badge(health, &why)) }
                                    td { code { (s.checkpoint) } }
                                    td.num data-lag-events { (s.lag_events) }
                                    td.num data-lag-seconds=(format!("{:.1}", s.lag_seconds)) { (duration(s.lag_seconds)) }
                                    td { (s.owner.as_deref().unwrap_or("-")) }
                                    td {
                                        @match s.lease_expires_in {
                                            Some(left) if left > 0.0 => { "ends in " (duration(left)) }
                                            Some(left) => { "ended " (duration(-left)) " ago" }
                                            None => "-",
                                        }
                                    }
                                    td.num { (s.events_processed) }
                                    td {
                                        @if let Some(error) = &s.last_error {
                                            span.error-text { (error) }
                                            @if let Some(at) = s.last_error_at { br; span.muted { (time(at)) } }
                                        } @else { "-" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A rebuild on its projection's row: in progress or stopped, its progress, and how it looks
/// (`data-rebuild-health`, with a note when it is not green: [`subscriptions::Rebuild::health`]).
fn rebuild_line(rebuild: &subscriptions::Rebuild) -> Markup {
    let (health, why) = rebuild.health();
    let health = match health {
        subscriptions::Health::Ok => Health::Ok,
        subscriptions::Health::Warn => Health::Warn,
        subscriptions::Health::Bad => Health::Bad,
    };
    html! {
        span.muted data-rebuild-owner=(rebuild.owner) data-rebuild-position=(rebuild.checkpoint_position) data-rebuild-lag-events=(rebuild.lag_events) data-rebuild-events-read=(rebuild.events_read) data-rebuild-health=(health.as_str()) data-rebuild-lease-expires-in=(format!("{:.0}", rebuild.lease_expires_in)) data-rebuild-updated-ago=(format!("{:.0}", rebuild.updated_ago)) {
            @if rebuild.lease_live() { "rebuild in progress: " } @else { "rebuild stopped: " }
            (rebuild_text(rebuild))
            @if health == Health::Ok { "; " (why) }
        }
        @if health != Health::Ok {
            " " span class={"badge " (health.as_str())} { (why) }
        }
    }
}

/// `read 120000 events (the newest recorded 2026-05-04T13:20:00Z); committed at 3812265/1,
/// 4 positions (2 s) behind, by replay-host-7`.
fn rebuild_text(rebuild: &subscriptions::Rebuild) -> String {
    let newest = rebuild
        .newest_read_at
        .map(|at| format!(" (the newest recorded {})", time(at)))
        .unwrap_or_default();
    format!(
        "read {} events{newest}; committed at {}, {} positions ({}) behind, by {}",
        rebuild.events_read,
        rebuild.checkpoint,
        rebuild.lag_events,
        duration(rebuild.lag_seconds),
        rebuild.owner
    )
}

// ------------------------------------------------------------------------------ queues

async fn queues_fragment(board: &Board) -> Markup {
    let latest = board.queue_points().back().cloned();
    let letters = board.dead_letters().await;
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), number);
    html! {
        (summary(board))
        @if !board.has_queues() {
            p.note { "No queue is configured: start the console with ORDERS_QUEUE_URL and ORDERS_DLQ_URL." }
        } @else if !board.has_orders_queue() {
            p.note { "The orders queue is not configured (ORDERS_QUEUE_URL): its alarms are INSUFFICIENT_DATA." }
        } @else if !board.has_dlq() {
            p.note { "The dead-letter queue is not configured (ORDERS_DLQ_URL): dlq-nonempty is INSUFFICIENT_DATA." }
        }
        @if let Some(error) = board.queue_error() { (error_box(&error)) }
        div.scroll {
            table.queues {
                thead { tr { th { "queue" } th { "visible" } th { "in flight" } th { "oldest message" } } }
                tbody {
                    @let point = latest.clone().unwrap_or_default();
                    tr data-queue="orders" {
                        td { code { (board.settings.queue_url.as_deref().unwrap_or("-")) } }
                        td.num data-visible { (fmt(point.visible)) }
                        td.num { (fmt(point.in_flight)) }
                        @let waiting = point.visible.zip(point.in_flight).is_some_and(|(v, f)| v + f > 0.0);
                        @match point.oldest_age {
                            Some((age, lower_bound)) => td {
                                @if lower_bound { "at least " }
                                (duration(age)) " (estimate)"
                            },
                            // Messages waiting, and no projector's sent count to date them.
                            None if waiting => td data-oldest="unknown" title="no projector scraped: no sent count to date the messages" { "unknown" },
                            None => td { "-" },
                        }
                    }
                    @let dlq_health = match point.dlq_messages() { Some(v) if v > 0.0 => Health::Bad, Some(_) => Health::Ok, None => Health::Off };
                    tr data-queue="dlq" data-health=(dlq_health.as_str()) {
                        td { code { (board.settings.dlq_url.as_deref().unwrap_or("-")) } }
                        td.num data-visible { (badge(dlq_health, &fmt(point.dlq_visible))) }
                        td.num { (fmt(point.dlq_in_flight)) }
                        td { "-" }
                    }
                }
            }
        }
        h2 { "Dead letters" }
        p.muted { "Read without removing them (received with a visibility timeout of 0); the first ten." }
        @match &letters {
            None => p.muted { "No dead-letter queue configured." },
            Some(Err(error)) => (error_box(error)),
            Some(Ok(list)) if list.is_empty() => p data-dead-letters="0" { "The dead-letter queue is empty." },
            Some(Ok(list)) => {
                div.scroll {
                    table.dead-letters data-dead-letters=(list.len()) {
                        thead { tr { th { "sent" } th { "kind" } th { "reason" } th { "order" } th { "event" } th { "receives" } th { "body" } } }
                        tbody {
                            @for letter in list {
                                tr data-message=(letter.message_id) {
                                    td { (letter.sent_at.map_or("-".to_owned(), unix_time)) }
                                    td { (letter.kind.as_deref().unwrap_or("moved by SQS after maxReceiveCount")) }
                                    td { (letter.reason.as_deref().unwrap_or("-")) }
                                    td {
                                        @match letter.order.as_deref().and_then(|o| Uuid::parse_str(o).ok()) {
                                            Some(id) => a href={"/orders/" (id)} { (id) },
                                            None => (letter.order.as_deref().unwrap_or("-")),
                                        }
                                    }
                                    td { (letter.event_type.as_deref().unwrap_or("-")) }
                                    td.num { (letter.receive_count.map_or("-".to_owned(), |n| n.to_string())) }
                                    td { details { summary { "body" } pre.payload { (crate::text::escape_bidi(&letter.body)) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn queues_charts(board: &Board) -> Value {
    let points = board.queue_points();
    if points.is_empty() {
        return json!([]);
    }
    let xs: Vec<f64> = points.iter().map(|p| p.t.floor()).collect();
    let col = |f: &dyn Fn(&crate::queues::QueuePoint) -> Option<f64>| -> Vec<Value> {
        points
            .iter()
            .map(|p| f(p).map_or(Value::Null, |v| json!(v)))
            .collect()
    };
    json!([
        {
            "id": "depth",
            "title": "orders queue and DLQ: messages",
            "unit": "",
            "labels": ["visible", "in flight", "DLQ visible"],
            "data": [xs, col(&|p| p.visible), col(&|p| p.in_flight), col(&|p| p.dlq_visible)],
        },
        {
            "id": "age",
            "title": "oldest orders message (estimate)",
            "unit": "s",
            "labels": ["age"],
            "data": [xs, col(&|p| p.oldest_age.map(|(a, _)| a))],
        }
    ])
}

// ------------------------------------------------------------------------------ alarms

fn alarms_fragment(board: &Board) -> Markup {
    let evaluations = board.alarms();
    html! {
        (summary(board))
        p.muted { "The CloudWatch alarms of terraform/modules/monitoring, evaluated per minute from the services' own metrics, the queues and the database, on the last complete minutes as CloudWatch does (a one-minute alarm stays in ALARM through the minute after the one that breached); a breach already in the current, unfinished minute raises an alarm early, and never clears one. Alarms on what only AWS measures are listed, not evaluated." }
        div.scroll {
            table.alarms {
                thead { tr { th { "alarm" } th { "state" } th { "fires when" } th { "read here from" } th { "last complete minutes (oldest first)" } } }
                tbody {
                    @for e in &evaluations {
                        @let health = match e.state {
                            AlarmState::Alarm if e.alarm.scaling => Health::Warn,
                            AlarmState::Alarm => Health::Bad,
                            AlarmState::Ok => Health::Ok,
                            _ => Health::Off,
                        };
                        tr data-alarm=(e.alarm.name) data-state=(e.state.as_str()) data-health=(health.as_str()) {
                            td { code { (e.alarm.name) } }
                            td { (badge(health, e.state.as_str())) }
                            td { (e.alarm.condition) }
                            td.muted { (e.alarm.source) }
                            td {
                                @for value in &e.recent {
                                    span.point { (value.map_or("·".to_owned(), number)) } " "
                                }
                                @if let Some(setting) = e.not_configured {
                                    span.muted data-not-configured=(setting) { "not configured: " (setting) " not set" }
                                }
                                @if e.raised_early {
                                    span.muted data-raised-early { "raised by the current minute so far" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------ orders

/// The order search.
#[derive(Debug, Deserialize)]
pub struct Search {
    q: Option<String>,
    /// A customer's orders placed before this one (`<placed_at, µs since 1970>_<order id>`,
    /// the last row of the previous page).
    before: Option<String>,
}

/// Rows of one page of a customer's orders.
const CUSTOMER_PAGE: usize = 100;

/// The `before` cursor of a page that ends with `row`.
fn cursor(row: &db::Summary) -> String {
    let micros = match row.placed_at.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_micros()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_micros()).unwrap_or(i128::MAX),
    };
    format!("{micros}_{}", row.order_id)
}

/// The earliest time PostgreSQL's `timestamptz` holds (4713-11-24 BC), in microseconds since
/// 1970; its latest (294276 AD) is past every `i64` of them.
const EARLIEST_MICROS: i64 = -210_866_803_200_000_000;

/// The position a `before` cursor names; None when it is not one this page wrote (not
/// `<microseconds>_<uuid>`, or a time PostgreSQL cannot hold).
fn parse_cursor(text: &str) -> Option<(SystemTime, Uuid)> {
    let (micros, id) = text.split_once('_')?;
    let micros: i64 = micros.parse().ok()?;
    if micros < EARLIEST_MICROS {
        return None;
    }
    let id = Uuid::parse_str(id).ok()?;
    let offset = std::time::Duration::from_micros(micros.unsigned_abs());
    let at = if micros >= 0 {
        std::time::UNIX_EPOCH.checked_add(offset)?
    } else {
        std::time::UNIX_EPOCH.checked_sub(offset)?
    };
    Some((at, id))
}

fn search_form(value: &str) -> Markup {
    html! {
        form.search method="get" action="/orders" role="search" {
            label for="q" { "order id or customer id" }
            input #q type="search" name="q" value=(value) placeholder="e.g. 0196a3c4-7f5e-7c1a-9c2b-2f0d4f1e8a10" maxlength="200" required;
            button type="submit" { "find" }
        }
    }
}

fn summary_table(rows: &[db::Summary]) -> Markup {
    html! {
        div.scroll {
            table.orders {
                thead { tr { th { "order" } th { "customer" } th { "state" } th { "total" } th { "captured" } th { "refunded" } th { "lines" } th { "version" } th { "placed" } th { "updated" } } }
                tbody {
                    @for s in rows {
                        tr data-order=(s.order_id) {
                            td { a href={"/orders/" (s.order_id)} { (s.order_id) } }
                            td { a href={"/orders?q=" (s.customer_id)} { (s.customer_id) } }
                            td data-status { (s.status) }
                            td.num { (money(s.total_minor, &s.currency)) }
                            td.num { (money(s.captured_minor, &s.currency)) }
                            td.num { (money(s.refunded_minor, &s.currency)) }
                            td.num { (s.line_count) }
                            td.num { (s.stream_version) }
                            td { (time(s.placed_at)) }
                            td { (time(s.updated_at)) }
                        }
                    }
                }
            }
        }
    }
}

/// The subscription that writes `order_summaries` (order-projector's read model).
const READ_MODEL: &str = "read_model";

/// How many events of the log the read model has not projected yet (`None`: it cannot be
/// told; a read model that never ran is behind by the whole log).
async fn read_model_behind(board: &Board) -> Option<i64> {
    let view = board.subscriptions().await.ok()?;
    Some(
        view.subscriptions
            .iter()
            .find(|s| s.name == READ_MODEL)
            .map_or(view.head, |s| s.lag_events)
            .max(0),
    )
}

/// What a customer's list (read from the read model) may be missing: nothing said when the
/// read model has every event.
fn read_model_note(behind: Option<i64>) -> Markup {
    match behind {
        Some(0) => html! {},
        Some(n) => html! {
            p.note role="status" data-read-model-behind=(n) {
                "Not everything is here yet: the read model is " (n) " event" @if n != 1 { "s" }
                " behind the log, so recent orders may be missing (an order's own page shows it from the log)."
            }
        },
        None => html! {
            p.note role="status" data-read-model-behind="unknown" {
                "The read model's progress could not be read: recent orders may be missing (an order's own page shows it from the log)."
            }
        },
    }
}

/// `GET /orders?q=`: an order id goes to its page; a customer id lists that customer's orders
/// (from the read model: the page says when the read model is behind the log).
pub async fn orders_page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    search: Result<Query<Search>, QueryRejection>,
) -> Response {
    let Ok(Query(search)) = search else {
        return (
            StatusCode::BAD_REQUEST,
            layout(
                &state,
                &viewer,
                "Orders",
                "/orders",
                &html! {
                    h1 { "Orders" } (search_form(""))
                    (error_box("one search at a time: give `q` once (and `before` at most once), as this form does"))
                },
            ),
        )
            .into_response();
    };
    let raw = search.q.unwrap_or_default();
    let query = raw.trim();
    let page = |status: StatusCode, body: Markup| {
        (
            status,
            layout(
                &state,
                &viewer,
                "Orders",
                "/orders",
                &html! { h1 { "Orders" } (search_form(&query.chars().take(200).collect::<String>())) (body) },
            ),
        )
            .into_response()
    };
    if query.is_empty() {
        return page(
            StatusCode::OK,
            html! { p.muted { "Find an order by its id, or every order of a customer by the customer's id." } },
        );
    }
    if query.chars().count() > 200 {
        return page(
            StatusCode::BAD_REQUEST,
            error_box(
                "that is too long for an id: an order id or customer id is a UUID (36 characters)",
            ),
        );
    }
    let Ok(id) = Uuid::parse_str(query) else {
        return page(
            StatusCode::BAD_REQUEST,
            html! { p.error role="alert" data-error="invalid-id" { "not an order id or customer id: " code { (query) } " is not a UUID (e.g. 0196a3c4-7f5e-7c1a-9c2b-2f0d4f1e8a10)" } },
        );
    };
    match state.board.db.order(id).await {
        Ok(Some(_)) => return Redirect::to(&format!("/orders/{id}")).into_response(),
        Ok(None) => {}
        Err(error) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                error_box(&error.to_string()),
            );
        }
    }
    let before = match search.before.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match parse_cursor(text) {
            Some(position) => Some(position),
            None => {
                return page(
                    StatusCode::BAD_REQUEST,
                    error_box(
                        "not a page of this list: `before` is `<microseconds>_<order id>`, as the \
                         list's own \"older orders\" link writes it",
                    ),
                );
            }
        },
    };
    // One row more than a page: whether there is a next page, without counting them all.
    let limit = i64::try_from(CUSTOMER_PAGE + 1).unwrap_or(i64::MAX);
    let (orders, behind) = tokio::join!(
        state.board.db.customer_orders(id, before, limit),
        read_model_behind(&state.board)
    );
    match orders {
        Ok(rows) if rows.is_empty() && before.is_none() => page(
            StatusCode::NOT_FOUND,
            html! {
                @if behind == Some(0) {
                    p data-error="not-found" { "No order and no customer has the id " code { (id) } "." }
                } @else {
                    p data-error="not-found" { "No order has the id " code { (id) } ", and no customer has it in the read model so far." }
                }
                (read_model_note(behind))
            },
        ),
        Ok(mut rows) => {
            let more = rows.len() > CUSTOMER_PAGE;
            rows.truncate(CUSTOMER_PAGE);
            let next = rows
                .last()
                .filter(|_| more)
                .map(|last| format!("/orders?q={id}&before={}", cursor(last)));
            page(
                StatusCode::OK,
                html! {
                    h2 { "Orders of customer " code { (id) } }
                    (read_model_note(behind))
                    p.muted data-page-orders=(rows.len()) {
                        (rows.len()) " orders, newest first"
                        @if before.is_some() { ", placed before the previous page's last" }
                        @if more { "; there are older ones" }
                        "."
                    }
                    (summary_table(&rows))
                    nav.pages {
                        @if before.is_some() { a href={"/orders?q=" (id)} data-first { "newest orders" } " " }
                        @if let Some(next) = &next { a href=(next) rel="next" data-next { "older orders" } }
                    }
                },
            )
        }
        Err(error) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            error_box(&error.to_string()),
        ),
    }
}

/// `GET /orders/{id}`: the read-model row and the timeline of events.
pub async fn order_page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(raw): Path<String>,
) -> Response {
    let page = |status: StatusCode, title: &str, body: Markup| {
        (
            status,
            layout(
                &state,
                &viewer,
                title,
                "/orders",
                &html! { (search_form("")) (body) },
            ),
        )
            .into_response()
    };
    let Ok(id) = Uuid::parse_str(&raw) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Orders",
            html! { p.error role="alert" data-error="invalid-id" { "not an order id: " code { (raw.chars().take(200).collect::<String>()) } " is not a UUID" } },
        );
    };
    let view = match state.board.db.order(id).await {
        Ok(Some(view)) => view,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "Orders",
                html! { p data-error="not-found" { "No order has the id " code { (id) } "." } },
            );
        }
        Err(error) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Orders",
                error_box(&error.to_string()),
            );
        }
    };
    let trace_url = state.board.settings.trace_url.clone();
    page(
        StatusCode::OK,
        &format!("Order {id}"),
        html! {
            h1 { "Order " code data-order-id { (id) } }
            h2 { "Read model" }
            @match &view.summary {
                Some(summary) => (summary_table(std::slice::from_ref(summary))),
                None => p.note { "Not in the read model yet (the projector has not reached it)." },
            }
            h2 { "Timeline" }
            @match (view.events.first(), view.events.last()) {
                (Some(first), Some(last)) if (view.events.len() as i64) < view.total => {
                    p.note {
                        (view.total) " events; the latest " (view.events.len())
                        " are shown (v" (first.version) " to v" (last.version) ")"
                    }
                }
                _ => p.muted { (view.events.len()) " events" },
            }
            ol.timeline data-events=(view.events.len()) {
                @for (index, event) in view.events.iter().enumerate() {
                    @let after = index
                        .checked_sub(1)
                        .and_then(|i| view.events.get(i))
                        .and_then(|previous| event.recorded_at.duration_since(previous.recorded_at).ok());
                    li.event data-version=(event.version) data-type=(event.event_type) {
                        div.event-head {
                            span.version { "v" (event.version) }
                            strong.type { (event.event_type) }
                            span.muted { "schema " (event.schema_version) " · position " (event.position) }
                            time {
                                (time(event.recorded_at))
                                @if let Some(after) = after { span.after { " +" (duration(after.as_secs_f64())) } }
                            }
                        }
                        dl.meta {
                            dt { "correlation" } dd { code { (event.correlation_id.as_deref().unwrap_or("-")) } }
                            dt { "actor" } dd { (event.actor.as_deref().unwrap_or("-")) }
                            dt { "command" } dd { code { (event.command_id.map_or("-".to_owned(), |c| c.to_string())) } }
                            dt { "causation" } dd { code { (event.causation_id.map_or("-".to_owned(), |c| c.to_string())) } }
                            dt { "trace" } dd {
                                @match (event.trace_id(), &trace_url) {
                                    (Some(trace), Some(template)) => a href=(template.replace("{trace_id}", trace)) rel="noreferrer" { code { (trace) } },
                                    (Some(trace), None) => code { (trace) },
                                    (None, _) => "-",
                                }
                            }
                        }
                        details open[event.version <= 3] {
                            summary { "payload" }
                            pre.payload data-payload { (event.payload) }
                        }
                    }
                }
            }
        },
    )
}

// ------------------------------------------------------------------------------ handlers

/// `GET /services`.
pub async fn services_page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Markup {
    live_page(
        &state,
        &viewer,
        "services",
        "Services",
        &services_fragment(&state.board),
        true,
    )
}

/// `GET /flow`.
pub async fn flow_page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Markup {
    let fragment = flow_fragment(&state.board).await;
    live_page(&state, &viewer, "flow", "Flow", &fragment, true)
}

/// `GET /subscriptions`.
pub async fn subscriptions_page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Markup {
    let fragment = subscriptions_fragment(&state.board).await;
    live_page(
        &state,
        &viewer,
        "subscriptions",
        "Subscriptions",
        &fragment,
        false,
    )
}

/// `GET /queues`.
pub async fn queues_page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Markup {
    let fragment = queues_fragment(&state.board).await;
    live_page(&state, &viewer, "queues", "Queues", &fragment, true)
}

/// `GET /alarms`.
pub async fn alarms_page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Markup {
    live_page(
        &state,
        &viewer,
        "alarms",
        "Alarms",
        &alarms_fragment(&state.board),
        false,
    )
}

/// `GET /fragments/{page}`: the live part of a page.
pub async fn fragment(State(state): State<AppState>, Path(page): Path<String>) -> Response {
    let board = &state.board;
    let markup = match page.as_str() {
        "services" => services_fragment(board),
        "flow" => flow_fragment(board).await,
        "subscriptions" => subscriptions_fragment(board).await,
        "queues" => queues_fragment(board).await,
        "alarms" => alarms_fragment(board),
        _ => return (StatusCode::NOT_FOUND, "no such fragment\n").into_response(),
    };
    markup.into_response()
}

/// `GET /api/charts/{page}`: the charts' data as JSON.
pub async fn charts(State(state): State<AppState>, Path(page): Path<String>) -> Response {
    let board = &state.board;
    let value = match page.as_str() {
        "services" => services_charts(board),
        "flow" => flow_charts(board).await,
        "queues" => queues_charts(board),
        _ => return (StatusCode::NOT_FOUND, "no such chart\n").into_response(),
    };
    axum::Json(value).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cursor names a time PostgreSQL can hold (4713 BC to 294276 AD: imported orders may
    /// be placed before 1970 or after 9999, and their cursors work); any other is refused, not
    /// read as some other time.
    #[test]
    fn a_cursor_outside_the_times_postgresql_holds_is_refused() {
        let id = Uuid::nil();
        for micros in [
            i64::MIN,
            -210_866_803_200_000_001,
            -9_000_000_000_000_000_000_i64,
        ] {
            assert_eq!(parse_cursor(&format!("{micros}_{id}")), None, "{micros}");
        }
        for micros in [
            -210_866_803_200_000_000_i64,
            -86_400_000_000,
            0,
            1_700_000_000_000_000,
            253_402_300_800_000_000,
        ] {
            let (at, parsed) =
                parse_cursor(&format!("{micros}_{id}")).unwrap_or_else(|| panic!("{micros}"));
            assert_eq!(parsed, id);
            let row = db::Summary {
                order_id: id,
                customer_id: id,
                status: "Placed".into(),
                currency: "EUR".into(),
                total_minor: 0,
                captured_minor: 0,
                refunded_minor: 0,
                line_count: 1,
                stream_version: 1,
                last_position: 1,
                placed_at: at,
                updated_at: at,
            };
            assert_eq!(cursor(&row), format!("{micros}_{id}"), "round trip");
        }
    }

    #[test]
    fn values_are_escaped_and_durations_read_well() {
        let hostile = "<script>alert(1)</script> \" ' &amp;";
        let markup = html! { p { (hostile) } span title=(hostile) {} }.into_string();
        assert!(!markup.contains("<script>"));
        assert!(markup.contains("&lt;script&gt;"));
        assert!(markup.contains("&amp;amp;"));
        assert_eq!(duration(5.0), "5 s");
        assert_eq!(duration(125.0), "2 min 05 s");
        assert_eq!(duration(7260.0), "2 h 01 min");
        assert_eq!(money(-1234, "EUR"), "-12.34 EUR");
        assert_eq!(grouped(10_000), "10,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(999), "999");
        assert_eq!(state_count("Placed", 10_001), "10,000+");
        assert_eq!(state_count("Placed", 10_000), "10,000");
        // Completed and Cancelled are counted in full, never capped.
        assert_eq!(state_count("Completed", 250_000), "250,000");
        assert_eq!(state_count("Cancelled", 10_001), "10,001");
    }

    #[test]
    fn any_time_is_shown_and_none_panics() {
        let epoch = std::time::UNIX_EPOCH;
        let second = std::time::Duration::from_secs(1);
        assert_eq!(time(epoch), "1970-01-01T00:00:00Z");
        assert_eq!(time(epoch - second), "1969-12-31T23:59:59Z");
        assert_eq!(
            time(epoch - std::time::Duration::from_millis(500)),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(unix_time(-62_135_596_800.0), "0001-01-01T00:00:00Z");
        assert_eq!(unix_time(-62_135_596_801.0), "0000-12-31T23:59:59Z");
        assert_eq!(unix_time(-62_167_219_201.0), "-0001-12-31T23:59:59Z");
        assert_eq!(unix_time(253_402_300_800.0), "+10000-01-01T00:00:00Z");
        assert_eq!(unix_time(951_782_400.0), "2000-02-29T00:00:00Z");
        for nothing in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e300, -1e300] {
            assert_eq!(unix_time(nothing), "-");
        }
        // Far out either way: a date, never a panic.
        let _ = rfc3339_seconds(i64::MAX);
        let _ = rfc3339_seconds(i64::MIN);
        let _ = unix_time(9e15);
        let _ = unix_time(-9e15);
    }

    proptest::proptest! {
        /// Where humantime formats (1970 to 9999), the same text.
        #[test]
        fn times_read_as_rfc3339_does(seconds in 0u64..253_402_300_800) {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
            proptest::prop_assert_eq!(time(at), humantime::format_rfc3339_seconds(at).to_string());
        }
    }

    /// Every command in every reachable state of a 30.00 EUR order, from the domain's own
    /// `decide`: the changes of state it makes are exactly the arrows drawn.
    #[test]
    fn the_drawing_has_exactly_the_transitions_of_the_domain()
    -> Result<(), Box<dyn std::error::Error>> {
        use order_domain::order::{CommandKind, OrderLine, PlaceOrder};
        use order_domain::values::{
            Address, AddressInput, CustomerId, Quantity, ShippingMethod, Sku,
        };
        use order_domain::{Aggregate, Money, Order, OrderCommand};

        let total = 3000;
        let place = PlaceOrder::new(
            CustomerId::parse("0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001")?,
            vec![OrderLine::new(
                Sku::parse("SKU-1")?,
                Quantity::new(2)?,
                Money::parse_positive("EUR", total / 2)?,
            )?],
            Address::parse(&AddressInput {
                recipient: "Ada",
                line1: "1 Main St",
                city: "Berlin",
                postal_code: "10115",
                country: "DE",
                ..AddressInput::default()
            })?,
            ShippingMethod::Standard,
        )?;
        let command = |kind: CommandKind| -> Result<OrderCommand, order_domain::ValidationError> {
            Ok(match kind {
                CommandKind::PlaceOrder => OrderCommand::PlaceOrder(place.clone()),
                CommandKind::ReserveInventory => OrderCommand::reserve_inventory("res-1")?,
                CommandKind::RejectInventory => OrderCommand::reject_inventory("out of stock")?,
                CommandKind::AuthorizePayment => {
                    OrderCommand::authorize_payment("pay-1", "EUR", total)?
                }
                CommandKind::FailPayment => OrderCommand::fail_payment("declined")?,
                CommandKind::ConfirmOrder => OrderCommand::ConfirmOrder,
                CommandKind::StartFulfillment => OrderCommand::StartFulfillment,
                CommandKind::ShipOrder => OrderCommand::ship_order("DHL", "JD0001")?,
                CommandKind::DeliverOrder => OrderCommand::DeliverOrder,
                CommandKind::CompleteOrder => OrderCommand::CompleteOrder,
                CommandKind::CancelOrder => OrderCommand::cancel_order("asked")?,
                CommandKind::ReleaseInventory => OrderCommand::ReleaseInventory,
                CommandKind::RefundPayment => OrderCommand::refund_payment("EUR", total)?,
            })
        };
        // Breadth first over histories; a state is explored once per (status, what it owes).
        let mut seen = std::collections::BTreeSet::new();
        let mut edges = std::collections::BTreeSet::new();
        let mut queue = std::collections::VecDeque::from([Order::default()]);
        while let Some(order) = queue.pop_front() {
            for kind in CommandKind::ALL {
                let Ok(events) = order.decide(&command(kind)?) else {
                    continue;
                };
                let mut next = order.clone();
                for event in &events {
                    next.evolve(event);
                }
                let (Some(before), Some(after)) = (
                    order.details().map(|d| d.status()),
                    next.details().map(|d| d.status()),
                ) else {
                    queue.push_back(next);
                    continue;
                };
                if before != after {
                    edges.insert((before.as_str(), after.as_str()));
                }
                let key = format!(
                    "{after:?} {:?}",
                    next.details().map(|d| d.pending_compensations())
                );
                if seen.insert(key) {
                    queue.push_back(next);
                }
            }
        }
        let drawn: std::collections::BTreeSet<(&str, &str)> = EDGES.into_iter().collect();
        assert_eq!(drawn, edges);
        let placed: std::collections::BTreeSet<&str> = LAYOUT.iter().map(|(s, _, _)| *s).collect();
        let states: std::collections::BTreeSet<&str> = STATES.iter().map(|s| s.as_str()).collect();
        assert_eq!(placed, states, "every state is drawn once");
        Ok(())
    }
}

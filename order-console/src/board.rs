//! The console's state: the scrape loop's history (services, queues, database connections),
//! the flow counters, and short caches, so that any number of open pages costs the database
//! and the services the same as one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;

use crate::alarms::{self, CIRCUIT_SIGNALS, Datapoints, Signal, key};
use crate::config::Settings;
use crate::db::{self, Db, FlowCursor};
use crate::queues::{self, DeadLetter, QueuePoint};
use crate::services::{Instance, Kind, Scraper, unix_now};
use crate::subscriptions;

/// Why each queue could not be read at the last scrape.
#[derive(Debug, Clone, Default)]
struct QueueErrors {
    /// The orders queue's.
    orders: Option<String>,
    /// The DLQ's.
    dlq: Option<String>,
}

/// Placed, completed and cancelled orders in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowMinute {
    /// `OrderPlaced` events.
    pub placed: u64,
    /// `OrderCompleted` events.
    pub completed: u64,
    /// `OrderCancelled` events.
    pub cancelled: u64,
}

/// The flow counters: per minute, from the log, read incrementally in the gap-safe order.
#[derive(Debug, Default)]
struct Flow {
    cursor: Option<FlowCursor>,
    minutes: BTreeMap<i64, FlowMinute>,
    last_read: Option<Instant>,
    /// The last read stopped at its page limit with more of the log to read: the recent
    /// minutes are not all counted yet.
    behind: bool,
}

/// A value computed on demand and kept for a short while.
#[derive(Debug)]
struct Cached<T> {
    value: Option<(Instant, T)>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self { value: None }
    }
}

impl<T: Clone> Cached<T> {
    fn fresh(&self, within: Duration) -> Option<T> {
        self.value
            .as_ref()
            .filter(|(at, _)| at.elapsed() < within)
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, value: T) {
        self.value = Some((Instant::now(), value));
    }
}

/// Everything the pages show, shared by the scrape loop and the handlers.
#[derive(Debug)]
pub struct Board {
    /// The settings.
    pub settings: Settings,
    /// The read-only database.
    pub db: Db,
    sqs: Option<aws_sdk_sqs::Client>,
    scraper: Scraper,
    started: f64,
    instances: Mutex<Vec<Instance>>,
    queue_points: Mutex<VecDeque<QueuePoint>>,
    queue_errors: Mutex<QueueErrors>,
    db_points: Mutex<VecDeque<(f64, f64, f64)>>,
    db_error: Mutex<Option<String>>,
    flow: AsyncMutex<Flow>,
    subscriptions: AsyncMutex<Cached<Result<subscriptions::SubscriptionsView, String>>>,
    leases: Mutex<subscriptions::LeaseMemory>,
    states: AsyncMutex<Cached<Result<States, String>>>,
    dead_letters: AsyncMutex<Cached<Result<Vec<DeadLetter>, String>>>,
    terminal_counts: AsyncMutex<Cached<BTreeMap<String, i64>>>,
}

/// Lock a std mutex; a poisoned one (a panicking thread) still holds consistent data here.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Orders per state, and the orders waiting longest in each state.
pub type States = (BTreeMap<String, i64>, BTreeMap<String, Vec<db::Stuck>>);

/// Cumulative histogram buckets: (upper bound, count).
type Buckets = Vec<(f64, f64)>;

/// How long on-demand database reads are reused.
const CACHE: Duration = Duration::from_millis(900);
/// How long the counts of finished (Completed, Cancelled) orders are reused.
const TERMINAL_CACHE: Duration = Duration::from_secs(60);
/// Events read per flow refresh at most (the rest follows on the next refresh).
const FLOW_PAGE: i64 = 20_000;
/// The most pages of the log one refresh of the flow reads (100,000 events: a burst that
/// large is counted at once; a log written faster than that per refresh falls behind).
const FLOW_PAGES_PER_REFRESH: usize = 5;
/// Minutes of flow shown.
pub const FLOW_MINUTES: i64 = 15;

impl Board {
    /// A board for `settings`; nothing is contacted yet.
    pub fn new(settings: Settings, db: Db, sqs: Option<aws_sdk_sqs::Client>) -> Self {
        let instances = settings
            .targets
            .iter()
            .cloned()
            .map(Instance::new)
            .collect();
        let timeout = settings
            .scrape_interval
            .min(Duration::from_millis(1500))
            .max(Duration::from_millis(200));
        Self {
            settings,
            db,
            sqs,
            scraper: Scraper::new(timeout),
            started: unix_now(),
            instances: Mutex::new(instances),
            queue_points: Mutex::new(VecDeque::new()),
            queue_errors: Mutex::new(QueueErrors::default()),
            db_points: Mutex::new(VecDeque::new()),
            db_error: Mutex::new(None),
            flow: AsyncMutex::new(Flow::default()),
            subscriptions: AsyncMutex::new(Cached::default()),
            leases: Mutex::new(subscriptions::LeaseMemory::default()),
            states: AsyncMutex::new(Cached::default()),
            dead_letters: AsyncMutex::new(Cached::default()),
            terminal_counts: AsyncMutex::new(Cached::default()),
        }
    }

    /// When the console started (Unix seconds).
    pub fn started(&self) -> f64 {
        self.started
    }

    /// A copy of every instance.
    pub fn instances(&self) -> Vec<Instance> {
        lock(&self.instances).clone()
    }

    /// A copy of the queue history.
    pub fn queue_points(&self) -> VecDeque<QueuePoint> {
        lock(&self.queue_points).clone()
    }

    /// Why the queues could not be read at the last scrape (each queue that failed, named).
    pub fn queue_error(&self) -> Option<String> {
        let errors = lock(&self.queue_errors);
        let named: Vec<String> = [("orders queue", &errors.orders), ("DLQ", &errors.dlq)]
            .into_iter()
            .filter_map(|(name, error)| error.as_ref().map(|e| format!("{name}: {e}")))
            .collect();
        (!named.is_empty()).then(|| named.join("; "))
    }

    /// Why the database could not be read at the last scrape.
    pub fn db_error(&self) -> Option<String> {
        lock(&self.db_error).clone()
    }

    /// Whether any queue is configured (and a client to read it).
    pub fn has_queues(&self) -> bool {
        self.has_orders_queue() || self.has_dlq()
    }

    /// Whether the orders queue is configured (`ORDERS_QUEUE_URL`, and a client to read it).
    pub fn has_orders_queue(&self) -> bool {
        self.sqs.is_some() && self.settings.queue_url.is_some()
    }

    /// Whether the DLQ is configured (`ORDERS_DLQ_URL`, and a client to read it).
    pub fn has_dlq(&self) -> bool {
        self.sqs.is_some() && self.settings.dlq_url.is_some()
    }

    /// Scrape every instance, the queues and the database once, each on its own (a source
    /// that stops answering holds up none of the others).
    pub async fn scrape_once(&self) {
        tokio::join!(
            self.scrape_services(),
            self.scrape_queues_now(),
            self.scrape_db()
        );
    }

    /// Every instance's readiness and metrics (each request within the scraper's time limit).
    async fn scrape_services(&self) {
        let targets: Vec<String> = lock(&self.instances)
            .iter()
            .map(|i| i.target.authority.clone())
            .collect();
        let outcomes =
            futures::future::join_all(targets.iter().map(|t| self.scraper.scrape(t))).await;
        let now = unix_now();
        let keep = self.settings.history;
        let mut instances = lock(&self.instances);
        for (instance, outcome) in instances.iter_mut().zip(outcomes) {
            instance.record(now, outcome, keep);
        }
    }

    /// Messages the projectors sent in total, as far as their last scrapes tell.
    fn sent_total(&self) -> Option<f64> {
        let instances = lock(&self.instances);
        let projectors: Vec<&Instance> = instances
            .iter()
            .filter(|i| i.kind == Kind::Projector && i.scrapes > 0)
            .collect();
        (!projectors.is_empty()).then(|| projectors.iter().map(|i| i.sent_accumulated).sum::<f64>())
    }

    async fn scrape_queues_now(&self) {
        let sent_total = self.sent_total();
        self.scrape_queues(unix_now(), sent_total).await;
    }

    /// The server's connections, and whether the console's reads work (the query `/readyz`
    /// runs: a server that answers but refuses the console's role, or has no schema, is not
    /// fine), each within the database's call time limit.
    async fn scrape_db(&self) {
        let now = unix_now();
        let keep = self.settings.history;
        let (connections, reads) = tokio::join!(self.db.connections(), self.db.ping());
        let reads = reads.err().map(|e| e.to_string());
        match connections {
            Ok((used, max)) => {
                *lock(&self.db_error) = reads;
                let mut points = lock(&self.db_points);
                points.push_back((now, used, max));
                while points
                    .front()
                    .is_some_and(|p| now - p.0 > keep.as_secs_f64())
                {
                    points.pop_front();
                }
            }
            Err(error) => *lock(&self.db_error) = Some(error.to_string()),
        }
    }

    async fn scrape_queues(&self, now: f64, sent_total: Option<f64>) {
        let Some(client) = &self.sqs else { return };
        let mut point = QueuePoint {
            t: now,
            sent_total,
            ..QueuePoint::default()
        };
        let mut errors = QueueErrors::default();
        if let Some(url) = &self.settings.queue_url {
            match within_queue_limit(queues::depth(client, url)).await {
                Ok(depth) => {
                    point.visible = Some(depth.visible);
                    point.in_flight = Some(depth.in_flight);
                }
                Err(why) => errors.orders = Some(why),
            }
        }
        if let Some(url) = &self.settings.dlq_url {
            match within_queue_limit(queues::depth(client, url)).await {
                Ok(depth) => {
                    point.dlq_visible = Some(depth.visible);
                    point.dlq_in_flight = Some(depth.in_flight);
                }
                Err(why) => errors.dlq = Some(why),
            }
        }
        let mut points = lock(&self.queue_points);
        if let (Some(visible), Some(in_flight), Some(sent)) =
            (point.visible, point.in_flight, sent_total)
        {
            points.push_back(point.clone());
            point.oldest_age = Some(queues::oldest_age(&points, now, visible + in_flight, sent));
            points.pop_back();
        }
        points.push_back(point);
        let keep = self.settings.history.as_secs_f64();
        while points.front().is_some_and(|p| now - p.t > keep) {
            points.pop_front();
        }
        *lock(&self.queue_errors) = errors;
    }

    /// Scrape forever, every `scrape_interval`: the services, the queues and the database
    /// each on their own, so that one that stops answering stops none of the others.
    pub async fn run(self: Arc<Self>) {
        let every = self.settings.scrape_interval;
        tokio::join!(
            each(every, || self.scrape_services()),
            each(every, || self.scrape_queues_now()),
            each(every, || self.scrape_db()),
        );
    }

    /// The subscriptions (cached for a moment), marked with what the console saw of their
    /// leases over its reads ([`subscriptions::LeaseMemory`]).
    pub async fn subscriptions(&self) -> Result<subscriptions::SubscriptionsView, String> {
        let mut cache = self.subscriptions.lock().await;
        if let Some(value) = cache.fresh(CACHE) {
            return value;
        }
        let mut value = self
            .db
            .timed(subscriptions::read(&self.db))
            .await
            .map_err(|e| e.to_string());
        if let Ok(view) = &mut value {
            let instances = self.instances();
            lock(&self.leases).observe(view, &instances);
        }
        cache.put(value.clone());
        value
    }

    /// Orders per state and the longest waiting (cached for a moment).
    pub async fn states(&self) -> Result<States, String> {
        let mut cache = self.states.lock().await;
        if let Some(value) = cache.fresh(CACHE) {
            return value;
        }
        let (in_flight, finished): (Vec<_>, Vec<_>) =
            db::STATES.into_iter().partition(|s| !s.is_terminal());
        // Bounded: one more than the cap tells that there are more.
        let in_flight_counts = self
            .db
            .state_counts(&in_flight, Some(db::IN_FLIGHT_COUNT_CAP + 1));
        // Finished orders only grow: counted once a minute (the whole index otherwise).
        let finished_counts = async {
            let mut terminal = self.terminal_counts.lock().await;
            if let Some(counts) = terminal.fresh(TERMINAL_CACHE) {
                return Ok(counts);
            }
            match self.db.state_counts(&finished, None).await {
                Ok(fresh) => {
                    terminal.put(fresh.clone());
                    Ok(fresh)
                }
                // The last counts known (finished orders only grow), asked again a minute
                // later: a count that failed (too slow, say) is not asked again at every
                // refresh.
                Err(error) => match terminal.value.as_ref().map(|(_, v)| v.clone()) {
                    Some(known) => {
                        tracing::warn!(%error, "counting finished orders failed; showing the last counts");
                        terminal.put(known.clone());
                        Ok(known)
                    }
                    None => Err(error),
                },
            }
        };
        let stuck = self.db.stuck(3);
        // Side by side, each on its own connection within its own time limit: the state
        // counts take one read's time, not three.
        let value = tokio::try_join!(in_flight_counts, finished_counts, stuck)
            .map(|(mut counts, finished_counts, stuck)| {
                counts.extend(finished_counts);
                (counts, stuck)
            })
            .map_err(|e| e.to_string());
        cache.put(value.clone());
        value
    }

    /// The DLQ's first messages, read without removing them (cached for a few seconds).
    pub async fn dead_letters(&self) -> Option<Result<Vec<DeadLetter>, String>> {
        let client = self.sqs.as_ref()?;
        let url = self.settings.dlq_url.as_ref()?;
        let mut cache = self.dead_letters.lock().await;
        if let Some(value) = cache.fresh(Duration::from_secs(4)) {
            return Some(value);
        }
        let value = within_queue_limit(queues::peek(client, url)).await;
        cache.put(value.clone());
        Some(value)
    }

    /// Placed, completed and cancelled per minute for the last [`FLOW_MINUTES`] minutes
    /// (oldest first, the current minute last), read on from where the last call stopped.
    /// Answered within [`Settings::answer_limit`] of the call, the wait for another call's
    /// read included: the log's pages beyond the first are read while one more fits in it
    /// (the rest at the next refresh), so a page waiting that long is not given up.
    pub async fn flow(&self) -> Result<Vec<(i64, FlowMinute)>, String> {
        let limit = self.settings.answer_limit();
        let deadline = Instant::now() + limit;
        tokio::time::timeout_at(deadline.into(), self.flow_until(deadline))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the database did not answer within {} s",
                    limit.as_secs_f64()
                ))
            })
    }

    async fn flow_until(&self, deadline: Instant) -> Result<Vec<(i64, FlowMinute)>, String> {
        let mut flow = self.flow.lock().await;
        let now_minute = (unix_now() / 60.0).floor() as i64;
        let first_minute = now_minute - FLOW_MINUTES + 1;
        let stale = flow
            .last_read
            .is_none_or(|at| at.elapsed() > Duration::from_secs(FLOW_MINUTES as u64 * 60));
        if stale {
            flow.minutes.clear();
            flow.cursor = None;
        }
        if flow.last_read.is_none_or(|at| at.elapsed() >= CACHE) || flow.cursor.is_none() {
            if flow.cursor.is_none() {
                let since = (unix_now() - first_minute as f64 * 60.0).max(0.0);
                flow.cursor = Some(
                    self.db
                        .cursor_since(since)
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            // Pages until caught up (a burst is counted whole at once), at most
            // FLOW_PAGES_PER_REFRESH of them: the rest at the next refresh.
            flow.behind = false;
            let read_limit = self.settings.store.call_timeout();
            for page in 0..FLOW_PAGES_PER_REFRESH {
                let Some(cursor) = flow.cursor.clone() else {
                    break;
                };
                // Another page only while it fits in the time left (it is behind until read).
                if page > 0 && Instant::now() + read_limit > deadline {
                    flow.behind = true;
                    break;
                }
                let (events, next) = self
                    .db
                    .events_after(&cursor, FLOW_PAGE)
                    .await
                    .map_err(|e| e.to_string())?;
                let full = events.len() as i64 >= FLOW_PAGE;
                for (event_type, at) in events {
                    let minute = (at / 60.0).floor() as i64;
                    let entry = flow.minutes.entry(minute).or_default();
                    match event_type.as_str() {
                        "OrderPlaced" => entry.placed += 1,
                        "OrderCompleted" => entry.completed += 1,
                        "OrderCancelled" => entry.cancelled += 1,
                        _ => {}
                    }
                }
                flow.cursor = Some(next);
                flow.behind = full;
                if !full {
                    break;
                }
            }
            flow.last_read = Some(Instant::now());
            flow.minutes.retain(|m, _| *m >= first_minute);
        }
        Ok((first_minute..=now_minute)
            .map(|m| (m, flow.minutes.get(&m).copied().unwrap_or_default()))
            .collect())
    }

    /// Whether the flow's last read left part of the log unread (a burst larger than one
    /// refresh reads, or a start far back: after a long import the window's start is found
    /// only approximately, never later than it): the recent minutes are not all counted yet.
    pub async fn flow_catching_up(&self) -> bool {
        self.flow.lock().await.behind
    }

    /// The per-minute datapoints of every alarm signal.
    pub fn datapoints(&self) -> Datapoints {
        let now = unix_now();
        let mut out = Datapoints {
            first_minute: minute_of(self.started),
            current_minute: minute_of(now),
            values: BTreeMap::new(),
            unread: Default::default(),
            at_least: Default::default(),
            not_configured: Default::default(),
        };
        let mut put = |signal: Signal, minute: i64, value: f64, sum: bool| {
            let entry = out.values.entry((key(signal), minute)).or_insert(if sum {
                0.0
            } else {
                f64::NEG_INFINITY
            });
            *entry = if sum {
                *entry + value
            } else {
                entry.max(value)
            };
        };
        let instances = self.instances();
        for instance in &instances {
            for point in &instance.points {
                let minute = minute_of(point.t);
                match instance.kind {
                    Kind::Grpc => {
                        if let Some(errors) = point.get("errors") {
                            put(Signal::ApiErrors, minute, errors, true);
                        }
                    }
                    Kind::Worker => {
                        if let Some(failed) = point.get("failed") {
                            put(Signal::WorkerFailed, minute, failed, true);
                        }
                        for (provider, signal) in CIRCUIT_SIGNALS {
                            if let Some(opened) = point.get(&format!("opened:{provider}")) {
                                put(signal, minute, opened, true);
                            }
                        }
                    }
                    Kind::Projector => {
                        let lag = point
                            .values
                            .iter()
                            .filter(|(k, _)| k.starts_with("lag_s:"))
                            .map(|(_, v)| *v)
                            .fold(None, |acc: Option<f64>, v| {
                                Some(acc.map_or(v, |a| a.max(v)))
                            });
                        if let Some(lag) = lag {
                            put(Signal::ProjectorLag, minute, lag, false);
                        }
                    }
                    Kind::Unknown => {}
                }
            }
        }
        for (minute, p95) in latency_p95(&instances) {
            put(Signal::LatencyP95, minute, p95, false);
        }
        for point in self.queue_points() {
            let minute = minute_of(point.t);
            if let Some(visible) = point.visible {
                put(Signal::Backlog, minute, visible, false);
            }
            if let Some(messages) = point.dlq_messages() {
                put(Signal::DlqVisible, minute, messages, false);
            }
            if let Some((age, lower_bound)) = point.oldest_age {
                put(Signal::OldestMessageAge, minute, age, false);
                if lower_bound {
                    out.at_least.insert((key(Signal::OldestMessageAge), minute));
                }
            }
        }
        // Messages waiting and no sent count to date them (no projector scraped): their age
        // is not known, and CloudWatch still measures it.
        let age_unknown = self.queue_points().back().is_some_and(|p| {
            p.sent_total.is_none() && p.visible.zip(p.in_flight).is_some_and(|(v, f)| v + f > 0.0)
        });
        if age_unknown {
            out.unread.insert(key(Signal::OldestMessageAge));
        }
        // A queue that could not be read at its last scrape, or that is not configured: its
        // alarms cannot say OK (CloudWatch still measures the queue).
        let errors = lock(&self.queue_errors).clone();
        if !self.has_orders_queue() || errors.orders.is_some() {
            for signal in [Signal::Backlog, Signal::OldestMessageAge] {
                out.unread.insert(key(signal));
            }
        }
        if !self.has_orders_queue() {
            out.not_configured
                .insert(key(Signal::Backlog), "ORDERS_QUEUE_URL");
            out.not_configured
                .insert(key(Signal::OldestMessageAge), "ORDERS_QUEUE_URL");
        }
        if !self.has_dlq() || errors.dlq.is_some() {
            out.unread.insert(key(Signal::DlqVisible));
        }
        if !self.has_dlq() {
            out.not_configured
                .insert(key(Signal::DlqVisible), "ORDERS_DLQ_URL");
        }
        if self.db_error().is_some() {
            out.unread.insert(key(Signal::DbConnectionsPercent));
        }
        for (t, used, max) in lock(&self.db_points).iter() {
            if *max > 0.0 {
                put(
                    Signal::DbConnectionsPercent,
                    minute_of(*t),
                    used / max * 100.0,
                    false,
                );
            }
        }
        out
    }

    /// Every alarm, evaluated now.
    pub fn alarms(&self) -> Vec<alarms::Evaluation> {
        alarms::evaluate(&self.datapoints())
    }
}

/// Run `scrape` every `interval`, for ever (a late one delays the next, never piles up).
async fn each<F, Fut>(interval: Duration, mut scrape: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        scrape().await;
    }
}

/// How long one read of a queue may take: the SDK's own limits are 30 s per attempt.
const QUEUE_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// `read` of SQS, or an error once [`QUEUE_READ_TIMEOUT`] passed without an answer.
async fn within_queue_limit<T>(read: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(QUEUE_READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "SQS did not answer within {} s",
                QUEUE_READ_TIMEOUT.as_secs()
            ))
        })
}

/// The minute (since the Unix epoch) of Unix time `t`.
fn minute_of(t: f64) -> i64 {
    (t / 60.0).floor() as i64
}

/// The p95 of order-grpc's command latency per minute: the observations of the minute's
/// scrapes (each since the scrape its rates are counted from: a new process's whole buckets,
/// the same process's increase, over a failed scrape too), every instance summed.
fn latency_p95(instances: &[Instance]) -> BTreeMap<i64, f64> {
    let mut latency: BTreeMap<i64, Buckets> = BTreeMap::new();
    for instance in instances.iter().filter(|i| i.kind == Kind::Grpc) {
        for point in instance
            .points
            .iter()
            .filter(|p| !p.latency_observed.is_empty())
        {
            add_buckets(
                latency.entry(minute_of(point.t)).or_default(),
                &point.latency_observed,
            );
        }
    }
    latency
        .into_iter()
        .filter_map(|(minute, observed)| {
            crate::prom::quantile(0.95, &[], &observed).map(|p95| (minute, p95))
        })
        .collect()
}

/// Add cumulative buckets (same bounds) into a running sum.
fn add_buckets(into: &mut Vec<(f64, f64)>, from: &[(f64, f64)]) {
    for (bound, count) in from {
        match into.iter_mut().find(|(b, _)| b == bound) {
            Some((_, c)) => *c += count,
            None => into.push((*bound, *count)),
        }
    }
    into.sort_by(|a, b| a.0.total_cmp(&b.0));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;
    use crate::prom::Scrape;
    use crate::services::ScrapeOutcome;

    /// order-grpc's answer: started at `started`, its latency buckets (cumulative) `fast`
    /// (<= 0.1 s), `medium` (<= 1 s), `all`.
    fn grpc(started: f64, fast: u32, medium: u32, all: u32) -> ScrapeOutcome {
        ScrapeOutcome::Answered {
            ready: true,
            readiness: "ready".into(),
            metrics: Scrape::parse(&format!(
                "order_build_info{{service=\"order-grpc\",version=\"0.1.0\"}} 1\n\
                 process_start_time_seconds {started}\n\
                 order_command_duration_seconds_bucket{{le=\"0.1\"}} {fast}\n\
                 order_command_duration_seconds_bucket{{le=\"1\"}} {medium}\n\
                 order_command_duration_seconds_bucket{{le=\"+Inf\"}} {all}\n"
            )),
        }
    }

    /// A new order-grpc process (another `process_start_time_seconds`): its whole buckets
    /// are the window's observations, whatever the old process had counted; the same process
    /// back after a failed scrape: its buckets' increase over the gap.
    #[test]
    fn latency_p95_counts_a_new_process_whole_and_a_blip_over_the_gap() {
        let keep = Duration::from_secs(3600);
        let mut instance = Instance::new(Target {
            name: None,
            authority: "127.0.0.1:1".into(),
        });
        // Minute 100: the old process, 100 fast commands and 900 of up to 1 s so far.
        instance.record(6000.0, grpc(5000.0, 100, 1000, 1000), keep);
        instance.record(6030.0, grpc(5000.0, 100, 1000, 1000), keep);
        // Minute 101: a new process, 150 fast commands and one of up to 1 s. The old
        // process's buckets are no baseline: "1 s" did not fall from 1000 to 151.
        instance.record(6062.0, grpc(6050.0, 150, 151, 151), keep);
        let p95 = latency_p95(std::slice::from_ref(&instance));
        let expected = 0.1 * (0.95 * 151.0) / 150.0;
        let got = p95.get(&101).copied().unwrap_or(f64::NAN);
        assert!(
            (got - expected).abs() < 1e-9,
            "minute 101: {got}, not {expected}"
        );
        assert!(
            !p95.contains_key(&100),
            "nothing observed in minute 100: {p95:?}"
        );

        // Minute 102: a failed scrape; minute 103: the same process, 20 commands of up to
        // 1 s in between.
        instance.record(6130.0, ScrapeOutcome::Unreachable("refused".into()), keep);
        instance.record(6190.0, grpc(6050.0, 150, 171, 171), keep);
        let p95 = latency_p95(std::slice::from_ref(&instance));
        let expected = 0.1 + 0.9 * (0.95 * 20.0) / 20.0;
        let got = p95.get(&103).copied().unwrap_or(f64::NAN);
        assert!(
            (got - expected).abs() < 1e-9,
            "minute 103: {got}, not {expected}"
        );
    }
}

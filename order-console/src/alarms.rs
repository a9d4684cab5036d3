//! The CloudWatch alarms of `terraform/modules/monitoring` (and the scaling module's two),
//! evaluated the way CloudWatch evaluates them — one datapoint per minute, "M of N" periods,
//! the same treatment of missing data — but from the services' own metrics, the queues and the
//! database, so that the local board shows red where AWS would.
//!
//! Alarms on what only AWS measures (the load balancer, RDS CPU and storage, ECS CPU and
//! memory) are listed as not evaluated here. Where the console reads another signal than
//! CloudWatch, the alarm says so ([`Alarm::source`]).
//!
//! Minutes before the console started are not data: an alarm needs its M breaching minutes
//! inside the console's own history, as CloudWatch needs them inside its own.
//!
//! An alarm is judged on its last N *complete* minutes, as CloudWatch judges a period once it
//! has ended: a one-minute alarm whose last minute breached stays in ALARM for the whole next
//! minute, whatever that unfinished minute holds so far (a counted signal, ERROR lines or
//! failed messages, starts again from 0 at each minute, and judging it would clear the alarm
//! seconds after it fired). The unfinished minute may only raise an alarm early: when a value
//! in it already breaches and, counted as the last of the N, makes M, the alarm is in ALARM
//! now ([`Evaluation::raised_early`]); it never clears one, and its missing data (no scrape
//! yet in it) breaches nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// How a period's datapoint compares with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `>`.
    Greater,
    /// `<=`.
    LessOrEqual,
}

/// CloudWatch's `treat_missing_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A minute without data is fine.
    NotBreaching,
    /// A minute without data breaches (the projector stopped reporting).
    Breaching,
    /// A minute without data does not count.
    Ignore,
}

/// Which datapoint an alarm reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// order-grpc's ERROR lines (`order_log_errors_total`; for an older order-grpc, its commands
    /// answered `error` or `unavailable`).
    ApiErrors,
    /// Sum of the worker's `FAILED` lines (`order_worker_failed_total`: a message
    /// dead-lettered or that could not be, a delete given up), what WorkerFailedCount counts.
    WorkerFailed,
    /// Maximum projector lag in seconds over every subscription.
    ProjectorLag,
    /// Maximum visible messages in the orders queue.
    Backlog,
    /// Maximum messages in the DLQ, visible and in flight.
    DlqVisible,
    /// p95 of order-grpc's command latency, seconds.
    LatencyP95,
    /// Maximum estimated age of the oldest orders message, seconds.
    OldestMessageAge,
    /// Maximum client connections to PostgreSQL, as a share of `max_connections` (percent).
    DbConnectionsPercent,
    /// Sum of the inventory breaker's transitions to open (every worker).
    CircuitOpenInventory,
    /// Sum of the payment breaker's transitions to open (every worker).
    CircuitOpenPayment,
    /// Sum of the shipping breaker's transitions to open (every worker).
    CircuitOpenShipping,
    /// Not measurable here.
    NotLocal,
}

/// The providers whose circuit breaker has a `worker-circuit-open-<provider>` alarm, with its
/// signal (`worker_providers` in terraform/modules/monitoring).
pub const CIRCUIT_SIGNALS: [(&str, Signal); 3] = [
    ("inventory", Signal::CircuitOpenInventory),
    ("payment", Signal::CircuitOpenPayment),
    ("shipping", Signal::CircuitOpenShipping),
];

/// One alarm of the catalogue.
#[derive(Debug, Clone)]
pub struct Alarm {
    /// The name after `<prefix>-`.
    pub name: Cow<'static, str>,
    /// When it fires, in words.
    pub condition: Cow<'static, str>,
    /// What the console reads for it.
    pub source: &'static str,
    /// The datapoint.
    pub signal: Signal,
    /// Comparison with the threshold.
    pub comparison: Comparison,
    /// Threshold.
    pub threshold: f64,
    /// Periods looked at (N).
    pub periods: usize,
    /// Breaching periods needed (M).
    pub datapoints: usize,
    /// Missing data.
    pub missing: Missing,
    /// A scaling alarm: its ALARM state is routine (scale-in is in ALARM while idle).
    pub scaling: bool,
}

const fn alarm(
    name: &'static str,
    condition: &'static str,
    source: &'static str,
    signal: Signal,
    (comparison, threshold): (Comparison, f64),
    (datapoints, periods): (usize, usize),
    missing: Missing,
) -> Alarm {
    Alarm {
        name: Cow::Borrowed(name),
        condition: Cow::Borrowed(condition),
        source,
        signal,
        comparison,
        threshold,
        periods,
        datapoints,
        missing,
        scaling: false,
    }
}

/// The catalogue, in the order of `docs/operations.md`, with the Terraform defaults.
pub fn catalogue() -> Vec<Alarm> {
    use Comparison::*;
    use Missing::*;
    use Signal::*;
    let mut alarms = vec![
        alarm(
            "api-error-spike",
            "order-grpc logs more than 5 ERROR lines in a minute",
            "order-grpc's ERROR lines (order_log_errors_total): calls answered error or unavailable, commands and queries, and the store's own errors",
            ApiErrors,
            (Greater, 5.0),
            (1, 1),
            NotBreaching,
        ),
        alarm(
            "worker-failed",
            "order-worker failed a message in the last minute",
            "the worker's FAILED lines (order_worker_failed_total): messages dead-lettered or that could not be, deletes given up",
            WorkerFailed,
            (Greater, 0.0),
            (1, 1),
            NotBreaching,
        ),
        alarm(
            "scaleout-sqs-backlog-high",
            "more than 10 visible messages for 2 minutes (adds a worker)",
            "orders queue, visible messages",
            Backlog,
            (Greater, 10.0),
            (2, 2),
            NotBreaching,
        ),
        alarm(
            "scalein-sqs-backlog-empty",
            "queue empty for 5 minutes (removes a worker; in ALARM while idle)",
            "orders queue, visible messages",
            Backlog,
            (LessOrEqual, 0.0),
            (5, 5),
            NotBreaching,
        ),
        alarm(
            "queue-backlog-high-sustained",
            "more than 100 visible messages for 15 minutes",
            "orders queue, visible messages",
            Backlog,
            (Greater, 100.0),
            (15, 15),
            NotBreaching,
        ),
        alarm(
            "dlq-nonempty",
            "a message in the dead-letter queue",
            "dead-letter queue, visible and in-flight messages (its own looks hold them in flight on fauxqs)",
            DlqVisible,
            (Greater, 0.0),
            (1, 1),
            NotBreaching,
        ),
        alarm(
            "alb-5xx",
            "the ALB answers 5xx itself",
            "the load balancer (AWS only)",
            NotLocal,
            (Greater, 5.0),
            (2, 2),
            NotBreaching,
        ),
        alarm(
            "tg-5xx",
            "order-grpc tasks answer HTTP 5xx",
            "the load balancer (AWS only)",
            NotLocal,
            (Greater, 5.0),
            (2, 2),
            NotBreaching,
        ),
        alarm(
            "alb-latency-p95",
            "p95 response time above 0.5 s for 3 of 5 minutes",
            "p95 of order-grpc's command latency (order_command_duration_seconds)",
            LatencyP95,
            (Greater, 0.5),
            (3, 5),
            NotBreaching,
        ),
        alarm(
            "rds-cpu-high",
            "database CPU above 80 % for 8 of 10 minutes",
            "RDS (AWS only)",
            NotLocal,
            (Greater, 80.0),
            (8, 10),
            Ignore,
        ),
        alarm(
            "rds-free-storage-low",
            "less than 2 GiB free",
            "RDS (AWS only)",
            NotLocal,
            (Greater, 0.0),
            (1, 1),
            Ignore,
        ),
        alarm(
            "projector-lag",
            "a subscription more than 60 s behind for 5 minutes, or no data",
            "order_projector_lag_seconds of every projector (no projector answering: no data)",
            ProjectorLag,
            (Greater, 60.0),
            (5, 5),
            Breaching,
        ),
        alarm(
            "queue-oldest-message-age",
            "the oldest orders message older than 10 minutes",
            "estimated from the queue's depth and the projector's sent count (SQS's API has no age)",
            OldestMessageAge,
            (Greater, 600.0),
            (5, 5),
            NotBreaching,
        ),
    ];
    for service in ["grpc", "projector", "worker"] {
        for (what, name) in [("cpu", "ecs-cpu-high-"), ("memory", "ecs-memory-high-")] {
            alarms.push(Alarm {
                name: Cow::Owned(format!("{name}{service}")),
                condition: Cow::Owned(format!(
                    "order-{service}'s average {what} above 85 % for 8 of 10 minutes"
                )),
                source: "ECS (AWS only)",
                signal: NotLocal,
                comparison: Greater,
                threshold: 85.0,
                periods: 10,
                datapoints: 8,
                missing: NotBreaching,
                scaling: false,
            });
        }
    }
    // Only with a read replica (`db_replica_identifier`).
    alarms.push(alarm(
        "replica-lag",
        "the read replica more than 30 s behind for 5 minutes, or no data (only with a replica)",
        "RDS (AWS only)",
        NotLocal,
        (Greater, 30.0),
        (5, 5),
        Breaching,
    ));
    // terraform/modules/monitoring/providers.tf: one per provider of `worker_providers`.
    for (provider, signal) in CIRCUIT_SIGNALS {
        alarms.push(Alarm {
            name: Cow::Owned(format!("worker-circuit-open-{provider}")),
            condition: Cow::Owned(format!(
                "order-worker's {provider} circuit breaker opened (or stayed open) in the last minute"
            )),
            source: "order_worker_circuit_transitions_total{state=\"open\"} of every worker",
            signal,
            comparison: Greater,
            threshold: 0.0,
            periods: 1,
            datapoints: 1,
            missing: NotBreaching,
            scaling: false,
        });
    }
    alarms.push(alarm(
        "rds-connections-high",
        "more than 80 % of max_connections in use for 5 minutes",
        "sessions connected to every database (pg_stat_database numbackends) / max_connections",
        DbConnectionsPercent,
        (Greater, 80.0),
        (5, 5),
        Ignore,
    ));
    for alarm in &mut alarms {
        alarm.scaling = alarm.name.starts_with("scale");
    }
    alarms
}

/// An alarm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not breaching.
    Ok,
    /// Breaching.
    Alarm,
    /// Not enough minutes yet.
    InsufficientData,
    /// Measured only in AWS.
    NotLocal,
}

impl State {
    /// As CloudWatch writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Alarm => "ALARM",
            Self::InsufficientData => "INSUFFICIENT_DATA",
            Self::NotLocal => "AWS only",
        }
    }
}

/// Per-minute datapoints of every signal: minute (Unix seconds / 60) → value. A minute present
/// with no value for a signal is a minute without data for it.
#[derive(Debug, Clone, Default)]
pub struct Datapoints {
    /// The first minute the console saw.
    pub first_minute: i64,
    /// The current (partial) minute.
    pub current_minute: i64,
    /// Values by signal and minute.
    pub values: BTreeMap<(SignalKey, i64), f64>,
    /// Values that are only lower bounds (the oldest message's age when it is older than the
    /// board's history): one past the threshold breaches, one below it is no data (the true
    /// value may be past it too), never OK.
    pub at_least: std::collections::BTreeSet<(SignalKey, i64)>,
    /// Signals whose source could not be read at its last scrape: their alarms are
    /// INSUFFICIENT_DATA rather than OK (CloudWatch still gets data the console cannot read).
    pub unread: std::collections::BTreeSet<SignalKey>,
    /// Signals whose source is not configured, with the setting that names it: their alarms
    /// are INSUFFICIENT_DATA (with the signal in [`Datapoints::unread`]) and say so.
    pub not_configured: BTreeMap<SignalKey, &'static str>,
}

/// A signal as a map key.
pub type SignalKey = u8;

/// The key of a signal.
pub fn key(signal: Signal) -> SignalKey {
    signal as u8
}

/// The evaluation of one alarm.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The alarm.
    pub alarm: Alarm,
    /// Its state.
    pub state: State,
    /// The datapoints of the last N complete minutes, oldest first, the last complete minute
    /// last (None: missing).
    pub recent: Vec<Option<f64>>,
    /// Breaching minutes among them.
    pub breaching: usize,
    /// In ALARM only because of what the unfinished current minute holds so far.
    pub raised_early: bool,
    /// The setting that would name the alarm's source, when it is not set.
    pub not_configured: Option<&'static str>,
}

/// Evaluate every alarm now: on the last complete minutes, raised early by a breach in the
/// current unfinished one (see the module's docs).
pub fn evaluate(points: &Datapoints) -> Vec<Evaluation> {
    catalogue()
        .into_iter()
        .map(|alarm| evaluate_one(alarm, points))
        .collect()
}

fn evaluate_one(alarm: Alarm, points: &Datapoints) -> Evaluation {
    if alarm.signal == Signal::NotLocal {
        return Evaluation {
            alarm,
            state: State::NotLocal,
            recent: Vec::new(),
            breaching: 0,
            raised_early: false,
            not_configured: None,
        };
    }
    // The last N complete minutes, as CloudWatch judges its periods once they end.
    let last_complete = points.current_minute - 1;
    let complete = judge(&alarm, points, last_complete);
    // The unfinished minute may raise the alarm early (a breach already visible in it),
    // never clear one: judged as if it were complete, only when a value in it breaches.
    let current = (key(alarm.signal), points.current_minute);
    let partial_breaches = points
        .values
        .get(&current)
        .is_some_and(|&v| breaches(&alarm, v));
    let raised_early = complete.breaching < alarm.datapoints
        && only_grows(&alarm)
        && partial_breaches
        && judge(&alarm, points, points.current_minute).breaching >= alarm.datapoints;
    let state = if complete.breaching >= alarm.datapoints || raised_early {
        State::Alarm
    } else if (complete.present == 0 && alarm.missing == Missing::Ignore)
        || points.unread.contains(&key(alarm.signal))
        || complete.unknowns > 0
    {
        State::InsufficientData
    } else {
        State::Ok
    };
    let not_configured = points.not_configured.get(&key(alarm.signal)).copied();
    Evaluation {
        alarm,
        state,
        recent: complete.recent,
        breaching: complete.breaching,
        raised_early,
        not_configured,
    }
}

/// Whether a breach seen in the unfinished minute is sure to be one when the minute ends: the
/// minute's value is a sum or a maximum (it only grows as the minute goes on) and the alarm
/// fires above a threshold. Not a p95 (more fast calls bring it down) nor an alarm on a value
/// at or below a threshold (a queue empty so far may fill before the minute ends).
fn only_grows(alarm: &Alarm) -> bool {
    alarm.comparison == Comparison::Greater && alarm.signal != Signal::LatencyP95
}

/// Whether `value` breaches the alarm's threshold.
fn breaches(alarm: &Alarm, value: f64) -> bool {
    match alarm.comparison {
        Comparison::Greater => value > alarm.threshold,
        Comparison::LessOrEqual => value <= alarm.threshold,
    }
}

/// The alarm's N minutes ending at `last`, within the console's history.
struct Window {
    /// The datapoints, oldest first (None: missing).
    recent: Vec<Option<f64>>,
    /// Breaching minutes among them.
    breaching: usize,
    /// Minutes with data.
    present: usize,
    /// Minutes whose value is only a lower bound below the threshold: not known to be fine.
    unknowns: usize,
}

fn judge(alarm: &Alarm, points: &Datapoints, last: i64) -> Window {
    let first = (last - alarm.periods as i64 + 1).max(points.first_minute);
    let mut window = Window {
        recent: Vec::new(),
        breaching: 0,
        present: 0,
        unknowns: 0,
    };
    for minute in first..=last {
        let at = (key(alarm.signal), minute);
        let value = points.values.get(&at).copied().filter(|&v| {
            let unknown = !breaches(alarm, v) && points.at_least.contains(&at);
            window.unknowns += usize::from(unknown);
            !unknown
        });
        let breaching = match value {
            Some(v) => {
                window.present += 1;
                breaches(alarm, v)
            }
            None => alarm.missing == Missing::Breaching,
        };
        window.breaching += usize::from(breaching);
        window.recent.push(value);
    }
    window
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(signal: Signal, values: &[(i64, f64)], first: i64, current: i64) -> Datapoints {
        Datapoints {
            first_minute: first,
            current_minute: current,
            values: values
                .iter()
                .map(|(m, v)| ((key(signal), *m), *v))
                .collect(),
            unread: Default::default(),
            at_least: Default::default(),
            not_configured: Default::default(),
        }
    }

    /// The oldest message's age known only as "at least" (older than the board's history):
    /// past the threshold it breaches; below it, it is not known to be fine.
    #[test]
    fn a_lower_bound_below_the_threshold_is_not_ok() {
        let name = "queue-oldest-message-age";
        let threshold = catalogue()
            .into_iter()
            .find(|a| a.name == name)
            .unwrap()
            .threshold;
        let minutes: Vec<(i64, f64)> = (0..10).map(|m| (m, threshold / 2.0)).collect();
        let mut points = with(Signal::OldestMessageAge, &minutes, 0, 9);
        assert_eq!(state(name, &points), State::Ok, "known values below it");
        for m in 0..10 {
            points.at_least.insert((key(Signal::OldestMessageAge), m));
        }
        assert_eq!(state(name, &points), State::InsufficientData);
        let past: Vec<(i64, f64)> = (0..10).map(|m| (m, threshold * 2.0)).collect();
        let mut points = with(Signal::OldestMessageAge, &past, 0, 9);
        for m in 0..10 {
            points.at_least.insert((key(Signal::OldestMessageAge), m));
        }
        assert_eq!(
            state(name, &points),
            State::Alarm,
            "at least past it: past it"
        );
    }

    fn state(name: &str, points: &Datapoints) -> State {
        evaluate(points)
            .into_iter()
            .find(|e| e.alarm.name == name)
            .map(|e| e.state)
            .unwrap_or(State::NotLocal)
    }

    fn evaluation(name: &str, points: &Datapoints) -> Evaluation {
        evaluate(points)
            .into_iter()
            .find(|e| e.alarm.name == name)
            .unwrap()
    }

    /// One-minute alarms are judged on the last complete minute, as CloudWatch judges its
    /// periods: a breach in the minute just ended keeps the alarm up for the whole next
    /// minute, whatever the unfinished minute holds so far (a counted signal starts from 0 at
    /// each minute); a breach already in the unfinished minute raises it at once.
    #[test]
    fn one_minute_alarms_fire_at_once_and_clear_only_after_a_whole_fine_minute() {
        // Dead letters in minute 10; minute 11 has only just begun (and reads 0 so far).
        let points = with(Signal::DlqVisible, &[(10, 2.0), (11, 0.0)], 10, 11);
        let dlq = evaluation("dlq-nonempty", &points);
        assert_eq!(dlq.state, State::Alarm, "the last complete minute breached");
        assert_eq!(
            dlq.recent,
            vec![Some(2.0)],
            "the last complete minute shown"
        );
        // Minute 11 ended fine: clear in minute 12.
        let points = with(
            Signal::DlqVisible,
            &[(10, 2.0), (11, 0.0), (12, 0.0)],
            10,
            12,
        );
        assert_eq!(state("dlq-nonempty", &points), State::Ok);
        // A breach in the unfinished minute raises it early.
        let points = with(Signal::DlqVisible, &[(10, 0.0), (11, 2.0)], 10, 11);
        let dlq = evaluation("dlq-nonempty", &points);
        assert_eq!(dlq.state, State::Alarm);
        assert!(dlq.raised_early, "raised by the unfinished minute");
        // Counted signals: 6 ERROR lines at hh:mm:58, none yet at hh:mm+1:03.
        let points = with(Signal::ApiErrors, &[(11, 5.0)], 10, 12);
        assert_eq!(state("api-error-spike", &points), State::Ok, "more than 5");
        let points = with(Signal::ApiErrors, &[(11, 6.0)], 10, 11);
        assert_eq!(state("api-error-spike", &points), State::Alarm, "early");
        let points = with(Signal::ApiErrors, &[(11, 6.0), (12, 0.0)], 10, 12);
        assert_eq!(state("api-error-spike", &points), State::Alarm, "kept");
        let points = with(
            Signal::ApiErrors,
            &[(11, 6.0), (12, 0.0), (13, 0.0)],
            10,
            13,
        );
        assert_eq!(state("api-error-spike", &points), State::Ok, "cleared");
        let points = with(Signal::WorkerFailed, &[(11, 1.0), (12, 0.0)], 10, 12);
        assert_eq!(state("worker-failed", &points), State::Alarm);
        // A breaker that opened in the last minute, per provider.
        let points = with(Signal::CircuitOpenPayment, &[(10, 1.0), (11, 0.0)], 10, 11);
        assert_eq!(state("worker-circuit-open-payment", &points), State::Alarm);
        assert_eq!(state("worker-circuit-open-inventory", &points), State::Ok);
        let points = with(
            Signal::CircuitOpenPayment,
            &[(10, 3.0), (11, 0.0), (12, 0.0)],
            10,
            12,
        );
        assert_eq!(state("worker-circuit-open-payment", &points), State::Ok);
    }

    /// Only a minute's sum or maximum raises early: a p95 above the threshold so far may end
    /// the minute below it, and a queue empty so far may fill before the minute ends.
    #[test]
    fn the_unfinished_minute_raises_only_values_that_only_grow() {
        // p95 above 0.5 s in 3 of the last 5 minutes: two complete ones and the current so far.
        let points = with(Signal::LatencyP95, &[(6, 0.9), (7, 0.9), (9, 0.9)], 0, 9);
        let p95 = evaluation("alb-latency-p95", &points);
        assert!(!p95.raised_early, "{:?}", p95.state);
        assert_ne!(p95.state, State::Alarm);
        // The same for a sum (ERROR lines): raised early.
        let points = with(Signal::ApiErrors, &[(9, 6.0)], 0, 9);
        assert!(evaluation("api-error-spike", &points).raised_early);
        // A backlog at or below 0 (scale in) so far: not raised before the minute ends.
        for alarm in catalogue() {
            if alarm.comparison == Comparison::LessOrEqual && alarm.signal != Signal::NotLocal {
                let points = with(alarm.signal, &[(9, 0.0)], 0, 9);
                let evaluation = evaluation(&alarm.name, &points);
                assert!(!evaluation.raised_early, "{}", alarm.name);
            }
        }
    }

    /// The unfinished minute never clears nor holds back what the complete minutes say, and
    /// its missing data (no scrape yet in it) breaches nothing.
    #[test]
    fn the_unfinished_minute_only_raises() {
        // The projector silent for the complete minutes 4..=8; minute 9 reads fine so far.
        let points = with(Signal::ProjectorLag, &[(9, 0.0)], 0, 9);
        assert_eq!(state("projector-lag", &points), State::Alarm);
        // Fine for the complete minutes; no scrape yet in the unfinished one.
        let fine: Vec<(i64, f64)> = (4..9).map(|m| (m, 0.0)).collect();
        let points = with(Signal::ProjectorLag, &fine, 0, 9);
        let lag = evaluation("projector-lag", &points);
        assert_eq!(lag.state, State::Ok);
        assert_eq!(lag.recent.len(), 5, "the last five complete minutes");
        // A fresh console: its first minute is unfinished, so only a breach in it counts.
        let points = with(Signal::DlqVisible, &[(10, 0.0)], 10, 10);
        assert_eq!(state("dlq-nonempty", &points), State::Ok);
        let points = with(Signal::DlqVisible, &[(10, 1.0)], 10, 10);
        assert_eq!(state("dlq-nonempty", &points), State::Alarm);
    }

    #[test]
    fn m_of_n_counts_minutes_inside_the_history_only() {
        // p95 above 0.5 s in 3 of the last 5 complete minutes (minute 6 has just begun).
        let points = with(
            Signal::LatencyP95,
            &[(1, 0.9), (2, 0.1), (3, 0.9), (4, 0.1), (5, 0.9)],
            0,
            6,
        );
        assert_eq!(state("alb-latency-p95", &points), State::Alarm);
        let points = with(Signal::LatencyP95, &[(4, 0.9), (5, 0.9)], 0, 6);
        assert_eq!(state("alb-latency-p95", &points), State::Ok);
        // The projector stopped reporting: missing data breaches, but only inside the
        // console's own history (two minutes is not five).
        let silent = with(Signal::ProjectorLag, &[], 8, 9);
        assert_eq!(state("projector-lag", &silent), State::Ok);
        let silent = with(Signal::ProjectorLag, &[], 0, 9);
        assert_eq!(state("projector-lag", &silent), State::Alarm);
        let fine = with(
            Signal::ProjectorLag,
            &[(5, 0.0), (6, 0.0), (7, 1.0), (8, 0.0), (9, 0.0)],
            0,
            9,
        );
        assert_eq!(state("projector-lag", &fine), State::Ok);
    }

    #[test]
    fn aws_only_alarms_are_not_evaluated_and_connections_need_data() {
        let points = with(Signal::Backlog, &[], 0, 3);
        assert_eq!(state("rds-cpu-high", &points), State::NotLocal);
        assert_eq!(state("ecs-memory-high-worker", &points), State::NotLocal);
        assert_eq!(
            state("rds-connections-high", &points),
            State::InsufficientData
        );
    }

    /// The catalogue mirrors the Terraform: every name is an alarm there, and the thresholds
    /// are the variables' defaults.
    #[test]
    fn the_catalogue_mirrors_the_terraform_alarms() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap_or_default();
        let terraform = [
            read("terraform/modules/monitoring/alarms.tf"),
            read("terraform/modules/monitoring/capacity.tf"),
            read("terraform/modules/monitoring/providers.tf"),
            read("terraform/modules/scaling/worker.tf"),
        ]
        .join("\n");
        let variables = [
            read("terraform/modules/monitoring/variables_optional.tf"),
            read("terraform/modules/scaling/variables_optional.tf"),
        ]
        .join("\n");
        let default = |variable: &str| -> Option<f64> {
            let block = variables
                .split(&format!("variable \"{variable}\""))
                .nth(1)?;
            let line = block
                .lines()
                .find(|l| l.trim_start().starts_with("default"))?;
            line.split('=').nth(1)?.trim().parse().ok()
        };
        let alarms = catalogue();
        assert_eq!(alarms.len(), 24);
        let per_key = |name: &str| name.starts_with("ecs-") || name.starts_with("worker-circuit-");
        for alarm in &alarms {
            let name: &str = &alarm.name;
            let pattern = if per_key(name) {
                let base = name.rsplit_once('-').map_or(name, |(b, _)| b);
                format!("-{base}-${{each.key}}\"")
            } else {
                format!("-{name}\"")
            };
            assert!(
                terraform.contains(&pattern),
                "{} is not in the terraform",
                alarm.name
            );
        }
        // And the other way round: every alarm the Terraform defines is in the catalogue.
        let mut defined = 0;
        for line in terraform.lines() {
            let Some(rest) = line.trim().strip_prefix("alarm_name") else {
                continue;
            };
            let Some(name) = rest.split("${var.name_prefix}-").nth(1) else {
                continue;
            };
            let name = name.trim_end_matches('"');
            defined += 1;
            let found = match name.strip_suffix("-${each.key}") {
                Some(base) => alarms
                    .iter()
                    .any(|a| a.name.starts_with(&format!("{base}-")) && per_key(&a.name)),
                None => alarms.iter().any(|a| a.name == name),
            };
            assert!(
                found,
                "the Terraform's alarm {name} is not in the catalogue"
            );
        }
        assert!(
            defined >= 15,
            "{defined} alarm names read from the Terraform"
        );
        let threshold = |name: &str| alarms.iter().find(|a| a.name == name).map(|a| a.threshold);
        for (name, variable) in [
            ("api-error-spike", "api_error_threshold"),
            ("projector-lag", "projector_lag_threshold_seconds"),
            (
                "queue-backlog-high-sustained",
                "backlog_sustained_threshold",
            ),
            ("alb-latency-p95", "latency_p95_threshold_seconds"),
            (
                "queue-oldest-message-age",
                "queue_oldest_message_age_threshold_seconds",
            ),
            ("rds-connections-high", "rds_connections_percent"),
            ("scaleout-sqs-backlog-high", "scale_out_backlog_threshold"),
            ("ecs-cpu-high-grpc", "ecs_cpu_threshold"),
            ("replica-lag", "db_replica_lag_threshold_seconds"),
        ] {
            assert_eq!(threshold(name), default(variable), "{name} vs {variable}");
        }
        assert_eq!(default("projector_lag_periods"), Some(5.0));
        assert_eq!(default("backlog_sustained_periods"), Some(15.0));
    }
}

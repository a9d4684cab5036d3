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
        "pg_stat_activity client backends / max_connections",
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
    /// The datapoints looked at, oldest first (None: missing).
    pub recent: Vec<Option<f64>>,
    /// Breaching minutes among them.
    pub breaching: usize,
}

/// Evaluate every alarm at the current minute.
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
        };
    }
    let first = (points.current_minute - alarm.periods as i64 + 1).max(points.first_minute);
    let mut recent = Vec::new();
    let mut breaching = 0;
    let mut present = 0;
    // Minutes whose value is only a lower bound below the threshold: not known to be fine.
    let mut unknowns = 0;
    for minute in first..=points.current_minute {
        let at = (key(alarm.signal), minute);
        let value = points.values.get(&at).copied().filter(|&v| {
            let breaches = match alarm.comparison {
                Comparison::Greater => v > alarm.threshold,
                Comparison::LessOrEqual => v <= alarm.threshold,
            };
            let unknown = !breaches && points.at_least.contains(&at);
            unknowns += usize::from(unknown);
            !unknown
        });
        let breaches = match value {
            Some(v) => {
                present += 1;
                match alarm.comparison {
                    Comparison::Greater => v > alarm.threshold,
                    Comparison::LessOrEqual => v <= alarm.threshold,
                }
            }
            None => alarm.missing == Missing::Breaching,
        };
        if breaches {
            breaching += 1;
        }
        recent.push(value);
    }
    let state = if breaching >= alarm.datapoints {
        State::Alarm
    } else if (present == 0 && alarm.missing == Missing::Ignore)
        || points.unread.contains(&key(alarm.signal))
        || unknowns > 0
    {
        State::InsufficientData
    } else {
        State::Ok
    };
    Evaluation {
        alarm,
        state,
        recent,
        breaching,
    }
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

    #[test]
    fn one_minute_alarms_fire_at_once_and_clear() {
        let points = with(Signal::DlqVisible, &[(10, 0.0), (11, 2.0)], 10, 11);
        assert_eq!(state("dlq-nonempty", &points), State::Alarm);
        let points = with(Signal::DlqVisible, &[(10, 2.0), (11, 0.0)], 10, 11);
        assert_eq!(state("dlq-nonempty", &points), State::Ok);
        let points = with(Signal::ApiErrors, &[(11, 5.0)], 10, 11);
        assert_eq!(state("api-error-spike", &points), State::Ok, "more than 5");
        let points = with(Signal::ApiErrors, &[(11, 6.0)], 10, 11);
        assert_eq!(state("api-error-spike", &points), State::Alarm);
        // A breaker that opened in the last minute, per provider.
        let points = with(Signal::CircuitOpenPayment, &[(10, 0.0), (11, 1.0)], 10, 11);
        assert_eq!(state("worker-circuit-open-payment", &points), State::Alarm);
        assert_eq!(state("worker-circuit-open-inventory", &points), State::Ok);
        let points = with(Signal::CircuitOpenPayment, &[(10, 3.0), (11, 0.0)], 10, 11);
        assert_eq!(state("worker-circuit-open-payment", &points), State::Ok);
    }

    #[test]
    fn m_of_n_counts_minutes_inside_the_history_only() {
        // p95 above 0.5 s in 3 of the last 5 minutes.
        let points = with(
            Signal::LatencyP95,
            &[(1, 0.9), (2, 0.1), (3, 0.9), (4, 0.1), (5, 0.9)],
            0,
            5,
        );
        assert_eq!(state("alb-latency-p95", &points), State::Alarm);
        let points = with(Signal::LatencyP95, &[(4, 0.9), (5, 0.9)], 0, 5);
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

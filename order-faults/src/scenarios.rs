//! The fault scenarios. Each run starts a fresh stack, puts it under a steady load, injects
//! the fault, lets it recover, and audits what was acknowledged.

use std::time::{Duration, Instant};

use anyhow::Context;
use order_proto::v1 as pb;
use order_proto::v1::order_service_client::OrderServiceClient;
use order_testkit::pg::StopMode;
use order_testkit::replication::Replication;
use serde::Serialize;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::audit::{Audit, provider_effects, settle_and_audit, settle_projections, unsent_events};
use crate::load::{self, LoadOptions};
use crate::stack::{Binaries, HttpProviders, Service, Stack, StackOptions};

/// The faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// kill -9 order-grpc mid-load; clients retry with the same command ids.
    KillGrpc,
    /// PostgreSQL stopped (fast: checkpoint, disconnect) and started again mid-load.
    PostgresRestartFast,
    /// PostgreSQL stopped at once (crash recovery on start) and started again mid-load.
    PostgresRestartImmediate,
    /// Every PostgreSQL process frozen (SIGSTOP) for 6 s, then thawed.
    PostgresFreeze,
    /// The SQS emulator killed and started empty; the operator re-sends the log.
    SqsRestart,
    /// kill -9 the projector and the worker again and again at random moments.
    KillProjectorAndWorker,
    /// Many clients refunding the same few orders at once.
    HotStreams,
    /// The payment provider (HTTP stub) down for 30 s while orders keep arriving: the
    /// breaker opens, orders wait, payments resume by themselves after recovery.
    PaymentOutage,
    /// The primary crashes (SIGKILL of its postmaster); its synchronous standby is promoted
    /// 2 s later and the services, given both servers' addresses, find it.
    Failover,
    /// As `failover`, with asynchronous replication: what the standby had not received is
    /// lost, acknowledged or not. Reported, not judged: see `docs/reliability.md`.
    FailoverAsync,
    /// As `failover-async`, with the standby 1 s behind at the crash (its WAL receiver frozen
    /// for the last second), as a replica under load or in another region is.
    FailoverAsyncLagging,
    /// A team's own projector (order-examples' sales-projector, built on the projector
    /// library) killed with -9 at random moments during its catch-up and during replays,
    /// under load; its tables must equal a fold of the log.
    KillExampleProjector,
}

impl Scenario {
    pub const ALL: [Scenario; 12] = [
        Self::KillGrpc,
        Self::PostgresRestartFast,
        Self::PostgresRestartImmediate,
        Self::PostgresFreeze,
        Self::SqsRestart,
        Self::KillProjectorAndWorker,
        Self::HotStreams,
        Self::PaymentOutage,
        Self::Failover,
        Self::FailoverAsync,
        Self::FailoverAsyncLagging,
        Self::KillExampleProjector,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::KillGrpc => "kill -9 order-grpc",
            Self::PostgresRestartFast => "PostgreSQL restart (fast)",
            Self::PostgresRestartImmediate => "PostgreSQL restart (immediate)",
            Self::PostgresFreeze => "PostgreSQL frozen 6 s",
            Self::SqsRestart => "SQS emulator killed, restarted",
            Self::KillProjectorAndWorker => "kill -9 projector and worker",
            Self::HotStreams => "hot streams",
            Self::PaymentOutage => "payment gateway outage",
            Self::Failover => "failover to the synchronous standby",
            Self::FailoverAsync => "failover to an asynchronous standby",
            Self::FailoverAsyncLagging => "failover to an asynchronous standby 1 s behind",
            Self::KillExampleProjector => "kill -9 a team's projector (catch-up, replay)",
        }
    }

    /// Whether losing acknowledged commands is this scenario's documented outcome rather
    /// than a failure (an asynchronous standby promoted after a crash).
    pub fn may_lose_acknowledged(self) -> bool {
        matches!(self, Self::FailoverAsync | Self::FailoverAsyncLagging)
    }

    fn stack_options(self) -> StackOptions {
        let standby = match self {
            Self::Failover => Some(Replication::Synchronous),
            Self::FailoverAsync | Self::FailoverAsyncLagging => Some(Replication::Asynchronous),
            _ => None,
        };
        if self == Self::PaymentOutage {
            return StackOptions {
                transient_failure_rate: 0.0,
                http_providers: Some(HttpProviders::default()),
                ..StackOptions::default()
            };
        }
        StackOptions {
            standby,
            ..StackOptions::default()
        }
    }
}

/// The figures of a scenario over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub runs: usize,
    pub acknowledged: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub skipped: usize,
    /// Of `skipped`: events SQS never received.
    pub unsent: usize,
    pub unsettled: usize,
    pub dead_letters: usize,
    pub failed_attempts: u64,
    pub slowest_failure_ms: u128,
    pub max_recovery_seconds: f64,
    /// Failover scenarios: the longest time from the promotion of the standby to the first
    /// command acknowledged after it, over the runs (0 for the others).
    pub promotion_to_first_ack_seconds: f64,
    /// Scenario-specific observations.
    pub notes: Vec<String>,
    /// Payment outage: seconds from the provider's recovery to each pending order's
    /// settlement, over every run.
    pub recovery_to_settled: Vec<f64>,
    /// Provider effects that differ from the log (HTTP stub stacks).
    pub provider_mismatches: usize,
}

impl Report {
    fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            runs: 0,
            acknowledged: 0,
            lost: 0,
            duplicated: 0,
            skipped: 0,
            unsent: 0,
            unsettled: 0,
            dead_letters: 0,
            failed_attempts: 0,
            slowest_failure_ms: 0,
            max_recovery_seconds: 0.0,
            promotion_to_first_ack_seconds: 0.0,
            notes: Vec::new(),
            recovery_to_settled: Vec::new(),
            provider_mismatches: 0,
        }
    }

    fn add(&mut self, audit: &Audit) {
        self.runs += 1;
        self.acknowledged += audit.acknowledged;
        self.lost += audit.lost;
        self.duplicated += audit.duplicated;
        self.skipped += audit.skipped;
        self.unsent += audit.unsent;
        self.unsettled += audit.unsettled;
        self.dead_letters += audit.dead_letters;
        self.max_recovery_seconds = self.max_recovery_seconds.max(audit.recovery_seconds);
        if audit.read_model_extra > 0 {
            self.notes.push(format!(
                "{} read-model rows of orders not in the log (counted as skipped)",
                audit.read_model_extra
            ));
        }
    }

    /// The notes of all runs, condensed: notes that differ only in their numbers become one,
    /// each number shown as the range over the runs ("3-5 kills (10 runs)").
    pub fn condensed_notes(&self) -> Vec<String> {
        let mut notes = condense(&self.notes);
        if !self.recovery_to_settled.is_empty() {
            let mut all = self.recovery_to_settled.clone();
            all.sort_by(f64::total_cmp);
            let at = |q: f64| all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1];
            notes.push(format!(
                "recovery to settlement over all runs: p50 {:.1} s, p99 {:.1} s, max {:.1} s ({} orders pending at recovery)",
                at(0.50),
                at(0.99),
                at(1.0),
                all.len()
            ));
        }
        notes
    }

    /// Nothing lost, doubled, skipped or left unsettled. For a scenario that may lose
    /// acknowledged commands ([`Scenario::may_lose_acknowledged`]): nothing doubled or
    /// skipped; what it lost (and the orders whose lost steps leave them unsettled) is reported.
    pub fn clean(&self) -> bool {
        if self.scenario.may_lose_acknowledged() {
            return self.duplicated == 0 && self.skipped == 0;
        }
        self.lost == 0
            && self.duplicated == 0
            && self.skipped == 0
            && self.unsettled == 0
            && self.provider_mismatches == 0
            && (self.scenario != Scenario::PaymentOutage || self.dead_letters == 0)
    }
}

/// A number as read (for sorting) and as written (for printing).
type Number = (f64, String);

/// A note split into its text and its numbers: "4 kills" is (["", " kills"], [4.0]).
fn split_numbers(note: &str) -> (Vec<String>, Vec<Number>) {
    let mut texts = vec![String::new()];
    let mut numbers = Vec::new();
    let mut chars = note.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c.is_ascii_digit() {
            let mut end = start + c.len_utf8();
            while let Some(&(i, d)) = chars.peek() {
                if d.is_ascii_digit()
                    || (d == '.' && note[i + 1..].starts_with(|n: char| n.is_ascii_digit()))
                {
                    end = i + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let text = &note[start..end];
            numbers.push((text.parse().unwrap_or(0.0), text.to_owned()));
            texts.push(String::new());
        } else if let Some(last) = texts.last_mut() {
            last.push(c);
        }
    }
    (texts, numbers)
}

fn condense(notes: &[String]) -> Vec<String> {
    // Group by the text around the numbers, in order of first appearance.
    let mut groups: Vec<(Vec<String>, Vec<Vec<Number>>)> = Vec::new();
    for note in notes {
        let (texts, numbers) = split_numbers(note);
        match groups.iter_mut().find(|(t, _)| *t == texts) {
            Some((_, all)) => all.push(numbers),
            None => groups.push((texts, vec![numbers])),
        }
    }
    groups
        .into_iter()
        .map(|(texts, runs)| {
            let mut out = String::new();
            for (i, text) in texts.iter().enumerate() {
                out.push_str(text);
                let values: Vec<&Number> = runs.iter().filter_map(|r| r.get(i)).collect();
                let low = values.iter().min_by(|a, b| a.0.total_cmp(&b.0));
                let high = values.iter().max_by(|a, b| a.0.total_cmp(&b.0));
                if let (Some(low), Some(high)) = (low, high) {
                    if low.0 == high.0 {
                        out.push_str(&low.1);
                    } else {
                        out.push_str(&format!("{}-{}", low.1, high.1));
                    }
                }
            }
            if runs.len() > 1 {
                out.push_str(&format!(" ({} runs)", runs.len()));
            }
            out
        })
        .collect()
}

fn random_millis(low: u64, high: u64) -> u64 {
    low + (Uuid::new_v4().as_u128() as u64) % (high - low).max(1)
}

/// Run `scenario` `rounds` times.
pub async fn run(
    scenario: Scenario,
    binaries: &Binaries,
    rounds: usize,
    load: &LoadOptions,
) -> anyhow::Result<Report> {
    let mut report = Report::new(scenario);
    for _ in 0..rounds {
        let mut stack = Stack::start(binaries, &scenario.stack_options()).await?;
        let result = match scenario {
            Scenario::HotStreams => hot_streams(&mut stack, &mut report).await,
            Scenario::PaymentOutage => payment_outage(&mut stack, load, &mut report).await,
            _ => one_round(scenario, &mut stack, binaries, load, &mut report).await,
        };
        if let Err(error) = &result {
            for service in [&stack.grpc, &stack.projector, &stack.worker] {
                eprintln!("--- {} log ---\n{}", service.name, service.log_tail());
            }
            eprintln!("{scenario:?} failed: {error:#}");
        }
        stack.stop().await;
        result?;
    }
    Ok(report)
}

async fn one_round(
    scenario: Scenario,
    stack: &mut Stack,
    binaries: &Binaries,
    options: &LoadOptions,
    report: &mut Report,
) -> anyhow::Result<()> {
    let endpoint = stack.endpoint();
    let load = {
        let options = options.clone();
        tokio::spawn(async move { load::run(&endpoint, &options).await })
    };
    let third = options.duration / 3;
    tokio::time::sleep(third).await;
    let mut promotion = None;
    let mut sales_projector = None;
    match scenario {
        Scenario::KillGrpc => {
            stack.grpc.kill().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            stack.grpc.start()?;
        }
        Scenario::PostgresRestartFast | Scenario::PostgresRestartImmediate => {
            let mode = if scenario == Scenario::PostgresRestartFast {
                StopMode::Fast
            } else {
                StopMode::Immediate
            };
            let cluster = &stack.cluster;
            tokio::task::block_in_place(|| cluster.stop(mode)).map_err(anyhow::Error::msg)?;
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut noticed = None;
            while Instant::now() < deadline {
                if !stack.grpc.ready().await {
                    noticed = Some(deadline - Duration::from_secs(5));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            report.notes.push(match noticed {
                Some(at) => format!(
                    "order-grpc reported not ready {:.1} s after the stop",
                    at.elapsed().as_secs_f64().min(5.0)
                ),
                None => "order-grpc still reported ready 5 s after the stop".to_owned(),
            });
            tokio::time::sleep(Duration::from_secs(2)).await;
            tokio::task::block_in_place(|| cluster.start_again()).map_err(anyhow::Error::msg)?;
        }
        Scenario::PostgresFreeze => {
            stack.cluster.signal("STOP");
            tokio::time::sleep(Duration::from_secs(6)).await;
            stack.cluster.signal("CONT");
        }
        Scenario::SqsRestart => {
            stack.restart_emulator().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            // The queue's contents were lost with the emulator: re-send the log (the same
            // deduplication ids; the worker treats what it already did as obsolete).
            let resent = stack
                .projector
                .run_once(&["republish", "--from", "1"])
                .await?;
            anyhow::ensure!(resent, "order-projector republish failed");
        }
        Scenario::KillProjectorAndWorker => {
            let until = Instant::now() + third;
            let mut kills = 0;
            while Instant::now() < until {
                let target = if kills % 2 == 0 {
                    &mut stack.projector
                } else {
                    &mut stack.worker
                };
                target.kill().await;
                tokio::time::sleep(Duration::from_millis(random_millis(100, 600))).await;
                target.start()?;
                kills += 1;
                tokio::time::sleep(Duration::from_millis(random_millis(200, 1200))).await;
            }
            report.notes.push(format!("{kills} kills"));
        }
        Scenario::Failover | Scenario::FailoverAsync => {
            promotion = Some(fail_over(stack, Duration::ZERO, report).await?);
        }
        Scenario::FailoverAsyncLagging => {
            promotion = Some(fail_over(stack, Duration::from_secs(1), report).await?);
        }
        Scenario::HotStreams | Scenario::PaymentOutage => unreachable_scenario()?,
        Scenario::KillExampleProjector => {
            let sales = kill_sales_projector(stack, binaries, report).await?;
            sales_projector = Some(sales);
        }
    }
    let load = load.await??;
    if let Some(promoted) = promotion {
        let first = load
            .acknowledged
            .iter()
            .filter(|a| a.at >= promoted)
            .map(|a| a.at)
            .min();
        report.notes.push(match first {
            Some(at) => format!(
                "first command acknowledged {:.1} s after the promotion",
                at.duration_since(promoted).as_secs_f64()
            ),
            None => "no command acknowledged after the promotion".to_owned(),
        });
        report.promotion_to_first_ack_seconds =
            report
                .promotion_to_first_ack_seconds
                .max(first.map_or(f64::INFINITY, |at| {
                    at.duration_since(promoted).as_secs_f64()
                }));
    }
    report.failed_attempts += load.failed_attempts;
    report.slowest_failure_ms = report
        .slowest_failure_ms
        .max(load.slowest_failure.as_millis());
    anyhow::ensure!(
        load.abandoned.is_empty(),
        "{} commands were never acknowledged",
        load.abandoned.len()
    );
    // What an asynchronous failover lost never settles: wait for the rest, not for that.
    let settle = if scenario.may_lose_acknowledged() {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(120)
    };
    let mut audit = settle_and_audit(stack, &load, settle).await?;
    if let Some(mut sales) = sales_projector {
        settle_sales_projector(stack, binaries, &mut sales, report).await?;
        sales.terminate(Duration::from_secs(10)).await;
    }
    audit.add_unsent(unsent_events(stack).await?);
    report.add(&audit);
    if scenario.may_lose_acknowledged() {
        report.notes.push(format!(
            "{} acknowledged orders lost, {} orders left unsettled by lost steps, {} dead letters",
            audit.lost, audit.unsettled, audit.dead_letters
        ));
        anyhow::ensure!(
            audit.duplicated == 0 && audit.skipped == 0,
            "audit failed: {audit:?}"
        );
    } else {
        anyhow::ensure!(audit.clean(), "audit failed: {audit:?}");
    }
    Ok(())
}

/// Run a blocking call of the test kit (psql, signals) off the async workers.
fn blocking<T>(call: impl FnOnce() -> Result<T, String>) -> anyhow::Result<T> {
    tokio::task::block_in_place(call).map_err(anyhow::Error::msg)
}

/// Crash the primary (SIGKILL of its postmaster, under load), promote the standby 2 s later
/// (RDS takes 60-90 s; the services' part is the same), and return when it was promoted.
///
/// With a `lag`, the standby stops receiving WAL that long before the crash: its WAL receiver
/// is frozen, the whole primary then dies at once ([`order_testkit::pg::PrivateCluster::crash`]:
/// no backend commits after it), and the frozen receiver is SIGKILLed, never thawed, so that
/// the WAL the kernel buffered in its socket meanwhile is dropped with it. The fault is
/// checked, not assumed: the promoted standby must have replayed nothing past the primary's
/// WAL position read right after the freeze, and WAL must have been written after it; the
/// bytes it misses are noted.
async fn fail_over(
    stack: &mut Stack,
    lag: Duration,
    report: &mut Report,
) -> anyhow::Result<Instant> {
    let standby = stack
        .standby
        .as_ref()
        .context("the failover scenarios need a stack with a standby")?;
    let primary = &stack.cluster;
    let mut lagged = None;
    if lag.is_zero() {
        blocking(|| primary.kill_postmaster())?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    } else {
        let receiver = blocking(|| standby.pause_wal_receiver())?;
        // Read after the freeze: the receiver holds at most this (a walsender sends only WAL
        // its primary flushed, which is at most the write position).
        let at_freeze = blocking(|| primary.current_wal_lsn())?;
        tokio::time::sleep(lag).await;
        // A lower bound of the primary's position at the crash, which follows at once.
        let before_crash = blocking(|| primary.current_wal_lsn())?;
        let crashed_at = Instant::now();
        let crashed = blocking(|| primary.crash());
        // Killed, not thawed: a thawed receiver would read the WAL buffered in its socket.
        blocking(|| standby.kill_wal_receiver(receiver, Duration::from_secs(60)))?;
        crashed?;
        tokio::time::sleep(Duration::from_secs(2).saturating_sub(crashed_at.elapsed())).await;
        lagged = Some((at_freeze, before_crash));
    }
    blocking(|| standby.promote())?;
    let promoted = Instant::now();
    if let Some((at_freeze, before_crash)) = lagged {
        let replayed = blocking(|| standby.replayed_wal_lsn())?
            .context("the promoted standby reports no replayed WAL position")?;
        let written_frozen = blocking(|| standby.wal_bytes_between(&at_freeze, &before_crash))?;
        let past_freeze = blocking(|| standby.wal_bytes_between(&at_freeze, &replayed))?;
        let missing = blocking(|| standby.wal_bytes_between(&replayed, &before_crash))?;
        anyhow::ensure!(
            written_frozen > 0,
            "no WAL was written on the primary in the {lag:?} its standby's receiver was frozen (at {at_freeze} then, {before_crash} before the crash): nothing could lag"
        );
        anyhow::ensure!(
            past_freeze <= 0,
            "the standby did not lag: it replayed up to {replayed}, {past_freeze} bytes past the primary's WAL position when its receiver was frozen ({at_freeze}); the primary was at {before_crash} right before the crash ({missing} bytes missing)"
        );
        report.notes.push(format!(
            "the promoted standby {missing} bytes of WAL behind the primary before the crash, {written_frozen} written while its receiver was frozen"
        ));
    }
    Ok(promoted)
}

/// Kills of the sales projector in each run: during its catch-up, then during replays.
const SALES_CATCH_UP_KILLS: usize = 3;
const SALES_REPLAY_KILLS: usize = 3;
/// The sales projection's subscription and the lease of its rebuilds.
const SALES: &str = order_examples::sku_sales::NAME;
const SALES_REBUILD: &str = "sku_sales#rebuild";

/// The sales projector's settings in the fault stack: short leases (a killed instance or
/// replay blocks the next for at most 2 s), small pages (a catch-up takes many
/// transactions), only its sales projection.
fn sales_env() -> Vec<(&'static str, String)> {
    vec![
        ("ORDER_PROJECTOR_INSTANCE_ID", "faults-sales".into()),
        ("ORDER_PROJECTOR_SUBSCRIPTIONS", SALES.into()),
        ("ORDER_PROJECTOR_LEASE_TTL_MS", "2000".into()),
        ("ORDER_PROJECTOR_REPLAY_LEASE_TTL_MS", "2000".into()),
        ("ORDER_PROJECTOR_STANDBY_POLL_MS", "100".into()),
        ("ORDER_PROJECTOR_POLL_MS", "100".into()),
        ("SKU_SALES_PAGE", "5".into()),
    ]
}

const SALES_REPLAY: [&str; 7] = [
    "replay",
    "--projection",
    SALES,
    "--page",
    "20",
    "--progress",
    "none",
];

type Db = order_store::tokio_postgres::Client;

/// A subscription's checkpoint position, 0 before it exists.
async fn position(db: &Db, name: &str) -> anyhow::Result<i64> {
    Ok(db
        .query_opt(
            "SELECT checkpoint_position FROM orders.subscriptions WHERE name = $1",
            &[&name],
        )
        .await?
        .map_or(0, |r| r.get(0)))
}

/// Events of the log past a subscription's checkpoint (all of them before it exists).
async fn behind(db: &Db, name: &str) -> anyhow::Result<i64> {
    Ok(db
        .query_one(
            "SELECT count(*) FROM orders.events e
             WHERE NOT EXISTS (SELECT FROM orders.subscriptions s WHERE s.name = $1
                 AND (e.transaction_id, e.global_position)
                     <= (s.checkpoint_xid, s.checkpoint_position))",
            &[&name],
        )
        .await?
        .get(0))
}

/// Wait until nobody holds the lease `name` (a killed holder's runs out after its time).
async fn lease_free(db: &Db, name: &str) -> anyhow::Result<()> {
    let seconds: f64 = db
        .query_opt(
            "SELECT greatest(extract(epoch FROM lease_expires_at - now()), 0)::float8
             FROM orders.subscriptions WHERE name = $1 AND lease_expires_at IS NOT NULL",
            &[&name],
        )
        .await?
        .map_or(0.0, |r| r.get(0));
    if seconds > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(seconds.min(30.0)) + Duration::from_millis(50))
            .await;
    }
    Ok(())
}

/// Wait (at most 30 s) until `name`'s checkpoint moved from `before` or `process` exited;
/// whether it moved.
async fn moved(db: &Db, process: &mut Service, name: &str, before: i64) -> anyhow::Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if position(db, name).await? != before {
            return Ok(true);
        }
        if !process.running() {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(false)
}

/// `SALES_CATCH_UP_KILLS` kills of `sales-projector run` during its catch-up (it starts a
/// third into the load, behind the whole log; each kill at a random moment after it moved
/// its checkpoint), then, with an instance running and the load going on,
/// `SALES_REPLAY_KILLS` kills of `sales-projector replay` mid-way (a random moment after its
/// rebuild checkpoint moved). Returns the running instance.
async fn kill_sales_projector(
    stack: &Stack,
    binaries: &Binaries,
    report: &mut Report,
) -> anyhow::Result<Service> {
    let db = stack.db().await?;
    let env = sales_env();
    let mut run = stack.service("sales-projector", &binaries.sales_projector, &["run"], &env)?;
    let mut left = Vec::new();
    for _ in 0..SALES_CATCH_UP_KILLS {
        let before = position(&db, SALES).await?;
        run.start()?;
        anyhow::ensure!(
            moved(&db, &mut run, SALES, before).await?,
            "sales-projector run made no progress:\n{}",
            run.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(random_millis(0, 60))).await;
        anyhow::ensure!(
            run.running(),
            "sales-projector run exited:\n{}",
            run.log_tail()
        );
        run.kill().await;
        left.push(behind(&db, SALES).await?);
    }
    run.start()?;

    let mut replay = stack.service(
        "sales-projector-replay",
        &binaries.sales_projector,
        &SALES_REPLAY,
        &env,
    )?;
    let (mut killed, mut attempts) = (0, 0);
    while killed < SALES_REPLAY_KILLS {
        attempts += 1;
        anyhow::ensure!(
            attempts <= 4 * SALES_REPLAY_KILLS + 8,
            "only {killed} of {attempts} replays could be killed mid-way:\n{}",
            replay.log_tail()
        );
        // The last killed replay's rebuild lease runs out first (else this one is refused).
        lease_free(&db, SALES_REBUILD).await?;
        let before = position(&db, SALES_REBUILD).await?;
        replay.start()?;
        if !moved(&db, &mut replay, SALES_REBUILD, before).await? {
            replay.kill().await; // refused, or done before its checkpoint was seen
            continue;
        }
        tokio::time::sleep(Duration::from_millis(random_millis(0, 150))).await;
        if replay.running() {
            killed += 1;
        }
        replay.kill().await;
    }
    let mid = left.iter().filter(|&&n| n > 10).count();
    report.notes.push(format!(
        "sales-projector: {} catch-up kills, {mid} with over 10 events left (fewest {}); {killed} replays killed mid-way ({attempts} started)",
        left.len(),
        left.iter().min().unwrap_or(&0),
    ));
    Ok(run)
}

/// Rows in one query's result and not in the other's (as many times as they differ), as
/// text; at most 10.
async fn difference(db: &Db, left: &str, right: &str) -> anyhow::Result<Vec<String>> {
    let sql = format!(
        "SELECT d::text FROM (
             (({left}) EXCEPT ALL ({right})) UNION ALL (({right}) EXCEPT ALL ({left}))
         ) d LIMIT 10"
    );
    Ok(db
        .query(&sql, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// After the load: one replay to its end (after the last killed one's lease ran out), the
/// running sales projector caught up, and its tables compared with a fold of the log in SQL
/// (none of the projection's code): the day rows, the open orders, no shadow table left.
async fn settle_sales_projector(
    stack: &Stack,
    binaries: &Binaries,
    run: &mut Service,
    report: &mut Report,
) -> anyhow::Result<()> {
    let db = stack.db().await?;
    let mut replay = stack.service(
        "sales-projector-replay",
        &binaries.sales_projector,
        &SALES_REPLAY,
        &sales_env(),
    )?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        lease_free(&db, SALES_REBUILD).await?;
        replay.start()?;
        if replay.finish(Duration::from_secs(120)).await {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no sales replay succeeded in 120 s:\n{}",
            replay.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        anyhow::ensure!(
            run.running(),
            "sales-projector run died:\n{}",
            run.log_tail()
        );
        if behind(&db, SALES).await? == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "sales-projector run did not catch up in 60 s ({} events behind):\n{}",
            behind(&db, SALES).await?,
            run.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let daily = difference(
        &db,
        "SELECT day, sku, currency, units_sold, revenue_minor, units_cancelled,
             revenue_cancelled_minor FROM orders.sku_sales_daily",
        order_examples::sku_sales::DAILY_FROM_LOG_SQL,
    )
    .await?;
    anyhow::ensure!(
        daily.is_empty(),
        "sku_sales_daily differs from the fold of the log: {daily:?}"
    );
    let open = difference(
        &db,
        "SELECT order_id FROM orders.sku_sales_open_orders",
        order_examples::sku_sales::OPEN_ORDERS_FROM_LOG_SQL,
    )
    .await?;
    anyhow::ensure!(
        open.is_empty(),
        "sku_sales_open_orders differs from the log: {open:?}"
    );
    let shadows: Vec<String> = db
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'orders'
               AND (tablename LIKE '%\\_shadow' OR tablename LIKE '%\\_retired')",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    anyhow::ensure!(shadows.is_empty(), "shadow tables left: {shadows:?}");
    let rows: i64 = db
        .query_one("SELECT count(*) FROM orders.sku_sales_daily", &[])
        .await?
        .get(0);
    report
        .notes
        .push(format!("sku_sales equal to the fold ({rows} day rows)"));
    Ok(())
}

fn unreachable_scenario() -> anyhow::Result<()> {
    anyhow::bail!("hot streams and the payment outage run on their own")
}

/// The seed's bound: the breaker opens after 5 consecutive failures, within 10 seconds.
const BREAKER_OPENS_WITHIN: Duration = Duration::from_secs(10);

/// The worker's payment breaker state (0 closed, 1 half-open, 2 open), from its `/metrics`.
async fn payment_circuit(stack: &Stack) -> Option<u8> {
    let (code, body) = stack.worker.admin_get("/metrics").await.ok()?;
    if code != 200 {
        return None;
    }
    body.lines()
        .find(|line| {
            line.starts_with("order_worker_circuit_state{") && line.contains("provider=\"payment\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|v| v as u8)
}

/// The seed's "Payment Gateway Outage", scaled from 30 minutes to `options.outage`: the
/// payment provider (the HTTP stub) answers 503 while orders keep arriving. Expected: every
/// order acknowledged; the payment breaker opens within 10 s; payments resume by themselves
/// once the provider is back (the held calls go through, the breaker closes after its trial
/// calls); every order settles; nothing lost, nothing authorized twice, every provider effect
/// exactly once; the DLQ empty. Reported: when the breaker opened and closed, and the time
/// from recovery to each pending order's settlement.
async fn payment_outage(
    stack: &mut Stack,
    options: &LoadOptions,
    report: &mut Report,
) -> anyhow::Result<()> {
    let latency_ms = HttpProviders::default().latency_ms;
    let outage = options.outage.max(Duration::from_secs(1));
    let lead = options.duration / 3;
    let load_options = LoadOptions {
        // The load spans the outage: a third before it, two thirds after.
        duration: options.duration + outage,
        ..options.clone()
    };
    let endpoint = stack.endpoint();
    let load = tokio::spawn(async move { load::run(&endpoint, &load_options).await });
    tokio::time::sleep(lead).await;

    let stub = stack
        .stub
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the payment outage needs the provider stub"))?;
    let began = Instant::now();
    stub.set_faults(
        "payment",
        &order_provider_stub::FaultPlan {
            outage_seconds: outage.as_secs(),
            latency_ms,
            ..Default::default()
        },
    );
    let mut opened_after = None;
    while began.elapsed() < outage {
        if opened_after.is_none() && payment_circuit(stack).await == Some(2) {
            opened_after = Some(began.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered_at = std::time::SystemTime::now();
    let recovered = Instant::now();
    let mut closed_after = None;
    while recovered.elapsed() < Duration::from_secs(60) {
        if payment_circuit(stack).await == Some(0) {
            closed_after = Some(recovered.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let load = load.await??;
    report.failed_attempts += load.failed_attempts;
    report.slowest_failure_ms = report
        .slowest_failure_ms
        .max(load.slowest_failure.as_millis());
    anyhow::ensure!(
        load.abandoned.is_empty(),
        "{} orders were never acknowledged (orders must be accepted during the outage)",
        load.abandoned.len()
    );
    let mut audit = settle_and_audit(stack, &load, Duration::from_secs(180)).await?;

    // Orders pending at recovery: placed before it, settled after it.
    let db = stack.db().await?;
    let rows = db
        .query(
            "SELECT extract(epoch FROM max(recorded_at) FILTER (WHERE event_type IN ('OrderCompleted', 'OrderCancelled')) - $1::timestamptz)::float8, \
                    bool_or(event_type = 'OrderPlaced' AND recorded_at >= $1::timestamptz - make_interval(secs => $2::float8) AND recorded_at < $1::timestamptz) \
             FROM orders.events GROUP BY stream_id \
             HAVING min(recorded_at) FILTER (WHERE event_type = 'OrderPlaced') < $1::timestamptz",
            &[&recovered_at, &outage.as_secs_f64()],
        )
        .await?;
    let mut pending = Vec::new();
    let mut placed_during = 0;
    for row in &rows {
        let settled: Option<f64> = row.get(0);
        if let Some(after) = settled.filter(|s| *s > 0.0) {
            pending.push(after);
        }
        if row.get::<_, Option<bool>>(1) == Some(true) {
            placed_during += 1;
        }
    }
    pending.sort_by(f64::total_cmp);
    let p99 = pending
        .get(((pending.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    let max = pending.last().copied().unwrap_or(0.0);
    report.recovery_to_settled.extend(&pending);

    let effects = provider_effects(stack).await?;
    report.provider_mismatches += effects.mismatched + effects.doubled;
    audit.add_unsent(unsent_events(stack).await?);
    report.add(&audit);
    let opened = opened_after
        .ok_or_else(|| anyhow::anyhow!("the payment breaker never opened during the outage"))?;
    report.notes.push(format!(
        "breaker opened {:.1} s into the outage, closed {:.1} s after recovery; {placed_during} orders placed during the outage; {} pending at recovery settled after p99 {p99:.1} s, max {max:.1} s; {} provider effects, each exactly once ({} replays)",
        opened.as_secs_f64(),
        closed_after.map_or(f64::NAN, |d| d.as_secs_f64()),
        pending.len(),
        effects.total,
        effects.replays,
    ));
    anyhow::ensure!(
        opened <= BREAKER_OPENS_WITHIN,
        "the payment breaker opened {opened:?} into the outage (seed: within {BREAKER_OPENS_WITHIN:?})"
    );
    anyhow::ensure!(
        closed_after.is_some(),
        "the payment breaker did not close within 60 s of recovery"
    );
    anyhow::ensure!(
        effects.clean(),
        "provider effects differ from the log: {effects:?}"
    );
    anyhow::ensure!(
        audit.dead_letters == 0,
        "{} messages dead-lettered",
        audit.dead_letters
    );
    anyhow::ensure!(audit.clean(), "audit failed: {audit:?}");
    Ok(())
}

/// 32 clients refund 1.00 at a time from the same 4 orders of 30.00 each: every refund that
/// is acknowledged is in the log, the refunds never exceed the capture, and retries stay
/// bounded (ABORTED after the service's re-decide limit, retried by the client).
async fn hot_streams(stack: &mut Stack, report: &mut Report) -> anyhow::Result<()> {
    // The saga must not move the orders on while they are refunded.
    stack.worker.terminate(Duration::from_secs(10)).await;
    let channel = Channel::from_shared(stack.endpoint())?.connect().await?;
    let mut client = OrderServiceClient::new(channel.clone());
    let money = |amount_minor| {
        Some(pb::Money {
            currency: "EUR".into(),
            amount_minor,
        })
    };
    let mut orders = Vec::new();
    for _ in 0..4 {
        let order = Uuid::new_v4().to_string();
        let id = || Uuid::new_v4().to_string();
        let mut place = load::place_request(
            Uuid::parse_str(&order)?,
            Uuid::new_v4(),
            0,
            &LoadOptions::default(),
        );
        place.lines = vec![pb::OrderLine {
            sku: "HOT-1".into(),
            quantity: 1,
            unit_price: money(3000),
        }];
        client.place_order(place).await?;
        client
            .reserve_inventory(pb::ReserveInventoryRequest {
                command_id: id(),
                order_id: order.clone(),
                expected_version: None,
                reservation_id: "r".into(),
            })
            .await?;
        client
            .authorize_payment(pb::AuthorizePaymentRequest {
                command_id: id(),
                order_id: order.clone(),
                expected_version: None,
                payment_id: "p".into(),
                amount: money(3000),
            })
            .await?;
        client
            .confirm_order(pb::ConfirmOrderRequest {
                command_id: id(),
                order_id: order.clone(),
                expected_version: None,
            })
            .await?;
        orders.push(order);
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..32)
        .map(|c| {
            let (channel, order) = (channel.clone(), orders[c % orders.len()].clone());
            tokio::spawn(async move {
                let mut client = OrderServiceClient::new(channel);
                let (mut refunded, mut aborted) = (Vec::new(), 0u64);
                loop {
                    let command_id = Uuid::new_v4().to_string();
                    let request = pb::RefundPaymentRequest {
                        command_id: command_id.clone(),
                        order_id: order.clone(),
                        expected_version: None,
                        amount: Some(pb::Money {
                            currency: "EUR".into(),
                            amount_minor: 100,
                        }),
                    };
                    match client.refund_payment(request).await {
                        Ok(_) => refunded.push(command_id),
                        Err(status) if status.code() == tonic::Code::Aborted => aborted += 1,
                        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                            return (order, refunded, aborted, None);
                        }
                        Err(status) => return (order, refunded, aborted, Some(status)),
                    }
                }
            })
        })
        .collect();
    let mut acknowledged = std::collections::BTreeMap::<String, usize>::new();
    let mut commands = Vec::new();
    let mut aborted = 0;
    for task in tasks {
        let (order, refunds, conflicts, unexpected) = task.await?;
        if let Some(status) = unexpected {
            anyhow::bail!("a refund failed unexpectedly: {status:?}");
        }
        *acknowledged.entry(order).or_default() += refunds.len();
        commands.extend(refunds);
        aborted += conflicts;
    }
    let db = stack.db().await?;
    let mut lost = 0;
    let mut duplicated = 0;
    for (order, count) in &acknowledged {
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE event_type = 'PaymentRefunded'), coalesce(sum((payload->'amount'->>'amount_minor')::int8) FILTER (WHERE event_type = 'PaymentRefunded'), 0)::int8 FROM orders.events WHERE stream_id = $1::text::uuid",
                &[order],
            )
            .await
            .context("reading refunds")?;
        let (events, refunded): (i64, i64) = (row.get(0), row.get(1));
        lost += count.saturating_sub(events as usize);
        duplicated += (events as usize).saturating_sub(*count);
        if refunded > 3000 {
            duplicated += 1;
        }
    }
    let commands: Vec<Uuid> = commands
        .iter()
        .filter_map(|c| Uuid::parse_str(c).ok())
        .collect();
    let recorded: i64 = db
        .query_one(
            "SELECT count(*) FROM orders.commands WHERE command_id = ANY($1)",
            &[&commands],
        )
        .await?
        .get(0);
    lost += commands.len().saturating_sub(recorded as usize);
    let mut audit = Audit {
        acknowledged: commands.len(),
        lost,
        duplicated,
        skipped: settle_projections(stack, Duration::from_secs(60)).await?,
        recovery_seconds: started.elapsed().as_secs_f64(),
        ..Audit::default()
    };
    audit.add_unsent(unsent_events(stack).await?);
    report.add(&audit);
    report.notes.push(format!(
        "{} refunds acknowledged for 120 possible, {aborted} ABORTED answers retried",
        commands.len()
    ));
    anyhow::ensure!(
        commands.len() == 120,
        "expected exactly 120 refunds of 1.00 from 4 x 30.00, got {}",
        commands.len()
    );
    anyhow::ensure!(audit.clean(), "audit failed: {audit:?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::condense;

    fn strings(notes: &[&str]) -> Vec<String> {
        notes.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn notes_that_differ_in_numbers_become_one_with_ranges() {
        let notes = strings(&[
            "4 kills",
            "order-grpc reported not ready 1.6 s after the stop",
            "3 kills",
            "order-grpc reported not ready 1.6 s after the stop",
            "5 kills",
            "still ready 5 s after the stop",
        ]);
        assert_eq!(
            condense(&notes),
            [
                "3-5 kills (3 runs)",
                "order-grpc reported not ready 1.6 s after the stop (2 runs)",
                "still ready 5 s after the stop",
            ]
        );
    }

    #[test]
    fn several_numbers_in_a_note_each_get_their_range() {
        let notes = strings(&[
            "120 refunds acknowledged for 120 possible, 49 ABORTED answers retried",
            "120 refunds acknowledged for 120 possible, 42 ABORTED answers retried",
            "118 refunds acknowledged for 120 possible, 52 ABORTED answers retried",
        ]);
        assert_eq!(
            condense(&notes),
            [
                "118-120 refunds acknowledged for 120 possible, 42-52 ABORTED answers retried (3 runs)"
            ]
        );
    }
}

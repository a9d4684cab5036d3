//! The restore drill: point-in-time recovery of the event log after a destructive mistake,
//! rehearsed end to end with PostgreSQL's own tools, and audited.
//!
//! A stack of the real services runs on a cluster that archives its WAL. The drill takes a
//! base backup (the nightly backup), puts load on the stack, records a target time mid-load,
//! then does damage after it: a buggy client appends wrong events through the API, and the
//! read table is dropped. Then, as the runbook says (`docs/operations.md`): stop the services,
//! restore the base backup into a fresh cluster and replay the archived WAL up to the target,
//! re-point the services at it, rebuild the read model from the log (`order-projector
//! replay`), send the log to SQS again (`order-projector republish`, same deduplication ids),
//! start everything and let it settle. Each step is timed (the RTO), and the audit checks the
//! restored log event for event against the original's commits up to the target, the read
//! model against a fold of the log, that nothing acknowledged before the target is missing,
//! that none of the damage survived, and that every order settles again.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use order_proto::v1 as pb;
use order_proto::v1::order_service_client::OrderServiceClient;
use order_testkit::pg::PrivateCluster;
use order_testkit::replication::ServerDir;
use serde::Serialize;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::audit::{Audit, settle_and_audit, unsent_events};
use crate::load::{self, LoadOptions, LoadReport};
use crate::stack::{Binaries, Stack, StackOptions};

/// How much load, and how much damage.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub load: LoadOptions,
    /// Commands the buggy client sends after the target (half cancellations of real orders,
    /// half orders nobody placed).
    pub buggy_commands: usize,
    /// How long the stack may take to settle after the restore.
    pub settle_within: Duration,
}

impl Default for DrillOptions {
    fn default() -> Self {
        Self {
            load: LoadOptions {
                rate: 20,
                duration: Duration::from_secs(15),
                ..LoadOptions::default()
            },
            buggy_commands: 40,
            settle_within: Duration::from_secs(120),
        }
    }
}

/// One timed step of the recovery.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub seconds: f64,
}

/// What the drill measured and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrillReport {
    /// The recovery target (the database's clock).
    pub target_time: String,
    /// Before the incident: the base backup.
    pub base_backup_seconds: f64,
    /// The recovery, from the moment the damage is noticed until the audit is clean.
    pub steps: Vec<Step>,
    pub rto_seconds: f64,
    /// Events the original had committed up to the target.
    pub events_at_target: usize,
    /// Of those, missing from the restored log, or different there.
    pub events_missing_or_different: usize,
    /// Events in the restored log the original had not committed by the target.
    pub events_beyond_target: usize,
    /// Commands acknowledged before the target.
    pub acknowledged_before_target: usize,
    /// Commands acknowledged after the target: absent from the restored log by design (the
    /// price of the restore point; callers must send them again).
    pub acknowledged_after_target: usize,
    /// Of those acknowledged after the target, how many the restored log has anyway
    /// (committed at or before the target, acknowledged just after it).
    pub acknowledged_after_target_kept: usize,
    /// Buggy commands acknowledged, and their events found in the restored log (must be 0).
    pub buggy_acknowledged: usize,
    pub buggy_events_restored: usize,
    /// Whether the dropped read table exists again in the restored database.
    pub read_table_restored: bool,
    /// The audit after the restart (acknowledged before the target: lost, duplicated,
    /// skipped, unsettled, dead letters).
    pub audit: Audit,
}

impl DrillReport {
    /// The restore gave back exactly the log up to the target, no damage, and a stack that
    /// settles with nothing lost, doubled or skipped.
    pub fn clean(&self) -> bool {
        self.events_at_target > 0
            && self.events_missing_or_different == 0
            && self.events_beyond_target == 0
            && self.buggy_events_restored == 0
            && self.read_table_restored
            && self.audit.clean()
            && self.audit.dead_letters == 0
    }

    /// The report as text for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = |ok: bool| if ok { "ok" } else { "FAILED" };
        let _ = writeln!(out, "restore drill: target time {}", self.target_time);
        let _ = writeln!(
            out,
            "  base backup (before the incident): {:.1} s",
            self.base_backup_seconds
        );
        let _ = writeln!(out, "\nrecovery steps (RTO):");
        for step in &self.steps {
            let _ = writeln!(out, "  {:<64} {:>7.1} s", step.name, step.seconds);
        }
        let _ = writeln!(
            out,
            "  {:<64} {:>7.1} s",
            "total, from the damage noticed to a clean audit", self.rto_seconds
        );
        let _ = writeln!(out, "\naudit:");
        let _ = writeln!(
            out,
            "  restored log = the original's commits up to the target: {} events, {} missing or different, {} beyond the target: {}",
            self.events_at_target,
            self.events_missing_or_different,
            self.events_beyond_target,
            verdict(
                self.events_at_target > 0
                    && self.events_missing_or_different == 0
                    && self.events_beyond_target == 0
            )
        );
        let _ = writeln!(
            out,
            "  damage after the target undone: {} buggy commands acknowledged, {} of their events restored, the dropped read table {}: {}",
            self.buggy_acknowledged,
            self.buggy_events_restored,
            if self.read_table_restored {
                "is back"
            } else {
                "is MISSING"
            },
            verdict(self.buggy_events_restored == 0 && self.read_table_restored)
        );
        let a = &self.audit;
        let _ = writeln!(
            out,
            "  commands acknowledged before the target: {}: lost {}, duplicated {}, unsettled {}: {}",
            self.acknowledged_before_target,
            a.lost,
            a.duplicated,
            a.unsettled,
            verdict(a.lost == 0 && a.duplicated == 0 && a.unsettled == 0)
        );
        let _ = writeln!(
            out,
            "  read model = fold of the restored log, checkpoints at the head, every event in SQS: {} differences ({} not in SQS): {}",
            a.skipped,
            a.unsent,
            verdict(a.skipped == 0)
        );
        let _ = writeln!(
            out,
            "  dead letters: {}: {}",
            a.dead_letters,
            verdict(a.dead_letters == 0)
        );
        let _ = writeln!(
            out,
            "  commands acknowledged after the target: {} (not restored, by design: {} of them committed by the target and kept)",
            self.acknowledged_after_target, self.acknowledged_after_target_kept
        );
        let _ = writeln!(
            out,
            "\n{}",
            if self.clean() {
                "restore drill: PASSED"
            } else {
                "restore drill: FAILED"
            }
        );
        out
    }
}

/// One event as compared between the original and the restored log.
type EventRow = (i64, Uuid, Uuid, i64, String, String);

const EVENT_ROW_SQL: &str = "SELECT global_position, event_id, stream_id, stream_version, event_type, payload::text FROM orders.events";

async fn event_rows(
    client: &order_store::tokio_postgres::Client,
    condition: &str,
    params: &[&(dyn order_store::tokio_postgres::types::ToSql + Sync)],
) -> anyhow::Result<BTreeSet<EventRow>> {
    Ok(client
        .query(
            &format!("{EVENT_ROW_SQL} {condition} ORDER BY global_position"),
            params,
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect())
}

/// Time one step.
struct Clock {
    steps: Vec<Step>,
}

impl Clock {
    async fn step<T>(
        &mut self,
        name: &str,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        eprintln!("[restore-drill] {name}");
        let started = Instant::now();
        let result = work.await.with_context(|| name.to_owned())?;
        self.steps.push(Step {
            name: name.to_owned(),
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(result)
    }
}

/// Run the drill once, on a stack of its own.
pub async fn run(binaries: &Binaries, options: &DrillOptions) -> anyhow::Result<DrillReport> {
    let stack_options = StackOptions {
        archive: true,
        ..StackOptions::default()
    };
    eprintln!("[restore-drill] starting the services on a cluster that archives its WAL");
    let mut stack = Stack::start(binaries, &stack_options).await?;
    let result = drill(&mut stack, options).await;
    if result.is_err() {
        for service in [&stack.grpc, &stack.projector, &stack.worker] {
            eprintln!("--- {} log ---\n{}", service.name, service.log_tail());
        }
    }
    stack.stop().await;
    result
}

async fn drill(stack: &mut Stack, options: &DrillOptions) -> anyhow::Result<DrillReport> {
    let mut report = DrillReport::default();
    let archive = stack
        .archive
        .as_ref()
        .context("the drill needs a stack that archives its WAL")?
        .path()
        .to_path_buf();

    eprintln!("[restore-drill] base backup (pg_basebackup)");
    let backup = ServerDir::new().map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    {
        let cluster = &stack.cluster;
        let into = backup.path().to_path_buf();
        tokio::task::block_in_place(|| cluster.base_backup(&into)).map_err(anyhow::Error::msg)?;
    }
    report.base_backup_seconds = started.elapsed().as_secs_f64();

    // Load, and the target time two thirds into it.
    eprintln!(
        "[restore-drill] load: {} orders/s for {} s; the target time is recorded two thirds in",
        options.load.rate,
        options.load.duration.as_secs()
    );
    let endpoint = stack.endpoint();
    let load = {
        let load = options.load.clone();
        tokio::spawn(async move { load::run(&endpoint, &load).await })
    };
    tokio::time::sleep(options.load.duration * 2 / 3).await;
    let db = stack.db().await?;
    let before_target = Instant::now();
    report.target_time = db
        .query_one("SELECT clock_timestamp()::text", &[])
        .await?
        .get(0);
    let load = load.await??;
    anyhow::ensure!(
        load.abandoned.is_empty(),
        "{} commands of the load were never acknowledged",
        load.abandoned.len()
    );

    // The damage, after the target: a buggy client, then a dropped read table.
    eprintln!("[restore-drill] damage after the target: a buggy client, a dropped read table");
    report.buggy_acknowledged = buggy_client(stack, &load, options.buggy_commands).await?;
    db.batch_execute("DROP TABLE orders.order_summaries CASCADE")
        .await
        .context("dropping the read table")?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // What the original committed up to the target (commit timestamps, as recovery judges).
    let original = event_rows(
        &db,
        "WHERE pg_xact_commit_timestamp(xmin) <= $1::text::timestamptz",
        &[&report.target_time],
    )
    .await?;
    report.events_at_target = original.len();

    // The recovery: the RTO clock runs from here.
    let noticed = Instant::now();
    let mut clock = Clock { steps: Vec::new() };
    clock
        .step("stop the services", async {
            for service in [&mut stack.worker, &mut stack.projector, &mut stack.grpc] {
                service.terminate(Duration::from_secs(10)).await;
            }
            Ok(())
        })
        .await?;
    clock
        .step("archive the WAL written so far (pg_switch_wal)", async {
            let segment: String = db
                .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
                .await?
                .get(0);
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let archived: Option<String> = db
                    .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
                    .await?
                    .get(0);
                if archived.is_some_and(|a| a >= segment) {
                    return Ok(());
                }
                anyhow::ensure!(Instant::now() < deadline, "segment {segment} not archived");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await?;
    let target = report.target_time.clone();
    let restored = clock
        .step(
            "restore the base backup and replay the WAL to the target",
            async {
                let backup = backup.path().to_path_buf();
                tokio::task::block_in_place(|| {
                    PrivateCluster::restore_to_time(
                        &backup,
                        &archive,
                        &target,
                        Duration::from_secs(600),
                    )
                })
                .map_err(anyhow::Error::msg)
            },
        )
        .await?;
    let restored_db = order_testkit::pg::try_connect(&restored.url("orders"))
        .await
        .map_err(anyhow::Error::msg)?;
    let restored_rows = event_rows(&restored_db, "", &[]).await?;
    report.read_table_restored = restored_db
        .query_one(
            "SELECT to_regclass('orders.order_summaries') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    report.events_missing_or_different = original.difference(&restored_rows).count();
    report.events_beyond_target = restored_rows.difference(&original).count();
    let old = stack.repoint_database(restored);
    // Messages of the abandoned timeline must not reach the worker: a new queue, as after a
    // purge (a real restore outlasts SQS's 5-minute deduplication window, which would
    // otherwise drop the republished messages; the emulator's window is by count).
    let queue = format!("restored{}", Uuid::new_v4().simple());
    clock
        .step(
            "re-point the services (database, queue) and start order-grpc",
            async {
                stack.repoint_queue(&queue).await;
                stack.grpc.start()?;
                stack.grpc.wait_ready(Duration::from_secs(60)).await
            },
        )
        .await?;
    clock
        .step("rebuild the read model (order-projector replay)", async {
            let ok = stack
                .projector
                .run_once(&["replay", "--projection", "read_model", "--progress", "none"])
                .await?;
            anyhow::ensure!(ok, "order-projector replay failed");
            Ok(())
        })
        .await?;
    clock
        .step(
            "republish the log to SQS (order-projector republish --from 1)",
            async {
                let ok = stack
                    .projector
                    .run_once(&["republish", "--from", "1"])
                    .await?;
                anyhow::ensure!(ok, "order-projector republish failed");
                Ok(())
            },
        )
        .await?;
    clock
        .step("start order-projector and order-worker", async {
            for service in [&mut stack.projector, &mut stack.worker] {
                service.start()?;
                service.wait_ready(Duration::from_secs(60)).await?;
            }
            Ok(())
        })
        .await?;

    // What had to survive: everything acknowledged before the target.
    let (before, after): (Vec<_>, Vec<_>) = load
        .acknowledged
        .iter()
        .cloned()
        .partition(|a| a.at < before_target);
    report.acknowledged_before_target = before.len();
    report.acknowledged_after_target = after.len();
    let restored_positions: BTreeSet<i64> = restored_rows.iter().map(|r| r.0).collect();
    report.acknowledged_after_target_kept = after
        .iter()
        .filter(|a| restored_positions.contains(&(a.global_position as i64)))
        .count();
    let must_survive = LoadReport {
        acknowledged: before,
        ..LoadReport::default()
    };
    let audit = clock
        .step(
            "settle: every order of the restored log completed or cancelled",
            async {
                let audit = settle_and_audit(stack, &must_survive, options.settle_within).await?;
                anyhow::ensure!(audit.clean(), "not settled: {audit:?}");
                Ok(audit)
            },
        )
        .await;
    report.rto_seconds = noticed.elapsed().as_secs_f64();
    report.steps = clock.steps;
    let mut audit = match audit {
        Ok(audit) => audit,
        Err(error) => {
            eprintln!("[restore-drill] {error:#}");
            settle_and_audit(stack, &must_survive, Duration::ZERO).await?
        }
    };
    audit.add_unsent(unsent_events(stack).await?);
    report.audit = audit;

    let restored_db = stack.db().await?;
    report.buggy_events_restored = restored_db
        .query_one(
            "SELECT count(*) FROM orders.events
             WHERE payload::text LIKE '%BUGGY-%' OR payload::text LIKE '%buggy client%'",
            &[],
        )
        .await?
        .get::<_, i64>(0) as usize;
    drop(old);
    Ok(report)
}

/// After the target: cancel real orders and place orders nobody asked for, through the API,
/// as a client with a bug would. Returns how many were acknowledged.
async fn buggy_client(stack: &Stack, load: &LoadReport, commands: usize) -> anyhow::Result<usize> {
    let channel = Channel::from_shared(stack.endpoint())?.connect().await?;
    let mut client = OrderServiceClient::new(channel);
    let mut acknowledged = 0;
    for (n, ack) in load.acknowledged.iter().take(commands / 2).enumerate() {
        let cancelled = client
            .cancel_order(pb::CancelOrderRequest {
                command_id: Uuid::new_v4().to_string(),
                order_id: ack.order_id.to_string(),
                expected_version: None,
                reason: format!("buggy client {n}"),
            })
            .await;
        // A finished order refuses (FAILED_PRECONDITION): the bug only hits the others.
        acknowledged += usize::from(cancelled.is_ok());
    }
    for n in 0..commands - commands / 2 {
        let mut place = load::place_request(
            Uuid::new_v4(),
            Uuid::new_v4(),
            n as u64,
            &LoadOptions::default(),
        );
        for (i, line) in place.lines.iter_mut().enumerate() {
            line.sku = format!("BUGGY-{n}-{i}");
        }
        client.place_order(place).await?;
        acknowledged += 1;
    }
    Ok(acknowledged)
}

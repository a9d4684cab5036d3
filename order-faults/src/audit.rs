//! The audit after a fault: nothing acknowledged lost, nothing applied twice, no event
//! skipped by a subscriber, every order settled.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use order_domain::order::Status;
use order_domain::{Aggregate, EventSchema, Order, OrderEvent};
use serde::Serialize;
use uuid::Uuid;

use crate::load::LoadReport;
use crate::stack::Stack;

/// The figures of one audited run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Audit {
    pub acknowledged: usize,
    /// Acknowledged commands with no record in the log.
    pub lost: usize,
    /// Orders with an effect recorded twice (e.g. two InventoryReserved).
    pub duplicated: usize,
    /// Read-model rows that differ from a fold of the log, plus subscriptions that did not
    /// reach the head of the log.
    pub skipped: usize,
    /// Acknowledged orders not Completed or Cancelled after the settle time.
    pub unsettled: usize,
    /// Messages in the dead-letter queue.
    pub dead_letters: usize,
    /// From the end of the fault until everything settled.
    pub recovery_seconds: f64,
}

impl Audit {
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.skipped == 0 && self.unsettled == 0
    }
}

/// Effects that happen at most once in an order's life.
const ONCE: &[&str] = &[
    "OrderPlaced",
    "InventoryReserved",
    "InventoryUnavailable",
    "PaymentAuthorized",
    "PaymentFailed",
    "OrderConfirmed",
    "FulfillmentStarted",
    "OrderShipped",
    "OrderDelivered",
    "OrderCompleted",
    "CancellationRequested",
    "InventoryReleased",
    "PaymentVoided",
    "OrderCancelled",
];

struct Snapshot {
    orders: BTreeMap<Uuid, (Order, u64, BTreeMap<String, usize>)>,
    recorded_commands: BTreeSet<Uuid>,
    read_model: BTreeMap<Uuid, (String, i64, i64, u64)>,
    head: i64,
    checkpoints: Vec<i64>,
}

async fn snapshot(stack: &Stack, commands: &[Uuid]) -> anyhow::Result<Snapshot> {
    let db = stack.db().await?;
    let mut orders: BTreeMap<Uuid, (Order, u64, BTreeMap<String, usize>)> = BTreeMap::new();
    for row in db
        .query("SELECT stream_id, stream_version, event_type, schema_version, payload FROM orders.events ORDER BY stream_id, stream_version", &[])
        .await?
    {
        let stream: Uuid = row.get(0);
        let event_type: String = row.get(2);
        let event = OrderEvent::decode(&event_type, row.get::<_, i16>(3) as u16, row.get(4))?;
        let entry = orders.entry(stream).or_insert_with(|| (Order::default(), 0, BTreeMap::new()));
        entry.0.evolve(&event);
        entry.1 = row.get::<_, i64>(1) as u64;
        *entry.2.entry(event.event_type().to_owned()).or_default() += 1;
    }
    let recorded_commands = db
        .query(
            "SELECT command_id FROM orders.commands WHERE command_id = ANY($1)",
            &[&commands],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let read_model = db
        .query("SELECT order_id, status, total_minor, refunded_minor, stream_version FROM orders.order_summaries", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get::<_, i64>(4) as u64)))
        .collect();
    let head: i64 = db
        .query_one(
            "SELECT coalesce(max(global_position), 0) FROM orders.events",
            &[],
        )
        .await?
        .get(0);
    let checkpoints = db
        .query("SELECT checkpoint_position FROM orders.subscriptions WHERE name IN ('read_model', 'sqs_publisher')", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Snapshot {
        orders,
        recorded_commands,
        read_model,
        head,
        checkpoints,
    })
}

fn judge(snapshot: &Snapshot, load: &LoadReport) -> Audit {
    let mut audit = Audit {
        acknowledged: load.acknowledged.len(),
        ..Audit::default()
    };
    for ack in &load.acknowledged {
        let placed = snapshot
            .orders
            .get(&ack.order_id)
            .map_or(0, |o| o.2.get("OrderPlaced").copied().unwrap_or(0));
        if !snapshot.recorded_commands.contains(&ack.command_id) || placed != 1 {
            audit.lost += 1;
        }
        let settled = snapshot
            .orders
            .get(&ack.order_id)
            .and_then(|o| o.0.status())
            .is_some_and(Status::is_terminal);
        if !settled {
            audit.unsettled += 1;
        }
    }
    audit.duplicated = snapshot
        .orders
        .values()
        .filter(|(_, _, counts)| {
            ONCE.iter()
                .any(|t| counts.get(*t).copied().unwrap_or(0) > 1)
        })
        .count();
    let mut skipped = 0;
    for (id, (order, version, _)) in &snapshot.orders {
        let Some(details) = order.details() else {
            continue;
        };
        let expected = (
            details.status().as_str().to_owned(),
            details.total().amount_minor(),
            details.refunded().amount_minor(),
            *version,
        );
        if snapshot.read_model.get(id) != Some(&expected) {
            skipped += 1;
        }
    }
    skipped += snapshot
        .checkpoints
        .iter()
        .filter(|c| **c != snapshot.head)
        .count();
    if snapshot.checkpoints.len() < 2 {
        skipped += 2 - snapshot.checkpoints.len();
    }
    audit.skipped = skipped;
    audit
}

/// Wait (up to `within`) until the audit is clean, then report it; `recovery` starts now.
pub async fn settle_and_audit(
    stack: &Stack,
    load: &LoadReport,
    within: Duration,
) -> anyhow::Result<Audit> {
    let started = Instant::now();
    let commands: Vec<Uuid> = load.acknowledged.iter().map(|a| a.command_id).collect();
    let mut audit = loop {
        let audit = judge(&snapshot(stack, &commands).await?, load);
        if audit.clean() || started.elapsed() > within {
            break audit;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    audit.recovery_seconds = started.elapsed().as_secs_f64();
    audit.dead_letters = dead_letters(stack).await;
    Ok(audit)
}

async fn dead_letters(stack: &Stack) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attributes = stack
        .emulator
        .client()
        .get_queue_attributes()
        .queue_url(&stack.queue.dlq_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await;
    attributes
        .ok()
        .and_then(|a| {
            a.attributes().and_then(|m| {
                m.get(&QueueAttributeName::ApproximateNumberOfMessages)
                    .cloned()
            })
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

//! The audit after a fault: nothing acknowledged lost, nothing applied twice, no event
//! skipped by a subscriber, every order settled.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context;
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
    /// Read-model rows that differ from a fold of the log, subscriptions that did not reach
    /// the head of the log, and events that never reached SQS ([`unsent_events`]).
    pub skipped: usize,
    /// Of `skipped`: events of the log SQS never received.
    pub unsent: usize,
    /// Of `skipped`: rows of the read model (`order_summaries`) whose order has no event in
    /// the log (a page applied from a primary whose events were then lost would leave them).
    pub read_model_extra: usize,
    /// Acknowledged orders in the log that are not Completed or Cancelled after the settle
    /// time (an acknowledged order missing from the log counts as lost, not here).
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
        let Some((order, _, _)) = snapshot.orders.get(&ack.order_id) else {
            continue;
        };
        if !order.status().is_some_and(Status::is_terminal) {
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
    // The other way: a row for an order the log does not hold is no fold of the log.
    let extra = snapshot
        .read_model
        .keys()
        .filter(|id| !snapshot.orders.contains_key(*id))
        .count();
    audit.read_model_extra = extra;
    skipped += extra;
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
    audit.dead_letters = dead_letters(stack).await?;
    Ok(audit)
}

/// Wait (up to `within`) until both subscriptions reached the head of the log and the read
/// model equals a fold of the log; the number of differences left.
pub async fn settle_projections(stack: &Stack, within: Duration) -> anyhow::Result<usize> {
    let started = Instant::now();
    loop {
        let skipped = judge(&snapshot(stack, &[]).await?, &LoadReport::default()).skipped;
        if skipped == 0 || started.elapsed() > within {
            return Ok(skipped);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Events of the log that never reached SQS, found by their deduplication ids alone. With the
/// worker stopped (so that the queue holds still), send one placeholder message per event of
/// the log with the event's message group and deduplication id: SQS drops a message whose
/// deduplication id it has seen (within 5 minutes; fauxqs: the last 10,000 per queue), so
/// every message the queue takes as new is an event the projector never published.
/// Stops the worker.
pub async fn unsent_events(stack: &mut Stack) -> anyhow::Result<usize> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    stack.worker.terminate(Duration::from_secs(15)).await;
    let sqs = stack.emulator.client();
    let queue_url = stack.queue.queue_url.clone();
    let before = queue_depth(&sqs, &queue_url).await?;
    let db = stack.db().await?;
    let events: Vec<(Uuid, Uuid)> = db
        .query(
            "SELECT event_id, stream_id FROM orders.events ORDER BY global_position",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for chunk in events.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, (event_id, stream_id))| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body("audit: a duplicate of an event already sent")
                    .message_group_id(stream_id.to_string())
                    .message_deduplication_id(event_id.to_string())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = sqs
            .send_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        anyhow::ensure!(
            output.failed().is_empty(),
            "the audit's own messages were refused: {:?}",
            output.failed()
        );
    }
    let after = queue_depth(&sqs, &queue_url).await?;
    Ok(after.saturating_sub(before))
}

/// Messages in the queue: visible, in flight and delayed.
async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> anyhow::Result<usize> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let output = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    let attributes = output.attributes().cloned().unwrap_or_default();
    let mut depth = 0;
    for name in [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
        A::ApproximateNumberOfMessagesDelayed,
    ] {
        depth += attributes
            .get(&name)
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
    }
    Ok(depth)
}

impl Audit {
    /// Count events SQS never received as skipped.
    pub fn add_unsent(&mut self, unsent: usize) {
        self.unsent += unsent;
        self.skipped += unsent;
    }
}

/// Messages in the dead-letter queue. An unanswered or unreadable GetQueueAttributes is an
/// error, never taken for an empty queue.
async fn dead_letters(stack: &Stack) -> anyhow::Result<usize> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let output = stack
        .emulator
        .client()
        .get_queue_attributes()
        .queue_url(&stack.queue.dlq_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "counting the dead letters: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })?;
    let count = output
        .attributes()
        .and_then(|m| m.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .context(
            "counting the dead letters: the DLQ's attributes have no ApproximateNumberOfMessages",
        )?;
    count.parse().with_context(|| {
        format!("counting the dead letters: ApproximateNumberOfMessages is {count:?}")
    })
}

/// What the providers did (as the HTTP stub counted it) against what the log recorded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EffectsAudit {
    /// Orders in the log.
    pub orders: usize,
    /// Order/effect pairs where the stub's count differs from the log's (an effect done
    /// without its event, or an event without its effect).
    pub mismatched: usize,
    /// Order/effect pairs the stub counted more than once.
    pub doubled: usize,
    /// Effects counted by the stub: reservations, authorizations, captures, voids, refunds,
    /// releases, shipments.
    pub total: usize,
    /// Answers the stub repeated for a known idempotency key.
    pub replays: u64,
    /// The first few mismatches, for the report.
    pub examples: Vec<String>,
}

impl EffectsAudit {
    /// Every effect exactly as often as the log says, none twice.
    pub fn clean(&self) -> bool {
        self.mismatched == 0 && self.doubled == 0
    }
}

/// Compare the stub's effects per order with the log: each provider effect exactly once for
/// each event that records it (reservation: InventoryReserved, authorization:
/// PaymentAuthorized, capture: OrderConfirmed, void: PaymentVoided, refund: PaymentRefunded,
/// release: InventoryReleased, shipment: OrderShipped).
pub async fn provider_effects(stack: &Stack) -> anyhow::Result<EffectsAudit> {
    let Some(stub) = &stack.stub else {
        anyhow::bail!("the stack runs no provider stub");
    };
    let effects = stub.effects();
    let db = stack.db().await?;
    let mut log: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for row in db
        .query(
            "SELECT stream_id::text, event_type, count(*) FROM orders.events GROUP BY 1, 2",
            &[],
        )
        .await?
    {
        let count: i64 = row.get(2);
        log.entry(row.get(0))
            .or_default()
            .insert(row.get(1), usize::try_from(count).unwrap_or(0));
    }
    let kinds: [(&str, &BTreeMap<String, u32>); 7] = [
        ("InventoryReserved", &effects.reservations),
        ("InventoryReleased", &effects.releases),
        ("PaymentAuthorized", &effects.authorizations),
        ("OrderConfirmed", &effects.captures),
        ("PaymentVoided", &effects.voids),
        ("PaymentRefunded", &effects.refunds),
        ("OrderShipped", &effects.shipments),
    ];
    let mut audit = EffectsAudit {
        orders: log.len(),
        doubled: effects.doubled(),
        replays: effects.replays,
        ..EffectsAudit::default()
    };
    let mut orders: BTreeSet<&String> = log.keys().collect();
    for (_, counted) in &kinds {
        orders.extend(counted.keys());
        audit.total += counted.values().map(|n| *n as usize).sum::<usize>();
    }
    for order in orders {
        for (event, counted) in &kinds {
            let in_log = log
                .get(order)
                .and_then(|types| types.get(*event))
                .copied()
                .unwrap_or(0);
            let done = counted.get(order).copied().unwrap_or(0) as usize;
            if in_log != done {
                audit.mismatched += 1;
                if audit.examples.len() < 5 {
                    audit.examples.push(format!(
                        "order {order}: {event} x{in_log} in the log, x{done} at the provider"
                    ));
                }
            }
        }
    }
    Ok(audit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(read_model: &[Uuid]) -> Snapshot {
        Snapshot {
            orders: BTreeMap::new(),
            recorded_commands: BTreeSet::new(),
            read_model: read_model
                .iter()
                .map(|id| (*id, ("Placed".to_owned(), 3000, 0, 1)))
                .collect(),
            head: 0,
            checkpoints: vec![0, 0],
        }
    }

    #[test]
    fn an_empty_log_and_an_empty_read_model_agree() {
        let audit = judge(&snapshot(&[]), &LoadReport::default());
        assert_eq!(audit.skipped, 0, "{audit:?}");
        assert!(audit.clean(), "{audit:?}");
    }

    /// The read model must equal a fold of the log both ways: a row of an order the log has
    /// no event of (what a page applied from a lost primary would leave) is a difference.
    #[test]
    fn a_read_model_row_of_an_order_not_in_the_log_is_counted() {
        let audit = judge(&snapshot(&[Uuid::new_v4()]), &LoadReport::default());
        assert_eq!(audit.skipped, 1, "{audit:?}");
        assert_eq!(audit.read_model_extra, 1, "{audit:?}");
        assert!(!audit.clean(), "{audit:?}");
    }
}

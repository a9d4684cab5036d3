//! Subscription state, read the way `order-projector status` reads it: the `orders.subscriptions`
//! table (checkpoint cursor, owner and lease, counters, last error), the head of the log, the
//! age of the oldest event past each checkpoint, and a replay's shadow table. The projector's
//! internals may change (how leases and checkpoints are kept); this module is the one place
//! that knows the table's shape, so that it is the one place to adapt.
//!
//! How healthy a subscription is ([`health`]) also reads the projector's own metrics
//! (`order_projector_stopped`, `order_projector_owner`), scraped by the services page.

use std::time::SystemTime;

use crate::db::{Db, Error};
use crate::services::{Instance, Kind};

/// Every subscription with its lag, the head of the log, and whether a replay is under way.
pub async fn read(db: &Db) -> Result<SubscriptionsView, Error> {
    let client = db.client().await?;
    let head: i64 = client
        .query_one(
            "SELECT coalesce((SELECT global_position FROM orders.events ORDER BY global_position DESC LIMIT 1), 0)",
            &[],
        )
        .await?
        .try_get(0)?;
    let rows = client
        .query(
            "SELECT s.name, s.checkpoint_xid::text, s.checkpoint_position, s.owner,
                    s.lease_expires_at, extract(epoch FROM s.lease_expires_at - now())::float8,
                    s.events_processed, s.last_event_at, s.last_error, s.last_error_at,
                    s.updated_at,
                    extract(epoch FROM now() - (
                        SELECT e.recorded_at FROM orders.events e
                         WHERE (e.transaction_id, e.global_position) > (s.checkpoint_xid, s.checkpoint_position)
                         ORDER BY e.transaction_id, e.global_position LIMIT 1))::float8
               FROM orders.subscriptions s ORDER BY s.name",
            &[],
        )
        .await?;
    let mut subscriptions = Vec::new();
    for row in rows {
        let checkpoint_position: i64 = row.try_get(2)?;
        let expires_in: Option<f64> = row.try_get(5)?;
        subscriptions.push(Subscription {
            name: row.try_get(0)?,
            checkpoint: format!("{}/{}", row.try_get::<_, String>(1)?, checkpoint_position),
            checkpoint_position,
            owner: row.try_get(3)?,
            lease_expires_at: row.try_get(4)?,
            lease_expires_in: expires_in,
            events_processed: row.try_get(6)?,
            last_event_at: row.try_get(7)?,
            last_error: row.try_get(8)?,
            last_error_at: row.try_get(9)?,
            updated_at: row.try_get(10)?,
            lag_events: (head - checkpoint_position).max(0),
            lag_seconds: row.try_get::<_, Option<f64>>(11)?.unwrap_or(0.0).max(0.0),
        });
    }
    // A replay builds `order_summaries_shadow` first (its rows: orders written so far).
    let shadow = client
        .query_opt(
            "SELECT coalesce(s.n_tup_ins, 0)::int8, coalesce((SELECT n_live_tup FROM pg_stat_user_tables
                     WHERE schemaname = 'orders' AND relname = 'order_summaries'), 0)::int8
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
              WHERE n.nspname = 'orders' AND c.relname = 'order_summaries_shadow'",
            &[],
        )
        .await?
        .map(|row| -> Result<ReplayProgress, Error> {
            Ok(ReplayProgress {
                shadow_rows: row.try_get(0)?,
                live_rows: row.try_get(1)?,
            })
        })
        .transpose()?;
    Ok(SubscriptionsView {
        head,
        subscriptions,
        replay: shadow,
    })
}

/// One subscription row with its lag.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// `read_model`, `sqs_publisher`.
    pub name: String,
    /// `xid/position`.
    pub checkpoint: String,
    /// The checkpoint's position.
    pub checkpoint_position: i64,
    /// Who holds (or held) the lease.
    pub owner: Option<String>,
    /// When the lease ends.
    pub lease_expires_at: Option<SystemTime>,
    /// Seconds until it ends (negative: ended).
    pub lease_expires_in: Option<f64>,
    /// Events projected so far.
    pub events_processed: i64,
    /// When the last event was projected.
    pub last_event_at: Option<SystemTime>,
    /// The last error, as the projector recorded it.
    pub last_error: Option<String>,
    /// When.
    pub last_error_at: Option<SystemTime>,
    /// Last change of the row.
    pub updated_at: SystemTime,
    /// Events behind the head.
    pub lag_events: i64,
    /// Age of the oldest event not yet projected.
    pub lag_seconds: f64,
}

impl Subscription {
    /// Whether a lease is held now.
    pub fn lease_live(&self) -> bool {
        self.owner.is_some() && self.lease_expires_in.is_some_and(|s| s > 0.0)
    }
}

/// A replay's first phase: the shadow table filling up.
#[derive(Debug, Clone, Copy)]
pub struct ReplayProgress {
    /// Rows written to the shadow table so far.
    pub shadow_rows: i64,
    /// Rows of the live read model (what a finished replay will have, about).
    pub live_rows: i64,
}

/// The subscriptions page's data.
#[derive(Debug, Clone)]
pub struct SubscriptionsView {
    /// Head of the log.
    pub head: i64,
    /// Every subscription.
    pub subscriptions: Vec<Subscription>,
    /// A replay under way, when its shadow table exists.
    pub replay: Option<ReplayProgress>,
}

/// How healthy a subscription looks, and why, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Following the log.
    Ok,
    /// Degraded and recovering (behind, a recent error, a replay holding the lease).
    Warn,
    /// Needs a person: stopped, no owner, an owner that does not answer, far behind.
    Bad,
}

/// The health of `subscription`, given the projector instances the console scrapes (none
/// configured: judged from the table alone).
pub fn health(subscription: &Subscription, instances: &[Instance]) -> (Health, String) {
    let projectors: Vec<&Instance> = instances
        .iter()
        .filter(|i| i.kind == Kind::Projector)
        .collect();
    let flag = |instance: &Instance, metric: &str| {
        instance
            .latest()
            .and_then(|p| p.get(&format!("{metric}:{}", subscription.name)))
            .is_some_and(|v| v >= 1.0)
    };
    if projectors
        .iter()
        .filter(|i| i.up)
        .any(|i| flag(i, "stopped"))
    {
        return (
            Health::Bad,
            "stopped on an event it cannot project".to_owned(),
        );
    }
    if !subscription.lease_live() {
        return (
            Health::Bad,
            "no owner: no projector holds the lease".to_owned(),
        );
    }
    let owner = subscription.owner.as_deref().unwrap_or_default();
    if owner.starts_with("replay-") {
        return (Health::Warn, "a replay holds the lease".to_owned());
    }
    if !projectors.is_empty() && !projectors.iter().filter(|i| i.up).any(|i| flag(i, "owner")) {
        return (
            Health::Bad,
            "its owner does not answer: the lease runs out unless it comes back".to_owned(),
        );
    }
    if subscription.lag_seconds > 60.0 {
        return (
            Health::Bad,
            format!(
                "{} behind",
                crate::web::pages::duration(subscription.lag_seconds)
            ),
        );
    }
    let recent_error = subscription
        .last_error_at
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .is_some_and(|ago| ago.as_secs() < 60);
    if recent_error {
        return (
            Health::Warn,
            "failed in the last minute; retrying".to_owned(),
        );
    }
    if subscription.lag_seconds > 5.0 {
        return (
            Health::Warn,
            format!(
                "{} behind",
                crate::web::pages::duration(subscription.lag_seconds)
            ),
        );
    }
    (Health::Ok, "following the log".to_owned())
}

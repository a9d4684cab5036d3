//! Subscription state, read the way `order-projector status` reads it: the `orders.subscriptions`
//! table (checkpoint cursor, owner and lease, counters, last error), the head of the log, the
//! age of the oldest event past each checkpoint, and the rebuild leases (`NAME#rebuild`, a row
//! of their own in the table): a live one is a rebuild of that projection in progress, shown
//! on the projection's row; a released one (a finished replay leaves it behind) is nothing; one
//! that ran out unreleased is a rebuild that stopped (a dead replay), shown there too
//! ([`Rebuild::health`]).
//! The projector's internals may change (how leases and checkpoints are kept); this module is
//! the one place that knows the table's shape, so that it is the one place to adapt.
//!
//! How healthy a subscription is ([`health`]) also reads the projector's own metrics
//! (`order_projector_stopped`, `order_projector_owner`), scraped by the services page, and what
//! the console saw of each lease over time ([`LeaseMemory`]).

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::db::{Db, Error};
use crate::services::{Instance, Kind};

/// The suffix of a rebuild lease's name (`order_projector::replay`).
pub const REBUILD_SUFFIX: &str = "#rebuild";

/// Every subscription with its lag, the head of the log, and the rebuilds under way.
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
                         ORDER BY e.transaction_id, e.global_position LIMIT 1))::float8,
                    s.lease_token, extract(epoch FROM now() - s.updated_at)::float8
               FROM orders.subscriptions s ORDER BY s.name",
            &[],
        )
        .await?;
    let mut subscriptions = Vec::new();
    let mut rebuilds = BTreeMap::new();
    for row in rows {
        let checkpoint_position: i64 = row.try_get(2)?;
        let expires_in: Option<f64> = row.try_get(5)?;
        // The age of the first event after the checkpoint: none when nothing waits.
        let waiting: Option<f64> = row.try_get(11)?;
        let behind = (head - checkpoint_position).max(0);
        let subscription = Subscription {
            name: row.try_get(0)?,
            checkpoint: format!("{}/{}", row.try_get::<_, String>(1)?, checkpoint_position),
            checkpoint_position,
            owner: row.try_get(3)?,
            lease_expires_at: row.try_get(4)?,
            lease_expires_in: expires_in,
            lease_token: row.try_get(12)?,
            events_processed: row.try_get(6)?,
            last_event_at: row.try_get(7)?,
            last_error: row.try_get(8)?,
            last_error_at: row.try_get(9)?,
            updated_at: row.try_get(10)?,
            // As `order-projector status` counts it: at least 1 while an event waits.
            lag_events: order_store::subscription::lag_positions(
                head.max(0).unsigned_abs(),
                checkpoint_position.max(0).unsigned_abs(),
                waiting.is_some(),
            )
            .try_into()
            .unwrap_or(i64::MAX),
            lag_seconds: waiting.unwrap_or(0.0).max(0.0),
            rebuild: None,
            owner_scraped: false,
            lease_stalled: false,
        };
        match subscription.name.strip_suffix(REBUILD_SUFFIX) {
            Some(projection) => {
                // A released rebuild lease (a replay that finished or gave up) is nothing; one
                // that ran out unreleased is a rebuild that stopped ([`Rebuild::health`]).
                if let (Some(owner), Some(lease_expires_in)) =
                    (&subscription.owner, subscription.lease_expires_in)
                {
                    rebuilds.insert(
                        projection.to_owned(),
                        Rebuild {
                            owner: owner.clone(),
                            checkpoint: subscription.checkpoint.clone(),
                            checkpoint_position,
                            // As `order-projector status` counts a rebuild's.
                            lag_events: behind,
                            lag_seconds: subscription.lag_seconds,
                            // Recorded by the rebuild about once a second while it reads.
                            events_read: subscription.events_processed,
                            newest_read_at: subscription.last_event_at,
                            lease_expires_in,
                            updated_ago: row.try_get::<_, f64>(13)?.max(0.0),
                        },
                    );
                }
            }
            None => subscriptions.push(subscription),
        }
    }
    for subscription in &mut subscriptions {
        subscription.rebuild = rebuilds.remove(&subscription.name);
    }
    Ok(SubscriptionsView {
        head,
        subscriptions,
        rebuilds_of_new_projections: rebuilds.into_iter().collect(),
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
    /// The lease's token: a new one at every acquisition, the same through renewals.
    pub lease_token: i64,
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
    /// Log positions from the checkpoint's to the head's, and at least 1 while an event after
    /// the checkpoint waits (as `order-projector status` counts it): an estimate of the events
    /// behind, not exact either way.
    pub lag_events: i64,
    /// Age of the oldest event not yet projected.
    pub lag_seconds: f64,
    /// A rebuild of this projection: in progress (a live `NAME#rebuild` lease), or stopped (the
    /// lease ran out unreleased: [`Rebuild::lease_live`]).
    pub rebuild: Option<Rebuild>,
    /// The lease's owner was seen to be a projector the console scrapes (it reported holding
    /// this lease), as far as [`LeaseMemory`] knows.
    pub owner_scraped: bool,
    /// The lease is live but no longer renewed, as far as [`LeaseMemory`] knows.
    pub lease_stalled: bool,
}

impl Subscription {
    /// Whether a lease is held now.
    pub fn lease_live(&self) -> bool {
        self.owner.is_some() && self.lease_expires_in.is_some_and(|s| s > 0.0)
    }
}

/// A rebuild: the rebuild lease of a projection, not released (live: in progress; run out: it
/// stopped), and how far its shadow tables are.
#[derive(Debug, Clone)]
pub struct Rebuild {
    /// Who rebuilds (`replay-...`, or the projector itself after a version change).
    pub owner: String,
    /// The rebuild's checkpoint, `xid/position`.
    pub checkpoint: String,
    /// Its position.
    pub checkpoint_position: i64,
    /// Log positions from it to the head's (as `order-projector status` counts a rebuild's).
    pub lag_events: i64,
    /// Age of the oldest event after it.
    pub lag_seconds: f64,
    /// Events the rebuild has read so far, written out or not (it records them on its lease's
    /// row about once a second, so they move before its first flush moves the checkpoint).
    pub events_read: i64,
    /// When the newest of them was recorded in the log; `None` before the first record.
    pub newest_read_at: Option<SystemTime>,
    /// Seconds until its lease runs out (negative: ran out). A rebuild that died (`kill -9`)
    /// keeps it until then.
    pub lease_expires_in: f64,
    /// Seconds since its row was last written: about every second while it reads the log (its
    /// progress, its lease's renewals) and at each flush; still while a flush or the shadow
    /// tables' index build runs, and once it died.
    pub updated_ago: f64,
}

/// A rebuild whose row was not written for longer than this (seconds) is amber: a long flush
/// or index build, or a dead replay.
pub const REBUILD_QUIET_SECONDS: f64 = 30.0;

impl Rebuild {
    /// Whether its lease is live: a rebuild in progress, as `order-projector status` counts
    /// one.
    pub fn lease_live(&self) -> bool {
        self.lease_expires_in > 0.0
    }

    /// How it looks: red when its lease ran out unreleased (a dead replay, or one in a flush
    /// or index build longer than its lease), amber when its row was not written for over
    /// [`REBUILD_QUIET_SECONDS`] (either of those, its lease not yet run out), green while it
    /// writes its progress.
    pub fn health(&self) -> (Health, String) {
        let duration = crate::web::pages::duration;
        if !self.lease_live() {
            return (
                Health::Bad,
                format!(
                    "its lease ran out {} ago, no progress for {}: a dead replay, or one in a flush or index build longer than its lease (which goes on only until another rebuild takes the lease); a new replay can start",
                    duration(-self.lease_expires_in),
                    duration(self.updated_ago)
                ),
            );
        }
        if self.updated_ago > REBUILD_QUIET_SECONDS {
            return (
                Health::Warn,
                format!(
                    "no progress for {}: a long flush or index build, or a dead replay: its lease runs out in {}",
                    duration(self.updated_ago),
                    duration(self.lease_expires_in)
                ),
            );
        }
        (
            Health::Ok,
            format!(
                "lease runs out in {}; progress written {} ago",
                duration(self.lease_expires_in),
                duration(self.updated_ago)
            ),
        )
    }
}

/// The subscriptions page's data.
#[derive(Debug, Clone)]
pub struct SubscriptionsView {
    /// Head of the log.
    pub head: i64,
    /// Every subscription (rebuild leases are not subscriptions: see [`Subscription::rebuild`]).
    pub subscriptions: Vec<Subscription>,
    /// Rebuilds (in progress or stopped) of projections that have no row yet (a projection
    /// built before it ever ran): (projection, rebuild).
    pub rebuilds_of_new_projections: Vec<(String, Rebuild)>,
}

impl SubscriptionsView {
    /// Every rebuild in progress (a live lease): (projection, rebuild).
    pub fn rebuilds(&self) -> impl Iterator<Item = (&str, &Rebuild)> {
        self.subscriptions
            .iter()
            .filter_map(|s| s.rebuild.as_ref().map(|r| (s.name.as_str(), r)))
            .chain(
                self.rebuilds_of_new_projections
                    .iter()
                    .map(|(name, r)| (name.as_str(), r)),
            )
            .filter(|(_, r)| r.lease_live())
    }
}

/// What the console saw of each live lease over its reads of the table: whether its owner was
/// seen to be a projector it scrapes, and the most time left it saw on it. A lease is renewed
/// every third of its time to live, so the time left stays above two thirds of it while its
/// owner lives; under half of the most seen, the owner stopped renewing it.
#[derive(Debug, Default)]
pub struct LeaseMemory {
    seen: BTreeMap<String, SeenLease>,
}

#[derive(Debug)]
struct SeenLease {
    owner: String,
    token: i64,
    longest_left: f64,
    scraped: bool,
}

impl LeaseMemory {
    /// Remember what `view` (just read) shows, with the projector instances as scraped now,
    /// and mark each subscription: [`Subscription::owner_scraped`],
    /// [`Subscription::lease_stalled`]. A lease no longer live is forgotten.
    pub fn observe(&mut self, view: &mut SubscriptionsView, instances: &[Instance]) {
        let mut seen = BTreeMap::new();
        for subscription in &mut view.subscriptions {
            let (true, Some(owner), Some(left)) = (
                subscription.lease_live(),
                subscription.owner.clone(),
                subscription.lease_expires_in,
            ) else {
                continue;
            };
            let reported = reported_by_scraped_projector(subscription, instances);
            let mut lease = match self.seen.remove(&subscription.name) {
                // The same holder: through renewals (same token) the most time left seen
                // stands; a new acquisition (a restart) starts again.
                Some(known) if known.owner == owner => SeenLease {
                    longest_left: if known.token == subscription.lease_token {
                        known.longest_left
                    } else {
                        left
                    },
                    token: subscription.lease_token,
                    ..known
                },
                _ => SeenLease {
                    owner,
                    token: subscription.lease_token,
                    longest_left: left,
                    scraped: false,
                },
            };
            lease.longest_left = lease.longest_left.max(left);
            lease.scraped |= reported;
            subscription.owner_scraped = lease.scraped;
            subscription.lease_stalled = left < lease.longest_left / 2.0;
            seen.insert(subscription.name.clone(), lease);
        }
        self.seen = seen;
    }
}

/// `metric` (`owner`, `stopped`) of `subscription` is set on a projector instance that answers.
fn flagged(instance: &Instance, subscription: &str, metric: &str) -> bool {
    instance.up
        && instance
            .latest()
            .and_then(|p| p.get(&format!("{metric}:{subscription}")))
            .is_some_and(|v| v >= 1.0)
}

/// A scraped projector that answers reports holding the lease of `subscription`.
fn reported_by_scraped_projector(subscription: &Subscription, instances: &[Instance]) -> bool {
    instances
        .iter()
        .filter(|i| i.kind == Kind::Projector)
        .any(|i| flagged(i, &subscription.name, "owner"))
}

/// How healthy a subscription looks, and why, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Following the log.
    Ok,
    /// Degraded and recovering (behind, a recent error, a replay holding the lease), or not
    /// fully seen (an owner the console does not scrape).
    Warn,
    /// Needs a person: stopped, no owner, an owner that does not answer, a lease no longer
    /// renewed, far behind.
    Bad,
}

/// The health of `subscription`, given the projector instances the console scrapes (none
/// configured: judged from the table alone). An owner no scraped projector reports is red when
/// it was seen to be one of them (it stopped answering, or let the lease go), amber when it
/// never was (a team's own projector binary the console does not scrape) while its lease is
/// renewed; a lease no longer renewed is red whoever holds it.
pub fn health(subscription: &Subscription, instances: &[Instance]) -> (Health, String) {
    let projectors: Vec<&Instance> = instances
        .iter()
        .filter(|i| i.kind == Kind::Projector)
        .collect();
    if projectors
        .iter()
        .any(|i| flagged(i, &subscription.name, "stopped"))
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
    if subscription.lease_stalled {
        return (
            Health::Bad,
            format!(
                "its lease is not being renewed: it runs out in {} unless its owner comes back",
                crate::web::pages::duration(subscription.lease_expires_in.unwrap_or(0.0))
            ),
        );
    }
    let unreported =
        !projectors.is_empty() && !reported_by_scraped_projector(subscription, instances);
    if unreported && subscription.owner_scraped {
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
    if unreported {
        return (
            Health::Warn,
            "owner not scraped: none of the projectors the console scrapes holds the lease; its owner renews it".to_owned(),
        );
    }
    (Health::Ok, "following the log".to_owned())
}

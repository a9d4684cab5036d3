//! `status`: the head of the log and every subscription's checkpoint, lag, owner, last error,
//! and for projections their version and any rebuild in progress, as a table for people or
//! JSON for scripts.

use std::time::SystemTime;

use order_store::{Cursor, EventStore};
use serde::Serialize;

use crate::replay::rebuild_lease_name;
use crate::subscription::Subscription;

/// A rebuild in progress.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildStatus {
    /// Who rebuilds.
    pub owner: String,
    /// How far the shadow tables are committed: the rebuild's checkpoint, which a bulk fold
    /// moves only when it writes out what it holds in memory (a flush), so it can stay at 0
    /// for a long time on a big log. `events_read` moves meanwhile.
    pub checkpoint_position: u64,
    /// Log positions from that checkpoint to the head's.
    pub lag_events: u64,
    /// Events of the projection's categories the rebuild has read and folded or applied so
    /// far, written out or not: recorded after each page once a second has passed or 10,000
    /// events were read since the last record (and by every checkpoint write), so it moves
    /// long before the first flush. It stands still while the shadow tables' indexes are
    /// built.
    pub events_read: u64,
    /// How long ago the newest of them was recorded in the log (how far the rebuild has read,
    /// in the log's time); `None` before the first record.
    pub newest_read_age_seconds: Option<f64>,
    /// When its rebuild lease runs out: a rebuild that died (`kill -9`) still shows until
    /// then. Always above 0: a rebuild whose lease ran out is not shown (a dead one; one still
    /// in a flush or index build goes on only until another rebuild takes the lease).
    pub lease_expires_in_seconds: f64,
    /// How long ago the rebuild last wrote its lease's row: about once a second while it
    /// reads the log (its progress, and its lease's renewals) and at each flush; it stands
    /// still while a flush or the shadow tables' index build runs, and once it died. Over
    /// [`REBUILD_QUIET_SECONDS`], `render` says so.
    pub updated_seconds_ago: f64,
}

/// A rebuild whose row was not written for longer than this (seconds) is in a long flush or
/// index build, or dead: [`render`] says so, with the time its lease has left.
pub const REBUILD_QUIET_SECONDS: f64 = 30.0;

/// One subscription.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionStatus {
    /// Its name.
    pub name: String,
    /// For a projection, the version its tables were built with.
    pub version: Option<u32>,
    /// The version of this binary's code, when this binary has the subscription.
    pub code_version: Option<u32>,
    /// The checkpoint's global position.
    pub checkpoint_position: u64,
    /// The checkpoint in full (transaction id and position).
    pub checkpoint_cursor: String,
    /// Log positions from the checkpoint's to the head's: an estimate of the events behind,
    /// not exact either way (a rolled-back append leaves its position unused; a transaction
    /// that committed after the checkpoint's may hold positions below it), and at least 1
    /// while an event after the checkpoint waits. `lag_seconds` says whether anything waits.
    pub lag_events: u64,
    /// Age of the oldest event after the checkpoint.
    pub lag_seconds: f64,
    /// Events applied since the subscription began.
    pub events_processed: u64,
    /// The instance holding its lease, if any.
    pub owner: Option<String>,
    /// When that lease runs out.
    pub lease_expires_in_seconds: Option<f64>,
    /// The last error, cleared by the next checkpoint.
    pub last_error: Option<String>,
    /// A rebuild in progress, if any.
    pub rebuild: Option<RebuildStatus>,
}

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The highest global position of the log.
    pub head_position: u64,
    /// Every subscription, by name.
    pub subscriptions: Vec<SubscriptionStatus>,
}

/// Read the status from the database; `known` are the subscriptions of this binary (their
/// code versions are shown beside the database's).
pub async fn collect(
    store: &EventStore,
    known: &[Subscription],
) -> Result<Status, order_store::Error> {
    let head_position = store.head_position().await?;
    let registered = {
        let client = store.connection().await?;
        crate::tables::all_registered(&client).await?
    };
    let states = store.subscriptions().await?;
    // The database's clock, which wrote every time read here: a lease that ran out is one
    // the database (and the console) takes as ended, whatever the clock of this machine.
    let now: SystemTime = store
        .connection()
        .await?
        .query_one("SELECT now()", &[])
        .await?
        .try_get(0)?;
    let rebuild_of = |name: &str| {
        states
            .iter()
            .find(|s| s.name == rebuild_lease_name(name))
            .and_then(|s| {
                // A lease that ran out (or was released) is no rebuild.
                let left = s.lease_expires_at?.duration_since(now).ok()?;
                if left.is_zero() {
                    return None;
                }
                Some(RebuildStatus {
                    owner: s.owner.clone()?,
                    checkpoint_position: s.checkpoint.global_position,
                    lag_events: head_position.saturating_sub(s.checkpoint.global_position),
                    events_read: s.events_processed,
                    newest_read_age_seconds: s
                        .last_event_at
                        .map(|at| now.duration_since(at).unwrap_or_default().as_secs_f64()),
                    lease_expires_in_seconds: left.as_secs_f64(),
                    updated_seconds_ago: now
                        .duration_since(s.updated_at)
                        .unwrap_or_default()
                        .as_secs_f64(),
                })
            })
    };
    let mut subscriptions = Vec::new();
    for state in &states {
        if let Some(name) = state.name.strip_suffix("#rebuild") {
            // The first rebuild of a projection that never ran has no row of its own yet:
            // shown under the projection's name, at the start of the log, with no owner.
            if states.iter().any(|s| s.name == name) {
                continue;
            }
            let Some(rebuild) = rebuild_of(name) else {
                continue;
            };
            let first = store.first_recorded_after(Cursor::START).await?;
            subscriptions.push(SubscriptionStatus {
                name: name.to_owned(),
                version: None,
                code_version: known
                    .iter()
                    .find(|s| s.name() == name)
                    .and_then(Subscription::version),
                checkpoint_position: Cursor::START.global_position,
                checkpoint_cursor: Cursor::START.to_string(),
                lag_events: crate::subscription::lag_events(
                    head_position,
                    Cursor::START,
                    first.is_some(),
                ),
                lag_seconds: first.map_or(0.0, |at| {
                    now.duration_since(at).unwrap_or_default().as_secs_f64()
                }),
                events_processed: 0,
                owner: None,
                lease_expires_in_seconds: None,
                last_error: None,
                rebuild: Some(rebuild),
            });
            continue;
        }
        let first = store.first_recorded_after(state.checkpoint).await?;
        let lag_seconds = match first {
            Some(at) => now.duration_since(at).unwrap_or_default().as_secs_f64(),
            None => 0.0,
        };
        let lease_live = state.lease_expires_at.filter(|at| *at > now);
        let rebuild = rebuild_of(&state.name);
        subscriptions.push(SubscriptionStatus {
            name: state.name.clone(),
            version: registered
                .iter()
                .find(|(name, _)| *name == state.name)
                .map(|(_, r)| r.version),
            code_version: known
                .iter()
                .find(|s| s.name() == state.name)
                .and_then(Subscription::version),
            checkpoint_position: state.checkpoint.global_position,
            checkpoint_cursor: state.checkpoint.to_string(),
            lag_events: crate::subscription::lag_events(
                head_position,
                state.checkpoint,
                first.is_some(),
            ),
            lag_seconds,
            events_processed: state.events_processed,
            owner: lease_live.and(state.owner.clone()),
            lease_expires_in_seconds: lease_live
                .map(|at| at.duration_since(now).unwrap_or_default().as_secs_f64()),
            last_error: state.last_error.clone(),
            rebuild,
        });
    }
    Ok(Status {
        head_position,
        subscriptions,
    })
}

/// The table people read: one line per subscription.
pub fn render(status: &Status) -> String {
    let mut out = format!("log head position: {}\n\n", status.head_position);
    out.push_str(&format!(
        "{:<20} {:>7} {:>12} {:>10} {:>9} {:<28} {}\n",
        "subscription", "version", "checkpoint", "lag ev", "lag s", "owner", "last error"
    ));
    for s in &status.subscriptions {
        let version = match (s.version, s.code_version) {
            // A rebuild is due (`1->2`), or the tables are newer than this binary's code and
            // it leaves them alone.
            (Some(db), Some(code)) if db < code => format!("{db}->{code}"),
            (Some(db), Some(code)) if db > code => format!("{db} (newer than {code})"),
            (Some(db), _) => db.to_string(),
            (None, Some(code)) => format!("new {code}"),
            (None, None) => "-".to_owned(),
        };
        out.push_str(&format!(
            "{:<20} {:>7} {:>12} {:>10} {:>9.1} {:<28} {}\n",
            s.name,
            version,
            s.checkpoint_position,
            s.lag_events,
            s.lag_seconds,
            s.owner.as_deref().unwrap_or("(none)"),
            s.last_error.as_deref().unwrap_or("-"),
        ));
        if let Some(rebuild) = &s.rebuild {
            let newest = match rebuild.newest_read_age_seconds {
                Some(age) => format!(" (the newest recorded {age:.0} s ago)"),
                None => String::new(),
            };
            out.push_str(&format!(
                "{:<20} rebuilding into shadow tables: read {} events{newest}; committed at {}, {} events behind ({}); lease runs out in {:.0} s; progress written {:.0} s ago\n",
                "",
                rebuild.events_read,
                rebuild.checkpoint_position,
                rebuild.lag_events,
                rebuild.owner,
                rebuild.lease_expires_in_seconds,
                rebuild.updated_seconds_ago
            ));
            if rebuild.updated_seconds_ago > REBUILD_QUIET_SECONDS {
                out.push_str(&format!(
                    "{:<20} no progress for {:.0} s: a long flush or index build, or a dead replay: its lease runs out in {:.0} s\n",
                    "", rebuild.updated_seconds_ago, rebuild.lease_expires_in_seconds
                ));
            }
        }
    }
    if status.subscriptions.is_empty() {
        out.push_str("(no subscription has run yet)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(version: Option<u32>, code_version: Option<u32>) -> SubscriptionStatus {
        SubscriptionStatus {
            name: "read_model".to_owned(),
            version,
            code_version,
            checkpoint_position: 0,
            checkpoint_cursor: Cursor::START.to_string(),
            lag_events: 0,
            lag_seconds: 0.0,
            events_processed: 0,
            owner: None,
            lease_expires_in_seconds: None,
            last_error: None,
            rebuild: None,
        }
    }

    /// The version column of `read_model`'s line.
    fn version_shown(version: Option<u32>, code_version: Option<u32>) -> String {
        let text = render(&Status {
            head_position: 0,
            subscriptions: vec![subscription(version, code_version)],
        });
        let line = text
            .lines()
            .find(|l| l.starts_with("read_model"))
            .unwrap_or_default();
        line["read_model".len()..line.find(" 0 ").unwrap_or(line.len())]
            .trim()
            .to_owned()
    }

    /// `1->2` is a rebuild due (the database's version older than the code's), as the docs
    /// say; tables newer than this binary's code never read as one.
    #[test]
    fn the_version_column_tells_a_rebuild_due_from_newer_tables() {
        assert_eq!(version_shown(Some(1), Some(2)), "1->2");
        assert_eq!(version_shown(Some(2), Some(1)), "2 (newer than 1)");
        assert_eq!(version_shown(Some(2), Some(2)), "2");
        assert_eq!(version_shown(Some(2), None), "2");
        assert_eq!(version_shown(None, Some(1)), "new 1");
        assert_eq!(version_shown(None, None), "-");
    }

    /// A rebuild's line shows its lease's time left and when its row was last written, and
    /// says so when nothing was written for over 30 s.
    #[test]
    fn a_rebuild_quiet_for_over_30_s_is_called_out() {
        let rebuild = |updated_seconds_ago| RebuildStatus {
            owner: "replay-1".to_owned(),
            checkpoint_position: 0,
            lag_events: 7,
            events_read: 70000,
            newest_read_age_seconds: None,
            lease_expires_in_seconds: 6.2,
            updated_seconds_ago,
        };
        let text = |updated_seconds_ago| {
            render(&Status {
                head_position: 7,
                subscriptions: vec![SubscriptionStatus {
                    rebuild: Some(rebuild(updated_seconds_ago)),
                    ..subscription(Some(1), Some(1))
                }],
            })
        };
        let working = text(30.0);
        assert!(
            working.contains("(replay-1); lease runs out in 6 s; progress written 30 s ago\n"),
            "{working}"
        );
        assert!(!working.contains("no progress"), "{working}");
        let quiet = text(54.0);
        assert!(
            quiet.contains("progress written 54 s ago\n")
                && quiet.contains(
                    "no progress for 54 s: a long flush or index build, or a dead replay: its lease runs out in 6 s\n"
                ),
            "{quiet}"
        );
    }
}

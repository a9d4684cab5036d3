//! `order-projector status`: the head of the log and every subscription's checkpoint, lag,
//! owner and last error, as a table for people or JSON for scripts.

use std::time::SystemTime;

use order_store::EventStore;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionStatus {
    pub name: String,
    pub checkpoint_position: u64,
    pub checkpoint_cursor: String,
    pub lag_events: u64,
    pub lag_seconds: f64,
    pub events_processed: u64,
    pub owner: Option<String>,
    pub lease_expires_in_seconds: Option<f64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub head_position: u64,
    pub subscriptions: Vec<SubscriptionStatus>,
}

pub async fn collect(store: &EventStore) -> Result<Status, order_store::Error> {
    let head_position = store.head_position().await?;
    let now = SystemTime::now();
    let mut subscriptions = Vec::new();
    for state in store.subscriptions().await? {
        let lag_seconds = match store.first_recorded_after(state.checkpoint).await? {
            Some(at) => now.duration_since(at).unwrap_or_default().as_secs_f64(),
            None => 0.0,
        };
        let lease_live = state.lease_expires_at.filter(|at| *at > now);
        subscriptions.push(SubscriptionStatus {
            name: state.name,
            checkpoint_position: state.checkpoint.global_position,
            checkpoint_cursor: state.checkpoint.to_string(),
            lag_events: head_position.saturating_sub(state.checkpoint.global_position),
            lag_seconds,
            events_processed: state.events_processed,
            owner: lease_live.and(state.owner),
            lease_expires_in_seconds: lease_live
                .map(|at| at.duration_since(now).unwrap_or_default().as_secs_f64()),
            last_error: state.last_error,
        });
    }
    Ok(Status {
        head_position,
        subscriptions,
    })
}

/// The table people read.
pub fn render(status: &Status) -> String {
    let mut out = format!("log head position: {}\n\n", status.head_position);
    out.push_str(&format!(
        "{:<16} {:>12} {:>10} {:>9} {:<28} {}\n",
        "subscription", "checkpoint", "lag ev", "lag s", "owner", "last error"
    ));
    for s in &status.subscriptions {
        out.push_str(&format!(
            "{:<16} {:>12} {:>10} {:>9.1} {:<28} {}\n",
            s.name,
            s.checkpoint_position,
            s.lag_events,
            s.lag_seconds,
            s.owner.as_deref().unwrap_or("(none)"),
            s.last_error.as_deref().unwrap_or("-"),
        ));
    }
    if status.subscriptions.is_empty() {
        out.push_str("(no subscription has run yet)\n");
    }
    out
}

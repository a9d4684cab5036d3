//! A subscription: one sink following the gap-safe log with its own checkpoint and lease.
//!
//! [`Subscription::step`] is the testable unit: read the next page after the checkpoint,
//! apply it to the sink, advance the checkpoint (fenced by the lease token). [`run`] is the
//! thin loop around it: acquire the lease or stand by, step while there is work, wait for a
//! notification or the poll interval when there is none, back off on errors, stop (without
//! ever skipping) on an event that cannot be decoded.

use std::time::{Duration, SystemTime};

use order_domain::order::OrderEvent;
use order_store::{Cursor, EventListener, EventStore, Lease, RecordedEvent, advance_checkpoint};
use tokio::sync::watch;
use tracing::Instrument;

use crate::read_model::{ApplyError, ReadModel, decode};
use crate::sqs::{Message, Publisher};

/// The read model's subscription name.
pub const READ_MODEL: &str = "read_model";
/// The SQS publisher's subscription name.
pub const SQS_PUBLISHER: &str = "sqs_publisher";

/// Where a subscription's events go.
#[derive(Debug, Clone)]
pub enum Sink {
    ReadModel(ReadModel),
    Sqs(Publisher),
}

/// One subscription: a name (its checkpoint and lease), a sink, a page size.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub name: String,
    pub sink: Sink,
    pub page: u32,
}

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Applied `events` events; the checkpoint is now `cursor`.
    Progressed { cursor: Cursor, events: usize },
    /// Nothing new after the checkpoint.
    Idle,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// An event cannot be decoded or applied: the subscription stops here, visibly.
    #[error("{0}")]
    Undecodable(String),
    /// Another instance (or an operator's replay) holds the lease now.
    #[error("the lease was lost")]
    LeaseLost,
    #[error("shutting down")]
    ShuttingDown,
    /// Database or queue trouble that may pass: retried with backoff.
    #[error("{0}")]
    Transient(String),
}

impl From<order_store::Error> for StepError {
    fn from(error: order_store::Error) -> Self {
        match error {
            order_store::Error::LeaseLost { .. } => Self::LeaseLost,
            order_store::Error::Decode { .. } => Self::Undecodable(error.to_string()),
            other => Self::Transient(other.to_string()),
        }
    }
}

impl From<ApplyError> for StepError {
    fn from(error: ApplyError) -> Self {
        match error {
            ApplyError::Undecodable { .. } => Self::Undecodable(error.to_string()),
            ApplyError::Store(store) => store.into(),
        }
    }
}

impl Subscription {
    /// Apply the next page after `cursor` and advance the checkpoint.
    pub async fn step(
        &self,
        store: &EventStore,
        lease: &Lease,
        cursor: Cursor,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Step, StepError> {
        let events = store.read_all(cursor, self.page).await?;
        let Some(last) = events.last() else {
            return Ok(Step::Idle);
        };
        let span = tracing::info_span!(
            "project",
            subscription = %self.name,
            events = events.len(),
            from = %cursor,
            to = %last.cursor(),
        );
        if order_runtime::trace::enabled() {
            // The batch links to the traces of the commands that produced its events.
            let mut linked = std::collections::HashSet::new();
            for event in &events {
                if let Some(traceparent) = &event.metadata.traceparent
                    && linked.len() < 64
                    && linked.insert(traceparent.as_str())
                {
                    order_runtime::trace::add_link(&span, traceparent);
                }
            }
        }
        self.apply_page(store, lease, &events, shutdown)
            .instrument(span)
            .await
    }

    async fn apply_page(
        &self,
        store: &EventStore,
        lease: &Lease,
        events: &[RecordedEvent],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Step, StepError> {
        let Some(last) = events.last() else {
            return Ok(Step::Idle);
        };
        let next = last.cursor();
        let last_event_at = Some(last.recorded_at);
        let decoded = decode(events)?;
        match &self.sink {
            Sink::ReadModel(model) => {
                let apply = async {
                    let mut client = store.pool().get().await.map_err(order_store::Error::from)?;
                    let transaction = client.transaction().await?;
                    model.apply(&transaction, events, &decoded).await?;
                    advance_checkpoint(
                        &transaction,
                        lease,
                        next,
                        events.len() as u64,
                        last_event_at,
                    )
                    .await?;
                    transaction.commit().await?;
                    Ok::<(), ApplyError>(())
                };
                tokio::time::timeout(store.config().call_timeout() * 2, apply)
                    .await
                    .map_err(|_| StepError::Transient("applying a page timed out".into()))??;
            }
            Sink::Sqs(publisher) => {
                let messages = messages(events, &decoded)?;
                let name = self.name.clone();
                let on_error = move |failure: &crate::sqs::SendFailure| {
                    let error = &failure.text;
                    if failure.sender_fault {
                        tracing::error!(subscription = %name, %error, "SQS refuses an event; retrying: it is not skipped");
                    } else {
                        tracing::warn!(subscription = %name, %error, "SQS publish failed; retrying");
                    }
                };
                publisher
                    .publish(messages, shutdown, &on_error)
                    .await
                    .map_err(|_| StepError::ShuttingDown)?;
                store
                    .timed(async {
                        let mut client = store.pool().get().await?;
                        let transaction = client.transaction().await?;
                        advance_checkpoint(
                            &transaction,
                            lease,
                            next,
                            events.len() as u64,
                            last_event_at,
                        )
                        .await?;
                        transaction.commit().await?;
                        Ok(())
                    })
                    .await?;
            }
        }
        metrics::counter!("order_projector_events_total", "subscription" => self.name.clone())
            .increment(events.len() as u64);
        Ok(Step::Progressed {
            cursor: next,
            events: events.len(),
        })
    }
}

fn messages(events: &[RecordedEvent], decoded: &[OrderEvent]) -> Result<Vec<Message>, StepError> {
    events
        .iter()
        .zip(decoded)
        .map(|(event, decoded)| {
            Message::of(event, decoded).map_err(|e| StepError::Undecodable(e.to_string()))
        })
        .collect()
}

/// How the loop behaves.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// This instance's name in the lease.
    pub owner: String,
    /// How long a lease lasts without renewal: a dead owner is replaced after at most this.
    pub lease_ttl: Duration,
    /// How long a caught-up subscription waits for a notification before polling anyway.
    pub poll: Duration,
    /// How often a standby tries to take the lease.
    pub standby_poll: Duration,
}

/// Run a subscription until shutdown: hold its lease (or stand by for it) and keep its sink
/// up to date. Never skips an event: an undecodable one stops the subscription (with the
/// error in its status and a metric) and it retries slowly, so that a fixed binary resumes.
pub async fn run(
    subscription: Subscription,
    store: EventStore,
    mut listener: EventListener,
    settings: RunSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = subscription.name.clone();
    let stopped_gauge = metrics::gauge!("order_projector_stopped", "subscription" => name.clone());
    let owner_gauge = metrics::gauge!("order_projector_owner", "subscription" => name.clone());
    'standby: loop {
        owner_gauge.set(0.0);
        let (lease, mut cursor) = loop {
            if *shutdown.borrow() {
                return;
            }
            match store
                .acquire_lease(&name, &settings.owner, settings.lease_ttl, false)
                .await
            {
                Ok(Some(acquired)) => break acquired,
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(subscription = %name, %error, "cannot reach the database to take the lease");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(settings.standby_poll) => {}
                _ = shutdown.changed() => {}
            }
        };
        owner_gauge.set(1.0);
        tracing::info!(subscription = %name, owner = %settings.owner, token = lease.token, checkpoint = %cursor, "lease taken; projecting");
        let mut renewed_at = tokio::time::Instant::now();
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                let _ = store.release_lease(&lease).await;
                tracing::info!(subscription = %name, "lease released");
                return;
            }
            if renewed_at.elapsed() >= settings.lease_ttl / 3 {
                match store.renew_lease(&lease, settings.lease_ttl).await {
                    Ok(true) => renewed_at = tokio::time::Instant::now(),
                    Ok(false) => {
                        tracing::warn!(subscription = %name, "lease lost; standing by");
                        continue 'standby;
                    }
                    // Keep working: the checkpoint write is fenced anyway.
                    Err(error) => {
                        tracing::warn!(subscription = %name, %error, "lease renewal failed");
                    }
                }
            }
            match subscription.step(&store, &lease, cursor, &shutdown).await {
                Ok(Step::Progressed { cursor: next, .. }) => {
                    cursor = next;
                    failures = 0;
                    stopped_gauge.set(0.0);
                }
                Ok(Step::Idle) => {
                    failures = 0;
                    tokio::select! {
                        _ = listener.wait(settings.poll) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(StepError::LeaseLost) => {
                    tracing::warn!(subscription = %name, "lease lost to another instance; standing by");
                    continue 'standby;
                }
                Err(StepError::ShuttingDown) => {}
                Err(StepError::Undecodable(reason)) => {
                    stopped_gauge.set(1.0);
                    metrics::counter!("order_projector_errors_total", "subscription" => name.clone(), "kind" => "undecodable").increment(1);
                    tracing::error!(subscription = %name, checkpoint = %cursor, %reason, "subscription stopped: an event cannot be projected; it is not skipped");
                    let _ = store
                        .record_subscription_error(&lease, &format!("stopped: {reason}"))
                        .await;
                    pause(&mut shutdown, Duration::from_secs(30)).await;
                }
                Err(StepError::Transient(reason)) => {
                    failures += 1;
                    metrics::counter!("order_projector_errors_total", "subscription" => name.clone(), "kind" => "transient").increment(1);
                    tracing::warn!(subscription = %name, %reason, failures, "projection failed; backing off");
                    let _ = store.record_subscription_error(&lease, &reason).await;
                    pause(&mut shutdown, crate::sqs::backoff(failures)).await;
                }
            }
        }
    }
}

async fn pause(shutdown: &mut watch::Receiver<bool>, duration: Duration) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        _ = shutdown.changed() => {}
    }
}

/// How far each subscription is behind the head of the log, exported as metrics.
pub async fn report_lag(
    store: EventStore,
    names: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Ok(head) = store.head_position().await {
            metrics::gauge!("order_log_head_position").set(head as f64);
            for name in &names {
                let Ok(checkpoint) = store.checkpoint(name).await else {
                    continue;
                };
                let behind = head.saturating_sub(checkpoint.global_position);
                let seconds = match store.first_recorded_after(checkpoint).await {
                    Ok(Some(at)) => SystemTime::now()
                        .duration_since(at)
                        .unwrap_or_default()
                        .as_secs_f64(),
                    _ => 0.0,
                };
                metrics::gauge!("order_projector_lag_events", "subscription" => name.clone())
                    .set(behind as f64);
                metrics::gauge!("order_projector_lag_seconds", "subscription" => name.clone())
                    .set(seconds);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

//! The runtime: any set of projections and sinks, each with its own checkpoint, lease,
//! backoff, metrics and spans.

use std::future::Future;
use std::time::Duration;

use order_store::{EventListener, EventStore};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::projection::Projection;
use crate::sink::Sink;
use crate::subscription::{RunSettings, Subscription, report_lag, run};

/// Why a projector could not be built: a name, table or setting that cannot work. Nothing
/// was started or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

/// Follows the log into any set of projections and sinks.
///
/// Each gets its own checkpoint and lease (run several instances for failover: one owns each
/// subscription, the others stand by and take over within the lease's time), backoff on
/// errors, metrics (`order_projector_events_total`, `_lag_events`, `_lag_seconds`, `_owner`,
/// `_stopped`, `_errors_total`, labelled by subscription), a `project` span per page and a
/// line in `status`. A projection's tables are created on its first start and rebuilt (shadow
/// tables, atomic swap) when its version changes.
///
/// ```no_run
/// # async fn example(store: order_store::EventStore) -> Result<(), order_projector::BuildError> {
/// use order_projector::{Projector, ReadModel};
///
/// Projector::builder(store)
///     .projection(ReadModel::new())
///     // no `.owner(..)`: the default (host, process id, random suffix) is unique per
///     // process, also in containers where every process is pid 1
///     .run(async { tokio::signal::ctrl_c().await.unwrap_or_default() })
///     .await
/// # }
/// ```
#[derive(Debug)]
pub struct Projector {
    store: EventStore,
    subscriptions: Vec<Subscription>,
    settings: RunSettings,
}

/// Assembles a [`Projector`].
#[derive(Debug)]
pub struct ProjectorBuilder {
    store: EventStore,
    subscriptions: Vec<Subscription>,
    settings: RunSettings,
}

impl Projector {
    /// Start assembling a projector over `store`.
    pub fn builder(store: EventStore) -> ProjectorBuilder {
        ProjectorBuilder {
            store,
            subscriptions: Vec::new(),
            settings: RunSettings::default(),
        }
    }

    /// The subscriptions it runs.
    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    /// The store it follows.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Start every subscription (and the lag reporter) on the current Tokio runtime.
    pub fn start(self) -> Running {
        let (shutdown, _) = watch::channel(false);
        let listener = EventListener::start(self.store.config().clone());
        let mut tasks = JoinSet::new();
        for subscription in &self.subscriptions {
            tasks.spawn(run(
                subscription.clone(),
                self.store.clone(),
                listener.clone(),
                self.settings.clone(),
                shutdown.subscribe(),
            ));
        }
        tasks.spawn(report_lag(
            self.store.clone(),
            self.subscriptions
                .iter()
                .map(|s| s.name().to_owned())
                .collect(),
            shutdown.subscribe(),
        ));
        tracing::info!(owner = %self.settings.owner, subscriptions = ?self.subscriptions.iter().map(Subscription::name).collect::<Vec<_>>(), "projector running");
        Running { tasks, shutdown }
    }

    /// Run until `shutdown` completes, then let every subscription finish its page and release
    /// its lease (at most 30 s).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let running = self.start();
        shutdown.await;
        running.stop(Duration::from_secs(30)).await;
    }
}

/// A started projector.
#[derive(Debug)]
pub struct Running {
    tasks: JoinSet<()>,
    shutdown: watch::Sender<bool>,
}

impl Running {
    /// A receiver that turns `true` when [`Running::stop`] is called.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Ask every subscription to stop after its current page and release its lease; wait at
    /// most `grace`, then abandon the rest (nothing is lost: checkpoints did not move). Returns
    /// whether everything stopped in time.
    pub async fn stop(mut self, grace: Duration) -> bool {
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                "grace period over; abandoning unfinished work (nothing is lost: checkpoints did not move)"
            );
            self.tasks.abort_all();
        }
        drained
    }
}

impl ProjectorBuilder {
    /// Add a projection.
    pub fn projection<P: Projection>(self, projection: P) -> Self {
        self.subscription(Subscription::projection(projection))
    }

    /// Add a sink.
    pub fn sink<S: Sink>(self, sink: S) -> Self {
        self.subscription(Subscription::sink(sink))
    }

    /// Add a subscription made elsewhere.
    pub fn subscription(mut self, subscription: Subscription) -> Self {
        self.subscriptions.push(subscription);
        self
    }

    /// This instance's name in leases (default: host name, process id and a random suffix).
    ///
    /// It must be unique among the instances that run at once: a lease is given back to the
    /// name that holds it (so that a restarted instance takes its own lease back at once), and
    /// two instances of one name would take it from each other, both reporting themselves as
    /// its owner. Fencing still keeps a projection's pages from being applied twice, but their
    /// work is wasted, and a sink may deliver a page from both (at least once, as always).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.settings.owner = owner.into();
        self
    }

    /// How long a lease lasts without renewal (default 10 s): a dead owner is replaced after
    /// at most this.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.settings.lease_ttl = ttl;
        self
    }

    /// How long a caught-up subscription waits for a notification before polling (default
    /// 1 s).
    pub fn poll(mut self, poll: Duration) -> Self {
        self.settings.poll = poll;
        self
    }

    /// How often a standby tries to take a lease (default 2 s).
    pub fn standby_poll(mut self, poll: Duration) -> Self {
        self.settings.standby_poll = poll;
        self
    }

    /// All loop settings at once.
    pub fn settings(mut self, settings: RunSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Check every name, table and setting, and build.
    pub fn build(self) -> Result<Projector, BuildError> {
        if self.subscriptions.is_empty() {
            return Err(BuildError("the projector has no projection or sink".into()));
        }
        if self.settings.owner.is_empty() || self.settings.owner.len() > 200 {
            return Err(BuildError("the owner name must be 1-200 characters".into()));
        }
        if self.settings.lease_ttl < Duration::from_secs(1) {
            return Err(BuildError("the lease TTL must be at least 1 s".into()));
        }
        if !(1..=100_000).contains(&self.settings.rebuild_page) {
            return Err(BuildError(
                "the rebuild page size must be in 1..=100000".into(),
            ));
        }
        check_subscriptions(&self.subscriptions).map_err(BuildError)?;
        Ok(Projector {
            store: self.store,
            subscriptions: self.subscriptions,
            settings: self.settings,
        })
    }

    /// Build and run until `shutdown` completes (see [`Projector::run`]).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), BuildError> {
        self.build()?.run(shutdown).await;
        Ok(())
    }
}

/// The checks every subscription set of one binary passes before anything runs against the
/// database (`run`, `replay` and `republish`): each subscription's own
/// ([`Subscription::validate`]: names, tables, statements), no two of one name, no table
/// declared by two projections.
pub(crate) fn check_subscriptions(subscriptions: &[Subscription]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    let mut tables: std::collections::HashMap<String, String> = Default::default();
    for subscription in subscriptions {
        subscription.validate()?;
        if !names.insert(subscription.name().to_owned()) {
            return Err(format!(
                "two subscriptions are named {}",
                subscription.name()
            ));
        }
        for table in subscription.tables() {
            if let Some(other) =
                tables.insert(table.name().to_owned(), subscription.name().to_owned())
            {
                return Err(format!(
                    "projections {other} and {} both declare table {}",
                    subscription.name(),
                    table.name()
                ));
            }
        }
    }
    Ok(())
}

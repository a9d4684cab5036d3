//! `order-projector run`: every configured subscription, the lag reporter, readiness and the
//! admin server, until SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use order_runtime::{AdminServer, Readiness};
use order_store::{EventListener, EventStore, ReadinessProbe};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{RunArgs, sqs_client};
use crate::read_model::ReadModel;
use crate::sqs::Publisher;
use crate::subscription::{READ_MODEL, RunSettings, Sink, Subscription, report_lag, run};

/// A started projector.
pub struct App {
    admin: AdminServer,
    tasks: JoinSet<()>,
    shutdown: watch::Sender<bool>,
    grace: Duration,
    owner: String,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Start with an SQS client from the AWS SDK's standard settings.
    pub async fn start(args: RunArgs) -> anyhow::Result<Self> {
        let client = sqs_client().await;
        Self::start_with_sqs(args, client).await
    }

    /// Start with a given SQS client (tests point it at their emulator).
    pub async fn start_with_sqs(args: RunArgs, sqs: aws_sdk_sqs::Client) -> anyhow::Result<Self> {
        args.validate().map_err(anyhow::Error::msg)?;
        let store = EventStore::new(args.database.store_config("order-projector"))?;
        let listener = EventListener::start(store.config().clone());
        let owner = args.instance_id();
        let (shutdown, _) = watch::channel(false);
        let (readiness, readiness_rx) = watch::channel(Readiness::NotReady("starting".to_owned()));
        let admin = AdminServer::start(args.admin_addr, readiness_rx).await?;

        let queue = match (
            &args.queue.orders_queue_url,
            args.subscriptions.iter().any(|s| s != READ_MODEL),
        ) {
            (Some(url), true) => Some(Publisher::new(
                sqs,
                url.clone(),
                usize::from(args.queue.sqs_lanes),
            )),
            _ => None,
        };
        let settings = RunSettings {
            owner: owner.clone(),
            lease_ttl: args.lease_ttl(),
            poll: Duration::from_millis(args.poll_ms),
            standby_poll: Duration::from_millis(args.standby_poll_ms),
        };
        let mut tasks = JoinSet::new();
        for name in &args.subscriptions {
            let (sink, page) = match (name.as_str(), &queue) {
                (READ_MODEL, _) => (Sink::ReadModel(ReadModel::default()), args.read_model_page),
                (_, Some(publisher)) => (Sink::Sqs(publisher.clone()), args.sqs_page),
                (_, None) => continue,
            };
            let subscription = Subscription {
                name: name.clone(),
                sink,
                page,
            };
            tasks.spawn(run(
                subscription,
                store.clone(),
                listener.clone(),
                settings.clone(),
                shutdown.subscribe(),
            ));
        }
        tasks.spawn(report_lag(
            store.clone(),
            args.subscriptions.clone(),
            shutdown.subscribe(),
        ));
        tasks.spawn(watch_readiness(
            ReadinessProbe::new(store.config().clone()),
            queue,
            readiness,
            shutdown.subscribe(),
        ));
        tracing::info!(owner = %owner, subscriptions = ?args.subscriptions, admin = %admin.addr(), "order-projector running");
        Ok(Self {
            admin,
            tasks,
            shutdown,
            grace: Duration::from_secs(args.shutdown_grace_seconds),
            owner,
        })
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.addr()
    }

    /// Run until `signal`, then let every subscription finish its step and release its lease.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down: finishing the current pages, releasing leases");
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(self.grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "grace period over; abandoning unfinished work (nothing is lost: checkpoints did not move)"
            );
            self.tasks.abort_all();
        }
        tracing::info!("order-projector stopped");
    }
}

/// Ready while the database is reachable and migrated and, when publishing, the queue answers.
async fn watch_readiness(
    mut probe: ReadinessProbe,
    queue: Option<Publisher>,
    readiness: watch::Sender<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mut state = match probe.check().await {
            Ok(()) => Readiness::Ready,
            Err(why) => Readiness::NotReady(why),
        };
        if let (Readiness::Ready, Some(publisher)) = (&state, &queue) {
            let check = publisher
                .client()
                .get_queue_attributes()
                .queue_url(publisher.queue_url())
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send();
            match tokio::time::timeout(Duration::from_secs(3), check).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    state = Readiness::NotReady(format!(
                        "sqs: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    ));
                }
                Err(_) => state = Readiness::NotReady("sqs: no answer within 3 s".to_owned()),
            }
        }
        if *readiness.borrow() != state {
            match &state {
                Readiness::Ready => tracing::info!("ready"),
                Readiness::NotReady(why) => tracing::warn!(reason = %why, "not ready"),
            }
        }
        let _ = readiness.send(state);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

//! `order-worker run`: the consumer, the visibility heartbeat, the batched deleter, readiness
//! and the admin server, until SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use order_runtime::{AdminServer, Readiness};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::OrderApi;
use crate::clock::{Clock, SystemClock};
use crate::config::{ProviderKind, RunArgs, sqs_client};
use crate::consumer::{Consumer, InFlight, spawn_deleter};
use crate::process::{Guards, Processor};
use crate::providers::Providers;
use crate::providers::guard::Guard;
use crate::providers::http::HttpProviders;
use crate::providers::simulated::Simulated;
use crate::random::Random;

/// A started worker.
pub struct App {
    admin: AdminServer,
    shutdown: watch::Sender<bool>,
    readiness: watch::Sender<Readiness>,
    consumer: JoinHandle<()>,
    deleter: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    ready_watch: JoinHandle<()>,
    /// The consumer the `consumer` task runs: what it leaves in flight at the end of the grace
    /// period goes back to the queue through it.
    consumer_state: Arc<Consumer>,
    queue_url: String,
    grace: Duration,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("admin_addr", &self.admin.addr())
            .field("queue_url", &self.queue_url)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Start with an SQS client from the AWS SDK's standard settings.
    pub async fn start(args: RunArgs) -> anyhow::Result<Self> {
        let sqs = sqs_client().await;
        Self::start_with(args, sqs).await
    }

    /// Start with a given SQS client (tests point it at their emulator) and the providers the
    /// settings describe (`ORDER_WORKER_PROVIDERS`: the simulation or the HTTP services).
    pub async fn start_with(args: RunArgs, sqs: aws_sdk_sqs::Client) -> anyhow::Result<Self> {
        args.validate().map_err(anyhow::Error::msg)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let random = Arc::new(
            args.simulation
                .sim_seed
                .map_or_else(Random::from_entropy, Random::seeded),
        );
        let providers = match args.providers {
            ProviderKind::Simulated => {
                let simulated =
                    Simulated::new(args.simulation.settings(), random.clone(), clock.clone());
                Providers::all(Arc::new(simulated))
            }
            ProviderKind::Http => {
                let endpoints = args
                    .http
                    .endpoints(true)
                    .map_err(anyhow::Error::msg)?
                    .ok_or_else(|| {
                        anyhow::anyhow!("ORDER_WORKER_PROVIDERS=http needs the provider URLs")
                    })?;
                for (provider, endpoint) in [
                    ("inventory", &endpoints.inventory),
                    ("payment", &endpoints.payment),
                    ("shipping", &endpoints.shipping),
                ] {
                    tracing::info!(
                        provider,
                        url = endpoint.base_url.trim(),
                        token = endpoint.token.is_some(),
                        client_certificate = endpoint.client_identity.is_some(),
                        private_ca = endpoint.ca.is_some(),
                        "provider endpoint"
                    );
                }
                HttpProviders::new(
                    &endpoints.inventory,
                    &endpoints.payment,
                    &endpoints.shipping,
                    &args.http_settings(),
                )
                .map_err(anyhow::Error::msg)?
                .into_ports()
            }
        };
        Self::start_with_providers(args, sqs, providers, clock, random).await
    }

    /// Start with other provider adapters.
    pub async fn start_with_providers(
        args: RunArgs,
        sqs: aws_sdk_sqs::Client,
        providers: Providers,
        clock: Arc<dyn Clock>,
        random: Arc<Random>,
    ) -> anyhow::Result<Self> {
        args.validate().map_err(anyhow::Error::msg)?;
        crate::metrics::register();
        let api = OrderApi::connect_lazy(
            args.grpc_endpoint.trim(),
            args.grpc_auth_token.as_deref(),
            args.grpc_timeout(),
            args.grpc_tls().map_err(anyhow::Error::msg)?,
        )
        .map_err(anyhow::Error::msg)?;
        let guard = |name| Guard::new(name, args.guard_settings(), clock.clone(), random.clone());
        let guards = Arc::new(Guards {
            inventory: guard("inventory"),
            payment: guard("payment"),
            shipping: guard("shipping"),
        });
        let processor = Arc::new(
            Processor::new(api.clone(), providers, guards, args.delivery_settings())
                .with_key_lifetime(args.provider_key_lifetime()),
        );
        let settings = args.consumer_settings();

        let (readiness, readiness_rx) = watch::channel(Readiness::NotReady("starting".to_owned()));
        let admin = AdminServer::start(args.admin_addr, readiness_rx).await?;
        let (shutdown, _) = watch::channel(false);
        let in_flight = Arc::new(InFlight::default());
        let (deletes, deleter) = spawn_deleter(sqs.clone(), settings.queue_url.clone());

        let heartbeat = {
            let (in_flight, sqs, queue_url) =
                (in_flight.clone(), sqs.clone(), settings.queue_url.clone());
            let visibility = settings.visibility;
            let every = (visibility / 3).max(Duration::from_secs(1));
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    in_flight.extend_all(&sqs, &queue_url, visibility).await;
                }
            })
        };
        let ready_watch = tokio::spawn(watch_readiness(
            api,
            sqs.clone(),
            [settings.queue_url.clone(), settings.dlq_url.clone()],
            readiness.clone(),
            shutdown.subscribe(),
        ));
        let consumer = Arc::new(Consumer::new(
            sqs.clone(),
            settings.clone(),
            processor,
            in_flight,
            deletes,
            random,
        ));
        let consumer_state = consumer.clone();
        let consumer = tokio::spawn(consumer.run(shutdown.subscribe(), readiness.subscribe()));
        metrics::gauge!("order_worker_concurrency").set(settings.concurrency as f64);
        tracing::info!(
            queue = %settings.queue_url,
            grpc = %args.grpc_endpoint,
            concurrency = settings.concurrency,
            providers = ?args.providers,
            admin = %admin.addr(),
            "order-worker running"
        );
        Ok(Self {
            admin,
            shutdown,
            readiness,
            consumer,
            deleter,
            heartbeat,
            ready_watch,
            consumer_state,
            queue_url: settings.queue_url,
            grace: args.shutdown_grace(),
        })
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.addr()
    }

    /// Run until `signal`; then stop receiving, let in-flight messages finish within the
    /// grace period, flush the pending deletes, and put back on the queue whatever did not
    /// finish (released; one at its last receive sent again as a new message, so that SQS does
    /// not dead-letter it for the shutdown).
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) {
        signal.await;
        tracing::info!(grace = ?self.grace, "shutting down: no new messages, finishing the ones in flight");
        let _ = self.shutdown.send(true);
        let _ = self
            .readiness
            .send(Readiness::NotReady("shutting down".to_owned()));
        if tokio::time::timeout(self.grace, &mut self.consumer)
            .await
            .is_err()
        {
            tracing::warn!(
                "grace period over: abandoning unfinished messages (nothing is lost: they reappear on the queue)"
            );
            self.consumer.abort();
            let _ = (&mut self.consumer).await;
        }
        let (released, sent_again) = self.consumer_state.abandon_in_flight().await;
        if released + sent_again > 0 {
            tracing::info!(
                released,
                sent_again,
                "unfinished messages back on the queue (sent again: those at their last receive)"
            );
        }
        // It holds one of the deleter's senders.
        drop(self.consumer_state);
        // The consumer and its tasks held the deleter's senders; it ends once it deleted
        // everything they sent.
        if tokio::time::timeout(Duration::from_secs(5), &mut self.deleter)
            .await
            .is_err()
        {
            tracing::warn!(
                "pending deletes did not finish; those messages will be delivered again and found done"
            );
            self.deleter.abort();
        }
        self.heartbeat.abort();
        self.ready_watch.abort();
        tracing::info!("order-worker stopped");
    }
}

/// Ready while order-grpc reports SERVING and accepts the worker's token, and both queues
/// answer: the orders queue, and the dead-letter queue (a wrong one would show only at the
/// first message that must go there).
async fn watch_readiness(
    api: OrderApi,
    sqs: aws_sdk_sqs::Client,
    queue_urls: [String; 2],
    readiness: watch::Sender<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mut state = match api.check_health().await {
            Ok(()) => match api.check_access().await {
                Ok(()) => Readiness::Ready,
                Err(why) => Readiness::NotReady(why),
            },
            Err(why) => Readiness::NotReady(why),
        };
        for (queue_url, which) in queue_urls.iter().zip(["queue", "dead-letter queue"]) {
            if !state.is_ready() {
                break;
            }
            let check = sqs
                .get_queue_attributes()
                .queue_url(queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send();
            match tokio::time::timeout(Duration::from_secs(3), check).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    state = Readiness::NotReady(format!(
                        "sqs: the {which} {queue_url}: {}",
                        order_runtime::sqs::describe(&e)
                    ));
                }
                Err(_) => {
                    state = Readiness::NotReady(format!(
                        "sqs: the {which} {queue_url}: no answer within 3 s"
                    ));
                }
            }
        }
        if *shutdown.borrow() {
            return;
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

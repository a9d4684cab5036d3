//! `order-worker run`: the consumer, the visibility heartbeat, the batched deleter, readiness
//! and the admin server, until SIGTERM.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
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
    /// not dead-letter it for the shutdown). A receive under way at the end of the grace
    /// period is let finish first (at most the long-poll wait): see [`Consumer::shut_down`].
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) {
        signal.await;
        tracing::info!(grace = ?self.grace, "shutting down: no new messages, finishing the ones in flight");
        let _ = self.shutdown.send(true);
        let _ = self
            .readiness
            .send(Readiness::NotReady("shutting down".to_owned()));
        let (released, sent_again) = self
            .consumer_state
            .shut_down(self.consumer, self.grace)
            .await;
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
        // Each queue's attributes: the orders queue's redrive policy, the DLQ's ARN.
        let mut read: Vec<HashMap<QueueAttributeName, String>> = Vec::new();
        for (queue_url, which) in queue_urls.iter().zip(["queue", "dead-letter queue"]) {
            if !state.is_ready() {
                break;
            }
            let check = sqs
                .get_queue_attributes()
                .queue_url(queue_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .attribute_names(QueueAttributeName::RedrivePolicy)
                .send();
            match tokio::time::timeout(Duration::from_secs(3), check).await {
                Ok(Ok(output)) => read.push(output.attributes().cloned().unwrap_or_default()),
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
        if let [queue, dlq] = read.as_slice()
            && let Some(why) = dlq_mismatch(
                queue
                    .get(&QueueAttributeName::RedrivePolicy)
                    .map(String::as_str),
                dlq.get(&QueueAttributeName::QueueArn).map(String::as_str),
            )
        {
            state = Readiness::NotReady(format!("sqs: ORDERS_DLQ_URL {}: {why}", queue_urls[1]));
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

/// Why the DLQ the worker was given is not the one the orders queue's redrive policy
/// (`policy`) moves messages to (`dlq_arn`: the DLQ's ARN), if it is not: the worker would
/// dead-letter into one queue and SQS into another. A queue without a redrive policy has no
/// DLQ of its own to compare (the worker dead-letters itself; docs/providers.md).
fn dlq_mismatch(policy: Option<&str>, dlq_arn: Option<&str>) -> Option<String> {
    let policy = policy.filter(|p| !p.trim().is_empty())?;
    let target = serde_json::from_str::<serde_json::Value>(policy)
        .ok()
        .and_then(|p| p.get("deadLetterTargetArn")?.as_str().map(str::to_owned));
    match (target, dlq_arn) {
        (Some(target), Some(arn)) if target == arn => None,
        (Some(target), Some(arn)) => Some(format!(
            "its ARN {arn} is not the orders queue's dead-letter queue (its redrive policy \
             names {target}): messages SQS dead-letters and those the worker does would go to \
             two queues"
        )),
        (None, _) => Some(format!(
            "the orders queue's redrive policy names no deadLetterTargetArn: {policy:?}"
        )),
        (Some(_), None) => Some("SQS did not report its ARN".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dlq_must_be_the_one_the_redrive_policy_names() {
        let arn = "arn:aws:sqs:eu-west-1:000000000000:orders-dlq.fifo";
        let policy = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#);
        assert_eq!(dlq_mismatch(Some(&policy), Some(arn)), None);
        let other = "arn:aws:sqs:eu-west-1:000000000000:other-dlq.fifo";
        let why = dlq_mismatch(Some(&policy), Some(other)).unwrap();
        assert!(why.contains(other) && why.contains(arn), "{why}");
        assert!(dlq_mismatch(Some(r#"{"maxReceiveCount":5}"#), Some(arn)).is_some());
        assert!(dlq_mismatch(Some(&policy), None).is_some());
        // No redrive policy: nothing to compare.
        assert_eq!(dlq_mismatch(None, Some(arn)), None);
        assert_eq!(dlq_mismatch(Some(""), Some(arn)), None);
    }

    /// The SQS emulator reports both attributes the check compares, as AWS does.
    #[tokio::test]
    async fn the_emulator_reports_the_redrive_target_and_the_dlq_arn() {
        let sqs = order_testkit::sqs::client();
        let ours = order_testkit::sqs::fifo_queue_pair(5).await;
        let other = order_testkit::sqs::fifo_queue_pair(5).await;
        let attributes = async |url: &str| {
            sqs.get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::QueueArn)
                .attribute_names(QueueAttributeName::RedrivePolicy)
                .send()
                .await
                .unwrap()
                .attributes()
                .cloned()
                .unwrap_or_default()
        };
        let queue = attributes(&ours.queue_url).await;
        let policy = queue
            .get(&QueueAttributeName::RedrivePolicy)
            .map(String::as_str);
        assert!(policy.is_some(), "{queue:?}");
        let dlq = attributes(&ours.dlq_url).await;
        let arn = dlq.get(&QueueAttributeName::QueueArn).map(String::as_str);
        assert_eq!(dlq_mismatch(policy, arn), None);
        let wrong = attributes(&other.dlq_url).await;
        let arn = wrong.get(&QueueAttributeName::QueueArn).map(String::as_str);
        assert!(dlq_mismatch(policy, arn).is_some());
    }
}

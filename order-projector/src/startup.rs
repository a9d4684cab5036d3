//! `order-projector run`: the two built-in subscriptions (the read model and the SQS
//! publisher) on the library's [`crate::Projector`], with the admin server and readiness,
//! until SIGTERM.

use std::future::Future;
use std::net::SocketAddr;

use order_store::EventStore;

use crate::config::{RunArgs, sqs_client};
use crate::projector::Projector;
use crate::read_model::{READ_MODEL, ReadModel};
use crate::service::App as Service;
use crate::sqs::{Publisher, SQS_PUBLISHER, SqsPublisher};

/// A started `order-projector`.
#[derive(Debug)]
pub struct App {
    service: Service,
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
        // One name for this instance, in its leases and in its log lines alike.
        let settings = args.run.settings();
        let owner = settings.owner.clone();
        let mut builder = Projector::builder(store).settings(settings);
        for name in &args.subscriptions {
            match name.as_str() {
                READ_MODEL => {
                    builder = builder.projection(ReadModel::new().page(args.read_model_page));
                }
                SQS_PUBLISHER => {
                    // Checked by `validate` before the start.
                    let Ok(Some(url)) = args.queue.queue_url() else {
                        continue;
                    };
                    let publisher =
                        Publisher::new(sqs.clone(), url, usize::from(args.queue.sqs_lanes));
                    builder = builder.sink(SqsPublisher::new(publisher).page(args.sqs_page));
                }
                _ => {}
            }
        }
        let projector = builder.build()?;
        let service = Service::start(projector, args.admin_addr, args.run.grace()).await?;
        tracing::info!(owner = %owner, subscriptions = ?args.subscriptions, admin = %service.admin_addr(), "order-projector running");
        Ok(Self { service })
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.service.admin_addr()
    }

    /// Run until `signal`, then let every subscription finish its page and release its lease.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        self.service.run_until(signal).await;
    }
}

//! The worker's only way to the order log: the gRPC API through `order-client`, as any
//! internal client uses it. Every call carries the message's correlation id and trace
//! context, the bearer token when one is configured, and a deadline.
//!
//! The client does not retry here ([`RetryPolicy::none`]): a failed call fails the message,
//! and the queue's redelivery (backed off, bounded by `maxReceiveCount`) is the worker's
//! retry loop, classified by [`crate::classify`].

use std::time::Duration;

use order_client::{Client, Health, RetryPolicy};
use uuid::Uuid;

pub use order_client::CallContext;

use crate::saga::{Command, OrderLog};

/// The gRPC service whose health decides readiness.
const HEALTH_SERVICE: &str = "orders.v1.OrderService";

/// TLS settings of the connection to order-grpc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTls {
    /// The CA (PEM) that signed order-grpc's certificate.
    pub ca_pem: Vec<u8>,
    /// The name the certificate is checked against, when not the endpoint's host.
    pub domain: Option<String>,
}

/// A gRPC failure, as the classification reads it.
pub type Status = order_client::Error;

/// The client of `OrderService`, `OrderQueryService` and `grpc.health.v1.Health`.
#[derive(Debug, Clone)]
pub struct OrderApi {
    client: Client,
}

impl OrderApi {
    /// A client for `endpoint` (`http://host:port`) that connects on first use, so the worker
    /// starts (and reports not ready) while order-grpc is still down.
    /// With `tls`, the endpoint must be `https://`.
    pub fn connect_lazy(
        endpoint: &str,
        token: Option<&str>,
        timeout: Duration,
        tls: Option<GrpcTls>,
    ) -> Result<Self, String> {
        let mut builder = Client::builder()
            .endpoint(endpoint)
            .connect_timeout(Duration::from_secs(3))
            .timeout(timeout)
            .retry(RetryPolicy::none());
        if let Some(token) = token {
            builder = builder.bearer_token(token);
        }
        if let Some(tls) = tls {
            builder = builder.tls_ca_pem(tls.ca_pem);
            if let Some(domain) = tls.domain {
                builder = builder.tls_domain(domain);
            }
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(Self { client })
    }

    fn with(&self, context: &CallContext) -> Client {
        self.client.with_context(context.clone())
    }

    /// The order's whole history, from the log, at least up to the event at `min_position`
    /// (read-your-writes when order-grpc reads from a replica).
    pub async fn order_log(
        &self,
        order_id: Uuid,
        min_position: u64,
        context: &CallContext,
    ) -> Result<OrderLog, Status> {
        let events = self
            .with(context)
            .get_order_events(order_id)
            .min_position(min_position)
            .await?;
        Ok(OrderLog::new(events))
    }

    /// Send `command` for `order_id` with its idempotency key and, when given, the version the
    /// decision was made against.
    pub async fn send(
        &self,
        order_id: Uuid,
        command: &Command,
        command_id: Uuid,
        expected_version: Option<u64>,
        context: &CallContext,
    ) -> Result<order_client::CommandAnswer, Status> {
        let client = self.with(context);
        macro_rules! send {
            ($builder:expr) => {
                $builder
                    .command_id(command_id)
                    .maybe_expected_version(expected_version)
                    .await
            };
        }
        match command.clone() {
            Command::ReserveInventory { reservation_id } => {
                send!(client.reserve_inventory(order_id, reservation_id))
            }
            Command::RejectInventory { reason } => {
                send!(client.reject_inventory(order_id, reason))
            }
            Command::AuthorizePayment { payment_id, amount } => {
                send!(client.authorize_payment(order_id, payment_id, amount))
            }
            Command::FailPayment { reason } => send!(client.fail_payment(order_id, reason)),
            Command::ConfirmOrder => send!(client.confirm_order(order_id)),
            Command::StartFulfillment => send!(client.start_fulfillment(order_id)),
            Command::ShipOrder {
                carrier,
                tracking_number,
            } => send!(client.ship_order(order_id, carrier, tracking_number)),
            Command::DeliverOrder => send!(client.deliver_order(order_id)),
            Command::CompleteOrder => send!(client.complete_order(order_id)),
            Command::ReleaseInventory => send!(client.release_inventory(order_id)),
            Command::RefundPayment { amount } => send!(client.refund_payment(order_id, amount)),
        }
    }

    /// Whether order-grpc accepts the worker's token for reading the log (health checks need
    /// no token, so a serving order-grpc may still refuse every call the worker makes): the
    /// history of the nil order, which no order has; any answer past the token check passes.
    pub async fn check_access(&self) -> Result<(), String> {
        let client = self.client.with_timeout(Duration::from_secs(3));
        let read = client.get_order_events(Uuid::nil());
        match tokio::time::timeout(Duration::from_secs(3), read).await {
            Ok(Err(error)) if crate::classify::is_deployment_fault(error.code()) => Err(format!(
                "order-grpc refuses the worker's calls (check --grpc-auth-token and its scopes): {error}"
            )),
            Ok(_) => Ok(()),
            Err(_) => Err("order-grpc: reading a log gave no answer within 3 s".to_owned()),
        }
    }

    /// Whether order-grpc reports its command service as serving.
    pub async fn check_health(&self) -> Result<(), String> {
        let client = self.client.with_timeout(Duration::from_secs(3));
        match tokio::time::timeout(Duration::from_secs(3), client.health(HEALTH_SERVICE)).await {
            Ok(Ok(Health::Serving)) => Ok(()),
            Ok(Ok(other)) => Err(format!("order-grpc reports {other:?}")),
            Ok(Err(error)) => Err(format!("order-grpc health check failed: {error}")),
            Err(_) => Err("order-grpc health check: no answer within 3 s".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_https_endpoint_takes_tls_settings() {
        let tls = GrpcTls {
            // The outer shape of a certificate (a DER sequence): order-client refuses PEM
            // without one; the handshake, which would check the rest, never happens here.
            ca_pem: b"-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n".to_vec(),
            domain: Some("order-grpc".into()),
        };
        assert!(
            OrderApi::connect_lazy(
                "https://127.0.0.1:1",
                None,
                Duration::from_secs(1),
                Some(tls)
            )
            .is_ok()
        );
    }

    #[tokio::test]
    async fn a_bad_endpoint_is_a_configuration_error() {
        assert!(OrderApi::connect_lazy("not a url", None, Duration::from_secs(1), None).is_err());
        assert!(
            OrderApi::connect_lazy(
                "http://127.0.0.1:1",
                Some("bad\ntoken"),
                Duration::from_secs(1),
                None
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn failed_calls_are_not_retried_by_the_client() {
        let api =
            OrderApi::connect_lazy("http://127.0.0.1:1", None, Duration::from_millis(500), None)
                .unwrap();
        let error = api
            .order_log(Uuid::new_v4(), 0, &CallContext::default())
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unavailable);
        assert_eq!(error.attempts(), 1, "the queue's redelivery is the retry");
    }
}

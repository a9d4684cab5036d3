//! The worker's only way to the order log: the gRPC API, as any internal client uses it. Every
//! call carries the message's correlation id and trace context, the bearer token when one is
//! configured, and a deadline.

use std::fmt;
use std::time::Duration;

use order_proto::v1 as pb;
use order_proto::v1::order_query_service_client::OrderQueryServiceClient;
use order_proto::v1::order_service_client::OrderServiceClient;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use uuid::Uuid;

use crate::saga::{Command, OrderLog};

/// The gRPC service whose health decides readiness.
const HEALTH_SERVICE: &str = "orders.v1.OrderService";

/// Trace context of one message, passed on with every call made for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
}

impl CallContext {
    /// Keep only values that are valid header text (printable ASCII, bounded).
    pub fn new(correlation_id: Option<&str>, traceparent: Option<&str>) -> Self {
        Self {
            correlation_id: header_text(correlation_id, 128),
            traceparent: header_text(traceparent, 512),
        }
    }
}

fn header_text(value: Option<&str>, max: usize) -> Option<String> {
    value
        .filter(|v| !v.is_empty() && v.len() <= max && v.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .map(str::to_owned)
}

/// Clients of `OrderService`, `OrderQueryService` and `grpc.health.v1.Health` over one
/// channel.
#[derive(Clone)]
pub struct OrderApi {
    commands: OrderServiceClient<Channel>,
    queries: OrderQueryServiceClient<Channel>,
    health: HealthClient<Channel>,
    authorization: Option<AsciiMetadataValue>,
    timeout: Duration,
}

impl fmt::Debug for OrderApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        f.debug_struct("OrderApi")
            .field("authenticated", &self.authorization.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OrderApi {
    /// A client for `endpoint` (`http://host:port`) that connects on first use, so the worker
    /// starts (and reports not ready) while order-grpc is still down.
    /// With `tls`, the endpoint must be `https://`.
    pub fn connect_lazy(
        endpoint: &str,
        token: Option<&str>,
        timeout: Duration,
        tls: Option<ClientTlsConfig>,
    ) -> Result<Self, String> {
        let mut builder = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| format!("invalid gRPC endpoint {endpoint:?}: {e}"))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(timeout)
            .tcp_nodelay(true);
        if let Some(tls) = tls {
            builder = builder
                .tls_config(tls)
                .map_err(|e| format!("gRPC TLS settings: {e}"))?;
        }
        let channel = builder.connect_lazy();
        let authorization = token
            .map(|token| {
                let mut value = MetadataValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| "the gRPC auth token is not valid header text".to_owned())?;
                value.set_sensitive(true);
                Ok::<_, String>(value)
            })
            .transpose()?;
        Ok(Self {
            commands: OrderServiceClient::new(channel.clone()),
            queries: OrderQueryServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            authorization,
            timeout,
        })
    }

    fn request<T>(&self, message: T, context: &CallContext) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        let metadata = request.metadata_mut();
        if let Some(value) = context
            .correlation_id
            .as_deref()
            .and_then(|v| MetadataValue::try_from(v).ok())
        {
            metadata.insert("x-correlation-id", value);
        }
        if let Some(value) = context
            .traceparent
            .as_deref()
            .and_then(|v| MetadataValue::try_from(v).ok())
        {
            metadata.insert("traceparent", value);
        }
        if let Some(token) = &self.authorization {
            metadata.insert("authorization", token.clone());
        }
        request
    }

    /// The order's whole history, from the log, at least up to the event at `min_position`
    /// (read-your-writes when order-grpc reads from a replica).
    pub async fn order_log(
        &self,
        order_id: Uuid,
        min_position: u64,
        context: &CallContext,
    ) -> Result<OrderLog, Status> {
        let request = pb::GetOrderEventsRequest {
            order_id: order_id.to_string(),
            after_version: 0,
            min_position: Some(min_position),
        };
        let response = self
            .queries
            .clone()
            .get_order_events(self.request(request, context))
            .await?;
        Ok(OrderLog::new(response.into_inner().events))
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
    ) -> Result<pb::CommandResponse, Status> {
        let command_id = command_id.to_string();
        let order_id = order_id.to_string();
        let mut client = self.commands.clone();
        let response = match command.clone() {
            Command::ReserveInventory { reservation_id } => {
                let message = pb::ReserveInventoryRequest {
                    command_id,
                    order_id,
                    expected_version,
                    reservation_id,
                };
                client
                    .reserve_inventory(self.request(message, context))
                    .await
            }
            Command::RejectInventory { reason } => {
                let message = pb::RejectInventoryRequest {
                    command_id,
                    order_id,
                    expected_version,
                    reason,
                };
                client
                    .reject_inventory(self.request(message, context))
                    .await
            }
            Command::AuthorizePayment { payment_id, amount } => {
                let message = pb::AuthorizePaymentRequest {
                    command_id,
                    order_id,
                    expected_version,
                    payment_id,
                    amount: Some(amount),
                };
                client
                    .authorize_payment(self.request(message, context))
                    .await
            }
            Command::FailPayment { reason } => {
                let message = pb::FailPaymentRequest {
                    command_id,
                    order_id,
                    expected_version,
                    reason,
                };
                client.fail_payment(self.request(message, context)).await
            }
            Command::ConfirmOrder => {
                let message = pb::ConfirmOrderRequest {
                    command_id,
                    order_id,
                    expected_version,
                };
                client.confirm_order(self.request(message, context)).await
            }
            Command::StartFulfillment => {
                let message = pb::StartFulfillmentRequest {
                    command_id,
                    order_id,
                    expected_version,
                };
                client
                    .start_fulfillment(self.request(message, context))
                    .await
            }
            Command::ShipOrder {
                carrier,
                tracking_number,
            } => {
                let message = pb::ShipOrderRequest {
                    command_id,
                    order_id,
                    expected_version,
                    carrier,
                    tracking_number,
                };
                client.ship_order(self.request(message, context)).await
            }
            Command::DeliverOrder => {
                let message = pb::DeliverOrderRequest {
                    command_id,
                    order_id,
                    expected_version,
                };
                client.deliver_order(self.request(message, context)).await
            }
            Command::CompleteOrder => {
                let message = pb::CompleteOrderRequest {
                    command_id,
                    order_id,
                    expected_version,
                };
                client.complete_order(self.request(message, context)).await
            }
            Command::ReleaseInventory => {
                let message = pb::ReleaseInventoryRequest {
                    command_id,
                    order_id,
                    expected_version,
                };
                client
                    .release_inventory(self.request(message, context))
                    .await
            }
            Command::RefundPayment { amount } => {
                let message = pb::RefundPaymentRequest {
                    command_id,
                    order_id,
                    expected_version,
                    amount: Some(amount),
                };
                client.refund_payment(self.request(message, context)).await
            }
        }?;
        Ok(response.into_inner())
    }

    /// Whether order-grpc reports its command service as serving.
    pub async fn check_health(&self) -> Result<(), String> {
        let mut request = Request::new(tonic_health::pb::HealthCheckRequest {
            service: HEALTH_SERVICE.to_owned(),
        });
        request.set_timeout(Duration::from_secs(3));
        let mut health = self.health.clone();
        match tokio::time::timeout(Duration::from_secs(3), health.check(request)).await {
            Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32 => {
                Ok(())
            }
            Ok(Ok(response)) => Err(format!(
                "order-grpc reports {:?}",
                ServingStatus::try_from(response.get_ref().status)
                    .unwrap_or(ServingStatus::Unknown)
            )),
            Ok(Err(status)) => Err(format!(
                "order-grpc health check failed: {:?} {}",
                status.code(),
                status.message()
            )),
            Err(_) => Err("order-grpc health check: no answer within 3 s".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_header_text_is_passed_on() {
        let context = CallContext::new(Some("req-1"), Some("00-abc-def-01"));
        assert_eq!(context.correlation_id.as_deref(), Some("req-1"));
        assert_eq!(context.traceparent.as_deref(), Some("00-abc-def-01"));
        let long = "x".repeat(129);
        let context = CallContext::new(Some(&long), Some("line\nbreak"));
        assert_eq!(context, CallContext::default());
        assert_eq!(CallContext::new(Some(""), None), CallContext::default());
    }

    #[tokio::test]
    async fn requests_carry_context_token_and_deadline() {
        let api = OrderApi::connect_lazy(
            "http://127.0.0.1:1",
            Some("a-token-of-sixteen-chars"),
            Duration::from_millis(1500),
            None,
        )
        .unwrap();
        let request = api.request((), &CallContext::new(Some("req-1"), Some("00-t-s-01")));
        let metadata = request.metadata();
        assert_eq!(metadata.get("x-correlation-id").unwrap(), "req-1");
        assert_eq!(metadata.get("traceparent").unwrap(), "00-t-s-01");
        assert_eq!(
            metadata.get("authorization").unwrap(),
            "Bearer a-token-of-sixteen-chars"
        );
        assert_eq!(metadata.get("grpc-timeout").unwrap(), "1500000u");
        assert!(!format!("{api:?}").contains("sixteen"), "no token in Debug");
    }

    #[tokio::test]
    async fn an_https_endpoint_takes_tls_settings() {
        let tls = ClientTlsConfig::new().domain_name("order-grpc");
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
    }
}

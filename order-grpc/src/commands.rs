//! `OrderService`: every command RPC runs through the store's command handler.

use std::time::Instant;

use order_domain::Order;
use order_domain::es::Metadata;
use order_proto::v1 as pb;
use order_runtime::trace;
use order_store::{CommandContext, CommandHandler, HandleError};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::convert::{InvalidRequest, ParsedCommand, status_label};
use crate::error::ApiError;
use crate::gateway::RequestContext;

/// The command side of the API.
#[derive(Debug, Clone)]
pub struct Commands {
    handler: CommandHandler<Order>,
}

impl Commands {
    pub fn new(handler: CommandHandler<Order>) -> Self {
        Self { handler }
    }

    async fn run<R>(&self, request: Request<R>) -> Result<Response<pb::CommandResponse>, Status>
    where
        ParsedCommand: TryFrom<R, Error = InvalidRequest>,
    {
        let started = Instant::now();
        let context = request
            .extensions()
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(|| RequestContext {
                correlation_id: uuid::Uuid::new_v4().to_string(),
                traceparent: None,
                tracestate: None,
                actor: None,
            });
        let parsed = match ParsedCommand::try_from(request.into_inner()) {
            Ok(parsed) => parsed,
            Err(invalid) => {
                metrics::counter!("order_commands_total", "command" => "unknown", "outcome" => "invalid")
                    .increment(1);
                return Err(ApiError::from(invalid).into_status());
            }
        };
        let kind = parsed.command.kind().as_str();
        let order_id = parsed.order_id.as_uuid();
        // One span per command, child of the caller's trace; every log line inside carries
        // the correlation id, the order id and the trace id.
        let span = tracing::info_span!(
            "command",
            otel.name = %format!("orders.v1.OrderService/{kind}"),
            rpc = kind,
            order_id = %order_id,
            correlation_id = %context.correlation_id,
            trace_id = tracing::field::Empty,
        );
        trace::set_parent(
            &span,
            context.traceparent.as_deref(),
            context.tracestate.as_deref(),
        );
        span.record(
            "trace_id",
            trace::trace_id(&span, context.traceparent.as_deref()),
        );
        // The events record this command's own span as their trace context, so that the
        // projector and the workers continue the same trace.
        let (traceparent, tracestate) = trace::outgoing(
            &span,
            context.traceparent.as_deref(),
            context.tracestate.as_deref(),
        );
        let command_context = CommandContext {
            command_id: parsed.command_id,
            expected_version: parsed.expected_version,
            metadata: Metadata {
                correlation_id: Some(context.correlation_id.clone()),
                traceparent,
                tracestate,
                actor: context.actor,
                ..Metadata::default()
            },
        };
        let result = self
            .handler
            .handle(order_id, &parsed.command, &command_context)
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        let outcome = match &result {
            Ok(handled) if handled.duplicate => "duplicate",
            Ok(_) => "ok",
            Err(HandleError::Rejected(_)) => "rejected",
            Err(HandleError::Store(
                order_store::Error::WrongExpectedVersion { .. }
                | order_store::Error::Conflict { .. },
            )) => "conflict",
            Err(HandleError::Store(e)) if e.is_transient() => "unavailable",
            Err(HandleError::Store(_)) => "error",
        };
        metrics::counter!("order_commands_total", "command" => kind, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("order_command_duration_seconds", "command" => kind)
            .record(started.elapsed().as_secs_f64());
        if let Ok(handled) = &result
            && handled.attempts > 1
        {
            metrics::counter!("order_command_redecides_total", "command" => kind)
                .increment(u64::from(handled.attempts - 1));
        }
        match result {
            Ok(handled) => {
                tracing::debug!(
                    command = kind,
                    order_id = %order_id,
                    correlation_id = %context.correlation_id,
                    version = handled.stream_version,
                    duplicate = handled.duplicate,
                    "command handled"
                );
                Ok(Response::new(pb::CommandResponse {
                    order_id: order_id.to_string(),
                    version: handled.stream_version,
                    global_position: handled.global_position,
                    status: status_label(&handled.status) as i32,
                    duplicate: handled.duplicate,
                }))
            }
            Err(error) => Err(ApiError::from(error).into_status()),
        }
    }
}

#[tonic::async_trait]
impl pb::order_service_server::OrderService for Commands {
    async fn place_order(
        &self,
        r: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
    async fn reserve_inventory(
        &self,
        r: Request<pb::ReserveInventoryRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
    async fn reject_inventory(
        &self,
        r: Request<pb::RejectInventoryRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
    async fn authorize_payment(
        &self,
        r: Request<pb::AuthorizePaymentRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
    async fn fail_payment(
        &self,
        r: Request<pb::FailPaymentRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
    async fn confirm_order(
        &self,
        r: Request<pb::ConfirmOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
    async fn start_fulfillment(
        &self,
        r: Request<pb::StartFulfillmentRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
    async fn ship_order(
        &self,
        r: Request<pb::ShipOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
    async fn deliver_order(
        &self,
        r: Request<pb::DeliverOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
    async fn complete_order(
        &self,
        r: Request<pb::CompleteOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
    async fn cancel_order(
        &self,
        r: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
    async fn release_inventory(
        &self,
        r: Request<pb::ReleaseInventoryRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
    async fn refund_payment(
        &self,
        r: Request<pb::RefundPaymentRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(r).await
    }
}

//! `OrderService`: every command RPC runs through the store's command handler.

use std::sync::Arc;
use std::time::Instant;

use metrics::{Counter, Histogram};
use order_domain::Order;
use order_domain::es::Metadata;
use order_domain::order::CommandKind;
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
    metrics: Arc<CommandMetrics>,
}

/// How a command ended, as the `outcome` label says.
const OUTCOMES: [&str; 8] = [
    "ok",
    "duplicate",
    "rejected",
    "conflict",
    "unavailable",
    "error",
    "invalid",
    // Counted by the gateway, whose timer answers DEADLINE_EXCEEDED; here so that the series
    // is on /metrics from the start.
    "deadline",
];
/// The index of `invalid` in [`OUTCOMES`]: the caller's mistake (a bad request, a command id
/// used before for another request).
const INVALID: usize = 6;

/// The metric series of every command kind, looked up once: finding a series by name and
/// labels on every command costs more than recording into it.
#[derive(Debug)]
struct CommandMetrics {
    kinds: Vec<KindMetrics>,
}

#[derive(Debug)]
struct KindMetrics {
    outcomes: [Counter; OUTCOMES.len()],
    duration: Histogram,
    redecides: Counter,
}

impl CommandMetrics {
    fn new() -> Self {
        // The recorder must exist before handles are taken from it.
        order_runtime::telemetry::metrics();
        // Counters operations.md names that count rare things are on /metrics from the start,
        // at 0, so that a rate or an alarm over them has a series before the first one.
        for name in [
            "order_grpc_requests_shed_total",
            "order_grpc_deadline_exceeded_total",
            "order_store_append_conflicts_total",
            "order_store_group_commit_fallbacks_total",
        ] {
            metrics::counter!(name).increment(0);
        }
        order_store::register_metrics();
        Self {
            kinds: CommandKind::ALL
                .iter()
                .map(|kind| {
                    let kind = kind.as_str();
                    KindMetrics {
                        outcomes: OUTCOMES.map(|outcome| {
                            metrics::counter!("order_commands_total", "command" => kind, "outcome" => outcome)
                        }),
                        duration: metrics::histogram!("order_command_duration_seconds", "command" => kind),
                        redecides: metrics::counter!("order_command_redecides_total", "command" => kind),
                    }
                })
                .collect(),
        }
    }

    fn of(&self, kind: CommandKind) -> Option<&KindMetrics> {
        self.kinds.get(kind as usize)
    }
}

/// The span name of a command: the RPC's full name, as OpenTelemetry's conventions want.
fn otel_name(kind: CommandKind) -> &'static str {
    match kind {
        CommandKind::PlaceOrder => "orders.v1.OrderService/PlaceOrder",
        CommandKind::ReserveInventory => "orders.v1.OrderService/ReserveInventory",
        CommandKind::RejectInventory => "orders.v1.OrderService/RejectInventory",
        CommandKind::AuthorizePayment => "orders.v1.OrderService/AuthorizePayment",
        CommandKind::FailPayment => "orders.v1.OrderService/FailPayment",
        CommandKind::ConfirmOrder => "orders.v1.OrderService/ConfirmOrder",
        CommandKind::StartFulfillment => "orders.v1.OrderService/StartFulfillment",
        CommandKind::ShipOrder => "orders.v1.OrderService/ShipOrder",
        CommandKind::DeliverOrder => "orders.v1.OrderService/DeliverOrder",
        CommandKind::CompleteOrder => "orders.v1.OrderService/CompleteOrder",
        CommandKind::CancelOrder => "orders.v1.OrderService/CancelOrder",
        CommandKind::ReleaseInventory => "orders.v1.OrderService/ReleaseInventory",
        CommandKind::RefundPayment => "orders.v1.OrderService/RefundPayment",
    }
}

impl Commands {
    pub fn new(handler: CommandHandler<Order>) -> Self {
        Self {
            handler,
            metrics: Arc::new(CommandMetrics::new()),
        }
    }

    async fn run<R>(
        &self,
        rpc: CommandKind,
        mut request: Request<R>,
    ) -> Result<Response<pb::CommandResponse>, Status>
    where
        ParsedCommand: TryFrom<R, Error = InvalidRequest>,
    {
        let started = Instant::now();
        let context = request
            .extensions_mut()
            .remove::<RequestContext>()
            .unwrap_or_else(|| RequestContext {
                correlation_id: uuid::Uuid::new_v4().to_string(),
                causation_id: None,
                traceparent: None,
                tracestate: None,
                actor: None,
                // Commands do not wait on it; only a call that bypassed the gateway lands here.
                deadline: tokio::time::Instant::now(),
            });
        let parsed = match ParsedCommand::try_from(request.into_inner()) {
            Ok(parsed) => parsed,
            Err(invalid) => {
                if let Some(metrics) = self.metrics.of(rpc) {
                    metrics.outcomes[INVALID].increment(1);
                }
                return Err(ApiError::from(invalid).into_status());
            }
        };
        let command_kind = parsed.command.kind();
        let kind = command_kind.as_str();
        let order_id = parsed.order_id.as_uuid();
        // One span per command, child of the caller's trace; every log line inside carries
        // the correlation id, the order id and the trace id.
        let span = tracing::info_span!(
            "command",
            otel.name = otel_name(command_kind),
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
                correlation_id: Some(context.correlation_id),
                causation_id: context.causation_id,
                traceparent,
                tracestate,
                actor: context.actor,
                ..Metadata::default()
            },
        };
        // Boxed: the handler's state machine is large, and futures are moved by copying them.
        let result = Box::pin(
            self.handler
                .handle(order_id, &parsed.command, &command_context),
        )
        .instrument(span.clone())
        .await;
        let _entered = span.enter();
        let outcome = match &result {
            Ok(handled) if handled.duplicate => 1,
            Ok(_) => 0,
            Err(HandleError::Rejected(_)) => 2,
            Err(HandleError::Store(
                order_store::Error::WrongExpectedVersion { .. }
                | order_store::Error::Conflict { .. },
            )) => 3,
            // Answered UNAVAILABLE.
            Err(HandleError::Store(e)) if e.is_unavailable() => 4,
            // The caller's mistake; the store's other refusals (a check the database made, a
            // command that decided nothing) are the service's own, `error`.
            Err(HandleError::Store(order_store::Error::CommandIdReused { .. })) => INVALID,
            Err(HandleError::Store(_)) => 5,
        };
        if let Some(metrics) = self.metrics.of(command_kind) {
            metrics.outcomes[outcome].increment(1);
            metrics.duration.record(started.elapsed().as_secs_f64());
            if let Ok(handled) = &result
                && handled.attempts > 1
            {
                metrics.redecides.increment(u64::from(handled.attempts - 1));
            }
        }
        match result {
            Ok(handled) => {
                tracing::debug!(
                    command = kind,
                    order_id = %order_id,
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
        self.run(CommandKind::PlaceOrder, r).await
    }
    async fn reserve_inventory(
        &self,
        r: Request<pb::ReserveInventoryRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(CommandKind::ReserveInventory, r).await
    }
    async fn reject_inventory(
        &self,
        r: Request<pb::RejectInventoryRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(CommandKind::RejectInventory, r).await
    }
    async fn authorize_payment(
        &self,
        r: Request<pb::AuthorizePaymentRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(CommandKind::AuthorizePayment, r).await
    }
    async fn fail_payment(
        &self,
        r: Request<pb::FailPaymentRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(CommandKind::FailPayment, r).await
    }
    async fn confirm_order(
        &self,
        r: Request<pb::ConfirmOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(CommandKind::ConfirmOrder, r).await
    }
    async fn start_fulfillment(
        &self,
        r: Request<pb::StartFulfillmentRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(CommandKind::StartFulfillment, r).await
    }
    async fn ship_order(
        &self,
        r: Request<pb::ShipOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(CommandKind::ShipOrder, r).await
    }
    async fn deliver_order(
        &self,
        r: Request<pb::DeliverOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(CommandKind::DeliverOrder, r).await
    }
    async fn complete_order(
        &self,
        r: Request<pb::CompleteOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(CommandKind::CompleteOrder, r).await
    }
    async fn cancel_order(
        &self,
        r: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(CommandKind::CancelOrder, r).await
    }
    async fn release_inventory(
        &self,
        r: Request<pb::ReleaseInventoryRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(CommandKind::ReleaseInventory, r).await
    }
    async fn refund_payment(
        &self,
        r: Request<pb::RefundPaymentRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.run(CommandKind::RefundPayment, r).await
    }
}

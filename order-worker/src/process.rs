//! One event, one saga step (or two, for compensations): read the order's log, check the
//! step is still owed, ask the provider, send the command, and say how it went.
//!
//! The log is read through `GetOrderEvents` before every step: it is the authority on where
//! the order is (the read model may lag), it confirms the message matches the log (the event
//! id at the message's stream version), and it holds what the step needs (the order total,
//! the lines, the address, the reservation and payment references).
//!
//! **Expected versions.** Every command carries `expected_version` = the order's version as
//! just read, the state the decision was made against. If anything was appended in between
//! (ABORTED), the log is read again: when the step is no longer owed the message is obsolete,
//! otherwise the step is decided again against the new version (at most
//! [`REDECIDE_ATTEMPTS`] times, then the message is retried later). Pinning the event's own
//! stream version instead would turn harmless interleavings (a partial refund while Confirmed)
//! into endless conflicts.
//!
//! **Delivery is asynchronous.** A carrier reports delivery later, so the `deliver` step asks the
//! shipping provider where the parcel is (`GET /v1/shipments/{tracking_number}`): once it says
//! delivered, the step sends DeliverOrder. While the parcel is in transit the step polls (every
//! `Retry-After` the carrier sends, else `delivery_poll`) for up to `delivery_wait`, keeping the
//! message in flight; after that the message is released and comes back after `delivery_recheck`
//! (or the carrier's longer `Retry-After`; never past 12 hours from the receipt, the most SQS
//! allows): outcome [`Outcome::Waiting`], no failure. Each such recheck is one SQS receive, so the
//! redrive policy bounds the total wait (`maxReceiveCount` x `delivery_recheck`; the defaults: 10 x
//! 6 hours); a parcel still in transit at the last receive is dead-lettered (`delivery_overdue`),
//! where an operator looks at it.
//!
//! **Effects the log never recorded.** A reservation or an authorization whose answer was lost
//! stays held at the provider if the order is cancelled before the step is tried again: the
//! step is obsolete, and compensations are built from the log. A step found obsolete that way
//! undoes it (`Processor::undo_unrecorded`); a cancellation's void refused `already_captured`
//! (a capture whose answer was lost) refunds instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use order_messages::CloudEvent;
use order_proto::v1 as pb;
use uuid::Uuid;

use crate::api::{CallContext, OrderApi, Status};
use crate::classify::{Class, Verdict, classify, resolve};
use crate::providers::guard::{CallError, Guard};
use crate::providers::{
    Address, AuthorizeRequest, CaptureRequest, Delivery, DeliveryRequest, Line, PaymentAction,
    Providers, RefundRequest, ReleaseRequest, ReserveRequest, ShipRequest,
};
use crate::saga::{self, Command, OrderLog, Step};

/// How often a step is decided again after its command lost a race on the order's version.
pub const REDECIDE_ATTEMPTS: u32 = 3;

/// The longest a message can be hidden from the queue (SQS: 12 hours).
const LONGEST_RECHECK: Duration = Duration::from_secs(43_200);

/// How the `deliver` step waits for a carrier (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySettings {
    /// How long one delivery of the message polls the carrier before it is released.
    pub wait: Duration,
    /// Pause between polls when the carrier sends no `Retry-After`.
    pub poll: Duration,
    /// When a released message comes back to ask again.
    pub recheck: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(20),
            poll: Duration::from_secs(2),
            recheck: Duration::from_secs(6 * 3600),
        }
    }
}

/// How handling a message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The commands sent (a repeated command answered as a duplicate counts as sent).
    Done { commands: Vec<&'static str> },
    /// The event asks for nothing.
    Ignored,
    /// Every step it asks for was done before or is no longer owed.
    Obsolete,
    /// Try again later, not before `after` when known (a provider's `Retry-After`, an open
    /// circuit's next trial).
    Retry {
        /// What failed.
        reason: String,
        /// The earliest useful retry, if known.
        after: Option<Duration>,
        /// A provider's circuit is open, or order-grpc refuses the worker itself (its token,
        /// its scopes: an outage): the message is not at fault, so it must not use up its
        /// receives for it.
        outage: bool,
    },
    /// Nothing failed, but the step cannot finish yet (a parcel in transit): ask again after
    /// `recheck_in`.
    Waiting {
        /// What is awaited.
        reason: String,
        /// When to ask again.
        recheck_in: Duration,
    },
    /// It can never succeed: dead-letter it.
    DeadLetter {
        /// The `dlq_kind` attribute.
        kind: &'static str,
        /// The `dlq_reason` attribute.
        reason: String,
    },
}

impl Outcome {
    fn retry(reason: impl Into<String>) -> Self {
        Self::Retry {
            reason: reason.into(),
            after: None,
            outage: false,
        }
    }

    /// A call to order-grpc failed transiently: retry; a deployment fault (the token or its
    /// scopes, version skew) is an outage, so the message is never dead-lettered for it.
    fn api_retry(reason: impl Into<String>, code: tonic::Code) -> Self {
        Self::Retry {
            reason: reason.into(),
            after: None,
            outage: crate::classify::is_deployment_fault(code),
        }
    }

    fn dead(kind: &'static str, reason: impl Into<String>) -> Self {
        Self::DeadLetter {
            kind,
            reason: reason.into(),
        }
    }
}

/// A provider guarded by its breaker and retry policy.
#[derive(Debug)]
pub struct Guards {
    /// The inventory provider's guard.
    pub inventory: Guard,
    /// The payment provider's guard.
    pub payment: Guard,
    /// The shipping provider's guard.
    pub shipping: Guard,
}

/// What an operator does about a reservation or authorization the undo of a cancelled order's
/// step would have asked for again past the key lifetime.
const UNDO_PAST_LIFETIME: &str = "the order was cancelled before the step's result reached its \
     log, so if it does, release the reservation or void the authorization at the provider \
     (nothing is to be recorded), then delete this dead letter";

/// How long providers remember an idempotency key, by default: the provider contract's
/// minimum (docs/providers.md).
pub const PROVIDER_KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Handles one event: the saga step it asks for.
#[derive(Debug)]
pub struct Processor {
    api: OrderApi,
    providers: Providers,
    guards: Arc<Guards>,
    delivery: DeliverySettings,
    key_lifetime: Option<Duration>,
}

enum StepEnd {
    /// The command sent, and the global position its response reported.
    Sent(&'static str, u64),
    Obsolete,
    Failed(Outcome),
}

impl Processor {
    /// A processor calling order-grpc through `api` and the providers through their guards.
    pub fn new(
        api: OrderApi,
        providers: Providers,
        guards: Arc<Guards>,
        delivery: DeliverySettings,
    ) -> Self {
        Self {
            api,
            providers,
            guards,
            delivery,
            key_lifetime: Some(PROVIDER_KEY_LIFETIME),
        }
    }

    /// How long the providers remember an idempotency key (`None`: for ever, no check). No
    /// message (redelivered, redriven from the DLQ or republished) sends a call that creates
    /// something at a provider (a reservation, an authorization, a shipment, a refund) once its
    /// event is older than that, less a margin (a tenth, at most an hour): an earlier delivery
    /// may have made the call that long ago, and a provider that forgot its key would do it a
    /// second time. The message is dead-lettered instead (`dlq_kind` = `key_lifetime`), for an
    /// operator to ask the provider (docs/operations.md).
    pub fn with_key_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.key_lifetime = lifetime;
        self
    }

    /// `Ok` when `call` (idempotency key `key`) may be sent for `trigger`'s step. `then`: what
    /// an operator does when the provider holds it, the end of the dead letter's reason.
    fn key_remembered(
        &self,
        call: &str,
        key: Uuid,
        trigger: &pb::Event,
        then: &str,
    ) -> Result<(), Outcome> {
        // Whether or not this message was received before: a message redriven from the DLQ
        // or republished after a restore is received for the first time again, and an
        // earlier delivery may still have made the call.
        let Some(lifetime) = self.key_lifetime else {
            return Ok(());
        };
        let Some(recorded) = trigger
            .recorded_at
            .as_ref()
            .and_then(|t| std::time::SystemTime::try_from(*t).ok())
        else {
            return Ok(());
        };
        let age = std::time::SystemTime::now()
            .duration_since(recorded)
            .unwrap_or_default();
        let limit = lifetime.saturating_sub((lifetime / 10).min(Duration::from_secs(3600)));
        if age < limit {
            return Ok(());
        }
        // Whole seconds ("23h 30m 12s"), milliseconds under a minute ("1s 500ms"): a short
        // lifetime (a drill) does not read "past 0s".
        let words = |d: Duration| {
            humantime::format_duration(if d < Duration::from_secs(60) {
                Duration::from_millis(d.as_millis() as u64)
            } else {
                Duration::from_secs(d.as_secs())
            })
        };
        Err(Outcome::dead(
            "key_lifetime",
            format!(
                "{call} (Idempotency-Key {key}) is due for an event recorded {} ago, past {}: \
                 the {} a provider must remember its keys, less a margin. An earlier delivery \
                 may have made it, and the provider may have forgotten; ask the provider whether \
                 it holds a {call} with that key: {then}",
                words(age),
                words(limit),
                words(lifetime)
            ),
        ))
    }

    /// The gRPC client.
    pub fn api(&self) -> &OrderApi {
        &self.api
    }

    /// Handle one event. `redelivered`: an earlier delivery of this message may have called a
    /// provider (it was received before), so a step found obsolete by a cancellation undoes
    /// what that call may have done (see `Processor::undo_unrecorded`).
    pub async fn process(
        &self,
        event: &CloudEvent,
        context: &CallContext,
        redelivered: bool,
    ) -> Outcome {
        if !saga::triggers(&event.event_type) {
            return Outcome::Ignored;
        }
        // The newest position this message knows of: the log read must hold at least that
        // (order-grpc may read from a replica that lags).
        let mut known = event.globalposition;
        let log = match self.read_log(event.subject, known, context).await {
            Ok(log) => log,
            Err(outcome) => return outcome,
        };
        let trigger = match log.at(event.streamversion) {
            Some(found)
                if found.event_id == event.id.to_string()
                    && found.event_type == event.event_type =>
            {
                found.clone()
            }
            _ => {
                return Outcome::dead(
                    "mismatch",
                    format!(
                        "the message does not match the order's log: event {} ({}) is not at \
                         version {} of order {}",
                        event.id, event.event_type, event.streamversion, event.subject
                    ),
                );
            }
        };
        let steps = match saga::steps(&trigger) {
            Ok(steps) if steps.is_empty() => return Outcome::Ignored,
            Ok(steps) => steps,
            Err(why) => return Outcome::dead("payload", why),
        };
        let mut commands = Vec::new();
        let mut log = Some(log);
        // The steps of one event are independent (a cancellation's release and its payment
        // compensation): one that fails holds up none of the others; the message then ends
        // as the first failure says, and its next delivery finds the others done.
        let mut failed = None;
        for step in &steps {
            let current = match log.take() {
                Some(log) => log,
                None => match self.read_log(event.subject, known, context).await {
                    Ok(log) => log,
                    // A step failed before: its outcome is the message's.
                    Err(outcome) => return failed.unwrap_or(outcome),
                },
            };
            match self
                .run_step(
                    step,
                    event.subject,
                    event.id,
                    &trigger,
                    current,
                    context,
                    redelivered,
                )
                .await
            {
                StepEnd::Sent(command, position) => {
                    known = known.max(position);
                    commands.push(command);
                }
                StepEnd::Obsolete => {}
                StepEnd::Failed(outcome) => {
                    failed.get_or_insert(outcome);
                }
            }
        }
        if let Some(outcome) = failed {
            return outcome;
        }
        if commands.is_empty() {
            Outcome::Obsolete
        } else {
            Outcome::Done { commands }
        }
    }

    async fn read_log(
        &self,
        order_id: Uuid,
        min_position: u64,
        context: &CallContext,
    ) -> Result<OrderLog, Outcome> {
        match self.api.order_log(order_id, min_position, context).await {
            Ok(log) => Ok(log),
            Err(status) => Err(match classify(status.code()) {
                Class::Permanent => Outcome::dead(
                    code_name(&status),
                    format!("GetOrderEvents: {}", describe(&status)),
                ),
                _ => Outcome::api_retry(
                    format!("GetOrderEvents: {}", describe(&status)),
                    status.code(),
                ),
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        step: &Step,
        order_id: Uuid,
        event_id: Uuid,
        trigger: &pb::Event,
        mut log: OrderLog,
        context: &CallContext,
        redelivered: bool,
    ) -> StepEnd {
        let started = Instant::now();
        // The provider's answer this delivery got, if any: an effect the log may never record.
        let mut decided: Option<Command> = None;
        // Every way out but "no longer owed" (which may have an effect to undo) returns here.
        'no_longer_owed: {
            for _ in 0..REDECIDE_ATTEMPTS {
                if !saga::owed(step, trigger, &log) {
                    tracing::debug!(
                        step = step.name(),
                        status = ?log.status(),
                        "step no longer owed"
                    );
                    break 'no_longer_owed;
                }
                let decision = self.decide(step, order_id, event_id, trigger, &log);
                let command = match decision.await {
                    Ok(command) => command,
                    Err(outcome) => return StepEnd::Failed(outcome),
                };
                decided = Some(command.clone());
                let command_id = saga::command_id(event_id, command.name());
                let sent = self
                    .api
                    .send(order_id, &command, command_id, Some(log.version()), context)
                    .await;
                let status = match sent {
                    Ok(response) => {
                        crate::metrics::step(step.name(), started.elapsed());
                        // Per message: DEBUG, as operations.md's levels say (INFO is lifecycle).
                        tracing::debug!(
                            step = step.name(),
                            command = command.name(),
                            %command_id,
                            version = response.version,
                            duplicate = response.duplicate,
                            "saga step done"
                        );
                        return StepEnd::Sent(command.name(), response.global_position);
                    }
                    Err(status) => status,
                };
                let what = format!("{}: {}", command.name(), describe(&status));
                let verdict = match classify(status.code()) {
                    Class::Transient => Verdict::Retry,
                    Class::Permanent => Verdict::DeadLetter,
                    Class::DependsOnState => {
                        // At least as new as the log the decision was made on.
                        log = match self.read_log(order_id, log.last_position(), context).await {
                            Ok(log) => log,
                            Err(outcome) => return StepEnd::Failed(outcome),
                        };
                        resolve(status.code(), saga::owed(step, trigger, &log))
                    }
                };
                match verdict {
                    Verdict::Retry => {
                        return StepEnd::Failed(Outcome::api_retry(what, status.code()));
                    }
                    Verdict::DeadLetter => {
                        return StepEnd::Failed(Outcome::dead(code_name(&status), what));
                    }
                    Verdict::Obsolete => {
                        tracing::debug!(step = step.name(), reason = %what, "step overtaken");
                        break 'no_longer_owed;
                    }
                    Verdict::Redecide => {
                        tracing::debug!(step = step.name(), reason = %what, "deciding again");
                    }
                }
            }
            return StepEnd::Failed(Outcome::retry(format!(
                "{}: the order kept changing under {REDECIDE_ATTEMPTS} attempts",
                step.name()
            )));
        }
        self.undo_unrecorded(
            step,
            order_id,
            event_id,
            trigger,
            &log,
            decided.as_ref(),
            redelivered,
        )
        .await
    }

    /// Ask the provider (if the step needs one) and turn its answer into the command.
    async fn decide(
        &self,
        step: &Step,
        order_id: Uuid,
        event_id: Uuid,
        trigger: &pb::Event,
        log: &OrderLog,
    ) -> Result<Command, Outcome> {
        let key = |command: &str| saga::command_id(event_id, command);
        // A call that creates something, about to be repeated: only while the provider surely
        // remembers its key.
        // What an operator does when the provider holds the call's effect: record it with the
        // step's command, under the command's id (the worker's, so the redriven message finds
        // the step done).
        let remembered = |call: &str, key: Uuid, command: &str| {
            let id = saga::command_id(event_id, command);
            let then = format!(
                "if it does, record it with {command} under command id {id} ({}), then redrive; \
                 if not, redrive to a worker with the key lifetime check off",
                record_line(command, order_id, id)
            );
            self.key_remembered(call, key, trigger, &then)
        };
        let placed = || {
            log.placed()
                .ok_or_else(|| Outcome::dead("log", "the order's log has no OrderPlaced event"))
        };
        let guards = &self.guards;
        if let Some(hold) = saga::legacy_hold(step, log) {
            // Reserved or paid in the legacy system (imported history): no provider here
            // knows it, and the log must not say it went back before it did.
            return Err(legacy_hold_dead_letter(order_id, event_id, step, &hold));
        }
        Ok(match step {
            Step::Inventory => {
                let request = reserve_request(order_id, event_id, log)?;
                remembered("reserve", request.idempotency_key, "ReserveInventory")?;
                let inventory = &self.providers.inventory;
                match guards
                    .inventory
                    .call("reserve", || inventory.reserve(request.clone()))
                    .await
                {
                    Ok(reservation_id) => Command::ReserveInventory { reservation_id },
                    Err(CallError::Refused(reason)) => Command::RejectInventory {
                        reason: bounded(&reason),
                    },
                    Err(other) => {
                        return Err(not_done(
                            &format!("inventory reserve for order {order_id}"),
                            other,
                        ));
                    }
                }
            }
            Step::Payment => {
                let request = authorize_request(order_id, event_id, log)?;
                remembered("authorize", request.idempotency_key, "AuthorizePayment")?;
                let amount = request.amount.clone();
                let payment = &self.providers.payment;
                match guards
                    .payment
                    .call("authorize", || payment.authorize(request.clone()))
                    .await
                {
                    Ok(payment_id) => Command::AuthorizePayment { payment_id, amount },
                    Err(CallError::Refused(reason)) => Command::FailPayment {
                        reason: bounded(&reason),
                    },
                    Err(other) => {
                        return Err(not_done(
                            &format!("payment authorize for order {order_id}"),
                            other,
                        ));
                    }
                }
            }
            Step::Confirm => {
                // Confirming captures the authorized amount.
                let payment_id = log
                    .payment_id()
                    .ok_or_else(|| {
                        Outcome::dead("log", "the order's log has no PaymentAuthorized event")
                    })?
                    .to_owned();
                let amount = placed()?
                    .total
                    .clone()
                    .ok_or_else(|| Outcome::dead("log", "OrderPlaced without a total"))?;
                let request = CaptureRequest {
                    order_id,
                    payment_id,
                    amount,
                    idempotency_key: key("ConfirmOrder"),
                };
                let payment = &self.providers.payment;
                guards
                    .payment
                    .call("capture", || payment.capture(request.clone()))
                    .await
                    .map_err(|e| {
                        refusal_is_final(&format!("payment capture of {}", request.payment_id), e)
                    })?;
                Command::ConfirmOrder
            }
            Step::StartFulfillment => Command::StartFulfillment,
            Step::Complete => Command::CompleteOrder,
            Step::Ship => {
                let placed = placed()?;
                let address = placed
                    .shipping_address
                    .as_ref()
                    .map(|a| Address {
                        recipient: a.recipient.clone(),
                        line1: a.line1.clone(),
                        line2: a.line2.clone(),
                        city: a.city.clone(),
                        postal_code: a.postal_code.clone(),
                        country: a.country.clone(),
                    })
                    .unwrap_or_default();
                let request = ShipRequest {
                    order_id,
                    method: pb::ShippingMethod::try_from(placed.shipping_method)
                        .unwrap_or(pb::ShippingMethod::Unspecified),
                    address,
                    lines: lines(placed),
                    idempotency_key: key("ShipOrder"),
                };
                remembered("ship", request.idempotency_key, "ShipOrder")?;
                let shipping = &self.providers.shipping;
                let shipment = guards
                    .shipping
                    .call("ship", || shipping.ship(request.clone()))
                    .await
                    .map_err(|e| {
                        refusal_is_final(&format!("shipping ship for order {order_id}"), e)
                    })?;
                Command::ShipOrder {
                    carrier: shipment.carrier,
                    tracking_number: shipment.tracking_number,
                }
            }
            Step::Deliver => {
                let tracking_number = match &trigger.payload {
                    Some(pb::event::Payload::OrderShipped(shipped)) => {
                        shipped.tracking_number.clone()
                    }
                    _ => String::new(),
                };
                let request = DeliveryRequest {
                    order_id,
                    tracking_number,
                };
                self.await_delivery(&request).await?;
                Command::DeliverOrder
            }
            Step::ReleaseInventory => {
                let request = ReleaseRequest {
                    order_id,
                    reservation_id: log.reservation_id().unwrap_or_default().to_owned(),
                    idempotency_key: key("ReleaseInventory"),
                };
                let inventory = &self.providers.inventory;
                guards
                    .inventory
                    .call("release", || inventory.release(request.clone()))
                    .await
                    .map_err(|e| {
                        refusal_is_final(
                            &format!("inventory release of {}", request.reservation_id),
                            e,
                        )
                    })?;
                Command::ReleaseInventory
            }
            Step::RefundPayment { amount, action } => {
                let request = RefundRequest {
                    order_id,
                    payment_id: log.payment_id().unwrap_or_default().to_owned(),
                    amount: amount.clone(),
                    action: *action,
                    idempotency_key: key("RefundPayment"),
                };
                if *action == PaymentAction::Refund {
                    remembered("refund", request.idempotency_key, "RefundPayment")?;
                }
                let payment = &self.providers.payment;
                // A void is a call of its own to the provider: its metrics and reasons say so.
                let operation = match action {
                    PaymentAction::Void => "void",
                    PaymentAction::Refund => "refund",
                };
                match guards
                    .payment
                    .call(operation, || payment.refund(request.clone()))
                    .await
                {
                    Ok(()) => {}
                    Err(CallError::Refused(reason))
                        if *action == PaymentAction::Void
                            && refusal_code(&reason) == "already_captured" =>
                    {
                        // The capture reached the provider but not the log (its answer was
                        // lost, and the order was cancelled before the capture was tried
                        // again): the money was taken, so it goes back as a refund.
                        let refund = RefundRequest {
                            action: PaymentAction::Refund,
                            idempotency_key: key("RefundPayment/captured"),
                            ..request
                        };
                        remembered("refund", refund.idempotency_key, "RefundPayment")?;
                        tracing::warn!(
                            %order_id,
                            payment_id = %refund.payment_id,
                            "the authorization to void was captured, though the order's log never \
                             recorded it: refunding the captured amount instead"
                        );
                        guards
                            .payment
                            .call("refund", || payment.refund(refund.clone()))
                            .await
                            .map_err(|e| {
                                refusal_is_final(
                                    &format!("payment refund of {}", refund.payment_id),
                                    e,
                                )
                            })?;
                    }
                    Err(other) => {
                        let operation = match action {
                            PaymentAction::Void => "void",
                            PaymentAction::Refund => "refund",
                        };
                        return Err(refusal_is_final(
                            &format!("payment {operation} of {}", request.payment_id),
                            other,
                        ));
                    }
                }
                Command::RefundPayment {
                    amount: amount.clone(),
                }
            }
        })
    }
}

impl Processor {
    /// A forward step found obsolete. When the order was cancelled before the step's result
    /// reached its log, the provider may still hold what the step's call did: a reservation
    /// or an authorization whose answer was lost (or came back after the cancellation), which
    /// no compensation would ever release, since compensations are built from the log. This
    /// undoes it, with an idempotency key of its own.
    ///
    /// What the call did is this delivery's answer, when it got one. Otherwise, when an
    /// earlier delivery may have made the call (`redelivered`), the same request is sent again
    /// with the same idempotency key: the provider answers it as the first time and does
    /// nothing more, or, if the first call never reached it, does it now, and it is undone at
    /// once. A refusal (out of stock, declined) holds nothing. While the provider cannot be
    /// reached, the message is retried.
    #[allow(clippy::too_many_arguments)]
    async fn undo_unrecorded(
        &self,
        step: &Step,
        order_id: Uuid,
        event_id: Uuid,
        trigger: &pb::Event,
        log: &OrderLog,
        decided: Option<&Command>,
        redelivered: bool,
    ) -> StepEnd {
        let recorded: &[&str] = match step {
            Step::Inventory => &["InventoryReserved", "InventoryUnavailable"],
            Step::Payment => &["PaymentAuthorized", "PaymentFailed"],
            _ => return StepEnd::Obsolete,
        };
        let cancelled = matches!(
            log.status(),
            Some(pb::OrderStatus::CancellationPending | pb::OrderStatus::Cancelled)
        );
        if !cancelled || log.has_after(trigger.stream_version, recorded) {
            return StepEnd::Obsolete;
        }
        let key = |name: &str| saga::command_id(event_id, name);
        let guards = &self.guards;
        let (inventory, payment) = (&self.providers.inventory, &self.providers.payment);
        // What the call left at the provider: this delivery's answer, else, when an earlier
        // delivery may have made the call, the answer to the same request sent again.
        let known = match decided {
            Some(
                Command::ReserveInventory {
                    reservation_id: reference,
                }
                | Command::AuthorizePayment {
                    payment_id: reference,
                    ..
                },
            ) => Some(Some(reference.clone())),
            Some(_) => Some(None),
            None if !redelivered => Some(None),
            None => None,
        };
        let asked = match known {
            Some(held) => Ok(held),
            None => match self.ask_again(step, order_id, event_id, trigger, log).await {
                Ok(asked) => asked,
                Err(outcome) => return StepEnd::Failed(outcome),
            },
        };
        let reference = match asked {
            Ok(Some(reference)) => reference,
            // Refused (out of stock, declined) or never called: nothing is held.
            Ok(None) | Err(CallError::Refused(_) | CallError::Rejected(_)) => {
                return StepEnd::Obsolete;
            }
            Err(other) => {
                let call = if *step == Step::Inventory {
                    "inventory reserve"
                } else {
                    "payment authorize"
                };
                return StepEnd::Failed(not_done(&format!("{call} for order {order_id}"), other));
            }
        };
        if *step == Step::Inventory {
            let request = ReleaseRequest {
                order_id,
                reservation_id: reference.clone(),
                idempotency_key: key("ReserveInventory/undo"),
            };
            if let Err(error) = guards
                .inventory
                .call("release", || inventory.release(request.clone()))
                .await
            {
                return StepEnd::Failed(refusal_is_final(
                    &format!("inventory release of {reference}"),
                    error,
                ));
            }
            tracing::warn!(
                %order_id,
                reservation_id = %reference,
                "the order was cancelled before its reservation reached the log: released it"
            );
        } else {
            let amount = match authorize_request(order_id, event_id, log) {
                Ok(request) => request.amount,
                Err(outcome) => return StepEnd::Failed(outcome),
            };
            let void = RefundRequest {
                order_id,
                payment_id: reference.clone(),
                amount,
                action: PaymentAction::Void,
                idempotency_key: key("AuthorizePayment/undo"),
            };
            match guards
                .payment
                .call("void", || payment.refund(void.clone()))
                .await
            {
                Ok(()) => {}
                Err(CallError::Refused(reason)) if refusal_code(&reason) == "already_voided" => {}
                Err(error) => {
                    return StepEnd::Failed(refusal_is_final(
                        &format!("payment void of {reference}"),
                        error,
                    ));
                }
            }
            tracing::warn!(
                %order_id,
                payment_id = %reference,
                "the order was cancelled before its authorization reached the log: voided it"
            );
        }
        StepEnd::Obsolete
    }

    /// Send the reservation (`Step::Inventory`) or the authorization an earlier delivery may
    /// have sent, again with its idempotency key, to learn what it left at the provider; only
    /// while the provider surely remembers the key.
    async fn ask_again(
        &self,
        step: &Step,
        order_id: Uuid,
        event_id: Uuid,
        trigger: &pb::Event,
        log: &OrderLog,
    ) -> Result<Result<Option<String>, CallError>, Outcome> {
        if *step == Step::Inventory {
            let request = reserve_request(order_id, event_id, log)?;
            self.key_remembered(
                "reserve",
                request.idempotency_key,
                trigger,
                UNDO_PAST_LIFETIME,
            )?;
            let inventory = &self.providers.inventory;
            Ok(self
                .guards
                .inventory
                .call("reserve", || inventory.reserve(request.clone()))
                .await
                .map(Some))
        } else {
            let request = authorize_request(order_id, event_id, log)?;
            self.key_remembered(
                "authorize",
                request.idempotency_key,
                trigger,
                UNDO_PAST_LIFETIME,
            )?;
            let payment = &self.providers.payment;
            Ok(self
                .guards
                .payment
                .call("authorize", || payment.authorize(request.clone()))
                .await
                .map(Some))
        }
    }

    /// Poll the carrier until the parcel is delivered, for at most `delivery.wait`; then
    /// [`Outcome::Waiting`].
    async fn await_delivery(&self, request: &DeliveryRequest) -> Result<(), Outcome> {
        let shipping = &self.providers.shipping;
        let deadline = Instant::now() + self.delivery.wait;
        loop {
            let answer = self
                .guards
                .shipping
                .call("delivery", || shipping.delivery(request.clone()))
                .await
                .map_err(|e| {
                    refusal_is_final(
                        &format!("shipping delivery of {}", request.tracking_number),
                        e,
                    )
                })?;
            let hint = match answer {
                Delivery::Delivered => return Ok(()),
                Delivery::InTransit { recheck_after } => recheck_after,
            };
            // Not back to back on a carrier's `Retry-After: 0` (or a date just past).
            let pause = hint.map_or(self.delivery.poll, |hint| {
                hint.max(self.delivery.poll.min(Duration::from_secs(1)))
            });
            if Instant::now() + pause > deadline {
                let recheck_in = hint
                    .unwrap_or_default()
                    .max(self.delivery.recheck)
                    .min(LONGEST_RECHECK);
                return Err(Outcome::Waiting {
                    reason: format!("parcel {} not delivered yet", request.tracking_number),
                    recheck_in,
                });
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// The `order-cli` line that records `command` (a step whose effect a provider holds) under
/// the worker's command id `id`, what the provider tells the operator left as placeholders.
fn record_line(command: &str, order_id: Uuid, id: Uuid) -> String {
    let flags = match command {
        "ReserveInventory" => {
            "reserve {order} --reservation-id <the provider's reservation id>".to_owned()
        }
        "AuthorizePayment" => "authorize {order} --payment-id <the provider's payment id> \
             --amount <the amount authorized, in minor units> --currency <its currency>"
            .to_owned(),
        "ShipOrder" => {
            "ship {order} --carrier <the carrier> --tracking-number <the tracking number>"
                .to_owned()
        }
        "RefundPayment" => "refund {order} --amount <the amount refunded, in minor units> \
             --currency <its currency>"
            .to_owned(),
        other => format!("<{other}> {{order}}"),
    };
    format!(
        "`order-cli {} --command-id {id}`",
        flags.replace("{order}", &order_id.to_string())
    )
}

/// The dead letter of a compensation whose hold came with the order's imported history
/// ([`saga::legacy_hold`]): what to give back in the legacy system, and what to record then.
fn legacy_hold_dead_letter(
    order_id: Uuid,
    event_id: Uuid,
    step: &Step,
    hold: &saga::LegacyHold,
) -> Outcome {
    let (what, command, flags) = match step {
        Step::RefundPayment { amount, action } => (
            match action {
                PaymentAction::Void => "void the authorization",
                PaymentAction::Refund => "refund the captured payment",
            },
            "RefundPayment",
            format!(
                "refund {order_id} --amount {} --currency {}",
                amount.amount_minor, amount.currency
            ),
        ),
        _ => (
            "release the reservation",
            "ReleaseInventory",
            format!("release-inventory {order_id}"),
        ),
    };
    Outcome::dead(
        "imported_hold",
        format!(
            "order {order_id} was cancelled, and its {} {} came with its imported history \
             (legacy record {}): no provider of this system issued it, so none is asked to give \
             it back; {what} in the legacy system, then record {command}: `order-cli {flags} --command-id {}`, and \
             redrive this dead letter (the cancellation goes on: what it still owes is done, or \
             dead-lettered the same way)",
            hold.kind,
            hold.reference,
            hold.legacy_record,
            saga::command_id(event_id, command)
        ),
    )
}

fn placed_of(log: &OrderLog) -> Result<&pb::OrderPlaced, Outcome> {
    log.placed()
        .ok_or_else(|| Outcome::dead("log", "the order's log has no OrderPlaced event"))
}

/// The inventory step's request (the same for every delivery of its message).
fn reserve_request(
    order_id: Uuid,
    event_id: Uuid,
    log: &OrderLog,
) -> Result<ReserveRequest, Outcome> {
    Ok(ReserveRequest {
        order_id,
        lines: lines(placed_of(log)?),
        idempotency_key: saga::command_id(event_id, "ReserveInventory"),
    })
}

/// The payment step's request (the same for every delivery of its message).
fn authorize_request(
    order_id: Uuid,
    event_id: Uuid,
    log: &OrderLog,
) -> Result<AuthorizeRequest, Outcome> {
    let placed = placed_of(log)?;
    let amount = placed
        .total
        .clone()
        .ok_or_else(|| Outcome::dead("log", "OrderPlaced without a total"))?;
    Ok(AuthorizeRequest {
        order_id,
        customer_id: placed.customer_id.clone(),
        amount,
        lines: lines(placed),
        idempotency_key: saga::command_id(event_id, "AuthorizePayment"),
    })
}

/// The business code a provider's refusal starts with (`already_captured: ...`).
fn refusal_code(reason: &str) -> &str {
    reason.split(':').next().unwrap_or_default().trim()
}

fn lines(placed: &pb::OrderPlaced) -> Vec<Line> {
    placed
        .lines
        .iter()
        .map(|l| Line {
            sku: l.sku.clone(),
            quantity: l.quantity,
        })
        .collect()
}

/// A provider call that did not answer with a result or a refusal. `call` names it, as a dead
/// letter's reason says it: provider, operation and reference (`payment capture of PAY-1`).
fn not_done(call: &str, error: CallError) -> Outcome {
    match error {
        CallError::Refused(reason) => {
            Outcome::dead("provider_refused", format!("{call} refused: {reason}"))
        }
        CallError::Rejected(reason) => {
            Outcome::dead("provider_rejected", format!("{call} rejected: {reason}"))
        }
        CallError::Unavailable {
            reason,
            retry_after,
            circuit_open,
        } => Outcome::Retry {
            reason,
            after: retry_after,
            outage: circuit_open,
        },
    }
}

/// For steps without a "refused" command (capture, shipping, delivery, compensations), a
/// provider's final refusal leaves nothing the saga could record: an operator must look at it.
fn refusal_is_final(call: &str, error: CallError) -> Outcome {
    not_done(call, error)
}

/// A reason the domain accepts: at most 500 characters, no control characters.
fn bounded(reason: &str) -> String {
    let cleaned: String = reason
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .take(300)
        .collect();
    // What FailPayment and friends accept (the domain's rule: not only invisible characters).
    match order_domain::values::Reason::parse(cleaned.as_str()) {
        Ok(_) => cleaned,
        Err(_) => "refused by the provider".to_owned(),
    }
}

fn describe(error: &Status) -> String {
    match error.status() {
        Some(status) => format!("{:?}: {}", status.code(), status.message()),
        None => format!("{:?}: {error}", error.code()),
    }
}

/// The snake_case name of a status code, the `dlq_kind` of gRPC refusals.
fn code_name(status: &Status) -> &'static str {
    use tonic::Code;
    match status.code() {
        Code::InvalidArgument => "invalid_argument",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::OutOfRange => "out_of_range",
        Code::FailedPrecondition => "failed_precondition",
        _ => "grpc_error",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::future::BoxFuture;

    use super::*;
    use crate::backoff::Backoff;
    use crate::breaker::BreakerSettings;
    use crate::providers::guard::GuardSettings;
    use crate::providers::{InventoryProvider, PaymentProvider, ProviderError};

    /// Inventory and payment as a provider of this system sees them: it holds only what it
    /// issued (`RSV-*`, `PAY-*`) and answers anything else as the stub does (404, transient).
    #[derive(Debug, Default)]
    struct Recording {
        calls: Mutex<Vec<String>>,
    }

    impl Recording {
        fn answer(&self, call: String, reference: &str) -> Result<(), ProviderError> {
            self.calls.lock().unwrap().push(call);
            if reference.starts_with("RSV-") || reference.starts_with("PAY-") {
                Ok(())
            } else {
                Err(ProviderError::transient("unexpected HTTP 404 Not Found"))
            }
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl InventoryProvider for Recording {
        fn reserve(&self, _: ReserveRequest) -> BoxFuture<'_, Result<String, ProviderError>> {
            unreachable!("a compensation reserves nothing")
        }
        fn release(&self, request: ReleaseRequest) -> BoxFuture<'_, Result<(), ProviderError>> {
            let call = format!("release {}", request.reservation_id);
            if request.reservation_id == "RSV-EXPIRED" {
                self.calls.lock().unwrap().push(call);
                return Box::pin(async {
                    Err(ProviderError::Refused("reservation_expired".into()))
                });
            }
            Box::pin(async move { self.answer(call, &request.reservation_id) })
        }
    }

    impl PaymentProvider for Recording {
        fn authorize(&self, _: AuthorizeRequest) -> BoxFuture<'_, Result<String, ProviderError>> {
            unreachable!("a compensation authorizes nothing")
        }
        fn capture(&self, _: CaptureRequest) -> BoxFuture<'_, Result<(), ProviderError>> {
            unreachable!("a compensation captures nothing")
        }
        fn refund(&self, request: RefundRequest) -> BoxFuture<'_, Result<(), ProviderError>> {
            let call = format!("{:?} {}", request.action, request.payment_id);
            if request.action == PaymentAction::Void && request.payment_id == "PAY-CAPTURED" {
                self.calls.lock().unwrap().push(call);
                return Box::pin(async {
                    Err(ProviderError::Refused("already_captured: captured".into()))
                });
            }
            Box::pin(async move { self.answer(call, &request.payment_id) })
        }
    }

    fn guard(provider: &'static str) -> Guard {
        Guard::new(
            provider,
            GuardSettings {
                attempts: 1,
                backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(1)),
                timeout: Duration::from_secs(5),
                breaker: BreakerSettings {
                    failure_threshold: 1000,
                    cooldown: Duration::from_secs(1),
                    half_open_calls: 1,
                },
                circuit_wait: Duration::ZERO,
            },
            Arc::new(crate::clock::SystemClock::new()),
            Arc::new(crate::random::Random::seeded(7)),
        )
    }

    /// A processor on the recording provider (order-grpc is never reached: only `decide`,
    /// the provider half of a step, runs).
    fn processor(provider: &Arc<Recording>) -> Processor {
        let api =
            OrderApi::connect_lazy("http://127.0.0.1:1", None, Duration::from_millis(100), None)
                .unwrap();
        let simulated = Arc::new(crate::providers::simulated::Simulated::new(
            Default::default(),
            Arc::new(crate::random::Random::seeded(7)),
            Arc::new(crate::clock::SystemClock::new()),
        ));
        let providers = Providers {
            inventory: provider.clone(),
            payment: provider.clone(),
            shipping: simulated,
        };
        let guards = Arc::new(Guards {
            inventory: guard("inventory"),
            payment: guard("payment"),
            shipping: guard("shipping"),
        });
        Processor::new(api, providers, guards, DeliverySettings::default())
    }

    /// A carrier whose parcel is always in transit, asking to be asked again after
    /// `recheck_after`; it counts the calls.
    #[derive(Debug)]
    struct InTransit {
        recheck_after: Option<Duration>,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl crate::providers::ShippingProvider for InTransit {
        fn ship(
            &self,
            _: ShipRequest,
        ) -> BoxFuture<'_, Result<crate::providers::Shipment, ProviderError>> {
            unreachable!("only delivery is asked")
        }
        fn delivery(&self, _: DeliveryRequest) -> BoxFuture<'_, Result<Delivery, ProviderError>> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let recheck_after = self.recheck_after;
            Box::pin(async move { Ok(Delivery::InTransit { recheck_after }) })
        }
    }

    /// A carrier's `Retry-After: 0` (or a date just past) does not make the worker poll it
    /// without a pause for the whole delivery wait: the pause is at least a second (or the
    /// configured poll pause, when shorter).
    #[tokio::test]
    async fn a_zero_retry_after_does_not_make_delivery_polls_back_to_back() {
        for (hint, most) in [
            (Some(Duration::ZERO), 5),
            (None, 5),
            (Some(Duration::from_millis(150)), 3),
        ] {
            let carrier = Arc::new(InTransit {
                recheck_after: hint,
                calls: Default::default(),
            });
            let mut processor = processor(&Arc::new(Recording::default()));
            processor.providers.shipping = carrier.clone();
            processor.delivery = DeliverySettings {
                wait: Duration::from_millis(400),
                poll: Duration::from_millis(100),
                recheck: Duration::from_secs(60),
            };
            let request = DeliveryRequest {
                order_id: Uuid::from_u128(1),
                tracking_number: "TRK-1".into(),
            };
            let outcome = processor.await_delivery(&request).await;
            assert!(
                matches!(outcome, Err(Outcome::Waiting { .. })),
                "{hint:?}: {outcome:?}"
            );
            let calls = carrier.calls.load(std::sync::atomic::Ordering::SeqCst);
            // 400 ms of waiting at 100 ms (or 150 ms) a poll: a handful of calls, however
            // slow the machine (a slower one makes fewer).
            assert!((1..=most).contains(&calls), "{hint:?}: {calls} calls");
        }
    }

    fn eur(amount_minor: i64) -> pb::Money {
        pb::Money {
            currency: "EUR".into(),
            amount_minor,
        }
    }

    /// An order's log up to `status` (InventoryReserved, PaymentAuthorized or Confirmed),
    /// imported (no command ids, the import's references) or written by this worker's commands;
    /// then a live cancellation asking for `payment_action`.
    fn cancelled_log(imported: bool, status: &str, payment_action: &str) -> OrderLog {
        OrderLog::new(cancelled_events(imported, status, payment_action))
    }

    fn cancelled_events(imported: bool, status: &str, payment_action: &str) -> Vec<pb::Event> {
        let (reservation, payment) = if imported {
            (
                "import-5b0e8f4e-3f57-5d0b-9a41-000000000001",
                "LEGACY-PAY-881",
            )
        } else {
            ("RSV-1", "PAY-1")
        };
        let mut payloads = vec![
            pb::event::Payload::OrderPlaced(pb::OrderPlaced {
                customer_id: "c".into(),
                total: Some(eur(3000)),
                ..Default::default()
            }),
            pb::event::Payload::InventoryReserved(pb::InventoryReserved {
                reservation_id: reservation.into(),
            }),
        ];
        if status != "InventoryReserved" {
            payloads.push(pb::event::Payload::PaymentAuthorized(
                pb::PaymentAuthorized {
                    payment_id: payment.into(),
                    amount: Some(eur(3000)),
                },
            ));
        }
        if status == "Confirmed" {
            payloads.push(pb::event::Payload::OrderConfirmed(
                pb::OrderConfirmed::default(),
            ));
        }
        let mut events: Vec<pb::Event> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| {
                let version = i as u64 + 1;
                pb::Event {
                    event_id: Uuid::from_u128(u128::from(version)).to_string(),
                    stream_version: version,
                    event_type: event_type(&payload).into(),
                    command_id: if imported {
                        String::new()
                    } else {
                        Uuid::from_u128(1000 + u128::from(version)).to_string()
                    },
                    imported_from: if imported {
                        "legacy:A-1001".into()
                    } else {
                        String::new()
                    },
                    payload: Some(payload),
                    ..Default::default()
                }
            })
            .collect();
        let version = events.len() as u64 + 1;
        events.push(pb::Event {
            event_id: Uuid::from_u128(u128::from(version)).to_string(),
            stream_version: version,
            event_type: "CancellationRequested".into(),
            command_id: Uuid::from_u128(2000).to_string(),
            payload: Some(pb::event::Payload::CancellationRequested(
                pb::CancellationRequested {
                    reason: "customer asked".into(),
                    release_inventory: true,
                    payment_action: payment_action.into(),
                    payment_amount: (!payment_action.is_empty()).then(|| eur(3000)),
                },
            )),
            ..Default::default()
        });
        events
    }

    fn event_type(payload: &pb::event::Payload) -> &'static str {
        use pb::event::Payload as P;
        match payload {
            P::OrderPlaced(_) => "OrderPlaced",
            P::InventoryReserved(_) => "InventoryReserved",
            P::PaymentAuthorized(_) => "PaymentAuthorized",
            P::OrderConfirmed(_) => "OrderConfirmed",
            _ => unreachable!(),
        }
    }

    /// The cancellation's compensations, decided on `log`: the commands, or how they failed.
    async fn compensate(processor: &Processor, log: &OrderLog) -> Vec<Result<Command, Outcome>> {
        let trigger = log.at(log.version()).unwrap().clone();
        let order_id = Uuid::from_u128(42);
        let event_id = Uuid::parse_str(&trigger.event_id).unwrap();
        let mut answers = Vec::new();
        for step in saga::steps(&trigger).unwrap() {
            assert!(saga::owed(&step, &trigger, log), "{step:?}");
            answers.push(
                processor
                    .decide(&step, order_id, event_id, &trigger, log)
                    .await,
            );
        }
        answers
    }

    /// A cancelled imported order: what its history reserved or authorized was the legacy
    /// system's. No provider is asked to give it back (it never issued the reference, and would
    /// answer 404 for ever), and nothing is recorded as given back: each compensation is
    /// dead-lettered (`imported_hold`), saying what to do in the legacy system and which
    /// command to record under which id.
    #[tokio::test]
    async fn a_cancelled_imported_orders_holds_are_dead_lettered_never_recorded_as_given_back() {
        for (status, action, expected) in [
            (
                "InventoryReserved",
                "",
                vec![("reservation", "ReleaseInventory", "release-inventory")],
            ),
            (
                "PaymentAuthorized",
                "void",
                vec![
                    ("reservation", "ReleaseInventory", "release-inventory"),
                    ("authorization", "RefundPayment", "refund"),
                ],
            ),
            (
                "Confirmed",
                "refund",
                vec![
                    ("reservation", "ReleaseInventory", "release-inventory"),
                    ("capture", "RefundPayment", "refund"),
                ],
            ),
        ] {
            let provider = Arc::new(Recording::default());
            let processor = processor(&provider);
            let log = cancelled_log(true, status, action);
            let trigger = log.at(log.version()).unwrap().clone();
            let event_id = Uuid::parse_str(&trigger.event_id).unwrap();
            let answers = compensate(&processor, &log).await;
            assert_eq!(answers.len(), expected.len(), "{status}: {answers:?}");
            let order = Uuid::from_u128(42);
            for (answer, (kind, command, cli)) in answers.into_iter().zip(expected) {
                let Err(Outcome::DeadLetter { kind: dlq, reason }) = answer else {
                    panic!("{status}: {answer:?}");
                };
                assert_eq!(dlq, "imported_hold", "{status}");
                let amount = if cli == "refund" {
                    " --amount 3000 --currency EUR"
                } else {
                    ""
                };
                for part in [
                    format!("its {kind} "),
                    "(legacy record legacy:A-1001)".to_owned(),
                    "in the legacy system".to_owned(),
                    format!(
                        "record {command}: `order-cli {cli} {order}{amount} --command-id {}`",
                        saga::command_id(event_id, command)
                    ),
                ] {
                    assert!(reason.contains(&part), "{status}: {part} in {reason}");
                }
            }
            // ... and no provider is asked to undo a hold it never made.
            assert_eq!(provider.calls(), Vec::<String>::new(), "{status}");
        }
    }

    /// A refusal of a step with no refusal command is dead-lettered saying which call was
    /// refused: the provider, the operation and the reference.
    #[tokio::test]
    async fn a_refused_call_is_dead_lettered_naming_the_provider_the_operation_and_the_reference() {
        let provider = Arc::new(Recording::default());
        let processor = processor(&provider);
        let mut events = cancelled_events(false, "InventoryReserved", "void");
        for event in &mut events {
            if let Some(pb::event::Payload::InventoryReserved(r)) = &mut event.payload {
                r.reservation_id = "RSV-EXPIRED".into();
            }
        }
        let log = OrderLog::new(events);
        let trigger = log.at(log.version()).unwrap().clone();
        let event_id = Uuid::parse_str(&trigger.event_id).unwrap();
        let outcome = processor
            .decide(
                &Step::ReleaseInventory,
                Uuid::from_u128(42),
                event_id,
                &trigger,
                &log,
            )
            .await;
        let Err(Outcome::DeadLetter { kind, reason }) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(kind, "provider_refused");
        assert_eq!(
            reason,
            "inventory release of RSV-EXPIRED refused: reservation_expired"
        );
    }

    /// The void of an authorization captured meanwhile (so a refund: a call that creates
    /// something) of an order whose events are `age` old, with a key lifetime of `lifetime`:
    /// its dead letter's reason, the trigger's event id and the provider's calls.
    async fn key_lifetime_dead_letter(
        lifetime: Duration,
        age: Duration,
    ) -> (String, Uuid, Vec<String>) {
        let provider = Arc::new(Recording::default());
        let processor = processor(&provider).with_key_lifetime(Some(lifetime));
        let mut events = cancelled_events(false, "PaymentAuthorized", "void");
        let then = std::time::SystemTime::now() - age;
        for event in &mut events {
            if let Some(pb::event::Payload::PaymentAuthorized(p)) = &mut event.payload {
                p.payment_id = "PAY-CAPTURED".into();
            }
            event.recorded_at = Some(then.into());
        }
        let log = OrderLog::new(events);
        let trigger = log.at(log.version()).unwrap().clone();
        let event_id = Uuid::parse_str(&trigger.event_id).unwrap();
        let step = Step::RefundPayment {
            amount: eur(3000),
            action: PaymentAction::Void,
        };
        let outcome = processor
            .decide(&step, Uuid::from_u128(42), event_id, &trigger, &log)
            .await;
        let Err(Outcome::DeadLetter { kind, reason }) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(kind, "key_lifetime");
        (reason, event_id, provider.calls())
    }

    /// Past the key lifetime, the dead letter says under which command id to record what the
    /// provider holds: the command's, which is not the key of the refund that replaces a void.
    #[tokio::test]
    async fn a_key_lifetime_dead_letter_names_the_command_id_to_record_under() {
        let (reason, event_id, calls) =
            key_lifetime_dead_letter(Duration::from_secs(3600), Duration::from_secs(172_800)).await;
        // Ages and limits in words that agree: a lifetime of an hour, less its margin of a tenth.
        assert!(
            reason.contains("for an event recorded 2days ago, past 54m: the 1h a provider must remember its keys, less a margin"),
            "{reason}"
        );
        let key = saga::command_id(event_id, "RefundPayment/captured");
        let command = saga::command_id(event_id, "RefundPayment");
        assert!(
            reason.contains(&format!("Idempotency-Key {key}")),
            "{reason}"
        );
        assert!(
            reason.contains(&format!(
                "record it with RefundPayment under command id {command}"
            )),
            "{reason}"
        );
        // The command line to run, as an imported hold's reason gives it.
        let order = Uuid::from_u128(42);
        assert!(
            reason.contains(&format!(
                "`order-cli refund {order} --amount <the amount refunded, in minor units> --currency <its currency> --command-id {command}`"
            )),
            "{reason}"
        );
        assert_eq!(calls, ["Void PAY-CAPTURED"]);
    }

    /// A lifetime under a minute (a drill) is said in milliseconds: "past 1s 800ms", not
    /// "past 1s" nor "past 0s".
    #[tokio::test]
    async fn a_short_key_lifetime_is_said_in_milliseconds() {
        let (reason, _, _) =
            key_lifetime_dead_letter(Duration::from_secs(2), Duration::from_secs(30)).await;
        assert!(
            reason.contains("past 1s 800ms: the 2s a provider must remember its keys"),
            "{reason}"
        );
        assert!(reason.contains("for an event recorded 30s"), "{reason}");
    }

    /// A void is counted as `operation="void"` in the provider-call metrics (an operator
    /// reading a failing void endpoint as failing refunds would look in the wrong place).
    #[test]
    fn a_void_is_counted_as_a_void_not_a_refund() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let provider = Arc::new(Recording::default());
        let answers = metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let processor = processor(&provider);
                compensate(
                    &processor,
                    &cancelled_log(false, "PaymentAuthorized", "void"),
                )
                .await
            })
        });
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(provider.calls(), ["release RSV-1", "Void PAY-1"]);
        let rendered = metrics.render();
        let calls: Vec<&str> = rendered
            .lines()
            .filter(|l| l.starts_with("order_worker_provider_calls_total{"))
            .collect();
        assert!(
            calls.iter().any(|l| l.contains(r#"provider="payment""#)
                && l.contains(r#"operation="void""#)
                && l.contains(r#"result="ok""#)),
            "{calls:?}"
        );
        assert!(
            !calls.iter().any(|l| l.contains(r#"operation="refund""#)),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn a_cancelled_live_order_gives_back_its_holds_at_the_providers() {
        let provider = Arc::new(Recording::default());
        let processor = processor(&provider);
        let log = cancelled_log(false, "PaymentAuthorized", "void");
        assert_eq!(
            compensate(&processor, &log).await,
            vec![
                Ok(Command::ReleaseInventory),
                Ok(Command::RefundPayment { amount: eur(3000) }),
            ]
        );
        assert_eq!(provider.calls(), ["release RSV-1", "Void PAY-1"]);
    }

    #[test]
    fn reasons_are_bounded_and_clean() {
        assert_eq!(bounded("out of stock: A"), "out of stock: A");
        assert_eq!(bounded("a\nb"), "a b");
        assert_eq!(bounded(&"x".repeat(1000)).len(), 300);
        assert_eq!(bounded(" \n "), "refused by the provider");
        // Text the domain would refuse as a reason: line separators, only invisible characters.
        assert_eq!(bounded("declined\u{2028}by issuer"), "declined by issuer");
        assert_eq!(bounded("\u{200b}\u{feff}"), "refused by the provider");
        for reason in ["declined\u{2028}by issuer", "\u{200b}", "a\u{0}b"] {
            assert!(
                order_domain::values::Reason::parse(bounded(reason)).is_ok(),
                "{reason:?}"
            );
        }
    }
}

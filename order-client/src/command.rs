//! Commands: one builder type, [`Command`], for every `OrderService` RPC.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use order_proto::v1 as pb;
use order_proto::v1::order_service_client::OrderServiceClient;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::client::{Client, Transport};
use crate::error::Error;
use crate::retry::CallKind;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

mod sealed {
    pub trait Sealed {}
}

/// A request message of `OrderService` (implemented for each of them, and only them).
pub trait CommandRequest: sealed::Sealed + Clone + Send + Sync + 'static {
    /// The RPC's name, e.g. `ConfirmOrder`.
    const NAME: &'static str;

    /// The command id (the idempotency key).
    fn command_id(&self) -> &str;
    /// The order id.
    fn order_id(&self) -> &str;
    /// The expected version, if pinned.
    fn expected_version(&self) -> Option<u64>;

    #[doc(hidden)]
    fn set_ids(&mut self, command_id: String, order_id: String);
    #[doc(hidden)]
    fn set_expected_version(&mut self, version: Option<u64>);
    #[doc(hidden)]
    fn call(
        client: OrderServiceClient<Transport>,
        request: Request<Self>,
    ) -> BoxFuture<Result<Response<pb::CommandResponse>, Status>>;
}

macro_rules! command_requests {
    ($($message:ident => $name:literal, $method:ident;)*) => {$(
        impl sealed::Sealed for pb::$message {}
        impl CommandRequest for pb::$message {
            const NAME: &'static str = $name;
            fn command_id(&self) -> &str {
                &self.command_id
            }
            fn order_id(&self) -> &str {
                &self.order_id
            }
            fn expected_version(&self) -> Option<u64> {
                self.expected_version
            }
            fn set_ids(&mut self, command_id: String, order_id: String) {
                self.command_id = command_id;
                self.order_id = order_id;
            }
            fn set_expected_version(&mut self, version: Option<u64>) {
                self.expected_version = version;
            }
            fn call(
                mut client: OrderServiceClient<Transport>,
                request: Request<Self>,
            ) -> BoxFuture<Result<Response<pb::CommandResponse>, Status>> {
                Box::pin(async move { client.$method(request).await })
            }
        }
    )*};
}

command_requests! {
    PlaceOrderRequest => "PlaceOrder", place_order;
    ReserveInventoryRequest => "ReserveInventory", reserve_inventory;
    RejectInventoryRequest => "RejectInventory", reject_inventory;
    AuthorizePaymentRequest => "AuthorizePayment", authorize_payment;
    FailPaymentRequest => "FailPayment", fail_payment;
    ConfirmOrderRequest => "ConfirmOrder", confirm_order;
    StartFulfillmentRequest => "StartFulfillment", start_fulfillment;
    ShipOrderRequest => "ShipOrder", ship_order;
    DeliverOrderRequest => "DeliverOrder", deliver_order;
    CompleteOrderRequest => "CompleteOrder", complete_order;
    CancelOrderRequest => "CancelOrder", cancel_order;
    ReleaseInventoryRequest => "ReleaseInventory", release_inventory;
    RefundPaymentRequest => "RefundPayment", refund_payment;
}

/// A command ready to send. Its command id is chosen once, when the builder is made (a random
/// UUID unless [`command_id`](Self::command_id) sets one), so every attempt of it, the
/// client's retries and your own calls of [`send`](Self::send) on the same builder alike,
/// is the same command to the service: applied at most once, the repeats answered as
/// [`duplicate`](CommandAnswer::duplicate).
///
/// Await it to send it, or call [`send`](Self::send) to keep it for another try.
///
/// ```no_run
/// # async fn run(client: order_client::Client, order: uuid::Uuid) -> Result<(), order_client::Error> {
/// let confirm = client.confirm_order(order).expected_version(3);
/// let answer = match confirm.send().await {
///     Ok(answer) => answer,
///     // Still unknown whether it was applied: the same command again, same id.
///     Err(e) if e.code() == order_client::Code::Unavailable => confirm.send().await?,
///     Err(e) => return Err(e),
/// };
/// println!("order {} at version {}", answer.order_id, answer.version);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Command<R> {
    client: Client,
    request: R,
}

/// What a command returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandAnswer {
    /// The RPC, e.g. `ConfirmOrder`.
    pub command: &'static str,
    /// The command id it was sent with.
    pub command_id: String,
    /// The order.
    pub order_id: Uuid,
    /// The order's stream version after the command.
    pub version: u64,
    /// The global position of the last event the command wrote: pass the answer to
    /// [`Client::get_order_after`] to read your write.
    pub global_position: u64,
    /// The order's status after the command.
    pub status: pb::OrderStatus,
    /// The service had recorded this command id before *this attempt* and answered with the
    /// first response: the command is applied, once, under this id, but not necessarily by
    /// someone else. The earlier application may be an earlier attempt of this same call
    /// whose answer was lost (a dropped connection, a deadline: then
    /// [`attempts`](Self::attempts) is more than 1), or an earlier call with the same command
    /// id (a repeat of this builder, or another caller's). Either way nothing was applied
    /// twice; `duplicate` does not mean "this call changed nothing".
    pub duplicate: bool,
    /// How many attempts it took.
    pub attempts: u32,
    /// The correlation id the command carried.
    pub correlation_id: String,
}

impl<R: CommandRequest> Command<R> {
    pub(crate) fn new(client: &Client, order_id: Uuid, mut request: R) -> Self {
        request.set_ids(Uuid::new_v4().to_string(), order_id.to_string());
        Self {
            client: client.clone(),
            request,
        }
    }

    /// Use this command id instead of the random one (e.g. one derived from the event that
    /// caused the command, so that a redelivered event cannot act twice).
    pub fn command_id(mut self, command_id: Uuid) -> Self {
        let order_id = self.request.order_id().to_owned();
        self.request.set_ids(command_id.to_string(), order_id);
        self
    }

    /// Apply only if the order is at this stream version (else ABORTED, not retried: decide
    /// again on a fresh read).
    pub fn expected_version(mut self, version: u64) -> Self {
        self.request.set_expected_version(Some(version));
        self
    }

    /// The same, optional.
    pub fn maybe_expected_version(mut self, version: Option<u64>) -> Self {
        self.request.set_expected_version(version);
        self
    }

    /// Send it through another client (another context, deadline or retry policy) with the
    /// same command id.
    pub fn via(mut self, client: &Client) -> Self {
        self.client = client.clone();
        self
    }

    /// The request message as it will be sent.
    pub fn request(&self) -> &R {
        &self.request
    }

    /// The request message, for changes the builder has no method for. Leave its `command_id`
    /// and `order_id` as the builder set them: a retry is recognised as the same command only
    /// by them.
    pub fn request_mut(&mut self) -> &mut R {
        &mut self.request
    }

    /// Send it (retrying as the client's policy says, with the same command id).
    pub async fn send(&self) -> Result<CommandAnswer, Error> {
        let kind = if self.request.expected_version().is_some() {
            CallKind::PinnedCommand
        } else {
            CallKind::Idempotent
        };
        let answered = self
            .client
            .unary(&self.request, kind, |request| {
                R::call(self.client.commands(), request)
            })
            .await?;
        let response = answered.message;
        let order_id = Uuid::parse_str(&response.order_id).map_err(|_| {
            Error::InvalidResponse(format!(
                "{} answered with order id {:?}",
                R::NAME,
                response.order_id
            ))
        })?;
        Ok(CommandAnswer {
            command: R::NAME,
            command_id: self.request.command_id().to_owned(),
            order_id,
            version: response.version,
            global_position: response.global_position,
            status: response.status(),
            duplicate: response.duplicate,
            attempts: answered.attempts,
            correlation_id: answered.correlation_id,
        })
    }
}

impl<R: CommandRequest> IntoFuture for Command<R> {
    type Output = Result<CommandAnswer, Error>;
    type IntoFuture = BoxFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.send().await })
    }
}

/// `Money` in minor units of an ISO-4217 currency: `money("EUR", 1250)` is 12.50 EUR.
pub fn money(currency: &str, amount_minor: i64) -> pb::Money {
    pb::Money {
        currency: currency.to_owned(),
        amount_minor,
    }
}

impl Command<pb::PlaceOrderRequest> {
    /// Place the order under this id instead of a random one.
    pub fn order_id(mut self, order_id: Uuid) -> Self {
        self.request.order_id = order_id.to_string();
        self
    }

    /// Add a line: `quantity` x `sku` at `unit_price` each.
    pub fn line(mut self, sku: impl Into<String>, quantity: i64, unit_price: pb::Money) -> Self {
        self.request.lines.push(pb::OrderLine {
            sku: sku.into(),
            quantity,
            unit_price: Some(unit_price),
        });
        self
    }

    /// Ship to this address.
    pub fn ship_to(mut self, address: pb::Address) -> Self {
        self.request.shipping_address = Some(address);
        self
    }

    /// Ship this way (default: standard).
    pub fn shipping_method(mut self, method: pb::ShippingMethod) -> Self {
        self.request.shipping_method = method as i32;
        self
    }
}

impl Client {
    /// PlaceOrder for `customer_id`, under a fresh order id unless
    /// [`order_id`](Command::order_id) sets one; add lines and the address.
    pub fn place_order(&self, customer_id: Uuid) -> Command<pb::PlaceOrderRequest> {
        let request = pb::PlaceOrderRequest {
            customer_id: customer_id.to_string(),
            shipping_method: pb::ShippingMethod::Standard as i32,
            ..Default::default()
        };
        Command::new(self, Uuid::new_v4(), request)
    }

    /// ReserveInventory: the inventory was reserved under `reservation_id`.
    pub fn reserve_inventory(
        &self,
        order_id: Uuid,
        reservation_id: impl Into<String>,
    ) -> Command<pb::ReserveInventoryRequest> {
        let request = pb::ReserveInventoryRequest {
            reservation_id: reservation_id.into(),
            ..Default::default()
        };
        Command::new(self, order_id, request)
    }

    /// RejectInventory: the inventory is unavailable, the order is cancelled.
    pub fn reject_inventory(
        &self,
        order_id: Uuid,
        reason: impl Into<String>,
    ) -> Command<pb::RejectInventoryRequest> {
        let request = pb::RejectInventoryRequest {
            reason: reason.into(),
            ..Default::default()
        };
        Command::new(self, order_id, request)
    }

    /// AuthorizePayment: `amount` (the order total) was authorized as `payment_id`.
    pub fn authorize_payment(
        &self,
        order_id: Uuid,
        payment_id: impl Into<String>,
        amount: pb::Money,
    ) -> Command<pb::AuthorizePaymentRequest> {
        let request = pb::AuthorizePaymentRequest {
            payment_id: payment_id.into(),
            amount: Some(amount),
            ..Default::default()
        };
        Command::new(self, order_id, request)
    }

    /// FailPayment: the payment failed; compensations follow, then the order is cancelled.
    pub fn fail_payment(
        &self,
        order_id: Uuid,
        reason: impl Into<String>,
    ) -> Command<pb::FailPaymentRequest> {
        let request = pb::FailPaymentRequest {
            reason: reason.into(),
            ..Default::default()
        };
        Command::new(self, order_id, request)
    }

    /// ConfirmOrder: confirmed, the payment captured.
    pub fn confirm_order(&self, order_id: Uuid) -> Command<pb::ConfirmOrderRequest> {
        Command::new(self, order_id, pb::ConfirmOrderRequest::default())
    }

    /// StartFulfillment.
    pub fn start_fulfillment(&self, order_id: Uuid) -> Command<pb::StartFulfillmentRequest> {
        Command::new(self, order_id, pb::StartFulfillmentRequest::default())
    }

    /// ShipOrder: handed to `carrier` under `tracking_number`.
    pub fn ship_order(
        &self,
        order_id: Uuid,
        carrier: impl Into<String>,
        tracking_number: impl Into<String>,
    ) -> Command<pb::ShipOrderRequest> {
        let request = pb::ShipOrderRequest {
            carrier: carrier.into(),
            tracking_number: tracking_number.into(),
            ..Default::default()
        };
        Command::new(self, order_id, request)
    }

    /// DeliverOrder.
    pub fn deliver_order(&self, order_id: Uuid) -> Command<pb::DeliverOrderRequest> {
        Command::new(self, order_id, pb::DeliverOrderRequest::default())
    }

    /// CompleteOrder.
    pub fn complete_order(&self, order_id: Uuid) -> Command<pb::CompleteOrderRequest> {
        Command::new(self, order_id, pb::CompleteOrderRequest::default())
    }

    /// CancelOrder: cancelled directly, or CancellationPending with compensations.
    pub fn cancel_order(
        &self,
        order_id: Uuid,
        reason: impl Into<String>,
    ) -> Command<pb::CancelOrderRequest> {
        let request = pb::CancelOrderRequest {
            reason: reason.into(),
            ..Default::default()
        };
        Command::new(self, order_id, request)
    }

    /// ReleaseInventory (a compensation).
    pub fn release_inventory(&self, order_id: Uuid) -> Command<pb::ReleaseInventoryRequest> {
        Command::new(self, order_id, pb::ReleaseInventoryRequest::default())
    }

    /// RefundPayment of `amount` (a partial refund, or what a pending cancellation owes).
    pub fn refund_payment(
        &self,
        order_id: Uuid,
        amount: pb::Money,
    ) -> Command<pb::RefundPaymentRequest> {
        let request = pb::RefundPaymentRequest {
            amount: Some(amount),
            ..Default::default()
        };
        Command::new(self, order_id, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_builder_chooses_its_command_id_once() {
        let client = Client::connect("http://127.0.0.1:1").unwrap();
        let order = Uuid::new_v4();
        let confirm = client.confirm_order(order).expected_version(3);
        let again = confirm.clone();
        assert_eq!(confirm.request().command_id, again.request().command_id);
        assert!(Uuid::parse_str(&confirm.request().command_id).is_ok());
        assert_eq!(confirm.request().order_id, order.to_string());
        assert_eq!(confirm.request().expected_version, Some(3));
        let other = client.confirm_order(order);
        assert_ne!(confirm.request().command_id, other.request().command_id);
        let chosen = Uuid::new_v4();
        assert_eq!(
            other.command_id(chosen).request().command_id,
            chosen.to_string()
        );
    }

    #[tokio::test]
    async fn place_order_builds_the_whole_request() {
        let client = Client::connect("http://127.0.0.1:1").unwrap();
        let customer = Uuid::new_v4();
        let order = Uuid::new_v4();
        let place = client
            .place_order(customer)
            .order_id(order)
            .line("SKU-1", 2, money("EUR", 1250))
            .shipping_method(pb::ShippingMethod::Express);
        let request = place.request();
        assert_eq!(request.order_id, order.to_string());
        assert_eq!(request.customer_id, customer.to_string());
        assert_eq!(request.lines.len(), 1);
        assert_eq!(request.shipping_method(), pb::ShippingMethod::Express);
        assert_eq!(
            <pb::PlaceOrderRequest as CommandRequest>::NAME,
            "PlaceOrder"
        );
    }
}

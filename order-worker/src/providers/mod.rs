//! The saga's outside world: inventory, payment and shipping providers, as ports.
//!
//! A provider either does what was asked, refuses for good ([`ProviderError::Refused`]: out of
//! stock, payment declined: a business answer the saga records), or fails for now
//! ([`ProviderError::Transient`]: outage, timeout: try again later). Every request carries an
//! idempotency key (the id of the command the answer will be recorded with), and the answer to
//! a repeated key is the same, so a redelivered message leads to the very same command.
//!
//! The shipped adapter is [`simulated::Simulated`]; [`guard::Guard`] wraps every call in a
//! circuit breaker, a timeout and retries with backoff.

pub mod guard;
pub mod simulated;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use order_proto::v1 as pb;
use uuid::Uuid;

/// Why a provider call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Try again later (outage, timeout, overload).
    #[error("{0}")]
    Transient(String),
    /// A final, negative answer (out of stock, declined).
    #[error("{0}")]
    Refused(String),
}

/// One order line as the inventory sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone)]
pub struct ReserveRequest {
    pub order_id: Uuid,
    pub lines: Vec<Line>,
    pub idempotency_key: Uuid,
}

#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    pub order_id: Uuid,
    pub reservation_id: String,
    pub idempotency_key: Uuid,
}

#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount: pb::Money,
    pub skus: Vec<String>,
    pub idempotency_key: Uuid,
}

/// How money goes back: an authorization that was never captured is voided, captured money
/// is refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentAction {
    Void,
    Refund,
}

#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub order_id: Uuid,
    pub payment_id: String,
    pub amount: pb::Money,
    pub action: PaymentAction,
    pub idempotency_key: Uuid,
}

#[derive(Debug, Clone)]
pub struct ShipRequest {
    pub order_id: Uuid,
    pub method: pb::ShippingMethod,
    pub country: String,
    pub idempotency_key: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
}

#[derive(Debug, Clone)]
pub struct DeliveryRequest {
    pub order_id: Uuid,
    pub tracking_number: String,
    pub idempotency_key: Uuid,
}

/// Reserves and releases stock.
pub trait InventoryProvider: Send + Sync + fmt::Debug {
    /// Reserve every line; the answer is the reservation reference.
    fn reserve(&self, request: ReserveRequest) -> BoxFuture<'_, Result<String, ProviderError>>;
    fn release(&self, request: ReleaseRequest) -> BoxFuture<'_, Result<(), ProviderError>>;
}

/// Authorizes, voids and refunds payments.
pub trait PaymentProvider: Send + Sync + fmt::Debug {
    /// Authorize the amount; the answer is the payment reference.
    fn authorize(&self, request: AuthorizeRequest) -> BoxFuture<'_, Result<String, ProviderError>>;
    fn refund(&self, request: RefundRequest) -> BoxFuture<'_, Result<(), ProviderError>>;
}

/// Hands parcels to a carrier and reports their delivery.
pub trait ShippingProvider: Send + Sync + fmt::Debug {
    fn ship(&self, request: ShipRequest) -> BoxFuture<'_, Result<Shipment, ProviderError>>;
    /// Resolves once the parcel was delivered.
    fn deliver(&self, request: DeliveryRequest) -> BoxFuture<'_, Result<(), ProviderError>>;
}

/// The three providers the saga talks to.
#[derive(Debug, Clone)]
pub struct Providers {
    pub inventory: Arc<dyn InventoryProvider>,
    pub payment: Arc<dyn PaymentProvider>,
    pub shipping: Arc<dyn ShippingProvider>,
}

impl Providers {
    /// One adapter for all three ports.
    pub fn all<P>(provider: Arc<P>) -> Self
    where
        P: InventoryProvider + PaymentProvider + ShippingProvider + 'static,
    {
        Self {
            inventory: provider.clone(),
            payment: provider.clone(),
            shipping: provider,
        }
    }
}

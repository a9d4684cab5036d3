//! The saga's outside world: inventory, payment and shipping providers, as ports.
//!
//! A provider either does what was asked, refuses for good ([`ProviderError::Refused`]: out of
//! stock, payment declined: a business answer the saga records), fails for now
//! ([`ProviderError::Transient`]: outage, timeout, overload: try again later, not before its
//! `retry_after` when it gave one), or says the request itself is wrong
//! ([`ProviderError::Rejected`]: it can never succeed; an operator must look). Every mutating
//! request carries an idempotency key (the id of the command the answer will be recorded
//! with), and the answer to a repeated key is the same, so a redelivered message leads to the
//! very same command.
//!
//! Two adapters: [`simulated::Simulated`] (the default, for the demo and tests) and
//! [`http::HttpProviders`] (HTTP/JSON services described by the OpenAPI documents in
//! `docs/providers/`). [`guard::Guard`] wraps every call in a circuit breaker, a timeout and
//! retries with backoff.

pub mod guard;
pub mod http;
pub mod simulated;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use order_proto::v1 as pb;
use uuid::Uuid;

/// Why a provider call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Try again later (outage, timeout, overload), not before `retry_after` when the provider
    /// said so (`Retry-After`).
    #[error("{reason}")]
    Transient {
        /// What went wrong, naming the provider.
        reason: String,
        /// The provider's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// A final, negative business answer (out of stock, declined).
    #[error("{0}")]
    Refused(String),
    /// The provider refuses the request itself (HTTP 400: it breaks the contract); the same
    /// request can never succeed.
    #[error("{0}")]
    Rejected(String),
}

impl ProviderError {
    /// A transient failure without a `Retry-After`.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// One order line as the inventory sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The stock-keeping unit.
    pub sku: String,
    /// How many (at least 1).
    pub quantity: i64,
}

/// Reserve the stock of an order's lines.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    /// The order the stock is for.
    pub order_id: Uuid,
    /// Every line of the order.
    pub lines: Vec<Line>,
    /// The id of the command the answer is recorded with.
    pub idempotency_key: Uuid,
}

/// Give a reservation's stock back (a cancellation).
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    /// The order the reservation belongs to.
    pub order_id: Uuid,
    /// The provider's reservation reference.
    pub reservation_id: String,
    /// The id of the command the answer is recorded with.
    pub idempotency_key: Uuid,
}

/// Authorize an order's total.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// The order being paid.
    pub order_id: Uuid,
    /// The paying customer.
    pub customer_id: String,
    /// The order total.
    pub amount: pb::Money,
    /// The order's lines (line items of the payment: some gateways decide on them).
    pub lines: Vec<Line>,
    /// The id of the command the answer is recorded with.
    pub idempotency_key: Uuid,
}

/// Capture an authorized payment (the order is confirmed).
#[derive(Debug, Clone)]
pub struct CaptureRequest {
    /// The order being paid.
    pub order_id: Uuid,
    /// The provider's payment reference from the authorization.
    pub payment_id: String,
    /// The amount to capture (the authorized amount).
    pub amount: pb::Money,
    /// The id of the command the answer is recorded with.
    pub idempotency_key: Uuid,
}

/// How money goes back: an authorization that was never captured is voided, captured money
/// is refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentAction {
    /// Release an authorization that was never captured.
    Void,
    /// Return captured money.
    Refund,
}

/// Give money back: void an authorization or refund a capture.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// The order being compensated.
    pub order_id: Uuid,
    /// The provider's payment reference.
    pub payment_id: String,
    /// How much.
    pub amount: pb::Money,
    /// Void (never captured) or refund (captured).
    pub action: PaymentAction,
    /// The id of the command the answer is recorded with.
    pub idempotency_key: Uuid,
}

/// Where a parcel goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub recipient: String,
    pub line1: String,
    pub line2: String,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// Hand an order's parcel to a carrier.
#[derive(Debug, Clone)]
pub struct ShipRequest {
    /// The order shipped.
    pub order_id: Uuid,
    /// Standard, express or overnight.
    pub method: pb::ShippingMethod,
    /// The shipping address of the order.
    pub address: Address,
    /// What is in the parcel.
    pub lines: Vec<Line>,
    /// The id of the command the answer is recorded with.
    pub idempotency_key: Uuid,
}

/// A parcel handed to a carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    /// Who carries it.
    pub carrier: String,
    /// The carrier's tracking number (also the shipment's id at the provider).
    pub tracking_number: String,
}

/// Ask whether a parcel was delivered.
#[derive(Debug, Clone)]
pub struct DeliveryRequest {
    /// The order shipped.
    pub order_id: Uuid,
    /// The tracking number from the shipment.
    pub tracking_number: String,
}

/// Where a parcel is, as its carrier reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered to the recipient.
    Delivered,
    /// On its way; ask again, not before `recheck_after` when the carrier said so.
    InTransit {
        /// The carrier's `Retry-After`, if it sent one.
        recheck_after: Option<Duration>,
    },
}

/// Reserves and releases stock.
pub trait InventoryProvider: Send + Sync + fmt::Debug {
    /// Reserve every line; the answer is the reservation reference.
    fn reserve(&self, request: ReserveRequest) -> BoxFuture<'_, Result<String, ProviderError>>;
    /// Give the stock of a reservation back.
    fn release(&self, request: ReleaseRequest) -> BoxFuture<'_, Result<(), ProviderError>>;
}

/// Authorizes, captures, voids and refunds payments.
pub trait PaymentProvider: Send + Sync + fmt::Debug {
    /// Authorize the amount; the answer is the payment reference.
    fn authorize(&self, request: AuthorizeRequest) -> BoxFuture<'_, Result<String, ProviderError>>;
    /// Capture an authorized amount.
    fn capture(&self, request: CaptureRequest) -> BoxFuture<'_, Result<(), ProviderError>>;
    /// Void an authorization or refund a capture.
    fn refund(&self, request: RefundRequest) -> BoxFuture<'_, Result<(), ProviderError>>;
}

/// Hands parcels to a carrier and reports their delivery.
pub trait ShippingProvider: Send + Sync + fmt::Debug {
    /// Hand the parcel to a carrier; the answer names the carrier and the tracking number.
    fn ship(&self, request: ShipRequest) -> BoxFuture<'_, Result<Shipment, ProviderError>>;
    /// Where the parcel is now (carriers report delivery later, so this is asked again until
    /// it says delivered).
    fn delivery(&self, request: DeliveryRequest) -> BoxFuture<'_, Result<Delivery, ProviderError>>;
}

/// The three providers the saga talks to.
#[derive(Debug, Clone)]
pub struct Providers {
    /// Stock.
    pub inventory: Arc<dyn InventoryProvider>,
    /// Money.
    pub payment: Arc<dyn PaymentProvider>,
    /// Parcels.
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

//! A typed client of the order ledger's gRPC API (`orders.v1`), over the generated stubs of
//! `order-proto`.
//!
//! - **Commands** ([`Command`]): one builder per `OrderService` RPC
//!   ([`Client::place_order`], [`Client::confirm_order`], ...). The command id is chosen
//!   when the builder is made, so every retry of it is the same command to the service.
//! - **Retries** ([`RetryPolicy`]): UNAVAILABLE, RESOURCE_EXHAUSTED (but never a message the
//!   service refused for its size: ErrorInfo reason `REQUEST_TOO_LARGE`), DEADLINE_EXCEEDED, a
//!   dropped connection, and ABORTED unless the command pins `expected_version`, with
//!   bounded exponential backoff and jitter (by default 6 attempts over at least 2.5 s: a
//!   restart of a second or two); a deadline on every attempt, and optionally one on the
//!   whole call ([`RetryPolicy::total_timeout`]).
//! - **Read-your-writes**: a [`CommandAnswer`] carries the global position of what the command
//!   wrote; [`Client::get_order_after`] waits until the read model has it.
//! - **Queries** ([`Query`]): GetOrder, ListOrders, GetOrderEvents.
//! - **The live log** ([`EventStream`]): SubscribeEvents as a `futures::Stream` that resumes
//!   exactly after its last event when the connection drops or the service restarts (it
//!   keeps trying for a minute without a subscription by default, see
//!   [`EventStream::reconnect_for`]).
//! - **On every call**: TLS (`https://` endpoints, checked against the CA you give), the
//!   bearer token, `x-correlation-id` (yours, see [`CallContext`], or a fresh one per call)
//!   and W3C `traceparent` (yours, or the current `tracing` span's OpenTelemetry context when
//!   there is one). Several endpoints take calls in turn, and one that cannot be reached
//!   takes none until it can again ([`ClientBuilder::endpoint`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), order_client::Error> {
//! use order_client::{Client, money, pb};
//! use uuid::Uuid;
//!
//! let client = Client::builder()
//!     .endpoint("http://127.0.0.1:50051")
//!     .bearer_token("a-token-of-at-least-sixteen-characters")
//!     .build()?;
//! let placed = client
//!     .place_order(Uuid::new_v4()) // the customer
//!     .line("SKU-1", 2, money("EUR", 1250))
//!     .ship_to(pb::Address {
//!         recipient: "Ada Lovelace".into(),
//!         line1: "Unter den Linden 1".into(),
//!         city: "Berlin".into(),
//!         postal_code: "10117".into(),
//!         country: "DE".into(),
//!         ..Default::default()
//!     })
//!     .await?;
//! let reserved = client
//!     .reserve_inventory(placed.order_id, "res-1")
//!     .expected_version(placed.version)
//!     .await?;
//! let order = client.get_order_after(&reserved).await?;
//! println!("{} is {:?}", order.order_id, order.status());
//! # Ok(()) }
//! ```
//!
//! This crate knows the wire contract only: it validates nothing the service validates
//! (bad input comes back as INVALID_ARGUMENT naming the field).

#![deny(missing_docs)]

mod balance;
mod client;
mod command;
mod context;
mod error;
mod query;
mod retry;
mod subscribe;

pub use client::{
    Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_DECODING_MESSAGE_SIZE,
    DEFAULT_TIMEOUT, Health, Transport, TransportError,
};
pub use command::{Command, CommandAnswer, CommandRequest, money};
pub use context::{CAUSATION_HEADER, CORRELATION_HEADER, CallContext, current_trace_context};
pub use error::{Error, code_name};
pub use query::{Query, QueryRequest};
pub use retry::{DEFAULT_ATTEMPTS, RetryPolicy};
pub use subscribe::{DEFAULT_MAX_RECONNECTS, DEFAULT_RECONNECT_FOR, EventStream, Start};

/// The generated messages of `orders.v1` (requests, `Order`, `Event`, enums).
pub use order_proto::v1 as pb;
/// gRPC status codes, as [`Error::code`] returns them.
pub use tonic::Code;

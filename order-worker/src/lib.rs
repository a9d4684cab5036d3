//! order-worker (`sqs-consumer` mode): consumes the order events the projector publishes to
//! the SQS FIFO queue and drives each order's fulfillment saga by sending the next command
//! through order-grpc's API. It reaches the order log only through that API.
//!
//! - [`consumer`]: long-poll, bounded concurrency, visibility heartbeat, batched deletes,
//!   retry backoff, dead-lettering.
//! - [`process`]: one event, one saga step: read the log, check the step is owed, ask the
//!   provider, send the command.
//! - [`saga`]: the saga as a table (event -> step -> command), command ids, owed/obsolete.
//! - [`classify`]: gRPC status codes -> retry, dead-letter, obsolete.
//! - [`providers`]: inventory, payment and shipping ports, the simulated adapter, and the
//!   guard (circuit breaker, timeout, retry with backoff and jitter) every call goes through.
//! - [`startup`]: `App::start` / `App::run_until`; [`config`]: the settings.

pub mod cli;

pub mod api;
pub mod backoff;
pub mod breaker;
pub mod classify;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod metrics;
pub mod process;
pub mod providers;
pub mod random;
pub mod saga;
pub mod startup;

pub use config::RunArgs;
pub use startup::App;

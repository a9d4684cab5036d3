//! order-client against the real order-grpc (in process) on a fresh PostgreSQL database.

mod queries;
mod retries;
mod stream;
mod support;
mod transport;

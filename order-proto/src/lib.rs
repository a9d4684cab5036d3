//! The `orders.v1` gRPC contract, generated from `proto/orders/v1/orders.proto`.
//!
//! Clients (the worker, benchmarks, tests) depend on this crate, never on the server.

/// Package `orders.v1`: messages, `OrderService` and `OrderQueryService` clients and servers.
pub mod v1 {
    // The proto's comments are written for every language's readers: `<transaction id>` there
    // is a placeholder, not an HTML tag.
    #![allow(
        rustdoc::invalid_html_tags,
        missing_debug_implementations,
        unused_qualifications,
        clippy::all,
        clippy::pedantic,
        clippy::unwrap_used
    )]
    tonic::include_proto!("orders.v1");
}

/// The encoded `FileDescriptorSet` of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("orders_descriptor");

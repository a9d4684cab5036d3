//! The `order-grpc` binary: see [`order_grpc::cli`].

fn main() {
    order_grpc::cli::main();
}

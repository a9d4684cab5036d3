//! The `order-projector` binary: see [`order_projector::cli`].

fn main() {
    order_projector::cli::main();
}

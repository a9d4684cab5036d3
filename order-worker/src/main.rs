//! The `order-worker` binary: see [`order_worker::cli`].

fn main() {
    order_worker::cli::main();
}

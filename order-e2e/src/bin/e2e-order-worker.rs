//! order-worker, linked into order-e2e so that its tests run exactly the code they were built with
//! (`env!("CARGO_BIN_EXE_e2e-order-worker")`).

fn main() {
    order_worker::cli::main();
}

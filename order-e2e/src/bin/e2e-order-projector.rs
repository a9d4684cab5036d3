//! order-projector, linked into order-e2e so that its tests run exactly the code they were built with
//! (`env!("CARGO_BIN_EXE_e2e-order-projector")`).

fn main() {
    order_projector::cli::main();
}

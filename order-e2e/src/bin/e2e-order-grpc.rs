//! order-grpc, linked into order-e2e so that its tests run exactly the code they were built with
//! (`env!("CARGO_BIN_EXE_e2e-order-grpc")`).

fn main() {
    order_grpc::cli::main();
}

//! order-examples' sales-projector (a team's own projector on the projector library), linked
//! into order-e2e so that the fault scenarios run exactly the code they were built with
//! (`env!("CARGO_BIN_EXE_e2e-sales-projector")`).

fn main() {
    match order_examples::sales_projector() {
        Ok(service) => service.main(),
        Err(why) => {
            eprintln!("sales-projector: {why}");
            std::process::exit(2)
        }
    }
}

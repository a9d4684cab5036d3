//! `sales-projector`: a team's own projector service ([`order_examples::sales_projector`]:
//! two projections on [`order_projector::cli::Service`]). The library gives it catch-up from
//! the start of the log, leases (run several for failover), fenced checkpoints, backoff,
//! metrics on the admin port, `replay --projection NAME` with an atomic swap, a rebuild when a
//! projection's version changes, and `status`.
//!
//! ```sh
//! DATABASE_URL=postgres://... sales-projector            # run (the default)
//! sales-projector replay --projection sku_sales          # rebuild into shadow tables, swap
//! sales-projector status                                 # checkpoints, lag, owners
//! ```

fn main() {
    match order_examples::sales_projector() {
        Ok(service) => service.main(),
        Err(why) => {
            eprintln!("sales-projector: {why}");
            std::process::exit(2)
        }
    }
}

//! `sales-projector`: a team's own projector service. The library gives it catch-up from the
//! start of the log, leases (run several for failover), fenced checkpoints, backoff, metrics
//! on the admin port, `replay --projection NAME` with an atomic swap, a rebuild when a
//! projection's version changes, and `status`.
//!
//! ```sh
//! DATABASE_URL=postgres://... sales-projector            # run (the default)
//! sales-projector replay --projection sku_sales          # rebuild into shadow tables, swap
//! sales-projector status                                 # checkpoints, lag, owners
//! ```
//!
//! `SKU_SALES_PAGE` sets the sales projection's page size (events per transaction).

use order_examples::{CreditBalances, SkuSales};
use order_projector::cli::Service;

fn main() {
    let page = std::env::var("SKU_SALES_PAGE")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1000);
    Service::new(
        "sales-projector",
        "Sales per SKU per day and store-credit balances",
    )
    .projection(SkuSales::new().page(page))
    .projection(CreditBalances)
    .main()
}

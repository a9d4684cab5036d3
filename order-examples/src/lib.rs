//! What a team writes to add to the order ledger, using only the public libraries:
//!
//! - [`sku_sales`]: a projection of orders of its own (units and revenue per SKU per day),
//!   with a table of state it needs across events and the [`order_projector::StreamVersions`]
//!   guard;
//! - [`store_credit`]: a second aggregate (a customer's store credit) stored beside orders
//!   in the same log, under its own category;
//! - [`credit_balances`]: a projection of that aggregate only;
//! - the `sales-projector` binary (`src/bin/sales-projector.rs`): both projections as a
//!   service with `run`, `replay --projection NAME`, `status` and `healthcheck`, in a few
//!   lines.
//!
//! `docs/library.md` walks through them; `cargo run -p order-examples --example ...` runs them
//! against the local environment (`scripts/dev up`).

#![deny(missing_docs)]

pub mod credit_balances;
pub mod sku_sales;
pub mod store_credit;

pub use credit_balances::CreditBalances;
pub use sku_sales::SkuSales;
pub use store_credit::{StoreCredit, StoreCreditCommand, StoreCreditError, StoreCreditEvent};

/// The `sales-projector` service: both example projections, with every subcommand of
/// `order-projector` (`run`, `replay --projection NAME`, `status`, `healthcheck`).
/// `SKU_SALES_PAGE` sets the sales projection's page size (events per transaction, default
/// 1,000); a value that is not a number is refused with a one-line reason.
///
/// ```no_run
/// // The whole `main` of the binary:
/// match order_examples::sales_projector() {
///     Ok(service) => service.main(),
///     Err(why) => {
///         eprintln!("sales-projector: {why}");
///         std::process::exit(2)
///     }
/// }
/// ```
pub fn sales_projector() -> Result<order_projector::cli::Service, String> {
    let sales = match std::env::var("SKU_SALES_PAGE") {
        Ok(page) => SkuSales::new().page(
            page.parse()
                .map_err(|_| format!("SKU_SALES_PAGE={page:?} is not a number of events"))?,
        ),
        Err(_) => SkuSales::new(),
    };
    Ok(order_projector::cli::Service::new(
        "sales-projector",
        "Sales per SKU per day and store-credit balances. SKU_SALES_PAGE: the sales \
         projection's page size, in events per transaction (default 1000)",
    )
    .projection(sales)
    .projection(CreditBalances))
}

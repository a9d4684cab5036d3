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

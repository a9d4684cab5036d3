//! order-console in process, as a browser-less client sees it: the read-only role, sign-in,
//! security headers, escaping, the flow counters, the services, subscriptions and queues
//! pages. The browser tests (order-e2e, `console`) drive it with the real services.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod auth;
mod flow;
mod pages;
mod read_only;
mod subscriptions;
mod support;

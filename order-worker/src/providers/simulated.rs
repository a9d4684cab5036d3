//! The shipped provider adapter: a simulation with configurable latency and failures, so that
//! the saga, its retries and its dead-letter handling can be watched without real partners.
//!
//! Random, per call: latency (uniform between half and one and a half times the mean) and
//! transient failures (`transient_failure_rate`). Deterministic, per order (so that a
//! redelivered message gets the same answer): the permanent refusals.
//!
//! | rule | answer |
//! |---|---|
//! | a line's SKU starts with `out_of_stock_sku_prefix` (default `OOS-`) | inventory: out of stock |
//! | `out_of_stock_rate` of the orders, picked by a hash of the order id | inventory: out of stock |
//! | a line's SKU starts with `decline_sku_prefix` (default `DECLINE-`) | payment: declined |
//! | the customer is in `decline_customers` | payment: declined |
//! | the amount (minor units) exceeds `decline_amount_over` | payment: declined |
//! | `decline_rate` of the orders, picked by a hash of the order id | payment: declined |
//!
//! References are derived from the request's idempotency key, so a repeated request gets the
//! same reservation, payment and tracking references.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use order_proto::v1 as pb;
use uuid::Uuid;

use crate::clock::Clock;
use crate::providers::{
    AuthorizeRequest, CaptureRequest, Delivery, DeliveryRequest, InventoryProvider, PaymentAction,
    PaymentProvider, ProviderError, RefundRequest, ReleaseRequest, ReserveRequest, ShipRequest,
    Shipment, ShippingProvider,
};
use crate::random::{Random, stable_unit};

/// How the simulation behaves.
#[derive(Debug, Clone, Default, PartialEq)]
#[allow(missing_docs)]
pub struct SimulationSettings {
    /// Mean latency of every call.
    pub latency: Duration,
    /// Share of calls (0-1) that fail transiently.
    pub transient_failure_rate: f64,
    /// Share of orders (0-1) that are out of stock.
    pub out_of_stock_rate: f64,
    /// Share of orders (0-1) whose payment is declined.
    pub decline_rate: f64,
    pub out_of_stock_sku_prefix: Option<String>,
    pub decline_sku_prefix: Option<String>,
    pub decline_amount_over: Option<i64>,
    pub decline_customers: Vec<String>,
}

/// The simulated inventory, payment and shipping provider (all three ports).
#[derive(Debug)]
pub struct Simulated {
    settings: SimulationSettings,
    random: Arc<Random>,
    clock: Arc<dyn Clock>,
}

impl Simulated {
    /// A simulation with these settings, drawing from `random` and waiting on `clock`.
    pub fn new(settings: SimulationSettings, random: Arc<Random>, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            random,
            clock,
        }
    }

    /// Whether the stock of an order exists (the deterministic rules only).
    pub fn stock_verdict(&self, order_id: Uuid, skus: &[&str]) -> Result<(), String> {
        if let Some(prefix) = non_empty(&self.settings.out_of_stock_sku_prefix)
            && let Some(sku) = skus.iter().find(|sku| sku.starts_with(prefix))
        {
            return Err(format!("out of stock: {sku}"));
        }
        if share(order_id, "inventory") < self.settings.out_of_stock_rate {
            return Err("out of stock (simulated share of orders)".to_owned());
        }
        Ok(())
    }

    /// Whether a payment is accepted (the deterministic rules only).
    pub fn payment_verdict(
        &self,
        order_id: Uuid,
        customer_id: &str,
        amount_minor: i64,
        skus: &[&str],
    ) -> Result<(), String> {
        if let Some(prefix) = non_empty(&self.settings.decline_sku_prefix)
            && let Some(sku) = skus.iter().find(|sku| sku.starts_with(prefix))
        {
            return Err(format!("payment declined: order contains {sku}"));
        }
        if self
            .settings
            .decline_customers
            .iter()
            .any(|c| c.eq_ignore_ascii_case(customer_id))
        {
            return Err("payment declined: customer is blocked".to_owned());
        }
        if let Some(limit) = self.settings.decline_amount_over
            && amount_minor > limit
        {
            return Err(format!(
                "payment declined: amount {amount_minor} exceeds the limit {limit}"
            ));
        }
        if share(order_id, "payment") < self.settings.decline_rate {
            return Err("payment declined (simulated share of orders)".to_owned());
        }
        Ok(())
    }

    /// Wait the latency, then maybe fail transiently.
    async fn call(&self, what: &str) -> Result<(), ProviderError> {
        let mean = self.settings.latency;
        if !mean.is_zero() {
            self.clock
                .sleep(mean.mul_f64(0.5 + self.random.unit()))
                .await;
        }
        if self.random.chance(self.settings.transient_failure_rate) {
            return Err(ProviderError::transient(format!(
                "{what}: simulated outage"
            )));
        }
        Ok(())
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn share(order_id: Uuid, provider: &str) -> f64 {
    let mut key = order_id.as_bytes().to_vec();
    key.extend_from_slice(provider.as_bytes());
    stable_unit(&key)
}

fn reference(prefix: &str, key: Uuid) -> String {
    format!("{prefix}-{}", key.simple())
}

impl InventoryProvider for Simulated {
    fn reserve(&self, request: ReserveRequest) -> BoxFuture<'_, Result<String, ProviderError>> {
        Box::pin(async move {
            self.call("inventory reserve").await?;
            let skus: Vec<&str> = request.lines.iter().map(|l| l.sku.as_str()).collect();
            self.stock_verdict(request.order_id, &skus)
                .map_err(ProviderError::Refused)?;
            Ok(reference("RSV", request.idempotency_key))
        })
    }

    fn release(&self, _request: ReleaseRequest) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.call("inventory release"))
    }
}

impl PaymentProvider for Simulated {
    fn authorize(&self, request: AuthorizeRequest) -> BoxFuture<'_, Result<String, ProviderError>> {
        Box::pin(async move {
            self.call("payment authorize").await?;
            let skus: Vec<&str> = request.lines.iter().map(|l| l.sku.as_str()).collect();
            self.payment_verdict(
                request.order_id,
                &request.customer_id,
                request.amount.amount_minor,
                &skus,
            )
            .map_err(ProviderError::Refused)?;
            Ok(reference("PAY", request.idempotency_key))
        })
    }

    fn capture(&self, _request: CaptureRequest) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.call("payment capture"))
    }

    fn refund(&self, request: RefundRequest) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.call(match request.action {
            PaymentAction::Void => "payment void",
            PaymentAction::Refund => "payment refund",
        }))
    }
}

impl ShippingProvider for Simulated {
    fn ship(&self, request: ShipRequest) -> BoxFuture<'_, Result<Shipment, ProviderError>> {
        Box::pin(async move {
            self.call("shipping ship").await?;
            let carrier = match request.method {
                pb::ShippingMethod::Express => "UPS",
                pb::ShippingMethod::Overnight => "FedEx",
                pb::ShippingMethod::Standard | pb::ShippingMethod::Unspecified => "DHL",
            };
            let tracking = request.idempotency_key.simple().to_string().to_uppercase();
            Ok(Shipment {
                carrier: carrier.to_owned(),
                tracking_number: format!("{}{}", request.address.country, &tracking[..20]),
            })
        })
    }

    fn delivery(
        &self,
        _request: DeliveryRequest,
    ) -> BoxFuture<'_, Result<Delivery, ProviderError>> {
        Box::pin(async move {
            self.call("shipping delivery").await?;
            Ok(Delivery::Delivered)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::providers::Line;

    fn simulated(settings: SimulationSettings) -> Simulated {
        Simulated::new(
            settings,
            Arc::new(Random::seeded(3)),
            Arc::new(ManualClock::new()),
        )
    }

    fn rules() -> SimulationSettings {
        SimulationSettings {
            out_of_stock_sku_prefix: Some("OOS-".into()),
            decline_sku_prefix: Some("DECLINE-".into()),
            decline_amount_over: Some(100_000),
            decline_customers: vec!["0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001".into()],
            ..SimulationSettings::default()
        }
    }

    #[test]
    fn the_deterministic_rules_refuse_what_they_name() {
        let sim = simulated(rules());
        let order = Uuid::from_u128(1);
        assert!(sim.stock_verdict(order, &["A-1", "B-2"]).is_ok());
        let refused = sim.stock_verdict(order, &["A-1", "OOS-9"]).unwrap_err();
        assert!(refused.contains("OOS-9"), "{refused}");

        let customer = "5d7e7e0e-0000-4000-8000-000000000001";
        assert!(sim.payment_verdict(order, customer, 100, &["A-1"]).is_ok());
        assert!(
            sim.payment_verdict(order, customer, 100, &["DECLINE-1"])
                .is_err()
        );
        assert!(
            sim.payment_verdict(order, customer, 100_001, &["A"])
                .is_err()
        );
        assert!(
            sim.payment_verdict(order, customer, 100_000, &["A"])
                .is_ok()
        );
        assert!(
            sim.payment_verdict(order, "0B5C3A3E-52F5-4B8A-9A55-B4F1E9A7C001", 1, &["A"])
                .is_err()
        );
    }

    #[test]
    fn empty_prefixes_switch_the_sku_rules_off() {
        let sim = simulated(SimulationSettings {
            out_of_stock_sku_prefix: Some(String::new()),
            decline_sku_prefix: None,
            ..SimulationSettings::default()
        });
        assert!(sim.stock_verdict(Uuid::from_u128(1), &["OOS-1"]).is_ok());
        assert!(
            sim.payment_verdict(Uuid::from_u128(1), "c", 1, &["DECLINE-1"])
                .is_ok()
        );
    }

    #[test]
    fn share_rules_pick_about_that_share_and_always_the_same_orders() {
        let sim = simulated(SimulationSettings {
            out_of_stock_rate: 0.2,
            ..SimulationSettings::default()
        });
        let refused: Vec<bool> = (0..2_000u128)
            .map(|i| sim.stock_verdict(Uuid::from_u128(i), &["A"]).is_err())
            .collect();
        let count = refused.iter().filter(|r| **r).count();
        assert!((300..500).contains(&count), "{count}");
        let again: Vec<bool> = (0..2_000u128)
            .map(|i| sim.stock_verdict(Uuid::from_u128(i), &["A"]).is_err())
            .collect();
        assert_eq!(refused, again);
    }

    #[tokio::test]
    async fn references_are_derived_from_the_idempotency_key() {
        let sim = simulated(rules());
        let key = Uuid::from_u128(99);
        let reserve = || ReserveRequest {
            order_id: Uuid::from_u128(1),
            lines: vec![Line {
                sku: "A-1".into(),
                quantity: 1,
            }],
            idempotency_key: key,
        };
        let first = sim.reserve(reserve()).await.unwrap();
        assert_eq!(first, sim.reserve(reserve()).await.unwrap());
        assert!(first.starts_with("RSV-"));
        let ship = || ShipRequest {
            order_id: Uuid::from_u128(1),
            method: pb::ShippingMethod::Express,
            address: crate::providers::Address {
                country: "DE".into(),
                ..Default::default()
            },
            lines: Vec::new(),
            idempotency_key: key,
        };
        let shipment = sim.ship(ship()).await.unwrap();
        assert_eq!(shipment, sim.ship(ship()).await.unwrap());
        assert_eq!(shipment.carrier, "UPS");
        assert!(shipment.tracking_number.starts_with("DE"));
    }

    #[tokio::test]
    async fn transient_failures_and_latency_follow_the_settings() {
        let clock = Arc::new(ManualClock::new());
        let sim = Simulated::new(
            SimulationSettings {
                latency: Duration::from_millis(100),
                transient_failure_rate: 1.0,
                ..SimulationSettings::default()
            },
            Arc::new(Random::seeded(5)),
            clock.clone(),
        );
        let result = sim
            .release(ReleaseRequest {
                order_id: Uuid::from_u128(1),
                reservation_id: "r".into(),
                idempotency_key: Uuid::from_u128(2),
            })
            .await;
        assert!(matches!(result, Err(ProviderError::Transient { .. })));
        let slept = clock.sleeps()[0];
        assert!(
            (Duration::from_millis(50)..Duration::from_millis(150)).contains(&slept),
            "{slept:?}"
        );
    }
}

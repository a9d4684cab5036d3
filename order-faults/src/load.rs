//! A steady load of orders through the real gRPC API. Every command is retried with the same
//! command id until it is acknowledged (or a deadline passes), as a careful client does: so
//! "acknowledged" means the service promised the command is recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use order_proto::v1 as pb;
use order_proto::v1::order_service_client::OrderServiceClient;
use tokio::sync::Mutex;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

/// One command the service acknowledged.
#[derive(Debug, Clone)]
pub struct Ack {
    pub order_id: Uuid,
    pub command_id: Uuid,
    pub global_position: u64,
    pub attempts: u32,
    /// When the acknowledgement arrived.
    pub at: Instant,
}

/// What the load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub acknowledged: Vec<Ack>,
    /// Commands never acknowledged before the retry deadline (their fate is unknown to the
    /// client; the audit checks they were applied at most once).
    pub abandoned: Vec<(Uuid, Uuid)>,
    pub attempts: u64,
    pub failed_attempts: u64,
    /// Longest time a failing attempt took to fail (fail fast, not hang).
    pub slowest_failure: Duration,
}

/// How much load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Orders placed per second.
    pub rate: u64,
    pub duration: Duration,
    /// How long one command is retried before the client gives up.
    pub retry_for: Duration,
    /// Share of orders with an out-of-stock item / a declined payment.
    pub out_of_stock: f64,
    pub declined: f64,
    /// Bearer token sent with every call.
    pub token: Option<String>,
    /// The payment-outage scenario: how long the payment provider is down (the seed's 30
    /// minutes, scaled to 30 s); the load goes on through it.
    pub outage: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            rate: 25,
            duration: Duration::from_secs(10),
            retry_for: Duration::from_secs(60),
            out_of_stock: 0.05,
            declined: 0.05,
            token: None,
            outage: Duration::from_secs(30),
        }
    }
}

fn fraction(n: u64, salt: u64) -> f64 {
    let hash = (n ^ salt)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(17);
    (hash % 10_000) as f64 / 10_000.0
}

pub fn place_request(
    order_id: Uuid,
    command_id: Uuid,
    n: u64,
    options: &LoadOptions,
) -> pb::PlaceOrderRequest {
    let sku = if fraction(n, 1) < options.out_of_stock {
        format!("OOS-{}", n % 20)
    } else if fraction(n, 2) < options.declined {
        format!("DECLINE-{}", n % 20)
    } else {
        format!("FAULTS-{}", n % 20)
    };
    let money = |amount_minor| {
        Some(pb::Money {
            currency: "EUR".into(),
            amount_minor,
        })
    };
    pb::PlaceOrderRequest {
        command_id: command_id.to_string(),
        order_id: order_id.to_string(),
        expected_version: None,
        customer_id: "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c0ff".into(),
        lines: vec![
            pb::OrderLine {
                sku,
                quantity: 1 + (n % 3) as i64,
                unit_price: money(1999),
            },
            pb::OrderLine {
                sku: "FAULTS-EXTRA".into(),
                quantity: 1,
                unit_price: money(250),
            },
        ],
        shipping_address: Some(pb::Address {
            recipient: "Fault Tester".into(),
            line1: "1 Chaos Street".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
            ..Default::default()
        }),
        shipping_method: pb::ShippingMethod::Standard as i32,
    }
}

/// Retry classes: the service may not have recorded the command yet.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
            | Code::Internal
    )
}

/// Place orders at `options.rate` for `options.duration`, each retried until acknowledged.
pub async fn run(endpoint: &str, options: &LoadOptions) -> anyhow::Result<LoadReport> {
    let channel = Channel::from_shared(endpoint.to_owned())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    let authorization: Option<tonic::metadata::AsciiMetadataValue> = options
        .token
        .as_ref()
        .map(|token| format!("Bearer {token}").parse())
        .transpose()
        .map_err(|_| anyhow::anyhow!("the token is not a valid header value"))?;
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let attempts = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut ticker =
        tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate.max(1) as f64));
    let mut tasks = Vec::new();
    let mut n = 0u64;
    while started.elapsed() < options.duration {
        ticker.tick().await;
        n += 1;
        let (channel, report, attempts, failed, options, authorization) = (
            channel.clone(),
            report.clone(),
            attempts.clone(),
            failed.clone(),
            options.clone(),
            authorization.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let order_id = Uuid::new_v4();
            let command_id = Uuid::new_v4();
            let mut client = OrderServiceClient::new(channel);
            let give_up = Instant::now() + options.retry_for;
            let mut tries = 0u32;
            loop {
                tries += 1;
                attempts.fetch_add(1, Ordering::Relaxed);
                let attempt = Instant::now();
                let mut request =
                    tonic::Request::new(place_request(order_id, command_id, n, &options));
                if let Some(value) = &authorization {
                    request
                        .metadata_mut()
                        .insert("authorization", value.clone());
                }
                match client.place_order(request).await {
                    Ok(response) => {
                        let response = response.into_inner();
                        report.lock().await.acknowledged.push(Ack {
                            order_id,
                            command_id,
                            global_position: response.global_position,
                            attempts: tries,
                            at: Instant::now(),
                        });
                        return;
                    }
                    Err(status) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let took = attempt.elapsed();
                        {
                            let mut report = report.lock().await;
                            report.slowest_failure = report.slowest_failure.max(took);
                        }
                        if !retryable(status.code()) || Instant::now() > give_up {
                            report.lock().await.abandoned.push((order_id, command_id));
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100 * u64::from(tries.min(10))))
                            .await;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let mut report = Arc::try_unwrap(report)
        .map_err(|_| anyhow::anyhow!("load still running"))?
        .into_inner();
    report.attempts = attempts.load(Ordering::Relaxed);
    report.failed_attempts = failed.load(Ordering::Relaxed);
    Ok(report)
}

//! `order-demo`: places orders through the real gRPC API, walks each to a different point of
//! its life, and prints what the service answered.

use std::time::Duration;

use clap::Parser;
use order_proto::v1 as pb;
use order_proto::v1::order_query_service_client::OrderQueryServiceClient;
use order_proto::v1::order_service_client::OrderServiceClient;
use tonic::transport::Channel;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(about = "Place demo orders through the order ledger's gRPC API")]
struct Args {
    /// The gRPC endpoint.
    #[arg(
        long,
        env = "ORDER_GRPC_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    /// How many orders to place.
    #[arg(long, default_value_t = 5)]
    orders: usize,
}

fn id() -> String {
    Uuid::new_v4().to_string()
}

fn eur(amount_minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency: "EUR".into(),
        amount_minor,
    })
}

fn place(order_id: &str, n: usize) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        command_id: id(),
        order_id: order_id.to_owned(),
        expected_version: None,
        customer_id: id(),
        lines: vec![
            pb::OrderLine {
                sku: format!("DEMO-{n}"),
                quantity: 1 + n as i64 % 3,
                unit_price: eur(1999),
            },
            pb::OrderLine {
                sku: "DEMO-GIFTWRAP".into(),
                quantity: 1,
                unit_price: eur(250),
            },
        ],
        shipping_address: Some(pb::Address {
            recipient: "Demo Customer".into(),
            line1: "1 Example Street".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
            ..Default::default()
        }),
        shipping_method: pb::ShippingMethod::Standard as i32,
    }
}

/// Walk an order `steps` commands along the happy path (the last two orders are cancelled).
async fn walk(
    commands: &mut OrderServiceClient<Channel>,
    order_id: &str,
    total: i64,
    steps: usize,
    cancel: bool,
) -> Result<pb::CommandResponse, tonic::Status> {
    let o = || order_id.to_owned();
    let mut last = None;
    for step in 0..steps {
        let response = match step {
            0 => {
                commands
                    .reserve_inventory(pb::ReserveInventoryRequest {
                        command_id: id(),
                        order_id: o(),
                        expected_version: None,
                        reservation_id: format!("res-{}", &order_id[..8]),
                    })
                    .await?
            }
            1 => {
                commands
                    .authorize_payment(pb::AuthorizePaymentRequest {
                        command_id: id(),
                        order_id: o(),
                        expected_version: None,
                        payment_id: format!("pay-{}", &order_id[..8]),
                        amount: eur(total),
                    })
                    .await?
            }
            2 => {
                commands
                    .confirm_order(pb::ConfirmOrderRequest {
                        command_id: id(),
                        order_id: o(),
                        expected_version: None,
                    })
                    .await?
            }
            3 => {
                commands
                    .start_fulfillment(pb::StartFulfillmentRequest {
                        command_id: id(),
                        order_id: o(),
                        expected_version: None,
                    })
                    .await?
            }
            4 => {
                commands
                    .ship_order(pb::ShipOrderRequest {
                        command_id: id(),
                        order_id: o(),
                        expected_version: None,
                        carrier: "DemoPost".into(),
                        tracking_number: format!("DP{}", &order_id[..8]),
                    })
                    .await?
            }
            5 => {
                commands
                    .deliver_order(pb::DeliverOrderRequest {
                        command_id: id(),
                        order_id: o(),
                        expected_version: None,
                    })
                    .await?
            }
            _ => {
                commands
                    .complete_order(pb::CompleteOrderRequest {
                        command_id: id(),
                        order_id: o(),
                        expected_version: None,
                    })
                    .await?
            }
        };
        last = Some(response.into_inner());
    }
    if cancel {
        let response = commands
            .cancel_order(pb::CancelOrderRequest {
                command_id: id(),
                order_id: o(),
                expected_version: None,
                reason: "demo: customer changed their mind".into(),
            })
            .await?
            .into_inner();
        last = Some(response);
        if steps >= 1 {
            last = Some(
                commands
                    .release_inventory(pb::ReleaseInventoryRequest {
                        command_id: id(),
                        order_id: o(),
                        expected_version: None,
                    })
                    .await?
                    .into_inner(),
            );
        }
        if steps >= 2 {
            last = Some(
                commands
                    .refund_payment(pb::RefundPaymentRequest {
                        command_id: id(),
                        order_id: o(),
                        expected_version: None,
                        amount: eur(total),
                    })
                    .await?
                    .into_inner(),
            );
        }
    }
    last.ok_or_else(|| tonic::Status::internal("no step taken"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let channel = Channel::from_shared(args.endpoint.clone())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let mut commands = OrderServiceClient::new(channel.clone());
    let mut queries = OrderQueryServiceClient::new(channel);
    println!("placing {} demo orders at {}", args.orders, args.endpoint);
    println!(
        "{:<36}  {:>7}  {:>8}  {:<22}  {:>10}",
        "order", "version", "position", "status", "total"
    );
    for n in 0..args.orders {
        let order_id = id();
        let request = place(&order_id, n);
        let total: i64 = request
            .lines
            .iter()
            .map(|l| l.quantity * l.unit_price.as_ref().map_or(0, |p| p.amount_minor))
            .sum();
        let placed = commands.place_order(request.clone()).await?.into_inner();
        // A retry of the same command changes nothing: the service answers with the first result.
        let retried = commands.place_order(request).await?.into_inner();
        assert!(retried.duplicate && retried.global_position == placed.global_position);
        let steps = n % 8;
        let cancel = n % 5 == 4 && steps < 4;
        let last = if steps == 0 && !cancel {
            placed
        } else {
            walk(&mut commands, &order_id, total, steps, cancel).await?
        };
        let order = queries
            .get_order(pb::GetOrderRequest {
                order_id: order_id.clone(),
                min_position: Some(last.global_position),
            })
            .await?
            .into_inner()
            .order
            .ok_or_else(|| anyhow::anyhow!("GetOrder returned no order"))?;
        let total = order
            .total
            .as_ref()
            .map(|m| {
                format!(
                    "{}.{:02} {}",
                    m.amount_minor / 100,
                    m.amount_minor % 100,
                    m.currency
                )
            })
            .unwrap_or_default();
        println!(
            "{:<36}  {:>7}  {:>8}  {:<22}  {:>10}",
            order.order_id,
            order.version,
            order.last_position,
            format!("{:?}", order.status()),
            total
        );
    }
    Ok(())
}

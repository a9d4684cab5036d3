//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

const EXAMPLES: &str = "\
Examples (ORDER_GRPC_URL=http://127.0.0.1:50051 is the default):
  ORDER=$(order-cli place --customer 0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001 \\
      --line SKU-1:2:1250 --line SKU-2:1:500 --currency EUR \\
      --recipient 'Ada Lovelace' --line1 '12 St James'\"'\"'s Square' --city London \\
      --postal-code 'SW1Y 4JH' --country GB --shipping express --print order-id)
  order-cli reserve \"$ORDER\" --reservation-id res-1
  order-cli authorize \"$ORDER\" --payment-id pay-1 --amount 3000 --currency EUR
  echo '{\"carrier\": \"DHL\", \"tracking_number\": \"JD0001\"}' | order-cli ship \"$ORDER\" --json-input -
  order-cli get \"$ORDER\" --json
  order-cli events \"$ORDER\"
  order-cli list --customer 0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001 --status shipped
  order-cli follow --after-position 0

Amounts are integer minor units of the currency (1250 EUR = 12.50 EUR), as in the API.

Exit codes:
  0  ok
  1  anything else (INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS)
  2  usage: bad flags or input (a field the subcommand does not take), unreadable files,
     unusable settings (an empty token, a CA file with no certificate, a service certificate
     refused: not signed by the CA, another name, expired)
  3  refused: INVALID_ARGUMENT, FAILED_PRECONDITION, ALREADY_EXISTS, ABORTED, OUT_OF_RANGE,
     RESOURCE_EXHAUSTED for a request too large
  4  NOT_FOUND
  5  unavailable after the retries: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (busy),
     CANCELLED
  6  UNAUTHENTICATED, PERMISSION_DENIED";

/// order-cli: place, walk through the saga, read and follow orders of the order ledger over
/// its gRPC API.
#[derive(Debug, Parser)]
#[command(name = "order-cli", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,
    /// Print JSON (one object; `follow`: one object per line) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Sub,
}

/// Where the service is and how to call it.
#[derive(Debug, Args)]
pub struct Connection {
    /// order-grpc's URL; several, comma-separated, take calls in turn (around one that cannot
    /// be reached). `https://` for TLS.
    #[arg(
        long,
        env = "ORDER_GRPC_URL",
        default_value = "http://127.0.0.1:50051",
        value_delimiter = ',',
        global = true
    )]
    pub url: Vec<String>,
    /// Bearer token sent with every call (an empty one is refused).
    #[arg(long, env = "ORDER_GRPC_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Whether the token came from `ORDER_GRPC_TOKEN` (for the error about an empty one).
    #[arg(skip)]
    pub token_from_env: bool,
    /// PEM file of the CA that signed the service's certificate (required for https://).
    #[arg(long, env = "ORDER_GRPC_TLS_CA_FILE", global = true)]
    pub tls_ca_file: Option<PathBuf>,
    /// The name on the service's certificate, when it is not the URL's host.
    #[arg(long, env = "ORDER_GRPC_TLS_DOMAIN", global = true)]
    pub tls_domain: Option<String>,
    /// Deadline of each attempt of a call (e.g. 500ms, 10s).
    #[arg(long, env = "ORDER_GRPC_TIMEOUT", default_value = "10s", value_parser = positive_duration, global = true)]
    pub timeout: Duration,
    /// Attempts per call (retries of UNAVAILABLE, DEADLINE_EXCEEDED, ... with backoff; a
    /// command keeps its id). The waits grow from 200 ms to 2 s: the default 6 keep trying
    /// for at least 2.5 s, through a restart of the service.
    #[arg(long, env = "ORDER_GRPC_ATTEMPTS", default_value_t = order_client::DEFAULT_ATTEMPTS, global = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: u32,
    /// Correlation id sent with every call (1-128 visible ASCII characters; default: a fresh
    /// one per call).
    #[arg(long, env = "ORDER_CORRELATION_ID", global = true, value_parser = correlation_id)]
    pub correlation_id: Option<String>,
}

/// A duration longer than zero (`500ms`, `10s`).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be longer than 0".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

/// A correlation id the client sends as it is (else it would silently send a fresh one).
fn correlation_id(text: &str) -> Result<String, String> {
    if order_client::CallContext::new(Some(text), None)
        .correlation_id()
        .is_some()
    {
        Ok(text.to_owned())
    } else {
        Err("must be 1-128 visible ASCII characters, no spaces".to_owned())
    }
}

/// One field of a command's answer, printed alone (for scripts).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Print {
    /// The order id.
    OrderId,
    /// The order's stream version after the command.
    Version,
    /// The global position of the command's last event (for `get --min-position`).
    Position,
    /// The order's status after the command.
    Status,
    /// The command id.
    CommandId,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// PlaceOrder, from flags or JSON (`{"customer_id", "lines": [{"sku", "quantity",
    /// "unit_price": {"currency", "amount_minor"}}], "shipping_address": {...},
    /// "shipping_method": "express"}`).
    Place(PlaceArgs),
    /// ReserveInventory: inventory reserved under a reservation id.
    Reserve(ReserveArgs),
    /// RejectInventory: inventory unavailable, the order is cancelled.
    RejectInventory(ReasonArgs),
    /// AuthorizePayment: the order total authorized under a payment id.
    #[command(alias = "pay")]
    Authorize(AuthorizeArgs),
    /// FailPayment: the payment failed.
    FailPayment(ReasonArgs),
    /// ConfirmOrder: confirmed, the payment captured.
    #[command(alias = "capture")]
    Confirm(CommandArgs),
    /// StartFulfillment.
    StartFulfillment(CommandArgs),
    /// ShipOrder: handed to a carrier.
    Ship(ShipArgs),
    /// DeliverOrder.
    Deliver(CommandArgs),
    /// CompleteOrder.
    Complete(CommandArgs),
    /// CancelOrder: cancelled, or CancellationPending with compensations.
    Cancel(ReasonArgs),
    /// ReleaseInventory (a compensation).
    ReleaseInventory(CommandArgs),
    /// RefundPayment: a partial refund, or what a pending cancellation owes.
    Refund(RefundArgs),
    /// GetOrder: the order as the read model holds it.
    Get(GetArgs),
    /// ListOrders, newest first.
    List(ListArgs),
    /// GetOrderEvents: an order's history from the log.
    Events(EventsArgs),
    /// SubscribeEvents: the log, then live (resumes by itself after a disconnect); Ctrl-C
    /// stops.
    Follow(FollowArgs),
}

/// What every saga command takes.
#[derive(Debug, Args)]
pub struct CommandArgs {
    /// The order (or `order_id` in the JSON input).
    pub order_id: Option<Uuid>,
    /// Read the command's fields from this JSON file (`-`: standard input; one object, each
    /// key once); flags win.
    #[arg(long, value_name = "FILE|-")]
    pub json_input: Option<PathBuf>,
    /// Apply only if the order is at this version (else ABORTED).
    #[arg(long)]
    pub expected_version: Option<u64>,
    /// The command id (idempotency key; default: a fresh UUID). The same id again is
    /// answered with the first answer and changes nothing.
    #[arg(long)]
    pub command_id: Option<Uuid>,
    /// Print only this field of the answer.
    #[arg(long, value_enum)]
    pub print: Option<Print>,
}

/// ReserveInventory's fields.
#[derive(Debug, Args)]
pub struct ReserveArgs {
    #[command(flatten)]
    pub common: CommandArgs,
    /// The inventory provider's reservation id.
    #[arg(long)]
    pub reservation_id: Option<String>,
}

/// A command with a reason.
#[derive(Debug, Args)]
pub struct ReasonArgs {
    #[command(flatten)]
    pub common: CommandArgs,
    /// Why.
    #[arg(long)]
    pub reason: Option<String>,
}

/// AuthorizePayment's fields.
#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    #[command(flatten)]
    pub common: CommandArgs,
    /// The payment provider's payment id.
    #[arg(long)]
    pub payment_id: Option<String>,
    #[command(flatten)]
    pub amount: AmountArgs,
}

/// RefundPayment's fields.
#[derive(Debug, Args)]
pub struct RefundArgs {
    #[command(flatten)]
    pub common: CommandArgs,
    #[command(flatten)]
    pub amount: AmountArgs,
}

/// An amount.
#[derive(Debug, Args)]
pub struct AmountArgs {
    /// The amount in minor units (1250 EUR = 12.50 EUR).
    #[arg(long)]
    pub amount: Option<i64>,
    /// ISO-4217 currency of the amount (default: the JSON input's, else EUR).
    #[arg(long)]
    pub currency: Option<String>,
}

/// ShipOrder's fields.
#[derive(Debug, Args)]
pub struct ShipArgs {
    #[command(flatten)]
    pub common: CommandArgs,
    /// The carrier.
    #[arg(long)]
    pub carrier: Option<String>,
    /// The carrier's tracking number.
    #[arg(long)]
    pub tracking_number: Option<String>,
}

/// PlaceOrder's fields.
#[derive(Debug, Args)]
pub struct PlaceArgs {
    /// Read the order from this JSON file (`-`: standard input; one object, each key once);
    /// flags win.
    #[arg(long, value_name = "FILE|-")]
    pub json_input: Option<PathBuf>,
    /// The new order's id (default: derived from --command-id when it is given, else a
    /// fresh UUID).
    #[arg(long)]
    pub order_id: Option<Uuid>,
    /// The command id (idempotency key; default: a fresh UUID, and a fresh order id with it).
    /// With --command-id and no --order-id, the order id is derived from the command id
    /// (UUID v5), so a retry names the same order: it is answered with the first answer and
    /// places nothing.
    #[arg(long)]
    pub command_id: Option<Uuid>,
    /// The customer.
    #[arg(long)]
    pub customer: Option<Uuid>,
    /// A line: SKU:QUANTITY:UNIT_PRICE (minor units), e.g. SKU-1:2:1250. Repeat for more
    /// (added to the JSON input's lines).
    #[arg(long = "line", value_name = "SKU:QTY:PRICE")]
    pub lines: Vec<String>,
    /// The currency of the lines' prices.
    #[arg(long, default_value = "EUR")]
    pub currency: String,
    /// Shipping address: recipient.
    #[arg(long)]
    pub recipient: Option<String>,
    /// Shipping address: first line.
    #[arg(long)]
    pub line1: Option<String>,
    /// Shipping address: second line.
    #[arg(long)]
    pub line2: Option<String>,
    /// Shipping address: city.
    #[arg(long)]
    pub city: Option<String>,
    /// Shipping address: region.
    #[arg(long)]
    pub region: Option<String>,
    /// Shipping address: postal code.
    #[arg(long)]
    pub postal_code: Option<String>,
    /// Shipping address: ISO 3166-1 alpha-2 country, e.g. DE.
    #[arg(long)]
    pub country: Option<String>,
    /// Shipping method: standard, express or overnight.
    #[arg(long)]
    pub shipping: Option<String>,
    /// Print only this field of the answer.
    #[arg(long, value_enum)]
    pub print: Option<Print>,
}

/// GetOrder's fields.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The order.
    pub order_id: Uuid,
    /// Read-your-writes: wait until the read model has applied this global position (a
    /// command's `--print position`).
    #[arg(long)]
    pub min_position: Option<u64>,
}

/// ListOrders' fields.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this customer's orders.
    #[arg(long)]
    pub customer: Option<Uuid>,
    /// Only orders in this status (placed, inventory_reserved, ..., cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// Orders per page (1-500).
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// Continue from a previous page's token (with the same --customer and --status).
    #[arg(long)]
    pub page_token: Option<String>,
    /// Every page.
    #[arg(long)]
    pub all: bool,
}

/// GetOrderEvents' fields.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The order.
    pub order_id: Uuid,
    /// Only events after this stream version.
    #[arg(long, default_value_t = 0)]
    pub after_version: u64,
    /// Read-your-writes: from a copy of the log holding this global position.
    #[arg(long)]
    pub min_position: Option<u64>,
}

/// SubscribeEvents' fields.
#[derive(Debug, Args)]
pub struct FollowArgs {
    /// Start after this global position (default: the beginning of the log).
    #[arg(long)]
    pub after_position: Option<u64>,
    /// Start exactly after this cursor (an earlier event's).
    #[arg(long)]
    pub after_cursor: Option<String>,
    /// Only this order's events.
    #[arg(long)]
    pub order: Option<Uuid>,
    /// Stop after this many events (at least 1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Give up after this many consecutive failed attempts to subscribe again (default: no
    /// limit by count; --reconnect-for ends the tries).
    #[arg(long)]
    pub max_reconnects: Option<u32>,
    /// Give up after trying to subscribe again for this long without a subscription that
    /// worked (e.g. 60s, 10m).
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub reconnect_for: Duration,
}

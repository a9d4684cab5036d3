//! A command's fields from JSON (`--json-input FILE|-`) and flags; flags win.

use std::io::Read;
use std::path::Path;

use order_client::pb;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::args::{
    AmountArgs, AuthorizeArgs, CommandArgs, PlaceArgs, ReasonArgs, RefundArgs, ReserveArgs,
    ShipArgs,
};

/// A mistake in the command line or its input (exit code 2).
#[derive(Debug)]
pub struct Usage(pub String);

fn read_json<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, Usage> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Usage(format!("cannot read the JSON input from stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| Usage(format!("cannot read {}: {e}", path.display())))?;
    }
    serde_json::from_str(&text).map_err(|e| Usage(format!("the JSON input: {e}")))
}

/// `{"currency": "EUR", "amount_minor": 1250}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyInput {
    currency: String,
    amount_minor: i64,
}

impl From<MoneyInput> for pb::Money {
    fn from(money: MoneyInput) -> Self {
        order_client::money(&money.currency, money.amount_minor)
    }
}

/// The fields of the saga commands, as JSON (the request message's field names) or flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandInput {
    order_id: Option<Uuid>,
    pub command_id: Option<Uuid>,
    pub expected_version: Option<u64>,
    pub reservation_id: Option<String>,
    reason: Option<String>,
    pub payment_id: Option<String>,
    amount: Option<MoneyInput>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
}

impl CommandInput {
    /// The order id, which is required.
    pub fn order_id(&self) -> Result<Uuid, Usage> {
        self.order_id
            .ok_or_else(|| Usage("the order id is required (argument or order_id)".into()))
    }

    /// A required text field.
    pub fn required(&self, value: Option<String>, name: &str) -> Result<String, Usage> {
        value.ok_or_else(|| Usage(format!("{name} is required (--{})", name.replace('_', "-"))))
    }

    /// The reason, which is required.
    pub fn reason(&self) -> Result<String, Usage> {
        self.required(self.reason.clone(), "reason")
    }

    /// The amount, which is required.
    pub fn amount(&self) -> Result<pb::Money, Usage> {
        self.amount
            .clone()
            .map(Into::into)
            .ok_or_else(|| Usage("the amount is required (--amount, minor units)".into()))
    }
}

/// The JSON input's fields every saga command takes.
const COMMON_FIELDS: [&str; 3] = ["order_id", "command_id", "expected_version"];

/// The JSON input of saga command `command`, which takes `fields` besides the common ones:
/// any other key (one of another command's, or one no command has) is refused, naming it and
/// the command.
fn read_command_json(
    path: Option<&Path>,
    command: &str,
    fields: &[&str],
) -> Result<CommandInput, Usage> {
    let value: Option<serde_json::Value> = read_json(path)?;
    let Some(value) = value else {
        return Ok(CommandInput::default());
    };
    if let serde_json::Value::Object(map) = &value
        && let Some(other) = map
            .keys()
            .find(|key| !COMMON_FIELDS.contains(&key.as_str()) && !fields.contains(&key.as_str()))
    {
        let takes: Vec<&str> = COMMON_FIELDS.iter().chain(fields).copied().collect();
        return Err(Usage(format!(
            "the JSON input's field {other:?} is not one {command} takes (it takes {})",
            takes.join(", ")
        )));
    }
    serde_json::from_value(value).map_err(|e| Usage(format!("the JSON input: {e}")))
}

fn overlay<T>(target: &mut Option<T>, flag: &Option<T>)
where
    T: Clone,
{
    if flag.is_some() {
        target.clone_from(flag);
    }
}

impl CommandArgs {
    /// The JSON input of `command`, which takes no fields but the common ones, with the flags
    /// laid over it.
    pub fn input(&self, command: &str) -> Result<CommandInput, Usage> {
        self.input_taking(command, &[])
    }

    /// The JSON input of `command`, which takes `fields` besides the common ones, with the
    /// common flags laid over it.
    fn input_taking(&self, command: &str, fields: &[&str]) -> Result<CommandInput, Usage> {
        let mut input = read_command_json(self.json_input.as_deref(), command, fields)?;
        overlay(&mut input.order_id, &self.order_id);
        overlay(&mut input.command_id, &self.command_id);
        overlay(&mut input.expected_version, &self.expected_version);
        Ok(input)
    }
}

impl ReserveArgs {
    /// The JSON input with the flags laid over it.
    pub fn input(&self) -> Result<CommandInput, Usage> {
        let mut input = self.common.input_taking("reserve", &["reservation_id"])?;
        overlay(&mut input.reservation_id, &self.reservation_id);
        Ok(input)
    }
}

impl ReasonArgs {
    /// The JSON input of `command` with the flags laid over it.
    pub fn input(&self, command: &str) -> Result<CommandInput, Usage> {
        let mut input = self.common.input_taking(command, &["reason"])?;
        overlay(&mut input.reason, &self.reason);
        Ok(input)
    }
}

impl AuthorizeArgs {
    /// The JSON input with the flags laid over it.
    pub fn input(&self) -> Result<CommandInput, Usage> {
        let mut input = self
            .common
            .input_taking("authorize", &["payment_id", "amount"])?;
        overlay(&mut input.payment_id, &self.payment_id);
        self.amount.overlay(&mut input)?;
        Ok(input)
    }
}

impl RefundArgs {
    /// The JSON input with the flags laid over it.
    pub fn input(&self) -> Result<CommandInput, Usage> {
        let mut input = self.common.input_taking("refund", &["amount"])?;
        self.amount.overlay(&mut input)?;
        Ok(input)
    }
}

impl AmountArgs {
    /// Lay the amount's flags over the input's amount.
    fn overlay(&self, input: &mut CommandInput) -> Result<(), Usage> {
        // Each part of the amount is laid over the JSON input's on its own.
        match (self.amount, &mut input.amount) {
            (Some(amount_minor), Some(money)) => money.amount_minor = amount_minor,
            (Some(amount_minor), None) => {
                input.amount = Some(MoneyInput {
                    currency: "EUR".to_owned(),
                    amount_minor,
                });
            }
            (None, Some(_)) => {}
            (None, None) if self.currency.is_some() => {
                return Err(Usage(
                    "--currency needs an amount (--amount, or amount in the JSON input)".into(),
                ));
            }
            (None, None) => {}
        }
        if let (Some(currency), Some(money)) = (&self.currency, &mut input.amount) {
            money.currency = currency.clone();
        }
        Ok(())
    }
}

impl ShipArgs {
    /// The JSON input with the flags laid over it.
    pub fn input(&self) -> Result<CommandInput, Usage> {
        let mut input = self
            .common
            .input_taking("ship", &["carrier", "tracking_number"])?;
        overlay(&mut input.carrier, &self.carrier);
        overlay(&mut input.tracking_number, &self.tracking_number);
        Ok(input)
    }
}

/// An order line as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineInput {
    sku: String,
    quantity: i64,
    unit_price: MoneyInput,
}

/// An address as JSON (the message's field names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AddressInput {
    recipient: String,
    line1: String,
    line2: String,
    city: String,
    region: String,
    postal_code: String,
    country: String,
}

/// PlaceOrder as JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceJson {
    order_id: Option<Uuid>,
    command_id: Option<Uuid>,
    customer_id: Option<Uuid>,
    #[serde(default)]
    lines: Vec<LineInput>,
    shipping_address: Option<AddressInput>,
    shipping_method: Option<String>,
}

/// PlaceOrder's fields, ready to send.
#[derive(Debug)]
pub struct PlaceInput {
    pub order_id: Option<Uuid>,
    pub command_id: Option<Uuid>,
    pub customer_id: Uuid,
    /// The request without its ids.
    pub request: pb::PlaceOrderRequest,
}

impl PlaceArgs {
    /// The JSON input with the flags laid over it.
    pub fn input(&self) -> Result<PlaceInput, Usage> {
        let json: PlaceJson = read_json(self.json_input.as_deref())?;
        let customer_id = self
            .customer
            .or(json.customer_id)
            .ok_or_else(|| Usage("the customer is required (--customer or customer_id)".into()))?;
        let mut lines: Vec<pb::OrderLine> = json
            .lines
            .into_iter()
            .map(|l| pb::OrderLine {
                sku: l.sku,
                quantity: l.quantity,
                unit_price: Some(l.unit_price.into()),
            })
            .collect();
        for line in &self.lines {
            lines.push(parse_line(line, &self.currency)?);
        }
        let json_address = json.shipping_address.unwrap_or_default();
        let pick = |flag: &Option<String>, json: String| flag.clone().unwrap_or(json);
        let address = pb::Address {
            recipient: pick(&self.recipient, json_address.recipient),
            line1: pick(&self.line1, json_address.line1),
            line2: pick(&self.line2, json_address.line2),
            city: pick(&self.city, json_address.city),
            region: pick(&self.region, json_address.region),
            postal_code: pick(&self.postal_code, json_address.postal_code),
            country: pick(&self.country, json_address.country),
        };
        let method = match self.shipping.as_deref().or(json.shipping_method.as_deref()) {
            None => pb::ShippingMethod::Standard,
            Some(name) => shipping_method(name)?,
        };
        Ok(PlaceInput {
            order_id: self.order_id.or(json.order_id),
            command_id: self.command_id.or(json.command_id),
            customer_id,
            request: pb::PlaceOrderRequest {
                customer_id: customer_id.to_string(),
                lines,
                shipping_address: Some(address),
                shipping_method: method as i32,
                ..Default::default()
            },
        })
    }
}

/// `SKU:QUANTITY:UNIT_PRICE_MINOR`.
fn parse_line(text: &str, currency: &str) -> Result<pb::OrderLine, Usage> {
    let bad = || {
        Usage(format!(
            "--line {text:?}: expected SKU:QUANTITY:UNIT_PRICE (minor units), e.g. SKU-1:2:1250"
        ))
    };
    let mut parts = text.rsplitn(3, ':');
    let (Some(price), Some(quantity), Some(sku)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    Ok(pb::OrderLine {
        sku: sku.to_owned(),
        quantity: quantity.trim().parse().map_err(|_| bad())?,
        unit_price: Some(order_client::money(
            currency,
            price.trim().parse().map_err(|_| bad())?,
        )),
    })
}

/// `express`, `EXPRESS` or `SHIPPING_METHOD_EXPRESS`.
fn shipping_method(name: &str) -> Result<pb::ShippingMethod, Usage> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SHIPPING_METHOD_") {
        upper
    } else {
        format!("SHIPPING_METHOD_{upper}")
    };
    pb::ShippingMethod::from_str_name(&full)
        .filter(|m| *m != pb::ShippingMethod::Unspecified)
        .ok_or_else(|| {
            Usage(format!(
                "shipping method {name:?}: expected standard, express or overnight"
            ))
        })
}

/// `shipped`, `SHIPPED` or `ORDER_STATUS_SHIPPED`.
pub fn status(name: &str) -> Result<pb::OrderStatus, Usage> {
    let upper = name.trim().to_ascii_uppercase().replace('-', "_");
    let full = if upper.starts_with("ORDER_STATUS_") {
        upper
    } else {
        format!("ORDER_STATUS_{upper}")
    };
    pb::OrderStatus::from_str_name(&full)
        .filter(|s| *s != pb::OrderStatus::Unspecified)
        .ok_or_else(|| {
            Usage(format!(
                "status {name:?}: expected placed, inventory_reserved, payment_authorized, \
                 confirmed, processing, shipped, delivered, completed, cancellation_pending or \
                 cancelled"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_and_currency_flags_replace_only_their_part_of_the_json_amount() {
        let dir = std::env::temp_dir().join(format!("order-cli-amount-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("auth.json");
        std::fs::write(
            &json,
            r#"{"payment_id": "p", "amount": {"currency": "USD", "amount_minor": 1000}}"#,
        )
        .unwrap();
        let args = |json_input: Option<&Path>, amount: Option<i64>, currency: Option<&str>| {
            AuthorizeArgs {
                common: CommandArgs {
                    order_id: Some(Uuid::nil()),
                    json_input: json_input.map(Path::to_path_buf),
                    expected_version: None,
                    command_id: None,
                    print: None,
                },
                payment_id: None,
                amount: AmountArgs {
                    amount,
                    currency: currency.map(str::to_owned),
                },
            }
        };
        let money = |args: AuthorizeArgs| {
            let amount = args.input().unwrap().amount.unwrap();
            (amount.currency, amount.amount_minor)
        };
        // --amount keeps the JSON's currency; --currency alone changes only the currency.
        assert_eq!(
            money(args(Some(&json), Some(2500), None)),
            ("USD".into(), 2500)
        );
        assert_eq!(
            money(args(Some(&json), None, Some("GBP"))),
            ("GBP".into(), 1000)
        );
        assert_eq!(money(args(None, Some(2500), None)), ("EUR".into(), 2500));
        assert_eq!(
            money(args(None, Some(2500), Some("USD"))),
            ("USD".into(), 2500)
        );
        // --currency with no amount anywhere is a usage error.
        let refused = args(None, None, Some("GBP")).input().unwrap_err();
        assert!(
            refused.0.contains("--currency needs an amount"),
            "{}",
            refused.0
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lines_parse_with_skus_that_contain_colons() {
        let line = parse_line("A:B:2:1250", "EUR").unwrap();
        assert_eq!(line.sku, "A:B");
        assert_eq!(line.quantity, 2);
        assert_eq!(line.unit_price, Some(order_client::money("EUR", 1250)));
        assert!(parse_line("SKU-1:two:1250", "EUR").is_err());
        assert!(parse_line("SKU-1", "EUR").is_err());
    }

    #[test]
    fn names_of_statuses_and_methods_are_forgiving() {
        assert_eq!(status("shipped").unwrap(), pb::OrderStatus::Shipped);
        assert_eq!(
            status("inventory-reserved").unwrap(),
            pb::OrderStatus::InventoryReserved
        );
        assert_eq!(
            status("ORDER_STATUS_CANCELLED").unwrap(),
            pb::OrderStatus::Cancelled
        );
        assert!(status("lost").is_err());
        assert!(status("unspecified").is_err());
        assert_eq!(
            shipping_method("Express").unwrap(),
            pb::ShippingMethod::Express
        );
        assert!(shipping_method("teleport").is_err());
    }

    #[test]
    fn json_fields_of_another_command_are_refused_naming_the_field_and_the_command() {
        let dir = std::env::temp_dir().join(format!("order-cli-fields-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("input.json");
        let read = |text: &str, command: &str, fields: &[&str]| {
            std::fs::write(&json, text).unwrap();
            read_command_json(Some(&json), command, fields)
        };
        let refused = read(
            r#"{"order_id": null, "reservation_id": "r", "carrier": "DHL"}"#,
            "reserve",
            &["reservation_id"],
        )
        .unwrap_err();
        assert!(
            refused.0.contains(r#""carrier""#) && refused.0.contains("reserve"),
            "{}",
            refused.0
        );
        let refused = read(r#"{"payment_id": "p"}"#, "refund", &["amount"]).unwrap_err();
        assert!(refused.0.contains("payment_id"), "{}", refused.0);
        let input = read(
            r#"{"reservation_id": "r", "expected_version": 1}"#,
            "reserve",
            &["reservation_id"],
        )
        .unwrap();
        assert_eq!(input.reservation_id.as_deref(), Some("r"));
        assert!(read("null", "confirm", &[]).is_ok());
        assert!(read("[1]", "confirm", &[]).is_err(), "not an object");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_json_fields_are_refused() {
        assert!(serde_json::from_str::<CommandInput>(r#"{"order": "x"}"#).is_err());
        let input: CommandInput =
            serde_json::from_str(r#"{"amount": {"currency": "EUR", "amount_minor": 5}}"#).unwrap();
        assert_eq!(input.amount().unwrap(), order_client::money("EUR", 5));
    }
}

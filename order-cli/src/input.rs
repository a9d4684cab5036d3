//! A command's fields from JSON (`--json-input FILE|-`) and flags; flags win.

use std::io::Read;
use std::path::Path;

use order_client::pb;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::args::{
    AmountArgs, AuthorizeArgs, CommandArgs, PlaceArgs, ReasonArgs, RefundArgs, ReserveArgs,
    ShipArgs,
};

/// A mistake in the command line or its input (exit code 2).
#[derive(Debug)]
pub struct Usage(pub String);

/// The namespace of the order ids `place` derives from command ids (UUID v5 of the command
/// id's 16 bytes). Fixed for good: a retry, by any release of order-cli, must name the same
/// order.
pub const PLACE_ORDER_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_722d_636c_692d_706c_6163_6564);

/// The order id `place` sends with `command_id` when no order id is given: derived from the
/// command id, so a retry with the same command id names the same order and is the same
/// request (answered with the first answer), not a new order under a used command id.
pub fn order_id_for_command(command_id: Uuid) -> Uuid {
    Uuid::new_v5(&PLACE_ORDER_NAMESPACE, command_id.as_bytes())
}

/// The JSON input as written: any value, with a key that appears twice in an object refused
/// (serde_json would keep the last one silently).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears twice in an object"
                )));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// What a JSON value is, for an error.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object decoded as `T`: anything else (an array above all, which serde would decode
/// field by field in order) is refused. Decoded from the map in place, so that an error inside
/// it says where (`lines[1].quantity`, see [`decode`]).
#[derive(Debug, Clone, Default)]
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Only<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Only<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
                Err(not_an_object("an array"))
            }

            fn visit_unit<E: de::Error>(self) -> Result<T, E> {
                Err(not_an_object("null"))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
                Err(not_an_object("a boolean"))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
                Err(not_an_object("a number"))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
                Err(not_an_object("a number"))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
                Err(not_an_object("a number"))
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<T, E> {
                Err(not_an_object("a string"))
            }
        }
        fn not_an_object<E: de::Error>(found: &str) -> E {
            E::custom(format_args!("expected an object, found {found}"))
        }
        // Any: a map is decoded in place, anything else named by the visitor.
        deserializer
            .deserialize_any(Only(std::marker::PhantomData))
            .map(Object)
    }
}

/// The JSON input decoded as `T`, or a usage error of one line that names where in the input
/// the value is wrong (`lines[0].quantity: invalid type: ...`).
fn decode<T: DeserializeOwned>(map: Map<String, Value>) -> Result<T, Usage> {
    serde_path_to_error::deserialize(Value::Object(map)).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            Usage(format!("the JSON input: {inner}"))
        } else {
            Usage(format!("the JSON input: {path}: {inner}"))
        }
    })
}

/// The JSON input at `path` (none: `None`): one object, each key once at every level, or a
/// usage error of one line saying what is wrong.
fn read_json(path: Option<&Path>) -> Result<Option<Map<String, Value>>, Usage> {
    let Some(path) = path else {
        return Ok(None);
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
    let Strict(value) =
        serde_json::from_str(&text).map_err(|e| Usage(format!("the JSON input: {e}")))?;
    match value {
        Value::Object(object) => Ok(Some(object)),
        other => Err(Usage(format!(
            "the JSON input must be an object ({{\"field\": value, ...}}), not {}",
            kind(&other)
        ))),
    }
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
    amount: Option<Object<MoneyInput>>,
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
            .map(|Object(money)| money.into())
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
    let Some(map) = read_json(path)? else {
        return Ok(CommandInput::default());
    };
    if let Some(other) = map
        .keys()
        .find(|key| !COMMON_FIELDS.contains(&key.as_str()) && !fields.contains(&key.as_str()))
    {
        let takes: Vec<&str> = COMMON_FIELDS.iter().chain(fields).copied().collect();
        return Err(Usage(format!(
            "the JSON input's field {other:?} is not one {command} takes (it takes {})",
            takes.join(", ")
        )));
    }
    decode(map)
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
            (Some(amount_minor), Some(Object(money))) => money.amount_minor = amount_minor,
            (Some(amount_minor), None) => {
                input.amount = Some(Object(MoneyInput {
                    currency: "EUR".to_owned(),
                    amount_minor,
                }));
            }
            (None, Some(_)) => {}
            (None, None) if self.currency.is_some() => {
                return Err(Usage(
                    "--currency needs an amount (--amount, or amount in the JSON input)".into(),
                ));
            }
            (None, None) => {}
        }
        if let (Some(currency), Some(Object(money))) = (&self.currency, &mut input.amount) {
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
    unit_price: Object<MoneyInput>,
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
    lines: Vec<Object<LineInput>>,
    shipping_address: Option<Object<AddressInput>>,
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
        let json: PlaceJson = match read_json(self.json_input.as_deref())? {
            None => PlaceJson::default(),
            Some(map) => decode(map)?,
        };
        let customer_id = self
            .customer
            .or(json.customer_id)
            .ok_or_else(|| Usage("the customer is required (--customer or customer_id)".into()))?;
        let mut lines: Vec<pb::OrderLine> = json
            .lines
            .into_iter()
            .map(|Object(l)| pb::OrderLine {
                sku: l.sku,
                quantity: l.quantity,
                unit_price: Some(l.unit_price.0.into()),
            })
            .collect();
        for line in &self.lines {
            lines.push(parse_line(line, &self.currency)?);
        }
        let json_address = json.shipping_address.unwrap_or_default().0;
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
        let command_id = self.command_id.or(json.command_id);
        // With a command id and no order id, the order id derives from the command id: a
        // retry names the same order (a fresh one would make it another request).
        let order_id = self
            .order_id
            .or(json.order_id)
            .or(command_id.map(order_id_for_command));
        Ok(PlaceInput {
            order_id,
            command_id,
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
            let Object(amount) = args.input().unwrap().amount.unwrap();
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
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Parse `order-cli place ARGS` and read its input.
    fn place_input(args: &[&str], json: Option<&Path>) -> Result<PlaceInput, Usage> {
        use clap::Parser;
        let mut all = vec!["order-cli", "place", "--customer", CUSTOMER];
        let json = json.map(|path| path.display().to_string());
        if let Some(path) = &json {
            all.extend(["--json-input", path.as_str()]);
        }
        all.extend_from_slice(args);
        match crate::args::Cli::try_parse_from(all).unwrap().command {
            crate::args::Sub::Place(place) => place.input(),
            _ => unreachable!("a place"),
        }
    }

    const CUSTOMER: &str = "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001";

    #[test]
    fn a_place_with_a_command_id_and_no_order_id_names_the_order_after_the_command_id() {
        const COMMAND: &str = "6b1c2d3e-4f50-4a6b-8c7d-8e9fa0b1c2d3";
        let first = place_input(&["--command-id", COMMAND], None).unwrap();
        let again = place_input(&["--command-id", COMMAND], None).unwrap();
        let order = first
            .order_id
            .expect("an order id derived from the command id");
        assert_eq!(again.order_id, Some(order), "a retry names the same order");
        assert_ne!(order.to_string(), COMMAND);
        // Pinned (UUID v5 of the command id's 16 bytes in namespace
        // 6f726465-722d-636c-692d-706c61636564, computed apart from this code): a retry with a
        // later order-cli must name the same order.
        assert_eq!(order.to_string(), "c8dcf40e-452f-5eed-a7a9-3ead0c4f7142");
        let other = place_input(
            &["--command-id", "0f7a3c2e-1d5b-4c6a-9e8f-7a6b5c4d3e2f"],
            None,
        )
        .unwrap();
        assert!(
            other.order_id.is_some_and(|o| o != order),
            "another command, another order"
        );

        // The command id of the JSON input derives the same order id.
        let dir = std::env::temp_dir().join(format!("order-cli-place-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("place.json");
        std::fs::write(&json, format!(r#"{{"command_id": "{COMMAND}"}}"#)).unwrap();
        assert_eq!(place_input(&[], Some(&json)).unwrap().order_id, Some(order));

        // An order id given (flag or JSON) is kept; with no command id the client draws both.
        let given = "5d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a";
        let kept = place_input(&["--command-id", COMMAND, "--order-id", given], None).unwrap();
        assert_eq!(kept.order_id.map(|o| o.to_string()).as_deref(), Some(given));
        std::fs::write(
            &json,
            format!(r#"{{"command_id": "{COMMAND}", "order_id": "{given}"}}"#),
        )
        .unwrap();
        let kept = place_input(&[], Some(&json)).unwrap();
        assert_eq!(kept.order_id.map(|o| o.to_string()).as_deref(), Some(given));
        let fresh = place_input(&[], None).unwrap();
        assert_eq!((fresh.order_id, fresh.command_id), (None, None));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_wrong_value_inside_the_json_input_names_where_it_is() {
        let dir = std::env::temp_dir().join(format!("order-cli-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("input.json");
        let write = |text: &str| std::fs::write(&json, text).unwrap();
        write(r#"{"amount": ["EUR", 5]}"#);
        let message = read_command_json(Some(&json), "refund", &["amount"])
            .expect_err("refused")
            .0;
        assert!(message.contains("amount: expected an object"), "{message}");
        write(r#"{"amount": {"currency": "EUR", "amount_minor": "five"}}"#);
        let message = read_command_json(Some(&json), "refund", &["amount"])
            .expect_err("refused")
            .0;
        assert!(
            message.contains("amount.amount_minor: invalid type"),
            "{message}"
        );
        let price = r#"{"currency": "EUR", "amount_minor": 1}"#;
        for (text, path) in [
            (
                format!(
                    r#"{{"lines": [{{"sku": "S", "quantity": 1, "unit_price": {price}}}, ["S", 1, {price}]]}}"#
                ),
                "lines[1]: expected an object",
            ),
            (
                format!(r#"{{"lines": [{{"sku": "S", "quantity": "1", "unit_price": {price}}}]}}"#),
                "lines[0].quantity: invalid type",
            ),
            (
                r#"{"shipping_address": {"city": 7}}"#.to_owned(),
                "shipping_address.city: invalid type",
            ),
        ] {
            write(&text);
            let message = place_input(&[], Some(&json)).expect_err(&text).0;
            assert!(message.contains(path), "{text}: {message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_input_that_is_not_an_object_or_repeats_a_key_is_refused() {
        let dir = std::env::temp_dir().join(format!("order-cli-strict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("input.json");
        let read = |text: &str, command: &str, fields: &[&str]| {
            std::fs::write(&json, text).unwrap();
            read_command_json(Some(&json), command, fields)
        };
        let refused = |result: Result<CommandInput, Usage>, says: &[&str]| {
            let message = result.expect_err("refused").0;
            assert!(!message.contains('\n'), "one line: {message}");
            for word in says {
                assert!(message.contains(word), "{word:?} in {message}");
            }
        };
        // A key twice, at the top or inside the amount: refused, not the last one taken.
        refused(
            read(
                r#"{"carrier": "FIRST", "carrier": "SECOND", "tracking_number": "T1"}"#,
                "ship",
                &["carrier", "tracking_number"],
            ),
            &[r#""carrier""#, "twice"],
        );
        refused(
            read(
                r#"{"amount": {"currency": "EUR", "amount_minor": 1, "amount_minor": 9}}"#,
                "refund",
                &["amount"],
            ),
            &[r#""amount_minor""#, "twice"],
        );
        // Not an object: refused as such, not decoded field by field in order.
        for not_an_object in ["[1]", "[]", "null", "\"x\"", "7"] {
            refused(read(not_an_object, "confirm", &[]), &["object"]);
        }
        refused(
            read(r#"{"amount": ["EUR", 5]}"#, "refund", &["amount"]),
            &["object"],
        );
        // The same for PlaceOrder's input, at every level.
        let place = |text: &str| {
            std::fs::write(&json, text).unwrap();
            place_input(&[], Some(&json))
        };
        let lines = r#"[{"sku": "S", "quantity": 1, "unit_price": {"currency": "EUR", "amount_minor": 1}}]"#;
        assert!(place(&format!(r#"{{"lines": {lines}}}"#)).is_ok());
        for text in [
            format!(r#"[null, null, "{CUSTOMER}", {lines}]"#),
            r#"{"lines": [["S", 1, {"currency": "EUR", "amount_minor": 1}]]}"#.to_owned(),
            r#"{"shipping_address": ["R", "L1", "", "C", "", "P", "DE"]}"#.to_owned(),
        ] {
            let message = place(&text).expect_err(&text).0;
            assert!(message.contains("object"), "{text}: {message}");
        }
        for text in [
            r#"{"shipping_method": "express", "shipping_method": "standard"}"#,
            r#"{"shipping_address": {"city": "A", "city": "B"}}"#,
        ] {
            let message = place(text).expect_err(text).0;
            assert!(message.contains("twice"), "{text}: {message}");
        }
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

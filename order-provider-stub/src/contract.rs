//! The OpenAPI documents of `docs/providers/`, read at build time, and JSON Schema validators
//! (draft 2020-12, the dialect of OpenAPI 3.1) for every request body and every documented
//! answer body.

use std::collections::HashMap;

use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// The three documents, as written.
pub const DOCUMENTS: [(&str, &str); 3] = [
    (
        "inventory",
        include_str!("../../docs/providers/inventory.yaml"),
    ),
    ("payment", include_str!("../../docs/providers/payment.yaml")),
    (
        "shipping",
        include_str!("../../docs/providers/shipping.yaml"),
    ),
];

/// A document that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{document}: {reason}")]
pub struct ContractError {
    document: String,
    reason: String,
}

fn error(document: &str, reason: impl Into<String>) -> ContractError {
    ContractError {
        document: document.to_owned(),
        reason: reason.into(),
    }
}

/// YAML to JSON (the subset OpenAPI documents use: maps with string keys, lists, scalars).
pub fn yaml_to_json(yaml: &Yaml) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("not a number: {text}"))?,
        Yaml::Integer(n) => Value::from(*n),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(
            items
                .iter()
                .map(yaml_to_json)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Yaml::Hash(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let key = match key {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(n) => n.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(format!("unsupported key {other:?}")),
                };
                out.insert(key, yaml_to_json(value)?);
            }
            Value::Object(out)
        }
        Yaml::Null => Value::Null,
        other => return Err(format!("unsupported YAML value {other:?}")),
    })
}

/// One request or answer body's validator.
struct Schema {
    validator: jsonschema::Validator,
}

/// Validators for one provider's operations, by `operationId`.
pub struct Contract {
    provider: String,
    requests: HashMap<String, Schema>,
    /// `(operationId, status)` -> the answer body's validator.
    responses: HashMap<(String, u16), Schema>,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract")
            .field("provider", &self.provider)
            .field("operations", &self.requests.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A body that breaks the contract: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the body.
    pub at: String,
    /// What is wrong.
    pub reason: String,
}

impl Contract {
    /// Parse `text` (an OpenAPI 3.1 document) and compile its body schemas.
    pub fn parse(provider: &str, text: &str) -> Result<Self, ContractError> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| error(provider, e.to_string()))?;
        let doc = docs
            .first()
            .ok_or_else(|| error(provider, "empty document"))?;
        let doc = yaml_to_json(doc).map_err(|e| error(provider, e))?;
        if doc.get("openapi").and_then(Value::as_str) != Some("3.1.0") {
            return Err(error(provider, "not an OpenAPI 3.1.0 document"));
        }
        let components = doc
            .get("components")
            .cloned()
            .ok_or_else(|| error(provider, "no components"))?;
        let compile = |schema: &Value, what: &str| -> Result<Schema, ContractError> {
            // The schema with the document's components beside it, so that its
            // `#/components/...` references resolve.
            let mut root = Map::new();
            root.insert(
                "$schema".into(),
                Value::String("https://json-schema.org/draft/2020-12/schema".into()),
            );
            root.insert("allOf".into(), Value::Array(vec![schema.clone()]));
            root.insert("components".into(), components.clone());
            let validator = jsonschema::draft202012::new(&Value::Object(root))
                .map_err(|e| error(provider, format!("{what}: {e}")))?;
            Ok(Schema { validator })
        };
        let mut requests = HashMap::new();
        let mut responses = HashMap::new();
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .ok_or_else(|| error(provider, "no paths"))?;
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, operation) in item {
                let Some(id) = operation.get("operationId").and_then(Value::as_str) else {
                    return Err(error(
                        provider,
                        format!("{method} {path} has no operationId"),
                    ));
                };
                if let Some(schema) =
                    operation.pointer("/requestBody/content/application~1json/schema")
                {
                    requests.insert(id.to_owned(), compile(schema, id)?);
                }
                let Some(answers) = operation.get("responses").and_then(Value::as_object) else {
                    continue;
                };
                for (status, answer) in answers {
                    let Ok(status) = status.parse::<u16>() else {
                        continue;
                    };
                    let answer = match answer.get("$ref").and_then(Value::as_str) {
                        Some(reference) => {
                            let pointer = reference.trim_start_matches('#');
                            doc.pointer(pointer)
                                .ok_or_else(|| error(provider, format!("unresolved {reference}")))?
                        }
                        None => answer,
                    };
                    let schema = answer
                        .pointer("/content/application~1json/schema")
                        .or_else(|| answer.pointer("/content/application~1problem+json/schema"));
                    if let Some(schema) = schema {
                        responses.insert((id.to_owned(), status), compile(schema, id)?);
                    }
                }
            }
        }
        Ok(Self {
            provider: provider.to_owned(),
            requests,
            responses,
        })
    }

    /// The three documents of the repository.
    pub fn all() -> Result<HashMap<&'static str, Self>, ContractError> {
        DOCUMENTS
            .iter()
            .map(|(provider, text)| Ok((*provider, Self::parse(provider, text)?)))
            .collect()
    }

    /// Check a request body of `operation`; every violation found.
    pub fn check_request(&self, operation: &str, body: &Value) -> Result<(), Vec<Violation>> {
        let Some(schema) = self.requests.get(operation) else {
            return Err(vec![Violation {
                at: String::new(),
                reason: format!("{} has no operation {operation}", self.provider),
            }]);
        };
        check(schema, body)
    }

    /// Check an answer body of `operation` with `status` (tests use it: the stub answers as
    /// documented).
    pub fn check_response(
        &self,
        operation: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), Vec<Violation>> {
        let Some(schema) = self.responses.get(&(operation.to_owned(), status)) else {
            return Err(vec![Violation {
                at: String::new(),
                reason: format!("{operation} documents no {status} answer"),
            }]);
        };
        check(schema, body)
    }
}

fn check(schema: &Schema, body: &Value) -> Result<(), Vec<Violation>> {
    let violations: Vec<Violation> = schema
        .validator
        .iter_errors(body)
        .take(10)
        .map(|e| Violation {
            at: e.instance_path().to_string(),
            reason: e.to_string(),
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn every_document_parses_and_names_its_operations() {
        let all = Contract::all().unwrap();
        assert_eq!(all.len(), 3);
        let inventory = &all["inventory"];
        assert!(inventory.requests.contains_key("reserve"));
        assert!(inventory.requests.contains_key("release"));
        let payment = &all["payment"];
        for op in ["authorize", "capture", "void", "refund"] {
            assert!(payment.requests.contains_key(op), "{op}");
        }
        assert!(
            all["shipping"]
                .responses
                .contains_key(&("track".to_owned(), 200))
        );
    }

    #[test]
    fn a_request_that_breaks_the_contract_is_named_where() {
        let all = Contract::all().unwrap();
        let inventory = &all["inventory"];
        let good = json!({
            "order_id": "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001",
            "lines": [{"sku": "A-1", "quantity": 2}]
        });
        assert_eq!(inventory.check_request("reserve", &good), Ok(()));
        for bad in [
            json!({"order_id": "nope", "lines": [{"sku": "A", "quantity": 1}]}),
            json!({"order_id": "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001", "lines": []}),
            json!({"order_id": "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001", "lines": [{"sku": "A", "quantity": 0}]}),
            json!({"order_id": "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001", "lines": [{"sku": "A", "quantity": 1}], "extra": 1}),
            json!([1, 2]),
        ] {
            let violations = inventory.check_request("reserve", &bad).unwrap_err();
            assert!(!violations.is_empty(), "{bad}");
        }
        let payment = &all["payment"];
        let violations = payment
            .check_request(
                "authorize",
                &json!({
                    "order_id": "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001",
                    "customer_id": "c",
                    "amount": {"currency": "eur", "amount_minor": 100}
                }),
            )
            .unwrap_err();
        assert_eq!(violations[0].at, "/amount/currency", "{violations:?}");
    }

    /// Whatever order the service accepts, its provider calls fit the contracts: the largest
    /// amount and quantity the domain allows are valid there (an order the API took and a
    /// provider refused as malformed would stop half-way, its stock held).
    #[test]
    fn the_largest_order_the_domain_accepts_fits_every_contract() {
        use order_domain::{MAX_AMOUNT_MINOR, values::Quantity};
        let all = Contract::all().unwrap();
        let order_id = "0b5c3a3e-52f5-4b8a-9a55-b4f1e9a7c001";
        let most = json!({"currency": "IDR", "amount_minor": MAX_AMOUNT_MINOR});
        let lines = json!([{"sku": "A-1", "quantity": Quantity::MAX}]);
        let payment = &all["payment"];
        let authorize = json!({"order_id": order_id, "customer_id": "c", "amount": most, "line_items": [{"sku": "A-1", "quantity": Quantity::MAX}]});
        assert_eq!(payment.check_request("authorize", &authorize), Ok(()));
        for op in ["capture", "refund"] {
            let body = json!({"order_id": order_id, "amount": most});
            assert_eq!(payment.check_request(op, &body), Ok(()), "{op}");
        }
        let reserve = json!({"order_id": order_id, "lines": lines});
        assert_eq!(all["inventory"].check_request("reserve", &reserve), Ok(()));
    }

    /// A reference is a segment of later URL paths (`/v1/payments/{payment_id}/capture`),
    /// where `.` and `..` name another resource: only dots is off the contract.
    #[test]
    fn a_reference_of_only_dots_is_off_every_contract() {
        let all = Contract::all().unwrap();
        let answers = |id: &str| {
            [
                (
                    "inventory",
                    "reserve",
                    201,
                    json!({"reservation_id": id, "status": "reserved"}),
                ),
                (
                    "payment",
                    "authorize",
                    201,
                    json!({"payment_id": id, "status": "authorized"}),
                ),
                (
                    "shipping",
                    "track",
                    200,
                    json!({"tracking_number": id, "carrier": "DHL", "status": "in_transit"}),
                ),
            ]
        };
        for id in [".", "..", "..."] {
            for (provider, operation, status, body) in answers(id) {
                assert!(
                    all[provider]
                        .check_response(operation, status, &body)
                        .is_err(),
                    "{provider} {operation}: {id:?}"
                );
            }
        }
        for id in ["a.", ".a", "..-", "RSV-1.2"] {
            for (provider, operation, status, body) in answers(id) {
                assert_eq!(
                    all[provider].check_response(operation, status, &body),
                    Ok(()),
                    "{provider} {operation}: {id:?}"
                );
            }
        }
    }

    #[test]
    fn documented_answers_are_checked_too() {
        let all = Contract::all().unwrap();
        let shipping = &all["shipping"];
        assert_eq!(
            shipping.check_response(
                "track",
                200,
                &json!({"tracking_number": "T1", "carrier": "DHL", "status": "in_transit"})
            ),
            Ok(())
        );
        assert!(
            shipping
                .check_response(
                    "track",
                    200,
                    &json!({"tracking_number": "T1", "status": "gone"})
                )
                .is_err()
        );
        assert!(
            shipping
                .check_response("ship", 422, &json!({"code": "address_undeliverable"}))
                .is_ok()
        );
    }
}

//! Stored-event schemas: fixtures of every current and older version decode, old versions
//! upcast to exactly what the current version says, and the current encoding is pinned.

use std::collections::BTreeMap;
use std::path::PathBuf;

use order_domain::order::upcasters;
use order_domain::upcast::DecodeError;
use order_domain::{EventSchema, OrderEvent};
use serde_json::{Value, json};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events")
}

/// Every fixture: (event type, version) -> payload.
fn fixtures() -> BTreeMap<(String, u16), Value> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let stem = name
            .strip_suffix(".json")
            .unwrap_or_else(|| panic!("{name}: not .json"));
        let (event_type, version) = stem
            .split_once(".v")
            .unwrap_or_else(|| panic!("{name}: not Type.vN.json"));
        let version: u16 = version
            .parse()
            .unwrap_or_else(|_| panic!("{name}: bad version"));
        let payload = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        found.insert((event_type.to_owned(), version), payload);
    }
    found
}

fn current_version(event_type: &str) -> u16 {
    OrderEvent::CURRENT_VERSIONS
        .iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("{event_type} is not an order event"))
}

#[test]
fn every_event_type_and_every_upcaster_step_has_a_fixture() {
    let fixtures = fixtures();
    for (event_type, version) in OrderEvent::CURRENT_VERSIONS {
        assert!(
            fixtures.contains_key(&((*event_type).to_owned(), *version)),
            "no fixture of {event_type} v{version}: add tests/fixtures/events/{event_type}.v{version}.json"
        );
    }
    for step in upcasters().steps() {
        assert!(
            fixtures.contains_key(&(step.event_type.to_owned(), step.from_version)),
            "no fixture of {} v{}, which an upcaster reads",
            step.event_type,
            step.from_version
        );
    }
}

#[test]
fn current_encoding_matches_the_pinned_fixture() {
    // If this fails, a payload's shape changed: bump its version and add an upcaster instead.
    for ((event_type, version), payload) in fixtures() {
        if version != current_version(&event_type) {
            continue;
        }
        let event = OrderEvent::decode(&event_type, version, payload.clone())
            .unwrap_or_else(|e| panic!("{event_type} v{version}: {e}"));
        assert_eq!(event.event_type(), event_type);
        assert_eq!(event.schema_version(), version);
        assert_eq!(
            event.encode().unwrap(),
            payload,
            "{event_type} v{version} re-encoded differently"
        );
        let text = event.encode_json().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            payload,
            "{event_type} v{version}: encode_json writes other JSON than encode"
        );
    }
}

#[test]
fn older_versions_upcast_to_the_current_event() {
    let fixtures = fixtures();
    let mut upcast = 0;
    for ((event_type, version), payload) in &fixtures {
        let current = current_version(event_type);
        if *version == current {
            continue;
        }
        let expected = OrderEvent::decode(
            event_type,
            current,
            fixtures[&(event_type.clone(), current)].clone(),
        )
        .unwrap();
        let decoded = OrderEvent::decode(event_type, *version, payload.clone())
            .unwrap_or_else(|e| panic!("{event_type} v{version}: {e}"));
        assert_eq!(decoded, expected, "{event_type} v{version}");
        upcast += 1;
    }
    assert_eq!(
        upcast, 4,
        "OrderPlaced v1 and v2, PaymentAuthorized v1, OrderShipped v1"
    );
}

#[test]
fn unknown_types_versions_and_shapes_are_typed_errors() {
    let placed = fixtures()[&("OrderPlaced".to_owned(), 3)].clone();
    assert!(matches!(
        OrderEvent::decode("OrderTeleported", 1, json!({})),
        Err(DecodeError::UnknownType { .. })
    ));
    for version in [0, 4, u16::MAX] {
        assert!(matches!(
            OrderEvent::decode("OrderPlaced", version, placed.clone()),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }
    // A v1 payload that lacks what its upcaster needs.
    assert!(matches!(
        OrderEvent::decode("OrderShipped", 1, json!({ "carrier": "DHL" })),
        Err(DecodeError::Upcast {
            from_version: 1,
            ..
        })
    ));
    assert!(matches!(
        OrderEvent::decode("PaymentAuthorized", 1, json!([1, 2])),
        Err(DecodeError::Upcast { .. })
    ));
    // serde would read a struct from a JSON array too: a stored payload is an object.
    for (event_type, payload) in [
        ("InventoryReserved", json!(["res-1"])),
        ("FulfillmentStarted", json!([])),
        ("OrderShipped", json!(["DHL", "T1"])),
    ] {
        assert!(
            matches!(
                OrderEvent::decode(event_type, current_version(event_type), payload),
                Err(DecodeError::Payload { .. })
            ),
            "{event_type} from an array"
        );
    }
    let mut wrong_total = placed.clone();
    wrong_total["total"]["amount_minor"] = json!(2999);
    let mut unknown_field = placed.clone();
    unknown_field["surprise"] = json!(true);
    let mut bad_currency = placed;
    bad_currency["lines"][0]["unit_price"]["currency"] = json!("EURO");
    for (name, payload) in [
        ("total is not the sum of the lines", wrong_total),
        ("unknown field", unknown_field),
        ("invalid currency", bad_currency),
        ("not an object", json!("OrderPlaced")),
        ("null", Value::Null),
    ] {
        assert!(
            matches!(
                OrderEvent::decode("OrderPlaced", 3, payload),
                Err(DecodeError::Payload { .. })
            ),
            "{name}"
        );
    }
}

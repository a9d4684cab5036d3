//! Table-driven bad input: each case is rejected with a typed error naming the field.

use order_domain::order::*;
use order_domain::values::{AddressInput, ShippingMethod};
use order_domain::{MAX_AMOUNT_MINOR, ValidationError, Violation};

use crate::support::CUSTOMER;

fn good_address() -> AddressInput<'static> {
    AddressInput {
        recipient: "Ada Lovelace",
        line1: "12 St James's Square",
        city: "London",
        postal_code: "SW1Y 4JH",
        country: "GB",
        ..AddressInput::default()
    }
}

fn good_line() -> LineInput<'static> {
    LineInput {
        sku: "SKU-1",
        quantity: 2,
        currency: "EUR",
        unit_price_minor: 1250,
    }
}

fn good_order() -> PlaceOrderInput<'static> {
    PlaceOrderInput {
        customer_id: CUSTOMER,
        lines: vec![good_line()],
        shipping_address: Some(good_address()),
        shipping_method: Some(ShippingMethod::Standard),
    }
}

fn with_line(line: LineInput<'static>) -> PlaceOrderInput<'static> {
    PlaceOrderInput {
        lines: vec![line],
        ..good_order()
    }
}

fn with_address(address: AddressInput<'static>) -> PlaceOrderInput<'static> {
    PlaceOrderInput {
        shipping_address: Some(address),
        ..good_order()
    }
}

/// A violation matcher, so that cases state which kind of problem they expect.
type Kind = fn(&Violation) -> bool;

fn place_cases() -> Vec<(&'static str, PlaceOrderInput<'static>, &'static str, Kind)> {
    let long: &'static str = Box::leak("x".repeat(201).into_boxed_str());
    let megabyte: &'static str = Box::leak("y".repeat(1 << 20).into_boxed_str());
    let many_lines: Vec<LineInput<'static>> = (0..=MAX_LINES)
        .map(|i| LineInput {
            sku: Box::leak(format!("SKU-{i}").into_boxed_str()),
            ..good_line()
        })
        .collect();
    vec![
        (
            "empty customer id",
            PlaceOrderInput {
                customer_id: "",
                ..good_order()
            },
            "customer_id",
            |v| matches!(v, Violation::Format { .. }),
        ),
        (
            "customer id not a uuid",
            PlaceOrderInput {
                customer_id: "customer-42",
                ..good_order()
            },
            "customer_id",
            |v| matches!(v, Violation::Format { .. }),
        ),
        (
            "nil customer id",
            PlaceOrderInput {
                customer_id: "00000000-0000-0000-0000-000000000000",
                ..good_order()
            },
            "customer_id",
            |v| matches!(v, Violation::Format { .. }),
        ),
        (
            "no lines",
            PlaceOrderInput {
                lines: vec![],
                ..good_order()
            },
            "lines",
            |v| *v == Violation::NoEntries,
        ),
        (
            "too many lines",
            PlaceOrderInput {
                lines: many_lines,
                ..good_order()
            },
            "lines",
            |v| matches!(v, Violation::TooMany { .. }),
        ),
        (
            "zero quantity",
            with_line(LineInput {
                quantity: 0,
                ..good_line()
            }),
            "lines[0].quantity",
            |v| matches!(v, Violation::OutOfRange { .. }),
        ),
        (
            "negative quantity",
            with_line(LineInput {
                quantity: -3,
                ..good_line()
            }),
            "lines[0].quantity",
            |v| matches!(v, Violation::OutOfRange { .. }),
        ),
        (
            "huge quantity",
            with_line(LineInput {
                quantity: i64::MAX,
                ..good_line()
            }),
            "lines[0].quantity",
            |v| matches!(v, Violation::OutOfRange { .. }),
        ),
        (
            "zero price",
            with_line(LineInput {
                unit_price_minor: 0,
                ..good_line()
            }),
            "lines[0].unit_price.amount_minor",
            |v| matches!(v, Violation::OutOfRange { .. }),
        ),
        (
            "negative price",
            with_line(LineInput {
                unit_price_minor: -1,
                ..good_line()
            }),
            "lines[0].unit_price.amount_minor",
            |v| matches!(v, Violation::OutOfRange { .. }),
        ),
        (
            "price above the bound",
            with_line(LineInput {
                unit_price_minor: MAX_AMOUNT_MINOR + 1,
                ..good_line()
            }),
            "lines[0].unit_price.amount_minor",
            |v| matches!(v, Violation::OutOfRange { .. }),
        ),
        (
            "line total overflows the bound",
            with_line(LineInput {
                unit_price_minor: MAX_AMOUNT_MINOR,
                quantity: 2,
                ..good_line()
            }),
            "lines[0].quantity",
            |v| matches!(v, Violation::TotalTooLarge { .. }),
        ),
        (
            "order total overflows the bound",
            PlaceOrderInput {
                lines: vec![
                    LineInput {
                        sku: "A",
                        quantity: 1,
                        unit_price_minor: MAX_AMOUNT_MINOR,
                        ..good_line()
                    },
                    LineInput {
                        sku: "B",
                        quantity: 1,
                        unit_price_minor: 1,
                        ..good_line()
                    },
                ],
                ..good_order()
            },
            "lines[1].quantity",
            |v| matches!(v, Violation::TotalTooLarge { .. }),
        ),
        (
            "unknown currency",
            with_line(LineInput {
                currency: "ABC",
                ..good_line()
            }),
            "lines[0].unit_price.currency",
            |v| *v == Violation::UnknownCurrency,
        ),
        (
            "lower-case currency",
            with_line(LineInput {
                currency: "eur",
                ..good_line()
            }),
            "lines[0].unit_price.currency",
            |v| *v == Violation::UnknownCurrency,
        ),
        (
            "empty currency",
            with_line(LineInput {
                currency: "",
                ..good_line()
            }),
            "lines[0].unit_price.currency",
            |v| *v == Violation::UnknownCurrency,
        ),
        (
            "mixed currencies",
            PlaceOrderInput {
                lines: vec![
                    good_line(),
                    LineInput {
                        sku: "SKU-2",
                        currency: "USD",
                        ..good_line()
                    },
                ],
                ..good_order()
            },
            "lines[1].unit_price.currency",
            |v| matches!(v, Violation::MixedCurrency { .. }),
        ),
        (
            "same sku twice",
            PlaceOrderInput {
                lines: vec![good_line(), good_line()],
                ..good_order()
            },
            "lines[1].sku",
            |v| matches!(v, Violation::Duplicate { .. }),
        ),
        (
            "empty sku",
            with_line(LineInput {
                sku: "",
                ..good_line()
            }),
            "lines[0].sku",
            |v| *v == Violation::Empty,
        ),
        (
            "sku with spaces",
            with_line(LineInput {
                sku: "SKU 1",
                ..good_line()
            }),
            "lines[0].sku",
            |v| matches!(v, Violation::Format { .. }),
        ),
        (
            "sku of 1 MB",
            with_line(LineInput {
                sku: megabyte,
                ..good_line()
            }),
            "lines[0].sku",
            |v| matches!(v, Violation::TooLong { .. }),
        ),
        (
            "missing address",
            PlaceOrderInput {
                shipping_address: None,
                ..good_order()
            },
            "shipping_address",
            |v| *v == Violation::Missing,
        ),
        (
            "over-long recipient",
            with_address(AddressInput {
                recipient: long,
                ..good_address()
            }),
            "shipping_address.recipient",
            |v| matches!(v, Violation::TooLong { .. }),
        ),
        (
            "1 MB address line",
            with_address(AddressInput {
                line1: megabyte,
                ..good_address()
            }),
            "shipping_address.line1",
            |v| matches!(v, Violation::TooLong { .. }),
        ),
        (
            "blank city",
            with_address(AddressInput {
                city: "   ",
                ..good_address()
            }),
            "shipping_address.city",
            |v| *v == Violation::Empty,
        ),
        (
            "control character in city",
            with_address(AddressInput {
                city: "Lon\u{7}don",
                ..good_address()
            }),
            "shipping_address.city",
            |v| *v == Violation::ControlCharacter,
        ),
        (
            "country not alpha-2",
            with_address(AddressInput {
                country: "GBR",
                ..good_address()
            }),
            "shipping_address.country",
            |v| matches!(v, Violation::Format { .. }),
        ),
        (
            "unknown shipping method",
            PlaceOrderInput {
                shipping_method: None,
                ..good_order()
            },
            "shipping_method",
            |v| *v == Violation::UnknownValue,
        ),
    ]
}

#[test]
fn a_good_order_is_accepted() {
    assert!(PlaceOrder::parse(&good_order()).is_ok());
}

#[test]
fn every_bad_placement_names_its_field() {
    let cases = place_cases();
    assert!(cases.len() >= 20);
    for (name, input, field, kind) in cases {
        match PlaceOrder::parse(&input) {
            Ok(_) => panic!("{name}: accepted"),
            Err(ValidationError {
                field: got,
                violation,
            }) => {
                assert_eq!(got, field, "{name}: field");
                assert!(
                    kind(&violation),
                    "{name}: unexpected violation {violation:?}"
                );
            }
        }
    }
}

#[test]
fn every_bad_command_argument_names_its_field() {
    let megabyte = "z".repeat(1 << 20);
    let cases: Vec<(&str, Result<OrderCommand, ValidationError>, &str)> = vec![
        (
            "empty reservation",
            OrderCommand::reserve_inventory(""),
            "reservation_id",
        ),
        (
            "reservation of 1 MB",
            OrderCommand::reserve_inventory(&megabyte),
            "reservation_id",
        ),
        (
            "blank rejection reason",
            OrderCommand::reject_inventory(" \t"),
            "reason",
        ),
        (
            "empty payment id",
            OrderCommand::authorize_payment("", "EUR", 100),
            "payment_id",
        ),
        (
            "zero authorization",
            OrderCommand::authorize_payment("p", "EUR", 0),
            "amount.amount_minor",
        ),
        (
            "negative authorization",
            OrderCommand::authorize_payment("p", "EUR", -100),
            "amount.amount_minor",
        ),
        (
            "authorization in unknown currency",
            OrderCommand::authorize_payment("p", "XYZ", 100),
            "amount.currency",
        ),
        (
            "null byte in failure reason",
            OrderCommand::fail_payment("declined\0"),
            "reason",
        ),
        (
            "empty carrier",
            OrderCommand::ship_order("", "T1"),
            "carrier",
        ),
        (
            "over-long tracking number",
            OrderCommand::ship_order("DHL", &"9".repeat(129)),
            "tracking_number",
        ),
        (
            "cancel reason of 1 MB",
            OrderCommand::cancel_order(&megabyte),
            "reason",
        ),
        (
            "zero refund",
            OrderCommand::refund_payment("EUR", 0),
            "amount.amount_minor",
        ),
        (
            "overflowing refund",
            OrderCommand::refund_payment("EUR", i64::MAX),
            "amount.amount_minor",
        ),
        (
            "refund in mixed-case currency",
            OrderCommand::refund_payment("Eur", 5),
            "amount.currency",
        ),
    ];
    for (name, result, field) in cases {
        match result {
            Ok(command) => panic!("{name}: accepted as {command:?}"),
            Err(error) => assert_eq!(error.field, field, "{name}: {error}"),
        }
    }
}

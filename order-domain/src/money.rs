//! Money: integer minor units and an ISO-4217 currency. No floating point anywhere.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{FieldExt, ValidationError, Violation};

/// The largest amount (in minor units) any single price, refund or order total may have:
/// ten billion in a currency with two decimals.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// Active ISO-4217 currency codes with their minor-unit exponent.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// An active ISO-4217 currency.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Currency(u8);

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl Currency {
    /// Parse an upper-case three-letter code. Lower case, unknown and withdrawn codes are
    /// rejected rather than guessed.
    pub fn parse(code: &str) -> Result<Self, Violation> {
        CURRENCIES
            .binary_search_by(|(c, _)| (*c).cmp(code))
            .map(|index| Self(index as u8))
            .map_err(|_| Violation::UnknownCurrency)
    }

    /// The three-letter ISO-4217 code, e.g. `EUR`.
    pub fn code(self) -> &'static str {
        CURRENCIES[usize::from(self.0)].0
    }

    /// Number of decimal places of the minor unit (2 for EUR, 0 for JPY, 3 for KWD).
    pub fn exponent(self) -> u8 {
        CURRENCIES[usize::from(self.0)].1
    }

    /// Every supported currency.
    pub fn all() -> impl Iterator<Item = Currency> {
        (0..CURRENCIES.len()).map(|i| Self(i as u8))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl TryFrom<String> for Currency {
    type Error = Violation;
    fn try_from(code: String) -> Result<Self, Self::Error> {
        Self::parse(&code)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.code().to_owned()
    }
}

/// A non-negative amount of one currency, in minor units, at most [`MAX_AMOUNT_MINOR`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawMoney", into = "RawMoney")]
pub struct Money {
    currency: Currency,
    amount_minor: i64,
}

impl Money {
    /// An amount in `0..=MAX_AMOUNT_MINOR`.
    pub fn new(currency: Currency, amount_minor: i64) -> Result<Self, Violation> {
        if !(0..=MAX_AMOUNT_MINOR).contains(&amount_minor) {
            return Err(Violation::OutOfRange {
                min: 0,
                max: MAX_AMOUNT_MINOR,
            });
        }
        Ok(Self {
            currency,
            amount_minor,
        })
    }

    /// An amount in `1..=MAX_AMOUNT_MINOR`: prices, payments and refunds are never zero.
    pub fn positive(currency: Currency, amount_minor: i64) -> Result<Self, Violation> {
        if !(1..=MAX_AMOUNT_MINOR).contains(&amount_minor) {
            return Err(Violation::OutOfRange {
                min: 1,
                max: MAX_AMOUNT_MINOR,
            });
        }
        Ok(Self {
            currency,
            amount_minor,
        })
    }

    /// Parse the API shape: a currency code and an amount, naming the offending sub-field.
    pub fn parse_positive(currency: &str, amount_minor: i64) -> Result<Self, ValidationError> {
        let currency = Currency::parse(currency).field("currency")?;
        Self::positive(currency, amount_minor).field("amount_minor")
    }

    /// Nothing, in `currency`.
    pub const fn zero(currency: Currency) -> Self {
        Self {
            currency,
            amount_minor: 0,
        }
    }

    /// The currency.
    pub fn currency(self) -> Currency {
        self.currency
    }

    /// The amount in minor units (cents for EUR).
    pub fn amount_minor(self) -> i64 {
        self.amount_minor
    }

    /// Whether the amount is 0.
    pub fn is_zero(self) -> bool {
        self.amount_minor == 0
    }

    /// `self + other`, or `None` on a currency mismatch or a result above the bound.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        let sum = self.amount_minor.checked_add(other.amount_minor)?;
        Money::new(self.currency, sum).ok()
    }

    /// `self - other`, or `None` on a currency mismatch or a negative result.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        Money::new(
            self.currency,
            self.amount_minor.checked_sub(other.amount_minor)?,
        )
        .ok()
    }

    /// `self * factor`, or `None` above the bound.
    pub fn checked_mul(self, factor: u32) -> Option<Money> {
        let product = self.amount_minor.checked_mul(i64::from(factor))?;
        Money::new(self.currency, product).ok()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = u32::from(self.currency.exponent());
        if exponent == 0 {
            return write!(f, "{} {}", self.amount_minor, self.currency);
        }
        let scale = 10_i64.pow(exponent);
        write!(
            f,
            "{}.{:0width$} {}",
            self.amount_minor / scale,
            self.amount_minor % scale,
            self.currency,
            width = exponent as usize
        )
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_minor, self.currency)
    }
}

/// The persisted shape of [`Money`]; decoding validates through [`Money::new`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMoney {
    currency: Currency,
    amount_minor: i64,
}

impl TryFrom<RawMoney> for Money {
    type Error = Violation;
    fn try_from(raw: RawMoney) -> Result<Self, Self::Error> {
        Money::new(raw.currency, raw.amount_minor)
    }
}

impl From<Money> for RawMoney {
    fn from(money: Money) -> Self {
        Self {
            currency: money.currency,
            amount_minor: money.amount_minor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_table_is_sorted_and_unique_so_binary_search_works() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(CURRENCIES.len() < 256);
    }

    #[test]
    fn currency_parse_accepts_active_codes_only() {
        assert_eq!(Currency::parse("EUR").map(Currency::code), Ok("EUR"));
        assert_eq!(Currency::parse("eur"), Err(Violation::UnknownCurrency));
        assert_eq!(Currency::parse("XXX"), Err(Violation::UnknownCurrency));
        assert_eq!(Currency::parse(""), Err(Violation::UnknownCurrency));
        assert_eq!(Currency::parse("EURO"), Err(Violation::UnknownCurrency));
        // Both Venezuelan codes are active (VED since 2021, beside VES).
        for code in ["VED", "VES", "XCG", "ZWG", "SLE"] {
            assert_eq!(Currency::parse(code).map(Currency::code), Ok(code));
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        let eur = Currency::parse("EUR").unwrap();
        let usd = Currency::parse("USD").unwrap();
        let max = Money::new(eur, MAX_AMOUNT_MINOR).unwrap();
        let one = Money::new(eur, 1).unwrap();
        assert_eq!(max.checked_add(one), None);
        assert_eq!(one.checked_sub(max), None);
        assert_eq!(one.checked_add(Money::zero(usd)), None);
        assert_eq!(max.checked_mul(2), None);
        assert_eq!(
            one.checked_mul(u32::MAX).map(Money::amount_minor),
            Some(4_294_967_295)
        );
        assert_eq!(
            Money::new(eur, -1),
            Err(Violation::OutOfRange {
                min: 0,
                max: MAX_AMOUNT_MINOR
            })
        );
    }

    #[test]
    fn display_uses_the_currency_exponent() {
        let money = |code, amount| Money::new(Currency::parse(code).unwrap(), amount).unwrap();
        assert_eq!(money("EUR", 1205).to_string(), "12.05 EUR");
        assert_eq!(money("JPY", 1205).to_string(), "1205 JPY");
        assert_eq!(money("KWD", 1205).to_string(), "1.205 KWD");
    }

    #[test]
    fn decoding_validates() {
        let ok: Result<Money, _> = serde_json::from_str(r#"{"currency":"EUR","amount_minor":5}"#);
        assert!(ok.is_ok());
        for bad in [
            r#"{"currency":"EUR","amount_minor":-5}"#,
            r#"{"currency":"ZZZ","amount_minor":5}"#,
            r#"{"currency":"EUR","amount_minor":5.5}"#,
            r#"{"currency":"EUR","amount_minor":5,"extra":1}"#,
            r#"{"currency":"EUR"}"#,
        ] {
            assert!(
                serde_json::from_str::<Money>(bad).is_err(),
                "{bad} was accepted"
            );
        }
    }
}

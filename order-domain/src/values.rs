//! Value objects: private fields, validating constructors, typed violations.
//!
//! Every constructor here is also what decoding a stored event goes through (serde
//! `try_from`), so a value that exists is a valid value, whichever way it arrived.

use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use uuid::Uuid;

use crate::error::{FieldExt, ValidationError, Violation};

/// Parse a UUID in its hyphenated or simple form; the nil UUID is not an identifier.
fn parse_uuid(text: &str) -> Result<Uuid, Violation> {
    const EXPECTED: Violation = Violation::Format {
        expected: "a UUID such as 6f1c2b1e-8a3d-4b7e-9c2f-1a2b3c4d5e6f",
    };
    // Uuid::parse_str also accepts braced and URN forms; the API takes the two plain ones.
    if !(text.len() == 36 || text.len() == 32) {
        return Err(EXPECTED);
    }
    match Uuid::parse_str(text) {
        Ok(uuid) if uuid.is_nil() => Err(NOT_NIL),
        Ok(uuid) => Ok(uuid),
        Err(_) => Err(EXPECTED),
    }
}

/// The nil UUID (all zeros) is a UUID, but no identifier: say so, not that it is no UUID.
const NOT_NIL: Violation = Violation::Format {
    expected: "a UUID other than the nil UUID (all zeros)",
};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(Uuid);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.0.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
            }
        }

        impl $name {
            /// Parse the canonical text form of a UUID.
            pub fn parse(text: &str) -> Result<Self, Violation> {
                parse_uuid(text).map(Self)
            }

            /// From a UUID (the nil UUID is refused).
            pub fn from_uuid(uuid: Uuid) -> Result<Self, Violation> {
                if uuid.is_nil() {
                    return Err(NOT_NIL);
                }
                Ok(Self(uuid))
            }

            /// The UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl TryFrom<String> for $name {
            type Error = Violation;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                Self::parse(&text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0.hyphenated().to_string()
            }
        }
    };
}

uuid_id!(
    /// The order's identity, chosen by the caller on placement; also the event stream id.
    OrderId
);
uuid_id!(
    /// The customer who placed the order.
    CustomerId
);

/// Check free text: not blank (nothing but white space, characters that show nothing and
/// combining marks with no base character to sit on), at most `max` characters, no control
/// characters and no line breaks (U+2028 and U+2029 are line breaks as much as `\n` is). The
/// text is kept verbatim (no trimming, no normalisation): what was accepted is what is
/// returned. Invisible characters inside visible text (a zero-width joiner in an emoji or a
/// Persian name, bidi marks in mixed Arabic and Latin, marks on their letters) are kept;
/// whoever shows text escapes those that reorder it (the console does).
fn check_text(text: &str, max: usize) -> Result<(), Violation> {
    // Stops at the first character that is neither: for ordinary text, the first one.
    if text
        .chars()
        .all(|c| shows_nothing(c) || is_combining_mark(c))
    {
        return Err(Violation::Empty);
    }
    if text.chars().count() > max {
        return Err(Violation::TooLong { max });
    }
    if text
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(Violation::ControlCharacter);
    }
    Ok(())
}

/// The first rule of [`check_text`], which every recorded event's text satisfies.
fn check_recorded_text(text: &str, max: usize) -> Result<(), Violation> {
    if text.trim().is_empty() {
        return Err(Violation::Empty);
    }
    if text.chars().count() > max {
        return Err(Violation::TooLong { max });
    }
    if text.chars().any(char::is_control) {
        return Err(Violation::ControlCharacter);
    }
    Ok(())
}

/// White space, a blank Braille cell (U+2800, a character of its own that shows nothing), or
/// a character Unicode lists as default-ignorable (it renders as nothing: zero-width spaces
/// and joiners, bidi controls, the BOM, variation selectors, tags, Hangul fillers).
fn shows_nothing(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// A nonspacing or enclosing combining mark (general category Mn or Me): it shows only on a
/// base character before it, so text of nothing else has none to show. Spacing marks (Mc)
/// take room of their own. No ASCII character is one, so ordinary text never looks it up.
fn is_combining_mark(c: char) -> bool {
    !c.is_ascii()
        && matches!(
            c.general_category(),
            GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark
        )
}

macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl $name {
            /// The longest accepted value, in characters.
            pub const MAX_CHARS: usize = $max;

            /// Validate `text` (not blank, at most `MAX_CHARS` characters, no control characters).
            pub fn parse(text: impl Into<String>) -> Result<Self, Violation> {
                let text = text.into();
                check_text(&text, Self::MAX_CHARS)?;
                Ok(Self(text))
            }

            /// The text as accepted.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        /// How a recorded event's text is read back: by the rules it was written under
        /// (not blank once trimmed, bounded, no control characters), so that an event
        /// accepted before [`parse`](Self::parse) grew stricter still loads. New input goes
        /// through `parse`.
        impl TryFrom<String> for $name {
            type Error = Violation;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                check_recorded_text(&text, Self::MAX_CHARS)?;
                Ok(Self(text))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

bounded_text!(
    /// Why an order was cancelled or a step failed.
    Reason,
    500
);

impl Reason {
    /// A reason written by this crate itself; must satisfy the same rules as parsed input.
    pub(crate) fn from_static(text: &'static str) -> Self {
        debug_assert!(check_text(text, Self::MAX_CHARS).is_ok());
        Self(text.to_owned())
    }
}
bounded_text!(
    /// The inventory system's reservation reference.
    ReservationId,
    128
);
bounded_text!(
    /// The payment provider's authorization reference.
    PaymentId,
    128
);
bounded_text!(
    /// The shipping carrier's name.
    Carrier,
    64
);
bounded_text!(
    /// The carrier's tracking number.
    TrackingNumber,
    128
);
bounded_text!(
    /// Recipient name on the shipping address.
    RecipientName,
    200
);
bounded_text!(
    /// One line of a street address.
    AddressLine,
    200
);
bounded_text!(
    /// City or locality.
    City,
    100
);
bounded_text!(
    /// State, province or region.
    Region,
    100
);

/// A stock-keeping unit: 1-64 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or
/// digit.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Sku(String);

impl Serialize for Sku {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl Sku {
    /// The longest accepted SKU, in characters.
    pub const MAX_CHARS: usize = 64;

    /// Validate a SKU.
    pub fn parse(text: impl Into<String>) -> Result<Self, Violation> {
        let text = text.into();
        if text.is_empty() {
            return Err(Violation::Empty);
        }
        if text.len() > Self::MAX_CHARS {
            return Err(Violation::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        let valid_first = text.as_bytes()[0].is_ascii_alphanumeric();
        let valid_rest = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !(valid_first && valid_rest) {
            return Err(Violation::Format {
                expected: "letters, digits, '.', '_' or '-', starting with a letter or digit",
            });
        }
        Ok(Self(text))
    }

    /// The SKU as accepted.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sku({:?})", self.0)
    }
}

impl TryFrom<String> for Sku {
    type Error = Violation;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(text)
    }
}

impl From<Sku> for String {
    fn from(sku: Sku) -> Self {
        sku.0
    }
}

/// How many units of one SKU: `1..=MAX`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Quantity(u32);

impl Quantity {
    /// The largest quantity of one line.
    pub const MAX: u32 = 10_000;

    /// Accepts any integer so that zero, negative and overflowing inputs all get the same
    /// typed answer instead of a conversion error somewhere else.
    pub fn new(value: i64) -> Result<Self, Violation> {
        if !(1..=i64::from(Self::MAX)).contains(&value) {
            return Err(Violation::OutOfRange {
                min: 1,
                max: i64::from(Self::MAX),
            });
        }
        Ok(Self(value as u32))
    }

    /// The quantity.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quantity({})", self.0)
    }
}

impl TryFrom<i64> for Quantity {
    type Error = Violation;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Quantity> for i64 {
    fn from(quantity: Quantity) -> Self {
        i64::from(quantity.0)
    }
}

/// A postal code: 1-16 characters of letters, digits, spaces and hyphens.
#[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct PostalCode(String);

impl Serialize for PostalCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl PostalCode {
    /// The longest accepted postal code, in characters.
    pub const MAX_CHARS: usize = 16;

    /// Validate a postal code.
    pub fn parse(text: impl Into<String>) -> Result<Self, Violation> {
        let text = text.into();
        check_text(&text, Self::MAX_CHARS)?;
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-')
        {
            return Err(Violation::Format {
                expected: "letters, digits, spaces or '-'",
            });
        }
        Ok(Self(text))
    }

    /// The postal code as accepted.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PostalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostalCode({:?})", self.0)
    }
}

impl TryFrom<String> for PostalCode {
    type Error = Violation;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(text)
    }
}

impl From<PostalCode> for String {
    fn from(code: PostalCode) -> Self {
        code.0
    }
}

/// An ISO 3166-1 alpha-2 country code (two upper-case letters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct CountryCode([u8; 2]);

impl Serialize for CountryCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(&self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

impl CountryCode {
    /// Validate the form of an ISO 3166-1 alpha-2 country code: two upper-case letters. Stored
    /// events are read with this (what was once accepted always reads back); new input goes
    /// through [`CountryCode::parse_assigned`].
    pub fn parse(text: &str) -> Result<Self, Violation> {
        match text.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Self([*a, *b])),
            _ => Err(Violation::Format {
                expected: "an ISO 3166-1 alpha-2 code such as DE",
            }),
        }
    }

    /// Validate a country code of new input: one of the 249 codes ISO 3166-1 assigns (`GB`,
    /// not `UK`; no user-assigned codes such as `XK` or `ZZ`).
    pub fn parse_assigned(text: &str) -> Result<Self, Violation> {
        let code = Self::parse(text)?;
        match isocountry::CountryCode::for_alpha2(text) {
            Ok(_) => Ok(code),
            Err(_) => Err(Violation::Format {
                expected: "a country code that ISO 3166-1 assigns, such as DE (GB for the United Kingdom)",
            }),
        }
    }

    /// The two-letter code.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII upper-case letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

impl TryFrom<String> for CountryCode {
    type Error = Violation;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<CountryCode> for String {
    fn from(code: CountryCode) -> Self {
        code.as_str().to_owned()
    }
}

/// Where to ship an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    recipient: RecipientName,
    line1: AddressLine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    line2: Option<AddressLine>,
    city: City,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<Region>,
    postal_code: PostalCode,
    country: CountryCode,
}

/// The raw parts of an [`Address`], as they arrive from an API.
#[derive(Debug, Clone, Default)]
pub struct AddressInput<'a> {
    /// Who receives the parcel.
    pub recipient: &'a str,
    /// First address line.
    pub line1: &'a str,
    /// Second address line (empty: none).
    pub line2: &'a str,
    /// City.
    pub city: &'a str,
    /// Region or state (empty: none).
    pub region: &'a str,
    /// Postal code.
    pub postal_code: &'a str,
    /// ISO 3166-1 alpha-2 country code.
    pub country: &'a str,
}

impl Address {
    /// Validate every part; empty `line2` and `region` mean absent. The error names the
    /// first offending field.
    pub fn parse(input: &AddressInput<'_>) -> Result<Self, ValidationError> {
        let optional = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        Ok(Self {
            recipient: RecipientName::parse(input.recipient).field("recipient")?,
            line1: AddressLine::parse(input.line1).field("line1")?,
            line2: optional(input.line2)
                .map(AddressLine::parse)
                .transpose()
                .field("line2")?,
            city: City::parse(input.city).field("city")?,
            region: optional(input.region)
                .map(Region::parse)
                .transpose()
                .field("region")?,
            postal_code: PostalCode::parse(input.postal_code).field("postal_code")?,
            country: CountryCode::parse_assigned(input.country).field("country")?,
        })
    }

    /// Who receives the parcel.
    pub fn recipient(&self) -> &str {
        self.recipient.as_str()
    }
    /// First address line.
    pub fn line1(&self) -> &str {
        self.line1.as_str()
    }
    /// Second address line, if any.
    pub fn line2(&self) -> Option<&str> {
        self.line2.as_ref().map(AddressLine::as_str)
    }
    /// City.
    pub fn city(&self) -> &str {
        self.city.as_str()
    }
    /// Region or state, if any.
    pub fn region(&self) -> Option<&str> {
        self.region.as_ref().map(Region::as_str)
    }
    /// Postal code.
    pub fn postal_code(&self) -> &str {
        self.postal_code.as_str()
    }
    /// ISO 3166-1 alpha-2 country code.
    pub fn country(&self) -> &str {
        self.country.as_str()
    }
}

/// How fast an order ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShippingMethod {
    /// Standard delivery.
    Standard,
    /// Express delivery.
    Express,
    /// Next-day delivery.
    Overnight,
}

impl ShippingMethod {
    /// The method's name (`standard`, `express`, `overnight`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Express => "express",
            Self::Overnight => "overnight",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_in_plain_forms_only_and_never_nil() {
        let id = "6f1c2b1e-8a3d-4b7e-9c2f-1a2b3c4d5e6f";
        assert!(OrderId::parse(id).is_ok());
        assert!(OrderId::parse(&id.replace('-', "")).is_ok());
        for bad in [
            "",
            "not-a-uuid",
            "{6f1c2b1e-8a3d-4b7e-9c2f-1a2b3c4d5e6f}",
            "urn:uuid:6f1c2b1e-8a3d-4b7e-9c2f-1a2b3c4d5e6f",
            "00000000-0000-0000-0000-000000000000",
            "6f1c2b1e-8a3d-4b7e-9c2f-1a2b3c4d5e6g",
        ] {
            assert!(OrderId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        // The nil UUID is refused for what it is, not as text that is no UUID.
        let nil = OrderId::parse("00000000-0000-0000-0000-000000000000").unwrap_err();
        assert!(nil.to_string().contains("nil UUID"), "{nil}");
        let nil = OrderId::from_uuid(Uuid::nil()).unwrap_err();
        assert!(nil.to_string().contains("nil UUID"), "{nil}");
    }

    #[test]
    fn text_is_kept_verbatim_but_bounded() {
        let hostile = "Robert'); DROP TABLE orders.events;-- \u{202e} é 漢字";
        assert_eq!(
            Reason::parse(hostile).map(|r| r.as_str().to_owned()),
            Ok(hostile.to_owned())
        );
        assert_eq!(Reason::parse("  "), Err(Violation::Empty));
        assert_eq!(Reason::parse("a\u{0}b"), Err(Violation::ControlCharacter));
        assert_eq!(
            Reason::parse("line\nbreak"),
            Err(Violation::ControlCharacter)
        );
        assert_eq!(
            Reason::parse("x".repeat(Reason::MAX_CHARS + 1)),
            Err(Violation::TooLong {
                max: Reason::MAX_CHARS
            })
        );
        // The bound counts characters, not bytes.
        assert!(Reason::parse("é".repeat(Reason::MAX_CHARS)).is_ok());
        // Text of nothing visible is blank; Unicode's own line breaks are line breaks.
        for blank in [
            "\u{200B}",
            "\u{FEFF} \u{2060}",
            "\u{200D}\u{200C}",
            "\u{3164}\u{00AD}",
        ] {
            assert_eq!(Reason::parse(blank), Err(Violation::Empty), "{blank:?}");
        }
        for broken in ["line\u{2028}break", "para\u{2029}graph"] {
            assert_eq!(Reason::parse(broken), Err(Violation::ControlCharacter));
        }
        // An event recorded under the earlier rule still loads.
        let recorded: Result<Reason, _> = serde_json::from_str(r#""line\u2028break""#);
        assert_eq!(
            recorded.ok().map(|r| r.as_str().to_owned()),
            Some("line\u{2028}break".to_owned())
        );
        let recorded: Result<Reason, _> = serde_json::from_str(r#""\u200b""#);
        assert!(recorded.is_ok());
        let blank: Result<Reason, _> = serde_json::from_str("\"  \"");
        assert!(blank.is_err());
        // Invisible characters inside visible text are legitimate and kept.
        for kept in [
            "\u{1F469}\u{200D}\u{1F467}", // an emoji sequence joined by ZWJ
            "\u{0645}\u{06CC}\u{200C}\u{0634}\u{0648}\u{062F}", // Persian, ZWNJ
            "Shop \u{200F}\u{0627}\u{0644}\u{0628}\u{064A}\u{062A}", // an RLM in mixed text
        ] {
            assert_eq!(
                Reason::parse(kept).map(|r| r.as_str().to_owned()),
                Ok(kept.to_owned())
            );
        }
    }

    #[test]
    fn text_without_a_base_character_is_blank() {
        // A blank Braille cell shows nothing; combining marks (Mn, Me) with nothing to sit
        // on have no base character, whatever white space or invisible characters come
        // with them.
        for blank in [
            "\u{2800}",
            "\u{2800} \u{2800}",
            "\u{0301}",
            " \u{0301}\u{0301} ",
            "\u{20DD}",
            "\u{200B}\u{0301}\u{FE0F}",
            "\u{0E49}\u{0E4A}",
        ] {
            assert_eq!(Reason::parse(blank), Err(Violation::Empty), "{blank:?}");
            let input = AddressInput {
                recipient: blank,
                line1: "12 St James's Square",
                city: "London",
                postal_code: "SW1Y 4JH",
                country: "GB",
                ..AddressInput::default()
            };
            assert_eq!(
                Address::parse(&input).map_err(|e| (e.field, e.violation)),
                Err(("recipient".to_owned(), Violation::Empty)),
                "{blank:?}"
            );
        }
        // A base character with marks is text, wherever the marks are; so are scripts
        // whose words are mostly marks on a few letters.
        for kept in [
            "e\u{0301}",
            "\u{0301}e",
            "\u{2800}x",
            "x \u{2800}",
            "\u{0928}\u{093F}\u{0915}\u{094D}\u{0937}\u{093E}", // Devanagari
            "\u{0BA4}\u{0BAE}\u{0BBF}\u{0BB4}\u{0BCD}",         // Tamil
            "\u{0E19}\u{0E49}\u{0E33}",                         // Thai, a tone mark
            "\u{05E9}\u{05C1}\u{05B8}\u{05DC}\u{05D5}\u{05B9}\u{05DD}", // Hebrew, points
            "\u{1F44D}\u{1F3FD}",                               // an emoji and its tone
        ] {
            assert_eq!(
                Reason::parse(kept).map(|r| r.as_str().to_owned()),
                Ok(kept.to_owned()),
                "{kept:?}"
            );
        }
    }

    #[test]
    fn sku_format() {
        assert!(Sku::parse("ABC-123_x.9").is_ok());
        for bad in ["", "-ABC", "A B", "ÄBC", "A/B", &"A".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn quantity_range() {
        assert!(Quantity::new(1).is_ok());
        assert!(Quantity::new(i64::from(Quantity::MAX)).is_ok());
        for bad in [0, -1, i64::from(Quantity::MAX) + 1, i64::MAX, i64::MIN] {
            assert!(Quantity::new(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn address_errors_name_the_field() {
        let good = AddressInput {
            recipient: "Ada Lovelace",
            line1: "12 St James's Square",
            city: "London",
            postal_code: "SW1Y 4JH",
            country: "GB",
            ..AddressInput::default()
        };
        assert!(Address::parse(&good).is_ok());
        for country in ["UK", "EU", "ZZ", "XK", "AA", "QZ"] {
            let input = AddressInput {
                country,
                ..good.clone()
            };
            let error = Address::parse(&input).expect_err(country);
            assert_eq!(error.field, "country", "{country}");
        }
        for country in ["DE", "US", "SS", "CW", "JP"] {
            let input = AddressInput {
                country,
                ..good.clone()
            };
            assert!(Address::parse(&input).is_ok(), "{country}");
        }
        // What was stored before codes were checked against the list still reads back.
        let stored: CountryCode = serde_json::from_str("\"UK\"").expect("the form is enough");
        assert_eq!(stored.as_str(), "UK");
        let cases: [(AddressInput<'_>, &str); 4] = [
            (
                AddressInput {
                    country: "gb",
                    ..good.clone()
                },
                "country",
            ),
            (
                AddressInput {
                    city: "",
                    ..good.clone()
                },
                "city",
            ),
            (
                AddressInput {
                    postal_code: "SW1Y;4JH",
                    ..good.clone()
                },
                "postal_code",
            ),
            (
                AddressInput {
                    line2: "\t",
                    ..good.clone()
                },
                "line2",
            ),
        ];
        for (input, field) in cases {
            assert_eq!(
                Address::parse(&input).map_err(|e| e.field),
                Err(field.to_owned())
            );
        }
    }
}

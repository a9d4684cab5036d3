//! Validation errors shared by every value object and command constructor.

use std::fmt;

/// What is wrong with one input value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A required value is absent.
    #[error("is required")]
    Missing,
    /// Empty, or only whitespace.
    #[error("must not be empty or blank")]
    Empty,
    /// Longer than allowed.
    #[error("must be at most {max} characters")]
    TooLong {
        /// The most characters allowed.
        max: usize,
    },
    /// Contains a control character (newline, tab, ...).
    #[error("must not contain control characters")]
    ControlCharacter,
    /// Not in the expected format.
    #[error("must be {expected}")]
    Format {
        /// What the value must look like.
        expected: &'static str,
    },
    /// A number outside its bounds.
    #[error("must be between {min} and {max}")]
    OutOfRange {
        /// The smallest value allowed.
        min: i64,
        /// The largest value allowed.
        max: i64,
    },
    /// Not an active ISO-4217 currency code.
    #[error("is not an active ISO-4217 currency code")]
    UnknownCurrency,
    /// A currency other than the one the rest of the order uses.
    #[error("currency {found} differs from {expected} used by the rest of the order")]
    MixedCurrency {
        /// The currency of the rest of the order.
        expected: String,
        /// The currency of this value.
        found: String,
    },
    /// The order's total would exceed the bound.
    #[error("makes the order total exceed {max} minor units")]
    TotalTooLarge {
        /// The largest total allowed, in minor units.
        max: i64,
    },
    /// A list with too many entries.
    #[error("must have at most {max} entries")]
    TooMany {
        /// The most entries allowed.
        max: usize,
    },
    /// A list that must not be empty is.
    #[error("must have at least one entry")]
    NoEntries,
    /// A value repeated where each must be unique.
    #[error("repeats {value:?}, which an earlier entry already uses")]
    Duplicate {
        /// The repeated value.
        value: String,
    },
    /// Not one of the known values of an enumeration.
    #[error("is not a known value")]
    UnknownValue,
}

/// A rejected input: which field, and why. Field paths use the API's names, e.g.
/// `lines[2].unit_price.amount_minor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The field's path in the API's names, e.g. `lines[2].unit_price.amount_minor`.
    pub field: String,
    /// What is wrong with it.
    pub violation: Violation,
}

impl ValidationError {
    /// `field` violates `violation`.
    pub fn new(field: impl Into<String>, violation: Violation) -> Self {
        Self {
            field: field.into(),
            violation,
        }
    }

    /// Prefix the field path, e.g. `amount_minor` inside `unit_price` becomes
    /// `unit_price.amount_minor`.
    #[must_use]
    pub fn within(self, parent: &str) -> Self {
        let field = if self.field.is_empty() {
            parent.to_owned()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        Self { field, ..self }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.violation)
    }
}

impl std::error::Error for ValidationError {}

/// Attach a field name to a bare [`Violation`].
pub trait FieldExt<T> {
    /// Name the field of a failed validation.
    fn field(self, name: &str) -> Result<T, ValidationError>;
}

impl<T> FieldExt<T> for Result<T, Violation> {
    fn field(self, name: &str) -> Result<T, ValidationError> {
        self.map_err(|violation| ValidationError::new(name, violation))
    }
}

impl<T> FieldExt<T> for Result<T, ValidationError> {
    fn field(self, name: &str) -> Result<T, ValidationError> {
        self.map_err(|e| e.within(name))
    }
}

//! Validation errors shared by every value object and command constructor.

use std::fmt;

/// What is wrong with one input value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("is required")]
    Missing,
    #[error("must not be empty or blank")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("must be {expected}")]
    Format { expected: &'static str },
    #[error("must be between {min} and {max}")]
    OutOfRange { min: i64, max: i64 },
    #[error("is not an active ISO-4217 currency code")]
    UnknownCurrency,
    #[error("currency {found} differs from {expected} used by the rest of the order")]
    MixedCurrency { expected: String, found: String },
    #[error("makes the order total exceed {max} minor units")]
    TotalTooLarge { max: i64 },
    #[error("must have at most {max} entries")]
    TooMany { max: usize },
    #[error("must have at least one entry")]
    NoEntries,
    #[error("repeats {value:?}, which an earlier entry already uses")]
    Duplicate { value: String },
    #[error("is not a known value")]
    UnknownValue,
}

/// A rejected input: which field, and why. Field paths use the API's names, e.g.
/// `lines[2].unit_price.amount_minor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: String,
    pub violation: Violation,
}

impl ValidationError {
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

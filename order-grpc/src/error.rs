//! The one mapping from errors to gRPC status codes, with rich details.
//!
//! | error | code |
//! |---|---|
//! | a field is invalid | INVALID_ARGUMENT + `google.rpc.BadRequest` field violations |
//! | the order's state forbids the command | FAILED_PRECONDITION + `PreconditionFailure` |
//! | PlaceOrder for an existing order | ALREADY_EXISTS |
//! | unknown order | NOT_FOUND |
//! | expected_version mismatch, conflict after re-deciding | ABORTED |
//! | command id reused for another request | INVALID_ARGUMENT on `command_id` |
//! | database down, timed out, pool exhausted, read-only (a failover under way) | UNAVAILABLE |
//! | anything else (a defect) | INTERNAL, details only in the log |

use order_domain::order::{OrderError, RuleViolation};
use order_store::{Error as StoreError, HandleError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::convert::InvalidRequest;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    Invalid(InvalidRequest),
    #[error(transparent)]
    Rejected(OrderError),
    #[error(transparent)]
    Store(StoreError),
    #[error("order {0} not found")]
    OrderNotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<InvalidRequest> for ApiError {
    fn from(invalid: InvalidRequest) -> Self {
        Self::Invalid(invalid)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<HandleError<OrderError>> for ApiError {
    fn from(error: HandleError<OrderError>) -> Self {
        match error {
            HandleError::Rejected(rejected) => Self::Rejected(rejected),
            HandleError::Store(store) => Self::Store(store),
        }
    }
}

fn bad_request(violations: &[(String, String)]) -> Status {
    let mut details = ErrorDetails::new();
    for (field, description) in violations {
        details.add_bad_request_violation(field.clone(), description.clone());
    }
    let summary = violations
        .iter()
        .map(|(field, description)| format!("{field} {description}"))
        .collect::<Vec<_>>()
        .join("; ");
    Status::with_error_details(Code::InvalidArgument, summary, details)
}

/// The domain of every ErrorInfo this service sends.
pub(crate) const ERROR_DOMAIN: &str = "order-ledger";

/// A status of `code` with `message` and an ErrorInfo of `reason` (domain [`ERROR_DOMAIN`])
/// carrying `metadata`: the detail clients act on, rather than the message.
pub(crate) fn error_info_status(
    code: Code,
    reason: &str,
    metadata: &[(&str, String)],
    message: String,
) -> Status {
    let details = ErrorDetails::with_error_info(
        reason,
        ERROR_DOMAIN,
        metadata
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect::<std::collections::HashMap<_, _>>(),
    );
    Status::with_error_details(code, message, details)
}

fn precondition(kind: &str, subject: &str, description: String) -> Status {
    let mut details = ErrorDetails::new();
    details.add_precondition_failure_violation(kind, subject, description.clone());
    Status::with_error_details(Code::FailedPrecondition, description, details)
}

impl ApiError {
    /// The gRPC status the caller receives. Server-side failures are logged here with their
    /// details; the caller sees only a generic message.
    pub fn into_status(self) -> Status {
        match self {
            Self::Invalid(InvalidRequest(violations)) => bad_request(
                &violations
                    .into_iter()
                    .map(|v| (v.field, v.violation.to_string()))
                    .collect::<Vec<_>>(),
            ),
            Self::Rejected(OrderError::NotFound) => Status::not_found("the order does not exist"),
            Self::Rejected(OrderError::AlreadyExists) => {
                Status::already_exists("an order with this order_id already exists")
            }
            Self::Rejected(error @ OrderError::InvalidTransition { .. }) => {
                precondition("STATE", "order", error.to_string())
            }
            Self::Rejected(OrderError::Rule(rule)) => {
                let kind = match rule {
                    RuleViolation::RefundExceedsCaptured { .. } => "REFUND_LIMIT",
                    RuleViolation::AmountMismatch { .. } => "AMOUNT",
                    RuleViolation::CurrencyMismatch { .. } => "CURRENCY",
                };
                precondition(kind, rule.field(), rule.to_string())
            }
            Self::OrderNotFound(id) => Status::not_found(format!("order {id} not found")),
            Self::Unavailable(why) => Status::unavailable(why),
            Self::Store(error) => store_status(error),
        }
    }
}

fn store_status(error: StoreError) -> Status {
    match error {
        // The handler's answer to a command that would create a stream of another aggregate.
        StoreError::WrongExpectedVersion {
            expected: order_store::ExpectedVersion::NoStream,
            ..
        } => Status::already_exists(
            "order_id names a stream of another kind in the log; choose another order_id",
        ),
        StoreError::WrongExpectedVersion {
            expected, actual, ..
        } => Status::aborted(format!(
            "the order is at version {actual}, not at the expected {expected}"
        )),
        StoreError::Conflict { .. } => Status::aborted(
            "concurrent commands on this order kept winning; decide again and retry",
        ),
        StoreError::CommandIdReused { .. } => bad_request(&[(
            "command_id".to_owned(),
            "was already used for a different request".to_owned(),
        )]),
        StoreError::InvalidInput(why) => bad_request(&[("request".to_owned(), why)]),
        // A call failed through no fault of the caller: ERROR (ApiErrorCount counts these).
        StoreError::Unavailable(why) => {
            tracing::error!(error = %why, "database unavailable; call answered UNAVAILABLE");
            Status::unavailable("the order store is unavailable; retry later")
        }
        // The database is not migrated (readiness says so too): retry once it is.
        StoreError::SchemaMissing(why) => {
            tracing::error!(error = %why, "the database's schema is not this binary's (run `order-grpc migrate`); call answered UNAVAILABLE");
            Status::unavailable("the order store is not ready; retry later")
        }
        StoreError::Timeout => {
            tracing::error!("database call timed out; call answered UNAVAILABLE");
            Status::unavailable("the order store did not answer in time; retry later")
        }
        error @ (StoreError::DuplicateEventId { .. }
        | StoreError::Decode { .. }
        | StoreError::Encode(_)
        | StoreError::Forbidden(_)
        | StoreError::LeaseLost { .. }
        | StoreError::CheckpointMoved { .. }
        | StoreError::Database(_)) => {
            tracing::error!(error = %error, "internal error");
            Status::internal("internal error")
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        error.into_status()
    }
}

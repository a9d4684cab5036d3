//! What can go wrong, typed.

use tonic::{Code, Status};

/// The errors of this crate.
///
/// [`source`](std::error::Error::source) of an [`Error::Rpc`] that the transport made (no
/// connection, a DNS name that does not resolve, a broken connection) is the transport's error
/// chain (`tcp connect error`, then `Connection refused (os error 111)`), so `{:#}` of an
/// `anyhow::Error` or any error reporter shows the cause; an answer of the service has none.
#[derive(Debug)]
pub enum Error {
    /// The client's settings are unusable (an endpoint that is not a URL, a token that is
    /// empty or not header text, CA PEM with no certificate in it, TLS settings tonic
    /// refuses, no Tokio runtime). Nothing was sent. (A service certificate the TLS settings
    /// reject is found only on a call: see [`Error::tls_certificate_problem`].)
    Config(String),
    /// The service answered with an error status, or the call could not reach it, after
    /// `attempts` attempts (retries included).
    Rpc {
        /// The last attempt's status.
        status: Box<Status>,
        /// How many attempts were made.
        attempts: u32,
        /// The correlation id every attempt carried. Search the service's logs for it: its
        /// own failures are logged at ERROR with it; an answer refusing the call (bad input,
        /// a missing permission, NOT_FOUND, a version conflict) only at DEBUG
        /// (docs/operations.md, "The signals").
        correlation_id: String,
    },
    /// The service answered with something this client cannot use (e.g. GetOrder without an
    /// order, an order id that is not a UUID).
    InvalidResponse(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(why) => write!(f, "client settings: {why}"),
            Self::Rpc {
                status,
                attempts,
                correlation_id,
            } => write!(
                f,
                "{}: {} (after {attempts} attempt{}, correlation id {correlation_id})",
                code_name(status.code()),
                status.message(),
                if *attempts == 1 { "" } else { "s" }
            ),
            Self::InvalidResponse(what) => write!(f, "unexpected answer: {what}"),
        }
    }
}

impl std::error::Error for Error {
    /// The transport's error behind the status, when it made the status (the status itself
    /// is in the message already).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Rpc { status, .. } => std::error::Error::source(status.as_ref()),
            _ => None,
        }
    }
}

impl Error {
    /// When the call failed because the TLS handshake refused the service's certificate,
    /// what is wrong with it, in words: not signed by a CA the client trusts (unknown
    /// issuer), not valid for the name checked (a name mismatch), expired, not yet valid.
    ///
    /// Such a call is not retried (another attempt meets the same certificate) and is an
    /// [`Error::Rpc`] of UNAVAILABLE after 1 attempt: nothing was sent, and a fixed setting
    /// or a renewed certificate makes the same call work, so a caller that retries later
    /// (a queue consumer) loses nothing. It is a settings problem, not an outage: a person
    /// should be told this text (order-cli exits 2, as for unusable settings). With several
    /// endpoints, a call that met the one whose certificate is refused fails at once too,
    /// though another might have answered: fix that endpoint's certificate.
    pub fn tls_certificate_problem(&self) -> Option<String> {
        self.status().and_then(crate::retry::certificate_problem)
    }

    /// The gRPC status code: that of the last attempt for [`Error::Rpc`]; `INVALID_ARGUMENT`
    /// for settings the caller gave, `INTERNAL` for an answer the client cannot use.
    pub fn code(&self) -> Code {
        match self {
            Self::Rpc { status, .. } => status.code(),
            Self::Config(_) => Code::InvalidArgument,
            Self::InvalidResponse(_) => Code::Internal,
        }
    }

    /// The last attempt's status, when the service (or the transport) gave one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Rpc { status, .. } => Some(status),
            _ => None,
        }
    }

    /// Whether the service refused the call for its size (a request over its message limit,
    /// ErrorInfo reason `REQUEST_TOO_LARGE`; a history too large even read in parts,
    /// `HISTORY_TOO_LARGE`): RESOURCE_EXHAUSTED that no retry, now or later, changes. Other
    /// RESOURCE_EXHAUSTED answers (a saturated service) are worth trying again.
    pub fn is_too_large(&self) -> bool {
        match self {
            Self::Rpc { status, .. } => {
                status.code() == Code::ResourceExhausted && crate::retry::too_large_for_good(status)
            }
            _ => false,
        }
    }

    /// How many attempts were made (0 when nothing was sent).
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Rpc { attempts, .. } => *attempts,
            _ => 0,
        }
    }
}

/// The canonical upper-case name of a status code (`NOT_FOUND`), as in the gRPC
/// specification and `grpcurl` / `buf curl` output.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_name_the_code_the_attempts_and_the_correlation_id() {
        let error = Error::Rpc {
            status: Box::new(Status::not_found("order 1 not found")),
            attempts: 1,
            correlation_id: "c-1".into(),
        };
        assert_eq!(
            error.to_string(),
            "NOT_FOUND: order 1 not found (after 1 attempt, correlation id c-1)"
        );
        assert_eq!(error.code(), Code::NotFound);
        assert_eq!(error.attempts(), 1);
        assert_eq!(
            Error::Config("x".into()).code(),
            Code::InvalidArgument,
            "settings are the caller's"
        );
        assert!(
            std::error::Error::source(&error).is_none(),
            "the service's answer"
        );
    }
}

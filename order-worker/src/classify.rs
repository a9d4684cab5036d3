//! What a failed gRPC call means for the message that caused it.
//!
//! | code | class | why |
//! |---|---|---|
//! | UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN, INTERNAL, DATA_LOSS | transient | the service, its database or the network is in trouble; the message is fine |
//! | UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED | transient, an outage | a deployment problem (token, scope, version skew), not the message's fault: like a provider's outage it does not use up the message's receives ([`is_deployment_fault`]), and readiness checks the token, so that the worker stops receiving while order-grpc refuses it |
//! | INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, OUT_OF_RANGE | permanent | the same request can never succeed |
//! | FAILED_PRECONDITION, ABORTED | depends on the order | read the log: see [`resolve`] |
//!
//! Transient failures leave the message on the queue (it comes back after a backoff, and SQS
//! moves it to the DLQ after `maxReceiveCount` receives); permanent ones send it to the DLQ.

use tonic::Code;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Transient,
    Permanent,
    /// Decided by whether the step is still owed, after reading the order's log again.
    DependsOnState,
}

pub fn classify(code: Code) -> Class {
    match code {
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::Internal
        | Code::DataLoss
        | Code::Unauthenticated
        | Code::PermissionDenied
        | Code::Unimplemented
        // `Ok` never arrives as an error; treat it as the harmless choice.
        | Code::Ok => Class::Transient,
        Code::InvalidArgument | Code::NotFound | Code::AlreadyExists | Code::OutOfRange => {
            Class::Permanent
        }
        Code::FailedPrecondition | Code::Aborted => Class::DependsOnState,
    }
}

/// Whether a failure is the deployment's, not the message's nor the order's: order-grpc does
/// not accept the worker's token (UNAUTHENTICATED), the token lacks a scope the call needs
/// (PERMISSION_DENIED), or the two are of versions that do not know each other's method
/// (UNIMPLEMENTED). Like a provider's outage, it must not use up the message's receives: every
/// message would fail the same way until an operator fixes the deployment.
pub fn is_deployment_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented
    )
}

/// What to do about a failed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Leave the message; it comes back after a backoff.
    Retry,
    /// Send it to the DLQ: it can never succeed.
    DeadLetter,
    /// The step happened already or the order moved past it: acknowledge.
    Obsolete,
    /// Someone appended to the order between our read and our command: read again, decide
    /// again (a bounded number of times).
    Redecide,
}

/// The verdict for a failed command, given whether its step is still owed according to the
/// order's log read after the failure.
///
/// FAILED_PRECONDITION while the step is no longer owed means the order is already at or past
/// where the step leads (an old, redelivered message, or a cancellation overtook it): obsolete.
/// While the step is still owed, the order is exactly where the step starts, so the refusal
/// is about the request itself (e.g. an amount that is not the order total): it can never
/// succeed. ABORTED means the order changed under us: obsolete if it moved on, otherwise
/// decide again against the new version.
pub fn resolve(code: Code, still_owed: bool) -> Verdict {
    match (classify(code), code, still_owed) {
        (Class::Transient, _, _) => Verdict::Retry,
        (Class::Permanent, _, _) => Verdict::DeadLetter,
        (Class::DependsOnState, _, false) => Verdict::Obsolete,
        (Class::DependsOnState, Code::Aborted, true) => Verdict::Redecide,
        (Class::DependsOnState, _, true) => Verdict::DeadLetter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_class() {
        use Class::*;
        let table = [
            (Code::Unavailable, Transient),
            (Code::ResourceExhausted, Transient),
            (Code::DeadlineExceeded, Transient),
            (Code::Cancelled, Transient),
            (Code::Unknown, Transient),
            (Code::Internal, Transient),
            (Code::DataLoss, Transient),
            (Code::Unauthenticated, Transient),
            (Code::PermissionDenied, Transient),
            (Code::Unimplemented, Transient),
            (Code::InvalidArgument, Permanent),
            (Code::NotFound, Permanent),
            (Code::AlreadyExists, Permanent),
            (Code::OutOfRange, Permanent),
            (Code::FailedPrecondition, DependsOnState),
            (Code::Aborted, DependsOnState),
        ];
        for (code, class) in table {
            assert_eq!(classify(code), class, "{code:?}");
        }
    }

    #[test]
    fn only_refusals_of_the_caller_itself_are_deployment_faults() {
        for code in [
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
        ] {
            assert!(is_deployment_fault(code), "{code:?}");
            assert_eq!(classify(code), Class::Transient, "{code:?}");
        }
        for code in [
            Code::Unavailable,
            Code::Internal,
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::Aborted,
        ] {
            assert!(!is_deployment_fault(code), "{code:?}");
        }
    }

    #[test]
    fn verdicts_follow_the_state_of_the_order() {
        use Verdict::*;
        let table = [
            (Code::Unavailable, true, Retry),
            (Code::Unavailable, false, Retry),
            (Code::InvalidArgument, true, DeadLetter),
            (Code::NotFound, false, DeadLetter),
            (Code::FailedPrecondition, false, Obsolete),
            (Code::FailedPrecondition, true, DeadLetter),
            (Code::Aborted, false, Obsolete),
            (Code::Aborted, true, Redecide),
        ];
        for (code, owed, verdict) in table {
            assert_eq!(resolve(code, owed), verdict, "{code:?} owed={owed}");
        }
    }
}

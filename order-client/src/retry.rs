//! When a failed call is sent again, and how long to wait before it.

use std::error::Error as _;
use std::time::Duration;

use tonic::{Code, Status};

/// The attempts of a call under [`RetryPolicy::default`].
pub const DEFAULT_ATTEMPTS: u32 = 6;

/// Bounded exponential backoff with jitter.
///
/// Attempt `n` (counting from 1) that fails with a retryable status waits
/// `d/2 + random(0..=d/2)` with `d = min(initial_backoff x 2^(n-1), max_backoff)`, then the
/// call is sent again, at most `max_attempts` times in all. Every attempt of a command carries
/// the same command id and correlation id, so the service applies it at most once.
///
/// ```
/// use std::time::Duration;
/// use order_client::RetryPolicy;
///
/// let patient = RetryPolicy::default()
///     .max_attempts(8)
///     .initial_backoff(Duration::from_millis(100))
///     .max_backoff(Duration::from_secs(5));
/// assert_eq!(patient.attempts(), 8);
/// assert_eq!(RetryPolicy::none().attempts(), 1);
/// ```
///
/// The default (6 attempts, waits from 200 ms doubling up to 2 s) waits 2.5 to 5 s in all
/// (200, 400, 800, 1600 and 2000 ms before jitter, each cut to between half and all of it),
/// so a call that finds the service down keeps trying for at least 2.5 s: it outlasts a
/// restart of a second or two. A service down for longer fails the call (UNAVAILABLE, after
/// 6 attempts); raise [`max_attempts`](Self::max_attempts) for more.
///
/// Each attempt has the client's deadline
/// ([`ClientBuilder::timeout`](crate::ClientBuilder::timeout)), so a call may take up to
/// `max_attempts` deadlines plus the waits; [`total_timeout`](Self::total_timeout) bounds the whole
/// call instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    total_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    /// 6 attempts, waits from 200 ms doubling up to 2 s (2.5 to 5 s of waiting in all), no
    /// bound on the call as a whole.
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_ATTEMPTS,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            total_timeout: None,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry (for callers with a retry loop of their own, such as a queue's
    /// redelivery).
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// At most `attempts` attempts in all (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The wait after the first failed attempt (before jitter).
    pub fn initial_backoff(mut self, wait: Duration) -> Self {
        self.initial_backoff = wait;
        self
    }

    /// The longest wait between two attempts (before jitter).
    pub fn max_backoff(mut self, wait: Duration) -> Self {
        self.max_backoff = wait;
        self
    }

    /// Bound the whole call, attempts and waits together: no attempt starts (and no wait
    /// begins) that would end past it, and the last attempt's deadline is cut to what is
    /// left. A call out of time fails with its last attempt's status.
    pub fn total_timeout(mut self, limit: Duration) -> Self {
        self.total_timeout = Some(limit);
        self
    }

    /// The bound on a whole call, if any.
    pub fn total(&self) -> Option<Duration> {
        self.total_timeout
    }

    /// The most attempts a call makes.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The wait after failed attempt `attempt` (1-based), jitter included.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let half = ceiling / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// What kind of call failed, for [`retryable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// A command sent with `expected_version`: ABORTED means the order is not at that version,
    /// and sending it again cannot change that.
    PinnedCommand,
    /// A command without `expected_version`, or a query: ABORTED is a lost race worth
    /// another attempt.
    Idempotent,
}

/// Whether a call that failed with `status` may be sent again unchanged.
///
/// UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED (the service is busy or was
/// unreachable, and a command's id makes a repeat harmless), except a RESOURCE_EXHAUSTED that
/// refuses the call for its size (see [`too_large_for_good`]): the same message can never
/// fit; ABORTED unless the command pins an `expected_version`; and a call broken by the
/// transport (CANCELLED, UNKNOWN or INTERNAL raised by the client's own HTTP/2 stack, not
/// sent by the service: the connection dropped mid-call). Never a service certificate the
/// client's TLS settings reject (see [`certificate_problem`]): that is a setting to fix.
pub(crate) fn retryable(status: &Status, kind: CallKind) -> bool {
    if certificate_problem(status).is_some() {
        return false;
    }
    match status.code() {
        Code::ResourceExhausted => !too_large_for_good(status),
        Code::Unavailable | Code::DeadlineExceeded => true,
        Code::Aborted => kind == CallKind::Idempotent,
        Code::Cancelled | Code::Unknown | Code::Internal => from_transport(status),
        _ => false,
    }
}

/// The domain of order-grpc's `google.rpc.ErrorInfo` details.
const ERROR_DOMAIN: &str = "order-ledger";

/// Whether a RESOURCE_EXHAUSTED refuses the call for its size, which no retry changes:
/// order-grpc's ErrorInfo of reason `REQUEST_TOO_LARGE` (the request is over the service's
/// message limit), `RESPONSE_TOO_LARGE` (the answer is: ask for less) or `HISTORY_TOO_LARGE`
/// (the answer would be, even read in parts), or,
/// without an ErrorInfo, tonic's own words for a message over the limit ("message length too
/// large", from a server that relays tonic's refusal as it is). Any other exhaustion (the
/// concurrency limit, too many subscriptions) passes, and is worth another attempt.
pub(crate) fn too_large_for_good(status: &Status) -> bool {
    use tonic_types::StatusExt;
    match status.get_details_error_info() {
        Some(info) => {
            info.domain == ERROR_DOMAIN
                && matches!(
                    info.reason.as_str(),
                    "REQUEST_TOO_LARGE" | "RESPONSE_TOO_LARGE" | "HISTORY_TOO_LARGE"
                )
        }
        None => status.message().contains("message length too large"),
    }
}

/// Why the service's certificate was refused, when `status` is a TLS handshake that failed
/// on it (rustls's "invalid peer certificate", in the status or its source chain): a setting
/// to fix (the CA, the name, the certificate), which no retry mends.
pub(crate) fn certificate_problem(status: &Status) -> Option<String> {
    const REFUSED: &str = "invalid peer certificate: ";
    let mut texts = vec![status.message().to_owned()];
    let mut source = status.source();
    while let Some(error) = source {
        texts.push(error.to_string());
        source = error.source();
    }
    let detail = texts
        .iter()
        .find_map(|text| text.find(REFUSED).map(|at| &text[at + REFUSED.len()..]))?;
    let lower = detail.to_ascii_lowercase();
    let why = if lower.contains("unknownissuer") || lower.contains("badsignature") {
        "is not signed by a CA the client trusts (unknown issuer): check the CA certificate \
         (tls_ca_pem; order-cli: --tls-ca-file)"
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        "is not valid for the name the client checks (a name mismatch): check the endpoint's \
         host, or the name to check (tls_domain; order-cli: --tls-domain)"
    } else if lower.contains("expired") {
        "has expired: the service needs a new certificate"
    } else if lower.contains("notvalidyet") || lower.contains("not valid yet") {
        "is not valid yet: check the clocks, or the certificate's start date"
    } else {
        "was refused"
    };
    Some(format!(
        "TLS: the service's certificate {why} ({})",
        detail.trim()
    ))
}

/// A status the client's transport made up (it carries the transport error as its source);
/// one the service sent has none.
fn from_transport(status: &Status) -> bool {
    status.source().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling_with_jitter_in_its_upper_half() {
        let policy = RetryPolicy::default()
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(350));
        for _ in 0..200 {
            let first = policy.backoff(1);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let second = policy.backoff(2);
            assert!((Duration::from_millis(100)..=Duration::from_millis(200)).contains(&second));
            let capped = policy.backoff(40);
            assert!((Duration::from_millis(175)..=Duration::from_millis(350)).contains(&capped));
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| policy.backoff(3)).collect();
        assert!(spread.len() > 1, "jittered");
    }

    #[test]
    fn only_transient_failures_are_retried_and_aborted_only_when_unpinned() {
        use CallKind::*;
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
        ] {
            assert!(
                retryable(&Status::new(code, "x"), PinnedCommand),
                "{code:?}"
            );
        }
        assert!(retryable(&Status::aborted("race"), Idempotent));
        assert!(!retryable(&Status::aborted("version"), PinnedCommand));
        for code in [
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::NotFound,
            Code::AlreadyExists,
            Code::Unauthenticated,
            Code::PermissionDenied,
            // Sent by the service: not a dropped connection.
            Code::Internal,
            Code::Unknown,
            Code::Cancelled,
        ] {
            assert!(!retryable(&Status::new(code, "x"), Idempotent), "{code:?}");
        }
        let broken = Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )));
        assert!(retryable(&broken, Idempotent), "{broken:?}");
    }

    #[test]
    fn a_call_refused_for_its_size_is_not_retried_but_other_exhaustion_is() {
        use tonic_types::{ErrorDetails, StatusExt};
        let with_reason = |reason: &str, domain: &str| {
            Status::with_error_details(
                Code::ResourceExhausted,
                "x",
                ErrorDetails::with_error_info(reason, domain, []),
            )
        };
        for kind in [CallKind::Idempotent, CallKind::PinnedCommand] {
            for refused in [
                with_reason("REQUEST_TOO_LARGE", "order-ledger"),
                with_reason("HISTORY_TOO_LARGE", "order-ledger"),
                with_reason("RESPONSE_TOO_LARGE", "order-ledger"),
                // tonic's refusal, relayed without a detail.
                Status::resource_exhausted(
                    "Error, decoded message length too large: found 2738 bytes, the limit is: 1024 bytes",
                ),
            ] {
                assert!(!retryable(&refused, kind), "{refused:?}");
            }
            for busy in [
                Status::resource_exhausted("the service is at its concurrency limit"),
                with_reason("REQUEST_TOO_LARGE", "another-service"),
                with_reason("TOO_MANY_SUBSCRIPTIONS", "order-ledger"),
            ] {
                assert!(retryable(&busy, kind), "{busy:?}");
            }
        }
    }

    #[test]
    fn the_default_waits_at_least_two_and_a_half_seconds_in_all_and_at_most_five() {
        let policy = RetryPolicy::default();
        for _ in 0..200 {
            let waits: Duration = (1..policy.attempts()).map(|n| policy.backoff(n)).sum();
            assert!(
                (Duration::from_millis(2500)..=Duration::from_secs(5)).contains(&waits),
                "{waits:?}"
            );
        }
    }

    #[test]
    fn certificate_failures_are_named_and_not_retried() {
        let refused = |detail: &str| {
            Status::from_error(Box::new(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("invalid peer certificate: {detail}"),
            )))
        };
        for (detail, says) in [
            ("UnknownIssuer", "unknown issuer"),
            ("BadSignature", "unknown issuer"),
            (
                "certificate not valid for name \"127.0.0.1\"; certificate is only valid for localhost",
                "name mismatch",
            ),
            ("NotValidForName", "name mismatch"),
            (
                "certificate expired: verification time 1 (UNIX), ...",
                "expired",
            ),
            ("Expired", "expired"),
        ] {
            let status = refused(detail);
            let problem = certificate_problem(&status).expect(detail);
            assert!(problem.contains(says), "{detail}: {problem}");
            assert!(problem.contains(detail), "{detail}: {problem}");
            assert!(!retryable(&status, CallKind::Idempotent), "{detail}");
        }
        assert!(certificate_problem(&Status::unavailable("tcp connect error")).is_none());
    }

    #[test]
    fn attempts_are_at_least_one() {
        assert_eq!(RetryPolicy::default().max_attempts(0).attempts(), 1);
        assert_eq!(RetryPolicy::default().attempts(), 6);
    }
}

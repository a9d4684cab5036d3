//! Every provider call goes through a [`Guard`]: the provider's circuit breaker, a timeout per
//! attempt, and retries with exponential backoff and jitter, honouring a provider's
//! `Retry-After`. Refusals ("out of stock") and rejections (a request the provider says is
//! wrong) are answers, not failures: they are returned at once and count as successes for the
//! breaker.
//!
//! **An open circuit holds the call.** While a provider's circuit is open, a call waits (up to
//! `circuit_wait`) for the trial calls and then for the circuit to close, instead of failing
//! at once: the message stays in flight (its visibility extended by the heartbeat), so an
//! outage does not use up its SQS receives (each receive brings it closer to the DLQ), and the
//! step goes on by itself as soon as the provider is back. Past `circuit_wait` the call fails
//! and the message is retried later, not before the circuit's next trial.
//!
//! Metrics per call attempt: `order_worker_provider_calls_total{provider, operation, result}`
//! (result = ok, refused, rejected, transient, timeout, circuit_open) and
//! `order_worker_provider_call_duration_seconds{provider, operation}`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::breaker::{BreakerSettings, CircuitBreaker, CircuitState};
use crate::clock::Clock;
use crate::providers::ProviderError;
use crate::random::Random;

/// The shortest pause before asking an open (or busy half-open) circuit again.
const CIRCUIT_PAUSE: Duration = Duration::from_millis(100);

/// How a provider's calls are guarded.
#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    /// Attempts per call (1 = no retry).
    pub attempts: u32,
    /// Waits between attempts.
    pub backoff: Backoff,
    /// Time one attempt may take.
    pub timeout: Duration,
    /// The circuit breaker.
    pub breaker: BreakerSettings,
    /// How long a call waits for an open circuit before it gives up (zero: fail at once).
    pub circuit_wait: Duration,
}

/// Why a guarded call did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The provider's final, negative answer.
    #[error("{0}")]
    Refused(String),
    /// The provider says the request itself is wrong: it can never succeed.
    #[error("{0}")]
    Rejected(String),
    /// Every attempt failed for now, or the circuit stayed open: try the message again later,
    /// not before `retry_after` when known.
    #[error("{reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
        /// The provider's `Retry-After`, or the time until the circuit's next trial call.
        retry_after: Option<Duration>,
        /// The provider's circuit is open: an outage, not this call's fault.
        circuit_open: bool,
    },
}

/// One provider's breaker and retry policy.
#[derive(Debug)]
pub struct Guard {
    breaker: CircuitBreaker,
    settings: GuardSettings,
    clock: Arc<dyn Clock>,
    random: Arc<Random>,
}

fn record(provider: &'static str, operation: &'static str, result: &'static str, took: Duration) {
    metrics::counter!(
        "order_worker_provider_calls_total",
        "provider" => provider,
        "operation" => operation,
        "result" => result
    )
    .increment(1);
    if result != "circuit_open" {
        metrics::histogram!(
            "order_worker_provider_call_duration_seconds",
            "provider" => provider,
            "operation" => operation
        )
        .record(took.as_secs_f64());
    }
}

impl Guard {
    /// A guard for the provider `provider` (its breaker starts closed).
    pub fn new(
        provider: &'static str,
        settings: GuardSettings,
        clock: Arc<dyn Clock>,
        random: Arc<Random>,
    ) -> Self {
        Self {
            breaker: CircuitBreaker::new(provider, settings.breaker, clock.clone()),
            settings,
            clock,
            random,
        }
    }

    /// The breaker's state now.
    pub fn circuit(&self) -> CircuitState {
        self.breaker.state()
    }

    /// Run `call` (a fresh future per attempt) until it answers, is refused or rejected, or
    /// the attempts run out.
    pub async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        mut call: F,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let provider = self.breaker.name();
        let attempts = self.settings.attempts.max(1);
        let mut last;
        let mut attempt = 0;
        let mut circuit_waited = Duration::ZERO;
        loop {
            let permit = match self.breaker.try_acquire() {
                Ok(permit) => permit,
                Err(refused) => {
                    let pause = refused.retry_in.max(CIRCUIT_PAUSE)
                        + CIRCUIT_PAUSE.mul_f64(2.0 * self.random.unit());
                    if circuit_waited + pause > self.settings.circuit_wait {
                        record(provider, operation, "circuit_open", Duration::ZERO);
                        return Err(CallError::Unavailable {
                            reason: format!("{provider} {operation}: {refused}"),
                            retry_after: Some(refused.retry_in),
                            circuit_open: true,
                        });
                    }
                    circuit_waited += pause;
                    self.clock.sleep(pause).await;
                    continue;
                }
            };
            let started = Instant::now();
            let started_on_clock = self.clock.now();
            let before = self.breaker.state();
            let mut retry_after = None;
            match tokio::time::timeout(self.settings.timeout, call()).await {
                Ok(Ok(value)) => {
                    permit.success();
                    record(provider, operation, "ok", started.elapsed());
                    return Ok(value);
                }
                Ok(Err(ProviderError::Refused(reason))) => {
                    permit.success();
                    record(provider, operation, "refused", started.elapsed());
                    return Err(CallError::Refused(reason));
                }
                Ok(Err(ProviderError::Rejected(reason))) => {
                    permit.success();
                    record(provider, operation, "rejected", started.elapsed());
                    return Err(CallError::Rejected(reason));
                }
                Ok(Err(ProviderError::Transient {
                    reason,
                    retry_after: after,
                })) => {
                    permit.failure_after(after);
                    record(provider, operation, "transient", started.elapsed());
                    last = reason;
                    retry_after = after;
                }
                Err(_) => {
                    permit.failure();
                    record(provider, operation, "timeout", started.elapsed());
                    last = format!(
                        "{provider} {operation}: no answer within {:?}",
                        self.settings.timeout
                    );
                }
            }
            if self.breaker.state() == CircuitState::Open && before != CircuitState::Open {
                // The breaker's own line says it opened; this one says why.
                tracing::warn!(provider, operation, reason = %last, "provider call failed; the circuit is open now");
            }
            if self.breaker.state() == CircuitState::Open
                && circuit_waited < self.settings.circuit_wait
            {
                // The circuit is open (this failure may have opened it, or a trial call
                // failed): wait for it like any other call, without using up an attempt. The
                // call's time counts as waiting, so the circuit wait bounds the trial calls too.
                circuit_waited += self.clock.now().saturating_sub(started_on_clock);
                continue;
            }
            attempt += 1;
            if attempt >= attempts {
                return Err(CallError::Unavailable {
                    reason: format!("{last} (after {attempts} attempts)"),
                    retry_after,
                    circuit_open: false,
                });
            }
            let backoff = self.settings.backoff.delay(attempt, self.random.unit());
            let delay = match retry_after {
                // The provider asks for a longer pause than this call may wait: the message
                // waits instead, and comes back after it.
                Some(after) if after > self.settings.backoff.max => {
                    return Err(CallError::Unavailable {
                        reason: format!("{last} (retry after {after:?})"),
                        retry_after: Some(after),
                        circuit_open: false,
                    });
                }
                Some(after) => backoff.max(after),
                None => backoff,
            };
            tracing::debug!(provider, operation, attempt, ?delay, reason = %last, "provider call failed, retrying");
            self.clock.sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::clock::ManualClock;

    fn guard(clock: &Arc<ManualClock>) -> Guard {
        Guard::new(
            "payment",
            GuardSettings {
                attempts: 3,
                backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
                timeout: Duration::from_secs(5),
                breaker: BreakerSettings {
                    failure_threshold: 5,
                    cooldown: Duration::from_secs(30),
                    half_open_calls: 1,
                },
                circuit_wait: Duration::ZERO,
            },
            clock.clone(),
            Arc::new(Random::seeded(42)),
        )
    }

    /// A provider that answers from a script, one entry per call.
    fn scripted(
        answers: Vec<Result<u32, ProviderError>>,
    ) -> impl FnMut() -> std::future::Ready<Result<u32, ProviderError>> {
        let answers = Mutex::new(answers.into_iter());
        move || {
            let next = answers
                .lock()
                .unwrap()
                .next()
                .unwrap_or(Err(ProviderError::transient("script ended")));
            std::future::ready(next)
        }
    }

    fn transient() -> Result<u32, ProviderError> {
        Err(ProviderError::transient("outage"))
    }

    #[tokio::test]
    async fn transient_failures_are_retried_with_growing_jittered_waits() {
        let clock = Arc::new(ManualClock::new());
        let guard = guard(&clock);
        let result = guard
            .call("authorize", scripted(vec![transient(), transient(), Ok(7)]))
            .await;
        assert_eq!(result, Ok(7));
        let sleeps = clock.sleeps();
        assert_eq!(sleeps.len(), 2);
        assert!(
            (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&sleeps[0]),
            "{sleeps:?}"
        );
        assert!(
            (Duration::from_millis(100)..=Duration::from_millis(200)).contains(&sleeps[1]),
            "{sleeps:?}"
        );
        assert_eq!(guard.circuit(), CircuitState::Closed);
    }

    /// The circuit wait bounds the whole call: trial calls that fail count as waiting, so a
    /// slow failing provider cannot keep a message in flight for many circuit waits
    /// (config.rs `longest_handling`: at most the wait plus (attempts + 1) call times).
    #[tokio::test]
    async fn failed_trial_calls_count_towards_the_circuit_wait() {
        let clock = Arc::new(ManualClock::new());
        let guard = Guard::new(
            "payment",
            GuardSettings {
                attempts: 1,
                backoff: Backoff::new(Duration::ZERO, Duration::ZERO),
                timeout: Duration::from_secs(5),
                breaker: BreakerSettings {
                    failure_threshold: 1,
                    cooldown: Duration::from_millis(100),
                    half_open_calls: 1,
                },
                circuit_wait: Duration::from_secs(2),
            },
            clock.clone(),
            Arc::new(Random::seeded(42)),
        );
        let calls = Mutex::new(0u32);
        let result = guard
            .call("authorize", || {
                *calls.lock().unwrap() += 1;
                // Each call fails after half a second.
                clock.advance(Duration::from_millis(500));
                std::future::ready(transient())
            })
            .await;
        assert!(
            matches!(result, Err(CallError::Unavailable { .. })),
            "{result:?}"
        );
        let calls = *calls.lock().unwrap();
        assert!(calls <= 4, "{calls} calls in {:?}", clock.now());
        assert!(clock.now() <= Duration::from_secs(3), "{:?}", clock.now());
    }

    /// A failure that opens the circuit with a `Retry-After` longer than the cooldown keeps it
    /// open that long: no trial call goes out before the provider said (a provider in
    /// maintenance answering 503 with `Retry-After: 300` is not sent trials every cooldown).
    /// When the circuit wait is shorter, the message waits for it instead.
    #[tokio::test]
    async fn a_retry_after_that_opens_the_circuit_holds_it_open_that_long() {
        for circuit_wait in [Duration::from_secs(600), Duration::from_secs(60)] {
            let clock = Arc::new(ManualClock::new());
            let guard = Guard::new(
                "payment",
                GuardSettings {
                    attempts: 3,
                    backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
                    timeout: Duration::from_secs(5),
                    breaker: BreakerSettings {
                        failure_threshold: 1,
                        cooldown: Duration::from_secs(10),
                        half_open_calls: 1,
                    },
                    circuit_wait,
                },
                clock.clone(),
                Arc::new(Random::seeded(42)),
            );
            let calls = Mutex::new(Vec::new());
            let result = guard
                .call("authorize", || {
                    let mut calls = calls.lock().unwrap();
                    calls.push(clock.now());
                    let answer = if calls.len() == 1 {
                        Err(ProviderError::Transient {
                            reason: "maintenance".into(),
                            retry_after: Some(Duration::from_secs(300)),
                        })
                    } else {
                        Ok(7)
                    };
                    std::future::ready(answer)
                })
                .await;
            let calls = calls.into_inner().unwrap();
            if circuit_wait > Duration::from_secs(300) {
                assert_eq!(result, Ok(7));
                assert_eq!(calls.len(), 2, "{calls:?}");
                assert!(calls[1] >= Duration::from_secs(300), "{calls:?}");
            } else {
                match result {
                    Err(CallError::Unavailable {
                        retry_after: Some(after),
                        circuit_open: true,
                        ..
                    }) => assert!(after >= Duration::from_secs(290), "{after:?}"),
                    other => panic!("{other:?}"),
                }
                assert_eq!(calls.len(), 1, "{calls:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_refusal_is_an_answer_not_a_failure() {
        let clock = Arc::new(ManualClock::new());
        let guard = guard(&clock);
        for _ in 0..10 {
            let result = guard
                .call(
                    "authorize",
                    scripted(vec![Err(ProviderError::Refused("declined".into()))]),
                )
                .await;
            assert_eq!(result, Err(CallError::Refused("declined".into())));
        }
        assert!(clock.sleeps().is_empty(), "refusals are not retried");
        assert_eq!(guard.circuit(), CircuitState::Closed);
    }

    #[tokio::test]
    async fn exhausted_attempts_open_the_circuit_which_then_fails_fast_until_the_cooldown() {
        let clock = Arc::new(ManualClock::new());
        let guard = guard(&clock);
        let first = guard
            .call("authorize", scripted(vec![transient(); 3]))
            .await;
        assert!(
            matches!(&first, Err(CallError::Unavailable { reason, circuit_open: false, .. }) if reason.contains("after 3 attempts")),
            "{first:?}"
        );
        assert_eq!(guard.circuit(), CircuitState::Closed, "3 of 5 failures");
        // Two more failures reach the threshold; the third attempt is refused by the breaker.
        let second = guard
            .call("authorize", scripted(vec![transient(); 3]))
            .await;
        assert!(
            matches!(&second, Err(CallError::Unavailable { reason, circuit_open: true, .. }) if reason.contains("circuit open")),
            "{second:?}"
        );
        assert_eq!(guard.circuit(), CircuitState::Open);

        let calls = Arc::new(Mutex::new(0));
        let counting = {
            let calls = calls.clone();
            move || {
                *calls.lock().unwrap() += 1;
                std::future::ready(Ok::<u32, ProviderError>(1))
            }
        };
        let refused = guard.call("authorize", counting.clone()).await;
        assert!(matches!(refused, Err(CallError::Unavailable { .. })));
        assert_eq!(*calls.lock().unwrap(), 0, "an open circuit does not call");

        clock.advance(Duration::from_secs(30));
        assert_eq!(guard.call("authorize", counting).await, Ok(1));
        assert_eq!(*calls.lock().unwrap(), 1);
        assert_eq!(guard.circuit(), CircuitState::Closed, "the probe closed it");
    }

    #[tokio::test]
    async fn a_call_slower_than_the_timeout_is_a_transient_failure() {
        let clock = Arc::new(ManualClock::new());
        let mut settings = guard(&clock).settings;
        settings.timeout = Duration::from_millis(10);
        settings.attempts = 1;
        let guard = Guard::new(
            "shipping",
            settings,
            clock.clone(),
            Arc::new(Random::seeded(1)),
        );
        let result = guard
            .call("ship", || async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<u32, ProviderError>(1)
            })
            .await;
        assert!(
            matches!(&result, Err(CallError::Unavailable { reason, .. }) if reason.contains("no answer within")),
            "{result:?}"
        );
    }

    fn throttled(after_ms: u64) -> Result<u32, ProviderError> {
        Err(ProviderError::Transient {
            reason: "429".into(),
            retry_after: Some(Duration::from_millis(after_ms)),
        })
    }

    #[tokio::test]
    async fn a_retry_after_longer_than_the_backoff_is_waited_for() {
        let clock = Arc::new(ManualClock::new());
        let guard = guard(&clock);
        let result = guard
            .call("authorize", scripted(vec![throttled(700), Ok(3)]))
            .await;
        assert_eq!(result, Ok(3));
        assert_eq!(clock.sleeps(), vec![Duration::from_millis(700)]);
    }

    #[tokio::test]
    async fn a_retry_after_shorter_than_the_backoff_changes_nothing() {
        let clock = Arc::new(ManualClock::new());
        let guard = guard(&clock);
        let result = guard
            .call("authorize", scripted(vec![throttled(1), Ok(3)]))
            .await;
        assert_eq!(result, Ok(3));
        let slept = clock.sleeps()[0];
        assert!(slept >= Duration::from_millis(50), "{slept:?}");
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_longest_backoff_is_left_to_the_message() {
        let clock = Arc::new(ManualClock::new());
        let guard = guard(&clock);
        let result = guard
            .call("authorize", scripted(vec![throttled(30_000), Ok(3)]))
            .await;
        assert_eq!(
            result,
            Err(CallError::Unavailable {
                reason: "429 (retry after 30s)".into(),
                retry_after: Some(Duration::from_secs(30)),
                circuit_open: false,
            })
        );
        assert!(clock.sleeps().is_empty(), "the call does not wait 30 s");
    }

    #[tokio::test]
    async fn a_rejection_is_returned_at_once_and_keeps_the_circuit_closed() {
        let clock = Arc::new(ManualClock::new());
        let guard = guard(&clock);
        for _ in 0..10 {
            let result = guard
                .call(
                    "reserve",
                    scripted(vec![Err(ProviderError::Rejected("400".into()))]),
                )
                .await;
            assert_eq!(result, Err(CallError::Rejected("400".into())));
        }
        assert!(clock.sleeps().is_empty());
        assert_eq!(guard.circuit(), CircuitState::Closed);
    }

    #[tokio::test]
    async fn an_open_circuit_holds_the_call_until_the_provider_is_back() {
        let clock = Arc::new(ManualClock::new());
        let mut settings = guard(&clock).settings;
        settings.circuit_wait = Duration::from_secs(120);
        settings.attempts = 1;
        settings.breaker.half_open_calls = 3;
        let guard = Guard::new(
            "payment",
            settings,
            clock.clone(),
            Arc::new(Random::seeded(9)),
        );
        for _ in 0..5 {
            let _ = guard.call("authorize", scripted(vec![transient()])).await;
        }
        assert_eq!(guard.circuit(), CircuitState::Open);
        let started = clock.now();
        // Held: no call while open; after the cooldown the trial calls go through.
        let result = guard.call("authorize", scripted(vec![Ok(5)])).await;
        assert_eq!(result, Ok(5));
        let held = clock.now() - started;
        assert!(
            held >= Duration::from_secs(30) && held < Duration::from_secs(31),
            "{held:?}"
        );
        assert_eq!(guard.circuit(), CircuitState::HalfOpen, "1 of 3 trials");
        for _ in 0..2 {
            assert_eq!(guard.call("authorize", scripted(vec![Ok(1)])).await, Ok(1));
        }
        assert_eq!(guard.circuit(), CircuitState::Closed);
    }

    #[tokio::test]
    async fn a_call_held_longer_than_the_circuit_wait_gives_up_with_the_next_trial_time() {
        let clock = Arc::new(ManualClock::new());
        let mut settings = guard(&clock).settings;
        settings.circuit_wait = Duration::from_secs(5);
        settings.attempts = 1;
        let guard = Guard::new(
            "payment",
            settings,
            clock.clone(),
            Arc::new(Random::seeded(9)),
        );
        for _ in 0..5 {
            let _ = guard.call("authorize", scripted(vec![transient()])).await;
        }
        let result = guard.call("authorize", scripted(vec![Ok(5)])).await;
        assert!(
            matches!(&result, Err(CallError::Unavailable { retry_after: Some(after), .. }) if *after == Duration::from_secs(30)),
            "{result:?}"
        );
    }
}

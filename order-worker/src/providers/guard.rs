//! Every provider call goes through a [`Guard`]: the provider's circuit breaker, a timeout per
//! attempt, and retries with exponential backoff and jitter. Refusals ("out of stock") are
//! answers, not failures: they are returned at once and count as successes for the breaker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::breaker::{BreakerSettings, CircuitBreaker, CircuitState};
use crate::clock::Clock;
use crate::providers::ProviderError;
use crate::random::Random;

#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    /// Attempts per call (1 = no retry).
    pub attempts: u32,
    /// Waits between attempts.
    pub backoff: Backoff,
    /// Time one attempt may take.
    pub timeout: Duration,
    pub breaker: BreakerSettings,
}

/// Why a guarded call did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The provider's final, negative answer.
    #[error("{0}")]
    Refused(String),
    /// Every attempt failed for now, or the circuit is open: try the message again later.
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Debug)]
pub struct Guard {
    breaker: CircuitBreaker,
    settings: GuardSettings,
    clock: Arc<dyn Clock>,
    random: Arc<Random>,
}

impl Guard {
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

    pub fn circuit(&self) -> CircuitState {
        self.breaker.state()
    }

    /// Run `call` (a fresh future per attempt) until it answers, is refused, or the attempts
    /// run out.
    pub async fn call<T, F, Fut>(&self, operation: &str, mut call: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let provider = self.breaker.name();
        let attempts = self.settings.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let permit = match self.breaker.try_acquire() {
                Ok(permit) => permit,
                Err(refused) => {
                    return Err(CallError::Unavailable(format!(
                        "{provider} {operation}: {refused}"
                    )));
                }
            };
            match tokio::time::timeout(self.settings.timeout, call()).await {
                Ok(Ok(value)) => {
                    permit.success();
                    return Ok(value);
                }
                Ok(Err(ProviderError::Refused(reason))) => {
                    permit.success();
                    return Err(CallError::Refused(reason));
                }
                Ok(Err(ProviderError::Transient(reason))) => {
                    permit.failure();
                    last = reason;
                }
                Err(_) => {
                    permit.failure();
                    last = format!(
                        "{provider} {operation}: no answer within {:?}",
                        self.settings.timeout
                    );
                }
            }
            if attempt < attempts {
                let delay = self.settings.backoff.delay(attempt, self.random.unit());
                tracing::debug!(provider, operation, attempt, ?delay, reason = %last, "provider call failed, retrying");
                self.clock.sleep(delay).await;
            }
        }
        Err(CallError::Unavailable(format!(
            "{last} (after {attempts} attempts)"
        )))
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
                },
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
                .unwrap_or(Err(ProviderError::Transient("script ended".into())));
            std::future::ready(next)
        }
    }

    fn transient() -> Result<u32, ProviderError> {
        Err(ProviderError::Transient("outage".into()))
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
            matches!(&first, Err(CallError::Unavailable(why)) if why.contains("after 3 attempts")),
            "{first:?}"
        );
        assert_eq!(guard.circuit(), CircuitState::Closed, "3 of 5 failures");
        // Two more failures reach the threshold; the third attempt is refused by the breaker.
        let second = guard
            .call("authorize", scripted(vec![transient(); 3]))
            .await;
        assert!(
            matches!(&second, Err(CallError::Unavailable(why)) if why.contains("circuit open")),
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
        assert!(matches!(refused, Err(CallError::Unavailable(_))));
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
            matches!(&result, Err(CallError::Unavailable(why)) if why.contains("no answer within")),
            "{result:?}"
        );
    }
}

//! A circuit breaker per provider: after `failure_threshold` consecutive failures it opens and
//! refuses calls at once; after `cooldown` it lets one probe through (half-open); the probe's
//! success closes it, its failure opens it again for another cooldown.
//!
//! Only transient failures count (timeouts, outages). A provider that answers "out of stock"
//! or "declined" is healthy: that is a successful call with a negative answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;

/// What the breaker lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Every call goes through.
    Closed,
    /// One probe call is under way; others are refused.
    HalfOpen,
    /// Calls are refused until the cooldown ends.
    Open,
}

impl CircuitState {
    /// The value of the `order_worker_circuit_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half-open",
            Self::Open => "open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub cooldown: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed { failures: u32 },
    Open { since: Duration },
    HalfOpen,
}

/// The breaker refused the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open, next probe in {retry_in:?}")]
pub struct Refused {
    pub retry_in: Duration,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    name: &'static str,
    settings: BreakerSettings,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    pub fn new(name: &'static str, settings: BreakerSettings, clock: Arc<dyn Clock>) -> Self {
        let breaker = Self {
            name,
            settings: BreakerSettings {
                failure_threshold: settings.failure_threshold.max(1),
                cooldown: settings.cooldown,
            },
            clock,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        };
        breaker.report(CircuitState::Closed);
        breaker
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn state(&self) -> CircuitState {
        state_of(*self.lock())
    }

    /// Ask to make a call. The permit must be told how the call went.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Refused> {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Ok(Permit::new(self, false)),
            Inner::Open { since } => {
                let open_for = self.clock.now().saturating_sub(since);
                if open_for >= self.settings.cooldown {
                    *inner = Inner::HalfOpen;
                    drop(inner);
                    self.report(CircuitState::HalfOpen);
                    tracing::info!(provider = self.name, "circuit half-open: probing");
                    Ok(Permit::new(self, true))
                } else {
                    Err(Refused {
                        retry_in: self.settings.cooldown - open_for,
                    })
                }
            }
            Inner::HalfOpen => Err(Refused {
                retry_in: Duration::ZERO,
            }),
        }
    }

    fn record(&self, probe: bool, success: bool) {
        let mut inner = self.lock();
        let before = state_of(*inner);
        let after = match (*inner, success) {
            (Inner::HalfOpen, true) if probe => Inner::Closed { failures: 0 },
            (Inner::HalfOpen, false) if probe => Inner::Open {
                since: self.clock.now(),
            },
            (Inner::Closed { .. }, true) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, false) => {
                let failures = failures.saturating_add(1);
                if failures >= self.settings.failure_threshold {
                    Inner::Open {
                        since: self.clock.now(),
                    }
                } else {
                    Inner::Closed { failures }
                }
            }
            // A call that started while closed and ended after the circuit changed: the
            // newer state wins.
            (other, _) => other,
        };
        *inner = after;
        drop(inner);
        let after = state_of(after);
        if after != before {
            self.report(after);
            match after {
                CircuitState::Open => tracing::warn!(
                    provider = self.name,
                    cooldown = ?self.settings.cooldown,
                    "circuit opened: calls are refused until the cooldown ends"
                ),
                CircuitState::Closed => tracing::info!(provider = self.name, "circuit closed"),
                CircuitState::HalfOpen => {}
            }
        }
    }

    /// A probe that never reported back (its call was cancelled): allow the next probe now.
    fn abandon_probe(&self) {
        let mut inner = self.lock();
        if *inner == Inner::HalfOpen {
            *inner = Inner::Open {
                since: self.clock.now().saturating_sub(self.settings.cooldown),
            };
            drop(inner);
            self.report(CircuitState::Open);
        }
    }

    fn report(&self, state: CircuitState) {
        metrics::gauge!("order_worker_circuit_state", "provider" => self.name).set(state.gauge());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn state_of(inner: Inner) -> CircuitState {
    match inner {
        Inner::Closed { .. } => CircuitState::Closed,
        Inner::Open { .. } => CircuitState::Open,
        Inner::HalfOpen => CircuitState::HalfOpen,
    }
}

/// Permission for one call; report its result with [`Permit::success`] or
/// [`Permit::failure`].
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    reported: bool,
}

impl<'a> Permit<'a> {
    fn new(breaker: &'a CircuitBreaker, probe: bool) -> Self {
        Self {
            breaker,
            probe,
            reported: false,
        }
    }

    pub fn success(mut self) {
        self.reported = true;
        self.breaker.record(self.probe, true);
    }

    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.record(self.probe, false);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.abandon_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn breaker(clock: &Arc<ManualClock>) -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            BreakerSettings {
                failure_threshold: 3,
                cooldown: Duration::from_secs(10),
            },
            clock.clone(),
        )
    }

    fn fail(breaker: &CircuitBreaker) {
        breaker.try_acquire().unwrap().failure();
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let clock = Arc::new(ManualClock::new());
        let breaker = breaker(&clock);
        fail(&breaker);
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Closed);
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open);
        let refused = breaker.try_acquire().unwrap_err();
        assert_eq!(refused.retry_in, Duration::from_secs(10));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let clock = Arc::new(ManualClock::new());
        let breaker = breaker(&clock);
        fail(&breaker);
        fail(&breaker);
        breaker.try_acquire().unwrap().success();
        fail(&breaker);
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Closed, "not 3 in a row");
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_through_and_its_success_closes() {
        let clock = Arc::new(ManualClock::new());
        let breaker = breaker(&clock);
        for _ in 0..3 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(4));
        assert_eq!(
            breaker.try_acquire().unwrap_err().retry_in,
            Duration::from_secs(6)
        );
        clock.advance(Duration::from_secs(6));
        let probe = breaker.try_acquire().unwrap();
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert!(
            breaker.try_acquire().is_err(),
            "only one probe at a time while half-open"
        );
        probe.success();
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.try_acquire().unwrap().success();
    }

    #[test]
    fn a_failed_probe_opens_for_another_full_cooldown() {
        let clock = Arc::new(ManualClock::new());
        let breaker = breaker(&clock);
        for _ in 0..3 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(10));
        breaker.try_acquire().unwrap().failure();
        assert_eq!(breaker.state(), CircuitState::Open);
        clock.advance(Duration::from_secs(9));
        assert!(breaker.try_acquire().is_err());
        clock.advance(Duration::from_secs(1));
        assert!(breaker.try_acquire().is_ok());
    }

    #[test]
    fn an_abandoned_probe_allows_the_next_probe_at_once() {
        let clock = Arc::new(ManualClock::new());
        let breaker = breaker(&clock);
        for _ in 0..3 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(10));
        drop(breaker.try_acquire().unwrap());
        assert_eq!(breaker.state(), CircuitState::Open);
        let probe = breaker.try_acquire().unwrap();
        probe.success();
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn late_results_of_calls_from_before_the_opening_change_nothing() {
        let clock = Arc::new(ManualClock::new());
        let breaker = breaker(&clock);
        let slow = breaker.try_acquire().unwrap();
        for _ in 0..3 {
            fail(&breaker);
        }
        slow.success();
        assert_eq!(breaker.state(), CircuitState::Open);
    }

    #[test]
    fn the_gauge_values_follow_the_documented_encoding() {
        assert_eq!(CircuitState::Closed.gauge(), 0.0);
        assert_eq!(CircuitState::HalfOpen.gauge(), 1.0);
        assert_eq!(CircuitState::Open.gauge(), 2.0);
    }
}

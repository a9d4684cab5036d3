//! A circuit breaker per provider: after `failure_threshold` consecutive failures it opens and
//! refuses calls at once; after `cooldown` it half-opens and lets `half_open_calls` trial calls
//! through; it closes when that many succeed, or, under light traffic, once another `cooldown`
//! has passed half-open with a trial succeeded and none failed (at the next call's success or
//! request). A failed trial opens it again for another cooldown (a new `open` transition).
//! A failure whose provider sent a `Retry-After` longer than the cooldown holds the circuit it
//! opens, or finds open, open that long: no trial call goes out before the provider said.
//! (The seed's payment gateway: open after 5 consecutive failures, probe after 10 s, close
//! after 3 successful trials, or 10 s after the first one.)
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
    /// A few trial calls are let through; others are refused.
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

    /// The state's name, as logs and the transition metric say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half-open",
            Self::Open => "open",
        }
    }
}

/// When the breaker opens and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long it stays open before trial calls.
    pub cooldown: Duration,
    /// Trial calls let through while half-open; this many successes close it (as does a
    /// `cooldown` half-open with a trial succeeded and none failed).
    pub half_open_calls: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed {
        failures: u32,
    },
    Open {
        /// When trial calls may start: a cooldown after it opened, or later when the failure
        /// that opened it (or one since) came with a longer `Retry-After`.
        until: Duration,
    },
    HalfOpen {
        in_flight: u32,
        successes: u32,
        /// Which half-open window (a trial answers for its own only).
        window: u64,
        /// When it half-opened.
        since: Duration,
    },
}

/// The breaker refused the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open, next probe in {retry_in:?}")]
pub struct Refused {
    /// When trial calls will be let through (zero: trial calls are under way now).
    pub retry_in: Duration,
}

/// One provider's circuit breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    name: &'static str,
    settings: BreakerSettings,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    /// The next half-open window's number.
    windows: std::sync::atomic::AtomicU64,
}

impl CircuitBreaker {
    /// A closed breaker for the provider `name`.
    pub fn new(name: &'static str, settings: BreakerSettings, clock: Arc<dyn Clock>) -> Self {
        let breaker = Self {
            name,
            settings: BreakerSettings {
                failure_threshold: settings.failure_threshold.max(1),
                cooldown: settings.cooldown,
                half_open_calls: settings.half_open_calls.max(1),
            },
            clock,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
            windows: std::sync::atomic::AtomicU64::new(0),
        };
        metrics::gauge!("order_worker_circuit_state", "provider" => name)
            .set(CircuitState::Closed.gauge());
        breaker
    }

    /// The provider's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The state now.
    pub fn state(&self) -> CircuitState {
        state_of(*self.lock())
    }

    /// Ask to make a call. The permit must be told how the call went.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Refused> {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Ok(Permit::new(self, None)),
            Inner::Open { until } => {
                let now = self.clock.now();
                if now >= until {
                    let window = self
                        .windows
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    *inner = Inner::HalfOpen {
                        in_flight: 1,
                        successes: 0,
                        window,
                        since: self.clock.now(),
                    };
                    drop(inner);
                    self.report(CircuitState::HalfOpen);
                    tracing::info!(provider = self.name, "circuit half-open: probing");
                    Ok(Permit::new(self, Some(window)))
                } else {
                    Err(Refused {
                        retry_in: until - now,
                    })
                }
            }
            Inner::HalfOpen {
                in_flight,
                successes,
                window,
                since,
            } => {
                if self.recovered(successes, since) {
                    // Trials succeeded and none failed for a whole cooldown: closed, this
                    // call an ordinary one.
                    *inner = Inner::Closed { failures: 0 };
                    drop(inner);
                    self.closed();
                    Ok(Permit::new(self, None))
                } else if in_flight + successes < self.settings.half_open_calls {
                    *inner = Inner::HalfOpen {
                        in_flight: in_flight + 1,
                        successes,
                        window,
                        since,
                    };
                    Ok(Permit::new(self, Some(window)))
                } else {
                    Err(Refused {
                        retry_in: Duration::ZERO,
                    })
                }
            }
        }
    }

    /// A call's answer; `probe` is the half-open window of a trial call (`None`: a call made
    /// while closed). A trial of an earlier window counts in none after it. A failure's
    /// `retry_after` (the provider's `Retry-After`) holds a circuit it opens, or finds open,
    /// open at least that long.
    fn record(&self, probe: Option<u64>, success: bool, retry_after: Option<Duration>) {
        let now = self.clock.now();
        let opened = Inner::Open {
            until: now + self.settings.cooldown.max(retry_after.unwrap_or_default()),
        };
        let mut inner = self.lock();
        let before = state_of(*inner);
        let after = match (*inner, success) {
            (
                Inner::HalfOpen {
                    in_flight,
                    successes,
                    window,
                    since,
                },
                true,
            ) if probe == Some(window) => {
                let successes = successes + 1;
                if successes >= self.settings.half_open_calls || self.recovered(successes, since) {
                    Inner::Closed { failures: 0 }
                } else {
                    Inner::HalfOpen {
                        in_flight: in_flight.saturating_sub(1),
                        successes,
                        window,
                        since,
                    }
                }
            }
            (Inner::HalfOpen { window, .. }, false) if probe == Some(window) => opened,
            (Inner::Closed { .. }, true) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, false) => {
                let failures = failures.saturating_add(1);
                if failures >= self.settings.failure_threshold {
                    opened
                } else {
                    Inner::Closed { failures }
                }
            }
            // A call that started while closed and ended after the circuit opened: it stays
            // open, and not before the provider's `Retry-After`.
            (Inner::Open { until }, false) => Inner::Open {
                until: until.max(now + retry_after.unwrap_or_default()),
            },
            // A call that started before the circuit changed otherwise: the newer state wins.
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
                    retry_after = ?retry_after,
                    "circuit opened: calls are refused until the cooldown ends (or the \
                     provider's longer Retry-After)"
                ),
                CircuitState::Closed => tracing::info!(provider = self.name, "circuit closed"),
                CircuitState::HalfOpen => {}
            }
        }
    }

    /// Whether a half-open circuit (since `since`, `successes` trials succeeded and, as it
    /// is still half-open, none failed) has seen its provider recover: a trial succeeded and a
    /// whole cooldown passed without a failure. Under light traffic the trial calls that
    /// would close it may never all be made.
    fn recovered(&self, successes: u32, since: Duration) -> bool {
        successes > 0 && self.clock.now().saturating_sub(since) >= self.settings.cooldown
    }

    /// Report a close decided outside [`CircuitBreaker::record`].
    fn closed(&self) {
        self.report(CircuitState::Closed);
        tracing::info!(provider = self.name, "circuit closed");
    }

    /// A trial call that never reported back (its call was cancelled): let another one
    /// through in its place.
    fn abandon_probe(&self, probe: u64) {
        let mut inner = self.lock();
        if let Inner::HalfOpen {
            in_flight,
            successes,
            window,
            since,
        } = *inner
            && window == probe
        {
            *inner = Inner::HalfOpen {
                in_flight: in_flight.saturating_sub(1),
                successes,
                window,
                since,
            };
        }
    }

    fn report(&self, state: CircuitState) {
        metrics::gauge!("order_worker_circuit_state", "provider" => self.name).set(state.gauge());
        metrics::counter!(
            "order_worker_circuit_transitions_total",
            "provider" => self.name,
            "state" => state.as_str()
        )
        .increment(1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn state_of(inner: Inner) -> CircuitState {
    match inner {
        Inner::Closed { .. } => CircuitState::Closed,
        Inner::Open { .. } => CircuitState::Open,
        Inner::HalfOpen { .. } => CircuitState::HalfOpen,
    }
}

/// Permission for one call; report its result with [`Permit::success`] or
/// [`Permit::failure`].
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    /// The half-open window of a trial call; `None` for a call made while closed.
    probe: Option<u64>,
    reported: bool,
}

impl<'a> Permit<'a> {
    fn new(breaker: &'a CircuitBreaker, probe: Option<u64>) -> Self {
        Self {
            breaker,
            probe,
            reported: false,
        }
    }

    /// The call worked (or was answered with a business refusal).
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.record(self.probe, true, None);
    }

    /// The call failed transiently.
    pub fn failure(self) {
        self.failure_after(None);
    }

    /// The call failed transiently, and the provider asked not to be called again before
    /// `retry_after` (its `Retry-After`): should the circuit open, or be open, it stays open
    /// at least that long.
    pub fn failure_after(mut self, retry_after: Option<Duration>) {
        self.reported = true;
        self.breaker.record(self.probe, false, retry_after);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported
            && let Some(window) = self.probe
        {
            self.breaker.abandon_probe(window);
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
                half_open_calls: 1,
            },
            clock.clone(),
        )
    }

    fn fail(breaker: &CircuitBreaker) {
        breaker.try_acquire().unwrap().failure();
    }

    /// A trial call of an earlier half-open window that answers late counts in no later
    /// window: two late successes do not close a circuit whose new window saw one trial.
    #[test]
    fn a_late_trial_of_an_earlier_window_counts_in_none_after_it() {
        let clock = Arc::new(ManualClock::new());
        let breaker = CircuitBreaker::new(
            "test",
            BreakerSettings {
                failure_threshold: 1,
                cooldown: Duration::from_secs(10),
                half_open_calls: 3,
            },
            clock.clone(),
        );
        fail(&breaker);
        clock.advance(Duration::from_secs(10));
        let trials: Vec<Permit<'_>> = (0..3).map(|_| breaker.try_acquire().unwrap()).collect();
        let mut trials = trials.into_iter();
        trials.next().unwrap().failure();
        assert_eq!(breaker.state(), CircuitState::Open);
        clock.advance(Duration::from_secs(10));
        let new_trial = breaker.try_acquire().unwrap();
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        for late in trials {
            late.success();
        }
        assert_eq!(
            breaker.state(),
            CircuitState::HalfOpen,
            "late answers count not"
        );
        new_trial.success();
        assert_eq!(breaker.state(), CircuitState::HalfOpen, "1 of 3 trials");
        // The window's other two trials are still to be had.
        assert!(breaker.try_acquire().is_ok());
        assert!(breaker.try_acquire().is_ok());
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

    fn seed_breaker(clock: &Arc<ManualClock>) -> CircuitBreaker {
        CircuitBreaker::new(
            "payment",
            BreakerSettings {
                failure_threshold: 5,
                cooldown: Duration::from_secs(10),
                half_open_calls: 3,
            },
            clock.clone(),
        )
    }

    #[test]
    fn the_seed_breaker_opens_after_5_failures_and_closes_after_3_successful_trials() {
        let clock = Arc::new(ManualClock::new());
        let breaker = seed_breaker(&clock);
        for _ in 0..4 {
            fail(&breaker);
        }
        assert_eq!(breaker.state(), CircuitState::Closed, "4 of 5");
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open);
        clock.advance(Duration::from_secs(10));
        let trials: Vec<Permit<'_>> = (0..3).map(|_| breaker.try_acquire().unwrap()).collect();
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert_eq!(
            breaker.try_acquire().unwrap_err().retry_in,
            Duration::ZERO,
            "only 3 trial calls while half-open"
        );
        let mut trials = trials.into_iter();
        trials.next().unwrap().success();
        trials.next().unwrap().success();
        assert_eq!(breaker.state(), CircuitState::HalfOpen, "2 of 3 successes");
        trials.next().unwrap().success();
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    /// Light traffic after an outage: fewer calls than the trials that would close it. A
    /// cooldown after it half-opened, with its trials succeeded and none failed, the next call
    /// closes it, and an ordinary failure after that is one of the threshold, not a reopening.
    #[test]
    fn under_light_traffic_the_seed_breaker_closes_a_cooldown_after_a_successful_trial() {
        let clock = Arc::new(ManualClock::new());
        let breaker = seed_breaker(&clock);
        for _ in 0..5 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(10));
        breaker.try_acquire().unwrap().success();
        clock.advance(Duration::from_secs(3));
        breaker.try_acquire().unwrap().success();
        assert_eq!(breaker.state(), CircuitState::HalfOpen, "2 of 3, 3 s");
        clock.advance(Duration::from_secs(7));
        let call = breaker.try_acquire().unwrap();
        assert_eq!(
            breaker.state(),
            CircuitState::Closed,
            "10 s without a failure"
        );
        call.failure();
        assert_eq!(breaker.state(), CircuitState::Closed, "1 of 5");
        for _ in 0..3 {
            fail(&breaker);
        }
        assert_eq!(breaker.state(), CircuitState::Closed, "4 of 5");
    }

    /// A trial that succeeds a whole cooldown after the circuit half-opened closes it.
    #[test]
    fn a_trial_succeeding_a_cooldown_after_the_half_opening_closes_the_seed_breaker() {
        let clock = Arc::new(ManualClock::new());
        let breaker = seed_breaker(&clock);
        for _ in 0..5 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(10));
        let slow = breaker.try_acquire().unwrap();
        clock.advance(Duration::from_secs(10));
        slow.success();
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    /// Time alone closes nothing: without a successful trial, the circuit stays half-open,
    /// and its next call is a trial whose failure opens it again.
    #[test]
    fn without_a_successful_trial_the_seed_breaker_stays_half_open() {
        let clock = Arc::new(ManualClock::new());
        let breaker = seed_breaker(&clock);
        for _ in 0..5 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(10));
        drop(breaker.try_acquire().unwrap());
        clock.advance(Duration::from_secs(60));
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        breaker.try_acquire().unwrap().failure();
        assert_eq!(breaker.state(), CircuitState::Open);
    }

    #[test]
    fn one_failed_trial_opens_the_seed_breaker_again() {
        let clock = Arc::new(ManualClock::new());
        let breaker = seed_breaker(&clock);
        for _ in 0..5 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(10));
        breaker.try_acquire().unwrap().success();
        breaker.try_acquire().unwrap().failure();
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(
            breaker.try_acquire().unwrap_err().retry_in,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn a_cancelled_trial_makes_room_for_another() {
        let clock = Arc::new(ManualClock::new());
        let breaker = seed_breaker(&clock);
        for _ in 0..5 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(10));
        let trials: Vec<Permit<'_>> = (0..3).map(|_| breaker.try_acquire().unwrap()).collect();
        assert!(breaker.try_acquire().is_err());
        drop(trials);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        for _ in 0..3 {
            breaker.try_acquire().unwrap().success();
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
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
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
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

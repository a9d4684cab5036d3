//! Exponential backoff with jitter, as a pure function of the attempt number and a random
//! number, so that tests can pin both.

use std::time::Duration;

/// Delays that double per attempt from `base` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
        }
    }

    /// The longest delay before retry `attempt` (1 = the first retry): `base * 2^(attempt-1)`,
    /// capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay before retry `attempt`, with "equal jitter": half the ceiling, plus `unit`
    /// (a random number in [0, 1)) times the other half. Delays still grow with every attempt,
    /// and workers that failed together do not retry together.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + (ceiling - half).mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ceilings_double_from_base_up_to_max() {
        let backoff = Backoff::new(ms(100), ms(1_000));
        let ceilings: Vec<Duration> = (1..=6).map(|a| backoff.ceiling(a)).collect();
        assert_eq!(
            ceilings,
            vec![ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000)]
        );
        assert_eq!(backoff.ceiling(0), ms(100));
        assert_eq!(backoff.ceiling(u32::MAX), ms(1_000), "no overflow");
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_ceiling() {
        let backoff = Backoff::new(ms(100), ms(10_000));
        assert_eq!(backoff.delay(3, 0.0), ms(200));
        assert_eq!(backoff.delay(3, 0.5), ms(300));
        assert!(backoff.delay(3, 0.999_999) <= ms(400));
        assert_eq!(
            backoff.delay(3, 7.0),
            ms(400),
            "out-of-range randomness is clamped"
        );
        // Growing even in the worst case: the lowest delay of attempt n+1 is the highest of n.
        for attempt in 1..6 {
            assert!(backoff.delay(attempt + 1, 0.0) >= backoff.delay(attempt, 0.999));
        }
    }

    #[test]
    fn max_below_base_is_raised_to_base() {
        let backoff = Backoff::new(ms(500), ms(100));
        assert_eq!(backoff.ceiling(4), ms(500));
    }
}

//! Small, seedable randomness for jitter and the provider simulation (SplitMix64: fast, good
//! enough for spreading retries, reproducible from a seed in tests). Not for secrets.

use std::sync::Mutex;

/// A shared pseudo-random source.
#[derive(Debug)]
pub struct Random {
    state: Mutex<u64>,
}

impl Random {
    /// A reproducible sequence.
    pub fn seeded(seed: u64) -> Self {
        Self {
            state: Mutex::new(seed),
        }
    }

    /// A different sequence per process.
    pub fn from_entropy() -> Self {
        let bits = uuid::Uuid::new_v4().as_u128();
        Self::seeded((bits as u64) ^ ((bits >> 64) as u64))
    }

    pub fn next_u64(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(*state)
    }

    /// A number in [0, 1).
    pub fn unit(&self) -> f64 {
        to_unit(self.next_u64())
    }

    /// True with probability `p` (0 never, 1 always).
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// A stable number in [0, 1) for `key`: the same key always gives the same number, in every
/// process. Used for "a share of the orders" rules, so that an order always gets the same
/// answer however often its message is delivered.
pub fn stable_unit(key: &[u8]) -> f64 {
    // FNV-1a, then the SplitMix64 finaliser to spread the bits.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    to_unit(mix(hash))
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn to_unit(bits: u64) -> f64 {
    // The top 53 bits as a fraction of 2^53.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_sequence() {
        let a = Random::seeded(7);
        let b = Random::seeded(7);
        let first: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let second: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(first, second);
        assert_ne!(first[0], first[1]);
    }

    #[test]
    fn units_are_in_range_and_roughly_uniform() {
        let random = Random::seeded(1);
        let draws: Vec<f64> = (0..10_000).map(|_| random.unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let below_half = draws.iter().filter(|u| **u < 0.5).count();
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
        assert!(!random.chance(0.0));
        assert!(random.chance(1.0));
    }

    #[test]
    fn stable_units_depend_only_on_the_key() {
        assert_eq!(stable_unit(b"order-1"), stable_unit(b"order-1"));
        assert_ne!(stable_unit(b"order-1"), stable_unit(b"order-2"));
        let share = (0..10_000)
            .filter(|i| stable_unit(format!("k{i}").as_bytes()) < 0.1)
            .count();
        assert!((800..1_200).contains(&share), "{share}");
    }
}

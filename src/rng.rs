//! A tiny seeded random number generator: SplitMix64, the one every part of
//! the crate uses — the reactor's timer jitter, reconnect backoff, the
//! simulator's traffic, the benchmarks.
//!
//! The simulator must be *reproducible*: the same `--seed` gives the same
//! chat lines, gifts and fault patterns, so a failing test or benchmark can
//! be replayed exactly. A general-purpose crate would be overkill and could
//! change its output between versions; SplitMix64 is ten lines, fast, and
//! good enough for test traffic (it is how `rand` seeds its own generators).
//! It is not cryptographic, and need not be.

/// SplitMix64 (Steele, Lea and Flood, 2014): a counter stepped by a large odd
/// constant, then scrambled. Every seed, including 0, gives a full-period
/// stream.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole output is decided by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 53 bits as a fraction.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `0..n` (`n` > 0). Plain modulo: its bias is below
    /// `n / 2^64`, invisible for the small ranges used here.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "below(0) has no answer");
        self.next_u64() % n
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Combines a seed and a name (a room id, a client number) into a new seed,
/// so that each room and each client gets its own independent stream that
/// does not depend on what the others did.
pub fn derive_seed(seed: u64, name: u64) -> u64 {
    // One SplitMix64 step of the pair: nearby names give unrelated seeds.
    Rng::new(seed ^ name.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::new(42);
        assert!(a.iter().all(|&x| x == r.next_u64()));
        assert_ne!(Rng::new(43).next_u64(), a[0]);
    }

    #[test]
    fn reference_values() {
        // SplitMix64 from seed 0, as published with the algorithm.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let mut r = Rng::new(7);
        for _ in 0..1000 {
            assert!((3..=9).contains(&r.between(3, 9)));
            assert!(r.below(4) < 4);
        }
        assert_ne!(derive_seed(1, 1001), derive_seed(1, 1002));
        assert_ne!(derive_seed(1, 1001), derive_seed(2, 1001));
    }
}

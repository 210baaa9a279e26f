//! Reconnect delays: exponential backoff with full jitter.
//!
//! After a failure, wait a random time between 0 and `min(cap, base × 2^n)`,
//! where n counts consecutive failures ("full jitter", from the AWS
//! architecture blog's comparison): when a server restarts, thousands of
//! rooms must not come back in lockstep. A connection that dies soon after
//! opening is a failure too — otherwise a server that accepts and then
//! drops would be hammered at full speed. A connection that stayed healthy
//! for a while resets the count.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// 1 s doubling to 60 s.
    pub fn new() -> Self {
        Backoff::with_limits(Duration::from_secs(1), Duration::from_secs(60))
    }

    pub fn with_limits(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap, failures: 0 }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait, given a uniform
    /// random number in [0, 1).
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(random.clamp(0.0, 1.0))
    }

    /// The upper bound of the next delay: `min(cap, base × 2^failures)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A healthy period passed: start over from `base`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_from_one_second_to_sixty() {
        let mut backoff = Backoff::new();
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            ceilings.push(backoff.ceiling().as_secs());
            backoff.next_delay(0.5);
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        // Never gives up, never overflows.
        for _ in 0..1000 {
            assert!(backoff.next_delay(0.999) <= Duration::from_secs(60));
        }
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let mut backoff = Backoff::new();
        for _ in 0..3 {
            backoff.next_delay(0.0);
        }
        assert_eq!(backoff.clone().next_delay(0.0), Duration::ZERO);
        assert_eq!(backoff.clone().next_delay(0.5), Duration::from_secs(4));
        let mut jitter = crate::rng::Rng::new(42);
        let delays: Vec<f64> = (0..1000).map(|_| backoff.clone().next_delay(jitter.next_f64()).as_secs_f64()).collect();
        assert!(delays.iter().all(|d| (0.0..8.0).contains(d)));
        assert!(delays.iter().any(|d| *d < 1.0) && delays.iter().any(|d| *d > 7.0), "spread over the range");
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::new();
        for _ in 0..5 {
            backoff.next_delay(1.0);
        }
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_secs(1));
    }
}

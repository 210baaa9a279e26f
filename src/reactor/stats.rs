//! Counters that show what the loop is doing.
//!
//! A learner can watch them move; a benchmark divides them by the number of
//! messages to get "syscalls per message". They are plain integers updated
//! inline: the loop is single-threaded, so no atomics are needed.

use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Loop iterations. Each waits at most once: in `poll`, or, inside a
    /// [`min_poll_interval`](super::ReactorConfig::min_poll_interval), in
    /// a sleep.
    pub iterations: u64,
    /// `poll` calls: one per iteration, except those inside the minimum
    /// poll interval.
    pub polls: u64,
    /// Sleeps inside the minimum poll interval, in place of a poll (each
    /// one a syscall too, `nanosleep`).
    pub interval_sleeps: u64,
    /// Readiness events returned by `poll`.
    pub events: u64,
    /// `poll` calls that returned because a timeout expired with no event.
    pub poll_timeouts: u64,
    /// `read`/`recv` calls on connections (including those that would
    /// block; for TLS, those OpenSSL made, the handshake's too).
    pub read_syscalls: u64,
    /// `write`/`send` calls on connections.
    pub write_syscalls: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// `register`/`reregister`/`deregister` calls made to change interest.
    pub reregisters: u64,
    /// Connections accepted by listeners.
    pub accepted: u64,
    /// Connections opened (outgoing or attached) and closed.
    pub opened: u64,
    pub closed: u64,
    pub timers_fired: u64,
    /// The worst delay between a timer's deadline and its callback.
    pub max_timer_lateness: Duration,
    /// Every timer's delay past its deadline, for percentiles.
    pub timer_lateness: LatencyHistogram,
    /// Wake-ups from other threads.
    pub wakeups: u64,
}

/// A histogram of durations with about 6% precision, in constant memory:
/// the first 16 microseconds one bucket each, then 16 buckets per doubling
/// (the "significant bits" scheme of HdrHistogram, with 4 bits). Recording
/// is an index computation and an increment — cheap enough for every timer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Counts per bucket; grown on first use.
    buckets: Vec<u64>,
    count: u64,
    /// The exact largest value, so no quantile reports more than it.
    max: Duration,
}

const SUB_BUCKETS: u64 = 16;

impl LatencyHistogram {
    pub fn record(&mut self, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        let index = bucket_of(micros);
        if self.buckets.len() <= index {
            self.buckets.resize(index + 1, 0);
        }
        self.buckets[index] += 1;
        self.count += 1;
        self.max = self.max.max(value);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value below which `quantile` (0.0–1.0) of the samples fall (the
    /// upper edge of that bucket, never above the largest sample); zero
    /// when empty.
    pub fn quantile(&self, quantile: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_micros(upper_edge(index)).min(self.max);
            }
        }
        self.max
    }
}

/// Bucket index of a value in microseconds.
fn bucket_of(micros: u64) -> usize {
    if micros < SUB_BUCKETS {
        return micros as usize;
    }
    // The highest set bit picks the doubling, the next 4 bits the bucket in it.
    let shift = 63 - micros.leading_zeros() as u64 - 4;
    let sub = (micros >> shift) - SUB_BUCKETS; // 0..16
    (SUB_BUCKETS * (shift + 1) + sub) as usize
}

/// The largest value (µs) that falls in bucket `index`.
fn upper_edge(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let shift = index / SUB_BUCKETS - 1;
    let sub = index % SUB_BUCKETS + SUB_BUCKETS;
    ((sub + 1) << shift).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_within_six_percent() {
        for micros in (0..5_000u64).chain([65_535, 1_000_000, 123_456_789]) {
            let index = bucket_of(micros);
            let upper = upper_edge(index);
            assert!(upper >= micros, "{micros} above its bucket's edge {upper}");
            assert!(upper as f64 <= micros as f64 * 1.07 + 1.0, "{micros} -> {upper}");
            if index > 0 {
                assert!(upper_edge(index - 1) < micros, "{micros} belongs to an earlier bucket");
            }
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut histogram = LatencyHistogram::default();
        assert_eq!(histogram.quantile(0.5), Duration::ZERO);
        for micros in 1..=1000u64 {
            histogram.record(Duration::from_micros(micros));
        }
        let p50 = histogram.quantile(0.5).as_micros() as f64;
        let p99 = histogram.quantile(0.99).as_micros() as f64;
        assert!((500.0..=535.0).contains(&p50), "p50 {p50}");
        assert!((990.0..=1060.0).contains(&p99), "p99 {p99}");
        assert_eq!(histogram.count(), 1000);
        assert_eq!(histogram.quantile(1.0), Duration::from_micros(1000), "never above the largest sample");
    }
}

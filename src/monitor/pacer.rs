//! At most N new connections per second, for every N; and the queue of
//! rooms waiting for their turn ([`ConnectQueue`]).
//!
//! A token bucket, sans-IO: tokens fill at `rate` per second, a connection
//! takes one, and the bucket holds little more than one tick's worth, so a
//! pacer that was idle does not release a burst. Fractions carry over from one
//! tick to the next: at 250 per second and a 10 ms tick, ticks release
//! 2, 3, 2, 3, … connections, and at 1 per second one tick in a hundred
//! releases one. (Rounding each tick up to a whole connection would make
//! any rate below 100 per second run at 100.)
//!
//! Small steps matter too: rooms that join in the same millisecond have
//! their heartbeats due in the same millisecond, forever after, and a
//! burst of thousands makes the last ones late.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The pacer never wakes more often than this.
pub(crate) const TICK: Duration = Duration::from_millis(10);

#[derive(Clone, Debug)]
pub(crate) struct Pacer {
    /// Connections per second.
    rate: f64,
    /// Connections allowed now (fractions included).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Option<Instant>,
}

impl Pacer {
    /// `rate` connections per second (above 0). The first one may go at once.
    pub(crate) fn new(rate: f64) -> Self {
        Pacer { rate, tokens: 1.0, updated: None }
    }

    /// The most tokens the bucket holds: one tick's worth, and room for the
    /// fraction left over from the tick before.
    fn capacity(&self) -> f64 {
        self.rate * TICK.as_secs_f64() + 1.0
    }

    /// How many of `wanted` connections may start at `now`; they are taken.
    pub(crate) fn take(&mut self, now: Instant, wanted: usize) -> usize {
        if let Some(updated) = self.updated {
            let earned = now.saturating_duration_since(updated).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + earned).min(self.capacity());
        }
        self.updated = Some(now);
        let taken = (self.tokens.floor() as usize).min(wanted);
        self.tokens -= taken as f64;
        taken
    }

    /// When the next connection may start, if one waits: when a whole token
    /// is there, and not sooner than a tick from `now`.
    pub(crate) fn next_turn(&self, now: Instant) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        let wait = Duration::try_from_secs_f64(missing / self.rate).unwrap_or(Duration::from_secs(86_400));
        now + wait.max(TICK)
    }
}

/// Rooms waiting for their turn to connect, first come first served, and
/// the pacer that gives the turns. An entry can go stale while it waits:
/// its room was removed or stopped, or an older entry of it gave it a turn
/// already. Stale entries are dropped without using a turn, so removing
/// rooms delays no other.
#[derive(Clone, Debug)]
pub(crate) struct ConnectQueue {
    rooms: VecDeque<u64>,
    pacer: Pacer,
}

impl ConnectQueue {
    /// Turns at `rate` a second (see [`Pacer::new`]).
    pub(crate) fn new(rate: f64) -> Self {
        ConnectQueue { rooms: VecDeque::new(), pacer: Pacer::new(rate) }
    }

    pub(crate) fn push(&mut self, room: u64) {
        self.rooms.push_back(room);
    }

    pub(crate) fn clear(&mut self) {
        self.rooms.clear();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// The room whose turn it is at `now`, if the pacer allows one now;
    /// `wants_turn` says whether a room still waits for one.
    pub(crate) fn next(&mut self, now: Instant, mut wants_turn: impl FnMut(u64) -> bool) -> Option<u64> {
        while self.rooms.front().is_some_and(|&room| !wants_turn(room)) {
            self.rooms.pop_front();
        }
        if self.rooms.is_empty() || self.pacer.take(now, 1) == 0 {
            return None;
        }
        self.rooms.pop_front()
    }

    /// When the pacer allows the next turn (see [`Pacer::next_turn`]).
    pub(crate) fn next_turn(&self, now: Instant) -> Instant {
        self.pacer.next_turn(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a pacer with `waiting` connections on a fake clock, waking when
    /// it asks to; returns when each connection started, from the start.
    fn start_times(rate: f64, waiting: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut pacer = Pacer::new(rate);
        let (mut now, mut started) = (start, Vec::new());
        for _ in 0..1_000_000 {
            let n = pacer.take(now, waiting - started.len());
            started.extend(std::iter::repeat_n(now - start, n));
            if started.len() == waiting {
                return started;
            }
            now = pacer.next_turn(now);
        }
        panic!("the pacer never let {waiting} connections through");
    }

    #[test]
    fn one_per_second_takes_29_seconds_for_30_rooms() {
        let times = start_times(1.0, 30);
        assert_eq!(times[0], Duration::ZERO, "the first goes at once");
        let last = times[29].as_secs_f64();
        assert!((29.0..29.1).contains(&last), "the 30th started at {last} s");
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(990), "too close: {pair:?}");
        }
    }

    #[test]
    fn fractions_carry_over_so_250_per_second_is_250() {
        let times = start_times(250.0, 2_500);
        let last = times[2_499].as_secs_f64();
        assert!((9.9..10.1).contains(&last), "2,500 connections took {last} s at 250/s");
        // The first second: the first at once, then 2.5 a tick for 99 ticks.
        let in_first_second = times.iter().filter(|t| t.as_secs_f64() < 1.0).count();
        assert!((247..=251).contains(&in_first_second), "{in_first_second} in the first second");
    }

    #[test]
    fn an_idle_pacer_does_not_release_a_burst() {
        let start = Instant::now();
        let mut pacer = Pacer::new(200.0);
        assert_eq!(pacer.take(start, 1), 1);
        // An hour later, a crowd: a tick's worth goes now, not 720,000.
        assert_eq!(pacer.take(start + Duration::from_secs(3600), 10_000), 3);
        assert_eq!(pacer.next_turn(start), start + TICK, "never more often than a tick");
    }

    #[test]
    fn rooms_removed_while_queued_use_no_turns() {
        let start = Instant::now();
        let mut queue = ConnectQueue::new(1.0);
        for room in 1..=11 {
            queue.push(room);
        }
        // Rooms 2 to 10 are removed while they wait.
        let waits = |room: u64| room == 1 || room == 11;
        assert_eq!(queue.next(start, waits), Some(1));
        assert_eq!(queue.next(start, waits), None, "one a second");
        let turn = queue.next_turn(start);
        assert_eq!(turn, start + Duration::from_secs(1));
        assert_eq!(queue.next(turn, waits), Some(11), "the next turn is room 11's, not nine turns later");
        assert!(queue.is_empty());
    }
}

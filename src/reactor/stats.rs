//! Counters that show what the loop is doing.
//!
//! A learner can watch them move; a benchmark divides them by the number of
//! messages to get "syscalls per message". They are plain integers updated
//! inline: the loop is single-threaded, so no atomics are needed.

use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Loop iterations (one `poll` each).
    pub iterations: u64,
    /// Readiness events returned by `poll`.
    pub events: u64,
    /// `poll` calls that returned because a timeout expired with no event.
    pub poll_timeouts: u64,
    /// `read`/`recv` calls on connections (including those that would block).
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
    /// Wake-ups from other threads.
    pub wakeups: u64,
}

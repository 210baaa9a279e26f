//! A connection's timer for a deadline that keeps moving.
//!
//! An idle timeout moves later with every read, a heartbeat with every
//! beat. Cancelling and re-adding a timer each time costs a few cache lines;
//! letting the old timer fire early and re-arming it then costs a wake-up.
//! [`DeadlineTimer`] does neither: it keeps one timer and moves it
//! ([`Context::reschedule_timer`]), and the wheel makes a move to a later
//! deadline a write to one node (see
//! [`TimerWheel::reschedule`](super::timer::TimerWheel::reschedule)).

use std::time::Instant;

use super::dispatcher::Context;
use super::timer::TimerHandle;

/// One timer of one connection, kept pointed at a deadline.
#[derive(Debug, Default)]
pub struct DeadlineTimer {
    /// The pending timer and its deadline.
    armed: Option<(Instant, TimerHandle)>,
}

impl DeadlineTimer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `handle_timer(tag)` come at `deadline` (instead of any earlier
    /// deadline set here), or never, for `None`.
    pub fn set(&mut self, ctx: &mut Context<'_>, deadline: Option<Instant>, tag: u64) {
        match (self.armed, deadline) {
            (Some((armed, _)), Some(deadline)) if armed == deadline => {}
            (Some((_, handle)), Some(deadline)) if ctx.reschedule_timer(handle, deadline) => {
                self.armed = Some((deadline, handle));
            }
            (_, Some(deadline)) => self.armed = Some((deadline, ctx.set_timer_at(deadline, tag))),
            (Some((_, handle)), None) => {
                ctx.cancel_timer(handle);
                self.armed = None;
            }
            (None, None) => {}
        }
    }

    /// Call from `handle_timer`: the timer fired and is no longer pending.
    pub fn fired(&mut self) {
        self.armed = None;
    }

    /// When the timer will fire, if it is set.
    pub fn deadline(&self) -> Option<Instant> {
        self.armed.map(|(deadline, _)| deadline)
    }
}

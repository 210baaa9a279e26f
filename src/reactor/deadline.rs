//! A connection's deadline on one timer that moves lazily.
//!
//! A server connection's deadline moves all the time: later with every
//! request answered, earlier when a request head begins. Rescheduling a
//! timer on every move would cost a timer-wheel update per request;
//! instead a [`DeadlineTimer`] re-arms only when the deadline moves
//! *earlier* than the armed timer. A deadline that moved later is noticed
//! when the timer fires: the dispatcher compares the time with its current
//! deadline and, if that is still ahead, arms again for it.
//!
//! ```text
//!   deadline:  ──────────────D1──────────────D2──▶   (moved later: nothing to do)
//!   timer:     ──────────────▲ fires at D1, now < D2: arm for D2
//! ```

use std::time::Instant;

use super::dispatcher::Context;
use super::timer::TimerHandle;

/// The armed timer of one connection's deadline (see the module docs).
#[derive(Debug)]
pub struct DeadlineTimer {
    /// Passed to `handle_timer` when it fires.
    tag: u64,
    /// When the armed timer fires, and its handle.
    armed: Option<(Instant, TimerHandle)>,
}

impl DeadlineTimer {
    /// A timer, not armed yet, that calls `handle_timer(tag)`.
    pub fn new(tag: u64) -> Self {
        DeadlineTimer { tag, armed: None }
    }

    /// Makes sure the timer fires no later than `deadline`: arms it if it
    /// is not armed, moves it if it would fire later, else leaves it.
    pub fn arm_by(&mut self, ctx: &mut Context<'_>, deadline: Instant) {
        if let Some((armed, handle)) = self.armed {
            if armed <= deadline {
                return;
            }
            ctx.cancel_timer(handle);
        }
        self.armed = Some((deadline, ctx.set_timer_at(deadline, self.tag)));
    }

    /// Call when `handle_timer` gets this timer's tag: it is no longer armed.
    pub fn fired(&mut self) {
        self.armed = None;
    }
}

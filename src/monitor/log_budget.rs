//! A few lines of a kind, then a count.
//!
//! When one cause hits every room at once (Douyu's web site down, with
//! ten thousand rooms to look up), a warning per room would bury the log.
//! A budget lets the first few through in each window, so the log still
//! names rooms, and holds the rest for one line that counts them. Time
//! comes in from the caller, so the rule is tested without a clock.

use std::time::{Duration, Instant};

/// What to do with one occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Say {
    /// Log it as usual.
    Line,
    /// Log it quietly (debug) and count it; `first` is the first held
    /// since the last count was taken: time to arrange for the count to
    /// be said at [`LogBudget::window_end`].
    Held { first: bool },
}

/// At most `per_window` lines in each `window`; the rest are counted.
#[derive(Debug)]
pub(crate) struct LogBudget {
    per_window: u32,
    window: Duration,
    /// When the current window began, and the lines said in it.
    window_start: Option<Instant>,
    said: u32,
    /// Occurrences held since the count was last taken.
    held: u64,
}

impl LogBudget {
    pub(crate) fn new(per_window: u32, window: Duration) -> Self {
        LogBudget { per_window, window, window_start: None, said: 0, held: 0 }
    }

    /// One occurrence at `now`.
    pub(crate) fn take(&mut self, now: Instant) -> Say {
        let ended = self.window_start.is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if ended {
            self.window_start = Some(now);
            self.said = 0;
        }
        if self.said < self.per_window {
            self.said += 1;
            Say::Line
        } else {
            self.held += 1;
            Say::Held { first: self.held == 1 }
        }
    }

    /// When the current window ends (when a held count is due).
    pub(crate) fn window_end(&self, now: Instant) -> Instant {
        self.window_start.map_or(now, |start| start + self.window)
    }

    /// The occurrences held since the last call, for one line.
    pub(crate) fn take_held(&mut self) -> u64 {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_lines_of_a_window_are_said_and_the_rest_counted_once() {
        let start = Instant::now();
        let mut budget = LogBudget::new(3, Duration::from_secs(60));
        let said: Vec<Say> = (0..6).map(|i| budget.take(start + Duration::from_secs(i))).collect();
        assert_eq!(
            said,
            [
                Say::Line,
                Say::Line,
                Say::Line,
                Say::Held { first: true },
                Say::Held { first: false },
                Say::Held { first: false }
            ]
        );
        assert_eq!(budget.window_end(start), start + Duration::from_secs(60), "the count is due when the window ends");
        assert_eq!(budget.take_held(), 3);
        assert_eq!(budget.take_held(), 0, "counted once");
    }

    #[test]
    fn a_new_window_says_lines_again_and_holds_anew() {
        let start = Instant::now();
        let mut budget = LogBudget::new(1, Duration::from_secs(60));
        assert_eq!(budget.take(start), Say::Line);
        assert_eq!(budget.take(start), Say::Held { first: true });
        assert_eq!(budget.take_held(), 1);
        let later = start + Duration::from_secs(61);
        assert_eq!(budget.take(later), Say::Line);
        assert_eq!(budget.take(later), Say::Held { first: true }, "first since the count was taken");
        assert_eq!(budget.window_end(later), later + Duration::from_secs(60));
    }
}

//! A room's broadcast status as the user is told it: live, off air, or a
//! replay loop, built from everything Douyu says, sans-IO.
//!
//! Douyu pushes `rss` only when the status changes, and a change that
//! happens while a room's connection is down is never pushed. So the
//! status comes from three sources: `rss` pushes, the `betard` page (read
//! after every join and every few minutes), and, until either says
//! anything, the `live_stat` of the login. Streams also drop and come back
//! within seconds; telling the user "ended" and "started" for each would
//! be noise. The rules (aiodouyu's, the most careful monitor seen):
//!
//! | reported | heard | then |
//! |---|---|---|
//! | nothing yet | any status | report it |
//! | live | live | nothing (no duplicates); an end pending is off |
//! | live or loop | offline | an end is pending: report it if nothing but offline is heard for the grace |
//! | offline or loop | live | report live at once |
//! | live or offline | loop | report the loop at once |
//! | any | the login's `live_stat` | nothing reported: shown (`/rooms`) until something else is heard |
//!
//! The grace is [`MonitorConfig::live_grace`](super::MonitorConfig::live_grace),
//! 90 s by default. A report says since when: the broadcast's start
//! (`show_time` from `betard`) if known, else when it was heard; an end
//! says how long the broadcast lasted.

use std::time::{Duration, Instant};

use crate::douyu::LiveStatus;

/// Where a status came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// An `rss` push.
    Push,
    /// The `betard` page.
    Web,
    /// The login's `live_stat`.
    Login,
}

impl Source {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Source::Push => "rss",
            Source::Web => "web",
            Source::Login => "login",
        }
    }
}

/// A status change to tell the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) status: LiveStatus,
    /// Unix seconds: when the broadcast started, or when this was heard.
    pub(crate) since: u64,
    pub(crate) source: Source,
    /// For an end: how long the broadcast it ends lasted, if known.
    pub(crate) lasted: Option<Duration>,
}

/// One room's status.
#[derive(Clone, Debug)]
pub(crate) struct LiveTracker {
    /// How long a stream may be off before its end is reported.
    grace: Duration,
    /// The last report.
    reported: Option<Report>,
    /// Offline was heard at this instant (and Unix second) from this
    /// source, after live or a loop; reported once the grace passes with
    /// nothing else heard.
    pending_end: Option<(Instant, u64, Source)>,
    /// What the login said (its reliability is unconfirmed: shown, never
    /// reported).
    login: Option<LiveStatus>,
}

impl LiveTracker {
    /// A room not heard of yet, whose ends are reported after `grace`.
    pub(crate) fn new(grace: Duration) -> Self {
        LiveTracker { grace, reported: None, pending_end: None, login: None }
    }

    /// The status the user was last told.
    pub(crate) fn reported(&self) -> Option<Report> {
        self.reported
    }

    /// The best guess now: what was reported, else what the login said.
    pub(crate) fn current(&self) -> Option<LiveStatus> {
        self.reported.map(|report| report.status).or(self.login)
    }

    /// `status` was heard from `source` at `now` (Unix second `now_unix`);
    /// `show_time` is the broadcast's start if the source knows it. Returns
    /// a report if the user should hear of it now.
    pub(crate) fn heard(
        &mut self,
        status: LiveStatus,
        source: Source,
        show_time: Option<u64>,
        now: Instant,
        now_unix: u64,
    ) -> Option<Report> {
        if source == Source::Login {
            self.login = Some(status);
            return None;
        }
        let reported = self.reported.map(|report| report.status);
        match (reported, status) {
            (Some(LiveStatus::Live), LiveStatus::Live) | (Some(LiveStatus::Loop), LiveStatus::Loop) => {
                self.pending_end = None;
                // The same broadcast: learn its start if this source knows it.
                if let (Some(report), Some(start)) = (self.reported.as_mut(), show_time) {
                    report.since = start;
                }
                None
            }
            (Some(LiveStatus::Offline), LiveStatus::Offline) => None,
            (Some(LiveStatus::Live | LiveStatus::Loop), LiveStatus::Offline) => {
                self.pending_end.get_or_insert((now, now_unix, source));
                None
            }
            _ => {
                self.pending_end = None;
                let lasted = None;
                self.report(Report { status, since: show_time.unwrap_or(now_unix), source, lasted })
            }
        }
    }

    /// Reports a pending end once its grace has passed.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> Option<Report> {
        let (_, heard_unix, source) = self.pending_end.filter(|(heard, ..)| now >= *heard + self.grace)?;
        self.pending_end = None;
        let lasted = self.reported.map(|report| Duration::from_secs(heard_unix.saturating_sub(report.since)));
        self.report(Report { status: LiveStatus::Offline, since: heard_unix, source, lasted })
    }

    /// When [`on_timeout`](Self::on_timeout) has work to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending_end.map(|(heard, ..)| heard + self.grace)
    }

    fn report(&mut self, report: Report) -> Option<Report> {
        self.reported = Some(report);
        Some(report)
    }
}

/// "2h13m", "5m", "42s": how long a broadcast lasted, for a person.
pub(crate) fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, _) => format!("{m}m"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LiveStatus::*;

    const GRACE: Duration = crate::monitor::DEFAULT_LIVE_GRACE;

    struct Clock {
        start: Instant,
        secs: u64,
    }

    impl Clock {
        fn new() -> Self {
            Clock { start: Instant::now(), secs: 0 }
        }
        fn now(&self) -> (Instant, u64) {
            (self.start + Duration::from_secs(self.secs), 1_790_000_000 + self.secs)
        }
    }

    fn hear(tracker: &mut LiveTracker, clock: &Clock, status: LiveStatus, source: Source) -> Option<LiveStatus> {
        let (now, unix) = clock.now();
        tracker.heard(status, source, None, now, unix).map(|report| report.status)
    }

    #[test]
    fn the_first_status_heard_is_reported_whatever_it_is() {
        let clock = Clock::new();
        for status in [Live, Offline, Loop] {
            let mut tracker = LiveTracker::new(GRACE);
            assert_eq!(hear(&mut tracker, &clock, status, Source::Web), Some(status));
        }
    }

    #[test]
    fn live_again_is_not_reported_twice() {
        let clock = Clock::new();
        let mut tracker = LiveTracker::new(GRACE);
        assert_eq!(hear(&mut tracker, &clock, Live, Source::Push), Some(Live));
        assert_eq!(hear(&mut tracker, &clock, Live, Source::Web), None);
        assert_eq!(hear(&mut tracker, &clock, Live, Source::Push), None);
    }

    #[test]
    fn a_drop_and_return_within_the_grace_is_not_an_end_and_a_start() {
        let mut clock = Clock::new();
        let mut tracker = LiveTracker::new(GRACE);
        hear(&mut tracker, &clock, Live, Source::Push);
        clock.secs = 100;
        assert_eq!(hear(&mut tracker, &clock, Offline, Source::Push), None, "not yet: it may come back");
        clock.secs = 160;
        assert_eq!(tracker.on_timeout(clock.now().0), None);
        assert_eq!(hear(&mut tracker, &clock, Live, Source::Push), None, "back within 90 s: nothing happened");
        assert_eq!(tracker.next_deadline(), None);
    }

    #[test]
    fn an_end_is_reported_once_the_grace_passes_with_how_long_it_lasted() {
        let mut clock = Clock::new();
        let mut tracker = LiveTracker::new(GRACE);
        let (now, unix) = clock.now();
        tracker.heard(Live, Source::Web, Some(unix - 3600), now, unix);
        clock.secs = 4_380;
        hear(&mut tracker, &clock, Offline, Source::Push);
        clock.secs += 30;
        assert_eq!(hear(&mut tracker, &clock, Offline, Source::Web), None, "offline again: the same pending end");
        let deadline = tracker.next_deadline().unwrap();
        assert_eq!(deadline, clock.start + Duration::from_secs(4_380) + GRACE, "counted from the first offline");
        let report = tracker.on_timeout(deadline).unwrap();
        assert_eq!(report.status, Offline);
        assert_eq!(report.lasted, Some(Duration::from_secs(3600 + 4_380)));
        assert_eq!(human_duration(report.lasted.unwrap()), "2h13m");
        assert_eq!(tracker.on_timeout(deadline + GRACE), None, "once");
    }

    #[test]
    fn the_grace_is_the_trackers_own() {
        let mut clock = Clock::new();
        let mut tracker = LiveTracker::new(Duration::from_secs(2));
        hear(&mut tracker, &clock, Live, Source::Push);
        hear(&mut tracker, &clock, Offline, Source::Push);
        assert_eq!(tracker.next_deadline(), Some(clock.now().0 + Duration::from_secs(2)));
        clock.secs = 1;
        assert_eq!(tracker.on_timeout(clock.now().0), None);
        clock.secs = 2;
        assert_eq!(tracker.on_timeout(clock.now().0).map(|report| report.status), Some(Offline));
    }

    #[test]
    fn an_end_says_which_source_told_it() {
        let mut clock = Clock::new();
        for source in [Source::Web, Source::Push] {
            let mut tracker = LiveTracker::new(GRACE);
            hear(&mut tracker, &clock, Live, Source::Push);
            hear(&mut tracker, &clock, Offline, source);
            clock.secs += 100;
            let report = tracker.on_timeout(clock.now().0).expect("the end, after the grace");
            assert_eq!(report.source, source);
        }
    }

    #[test]
    fn a_loop_is_reported_at_once_and_live_after_it_too() {
        let clock = Clock::new();
        let mut tracker = LiveTracker::new(GRACE);
        hear(&mut tracker, &clock, Live, Source::Push);
        assert_eq!(hear(&mut tracker, &clock, Loop, Source::Push), Some(Loop));
        assert_eq!(hear(&mut tracker, &clock, Live, Source::Push), Some(Live));
    }

    #[test]
    fn the_login_is_shown_until_something_better_is_heard_but_never_reported() {
        let clock = Clock::new();
        let mut tracker = LiveTracker::new(GRACE);
        assert_eq!(hear(&mut tracker, &clock, Offline, Source::Login), None);
        assert_eq!(tracker.current(), Some(Offline));
        assert_eq!(hear(&mut tracker, &clock, Live, Source::Web), Some(Live), "the first real report");
        assert_eq!(hear(&mut tracker, &clock, Offline, Source::Login), None);
        assert_eq!(tracker.current(), Some(Live), "a login does not overrule");
    }

    #[test]
    fn a_late_start_time_is_learned_without_a_new_report() {
        let clock = Clock::new();
        let mut tracker = LiveTracker::new(GRACE);
        hear(&mut tracker, &clock, Live, Source::Push);
        let (now, unix) = clock.now();
        assert_eq!(tracker.heard(Live, Source::Web, Some(unix - 600), now, unix), None);
        assert_eq!(tracker.reported().unwrap().since, unix - 600);
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human_duration(Duration::from_secs(42)), "42s");
        assert_eq!(human_duration(Duration::from_secs(300)), "5m");
        assert_eq!(human_duration(Duration::from_secs(7_980)), "2h13m");
    }
}

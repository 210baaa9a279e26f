//! Each room's live status over time: when it is live, off air, or playing
//! a replay loop, and since when. The Douyu side pushes `rss` and fills
//! `loginres`'s `live_stat` from it; the web side answers `betard` from it;
//! so the two always agree.
//!
//! Sans-IO, like `traffic`: the board is built with the moment the
//! simulator started (an `Instant`, and the wall clock then), and every
//! question passes in `now`. Nothing here reads a clock.
//!
//! # The schedule
//!
//! With a period of zero (the default) every room is live for ever, its
//! show started a while before the simulator did.
//!
//! With a period `P`, time is cut into epochs of length `P`, shifted by a
//! per-room phase so that rooms do not all change at once. Each epoch is
//! one broadcast, drawn from the room's seed and the epoch's number alone:
//!
//! | part of the epoch | status |
//! |---|---|
//! | from its start to `a`, 5–25 % in | off air: offline, or (1 in 3) a replay loop |
//! | `a` to `b`, `b` 65–95 % in | live |
//! | `P / 10` in the middle of `a..b`, in 1 epoch of 4 | offline: the stream dropped and came back |
//! | `b` to the end | off air, as the next epoch's start says |
//!
//! So every status holds for at least `P / 10`, and any moment's status is
//! found in constant time from three epochs (this one and its neighbours),
//! whatever moment is asked about: no history is kept, and the web side can
//! ask about any room without creating anything.
//!
//! `show_time` is when the room last went live (Unix seconds): the start of
//! the live part it is in, or of the last one before.
//!
//! # Setting a status by hand
//!
//! [`StatusBoard::set`] makes a room's status change now (for tests that
//! need a change at a chosen moment). It holds until the schedule's own
//! next change (for ever with a period of zero); then the schedule takes
//! over again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::douyu::LiveStatus;
use crate::rng::{Rng, derive_seed};

/// Keeps status draws apart from the room's message stream, which is
/// seeded from the same seed and room id.
const SALT: u64 = 0x5354_4154_5553; // "STATUS"

/// With a period of zero, a show started up to this long before the
/// simulator did.
const ALWAYS_LIVE_SINCE_MS: u64 = 3 * 60 * 60 * 1000;

/// A room's status at some moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broadcast {
    pub status: LiveStatus,
    /// When the room last went live, in Unix seconds.
    pub show_time: u64,
}

impl Broadcast {
    /// `rss`'s `ss`: 1 while something is shown (live or a loop), else 0.
    pub fn ss(&self) -> u8 {
        u8::from(self.status != LiveStatus::Offline)
    }

    /// `rss`'s `ivl` and `betard`'s `videoLoop`: 1 for a replay loop.
    pub fn ivl(&self) -> u8 {
        u8::from(self.status == LiveStatus::Loop)
    }

    /// `betard`'s `show_status`: 1 while something is shown, 2 when off.
    pub fn show_status(&self) -> u8 {
        if self.status == LiveStatus::Offline { 2 } else { 1 }
    }

    /// `loginres`'s `live_stat`: 1 only while really live. (What Douyu
    /// says during a loop is not known; a loop is no one live.)
    pub fn live_stat(&self) -> u8 {
        u8::from(self.status == LiveStatus::Live)
    }
}

/// A status set by hand, and until when it holds.
#[derive(Clone, Copy, Debug)]
struct Override {
    status: LiveStatus,
    show_time_ms: i64,
    /// The schedule's next change after it was set (`None`: never).
    until_ms: Option<i64>,
}

/// Every room's status: the seeded schedule, and statuses set by hand.
#[derive(Clone, Debug)]
pub struct StatusBoard {
    seed: u64,
    /// The epoch length in ms; 0: always live.
    period_ms: i64,
    start: Instant,
    /// The wall clock at `start`, in Unix ms.
    start_unix_ms: i64,
    overrides: HashMap<u64, Override>,
}

impl StatusBoard {
    /// A board whose time begins at `start`, when the wall clock said
    /// `start_unix` (since the Unix epoch).
    pub fn new(seed: u64, period: Duration, start: Instant, start_unix: Duration) -> Self {
        StatusBoard {
            seed,
            period_ms: period.as_millis().try_into().unwrap_or(i64::MAX),
            start,
            start_unix_ms: start_unix.as_millis().try_into().unwrap_or(i64::MAX),
            overrides: HashMap::new(),
        }
    }

    /// Room `room`'s status at `now`.
    pub fn get(&self, room: u64, now: Instant) -> Broadcast {
        let t = self.ms(now);
        match self.override_at(room, t) {
            Some(set) => self.broadcast(set.status, set.show_time_ms),
            None => {
                let (status, show_time_ms, _) = self.scheduled(room, t);
                self.broadcast(status, show_time_ms)
            }
        }
    }

    /// Makes room `room`'s status `status` from `now` on, until the
    /// schedule's next change. Returns whether that is a change.
    pub fn set(&mut self, room: u64, status: LiveStatus, now: Instant) -> bool {
        let t = self.ms(now);
        self.overrides.retain(|_, set| set.until_ms.is_none_or(|until| t < until));
        let (current, show_time_ms) = match self.override_at(room, t) {
            Some(set) => (set.status, set.show_time_ms),
            None => {
                let (status, show_time_ms, _) = self.scheduled(room, t);
                (status, show_time_ms)
            }
        };
        if current == status {
            return false;
        }
        let show_time_ms = if status == LiveStatus::Live { t } else { show_time_ms };
        let (_, _, until_ms) = self.scheduled(room, t);
        self.overrides.insert(room, Override { status, show_time_ms, until_ms });
        true
    }

    /// The wall clock at `now`, in Unix ms (for `rss`'s time fields).
    pub fn unix_ms(&self, now: Instant) -> u64 {
        (self.start_unix_ms + self.ms(now)).max(0) as u64
    }

    fn ms(&self, now: Instant) -> i64 {
        now.saturating_duration_since(self.start).as_millis().try_into().unwrap_or(i64::MAX)
    }

    fn broadcast(&self, status: LiveStatus, show_time_ms: i64) -> Broadcast {
        Broadcast { status, show_time: (self.start_unix_ms + show_time_ms).div_euclid(1000).max(0) as u64 }
    }

    fn override_at(&self, room: u64, t: i64) -> Option<&Override> {
        self.overrides.get(&room).filter(|set| set.until_ms.is_none_or(|until| t < until))
    }

    /// The schedule at `t` (ms since the start): the status, when the room
    /// last went live, and when the status next changes (`None`: never).
    fn scheduled(&self, room: u64, t: i64) -> (LiveStatus, i64, Option<i64>) {
        let room_seed = derive_seed(self.seed ^ SALT, room);
        if self.period_ms == 0 {
            let since = (room_seed % ALWAYS_LIVE_SINCE_MS) as i64;
            return (LiveStatus::Live, -since, None);
        }
        let schedule = Schedule { room_seed, period_ms: self.period_ms };
        let points = schedule.changes_around(t);
        // The first point is the start of the epoch before t's, so one is at or before t.
        let current = points.iter().rposition(|&(at, _)| at <= t).unwrap_or(0);
        let went_live = points[..=current].iter().rev().find(|(_, status)| *status == LiveStatus::Live);
        let next = points.get(current + 1).map(|&(at, _)| at);
        (points[current].1, went_live.map_or(t, |&(at, _)| at), next)
    }
}

/// One room's epochs (see the module docs).
struct Schedule {
    room_seed: u64,
    period_ms: i64,
}

/// A status change: from this moment (ms since the board's start), this status.
type Change = (i64, LiveStatus);

impl Schedule {
    /// The changes of the epoch holding `t` and of its two neighbours, in
    /// order, after the status the first of them starts with.
    fn changes_around(&self, t: i64) -> Vec<Change> {
        let phase = (derive_seed(self.room_seed, u64::MAX) % self.period_ms as u64) as i64;
        let epoch = (t + phase).div_euclid(self.period_ms);
        let mut points = Vec::with_capacity(13);
        points.push(((epoch - 1) * self.period_ms - phase, self.off_air(epoch - 1)));
        for k in epoch - 1..=epoch + 1 {
            let start = k * self.period_ms - phase;
            let mut rng = self.rng(k);
            rng.next_u64(); // the off-air status, drawn by `off_air`
            let live_from = self.period_ms * rng.between(5, 25) as i64 / 100;
            let live_until = self.period_ms * rng.between(65, 95) as i64 / 100;
            points.push((start + live_from, LiveStatus::Live));
            if rng.one_in(4) {
                // At least 40 % of P is live: each side of the drop keeps 15 %.
                let (middle, half_drop) = ((live_from + live_until) / 2, self.period_ms / 20);
                points.push((start + middle - half_drop, LiveStatus::Offline));
                points.push((start + middle + half_drop, LiveStatus::Live));
            }
            points.push((start + live_until, self.off_air(k + 1)));
        }
        points
    }

    /// The status before epoch `k`'s broadcast: offline, or a replay loop.
    fn off_air(&self, k: i64) -> LiveStatus {
        if self.rng(k).one_in(3) { LiveStatus::Loop } else { LiveStatus::Offline }
    }

    fn rng(&self, k: i64) -> Rng {
        Rng::new(derive_seed(self.room_seed, k as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);
    /// 2026-09-27, in Unix seconds.
    const UNIX_START: u64 = 1_790_500_000;

    fn board(period: Duration) -> (StatusBoard, Instant) {
        let start = Instant::now();
        (StatusBoard::new(7, period, start, Duration::from_secs(UNIX_START)), start)
    }

    /// The statuses of `room` every `step` ms for `ms` ms, with changes only.
    fn changes(board: &StatusBoard, start: Instant, room: u64, ms: u64, step: u64) -> Vec<(u64, Broadcast)> {
        let mut seen: Vec<(u64, Broadcast)> = Vec::new();
        for at in (0..ms).step_by(step as usize) {
            let now = board.get(room, start + Duration::from_millis(at));
            if seen.last().is_none_or(|(_, last)| *last != now) {
                seen.push((at, now));
            }
        }
        seen
    }

    #[test]
    fn a_period_of_zero_keeps_every_room_live_since_before_the_start() {
        let (board, start) = board(Duration::ZERO);
        for room in [1, 6979222, u64::MAX] {
            let first = board.get(room, start);
            assert_eq!(first.status, LiveStatus::Live);
            assert!(first.show_time <= UNIX_START && first.show_time >= UNIX_START - 3 * 3600, "{first:?}");
            assert_eq!(board.get(room, start + 1_000_000 * SEC), first, "still the same show");
        }
    }

    #[test]
    fn the_schedule_goes_live_and_off_air_in_turn_at_least_a_tenth_of_a_period_apart() {
        let (board, start) = board(10 * SEC);
        let mut statuses = std::collections::BTreeSet::new();
        for room in 1..=50 {
            let seen = changes(&board, start, room, 200_000, 10);
            assert!(seen.len() >= 40, "room {room}: two changes an epoch at least: {seen:?}");
            for pair in seen.windows(2) {
                let ((at, before), (next_at, after)) = (pair[0], pair[1]);
                assert_ne!(before.status, after.status, "room {room}: only changes are changes");
                // Sampled every 10 ms: a status seen for 990 ms may have lasted 1000.
                assert!(next_at - at >= 990 || at == 0, "room {room}: {before:?} lasted {} ms", next_at - at);
                // Never from one kind of off air to the other: a broadcast lies between.
                assert!(before.status == LiveStatus::Live || after.status == LiveStatus::Live, "room {room}");
                match after.status {
                    LiveStatus::Live => {
                        let changed = (UNIX_START + (next_at - 10) / 1000)..=(UNIX_START + next_at / 1000);
                        assert!(changed.contains(&after.show_time), "a new show: {after:?} at {next_at} ms");
                    }
                    _ => assert_eq!(after.show_time, before.show_time, "the show that ended"),
                }
                statuses.insert(format!("{:?}", after.status));
            }
        }
        assert_eq!(statuses.len(), 3, "live, offline and loop all happen: {statuses:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_rooms_differ() {
        let (a, start_a) = board(5 * SEC);
        let (b, start_b) = board(5 * SEC);
        assert_eq!(changes(&a, start_a, 42, 60_000, 50), changes(&b, start_b, 42, 60_000, 50));
        assert_ne!(changes(&a, start_a, 42, 60_000, 50), changes(&a, start_a, 43, 60_000, 50));
        let other_seed = StatusBoard::new(8, 5 * SEC, start_a, Duration::from_secs(UNIX_START));
        assert_ne!(changes(&a, start_a, 42, 60_000, 50), changes(&other_seed, start_a, 42, 60_000, 50));
    }

    #[test]
    fn any_moment_is_answered_without_history() {
        let (board, start) = board(2 * SEC);
        let far = start + 3_000_000 * SEC;
        let seen = changes(&board, far, 9, 10_000, 10);
        assert!(seen.len() >= 8, "{seen:?}");
        assert_eq!(board.unix_ms(far), (UNIX_START + 3_000_000) * 1000);
    }

    #[test]
    fn a_status_set_by_hand_holds_until_the_schedules_next_change() {
        let (mut board, start) = board(Duration::ZERO);
        let at = start + 100 * SEC;
        let before = board.get(5, at);
        assert!(board.set(5, LiveStatus::Offline, at));
        assert!(!board.set(5, LiveStatus::Offline, at + SEC), "no change: nothing set");
        let off = board.get(5, at + 1_000_000 * SEC);
        assert_eq!(off, Broadcast { status: LiveStatus::Offline, show_time: before.show_time }, "for ever");
        assert_eq!(board.get(6, at).status, LiveStatus::Live, "other rooms keep theirs");
        assert!(board.set(5, LiveStatus::Live, at + 2 * SEC));
        assert_eq!(board.get(5, at + 3 * SEC), Broadcast { status: LiveStatus::Live, show_time: UNIX_START + 102 });

        let (mut board, start) = self::board(10 * SEC);
        let seen = changes(&board, start, 5, 100_000, 10);
        let (live_at, _) = *seen.iter().find(|(at, b)| *at > 0 && b.status == LiveStatus::Live).unwrap();
        let live_at = start + Duration::from_millis(live_at);
        let (next_change, _) = *seen.iter().find(|(at, _)| start + Duration::from_millis(*at) > live_at).unwrap();
        let next_change = start + Duration::from_millis(next_change);
        assert!(board.set(5, LiveStatus::Loop, live_at));
        assert_eq!(board.get(5, next_change - Duration::from_millis(10)).status, LiveStatus::Loop);
        let unset = StatusBoard::new(7, 10 * SEC, start, Duration::from_secs(UNIX_START));
        assert_eq!(board.get(5, next_change), unset.get(5, next_change), "the schedule again");
    }

    #[test]
    fn fields_say_what_douyu_says() {
        let live = Broadcast { status: LiveStatus::Live, show_time: 1 };
        let offline = Broadcast { status: LiveStatus::Offline, ..live };
        let replay = Broadcast { status: LiveStatus::Loop, ..live };
        let fields = |b: Broadcast| (b.ss(), b.ivl(), b.show_status(), b.live_stat());
        assert_eq!(fields(live), (1, 0, 1, 1));
        assert_eq!(fields(offline), (0, 0, 2, 0));
        assert_eq!(fields(replay), (1, 1, 1, 0));
        for b in [live, offline, replay] {
            assert_eq!(LiveStatus::from_fields(Some(b.ss()), Some(b.ivl())), Some(b.status), "{b:?}");
        }
    }
}

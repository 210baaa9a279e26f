//! Rooms looked up on Douyu's web site, on the reactor: each room's real id
//! (a vanity number joins nothing on the barrage server) and its live
//! status (changes that happen while a room is disconnected are never
//! pushed), read with the reactor's HTTP client.
//!
//! - **Ids.** A room's page (`/{id}`) is read from the mobile site, and from
//!   the desktop site if that fails; the log says `6657 → 6979222 (room
//!   name, owner)`. A room waits for its first look-up at most
//!   `look_up_wait` (5 s; the life cycle's `Resolving`), then joins with the id as written
//!   and says so; a failed look-up is tried again with backoff, and an id
//!   found later makes the room join again with it. Two names of one room
//!   (a vanity number and its real id) make one connection: the one
//!   found second stops, and says so. Look-ups block no other room: they
//!   run a few at a time, paced (`fetch::Fetcher`), before any status read
//!   ([`Priority::Urgent`]). A look-up's `timeout` starts when it is sent,
//!   so with thousands of rooms queued each still gets its full time, and
//!   only a failed answer sends it to the desktop site.
//! - **Status.** `betard/{rid}` is read after every join and then every
//!   `status_check`; what it says goes to the room's [`LiveTracker`], with
//!   the `rss` pushes, and a change becomes one output line of type
//!   [`LIVE_TYPE`]. A room has at most one read waiting
//!   ([`Priority::Background`]), so when rooms outnumber what the fetcher
//!   starts in a `status_check` (20 a second), reads do not pile up: each
//!   room is read about every rooms ÷ 20 s instead. (The fetcher has no
//!   cancel: a room removed while its fetches wait leaves them to run, and
//!   their answers, for a room that is gone, are dropped; a SIGHUP can thus
//!   add a room's worth of stale fetches, no more.)

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::douyu::web::{self, DESKTOP_USER_AGENT, DOUYU_REFERER, MOBILE_USER_AGENT};
use crate::douyu::{LiveStatus, Message, stt};
use crate::fetch::Priority;
use crate::http::{Request, Response};
use crate::plural::plural;
use crate::reactor::{Reactor, TimerHandle};

use super::MonitorState;
use super::backoff::Backoff;
use super::lifecycle::Event;
use super::live::{Report, Source, human_duration};
use super::log_budget::Say;
use super::visible::visible;

/// Rooms named a minute when their id cannot be looked up; the rest are
/// counted in one line (Douyu's site down fails every room at once).
pub(crate) const LOOK_UP_WARNINGS: u32 = 5;

/// The type of the output lines that report a room's live status; it
/// cannot collide with Douyu's own types, which have no dots.
pub const LIVE_TYPE: &str = "barrage.live";

/// What a room knows from the web site, and where its look-ups are.
#[derive(Debug)]
pub(crate) struct RoomWeb {
    pub(crate) name: Option<String>,
    pub(crate) owner: Option<String>,
    pub(crate) category: Option<String>,
    /// Failed id look-ups in a row.
    id_backoff: Backoff,
    /// A status read is queued or under way.
    status_in_flight: bool,
    /// The next periodic status read, while the room is watched.
    status_timer: Option<TimerHandle>,
    /// The next id look-up, after one failed.
    look_up_timer: Option<TimerHandle>,
}

impl RoomWeb {
    pub(crate) fn new() -> Self {
        RoomWeb {
            name: None,
            owner: None,
            category: None,
            id_backoff: Backoff::with_limits(Duration::from_secs(5), Duration::from_secs(600)),
            status_in_flight: false,
            status_timer: None,
            look_up_timer: None,
        }
    }

    /// Cancels its timers (the room is forgotten: a callback left on the
    /// reactor would act on a room added again under the same id).
    pub(crate) fn cancel_timers(&mut self, reactor: &mut Reactor) {
        for timer in [self.status_timer.take(), self.look_up_timer.take()].into_iter().flatten() {
            reactor.remove_timeout(timer);
        }
    }
}

impl MonitorState {
    /// Looks up `room`'s real id: the mobile page first, then the desktop
    /// one.
    pub(crate) fn look_up_id(this: &Rc<RefCell<MonitorState>>, reactor: &mut Reactor, room: u64) {
        Self::read_room_page(this, reactor, room, true);
    }

    fn read_room_page(this: &Rc<RefCell<MonitorState>>, reactor: &mut Reactor, room: u64, mobile: bool) {
        let Some((fetcher, request, timeout)) = this.borrow().web_request(|web| {
            let (base, agent) =
                if mobile { (&web.mobile_base, MOBILE_USER_AGENT) } else { (&web.desktop_base, DESKTOP_USER_AGENT) };
            let url = base.append_path(&web::room_page_path(room)).ok()?;
            Some(Request::get(url).header("User-Agent", agent).header("Referer", DOUYU_REFERER))
        }) else {
            return;
        };
        let weak = Rc::downgrade(this);
        // Urgent: the room waits on its id to join the right room.
        fetcher.fetch(reactor, request, Priority::Urgent, timeout, move |reactor, result| {
            let Some(this) = weak.upgrade() else { return };
            let found = result.and_then(Response::error_for_status).map(|page| web::parse_room_page(&page.text()));
            match found {
                Ok(Some(info)) => Self::id_found(&this, reactor, room, info),
                _ if mobile => Self::read_room_page(&this, reactor, room, false),
                Ok(None) => Self::id_not_found(&this, reactor, room, "the room's page names no room".into()),
                Err(error) => Self::id_not_found(&this, reactor, room, error.to_string()),
            }
        });
    }

    fn id_found(this: &Rc<RefCell<MonitorState>>, reactor: &mut Reactor, room: u64, info: web::RoomInfo) {
        let event = {
            let mut state = this.borrow_mut();
            // Two names of one room (6657 and 6979222, or two addresses):
            // one connection, or every message would be written twice.
            let watched_as = state
                .rooms
                .iter()
                .find(|&(&other, slot)| other != room && !slot.is_stopped() && slot.id(other) == info.rid);
            let watched_as = watched_as.map(|(&other, _)| other);
            let Some(slot) = state.rooms.get_mut(&room) else { return };
            let before = slot.id(room);
            slot.real_id = Some(info.rid);
            // The names are the streamer's own: made safe for a terminal.
            let about = match (info.name.as_deref().map(visible), info.owner.as_deref().map(visible)) {
                (Some(name), Some(owner)) => format!(" ({name}, {owner})"),
                (Some(one), None) | (None, Some(one)) => format!(" ({one})"),
                (None, None) => String::new(),
            };
            if info.rid != room {
                log::info!("room {room} → {}{about}", info.rid);
            } else {
                log::debug!("room {room} is a real id{about}");
            }
            if let Some(web) = slot.web.as_mut() {
                web.id_backoff.reset();
                web.name = info.name.or(web.name.take());
                web.owner = info.owner.or(web.owner.take());
            }
            if let Some(other) = watched_as {
                log::warn!(
                    "room {room} is room {}, which is watched already (as {other}): not joining it twice",
                    info.rid
                );
                Event::Shutdown
            } else if before != info.rid {
                Event::IdChanged
            } else {
                Event::IdResolved
            }
        };
        MonitorState::handle(this, reactor, room, event);
        // A first answer with a new id: also the end of the wait.
        MonitorState::handle(this, reactor, room, Event::IdResolved);
    }

    fn id_not_found(this: &Rc<RefCell<MonitorState>>, reactor: &mut Reactor, room: u64, why: String) {
        let delay = {
            let mut state = this.borrow_mut();
            let random = state.rng.next_f64();
            let Some(web) = state.rooms.get_mut(&room).and_then(|slot| slot.web.as_mut()) else { return };
            let first = web.id_backoff.failures() == 0;
            let delay = web.id_backoff.ceiling().mul_f64(0.5 + random / 2.0);
            web.id_backoff.next_delay(random);
            let when = format!("trying again in {:.0} s", delay.as_secs_f64());
            let mut count_later = None;
            if first {
                let now = Instant::now();
                match state.look_up_warnings.take(now) {
                    Say::Line => {
                        log::warn!("room {room}: cannot look up its real id ({why}); joining it as written, {when}")
                    }
                    Say::Held { first } => {
                        log::debug!("room {room}: cannot look up its real id ({why}); joining it as written, {when}");
                        count_later = first.then(|| state.look_up_warnings.window_end(now));
                    }
                }
            } else {
                log::debug!("room {room}: cannot look up its real id ({why}); {when}");
            }
            if let Some(at) = count_later {
                let weak = Rc::downgrade(this);
                reactor.call_at(at, move |_| {
                    let Some(this) = weak.upgrade() else { return };
                    let held = this.borrow_mut().look_up_warnings.take_held();
                    log::warn!(
                        "{} could not be looked up either in the last minute; each joins as written and is \
                         tried again (the debug log names them)",
                        plural(held, "more room")
                    );
                });
            }
            delay
        };
        MonitorState::handle(this, reactor, room, Event::IdResolved);
        let mut state = this.borrow_mut();
        let Some(web) = state.rooms.get_mut(&room).and_then(|slot| slot.web.as_mut()) else { return };
        if let Some(timer) = web.look_up_timer.take() {
            reactor.remove_timeout(timer);
        }
        let weak = Rc::downgrade(this);
        web.look_up_timer = Some(reactor.call_later(delay, move |reactor| {
            let Some(this) = weak.upgrade() else { return };
            if let Some(web) = this.borrow_mut().rooms.get_mut(&room).and_then(|slot| slot.web.as_mut()) {
                web.look_up_timer = None;
            }
            Self::look_up_id(&this, reactor, room);
        }));
    }

    /// Reads `room`'s status from `betard`, unless a read is under way or
    /// status checks are off.
    pub(crate) fn check_status(this: &Rc<RefCell<MonitorState>>, reactor: &mut Reactor, room: u64) {
        let Some((fetcher, request, timeout)) = this.borrow_mut().web_request_for(room, |web, id| {
            if web.status_check.is_zero() {
                return None;
            }
            let url = web.desktop_base.append_path(&web::betard_path(id)).ok()?;
            Some(Request::get(url).header("User-Agent", DESKTOP_USER_AGENT).header("Referer", DOUYU_REFERER))
        }) else {
            return;
        };
        let weak = Rc::downgrade(this);
        fetcher.fetch(reactor, request, Priority::Background, timeout, move |reactor, result| {
            let Some(this) = weak.upgrade() else { return };
            let status = result.and_then(Response::error_for_status).map_err(|e| e.to_string());
            Self::status_read(&this, reactor, room, status.and_then(|page| web::parse_betard(&page.text())));
        });
    }

    /// Reads `room`'s status every `status_check` (±10 %, so that rooms
    /// added together spread out), for as long as the room is watched. The
    /// room owns the timer: one chain a room, however often it is added.
    pub(crate) fn check_status_periodically(this: &Rc<RefCell<MonitorState>>, reactor: &mut Reactor, room: u64) {
        let mut state = this.borrow_mut();
        let state = &mut *state;
        let interval = state.config.web.as_ref().map_or(Duration::ZERO, |web| web.status_check);
        let Some(web) = state.rooms.get_mut(&room).and_then(|slot| slot.web.as_mut()) else { return };
        if interval.is_zero() || web.status_timer.is_some() {
            return;
        }
        let weak = Rc::downgrade(this);
        let delay = interval.mul_f64(0.9 + state.rng.next_f64() / 5.0);
        web.status_timer = Some(reactor.call_later(delay, move |reactor| {
            let Some(this) = weak.upgrade() else { return };
            let watched = {
                let mut state = this.borrow_mut();
                let Some(slot) = state.rooms.get_mut(&room) else { return };
                if let Some(web) = slot.web.as_mut() {
                    web.status_timer = None;
                }
                slot.conn.is_some() || !slot.is_stopped()
            };
            if watched {
                Self::check_status_periodically(&this, reactor, room);
                Self::check_status(&this, reactor, room);
            }
        }));
    }

    fn status_read(
        this: &Rc<RefCell<MonitorState>>,
        reactor: &mut Reactor,
        room: u64,
        status: Result<web::Betard, String>,
    ) {
        let mut state = this.borrow_mut();
        let Some(slot) = state.rooms.get_mut(&room) else { return };
        if let Some(web) = slot.web.as_mut() {
            web.status_in_flight = false;
        }
        let betard = match status {
            Ok(betard) => betard,
            Err(why) => {
                log::debug!("room {room}: cannot read its status: {why}");
                return;
            }
        };
        if let Some(web) = slot.web.as_mut() {
            web.name = betard.room_name.clone().or(web.name.take());
            web.owner = betard.owner.clone().or(web.owner.take());
            web.category = betard.category.clone().or(web.category.take());
        }
        let show_time = (betard.status != LiveStatus::Offline).then_some(betard.show_time).flatten();
        state.heard_status(reactor, room, betard.status, Source::Web, show_time);
    }

    /// Feeds a status to `room`'s tracker; writes the report if there is
    /// one, and keeps the tracker's timer on its pending end.
    pub(crate) fn heard_status(
        &mut self,
        reactor: &mut Reactor,
        room: u64,
        status: LiveStatus,
        source: Source,
        show_time: Option<u64>,
    ) {
        let Some(slot) = self.rooms.get_mut(&room) else { return };
        let report = slot.live.heard(status, source, show_time, Instant::now(), unix_now());
        let deadline = slot.live.next_deadline();
        if let Some(report) = report {
            self.write_live_line(reactor, room, report);
        }
        self.arm_live_timer(reactor, room, deadline);
    }

    /// Keeps `room`'s status timer on the tracker's pending end.
    fn arm_live_timer(&mut self, reactor: &mut Reactor, room: u64, deadline: Option<Instant>) {
        let Some(slot) = self.rooms.get_mut(&room) else { return };
        if let Some(timer) = slot.live_timer.take() {
            reactor.remove_timeout(timer);
        }
        let Some(deadline) = deadline else { return };
        let weak = self.this.clone();
        slot.live_timer = Some(reactor.call_at(deadline, move |reactor| {
            let Some(this) = weak.upgrade() else { return };
            let mut state = this.borrow_mut();
            let Some(slot) = state.rooms.get_mut(&room) else { return };
            slot.live_timer = None;
            if let Some(report) = slot.live.on_timeout(Instant::now()) {
                state.write_live_line(reactor, room, report);
            }
        }));
    }

    /// Writes one status line: `{"type":"barrage.live","fields":{"status":…,
    /// "since":…,"source":…,…}}`, or `[room] ● live now` as text.
    fn write_live_line(&mut self, reactor: &mut Reactor, room: u64, report: Report) {
        let Some(slot) = self.rooms.get(&room) else { return };
        let id = slot.id(room);
        let status = match report.status {
            LiveStatus::Live => "live",
            LiveStatus::Offline => "offline",
            LiveStatus::Loop => "loop",
        };
        let mut body = String::new();
        let id_text = id.to_string();
        let since = report.since.to_string();
        let mut fields = vec![("type", LIVE_TYPE), ("rid", &id_text), ("status", status), ("since", &since)];
        fields.push(("source", report.source.name()));
        let lasted = report.lasted.map(|lasted| lasted.as_secs().to_string());
        let lasted_text = report.lasted.map(human_duration);
        if let (Some(secs), Some(text)) = (&lasted, &lasted_text) {
            fields.push(("lasted_secs", secs));
            fields.push(("lasted", text));
        }
        if let Some(web) = &slot.web {
            for (key, value) in [("room_name", &web.name), ("owner", &web.owner), ("category", &web.category)] {
                if let Some(value) = value {
                    fields.push((key, value));
                }
            }
        }
        for (key, value) in fields {
            stt::push_field(&mut body, key, value);
        }
        self.write_message(reactor, id, unix_now() * 1000, &Message::decode(&body));
    }

    /// The fetcher, a request built by `build` from the web settings, and
    /// its timeout (which counts from when the fetch starts, not from now).
    fn web_request(
        &self,
        build: impl FnOnce(&super::WebLookups) -> Option<Request>,
    ) -> Option<(crate::fetch::Fetcher, Request, Duration)> {
        let fetcher = self.fetcher.clone()?;
        let web = self.config.web.as_ref()?;
        let request = build(web)?;
        Some((fetcher, request, web.timeout))
    }

    /// Like [`web_request`](Self::web_request), for a status read of `room`
    /// (marked under way; none if one already is).
    fn web_request_for(
        &mut self,
        room: u64,
        build: impl FnOnce(&super::WebLookups, u64) -> Option<Request>,
    ) -> Option<(crate::fetch::Fetcher, Request, Duration)> {
        let slot = self.rooms.get(&room)?;
        if slot.web.as_ref().is_none_or(|web| web.status_in_flight) {
            return None;
        }
        let id = slot.id(room);
        let fetch = self.web_request(|web| build(web, id))?;
        if let Some(web) = self.rooms.get_mut(&room).and_then(|slot| slot.web.as_mut()) {
            web.status_in_flight = true;
        }
        Some(fetch)
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::http::Url;
    use crate::monitor::output::Destination;
    use crate::monitor::{Endpoint, Monitor, MonitorConfig, RoomState, WebLookups};
    use crate::sim::{self, SimConfig, SimServer, WebConfig};

    const ROOM: u64 = 100001;
    /// Far below the 30 s the settings allow (set past their check): the
    /// rule is the same, and a test takes seconds.
    const INTERVAL: Duration = Duration::from_millis(400);
    const DEADLINE: Duration = Duration::from_secs(20);

    /// The simulator with its web side, and a monitor that reads statuses
    /// every `INTERVAL` and looks up no id: every web request is a status
    /// read. Over loopback, on one reactor on this thread.
    struct World {
        reactor: Reactor,
        sim: SimServer,
        monitor: Monitor,
    }

    impl World {
        fn start() -> World {
            let mut reactor = Reactor::new().unwrap();
            let sim = SimConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                stats_interval: None,
                web: Some(WebConfig::default()),
                ..SimConfig::default()
            };
            let sim = sim::start(&mut reactor, sim).expect("the simulator starts");
            let base = Url::parse(&sim.web().expect("a web listener").base_url()).unwrap();
            let config = MonitorConfig {
                servers: vec![Endpoint::tcp(sim.local_addr())],
                output: Destination::Null,
                status_interval: Duration::ZERO,
                web: Some(WebLookups::new(Some(base), false, Duration::from_secs(30))),
                ..MonitorConfig::default()
            };
            let monitor = Monitor::start(&mut reactor, config).expect("the monitor starts");
            monitor.state.borrow_mut().config.web.as_mut().unwrap().status_check = INTERVAL;
            World { reactor, sim, monitor }
        }

        /// Runs the loop until the room's state is `state` (`None`: gone);
        /// panics at the deadline.
        fn wait_for(&mut self, state: Option<RoomState>) {
            let monitor = &self.monitor;
            let now =
                |monitor: &Monitor| monitor.rooms().iter().find(|room| room.written == ROOM).map(|room| room.state);
            let reached = self.reactor.run_until(Instant::now() + DEADLINE, |_| now(monitor) == state).unwrap();
            assert!(reached, "timed out waiting for {state:?}: {:#?}", monitor.rooms());
        }

        /// Runs the loop for `time`; returns the status reads answered in it.
        fn status_reads_in(&mut self, time: Duration) -> u64 {
            let web = self.sim.web().unwrap().clone();
            let before = web.requests();
            self.reactor.run_until(Instant::now() + time, |_| false).unwrap();
            web.requests() - before
        }
    }

    #[test]
    fn a_room_removed_and_added_again_reads_its_status_once_per_interval() {
        let mut world = World::start();
        world.monitor.add_room(&mut world.reactor, ROOM);
        world.wait_for(Some(RoomState::Joined));
        // Gone and back before its first check is due: that check must not
        // go on beside the new room's.
        world.monitor.remove_room(&mut world.reactor, ROOM);
        world.wait_for(None);
        world.monitor.add_room(&mut world.reactor, ROOM);
        let window = INTERVAL * 8;
        let reads = world.status_reads_in(window);
        // One at the join, then one every 0.9 to 1.1 intervals (timers
        // never fire early); and the first room's read at its join may be
        // answered late.
        let most = 2 + (window.as_secs_f64() / (0.9 * INTERVAL.as_secs_f64())) as u64;
        assert!((2..=most).contains(&reads), "{reads} status reads in {window:?}, at most {most}");
    }

    #[test]
    fn a_stopped_room_added_again_reads_its_status_every_interval_again() {
        let mut world = World::start();
        world.monitor.add_room(&mut world.reactor, ROOM);
        world.wait_for(Some(RoomState::Joined));
        // Stopped, as the second name of a room watched already is.
        MonitorState::handle(&world.monitor.state, &mut world.reactor, ROOM, Event::Shutdown);
        world.wait_for(Some(RoomState::Stopped));
        // Its next check comes due, finds it stopped, and is the last.
        world.status_reads_in(INTERVAL * 2);
        world.monitor.add_room(&mut world.reactor, ROOM);
        let reads = world.status_reads_in(INTERVAL * 6);
        assert!(reads >= 3, "{reads} status reads in six intervals, not only the one at the join");
    }
}

//! The room daemon behind `barrage watch`: many rooms, one reactor.
//!
//! Each room is one connection driven by a `RoomConn` (in `room.rs`) around
//! a sans-IO `ClientSession`; its life — waiting for a turn, connecting,
//! logging in, joined, backing off, closing, stopped — is the sans-IO state
//! machine in [`lifecycle`], with its rules table. The
//! monitor carries out what the life cycle decides (`driver.rs`):
//!
//! - **Pacing:** new connections start at most `connects_per_second`, so
//!   thousands of rooms do not hit the server (or the machine) at once
//!   (`pacer.rs`).
//! - **Addresses:** a room that fails on one server address tries the next
//!   (every resolved IP of every server) before backing off; names are
//!   resolved on a helper thread and again from time to time (`resolve.rs`).
//! - **Backoff:** exponential with full jitter, 1 s doubling to 60 s, never
//!   giving up; reset after a healthy period (see [`backoff`]).
//! - **Output:** every message is written once, as a whole line; when the
//!   output falls behind, rooms stop reading (see [`output`]).
//! - **Stopping:** read what the sockets hold, log out, write the rest
//!   ([`Monitor::stop`]); once it begins, no room is added or connects.

pub mod backoff;
mod config;
mod counters;
mod driver;
pub mod endpoint;
pub mod format;
mod lifecycle;
mod live;
mod log_budget;
mod lookup;
pub mod metrics;
pub mod output;
mod pacer;
mod resolve;
mod room;
pub mod shard;
mod sink;
pub mod visible;

use log_budget::LogBudget;
use lookup::LOOK_UP_WARNINGS;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::douyu::{LiveStatus, Message, MessageView};
use crate::fetch::{FetchConfig, Fetcher};
use crate::plural::plural;
use crate::reactor::{EntryToken, LoopSender, Reactor, TimerHandle, TlsClientConfig};
use crate::rng::Rng;
use counters::TypeCounts;
use lifecycle::{Lifecycle, State, Timing};
use live::{LiveTracker, Source};
use lookup::RoomWeb;

pub use lookup::LIVE_TYPE;
use output::{Output, OutputClosed, OutputEvent, Unwritten};
use pacer::ConnectQueue;
use resolve::{AddressBook, Answer};

pub use config::{
    DEFAULT_FLUSH_TIMEOUT, DEFAULT_LIVE_GRACE, DEFAULT_LOGOUT_TIMEOUT, DEFAULT_LOOK_UP_WAIT, DEFAULT_SERVERS,
    DEFAULT_STATUS_CHECK, DEFAULT_WEB_TIMEOUT, ForeignChat, MonitorConfig, Resolution, StartError, WebLookups,
    default_servers,
};
pub use counters::SequenceCheck;
pub use endpoint::{Endpoint, Transport};

/// Where a room is in its life cycle (see `lifecycle.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoomState {
    /// Waiting for its turn to connect (pacing) or for addresses (DNS).
    Waiting,
    Connecting,
    LoggingIn,
    Joined,
    BackingOff,
    /// Logging out and closing (removed, shutting down, or reconnecting
    /// on purpose).
    Closing,
    /// Shut down; not coming back.
    Stopped,
}

impl RoomState {
    pub fn name(self) -> &'static str {
        match self {
            RoomState::Waiting => "waiting",
            RoomState::Connecting => "connecting",
            RoomState::LoggingIn => "logging_in",
            RoomState::Joined => "joined",
            RoomState::BackingOff => "backing_off",
            RoomState::Closing => "closing",
            RoomState::Stopped => "stopped",
        }
    }

    fn of(state: State) -> Self {
        match state {
            State::Resolving { .. } | State::Waiting { .. } => RoomState::Waiting,
            State::Connecting { .. } => RoomState::Connecting,
            State::LoggingIn { .. } => RoomState::LoggingIn,
            State::Joined { .. } => RoomState::Joined,
            State::BackingOff { .. } => RoomState::BackingOff,
            State::Closing { .. } => RoomState::Closing,
            State::Stopped => RoomState::Stopped,
        }
    }
}

/// One room as the monitor sees it (a snapshot).
#[derive(Clone, Debug)]
pub struct Room {
    /// Its id: the real one, once looked up.
    pub id: u64,
    /// The id as the user gave it (a vanity number, maybe).
    pub written: u64,
    pub state: RoomState,
    /// The reactor entry of its connection, if it has one.
    pub conn: Option<EntryToken>,
    /// Where its current (or last) connection goes, and how.
    pub endpoint: Option<Endpoint>,
    /// Its broadcast status as last reported, and since when (Unix seconds).
    pub live: Option<LiveStatus>,
    pub live_since: Option<u64>,
    /// Its name, owner and category, from the web site.
    pub name: Option<String>,
    pub owner: Option<String>,
    pub category: Option<String>,
    /// Chat messages it received that named another room.
    pub foreign_chat: u64,
    pub messages: u64,
    pub last_message: Option<Instant>,
    /// Connections that ended and were retried.
    pub reconnects: u64,
    /// With `check_sequence`: what the `cid` numbers showed.
    pub sequence: SequenceCheck,
}

/// Why a monitor stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// SIGINT or SIGTERM (its name).
    Signal(&'static str),
    /// The time it was given ran out.
    Duration,
    /// `stop_after_messages` were written.
    Count(u64),
    /// The output closed for good: its reader left, or it could not be opened.
    Output(OutputClosed),
}

impl std::fmt::Display for StopCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopCause::Signal(name) => write!(f, "{name}"),
            StopCause::Duration => write!(f, "the duration is over"),
            StopCause::Count(count) => write!(f, "{} written", plural(*count, "message")),
            StopCause::Output(OutputClosed::ReaderLeft) => write!(f, "the output's reader left"),
            StopCause::Output(OutputClosed::Failed(why)) => write!(f, "output failed: {why}"),
        }
    }
}

/// Counters for the status line and metrics.
#[derive(Clone, Debug, Default)]
pub struct MonitorStats {
    pub messages: u64,
    pub messages_by_type: HashMap<String, u64>,
    /// Messages received but not written: left out by `--types`, chat of
    /// another room, or past `--count`.
    pub filtered: u64,
    /// Lines written (the monitor's own `barrage.live` lines too).
    pub written: u64,
    pub reconnects: u64,
    pub decode_errors: u64,
}

/// One room: its life cycle, its connection and timer on the reactor, and
/// what it has seen.
struct RoomSlot {
    life: Lifecycle,
    /// The room's real id, once looked up (the slot's key is the id as
    /// written, which may be a vanity number).
    real_id: Option<u64>,
    /// Its broadcast status as reported, and the timer of a pending end.
    live: LiveTracker,
    live_timer: Option<TimerHandle>,
    /// What the web site says of it, with web look-ups on.
    web: Option<Box<RoomWeb>>,
    /// Chat messages that named another room.
    foreign_chat: u64,
    /// The connection of the current attempt, by attempt number.
    conn: Option<(u64, EntryToken)>,
    /// The life cycle's one timer (connect deadline, end of a backoff).
    timer: Option<TimerHandle>,
    /// The server (by number) of the current or last connection.
    server: Option<usize>,
    messages: u64,
    last_message: Option<Instant>,
    sequence: SequenceCheck,
}

impl RoomSlot {
    /// Cancels every timer the room owns: it is being forgotten, and a
    /// callback left behind would act on a room added again under its id.
    fn cancel_timers(&mut self, reactor: &mut Reactor) {
        for timer in [self.timer.take(), self.live_timer.take()].into_iter().flatten() {
            reactor.remove_timeout(timer);
        }
        if let Some(web) = self.web.as_mut() {
            web.cancel_timers(reactor);
        }
    }

    fn is_stopped(&self) -> bool {
        self.life.state() == State::Stopped
    }

    /// The id to join and to write: the real one once known.
    fn id(&self, written: u64) -> u64 {
        self.real_id.unwrap_or(written)
    }

    fn snapshot(&self, written: u64, addresses: &AddressBook) -> Room {
        let reported = self.live.reported();
        let web = self.web.as_deref();
        Room {
            id: self.id(written),
            written,
            state: RoomState::of(self.life.state()),
            conn: self.conn.map(|(_, conn)| conn),
            endpoint: self.server.map(|server| addresses.server(server).clone()),
            live: self.live.current(),
            live_since: reported.map(|report| report.since),
            name: web.and_then(|web| web.name.clone()),
            owner: web.and_then(|web| web.owner.clone()),
            category: web.and_then(|web| web.category.clone()),
            foreign_chat: self.foreign_chat,
            messages: self.messages,
            last_message: self.last_message,
            reconnects: self.life.reconnects(),
            sequence: self.sequence.clone(),
        }
    }
}

pub(crate) struct MonitorState {
    config: MonitorConfig,
    timing: Timing,
    pub(crate) output: Output,
    /// Boxed: a B-tree's nodes are about half full when keys arrive in
    /// order, and an empty place costs a pointer, not a whole slot.
    rooms: BTreeMap<u64, Box<RoomSlot>>,
    addresses: AddressBook,
    /// Certificates trusted for `wss://` servers and `https://` look-ups
    /// (built once, if any is one).
    tls: Option<TlsClientConfig>,
    /// The web look-ups' HTTP client (with look-ups on).
    fetcher: Option<Fetcher>,
    /// Answers from the DNS thread come through here (set once at start).
    resolver: Option<LoopSender<Vec<Answer>>>,
    /// While no server name resolves at all: the pause before trying again.
    resolve_retry: Duration,
    /// Rooms waiting for their turn to connect, and the pacer.
    connect_queue: ConnectQueue,
    pacer_scheduled: bool,
    flush_scheduled: bool,
    /// Set when a stop begins ([`Monitor::stop`] or [`Monitor::shutdown`]):
    /// no room is added and none is queued to connect from then on.
    shutting_down: bool,
    /// Set by the first [`Monitor::stop`].
    stop_cause: Option<StopCause>,
    rng: Rng,
    pub(crate) stats: MonitorStats,
    /// Messages by type, counted here and copied into `stats` for a snapshot.
    types: TypeCounts,
    /// Rooms whose id could not be looked up: a few named a minute, the
    /// rest counted (see `lookup.rs`).
    look_up_warnings: LogBudget,
    /// The message every room decodes into, one read after another (see
    /// `ClientSession::on_bytes_with`); out while a read uses it.
    message_buffer: Option<Box<Message>>,
    /// Handle to ourselves, for callbacks scheduled on the reactor.
    this: std::rc::Weak<RefCell<MonitorState>>,
}

/// A running monitor. Cheap to clone; all clones see the same rooms.
#[derive(Clone)]
pub struct Monitor {
    state: Rc<RefCell<MonitorState>>,
}

impl Monitor {
    /// Opens the output, resolves the servers (on a helper thread) and
    /// starts connecting every room, paced.
    ///
    /// The settings are checked first ([`MonitorConfig::validate`], against
    /// the reactor's poll interval); the error says what could not be used.
    pub fn start(reactor: &mut Reactor, config: MonitorConfig) -> Result<Monitor, StartError> {
        config.validate(reactor.min_poll_interval()).map_err(StartError::Setting)?;
        // Callbacks from other threads (the output's writer, the DNS
        // thread) find the monitor through a slot filled in once it exists.
        let this_slot: Rc<RefCell<std::rc::Weak<RefCell<MonitorState>>>> = Rc::default();
        let slot = this_slot.clone();
        let events = reactor.channel(move |reactor: &mut Reactor, event: OutputEvent| {
            let Some(state) = slot.borrow().upgrade() else { return };
            Monitor { state }.on_output_event(reactor, event);
        });
        let output = Output::open(config.output.clone(), config.output_limits, events).map_err(StartError::Output)?;
        let slot = this_slot.clone();
        let resolver = reactor.channel(move |reactor: &mut Reactor, answers: Vec<Answer>| {
            let Some(state) = slot.borrow().upgrade() else { return };
            MonitorState::addresses_resolved(&state, reactor, answers);
        });
        let web_tls = config.web.as_ref().is_some_and(|web| {
            [&web.mobile_base, &web.desktop_base].iter().any(|base| base.scheme() == crate::http::Scheme::Https)
        });
        let tls = if web_tls || config.servers.iter().any(Endpoint::uses_tls) {
            let trusted = match &config.ca_pem {
                Some(pem) => TlsClientConfig::with_ca_pem(pem),
                None => TlsClientConfig::new(config.ca_file.as_deref()),
            };
            let trusted = trusted.map_err(|e| match (&config.ca_pem, &config.ca_file) {
                (Some(_), _) => io::Error::new(e.kind(), format!("cannot use the CA certificates given: {e}")),
                (None, Some(path)) => {
                    io::Error::new(e.kind(), format!("cannot use {} as the CA file: {e}", path.display()))
                }
                (None, None) => io::Error::new(e.kind(), format!("cannot load the system's certificates: {e}")),
            });
            let trusted = trusted.map_err(StartError::Trust)?;
            Some(trusted)
        } else {
            None
        };
        let fetcher = config.web.is_some().then(|| {
            Fetcher::new(
                reactor,
                FetchConfig { tls: tls.clone(), connect_timeout: config.connect_timeout, ..FetchConfig::default() },
            )
        });
        let seed = config.random_seed.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        let timing = Timing {
            connect_timeout: config.connect_timeout,
            healthy_after: config.healthy_after,
            failure_window: FAILURE_WINDOW,
            backoff_base: config.backoff_base,
            backoff_cap: config.backoff_cap,
            look_up_wait: config.web.as_ref().filter(|web| web.resolve_ids).map(|web| web.look_up_wait),
        };
        let state = Rc::new_cyclic(|this| {
            RefCell::new(MonitorState {
                output,
                timing,
                rooms: BTreeMap::new(),
                addresses: AddressBook::new(config.servers.clone(), config.resolution.resolve),
                tls,
                fetcher,
                resolver: Some(resolver),
                resolve_retry: Duration::from_secs(1),
                connect_queue: ConnectQueue::new(config.connects_per_second),
                pacer_scheduled: false,
                flush_scheduled: false,
                shutting_down: false,
                stop_cause: None,
                rng: Rng::new(seed),
                stats: MonitorStats::default(),
                look_up_warnings: LogBudget::new(LOOK_UP_WARNINGS, Duration::from_secs(60)),
                types: TypeCounts::default(),
                message_buffer: Some(Box::default()),
                this: this.clone(),
                config: config.clone(),
            })
        });
        *this_slot.borrow_mut() = Rc::downgrade(&state);
        let monitor = Monitor { state };
        for room in config.rooms.iter().copied() {
            monitor.add_room(reactor, room);
        }
        monitor.state.borrow_mut().resolve(Duration::ZERO);
        monitor.start_status_line(reactor, config.status_interval);
        Ok(monitor)
    }

    /// Starts watching `room` (no-op if already watched, or once a stop
    /// has begun).
    pub fn add_room(&self, reactor: &mut Reactor, room: u64) {
        {
            let mut state = self.state.borrow_mut();
            if state.shutting_down {
                log::debug!("room {room}: not added, the monitor is stopping");
                return;
            }
            let timing = state.timing;
            let grace = state.config.live_grace;
            let web = state.config.web.is_some().then(|| Box::new(RoomWeb::new()));
            state.rooms.entry(room).or_insert_with(|| {
                Box::new(RoomSlot {
                    life: Lifecycle::new(&timing),
                    real_id: None,
                    live: LiveTracker::new(grace),
                    live_timer: None,
                    web,
                    foreign_chat: 0,
                    conn: None,
                    timer: None,
                    server: None,
                    messages: 0,
                    last_message: None,
                    sequence: SequenceCheck::default(),
                })
            });
        }
        MonitorState::handle(&self.state, reactor, room, lifecycle::Event::Added);
        // Its status checks start, unless they still run (stopped a moment
        // ago, it is watched again before its next check).
        MonitorState::check_status_periodically(&self.state, reactor, room);
    }

    /// Stops watching `room`: logs out if connected, then forgets it.
    pub fn remove_room(&self, reactor: &mut Reactor, room: u64) {
        MonitorState::handle(&self.state, reactor, room, lifecycle::Event::Removed);
    }

    /// Logs out of every room and stops reconnecting. The rooms close as
    /// their logouts are written; [`is_idle`](Self::is_idle) tells when.
    /// They stay listed, as stopped.
    pub fn shutdown(&self, reactor: &mut Reactor) {
        let rooms: Vec<u64> = {
            let mut state = self.state.borrow_mut();
            state.shutting_down = true;
            state.connect_queue.clear();
            state.rooms.keys().copied().collect()
        };
        for room in rooms {
            MonitorState::handle(&self.state, reactor, room, lifecycle::Event::Shutdown);
        }
    }

    /// Stops for good, in order: take what the sockets already hold, log
    /// out of every room, and stop the reactor once every room has closed,
    /// or after `logout_timeout` less `waited` (the time the request may
    /// already have waited: a signal arrives through poll). Then the caller
    /// writes the rest of the output with [`finish_output`](Self::finish_output).
    /// Only the first call counts.
    pub fn stop(&self, reactor: &mut Reactor, cause: StopCause, waited: Duration) {
        let logout_timeout = {
            let mut state = self.state.borrow_mut();
            if let Some(first) = &state.stop_cause {
                log::debug!("already stopping ({first}); {cause} changes nothing");
                return;
            }
            match &cause {
                StopCause::Output(OutputClosed::Failed(why)) => log::error!("{why}; shutting down"),
                cause => log::info!("shutting down ({cause}): logging out of every room"),
            }
            state.stop_cause = Some(cause);
            // No new connections from now on (see `shutting_down`).
            state.shutting_down = true;
            state.connect_queue.clear();
            state.config.logout_timeout.saturating_sub(waited)
        };
        // Read coalescing ends, and the logouts wait for what the sockets
        // hold to be read (a logout closes its room, and a closing
        // connection throws its input away).
        reactor.set_min_poll_interval(Duration::ZERO);
        let monitor = self.clone();
        reactor.call_soon(move |reactor| monitor.shutdown_after_reading(reactor, true, MAX_READ_PASSES_AT_STOP));
        // Check for "all closed" every few milliseconds: the stop lasts at
        // most the timeout, so this is not an idle wake-up.
        let watcher = self.clone();
        reactor.add_periodic(Duration::from_millis(5), move |reactor| {
            if watcher.is_idle() {
                reactor.stop();
            }
        });
        reactor.call_later(logout_timeout, |reactor| {
            log::warn!("some rooms did not close in time; stopping anyway");
            reactor.stop();
        });
    }

    /// Calls [`shutdown`](Self::shutdown) once the loop has polled again
    /// and read what that poll reported (a callback that `call_soon` queues
    /// from inside a `call_soon` callback runs in the next iteration, after
    /// its poll and the reads it brought), and then until no room has reads
    /// left over, for at most `passes` more iterations.
    fn shutdown_after_reading(&self, reactor: &mut Reactor, first: bool, passes: u32) {
        if first || (reactor.has_postponed_work() && passes > 0) {
            let monitor = self.clone();
            reactor.call_soon(move |reactor| monitor.shutdown_after_reading(reactor, false, passes.saturating_sub(1)));
        } else {
            self.shutdown(reactor);
        }
    }

    /// Why [`stop`](Self::stop) was called, if it was.
    pub fn stop_cause(&self) -> Option<StopCause> {
        self.state.borrow().stop_cause.clone()
    }

    /// After `shutdown`: every room's connection has closed.
    pub fn is_idle(&self) -> bool {
        self.state.borrow().rooms.values().all(|room| room.conn.is_none())
    }

    /// Hands the last output to the writer and waits for it, at most
    /// `limit` (blocking; at exit). Returns what was left unwritten, in
    /// whole lines.
    pub fn finish_output(&self, limit: Duration) -> Unwritten {
        self.state.borrow_mut().output.finish(limit)
    }

    /// Reopens the output file (log rotation).
    pub fn reopen_output(&self) {
        self.state.borrow_mut().output.reopen();
    }

    /// Resolves the server names again (SIGHUP): new addresses serve the
    /// next connects; joined rooms stay where they are.
    pub fn resolve_again(&self) {
        self.state.borrow_mut().resolve(Duration::ZERO);
    }

    /// The output closed for good (its reader left).
    pub fn output_closed(&self) -> bool {
        self.state.borrow().output.is_closed()
    }

    fn on_output_event(&self, reactor: &mut Reactor, event: OutputEvent) {
        match event {
            OutputEvent::Drained(rooms) => {
                for room in rooms {
                    reactor.refresh(room);
                }
            }
            OutputEvent::Closed(why) => self.stop(reactor, StopCause::Output(why), Duration::ZERO),
        }
    }

    pub fn stats(&self) -> MonitorStats {
        let state = self.state.borrow();
        let mut stats = state.stats.clone();
        stats.messages_by_type = state.types.to_map();
        stats
    }

    /// A snapshot of every room.
    pub fn rooms(&self) -> Vec<Room> {
        let state = self.state.borrow();
        state.rooms.iter().map(|(&id, slot)| slot.snapshot(id, &state.addresses)).collect()
    }

    /// How many rooms are in each state.
    pub fn state_counts(&self) -> BTreeMap<RoomState, usize> {
        self.state.borrow().state_counts()
    }

    /// Unwritten output bytes.
    pub fn output_pending(&self) -> usize {
        self.state.borrow().output.pending()
    }

    /// `write` syscalls the output's writer thread has made.
    pub fn output_write_syscalls(&self) -> u64 {
        self.state.borrow().output.write_syscalls()
    }

    fn start_status_line(&self, reactor: &mut Reactor, interval: Duration) {
        if interval.is_zero() {
            return;
        }
        let weak = Rc::downgrade(&self.state);
        let mut last = (Instant::now(), 0u64);
        reactor.add_periodic(interval, move |_| {
            let Some(state) = weak.upgrade() else { return };
            let state = state.borrow();
            let counts = state.state_counts();
            let count = |s| counts.get(&s).copied().unwrap_or(0);
            let rate = (state.stats.messages - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-9);
            last = (Instant::now(), state.stats.messages);
            log::info!(
                "rooms: {} joined, {} connecting, {} backing off; {:.1} msg/s; {}",
                count(RoomState::Joined),
                count(RoomState::Waiting) + count(RoomState::Connecting) + count(RoomState::LoggingIn),
                count(RoomState::BackingOff),
                rate,
                plural(state.stats.reconnects, "reconnect")
            );
        });
    }
}

impl MonitorState {
    fn state_counts(&self) -> BTreeMap<RoomState, usize> {
        let mut counts = BTreeMap::new();
        for room in self.rooms.values() {
            *counts.entry(RoomState::of(room.life.state())).or_insert(0) += 1;
        }
        counts
    }

    /// The message buffer for a read to decode into; give it back with
    /// [`end_read`](Self::end_read).
    pub(crate) fn start_read(&mut self) -> Box<Message> {
        self.message_buffer.take().unwrap_or_default()
    }

    pub(crate) fn end_read(&mut self, buffer: Box<Message>) {
        self.message_buffer = Some(buffer);
    }

    /// Writes one message the connection of `attempt` received (unless
    /// filtered) and counts it. `received` is when the read that brought
    /// it returned.
    pub(crate) fn deliver(
        &mut self,
        reactor: &mut Reactor,
        room: u64,
        attempt: u64,
        received: Received,
        message: &Message,
    ) {
        let mut id = room;
        let mut foreign = false;
        // Written in any case (every message received is written once); the
        // room's own counters only follow the connection it owns now.
        if let Some(slot) = self.rooms.get_mut(&room).filter(|slot| slot.conn.is_some_and(|(a, _)| a == attempt)) {
            id = slot.id(room);
            slot.messages += 1;
            slot.last_message = Some(received.at);
            if self.config.check_sequence
                && let Some(number) = message.get("cid").and_then(|cid| cid.parse().ok())
            {
                slot.sequence.record(number);
            }
            // Check the type first: building a view scans every field.
            let heard = match message.msg_type() {
                "rss" => match message.view() {
                    MessageView::RoomStatus(status) => status.status.map(|status| (status, Source::Push)),
                    _ => None,
                },
                "loginres" => match message.view() {
                    MessageView::LoginRes(login) => match login.live_stat {
                        Some(1) => Some((LiveStatus::Live, Source::Login)),
                        Some(0) => Some((LiveStatus::Offline, Source::Login)),
                        _ => None,
                    },
                    _ => None,
                },
                "chatmsg" => {
                    foreign = message.get("rid").and_then(|rid| rid.parse::<u64>().ok()).is_some_and(|rid| rid != id);
                    slot.foreign_chat += u64::from(foreign);
                    None
                }
                _ => None,
            };
            if let Some((status, source)) = heard {
                self.heard_status(reactor, room, status, source, None);
            }
        }
        self.stats.messages += 1;
        self.types.count(message.msg_type());
        if foreign && self.config.foreign_chat == ForeignChat::Drop {
            self.stats.filtered += 1;
            return;
        }
        self.write_message(reactor, id, received.unix_ms, message);
    }

    /// Writes `message` of room `id` as one line, unless `--types` leaves
    /// its type out or `--count` lines were written already (the last one
    /// stops the monitor).
    fn write_message(&mut self, reactor: &mut Reactor, id: u64, ts_ms: u64, message: &Message) {
        let limit = self.config.stop_after_messages;
        if self.config.types.as_ref().is_some_and(|types| !types.contains(message.msg_type()))
            || limit.is_some_and(|limit| self.stats.written >= limit)
        {
            self.stats.filtered += 1;
            return;
        }
        let format = self.config.format;
        self.output.append(|batch| format::write_line(batch, format, ts_ms, id, message));
        self.stats.written += 1;
        self.schedule_flush(reactor);
        if let Some(limit) = limit.filter(|&limit| self.stats.written == limit) {
            let weak = self.this.clone();
            reactor.call_soon(move |reactor| {
                if let Some(state) = weak.upgrade() {
                    Monitor { state }.stop(reactor, StopCause::Count(limit), Duration::ZERO);
                }
            });
        }
    }

    /// One batch per loop iteration: hands the batch to the writer once this
    /// iteration's callbacks are done.
    fn schedule_flush(&mut self, reactor: &mut Reactor) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            let weak = self.this.clone();
            reactor.call_soon(move |_| {
                if let Some(state) = weak.upgrade() {
                    let mut state = state.borrow_mut();
                    state.flush_scheduled = false;
                    state.output.flush();
                }
            });
        }
    }
}

/// A connection that closes sooner than this after opening counts as a
/// failed attempt, even if it joined.
const FAILURE_WINDOW: Duration = Duration::from_secs(5);

/// Iterations a stop may spend reading what the sockets already hold
/// (each reads up to the reactor's read budget per room) before it logs out.
const MAX_READ_PASSES_AT_STOP: u32 = 8;

/// When a read returned: the loop's clock, and the wall clock that stamps
/// each line. Read once per read, not per message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Received {
    pub(crate) at: Instant,
    pub(crate) unix_ms: u64,
}

impl Received {
    pub(crate) fn now() -> Received {
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Received { at: Instant::now(), unix_ms }
    }
}

//! The room daemon behind `barrage watch`: many rooms, one reactor.
//!
//! Each room is one TCP connection driven by a `RoomConn` (in `room.rs`) around a
//! sans-IO `ClientSession`. This module keeps the rooms' life cycle:
//!
//! ```text
//!   Waiting ──(pacer)──▶ Connecting ──▶ LoggingIn ──▶ Joined
//!      ▲                     │              │            │
//!      └──── BackingOff ◀────┴──────────────┴────────────┘  (closed: retry)
//! ```
//!
//! - **Pacing:** new connections start at most `connects_per_second`, so
//!   thousands of rooms do not hit the server (or the machine) at once.
//! - **Addresses:** a room that fails on one server address tries the next
//!   (every resolved IP of every server) before backing off.
//! - **Backoff:** exponential with full jitter, 1 s doubling to 60 s, never
//!   giving up; reset after a healthy period (see [`backoff`]).
//! - **Output:** every message is written once; when the output falls
//!   behind, rooms stop reading (see [`output`]).
//!
//! Server names are resolved on a helper thread (DNS cannot be made
//! non-blocking with std) and handed back through a reactor channel.

pub mod backoff;
mod config;
pub mod format;
pub mod metrics;
pub mod output;
mod room;
pub mod shard;
mod sink;
pub mod visible;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::douyu::{ClientSession, LiveStatus, Message, MessageView};
use crate::reactor::{ConnId, LoopSender, Reactor, TimerHandle};

use crate::rng::Rng;
use backoff::Backoff;
use output::{Output, OutputClosed, OutputEvent, Unwritten};
use room::{RoomConn, TIMER_CONNECT, TIMER_LOGOUT};

pub use config::{DEFAULT_FLUSH_TIMEOUT, DEFAULT_LOGOUT_TIMEOUT, DEFAULT_SERVERS, MonitorConfig};

/// Where a room is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoomState {
    /// Waiting for its turn to connect (pacing) or for addresses (DNS).
    Waiting,
    Connecting,
    LoggingIn,
    Joined,
    BackingOff,
    /// Shut down or removed; not coming back.
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
            RoomState::Stopped => "stopped",
        }
    }
}

/// One room as the monitor sees it.
#[derive(Clone, Debug)]
pub struct Room {
    pub id: u64,
    pub state: RoomState,
    pub conn: Option<ConnId>,
    pub live: Option<LiveStatus>,
    pub messages: u64,
    pub last_message: Option<Instant>,
    /// Connections that ended and were retried.
    pub reconnects: u64,
    /// With `check_sequence`: what the `cid` numbers showed.
    pub sequence: SequenceCheck,
    backoff: Backoff,
    /// Index into the address list for the next attempt.
    next_address: usize,
    /// Addresses that failed in a row since the last success or backoff.
    failed_addresses: usize,
    /// Bumped when the room is removed or added again: a retry timer from
    /// an earlier life of the room finds a different epoch and does nothing.
    epoch: u64,
    /// Added again while its old connection was still closing: connect as
    /// soon as that one has closed (never two connections for one room).
    restart_after_close: bool,
    /// Removed by a reload (not by shutdown): forget it once closed.
    removed: bool,
    /// The connect timeout of the connection under way, cancelled once it
    /// connects (it would otherwise fire, for nothing, 10 s later).
    connect_timer: Option<TimerHandle>,
}

impl Room {
    /// Where and when to try next after a failed or ended attempt: the next
    /// address at once while others are untried, else back off.
    fn retry_delay(&mut self, failed: bool, should_reconnect: bool, address_count: usize, random: f64) -> Duration {
        self.next_address += 1;
        if failed && should_reconnect && self.failed_addresses + 1 < address_count {
            self.failed_addresses += 1;
            return Duration::ZERO;
        }
        self.failed_addresses = 0;
        if should_reconnect {
            self.backoff.next_delay(random)
        } else {
            // A bad room id will not fix itself: retry rarely.
            self.backoff.ceiling().max(Duration::from_secs(60))
        }
    }
}

/// Numbered messages seen by one room, checked for gaps and repeats within
/// each connection (a reconnect starts wherever the stream is by then).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SequenceCheck {
    /// Numbered messages received.
    pub received: u64,
    /// Numbers skipped inside a connection: messages lost.
    pub missing: u64,
    /// Numbers seen again (or going backwards) inside a connection.
    pub duplicated: u64,
    /// The first and last number received.
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// The last number on the current connection.
    current: Option<u64>,
}

impl SequenceCheck {
    fn record(&mut self, number: u64) {
        self.received += 1;
        self.first.get_or_insert(number);
        match self.current {
            Some(previous) if number <= previous => self.duplicated += 1,
            Some(previous) => self.missing += number - previous - 1,
            None => {}
        }
        if self.current.is_none_or(|previous| number > previous) {
            self.current = Some(number);
            self.last = Some(number);
        }
    }

    fn connection_ended(&mut self) {
        self.current = None;
    }
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
            StopCause::Count(count) => write!(f, "{count} messages written"),
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
    /// Messages received but not written because of `--types`.
    pub filtered: u64,
    pub reconnects: u64,
    pub decode_errors: u64,
}

/// How a room's connection ended, reported by its `RoomConn`.
pub(crate) struct CloseOutcome {
    pub joined: bool,
    pub lived: Duration,
    pub reason: String,
    pub should_reconnect: bool,
}

pub(crate) struct MonitorState {
    config: MonitorConfig,
    pub(crate) output: Output,
    rooms: BTreeMap<u64, Room>,
    /// Every resolved address of every server, in order; empty until DNS
    /// answered.
    addresses: Vec<SocketAddr>,
    /// Rooms waiting for a connection slot (pacing).
    connect_queue: VecDeque<u64>,
    pacer_scheduled: bool,
    flush_scheduled: bool,
    shutting_down: bool,
    /// Set by the first [`Monitor::stop`].
    stop_cause: Option<StopCause>,
    jitter: Rng,
    pub(crate) stats: MonitorStats,
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
    /// the reactor's poll interval): an error of kind `InvalidInput` names
    /// the setting.
    pub fn start(reactor: &mut Reactor, config: MonitorConfig) -> io::Result<Monitor> {
        config
            .validate(reactor.min_poll_interval())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.message))?;
        // The writer thread's news is handled on the loop; the callback
        // finds the monitor through a slot filled in once it exists.
        let this_slot: Rc<RefCell<std::rc::Weak<RefCell<MonitorState>>>> = Rc::default();
        let slot = this_slot.clone();
        let events = reactor.channel(move |reactor: &mut Reactor, event: OutputEvent| {
            let Some(state) = slot.borrow().upgrade() else { return };
            Monitor { state }.on_output_event(reactor, event);
        });
        let output = Output::open(config.output.clone(), config.output_limits, events)?;
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        let state = Rc::new_cyclic(|this| {
            RefCell::new(MonitorState {
                output,
                rooms: BTreeMap::new(),
                addresses: Vec::new(),
                connect_queue: VecDeque::new(),
                pacer_scheduled: false,
                flush_scheduled: false,
                shutting_down: false,
                stop_cause: None,
                jitter: Rng::new(seed),
                stats: MonitorStats::default(),
                this: this.clone(),
                config: config.clone(),
            })
        });
        *this_slot.borrow_mut() = Rc::downgrade(&state);
        let monitor = Monitor { state };
        for room in config.rooms.iter().copied() {
            monitor.add_room(reactor, room);
        }
        monitor.resolve_servers(reactor, config.servers.clone());
        monitor.start_status_line(reactor, config.status_interval);
        Ok(monitor)
    }

    /// Starts watching `room` (no-op if already watched).
    pub fn add_room(&self, reactor: &mut Reactor, room: u64) {
        let mut state = self.state.borrow_mut();
        if let Some(entry) = state.rooms.get_mut(&room) {
            if entry.state != RoomState::Stopped {
                return;
            }
            // Watched before and removed: start a new life.
            entry.epoch += 1;
            entry.removed = false;
            entry.state = RoomState::Waiting;
            if entry.conn.is_some() {
                entry.restart_after_close = true;
                return;
            }
        } else {
            let backoff = Backoff::with_limits(state.config.backoff_base, state.config.backoff_cap);
            state.rooms.insert(
                room,
                Room {
                    id: room,
                    state: RoomState::Waiting,
                    conn: None,
                    live: None,
                    messages: 0,
                    last_message: None,
                    reconnects: 0,
                    sequence: SequenceCheck::default(),
                    backoff,
                    next_address: 0,
                    failed_addresses: 0,
                    epoch: 0,
                    restart_after_close: false,
                    removed: false,
                    connect_timer: None,
                },
            );
        }
        let epoch = state.rooms[&room].epoch;
        state.enqueue_connect(reactor, room, epoch);
    }

    /// Stops watching `room`: logs out if connected.
    pub fn remove_room(&self, reactor: &mut Reactor, room: u64) {
        let mut state = self.state.borrow_mut();
        let shutting_down = state.shutting_down;
        let Some(entry) = state.rooms.get_mut(&room) else { return };
        entry.state = RoomState::Stopped;
        entry.epoch += 1;
        entry.restart_after_close = false;
        // At shutdown rooms stay listed, for the final summary and metrics.
        entry.removed = !shutting_down;
        match entry.conn {
            Some(conn) => {
                reactor.set_timer(conn, Instant::now(), TIMER_LOGOUT);
            }
            None if entry.removed => {
                state.rooms.remove(&room);
            }
            None => {}
        }
    }

    /// Logs out of every room and stops reconnecting. The rooms close as
    /// their logouts are written; [`is_idle`](Self::is_idle) tells when.
    pub fn shutdown(&self, reactor: &mut Reactor) {
        let rooms: Vec<u64> = {
            let mut state = self.state.borrow_mut();
            state.shutting_down = true;
            state.connect_queue.clear();
            state.rooms.keys().copied().collect()
        };
        for room in rooms {
            self.remove_room(reactor, room);
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
            // No new connections from now on.
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
        self.state.borrow().rooms.values().all(|r| r.conn.is_none())
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
        self.state.borrow().stats.clone()
    }

    /// A snapshot of every room.
    pub fn rooms(&self) -> Vec<Room> {
        self.state.borrow().rooms.values().cloned().collect()
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

    /// Resolves the servers on a helper thread. While nothing resolves
    /// (the network is not up yet, say), it tries again with a growing
    /// pause, up to a minute, through the same channel.
    fn resolve_servers(&self, reactor: &mut Reactor, servers: Vec<String>) {
        let weak = Rc::downgrade(&self.state);
        // The callback re-spawns the resolver, so it needs the sender, which
        // exists only once the channel does: handed over right after.
        let own_sender: Rc<RefCell<Option<LoopSender<Vec<SocketAddr>>>>> = Rc::new(RefCell::new(None));
        let retry = Rc::new(std::cell::Cell::new(Duration::from_secs(1)));
        let (callback_sender, retry_servers) = (own_sender.clone(), servers.clone());
        let sender = reactor.channel(move |reactor: &mut Reactor, addresses: Vec<SocketAddr>| {
            let Some(state) = weak.upgrade() else { return };
            if addresses.is_empty() {
                let delay = retry.get();
                retry.set((delay * 2).min(Duration::from_secs(60)));
                log::error!("no server address could be resolved; trying again in {delay:?}");
                let sender = callback_sender.borrow().clone();
                let servers = retry_servers.clone();
                if let Some(sender) = sender {
                    reactor.call_later(delay, move |_| spawn_resolver(sender, servers));
                }
                return;
            }
            log::info!("servers resolved to {} addresses", addresses.len());
            let mut state = state.borrow_mut();
            state.addresses = addresses;
            state.ensure_pacer(reactor);
        });
        *own_sender.borrow_mut() = Some(sender.clone());
        spawn_resolver(sender, servers);
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
                "rooms: {} joined, {} connecting, {} backing off; {:.1} msg/s; {} reconnects",
                count(RoomState::Joined),
                count(RoomState::Waiting) + count(RoomState::Connecting) + count(RoomState::LoggingIn),
                count(RoomState::BackingOff),
                rate,
                state.stats.reconnects
            );
        });
    }
}

impl MonitorState {
    fn state_counts(&self) -> BTreeMap<RoomState, usize> {
        let mut counts = BTreeMap::new();
        for room in self.rooms.values() {
            *counts.entry(room.state).or_insert(0) += 1;
        }
        counts
    }

    /// Writes one received message (unless filtered) and counts it.
    pub(crate) fn deliver(&mut self, reactor: &mut Reactor, room: u64, conn: ConnId, ts_ms: u64, message: &Message) {
        // Written in any case (every message received is written once); the
        // room's own counters only follow the connection it owns now.
        if let Some(entry) = self.rooms.get_mut(&room).filter(|r| r.conn == Some(conn)) {
            entry.messages += 1;
            entry.last_message = Some(Instant::now());
            if self.config.check_sequence
                && let Some(number) = message.get("cid").and_then(|cid| cid.parse().ok())
            {
                entry.sequence.record(number);
            }
            // Check the type first: building a view scans every field.
            if message.msg_type() == "rss"
                && let MessageView::RoomStatus(status) = message.view()
            {
                entry.live = status.status.or(entry.live);
            }
        }
        self.stats.messages += 1;
        // Types come from the server: count at most MAX_TYPES distinct ones
        // (each becomes a metrics series), the rest as "other".
        let kind = message.msg_type();
        let by_type = &mut self.stats.messages_by_type;
        let full = by_type.len() >= MAX_TYPES;
        match by_type.get_mut(kind) {
            Some(count) => *count += 1,
            None if !full => {
                by_type.insert(kind.to_string(), 1);
            }
            None => *by_type.entry("other".to_string()).or_insert(0) += 1,
        }
        if self.config.types.as_ref().is_some_and(|types| !types.contains(message.msg_type())) {
            self.stats.filtered += 1;
            return;
        }
        if let Some(limit) = self.config.stop_after_messages {
            let written = self.stats.messages - self.stats.filtered; // this one included
            if written > limit {
                self.stats.filtered += 1;
                return;
            }
            if written == limit {
                let weak = self.this.clone();
                reactor.call_soon(move |reactor| {
                    if let Some(state) = weak.upgrade() {
                        Monitor { state }.stop(reactor, StopCause::Count(limit), Duration::ZERO);
                    }
                });
            }
        }
        let format = self.config.format;
        self.output.append(|batch| format::write_line(batch, format, ts_ms, room, message));
        // One batch per loop iteration: flush when this iteration's
        // callbacks are done.
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

    /// The room's current connection, if `conn` is it.
    fn owned(&mut self, room: u64, conn: ConnId) -> Option<&mut Room> {
        self.rooms.get_mut(&room).filter(|r| r.conn == Some(conn) && r.state != RoomState::Stopped)
    }

    /// The connection is up: returns its connect timeout, to cancel.
    pub(crate) fn room_connected(&mut self, room: u64, conn: ConnId) -> Option<TimerHandle> {
        let entry = self.owned(room, conn)?;
        entry.state = RoomState::LoggingIn;
        entry.connect_timer.take()
    }

    pub(crate) fn room_joined(&mut self, room: u64, conn: ConnId) {
        if let Some(entry) = self.owned(room, conn) {
            entry.state = RoomState::Joined;
            log::debug!("room {room}: joined");
        }
    }

    /// A room's connection ended: decide when and where to try again.
    pub(crate) fn room_closed(
        this: &Rc<RefCell<MonitorState>>,
        reactor: &mut Reactor,
        room: u64,
        conn: ConnId,
        outcome: CloseOutcome,
    ) {
        let mut state = this.borrow_mut();
        let shutting_down = state.shutting_down;
        let healthy_after = state.config.healthy_after;
        let address_count = state.addresses.len().max(1);
        let random = state.jitter.next_f64();
        // Only the connection the room owns decides its future.
        let Some(entry) = state.rooms.get_mut(&room).filter(|r| r.conn == Some(conn)) else { return };
        entry.conn = None;
        entry.sequence.connection_ended();
        if entry.restart_after_close {
            entry.restart_after_close = false;
            let epoch = entry.epoch;
            state.enqueue_connect(reactor, room, epoch);
            return;
        }
        if shutting_down || entry.state == RoomState::Stopped {
            entry.state = RoomState::Stopped;
            log::debug!("room {room}: closed ({})", outcome.reason);
            if entry.removed {
                state.rooms.remove(&room);
            }
            return;
        }
        entry.reconnects += 1;
        if outcome.lived >= healthy_after {
            entry.backoff.reset();
        }
        // A connection that never joined, or died within seconds, failed
        // (even a join does not count as success then: a server that drops
        // every room right after joining must not be hammered).
        let failed = !outcome.joined || outcome.lived < FAILURE_WINDOW;
        if !failed {
            entry.failed_addresses = 0;
        }
        let delay = entry.retry_delay(failed, outcome.should_reconnect, address_count, random);
        log::info!("room {room}: closed ({}); reconnecting in {:.1} s", outcome.reason, delay.as_secs_f64());
        state.stats.reconnects += 1;
        state.retry_later(reactor, room, delay);
    }

    /// Connects `room` again after `delay`, unless it was removed or added
    /// again meanwhile (its epoch changed).
    fn retry_later(&mut self, reactor: &mut Reactor, room: u64, delay: Duration) {
        let Some(entry) = self.rooms.get_mut(&room) else { return };
        entry.state = RoomState::BackingOff;
        let epoch = entry.epoch;
        let weak = self.this.clone();
        reactor.call_later(delay, move |reactor| {
            if let Some(state) = weak.upgrade() {
                state.borrow_mut().enqueue_connect(reactor, room, epoch);
            }
        });
    }

    fn enqueue_connect(&mut self, reactor: &mut Reactor, room: u64, epoch: u64) {
        if self.shutting_down {
            return;
        }
        let Some(entry) = self.rooms.get_mut(&room).filter(|r| {
            r.epoch == epoch && r.conn.is_none() && matches!(r.state, RoomState::Waiting | RoomState::BackingOff)
        }) else {
            return;
        };
        entry.state = RoomState::Waiting;
        self.connect_queue.push_back(room);
        self.ensure_pacer(reactor);
    }

    /// Starts the pacer if rooms wait and it is not running. It stops by
    /// itself when the queue is empty, so an idle monitor has no timer.
    fn ensure_pacer(&mut self, reactor: &mut Reactor) {
        if self.pacer_scheduled || self.connect_queue.is_empty() || self.addresses.is_empty() {
            return;
        }
        self.pacer_scheduled = true;
        let weak = self.this.clone();
        reactor.call_soon(move |reactor| {
            if let Some(state) = weak.upgrade() {
                MonitorState::run_pacer(&state, reactor);
            }
        });
    }

    /// Connects the next rooms in the queue, `connects_per_second / 100`
    /// every 10 ms. Small steps matter: rooms that join in the same
    /// millisecond also have their heartbeats due in the same millisecond,
    /// forever after, and a burst of thousands makes the last ones late.
    fn run_pacer(this: &Rc<RefCell<MonitorState>>, reactor: &mut Reactor) {
        let mut state = this.borrow_mut();
        state.pacer_scheduled = false;
        let per_tick = (state.config.connects_per_second * PACER_TICK.as_secs_f64()).ceil().max(1.0) as usize;
        for _ in 0..per_tick {
            let Some(room) = state.connect_queue.pop_front() else { break };
            state.connect(reactor, room);
        }
        if !state.connect_queue.is_empty() {
            state.pacer_scheduled = true;
            let weak = Rc::downgrade(this);
            reactor.call_later(PACER_TICK, move |reactor| {
                if let Some(state) = weak.upgrade() {
                    MonitorState::run_pacer(&state, reactor);
                }
            });
        }
    }

    fn connect(&mut self, reactor: &mut Reactor, room: u64) {
        let Some(this) = self.this.upgrade() else { return };
        let address_count = self.addresses.len();
        let session_config = self.config.session;
        let random = self.jitter.next_f64();
        let Some(entry) = self.rooms.get_mut(&room).filter(|r| r.state == RoomState::Waiting && r.conn.is_none())
        else {
            return;
        };
        let address = self.addresses[entry.next_address % address_count];
        let conn = RoomConn::new(room, ClientSession::new(room, session_config), this);
        match reactor.connect(address, conn) {
            Ok(id) => {
                log::debug!("room {room}: connecting to {address}");
                entry.conn = Some(id);
                entry.state = RoomState::Connecting;
                let deadline = Instant::now() + self.config.connect_timeout;
                entry.connect_timer = reactor.set_timer(id, deadline, TIMER_CONNECT);
            }
            Err(e) => {
                // No socket at all (no route, out of descriptors): the same
                // decision as a failed connection — next address, then back off.
                entry.reconnects += 1;
                let delay = entry.retry_delay(true, true, address_count, random);
                log::warn!("room {room}: cannot connect to {address}: {e}; next try in {:.1} s", delay.as_secs_f64());
                self.stats.reconnects += 1;
                self.retry_later(reactor, room, delay);
            }
        }
    }
}

/// Resolves every server on a helper thread (std's resolver blocks) and
/// hands the addresses, in order, back to the loop.
fn spawn_resolver(sender: LoopSender<Vec<SocketAddr>>, servers: Vec<String>) {
    let spawned = std::thread::Builder::new().name("barrage-dns".into()).spawn(move || {
        let mut addresses = Vec::new();
        for server in &servers {
            match server.to_socket_addrs() {
                Ok(found) => addresses.extend(found),
                Err(e) => log::warn!("cannot resolve {server}: {e}"),
            }
        }
        sender.send(addresses);
    });
    if let Err(e) = spawned {
        log::error!("cannot start the DNS thread: {e}");
    }
}

/// A connection that closes sooner than this after opening counts as a
/// failed attempt, even if it joined.
const FAILURE_WINDOW: Duration = Duration::from_secs(5);
const PACER_TICK: Duration = Duration::from_millis(10);
/// Iterations a stop may spend reading what the sockets already hold
/// (each reads up to the reactor's read budget per room) before it logs out.
const MAX_READ_PASSES_AT_STOP: u32 = 8;

/// Distinct message types counted by name (see `deliver`).
const MAX_TYPES: usize = 256;

#[cfg(test)]
mod tests {
    use super::SequenceCheck;

    #[test]
    fn sequence_check_counts_gaps_and_repeats_per_connection() {
        let mut check = SequenceCheck::default();
        for n in [1, 2, 3, 5, 5, 4, 6] {
            check.record(n);
        }
        assert_eq!((check.received, check.missing, check.duplicated), (7, 1, 2));
        // A new connection picks the stream up later: not a loss by us.
        check.connection_ended();
        check.record(40);
        check.record(41);
        assert_eq!((check.missing, check.first, check.last), (1, Some(1), Some(41)));
    }
}

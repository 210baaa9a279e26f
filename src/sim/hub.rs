//! The simulator's shared state: rooms, their members, their live status,
//! and the one periodic tick that drives all room traffic.
//!
//! Three kinds of code touch it, all on the loop thread: each client's
//! [`ClientConn`](super::client_conn::ClientConn) dispatcher (a client logs
//! in, joins a room, leaves), the periodic callbacks (the traffic tick,
//! the `coalesce` flush, the WebSocket pings, the stats log), and the web
//! pages, which read the rooms' status (`sim::web`). So it lives in one
//! `Rc<RefCell<Hub>>` they all hold. No borrow is ever held across a
//! reactor callback: the reactor only *records* sends and closes while a
//! callback runs and carries them out afterwards, so the dispatchers'
//! `handle_close` (which borrows the hub) runs after the tick let go of it.
//!
//! # The traffic tick
//!
//! One timer for all rooms, not one per message: every [`TICK`] each room
//! with members earns `rate × elapsed` messages of *credit*; it makes as
//! many whole messages as it has credit for and keeps the fraction for the
//! next tick. So `rate = 0.05` gives one message every 20 s, and
//! `rate = 200` gives 10 messages per 50 ms tick, with no timer per message.
//!
//! Each message is generated once, framed once, and the same bytes are
//! queued for every member. A room without members makes nothing and keeps
//! its place in its sequence: when someone joins again, numbering goes on
//! where it stopped.
//!
//! # Status changes
//!
//! Each tick also compares every room's status ([`StatusBoard`]) with the
//! one its members were last told, and on a change sends them one `rss`
//! (numbered like any room message) before the tick's traffic. As on
//! Douyu, a change is pushed only to those in the room when it happens: a
//! room's first member (again) finds its status in `loginres`'s
//! `live_stat`, and is told nothing of what changed while it was away.
//! A status set by hand ([`Hub::set_status`]) is pushed at once.
//!
//! # A recording played
//!
//! With `SimConfig::replay`, each tick also sends the recorded messages
//! that are due ([`Playback`]) to their rooms' members, framed once each
//! like the rooms' own traffic, which goes on beside them at `rate`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::outbox::{CloseCause, Delivery, Outbox};
use super::playback::{Fed, Playback};
use super::status::{Broadcast, StatusBoard};
use super::traffic::RoomTraffic;
use super::transport::TEXT_EVERY_PINGS;
use super::{SimConfig, SimStats};
use crate::douyu::LiveStatus;
use crate::douyu::frame::{self, SERVER_TO_CLIENT};
use crate::plural::plural;
use crate::reactor::{Context, EntryToken, Reactor};
use crate::rng::derive_seed;
use crate::websocket::{CloseReason, close_code};

/// How often the traffic tick runs.
pub const TICK: Duration = Duration::from_millis(50);

/// At most this much time earns credit in one tick: after the loop was
/// blocked for a minute, rooms do not burst a minute of messages at once.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);

/// One room: its message stream and who listens.
struct Room {
    traffic: RoomTraffic,
    /// Members in the order they joined (the order frames are queued in).
    members: Vec<EntryToken>,
    /// Messages earned and not yet made; always below 1 after a tick.
    credit: f64,
    /// The status the members were last told of (or found at login).
    announced: LiveStatus,
}

/// Rooms, clients, counters. See the module docs.
pub(crate) struct Hub {
    pub(crate) config: SimConfig,
    /// Ordered by room id, so that every run walks rooms in the same order
    /// and faults that count across rooms (the corruption cycle) repeat
    /// exactly for a seed. (A `HashMap`'s order changes from run to run.)
    rooms: BTreeMap<u64, Room>,
    clients: HashMap<EntryToken, Outbox>,
    pub(crate) stats: SimStats,
    /// Bad frames sent so far: picks the next kind of corruption.
    corruptions: u64,
    /// `--ws`: ping rounds so far, each ping's number.
    ping_rounds: u64,
    last_tick: Instant,
    /// The last stats log: when, and the counters then (for rates).
    last_report: (Instant, u64, u64),
    /// Every room's live status, members or not.
    pub(crate) status: StatusBoard,
    /// `replay`: the recording being played.
    pub(crate) playback: Option<Playback>,
}

impl Hub {
    pub(crate) fn new(config: SimConfig, now: Instant) -> Self {
        let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Hub {
            status: StatusBoard::new(config.seed, config.status_period, now, unix_now),
            config,
            rooms: BTreeMap::new(),
            clients: HashMap::new(),
            stats: SimStats::default(),
            corruptions: 0,
            ping_rounds: 0,
            last_tick: now,
            last_report: (now, 0, 0),
            playback: None,
        }
    }

    // ----- clients -------------------------------------------------------------

    /// A client connected. Returns its number (1, 2, …), which seeds its
    /// fault randomness and serves as its `sessionid`.
    pub(crate) fn add_client(&mut self, id: EntryToken, peer: SocketAddr) -> u64 {
        self.stats.accepted += 1;
        let number = self.stats.accepted;
        let seed = derive_seed(self.config.seed, number);
        self.clients.insert(id, Outbox::new(id, peer, &self.config, seed));
        number
    }

    /// A client's connection closed: it leaves its room and is forgotten.
    pub(crate) fn remove_client(&mut self, id: EntryToken) {
        if let Some(room) = self.clients.remove(&id).and_then(|outbox| outbox.room) {
            self.leave(id, room);
        }
    }

    /// Puts a client in `room` (leaving the one it was in, if another).
    pub(crate) fn join(&mut self, id: EntryToken, room: u64) {
        let seed = self.config.seed;
        let Some(outbox) = self.clients.get_mut(&id) else { return };
        match outbox.room.replace(room) {
            Some(old) if old == room => return,
            Some(old) => self.leave(id, old),
            None => {}
        }
        if self.config.vanity.contains_key(&room) {
            log::debug!("client {id} joined vanity id {room}: as on Douyu, no error and no messages");
            return;
        }
        let status = self.status.get(room, Instant::now()).status;
        let room_state = self.rooms.entry(room).or_insert_with(|| Room {
            traffic: RoomTraffic::new(seed, room),
            members: Vec::new(),
            credit: 0.0,
            announced: status,
        });
        if room_state.members.is_empty() {
            // What changed while nobody was in is never pushed.
            room_state.announced = status;
        }
        room_state.members.push(id);
        log::debug!("client {id} joined room {room} ({})", plural(room_state.members.len() as u64, "member"));
        if let Some(playback) = self.playback.as_mut().filter(|playback| playback.waiting()) {
            let rooms = self.rooms.values().filter(|r| !r.members.is_empty()).count();
            playback.rooms_joined(rooms, Instant::now());
        }
    }

    fn leave(&mut self, id: EntryToken, room: u64) {
        if let Some(room_state) = self.rooms.get_mut(&room) {
            room_state.members.retain(|&member| member != id);
            if room_state.members.is_empty() {
                room_state.credit = 0.0;
            }
        }
    }

    /// Queues a reply frame for a client (see [`Outbox::reply`]).
    pub(crate) fn reply(&mut self, reactor: &mut Reactor, id: EntryToken, frame: &[u8]) {
        let Some(outbox) = self.clients.get_mut(&id) else { return };
        if let Some(cause) = outbox.reply(reactor, frame, &self.config) {
            self.stats.count_close(cause);
        }
    }

    /// `--ws`: reads a client's bytes through its WebSocket layer (see
    /// [`Outbox::read_websocket`]). Returns the bytes used.
    pub(crate) fn read_websocket<R>(&mut self, reactor: &mut Reactor, id: EntryToken, data: &[u8], reader: R) -> usize
    where
        R: FnMut(&[u8]) -> usize,
    {
        let Some(outbox) = self.clients.get_mut(&id) else { return data.len() };
        let read = outbox.read_websocket(reactor, data, reader);
        self.stats.ws_pongs += read.pongs;
        match read.closed {
            Some(CloseReason::Handshake(_)) => self.stats.ws_refused += 1,
            Some(CloseReason::Protocol(_) | CloseReason::ReaderBacklog { .. }) => self.stats.dropped_bad_frame += 1,
            _ => {}
        }
        read.consumed
    }

    /// `fragment`: whether the client has pieces waiting (its `writable()`).
    pub(crate) fn wants_write(&self, id: EntryToken) -> bool {
        self.clients.get(&id).is_some_and(Outbox::wants_write)
    }

    /// `fragment`: writes the client's next piece (its `handle_write`).
    pub(crate) fn write_piece(&mut self, ctx: &mut Context<'_>) {
        if let Some(outbox) = self.clients.get_mut(&ctx.id()) {
            outbox.write_piece(ctx);
        }
    }

    /// The room's `live_stat` for a `loginres` (0 for a vanity id: it is
    /// no room).
    pub(crate) fn live_stat(&self, room: u64) -> u8 {
        if self.config.vanity.contains_key(&room) {
            return 0;
        }
        self.status.get(room, Instant::now()).live_stat()
    }

    /// Makes `room`'s status `status` now (see `StatusBoard::set`) and, if
    /// that is a change, tells its members at once.
    pub(crate) fn set_status(&mut self, reactor: &mut Reactor, room: u64, status: LiveStatus) {
        let now = Instant::now();
        if !self.status.set(room, status, now) {
            return;
        }
        log::info!("room {room}: status set to {status:?}");
        let Hub { rooms, clients, config, stats, corruptions, status: board, .. } = self;
        if let Some(room_state) = rooms.get_mut(&room) {
            let mut post = Post { reactor, clients, config, stats, corruptions };
            post.status(room_state, board.get(room, now), board.unix_ms(now));
        }
    }

    // ----- the periodic work -------------------------------------------------

    /// The traffic tick (see the module docs).
    pub(crate) fn tick(&mut self, reactor: &mut Reactor) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last_tick).min(MAX_CATCH_UP);
        self.last_tick = now;
        // Borrow the fields separately: rooms are walked while clients and
        // counters change.
        let Hub { rooms, clients, config, stats, corruptions, status: board, .. } = self;
        let rate = config.rate;
        let mut post = Post { reactor, clients, config, stats, corruptions };
        let mut frame = Vec::new();
        for (&id, room) in rooms.iter_mut() {
            if room.members.is_empty() {
                continue;
            }
            post.status(room, board.get(id, now), board.unix_ms(now));
            room.credit += rate * elapsed.as_secs_f64();
            while room.credit >= 1.0 && !room.members.is_empty() {
                room.credit -= 1.0;
                frame.clear();
                frame::encode_packet(&mut frame, SERVER_TO_CLIENT, &room.traffic.next_body());
                post.room_message(room, &frame);
            }
            if room.members.is_empty() {
                room.credit = 0.0;
            }
        }
        self.play(reactor, now);
    }

    /// `replay`: takes the lines the reader handed over, and plays those due.
    pub(crate) fn feed_playback(&mut self, reactor: &mut Reactor, fed: Fed) {
        if let Some(playback) = &mut self.playback {
            playback.feed(fed);
            self.play(reactor, Instant::now());
        }
    }

    /// `replay`: sends every recorded message due by `now` to its room's
    /// members (to nobody if it has none: as in a live room).
    fn play(&mut self, reactor: &mut Reactor, now: Instant) {
        let Hub { rooms, clients, config, stats, corruptions, playback, .. } = self;
        let Some(playback) = playback else { return };
        let mut post = Post { reactor, clients, config, stats, corruptions };
        while let Some(line) = playback.next_due(now) {
            post.stats.replayed += 1;
            match rooms.get_mut(&line.room).filter(|room| !room.members.is_empty()) {
                Some(room) => post.room_message(room, &line.frame),
                None => post.stats.replayed_unheard += 1,
            }
        }
        if let Some(tally) = playback.take_end() {
            tally.log(stats.replayed, stats.replayed_unheard);
        }
    }

    /// `coalesce`: writes every client's held frames.
    pub(crate) fn flush_held(&mut self, reactor: &mut Reactor) {
        for outbox in self.clients.values_mut().filter(|o| o.has_held()) {
            outbox.flush_held(reactor);
        }
    }

    /// `--ws`: pings every client, numbering the pings; every
    /// [`TEXT_EVERY_PINGS`]th round a text frame follows.
    pub(crate) fn ping_websockets(&mut self, reactor: &mut Reactor) {
        self.ping_rounds += 1;
        let payload = self.ping_rounds.to_string();
        let text = self.ping_rounds.is_multiple_of(TEXT_EVERY_PINGS);
        for outbox in self.clients.values_mut() {
            if outbox.ping(reactor, payload.as_bytes(), text) {
                self.stats.ws_pings += 1;
                self.stats.ws_texts += u64::from(text);
            }
        }
    }

    /// Logs one line of counters and rates.
    pub(crate) fn report(&mut self) {
        let now = Instant::now();
        let (then, messages_then, frames_then) = self.last_report;
        let secs = now.saturating_duration_since(then).as_secs_f64().max(1e-3);
        let s = self.snapshot();
        log::info!(
            "{} in {}; {:.1} room messages/s made, {:.1} frames/s sent; dropped so far: \
             {} silent, {} slow, {} bad frame; faults so far: {}, {}, {}",
            plural(s.clients as u64, "client"),
            plural(s.rooms as u64, "room"),
            (s.room_messages - messages_then) as f64 / secs,
            (s.frames_sent - frames_then) as f64 / secs,
            s.dropped_idle,
            s.dropped_slow,
            s.dropped_bad_frame,
            plural(s.fault_drops, "drop"),
            plural(s.fault_corruptions, "corruption"),
            plural(s.fault_stalls, "stall"),
        );
        if self.config.websocket.is_some() {
            log::info!(
                "WebSocket so far: {}, {}, {} sent; {} refused",
                plural(s.ws_pings, "ping"),
                plural(s.ws_pongs, "pong"),
                plural(s.ws_texts, "text frame"),
                plural(s.ws_refused, "upgrade")
            );
        }
        if self.playback.is_some() {
            log::info!(
                "recording so far: {} played, {} while nobody was in their room",
                plural(s.replayed, "message"),
                s.replayed_unheard
            );
        }
        self.last_report = (now, s.room_messages, s.frames_sent);
    }

    // ----- what the SimServer handle shows ----------------------------------

    /// The counters, with the current numbers of clients and active rooms.
    pub(crate) fn snapshot(&self) -> SimStats {
        SimStats {
            clients: self.clients.len(),
            rooms: self.rooms.values().filter(|r| !r.members.is_empty()).count(),
            ..self.stats.clone()
        }
    }

    /// How many clients are in room `room` now.
    pub(crate) fn members(&self, room: u64) -> usize {
        self.rooms.get(&room).map_or(0, |r| r.members.len())
    }

    /// The last sequence number room `room` gave out.
    pub(crate) fn room_messages(&self, room: u64) -> Option<u64> {
        self.rooms.get(&room).map(|r| r.traffic.last_seq())
    }

    /// Sends every client `last_words` (and over WebSocket a close frame
    /// "going away") and closes it gracefully.
    pub(crate) fn close_all(&mut self, reactor: &mut Reactor, last_words: &[u8]) {
        for outbox in self.clients.values_mut() {
            outbox.reply(reactor, last_words, &self.config);
            outbox.close_websocket(reactor, close_code::GOING_AWAY, "server closing");
            outbox.close(reactor);
        }
    }
}

/// What queuing a room message touches: the hub without its rooms (which
/// are being walked meanwhile).
struct Post<'a> {
    reactor: &'a mut Reactor,
    clients: &'a mut HashMap<EntryToken, Outbox>,
    config: &'a SimConfig,
    stats: &'a mut SimStats,
    corruptions: &'a mut u64,
}

impl Post<'_> {
    /// Queues `frame`, made once, for every member of `room`; a member
    /// this closes (a fault, or too slow) leaves the room at once.
    fn room_message(&mut self, room: &mut Room, frame: &[u8]) {
        let Post { reactor, clients, config, stats, corruptions } = self;
        stats.room_messages += 1;
        room.members.retain(|&id| {
            let Some(outbox) = clients.get_mut(&id) else { return false };
            match outbox.room_frame(reactor, frame, config, corruptions) {
                Delivery::Sent => stats.frames_sent += 1,
                Delivery::Skipped => {}
                Delivery::Stalled => {
                    stats.frames_sent += 1;
                    stats.fault_stalls += 1;
                }
                Delivery::Closed(cause) => {
                    if cause != CloseCause::SlowConsumer {
                        stats.frames_sent += 1;
                    }
                    stats.count_close(cause);
                    return false;
                }
            }
            true
        });
    }

    /// Sends `room`'s members one `rss` if its status is no longer the one
    /// they were told of.
    fn status(&mut self, room: &mut Room, now: Broadcast, at_unix_ms: u64) {
        if now.status == room.announced || room.members.is_empty() {
            return;
        }
        room.announced = now.status;
        log::debug!(
            "room {}: now {:?}; telling {}",
            room.traffic.room(),
            now.status,
            plural(room.members.len() as u64, "member")
        );
        let mut frame = Vec::with_capacity(200);
        frame::encode_packet(&mut frame, SERVER_TO_CLIENT, &room.traffic.status_body(now, at_unix_ms));
        self.room_message(room, &frame);
    }
}

impl SimStats {
    fn count_close(&mut self, cause: CloseCause) {
        match cause {
            CloseCause::SlowConsumer => self.dropped_slow += 1,
            CloseCause::DropFault => self.fault_drops += 1,
            CloseCause::Corrupted(_) => self.fault_corruptions += 1,
        }
    }
}

//! The rooms on the reactor: what each room's life cycle decides, carried
//! out — connects, timers, logouts, the pacer's queue — and what happens
//! on the reactor fed back to it as events.
//!
//! Every event goes through [`MonitorState::handle`], which runs the life
//! cycle and then its actions. An action can cause an event at once (a
//! connect that cannot even create a socket is a closed attempt), so the
//! events wait in a small queue (first in, first out) and are handled in
//! order, never nested.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::douyu::ClientSession;
use crate::plural::plural;
use crate::reactor::{EntryToken, Reactor};
use crate::websocket::{Limits, WebSocket};

use super::MonitorState;
use super::endpoint::Endpoint;
use super::endpoint::Transport;
use super::lifecycle::{Action, CloseReason, Env, Event, Opening};
use super::resolve::Answer;
use super::room::{Link, RoomConn, TIMER_LOGOUT};

/// How far connection `conn` to `endpoint` has opened, from what the
/// reactor knows of it: its peer once the TCP connect is done, its TLS
/// session once that handshake is; what is left is the WebSocket upgrade
/// (a TCP room counts as connected as soon as the socket is).
fn opening(reactor: &Reactor, conn: EntryToken, endpoint: &Endpoint) -> Opening {
    if reactor.peer_addr(conn).is_none() {
        Opening::Connect
    } else if endpoint.uses_tls() && reactor.tls_info(conn).is_none() {
        Opening::Tls
    } else {
        Opening::WebSocket
    }
}

impl MonitorState {
    /// Feeds `event` to `room`'s life cycle and carries out what it decides.
    pub(crate) fn handle(this: &Rc<RefCell<MonitorState>>, reactor: &mut Reactor, room: u64, event: Event) {
        let mut events = VecDeque::from([(room, event)]);
        let mut actions = Vec::new();
        while let Some((room, event)) = events.pop_front() {
            let mut state = this.borrow_mut();
            let state = &mut *state;
            let Some(slot) = state.rooms.get_mut(&room) else { continue };
            let opening = match (&event, slot.conn, slot.server) {
                (Event::Timer, Some((_, conn)), Some(server)) => opening(reactor, conn, state.addresses.server(server)),
                _ => Opening::Connect,
            };
            let mut env = Env {
                now: Instant::now(),
                addresses: state.addresses.all().len(),
                opening,
                timing: &state.timing,
                rng: &mut state.rng,
            };
            slot.life.handle(event, &mut env, &mut actions);
            for action in actions.drain(..) {
                if let Some(next) = state.apply(this, reactor, room, action) {
                    events.push_back((room, next));
                }
            }
        }
    }

    /// Carries out one action for `room`; returns an event it caused at once.
    fn apply(
        &mut self,
        this: &Rc<RefCell<MonitorState>>,
        reactor: &mut Reactor,
        room: u64,
        action: Action,
    ) -> Option<Event> {
        let slot = self.rooms.get_mut(&room)?;
        match action {
            Action::LookUp => {
                let this = this.clone();
                // Not inside the life cycle's turn: the look-up may answer
                // (with an error) at once.
                reactor.call_soon(move |reactor| MonitorState::look_up_id(&this, reactor, room));
            }
            // While the monitor stops, the room waits: the shutdown stops it.
            Action::QueueConnect if self.shutting_down => {}
            Action::QueueConnect => {
                self.connect_queue.push(room);
                self.ensure_pacer(reactor);
            }
            Action::Connect { attempt, address } => {
                let (address, server) = *self.addresses.all().get(address)?;
                let endpoint = self.addresses.server(server);
                // Rooms joining together get their heartbeats spread.
                let session =
                    ClientSession::new(slot.id(room), self.config.session).with_heartbeat_jitter(self.rng.next_f64());
                let link = match &endpoint.transport {
                    Transport::Tcp => Link::Direct,
                    Transport::WebSocket { path, .. } => {
                        let request = endpoint.upgrade_request(path);
                        let key =
                            (u128::from(self.rng.next_u64()) << 64 | u128::from(self.rng.next_u64())).to_le_bytes();
                        match WebSocket::client(&request, Limits::default(), key, self.rng.next_u64()) {
                            Ok(ws) => Link::WebSocket(Box::new(ws)),
                            Err(e) => {
                                let reason =
                                    CloseReason::Io { kind: io::ErrorKind::InvalidInput, message: e.to_string() };
                                return Some(Event::Closed { attempt, reason });
                            }
                        }
                    }
                };
                let conn = RoomConn::new(room, attempt, session, link, this.clone());
                let opened = match &self.tls {
                    Some(tls) if endpoint.uses_tls() => reactor.connect_tls(address, tls, &endpoint.host, conn),
                    _ => reactor.connect(address, conn),
                };
                match opened {
                    Ok(id) => {
                        log::debug!("room {room}: connecting to {endpoint} at {address}");
                        slot.conn = Some((attempt, id));
                        slot.server = Some(server);
                    }
                    // No socket at all (no route, out of descriptors): an attempt that failed.
                    Err(e) => return Some(Event::Closed { attempt, reason: CloseReason::io(&e) }),
                }
            }
            Action::SetTimer(at) => {
                if let Some(timer) = slot.timer.take() {
                    reactor.remove_timeout(timer);
                }
                let weak = self.this.clone();
                slot.timer = Some(reactor.call_at(at, move |reactor| {
                    if let Some(state) = weak.upgrade() {
                        if let Some(slot) = state.borrow_mut().rooms.get_mut(&room) {
                            slot.timer = None;
                        }
                        MonitorState::handle(&state, reactor, room, Event::Timer);
                    }
                }));
            }
            Action::CancelTimer => {
                if let Some(timer) = slot.timer.take() {
                    reactor.remove_timeout(timer);
                }
            }
            Action::LogOut { attempt } => {
                if let Some((_, conn)) = slot.conn.filter(|(a, _)| *a == attempt) {
                    reactor.set_timer(conn, Instant::now(), TIMER_LOGOUT);
                }
            }
            Action::Abort { attempt } => {
                if let Some((_, conn)) = slot.conn.filter(|(a, _)| *a == attempt) {
                    reactor.abort(conn);
                    slot.conn = None;
                    slot.sequence.connection_ended();
                }
            }
            Action::Forget => {
                slot.cancel_timers(reactor);
                self.rooms.remove(&room);
            }
            Action::Retry { reason, delay } => {
                self.stats.reconnects += 1;
                let when = if delay.is_zero() {
                    "trying the next address".to_string()
                } else {
                    format!("reconnecting in {:.1} s", delay.as_secs_f64())
                };
                match &reason {
                    CloseReason::Session(crate::douyu::CloseReason::BadRoomId) => {
                        log::error!("room {room}: closed ({reason}) — use the room's real numeric id; {when}")
                    }
                    // A server that breaks its protocol (Douyu's or the
                    // WebSocket's) is news; a refused or dropped connection
                    // is what failover and backoff exist for.
                    CloseReason::Session(crate::douyu::CloseReason::Protocol(_))
                    | CloseReason::WebSocket(crate::websocket::CloseReason::Protocol(_)) => {
                        log::warn!("room {room}: closed ({reason}); {when}")
                    }
                    _ => log::info!("room {room}: closed ({reason}); {when}"),
                }
            }
            Action::AddressesExhausted => self.resolve(self.config.resolution.min_gap),
            Action::JoinAsWritten => {
                // Not loudly while look-ups queue: they are paced, and with
                // many rooms most join as written first.
                let queued = self.fetcher.as_ref().map_or(0, |fetcher| fetcher.waiting());
                let waited = self.timing.look_up_wait.unwrap_or_default().as_secs_f64();
                if queued > 0 {
                    log::debug!("room {room}: joining it as written while look-ups queue ({queued} waiting)");
                } else {
                    log::info!(
                        "room {room}: its real id is not known after {waited} s (the look-up is slow); \
                         joining it as written meanwhile"
                    );
                }
            }
            Action::CheckStatus => {
                let this = this.clone();
                reactor.call_soon(move |reactor| MonitorState::check_status(&this, reactor, room));
            }
            Action::SayJoined => {
                if let Some(server) = slot.server {
                    let endpoint = self.addresses.server(server);
                    if server == 0 {
                        log::debug!("room {room}: joined via {endpoint}");
                    } else {
                        log::info!("room {room}: joined via {endpoint}");
                    }
                }
            }
        }
        None
    }

    /// A room's connection closed (reported by its `RoomConn`).
    pub(crate) fn connection_closed(
        this: &Rc<RefCell<MonitorState>>,
        reactor: &mut Reactor,
        room: u64,
        attempt: u64,
        conn: EntryToken,
        reason: CloseReason,
    ) {
        if let Some(slot) = this.borrow_mut().rooms.get_mut(&room).filter(|slot| slot.conn == Some((attempt, conn))) {
            slot.conn = None;
            slot.sequence.connection_ended();
        }
        MonitorState::handle(this, reactor, room, Event::Closed { attempt, reason });
    }

    /// Starts the pacer if rooms wait and it is not running. It stops by
    /// itself when the queue is empty, so an idle monitor has no timer.
    fn ensure_pacer(&mut self, reactor: &mut Reactor) {
        if self.pacer_scheduled || self.connect_queue.is_empty() || self.addresses.all().is_empty() {
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

    /// Gives the rooms at the front of the queue their turn, as many as
    /// the pacer allows now, and comes back when it allows more.
    fn run_pacer(this: &Rc<RefCell<MonitorState>>, reactor: &mut Reactor) {
        let now = Instant::now();
        this.borrow_mut().pacer_scheduled = false;
        let mut first = true;
        loop {
            let room = {
                let mut state = this.borrow_mut();
                let state = &mut *state;
                let rooms = &state.rooms;
                let waits = |room| rooms.get(&room).is_some_and(|slot| slot.life.waits_for_turn());
                let Some(room) = state.connect_queue.next(now, waits) else { break };
                if first {
                    // Rooms connect: the addresses they use should not be old.
                    let refresh = state.config.resolution.refresh;
                    state.resolve(refresh);
                    first = false;
                }
                room
            };
            // One at a time: a turn may queue the room again, or make an
            // entry further back stale.
            MonitorState::handle(this, reactor, room, Event::PacerTurn);
        }
        let mut state = this.borrow_mut();
        if !state.connect_queue.is_empty() && !state.pacer_scheduled {
            state.pacer_scheduled = true;
            let weak = Rc::downgrade(this);
            reactor.call_at(state.connect_queue.next_turn(now), move |reactor| {
                if let Some(state) = weak.upgrade() {
                    MonitorState::run_pacer(&state, reactor);
                }
            });
        }
    }

    /// Resolves the server names on a helper thread, unless a resolution is
    /// under way or one started less than `unless_within` ago.
    pub(super) fn resolve(&mut self, unless_within: Duration) {
        if let Some(sender) = &self.resolver {
            self.addresses.resolve(Instant::now(), unless_within, sender);
        }
    }

    /// The DNS thread answered: new addresses serve the next connects.
    /// While nothing resolves at all (the network is not up yet, say), it
    /// tries again with a growing pause, up to a minute.
    pub(super) fn addresses_resolved(this: &Rc<RefCell<MonitorState>>, reactor: &mut Reactor, answers: Vec<Answer>) {
        let (changed, count) = {
            let mut state = this.borrow_mut();
            let changed = state.addresses.update(answers);
            (changed, state.addresses.all().len())
        };
        if count == 0 {
            let delay = {
                let mut state = this.borrow_mut();
                let delay = state.resolve_retry;
                state.resolve_retry = (delay * 2).min(Duration::from_secs(60));
                delay
            };
            log::error!("no server address could be resolved; trying again in {delay:?}");
            let weak = Rc::downgrade(this);
            reactor.call_later(delay, move |_| {
                if let Some(state) = weak.upgrade() {
                    state.borrow_mut().resolve(Duration::ZERO);
                }
            });
            return;
        }
        this.borrow_mut().resolve_retry = Duration::from_secs(1);
        if !changed {
            return;
        }
        log::info!("servers resolved to {}", plural(count as u64, "address"));
        let rooms: Vec<u64> = this.borrow().rooms.keys().copied().collect();
        for room in rooms {
            MonitorState::handle(this, reactor, room, Event::AddressesChanged);
        }
        this.borrow_mut().ensure_pacer(reactor);
    }
}

//! The server side of one client connection: a reactor [`Dispatcher`].
//!
//! It reads the client's requests and answers them:
//!
//! | request | answer |
//! |---|---|
//! | `loginreq` (`roomid`) | `loginres`, then `pingreq` |
//! | `joingroup` (`rid`, `gid`) | nothing; room traffic starts on the next tick |
//! | `mrkl` | `mrkl` (unless stalled by a fault) |
//! | `logout` | close gracefully |
//! | a bad room id | `error` with code 204, then close |
//! | anything else | ignored (logged at debug level) |
//!
//! Frames are cut straight out of the reactor's buffer with
//! `frame::decode_packet`: `handle_read` returns how many bytes it used, and
//! a partial frame stays with the reactor until the rest arrives. A frame
//! that is not valid (any `FrameError`) drops this client only.
//!
//! # Heartbeat enforcement
//!
//! A client that sends no bytes at all for `heartbeat_timeout` is dropped.
//! Re-arming a timer on every message would cost a timer-wheel update per
//! read for thousands of clients; instead each read only stores
//! `last_seen`, and a single timer per client checks it when it fires: if
//! the client was silent long enough it is dropped, otherwise the timer is
//! set again for `last_seen + timeout`, the earliest moment it could be.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::hub::Hub;
use crate::douyu::Message;
use crate::douyu::frame::{self, DecoderConfig, SERVER_TO_CLIENT};
use crate::douyu::stt;
use crate::reactor::{ConnId, Context, Dispatcher};

/// The tag of the heartbeat timer (the only timer a client has).
const HEARTBEAT_TIMER: u64 = 1;

/// One client connection (see the module docs).
pub(crate) struct ClientConn {
    hub: Rc<RefCell<Hub>>,
    /// Known from `handle_connect` on; `writable()` needs it.
    id: Option<ConnId>,
    peer: SocketAddr,
    /// Copied from the config, so the hot paths need not borrow the hub.
    heartbeat_timeout: Duration,
    fragment: bool,
    /// When the client last sent any byte.
    last_seen: Instant,
    /// The `roomid` of `loginreq`: the room `joingroup` joins if it has no `rid`.
    login_room: Option<u64>,
    /// This client's number, used as its `sessionid`.
    number: u64,
}

impl ClientConn {
    pub(crate) fn new(hub: Rc<RefCell<Hub>>, peer: SocketAddr) -> Self {
        let (heartbeat_timeout, fragment) = {
            let hub = hub.borrow();
            (hub.config.heartbeat_timeout, hub.config.faults.fragment)
        };
        ClientConn {
            hub,
            id: None,
            peer,
            heartbeat_timeout,
            fragment,
            last_seen: Instant::now(),
            login_room: None,
            number: 0,
        }
    }

    /// Answers one request. Returns `false` once the connection is closing
    /// (the rest of the input is then ignored).
    fn on_request(&mut self, ctx: &mut Context<'_>, body: &str) -> bool {
        let id = ctx.id();
        let request = Message::decode(body);
        let room_field = |key| request.get(key).and_then(|v| v.parse::<u64>().ok()).filter(|&room| room > 0);
        match request.msg_type() {
            "loginreq" => {
                let Some(room) = room_field("roomid") else {
                    return self.refuse_room(ctx, request.get("roomid"));
                };
                self.login_room = Some(room);
                let live_stat = self.hub.borrow().live_stat(room);
                let mut reply = Vec::new();
                frame::encode_packet(&mut reply, SERVER_TO_CLIENT, &login_response(self.number, live_stat, self.peer));
                frame::encode_packet(&mut reply, SERVER_TO_CLIENT, &ping_request());
                self.hub.borrow_mut().reply(ctx.reactor(), id, &reply);
                log::debug!("client {id} ({}): logged in to room {room}", self.peer);
            }
            "joingroup" => {
                let Some(room) = room_field("rid").or(self.login_room) else {
                    return self.refuse_room(ctx, request.get("rid"));
                };
                self.hub.borrow_mut().join(id, room);
            }
            "mrkl" => {
                let mut echo = Vec::with_capacity(24);
                frame::encode_packet(&mut echo, SERVER_TO_CLIENT, "type@=mrkl/");
                self.hub.borrow_mut().reply(ctx.reactor(), id, &echo);
            }
            "logout" => {
                log::debug!("client {id} ({}): logged out", self.peer);
                self.hub.borrow_mut().stats.logouts += 1;
                ctx.close();
                return false;
            }
            other => log::debug!("client {id} ({}): ignoring a request of type {other:?}", self.peer),
        }
        true
    }

    /// A missing or non-numeric room id: `error` 204, as Douyu answers, then close.
    fn refuse_room(&mut self, ctx: &mut Context<'_>, given: Option<&str>) -> bool {
        let id = ctx.id();
        log::info!("client {id} ({}): bad room id {given:?}; answering error 204 and closing", self.peer);
        let mut error = Vec::new();
        frame::encode_packet(&mut error, SERVER_TO_CLIENT, "type@=error/code@=204/");
        self.hub.borrow_mut().reply(ctx.reactor(), id, &error);
        ctx.close();
        false
    }
}

impl Dispatcher for ClientConn {
    fn writable(&self) -> bool {
        // Only `fragment` writes through handle_write (the pull pattern).
        self.fragment && self.id.is_some_and(|id| self.hub.borrow().wants_write(id))
    }

    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        self.id = Some(ctx.id());
        self.number = self.hub.borrow_mut().add_client(ctx.id(), self.peer);
        self.last_seen = Instant::now();
        ctx.set_timer(self.heartbeat_timeout, HEARTBEAT_TIMER);
        log::debug!("client {} ({}): connected", ctx.id(), self.peer);
    }

    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        self.last_seen = Instant::now();
        let config = DecoderConfig::server();
        let mut consumed = 0;
        loop {
            match frame::decode_packet(&data[consumed..], &config) {
                Ok(Some((packet, used))) => {
                    consumed += used;
                    if !self.on_request(ctx, &packet.body) {
                        return data.len();
                    }
                }
                // A partial frame (or nothing): the reactor keeps the rest.
                Ok(None) => return consumed,
                Err(error) => {
                    log::info!("client {} ({}): bad frame: {error}; dropping this client", ctx.id(), self.peer);
                    self.hub.borrow_mut().stats.dropped_bad_frame += 1;
                    ctx.abort();
                    return data.len();
                }
            }
        }
    }

    fn handle_write(&mut self, ctx: &mut Context<'_>) {
        self.hub.borrow_mut().write_piece(ctx);
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_>, _tag: u64) {
        let silent_for = Instant::now().saturating_duration_since(self.last_seen);
        if silent_for >= self.heartbeat_timeout {
            log::info!(
                "client {} ({}): silent for {:.1} s (--heartbeat-timeout {} s); dropping it",
                ctx.id(),
                self.peer,
                silent_for.as_secs_f64(),
                self.heartbeat_timeout.as_secs_f64()
            );
            self.hub.borrow_mut().stats.dropped_idle += 1;
            ctx.close();
        } else {
            ctx.set_timer_at(self.last_seen + self.heartbeat_timeout, HEARTBEAT_TIMER);
        }
    }

    fn handle_error(&mut self, ctx: &mut Context<'_>, error: std::io::Error) {
        // Resets are routine for a server with many clients: not a warning.
        log::debug!("client {} ({}): {error}", ctx.id(), self.peer);
    }

    fn handle_close(&mut self, ctx: &mut Context<'_>) {
        self.hub.borrow_mut().remove_client(ctx.id());
        log::debug!("client {} ({}): closed", ctx.id(), self.peer);
    }
}

/// A `loginres` like the captured one in protocol.md (anonymous user).
fn login_response(session_id: u64, live_stat: u8, peer: SocketAddr) -> String {
    let mut body = String::with_capacity(400);
    let session_id = session_id.to_string();
    let live_stat = live_stat.to_string();
    let ip = peer.ip().to_string();
    let fields = [
        ("type", "loginres"),
        ("userid", "0"),
        ("roomgroup", "0"),
        ("pg", "0"),
        ("sessionid", &session_id),
        ("username", ""),
        ("nickname", ""),
        ("live_stat", &live_stat),
        ("is_illegal", "0"),
        ("ill_ct", ""),
        ("ill_ts", "0"),
        ("now", "0"),
        ("ps", "0"),
        ("es", "0"),
        ("it", "0"),
        ("its", "0"),
        ("npv", "0"),
        ("best_dlev", "0"),
        ("cur_lev", "0"),
        ("nrc", "3371353904"),
        ("ih", "0"),
        ("sid", "70071"),
        ("sahf", "0"),
        ("sceneid", "0"),
        ("newrg", "0"),
        ("regts", "0"),
        ("ip", &ip),
        ("rn", "0"),
        ("rct", "0"),
    ];
    for (key, value) in fields {
        stt::push_field(&mut body, key, value);
    }
    body
}

/// `pingreq` with the server's clock in milliseconds.
fn ping_request() -> String {
    let tick = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("type@=pingreq/tick@={tick}/")
}

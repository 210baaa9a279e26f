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
//! Over WebSocket (`--ws`) the bytes go through the client's WebSocket
//! layer first (`sim::transport`), which hands its payload stream to the
//! same cutting; a partial frame then waits in the layer. The layer lives
//! in the hub, so the requests are collected while it reads and answered
//! after.
//!
//! # Heartbeat enforcement
//!
//! A client that sends no bytes at all for `heartbeat_timeout` is dropped.
//! Each read moves the client's one idle timer to `heartbeat_timeout` from
//! now ([`DeadlineTimer`]: a later deadline is one write in the timer
//! wheel, not a cancel and an insert). Until the first bytes, a timer set
//! at the accept counts instead: a client stuck in its TLS handshake has
//! not connected yet, and is dropped all the same.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;

use super::hub::Hub;
use crate::douyu::Message;
use crate::douyu::frame::{self, DecoderConfig, FrameError, SERVER_TO_CLIENT};
use crate::douyu::stt;
use crate::reactor::{Context, DeadlineTimer, Dispatcher, EntryToken, Reactor, TlsServerConfig};

/// The tag of the idle timer, moved by every read.
const HEARTBEAT_TIMER: u64 = 1;
/// The tag of the timer set at the accept, for a client that never sends.
const ACCEPT_TIMER: u64 = 2;

/// One client connection (see the module docs).
pub(crate) struct ClientConn {
    hub: Rc<RefCell<Hub>>,
    /// Known from `handle_connect` on; `writable()` needs it.
    id: Option<EntryToken>,
    peer: SocketAddr,
    /// Copied from the config, so the hot paths need not borrow the hub.
    heartbeat_timeout: Duration,
    fragment: bool,
    websocket: bool,
    /// When the client last sent any byte (or was accepted).
    last_seen: Instant,
    /// Fires `heartbeat_timeout` after the last byte.
    idle: DeadlineTimer,
    /// Some bytes came: the idle timer counts, not the accept's.
    spoke: bool,
    /// The `roomid` of `loginreq`: the room `joingroup` joins if it has no `rid`.
    login_room: Option<u64>,
    /// This client's number, used as its `sessionid`.
    number: u64,
}

impl ClientConn {
    /// Attaches an accepted connection, as the server of a TLS handshake if
    /// `tls` is given, and starts its heartbeat timer at once.
    pub(crate) fn attach(
        reactor: &mut Reactor,
        stream: TcpStream,
        tls: Option<&TlsServerConfig>,
        hub: Rc<RefCell<Hub>>,
        peer: SocketAddr,
    ) -> io::Result<()> {
        let (heartbeat_timeout, fragment, websocket) = {
            let hub = hub.borrow();
            (hub.config.heartbeat_timeout, hub.config.faults.fragment, hub.config.websocket.is_some())
        };
        let conn = ClientConn {
            hub,
            id: None,
            peer,
            heartbeat_timeout,
            fragment,
            websocket,
            last_seen: Instant::now(),
            idle: DeadlineTimer::new(),
            spoke: false,
            login_room: None,
            number: 0,
        };
        let deadline = conn.last_seen + heartbeat_timeout;
        let id = match tls {
            Some(tls) => reactor.add_tls_stream(stream, tls, conn)?,
            None => reactor.add_stream(stream, conn)?,
        };
        reactor.set_timer(id, deadline, ACCEPT_TIMER);
        Ok(())
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

    /// Cuts the requests out of `data` and answers them.
    fn answer_packets(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        match cut_packets(data, |body| self.on_request(ctx, body)) {
            Ok(used) => used,
            Err(error) => {
                self.drop_for_bad_frame(ctx, error);
                data.len()
            }
        }
    }

    /// `--ws`: the WebSocket layer reads, its payloads are cut into
    /// requests, and those are answered once the layer (in the hub) is done.
    fn answer_websocket(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let mut requests = Vec::new();
        let mut bad_frame = None;
        let id = ctx.id();
        let consumed = self.hub.borrow_mut().read_websocket(ctx.reactor(), id, data, |payload| {
            if bad_frame.is_some() {
                return payload.len();
            }
            cut_packets(payload, |body| {
                requests.push(body.to_owned());
                true
            })
            .unwrap_or_else(|error| {
                bad_frame = Some(error);
                payload.len()
            })
        });
        for body in &requests {
            if !self.on_request(ctx, body) {
                return data.len();
            }
        }
        if let Some(error) = bad_frame {
            self.drop_for_bad_frame(ctx, error);
            return data.len();
        }
        consumed
    }

    fn drop_for_bad_frame(&mut self, ctx: &mut Context<'_>, error: FrameError) {
        log::info!("client {} ({}): bad frame: {error}; dropping this client", ctx.id(), self.peer);
        self.hub.borrow_mut().stats.dropped_bad_frame += 1;
        ctx.abort();
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
        match ctx.tls_info() {
            Some(tls) => log::debug!("client {} ({}): connected over {tls}", ctx.id(), self.peer),
            None => log::debug!("client {} ({}): connected", ctx.id(), self.peer),
        }
    }

    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        self.last_seen = Instant::now();
        self.spoke = true;
        self.idle.set(ctx, Some(self.last_seen + self.heartbeat_timeout), HEARTBEAT_TIMER);
        if self.websocket { self.answer_websocket(ctx, data) } else { self.answer_packets(ctx, data) }
    }

    fn handle_write(&mut self, ctx: &mut Context<'_>) {
        self.hub.borrow_mut().write_piece(ctx);
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_>, tag: u64) {
        match tag {
            HEARTBEAT_TIMER => self.idle.fired(),
            _ if self.spoke => return, // the accept's timer: the idle timer counts now
            _ => {}
        }
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
        } else if tag == HEARTBEAT_TIMER {
            // Not silent that long after all: wait out the rest.
            self.idle.set(ctx, Some(self.last_seen + self.heartbeat_timeout), HEARTBEAT_TIMER);
        }
    }

    fn handle_error(&mut self, ctx: &mut Context<'_>, error: std::io::Error) {
        if self.id.is_none() {
            // A TLS handshake that failed ("no shared cipher"): what a
            // client developer needs to see.
            log::info!("client {} ({}): {error}", ctx.id(), self.peer);
        } else {
            // Resets are routine for a server with many clients: not a warning.
            log::debug!("client {} ({}): {error}", ctx.id(), self.peer);
        }
    }

    fn handle_close(&mut self, ctx: &mut Context<'_>) {
        self.hub.borrow_mut().remove_client(ctx.id());
        log::debug!("client {} ({}): closed", ctx.id(), self.peer);
    }
}

/// Cuts whole request packets off the front of `data` and hands each body
/// to `each` until it returns false (the connection is closing). Returns
/// the bytes used: all of them once `each` said stop, otherwise up to the
/// start of a partial packet (the rest waits for more bytes).
fn cut_packets(data: &[u8], mut each: impl FnMut(&str) -> bool) -> Result<usize, FrameError> {
    let config = DecoderConfig::server();
    let mut used = 0;
    while let Some((packet, len)) = frame::decode_packet(&data[used..], &config)? {
        used += len;
        if !each(&packet.body) {
            return Ok(data.len());
        }
    }
    Ok(used)
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

//! The client side of one room's connection, as a sans-IO state machine.
//!
//! [`ClientSession`] does no I/O and never reads a clock. Its owner (the
//! daemon's reactor, or a test) feeds it *inputs* — "connected", "these
//! bytes arrived", "a deadline passed", each with the current `Instant` —
//! and drains its *outputs*: bytes to send ([`ClientSession::poll_transmit`]),
//! events ([`ClientSession::poll_event`]) and when to wake it next
//! ([`ClientSession::next_deadline`]). This is the shape of quinn-proto's
//! `Connection`: the protocol logic can be tested with a fake clock and
//! byte vectors, and the same code runs under any event loop. An owner
//! that handles many messages takes each one as it is decoded, borrowed
//! from a buffer it lends, instead of from the event queue
//! ([`ClientSession::on_bytes_with`]).
//!
//! ```text
//!  Connecting ──on_connected──▶ LoggingIn ──loginres──▶ Joined
//!      │         sends loginreq     │      sends joingroup │  sends mrkl every 45 s
//!      └────────────────────────────┴──────────────────────┴──▶ Closed(reason)
//! ```
//!
//! Three deadlines drive it:
//! - **login**: no `loginres` within `login_timeout` of connecting → close;
//! - **heartbeat**: `mrkl` every `heartbeat`, the first one `heartbeat` after
//!   `loginres`;
//! - **idle**: no bytes at all for `idle_timeout` → close, the caller
//!   reconnects (a silent TCP connection may be dead without anyone saying so).
//!
//! A session is one connection: to reconnect, build a new one.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::frame::{self, DecoderConfig, FrameError};
use super::message::{ErrorKind, LiveStatus, MASSIVE_GROUP, Message, MessageView, Request};
use crate::settings::{SettingError, duration_within};

/// Timing and limits of a [`ClientSession`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Interval between `mrkl` heartbeats (45 s).
    pub heartbeat: Duration,
    /// How long to wait for `loginres` after connecting (15 s).
    pub login_timeout: Duration,
    /// Close when nothing at all was received for this long (120 s).
    pub idle_timeout: Duration,
    /// Largest accepted packet length field (1 MiB).
    pub max_frame: usize,
    /// The group to join (-9999: all messages).
    pub group: i64,
}

/// The shortest heartbeat interval accepted. Douyu's own clients beat every
/// 45 s; a beat every fraction of a second per room would only load the
/// server (and, with thousands of rooms, the machine).
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(250);

/// The shortest login timeout accepted: a server needs a moment to answer.
pub const MIN_LOGIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest any of a session's durations may be: one day. (Longer is a
/// typo; and deadlines stay far from the end of the clock.)
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

impl SessionConfig {
    /// Checks the settings against each other and against the limits above;
    /// the error names the setting. A `heartbeat` must be shorter than the
    /// `idle_timeout`, or a quiet room times out between two beats.
    pub fn validate(&self) -> Result<(), SettingError> {
        duration_within("heartbeat", self.heartbeat, MIN_HEARTBEAT, MAX_DURATION)?;
        duration_within("login_timeout", self.login_timeout, MIN_LOGIN_TIMEOUT, MAX_DURATION)?;
        duration_within("idle_timeout", self.idle_timeout, MIN_HEARTBEAT, MAX_DURATION)?;
        if self.heartbeat >= self.idle_timeout {
            return Err(SettingError::new(
                "heartbeat",
                format!(
                    "heartbeat ({} s) must be shorter than idle_timeout ({} s), or quiet rooms time out between beats",
                    self.heartbeat.as_secs_f64(),
                    self.idle_timeout.as_secs_f64()
                ),
            ));
        }
        if self.max_frame < frame::HEADER_LEN {
            return Err(SettingError::new(
                "max_frame",
                format!("max_frame must be at least {} bytes", frame::HEADER_LEN),
            ));
        }
        Ok(())
    }
}

/// `now + delay`, or a deadline so far away it never comes if that does not
/// fit the clock (a session built with unchecked settings must not panic).
fn after(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay).or_else(|| now.checked_add(MAX_DURATION * 365)).unwrap_or(now)
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            heartbeat: Duration::from_secs(45),
            login_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(120),
            max_frame: frame::DEFAULT_MAX_LENGTH,
            group: MASSIVE_GROUP,
        }
    }
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Created; the socket is not connected yet.
    Connecting,
    /// `loginreq` sent, waiting for `loginres`.
    LoggingIn,
    /// `joingroup` sent: messages flow, heartbeats run.
    Joined,
    /// Finished; a `Close` event said why. Drop the connection.
    Closed,
}

/// Something the owner of a session should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// A message from the server. *Every* message is reported, including
    /// `loginres`, `pingreq`, `mrkl` and `error`, in arrival order.
    Message(Message),
    /// `loginres` arrived and `joingroup` was queued.
    Joined,
    /// The session is over. Send what `poll_transmit` still holds (a
    /// `logout` after [`ClientSession::shutdown`]) and close the socket.
    Close(CloseReason),
}

/// Why a session closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The owner called [`ClientSession::shutdown`].
    Shutdown,
    /// No `loginres` within `login_timeout`.
    LoginTimeout,
    /// Nothing received for `idle_timeout`.
    IdleTimeout,
    /// The server sent `error` (51 data transfer error, 52 closing, or any
    /// other code except 204).
    ServerError { code: Option<i64> },
    /// The server sent `error` 204: the room id is wrong. Reconnecting will
    /// not help; check the id (it must be the real one, not a vanity number).
    BadRoomId,
    /// The byte stream was not valid Douyu packets.
    Protocol(FrameError),
}

impl CloseReason {
    /// Whether connecting again may work: all but `Shutdown` and `BadRoomId`.
    pub fn should_reconnect(&self) -> bool {
        !matches!(self, CloseReason::Shutdown | CloseReason::BadRoomId)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Shutdown => write!(f, "shut down"),
            CloseReason::LoginTimeout => write!(f, "no login response in time"),
            CloseReason::IdleTimeout => write!(f, "nothing received for too long"),
            CloseReason::ServerError { code: Some(code) } => {
                write!(f, "server error {code}")
            }
            CloseReason::ServerError { code: None } => write!(f, "server error without code"),
            CloseReason::BadRoomId => write!(f, "server error 204: bad room id"),
            CloseReason::Protocol(error) => write!(f, "protocol error: {error}"),
        }
    }
}

/// The client state machine for one room (see the module docs).
#[derive(Debug)]
pub struct ClientSession {
    room: u64,
    config: SessionConfig,
    decoder: DecoderConfig,
    state: SessionState,
    /// Last status announced by `rss`; `None` until one arrives.
    live: Option<LiveStatus>,
    /// Encoded packets waiting to be sent.
    transmit: Vec<u8>,
    events: VecDeque<SessionEvent>,
    login_deadline: Option<Instant>,
    heartbeat_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
    /// How many milliseconds sooner than `heartbeat` after joining the
    /// first beat comes (small: sessions are many).
    first_heartbeat_early_ms: u32,
    lossy_messages: u64,
}

/// The most [`ClientSession::with_heartbeat_jitter`] brings the first
/// heartbeat forward: a tenth of the interval.
pub const HEARTBEAT_JITTER: f64 = 0.1;

impl ClientSession {
    /// A session for `room`, not yet connected.
    pub fn new(room: u64, config: SessionConfig) -> Self {
        ClientSession {
            room,
            config,
            decoder: DecoderConfig { max_length: config.max_frame, ..DecoderConfig::client() },
            state: SessionState::Connecting,
            live: None,
            transmit: Vec::new(),
            events: VecDeque::new(),
            login_deadline: None,
            heartbeat_deadline: None,
            idle_deadline: None,
            first_heartbeat_early_ms: 0,
            lossy_messages: 0,
        }
    }

    /// Spreads heartbeats: the first one comes `heartbeat × (1 - u ×
    /// HEARTBEAT_JITTER)` after joining instead of `heartbeat`, and every
    /// later one keeps that phase. `u` in `[0, 1)` comes from the owner (a
    /// random number: the session has no randomness of its own). Rooms
    /// that join in the same millisecond (a pacer lets many through at
    /// each step) would otherwise beat in the same millisecond forever,
    /// and a burst of beats makes the last of them late.
    pub fn with_heartbeat_jitter(mut self, u: f64) -> Self {
        let fraction = if u.is_finite() { u.clamp(0.0, 1.0) * HEARTBEAT_JITTER } else { 0.0 };
        // Whole milliseconds (the reactor's timers tick in those); a
        // tenth of the longest heartbeat fits.
        self.first_heartbeat_early_ms = (self.config.heartbeat.as_secs_f64() * fraction * 1000.0) as u32;
        self
    }

    /// The socket is connected: queue `loginreq` and start the login and idle
    /// clocks. Ignored unless the session is `Connecting`.
    pub fn on_connected(&mut self, now: Instant) {
        if self.state != SessionState::Connecting {
            return;
        }
        Request::Login { room: self.room }.encode_into(&mut self.transmit);
        self.state = SessionState::LoggingIn;
        self.login_deadline = Some(after(now, self.config.login_timeout));
        self.idle_deadline = Some(after(now, self.config.idle_timeout));
    }

    /// New bytes arrived; `data` is everything received and not yet consumed
    /// (leftovers from earlier calls first).
    ///
    /// Decodes every whole packet at the front of `data` and returns how many
    /// bytes that was; the caller keeps the rest (a partial packet) and passes
    /// it again, followed by the next bytes, on the next call. Each packet
    /// is therefore handled exactly once, in order, however reads split it.
    /// Its message is queued as a [`SessionEvent::Message`], in order with
    /// the events it causes.
    ///
    /// Once the session is closed (including by an error in `data`) it
    /// wants no more bytes and returns `data.len()`.
    pub fn on_bytes(&mut self, data: &[u8], now: Instant) -> usize {
        let mut buffer = Message::default();
        self.receive(data, now, &mut buffer, |message, events| {
            events.push_back(SessionEvent::Message(message.clone()));
        })
    }

    /// [`on_bytes`](Self::on_bytes) for a busy owner: each message is
    /// decoded into `buffer` and handed to `deliver` at once, instead of
    /// being copied into the event queue. `buffer` is any message, reused
    /// from call to call (and across sessions), so that decoding allocates
    /// nothing once its buffers have grown. The events a message causes
    /// (`Joined`, `Close`) are queued as usual, so the owner sees the
    /// message first.
    pub fn on_bytes_with(
        &mut self,
        data: &[u8],
        now: Instant,
        buffer: &mut Message,
        mut deliver: impl FnMut(&Message),
    ) -> usize {
        self.receive(data, now, buffer, |message, _| deliver(message))
    }

    /// What both `on_bytes` do: `deliver` gets each message and the event
    /// queue.
    #[inline(always)]
    fn receive(
        &mut self,
        data: &[u8],
        now: Instant,
        buffer: &mut Message,
        mut deliver: impl FnMut(&Message, &mut VecDeque<SessionEvent>),
    ) -> usize {
        if self.state == SessionState::Closed {
            return data.len();
        }
        if !data.is_empty() {
            self.idle_deadline = Some(after(now, self.config.idle_timeout));
        }
        let mut consumed = 0;
        while self.state != SessionState::Closed {
            match frame::decode_packet(&data[consumed..], &self.decoder) {
                Ok(Some((packet, used))) => {
                    consumed += used;
                    if packet.lossy {
                        self.lossy_messages += 1;
                    }
                    buffer.decode_from(&packet.body);
                    self.on_message(buffer, now, &mut deliver);
                }
                Ok(None) => return consumed,
                Err(error) => self.close(CloseReason::Protocol(error)),
            }
        }
        data.len()
    }

    /// Reacts to one message, and reports it before what it causes.
    fn on_message(
        &mut self,
        message: &Message,
        now: Instant,
        deliver: &mut impl FnMut(&Message, &mut VecDeque<SessionEvent>),
    ) {
        let mut joined = false;
        let mut close = None;
        // Only three types change the session; building a view of the others
        // (a chat's, say) would scan all their fields for nothing.
        let view = match message.msg_type() {
            "loginres" | "rss" | "error" => message.view(),
            other => MessageView::Other(other),
        };
        match view {
            MessageView::LoginRes(_) if self.state == SessionState::LoggingIn => joined = true,
            MessageView::RoomStatus(rss) => self.live = rss.status.or(self.live),
            MessageView::Error(error) => {
                close = Some(match error.kind() {
                    ErrorKind::BadRoomId => CloseReason::BadRoomId,
                    _ => CloseReason::ServerError { code: error.code },
                });
            }
            _ => {}
        }
        deliver(message, &mut self.events);

        if joined {
            Request::JoinGroup { room: self.room, group: self.config.group }.encode_into(&mut self.transmit);
            self.state = SessionState::Joined;
            self.login_deadline = None;
            let early = Duration::from_millis(self.first_heartbeat_early_ms.into());
            self.heartbeat_deadline = Some(after(now, self.config.heartbeat.saturating_sub(early)));
            self.events.push_back(SessionEvent::Joined);
        }
        if let Some(reason) = close {
            self.close(reason);
        }
    }

    /// Call when `next_deadline` has passed (calling early is harmless).
    pub fn on_timeout(&mut self, now: Instant) {
        let due = |deadline: Option<Instant>| deadline.is_some_and(|d| d <= now);
        if due(self.login_deadline) {
            self.close(CloseReason::LoginTimeout);
        } else if due(self.idle_deadline) {
            self.close(CloseReason::IdleTimeout);
        } else if let Some(deadline) = self.heartbeat_deadline.filter(|&d| d <= now) {
            Request::Heartbeat.encode_into(&mut self.transmit);
            // Keep the beat regular (+45, +90, …) even if woken a bit late;
            // after a long stall, restart from now instead of catching up.
            let mut next = after(deadline, self.config.heartbeat);
            if next <= now {
                next = after(now, self.config.heartbeat);
            }
            self.heartbeat_deadline = Some(next);
        }
    }

    /// The owner has stopped reading on purpose (its output is backed up),
    /// so bytes may be waiting unread: silence since then is not the
    /// server's fault. Restarts the login and idle clocks from `now`.
    pub fn on_reading_paused(&mut self, now: Instant) {
        if self.login_deadline.is_some() {
            self.login_deadline = Some(after(now, self.config.login_timeout));
        }
        if self.idle_deadline.is_some() {
            self.idle_deadline = Some(after(now, self.config.idle_timeout));
        }
    }

    /// The earliest instant at which `on_timeout` has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.login_deadline, self.heartbeat_deadline, self.idle_deadline].into_iter().flatten().min()
    }

    /// Appends all bytes waiting to be sent to `out`; false if there were none.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        if self.transmit.is_empty() {
            return false;
        }
        out.append(&mut self.transmit);
        true
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        let event = self.events.pop_front();
        if self.events.is_empty() && self.events.capacity() > 0 {
            // Most sessions see a handful of events in their life (messages
            // go to `on_bytes_with`'s owner): an empty queue gives its room
            // back, rather than keep it for as long as the room is watched.
            self.events = VecDeque::new();
        }
        event
    }

    /// Leave politely: queue `logout` (if connected) and close with
    /// `Shutdown`. The caller sends the logout, then closes the socket.
    pub fn shutdown(&mut self) {
        match self.state {
            SessionState::Closed => {}
            SessionState::Connecting => self.close(CloseReason::Shutdown),
            SessionState::LoggingIn | SessionState::Joined => {
                self.close(CloseReason::Shutdown);
                Request::Logout.encode_into(&mut self.transmit);
            }
        }
    }

    /// Ends the session. Pending bytes are dropped: after an error there is
    /// no point sending a heartbeat. (`shutdown` queues its logout after.)
    fn close(&mut self, reason: CloseReason) {
        self.state = SessionState::Closed;
        self.login_deadline = None;
        self.heartbeat_deadline = None;
        self.idle_deadline = None;
        self.transmit.clear();
        self.events.push_back(SessionEvent::Close(reason));
    }

    /// Where the session is.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The room this session watches.
    pub fn room(&self) -> u64 {
        self.room
    }

    /// The room's status from the last `rss`, `None` if none arrived yet.
    pub fn live_status(&self) -> Option<LiveStatus> {
        self.live
    }

    /// How many received bodies had invalid UTF-8 (decoded lossily).
    pub fn lossy_messages(&self) -> u64 {
        self.lossy_messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::douyu::frame::{SERVER_TO_CLIENT, encode_packet};

    const ROOM: u64 = 9999;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn server(bodies: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for body in bodies {
            encode_packet(&mut out, SERVER_TO_CLIENT, body);
        }
        out
    }

    fn sent(session: &mut ClientSession) -> Vec<u8> {
        let mut out = Vec::new();
        session.poll_transmit(&mut out);
        out
    }

    fn events(session: &mut ClientSession) -> Vec<SessionEvent> {
        std::iter::from_fn(|| session.poll_event()).collect()
    }

    fn types(events: &[SessionEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                SessionEvent::Message(m) => m.msg_type().to_string(),
                SessionEvent::Joined => "<joined>".to_string(),
                SessionEvent::Close(reason) => format!("<close: {reason}>"),
            })
            .collect()
    }

    /// A session that has connected at `start` and received `loginres`.
    fn joined(start: Instant) -> ClientSession {
        let mut session = ClientSession::new(ROOM, SessionConfig::default());
        session.on_connected(start);
        let data = server(&["type@=loginres/userid@=0/"]);
        assert_eq!(session.on_bytes(&data, start), data.len());
        sent(&mut session);
        events(&mut session);
        session
    }

    #[test]
    fn durations_too_long_for_the_clock_do_not_panic() {
        let config = SessionConfig {
            heartbeat: Duration::MAX,
            login_timeout: Duration::MAX,
            idle_timeout: Duration::MAX,
            ..SessionConfig::default()
        };
        let start = Instant::now();
        let mut session = ClientSession::new(ROOM, config);
        session.on_connected(start);
        let data = server(&["type@=loginres/"]);
        session.on_bytes(&data, start);
        session.on_timeout(start + secs(1));
        assert!(session.next_deadline().is_some_and(|deadline| deadline > start + secs(3600)));
        assert!(config.validate().is_err(), "but they are not valid settings");
    }

    #[test]
    fn settings_are_checked_against_each_other_and_their_limits() {
        let valid = SessionConfig::default();
        assert_eq!(valid.validate(), Ok(()));
        let with = |change: fn(&mut SessionConfig)| {
            let mut config = valid;
            change(&mut config);
            config.validate()
        };
        let error = with(|c| c.heartbeat = Duration::from_micros(100)).unwrap_err();
        assert_eq!(error.to_string(), "heartbeat must be from 0.25 s to 86400 s (got 0.0001 s)");
        assert!(
            with(|c| c.heartbeat = c.idle_timeout).unwrap_err().message.contains("must be shorter than idle_timeout")
        );
        assert_eq!(with(|c| c.login_timeout = Duration::from_millis(10)).unwrap_err().setting, "login_timeout");
        assert_eq!(with(|c| c.idle_timeout = Duration::from_secs(86_401)).unwrap_err().setting, "idle_timeout");
        assert!(with(|c| c.max_frame = 3).is_err());
    }

    #[test]
    fn happy_path() {
        let start = Instant::now();
        let mut session = ClientSession::new(ROOM, SessionConfig::default());
        assert_eq!(session.state(), SessionState::Connecting);
        assert_eq!(session.next_deadline(), None);

        session.on_connected(start);
        assert_eq!(session.state(), SessionState::LoggingIn);
        assert_eq!(sent(&mut session), Request::Login { room: ROOM }.to_packet());
        assert_eq!(session.next_deadline(), Some(start + secs(15)));

        let t1 = start + secs(1);
        let data = server(&[
            "type@=loginres/userid@=0/live_stat@=0/",
            "type@=pingreq/tick@=1790519453293/",
            "type@=rss/rid@=9999/ss@=1/ivl@=0/",
            "type@=chatmsg/rid@=9999/nn@=a/txt@=hi/",
        ]);
        assert_eq!(session.on_bytes(&data, t1), data.len());
        assert_eq!(session.state(), SessionState::Joined);
        assert_eq!(types(&events(&mut session)), ["loginres", "<joined>", "pingreq", "rss", "chatmsg"]);
        assert_eq!(String::from_utf8_lossy(&sent(&mut session)[12..]), "type@=joingroup/rid@=9999/gid@=-9999/\0");
        assert_eq!(session.live_status(), Some(LiveStatus::Live));
        assert!(!session.poll_transmit(&mut Vec::new()));
    }

    #[test]
    fn heartbeat_timing_is_exact() {
        let start = Instant::now();
        let mut session = joined(start);
        let heartbeat = Request::Heartbeat.to_packet();
        assert_eq!(session.next_deadline(), Some(start + secs(45)));

        // Keep the connection from going idle, then fire just before and at +45 s.
        session.on_bytes(&server(&["type@=mrkl/"]), start + secs(40));
        session.on_timeout(start + secs(45) - Duration::from_millis(1));
        assert!(sent(&mut session).is_empty());
        session.on_timeout(start + secs(45));
        assert_eq!(sent(&mut session), heartbeat);
        assert_eq!(session.next_deadline(), Some(start + secs(90)));

        // Woken late: the next beat stays on the +45 s grid.
        session.on_bytes(&server(&["type@=mrkl/"]), start + secs(80));
        session.on_timeout(start + secs(91));
        assert_eq!(sent(&mut session), heartbeat);
        assert_eq!(session.next_deadline(), Some(start + secs(135)));
    }

    #[test]
    fn jitter_brings_the_first_heartbeat_forward_and_the_beat_keeps_that_phase() {
        let beat = SessionConfig::default().heartbeat;
        assert_eq!(beat, secs(45));
        let ms = Duration::from_millis;
        for (u, early) in [(0.0, Duration::ZERO), (0.5, ms(2250)), (0.999, ms(4495))] {
            let start = Instant::now();
            let mut session = ClientSession::new(ROOM, SessionConfig::default()).with_heartbeat_jitter(u);
            session.on_connected(start);
            session.on_bytes(&server(&["type@=loginres/"]), start);
            sent(&mut session); // loginreq, joingroup
            let first = start + beat - early;
            assert_eq!(session.next_deadline(), Some(first), "u = {u}");
            session.on_bytes(&server(&["type@=mrkl/"]), first);
            session.on_timeout(first);
            assert_eq!(sent(&mut session), Request::Heartbeat.to_packet(), "u = {u}");
            assert_eq!(session.next_deadline(), Some(first + beat), "then every interval, u = {u}");
        }
        // Out of range or not a number: within the tenth, or none.
        for (u, early) in [(7.0, ms(4500)), (-1.0, Duration::ZERO), (f64::NAN, Duration::ZERO)] {
            let start = Instant::now();
            let mut session = ClientSession::new(ROOM, SessionConfig::default()).with_heartbeat_jitter(u);
            session.on_connected(start);
            session.on_bytes(&server(&["type@=loginres/"]), start);
            assert_eq!(session.next_deadline(), Some(start + beat - early), "u = {u}");
        }
    }

    #[test]
    fn a_paused_reader_is_not_idle() {
        let start = Instant::now();
        let mut session = joined(start);
        let idle = SessionConfig::default().idle_timeout;
        // Paused just before the idle deadline: the clock starts again.
        session.on_reading_paused(start + idle - Duration::from_secs(1));
        session.on_timeout(start + idle + Duration::from_secs(1));
        assert!(events(&mut session).iter().all(|e| !matches!(e, SessionEvent::Close(_))));
        session.on_timeout(start + idle * 2);
        assert_eq!(events(&mut session).last(), Some(&SessionEvent::Close(CloseReason::IdleTimeout)));
    }

    #[test]
    fn login_timeout() {
        let start = Instant::now();
        let mut session = ClientSession::new(ROOM, SessionConfig::default());
        session.on_connected(start);
        events(&mut session);
        session.on_timeout(start + secs(14));
        assert_eq!(session.state(), SessionState::LoggingIn);
        session.on_timeout(start + secs(15));
        assert_eq!(events(&mut session), [SessionEvent::Close(CloseReason::LoginTimeout)]);
        assert_eq!(session.state(), SessionState::Closed);
        assert_eq!(session.next_deadline(), None);
    }

    #[test]
    fn idle_timeout_counts_any_bytes() {
        let start = Instant::now();
        let mut session = joined(start);
        assert_eq!(session.config.idle_timeout, secs(120));
        // Half a packet still counts as "something arrived".
        let half = server(&["type@=mrkl/"]);
        assert_eq!(session.on_bytes(&half[..5], start + secs(100)), 0);
        session.on_timeout(start + secs(135)); // a heartbeat, not idle yet
        session.on_timeout(start + secs(180)); // heartbeat
        assert_eq!(session.state(), SessionState::Joined);
        session.on_timeout(start + secs(220));
        assert_eq!(events(&mut session), [SessionEvent::Close(CloseReason::IdleTimeout)]);
        assert!(sent(&mut session).is_empty(), "pending beats are dropped");
    }

    #[test]
    fn server_errors_close() {
        for (body, reason) in [
            ("type@=error/code@=52/", CloseReason::ServerError { code: Some(52) }),
            ("type@=error/code@=51/", CloseReason::ServerError { code: Some(51) }),
            ("type@=error/code@=204/", CloseReason::BadRoomId),
        ] {
            let start = Instant::now();
            let mut session = joined(start);
            let data = server(&[body, "type@=chatmsg/"]);
            assert_eq!(session.on_bytes(&data, start), data.len());
            let got = events(&mut session);
            assert_eq!(types(&got)[0], "error");
            assert_eq!(got[1], SessionEvent::Close(reason.clone()));
            assert_eq!(got.len(), 2, "nothing handled after the close");
            assert_eq!(reason.should_reconnect(), reason != CloseReason::BadRoomId);
        }
    }

    #[test]
    fn frame_error_closes() {
        let start = Instant::now();
        let mut session = joined(start);
        let mut data = server(&["type@=chatmsg/"]);
        data.extend_from_slice(&[9, 0, 0, 0, 8, 0, 0, 0, 0xb2, 2, 0, 0]);
        assert_eq!(session.on_bytes(&data, start), data.len());
        let got = events(&mut session);
        assert_eq!(types(&got)[0], "chatmsg");
        assert_eq!(
            got[1],
            SessionEvent::Close(CloseReason::Protocol(FrameError::LengthMismatch { first: 9, second: 8 }))
        );
        assert_eq!(session.on_bytes(b"more", start), 4);
        assert!(events(&mut session).is_empty());
    }

    #[test]
    fn shutdown_sends_logout() {
        let start = Instant::now();
        let mut session = joined(start);
        session.shutdown();
        assert_eq!(sent(&mut session), Request::Logout.to_packet());
        assert_eq!(events(&mut session), [SessionEvent::Close(CloseReason::Shutdown)]);
        session.shutdown();
        assert!(events(&mut session).is_empty());

        let mut unconnected = ClientSession::new(ROOM, SessionConfig::default());
        unconnected.shutdown();
        assert!(sent(&mut unconnected).is_empty());
        assert_eq!(unconnected.state(), SessionState::Closed);
    }

    /// The caller's side of `on_bytes`: a buffer that keeps leftovers.
    #[test]
    fn split_message_is_delivered_once_in_order() {
        let start = Instant::now();
        let mut session = joined(start);
        let wire = server(&["type@=chatmsg/txt@=第一/", "type@=chatmsg/txt@=second/", "type@=uenter/nn@=x/"]);
        let mut pending = Vec::new();
        for chunk in wire.chunks(3) {
            pending.extend_from_slice(chunk);
            let used = session.on_bytes(&pending, start);
            pending.drain(..used);
        }
        assert!(pending.is_empty());
        let texts: Vec<String> = events(&mut session)
            .into_iter()
            .map(|e| match e {
                SessionEvent::Message(m) => m.get("txt").unwrap_or(m.msg_type()).to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["第一", "second", "uenter"]);
    }

    #[test]
    fn lossy_bodies_are_counted_not_fatal() {
        let start = Instant::now();
        let mut session = joined(start);
        let mut data = vec![13, 0, 0, 0, 13, 0, 0, 0, 0xb2, 2, 0, 0];
        data.extend_from_slice(&[b'a', 0xff, b'b', b'/', 0]);
        assert_eq!(session.on_bytes(&data, start), data.len());
        assert_eq!(session.lossy_messages(), 1);
        assert_eq!(session.state(), SessionState::Joined);
    }

    proptest::proptest! {
        #[test]
        fn any_chunking_delivers_each_message_once(chunk in 1usize..64) {
            let start = Instant::now();
            let mut session = joined(start);
            let bodies: Vec<String> = (0..20).map(|i| format!("type@=chatmsg/txt@=消息{i}/")).collect();
            let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
            let wire = server(&refs);
            let mut pending = Vec::new();
            for piece in wire.chunks(chunk) {
                pending.extend_from_slice(piece);
                let used = session.on_bytes(&pending, start);
                pending.drain(..used);
            }
            let got: Vec<String> = events(&mut session)
                .into_iter()
                .filter_map(|e| match e {
                    SessionEvent::Message(m) => Some(m.to_body()),
                    _ => None,
                })
                .collect();
            proptest::prop_assert_eq!(got, bodies);
        }

        #[test]
        fn messages_handed_over_as_decoded_are_the_queued_ones(chunk in 1usize..64) {
            // The same stream through `on_bytes` (queued) and `on_bytes_with`
            // (handed over, one buffer reused throughout): the same messages,
            // and the same events after them.
            let start = Instant::now();
            let bodies: Vec<String> = ["type@=loginres/live_stat@=1/".to_string(), "type@=rss/ss@=0/".to_string()]
                .into_iter()
                .chain((0..20).map(|i| format!("type@=chatmsg/txt@=消息{i}/ic@=a@Sb/")))
                .chain(["type@=error/code@=52/".to_string(), "type@=chatmsg/txt@=after/".to_string()])
                .collect();
            let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
            let wire = server(&refs);
            let mut queued = ClientSession::new(ROOM, SessionConfig::default());
            let mut handed = ClientSession::new(ROOM, SessionConfig::default());
            queued.on_connected(start);
            handed.on_connected(start);
            let mut buffer = Message::default();
            let mut got = Vec::new();
            let (mut pending_queued, mut pending_handed) = (Vec::new(), Vec::new());
            for piece in wire.chunks(chunk) {
                pending_queued.extend_from_slice(piece);
                let used = queued.on_bytes(&pending_queued, start);
                pending_queued.drain(..used);
                pending_handed.extend_from_slice(piece);
                let used = handed.on_bytes_with(&pending_handed, start, &mut buffer, |m| got.push(m.to_body()));
                pending_handed.drain(..used);
            }
            let (mut expected, mut queued_events) = (Vec::new(), Vec::new());
            for event in events(&mut queued) {
                match event {
                    SessionEvent::Message(m) => expected.push(m.to_body()),
                    other => queued_events.push(other),
                }
            }
            proptest::prop_assert_eq!(&got, &expected);
            proptest::prop_assert_eq!(got.len(), 23, "nothing after the error");
            proptest::prop_assert_eq!(events(&mut handed), queued_events);
            proptest::prop_assert_eq!(handed.live_status(), Some(LiveStatus::Offline));
            proptest::prop_assert_eq!(sent(&mut handed), sent(&mut queued));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let start = Instant::now();
            let mut session = joined(start);
            let used = session.on_bytes(&bytes, start);
            proptest::prop_assert!(used <= bytes.len());
            session.on_timeout(start + secs(1000));
            proptest::prop_assert_eq!(session.state(), SessionState::Closed);
        }
    }
}

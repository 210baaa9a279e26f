//! Douyu: packets, STT bodies, and the session that reads them.

use std::time::{Duration, Instant};

use barrage::douyu::frame::{
    self, CLIENT_TO_SERVER, DEFAULT_MAX_LENGTH, DecoderConfig, FrameDecoder, FrameError, HEADER_LEN, SERVER_TO_CLIENT,
};
use barrage::douyu::stt::{self, List, Map};
use barrage::douyu::{ClientSession, CloseReason, Message, Request, SessionConfig, SessionEvent, SessionState};

use super::{ReadBuffer, Script};

/// What a stream of packets decoded to: each body (owned) and whether it
/// was repaired, then the error that ended the stream, if one did.
type Packets = (Vec<(String, bool)>, Option<FrameError>);

/// `decode_packet` over one buffer, and `FrameDecoder` fed the same bytes
/// in the fuzzer's pieces: the same packets and the same error.
///
/// Settings: bits 0–2 the largest length, 16 << n bytes (bit 4: the
/// default 1 MiB instead); bit 3 the side (a server reads type 689).
pub fn frame(input: &[u8]) {
    let script = Script::parse(input);
    let max_length = if script.settings & 0x10 != 0 { DEFAULT_MAX_LENGTH } else { 16 << (script.settings & 7) };
    let expected_type = if script.settings & 8 != 0 { CLIENT_TO_SERVER } else { SERVER_TO_CLIENT };
    let config = DecoderConfig { max_length, expected_type };

    let (whole, used) = decode_all(script.data, &config);
    let mut decoder = FrameDecoder::new(config);
    let mut pieces: Packets = (Vec::new(), None);
    'feed: for piece in script.pieces() {
        decoder.feed(piece);
        loop {
            match decoder.next_packet() {
                Ok(Some(packet)) => pieces.0.push((packet.body.into_owned(), packet.lossy)),
                Ok(None) => break,
                Err(error) => {
                    pieces.1 = Some(error);
                    break 'feed;
                }
            }
        }
        // Only part of one packet waits, and its header was checked.
        assert!(decoder.buffered() < HEADER_LEN.max(max_length + 4), "{} bytes buffered", decoder.buffered());
    }
    assert_eq!(pieces, whole, "split into reads, the stream decodes differently");
    if whole.1.is_none() {
        assert_eq!(decoder.buffered(), script.data.len() - used);
    }
    assert_eq!(decoder.lossy_packets(), whole.0.iter().filter(|(_, lossy)| *lossy).count() as u64);
}

/// Calls `decode_packet` until it wants more or fails, checking each
/// packet against the bytes it came from. Returns the packets and the
/// bytes they took.
fn decode_all(data: &[u8], config: &DecoderConfig) -> (Packets, usize) {
    let mut packets = Vec::new();
    let mut at = 0;
    loop {
        let rest = &data[at..];
        match frame::decode_packet(rest, config) {
            Ok(Some((packet, used))) => {
                assert!(HEADER_LEN < used && used <= rest.len() && used - 4 <= config.max_length);
                assert_eq!(packet.packet_type, config.expected_type);
                let body = &rest[HEADER_LEN..used - 1];
                assert_eq!(packet.lossy, std::str::from_utf8(body).is_err());
                assert_eq!(packet.body, String::from_utf8_lossy(body));
                if !packet.lossy {
                    // Byte for byte, but for the flag bytes nobody checks.
                    let mut again = Vec::new();
                    frame::encode_packet(&mut again, packet.packet_type, &packet.body);
                    assert_eq!((&again[..10], &again[12..]), (&rest[..10], &rest[12..used]));
                }
                packets.push((packet.body.into_owned(), packet.lossy));
                at += used;
            }
            Ok(None) => return ((packets, None), at),
            Err(error) => return ((packets, Some(error)), at),
        }
    }
}

/// A body as the session decodes it (invalid UTF-8 repaired, as the frame
/// layer does): maps, lists, messages and their views. Every decoded map or
/// list encodes back to one that decodes to the same fields, and one level
/// down (a nested `el` or `list`) the same holds.
pub fn stt(input: &[u8]) {
    let body = String::from_utf8_lossy(input);
    assert_eq!(stt::unescape(&stt::escape(&body)), body);

    let map = stt::decode_map(&body);
    check_map(&map);
    check_list(&stt::decode_list(&body));
    // The values a caller decodes again (nested fields), a few of them.
    for (_, value) in map.iter().take(8) {
        check_map(&stt::decode_map(value));
        check_list(&stt::decode_list(value));
    }

    let message = Message::decode(&body);
    assert_eq!(message.msg_type(), message.get("type").unwrap_or(""));
    assert!(message.fields().eq(map.iter()));
    let view = message.view();
    let again = Message::decode(&message.to_body());
    assert!(again.fields().eq(message.fields()));
    assert_eq!(again.view(), view);
}

fn check_map(map: &Map) {
    let again = stt::decode_map(&map.to_stt());
    assert!(again.iter().eq(map.iter()), "{map:?} re-encodes as {again:?}");
    // `get` is the last field of that name.
    for (key, _) in map.iter().take(16) {
        let last = map.iter().filter(|(k, _)| *k == key).last().map(|(_, value)| value);
        assert_eq!(map.get(key), last);
    }
}

fn check_list(list: &List) {
    let again = stt::decode_list(&list.to_stt());
    assert!(again.iter().eq(list.iter()), "{list:?} re-encodes as {again:?}");
}

const ROOM: u64 = 9999;

/// The largest packet the fuzzed session accepts: small, so that the
/// fuzzer reaches the limit.
const MAX_FRAME: usize = 4096;

/// `ClientSession` driven by the fuzzer on a fake clock: the data arrives
/// in the fuzzer's pieces, kept by a read buffer as the reactor keeps it,
/// between timeouts, shutdowns and drains of its output. Checks the
/// leftover (part of one packet, under the limit), the events' order, that
/// every byte it sends is a whole request in protocol order, that no
/// deadline is left in the past after `on_timeout` (or the loop would
/// spin), and that the messages are those of one session fed the whole
/// stream at once.
///
/// Settings: bit 0 set: bytes arrive before `on_connected`.
///
/// Choices, one step each; the low 2 bits say which, the high 6 (`n`) how much:
/// 0: a read of `n` bytes; 1: a read of `64 n` bytes; 2: `n` seconds
/// pass, timers fire; 3: drain events and output (n = 62: connect,
/// n = 63: shut down).
pub fn session(input: &[u8]) {
    let script = Script::parse(input);
    let config = SessionConfig { max_frame: MAX_FRAME, ..SessionConfig::default() };
    let start = Instant::now();
    let mut now = start;
    let mut session = ClientSession::new(ROOM, config);
    let mut log = SessionLog::default();
    if script.settings & 1 == 0 {
        session.on_connected(now);
    }
    let mut buffer = ReadBuffer::default();
    let mut data = script.data;
    let mut arrive = |session: &mut ClientSession, n: usize, now: Instant| {
        let (piece, rest) = data.split_at(n.min(data.len()));
        data = rest;
        let left = buffer.push(piece, |pending| session.on_bytes(pending, now));
        assert!(left < HEADER_LEN.max(MAX_FRAME + 4), "{left} bytes left over");
    };
    for &choice in script.choices {
        let n = usize::from(choice >> 2);
        match choice & 3 {
            0 => arrive(&mut session, n, now),
            1 => arrive(&mut session, 64 * n, now),
            2 => {
                now += Duration::from_secs(n as u64);
                fire_timers(&mut session, now);
            }
            _ => match n {
                62 => session.on_connected(now),
                63 => session.shutdown(),
                _ => log.drain(&mut session),
            },
        }
    }
    arrive(&mut session, usize::MAX, now);
    log.drain(&mut session);

    assert_eq!(session.state() == SessionState::Closed, log.close.is_some());
    if session.state() == SessionState::Closed {
        assert_eq!(session.next_deadline(), None);
    }
    log.check_sent();

    // The same bytes in one read, with no time passing.
    let mut whole = ClientSession::new(ROOM, config);
    whole.on_connected(start);
    whole.on_bytes(script.data, start);
    let mut reference = SessionLog::default();
    reference.drain(&mut whole);
    match &log.close {
        // Closed for a reason of its own: what it read is a prefix.
        Some(CloseReason::Shutdown | CloseReason::LoginTimeout | CloseReason::IdleTimeout) => {
            assert!(reference.messages.starts_with(&log.messages));
        }
        _ => {
            assert_eq!(log.messages, reference.messages, "split into reads, the stream decodes differently");
            assert_eq!(log.close, reference.close);
        }
    }
}

/// Runs `on_timeout` as the reactor does while a deadline is due, and
/// checks that each call leaves none due (a deadline stuck in the past
/// would wake the loop forever).
fn fire_timers(session: &mut ClientSession, now: Instant) {
    if session.next_deadline().is_some_and(|deadline| deadline <= now) {
        session.on_timeout(now);
        assert!(session.next_deadline().is_none_or(|deadline| deadline > now), "a deadline is left in the past");
    }
}

/// What a session reported and sent, checked as it comes.
#[derive(Default)]
struct SessionLog {
    messages: Vec<Message>,
    joined: bool,
    close: Option<CloseReason>,
    sent: Vec<u8>,
}

impl SessionLog {
    fn drain(&mut self, session: &mut ClientSession) {
        while let Some(event) = session.poll_event() {
            assert!(self.close.is_none(), "{event:?} after the close");
            match event {
                SessionEvent::Message(message) => self.messages.push(message),
                SessionEvent::Joined => {
                    assert!(!self.joined, "joined twice");
                    assert_eq!(self.messages.last().map(Message::msg_type), Some("loginres"));
                    self.joined = true;
                }
                SessionEvent::Close(reason) => self.close = Some(reason),
            }
        }
        session.poll_transmit(&mut self.sent);
    }

    /// What went out is whole client packets in protocol order: `login
    /// join? heartbeat* logout?`, a join only once the session joined, and
    /// a logout alone (a shutdown right after connecting, before anything
    /// was sent: a close drops what was queued).
    fn check_sent(&self) {
        let (packets, error) = decode_all(&self.sent, &DecoderConfig::server()).0;
        assert_eq!(error, None);
        let bodies: Vec<&str> = packets.iter().map(|(body, _)| body.as_str()).collect();
        let mut rest = bodies.as_slice();
        let login = take(&mut rest, &Request::Login { room: ROOM }.body());
        let join = take(&mut rest, &Request::JoinGroup { room: ROOM, group: SessionConfig::default().group }.body());
        let mut beats = 0;
        while take(&mut rest, &Request::Heartbeat.body()) {
            beats += 1;
        }
        take(&mut rest, &Request::Logout.body());
        assert!(rest.is_empty(), "out of order: {bodies:?}");
        assert!(!join || (login && self.joined), "a join before login: {bodies:?}");
        assert!(beats == 0 || join, "a heartbeat before joining: {bodies:?}");
    }
}

/// Takes `body` off the front of `bodies` if it is there.
fn take(bodies: &mut &[&str], body: &str) -> bool {
    let found = bodies.first() == Some(&body);
    if found {
        *bodies = &bodies[1..];
    }
    found
}

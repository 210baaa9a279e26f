//! How a client's Douyu bytes travel: as they are, or inside WebSocket
//! binary messages (`--ws`); over TCP, or TLS (`--tls`). `wss://` is both.
//!
//! TLS lives under the reactor connection (`Reactor::add_tls_stream`), so
//! nothing above it changes. The WebSocket is a layer of the client
//! connection, between the outbox, which decides what Douyu bytes go out
//! (and carries out the faults counted in room messages), and the wire:
//!
//! ```text
//!   ClientConn: requests in ──────────────▶ replies, room frames out
//!        ▲ request packets                      │ Douyu bytes
//!        │                               Outbox: coalesce, drop, corrupt,
//!        │                                       stall, slow consumer
//!   WsLayer::read                               │ one packet, or a burst
//!   (WebSocket::on_bytes: the upgrade,   WsLayer::send: binary messages;
//!    client frames, pongs, close)        WsLayer::ping: pings, text frames
//!        ▲ bytes                                │ wire bytes
//!        │                               Wire: reactor send, or fragment's
//!        │                                     queue of small writes
//!   reactor connection: TCP, or TLS ◀───────────┘
//! ```
//!
//! Reading, and the protocol's own answers (the `101`, a `400` or `426` for
//! a request that is not an upgrade, pongs, close frames), are the sans-IO
//! [`WebSocket`] server's; its binary payload stream goes straight to the
//! request decoder. Sending, the layer frames the server's messages itself
//! with the WebSocket codec, because how it cuts them is the point:
//!
//! | faults | messages |
//! |---|---|
//! | none | one Douyu packet per binary message, as Douyu's server sends them |
//! | `coalesce` | a held burst in one message: several packets share it |
//! | `fragment` | the byte stream cut into messages of 1–40 bytes (a packet spans several), half of them cut again into a binary frame and continuations; then the wire bytes go out in small writes, as over TCP, so frame headers arrive in pieces too |
//!
//! The faults counted in room messages apply to the Douyu bytes inside
//! well-formed messages: `corrupt_every`'s bad packet is a binary message
//! of its own. [`WsFault`] breaks the WebSocket itself.
//!
//! Pings go out every `ping_interval` from one periodic callback for all
//! clients, numbered in their payload; every [`TEXT_EVERY_PINGS`]th is
//! followed by a text frame, which Douyu clients must ignore. The pongs
//! that come back are counted.
//!
//! Memory: messages are framed straight onto the wire, never collected. An
//! idle client's layer holds the `WebSocket` (a few hundred bytes; its
//! buffers keep at most the capacity of a `101` head or a client request)
//! and a 14-byte scratch for frame headers: about 1 KB in all (2,000 idle
//! clients grew the server by 2.4 KB each over `ws://`, 1.4 KB over TCP;
//! TLS adds OpenSSL's 15 KB to either).

use std::fmt;
use std::io;
use std::time::Duration;

use super::certificate::self_signed_localhost;
use super::faults::{MAX_PIECE, OVERSIZED_FRAME_LENGTH, WsFault};
use crate::reactor::CipherPolicy;
use crate::rng::Rng;
use crate::websocket::frame::{self, FrameHeader, MAX_HEADER_LEN, Opcode};
use crate::websocket::{CloseReason, Event, Limits, State, WebSocket, handshake};

/// `--tls`: the certificate to serve and the suites to offer.
#[derive(Clone, PartialEq, Eq)]
pub struct SimTls {
    /// The certificate chain, PEM, the server's own first.
    pub cert_pem: Vec<u8>,
    /// Its private key, PEM.
    pub key_pem: Vec<u8>,
    /// `Legacy` offers what Douyu's endpoint offers (TLS 1.2, RSA key
    /// exchange, `AES256-GCM-SHA384`); `Modern` only forward-secret suites.
    pub policy: CipherPolicy,
}

impl SimTls {
    /// A fresh self-signed certificate for `127.0.0.1` and `localhost`;
    /// clients trust `cert_pem` itself.
    pub fn self_signed(policy: CipherPolicy) -> io::Result<SimTls> {
        let made = self_signed_localhost()?;
        Ok(SimTls { cert_pem: made.cert_pem, key_pem: made.key_pem, policy })
    }
}

/// Everything but the key.
impl fmt::Debug for SimTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimTls")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// `--ws`: how the WebSocket layer behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimWebSocket {
    /// How often every client is pinged (`None`: never, and no text frames
    /// either).
    pub ping_interval: Option<Duration>,
    /// A fault of the WebSocket layer itself; none by default.
    pub fault: Option<WsFault>,
}

/// The default `ping_interval`.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(5);

impl Default for SimWebSocket {
    fn default() -> Self {
        SimWebSocket { ping_interval: Some(DEFAULT_PING_INTERVAL), fault: None }
    }
}

/// Every this many pings, a text frame follows the ping.
pub const TEXT_EVERY_PINGS: u64 = 4;

/// The text frames' text.
const TEXT: &str = "barrage sim: a text frame; Douyu clients ignore these";

/// `RejectUpgrade`'s answer.
const FORBIDDEN: &[u8] = b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// `StallHandshake`'s answer, all of it.
const FIRST_LINE_OF_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n";

/// How one [`WsLayer::send`] cuts its Douyu bytes into messages (unless
/// `fragment` cuts them its own way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grouping {
    /// One message per Douyu packet.
    PerPacket,
    /// All of them in one message.
    OneMessage,
}

/// What one [`WsLayer::read`] came to.
#[derive(Debug)]
pub(crate) struct WsRead {
    /// Bytes used; the rest is handed back with more behind it.
    pub(crate) consumed: usize,
    /// The WebSocket is over, and why: close the connection once what is
    /// queued is written.
    pub(crate) closed: Option<CloseReason>,
    /// Pongs that came in.
    pub(crate) pongs: u64,
}

/// One client's WebSocket layer (see the module docs).
#[derive(Debug)]
pub(crate) struct WsLayer {
    ws: WebSocket,
    fault: Option<WsFault>,
    /// Nothing more goes out: the handshake was stalled, or a 4 GiB frame
    /// was announced (anything after it would be read as its payload).
    silent: bool,
    /// `fragment`'s cuts and `MaskedFrame`'s keys.
    rng: Rng,
    /// One frame header, encoded here before it goes on the wire.
    header: Vec<u8>,
}

impl WsLayer {
    /// A server waiting for the upgrade request; `seed` decides its cuts.
    pub(crate) fn new(fault: Option<WsFault>, seed: u64) -> Self {
        WsLayer {
            ws: WebSocket::server(Limits::default()),
            fault,
            silent: false,
            rng: Rng::new(seed),
            header: Vec::with_capacity(MAX_HEADER_LEN),
        }
    }

    /// Messages may be sent.
    pub(crate) fn is_open(&self) -> bool {
        self.ws.state() == State::Open && !self.silent
    }

    /// Reads the client's bytes: the upgrade request, then frames, whose
    /// binary payloads go to `reader` (which returns how much it used).
    /// The WebSocket's answers go to `wire`.
    pub(crate) fn read<R>(&mut self, data: &[u8], reader: R, wire: &mut impl FnMut(&[u8])) -> WsRead
    where
        R: FnMut(&[u8]) -> usize,
    {
        if self.ws.state() == State::Handshaking
            && let Some(fault @ (WsFault::RejectUpgrade | WsFault::StallHandshake)) = self.fault
        {
            return self.break_handshake(fault, data, wire);
        }
        let pongs = self.ws.stats().pongs;
        let consumed = self.ws.on_bytes(data, reader);
        let (mut opened, mut closed) = (false, None);
        while let Some(event) = self.ws.poll_event() {
            match event {
                Event::Opened => opened = true,
                Event::Closed(reason) => closed = Some(reason),
            }
        }
        let mut answer = Vec::new();
        if self.ws.poll_transmit(&mut answer) && !self.silent {
            if opened && self.fault == Some(WsFault::BadAccept) {
                spoil_accept(&mut answer);
            }
            wire(&answer);
        }
        WsRead { consumed, closed, pongs: self.ws.stats().pongs - pongs }
    }

    /// `RejectUpgrade` and `StallHandshake`: once the request's head is in
    /// (valid or not), answer it the wrong way.
    fn break_handshake(&mut self, fault: WsFault, data: &[u8], wire: &mut impl FnMut(&[u8])) -> WsRead {
        let mut read = WsRead { consumed: data.len(), closed: None, pongs: 0 };
        if self.silent {
            return read;
        }
        if let Ok(None) = handshake::check_request(data, Limits::default().max_head) {
            read.consumed = 0;
            return read;
        }
        if fault == WsFault::RejectUpgrade {
            wire(FORBIDDEN);
            read.closed = Some(CloseReason::LocallyClosed);
        } else {
            wire(FIRST_LINE_OF_101);
            self.silent = true;
        }
        read
    }

    /// Frames Douyu bytes as binary messages onto `wire`: grouped as asked,
    /// or cut by `fragment`. Nothing goes out unless the layer is open.
    pub(crate) fn send(&mut self, douyu: &[u8], grouping: Grouping, fragment: bool, wire: &mut impl FnMut(&[u8])) {
        if !self.is_open() {
            return;
        }
        if self.fault == Some(WsFault::OversizedFrame) {
            self.header.clear();
            let header =
                FrameHeader { fin: true, opcode: Opcode::Binary, mask: None, payload_len: OVERSIZED_FRAME_LENGTH };
            header.encode(&mut self.header);
            wire(&self.header);
            self.silent = true;
            return;
        }
        let mut rest = douyu;
        while !rest.is_empty() {
            let len = if fragment {
                self.rng.between(1, MAX_PIECE) as usize
            } else {
                match grouping {
                    Grouping::PerPacket => packet_len(rest),
                    Grouping::OneMessage => rest.len(),
                }
            };
            let (message, tail) = rest.split_at(len.min(rest.len()));
            rest = tail;
            if fragment && self.rng.one_in(2) {
                let frame_len = self.rng.between(1, message.len() as u64) as usize;
                let count = message.len().div_ceil(frame_len);
                for (index, piece) in message.chunks(frame_len).enumerate() {
                    let opcode = if index == 0 { Opcode::Binary } else { Opcode::Continuation };
                    self.frame(index + 1 == count, opcode, piece, wire);
                }
            } else {
                self.frame(true, Opcode::Binary, message, wire);
            }
        }
    }

    /// A ping carrying `payload` and, if `text`, a text frame after it.
    /// Returns false (and sends nothing) unless the layer is open.
    pub(crate) fn ping(&mut self, payload: &[u8], text: bool, wire: &mut impl FnMut(&[u8])) -> bool {
        if !self.is_open() {
            return false;
        }
        self.frame(true, Opcode::Ping, payload, wire);
        if text {
            self.frame(true, Opcode::Text, TEXT.as_bytes(), wire);
        }
        true
    }

    /// Starts the closing handshake (the server is going away).
    pub(crate) fn close(&mut self, code: u16, reason: &str, wire: &mut impl FnMut(&[u8])) {
        self.ws.close(code, reason);
        let mut frame = Vec::new();
        if self.ws.poll_transmit(&mut frame) && !self.silent {
            wire(&frame);
        }
    }

    /// One frame onto the wire: its header from the scratch, then the
    /// payload as it is (masked into a copy for `MaskedFrame`).
    fn frame(&mut self, fin: bool, opcode: Opcode, payload: &[u8], wire: &mut impl FnMut(&[u8])) {
        if self.fault == Some(WsFault::MaskedFrame) {
            let key = (self.rng.next_u64() as u32).to_le_bytes();
            let mut masked = Vec::with_capacity(MAX_HEADER_LEN + payload.len());
            frame::encode_frame(&mut masked, fin, opcode, Some(key), payload);
            return wire(&masked);
        }
        self.header.clear();
        FrameHeader { fin, opcode, mask: None, payload_len: payload.len() as u64 }.encode(&mut self.header);
        wire(&self.header);
        wire(payload);
    }
}

/// The length of the Douyu packet at the start of `bytes` (its length
/// field plus the field itself), or all of `bytes` if they end sooner.
fn packet_len(bytes: &[u8]) -> usize {
    match bytes.first_chunk::<4>() {
        Some(field) => (u32::from_le_bytes(*field) as usize).saturating_add(4).min(bytes.len()),
        None => bytes.len(),
    }
}

/// `BadAccept`: replaces the accept key of a `101` head, in place, with
/// another of the same form (the accept key of the accept key).
fn spoil_accept(head: &mut [u8]) {
    const NAME: &[u8] = b"Sec-WebSocket-Accept: ";
    let Some(start) = head.windows(NAME.len()).position(|w| w == NAME).map(|at| at + NAME.len()) else { return };
    let Some(len) = head[start..].iter().position(|&b| b == b'\r') else { return };
    let wrong = handshake::accept_key(&head[start..start + len]);
    // Both are the base64 of a SHA-1: the same length.
    head[start..start + len].copy_from_slice(wrong.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::douyu::frame::{SERVER_TO_CLIENT, encode_packet};
    use crate::websocket::{ClientRequest, HandshakeError, ProtocolError, Stats};

    /// A client `WebSocket` and a server layer, talking through memory.
    struct Pair {
        client: WebSocket,
        layer: WsLayer,
        /// The client's binary payload stream.
        received: Vec<u8>,
        /// The server's wire bytes the client has not read yet.
        to_client: Vec<u8>,
        closed: Option<CloseReason>,
        events: Vec<Event>,
    }

    impl Pair {
        fn new(fault: Option<WsFault>) -> Pair {
            let request = ClientRequest::new("127.0.0.1:8501");
            let client = WebSocket::client(&request, Limits::default(), [9; 16], 1).unwrap();
            let mut pair = Pair {
                client,
                layer: WsLayer::new(fault, 7),
                received: Vec::new(),
                to_client: Vec::new(),
                closed: None,
                events: Vec::new(),
            };
            pair.exchange();
            pair
        }

        /// Client to server, then server to client, once.
        fn exchange(&mut self) {
            let mut request = Vec::new();
            self.client.poll_transmit(&mut request);
            let to_client = &mut self.to_client;
            let read = self.layer.read(&request, |p| p.len(), &mut |bytes| to_client.extend_from_slice(bytes));
            assert_eq!(read.consumed, request.len());
            self.closed = self.closed.take().or(read.closed);
            self.deliver();
        }

        fn send(&mut self, douyu: &[u8], grouping: Grouping, fragment: bool) {
            let to_client = &mut self.to_client;
            self.layer.send(douyu, grouping, fragment, &mut |bytes| to_client.extend_from_slice(bytes));
            self.deliver();
        }

        fn deliver(&mut self) {
            let received = &mut self.received;
            let used = self.client.on_bytes(&self.to_client, |p| {
                received.extend_from_slice(p);
                p.len()
            });
            self.to_client.drain(..used);
            self.events.extend(std::iter::from_fn(|| self.client.poll_event()));
        }

        fn stats(&self) -> Stats {
            self.client.stats()
        }
    }

    fn packets(count: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..count {
            encode_packet(&mut out, SERVER_TO_CLIENT, &format!("type@=chatmsg/cid@={i}/txt@={}/", "x".repeat(i * 7)));
        }
        out
    }

    #[test]
    fn one_packet_per_message_unless_a_burst_is_asked_for() {
        let mut pair = Pair::new(None);
        assert_eq!(pair.events, [Event::Opened]);
        let two = packets(2);
        pair.send(&two, Grouping::PerPacket, false);
        assert_eq!(pair.stats().binary_messages, 2);
        let ten = packets(10);
        pair.send(&ten, Grouping::OneMessage, false);
        assert_eq!(pair.stats().binary_messages, 3);
        assert_eq!(pair.received, [two, ten].concat());
    }

    #[test]
    fn fragment_cuts_packets_across_messages_and_frames_and_loses_nothing() {
        let mut pair = Pair::new(None);
        let stream = packets(20);
        pair.send(&stream, Grouping::PerPacket, true);
        assert_eq!(pair.received, stream);
        let messages = pair.stats().binary_messages as usize;
        assert!(messages >= stream.len().div_ceil(MAX_PIECE as usize), "{messages} messages: some over 40 bytes");
        assert!(messages > 20, "{messages} messages for 20 packets: not cut");
    }

    #[test]
    fn pings_come_with_a_text_frame_when_asked_and_pongs_are_counted() {
        let mut pair = Pair::new(None);
        let to_client = &mut pair.to_client;
        assert!(pair.layer.ping(b"7", true, &mut |bytes| to_client.extend_from_slice(bytes)));
        pair.deliver();
        assert_eq!((pair.stats().pings, pair.stats().text_messages), (1, 1));
        let mut pong = Vec::new();
        pair.client.poll_transmit(&mut pong);
        let read = pair.layer.read(&pong, |p| p.len(), &mut |_| panic!("nothing to answer"));
        assert_eq!((read.consumed, read.pongs), (pong.len(), 1));
    }

    #[test]
    fn a_request_that_is_not_an_upgrade_gets_400_and_ends_the_layer() {
        let mut layer = WsLayer::new(None, 1);
        let mut douyu = Vec::new();
        encode_packet(&mut douyu, 689, "type@=loginreq/roomid@=1/");
        let mut answer = Vec::new();
        let read = layer.read(&douyu, |p| p.len(), &mut |bytes| answer.extend_from_slice(bytes));
        assert!(answer.starts_with(b"HTTP/1.1 400 "), "{}", String::from_utf8_lossy(&answer));
        assert!(matches!(read.closed, Some(CloseReason::Handshake(HandshakeError::Malformed(_)))));
        assert!(!layer.is_open());
    }

    #[test]
    fn masked_frame_masks_what_the_server_sends() {
        let mut pair = Pair::new(Some(WsFault::MaskedFrame));
        pair.send(&packets(1), Grouping::PerPacket, false);
        assert_eq!(pair.events.last(), Some(&Event::Closed(CloseReason::Protocol(ProtocolError::MaskedByServer))));
    }

    #[test]
    fn oversized_frame_announces_4_gib_and_sends_nothing_after() {
        let mut pair = Pair::new(Some(WsFault::OversizedFrame));
        let mut wire = Vec::new();
        pair.layer.send(&packets(1), Grouping::PerPacket, false, &mut |bytes| wire.extend_from_slice(bytes));
        assert_eq!(FrameHeader::decode(&wire).unwrap().unwrap().0.payload_len, OVERSIZED_FRAME_LENGTH);
        assert_eq!(wire.len(), 10, "a header, nothing else");
        pair.layer.send(&packets(1), Grouping::PerPacket, false, &mut |_| panic!("sent after the header"));
        assert!(!pair.layer.ping(b"1", true, &mut |_| panic!("pinged after the header")));
        pair.to_client = wire;
        pair.deliver();
        let Some(Event::Closed(CloseReason::Protocol(ProtocolError::MessageTooBig { length, .. }))) =
            pair.events.last()
        else {
            panic!("{:?}", pair.events);
        };
        assert_eq!(*length, OVERSIZED_FRAME_LENGTH);
    }

    #[test]
    fn reject_upgrade_answers_403_and_ends_the_layer() {
        let pair = Pair::new(Some(WsFault::RejectUpgrade));
        assert_eq!(pair.events, [Event::Closed(CloseReason::Handshake(HandshakeError::Status(403)))]);
        assert_eq!(pair.closed, Some(CloseReason::LocallyClosed));
    }

    #[test]
    fn bad_accept_sends_a_101_with_another_key() {
        let pair = Pair::new(Some(WsFault::BadAccept));
        assert_eq!(pair.events, [Event::Closed(CloseReason::Handshake(HandshakeError::BadAccept))]);
        assert!(pair.layer.is_open(), "the server goes on as if all were well");
    }

    #[test]
    fn stall_handshake_sends_one_line_then_nothing() {
        let mut pair = Pair::new(Some(WsFault::StallHandshake));
        assert!(pair.events.is_empty());
        assert_eq!(pair.client.state(), State::Handshaking);
        assert_eq!(pair.to_client, FIRST_LINE_OF_101, "the client waits for the rest of the head");
        let read = pair.layer.read(b"more bytes", |_| panic!("nothing is read"), &mut |_| panic!("nothing is sent"));
        assert_eq!(read.consumed, 10);
        pair.send(&packets(1), Grouping::PerPacket, false);
        assert!(!pair.layer.ping(b"1", true, &mut |_| panic!("pinged")));
        assert_eq!(pair.to_client, FIRST_LINE_OF_101);
    }

    #[test]
    fn a_head_in_pieces_is_waited_for_before_a_handshake_fault_answers() {
        let request = ClientRequest::new("127.0.0.1:8501");
        let mut client = WebSocket::client(&request, Limits::default(), [9; 16], 1).unwrap();
        let mut head = Vec::new();
        client.poll_transmit(&mut head);
        let mut layer = WsLayer::new(Some(WsFault::RejectUpgrade), 1);
        let read = layer.read(&head[..head.len() - 1], |p| p.len(), &mut |_| panic!("answered a partial head"));
        assert_eq!((read.consumed, read.closed), (0, None));
        let mut answer = Vec::new();
        let read = layer.read(&head, |p| p.len(), &mut |bytes| answer.extend_from_slice(bytes));
        assert_eq!(answer, FORBIDDEN);
        assert_eq!(read.closed, Some(CloseReason::LocallyClosed));
    }

    #[test]
    fn packet_len_reads_the_length_field_and_stops_at_the_end() {
        let mut two = Vec::new();
        encode_packet(&mut two, SERVER_TO_CLIENT, "type@=a/");
        let first = two.len();
        encode_packet(&mut two, SERVER_TO_CLIENT, "type@=b/");
        assert_eq!(packet_len(&two), first);
        assert_eq!(packet_len(&[1, 0]), 2, "a cut length field: the rest");
        assert_eq!(packet_len(&[0xFF, 0xFF, 0xFF, 0xFF, 1]), 5, "a huge length: the rest");
        assert_eq!(packet_len(&[0, 0, 0, 0, 1]), 4, "a zero length still moves on");
    }
}

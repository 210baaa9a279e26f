//! One WebSocket connection, either side, as a sans-IO state machine.
//!
//! [`WebSocket`] does no I/O and reads no clock. Its owner feeds it the
//! bytes that arrived ([`WebSocket::on_bytes`], with a *reader* that takes
//! the binary payload stream) and drains what it produced: bytes to send
//! ([`WebSocket::poll_transmit`]) and events ([`WebSocket::poll_event`]).
//!
//! Every transition, in one table (h11's style); "close frame" means the
//! peer's, "close()" ours:
//!
//! | state | input | action | next |
//! |---|---|---|---|
//! | `AwaitingResponse` (client) | a valid 101 | `Opened`; bytes after the head are frames | `Open` |
//! | `AwaitingResponse` | another status, a bad key, a head over `max_head` | `Closed(Handshake)` | `Closed` |
//! | `AwaitingRequest` (server) | a valid upgrade request | queue the 101; `Opened` | `Open` |
//! | `AwaitingRequest` | a bad request | queue 400 (426 for the version); `Closed(Handshake)` | `Closed` |
//! | `Open`, `CloseSent` | binary frame | payload to the reader | same |
//! | `Open`, `CloseSent` | text frame | skipped, counted | same |
//! | `Open` | ping | queue a pong with the same payload | `Open` |
//! | `Open`, `CloseSent` | pong | ignored, counted | same |
//! | `Open` | close frame | queue a close with the same code; `Closed(PeerClosed)` | `Closed` |
//! | `CloseSent` | close frame | `Closed(LocallyClosed)` | `Closed` |
//! | `Open`, `CloseSent` | a protocol error | `Open`: queue close 1002 (1009: too big); `Closed(Protocol)` | `Closed` |
//! | `Open` | close() | queue a close frame | `CloseSent` |
//! | handshaking | send_*() | the frame waits until the handshake is done | same |
//! | handshaking | close() | waiting frames dropped; `Closed(LocallyClosed)` | `Closed` |
//! | `Closed` | anything | ignored | `Closed` |
//!
//! Frames may be sent from the start: they wait behind the handshake (a
//! client must not send any before the 101). So the owner can treat the
//! WebSocket as a transport and start the Douyu session as soon as TCP is
//! up: `loginreq` goes out right after the 101, no payload can reach the
//! session before it is logging in, and its login timeout also bounds a
//! handshake that hangs.
//!
//! After `Closed`, send what `poll_transmit` holds and close the socket.
//! Waiting for the peer's answer to our close is the owner's business (a
//! timer of its own): this layer has no clock.

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroUsize;

use super::frame::{self, FrameHeader, MAX_CONTROL_PAYLOAD, Opcode, ProtocolError, apply_mask, close_code};
use super::handshake::{self, ClientRequest, HandshakeError, InvalidHeader};
use super::stream::PayloadStream;
use crate::rng::Rng;

/// Bounds on what a peer can make a connection hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest HTTP head of the handshake (16 KiB).
    pub max_head: usize,
    /// Longest message, all its fragments together (1 MiB). Refused from
    /// the frame headers, before the payload is read.
    pub max_message: usize,
    /// Most payload bytes the reader may leave unconsumed (2 MiB): room for
    /// the start of one packet of up to `max_message` bytes plus a read.
    pub max_unread: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_head: 16 * 1024, max_message: 1024 * 1024, max_unread: 2 * 1024 * 1024 }
    }
}

/// Which end of the connection this is: a client masks what it sends and
/// refuses masked frames; a server the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Where a connection is in its life: the states of the module docs' table,
/// without the data they carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The opening handshake is under way.
    Handshaking,
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// Over; a `Closed` event said why. Send what is queued, then close.
    Closed,
}

/// Something the owner should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake is done: messages may be sent.
    Opened,
    /// The connection is over.
    Closed(CloseReason),
}

/// Why a connection closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// We called [`WebSocket::close`] and the peer answered (or the
    /// handshake had not finished, so there was no one to tell).
    LocallyClosed,
    /// The peer sent a close frame, and we answered it. `reason` is the
    /// peer's text: print it escaped (`Display` does).
    PeerClosed { code: Option<u16>, reason: String },
    /// The opening handshake failed.
    Handshake(HandshakeError),
    /// The peer broke RFC 6455, or sent a message over the limit.
    Protocol(ProtocolError),
    /// The reader left more than `max_unread` payload bytes unconsumed.
    ReaderBacklog { unread: usize, max: usize },
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::LocallyClosed => write!(f, "closed by us"),
            CloseReason::PeerClosed { code: None, .. } => write!(f, "closed by the peer without a code"),
            CloseReason::PeerClosed { code: Some(code), reason } => {
                write!(f, "closed by the peer with code {code} \"{}\"", reason.escape_debug())
            }
            CloseReason::Handshake(error) => write!(f, "handshake failed: {error}"),
            CloseReason::Protocol(error) => write!(f, "protocol error: {error}"),
            CloseReason::ReaderBacklog { unread, max } => {
                write!(f, "{unread} payload bytes left unread (at most {max})")
            }
        }
    }
}

impl From<HandshakeError> for CloseReason {
    fn from(error: HandshakeError) -> Self {
        CloseReason::Handshake(error)
    }
}

impl From<ProtocolError> for CloseReason {
    fn from(error: ProtocolError) -> Self {
        CloseReason::Protocol(error)
    }
}

/// Why a message could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// We sent a close frame, or the connection is over.
    Closed,
    /// A ping payload over 125 bytes.
    ControlTooLong,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => write!(f, "the WebSocket is closing or closed"),
            SendError::ControlTooLong => write!(f, "a control frame carries at most {MAX_CONTROL_PAYLOAD} bytes"),
        }
    }
}

impl std::error::Error for SendError {}

/// Counters of what arrived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Whole binary messages received.
    pub binary_messages: u64,
    /// Whole text messages received and skipped (Douyu sends none; one
    /// client crashed on them, so they must not end the connection).
    pub text_messages: u64,
    pub pings: u64,
    pub pongs: u64,
}

/// Where a connection is, with what each state needs.
#[derive(Debug)]
enum Phase {
    /// Client: the request is queued; the 101 must carry this accept key.
    AwaitingResponse {
        accept: String,
    },
    /// Server: waiting for the client's upgrade request.
    AwaitingRequest,
    Open,
    /// We sent a close frame; the peer's will end the connection.
    CloseSent,
    Closed,
}

/// A data message whose frames are still arriving.
#[derive(Debug)]
struct Incoming {
    /// Binary payloads go to the reader; text is skipped.
    binary: bool,
    /// Payload length announced so far by the message's frame headers.
    announced: u64,
    /// Payload bytes of the current frame still to come.
    frame_left: u64,
    /// The current frame's masking key and how far into its payload we are.
    mask: Option<[u8; 4]>,
    position: u64,
    /// The current frame is the message's last.
    fin: bool,
}

/// One WebSocket connection (see the module docs).
#[derive(Debug)]
pub struct WebSocket {
    role: Role,
    limits: Limits,
    phase: Phase,
    /// Where a client's masking keys come from; the caller seeds it. Masks
    /// keep script-chosen bytes from looking like HTTP to proxies (§10.3);
    /// our payloads are our own packets, so a seeded generator will do.
    masks: Rng,
    incoming: Option<Incoming>,
    stream: PayloadStream,
    transmit: Vec<u8>,
    /// Frames sent during the handshake, released behind it.
    held: Vec<u8>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl WebSocket {
    /// A client that has queued its upgrade request. `key` must be 16
    /// random bytes, new for each connection (`crate::rng::Rng` will do);
    /// `mask_seed` seeds the masking keys of the frames it sends.
    pub fn client(
        request: &ClientRequest,
        limits: Limits,
        key: [u8; 16],
        mask_seed: u64,
    ) -> Result<Self, InvalidHeader> {
        let key = handshake::encode_key(key);
        let mut socket = WebSocket::new(Role::Client, limits, mask_seed);
        request.encode(&key, &mut socket.transmit)?;
        socket.phase = Phase::AwaitingResponse { accept: handshake::accept_key(key.as_bytes()) };
        Ok(socket)
    }

    /// A server waiting for a client's upgrade request.
    pub fn server(limits: Limits) -> Self {
        WebSocket::new(Role::Server, limits, 0)
    }

    fn new(role: Role, limits: Limits, mask_seed: u64) -> Self {
        WebSocket {
            role,
            limits,
            phase: Phase::AwaitingRequest,
            masks: Rng::new(mask_seed),
            incoming: None,
            stream: PayloadStream::new(limits.max_unread),
            transmit: Vec::new(),
            held: Vec::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// New bytes arrived; `data` is everything received and not yet
    /// consumed (leftovers from earlier calls first). Returns how many bytes
    /// were consumed; keep the rest and pass it again, followed by the next
    /// bytes. What is left is bounded: part of a head (under `max_head`), a
    /// partial frame header (under 14 bytes) or a partial control frame
    /// (under 132 bytes). A data frame's payload is consumed as it arrives.
    ///
    /// Binary payload bytes go to `read`, in order, as one stream:
    /// `read(bytes)` returns how many it used, and the rest is offered again,
    /// with more behind it, on the next call. `douyu::ClientSession::on_bytes`
    /// fits as it is.
    ///
    /// Once closed it wants nothing more and returns `data.len()`.
    pub fn on_bytes<R>(&mut self, data: &[u8], mut read: R) -> usize
    where
        R: FnMut(&[u8]) -> usize,
    {
        let mut used = 0;
        while !matches!(self.phase, Phase::Closed) {
            let rest = &data[used..];
            let step = match self.phase {
                Phase::AwaitingResponse { .. } | Phase::AwaitingRequest => self.on_head(rest),
                _ => self.on_frame_bytes(rest, &mut read),
            };
            match step {
                Ok(0) => return used,
                Ok(n) => used += n,
                Err(reason) => self.fail(reason),
            }
        }
        data.len()
    }

    /// The handshake's head: its length once whole and valid, 0 before.
    fn on_head(&mut self, data: &[u8]) -> Result<usize, CloseReason> {
        let max_head = self.limits.max_head;
        let head_len = match &self.phase {
            Phase::AwaitingResponse { accept } => handshake::check_response(data, accept, max_head)?,
            _ => handshake::check_request(data, max_head)?.map(|request| {
                handshake::encode_accept(&request.accept, &mut self.transmit);
                request.head_len
            }),
        };
        if let Some(len) = head_len {
            self.phase = Phase::Open;
            self.transmit.append(&mut self.held);
            self.events.push_back(Event::Opened);
            return Ok(len);
        }
        Ok(0)
    }

    /// One step through the frames: some payload, or one header, or one
    /// whole control frame. Returns the bytes used, 0 if more are needed.
    fn on_frame_bytes<R>(&mut self, data: &[u8], read: &mut R) -> Result<usize, CloseReason>
    where
        R: FnMut(&[u8]) -> usize,
    {
        if let Some(incoming) = self.incoming.as_mut().filter(|m| m.frame_left > 0) {
            let n = data.len().min(usize::try_from(incoming.frame_left).unwrap_or(usize::MAX));
            if incoming.binary {
                let mask = incoming.mask.map(|key| (key, (incoming.position % 4) as usize));
                let max = self.limits.max_unread;
                self.stream
                    .deliver(&data[..n], mask, read)
                    .map_err(|unread| CloseReason::ReaderBacklog { unread, max })?;
            }
            incoming.frame_left -= n as u64;
            incoming.position += n as u64;
            if incoming.frame_left == 0 {
                self.end_of_frame();
            }
            return Ok(n);
        }

        let Some((header, header_len)) = FrameHeader::decode(data)? else {
            return Ok(0);
        };
        match (self.role, header.mask) {
            (Role::Client, Some(_)) => return Err(ProtocolError::MaskedByServer.into()),
            (Role::Server, None) => return Err(ProtocolError::UnmaskedByClient.into()),
            _ => {}
        }
        if header.opcode.is_control() {
            // At most 125 bytes (checked by `decode`): wait for all of it.
            let end = header_len + header.payload_len as usize;
            let Some(masked) = data.get(header_len..end) else {
                return Ok(0);
            };
            let mut buffer = [0; MAX_CONTROL_PAYLOAD];
            let payload = &mut buffer[..masked.len()];
            payload.copy_from_slice(masked);
            if let Some(key) = header.mask {
                apply_mask(payload, key, 0);
            }
            self.on_control(header.opcode, payload)?;
            return Ok(end);
        }
        self.on_data_header(header)?;
        Ok(header_len)
    }

    /// A text, binary or continuation frame's header: check the sequence and
    /// the size, then let its payload stream in.
    fn on_data_header(&mut self, header: FrameHeader) -> Result<(), ProtocolError> {
        let (binary, announced) = match (header.opcode, &self.incoming) {
            (Opcode::Continuation, Some(message)) => (message.binary, message.announced),
            (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (opcode, None) => (opcode == Opcode::Binary, 0),
        };
        let length = announced.saturating_add(header.payload_len);
        if length > self.limits.max_message as u64 {
            return Err(ProtocolError::MessageTooBig { length, max: self.limits.max_message });
        }
        self.incoming = Some(Incoming {
            binary,
            announced: length,
            frame_left: header.payload_len,
            mask: header.mask,
            position: 0,
            fin: header.fin,
        });
        if header.payload_len == 0 {
            self.end_of_frame();
        }
        Ok(())
    }

    /// The current data frame is all in: the message ends with a FIN frame.
    fn end_of_frame(&mut self) {
        if let Some(message) = self.incoming.take_if(|m| m.fin) {
            if message.binary {
                self.stats.binary_messages += 1;
            } else {
                self.stats.text_messages += 1;
            }
        }
    }

    fn on_control(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), ProtocolError> {
        match opcode {
            Opcode::Ping => {
                self.stats.pings += 1;
                if matches!(self.phase, Phase::Open) {
                    self.send_frame(true, Opcode::Pong, payload);
                }
            }
            Opcode::Pong => self.stats.pongs += 1,
            _ => {
                let (code, reason) = parse_close(payload)?;
                if matches!(self.phase, Phase::CloseSent) {
                    self.finish(CloseReason::LocallyClosed);
                } else {
                    let echo = code.map(u16::to_be_bytes);
                    self.send_frame(true, Opcode::Close, echo.as_ref().map_or(&[], |c| c.as_slice()));
                    self.finish(CloseReason::PeerClosed { code, reason });
                }
            }
        }
        Ok(())
    }

    /// Ends the connection on an error, telling the peer why if it may
    /// still listen: a refused request gets an HTTP answer, a broken
    /// conversation a close frame (unless ours is already sent).
    fn fail(&mut self, reason: CloseReason) {
        match (&reason, &self.phase) {
            (CloseReason::Handshake(error), Phase::AwaitingRequest) => {
                handshake::encode_reject(error, &mut self.transmit)
            }
            (CloseReason::Protocol(error), Phase::Open) => self.send_close(error.close_code(), &error.to_string()),
            (CloseReason::ReaderBacklog { .. }, Phase::Open) => self.send_close(close_code::TOO_BIG, "backlog"),
            _ => {}
        }
        self.finish(reason);
    }

    fn finish(&mut self, reason: CloseReason) {
        self.phase = Phase::Closed;
        self.incoming = None;
        self.held = Vec::new();
        self.stream.clear();
        self.events.push_back(Event::Closed(reason));
    }

    /// Queues `payload` as one binary message (one Douyu packet per
    /// message, as the web client sends them).
    pub fn send_binary(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        self.send_frame(true, Opcode::Binary, payload);
        Ok(())
    }

    /// Queues `payload` as one binary message cut into frames of at most
    /// `fragment_len` bytes: a binary frame, then continuations.
    pub fn send_binary_fragmented(&mut self, payload: &[u8], fragment_len: NonZeroUsize) -> Result<(), SendError> {
        self.check_open()?;
        let count = payload.len().div_ceil(fragment_len.get()).max(1);
        let mut pieces = payload.chunks(fragment_len.get());
        for index in 0..count {
            let opcode = if index == 0 { Opcode::Binary } else { Opcode::Continuation };
            self.send_frame(index + 1 == count, opcode, pieces.next().unwrap_or_default());
        }
        Ok(())
    }

    /// Queues a text message (a server's fault injection: Douyu clients
    /// must ignore them).
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.check_open()?;
        self.send_frame(true, Opcode::Text, text.as_bytes());
        Ok(())
    }

    /// Queues a ping; the peer answers with a pong carrying `payload`.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong);
        }
        self.send_frame(true, Opcode::Ping, payload);
        Ok(())
    }

    /// Starts the closing handshake: queues a close frame with `code` and
    /// `reason` (cut to the 123 bytes a frame has room for). The connection
    /// is `Closed` once the peer answers. Before the handshake has finished
    /// there is no one to tell: the connection closes at once.
    ///
    /// # Panics
    /// If `code` is not one an endpoint may send ([`close_code::is_valid`]).
    pub fn close(&mut self, code: u16, reason: &str) {
        assert!(close_code::is_valid(code), "close code {code} may not be sent");
        match self.phase {
            Phase::AwaitingResponse { .. } | Phase::AwaitingRequest => self.finish(CloseReason::LocallyClosed),
            Phase::Open => {
                self.send_close(code, reason);
                self.phase = Phase::CloseSent;
            }
            Phase::CloseSent | Phase::Closed => {}
        }
    }

    fn send_close(&mut self, code: u16, reason: &str) {
        let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut payload = [0; MAX_CONTROL_PAYLOAD];
        payload[..2].copy_from_slice(&code.to_be_bytes());
        payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
        self.send_frame(true, Opcode::Close, &payload[..2 + cut]);
    }

    fn check_open(&self) -> Result<(), SendError> {
        match self.phase {
            Phase::CloseSent | Phase::Closed => Err(SendError::Closed),
            _ => Ok(()),
        }
    }

    fn send_frame(&mut self, fin: bool, opcode: Opcode, payload: &[u8]) {
        let mask = match self.role {
            Role::Client => Some(self.masks.next_u64().to_le_bytes()[..4].try_into().expect("4 of 8 bytes")),
            Role::Server => None,
        };
        let out = match self.phase {
            Phase::AwaitingResponse { .. } | Phase::AwaitingRequest => &mut self.held,
            _ => &mut self.transmit,
        };
        frame::encode_frame(out, fin, opcode, mask, payload);
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
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::AwaitingResponse { .. } | Phase::AwaitingRequest => State::Handshaking,
            Phase::Open => State::Open,
            Phase::CloseSent => State::Closing,
            Phase::Closed => State::Closed,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Payload bytes the reader left for later (at most `max_unread`).
    pub fn unread(&self) -> usize {
        self.stream.unread()
    }
}

/// A close frame's payload: nothing, or a valid code and UTF-8 text (decoded
/// lossily: the reason is only ever shown, never acted on).
fn parse_close(payload: &[u8]) -> Result<(Option<u16>, String), ProtocolError> {
    match *payload {
        [] => Ok((None, String::new())),
        [_] => Err(ProtocolError::BadClosePayload),
        [a, b, ref reason @ ..] => {
            let code = u16::from_be_bytes([a, b]);
            if !close_code::is_valid(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            Ok((Some(code), String::from_utf8_lossy(reason).into_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::douyu::frame::{DecoderConfig, SERVER_TO_CLIENT, decode_packet, encode_packet};
    use proptest::prelude::*;

    const KEY: [u8; 16] = *b"the sample nonce";

    fn client_with(limits: Limits) -> WebSocket {
        WebSocket::client(&ClientRequest::new("danmuproxy.douyu.com:8502"), limits, KEY, 7).unwrap()
    }

    fn transmit(ws: &mut WebSocket) -> Vec<u8> {
        let mut out = Vec::new();
        ws.poll_transmit(&mut out);
        out
    }

    fn events(ws: &mut WebSocket) -> Vec<Event> {
        std::iter::from_fn(|| ws.poll_event()).collect()
    }

    fn closed(reason: impl Into<CloseReason>) -> Vec<Event> {
        vec![Event::Closed(reason.into())]
    }

    /// A reader that takes everything into `stream`.
    fn into(stream: &mut Vec<u8>) -> impl FnMut(&[u8]) -> usize + '_ {
        |payload: &[u8]| {
            stream.extend_from_slice(payload);
            payload.len()
        }
    }

    fn ignore(payload: &[u8]) -> usize {
        payload.len()
    }

    /// The server's 101 for our fixed key.
    fn response_101() -> Vec<u8> {
        let mut out = Vec::new();
        handshake::encode_accept(&handshake::accept_key(handshake::encode_key(KEY).as_bytes()), &mut out);
        out
    }

    /// A client and a server that have completed the handshake.
    fn open_pair_with(limits: Limits) -> (WebSocket, WebSocket) {
        let mut client = client_with(limits);
        let mut server = WebSocket::server(limits);
        let request = transmit(&mut client);
        assert_eq!(server.on_bytes(&request, ignore), request.len());
        let response = transmit(&mut server);
        assert_eq!(client.on_bytes(&response, ignore), response.len());
        assert_eq!((events(&mut client), events(&mut server)), (vec![Event::Opened], vec![Event::Opened]));
        (client, server)
    }

    fn open_pair() -> (WebSocket, WebSocket) {
        open_pair_with(Limits::default())
    }

    /// A frame as the server would send it (unmasked), for frames the
    /// connection itself would never send.
    fn raw(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame::encode_frame(&mut out, fin, opcode, None, payload);
        out
    }

    /// Every frame in `wire`, unmasked: (fin, opcode, payload).
    fn frames(mut wire: &[u8]) -> Vec<(bool, Opcode, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((header, len)) = FrameHeader::decode(wire).unwrap() {
            let end = len + header.payload_len as usize;
            let mut payload = wire[len..end].to_vec();
            if let Some(key) = header.mask {
                apply_mask(&mut payload, key, 0);
            }
            out.push((header.fin, header.opcode, payload));
            wire = &wire[end..];
        }
        assert!(wire.is_empty(), "a partial frame at the end");
        out
    }

    #[test]
    fn frames_in_the_same_read_as_the_101_are_kept() {
        let mut client = client_with(Limits::default());
        assert_eq!(client.state(), State::Handshaking);
        assert!(String::from_utf8(transmit(&mut client)).unwrap().starts_with("GET / HTTP/1.1\r\n"));
        let mut wire = response_101();
        wire.extend(raw(true, Opcode::Binary, b"first"));
        wire.extend(raw(true, Opcode::Binary, b"second"));
        let mut stream = Vec::new();
        assert_eq!(client.on_bytes(&wire, into(&mut stream)), wire.len());
        assert_eq!(events(&mut client), [Event::Opened]);
        assert_eq!(stream, b"firstsecond");
        assert_eq!(client.state(), State::Open);
        assert_eq!(client.stats().binary_messages, 2);
    }

    /// The common case costs no copy: a frame that arrived whole, holding
    /// whole packets, is read from the caller's buffer itself. Only a
    /// packet cut across frames is copied, once.
    #[test]
    fn whole_packets_reach_the_reader_from_the_input_itself() {
        let (mut client, _) = open_pair();
        let wire = [raw(true, Opcode::Binary, b"packet"), raw(true, Opcode::Binary, b"pac")].concat();
        let input = wire.as_ptr_range();
        let mut offered = Vec::new();
        let reader = |payload: &[u8]| {
            offered.push((payload.to_vec(), input.contains(&payload.as_ptr())));
            payload.len() / 6 * 6 // whole 6-byte packets only
        };
        assert_eq!(client.on_bytes(&wire, reader), wire.len());
        assert_eq!(client.unread(), 3);
        let tail = raw(true, Opcode::Binary, b"ketpacket");
        let input = tail.as_ptr_range();
        let reader = |payload: &[u8]| {
            offered.push((payload.to_vec(), input.contains(&payload.as_ptr())));
            payload.len() / 6 * 6
        };
        assert_eq!(client.on_bytes(&tail, reader), tail.len());
        assert_eq!(client.unread(), 0);
        assert_eq!(
            offered,
            [
                (b"packet".to_vec(), true),        // straight from `wire`
                (b"pac".to_vec(), true),           // offered, then its leftover kept
                (b"packetpacket".to_vec(), false), // "pac" + "ketpacket", copied behind it
            ]
        );
    }

    #[test]
    fn a_partial_head_is_left_with_the_caller() {
        let mut client = client_with(Limits::default());
        let wire = response_101();
        assert_eq!(client.on_bytes(&wire[..wire.len() - 1], ignore), 0);
        assert_eq!(client.state(), State::Handshaking);
        assert_eq!(client.on_bytes(&wire, ignore), wire.len());
        assert_eq!(client.state(), State::Open);
    }

    #[test]
    fn a_failed_handshake_closes_with_its_reason() {
        // The accept key of another request's key.
        let mut bad_accept = Vec::new();
        handshake::encode_accept(&handshake::accept_key(b"AAAAAAAAAAAAAAAAAAAAAA=="), &mut bad_accept);
        let refused = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        let endless = [b"HTTP/1.1 101 Switching Protocols\r\nX: ".as_slice(), &[b'y'; 20_000]].concat();
        for (wire, error) in [
            (&bad_accept[..], HandshakeError::BadAccept),
            (&refused[..], HandshakeError::Status(503)),
            (&endless[..], HandshakeError::HeadTooLarge { max: 16 * 1024 }),
        ] {
            let mut client = client_with(Limits::default());
            transmit(&mut client);
            assert_eq!(client.on_bytes(wire, ignore), wire.len());
            assert_eq!(events(&mut client), closed(error));
            assert_eq!(client.state(), State::Closed);
            assert!(transmit(&mut client).is_empty(), "nothing to say to a server that is not one");
            assert_eq!(client.send_binary(b"x"), Err(SendError::Closed));
        }
    }

    #[test]
    fn the_server_answers_a_bad_request_over_http_and_closes() {
        let mut server = WebSocket::server(Limits::default());
        let request = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                        Sec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(server.on_bytes(request, ignore), request.len());
        assert_eq!(events(&mut server), closed(HandshakeError::BadHeader("Sec-WebSocket-Key")));
        assert!(transmit(&mut server).starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    }

    #[test]
    fn frames_sent_while_handshaking_wait_behind_the_handshake() {
        let mut client = client_with(Limits::default());
        client.send_binary(b"loginreq").unwrap();
        let request = transmit(&mut client);
        assert!(request.ends_with(b"\r\n\r\n"), "only the GET goes out before the 101");
        let mut server = WebSocket::server(Limits::default());
        server.send_binary(b"welcome").unwrap();
        assert!(transmit(&mut server).is_empty());

        assert_eq!(server.on_bytes(&request, ignore), request.len());
        let answer = transmit(&mut server);
        let head_len = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(answer.starts_with(b"HTTP/1.1 101 "));
        assert_eq!(frames(&answer[head_len..]), [(true, Opcode::Binary, b"welcome".to_vec())]);
        let mut stream = Vec::new();
        assert_eq!(client.on_bytes(&answer, into(&mut stream)), answer.len());
        assert_eq!(stream, b"welcome");
        let sent = transmit(&mut client);
        assert_eq!(frames(&sent), [(true, Opcode::Binary, b"loginreq".to_vec())]);
    }

    #[test]
    fn frames_waiting_for_a_failed_or_abandoned_handshake_are_dropped() {
        let mut refused = client_with(Limits::default());
        refused.send_binary(b"loginreq").unwrap();
        transmit(&mut refused);
        let wire = b"HTTP/1.1 404 Not Found\r\n\r\n";
        assert_eq!(refused.on_bytes(wire, ignore), wire.len());
        assert_eq!(events(&mut refused), closed(HandshakeError::Status(404)));
        assert!(transmit(&mut refused).is_empty());

        // Closing during the handshake has no one to tell.
        let mut abandoned = client_with(Limits::default());
        abandoned.send_binary(b"loginreq").unwrap();
        transmit(&mut abandoned);
        abandoned.close(close_code::NORMAL, "");
        assert_eq!(events(&mut abandoned), closed(CloseReason::LocallyClosed));
        assert!(transmit(&mut abandoned).is_empty());
        assert_eq!(abandoned.send_binary(b"x"), Err(SendError::Closed));
    }

    #[test]
    fn client_frames_are_masked_and_server_frames_are_not() {
        let (mut client, mut server) = open_pair();
        client.send_binary(b"up").unwrap();
        server.send_binary(b"down").unwrap();
        let up = transmit(&mut client);
        let down = transmit(&mut server);
        assert!(FrameHeader::decode(&up).unwrap().unwrap().0.mask.is_some(), "a client masks");
        assert_eq!(down, raw(true, Opcode::Binary, b"down"));
        // Two frames get two different keys.
        client.send_binary(b"up").unwrap();
        assert_ne!(transmit(&mut client), up);

        let mut stream = Vec::new();
        assert_eq!(server.on_bytes(&up, into(&mut stream)), up.len());
        assert_eq!(stream, b"up");
    }

    #[test]
    fn a_masked_server_frame_is_a_protocol_error() {
        let (mut client, _) = open_pair();
        let mut wire = Vec::new();
        frame::encode_frame(&mut wire, true, Opcode::Binary, Some([1, 2, 3, 4]), b"x");
        let mut stream = Vec::new();
        assert_eq!(client.on_bytes(&wire, into(&mut stream)), wire.len());
        assert!(stream.is_empty());
        assert_eq!(events(&mut client), closed(ProtocolError::MaskedByServer));
        let reply = frames(&transmit(&mut client));
        assert_eq!(reply.len(), 1);
        assert_eq!((reply[0].1, &reply[0].2[..2]), (Opcode::Close, &1002u16.to_be_bytes()[..]));
    }

    #[test]
    fn an_unmasked_client_frame_is_a_protocol_error() {
        let (_, mut server) = open_pair();
        let wire = raw(true, Opcode::Binary, b"x");
        assert_eq!(server.on_bytes(&wire, ignore), wire.len());
        assert_eq!(events(&mut server), closed(ProtocolError::UnmaskedByClient));
        assert_eq!(frames(&transmit(&mut server))[0].1, Opcode::Close);
    }

    #[test]
    fn ping_is_answered_with_a_pong_of_the_same_payload() {
        let (mut client, mut server) = open_pair();
        server.send_ping(b"are you there").unwrap();
        assert_eq!(server.send_ping(&[0; 126]), Err(SendError::ControlTooLong));
        let wire = transmit(&mut server);
        assert_eq!(client.on_bytes(&wire, ignore), wire.len());
        let pong = transmit(&mut client);
        assert_eq!(frames(&pong), [(true, Opcode::Pong, b"are you there".to_vec())]);
        assert_eq!(server.on_bytes(&pong, ignore), pong.len());
        assert_eq!((client.stats().pings, server.stats().pongs), (1, 1));
        assert!(events(&mut client).is_empty() && events(&mut server).is_empty(), "a pong is only counted");
    }

    #[test]
    fn a_control_frame_waits_until_it_is_whole() {
        let (mut client, _) = open_pair();
        let wire = raw(true, Opcode::Ping, b"0123456789");
        assert_eq!(client.on_bytes(&wire[..wire.len() - 1], ignore), 0);
        assert!(transmit(&mut client).is_empty());
        assert_eq!(client.on_bytes(&wire, ignore), wire.len());
        assert_eq!(frames(&transmit(&mut client))[0].2, b"0123456789");
    }

    #[test]
    fn text_messages_are_skipped_and_counted_not_fatal() {
        let (mut client, _) = open_pair();
        let mut wire = raw(true, Opcode::Text, "弹幕".as_bytes());
        wire.extend(raw(false, Opcode::Text, b"in "));
        wire.extend(raw(true, Opcode::Continuation, b"two"));
        wire.extend(raw(true, Opcode::Binary, b"packet"));
        let mut stream = Vec::new();
        assert_eq!(client.on_bytes(&wire, into(&mut stream)), wire.len());
        assert_eq!(stream, b"packet");
        assert_eq!(client.stats().text_messages, 2);
        assert_eq!(client.state(), State::Open);
        assert!(events(&mut client).is_empty());
    }

    #[test]
    fn a_fragmented_message_is_reassembled_around_control_frames() {
        let (mut client, mut server) = open_pair();
        server.send_binary_fragmented(b"abcdefgh", NonZeroUsize::new(3).unwrap()).unwrap();
        let fragments = transmit(&mut server);
        let opcodes: Vec<_> = frames(&fragments).iter().map(|(fin, op, _)| (*fin, *op)).collect();
        assert_eq!(opcodes, [(false, Opcode::Binary), (false, Opcode::Continuation), (true, Opcode::Continuation)]);
        // A ping may come between fragments (§5.4).
        let first_len = 2 + 3;
        let mut wire = fragments[..first_len].to_vec();
        wire.extend(raw(true, Opcode::Ping, b"p"));
        wire.extend_from_slice(&fragments[first_len..]);
        let mut stream = Vec::new();
        assert_eq!(client.on_bytes(&wire, into(&mut stream)), wire.len());
        assert_eq!(stream, b"abcdefgh");
        assert_eq!(client.stats().binary_messages, 1);
        assert_eq!(frames(&transmit(&mut client)), [(true, Opcode::Pong, b"p".to_vec())]);
        // An empty message is one frame.
        server.send_binary_fragmented(b"", NonZeroUsize::new(3).unwrap()).unwrap();
        assert_eq!(transmit(&mut server), raw(true, Opcode::Binary, b""));
    }

    #[test]
    fn fragments_out_of_sequence_are_protocol_errors() {
        for (wire, error) in [
            (raw(true, Opcode::Continuation, b"x"), ProtocolError::UnexpectedContinuation),
            (
                [raw(false, Opcode::Binary, b"x"), raw(true, Opcode::Binary, b"y")].concat(),
                ProtocolError::ExpectedContinuation,
            ),
            (
                [raw(false, Opcode::Text, b"x"), raw(true, Opcode::Binary, b"y")].concat(),
                ProtocolError::ExpectedContinuation,
            ),
        ] {
            let (mut client, _) = open_pair();
            assert_eq!(client.on_bytes(&wire, ignore), wire.len());
            assert_eq!(events(&mut client), closed(error));
        }
    }

    #[test]
    fn an_oversized_message_is_refused_from_its_header_alone() {
        let limits = Limits { max_message: 1000, ..Limits::default() };
        // A 10-byte header announcing 4 GiB: refused before any payload.
        let (mut client, _) = open_pair_with(limits);
        let mut header = Vec::new();
        FrameHeader { fin: true, opcode: Opcode::Binary, mask: None, payload_len: 1 << 32 }.encode(&mut header);
        assert_eq!(header.len(), 10);
        assert_eq!(client.on_bytes(&header, ignore), header.len());
        assert_eq!(events(&mut client), closed(ProtocolError::MessageTooBig { length: 1 << 32, max: 1000 }));
        let reply = frames(&transmit(&mut client));
        assert_eq!((reply[0].1, &reply[0].2[..2]), (Opcode::Close, &1009u16.to_be_bytes()[..]));

        // Fragments count together: 600 + 600 is over 1000.
        let (mut client, _) = open_pair_with(limits);
        let mut wire = raw(false, Opcode::Binary, &[0; 600]);
        FrameHeader { fin: true, opcode: Opcode::Continuation, mask: None, payload_len: 600 }.encode(&mut wire);
        let mut stream = Vec::new();
        assert_eq!(client.on_bytes(&wire, into(&mut stream)), wire.len());
        assert_eq!(events(&mut client), closed(ProtocolError::MessageTooBig { length: 1200, max: 1000 }));
        assert_eq!(stream.len(), 600, "the first fragment was within the limit");

        // Exactly at the limit is fine.
        let (mut client, _) = open_pair_with(limits);
        let wire = raw(true, Opcode::Binary, &[0; 1000]);
        assert_eq!(client.on_bytes(&wire, ignore), wire.len());
        assert_eq!(client.state(), State::Open);
    }

    #[test]
    fn reserved_bits_and_bad_close_frames_are_protocol_errors() {
        let mut reserved = raw(true, Opcode::Binary, b"x");
        reserved[0] |= 0x40;
        for (wire, error) in [
            (reserved, ProtocolError::ReservedBits),
            (vec![0x83, 0x00], ProtocolError::ReservedOpcode(3)),
            (raw(true, Opcode::Close, &[3]), ProtocolError::BadClosePayload),
            (raw(true, Opcode::Close, &1005u16.to_be_bytes()), ProtocolError::InvalidCloseCode(1005)),
        ] {
            let (mut client, _) = open_pair();
            assert_eq!(client.on_bytes(&wire, ignore), wire.len());
            assert_eq!(events(&mut client), closed(error));
            assert_eq!(frames(&transmit(&mut client))[0].1, Opcode::Close);
        }
    }

    #[test]
    fn closing_from_the_client() {
        let (mut client, mut server) = open_pair();
        client.close(close_code::GOING_AWAY, "bye");
        assert_eq!(client.state(), State::Closing);
        assert_eq!(client.send_binary(b"late"), Err(SendError::Closed));
        let close = transmit(&mut client);
        assert_eq!(server.on_bytes(&close, ignore), close.len());
        assert_eq!(events(&mut server), closed(CloseReason::PeerClosed { code: Some(1001), reason: "bye".into() }));
        // The server echoes the code; its answer ends the client's side.
        let answer = transmit(&mut server);
        assert_eq!(frames(&answer), [(true, Opcode::Close, 1001u16.to_be_bytes().to_vec())]);
        assert_eq!(client.on_bytes(&answer, ignore), answer.len());
        assert_eq!(events(&mut client), closed(CloseReason::LocallyClosed));
        assert!(transmit(&mut client).is_empty(), "a close is not answered twice");
        assert_eq!((client.state(), server.state()), (State::Closed, State::Closed));
    }

    #[test]
    fn closing_from_the_server_while_data_is_still_arriving() {
        let (mut client, mut server) = open_pair();
        server.close(close_code::NORMAL, &"长".repeat(100)); // cut to 123 bytes, on a char boundary
        let close = transmit(&mut server);
        assert_eq!(frames(&close)[0].2.len(), 2 + 123);
        // Before the client hears the close, it sends a packet: the server
        // still delivers it (the closing handshake does not lose data).
        client.send_binary(b"logout").unwrap();
        let mut wire = transmit(&mut client);
        let mut stream = Vec::new();
        assert_eq!(client.on_bytes(&close, ignore), close.len());
        let reason = "长".repeat(41);
        assert_eq!(events(&mut client), closed(CloseReason::PeerClosed { code: Some(1000), reason }));
        wire.extend(transmit(&mut client));
        assert_eq!(server.on_bytes(&wire, into(&mut stream)), wire.len());
        assert_eq!(stream, b"logout");
        assert_eq!(events(&mut server), closed(CloseReason::LocallyClosed));
        // Whatever comes after the end is ignored.
        assert_eq!(server.on_bytes(b"\x82\x01x", ignore), 3);
        assert!(events(&mut server).is_empty());
    }

    #[test]
    fn a_close_without_a_code_is_answered_without_one() {
        let (mut client, _) = open_pair();
        let wire = raw(true, Opcode::Close, b"");
        assert_eq!(client.on_bytes(&wire, ignore), wire.len());
        assert_eq!(events(&mut client), closed(CloseReason::PeerClosed { code: None, reason: String::new() }));
        assert_eq!(frames(&transmit(&mut client)), [(true, Opcode::Close, vec![])]);
    }

    #[test]
    fn a_reader_that_never_consumes_is_stopped() {
        let limits = Limits { max_unread: 100, ..Limits::default() };
        let (mut client, _) = open_pair_with(limits);
        let wire = [raw(true, Opcode::Binary, &[1; 60]), raw(true, Opcode::Binary, &[2; 60])].concat();
        assert_eq!(client.on_bytes(&wire, |_: &[u8]| 0), wire.len());
        assert_eq!(events(&mut client), closed(CloseReason::ReaderBacklog { unread: 120, max: 100 }));
        assert_eq!(client.unread(), 0, "the backlog is freed");
    }

    #[test]
    fn close_reasons_print_peer_text_escaped() {
        let reason = CloseReason::PeerClosed { code: Some(1000), reason: "\x1b[2Jgone\n".into() };
        let shown = reason.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(shown.contains("1000") && shown.contains("gone"));
    }

    /// What one side sends in a proptest.
    #[derive(Clone, Debug)]
    enum Op {
        Binary(Vec<u8>),
        Fragmented(Vec<u8>, NonZeroUsize),
        Text(String),
        Ping(Vec<u8>),
    }

    fn op() -> impl Strategy<Value = Op> {
        let bytes = || prop::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            3 => bytes().prop_map(Op::Binary),
            2 => (bytes(), 1usize..40).prop_map(|(b, n)| Op::Fragmented(b, NonZeroUsize::new(n).unwrap())),
            1 => ".{0,20}".prop_map(Op::Text),
            1 => prop::collection::vec(any::<u8>(), 0..=125).prop_map(Op::Ping),
        ]
    }

    fn send(ws: &mut WebSocket, op: &Op) {
        match op {
            Op::Binary(bytes) => ws.send_binary(bytes),
            Op::Fragmented(bytes, n) => ws.send_binary_fragmented(bytes, *n),
            Op::Text(text) => ws.send_text(text),
            Op::Ping(bytes) => ws.send_ping(bytes),
        }
        .unwrap();
    }

    /// Cuts `wire` at `cuts` and feeds the pieces the way a reactor does,
    /// passing leftovers again; checks that leftovers stay small.
    fn feed_in_pieces(
        ws: &mut WebSocket,
        wire: &[u8],
        cuts: &[prop::sample::Index],
        read: &mut impl FnMut(&[u8]) -> usize,
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.extend([0, wire.len()]);
        points.sort_unstable();
        let mut pending = Vec::new();
        for pair in points.windows(2) {
            pending.extend_from_slice(&wire[pair[0]..pair[1]]);
            let used = ws.on_bytes(&pending, &mut *read);
            pending.drain(..used);
            if ws.state() != State::Handshaking {
                assert!(
                    pending.len() < frame::MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD,
                    "{} bytes left over",
                    pending.len()
                );
            }
        }
        assert!(pending.is_empty(), "{} bytes never consumed", pending.len());
    }

    /// One side sends `ops` right after the handshake; the other side gets
    /// the handshake head and the frames cut at `cuts`.
    fn round_trip(ops: &[Op], cuts: &[prop::sample::Index], from_client: bool) -> Result<(), TestCaseError> {
        let mut client = client_with(Limits::default());
        let mut server = WebSocket::server(Limits::default());
        let request = transmit(&mut client);
        let (sender, receiver, mut wire) = if from_client {
            assert_eq!(client.on_bytes(&response_101(), ignore), response_101().len());
            (&mut client, &mut server, request)
        } else {
            assert_eq!(server.on_bytes(&request, ignore), request.len());
            (&mut server, &mut client, Vec::new())
        };
        for op in ops {
            send(sender, op);
        }
        wire.extend(transmit(sender));

        let mut stream = Vec::new();
        feed_in_pieces(receiver, &wire, cuts, &mut into(&mut stream));
        let binaries: Vec<&[u8]> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Binary(b) | Op::Fragmented(b, _) => Some(b.as_slice()),
                _ => None,
            })
            .collect();
        let pings: Vec<Vec<u8>> =
            ops.iter().filter_map(|op| if let Op::Ping(p) = op { Some(p.clone()) } else { None }).collect();
        let texts = ops.iter().filter(|op| matches!(op, Op::Text(_))).count() as u64;
        prop_assert_eq!(stream, binaries.concat());
        prop_assert_eq!(
            receiver.stats(),
            Stats { binary_messages: binaries.len() as u64, text_messages: texts, pings: pings.len() as u64, pongs: 0 }
        );
        let mut answers = transmit(receiver);
        if from_client {
            let head_len = handshake::check_response(
                &answers,
                &handshake::accept_key(handshake::encode_key(KEY).as_bytes()),
                1024,
            );
            answers.drain(..head_len.unwrap().unwrap());
        }
        let pongs: Vec<Vec<u8>> = frames(&answers)
            .into_iter()
            .map(|(_, opcode, p)| {
                assert_eq!(opcode, Opcode::Pong);
                p
            })
            .collect();
        prop_assert_eq!(pongs, pings);
        prop_assert_eq!(receiver.state(), State::Open);
        Ok(())
    }

    /// A frame that is mostly well formed, with any opcode (reserved ones
    /// too), either masking, sometimes a reserved bit, and lengths around
    /// the limits used below: garbage that gets past the first byte.
    fn wild_frame() -> impl Strategy<Value = Vec<u8>> {
        let opcode = prop::sample::select(vec![0u8, 1, 2, 8, 9, 10, 3, 0xB]);
        (
            any::<bool>(),
            opcode,
            prop::bool::weighted(0.05),
            any::<Option<[u8; 4]>>(),
            prop::collection::vec(any::<u8>(), 0..150),
        )
            .prop_map(|(fin, opcode, reserved, mask, payload)| {
                let mut out = Vec::new();
                frame::encode_frame(&mut out, fin, Opcode::Binary, mask, &payload);
                out[0] = u8::from(fin) << 7 | u8::from(reserved) << 6 | opcode;
                out
            })
    }

    proptest! {
        #[test]
        fn server_to_client_over_any_chunking(ops in prop::collection::vec(op(), 0..10), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16)) {
            round_trip(&ops, &cuts, false)?;
        }

        #[test]
        fn client_to_server_over_any_chunking(ops in prop::collection::vec(op(), 0..10), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16)) {
            round_trip(&ops, &cuts, true)?;
        }

        /// Douyu's case: packets cut into messages at arbitrary points (a
        /// packet spans messages, a message holds several), the wire cut
        /// again; the session's decoder reads every packet once, in order.
        #[test]
        fn douyu_packets_spanning_messages_arrive_whole(
            bodies in prop::collection::vec("[a-z@=/]{0,40}", 1..8),
            message_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            wire_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
        ) {
            let (mut client, mut server) = open_pair();
            let mut packets = Vec::new();
            for body in &bodies {
                encode_packet(&mut packets, SERVER_TO_CLIENT, body);
            }
            let mut points: Vec<usize> = message_cuts.iter().map(|c| c.index(packets.len() + 1)).collect();
            points.extend([0, packets.len()]);
            points.sort_unstable();
            for (i, pair) in points.windows(2).enumerate() {
                let message = &packets[pair[0]..pair[1]];
                match i % 2 {
                    0 => server.send_binary(message).unwrap(),
                    _ => server.send_binary_fragmented(message, NonZeroUsize::new(7).unwrap()).unwrap(),
                }
            }
            let wire = transmit(&mut server);
            let mut got = Vec::new();
            let mut session = |data: &[u8]| {
                let mut used = 0;
                while let Some((packet, n)) = decode_packet(&data[used..], &DecoderConfig::client()).unwrap() {
                    got.push(packet.body.into_owned());
                    used += n;
                }
                used
            };
            feed_in_pieces(&mut client, &wire, &wire_cuts, &mut session);
            prop_assert_eq!(got, bodies);
            prop_assert_eq!(client.unread(), 0);
        }

        #[test]
        fn garbage_after_the_handshake_never_panics_or_grows(
            bytes in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..400),
                prop::collection::vec(wild_frame(), 0..8).prop_map(|frames| frames.concat()),
            ],
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            from_client: bool,
        ) {
            let limits = Limits { max_head: 1024, max_message: 64, max_unread: 128 };
            let (mut client, mut server) = open_pair_with(limits);
            let ws = if from_client { &mut server } else { &mut client };
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.extend([0, bytes.len()]);
            points.sort_unstable();
            let mut pending = Vec::new();
            let mut stalled = |_: &[u8]| 0;
            for pair in points.windows(2) {
                pending.extend_from_slice(&bytes[pair[0]..pair[1]]);
                let used = ws.on_bytes(&pending, &mut stalled);
                prop_assert!(used <= pending.len());
                pending.drain(..used);
                prop_assert!(pending.len() < frame::MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD);
                prop_assert!(ws.unread() <= limits.max_unread);
            }
            // Answers (pongs, one close) are bounded by what came in.
            prop_assert!(transmit(ws).len() <= 3 * bytes.len() + 2 + 4 + MAX_CONTROL_PAYLOAD);
            prop_assert!(matches!(ws.state(), State::Open | State::Closed));
        }

        #[test]
        fn garbage_as_a_handshake_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300), server_side: bool) {
            let limits = Limits { max_head: 128, ..Limits::default() };
            let mut ws = if server_side { WebSocket::server(limits) } else { client_with(limits) };
            transmit(&mut ws);
            let used = ws.on_bytes(&bytes, ignore);
            prop_assert!(used == 0 && bytes.len() < 128 || ws.state() == State::Closed);
        }
    }
}

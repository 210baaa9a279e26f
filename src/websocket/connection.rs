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
//! | `Open` | ping | hold a pong with its payload, replacing one held | `Open` |
//! | `Open`, `CloseSent` | pong | ignored, counted | same |
//! | `Open` | close frame | queue a close with the same code; `Closed(PeerClosed)` | `Closed` |
//! | `CloseSent` | close frame | `Closed(LocallyClosed)` | `Closed` |
//! | `Open`, `CloseSent` | a protocol error | `Open`: queue close 1002 (1009: too big); `Closed(Protocol)` | `Closed` |
//! | `Open` | close() | queue a close frame | `CloseSent` |
//! | handshaking | send_*() | the frame waits until the handshake is done | same |
//! | handshaking | close() | waiting frames dropped; `Closed(LocallyClosed)` | `Closed` |
//! | `Closed` | anything | ignored | `Closed` |
//!
//! A peer that pings and never reads cannot pile pongs up here: at most
//! one is held, for the latest ping not yet answered (RFC 6455 §5.5.3
//! allows answering only that one). It goes out with the next frame we
//! queue or the next `poll_transmit`, whichever comes first, so it never
//! follows our close frame.
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
    /// The pong for the latest ping not answered yet: its payload.
    pong: Option<Vec<u8>>,
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
            pong: None,
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
            // Only the handshake holds frames back: the buffer goes too.
            append_owned(&mut self.transmit, std::mem::take(&mut self.held));
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
                    // Replaces an unsent one (see the module docs).
                    let pong = self.pong.get_or_insert_default();
                    pong.clear();
                    pong.extend_from_slice(payload);
                }
            }
            Opcode::Pong => self.stats.pongs += 1,
            _ => {
                // Close, the only control opcode left.
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
        self.pong = None;
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
        self.release_pong();
        self.encode_frame(fin, opcode, payload);
    }

    /// Queues the held pong, if any, behind what is queued already.
    fn release_pong(&mut self) {
        if let Some(pong) = self.pong.take() {
            self.encode_frame(true, Opcode::Pong, &pong);
        }
    }

    fn encode_frame(&mut self, fin: bool, opcode: Opcode, payload: &[u8]) {
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

    /// Appends all bytes waiting to be sent to `out`; false if there were
    /// none. Into an empty `out` the buffer moves whole (`out`'s own is
    /// dropped). None is kept: a client sends a few frames a minute, and
    /// the upgrade request's buffer would stay for the connection's life.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        self.release_pong();
        if self.transmit.is_empty() {
            return false;
        }
        append_owned(out, std::mem::take(&mut self.transmit));
        true
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if self.events.is_empty() && self.events.capacity() > 0 {
            // A connection has two events in its life, `Opened` and
            // `Closed`: the queue gives its room back in between.
            self.events = VecDeque::new();
        }
        event
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

/// `out` followed by `bytes`, reusing `bytes`' buffer when `out` is empty.
fn append_owned(out: &mut Vec<u8>, bytes: Vec<u8>) {
    if out.is_empty() {
        *out = bytes;
    } else {
        out.extend_from_slice(&bytes);
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
mod tests;

//! WebSocket (RFC 6455), sans-IO: bytes in; bytes, a payload stream and
//! events out. No sockets, no clock, nothing from `crate::reactor`. Douyu's
//! web endpoint (`wss://danmuproxy.douyu.com:8501`–`8506`) carries the same
//! packets as its TCP one inside binary messages; this layer turns those
//! messages back into the byte stream `douyu::ClientSession` already reads.
//!
//! ```text
//!          reactor connection (TCP, or TLS under it)
//!   read bytes │                          ▲ poll_transmit
//!              ▼                          │
//!   ┌──────────────────── WebSocket ─────────────────────┐
//!   │ handshake: GET / 101, accept key  (handshake.rs)   │
//!   │ frames: header, masking, control  (frame.rs)       │  ping → pong
//!   │ fragments, closing, limits        (connection.rs)  │  close → close
//!   │ binary payloads as one stream     (stream.rs)      │  text → counted
//!   └────────────────────────────────────────────────────┘
//!      reader(bytes) │ -> consumed          ▲ send_binary(packet)
//!                    ▼                      │
//!            douyu::ClientSession: on_bytes / poll_transmit
//! ```
//!
//! Read it bottom-up, one concept per file:
//!
//! | module | concept | main items |
//! |---|---|---|
//! | [`frame`] | the frame header, masking, close codes | [`FrameHeader`], [`frame::encode_frame`], [`frame::apply_mask`], [`ProtocolError`] |
//! | [`handshake`] | the opening handshake, client and server | [`ClientRequest`], [`handshake::check_response`], [`handshake::check_request`], [`handshake::accept_key`] |
//! | `stream` | binary payloads as one byte stream for a reader | (internal) |
//! | [`connection`] | the state machine of one connection, either side | [`WebSocket`], [`Event`], [`CloseReason`] |
//!
//! A client driven by a reactor connection, with the Douyu session reading
//! the payload stream (hidden lines play Douyu's side):
//!
//! ```
//! use std::time::Instant;
//! use barrage::douyu::{ClientSession, SessionConfig, SessionState};
//! use barrage::websocket::{ClientRequest, Event, Limits, WebSocket};
//! # use barrage::douyu::frame::{encode_packet, SERVER_TO_CLIENT};
//! # let (random_key, seed) = ([7u8; 16], 1); // from crate::rng::Rng, say
//! # let mut douyu = WebSocket::server(Limits::default());
//! let now = Instant::now();
//! let request = ClientRequest::new("danmuproxy.douyu.com:8502");
//! let mut ws = WebSocket::client(&request, Limits::default(), random_key, seed)?;
//! let mut session = ClientSession::new(9999, SessionConfig::default());
//!
//! // TCP (and TLS) is up: the session starts now; its loginreq waits behind the GET.
//! session.on_connected(now);
//! let mut packets = Vec::new();
//! session.poll_transmit(&mut packets);
//! ws.send_binary(&packets)?; // one packet, one binary message
//! let mut wire = Vec::new();
//! ws.poll_transmit(&mut wire); // to the reactor's Context::send
//! # douyu.on_bytes(&wire, |p| p.len());
//! # let mut loginres = Vec::new();
//! # encode_packet(&mut loginres, SERVER_TO_CLIENT, "type@=loginres/");
//! # douyu.send_binary(&loginres)?;
//! # let mut data = Vec::new();
//! # douyu.poll_transmit(&mut data);
//!
//! // handle_read(data) -> consumed: payloads go straight into the session.
//! let consumed = ws.on_bytes(&data, |payload| session.on_bytes(payload, now));
//! while let Some(event) = ws.poll_event() {
//!     if let Event::Closed(_reason) = event { /* flush `wire`, then close the socket */ }
//! }
//! # assert_eq!(consumed, data.len());
//! # assert_eq!(session.state(), SessionState::Joined);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `ws.on_bytes` consumes everything but a partial frame header or control
//! frame; the reactor keeps that remainder, as it keeps half a Douyu packet
//! today. The session's `poll_transmit` may hold several packets at once
//! (a `joingroup` and a heartbeat, say): cut them at their length fields to
//! send one per message, as the web client does.
//!
//! # Crates
//!
//! The accept key is `sha1` (RustCrypto) and `base64`; HTTP heads are
//! `httparse`. The frame codec is our own: tungstenite's public pieces
//! (`FrameHeader::parse`/`format`) cover only the 2–14-byte bit layout,
//! read through an `io::Cursor`, while every rule that matters here — who
//! masks, fragment sequences, control frame limits, the size limit from the
//! header, streaming a payload straight to the reader — would still be ours;
//! and even without default features it brings `rand`, `bytes` and
//! `thiserror` (plus `http` for its `derive_accept_key`). tungstenite is a
//! dev-dependency instead: the tests talk to it, an independent
//! implementation, in both directions.

pub mod connection;
pub mod frame;
pub mod handshake;
mod stream;

pub use connection::{CloseReason, Event, Limits, Role, SendError, State, Stats, WebSocket};
pub use frame::{FrameHeader, Opcode, ProtocolError, close_code};
pub use handshake::{ClientRequest, HandshakeError, InvalidHeader};

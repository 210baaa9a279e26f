//! WebSocket (RFC 6455), sans-IO: bytes in; bytes, a payload stream and
//! events out. No sockets, no clock, nothing from `crate::reactor`. Douyu's
//! web endpoint (`wss://danmuproxy.douyu.com:8501`–`8506`) carries the same
//! packets as its TCP one inside binary messages; this layer turns those
//! messages back into the byte stream `douyu::ClientSession` already reads.
//!
//! ```text
//!            reactor connection (TCP, or TLS under it)
//!   read bytes │                                ▲ poll_transmit
//!              ▼                                │
//!   ┌──────────────────── WebSocket ─────────────────────┐
//!   │ handshake: GET/101 + accept key (handshake.rs)    │
//!   │ frames: header, masking, control, fragments       │  ping → pong
//!   │ (frame.rs, connection.rs)                          │  close → close
//!   │ binary payloads as one stream (stream.rs)          │  text → counted
//!   └───────────────┬────────────────────▲───────────────┘
//!      reader(bytes) │ -> consumed         │ send_binary(packet)
//!                    ▼                     │
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
//! A client driven by a reactor connection:
//!
//! ```
//! use barrage::websocket::{ClientRequest, Event, Limits, WebSocket};
//! # let (random_key, seed) = ([7u8; 16], 1);
//! let mut ws = WebSocket::client(&ClientRequest::new("danmuproxy.douyu.com:8502"), Limits::default(), random_key, seed)?;
//! let mut wire = Vec::new();
//! ws.poll_transmit(&mut wire); // the GET: write it once TCP (and TLS) is up
//! # let data: &[u8] = b"";
//! // In handle_read(data) -> consumed: binary payloads go straight to the session.
//! # let mut stream = Vec::new();
//! let consumed = ws.on_bytes(data, |payload| { stream.extend_from_slice(payload); payload.len() });
//! while let Some(event) = ws.poll_event() {
//!     match event {
//!         Event::Opened => {}    // session.on_connected(now); its packets go out with ws.send_binary
//!         Event::Closed(_) => {} // flush poll_transmit, then close the socket
//!     }
//! }
//! # assert_eq!(consumed, 0);
//! # Ok::<(), barrage::websocket::handshake::InvalidHeader>(())
//! ```
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

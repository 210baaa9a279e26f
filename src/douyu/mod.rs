//! The Douyu barrage protocol, sans-IO: bytes in, messages, bytes and
//! deadlines out. Nothing here touches a socket or reads a clock (time is
//! passed in as an `Instant`), and nothing depends on `crate::reactor`:
//! the reactor drives this layer, never the other way round.
//!
//! Read it bottom-up, one concept per file:
//!
//! | module | concept | main items |
//! |---|---|---|
//! | [`stt`] | the `key@=value/` text serialization and its escaping | [`stt::decode_map`], [`stt::decode_list`], [`stt::push_field`] |
//! | [`frame`] | packets: length-prefixed frames on a byte stream | [`frame::decode_packet`], [`frame::encode_packet`], [`frame::FrameDecoder`] |
//! | [`message`] | one decoded body, a typed view of known types, client requests | [`Message`], [`MessageView`], [`Request`] |
//! | [`session`] | the client state machine of one room: login, join, heartbeat, timeouts | [`ClientSession`], [`SessionEvent`] |
//! | [`web`] | the web pages: a room's real id, its live status; room ids as users paste them | [`web::parse_room_page`], [`web::parse_betard`], [`web::room_from_text`] |
//!
//! The wire format itself is described in `stt` and `frame`; the
//! conversation (loginreq → loginres → joingroup → heartbeats) in `session`.

pub mod frame;
pub mod message;
pub mod session;
pub mod stt;
pub mod web;

/// The message types Douyu's servers are known to send (see
/// `MessageView` for those given a typed view). More appear all the
/// time; a type not listed here is still received and written.
pub const KNOWN_TYPES: [&str; 19] = [
    "loginres",
    "pingreq",
    "mrkl",
    "error",
    "chatmsg",
    "uenter",
    "dgb",
    "rss",
    "spbc",
    "anbc",
    "rnewbc",
    "upgrade",
    "blab",
    "frank",
    "ranklist",
    "oni",
    "comm_chatmsg",
    "rri",
    "anchor_rank2505_change",
];

pub use frame::{DecoderConfig, FrameDecoder, FrameError, Packet};
pub use message::{LiveStatus, Message, MessageView, Request};
pub use session::{ClientSession, CloseReason, SessionConfig, SessionEvent, SessionState};

//! WebSocket (RFC 6455), sans-IO: bytes in; bytes and events out.

pub mod frame;
pub mod handshake;

//! HTTP/1.1, sans-IO: a client for fetching a page (Douyu's room pages and
//! status JSON), and the server's half that test servers and the metrics
//! endpoint can share.
//!
//! Nothing here opens a socket, reads a clock or knows the reactor. Bytes
//! and time go in, bytes, responses and deadlines come out, so every rule
//! is tested with byte vectors and a fake clock, and any loop can drive it
//! (`crate::fetch` drives it on the reactor).
//!
//! ```text
//!   Url ──▶ Request ──encode──▶ bytes ─────────────────────────▶ server
//!                │
//!                ▼
//!            Exchange ◀──bytes, eof, error, now── driver ◀──── server
//!    (one connection)│ uses ResponseDecoder (head: httparse; body:
//!                    │ Content-Length, chunked, or until close)
//!                    ▼
//!            Response or Error ──▶ Redirects::next ──▶ Done(Response)
//!                                        └──▶ Follow(Request): a new Exchange
//! ```
//!
//! Modules, one concept each:
//! - [`url`] — absolute http(s) URLs: parse, resolve a `Location`, put a
//!   path under a base;
//! - [`request`] — a request and its bytes (one per connection:
//!   `Connection: close`);
//! - [`response`] — a response and its decoder, with limits on head and body;
//! - [`chunked`] — `Transfer-Encoding: chunked` bodies;
//! - [`head`] — what every head we read shares: finding its end within a
//!   limit and parsing it (`parse_head`, the WebSocket handshake's too),
//!   framing, lists, tokens;
//! - [`client`] — [`Exchange`], one request/response as a state machine,
//!   with its rules table;
//! - [`redirect`] — [`Redirects`], the policy across exchanges;
//! - [`server`] — parse a request head, write a response;
//! - [`error`] — [`Error`], every way a fetch can fail.

pub mod chunked;
pub mod client;
pub mod error;
pub mod head;
pub mod redirect;
pub mod request;
pub mod response;
pub mod server;
pub mod url;

pub use client::Exchange;
pub use error::Error;
pub use redirect::{DEFAULT_REDIRECT_LIMIT, Next, Redirects};
pub use request::{Method, Request};
pub use response::{Response, ResponseDecoder, ResponseLimits};
pub use url::{Host, Scheme, Url, UrlError};

//! barrage: a single-threaded event-loop reactor, and on it a daemon that
//! watches many Douyu live-chat ("barrage") rooms at once.
//!
//! The layers, each depending only on those below it:
//!
//! ```text
//!   cli (src/cli/)           barrage watch | replay | serve | demo | bench
//!     │
//!   monitor, sim, bench      the room daemon; the simulated Douyu server;
//!     │                      measurements of the two together
//!     │
//!   fetch                    HTTP requests driven on the loop
//!     │
//!   douyu, http  reactor     the protocols, sans-IO (bytes and time in, messages
//!                            and bytes out) │ the event loop (mio, slab, timers)
//! ```
//!
//! - [`reactor`] knows nothing about Douyu: a mio `Poll`, buffered
//!   connections in a slab with asyncore-style callbacks, raw handlers in
//!   Tornado's style, a hashed timer wheel, and a waker for other threads.
//! - [`douyu`] never touches a socket or reads a clock: frames, STT bodies,
//!   typed messages, and the state machine of one room's session.
//! - [`http`] is HTTP/1.1 the same way: URLs, requests, a response decoder
//!   with limits, one exchange as a state machine, the redirect policy, and
//!   the server's half. [`fetch`] drives it on the reactor: lookups on a
//!   helper thread, a few requests at a time, a deadline each.
//! - [`monitor`] is the daemon: one connection per room driven by a
//!   session, paced connects, reconnects with backoff, output with
//!   backpressure, and an HTTP metrics endpoint on the same loop.
//! - [`recording`] reads back the JSON lines the monitor writes, checking
//!   each against the line contract (for `barrage replay`).
//! - [`sim`] is the other end of the wire: a simulated Douyu server on the
//!   reactor (`barrage serve`), with realistic numbered room traffic and
//!   fault injection, so everything can be tested offline.
//!
//! - [`bench`](mod@bench) measures the monitor against the simulator (CPU, memory,
//!   timer lateness, syscalls), with code shared by the tokio peer.
//! - [`cli`] is the command line; `src/main.rs` only calls it.
//!
//! Start reading at [`reactor`]'s module documentation: it walks through one
//! iteration of the loop.
#![forbid(unsafe_code)]
// The docs are written for readers of the code, private parts included
// (`cargo doc --document-private-items` renders every link).
#![allow(rustdoc::private_intra_doc_links)]

pub mod bench;
pub mod cli;
pub mod douyu;
pub mod fetch;
pub mod http;
pub mod monitor;
mod plural;
pub mod reactor;
pub mod recording;
pub mod rng;
pub mod settings;
pub mod sim;
pub mod websocket;

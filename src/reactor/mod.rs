//! A single-threaded event loop on mio: asyncore's callbacks, Tornado's
//! timers, and buffered connections, without an async runtime.
//!
//! How one iteration of [`Reactor::turn`] goes:
//!
//! 1. **Sleep.** Ask the [`TimerWheel`] for the next deadline and block in
//!    `mio::Poll::poll` until then, until a socket is ready, or until another
//!    thread wakes us through the [`ReactorHandle`] (a mio `Waker`). With no
//!    deadline and nothing to do, poll blocks forever: an idle loop costs no
//!    CPU. With a [`ReactorConfig::min_poll_interval`], the loop polls at
//!    most once per interval and sleeps in between, waking only for timers:
//!    bytes pile up in the socket buffers, and one read takes many messages.
//! 2. **Dispatch events.** Each mio token names an entry of a `Slab`: a
//!    buffered connection, a listener, a raw handler, or the waker. The
//!    reactor does the syscalls for connections (read until the socket is
//!    drained, write what is queued) and calls the [`Dispatcher`] callbacks.
//! 3. **Finish leftovers.** A connection that had more to read than its fair
//!    share of one iteration sits on the *ready list* and continues now.
//!    mio is edge-triggered: readiness is announced once, so work the loop
//!    postpones must be remembered by the loop.
//! 4. **Fire timers** that are due, then **run callbacks** queued with
//!    [`Reactor::call_soon`].
//!
//! After every callback the reactor *settles*: it writes what the callback
//! queued, recomputes each touched connection's interest from `readable()`
//! and `writable()`, changes the registration only if it differs, and runs
//! the closes that were requested. Callbacks are never nested: a method
//! called from inside a callback only records what to do.
//!
//! Modules, one concept each:
//! - [`event_loop`] — the [`Reactor`] and its iteration;
//! - [`connection`] — a buffered TCP connection and its I/O;
//! - [`tls`] — TLS as the transport under a connection (OpenSSL);
//! - [`raw`] — listeners and raw handlers (any mio source, your own I/O);
//! - [`dispatcher`] — the callback traits and the [`Context`];
//! - [`deadline`] — one connection timer kept on a moving deadline;
//! - [`buffer`] — read and write buffers;
//! - [`timer`] — the hashed timer wheel;
//! - [`handle`] — the thread-safe [`ReactorHandle`];
//! - [`channel`] — typed values from other threads to a loop-thread callback;
//! - [`stats`] — counters.

pub mod buffer;
pub mod channel;
pub mod connection;
pub mod deadline;
pub mod dispatcher;
pub mod event_loop;
pub mod handle;
pub mod raw;
pub mod stats;
pub mod timer;
pub mod tls;

pub use channel::LoopSender;
pub use deadline::DeadlineTimer;
pub use dispatcher::{Acceptor, Context, Dispatcher, Ready};
pub use event_loop::{PeriodicId, Reactor, ReactorConfig};
pub use handle::ReactorHandle;
pub use mio::Interest;
pub use stats::{LatencyHistogram, Stats};
pub use timer::{TimerHandle, TimerWheel};
pub use tls::{CipherPolicy, TlsClientConfig, TlsInfo, TlsServerConfig};

#[cfg(not(target_pointer_width = "64"))]
compile_error!("barrage packs a slab index and a generation into one mio Token and needs a 64-bit target");

/// Names one entry of the reactor: a connection, a listener or a raw handler.
///
/// A slab reuses the slot of a closed entry for the next one, so an index
/// alone could name the wrong connection: an event already returned by
/// `poll` for a connection closed earlier in the same batch, or an id a user
/// kept after its connection closed. The generation, bumped on every reuse,
/// makes such a stale id miss instead of hitting the newcomer. Both travel
/// inside the mio `Token`, so stale events are recognised for free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryToken {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl EntryToken {
    pub(crate) fn token(self) -> mio::Token {
        mio::Token(((self.generation as usize) << 32) | self.index as usize)
    }

    pub(crate) fn from_token(token: mio::Token) -> Self {
        EntryToken { index: token.0 as u32, generation: (token.0 >> 32) as u32 }
    }

    /// The slab slot (reused after close; use the whole id to compare).
    pub fn index(self) -> usize {
        self.index as usize
    }
}

impl std::fmt::Display for EntryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

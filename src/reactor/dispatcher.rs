//! The callbacks: what a connection's owner implements.
//!
//! This is Python's `asyncore.dispatcher`, kept honest for an edge-triggered
//! poller. The reactor owns the socket and its buffers and does every
//! syscall; a [`Dispatcher`] only answers questions (`readable()`,
//! `writable()`: "do you want to read / do you have more to write?") and
//! reacts to what happened (`handle_read`, `handle_connect`, ...). After each
//! callback the reactor asks the questions again and changes the poll
//! interest only if the answer changed.
//!
//! Callbacks get a [`Context`]: the reactor plus the id of the connection the
//! callback is about, so a callback can send, close, set timers, and reach
//! the whole reactor (open other connections, send to them, schedule work).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::EntryToken;
use super::event_loop::{Reactor, deadline_after};
use super::timer::TimerHandle;

/// One buffered TCP connection's behaviour (asyncore's dispatcher).
///
/// Every method but `handle_read` has a default, so a dispatcher states only
/// what it cares about.
pub trait Dispatcher {
    /// Do you want bytes now? Return `false` to stop reading, for example
    /// while your output is backed up: the reactor stops reading this socket,
    /// the kernel's buffer fills, and TCP slows the peer down. Nothing is
    /// lost; call [`Reactor::refresh`] when you want bytes again.
    ///
    /// The trade-off: while you pause, the socket is not watched for input,
    /// and with nothing queued to write it is not registered with poll at
    /// all (mio's `Interest` cannot be empty). So the peer's FIN or a reset
    /// is noticed only once you read again, after the bytes that came before
    /// it: you get those first, then `handle_eof` or `handle_error`. A
    /// paused connection whose peer has gone keeps its socket until you
    /// resume or close it; a timer of yours can bound the pause. (With
    /// output queued the socket is still watched for writing, and a reset
    /// ends the connection at once.) The module documentation of
    /// [`connection`](super::connection) says more.
    fn readable(&self) -> bool {
        true
    }

    /// Do you have more to write than what is already queued? While this is
    /// `true` and the socket can take bytes, `handle_write` is called. Like
    /// in asyncore, returning `true` with nothing to write spins the loop.
    fn writable(&self) -> bool {
        false
    }

    /// An outgoing connection is established (or an accepted one attached).
    fn handle_connect(&mut self, _ctx: &mut Context<'_>) {}

    /// Bytes arrived. `data` starts with whatever you left unconsumed last
    /// time. Return how many bytes you consumed; the rest is kept and handed
    /// back, followed by new bytes, on the next call.
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize;

    /// The socket can take bytes, everything queued is written, and
    /// `writable()` is `true`: send more with [`Context::send`].
    fn handle_write(&mut self, _ctx: &mut Context<'_>) {}

    /// The peer closed its sending side (a read returned 0). You may still
    /// send. The default closes gracefully: queued output is written first,
    /// then the connection closes (the peer's FIN is in, so there is nothing
    /// left to wait for).
    fn handle_eof(&mut self, ctx: &mut Context<'_>) {
        ctx.close();
    }

    /// A timer set with [`Context::set_timer`] is due.
    fn handle_timer(&mut self, _ctx: &mut Context<'_>, _tag: u64) {}

    /// A socket error (connect refused, reset, ...). An error on a stream
    /// is final: the reactor closes the connection when this returns, and
    /// `handle_close` follows. Bytes the peer sent before a reset still
    /// reach `handle_read` first, while you are reading. The default logs it.
    fn handle_error(&mut self, ctx: &mut Context<'_>, error: io::Error) {
        log::warn!("connection {}: {}", ctx.id(), error);
    }

    /// The connection is closed, whoever closed it and why. Called exactly
    /// once per connection; the last callback it gets.
    fn handle_close(&mut self, _ctx: &mut Context<'_>) {}
}

/// What a listening socket does with each accepted connection.
///
/// Implemented for any `FnMut(&mut Reactor, TcpStream, SocketAddr)`, so a
/// closure can be a listener's acceptor.
pub trait Acceptor {
    /// A new connection was accepted. Attach it with [`Reactor::add_stream`]
    /// (or drop it to refuse it).
    fn handle_accepted(&mut self, reactor: &mut Reactor, stream: TcpStream, peer: SocketAddr);

    /// `accept` failed (most often: out of file descriptors). The reactor
    /// retries after a short pause instead of spinning on the error.
    fn handle_accept_error(&mut self, _reactor: &mut Reactor, error: &io::Error) {
        log::warn!("accept failed: {error}; retrying shortly");
    }
}

impl<F> Acceptor for F
where
    F: FnMut(&mut Reactor, TcpStream, SocketAddr),
{
    fn handle_accepted(&mut self, reactor: &mut Reactor, stream: TcpStream, peer: SocketAddr) {
        self(reactor, stream, peer)
    }
}

/// What a readiness event said, for raw handlers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// The peer will send no more (or the read side is shut).
    pub read_closed: bool,
    /// The peer will accept no more (reset or shut down).
    pub write_closed: bool,
    pub error: bool,
}

impl Ready {
    pub(crate) fn from_event(event: &mio::event::Event) -> Self {
        Ready {
            readable: event.is_readable(),
            writable: event.is_writable(),
            read_closed: event.is_read_closed(),
            write_closed: event.is_write_closed(),
            error: event.is_error(),
        }
    }
}

/// The reactor as seen from inside one connection's callback.
pub struct Context<'a> {
    pub(crate) reactor: &'a mut Reactor,
    pub(crate) id: EntryToken,
}

impl Context<'_> {
    /// The connection this callback is about.
    pub fn id(&self) -> EntryToken {
        self.id
    }

    /// Queues bytes for this connection. They are written as soon as the
    /// callback returns (one syscall for everything sent in one callback);
    /// what the socket does not take now is written when it can.
    pub fn send(&mut self, data: &[u8]) {
        self.reactor.send(self.id, data);
    }

    /// Bytes queued and not yet written.
    pub fn pending_output(&self) -> usize {
        self.reactor.pending_output(self.id).unwrap_or(0)
    }

    /// Closes gracefully: no more `handle_read` (input is read and thrown
    /// away), what is queued is written, then our FIN goes out and the
    /// reactor waits for the peer's before it closes, all within the linger
    /// time. See [`Reactor::close`].
    pub fn close(&mut self) {
        self.reactor.close(self.id);
    }

    /// Closes at once, discarding queued output.
    pub fn abort(&mut self) {
        self.reactor.abort(self.id);
    }

    /// Calls `handle_timer(tag)` after `delay`. The timer dies with the
    /// connection. A delay beyond
    /// [`MAX_TIMER_DELAY`](super::event_loop::MAX_TIMER_DELAY) (about 30
    /// years) is capped to it.
    pub fn set_timer(&mut self, delay: Duration, tag: u64) -> TimerHandle {
        let deadline = deadline_after(Instant::now(), delay);
        self.reactor.set_conn_timer(self.id, deadline, tag)
    }

    /// Like [`set_timer`](Self::set_timer), at a point in time.
    pub fn set_timer_at(&mut self, deadline: Instant, tag: u64) -> TimerHandle {
        self.reactor.set_conn_timer(self.id, deadline, tag)
    }

    /// Cancels a timer of this connection. Harmless if it already fired.
    pub fn cancel_timer(&mut self, timer: TimerHandle) -> bool {
        self.reactor.remove_timeout(timer)
    }

    /// Moves a timer of this connection to a new deadline, keeping its
    /// handle (see [`Reactor::reschedule_timeout`]). Returns whether it was
    /// still pending. Like `cancel_timer`, it acts on whatever timer the
    /// handle names: pass only handles this connection's `set_timer` gave.
    pub fn reschedule_timer(&mut self, timer: TimerHandle, deadline: Instant) -> bool {
        self.reactor.reschedule_timeout(timer, deadline)
    }

    /// The peer's address, if connected.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.reactor.peer_addr(self.id)
    }

    /// What this connection negotiated, if it is TLS and past its handshake.
    pub fn tls_info(&self) -> Option<super::tls::TlsInfo> {
        self.reactor.tls_info(self.id)
    }

    /// The whole reactor: open connections, send to others, schedule work.
    pub fn reactor(&mut self) -> &mut Reactor {
        self.reactor
    }
}

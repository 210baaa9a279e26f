//! A buffered TCP connection (asyncore's dispatcher, the reactor's side).
//!
//! The reactor owns the socket, a [`ReadBuffer`] for unconsumed bytes and a
//! [`WriteBuffer`] for unwritten ones, and does every syscall. Two flags
//! remember what mio's edge-triggered events said, because an edge is
//! announced once and not again:
//!
//! - `read_ready`: the socket may hold unread bytes. Set by a readable
//!   event, cleared when a read comes back short or with `WouldBlock`.
//! - `write_ready`: the socket can take bytes. Set by a writable event (and
//!   on connect), cleared when a write is short or would block.
//!
//! While a flag is set and the dispatcher wants that work done, the work is
//! done now or, if the connection used up its share of this iteration, the
//! connection waits on the ready list. That is how a paused connection
//! resumes, and how fairness never loses an edge.
//!
//! # A paused connection does not see the peer go
//!
//! While `readable()` is false, the socket is not watched for input, and
//! with nothing queued to write it is not registered with poll at all:
//! mio's `Interest` cannot be empty, and watching for input would wake the
//! loop over and over for bytes nobody wants yet. The price: the peer's FIN
//! (or a reset) is noticed only when reading resumes, and only after the
//! bytes that came before it. The dispatcher gets all of those first, then
//! `handle_eof` (or `handle_error`), so nothing is lost, but a paused
//! connection whose peer has gone keeps its socket until the dispatcher
//! resumes or closes it (a timer of its own can bound the pause). With
//! output queued, the socket is still watched for writing, and a reset
//! fails the connection at once: the output can no longer be delivered.
//!
//! # Closing gracefully: a lingering close
//!
//! Closing a socket whose receive buffer holds unread bytes makes the kernel
//! send a reset (RST) instead of a FIN. A reset tells the peer's kernel to
//! throw away what it received but its application has not read yet: the
//! tail of our last reply. A peer that talks while we close (a heartbeat, a
//! pipelined request) is all it takes. So [`Reactor::close`] does what
//! nginx's `lingering_close` does:
//!
//! 1. **Flushing.** Write what is queued. Keep reading, but throw the bytes
//!    away instead of handing them to the dispatcher, so that unread input
//!    never piles up.
//! 2. **FinSent.** Once everything is written, `shutdown(Write)` sends our
//!    FIN behind the last byte. Keep reading and throwing away until the
//!    peer's FIN (a read of 0): the peer has then read our reply to its end.
//! 3. **Close.** Nothing is unread, so the close is quiet.
//!
//! [`ReactorConfig::linger`](super::ReactorConfig::linger) bounds the whole
//! thing; a peer that stops reading or never closes is cut off then. If the
//! peer's FIN was read before (the usual reply to a half-close), there is
//! nothing to wait for and step 2 is skipped.
//!
//! # TLS
//!
//! A connection may carry TLS ([`Reactor::connect_tls`],
//! [`Reactor::add_tls_stream`]); the [`tls`](super::tls) module says how
//! OpenSSL's wants become poll interest. What changes here: a
//! `Handshaking` phase between connecting (or being accepted) and
//! `handle_connect`, during which the interest is what the handshake waits
//! for; `read_ready` is cleared only when OpenSSL says the socket is
//! drained, never after a short read; and a graceful close sends the TLS
//! close_notify when the output is written, before the FIN. Once the
//! close_notify is out, TLS has nothing left to say: the TLS state is
//! dropped (OpenSSL's session and the record buffer the alert took, about
//! 34 KB), and the connection lingers as a plain TCP one, on the same
//! socket and poll registration, throwing away whatever comes (the peer's
//! close_notify too) until the peer's FIN.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::Interest;
use mio::net::TcpStream;

use super::EntryToken;
use super::buffer::{ReadBuffer, WriteBuffer};
use super::dispatcher::{Context, Dispatcher, Ready};
use super::event_loop::{Entry, EntryKind, Reactor, TimerTask, deadline_after, entry_in};
use super::timer::TimerHandle;
use super::tls::{HandshakeStep, TlsClientConfig, TlsInfo, TlsServerConfig, TlsStream, Want};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A non-blocking connect is in flight.
    Connecting,
    /// Accepted and attached; `handle_connect` (or, for TLS, the
    /// handshake) starts on the next pass.
    Accepted,
    /// TLS: the handshake is under way; `handle_connect` follows it.
    Handshaking,
    Open,
}

/// How far a connection is in closing. A graceful close goes
/// `NotClosing → Flushing → FinSent → closed` (see "Closing gracefully" in
/// the module documentation); `abort` jumps to `Now` from anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseState {
    NotClosing,
    /// `close()` was called: write what is queued. Input is still read,
    /// and thrown away.
    Flushing,
    /// Everything is written and our FIN is sent (`shutdown(Write)`; over
    /// TLS, after our close_notify, and the TLS state is gone). Input is
    /// read and thrown away until the peer's FIN, then we close.
    FinSent,
    /// Close now, dropping queued output.
    Now,
}

/// What carries a connection's bytes: the socket itself, or TLS over it.
/// The TLS state is boxed, so a plain connection pays nothing for it.
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Transport {
    fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(stream) => stream,
            Transport::Tls(tls) => tls.socket(),
        }
    }

    fn socket_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(stream) => stream,
            Transport::Tls(tls) => tls.socket_mut(),
        }
    }

    fn tls(&self) -> Option<&TlsStream> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(tls) => Some(tls),
        }
    }

    /// Reads plaintext, with a TCP read's meaning: `Ok(0)` is the end,
    /// `WouldBlock` means nothing now.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.read(buf),
            Transport::Tls(tls) => tls.read(buf),
        }
    }

    /// Does a read shorter than the buffer mean the socket is drained? For
    /// TCP, yes. Not for TLS: one record per read, and OpenSSL may keep
    /// decrypted bytes back (the TLS socket keeps the rule one layer down;
    /// see the `tls` module).
    fn short_read_drains(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }

    /// Socket reads the last `read` made: one for TCP; for TLS, what
    /// OpenSSL asked of the socket since the last count (none, one, or
    /// more; the handshake's too).
    fn socket_reads(&mut self) -> u64 {
        match self {
            Transport::Plain(_) => 1,
            Transport::Tls(tls) => tls.take_socket_reads(),
        }
    }

    /// Before our FIN, TLS says goodbye with close_notify. `Ok(false)`:
    /// the socket is full; try again when it is writable.
    fn send_close_notify(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(tls) => tls.send_close_notify(),
        }
    }

    /// Drops the TLS state and keeps the socket. Only once our
    /// close_notify is out: after it, the connection sends nothing and what
    /// it reads is thrown away, which plain TCP does as well.
    fn end_tls(&mut self) {
        if let Transport::Tls(tls) = self {
            *self = Transport::Plain(tls.take_socket());
        }
    }
}

impl Write for Transport {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.write(data),
            Transport::Tls(tls) => tls.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) struct Connection {
    transport: Transport,
    /// Taken out while one of its callbacks runs (the callback gets
    /// `&mut Reactor`, which owns this struct).
    dispatcher: Option<Box<dyn Dispatcher>>,
    read_buf: ReadBuffer,
    write_buf: WriteBuffer,
    /// Its timers, cancelled when it closes.
    timers: Vec<TimerHandle>,
    phase: Phase,
    close: CloseState,
    peer: Option<SocketAddr>,
    /// The interest registered with poll; `None` = not registered, because
    /// mio's `Interest` cannot be empty.
    interest: Option<Interest>,
    read_ready: bool,
    write_ready: bool,
    /// The event said the peer closed its side (a FIN) or reset the
    /// connection: read until EOF or the error even after a short read,
    /// since no further edge will announce either.
    peer_closed: bool,
    /// A read returned 0: the peer sends no more.
    eof: bool,
    /// An error event came while we read, and we read on to get the bytes
    /// before the error first. Usually the read after them returns the
    /// error; but if the peer's FIN came before its reset, that read says
    /// EOF instead, and the error must be fetched then (`take_error`).
    error_pending: bool,
    /// Leftover bytes must be handed back when the dispatcher wants to
    /// read again (it paused in the middle of a buffer).
    redeliver: bool,
    /// Bytes this connection may still read in iteration `budget_iteration`.
    budget_left: usize,
    budget_iteration: u64,
    /// On the reactor's ready list / dirty list. Each flag is set when the
    /// id is pushed and cleared only when it is taken off, so the id is on
    /// each list at most once.
    queued: bool,
    dirty: bool,
}

impl Connection {
    fn new(transport: Transport, dispatcher: Box<dyn Dispatcher>, phase: Phase) -> Self {
        let peer = if phase == Phase::Accepted { transport.socket().peer_addr().ok() } else { None };
        Connection {
            transport,
            dispatcher: Some(dispatcher),
            read_buf: ReadBuffer::default(),
            write_buf: WriteBuffer::new(),
            timers: Vec::new(),
            phase,
            close: CloseState::NotClosing,
            peer,
            interest: None,
            read_ready: false,
            write_ready: false,
            peer_closed: false,
            eof: false,
            error_pending: false,
            redeliver: false,
            budget_left: 0,
            budget_iteration: 0,
            queued: false,
            dirty: false,
        }
    }

    /// Should bytes be read and handed to the dispatcher now?
    fn wants_read(&self) -> bool {
        self.phase == Phase::Open
            && self.close == CloseState::NotClosing
            && !self.eof
            && self.dispatcher.as_ref().is_some_and(|d| d.readable())
    }

    /// Should bytes be read and thrown away now? During a graceful close,
    /// until the peer's FIN, whatever `readable()` says: unread input would
    /// turn our close into a reset.
    fn discards_input(&self) -> bool {
        self.phase == Phase::Open && matches!(self.close, CloseState::Flushing | CloseState::FinSent) && !self.eof
    }

    /// Should the socket be read at all (to hand bytes over or to throw them away)?
    fn reads(&self) -> bool {
        self.wants_read() || self.discards_input()
    }

    /// Should `handle_write` be called when the socket can take bytes?
    fn wants_handle_write(&self) -> bool {
        self.phase == Phase::Open
            && self.close == CloseState::NotClosing
            && self.write_buf.is_empty()
            && self.dispatcher.as_ref().is_some_and(|d| d.writable())
    }

    /// The interest poll should have, from the dispatcher's answers.
    /// Writable interest only while there is something to write.
    fn desired_interest(&self) -> Option<Interest> {
        match self.phase {
            // Completion is signalled as writable; failure as error/hup.
            Phase::Connecting => return Some(Interest::WRITABLE),
            // Exactly what OpenSSL said it waits for.
            Phase::Handshaking => {
                let wants = self.transport.tls().and_then(TlsStream::handshake_wants);
                return Some(if wants == Some(Want::Write) { Interest::WRITABLE } else { Interest::READABLE });
            }
            Phase::Accepted | Phase::Open => {}
        }
        let tls = self.transport.tls();
        let read = self.reads() || tls.is_some_and(TlsStream::write_wants_read);
        let write = !self.write_buf.is_empty()
            || self.wants_handle_write()
            || tls.is_some_and(|t| t.read_wants_write() || t.close_notify_blocked());
        match (read, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// Work that no readiness event will announce again.
    fn has_postponed_work(&self) -> bool {
        self.phase == Phase::Accepted
            || self.handshake_can_go_on()
            || ((self.read_ready || (self.redeliver && !self.read_buf.is_empty())) && self.wants_read())
            || (self.read_ready && self.discards_input())
            || (self.write_ready && self.wants_handle_write())
    }
}

impl Connection {
    /// Mid-handshake, has what the handshake waits for come (or has it
    /// not started)?
    fn handshake_can_go_on(&self) -> bool {
        if self.phase != Phase::Handshaking {
            return false;
        }
        match self.transport.tls().and_then(TlsStream::handshake_wants) {
            None => true,
            Some(Want::Read) => self.read_ready,
            Some(Want::Write) => self.write_ready,
        }
    }
}

/// Outcome of checking a non-blocking connect.
enum ConnectState {
    Pending,
    Connected(SocketAddr),
    Failed(io::Error),
}

/// mio's recipe: after a writable (or error) event, `take_error` tells a
/// failed connect; then `peer_addr` tells a finished one from a spurious
/// wake-up.
fn connect_state(stream: &TcpStream) -> ConnectState {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => return ConnectState::Failed(e),
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(addr) => ConnectState::Connected(addr),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectState::Pending,
        Err(e) => ConnectState::Failed(e),
    }
}

impl Reactor {
    // ----- public API ----------------------------------------------------------

    /// Starts a non-blocking connect to `addr`. `handle_connect` is called
    /// once it is established; a failure arrives as `handle_error` and then
    /// `handle_close`. An error returned here (no socket could be created)
    /// means the dispatcher was never attached.
    pub fn connect(&mut self, addr: SocketAddr, dispatcher: impl Dispatcher + 'static) -> io::Result<EntryToken> {
        let stream = TcpStream::connect(addr)?;
        self.attach(Transport::Plain(stream), Box::new(dispatcher), Phase::Connecting)
    }

    /// Attaches an established stream (typically from an acceptor).
    /// `handle_connect` is called on the loop's next pass.
    pub fn add_stream(&mut self, stream: TcpStream, dispatcher: impl Dispatcher + 'static) -> io::Result<EntryToken> {
        self.attach(Transport::Plain(stream), Box::new(dispatcher), Phase::Accepted)
    }

    /// Like [`connect`](Self::connect), then a TLS handshake as a client:
    /// `server_name` goes out as SNI (unless it is an IP address) and is
    /// what the server's certificate must name. `handle_connect` is called
    /// once the handshake is done; the dispatcher reads and sends
    /// plaintext. A failed handshake or certificate check arrives as
    /// `handle_error`, whose message gives OpenSSL's reason ("certificate
    /// verify failed: hostname mismatch"), then `handle_close`.
    ///
    /// Nothing bounds the handshake's time but the dispatcher: a timer set
    /// with [`set_timer`](Self::set_timer) right after this call reaches
    /// `handle_timer` mid-handshake, and `ctx.close()` there ends it.
    pub fn connect_tls(
        &mut self,
        addr: SocketAddr,
        config: &TlsClientConfig,
        server_name: &str,
        dispatcher: impl Dispatcher + 'static,
    ) -> io::Result<EntryToken> {
        let stream = TcpStream::connect(addr)?;
        let tls = TlsStream::client(config, server_name, stream)?;
        self.attach(Transport::Tls(Box::new(tls)), Box::new(dispatcher), Phase::Connecting)
    }

    /// Like [`add_stream`](Self::add_stream), as the server of a TLS
    /// handshake. `handle_connect` is called once it is done; failures go
    /// as for [`connect_tls`](Self::connect_tls).
    pub fn add_tls_stream(
        &mut self,
        stream: TcpStream,
        config: &TlsServerConfig,
        dispatcher: impl Dispatcher + 'static,
    ) -> io::Result<EntryToken> {
        let tls = TlsStream::server(config, stream)?;
        self.attach(Transport::Tls(Box::new(tls)), Box::new(dispatcher), Phase::Accepted)
    }

    fn attach(
        &mut self,
        transport: Transport,
        dispatcher: Box<dyn Dispatcher>,
        phase: Phase,
    ) -> io::Result<EntryToken> {
        let id = self.insert_entry(EntryKind::Conn(Connection::new(transport, dispatcher, phase)));
        let conn = conn_in(&mut self.entries, id).expect("just inserted");
        let interest = if phase == Phase::Connecting { Interest::WRITABLE } else { Interest::READABLE };
        if let Err(e) = self.poll.registry().register(conn.transport.socket_mut(), id.token(), interest) {
            self.entries.remove(id.index());
            return Err(e);
        }
        conn.interest = Some(interest);
        self.stats.opened += 1;
        if phase == Phase::Accepted {
            conn.queued = true;
            self.ready.push_back(id);
        }
        Ok(id)
    }

    /// Queues bytes for connection `id`; written when the current callback
    /// returns. Returns `false` if the connection is gone or closing.
    pub fn send(&mut self, id: EntryToken, data: &[u8]) -> bool {
        let Some(conn) = self.conn_mut(id) else { return false };
        if conn.close != CloseState::NotClosing {
            return false;
        }
        conn.write_buf.extend(data);
        self.mark_dirty(id);
        true
    }

    /// Bytes queued for `id` and not yet written (`None` if it is gone).
    pub fn pending_output(&self, id: EntryToken) -> Option<usize> {
        self.conn(id).map(|c| c.write_buf.len())
    }

    pub fn peer_addr(&self, id: EntryToken) -> Option<SocketAddr> {
        self.conn(id).and_then(|c| c.peer)
    }

    /// The protocol and cipher a TLS connection negotiated; `None` for a
    /// plain connection, one that is gone, one still in its handshake, or
    /// one closing whose close_notify is out (its TLS state is freed then).
    pub fn tls_info(&self, id: EntryToken) -> Option<TlsInfo> {
        self.conn(id).filter(|c| c.phase == Phase::Open).and_then(|c| c.transport.tls()).map(TlsStream::info)
    }

    /// Whether `id` names an open (or opening) connection.
    pub fn is_open(&self, id: EntryToken) -> bool {
        self.conn(id).is_some()
    }

    /// Closes gracefully, as nginx's `lingering_close` does: stop handing
    /// input to the dispatcher (it is still read, and thrown away), write
    /// what is queued, send our FIN, wait for the peer's FIN, then close and
    /// call `handle_close`. All of it takes at most the configured linger
    /// time; after that the connection is closed as it is. See "Closing
    /// gracefully" in the module documentation for why.
    ///
    /// Closes at once if there is nothing to wait for: a connect (or a TLS
    /// handshake) still under way, or nothing queued and the peer's FIN
    /// already read.
    pub fn close(&mut self, id: EntryToken) {
        let linger = self.config.linger;
        let Some(conn) = self.conn_mut(id) else { return };
        if conn.close != CloseState::NotClosing {
            return;
        }
        // No TLS session yet: nothing to say goodbye in.
        let before_tls = conn.phase == Phase::Accepted && conn.transport.tls().is_some();
        if matches!(conn.phase, Phase::Connecting | Phase::Handshaking) || before_tls {
            self.abort(id);
            return;
        }
        if conn.eof && conn.write_buf.is_empty() {
            // The peer said goodbye first; ours goes out if the socket
            // takes it at once (there is no reason to wait for it).
            let _ = conn.transport.send_close_notify();
            self.abort(id);
            return;
        }
        conn.close = CloseState::Flushing;
        // Bytes the dispatcher left unconsumed will not be handed back.
        conn.read_buf.consume(conn.read_buf.len());
        conn.redeliver = false;
        let timer = self.add_timer(deadline_after(Instant::now(), linger), TimerTask::Linger(id));
        if let Some(conn) = self.conn_mut(id) {
            conn.timers.push(timer);
        }
        self.mark_dirty(id);
    }

    /// Closes at once, dropping queued output; `handle_close` follows as soon
    /// as the current callback returns.
    pub fn abort(&mut self, id: EntryToken) {
        let Some(conn) = self.conn_mut(id) else { return };
        if conn.close == CloseState::Now {
            return;
        }
        conn.close = CloseState::Now;
        self.closing.push(id);
    }

    /// Asks the reactor to consult `readable()`/`writable()` again, e.g. when
    /// the reason a dispatcher paused reading is gone. Call it from anywhere
    /// on the loop thread; the work happens when the current callback returns.
    pub fn refresh(&mut self, id: EntryToken) {
        if self.conn(id).is_some() {
            self.mark_dirty(id);
        }
    }

    /// Calls connection `id`'s `handle_timer(tag)` at `deadline` — also a
    /// way to ask a connection to do something from outside its callbacks
    /// (a deadline of now runs it on the next iteration). Returns `None` if
    /// the connection is gone.
    pub fn set_timer(&mut self, id: EntryToken, deadline: Instant, tag: u64) -> Option<TimerHandle> {
        self.conn(id)?;
        Some(self.set_conn_timer(id, deadline, tag))
    }

    pub(crate) fn set_conn_timer(&mut self, id: EntryToken, deadline: Instant, tag: u64) -> TimerHandle {
        let timer = self.add_timer(deadline, TimerTask::Conn { id, tag });
        match self.conn_mut(id) {
            Some(conn) => conn.timers.push(timer),
            None => {
                self.timers.cancel(timer);
            }
        }
        timer
    }

    pub(crate) fn forget_conn_timer(&mut self, id: EntryToken, timer: TimerHandle) {
        if let Some(conn) = self.conn_mut(id) {
            conn.timers.retain(|t| *t != timer);
        }
    }

    // ----- the loop's side -----------------------------------------------------

    fn conn(&self, id: EntryToken) -> Option<&Connection> {
        match &self.entry(id)?.kind {
            EntryKind::Conn(c) => Some(c),
            _ => None,
        }
    }

    fn conn_mut(&mut self, id: EntryToken) -> Option<&mut Connection> {
        conn_in(&mut self.entries, id)
    }

    fn mark_dirty(&mut self, id: EntryToken) {
        if let Some(conn) = self.conn_mut(id).filter(|c| !c.dirty) {
            conn.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Calls one dispatcher method with a [`Context`]. The dispatcher is
    /// taken out of the slab for the call and put back after; the
    /// connection is then marked dirty so the reactor settles it.
    pub(crate) fn with_dispatcher<R>(
        &mut self,
        id: EntryToken,
        f: impl FnOnce(&mut dyn Dispatcher, &mut Context<'_>) -> R,
    ) -> Option<R> {
        let mut dispatcher = self.conn_mut(id)?.dispatcher.take()?;
        let result = f(dispatcher.as_mut(), &mut Context { reactor: self, id });
        if let Some(conn) = self.conn_mut(id) {
            conn.dispatcher = Some(dispatcher);
        }
        self.mark_dirty(id);
        Some(result)
    }

    /// A readiness event for a connection.
    pub(crate) fn on_conn_ready(&mut self, id: EntryToken, ready: Ready) {
        let Some(conn) = self.conn_mut(id) else { return };
        if conn.phase == Phase::Connecting {
            if !(ready.writable || ready.error || ready.read_closed || ready.write_closed) {
                return;
            }
            match connect_state(conn.transport.socket()) {
                ConnectState::Pending => return,
                ConnectState::Failed(e) => return self.fail(id, e),
                ConnectState::Connected(peer) => {
                    conn.peer = Some(peer);
                    conn.write_ready = true;
                    log::debug!("{id}: connected to {peer}");
                    if conn.transport.tls().is_some() {
                        // service_conn starts the handshake below.
                        conn.phase = Phase::Handshaking;
                    } else {
                        conn.phase = Phase::Open;
                        self.with_dispatcher(id, |d, ctx| d.handle_connect(ctx));
                    }
                }
            }
        }
        let Some(conn) = self.conn_mut(id) else { return };
        if ready.readable || ready.read_closed {
            conn.read_ready = true;
            if let Transport::Tls(tls) = &mut conn.transport {
                tls.on_readable(ready.read_closed || ready.error);
                // A TLS write that waited to read may go on.
                if tls.take_write_wants_read() {
                    conn.write_ready = true;
                }
            }
        }
        if ready.read_closed {
            conn.peer_closed = true;
        }
        if ready.writable {
            conn.write_ready = true;
            // A TLS read that waited to write may go on.
            if let Transport::Tls(tls) = &mut conn.transport
                && tls.take_read_wants_write()
            {
                conn.read_ready = true;
            }
        }
        if ready.error {
            // A reset often arrives right behind the peer's last bytes, and
            // the kernel keeps those readable. While we read, read them
            // first: the read that finds nothing left returns the error
            // itself (ECONNRESET), or EOF if a FIN came first (hence
            // `error_pending`), and `read_some` fails the connection then.
            // Asking `take_error` now would clear that error and lose the
            // bytes. No edge will follow, so read past short reads, as after
            // a FIN. Mid-handshake the same holds: the bytes before a reset
            // are often the alert that says why the peer gave up, and the
            // handshake step that reads them fails with its reason.
            if (ready.readable || ready.read_closed) && (conn.reads() || conn.phase == Phase::Handshaking) {
                conn.peer_closed = true;
                conn.error_pending = true;
            } else {
                let error = match conn.transport.socket().take_error() {
                    Ok(Some(e)) | Err(e) => e,
                    Ok(None) => io::Error::other("socket error event"),
                };
                return self.fail(id, error);
            }
        }
        self.service_conn(id);
    }

    /// Continues a connection just taken off the ready list.
    ///
    /// Only this clears `queued`. An event for a connection that waits on
    /// the ready list is served at once too, but the connection stays on
    /// the list; clearing the flag then would let settling put it there a
    /// second time, and under a steady stream of events the copies would
    /// pile up by one per iteration.
    pub(crate) fn service_queued_conn(&mut self, id: EntryToken) {
        if let Some(conn) = self.conn_mut(id) {
            conn.queued = false;
        }
        self.service_conn(id);
    }

    /// Does all the work a connection has now: finish attaching, hand back
    /// leftovers, read, ask for more output.
    fn service_conn(&mut self, id: EntryToken) {
        // Whatever happens below, settle this connection afterwards: a
        // writable event alone must flush the queued output.
        self.mark_dirty(id);
        let Some(conn) = self.conn_mut(id) else { return };
        if conn.phase == Phase::Accepted {
            conn.write_ready = true;
            // Bytes may have arrived with the connection, before we
            // registered: read once to find out.
            conn.read_ready = true;
            if conn.transport.tls().is_some() {
                conn.phase = Phase::Handshaking;
            } else {
                conn.phase = Phase::Open;
                self.with_dispatcher(id, |d, ctx| d.handle_connect(ctx));
            }
        }
        if self.conn(id).is_some_and(Connection::handshake_can_go_on) {
            self.continue_handshake(id);
        }
        let Some(conn) = self.conn_mut(id).filter(|c| c.phase == Phase::Open) else { return };
        if conn.redeliver && conn.wants_read() {
            conn.redeliver = false;
            self.deliver(id, 0);
        }
        self.read_some(id);
        if self.conn(id).is_some_and(|c| c.write_ready && c.wants_handle_write()) {
            self.with_dispatcher(id, |d, ctx| d.handle_write(ctx));
        }
    }

    /// Takes the TLS handshake as far as the socket lets it; what OpenSSL
    /// then waits for becomes the interest (see `desired_interest`).
    fn continue_handshake(&mut self, id: EntryToken) {
        let Some(conn) = self.conn_mut(id) else { return };
        let Transport::Tls(tls) = &mut conn.transport else { return };
        let from = tls.state();
        match tls.handshake() {
            HandshakeStep::Done => {
                let info = tls.info();
                conn.phase = Phase::Open;
                // The last step read only what it needed: more may wait in
                // the socket, and no edge will say so. Its last write went
                // through, so the socket takes bytes.
                conn.read_ready = true;
                conn.write_ready = true;
                log::debug!("{id}: TLS handshake done: {info}");
                self.with_dispatcher(id, |d, ctx| d.handle_connect(ctx));
            }
            HandshakeStep::Blocked(want) => {
                let (wants, waits) = match want {
                    Want::Read => {
                        conn.read_ready = false;
                        ("WANT_READ", "READABLE")
                    }
                    Want::Write => {
                        conn.write_ready = false;
                        ("WANT_WRITE", "WRITABLE")
                    }
                };
                log::trace!("{id}: TLS handshake from {from:?} to {:?}: {wants}, so poll for {waits}", tls.state());
            }
            HandshakeStep::Failed(error) => {
                log::debug!("{id}: {error}");
                self.fail(id, error);
            }
        }
    }

    /// Reads while there is data, the dispatcher wants it (or a graceful
    /// close throws it away), and the connection has budget left this
    /// iteration.
    fn read_some(&mut self, id: EntryToken) {
        let iteration = self.stats.iterations;
        loop {
            let Some(conn) = conn_in(&mut self.entries, id) else { return };
            if !conn.read_ready || !conn.reads() {
                return;
            }
            let discard = conn.discards_input();
            if conn.budget_iteration != iteration {
                conn.budget_iteration = iteration;
                conn.budget_left = self.config.read_budget;
            }
            if conn.budget_left == 0 {
                // Fair share of this iteration used. The edge is not lost:
                // read_ready stays set, so settling puts the connection on
                // the ready list for the next iteration.
                return;
            }
            let read = match conn.transport.read(&mut self.scratch) {
                // A TLS peer that closes without close_notify while we
                // close: what we waited for, not an error.
                Err(e) if discard && e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                read => read,
            };
            self.stats.read_syscalls += conn.transport.socket_reads();
            match read {
                Ok(0) => {
                    conn.read_ready = false;
                    conn.eof = true;
                    if conn.error_pending {
                        // A FIN, then a reset: the reset is what happened.
                        match conn.transport.socket().take_error() {
                            Ok(Some(e)) | Err(e) => return self.fail(id, e),
                            Ok(None) => {}
                        }
                    }
                    if discard {
                        // What the closing connection waited for; settling
                        // finishes the close.
                        log::debug!("{id}: peer closed its side while we close");
                    } else {
                        log::debug!("{id}: peer closed its side");
                        self.with_dispatcher(id, |d, ctx| d.handle_eof(ctx));
                    }
                    return;
                }
                Ok(n) => {
                    self.stats.bytes_read += n as u64;
                    conn.budget_left = conn.budget_left.saturating_sub(n);
                    // A short read drained the socket: new bytes will raise a
                    // new edge, so skip the read that would say WouldBlock
                    // (tokio does the same). Not after a peer-closed event,
                    // though: no edge would announce the EOF.
                    if n < self.scratch.len() && !conn.peer_closed && conn.transport.short_read_drains() {
                        conn.read_ready = false;
                    }
                    if discard {
                        log::trace!("{id}: threw away {n} bytes (closing)");
                    } else {
                        self.deliver(id, n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // For TLS: OpenSSL has nothing left and the socket is
                    // drained, or OpenSSL must write first (the socket is
                    // full; a writable event restarts the read).
                    conn.read_ready = false;
                    if conn.transport.tls().is_some_and(TlsStream::read_wants_write) {
                        conn.write_ready = false;
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(id, e),
            }
        }
    }

    /// Hands the dispatcher its unconsumed bytes followed by the `fresh`
    /// bytes at the start of the scratch buffer, and keeps what it leaves.
    fn deliver(&mut self, id: EntryToken, fresh: usize) {
        let scratch = std::mem::take(&mut self.scratch);
        let Some(conn) = self.conn_mut(id) else {
            self.scratch = scratch;
            return;
        };
        if conn.read_buf.is_empty() {
            // The common case: parse straight from the scratch buffer.
            let data = &scratch[..fresh];
            let consumed = self.with_dispatcher(id, |d, ctx| d.handle_read(ctx, data)).unwrap_or(fresh).min(fresh);
            // Keep the rest, unless the callback closed the connection:
            // nothing will be handed back then.
            if let Some(conn) = self.conn_mut(id).filter(|c| c.close == CloseState::NotClosing) {
                conn.read_buf.extend(&scratch[consumed..fresh]);
            }
        } else {
            conn.read_buf.extend(&scratch[..fresh]);
            let buf = std::mem::take(&mut conn.read_buf);
            let data = buf.as_slice();
            let consumed = self.with_dispatcher(id, |d, ctx| d.handle_read(ctx, data)).unwrap_or(0).min(data.len());
            let mut buf = buf;
            buf.consume(consumed);
            if let Some(conn) = self.conn_mut(id).filter(|c| c.close == CloseState::NotClosing) {
                conn.read_buf = buf;
            }
        }
        self.scratch = scratch;

        let limit = self.config.max_read_buffer;
        let Some(conn) = self.conn_mut(id) else { return };
        if conn.read_buf.len() > limit {
            let error = io::Error::other(format!(
                "{} unconsumed bytes exceed the read buffer limit of {limit}",
                conn.read_buf.len()
            ));
            return self.fail(id, error);
        }
        // Paused with bytes left over: they must be handed back on resume,
        // even if the socket has nothing new.
        if !conn.read_buf.is_empty() && !conn.wants_read() {
            conn.redeliver = true;
        }
    }

    /// Settles one connection after a callback touched it: write what is
    /// queued, move a graceful close along, remember postponed work, and
    /// make the registered interest match the dispatcher's answers.
    pub(crate) fn refresh_conn(&mut self, id: EntryToken) {
        let Some(conn) = conn_in(&mut self.entries, id) else { return };
        conn.dirty = false;
        if conn.close == CloseState::Now {
            return;
        }
        if conn.phase == Phase::Open && conn.write_ready && !conn.write_buf.is_empty() {
            match conn.write_buf.write_to(&mut conn.transport, &mut self.stats.write_syscalls) {
                Ok((written, still_ready)) => {
                    self.stats.bytes_written += written as u64;
                    conn.write_ready = still_ready;
                }
                Err(e) => return self.fail(id, e),
            }
        }
        if conn.phase == Phase::Open && conn.close == CloseState::Flushing && conn.write_buf.is_empty() {
            if conn.eof {
                // The peer's FIN was read: nothing unread is left and
                // nothing more can come, so a plain close sends our FIN
                // (after a close_notify, if the socket takes it).
                let _ = conn.transport.send_close_notify();
                return self.abort(id);
            }
            match conn.transport.send_close_notify() {
                Ok(true) => {
                    // Our FIN goes out behind the last byte written (and
                    // the close_notify). The peer reads to the end and
                    // closes its side; until its FIN (or close_notify)
                    // arrives, input is still read and thrown away.
                    if let Err(e) = conn.transport.socket().shutdown(std::net::Shutdown::Write) {
                        return self.fail(id, e);
                    }
                    let goodbye = if conn.transport.tls().is_some() { "close_notify and FIN" } else { "FIN" };
                    log::debug!("{id}: output written, {goodbye} sent; waiting for the peer's");
                    conn.close = CloseState::FinSent;
                    // Lingering needs no TLS, and a stop closes every
                    // connection at once: free its memory now.
                    conn.transport.end_tls();
                }
                Ok(false) => {
                    log::trace!("{id}: close_notify waits for the socket to take it");
                    conn.write_ready = false;
                }
                Err(e) => return self.fail(id, e),
            }
        }
        if conn.close == CloseState::FinSent && conn.eof {
            return self.abort(id);
        }
        if conn.has_postponed_work() && !conn.queued {
            conn.queued = true;
            self.ready.push_back(id);
        }
        let desired = conn.desired_interest();
        if desired != conn.interest {
            let registry = self.poll.registry();
            let result = match (conn.interest, desired) {
                (None, Some(interest)) => registry.register(conn.transport.socket_mut(), id.token(), interest),
                (Some(_), Some(interest)) => registry.reregister(conn.transport.socket_mut(), id.token(), interest),
                (Some(_), None) => registry.deregister(conn.transport.socket_mut()),
                (None, None) => Ok(()),
            };
            log::trace!("{id}: interest {:?} -> {:?}", conn.interest, desired);
            conn.interest = desired;
            self.stats.reregisters += 1;
            if let Err(e) = result {
                self.fail(id, e);
            }
        }
    }

    /// An I/O error ends the connection: tell the dispatcher, then close.
    fn fail(&mut self, id: EntryToken, error: io::Error) {
        if self.conn(id).is_none_or(|c| c.close == CloseState::Now) {
            return;
        }
        self.with_dispatcher(id, |d, ctx| d.handle_error(ctx, error));
        self.abort(id);
    }

    /// Closes for real: deregister, cancel timers, `handle_close`, free the
    /// slot. Runs once per connection, from `settle`.
    pub(crate) fn finish_close(&mut self, id: EntryToken) {
        let Some(conn) = conn_in(&mut self.entries, id) else { return };
        if conn.interest.is_some() {
            let _ = self.poll.registry().deregister(conn.transport.socket_mut());
            conn.interest = None;
        }
        let timers = std::mem::take(&mut conn.timers);
        for timer in timers {
            self.timers.cancel(timer);
        }
        self.stats.closed += 1;
        log::debug!("{id}: closed");
        self.with_dispatcher(id, |d, ctx| d.handle_close(ctx));
        // Dropping the entry drops the stream, which closes the socket.
        self.entries.remove(id.index());
    }
}

/// The connection `id` names, borrowing only the slab.
fn conn_in(entries: &mut slab::Slab<Entry>, id: EntryToken) -> Option<&mut Connection> {
    match entry_in(entries, id)? {
        EntryKind::Conn(c) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    struct Recorder(Rc<RefCell<Vec<&'static str>>>);
    impl Dispatcher for Recorder {
        fn handle_connect(&mut self, _: &mut Context<'_>) {
            self.0.borrow_mut().push("connect");
        }
        fn handle_read(&mut self, _: &mut Context<'_>, d: &[u8]) -> usize {
            self.0.borrow_mut().push("read");
            d.len()
        }
        fn handle_error(&mut self, _: &mut Context<'_>, _: io::Error) {
            self.0.borrow_mut().push("error");
        }
        fn handle_close(&mut self, _: &mut Context<'_>) {
            self.0.borrow_mut().push("close");
        }
    }

    #[test]
    fn stale_event_never_reaches_the_connection_that_reused_the_slot() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut reactor = Reactor::new().unwrap();
        let old_log = Rc::new(RefCell::new(Vec::new()));
        let old = reactor.connect(addr, Recorder(old_log.clone())).unwrap();
        reactor.abort(old);
        reactor.settle();
        assert_eq!(*old_log.borrow(), vec!["close"]);

        let new_log = Rc::new(RefCell::new(Vec::new()));
        let new = reactor.connect(addr, Recorder(new_log.clone())).unwrap();
        assert_eq!(new.index(), old.index(), "the slab reused the slot");
        assert_ne!(new, old);

        // An event poll returned for the old connection, delivered after it
        // closed (as happens later in the same batch): every flag set.
        let everything = Ready { readable: true, writable: true, read_closed: true, write_closed: true, error: true };
        reactor.dispatch(old.token(), everything);
        assert!(new_log.borrow().is_empty(), "the newcomer saw {:?}", new_log.borrow());
        assert!(reactor.is_open(new));
        assert!(!reactor.send(old, b"x"), "the old id is dead for good");
        assert_eq!(*old_log.borrow(), vec!["close"], "handle_close ran exactly once");
    }

    #[test]
    fn an_event_for_a_connection_on_the_ready_list_does_not_queue_it_twice() {
        use crate::reactor::ReactorConfig;
        use std::io::Write;
        // A small budget: 64 KiB from the peer keep the connection on the
        // ready list for many iterations.
        let config = ReactorConfig { read_budget: 4096, scratch_size: 4096, ..ReactorConfig::default() };
        let mut reactor = Reactor::with_config(config).unwrap();
        let listener = mio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Rc::new(RefCell::new(None));
        let server2 = server.clone();
        let log = Rc::new(RefCell::new(Vec::new()));
        reactor
            .listen(listener, move |r: &mut Reactor, stream, _| {
                *server2.borrow_mut() = Some(r.add_stream(stream, Recorder(log.clone())).unwrap());
            })
            .unwrap();
        let mut peer = std::net::TcpStream::connect(addr).unwrap();
        peer.write_all(&[7u8; 64 * 1024]).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        // Wait until it read its budget and waits on the ready list for more.
        while server.borrow().is_none_or(|id| !reactor.ready.contains(&id)) || reactor.stats.bytes_read == 0 {
            assert!(Instant::now() < deadline, "the connection never went on the ready list");
            reactor.turn(Some(std::time::Duration::from_millis(10))).unwrap();
        }
        let id = server.borrow().unwrap();
        for round in 0..5 {
            // New bytes arrive while it waits on the ready list: poll reports
            // the socket again (as it does for every arrival).
            reactor.dispatch(id.token(), Ready { readable: true, ..Ready::default() });
            let copies = reactor.ready.iter().filter(|&&queued| queued == id).count();
            assert_eq!(copies, 1, "round {round}: {id} is on the ready list {copies} times");
            reactor.turn(Some(std::time::Duration::ZERO)).unwrap();
        }
    }
}

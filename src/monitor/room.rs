//! One room's connection: the thin I/O driver around a [`ClientSession`].
//!
//! The session (in `douyu`) decides everything about the conversation —
//! what to send, when a heartbeat is due, when the connection is dead —
//! and the room's life cycle (`lifecycle.rs`) decides everything about
//! connecting. This dispatcher only moves bytes between the reactor and
//! the session, hands the session's messages to the monitor, keeps one
//! timer on the session's next deadline, and reports what happened to the
//! connection: connected, joined, closed and why.
//!
//! The bytes travel one of two ways ([`Link`]): straight on the socket
//! (TCP), or inside WebSocket binary messages (over TLS for `wss://`; the
//! reactor does the TLS). With WebSocket the session starts as soon as the
//! socket is up: its `loginreq` waits behind the upgrade request, and the
//! room counts as connected once the server's `101` arrives.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use crate::douyu::{ClientSession, Message, SessionEvent};
use crate::reactor::{Context, DeadlineTimer, Dispatcher, EntryToken};
use crate::websocket::{self, WebSocket};

use super::lifecycle::{CloseReason, Event};
use super::{MonitorState, Received};

/// `handle_timer` tags.
pub(crate) const TIMER_SESSION: u64 = 0;
/// Asked from outside (shutdown, room removed): log out and close.
pub(crate) const TIMER_LOGOUT: u64 = 1;

/// Most bytes a room may have queued and not yet written. What a room
/// sends is tiny — a heartbeat every 45 s, a logout, a pong — so this much
/// means the server stopped reading; the connection ends, rather than let a
/// server that keeps talking (pings we must answer) grow our memory.
pub(crate) const MAX_UNSENT: usize = 64 * 1024;

/// How the connection carries Douyu packets.
pub(crate) enum Link {
    /// Straight on the socket.
    Direct,
    /// One packet per WebSocket binary message; the server's messages are
    /// one byte stream.
    WebSocket(Box<WebSocket>),
}

pub(crate) struct RoomConn {
    room: u64,
    /// The life cycle's number for this connection attempt.
    attempt: u64,
    session: ClientSession,
    link: Link,
    monitor: Rc<RefCell<MonitorState>>,
    timer: DeadlineTimer,
    /// This connection's reactor entry, known from `handle_connect` on.
    id: Option<EntryToken>,
    /// Why the connection is ending, once known; reported at close.
    close_reason: Option<CloseReason>,
}

impl RoomConn {
    pub(crate) fn new(
        room: u64,
        attempt: u64,
        session: ClientSession,
        link: Link,
        monitor: Rc<RefCell<MonitorState>>,
    ) -> Self {
        RoomConn { room, attempt, session, link, monitor, timer: DeadlineTimer::new(), id: None, close_reason: None }
    }

    /// After every input: act on the WebSocket's news, write the session's
    /// messages out, send what it queued, act on a close, and keep the
    /// timer on the session's next deadline.
    fn pump(&mut self, ctx: &mut Context<'_>) {
        let mut link_closed = None;
        if let Link::WebSocket(ws) = &mut self.link {
            while let Some(event) = ws.poll_event() {
                match event {
                    websocket::Event::Opened => MonitorState::handle(
                        &self.monitor,
                        ctx.reactor(),
                        self.room,
                        Event::Connected { attempt: self.attempt },
                    ),
                    websocket::Event::Closed(reason) => link_closed = Some(reason),
                }
            }
        }
        let mut closing = None;
        let mut joined = false;
        {
            let mut monitor = self.monitor.borrow_mut();
            while let Some(event) = self.session.poll_event() {
                match event {
                    // Messages go to the monitor as they are decoded (see
                    // `handle_read`); only `on_bytes` would queue them.
                    SessionEvent::Message(message) => {
                        monitor.deliver(ctx.reactor(), self.room, self.attempt, Received::now(), &message)
                    }
                    SessionEvent::Joined => joined = true,
                    SessionEvent::Close(reason) => closing = Some(reason),
                }
            }
        }
        if joined {
            MonitorState::handle(&self.monitor, ctx.reactor(), self.room, Event::Joined { attempt: self.attempt });
        }
        // A room sends a few packets a minute: a buffer for them is made
        // when there are some, rather than kept for the room's life.
        let mut transmit = Vec::new();
        if self.session.poll_transmit(&mut transmit) {
            match &mut self.link {
                Link::Direct => ctx.send(&transmit),
                Link::WebSocket(ws) => {
                    for packet in packets(&transmit) {
                        // Refused only once the WebSocket is closing: nothing to do.
                        let _ = ws.send_binary(packet);
                    }
                }
            }
        }
        if let Some(reason) = link_closed {
            self.send_link_output(ctx);
            self.close_reason.get_or_insert(CloseReason::WebSocket(reason));
            ctx.close();
            return;
        }
        if let Some(reason) = closing {
            if matches!(reason, crate::douyu::CloseReason::Protocol(_)) {
                self.monitor.borrow_mut().stats.decode_errors += 1;
            }
            // Leaving: the logout goes out and the server's FIN is awaited.
            // Any other reason means the server is dead or misbehaving:
            // drop the connection now, so the room reconnects at once.
            if reason == crate::douyu::CloseReason::Shutdown {
                if let Link::WebSocket(ws) = &mut self.link {
                    ws.close(1000, "");
                }
                self.send_link_output(ctx);
                ctx.close();
            } else {
                ctx.abort();
            }
            self.close_reason.get_or_insert(CloseReason::Session(reason));
            return;
        }
        self.send_link_output(ctx);
        let unsent = ctx.pending_output();
        if unsent > MAX_UNSENT {
            let message = format!("the server stopped reading: {unsent} bytes unsent (at most {MAX_UNSENT})");
            // Nothing queued would ever be read: drop it with the connection.
            self.close_reason.get_or_insert(CloseReason::Io { kind: io::ErrorKind::QuotaExceeded, message });
            ctx.abort();
            return;
        }
        self.timer.set(ctx, self.session.next_deadline(), TIMER_SESSION);
    }

    /// Sends what the WebSocket queued: frames, pongs, the handshake.
    fn send_link_output(&mut self, ctx: &mut Context<'_>) {
        let mut frames = Vec::new();
        if let Link::WebSocket(ws) = &mut self.link
            && ws.poll_transmit(&mut frames)
        {
            ctx.send(&frames);
        }
    }
}

/// The whole Douyu packets in `bytes` (as the session queues them), one by
/// one: each is its 4-byte length field and that many bytes more.
fn packets(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let length = rest.first_chunk::<4>().map(|field| u32::from_le_bytes(*field) as usize)?;
        // At least the length field, at most what there is: always moves on.
        let (packet, after) = rest.split_at((4 + length).min(rest.len()));
        rest = after;
        Some(packet)
    })
}

impl Dispatcher for RoomConn {
    /// Read only while the output keeps up: otherwise TCP holds the rest.
    /// Saying no registers the room with the output, which wakes it (through
    /// the reactor's waker) once drained; `pause` re-checks after
    /// registering, so a drain that raced us is not missed.
    fn readable(&self) -> bool {
        let monitor = self.monitor.borrow();
        match self.id {
            Some(id) if monitor.output.is_full() => !monitor.output.pause(id),
            _ => true,
        }
    }

    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        self.id = Some(ctx.id());
        if let Link::Direct = self.link {
            MonitorState::handle(&self.monitor, ctx.reactor(), self.room, Event::Connected { attempt: self.attempt });
        }
        self.session.on_connected(Instant::now());
        self.pump(ctx);
    }

    /// Every message of the read goes to the monitor as the session
    /// decodes it, into the monitor's one message buffer: no copy, no
    /// queue, one clock read for all of them.
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let received = Received::now();
        let (room, attempt, session) = (self.room, self.attempt, &mut self.session);
        let mut monitor = self.monitor.borrow_mut();
        let mut buffer = monitor.start_read();
        let reactor = ctx.reactor();
        let mut deliver = |message: &Message| monitor.deliver(reactor, room, attempt, received, message);
        let consumed = match &mut self.link {
            Link::Direct => session.on_bytes_with(data, received.at, &mut buffer, &mut deliver),
            Link::WebSocket(ws) => {
                ws.on_bytes(data, |payload| session.on_bytes_with(payload, received.at, &mut buffer, &mut deliver))
            }
        };
        monitor.end_read(buffer);
        drop(monitor);
        self.pump(ctx);
        consumed
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_>, tag: u64) {
        if tag == TIMER_LOGOUT {
            self.session.shutdown();
        } else {
            self.timer.fired();
            let now = Instant::now();
            // Paused for backpressure: unread bytes may be waiting, so
            // the silence must not end the session (and drop them).
            if self.monitor.borrow().output.is_full() {
                self.session.on_reading_paused(now);
            }
            self.session.on_timeout(now);
        }
        self.pump(ctx);
    }

    fn handle_eof(&mut self, ctx: &mut Context<'_>) {
        self.close_reason.get_or_insert(CloseReason::ServerClosed);
        ctx.close();
    }

    fn handle_error(&mut self, _ctx: &mut Context<'_>, error: std::io::Error) {
        self.close_reason.get_or_insert(CloseReason::io(&error));
    }

    fn handle_close(&mut self, ctx: &mut Context<'_>) {
        let reason = self.close_reason.take().unwrap_or(CloseReason::ServerClosed);
        let conn = ctx.id();
        MonitorState::connection_closed(&self.monitor, ctx.reactor(), self.room, self.attempt, conn, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::douyu::Request;

    #[test]
    fn queued_packets_are_cut_one_by_one() {
        let mut queued = Vec::new();
        Request::JoinGroup { room: 9, group: -9999 }.encode_into(&mut queued);
        Request::Heartbeat.encode_into(&mut queued);
        let cut: Vec<&[u8]> = packets(&queued).collect();
        assert_eq!(cut, [Request::JoinGroup { room: 9, group: -9999 }.to_packet(), Request::Heartbeat.to_packet()]);
        assert_eq!(packets(&[]).count(), 0);
        assert_eq!(packets(&[1, 0, 0]).count(), 0, "not even a length field");
        assert_eq!(
            packets(&[200, 0, 0, 0, 1]).collect::<Vec<_>>(),
            [&[200, 0, 0, 0, 1][..]],
            "a short tail is cut whole"
        );
    }
}

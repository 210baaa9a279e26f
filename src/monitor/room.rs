//! One room's connection: the thin I/O driver around a [`ClientSession`].
//!
//! The session (in `douyu`) decides everything — what to send, when a
//! heartbeat is due, when the connection is dead. This dispatcher only moves
//! bytes between the reactor and the session, writes the session's messages
//! to the output, and keeps one reactor timer pointed at the session's next
//! deadline.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::douyu::{ClientSession, CloseReason, SessionEvent};
use crate::reactor::{ConnId, Context, Dispatcher, TimerHandle};

use super::MonitorState;

/// `handle_timer` tags.
pub(crate) const TIMER_SESSION: u64 = 0;
/// Asked from outside (daemon shutdown, room removed): log out and close.
pub(crate) const TIMER_LOGOUT: u64 = 1;
/// Armed by the monitor at connect: an address that silently drops packets
/// would otherwise hold the room for the kernel's SYN timeout (~2 min).
pub(crate) const TIMER_CONNECT: u64 = 2;

pub(crate) struct RoomConn {
    room: u64,
    /// This connection's id, known from `handle_connect` on.
    id: Option<ConnId>,
    session: ClientSession,
    monitor: Rc<RefCell<MonitorState>>,
    /// The armed session timer and its deadline.
    timer: Option<(Instant, TimerHandle)>,
    opened_at: Instant,
    joined: bool,
    close_reason: Option<String>,
    should_reconnect: bool,
    transmit: Vec<u8>,
}

impl RoomConn {
    pub(crate) fn new(room: u64, session: ClientSession, monitor: Rc<RefCell<MonitorState>>) -> Self {
        RoomConn {
            room,
            id: None,
            session,
            monitor,
            timer: None,
            opened_at: Instant::now(),
            joined: false,
            close_reason: None,
            should_reconnect: true,
            transmit: Vec::new(),
        }
    }

    /// After every input to the session: write its messages out, send what
    /// it queued, act on a close, and keep the timer on its next deadline.
    fn pump(&mut self, ctx: &mut Context<'_>) {
        let conn = ctx.id();
        let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut closing = None;
        {
            let mut monitor = self.monitor.borrow_mut();
            while let Some(event) = self.session.poll_event() {
                match event {
                    SessionEvent::Message(message) => monitor.deliver(ctx.reactor(), self.room, conn, ts_ms, &message),
                    SessionEvent::Joined => {
                        self.joined = true;
                        monitor.room_joined(self.room, ctx.id());
                    }
                    SessionEvent::Close(reason) => closing = Some(reason),
                }
            }
        }
        if self.session.poll_transmit(&mut self.transmit) {
            ctx.send(&self.transmit);
            self.transmit.clear();
        }
        if let Some(reason) = closing {
            self.should_reconnect = reason.should_reconnect();
            match &reason {
                CloseReason::Shutdown => {}
                CloseReason::BadRoomId => log::error!("room {}: {reason} — use the room's real numeric id", self.room),
                _ => log::warn!("room {}: {reason}", self.room),
            }
            if matches!(reason, CloseReason::Protocol(_)) {
                self.monitor.borrow_mut().stats.decode_errors += 1;
            }
            // Leaving: the logout goes out and the server's FIN is awaited.
            // Any other reason means the server is dead or misbehaving:
            // drop the connection now, so the room reconnects at once.
            if reason == CloseReason::Shutdown {
                ctx.close();
            } else {
                ctx.abort();
            }
            self.close_reason = Some(reason.to_string());
            return;
        }
        self.arm_timer(ctx);
    }

    /// Points the reactor timer at the session's next deadline. Receiving
    /// bytes pushes the idle deadline later on every read; re-arming for
    /// that would cost a timer operation per read, so a timer that fires
    /// early is simply re-armed then (the session ignores early calls).
    fn arm_timer(&mut self, ctx: &mut Context<'_>) {
        let Some(next) = self.session.next_deadline() else { return };
        if let Some((armed, handle)) = self.timer {
            if armed <= next {
                return;
            }
            ctx.cancel_timer(handle);
        }
        self.timer = Some((next, ctx.set_timer_at(next, TIMER_SESSION)));
    }
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
        self.opened_at = Instant::now();
        let connect_timer = self.monitor.borrow_mut().room_connected(self.room, ctx.id());
        if let Some(timer) = connect_timer {
            ctx.cancel_timer(timer);
        }
        self.session.on_connected(Instant::now());
        self.pump(ctx);
    }

    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let consumed = self.session.on_bytes(data, Instant::now());
        self.pump(ctx);
        consumed
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_>, tag: u64) {
        match tag {
            TIMER_LOGOUT => self.session.shutdown(),
            TIMER_CONNECT => {
                if self.id.is_none() {
                    log::warn!("room {}: connect timed out", self.room);
                    self.close_reason = Some("connect timed out".into());
                    ctx.abort();
                }
                return;
            }
            _ => {
                self.timer = None;
                let now = Instant::now();
                // Paused for backpressure: unread bytes may be waiting, so
                // the silence must not end the session (and drop them).
                if self.monitor.borrow().output.is_full() {
                    self.session.on_reading_paused(now);
                }
                self.session.on_timeout(now);
            }
        }
        self.pump(ctx);
    }

    fn handle_eof(&mut self, ctx: &mut Context<'_>) {
        if self.close_reason.is_none() {
            log::warn!("room {}: server closed the connection", self.room);
            self.close_reason = Some("server closed the connection".into());
        }
        ctx.close();
    }

    fn handle_error(&mut self, _ctx: &mut Context<'_>, error: std::io::Error) {
        log::warn!("room {}: connection error: {error}", self.room);
        self.close_reason = Some(error.to_string());
    }

    fn handle_close(&mut self, ctx: &mut Context<'_>) {
        let outcome = super::CloseOutcome {
            joined: self.joined,
            lived: self.opened_at.elapsed(),
            reason: self.close_reason.take().unwrap_or_else(|| "closed".into()),
            should_reconnect: self.should_reconnect,
        };
        let conn = ctx.id();
        MonitorState::room_closed(&self.monitor, ctx.reactor(), self.room, conn, outcome);
    }
}

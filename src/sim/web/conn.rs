//! One connection of the web listener: requests in, replies out, in order,
//! within the bounds of the module documentation.
//!
//! A reply is sent at once, or held: `slow` holds it until its moment, and
//! `oversize` streams its filler a piece at a time as the socket takes it.
//! While a reply is held, nothing more is read (pipelined requests wait in
//! the reactor's buffer and TCP), so a connection holds one reply at most;
//! and a client's FIN is read only after it, so a client that has finished
//! sending still gets its reply whole.
//!
//! Deadlines, on one timer as in the metrics endpoint: a request head must
//! be complete within `head_timeout` of its first byte, a silent
//! connection is closed after `idle_timeout`, and a client that stops
//! reading a reply is dropped after `idle_timeout` without progress. A TLS
//! handshake has `head_timeout` (a timer of its own, set at accept).

use std::rc::Rc;
use std::time::Instant;

use super::Shared;
use super::faults::{Reply, filler};
use super::pages::{self, Page, Site};
use crate::http::server::{parse_request_head, write_response};
use crate::reactor::{Context, DeadlineTimer, Dispatcher};

/// The tag of the deadline timer (head, idle, a stalled reader).
const TIMER_DEADLINE: u64 = 0;
/// The tag of the timer that sends a `slow` reply.
const TIMER_REPLY: u64 = 1;
/// The tag of the timer that bounds a TLS handshake.
pub(super) const TIMER_HANDSHAKE: u64 = 2;

/// `oversize` filler goes out in pieces of this size.
const PIECE: u64 = 64 * 1024;

/// A reply not sent whole yet.
enum Held {
    /// `slow`: sent when `TIMER_REPLY` fires.
    Waiting(Reply),
    /// `oversize`: this much filler is still to go, then maybe the close.
    Streaming { filler: u64, close: bool },
}

pub(super) struct WebConn {
    shared: Rc<Shared>,
    /// `handle_connect` ran (for TLS: the handshake is done).
    connected: bool,
    /// The next complete request (or, while a reply streams, the next
    /// progress) must come before this.
    deadline: Instant,
    timer: DeadlineTimer,
    /// When the first byte of the request under way came.
    head_started: Option<Instant>,
    /// Bytes of a request not answered yet: tells a slow client from an
    /// idle one when the timer fires.
    unanswered: usize,
    held: Option<Held>,
    /// Answers wait for the client to read them: no more are made till then.
    backed_up: bool,
    /// A last reply was sent and the connection is closing.
    closing: bool,
}

impl WebConn {
    pub(super) fn new(shared: Rc<Shared>) -> Self {
        let deadline = Instant::now() + shared.config.limits.idle_timeout;
        WebConn {
            shared,
            connected: false,
            deadline,
            timer: DeadlineTimer::new(),
            head_started: None,
            unanswered: 0,
            held: None,
            backed_up: false,
            closing: false,
        }
    }

    /// Answers one request, now or when `slow` says.
    fn reply_to(&mut self, ctx: &mut Context<'_>, page: Page, target: &str, keep_alive: bool) {
        let number = self.shared.requests.get() + 1;
        self.shared.requests.set(number);
        let reply = self.shared.config.faults.apply(page, number, target, keep_alive);
        match reply.delay {
            Some(delay) if !delay.is_zero() => {
                // The wait is ours: the client's deadlines start after it.
                let due = Instant::now() + delay;
                self.deadline = self.deadline.max(due + self.shared.config.limits.idle_timeout);
                ctx.set_timer_at(due, TIMER_REPLY);
                self.held = Some(Held::Waiting(reply));
            }
            _ => self.send(ctx, reply),
        }
    }

    fn send(&mut self, ctx: &mut Context<'_>, reply: Reply) {
        ctx.send(&reply.bytes);
        if reply.filler > 0 {
            self.held = Some(Held::Streaming { filler: reply.filler, close: reply.close });
        } else if reply.close {
            self.closing = true;
            ctx.close();
        }
        self.backed_up = ctx.pending_output() >= self.shared.config.limits.max_pending_output;
    }

    /// Answers a request that cannot be served (no faults: they are for
    /// answers), and closes.
    fn refuse(&mut self, ctx: &mut Context<'_>, status: u16) {
        let page = Page::status(status);
        let mut bytes = Vec::with_capacity(256);
        write_response(&mut bytes, status, &[("Content-Type", page.content_type)], &page.body, false);
        ctx.send(&bytes);
        self.closing = true;
        ctx.close();
    }

    fn on_deadline(&mut self, ctx: &mut Context<'_>) {
        self.timer.fired();
        if Instant::now() < self.deadline {
            self.timer.set(ctx, Some(self.deadline), TIMER_DEADLINE);
        } else if ctx.pending_output() > 0 {
            log::debug!("web: {}: the client does not read its reply; dropping it", ctx.id());
            ctx.abort();
        } else if self.unanswered > 0 && !self.closing {
            log::debug!("web: {}: request too slow", ctx.id());
            self.refuse(ctx, 408);
        } else {
            ctx.close();
        }
    }
}

impl Dispatcher for WebConn {
    /// Not while a reply is held or answers are backed up.
    fn readable(&self) -> bool {
        self.held.is_none() && !self.backed_up
    }

    /// Streaming, or waiting for queued answers to be written.
    fn writable(&self) -> bool {
        matches!(self.held, Some(Held::Streaming { .. })) || self.backed_up
    }

    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        self.connected = true;
        self.timer.set(ctx, Some(self.deadline), TIMER_DEADLINE);
    }

    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let limits = self.shared.config.limits;
        let mut consumed = 0;
        while consumed < data.len() && self.readable() && !self.closing {
            match parse_request_head(&data[consumed..], limits.max_header_bytes) {
                Ok(None) => break,
                Err(error) => {
                    log::debug!("web: {}: bad request ({})", ctx.id(), error.status());
                    self.refuse(ctx, error.status());
                    consumed = data.len();
                }
                Ok(Some(request)) => {
                    consumed += request.len;
                    self.head_started = None;
                    self.deadline = Instant::now() + limits.idle_timeout;
                    let page = {
                        let hub = self.shared.hub.borrow();
                        let site = Site {
                            seed: hub.config.seed,
                            vanity: &hub.config.vanity,
                            unknown: &self.shared.config.unknown_rooms,
                            board: &hub.status,
                            now: Instant::now(),
                        };
                        pages::answer(&request, &site)
                    };
                    log::debug!("web: {}: {} {} → {}", ctx.id(), request.method, request.path(), page.status);
                    // A body we did not read would be taken for the next
                    // request: answer, then close.
                    let keep_alive = request.keep_alive && !request.has_body();
                    self.reply_to(ctx, page, request.target, keep_alive);
                }
            }
        }
        self.unanswered = data.len() - consumed;
        if self.unanswered > 0 && self.readable() && self.head_started.is_none() {
            // A request head has begun: it has `head_timeout` to complete.
            let now = Instant::now();
            self.head_started = Some(now);
            self.deadline = self.deadline.min(now + limits.head_timeout);
        }
        self.timer.set(ctx, Some(self.deadline), TIMER_DEADLINE);
        consumed
    }

    /// Everything queued is written: the next piece of a streamed reply,
    /// or back to reading.
    fn handle_write(&mut self, ctx: &mut Context<'_>) {
        self.backed_up = false;
        // Progress: a client that reads is not idle.
        self.deadline = self.deadline.max(Instant::now() + self.shared.config.limits.idle_timeout);
        if let Some(Held::Streaming { filler: left, close }) = self.held {
            let piece = left.min(PIECE);
            ctx.send(&filler(piece as usize));
            if left == piece {
                self.held = None;
                if close {
                    self.closing = true;
                    ctx.close();
                }
            } else {
                self.held = Some(Held::Streaming { filler: left - piece, close });
            }
        }
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_>, tag: u64) {
        match tag {
            TIMER_REPLY => {
                if let Some(Held::Waiting(reply)) = self.held.take() {
                    self.send(ctx, reply);
                }
            }
            TIMER_HANDSHAKE if !self.connected => {
                log::debug!("web: {}: TLS handshake not done in time", ctx.id());
                ctx.close();
            }
            TIMER_HANDSHAKE => {}
            _ => self.on_deadline(ctx),
        }
    }

    fn handle_error(&mut self, ctx: &mut Context<'_>, error: std::io::Error) {
        // Clients that give up (a reset) are routine: not a warning.
        log::debug!("web: {}: {error}", ctx.id());
    }

    fn handle_close(&mut self, _ctx: &mut Context<'_>) {
        self.shared.open.set(self.shared.open.get() - 1);
    }
}

//! One client connection of the metrics endpoint: requests in, answers out,
//! in order, within the bounds of the module documentation.
//!
//! Two deadlines, one timer: a request head must be complete within
//! `head_timeout` of its first byte, and a silent connection is closed
//! after `idle_timeout`. The timer is re-armed lazily
//! ([`DeadlineTimer`]): a deadline that moves later (a request answered) is
//! checked when the timer fires; only one that moves earlier (a head
//! begins) re-arms it at once.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use super::pages::{Response, route};
use super::{MetricsConfig, Table};
use crate::http::server::{parse_request_head, write_response};
use crate::monitor::Monitor;
use crate::reactor::{Context, DeadlineTimer, Dispatcher};

/// The tag of the connection's only timer.
const TIMER_DEADLINE: u64 = 0;

/// One client connection: parse requests, answer them in order.
pub(super) struct HttpConn {
    monitor: Monitor,
    config: MetricsConfig,
    table: Rc<RefCell<Table>>,
    /// Shared with the table: answers are held back until the client reads
    /// (such a connection is not closed to make room for a newcomer).
    answering: Rc<Cell<bool>>,
    /// The next complete request must arrive before this.
    deadline: Instant,
    timer: DeadlineTimer,
    /// When the first byte of the request under way came.
    head_started: Option<Instant>,
    /// Bytes of a request not answered yet (a partial one, or requests held
    /// back): tells a slow client from an idle one when the timer fires.
    unanswered: usize,
    /// A last answer was sent and the connection is closing.
    closing: bool,
}

impl HttpConn {
    pub(super) fn new(
        monitor: Monitor,
        config: MetricsConfig,
        table: Rc<RefCell<Table>>,
        answering: Rc<Cell<bool>>,
    ) -> Self {
        HttpConn {
            monitor,
            config,
            table,
            answering,
            deadline: Instant::now() + config.idle_timeout,
            timer: DeadlineTimer::new(TIMER_DEADLINE),
            head_started: None,
            unanswered: 0,
            closing: false,
        }
    }

    /// Queues one response; closes gracefully after it if `!keep_alive`.
    fn respond(&mut self, ctx: &mut Context<'_>, response: &Response, keep_alive: bool) {
        let mut headers = vec![("Content-Type", response.content_type)];
        if response.status == 405 {
            headers.push(("Allow", "GET"));
        }
        let mut bytes = Vec::with_capacity(256 + response.body.len());
        write_response(&mut bytes, response.status, &headers, &response.body, keep_alive);
        ctx.send(&bytes);
        if !keep_alive {
            self.closing = true;
            ctx.close();
        }
    }
}

impl Dispatcher for HttpConn {
    /// Not while answers are backed up: the requests wait in TCP.
    fn readable(&self) -> bool {
        !self.answering.get()
    }

    /// While answers are held back, ask to hear when everything queued is written.
    fn writable(&self) -> bool {
        self.answering.get()
    }

    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        self.timer.arm_by(ctx, self.deadline);
    }

    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let mut consumed = 0;
        while consumed < data.len() && !self.closing {
            if ctx.pending_output() >= self.config.max_pending_output {
                self.answering.set(true);
                break;
            }
            match parse_request_head(&data[consumed..], self.config.max_header_bytes) {
                Ok(None) => break,
                Err(error) => {
                    let status = error.status();
                    log::debug!("metrics: {}: bad request ({status})", ctx.id());
                    self.respond(ctx, &Response::status(status), false);
                    consumed = data.len();
                }
                Ok(Some(request)) => {
                    consumed += request.len;
                    self.head_started = None;
                    self.deadline = Instant::now() + self.config.idle_timeout;
                    let response = route(&request, &self.monitor, ctx.reactor());
                    // A body we did not read would be taken for the next
                    // request: answer, then close.
                    self.respond(ctx, &response, request.keep_alive && !request.has_body());
                }
            }
        }
        self.unanswered = data.len() - consumed;
        if self.unanswered > 0 && !self.answering.get() && self.head_started.is_none() {
            // A request head has begun: it has `head_timeout` to complete.
            let now = Instant::now();
            self.head_started = Some(now);
            self.deadline = self.deadline.min(now + self.config.head_timeout);
            self.timer.arm_by(ctx, self.deadline);
        }
        consumed
    }

    /// Everything queued is written: read the held-back requests again (the
    /// reactor hands them back once `readable()` is true).
    fn handle_write(&mut self, _ctx: &mut Context<'_>) {
        self.answering.set(false);
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_>, _tag: u64) {
        self.timer.fired();
        if Instant::now() < self.deadline {
            // A request came since the timer was set: wait for the next one.
            self.timer.arm_by(ctx, self.deadline);
            return;
        }
        if ctx.pending_output() > 0 {
            log::debug!("metrics: {}: client does not read its answers; dropping it", ctx.id());
            ctx.abort();
        } else if self.unanswered > 0 && !self.closing {
            log::debug!("metrics: {}: request too slow", ctx.id());
            self.respond(ctx, &Response::status(408), false);
        } else {
            ctx.close();
        }
    }

    fn handle_close(&mut self, ctx: &mut Context<'_>) {
        self.table.borrow_mut().closed(ctx.id());
    }
}

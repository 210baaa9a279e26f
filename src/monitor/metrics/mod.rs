//! The monitor's HTTP endpoint: `GET /metrics` (Prometheus) and `GET /rooms`
//! (JSON), served by the same reactor that watches the rooms.
//!
//! # Why on the loop, not on a thread of its own
//!
//! The monitor's state lives on the loop thread (an `Rc<RefCell<…>>`, not
//! even `Send`). A metrics thread would need a lock around every counter the
//! rooms touch, or a copy shipped across on every change. On the loop it
//! needs neither: a request is answered inside a callback, and callbacks
//! never overlap, so a scrape reads the state *between* two callbacks. It
//! cannot see a room half-updated, and the numbers agree with each other:
//! the messages by type add up to the messages by room, and the rooms by
//! state add up to the rooms.
//!
//! The price is that a scrape runs on the loop: while it renders, no room is
//! read. Rendering is one walk over the rooms, so this is cheap, but it is
//! also why everything a client can make us do is bounded.
//!
//! # Bounds
//!
//! A scraper is a client like any other, and a daemon must not let one slow
//! or hostile client grow its memory, hold a slot forever, or shut the
//! scrapers out:
//!
//! - **Headers:** a request head larger than [`MetricsConfig::max_header_bytes`]
//!   (8 KiB), or with more than 64 header lines, gets `431` and the
//!   connection is closed. So the reactor never holds more than that of one
//!   request.
//! - **Bodies:** only `GET` is served (others get `405`). A request that
//!   announces a body (`Content-Length` other than 0, or
//!   `Transfer-Encoding`) is answered and the connection closed, without
//!   reading the body.
//! - **Time:** a request head must be complete within
//!   [`MetricsConfig::head_timeout`] (3 s) of its first byte, or the client
//!   gets `408` and is closed (slowloris); a connection that sends nothing
//!   for [`MetricsConfig::idle_timeout`] (10 s) is closed.
//! - **Output:** pipelined requests are answered in order, but once
//!   [`MetricsConfig::max_pending_output`] bytes of answers wait for the
//!   client to read them, the rest wait too: `readable()` turns false, the
//!   kernel's buffers fill, and TCP slows the client down.
//! - **Connections:** at most [`MetricsConfig::max_connections`] at once.
//!   When the table is full, a newcomer takes the place of the oldest
//!   connection that is not being answered (one that is idle, or still
//!   sending its request head): a flood of idle or slow sockets cannot keep
//!   a scraper out, and memory stays bounded. Only when every connection is
//!   waiting for a client to read its answer is the newcomer refused. Such
//!   turn-aways are logged once, then counted in one line per
//!   [`MetricsConfig::turn_away_report`] (10 s) for as long as they go on.
//!
//! Every response has a `Content-Length`. Keep-alive is the default in
//! HTTP/1.1 (`Connection: close` ends it) and opt-in in HTTP/1.0.
//!
//! | module | concept |
//! |---|---|
//! | `conn` | one client connection: requests in, answers out, its deadlines |
//! | `pages` | which request gets which answer, and the two pages |
//!
//! Request heads are parsed, and answers written, by [`crate::http::server`],
//! which the simulator's web pages share.

mod conn;
mod pages;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use mio::net::TcpListener;

use super::Monitor;
use crate::plural::plural;
use crate::reactor::{EntryToken, Reactor};
use conn::HttpConn;

/// The limits of the endpoint (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct MetricsConfig {
    /// Largest request head (request line and headers) accepted.
    pub max_header_bytes: usize,
    /// How long a request head may take to arrive, from its first byte.
    pub head_timeout: Duration,
    /// How long a connection may stay silent between requests.
    pub idle_timeout: Duration,
    /// Answered-but-unread bytes after which further pipelined requests wait.
    pub max_pending_output: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// How often connections turned away are counted in the log, at most:
    /// a flood must not flood the log too.
    pub turn_away_report: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_header_bytes: 8 * 1024,
            head_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(10),
            max_pending_output: 256 * 1024,
            max_connections: 64,
            turn_away_report: Duration::from_secs(10),
        }
    }
}

/// A running metrics endpoint: the listener's id and address.
#[derive(Clone, Copy, Debug)]
pub struct MetricsServer {
    listener: EntryToken,
    addr: SocketAddr,
}

impl MetricsServer {
    /// The address it listens on (with the real port if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listener's reactor entry.
    pub fn id(&self) -> EntryToken {
        self.listener
    }

    /// Stops accepting. Connections already open finish on their own (at
    /// the latest when their idle timeout fires).
    pub fn stop(&self, reactor: &mut Reactor) -> bool {
        reactor.remove_listener(self.listener)
    }
}

/// Serves `GET /metrics` and `GET /rooms` for `monitor` on `addr` (bound
/// here; port 0 picks a free port), with the default limits.
pub fn start(reactor: &mut Reactor, addr: SocketAddr, monitor: Monitor) -> io::Result<MetricsServer> {
    start_with_config(reactor, addr, monitor, MetricsConfig::default())
}

/// Like [`start`], with other limits.
pub fn start_with_config(
    reactor: &mut Reactor,
    addr: SocketAddr,
    monitor: Monitor,
    config: MetricsConfig,
) -> io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let table = Rc::new(RefCell::new(Table::default()));
    let id = reactor.listen(listener, move |reactor: &mut Reactor, stream, peer| {
        if table.borrow().open.len() >= config.max_connections
            && !Table::make_room(&table, reactor, config.turn_away_report)
        {
            // Dropping the stream closes it.
            log::debug!("metrics: refusing {peer}: every connection is being answered");
            return;
        }
        let answering = Rc::new(Cell::new(false));
        let conn = HttpConn::new(monitor.clone(), config, table.clone(), answering.clone());
        match reactor.add_stream(stream, conn) {
            Ok(id) => table.borrow_mut().open.push_back(Open { id, answering }),
            Err(e) => log::warn!("metrics: cannot serve {peer}: {e}"),
        }
    })?;
    log::info!("metrics: serving /metrics and /rooms on http://{addr}");
    Ok(MetricsServer { listener: id, addr })
}

/// The open connections, oldest first, and the turn-aways not yet reported.
#[derive(Default)]
struct Table {
    open: VecDeque<Open>,
    evicted: u64,
    refused: u64,
    /// Turn-aways are being counted: a report is due (the first turn-away
    /// was logged at once).
    report_scheduled: bool,
}

struct Open {
    id: EntryToken,
    /// Holding answers back until the client reads (see `HttpConn`).
    answering: Rc<Cell<bool>>,
}

impl Table {
    /// The table is full: closes the oldest connection that is not being
    /// answered, to make room for a newcomer. Returns false if every one is.
    fn make_room(this: &Rc<RefCell<Table>>, reactor: &mut Reactor, report_every: Duration) -> bool {
        let mut table = this.borrow_mut();
        let evicted =
            table.evict_oldest_idle(|open| open.answering.get() || reactor.pending_output(open.id) != Some(0));
        if let Some(oldest) = evicted {
            log::debug!("metrics: closing {oldest} to make room for a newcomer");
            reactor.abort(oldest);
        }
        if !table.report_scheduled {
            table.report_scheduled = true;
            log::warn!(
                "metrics: {} open (the limit): newcomers replace the oldest idle ones; \
                 counting for {} s",
                plural((table.open.len() + usize::from(evicted.is_some())) as u64, "connection"),
                report_every.as_secs_f64()
            );
            Table::report_later(this, reactor, report_every);
        }
        evicted.is_some()
    }

    /// Logs the turn-aways counted once `every` has passed, and again after
    /// each `every` while there are more; an interval without any ends the
    /// count (the next turn-away is logged at once again).
    fn report_later(this: &Rc<RefCell<Table>>, reactor: &mut Reactor, every: Duration) {
        let this = this.clone();
        reactor.call_later(every, move |reactor| {
            let (evicted, refused) = {
                let mut table = this.borrow_mut();
                (std::mem::take(&mut table.evicted), std::mem::take(&mut table.refused))
            };
            if evicted + refused == 0 {
                this.borrow_mut().report_scheduled = false;
                return;
            }
            log::warn!(
                "metrics: in the last {} s, {} closed to make room and {refused} refused",
                every.as_secs_f64(),
                plural(evicted, "connection")
            );
            Table::report_later(&this, reactor, every);
        });
    }

    /// Takes the oldest connection that is not `busy` out of the table and
    /// returns it, to be closed; counts a refusal if there is none.
    fn evict_oldest_idle(&mut self, busy: impl Fn(&Open) -> bool) -> Option<EntryToken> {
        match self.open.iter().position(|open| !busy(open)) {
            Some(index) => {
                self.evicted += 1;
                self.open.remove(index).map(|open| open.id)
            }
            None => {
                self.refused += 1;
                None
            }
        }
    }

    /// A connection closed: its place is free.
    fn closed(&mut self, id: EntryToken) {
        if let Some(index) = self.open.iter().position(|open| open.id == id) {
            self.open.remove(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_gives_up_its_oldest_idle_connection_and_refuses_when_all_are_busy() {
        let mut table = Table::default();
        let ids: Vec<EntryToken> = (0..4).map(|index| EntryToken { index, generation: 7 }).collect();
        for &id in &ids {
            table.open.push_back(Open { id, answering: Rc::new(Cell::new(false)) });
        }
        // The two oldest are being answered; the third is the oldest idle one.
        table.open[0].answering.set(true);
        table.open[1].answering.set(true);
        let busy = |open: &Open| open.answering.get();
        assert_eq!(table.evict_oldest_idle(busy), Some(ids[2]));
        assert_eq!(table.evict_oldest_idle(busy), Some(ids[3]));
        assert_eq!(table.evict_oldest_idle(busy), None, "every connection left is being answered");
        assert_eq!((table.evicted, table.refused), (2, 1));
        assert_eq!(table.open.iter().map(|open| open.id).collect::<Vec<_>>(), &ids[..2]);
        table.closed(ids[0]);
        assert_eq!(table.open.len(), 1);
    }
}

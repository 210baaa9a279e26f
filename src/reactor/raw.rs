//! Listeners and raw handlers: entries that do their own I/O.
//!
//! A **listener** accepts until `WouldBlock` (edge-triggered: one event may
//! stand for many waiting connections) and hands each stream to its
//! [`Acceptor`]. A **raw handler** is Tornado's `add_handler(fd, handler,
//! events)`: any mio [`Source`] (a UDP socket, a listener, a stream you want
//! to drive yourself) with a callback that receives readiness and does its
//! own reads and writes. `update_handler` changes its interest and
//! `remove_handler` drops it; both work from inside its own callback.

use std::io;
use std::time::{Duration, Instant};

use mio::Interest;
use mio::event::Source;
use mio::net::TcpListener;

use super::EntryToken;
use super::dispatcher::{Acceptor, Ready};
use super::event_loop::{EntryKind, Reactor, TimerTask, deadline_after, entry_in};

/// How long a listener pauses after an accept error (most often EMFILE:
/// out of descriptors) before trying again, instead of spinning on it.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

pub(crate) struct ListenerEntry {
    listener: TcpListener,
    /// Taken out while it runs.
    acceptor: Option<Box<dyn Acceptor>>,
    /// Connections it may still accept in iteration `budget_iteration`
    /// (`ReactorConfig::accept_budget` per iteration, however many times
    /// it runs in that iteration: for an event and from the ready list).
    budget_left: usize,
    budget_iteration: u64,
    /// On the reactor's ready list. Set when pushed, cleared only when
    /// taken off, so it is there at most once.
    queued: bool,
}

/// A source and its callback, behind one trait object so the slab can hold
/// any kind of source.
trait RawHandler {
    fn source(&mut self) -> &mut dyn Source;
    fn call(&mut self, reactor: &mut Reactor, id: EntryToken, ready: Ready);
}

struct Handler<S, F> {
    source: S,
    callback: F,
}

impl<S, F> RawHandler for Handler<S, F>
where
    S: Source,
    F: FnMut(&mut Reactor, EntryToken, &mut S, Ready),
{
    fn source(&mut self) -> &mut dyn Source {
        &mut self.source
    }
    fn call(&mut self, reactor: &mut Reactor, id: EntryToken, ready: Ready) {
        (self.callback)(reactor, id, &mut self.source, ready)
    }
}

pub(crate) struct RawEntry {
    /// Taken out while its callback runs.
    handler: Option<Box<dyn RawHandler>>,
    interest: Interest,
    /// Interest changed from inside the callback, applied when it returns.
    pending_interest: Option<Interest>,
    /// Removed from inside the callback; dropped when it returns.
    removed: bool,
}

impl Reactor {
    /// Listens on `listener`; each accepted connection goes to `on_accept`,
    /// which typically attaches it with [`add_stream`](Reactor::add_stream).
    /// (Taking the closure type directly lets Rust infer its argument types.)
    pub fn listen<F>(&mut self, listener: TcpListener, on_accept: F) -> io::Result<EntryToken>
    where
        F: FnMut(&mut Reactor, mio::net::TcpStream, std::net::SocketAddr) + 'static,
    {
        self.listen_with(listener, on_accept)
    }

    /// Like [`listen`](Self::listen), with any [`Acceptor`] (one that also
    /// wants to handle accept errors, say).
    pub fn listen_with(&mut self, listener: TcpListener, acceptor: impl Acceptor + 'static) -> io::Result<EntryToken> {
        let id = self.insert_entry(EntryKind::Listener(ListenerEntry {
            listener,
            acceptor: Some(Box::new(acceptor)),
            budget_left: 0,
            budget_iteration: 0,
            queued: false,
        }));
        let EntryKind::Listener(entry) = &mut self.entries[id.index()].kind else { unreachable!() };
        if let Err(e) = self.poll.registry().register(&mut entry.listener, id.token(), Interest::READABLE) {
            self.entries.remove(id.index());
            return Err(e);
        }
        Ok(id)
    }

    /// Accepts until `WouldBlock` or the per-iteration budget is used.
    pub(crate) fn accept_all(&mut self, id: EntryToken) {
        let iteration = self.stats.iterations;
        let Some(EntryKind::Listener(entry)) = entry_in(&mut self.entries, id) else { return };
        if entry.budget_iteration != iteration {
            entry.budget_iteration = iteration;
            entry.budget_left = self.config.accept_budget;
        }
        let Some(mut acceptor) = entry.acceptor.take() else { return };
        loop {
            let Some(EntryKind::Listener(entry)) = entry_in(&mut self.entries, id) else { return };
            if entry.budget_left == 0 {
                // Budget used with connections possibly still waiting: the
                // edge will not come again, so come back next iteration.
                self.put_acceptor_back(id, acceptor);
                self.queue_listener(id);
                return;
            }
            match entry.listener.accept() {
                Ok((stream, peer)) => {
                    entry.budget_left -= 1;
                    self.stats.accepted += 1;
                    acceptor.handle_accepted(self, stream, peer);
                    self.settle();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.put_acceptor_back(id, acceptor);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    acceptor.handle_accept_error(self, &e);
                    self.put_acceptor_back(id, acceptor);
                    self.add_timer(deadline_after(Instant::now(), ACCEPT_RETRY), TimerTask::RetryAccept(id));
                    return;
                }
            }
        }
    }

    /// Puts a listener on the ready list, unless it is there already.
    pub(crate) fn queue_listener(&mut self, id: EntryToken) {
        if let Some(EntryKind::Listener(entry)) = entry_in(&mut self.entries, id)
            && !entry.queued
        {
            entry.queued = true;
            self.ready.push_back(id);
        }
    }

    /// Continues a listener just taken off the ready list.
    pub(crate) fn accept_queued(&mut self, id: EntryToken) {
        if let Some(EntryKind::Listener(entry)) = entry_in(&mut self.entries, id) {
            entry.queued = false;
        }
        self.accept_all(id);
    }

    fn put_acceptor_back(&mut self, id: EntryToken, acceptor: Box<dyn Acceptor>) {
        if let Some(EntryKind::Listener(entry)) = entry_in(&mut self.entries, id) {
            entry.acceptor = Some(acceptor);
        }
    }

    /// The local address of a listener.
    pub fn listener_addr(&self, id: EntryToken) -> Option<std::net::SocketAddr> {
        match &self.entry(id)?.kind {
            EntryKind::Listener(l) => l.listener.local_addr().ok(),
            _ => None,
        }
    }

    /// Stops listening and closes the listening socket.
    pub fn remove_listener(&mut self, id: EntryToken) -> bool {
        if !matches!(self.entry(id).map(|e| &e.kind), Some(EntryKind::Listener(_))) {
            return false;
        }
        if let EntryKind::Listener(mut l) = self.entries.remove(id.index()).kind {
            let _ = self.poll.registry().deregister(&mut l.listener);
        }
        true
    }

    /// Tornado's `add_handler`: calls `callback(reactor, id, &mut source,
    /// ready)` on every readiness event of `source` for `interest`.
    pub fn add_handler<S, F>(&mut self, source: S, interest: Interest, callback: F) -> io::Result<EntryToken>
    where
        S: Source + 'static,
        F: FnMut(&mut Reactor, EntryToken, &mut S, Ready) + 'static,
    {
        let id = self.insert_entry(EntryKind::Raw(RawEntry {
            handler: Some(Box::new(Handler { source, callback })),
            interest,
            pending_interest: None,
            removed: false,
        }));
        let EntryKind::Raw(RawEntry { handler: Some(handler), .. }) = &mut self.entries[id.index()].kind else {
            unreachable!()
        };
        if let Err(e) = self.poll.registry().register(handler.source(), id.token(), interest) {
            self.entries.remove(id.index());
            return Err(e);
        }
        Ok(id)
    }

    /// Tornado's `update_handler`: changes the interest of a raw handler.
    pub fn update_handler(&mut self, id: EntryToken, interest: Interest) -> io::Result<()> {
        let Some(EntryKind::Raw(raw)) = entry_in(&mut self.entries, id) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such handler"));
        };
        match raw.handler.as_mut() {
            // Inside its own callback: apply when it returns.
            None => raw.pending_interest = Some(interest),
            Some(handler) => {
                if raw.interest != interest {
                    self.stats.reregisters += 1;
                    self.poll.registry().reregister(handler.source(), id.token(), interest)?;
                    raw.interest = interest;
                }
            }
        }
        Ok(())
    }

    /// Tornado's `remove_handler`: deregisters and drops the source.
    pub fn remove_handler(&mut self, id: EntryToken) -> bool {
        let Some(EntryKind::Raw(raw)) = entry_in(&mut self.entries, id) else { return false };
        if raw.handler.is_none() {
            raw.removed = true; // inside its own callback
            return true;
        }
        if let EntryKind::Raw(RawEntry { handler: Some(mut handler), .. }) = self.entries.remove(id.index()).kind {
            let _ = self.poll.registry().deregister(handler.source());
        }
        true
    }

    pub(crate) fn run_raw(&mut self, id: EntryToken, ready: Ready) {
        let Some(EntryKind::Raw(raw)) = entry_in(&mut self.entries, id) else { return };
        let Some(mut handler) = raw.handler.take() else { return };
        handler.call(self, id, ready);
        let Some(EntryKind::Raw(raw)) = entry_in(&mut self.entries, id) else { return };
        if raw.removed {
            let _ = self.poll.registry().deregister(handler.source());
            self.entries.remove(id.index());
            return;
        }
        if let Some(interest) = raw.pending_interest.take().filter(|i| *i != raw.interest) {
            self.stats.reregisters += 1;
            if let Err(e) = self.poll.registry().reregister(handler.source(), id.token(), interest) {
                log::warn!("handler {id}: could not change interest: {e}");
            }
            raw.interest = interest;
        }
        raw.handler = Some(handler);
    }
}

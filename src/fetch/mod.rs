//! Fetching URLs on the reactor: the sans-IO [`http`](crate::http) client,
//! driven by the event loop.
//!
//! A [`Fetcher`] takes requests, each with a priority, a timeout and a
//! callback, and calls the callback exactly once with the response or the
//! reason there is none. One fetch goes through these stages:
//!
//! ```text
//!  Waiting ──slot free, gap passed──▶ Resolving ──addresses──▶ Exchanging ──response──▶ callback
//!  (urgent     (at most max_in_flight  (helper thread;          (Exchange on │  3xx: Redirects says
//!   first;      run; starts paced;      skipped for an IP)       a connection)│  Follow ─▶ Resolving
//!   no clock)   the deadline is armed)     └──────── deadline ───────┴──────────▶ callback(Timeout)
//! ```
//!
//! - **Slots.** At most [`FetchConfig::max_in_flight`] fetches run at once,
//!   the rest wait, [`Priority::Urgent`] ones before [`Priority::Background`]
//!   ones and each kind in order, and one starts at most every
//!   [`FetchConfig::min_start_gap`]: a daemon resolving a thousand rooms
//!   asks Douyu's web servers politely. The defaults allow at most 20
//!   starts a second (fewer when answers take longer than 200 ms). A
//!   redirect keeps its fetch's slot. The queue holds what callers submit:
//!   they bound it (the monitor has at most one look-up of each kind per
//!   room waiting).
//! - **Deadline.** One reactor timer per fetch, armed when it *starts*
//!   (gets a slot), covers the lookup, connecting and every redirect: its
//!   timeout measures the server, not the queue, so a fetch that waited
//!   long still gets its full time. When it fires the callback gets
//!   [`Error::Timeout`] and the connection is dropped.
//! - **Lookups** block in the system's resolver ([`FetchConfig::resolve`]),
//!   so they run on a helper thread each and come back through a reactor channel. A thread cannot be
//!   stopped: a fetch whose deadline passes mid-lookup answers its callback
//!   at once but keeps its slot until the thread is done, so there are never
//!   more than `max_in_flight` lookup threads, even against a resolver that
//!   hangs.
//! - **Addresses** are tried in the resolver's order until one connects.
//!   Each gets at most [`FetchConfig::connect_timeout`], and no more than
//!   its share of the time left (divided among the addresses not tried
//!   yet): an address that drops packets (a broken IPv6 route) costs a
//!   share, not the whole deadline.
//! - **One connection per request** (`Connection: close`, see
//!   [`http::request`](crate::http::request)): no pool, nothing to expire.
//!
//! Callbacks always run from the loop, never inside [`Fetcher::fetch`], so
//! a caller may hold its own `RefCell` borrow while it submits.
//!
//! HTTPS runs on the reactor's TLS ([`FetchConfig::tls`]); without a TLS
//! configuration, `https://` fetches fail with [`Error::TlsUnavailable`].

mod transport;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::http::{DEFAULT_REDIRECT_LIMIT, Error, Exchange, Next, Redirects, Request, Response, ResponseLimits, Url};
use crate::reactor::event_loop::deadline_after;
use crate::reactor::{EntryToken, LoopSender, Reactor, TimerHandle, TlsClientConfig};

/// Looks up a host's addresses. Runs on a helper thread and may block.
pub type Resolve = fn(host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;

/// The system's resolver (`getaddrinfo`: `/etc/hosts`, then DNS).
pub fn system_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

/// How a [`Fetcher`] behaves.
#[derive(Clone)]
pub struct FetchConfig {
    /// Fetches running at once (4); the rest wait their turn.
    pub max_in_flight: usize,
    /// Least time between two fetches starting (50 ms).
    pub min_start_gap: Duration,
    /// How long one address may take to connect (the TLS handshake
    /// included) before the next is tried, and at most its share of the
    /// time left (5 s; the monitor passes its rooms' connect timeout).
    pub connect_timeout: Duration,
    /// Redirects followed per fetch (5).
    pub max_redirects: usize,
    /// Caps on the response's head and body.
    pub limits: ResponseLimits,
    /// How host names are looked up ([`system_resolve`]); tests put a fake
    /// one here.
    pub resolve: Resolve,
    /// Whom to trust for `https://` (none: https fails).
    pub tls: Option<TlsClientConfig>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            max_in_flight: 4,
            min_start_gap: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(5),
            max_redirects: DEFAULT_REDIRECT_LIMIT,
            limits: ResponseLimits::default(),
            resolve: system_resolve,
            tls: None,
        }
    }
}

/// Which waiting fetches start first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Someone waits on the answer (a room's id, before it can join the
    /// right room): starts before every waiting `Background` fetch.
    Urgent,
    /// Routine (a periodic status read): starts when no urgent fetch waits.
    Background,
}

/// What a fetch's callback gets.
pub type Callback = Box<dyn FnOnce(&mut Reactor, Result<Response, Error>)>;

/// Fetches URLs on one reactor (see the module docs). Cheap to clone: the
/// clones share the queue and the limits.
#[derive(Clone)]
pub struct Fetcher {
    shared: Rc<RefCell<Shared>>,
}

struct Shared {
    config: FetchConfig,
    /// Where lookup threads send their answers.
    lookups: LoopSender<Lookup>,
    jobs: HashMap<u64, Job>,
    /// Fetches not started yet, oldest first, by priority.
    urgent: VecDeque<u64>,
    background: VecDeque<u64>,
    /// The backlog was reported (see [`BACKLOG_NOTICE`]); cleared once the
    /// queue is empty again.
    backlog_noticed: bool,
    /// Fetches holding a slot.
    running: usize,
    next_id: u64,
    last_start: Option<Instant>,
    /// Set while a timer waits for the start gap to pass.
    pacer: Option<TimerHandle>,
}

/// Fetches waiting at once that earn one log line (per backlog, not per
/// fetch): enough that the last waits minutes, as when a daemon starts
/// with thousands of rooms.
const BACKLOG_NOTICE: usize = 1000;

/// A lookup thread's answer.
struct Lookup {
    job: u64,
    addresses: Result<Vec<SocketAddr>, String>,
}

/// One fetch.
struct Job {
    /// The request being sent: the caller's, or the latest redirect's.
    request: Request,
    redirects: Redirects,
    /// How long it may run once started.
    timeout: Duration,
    /// Set when it starts: when its time is up, and the timer for that.
    deadline: Option<(Instant, TimerHandle)>,
    /// Taken when the callback is called.
    callback: Option<Callback>,
    stage: Stage,
}

/// Where a fetch is, with what that stage needs.
enum Stage {
    /// Queued for a slot, no clock running.
    Waiting { since: Instant },
    /// A helper thread is looking up the host.
    Resolving,
    /// Answered already (its deadline passed mid-lookup), but its lookup
    /// thread still runs: the slot is held until that thread is done.
    Abandoned,
    /// Connecting to `addr` or exchanging on `conn`; the `spare` addresses
    /// are tried if this one cannot be connected to (in time: the
    /// `connect_timer`, until `connected`).
    Exchanging {
        conn: EntryToken,
        addr: SocketAddr,
        connected: bool,
        connect_timer: Option<TimerHandle>,
        spare: VecDeque<SocketAddr>,
        exchange: Box<Exchange>,
    },
}

/// A connection started by [`Fetcher::open`], and the addresses left.
struct Opened {
    conn: EntryToken,
    addr: SocketAddr,
    connect_timer: Option<TimerHandle>,
    spare: VecDeque<SocketAddr>,
}

/// How long one address may take to connect, of `addresses_left` (it
/// included) sharing the `remaining` time: `connect_timeout`, and no more
/// than an even share, so that an address that drops packets leaves the
/// others their turn. `None` when that is all the time left: the fetch's
/// own deadline ends it then.
fn connect_budget(connect_timeout: Duration, remaining: Duration, addresses_left: usize) -> Option<Duration> {
    let share = remaining / u32::try_from(addresses_left.max(1)).unwrap_or(u32::MAX);
    let budget = connect_timeout.min(share);
    (budget < remaining).then_some(budget)
}

impl Fetcher {
    /// A fetcher for `reactor`.
    ///
    /// # Panics
    ///
    /// If `config.max_in_flight` is 0: nothing could ever start.
    pub fn new(reactor: &mut Reactor, config: FetchConfig) -> Fetcher {
        assert!(config.max_in_flight > 0, "FetchConfig::max_in_flight must be at least 1");
        let shared = Rc::new_cyclic(|weak: &std::rc::Weak<RefCell<Shared>>| {
            // The reactor keeps channel callbacks for its whole life: a weak
            // reference, so it does not keep a dropped fetcher alive.
            let weak = weak.clone();
            let lookups = reactor.channel(move |reactor: &mut Reactor, lookup: Lookup| {
                if let Some(shared) = weak.upgrade() {
                    Fetcher { shared }.on_lookup(reactor, lookup);
                }
            });
            RefCell::new(Shared {
                config,
                lookups,
                jobs: HashMap::new(),
                urgent: VecDeque::new(),
                background: VecDeque::new(),
                backlog_noticed: false,
                running: 0,
                next_id: 0,
                last_start: None,
                pacer: None,
            })
        });
        Fetcher { shared }
    }

    /// Fetches `request`, following redirects, and calls `callback` once
    /// with the final response (any status: see
    /// [`Response::error_for_status`]) or the error, at the latest
    /// `timeout` after the fetch starts. It waits for a slot first, as long
    /// as it takes (see the module docs), `priority` saying where in line.
    pub fn fetch(
        &self,
        reactor: &mut Reactor,
        request: Request,
        priority: Priority,
        timeout: Duration,
        callback: impl FnOnce(&mut Reactor, Result<Response, Error>) + 'static,
    ) {
        if let Err(error) = request.validate() {
            reactor.call_soon(move |reactor| callback(reactor, Err(error)));
            return;
        }
        let mut shared = self.shared.borrow_mut();
        let id = shared.next_id;
        shared.next_id += 1;
        let redirects = Redirects::new(request.url(), shared.config.max_redirects);
        let callback: Callback = Box::new(callback);
        let stage = Stage::Waiting { since: Instant::now() };
        let job = Job { request, redirects, timeout, deadline: None, callback: Some(callback), stage };
        shared.jobs.insert(id, job);
        match priority {
            Priority::Urgent => shared.urgent.push_back(id),
            Priority::Background => shared.background.push_back(id),
        }
        let waiting = shared.urgent.len() + shared.background.len();
        if waiting >= BACKLOG_NOTICE && !shared.backlog_noticed {
            shared.backlog_noticed = true;
            let config = &shared.config;
            log::info!(
                "{waiting} web requests wait their turn (at most {} at once, one start every {:?}); \
                 each gets its full timeout once it starts",
                config.max_in_flight,
                config.min_start_gap
            );
        }
        // Started from the loop, so that no callback runs inside `fetch`.
        let fetcher = self.clone();
        reactor.call_soon(move |reactor| fetcher.pump(reactor));
    }

    /// Fetches holding a slot (looking up, connecting, exchanging).
    pub fn running(&self) -> usize {
        self.shared.borrow().running
    }

    /// Fetches waiting for a slot.
    pub fn waiting(&self) -> usize {
        let shared = self.shared.borrow();
        shared.urgent.len() + shared.background.len()
    }

    /// Starts waiting fetches while slots are free and the gap allows; a
    /// fetch's clock starts here.
    fn pump(&self, reactor: &mut Reactor) {
        loop {
            let id = {
                let mut shared = self.shared.borrow_mut();
                if shared.urgent.is_empty() && shared.background.is_empty() {
                    shared.backlog_noticed = false;
                    return;
                }
                if shared.running >= shared.config.max_in_flight {
                    return;
                }
                let now = Instant::now();
                if let Some(next) = shared.last_start.map(|last| last + shared.config.min_start_gap)
                    && now < next
                {
                    if shared.pacer.is_none() {
                        let fetcher = self.clone();
                        shared.pacer = Some(reactor.call_at(next, move |reactor| {
                            fetcher.shared.borrow_mut().pacer = None;
                            fetcher.pump(reactor);
                        }));
                    }
                    return;
                }
                shared.running += 1;
                shared.last_start = Some(now);
                let id = shared.urgent.pop_front().or_else(|| shared.background.pop_front()).expect("checked");
                let job = shared.jobs.get_mut(&id).expect("a waiting fetch has its job");
                if let Stage::Waiting { since } = job.stage {
                    log::debug!("fetch {id}: starts after waiting {:?}", now - since);
                }
                let deadline = deadline_after(now, job.timeout);
                let fetcher = self.clone();
                let timer = reactor.call_at(deadline, move |reactor| fetcher.on_deadline(reactor, id));
                job.deadline = Some((deadline, timer));
                id
            };
            self.start(reactor, id);
        }
    }

    /// Sends the job's current request: looks up its host, or connects at
    /// once to an address.
    fn start(&self, reactor: &mut Reactor, id: u64) {
        let mut shared = self.shared.borrow_mut();
        let Some(job) = shared.jobs.get_mut(&id) else { return };
        let url = job.request.url();
        log::debug!("fetch {id}: {} {url}", job.request.method().as_str());
        if let Some(ip) = url.host().ip() {
            let addr = SocketAddr::new(ip, url.port());
            drop(shared);
            self.connect(reactor, id, VecDeque::from([addr]));
            return;
        }
        let host = url.host().to_string();
        let port = url.port();
        job.stage = Stage::Resolving;
        let (sender, resolve) = (shared.lookups.clone(), shared.config.resolve);
        drop(shared);
        let spawned = std::thread::Builder::new().name("barrage-dns".into()).spawn(move || {
            let addresses = resolve(&host, port).map_err(|e| format!("{host}: {e}"));
            sender.send(Lookup { job: id, addresses });
        });
        if let Err(e) = spawned {
            self.complete(reactor, id, Err(Error::Resolve(format!("cannot start a lookup thread: {e}"))));
        }
    }

    fn on_lookup(&self, reactor: &mut Reactor, lookup: Lookup) {
        let mut shared = self.shared.borrow_mut();
        let Some(job) = shared.jobs.get(&lookup.job) else { return };
        match job.stage {
            Stage::Resolving => {}
            Stage::Abandoned => {
                // Its callback was answered at the deadline; now the thread
                // is done too, and the slot is free.
                shared.jobs.remove(&lookup.job);
                shared.running -= 1;
                drop(shared);
                self.pump(reactor);
                return;
            }
            Stage::Waiting { .. } | Stage::Exchanging { .. } => return,
        }
        drop(shared);
        match lookup.addresses {
            Ok(addresses) if !addresses.is_empty() => self.connect(reactor, lookup.job, addresses.into()),
            Ok(_) => self.complete(reactor, lookup.job, Err(Error::Resolve("no addresses".into()))),
            Err(e) => self.complete(reactor, lookup.job, Err(Error::Resolve(e))),
        }
    }

    /// Opens a connection to the first of `addresses` that takes one, with
    /// a new exchange for the job's request.
    fn connect(&self, reactor: &mut Reactor, id: u64, addresses: VecDeque<SocketAddr>) {
        let (exchange, url, deadline) = {
            let shared = self.shared.borrow();
            let Some(Job { request, deadline: Some((deadline, _)), .. }) = shared.jobs.get(&id) else { return };
            (Exchange::new(request, shared.config.limits, *deadline), request.url().clone(), *deadline)
        };
        let opened = exchange.and_then(|exchange| Ok((exchange, self.open(reactor, id, &url, deadline, addresses)?)));
        match opened {
            Ok((exchange, Opened { conn, addr, connect_timer, spare })) => {
                if let Some(job) = self.shared.borrow_mut().jobs.get_mut(&id) {
                    let exchange = Box::new(exchange);
                    job.stage = Stage::Exchanging { conn, addr, connected: false, connect_timer, spare, exchange };
                }
            }
            Err(error) => self.complete(reactor, id, Err(error)),
        }
    }

    /// Starts a connection to the first of `addresses` that can be tried,
    /// timed by [`connect_budget`] unless the fetch's deadline comes first.
    fn open(
        &self,
        reactor: &mut Reactor,
        id: u64,
        url: &Url,
        deadline: Instant,
        mut addresses: VecDeque<SocketAddr>,
    ) -> Result<Opened, Error> {
        let mut last_error = Error::Connect("no address to connect to".into());
        while let Some(addr) = addresses.pop_front() {
            let (tls, connect_timeout) = {
                let shared = self.shared.borrow();
                (shared.config.tls.clone(), shared.config.connect_timeout)
            };
            match transport::open(reactor, url, addr, tls.as_ref(), self.clone(), id) {
                Ok(conn) => {
                    let now = Instant::now();
                    let budget =
                        connect_budget(connect_timeout, deadline.saturating_duration_since(now), 1 + addresses.len());
                    let connect_timer =
                        budget.and_then(|budget| reactor.set_timer(conn, now + budget, transport::CONNECT_TIMER));
                    return Ok(Opened { conn, addr, connect_timer, spare: addresses });
                }
                // This address failed at once (unreachable, say): the next.
                Err(Error::Connect(e)) => last_error = Error::Connect(e),
                Err(other) => return Err(other),
            }
        }
        Err(last_error)
    }

    /// Runs `f` on the exchange of job `id` if it is still the one on
    /// `conn`, sends what it queued, and finishes the fetch if it is over.
    /// Returns `f`'s result, `None` for a connection the job has left.
    fn with_exchange<T>(
        &self,
        reactor: &mut Reactor,
        id: u64,
        conn: EntryToken,
        f: impl FnOnce(&mut Exchange) -> T,
    ) -> Option<T> {
        let mut shared = self.shared.borrow_mut();
        let Some(Job { stage: Stage::Exchanging { conn: current, exchange, .. }, .. }) = shared.jobs.get_mut(&id)
        else {
            return None;
        };
        if *current != conn {
            return None;
        }
        let result = f(exchange);
        let mut out = Vec::new();
        if exchange.poll_transmit(&mut out) {
            reactor.send(conn, &out);
        }
        let outcome = exchange.poll_outcome();
        drop(shared);
        if let Some(outcome) = outcome {
            // Done with this connection, whatever the outcome: a graceful
            // close after a response, a quick one after an error.
            if outcome.is_ok() {
                reactor.close(conn);
            } else {
                reactor.abort(conn);
            }
            self.complete(reactor, id, outcome);
        }
        Some(result)
    }

    /// The connection of job `id` is up (its TLS handshake done, for
    /// https): its connect timer is not needed any more.
    fn on_connected(&self, reactor: &mut Reactor, id: u64, conn: EntryToken) {
        let timer = match self.shared.borrow_mut().jobs.get_mut(&id) {
            Some(Job { stage: Stage::Exchanging { conn: current, connected, connect_timer, .. }, .. })
                if *current == conn =>
            {
                *connected = true;
                connect_timer.take()
            }
            _ => return,
        };
        if let Some(timer) = timer {
            reactor.remove_timeout(timer);
        }
        self.with_exchange(reactor, id, conn, Exchange::handle_connected);
    }

    /// The connection of job `id` did not come up within its budget: drop
    /// it and move on, as if it had failed.
    fn on_connect_timeout(&self, reactor: &mut Reactor, id: u64, conn: EntryToken) {
        let connecting = matches!(
            self.shared.borrow().jobs.get(&id),
            Some(Job { stage: Stage::Exchanging { conn: current, connected: false, .. }, .. }) if *current == conn
        );
        if connecting {
            reactor.abort(conn);
            let error = io::Error::new(io::ErrorKind::TimedOut, "no connection within its time");
            self.on_transport_error(reactor, id, conn, error);
        }
    }

    /// The connection of job `id` failed with `error`: before it was up,
    /// try the next address; after, the exchange ends.
    fn on_transport_error(&self, reactor: &mut Reactor, id: u64, conn: EntryToken, error: io::Error) {
        let (spare, url, deadline) = {
            let mut shared = self.shared.borrow_mut();
            let Some(job) = shared.jobs.get_mut(&id) else { return };
            let url = job.request.url().clone();
            let Some((deadline, _)) = job.deadline else { return };
            match &mut job.stage {
                Stage::Exchanging { conn: current, addr, connected, spare, .. } if *current == conn => {
                    log::debug!("fetch {id}: connection to {addr} failed: {error}");
                    if *connected || spare.is_empty() {
                        let error = if *connected {
                            Error::Io(error.to_string())
                        } else {
                            Error::Connect(format!("{addr}: {error}"))
                        };
                        drop(shared);
                        self.with_exchange(reactor, id, conn, |exchange| exchange.handle_error(error));
                        return;
                    }
                    (std::mem::take(spare), url, deadline)
                }
                _ => return,
            }
        };
        match self.open(reactor, id, &url, deadline, spare) {
            Ok(next) => {
                if let Some(Job { stage: Stage::Exchanging { conn, addr, connect_timer, spare, .. }, .. }) =
                    self.shared.borrow_mut().jobs.get_mut(&id)
                {
                    (*conn, *addr, *connect_timer, *spare) = (next.conn, next.addr, next.connect_timer, next.spare);
                }
            }
            Err(error) => self.complete(reactor, id, Err(error)),
        }
    }

    /// The deadline of job `id` passed.
    fn on_deadline(&self, reactor: &mut Reactor, id: u64) {
        let now = Instant::now();
        let mut shared = self.shared.borrow_mut();
        let Some(job) = shared.jobs.get_mut(&id) else { return };
        match &mut job.stage {
            // The clock starts with the fetch: a waiting one has no timer.
            Stage::Waiting { .. } | Stage::Abandoned => {}
            Stage::Resolving => {
                job.stage = Stage::Abandoned;
                let callback = job.callback.take();
                drop(shared);
                if let Some(callback) = callback {
                    callback(reactor, Err(Error::Timeout));
                }
            }
            Stage::Exchanging { conn, .. } => {
                let conn = *conn;
                drop(shared);
                self.with_exchange(reactor, id, conn, |exchange| exchange.handle_timeout(now));
            }
        }
    }

    /// An exchange of job `id` ended: follow a redirect, or finish.
    fn complete(&self, reactor: &mut Reactor, id: u64, outcome: Result<Response, Error>) {
        let next = {
            let mut shared = self.shared.borrow_mut();
            let Some(job) = shared.jobs.get_mut(&id) else { return };
            outcome.and_then(|response| job.redirects.next(&job.request, response))
        };
        match next {
            Ok(Next::Follow(request)) => {
                log::debug!("fetch {id}: redirected to {}", request.url());
                if let Some(job) = self.shared.borrow_mut().jobs.get_mut(&id) {
                    job.request = request;
                }
                self.start(reactor, id);
            }
            Ok(Next::Done(response)) => self.finish(reactor, id, Ok(response)),
            Err(error) => self.finish(reactor, id, Err(error)),
        }
    }

    /// Job `id` is over: free its slot, start the next, call back.
    fn finish(&self, reactor: &mut Reactor, id: u64, result: Result<Response, Error>) {
        let Some(job) = self.shared.borrow_mut().jobs.remove(&id) else { return };
        self.shared.borrow_mut().running -= 1;
        if let Some((_, timer)) = job.deadline {
            reactor.remove_timeout(timer);
        }
        match &result {
            Ok(response) => log::debug!("fetch {id}: {} from {}", response.status, response.url),
            Err(error) => log::debug!("fetch {id}: {error}"),
        }
        self.pump(reactor);
        if let Some(callback) = job.callback {
            callback(reactor, result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn each_address_gets_the_connect_timeout_or_its_share_of_the_time_left() {
        // Plenty of time: the connect timeout bounds each address.
        assert_eq!(connect_budget(2 * SECOND, 10 * SECOND, 2), Some(2 * SECOND));
        assert_eq!(connect_budget(2 * SECOND, 10 * SECOND, 1), Some(2 * SECOND));
        // Little time: an even share, so the next address has its turn.
        assert_eq!(connect_budget(5 * SECOND, 6 * SECOND, 3), Some(2 * SECOND));
        assert_eq!(connect_budget(5 * SECOND, SECOND, 2), Some(SECOND / 2));
        // The last address with no more than the time left: the fetch's
        // deadline ends it, no timer of its own.
        assert_eq!(connect_budget(5 * SECOND, 3 * SECOND, 1), None);
        assert_eq!(connect_budget(5 * SECOND, Duration::ZERO, 2), None);
        assert_eq!(connect_budget(5 * SECOND, SECOND, 0), None, "no address left is one");
    }
}

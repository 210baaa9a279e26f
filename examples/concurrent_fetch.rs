//! The tutorial's gevent example: fetch several URLs at once on one thread.
//!
//! What it shows: concurrency without threads. gevent spawned a greenlet per
//! URL and `joinall` waited for them; here each fetch is a [`Dispatcher`]
//! connection (`Reactor::connect`), and "waiting for all of them" is a
//! counter that a callback checks when a fetch finishes. Then the same
//! fetches again with a pool of 2, like `gevent.pool.Pool(2)`: never more
//! than 2 in flight, and when one finishes the next one starts.
//!
//! So that it runs offline, the URLs point at small HTTP servers on the same
//! loop, on free loopback ports. Each answers with a body of its own size
//! after its own artificial delay (a connection timer, not a sleep: a
//! sleeping server would freeze the whole loop, fetches included).
//!
//! Watch the output: round 1 takes about as long as the slowest server,
//! round 2 longer, and each round reports the most fetches it had in flight.
//!
//! ```text
//! cargo run --example concurrent_fetch
//! RUST_LOG=debug cargo run --example concurrent_fetch   # the reactor's side too
//! ```
//!
//! It exits with status 0 when every fetch succeeded.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use barrage::reactor::{Context, Dispatcher, Reactor};
use mio::net::TcpListener;

/// The local "web sites": body size in bytes, and delay before answering.
const SITES: [(usize, Duration); 4] = [
    (48_000, Duration::from_millis(300)),
    (12_000, Duration::from_millis(100)),
    (96_000, Duration::from_millis(200)),
    (3_000, Duration::from_millis(50)),
];

/// Round 2's limit: `gevent.pool.Pool(2)`.
const POOL_SIZE: usize = 2;

/// The whole program gives up after this long, so it always ends.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// The longest response (or request) head we accept.
const MAX_HEAD: usize = 8 * 1024;

// ===========================================================================
// The servers: answer every request with `body_size` bytes after `delay`.
// ===========================================================================

struct SlowPage {
    body_size: usize,
    delay: Duration,
    /// A request has come in and its answer is scheduled.
    answering: bool,
}

/// A connection timer's tag; this dispatcher has only one kind of timer.
const ANSWER_NOW: u64 = 1;

impl Dispatcher for SlowPage {
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        if self.answering {
            return data.len(); // one request per connection; ignore the rest
        }
        // Wait for the end of the request's head (a GET has no body).
        // Consuming nothing makes the reactor keep the bytes for next time.
        if !data.windows(4).any(|w| w == b"\r\n\r\n") {
            if data.len() > MAX_HEAD {
                ctx.close();
            }
            return 0;
        }
        self.answering = true;
        // Not `std::thread::sleep(delay)`: that would stop the whole loop.
        // A timer lets every other connection go on meanwhile.
        ctx.set_timer(self.delay, ANSWER_NOW);
        data.len()
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_>, _tag: u64) {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.body_size
        );
        let body: Vec<u8> = (0..self.body_size).map(|i| b'a' + (i % 26) as u8).collect();
        ctx.send(head.as_bytes());
        ctx.send(&body);
        // Graceful: the reactor writes everything queued, then closes.
        ctx.close();
    }

    /// A client that shuts down its sending side after the request still
    /// wants the answer; only close early if no request came.
    fn handle_eof(&mut self, ctx: &mut Context<'_>) {
        if !self.answering {
            ctx.close();
        }
    }
}

/// Starts one server on a free loopback port and returns its address.
fn start_server(reactor: &mut Reactor, body_size: usize, delay: Duration) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = listener.local_addr()?;
    reactor.listen(listener, move |reactor: &mut Reactor, stream, peer| {
        if let Err(e) = reactor.add_stream(stream, SlowPage { body_size, delay, answering: false }) {
            log::warn!("server: could not attach {peer}: {e}");
        }
    })?;
    Ok(addr)
}

// ===========================================================================
// The fetcher: one Dispatcher connection per URL.
// ===========================================================================

#[derive(Clone)]
struct Url {
    addr: SocketAddr,
    path: String,
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.addr, self.path)
    }
}

/// Where a fetch is in the response.
enum Progress {
    /// Waiting for the status line and headers.
    Head,
    /// Counting body bytes; we need the size, not the bytes.
    Body { expected: usize, received: usize },
}

/// Fetches one URL and reports the body size to its pool.
struct Fetch {
    url: Url,
    pool: Rc<RefCell<Pool>>,
    progress: Progress,
    /// How it ended: the body size, or what went wrong.
    outcome: Option<Result<usize, String>>,
}

impl Fetch {
    fn fail(&mut self, ctx: &mut Context<'_>, error: String) {
        self.outcome.get_or_insert(Err(error));
        ctx.abort();
    }
}

/// The body length of a `200 OK` response, from its head.
fn parse_response_head(head: &str) -> Result<usize, String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let (Some(version), Some(status)) = (words.next(), words.next()) else {
        return Err(format!("bad status line {status_line:?}"));
    };
    if !version.starts_with("HTTP/1.") || status != "200" {
        return Err(format!("server said {status_line:?}"));
    }
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("Content-Length")
        {
            return value.trim().parse().map_err(|_| format!("bad Content-Length {value:?}"));
        }
    }
    // A body that ends when the server closes is legal HTTP/1.1, but this
    // small fetcher insists on knowing the size up front.
    Err("no Content-Length".into())
}

impl Dispatcher for Fetch {
    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.url.path, self.url.addr);
        ctx.send(request.as_bytes());
    }

    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let mut consumed = 0;
        if let Progress::Head = self.progress {
            let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                if data.len() > MAX_HEAD {
                    self.fail(ctx, "response head too long".into());
                }
                // Not the whole head yet: consume nothing, the reactor
                // keeps the bytes and hands them back with the next ones.
                return 0;
            };
            let head = String::from_utf8_lossy(&data[..end]);
            match parse_response_head(&head) {
                Ok(expected) => self.progress = Progress::Body { expected, received: 0 },
                Err(e) => {
                    self.fail(ctx, e);
                    return data.len();
                }
            }
            consumed = end + 4;
        }
        if let Progress::Body { expected, received } = &mut self.progress {
            // Count the body bytes (never more than announced) and drop them.
            let take = (data.len() - consumed).min(*expected - *received);
            *received += take;
            consumed += take;
            if received == expected {
                self.outcome = Some(Ok(*expected));
                ctx.close();
            }
        }
        consumed
    }

    fn handle_eof(&mut self, ctx: &mut Context<'_>) {
        // The server closed before the whole body came. (A complete body
        // closes the connection from our side first, in `handle_read`.)
        self.fail(ctx, "connection closed before the body was complete".into());
    }

    fn handle_error(&mut self, _ctx: &mut Context<'_>, error: io::Error) {
        self.outcome.get_or_insert(Err(error.to_string()));
    }

    /// Every connection ends here, whatever happened: the one place that
    /// reports to the pool.
    fn handle_close(&mut self, ctx: &mut Context<'_>) {
        let outcome = self.outcome.take().unwrap_or_else(|| Err("closed".into()));
        finished(ctx.reactor(), &self.pool, &self.url, outcome);
    }
}

// ===========================================================================
// The pool: at most `limit` fetches in flight.
// ===========================================================================

/// What a finished round hands to the code that waits for it.
struct Report {
    urls: usize,
    bytes: usize,
    failures: usize,
    max_in_flight: usize,
    elapsed: Duration,
}

type OnDone = Box<dyn FnOnce(&mut Reactor, Report)>;

/// gevent's `Pool(n)`, or with no limit, `spawn` for all plus `joinall`.
struct Pool {
    limit: usize,
    total: usize,
    /// URLs not started yet.
    waiting: VecDeque<Url>,
    in_flight: usize,
    max_in_flight: usize,
    /// Started or not, fetches that have not finished: `joinall`'s count.
    unfinished: usize,
    bytes: usize,
    failures: usize,
    started: Instant,
    on_done: Option<OnDone>,
}

/// Fetches every URL, at most `limit` at a time, then calls `on_done`.
fn fetch_all(
    reactor: &mut Reactor,
    urls: Vec<Url>,
    limit: usize,
    on_done: impl FnOnce(&mut Reactor, Report) + 'static,
) {
    let pool = Rc::new(RefCell::new(Pool {
        limit,
        total: urls.len(),
        unfinished: urls.len(),
        waiting: urls.into(),
        in_flight: 0,
        max_in_flight: 0,
        bytes: 0,
        failures: 0,
        started: Instant::now(),
        on_done: Some(Box::new(on_done)),
    }));
    start_more(reactor, &pool);
}

/// Starts waiting fetches while the pool has room.
fn start_more(reactor: &mut Reactor, pool: &Rc<RefCell<Pool>>) {
    loop {
        let url = {
            let mut p = pool.borrow_mut();
            if p.in_flight >= p.limit {
                break;
            }
            let Some(url) = p.waiting.pop_front() else { break };
            p.in_flight += 1;
            p.max_in_flight = p.max_in_flight.max(p.in_flight);
            url
        };
        let fetch = Fetch { url: url.clone(), pool: pool.clone(), progress: Progress::Head, outcome: None };
        // Returns at once: the connect completes later, inside the loop.
        if let Err(e) = reactor.connect(url.addr, fetch) {
            // No socket at all (out of descriptors, say). Report it from the
            // loop like every other outcome, so callbacks never nest.
            let pool = pool.clone();
            reactor.call_soon(move |reactor| finished(reactor, &pool, &url, Err(e.to_string())));
        }
    }
}

/// One fetch is over: print it, start the next, and end the round after
/// the last one.
fn finished(reactor: &mut Reactor, pool: &Rc<RefCell<Pool>>, url: &Url, outcome: Result<usize, String>) {
    let done = {
        let mut p = pool.borrow_mut();
        match &outcome {
            Ok(bytes) => {
                println!("{url}: {bytes} bytes");
                p.bytes += bytes;
            }
            Err(e) => {
                println!("{url}: failed: {e}");
                p.failures += 1;
            }
        }
        p.in_flight -= 1;
        p.unfinished -= 1;
        p.unfinished == 0
    };
    if !done {
        start_more(reactor, pool);
        return;
    }
    let (report, on_done) = {
        let mut p = pool.borrow_mut();
        let report = Report {
            urls: p.total,
            bytes: p.bytes,
            failures: p.failures,
            max_in_flight: p.max_in_flight,
            elapsed: p.started.elapsed(),
        };
        (report, p.on_done.take())
    };
    if let Some(on_done) = on_done {
        on_done(reactor, report);
    }
}

// ===========================================================================
// The program: start the servers, run both rounds, stop.
// ===========================================================================

fn print_report(round: u32, report: &Report) {
    println!(
        "round {round} done: {} urls, {} bytes, {} failed, in {} ms, max in flight {}",
        report.urls,
        report.bytes,
        report.failures,
        report.elapsed.as_millis(),
        report.max_in_flight
    );
}

fn main() -> ExitCode {
    simple_logger::SimpleLogger::new().with_level(log::LevelFilter::Warn).env().init().ok();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("concurrent_fetch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut reactor = Reactor::new().map_err(|e| e.to_string())?;
    let mut urls = Vec::new();
    for (body_size, delay) in SITES {
        let addr =
            start_server(&mut reactor, body_size, delay).map_err(|e| format!("could not start a server: {e}"))?;
        let url = Url { addr, path: "/".into() };
        println!("serving {url} : {body_size} bytes after {} ms", delay.as_millis());
        urls.push(url);
    }

    // Round 2 starts from round 1's "all done" callback, and stops the loop
    // from its own: the program's control flow is a chain of callbacks.
    let failures = Rc::new(RefCell::new(None));
    let failures2 = failures.clone();
    println!("round 1: all at once, like gevent.spawn for each URL and joinall");
    fetch_all(&mut reactor, urls.clone(), usize::MAX, move |reactor, report| {
        print_report(1, &report);
        println!("round 2: a pool of {POOL_SIZE}, like gevent.pool.Pool({POOL_SIZE})");
        fetch_all(reactor, urls, POOL_SIZE, move |reactor, report2| {
            print_report(2, &report2);
            *failures2.borrow_mut() = Some(report.failures + report2.failures);
            reactor.stop();
        });
    });

    // A watchdog, so a server that never answers cannot hang us forever.
    reactor.call_later(GIVE_UP_AFTER, |reactor| reactor.stop());
    reactor.run().map_err(|e| e.to_string())?;

    match *failures.borrow() {
        Some(0) => Ok(()),
        Some(n) => Err(format!("{n} fetches failed")),
        None => Err(format!("gave up after {} s", GIVE_UP_AFTER.as_secs())),
    }
}

//! A chain of HTTP/1.1 requests on one loop: the Tornado "WebQQ
//! HTTPStream" pattern, on barrage's own HTTP client.
//!
//! What it shows:
//!
//! - **A chain of steps** where each response's *read-back function* decides
//!   what comes next: the next request, an optional delay before it (a timer
//!   from `call_later`), and the function that will read *its* response. The
//!   WebQQ client worked like this: log in, get a token, poll with it,
//!   log out.
//! - **The client the daemon uses**, [`Fetcher`]: each request goes out on a
//!   connection of its own, the response is decoded as it arrives (however
//!   the reads split it), and a deadline per request bounds the wait. The
//!   callback gets the response or a typed error. Under it,
//!   `barrage::http::Exchange` is a sans-IO state machine: the socket work
//!   is the reactor's, the HTTP rules are the exchange's.
//! - **A tiny HTTP/1.1 server** on the same loop (a listener and a
//!   `Dispatcher`), so the example runs offline. It reads requests with the
//!   same library's `http::server::parse_request_head`: `handle_read`
//!   returns 0 ("consumed nothing") until a whole request is there, and the
//!   reactor keeps the bytes until then.
//!
//! The chain: `GET /login` returns a token; 100 ms later `POST /poll` sends
//! the token and gets a message; `POST /logout` with the token ends the
//! session. Client and server share one thread: while the client waits, the
//! server works.
//!
//! ```text
//! cargo run --example http_chain
//! RUST_LOG=debug cargo run --example http_chain    # the reactor's side too
//! ```
//!
//! It exits with status 0 when the chain completes, 1 if a step fails.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use barrage::fetch::{FetchConfig, Fetcher, Priority};
use barrage::http::server::{parse_request_head, write_response};
use barrage::http::{Request, Response, Url};
use barrage::reactor::{Context, Dispatcher, Reactor};
use mio::net::TcpListener;

/// How long step 2 waits after step 1 (WebQQ waited between polls too).
const POLL_DELAY: Duration = Duration::from_millis(100);

/// Each request must be answered within this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole chain gives up after this long, so the example always ends.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// Limits for what the server accepts from a client.
const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: u64 = 64 * 1024;

// ===========================================================================
// The chain: each response's read-back function picks the next request.
// ===========================================================================

/// What the steps share: the server's address and the WebQQ session.
struct Session {
    base: Url,
    token: Option<String>,
}

impl Session {
    fn url(&self, path: &str) -> Result<Url, String> {
        self.base.append_path(path).map_err(|e| e.to_string())
    }
}

/// A read-back function: reads one response and decides what comes next
/// (`None`: the chain is finished).
type ReadBack = fn(&mut Session, &Response) -> Result<Option<Next>, String>;

/// The next step: a request, how long to wait before sending it, and the
/// read-back function for its response.
struct Next {
    request: Request,
    delay: Duration,
    read_back: ReadBack,
}

fn expect_ok(response: &Response) -> Result<(), String> {
    match response.status {
        200 => Ok(()),
        status => Err(format!("server said {status} {:?}: {:?}", response.reason, response.text())),
    }
}

/// A form post, as WebQQ sent its token.
fn post(url: Url, body: String) -> Request {
    Request::post(url, body).header("Content-Type", "application/x-www-form-urlencoded")
}

/// Step 1's read-back: keep the token, poll with it after a pause.
fn after_login(session: &mut Session, response: &Response) -> Result<Option<Next>, String> {
    expect_ok(response)?;
    let token = response.text();
    println!("  logged in, token {token:?}");
    let request = post(session.url("/poll")?, format!("token={token}"));
    session.token = Some(token);
    Ok(Some(Next { request, delay: POLL_DELAY, read_back: after_poll }))
}

/// Step 2's read-back: show the message, then log out of the session.
fn after_poll(session: &mut Session, response: &Response) -> Result<Option<Next>, String> {
    expect_ok(response)?;
    println!("  message {:?}", response.text());
    let token = session.token.as_deref().ok_or("no session to log out of")?;
    let request = post(session.url("/logout")?, format!("token={token}"));
    Ok(Some(Next { request, delay: Duration::ZERO, read_back: after_logout }))
}

/// Step 3's read-back: the end of the chain.
fn after_logout(session: &mut Session, response: &Response) -> Result<Option<Next>, String> {
    expect_ok(response)?;
    println!("  logged out: {:?}", response.text());
    session.token = None;
    Ok(None)
}

/// The chain's state, shared by the callbacks that carry it forward.
struct Chain {
    fetcher: Fetcher,
    session: Session,
    steps: u32,
    started: Instant,
    /// Set when the chain ends; `None` after `run()` means we gave up.
    outcome: Option<Result<(), String>>,
}

/// "POST /poll": what the step lines print.
fn describe(request: &Request) -> String {
    format!("{} {}", request.method().as_str(), request.url().target())
}

/// Runs step `next`, now or after its delay.
fn schedule(reactor: &mut Reactor, chain: Rc<RefCell<Chain>>, next: Next) {
    let step = {
        let mut chain = chain.borrow_mut();
        chain.steps += 1;
        chain.steps
    };
    if next.delay.is_zero() {
        send(reactor, chain, step, next, None);
    } else {
        println!("step {step}: waiting {} ms before {}", next.delay.as_millis(), describe(&next.request));
        let scheduled = Instant::now();
        // A timer, not a sleep: the loop goes on serving sockets meanwhile.
        reactor.call_later(next.delay, move |reactor| send(reactor, chain, step, next, Some(scheduled)));
    }
}

/// Sends step `step`'s request; its response goes to its read-back function.
fn send(reactor: &mut Reactor, chain: Rc<RefCell<Chain>>, step: u32, next: Next, scheduled: Option<Instant>) {
    match scheduled {
        Some(at) => println!("step {step}: {} (after {} ms)", describe(&next.request), at.elapsed().as_millis()),
        None => println!("step {step}: {}", describe(&next.request)),
    }
    let fetcher = chain.borrow().fetcher.clone();
    let read_back = next.read_back;
    fetcher.fetch(reactor, next.request, Priority::Urgent, STEP_TIMEOUT, move |reactor, result| {
        let decision = result.map_err(|e| e.to_string()).and_then(|response| {
            println!("step {step}: {} {}", response.status, response.reason);
            read_back(&mut chain.borrow_mut().session, &response)
        });
        match decision {
            Ok(Some(next)) => schedule(reactor, chain, next),
            Ok(None) => finish(reactor, &chain, Ok(())),
            Err(e) => finish(reactor, &chain, Err(format!("step {step}: {e}"))),
        }
    });
}

fn finish(reactor: &mut Reactor, chain: &Rc<RefCell<Chain>>, outcome: Result<(), String>) {
    chain.borrow_mut().outcome = Some(outcome);
    reactor.stop();
}

// ===========================================================================
// The server: a Dispatcher per connection, one request per connection.
// ===========================================================================

struct HttpConnection {
    /// The token `/login` hands out and `/poll` checks.
    token: Rc<String>,
}

impl HttpConnection {
    /// Picks the answer to a request: status and body.
    fn route(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let has_token = body == format!("token={}", self.token).as_bytes();
        match (method, path) {
            ("GET", "/login") => (200, self.token.to_string()),
            ("POST", "/poll") if has_token => (200, "hello from the poll".to_string()),
            ("POST", "/logout") if has_token => (200, "bye".to_string()),
            ("POST", "/poll" | "/logout") => (403, "bad token".to_string()),
            (_, "/login" | "/poll" | "/logout") => (405, String::new()),
            _ => (404, String::new()),
        }
    }
}

/// Queues a complete response and closes once it is written.
fn respond(ctx: &mut Context<'_>, status: u16, body: &str) {
    let mut response = Vec::new();
    write_response(&mut response, status, &[("Content-Type", "text/plain")], body.as_bytes(), false);
    ctx.send(&response);
    // Graceful: the reactor writes the queued response first, then closes.
    // One request per connection keeps this server short; we said so with
    // `Connection: close`, as the client did.
    ctx.close();
}

impl Dispatcher for HttpConnection {
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let head = match parse_request_head(data, MAX_HEAD) {
            // Not a whole request head yet. Consuming nothing tells the
            // reactor to keep these bytes and hand them back, followed by
            // the next ones: partial reads cost us nothing but this line.
            Ok(None) => return 0,
            Ok(Some(head)) => head,
            Err(e) => {
                log::warn!("server: bad request: {e:?}");
                respond(ctx, e.status(), "bad request");
                return data.len();
            }
        };
        let body_len = head.content_length.unwrap_or(0);
        if head.chunked || body_len > MAX_BODY {
            respond(ctx, if head.chunked { 411 } else { 413 }, "");
            return data.len();
        }
        let end = head.len + body_len as usize;
        if data.len() < end {
            return 0; // the body is still on its way
        }
        let (status, body) = self.route(head.method, head.path(), &data[head.len..end]);
        log::info!("server: {} {} -> {status}", head.method, head.target);
        respond(ctx, status, &body);
        end
    }
}

/// Starts the server on a free loopback port and returns its address.
fn start_server(reactor: &mut Reactor) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = listener.local_addr()?;
    // Any string nobody could guess from the client's code will do.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let token = Rc::new(format!("tok-{:08x}", nanos ^ std::process::id()));
    reactor.listen(listener, move |reactor: &mut Reactor, stream, peer| {
        if let Err(e) = reactor.add_stream(stream, HttpConnection { token: token.clone() }) {
            log::warn!("server: could not attach {peer}: {e}");
        }
    })?;
    Ok(addr)
}

fn main() -> ExitCode {
    simple_logger::SimpleLogger::new().with_level(log::LevelFilter::Warn).env().init().ok();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_chain: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut reactor = Reactor::new().map_err(|e| e.to_string())?;
    let server = start_server(&mut reactor).map_err(|e| format!("could not start the server: {e}"))?;
    println!("server listening on {server}");

    let base = Url::parse(&format!("http://{server}/")).map_err(|e| e.to_string())?;
    let session = Session { base, token: None };
    let first = Next { request: Request::get(session.url("/login")?), delay: Duration::ZERO, read_back: after_login };
    // The defaults: up to 4 requests at once, starts at least 50 ms apart
    // (polite to real servers; here it makes step 3 wait a little).
    let fetcher = Fetcher::new(&mut reactor, FetchConfig::default());
    let chain = Rc::new(RefCell::new(Chain { fetcher, session, steps: 0, started: Instant::now(), outcome: None }));
    // Start from inside the loop, so that everything the chain does (even
    // failing at once and calling `stop`) happens while `run()` runs: a
    // `stop()` made before `run()` would be forgotten.
    let starter = chain.clone();
    reactor.call_soon(move |reactor| schedule(reactor, starter, first));

    // A watchdog, so a server that never answers cannot hang us forever.
    reactor.call_later(GIVE_UP_AFTER, |reactor| reactor.stop());
    reactor.run().map_err(|e| e.to_string())?;

    let chain = chain.borrow();
    match &chain.outcome {
        Some(Ok(())) => {
            println!("chain finished: {} steps in {} ms", chain.steps, chain.started.elapsed().as_millis());
            Ok(())
        }
        Some(Err(e)) => Err(e.clone()),
        None => Err(format!("gave up after {} s", GIVE_UP_AFTER.as_secs())),
    }
}

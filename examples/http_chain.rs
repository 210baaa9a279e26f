//! A chain of HTTP/1.1 requests on raw handlers: the Tornado "WebQQ
//! HTTPStream" pattern.
//!
//! What it shows:
//!
//! - **Driving a socket yourself** with Tornado's `add_handler`: connect a
//!   `mio::net::TcpStream`, wait for it to become writable (that is how a
//!   non-blocking connect reports completion), write the request, switch the
//!   interest to readable with `update_handler`, read the response across as
//!   many events as it takes, then `remove_handler`.
//! - **A chain of steps** where each response's *read-back function* decides
//!   what comes next: the next request, an optional delay before it (a timer
//!   from `call_later`), and the function that will read *its* response. The
//!   WebQQ client worked like this: log in, get a token, poll with it,
//!   log out.
//! - **A tiny HTTP/1.1 server** on the same loop (a listener and a
//!   `Dispatcher`), so the example runs offline. It handles requests that
//!   arrive in pieces: `handle_read` returns 0 ("consumed nothing") until a
//!   whole request is there, and the reactor keeps the bytes until then.
//!
//! The chain: `GET /login` returns a token; 100 ms later `POST /poll` sends
//! the token and gets a message; `POST /logout` with the token ends the
//! session. Client and
//! server share one thread: while the client waits, the server works.
//!
//! ```text
//! cargo run --example http_chain
//! RUST_LOG=debug cargo run --example http_chain    # the reactor's side too
//! ```
//!
//! It exits with status 0 when the chain completes, 1 if a step fails.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use barrage::reactor::{Context, Dispatcher, Interest, Reactor};
use mio::net::{TcpListener, TcpStream};

/// How long step 2 waits after step 1 (WebQQ waited between polls too).
const POLL_DELAY: Duration = Duration::from_millis(100);

/// The whole chain gives up after this long, so the example always ends.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// Limits for what we accept from a peer, so it cannot grow our memory.
const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: usize = 1024 * 1024;

// ===========================================================================
// HTTP/1.1 messages: just enough of RFC 9112 for this example.
// ===========================================================================

/// The head of a request or response: the start line and the headers.
struct Head {
    start_line: String,
    headers: Vec<(String, String)>,
    /// Bytes the head took, including the blank line that ends it.
    len: usize,
}

impl Head {
    /// Parses the head at the start of `data`. `Ok(None)` means "not all
    /// here yet": the caller waits for more bytes and tries again.
    fn parse(data: &[u8]) -> Result<Option<Head>, String> {
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            // No blank line yet. Give up if it cannot come within the limit.
            return if data.len() > MAX_HEAD { Err("head too long".into()) } else { Ok(None) };
        };
        if end + 4 > MAX_HEAD {
            return Err("head too long".into());
        }
        let text = std::str::from_utf8(&data[..end]).map_err(|_| "head is not UTF-8".to_string())?;
        let mut lines = text.split("\r\n");
        let start_line = lines.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line.split_once(':').ok_or_else(|| format!("bad header line {line:?}"))?;
            // RFC 9112: no whitespace inside or after a header name.
            if name.is_empty() || name.contains(|c: char| c.is_ascii_whitespace()) {
                return Err(format!("bad header name {name:?}"));
            }
            headers.push((name.to_string(), value.trim().to_string()));
        }
        Ok(Some(Head { start_line, headers, len: end + 4 }))
    }

    /// A header's value; header names are case-insensitive.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body length from `Content-Length` (`None` if absent).
    fn content_length(&self) -> Result<Option<usize>, String> {
        if self.header("Transfer-Encoding").is_some() {
            return Err("Transfer-Encoding (chunked bodies) is not supported here".into());
        }
        let mut length = None;
        for (_, value) in self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length")) {
            // Digits only: "+5" or " 5" parse as numbers in Rust but are
            // invalid here, and disagreeing parsers are how requests get
            // smuggled past proxies.
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("bad Content-Length {value:?}"));
            }
            let n: usize = value.parse().map_err(|_| format!("Content-Length {value} too large"))?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length headers".into());
            }
            length = Some(n);
        }
        if length.is_some_and(|n| n > MAX_BODY) {
            return Err("body too large".into());
        }
        Ok(length)
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

impl Request {
    fn get(path: &str) -> Request {
        Request { method: "GET".into(), path: path.into(), body: Vec::new() }
    }

    fn post(path: &str, body: &str) -> Request {
        Request { method: "POST".into(), path: path.into(), body: body.as_bytes().to_vec() }
    }

    /// The request as bytes on the wire. `Connection: close`: one request
    /// per connection, as in this chain.
    fn to_bytes(&self, host: SocketAddr) -> Vec<u8> {
        let mut bytes = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.method,
            self.path,
            self.body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// Parses one request from the start of `data`; `Ok(None)` while it is
    /// incomplete. Returns the request and the bytes it took.
    fn parse(data: &[u8]) -> Result<Option<(Request, usize)>, String> {
        let Some(head) = Head::parse(data)? else { return Ok(None) };
        let mut parts = head.start_line.split(' ');
        let (Some(method), Some(path), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("bad request line {:?}", head.start_line));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(format!("unsupported version {version:?}"));
        }
        // A request without Content-Length has no body.
        let body_len = head.content_length()?.unwrap_or(0);
        let total = head.len + body_len;
        if data.len() < total {
            return Ok(None); // the body is still on its way
        }
        let body = data[head.len..total].to_vec();
        Ok(Some((Request { method: method.into(), path: path.into(), body }, total)))
    }
}

struct Response {
    status: u16,
    reason: String,
    body: Vec<u8>,
}

impl Response {
    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses the response in `data`; `Ok(None)` while it is incomplete.
    /// `at_eof`: the server closed the connection, so a response without
    /// `Content-Length` ends here.
    fn parse(data: &[u8], at_eof: bool) -> Result<Option<Response>, String> {
        let Some(head) = Head::parse(data)? else { return Ok(None) };
        // "HTTP/1.1 200 OK": the reason phrase may contain spaces, or be empty.
        let (version, rest) = head.start_line.split_once(' ').unwrap_or((&head.start_line, ""));
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if !version.starts_with("HTTP/1.") || code.len() != 3 {
            return Err(format!("bad status line {:?}", head.start_line));
        }
        let status = code.parse().map_err(|_| format!("bad status code {code:?}"))?;
        let body_len = match head.content_length()? {
            Some(n) => n,
            // No length: the body is everything until the server closes.
            None if at_eof => data.len() - head.len,
            None if data.len() - head.len > MAX_BODY => return Err("body too large".into()),
            None => return Ok(None),
        };
        if data.len() < head.len + body_len {
            return Ok(None);
        }
        let body = data[head.len..head.len + body_len].to_vec();
        Ok(Some(Response { status, reason: reason.to_string(), body }))
    }
}

// ===========================================================================
// The client: one request/response exchange on a raw handler.
// ===========================================================================

/// Where an exchange is.
enum Stage {
    /// The non-blocking connect is in flight; we registered for WRITABLE.
    Connecting,
    /// Writing the request; what the socket did not take waits for the next
    /// writable event.
    Writing,
    /// Request sent, interest switched to READABLE; collecting the response.
    Reading,
}

/// What the handler should do after an event.
enum Progress {
    /// Nothing yet: wait for the next event.
    Wait,
    /// The request is written: switch the interest to READABLE.
    NowRead,
    /// The exchange is over, one way or the other.
    Done(Result<Response, String>),
}

/// One request and its response, driven by readiness events. This is the
/// state machine that `Dispatcher` connections run for you; here we run it
/// by hand, as Tornado's HTTPStream did.
struct Exchange {
    stage: Stage,
    request: Vec<u8>,
    written: usize,
    received: Vec<u8>,
}

impl Exchange {
    /// Called on every readiness event of the exchange's socket.
    fn on_ready(&mut self, stream: &mut TcpStream) -> Progress {
        match self.stage {
            Stage::Connecting => self.finish_connect(stream),
            Stage::Writing => self.write(stream),
            Stage::Reading => self.read(stream),
        }
    }

    /// mio's recipe for a non-blocking connect, after a writable (or
    /// error) event.
    fn finish_connect(&mut self, stream: &mut TcpStream) -> Progress {
        // A failed connect leaves its error on the socket.
        match stream.take_error() {
            Ok(Some(e)) | Err(e) => return Progress::Done(Err(format!("connect failed: {e}"))),
            Ok(None) => {}
        }
        // No error, but maybe no connection yet either (a spurious
        // wake-up): only `peer_addr` tells. If it fails, wait; a real
        // failure comes with the next event and `take_error` sees it.
        if stream.peer_addr().is_err() {
            return Progress::Wait;
        }
        // Connected, and the socket is writable: write right away.
        self.stage = Stage::Writing;
        self.write(stream)
    }

    fn write(&mut self, stream: &mut TcpStream) -> Progress {
        while self.written < self.request.len() {
            match stream.write(&self.request[self.written..]) {
                Ok(0) => return Progress::Done(Err("the socket took no bytes".into())),
                Ok(n) => self.written += n,
                // The kernel's send buffer is full. The rest goes out on the
                // next writable event; `written` remembers where we were.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Progress::Done(Err(format!("write failed: {e}"))),
            }
        }
        self.stage = Stage::Reading;
        Progress::NowRead
    }

    fn read(&mut self, stream: &mut TcpStream) -> Progress {
        let mut chunk = [0u8; 4096];
        // Edge-triggered: read until WouldBlock, or no event may come for
        // the bytes we leave in the socket.
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    // The server closed: what we have must be the whole
                    // response.
                    return Progress::Done(match Response::parse(&self.received, true) {
                        Ok(Some(response)) => Ok(response),
                        Ok(None) => Err("connection closed before the response was complete".into()),
                        Err(e) => Err(e),
                    });
                }
                Ok(n) => {
                    self.received.extend_from_slice(&chunk[..n]);
                    // The response may arrive in any number of pieces: try
                    // to parse after each; incomplete means read on.
                    match Response::parse(&self.received, false) {
                        Ok(Some(response)) => return Progress::Done(Ok(response)),
                        Ok(None) => {}
                        Err(e) => return Progress::Done(Err(e)),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Progress::Done(Err(format!("read failed: {e}"))),
            }
        }
    }
}

/// Sends `request` to `server` on a new connection and calls `on_response`
/// with the outcome. Returns at once; the work happens in the loop.
fn fetch(
    reactor: &mut Reactor,
    server: SocketAddr,
    request: &Request,
    on_response: impl FnOnce(&mut Reactor, Result<Response, String>) + 'static,
) -> io::Result<()> {
    // Starts the connect and returns at once (the socket is non-blocking).
    let stream = TcpStream::connect(server)?;
    let mut exchange =
        Exchange { stage: Stage::Connecting, request: request.to_bytes(server), written: 0, received: Vec::new() };
    // The handler is FnMut (it runs once per event) but `on_response` may
    // run only once: keep it in an Option and take it out at the end.
    let mut on_response = Some(on_response);
    // A connect completes as "writable", so that is the first interest.
    reactor.add_handler(stream, Interest::WRITABLE, move |reactor, id, stream, _ready| {
        match exchange.on_ready(stream) {
            Progress::Wait => {}
            Progress::NowRead => {
                // Called from inside the handler's own callback: the reactor
                // applies the change when the callback returns.
                if let Err(e) = reactor.update_handler(id, Interest::READABLE) {
                    log::warn!("could not switch to reading: {e}");
                }
            }
            Progress::Done(result) => {
                // Deregisters the socket; it is dropped (closed) as soon
                // as this callback returns.
                reactor.remove_handler(id);
                if let Some(on_response) = on_response.take() {
                    on_response(reactor, result);
                }
            }
        }
    })?;
    Ok(())
}

// ===========================================================================
// The chain: each response's read-back function picks the next request.
// ===========================================================================

/// What the steps share: the WebQQ session.
#[derive(Default)]
struct Session {
    token: Option<String>,
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
        status => Err(format!("server said {status} {}: {}", response.reason, response.body_text())),
    }
}

/// Step 1's read-back: keep the token, poll with it after a pause.
fn after_login(session: &mut Session, response: &Response) -> Result<Option<Next>, String> {
    expect_ok(response)?;
    let token = response.body_text();
    println!("  logged in, token {token:?}");
    let request = Request::post("/poll", &format!("token={token}"));
    session.token = Some(token);
    Ok(Some(Next { request, delay: POLL_DELAY, read_back: after_poll }))
}

/// Step 2's read-back: show the message, then log out of the session.
fn after_poll(session: &mut Session, response: &Response) -> Result<Option<Next>, String> {
    expect_ok(response)?;
    println!("  message {:?}", response.body_text());
    let token = session.token.as_deref().ok_or("no session to log out of")?;
    let request = Request::post("/logout", &format!("token={token}"));
    Ok(Some(Next { request, delay: Duration::ZERO, read_back: after_logout }))
}

/// Step 3's read-back: the end of the chain.
fn after_logout(session: &mut Session, response: &Response) -> Result<Option<Next>, String> {
    expect_ok(response)?;
    println!("  logged out: {:?}", response.body_text());
    session.token = None;
    Ok(None)
}

/// The chain's state, shared by the callbacks that carry it forward.
struct Chain {
    server: SocketAddr,
    session: Session,
    steps: u32,
    started: Instant,
    /// Set when the chain ends; `None` after `run()` means we gave up.
    outcome: Option<Result<(), String>>,
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
        println!(
            "step {step}: waiting {} ms before {} {}",
            next.delay.as_millis(),
            next.request.method,
            next.request.path
        );
        let scheduled = Instant::now();
        // A timer, not a sleep: the loop goes on serving sockets meanwhile.
        reactor.call_later(next.delay, move |reactor| send(reactor, chain, step, next, Some(scheduled)));
    }
}

/// Sends step `step`'s request; its response goes to its read-back function.
fn send(reactor: &mut Reactor, chain: Rc<RefCell<Chain>>, step: u32, next: Next, scheduled: Option<Instant>) {
    match scheduled {
        Some(at) => println!(
            "step {step}: {} {} (after {} ms)",
            next.request.method,
            next.request.path,
            at.elapsed().as_millis()
        ),
        None => println!("step {step}: {} {}", next.request.method, next.request.path),
    }
    let server = chain.borrow().server;
    let read_back = next.read_back;
    let chain2 = chain.clone();
    let started = fetch(reactor, server, &next.request, move |reactor, result| {
        let decision = result.and_then(|response| {
            println!("step {step}: {} {}", response.status, response.reason);
            read_back(&mut chain2.borrow_mut().session, &response)
        });
        match decision {
            Ok(Some(next)) => schedule(reactor, chain2, next),
            Ok(None) => finish(reactor, &chain2, Ok(())),
            Err(e) => finish(reactor, &chain2, Err(format!("step {step}: {e}"))),
        }
    });
    if let Err(e) = started {
        finish(reactor, &chain, Err(format!("step {step}: could not connect: {e}")));
    }
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
    /// Picks the answer to a request: status, reason, body.
    fn route(&self, request: &Request) -> (u16, &'static str, String) {
        let has_token = request.body == format!("token={}", self.token).as_bytes();
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/login") => (200, "OK", self.token.to_string()),
            ("POST", "/poll") if has_token => (200, "OK", "hello from the poll".to_string()),
            ("POST", "/logout") if has_token => (200, "OK", "bye".to_string()),
            ("POST", "/poll" | "/logout") => (403, "Forbidden", "bad token".to_string()),
            (_, "/login" | "/poll" | "/logout") => (405, "Method Not Allowed", String::new()),
            _ => (404, "Not Found", String::new()),
        }
    }
}

/// Queues a complete response and closes once it is written.
fn respond(ctx: &mut Context<'_>, status: u16, reason: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    ctx.send(response.as_bytes());
    // Graceful: the reactor writes the queued response first, then closes.
    // One request per connection keeps this server short; we said so with
    // `Connection: close`.
    ctx.close();
}

impl Dispatcher for HttpConnection {
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        match Request::parse(data) {
            // Not a whole request yet. Consuming nothing tells the reactor
            // to keep these bytes and hand them back, followed by the next
            // ones: partial reads cost us nothing but this line.
            Ok(None) => 0,
            Ok(Some((request, len))) => {
                let (status, reason, body) = self.route(&request);
                log::info!("server: {} {} -> {status}", request.method, request.path);
                respond(ctx, status, reason, &body);
                len
            }
            Err(e) => {
                log::warn!("server: bad request: {e}");
                respond(ctx, 400, "Bad Request", &e);
                data.len()
            }
        }
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

    let chain = Rc::new(RefCell::new(Chain {
        server,
        session: Session::default(),
        steps: 0,
        started: Instant::now(),
        outcome: None,
    }));
    let first = Next { request: Request::get("/login"), delay: Duration::ZERO, read_back: after_login };
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

//! The reactor's HTTP client against tiny HTTP servers on the same loop,
//! on loopback with ephemeral ports: what a caller of `Fetcher::fetch` gets,
//! and when, for servers that answer, redirect, stall, overflow, cut off,
//! never answer or are not there.
//!
//! Every wait is `run_until` with a deadline; nothing sleeps.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use barrage::fetch::{FetchConfig, Fetcher, Priority};
use barrage::http::server::{RequestHead, parse_request_head, write_response};
use barrage::http::{Error, Request, Response, Url};
use barrage::reactor::{CipherPolicy, Context, Dispatcher, Reactor, TlsClientConfig, TlsServerConfig};
use mio::net::TcpListener;

mod common;

/// How long past a fetch's own deadline a test waits for its callback.
const GRACE: Duration = Duration::from_secs(5);

// ----- the servers --------------------------------------------------------------

/// What a server does with one request.
#[derive(Clone)]
enum Reply {
    /// Send these bytes, then close.
    Close(Vec<u8>),
    /// Send these bytes and keep the connection open (nothing more comes).
    Hold(Vec<u8>),
    /// Wait, then send the bytes and close.
    Later(Duration, Vec<u8>),
}

/// A complete response with a `Content-Length`.
fn ok(body: &str) -> Reply {
    Reply::Close(response(200, &[], body.as_bytes()))
}

fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_response(&mut out, status, headers, body, false);
    out
}

fn redirect(status: u16, location: &str) -> Reply {
    Reply::Close(response(status, &[("Location", location)], b""))
}

/// Picks the reply to a request: its method and target, and its body.
type Route = Rc<dyn Fn(&str, &str, &[u8]) -> Reply>;

/// What a server saw.
#[derive(Debug, Default)]
struct ServerLog {
    /// "METHOD target", in arrival order.
    requests: Vec<String>,
    /// Requests received and not answered yet, now and at most.
    unanswered: usize,
    max_unanswered: usize,
}

struct Conn {
    route: Route,
    log: Rc<RefCell<ServerLog>>,
    /// A `Later` reply waiting for its timer.
    later: Option<Vec<u8>>,
    /// A request arrived and is not answered yet.
    pending: bool,
}

impl Conn {
    fn answer(&mut self, ctx: &mut Context<'_>, head: &RequestHead<'_>, body: &[u8]) {
        {
            let mut log = self.log.borrow_mut();
            log.requests.push(format!("{} {}", head.method, head.target));
            log.unanswered += 1;
            log.max_unanswered = log.max_unanswered.max(log.unanswered);
        }
        self.pending = true;
        match (self.route)(head.method, head.target, body) {
            Reply::Close(bytes) => self.send_and_close(ctx, &bytes),
            Reply::Hold(bytes) => {
                ctx.send(&bytes);
            }
            Reply::Later(delay, bytes) => {
                self.later = Some(bytes);
                ctx.set_timer(delay, 0);
            }
        }
    }

    fn settle(&mut self) {
        if std::mem::take(&mut self.pending) {
            self.log.borrow_mut().unanswered -= 1;
        }
    }

    fn send_and_close(&mut self, ctx: &mut Context<'_>, bytes: &[u8]) {
        self.settle();
        ctx.send(bytes);
        ctx.close();
    }
}

impl Dispatcher for Conn {
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        match parse_request_head(data, 8192) {
            Ok(None) => 0,
            Ok(Some(head)) => {
                let end = head.len + head.content_length.unwrap_or(0) as usize;
                if data.len() < end {
                    return 0; // the body is on its way
                }
                self.answer(ctx, &head, &data[head.len..end]);
                data.len()
            }
            Err(e) => {
                ctx.send(&response(e.status(), &[], b""));
                ctx.close();
                data.len()
            }
        }
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_>, _tag: u64) {
        if let Some(bytes) = self.later.take() {
            self.send_and_close(ctx, &bytes);
        }
    }

    fn handle_close(&mut self, _ctx: &mut Context<'_>) {
        // A request never answered is not waiting any more.
        self.settle();
    }
}

/// Starts a server on a free loopback port of `reactor`.
fn serve(reactor: &mut Reactor, route: impl Fn(&str, &str, &[u8]) -> Reply + 'static) -> (Url, Rc<RefCell<ServerLog>>) {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Rc::new(RefCell::new(ServerLog::default()));
    let route: Route = Rc::new(route);
    let server_log = log.clone();
    reactor
        .listen(listener, move |reactor: &mut Reactor, stream, _peer| {
            let conn = Conn { route: route.clone(), log: server_log.clone(), later: None, pending: false };
            reactor.add_stream(stream, conn).unwrap();
        })
        .unwrap();
    (Url::parse(&format!("http://{addr}/")).unwrap(), log)
}

/// A loopback port nobody listens on: bound, then closed.
fn closed_port() -> Url {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    Url::parse(&format!("http://{addr}/")).unwrap()
}

/// The addresses of `hole.test`, set by the test that uses it.
static HOLE_TEST: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

/// Set to let `stuck.test` lookups finish.
static RELEASE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// A resolver for tests, so lookups need no DNS: `web.test` has two
/// addresses, the first one with nobody listening (127.0.0.2: loopback, but
/// not where the test servers bind); `stuck.test` answers only once
/// [`RELEASE`] is set (or after 20 s); `hole.test` has [`HOLE_TEST`]'s;
/// other names do not exist.
fn fake_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    match host {
        "hole.test" => Ok(HOLE_TEST.lock().unwrap().clone()),
        "web.test" => Ok(vec![SocketAddr::from(([127, 0, 0, 2], port)), SocketAddr::from(([127, 0, 0, 1], port))]),
        "stuck.test" => {
            let (released, wake) = &RELEASE;
            let guard = released.lock().unwrap();
            drop(wake.wait_timeout_while(guard, Duration::from_secs(20), |released| !*released).unwrap());
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        }
        _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
    }
}

// ----- the client side ----------------------------------------------------------

/// A fetch's outcome and when its callback ran.
type Outcome = Rc<RefCell<Option<(Result<Response, Error>, Instant)>>>;

fn submit(reactor: &mut Reactor, fetcher: &Fetcher, request: Request, timeout: Duration) -> Outcome {
    submit_as(reactor, fetcher, request, Priority::Urgent, timeout)
}

fn submit_as(
    reactor: &mut Reactor,
    fetcher: &Fetcher,
    request: Request,
    priority: Priority,
    timeout: Duration,
) -> Outcome {
    let outcome: Outcome = Rc::new(RefCell::new(None));
    let slot = outcome.clone();
    fetcher.fetch(reactor, request, priority, timeout, move |_, result| {
        assert!(slot.borrow().is_none(), "a callback runs once");
        *slot.borrow_mut() = Some((result, Instant::now()));
    });
    outcome
}

/// Fetches `request` and runs the loop until its callback ran (at the
/// latest `GRACE` after its timeout: nothing else waits for a slot).
fn fetch_within(
    reactor: &mut Reactor,
    fetcher: &Fetcher,
    request: Request,
    timeout: Duration,
) -> (Result<Response, Error>, Instant) {
    let deadline = Instant::now() + timeout;
    let outcome = submit(reactor, fetcher, request, timeout);
    let done = reactor.run_until(deadline + GRACE, |_| outcome.borrow().is_some()).unwrap();
    assert!(done, "no callback within {GRACE:?} of the deadline");
    outcome.take().unwrap()
}

fn get(reactor: &mut Reactor, fetcher: &Fetcher, url: Url, within: Duration) -> (Result<Response, Error>, Instant) {
    fetch_within(reactor, fetcher, Request::get(url), within)
}

fn setup() -> (Reactor, Fetcher) {
    let mut reactor = Reactor::new().unwrap();
    let fetcher = Fetcher::new(&mut reactor, FetchConfig { min_start_gap: Duration::ZERO, ..FetchConfig::default() });
    (reactor, fetcher)
}

// ----- tests --------------------------------------------------------------------

#[test]
fn a_chain_of_requests_each_started_by_the_last_ones_callback() {
    let (mut reactor, fetcher) = setup();
    let (base, log) = serve(&mut reactor, |method, target, body| match (method, target) {
        ("GET", "/login") => ok("tok-1"),
        ("POST", "/poll") if body == b"token=tok-1" => ok("hello"),
        ("POST", "/logout") if body == b"token=tok-1" => ok("bye"),
        _ => Reply::Close(response(403, &[], b"no")),
    });
    let timeout = Duration::from_secs(10);
    let deadline = Instant::now() + 3 * timeout;
    let texts = Rc::new(RefCell::new(Vec::new()));

    let (f, b, t) = (fetcher.clone(), base.clone(), texts.clone());
    let login = Request::get(base.append_path("/login").unwrap());
    fetcher.fetch(&mut reactor, login, Priority::Urgent, timeout, move |reactor, result| {
        let token = result.unwrap().text();
        t.borrow_mut().push(token.clone());
        let poll = Request::post(b.append_path("/poll").unwrap(), format!("token={token}"));
        let (f2, t2) = (f.clone(), t.clone());
        f.fetch(reactor, poll, Priority::Urgent, timeout, move |reactor, result| {
            t2.borrow_mut().push(result.unwrap().text());
            let logout = Request::post(b.append_path("/logout").unwrap(), format!("token={token}"));
            let t3 = t2.clone();
            let push =
                move |_: &mut Reactor, result: Result<Response, Error>| t3.borrow_mut().push(result.unwrap().text());
            f2.fetch(reactor, logout, Priority::Urgent, timeout, push);
        });
    });
    let done = reactor.run_until(deadline, |_| texts.borrow().len() == 3).unwrap();
    assert!(done, "chain stopped at {:?}; server saw {:?}", texts.borrow(), log.borrow().requests);
    assert_eq!(*texts.borrow(), ["tok-1", "hello", "bye"]);
    assert_eq!(log.borrow().requests, ["GET /login", "POST /poll", "POST /logout"]);
}

#[test]
fn redirects_are_followed_to_the_final_response() {
    let (mut reactor, fetcher) = setup();
    let (other, other_log) = serve(&mut reactor, |_, target, _| match target {
        "/final?x=1" => Reply::Close(response(200, &[("Content-Type", "text/plain")], b"arrived")),
        _ => Reply::Close(response(404, &[], b"")),
    });
    let elsewhere = other.append_path("/final?x=1").unwrap().to_string();
    let (base, log) = serve(&mut reactor, move |_, target, _| match target {
        "/6657" => redirect(301, "/room/6657"),
        "/room/6657" => redirect(302, "next"),
        "/room/next" => redirect(307, &elsewhere),
        _ => Reply::Close(response(404, &[], b"")),
    });
    let (result, _) = get(&mut reactor, &fetcher, base.append_path("/6657").unwrap(), Duration::from_secs(10));
    let response = result.unwrap();
    assert_eq!(
        (response.status, response.text(), response.header("content-type")),
        (200, "arrived".into(), Some("text/plain"))
    );
    assert_eq!(response.url, other.append_path("/final?x=1").unwrap(), "the URL that answered");
    assert_eq!(log.borrow().requests, ["GET /6657", "GET /room/6657", "GET /room/next"]);
    assert_eq!(other_log.borrow().requests, ["GET /final?x=1"]);
}

#[test]
fn a_redirect_loop_and_too_many_redirects_are_errors() {
    let (mut reactor, fetcher) = setup();
    let (base, _) = serve(&mut reactor, |_, target, _| match target {
        "/a" => redirect(302, "/b"),
        "/b" => redirect(302, "/a"),
        _ => {
            // /n/1 -> /n/2 -> ... forever.
            let n: u32 = target.trim_start_matches("/n/").parse().unwrap_or(0);
            redirect(302, &format!("/n/{}", n + 1))
        }
    });
    let (result, _) = get(&mut reactor, &fetcher, base.append_path("/a").unwrap(), Duration::from_secs(10));
    assert_eq!(result.unwrap_err(), Error::RedirectLoop(base.append_path("/a").unwrap()));
    let (result, _) = get(&mut reactor, &fetcher, base.append_path("/n/0").unwrap(), Duration::from_secs(10));
    assert_eq!(result.unwrap_err(), Error::TooManyRedirects { limit: 5 });
}

#[test]
fn a_server_that_never_answers_times_out_at_the_deadline() {
    let (mut reactor, fetcher) = setup();
    let (base, log) = serve(&mut reactor, |_, _, _| Reply::Hold(Vec::new()));
    let timeout = Duration::from_millis(300);
    let deadline = Instant::now() + timeout;
    let (result, at) = fetch_within(&mut reactor, &fetcher, Request::get(base), timeout);
    assert_eq!(result.unwrap_err(), Error::Timeout);
    assert!(at >= deadline, "not before the deadline");
    assert_eq!(log.borrow().requests.len(), 1, "the request did arrive");
    assert_eq!(fetcher.running(), 0, "the slot is free again");
}

#[test]
fn a_slow_body_times_out_at_the_deadline() {
    let (mut reactor, fetcher) = setup();
    let (base, _) = serve(&mut reactor, |_, _, _| {
        Reply::Hold(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a little".to_vec())
    });
    let timeout = Duration::from_millis(300);
    let deadline = Instant::now() + timeout;
    let (result, at) = fetch_within(&mut reactor, &fetcher, Request::get(base), timeout);
    assert_eq!(result.unwrap_err(), Error::Timeout);
    assert!(at >= deadline);
}

#[test]
fn an_oversized_body_fails_before_the_deadline() {
    let (mut reactor, _) = setup();
    let limits = barrage::http::ResponseLimits { max_body: 64 * 1024, ..Default::default() };
    let fetcher = Fetcher::new(&mut reactor, FetchConfig { limits, ..FetchConfig::default() });
    let (base, _) = serve(&mut reactor, |_, target, _| match target {
        // Announced: refused at the head.
        "/announced" => Reply::Hold(b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n".to_vec()),
        // Not announced: refused when the byte past the limit arrives.
        _ => Reply::Close([&b"HTTP/1.1 200 OK\r\n\r\n"[..], &vec![b'x'; 200 * 1024]].concat()),
    });
    let within = Duration::from_secs(10);
    for path in ["/announced", "/streamed"] {
        let deadline = Instant::now() + within;
        let (result, at) = fetch_within(&mut reactor, &fetcher, Request::get(base.append_path(path).unwrap()), within);
        assert_eq!(result.unwrap_err(), Error::BodyTooLarge { limit: 64 * 1024 }, "{path}");
        assert!(at < deadline, "{path}: failed at once, not at the deadline");
    }
}

#[test]
fn a_truncated_body_is_an_error() {
    let (mut reactor, fetcher) = setup();
    let (base, _) = serve(&mut reactor, |_, target, _| match target {
        "/length" => Reply::Close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a little".to_vec()),
        _ => Reply::Close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec()),
    });
    for path in ["/length", "/chunked"] {
        let within = Duration::from_secs(10);
        let deadline = Instant::now() + within;
        let (result, at) = fetch_within(&mut reactor, &fetcher, Request::get(base.append_path(path).unwrap()), within);
        assert_eq!(result.unwrap_err(), Error::Truncated, "{path}");
        assert!(at < deadline);
    }
}

#[test]
fn a_chunked_body_and_a_close_delimited_one_arrive_whole() {
    let (mut reactor, fetcher) = setup();
    let (base, _) = serve(&mut reactor, |_, target, _| match target {
        "/chunked" => Reply::Close(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n".to_vec(),
        ),
        _ => Reply::Close(b"HTTP/1.0 200 OK\r\n\r\nuntil the close".to_vec()),
    });
    let (result, _) = get(&mut reactor, &fetcher, base.append_path("/chunked").unwrap(), Duration::from_secs(10));
    assert_eq!(result.unwrap().text(), "hello world");
    let (result, _) = get(&mut reactor, &fetcher, base.append_path("/close").unwrap(), Duration::from_secs(10));
    assert_eq!(result.unwrap().text(), "until the close");
}

#[test]
fn connection_refused_fails_at_once() {
    let (mut reactor, fetcher) = setup();
    let within = Duration::from_secs(10);
    let deadline = Instant::now() + within;
    let (result, at) = fetch_within(&mut reactor, &fetcher, Request::get(closed_port()), within);
    assert!(matches!(result, Err(Error::Connect(ref why)) if why.contains("refused")), "{result:?}");
    assert!(at < deadline);
}

#[test]
fn a_host_name_is_looked_up_off_the_loop() {
    let (mut reactor, fetcher) = setup();
    let (base, log) = serve(&mut reactor, |_, _, _| ok("by name"));
    // `localhost` may resolve to ::1 first, where nothing listens: the
    // next address is tried.
    let by_name = Url::parse(&format!("http://localhost:{}/name", base.port())).unwrap();
    let (result, _) = get(&mut reactor, &fetcher, by_name, Duration::from_secs(10));
    assert_eq!(result.unwrap().text(), "by name");
    assert_eq!(log.borrow().requests, ["GET /name"]);
}

#[test]
fn names_go_to_the_resolver_and_each_address_is_tried_in_turn() {
    let mut reactor = Reactor::new().unwrap();
    let config = FetchConfig { min_start_gap: Duration::ZERO, resolve: fake_resolve, ..FetchConfig::default() };
    let fetcher = Fetcher::new(&mut reactor, config);
    let (base, log) = serve(&mut reactor, |_, _, _| ok("second address"));
    let url = Url::parse(&format!("http://web.test:{}/x", base.port())).unwrap();
    let (result, _) = get(&mut reactor, &fetcher, url, Duration::from_secs(10));
    assert_eq!(result.unwrap().text(), "second address");
    assert_eq!(log.borrow().requests, ["GET /x"]);

    let unknown = Url::parse("http://unknown.test/").unwrap();
    let (result, _) = get(&mut reactor, &fetcher, unknown, Duration::from_secs(10));
    assert_eq!(result.unwrap_err(), Error::Resolve("unknown.test: no such host".into()));
}

#[test]
#[cfg(target_os = "linux")]
fn an_address_that_drops_packets_costs_only_its_share_and_the_next_one_answers_in_time() {
    let (_listener, _queued, hole) = common::black_hole();
    let mut reactor = Reactor::new().unwrap();
    let (base, log) = serve(&mut reactor, |_, _, _| ok("second address"));
    let server = SocketAddr::from(([127, 0, 0, 1], base.port()));
    let url = Url::parse(&format!("http://hole.test:{}/x", base.port())).unwrap();

    // Two addresses and 2 s: the first may take 1 s (not the connect
    // timeout's 5 s), and the second has the rest.
    *HOLE_TEST.lock().unwrap() = vec![hole, server];
    let config = FetchConfig { min_start_gap: Duration::ZERO, resolve: fake_resolve, ..FetchConfig::default() };
    let fetcher = Fetcher::new(&mut reactor, config);
    let timeout = Duration::from_secs(2);
    let submitted = Instant::now();
    let (result, at) = get(&mut reactor, &fetcher, url.clone(), timeout);
    assert_eq!(result.unwrap().text(), "second address");
    let took = at - submitted;
    assert!(took >= timeout / 2, "the first address had its share: {took:?}");
    assert!(took < timeout, "answered within the timeout: {took:?}");
    assert_eq!(log.borrow().requests, ["GET /x"]);

    // The connect timeout bounds an address however much time is left:
    // with none answering, the fetch fails then, naming the address, and
    // its slot is free long before its timeout.
    *HOLE_TEST.lock().unwrap() = vec![hole];
    let connect_timeout = Duration::from_millis(300);
    let config = FetchConfig { connect_timeout, resolve: fake_resolve, ..FetchConfig::default() };
    let fetcher = Fetcher::new(&mut reactor, config);
    let submitted = Instant::now();
    let (result, at) = get(&mut reactor, &fetcher, url, Duration::from_secs(10));
    assert_eq!(result.unwrap_err(), Error::Connect(format!("{hole}: no connection within its time")));
    let took = at - submitted;
    assert!(took >= connect_timeout && took < Duration::from_secs(5), "failed after {took:?}");
}

#[test]
fn a_lookup_that_outlives_its_deadline_answers_at_the_deadline_and_holds_its_slot_until_done() {
    let mut reactor = Reactor::new().unwrap();
    let config = FetchConfig { max_in_flight: 1, resolve: fake_resolve, ..FetchConfig::default() };
    let fetcher = Fetcher::new(&mut reactor, config);
    let (base, log) = serve(&mut reactor, |_, _, _| ok("after the lookup"));
    let stuck = Url::parse(&format!("http://stuck.test:{}/stuck", base.port())).unwrap();
    let timeout = Duration::from_millis(200);
    let deadline = Instant::now() + timeout;
    let (result, at) = fetch_within(&mut reactor, &fetcher, Request::get(stuck), timeout);
    assert_eq!(result.unwrap_err(), Error::Timeout);
    assert!(at >= deadline);

    // The lookup thread still runs: its slot stays taken, so at most
    // max_in_flight threads exist however long lookups hang.
    let next =
        submit(&mut reactor, &fetcher, Request::get(base.append_path("/next").unwrap()), Duration::from_secs(10));
    reactor.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!((fetcher.running(), fetcher.waiting()), (1, 1));

    *RELEASE.0.lock().unwrap() = true;
    RELEASE.1.notify_all();
    assert!(reactor.run_until(Instant::now() + Duration::from_secs(10), |_| next.borrow().is_some()).unwrap());
    assert_eq!(next.take().unwrap().0.unwrap().text(), "after the lookup");
    assert_eq!(log.borrow().requests, ["GET /next"], "the abandoned fetch never connected");
}

#[test]
fn at_most_max_in_flight_run_at_once_and_all_finish() {
    let (mut reactor, fetcher) = setup();
    let (base, log) = serve(&mut reactor, |_, target, _| {
        Reply::Later(Duration::from_millis(50), response(200, &[], target.as_bytes()))
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let timeout = Duration::from_secs(10);
    let outcomes: Vec<Outcome> = (0..10)
        .map(|i| submit(&mut reactor, &fetcher, Request::get(base.append_path(&format!("/{i}")).unwrap()), timeout))
        .collect();
    assert_eq!((fetcher.running(), fetcher.waiting()), (0, 10), "nothing starts inside fetch()");
    let done = reactor.run_until(deadline, |_| outcomes.iter().all(|o| o.borrow().is_some())).unwrap();
    assert!(done);
    for (i, outcome) in outcomes.iter().enumerate() {
        let (result, _) = outcome.take().unwrap();
        assert_eq!(result.unwrap().text(), format!("/{i}"));
    }
    // The server held each request 50 ms: the client had exactly four out.
    assert_eq!(log.borrow().max_unanswered, FetchConfig::default().max_in_flight);
    assert_eq!((fetcher.running(), fetcher.waiting()), (0, 0));
}

#[test]
fn starts_are_paced_by_the_minimum_gap() {
    let mut reactor = Reactor::new().unwrap();
    let gap = Duration::from_millis(300);
    let fetcher = Fetcher::new(&mut reactor, FetchConfig { min_start_gap: gap, ..FetchConfig::default() });
    let (base, _) = serve(&mut reactor, |_, _, _| Reply::Hold(Vec::new()));
    let submitted = Instant::now();
    let deadline = submitted + Duration::from_secs(10);
    for _ in 0..2 {
        submit(&mut reactor, &fetcher, Request::get(base.clone()), Duration::from_secs(10));
    }
    assert!(reactor.run_until(deadline, |_| fetcher.running() == 1).unwrap());
    assert_eq!(fetcher.waiting(), 1, "the second waits for the gap");
    assert!(reactor.run_until(deadline, |_| fetcher.running() == 2).unwrap());
    // The first started after `submitted`, the second at least `gap` later.
    assert!(submitted.elapsed() >= gap, "second start after {:?}", submitted.elapsed());
}

#[test]
fn a_fetch_that_waited_for_a_slot_longer_than_its_timeout_still_gets_all_of_it() {
    let mut reactor = Reactor::new().unwrap();
    let config = FetchConfig { max_in_flight: 1, min_start_gap: Duration::ZERO, ..FetchConfig::default() };
    let fetcher = Fetcher::new(&mut reactor, config);
    // Each answer takes 400 ms, well within the 1 s timeout; one at a
    // time, the fourth waits 1.2 s for its turn.
    let hold = Duration::from_millis(400);
    let (base, log) =
        serve(&mut reactor, move |_, target, _| Reply::Later(hold, response(200, &[], target.as_bytes())));
    let timeout = Duration::from_secs(1);
    let submitted = Instant::now();
    let outcomes: Vec<Outcome> = (0..4)
        .map(|i| submit(&mut reactor, &fetcher, Request::get(base.append_path(&format!("/{i}")).unwrap()), timeout))
        .collect();
    let done = |_: &mut Reactor| outcomes.iter().all(|o| o.borrow().is_some());
    assert!(reactor.run_until(submitted + 4 * hold + GRACE, done).unwrap());
    for (i, outcome) in outcomes.iter().enumerate() {
        let (result, at) = outcome.take().unwrap();
        assert_eq!(result.unwrap().text(), format!("/{i}"), "answered, however long it waited");
        if i == 3 {
            assert!(at - submitted > timeout, "the last waited past its timeout: {:?}", at - submitted);
        }
    }
    assert_eq!(log.borrow().max_unanswered, 1);
}

#[test]
fn urgent_fetches_start_before_background_ones_and_each_kind_in_order() {
    let mut reactor = Reactor::new().unwrap();
    let config = FetchConfig { max_in_flight: 1, min_start_gap: Duration::ZERO, ..FetchConfig::default() };
    let fetcher = Fetcher::new(&mut reactor, config);
    let (base, log) = serve(&mut reactor, |_, _, _| ok(""));
    let timeout = Duration::from_secs(10);
    use Priority::{Background, Urgent};
    let order = [("/b1", Background), ("/u1", Urgent), ("/b2", Background), ("/u2", Urgent)];
    let outcomes: Vec<Outcome> = order
        .into_iter()
        .map(|(path, priority)| {
            submit_as(&mut reactor, &fetcher, Request::get(base.append_path(path).unwrap()), priority, timeout)
        })
        .collect();
    let done = |_: &mut Reactor| outcomes.iter().all(|o| o.borrow().is_some());
    assert!(reactor.run_until(Instant::now() + timeout + GRACE, done).unwrap());
    assert_eq!(log.borrow().requests, ["GET /u1", "GET /u2", "GET /b1", "GET /b2"]);
}

/// Starts an HTTPS server (a self-signed certificate for 127.0.0.1 and
/// localhost) on a free loopback port; returns its URL and certificate.
fn serve_tls(reactor: &mut Reactor, route: impl Fn(&str, &str, &[u8]) -> Reply + 'static) -> (Url, Vec<u8>) {
    let cert = barrage::sim::certificate::self_signed_localhost().unwrap();
    let tls = TlsServerConfig::from_pem(&cert.cert_pem, &cert.key_pem, CipherPolicy::Modern).unwrap();
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Rc::new(RefCell::new(ServerLog::default()));
    let route: Route = Rc::new(route);
    reactor
        .listen(listener, move |reactor: &mut Reactor, stream, _peer| {
            let conn = Conn { route: route.clone(), log: log.clone(), later: None, pending: false };
            reactor.add_tls_stream(stream, &tls, conn).unwrap();
        })
        .unwrap();
    (Url::parse(&format!("https://{addr}/")).unwrap(), cert.cert_pem)
}

#[test]
fn https_is_fetched_over_tls_with_the_servers_certificate_checked() {
    let mut reactor = Reactor::new().unwrap();
    let (url, cert) = serve_tls(&mut reactor, |_, target, _| ok(&format!("secure {target}")));
    let trusting = FetchConfig { tls: Some(TlsClientConfig::with_ca_pem(&cert).unwrap()), ..FetchConfig::default() };
    let fetcher = Fetcher::new(&mut reactor, trusting);
    let (result, _) = get(&mut reactor, &fetcher, url.join("/betard/1").unwrap(), Duration::from_secs(10));
    assert_eq!(result.unwrap().text(), "secure /betard/1");

    // The system's roots do not know a self-signed certificate.
    let doubting = FetchConfig { tls: Some(TlsClientConfig::new(None).unwrap()), ..FetchConfig::default() };
    let fetcher = Fetcher::new(&mut reactor, doubting);
    let (result, _) = get(&mut reactor, &fetcher, url, Duration::from_secs(10));
    let error = result.unwrap_err().to_string();
    assert!(error.contains("certificate verify failed"), "{error}");
}

#[test]
fn https_without_a_tls_config_is_refused_and_bad_requests_fail_through_the_callback() {
    let (mut reactor, fetcher) = setup();
    let https = Url::parse("https://127.0.0.1:9/").unwrap();
    let (result, _) = get(&mut reactor, &fetcher, https, Duration::from_secs(10));
    assert_eq!(result.unwrap_err(), Error::TlsUnavailable);

    let bad = Request::get(Url::parse("http://127.0.0.1:9/").unwrap()).header("X", "a\r\nb");
    let outcome = submit(&mut reactor, &fetcher, bad, Duration::from_secs(10));
    assert!(outcome.borrow().is_none(), "not called inside fetch()");
    assert!(reactor.run_until(Instant::now() + GRACE, |_| outcome.borrow().is_some()).unwrap());
    assert!(matches!(outcome.take().unwrap().0, Err(Error::InvalidRequest(_))));
}

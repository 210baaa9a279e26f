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
//! or hostile client grow its memory or hold a slot forever:
//!
//! - **Headers:** a request head larger than [`MetricsConfig::max_header_bytes`]
//!   (8 KiB), or with more than 64 header lines, gets `431` and the
//!   connection is closed. So the reactor never holds more than that of one
//!   request.
//! - **Bodies:** only `GET` is served (others get `405`). A request that
//!   announces a body (`Content-Length` other than 0, or
//!   `Transfer-Encoding`) is answered and the connection closed, without
//!   reading the body.
//! - **Time:** each request must arrive complete within
//!   [`MetricsConfig::idle_timeout`] (10 s) of the connection opening or of
//!   the previous request. An idle client is closed; a slow one (slowloris)
//!   gets `408` and is closed. As in `sim::client_conn`, one timer per
//!   connection is re-armed lazily instead of on every request.
//! - **Output:** pipelined requests are answered in order, but once
//!   [`MetricsConfig::max_pending_output`] bytes of answers wait for the
//!   client to read them, the rest wait too: `readable()` turns false, the
//!   kernel's buffers fill, and TCP slows the client down.
//! - **Connections:** at most [`MetricsConfig::max_connections`] at once;
//!   a connection beyond that is closed as soon as it is accepted.
//!
//! Every response has a `Content-Length`. Keep-alive is the default in
//! HTTP/1.1 (`Connection: close` ends it) and opt-in in HTTP/1.0.

use std::cell::Cell;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;

use super::{Monitor, MonitorStats, Room, RoomState};
use crate::douyu::LiveStatus;
use crate::reactor::{ConnId, Context, Dispatcher, Reactor};

/// The limits of the endpoint (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct MetricsConfig {
    /// Largest request head (request line and headers) accepted.
    pub max_header_bytes: usize,
    /// How long a client may take to send its next complete request.
    pub idle_timeout: Duration,
    /// Answered-but-unread bytes after which further pipelined requests wait.
    pub max_pending_output: usize,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_header_bytes: 8 * 1024,
            idle_timeout: Duration::from_secs(10),
            max_pending_output: 256 * 1024,
            max_connections: 64,
        }
    }
}

/// A running metrics endpoint: the listener's id and address.
#[derive(Clone, Copy, Debug)]
pub struct MetricsServer {
    listener: ConnId,
    addr: SocketAddr,
}

impl MetricsServer {
    /// The address it listens on (with the real port if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listener's reactor entry.
    pub fn id(&self) -> ConnId {
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
    // Connections open now, counted here and given back in `handle_close`.
    let open = Rc::new(Cell::new(0usize));
    let id = reactor.listen(listener, move |reactor: &mut Reactor, stream, peer| {
        if open.get() >= config.max_connections {
            // Dropping the stream closes it.
            log::warn!("metrics: refusing {peer}: {} connections open already", open.get());
            return;
        }
        let conn = HttpConn::new(monitor.clone(), config, open.clone());
        match reactor.add_stream(stream, conn) {
            Ok(_) => open.set(open.get() + 1),
            Err(e) => log::warn!("metrics: cannot serve {peer}: {e}"),
        }
    })?;
    log::info!("metrics: serving /metrics and /rooms on http://{addr}");
    Ok(MetricsServer { listener: id, addr })
}

// ----- one connection ---------------------------------------------------------

/// The tag of the idle timer (a connection's only timer).
const TIMER_IDLE: u64 = 0;

/// One client connection: parse requests, answer them in order.
struct HttpConn {
    monitor: Monitor,
    config: MetricsConfig,
    open: Rc<Cell<usize>>,
    /// The next complete request must arrive before this.
    deadline: Instant,
    /// Bytes of a request not answered yet (a partial one, or requests held
    /// back): tells a slow client from an idle one when the timer fires.
    unanswered: usize,
    /// Held back until the client reads what we sent (see `handle_write`).
    paused: bool,
    /// A last answer was sent and the connection is closing.
    closing: bool,
}

impl HttpConn {
    fn new(monitor: Monitor, config: MetricsConfig, open: Rc<Cell<usize>>) -> Self {
        HttpConn {
            monitor,
            config,
            open,
            deadline: Instant::now() + config.idle_timeout,
            unanswered: 0,
            paused: false,
            closing: false,
        }
    }

    /// Queues one response; closes gracefully after it if `!keep_alive`.
    fn respond(&mut self, ctx: &mut Context<'_>, response: &Response, keep_alive: bool) {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            response.status,
            reason(response.status),
            response.content_type,
            response.body.len()
        );
        if response.status == 405 {
            head.push_str("Allow: GET\r\n");
        }
        head.push_str(if keep_alive { "Connection: keep-alive\r\n\r\n" } else { "Connection: close\r\n\r\n" });
        ctx.send(head.as_bytes());
        ctx.send(&response.body);
        if !keep_alive {
            self.closing = true;
            ctx.close();
        }
    }
}

impl Dispatcher for HttpConn {
    /// Not while answers are backed up: the requests wait in TCP.
    fn readable(&self) -> bool {
        !self.paused
    }

    /// While paused, ask to hear when everything queued is written.
    fn writable(&self) -> bool {
        self.paused
    }

    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        ctx.set_timer_at(self.deadline, TIMER_IDLE);
    }

    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let mut consumed = 0;
        while consumed < data.len() && !self.closing {
            if ctx.pending_output() >= self.config.max_pending_output {
                self.paused = true;
                break;
            }
            match parse_request(&data[consumed..], self.config.max_header_bytes) {
                Parsed::Partial => break,
                Parsed::Invalid(status) => {
                    log::debug!("metrics: {}: bad request ({status})", ctx.id());
                    self.respond(ctx, &Response::text(status, reason(status)), false);
                    consumed = data.len();
                }
                Parsed::Request(request) => {
                    consumed += request.head_len;
                    self.deadline = Instant::now() + self.config.idle_timeout;
                    let response = route(&request, &self.monitor, ctx.reactor());
                    // A body we did not read would be taken for the next
                    // request: answer, then close.
                    self.respond(ctx, &response, request.keep_alive && !request.has_body);
                }
            }
        }
        self.unanswered = data.len() - consumed;
        consumed
    }

    /// Everything queued is written: read the held-back requests again (the
    /// reactor hands them back once `readable()` is true).
    fn handle_write(&mut self, _ctx: &mut Context<'_>) {
        self.paused = false;
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_>, _tag: u64) {
        if Instant::now() < self.deadline {
            // A request came since the timer was set: wait for the rest.
            ctx.set_timer_at(self.deadline, TIMER_IDLE);
            return;
        }
        if ctx.pending_output() > 0 {
            log::debug!("metrics: {}: client does not read its answers; dropping it", ctx.id());
            ctx.abort();
        } else if self.unanswered > 0 && !self.closing {
            log::debug!("metrics: {}: request too slow", ctx.id());
            self.respond(ctx, &Response::text(408, reason(408)), false);
        } else {
            ctx.close();
        }
    }

    fn handle_close(&mut self, _ctx: &mut Context<'_>) {
        self.open.set(self.open.get().saturating_sub(1));
    }
}

// ----- HTTP, sans-IO ----------------------------------------------------------

/// Header lines accepted in one request; more get `431`.
const MAX_HEADERS: usize = 64;

/// What the bytes at the front of the buffer are.
#[derive(Debug, PartialEq, Eq)]
enum Parsed<'a> {
    /// Not a whole request head yet.
    Partial,
    /// Answer with this status, then close.
    Invalid(u16),
    Request(Request<'a>),
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    /// Bytes of the head (there is no body we read).
    head_len: usize,
    method: &'a str,
    path: &'a str,
    keep_alive: bool,
    /// It announced a body (which we do not read).
    has_body: bool,
}

/// Parses the request at the front of `data` with `httparse`.
fn parse_request(data: &[u8], max_header_bytes: usize) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(data) {
        Ok(httparse::Status::Complete(len)) if len <= max_header_bytes => len,
        Ok(httparse::Status::Complete(_)) => return Parsed::Invalid(431),
        // Incomplete, and already past the limit: it can only get bigger.
        Ok(httparse::Status::Partial) if data.len() > max_header_bytes => return Parsed::Invalid(431),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(431),
        Err(_) => return Parsed::Invalid(400),
    };
    // A complete head has all three.
    let (Some(method), Some(path), Some(version)) = (request.method, request.path, request.version) else {
        return Parsed::Invalid(400);
    };
    let mut close = false;
    let mut keep_alive = false;
    let mut has_body = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("connection") {
            // A comma-separated list of options.
            for option in header.value.split(|&b| b == b',') {
                let option = option.trim_ascii();
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            has_body |= header.value.trim_ascii() != b"0";
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    // HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes
    // it unless asked to keep it.
    let keep_alive = !close && (version >= 1 || keep_alive);
    Parsed::Request(Request { head_len, method, path, keep_alive, has_body })
}

/// One answer.
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, text: &str) -> Self {
        Response { status, content_type: "text/plain; charset=utf-8", body: format!("{text}\n").into_bytes() }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Unknown",
    }
}

/// The content type Prometheus expects of its text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Picks the answer to a request. The query string is ignored.
fn route(request: &Request<'_>, monitor: &Monitor, reactor: &Reactor) -> Response {
    let path = request.path.split('?').next().unwrap_or_default();
    if path != "/metrics" && path != "/rooms" {
        return Response::text(404, "not found; try /metrics or /rooms");
    }
    if request.method != "GET" {
        return Response::text(405, "only GET is served");
    }
    let rooms = monitor.rooms();
    if path == "/metrics" {
        let text = render_metrics(&monitor.stats(), &rooms, monitor.output_pending(), reactor);
        Response { status: 200, content_type: PROMETHEUS_TEXT, body: text.into_bytes() }
    } else {
        let json = render_rooms(&rooms, Instant::now());
        Response { status: 200, content_type: "application/json", body: json.into_bytes() }
    }
}

// ----- rendering --------------------------------------------------------------

/// Every room state, in the order they are reported: all of them, even at
/// 0, so a dashboard sees a state empty rather than missing.
const STATES: [RoomState; 6] = [
    RoomState::Waiting,
    RoomState::Connecting,
    RoomState::LoggingIn,
    RoomState::Joined,
    RoomState::BackingOff,
    RoomState::Stopped,
];

/// A state's place in [`STATES`]. The match is exhaustive, so a new state
/// fails to compile here instead of silently missing from the metrics.
fn state_slot(state: RoomState) -> usize {
    match state {
        RoomState::Waiting => 0,
        RoomState::Connecting => 1,
        RoomState::LoggingIn => 2,
        RoomState::Joined => 3,
        RoomState::BackingOff => 4,
        RoomState::Stopped => 5,
    }
}

/// Prometheus text exposition format, version 0.0.4: per metric a `# HELP`
/// and a `# TYPE` line, then its samples, `name{label="value"} number`.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample with at most one label (all this endpoint needs).
    fn sample(&mut self, name: &str, label: Option<(&str, &str)>, value: impl std::fmt::Display) {
        self.out.push_str(name);
        if let Some((label, label_value)) = label {
            let _ = write!(self.out, "{{{label}=\"");
            escape_label_value(&mut self.out, label_value);
            self.out.push_str("\"}");
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A metric with one sample and no labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, None, value);
    }
}

/// Label values may hold anything (message types come from the network);
/// the format escapes backslash, double quote and newline.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The `/metrics` page.
fn render_metrics(stats: &MonitorStats, rooms: &[Room], output_pending: usize, reactor: &Reactor) -> String {
    let mut page = Exposition { out: String::with_capacity(4096 + rooms.len() * 48) };

    let mut by_state = [0usize; STATES.len()];
    for room in rooms {
        by_state[state_slot(room.state)] += 1;
    }
    page.family("barrage_rooms", "gauge", "Rooms in each state of their life cycle.");
    for (state, count) in STATES.iter().zip(by_state) {
        page.sample("barrage_rooms", Some(("state", state.name())), count);
    }

    let mut by_type: Vec<(&String, &u64)> = stats.messages_by_type.iter().collect();
    by_type.sort();
    page.family("barrage_messages_total", "counter", "Messages received, by message type (filtered ones too).");
    for (kind, count) in by_type {
        page.sample("barrage_messages_total", Some(("type", kind)), count);
    }

    page.family("barrage_room_messages_total", "counter", "Messages received, by room.");
    for room in rooms {
        page.sample("barrage_room_messages_total", Some(("room", &room.id.to_string())), room.messages);
    }

    page.single(
        "barrage_messages_filtered_total",
        "counter",
        "Messages received but not written because of the type filter.",
        stats.filtered,
    );
    page.single(
        "barrage_reconnects_total",
        "counter",
        "Room connections that ended and were retried.",
        stats.reconnects,
    );
    page.single(
        "barrage_decode_errors_total",
        "counter",
        "Room connections closed because the server's bytes could not be decoded.",
        stats.decode_errors,
    );
    page.single("barrage_output_pending_bytes", "gauge", "Output bytes not written yet.", output_pending);

    let loop_stats = reactor.stats();
    let counters = [
        (
            "iterations",
            "Event loop iterations (each waits at most once: in poll, or sleeping between polls).",
            loop_stats.iterations,
        ),
        ("polls", "Polls for I/O (fewer than iterations with --poll-interval).", loop_stats.polls),
        ("interval_sleeps", "Sleeps between two polls, inside --poll-interval.", loop_stats.interval_sleeps),
        ("events", "Readiness events returned by poll.", loop_stats.events),
        ("poll_timeouts", "Polls that returned because a timeout expired.", loop_stats.poll_timeouts),
        ("read_syscalls", "Read calls on connections.", loop_stats.read_syscalls),
        ("write_syscalls", "Write calls on connections.", loop_stats.write_syscalls),
        ("read_bytes", "Bytes read from connections.", loop_stats.bytes_read),
        ("written_bytes", "Bytes written to connections.", loop_stats.bytes_written),
        ("reregisters", "Poll registration changes.", loop_stats.reregisters),
        ("accepted", "Connections accepted by listeners.", loop_stats.accepted),
        ("opened", "Connections opened (outgoing or accepted).", loop_stats.opened),
        ("closed", "Connections closed.", loop_stats.closed),
        ("timers_fired", "Timers that fired.", loop_stats.timers_fired),
        ("wakeups", "Wake-ups from other threads.", loop_stats.wakeups),
    ];
    for (name, help, value) in counters {
        page.single(&format!("barrage_reactor_{name}_total"), "counter", help, value);
    }
    page.single(
        "barrage_reactor_max_timer_lateness_seconds",
        "gauge",
        "The worst delay between a timer's deadline and its callback.",
        loop_stats.max_timer_lateness.as_secs_f64(),
    );
    page.single(
        "barrage_reactor_entries",
        "gauge",
        "Open reactor entries: connections, listeners and raw handlers.",
        reactor.entry_count(),
    );
    page.single(
        "barrage_reactor_pending_timers",
        "gauge",
        "Timers waiting in the timer wheel.",
        reactor.pending_timers(),
    );
    page.out
}

fn live_name(live: Option<LiveStatus>) -> Option<&'static str> {
    live.map(|status| match status {
        LiveStatus::Live => "live",
        LiveStatus::Offline => "offline",
        LiveStatus::Loop => "loop",
    })
}

/// The `/rooms` page: a JSON array, one object per room.
fn render_rooms(rooms: &[Room], now: Instant) -> String {
    let rooms: Vec<serde_json::Value> = rooms
        .iter()
        .map(|room| {
            serde_json::json!({
                "room": room.id,
                "state": room.state.name(),
                "live": live_name(room.live),
                "last_message_age_secs": room.last_message.map(|at| now.saturating_duration_since(at).as_secs_f64()),
                "messages": room.messages,
                "reconnects": room.reconnects,
            })
        })
        .collect();
    let mut text = serde_json::Value::Array(rooms).to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(text: &str) -> Request<'_> {
        match parse_request(text.as_bytes(), 8192) {
            Parsed::Request(request) => request,
            other => panic!("{text:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        assert!(request("GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!request("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!request("GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n").keep_alive);
        assert!(!request("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn a_body_is_noticed_and_not_counted_in_the_request() {
        let text = "POST /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd";
        let parsed = request(text);
        assert!(parsed.has_body);
        assert_eq!(parsed.head_len, text.len() - 4);
        assert!(!request("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").has_body);
        assert!(request("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").has_body);
    }

    #[test]
    fn heads_are_bounded() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(parse_request(big.as_bytes(), 64), Parsed::Invalid(431), "complete but too big");
        assert_eq!(parse_request(&big.as_bytes()[..80], 64), Parsed::Invalid(431), "incomplete and too big");
        assert_eq!(parse_request(&big.as_bytes()[..40], 64), Parsed::Partial);
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(parse_request(many.as_bytes(), 8192), Parsed::Invalid(431), "too many header lines");
        assert_eq!(parse_request(b"\x00\x01garbage\r\n\r\n", 8192), Parsed::Invalid(400));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape_label_value(&mut out, "a\\b\"c\nd");
        assert_eq!(out, r#"a\\b\"c\nd"#);
    }

    #[test]
    fn every_state_is_reported_and_types_are_escaped() {
        let reactor = Reactor::new().unwrap();
        let mut stats = MonitorStats::default();
        stats.messages_by_type.insert("odd\"type\n".into(), 3);
        let page = render_metrics(&stats, &[], 0, &reactor);
        for state in STATES {
            assert!(page.contains(&format!("barrage_rooms{{state=\"{}\"}} 0\n", state.name())), "{page}");
        }
        assert!(page.contains("barrage_messages_total{type=\"odd\\\"type\\n\"} 3\n"), "{page}");
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            match parse_request(&data, 256) {
                Parsed::Request(request) => prop_assert!(request.head_len <= data.len()),
                Parsed::Partial => prop_assert!(data.len() <= 256),
                Parsed::Invalid(status) => prop_assert!(status == 400 || status == 431),
            }
        }
    }
}

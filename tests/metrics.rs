//! The metrics endpoint, on the same reactor as a monitor and a minimal
//! in-process Douyu server. HTTP clients are blocking std sockets on a
//! helper thread; the test thread runs the reactor until the client is done.

mod common;
use barrage::rng::Rng;
use common::{FakeDouyu, captured, fake_douyu};

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use barrage::monitor::metrics::{self, MetricsConfig, MetricsServer};
use barrage::monitor::output::Destination;
use barrage::monitor::{Monitor, MonitorConfig, RoomState};
use barrage::reactor::{Reactor, ReactorHandle};

const DEADLINE: Duration = Duration::from_secs(20);
/// Chat messages the fake server sends each room after it joins.
const CHATS: u64 = 25;
const ROOMS: [u64; 2] = [101, 202];

fn fake_server(reactor: &mut Reactor) -> String {
    fake_douyu(reactor, FakeDouyu { chats: CHATS, text: |_| "hi".to_string(), rss: true, close_after_join: false }).0
}

/// A reactor with the fake server, a monitor of [`ROOMS`] that has joined
/// them and received everything, and the metrics endpoint.
struct Setup {
    reactor: Reactor,
    monitor: Monitor,
    server: MetricsServer,
}

impl Setup {
    fn new(config: MetricsConfig) -> Setup {
        let mut reactor = Reactor::new().unwrap();
        let douyu = fake_server(&mut reactor);
        let monitor = Monitor::start(
            &mut reactor,
            MonitorConfig {
                rooms: ROOMS.to_vec(),
                servers: vec![douyu.parse().unwrap()],
                output: Destination::Null,
                status_interval: Duration::ZERO,
                ..MonitorConfig::default()
            },
        )
        .unwrap();
        let server =
            metrics::start_with_config(&mut reactor, "127.0.0.1:0".parse().unwrap(), monitor.clone(), config).unwrap();
        // loginres, rss and the chats, for every room.
        let expected = ROOMS.len() as u64 * (CHATS + 2);
        let ready = reactor
            .run_until(Instant::now() + DEADLINE, |_| {
                monitor.state_counts().get(&RoomState::Joined) == Some(&ROOMS.len())
                    && monitor.stats().messages >= expected
            })
            .unwrap();
        assert!(ready, "rooms joined and received everything: {:?}", monitor.stats());
        Setup { reactor, monitor, server }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Runs `client` on a helper thread while the reactor serves it.
    fn with_client<T: Send + 'static>(&mut self, client: impl FnOnce() -> T + Send + 'static) -> T {
        let (sender, receiver) = mpsc::channel();
        let wake = WakeOnDrop(self.reactor.handle());
        let thread = std::thread::spawn(move || {
            // Dropped in reverse order, also by a panic: the result is sent
            // (or the sender dropped) before the loop is woken.
            let _wake = wake;
            let sender = sender;
            let _ = sender.send(client());
        });
        let mut result = None;
        let done = self
            .reactor
            .run_until(Instant::now() + DEADLINE, |_| match receiver.try_recv() {
                Ok(value) => {
                    result = Some(value);
                    true
                }
                Err(mpsc::TryRecvError::Disconnected) => true,
                Err(mpsc::TryRecvError::Empty) => false,
            })
            .unwrap();
        assert!(done, "the client finished before the deadline");
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
        result.expect("the client returned")
    }
}

/// Wakes the loop when dropped on the client's thread, so that `run_until`
/// sees the client's end at once instead of at the loop's next event.
struct WakeOnDrop(ReactorHandle);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.add_callback(|_| {});
    }
}

// ----- a blocking HTTP client -------------------------------------------------

#[derive(Debug)]
struct HttpResponse {
    status: u16,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    // A failing test must not hang: every read gives up at the deadline.
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    BufReader::new(stream)
}

fn send(conn: &mut BufReader<TcpStream>, bytes: &[u8]) {
    conn.get_mut().write_all(bytes).unwrap();
}

/// Reads one response, which must have a Content-Length.
fn read_response(conn: &mut BufReader<TcpStream>) -> HttpResponse {
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    let mut parts = line.trim_end().splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {line:?}");
    let status = parts.next().unwrap().parse().unwrap();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        conn.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "header lines end with CRLF: {line:?}");
        if line == "\r\n" {
            break;
        }
        let (name, value) = line.trim_end().split_once(": ").unwrap();
        headers.insert(name.to_ascii_lowercase(), value.to_string());
    }
    let length: usize = headers["content-length"].parse().unwrap();
    let mut body = vec![0; length];
    conn.read_exact(&mut body).unwrap();
    HttpResponse { status, headers, body: String::from_utf8(body).unwrap() }
}

/// The server closed the connection: nothing more to read.
fn assert_closed(conn: &mut BufReader<TcpStream>) {
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).expect("an orderly close, within the deadline");
    assert!(rest.is_empty(), "nothing after the last response: {:?}", String::from_utf8_lossy(&rest));
}

/// One request on a new connection, which the server then closes.
fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut conn = connect(addr);
    send(&mut conn, format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes());
    let response = read_response(&mut conn);
    assert_eq!(response.header("connection"), "close");
    assert_closed(&mut conn);
    response
}

// ----- a Prometheus text checker ----------------------------------------------

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `{a="x",b="y"}` (with `\\`, `\"`, `\n` escapes); returns the
/// labels and the rest of the line.
fn parse_labels(text: &str) -> (Vec<(String, String)>, &str) {
    let mut labels = Vec::new();
    let mut rest = text.strip_prefix('{').unwrap();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (name, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("label in {text:?}"));
        assert!(is_metric_name(name) && !name.contains(':'), "label name {name:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().unwrap_or_else(|| panic!("unterminated label value in {text:?}")) {
                (_, '\\') => match chars.next().unwrap().1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => panic!("bad escape \\{other} in {text:?}"),
                },
                (_, '\n') => panic!("raw newline in a label value"),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Checks the exposition format line by line: `# HELP` then `# TYPE` once
/// per family, before its samples; every sample `name{labels} value` of a
/// declared family. Returns the samples.
fn parse_exposition(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "the last line ends with a newline");
    let mut helped = HashSet::new();
    let mut typed = HashMap::new();
    let mut sampled = HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(is_metric_name(name) && !help.is_empty(), "{line:?}");
            assert!(helped.insert(name.to_string()), "one HELP per family: {line:?}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(matches!(kind, "counter" | "gauge"), "{line:?}");
            assert!(helped.contains(name), "HELP before TYPE: {line:?}");
            assert!(!sampled.contains(name), "TYPE before samples: {line:?}");
            assert!(typed.insert(name.to_string(), kind.to_string()).is_none(), "one TYPE per family: {line:?}");
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
            let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("sample {line:?}"));
            let name = &line[..name_end];
            assert!(is_metric_name(name), "metric name in {line:?}");
            assert!(name.starts_with("barrage_"), "prefixed: {line:?}");
            let kind = typed.get(name).unwrap_or_else(|| panic!("sample of an undeclared family: {line:?}"));
            assert_eq!(kind == "counter", name.ends_with("_total"), "counters and only counters end in _total");
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..])
            } else {
                (vec![], &line[name_end..])
            };
            let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("one space before the value: {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line:?}"));
            assert!(value >= 0.0, "{line:?}");
            sampled.insert(name.to_string());
            samples.push(Sample { name: name.to_string(), labels, value });
        }
    }
    samples
}

/// The value of the sample `name` with exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().zip(&s.labels).all(|((k, v), (sk, sv))| k == sk && v == sv)
        })
        .collect();
    assert_eq!(found.len(), 1, "exactly one sample {name}{labels:?}");
    found[0].value
}

// ----- the tests --------------------------------------------------------------

#[test]
fn metrics_is_prometheus_text_with_the_monitor_counts() {
    let mut setup = Setup::new(MetricsConfig::default());
    let addr = setup.addr();
    let response = setup.with_client(move || get(addr, "/metrics"));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    let samples = parse_exposition(&response.body);

    assert_eq!(value(&samples, "barrage_rooms", &[("state", "joined")]), 2.0);
    for state in ["waiting", "connecting", "logging_in", "backing_off", "closing", "stopped"] {
        assert_eq!(value(&samples, "barrage_rooms", &[("state", state)]), 0.0, "{state} is present at 0");
    }
    assert_eq!(value(&samples, "barrage_rooms_joined", &[("transport", "tcp")]), 2.0);
    assert_eq!(value(&samples, "barrage_rooms_joined", &[("transport", "wss")]), 0.0);
    let chats = (CHATS * ROOMS.len() as u64) as f64;
    assert_eq!(value(&samples, "barrage_messages_total", &[("type", "chatmsg")]), chats);
    assert_eq!(value(&samples, "barrage_messages_total", &[("type", "loginres")]), 2.0);
    assert_eq!(value(&samples, "barrage_messages_total", &[("type", "rss")]), 2.0);
    let by_type: f64 = samples.iter().filter(|s| s.name == "barrage_messages_total").map(|s| s.value).sum();
    let by_room: f64 = samples.iter().filter(|s| s.name == "barrage_room_messages_total").map(|s| s.value).sum();
    assert_eq!(by_type, by_room, "one consistent snapshot: both add up to every message");
    for room in ROOMS {
        let expected = (CHATS + 2) as f64;
        assert_eq!(value(&samples, "barrage_room_messages_total", &[("room", &room.to_string())]), expected);
    }
    let stats = setup.monitor.stats();
    assert_eq!(value(&samples, "barrage_messages_filtered_total", &[]), 0.0);
    assert_eq!(value(&samples, "barrage_reconnects_total", &[]), stats.reconnects as f64);
    assert_eq!(value(&samples, "barrage_decode_errors_total", &[]), 0.0);
    assert!(value(&samples, "barrage_output_pending_bytes", &[]) >= 0.0);

    // The loop's counters, read from inside the loop that served the scrape.
    for counter in ["iterations", "events", "read_syscalls", "write_syscalls", "read_bytes", "written_bytes"] {
        let name = format!("barrage_reactor_{counter}_total");
        assert!(value(&samples, &name, &[]) > 0.0, "{name} moved");
    }
    for counter in ["poll_timeouts", "reregisters", "accepted", "opened", "closed", "timers_fired", "wakeups"] {
        value(&samples, &format!("barrage_reactor_{counter}_total"), &[]);
    }
    assert!(value(&samples, "barrage_reactor_wakeups_total", &[]) >= 1.0, "DNS answered through the waker");
    let lateness = value(&samples, "barrage_reactor_max_timer_lateness_seconds", &[]);
    assert!(lateness < DEADLINE.as_secs_f64(), "lateness in seconds: {lateness}");
    // 2 listeners, 2 rooms and their 2 server ends, and the scrape itself.
    assert!(value(&samples, "barrage_reactor_entries", &[]) >= 7.0);
    value(&samples, "barrage_reactor_pending_timers", &[]);
}

#[test]
fn rooms_is_a_json_array_of_every_room() {
    let mut setup = Setup::new(MetricsConfig::default());
    let addr = setup.addr();
    let response = setup.with_client(move || get(addr, "/rooms"));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), "application/json");
    let rooms: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    let rooms = rooms.as_array().expect("an array");
    assert_eq!(rooms.len(), 2);
    for (room, json) in ROOMS.iter().zip(rooms) {
        let fields: HashSet<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let expected: HashSet<&str> =
            ["room", "written", "state", "live", "live_since", "name", "owner", "category", "foreign_chat"]
                .into_iter()
                .chain(["last_message_age_secs", "messages", "reconnects", "transport", "endpoint"])
                .collect();
        assert_eq!(fields, expected, "{json}");
        assert_eq!(json["room"], *room);
        assert_eq!(json["state"], "joined");
        assert_eq!(json["live"], if room % 2 == 1 { "live" } else { "offline" });
        let age = json["last_message_age_secs"].as_f64().expect("a float: a message arrived");
        assert!((0.0..DEADLINE.as_secs_f64()).contains(&age), "{age}");
        assert_eq!(json["messages"], CHATS + 2);
        assert_eq!(json["reconnects"], 0);
        assert_eq!(json["transport"], "tcp");
        assert!(json["endpoint"].as_str().is_some_and(|e| e.starts_with("tcp://127.0.0.1:")), "{json}");
    }
}

#[test]
fn unknown_paths_get_404_and_other_methods_405_on_a_kept_connection() {
    let mut setup = Setup::new(MetricsConfig::default());
    let addr = setup.addr();
    setup.with_client(move || {
        let mut conn = connect(addr);
        send(&mut conn, b"GET /nope HTTP/1.1\r\nHost: test\r\n\r\n");
        let response = read_response(&mut conn);
        assert_eq!(response.status, 404);
        assert_eq!(response.header("connection"), "keep-alive");

        send(&mut conn, b"DELETE /metrics HTTP/1.1\r\n\r\n");
        let response = read_response(&mut conn);
        assert_eq!(response.status, 405);
        assert_eq!(response.header("allow"), "GET");

        send(&mut conn, b"GET /rooms?pretty=1 HTTP/1.1\r\n\r\n");
        let response = read_response(&mut conn);
        assert_eq!(response.status, 200, "the query string is ignored");
        assert!(response.body.starts_with('['));

        // A body is never read: answered, then the connection closes.
        send(&mut conn, b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        let response = read_response(&mut conn);
        assert_eq!(response.status, 405);
        assert_eq!(response.header("connection"), "close");
        assert_closed(&mut conn);

        // HTTP/1.0 closes unless asked to keep the connection.
        let mut conn = connect(addr);
        send(&mut conn, b"GET /rooms HTTP/1.0\r\n\r\n");
        assert_eq!(read_response(&mut conn).status, 200);
        assert_closed(&mut conn);
    });
}

#[test]
fn oversized_headers_get_431_and_the_connection_closes() {
    let mut setup = Setup::new(MetricsConfig::default());
    let addr = setup.addr();
    setup.with_client(move || {
        // Just under the limit is fine.
        let mut conn = connect(addr);
        let head = format!("GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(7 * 1024));
        send(&mut conn, head.as_bytes());
        assert_eq!(read_response(&mut conn).status, 200);

        // Over it, complete or not. (One write, so the server has read all
        // of it when it closes: unread bytes would turn the close into a reset.)
        for end in ["\r\n\r\n", ""] {
            let mut conn = connect(addr);
            let head = format!("GET /metrics HTTP/1.1\r\nX-Big: {}{end}", "a".repeat(9 * 1024));
            send(&mut conn, head.as_bytes());
            let response = read_response(&mut conn);
            assert_eq!(response.status, 431);
            assert_eq!(response.header("connection"), "close");
            assert_closed(&mut conn);
        }

        // Too many header lines.
        let mut conn = connect(addr);
        send(&mut conn, format!("GET /metrics HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(100)).as_bytes());
        assert_eq!(read_response(&mut conn).status, 431);
        assert_closed(&mut conn);
    });
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut setup = Setup::new(MetricsConfig::default());
    let addr = setup.addr();
    setup.with_client(move || {
        let mut conn = connect(addr);
        send(
            &mut conn,
            b"GET /metrics HTTP/1.1\r\n\r\nGET /rooms HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n\
              GET /metrics HTTP/1.1\r\n\r\n",
        );
        let first = read_response(&mut conn);
        assert_eq!(first.status, 200);
        assert!(first.body.starts_with("# HELP"));
        let second = read_response(&mut conn);
        assert_eq!(second.status, 200);
        assert!(second.body.starts_with('['));
        let third = read_response(&mut conn);
        assert_eq!(third.status, 404);
        assert_eq!(third.header("connection"), "close");
        assert_closed(&mut conn); // the request after `Connection: close` is not answered
    });
}

#[test]
fn pipelined_requests_wait_while_the_client_does_not_read() {
    // Every answer fills the allowance: each further request waits until the
    // client has taken the previous answers.
    let mut setup = Setup::new(MetricsConfig { max_pending_output: 1, ..MetricsConfig::default() });
    let addr = setup.addr();
    setup.with_client(move || {
        let mut conn = connect(addr);
        let mut requests = "GET /metrics HTTP/1.1\r\n\r\n".repeat(99);
        requests.push_str("GET /rooms HTTP/1.1\r\nConnection: close\r\n\r\n");
        send(&mut conn, requests.as_bytes());
        for _ in 0..99 {
            let response = read_response(&mut conn);
            assert_eq!(response.status, 200);
            assert!(response.body.starts_with("# HELP"));
        }
        assert!(read_response(&mut conn).body.starts_with('['));
        assert_closed(&mut conn);
    });
}

#[test]
fn idle_and_slow_clients_are_closed() {
    let idle = Duration::from_millis(300);
    let mut setup = Setup::new(MetricsConfig { idle_timeout: idle, ..MetricsConfig::default() });
    let addr = setup.addr();
    setup.with_client(move || {
        // Idle from the start: closed without a word.
        let started = Instant::now();
        let mut conn = connect(addr);
        assert_closed(&mut conn);
        assert!(started.elapsed() >= idle, "not before the timeout");

        // Idle after a request.
        let mut conn = connect(addr);
        send(&mut conn, b"GET /rooms HTTP/1.1\r\n\r\n");
        assert_eq!(read_response(&mut conn).status, 200);
        assert_closed(&mut conn);

        // Slow: half a request.
        let mut conn = connect(addr);
        send(&mut conn, b"GET /rooms HTTP/1.1\r\nHost: te");
        let response = read_response(&mut conn);
        assert_eq!(response.status, 408);
        assert_eq!(response.header("connection"), "close");
        assert_closed(&mut conn);
    });
}

/// A request head dribbled a byte at a time (slowloris) gets `408` once its
/// head timeout is over, however steadily the bytes come: the idle timeout
/// (10 s here) does not restart with each byte.
#[test]
fn a_request_head_dribbled_byte_by_byte_gets_408_at_the_head_timeout() {
    let head_timeout = Duration::from_millis(300);
    let mut setup = Setup::new(MetricsConfig { head_timeout, ..MetricsConfig::default() });
    let addr = setup.addr();
    setup.with_client(move || {
        let mut conn = connect(addr);
        let started = Instant::now();
        // Slow on purpose: a byte every 50 ms, for longer than the timeout.
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x" {
            if conn.get_mut().write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let response = read_response(&mut conn);
        assert_eq!(response.status, 408);
        let took = started.elapsed();
        assert!(took >= head_timeout && took < Duration::from_secs(5), "408 after {took:?}");
    });
}

/// The table is full of connections that are idle or still dribbling their
/// request head (slowloris): a scrape still gets its answer, in place of
/// the oldest of them.
#[test]
fn a_scrape_is_served_when_the_table_is_full_of_idle_or_slow_connections() {
    let mut setup = Setup::new(MetricsConfig { max_connections: 4, ..MetricsConfig::default() });
    let addr = setup.addr();
    setup.with_client(move || {
        let mut oldest_idle = connect(addr);
        let _idle = connect(addr);
        let mut slow: Vec<_> = (0..2).map(|_| connect(addr)).collect();
        for conn in &mut slow {
            send(conn, b"GET /metr");
        }
        let scrape = get(addr, "/metrics");
        assert_eq!(scrape.status, 200);
        assert!(scrape.body.starts_with("# HELP"));
        // Its place was taken: closed without an answer.
        assert_closed(&mut oldest_idle);
        // The slow ones are still waiting for the rest of their heads.
        for conn in &mut slow {
            send(conn, b"ics HTTP/1.1\r\nConnection: close\r\n\r\n");
            assert_eq!(read_response(conn).status, 200);
        }
    });
}

/// A thousand connections that send nothing, opened as fast as possible,
/// while the rooms keep receiving: scrapes during the flood succeed, the
/// endpoint never holds more than its limit, and messages keep flowing.
#[test]
fn a_flood_of_connections_keeps_memory_bounded_and_delivery_going() {
    const LIMIT: usize = 64;
    let mut reactor = Reactor::new().unwrap();
    let (douyu, log) =
        fake_douyu(&mut reactor, FakeDouyu { chats: 0, text: |_| String::new(), rss: false, close_after_join: false });
    let monitor = Monitor::start(
        &mut reactor,
        MonitorConfig {
            rooms: ROOMS.to_vec(),
            servers: vec![douyu.parse().unwrap()],
            output: Destination::Null,
            status_interval: Duration::ZERO,
            ..MonitorConfig::default()
        },
    )
    .unwrap();
    let config = MetricsConfig { max_connections: LIMIT, ..MetricsConfig::default() };
    let server =
        metrics::start_with_config(&mut reactor, "127.0.0.1:0".parse().unwrap(), monitor.clone(), config).unwrap();
    let joined = |_: &mut Reactor| log.borrow().joined.len() == ROOMS.len();
    assert!(reactor.run_until(Instant::now() + DEADLINE, joined).unwrap());
    // The rooms' traffic: a chat to every room every 5 ms.
    let traffic_log = log.clone();
    reactor.add_periodic(Duration::from_millis(5), move |reactor| {
        for (room, &conn) in traffic_log.borrow().joined.iter() {
            let chat = common::packet(&[("type", "chatmsg"), ("rid", &room.to_string()), ("txt", "hi")]);
            reactor.send(conn, &chat);
        }
    });
    let entries_before = reactor.entry_count();
    let messages_before = monitor.stats().messages;

    let addr = server.local_addr();
    let (sender, receiver) = mpsc::channel();
    let wake = WakeOnDrop(reactor.handle());
    let client = std::thread::spawn(move || {
        let _wake = wake;
        let mut flood = Vec::new();
        let mut scrapes = 0;
        for i in 0..1_000 {
            if let Ok(conn) = TcpStream::connect(addr) {
                flood.push(conn);
            }
            if i % 100 == 50 {
                assert_eq!(get(addr, "/metrics").status, 200, "a scrape during the flood");
                scrapes += 1;
            }
        }
        let _ = sender.send(scrapes);
    });
    let mut most_entries = 0;
    let done = reactor
        .run_until(Instant::now() + DEADLINE, |reactor| {
            most_entries = most_entries.max(reactor.entry_count());
            !matches!(receiver.try_recv(), Err(mpsc::TryRecvError::Empty))
        })
        .unwrap();
    assert!(done, "the flood finished before the deadline");
    client.join().expect("every scrape during the flood was answered");
    assert!(
        most_entries <= entries_before + LIMIT,
        "the endpoint held {} connections at once (limit {LIMIT})",
        most_entries - entries_before
    );
    let delivered = monitor.stats().messages - messages_before;
    assert!(delivered > 0, "no message was delivered during the flood");
    assert_eq!(monitor.state_counts().get(&RoomState::Joined), Some(&ROOMS.len()), "the rooms stayed joined");
}

/// A flood of idle connections at a full table, lasting several report
/// intervals, is logged once and then counted at most once an interval;
/// the counts add up to every connection turned away.
#[test]
fn connections_turned_away_are_logged_at_most_once_an_interval_and_all_counted() {
    const LIMIT: usize = 2;
    const FLOOD: usize = 200;
    let every = Duration::from_millis(300);
    captured::start();
    let mut setup =
        Setup::new(MetricsConfig { max_connections: LIMIT, turn_away_report: every, ..MetricsConfig::default() });
    let addr = setup.addr();
    // One connection every 5 ms, all held open: a flood over 1 s or more,
    // each newcomer past the limit taking the place of the oldest.
    let flooded = setup.with_client(move || {
        let held: Vec<TcpStream> = (0..FLOOD)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(5));
                TcpStream::connect(addr).expect("connect")
            })
            .collect();
        held.len()
    });
    let turned_away = (flooded - LIMIT) as u64;
    let counted = || -> u64 {
        let number_before = |line: &str, word: &str| -> u64 {
            let before = &line[..line.find(word).unwrap_or_else(|| panic!("{word:?} in {line:?}"))];
            before.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("a count in {line:?}"))
        };
        let reports = captured::matching("metrics: in the last");
        reports.iter().map(|(_, line)| number_before(line, " connection") + number_before(line, " refused")).sum()
    };
    let all_counted = setup.reactor.run_until(Instant::now() + DEADLINE, |_| counted() >= turned_away).unwrap();
    assert!(all_counted, "{} of {turned_away} turn-aways counted\n{}", counted(), captured::all());
    assert_eq!(counted(), turned_away, "each counted once\n{}", captured::all());

    let lines: Vec<(Instant, String)> = captured::matching("metrics: ")
        .into_iter()
        .filter(|(_, line)| line.contains("(the limit)") || line.contains("in the last"))
        .collect();
    assert!(lines[0].1.contains("2 connections open (the limit)"), "said at once\n{}", captured::all());
    assert!(lines.iter().filter(|(_, line)| line.contains("in the last 0.3 s")).count() >= 2, "{}", captured::all());
    for pair in lines.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= every, "two lines {gap:?} apart:\n{}\n{}", pair[0].1, pair[1].1);
    }
}

/// Garbage of three kinds: any bytes, HTTP-ish text, and real requests
/// with random bytes overwritten.
fn garbage(rng: &mut Rng) -> Vec<u8> {
    let len = 1 + rng.below(3000) as usize;
    match rng.below(3) {
        0 => (0..len).map(|_| rng.next_u64() as u8).collect(),
        1 => {
            let alphabet: &[u8] = b"GET /metrics HTTP/1.1\r\n: \tConnection: close\r\nContent-Length: 9\x00\xff";
            (0..len).map(|_| alphabet[rng.below(alphabet.len() as u64) as usize]).collect()
        }
        _ => {
            let mut bytes = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n".repeat(3);
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = rng.next_u64() as u8;
            }
            bytes
        }
    }
}

#[test]
fn garbage_does_not_crash_the_loop() {
    let mut setup = Setup::new(MetricsConfig::default());
    let addr = setup.addr();
    setup.with_client(move || {
        let mut rng = Rng::new(0x5EED);
        for _ in 0..150 {
            let mut conn = connect(addr);
            let _ = conn.get_mut().write_all(&garbage(&mut rng));
            // No more from us: the server answers what it can, then closes.
            let _ = conn.get_mut().shutdown(Shutdown::Write);
            let mut answer = Vec::new();
            let _ = conn.read_to_end(&mut answer);
            if !answer.is_empty() {
                assert!(answer.starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(&answer));
            }
        }
        // The endpoint still answers.
        assert_eq!(get(addr, "/rooms").status, 200);
        let metrics = get(addr, "/metrics");
        assert_eq!(value(&parse_exposition(&metrics.body), "barrage_rooms", &[("state", "joined")]), 2.0);
    });
    // And so do the rooms: the monitor still runs on the same loop.
    assert_eq!(setup.monitor.state_counts().get(&RoomState::Joined), Some(&2));
}

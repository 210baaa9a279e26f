//! The simulated server, checked end to end over loopback.
//!
//! The simulator and its test clients run on ONE reactor in this thread
//! (except where a blocking client or a real process is the point). Each
//! test client wraps `douyu::ClientSession`, the same state machine the
//! daemon uses, and records every message and the `cid` sequence numbers
//! of room messages. It speaks whatever transport the simulator was
//! started with: TLS (trusting the test certificate), WebSocket (our own
//! client, each packet in a binary message), or both. Every wait is a
//! condition with a deadline (`run_until`), never a sleep.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use barrage::douyu::frame::{self, CLIENT_TO_SERVER, DecoderConfig, FrameDecoder, FrameError};
use barrage::douyu::{ClientSession, CloseReason, Message, Request, SessionConfig, SessionEvent, stt};
use barrage::reactor::{CipherPolicy, Context, Dispatcher, EntryToken, Reactor, TimerHandle, TlsClientConfig, TlsInfo};
use barrage::sim::certificate::{SelfSigned, self_signed_localhost};
use barrage::sim::traffic::RoomTraffic;
use barrage::sim::{self, Faults, SimConfig, SimServer, SimTls, SimWebSocket, WsFault};
use barrage::websocket::{self, ClientRequest, HandshakeError, Limits, ProtocolError, WebSocket};

mod common;

// A guard against a hang, not a timing: a thousand clients on a machine
// shared with other builds can take longer than a quiet run's second.
const DEADLINE: Duration = Duration::from_secs(60);

// ----- the test client --------------------------------------------------------

/// Everything one test client saw.
#[derive(Default)]
struct Record {
    messages: Vec<Message>,
    /// `cid` of each room message, in arrival order.
    seqs: Vec<u64>,
    /// Why the session closed itself, if it did.
    reason: Option<CloseReason>,
    /// The server closed the socket (EOF or reset).
    server_closed: bool,
    /// `handle_close` ran.
    closed: bool,
    /// `handle_read` calls, and those that carried at least one room message.
    reads: u64,
    room_reads: u64,
    /// What TLS negotiated, if the connection is TLS.
    tls: Option<TlsInfo>,
    /// Over WebSocket: why it closed, if it did, and its counters.
    ws_closed: Option<websocket::CloseReason>,
    ws: websocket::Stats,
}

impl Record {
    fn count(&self, msg_type: &str) -> usize {
        self.messages.iter().filter(|m| m.msg_type() == msg_type).count()
    }

    /// The body of the room message with sequence number `seq`.
    fn body_of(&self, seq: u64) -> Option<String> {
        self.messages.iter().find(|m| room_seq(m) == Some(seq)).map(Message::to_body)
    }
}

/// A room message's sequence number: its `cid` (replies have none).
fn room_seq(message: &Message) -> Option<u64> {
    match message.msg_type() {
        "loginres" | "pingreq" | "mrkl" | "error" => None,
        _ => message.get("cid")?.parse().ok(),
    }
}

/// Stop reading after this many room messages, for a while or for good.
#[derive(Clone, Copy)]
struct Pause {
    after: usize,
    resume_after: Option<Duration>,
}

/// A reactor dispatcher around `ClientSession` (see the module docs).
struct TestClient {
    session: ClientSession,
    /// Over WebSocket: the session's bytes go through it.
    websocket: Option<WebSocket>,
    record: Rc<RefCell<Record>>,
    timer: Option<TimerHandle>,
    pause: Option<Pause>,
    paused: Rc<Cell<bool>>,
}

impl TestClient {
    /// Sends what the session wants sent, records its events, and sets the
    /// timer for its next deadline.
    fn pump(&mut self, ctx: &mut Context<'_>) {
        let mut out = Vec::new();
        if self.session.poll_transmit(&mut out) {
            match &mut self.websocket {
                None => ctx.send(&out),
                // One packet per message, as the web client sends them.
                Some(ws) => {
                    for packet in each_packet(&out) {
                        // Refused only once the WebSocket is closing: nothing to lose then.
                        let _ = ws.send_binary(packet);
                    }
                }
            }
        }
        let mut record = self.record.borrow_mut();
        if let Some(ws) = &mut self.websocket {
            let mut wire = Vec::new();
            if ws.poll_transmit(&mut wire) {
                ctx.send(&wire);
            }
            while let Some(event) = ws.poll_event() {
                if let websocket::Event::Closed(reason) = event {
                    record.ws_closed = Some(reason);
                    ctx.close();
                }
            }
            record.ws = ws.stats();
        }
        while let Some(event) = self.session.poll_event() {
            match event {
                SessionEvent::Message(message) => {
                    if let Some(seq) = room_seq(&message) {
                        record.seqs.push(seq);
                    }
                    record.messages.push(message);
                }
                SessionEvent::Joined => {}
                SessionEvent::Close(reason) => {
                    record.reason = Some(reason);
                    ctx.close();
                }
            }
        }
        if let Some(timer) = self.timer.take() {
            ctx.cancel_timer(timer);
        }
        if let Some(deadline) = self.session.next_deadline() {
            self.timer = Some(ctx.set_timer_at(deadline, 0));
        }
    }
}

impl Dispatcher for TestClient {
    fn readable(&self) -> bool {
        !self.paused.get()
    }

    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        self.record.borrow_mut().tls = ctx.tls_info();
        self.session.on_connected(Instant::now());
        self.pump(ctx);
    }

    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let before = self.record.borrow().seqs.len();
        let (session, now) = (&mut self.session, Instant::now());
        let used = match &mut self.websocket {
            None => session.on_bytes(data, now),
            Some(ws) => ws.on_bytes(data, |payload| session.on_bytes(payload, now)),
        };
        self.pump(ctx);
        let mut record = self.record.borrow_mut();
        record.reads += 1;
        if record.seqs.len() > before {
            record.room_reads += 1;
        }
        if let Some(pause) = self.pause.filter(|p| record.seqs.len() >= p.after) {
            self.pause = None;
            self.paused.set(true);
            if let Some(delay) = pause.resume_after {
                let (paused, id) = (self.paused.clone(), ctx.id());
                ctx.reactor().call_later(delay, move |reactor| {
                    paused.set(false);
                    reactor.refresh(id);
                });
            }
        }
        used
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_>, _tag: u64) {
        self.timer = None;
        self.session.on_timeout(Instant::now());
        self.pump(ctx);
    }

    fn handle_eof(&mut self, ctx: &mut Context<'_>) {
        self.record.borrow_mut().server_closed = true;
        ctx.close();
    }

    fn handle_error(&mut self, _ctx: &mut Context<'_>, _error: std::io::Error) {
        self.record.borrow_mut().server_closed = true;
    }

    fn handle_close(&mut self, _ctx: &mut Context<'_>) {
        self.record.borrow_mut().closed = true;
    }
}

/// A test client's id and what it saw.
struct Client {
    id: EntryToken,
    record: Rc<RefCell<Record>>,
}

impl Client {
    fn rec(&self) -> std::cell::Ref<'_, Record> {
        self.record.borrow()
    }
    fn room_messages(&self) -> usize {
        self.rec().seqs.len()
    }
    fn closed(&self) -> bool {
        self.rec().closed
    }
}

// ----- harness ------------------------------------------------------------------

/// The Douyu packets in `bytes`, cut at their length fields.
fn each_packet(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let field = bytes.first_chunk::<4>()?;
        let (packet, rest) = bytes.split_at((u32::from_le_bytes(*field) as usize + 4).min(bytes.len()));
        bytes = rest;
        Some(packet)
    })
}

/// A reactor with a simulator on it, and how its clients reach it.
struct Harness {
    reactor: Reactor,
    sim: SimServer,
    /// The simulator serves TLS: clients trust its certificate.
    tls: Option<TlsClientConfig>,
    websocket: bool,
}

impl Harness {
    fn new(configure: impl FnOnce(&mut SimConfig)) -> Self {
        let mut config = SimConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            stats_interval: None,
            seed: 42,
            ..SimConfig::default()
        };
        configure(&mut config);
        let tls = config.tls.as_ref().map(|tls| TlsClientConfig::with_ca_pem(&tls.cert_pem).unwrap());
        let websocket = config.websocket.is_some();
        let mut reactor = Reactor::new().unwrap();
        let sim = sim::start(&mut reactor, config).unwrap();
        Harness { reactor, sim, tls, websocket }
    }

    fn client(&mut self, room: u64) -> Client {
        self.client_with(room, SessionConfig::default(), None)
    }

    fn client_with(&mut self, room: u64, config: SessionConfig, pause: Option<Pause>) -> Client {
        let addr = self.sim.local_addr();
        let record = Rc::new(RefCell::new(Record::default()));
        let key = (room as u128).to_le_bytes();
        let websocket = self
            .websocket
            .then(|| WebSocket::client(&ClientRequest::new(addr.to_string()), Limits::default(), key, room).unwrap());
        let client = TestClient {
            session: ClientSession::new(room, config),
            websocket,
            record: record.clone(),
            timer: None,
            pause,
            paused: Rc::new(Cell::new(false)),
        };
        let id = match &self.tls {
            Some(tls) => self.reactor.connect_tls(addr, tls, "127.0.0.1", client).unwrap(),
            None => self.reactor.connect(addr, client).unwrap(),
        };
        Client { id, record }
    }
}

/// One certificate for the whole test binary (a key takes a moment to make).
fn certificate() -> &'static SelfSigned {
    static CERT: OnceLock<SelfSigned> = OnceLock::new();
    CERT.get_or_init(|| self_signed_localhost().unwrap())
}

fn tls(policy: CipherPolicy) -> Option<SimTls> {
    let cert = certificate();
    Some(SimTls { cert_pem: cert.cert_pem.clone(), key_pem: cert.key_pem.clone(), policy })
}

/// `wss://` as Douyu serves it: WebSocket over TLS with Douyu's one suite.
fn wss(config: &mut SimConfig) {
    config.tls = tls(CipherPolicy::Legacy);
    config.websocket = Some(SimWebSocket::default());
}

fn wait(reactor: &mut Reactor, what: &str, mut done: impl FnMut() -> bool) {
    let reached = reactor.run_until(Instant::now() + DEADLINE, |_| done()).unwrap();
    assert!(reached, "timed out waiting for: {what}");
}

fn assert_contiguous(seqs: &[u64], who: &str) {
    assert!(!seqs.is_empty(), "{who} got no room messages");
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{who}: sequence jumps from {} to {}", pair[0], pair[1]);
    }
}

fn session(heartbeat_ms: u64, idle_ms: u64) -> SessionConfig {
    SessionConfig {
        heartbeat: Duration::from_millis(heartbeat_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        ..SessionConfig::default()
    }
}

// ----- the happy path ---------------------------------------------------------------

#[test]
fn three_clients_in_two_rooms_get_complete_identical_streams() {
    let mut h = Harness::new(|c| c.rate = 500.0);
    let a = h.client(1001);
    let b = h.client(1001);
    let c = h.client(1002);
    wait(&mut h.reactor, "400 room messages each", || [&a, &b, &c].iter().all(|x| x.room_messages() >= 400));

    for (client, name, room) in [(&a, "a", 1001), (&b, "b", 1001), (&c, "c", 1002)] {
        let rec = client.rec();
        assert_eq!(rec.messages[0].msg_type(), "loginres", "{name}");
        assert_eq!(rec.messages[1].msg_type(), "pingreq", "{name}");
        assert!(rec.messages[1].get("tick").unwrap().parse::<u64>().unwrap() > 1_600_000_000_000);
        assert_contiguous(&rec.seqs, name);
        assert!(rec.reason.is_none() && !rec.server_closed, "{name} was closed");
        for message in rec.messages.iter().filter(|m| m.msg_type() == "chatmsg") {
            assert_eq!(message.get("rid"), Some(room.to_string().as_str()), "{name}: {message:?}");
        }
    }

    // The same room, the same bytes: compare a and b wherever both have a message.
    let (ra, rb) = (a.rec(), b.rec());
    let first = ra.seqs[0].max(rb.seqs[0]);
    let last = (*ra.seqs.last().unwrap()).min(*rb.seqs.last().unwrap());
    assert!(last > first + 300, "a and b overlap on {first}..={last}");
    for seq in first..=last {
        assert_eq!(ra.body_of(seq), rb.body_of(seq), "seq {seq} differs between a and b");
    }
    // The room's stream is the seeded generator's: the same seed gives the same messages.
    assert_eq!(ra.seqs[0], 1, "a joined the new room first");
    let mut traffic = RoomTraffic::new(42, 1001);
    for seq in 1..=100 {
        let expected = Message::decode(&traffic.next_body()).to_body();
        assert_eq!(ra.body_of(seq).unwrap(), expected, "seq {seq}");
    }
    assert_ne!(ra.body_of(5), c.rec().body_of(5), "another room, another stream");

    // Tricky text survived escaping, and nested values decode level by level.
    let rc = c.rec();
    let all: Vec<&Message> = ra.messages.iter().chain(rc.messages.iter()).collect();
    let texts: Vec<&str> = all.iter().filter_map(|m| m.get("txt")).collect();
    assert!(texts.iter().any(|t| t.contains('/') && !t.contains("@S")), "a text with /");
    assert!(texts.iter().any(|t| t.starts_with('@')), "a text with @");
    assert!(texts.contains(&"@S 不是斜杠"), "a literal @S stays @S");
    assert!(texts.contains(&""), "an empty text");
    assert!(texts.iter().any(|t| t.len() > 1000), "a long text");
    let el = all.iter().filter_map(|m| m.as_map().get_list("el")).find(|l| !l.is_empty()).expect("a nested el");
    assert!(stt::decode_map(el.get(0).unwrap()).get("eid").unwrap().parse::<u64>().is_ok());
    let frank = all.iter().find(|m| m.msg_type() == "frank").expect("a frank");
    let entry = stt::decode_map(frank.as_map().get_list("list").unwrap().get(0).unwrap());
    assert!(entry.get("ic").unwrap().starts_with("avatar_v3/"), "{entry:?}");
    assert!(all.iter().any(|m| m.msg_type() == "lucky_wheel_2099"), "an unknown type");
    drop((ra, rb, rc));

    let stats = h.sim.stats();
    assert_eq!((stats.clients, stats.rooms, stats.accepted), (3, 2, 3));
    assert!(h.sim.room_messages(1001).unwrap() >= *a.rec().seqs.last().unwrap());
    assert_eq!(h.sim.room_messages(4242), None);
}

#[test]
fn a_thousand_clients_in_five_hundred_rooms_on_one_thread() {
    let mut h = Harness::new(|c| c.rate = 20.0);
    let clients: Vec<Client> = (0..1000).map(|i| h.client(100 + i / 2)).collect();
    wait(&mut h.reactor, "5 room messages for every client", || clients.iter().all(|c| c.room_messages() >= 5));
    for (i, client) in clients.iter().enumerate() {
        assert_contiguous(&client.rec().seqs, &format!("client {i}"));
    }
    let stats = h.sim.stats();
    assert_eq!((stats.clients, stats.rooms), (1000, 500));
    // Each message was made once for its room, and queued once per member.
    let made: u64 = (100..600).map(|room| h.sim.room_messages(room).unwrap()).sum();
    assert_eq!(stats.room_messages, made);
    assert!(stats.frames_sent > made && stats.frames_sent <= 2 * made, "{stats:?}");
}

#[test]
fn rate_zero_sends_only_login_replies_and_heartbeat_echoes() {
    let mut h = Harness::new(|c| c.rate = 0.0);
    let client = h.client_with(77, session(30, 5_000), None);
    wait(&mut h.reactor, "5 heartbeat echoes", || client.rec().count("mrkl") >= 5);
    let rec = client.rec();
    let types: Vec<&str> = rec.messages.iter().map(Message::msg_type).collect();
    assert_eq!(types[..2], ["loginres", "pingreq"]);
    assert!(types[2..].iter().all(|t| *t == "mrkl"), "{types:?}");
    assert!(rec.seqs.is_empty());
    assert_eq!(h.sim.stats().room_messages, 0);
    assert_eq!(h.sim.stats().rooms, 1, "joined, but silent");
}

#[test]
fn a_client_that_pauses_reading_loses_nothing() {
    let mut h = Harness::new(|c| c.rate = 500.0);
    let pause = Pause { after: 50, resume_after: Some(Duration::from_millis(400)) };
    let client = h.client_with(3, SessionConfig::default(), Some(pause));
    wait(&mut h.reactor, "500 room messages after a pause", || client.room_messages() >= 500);
    assert_contiguous(&client.rec().seqs, "paused client");
}

#[test]
fn a_client_that_stops_reading_is_dropped_as_a_slow_consumer_alone() {
    // The limit must hold one catch-up burst for a client that keeps
    // reading: when the loop stalls, a tick sends up to one second of
    // messages at once (4,000 here, about 1.3 MB). Only a client that stopped
    // reading grows past 2 MiB (after its kernel buffers fill).
    let mut h = Harness::new(|c| {
        c.rate = 4_000.0;
        c.max_client_buffer = 2 * 1024 * 1024;
    });
    let stuck = h.client_with(9, SessionConfig::default(), Some(Pause { after: 10, resume_after: None }));
    let reader = h.client(9);
    let sim = &h.sim;
    wait(&mut h.reactor, "a slow client dropped", || sim.stats().dropped_slow >= 1);
    assert_eq!(sim.stats().dropped_slow, 1, "only the client that stopped reading");
    // (The stuck client itself cannot notice: it is not reading.)
    wait(&mut h.reactor, "the server forgot it", || sim.stats().clients == 1);
    assert!(stuck.room_messages() >= 10 && !stuck.closed());
    let before = reader.room_messages();
    wait(&mut h.reactor, "the reader goes on", || reader.room_messages() > before + 500);
    assert!(!reader.closed());
    assert_contiguous(&reader.rec().seqs, "reader");
}

// ----- faults ------------------------------------------------------------------------

#[test]
fn fragment_splits_frames_across_many_reads_and_loses_nothing() {
    let mut h = Harness::new(|c| {
        c.rate = 50.0;
        c.faults.fragment = true;
    });
    let client = h.client(11);
    wait(&mut h.reactor, "60 room messages in pieces", || client.room_messages() >= 60);
    let rec = client.rec();
    assert_contiguous(&rec.seqs, "fragmented client");
    let frames = rec.messages.len() as u64;
    assert!(rec.reads > 3 * frames, "{} reads for {frames} frames: not fragmented", rec.reads);
    assert_eq!(rec.messages[0].msg_type(), "loginres", "replies are fragmented too, and arrive whole");
}

#[test]
fn fragment_finishes_writing_before_a_drop_or_a_corruption_closes() {
    // The closing faults must wait for the fragment queue to drain, or the
    // last messages (and the bad frame) would never reach the wire.
    let mut h = Harness::new(|c| {
        c.rate = 100.0;
        c.faults = Faults { fragment: true, drop_every: Some(10), ..Faults::default() };
    });
    let dropped = h.client(14);
    wait(&mut h.reactor, "dropped", || dropped.closed());
    assert_eq!(dropped.rec().seqs, (1..=10).collect::<Vec<_>>());
    assert!(dropped.rec().server_closed && dropped.rec().reason.is_none());

    let mut h = Harness::new(|c| {
        c.rate = 100.0;
        c.faults = Faults { fragment: true, corrupt_every: Some(5), ..Faults::default() };
    });
    let corrupted = h.client(15);
    wait(&mut h.reactor, "corrupted", || corrupted.closed());
    assert_eq!(corrupted.rec().seqs, (1..=5).collect::<Vec<_>>());
    assert!(matches!(corrupted.rec().reason, Some(CloseReason::Protocol(FrameError::LengthTooLong { .. }))));
}

#[test]
fn coalesce_puts_many_frames_in_each_read_and_loses_nothing() {
    let mut h = Harness::new(|c| {
        c.rate = 200.0;
        c.faults.coalesce = true;
    });
    let client = h.client(12);
    wait(&mut h.reactor, "300 room messages in bursts", || client.room_messages() >= 300);
    let rec = client.rec();
    assert_contiguous(&rec.seqs, "coalesced client");
    // Without coalescing a 50 ms tick carries ~10 messages at this rate.
    let per_read = rec.seqs.len() as f64 / rec.room_reads as f64;
    assert!(per_read >= 15.0, "{per_read:.1} room messages per read: not coalesced");
}

#[test]
fn drop_every_closes_after_exactly_n_and_the_room_resumes_where_it_stopped() {
    let mut h = Harness::new(|c| {
        c.rate = 200.0;
        c.faults.drop_every = Some(25);
    });
    let first = h.client(5);
    wait(&mut h.reactor, "first connection dropped", || first.closed());
    {
        let rec = first.rec();
        assert!(rec.server_closed, "the server closed it");
        assert_eq!(rec.reason, None, "the session saw no error");
        assert_eq!(rec.seqs, (1..=25).collect::<Vec<_>>());
    }
    // The room was empty in between, so it made nothing: numbering goes on.
    let second = h.client(5);
    wait(&mut h.reactor, "second connection dropped", || second.closed());
    assert_eq!(second.rec().seqs, (26..=50).collect::<Vec<_>>());
    assert_eq!(h.sim.stats().fault_drops, 2);
}

#[test]
fn corrupt_every_breaks_only_the_client_it_is_sent_to_cycling_the_kinds() {
    let mut h = Harness::new(|c| {
        c.rate = 200.0;
        c.faults.corrupt_every = Some(30);
    });
    // Clients join one after the other, each once the previous is 10
    // messages in, so they reach their 30th message in join order.
    let mut clients: Vec<Client> = Vec::new();
    for _ in 0..4 {
        if let Some(previous) = clients.last() {
            wait(&mut h.reactor, "the previous client 10 messages in", || previous.room_messages() >= 10);
        }
        clients.push(h.client(7));
    }
    wait(&mut h.reactor, "all four closed", || clients.iter().all(Client::closed));

    let mut last_seq_of_previous = 0;
    for (i, client) in clients.iter().enumerate() {
        let rec = client.rec();
        assert_contiguous(&rec.seqs, &format!("client {i}"));
        assert_eq!(rec.seqs.len(), 30, "client {i} got all its messages before the bad frame");
        // Unaffected by the previous client's bad frame: it kept receiving after it.
        assert!(*rec.seqs.last().unwrap() > last_seq_of_previous);
        last_seq_of_previous = *rec.seqs.last().unwrap();
        let Some(CloseReason::Protocol(error)) = &rec.reason else {
            panic!("client {i} closed with {:?}", rec.reason);
        };
        let expected = match i {
            0 => matches!(error, FrameError::LengthTooLong { length: 2_097_152, .. }),
            1 => matches!(error, FrameError::LengthMismatch { .. }),
            2 => matches!(error, FrameError::UnexpectedType { found: 689, .. }),
            _ => matches!(error, FrameError::MissingTerminator { .. }),
        };
        assert!(expected, "client {i}: {error:?}");
    }
    assert_eq!(h.sim.stats().fault_corruptions, 4);
}

#[test]
fn stall_after_goes_silent_and_the_clients_idle_timeout_notices() {
    let mut h = Harness::new(|c| {
        c.rate = 200.0;
        c.faults.stall_after = Some(20);
    });
    // Heartbeats every 100 ms keep the server from dropping it; no bytes for
    // 500 ms make it give up.
    let client = h.client_with(13, session(100, 500), None);
    wait(&mut h.reactor, "the client gave up", || client.closed());
    let rec = client.rec();
    assert_eq!(rec.reason, Some(CloseReason::IdleTimeout));
    assert!(!rec.server_closed, "the server kept the socket open");
    assert_eq!(rec.seqs, (1..=20).collect::<Vec<_>>());
    assert_eq!(h.sim.stats().fault_stalls, 1);
}

#[test]
fn silent_clients_are_dropped_and_beating_ones_stay() {
    let mut h = Harness::new(|c| {
        c.rate = 0.0;
        c.heartbeat_timeout = Duration::from_millis(500);
    });
    let start = Instant::now();
    let silent = h.client_with(21, session(60_000, 60_000), None);
    let beating = h.client_with(21, session(100, 60_000), None);
    wait(&mut h.reactor, "the silent client dropped", || silent.closed());
    let dropped_after = start.elapsed();
    assert!(silent.rec().server_closed);
    assert!(dropped_after >= Duration::from_millis(500), "dropped after {dropped_after:?}");
    // The other one is still there well past the timeout.
    wait(&mut h.reactor, "1.5 s", || start.elapsed() >= Duration::from_millis(1500));
    assert!(!beating.closed());
    assert!(beating.rec().count("mrkl") >= 5, "its heartbeats were echoed");
    assert_eq!(h.sim.stats().dropped_idle, 1);
    assert_eq!(h.sim.stats().clients, 1);
}

#[test]
fn shutdown_says_goodbye_with_error_52() {
    let mut h = Harness::new(|c| c.rate = 50.0);
    let client = h.client(31);
    wait(&mut h.reactor, "some room messages", || client.room_messages() >= 5);
    h.sim.shutdown(&mut h.reactor);
    wait(&mut h.reactor, "client closed", || client.closed());
    assert_eq!(client.rec().reason, Some(CloseReason::ServerError { code: Some(52) }));
    assert!(TcpStream::connect(h.sim.local_addr()).is_err(), "no longer listening");
    let _ = client.id;
}

// ----- the original tutorial client ----------------------------------------------

/// The 2019 tutorial client reads the 4 length bytes, then makes ONE `recv`
/// for the rest and assumes it got the whole packet. With default flags the
/// simulator writes whole frames, so that client must work unchanged.
#[test]
fn the_tutorial_clients_one_recv_per_packet_works_with_default_flags() {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let mut reactor = Reactor::new().unwrap();
        let config = SimConfig { listen: "127.0.0.1:0".parse().unwrap(), rate: 200.0, ..SimConfig::default() };
        let sim = sim::start(&mut reactor, config).unwrap();
        ready_tx.send((sim.local_addr(), reactor.handle())).unwrap();
        reactor.run().unwrap();
    });
    let (addr, handle) = ready_rx.recv_timeout(DEADLINE).unwrap();

    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    // Like the tutorial: one send for the length, one for the rest.
    for request in [Request::Login { room: 9999 }, Request::JoinGroup { room: 9999, group: -9999 }] {
        let packet = request.to_packet();
        stream.write_all(&packet[..4]).unwrap();
        stream.write_all(&packet[4..]).unwrap();
    }
    let mut types = Vec::new();
    for i in 0..300 {
        let mut length = [0u8; 4];
        stream.read_exact(&mut length).unwrap();
        let length = u32::from_le_bytes(length) as usize;
        let mut rest = vec![0u8; length];
        let got = stream.read(&mut rest).unwrap();
        assert_eq!(got, length, "packet {i}: one recv got {got} of {length} bytes");
        let body = std::str::from_utf8(&rest[8..length - 1]).unwrap();
        types.push(Message::decode(body).msg_type().to_string());
    }
    assert_eq!(types[..2], ["loginres", "pingreq"]);
    assert!(types.iter().filter(|t| *t == "chatmsg").count() > 100);

    handle.stop();
    server.join().unwrap();
}

// ----- the real binary -------------------------------------------------------------

/// Kills the child process however the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn barrage(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_barrage"));
    command.args(args);
    command
}

#[test]
fn barrage_serve_prints_its_address_and_accepts_a_login() {
    let (_serve, addr) = serve(&[]);
    assert_ne!(addr.port(), 0, "the real port is printed");

    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(&Request::Login { room: 9999 }.to_packet()).unwrap();
    let mut decoder = FrameDecoder::new(DecoderConfig::client());
    let mut buf = [0u8; 4096];
    let first = loop {
        if let Some(packet) = decoder.next_packet().unwrap() {
            break packet.body.into_owned();
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed the connection");
        decoder.feed(&buf[..n]);
    };
    assert_eq!(Message::decode(&first).msg_type(), "loginres");
}

/// Runs the binary to completion (killing it at the deadline) and returns
/// its exit status and stderr.
fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = barrage(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut guard = KillOnDrop(child);
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "barrage {args:?} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    (status, text)
}

#[test]
fn bad_flags_exit_non_zero_with_one_line() {
    for (args, mentions) in [
        (&["serve", "--rate", "-1"][..], "--rate"),
        (&["serve", "--rate", "fast"], "--rate"),
        (&["serve", "--listen", "nonsense"], "--listen"),
        (&["serve", "--heartbeat-timeout", "0"], "--heartbeat-timeout"),
        (&["serve", "--drop-every", "0"], "--drop-every"),
        (&["serve", "--max-client-buffer", "12XB"], "--max-client-buffer"),
        (&["serve", "--no-such-flag"], "--no-such-flag"),
        (&["serve", "--log-level", "loud"], "--log-level"),
        (&["frobnicate"], "frobnicate"),
        (&["watch", "--poll-interval", "-5", "1"], "--poll-interval"),
        (&["bench", "--poll-interval", "1001"], "--poll-interval"),
    ] {
        let (status, stderr) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "barrage {args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "barrage {args:?} printed:\n{stderr}");
        assert!(stderr.starts_with("barrage: error: ") && stderr.contains(mentions), "barrage {args:?}: {stderr}");
    }
}

#[test]
fn an_address_in_use_is_a_one_line_runtime_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, stderr) = run_to_exit(&["serve", "--listen", &addr, "--log-level", "error"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("barrage: error: cannot listen on {addr}: ")), "{stderr}");
}

/// The server refuses a client's bad frame by dropping that client only.
#[test]
fn a_client_sending_a_bad_frame_is_dropped_alone() {
    let mut h = Harness::new(|c| c.rate = 100.0);
    let good = h.client(41);
    let addr = h.sim.local_addr();
    let mut bad = TcpStream::connect(addr).unwrap();
    let mut wrong_type = Vec::new();
    frame::encode_packet(&mut wrong_type, CLIENT_TO_SERVER + 1, "type@=loginreq/roomid@=41/");
    bad.write_all(&wrong_type).unwrap();
    let sim = &h.sim;
    wait(&mut h.reactor, "the bad client dropped", || sim.stats().dropped_bad_frame == 1);
    let before = good.room_messages();
    wait(&mut h.reactor, "the good client goes on", || good.room_messages() > before + 20);
    assert!(!good.closed());
    assert_contiguous(&good.rec().seqs, "good client");
}

// ----- over TLS and WebSocket ---------------------------------------------------------

#[test]
fn wss_carries_one_packet_per_message_over_douyus_tls_suite() {
    let mut h = Harness::new(|c| {
        c.rate = 200.0;
        wss(c);
    });
    let client = h.client(1001);
    wait(&mut h.reactor, "200 room messages over wss", || client.room_messages() >= 200);
    {
        let rec = client.rec();
        let tls = rec.tls.expect("a TLS connection");
        assert_eq!((tls.protocol, tls.cipher), ("TLSv1.2", "AES256-GCM-SHA384"), "what Douyu's endpoint offers");
        assert_eq!(rec.messages[0].msg_type(), "loginres");
        assert_eq!(rec.messages[1].msg_type(), "pingreq");
        assert_eq!(rec.seqs[0], 1);
        assert_contiguous(&rec.seqs, "wss client");
        assert_eq!(rec.ws.binary_messages, rec.messages.len() as u64, "one packet per message");
        assert_eq!(rec.ws_closed, None);
    }
    // Going away: Douyu's error 52, then a close frame.
    h.sim.shutdown(&mut h.reactor);
    wait(&mut h.reactor, "client closed", || client.closed());
    assert_eq!(client.rec().reason, Some(CloseReason::ServerError { code: Some(52) }));
}

#[test]
fn tls_alone_and_websocket_alone_carry_the_stream_too() {
    for websocket in [false, true] {
        let name = if websocket { "WebSocket alone" } else { "TLS alone" };
        let mut h = Harness::new(|c| {
            c.rate = 200.0;
            match websocket {
                true => c.websocket = Some(SimWebSocket::default()),
                false => c.tls = tls(CipherPolicy::Legacy),
            }
        });
        let client = h.client(7);
        wait(&mut h.reactor, name, || client.room_messages() >= 100);
        let rec = client.rec();
        assert_contiguous(&rec.seqs, name);
        assert_eq!(rec.tls.is_some(), !websocket, "{name}");
        assert_eq!(rec.ws.binary_messages, if websocket { rec.messages.len() as u64 } else { 0 }, "{name}");
    }
}

/// A client that offers only the suites `ciphers` names, on TLS 1.2.
fn client_offering(ciphers: &str) -> TlsClientConfig {
    use openssl::ssl::{SslContextBuilder, SslMethod, SslVerifyMode, SslVersion};
    let mut builder = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
    builder.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    builder.set_cipher_list(ciphers).unwrap();
    builder.set_verify(SslVerifyMode::PEER);
    builder.cert_store_mut().add_cert(openssl::x509::X509::from_pem(&certificate().cert_pem).unwrap()).unwrap();
    TlsClientConfig::from_builder(builder)
}

#[test]
fn legacy_offers_only_rsa_key_exchange_and_modern_only_forward_secret_suites() {
    let mut legacy = Harness::new(|c| c.tls = tls(CipherPolicy::Legacy));
    legacy.tls = Some(client_offering("ECDHE+AESGCM"));
    let refused = legacy.client(1);
    wait(&mut legacy.reactor, "the forward-secret-only client refused", || refused.closed());
    assert!(refused.rec().tls.is_none() && refused.rec().messages.is_empty());

    let mut modern = Harness::new(|c| {
        c.rate = 100.0;
        c.tls = tls(CipherPolicy::Modern);
    });
    let client = modern.client(2);
    wait(&mut modern.reactor, "messages over modern TLS", || client.room_messages() >= 20);
    let info = client.rec().tls.unwrap();
    assert!(info.protocol == "TLSv1.3" || info.cipher.starts_with("ECDHE"), "{info}");
    modern.tls = Some(client_offering("AES256-GCM-SHA384"));
    let refused = modern.client(3);
    wait(&mut modern.reactor, "the RSA-key-exchange-only client refused", || refused.closed());
    assert!(refused.rec().tls.is_none() && refused.rec().messages.is_empty());
}

#[test]
fn wss_fragment_splits_packets_across_messages_and_loses_nothing() {
    let mut h = Harness::new(|c| {
        c.rate = 50.0;
        c.faults.fragment = true;
        wss(c);
    });
    let client = h.client(11);
    wait(&mut h.reactor, "60 room messages in pieces", || client.room_messages() >= 60);
    let rec = client.rec();
    assert_contiguous(&rec.seqs, "fragmented wss client");
    assert_eq!(rec.messages[0].msg_type(), "loginres");
    let (messages, packets) = (rec.ws.binary_messages, rec.messages.len() as u64);
    assert!(messages > 3 * packets, "{messages} binary messages for {packets} packets: not split");
    assert_eq!(rec.ws_closed, None);
}

#[test]
fn wss_coalesce_puts_many_packets_in_each_message_and_loses_nothing() {
    let mut h = Harness::new(|c| {
        c.rate = 200.0;
        c.faults.coalesce = true;
        wss(c);
    });
    let client = h.client(12);
    wait(&mut h.reactor, "300 room messages in bursts", || client.room_messages() >= 300);
    let rec = client.rec();
    assert_contiguous(&rec.seqs, "coalesced wss client");
    let per_message = rec.messages.len() as f64 / rec.ws.binary_messages as f64;
    assert!(per_message >= 10.0, "{per_message:.1} packets per message: not coalesced");
}

#[test]
fn wss_drop_every_closes_without_a_close_frame_after_exactly_n() {
    let mut h = Harness::new(|c| {
        c.rate = 200.0;
        c.faults.drop_every = Some(25);
        wss(c);
    });
    let first = h.client(5);
    wait(&mut h.reactor, "first connection dropped", || first.closed());
    {
        let rec = first.rec();
        assert!(rec.server_closed, "the server closed it");
        assert_eq!((&rec.reason, &rec.ws_closed), (&None, &None), "a dropped connection, nothing said");
        assert_eq!(rec.seqs, (1..=25).collect::<Vec<_>>());
    }
    let second = h.client(5);
    wait(&mut h.reactor, "second connection dropped", || second.closed());
    assert_eq!(second.rec().seqs, (26..=50).collect::<Vec<_>>());
}

#[test]
fn wss_corrupt_every_breaks_the_douyu_bytes_inside_a_well_formed_message() {
    let mut h = Harness::new(|c| {
        c.rate = 200.0;
        c.faults.corrupt_every = Some(30);
        wss(c);
    });
    let client = h.client(7);
    wait(&mut h.reactor, "closed", || client.closed());
    let rec = client.rec();
    assert_eq!(rec.seqs, (1..=30).collect::<Vec<_>>());
    assert!(matches!(rec.reason, Some(CloseReason::Protocol(FrameError::LengthTooLong { length: 2_097_152, .. }))));
    assert_eq!(rec.ws_closed, None, "the WebSocket layer found nothing wrong");
    assert_eq!(h.sim.stats().fault_corruptions, 1);
}

#[test]
fn wss_stall_after_goes_silent_and_the_clients_idle_timeout_notices() {
    let mut h = Harness::new(|c| {
        c.rate = 200.0;
        c.faults.stall_after = Some(20);
        wss(c);
        c.websocket = Some(SimWebSocket { ping_interval: Some(Duration::from_millis(20)), fault: None });
    });
    let client = h.client_with(13, session(100, 500), None);
    wait(&mut h.reactor, "the client gave up", || client.closed());
    let rec = client.rec();
    assert_eq!(rec.reason, Some(CloseReason::IdleTimeout), "not even pings came");
    assert!(!rec.server_closed, "the server kept the socket open");
    assert_eq!(rec.seqs, (1..=20).collect::<Vec<_>>());
}

#[test]
fn pings_are_answered_and_counted_and_text_frames_are_ignored() {
    let mut h = Harness::new(|c| {
        c.rate = 50.0;
        wss(c);
        c.websocket = Some(SimWebSocket { ping_interval: Some(Duration::from_millis(20)), fault: None });
    });
    let client = h.client(21);
    let sim = &h.sim;
    wait(&mut h.reactor, "8 pings answered and 2 text frames", || {
        let rec = client.rec();
        rec.ws.pings >= 8 && rec.ws.text_messages >= 2 && sim.stats().ws_pongs >= 8
    });
    let rec = client.rec();
    assert_contiguous(&rec.seqs, "pinged client");
    assert_eq!(rec.ws_closed, None);
    let stats = sim.stats();
    assert!(stats.ws_pings >= rec.ws.pings && stats.ws_texts >= rec.ws.text_messages, "{stats:?}");
    // A run of n ping rounds holds n/4 multiples of 4, rounded down or up.
    let every = sim::TEXT_EVERY_PINGS;
    let texts = stats.ws_pings / every..=stats.ws_pings.div_ceil(every);
    assert!(texts.contains(&stats.ws_texts), "a text frame every 4th ping: {stats:?}");
}

#[test]
fn each_websocket_fault_produces_what_it_says() {
    for fault in WsFault::ALL {
        let mut h = Harness::new(|c| {
            c.rate = 100.0;
            wss(c);
            c.websocket = Some(SimWebSocket { fault: Some(fault), ..SimWebSocket::default() });
        });
        // Long timeouts: the client must notice each fault by itself, at once.
        let mut config = session(60_000, 60_000);
        if fault == WsFault::StallHandshake {
            config.login_timeout = Duration::from_millis(300);
        }
        let client = h.client_with(31, config, None);
        wait(&mut h.reactor, fault.name(), || client.closed());
        let rec = client.rec();
        assert!(rec.messages.is_empty(), "{fault:?}: got {:?}", rec.messages);
        let closed = rec.ws_closed.clone();
        let expected = match fault {
            WsFault::MaskedFrame => {
                matches!(closed, Some(websocket::CloseReason::Protocol(ProtocolError::MaskedByServer)))
            }
            WsFault::OversizedFrame => matches!(
                closed,
                Some(websocket::CloseReason::Protocol(ProtocolError::MessageTooBig { length: 0x1_0000_0000, .. }))
            ),
            WsFault::RejectUpgrade => {
                matches!(closed, Some(websocket::CloseReason::Handshake(HandshakeError::Status(403))))
            }
            WsFault::BadAccept => matches!(closed, Some(websocket::CloseReason::Handshake(HandshakeError::BadAccept))),
            WsFault::StallHandshake => closed.is_none() && rec.reason == Some(CloseReason::LoginTimeout),
        };
        assert!(expected, "{fault:?}: WebSocket {closed:?}, session {:?}", rec.reason);
    }
}

#[test]
fn a_request_that_is_not_an_upgrade_is_answered_400_and_closed() {
    let mut h = Harness::new(|c| c.websocket = Some(SimWebSocket::default()));
    let addr = h.sim.local_addr();
    // A raw Douyu client, on a thread: it reads until the server closes.
    let raw = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(&Request::Login { room: 9999 }.to_packet()).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        answer
    });
    let sim = &h.sim;
    wait(&mut h.reactor, "the upgrade refused", || sim.stats().ws_refused == 1 && sim.stats().clients == 0);
    let answer = raw.join().unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{}", String::from_utf8_lossy(&answer));
}

// ----- the real binary over wss ------------------------------------------------------

/// Spawns `barrage serve ARGS --listen 127.0.0.1:0` and returns it with
/// the address of its first stdout line.
fn serve(args: &[&str]) -> (KillOnDrop, SocketAddr) {
    let mut child = barrage(&[&["serve", "--listen", "127.0.0.1:0", "--log-level", "warn"], args].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = KillOnDrop(child);
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = line_tx.send(line);
    });
    let line = line_rx.recv_timeout(DEADLINE).expect("no 'listening on' line");
    let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {line:?}"));
    (guard, addr.parse().unwrap())
}

/// A reactor with one wss client of `addr`, trusting `tls`; runs until the
/// client has `count` room messages and returns what it saw.
fn wss_client_of(addr: SocketAddr, tls: TlsClientConfig, count: usize) -> Record {
    let mut reactor = Reactor::new().unwrap();
    let record = Rc::new(RefCell::new(Record::default()));
    let ws = WebSocket::client(&ClientRequest::new(addr.to_string()), Limits::default(), [1; 16], 1).unwrap();
    let client = TestClient {
        session: ClientSession::new(77, SessionConfig::default()),
        websocket: Some(ws),
        record: record.clone(),
        timer: None,
        pause: None,
        paused: Rc::new(Cell::new(false)),
    };
    reactor.connect_tls(addr, &tls, "127.0.0.1", client).unwrap();
    wait(&mut reactor, "room messages over wss", || record.borrow().seqs.len() >= count || record.borrow().closed);
    record.take()
}

#[test]
fn barrage_serve_tls_ws_writes_a_certificate_that_verifies_127_0_0_1() {
    let dir = common::process::TempDir::new("sim-cert-out");
    let cert = dir.path("cert.pem");
    let (_server, addr) = serve(&["--rate", "100", "--tls", "--ws", "--tls-cert-out", cert.to_str().unwrap()]);
    // The file is written before the address is printed.
    let trusting = TlsClientConfig::new(Some(&cert)).unwrap();
    let rec = wss_client_of(addr, trusting, 20);
    assert_contiguous(&rec.seqs, "wss client of barrage serve");
    assert_eq!(rec.tls.map(|t| t.cipher), Some("AES256-GCM-SHA384"));
    assert_eq!(rec.ws.binary_messages, rec.messages.len() as u64);
}

#[test]
fn barrage_serve_tls_cert_and_key_serve_the_given_certificate() {
    let dir = common::process::TempDir::new("sim-cert-given");
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    std::fs::write(&cert, &certificate().cert_pem).unwrap();
    std::fs::write(&key, &certificate().key_pem).unwrap();
    let flags = ["--rate", "100", "--tls", "--tls-modern", "--ws", "--tls-cert", cert.to_str().unwrap()];
    let (_server, addr) = serve(&[&flags[..], &["--tls-key", key.to_str().unwrap()]].concat());
    let rec = wss_client_of(addr, TlsClientConfig::with_ca_pem(&certificate().cert_pem).unwrap(), 20);
    assert_contiguous(&rec.seqs, "wss client of barrage serve");
    let info = rec.tls.unwrap();
    assert!(info.protocol == "TLSv1.3" || info.cipher.starts_with("ECDHE"), "{info}");
}

#[test]
fn barrage_serve_help_documents_every_websocket_fault_and_bad_tls_flags_are_one_line_errors() {
    let output = barrage(&["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for fault in WsFault::ALL {
        assert!(help.contains(fault.name()) && help.contains(fault.what_the_client_sees()), "{fault:?}:\n{help}");
    }
    let dir = common::process::TempDir::new("sim-bad-cert");
    let garbage = dir.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let garbage = garbage.to_str().unwrap();
    for (args, mentions) in [
        (&["serve", "--ws-fault", "sometimes"][..], "--ws-fault"),
        (&["serve", "--tls-cert", "cert.pem"], "--tls-key"),
        (&["serve", "--tls-cert", "no-such.pem", "--tls-key", "no-such.pem"], "no-such.pem"),
        (&["serve", "--listen", "127.0.0.1:0", "--tls-cert", garbage, "--tls-key", garbage], "--tls-cert"),
    ] {
        let (status, stderr) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "barrage {args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "barrage {args:?} printed:\n{stderr}");
        assert!(stderr.starts_with("barrage: error: ") && stderr.contains(mentions), "barrage {args:?}: {stderr}");
    }
}

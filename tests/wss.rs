//! `barrage watch` over `wss://`, end to end on loopback: WebSocket over
//! TLS, as Douyu's web player connects (`wss://danmuproxy.douyu.com:8501`).
//!
//! The server is `barrage serve --tls --ws`: by default it offers only what
//! Douyu's endpoint offers (TLS 1.2, RSA key exchange, `AES256-GCM-SHA384`)
//! with a self-signed certificate for 127.0.0.1 and localhost, which watch
//! trusts with `--ca-file`. Every fault flag of `serve` works over it, and
//! the checks are those of `tests/watch.rs` over TCP: every room message
//! once, by `cid`; heartbeats on time; a logout from every room on SIGTERM.
//!
//! A broken endpoint — a certificate not trusted or naming another host, a
//! handshake cut short, an upgrade refused, a wrong accept key, an
//! oversized or masked frame, a server that stops mid-handshake — must
//! cost only the room that meets it: one clear log line per ended attempt,
//! a backoff, another attempt. Servers are set per watch, so to show that
//! in one process a [`Switchboard`] (a TCP relay in this test) sends the
//! first connection to a healthy server and every later one to the broken
//! endpoint: of two rooms, one joins and stays, the other meets the fault
//! on every attempt.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use barrage::douyu::frame::{SERVER_TO_CLIENT, encode_packet};
use barrage::reactor::CipherPolicy;
use barrage::sim::certificate::{self_signed, self_signed_localhost};
use barrage::sim::{SimConfig, SimTls, SimWebSocket};
use barrage::websocket::frame::encode_frame;
use barrage::websocket::{Limits, Opcode, State, WebSocket};
use common::process::*;

// ----- servers and watchers over wss ---------------------------------------------------

/// `barrage serve --tls --ws ARGS`, with a certificate of its own written to `cert`.
fn serve_wss(cert: &Path, args: &[&str]) -> Serve {
    Serve::start(&[&["--tls", "--ws", "--tls-cert-out", cert.to_str().unwrap()], args].concat())
}

fn wss_url(addr: impl std::fmt::Display) -> String {
    format!("wss://{addr}/")
}

/// `barrage watch --ca-file CERT --server wss://ADDR/ FLAGS… ROOMS…`
fn watch_wss(cert: &Path, addr: &str, flags: &[&str], rooms: &[u64]) -> Watch {
    let url = wss_url(addr);
    let rooms: Vec<String> = rooms.iter().map(u64::to_string).collect();
    let mut args = vec!["--ca-file", cert.to_str().unwrap(), "--server", &url];
    args.extend_from_slice(flags);
    args.extend(rooms.iter().map(String::as_str));
    Watch::start(&args)
}

// ----- 1. exactly once through every fault flag ----------------------------------------------

/// At 200 messages/s per room, through a server fault that reshapes the
/// byte stream (over WebSocket: packets cut across messages and frames, or
/// many in one message), every room's messages arrive once each, in order,
/// on one connection.
fn exactly_once_over_wss_through(test: &str, fault: &str) {
    const ROOMS: [u64; 3] = [11, 12, 13];
    const AT_LEAST: usize = 300;
    let dir = TempDir::new(test);
    let cert = dir.path("cert.pem");
    let serve = serve_wss(&cert, &["--rate", "200", fault]);
    let mut watch = watch_wss(&cert, &serve.addr, &[], &ROOMS);
    watch.assert_exactly_once(&ROOMS, AT_LEAST, &format!("{fault} over wss"));
}

#[test]
fn over_wss_exactly_once_with_fragmented_frames() {
    exactly_once_over_wss_through("wss-fragment", "--fragment");
}

#[test]
fn over_wss_exactly_once_with_coalesced_frames() {
    exactly_once_over_wss_through("wss-coalesce", "--coalesce");
}

/// The server closes each connection after 30 messages (no close frame,
/// no close_notify): every room reconnects again and again, each close is
/// logged, and the stream goes on with no repeat and no gap.
#[test]
fn over_wss_rooms_reconnect_after_drops_and_lose_nothing() {
    const ROOMS: [u64; 2] = [21, 22];
    let dir = TempDir::new("wss-drops");
    let cert = dir.path("cert.pem");
    let serve = serve_wss(&cert, &["--rate", "100", "--drop-every", "30"]);
    let mut watch = watch_wss(&cert, &serve.addr, &[], &ROOMS);
    watch.wait_for("4 connections per room, with messages on the latest", DEADLINE, |seen| {
        ROOMS.iter().all(|&room| seen.count(room, "loginres") >= 4 && seen.room(room).since_login >= 10)
    });
    for room in ROOMS {
        let who = format!("room {room} over wss (dropped every 30)");
        let seen = watch.seen.room(room);
        assert_contiguous(&seen.cids, Some(1), &who);
        // Exactly 30 on every connection the server ended.
        let connections = seen.connections();
        let ended = &connections[..connections.len() - 1];
        assert!(ended.iter().all(|cids| cids.len() == 30), "{who}: {:?}", ended.iter().map(|c| c.len()));
    }
    watch.wait_stderr("three logged drops per room", DEADLINE, |log| {
        ROOMS
            .iter()
            .all(|room| log.matches(&format!("room {room}: closed (server closed the connection)")).count() >= 3)
    });
    watch.assert_running();
}

/// An invalid Douyu packet inside a well-formed WebSocket message after
/// every 40 messages: each is logged as a protocol error naming its room,
/// closes that room's connection only, and the room reconnects.
#[test]
fn over_wss_a_bad_packet_ends_only_its_rooms_connection() {
    const ROOMS: [u64; 3] = [31, 32, 33];
    let dir = TempDir::new("wss-corrupt");
    let cert = dir.path("cert.pem");
    let serve = serve_wss(&cert, &["--rate", "100", "--corrupt-every", "40"]);
    let mut watch = watch_wss(&cert, &serve.addr, &[], &ROOMS);
    watch.wait_for("every room reconnected after a bad packet and receiving again", DEADLINE, |seen| {
        ROOMS.iter().all(|&room| seen.count(room, "loginres") >= 2 && seen.room(room).since_login >= 5)
    });
    watch.wait_stderr("a protocol error logged for every room", DEADLINE, |log| {
        ROOMS.iter().all(|room| log.contains(&format!("room {room}: closed (protocol error: ")))
    });
    let stderr = watch.stderr();
    for room in ROOMS {
        let prefix = format!("room {room}: closed (");
        for (_, reason) in stderr.lines().filter_map(|line| line.split_once(&prefix)) {
            assert!(
                reason.starts_with("protocol error: "),
                "room {room} closed for another reason: {reason}\n{stderr}"
            );
        }
        let who = format!("room {room} over wss (corrupt every 40)");
        assert_contiguous(&watch.seen.room(room).cids, Some(1), &who);
        let connections = watch.seen.room(room).connections();
        let ended = &connections[..connections.len() - 1];
        assert!(ended.iter().all(|cids| cids.len() == 40), "{who}: {:?}", ended.iter().map(|c| c.len()));
    }
    watch.assert_running();
}

/// After 50 messages the server writes nothing more on a connection (the
/// socket stays open): the idle timeout notices, the room connects again
/// and gets the next 50. Nothing is repeated; each connection's messages
/// are an unbroken run of exactly 50.
#[test]
fn over_wss_a_stalled_server_is_left_after_the_idle_timeout() {
    const ROOMS: [u64; 2] = [41, 42];
    let dir = TempDir::new("wss-stall");
    let cert = dir.path("cert.pem");
    let serve = serve_wss(&cert, &["--rate", "100", "--stall-after", "50"]);
    let mut watch = watch_wss(&cert, &serve.addr, &["--idle-timeout", "1", "--heartbeat", "0.3"], &ROOMS);
    watch.wait_for("3 connections per room, the third with messages", DEADLINE, |seen| {
        ROOMS.iter().all(|&room| seen.count(room, "loginres") >= 3 && seen.room(room).since_login >= 1)
    });
    for room in ROOMS {
        let who = format!("room {room} over wss (stalled after 50)");
        let seen = watch.seen.room(room);
        assert_strictly_increasing(&seen.cids, &who);
        let connections = seen.connections();
        for cids in &connections[..connections.len() - 1] {
            assert_contiguous(cids, None, &who);
            assert_eq!(cids.len(), 50, "{who}: a stalled connection's messages");
        }
    }
    watch.wait_stderr("two idle closes logged per room", DEADLINE, |log| {
        ROOMS.iter().all(|room| log.matches(&format!("room {room}: closed (nothing received for")).count() >= 2)
    });
    watch.assert_running();
}

// ----- 2. heartbeats, SIGTERM, both kinds of TLS ------------------------------------------

/// The server drops a client silent for 1 s. With `--heartbeat 0.3` the
/// room keeps its one connection and gets an `mrkl` echo for each beat;
/// with `--heartbeat 5`, on the same server, the room is dropped.
#[test]
fn over_wss_heartbeats_keep_the_connection_alive() {
    let dir = TempDir::new("wss-heartbeats");
    let cert = dir.path("cert.pem");
    let serve = serve_wss(&cert, &["--rate", "0", "--heartbeat-timeout", "1"]);
    let mut beating = watch_wss(&cert, &serve.addr, &["--heartbeat", "0.3"], &[41]);
    let mut lazy = watch_wss(&cert, &serve.addr, &["--heartbeat", "5"], &[42]);

    // The contrast first: the server does drop a silent client over wss
    // (the pongs to its pings do not count as life; it pings every 5 s).
    lazy.wait_for("room 42 dropped for silence and logged in again", DEADLINE, |seen| seen.count(42, "loginres") >= 2);

    beating.wait_for("room 41 logged in", DEADLINE, |seen| seen.count(41, "loginres") >= 1);
    let logged_in = Instant::now();
    beating.wait_for("3 s of heartbeats on room 41", Duration::from_secs(15), |seen| {
        logged_in.elapsed() >= Duration::from_secs(3) && seen.count(41, "mrkl") >= 9
    });
    assert_eq!(beating.seen.count(41, "loginres"), 1, "room 41 reconnected\n{}", beating.report());
    assert!(!beating.stderr().contains("room 41: closed"), "{}", beating.report());
    beating.assert_running();
}

/// With messages flowing over wss in three rooms, SIGTERM makes watch log
/// out of every room (the `logout` goes in a WebSocket message, then a
/// close frame), write everything, and exit 0 within 2 s.
#[test]
fn over_wss_sigterm_logs_out_of_every_room_within_2_s() {
    const ROOMS: [u64; 3] = [51, 52, 53];
    let dir = TempDir::new("wss-sigterm");
    let tls = SimTls::self_signed(CipherPolicy::Legacy).unwrap();
    let cert = dir.path("cert.pem");
    std::fs::write(&cert, &tls.cert_pem).unwrap();
    let config =
        SimConfig { rate: 100.0, tls: Some(tls), websocket: Some(SimWebSocket::default()), ..SimConfig::default() };
    let sim = InProcessSim::start_with(config);
    let mut watch = watch_wss(&cert, &sim.addr.to_string(), &[], &ROOMS);
    watch.wait_for("messages flowing in every room", DEADLINE, |seen| {
        ROOMS.iter().all(|&room| seen.messages(room) >= 30)
    });
    assert_eq!(sim.stats().logouts, 0);

    let (status, took) = watch.stop_with("TERM");
    assert!(status.success(), "exit status {status}\n{}", watch.report());
    assert!(took < SHUTDOWN_LIMIT, "the exit took {took:?}\n{}", watch.report());
    watch.read_to_end(DEADLINE);
    let stats = sim.wait_stats("a logout from every room", DEADLINE, |s| s.logouts >= ROOMS.len() as u64);
    assert_eq!(stats.logouts, ROOMS.len() as u64, "{stats:?}");
    sim.wait_stats("every client gone", DEADLINE, |s| s.clients == 0);
    for room in ROOMS {
        assert_eq!(watch.seen.count(room, "loginres"), 1);
        assert_contiguous(&watch.seen.room(room).cids, Some(1), &format!("room {room} until SIGTERM"));
    }
    assert!(!watch.stderr().contains("did not close in time"), "{}", watch.report());
}

/// Douyu's endpoint offers one TLS 1.2 suite without forward secrecy
/// (what rustls refuses); a modern server offers only forward-secret ones.
/// watch joins both.
#[test]
fn legacy_and_modern_tls_both_join() {
    for (policy, flags) in [("legacy (AES256-GCM-SHA384 only)", &[][..]), ("modern", &["--tls-modern"][..])] {
        let dir = TempDir::new(&format!("wss-{}", &policy[..6]));
        let cert = dir.path("cert.pem");
        let serve = serve_wss(&cert, &[&["--rate", "100"], flags].concat());
        let mut watch = watch_wss(&cert, &serve.addr, &[], &[61, 62]);
        watch.wait_for(&format!("messages in both rooms over {policy} TLS"), DEADLINE, |seen| {
            [61, 62].iter().all(|&room| seen.messages(room) >= 20)
        });
        for room in [61, 62] {
            assert_contiguous(&watch.seen.room(room).cids, Some(1), &format!("room {room}, {policy} TLS"));
        }
    }
}

/// Past the output's high-water mark rooms stop reading their sockets;
/// over TLS, decrypted bytes may then wait inside OpenSSL, where no poll
/// event announces them. Once the output drains every room must read on
/// at once (not at its next heartbeat, 60 s here), and lose nothing. The
/// stdout reader stops until watch's loop has used no CPU for a second
/// (every room has stopped), then reads again.
#[test]
fn over_wss_rooms_stopped_by_a_full_output_read_again_once_it_drains() {
    const ROOMS: [u64; 5] = [91, 92, 93, 94, 95];
    const IDLE_FOR: Duration = Duration::from_secs(1);
    let dir = TempDir::new("wss-full-output");
    let tls = SimTls::self_signed(CipherPolicy::Legacy).unwrap();
    let cert = write(&dir, "cert.pem", &tls.cert_pem);
    let config =
        SimConfig { rate: 1000.0, tls: Some(tls), websocket: Some(SimWebSocket::default()), ..SimConfig::default() };
    let sim = InProcessSim::start_with(config);
    let mut watch = watch_wss(&cert, &sim.addr.to_string(), &["--heartbeat", "60"], &ROOMS);
    watch.wait_for("messages in every room", DEADLINE, |seen| ROOMS.iter().all(|&room| seen.messages(room) >= 100));
    // The login timer (15 s after connecting) fires once and would wake a
    // stopped room by itself: let it pass first.
    let joined = Instant::now();
    watch.wait_for("16 s of traffic", DEADLINE, |_| joined.elapsed() >= Duration::from_secs(16));

    let made_when_stopped: Vec<u64> = {
        let _paused = watch.gate.lock().unwrap_or_else(|p| p.into_inner());
        watch.wait_until_loop_idle(IDLE_FOR, DEADLINE);
        ROOMS.iter().map(|&room| sim.room_messages(room)).collect()
    };
    let what = format!("every room reading past cid {made_when_stopped:?} + 500 after the output drained");
    watch.wait_for(&what, Duration::from_secs(20), |seen| {
        ROOMS
            .iter()
            .zip(&made_when_stopped)
            .all(|(&room, &made)| seen.room(room).cids.last().is_some_and(|&last| last >= made + 500))
    });
    for room in ROOMS {
        assert_eq!(watch.seen.count(room, "loginres"), 1, "room {room} reconnected\n{}", watch.report());
        assert_contiguous(&watch.seen.room(room).cids, Some(1), &format!("room {room} across the full output"));
    }
}

// ----- 3. a broken endpoint costs only the room that meets it ----------------------------------

/// Where the switchboard sends a connection.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// Relay both ways to this server.
    To(SocketAddr),
    /// Relay to this server, but pass only its first `n` bytes back, then
    /// close both sides: a handshake cut short.
    CutAfter(SocketAddr, u64),
    /// No server: read what the client sends and answer nothing, until it
    /// closes (a TLS server that stopped answering).
    Hold,
    /// A WebSocket server (no TLS) that answers the upgrade and the login,
    /// then pings without end and never reads again.
    PingFlood,
}

/// A TCP relay on loopback: the first connection it accepts goes the
/// `first` way, every later one the `rest` way (counted). Stopped when
/// dropped; each relay ends when either side closes.
struct Switchboard {
    addr: SocketAddr,
    later: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

/// Connections a switchboard accepts at most (the loop is bounded).
const MAX_CONNECTIONS: usize = 200;

impl Switchboard {
    fn start(first: Route, rest: Route) -> Switchboard {
        Switchboard::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), first, rest)
    }

    fn start_on(listener: TcpListener, first: Route, rest: Route) -> Switchboard {
        let addr = listener.local_addr().unwrap();
        let (later, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let acceptor = {
            let (later, stop) = (later.clone(), stop.clone());
            thread::spawn(move || {
                for (n, client) in listener.incoming().take(MAX_CONNECTIONS).enumerate() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let route = if n == 0 { first } else { rest };
                    later.fetch_add(usize::from(n > 0), Ordering::SeqCst);
                    thread::spawn(move || relay(client, route));
                }
            })
        };
        Switchboard { addr, later, stop, acceptor: Some(acceptor) }
    }

    /// Connections sent the `rest` way so far.
    fn later_connections(&self) -> usize {
        self.later.load(Ordering::SeqCst)
    }
}

impl Drop for Switchboard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Copies `client` ⇄ the route's server until both are done; a half close
/// is passed on as one.
fn relay(mut client: TcpStream, route: Route) {
    let (to, limit) = match route {
        Route::To(to) => (to, None),
        Route::CutAfter(to, n) => (to, Some(n)),
        Route::Hold => {
            let _ = io::copy(&mut client, &mut io::sink());
            return;
        }
        Route::PingFlood => return ping_flood(client),
    };
    let Ok(server) = TcpStream::connect(to) else { return };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (Ok(mut from_client), Ok(mut to_server)) = (client.try_clone(), server.try_clone()) else { return };
    let upstream = thread::spawn(move || {
        let _ = io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut (&server).take(limit.unwrap_or(u64::MAX)), &mut &client);
    if limit.is_some() {
        let _ = (client.shutdown(Shutdown::Both), server.shutdown(Shutdown::Both));
    } else {
        let _ = client.shutdown(Shutdown::Write);
    }
    let _ = upstream.join();
}

/// Pings a flooding server sends at most (the loop is bounded; the room
/// should leave after a few thousand).
const MAX_PINGS: usize = 10_000_000;

/// A loopback listener whose connections hold little unread: the kernel
/// would otherwise let a receive buffer nobody reads grow to tens of MiB.
/// Set before `listen`, so that the window offered fits it.
fn listener_keeping_little_unread() -> TcpListener {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    let listener = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        socket.listen(64).unwrap().into_std().unwrap()
    });
    listener.set_nonblocking(false).unwrap();
    listener
}

/// [`Route::PingFlood`]: after the `101` and a `loginres` nothing is read,
/// so the room's pongs can only pile up on its side.
fn ping_flood(mut client: TcpStream) {
    let _ = client.set_read_timeout(Some(DEADLINE));
    let mut ws = WebSocket::server(Limits::default());
    let (mut pending, mut buffer) = (Vec::new(), [0; 4096]);
    while ws.state() == State::Handshaking {
        let Ok(n @ 1..) = client.read(&mut buffer) else { return };
        pending.extend_from_slice(&buffer[..n]);
        let used = ws.on_bytes(&pending, |payload| payload.len());
        pending.drain(..used);
    }
    let mut loginres = Vec::new();
    encode_packet(&mut loginres, SERVER_TO_CLIENT, "type@=loginres/userid@=0/live_stat@=0/");
    let mut out = Vec::new();
    if ws.send_binary(&loginres).is_err() || !ws.poll_transmit(&mut out) || client.write_all(&out).is_err() {
        return;
    }
    let mut ping = Vec::new();
    encode_frame(&mut ping, true, Opcode::Ping, None, &[b'p'; 125]);
    // One ping a write, paced, so that most reach the room in reads of their
    // own: a read answers only its latest ping, and it is these pongs,
    // one a read, that pile up once the kernel's buffers are full.
    let _ = client.set_nodelay(true);
    for _ in 0..MAX_PINGS {
        if client.write_all(&ping).is_err() {
            return; // the room left
        }
        thread::sleep(Duration::from_micros(20));
    }
}

/// What is wrong with the endpoint the second room meets.
enum Broken {
    /// A certificate nobody told watch to trust.
    UntrustedCertificate,
    /// A trusted certificate that names another host.
    WrongHost,
    /// The healthy server, its TLS handshake cut after this many bytes.
    CutAfter(u64),
    /// A server that accepts and never answers the TLS hello.
    Silent,
    /// `barrage serve --ws-fault KIND`.
    WebSocket(&'static str),
}

/// Two rooms, one switchboard: the room that gets the first connection
/// joins a healthy server; the other meets `broken` on every attempt. The
/// broken room must log one line per ended attempt, `closed (EXPECTED);
/// reconnecting in X s`, and nothing else, wait at least X before the next
/// attempt (X within its backoff ceiling: 1 s, 2 s, 4 s, …), and write no
/// output; the healthy room must keep its one connection and every message,
/// and SIGTERM still stops everything cleanly.
fn only_the_room_that_meets_it_fails(test: &str, broken: Broken, expected: &str, flags: &[&str]) {
    const ROOMS: [u64; 2] = [201, 202];
    let dir = TempDir::new(test);
    // One certificate for the healthy server and the broken one, unless the
    // certificate is what is broken; watch trusts what `ca` holds.
    let made = self_signed_localhost().unwrap();
    let (cert, key) = (write(&dir, "cert.pem", &made.cert_pem), write(&dir, "key.pem", &made.key_pem));
    let mut trusted = made.cert_pem.clone();
    let serve_with = |cert: &Path, key: &Path, more: &[&str]| {
        let tls = ["--tls", "--ws", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
        Serve::start(&[&tls[..], &["--rate", "50"], more].concat())
    };
    let healthy = serve_with(&cert, &key, &[]);
    let healthy_addr: SocketAddr = healthy.addr.parse().unwrap();
    let other_certificate = |name: &str, made: barrage::sim::certificate::SelfSigned| {
        (write(&dir, &format!("{name}.pem"), &made.cert_pem), write(&dir, &format!("{name}-key.pem"), &made.key_pem))
    };
    let (rest, _broken_server) = match broken {
        Broken::UntrustedCertificate => {
            let (cert, key) = other_certificate("untrusted", self_signed_localhost().unwrap());
            let server = serve_with(&cert, &key, &[]);
            (Route::To(server.addr.parse().unwrap()), Some(server))
        }
        Broken::WrongHost => {
            let other = self_signed(&[], &["barrage.invalid"]).unwrap();
            trusted.extend_from_slice(&other.cert_pem);
            let (cert, key) = other_certificate("elsewhere", other);
            let server = serve_with(&cert, &key, &[]);
            (Route::To(server.addr.parse().unwrap()), Some(server))
        }
        Broken::CutAfter(n) => (Route::CutAfter(healthy_addr, n), None),
        Broken::Silent => (Route::Hold, None),
        Broken::WebSocket(kind) => {
            let server = serve_with(&cert, &key, &["--ws-fault", kind]);
            (Route::To(server.addr.parse().unwrap()), Some(server))
        }
    };
    let ca = write(&dir, "ca.pem", &trusted);
    let board = Switchboard::start(Route::To(healthy_addr), rest);
    let mut watch = watch_wss(&ca, &board.addr.to_string(), flags, &ROOMS);

    let (bad, log) = one_room_broken_one_untouched(&mut watch, ROOMS, 3, test);
    // The broken room: nothing written, one clear line per ended attempt.
    let written = watch.seen.room(bad).lines;
    assert_eq!(written, 0, "room {bad} wrote lines\n{}", watch.report());
    let lines: Vec<&str> = log.lines().filter(|line| line.contains(&format!("room {bad}:"))).collect();
    let line = format!("room {bad}: closed ({expected}); reconnecting in ");
    for logged in &lines {
        assert!(logged.contains(&line), "expected {line:?}…, got:\n{logged}\n--- log ---\n{log}");
    }
    // Every attempt that met the fault ended in one line (the last may have
    // been under way at SIGTERM, which ends it without one).
    let attempts = board.later_connections();
    assert!(
        lines.len() <= attempts && attempts <= lines.len() + 1,
        "{attempts} attempts, {} lines:\n{log}",
        lines.len()
    );
    assert_backed_off(&lines);
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Each `…; reconnecting in X s` line: X is within its backoff ceiling (1 s,
/// doubling), and the next line came at least X later (the log's times
/// have milliseconds, X is rounded to a tenth).
fn assert_backed_off(lines: &[&str]) {
    let parsed: Vec<(f64, f64)> = lines
        .iter()
        .map(|line| {
            // 2026-11-28T22:54:36.890Z INFO  [...] room 7: closed (…); reconnecting in 0.9 s
            let clock = line.split_once('T').and_then(|(_, rest)| rest.split_once('Z')).map(|(clock, _)| clock);
            let seconds = clock.and_then(|clock| {
                let parts: Vec<f64> = clock.split(':').map(|part| part.parse().ok()).collect::<Option<_>>()?;
                Some(parts[0] * 3600.0 + parts[1] * 60.0 + parts[2])
            });
            let delay =
                line.rsplit_once("reconnecting in ").and_then(|(_, rest)| rest.strip_suffix(" s")?.parse().ok());
            (seconds.unwrap_or_else(|| panic!("no time in {line:?}")), delay.unwrap_or_else(|| panic!("{line:?}")))
        })
        .collect();
    for (i, &(_, delay)) in parsed.iter().enumerate() {
        let ceiling = f64::from(1u32 << i.min(5)).min(60.0);
        assert!(delay <= ceiling + 0.05, "retry {i}: {delay} s, above its ceiling {ceiling} s:\n{}", lines.join("\n"));
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        let waited = (pair[1].0 - pair[0].0).rem_euclid(24.0 * 3600.0);
        assert!(
            waited >= pair[0].1 - 0.06,
            "retry {i} came {waited:.3} s later, not {} s:\n{}",
            pair[0].1,
            lines.join("\n")
        );
    }
}

/// A server that keeps pinging and never reads (over `ws://`, the same
/// WebSocket without TLS) must not grow the room's memory: once 64 KiB
/// wait unsent the room ends the connection, says why, and tries again
/// after its backoff, like any failure; the other room is untouched.
#[test]
fn a_server_that_pings_and_never_reads_is_left_not_buffered_for() {
    const ROOMS: [u64; 2] = [211, 212];
    const MAX_UNSENT: usize = 64 * 1024;
    let healthy = Serve::start(&["--ws", "--rate", "50"]);
    let healthy_route = Route::To(healthy.addr.parse().unwrap());
    let board = Switchboard::start_on(listener_keeping_little_unread(), healthy_route, Route::PingFlood);
    let url = format!("ws://{}/", board.addr);
    // Every readiness read at once (no coalescing), so pings come in many reads.
    let mut watch = Watch::start(&["--poll-interval", "0", "--server", &url, "211", "212"]);

    let (bad, log) = one_room_broken_one_untouched(&mut watch, ROOMS, 2, "a ping flood");
    let closed = format!("room {bad}: closed (");
    let lines: Vec<&str> = log.lines().filter(|line| line.contains(&closed)).collect();
    for line in &lines {
        // room 212: closed (the server stopped reading: 65612 bytes unsent (at most 65536)); reconnecting in 0.9 s
        let unsent = line
            .split_once("the server stopped reading: ")
            .and_then(|(_, rest)| rest.split_once(" bytes unsent")?.0.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("room {bad} closed for another reason: {line}\n{log}"));
        // At most one pong (131 bytes) and a heartbeat past the bound: the
        // pongs of a read full of pings did not pile up first.
        assert!(unsent <= MAX_UNSENT + 1024, "{unsent} bytes unsent at the close: {line}");
        assert!(line.contains("; reconnecting in "), "{line}");
    }
    assert_backed_off(&lines);
}

#[test]
fn an_untrusted_certificate_fails_only_its_room() {
    let expected = "TLS handshake failed: certificate verify failed: self-signed certificate";
    only_the_room_that_meets_it_fails("wss-untrusted", Broken::UntrustedCertificate, expected, &[]);
}

/// The certificate is trusted (it is in `--ca-file`) but names only
/// `barrage.invalid`, not the 127.0.0.1 watch connected to.
#[test]
fn a_certificate_for_another_host_fails_only_its_room() {
    let expected = "TLS handshake failed: certificate verify failed: IP address mismatch";
    only_the_room_that_meets_it_fails("wss-wrong-host", Broken::WrongHost, expected, &[]);
}

/// The server's first TLS flight (hello, certificate, …) cut after 100
/// bytes, inside the certificate, and the connection closed.
#[test]
fn a_truncated_tls_handshake_fails_only_its_room() {
    let expected = "TLS handshake failed: unexpected eof while reading";
    only_the_room_that_meets_it_fails("wss-truncated", Broken::CutAfter(100), expected, &[]);
}

#[test]
fn an_upgrade_answered_403_fails_only_its_room() {
    let expected = "WebSocket handshake failed: upgrade refused with HTTP status 403";
    only_the_room_that_meets_it_fails("wss-reject-upgrade", Broken::WebSocket("reject-upgrade"), expected, &[]);
}

#[test]
fn a_wrong_accept_key_fails_only_its_room() {
    let expected = "WebSocket handshake failed: Sec-WebSocket-Accept does not match the key sent";
    only_the_room_that_meets_it_fails("wss-bad-accept", Broken::WebSocket("bad-accept"), expected, &[]);
}

#[test]
fn an_oversized_frame_fails_only_its_room() {
    let expected = "WebSocket protocol error: message of at least 4294967296 bytes (at most 1048576)";
    only_the_room_that_meets_it_fails("wss-oversized", Broken::WebSocket("oversized-frame"), expected, &[]);
}

#[test]
fn a_masked_server_frame_fails_only_its_room() {
    let expected = "WebSocket protocol error: masked frame from the server";
    only_the_room_that_meets_it_fails("wss-masked", Broken::WebSocket("masked-frame"), expected, &[]);
}

/// The server sends the first line of a `101` and then nothing: the
/// attempt's connect timeout (1 s here) ends it, and the log says where
/// it stopped.
#[test]
fn a_server_that_stops_mid_handshake_fails_only_its_room() {
    let expected = "connect timed out in the WebSocket handshake";
    let flags = ["--connect-timeout", "1"];
    only_the_room_that_meets_it_fails("wss-stall-handshake", Broken::WebSocket("stall-handshake"), expected, &flags);
}

/// The TCP connect succeeds, the TLS hello gets no answer: the connect
/// timeout ends the attempt, and the log says it was the TLS handshake.
#[test]
fn a_server_silent_in_the_tls_handshake_fails_only_its_room() {
    let expected = "connect timed out in the TLS handshake";
    let flags = ["--connect-timeout", "1"];
    only_the_room_that_meets_it_fails("wss-silent-tls", Broken::Silent, expected, &flags);
}

// ----- 4. failover ---------------------------------------------------------------------

/// A network that lets only web traffic out: the TCP port refuses, and the
/// room fails over to wss at once (no backoff: another address is left),
/// joins there, says so, and `/rooms` and `/metrics` show the transport.
#[test]
fn a_room_fails_over_from_a_refused_tcp_port_to_wss() {
    let dir = TempDir::new("wss-failover");
    let cert = dir.path("cert.pem");
    let serve = serve_wss(&cert, &["--rate", "50"]);
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let tcp = refused.to_string();
    let wss = wss_url(&serve.addr);
    let args = ["--server", &tcp, "--server", &wss, "--ca-file", cert.to_str().unwrap(), "--metrics", "127.0.0.1:0"];
    let mut watch = Watch::start(&[&args[..], &["301"]].concat());
    watch.wait_for("messages in room 301", DEADLINE, |seen| seen.messages(301) >= 10);
    watch.wait_stderr("the join through wss logged", DEADLINE, |log| {
        log.contains(&format!("room 301: joined via {wss}"))
    });
    let log = watch.stderr();
    let refusal = "room 301: closed (Connection refused (os error 111)); trying the next address";
    assert!(log.contains(refusal), "expected {refusal:?} in:\n{log}");
    assert_eq!(watch.seen.count(301, "loginres"), 1);
    assert_contiguous(&watch.seen.room(301).cids, Some(1), "room 301 over wss after the failover");

    let metrics: SocketAddr = log
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .expect("the metrics address in the log");
    let rooms: serde_json::Value = serde_json::from_str(http_body(metrics, "/rooms").as_str()).expect("/rooms is JSON");
    assert_eq!(rooms[0]["transport"], "wss", "{rooms}");
    assert_eq!(rooms[0]["endpoint"], wss.as_str(), "{rooms}");
    assert_eq!(rooms[0]["state"], "joined", "{rooms}");
    let page = http_body(metrics, "/metrics");
    assert!(page.contains("barrage_rooms_joined{transport=\"wss\"} 1"), "{page}");
    assert!(page.contains("barrage_rooms_joined{transport=\"tcp\"} 0"), "{page}");
}

/// The body of `GET PATH` from the metrics server at `addr`.
fn http_body(addr: SocketAddr, path: &str) -> String {
    use std::io::Write;
    let mut stream = TcpStream::connect(addr).expect("connect to metrics");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// Two rooms, one behind a healthy server and one behind a broken one:
/// waits for the healthy room's messages, `attempts` ended attempts of the
/// broken one and more messages of the healthy one, stops with SIGTERM
/// within the shutdown limit, and checks that the healthy room was
/// untouched (one login, every `cid`, never closed). Returns the broken
/// room and the log.
fn one_room_broken_one_untouched(watch: &mut Watch, rooms: [u64; 2], attempts: usize, next_to: &str) -> (u64, String) {
    watch.wait_for("messages in one room", DEADLINE, |seen| seen.rooms.values().any(|room| room.cids.len() >= 20));
    let good = *watch.seen.rooms.iter().find(|(_, room)| room.cids.len() >= 20).expect("a room with messages").0;
    let bad = rooms.into_iter().find(|&room| room != good).unwrap();
    let closed = format!("room {bad}: closed (");
    watch.wait_stderr(&format!("{attempts} ended attempts of room {bad}"), DEADLINE, |log| {
        log.matches(&closed).count() >= attempts
    });
    let before = watch.seen.messages(good);
    watch.wait_for(&format!("room {good}'s messages going on"), DEADLINE, |seen| seen.messages(good) >= before + 20);
    let (status, took) = watch.stop_with("TERM");
    assert!(status.success() && took < SHUTDOWN_LIMIT, "exit {status} after {took:?}\n{}", watch.report());
    watch.read_to_end(DEADLINE);
    assert_eq!(watch.seen.count(good, "loginres"), 1, "room {good} reconnected\n{}", watch.report());
    assert_contiguous(&watch.seen.room(good).cids, Some(1), &format!("room {good}, next to {next_to}"));
    let log = watch.stderr();
    assert!(!log.contains(&format!("room {good}: closed")), "room {good} closed\n{log}");
    (bad, log)
}

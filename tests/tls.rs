//! TLS connections on the reactor, over loopback: both ends on one loop (or
//! a std socket playing a bad peer). Every wait is a condition with a
//! deadline (`run_until`), never a sleep.

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use barrage::reactor::{
    CipherPolicy, Context, Dispatcher, EntryToken, Reactor, ReactorConfig, TlsClientConfig, TlsInfo, TlsServerConfig,
};
use barrage::sim::certificate::{SelfSigned, self_signed_localhost};
use mio::net::TcpListener;

const DEADLINE: Duration = Duration::from_secs(20);

fn run_until(reactor: &mut Reactor, what: &str, mut done: impl FnMut(&mut Reactor) -> bool) {
    let reached = reactor.run_until(Instant::now() + DEADLINE, |r| done(r)).unwrap();
    assert!(reached, "timed out waiting for: {what}");
}

/// One certificate for the whole test binary (a key takes a moment to make).
fn certificate() -> &'static SelfSigned {
    static CERT: OnceLock<SelfSigned> = OnceLock::new();
    CERT.get_or_init(|| self_signed_localhost().unwrap())
}

fn server_config(policy: CipherPolicy) -> TlsServerConfig {
    let cert = certificate();
    TlsServerConfig::from_pem(&cert.cert_pem, &cert.key_pem, policy).unwrap()
}

/// A client that trusts the test certificate (and nothing else).
fn trusting_client() -> TlsClientConfig {
    TlsClientConfig::with_ca_pem(&certificate().cert_pem).unwrap()
}

/// Everything one end saw, in order.
#[derive(Default)]
struct Log {
    events: Vec<&'static str>,
    errors: Vec<String>,
    received: Vec<u8>,
    info: Option<TlsInfo>,
}

impl Log {
    fn count(&self, event: &str) -> usize {
        self.events.iter().filter(|e| **e == event).count()
    }
}

type Shared = Rc<RefCell<Log>>;

/// A scriptable end: records every callback; on connect sends `greeting`
/// (and closes if `close_after_greeting`); echoes if `echo`.
#[derive(Default)]
struct Peer {
    log: Shared,
    greeting: Vec<u8>,
    close_after_greeting: bool,
    echo: bool,
    /// Close when a timer with this delay, set at the start, fires.
    give_up_after: Option<Duration>,
}

impl Peer {
    fn new(log: &Shared) -> Peer {
        Peer { log: log.clone(), ..Peer::default() }
    }
}

impl Dispatcher for Peer {
    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        let mut log = self.log.borrow_mut();
        log.events.push("connect");
        log.info = ctx.tls_info();
        ctx.send(&self.greeting);
        if self.close_after_greeting {
            ctx.close();
        }
    }
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        self.log.borrow_mut().received.extend_from_slice(data);
        if self.echo {
            ctx.send(data);
        }
        data.len()
    }
    fn handle_eof(&mut self, ctx: &mut Context<'_>) {
        self.log.borrow_mut().events.push("eof");
        ctx.close();
    }
    fn handle_timer(&mut self, ctx: &mut Context<'_>, _tag: u64) {
        self.log.borrow_mut().events.push("timeout");
        ctx.close();
    }
    fn handle_error(&mut self, _ctx: &mut Context<'_>, error: std::io::Error) {
        let mut log = self.log.borrow_mut();
        log.events.push("error");
        log.errors.push(error.to_string());
    }
    fn handle_close(&mut self, _ctx: &mut Context<'_>) {
        self.log.borrow_mut().events.push("close");
    }
}

/// A TLS server on an ephemeral loopback port; `make` gives each accepted
/// connection its dispatcher. A `give_up_after` on it is armed at accept
/// (the handshake is under way then, so the timer bounds it).
fn tls_server(reactor: &mut Reactor, config: TlsServerConfig, mut make: impl FnMut() -> Peer + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    reactor
        .listen(listener, move |r: &mut Reactor, stream, _| {
            let peer = make();
            let give_up = peer.give_up_after;
            let id = r.add_tls_stream(stream, &config, peer).unwrap();
            if let Some(delay) = give_up {
                r.set_timer(id, Instant::now() + delay, 0);
            }
        })
        .unwrap();
    addr
}

fn connect(reactor: &mut Reactor, addr: SocketAddr, config: &TlsClientConfig, name: &str, peer: Peer) -> EntryToken {
    let give_up = peer.give_up_after;
    let id = reactor.connect_tls(addr, config, name, peer).unwrap();
    if let Some(delay) = give_up {
        reactor.set_timer(id, Instant::now() + delay, 0);
    }
    id
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

// ----- data ---------------------------------------------------------------------

/// Two clients each send 1 MiB, the server echoes it, each client closes
/// once it has its 1 MiB back.
fn echo_megabytes_both_ways(config: ReactorConfig) -> Reactor {
    let mut reactor = Reactor::with_config(config).unwrap();
    let server_log = Rc::new(RefCell::new(Log::default()));
    let server_log2 = server_log.clone();
    let addr = tls_server(&mut reactor, server_config(CipherPolicy::Modern), move || Peer {
        echo: true,
        ..Peer::new(&server_log2)
    });
    let client = trusting_client();
    let payloads: Vec<Vec<u8>> = (0..2).map(|i| pattern(1024 * 1024, i as u8)).collect();
    let logs: Vec<Shared> = payloads
        .iter()
        .map(|payload| {
            let log = Rc::new(RefCell::new(Log::default()));
            let peer = Peer { greeting: payload.clone(), ..Peer::new(&log) };
            connect(&mut reactor, addr, &client, "localhost", peer);
            log
        })
        .collect();
    run_until(&mut reactor, "both clients got their megabyte back", |_| {
        logs.iter().zip(&payloads).all(|(log, payload)| log.borrow().received.len() >= payload.len())
    });
    for (log, payload) in logs.iter().zip(&payloads) {
        let log = log.borrow();
        assert!(log.received == *payload, "the echo came back complete and in order");
        assert_eq!(log.events, vec!["connect"], "errors: {:?}", log.errors);
    }
    assert_eq!(server_log.borrow().received.len(), 2 * 1024 * 1024);
    reactor
}

#[test]
fn megabytes_echo_both_ways_with_a_small_read_budget() {
    // The scratch buffer holds four 16 KiB records: every TLS read is
    // shorter than it, yet the socket is not drained. A loop that took a
    // short read for "drained" would wait for an edge that never comes.
    let config = ReactorConfig { read_budget: 8 * 1024, ..ReactorConfig::default() };
    let reactor = echo_megabytes_both_ways(config);
    assert!(reactor.stats().read_syscalls > 2 * 2 * 1024 * 1024 / (16 * 1024), "reads of a record at most");
}

#[test]
fn megabytes_echo_both_ways_with_a_scratch_buffer_smaller_than_a_record() {
    // 1000-byte reads: OpenSSL keeps the rest of each record decrypted
    // (`pending`), where no socket edge will announce it.
    let config = ReactorConfig { read_budget: 1000, scratch_size: 1000, ..ReactorConfig::default() };
    echo_megabytes_both_ways(config);
}

/// A server that sends one small message every millisecond, each in a
/// record of its own, then closes.
struct Ticker {
    left: u32,
}

impl Dispatcher for Ticker {
    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        ctx.set_timer(Duration::from_millis(1), 0);
    }
    fn handle_read(&mut self, _ctx: &mut Context<'_>, data: &[u8]) -> usize {
        data.len()
    }
    fn handle_timer(&mut self, ctx: &mut Context<'_>, _tag: u64) {
        ctx.send(&pattern(300, self.left as u8));
        self.left -= 1;
        if self.left == 0 {
            ctx.close();
        } else {
            ctx.set_timer(Duration::from_millis(1), 0);
        }
    }
}

#[test]
fn a_record_that_arrives_alone_costs_the_client_one_socket_read() {
    // Without read-ahead OpenSSL reads a record's 5-byte header, then its
    // body; and after it the reactor reads until OpenSSL says WANT_READ,
    // which costs a read that finds nothing (EAGAIN): three per record. A
    // short socket read has drained the socket, as for TCP.
    const RECORDS: u32 = 200;
    let mut reactor = Reactor::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = server_config(CipherPolicy::Legacy);
    reactor
        .listen(listener, move |r: &mut Reactor, stream, _| {
            r.add_tls_stream(stream, &config, Ticker { left: RECORDS }).unwrap();
        })
        .unwrap();
    let log = Rc::new(RefCell::new(Log::default()));
    connect(&mut reactor, addr, &trusting_client(), "localhost", Peer::new(&log));
    run_until(&mut reactor, "every message and the end", |_| log.borrow().count("eof") > 0);
    let log = log.borrow();
    assert_eq!(log.received.len(), RECORDS as usize * 300, "errors: {:?}", log.errors);
    // The server's reads (the client's handshake messages) and the
    // client's handshake and EOF are a dozen more.
    let reads = reactor.stats().read_syscalls;
    assert!(reads <= u64::from(RECORDS) + 20, "{reads} socket reads for {RECORDS} records");
}

// ----- cipher policies -----------------------------------------------------------

/// Handshakes a default client (trusting the test certificate) with a
/// server of `policy`; returns what each end negotiated.
fn negotiate(policy: CipherPolicy) -> (TlsInfo, TlsInfo) {
    let mut reactor = Reactor::new().unwrap();
    let server_log = Rc::new(RefCell::new(Log::default()));
    let server_log2 = server_log.clone();
    let addr = tls_server(&mut reactor, server_config(policy), move || Peer::new(&server_log2));
    let client_log = Rc::new(RefCell::new(Log::default()));
    connect(&mut reactor, addr, &trusting_client(), "127.0.0.1", Peer::new(&client_log));
    run_until(&mut reactor, "both ends connected", |_| {
        client_log.borrow().info.is_some() && server_log.borrow().info.is_some()
    });
    let (client, server) = (client_log.borrow(), server_log.borrow());
    assert_eq!((client.count("error"), server.count("error")), (0, 0));
    (client.info.unwrap(), server.info.unwrap())
}

#[test]
fn a_default_client_speaks_douyus_legacy_suite_aes256_gcm_sha384_on_tls_1_2() {
    let (client, server) = negotiate(CipherPolicy::Legacy);
    let expected = TlsInfo { protocol: "TLSv1.2", cipher: "AES256-GCM-SHA384" };
    assert_eq!(client, expected);
    assert_eq!(server, expected);
}

#[test]
fn a_default_client_speaks_tls_1_3_with_a_modern_server() {
    let (client, server) = negotiate(CipherPolicy::Modern);
    assert_eq!(client, server);
    assert_eq!(client.protocol, "TLSv1.3");
    assert!(client.cipher.starts_with("TLS_"), "a TLS 1.3 suite: {client}");
}

// ----- failed handshakes ---------------------------------------------------------------

/// Connects `client` as `name`; returns both logs once both ends closed.
fn handshake_that_fails(client: &TlsClientConfig, name: &str) -> (Log, Log) {
    let mut reactor = Reactor::new().unwrap();
    let server_log = Rc::new(RefCell::new(Log::default()));
    let server_log2 = server_log.clone();
    let addr = tls_server(&mut reactor, server_config(CipherPolicy::Modern), move || Peer::new(&server_log2));
    let client_log = Rc::new(RefCell::new(Log::default()));
    let id = connect(&mut reactor, addr, client, name, Peer::new(&client_log));
    run_until(&mut reactor, "both ends closed", |_| {
        client_log.borrow().count("close") > 0 && server_log.borrow().count("close") > 0
    });
    // More iterations deliver nothing twice.
    for _ in 0..5 {
        reactor.turn(Some(Duration::from_millis(2))).unwrap();
    }
    assert!(!reactor.is_open(id));
    assert_eq!(reactor.entry_count(), 1, "only the listener is left");
    (client_log.take(), server_log.take())
}

#[test]
fn an_untrusted_certificate_fails_the_handshake_with_openssls_reason_and_closes_once() {
    // The system's roots do not include our self-signed certificate.
    let (client, server) = handshake_that_fails(&TlsClientConfig::new(None).unwrap(), "localhost");
    assert_eq!(client.events, vec!["error", "close"], "no handle_connect before or after");
    assert_eq!(client.errors.len(), 1);
    let error = &client.errors[0];
    assert!(error.contains("certificate verify failed: self-signed certificate"), "{error}");
    // The client told the server why, with an alert.
    assert_eq!(server.events, vec!["error", "close"]);
    assert!(server.errors[0].contains("alert"), "{}", server.errors[0]);
}

#[test]
fn a_certificate_for_another_host_name_fails_the_handshake() {
    let (client, _) = handshake_that_fails(&trusting_client(), "douyu.example");
    assert_eq!(client.events, vec!["error", "close"]);
    assert!(client.errors[0].contains("certificate verify failed: hostname mismatch"), "{}", client.errors[0]);
}

#[test]
fn a_certificate_for_another_ip_address_fails_the_handshake() {
    // The certificate names 127.0.0.1; we connect there but expect .2.
    let (client, _) = handshake_that_fails(&trusting_client(), "127.0.0.2");
    assert_eq!(client.events, vec!["error", "close"]);
    assert!(client.errors[0].contains("certificate verify failed: IP address mismatch"), "{}", client.errors[0]);
}

/// A TLS server whose connections give up after `give_up`; a std socket
/// connects and does `act` to it. Returns the server end's log once closed.
fn server_facing(act: impl FnOnce(&mut std::net::TcpStream), give_up: Duration) -> Log {
    let mut reactor = Reactor::new().unwrap();
    let log = Rc::new(RefCell::new(Log::default()));
    let log2 = log.clone();
    let addr = tls_server(&mut reactor, server_config(CipherPolicy::Legacy), move || Peer {
        give_up_after: Some(give_up),
        ..Peer::new(&log2)
    });
    let mut peer = std::net::TcpStream::connect(addr).unwrap();
    act(&mut peer);
    run_until(&mut reactor, "the server end closed", |_| log.borrow().count("close") > 0);
    drop(peer);
    log.take()
}

#[test]
fn a_client_that_says_nothing_is_dropped_by_the_dispatchers_own_timer() {
    let log = server_facing(|_| {}, Duration::from_millis(50));
    assert_eq!(log.events, vec!["timeout", "close"], "handle_timer reaches a connection mid-handshake");
}

#[test]
fn a_client_that_sends_garbage_fails_the_handshake_at_once() {
    let log = server_facing(|s| s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap(), DEADLINE * 2);
    assert_eq!(log.events, vec!["error", "close"]);
    assert!(log.errors[0].starts_with("TLS handshake failed: http request"), "{}", log.errors[0]);
}

#[test]
fn a_client_that_hangs_up_mid_handshake_fails_it_at_once() {
    let log = server_facing(|s| s.shutdown(std::net::Shutdown::Both).unwrap(), DEADLINE * 2);
    assert_eq!(log.events, vec!["error", "close"]);
    assert!(log.errors[0].contains("unexpected eof"), "{}", log.errors[0]);
}

/// A plain listener that accepts, does `act` to the connection, and keeps
/// it; a TLS client (giving up after `give_up`) connects to it.
fn client_facing(act: impl FnOnce(&mut std::net::TcpStream) + Send + 'static, give_up: Duration) -> Log {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        act(&mut stream);
        stream
    });
    let mut reactor = Reactor::new().unwrap();
    let log = Rc::new(RefCell::new(Log::default()));
    let peer = Peer { give_up_after: Some(give_up), ..Peer::new(&log) };
    connect(&mut reactor, addr, &trusting_client(), "localhost", peer);
    run_until(&mut reactor, "the client closed", |_| log.borrow().count("close") > 0);
    drop(server.join().unwrap());
    log.take()
}

#[test]
fn a_server_that_never_answers_the_hello_is_left_by_the_dispatchers_own_timer() {
    let log = client_facing(|_| {}, Duration::from_millis(50));
    assert_eq!(log.events, vec!["timeout", "close"]);
}

#[test]
fn a_server_that_is_not_tls_fails_the_handshake_at_once() {
    let log = client_facing(|s| s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap(), DEADLINE * 2);
    assert_eq!(log.events, vec!["error", "close"]);
    assert!(log.errors[0].starts_with("TLS handshake failed: "), "{}", log.errors[0]);
}

// ----- closing ------------------------------------------------------------------------

#[test]
fn a_graceful_close_delivers_everything_then_close_notify() {
    let mut reactor = Reactor::new().unwrap();
    let reply = pattern(512 * 1024, 7);
    let server_log = Rc::new(RefCell::new(Log::default()));
    let (server_log2, reply2) = (server_log.clone(), reply.clone());
    // The server sends half a megabyte and closes at once: most of it is
    // still queued when close() is called.
    let addr = tls_server(&mut reactor, server_config(CipherPolicy::Legacy), move || Peer {
        greeting: reply2.clone(),
        close_after_greeting: true,
        ..Peer::new(&server_log2)
    });
    let client_log = Rc::new(RefCell::new(Log::default()));
    connect(&mut reactor, addr, &trusting_client(), "localhost", Peer::new(&client_log));
    run_until(&mut reactor, "both ends closed", |_| {
        client_log.borrow().count("close") > 0 && server_log.borrow().count("close") > 0
    });
    let client = client_log.borrow();
    assert!(client.received == reply, "all of it, in order ({} of {} bytes)", client.received.len(), reply.len());
    // handle_eof, not an error: the stream ended with close_notify, so the
    // client knows it was not cut short.
    assert_eq!(client.events, vec!["connect", "eof", "close"], "errors: {:?}", client.errors);
    assert_eq!(server_log.borrow().events, vec!["connect", "close"], "errors: {:?}", server_log.borrow().errors);
}

/// What a blocking OpenSSL server on a std socket saw of a client that
/// greets it and closes; it answers the close only when told to.
#[derive(Debug, PartialEq)]
enum PeerSaw {
    /// The greeting, then our close_notify, then our FIN.
    GreetingThenCloseNotifyThenEof(Vec<u8>),
    /// After its own close_notify and FIN, once the client had closed: a
    /// quiet end (`Ok(0)`), not a reset.
    QuietEnd,
}

#[test]
fn once_its_close_notify_is_out_a_closing_connection_drops_tls_and_lingers_as_tcp_until_the_peers_fin() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tell_peer, peer_told) = std::sync::mpsc::channel::<()>();
    let (peer_says, from_peer) = std::sync::mpsc::channel::<PeerSaw>();
    let peer = std::thread::spawn(move || {
        use openssl::ssl::{ShutdownResult, SslAcceptor, SslMethod};
        use std::io::Read;
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        let cert = certificate();
        acceptor.set_certificate(&openssl::x509::X509::from_pem(&cert.cert_pem).unwrap()).unwrap();
        acceptor.set_private_key(&openssl::pkey::PKey::private_key_from_pem(&cert.key_pem).unwrap()).unwrap();
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut tls = acceptor.build().accept(tcp).unwrap();
        let mut greeting = Vec::new();
        // Ends at the client's close_notify (a cut without one is an error).
        tls.read_to_end(&mut greeting).unwrap();
        assert_eq!(tls.get_mut().read(&mut [0; 64]).unwrap(), 0, "the client's FIN follows its close_notify");
        peer_says.send(PeerSaw::GreetingThenCloseNotifyThenEof(greeting)).unwrap();
        peer_told.recv().unwrap();
        // Our close_notify (the client must read it, or its close would be
        // a reset), then our FIN.
        assert!(matches!(tls.shutdown(), Ok(ShutdownResult::Received)));
        tls.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
        peer_told.recv().unwrap();
        let end = tls.get_mut().read(&mut [0; 64]);
        assert!(matches!(end, Ok(0)), "after the client closed: {end:?}");
        peer_says.send(PeerSaw::QuietEnd).unwrap();
    });

    // Long enough that only the peer's FIN can end the linger in time.
    let mut reactor = Reactor::with_config(ReactorConfig { linger: DEADLINE * 3, ..ReactorConfig::default() }).unwrap();
    // A bystander on the same loop, open throughout.
    let (bystander_server, bystander_client) = (Rc::new(RefCell::new(Log::default())), Shared::default());
    let bystander_server2 = bystander_server.clone();
    let bystander_addr = tls_server(&mut reactor, server_config(CipherPolicy::Modern), move || Peer {
        echo: true,
        ..Peer::new(&bystander_server2)
    });
    let bystander = Peer { greeting: b"ping".to_vec(), ..Peer::new(&bystander_client) };
    connect(&mut reactor, bystander_addr, &trusting_client(), "localhost", bystander);

    let log = Shared::default();
    let closer = Peer { greeting: b"goodbye".to_vec(), close_after_greeting: true, ..Peer::new(&log) };
    let id = connect(&mut reactor, addr, &trusting_client(), "localhost", closer);
    let mut saw = None;
    run_until(&mut reactor, "the peer read our close_notify and FIN", |_| {
        saw = from_peer.try_recv().ok();
        saw.is_some() || peer.is_finished()
    });
    assert_eq!(saw, Some(PeerSaw::GreetingThenCloseNotifyThenEof(b"goodbye".to_vec())));
    assert!(log.borrow().info.is_some(), "it spoke TLS");
    assert!(reactor.is_open(id), "it lingers, waiting for the peer's FIN");
    assert_eq!(reactor.tls_info(id), None, "without its TLS state");

    tell_peer.send(()).unwrap();
    run_until(&mut reactor, "the lingering connection closed", |_| log.borrow().count("close") > 0);
    assert_eq!(log.borrow().events, vec!["connect", "close"], "errors: {:?}", log.borrow().errors);
    tell_peer.send(()).unwrap();
    let mut saw = None;
    run_until(&mut reactor, "the peer's last read", |_| {
        saw = from_peer.try_recv().ok();
        saw.is_some() || peer.is_finished()
    });
    peer.join().unwrap();
    assert_eq!(saw, Some(PeerSaw::QuietEnd));

    run_until(&mut reactor, "the bystander's echo", |_| bystander_client.borrow().received == b"ping");
    assert_eq!(bystander_client.borrow().events, vec!["connect"], "errors: {:?}", bystander_client.borrow().errors);
    assert_eq!(bystander_server.borrow().events, vec!["connect"], "errors: {:?}", bystander_server.borrow().errors);
}

// ----- pausing -------------------------------------------------------------------------

/// Reads `chunk` bytes, then pauses (`readable()` false) until a timer
/// 1 ms later resumes it with `refresh`.
struct PausingReader {
    log: Shared,
    chunk: usize,
    since_pause: usize,
    paused: bool,
}

impl Dispatcher for PausingReader {
    fn readable(&self) -> bool {
        !self.paused
    }
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        // Take only up to the pause: the rest stays with the reactor.
        let take = data.len().min(self.chunk - self.since_pause);
        self.log.borrow_mut().received.extend_from_slice(&data[..take]);
        self.since_pause += take;
        if self.since_pause == self.chunk {
            self.paused = true;
            self.since_pause = 0;
            self.log.borrow_mut().events.push("pause");
            ctx.set_timer(Duration::from_millis(1), 0);
        }
        take
    }
    fn handle_timer(&mut self, ctx: &mut Context<'_>, _tag: u64) {
        self.paused = false;
        let id = ctx.id();
        ctx.reactor().refresh(id);
    }
    fn handle_eof(&mut self, ctx: &mut Context<'_>) {
        self.log.borrow_mut().events.push("eof");
        ctx.close();
    }
    fn handle_error(&mut self, _ctx: &mut Context<'_>, error: std::io::Error) {
        self.log.borrow_mut().errors.push(error.to_string());
    }
}

#[test]
fn a_paused_reader_with_decrypted_bytes_held_back_loses_no_byte_and_no_edge() {
    // Small reads (OpenSSL holds the rest of each record) and pauses in
    // the middle of records; the sender writes everything at once and then
    // falls silent, so after its last edge every byte must come from what
    // the reactor and OpenSSL remembered.
    let config = ReactorConfig { scratch_size: 3000, read_budget: 3000, ..ReactorConfig::default() };
    let mut reactor = Reactor::with_config(config).unwrap();
    let payload = pattern(300 * 1024, 3);
    let payload2 = payload.clone();
    let server_log = Rc::new(RefCell::new(Log::default()));
    let server_log2 = server_log.clone();
    let addr = tls_server(&mut reactor, server_config(CipherPolicy::Modern), move || Peer {
        greeting: payload2.clone(),
        close_after_greeting: true,
        ..Peer::new(&server_log2)
    });
    let log = Rc::new(RefCell::new(Log::default()));
    let reader = PausingReader { log: log.clone(), chunk: 7_777, since_pause: 0, paused: false };
    reactor.connect_tls(addr, &trusting_client(), "localhost", reader).unwrap();
    run_until(&mut reactor, "every byte and the end", |_| {
        log.borrow().count("eof") > 0 || !log.borrow().errors.is_empty()
    });
    let log = log.borrow();
    assert!(log.errors.is_empty(), "{:?}", log.errors);
    assert_eq!(log.received.len(), payload.len());
    assert!(log.received == payload, "complete and in order");
    assert!(log.count("pause") >= payload.len() / 7_777, "it paused {} times", log.count("pause"));
}

#[test]
fn a_ca_file_that_cannot_be_used_is_told_in_one_reason_not_openssls_whole_stack() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    for (path, reason) in [(dir.join("missing.pem"), "no such file"), (not_pem, "no certificate")] {
        let error = TlsClientConfig::new(Some(&path)).err().expect("refused").to_string();
        let prefix = format!("TLS configuration (CA file {}): ", path.display());
        let said = error.strip_prefix(&prefix).unwrap_or_else(|| panic!("{error}"));
        // One reason: no `error:…:file.c:line:` entries.
        assert!(said.to_lowercase().contains(reason) && !said.contains(':'), "{error}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

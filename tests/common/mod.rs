//! Helpers shared by the integration tests (each test binary uses part).
#![allow(dead_code)]

pub mod captured;
pub mod process;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use barrage::douyu::frame::{self, DecoderConfig, SERVER_TO_CLIENT};
use barrage::douyu::{Message, stt};
use barrage::reactor::{Context, Dispatcher, Reactor};
use mio::net::TcpListener;

/// The example binary `name`. A test binary lives in
/// `target/<profile>/deps/<test>-<hash>`; the examples one level up.
///
/// Only a plain `cargo test` builds the examples: with a target filter
/// (`cargo test --test examples`) they are not rebuilt, so check that the
/// binary is there and not older than its source.
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test binary>");
    let path = profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let hint = "run a plain `cargo test`, or `cargo build --examples` first";
    let built = std::fs::metadata(&path).and_then(|m| m.modified());
    let built = built.unwrap_or_else(|_| panic!("{} is missing: {hint}", path.display()));
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples").join(format!("{name}.rs"));
    if let Ok(edited) = std::fs::metadata(&source).and_then(|m| m.modified()) {
        assert!(edited <= built, "{} is older than {}: {hint}", path.display(), source.display());
    }
    path
}

/// What the fake Douyu server sends each room after `joingroup`.
#[derive(Clone, Copy)]
pub struct FakeDouyu {
    /// Chat messages, numbered 1..=chats in `cid`.
    pub chats: u64,
    /// The chat text for a given cid.
    pub text: fn(u64) -> String,
    /// Send an `rss` first (odd rooms live, even rooms offline).
    pub rss: bool,
    /// Close the connection right after streaming (a server that kicks).
    pub close_after_join: bool,
}

/// What the fake server saw.
#[derive(Debug, Default)]
pub struct ServerLog {
    pub logins: HashMap<u64, u32>,
    /// Connections open right now.
    pub open: i64,
    pub logouts: u32,
    pub heartbeats: u32,
    /// Each joined room's connection on the server side, to send it more.
    pub joined: HashMap<u64, barrage::reactor::EntryToken>,
}

/// Starts the fake server on an ephemeral loopback port of `reactor`:
/// answers loginreq, streams the room on joingroup, echoes mrkl, counts
/// logouts. Returns its address and its log.
pub fn fake_douyu(reactor: &mut Reactor, spec: FakeDouyu) -> (String, Rc<RefCell<ServerLog>>) {
    fake_douyu_at(reactor, "127.0.0.1:0".parse().unwrap(), spec).expect("a loopback port")
}

/// Like [`fake_douyu`], listening on `addr` (a loopback address other than
/// 127.0.0.1, or a port already chosen); fails if it cannot be had.
pub fn fake_douyu_at(
    reactor: &mut Reactor,
    addr: std::net::SocketAddr,
    spec: FakeDouyu,
) -> std::io::Result<(String, Rc<RefCell<ServerLog>>)> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr().unwrap().to_string();
    let log = Rc::new(RefCell::new(ServerLog::default()));
    let server_log = log.clone();
    reactor
        .listen(listener, move |r: &mut Reactor, stream, _| {
            server_log.borrow_mut().open += 1;
            r.add_stream(stream, FakeRoomServer { room: 0, spec, log: server_log.clone() }).unwrap();
        })
        .unwrap();
    Ok((addr, log))
}

struct FakeRoomServer {
    room: u64,
    spec: FakeDouyu,
    log: Rc<RefCell<ServerLog>>,
}

/// Sends one message built through the STT writer (so `/` and `@` in
/// values are escaped).
fn send(ctx: &mut Context<'_>, fields: &[(&str, &str)]) {
    ctx.send(&packet(fields));
}

/// One server-to-client packet with these fields.
pub fn packet(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = String::new();
    for (key, value) in fields {
        stt::push_field(&mut body, key, value);
    }
    let mut out = Vec::new();
    frame::encode_packet(&mut out, SERVER_TO_CLIENT, &body);
    out
}

impl Dispatcher for FakeRoomServer {
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let mut consumed = 0;
        while let Ok(Some((packet, used))) = frame::decode_packet(&data[consumed..], &DecoderConfig::server()) {
            consumed += used;
            let message = Message::decode(&packet.body);
            match message.msg_type() {
                "loginreq" => {
                    self.room = message.get("roomid").unwrap().parse().unwrap();
                    *self.log.borrow_mut().logins.entry(self.room).or_insert(0) += 1;
                    send(ctx, &[("type", "loginres"), ("userid", "0"), ("live_stat", "0")]);
                }
                "joingroup" => {
                    self.log.borrow_mut().joined.insert(self.room, ctx.id());
                    let room = self.room.to_string();
                    if self.spec.rss {
                        let live = if self.room % 2 == 1 { "1" } else { "0" };
                        send(ctx, &[("type", "rss"), ("rid", &room), ("ss", live), ("ivl", "0")]);
                    }
                    for cid in 1..=self.spec.chats {
                        let text = (self.spec.text)(cid);
                        let cid = cid.to_string();
                        send(
                            ctx,
                            &[("type", "chatmsg"), ("rid", &room), ("nn", "观众"), ("txt", &text), ("cid", &cid)],
                        );
                    }
                    if self.spec.close_after_join {
                        ctx.close();
                    }
                }
                "mrkl" => {
                    self.log.borrow_mut().heartbeats += 1;
                    send(ctx, &[("type", "mrkl")]);
                }
                "logout" => self.log.borrow_mut().logouts += 1,
                _ => {}
            }
        }
        consumed
    }

    fn handle_close(&mut self, _ctx: &mut Context<'_>) {
        self.log.borrow_mut().open -= 1;
    }
}

/// A Douyu client: the daemon's `ClientSession` in a minimal dispatcher,
/// recording every message it gets (see [`douyu_client`]).
struct SessionClient {
    session: barrage::douyu::ClientSession,
    messages: Rc<RefCell<Vec<Message>>>,
    timer: Option<barrage::reactor::TimerHandle>,
}

impl SessionClient {
    /// Sends what the session wants sent, records its messages, sets the
    /// timer for its next deadline.
    fn pump(&mut self, ctx: &mut Context<'_>) {
        let mut out = Vec::new();
        if self.session.poll_transmit(&mut out) {
            ctx.send(&out);
        }
        while let Some(event) = self.session.poll_event() {
            match event {
                barrage::douyu::SessionEvent::Message(message) => self.messages.borrow_mut().push(message),
                barrage::douyu::SessionEvent::Joined => {}
                barrage::douyu::SessionEvent::Close(_) => ctx.close(),
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

impl Dispatcher for SessionClient {
    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        self.session.on_connected(std::time::Instant::now());
        self.pump(ctx);
    }

    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let used = self.session.on_bytes(data, std::time::Instant::now());
        self.pump(ctx);
        used
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_>, _tag: u64) {
        self.timer = None;
        self.session.on_timeout(std::time::Instant::now());
        self.pump(ctx);
    }
}

/// Connects a client to the Douyu server at `addr`: it logs in to `room`,
/// joins it, sends a heartbeat every `heartbeat`, and records every
/// message it gets. Close it with `reactor.close(id)`.
pub fn douyu_client(
    reactor: &mut Reactor,
    addr: std::net::SocketAddr,
    room: u64,
    heartbeat: std::time::Duration,
) -> (barrage::reactor::EntryToken, Rc<RefCell<Vec<Message>>>) {
    let config = barrage::douyu::SessionConfig { heartbeat, ..barrage::douyu::SessionConfig::default() };
    let messages = Rc::new(RefCell::new(Vec::new()));
    let client = SessionClient {
        session: barrage::douyu::ClientSession::new(room, config),
        messages: messages.clone(),
        timer: None,
    };
    (reactor.connect(addr, client).expect("connect"), messages)
}

/// Runs `client` on a helper thread while `reactor` runs on this one, and
/// returns what it returned (a blocking client against a server on the
/// loop). Panics if it takes longer than `deadline`; a panic in `client`
/// is raised here.
pub fn run_beside<T: Send + 'static>(
    reactor: &mut Reactor,
    deadline: std::time::Duration,
    client: impl FnOnce() -> T + Send + 'static,
) -> T {
    /// Wakes the loop when dropped on the client's thread (also by a
    /// panic), so that the end is seen at once, not at the next event.
    struct WakeOnDrop(barrage::reactor::ReactorHandle);
    impl Drop for WakeOnDrop {
        fn drop(&mut self) {
            self.0.add_callback(|_| {});
        }
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    let wake = WakeOnDrop(reactor.handle());
    let thread = std::thread::spawn(move || {
        // Dropped in reverse order: the result is sent before the wake-up.
        let _wake = wake;
        let sender = sender;
        let _ = sender.send(client());
    });
    let mut result = None;
    let done = reactor
        .run_until(std::time::Instant::now() + deadline, |_| match receiver.try_recv() {
            Ok(value) => {
                result = Some(value);
                true
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => true,
            Err(std::sync::mpsc::TryRecvError::Empty) => false,
        })
        .unwrap();
    assert!(done, "the client finished before the deadline");
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
    result.expect("the client returned")
}

/// A loopback address whose connects hang, as a black-holed one's do: a
/// listener that never accepts, its accept queue filled up (std listens
/// with a backlog of 128). Linux drops further SYNs then, so a connect
/// neither completes nor fails. (Other systems may refuse instead.)
#[cfg(target_os = "linux")]
pub fn black_hole() -> (std::net::TcpListener, Vec<std::net::TcpStream>, std::net::SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..4096 {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)) {
            Ok(stream) => queued.push(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (listener, queued, addr),
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue never filled");
}

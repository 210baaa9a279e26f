//! The monitor against a minimal in-process Douyu server on loopback.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use barrage::douyu::Message;
use barrage::douyu::frame::{self, DecoderConfig, SERVER_TO_CLIENT};
use barrage::monitor::format::Format;
use barrage::monitor::output::Destination;
use barrage::monitor::{Monitor, MonitorConfig, RoomState};
use barrage::reactor::{Context, Dispatcher, Reactor};
use mio::net::TcpListener;

const DEADLINE: Duration = Duration::from_secs(20);

/// What the fake server saw, per room.
#[derive(Default)]
struct ServerLog {
    logins: HashMap<u64, u32>,
    logouts: u32,
    heartbeats: u32,
}

/// Answers loginreq, streams `count` chat messages with cid 1..=count on
/// joingroup, echoes mrkl.
struct FakeRoomServer {
    room: u64,
    count: u64,
    log: Rc<RefCell<ServerLog>>,
}

impl FakeRoomServer {
    fn send(ctx: &mut Context<'_>, body: &str) {
        let mut out = Vec::new();
        frame::encode_packet(&mut out, SERVER_TO_CLIENT, body);
        ctx.send(&out);
    }
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
                    Self::send(ctx, "type@=loginres/userid@=0/live_stat@=0/");
                }
                "joingroup" => {
                    for cid in 1..=self.count {
                        // Through the STT writer, so `/` and `@` in the text are escaped.
                        let mut body = String::new();
                        let text = format!("a/b@Sc \"{cid}\"");
                        let room = self.room.to_string();
                        let cid = cid.to_string();
                        for (key, value) in
                            [("type", "chatmsg"), ("rid", &room), ("nn", "观众"), ("txt", &text), ("cid", &cid)]
                        {
                            barrage::douyu::stt::push_field(&mut body, key, value);
                        }
                        Self::send(ctx, &body);
                    }
                }
                "mrkl" => {
                    self.log.borrow_mut().heartbeats += 1;
                    Self::send(ctx, "type@=mrkl/");
                }
                "logout" => self.log.borrow_mut().logouts += 1,
                _ => {}
            }
        }
        consumed
    }
}

fn fake_server(reactor: &mut Reactor, count: u64) -> (String, Rc<RefCell<ServerLog>>) {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let log = Rc::new(RefCell::new(ServerLog::default()));
    let server_log = log.clone();
    reactor
        .listen(listener, move |r: &mut Reactor, stream, _| {
            r.add_stream(stream, FakeRoomServer { room: 0, count, log: server_log.clone() }).unwrap();
        })
        .unwrap();
    (addr, log)
}

fn temp_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("barrage-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn config(server: String, rooms: Vec<u64>, output: PathBuf) -> MonitorConfig {
    MonitorConfig {
        rooms,
        servers: vec![server],
        format: Format::Json,
        output: Destination::File(output),
        status_interval: Duration::ZERO,
        ..MonitorConfig::default()
    }
}

fn json_lines(path: &PathBuf) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|line| serde_json::from_str(line).expect("every line is JSON")).collect()
}

#[test]
fn every_message_of_every_room_is_written_exactly_once() {
    let mut reactor = Reactor::new().unwrap();
    let (server, log) = fake_server(&mut reactor, 500);
    let path = temp_path("exactly-once.jsonl");
    let rooms: Vec<u64> = (1..=5).map(|i| 1000 + i).collect();
    let monitor = Monitor::start(&mut reactor, config(server, rooms.clone(), path.clone())).unwrap();

    let done = reactor.run_until(Instant::now() + DEADLINE, |_| monitor.stats().messages >= 5 * (500 + 1)).unwrap();
    assert!(done, "received {} messages", monitor.stats().messages);
    monitor.shutdown(&mut reactor);
    assert!(reactor.run_until(Instant::now() + DEADLINE, |_| monitor.is_idle()).unwrap(), "rooms closed");
    monitor.finish_output(Duration::from_secs(10));

    let lines = json_lines(&path);
    for room in &rooms {
        let cids: Vec<u64> = lines
            .iter()
            .filter(|l| l["room"] == *room && l["type"] == "chatmsg")
            .map(|l| l["fields"]["cid"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(cids, (1..=500).collect::<Vec<_>>(), "room {room}: each message once, in order");
        assert!(lines.iter().any(|l| l["room"] == *room && l["type"] == "loginres"), "loginres is written too");
    }
    let chat = lines.iter().find(|l| l["type"] == "chatmsg").unwrap();
    assert_eq!(chat["fields"]["txt"], "a/b@Sc \"1\"", "text survives escaping");
    assert!(chat["ts"].as_u64().unwrap() > 1_600_000_000_000, "ts is Unix epoch milliseconds");
    let logged_out = reactor.run_until(Instant::now() + DEADLINE, |_| log.borrow().logouts == 5).unwrap();
    assert!(logged_out, "every room logged out on shutdown ({} of 5)", log.borrow().logouts);
    assert!(monitor.rooms().iter().all(|r| r.state == RoomState::Stopped));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn type_filter_writes_only_the_chosen_types() {
    let mut reactor = Reactor::new().unwrap();
    let (server, _log) = fake_server(&mut reactor, 20);
    let path = temp_path("types.jsonl");
    let mut config = config(server, vec![7], path.clone());
    config.types = Some(["loginres".to_string()].into_iter().collect());
    let monitor = Monitor::start(&mut reactor, config).unwrap();
    assert!(reactor.run_until(Instant::now() + DEADLINE, |_| monitor.stats().messages >= 21).unwrap());
    monitor.finish_output(Duration::from_secs(10));
    let lines = json_lines(&path);
    assert_eq!(lines.len(), 1, "only the loginres line");
    assert_eq!(lines[0]["type"], "loginres");
    assert_eq!(monitor.stats().filtered, 20);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_refused_room_backs_off_and_connects_once_the_server_is_up() {
    // Two addresses: the first refuses, the second works. The room must move
    // on to the second address at once instead of backing off.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let mut reactor = Reactor::new().unwrap();
    let (server, log) = fake_server(&mut reactor, 3);
    let path = temp_path("failover.jsonl");
    let mut config = config(dead, vec![42], path.clone());
    config.servers.push(server);
    let monitor = Monitor::start(&mut reactor, config).unwrap();
    let started = Instant::now();
    assert!(reactor.run_until(Instant::now() + DEADLINE, |_| monitor.stats().messages >= 4).unwrap());
    assert!(started.elapsed() < Duration::from_secs(1), "failed over without waiting out a backoff");
    assert_eq!(log.borrow().logins[&42], 1);
    assert_eq!(monitor.rooms()[0].reconnects, 1, "one failed attempt on the dead address");
    let _ = std::fs::remove_file(&path);
}

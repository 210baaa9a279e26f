//! The monitor against a minimal in-process Douyu server on loopback.

mod common;
use common::{FakeDouyu, ServerLog, fake_douyu};

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use barrage::monitor::format::Format;
use barrage::monitor::output::Destination;
use barrage::monitor::{Monitor, MonitorConfig, RoomState};
use barrage::reactor::Reactor;

const DEADLINE: Duration = Duration::from_secs(20);

fn fake_server(reactor: &mut Reactor, count: u64) -> (String, Rc<RefCell<ServerLog>>) {
    // The text holds `/`, `@S` and quotes, to check they survive.
    fake_douyu(reactor, FakeDouyu { chats: count, text: |cid| format!("a/b@Sc \"{cid}\""), rss: false })
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

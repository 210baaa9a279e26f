//! The monitor against a minimal in-process Douyu server on loopback;
//! server names through a fake resolver.

mod common;
use common::{FakeDouyu, ServerLog, captured, fake_douyu, fake_douyu_at, packet};

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use barrage::monitor::format::Format;
use barrage::monitor::output::Destination;
use barrage::monitor::{Monitor, MonitorConfig, Resolution, RoomState, StartError, StopCause};
use barrage::reactor::Reactor;

const DEADLINE: Duration = Duration::from_secs(20);

fn fake_server(reactor: &mut Reactor, count: u64) -> (String, Rc<RefCell<ServerLog>>) {
    // The text holds `/`, `@S` and quotes, to check they survive.
    fake_douyu(
        reactor,
        FakeDouyu { chats: count, text: |cid| format!("a/b@Sc \"{cid}\""), rss: false, close_after_join: false },
    )
}

fn temp_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("barrage-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn config(server: String, rooms: Vec<u64>, output: PathBuf) -> MonitorConfig {
    MonitorConfig {
        rooms,
        servers: vec![server.parse().unwrap()],
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

/// Messages already in the sockets when a stop is handled are written
/// before the rooms log out — also when the stop is one event among many
/// in one poll's batch (the loop runs due timers every 64 events of a
/// batch, so logouts armed by the stop could fire before the rest of the
/// batch is read). Here a hundred rooms' messages wait in their sockets
/// behind the stop request when the loop polls.
#[test]
fn a_stop_writes_what_the_sockets_hold_before_logging_out() {
    const ROOMS: u64 = 100;
    // The server runs on a loop of its own, turned by this test, so that
    // it can write while the monitor's loop is not polling.
    let mut server_loop = Reactor::new().unwrap();
    let (server, log) = fake_server(&mut server_loop, 1);
    let mut reactor = Reactor::new().unwrap();
    let path = temp_path("stop-reads-first.jsonl");
    let rooms: Vec<u64> = (1..=ROOMS).map(|i| 8000 + i).collect();
    let monitor = Monitor::start(&mut reactor, config(server, rooms.clone(), path.clone())).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while log.borrow().joined.len() < ROOMS as usize || monitor.stats().messages < 2 * ROOMS {
        assert!(Instant::now() < deadline, "every room joined");
        server_loop.turn(Some(Duration::from_millis(1))).unwrap();
        reactor.turn(Some(Duration::from_millis(1))).unwrap();
    }

    // The stop request first: a datagram on a socket the loop watches.
    let (trigger, watched) = mio::net::UnixDatagram::pair().unwrap();
    let stopper = monitor.clone();
    let on_trigger = move |reactor: &mut Reactor, _, socket: &mut mio::net::UnixDatagram, _| {
        while socket.recv(&mut [0; 8]).is_ok() {}
        stopper.stop(reactor, StopCause::Signal("SIGTERM"), Duration::ZERO);
    };
    reactor.add_handler(watched, barrage::reactor::Interest::READABLE, on_trigger).unwrap();
    trigger.send(b"stop").unwrap();
    // Then every room's last message, written and in the client's socket
    // (the kernel may hand loopback data over a moment after the write).
    let conns: Vec<_> = log.borrow().joined.values().copied().collect();
    for (room, &conn) in log.borrow().joined.iter() {
        let last =
            packet(&[("type", "chatmsg"), ("rid", &room.to_string()), ("nn", "n"), ("txt", "last"), ("cid", "2")]);
        assert!(server_loop.send(conn, &last));
    }
    let client_ports: Vec<u16> = conns.iter().map(|&conn| server_loop.peer_addr(conn).unwrap().port()).collect();
    let deadline = Instant::now() + DEADLINE;
    while conns.iter().any(|&conn| server_loop.pending_output(conn) != Some(0)) || {
        let unread = unread_bytes_by_port();
        client_ports.iter().any(|port| !unread.contains_key(port))
    } {
        assert!(Instant::now() < deadline, "the last messages never reached the monitor's sockets");
        server_loop.turn(Some(Duration::from_millis(1))).unwrap();
    }

    let deadline = Instant::now() + DEADLINE;
    while !monitor.is_idle() {
        assert!(Instant::now() < deadline, "rooms closed");
        reactor.turn(Some(Duration::from_millis(1))).unwrap();
        server_loop.turn(Some(Duration::from_millis(1))).unwrap();
    }
    monitor.finish_output(Duration::from_secs(10));
    let lines = json_lines(&path);
    let missing: Vec<u64> = rooms
        .iter()
        .copied()
        .filter(|&room| !lines.iter().any(|l| l["room"] == room && l["fields"]["txt"] == "last"))
        .collect();
    assert!(missing.is_empty(), "{} rooms logged out before reading their last message: {missing:?}", missing.len());
    let _ = std::fs::remove_file(&path);
}

/// The loopback TCP sockets that have bytes waiting unread, by local port,
/// from /proc/net/tcp.
fn unread_bytes_by_port() -> std::collections::HashMap<u16, u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
            let rx_queue = u64::from_str_radix(fields.get(4)?.rsplit(':').next()?, 16).ok()?;
            (rx_queue > 0).then_some((local_port, rx_queue))
        })
        .collect()
}

#[test]
fn a_joined_room_holds_one_timer_not_its_spent_connect_timeout() {
    let mut reactor = Reactor::new().unwrap();
    let (server, _log) = fake_server(&mut reactor, 0);
    let path = temp_path("one-timer.jsonl");
    let rooms: Vec<u64> = (1..=3).map(|i| 7000 + i).collect();
    let monitor = Monitor::start(&mut reactor, config(server, rooms, path.clone())).unwrap();
    let joined = |_: &mut Reactor| monitor.rooms().iter().all(|room| room.state == RoomState::Joined);
    assert!(reactor.run_until(Instant::now() + DEADLINE, joined).unwrap(), "every room joined");
    // One session timer per room (its next heartbeat or timeout). The connect
    // timeout was cancelled when the connection came up; left armed, it would
    // fire for nothing 10 s later, once per room.
    assert_eq!(reactor.pending_timers(), 3, "pending timers with three rooms joined");
    monitor.shutdown(&mut reactor);
    assert!(reactor.run_until(Instant::now() + DEADLINE, |_| monitor.is_idle()).unwrap(), "rooms closed");
    monitor.finish_output(Duration::from_secs(10));
    let _ = std::fs::remove_file(&path);
}

#[test]
#[cfg(target_os = "linux")]
fn a_connect_that_hangs_times_out_and_the_room_moves_to_the_next_address() {
    let (_listener, _queued, hole) = common::black_hole();
    let mut reactor = Reactor::new().unwrap();
    let (server, _log) = fake_server(&mut reactor, 0);
    let path = temp_path("connect-timeout.jsonl");
    let mut config = config(hole.to_string(), vec![7101], path.clone());
    config.servers.push(server.parse().unwrap());
    config.connect_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let monitor = Monitor::start(&mut reactor, config).unwrap();
    let joined = |_: &mut Reactor| monitor.rooms()[0].state == RoomState::Joined;
    // Without the timeout the room would wait out the kernel's SYN retries
    // (about two minutes) on the first address.
    assert!(reactor.run_until(Instant::now() + DEADLINE, joined).unwrap(), "joined through the second address");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "the first address had its full 300 ms");
    // Had the first connect completed after all, the room would have moved on
    // only when its login timed out (15 s).
    assert!(elapsed < Duration::from_secs(10), "moved on after {elapsed:?}: not by the connect timeout");
    assert_eq!(monitor.rooms()[0].reconnects, 1, "one attempt timed out");
    monitor.shutdown(&mut reactor);
    assert!(reactor.run_until(Instant::now() + DEADLINE, |_| monitor.is_idle()).unwrap(), "room closed");
    monitor.finish_output(Duration::from_secs(10));
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
    config.servers.push(server.parse().unwrap());
    let monitor = Monitor::start(&mut reactor, config).unwrap();
    let started = Instant::now();
    assert!(reactor.run_until(Instant::now() + DEADLINE, |_| monitor.stats().messages >= 4).unwrap());
    assert!(started.elapsed() < Duration::from_secs(1), "failed over without waiting out a backoff");
    assert_eq!(log.borrow().logins[&42], 1);
    assert_eq!(monitor.rooms()[0].reconnects, 1, "one failed attempt on the dead address");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_server_that_drops_every_room_after_joining_gets_backoff_not_a_storm() {
    // Two addresses of one server that accepts, lets the room join, then
    // closes. Each attempt fails (it dies within seconds), so after trying
    // both addresses the room must back off (1 s, doubling, jittered).
    let mut reactor = Reactor::new().unwrap();
    let (server, log) =
        fake_douyu(&mut reactor, FakeDouyu { chats: 1, text: |_| "x".into(), rss: false, close_after_join: true });
    let path = temp_path("drop-storm.jsonl");
    let mut config = config(server.clone(), vec![77], path.clone());
    config.servers.push(server.parse().unwrap());
    // Full jitter draws each delay from 0 up to its ceiling, so with the
    // clock's seed a few runs in a hundred draw four short delays in a row
    // and fit a fifth round in the window. A fixed seed makes the delays
    // the same every run; the rule itself is tested with a fake clock in
    // `lifecycle.rs`.
    config.random_seed = Some(3);
    let monitor = Monitor::start(&mut reactor, config).unwrap();
    // Watch for three seconds (an observation window, not a wait).
    reactor.run_until(Instant::now() + Duration::from_secs(3), |_| false).unwrap();
    let logins = log.borrow().logins.get(&77).copied().unwrap_or(0);
    // Backoff allows about 2 + 2 + 2 attempts in 3 s (both addresses, then
    // 0-1 s, then 0-2 s, …); reconnecting at once would make hundreds.
    assert!(
        (2..=8).contains(&logins),
        "{logins} logins in 3 s; rooms {:?}; server {:?}",
        monitor.rooms(),
        log.borrow()
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_room_added_again_while_its_old_connection_closes_gets_exactly_one_connection() {
    let mut reactor = Reactor::new().unwrap();
    let (server, log) = fake_server(&mut reactor, 3);
    let path = temp_path("readd.jsonl");
    let monitor = Monitor::start(&mut reactor, config(server, vec![5], path.clone())).unwrap();
    let joined = |m: &Monitor| m.rooms().iter().any(|r| r.id == 5 && r.state == RoomState::Joined);
    assert!(reactor.run_until(Instant::now() + DEADLINE, |_| joined(&monitor)).unwrap());

    // A reload removes the room, and another adds it back at once, while
    // the first connection is still logging out.
    monitor.remove_room(&mut reactor, 5);
    monitor.add_room(&mut reactor, 5);
    let relogged = reactor.run_until(Instant::now() + DEADLINE, |_| log.borrow().logins[&5] == 2).unwrap();
    assert!(relogged, "logged in again");
    assert!(reactor.run_until(Instant::now() + DEADLINE, |_| joined(&monitor) && log.borrow().open == 1).unwrap());
    // Settle a while: no second connection appears.
    reactor.run_until(Instant::now() + Duration::from_millis(500), |_| false).unwrap();
    assert_eq!(log.borrow().open, 1, "one connection for the room");
    let room = monitor.rooms().into_iter().find(|r| r.id == 5).unwrap();
    assert_eq!(room.state, RoomState::Joined, "the monitor tracks the live connection: {room:?}");
    assert!(room.conn.is_some());
    assert_eq!(log.borrow().logins[&5], 2);
    assert_eq!(log.borrow().logouts, 1);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_start_that_fails_says_which_part_of_the_config_could_not_be_used() {
    let mut reactor = Reactor::new().unwrap();
    let mut start = |config: MonitorConfig| match Monitor::start(&mut reactor, config) {
        Ok(_) => panic!("started"),
        Err(e) => e,
    };
    let output = temp_path("start-errors.jsonl");
    let nowhere = temp_path("no-such-dir").join("out.jsonl");
    let error = start(config("127.0.0.1:1".into(), vec![1], nowhere));
    assert!(matches!(error, StartError::Output(_)), "{error:?}");
    assert!(error.to_string().starts_with("cannot open the output: "), "{error}");

    // Certificates that cannot be used are no fault of the output.
    let mut bad_trust = config("wss://127.0.0.1:1".into(), vec![1], output.clone());
    bad_trust.ca_pem = Some(b"not a certificate".to_vec());
    let error = start(bad_trust);
    assert!(matches!(error, StartError::Trust(_)), "{error:?}");
    assert!(error.to_string().starts_with("cannot use the CA certificates given: "), "{error}");

    let error = start(config("127.0.0.1:1".into(), vec![0], output.clone()));
    assert!(matches!(&error, StartError::Setting(e) if e.setting == "rooms"), "{error:?}");
    let _ = std::fs::remove_file(&output);
}

/// Once a stop has begun nothing connects again: a reload then (SIGHUP
/// adds back every room listed as stopped) adds no room, so every room
/// the stop logged out stays closed and the stop ends at once, not at the
/// logout timeout with rooms joined that nobody logs out.
#[test]
fn rooms_added_once_a_stop_has_begun_do_not_connect() {
    let mut reactor = Reactor::new().unwrap();
    let (server, log) = fake_server(&mut reactor, 3);
    let path = temp_path("add-while-stopping.jsonl");
    let config = MonitorConfig { logout_timeout: DEADLINE, ..config(server, vec![7], path.clone()) };
    let monitor = Monitor::start(&mut reactor, config).unwrap();
    let joined = |m: &Monitor| m.rooms().iter().any(|r| r.id == 7 && r.state == RoomState::Joined);
    assert!(reactor.run_until(Instant::now() + DEADLINE, |_| joined(&monitor)).unwrap());

    monitor.stop(&mut reactor, StopCause::Signal("SIGTERM"), Duration::ZERO);
    monitor.add_room(&mut reactor, 8);
    assert!(monitor.rooms().iter().all(|r| r.id != 8), "not added while the stop reads what the sockets hold");
    let stopped = |m: &Monitor| m.rooms().iter().all(|r| r.state == RoomState::Stopped);
    assert!(reactor.run_until(Instant::now() + DEADLINE, |_| stopped(&monitor)).unwrap(), "room 7 logged out");
    // A reload now: room 7 is listed as stopped, room 9 is new.
    monitor.add_room(&mut reactor, 7);
    monitor.add_room(&mut reactor, 9);
    let rooms: Vec<(u64, RoomState)> = monitor.rooms().iter().map(|r| (r.id, r.state)).collect();
    assert_eq!(rooms, [(7, RoomState::Stopped)], "nothing added, nothing restarted");
    assert!(reactor.run_until(Instant::now() + DEADLINE, |reactor| reactor.is_stopped()).unwrap(), "the stop ended");
    assert!(monitor.is_idle());
    assert_eq!((log.borrow().logins.len(), log.borrow().logouts), (1, 1), "room 7 once, and logged out");
    let _ = std::fs::remove_file(&path);
}

// ----- server names, resolved again ----------------------------------------------------

/// What each fake name resolves to now (loopback IPs, or why not), and how
/// often it was asked. Each test has names of its own.
type FakeAnswer = Result<Vec<IpAddr>, &'static str>;
static NAMES: Mutex<BTreeMap<&'static str, (FakeAnswer, u32)>> = Mutex::new(BTreeMap::new());

/// The resolver the monitor is given: [`NAMES`], on the port asked for.
fn fake_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    let Some((answer, asked)) = names.get_mut(host) else {
        return Err(io::Error::other(format!("{host}: not a fake name")));
    };
    *asked += 1;
    match answer {
        Ok(ips) => Ok(ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect()),
        Err(why) => Err(io::Error::other(*why)),
    }
}

/// Makes `name` resolve to `answer` from the next look-up on.
fn set_name(name: &'static str, answer: FakeAnswer) {
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    names.entry(name).or_insert((Ok(Vec::new()), 0)).0 = answer;
}

/// How often `name` was looked up.
fn asked(name: &str) -> u32 {
    NAMES.lock().unwrap_or_else(|p| p.into_inner()).get(name).map_or(0, |(_, asked)| *asked)
}

const HERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const THERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Two fake servers on one port, at [`HERE`] and [`THERE`]: where a name
/// can move.
fn here_and_there(reactor: &mut Reactor) -> (u16, Rc<RefCell<ServerLog>>, Rc<RefCell<ServerLog>>) {
    let (here, here_log) = fake_server(reactor, 1);
    let port = here.parse::<SocketAddr>().unwrap().port();
    let spec = FakeDouyu { chats: 1, text: |_| "x".into(), rss: false, close_after_join: false };
    let (_, there_log) =
        fake_douyu_at(reactor, SocketAddr::new(THERE, port), spec).expect("the same port free on 127.0.0.2");
    (port, here_log, there_log)
}

/// A monitor of `rooms` on the server `name:port`, resolved by [`fake_resolve`].
fn by_name(
    name: &str,
    port: u16,
    rooms: Vec<u64>,
    output: PathBuf,
    change: impl FnOnce(&mut Resolution),
) -> MonitorConfig {
    let mut resolution = Resolution { resolve: fake_resolve, ..Resolution::default() };
    change(&mut resolution);
    MonitorConfig { resolution, ..config(format!("tcp://{name}:{port}"), rooms, output) }
}

fn joined(monitor: &Monitor, room: u64) -> bool {
    monitor.rooms().iter().any(|r| r.id == room && r.state == RoomState::Joined)
}

/// Runs `reactor` until `done`; panics at the deadline with the log.
fn wait(reactor: &mut Reactor, what: &str, mut done: impl FnMut() -> bool) {
    let reached = reactor.run_until(Instant::now() + DEADLINE, |_| done()).unwrap();
    assert!(reached, "timed out waiting for {what}\nlog:\n{}", captured::all());
}

#[test]
fn a_server_name_that_does_not_resolve_at_start_is_tried_again_and_the_room_joins_once_it_does() {
    const NAME: &str = "late.test";
    captured::start();
    set_name(NAME, Err("no such host"));
    let mut reactor = Reactor::new().unwrap();
    let (server, log) = fake_server(&mut reactor, 1);
    let port = server.parse::<SocketAddr>().unwrap().port();
    let path = temp_path("late-name.jsonl");
    let monitor = Monitor::start(&mut reactor, by_name(NAME, port, vec![51], path.clone(), |_| {})).unwrap();
    wait(&mut reactor, "the failure said", || !captured::matching("no server address could be resolved").is_empty());
    assert_eq!(monitor.rooms()[0].state, RoomState::Waiting, "nowhere to connect yet");

    set_name(NAME, Ok(vec![HERE]));
    wait(&mut reactor, "room 51 joined", || joined(&monitor, 51));
    assert!(asked(NAME) >= 2, "asked again: {}", asked(NAME));
    assert_eq!(log.borrow().logins[&51], 1);
    let _ = std::fs::remove_file(&path);
}

/// SIGHUP resolves the names again ([`Monitor::resolve_again`]): a room
/// added after the answer connects to the new address; the room joined at
/// the old one keeps its connection.
#[test]
fn new_addresses_serve_the_next_connect_and_a_joined_room_keeps_its_connection() {
    const NAME: &str = "moving.test";
    captured::start();
    set_name(NAME, Ok(vec![HERE]));
    let mut reactor = Reactor::new().unwrap();
    let (port, here, there) = here_and_there(&mut reactor);
    let path = temp_path("moving-name.jsonl");
    let monitor = Monitor::start(&mut reactor, by_name(NAME, port, vec![61], path.clone(), |_| {})).unwrap();
    wait(&mut reactor, "room 61 joined", || joined(&monitor, 61));
    let connection = monitor.rooms()[0].conn;

    set_name(NAME, Ok(vec![THERE]));
    monitor.resolve_again();
    wait(&mut reactor, "the new answer", || captured::matching("servers resolved to 1 address").len() == 2);
    monitor.add_room(&mut reactor, 62);
    wait(&mut reactor, "room 62 joined", || joined(&monitor, 62));
    assert_eq!(there.borrow().logins.get(&62), Some(&1), "the new address");
    assert!(!here.borrow().logins.contains_key(&62));
    let room = monitor.rooms().into_iter().find(|r| r.id == 61).unwrap();
    assert_eq!((room.state, room.conn, room.reconnects), (RoomState::Joined, connection, 0), "{room:?}");
    assert_eq!((here.borrow().open, here.borrow().logouts), (1, 0), "room 61 stayed where it was");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_name_that_later_resolves_to_nothing_keeps_its_last_good_addresses() {
    const NAME: &str = "vanishing.test";
    captured::start();
    set_name(NAME, Ok(vec![HERE]));
    let mut reactor = Reactor::new().unwrap();
    let (server, log) = fake_server(&mut reactor, 1);
    let port = server.parse::<SocketAddr>().unwrap().port();
    let path = temp_path("vanishing-name.jsonl");
    let monitor = Monitor::start(&mut reactor, by_name(NAME, port, vec![71], path.clone(), |_| {})).unwrap();
    wait(&mut reactor, "room 71 joined", || joined(&monitor, 71));

    for (answer, why) in [(Ok(vec![]), "no addresses"), (Err("no such host"), "no such host")] {
        set_name(NAME, answer);
        monitor.resolve_again();
        let said = format!("cannot resolve tcp://{NAME}:{port} ({why}); keeping its last 1 address");
        wait(&mut reactor, &said, || !captured::matching(&said).is_empty());
    }
    monitor.add_room(&mut reactor, 72);
    wait(&mut reactor, "room 72 joined", || joined(&monitor, 72));
    assert_eq!(log.borrow().logins.get(&72), Some(&1), "at the last good address");
    assert!(joined(&monitor, 71));
    let _ = std::fs::remove_file(&path);
}

/// A room that fails on every address asks for the names again, at most
/// once per `min_gap` however often it fails, and follows a moved name.
#[test]
fn a_room_failing_on_every_address_has_the_names_resolved_again_at_most_once_per_min_gap() {
    const NAME: &str = "failing.test";
    let min_gap = Duration::from_millis(300);
    captured::start();
    set_name(NAME, Ok(vec![HERE]));
    let mut reactor = Reactor::new().unwrap();
    // Only 127.0.0.2 listens: the name's first answer is refused.
    let spec = FakeDouyu { chats: 1, text: |_| "x".into(), rss: false, close_after_join: false };
    let (there, log) = fake_douyu_at(&mut reactor, SocketAddr::new(THERE, 0), spec).unwrap();
    let port = there.parse::<SocketAddr>().unwrap().port();
    let path = temp_path("failing-name.jsonl");
    let mut config = by_name(NAME, port, vec![81], path.clone(), |r| r.min_gap = min_gap);
    (config.backoff_base, config.backoff_cap) = (Duration::from_millis(10), Duration::from_millis(40));
    let started = Instant::now();
    let monitor = Monitor::start(&mut reactor, config).unwrap();
    // Watch the room fail for a while (an observation window, not a wait).
    reactor.run_until(Instant::now() + Duration::from_millis(1500), |_| false).unwrap();
    let (failures, resolutions) = (monitor.rooms()[0].reconnects, asked(NAME));
    let most = 1 + (started.elapsed().as_millis() / min_gap.as_millis()) as u32;
    assert!(failures >= 10, "{failures} failures\n{}", captured::all());
    assert!((2..=most).contains(&resolutions), "{resolutions} resolutions for {failures} failures (at most {most})");

    set_name(NAME, Ok(vec![THERE]));
    wait(&mut reactor, "room 81 joined", || joined(&monitor, 81));
    assert_eq!(log.borrow().logins.get(&81), Some(&1));
    let _ = std::fs::remove_file(&path);
}

/// Answers older than `refresh` are renewed when a room connects, not by
/// a timer; the connect does not wait for them, the next one uses them.
#[test]
fn old_answers_are_renewed_when_a_room_connects_and_serve_the_next_one() {
    const NAME: &str = "aging.test";
    let refresh = Duration::from_millis(300);
    captured::start();
    set_name(NAME, Ok(vec![HERE]));
    let mut reactor = Reactor::new().unwrap();
    let (port, here, there) = here_and_there(&mut reactor);
    let path = temp_path("aging-name.jsonl");
    let config = by_name(NAME, port, vec![91], path.clone(), |r| r.refresh = refresh);
    let monitor = Monitor::start(&mut reactor, config).unwrap();
    wait(&mut reactor, "room 91 joined", || joined(&monitor, 91));
    set_name(NAME, Ok(vec![THERE]));
    // No connect for three refresh periods (an observation window): no look-up.
    reactor.run_until(Instant::now() + 3 * refresh, |_| false).unwrap();
    assert_eq!(asked(NAME), 1, "resolved again with no one connecting");

    monitor.add_room(&mut reactor, 92);
    wait(&mut reactor, "room 92 joined", || joined(&monitor, 92));
    assert_eq!(here.borrow().logins.get(&92), Some(&1), "connected with the answers it had");
    wait(&mut reactor, "the new answer", || captured::matching("servers resolved to 1 address").len() == 2);
    assert_eq!(asked(NAME), 2);
    monitor.add_room(&mut reactor, 93);
    wait(&mut reactor, "room 93 joined", || joined(&monitor, 93));
    assert_eq!(there.borrow().logins.get(&93), Some(&1), "the next connect, at the new address");
    let _ = std::fs::remove_file(&path);
}

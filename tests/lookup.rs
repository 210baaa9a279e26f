//! Rooms as users name them, and live status they can trust, end to end:
//! the monitor against the simulator's Douyu side and its web look-ups
//! (room pages, `betard`), on one reactor on this thread, over loopback.
//!
//! The simulator's status is changed at chosen moments
//! (`SimServer::set_status`); the grace before an end is reported and the
//! look-up deadlines are shortened through their settings, so that a test
//! takes seconds, not minutes (the rules themselves are tested with a fake
//! clock in `monitor::live` and `monitor::lifecycle`). What the user sees
//! is checked: the lines written, the rooms' snapshots (what `/rooms`
//! shows), and the log, captured per thread by a logger of this binary.
//! The last tests run `barrage watch` itself, against the simulator on a
//! thread of its own or a minimal fake server, for what the flags, the
//! config file and `--metrics` show. Every wait is a condition with a
//! deadline.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use barrage::douyu::LiveStatus;
use barrage::http::Url;
use barrage::monitor::format::Format;
use barrage::monitor::output::Destination;
use barrage::monitor::{Endpoint, Monitor, MonitorConfig, Room, RoomState, WebLookups};
use barrage::reactor::Reactor;
use barrage::sim::{self, SimConfig, SimServer, WebConfig, WebFault};
use common::captured;
use common::process::{InProcessSim, TempDir, Watch, http_get};

const DEADLINE: Duration = Duration::from_secs(20);
/// A vanity id of the simulator, and the room it stands for.
const VANITY: u64 = 6657;
const REAL: u64 = 6979222;
/// A room known by its real id.
const PLAIN: u64 = 100001;

/// The simulator (Douyu side and web look-ups) and a monitor, on one reactor.
struct World {
    reactor: Reactor,
    sim: SimServer,
    monitor: Monitor,
    output: PathBuf,
    _dir: TempDir,
}

/// The simulator's settings for these tests: 20 messages a second in each
/// room, `VANITY` standing for `REAL`, the web look-ups on; then `change`.
fn sim_config(change: impl FnOnce(&mut SimConfig)) -> SimConfig {
    let mut config = SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        rate: 20.0,
        stats_interval: None,
        vanity: [(VANITY, REAL)].into(),
        web: Some(WebConfig::default()),
        ..SimConfig::default()
    };
    change(&mut config);
    config
}

/// The simulator, started on `reactor`.
fn start_sim(reactor: &mut Reactor, change: impl FnOnce(&mut SimConfig)) -> SimServer {
    captured::start();
    sim::start(reactor, sim_config(change)).expect("the simulator starts")
}

/// A monitor of `rooms` on the simulator, its look-ups pointed at the
/// simulator's web listener, writing JSON lines to a file; then `change`.
fn start_monitor(
    reactor: &mut Reactor,
    sim: &SimServer,
    test: &str,
    rooms: &[u64],
    change: impl FnOnce(&mut MonitorConfig),
) -> (Monitor, PathBuf, TempDir) {
    let dir = TempDir::new(test);
    let output = dir.path("rooms.jsonl");
    let base = Url::parse(&sim.web().expect("a web listener").base_url()).unwrap();
    let mut config = MonitorConfig {
        rooms: rooms.to_vec(),
        servers: vec![Endpoint::tcp(sim.local_addr())],
        format: Format::Json,
        output: Destination::File(output.clone()),
        status_interval: Duration::ZERO,
        check_sequence: true,
        web: Some(WebLookups::new(Some(base), true, Duration::from_secs(30))),
        ..MonitorConfig::default()
    };
    change(&mut config);
    let monitor = Monitor::start(reactor, config).expect("the monitor starts");
    (monitor, output, dir)
}

impl World {
    fn start(
        test: &str,
        rooms: &[u64],
        sim: impl FnOnce(&mut SimConfig),
        monitor: impl FnOnce(&mut MonitorConfig),
    ) -> World {
        let mut reactor = Reactor::new().unwrap();
        let sim = start_sim(&mut reactor, sim);
        let (monitor, output, dir) = start_monitor(&mut reactor, &sim, test, rooms, monitor);
        World { reactor, sim, monitor, output, _dir: dir }
    }

    /// Runs the loop until `done` holds; panics at the deadline.
    fn wait(&mut self, what: &str, mut done: impl FnMut(&Monitor, &SimServer) -> bool) {
        let World { reactor, sim, monitor, .. } = self;
        let reached = reactor.run_until(Instant::now() + DEADLINE, |_| done(monitor, sim)).unwrap();
        assert!(reached, "timed out waiting for {what}\nrooms: {:#?}\nlog:\n{}", monitor.rooms(), captured::all());
    }

    /// Runs the loop until `until`; panics if `happened` holds before.
    fn wait_out(&mut self, what: &str, until: Instant, mut happened: impl FnMut(&Monitor) -> bool) {
        let World { reactor, monitor, .. } = self;
        let reached = reactor.run_until(until, |_| happened(monitor)).unwrap();
        assert!(!reached, "{what}\nrooms: {:#?}\nlog:\n{}", monitor.rooms(), captured::all());
    }

    /// The room that was written as `written`.
    fn room(&self, written: u64) -> Room {
        room(&self.monitor, written)
    }

    /// Stops the monitor and returns every line it wrote.
    fn finish(mut self) -> Vec<String> {
        self.monitor.shutdown(&mut self.reactor);
        let monitor = &self.monitor;
        let closed = self.reactor.run_until(Instant::now() + DEADLINE, |_| monitor.is_idle()).unwrap();
        assert!(closed, "every room closed");
        let unwritten = self.monitor.finish_output(DEADLINE);
        assert_eq!(unwritten.lines, 0, "everything written");
        std::fs::read_to_string(&self.output).unwrap().lines().map(str::to_string).collect()
    }
}

fn room(monitor: &Monitor, written: u64) -> Room {
    monitor.rooms().into_iter().find(|room| room.written == written).expect("the room is watched")
}

/// The status it was last told, once something was reported (not just
/// the login's guess).
fn reported(room: &Room) -> Option<LiveStatus> {
    room.live.filter(|_| room.live_since.is_some())
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The `barrage.live` lines of `room`: (status, source), in order.
fn live_lines(lines: &[String], room: u64) -> Vec<(String, String)> {
    live_fields(lines, room)
        .iter()
        .map(|fields| (fields["status"].as_str().unwrap().into(), fields["source"].as_str().unwrap().into()))
        .collect()
}

/// The fields of every `barrage.live` line of `room`.
fn live_fields(lines: &[String], room: u64) -> Vec<serde_json::Value> {
    lines
        .iter()
        .map(|line| json(line))
        .filter(|line| line["type"] == "barrage.live" && line["room"] == room)
        .map(|line| line["fields"].clone())
        .collect()
}

fn pair(status: &str, source: &str) -> (String, String) {
    (status.to_string(), source.to_string())
}

// ----- room ids ---------------------------------------------------------------------

#[test]
fn a_vanity_id_joins_the_real_room_and_its_messages_carry_the_real_id() {
    let mut world = World::start("vanity", &[VANITY, PLAIN], |_| {}, |_| {});
    world.wait("both rooms joined, with messages", |monitor, _| {
        monitor.rooms().iter().all(|room| room.state == RoomState::Joined && room.sequence.received >= 20)
    });
    let vanity = world.room(VANITY);
    assert_eq!((vanity.id, vanity.written), (REAL, VANITY));
    let plain = world.room(PLAIN);
    assert_eq!((plain.id, plain.written), (PLAIN, PLAIN));
    assert_eq!((world.sim.members(VANITY), world.sim.members(REAL)), (0, 1), "joined the real room only");
    let (name, owner) = (vanity.name.clone().expect("a name"), vanity.owner.clone().expect("an owner"));
    let said = captured::matching(&format!("room {VANITY} → {REAL} ({name}, {owner})"));
    assert_eq!(said.len(), 1, "the log tells the look-up once:\n{}", captured::all());
    assert_eq!(vanity.sequence.missing + vanity.sequence.duplicated, 0);

    let lines = world.finish();
    let rooms: std::collections::BTreeSet<u64> =
        lines.iter().map(|line| json(line)["room"].as_u64().unwrap()).collect();
    assert_eq!(rooms, [PLAIN, REAL].into(), "every line is of a real room");
    let chat: Vec<serde_json::Value> =
        lines.iter().map(|line| json(line)).filter(|line| line["type"] == "chatmsg" && line["room"] == REAL).collect();
    assert!(!chat.is_empty());
    assert!(
        chat.iter().all(|line| line["fields"]["rid"].as_str() == Some("6979222")),
        "the server's rid is the real id"
    );
    let live = live_fields(&lines, REAL);
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!((live[0]["rid"].as_str(), live[0]["status"].as_str()), (Some("6979222"), Some("live")));
    assert_eq!((live[0]["room_name"].as_str(), live[0]["owner"].as_str()), (Some(&*name), Some(&*owner)));
    assert!(live[0]["category"].as_str().is_some_and(|category| !category.is_empty()), "{live:?}");
}

#[test]
fn a_vanity_id_and_its_real_id_together_join_the_room_once() {
    let mut world = World::start("both-ids", &[VANITY, REAL], |_| {}, |_| {});
    world.wait("both looked up, and messages", |monitor, _| {
        let rooms = monitor.rooms();
        let joined = rooms.iter().find(|room| room.state == RoomState::Joined);
        rooms.iter().all(|room| room.id == REAL) && joined.is_some_and(|room| room.sequence.received >= 20)
    });
    assert_eq!(world.sim.members(REAL), 1, "one connection to the room");
    let states: Vec<RoomState> = world.monitor.rooms().iter().map(|room| room.state).collect();
    assert!(states.contains(&RoomState::Stopped), "one of the two stops: {states:?}");
    assert_eq!(captured::matching("which is watched already").len(), 1, "{}", captured::all());
    let lines = world.finish();
    let mut cids = std::collections::BTreeMap::new();
    for line in lines.iter().map(|line| json(line)).filter(|line| line["type"] == "chatmsg") {
        *cids.entry(line["fields"]["cid"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    assert!(!cids.is_empty() && cids.values().all(|&n| n == 1), "each message written once: {cids:?}");
}

#[test]
fn a_room_name_reaches_the_log_made_safe_for_a_terminal() {
    // With seed 41, the simulator names the room "\x1b[2J清屏主播": an
    // escape sequence that clears the screen.
    let mut world = World::start("name-in-log", &[VANITY], |sim| sim.seed = 41, |_| {});
    let looked_up = format!("room {VANITY} → {REAL} (");
    world.wait("the look-up", |_, _| !captured::matching(&looked_up).is_empty());
    let (_, line) = captured::matching(&looked_up).remove(0);
    assert!(line.contains("␛[2J清屏主播"), "{line:?}");
    assert!(!line.chars().any(char::is_control), "no control character reaches the log: {line:?}");
    assert_eq!(world.room(VANITY).name.as_deref(), Some("\u{1b}[2J清屏主播"), "kept as it is (JSON escapes it)");
}

#[test]
fn look_ups_over_https_trust_the_ca_file() {
    use barrage::reactor::{CipherPolicy, TlsServerConfig};
    let made = sim::certificate::self_signed_localhost().unwrap();
    let tls = TlsServerConfig::from_pem(&made.cert_pem, &made.key_pem, CipherPolicy::Modern).unwrap();
    let ca_dir = TempDir::new("https-ca");
    let ca = ca_dir.path("ca.pem");
    std::fs::write(&ca, &made.cert_pem).unwrap();
    let mut world = World::start(
        "https",
        &[VANITY],
        |sim| sim.web.as_mut().unwrap().tls = Some(tls),
        |monitor| monitor.ca_file = Some(ca),
    );
    assert!(world.sim.web().unwrap().base_url().starts_with("https://127.0.0.1:"));
    world.wait("the real room joined, its status read", |monitor, _| {
        let room = room(monitor, VANITY);
        room.id == REAL && room.sequence.received > 0 && reported(&room) == Some(LiveStatus::Live)
    });
}

#[test]
fn the_desktop_page_answers_when_the_mobile_one_fails() {
    let mut reactor = Reactor::new().unwrap();
    // Every second request the simulator's web listener gets is a 503.
    let sim = start_sim(&mut reactor, |sim| sim.web.as_mut().unwrap().faults.add(WebFault::ServerError { every: 2 }));
    // The first is this one; the monitor's mobile page is then the second.
    let web = sim.web().unwrap().local_addr();
    let first = common::run_beside(&mut reactor, DEADLINE, move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(web).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(b"GET /betard/1 HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    });
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // No status reads: the room pages are the only requests.
    let (monitor, output, dir) = start_monitor(&mut reactor, &sim, "desktop", &[VANITY], |c| {
        c.web.as_mut().unwrap().status_check = Duration::ZERO
    });
    let mut world = World { reactor, sim, monitor, output, _dir: dir };
    world.wait("the room joined", |monitor, _| {
        let room = room(monitor, VANITY);
        room.state == RoomState::Joined && room.sequence.received > 0
    });
    let vanity = world.room(VANITY);
    assert_eq!(vanity.id, REAL);
    assert_eq!(vanity.name, None, "the desktop page, which names no room, answered");
    assert_eq!(captured::matching(&format!("room {VANITY} → {REAL}")).len(), 1, "{}", captured::all());
}

#[test]
fn failed_look_ups_back_off_while_the_rooms_join_as_written() {
    let mut world = World::start(
        "backoff",
        &[PLAIN, VANITY],
        |sim| sim.web.as_mut().unwrap().faults.add(WebFault::ServerError { every: 1 }),
        |_| {},
    );
    world.wait("both rooms joined as written", |monitor, _| {
        let plain = room(monitor, PLAIN);
        plain.sequence.received >= 5 && room(monitor, VANITY).state == RoomState::Joined
    });
    for written in [PLAIN, VANITY] {
        let room = world.room(written);
        assert_eq!(room.id, written, "no id known: the id as written");
        let said = captured::matching(&format!("room {written}: cannot look up its real id (the server answered 503)"));
        assert!(
            said.first().is_some_and(|(_, line)| line.starts_with("WARN") && line.contains("joining it as written")),
            "{}",
            captured::all()
        );
    }
    assert_eq!(world.room(VANITY).sequence.received, 0, "a vanity id joins nothing, as on Douyu");

    // The next look-ups wait longer and longer.
    let failures = || captured::matching(&format!("room {PLAIN}: cannot look up its real id"));
    world.wait("the look-up tried again", |_, _| failures().len() >= 2);
    let failures = failures();
    let delay = |line: &str| -> f64 {
        let after = line.split("trying again in ").nth(1).expect("a delay");
        after.trim_end_matches(" s").parse().expect("seconds")
    };
    let (first, second) = (delay(&failures[0].1), delay(&failures[1].1));
    assert!((2.0..=5.0).contains(&first), "the first pause is 2.5 to 5 s: {first}");
    assert!((5.0..=10.0).contains(&second), "the next one doubles: {second}");
    let waited = failures[1].0.duration_since(failures[0].0).as_secs_f64();
    assert!(waited >= 2.5 - 0.01, "it waited {waited} s as it said");
}

#[test]
fn a_site_that_fails_every_room_names_a_few_and_does_not_flood_the_log() {
    // Douyu's site down: every room's look-up fails. A warning each would
    // bury the log at ten thousand rooms; a few are named, the rest wait
    // for one line that counts them (a minute later, not waited for here).
    let rooms: Vec<u64> = (200_001..=200_012).collect();
    let mut world = World::start(
        "site-down",
        &rooms,
        |sim| sim.web.as_mut().unwrap().faults.add(WebFault::ServerError { every: 1 }),
        |_| {},
    );
    let first_failures = || captured::matching("joining it as written, trying again");
    world.wait("every room's first failed look-up", |_, _| first_failures().len() >= rooms.len());
    let failures = first_failures();
    let warned = failures.iter().filter(|(_, line)| line.starts_with("WARN")).count();
    assert_eq!(warned, 5, "five rooms named, the other seven quiet:\n{}", captured::all());
    for room in &rooms {
        let said = failures.iter().filter(|(_, line)| line.contains(&format!("room {room}: "))).count();
        assert_eq!(said, 1, "room {room}: its first failure logged once (warn or debug)\n{}", captured::all());
    }
}

#[test]
fn a_slow_look_up_joins_as_written_after_the_wait_and_then_the_real_room() {
    let mut world = World::start(
        "slow",
        &[VANITY],
        |sim| sim.web.as_mut().unwrap().faults.add(WebFault::Slow(Duration::from_secs(3))),
        |monitor| monitor.web.as_mut().unwrap().look_up_wait = Duration::from_millis(300),
    );
    // (The simulator does not count members of a vanity id: it is no room.)
    world.wait("the room joined as written", |monitor, _| room(monitor, VANITY).state == RoomState::Joined);
    assert_eq!(world.room(VANITY).id, VANITY, "not looked up yet");
    let said = captured::matching(&format!("room {VANITY}: "));
    assert!(said.iter().any(|(_, line)| line.contains("joining it as written")), "it says so:\n{}", captured::all());

    world.wait("the real room joined", |monitor, sim| {
        let room = room(monitor, VANITY);
        sim.members(REAL) == 1 && room.sequence.received >= 5
    });
    assert_eq!(world.room(VANITY).id, REAL);
    assert_eq!(captured::matching(&format!("room {VANITY} → {REAL} (")).len(), 1, "{}", captured::all());
    let lines = world.finish();
    let rooms: Vec<(u64, String)> = lines
        .iter()
        .map(|line| json(line))
        .map(|line| (line["room"].as_u64().unwrap(), line["type"].as_str().unwrap().to_string()))
        .collect();
    let first_real = rooms.iter().position(|(room, _)| *room == REAL).expect("lines of the real room");
    assert!(rooms[..first_real].iter().all(|(room, _)| *room == VANITY), "the id as written, then the real one");
    assert!(rooms[..first_real].iter().any(|(_, kind)| kind == "loginres"), "it did join as written");
    assert!(rooms[first_real..].iter().all(|(room, _)| *room == REAL), "{rooms:?}");
}

#[test]
fn rooms_waiting_for_their_turn_to_be_looked_up_join_as_written_quietly() {
    // Look-ups are paced (four at a time, one start per 50 ms): with many
    // rooms most wait longer than 50 ms, and join as written first.
    let rooms: Vec<u64> = (1..=40).map(|n| PLAIN + n).collect();
    let mut world = World::start(
        "queued",
        &rooms,
        |_| {},
        |monitor| {
            monitor.web.as_mut().unwrap().look_up_wait = Duration::from_millis(50);
        },
    );
    world.wait("every room joined", |monitor, _| monitor.rooms().iter().all(|room| room.sequence.received > 0));
    let quiet = captured::matching("joining it as written while look-ups queue");
    assert!(quiet.len() >= 20 && quiet.iter().all(|(_, line)| line.starts_with("DEBUG")), "{}", captured::all());
    let loud = captured::matching("joining it as written meanwhile");
    assert!(loud.len() <= 4, "at most one a fetch in flight:\n{}", captured::all());
}

/// With web fault `fault`, looking up `PLAIN` fails with `error` (from
/// both sites, each within `timeout`), and the room joins as written.
fn a_fault_ends_in(test: &str, fault: WebFault, error: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    let mut world = World::start(
        test,
        &[PLAIN],
        |sim| sim.web.as_mut().unwrap().faults.add(fault),
        |monitor| monitor.web.as_mut().unwrap().timeout = timeout,
    );
    let failed = format!("room {PLAIN}: cannot look up its real id (");
    world.wait("the look-up failed", |_, _| !captured::matching(&failed).is_empty());
    let took = started.elapsed();
    let (_, line) = captured::matching(&failed).remove(0);
    assert!(line.contains(&format!("({error}")), "the reason: {line}");
    assert!(line.contains("joining it as written"), "{line}");
    assert!(took < 2 * timeout + Duration::from_secs(3), "two requests, each within its deadline: {took:?}");
    world.wait("the room joined as written", |monitor, _| room(monitor, PLAIN).sequence.received >= 5);
    took
}

/// The look-ups' deadline in the fault tests.
const TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn a_redirect_loop_ends_in_a_clear_error() {
    a_fault_ends_in("redirect-loop", WebFault::RedirectLoop, "redirect loop back to http://127.0.0.1:", TIMEOUT);
}

#[test]
fn a_truncated_body_ends_in_a_clear_error() {
    let error = "the connection closed before the response was complete";
    a_fault_ends_in("truncate", WebFault::Truncate, error, TIMEOUT);
}

#[test]
fn an_oversized_body_ends_in_a_clear_error() {
    let error = "response body larger than 2097152 bytes";
    a_fault_ends_in("oversize", WebFault::Oversize(3 << 20), error, TIMEOUT);
}

#[test]
fn a_slow_server_ends_in_a_clear_error_at_the_deadline() {
    let timeout = Duration::from_millis(700);
    let error = "no complete response before the deadline";
    let took = a_fault_ends_in("slow-server", WebFault::Slow(Duration::from_secs(30)), error, timeout);
    assert!(took >= 2 * timeout, "the mobile page's deadline, then the desktop one's: {took:?}");
}

// ----- live status ------------------------------------------------------------------

/// Monitor settings for the status tests: a short grace, and reconnects
/// within a few milliseconds.
fn quick(grace: Duration) -> impl FnOnce(&mut MonitorConfig) {
    move |config| {
        config.live_grace = grace;
        config.backoff_base = Duration::from_millis(10);
        config.backoff_cap = Duration::from_millis(50);
    }
}

#[test]
fn a_room_that_goes_offline_while_disconnected_is_reported_offline_once_after_the_reconnect() {
    let grace = Duration::from_millis(500);
    let mut world = World::start("offline-while-down", &[PLAIN], |_| {}, quick(grace));
    world.wait("live reported", |monitor, _| reported(&room(monitor, PLAIN)) == Some(LiveStatus::Live));

    // The connection drops; while it is down, the broadcast ends.
    let conn = world.room(PLAIN).conn.expect("connected");
    world.reactor.abort(conn);
    world.wait("the connection down", |monitor, _| room(monitor, PLAIN).conn != Some(conn));
    world.sim.set_status(&mut world.reactor, PLAIN, LiveStatus::Offline);
    world.wait("offline reported after the reconnect", |monitor, _| {
        let room = room(monitor, PLAIN);
        room.reconnects >= 1 && room.state == RoomState::Joined && reported(&room) == Some(LiveStatus::Offline)
    });
    // It comes back: told by the push.
    world.sim.set_status(&mut world.reactor, PLAIN, LiveStatus::Live);
    world.wait("live again", |monitor, _| reported(&room(monitor, PLAIN)) == Some(LiveStatus::Live));

    let lines = world.finish();
    let told = live_lines(&lines, PLAIN);
    assert_eq!(told, [pair("live", "web"), pair("offline", "web"), pair("live", "rss")], "each change once");
    let end = &live_fields(&lines, PLAIN)[1];
    assert!(end["lasted_secs"].as_str().is_some() && end["lasted"].as_str().is_some(), "{end}");
}

#[test]
fn a_drop_and_return_within_the_grace_produces_no_end_and_no_start() {
    let grace = Duration::from_secs(2);
    let mut world = World::start("drop-and-return", &[PLAIN], |_| {}, quick(grace));
    world.wait("live reported", |monitor, _| reported(&room(monitor, PLAIN)) == Some(LiveStatus::Live));
    let pushes = |monitor: &Monitor| monitor.stats().messages_by_type.get("rss").copied().unwrap_or(0);

    // The stream drops and is back a moment later, both pushed.
    let dropped = Instant::now();
    world.sim.set_status(&mut world.reactor, PLAIN, LiveStatus::Offline);
    world.wait("the drop pushed", |monitor, _| pushes(monitor) == 1);
    world.sim.set_status(&mut world.reactor, PLAIN, LiveStatus::Live);
    world.wait("the return pushed", |monitor, _| pushes(monitor) == 2);
    assert!(dropped.elapsed() < grace, "back within the grace");
    // Past the time the drop's end would have been due: nothing happened.
    world.wait_out("a drop within the grace reported an end", dropped + 2 * grace, |monitor| {
        reported(&room(monitor, PLAIN)) != Some(LiveStatus::Live)
    });

    // Then it really ends: told once the grace has passed.
    let ended = Instant::now();
    world.sim.set_status(&mut world.reactor, PLAIN, LiveStatus::Offline);
    world.wait("the end reported", |monitor, _| reported(&room(monitor, PLAIN)) == Some(LiveStatus::Offline));
    assert!(ended.elapsed() >= grace, "not before the grace");
    let lines = world.finish();
    assert_eq!(
        live_lines(&lines, PLAIN),
        [pair("live", "web"), pair("offline", "rss")],
        "no end and start for the drop"
    );
}

#[test]
fn text_output_says_live_now_replaying_and_ended_after() {
    let mut world = World::start(
        "text",
        &[VANITY],
        |_| {},
        |monitor| {
            quick(Duration::from_millis(300))(monitor);
            monitor.format = Format::Text;
        },
    );
    world.wait("live reported", |monitor, _| reported(&room(monitor, VANITY)) == Some(LiveStatus::Live));
    world.sim.set_status(&mut world.reactor, REAL, LiveStatus::Loop);
    world.wait("the loop reported", |monitor, _| reported(&room(monitor, VANITY)) == Some(LiveStatus::Loop));
    world.sim.set_status(&mut world.reactor, REAL, LiveStatus::Offline);
    world.wait("the end reported", |monitor, _| reported(&room(monitor, VANITY)) == Some(LiveStatus::Offline));
    let lines = world.finish();
    let told: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|line| line.contains(" ● ") || line.contains(" ↻ ") || line.contains(" ○ "))
        .collect();
    assert_eq!(told.len(), 3, "{lines:#?}");
    assert_eq!(told[0], "[6979222] ● live now");
    assert_eq!(told[1], "[6979222] ↻ replaying (loop)");
    let lasted = told[2].strip_prefix("[6979222] ○ ended after ").unwrap_or_else(|| panic!("{}", told[2]));
    assert!(lasted.ends_with('s') && lasted[..lasted.len() - 1].parse::<u64>().is_ok(), "seconds: {lasted}");
    assert!(lines.iter().any(|line| line.starts_with("[6979222] ") && line.contains(": ")), "chat, by the real id");
}

// ----- from the command line ----------------------------------------------------------

/// The body of an HTTP response, parsed as JSON.
fn json_body(response: &str) -> serde_json::Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_else(|| panic!("no body: {response}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Each form a user pastes, on the command line and in the config file,
/// is looked up and joined as the real room; `/rooms` shows both ids.
#[test]
fn every_id_form_resolves_and_rooms_shows_what_was_written() {
    let vanity = [(6657, 6979222), (5232, 178432), (123455, 5526219), (7001, 7100001), (7002, 7200002)];
    let sim = InProcessSim::start_with(sim_config(|sim| {
        sim.rate = 5.0;
        sim.vanity = vanity.into();
    }));
    let dir = TempDir::new("id-forms");
    let config = dir.path("watch.toml");
    std::fs::write(&config, "rooms = [\"https://www.douyu.com/7002\", 7003]\n").unwrap();
    let web = format!("http://{}", sim.web.expect("a web listener"));
    let server = sim.addr.to_string();
    let mut watch = Watch::start_with_web(&[
        "--server",
        &server,
        "--web-base",
        &web,
        "--metrics",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
        "6657",
        "douyu.com/5232",
        "https://www.douyu.com/123455?dyshid=0-4a5f&dyshci=181",
        "https://m.douyu.com/7001/",
        "https://www.douyu.com/topic/S11?rid=288016",
    ]);
    // What was written, and the room it is.
    let rooms = [
        (6657, 6979222),
        (5232, 178432),
        (123455, 5526219),
        (7001, 7100001),
        (7002, 7200002),
        (288016, 288016),
        (7003, 7003),
    ];
    watch.wait_for("messages and a status in every room", DEADLINE, |seen| {
        rooms.iter().all(|&(_, real)| seen.messages(real) >= 3 && seen.count(real, "barrage.live") == 1)
    });
    let written: std::collections::BTreeSet<u64> = watch.seen.rooms.keys().copied().collect();
    assert_eq!(written, rooms.iter().map(|&(_, real)| real).collect(), "lines of real rooms only");
    let log = watch.stderr();
    for (vanity, real) in vanity {
        assert!(log.contains(&format!("room {vanity} → {real} (")), "{vanity} looked up:\n{log}");
    }

    let metrics = watch.metrics_addr();
    let listed = json_body(&http_get(metrics, "/rooms"));
    let mut shown: Vec<(u64, u64)> = listed
        .as_array()
        .expect("an array")
        .iter()
        .map(|room| (room["written"].as_u64().unwrap(), room["room"].as_u64().unwrap()))
        .collect();
    shown.sort();
    let mut expected = rooms.to_vec();
    expected.sort();
    assert_eq!(shown, expected, "{listed}");
    for room in listed.as_array().unwrap() {
        assert_eq!(room["live"], "live", "{room}");
        assert!(room["live_since"].as_u64().is_some(), "{room}");
        for key in ["name", "owner", "category"] {
            assert!(room[key].as_str().is_some_and(|value| !value.is_empty()), "{key} of {room}");
        }
        assert_eq!(room["foreign_chat"], 0);
    }
    let text = http_get(metrics, "/metrics");
    assert!(text.contains("barrage_rooms_live{status=\"live\"} 7\n"), "{text}");
    let (status, _) = watch.stop_with("TERM");
    assert!(status.success(), "{status}\n{}", watch.report());
}

/// A chat message naming another room is counted in `/metrics` and
/// `/rooms`, and dropped, or written with `--foreign-chat write`.
#[test]
fn chat_of_another_room_is_counted_and_dropped_unless_asked_for() {
    use common::{FakeDouyu, fake_douyu, packet};
    for (flags, written) in [(&[][..], false), (&["--foreign-chat", "write"][..], true)] {
        let mut reactor = Reactor::new().unwrap();
        let spec = FakeDouyu { chats: 2, text: |cid| format!("chat {cid}"), rss: false, close_after_join: false };
        let (server, log) = fake_douyu(&mut reactor, spec);
        let mut args = vec!["--server", &server, "--metrics", "127.0.0.1:0", "7"];
        args.extend_from_slice(flags);
        let mut watch = Watch::start(&args);
        let joined = reactor.run_until(Instant::now() + DEADLINE, |_| log.borrow().joined.contains_key(&7)).unwrap();
        assert!(joined, "room 7 joined\n{}", watch.report());
        // Cid 3 names room 8, as Douyu's stray chat does; cid 4 is the room's own.
        let conn = log.borrow().joined[&7];
        for (rid, cid) in [("8", "3"), ("7", "4")] {
            let chat = [("type", "chatmsg"), ("rid", rid), ("nn", "观众"), ("txt", "hi"), ("cid", cid)];
            assert!(reactor.send(conn, &packet(&chat)));
        }
        // Written as the next turn begins (run_until would look again only
        // after a poll that nothing wakes).
        let deadline = Instant::now() + DEADLINE;
        while reactor.pending_output(conn) != Some(0) {
            assert!(Instant::now() < deadline, "the server wrote them");
            reactor.turn(Some(Duration::from_millis(5))).unwrap();
        }
        watch.wait_for("the room's own last chat", DEADLINE, |seen| seen.room(7).cids.contains(&4));
        let expected: &[u64] = if written { &[1, 2, 3, 4] } else { &[1, 2, 4] };
        assert_eq!(watch.seen.room(7).cids, expected, "{flags:?}");
        assert_eq!(watch.seen.messages(8), 0, "written as the room's, if at all");

        let metrics = watch.metrics_addr();
        let text = http_get(metrics, "/metrics");
        assert!(text.contains("barrage_room_foreign_chat_total{room=\"7\"} 1\n"), "{text}");
        assert_eq!(json_body(&http_get(metrics, "/rooms"))[0]["foreign_chat"], 1);
    }
}

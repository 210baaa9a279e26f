//! Rooms' live status on the simulator's Douyu side: `rss` is pushed to a
//! room's members once per change and never otherwise, `loginres` carries
//! `live_stat`, and a change while nobody is in is never pushed.
//!
//! The simulator and its clients share one reactor on this thread; each
//! change is made at a chosen moment with `SimServer::set_status`, and
//! every wait is a condition with a deadline.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use barrage::douyu::{LiveStatus, Message};
use barrage::reactor::Reactor;
use barrage::sim::{self, SimConfig, SimServer};
use common::douyu_client;

const DEADLINE: Duration = Duration::from_secs(20);
/// Heartbeats this often: their echoes show that time has passed on the
/// server (several traffic ticks) without sleeping.
const BEAT: Duration = Duration::from_millis(30);

type Messages = Rc<RefCell<Vec<Message>>>;

fn start(configure: impl FnOnce(&mut SimConfig)) -> (Reactor, SimServer) {
    let mut config =
        SimConfig { listen: "127.0.0.1:0".parse().unwrap(), rate: 0.0, stats_interval: None, ..SimConfig::default() };
    configure(&mut config);
    let mut reactor = Reactor::new().unwrap();
    let sim = sim::start(&mut reactor, config).unwrap();
    (reactor, sim)
}

fn wait(reactor: &mut Reactor, what: &str, mut done: impl FnMut() -> bool) {
    let reached = reactor.run_until(Instant::now() + DEADLINE, |_| done()).unwrap();
    assert!(reached, "timed out waiting for: {what}");
}

fn count(messages: &Messages, msg_type: &str) -> usize {
    messages.borrow().iter().filter(|m| m.msg_type() == msg_type).count()
}

/// `(ss, ivl, cid)` of every `rss` received.
fn statuses(messages: &Messages) -> Vec<(String, String, String)> {
    let field = |m: &Message, key| m.get(key).unwrap_or_default().to_string();
    let messages = messages.borrow();
    let rss = messages.iter().filter(|m| m.msg_type() == "rss");
    rss.map(|m| (field(m, "ss"), field(m, "ivl"), field(m, "cid"))).collect()
}

fn live_stat(messages: &Messages) -> String {
    let messages = messages.borrow();
    let loginres = messages.iter().find(|m| m.msg_type() == "loginres").expect("a loginres");
    loginres.get("live_stat").expect("live_stat").to_string()
}

/// Runs until every client has had `n` more heartbeat echoes: time enough
/// for several traffic ticks on the server.
fn let_time_pass(reactor: &mut Reactor, clients: &[&Messages], n: usize) {
    let targets: Vec<usize> = clients.iter().map(|c| count(c, "mrkl") + n).collect();
    wait(reactor, "heartbeat echoes", || clients.iter().zip(&targets).all(|(c, &target)| count(c, "mrkl") >= target));
}

fn rss(ss: &str, ivl: &str, cid: u64) -> (String, String, String) {
    (ss.to_string(), ivl.to_string(), cid.to_string())
}

#[test]
fn every_member_gets_one_rss_per_change_and_nothing_otherwise() {
    let (mut reactor, sim) = start(|_| {});
    let addr = sim.local_addr();
    let (_, a) = douyu_client(&mut reactor, addr, 7, BEAT);
    let (_, b) = douyu_client(&mut reactor, addr, 7, BEAT);
    let (_, other) = douyu_client(&mut reactor, addr, 8, BEAT);
    wait(&mut reactor, "three clients in two rooms", || sim.members(7) == 2 && sim.members(8) == 1);
    assert_eq!((live_stat(&a), live_stat(&b), live_stat(&other)), ("1".into(), "1".into(), "1".into()));
    let_time_pass(&mut reactor, &[&a, &b, &other], 5);
    assert_eq!(count(&a, "rss") + count(&b, "rss") + count(&other, "rss"), 0, "no change, no rss");

    sim.set_status(&mut reactor, 7, LiveStatus::Offline);
    sim.set_status(&mut reactor, 7, LiveStatus::Offline); // no change
    assert_eq!(sim.broadcast(7).status, LiveStatus::Offline);
    wait(&mut reactor, "the first rss", || count(&a, "rss") == 1 && count(&b, "rss") == 1);
    sim.set_status(&mut reactor, 7, LiveStatus::Loop);
    sim.set_status(&mut reactor, 7, LiveStatus::Live);
    wait(&mut reactor, "three rss", || count(&a, "rss") == 3 && count(&b, "rss") == 3);
    let_time_pass(&mut reactor, &[&a, &b, &other], 5);

    // Numbered in the room's sequence, like every room message (rate 0: nothing else).
    let expected = vec![rss("0", "0", 1), rss("1", "1", 2), rss("1", "0", 3)];
    assert_eq!(statuses(&a), expected);
    assert_eq!(statuses(&b), expected);
    assert_eq!(count(&other, "rss"), 0, "another room's change is not pushed");
    assert_eq!(sim.stats().room_messages, 3);
}

#[test]
fn a_change_while_nobody_is_in_is_never_pushed_and_loginres_tells_it() {
    let (mut reactor, sim) = start(|_| {});
    let addr = sim.local_addr();
    let (first, before) = douyu_client(&mut reactor, addr, 9, BEAT);
    wait(&mut reactor, "the first client in", || sim.members(9) == 1);
    assert_eq!(live_stat(&before), "1");
    reactor.close(first);
    wait(&mut reactor, "the room empty", || sim.members(9) == 0);

    sim.set_status(&mut reactor, 9, LiveStatus::Offline);
    let (_, after) = douyu_client(&mut reactor, addr, 9, BEAT);
    wait(&mut reactor, "the second client in", || sim.members(9) == 1);
    assert_eq!(live_stat(&after), "0", "loginres says the room is off");
    let_time_pass(&mut reactor, &[&after], 5);
    assert_eq!(count(&after, "rss"), 0, "what changed while away is not pushed");

    sim.set_status(&mut reactor, 9, LiveStatus::Live);
    wait(&mut reactor, "the rss of the next change", || count(&after, "rss") == 1);
    assert_eq!(statuses(&after), vec![rss("1", "0", 1)]);
    assert_eq!(count(&before, "rss"), 0);
}

#[test]
fn a_loop_is_not_live_in_loginres() {
    let (mut reactor, sim) = start(|_| {});
    sim.set_status(&mut reactor, 10, LiveStatus::Loop);
    let (_, client) = douyu_client(&mut reactor, sim.local_addr(), 10, BEAT);
    wait(&mut reactor, "the client in", || sim.members(10) == 1);
    assert_eq!(live_stat(&client), "0");
}

#[test]
fn the_schedule_pushes_each_change_as_the_status_board_has_it() {
    let (mut reactor, sim) = start(|c| c.status_period = sim::MIN_STATUS_PERIOD);
    let (_, client) = douyu_client(&mut reactor, sim.local_addr(), 11, BEAT);
    wait(&mut reactor, "the client in", || sim.members(11) == 1);
    // Checked between two loop iterations: the last rss received says what
    // the board says (if a change is on its way, the next rss will).
    let said = |m: &(String, String, String)| LiveStatus::from_fields(m.0.parse().ok(), m.1.parse().ok());
    wait(&mut reactor, "three rss, the last one still true", || {
        let seen = statuses(&client);
        seen.len() >= 3 && said(seen.last().unwrap()) == Some(sim.broadcast(11).status)
    });
    let seen = statuses(&client);
    for pair in seen.windows(2) {
        assert_ne!(said(&pair[0]), said(&pair[1]), "only changes: {seen:?}");
    }
    let cids: Vec<u64> = seen.iter().map(|m| m.2.parse().unwrap()).collect();
    assert_eq!(cids, (1..=cids.len() as u64).collect::<Vec<_>>());
}

#[test]
fn joining_a_vanity_id_gives_no_error_and_no_messages() {
    let (mut reactor, sim) = start(|c| {
        c.rate = 200.0;
        c.vanity = [(6657, 6979222)].into();
    });
    let addr = sim.local_addr();
    let (_, vanity) = douyu_client(&mut reactor, addr, 6657, BEAT);
    let (_, real) = douyu_client(&mut reactor, addr, 6979222, BEAT);
    wait(&mut reactor, "50 messages in the real room", || count(&real, "chatmsg") >= 50);
    sim.set_status(&mut reactor, 6657, LiveStatus::Offline);
    let_time_pass(&mut reactor, &[&vanity], 3);
    let types: Vec<String> = vanity.borrow().iter().map(|m| m.msg_type().to_string()).collect();
    assert!(types.iter().all(|t| ["loginres", "pingreq", "mrkl"].contains(&t.as_str())), "{types:?}");
    assert_eq!(live_stat(&vanity), "0");
    assert_eq!(sim.members(6657), 0);
}

/// The harness the monitor's tests use: the simulator on a thread of its
/// own, its status changed from the test's thread, read back over HTTP.
#[test]
fn a_status_set_from_another_thread_is_what_betard_says_next() {
    use std::io::{Read, Write};
    let config = SimConfig { web: Some(sim::WebConfig::default()), ..SimConfig::default() };
    let sim = common::process::InProcessSim::start_with(config);
    let web = sim.web.expect("a web listener");
    let show_status = || {
        let mut stream = std::net::TcpStream::connect(web).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(b"GET /betard/12 HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let json: serde_json::Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        json["room"]["show_status"].as_u64().unwrap()
    };
    assert_eq!(show_status(), 1);
    sim.set_status(12, LiveStatus::Offline);
    assert_eq!(show_status(), 2);
    sim.set_status(12, LiveStatus::Live);
    assert_eq!(show_status(), 1);
}

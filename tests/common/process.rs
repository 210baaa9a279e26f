//! Running `barrage` as a real process in tests: `serve`, an in-process
//! simulator, `watch` with its output read and checked line by line.
//!
//! Rules kept throughout: ephemeral ports only; every wait is a condition
//! with a deadline (output arrives through reader threads and channels read
//! with `recv_timeout`, or is polled every few milliseconds up to a
//! deadline); every loop is bounded; every child is killed by a guard when
//! its test ends, passing or failing; signals are sent with the system
//! `kill` command; temporary files live in a directory unique to the test.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use barrage::reactor::{Reactor, ReactorHandle};
use barrage::sim::{self, SimConfig, SimServer, SimStats};

/// The longest any one wait may take. Generous: reconnects back off with
/// full jitter (1 s doubling), and the tests run in parallel on few cores.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The replies of the protocol; every other message type is a room
/// message and carries the simulator's sequence number in `cid`.
pub const REPLIES: [&str; 5] = ["loginres", "pingreq", "mrkl", "error", "barrage.live"];

/// The budget for SIGINT/SIGTERM: log out of every room, flush, exit.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(2);

// ----- processes ---------------------------------------------------------------------

pub fn barrage(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_barrage"));
    command.args(args).stdin(Stdio::null());
    command
}

/// Sends `signal` (e.g. "TERM", "HUP") to `child` with the system `kill`.
pub fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success(), "kill -{signal} {} failed: {status}", child.id());
}

/// Polls `child` every 2 ms until it exits or `timeout` passes.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Polls `condition` every 5 ms until it holds; panics with `what` at the
/// deadline.
pub fn poll_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// `barrage serve` on an ephemeral port. Killed when dropped.
pub struct Serve {
    pub child: Child,
    pub addr: String,
    /// Its log (warnings and errors), as it comes.
    pub log: Arc<Mutex<String>>,
}

impl Serve {
    pub fn start(args: &[&str]) -> Serve {
        let mut command =
            barrage(&["serve", "--listen", "127.0.0.1:0", "--log-level", "warn", "--stats-interval", "0"]);
        let mut child = command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let collected = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = collected.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            // Read to the end, so the server never writes into a closed pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut guard = Serve { child, addr: String::new(), log };
        let line = rx.recv_timeout(DEADLINE).unwrap_or_else(|e| panic!("no 'listening on' line from serve: {e}"));
        let addr: SocketAddr = line
            .strip_prefix("listening on ")
            .and_then(|addr| addr.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"));
        assert_ne!(addr.port(), 0);
        guard.addr = addr.to_string();
        guard
    }
}

impl Serve {
    /// Polls the log every 5 ms until `done` holds; panics at the deadline.
    pub fn wait_log(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let log = self.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if done(&log) {
                return log;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what} in serve's log:\n{log}");
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- the simulator in this process ---------------------------------------------------

thread_local! {
    /// The simulator of an `InProcessSim`, on its loop thread (`SimServer`
    /// is not `Send`; callbacks sent to that thread find it here).
    static SIM: RefCell<Option<SimServer>> = const { RefCell::new(None) };
}

/// `sim::start` on a reactor running in a background thread, so a test can
/// ask what the server saw (logouts). Stopped and joined when dropped.
pub struct InProcessSim {
    pub addr: SocketAddr,
    /// The web listener's address, if the config asked for one.
    pub web: Option<SocketAddr>,
    pub handle: ReactorHandle,
    pub thread: Option<thread::JoinHandle<()>>,
}

impl InProcessSim {
    pub fn start(rate: f64) -> InProcessSim {
        InProcessSim::start_with(SimConfig { rate, ..SimConfig::default() })
    }

    /// Like [`start`](Self::start), with `config` (its listeners are put on
    /// ephemeral loopback ports, and it logs no stats).
    pub fn start_with(mut config: SimConfig) -> InProcessSim {
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.stats_interval = None;
        if let Some(web) = &mut config.web {
            web.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        }
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut reactor = Reactor::new().expect("reactor");
            let server = sim::start(&mut reactor, config).expect("sim::start");
            let web = server.web().map(|web| web.local_addr());
            let _ = tx.send((server.local_addr(), web, reactor.handle()));
            SIM.with(|sim| *sim.borrow_mut() = Some(server));
            let result = reactor.run();
            SIM.with(|sim| sim.borrow_mut().take());
            result.expect("the simulator's loop failed");
        });
        let (addr, web, handle) = rx.recv_timeout(DEADLINE).expect("the simulator did not start");
        InProcessSim { addr, web, handle, thread: Some(thread) }
    }

    /// Makes room `room`'s status `status` now (`SimServer::set_status`):
    /// its members get an `rss` at once if that is a change. Returns once
    /// it is done.
    pub fn set_status(&self, room: u64, status: barrage::douyu::LiveStatus) {
        let (tx, rx) = mpsc::channel();
        self.handle.add_callback(move |reactor| {
            SIM.with(|sim| sim.borrow().as_ref().map(|sim| sim.set_status(reactor, room, status)));
            let _ = tx.send(());
        });
        rx.recv_timeout(DEADLINE).expect("the simulator's loop did not answer");
    }

    /// Runs `ask` on the simulator, on its loop thread, and returns the answer.
    pub fn query<T: Send + 'static>(&self, ask: impl FnOnce(&SimServer) -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        self.handle.add_callback(move |_| {
            let _ = tx.send(SIM.with(|sim| sim.borrow().as_ref().map(ask)));
        });
        rx.recv_timeout(DEADLINE).expect("the simulator's loop did not answer").expect("the simulator is gone")
    }

    /// The simulator's counters.
    pub fn stats(&self) -> SimStats {
        self.query(SimServer::stats)
    }

    /// The last `cid` room `room` has made (0 before anyone joined it).
    pub fn room_messages(&self, room: u64) -> u64 {
        self.query(move |sim| sim.room_messages(room)).unwrap_or(0)
    }

    /// Polls the counters every 5 ms until `condition` holds.
    pub fn wait_stats(&self, what: &str, timeout: Duration, mut condition: impl FnMut(&SimStats) -> bool) -> SimStats {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if condition(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; server saw {stats:?}");
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for InProcessSim {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ----- what watch wrote ---------------------------------------------------------------

/// One output line, checked against the JSON contract.
#[derive(Debug)]
pub struct Line {
    pub room: u64,
    pub kind: String,
    /// The simulator's sequence number (room messages only).
    pub cid: Option<u64>,
}

/// Parses one line (with its `\n`) of `--format json` output, panicking
/// unless it is exactly `{"ts":ms,"room":id,"type":"…","fields":{…}}` with
/// string fields, and a room message has a decimal `cid`.
pub fn parse_line(raw: &str) -> Line {
    let text = raw.strip_suffix('\n').unwrap_or_else(|| panic!("truncated last line (no newline): {raw:?}"));
    assert!(!text.contains('\n'), "two lines in one: {raw:?}");
    let value: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not a JSON line ({e}): {text:?}"));
    let object = value.as_object().unwrap_or_else(|| panic!("not a JSON object: {text}"));
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["fields", "room", "ts", "type"]), "keys of {text}");
    assert!(object["ts"].as_u64().is_some_and(|ts| ts > 1_500_000_000_000), "ts in ms: {text}");
    let room = object["room"].as_u64().unwrap_or_else(|| panic!("room is not a number: {text}"));
    let kind = object["type"].as_str().unwrap_or_else(|| panic!("type is not a string: {text}")).to_string();
    let fields = object["fields"].as_object().unwrap_or_else(|| panic!("fields is not an object: {text}"));
    assert!(fields.values().all(serde_json::Value::is_string), "every field is a string: {text}");
    let cid = if REPLIES.contains(&kind.as_str()) {
        None
    } else {
        let cid = fields.get("cid").and_then(|cid| cid.as_str()).and_then(|cid| cid.parse::<u64>().ok());
        Some(cid.unwrap_or_else(|| panic!("a room message without a decimal cid: {text}")))
    };
    Line { room, kind, cid }
}

/// Everything seen of one room.
#[derive(Debug, Default)]
pub struct RoomSeen {
    pub lines: usize,
    /// `cid` of each room message, in order.
    pub cids: Vec<u64>,
    pub types: BTreeMap<String, usize>,
    /// Room messages since the latest `loginres`.
    pub since_login: usize,
    /// Where each `loginres` came: the number of room messages before it.
    pub logins: Vec<usize>,
}

pub static NOTHING: RoomSeen =
    RoomSeen { lines: 0, cids: Vec::new(), types: BTreeMap::new(), since_login: 0, logins: Vec::new() };

impl RoomSeen {
    /// The `cid`s of each connection, one run per `loginres` (what came
    /// before the first one, if anything, is a run of its own).
    pub fn connections(&self) -> Vec<&[u64]> {
        let mut starts = self.logins.clone();
        if starts.first() != Some(&0) {
            starts.insert(0, 0);
        }
        let ends = starts.iter().skip(1).copied().chain([self.cids.len()]);
        starts.iter().zip(ends).map(|(&start, end)| &self.cids[start..end]).collect()
    }
}

/// Everything seen, per room, kept incrementally so that conditions are
/// cheap to evaluate after every line.
#[derive(Debug, Default)]
pub struct Seen {
    pub rooms: BTreeMap<u64, RoomSeen>,
    pub lines: usize,
}

impl Seen {
    pub fn record(&mut self, raw: &str) {
        let line = parse_line(raw);
        self.lines += 1;
        let room = self.rooms.entry(line.room).or_default();
        room.lines += 1;
        if line.kind == "loginres" {
            room.since_login = 0;
            room.logins.push(room.cids.len());
        }
        if let Some(cid) = line.cid {
            room.cids.push(cid);
            room.since_login += 1;
        }
        *room.types.entry(line.kind).or_insert(0) += 1;
    }

    pub fn room(&self, room: u64) -> &RoomSeen {
        self.rooms.get(&room).unwrap_or(&NOTHING)
    }

    /// Room messages (numbered) seen in `room`.
    pub fn messages(&self, room: u64) -> usize {
        self.room(room).cids.len()
    }

    pub fn count(&self, room: u64, kind: &str) -> usize {
        self.room(room).types.get(kind).copied().unwrap_or(0)
    }

    pub fn summary(&self) -> String {
        let mut text = format!("{} lines\n", self.lines);
        for (id, room) in &self.rooms {
            let span = match (room.cids.first(), room.cids.last()) {
                (Some(first), Some(last)) => format!("cid {first}..={last}"),
                _ => "no cids".to_string(),
            };
            text.push_str(&format!(
                "  room {id}: {} lines, {} numbered ({span}), {:?}\n",
                room.lines,
                room.cids.len(),
                room.types
            ));
        }
        text
    }
}

/// Panics unless `cids` is an unbroken run (each one more than the one
/// before), starting at `first` if given.
pub fn assert_contiguous(cids: &[u64], first: Option<u64>, who: &str) {
    assert!(!cids.is_empty(), "{who}: no numbered messages");
    if let Some(first) = first {
        assert_eq!(cids[0], first, "{who}: the first cid");
    }
    if let Some(i) = cids.windows(2).position(|pair| pair[1] != pair[0] + 1) {
        let (a, b) = (cids[i], cids[i + 1]);
        let what = if b <= a { "a duplicate (or going back)" } else { "a gap: messages lost" };
        let context = &cids[i.saturating_sub(3)..(i + 5).min(cids.len())];
        panic!("{who}: {what} at index {i}: {a} then {b} (around: {context:?}; {} cids)", cids.len());
    }
}

pub fn assert_strictly_increasing(cids: &[u64], who: &str) {
    if let Some(i) = cids.windows(2).position(|pair| pair[1] <= pair[0]) {
        panic!("{who}: cid {} followed by {} at index {i}: a duplicate or going back", cids[i], cids[i + 1]);
    }
}

// ----- a running watch ----------------------------------------------------------------

/// A running `barrage watch` with stdout and stderr piped. Stdout lines go
/// through a reader thread into a channel; the thread takes `gate` before
/// every read, so holding the gate stops reading stdout altogether (the
/// slow-consumer test). Killed when dropped.
pub struct Watch {
    pub child: Child,
    pub lines: Receiver<String>,
    pub stderr: Arc<Mutex<String>>,
    /// Collects stderr; joined once the process has exited, so that the
    /// log is then complete.
    pub stderr_reader: Option<thread::JoinHandle<()>>,
    pub gate: Arc<Mutex<()>>,
    /// Microseconds the stdout reader waits after each line (0: none): a
    /// slow consumer at the other end of the pipe.
    pub pace_us: Arc<AtomicU64>,
    pub seen: Seen,
    /// stdout reached its end.
    pub closed: bool,
}

impl Watch {
    /// `barrage watch --format json --log-level info ARGS…`
    pub fn start(args: &[&str]) -> Watch {
        // No web look-ups: the tests run offline (those of the look-ups
        // point them at the simulator: `start_with_web`).
        Watch::spawn(&[&["--resolve", "never", "--status-check", "0"], args].concat())
    }

    /// Like [`start`](Self::start), with the web look-ups as ARGS say
    /// (they must point them at the simulator with `--web-base`).
    pub fn start_with_web(args: &[&str]) -> Watch {
        Watch::spawn(args)
    }

    fn spawn(args: &[&str]) -> Watch {
        let mut command = barrage(&["watch", "--format", "json", "--log-level", "info", "--status-interval", "0"]);
        let mut child = command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn watch");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let gate = Arc::new(Mutex::new(()));
        let pace_us = Arc::new(AtomicU64::new(0));
        let (tx, lines) = mpsc::channel();
        {
            let gate = gate.clone();
            let pace_us = pace_us.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                loop {
                    drop(gate.lock().unwrap_or_else(|p| p.into_inner()));
                    let mut raw = Vec::new();
                    match reader.read_until(b'\n', &mut raw) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8(raw).unwrap_or_else(|e| format!("<not UTF-8: {e}>\n"));
                            if tx.send(line).is_err() {
                                break;
                            }
                            let pace = pace_us.load(Ordering::Relaxed);
                            if pace > 0 {
                                thread::sleep(Duration::from_micros(pace));
                            }
                        }
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = {
            let stderr = stderr.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr_pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut text = stderr.lock().unwrap_or_else(|p| p.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
            })
        };
        Watch {
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
            gate,
            pace_us,
            seen: Seen::default(),
            closed: false,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What a failure message needs: the lines seen and the log's tail.
    pub fn report(&mut self) -> String {
        let stderr = self.stderr();
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        let status = self.child.try_wait().ok().flatten().map_or("running".to_string(), |s| s.to_string());
        format!(
            "watch (pid {}, {status}) output: {}--- stderr (tail) ---\n{tail}",
            self.child.id(),
            self.seen.summary()
        )
    }

    /// Reads lines until `done` holds; panics at the deadline or if stdout ends.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&Seen) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.seen) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}\n{}", self.report());
            }
            match self.lines.recv_timeout(deadline - now) {
                Ok(line) => self.seen.record(&line),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = true;
                    panic!("watch's stdout ended while waiting for {what}\n{}", self.report());
                }
            }
        }
    }

    /// Reads every line to the end of stdout (after the process exits).
    pub fn read_to_end(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.record(&line),
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
                Err(RecvTimeoutError::Timeout) => panic!("stdout did not end within {timeout:?}\n{}", self.report()),
            }
        }
    }

    /// Polls the log every 5 ms until `done` holds.
    pub fn wait_stderr(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.stderr()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what} in the log\n{}", self.report());
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Where `--metrics` serves, from the log line that says so.
    pub fn metrics_addr(&mut self) -> SocketAddr {
        self.wait_stderr("the metrics address", DEADLINE, |log| log.contains("metrics on http://"));
        self.stderr()
            .split("metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .expect("an address in the log line")
    }

    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("watch exited ({status}) but should still run\n{}", self.report());
        }
    }

    /// Sends `signal` and waits for the exit; returns the status and how
    /// long the exit took.
    pub fn stop_with(&mut self, signal: &str) -> (ExitStatus, Duration) {
        let asked = Instant::now();
        send_signal(&self.child, signal);
        let status = wait_exit(&mut self.child, DEADLINE);
        let took = asked.elapsed();
        let status = status
            .unwrap_or_else(|| panic!("watch did not exit within {DEADLINE:?} of SIG{signal}\n{}", self.report()));
        // The process is gone, so its stderr is closed: the log is complete.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        (status, took)
    }

    /// Bytes the process has written with write(2) (its output and log;
    /// socket writes too, but here those are a few heartbeats), from /proc.
    pub fn wchar(&self) -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.child.id())).expect("/proc/PID/io");
        io.lines()
            .find_map(|line| line.strip_prefix("wchar:"))
            .and_then(|rest| rest.trim().parse().ok())
            .expect("wchar in /proc/PID/io")
    }

    /// CPU time (user + system, in clock ticks) of the main thread, the
    /// event loop, from /proc.
    pub fn loop_cpu_ticks(&self) -> u64 {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")).expect("/proc/PID/task/PID/stat");
        // Fields after the command name, which is in parentheses: state is
        // field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat.rsplit_once(')').expect("(comm)").1.split_whitespace().collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }

    /// Waits for `at_least` messages in every room of `rooms`, then checks
    /// exactly once: one login per room (one connection throughout), each
    /// room's `cid`s 1, 2, 3, … with no gap or repeat, no other room, and
    /// the process still running. `what` names the case in failures.
    pub fn assert_exactly_once(&mut self, rooms: &[u64], at_least: usize, what: &str) {
        self.wait_for(&format!("{at_least} messages in every room ({what})"), DEADLINE, |seen| {
            rooms.iter().all(|&room| seen.messages(room) >= at_least)
        });
        for &room in rooms {
            let who = format!("room {room} with {what}");
            assert_eq!(self.seen.count(room, "loginres"), 1, "{who}: one connection throughout\n{}", self.report());
            assert_contiguous(&self.seen.room(room).cids, Some(1), &who);
        }
        assert_eq!(self.seen.rooms.keys().copied().collect::<Vec<_>>(), rooms, "only the rooms asked for");
        self.assert_running();
    }

    /// Waits until the event loop has used no CPU for `idle_for` (polling
    /// its CPU time every 20 ms), or panics after `timeout`: with the
    /// output stopped, every room must stop reading and the loop go quiet.
    pub fn wait_until_loop_idle(&self, idle_for: Duration, timeout: Duration) {
        let (mut last, mut since) = (self.loop_cpu_ticks(), Instant::now());
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.loop_cpu_ticks();
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= idle_for {
                return;
            }
            assert!(Instant::now() < deadline, "watch's loop never went idle with its output stopped");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's resident memory, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` from the HTTP server at `addr`, on a connection of its own:
/// the whole response, head and body.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// A directory of its own for one test, under cargo's target tmp dir;
/// removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("watch-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test's temp dir");
        TempDir(path)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `text` to `path` atomically (a reader never sees half of it).
pub fn write_atomically(path: &Path, text: &str) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, text).expect("write the staging file");
    std::fs::rename(&staging, path).expect("rename the staging file into place");
}

/// The complete lines of a file being written (a partial last line is left
/// out); an absent file has none.
pub fn complete_lines(path: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else { return Vec::new() };
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = std::str::from_utf8(&bytes[..end]).expect("output is UTF-8");
    text.split_inclusive('\n').map(str::to_string).collect()
}

/// Every line of a finished output file, each checked (a truncated last
/// line fails).
pub fn file_seen(path: &Path) -> Seen {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut seen = Seen::default();
    for line in text.split_inclusive('\n') {
        seen.record(line);
    }
    seen
}

// ----- a command run to its end ---------------------------------------------------------

/// What a finished command printed.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to its exit, with `stdin` as its input, killing it at
/// the deadline; stdout and stderr are read by threads meanwhile (a full
/// pipe must not stop it).
pub fn run_command(mut command: Command, stdin: &[u8]) -> Finished {
    use std::io::{Read, Write};
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // Ignored: a command that does not read its input closes the pipe.
    let writer = thread::spawn(move || input.write_all(&stdin));
    let read = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("piped stderr")));
    let status = wait_exit(&mut child, DEADLINE);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = writer.join();
    let (stdout, stderr) = (stdout.join().expect("stdout reader"), stderr.join().expect("stderr reader"));
    let status = status.unwrap_or_else(|| panic!("{command:?} did not exit within {DEADLINE:?}; stderr:\n{stderr}"));
    Finished { status, stdout, stderr }
}

/// `barrage ARGS…` run to its exit with no input.
pub fn run_barrage(args: &[&str]) -> Finished {
    run_command(barrage(args), b"")
}

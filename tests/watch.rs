//! `barrage watch`, the real binary, end to end over loopback.
//!
//! Each test starts a simulated Douyu server (`barrage serve --listen
//! 127.0.0.1:0`, or `sim::start` on a reactor in a background thread where
//! the test must count what the server saw) and one or more `barrage watch`
//! processes with `--format json`, and reads their output line by line.
//!
//! The simulator numbers every room message 1, 2, 3, … per room in `cid`,
//! and a room without clients keeps its place in the sequence, so a watcher
//! that is the only client of its rooms must see each room's `cid`s as an
//! unbroken run: a gap is a lost message, a repeat is a duplicate.
//!
//! Rules kept throughout: ephemeral ports only; every wait is a condition
//! with a deadline (output arrives through reader threads and channels read
//! with `recv_timeout`, or is polled every few milliseconds up to a
//! deadline); every loop is bounded; every child is killed by a guard when
//! its test ends, passing or failing; signals are sent with the system
//! `kill` command; temporary files live in a directory unique to the test.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use barrage::reactor::{Reactor, ReactorHandle};
use barrage::sim::{self, SimConfig, SimServer, SimStats};

/// The longest any one wait may take. Generous: reconnects back off with
/// full jitter (1 s doubling), and the tests run in parallel on few cores.
const DEADLINE: Duration = Duration::from_secs(30);

/// The replies of the protocol; every other message type is a room
/// message and carries the simulator's sequence number in `cid`.
const REPLIES: [&str; 4] = ["loginres", "pingreq", "mrkl", "error"];

/// The budget for SIGINT/SIGTERM: log out of every room, flush, exit.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(2);

// ----- processes ---------------------------------------------------------------------

fn barrage(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_barrage"));
    command.args(args).stdin(Stdio::null());
    command
}

/// Sends `signal` (e.g. "TERM", "HUP") to `child` with the system `kill`.
fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success(), "kill -{signal} {} failed: {status}", child.id());
}

/// Polls `child` every 2 ms until it exits or `timeout` passes.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
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
fn poll_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
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
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let mut command =
            barrage(&["serve", "--listen", "127.0.0.1:0", "--log-level", "warn", "--stats-interval", "0"]);
        let mut child = command.args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            // Read to the end, so the server never writes into a closed pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut guard = Serve { child, addr: String::new() };
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
struct InProcessSim {
    addr: SocketAddr,
    handle: ReactorHandle,
    thread: Option<thread::JoinHandle<()>>,
}

impl InProcessSim {
    fn start(rate: f64) -> InProcessSim {
        let config = SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rate,
            stats_interval: None,
            ..SimConfig::default()
        };
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut reactor = Reactor::new().expect("reactor");
            let server = sim::start(&mut reactor, config).expect("sim::start");
            let _ = tx.send((server.local_addr(), reactor.handle()));
            SIM.with(|sim| *sim.borrow_mut() = Some(server));
            let result = reactor.run();
            SIM.with(|sim| sim.borrow_mut().take());
            result.expect("the simulator's loop failed");
        });
        let (addr, handle) = rx.recv_timeout(DEADLINE).expect("the simulator did not start");
        InProcessSim { addr, handle, thread: Some(thread) }
    }

    /// Runs `ask` on the simulator, on its loop thread, and returns the answer.
    fn query<T: Send + 'static>(&self, ask: impl FnOnce(&SimServer) -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        self.handle.add_callback(move |_| {
            let _ = tx.send(SIM.with(|sim| sim.borrow().as_ref().map(ask)));
        });
        rx.recv_timeout(DEADLINE).expect("the simulator's loop did not answer").expect("the simulator is gone")
    }

    /// The simulator's counters.
    fn stats(&self) -> SimStats {
        self.query(SimServer::stats)
    }

    /// The last `cid` room `room` has made (0 before anyone joined it).
    fn room_messages(&self, room: u64) -> u64 {
        self.query(move |sim| sim.room_messages(room)).unwrap_or(0)
    }

    /// Polls the counters every 5 ms until `condition` holds.
    fn wait_stats(&self, what: &str, timeout: Duration, mut condition: impl FnMut(&SimStats) -> bool) -> SimStats {
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
struct Line {
    room: u64,
    kind: String,
    /// The simulator's sequence number (room messages only).
    cid: Option<u64>,
}

/// Parses one line (with its `\n`) of `--format json` output, panicking
/// unless it is exactly `{"ts":ms,"room":id,"type":"…","fields":{…}}` with
/// string fields, and a room message has a decimal `cid`.
fn parse_line(raw: &str) -> Line {
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
struct RoomSeen {
    lines: usize,
    /// `cid` of each room message, in order.
    cids: Vec<u64>,
    types: BTreeMap<String, usize>,
    /// Room messages since the latest `loginres`.
    since_login: usize,
}

static NOTHING: RoomSeen = RoomSeen { lines: 0, cids: Vec::new(), types: BTreeMap::new(), since_login: 0 };

/// Everything seen, per room, kept incrementally so that conditions are
/// cheap to evaluate after every line.
#[derive(Debug, Default)]
struct Seen {
    rooms: BTreeMap<u64, RoomSeen>,
    lines: usize,
}

impl Seen {
    fn record(&mut self, raw: &str) {
        let line = parse_line(raw);
        self.lines += 1;
        let room = self.rooms.entry(line.room).or_default();
        room.lines += 1;
        if line.kind == "loginres" {
            room.since_login = 0;
        }
        if let Some(cid) = line.cid {
            room.cids.push(cid);
            room.since_login += 1;
        }
        *room.types.entry(line.kind).or_insert(0) += 1;
    }

    fn room(&self, room: u64) -> &RoomSeen {
        self.rooms.get(&room).unwrap_or(&NOTHING)
    }

    /// Room messages (numbered) seen in `room`.
    fn messages(&self, room: u64) -> usize {
        self.room(room).cids.len()
    }

    fn count(&self, room: u64, kind: &str) -> usize {
        self.room(room).types.get(kind).copied().unwrap_or(0)
    }

    fn summary(&self) -> String {
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
fn assert_contiguous(cids: &[u64], first: Option<u64>, who: &str) {
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

fn assert_strictly_increasing(cids: &[u64], who: &str) {
    if let Some(i) = cids.windows(2).position(|pair| pair[1] <= pair[0]) {
        panic!("{who}: cid {} followed by {} at index {i}: a duplicate or going back", cids[i], cids[i + 1]);
    }
}

// ----- a running watch ----------------------------------------------------------------

/// A running `barrage watch` with stdout and stderr piped. Stdout lines go
/// through a reader thread into a channel; the thread takes `gate` before
/// every read, so holding the gate stops reading stdout altogether (the
/// slow-consumer test). Killed when dropped.
struct Watch {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Collects stderr; joined once the process has exited, so that the
    /// log is then complete.
    stderr_reader: Option<thread::JoinHandle<()>>,
    gate: Arc<Mutex<()>>,
    seen: Seen,
    /// stdout reached its end.
    closed: bool,
}

impl Watch {
    /// `barrage watch --format json --log-level info ARGS…`
    fn start(args: &[&str]) -> Watch {
        let mut command = barrage(&["watch", "--format", "json", "--log-level", "info", "--status-interval", "0"]);
        let mut child = command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn watch");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let gate = Arc::new(Mutex::new(()));
        let (tx, lines) = mpsc::channel();
        {
            let gate = gate.clone();
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
        Watch { child, lines, stderr, stderr_reader: Some(stderr_reader), gate, seen: Seen::default(), closed: false }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What a failure message needs: the lines seen and the log's tail.
    fn report(&mut self) -> String {
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
    fn wait_for(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&Seen) -> bool) {
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
    fn read_to_end(&mut self, timeout: Duration) {
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
    fn wait_stderr(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&str) -> bool) {
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

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("watch exited ({status}) but should still run\n{}", self.report());
        }
    }

    /// Sends `signal` and waits for the exit; returns the status and how
    /// long the exit took.
    fn stop_with(&mut self, signal: &str) -> (ExitStatus, Duration) {
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
    fn wchar(&self) -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.child.id())).expect("/proc/PID/io");
        io.lines()
            .find_map(|line| line.strip_prefix("wchar:"))
            .and_then(|rest| rest.trim().parse().ok())
            .expect("wchar in /proc/PID/io")
    }

    /// CPU time (user + system, in clock ticks) of the main thread, the
    /// event loop, from /proc.
    fn loop_cpu_ticks(&self) -> u64 {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")).expect("/proc/PID/task/PID/stat");
        // Fields after the command name, which is in parentheses: state is
        // field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat.rsplit_once(')').expect("(comm)").1.split_whitespace().collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }

    /// The process's resident memory, from /proc.
    fn rss_kib(&self) -> u64 {
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

/// A directory of its own for one test, under cargo's target tmp dir;
/// removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("watch-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test's temp dir");
        TempDir(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `text` to `path` atomically (a reader never sees half of it).
fn write_atomically(path: &Path, text: &str) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, text).expect("write the staging file");
    std::fs::rename(&staging, path).expect("rename the staging file into place");
}

/// The complete lines of a file being written (a partial last line is left
/// out); an absent file has none.
fn complete_lines(path: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else { return Vec::new() };
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = std::str::from_utf8(&bytes[..end]).expect("output is UTF-8");
    text.split_inclusive('\n').map(str::to_string).collect()
}

/// Every line of a finished output file, each checked (a truncated last
/// line fails).
fn file_seen(path: &Path) -> Seen {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut seen = Seen::default();
    for line in text.split_inclusive('\n') {
        seen.record(line);
    }
    seen
}

// ----- 1. exactly once ------------------------------------------------------------------

/// At 200 messages/s per room, through a server fault that reshapes the
/// byte stream, every room's messages arrive once each, in order.
fn exactly_once_through(fault: &str) {
    exactly_once_with(fault, &[]);
}

/// [`exactly_once_through`], with more `watch_flags`.
fn exactly_once_with(fault: &str, watch_flags: &[&str]) {
    const ROOMS: [u64; 3] = [11, 12, 13];
    const AT_LEAST: usize = 300;
    let serve = Serve::start(&["--rate", "200", fault]);
    let mut args = vec!["--server", &serve.addr, "11", "12", "13"];
    args.extend_from_slice(watch_flags);
    let mut watch = Watch::start(&args);
    watch.wait_for(&format!("{AT_LEAST} messages in every room ({fault})"), DEADLINE, |seen| {
        ROOMS.iter().all(|&room| seen.messages(room) >= AT_LEAST)
    });
    for room in ROOMS {
        let who = format!("room {room} with {fault}");
        assert_eq!(watch.seen.count(room, "loginres"), 1, "{who}: one connection throughout\n{}", watch.report());
        assert_contiguous(&watch.seen.room(room).cids, Some(1), &who);
    }
    assert_eq!(watch.seen.rooms.keys().copied().collect::<Vec<_>>(), ROOMS, "only the rooms asked for");
    watch.assert_running();
}

#[test]
fn exactly_once_with_fragmented_frames() {
    exactly_once_through("--fragment");
}

#[test]
fn exactly_once_with_coalesced_frames() {
    exactly_once_through("--coalesce");
}

/// Read coalescing: many frames, cut anywhere, in each read.
#[test]
fn exactly_once_with_fragmented_frames_read_every_50_ms() {
    exactly_once_with("--fragment", &["--poll-interval", "50"]);
}

// ----- 2. reconnect after drops ---------------------------------------------------------

/// The server closes each connection after 30 messages: every room
/// reconnects again and again, and its stream goes on with no repeat (and,
/// since the simulator keeps an empty room's place, no gap either).
#[test]
fn rooms_reconnect_after_drops_and_lose_nothing() {
    const ROOMS: [u64; 2] = [21, 22];
    let serve = Serve::start(&["--rate", "100", "--drop-every", "30"]);
    let mut watch = Watch::start(&["--server", &serve.addr, "21", "22"]);
    // Four connections = three drops survived, and messages on the fourth.
    watch.wait_for("4 connections per room, with messages on the latest", DEADLINE, |seen| {
        ROOMS.iter().all(|&room| seen.count(room, "loginres") >= 4 && seen.room(room).since_login >= 10)
    });
    for room in ROOMS {
        let who = format!("room {room} (dropped every 30)");
        let cids = &watch.seen.room(room).cids;
        assert_strictly_increasing(cids, &who);
        assert_contiguous(cids, Some(1), &who);
        assert!(cids.len() >= 3 * 30 + 10, "{who}: {} messages", cids.len());
    }
    // Each reconnect was logged (before it happened; the log may lag a little).
    watch.wait_stderr("three logged drops per room", DEADLINE, |log| {
        ROOMS
            .iter()
            .all(|room| log.matches(&format!("room {room}: closed (server closed the connection)")).count() >= 3)
    });
    watch.assert_running();
}

// ----- 3. a bad frame ends only its room's connection ------------------------------------

/// The server sends an invalid frame after every 40 messages of each
/// connection, cycling through four kinds. Each one is logged as a
/// protocol error naming its room, closes that room's connection only
/// (every close of a room is that room's own protocol error), the room
/// reconnects, and the daemon keeps running.
#[test]
fn a_bad_frame_ends_only_its_rooms_connection() {
    const ROOMS: [u64; 3] = [31, 32, 33];
    let serve = Serve::start(&["--rate", "100", "--corrupt-every", "40"]);
    let mut watch = Watch::start(&["--server", &serve.addr, "31", "32", "33"]);
    watch.wait_for("every room reconnected after a bad frame and receiving again", DEADLINE, |seen| {
        ROOMS.iter().all(|&room| seen.count(room, "loginres") >= 2 && seen.room(room).since_login >= 5)
    });
    // The room's second loginres came after its close was logged.
    watch.wait_stderr("a protocol error logged for every room", DEADLINE, |log| {
        ROOMS.iter().all(|room| log.contains(&format!("room {room}: protocol error: ")))
    });
    let stderr = watch.stderr();
    let mut closes = BTreeMap::new();
    for room in ROOMS {
        let prefix = format!("room {room}: closed (");
        let reasons: Vec<&str> =
            stderr.lines().filter_map(|line| line.split_once(&prefix)).map(|(_, reason)| reason).collect();
        assert!(!reasons.is_empty(), "room {room}: no close logged\n{stderr}");
        // Every connection of this room ended in this room's own bad frame:
        // none was taken down by another room's.
        for reason in &reasons {
            assert!(
                reason.starts_with("protocol error: "),
                "room {room} closed for another reason: {reason}\n{stderr}"
            );
        }
        closes.insert(room, reasons.len());
    }
    // And after each of those closes the room logged in again.
    watch.wait_for("a new login after every logged close", DEADLINE, |seen| {
        ROOMS.iter().all(|room| seen.count(*room, "loginres") > closes[room])
    });
    for room in ROOMS {
        assert_contiguous(&watch.seen.room(room).cids, Some(1), &format!("room {room} (corrupt every 40)"));
    }
    watch.assert_running();
}

// ----- 4. heartbeats -------------------------------------------------------------------

/// The server drops a client silent for 1 s. With `--heartbeat 0.3` the room
/// keeps its one connection (and gets `mrkl` echoes); with `--heartbeat 5`,
/// on the same server, the room is dropped and logs in again.
#[test]
fn heartbeats_keep_the_connection_alive() {
    let serve = Serve::start(&["--rate", "0", "--heartbeat-timeout", "1"]);
    let mut beating = Watch::start(&["--server", &serve.addr, "--heartbeat", "0.3", "41"]);
    let mut lazy = Watch::start(&["--server", &serve.addr, "--heartbeat", "5", "42"]);

    // The contrast first: proof that the server does drop a silent client,
    // so the test below could fail.
    lazy.wait_for("room 42 dropped for silence and logged in again", Duration::from_secs(15), |seen| {
        seen.count(42, "loginres") >= 2
    });
    lazy.wait_stderr("room 42's drop logged", DEADLINE, |log| log.contains("room 42: closed ("));

    beating.wait_for("room 41 logged in", DEADLINE, |seen| seen.count(41, "loginres") >= 1);
    let logged_in = Instant::now();
    // Well past three heartbeat timeouts, and at least 9 echoes.
    beating.wait_for("3 s of heartbeats on room 41", Duration::from_secs(15), |seen| {
        logged_in.elapsed() >= Duration::from_secs(3) && seen.count(41, "mrkl") >= 9
    });
    assert_eq!(beating.seen.count(41, "loginres"), 1, "room 41 reconnected\n{}", beating.report());
    let stderr = beating.stderr();
    assert!(!stderr.contains("room 41: closed"), "room 41's connection closed:\n{stderr}");
    assert_eq!(beating.seen.messages(41), 0, "--rate 0 sends no room messages");
    beating.assert_running();
}

// ----- 5. SIGTERM / SIGINT ------------------------------------------------------------

/// With messages flowing in three rooms, SIGTERM (and SIGINT) makes watch
/// log out of every room (the server counts the logouts), flush, and exit 0
/// within 2 s; every line it wrote is complete.
#[test]
fn sigterm_logs_out_of_every_room_and_exits_cleanly_within_2_s() {
    const ROOMS: [u64; 3] = [51, 52, 53];
    for signal in ["TERM", "INT"] {
        let sim = InProcessSim::start(100.0);
        let addr = sim.addr.to_string();
        let mut watch = Watch::start(&["--server", &addr, "51", "52", "53"]);
        watch.wait_for("messages flowing in every room", DEADLINE, |seen| {
            ROOMS.iter().all(|&room| seen.messages(room) >= 30)
        });
        assert_eq!(sim.stats().logouts, 0);

        let (status, took) = watch.stop_with(signal);
        assert!(status.success(), "SIG{signal}: exit status {status}\n{}", watch.report());
        assert!(took < SHUTDOWN_LIMIT, "SIG{signal}: the exit took {took:?}\n{}", watch.report());
        // Everything written before the exit: complete JSON lines only (a
        // truncated last line fails in `parse_line`).
        watch.read_to_end(DEADLINE);

        let stats = sim.wait_stats("a logout from every room", DEADLINE, |s| s.logouts >= ROOMS.len() as u64);
        assert_eq!(stats.logouts, ROOMS.len() as u64, "SIG{signal}: {stats:?}");
        sim.wait_stats("every client gone", DEADLINE, |s| s.clients == 0);
        for room in ROOMS {
            assert_eq!(watch.seen.count(room, "loginres"), 1);
            assert_contiguous(&watch.seen.room(room).cids, Some(1), &format!("room {room} until SIG{signal}"));
        }
        let stderr = watch.stderr();
        assert!(stderr.contains("shutting down (signal)"), "SIG{signal}: {stderr}");
        assert!(!stderr.contains("did not close in time"), "SIG{signal}: {stderr}");
        println!("SIG{signal} to exit: {took:?}");
    }
}

/// "A second signal stops at once" (daemon.rs), and the exit comes within
/// 2 s of the stop request: also when the output cannot be written. Here
/// nobody reads watch's stdout (a hung pipeline); SIGTERM, and if watch is
/// still there 2 s later, SIGTERM again: it must be gone 2 s after that.
#[test]
fn a_second_signal_ends_watch_even_when_its_output_is_stuck() {
    let serve = Serve::start(&["--rate", "500"]);
    let mut watch = Watch::start(&["--server", &serve.addr, "55", "56", "57"]);
    watch.wait_for("messages in every room", DEADLINE, |seen| {
        [55, 56, 57].iter().all(|&room| seen.messages(room) >= 50)
    });
    let stuck = watch.gate.lock().unwrap_or_else(|p| p.into_inner());
    // Wait until watch's writes stand still for 300 ms while 1500 messages
    // a second come in: its writer is blocked on the full pipe.
    let (mut last, mut since) = (watch.wchar(), Instant::now());
    poll_until("watch's output blocked on the full pipe", DEADLINE, || {
        let now = watch.wchar();
        if now != last {
            (last, since) = (now, Instant::now());
        }
        since.elapsed() >= Duration::from_millis(300)
    });

    let asked = Instant::now();
    send_signal(&watch.child, "TERM");
    let mut exited = wait_exit(&mut watch.child, SHUTDOWN_LIMIT);
    if exited.is_none() {
        send_signal(&watch.child, "TERM");
        exited = wait_exit(&mut watch.child, SHUTDOWN_LIMIT);
    }
    let took = asked.elapsed();
    drop(stuck);
    let status = exited.unwrap_or_else(|| {
        panic!("watch still running {took:?} after two SIGTERMs with its stdout stuck\n{}", watch.report())
    });
    println!("stuck output: exited ({status}) {took:?} after the first SIGTERM");
}

// ----- 6. SIGHUP ----------------------------------------------------------------------

/// `rooms = [1, 2]` becomes `rooms = [2, 3]` and SIGHUP: room 3 starts,
/// room 1 stops with a logout, room 2 is untouched (same connection, its
/// sequence goes on).
#[test]
fn sighup_applies_the_new_room_list() {
    let dir = TempDir::new("sighup-rooms");
    let sim = InProcessSim::start(50.0);
    let config = dir.path("watch.toml");
    write_atomically(&config, &format!("rooms = [1, 2]\nservers = [\"{}\"]\n", sim.addr));
    let mut watch = Watch::start(&["--config", config.to_str().unwrap()]);
    watch.wait_for("messages in rooms 1 and 2", DEADLINE, |seen| seen.messages(1) >= 10 && seen.messages(2) >= 10);
    assert_eq!(watch.seen.messages(3), 0);

    write_atomically(&config, &format!("rooms = [2, 3]\nservers = [\"{}\"]\n", sim.addr));
    send_signal(&watch.child, "HUP");
    watch.wait_for("room 3's messages", DEADLINE, |seen| seen.messages(3) >= 10);
    let stats = sim.wait_stats("room 1's logout", DEADLINE, |s| s.logouts >= 1);
    assert_eq!(stats.logouts, 1, "only room 1 logged out: {stats:?}");

    // Settle: 20 more room-2 messages; from then on room 1 must be silent
    // for another 50 of room 2's.
    let room2 = watch.seen.messages(2);
    watch.wait_for("20 more room-2 messages", DEADLINE, |seen| seen.messages(2) >= room2 + 20);
    let room1_lines = watch.seen.room(1).lines;
    let room2 = watch.seen.messages(2);
    watch.wait_for("50 more room-2 messages", DEADLINE, |seen| seen.messages(2) >= room2 + 50);
    assert_eq!(watch.seen.room(1).lines, room1_lines, "room 1 still writes lines after its removal");

    assert_eq!(watch.seen.count(2, "loginres"), 1, "room 2 reconnected\n{}", watch.report());
    assert_contiguous(&watch.seen.room(2).cids, Some(1), "room 2 across the reload");
    assert_contiguous(&watch.seen.room(1).cids, Some(1), "room 1 until its removal");
    assert_contiguous(&watch.seen.room(3).cids, Some(1), "room 3 from its start");
    assert_eq!(sim.stats().clients, 2, "rooms 2 and 3 connected");
    watch.wait_stderr("the reload logged", DEADLINE, |log| log.contains("1 rooms added, 1 removed"));
    watch.assert_running();
}

/// `--output FILE`: after the file is renamed away (log rotation), SIGHUP
/// makes watch write to a new file at the original path; the old file ends
/// where the new one starts, and nothing is lost or repeated.
#[test]
fn sighup_reopens_the_output_file_after_rotation() {
    const ROOMS: [u64; 2] = [61, 62];
    let dir = TempDir::new("sighup-output");
    let output = dir.path("out.jsonl");
    let rotated = dir.path("out.jsonl.1");
    let serve = Serve::start(&["--rate", "50"]);
    let mut watch = Watch::start(&["--server", &serve.addr, "--output", output.to_str().unwrap(), "61", "62"]);
    poll_until("20 lines in the output file", DEADLINE, || complete_lines(&output).len() >= 20);

    std::fs::rename(&output, &rotated).expect("rotate");
    // Without a reopen, watch goes on writing to the renamed file.
    let before = complete_lines(&rotated).len();
    poll_until("more lines in the rotated file", DEADLINE, || complete_lines(&rotated).len() >= before + 10);
    assert!(!output.exists(), "nothing recreates the file before SIGHUP");

    send_signal(&watch.child, "HUP");
    poll_until("20 lines in the new file", DEADLINE, || complete_lines(&output).len() >= 20);
    let (status, _) = watch.stop_with("TERM");
    assert!(status.success(), "exit status {status}\n{}", watch.report());
    watch.read_to_end(DEADLINE);
    assert_eq!(watch.seen.lines, 0, "nothing on stdout with --output");

    let old = file_seen(&rotated);
    let new = file_seen(&output);
    for room in ROOMS {
        let (old_cids, new_cids) = (&old.room(room).cids, &new.room(room).cids);
        assert_contiguous(old_cids, Some(1), &format!("room {room} in the rotated file"));
        assert_contiguous(new_cids, None, &format!("room {room} in the new file"));
        assert_eq!(
            new_cids[0],
            old_cids[old_cids.len() - 1] + 1,
            "room {room}: the new file starts where the old ends"
        );
        assert_eq!(old.count(room, "loginres") + new.count(room, "loginres"), 1, "room {room}: one connection");
    }
}

// ----- 7. slow consumer ---------------------------------------------------------------

/// The reader of watch's stdout stops for 2 s while 5 rooms bring 500
/// messages/s each: memory stays bounded, and once reading resumes every
/// message written while paused arrives, in order, none lost. (2 s at this
/// rate stays below the output's 8 MiB high-water mark; the next test
/// goes past it.)
#[test]
fn a_slow_stdout_reader_loses_nothing_and_memory_stays_bounded() {
    const ROOMS: [u64; 5] = [71, 72, 73, 74, 75];
    const PAUSE: Duration = Duration::from_secs(2);
    const RSS_LIMIT_KIB: u64 = 200 * 1024;
    let serve = Serve::start(&["--rate", "500"]);
    let mut watch = Watch::start(&["--server", &serve.addr, "71", "72", "73", "74", "75"]);
    watch.wait_for("messages in every room", DEADLINE, |seen| ROOMS.iter().all(|&room| seen.messages(room) >= 200));

    let before: Vec<usize> = ROOMS.iter().map(|&room| watch.seen.messages(room)).collect();
    let mut peak_rss = 0;
    {
        // Holding the gate stops the reader thread: nobody reads the pipe.
        let _paused = watch.gate.lock().unwrap_or_else(|p| p.into_inner());
        let start = Instant::now();
        // Lines the reader sent before it stopped.
        for line in watch.lines.try_iter() {
            watch.seen.record(&line);
        }
        // Waiting on the clock is the point here: the consumer is slow for
        // a while. Sample the memory meanwhile.
        while start.elapsed() < PAUSE {
            peak_rss = peak_rss.max(watch.rss_kib());
            assert!(peak_rss < RSS_LIMIT_KIB, "watch's RSS reached {peak_rss} KiB while paused");
            thread::sleep(Duration::from_millis(50));
        }
        // The reader takes the gate before each line: at most the one it
        // was reading when the pause began got through.
        let during: Vec<String> = watch.lines.try_iter().collect();
        assert!(during.len() <= 1, "the reader did not pause: {} lines during the pause", during.len());
        for line in during {
            watch.seen.record(&line);
        }
    }
    watch.assert_running();
    // 2 s at 500/s is 1000 messages per room made while paused; read them
    // all and 250 more.
    watch.wait_for("everything made during the pause, and more", DEADLINE, |seen| {
        ROOMS.iter().zip(&before).all(|(&room, &before)| seen.messages(room) >= before + 1250)
    });
    for room in ROOMS {
        assert_eq!(watch.seen.count(room, "loginres"), 1, "room {room} reconnected\n{}", watch.report());
        assert_contiguous(&watch.seen.room(room).cids, Some(1), &format!("room {room} across the pause"));
    }
    println!("peak RSS while paused: {peak_rss} KiB");
}

/// Past the output's high-water mark (8 MiB unwritten) rooms stop reading
/// their sockets, and once the output drains they must read again — at
/// once, not at their next heartbeat. The stdout reader stops until watch
/// has stopped reading the server (its event loop, busy with 5000 messages
/// a second, uses no CPU for a second: the output is full and every room
/// has stopped), then reads again: every room must go on to messages the
/// server made after that point, well within the 60 s heartbeat set here.
#[test]
fn rooms_stopped_by_a_full_output_read_again_once_it_drains() {
    const ROOMS: [u64; 5] = [91, 92, 93, 94, 95];
    const IDLE_FOR: Duration = Duration::from_secs(1);
    let sim = InProcessSim::start(1000.0);
    let addr = sim.addr.to_string();
    let mut watch = Watch::start(&["--server", &addr, "--heartbeat", "60", "91", "92", "93", "94", "95"]);
    watch.wait_for("messages in every room", DEADLINE, |seen| ROOMS.iter().all(|&room| seen.messages(room) >= 100));
    // Each session's login timer (15 s after connecting) fires once, login
    // or not, and that alone would wake a stopped room: let it pass first.
    // (Waiting on the clock is the point here: the timer is what we wait out.)
    let joined = Instant::now();
    watch.wait_for("16 s of traffic", DEADLINE, |_| joined.elapsed() >= Duration::from_secs(16));

    let made_when_stopped: Vec<u64> = {
        let _paused = watch.gate.lock().unwrap_or_else(|p| p.into_inner());
        let (mut last, mut since) = (watch.loop_cpu_ticks(), Instant::now());
        let deadline = Instant::now() + DEADLINE;
        // Poll every 20 ms until the loop has used no CPU for IDLE_FOR.
        loop {
            let now = watch.loop_cpu_ticks();
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= IDLE_FOR {
                break;
            }
            assert!(Instant::now() < deadline, "watch's loop never went idle with its output stopped");
            thread::sleep(Duration::from_millis(20));
        }
        ROOMS.iter().map(|&room| sim.room_messages(room)).collect()
    };
    // Reading stdout again: the output drains, and every room must read on
    // past what the server had made when it stopped.
    let resumed = Instant::now();
    let what = format!(
        "every room reading past cid {made_when_stopped:?} + 500 (made when watch stopped) after the output drained"
    );
    watch.wait_for(&what, Duration::from_secs(20), |seen| {
        ROOMS
            .iter()
            .zip(&made_when_stopped)
            .all(|(&room, &made)| seen.room(room).cids.last().is_some_and(|&last| last >= made + 500))
    });
    println!("all rooms past the stop point {:?} after the reader resumed", resumed.elapsed());
    for room in ROOMS {
        assert_eq!(watch.seen.count(room, "loginres"), 1, "room {room} reconnected\n{}", watch.report());
        assert_contiguous(&watch.seen.room(room).cids, Some(1), &format!("room {room} across the full output"));
    }
}

// ----- 8. --types ---------------------------------------------------------------------

#[test]
fn types_writes_only_the_chosen_types() {
    let serve = Serve::start(&["--rate", "100"]);
    let mut watch = Watch::start(&["--server", &serve.addr, "--types", "chatmsg", "81", "82"]);
    watch.wait_for("50 chat messages per room", DEADLINE, |seen| {
        [81, 82].iter().all(|&room| seen.count(room, "chatmsg") >= 50)
    });
    for (room, seen) in &watch.seen.rooms {
        assert_eq!(seen.types.keys().collect::<Vec<_>>(), ["chatmsg"], "room {room}: {:?}", seen.types);
        assert_strictly_increasing(&seen.cids, &format!("room {room}"));
    }
    // The other types were made and filtered out: chat is only part of the mix.
    let cids = &watch.seen.room(81).cids;
    let span = (cids[cids.len() - 1] - cids[0] + 1) as usize;
    assert!(span > cids.len(), "the filter skipped nothing: {} chat lines over cids {span}", cids.len());
}

// ----- 9. bad command lines ------------------------------------------------------------

/// Runs `barrage ARGS` to its exit (killed at the deadline) and returns the
/// exit status and stderr.
fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut child = barrage(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let collected = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_exit(&mut child, DEADLINE);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = collected.join().expect("stderr reader");
    let status = status.unwrap_or_else(|| panic!("barrage {args:?} did not exit; stderr:\n{text}"));
    (status, text)
}

#[test]
fn bad_command_lines_fail_with_one_error_line() {
    let dir = TempDir::new("bad-cli");
    let missing = dir.path("missing.toml");
    let typo = dir.path("typo.toml");
    std::fs::write(&typo, "rooms = [1]\nromos = [2]\n").unwrap();
    let nowhere = dir.path("no-such-dir").join("out.jsonl");
    let (missing, typo, nowhere) = (missing.to_str().unwrap(), typo.to_str().unwrap(), nowhere.to_str().unwrap());
    // A closed port, in case a case wrongly starts: it then fails to exit.
    let server = "127.0.0.1:1";
    let cases: [(&[&str], &str); 11] = [
        (&["abc"], "abc"),
        (&["0"], "'0'"),
        (&["--server", "nohost", "1"], "nohost"),
        (&["--server", server, "--shard", "4/4", "1"], "4/4"),
        (&["--server", server, "--heartbeat", "-1", "1"], "-1"),
        (&["--server", server, "--heartbeat=-1", "1"], "-1"),
        (&["--server", server], "no rooms"),
        (&["--server", server, "--config", missing, "1"], missing),
        (&["--server", server, "--config", typo], "romos"),
        (&["--server", server, "--output", nowhere, "1"], nowhere),
        (&["--server", server, "--format", "xml", "1"], "xml"),
    ];
    for (args, mentions) in cases {
        let args: Vec<&str> = ["watch"].iter().chain(args).copied().collect();
        let (status, stderr) = run_to_exit(&args);
        assert!(status.code().is_some_and(|code| code != 0), "barrage {args:?}: {status}\n{stderr}");
        assert_eq!(stderr.lines().count(), 1, "barrage {args:?} printed:\n{stderr}");
        assert!(stderr.starts_with("barrage: error: "), "barrage {args:?}: {stderr}");
        assert!(stderr.contains(mentions), "barrage {args:?} should mention {mentions:?}: {stderr}");
    }
}

#[test]
fn watch_help_mentions_every_flag() {
    let output = barrage(&["watch", "--help"]).output().expect("run watch --help");
    assert!(output.status.success(), "{}", output.status);
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    for flag in [
        "--server",
        "--config",
        "--format",
        "--types",
        "--output",
        "--heartbeat",
        "--idle-timeout",
        "--connect-rate",
        "--metrics",
        "--shard",
        "--status-interval",
        "--log-level",
    ] {
        assert!(help.contains(flag), "watch --help does not mention {flag}:\n{help}");
    }
}

// ----- 10. --shard --------------------------------------------------------------------

/// FNV-1a, 64-bit, of the decimal room id: the split `--shard` documents as
/// stable, so that other tools can compute it.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Two copies with `--shard 0/2` and `--shard 1/2` over rooms 1..=20 watch
/// disjoint sets of rooms that together are all 20, split as documented.
#[test]
fn two_shards_split_the_rooms_between_them() {
    let serve = Serve::start(&["--rate", "20"]);
    let rooms: Vec<String> = (1..=20).map(|room: u64| room.to_string()).collect();
    let mut shards: Vec<Watch> = (0..2)
        .map(|k| {
            let shard = format!("{k}/2");
            let mut args = vec!["--server", serve.addr.as_str(), "--shard", shard.as_str()];
            args.extend(rooms.iter().map(String::as_str));
            Watch::start(&args)
        })
        .collect();
    let expected: Vec<BTreeSet<u64>> =
        (0..2).map(|k| (1..=20).filter(|room: &u64| fnv1a64(room.to_string().as_bytes()) % 2 == k).collect()).collect();
    assert!(expected.iter().all(|rooms| !rooms.is_empty()), "both shards have rooms: {expected:?}");
    for (k, watch) in shards.iter_mut().enumerate() {
        let mine = &expected[k];
        // Each of this shard's rooms joined and got messages.
        watch.wait_for(&format!("messages in every room of shard {k}/2"), DEADLINE, |seen| {
            mine.iter().all(|&room| seen.messages(room) >= 3)
        });
        watch.wait_stderr("the 'watching' line", DEADLINE, |log| log.contains("watching "));
        assert!(
            watch.stderr().contains(&format!("watching {} rooms", mine.len())),
            "shard {k}/2 log:\n{}",
            watch.stderr()
        );
    }
    let seen: Vec<BTreeSet<u64>> = shards.iter().map(|watch| watch.seen.rooms.keys().copied().collect()).collect();
    assert!(seen[0].is_disjoint(&seen[1]), "a room in both shards: {seen:?}");
    let all: BTreeSet<u64> = seen[0].union(&seen[1]).copied().collect();
    assert_eq!(all, (1..=20).collect::<BTreeSet<u64>>(), "together, every room");
    assert_eq!(seen, expected, "the split is FNV-1a of the decimal id, mod N");
}

// ----- --metrics ------------------------------------------------------------------------

/// `--metrics 127.0.0.1:0` serves /metrics and /rooms from the daemon's own
/// loop; the log says where.
#[test]
fn metrics_flag_serves_prometheus_text_and_room_json() {
    let serve = Serve::start(&["--rate", "50"]);
    let mut watch = Watch::start(&["--server", &serve.addr, "--metrics", "127.0.0.1:0", "7", "8"]);
    watch.wait_for("messages in both rooms", DEADLINE, |seen| seen.messages(7) >= 5 && seen.messages(8) >= 5);
    watch.wait_stderr("the metrics address", DEADLINE, |log| log.contains("metrics on http://"));
    let log = watch.stderr();
    let addr: SocketAddr = log
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .expect("an address in the log line");

    let http_get = |path: &str| -> String {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(addr).expect("connect to metrics");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let metrics = http_get("/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("barrage_rooms{state=\"joined\"} 2"), "{metrics}");
    assert!(metrics.contains("barrage_room_messages_total{room=\"7\"}"), "{metrics}");
    let rooms = http_get("/rooms");
    let body = rooms.split("\r\n\r\n").nth(1).expect("a body");
    let rooms: serde_json::Value = serde_json::from_str(body).expect("JSON");
    let ids: Vec<u64> = rooms.as_array().unwrap().iter().map(|r| r["room"].as_u64().unwrap()).collect();
    assert_eq!(ids, [7, 8]);
    assert!(rooms[0]["state"] == "joined" && rooms[0]["messages"].as_u64().unwrap() >= 5);
}

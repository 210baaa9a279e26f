//! Runs the tokio peer (`examples/tokio_peer.rs`) against the real
//! simulator binary and checks its report, and its output lines.
//!
//! Both are separate processes, as in the benchmark. Every wait has a
//! deadline (lines arrive through reader threads and `recv_timeout`), and a
//! child is killed when its test ends, passing or failing.

mod common;
use common::example_path;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use barrage::bench::BenchReport;

/// How long any one wait may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// A child process whose stdout lines arrive on a channel; killed on drop.
struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Running {
    fn start(program: &Path, args: &[&str]) -> Running {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", program.display()));
        let stdout = lines_of(child.stdout.take().expect("piped stdout"));
        let stderr = lines_of(child.stderr.take().expect("piped stderr"));
        Running { child, stdout, stderr }
    }

    /// The next stdout line before `deadline`; `None` once stdout closed.
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        match self.stdout.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("timed out waiting for stdout\n{}", self.stderr_so_far()),
        }
    }

    fn stderr_so_far(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Harmless if it already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// `barrage serve` on a free loopback port, and its address.
fn start_simulator(rate: &str) -> (Running, SocketAddr) {
    let args = ["serve", "--listen", "127.0.0.1:0", "--rate", rate, "--stats-interval", "0"];
    let mut simulator = Running::start(Path::new(env!("CARGO_BIN_EXE_barrage")), &args);
    let deadline = Instant::now() + DEADLINE;
    loop {
        match simulator.next_line(deadline) {
            Some(line) if line.starts_with("listening on ") => {
                let addr = line["listening on ".len()..].trim().parse().expect("an address after 'listening on'");
                return (simulator, addr);
            }
            Some(_) => {}
            None => panic!("the simulator exited before listening\n{}", simulator.stderr_so_far()),
        }
    }
}

/// Runs the peer to its end and parses its one stdout line.
fn run_peer(server: SocketAddr, rooms: u64, output: &Path) -> BenchReport {
    let server = server.to_string();
    let rooms = rooms.to_string();
    let output = output.to_str().expect("a UTF-8 path");
    let args = ["--server", &server, "--rooms", &rooms, "--duration", "1", "--output", output, "--rate", "50"];
    let mut peer = Running::start(&example_path("tokio_peer"), &args);
    let deadline = Instant::now() + DEADLINE;
    let mut lines = Vec::new();
    while let Some(line) = peer.next_line(deadline) {
        lines.push(line);
    }
    // stdout is closed: the process is exiting; reap it before the deadline.
    let status = loop {
        match peer.child.try_wait().expect("try_wait") {
            Some(status) => break status,
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            None => panic!("the peer closed stdout but did not exit"),
        }
    };
    let stderr = peer.stderr_so_far();
    assert!(status.success(), "the peer failed: {status}\n{stderr}");
    assert_eq!(lines.len(), 1, "exactly one stdout line, got {lines:?}\n{stderr}");
    serde_json::from_str(&lines[0]).unwrap_or_else(|e| panic!("not a BenchReport: {e}: {}", lines[0]))
}

#[test]
fn twenty_rooms_report_every_message_once() {
    let (_simulator, server) = start_simulator("50");
    let report = run_peer(server, 20, Path::new("/dev/null"));
    assert_eq!(report.engine, "tokio");
    assert_eq!((report.rooms, report.rooms_joined), (20, 20), "{report:?}");
    assert!(report.messages > 0, "{report:?}");
    assert_eq!((report.lost, report.duplicated), (0, 0), "{report:?}");
    assert_eq!(report.rate, 50.0);
    assert!(report.window_secs >= 1.0 && report.window_secs < 2.0, "{report:?}");
    assert!(report.cpu_secs >= 0.0 && report.rss_joined_bytes > 0, "{report:?}");
    assert_eq!(report.cpu_us_per_message.is_some(), report.messages > 0);
    assert!(report.iterations.is_none() && report.syscalls_per_message.is_none(), "not visible to tokio");
    assert!(report.open_files_limit >= 1024);
}

/// The lines written are barrage's JSON lines, one per message, each room's
/// numbers in order: at least as many numbered lines as the window counted.
#[test]
fn output_lines_are_barrage_json() {
    let (_simulator, server) = start_simulator("50");
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tokio_peer_{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let report = run_peer(server, 5, &path);
    let text = std::fs::read_to_string(&path).expect("the output file");
    let _ = std::fs::remove_file(&path);

    let mut last_cid = std::collections::HashMap::new();
    let mut numbered = 0;
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let keys: Vec<&String> = value.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["fields", "room", "ts", "type"], "{line}");
        let room = value["room"].as_u64().expect("a numeric room");
        assert!((1..=5).contains(&room), "{line}");
        assert_eq!(value["type"], value["fields"]["type"], "{line}");
        if let Some(cid) = value["fields"]["cid"].as_str().and_then(|cid| cid.parse::<u64>().ok()) {
            numbered += 1;
            let previous = last_cid.insert(room, cid).unwrap_or(0);
            assert_eq!(cid, previous + 1, "room {room}: in order, none missing");
        }
    }
    assert_eq!(last_cid.len(), 5, "every room got messages");
    assert!(numbered >= report.messages && report.messages > 0, "{numbered} lines, {report:?}");
    assert!(text.contains("\"type\":\"loginres\""), "every message is written, not only numbered ones");
}

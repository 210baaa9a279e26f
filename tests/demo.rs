//! `barrage demo`, the README's first command: it must run on its own,
//! show messages, and end with a summary proving nothing was lost.

mod common;

use std::process::Command;

#[test]
fn demo_streams_rooms_and_ends_with_a_lossless_summary() {
    let stderr = demo_streams_4_rooms_losslessly(&[]);
    assert!(stderr.contains("server on tcp://127.0.0.1:"), "{stderr}");
}

/// `--transport wss`: the same over WebSocket and TLS (Douyu's suite, a
/// certificate made at start and trusted by the monitor).
#[test]
fn demo_over_wss_streams_rooms_and_ends_with_a_lossless_summary() {
    let stderr = demo_streams_4_rooms_losslessly(&["--transport", "wss"]);
    assert!(stderr.contains("server on wss://127.0.0.1:"), "{stderr}");
}

/// Runs the demo with 4 rooms at 20/s for 1.5 s (and `flags`): text lines
/// tagged with their room, then a summary row per room, none with a loss.
/// Returns the log.
fn demo_streams_4_rooms_losslessly(flags: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args(["demo", "--rooms", "4", "--rate", "20", "--duration", "1.5"])
        .args(flags)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {}\n{stderr}", output.status);
    // Text lines, one per message, tagged with the room.
    let lines = stdout.lines().filter(|line| line.starts_with("[100001]")).count();
    assert!(lines >= 10, "room 100001 showed {lines} lines:\n{stdout}");
    // The summary: every room, each with messages and no loss.
    for room in 100001..=100004 {
        let row = stdout.lines().find(|l| l.starts_with(&format!("room {room}:"))).expect("a summary row per room");
        assert!(row.contains(" 0 missing, 0 duplicated"), "{row}");
    }
    assert!(stdout.contains("4 rooms,") && stdout.contains("none lost, none duplicated"), "{stdout}");
    stderr.into_owned()
}

#[test]
fn demo_rejects_bad_flags_with_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_barrage")).args(["demo", "--rooms", "0"]).output().expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("barrage: error:"), "{stderr}");
}

/// `--json`: stdout is JSON lines and nothing else, each one the line
/// contract; the summary goes to stderr; with --duration nobody is told to
/// press Ctrl-C.
#[test]
fn demo_json_writes_only_json_lines_to_stdout() {
    let output = Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args(["demo", "--rooms", "2", "--rate", "20", "--duration", "1", "--json"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {}\n{stderr}", output.status);
    let mut seen = common::process::Seen::default();
    for line in stdout.split_inclusive('\n') {
        seen.record(line);
    }
    assert!(seen.messages(100001) >= 5 && seen.messages(100002) >= 5, "{}", seen.summary());
    assert!(stderr.contains("2 rooms,") && stderr.contains("none lost, none duplicated"), "{stderr}");
    assert!(stderr.contains("for 1 s") && !stderr.contains("Ctrl-C"), "{stderr}");
}

/// The demo looks its vanity id up as `watch` does, and shows that room's
/// broadcast end (once the grace is over) and start again; the rooms'
/// status pushes are numbered with their messages, and none is lost.
#[test]
fn demo_looks_up_a_vanity_id_and_shows_its_room_end_and_go_live_again() {
    let output = Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args(["demo", "--rooms", "2", "--rate", "5", "--duration", "10", "--json"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {}\n{stderr}", output.status);
    assert!(stderr.contains("room 6657 → 6979222 ("), "{stderr}");
    let mut seen = common::process::Seen::default();
    let mut told = Vec::new();
    for line in stdout.split_inclusive('\n') {
        seen.record(line);
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        if line["type"] == "barrage.live" && line["room"] == 6979222 {
            told.push(line["fields"]["status"].as_str().unwrap().to_string());
        }
    }
    // The simulator's seeded schedule: off air 2.7 s in, back at 7.9 s.
    assert_eq!(told, ["live", "offline", "live"], "{}", seen.summary());
    assert!(seen.count(6979222, "rss") >= 2 && seen.messages(6979222) >= 10, "{}", seen.summary());
    assert_eq!(seen.messages(6657), 0, "nothing written under the vanity id");
    let row = stderr.lines().find(|line| line.starts_with("room 6979222 (6657):")).expect("its summary row");
    assert!(row.contains(" 0 missing, 0 duplicated"), "{row}");
    assert!(stderr.contains("2 rooms, and 6657 (as 6979222);") && stderr.contains("none lost, none duplicated"));
}

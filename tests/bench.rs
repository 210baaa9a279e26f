//! `barrage bench` end to end: it joins every room, counts messages, proves
//! nothing was lost, and says clearly when the machine cannot hold N rooms.
//! (Its numbers are measurements, never asserted here.)

use std::process::Command;

fn barrage() -> Command {
    Command::new(env!("CARGO_BIN_EXE_barrage"))
}

#[test]
fn bench_reports_every_room_joined_and_nothing_lost() {
    let output =
        barrage().args(["bench", "--rooms", "20", "--rate", "20", "--duration", "1", "--json"]).output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(report["engine"], "barrage");
    assert_eq!(report["transport"], "tcp");
    assert_eq!(report["rooms_joined"], 20);
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["lost"], 0);
    assert_eq!(report["duplicated"], 0);
    for key in ["cpu_secs", "rss_per_room_bytes", "lateness_p99_ms", "syscalls_per_message", "join_secs", "stop_secs"] {
        assert!(report[key].is_number(), "{key} missing in {report}");
    }
    // Every part of the syscall count is reported.
    for key in ["polls", "interval_sleeps", "read_syscalls", "write_syscalls", "output_write_syscalls"] {
        assert!(report[key].is_u64(), "{key} missing in {report}");
    }
    assert_eq!(report["poll_interval_ms"], 100.0, "bench measures watch's default");
    // The stop's peak, measured apart from the joins'.
    for key in ["rss_stop_start_bytes", "rss_stop_peak_bytes"] {
        assert!(report[key].as_u64().is_some_and(|bytes| bytes > 0), "{key} missing in {report}");
    }
}

/// `--transport wss`: the simulator speaks WebSocket over TLS (Douyu's
/// suite, a certificate of its own that the engine trusts), and the engine
/// joins every room through it.
#[test]
fn bench_over_wss_reports_every_room_joined_and_nothing_lost() {
    let args = ["bench", "--rooms", "20", "--rate", "20", "--duration", "1", "--transport", "wss", "--json"];
    let output = barrage().args(args).output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!((report["engine"].as_str(), report["transport"].as_str()), (Some("barrage"), Some("wss")));
    assert_eq!(report["rooms_joined"], 20);
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
    assert_eq!((report["lost"].as_u64(), report["duplicated"].as_u64()), (Some(0), Some(0)), "{report}");
    // And the table says how the rooms were reached.
    let args = ["bench", "--rooms", "5", "--rate", "5", "--duration", "1", "--transport", "wss"];
    let output = barrage().args(args).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("over wss"), "{stdout}");
}

#[test]
fn bench_refuses_the_tcp_only_peer_over_wss() {
    let args = ["bench", "--rooms", "5", "--duration", "1", "--transport", "wss", "--peer", "/bin/true"];
    let output = barrage().args(args).output().expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("barrage: error:") && stderr.contains("--peer"), "{stderr}");
}

#[test]
fn bench_with_the_poll_interval_off_loses_nothing() {
    let args = ["bench", "--rooms", "20", "--rate", "20", "--duration", "1", "--poll-interval", "0", "--json"];
    let output = barrage().args(args).output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(report["rooms_joined"], 20);
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
    assert_eq!((report["lost"].as_u64(), report["duplicated"].as_u64()), (Some(0), Some(0)), "{report}");
    assert_eq!(report["poll_interval_ms"], 0.0);
}

#[test]
fn bench_says_when_descriptors_are_too_few() {
    let output = barrage().args(["bench", "--rooms", "100000000", "--duration", "1"]).output().expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("barrage: error:") && stderr.contains("open files"), "{stderr}");
}

/// Without --heartbeat, the heartbeat fits the window, so timers fire and
/// lateness is measured.
#[test]
fn bench_picks_a_heartbeat_that_fits_the_window() {
    let output =
        barrage().args(["bench", "--rooms", "5", "--rate", "5", "--duration", "1.5", "--json"]).output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert!(report["timers_fired"].as_u64().unwrap() > 0, "no timer fired in the window: {report}");
}

/// A heartbeat longer than the window: a warning, and `-` for lateness
/// (no timer fired, so none was measured), not 0.00.
#[test]
fn bench_says_dash_for_lateness_when_no_timer_fired() {
    let output = barrage()
        .args(["bench", "--rooms", "5", "--rate", "5", "--duration", "1", "--heartbeat", "45"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("is not shorter than the window"), "{stderr}");
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("engine"));
    let (header, row) = (lines.next().expect("a header"), lines.next().expect("a row"));
    let column = |name: &str| {
        let index = header.split_whitespace().position(|c| c == name).expect("a column");
        row.split_whitespace().nth(index).expect("a cell").to_string()
    };
    assert_eq!(column("timers"), "0", "{stdout}");
    for name in ["p50ms", "p99ms"] {
        assert_eq!(column(name), "-", "{name} in\n{stdout}");
    }
    assert!(row.split_whitespace().filter(|cell| *cell == "-").count() >= 3, "{stdout}");
}

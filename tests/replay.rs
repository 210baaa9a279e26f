//! `barrage replay`: what `watch` recorded, shown again.
//!
//! The recording is made by the real `watch` against the simulator, so the
//! round trip covers the writer, the file and the reader together.

mod common;

use std::time::{Duration, Instant};

use common::process::*;

/// A recording of rooms 11 and 12: `watch --format json --count 80`.
fn record(dir: &TempDir) -> std::path::PathBuf {
    let serve = Serve::start(&["--rate", "100"]);
    let path = dir.path("recorded.jsonl");
    let output = path.to_str().unwrap();
    let finished = run_barrage(&[
        "watch",
        "--server",
        &serve.addr,
        "--format",
        "json",
        "--output",
        output,
        "--count",
        "80",
        "--log-level",
        "warn",
        "--resolve",
        "never",
        "--status-check",
        "0",
        "11",
        "12",
    ]);
    assert!(finished.status.success(), "recording: {}\n{}", finished.status, finished.stderr);
    assert_eq!(file_seen(&path).lines, 80);
    path
}

#[test]
fn a_recording_replays_as_json_byte_for_byte_and_as_text() {
    let dir = TempDir::new("replay-round-trip");
    let path = record(&dir);
    let recorded = std::fs::read_to_string(&path).unwrap();
    let file = path.to_str().unwrap();

    let json = run_barrage(&["replay", "--format", "json", file]);
    assert!(json.status.success(), "{}", json.stderr);
    assert_eq!(json.stdout, recorded, "the JSON replay of a recording is the recording");
    assert!(json.stderr.is_empty(), "{}", json.stderr);

    // Text: one line per message a person wants to see, each tagged with
    // its room; no colour in a pipe.
    let text = run_barrage(&["replay", file]);
    assert!(text.status.success(), "{}", text.stderr);
    let chats = file_seen(&path).rooms.values().map(|room| room.types.get("chatmsg").copied().unwrap_or(0)).sum();
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert!(lines.len() >= chats && chats > 0, "{} text lines for {chats} chats:\n{}", lines.len(), text.stdout);
    assert!(lines.iter().all(|l| l.starts_with("[11] ") || l.starts_with("[12] ")), "{}", text.stdout);
    assert!(!text.stdout.contains('\x1b'));

    // From stdin too.
    let piped = run_command(barrage(&["replay", "--format", "json", "-"]), recorded.as_bytes());
    assert_eq!(piped.stdout, recorded);
}

#[test]
fn filters_keep_only_the_rooms_and_types_asked_for() {
    let dir = TempDir::new("replay-filters");
    let path = record(&dir);
    let recorded = file_seen(&path);
    let filtered =
        run_barrage(&["replay", "--format", "json", "--rooms", "12", "--types", "chatmsg,dgb", path.to_str().unwrap()]);
    assert!(filtered.status.success(), "{}", filtered.stderr);
    let mut seen = Seen::default();
    for line in filtered.stdout.split_inclusive('\n') {
        seen.record(line);
    }
    assert_eq!(seen.rooms.keys().copied().collect::<Vec<_>>(), [12], "{}", seen.summary());
    let wanted = |seen: &Seen| seen.count(12, "chatmsg") + seen.count(12, "dgb");
    assert_eq!(seen.lines, wanted(&recorded), "{}", seen.summary());
    assert_eq!(wanted(&seen), seen.lines);
}

#[test]
fn a_malformed_line_is_reported_with_its_number_and_skipped() {
    let dir = TempDir::new("replay-malformed");
    let good = |ts: u64, text: &str| {
        format!(r#"{{"ts":{ts},"room":7,"type":"chatmsg","fields":{{"type":"chatmsg","nn":"a","txt":"{text}"}}}}"#)
    };
    let path = dir.path("damaged.jsonl");
    let lines = [
        good(1, "first"),
        "not json at all".to_string(),
        good(2, "third"),
        r#"{"ts":3,"room":7,"type":"chatmsg"}"#.to_string(),
        r#"{"ts":4,"room":7,"type":"chatmsg","fields":{"type":"dgb"}}"#.to_string(),
        good(5, "sixth"),
        r#"{"ts":6,"room":7,"type":"chatmsg","fie"#.to_string(),
    ];
    // The last line is cut short, as a crash would leave it: no newline.
    std::fs::write(&path, lines.join("\n")).unwrap();
    let file = path.to_str().unwrap();
    let replay = run_barrage(&["replay", file]);
    assert_eq!(replay.status.code(), Some(1), "{}", replay.stderr);
    assert_eq!(replay.stdout, "[7] a: first\n[7] a: third\n[7] a: sixth\n");
    let reports: Vec<&str> = replay.stderr.lines().collect();
    assert_eq!(
        reports,
        [
            format!("barrage: {file}:2: not JSON: expected ident; skipped"),
            format!("barrage: {file}:4: not a recorded message: missing field `fields`; skipped"),
            format!(
                "barrage: {file}:5: not a recorded message: \"type\" is \"chatmsg\" but fields hold \"dgb\"; skipped"
            ),
            format!("barrage: {file}:7: not JSON: EOF while parsing a string; skipped"),
            "barrage: error: 4 of 7 lines skipped as malformed".to_string(),
        ]
    );
}

/// `--speed 2`: lines 0.4 s apart in `ts` come 0.2 s apart; `--speed 1`
/// in real time. (Only the least time is checked: a busy machine may add,
/// never take away.)
#[test]
fn speed_paces_the_lines_by_their_receive_times() {
    let line = |ts: u64| {
        format!(
            "{{\"ts\":{ts},\"room\":7,\"type\":\"chatmsg\",\"fields\":{{\"type\":\"chatmsg\",\"nn\":\"a\",\"txt\":\"{ts}\"}}}}\n"
        )
    };
    let recording: String = [1_000, 1_400, 1_800].map(line).concat();
    for (speed, least) in [("2", Duration::from_millis(400)), ("1", Duration::from_millis(800))] {
        let started = Instant::now();
        let replay = run_command(barrage(&["replay", "--speed", speed, "-"]), recording.as_bytes());
        let took = started.elapsed();
        assert!(replay.status.success(), "{}", replay.stderr);
        assert_eq!(replay.stdout, "[7] a: 1000\n[7] a: 1400\n[7] a: 1800\n");
        assert!(took >= least, "--speed {speed} took {took:?}, less than {least:?}");
    }
}

#[test]
fn barrages_own_live_lines_are_a_type_to_select_without_a_warning() {
    let live = r#"{"ts":1,"room":7,"type":"barrage.live","fields":{"type":"barrage.live","rid":"7","status":"live","since":"1","source":"web"}}"#;
    let chat = r#"{"ts":2,"room":7,"type":"chatmsg","fields":{"type":"chatmsg","nn":"a","txt":"hi"}}"#;
    let recording = format!("{live}\n{chat}\n");
    let replay = run_command(
        barrage(&["replay", "--format", "json", "--types", "barrage.live,chat", "-"]),
        recording.as_bytes(),
    );
    assert!(replay.status.success(), "{}", replay.stderr);
    assert_eq!(replay.stdout, format!("{live}\n"));
    // Only the typo is warned about.
    let warning = replay.stderr.trim_end();
    assert!(warning.starts_with("barrage: warning: --types: unknown message type chat (kept"), "{warning}");
    assert_eq!(replay.stderr.lines().count(), 1, "{}", replay.stderr);
}

#[test]
fn a_malformed_lines_report_shows_control_characters_harmlessly() {
    // A key that retitles the terminal's window, escaped as JSON keeps it.
    let line = r#"{"ts":1,"room":7,"type":"chatmsg","fields":{"type":"chatmsg"},"\u001b]0;owned\u0007":1}"#;
    let replay = run_command(barrage(&["replay", "-"]), format!("{line}\n").as_bytes());
    assert_eq!(replay.status.code(), Some(1), "{}", replay.stderr);
    let report = replay.stderr.lines().next().unwrap();
    assert!(!replay.stderr.contains(['\x1b', '\x07']), "raw control bytes: {:?}", replay.stderr);
    assert!(report.starts_with("barrage: stdin:1: not a recorded message: unknown field `␛]0;owned␇`"), "{report}");
}

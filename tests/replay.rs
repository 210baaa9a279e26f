//! `barrage replay`: what `watch` recorded, shown again.
//!
//! The recording is made by the real `watch` against the simulator, so the
//! round trip covers the writer, the file and the reader together.

mod common;

use std::collections::BTreeMap;
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

// ----- `serve --replay`: a recording played to clients again ------------------------

/// What a watcher of the recorded rooms gets back: per room, in order, each
/// room message's `type` and `fields`. Left out, as `serve --replay` leaves
/// them out: the recorded session's replies and barrage's own lines.
type Rooms = BTreeMap<u64, Vec<(String, serde_json::Value)>>;

fn room_messages(jsonl: &str) -> Rooms {
    let mut rooms = Rooms::new();
    for value in jsonl.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()) {
        let kind = value["type"].as_str().unwrap_or_else(|| panic!("no type: {value}"));
        if ["loginres", "pingreq", "mrkl", "error"].contains(&kind) || kind.contains('.') {
            continue;
        }
        let room = value["room"].as_u64().unwrap_or_else(|| panic!("no room: {value}"));
        rooms.entry(room).or_default().push((kind.to_string(), value["fields"].clone()));
    }
    rooms
}

/// `watch --format json` of `rooms`, with `flags`, until it has written
/// `expected`'s number of room messages and each room's `loginres` and
/// `pingreq`: one more line (a duplicate, a recorded reply sent again) and
/// one expected is missing.
fn watch_again(flags: &[&str], expected: &Rooms, rooms: &[&str]) -> Finished {
    let count = (expected.values().map(Vec::len).sum::<usize>() + 2 * rooms.len()).to_string();
    let mut args = vec!["watch", "--format", "json", "--count", &count, "--log-level", "error"];
    args.extend(["--resolve", "never", "--status-check", "0"]);
    args.extend(flags);
    args.extend(rooms);
    let finished = run_barrage(&args);
    assert!(finished.status.success(), "watch again: {}\n{}", finished.status, finished.stderr);
    finished
}

/// Record with the real `watch`, serve the recording, watch it again:
/// every room message comes back once, in its room's order, with the same
/// fields.
#[test]
fn a_recording_served_again_comes_back_whole_and_in_order() {
    let dir = TempDir::new("serve-replay-recorded");
    let path = record(&dir);
    let recorded = std::fs::read_to_string(&path).unwrap();
    let expected = room_messages(&recorded);
    assert_eq!(expected.keys().copied().collect::<Vec<_>>(), [11, 12]);
    let serve = Serve::start(&["--replay", path.to_str().unwrap(), "--replay-start-rooms", "2"]);
    let again = watch_again(&["--server", &serve.addr], &expected, &["11", "12"]);
    assert_eq!(room_messages(&again.stdout), expected);
}

/// One recorded line: `fields` in the order given, `type` taken from them.
fn recorded_line(ts: u64, room: u64, fields: &[(&str, &str)]) -> String {
    let json = |text: &str| serde_json::to_string(text).unwrap();
    let kind = fields.iter().find(|(key, _)| *key == "type").map_or("", |(_, value)| value);
    let fields: Vec<String> = fields.iter().map(|(key, value)| format!("{}:{}", json(key), json(value))).collect();
    format!("{{\"ts\":{ts},\"room\":{room},\"type\":{},\"fields\":{{{}}}}}", json(kind), fields.join(","))
}

/// A recording written by hand: text STT must escape (`/`, `@`, quotes,
/// backslashes, line breaks, control and bidi characters, CJK, emoji), a
/// nested map, `type` in the middle, keys that need escaping, a long chat
/// line; lines the server leaves out; two malformed lines. Served over
/// TCP with frames cut up and bunched, and over wss: each room gets its
/// messages whole, in order, paced (`--speed 2`: 2 s of recording in no
/// less than 1 s), and a room not in the recording stays silent.
#[test]
fn a_hostile_recording_comes_back_field_for_field_under_faults_and_over_wss() {
    let dir = TempDir::new("serve-replay-hostile");
    let long = "注意保暖".repeat(500);
    let lines = [
        recorded_line(1_000, 21, &[("type", "loginres"), ("userid", "0")]),
        recorded_line(
            1_000,
            21,
            &[("type", "chatmsg"), ("rid", "21"), ("nn", "小老弟\"233\""), ("txt", "a/b@c\\d @S@A@= key@=value/ 🎉")],
        ),
        r#"{"ts":1100,"room":21,"type":"chatmsg","fie"#.to_string(),
        recorded_line(
            1_300,
            22,
            &[
                ("type", "dgb"),
                ("nn", "\x1b]0;title\x07"),
                ("gfn", "\u{202e}evil"),
                ("a@b/c", "x"),
                ("txt", "line\nbreak"),
            ],
        ),
        recorded_line(1_500, 21, &[("type", "barrage.live"), ("status", "live"), ("source", "rss")]),
        recorded_line(1_800, 22, &[("type", "uenter"), ("nn", ""), ("el", "eid@AA=1@AS@Setp@AA=1@AS@S/")]),
        r#"{"ts":1900,"room":21,"type":"chatmsg","fields":{"type":"dgb"}}"#.to_string(),
        recorded_line(2_000, 22, &[("type", "mrkl")]),
        recorded_line(
            2_200,
            21,
            &[("hintInfo", "sec@A=1@Sname@A=全站榜@S"), ("type", "anchor_rank2505_change"), ("ts", "1790519460660")],
        ),
        recorded_line(3_000, 21, &[("type", "chatmsg"), ("rid", "21"), ("nn", "长"), ("txt", &long)]),
    ];
    let path = dir.path("hostile.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let file = path.to_str().unwrap();
    // Lines 3 and 7 are malformed: what is left is what comes back.
    let well_formed: Vec<&str> = [0, 1, 3, 4, 5, 7, 8, 9].map(|i| lines[i].as_str()).to_vec();
    let expected = room_messages(&well_formed.join("\n"));
    assert_eq!(expected.values().map(Vec::len).collect::<Vec<_>>(), [3, 2]);

    let cert = dir.path("cert.pem");
    let cert = cert.to_str().unwrap();
    let replay = ["--replay", file, "--speed", "2", "--replay-start-rooms", "3"];
    for transport in ["tcp", "wss"] {
        let (serve, watch_flags) = if transport == "tcp" {
            let serve = Serve::start(&[&replay[..], &["--fragment", "--coalesce"]].concat());
            let flags = vec!["--server".to_string(), serve.addr.clone()];
            (serve, flags)
        } else {
            let serve = Serve::start(&[&replay[..], &["--tls", "--ws", "--tls-cert-out", cert]].concat());
            let flags = ["--server", &format!("wss://{}/", serve.addr), "--ca-file", cert].map(str::to_string);
            (serve, flags.to_vec())
        };
        let watch_flags: Vec<&str> = watch_flags.iter().map(String::as_str).collect();
        let asked = Instant::now();
        let again = watch_again(&watch_flags, &expected, &["21", "22", "23"]);
        let took = asked.elapsed();
        assert_eq!(room_messages(&again.stdout), expected, "over {transport}");
        assert!(took >= Duration::from_secs(1), "over {transport}: played in {took:?}");

        // The malformed lines were named, with their numbers, as they were read.
        let log = serve.wait_log("the malformed lines", |log| log.contains(&format!("{file}:7: ")));
        let reports: Vec<&str> = log.lines().filter(|line| line.contains(file)).collect();
        assert_eq!(reports.len(), 2, "{log}");
        assert!(reports[0].ends_with(&format!("{file}:3: not JSON: EOF while parsing a string; skipped")), "{log}");
        assert!(
            reports[1].ends_with(&format!(
                "{file}:7: not a recorded message: \"type\" is \"chatmsg\" but fields hold \"dgb\"; skipped"
            )),
            "{log}"
        );
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

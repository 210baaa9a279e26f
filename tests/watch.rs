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
//! The harness (processes, the line checks, waits with deadlines) is in
//! `common::process`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use barrage::monitor::shard::Shard;
use common::process::*;

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
    watch.assert_exactly_once(&ROOMS, AT_LEAST, fault);
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
        ROOMS.iter().all(|room| log.contains(&format!("room {room}: closed (protocol error: ")))
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
        assert!(stderr.contains(&format!("shutting down (SIG{signal})")), "SIG{signal}: {stderr}");
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
    watch.wait_stderr("the reload logged", DEADLINE, |log| log.contains("1 room added, 1 removed"));
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
        watch.wait_until_loop_idle(IDLE_FOR, DEADLINE);
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
        "--duration",
        "--count",
        "--color",
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

/// A shard that the config leaves without rooms is no mistake (the other
/// copies have them, and a supervisor would only restart it into the same
/// state): it runs idle and says so once; a SIGHUP with rooms for it
/// starts them; SIGTERM ends it with exit 0.
#[test]
fn an_empty_shard_runs_idle_until_a_sighup_brings_it_rooms() {
    let shard = Shard { index: 1, count: 2 };
    // The split the daemon makes, by the function it makes it with.
    let other = (1..=100).find(|&room| !shard.contains(room)).expect("a room of shard 0/2");
    let mine = (1..=100).find(|&room| shard.contains(room)).expect("a room of shard 1/2");
    let dir = TempDir::new("empty-shard");
    let sim = InProcessSim::start(50.0);
    let config = dir.path("watch.toml");
    write_atomically(&config, &format!("rooms = [{other}]\nservers = [\"{}\"]\n", sim.addr));
    let shard_flag = shard.to_string();
    let args = ["--config", config.to_str().unwrap(), "--shard", &shard_flag, "--metrics", "127.0.0.1:0"];
    let mut watch = Watch::start(&args);
    let idle = format!("shard {shard} has none of the configured rooms: running idle");
    watch.wait_stderr("the idle line", DEADLINE, |log| log.contains(&idle));
    // An answer from /rooms: the loop runs (and SIGHUP is handled), with no room.
    let rooms = http_get(watch.metrics_addr(), "/rooms");
    assert_eq!(rooms.split("\r\n\r\n").nth(1).map(str::trim), Some("[]"), "{rooms}\n{}", watch.report());
    watch.assert_running();

    write_atomically(&config, &format!("rooms = [{other}, {mine}]\nservers = [\"{}\"]\n", sim.addr));
    send_signal(&watch.child, "HUP");
    watch.wait_for(&format!("room {mine}'s messages"), DEADLINE, |seen| seen.messages(mine) >= 5);
    watch.wait_stderr("the reload", DEADLINE, |log| log.contains("SIGHUP: reloaded") && log.contains("1 room added"));
    let (status, _) = watch.stop_with("TERM");
    assert!(status.success(), "exit status {status}\n{}", watch.report());
    watch.read_to_end(DEADLINE);
    assert_eq!(watch.seen.messages(other), 0, "room {other} is shard 0/2's");
    assert_contiguous(&watch.seen.room(mine).cids, Some(1), &format!("room {mine} from its start"));
    assert_eq!(watch.stderr().matches(&idle).count(), 1, "said once\n{}", watch.report());
    sim.wait_stats(&format!("room {mine}'s logout"), DEADLINE, |s| s.logouts == 1);
}

// ----- --metrics ------------------------------------------------------------------------

/// `--metrics localhost:0` (a name, resolved at start) serves /metrics and
/// /rooms from the daemon's own loop; the log says where.
#[test]
fn metrics_flag_serves_prometheus_text_and_room_json() {
    let serve = Serve::start(&["--rate", "50"]);
    let mut watch = Watch::start(&["--server", &serve.addr, "--metrics", "localhost:0", "7", "8"]);
    watch.wait_for("messages in both rooms", DEADLINE, |seen| seen.messages(7) >= 5 && seen.messages(8) >= 5);
    let addr = watch.metrics_addr();
    let http_get = |path: &str| http_get(addr, path);
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

// ----- 11. stopping by itself: --duration, --count ---------------------------------------

/// `--duration 1` stops like SIGTERM: every room logs out, everything is
/// written, exit 0.
#[test]
fn duration_stops_gracefully_with_a_logout_from_every_room() {
    const ROOMS: [u64; 2] = [101, 102];
    let sim = InProcessSim::start(50.0);
    let addr = sim.addr.to_string();
    let mut watch = Watch::start(&["--server", &addr, "--duration", "1", "101", "102"]);
    watch.wait_for("messages in both rooms", DEADLINE, |seen| ROOMS.iter().all(|&room| seen.messages(room) >= 5));
    let status = wait_exit(&mut watch.child, DEADLINE).unwrap_or_else(|| panic!("still running\n{}", watch.report()));
    assert!(status.success(), "exit status {status}\n{}", watch.report());
    watch.read_to_end(DEADLINE);
    for room in ROOMS {
        assert_contiguous(&watch.seen.room(room).cids, Some(1), &format!("room {room} until the duration ended"));
    }
    sim.wait_stats("a logout from every room", DEADLINE, |s| s.logouts == ROOMS.len() as u64);
    watch.wait_stderr("the reason", DEADLINE, |log| log.contains("shutting down (the duration is over)"));
}

/// `--count 40 --types chatmsg`: exactly 40 chat lines, then a graceful stop.
#[test]
fn count_writes_exactly_that_many_messages_then_stops_gracefully() {
    let sim = InProcessSim::start(200.0);
    let addr = sim.addr.to_string();
    let mut watch = Watch::start(&["--server", &addr, "--types", "chatmsg", "--count", "40", "103", "104"]);
    let status = wait_exit(&mut watch.child, DEADLINE).unwrap_or_else(|| panic!("still running\n{}", watch.report()));
    assert!(status.success(), "exit status {status}\n{}", watch.report());
    watch.read_to_end(DEADLINE);
    let lines = watch.seen.lines;
    assert_eq!(lines, 40, "{}", watch.report());
    assert!(watch.seen.rooms.values().all(|room| room.types.keys().all(|t| t == "chatmsg")));
    sim.wait_stats("a logout from both rooms", DEADLINE, |s| s.logouts == 2);
    assert!(watch.stderr().contains("shutting down (40 messages written)"), "{}", watch.report());
}

/// `--count 1`: the reason reads as English.
#[test]
fn count_of_one_stops_after_one_message_and_says_so_in_the_singular() {
    let sim = InProcessSim::start(200.0);
    let addr = sim.addr.to_string();
    let mut watch = Watch::start(&["--server", &addr, "--types", "chatmsg", "--count", "1", "105"]);
    let status = wait_exit(&mut watch.child, DEADLINE).unwrap_or_else(|| panic!("still running\n{}", watch.report()));
    assert!(status.success(), "exit status {status}\n{}", watch.report());
    watch.read_to_end(DEADLINE);
    let lines = watch.seen.lines;
    assert_eq!(lines, 1, "{}", watch.report());
    assert!(watch.stderr().contains("shutting down (1 message written)"), "{}", watch.report());
}

// ----- 12. what the log says -------------------------------------------------------------

/// A reload that changes a setting other than rooms says it waits for a
/// restart; the plurals are right.
#[test]
fn sighup_names_the_settings_that_need_a_restart() {
    let dir = TempDir::new("sighup-settings");
    let sim = InProcessSim::start(20.0);
    let config = dir.path("watch.toml");
    write_atomically(&config, &format!("rooms = [111]\nservers = [\"{}\"]\nheartbeat = 45\n", sim.addr));
    let mut watch = Watch::start(&["--config", config.to_str().unwrap()]);
    watch.wait_for("messages in room 111", DEADLINE, |seen| seen.messages(111) >= 3);
    assert!(watch.stderr().contains("watching 1 room via"), "{}", watch.report());

    let text = format!("rooms = [111, 112]\nservers = [\"{}\"]\nheartbeat = 30\nstatus_interval = 10\n", sim.addr);
    write_atomically(&config, &text);
    send_signal(&watch.child, "HUP");
    watch.wait_stderr("the reload", DEADLINE, |log| log.contains("1 room added, 0 removed"));
    watch.wait_stderr("the settings named", DEADLINE, |log| {
        log.contains("SIGHUP: heartbeat, status_interval changed in") && log.contains("restart to apply them")
    });
    watch.wait_for("room 112's messages", DEADLINE, |seen| seen.messages(112) >= 3);
}

/// The output's directory is gone when SIGHUP asks for a reopen: the error
/// says so, and nothing claims the output was reopened; writing goes on to
/// the old file.
#[test]
fn a_failed_reopen_is_not_reported_as_a_reopen() {
    let dir = TempDir::new("reopen-fails");
    let sim = InProcessSim::start(50.0);
    std::fs::create_dir(dir.path("logs")).unwrap();
    let output = dir.path("logs").join("out.jsonl");
    let addr = sim.addr.to_string();
    let mut watch = Watch::start(&["--server", &addr, "--output", output.to_str().unwrap(), "121"]);
    poll_until("lines in the output", DEADLINE, || complete_lines(&output).len() >= 5);
    let moved = dir.path("moved");
    std::fs::rename(dir.path("logs"), &moved).unwrap();
    send_signal(&watch.child, "HUP");
    watch.wait_stderr("the failed reopen", DEADLINE, |log| log.contains("could not reopen"));
    let moved_output = moved.join("out.jsonl");
    let before = complete_lines(&moved_output).len();
    poll_until("more lines in the old file", DEADLINE, || complete_lines(&moved_output).len() >= before + 10);
    let (status, _) = watch.stop_with("TERM");
    assert!(status.success(), "{}", watch.report());
    let log = watch.stderr();
    assert!(!log.contains("output reopened"), "a reopen claimed:\n{log}");
    assert!(!log.contains("SIGHUP: output reopened"), "{log}");
}

/// `--output` on a FIFO nobody reads yet: the daemon starts (and says so)
/// without waiting for a reader, and the reader, once there, gets lines.
#[test]
fn a_fifo_without_a_reader_does_not_hold_up_the_start() {
    use std::io::BufRead;
    let dir = TempDir::new("fifo");
    let fifo = dir.path("out.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let sim = InProcessSim::start(50.0);
    let addr = sim.addr.to_string();
    let mut watch = Watch::start(&["--server", &addr, "--output", fifo.to_str().unwrap(), "131"]);
    watch.wait_stderr("the start logged with no reader on the FIFO", DEADLINE, |log| {
        log.contains("watching 1 room via")
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let reader_path = fifo.clone();
    thread::spawn(move || {
        let file = std::fs::File::open(reader_path).expect("open the FIFO");
        for line in std::io::BufReader::new(file).lines().take(5) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    for _ in 0..5 {
        let line = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("no line through the FIFO\n{}", watch.report()));
        parse_line(&format!("{line}\n"));
    }
    let (status, _) = watch.stop_with("TERM");
    println!("exit after the FIFO's reader left: {status}");
}

/// A --types name Douyu never sent is warned about once, and still used.
#[test]
fn an_unknown_type_is_warned_about_once() {
    let serve = Serve::start(&["--rate", "50"]);
    let mut watch = Watch::start(&["--server", &serve.addr, "--types", "chat,chatmsg", "141"]);
    watch.wait_for("chat lines", DEADLINE, |seen| seen.count(141, "chatmsg") >= 5);
    let log = watch.stderr();
    assert_eq!(log.matches("unknown message type chat (kept").count(), 1, "{log}");
    assert!(!log.contains("chatmsg (kept"), "{log}");
}

// ----- 13. open files ---------------------------------------------------------------------

/// `watch` under a hard limit of 40 open files, with 60 rooms, says once at
/// start that they cannot fit; under a soft limit of 30 with room above
/// it, it raises the soft limit and has nothing to say.
#[test]
fn the_open_file_limit_is_raised_and_a_shortfall_said_once() {
    let rooms: Vec<String> = (1..=60).map(|room: u64| room.to_string()).collect();
    let limited = |limit: &str| {
        let mut command = std::process::Command::new("prlimit");
        command.arg(format!("--nofile={limit}")).arg(env!("CARGO_BIN_EXE_barrage"));
        command.args(["watch", "--server", "127.0.0.1:1", "--duration", "0.5", "--format", "json"]);
        command.args(&rooms);
        run_command(command, b"")
    };
    let tight = limited("40:40");
    assert!(tight.status.success(), "{}\n{}", tight.status, tight.stderr);
    assert_eq!(tight.stderr.matches("60 rooms need about").count(), 1, "{}", tight.stderr);
    assert!(tight.stderr.contains("the hard limit is 40"), "{}", tight.stderr);
    let raised = limited("30:4096");
    assert!(raised.status.success(), "{}\n{}", raised.status, raised.stderr);
    assert!(!raised.stderr.contains("need about"), "the soft limit was not raised:\n{}", raised.stderr);
}

//! Output that is never torn and a stop that is clean whatever the reader
//! does: `barrage watch`, the real binary, against a full disk, a slow
//! pipe, a pipe whose reader leaves, and messages still in the sockets
//! when the signal comes.
//!
//! A full disk is a file size limit (`RLIMIT_FSIZE`, set on the running
//! process with `prlimit`): a write that crosses it is cut short there,
//! and the next one fails with EFBIG, just as a write that fills a disk
//! is cut short and the next one fails with ENOSPC.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use rlimit::Resource;

use common::process::*;

/// Limits the size of any file `pid` writes to `bytes` (soft limit only).
fn limit_file_size(pid: u32, bytes: u64) {
    let mut hard = 0;
    rlimit::prlimit(pid as i32, Resource::FSIZE, None, Some((&mut 0, &mut hard))).expect("read RLIMIT_FSIZE");
    rlimit::prlimit(pid as i32, Resource::FSIZE, Some((bytes, hard)), None).expect("set RLIMIT_FSIZE");
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Every room's cids across `files`, in order, must be one unbroken run
/// from 1: nothing lost, nothing written twice, whatever file it went to.
fn assert_exactly_once_across(files: &[&Seen], rooms: &[u64]) {
    for &room in rooms {
        let cids: Vec<u64> = files.iter().flat_map(|seen| seen.room(room).cids.iter().copied()).collect();
        assert_contiguous(&cids, Some(1), &format!("room {room} across {} files", files.len()));
    }
}

/// The disk fills in the middle of a line; the operator deletes the file to
/// free space and sends SIGHUP. The old file (still reachable through a
/// hard link here) must end at its last complete line, and the line that
/// was cut goes whole into the new file: every message once, in one file.
#[test]
fn a_line_cut_short_by_a_full_disk_goes_whole_to_the_new_file_after_a_reopen() {
    const ROOMS: [u64; 2] = [101, 102];
    let dir = TempDir::new("full-disk-reopen");
    let output = dir.path("out.jsonl");
    let old = dir.path("old.jsonl");
    let serve = Serve::start(&["--rate", "100"]);
    let mut watch = Watch::start(&["--server", &serve.addr, "--output", output.to_str().unwrap(), "101", "102"]);
    poll_until("20 lines in the output file", DEADLINE, || complete_lines(&output).len() >= 20);

    // The disk is nearly full: room for a few more lines and part of one.
    limit_file_size(watch.child.id(), file_len(&output) + 2_000);
    watch.wait_stderr("a failed write", DEADLINE, |log| log.contains("writing output failed"));
    let stuck_at = file_len(&output);
    std::fs::hard_link(&output, &old).expect("keep the old file");
    std::fs::remove_file(&output).expect("delete the output file");
    send_signal(&watch.child, "HUP");
    // The new file starts empty, below the limit.
    poll_until("5 lines in the new file", DEADLINE, || complete_lines(&output).len() >= 5);
    limit_file_size(watch.child.id(), u64::MAX);
    poll_until("50 lines in the new file", DEADLINE, || complete_lines(&output).len() >= 50);

    let (status, _) = watch.stop_with("TERM");
    assert!(status.success(), "exit status {status}\n{}", watch.report());
    let old_bytes = std::fs::read(&old).unwrap();
    assert!(old_bytes.len() as u64 <= stuck_at, "the old file grew after the reopen");
    assert!(old_bytes.ends_with(b"\n"), "the old file ends inside a line: {:?}", tail(&old_bytes));
    let (old_seen, new_seen) = (file_seen(&old), file_seen(&output));
    assert_exactly_once_across(&[&old_seen, &new_seen], &ROOMS);
}

/// The disk is full when the stop comes: the file must end at a line end
/// (the cut line taken back), the exit status says messages were left, and
/// the message says how many, in whole messages.
#[test]
fn a_full_disk_at_exit_leaves_whole_lines_and_reports_the_messages_not_written() {
    let dir = TempDir::new("full-disk-exit");
    let output = dir.path("out.jsonl");
    let serve = Serve::start(&["--rate", "100"]);
    let mut watch = Watch::start(&["--server", &serve.addr, "--output", output.to_str().unwrap(), "103", "104"]);
    poll_until("20 lines in the output file", DEADLINE, || complete_lines(&output).len() >= 20);
    limit_file_size(watch.child.id(), file_len(&output) + 2_000);
    watch.wait_stderr("a failed write", DEADLINE, |log| log.contains("writing output failed"));

    let (status, took) = watch.stop_with("TERM");
    assert_eq!(status.code(), Some(1), "messages were left unwritten\n{}", watch.report());
    assert!(took < SHUTDOWN_LIMIT, "the exit took {took:?}");
    let bytes = std::fs::read(&output).unwrap();
    assert!(bytes.ends_with(b"\n"), "the file ends inside a line: {:?}", tail(&bytes));
    let seen = file_seen(&output);
    assert_exactly_once_across(&[&seen], &[103, 104]);
    let (messages, _) = unwritten_report(&watch.stderr()).unwrap_or_else(|| panic!("no report\n{}", watch.report()));
    assert!(messages > 0, "{}", watch.stderr());
}

/// SIGTERM while stdout goes to a reader that takes ~900 lines a second:
/// the stop keeps its time limit, the pipe holds only whole lines (the
/// last one too), and what was not written is reported in messages.
#[test]
fn stopping_behind_a_slow_reader_ends_on_a_whole_line_and_reports_the_rest() {
    let sim = InProcessSim::start(1000.0);
    let addr = sim.addr.to_string();
    let mut watch = Watch::start(&["--server", &addr, "105", "106", "107"]);
    watch.wait_for("messages in every room", DEADLINE, |seen| [105, 106, 107].iter().all(|&r| seen.messages(r) >= 50));
    watch.pace_us.store(1_100, std::sync::atomic::Ordering::Relaxed);
    // Let the output back up behind the slow reader: megabytes unread.
    let backed_up = Instant::now();
    poll_until("the output backed up", DEADLINE, || backed_up.elapsed() >= Duration::from_secs(2));

    let (status, took) = watch.stop_with("TERM");
    watch.pace_us.store(0, std::sync::atomic::Ordering::Relaxed);
    // Reading on to the end checks every line, the last one included.
    watch.read_to_end(DEADLINE);
    assert!(took < SHUTDOWN_LIMIT, "the exit took {took:?}\n{}", watch.report());
    assert_eq!(status.code(), Some(1), "messages were left unwritten\n{}", watch.report());
    let (messages, bytes) =
        unwritten_report(&watch.stderr()).unwrap_or_else(|| panic!("no report of what was left\n{}", watch.report()));
    assert!(messages > 100 && bytes > messages * 100, "{messages} messages, {bytes} bytes");
    for room in [105, 106, 107] {
        assert_contiguous(&watch.seen.room(room).cids, Some(1), &format!("room {room}"));
    }
    let stats = sim.wait_stats("a logout from every room", DEADLINE, |s| s.logouts >= 3);
    assert_eq!(stats.logouts, 3);
}

/// `barrage watch | head -n 5`: the reader leaves after five lines. That
/// is a stop like SIGTERM: every room logs out, one line says the reader
/// left, nothing is logged as an error, and the exit status is 0.
#[test]
fn a_reader_that_leaves_is_a_clean_stop_with_a_logout_from_every_room() {
    let sim = InProcessSim::start(100.0);
    let mut child = barrage(&[
        "watch",
        "--format",
        "json",
        "--status-interval",
        "0",
        "--resolve",
        "never",
        "--status-check",
        "0",
        "--server",
        &sim.addr.to_string(),
        "111",
        "112",
        "113",
        "114",
        "115",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn watch");
    let mut stderr = child.stderr.take().unwrap();
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    {
        let mut head = BufReader::new(child.stdout.take().unwrap());
        for _ in 0..5 {
            let mut line = String::new();
            head.read_line(&mut line).expect("a line");
        }
        // `head` exits: the read end of the pipe closes here.
    }
    let status = wait_exit(&mut child, DEADLINE).expect("watch did not stop after its reader left");
    let log = stderr_reader.join().unwrap();
    assert!(status.success(), "exit status {status}\n{log}");
    assert_eq!(log.matches("the output's reader left").count(), 1, "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    let stats = sim.wait_stats("a logout from every room", DEADLINE, |s| s.logouts >= 5);
    assert_eq!(stats.logouts, 5, "{stats:?}");
}

/// "12 messages (of 4567 bytes) could not be written …" → (12, 4567).
fn unwritten_report(log: &str) -> Option<(u64, u64)> {
    let line = log.lines().find(|line| line.contains("could not be written"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| w.starts_with("message"))?;
    let messages = words.get(at - 1)?.parse().ok()?;
    let bytes = words.get(at + 2)?.parse().ok()?;
    Some((messages, bytes))
}

/// The last bytes of a file, for a failure message.
fn tail(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(80)..]).into_owned()
}

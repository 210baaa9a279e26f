//! A recording played to the rooms (`barrage serve --replay`): what
//! `watch --format json` wrote, sent again, in order and in time, so that a
//! recorded session becomes an offline test case.
//!
//! Two halves, as for all blocking work here (sockets stay on the loop):
//!
//! - **The reader**, a helper thread (a file read may block). It reads the
//!   recording line by line, checks each with [`recording::read_line`]
//!   (a malformed line is logged with its line number and skipped), leaves
//!   out what the server makes itself (see [`is_room_message`]), and frames
//!   each message's STT body once. It hands the lines over in batches and
//!   reads the next batch only when the loop asks for it.
//! - **The [`Playback`]**, on the loop thread, in the hub: it holds the
//!   lines handed over, and the traffic tick takes those that are due
//!   ([`recording::Pace`]) and sends each to the clients in its room then.
//!
//! Memory is bounded whatever the file's size: the loop asks for a batch
//! only when it holds less than one ([`BATCH_LINES`] lines or
//! [`BATCH_BYTES`] of frames, whichever comes first; a line may take a
//! batch over by up to [`MAX_LINE`]), so at most about two batches are in
//! memory at once.
//!
//! The playback starts once clients are in [`SimReplay::start_rooms`]
//! rooms: the first line is due then. A room's messages go to whoever is
//! in it when they are due, as in a live room; with nobody there they are
//! counted and go nowhere. At the end of the recording the rooms fall
//! silent, and the server goes on serving.

use crate::monitor::visible::visible;
use crate::plural::plural;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::douyu::frame::{self, SERVER_TO_CLIENT};
use crate::reactor::{LoopSender, Reactor};
use crate::recording::{self, Pace};
use crate::settings::SettingError;

/// The lines the reader hands over at once, at most.
pub const BATCH_LINES: usize = 1024;
/// The frame bytes the reader hands over at once: a batch ends when it
/// reaches this many (or [`BATCH_LINES`]).
pub const BATCH_BYTES: usize = 1 << 20;
/// The longest recorded line read: longer ones are skipped as malformed.
/// (A Douyu client refuses bodies over 1 MiB; JSON escaping may make one
/// up to six times as long.)
pub const MAX_LINE: usize = 8 << 20;

/// `SimConfig::replay`: which recording, and how it is played.
#[derive(Clone, Debug, PartialEq)]
pub struct SimReplay {
    /// JSON lines as `watch --format json` writes them.
    pub path: PathBuf,
    /// How many times as fast as it was recorded (1: real time).
    pub speed: f64,
    /// The playback starts once clients are in this many rooms (at least 1).
    pub start_rooms: usize,
}

impl SimReplay {
    /// Played in real time, from the first room joined.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SimReplay { path: path.into(), speed: 1.0, start_rooms: 1 }
    }

    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err(SettingError::new("speed", format!("speed must be above 0 (got {})", self.speed)));
        }
        if self.start_rooms == 0 {
            return Err(SettingError::new("replay_start_rooms", "replay_start_rooms must be at least 1"));
        }
        Ok(())
    }
}

/// Whether a recorded message is one a room sends, and so one to play.
/// Left out: the replies of the recorded session (`loginres`, `pingreq`,
/// `mrkl`, `error`), which the simulator makes for each session it serves,
/// and barrage's own lines (`barrage.live`: Douyu's types have no dot),
/// which never came over the wire.
pub fn is_room_message(msg_type: &str) -> bool {
    !matches!(msg_type, "loginres" | "pingreq" | "mrkl" | "error") && !msg_type.contains('.')
}

/// One recorded message, framed, waiting to be played.
pub(crate) struct Line {
    ts_ms: u64,
    pub(crate) room: u64,
    pub(crate) frame: Vec<u8>,
}

/// What the reader hands the loop.
pub(crate) enum Fed {
    /// The next lines, in file order; never empty.
    Lines(Vec<Line>),
    /// The recording ended (or could not be read on): what was read.
    End(ReadTally),
}

/// What the reader read, for the last word.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReadTally {
    lines: u64,
    malformed: u64,
    /// Session replies and barrage's own lines, left out.
    left_out: u64,
    /// A read error ended the recording early.
    cut_short: bool,
}

/// The loop's half: the lines handed over and when they are due.
pub(crate) struct Playback {
    start_rooms: usize,
    pace: Pace,
    /// When the first line was due; `None` until clients are in `start_rooms` rooms.
    started: Option<Instant>,
    queue: VecDeque<Line>,
    /// The frame bytes in `queue`.
    queued_bytes: usize,
    /// Asks the reader for the next batch.
    more: mpsc::Sender<()>,
    /// A batch was asked for and has not come yet.
    asked: bool,
    /// The reader's last word, once it came.
    ended: Option<ReadTally>,
    /// The end was logged.
    finished: bool,
    /// The next line is due over [`LONG_WAIT`] away, and the log said so.
    long_wait_said: bool,
}

/// A gap in the recording's `ts` this long (a clock step, a day between
/// sessions) is said in the log, or the playback would seem stuck.
const LONG_WAIT: Duration = Duration::from_secs(3600);

/// Opens `replay`'s recording; the error names it. (A directory opens,
/// and fails only at the first read: it is refused here.)
pub fn open(replay: &SimReplay) -> io::Result<File> {
    let cannot =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot read the recording {}: {e}", replay.path.display()));
    let file = File::open(&replay.path).map_err(cannot)?;
    if file.metadata().map_err(cannot)?.is_dir() {
        return Err(cannot(io::Error::new(io::ErrorKind::IsADirectory, "it is a directory")));
    }
    Ok(file)
}

impl Playback {
    /// Starts the reader of `file` (`replay`'s recording, [`open`]ed), which
    /// hands its lines to `feed` on the loop thread (that callback passes
    /// them to [`Playback::feed`]).
    pub(crate) fn start<F>(reactor: &mut Reactor, replay: &SimReplay, file: File, feed: F) -> io::Result<Playback>
    where
        F: FnMut(&mut Reactor, Fed) + 'static,
    {
        let name = replay.path.display().to_string();
        let sender = reactor.channel(feed);
        let (more, asks) = mpsc::channel();
        std::thread::Builder::new()
            .name("replay-reader".to_string())
            .spawn(move || read_recording(BufReader::new(file), &name, &sender, &asks))?;
        Ok(Playback::new(replay, more))
    }

    /// A playback whose reader listens on `more`, and sends its first batch unasked.
    fn new(replay: &SimReplay, more: mpsc::Sender<()>) -> Playback {
        Playback {
            start_rooms: replay.start_rooms,
            pace: Pace::new(replay.speed),
            started: None,
            queue: VecDeque::new(),
            queued_bytes: 0,
            more,
            asked: true,
            ended: None,
            finished: false,
            long_wait_said: false,
        }
    }

    /// Whether the playback waits for clients to join (see [`Playback::rooms_joined`]).
    pub(crate) fn waiting(&self) -> bool {
        self.started.is_none()
    }

    /// Clients are now in `rooms` rooms: the playback starts at `now` if
    /// that is enough (and it had not started).
    pub(crate) fn rooms_joined(&mut self, rooms: usize, now: Instant) {
        if self.started.is_none() && rooms >= self.start_rooms {
            log::info!("clients in {}: playing the recording", plural(rooms as u64, "room"));
            self.started = Some(now);
        }
    }

    /// Takes what the reader handed over.
    pub(crate) fn feed(&mut self, fed: Fed) {
        match fed {
            Fed::Lines(lines) => {
                self.queued_bytes += lines.iter().map(|line| line.frame.len()).sum::<usize>();
                self.queue.extend(lines);
                self.asked = false;
            }
            Fed::End(tally) => self.ended = Some(tally),
        }
    }

    /// The next line due by `now`, if any; asks the reader for more when
    /// few are left.
    pub(crate) fn next_due(&mut self, now: Instant) -> Option<Line> {
        let line = self.pop_due(now);
        self.ask_for_more();
        line
    }

    fn pop_due(&mut self, now: Instant) -> Option<Line> {
        let started = self.started?;
        let head = self.queue.front()?;
        let due = self.pace.due(head.ts_ms, started);
        if due > now {
            if !self.long_wait_said && due.duration_since(now) > LONG_WAIT {
                let hours = due.duration_since(now).as_secs_f64() / 3600.0;
                log::info!(
                    "the next recorded line (ts {}) is due in {hours:.1} h: the playback waits for it",
                    head.ts_ms
                );
                self.long_wait_said = true;
            }
            return None;
        }
        self.long_wait_said = false;
        let line = self.queue.pop_front()?;
        self.queued_bytes -= line.frame.len();
        Some(line)
    }

    /// Asks for the next batch once less than one is left: so at most two
    /// are held (see the module docs).
    fn ask_for_more(&mut self) {
        let low = self.queue.len() < BATCH_LINES && self.queued_bytes < BATCH_BYTES;
        if low && !self.asked && self.ended.is_none() {
            // An error means the reader is gone; its last word says why.
            let _ = self.more.send(());
            self.asked = true;
        }
    }

    /// Once, when every line is played: the reader's tally, for the log.
    pub(crate) fn take_end(&mut self) -> Option<ReadTally> {
        let tally = self.ended.filter(|_| self.queue.is_empty() && !self.finished)?;
        self.finished = true;
        Some(tally)
    }
}

impl ReadTally {
    /// The end of the playback, logged.
    pub(crate) fn log(&self, played: u64, unheard: u64) {
        let ReadTally { lines, malformed, left_out, cut_short } = *self;
        let end = if cut_short { "the recording could not be read to its end" } else { "the recording is played" };
        log::info!(
            "{end}: {} played ({unheard} while nobody was in their room) of {}; \
             skipped: {malformed} malformed, {left_out} session replies or barrage's own; the rooms are silent now",
            plural(played, "message"),
            plural(lines, "line")
        );
    }
}

/// The reader thread: see the module docs. Ends at the end of the file,
/// at a read error, or when the loop is gone.
fn read_recording(mut reader: impl BufRead, name: &str, feed: &LoopSender<Fed>, asks: &mpsc::Receiver<()>) {
    let mut tally = ReadTally::default();
    let (mut batch, mut bytes) = (Vec::new(), 0);
    let mut text = Vec::new();
    loop {
        let number = tally.lines + 1;
        match read_bounded_line(&mut reader, &mut text) {
            Ok(LineRead::End) => break,
            Ok(LineRead::TooLong) => {
                log::warn!("{name}:{number}: longer than {MAX_LINE} bytes; skipped");
                tally.lines += 1;
                tally.malformed += 1;
                continue;
            }
            Ok(LineRead::Line) => tally.lines += 1,
            Err(e) => {
                log::warn!("{name}:{number}: cannot read on: {e}");
                tally.cut_short = true;
                break;
            }
        }
        let recorded = std::str::from_utf8(&text)
            .map_err(|e| format!("not UTF-8 ({e})"))
            .and_then(|line| recording::read_line(line).map_err(|e| e.to_string()));
        let recorded = match recorded {
            Ok(recorded) => recorded,
            Err(why) => {
                // serde quotes the line's unknown keys: recorded server text.
                log::warn!("{name}:{number}: {}; skipped", visible(&why.to_string()));
                tally.malformed += 1;
                continue;
            }
        };
        if !is_room_message(recorded.message.msg_type()) {
            tally.left_out += 1;
            continue;
        }
        let mut frame = Vec::new();
        frame::encode_packet(&mut frame, SERVER_TO_CLIENT, &recorded.message.to_body());
        bytes += frame.len();
        batch.push(Line { ts_ms: recorded.ts_ms, room: recorded.room, frame });
        if batch.len() >= BATCH_LINES || bytes >= BATCH_BYTES {
            feed.send(Fed::Lines(std::mem::take(&mut batch)));
            bytes = 0;
            if asks.recv().is_err() {
                return; // the simulator stopped
            }
        }
    }
    if !batch.is_empty() {
        feed.send(Fed::Lines(batch));
    }
    feed.send(Fed::End(tally));
}

/// What [`read_bounded_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    /// A line, in the buffer without its newline (the last may lack one).
    Line,
    /// A line over [`MAX_LINE`], read past.
    TooLong,
    /// The end of the input.
    End,
}

/// Reads the next line into `line` (cleared first), never holding more
/// than [`MAX_LINE`] bytes of it.
fn read_bounded_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<LineRead> {
    line.clear();
    let limit = MAX_LINE as u64 + 1;
    if reader.by_ref().take(limit).read_until(b'\n', line)? == 0 {
        return Ok(LineRead::End);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(LineRead::Line);
    }
    if line.len() <= MAX_LINE {
        return Ok(LineRead::Line); // the last line, without a newline
    }
    // Too long: skip to the end of the line, a buffer at a time.
    line.clear();
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(LineRead::TooLong);
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(LineRead::TooLong);
            }
            None => {
                let all = buffer.len();
                reader.consume(all);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn playback(speed: f64, start_rooms: usize) -> (Playback, mpsc::Receiver<()>) {
        let (more, asks) = mpsc::channel();
        (Playback::new(&SimReplay { speed, start_rooms, ..SimReplay::new("x") }, more), asks)
    }

    fn line(ts_ms: u64, room: u64, bytes: usize) -> Line {
        Line { ts_ms, room, frame: vec![0; bytes] }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_plays_before_clients_are_in_enough_rooms_then_each_line_when_due() {
        let (mut playback, _asks) = playback(2.0, 2);
        playback.feed(Fed::Lines(vec![line(1_000, 1, 20), line(1_400, 2, 20), line(3_000, 1, 20)]));
        let t0 = Instant::now();
        assert!(playback.next_due(t0 + ms(3_600_000)).is_none(), "no clients yet");
        playback.rooms_joined(1, t0);
        assert!(playback.next_due(t0 + ms(3_600_000)).is_none(), "one room of two");
        playback.rooms_joined(2, t0);
        let due = |playback: &mut Playback, after: u64| playback.next_due(t0 + ms(after)).map(|l| (l.ts_ms, l.room));
        assert_eq!(due(&mut playback, 0), Some((1_000, 1)), "the first at once");
        assert_eq!(due(&mut playback, 199), None);
        assert_eq!(due(&mut playback, 200), Some((1_400, 2)), "400 ms later at speed 2");
        assert_eq!(due(&mut playback, 999), None);
        playback.rooms_joined(3, t0 + ms(999));
        assert_eq!(due(&mut playback, 1_000), Some((3_000, 1)), "still timed from the start");
        assert!(playback.take_end().is_none(), "the reader has not ended");
        playback.feed(Fed::End(ReadTally::default()));
        assert!(playback.take_end().is_some());
        assert!(playback.take_end().is_none(), "the end is told once");
    }

    #[test]
    fn the_reader_is_asked_for_a_batch_only_when_less_than_one_is_held() {
        let (mut playback, asks) = playback(1.0, 1);
        let t0 = Instant::now();
        playback.rooms_joined(1, t0);
        assert!(playback.next_due(t0).is_none());
        assert_eq!(asks.try_iter().count(), 0, "the first batch comes unasked");
        playback.feed(Fed::Lines((0..BATCH_LINES as u64).map(|ts| line(ts, 1, 10)).collect()));
        assert!(playback.next_due(t0 + ms(1)).is_some());
        assert_eq!(asks.try_iter().count(), 1, "less than a batch left");
        while playback.next_due(t0 + ms(5_000)).is_some() {}
        assert_eq!(asks.try_iter().count(), 0, "asked once until the batch comes");

        // A batch may end at its bytes: few lines, but a batch's worth.
        playback.feed(Fed::Lines(vec![line(6_000, 1, BATCH_BYTES / 2), line(6_000, 1, BATCH_BYTES / 2)]));
        assert!(playback.next_due(t0).is_none(), "not due yet");
        assert_eq!(asks.try_iter().count(), 0, "a batch's bytes held, in two lines");
        assert!(playback.next_due(t0 + ms(6_000)).is_some());
        assert_eq!(asks.try_iter().count(), 1);
        playback.feed(Fed::End(ReadTally::default()));
        assert!(playback.next_due(t0 + ms(6_000)).is_some());
        assert_eq!(asks.try_iter().count(), 0, "nothing more to ask for after the end");
        assert!(playback.take_end().is_some());
    }

    #[test]
    fn a_line_too_long_is_read_past_and_the_next_one_read_whole() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nnext\nlast");
        let mut reader = BufReader::new(&input[..]);
        let mut line = Vec::new();
        assert_eq!(read_bounded_line(&mut reader, &mut line).unwrap(), LineRead::TooLong);
        assert_eq!(read_bounded_line(&mut reader, &mut line).unwrap(), LineRead::Line);
        assert_eq!(line, b"next");
        assert_eq!(read_bounded_line(&mut reader, &mut line).unwrap(), LineRead::Line);
        assert_eq!(line, b"last", "a last line without a newline");
        assert_eq!(read_bounded_line(&mut reader, &mut line).unwrap(), LineRead::End);

        let exact = [vec![b'y'; MAX_LINE], b"\n".to_vec()].concat();
        let mut reader = BufReader::new(&exact[..]);
        assert_eq!(read_bounded_line(&mut reader, &mut line).unwrap(), LineRead::Line);
        assert_eq!(line.len(), MAX_LINE, "a line of exactly MAX_LINE bytes is kept");
    }

    #[test]
    fn only_room_messages_are_played() {
        for kind in ["chatmsg", "dgb", "uenter", "rss", "frank", "", "lucky_wheel_2099"] {
            assert!(is_room_message(kind), "{kind}");
        }
        for kind in ["loginres", "pingreq", "mrkl", "error", "barrage.live"] {
            assert!(!is_room_message(kind), "{kind}");
        }
    }

    #[test]
    fn a_replay_setting_out_of_range_names_its_flag() {
        assert_eq!(SimReplay::new("x").validate(), Ok(()));
        let bad = |replay: SimReplay| replay.validate().unwrap_err().flag();
        assert_eq!(bad(SimReplay { speed: 0.0, ..SimReplay::new("x") }), "--speed");
        assert_eq!(bad(SimReplay { speed: f64::INFINITY, ..SimReplay::new("x") }), "--speed");
        assert_eq!(bad(SimReplay { start_rooms: 0, ..SimReplay::new("x") }), "--replay-start-rooms");
    }
}

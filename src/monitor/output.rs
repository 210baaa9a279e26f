//! Where messages go: formatting on the loop thread, writing on a writer
//! thread, and backpressure between the two.
//!
//! Writing to a regular file (or a full disk, or a pipe nobody reads) blocks,
//! and no `O_NONBLOCK` changes that for files. The loop thread must never
//! block — heartbeats of thousands of rooms depend on it — so the loop only
//! *formats* lines into a batch, and hands each batch (one per loop
//! iteration) to a writer thread that does the blocking writes, through a
//! [`Sink`] that never leaves part of a line behind.
//!
//! Nothing may be dropped and memory must stay bounded, so the bytes handed
//! over and not yet written are counted. Above `high_water`, rooms stop
//! reading (their `readable()` says no): TCP then pushes back on the server.
//! A room that pauses registers its `EntryToken`; when the writer has drained
//! below `low_water` it tells the loop ([`OutputEvent::Drained`]), which
//! refreshes those rooms, and they read again.
//!
//! At exit, [`Output::finish`] gives the writer a time limit. What it could
//! not write by then is counted in whole lines, and writing stops at a line
//! boundary. If the destination's reader goes away (a broken pipe), the
//! writer says so ([`OutputEvent::Closed`]) and throws the rest away.

use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::reactor::{EntryToken, LoopSender};

pub use super::sink::Destination;
use super::sink::{Sink, Wrote};

/// What the writer thread tells the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum OutputEvent {
    /// Unwritten output fell to the low-water mark: these rooms paused for
    /// it and may read again.
    Drained(BTreeSet<EntryToken>),
    /// Nothing more can be written; what follows is thrown away.
    Closed(OutputClosed),
}

/// Why the output closed for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputClosed {
    /// The reader of a pipe went away (`barrage watch | head`).
    ReaderLeft,
    /// The destination could not be opened (a FIFO is opened late).
    Failed(String),
}

/// Lines that were not written when the output finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unwritten {
    pub lines: u64,
    pub bytes: u64,
    /// The writer did not stop in time: it was inside a write, which may
    /// have ended in the middle of a line (only a destination that stopped
    /// reading altogether, a frozen terminal say, can do that).
    pub maybe_cut: bool,
}

/// What the loop thread and the writer thread share.
struct Shared {
    /// Bytes and lines handed to the writer and not yet written.
    in_flight: AtomicUsize,
    in_flight_lines: AtomicU64,
    /// Rooms waiting for the output to drain (a set: a room asks each time
    /// the reactor consults its `readable()`).
    paused: Mutex<BTreeSet<EntryToken>>,
    /// Set once nothing more can be written (the reader left).
    closed: AtomicBool,
    bytes_written: AtomicU64,
    write_errors: AtomicU64,
    /// `write` calls made on the destination, so that a benchmark can
    /// count this thread's syscalls with the loop's.
    write_syscalls: AtomicU64,
    /// SIGHUP asked for the file to be reopened; checked between writes and
    /// while retrying a failed one (a full disk is often what rotation frees).
    reopen_requested: AtomicBool,
    /// Time is up: stop at the next line boundary.
    stop_requested: AtomicBool,
    /// What the writer left when it stopped.
    unwritten: Mutex<Unwritten>,
}

enum Command {
    Write { bytes: Vec<u8>, lines: u64 },
    Reopen,
}

/// The loop thread's end of the output.
pub struct Output {
    shared: Arc<Shared>,
    commands: Option<Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    /// Disconnects when the writer thread exits: a join with a time limit.
    writer_done: Receiver<()>,
    batch: Vec<u8>,
    batch_lines: u64,
    high_water: usize,
}

/// Limits of the output queue.
#[derive(Clone, Copy, Debug)]
pub struct OutputLimits {
    /// Above this many unwritten bytes, rooms stop reading.
    pub high_water: usize,
    /// Below this, paused rooms resume.
    pub low_water: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits { high_water: 8 * 1024 * 1024, low_water: 2 * 1024 * 1024 }
    }
}

impl Output {
    /// Opens `destination` (a file is created if missing, and appended to)
    /// and starts the writer thread, which reports to the loop through
    /// `events`. A FIFO is opened by the writer thread, since opening one
    /// waits for its reader.
    pub fn open(destination: Destination, limits: OutputLimits, events: LoopSender<OutputEvent>) -> io::Result<Output> {
        let sink = if is_fifo(&destination) { None } else { Some(Sink::open(&destination)?) };
        let shared = Arc::new(Shared {
            in_flight: AtomicUsize::new(0),
            in_flight_lines: AtomicU64::new(0),
            paused: Mutex::new(BTreeSet::new()),
            closed: AtomicBool::new(false),
            bytes_written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            write_syscalls: AtomicU64::new(0),
            reopen_requested: AtomicBool::new(false),
            stop_requested: AtomicBool::new(false),
            unwritten: Mutex::new(Unwritten::default()),
        });
        let (commands, receiver) = mpsc::channel();
        let (done, writer_done) = mpsc::channel::<()>();
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new().name("barrage-output".into()).spawn(move || {
                let _done = done; // dropped when the thread ends, whichever way
                let writer = Writer { destination, shared, low_water: limits.low_water, events };
                writer.run(sink, receiver);
            })?
        };
        Ok(Output {
            shared,
            commands: Some(commands),
            writer: Some(writer),
            writer_done,
            batch: Vec::with_capacity(64 * 1024),
            batch_lines: 0,
            high_water: limits.high_water,
        })
    }

    /// Appends one line, written by `format` (which may write nothing).
    /// Call [`flush`](Self::flush) once per loop iteration.
    pub fn append(&mut self, format: impl FnOnce(&mut Vec<u8>)) {
        let before = self.batch.len();
        format(&mut self.batch);
        if self.batch.len() > before {
            self.batch_lines += 1;
        }
    }

    /// Hands the current batch to the writer thread.
    pub fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let bytes = std::mem::replace(&mut self.batch, Vec::with_capacity(64 * 1024));
        let lines = std::mem::take(&mut self.batch_lines);
        self.shared.in_flight.fetch_add(bytes.len(), Ordering::AcqRel);
        self.shared.in_flight_lines.fetch_add(lines, Ordering::AcqRel);
        if let Some(commands) = &self.commands {
            // Fails only if the writer thread is gone, which `finish` reports.
            let _ = commands.send(Command::Write { bytes, lines });
        }
    }

    /// Too much is waiting to be written: rooms should stop reading.
    pub fn is_full(&self) -> bool {
        self.shared.in_flight.load(Ordering::Acquire) + self.batch.len() > self.high_water
    }

    /// Registers a room that stopped reading because the output is full.
    /// Returns `false` if the output drained meanwhile (the caller should
    /// resume at once) — checked after registering, so no wake-up is lost.
    pub fn pause(&self, room: EntryToken) -> bool {
        self.shared.paused.lock().unwrap_or_else(|p| p.into_inner()).insert(room);
        self.is_full()
    }

    /// Unwritten bytes (batch plus in flight).
    pub fn pending(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire) + self.batch.len()
    }

    pub fn bytes_written(&self) -> u64 {
        self.shared.bytes_written.load(Ordering::Relaxed)
    }

    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    /// `write` syscalls the writer thread made (none for `Destination::Null`).
    pub fn write_syscalls(&self) -> u64 {
        self.shared.write_syscalls.load(Ordering::Relaxed)
    }

    /// Nothing more can be written (the reader left).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Reopens a file destination (after log rotation moved it away).
    pub fn reopen(&mut self) {
        self.flush();
        self.shared.reopen_requested.store(true, Ordering::Release);
        if let Some(commands) = &self.commands {
            let _ = commands.send(Command::Reopen); // wakes an idle writer
        }
    }

    /// Flushes everything and waits, at most `limit`, for the writer to
    /// write it (blocking; for exit only). A stuck reader or a full disk
    /// must not keep the process from exiting, but what is lost must be
    /// said: returns what was left unwritten, in whole lines. Near the end
    /// of the limit the writer is asked to stop at the next line boundary.
    pub fn finish(&mut self, limit: Duration) -> Unwritten {
        self.flush();
        self.commands = None; // closes the channel: the writer drains and exits
        let Some(writer) = self.writer.take() else { return Unwritten::default() };
        let started = Instant::now();
        // Leave a little of the limit for the writer to reach a line end.
        let grace = (limit / 4).min(Duration::from_millis(200));
        let stopped = match self.writer_done.recv_timeout(limit - grace) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.shared.stop_requested.store(true, Ordering::Release);
                let left = limit.saturating_sub(started.elapsed());
                !matches!(self.writer_done.recv_timeout(left), Err(mpsc::RecvTimeoutError::Timeout))
            }
            _ => true,
        };
        if !stopped {
            // Left running; the process exits without it.
            return Unwritten {
                lines: self.shared.in_flight_lines.load(Ordering::Acquire),
                bytes: self.shared.in_flight.load(Ordering::Acquire) as u64,
                maybe_cut: true,
            };
        }
        let _ = writer.join();
        *self.shared.unwritten.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.finish(Duration::from_secs(1));
    }
}

fn is_fifo(destination: &Destination) -> bool {
    use std::os::unix::fs::FileTypeExt;
    match destination {
        Destination::File(path) => std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo()),
        _ => false,
    }
}

/// The writer thread.
struct Writer {
    destination: Destination,
    shared: Arc<Shared>,
    low_water: usize,
    events: LoopSender<OutputEvent>,
}

/// How writing one batch ended.
enum BatchEnd {
    Written,
    /// Stopped at a line boundary, with this many bytes of the batch written.
    Stopped(usize),
    ReaderLeft,
}

impl Writer {
    /// Writes each batch completely, retrying on errors (a full disk may get
    /// space again), until the channel closes, time is up, or the reader
    /// leaves.
    fn run(self, sink: Option<Sink>, commands: Receiver<Command>) {
        let sink = match sink {
            Some(sink) => sink,
            None => {
                log::info!("output: waiting for a reader to open {}", self.describe());
                match Sink::open(&self.destination) {
                    Ok(sink) => sink,
                    Err(e) => return self.close(OutputClosed::Failed(format!("cannot open {}: {e}", self.describe()))),
                }
            }
        };
        let mut sink = sink;
        for command in commands.iter() {
            let Command::Write { bytes, lines } = command else {
                self.reopen_if_requested(&mut sink);
                continue;
            };
            if self.shared.stop_requested.load(Ordering::Acquire) {
                return self.stop(&bytes[..], 0, &commands);
            }
            match self.write_batch(&mut sink, &bytes) {
                BatchEnd::Written => self.written(bytes.len(), lines),
                BatchEnd::Stopped(written) => return self.stop(&bytes, written, &commands),
                BatchEnd::ReaderLeft => {
                    self.close(OutputClosed::ReaderLeft);
                    // Keep taking batches, so that no room waits for room.
                    self.written(bytes.len(), lines);
                    for command in commands.iter() {
                        if let Command::Write { bytes, lines } = command {
                            self.written(bytes.len(), lines);
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Writes all of `batch`, continuing after partial writes from where they
    /// stopped (a retry from the start would write lines twice). Errors are
    /// retried with a growing pause — nothing is dropped, rooms stay paused
    /// meanwhile — except a broken pipe.
    fn write_batch(&self, sink: &mut Sink, batch: &[u8]) -> BatchEnd {
        let mut written = 0;
        let mut retry_delay = Duration::from_millis(100);
        let mut room_wait = Duration::from_millis(1);
        while written < batch.len() {
            if self.shared.stop_requested.load(Ordering::Acquire) {
                // A line cut short in a file is taken back; one cut short
                // in a pipe or on a terminal has to be finished first.
                written -= sink.take_back_partial_line();
                if sink.partial_line() == 0 {
                    return BatchEnd::Stopped(written);
                }
            }
            written -= self.reopen_if_requested(sink);
            if sink.is_real() {
                self.shared.write_syscalls.fetch_add(1, Ordering::Relaxed);
            }
            match sink.write(&batch[written..]) {
                Ok(Wrote::Bytes(n)) => {
                    written += n;
                    retry_delay = Duration::from_millis(100);
                    room_wait = Duration::from_millis(1);
                }
                Ok(Wrote::NoRoom) => {
                    // Wait for the reader; no busy loop, however slow it is.
                    sink.wait_for_room(Duration::from_millis(50));
                    std::thread::sleep(room_wait);
                    room_wait = (room_wait * 2).min(Duration::from_millis(50));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return BatchEnd::ReaderLeft,
                Err(e) => {
                    self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
                    log::error!("writing output failed: {e}; retrying in {retry_delay:?}");
                    self.pause(retry_delay);
                    retry_delay = (retry_delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        BatchEnd::Written
    }

    /// A batch is out: count it, and wake paused rooms below the low water.
    fn written(&self, bytes: usize, lines: u64) {
        self.shared.bytes_written.fetch_add(bytes as u64, Ordering::Relaxed);
        self.shared.in_flight_lines.fetch_sub(lines, Ordering::AcqRel);
        let left = self.shared.in_flight.fetch_sub(bytes, Ordering::AcqRel) - bytes;
        if left <= self.low_water {
            let rooms = std::mem::take(&mut *self.shared.paused.lock().unwrap_or_else(|p| p.into_inner()));
            if !rooms.is_empty() {
                self.events.send(OutputEvent::Drained(rooms));
            }
        }
    }

    /// Time is up: record what is left (the rest of `batch` from `written`,
    /// a line boundary, and every batch still queued) and end.
    fn stop(&self, batch: &[u8], written: usize, commands: &Receiver<Command>) {
        let mut unwritten = Unwritten {
            lines: count_lines(&batch[written..]),
            bytes: (batch.len() - written) as u64,
            maybe_cut: false,
        };
        for command in commands.try_iter() {
            if let Command::Write { bytes, lines } = command {
                unwritten.lines += lines;
                unwritten.bytes += bytes.len() as u64;
            }
        }
        *self.shared.unwritten.lock().unwrap_or_else(|p| p.into_inner()) = unwritten;
    }

    fn close(&self, why: OutputClosed) {
        self.shared.closed.store(true, Ordering::Release);
        self.events.send(OutputEvent::Closed(why));
    }

    /// Reopens the destination if asked to. A line cut short in the old
    /// file is taken back from it; returns how many bytes that was, to be
    /// written again (whole) to the new one.
    fn reopen_if_requested(&self, sink: &mut Sink) -> usize {
        if !self.shared.reopen_requested.swap(false, Ordering::AcqRel) || self.destination == Destination::Stdout {
            return 0;
        }
        match Sink::open(&self.destination) {
            Ok(reopened) => {
                let taken_back = sink.take_back_partial_line();
                *sink = reopened;
                log::info!("output reopened: {}", self.describe());
                taken_back
            }
            Err(e) => {
                log::error!("could not reopen {}: {e}; still writing to the old one", self.describe());
                0
            }
        }
    }

    /// Sleeps for `delay`, in short steps, waking early for a reopen or a stop.
    fn pause(&self, delay: Duration) {
        let until = Instant::now() + delay;
        while Instant::now() < until
            && !self.shared.reopen_requested.load(Ordering::Acquire)
            && !self.shared.stop_requested.load(Ordering::Acquire)
        {
            std::thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
        }
    }

    fn describe(&self) -> String {
        match &self.destination {
            Destination::File(path) => path.display().to_string(),
            Destination::Stdout => "stdout".into(),
            Destination::Null => "nothing".into(),
        }
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::Reactor;

    fn write_two_batches(reactor: &mut Reactor, destination: Destination) -> Output {
        let events = reactor.channel(|_, _: OutputEvent| {});
        let mut output = Output::open(destination, OutputLimits::default(), events).unwrap();
        for line in [&b"first\n"[..], b"second\n"] {
            output.append(|batch| batch.extend_from_slice(line));
            output.flush();
        }
        assert_eq!(output.finish(Duration::from_secs(10)), Unwritten::default(), "everything written");
        output
    }

    #[test]
    fn the_writer_counts_its_write_syscalls() {
        let mut reactor = Reactor::new().unwrap();
        let path = std::env::temp_dir().join(format!("barrage-output-syscalls-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        // A small write to a regular file is written whole: one call each.
        assert_eq!(write_two_batches(&mut reactor, Destination::File(path.clone())).write_syscalls(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), b"first\nsecond\n");
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            write_two_batches(&mut reactor, Destination::Null).write_syscalls(),
            0,
            "nothing reaches the kernel"
        );
    }

    #[test]
    fn a_format_that_writes_nothing_is_not_a_line() {
        let mut reactor = Reactor::new().unwrap();
        let mut output =
            Output::open(Destination::Null, OutputLimits::default(), reactor.channel(|_, _: OutputEvent| {})).unwrap();
        output.append(|_| {});
        output.append(|batch| batch.extend_from_slice(b"one\n"));
        assert_eq!(output.batch_lines, 1);
    }
}

//! Where messages go: formatting on the loop thread, writing on a writer
//! thread, and backpressure between the two.
//!
//! Writing to a regular file (or a full disk, or a pipe nobody reads) blocks,
//! and no `O_NONBLOCK` changes that for files. The loop thread must never
//! block — heartbeats of thousands of rooms depend on it — so the loop only
//! *formats* lines into a batch, and hands each batch (one per loop
//! iteration) to a writer thread that does the blocking writes.
//!
//! Nothing may be dropped and memory must stay bounded, so the bytes handed
//! over and not yet written are counted. Above `high_water`, rooms stop
//! reading (their `readable()` says no): TCP then pushes back on the server.
//! A room that pauses registers its `ConnId`; when the writer has drained
//! below `low_water` it wakes the loop through the reactor's `Waker` with a
//! callback that refreshes those rooms, and they read again.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::reactor::{ConnId, ReactorHandle};

/// Where the lines are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    /// Appended to; reopened on request (log rotation).
    File(PathBuf),
    /// Discarded after being written through the same code (benchmarks).
    Null,
}

/// What the loop thread and the writer thread share.
struct Shared {
    /// Bytes handed to the writer and not yet written.
    in_flight: AtomicUsize,
    /// Rooms waiting for the output to drain (a set: a room asks each time
    /// the reactor consults its `readable()`).
    paused: Mutex<BTreeSet<ConnId>>,
    /// Set when the writer hit an error it cannot retry (stdout closed).
    failed: AtomicBool,
    bytes_written: AtomicU64,
    write_errors: AtomicU64,
    /// `write` calls made on the destination, so that a benchmark can
    /// count this thread's syscalls with the loop's: one each for a file,
    /// and for stdout too (every batch ends with a newline, so its line
    /// buffer passes the batch straight on).
    write_syscalls: AtomicU64,
    /// SIGHUP asked for the file to be reopened; checked between writes and
    /// while retrying a failed one (a full disk is often what rotation frees).
    reopen_requested: AtomicBool,
}

enum Command {
    Write(Vec<u8>),
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
    /// and starts the writer thread, which wakes the loop through `handle`.
    pub fn open(destination: Destination, limits: OutputLimits, handle: ReactorHandle) -> io::Result<Output> {
        let sink = Sink::open(&destination)?;
        let shared = Arc::new(Shared {
            in_flight: AtomicUsize::new(0),
            paused: Mutex::new(BTreeSet::new()),
            failed: AtomicBool::new(false),
            bytes_written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            write_syscalls: AtomicU64::new(0),
            reopen_requested: AtomicBool::new(false),
        });
        let (commands, receiver) = mpsc::channel();
        let (done, writer_done) = mpsc::channel::<()>();
        let writer = {
            let shared = shared.clone();
            let low_water = limits.low_water;
            std::thread::Builder::new().name("barrage-output".into()).spawn(move || {
                let _done = done; // dropped when the thread ends, whichever way
                write_loop(receiver, sink, destination, shared, low_water, handle)
            })?
        };
        Ok(Output {
            shared,
            commands: Some(commands),
            writer: Some(writer),
            writer_done,
            batch: Vec::with_capacity(64 * 1024),
            high_water: limits.high_water,
        })
    }

    /// The batch lines are appended to; call [`flush`](Self::flush) once
    /// per loop iteration.
    pub fn batch(&mut self) -> &mut Vec<u8> {
        &mut self.batch
    }

    /// Hands the current batch to the writer thread.
    pub fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(64 * 1024));
        self.shared.in_flight.fetch_add(batch.len(), Ordering::AcqRel);
        if let Some(commands) = &self.commands {
            // Fails only if the writer thread is gone, which `failed` reports.
            let _ = commands.send(Command::Write(batch));
        }
    }

    /// Too much is waiting to be written: rooms should stop reading.
    pub fn is_full(&self) -> bool {
        self.shared.in_flight.load(Ordering::Acquire) + self.batch.len() > self.high_water
    }

    /// Registers a room that stopped reading because the output is full.
    /// Returns `false` if the output drained meanwhile (the caller should
    /// resume at once) — checked after registering, so no wake-up is lost.
    pub fn pause(&self, room: ConnId) -> bool {
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

    /// The writer gave up (its destination is closed for good).
    pub fn has_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
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
    /// write it (blocking; for shutdown only). Returns the bytes that could
    /// not be written in time: a stuck reader or a full disk must not keep
    /// the process from exiting, but what is lost must be said.
    pub fn finish(&mut self, limit: Duration) -> usize {
        self.flush();
        self.commands = None; // closes the channel: the writer drains and exits
        let Some(writer) = self.writer.take() else { return 0 };
        match self.writer_done.recv_timeout(limit) {
            Err(mpsc::RecvTimeoutError::Timeout) => self.pending(), // left running; the process exits without it
            _ => {
                let _ = writer.join();
                0
            }
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.finish(Duration::from_secs(1));
    }
}

enum Sink {
    Stdout(io::Stdout),
    File(File),
    Null,
}

impl Sink {
    fn open(destination: &Destination) -> io::Result<Sink> {
        Ok(match destination {
            Destination::Stdout => Sink::Stdout(io::stdout()),
            Destination::File(path) => Sink::File(OpenOptions::new().create(true).append(true).open(path)?),
            Destination::Null => Sink::Null,
        })
    }

    /// Whether [`write`](Self::write) is a syscall (not for `Null`).
    fn is_real(&self) -> bool {
        !matches!(self, Sink::Null)
    }

    /// One write; may take only part of `bytes`.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(out) => out.lock().write(bytes),
            Sink::File(file) => file.write(bytes),
            Sink::Null => Ok(bytes.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.lock().flush(),
            _ => Ok(()),
        }
    }
}

/// The writer thread: write each batch completely, retrying on errors (a full
/// disk may get space again), and wake paused rooms once drained.
fn write_loop(
    commands: Receiver<Command>,
    mut sink: Sink,
    destination: Destination,
    shared: Arc<Shared>,
    low_water: usize,
    handle: ReactorHandle,
) {
    for command in commands {
        reopen_if_requested(&mut sink, &destination, &shared);
        let Command::Write(batch) = command else { continue };
        if !write_batch(&mut sink, &batch, &destination, &shared) {
            log::error!("output closed by the reader (broken pipe); stopping");
            shared.failed.store(true, Ordering::Release);
            handle.stop();
            return;
        }
        shared.bytes_written.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let left = shared.in_flight.fetch_sub(batch.len(), Ordering::AcqRel) - batch.len();
        if left <= low_water {
            let rooms = std::mem::take(&mut *shared.paused.lock().unwrap_or_else(|p| p.into_inner()));
            if !rooms.is_empty() {
                handle.add_callback(move |reactor| {
                    for room in rooms {
                        reactor.refresh(room);
                    }
                });
            }
        }
    }
}

/// Writes all of `batch`, continuing after partial writes from where they
/// stopped (a retry from the start would write lines twice). Errors are
/// retried with a growing pause — nothing is dropped, rooms stay paused
/// meanwhile — except a broken pipe: returns false then.
fn write_batch(sink: &mut Sink, batch: &[u8], destination: &Destination, shared: &Shared) -> bool {
    let mut written = 0;
    let mut retry_delay = Duration::from_millis(100);
    while written < batch.len() {
        if sink.is_real() {
            shared.write_syscalls.fetch_add(1, Ordering::Relaxed);
        }
        match sink.write(&batch[written..]) {
            Ok(0) => retry_after(io::ErrorKind::WriteZero.into(), &mut retry_delay, shared),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return false,
            Err(e) => retry_after(e, &mut retry_delay, shared),
        }
        reopen_if_requested(sink, destination, shared);
    }
    !matches!(sink.flush(), Err(e) if e.kind() == io::ErrorKind::BrokenPipe)
}

fn retry_after(error: io::Error, delay: &mut Duration, shared: &Shared) {
    shared.write_errors.fetch_add(1, Ordering::Relaxed);
    log::error!("writing output failed: {error}; retrying in {delay:?}");
    std::thread::sleep(*delay);
    *delay = (*delay * 2).min(Duration::from_secs(5));
}

fn reopen_if_requested(sink: &mut Sink, destination: &Destination, shared: &Shared) {
    if !shared.reopen_requested.swap(false, Ordering::AcqRel) {
        return;
    }
    match Sink::open(destination) {
        Ok(reopened) => {
            *sink = reopened;
            log::info!("output reopened");
        }
        Err(e) => log::error!("could not reopen the output: {e}; keeping the old one"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::Reactor;

    fn write_two_batches(destination: Destination) -> Output {
        let reactor = Reactor::new().unwrap();
        let mut output = Output::open(destination, OutputLimits::default(), reactor.handle()).unwrap();
        for line in [&b"first\n"[..], b"second\n"] {
            output.batch().extend_from_slice(line);
            output.flush();
        }
        assert_eq!(output.finish(Duration::from_secs(10)), 0, "everything written");
        output
    }

    #[test]
    fn the_writer_counts_its_write_syscalls() {
        let path = std::env::temp_dir().join(format!("barrage-output-syscalls-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        // A small write to a regular file is written whole: one call each.
        assert_eq!(write_two_batches(Destination::File(path.clone())).write_syscalls(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), b"first\nsecond\n");
        let _ = std::fs::remove_file(&path);
        assert_eq!(write_two_batches(Destination::Null).write_syscalls(), 0, "nothing reaches the kernel");
    }
}

//! The tokio peer of `barrage watch`: the same job, on tokio instead of the
//! hand-written reactor, so that `barrage bench` (issue 5) can show what the
//! reactor buys — and what it does not.
//!
//! What it is: one thread, a tokio **current-thread** runtime, and **one task
//! per room**. Each task connects, then drives the very same sans-IO
//! [`ClientSession`] that barrage's `RoomConn` drives (login, join,
//! heartbeats, idle and login timeouts all come from it), and formats every
//! message with the same [`format::write_line`] into the same JSON lines. Only
//! the I/O model differs: `async`/`await` and tokio's scheduler, timer wheel
//! and I/O driver instead of `barrage::reactor`.
//!
//! ```text
//! cargo run --release -- serve --listen 127.0.0.1:0 --rate 10 --stats-interval 0   # prints "listening on ADDR"
//! cargo run --release --example tokio_peer -- --server ADDR --rooms 1000 --duration 30 \
//!     --output /dev/null [--first-room 1] [--connect-rate 1000] [--rate 10]
//! ```
//!
//! It prints exactly one line on stdout: a [`BenchReport`] as JSON, with
//! engine "tokio". Warnings (reconnects, rooms that did not join) go to
//! stderr. `--rate` is only copied into the report: the simulator decides
//! the real rate.
//!
//! # Measurement (the same procedure as barrage's side of the benchmark)
//!
//! 1. raise the open-files limit; read the RSS (`rss_before`);
//! 2. start every room (connects paced at `--connect-rate`, in batches every
//!    100 ms like barrage's pacer) and time until all have joined
//!    (`join_secs`; at most 120 s, after which `rooms_joined` says how many
//!    did); read the RSS again (`rss_joined`);
//! 3. reset the counters, read this process's CPU time, let `--duration`
//!    seconds pass, read the CPU time again. `messages` counts the numbered
//!    room messages (those with a numeric `cid`) delivered in that window;
//!    timer lateness is recorded in that window too;
//! 4. log every room out (logout, FIN, wait for the server's FIN, at most
//!    5 s, as barrage's lingering close does), flush the output, print.
//!
//! `lost` and `duplicated` check the `cid` sequence (1, 2, 3, … per room) on
//! each connection, over the whole run, with the rules of barrage's
//! `SequenceCheck`. Counters tokio does not expose (loop iterations, events,
//! syscalls) are `None`: the runtime's syscalls are not visible from inside.
//!
//! # Design, and how it stays comparable
//!
//! - **Reading:** `read_buf` into a per-task buffer that keeps unconsumed
//!   bytes (half a frame) for the next `on_bytes`. It gets 4 KiB on the
//!   first read, grows by 4 KiB when less than 1 KiB is free, and gives back
//!   capacity above 16 KiB (grown by a burst) once emptied (barrage reads into one 64 KiB loop-wide scratch buffer and keeps
//!   only leftovers per connection; a per-task buffer is the idiomatic tokio
//!   shape, and 4 KiB holds many messages at these rates).
//! - **Timers:** one pinned `Sleep` per connection, pointed at the session's
//!   `next_deadline()`. Like barrage's `RoomConn::arm_timer`, it is moved only
//!   when the deadline comes *earlier*: every read pushes the idle deadline
//!   later, and re-arming for that would cost a timer operation per read. A
//!   timer that fires early is re-armed then (the session ignores early
//!   calls). Each firing records `now - deadline` into a
//!   [`LatencyHistogram`].
//! - **Writing to the socket:** `write_all` of what `poll_transmit` queued
//!   (a few dozen bytes: login, joingroup, heartbeats, logout).
//! - **Output:** tasks format lines into one shared batch (an
//!   `Rc<RefCell<…>>`: everything runs on one thread). The batch goes to a
//!   writer thread through a channel when it reaches 64 KiB, or 10 ms after
//!   its first line (a flusher task, woken only when there is something to
//!   flush, so an idle peer has no periodic wake-up). The writer does the
//!   blocking `write_all` on a `std::fs::File`. Barrage does the same split
//!   (format on the loop thread, write on a writer thread), handing over one
//!   batch per loop iteration; it also stops reading when 8 MiB are waiting,
//!   which this peer does not (the channel is unbounded: fine for /dev/null
//!   or a fast disk, not for a slow pipe).
//! - **Shutdown:** a `watch` channel. Each connection pins one `changed()`
//!   future for its whole life, so the signal costs nothing per message.
//! - **Faults** are not the point (the benchmark has none), but handled: a
//!   closed, failed or timed-out session reconnects after an exponential
//!   backoff with full jitter (barrage's [`Backoff`], 1 s doubling to 60 s,
//!   reset after 30 s of health); a bad room id waits 60 s.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use barrage::bench::process::{cpu_seconds, raise_open_files_limit, rss_bytes};
use barrage::bench::report::{BenchReport, Measurements};
use barrage::douyu::{ClientSession, CloseReason, Message, SessionConfig, SessionEvent};
use barrage::monitor::backoff::Backoff;
use barrage::monitor::format::{self, Format};
use barrage::reactor::LatencyHistogram;
use barrage::rng::Rng;
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

/// How long every room may take to join before the window starts anyway.
const JOIN_DEADLINE: Duration = Duration::from_secs(120);
/// Connects start in batches, one batch per tick (as barrage's pacer does).
const PACER_TICK: Duration = Duration::from_millis(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A graceful close (logout, FIN, the server's FIN) takes at most this long
/// (barrage's `ReactorConfig::linger`).
const LINGER: Duration = Duration::from_secs(5);
/// A connection that lived this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// The read buffer grows by `READ_CHUNK` when less than `MIN_FREE` is free,
/// and gives back anything above `KEEP_CAPACITY` once emptied.
const READ_CHUNK: usize = 4 * 1024;
const MIN_FREE: usize = 1024;
const KEEP_CAPACITY: usize = 16 * 1024;
/// The output batch goes to the writer at this size, or after this delay.
const FLUSH_SIZE: usize = 64 * 1024;
const FLUSH_DELAY: Duration = Duration::from_millis(10);

/// The tokio peer of `barrage watch`, for `barrage bench`.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// The simulator's address (`barrage serve` prints it), HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    server: String,
    /// How many rooms to watch.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    rooms: u64,
    /// The first room id; rooms are FIRST, FIRST+1, …
    #[arg(long, value_name = "ID", default_value_t = 1)]
    first_room: u64,
    /// Length of the measured window, in seconds.
    #[arg(long, value_name = "SECS")]
    duration: f64,
    /// Where the JSON lines go (e.g. /dev/null); created or appended to.
    #[arg(long, value_name = "PATH")]
    output: PathBuf,
    /// New connections per second, at most.
    #[arg(long, value_name = "PER_SEC", default_value_t = 1000.0)]
    connect_rate: f64,
    /// The simulator's per-room rate; only copied into the report.
    #[arg(long, value_name = "PER_SEC", default_value_t = 0.0)]
    rate: f64,
    /// Heartbeat interval per room, seconds (as `barrage bench --heartbeat`).
    #[arg(long, value_name = "SECS", default_value_t = 45.0)]
    heartbeat: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.heartbeat.is_finite() && args.heartbeat > 0.0 && args.heartbeat < 1e6) {
        eprintln!("tokio_peer: --heartbeat must be a positive number of seconds");
        return ExitCode::FAILURE;
    }
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration < 1e6) {
        eprintln!("tokio_peer: --duration must be a positive number of seconds");
        return ExitCode::FAILURE;
    }
    if !(args.connect_rate.is_finite() && args.connect_rate > 0.0) {
        eprintln!("tokio_peer: --connect-rate must be positive");
        return ExitCode::FAILURE;
    }
    match run(args) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).expect("a report serializes"));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tokio_peer: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<BenchReport, String> {
    let open_files_limit = raise_open_files_limit().map_err(|e| format!("raising the open-files limit: {e}"))?;
    let server = args
        .server
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", args.server))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", args.server))?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.output)
        .map_err(|e| format!("cannot open {}: {e}", args.output.display()))?;
    let writer = Writer::start(file).map_err(|e| format!("cannot start the writer thread: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the runtime: {e}"))?;
    // `Rc` state and `spawn_local` tasks: a LocalSet on the current thread.
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, bench(args, server, writer, open_files_limit))
}

/// Steps 1–4 of the measurement (see the module docs).
async fn bench(args: Args, server: SocketAddr, writer: Writer, open_files_limit: u64) -> Result<BenchReport, String> {
    let shared = Rc::new(RefCell::new(Shared::new(args.rooms, writer)));
    let flush_wanted = shared.borrow().flush_wanted.clone();
    let all_joined = shared.borrow().all_joined.clone();
    let (stop, stopped) = watch::channel(false);

    let rss_before = rss_bytes("self").map_err(|e| format!("reading RSS: {e}"))?;
    let flusher = tokio::task::spawn_local(flush_loop(shared.clone(), flush_wanted, stopped.clone()));
    let start = Instant::now();
    let per_tick = (args.connect_rate * PACER_TICK.as_secs_f64()).ceil().max(1.0) as u64;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let session = SessionConfig { heartbeat: Duration::from_secs_f64(args.heartbeat), ..SessionConfig::default() };
    let tasks: Vec<_> = (0..args.rooms)
        .map(|index| {
            let room = args.first_room + index;
            let connect_at = start + PACER_TICK * u32::try_from(index / per_tick).unwrap_or(u32::MAX);
            let task = RoomTask { room, server, session, shared: shared.clone(), stopped: stopped.clone() };
            tokio::task::spawn_local(task.run(connect_at, seed ^ room.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        })
        .collect();

    // Until every room has joined (or the deadline).
    let all_joined_in_time =
        tokio::time::timeout_at((start + JOIN_DEADLINE).into(), all_joined.notified()).await.is_ok();
    let join_secs = start.elapsed().as_secs_f64();
    let rooms_joined = shared.borrow().rooms_joined;
    if !all_joined_in_time {
        eprintln!("tokio_peer: only {rooms_joined} of {} rooms joined within {JOIN_DEADLINE:?}", args.rooms);
    }
    let rss_joined = rss_bytes("self").map_err(|e| format!("reading RSS: {e}"))?;

    // The window. Nothing else runs between these statements and the
    // counter resets (one thread, no await), so the window is exact.
    let window = Duration::from_secs_f64(args.duration);
    let cpu_start = {
        let mut shared = shared.borrow_mut();
        shared.messages = 0;
        shared.lateness = LatencyHistogram::default();
        shared.measuring = true;
        cpu_seconds("self").map_err(|e| format!("reading CPU time: {e}"))?
    };
    let window_start = Instant::now();
    tokio::time::sleep(window).await;
    let (cpu_secs, window_secs, messages, lateness) = {
        let mut shared = shared.borrow_mut();
        let cpu_end = cpu_seconds("self").map_err(|e| format!("reading CPU time: {e}"))?;
        shared.measuring = false;
        (cpu_end - cpu_start, window_start.elapsed().as_secs_f64(), shared.messages, shared.lateness.clone())
    };

    // Log out everywhere, wait for the rooms (bounded), flush the output.
    let _ = stop.send(true);
    let wait_for_rooms = async {
        for task in tasks {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(LINGER + Duration::from_secs(5), wait_for_rooms).await.is_err() {
        eprintln!("tokio_peer: some rooms did not close in time");
    }
    let _ = flusher.await;
    let (lost, duplicated, reconnects, write_errors) = {
        let mut shared = shared.borrow_mut();
        shared.flush();
        let mut writer = shared.writer.take().expect("the writer is only taken here");
        (shared.lost, shared.duplicated, shared.reconnects, writer.finish())
    };
    if reconnects > 0 {
        eprintln!("tokio_peer: {reconnects} reconnects");
    }
    if write_errors > 0 {
        eprintln!("tokio_peer: {write_errors} output batches could not be written");
    }

    Ok(BenchReport::from_measurements(Measurements {
        engine: "tokio",
        rooms: args.rooms,
        rooms_joined,
        rate: args.rate,
        join_secs,
        window_secs,
        messages,
        lost,
        duplicated,
        cpu_secs,
        rss_before_bytes: rss_before,
        rss_joined_bytes: rss_joined,
        lateness: &lateness,
        // The runtime's syscalls are not visible from inside.
        loop_stats: None,
        output_write_syscalls: None,
        poll_interval: Duration::ZERO,
        open_files_limit,
    }))
}

/// What every task shares. One thread, so a `RefCell` borrowed only
/// between awaits.
struct Shared {
    rooms: u64,
    /// Lines not handed to the writer yet.
    batch: Vec<u8>,
    writer: Option<Writer>,
    /// Wakes the flusher when the batch gets its first line.
    flush_wanted: Rc<Notify>,
    /// Notified once every room has joined.
    all_joined: Rc<Notify>,
    /// Rooms that have joined at least once.
    rooms_joined: u64,
    /// Inside the measured window.
    measuring: bool,
    /// Numbered room messages delivered in the window.
    messages: u64,
    /// Gaps and repeats of `cid` within a connection, whole run.
    lost: u64,
    duplicated: u64,
    /// Session timer firings in the window: how late after their deadline.
    lateness: LatencyHistogram,
    reconnects: u64,
    /// The message every task decodes into, one read after another (see
    /// `ClientSession::on_bytes_with`), as barrage's monitor does.
    message_buffer: Option<Box<Message>>,
}

impl Shared {
    fn new(rooms: u64, writer: Writer) -> Self {
        Shared {
            rooms,
            batch: Vec::with_capacity(FLUSH_SIZE),
            writer: Some(writer),
            flush_wanted: Rc::new(Notify::new()),
            all_joined: Rc::new(Notify::new()),
            rooms_joined: 0,
            measuring: false,
            messages: 0,
            lost: 0,
            duplicated: 0,
            lateness: LatencyHistogram::default(),
            reconnects: 0,
            message_buffer: Some(Box::default()),
        }
    }

    /// Writes one received message and checks its number.
    fn deliver(&mut self, room: u64, ts_ms: u64, message: &Message, sequence: &mut Sequence) {
        if let Some(number) = message.get("cid").and_then(|cid| cid.parse::<u64>().ok()) {
            let (missing, repeated) = sequence.record(number);
            self.lost += missing;
            self.duplicated += repeated;
            if self.measuring {
                self.messages += 1;
            }
        }
        if self.batch.is_empty() {
            self.flush_wanted.notify_one();
        }
        format::write_line(&mut self.batch, Format::Json, ts_ms, room, message);
        if self.batch.len() >= FLUSH_SIZE {
            self.flush();
        }
    }

    fn room_joined(&mut self) {
        self.rooms_joined += 1;
        if self.rooms_joined == self.rooms {
            self.all_joined.notify_one();
        }
    }

    /// Hands the batch to the writer thread.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(FLUSH_SIZE));
        if let Some(writer) = &self.writer {
            writer.send(batch);
        }
    }
}

/// Flushes the batch `FLUSH_DELAY` after it got its first line, until stopped.
async fn flush_loop(shared: Rc<RefCell<Shared>>, flush_wanted: Rc<Notify>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = flush_wanted.notified() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        tokio::time::sleep(FLUSH_DELAY).await;
        shared.borrow_mut().flush();
    }
}

/// The blocking side of the output: a thread that writes each batch to the
/// file, in order.
struct Writer {
    batches: Option<mpsc::Sender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Writer {
    fn start(mut file: File) -> std::io::Result<Writer> {
        let (batches, received) = mpsc::channel::<Vec<u8>>();
        let thread = std::thread::Builder::new().name("tokio-peer-output".into()).spawn(move || {
            let mut errors = 0u64;
            for batch in received {
                if let Err(e) = file.write_all(&batch) {
                    if errors == 0 {
                        eprintln!("tokio_peer: writing the output failed: {e}");
                    }
                    errors += 1;
                }
            }
            errors
        })?;
        Ok(Writer { batches: Some(batches), thread: Some(thread) })
    }

    fn send(&self, batch: Vec<u8>) {
        if let Some(batches) = &self.batches {
            // Fails only if the thread is gone (it never exits early).
            let _ = batches.send(batch);
        }
    }

    /// Closes the channel, waits for the last batch to be written, and
    /// returns how many batches failed.
    fn finish(&mut self) -> u64 {
        self.batches = None;
        self.thread.take().map_or(0, |thread| thread.join().unwrap_or(1))
    }
}

/// `cid` numbers on one connection: the rules of barrage's `SequenceCheck`.
#[derive(Default)]
struct Sequence {
    current: Option<u64>,
}

impl Sequence {
    /// Records `number`; returns (numbers skipped, 1 if repeated or backwards).
    fn record(&mut self, number: u64) -> (u64, u64) {
        let counts = match self.current {
            Some(previous) if number <= previous => (0, 1),
            Some(previous) => (number - previous - 1, 0),
            None => (0, 0),
        };
        if self.current.is_none_or(|previous| number > previous) {
            self.current = Some(number);
        }
        counts
    }
}

/// How one connection ended.
struct Ended {
    reason: String,
    /// Logged out on request: the task is done.
    shutdown: bool,
    should_reconnect: bool,
}

impl Ended {
    fn failed(reason: impl Into<String>) -> Ended {
        Ended { reason: reason.into(), shutdown: false, should_reconnect: true }
    }
}

/// One room: connect, run the session, reconnect, until stopped.
struct RoomTask {
    room: u64,
    server: SocketAddr,
    session: SessionConfig,
    shared: Rc<RefCell<Shared>>,
    stopped: watch::Receiver<bool>,
}

impl RoomTask {
    async fn run(mut self, connect_at: Instant, seed: u64) {
        if !self.wait_until(connect_at).await {
            return;
        }
        let mut backoff = Backoff::new();
        let mut jitter = Rng::new(seed);
        let mut joined_once = false;
        loop {
            if *self.stopped.borrow() {
                return;
            }
            let opened = Instant::now();
            let ended = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.server)).await {
                Ok(Ok(stream)) => self.connection(stream, jitter.next_f64(), &mut joined_once).await,
                Ok(Err(e)) => Ended::failed(format!("cannot connect: {e}")),
                Err(_) => Ended::failed("connect timed out"),
            };
            if ended.shutdown || *self.stopped.borrow() {
                return;
            }
            if opened.elapsed() >= HEALTHY_AFTER {
                backoff.reset();
            }
            let delay = if ended.should_reconnect {
                backoff.next_delay(jitter.next_f64())
            } else {
                backoff.ceiling().max(Duration::from_secs(60))
            };
            self.shared.borrow_mut().reconnects += 1;
            eprintln!("tokio_peer: room {}: {}; reconnecting in {:.1} s", self.room, ended.reason, delay.as_secs_f64());
            if !self.wait_until(Instant::now() + delay).await {
                return;
            }
        }
    }

    /// Sleeps until `at`; false if stopped meanwhile.
    async fn wait_until(&mut self, at: Instant) -> bool {
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => true,
            _ = self.stopped.wait_for(|stop| *stop) => false,
        }
    }

    /// Drives one connection's session until it closes.
    /// `heartbeat_jitter` spreads its heartbeats (`ClientSession::with_heartbeat_jitter`).
    async fn connection(&mut self, mut stream: TcpStream, heartbeat_jitter: f64, joined_once: &mut bool) -> Ended {
        let room = self.room;
        // Heartbeats spread as barrage's are.
        let mut session = ClientSession::new(room, self.session).with_heartbeat_jitter(heartbeat_jitter);
        let mut sequence = Sequence::default();
        let mut received: Vec<u8> = Vec::new();
        let mut transmit: Vec<u8> = Vec::new();
        // The session timer: one Sleep for the connection, moved as needed.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        // The stop signal, pinned once: no per-message registration.
        let mut stopped = self.stopped.clone();
        let stop = stopped.wait_for(|stop| *stop);
        tokio::pin!(stop);
        let mut stopping = false;

        session.on_connected(Instant::now());
        loop {
            // What the last input caused: bytes to send, a close (messages
            // went out as they were decoded).
            let mut closing = None;
            {
                let mut shared = self.shared.borrow_mut();
                while let Some(event) = session.poll_event() {
                    match event {
                        SessionEvent::Message(message) => shared.deliver(room, unix_ms(), &message, &mut sequence),
                        SessionEvent::Joined => {
                            if !*joined_once {
                                *joined_once = true;
                                shared.room_joined();
                            }
                        }
                        SessionEvent::Close(reason) => closing = Some(reason),
                    }
                }
            }
            if session.poll_transmit(&mut transmit) {
                let written = stream.write_all(&transmit).await;
                transmit.clear();
                if let Err(e) = written {
                    return Ended::failed(format!("write failed: {e}"));
                }
            }
            if let Some(reason) = closing {
                if reason == CloseReason::Shutdown {
                    linger(stream).await;
                    return Ended { reason: reason.to_string(), shutdown: true, should_reconnect: false };
                }
                // Dropping the stream closes it at once: the server is dead
                // or misbehaving, reconnect.
                return Ended {
                    reason: reason.to_string(),
                    shutdown: false,
                    should_reconnect: reason.should_reconnect(),
                };
            }
            if let Some(next) = session.next_deadline()
                && armed.is_none_or(|at| next < at)
            {
                timer.as_mut().reset(next.into());
                armed = Some(next);
            }

            if received.capacity() - received.len() < MIN_FREE {
                received.reserve(READ_CHUNK);
            }
            tokio::select! {
                read = stream.read_buf(&mut received) => match read {
                    Ok(0) => return Ended::failed("server closed the connection"),
                    Ok(_) => {
                        // Each message is written as it is decoded, with
                        // one clock read for the read.
                        let now = Instant::now();
                        let ts_ms = unix_ms();
                        let mut shared = self.shared.borrow_mut();
                        let shared = &mut *shared;
                        let mut buffer = shared.message_buffer.take().unwrap_or_default();
                        let consumed = session.on_bytes_with(&received, now, &mut buffer, |message| {
                            shared.deliver(room, ts_ms, message, &mut sequence)
                        });
                        shared.message_buffer = Some(buffer);
                        received.drain(..consumed);
                        if received.is_empty() && received.capacity() > KEEP_CAPACITY {
                            received = Vec::new();
                        }
                    }
                    Err(e) => return Ended::failed(format!("read failed: {e}")),
                },
                () = &mut timer, if armed.is_some() => {
                    let now = Instant::now();
                    let deadline = armed.take().expect("armed");
                    let mut shared = self.shared.borrow_mut();
                    if shared.measuring {
                        shared.lateness.record(now.saturating_duration_since(deadline));
                    }
                    drop(shared);
                    session.on_timeout(now);
                }
                _ = &mut stop, if !stopping => {
                    stopping = true;
                    session.shutdown();
                }
            }
        }
    }
}

/// The wall clock in milliseconds since the Unix epoch, for a line's `ts`.
fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A graceful close, as barrage's reactor does it: send our FIN after the
/// logout, read and discard until the server's FIN, within `LINGER`.
async fn linger(mut stream: TcpStream) {
    let drain = async {
        stream.shutdown().await?;
        let mut discard = [0u8; 1024];
        while stream.read(&mut discard).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

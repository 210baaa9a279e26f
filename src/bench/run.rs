//! Running one benchmark: the simulator as a child process (its CPU must
//! not count), the watch engine in this process writing to a real sink,
//! and a measured window once every room has joined.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::monitor::format::Format;
use crate::monitor::output::Destination;
use crate::monitor::{Endpoint, Monitor, MonitorConfig, RoomState, Transport};
use crate::plural::plural;
use crate::reactor::{Reactor, ReactorConfig};

use super::process::{cpu_seconds, peak_rss_bytes, raise_open_files_limit, reset_peak_rss, rss_bytes};
use super::report::{BenchReport, Measurements};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub rooms: u64,
    pub first_room: u64,
    pub rate: f64,
    pub window: Duration,
    pub connect_rate: f64,
    /// Where the engines write their JSON lines (a real file or /dev/null).
    pub sink: PathBuf,
    /// How long all rooms may take to join.
    pub join_deadline: Duration,
    /// Every room's session settings: the heartbeat (45 s in real use) is
    /// the timer whose lateness is measured. Checked once, by the caller.
    pub session: crate::douyu::SessionConfig,
    /// The watch engine's `ReactorConfig::min_poll_interval` (the tokio
    /// peer has no such setting).
    pub poll_interval: Duration,
}

/// Descriptors per room (its socket) plus room for the rest of the process.
const SPARE_DESCRIPTORS: u64 = 64;

/// Raises the open-files limit and says clearly if `rooms` cannot fit.
pub fn check_descriptors(rooms: u64) -> Result<u64, String> {
    let limit = raise_open_files_limit().map_err(|e| format!("cannot read or raise the open-files limit: {e}"))?;
    if limit < rooms + SPARE_DESCRIPTORS {
        return Err(format!(
            "{} need about {} open files, but the hard limit is {limit} \
             (raise it: `ulimit -Hn`, LimitNOFILE= in systemd)",
            plural(rooms, "room"),
            rooms + SPARE_DESCRIPTORS
        ));
    }
    Ok(limit)
}

/// `barrage serve` as a child process, killed when dropped.
pub struct SimulatorProcess {
    child: Child,
    pub addr: SocketAddr,
    /// How clients reach it.
    pub transport: Transport,
    /// Its certificate (PEM) when it speaks TLS: what clients trust.
    pub cert_pem: Option<Vec<u8>>,
}

impl SimulatorProcess {
    /// Starts `exe serve` on an ephemeral loopback port at `rate`, speaking
    /// `transport`. Over WebSocket it sends no pings (Douyu's server is not
    /// known to): the rooms' costs are Douyu's traffic only. Over TLS it
    /// offers what Douyu's endpoint offers, with a certificate of its own.
    pub fn start(exe: &std::path::Path, rate: f64, transport: Transport) -> Result<SimulatorProcess, String> {
        let mut command = Command::new(exe);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--stats-interval", "0", "--log-level", "warn"])
            .args(["--rate", &rate.to_string()]);
        let cert_file = std::env::temp_dir().join(format!("barrage-bench-{}.pem", std::process::id()));
        if let Transport::WebSocket { tls, .. } = transport {
            command.args(["--ws", "--ws-ping-interval", "0"]);
            if tls {
                command.args(["--tls", "--tls-cert-out"]).arg(&cert_file);
            }
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the simulator ({}): {e}", exe.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (lines, address_line) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut process =
            SimulatorProcess { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), transport, cert_pem: None };
        let line = address_line
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the simulator did not report its address".to_string())?;
        process.addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| format!("unexpected simulator output: {line}"))?;
        // The certificate is written before the address is reported.
        if process.endpoint().uses_tls() {
            let pem = std::fs::read(&cert_file).map_err(|e| format!("cannot read the simulator's certificate: {e}"));
            let _ = std::fs::remove_file(&cert_file);
            process.cert_pem = Some(pem?);
        }
        Ok(process)
    }

    /// Where the watch engine connects.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint { transport: self.transport.clone(), host: self.addr.ip().to_string(), port: self.addr.port() }
    }
}

impl Drop for SimulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Measures barrage's own engine (the `watch` monitor on one reactor) in
/// this process against `simulator`.
pub fn measure_barrage(
    simulator: &SimulatorProcess,
    config: &BenchConfig,
    open_files_limit: u64,
) -> Result<BenchReport, String> {
    let rss_before = rss_bytes("self").unwrap_or(0);
    let reactor_config = ReactorConfig { min_poll_interval: config.poll_interval, ..ReactorConfig::default() };
    let mut reactor = Reactor::with_config(reactor_config).map_err(|e| format!("cannot create the event loop: {e}"))?;
    let rooms: Vec<u64> = (config.first_room..config.first_room + config.rooms).collect();
    let started = Instant::now();
    let monitor = Monitor::start(
        &mut reactor,
        MonitorConfig {
            rooms,
            servers: vec![simulator.endpoint()],
            ca_pem: simulator.cert_pem.clone(),
            format: Format::Json,
            // The same writer code as `watch --output`, to a real sink.
            output: Destination::File(config.sink.clone()),
            status_interval: Duration::ZERO,
            connects_per_second: config.connect_rate,
            check_sequence: true,
            session: config.session,
            ..MonitorConfig::default()
        },
    )
    .map_err(|e| format!("cannot start the monitor: {e}"))?;

    let joined = |monitor: &Monitor| monitor.state_counts().get(&RoomState::Joined).copied().unwrap_or(0) as u64;
    // Counting walks every room: do it every 20 ms, not every iteration,
    // and never let poll sleep longer than that meanwhile.
    let mut last_check = Instant::now();
    let mut all_joined = false;
    while !all_joined && started.elapsed() < config.join_deadline {
        reactor.turn(Some(Duration::from_millis(20))).map_err(|e| e.to_string())?;
        if last_check.elapsed() >= Duration::from_millis(20) {
            last_check = Instant::now();
            all_joined = joined(&monitor) == config.rooms;
        }
    }
    let join_secs = started.elapsed().as_secs_f64();
    let rooms_joined = joined(&monitor);
    if !all_joined {
        log::warn!("only {rooms_joined} of {} joined within {:?}", plural(config.rooms, "room"), config.join_deadline);
    }
    let rss_joined = rss_bytes("self").unwrap_or(0);

    // The window.
    reactor.reset_stats();
    let received_before = received(&monitor);
    let output_writes_before = monitor.output_write_syscalls();
    let cpu_before = cpu_seconds("self").unwrap_or(0.0);
    let window_start = Instant::now();
    run_window(&mut reactor, window_start + config.window).map_err(|e| e.to_string())?;
    let window_secs = window_start.elapsed().as_secs_f64();
    let cpu_secs = cpu_seconds("self").unwrap_or(0.0) - cpu_before;
    let messages = received(&monitor) - received_before;
    let stats = reactor.stats().clone();
    // The writer thread runs behind the loop by a batch or so: a window of
    // seconds hides that.
    let output_write_syscalls = monitor.output_write_syscalls() - output_writes_before;

    // The stop: every room logs out and closes gracefully. Its peak is what
    // a memory limit must leave room for, so it is measured apart from the
    // joins' (which the peak would otherwise remember).
    let rss_stop_start = rss_bytes("self").ok();
    let peak_reset = reset_peak_rss().is_ok();
    let stop_start = Instant::now();
    monitor.shutdown(&mut reactor);
    let stopped = reactor.run_until(stop_start + Duration::from_secs(10), |_| monitor.is_idle()).unwrap_or(false);
    let stop_secs = stop_start.elapsed().as_secs_f64();
    let rss_stop_peak = if peak_reset { peak_rss_bytes().ok() } else { None };
    if !stopped {
        log::warn!("not every room closed within 10 s of the stop");
    }
    let unwritten = monitor.finish_output(Duration::from_secs(10));
    if unwritten.lines > 0 {
        return Err(format!(
            "{} ({} bytes) of output were not written to {}",
            plural(unwritten.lines, "message"),
            unwritten.bytes,
            config.sink.display()
        ));
    }
    let (lost, duplicated) =
        monitor.rooms().iter().fold((0, 0), |(l, d), room| (l + room.sequence.missing, d + room.sequence.duplicated));

    let mut report = BenchReport::from_measurements(Measurements {
        engine: "barrage",
        rooms: config.rooms,
        rooms_joined,
        rate: config.rate,
        join_secs,
        window_secs,
        messages,
        lost,
        duplicated,
        cpu_secs,
        rss_before_bytes: rss_before,
        rss_joined_bytes: rss_joined,
        lateness: &stats.timer_lateness,
        loop_stats: Some(&stats),
        output_write_syscalls: Some(output_write_syscalls),
        poll_interval: config.poll_interval,
        open_files_limit,
    });
    report.transport = simulator.transport.scheme().to_string();
    report.stop_secs = Some(stop_secs);
    report.rss_stop_start_bytes = rss_stop_start;
    report.rss_stop_peak_bytes = rss_stop_peak;
    Ok(report)
}

/// The measured window: the reactor runs until `end`. A function of its
/// own, never inlined, so that a profiler can count just the window:
/// `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*run_window*' barrage bench …`.
#[inline(never)]
fn run_window(reactor: &mut Reactor, end: Instant) -> std::io::Result<bool> {
    reactor.run_until(end, |_| false)
}

/// Runs the tokio peer (`examples/tokio_peer.rs`, built separately) against
/// the same simulator and reads its report line.
pub fn measure_peer(peer: &std::path::Path, server: SocketAddr, config: &BenchConfig) -> Result<BenchReport, String> {
    let output = Command::new(peer)
        .args(["--server", &server.to_string()])
        .args(["--rooms", &config.rooms.to_string()])
        .args(["--first-room", &config.first_room.to_string()])
        .args(["--duration", &config.window.as_secs_f64().to_string()])
        .args(["--connect-rate", &config.connect_rate.to_string()])
        .args(["--rate", &config.rate.to_string()])
        .args(["--heartbeat", &config.session.heartbeat.as_secs_f64().to_string()])
        .args(["--output", &config.sink.display().to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run the peer {}: {e}", peer.display()))?;
    if !output.status.success() {
        return Err(format!("the peer {} failed ({})", peer.display(), output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).ok_or("the peer printed no report")?;
    serde_json::from_str(line).map_err(|e| format!("cannot read the peer's report: {e}"))
}

fn received(monitor: &Monitor) -> u64 {
    monitor.rooms().iter().map(|room| room.sequence.received).sum()
}

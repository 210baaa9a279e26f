//! `barrage bench`: rooms, memory, CPU and timer lateness, measured.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::bench::report::BenchReport;
use crate::bench::run::{self, BenchConfig, SimulatorProcess};
use crate::douyu::SessionConfig;
use crate::monitor::MonitorConfig;
use crate::plural::plural;

use super::{
    Failure, LogLevel, TransportArg, init_logging, log_level, parse_connect_rate, parse_positive_seconds, whole_number,
};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Rooms to watch (one connection each).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = parse_rooms, allow_negative_numbers = true)]
    rooms: u64,

    /// Messages per second per room from the simulator (0: idle mode —
    /// wake-ups per second and CPU% with no traffic).
    #[arg(long, value_name = "PER_SEC", default_value = "1", value_parser = super::parse_rate, allow_negative_numbers = true)]
    rate: f64,

    /// Seconds measured, once every room has joined.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_positive_seconds, allow_negative_numbers = true)]
    duration: Duration,

    /// Heartbeat interval per room, seconds. Heartbeats are the timers
    /// whose lateness is reported, so the window should hold a few.
    /// [default: 45 (watch's), or a third of --duration if that is shorter]
    #[arg(long, value_name = "SECS", value_parser = super::parse_seconds, allow_negative_numbers = true)]
    heartbeat: Option<Duration>,

    /// The watch engine polls its sockets at most once per this many
    /// milliseconds (`watch --poll-interval`, read coalescing); 0 polls
    /// whenever idle. The peer is unchanged. [default: 100, as watch]
    #[arg(long, value_name = "MS", value_parser = super::parse_milliseconds, allow_negative_numbers = true)]
    poll_interval: Option<Duration>,

    /// New connections per second while joining (up to 10000).
    #[arg(long, value_name = "PER_SEC", default_value = "2000", value_parser = parse_connect_rate, allow_negative_numbers = true)]
    connect_rate: f64,

    /// Where the JSON lines go (through the same writer as `watch --output`).
    #[arg(long, value_name = "FILE", default_value = "/dev/null")]
    sink: PathBuf,

    /// How the rooms reach the simulator. Over wss the simulator sends no
    /// WebSocket pings, so both carry Douyu's traffic only.
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    transport: TransportArg,

    /// Also run this peer binary (e.g. target/release/examples/tokio_peer)
    /// against the same simulator, and print both rows and their ratios
    /// (TCP only: the peer speaks no WebSocket).
    #[arg(long, value_name = "PATH")]
    peer: Option<PathBuf>,

    /// Print the results as JSON (one object; with --peer, an array).
    #[arg(long)]
    json: bool,

    /// How much to log (to stderr). [default: the level in RUST_LOG, else warn]
    #[arg(long, value_enum)]
    log_level: Option<LogLevel>,
}

fn parse_rooms(text: &str) -> Result<u64, String> {
    whole_number(text, 1, 100_000_000, "rooms")
}

/// Three heartbeats in the window, at most watch's 45 s.
fn heartbeat_for(window: Duration) -> Duration {
    (window / 3).clamp(crate::douyu::session::MIN_HEARTBEAT, SessionConfig::default().heartbeat)
}

pub(crate) fn run(args: &BenchArgs) -> Result<(), Failure> {
    let heartbeat = args.heartbeat.unwrap_or_else(|| heartbeat_for(args.duration));
    let session = SessionConfig { heartbeat, ..SessionConfig::default() };
    // The settings the engine runs with, checked as watch checks them.
    let monitor = MonitorConfig { session, connects_per_second: args.connect_rate, ..MonitorConfig::default() };
    let poll_interval = args.poll_interval.unwrap_or_else(|| monitor.default_poll_interval());
    monitor.validate(poll_interval)?;
    if args.peer.is_some() && args.transport != TransportArg::Tcp {
        return Err(Failure::Usage("--peer runs over TCP only (the tokio peer speaks no WebSocket)".into()));
    }
    if let Some(peer) = &args.peer {
        check_peer(peer)?;
    }
    init_logging(log_level(args.log_level, LogLevel::Warn));
    if heartbeat >= args.duration {
        log::warn!(
            "the heartbeat ({} s) is not shorter than the window (--duration {} s): few or no timers fire in it, \
             and lateness shows as - when none does",
            heartbeat.as_secs_f64(),
            args.duration.as_secs_f64()
        );
    }
    // Check the sink before starting anything: its error names the path.
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&args.sink)
        .map_err(|e| Failure::Runtime(format!("cannot write to --sink {}: {e}", args.sink.display())))?;
    run_checked(args, session, poll_interval).map_err(Failure::Runtime)
}

/// A `--peer` path that names no program is a mistake to tell now, not
/// after the measurement of barrage (a bare name is looked up in `PATH`
/// when it runs).
fn check_peer(peer: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    if peer.components().count() < 2 {
        return Ok(());
    }
    let refuse = |why: String| Err(Failure::Usage(format!("cannot run --peer {}: {why}", peer.display())));
    match std::fs::metadata(peer) {
        Err(e) => refuse(e.to_string()),
        Ok(file) if !file.is_file() => refuse("not a file".into()),
        Ok(file) if file.permissions().mode() & 0o111 == 0 => refuse("not executable".into()),
        Ok(_) => Ok(()),
    }
}

fn run_checked(args: &BenchArgs, session: SessionConfig, poll_interval: Duration) -> Result<(), String> {
    let open_files_limit = run::check_descriptors(args.rooms)?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let simulator = SimulatorProcess::start(&exe, args.rate, args.transport.transport())?;
    let config = BenchConfig {
        rooms: args.rooms,
        first_room: 1,
        rate: args.rate,
        window: args.duration,
        connect_rate: args.connect_rate,
        sink: args.sink.clone(),
        join_deadline: Duration::from_secs(120),
        session,
        poll_interval,
    };
    log::info!(
        "bench: {} at {}/s against the simulator at {}",
        plural(args.rooms, "room"),
        args.rate,
        simulator.endpoint()
    );
    let mut rows = vec![run::measure_barrage(&simulator, &config, open_files_limit)?];
    if let Some(peer) = &args.peer {
        // Fresh room ids, so the peer's connections start clean streams.
        let peer_config = BenchConfig { first_room: args.rooms + 1, ..config.clone() };
        let mut report = run::measure_peer(peer, simulator.addr, &peer_config)?;
        report.open_files_limit = open_files_limit;
        rows.push(report);
    }
    if args.json {
        let json = if rows.len() == 1 { serde_json::to_string(&rows[0]) } else { serde_json::to_string(&rows) };
        println!("{}", json.map_err(|e| e.to_string())?);
    } else {
        print_table(&rows, session.heartbeat);
    }
    Ok(())
}

fn print_table(rows: &[BenchReport], heartbeat: Duration) {
    println!(
        "heartbeat every {} s (--heartbeat); lateness is that of the timers fired in the window",
        heartbeat.as_secs_f64()
    );
    if let Some(ours) = rows.first().filter(|row| row.transport == "wss") {
        println!("{} reaches the simulator over wss: WebSocket over TLS 1.2 (AES256-GCM-SHA384)", ours.engine);
    }
    if let Some(ours) = rows.first().filter(|row| row.poll_interval_ms > 0.0) {
        println!("{} polls its sockets at most every {} ms (--poll-interval)", ours.engine, ours.poll_interval_ms);
    }
    println!("{}", BenchReport::header());
    for row in rows {
        println!("{}", row.row());
    }
    if let Some(ours) = rows.first()
        && let (Some(secs), Some(start), Some(peak)) =
            (ours.stop_secs, ours.rss_stop_start_bytes, ours.rss_stop_peak_bytes)
    {
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        println!(
            "{} stopped in {secs:.2} s: RSS {:.1} MiB at the stop, {:.1} MiB at its peak",
            ours.engine,
            mib(start),
            mib(peak)
        );
    }
    if let [ours, peer] = rows {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "-".into(),
        };
        println!(
            "barrage / {}: CPU per message {}, memory per room {}, lateness p99 {}",
            peer.engine,
            ratio(ours.cpu_us_per_message, peer.cpu_us_per_message),
            ratio(Some(ours.rss_per_room_bytes), Some(peer.rss_per_room_bytes)),
            ratio(
                Some(ours.lateness_p99_ms).filter(|_| ours.timers_fired > 0),
                Some(peer.lateness_p99_ms).filter(|_| peer.timers_fired > 0)
            ),
        );
    }
}

//! `barrage demo`: the simulated server and the monitor in one process, on
//! one reactor and one thread, on loopback — what barrage does, at a glance.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;

use crate::monitor::format::Format;
use crate::monitor::output::Destination;
use crate::monitor::{Monitor, MonitorConfig};
use crate::reactor::Reactor;
use crate::sim::{self, SimConfig};

use super::watch::run_daemon;
use super::{Failure, LogLevel, init_logging};

/// The first demo room; rooms are numbered from here.
const FIRST_ROOM: u64 = 100_001;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many rooms to watch.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    rooms: u64,

    /// Messages per second in each room.
    #[arg(long, value_name = "PER_SEC", default_value = "1", value_parser = super::parse_rate)]
    rate: f64,

    /// Stop after this many seconds. [default: run until Ctrl-C]
    #[arg(long, value_name = "SECS", value_parser = super::parse_seconds)]
    duration: Option<Duration>,

    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &DemoArgs, log_level: Option<LogLevel>) -> Result<(), Failure> {
    if args.duration.is_some_and(|duration| duration.is_zero()) {
        return Err(Failure::Usage("--duration must be above 0".into()));
    }
    init_logging(log_level.unwrap_or(LogLevel::Info));
    let mut reactor = Reactor::new().map_err(|e| Failure::Runtime(format!("cannot create the event loop: {e}")))?;
    let server = sim::start(
        &mut reactor,
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rate: args.rate,
            stats_interval: None,
            ..SimConfig::default()
        },
    )
    .map_err(|e| Failure::Runtime(format!("cannot start the simulated server: {e}")))?;
    let rooms: Vec<u64> = (FIRST_ROOM..FIRST_ROOM + args.rooms).collect();
    log::info!(
        "demo: a simulated Douyu server on {}, and {} rooms watched from this one thread; Ctrl-C to stop",
        server.local_addr(),
        rooms.len()
    );
    let monitor = Monitor::start(
        &mut reactor,
        MonitorConfig {
            rooms,
            servers: vec![crate::monitor::Endpoint::tcp(server.local_addr())],
            format: if args.json { Format::Json } else { Format::Text },
            output: Destination::Stdout,
            status_interval: Duration::from_secs(10),
            check_sequence: true,
            ..MonitorConfig::default()
        },
    )
    .map_err(|e| Failure::Runtime(format!("cannot start the monitor: {e}")))?;
    let started = Instant::now();
    run_daemon(&mut reactor, &monitor, None, args.duration, crate::monitor::DEFAULT_FLUSH_TIMEOUT)?;
    print_summary(&monitor, started.elapsed(), reactor.stats().iterations);
    Ok(())
}

/// Messages per room, and what the sequence numbers prove.
fn print_summary(monitor: &Monitor, elapsed: Duration, iterations: u64) {
    let rooms = monitor.rooms();
    let received: u64 = rooms.iter().map(|r| r.sequence.received).sum();
    let missing: u64 = rooms.iter().map(|r| r.sequence.missing).sum();
    let duplicated: u64 = rooms.iter().map(|r| r.sequence.duplicated).sum();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\n── demo summary ({:.1} s, {} loop iterations, one thread) ──",
        elapsed.as_secs_f64(),
        iterations
    );
    for room in &rooms {
        let span = match (room.sequence.first, room.sequence.last) {
            (Some(first), Some(last)) => format!("cid {first}–{last}"),
            _ => "no room messages yet".to_string(),
        };
        let _ = writeln!(
            out,
            "room {}: {:>5} messages ({span}), {} missing, {} duplicated",
            room.id, room.sequence.received, room.sequence.missing, room.sequence.duplicated
        );
    }
    let verdict = if missing == 0 && duplicated == 0 { "none lost, none duplicated" } else { "SEE ABOVE" };
    let _ = writeln!(out, "{} rooms, {received} numbered messages: {verdict}", rooms.len());
}

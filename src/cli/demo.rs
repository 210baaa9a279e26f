//! `barrage demo`: the simulated server and the monitor in one process, on
//! one reactor and one thread, on loopback — what barrage does, at a glance.
//!
//! Stdout carries the messages only; with `--json` it is pure JSON lines
//! (the summary goes to stderr), so `barrage demo --json | jq` works.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;

use crate::monitor::format::Format;
use crate::monitor::output::Destination;
use crate::monitor::{Endpoint, Monitor, MonitorConfig};
use crate::reactor::Reactor;
use crate::sim::{self, SimConfig, SimTls, SimWebSocket};

use super::watch::run_daemon;
use super::{
    ColorChoice, Failure, LogLevel, TransportArg, init_logging, log_level, plural, stdout_is_terminal, whole_number,
};

/// The first demo room; rooms are numbered from here.
const FIRST_ROOM: u64 = 100_001;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many rooms to watch (1 to 10000).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = parse_rooms, allow_negative_numbers = true)]
    rooms: u64,

    /// Messages per second in each room.
    #[arg(long, value_name = "PER_SEC", default_value = "1", value_parser = super::parse_rate, allow_negative_numbers = true)]
    rate: f64,

    /// Stop after this many seconds. [default: run until Ctrl-C]
    #[arg(long, value_name = "SECS", value_parser = super::parse_positive_seconds, allow_negative_numbers = true)]
    duration: Option<Duration>,

    /// Print JSON lines instead of text (and the summary on stderr).
    #[arg(long)]
    json: bool,

    /// How the rooms reach the server.
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    transport: TransportArg,

    /// Colour in text output (auto: on a terminal, unless NO_COLOR is set).
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    color: ColorChoice,

    /// How much to log (to stderr). [default: the level in RUST_LOG, else info]
    #[arg(long, value_enum)]
    log_level: Option<LogLevel>,
}

fn parse_rooms(text: &str) -> Result<u64, String> {
    whole_number(text, 1, 10_000, "rooms")
}

pub(crate) fn run(args: &DemoArgs) -> Result<(), Failure> {
    init_logging(log_level(args.log_level, LogLevel::Info));
    let mut reactor = Reactor::new().map_err(|e| Failure::Runtime(format!("cannot create the event loop: {e}")))?;
    // wss: TLS as Douyu's endpoint offers it, with a certificate made now
    // and trusted by the monitor below.
    let wss = args.transport == TransportArg::Wss;
    let tls = wss
        .then(|| SimTls::self_signed(crate::reactor::CipherPolicy::Legacy))
        .transpose()
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let ca_pem = tls.as_ref().map(|tls| tls.cert_pem.clone());
    let server = sim::start(
        &mut reactor,
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rate: args.rate,
            stats_interval: None,
            tls,
            websocket: wss.then(SimWebSocket::default),
            ..SimConfig::default()
        },
    )
    .map_err(|e| Failure::Runtime(format!("cannot start the simulated server: {e}")))?;
    let endpoint =
        Endpoint { transport: args.transport.transport(), host: "127.0.0.1".into(), port: server.local_addr().port() };
    let rooms: Vec<u64> = (FIRST_ROOM..FIRST_ROOM + args.rooms).collect();
    let until = match args.duration {
        Some(duration) => format!("for {} s", duration.as_secs_f64()),
        None => "Ctrl-C to stop".to_string(),
    };
    log::info!(
        "demo: a simulated Douyu server on {endpoint}, and {} watched from this one thread; {until}",
        plural(rooms.len() as u64, "room")
    );
    let monitor = Monitor::start(
        &mut reactor,
        MonitorConfig {
            rooms,
            servers: vec![endpoint],
            ca_pem,
            format: if args.json { Format::Json } else { args.color.text_format(stdout_is_terminal()) },
            output: Destination::Stdout,
            status_interval: Duration::from_secs(10),
            check_sequence: true,
            ..MonitorConfig::default()
        },
    )
    .map_err(|e| Failure::Runtime(format!("cannot start the monitor: {e}")))?;
    let started = Instant::now();
    run_daemon(&mut reactor, &monitor, None, args.duration, crate::monitor::DEFAULT_FLUSH_TIMEOUT)?;
    let summary = summary(&monitor, started.elapsed(), reactor.stats().iterations);
    // The summary is no message: with JSON lines on stdout it goes to
    // stderr. (A reader that left, `demo | head`, does not want it either.)
    let _ = if args.json {
        std::io::stderr().lock().write_all(summary.as_bytes())
    } else {
        std::io::stdout().lock().write_all(summary.as_bytes())
    };
    Ok(())
}

/// Messages per room, and what the sequence numbers prove.
fn summary(monitor: &Monitor, elapsed: Duration, iterations: u64) -> String {
    use std::fmt::Write as _;
    let rooms = monitor.rooms();
    let received: u64 = rooms.iter().map(|r| r.sequence.received).sum();
    let missing: u64 = rooms.iter().map(|r| r.sequence.missing).sum();
    let duplicated: u64 = rooms.iter().map(|r| r.sequence.duplicated).sum();
    let mut out = String::new();
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
    let _ = writeln!(out, "{}, {received} numbered messages: {verdict}", plural(rooms.len() as u64, "room"));
    out
}

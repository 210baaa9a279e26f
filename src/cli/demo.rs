//! `barrage demo`: the simulated server and the monitor in one process, on
//! one reactor and one thread, on loopback — what barrage does, at a glance.
//! Rooms go live, off air and into replay loops on the simulator's schedule,
//! and one more room is named by a vanity id, looked up as `watch` does.
//!
//! Stdout carries the messages only; with `--json` it is pure JSON lines
//! (the summary goes to stderr), so `barrage demo --json | jq` works.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;

use crate::monitor::format::Format;
use crate::monitor::output::Destination;
use crate::monitor::{DEFAULT_STATUS_CHECK, Endpoint, Monitor, MonitorConfig, WebLookups};
use crate::plural::{noun_for, plural};
use crate::reactor::Reactor;
use crate::sim::{self, SimConfig, SimTls, SimWebSocket, WebConfig};

use super::watch::run_daemon;
use super::{ColorChoice, Failure, LogLevel, TransportArg, init_logging, log_level, stdout_is_terminal, whole_number};

/// The first demo room; rooms are numbered from here.
const FIRST_ROOM: u64 = 100_001;
/// A room watched besides, by its vanity id, and the id it stands for.
const VANITY: (u64, u64) = (6657, 6979222);
/// How long a simulated broadcast cycle lasts (see `sim::status`), and how
/// long a stream must be off to be told as ended: a demo's seconds, not the
/// real 90 s, but longer than a stream's drops (a tenth of a cycle).
const STATUS_PERIOD: Duration = Duration::from_secs(20);
const GRACE: Duration = Duration::from_secs(3);
/// The simulator's seed: with it, 6657's room goes off air 2.7 s in (told
/// at 5.7 s, once the grace is over) and is back at 7.9 s.
const SEED: u64 = 41;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many rooms to watch (1 to 10000), besides 6657, a vanity id.
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
            seed: SEED,
            status_period: STATUS_PERIOD,
            vanity: [VANITY].into(),
            web: Some(WebConfig::default()),
            tls,
            websocket: wss.then(SimWebSocket::default),
            ..SimConfig::default()
        },
    )
    .map_err(|e| Failure::Runtime(format!("cannot start the simulated server: {e}")))?;
    let endpoint =
        Endpoint { transport: args.transport.transport(), host: "127.0.0.1".into(), port: server.local_addr().port() };
    let rooms: Vec<u64> = [VANITY.0].into_iter().chain(FIRST_ROOM..FIRST_ROOM + args.rooms).collect();
    let web = server.web().and_then(|web| crate::http::Url::parse(&web.base_url()).ok());
    let until = match args.duration {
        Some(duration) => format!("for {} s", duration.as_secs_f64()),
        None => "Ctrl-C to stop".to_string(),
    };
    log::info!(
        "demo: a simulated Douyu server on {endpoint}, and {} (and {}, a vanity id) watched from this one thread; {until}",
        plural(args.rooms, "room"),
        VANITY.0
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
            web: Some(WebLookups::new(web, true, DEFAULT_STATUS_CHECK)),
            live_grace: GRACE,
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
        "\n── demo summary ({:.1} s, {}, one thread) ──",
        elapsed.as_secs_f64(),
        plural(iterations, "loop iteration")
    );
    for room in &rooms {
        let span = match (room.sequence.first, room.sequence.last) {
            (Some(first), Some(last)) => format!("cid {first}–{last}"),
            _ => "no room messages yet".to_string(),
        };
        let name =
            if room.written == room.id { room.id.to_string() } else { format!("{} ({})", room.id, room.written) };
        let _ = writeln!(
            out,
            "room {name}: {:>5} {} ({span}), {} missing, {} duplicated",
            room.sequence.received,
            noun_for(room.sequence.received, "message"),
            room.sequence.missing,
            room.sequence.duplicated
        );
    }
    let verdict = if missing == 0 && duplicated == 0 { "none lost, none duplicated" } else { "SEE ABOVE" };
    let numbered = plural(rooms.iter().filter(|room| room.written != VANITY.0).count() as u64, "room");
    let vanity = rooms.iter().find(|room| room.written == VANITY.0).map_or(VANITY.0, |room| room.id);
    let received = plural(received, "numbered message");
    let _ = writeln!(out, "{numbered}, and {} (as {vanity}); {received}: {verdict}", VANITY.0);
    out
}

//! The `barrage` command line.
//!
//! One subcommand per job; each has an args struct (its flags, with help
//! and defaults) and a function that runs it: `watch` ([`watch`],
//! [`daemon`]), `serve` (here), `demo` ([`demo`]).
//!
//! Errors are one line on stderr, `barrage: error: …`, and a non-zero exit:
//! 2 for a bad command line, 1 for a failure while running.

pub mod bench;
pub mod daemon;
pub mod demo;
pub mod watch;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::douyu::SessionConfig;
use crate::reactor::{Reactor, ReactorConfig};
use crate::sim::{self, Faults, SimConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::monitor::Monitor;
use demo::DemoArgs;
use watch::{FileConfig, WatchArgs};

/// Watch Douyu (斗鱼) live-chat rooms from one thread, or simulate the server.
#[derive(Debug, Parser)]
#[command(name = "barrage", version)]
struct Cli {
    /// How much to log (to stderr). [default: info (bench: warn), or log_level in --config]
    #[arg(long, value_enum, global = true)]
    log_level: Option<LogLevel>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch Douyu rooms: every message as one line (JSON or text) on stdout
    /// or in a file, from one thread, until SIGINT/SIGTERM.
    ///
    /// Each room connects, logs in, joins, and sends a heartbeat every
    /// --heartbeat seconds; it reconnects with jittered backoff (1 s doubling
    /// to 60 s, never giving up). When the output cannot keep up, rooms stop
    /// reading until it drains: nothing is dropped. SIGHUP re-reads --config
    /// (rooms added start, removed stop) and reopens --output. JSON lines are
    /// {"ts": ms, "room": id, "type": "...", "fields": {...}}.
    Watch(WatchArgs),
    /// Measure the watch engine against the simulator (a child process):
    /// rooms joined, messages, loss, CPU, memory per room, timer lateness,
    /// syscalls per message; --rate 0 measures an idle daemon.
    Bench(bench::BenchArgs),
    /// The simulated server and the monitor in one process, on loopback:
    /// watch 20 rooms stream by, then a summary proving nothing was lost.
    Demo(DemoArgs),
    /// Run a simulated Douyu barrage server, for offline tests and benchmarks.
    ///
    /// Answers loginreq, joingroup, mrkl and logout like Douyu's server, and
    /// sends every joined room realistic messages numbered 1, 2, 3, ... in
    /// `cid`. Prints "listening on ADDR" on stdout once bound. All faults are
    /// off unless asked for; bad frames cycle through: oversized length,
    /// mismatched lengths, wrong packet type, missing terminator.
    Serve(ServeArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// `barrage serve`: the flags map one to one onto `SimConfig`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on, IP:PORT (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8601")]
    listen: SocketAddr,

    /// Room messages per second, per room with clients (0.05 is fine; 0 = none).
    #[arg(long, value_name = "PER_SEC", default_value = "2", value_parser = parse_rate, allow_negative_numbers = true)]
    rate: f64,

    /// Drop a client that sends nothing for this many seconds (0.5 is fine).
    #[arg(long, value_name = "SECS", default_value = "90", value_parser = parse_seconds, allow_negative_numbers = true)]
    heartbeat_timeout: Duration,

    /// Seed for messages and faults: same seed, same messages in a room.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,

    /// Drop a client with this much unwritten output (bytes, KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = parse_bytes)]
    max_client_buffer: usize,

    /// Log clients, rooms and messages/s every this many seconds (0 = never).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_interval, allow_negative_numbers = true)]
    stats_interval: Duration,

    /// Fault: write each frame in pieces of 1-40 bytes, one write each.
    #[arg(long)]
    fragment: bool,

    /// Fault: write room messages in bursts (every 200 ms or 64 frames).
    #[arg(long)]
    coalesce: bool,

    /// Fault: close a client's connection after N room messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    drop_every: Option<u64>,

    /// Fault: after N room messages, send an invalid frame and close.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    corrupt_every: Option<u64>,

    /// Fault: after N room messages, stop writing (the socket stays open).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    stall_after: Option<u64>,
}

impl ServeArgs {
    fn config(&self) -> SimConfig {
        SimConfig {
            listen: self.listen,
            rate: self.rate,
            heartbeat_timeout: self.heartbeat_timeout,
            seed: self.seed,
            max_client_buffer: self.max_client_buffer,
            stats_interval: Some(self.stats_interval).filter(|interval| !interval.is_zero()),
            faults: Faults {
                fragment: self.fragment,
                coalesce: self.coalesce,
                drop_every: self.drop_every,
                corrupt_every: self.corrupt_every,
                stall_after: self.stall_after,
            },
        }
    }
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return command_line_error(error),
    };
    let result = match &cli.command {
        Command::Serve(args) => {
            init_logging(cli.log_level.unwrap_or(LogLevel::Info));
            serve(args)
        }
        Command::Demo(args) => {
            init_logging(cli.log_level.unwrap_or(LogLevel::Info));
            demo::run(args)
        }
        Command::Watch(args) => watch(args, cli.log_level),
        Command::Bench(args) => {
            init_logging(cli.log_level.unwrap_or(LogLevel::Warn));
            bench::run(args)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("barrage: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `barrage watch`: flags and config file merged, the monitor (and its
/// metrics endpoint) on a new reactor, run as a daemon.
fn watch(args: &WatchArgs, log_level: Option<LogLevel>) -> Result<(), String> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let settings = args.settings(&file, log_level)?;
    init_logging(settings.log_level);
    if settings.monitor.rooms.is_empty() {
        return Err(if settings.shard == crate::monitor::shard::Shard::ALL {
            "no rooms to watch: give room ids, or rooms = [...] in --config".to_string()
        } else {
            format!("shard {} has none of the configured rooms", settings.shard)
        });
    }
    let reactor_config = ReactorConfig { min_poll_interval: settings.poll_interval, ..ReactorConfig::default() };
    let mut reactor = Reactor::with_config(reactor_config).map_err(|e| format!("cannot create the event loop: {e}"))?;
    let monitor =
        Monitor::start(&mut reactor, settings.monitor.clone()).map_err(|e| match &settings.monitor.output {
            crate::monitor::output::Destination::File(path) => format!("cannot open {}: {e}", path.display()),
            _ => format!("cannot start: {e}"),
        })?;
    if let Some(addr) = settings.metrics {
        let server = crate::monitor::metrics::start(&mut reactor, addr, monitor.clone())
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        log::info!("metrics on http://{}/metrics and /rooms", server.local_addr());
    }
    log::info!(
        "watching {} rooms via {} (shard {})",
        settings.monitor.rooms.len(),
        settings.monitor.servers.join(", "),
        settings.shard
    );
    let reload = daemon::Reload {
        config_path: settings.config_path.clone(),
        cli_rooms: settings.cli_rooms.clone(),
        shard: Some(settings.shard),
    };
    daemon::run(&mut reactor, &monitor, reload, None, settings.monitor.flush_timeout)
}

/// `barrage serve`: a new reactor, the simulator on it, run forever.
fn serve(args: &ServeArgs) -> Result<(), String> {
    let mut reactor = Reactor::new().map_err(|e| format!("cannot create the event loop: {e}"))?;
    let server =
        sim::start(&mut reactor, args.config()).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    // Scripts and tests read the real address (port 0) from this line.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", server.local_addr())
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    reactor.run().map_err(|e| format!("event loop failed: {e}"))
}

/// Help and version go where clap sends them; a real error becomes one line.
fn command_line_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        error.exit();
    }
    let rendered = error.to_string();
    let first_line = rendered.lines().next().unwrap_or("invalid command line");
    let message = first_line.strip_prefix("error: ").unwrap_or(first_line);
    eprintln!("barrage: error: {message} (see 'barrage --help')");
    ExitCode::from(2)
}

fn init_logging(level: LogLevel) {
    let level = match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    };
    // Only fails if a logger is already set, which nothing else does.
    let _ = simple_logger::SimpleLogger::new().with_level(level).init();
}

// ----- value parsers: each error is one short sentence ----------------------

pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=sim::MAX_RATE).contains(&rate) => Ok(rate),
        _ => Err(format!("expected messages per second, from 0 to {}", sim::MAX_RATE)),
    }
}

pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    match parse_interval(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!("expected seconds, above 0 and at most {}", sim::MAX_INTERVAL.as_secs())),
    }
}

/// Seconds, where 0 (meaning "never") is allowed.
pub(crate) fn parse_interval(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|duration| *duration <= sim::MAX_INTERVAL)
        .ok_or_else(|| format!("expected seconds, from 0 (never) to {}", sim::MAX_INTERVAL.as_secs()))
}

/// `--poll-interval` when none is given (less with short beats: see [`default_poll_interval`]).
/// A monitor writes chat to a file or a pipeline, where 100 ms of delay
/// goes unseen, while polling less often saves CPU on every busy room
/// (see "Read coalescing" in the README for the measurements).
pub(crate) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The poll interval when none is given: [`DEFAULT_POLL_INTERVAL`], or
/// less when the heartbeat, or the time from a heartbeat to the idle
/// timeout, is short, so that [`check_poll_interval`] holds with room to spare.
pub(crate) fn default_poll_interval(session: &SessionConfig) -> Duration {
    let slack = session.idle_timeout.saturating_sub(session.heartbeat);
    DEFAULT_POLL_INTERVAL.min(session.heartbeat / 2).min(slack / 2)
}

/// The longest `--poll-interval` allowed. Everything that arrives through
/// poll may wait this long, including the shutdown signal; a second is
/// already far more delay than read coalescing needs.
pub(crate) const MAX_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Milliseconds between polls for I/O, from 0 (poll whenever idle) to
/// [`MAX_POLL_INTERVAL`]; fractions allowed (`0.5`).
pub(crate) fn parse_poll_interval(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
        .filter(|interval| *interval <= MAX_POLL_INTERVAL)
        .ok_or_else(|| format!("expected milliseconds, from 0 (off) to {}", MAX_POLL_INTERVAL.as_millis()))
}

/// The heartbeat must be shorter than the idle timeout, or quiet rooms time
/// out between beats.
pub(crate) fn check_heartbeat(session: &SessionConfig) -> Result<(), String> {
    if session.heartbeat >= session.idle_timeout {
        return Err(format!(
            "heartbeat ({} s) must be shorter than idle_timeout ({} s), or quiet rooms time out between beats",
            session.heartbeat.as_secs_f64(),
            session.idle_timeout.as_secs_f64()
        ));
    }
    Ok(())
}

/// The poll interval must be shorter than the heartbeat: otherwise every
/// reply, and every message, could wait longer than a beat. And a beat plus
/// an interval must be shorter than the idle timeout: the reply to a beat
/// may wait one interval in the kernel, and the idle timer, due before the
/// next poll, fires before that poll reads it.
pub(crate) fn check_poll_interval(poll_interval: Duration, session: &SessionConfig) -> Result<(), String> {
    let ms = poll_interval.as_micros() as f64 / 1e3;
    if poll_interval >= session.heartbeat {
        return Err(format!(
            "the poll interval ({ms} ms) must be shorter than the heartbeat ({} s)",
            session.heartbeat.as_secs_f64()
        ));
    }
    if session.heartbeat + poll_interval >= session.idle_timeout {
        return Err(format!(
            "the heartbeat ({} s) plus the poll interval ({ms} ms) must be shorter than idle_timeout ({} s), \
             or a quiet room's reply can be read only after the room was judged idle",
            session.heartbeat.as_secs_f64(),
            session.idle_timeout.as_secs_f64()
        ));
    }
    Ok(())
}

/// `4096`, `512KiB`, `16MiB`, `1GiB`.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let multiplier: usize = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(format!("unknown unit {unit:?}: use bytes, KiB, MiB or GiB")),
    };
    match digits.parse::<usize>().ok().and_then(|n| n.checked_mul(multiplier)) {
        Some(bytes) if bytes > 0 => Ok(bytes),
        _ => Err("expected a size above 0, e.g. 65536 or 16MiB".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_rate("0.05"), Ok(0.05));
        assert!(parse_rate("-1").is_err() && parse_rate("inf").is_err() && parse_rate("x").is_err());
        assert!(parse_rate("NaN").is_err() && parse_rate("1e12").is_err());
        assert!(parse_seconds("1e18").is_err() && parse_interval("1e18").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("0").is_err() && parse_seconds("-3").is_err());
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        assert!(parse_interval("-1").is_err());
        assert_eq!(parse_bytes("16MiB"), Ok(16 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("0").is_err() && parse_bytes("12XB").is_err() && parse_bytes("MiB").is_err());
        assert_eq!(parse_poll_interval("0"), Ok(Duration::ZERO));
        assert_eq!(parse_poll_interval("50"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_poll_interval("0.5"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_poll_interval("1000"), Ok(MAX_POLL_INTERVAL));
        for nonsense in ["-1", "1001", "NaN", "inf", "fast", ""] {
            assert!(parse_poll_interval(nonsense).is_err(), "accepted {nonsense:?}");
        }
        let session = SessionConfig {
            heartbeat: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(3),
            ..Default::default()
        };
        assert!(check_poll_interval(Duration::from_millis(999), &session).is_ok());
        assert!(check_poll_interval(session.heartbeat, &session).is_err());
        let tight = SessionConfig {
            heartbeat: Duration::from_secs(45),
            idle_timeout: Duration::from_millis(45_500),
            ..Default::default()
        };
        assert!(check_poll_interval(Duration::from_millis(400), &tight).is_ok());
        let error = check_poll_interval(Duration::from_millis(900), &tight).unwrap_err();
        assert!(error.contains("must be shorter than idle_timeout (45.5 s)"), "{error}");
        assert_eq!(default_poll_interval(&tight), Duration::from_millis(100));
        let tighter = SessionConfig {
            heartbeat: Duration::from_millis(150),
            idle_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        assert_eq!(default_poll_interval(&tighter), Duration::from_millis(25), "half of the 50 ms slack");
        assert!(check_poll_interval(default_poll_interval(&tighter), &tighter).is_ok());
    }

    #[test]
    fn flags_become_the_config() {
        let cli = Cli::try_parse_from([
            "barrage",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rate",
            "0.5",
            "--fragment",
            "--drop-every",
            "7",
            "--log-level",
            "debug",
        ])
        .unwrap();
        let Command::Serve(args) = &cli.command else { panic!("not serve") };
        let config = args.config();
        assert_eq!(config.rate, 0.5);
        assert_eq!(config.faults, Faults { fragment: true, drop_every: Some(7), ..Faults::default() });
        assert_eq!(config.heartbeat_timeout, Duration::from_secs(90));
        assert_eq!(config.max_client_buffer, SimConfig::default().max_client_buffer);
        assert!(Cli::try_parse_from(["barrage", "serve", "--stall-after", "0"]).is_err());
    }
}

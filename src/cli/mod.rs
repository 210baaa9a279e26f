//! The `barrage` command line.
//!
//! One file per subcommand, each with its arguments (flags, help, defaults)
//! and the function that runs it: [`watch`] (with the daemon's loop:
//! signals, reloads, the stop), [`serve`], [`demo`] and [`bench`]. This file
//! holds what they share: the top-level parser, logging, exit statuses and
//! the value parsers.
//!
//! Errors are one line on stderr, `barrage: error: …`, and a non-zero exit:
//! 2 for a mistake in the command line or a config file, 1 for a failure
//! while running. Value parsers check only the form of a value (a number of
//! seconds, say); ranges are checked by the settings that define them
//! ([`MonitorConfig::validate`](crate::monitor::MonitorConfig::validate),
//! [`SimConfig::validate`](crate::sim::SimConfig::validate)).

mod bench;
mod demo;
mod serve;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::sim;

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

// Parsed once, at start: boxing the larger arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
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
    Watch(watch::WatchArgs),
    /// Measure the watch engine against the simulator (a child process):
    /// rooms joined, messages, loss, CPU, memory per room, timer lateness,
    /// syscalls per message; --rate 0 measures an idle daemon.
    Bench(bench::BenchArgs),
    /// The simulated server and the monitor in one process, on loopback:
    /// watch 20 rooms stream by, then a summary proving nothing was lost.
    Demo(demo::DemoArgs),
    /// Run a simulated Douyu barrage server, for offline tests and benchmarks.
    ///
    /// Answers loginreq, joingroup, mrkl and logout like Douyu's server, and
    /// sends every joined room realistic messages numbered 1, 2, 3, ... in
    /// `cid`. Prints "listening on ADDR" on stdout once bound. All faults are
    /// off unless asked for; bad frames cycle through: oversized length,
    /// mismatched lengths, wrong packet type, missing terminator.
    Serve(serve::ServeArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Why a subcommand failed, which decides the exit status.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A mistake in the command line or a config file: exit 2.
    Usage(String),
    /// Something went wrong while running: exit 1.
    Runtime(String),
}

/// A refused setting is a usage mistake; the line names the flag to fix
/// (the message names the setting, which is also its config-file key).
impl From<crate::settings::SettingError> for Failure {
    fn from(error: crate::settings::SettingError) -> Self {
        Failure::Usage(format!("{} ({})", error.message, error.flag()))
    }
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return command_line_error(error),
    };
    let result = match &cli.command {
        Command::Serve(args) => serve::run(args, cli.log_level),
        Command::Demo(args) => demo::run(args, cli.log_level),
        Command::Watch(args) => watch::run(args, cli.log_level),
        Command::Bench(args) => bench::run(args, cli.log_level),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("barrage: error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("barrage: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Parses and checks the text of a `--config` file, as `barrage watch` does
/// when it starts or reloads; the error is the line it would print. (For
/// tools and fuzzing: the file is the one input besides the network that
/// comes from outside.)
pub fn check_config(text: &str) -> Result<(), String> {
    watch::FileConfig::parse(text, "config").map(drop)
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

pub(crate) fn init_logging(level: LogLevel) {
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

// ----- value parsers: each checks a form, its error is one short sentence ------

pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=sim::MAX_RATE).contains(&rate) => Ok(rate),
        _ => Err(format!("expected messages per second, from 0 to {}", sim::MAX_RATE)),
    }
}

/// Seconds, fractions allowed (`0.5`); 0 too, where a setting takes it to
/// mean "never" (the setting's own check refuses it elsewhere).
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| "expected a number of seconds, e.g. 45 or 0.5".to_string())
}

/// Milliseconds, fractions allowed (`0.5`).
pub(crate) fn parse_milliseconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
        .ok_or_else(|| "expected a number of milliseconds, e.g. 100 or 0.5".to_string())
}

/// `4096`, `512KiB`, `16MiB`, `1GiB`.
pub(crate) fn parse_bytes(text: &str) -> Result<usize, String> {
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
    fn value_parsers_check_the_form() {
        assert_eq!(parse_rate("0.05"), Ok(0.05));
        assert!(parse_rate("-1").is_err() && parse_rate("inf").is_err() && parse_rate("x").is_err());
        assert!(parse_rate("NaN").is_err() && parse_rate("1e12").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        for nonsense in ["-3", "NaN", "inf", "1e30", "soon", ""] {
            assert!(parse_seconds(nonsense).is_err(), "accepted {nonsense:?}");
        }
        assert_eq!(parse_milliseconds("50"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_milliseconds("0.5"), Ok(Duration::from_micros(500)));
        assert!(parse_milliseconds("-1").is_err() && parse_milliseconds("fast").is_err());
        assert_eq!(parse_bytes("16MiB"), Ok(16 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("0").is_err() && parse_bytes("12XB").is_err() && parse_bytes("MiB").is_err());
    }

    #[test]
    fn a_config_text_is_checked_as_watch_checks_it() {
        assert_eq!(check_config("rooms = [1, 2]\nheartbeat = 30\n"), Ok(()));
        assert!(check_config("romos = [1]").is_err(), "a typo is an error");
        assert!(check_config("rooms = [0]").is_err());
        assert!(check_config("rooms = [").is_err());
    }
}

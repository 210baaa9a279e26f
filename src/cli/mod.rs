//! The `barrage` command line.
//!
//! One file per subcommand, each with its arguments (flags, help, defaults)
//! and the function that runs it: [`watch`] (with the daemon's loop:
//! signals, reloads, the stop) and its [`config`] file, [`replay`],
//! [`demo`], [`serve`], [`bench`], and [`generate`] (shell completions and
//! man pages). This file holds what they share: the top-level parser,
//! logging, colour, exit statuses and the value parsers.
//!
//! Errors are one line on stderr, `barrage: error: …`, and a non-zero exit:
//! 2 for a mistake in the command line or a config file, 1 for a failure
//! while running. Value parsers check only the form of a value (a number of
//! seconds, say) and say what they expected; ranges are checked by the
//! settings that define them
//! ([`MonitorConfig::validate`](crate::monitor::MonitorConfig::validate),
//! [`SimConfig::validate`](crate::sim::SimConfig::validate)).

mod bench;
mod config;
mod demo;
mod generate;
mod replay;
mod serve;
mod watch;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::monitor::format::Format;
use crate::sim;

/// Watch Douyu (斗鱼) live-chat rooms from one thread, or simulate the server.
#[derive(Debug, Parser)]
#[command(name = "barrage", version)]
struct Cli {
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
    /// Print recorded JSON lines (from `watch --format json`) as text, or
    /// filter them as JSON, optionally at the pace they were received.
    ///
    /// Each line is checked against the line contract; a malformed line is
    /// reported with its file and line number and skipped, and the exit
    /// status is then 1.
    Replay(replay::ReplayArgs),
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
    Serve(ServeCommand),
    /// Measure the watch engine against the simulator (a child process):
    /// rooms joined, messages, loss, CPU, memory per room, timer lateness,
    /// syscalls per message; --rate 0 measures an idle daemon.
    Bench(bench::BenchArgs),
    /// Print a shell completion script (e.g. `barrage completions bash >
    /// ~/.local/share/bash-completion/completions/barrage`).
    Completions(generate::CompletionsArgs),
    /// Print the manual page (roff) of barrage or of one subcommand, or
    /// write them all to a directory (`man -l <(barrage man)` reads it).
    Man(generate::ManArgs),
}

/// `serve`'s flags (in `serve.rs`) and its log level.
#[derive(Debug, Args)]
struct ServeCommand {
    #[command(flatten)]
    args: serve::ServeArgs,

    /// How much to log (to stderr). [default: the level in RUST_LOG, else info]
    #[arg(long, value_enum)]
    log_level: Option<LogLevel>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// `--color`: colour in text output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether text going to a terminal (or not) is coloured, given the
    /// value of `NO_COLOR` (<https://no-color.org>: set and not empty means
    /// no colour unless asked for).
    fn colors(self, terminal: bool, no_color: Option<OsString>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && no_color.is_none_or(|value| value.is_empty()),
        }
    }

    /// The text format for an output that is (or is not) a terminal.
    pub(crate) fn text_format(self, terminal: bool) -> Format {
        if self.colors(terminal, std::env::var_os("NO_COLOR")) { Format::ColorText } else { Format::Text }
    }
}

/// `--transport` of `demo` and `bench`: how the monitor reaches the
/// simulator on loopback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum TransportArg {
    /// Raw TCP, as danmuproxy.douyu.com:8601.
    #[default]
    Tcp,
    /// WebSocket over TLS, as Douyu's web player (wss://…:8501): TLS 1.2
    /// with Douyu's one suite, a self-signed certificate made at start.
    Wss,
}

impl TransportArg {
    pub(crate) fn transport(self) -> crate::monitor::Transport {
        match self {
            TransportArg::Tcp => crate::monitor::Transport::Tcp,
            TransportArg::Wss => crate::monitor::Transport::WebSocket { tls: true, path: "/".to_string() },
        }
    }
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
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => return command_line_error(error, &args),
    };
    let result = match &cli.command {
        Command::Watch(args) => watch::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Serve(serve) => serve::run(&serve.args, Some(log_level(serve.log_level, LogLevel::Info))),
        Command::Bench(args) => bench::run(args),
        Command::Completions(args) => generate::completions(args, &mut Cli::command()),
        Command::Man(args) => generate::man(args, Cli::command()),
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
    config::FileConfig::parse(text, "config").map(drop)
}

/// Help and version go where clap sends them; a real error becomes one line
/// that keeps clap's hints and names the help to read.
fn command_line_error(error: clap::Error, args: &[OsString]) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        error.exit();
    }
    eprintln!("barrage: error: {}", one_line(&error.to_string(), subcommand_of(args)));
    ExitCode::from(2)
}

/// clap's rendered error as one line: the error, then its hints
/// (`[possible values: …]`, `tip: …`), then which help to read.
fn one_line(rendered: &str, subcommand: Option<&str>) -> String {
    let mut lines = rendered.lines().map(str::trim).filter(|line| !line.is_empty());
    let first = lines.next().unwrap_or("invalid command line");
    let mut message = first.strip_prefix("error: ").unwrap_or(first).to_string();
    if message.ends_with(':') {
        // "the following required arguments were not provided:" names them below.
        let named: Vec<&str> = rendered.lines().skip(1).map(str::trim).take_while(|line| !line.is_empty()).collect();
        message = format!("{message} {}", named.join(", "));
    }
    for hint in lines.filter(|line| line.starts_with("[possible values:") || line.starts_with("tip:")) {
        message.push(' ');
        message.push_str(hint.strip_prefix("tip: ").map_or(hint.to_string(), |tip| format!("({tip})")).as_str());
    }
    let help = subcommand.map_or("barrage --help".to_string(), |name| format!("barrage {name} --help"));
    format!("{message} (see '{help}')")
}

/// The subcommand a command line names, if any: its first argument that is
/// one (no flag value or room id is spelt like a subcommand).
fn subcommand_of(args: &[OsString]) -> Option<&str> {
    let command = Cli::command();
    args.iter().skip(1).filter_map(|arg| arg.to_str()).find(|arg| command.find_subcommand(arg).is_some())
}

/// The level to log at: `chosen` (`--log-level`), or else the level named
/// in `RUST_LOG` (as the examples read it), or else `fallback`.
pub(crate) fn log_level(chosen: Option<LogLevel>, fallback: LogLevel) -> LogLevel {
    let from_env = || std::env::var("RUST_LOG").ok().and_then(|name| LogLevel::from_str(name.trim(), true).ok());
    chosen.or_else(from_env).unwrap_or(fallback)
}

/// Starts logging to stderr at `level` (see [`log_level`]).
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

/// Whether stdout is a terminal (for the default format and colour).
pub(crate) fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

// ----- value parsers: each checks a form, its error says what it expected ------

pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=sim::MAX_RATE).contains(&rate) => Ok(rate),
        _ => Err(format!("expected messages per second, from 0 to {}", sim::MAX_RATE)),
    }
}

/// How many times as fast as it came a recording is played.
pub(crate) fn parse_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 => Ok(speed),
        _ => Err("expected a speed above 0, e.g. 1 (real time) or 10 (ten times as fast)".to_string()),
    }
}

/// New connections per second: any positive number here; its range is the
/// monitor's to check.
pub(crate) fn parse_connect_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() => Ok(rate),
        _ => Err("expected new connections per second, e.g. 200".to_string()),
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

/// Seconds above 0 (how long to run).
pub(crate) fn parse_positive_seconds(text: &str) -> Result<Duration, String> {
    match parse_seconds(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err("expected a number of seconds above 0, e.g. 60 or 2.5".to_string()),
    }
}

/// Milliseconds, fractions allowed (`0.5`).
pub(crate) fn parse_milliseconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
        .ok_or_else(|| "expected a number of milliseconds, e.g. 100 or 0.5".to_string())
}

/// A whole number from `min` to `max`, for a count of `what`.
pub(crate) fn whole_number(text: &str, min: u64, max: u64, what: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == u64::MAX => Err(format!("expected a whole number of {what}, at least {min}")),
        _ => Err(format!("expected a whole number of {what} from {min} to {max}")),
    }
}

/// A number of messages, at least 1 (`--count`, `serve --drop-every`).
pub(crate) fn parse_messages(text: &str) -> Result<u64, String> {
    whole_number(text, 1, u64::MAX, "messages")
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

/// `HOST:PORT` with a non-empty host and a port from 1 (or 0, for a port
/// the system picks) to 65535. Names are resolved later.
pub(crate) fn host_port(text: &str, zero_port: bool) -> Result<String, String> {
    let example = if zero_port { "127.0.0.1:9100 or localhost:0" } else { "danmuproxy.douyu.com:8601" };
    let Some((host, port)) = text.rsplit_once(':').filter(|(host, _)| !host.is_empty()) else {
        return Err(format!("expected HOST:PORT, e.g. {example}, not {text:?}"));
    };
    let lowest = if zero_port { 0 } else { 1 };
    match port.parse::<u64>() {
        Ok(port) if (lowest..=65535).contains(&port) => Ok(text.to_string()),
        Ok(port) => Err(format!("port {port} in {host}:{port} is out of range ({lowest} to 65535)")),
        Err(_) => Err(format!("expected HOST:PORT with a numeric port, e.g. {example}, not {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn value_parsers_say_what_they_expected() {
        assert_eq!(parse_rate("0.05"), Ok(0.05));
        assert!(parse_rate("-1").is_err() && parse_rate("inf").is_err() && parse_rate("x").is_err());
        assert!(parse_rate("NaN").is_err() && parse_rate("1e12").is_err());
        assert_eq!(parse_speed("0.5"), Ok(0.5));
        assert!(parse_speed("0").is_err() && parse_speed("-1").is_err() && parse_speed("inf").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        for nonsense in ["-3", "NaN", "inf", "1e30", "soon", ""] {
            assert!(parse_seconds(nonsense).is_err(), "accepted {nonsense:?}");
        }
        assert!(parse_positive_seconds("0").unwrap_err().contains("above 0"));
        assert_eq!(parse_milliseconds("50"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_milliseconds("0.5"), Ok(Duration::from_micros(500)));
        assert!(parse_milliseconds("-1").is_err() && parse_milliseconds("fast").is_err());
        assert_eq!(parse_bytes("16MiB"), Ok(16 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("0").is_err() && parse_bytes("12XB").is_err() && parse_bytes("MiB").is_err());
        assert_eq!(
            whole_number("-1", 1, 10_000, "rooms").unwrap_err(),
            "expected a whole number of rooms from 1 to 10000"
        );
        assert_eq!(
            whole_number("0", 1, u64::MAX, "messages").unwrap_err(),
            "expected a whole number of messages, at least 1"
        );
        assert_eq!(whole_number("7", 1, u64::MAX, "messages"), Ok(7));
    }

    #[test]
    fn an_address_says_what_is_wrong_with_it() {
        assert_eq!(host_port("danmuproxy.douyu.com:8601", false).as_deref(), Ok("danmuproxy.douyu.com:8601"));
        assert!(host_port("[::1]:8601", false).is_ok() && host_port("localhost:0", true).is_ok());
        assert_eq!(
            host_port("127.0.0.1:99999", false).unwrap_err(),
            "port 99999 in 127.0.0.1:99999 is out of range (1 to 65535)"
        );
        assert!(host_port("127.0.0.1:0", false).unwrap_err().contains("out of range (1 to 65535)"));
        assert!(host_port("nohost", false).unwrap_err().starts_with("expected HOST:PORT"));
        assert!(host_port(":80", false).is_err() && host_port("h:x", false).unwrap_err().contains("numeric port"));
    }

    #[test]
    fn an_error_keeps_clap_hints_and_names_the_subcommand_help() {
        let error = |args: &[&str]| {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            let error = Cli::try_parse_from(&args).unwrap_err();
            one_line(&error.to_string(), subcommand_of(&args))
        };
        assert_eq!(
            error(&["barrage", "watch", "--format", "xml", "1"]),
            "invalid value 'xml' for '--format <FORMAT>' [possible values: json, text] (see 'barrage watch --help')"
        );
        let typo = error(&["barrage", "demo", "--durations", "1"]);
        assert!(typo.contains("(a similar argument exists: '--duration')"), "{typo}");
        assert!(typo.ends_with("(see 'barrage demo --help')"), "{typo}");
        assert!(error(&["barrage", "wach"]).ends_with("(see 'barrage --help')"));
        assert_eq!(
            error(&["barrage", "serve", "--speed", "2"]),
            "the following required arguments were not provided: --replay <FILE> (see 'barrage serve --help')"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_unless_asked_and_no_color_is_honoured() {
        let set = Some(OsString::from("1"));
        assert!(ColorChoice::Auto.colors(true, None));
        assert!(ColorChoice::Auto.colors(true, Some(OsString::new())), "an empty NO_COLOR is not set");
        assert!(!ColorChoice::Auto.colors(false, None), "not a terminal");
        assert!(!ColorChoice::Auto.colors(true, set.clone()), "NO_COLOR");
        assert!(ColorChoice::Always.colors(false, set), "asked for");
        assert!(!ColorChoice::Never.colors(true, None));
    }

    #[test]
    fn a_config_text_is_checked_as_watch_checks_it() {
        assert_eq!(check_config("rooms = [1, 2]\nheartbeat = 30\n"), Ok(()));
        assert!(check_config("romos = [1]").is_err(), "a typo is an error");
        assert!(check_config("rooms = [0]").is_err());
        assert!(check_config("rooms = [").is_err());
    }
}

//! `barrage watch`: flags, the TOML config file, and how they combine.
//!
//! Every setting can come from the command line or from `--config FILE`;
//! the command line wins. Rooms are the union of both (so a unit file can
//! add one room to a shared config), then filtered by `--shard`. On SIGHUP
//! the file is read again and only the room list is applied (see
//! [`daemon`](super::daemon)).

use std::collections::{BTreeSet, HashSet};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::douyu::SessionConfig;
use crate::monitor::MonitorConfig;
use crate::monitor::format::Format;
use crate::monitor::output::Destination;
use crate::monitor::shard::Shard;

use super::{LogLevel, parse_seconds};

/// The public endpoints (raw TCP, port 8601 with 8602 as fallback).
pub const DEFAULT_SERVERS: [&str; 2] = ["danmuproxy.douyu.com:8601", "danmuproxy.douyu.com:8602"];

/// `barrage watch`: flags override the config file.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Room ids to watch: the real numeric ids (positive integers).
    #[arg(value_name = "ROOM", value_parser = parse_room)]
    pub rooms: Vec<u64>,

    /// Server HOST:PORT; repeat for several. A room that fails on one
    /// address tries the next (every resolved IP of every server) before
    /// backing off. [default: danmuproxy.douyu.com:8601 and :8602]
    #[arg(long = "server", value_name = "HOST:PORT", value_parser = parse_server)]
    pub servers: Vec<String>,

    /// TOML file with any of: rooms, servers, output, format, types,
    /// heartbeat, idle_timeout, connect_timeout, login_timeout,
    /// flush_timeout, connect_rate, metrics, shard, log_level,
    /// status_interval, poll_interval_ms.
    /// Re-read on SIGHUP (rooms added start, rooms removed stop).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output format. [default: text on a terminal, json otherwise]
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,

    /// Write only these message types, comma separated (e.g. chatmsg,dgb).
    /// [default: all]
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    pub types: Vec<String>,

    /// Append to this file instead of stdout; reopened on SIGHUP (log rotation).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Seconds between heartbeats (mrkl). [default: 45]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub heartbeat: Option<Duration>,

    /// Reconnect after this many seconds without a byte. [default: 120]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub idle_timeout: Option<Duration>,

    /// Give up on a server address that has not accepted the connection
    /// within this many seconds, and try the next one. [default: 10]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub connect_timeout: Option<Duration>,

    /// Reconnect if the server has not answered the login within this many
    /// seconds of connecting. [default: 15]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub login_timeout: Option<Duration>,

    /// On stop, write what is left of the output for at most this many
    /// seconds; messages still unwritten then are reported (whole lines
    /// only) and the exit status is 1. With the 1.5 s the rooms have to log
    /// out, the default stops within 2 s. [default: 0.4]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub flush_timeout: Option<Duration>,

    /// New connections per second at most, so thousands of rooms do not
    /// flood the server at start. [default: 200]
    #[arg(long, value_name = "PER_SEC", value_parser = parse_connect_rate, allow_negative_numbers = true)]
    pub connect_rate: Option<f64>,

    /// Serve /metrics (Prometheus) and /rooms (JSON) over HTTP here, e.g.
    /// 127.0.0.1:9100. [default: off]
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,

    /// Watch only the rooms of shard K of N (0 <= K < N): run N copies with
    /// the same config to split the rooms between them.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,

    /// Seconds between status lines in the log (0 = never). [default: 30]
    #[arg(long, value_name = "SECS", value_parser = super::parse_interval, allow_negative_numbers = true)]
    pub status_interval: Option<Duration>,

    /// Poll the sockets at most once per this many milliseconds (read
    /// coalescing): bytes pile up in the kernel meanwhile and one read takes
    /// many messages, for fewer syscalls and less CPU per message. Costs up
    /// to this much delay on every message and reply, and on signals (they
    /// arrive through poll). Timers, heartbeats included, still fire on
    /// time. 0 polls whenever idle (lowest delay). Must be shorter than the
    /// heartbeat, and heartbeat + interval shorter than the idle timeout; at
    /// most 1000. [default: 100, less if the heartbeat, or the time from it
    /// to the idle timeout, is short]
    #[arg(long, value_name = "MS", value_parser = super::parse_poll_interval, allow_negative_numbers = true)]
    pub poll_interval: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatArg {
    Json,
    Text,
}

/// The config file. Unknown keys are an error (a typo should not be
/// silently ignored).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub rooms: Vec<u64>,
    #[serde(default)]
    pub servers: Vec<String>,
    pub output: Option<PathBuf>,
    pub format: Option<FormatArg>,
    pub types: Option<Vec<String>>,
    pub heartbeat: Option<f64>,
    pub idle_timeout: Option<f64>,
    pub connect_timeout: Option<f64>,
    pub login_timeout: Option<f64>,
    pub flush_timeout: Option<f64>,
    pub connect_rate: Option<f64>,
    pub metrics: Option<SocketAddr>,
    pub shard: Option<String>,
    pub log_level: Option<LogLevel>,
    pub status_interval: Option<f64>,
    /// Milliseconds, like `--poll-interval` (the unit is in the name: every
    /// other duration in the file is in seconds).
    pub poll_interval_ms: Option<f64>,
}

impl FileConfig {
    /// Reads and checks the file; every error is one line naming the file.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let config: FileConfig = toml::from_str(&text).map_err(|e| {
            let message = e.message().to_string();
            format!("{}: {}", path.display(), message.lines().next().unwrap_or("invalid TOML"))
        })?;
        if let Some(room) = config.rooms.iter().find(|&&room| room == 0) {
            return Err(format!("{}: room ids must be positive integers, not {room}", path.display()));
        }
        for server in &config.servers {
            parse_server(server).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(config)
    }
}

/// Everything `watch` needs, after merging flags and file.
#[derive(Clone, Debug)]
pub struct WatchSettings {
    pub monitor: MonitorConfig,
    /// The reactor's `min_poll_interval`.
    pub poll_interval: Duration,
    pub metrics: Option<SocketAddr>,
    pub shard: Shard,
    pub log_level: LogLevel,
    pub config_path: Option<PathBuf>,
    /// Rooms from the command line, kept to recompute the list on SIGHUP.
    pub cli_rooms: Vec<u64>,
}

impl WatchArgs {
    /// Merges the flags with the config file (`file`, if one was given).
    pub fn settings(&self, file: &FileConfig, log_level: Option<LogLevel>) -> Result<WatchSettings, String> {
        let seconds = |value: Option<f64>, name: &str| -> Result<Option<Duration>, String> {
            value.map(|secs| parse_seconds(&secs.to_string()).map_err(|e| format!("config {name}: {e}"))).transpose()
        };
        let shard = match (&self.shard, &file.shard) {
            (Some(shard), _) => *shard,
            (None, Some(text)) => text.parse().map_err(|e| format!("config shard: {e}"))?,
            (None, None) => Shard::ALL,
        };
        let mut servers = if !self.servers.is_empty() { self.servers.clone() } else { file.servers.clone() };
        if servers.is_empty() {
            servers = DEFAULT_SERVERS.iter().map(|s| s.to_string()).collect();
        }
        let output_path = self.output.clone().or_else(|| file.output.clone());
        let format = match self.format.or(file.format) {
            Some(FormatArg::Json) => Format::Json,
            Some(FormatArg::Text) => Format::Text,
            // People at a terminal get text; pipes and files get JSON lines.
            None if output_path.is_none() && std::io::stdout().is_terminal() => Format::Text,
            None => Format::Json,
        };
        let types: Vec<String> =
            if !self.types.is_empty() { self.types.clone() } else { file.types.clone().unwrap_or_default() };
        let types: HashSet<String> =
            types.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
        let defaults = SessionConfig::default();
        let session = SessionConfig {
            heartbeat: self.heartbeat.or(seconds(file.heartbeat, "heartbeat")?).unwrap_or(defaults.heartbeat),
            idle_timeout: self
                .idle_timeout
                .or(seconds(file.idle_timeout, "idle_timeout")?)
                .unwrap_or(defaults.idle_timeout),
            login_timeout: self
                .login_timeout
                .or(seconds(file.login_timeout, "login_timeout")?)
                .unwrap_or(defaults.login_timeout),
            ..defaults
        };
        let monitor_defaults = MonitorConfig::default();
        let connect_timeout = self
            .connect_timeout
            .or(seconds(file.connect_timeout, "connect_timeout")?)
            .unwrap_or(monitor_defaults.connect_timeout);
        let flush_timeout = self
            .flush_timeout
            .or(seconds(file.flush_timeout, "flush_timeout")?)
            .unwrap_or(monitor_defaults.flush_timeout);
        super::check_heartbeat(&session)?;
        let poll_interval = match (self.poll_interval, file.poll_interval_ms) {
            (Some(interval), _) => interval,
            (None, Some(ms)) => {
                super::parse_poll_interval(&ms.to_string()).map_err(|e| format!("config poll_interval_ms: {e}"))?
            }
            (None, None) => super::default_poll_interval(&session),
        };
        super::check_poll_interval(poll_interval, &session)?;
        let connect_rate = match self.connect_rate.or(file.connect_rate) {
            Some(rate) => parse_connect_rate(&rate.to_string()).map_err(|e| format!("connect_rate: {e}"))?,
            None => MonitorConfig::default().connects_per_second,
        };
        let status_interval = match (self.status_interval, file.status_interval) {
            (Some(interval), _) => interval,
            (None, Some(secs)) => {
                super::parse_interval(&secs.to_string()).map_err(|e| format!("status_interval: {e}"))?
            }
            (None, None) => MonitorConfig::default().status_interval,
        };
        let rooms = room_list(&self.rooms, &file.rooms, shard);
        Ok(WatchSettings {
            monitor: MonitorConfig {
                rooms,
                servers,
                format,
                types: if types.is_empty() { None } else { Some(types) },
                session,
                connects_per_second: connect_rate,
                output: output_path.map_or(Destination::Stdout, Destination::File),
                status_interval,
                connect_timeout,
                flush_timeout,
                ..monitor_defaults
            },
            poll_interval,
            metrics: self.metrics.or(file.metrics),
            shard,
            log_level: log_level.or(file.log_level).unwrap_or(LogLevel::Info),
            config_path: self.config.clone(),
            cli_rooms: self.rooms.clone(),
        })
    }
}

/// The rooms this copy watches: command line and file together, sorted,
/// without repeats, only those of `shard`.
pub fn room_list(cli_rooms: &[u64], file_rooms: &[u64], shard: Shard) -> Vec<u64> {
    let all: BTreeSet<u64> = cli_rooms.iter().chain(file_rooms).copied().collect();
    all.into_iter().filter(|&room| shard.contains(room)).collect()
}

fn parse_room(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(room) if room > 0 => Ok(room),
        _ => Err("room ids are positive integers (the real numeric id, not a vanity name)".to_string()),
    }
}

/// `HOST:PORT` with a non-empty host and a numeric port. Resolution happens
/// later, off the loop thread.
fn parse_server(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => Ok(text.to_string()),
        _ => Err(format!("server must be HOST:PORT, e.g. danmuproxy.douyu.com:8601, not {text:?}")),
    }
}

fn parse_connect_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= 1_000_000.0 => Ok(rate),
        _ => Err("expected new connections per second, above 0 and at most 1000000".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_config_parses_every_key_and_rejects_typos() {
        let text = r#"
            rooms = [288016, 9999]
            servers = ["127.0.0.1:8601"]
            output = "/tmp/out.jsonl"
            format = "json"
            types = ["chatmsg", "dgb"]
            heartbeat = 30
            idle_timeout = 90.5
            connect_timeout = 3
            login_timeout = 20
            flush_timeout = 5
            connect_rate = 50
            metrics = "127.0.0.1:9100"
            shard = "1/2"
            log_level = "debug"
            status_interval = 10
            poll_interval_ms = 20
        "#;
        let config: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(config.rooms, [288016, 9999]);
        assert_eq!(config.log_level, Some(LogLevel::Debug));
        assert_eq!(config.poll_interval_ms, Some(20.0));
        assert!(toml::from_str::<FileConfig>("romos = [1]").is_err(), "a typo is an error");
    }

    /// `watch` with `flags` (after the subcommand) and the config `file`.
    fn settings_of(flags: &[&str], file: &str) -> Result<WatchSettings, String> {
        use clap::Parser;
        #[derive(Parser)]
        struct Watch {
            #[command(flatten)]
            args: WatchArgs,
        }
        let args = Watch::try_parse_from(std::iter::once("watch").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?
            .args;
        let file: FileConfig = toml::from_str(file).map_err(|e| e.to_string())?;
        args.settings(&file, None)
    }

    #[test]
    fn the_poll_interval_comes_from_the_flag_or_the_file_and_stays_below_the_heartbeat() {
        let interval = |flags: &[&str], file: &str| settings_of(flags, file).map(|s| s.poll_interval);
        assert_eq!(interval(&["1"], ""), Ok(Duration::from_millis(100)), "100 ms by default");
        assert_eq!(interval(&["--heartbeat", "0.1", "1"], ""), Ok(Duration::from_millis(50)), "below a short beat");
        assert_eq!(interval(&["--poll-interval", "0", "1"], ""), Ok(Duration::ZERO), "0 turns it off");
        assert_eq!(interval(&["1"], "poll_interval_ms = 20"), Ok(Duration::from_millis(20)));
        assert_eq!(interval(&["--poll-interval", "5", "1"], "poll_interval_ms = 20"), Ok(Duration::from_millis(5)));
        assert!(interval(&["--poll-interval", "-5", "1"], "").is_err());
        let error = interval(&["1"], "poll_interval_ms = -5").unwrap_err();
        assert_eq!(error, "config poll_interval_ms: expected milliseconds, from 0 (off) to 1000");
        let error = interval(&["--poll-interval", "500", "--heartbeat", "0.5", "1"], "").unwrap_err();
        assert_eq!(error, "the poll interval (500 ms) must be shorter than the heartbeat (0.5 s)");
        assert!(interval(&["--heartbeat", "0.5", "1"], "poll_interval_ms = 499").is_ok());
    }

    #[test]
    fn rooms_merge_dedupe_and_shard() {
        assert_eq!(room_list(&[3, 1], &[2, 3], Shard::ALL), [1, 2, 3]);
        let halves: Vec<Vec<u64>> =
            (0..2).map(|k| room_list(&[], &(1..=100).collect::<Vec<_>>(), Shard { index: k, count: 2 })).collect();
        assert_eq!(halves[0].len() + halves[1].len(), 100);
        assert!(halves[0].iter().all(|room| !halves[1].contains(room)));
    }

    #[test]
    fn value_checks_say_what_is_wrong() {
        assert!(parse_room("0").is_err() && parse_room("abc").is_err() && parse_room("-5").is_err());
        assert_eq!(parse_room("288016"), Ok(288016));
        assert!(parse_server("nohost").is_err() && parse_server(":80").is_err() && parse_server("h:x").is_err());
        assert!(parse_server("danmuproxy.douyu.com:8601").is_ok() && parse_server("[::1]:8601").is_ok());
    }
}

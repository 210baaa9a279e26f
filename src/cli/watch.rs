//! `barrage watch`: its flags, the TOML config file and how the two
//! combine, and the daemon's loop around the monitor.
//!
//! Every setting can come from the command line or from `--config FILE`;
//! the command line wins. Rooms are the union of both (so a unit file can
//! add one room to a shared config), then filtered by `--shard`. The
//! settings are checked by [`MonitorConfig::validate`]; a mistake exits 2.
//!
//! The loop: signals arrive like any other event — `signal-hook-mio` turns
//! them into a readable mio source, registered as a raw handler, so a
//! signal never interrupts a callback halfway and needs no locks.
//!
//! - SIGINT / SIGTERM: [`Monitor::stop`] — read what the sockets hold, log
//!   out of every room, then write the rest of the output for at most the
//!   flush timeout; exit 0 if everything was written. A second signal
//!   stops at once.
//! - SIGHUP: read `--config` again; rooms added there start, rooms removed
//!   there stop (with a logout), the others are untouched; the output file
//!   is reopened (for log rotation).
//! - A broken output pipe (`barrage watch | head`) is a stop like SIGTERM
//!   that ends with exit 0: the reader chose to leave.

use std::collections::{BTreeSet, HashSet};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
use signal_hook_mio::v1_0::Signals;

use crate::douyu::SessionConfig;
use crate::http::Url;
use crate::monitor::format::Format;
use crate::monitor::output::{Destination, OutputClosed};
use crate::monitor::shard::Shard;
use crate::monitor::{
    Endpoint, ForeignChat, Monitor, MonitorConfig, RoomState, StopCause, WebLookups, default_servers,
};
use crate::reactor::{Interest, Reactor, ReactorConfig};

use super::{Failure, LogLevel, init_logging, parse_milliseconds, parse_seconds};

/// `barrage watch`: flags override the config file.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Rooms to watch, as numbers (288016) or as their addresses in the
    /// browser (https://www.douyu.com/288016, douyu.com/6657,
    /// https://www.douyu.com/topic/NAME?rid=288016). Vanity numbers are
    /// looked up (see --resolve).
    #[arg(value_name = "ROOM", value_parser = parse_room)]
    pub(crate) rooms: Vec<u64>,

    /// Look up each room's real id on Douyu's web site before joining
    /// (vanity numbers such as 6657 join nothing): auto, or never.
    /// [default: auto]
    #[arg(long, value_enum)]
    pub(crate) resolve: Option<ResolveArg>,

    /// Read each room's live status from Douyu's web site after it joins
    /// and then every this many seconds (Douyu pushes changes only while a
    /// room is connected); 0 = never. At least 30. [default: 300]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub(crate) status_check: Option<Duration>,

    /// Use this site instead of https://m.douyu.com and https://www.douyu.com
    /// for room look-ups and status (paths unchanged: /ID, /betard/ID), e.g.
    /// a proxy, or `barrage serve --http`.
    #[arg(long, value_name = "URL", value_parser = parse_web_base)]
    pub(crate) web_base: Option<Url>,

    /// A chat message naming another room (Douyu sends a few): drop it
    /// (counted in /metrics), or write it like any other. [default: drop]
    #[arg(long, value_enum)]
    pub(crate) foreign_chat: Option<ForeignChatArg>,

    /// Server to connect to: tcp://HOST:PORT, wss://HOST:PORT[/PATH] (WebSocket
    /// over TLS, as Douyu's web player), ws://HOST:PORT[/PATH], or HOST:PORT
    /// (TCP); repeat for several. A room that fails on one address tries the
    /// next (every resolved IP of every server, in order) before backing off.
    /// [default: danmuproxy.douyu.com TCP 8601 and 8602, then wss 8501-8506]
    #[arg(long = "server", value_name = "URL", value_parser = parse_server)]
    pub(crate) servers: Vec<Endpoint>,

    /// PEM file of the certificates to trust for wss:// servers, instead of
    /// the system's (for a private server or `barrage serve --tls`).
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,

    /// TOML file with any of: rooms, servers, output, format, types,
    /// heartbeat, idle_timeout, connect_timeout, login_timeout,
    /// flush_timeout, connect_rate, metrics, shard, log_level,
    /// status_interval, poll_interval_ms.
    /// Re-read on SIGHUP (rooms added start, rooms removed stop).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Output format. [default: text on a terminal, json otherwise]
    #[arg(long, value_enum)]
    pub(crate) format: Option<FormatArg>,

    /// Write only these message types, comma separated (e.g. chatmsg,dgb).
    /// [default: all]
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    pub(crate) types: Vec<String>,

    /// Append to this file instead of stdout; reopened on SIGHUP (log rotation).
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,

    /// Seconds between heartbeats (mrkl), at least 0.25. [default: 45]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub(crate) heartbeat: Option<Duration>,

    /// Reconnect after this many seconds without a byte. [default: 120]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub(crate) idle_timeout: Option<Duration>,

    /// Give up on a server address that has not accepted the connection
    /// within this many seconds, and try the next one. [default: 10]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub(crate) connect_timeout: Option<Duration>,

    /// Reconnect if the server has not answered the login within this many
    /// seconds of connecting. [default: 15]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub(crate) login_timeout: Option<Duration>,

    /// On stop, write what is left of the output for at most this many
    /// seconds; messages still unwritten then are reported (whole lines
    /// only) and the exit status is 1. With the 1.5 s the rooms have to log
    /// out, the default stops within 2 s. [default: 0.4]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub(crate) flush_timeout: Option<Duration>,

    /// New connections per second at most (up to 10000), so thousands of
    /// rooms do not flood the server at start. [default: 200]
    #[arg(long, value_name = "PER_SEC", value_parser = parse_connect_rate, allow_negative_numbers = true)]
    pub(crate) connect_rate: Option<f64>,

    /// Serve /metrics (Prometheus) and /rooms (JSON) over HTTP here, e.g.
    /// 127.0.0.1:9100. [default: off]
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<SocketAddr>,

    /// Watch only the rooms of shard K of N (0 <= K < N): run N copies with
    /// the same config to split the rooms between them.
    #[arg(long, value_name = "K/N")]
    pub(crate) shard: Option<Shard>,

    /// Seconds between status lines in the log (0 = never, else at least 1). [default: 30]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub(crate) status_interval: Option<Duration>,

    /// Poll the sockets at most once per this many milliseconds (read
    /// coalescing): bytes pile up in the kernel meanwhile and one read takes
    /// many messages, for fewer syscalls and less CPU per message. Costs up
    /// to this much delay on every message and reply, and on signals (they
    /// arrive through poll). Timers, heartbeats included, still fire on
    /// time. 0 polls whenever idle (lowest delay). Must be shorter than the
    /// heartbeat, and heartbeat + interval shorter than the idle timeout; at
    /// most 1000. [default: 100, less if the heartbeat, or the time from it
    /// to the idle timeout, is short]
    #[arg(long, value_name = "MS", value_parser = parse_milliseconds, allow_negative_numbers = true)]
    pub(crate) poll_interval: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ResolveArg {
    Auto,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ForeignChatArg {
    Drop,
    Write,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FormatArg {
    Json,
    Text,
}

/// The config file. Unknown keys are an error (a typo should not be
/// silently ignored).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default, rename = "rooms")]
    room_entries: Vec<RoomEntry>,
    /// `room_entries` read as ids (filled by `parse`).
    #[serde(skip)]
    pub(crate) rooms: Vec<u64>,
    #[serde(default)]
    servers: Vec<String>,
    ca_file: Option<PathBuf>,
    /// `false`: do not look up room ids (`--resolve never`).
    resolve: Option<bool>,
    status_check: Option<f64>,
    web_base: Option<String>,
    foreign_chat: Option<ForeignChatArg>,
    output: Option<PathBuf>,
    format: Option<FormatArg>,
    types: Option<Vec<String>>,
    heartbeat: Option<f64>,
    idle_timeout: Option<f64>,
    connect_timeout: Option<f64>,
    login_timeout: Option<f64>,
    flush_timeout: Option<f64>,
    connect_rate: Option<f64>,
    metrics: Option<SocketAddr>,
    shard: Option<String>,
    log_level: Option<LogLevel>,
    status_interval: Option<f64>,
    /// Milliseconds, like `--poll-interval` (the unit is in the name: every
    /// other duration in the file is in seconds).
    poll_interval_ms: Option<f64>,
}

impl FileConfig {
    /// Reads and checks the file; every error is one line naming the file.
    pub(crate) fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        FileConfig::parse(&text, &path.display().to_string())
    }

    /// Parses and checks the text of a config file called `name`.
    pub(crate) fn parse(text: &str, name: &str) -> Result<FileConfig, String> {
        let mut config: FileConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            format!("{name}: {}", message.lines().next().unwrap_or("invalid TOML"))
        })?;
        config.rooms = config
            .room_entries
            .iter()
            .map(|entry| match entry {
                RoomEntry::Number(0) => Err(format!("{name}: room ids must be positive integers, not 0")),
                RoomEntry::Number(id) => Ok(*id),
                RoomEntry::Text(text) => parse_room(text).map_err(|e| format!("{name}: {e}")),
            })
            .collect::<Result<_, _>>()?;
        for server in &config.servers {
            parse_server(server).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(config)
    }
}

/// Everything `watch` needs, after merging flags and file.
#[derive(Clone, Debug)]
struct WatchSettings {
    monitor: MonitorConfig,
    /// The reactor's `min_poll_interval`.
    poll_interval: Duration,
    metrics: Option<SocketAddr>,
    shard: Shard,
    log_level: LogLevel,
    config_path: Option<PathBuf>,
    /// Rooms from the command line, kept to recompute the list on SIGHUP.
    cli_rooms: Vec<u64>,
}

impl WatchArgs {
    /// Merges the flags with the config file (`file`, if one was given).
    /// Checks only the form of each value; [`MonitorConfig::validate`]
    /// checks the settings.
    fn settings(&self, file: &FileConfig, log_level: Option<LogLevel>) -> Result<WatchSettings, String> {
        let seconds = |value: Option<f64>, name: &str| -> Result<Option<Duration>, String> {
            value
                .map(|secs| Duration::try_from_secs_f64(secs).map_err(|_| format!("config {name}: expected seconds")))
                .transpose()
        };
        let shard = match (&self.shard, &file.shard) {
            (Some(shard), _) => *shard,
            (None, Some(text)) => text.parse().map_err(|e| format!("config shard: {e}"))?,
            (None, None) => Shard::ALL,
        };
        let servers = if !self.servers.is_empty() {
            self.servers.clone()
        } else if !file.servers.is_empty() {
            file.servers.iter().map(|server| parse_server(server)).collect::<Result<_, _>>()?
        } else {
            default_servers()
        };
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
        let session_defaults = SessionConfig::default();
        let session = SessionConfig {
            heartbeat: self.heartbeat.or(seconds(file.heartbeat, "heartbeat")?).unwrap_or(session_defaults.heartbeat),
            idle_timeout: self
                .idle_timeout
                .or(seconds(file.idle_timeout, "idle_timeout")?)
                .unwrap_or(session_defaults.idle_timeout),
            login_timeout: self
                .login_timeout
                .or(seconds(file.login_timeout, "login_timeout")?)
                .unwrap_or(session_defaults.login_timeout),
            ..session_defaults
        };
        let defaults = MonitorConfig::default();
        let mut monitor = MonitorConfig {
            rooms: room_list(&self.rooms, &file.rooms, shard),
            servers,
            ca_file: self.ca_file.clone().or_else(|| file.ca_file.clone()),
            format,
            types: if types.is_empty() { None } else { Some(types) },
            session,
            connects_per_second: self.connect_rate.or(file.connect_rate).unwrap_or(defaults.connects_per_second),
            output: output_path.map_or(Destination::Stdout, Destination::File),
            status_interval: self
                .status_interval
                .or(seconds(file.status_interval, "status_interval")?)
                .unwrap_or(defaults.status_interval),
            connect_timeout: self
                .connect_timeout
                .or(seconds(file.connect_timeout, "connect_timeout")?)
                .unwrap_or(defaults.connect_timeout),
            flush_timeout: self
                .flush_timeout
                .or(seconds(file.flush_timeout, "flush_timeout")?)
                .unwrap_or(defaults.flush_timeout),
            ..defaults
        };
        let resolve_ids = match self.resolve {
            Some(choice) => choice == ResolveArg::Auto,
            None => file.resolve.unwrap_or(true),
        };
        let status_check = self
            .status_check
            .or(seconds(file.status_check, "status_check")?)
            .unwrap_or(crate::monitor::DEFAULT_STATUS_CHECK);
        let web_base = match (&self.web_base, &file.web_base) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(text)) => Some(parse_web_base(text).map_err(|e| format!("config web_base: {e}"))?),
            (None, None) => None,
        };
        monitor.web =
            (resolve_ids || !status_check.is_zero()).then(|| WebLookups::new(web_base, resolve_ids, status_check));
        monitor.foreign_chat = match self.foreign_chat.or(file.foreign_chat) {
            Some(ForeignChatArg::Write) => ForeignChat::Write,
            Some(ForeignChatArg::Drop) | None => ForeignChat::Drop,
        };
        let poll_interval = match (self.poll_interval, file.poll_interval_ms) {
            (Some(interval), _) => interval,
            (None, Some(ms)) => {
                parse_milliseconds(&ms.to_string()).map_err(|e| format!("config poll_interval_ms: {e}"))?
            }
            (None, None) => monitor.default_poll_interval(),
        };
        monitor.rooms.shrink_to_fit();
        Ok(WatchSettings {
            monitor,
            poll_interval,
            metrics: self.metrics.or(file.metrics),
            shard,
            log_level: log_level.or(file.log_level).unwrap_or(LogLevel::Info),
            config_path: self.config.clone(),
            cli_rooms: self.rooms.clone(),
        })
    }
}

/// `barrage watch`: flags and config file merged and checked, the monitor
/// (and its metrics endpoint) on a new reactor, run as a daemon.
pub(crate) fn run(args: &WatchArgs, log_level: Option<LogLevel>) -> Result<(), Failure> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path).map_err(Failure::Usage)?,
        None => FileConfig::default(),
    };
    let settings = args.settings(&file, log_level).map_err(Failure::Usage)?;
    settings.monitor.validate(settings.poll_interval)?;
    let idle_shard = settings.monitor.rooms.is_empty() && settings.shard != Shard::ALL;
    if settings.monitor.rooms.is_empty() && !idle_shard {
        return Err(Failure::Usage("no rooms to watch: give room ids, or rooms = [...] in --config".into()));
    }
    init_logging(settings.log_level);
    let reactor_config = ReactorConfig { min_poll_interval: settings.poll_interval, ..ReactorConfig::default() };
    let mut reactor = Reactor::with_config(reactor_config)
        .map_err(|e| Failure::Runtime(format!("cannot create the event loop: {e}")))?;
    let monitor = Monitor::start(&mut reactor, settings.monitor.clone()).map_err(|e| {
        Failure::Runtime(match &settings.monitor.output {
            Destination::File(path) => format!("cannot open {}: {e}", path.display()),
            _ => format!("cannot start: {e}"),
        })
    })?;
    if let Some(addr) = settings.metrics {
        let server = crate::monitor::metrics::start(&mut reactor, addr, monitor.clone())
            .map_err(|e| Failure::Runtime(format!("cannot serve metrics on {addr}: {e}")))?;
        log::info!("metrics on http://{}/metrics and /rooms", server.local_addr());
    }
    if idle_shard {
        // Under a supervisor, exiting would only restart into the same state.
        log::info!(
            "shard {} has none of the configured rooms: running idle until a SIGHUP brings some",
            settings.shard
        );
    } else {
        log::info!(
            "watching {} rooms via {} (shard {})",
            settings.monitor.rooms.len(),
            settings.monitor.servers.iter().map(Endpoint::to_string).collect::<Vec<_>>().join(", "),
            settings.shard
        );
    }
    let reload = Reload {
        config_path: settings.config_path.clone(),
        cli_rooms: settings.cli_rooms.clone(),
        shard: settings.shard,
    };
    run_daemon(&mut reactor, &monitor, Some(reload), None, settings.monitor.flush_timeout)
}

/// What a reload needs to recompute the room list.
#[derive(Clone, Debug)]
pub(crate) struct Reload {
    config_path: Option<PathBuf>,
    cli_rooms: Vec<u64>,
    shard: Shard,
}

/// Runs `monitor` on `reactor` until a signal, the end of its output, or
/// `duration` stops it, then writes the rest of the output for at most
/// `flush_timeout`. SIGHUP applies `reload` (without one, it only reopens
/// the output). Fails if messages were left unwritten.
pub(crate) fn run_daemon(
    reactor: &mut Reactor,
    monitor: &Monitor,
    reload: Option<Reload>,
    duration: Option<Duration>,
    flush_timeout: Duration,
) -> Result<(), Failure> {
    let cannot_watch = |e: std::io::Error| Failure::Runtime(format!("cannot watch signals: {e}"));
    let signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(cannot_watch)?;
    // A file grown past its size limit (RLIMIT_FSIZE) must fail the write
    // (EFBIG: retried and reported, like a full disk) instead of killing
    // the daemon, which is what SIGXFSZ does by default.
    signal_hook::flag::register(SIGXFSZ, Arc::new(AtomicBool::new(false))).map_err(cannot_watch)?;
    {
        let monitor = monitor.clone();
        reactor
            .add_handler(signals, Interest::READABLE, move |reactor, _id, signals: &mut Signals, _ready| {
                let pending: Vec<i32> = signals.pending().collect();
                for signal in pending {
                    let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
                    match signal {
                        SIGHUP => reload_rooms(reactor, &monitor, reload.as_ref()),
                        _ if monitor.stop_cause().is_some() => {
                            log::warn!("second stop request ({name}): exiting now");
                            reactor.stop();
                        }
                        // The signal came through poll: it may have waited one interval.
                        _ => monitor.stop(reactor, StopCause::Signal(name), reactor.min_poll_interval()),
                    }
                }
            })
            .map_err(cannot_watch)?;
    }
    if let Some(duration) = duration {
        let monitor = monitor.clone();
        reactor.call_later(duration, move |reactor| monitor.stop(reactor, StopCause::Duration, Duration::ZERO));
    }
    reactor.run().map_err(|e| Failure::Runtime(format!("event loop failed: {e}")))?;
    let unwritten = monitor.finish_output(flush_timeout);
    match monitor.stop_cause() {
        // The reader chose to leave: what it did not take is no failure.
        Some(StopCause::Output(OutputClosed::ReaderLeft)) => return Ok(()),
        Some(StopCause::Output(OutputClosed::Failed(why))) => return Err(Failure::Runtime(why)),
        _ => {}
    }
    if unwritten.lines > 0 {
        let cut = if unwritten.maybe_cut { "; the last line written may be incomplete" } else { "" };
        return Err(Failure::Runtime(format!(
            "{} (of {} bytes) could not be written within the flush timeout of {} s (--flush-timeout){cut}",
            plural(unwritten.lines, "message"),
            unwritten.bytes,
            flush_timeout.as_secs_f64()
        )));
    }
    Ok(())
}

/// "1 message", "2 messages".
pub(crate) fn plural(count: u64, noun: &str) -> String {
    if count == 1 { format!("1 {noun}") } else { format!("{count} {noun}s") }
}

fn reload_rooms(reactor: &mut Reactor, monitor: &Monitor, reload: Option<&Reload>) {
    monitor.reopen_output();
    monitor.resolve_again();
    let Some((reload, path)) = reload.and_then(|reload| Some((reload, reload.config_path.as_ref()?))) else {
        log::info!("SIGHUP: output reopened (no --config to reload)");
        return;
    };
    let file = match FileConfig::load(path) {
        Ok(file) => file,
        Err(e) => {
            log::error!("SIGHUP: {e}; keeping the current rooms");
            return;
        }
    };
    let shard = reload.shard;
    let wanted: BTreeSet<u64> = room_list(&reload.cli_rooms, &file.rooms, shard).into_iter().collect();
    let current: BTreeSet<u64> =
        monitor.rooms().iter().filter(|room| room.state != RoomState::Stopped).map(|room| room.written).collect();
    let added: Vec<u64> = wanted.difference(&current).copied().collect();
    let removed: Vec<u64> = current.difference(&wanted).copied().collect();
    for &room in &added {
        monitor.add_room(reactor, room);
    }
    for &room in &removed {
        monitor.remove_room(reactor, room);
    }
    log::info!("SIGHUP: reloaded {}: {} rooms added, {} removed", path.display(), added.len(), removed.len());
}

/// The rooms this copy watches: command line and file together, sorted,
/// without repeats, only those of `shard`.
pub(crate) fn room_list(cli_rooms: &[u64], file_rooms: &[u64], shard: Shard) -> Vec<u64> {
    let all: BTreeSet<u64> = cli_rooms.iter().chain(file_rooms).copied().collect();
    all.into_iter().filter(|&room| shard.contains(room)).collect()
}

/// A room as a user writes it: its number or its address (see
/// [`room_from_text`](crate::douyu::web::room_from_text)).
fn parse_room(text: &str) -> Result<u64, String> {
    crate::douyu::web::room_from_text(text)
}

/// A room in the config file: a number, or a string as on the command line.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
enum RoomEntry {
    Number(u64),
    Text(String),
}

/// The site that stands in for Douyu's (`http://127.0.0.1:8080`).
fn parse_web_base(text: &str) -> Result<Url, String> {
    Url::parse(text).map_err(|e| format!("{e}: expected a URL like https://www.douyu.com or http://127.0.0.1:8080"))
}

/// An endpoint (see [`Endpoint`]); names are resolved later, off the loop
/// thread.
fn parse_server(text: &str) -> Result<Endpoint, String> {
    text.parse()
}

fn parse_connect_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() => Ok(rate),
        _ => Err("expected new connections per second, e.g. 200".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_config_parses_every_key_and_rejects_typos() {
        let text = r#"
            rooms = [288016, 9999, "https://www.douyu.com/6657?dyshid=x"]
            servers = ["127.0.0.1:8601", "wss://danmuproxy.douyu.com:8502"]
            ca_file = "/etc/ssl/private-ca.pem"
            resolve = false
            status_check = 600
            web_base = "http://127.0.0.1:8080"
            foreign_chat = "write"
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
        let config = FileConfig::parse(text, "test.toml").unwrap();
        assert_eq!(config.rooms, [288016, 9999, 6657]);
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
        let file = FileConfig::parse(file, "test.toml")?;
        let settings = args.settings(&file, None)?;
        settings.monitor.validate(settings.poll_interval).map_err(|e| e.message)?;
        Ok(settings)
    }

    #[test]
    fn the_poll_interval_comes_from_the_flag_or_the_file_and_stays_below_the_heartbeat() {
        let interval = |flags: &[&str], file: &str| settings_of(flags, file).map(|s| s.poll_interval);
        assert_eq!(interval(&["1"], ""), Ok(Duration::from_millis(100)), "100 ms by default");
        assert_eq!(interval(&["--heartbeat", "0.3", "1"], ""), Ok(Duration::from_millis(100)));
        assert_eq!(interval(&["--heartbeat", "0.3", "--idle-timeout", "0.4", "1"], ""), Ok(Duration::from_millis(50)));
        assert_eq!(interval(&["--poll-interval", "0", "1"], ""), Ok(Duration::ZERO), "0 turns it off");
        assert_eq!(interval(&["1"], "poll_interval_ms = 20"), Ok(Duration::from_millis(20)));
        assert_eq!(interval(&["--poll-interval", "5", "1"], "poll_interval_ms = 20"), Ok(Duration::from_millis(5)));
        assert!(interval(&["--poll-interval", "-5", "1"], "").is_err());
        let error = interval(&["1"], "poll_interval_ms = -5").unwrap_err();
        assert_eq!(error, "config poll_interval_ms: expected a number of milliseconds, e.g. 100 or 0.5");
        let error = interval(&["--poll-interval", "1001", "1"], "").unwrap_err();
        assert_eq!(error, "the poll interval must be at most 1000 ms (got 1001 ms)");
        let error = interval(&["--poll-interval", "500", "--heartbeat", "0.5", "1"], "").unwrap_err();
        assert_eq!(error, "the poll interval (500 ms) must be shorter than the heartbeat (0.5 s)");
        assert!(interval(&["--heartbeat", "0.5", "1"], "poll_interval_ms = 499").is_ok());
    }

    #[test]
    fn web_look_ups_follow_the_flags_and_the_file() {
        let web = |flags: &[&str], file: &str| settings_of(flags, file).map(|s| s.monitor.web);
        let default = web(&["1"], "").unwrap().expect("on by default");
        assert!(default.resolve_ids);
        assert_eq!(default.mobile_base.to_string(), "https://m.douyu.com/");
        assert_eq!(default.status_check, crate::monitor::DEFAULT_STATUS_CHECK);
        let local = web(&["--web-base", "http://127.0.0.1:8080", "--resolve", "never", "1"], "").unwrap().unwrap();
        assert!(!local.resolve_ids);
        assert_eq!(
            (local.mobile_base.to_string(), local.desktop_base.to_string()),
            ("http://127.0.0.1:8080/".into(), "http://127.0.0.1:8080/".into())
        );
        assert_eq!(
            web(&["--status-check", "0", "1"], "resolve = false").unwrap(),
            None,
            "nothing to look up: no web at all"
        );
        let error = web(&["--status-check", "5", "1"], "").unwrap_err();
        assert!(error.contains("status_check must be 0 (never) or from 30 s"), "{error}");
        let rooms =
            settings_of(&["douyu.com/6657", "https://www.douyu.com/topic/x?rid=288016"], "").unwrap().monitor.rooms;
        assert_eq!(rooms, [6657, 288016]);
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

//! `barrage watch`: its flags, how they combine with the config file, and
//! the daemon's loop around the monitor.
//!
//! Every setting can come from the command line or from `--config FILE`
//! ([`config`](super::config)); a flag replaces the file's value. Rooms are
//! the exception: those on the command line and those in the file are
//! watched together (so a unit file can add one room to a shared config),
//! and the command line's stay through every reload. Then `--shard` keeps
//! its share. The settings are checked by [`MonitorConfig::validate`], and
//! the CA file is read and parsed; a mistake exits 2, and names the flag,
//! or the file, line and column.
//!
//! The loop: signals arrive like any other event — `signal-hook-mio` turns
//! them into a readable mio source, registered as a raw handler, so a
//! signal never interrupts a callback halfway and needs no locks.
//!
//! - SIGINT / SIGTERM: [`Monitor::stop`] — read what the sockets hold, log
//!   out of every room, then write the rest of the output for at most the
//!   flush timeout; exit 0 if everything was written. A second signal
//!   stops at once. `--duration` and `--count` stop the same way.
//! - SIGHUP: read `--config` again; rooms added there start, rooms removed
//!   there stop (with a logout), the others are untouched, and other
//!   settings that changed are named (they take effect on restart); the
//!   output file is reopened (for log rotation).
//! - A broken output pipe (`barrage watch | head`) is a stop like SIGTERM
//!   that ends with exit 0: the reader chose to leave.

use std::collections::{BTreeSet, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, ValueEnum};
use openssl::x509::X509;
use serde::{Deserialize, Serialize};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
use signal_hook_mio::v1_0::Signals;

use crate::douyu::{KNOWN_TYPES, SessionConfig};
use crate::http::Url;
use crate::monitor::format::Format;
use crate::monitor::output::{Destination, OutputClosed};
use crate::monitor::shard::Shard;
use crate::monitor::{
    DEFAULT_STATUS_CHECK, Endpoint, ForeignChat, LIVE_TYPE, Monitor, MonitorConfig, RoomState, StartError, StopCause,
    WebLookups, default_servers,
};
use crate::plural::{noun_for, plural};
use crate::reactor::tls::first_reason;
use crate::reactor::{Interest, Reactor, ReactorConfig};
use crate::settings::SettingError;

use super::config::FileConfig;
use super::{
    ColorChoice, Failure, LogLevel, host_port, init_logging, log_level, parse_connect_rate, parse_messages,
    parse_milliseconds, parse_positive_seconds, parse_seconds, stdout_is_terminal,
};

/// `barrage watch`: flags override the config file.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Rooms to watch, as numbers (288016) or as their addresses in the
    /// browser (https://www.douyu.com/288016, douyu.com/6657,
    /// https://www.douyu.com/topic/NAME?rid=288016). Vanity numbers are
    /// looked up (see --resolve).
    #[arg(value_name = "ROOM", value_parser = parse_room, allow_negative_numbers = true)]
    pub(crate) rooms: Vec<u64>,

    /// Server to connect to: tcp://HOST:PORT, wss://HOST:PORT[/PATH] (WebSocket
    /// over TLS, as Douyu's web player), ws://HOST:PORT[/PATH], or HOST:PORT
    /// (TCP); repeat for several. A room that fails on one address tries the
    /// next (every resolved IP of every server, in order) before backing off.
    /// [default: danmuproxy.douyu.com TCP 8601 and 8602, then wss 8501-8506]
    #[arg(long = "server", value_name = "URL", value_parser = parse_server)]
    pub(crate) servers: Vec<Endpoint>,

    /// PEM file of the certificates to trust for wss:// servers and https://
    /// look-ups, instead of the system's (for a private server, or
    /// `barrage serve --tls`).
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,

    /// Look up each room's real id on Douyu's web site before joining
    /// (vanity numbers such as 6657 join nothing): auto, or never.
    /// [default: auto]
    #[arg(long, value_enum)]
    pub(crate) resolve: Option<ResolveArg>,

    /// Read each room's live status from Douyu's web site after it joins
    /// and then every this many seconds (Douyu pushes changes only while a
    /// room is connected); 0 = never, else at least 30. The site is asked
    /// at most 20 times a second, so with more rooms than 20 × SECS each is
    /// read about every rooms ÷ 20 seconds instead. [default: 300]
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

    /// TOML file with any of: rooms, servers, ca_file, resolve,
    /// status_check, web_base, foreign_chat, output, format, types,
    /// heartbeat, idle_timeout, connect_timeout, login_timeout,
    /// flush_timeout, connect_rate, metrics, shard, log_level,
    /// status_interval, poll_interval_ms. Flags given replace its values;
    /// its rooms are watched with those given here. Re-read on SIGHUP
    /// (rooms added start, rooms removed stop).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Output format. [default: text on a terminal, json otherwise]
    #[arg(long, value_enum)]
    pub(crate) format: Option<FormatArg>,

    /// Colour in text output (auto: on a terminal, unless NO_COLOR is set).
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub(crate) color: ColorChoice,

    /// Write only these message types, comma separated (e.g. chatmsg,dgb).
    /// A type barrage has never heard of is warned about, and kept.
    /// [default: all]
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    pub(crate) types: Vec<String>,

    /// Append to this file instead of stdout; reopened on SIGHUP (log rotation).
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,

    /// Stop after this many seconds: log out, write everything, exit 0.
    #[arg(long, value_name = "SECS", value_parser = parse_positive_seconds, allow_negative_numbers = true)]
    pub(crate) duration: Option<Duration>,

    /// Stop once this many messages (of --types) have been written: log
    /// out, write everything, exit 0. Later messages are not written.
    #[arg(long, value_name = "N", value_parser = parse_messages, allow_negative_numbers = true)]
    pub(crate) count: Option<u64>,

    /// Seconds between heartbeats (mrkl), at least 0.25. [default: 45]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub(crate) heartbeat: Option<Duration>,

    /// Reconnect after this many seconds without a byte. [default: 120]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub(crate) idle_timeout: Option<Duration>,

    /// Give up on a server address that has not opened the connection (the
    /// TCP connect, and the TLS and WebSocket handshakes) within this many
    /// seconds, and try the next one; web look-ups too. [default: 5]
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

    /// Serve /metrics (Prometheus) and /rooms (JSON) over HTTP at HOST:PORT,
    /// e.g. 127.0.0.1:9100 or localhost:9100 (resolved at start; port 0
    /// picks a free one, logged). [default: off]
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_metrics)]
    pub(crate) metrics: Option<String>,

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

    /// How much to log (to stderr): connections, reconnects, status lines.
    /// [default: the level in RUST_LOG, else log_level in --config, else info]
    #[arg(long, value_enum)]
    pub(crate) log_level: Option<LogLevel>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ResolveArg {
    Auto,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ForeignChatArg {
    Drop,
    Write,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FormatArg {
    Json,
    Text,
}

/// Everything `watch` needs, after merging flags and file.
#[derive(Clone, Debug)]
struct WatchSettings {
    monitor: MonitorConfig,
    /// The reactor's `min_poll_interval`.
    poll_interval: Duration,
    metrics: Option<String>,
    shard: Shard,
}

impl WatchArgs {
    /// Merges the flags with the config file (`file`, if one was given).
    /// Checks only the form of each value; [`MonitorConfig::validate`]
    /// checks the settings.
    fn settings(&self, file: &FileConfig) -> WatchSettings {
        let shard = self.shard.or(file.shard).unwrap_or(Shard::ALL);
        let servers = [&self.servers, &file.servers]
            .into_iter()
            .find(|servers| !servers.is_empty())
            .cloned()
            .unwrap_or_else(default_servers);
        let output_path = self.output.clone().or_else(|| file.output.clone());
        // People at a terminal get text; pipes and files get JSON lines.
        let terminal = output_path.is_none() && stdout_is_terminal();
        let format = match self.format.or(file.format) {
            Some(FormatArg::Json) => Format::Json,
            Some(FormatArg::Text) => self.color.text_format(terminal),
            None if terminal => self.color.text_format(terminal),
            None => Format::Json,
        };
        let types: Vec<String> =
            if !self.types.is_empty() { self.types.clone() } else { file.types.clone().unwrap_or_default() };
        let types: HashSet<String> =
            types.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
        let session_defaults = SessionConfig::default();
        let session = SessionConfig {
            heartbeat: self.heartbeat.or(file.heartbeat).unwrap_or(session_defaults.heartbeat),
            idle_timeout: self.idle_timeout.or(file.idle_timeout).unwrap_or(session_defaults.idle_timeout),
            login_timeout: self.login_timeout.or(file.login_timeout).unwrap_or(session_defaults.login_timeout),
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
            status_interval: self.status_interval.or(file.status_interval).unwrap_or(defaults.status_interval),
            connect_timeout: self.connect_timeout.or(file.connect_timeout).unwrap_or(defaults.connect_timeout),
            flush_timeout: self.flush_timeout.or(file.flush_timeout).unwrap_or(defaults.flush_timeout),
            stop_after_messages: self.count,
            ..defaults
        };
        let resolve_ids = match self.resolve {
            Some(choice) => choice == ResolveArg::Auto,
            None => file.resolve.unwrap_or(true),
        };
        let status_check = self.status_check.or(file.status_check).unwrap_or(DEFAULT_STATUS_CHECK);
        let web_base = self.web_base.clone().or_else(|| file.web_base.clone());
        monitor.web =
            (resolve_ids || !status_check.is_zero()).then(|| WebLookups::new(web_base, resolve_ids, status_check));
        monitor.foreign_chat = match self.foreign_chat.or(file.foreign_chat) {
            Some(ForeignChatArg::Write) => ForeignChat::Write,
            Some(ForeignChatArg::Drop) | None => ForeignChat::Drop,
        };
        let poll_interval =
            self.poll_interval.or(file.poll_interval).unwrap_or_else(|| monitor.default_poll_interval());
        monitor.rooms.shrink_to_fit();
        WatchSettings { monitor, poll_interval, metrics: self.metrics.clone().or_else(|| file.metrics.clone()), shard }
    }

    /// A refused setting, pointing at what set it: its flag, or else the
    /// line of the config file that did.
    fn setting_error(&self, error: SettingError, file: &FileConfig) -> Failure {
        let flag_given = match error.setting {
            "heartbeat" => self.heartbeat.is_some(),
            "idle_timeout" => self.idle_timeout.is_some(),
            "login_timeout" => self.login_timeout.is_some(),
            "connect_timeout" => self.connect_timeout.is_some(),
            "flush_timeout" => self.flush_timeout.is_some(),
            "connect_rate" => self.connect_rate.is_some(),
            "status_interval" => self.status_interval.is_some(),
            "poll_interval" => self.poll_interval.is_some(),
            "status_check" => self.status_check.is_some(),
            _ => true,
        };
        match file.place_of(error.setting).filter(|_| !flag_given) {
            Some(place) => Failure::Usage(format!("{place}: {}", error.message)),
            None => error.into(),
        }
    }

    /// The certificates in the CA file (`path`, from `--ca-file` or the
    /// config's `ca_file`), read and parsed now: a missing or wrong file is
    /// a mistake to fix before starting, named by the flag or the line
    /// that gave it; and what was checked is what the monitor trusts.
    fn read_ca_file(&self, path: &Path, file: &FileConfig) -> Result<Vec<u8>, Failure> {
        let (place, named) = match file.place_of("ca_file").filter(|_| self.ca_file.is_none()) {
            Some(place) => (format!("{place}: ca_file: "), path.display().to_string()),
            None => (String::new(), format!("--ca-file {}", path.display())),
        };
        let refuse = |why: String| Failure::Usage(format!("{place}{why}"));
        let pem = std::fs::read(path).map_err(|e| refuse(format!("cannot read {named}: {e}")))?;
        match X509::stack_from_pem(&pem) {
            Ok(certificates) if !certificates.is_empty() => Ok(pem),
            Ok(_) => Err(refuse(format!("{named} holds no PEM certificate"))),
            Err(e) => Err(refuse(format!("{named} holds no PEM certificate OpenSSL can read ({})", first_reason(&e)))),
        }
    }
}

/// `barrage watch`: flags and config file merged and checked, the monitor
/// (and its metrics endpoint) on a new reactor, run as a daemon.
pub(crate) fn run(args: &WatchArgs) -> Result<(), Failure> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path).map_err(Failure::Usage)?,
        None => FileConfig::default(),
    };
    let mut settings = args.settings(&file);
    settings.monitor.validate(settings.poll_interval).map_err(|e| args.setting_error(e, &file))?;
    if let Some(path) = settings.monitor.ca_file.take() {
        settings.monitor.ca_pem = Some(args.read_ca_file(&path, &file)?);
    }
    let idle_shard = settings.monitor.rooms.is_empty() && settings.shard != Shard::ALL;
    if settings.monitor.rooms.is_empty() && !idle_shard {
        return Err(Failure::Usage("no rooms to watch: give room ids, or rooms = [...] in --config".into()));
    }
    init_logging(log_level(args.log_level, file.log_level.unwrap_or(LogLevel::Info)));
    if let Some(warning) = settings.monitor.types.as_ref().and_then(|types| unknown_types(types.iter())) {
        log::warn!("--types: {warning}");
    }
    // A room is a socket: take every descriptor the hard limit allows, and
    // say now, once, if the rooms still do not fit.
    if let Err(shortfall) = crate::bench::run::check_descriptors(settings.monitor.rooms.len() as u64) {
        log::warn!("{shortfall}; until then some rooms will fail to connect");
    }
    let metrics_place = file.place_of("metrics").filter(|_| args.metrics.is_none());
    let metrics = settings.metrics.as_deref().map(|text| resolve_metrics(text, metrics_place)).transpose()?;
    let reactor_config = ReactorConfig { min_poll_interval: settings.poll_interval, ..ReactorConfig::default() };
    let mut reactor = Reactor::with_config(reactor_config)
        .map_err(|e| Failure::Runtime(format!("cannot create the event loop: {e}")))?;
    let monitor =
        Monitor::start(&mut reactor, settings.monitor.clone()).map_err(|e| match (e, &settings.monitor.output) {
            (StartError::Output(e), Destination::File(path)) => {
                Failure::Runtime(format!("cannot open {}: {e}", path.display()))
            }
            (StartError::Setting(e), _) => args.setting_error(e, &file),
            (e, _) => Failure::Runtime(format!("cannot start: {e}")),
        })?;
    if let Some(addr) = metrics {
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
            "watching {} via {} (shard {})",
            plural(settings.monitor.rooms.len() as u64, "room"),
            settings.monitor.servers.iter().map(Endpoint::to_string).collect::<Vec<_>>().join(", "),
            settings.shard
        );
    }
    let output = match &settings.monitor.output {
        Destination::File(path) => Some(path.clone()),
        _ => None,
    };
    let reload = Reload {
        config_path: args.config.clone(),
        output,
        cli_rooms: args.rooms.clone(),
        shard: settings.shard,
        running: file,
    };
    run_daemon(&mut reactor, &monitor, Some(reload), args.duration, settings.monitor.flush_timeout)
}

/// `--metrics HOST:PORT` to the address to listen on (the first the name
/// resolves to). A name that resolves to nothing is a mistake in the
/// setting (named by its flag, or `place` in the config file), as `serve
/// --listen` takes it; a port that cannot be had is a failure while running.
fn resolve_metrics(text: &str, place: Option<&str>) -> Result<SocketAddr, Failure> {
    let cannot = |why: String| {
        Failure::Usage(match place {
            Some(place) => format!("{place}: metrics: cannot resolve {text}: {why}"),
            None => format!("cannot resolve --metrics {text}: {why}"),
        })
    };
    text.to_socket_addrs().map_err(|e| cannot(e.to_string()))?.next().ok_or_else(|| cannot("no address".into()))
}

/// The types barrage writes itself, besides Douyu's: selectable with
/// `--types` like any other.
const OWN_TYPES: [&str; 1] = [LIVE_TYPE];

/// One warning about the types in `types` neither seen from Douyu nor
/// written by barrage, if any: a typo (`chat` for `chatmsg`) would
/// otherwise write nothing, silently.
pub(crate) fn unknown_types<'a>(types: impl Iterator<Item = &'a String>) -> Option<String> {
    let known = |t: &&str| KNOWN_TYPES.contains(t) || OWN_TYPES.contains(t);
    let unknown: BTreeSet<&str> = types.map(String::as_str).filter(|t| !known(t)).collect();
    if unknown.is_empty() {
        return None;
    }
    let unknown: Vec<&str> = unknown.into_iter().collect();
    Some(format!(
        "unknown {} {} (kept: Douyu adds types; known are {}, and barrage's own {})",
        noun_for(unknown.len() as u64, "message type"),
        unknown.join(", "),
        KNOWN_TYPES.join(", "),
        OWN_TYPES.join(", ")
    ))
}

/// What a SIGHUP needs: where the config and the output are, and what the
/// daemon started with.
pub(crate) struct Reload {
    config_path: Option<PathBuf>,
    output: Option<PathBuf>,
    cli_rooms: Vec<u64>,
    shard: Shard,
    /// The file as read at start: its settings are the ones running.
    running: FileConfig,
}

/// Runs `monitor` on `reactor` until a signal, the end of its output, or
/// `duration` stops it, then writes the rest of the output for at most
/// `flush_timeout`. SIGHUP applies `reload` (without one, it does
/// nothing). Fails if messages were left unwritten.
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
                        SIGHUP => on_sighup(reactor, &monitor, reload.as_ref()),
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

/// SIGHUP: reopen the output file (the writer thread logs how that went)
/// and apply the config file's rooms.
fn on_sighup(reactor: &mut Reactor, monitor: &Monitor, reload: Option<&Reload>) {
    let Some(reload) = reload else {
        log::info!("SIGHUP: nothing to reload");
        return;
    };
    if reload.output.is_some() {
        monitor.reopen_output();
    }
    if monitor.stop_cause().is_some() {
        // Rooms added now would never be logged out.
        log::info!("SIGHUP: stopping already; the rooms are not reloaded");
        return;
    }
    // Names move; a reload is a good moment to follow them.
    monitor.resolve_again();
    let Some(path) = &reload.config_path else {
        if reload.output.is_none() {
            log::info!("SIGHUP: nothing to reload (no --config, and the output is stdout)");
        }
        return;
    };
    let file = match FileConfig::load(path) {
        Ok(file) => file,
        Err(e) => {
            log::error!("SIGHUP: {e}; keeping the current rooms");
            return;
        }
    };
    let wanted: BTreeSet<u64> = room_list(&reload.cli_rooms, &file.rooms, reload.shard).into_iter().collect();
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
    log::info!(
        "SIGHUP: reloaded {}: {} added, {} removed",
        path.display(),
        plural(added.len() as u64, "room"),
        removed.len()
    );
    let changed = reload.running.changed_settings(&file);
    if !changed.is_empty() {
        log::warn!(
            "SIGHUP: {} changed in {}: a reload applies rooms only, restart to apply {}",
            changed.join(", "),
            path.display(),
            if changed.len() == 1 { "it" } else { "them" }
        );
    }
}

/// The rooms this copy watches: command line and file together, sorted,
/// without repeats, only those of `shard`.
pub(crate) fn room_list(cli_rooms: &[u64], file_rooms: &[u64], shard: Shard) -> Vec<u64> {
    let all: BTreeSet<u64> = cli_rooms.iter().chain(file_rooms).copied().collect();
    all.into_iter().filter(|&room| shard.contains(room)).collect()
}

/// A room as a user writes it: its number or its address (see
/// [`room_from_text`](crate::douyu::web::room_from_text)).
pub(crate) fn parse_room(text: &str) -> Result<u64, String> {
    crate::douyu::web::room_from_text(text)
}

/// An endpoint (see [`Endpoint`]); names are resolved later, off the loop
/// thread.
pub(crate) fn parse_server(text: &str) -> Result<Endpoint, String> {
    text.parse()
}

/// The site that stands in for Douyu's (`http://127.0.0.1:8080`).
pub(crate) fn parse_web_base(text: &str) -> Result<Url, String> {
    Url::parse(text).map_err(|e| format!("{e}: expected a URL like https://www.douyu.com or http://127.0.0.1:8080"))
}

fn parse_metrics(text: &str) -> Result<String, String> {
    host_port(text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let settings = args.settings(&file);
        settings.monitor.validate(settings.poll_interval).map_err(|e| match args.setting_error(e, &file) {
            Failure::Usage(message) | Failure::Runtime(message) => message,
        })?;
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
        assert_eq!(error, "test.toml:1:1: poll_interval_ms: expected a number of milliseconds, e.g. 100 or 0.5");
        let error = interval(&["--poll-interval", "1001", "1"], "").unwrap_err();
        assert_eq!(error, "the poll interval must be at most 1000 ms (got 1001 ms) (--poll-interval)");
        let error = interval(&["--poll-interval", "500", "--heartbeat", "0.5", "1"], "").unwrap_err();
        assert_eq!(error, "the poll interval (500 ms) must be shorter than the heartbeat (0.5 s) (--poll-interval)");
        assert!(interval(&["--heartbeat", "0.5", "1"], "poll_interval_ms = 499").is_ok());
    }

    #[test]
    fn web_look_ups_follow_the_flags_and_the_file() {
        let web = |flags: &[&str], file: &str| settings_of(flags, file).map(|s| s.monitor.web);
        let default = web(&["1"], "").unwrap().expect("on by default");
        assert!(default.resolve_ids);
        assert_eq!(default.mobile_base.to_string(), "https://m.douyu.com/");
        assert_eq!(default.status_check, DEFAULT_STATUS_CHECK);
        let local = web(&["--web-base", "http://127.0.0.1:8080", "--resolve", "never", "1"], "").unwrap().unwrap();
        assert!(!local.resolve_ids);
        assert_eq!(local.mobile_base.to_string(), "http://127.0.0.1:8080/");
        assert_eq!(local.desktop_base.to_string(), "http://127.0.0.1:8080/");
        let none = web(&["--status-check", "0", "1"], "resolve = false").unwrap();
        assert_eq!(none, None, "nothing to look up: no web at all");
        let error = web(&["--status-check", "5", "1"], "").unwrap_err();
        assert!(error.contains("status_check must be 0 (never) or from 30 s"), "{error}");
        let foreign_chat = |flags: &[&str], file: &str| settings_of(flags, file).map(|s| s.monitor.foreign_chat);
        assert_eq!(foreign_chat(&["1"], ""), Ok(ForeignChat::Drop), "dropped by default");
        assert_eq!(foreign_chat(&["1"], "foreign_chat = \"write\""), Ok(ForeignChat::Write));
        assert_eq!(foreign_chat(&["--foreign-chat", "drop", "1"], "foreign_chat = \"write\""), Ok(ForeignChat::Drop));
        let rooms = ["douyu.com/6657", "https://www.douyu.com/topic/x?rid=288016"];
        assert_eq!(settings_of(&rooms, "").unwrap().monitor.rooms, [6657, 288016]);
    }

    #[test]
    fn a_refused_setting_points_at_the_flag_or_the_line_that_set_it() {
        let error = |flags: &[&str], file: &str| settings_of(flags, file).map(drop).unwrap_err();
        let from_file = error(&["1"], "rooms = [2]\nheartbeat = 200");
        assert!(
            from_file.starts_with("test.toml:2:1: heartbeat (200 s) must be shorter than idle_timeout"),
            "{from_file}"
        );
        let from_flag = error(&["--heartbeat", "200", "1"], "heartbeat = 30");
        assert!(from_flag.ends_with("or quiet rooms time out between beats (--heartbeat)"), "{from_flag}");
        let rate = error(&["1"], "connect_rate = 0");
        assert!(rate.starts_with("test.toml:1:1: connect_rate must be above 0"), "{rate}");
    }

    #[test]
    fn flags_replace_the_files_values_but_rooms_add_up() {
        let settings =
            settings_of(&["--heartbeat", "30", "--count", "5", "3"], "rooms = [1, 2]\nheartbeat = 40").unwrap();
        assert_eq!(settings.monitor.rooms, [1, 2, 3]);
        assert_eq!(settings.monitor.session.heartbeat, Duration::from_secs(30));
        assert_eq!(settings.monitor.stop_after_messages, Some(5));
        assert_eq!(settings_of(&["1"], "metrics = \"localhost:0\"").unwrap().metrics.as_deref(), Some("localhost:0"));
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
        assert!(parse_server("127.0.0.1:99999").unwrap_err().contains("out of range"));
        assert!(parse_metrics("localhost:0").is_ok());
    }

    #[test]
    fn unknown_types_are_named_once_and_known_ones_pass() {
        let types = |names: &[&str]| unknown_types(names.iter().map(|n| n.to_string()).collect::<Vec<_>>().iter());
        assert_eq!(types(&["chatmsg", "dgb", "uenter"]), None);
        assert_eq!(types(&["barrage.live", "chatmsg"]), None, "barrage's own lines are a type to select");
        let warning = types(&["chat", "chatmsg", "gift"]).unwrap();
        assert!(warning.starts_with("unknown message types chat, gift (kept"), "{warning}");
        assert!(types(&["chat"]).unwrap().starts_with("unknown message type chat (kept"));
        assert!(warning.ends_with("and barrage's own barrage.live)"), "the known types are listed: {warning}");
    }
}

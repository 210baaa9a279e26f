//! What a monitor can be told, and the limits each setting is checked
//! against ([`MonitorConfig::validate`], called by `Monitor::start`).
//!
//! The limits keep a monitor from hammering a real server or flooding its
//! own log: a heartbeat at least every 0.25 s at most (the session's
//! [`MIN_HEARTBEAT`](crate::douyu::session::MIN_HEARTBEAT)), at most
//! 10,000 new connections a second, a status line at most once a second,
//! and no duration over a day.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::time::Duration;

use super::endpoint::Endpoint;
use super::format::Format;
use super::output::{Destination, OutputLimits};
use crate::douyu::SessionConfig;
use crate::douyu::session::MAX_DURATION;
use crate::fetch::{Resolve, system_resolve};
use crate::http::Url;
use crate::settings::{SettingError, duration_within};

/// Douyu's public endpoints, tried in this order: raw TCP on 8601 and 8602,
/// then WebSocket over TLS on 8501 to 8506 (what the web player uses; it
/// gets through networks that let only web traffic out).
pub const DEFAULT_SERVERS: [&str; 8] = [
    "tcp://danmuproxy.douyu.com:8601",
    "tcp://danmuproxy.douyu.com:8602",
    "wss://danmuproxy.douyu.com:8501/",
    "wss://danmuproxy.douyu.com:8502/",
    "wss://danmuproxy.douyu.com:8503/",
    "wss://danmuproxy.douyu.com:8504/",
    "wss://danmuproxy.douyu.com:8505/",
    "wss://danmuproxy.douyu.com:8506/",
];

/// New connections per second, at most: a server (or a NAT table) should
/// not see thousands of connects in one burst.
pub const MAX_CONNECT_RATE: f64 = 10_000.0;

/// The shortest status interval (0 turns the status line off).
pub const MIN_STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest connect timeout: a connect over loopback takes microseconds,
/// one across the world a few hundred milliseconds.
pub const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

/// The longest read-coalescing interval (see [`MonitorConfig::validate`]):
/// everything arriving through poll may wait this long, signals included.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The poll interval a monitor suggests when none is given: 100 ms, less
/// with short beats (see [`MonitorConfig::default_poll_interval`]).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// [`MonitorConfig::logout_timeout`] by default: with the flush timeout, a
/// stop takes at most 2 s.
pub const DEFAULT_LOGOUT_TIMEOUT: Duration = Duration::from_millis(1500);
/// [`MonitorConfig::flush_timeout`] by default.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_millis(400);

/// Everything `barrage watch` can be told.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    pub rooms: Vec<u64>,
    /// The servers, tried in order (every resolved address of each).
    pub servers: Vec<Endpoint>,
    /// Certificates to trust for TLS servers, instead of the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Certificates to trust, PEM held in memory (a simulator's certificate
    /// made on the spot, as `barrage demo --transport wss` does); instead
    /// of `ca_file`, which must then be `None`.
    pub ca_pem: Option<Vec<u8>>,
    pub format: Format,
    /// Only these message types are written (all if `None`).
    pub types: Option<HashSet<String>>,
    pub session: SessionConfig,
    /// New connections started per second, at most.
    pub connects_per_second: f64,
    pub output: Destination,
    pub output_limits: OutputLimits,
    /// How often the status line is logged (at info level).
    pub status_interval: Duration,
    /// A connection that lived this long resets the backoff.
    pub healthy_after: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Check that numeric `cid`s arrive as 1, 2, 3, … on each connection
    /// (true for `barrage serve`'s streams, not for real Douyu ids).
    pub check_sequence: bool,
    /// How long an attempt may take to open its transport (the TCP connect,
    /// and the TLS and WebSocket handshakes) before the next address is
    /// tried: an address that silently drops packets would otherwise hold
    /// the room for the kernel's SYN retries (about 2 minutes), and with
    /// eight endpoints a few seconds each is enough.
    pub connect_timeout: Duration,
    /// How long [`Monitor::stop`](super::Monitor::stop) waits for the rooms to log out and close.
    pub logout_timeout: Duration,
    /// How long the output may take to be written at exit
    /// ([`Monitor::finish_output`](super::Monitor::finish_output)).
    pub flush_timeout: Duration,
    /// Looking rooms up on Douyu's web site: real ids and live status
    /// (`None`: never; `barrage watch` turns it on).
    pub web: Option<WebLookups>,
    /// What becomes of a chat message that names another room.
    pub foreign_chat: ForeignChat,
    /// How long a broadcast may be off before its end is reported
    /// ([`DEFAULT_LIVE_GRACE`]): streams drop and come back within seconds,
    /// and an end and a start for each would be noise.
    pub live_grace: Duration,
    /// Stop ([`StopCause::Count`](super::StopCause::Count)) once this many
    /// messages have been written (after the `types` filter); later ones
    /// are not written.
    pub stop_after_messages: Option<u64>,
    /// Seeds the random choices (backoff delays, heartbeat phases,
    /// WebSocket keys). `None`: a seed from the clock, so that daemons
    /// started together do not reconnect in lockstep; a fixed seed makes
    /// those choices repeat from run to run, for tests.
    pub random_seed: Option<u64>,
    /// How the servers' names are resolved, and when again.
    pub resolution: Resolution,
}

/// How server names become addresses, and when they are resolved again
/// (see `resolve.rs`; SIGHUP resolves them too).
#[derive(Clone, Copy, Debug)]
pub struct Resolution {
    /// Looks a name up, on a helper thread (it may block): the system's
    /// resolver by default; tests put a fake one here.
    pub resolve: Resolve,
    /// How old the answers may get before a room's connect asks for new
    /// ones (5 minutes).
    pub refresh: Duration,
    /// The least time between two resolutions asked for by rooms that
    /// failed on every address (30 s).
    pub min_gap: Duration,
}

impl Default for Resolution {
    fn default() -> Self {
        Resolution { resolve: system_resolve, refresh: Duration::from_secs(5 * 60), min_gap: Duration::from_secs(30) }
    }
}

/// Where and what to look up on Douyu's web site (see `lookup.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebLookups {
    /// Look up each room's real id before it joins: a vanity number (6657
    /// for 6979222) joins nothing on the barrage server.
    pub resolve_ids: bool,
    /// The mobile site, for room pages (`https://m.douyu.com`).
    pub mobile_base: Url,
    /// The desktop site, for room pages and status (`https://www.douyu.com`).
    pub desktop_base: Url,
    /// Read each room's status after it joins and then every this often
    /// (Douyu pushes changes only while connected); zero: never.
    pub status_check: Duration,
    /// How long a room waits for its first id look-up before it joins with
    /// the id as written ([`DEFAULT_LOOK_UP_WAIT`]).
    pub look_up_wait: Duration,
    /// How long one request (a room page, a status read) may take,
    /// redirects included ([`DEFAULT_WEB_TIMEOUT`]).
    pub timeout: Duration,
}

impl WebLookups {
    /// Douyu's own sites, or `base` for both (a proxy, or `barrage serve --http`).
    pub fn new(base: Option<Url>, resolve_ids: bool, status_check: Duration) -> Self {
        let site = |default: &str| base.clone().unwrap_or_else(|| Url::parse(default).expect("Douyu's sites parse"));
        WebLookups {
            resolve_ids,
            mobile_base: site(crate::douyu::web::MOBILE_BASE),
            desktop_base: site(crate::douyu::web::DESKTOP_BASE),
            status_check,
            look_up_wait: DEFAULT_LOOK_UP_WAIT,
            timeout: DEFAULT_WEB_TIMEOUT,
        }
    }
}

/// A `chatmsg` whose `rid` is another room's: Douyu sends a few (a known
/// server bug); they are counted either way (`/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForeignChat {
    /// Not written (as pure_live does): a room's output is its own chat.
    #[default]
    Drop,
    /// Written like any message, `rid` and all.
    Write,
}

/// The shortest status check interval: the page sits behind a cache of
/// about a minute anyway.
pub const MIN_STATUS_CHECK: Duration = Duration::from_secs(30);

/// How often a room's status is read by default.
pub const DEFAULT_STATUS_CHECK: Duration = Duration::from_secs(300);

/// [`WebLookups::look_up_wait`] by default: a look-up takes well under a
/// second; a room whose look-up is slower joins with the id as written
/// meanwhile.
pub const DEFAULT_LOOK_UP_WAIT: Duration = Duration::from_secs(5);

/// [`WebLookups::timeout`] by default.
pub const DEFAULT_WEB_TIMEOUT: Duration = Duration::from_secs(10);

/// [`MonitorConfig::live_grace`] by default: aiodouyu's, the most careful
/// monitor seen.
pub const DEFAULT_LIVE_GRACE: Duration = Duration::from_secs(90);

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            rooms: Vec::new(),
            servers: default_servers(),
            ca_file: None,
            ca_pem: None,
            format: Format::Json,
            types: None,
            session: SessionConfig::default(),
            connects_per_second: 200.0,
            output: Destination::Stdout,
            output_limits: OutputLimits::default(),
            status_interval: Duration::from_secs(30),
            healthy_after: Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            check_sequence: false,
            connect_timeout: Duration::from_secs(5),
            logout_timeout: DEFAULT_LOGOUT_TIMEOUT,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
            web: None,
            foreign_chat: ForeignChat::Drop,
            live_grace: DEFAULT_LIVE_GRACE,
            stop_after_messages: None,
            random_seed: None,
            resolution: Resolution::default(),
        }
    }
}

/// [`DEFAULT_SERVERS`], parsed.
pub fn default_servers() -> Vec<Endpoint> {
    DEFAULT_SERVERS.iter().map(|server| server.parse().expect("the default servers parse")).collect()
}

impl MonitorConfig {
    /// Checks every setting against its limits and the others, for a
    /// reactor that polls at most every `poll_interval`
    /// ([`ReactorConfig::min_poll_interval`](crate::reactor::ReactorConfig::min_poll_interval)).
    /// The error is one sentence naming the setting.
    ///
    /// The poll interval must be shorter than the heartbeat (every reply and
    /// message may wait one interval), and a beat plus an interval shorter
    /// than the idle timeout: the reply to a beat may wait one interval in
    /// the kernel, and the idle timer, due before the next poll, would fire
    /// before that poll reads it.
    pub fn validate(&self, poll_interval: Duration) -> Result<(), SettingError> {
        self.session.validate()?;
        if let Some(room) = self.rooms.iter().find(|&&room| room == 0) {
            return Err(SettingError::new("rooms", format!("room ids are positive integers, not {room}")));
        }
        if self.stop_after_messages == Some(0) {
            return Err(SettingError::new("count", "count must be at least 1 message"));
        }
        if self.servers.is_empty() {
            return Err(SettingError::new("servers", "no server to connect to"));
        }
        if self.ca_file.is_some() && self.ca_pem.is_some() {
            return Err(SettingError::new("ca_file", "ca_file and ca_pem both name certificates to trust: give one"));
        }
        if !(self.connects_per_second > 0.0 && self.connects_per_second <= MAX_CONNECT_RATE) {
            return Err(SettingError::new(
                "connect_rate",
                format!(
                    "connect_rate must be above 0 and at most {MAX_CONNECT_RATE} per second (got {})",
                    self.connects_per_second
                ),
            ));
        }
        if !self.status_interval.is_zero() {
            duration_within("status_interval", self.status_interval, MIN_STATUS_INTERVAL, MAX_DURATION).map_err(
                |e| SettingError::new(e.setting, e.message.replace("must be from", "must be 0 (never) or from")),
            )?;
        }
        duration_within("connect_timeout", self.connect_timeout, MIN_CONNECT_TIMEOUT, MAX_DURATION)?;
        duration_within("logout_timeout", self.logout_timeout, Duration::ZERO, MAX_DURATION)?;
        duration_within("flush_timeout", self.flush_timeout, Duration::ZERO, MAX_DURATION)?;
        duration_within("healthy_after", self.healthy_after, Duration::ZERO, MAX_DURATION)?;
        duration_within("backoff_base", self.backoff_base, Duration::from_millis(10), MAX_DURATION)?;
        duration_within("backoff_cap", self.backoff_cap, self.backoff_base, MAX_DURATION)?;
        duration_within("live_grace", self.live_grace, Duration::ZERO, MAX_DURATION)?;
        duration_within("resolve_refresh", self.resolution.refresh, Duration::ZERO, MAX_DURATION)?;
        duration_within("resolve_min_gap", self.resolution.min_gap, Duration::ZERO, MAX_DURATION)?;
        if let Some(web) = &self.web {
            if !web.status_check.is_zero() {
                duration_within("status_check", web.status_check, MIN_STATUS_CHECK, MAX_DURATION).map_err(|e| {
                    SettingError::new(e.setting, e.message.replace("must be from", "must be 0 (never) or from"))
                })?;
            }
            duration_within("look_up_wait", web.look_up_wait, Duration::ZERO, MAX_DURATION)?;
            duration_within("web_timeout", web.timeout, Duration::from_millis(1), MAX_DURATION)?;
        }
        let heartbeat = self.session.heartbeat;
        let (seconds, ms) = (|d: Duration| d.as_secs_f64(), poll_interval.as_micros() as f64 / 1e3);
        let poll_error = |message: String| Err(SettingError::new("poll_interval", message));
        if poll_interval > MAX_POLL_INTERVAL {
            return poll_error(format!(
                "the poll interval must be at most {} ms (got {ms} ms)",
                MAX_POLL_INTERVAL.as_millis()
            ));
        }
        if poll_interval >= heartbeat {
            return poll_error(format!(
                "the poll interval ({ms} ms) must be shorter than the heartbeat ({} s)",
                seconds(heartbeat)
            ));
        }
        if heartbeat + poll_interval >= self.session.idle_timeout {
            return poll_error(format!(
                "the heartbeat ({} s) plus the poll interval ({ms} ms) must be shorter than idle_timeout ({} s), \
                 or a quiet room's reply can be read only after the room was judged idle",
                seconds(heartbeat),
                seconds(self.session.idle_timeout)
            ));
        }
        Ok(())
    }

    /// A poll interval that fits these settings: [`DEFAULT_POLL_INTERVAL`],
    /// or less when the heartbeat, or the time from it to the idle timeout,
    /// is short, so that [`validate`](Self::validate) holds with room to spare.
    pub fn default_poll_interval(&self) -> Duration {
        let session = &self.session;
        let slack = session.idle_timeout.saturating_sub(session.heartbeat);
        DEFAULT_POLL_INTERVAL.min(session.heartbeat / 2).min(slack / 2)
    }
}

/// Why [`Monitor::start`](super::Monitor::start) refused to start: which
/// part of its configuration could not be used, so a caller can tell the
/// user what to fix.
#[derive(Debug)]
pub enum StartError {
    /// A setting out of its range ([`MonitorConfig::validate`]).
    Setting(SettingError),
    /// The output could not be opened.
    Output(io::Error),
    /// The certificates to trust could not be loaded: `ca_pem`, `ca_file`,
    /// or the system's (the message says which).
    Trust(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Setting(e) => write!(f, "{e}"),
            StartError::Output(e) => write!(f, "cannot open the output: {e}"),
            StartError::Trust(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Setting(e) => Some(e),
            StartError::Output(e) | StartError::Trust(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_session(heartbeat_ms: u64, idle_ms: u64) -> MonitorConfig {
        let session = SessionConfig {
            heartbeat: Duration::from_millis(heartbeat_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            ..SessionConfig::default()
        };
        MonitorConfig { session, ..MonitorConfig::default() }
    }

    #[test]
    fn the_poll_interval_fits_between_beats_and_before_the_idle_timeout() {
        let ms = Duration::from_millis;
        let config = with_session(1_000, 3_000);
        assert!(config.validate(ms(999)).is_ok());
        assert!(config.validate(ms(1_000)).is_err());
        let tight = with_session(45_000, 45_500);
        assert!(tight.validate(ms(400)).is_ok());
        let error = tight.validate(ms(900)).unwrap_err().message;
        assert!(error.contains("must be shorter than idle_timeout (45.5 s)"), "{error}");
        assert_eq!(tight.default_poll_interval(), ms(100));
        let tighter = with_session(300, 400);
        assert_eq!(tighter.default_poll_interval(), ms(50), "half of the 100 ms slack");
        assert!(tighter.validate(tighter.default_poll_interval()).is_ok());
        assert!(MonitorConfig::default().validate(ms(1_001)).unwrap_err().message.contains("at most 1000 ms"));
    }

    #[test]
    fn settings_that_would_hammer_a_server_or_flood_the_log_are_refused() {
        let valid = MonitorConfig::default();
        assert_eq!(valid.validate(DEFAULT_POLL_INTERVAL), Ok(()));
        let check = |change: fn(&mut MonitorConfig)| {
            let mut config = valid.clone();
            change(&mut config);
            config.validate(Duration::ZERO).map_err(|e| (e.setting, e.message))
        };
        assert_eq!(check(|c| c.session.heartbeat = Duration::from_micros(100)).unwrap_err().0, "heartbeat");
        let (setting, message) = check(|c| c.status_interval = Duration::from_micros(100)).unwrap_err();
        assert_eq!(
            (setting, message.as_str()),
            ("status_interval", "status_interval must be 0 (never) or from 1 s to 86400 s (got 0.0001 s)")
        );
        assert!(check(|c| c.status_interval = Duration::ZERO).is_ok(), "0 turns it off");
        assert_eq!(check(|c| c.connects_per_second = 1e6).unwrap_err().0, "connect_rate");
        assert!(check(|c| c.connects_per_second = 0.0).is_err());
        assert_eq!(check(|c| c.connect_timeout = Duration::from_micros(1)).unwrap_err().0, "connect_timeout");
        assert!(check(|c| c.rooms = vec![1, 0]).unwrap_err().1.contains("positive"));
        assert!(check(|c| c.servers.clear()).is_err());
        assert_eq!(check(|c| c.flush_timeout = Duration::MAX).unwrap_err().0, "flush_timeout");
        let both = |c: &mut MonitorConfig| (c.ca_file, c.ca_pem) = (Some("ca.pem".into()), Some(b"PEM".to_vec()));
        assert_eq!(check(both).unwrap_err().0, "ca_file");
        assert_eq!(check(|c| c.live_grace = Duration::MAX).unwrap_err().0, "live_grace");
        assert!(check(|c| c.live_grace = Duration::ZERO).is_ok(), "0: every end at once");
        assert_eq!(check(|c| c.resolution.min_gap = Duration::MAX).unwrap_err().0, "resolve_min_gap");
        assert_eq!(check(|c| c.resolution.refresh = Duration::MAX).unwrap_err().0, "resolve_refresh");
        let web = WebLookups::new(None, true, DEFAULT_STATUS_CHECK);
        let check_web = |change: fn(&mut WebLookups)| {
            let mut config = MonitorConfig { web: Some(web.clone()), ..valid.clone() };
            change(config.web.as_mut().unwrap());
            config.validate(Duration::ZERO).map_err(|e| e.setting)
        };
        assert_eq!(check_web(|_| {}), Ok(()));
        assert_eq!(check_web(|w| w.timeout = Duration::ZERO), Err("web_timeout"));
        assert_eq!(check_web(|w| w.look_up_wait = Duration::MAX), Err("look_up_wait"));
        assert_eq!(check_web(|w| w.status_check = Duration::from_secs(1)), Err("status_check"));
    }
}

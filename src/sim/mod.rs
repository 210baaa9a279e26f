//! A simulated Douyu barrage server, on the same reactor as everything else,
//! so that clients can be developed, tested and benchmarked offline.
//!
//! It speaks the server side of the protocol in `douyu` (`loginreq` →
//! `loginres` + `pingreq`, `joingroup`, `mrkl` echoes, `logout`), drops
//! clients that stop sending heartbeats, and makes realistic room traffic
//! at a chosen rate, every message numbered per room in `cid` so a client
//! can prove it lost nothing; or it plays a recording of a real session
//! to the rooms again ([`playback`]). Faults can be switched on one by one:
//! fragmented or coalesced frames, dropped connections, corrupt frames, a
//! server that stalls.
//!
//! It speaks Douyu's web transport too, so web clients run offline:
//! WebSocket ([`SimConfig::websocket`]), TLS ([`SimConfig::tls`]; by
//! default offering only what Douyu's endpoint offers), or both (`wss://`).
//! Every fault works over each, and [`WsFault`] breaks the WebSocket itself.
//! Rooms go live, off air and into replay loops on a seeded schedule
//! ([`status`]; by default they stay live), pushed to their members as
//! `rss`. Optionally a second listener answers Douyu's web look-ups, room
//! pages and `betard` status, from the same status ([`web`]), with faults
//! of its own.
//!
//! Thousands of clients on one thread: a client costs one connection entry
//! in the reactor, one small `ClientConn` dispatcher, one `Outbox` and one
//! timer. Room traffic is one periodic tick for all rooms, and each message
//! is encoded once however many clients get it.
//!
//! | module | concept |
//! |---|---|
//! | [`traffic`] | one room's message stream: realistic bodies, numbered |
//! | [`vocabulary`] | the nicknames, chat lines and gifts the rooms use |
//! | [`faults`] | the catalogue of faults and the invalid frames |
//! | [`status`] | each room's live status over time, and statuses set by hand |
//! | `outbox` | one client's write path, where the faults happen |
//! | `transport` | TLS and WebSocket settings; the WebSocket layer of a client |
//! | [`playback`] | a recording (`watch --format json`) played to the rooms, in time |
//! | `hub` | rooms, members, the traffic tick (shared state) |
//! | `client_conn` | one client connection: requests, replies, heartbeat timeout |
//! | [`web`] | the web look-ups: room pages, `betard`, their faults |
//!
//! # Use
//!
//! ```no_run
//! use barrage::reactor::Reactor;
//! use barrage::sim::{self, SimConfig};
//!
//! let mut reactor = Reactor::new()?;
//! let config = SimConfig { listen: "127.0.0.1:0".parse().unwrap(), rate: 20.0, ..SimConfig::default() };
//! let server = sim::start(&mut reactor, config)?;
//! println!("listening on {}", server.local_addr());
//! reactor.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`start`] only registers a listener and periodic callbacks, so the same
//! reactor can run clients too (that is how the tests and `barrage demo` use
//! it).

pub mod certificate;
pub(crate) mod client_conn;
pub mod faults;
pub(crate) mod hub;
pub(crate) mod outbox;
pub mod playback;
pub mod status;
pub mod traffic;
mod transport;
pub mod vocabulary;
pub mod web;

use crate::plural::plural;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};

use crate::douyu::LiveStatus;
use crate::douyu::frame::{self, SERVER_TO_CLIENT};
use crate::reactor::{CipherPolicy, EntryToken, PeriodicId, Reactor, TlsServerConfig};
use crate::settings::{SettingError, duration_within};
use client_conn::ClientConn;
pub use faults::{Corruption, Faults, WsFault};
use hub::Hub;
pub use hub::TICK;
use playback::Playback;
pub use playback::SimReplay;
pub use status::Broadcast;
pub use transport::{DEFAULT_PING_INTERVAL, SimTls, SimWebSocket, TEXT_EVERY_PINGS};
pub use web::{WebConfig, WebFault, WebFaults, WebLimits, WebServer};

/// Everything `barrage serve` can be told.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to listen on; port 0 picks a free one (see [`SimServer::local_addr`]).
    pub listen: SocketAddr,
    /// Room messages per second, per room with at least one client. May be
    /// fractional (0.05 = one every 20 s); 0 = no room traffic at all.
    pub rate: f64,
    /// A client that sends nothing for this long is dropped.
    pub heartbeat_timeout: Duration,
    /// Decides every message body and every random fault: the same seed
    /// gives the same messages in the same room.
    pub seed: u64,
    /// A client whose unwritten output grows past this many bytes is
    /// dropped as a slow consumer.
    pub max_client_buffer: usize,
    /// How often to log counters (`None`: never).
    pub stats_interval: Option<Duration>,
    /// Faults to inject; none by default.
    pub faults: Faults,
    /// Serve TLS with this certificate (`None`: plain TCP).
    pub tls: Option<SimTls>,
    /// Speak WebSocket: Douyu packets in binary messages (`None`: raw packets).
    pub websocket: Option<SimWebSocket>,
    /// The length of one broadcast cycle of a room's status schedule (see
    /// [`status`]); zero, the default: every room stays live.
    pub status_period: Duration,
    /// Vanity ids (靓号) and the real room ids they stand for. The web
    /// pages resolve them; joining one gives no error and no messages, as
    /// on Douyu.
    pub vanity: BTreeMap<u64, u64>,
    /// Douyu's web look-ups on a second listener; `None`, the default: off.
    pub web: Option<WebConfig>,
    /// Play this recording to the rooms' members (see [`playback`]),
    /// beside the traffic `rate` makes; `None`, the default: none.
    pub replay: Option<SimReplay>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8601)),
            rate: 2.0,
            heartbeat_timeout: Duration::from_secs(90),
            seed: 0,
            max_client_buffer: 16 * 1024 * 1024,
            stats_interval: Some(Duration::from_secs(10)),
            faults: Faults::default(),
            tls: None,
            websocket: None,
            status_period: Duration::ZERO,
            vanity: BTreeMap::new(),
            web: None,
            replay: None,
        }
    }
}

/// The highest `rate` accepted: a room makes at most this many messages a
/// second. (Far beyond any real room; it keeps one tick's work bounded.)
pub const MAX_RATE: f64 = 1_000_000.0;

/// The shortest `status_period` accepted (but zero): its shortest status
/// then lasts 100 ms, two traffic ticks, so the Douyu side sees it.
pub const MIN_STATUS_PERIOD: Duration = Duration::from_secs(1);

/// The longest `heartbeat_timeout`, `stats_interval` and `status_period` accepted: one day.
/// (Timers further out than that are a typo, and `Instant + Duration` must
/// not overflow.)
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

impl SimConfig {
    /// `Err` with a message naming the bad field.
    pub fn validate(&self) -> Result<(), SettingError> {
        if !(self.rate >= 0.0 && self.rate <= MAX_RATE) {
            let message = format!("rate must be from 0 to {MAX_RATE} messages per second (got {})", self.rate);
            return Err(SettingError::new("rate", message));
        }
        duration_within("heartbeat_timeout", self.heartbeat_timeout, Duration::from_millis(1), MAX_INTERVAL)?;
        if let Some(interval) = self.stats_interval {
            duration_within("stats_interval", interval, Duration::from_millis(1), MAX_INTERVAL)?;
        }
        if self.max_client_buffer == 0 {
            return Err(SettingError::new("max_client_buffer", "max_client_buffer must be more than 0"));
        }
        if let Some(interval) = self.websocket.as_ref().and_then(|ws| ws.ping_interval) {
            duration_within("ws_ping_interval", interval, Duration::from_millis(1), MAX_INTERVAL)?;
        }
        if !self.status_period.is_zero() {
            duration_within("status_period", self.status_period, MIN_STATUS_PERIOD, MAX_INTERVAL)?;
        }
        self.validate_vanity()?;
        if let Some(replay) = &self.replay {
            replay.validate()?;
        }
        if let Some(web) = &self.web {
            web.validate()?;
            if let Some((vanity, real)) = self.vanity.iter().find(|(_, real)| web.unknown_rooms.contains(real)) {
                let message = format!("vanity {vanity}={real}: {real} is listed as an unknown room");
                return Err(SettingError::new("vanity", message));
            }
        }
        self.faults.validate()
    }

    /// A vanity id is not a real room's id, and a room has at most one.
    fn validate_vanity(&self) -> Result<(), SettingError> {
        let mut real_ids = std::collections::BTreeSet::new();
        for (&vanity, &real) in &self.vanity {
            let problem = if vanity == 0 || real == 0 {
                "room ids are positive"
            } else if self.vanity.contains_key(&real) {
                "a vanity id stands for a real id, not for another vanity id"
            } else if !real_ids.insert(real) {
                "a room has at most one vanity id"
            } else {
                continue;
            };
            return Err(SettingError::new("vanity", format!("vanity {vanity}={real}: {problem}")));
        }
        Ok(())
    }
}

/// The simulator's counters, as [`SimServer::stats`] returns them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Connections accepted since the start.
    pub accepted: u64,
    /// Clients connected now.
    pub clients: usize,
    /// Rooms with at least one client now.
    pub rooms: usize,
    /// Room messages made (each once, however many clients got it).
    pub room_messages: u64,
    /// Room message frames queued for clients (one per message per client).
    pub frames_sent: u64,
    /// Clients dropped for sending nothing for `heartbeat_timeout`.
    pub dropped_idle: u64,
    /// Clients dropped as slow consumers (`max_client_buffer`).
    pub dropped_slow: u64,
    /// Clients dropped for sending an invalid frame.
    pub dropped_bad_frame: u64,
    /// Clients that sent `logout`.
    pub logouts: u64,
    /// Connections closed by `drop_every`.
    pub fault_drops: u64,
    /// Invalid frames sent by `corrupt_every`.
    pub fault_corruptions: u64,
    /// Clients stalled by `stall_after`.
    pub fault_stalls: u64,
    /// WebSocket pings sent.
    pub ws_pings: u64,
    /// WebSocket pongs received.
    pub ws_pongs: u64,
    /// WebSocket text frames sent.
    pub ws_texts: u64,
    /// Connections refused at the WebSocket upgrade (400 or 426).
    pub ws_refused: u64,
    /// `replay`: recorded messages played (each once, however many clients got it).
    pub replayed: u64,
    /// `replay`: recorded messages played while nobody was in their room.
    pub replayed_unheard: u64,
}

/// A running simulator: its address and counters. It lives on the loop
/// thread, like the reactor it runs on.
pub struct SimServer {
    hub: Rc<RefCell<Hub>>,
    local_addr: SocketAddr,
    listener: EntryToken,
    periodics: Vec<PeriodicId>,
    web: Option<WebServer>,
}

/// Starts a simulator on `reactor`: binds the listener and registers the
/// periodic work. Nothing happens until the reactor runs. Fails if the
/// config is invalid (`InvalidInput`, a bad certificate too) or the address
/// cannot be bound.
pub fn start(reactor: &mut Reactor, config: SimConfig) -> io::Result<SimServer> {
    config.validate().map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error.message))?;
    let tls = match &config.tls {
        Some(tls) => Some(TlsServerConfig::from_pem(&tls.cert_pem, &tls.key_pem, tls.policy)?),
        None => None,
    };
    // Opened first: a recording that cannot be read leaves nothing behind.
    let recording = config.replay.as_ref().map(playback::open).transpose()?;
    let listener = TcpListener::bind(config.listen)?;
    let local_addr = listener.local_addr()?;
    let faults = config.faults.clone();
    let stats_interval = config.stats_interval;
    let transport = describe_transport(&config);
    let ping_interval = config.websocket.as_ref().and_then(|ws| ws.ping_interval);
    let web_config = config.web.clone();
    let replay = config.replay.clone();
    let hub = Rc::new(RefCell::new(Hub::new(config, Instant::now())));
    let web = match web_config {
        Some(web_config) => Some(web::start(reactor, hub.clone(), web_config)?),
        None => None,
    };

    let acceptor_hub = hub.clone();
    let listener = reactor.listen(listener, move |reactor: &mut Reactor, stream: TcpStream, peer| {
        // Frames are written as soon as they are queued: without this,
        // Nagle's algorithm would hold small frames back, and `fragment`
        // could not put each piece in its own segment.
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("{peer}: cannot set TCP_NODELAY: {e}");
        }
        if let Err(e) = ClientConn::attach(reactor, stream, tls.as_ref(), acceptor_hub.clone(), peer) {
            log::warn!("{peer}: cannot register the connection: {e}");
        }
    })?;

    let mut periodics = Vec::new();
    let tick_hub = hub.clone();
    periodics.push(reactor.add_periodic(TICK, move |reactor| tick_hub.borrow_mut().tick(reactor)));
    if faults.coalesce {
        let flush_hub = hub.clone();
        let interval = Duration::from_millis(faults::COALESCE_INTERVAL_MS);
        periodics.push(reactor.add_periodic(interval, move |reactor| flush_hub.borrow_mut().flush_held(reactor)));
    }
    if let Some(interval) = ping_interval {
        let ping_hub = hub.clone();
        periodics.push(reactor.add_periodic(interval, move |reactor| ping_hub.borrow_mut().ping_websockets(reactor)));
    }
    if let Some(interval) = stats_interval {
        let report_hub = hub.clone();
        periodics.push(reactor.add_periodic(interval, move |_| report_hub.borrow_mut().report()));
    }
    if let (Some(replay), Some(recording)) = (replay, recording) {
        let feed_hub = hub.clone();
        let feed = move |reactor: &mut Reactor, fed| feed_hub.borrow_mut().feed_playback(reactor, fed);
        hub.borrow_mut().playback = Some(Playback::start(reactor, &replay, recording, feed)?);
        log::info!(
            "playing {} at {}× once clients are in {}",
            replay.path.display(),
            replay.speed,
            plural(replay.start_rooms as u64, "room")
        );
    }
    log::info!("simulated Douyu server listening on {local_addr} ({transport})");
    if faults.any() {
        log::info!("injecting faults: {faults:?}");
    }
    Ok(SimServer { hub, local_addr, listener, periodics, web })
}

/// "WebSocket over TLS (TLS 1.2, RSA key exchange, AES256-GCM-SHA384)", for the log.
fn describe_transport(config: &SimConfig) -> String {
    let tls = config.tls.as_ref().map(|tls| match tls.policy {
        CipherPolicy::Legacy => "TLS (TLS 1.2, RSA key exchange, AES256-GCM-SHA384, as Douyu's)",
        CipherPolicy::Modern => "TLS (forward-secret suites only)",
    });
    let douyu = if config.websocket.is_some() { "Douyu packets in WebSocket messages" } else { "raw Douyu packets" };
    match tls {
        Some(tls) => format!("{douyu} over {tls}"),
        None => format!("{douyu} over TCP"),
    }
}

impl SimServer {
    /// The address clients connect to (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.hub.borrow().snapshot()
    }

    /// How many messages room `room` has made so far (its last `cid`), or
    /// `None` if no client ever joined it.
    pub fn room_messages(&self, room: u64) -> Option<u64> {
        self.hub.borrow().room_messages(room)
    }

    /// The web listener, if one was asked for (`SimConfig::web`).
    pub fn web(&self) -> Option<&WebServer> {
        self.web.as_ref()
    }

    /// How many clients have joined room `room` and are still connected.
    pub fn members(&self, room: u64) -> usize {
        self.hub.borrow().members(room)
    }

    /// Room `room`'s status now, as `betard` and `loginres` report it.
    pub fn broadcast(&self, room: u64) -> Broadcast {
        self.hub.borrow().status.get(room, Instant::now())
    }

    /// Makes room `room`'s status `status` now, for a test that needs a
    /// change at a chosen moment. If that is a change, the room's members
    /// get one `rss` at once, and the web pages say so from now on. It
    /// holds until the schedule's own next change (for ever with a
    /// `status_period` of zero).
    pub fn set_status(&self, reactor: &mut Reactor, room: u64, status: LiveStatus) {
        self.hub.borrow_mut().set_status(reactor, room, status);
    }

    /// Stops the simulator: no new connections, no more traffic, and every
    /// client gets `error` 52 ("server closing") and a graceful close.
    pub fn shutdown(&self, reactor: &mut Reactor) {
        reactor.remove_listener(self.listener);
        if let Some(web) = &self.web {
            web.stop(reactor);
        }
        for &periodic in &self.periodics {
            reactor.remove_periodic(periodic);
        }
        // Its reader thread ends at its next batch.
        self.hub.borrow_mut().playback = None;
        let mut goodbye = Vec::new();
        frame::encode_packet(&mut goodbye, SERVER_TO_CLIENT, "type@=error/code@=52/");
        self.hub.borrow_mut().close_all(reactor, &goodbye);
        log::info!("simulated server on {} shut down", self.local_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_bad_field() {
        assert_eq!(SimConfig::default().validate(), Ok(()));
        let bad = |change: fn(&mut SimConfig)| {
            let mut config = SimConfig::default();
            change(&mut config);
            config.validate().unwrap_err().setting
        };
        assert!(bad(|c| c.rate = -1.0) == "rate");
        assert!(bad(|c| c.rate = f64::NAN) == "rate");
        assert!(bad(|c| c.rate = 2.0 * MAX_RATE) == "rate");
        assert!(bad(|c| c.heartbeat_timeout = Duration::ZERO) == "heartbeat_timeout");
        assert!(bad(|c| c.heartbeat_timeout = Duration::from_secs(u64::MAX)) == "heartbeat_timeout");
        assert!(bad(|c| c.stats_interval = Some(Duration::ZERO)) == "stats_interval");
        assert!(bad(|c| c.max_client_buffer = 0) == "max_client_buffer");
        assert!(bad(|c| c.faults.drop_every = Some(0)) == "drop_every");
        let no_interval = SimWebSocket { ping_interval: Some(Duration::ZERO), fault: None };
        let mut config = SimConfig { websocket: Some(no_interval), ..SimConfig::default() };
        assert_eq!(config.validate().unwrap_err().setting, "ws_ping_interval");
        config.tls = Some(SimTls { cert_pem: b"not PEM".to_vec(), key_pem: Vec::new(), policy: CipherPolicy::Legacy });
        config.websocket = Some(SimWebSocket::default());
        let error = start(&mut Reactor::new().unwrap(), config).err().expect("a bad certificate is refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(bad(|c| c.status_period = Duration::from_millis(999)) == "status_period");
        assert!(bad(|c| c.status_period = 2 * MAX_INTERVAL) == "status_period");
        assert!(bad(|c| c.vanity = [(6657, 0)].into()) == "vanity");
        assert!(bad(|c| c.vanity = [(6657, 6979222), (6979222, 1)].into()) == "vanity");
        assert!(bad(|c| c.vanity = [(6657, 6979222), (5232, 6979222)].into()) == "vanity");
        let good = SimConfig {
            status_period: MIN_STATUS_PERIOD,
            vanity: [(6657, 6979222), (5232, 178432)].into(),
            ..SimConfig::default()
        };
        assert_eq!(good.validate(), Ok(()));
        let mut reactor = Reactor::new().unwrap();
        let config = SimConfig { rate: -1.0, ..SimConfig::default() };
        let error = start(&mut reactor, config).err().expect("an invalid config is refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}

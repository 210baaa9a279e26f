//! Douyu's web look-ups, offline: the room pages of `m.douyu.com` and
//! `www.douyu.com`, and the `betard` status JSON, on a listener of their
//! own (`barrage serve --http ADDR`), plain HTTP or, with a certificate,
//! HTTPS.
//!
//! A client points both hosts here (`--web-base http://127.0.0.1:PORT`)
//! and keeps Douyu's paths: `GET /{id}` is a room page (the mobile one for
//! a mobile `User-Agent`, as the two hosts share the path) and
//! `GET /betard/{rid}` the room's status. Vanity ids resolve through the
//! room pages, and `betard` refuses them, as on Douyu; ids listed in
//! [`WebConfig::unknown_rooms`] are no room (404). `pages` has the routes
//! and the formats.
//!
//! The status is the hub's [`StatusBoard`](crate::sim::status::StatusBoard),
//! the one the Douyu side pushes `rss` from, so a page and a connection
//! never disagree. Room names and owners are seeded per room.
//!
//! # Bounds
//!
//! As the metrics endpoint's, since a web client is a client like any
//! other: a request head over [`WebLimits::max_header_bytes`] gets `431`;
//! a head must be complete within [`WebLimits::head_timeout`] of its first
//! byte (`408`), and a TLS handshake within the same time; a connection
//! silent for [`WebLimits::idle_timeout`] is closed, and so is one that
//! stops reading a reply for as long; once
//! [`WebLimits::max_pending_output`] bytes of answers wait to be read, no
//! more requests are read; at most [`WebLimits::max_connections`] are open,
//! and newcomers beyond are refused (closed at once). Only `GET` is served;
//! a request announcing a body is answered, then the connection closed.
//!
//! # Faults
//!
//! `faults` is a layer between the pages and the socket: slow answers,
//! `503`s, a redirect loop, truncated and oversized bodies
//! ([`WebFaults`]).
//!
//! | module | concept |
//! |---|---|
//! | `pages` | which request gets which answer, and the pages |
//! | [`faults`] | what the faults make of an answer |
//! | `conn` | one connection: requests in, replies out, its deadlines |

mod conn;
pub mod faults;
mod pages;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;

use super::hub::Hub;
use crate::plural::plural;
use crate::reactor::{EntryToken, Reactor, TlsServerConfig};
use crate::settings::{SettingError, duration_within};
use conn::WebConn;
pub use faults::{WebFault, WebFaults};

/// The web listener's settings.
#[derive(Clone)]
pub struct WebConfig {
    /// Address to listen on; port 0, the default, picks a free one (see
    /// [`SimServer::web`](super::SimServer::web)).
    pub listen: SocketAddr,
    /// `Some`: serve HTTPS with this certificate (the one `--tls` makes).
    pub tls: Option<TlsServerConfig>,
    /// Room ids that are no room: their pages and status are `404`.
    pub unknown_rooms: BTreeSet<u64>,
    /// Faults to inject; none by default.
    pub faults: WebFaults,
    pub limits: WebLimits,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            unknown_rooms: BTreeSet::new(),
            faults: WebFaults::default(),
            limits: WebLimits::default(),
        }
    }
}

/// By hand: a TLS configuration has nothing to show.
impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("listen", &self.listen)
            .field("tls", &self.tls.is_some())
            .field("unknown_rooms", &self.unknown_rooms)
            .field("faults", &self.faults)
            .field("limits", &self.limits)
            .finish()
    }
}

impl WebConfig {
    /// `Err` naming the bad setting.
    pub fn validate(&self) -> Result<(), SettingError> {
        let limits = &self.limits;
        let at_least_one = [
            ("max_header_bytes", limits.max_header_bytes),
            ("max_pending_output", limits.max_pending_output),
            ("max_connections", limits.max_connections),
        ];
        if let Some((name, _)) = at_least_one.into_iter().find(|(_, value)| *value == 0) {
            return Err(SettingError::new(name, format!("{name} must be at least 1")));
        }
        duration_within("head_timeout", limits.head_timeout, Duration::from_millis(1), super::MAX_INTERVAL)?;
        duration_within("idle_timeout", limits.idle_timeout, Duration::from_millis(1), super::MAX_INTERVAL)?;
        self.faults.validate()
    }
}

/// The limits of the web listener (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebLimits {
    /// Largest request head (request line and headers) accepted.
    pub max_header_bytes: usize,
    /// How long a request head (or a TLS handshake) may take.
    pub head_timeout: Duration,
    /// How long a connection may stay silent between requests, or make no
    /// progress reading a reply.
    pub idle_timeout: Duration,
    /// Answered-but-unread bytes after which further requests wait.
    pub max_pending_output: usize,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for WebLimits {
    fn default() -> Self {
        WebLimits {
            max_header_bytes: 8 * 1024,
            head_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(10),
            max_pending_output: 256 * 1024,
            max_connections: 256,
        }
    }
}

/// What every connection of the listener shares.
struct Shared {
    hub: Rc<RefCell<Hub>>,
    config: WebConfig,
    /// Requests answered so far (`5xx=N` counts them).
    requests: Rc<Cell<u64>>,
    /// Connections open now.
    open: Cell<usize>,
    /// Newcomers refused because `max_connections` were open.
    refused: Cell<u64>,
}

/// A running web listener.
#[derive(Clone, Debug)]
pub struct WebServer {
    listener: EntryToken,
    addr: SocketAddr,
    tls: bool,
    requests: Rc<Cell<u64>>,
}

impl WebServer {
    /// The address it listens on (with the real port if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` or `https://ADDR`: what a client's web base is set to.
    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Requests answered so far, of every kind.
    pub fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// Stops accepting. Connections open finish on their own (their
    /// deadlines bound them).
    pub(super) fn stop(&self, reactor: &mut Reactor) {
        reactor.remove_listener(self.listener);
    }
}

/// Binds `config.listen` and serves the pages of `hub`'s rooms.
pub(super) fn start(reactor: &mut Reactor, hub: Rc<RefCell<Hub>>, config: WebConfig) -> io::Result<WebServer> {
    let listener = TcpListener::bind(config.listen)?;
    let addr = listener.local_addr()?;
    let tls = config.tls.is_some();
    let limits = config.limits;
    let faults = config.faults.clone();
    let requests = Rc::new(Cell::new(0));
    let shared = Rc::new(Shared { hub, config, requests: requests.clone(), open: Cell::new(0), refused: Cell::new(0) });
    let listener = reactor.listen(listener, move |reactor: &mut Reactor, stream, peer| {
        if shared.open.get() >= limits.max_connections {
            // Dropping the stream closes it.
            shared.refused.set(shared.refused.get() + 1);
            let how_many = shared.refused.get();
            if how_many == 1 {
                log::warn!(
                    "web: {} open (the limit): refusing newcomers",
                    plural(limits.max_connections as u64, "connection")
                );
            }
            log::debug!("web: refusing {peer} ({how_many} so far)");
            return;
        }
        let conn = WebConn::new(shared.clone());
        let added = match &shared.config.tls {
            Some(tls) => reactor.add_tls_stream(stream, tls, conn).inspect(|&id| {
                reactor.set_timer(id, Instant::now() + limits.head_timeout, conn::TIMER_HANDSHAKE);
            }),
            None => reactor.add_stream(stream, conn),
        };
        match added {
            Ok(_) => shared.open.set(shared.open.get() + 1),
            Err(e) => log::warn!("web: cannot serve {peer}: {e}"),
        }
    })?;
    let server = WebServer { listener, addr, tls, requests };
    log::info!("web look-ups (room pages, betard) on {}", server.base_url());
    if faults.any() {
        log::info!("web: injecting faults: {faults:?}");
    }
    Ok(server)
}

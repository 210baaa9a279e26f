//! `barrage serve`: the simulated Douyu server, on a reactor of its own,
//! until SIGINT or SIGTERM; its rooms make up traffic, or play a recording
//! (`--replay`, see `sim::playback`).
//!
//! A signal arrives like any other event (`signal-hook-mio`, a raw handler,
//! as in `watch`): the loop stops, every client gets `error` 52 and a
//! graceful close, and once they are gone (or after [`GOODBYE_LIMIT`]; a
//! second signal cuts it short) the process exits 0.

use std::cell::Cell;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::plural::plural;
use crate::reactor::{CipherPolicy, Interest, Reactor, TlsServerConfig};
use crate::sim::{
    self, Faults, SimConfig, SimReplay, SimServer, SimTls, SimWebSocket, WebConfig, WebFault, WebFaults, WsFault,
};

use super::{Failure, LogLevel, host_port, init_logging, parse_bytes, parse_rate, parse_seconds, parse_speed};

/// How long clients get to go after a stop, at most.
pub(crate) const GOODBYE_LIMIT: Duration = Duration::from_secs(1);

/// `barrage serve`: the flags map one to one onto `SimConfig`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free one); a name
    /// (localhost) is resolved at start, and its first address is used.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8601", value_parser = parse_listen)]
    listen: String,

    /// Room messages per second, per room with clients (0.05 is fine; 0 = none).
    /// [default: 2, or 0 with --replay]
    #[arg(long, value_name = "PER_SEC", value_parser = parse_rate, allow_negative_numbers = true)]
    rate: Option<f64>,

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
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_seconds, allow_negative_numbers = true)]
    stats_interval: Duration,

    /// Fault: write each frame in pieces of 1-40 bytes, one write each.
    #[arg(long)]
    fragment: bool,

    /// Fault: write room messages in bursts (every 200 ms or 64 frames).
    #[arg(long)]
    coalesce: bool,

    /// Fault: close a client's connection after N room messages.
    #[arg(long, value_name = "N", value_parser = super::parse_messages, allow_negative_numbers = true)]
    drop_every: Option<u64>,

    /// Fault: after N room messages, send an invalid frame and close.
    #[arg(long, value_name = "N", value_parser = super::parse_messages, allow_negative_numbers = true)]
    corrupt_every: Option<u64>,

    /// Fault: after N room messages, stop writing (the socket stays open).
    #[arg(long, value_name = "N", value_parser = super::parse_messages, allow_negative_numbers = true)]
    stall_after: Option<u64>,

    /// Rooms go live, then off air or into a replay loop, in cycles of
    /// about this many seconds, seeded (0 = every room stays live).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_seconds)]
    status_period: Duration,

    /// A vanity room id and the real id it stands for (6657=6979222);
    /// repeat for more. Web look-ups resolve it; joining it gets nothing.
    #[arg(long, value_name = "VANITY=REAL", value_parser = parse_vanity)]
    vanity: Vec<(u64, u64)>,

    /// Also answer Douyu's web look-ups on HOST:PORT: GET /{id} (the
    /// mobile room page for a mobile User-Agent, else the desktop one) and
    /// GET /betard/{rid} (the room's status, JSON).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    http: Option<String>,

    /// A room id that is no room: its pages and status are 404; repeat for more.
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
    web_unknown: Vec<u64>,

    /// Web fault: slow[=SECS] (answers after SECS, 30), 5xx[=N] (every Nth
    /// request 503, 1), redirect-loop, truncate (half the body, then the
    /// close), oversize[=BYTES] (a 3 MiB body); repeat for several.
    #[arg(long, value_name = "KIND[=N]", value_parser = parse_web_fault)]
    web_fault: Vec<WebFault>,

    /// Serve TLS as Douyu's wss endpoint does: TLS 1.2, RSA key exchange,
    /// AES256-GCM-SHA384 only; with a self-signed certificate for 127.0.0.1
    /// and localhost made at start (see --tls-cert-out). --http then speaks
    /// HTTPS with the same certificate (forward-secret suites, as Douyu's
    /// web site). The --tls-* flags imply it.
    #[arg(long)]
    tls: bool,

    /// TLS offering only forward-secret suites (ECDHE, TLS 1.3) instead.
    #[arg(long)]
    tls_modern: bool,

    /// TLS with this PEM certificate chain instead of a self-signed one
    /// (and --tls-key).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// Write the self-signed certificate here (PEM), for clients to trust
    /// (watch --ca-file).
    #[arg(long, value_name = "FILE", conflicts_with = "tls_cert")]
    tls_cert_out: Option<PathBuf>,

    /// Speak WebSocket: answer the upgrade, then send each packet in a binary
    /// message (--fragment splits them, --coalesce shares them), ping, and
    /// now and then send a text frame. The --ws-* flags imply it.
    #[arg(long)]
    ws: bool,

    /// Seconds between WebSocket pings; every 4th brings a text frame
    /// (0 = none). [default: 5]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    ws_ping_interval: Option<Duration>,

    /// Break the WebSocket itself.
    #[arg(long, value_name = "KIND", value_parser = ws_fault_parser())]
    ws_fault: Option<WsFault>,

    /// Play a recording (the JSON lines of `watch --format json`) to the
    /// rooms: each message goes, as the STT body it came in, to the clients
    /// in its room (the line's `room`) when it is due by its `ts` (see
    /// --speed; to within 50 ms), from the moment clients are in --replay-start-rooms rooms;
    /// a client that joins later gets the rest, as in a live room. The
    /// recorded session's replies (loginres, pingreq, mrkl, error) and
    /// barrage's own lines (barrage.live) are left out: the server makes
    /// its own. A malformed line is logged with its line number and
    /// skipped. At the end of the recording the rooms fall silent; the
    /// server goes on (logins, heartbeats) until stopped. Rooms make no
    /// traffic of their own unless --rate says so. The file is read as it
    /// plays, so its size does not matter.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,

    /// With --replay: play X times as fast as it was recorded (1: real
    /// time, 60: an hour in a minute). [default: 1]
    #[arg(long, value_name = "X", value_parser = parse_speed, allow_negative_numbers = true, requires = "replay")]
    speed: Option<f64>,

    /// With --replay: start playing once clients are in N rooms, so that a
    /// recording of N rooms plays whole to a watcher of all N (rooms are
    /// joined one after another). [default: 1]
    #[arg(long, value_name = "N", value_parser = parse_start_rooms, requires = "replay")]
    replay_start_rooms: Option<usize>,
}

/// `--ws-fault`'s values, each with what the client sees, from the fault itself.
fn ws_fault_parser() -> impl TypedValueParser<Value = WsFault> {
    let values = WsFault::ALL.map(|fault| PossibleValue::new(fault.name()).help(fault.what_the_client_sees()));
    PossibleValuesParser::new(values).map(|name| WsFault::from_name(&name).expect("one of the possible values"))
}

impl ServeArgs {
    /// The config the flags say, names resolved (and a certificate made
    /// for `--tls`, which the web listener shares).
    fn config(&self) -> Result<SimConfig, Failure> {
        let tls = self.tls()?;
        let web = match &self.http {
            Some(http) => {
                let mut faults = WebFaults::default();
                self.web_fault.iter().for_each(|&fault| faults.add(fault));
                let web_tls = tls
                    .as_ref()
                    .map(|tls| TlsServerConfig::from_pem(&tls.cert_pem, &tls.key_pem, CipherPolicy::Modern))
                    .transpose()
                    .map_err(|e| Failure::Usage(format!("{e} (--tls-cert, --tls-key)")))?;
                Some(WebConfig {
                    listen: resolve(http, "--http")?,
                    tls: web_tls,
                    unknown_rooms: self.web_unknown.iter().copied().collect(),
                    faults,
                    ..WebConfig::default()
                })
            }
            None if !self.web_unknown.is_empty() || !self.web_fault.is_empty() => {
                return Err(Failure::Usage("--web-unknown and --web-fault need --http".into()));
            }
            None => None,
        };
        let replay = self.replay.as_ref().map(|path| SimReplay {
            speed: self.speed.unwrap_or(1.0),
            start_rooms: self.replay_start_rooms.unwrap_or(1),
            ..SimReplay::new(path)
        });
        if let Some(replay) = &replay {
            sim::playback::open(replay).map_err(|e| Failure::Usage(format!("{e} (--replay)")))?;
        }
        let rate = self.rate.unwrap_or(if replay.is_some() { 0.0 } else { 2.0 });
        Ok(SimConfig {
            listen: resolve(&self.listen, "--listen")?,
            rate,
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
            tls,
            websocket: (self.ws || self.ws_ping_interval.is_some() || self.ws_fault.is_some()).then(|| {
                let interval = self.ws_ping_interval.unwrap_or(sim::DEFAULT_PING_INTERVAL);
                SimWebSocket { ping_interval: Some(interval).filter(|i| !i.is_zero()), fault: self.ws_fault }
            }),
            status_period: self.status_period,
            vanity: self.vanity.iter().copied().collect(),
            web,
            replay,
        })
    }

    /// `--tls`: the certificate from --tls-cert and --tls-key, or a new one.
    fn tls(&self) -> Result<Option<SimTls>, Failure> {
        let implied = self.tls_modern || self.tls_cert.is_some() || self.tls_key.is_some();
        if !(self.tls || implied || self.tls_cert_out.is_some()) {
            return Ok(None);
        }
        let policy = if self.tls_modern { CipherPolicy::Modern } else { CipherPolicy::Legacy };
        let read = |path: &PathBuf, flag: &str| {
            std::fs::read(path).map_err(|e| Failure::Usage(format!("cannot read {flag} {}: {e}", path.display())))
        };
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => SimTls::self_signed(policy).map(Some).map_err(|e| Failure::Runtime(e.to_string())),
            (Some(cert), Some(key)) => {
                Ok(Some(SimTls { cert_pem: read(cert, "--tls-cert")?, key_pem: read(key, "--tls-key")?, policy }))
            }
            _ => Err(Failure::Usage("--tls-cert and --tls-key go together".to_string())),
        }
    }
}

/// `HOST:PORT` to the first address the system's resolver gives.
fn resolve(addr: &str, flag: &str) -> Result<SocketAddr, Failure> {
    let mut addrs = addr.to_socket_addrs().map_err(|e| Failure::Usage(format!("{flag} {addr}: {e}")))?;
    addrs.next().ok_or_else(|| Failure::Usage(format!("{flag} {addr}: the name has no address")))
}

/// `HOST:PORT`, the port from 0 (a free one) to 65535; the host is
/// resolved at start.
fn parse_listen(text: &str) -> Result<String, String> {
    host_port(text, true)
}

fn parse_start_rooms(text: &str) -> Result<usize, String> {
    super::whole_number(text, 1, 1_000_000, "rooms").map(|rooms| rooms as usize)
}

fn parse_web_fault(text: &str) -> Result<WebFault, String> {
    text.parse()
}

/// `6657=6979222`.
fn parse_vanity(text: &str) -> Result<(u64, u64), String> {
    let ids = text.split_once('=').and_then(|(vanity, real)| Some((vanity.parse().ok()?, real.parse().ok()?)));
    ids.ok_or_else(|| format!("expected VANITY=REAL room ids, e.g. 6657=6979222, not {text:?}"))
}

/// A new reactor, the simulator on it, run until a signal.
pub(crate) fn run(args: &ServeArgs, log_level: Option<LogLevel>) -> Result<(), Failure> {
    let config = args.config()?;
    config.validate()?;
    init_logging(log_level.unwrap_or(LogLevel::Info));
    let mut reactor = Reactor::new().map_err(|e| Failure::Runtime(format!("cannot create the event loop: {e}")))?;
    let (listen, web) = (config.listen, config.web.as_ref().map(|web| web.listen));
    let cert_pem = config.tls.as_ref().map(|tls| tls.cert_pem.clone());
    let server = sim::start(&mut reactor, config).map_err(|e| match e.kind() {
        // The settings were checked above: what is left is the certificate.
        std::io::ErrorKind::InvalidInput => Failure::Usage(format!("{e} (--tls-cert, --tls-key)")),
        _ => {
            let addrs = web.map_or(listen.to_string(), |web| format!("{listen} and {web}"));
            Failure::Runtime(format!("cannot listen on {addrs}: {e}"))
        }
    })?;
    if let (Some(path), Some(pem)) = (&args.tls_cert_out, cert_pem) {
        std::fs::write(path, pem)
            .map_err(|e| Failure::Runtime(format!("cannot write the certificate to {}: {e}", path.display())))?;
        log::info!("certificate written to {} (clients trust it with --ca-file)", path.display());
    }
    // Scripts and tests read the real addresses (port 0) from these lines.
    let mut stdout = std::io::stdout();
    let mut lines = format!("listening on {}\n", server.local_addr());
    if let Some(web) = server.web() {
        lines.push_str(&format!("web on {}\n", web.base_url()));
    }
    stdout.write_all(lines.as_bytes()).and_then(|()| stdout.flush()).map_err(|e| Failure::Runtime(e.to_string()))?;
    run_until_signal(&mut reactor, &server)
}

/// Runs until SIGINT or SIGTERM, then says goodbye to every client (see
/// the module docs).
fn run_until_signal(reactor: &mut Reactor, server: &SimServer) -> Result<(), Failure> {
    let loop_failed = |e: std::io::Error| Failure::Runtime(format!("event loop failed: {e}"));
    let signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| Failure::Runtime(format!("cannot watch signals: {e}")))?;
    let stops = Rc::new(Cell::new(0_u32));
    let seen = stops.clone();
    reactor
        .add_handler(signals, Interest::READABLE, move |reactor, _id, signals: &mut Signals, _ready| {
            for signal in signals.pending() {
                let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
                seen.set(seen.get() + 1);
                if seen.get() == 1 {
                    log::info!("{name}: stopping: every client gets error 52 and a close");
                } else {
                    log::warn!("second stop request ({name}): exiting now");
                }
                reactor.stop();
            }
        })
        .map_err(|e| Failure::Runtime(format!("cannot watch signals: {e}")))?;
    reactor.run().map_err(loop_failed)?;
    server.shutdown(reactor);
    let deadline = Instant::now() + GOODBYE_LIMIT;
    let gone = reactor.run_until(deadline, |_| server.stats().clients == 0 || stops.get() > 1).map_err(loop_failed)?;
    if !gone {
        log::warn!(
            "{} still connected after {} s; exiting anyway",
            plural(server.stats().clients as u64, "client"),
            GOODBYE_LIMIT.as_secs()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(flags: &[&str]) -> Result<Serve, clap::Error> {
        Serve::try_parse_from(std::iter::once("serve").chain(flags.iter().copied()))
    }

    #[test]
    fn flags_become_the_config() {
        let args =
            parse(&["--listen", "127.0.0.1:0", "--rate", "0.5", "--fragment", "--drop-every", "7"]).unwrap().args;
        let config = args.config().unwrap();
        assert_eq!(config.rate, 0.5);
        assert_eq!(config.faults, Faults { fragment: true, drop_every: Some(7), ..Faults::default() });
        assert_eq!(config.heartbeat_timeout, Duration::from_secs(90));
        assert_eq!(config.max_client_buffer, SimConfig::default().max_client_buffer);
        assert!(parse(&["--stall-after", "0"]).is_err());
        let zero = parse(&["--heartbeat-timeout", "0"]).unwrap().args.config().unwrap();
        assert!(zero.validate().is_err(), "a zero heartbeat timeout is refused by the simulator's own check");
        assert!(config.web.is_none() && config.vanity.is_empty() && config.status_period.is_zero());
        assert!(config.replay.is_none());
    }

    #[test]
    fn replay_flags_become_the_config_and_silence_the_rooms_own_traffic() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let config = parse(&["--replay", file, "--speed", "3", "--replay-start-rooms", "2"]).unwrap().args.config();
        let config = config.unwrap();
        assert_eq!(config.replay, Some(SimReplay { speed: 3.0, start_rooms: 2, ..SimReplay::new(file) }));
        assert_eq!(config.rate, 0.0, "only the recording, unless --rate says otherwise");
        let mixed = parse(&["--replay", file, "--rate", "1"]).unwrap().args.config().unwrap();
        assert_eq!((mixed.rate, mixed.replay.unwrap()), (1.0, SimReplay::new(file)));
        assert_eq!(parse(&[]).unwrap().args.config().unwrap().rate, 2.0);
        assert!(parse(&["--speed", "2"]).is_err() && parse(&["--replay-start-rooms", "2"]).is_err(), "need --replay");
    }

    #[test]
    fn web_and_status_flags_become_the_config() {
        let flags = [
            "--listen=localhost:0",
            "--http=localhost:0",
            "--status-period=60",
            "--vanity=6657=6979222",
            "--vanity=5232=178432",
            "--web-unknown=404",
            "--web-fault=slow=2",
            "--web-fault=5xx=3",
            "--web-fault=oversize",
        ];
        let config = parse(&flags).unwrap().args.config().unwrap();
        assert!(config.listen.ip().is_loopback(), "localhost resolved: {}", config.listen);
        assert_eq!(config.status_period, Duration::from_secs(60));
        assert_eq!(config.vanity, [(6657, 6979222), (5232, 178432)].into());
        let web = config.web.unwrap();
        assert!(web.listen.ip().is_loopback() && web.tls.is_none());
        assert_eq!(web.unknown_rooms, [404].into());
        let faults = WebFaults {
            slow: Some(Duration::from_secs(2)),
            error_every: Some(3),
            oversize: Some(sim::web::faults::DEFAULT_OVERSIZE),
            ..WebFaults::default()
        };
        assert_eq!(web.faults, faults);

        for bad in [&["--vanity", "6657"][..], &["--web-fault", "fast"], &["--http", "8080"], &["--listen", "x:y"]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let with_tls = parse(&["--http", "127.0.0.1:0", "--tls"]).unwrap().args.config().unwrap();
        assert!(with_tls.tls.is_some() && with_tls.web.unwrap().tls.is_some(), "one certificate for both listeners");
        let without_http = parse(&["--web-fault", "truncate"]).unwrap().args.config();
        assert!(matches!(without_http, Err(Failure::Usage(_))));
    }

    #[test]
    fn transport_flags_become_the_config_and_need_their_switch() {
        let args = parse(&["--tls", "--tls-modern", "--ws", "--ws-fault", "bad-accept", "--ws-ping-interval", "0.5"])
            .unwrap()
            .args;
        let websocket =
            SimWebSocket { ping_interval: Some(Duration::from_millis(500)), fault: Some(WsFault::BadAccept) };
        assert_eq!(args.config().unwrap().websocket, Some(websocket));
        assert_eq!(args.tls().unwrap().unwrap().policy, CipherPolicy::Modern);
        let quiet = parse(&["--ws", "--ws-ping-interval", "0"]).unwrap().args.config().unwrap();
        assert_eq!(quiet.websocket.unwrap().ping_interval, None, "0: no pings");
        assert_eq!(parse(&["--tls"]).unwrap().args.tls().unwrap().unwrap().policy, CipherPolicy::Legacy);
        assert_eq!(parse(&["--ws"]).unwrap().args.config().unwrap().websocket, Some(SimWebSocket::default()));
        let plain = parse(&[]).unwrap().args;
        assert_eq!((plain.config().unwrap().websocket, plain.tls().unwrap()), (None, None));

        // The --ws-* and --tls-* flags imply their switch.
        let implied = parse(&["--ws-fault", "masked-frame"]).unwrap().args.config().unwrap().websocket.unwrap();
        assert_eq!(implied, SimWebSocket { fault: Some(WsFault::MaskedFrame), ..SimWebSocket::default() });
        assert!(parse(&["--ws-ping-interval", "1"]).unwrap().args.config().unwrap().websocket.is_some());
        assert!(parse(&["--tls-modern"]).unwrap().args.tls().unwrap().is_some());
        let half = parse(&["--tls-cert", "cert.pem"]).unwrap().args.tls().unwrap_err();
        assert_eq!(half, Failure::Usage("--tls-cert and --tls-key go together".to_string()));
        assert!(parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-cert-out", "out.pem"]).is_err());
        assert!(parse(&["--ws-fault", "sometimes"]).is_err());
    }
}

//! `barrage serve`: the simulated Douyu server, on a reactor of its own,
//! until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use crate::reactor::{CipherPolicy, Reactor};
use crate::sim::{self, Faults, SimConfig, SimTls, SimWebSocket, WsFault};

use super::{Failure, LogLevel, init_logging, parse_bytes, parse_rate, parse_seconds};

/// `barrage serve`: the flags map one to one onto `SimConfig`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
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

    /// Serve TLS as Douyu's wss endpoint does: TLS 1.2, RSA key exchange,
    /// AES256-GCM-SHA384 only; with a self-signed certificate for 127.0.0.1
    /// and localhost made at start (see --tls-cert-out). The --tls-* flags
    /// imply it.
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
}

/// `--ws-fault`'s values, each with what the client sees, from the fault itself.
fn ws_fault_parser() -> impl TypedValueParser<Value = WsFault> {
    let values = WsFault::ALL.map(|fault| PossibleValue::new(fault.name()).help(fault.what_the_client_sees()));
    PossibleValuesParser::new(values).map(|name| WsFault::from_name(&name).expect("one of the possible values"))
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
            tls: None,
            websocket: (self.ws || self.ws_ping_interval.is_some() || self.ws_fault.is_some()).then(|| {
                let interval = self.ws_ping_interval.unwrap_or(sim::DEFAULT_PING_INTERVAL);
                SimWebSocket { ping_interval: Some(interval).filter(|i| !i.is_zero()), fault: self.ws_fault }
            }),
        }
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

/// A new reactor, the simulator on it, run until stopped.
pub(crate) fn run(args: &ServeArgs, log_level: Option<LogLevel>) -> Result<(), Failure> {
    let mut config = args.config();
    config.validate()?;
    init_logging(log_level.unwrap_or(LogLevel::Info));
    config.tls = args.tls()?;
    let cert_pem = config.tls.as_ref().map(|tls| tls.cert_pem.clone());
    let mut reactor = Reactor::new().map_err(|e| Failure::Runtime(format!("cannot create the event loop: {e}")))?;
    let server = sim::start(&mut reactor, config).map_err(|e| match e.kind() {
        // The settings were checked above: what is left is the certificate.
        std::io::ErrorKind::InvalidInput => Failure::Usage(format!("{e} (--tls-cert, --tls-key)")),
        _ => Failure::Runtime(format!("cannot listen on {}: {e}", args.listen)),
    })?;
    if let (Some(path), Some(pem)) = (&args.tls_cert_out, cert_pem) {
        std::fs::write(path, pem)
            .map_err(|e| Failure::Runtime(format!("cannot write the certificate to {}: {e}", path.display())))?;
        log::info!("certificate written to {} (clients trust it with --ca-file)", path.display());
    }
    // Scripts and tests read the real address (port 0) from this line.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", server.local_addr())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    reactor.run().map_err(|e| Failure::Runtime(format!("event loop failed: {e}")))
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

    #[test]
    fn flags_become_the_config() {
        let parse = |flags: &[&str]| Serve::try_parse_from(std::iter::once("serve").chain(flags.iter().copied()));
        let args =
            parse(&["--listen", "127.0.0.1:0", "--rate", "0.5", "--fragment", "--drop-every", "7"]).unwrap().args;
        let config = args.config();
        assert_eq!(config.rate, 0.5);
        assert_eq!(config.faults, Faults { fragment: true, drop_every: Some(7), ..Faults::default() });
        assert_eq!(config.heartbeat_timeout, Duration::from_secs(90));
        assert_eq!(config.max_client_buffer, SimConfig::default().max_client_buffer);
        assert!(parse(&["--stall-after", "0"]).is_err());
        let zero = parse(&["--heartbeat-timeout", "0"]).unwrap().args.config();
        assert!(zero.validate().is_err(), "a zero heartbeat timeout is refused by the simulator's own check");
        assert_eq!(config.websocket, None);
    }

    #[test]
    fn transport_flags_become_the_config_and_need_their_switch() {
        let parse = |flags: &[&str]| Serve::try_parse_from(std::iter::once("serve").chain(flags.iter().copied()));
        let args = parse(&["--tls", "--tls-modern", "--ws", "--ws-fault", "bad-accept", "--ws-ping-interval", "0.5"])
            .unwrap()
            .args;
        let websocket =
            SimWebSocket { ping_interval: Some(Duration::from_millis(500)), fault: Some(WsFault::BadAccept) };
        assert_eq!(args.config().websocket, Some(websocket));
        assert_eq!(args.tls().unwrap().unwrap().policy, CipherPolicy::Modern);
        let quiet = parse(&["--ws", "--ws-ping-interval", "0"]).unwrap().args.config();
        assert_eq!(quiet.websocket.unwrap().ping_interval, None, "0: no pings");
        assert_eq!(parse(&["--tls"]).unwrap().args.tls().unwrap().unwrap().policy, CipherPolicy::Legacy);
        assert_eq!(parse(&["--ws"]).unwrap().args.config().websocket, Some(SimWebSocket::default()));
        let plain = parse(&[]).unwrap().args;
        assert_eq!((plain.config().websocket, plain.tls().unwrap()), (None, None));

        // The --ws-* and --tls-* flags imply their switch.
        let implied = parse(&["--ws-fault", "masked-frame"]).unwrap().args.config().websocket.unwrap();
        assert_eq!(implied, SimWebSocket { fault: Some(WsFault::MaskedFrame), ..SimWebSocket::default() });
        assert!(parse(&["--ws-ping-interval", "1"]).unwrap().args.config().websocket.is_some());
        assert!(parse(&["--tls-modern"]).unwrap().args.tls().unwrap().is_some());
        let half = parse(&["--tls-cert", "cert.pem"]).unwrap().args.tls().unwrap_err();
        assert_eq!(half, Failure::Usage("--tls-cert and --tls-key go together".to_string()));
        assert!(parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-cert-out", "out.pem"]).is_err());
        assert!(parse(&["--ws-fault", "sometimes"]).is_err());
    }
}

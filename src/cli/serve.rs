//! `barrage serve`: the simulated Douyu server, on a reactor of its own,
//! until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::reactor::Reactor;
use crate::sim::{self, Faults, SimConfig};

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
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    drop_every: Option<u64>,

    /// Fault: after N room messages, send an invalid frame and close.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    corrupt_every: Option<u64>,

    /// Fault: after N room messages, stop writing (the socket stays open).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    stall_after: Option<u64>,

    /// Rooms go live, then off air or into a replay loop, in cycles of
    /// about this many seconds, seeded (0 = every room stays live).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_seconds)]
    status_period: Duration,

    /// A vanity room id and the real id it stands for (6657=6979222);
    /// repeat for more. Web look-ups resolve it; joining it gets nothing.
    #[arg(long, value_name = "VANITY=REAL", value_parser = parse_vanity)]
    vanity: Vec<(u64, u64)>,
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
            status_period: self.status_period,
            vanity: self.vanity.iter().copied().collect(),
        }
    }
}

/// `6657=6979222`.
fn parse_vanity(text: &str) -> Result<(u64, u64), String> {
    let ids = text.split_once('=').and_then(|(vanity, real)| Some((vanity.parse().ok()?, real.parse().ok()?)));
    ids.ok_or_else(|| format!("expected VANITY=REAL room ids, e.g. 6657=6979222, not {text:?}"))
}

/// A new reactor, the simulator on it, run until stopped.
pub(crate) fn run(args: &ServeArgs, log_level: Option<LogLevel>) -> Result<(), Failure> {
    let config = args.config();
    config.validate()?;
    init_logging(log_level.unwrap_or(LogLevel::Info));
    let mut reactor = Reactor::new().map_err(|e| Failure::Runtime(format!("cannot create the event loop: {e}")))?;
    let server = sim::start(&mut reactor, config)
        .map_err(|e| Failure::Runtime(format!("cannot listen on {}: {e}", args.listen)))?;
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
    }
}

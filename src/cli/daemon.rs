//! Running a monitor as a daemon: signals, a bounded stop, reloads.
//!
//! Signals arrive on the loop like any other event: `signal-hook-mio`
//! turns them into a readable mio source, registered as a raw handler, so a
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

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
use signal_hook_mio::v1_0::Signals;

use crate::monitor::output::OutputClosed;
use crate::monitor::shard::Shard;
use crate::monitor::{Monitor, RoomState, StopCause};
use crate::reactor::{Interest, Reactor};

use super::watch::{FileConfig, room_list};

/// What a reload needs to recompute the room list.
#[derive(Clone, Debug, Default)]
pub struct Reload {
    pub config_path: Option<PathBuf>,
    pub cli_rooms: Vec<u64>,
    pub shard: Option<Shard>,
}

/// Runs `monitor` on `reactor` until a signal, the end of its output, or
/// `duration` stops it, then writes the rest of the output for at most
/// `flush_timeout`. Returns an error line if messages were left unwritten.
pub fn run(
    reactor: &mut Reactor,
    monitor: &Monitor,
    reload: Reload,
    duration: Option<Duration>,
    flush_timeout: Duration,
) -> Result<(), String> {
    let signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| format!("cannot watch signals: {e}"))?;
    // A file grown past its size limit (RLIMIT_FSIZE) must fail the write
    // (EFBIG: retried and reported, like a full disk) instead of killing
    // the daemon, which is what SIGXFSZ does by default.
    signal_hook::flag::register(SIGXFSZ, Arc::new(AtomicBool::new(false)))
        .map_err(|e| format!("cannot watch signals: {e}"))?;
    {
        let monitor = monitor.clone();
        reactor
            .add_handler(signals, Interest::READABLE, move |reactor, _id, signals: &mut Signals, _ready| {
                let pending: Vec<i32> = signals.pending().collect();
                for signal in pending {
                    let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
                    match signal {
                        SIGHUP => reload_rooms(reactor, &monitor, &reload),
                        _ if monitor.stop_cause().is_some() => {
                            log::warn!("second stop request ({name}): exiting now");
                            reactor.stop();
                        }
                        // The signal came through poll: it may have waited one interval.
                        _ => monitor.stop(reactor, StopCause::Signal(name), reactor.min_poll_interval()),
                    }
                }
            })
            .map_err(|e| format!("cannot watch signals: {e}"))?;
    }
    if let Some(duration) = duration {
        let monitor = monitor.clone();
        reactor.call_later(duration, move |reactor| monitor.stop(reactor, StopCause::Duration, Duration::ZERO));
    }
    reactor.run().map_err(|e| format!("event loop failed: {e}"))?;
    let unwritten = monitor.finish_output(flush_timeout);
    match monitor.stop_cause() {
        // The reader chose to leave: what it did not take is no failure.
        Some(StopCause::Output(OutputClosed::ReaderLeft)) => return Ok(()),
        Some(StopCause::Output(OutputClosed::Failed(why))) => return Err(why),
        _ => {}
    }
    if unwritten.lines > 0 {
        let cut = if unwritten.maybe_cut { "; the last line written may be incomplete" } else { "" };
        return Err(format!(
            "{} (of {} bytes) could not be written within the flush timeout of {} s (--flush-timeout){cut}",
            plural(unwritten.lines, "message"),
            unwritten.bytes,
            flush_timeout.as_secs_f64()
        ));
    }
    Ok(())
}

/// "1 message", "2 messages".
pub(crate) fn plural(count: u64, noun: &str) -> String {
    if count == 1 { format!("1 {noun}") } else { format!("{count} {noun}s") }
}

fn reload_rooms(reactor: &mut Reactor, monitor: &Monitor, reload: &Reload) {
    monitor.reopen_output();
    let Some(path) = &reload.config_path else {
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
    let shard = reload.shard.unwrap_or(Shard::ALL);
    let wanted: BTreeSet<u64> = room_list(&reload.cli_rooms, &file.rooms, shard).into_iter().collect();
    let current: BTreeSet<u64> =
        monitor.rooms().iter().filter(|room| room.state != RoomState::Stopped).map(|room| room.id).collect();
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

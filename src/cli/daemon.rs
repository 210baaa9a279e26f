//! Running a monitor as a daemon: signals, a bounded shutdown, reloads.
//!
//! Signals arrive on the loop like any other event: `signal-hook-mio`
//! turns them into a readable mio source, registered as a raw handler, so a
//! signal never interrupts a callback halfway and needs no locks.
//!
//! - SIGINT / SIGTERM: log out of every room, flush the output, exit 0 —
//!   within [`SHUTDOWN_BUDGET`] even if a server does not read our logouts.
//!   A second signal stops at once.
//! - SIGHUP: read `--config` again; rooms added there start, rooms removed
//!   there stop (with a logout), the others are untouched; the output file
//!   is reopened (for log rotation).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::monitor::shard::Shard;
use crate::monitor::{Monitor, RoomState};
use crate::reactor::{Interest, Reactor};

use super::watch::{FileConfig, room_list};

/// Time from the shutdown signal to exit, at most (the README promises
/// 2 s; the rest is for flushing the output and exiting). A signal arrives
/// through poll, so it may have waited one poll interval already: the
/// logouts get the budget less that interval.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_millis(1500);

/// How long the last output may take to be written at exit. A reader that
/// stopped reading (or a full disk) must not keep the daemon from exiting;
/// the bytes left are reported, and the exit status is 1.
pub const OUTPUT_FLUSH_LIMIT: Duration = Duration::from_millis(400);

/// What a reload needs to recompute the room list.
#[derive(Clone, Debug, Default)]
pub struct Reload {
    pub config_path: Option<PathBuf>,
    pub cli_rooms: Vec<u64>,
    pub shard: Option<Shard>,
}

/// Runs `monitor` on `reactor` until a signal (or `duration`) ends it, then
/// flushes the output. Returns an error line if the output failed.
pub fn run(reactor: &mut Reactor, monitor: &Monitor, reload: Reload, duration: Option<Duration>) -> Result<(), String> {
    let shutting_down = Rc::new(RefCell::new(false));
    let signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| format!("cannot watch signals: {e}"))?;
    {
        let monitor = monitor.clone();
        let shutting_down = shutting_down.clone();
        reactor
            .add_handler(signals, Interest::READABLE, move |reactor, _id, signals: &mut Signals, _ready| {
                let pending: Vec<i32> = signals.pending().collect();
                for signal in pending {
                    match signal {
                        SIGHUP => reload_rooms(reactor, &monitor, &reload),
                        _ => {
                            // The signal came through poll: it may have waited one interval.
                            let waited = reactor.min_poll_interval();
                            begin_shutdown(reactor, &monitor, &shutting_down, "signal", waited)
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot watch signals: {e}"))?;
    }
    if let Some(duration) = duration {
        let monitor = monitor.clone();
        let shutting_down = shutting_down.clone();
        reactor.call_later(duration, move |reactor| {
            begin_shutdown(reactor, &monitor, &shutting_down, "duration", Duration::ZERO)
        });
    }
    reactor.run().map_err(|e| format!("event loop failed: {e}"))?;
    let unwritten = monitor.finish_output(OUTPUT_FLUSH_LIMIT);
    if unwritten > 0 {
        return Err(format!("{unwritten} bytes of output could not be written before exit (is the output stuck?)"));
    }
    if monitor.output_failed() {
        return Err("the output was closed before everything was written".into());
    }
    Ok(())
}

/// Logs out of every room and stops the loop once they are closed, or when
/// the budget (less `waited`, the time the request may already have waited)
/// is spent. A second call stops at once.
pub fn begin_shutdown(
    reactor: &mut Reactor,
    monitor: &Monitor,
    shutting_down: &Rc<RefCell<bool>>,
    why: &str,
    waited: Duration,
) {
    if shutting_down.replace(true) {
        log::warn!("second stop request: exiting now");
        reactor.stop();
        return;
    }
    log::info!("shutting down ({why}): logging out of every room");
    // The logouts and closes should not wait for polls.
    reactor.set_min_poll_interval(Duration::ZERO);
    monitor.shutdown(reactor);
    // Check for "all closed" every few milliseconds: the shutdown lasts
    // at most the budget, so this is not an idle wake-up.
    let watcher = monitor.clone();
    reactor.add_periodic(Duration::from_millis(5), move |reactor| {
        if watcher.is_idle() {
            reactor.stop();
        }
    });
    reactor.call_later(SHUTDOWN_BUDGET.saturating_sub(waited), |reactor| {
        log::warn!("some rooms did not close in time; exiting anyway");
        reactor.stop();
    });
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

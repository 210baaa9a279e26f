//! Handing work to the loop from other threads.
//!
//! The loop thread may be asleep in `poll` for a long time (an idle daemon
//! sleeps until its next timer). A queue alone is not enough: work pushed
//! into it would wait until something else wakes the loop. This is the flaw
//! of the original tutorial client, whose `joingroup` could wait 10 s for
//! `select` to time out. So every push is followed by a wake-up through
//! mio's [`Waker`], which makes the blocked `poll` return at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mio::Waker;

use super::event_loop::Reactor;

/// Work sent to the loop from another thread.
pub(crate) type RemoteCallback = Box<dyn FnOnce(&mut Reactor) + Send>;

/// What the loop and its handles share.
pub(crate) struct Shared {
    pub(crate) waker: Waker,
    pub(crate) queue: Mutex<Vec<RemoteCallback>>,
    /// Set when a wake-up is already on its way, so that a burst of
    /// `add_callback` calls costs one wake-up syscall, not one each.
    pub(crate) wake_pending: AtomicBool,
}

impl Shared {
    fn wake(&self) {
        let already_pending = self.wake_pending.swap(true, Ordering::AcqRel);
        if !already_pending && let Err(e) = self.waker.wake() {
            log::error!("could not wake the reactor: {e}");
        }
    }

    /// Takes every queued callback (called by the loop after a wake-up).
    pub(crate) fn take_callbacks(&self) -> Vec<RemoteCallback> {
        // Clear the flag first: a callback queued after this point must wake
        // the loop again, or it could sleep with work in the queue.
        self.wake_pending.store(false, Ordering::Release);
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A cloneable, `Send` handle to a reactor running on another thread
/// (Tornado's `IOLoop.add_callback`, the one method safe from any thread).
#[derive(Clone)]
pub struct ReactorHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ReactorHandle {
    /// Runs `callback` on the loop thread, soon. Wakes the loop if it sleeps.
    pub fn add_callback(&self, callback: impl FnOnce(&mut Reactor) + Send + 'static) {
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(callback));
        self.shared.wake();
    }

    /// Makes `run()` return after the current iteration.
    pub fn stop(&self) {
        self.add_callback(|reactor| reactor.stop());
    }
}

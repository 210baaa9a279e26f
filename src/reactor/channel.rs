//! Typed messages from other threads to a callback on the loop thread.
//!
//! [`ReactorHandle::add_callback`] needs a `Send` closure, so it cannot
//! capture the loop's own state (an `Rc<RefCell<…>>`, say). A channel splits
//! the two halves: the receiving callback lives on the loop thread and may
//! capture anything; the [`LoopSender`] is `Send` and carries only values.
//! Each send queues the value and, through the reactor's waker, asks the
//! loop to run the callback — so a blocked `poll` wakes at once.
//!
//! Use it for work that cannot be non-blocking and so runs on a helper
//! thread (DNS lookups, blocking file writes), handing results back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::event_loop::Reactor;
use super::handle::ReactorHandle;

/// The `Send` end: clone it into any thread.
pub struct LoopSender<T> {
    queue: Arc<Mutex<VecDeque<T>>>,
    handle: ReactorHandle,
    id: usize,
}

impl<T> Clone for LoopSender<T> {
    fn clone(&self) -> Self {
        LoopSender { queue: self.queue.clone(), handle: self.handle.clone(), id: self.id }
    }
}

impl<T: Send + 'static> LoopSender<T> {
    /// Queues `value` for the loop thread's callback and wakes the loop.
    pub fn send(&self, value: T) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push_back(value);
        let id = self.id;
        self.handle.add_callback(move |reactor| reactor.drain_channel(id));
    }
}

/// The loop-thread end, kept by the reactor.
pub(crate) trait ChannelReceiver {
    fn drain(&mut self, reactor: &mut Reactor);
}

struct Receiver<T, F> {
    queue: Arc<Mutex<VecDeque<T>>>,
    callback: F,
}

impl<T, F: FnMut(&mut Reactor, T)> ChannelReceiver for Receiver<T, F> {
    fn drain(&mut self, reactor: &mut Reactor) {
        // Take everything queued so far; values sent meanwhile come with
        // their own wake-up.
        let values = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        for value in values {
            (self.callback)(reactor, value);
        }
    }
}

impl Reactor {
    /// Creates a channel whose values are handed to `callback` on the loop
    /// thread. The callback lives as long as the reactor.
    pub fn channel<T, F>(&mut self, callback: F) -> LoopSender<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Reactor, T) + 'static,
    {
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let id = self.add_channel_receiver(Box::new(Receiver { queue: queue.clone(), callback }));
        LoopSender { queue, handle: self.handle(), id }
    }
}

//! The [`Reactor`]: one mio `Poll`, a slab of entries, a timer wheel, and the
//! iteration that ties them together (see the module map in `reactor`).

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use slab::Slab;

use super::EntryToken;
use super::channel::ChannelReceiver;
use super::connection::Connection;
use super::dispatcher::Ready;
use super::handle::{ReactorHandle, Shared};
use super::raw::{ListenerEntry, RawEntry};
use super::stats::Stats;
use super::timer::{TimerHandle, TimerWheel};
use crate::plural::plural;
use crate::rng::Rng;

/// The waker's token: no slab entry can have it (index `u32::MAX` is never
/// reached, and generations skip `u32::MAX`).
const WAKER: Token = Token(usize::MAX);

/// The furthest ahead a timer can be: 30 years (of 365 days).
///
/// `Instant + Duration` panics when the sum does not fit the platform's
/// clock, and `Duration::MAX`, a natural way to say "never", does not fit.
/// So every delay the reactor turns into a deadline ([`Reactor::call_later`],
/// [`Context::set_timer`](super::Context::set_timer), periodic callbacks,
/// [`ReactorConfig::linger`]) goes through one helper that caps it here,
/// and deadlines given as instants ([`Reactor::call_at`]) are capped to now
/// plus this. For a running program a timer 30 years away is one that never
/// fires, and 30 years past any instant it sees fit in the clock of every
/// platform std supports (seconds in an `i64`, or nanoseconds in a `u64`
/// counted from boot), so the capped sum cannot overflow. The timer wheel
/// counts ticks in a `u64` from its start: 30 years are about 10^12
/// milliseconds, far from its limit.
pub const MAX_TIMER_DELAY: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `start + delay`, with the delay capped at [`MAX_TIMER_DELAY`]: the one
/// place where the reactor turns a delay into a deadline.
pub(crate) fn deadline_after(start: Instant, delay: Duration) -> Instant {
    start + delay.min(MAX_TIMER_DELAY)
}

/// Due timers also run after every this many events of one batch, so that
/// their lateness is bounded by a slice of the batch, not all of it.
const TIMER_CHECK_EVERY: usize = 64;

/// Tunables. The defaults suit thousands of mostly idle connections.
#[derive(Clone, Debug)]
pub struct ReactorConfig {
    /// Events taken from one `poll` call.
    pub events_capacity: usize,
    /// The loop-wide buffer every read goes into.
    pub scratch_size: usize,
    /// Bytes one connection may read per iteration before the others get
    /// their turn (fairness).
    pub read_budget: usize,
    /// Connections accepted per listener per iteration (the rest of a
    /// backlog waits for the next one).
    pub accept_budget: usize,
    /// Unconsumed bytes one connection may hold. A dispatcher that never
    /// consumes would otherwise let a peer grow our memory without bound.
    pub max_read_buffer: usize,
    /// How long a graceful close may take in all: writing what is queued,
    /// then waiting for the peer's FIN while throwing its input away (see
    /// [`Reactor::close`]). A peer that stops reading, or never closes its
    /// side, is cut off then, and whatever is still queued is dropped.
    pub linger: Duration,
    /// The least time from one poll for I/O to the next ("read
    /// coalescing", as network cards coalesce interrupts). Zero, the
    /// default, polls whenever the loop has nothing else to do.
    ///
    /// Above zero, the loop polls at most once per interval. Meanwhile
    /// bytes pile up in the kernel's socket buffers, so one read takes many
    /// messages and one poll reports many sockets: fewer syscalls and
    /// wake-ups, and less CPU per message. Timers still fire on time:
    /// between polls the loop sleeps until the interval ends or the next
    /// timer is due, whichever is first. Work the loop already holds does
    /// not wait either: the ready list, `call_soon` callbacks, a `stop()`.
    /// A poll that brought nothing starts no interval unless a timer is due
    /// within it, so an idle loop still wakes only for its timers.
    ///
    /// The price is up to this much added delay on everything that arrives
    /// through poll: bytes from a peer, a finished connect, a socket that
    /// can take output again, and wake-ups from other threads (a
    /// [`ReactorHandle`] callback or `stop()`, a
    /// [`LoopSender`](super::LoopSender) value). A sleep cannot be woken
    /// the way `poll` can, which is the point: an `epoll_wait` would return
    /// at once for every new byte.
    pub min_poll_interval: Duration,
}

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig {
            events_capacity: 1024,
            scratch_size: 64 * 1024,
            read_budget: 256 * 1024,
            accept_budget: 256,
            max_read_buffer: 8 * 1024 * 1024,
            linger: Duration::from_secs(5),
            min_poll_interval: Duration::ZERO,
        }
    }
}

/// What a slab slot holds.
pub(crate) struct Entry {
    pub(crate) generation: u32,
    pub(crate) kind: EntryKind,
}

pub(crate) enum EntryKind {
    Conn(Connection),
    Listener(ListenerEntry),
    Raw(RawEntry),
}

/// The entry `id` names, borrowing only the slab, so that the caller can use
/// the reactor's other fields (the registry, the stats) at the same time.
pub(crate) fn entry_in(entries: &mut Slab<Entry>, id: EntryToken) -> Option<&mut EntryKind> {
    entries.get_mut(id.index()).filter(|e| e.generation == id.generation).map(|e| &mut e.kind)
}

/// A callback run on the loop thread.
type LocalCallback = Box<dyn FnOnce(&mut Reactor)>;
type PeriodicCallback = Box<dyn FnMut(&mut Reactor)>;

/// Something the timer wheel will do when a deadline passes.
pub(crate) enum TimerTask {
    /// `call_later` / `call_at`.
    Once(LocalCallback),
    /// One run of a periodic callback, which schedules the next.
    Periodic(PeriodicId),
    /// A connection's own timer, delivered to `handle_timer(tag)`.
    Conn { id: EntryToken, tag: u64 },
    /// A graceful close took longer than `ReactorConfig::linger`.
    Linger(EntryToken),
    /// A listener paused after an accept error tries again.
    RetryAccept(EntryToken),
}

pub(crate) struct Timer {
    /// The deadline asked for (the wheel rounds it up to its tick); kept to
    /// measure how late the timer fired.
    deadline: Instant,
    task: TimerTask,
}

/// Names a periodic callback, for [`Reactor::remove_periodic`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeriodicId {
    index: usize,
    generation: u32,
}

/// Tornado's `PeriodicCallback`: runs every `period`; runs missed while the
/// loop was busy are skipped, not run in a burst.
struct Periodic {
    generation: u32,
    /// `None` while it runs (it is taken out to be called with `&mut Reactor`).
    callback: Option<PeriodicCallback>,
    period: Duration,
    /// Each interval is scaled by a random factor in `1 ± jitter/2`, so that
    /// many periodic timers started together drift apart.
    jitter: f64,
    next: Instant,
    timer: Option<TimerHandle>,
}

/// The event loop. See the [module documentation](super) for one iteration.
pub struct Reactor {
    pub(crate) config: ReactorConfig,
    pub(crate) poll: Poll,
    events: Events,
    pub(crate) entries: Slab<Entry>,
    next_generation: u32,
    pub(crate) timers: TimerWheel<Timer>,
    periodics: Slab<Periodic>,
    soon: VecDeque<LocalCallback>,
    /// Entries with work that no readiness event will announce again.
    pub(crate) ready: VecDeque<EntryToken>,
    /// Connections touched by a callback: flush and recompute interest.
    pub(crate) dirty: Vec<EntryToken>,
    /// Connections to close once the current callback has returned.
    pub(crate) closing: Vec<EntryToken>,
    pub(crate) scratch: Vec<u8>,
    /// Loop-side ends of channels; taken out while one drains.
    channels: Vec<Option<Box<dyn ChannelReceiver>>>,
    shared: Arc<Shared>,
    stopped: bool,
    /// With a `min_poll_interval`: the earliest time the next poll for I/O
    /// may happen. `None`: poll whenever the loop would sleep.
    next_poll: Option<Instant>,
    pub(crate) stats: Stats,
    rng: Rng,
}

impl Reactor {
    pub fn new() -> io::Result<Self> {
        Self::with_config(ReactorConfig::default())
    }

    /// A reactor with the given tunables.
    ///
    /// # Panics
    ///
    /// If `events_capacity`, `scratch_size`, `read_budget` or
    /// `accept_budget` is zero. The loop could not make progress: a read
    /// into an empty buffer returns 0, which looks like the peer's EOF, and
    /// a zero budget would put work on the ready list forever without doing
    /// it. These are programming errors, like a zero periodic period.
    pub fn with_config(config: ReactorConfig) -> io::Result<Self> {
        assert!(
            config.events_capacity > 0 && config.scratch_size > 0 && config.read_budget > 0 && config.accept_budget > 0,
            "ReactorConfig: events_capacity, scratch_size, read_budget and accept_budget must be non-zero, got {config:?}"
        );
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let now = Instant::now();
        Ok(Reactor {
            events: Events::with_capacity(config.events_capacity),
            scratch: vec![0; config.scratch_size],
            config,
            poll,
            entries: Slab::new(),
            next_generation: 0,
            timers: TimerWheel::new(now),
            periodics: Slab::new(),
            soon: VecDeque::new(),
            ready: VecDeque::new(),
            dirty: Vec::new(),
            closing: Vec::new(),
            channels: Vec::new(),
            shared: Arc::new(Shared { waker, queue: Mutex::new(Vec::new()), wake_pending: AtomicBool::new(false) }),
            stopped: false,
            next_poll: None,
            stats: Stats::default(),
            // Seed for jitter only; it needs to differ between processes,
            // not to be unpredictable.
            rng: Rng::new(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
                    ^ u64::from(std::process::id()),
            ),
        })
    }

    /// A handle other threads can use to hand work to this loop.
    pub fn handle(&self) -> ReactorHandle {
        ReactorHandle { shared: self.shared.clone() }
    }

    /// The loop's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The [`min_poll_interval`](ReactorConfig::min_poll_interval) in force.
    pub fn min_poll_interval(&self) -> Duration {
        self.config.min_poll_interval
    }

    /// Changes the minimum poll interval. Zero also ends the interval under
    /// way, so the next iteration polls: a daemon that is shutting down, say,
    /// wants its last replies without delay. Another value applies from the
    /// next poll on; the interval under way keeps its end.
    pub fn set_min_poll_interval(&mut self, interval: Duration) {
        self.config.min_poll_interval = interval;
        if interval.is_zero() {
            self.next_poll = None;
        }
    }

    /// Zeroes the counters (a benchmark measures a window this way).
    pub fn reset_stats(&mut self) {
        self.stats = Stats::default();
    }

    /// The current time. (A real clock read: timers scheduled from a long
    /// callback must not start from a stale time and fire early.)
    pub fn now(&self) -> Instant {
        Instant::now()
    }

    /// Entries in the slab: connections, listeners and raw handlers.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Timers pending in the wheel.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// Whether work was postponed to the next iteration (a connection with
    /// more to read than its fair share of this one, say): that iteration
    /// does it without waiting for poll.
    pub fn has_postponed_work(&self) -> bool {
        !self.ready.is_empty()
    }

    // ----- running ---------------------------------------------------------

    /// Runs until [`stop`](Self::stop) is called (by a callback or through a
    /// [`ReactorHandle`]).
    /// A `stop()` made before `run()` (during set-up, say) makes `run()`
    /// return at once, as in Tornado; the flag is cleared on return so the
    /// loop can be run again.
    pub fn run(&mut self) -> io::Result<()> {
        let result = self.run_while_not_stopped();
        self.stopped = false;
        result
    }

    fn run_while_not_stopped(&mut self) -> io::Result<()> {
        while !self.stopped {
            self.turn(None)?;
        }
        Ok(())
    }

    /// Runs until `done` returns true (checked before every iteration) or
    /// `deadline` passes. Returns whether `done` was reached. This is how
    /// tests wait for a condition without sleeping and hoping.
    pub fn run_until(&mut self, deadline: Instant, mut done: impl FnMut(&mut Reactor) -> bool) -> io::Result<bool> {
        loop {
            if done(self) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            self.turn(Some(deadline - now))?;
        }
    }

    /// Makes `run()` return after the current iteration.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Whether `stop()` was called and `run()` has not returned yet.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// One iteration: poll (for at most `timeout`, sooner if a timer is due),
    /// dispatch events, continue postponed work, fire timers, run callbacks.
    ///
    /// With a [`min_poll_interval`](ReactorConfig::min_poll_interval), an
    /// iteration that starts less than the interval after the last poll
    /// returned does not poll: it sleeps instead, until the interval ends,
    /// the next timer is due, or `timeout` has passed, whichever is first
    /// (not at all if work is queued), then carries on as usual from the
    /// postponed work. Either way an iteration waits at most once, and
    /// timers due before the next poll fire before the events it returns.
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.stats.iterations += 1;
        // Work queued outside any callback (before run, say) is flushed now.
        self.settle();

        let polled = match self.next_poll.filter(|&next_poll| Instant::now() < next_poll) {
            Some(next_poll) => {
                self.wait_inside_poll_interval(next_poll, timeout);
                None
            }
            None => Some(self.poll_and_dispatch(timeout)?),
        };
        self.run_ready_list();
        self.run_timers();
        self.run_soon();
        if let Some(returned) = polled {
            self.start_poll_interval(returned);
        }
        Ok(())
    }

    /// After an iteration that polled and got `returned` events: when may
    /// the next poll happen? Decided once this iteration's timers have run,
    /// so that "is a timer due soon" looks at the next one, not at one that
    /// just fired.
    fn start_poll_interval(&mut self, returned: usize) {
        let interval = self.config.min_poll_interval;
        // No clock read per iteration when read coalescing is off.
        self.next_poll = if interval.is_zero() {
            None
        } else {
            let now = Instant::now();
            let timer_within_interval = self.timers.next_deadline().is_some_and(|due| due < now + interval);
            next_poll_at(now, interval, returned, self.events.capacity(), timer_within_interval)
        };
    }

    /// Waits in `poll` (for at most `timeout`, sooner if a timer is due or
    /// work is queued) and dispatches the events it returns. Returns how many.
    fn poll_and_dispatch(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let timeout = self.poll_timeout(timeout).map(without_kernel_slack);
        // `events` is moved out so that dispatching (which needs `&mut self`)
        // can iterate it; it goes back, with its capacity, afterwards.
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        self.stats.polls += 1;
        match self.poll.poll(&mut events, timeout) {
            Ok(()) => {}
            // A signal arrived; that is a wake-up with no events.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
            Err(e) => {
                self.events = events;
                return Err(e);
            }
        }
        let returned = events.iter().count();
        if returned == 0 && timeout != Some(Duration::ZERO) {
            self.stats.poll_timeouts += 1;
        }
        if log::log_enabled!(log::Level::Trace) {
            let tokens: Vec<String> = events.iter().map(|e| describe_token(e.token())).collect();
            log::trace!(
                "iteration {}: poll(timeout {:?}) woke with {} [{}]",
                self.stats.iterations,
                timeout,
                plural(tokens.len() as u64, "event"),
                tokens.join(" ")
            );
        }
        for (index, event) in events.iter().enumerate() {
            self.stats.events += 1;
            self.dispatch(event.token(), Ready::from_event(event));
            // A full batch of busy sockets takes milliseconds; a heartbeat
            // due meanwhile should not wait for all of it.
            if index % TIMER_CHECK_EVERY == TIMER_CHECK_EVERY - 1 {
                self.run_timers();
            }
        }
        self.events = events;
        Ok(returned)
    }

    /// An iteration inside the minimum poll interval: no poll, only a
    /// sleep until `next_poll`, the next timer or the caller's limit,
    /// whichever is first — and no sleep at all if work is queued (the
    /// ready list is served without polling, so a busy connection keeps
    /// reading what the kernel already holds). A plain sleep, because
    /// `poll` would return at once for every socket that became readable.
    fn wait_inside_poll_interval(&mut self, next_poll: Instant, limit: Option<Duration>) {
        let until_poll = next_poll.saturating_duration_since(Instant::now());
        // Zero when work is queued, else until the next timer or the limit.
        let sleep = self.poll_timeout(limit).map_or(until_poll, |timeout| timeout.min(until_poll));
        if !sleep.is_zero() {
            self.stats.interval_sleeps += 1;
            std::thread::sleep(sleep);
        }
        log::trace!(
            "iteration {}: inside the poll interval ({until_poll:?} left), no poll: slept {sleep:?} \
             for timers and queued work",
            self.stats.iterations
        );
    }

    /// How long poll may sleep: not at all if work is waiting, else until
    /// the next timer (or the caller's limit); `None` blocks until an event.
    fn poll_timeout(&mut self, limit: Option<Duration>) -> Option<Duration> {
        if self.stopped || !self.ready.is_empty() || !self.soon.is_empty() {
            return Some(Duration::ZERO);
        }
        let until_timer = self.timers.next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
        match (until_timer, limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn dispatch(&mut self, token: Token, ready: Ready) {
        if token == WAKER {
            self.stats.wakeups += 1;
            for callback in self.shared.take_callbacks() {
                callback(self);
                self.settle();
            }
            return;
        }
        let id = EntryToken::from_token(token);
        // A stale event (its entry closed earlier in this batch, the slot
        // perhaps reused) fails the generation check and is dropped here.
        let Some(entry) = self.entry(id) else {
            log::trace!("dropping stale event for {id}");
            return;
        };
        match entry.kind {
            EntryKind::Conn(_) => self.on_conn_ready(id, ready),
            EntryKind::Listener(_) => self.accept_all(id),
            EntryKind::Raw(_) => self.run_raw(id, ready),
        }
        self.settle();
    }

    fn run_ready_list(&mut self) {
        // Only what is queued now: work re-queued while we go waits for the
        // next iteration, so one busy connection cannot starve the loop.
        for _ in 0..self.ready.len() {
            let Some(id) = self.ready.pop_front() else { break };
            match self.entry(id).map(|e| &e.kind) {
                Some(EntryKind::Conn(_)) => self.service_queued_conn(id),
                Some(EntryKind::Listener(_)) => self.accept_queued(id),
                Some(EntryKind::Raw(_)) | None => {}
            }
            self.settle();
        }
    }

    /// After a callback: write what it queued, update interest, and carry
    /// out the closes it asked for. Closing may queue more of both (a
    /// `handle_close` may send elsewhere), so repeat until quiet.
    pub(crate) fn settle(&mut self) {
        while !self.dirty.is_empty() || !self.closing.is_empty() {
            for id in std::mem::take(&mut self.dirty) {
                self.refresh_conn(id);
            }
            for id in std::mem::take(&mut self.closing) {
                self.finish_close(id);
            }
        }
    }

    // ----- the slab ----------------------------------------------------------

    pub(crate) fn entry(&self, id: EntryToken) -> Option<&Entry> {
        self.entries.get(id.index()).filter(|e| e.generation == id.generation)
    }

    /// Puts a new entry in the slab and returns its id (its token).
    pub(crate) fn insert_entry(&mut self, kind: EntryKind) -> EntryToken {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        if self.next_generation == u32::MAX {
            self.next_generation = 0;
        }
        let index = self.entries.insert(Entry { generation, kind });
        EntryToken { index: index as u32, generation }
    }

    pub(crate) fn add_channel_receiver(&mut self, receiver: Box<dyn ChannelReceiver>) -> usize {
        self.channels.push(Some(receiver));
        self.channels.len() - 1
    }

    /// Runs a channel's callback on everything queued for it.
    pub(crate) fn drain_channel(&mut self, id: usize) {
        let Some(mut receiver) = self.channels.get_mut(id).and_then(Option::take) else { return };
        receiver.drain(self);
        self.channels[id] = Some(receiver);
    }

    // ----- timers (Tornado's names) -----------------------------------------

    /// Runs `callback` once after `delay`. A delay beyond
    /// [`MAX_TIMER_DELAY`] (about 30 years; `Duration::MAX` says "never")
    /// is capped to it.
    pub fn call_later(&mut self, delay: Duration, callback: impl FnOnce(&mut Reactor) + 'static) -> TimerHandle {
        self.call_at(deadline_after(Instant::now(), delay), callback)
    }

    /// Runs `callback` once at `deadline` (never before it). A deadline more
    /// than [`MAX_TIMER_DELAY`] away is capped to that.
    pub fn call_at(&mut self, deadline: Instant, callback: impl FnOnce(&mut Reactor) + 'static) -> TimerHandle {
        self.add_timer(deadline, TimerTask::Once(Box::new(callback)))
    }

    /// Cancels a timer from `call_later`, `call_at` or `Context::set_timer`.
    /// Returns whether it was still pending; harmless after it fired.
    pub fn remove_timeout(&mut self, timer: TimerHandle) -> bool {
        match self.timers.cancel(timer) {
            Some(Timer { task: TimerTask::Conn { id, .. }, .. }) => {
                self.forget_conn_timer(id, timer);
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Moves a pending timer from `call_later`, `call_at` or
    /// `Context::set_timer` to a new deadline (capped like `call_at`), keeping
    /// its handle. Returns whether it was still pending.
    ///
    /// Cheaper than `remove_timeout` plus a new timer, above all when the
    /// deadline moves later, as an idle timeout does on every message: the
    /// wheel then only rewrites the timer's deadline (see
    /// [`TimerWheel::reschedule`](super::timer::TimerWheel::reschedule)).
    pub fn reschedule_timeout(&mut self, timer: TimerHandle, deadline: Instant) -> bool {
        let deadline = deadline.min(deadline_after(Instant::now(), MAX_TIMER_DELAY));
        match self.timers.get_mut(timer) {
            Some(pending) => pending.deadline = deadline,
            None => return false,
        }
        self.timers.reschedule(timer, deadline)
    }

    /// Runs `callback` at the next iteration, before sleeping again
    /// (Tornado's `add_callback` from the loop thread).
    pub fn call_soon(&mut self, callback: impl FnOnce(&mut Reactor) + 'static) {
        self.soon.push_back(Box::new(callback));
    }

    /// Runs `callback` every `period`, the first time one period from now.
    /// A period beyond [`MAX_TIMER_DELAY`] is capped to it.
    ///
    /// # Panics
    ///
    /// If `period` is zero: a callback due again the moment it ran would
    /// never let the loop sleep. That is a programming error, not a runtime
    /// condition, so it panics rather than returning an error.
    pub fn add_periodic(&mut self, period: Duration, callback: impl FnMut(&mut Reactor) + 'static) -> PeriodicId {
        self.add_periodic_with_jitter(period, 0.0, callback)
    }

    /// Like [`add_periodic`](Self::add_periodic), each interval scaled by a
    /// random factor in `1 ± jitter/2` (Tornado's `jitter`), e.g. 0.1.
    ///
    /// # Panics
    ///
    /// If `period` is zero, as [`add_periodic`](Self::add_periodic).
    pub fn add_periodic_with_jitter(
        &mut self,
        period: Duration,
        jitter: f64,
        callback: impl FnMut(&mut Reactor) + 'static,
    ) -> PeriodicId {
        assert!(!period.is_zero(), "a periodic callback needs a non-zero period");
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let index = self.periodics.insert(Periodic {
            generation,
            callback: Some(Box::new(callback)),
            period: period.min(MAX_TIMER_DELAY),
            jitter: jitter.clamp(0.0, 1.0),
            next: Instant::now(),
            timer: None,
        });
        let id = PeriodicId { index, generation };
        self.schedule_periodic(id, Instant::now());
        id
    }

    /// Stops a periodic callback (also from inside its own run).
    pub fn remove_periodic(&mut self, id: PeriodicId) -> bool {
        match self.periodics.get(id.index) {
            Some(p) if p.generation == id.generation => {
                let periodic = self.periodics.remove(id.index);
                if let Some(timer) = periodic.timer {
                    self.timers.cancel(timer);
                }
                true
            }
            _ => false,
        }
    }

    /// Every timer goes in here, its deadline capped at
    /// [`MAX_TIMER_DELAY`] from now.
    pub(crate) fn add_timer(&mut self, deadline: Instant, task: TimerTask) -> TimerHandle {
        let deadline = deadline.min(deadline_after(Instant::now(), MAX_TIMER_DELAY));
        self.timers.insert(deadline, Timer { deadline, task })
    }

    /// Tornado's `_update_next`: the next run is the first multiple of the
    /// period after `now`, so runs missed while the loop was busy are skipped.
    fn schedule_periodic(&mut self, id: PeriodicId, now: Instant) {
        let Some(p) = self.periodics.get_mut(id.index).filter(|p| p.generation == id.generation) else {
            return;
        };
        let mut period = p.period;
        if p.jitter > 0.0 {
            let factor = 1.0 + p.jitter * (self.rng.next_f64() - 0.5);
            period = period.mul_f64(factor);
        }
        let step = if p.next <= now {
            let missed = (now - p.next).as_nanos() / period.as_nanos().max(1);
            period.saturating_mul(u32::try_from(missed + 1).unwrap_or(u32::MAX))
        } else {
            period
        };
        p.next = deadline_after(p.next, step);
        let deadline = p.next;
        let timer = self.timers.insert(deadline, Timer { deadline, task: TimerTask::Periodic(id) });
        if let Some(p) = self.periodics.get_mut(id.index) {
            p.timer = Some(timer);
        }
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        let mut fired = 0u32;
        while let Some((handle, timer)) = self.timers.poll_expired(now) {
            fired += 1;
            self.stats.timers_fired += 1;
            let lateness = Instant::now().saturating_duration_since(timer.deadline);
            self.stats.max_timer_lateness = self.stats.max_timer_lateness.max(lateness);
            self.stats.timer_lateness.record(lateness);
            match timer.task {
                TimerTask::Once(callback) => callback(self),
                TimerTask::Periodic(id) => self.run_periodic(id),
                TimerTask::Conn { id, tag } => {
                    self.forget_conn_timer(id, handle);
                    self.with_dispatcher(id, |d, ctx| d.handle_timer(ctx, tag));
                }
                TimerTask::Linger(id) => {
                    log::debug!(
                        "{id}: graceful close not done within the linger time (output unwritten or no FIN from the peer); closing"
                    );
                    self.forget_conn_timer(id, handle);
                    self.abort(id);
                }
                TimerTask::RetryAccept(id) => self.queue_listener(id),
            }
            self.settle();
        }
        if fired > 0 {
            log::trace!("iteration {}: {} fired", self.stats.iterations, plural(u64::from(fired), "timer"));
        }
    }

    fn run_periodic(&mut self, id: PeriodicId) {
        let Some(p) = self.periodics.get_mut(id.index).filter(|p| p.generation == id.generation) else {
            return;
        };
        p.timer = None;
        let Some(mut callback) = p.callback.take() else { return };
        callback(self);
        // It may have removed itself; otherwise put it back and re-arm.
        if let Some(p) = self.periodics.get_mut(id.index).filter(|p| p.generation == id.generation) {
            p.callback = Some(callback);
            self.schedule_periodic(id, Instant::now());
        }
    }

    fn run_soon(&mut self) {
        for _ in 0..self.soon.len() {
            let Some(callback) = self.soon.pop_front() else { break };
            callback(self);
            self.settle();
        }
    }
}

/// Linux lets a poll's timeout run late by a thousandth of its length, up
/// to 100 ms, to batch wake-ups ("timer slack": `select_estimate_accuracy`
/// in fs/select.c). A heartbeat 10 s away would fire up to 10 ms late. So
/// the loop asks for a thousandth less: it wakes at the deadline or a little
/// before, and then the next poll waits out the rest, whose slack is a
/// thousandth as long. At worst one extra wake-up per long wait.
fn without_kernel_slack(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 1000).min(Duration::from_millis(100)))
}

/// When the poll that returned `returned` events at `now` lets the next
/// one happen: one interval after `now`, or `None` (whenever the loop
/// would sleep) in three cases. Without an interval. After a full batch:
/// the kernel may hold more events than fitted, and they should not wait.
/// And after a poll that returned nothing when no timer is due within the
/// interval: the loop would only wake at the interval's end to poll again,
/// a wake-up no timer asked for; it may as well wait in poll for the timer.
/// (With timers due inside the interval, it sleeps from one to the next
/// and polls once at the end: that keeps busy heartbeats coalesced.)
fn next_poll_at(
    now: Instant,
    interval: Duration,
    returned: usize,
    capacity: usize,
    timer_within_interval: bool,
) -> Option<Instant> {
    let coalesce = !interval.is_zero() && returned < capacity && (returned > 0 || timer_within_interval);
    coalesce.then(|| deadline_after(now, interval))
}

fn describe_token(token: Token) -> String {
    if token == WAKER { "waker".to_string() } else { EntryToken::from_token(token).to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_too_long_for_the_clock_is_capped_at_thirty_years() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Duration::MAX), now + MAX_TIMER_DELAY);
        assert_eq!(deadline_after(now, MAX_TIMER_DELAY + Duration::from_nanos(1)), now + MAX_TIMER_DELAY);
        assert_eq!(deadline_after(now, Duration::from_secs(5)), now + Duration::from_secs(5));
    }

    #[test]
    fn far_deadlines_reach_the_wheel_and_the_poll_timeout_capped() {
        let mut reactor = Reactor::new().unwrap();
        let before = Instant::now();
        reactor.call_later(Duration::MAX, |_| {});
        // An instant past the cap, where the platform's clock can hold one.
        if let Some(beyond) = before.checked_add(MAX_TIMER_DELAY * 4) {
            reactor.call_at(beyond, |_| {});
        }
        let after = Instant::now();
        // The wheel rounds a deadline up to its 1 ms tick.
        let next = reactor.timers.next_deadline().unwrap();
        assert!(next >= before + MAX_TIMER_DELAY, "{:?} early", (before + MAX_TIMER_DELAY) - next);
        assert!(next <= after + MAX_TIMER_DELAY + Duration::from_millis(1));
        let timeout = reactor.poll_timeout(None).unwrap();
        assert!(timeout > MAX_TIMER_DELAY - Duration::from_secs(60), "poll would sleep only {timeout:?}");
        // mio turns the timeout into epoll's milliseconds without overflow.
        reactor.turn(Some(Duration::ZERO)).unwrap();
        assert_eq!(reactor.pending_timers(), 2);
    }

    #[test]
    fn a_config_that_could_not_make_progress_is_rejected() {
        let zeroed: [fn(&mut ReactorConfig); 4] = [
            |c| c.events_capacity = 0,
            // Every read would return 0 bytes: a peer that sent "hello"
            // would look as if it had closed.
            |c| c.scratch_size = 0,
            |c| c.read_budget = 0,
            |c| c.accept_budget = 0,
        ];
        for zero in zeroed {
            let mut config = ReactorConfig::default();
            zero(&mut config);
            let result = std::panic::catch_unwind(|| Reactor::with_config(config.clone()).map(drop));
            assert!(result.is_err(), "accepted {config:?}");
        }
    }

    #[test]
    fn a_poll_asks_for_a_thousandth_less_than_the_wait_and_at_most_100_ms_less() {
        let s = Duration::from_secs;
        assert_eq!(without_kernel_slack(s(10)), Duration::from_millis(9_990));
        assert_eq!(without_kernel_slack(s(500)), Duration::from_millis(499_900));
        assert_eq!(without_kernel_slack(Duration::from_millis(1)), Duration::from_micros(999));
        assert_eq!(without_kernel_slack(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_poll_interval_starts_after_events_or_before_a_near_timer_unless_the_batch_was_full() {
        let now = Instant::now();
        let interval = Duration::from_millis(50);
        assert_eq!(next_poll_at(now, Duration::ZERO, 3, 1024, true), None, "no interval: poll whenever idle");
        assert_eq!(next_poll_at(now, interval, 0, 1024, true), Some(now + interval), "dense timers: coalesce");
        assert_eq!(next_poll_at(now, interval, 0, 1024, false), None, "nothing due soon: wait in poll");
        assert_eq!(next_poll_at(now, interval, 1023, 1024, false), Some(now + interval));
        assert_eq!(next_poll_at(now, interval, 1024, 1024, true), None, "a full batch: more may be waiting");
        let capped = next_poll_at(now, Duration::MAX, 1, 1024, false);
        assert_eq!(capped, Some(now + MAX_TIMER_DELAY), "capped, no overflow");
    }

    #[test]
    #[should_panic(expected = "non-zero period")]
    fn a_zero_period_is_a_programming_error() {
        Reactor::new().unwrap().add_periodic(Duration::ZERO, |_| {});
    }
}

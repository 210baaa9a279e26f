//! A hashed timer wheel: where the event loop keeps its timers.
//!
//! # Why the event loop needs a timer structure
//!
//! A reactor does two things: it waits for sockets to become ready, and it runs
//! things *later*: a reconnect in 5 s, a heartbeat every 45 s, an idle timeout
//! per connection. The idle timeout is the demanding one: every message that
//! arrives pushes it back, over and over. Most timers are re-armed or
//! cancelled long before they fire.
//!
//! A binary heap (Tornado's IOLoop, for example) costs O(log n) per insert, and
//! it cannot cancel cheaply: finding an entry in a heap is O(n), so
//! cancellation is *lazy*. The entry is marked dead and stays in the heap until
//! it reaches the top. Every re-arm leaves one such tombstone behind, so the
//! heap holds far more entries than there are live timers, unless it is
//! compacted now and then (Tornado does that when more than half of it is dead).
//!
//! This wheel does insert, cancel and re-arm in O(1). A cancelled timer is
//! unlinked and freed at once, with no tombstones. Its memory is one fixed slot array plus one
//! node for each timer that is pending. Freed nodes are reused, so the total is
//! bounded by the largest number of timers ever pending at once.
//!
//! # The wheel
//!
//! Time is cut into *ticks* (1 ms by default), counted from the `start` instant
//! given to the constructor. Think of a clock face with `slots` positions (4096
//! by default). A timer due at tick `t` hangs in slot `t % slots`. Because
//! `slots` is a power of two, that is just `t & (slots - 1)`. Each slot holds a
//! doubly-linked list of its timers, so appending to a slot or unlinking from
//! it is O(1). The lists are made of indices into arrays, not of pointers and
//! allocations: see "Memory layout" below.
//!
//! A timer further away than one turn of the wheel (4.096 s by default) simply
//! shares its slot with nearer timers. Every entry records its *absolute* tick,
//! so when the wheel passes the slot, it leaves entries whose round has not come
//! yet. This is "scheme 6" in Varghese & Lauck, *Hashed and Hierarchical Timing
//! Wheels* (1987).
//!
//! One bit per slot records whether the slot is occupied. With it the wheel can
//! skip 64 empty slots at once, both when time moves forward and when it looks
//! for the next deadline.
//!
//! # Rounding: never early, at most one tick late
//!
//! A deadline is rounded *up* to the next tick boundary. `now` is rounded
//! *down*, and a timer is due when its tick is <= the tick of `now`. So a timer
//! never fires before its deadline, and (if the loop polls promptly) it fires at
//! most one tick after it. A deadline at or before the tick the wheel has
//! already reached goes to the next tick. A callback that re-arms itself with a
//! past deadline therefore waits for the next pass. It cannot make one pass run
//! forever.
//!
//! # From `next_deadline` to the poll timeout
//!
//! The reactor asks the wheel for its earliest deadline and sleeps until then,
//! or until I/O arrives. With no timers it blocks forever. After waking it
//! collects the expired timers one at a time:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use barrage::reactor::timer::TimerWheel;
//!
//! let start = Instant::now();
//! let mut wheel = TimerWheel::new(start);
//! wheel.insert(start + Duration::from_millis(20), "heartbeat");
//! let idle = wheel.insert(start + Duration::from_millis(10), "idle timeout");
//!
//! // Each loop iteration: the timeout for epoll (None would mean "block forever").
//! let now = start; // a real loop calls Instant::now()
//! let timeout = wheel.next_deadline().map(|d| d.saturating_duration_since(now));
//! assert_eq!(timeout, Some(Duration::from_millis(10)));
//!
//! // A message arrived: push the idle timeout back. That costs one cancel and one insert.
//! wheel.cancel(idle);
//! wheel.insert(start + Duration::from_millis(30), "idle timeout");
//!
//! // Later, after the poll returned:
//! let now = start + Duration::from_millis(25);
//! let mut fired = Vec::new();
//! while let Some((_handle, what)) = wheel.poll_expired(now) {
//!     fired.push(what); // a real loop runs the callback here
//! }
//! assert_eq!(fired, ["heartbeat"]);
//! ```
//!
//! # How expiry works
//!
//! Every pending timer is in exactly one of two places:
//!
//! - **a slot list**, if its tick is later than `current_tick`, the latest tick
//!   the wheel has been polled at;
//! - **the due list**, if its tick is <= `current_tick`. The due list is sorted
//!   by (tick, insertion order), and `poll_expired` pops its head.
//!
//! When `poll_expired` sees a later `now`, it moves every timer due by then from
//! the slots onto the due list, and only then pops one. Timers wait on the due
//! list, still cancellable, until the loop asks for them. That is what lets the
//! callback of timer A cancel timer B due on the same tick.
//!
//! # Re-arming: move the deadline, not the timer
//!
//! [`reschedule`] moves a pending timer to a new deadline. When the deadline
//! moves *later*, as an idle timeout's does on every message, the timer stays
//! in its slot list: only its tick changes. The wheel reaches that slot
//! before the new deadline (the slot was right for the old, earlier one), and
//! files the timer in the slot of its own tick then. Such a timer is "filed
//! early": `Link::filed` says which tick's slot holds it, and a bit per slot
//! (`filed_early`) says which slots may hold one. Two places look at them:
//!
//! - moving time forward walks a slot when its smallest *filed* tick is due,
//!   and files its early timers where they belong;
//! - `next_deadline` files the early timers of each slot it passes before it
//!   trusts that slot's smallest tick, so its answer is still exact: the loop
//!   never wakes up for a deadline that was pushed back.
//!
//! A timer pushed back a thousand times in one turn of the wheel moves once.
//! The exception is the earliest timer of all: pushing it back makes the next
//! `next_deadline` (which a loop asks every iteration) look past it, and so
//! move it. A deadline moved *earlier* moves the timer at once (unlink, then
//! append to the new slot), as cancel plus insert would.
//!
//! [`reschedule`]: crate::reactor::timer::TimerWheel::reschedule
//!
//! # Costs, and the price of scheme 6
//!
//! - `insert`, `cancel` and `reschedule`: O(1).
//! - `next_deadline`: O(1) while its cached answer holds. Working it out again
//!   looks once at each occupied slot (64 empty ones per bitmap word) and walks
//!   the list of any slot whose smallest timer was cancelled, or that may hold
//!   timers filed early (it moves them on, once each).
//! - `poll_expired`: moving time forward walks the whole list of each slot that
//!   holds a due timer, far timers included. A timer k turns away is looked
//!   at up to k times before it fires. With the defaults, a 60 s timeout is 15
//!   turns away, so with 100 000 such timers (24 per slot) each expiry walks
//!   about 24 entries. A wheel whose turn covers the usual timeouts avoids
//!   that (see [`with_config`]). So does a hierarchical wheel (scheme 7).
//!
//! [`with_config`]: crate::reactor::timer::TimerWheel::with_config
//!
//! # Memory layout, and why it is fast
//!
//! With many timers, what an operation costs is mostly how many cache lines
//! it touches that are not in the cache already: a miss to main memory costs
//! as much as a few hundred instructions. A re-arm picks a timer at random,
//! so it misses at least once, on that timer. The layout keeps everything
//! else small and dense:
//!
//! - `nodes: Vec<Node<T>>`: per timer its tick, its generation (see
//!   [`TimerHandle`]) and its value, `None` while the node is free. That is
//!   32 bytes for a `u64` or pointer value, and the node type is aligned to
//!   32 bytes, so such a node is always within one cache line.
//! - `links: Vec<Link>`: per timer its `prev` and `next` in whichever list
//!   holds it (a slot list, the due list, or the free list), as `u32`
//!   indices with `NIL` for "none", and the tick it is filed at. 16 bytes
//!   per timer. Only list operations read it, and a re-arm that moves a
//!   deadline later does none.
//! - `slots`: per slot the head and tail of its list and its smallest tick,
//!   16 bytes; 64 KiB for 4096 slots.
//!
//! Unlinking a timer only *writes* to its neighbours' links (`prev.next =
//! next`, `next.prev = prev`). It never needs to read them, so the CPU does
//! not wait for those cache lines. Freed nodes are chained through `links` and
//! reused last-freed-first: a re-arm's insert reuses the node its cancel just
//! freed, which is in the cache. Walking a slot's list at expiry follows the
//! small `links` array, and the tick loads from `nodes` do not depend on each
//! other, so the CPU can fetch several at once.
//!
//! A lazy heap is still hard to beat *per operation*: its cancel writes one
//! flag, and pushing a deadline later than the others stops after one
//! comparison. It pays later, when it compacts, and in memory: it holds every
//! tombstone until then. The wheel's memory is bounded by the live timers and
//! it has no garbage to collect. A re-arm that moves the deadline later
//! touches the node (and a bitmap word); the heap's cancel plus push touches two
//! or three. Cancel plus insert on the wheel touches about five (the node,
//! its links, both neighbours' links, the new tail's link), which is why
//! `reschedule` exists. `examples/timer_bench.rs` measures all three.

use std::time::{Duration, Instant};

/// Names one pending timer; stays valid (and harmless) after the timer fired or was cancelled.
///
/// It is the timer's node index plus its generation. Freed nodes are reused,
/// so the index alone could name a newer timer. The generation is different
/// for every insert, so an old handle is recognised as stale.
///
/// The 64-bit generation is kept as two 32-bit halves: a `u64` field would
/// align the handle to 8 bytes and pad it from 12 to 16. Callers keep one
/// handle per timer (one per connection, say), so its size counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    index: u32,
    generation: [u32; 2],
}

impl TimerHandle {
    fn new(index: u32, generation: u64) -> Self {
        TimerHandle { index, generation: [generation as u32, (generation >> 32) as u32] }
    }

    fn generation(self) -> u64 {
        u64::from(self.generation[0]) | (u64::from(self.generation[1]) << 32)
    }
}

/// "No node": the end of a list, or of the free list.
const NIL: u32 = u32::MAX;

/// A hashed timer wheel holding values of type `T` (typically callbacks or tokens).
///
/// See the [module documentation](self) for how it works.
pub struct TimerWheel<T> {
    /// Tick 0 begins at this instant.
    start: Instant,
    /// Length of one tick, in nanoseconds (never 0).
    tick_nanos: u64,
    /// Every timer, pending or free. A pending one is in a slot list or on
    /// the due list; a free one is on the free list, waiting to be reused.
    nodes: Vec<Node<T>>,
    /// The list links of each node, kept apart from the nodes (see the module documentation).
    links: Vec<Link>,
    /// The first free node, or `NIL`. Free nodes are chained through `next`.
    free: u32,
    /// Number of pending timers.
    len: usize,
    /// The wheel itself: `slots.len()` is a power of two.
    slots: Vec<Slot>,
    /// One bit per slot: set when the slot's list is not empty.
    occupied: Bitmap,
    /// One bit per slot: set when the slot may hold a timer filed early
    /// (see [`reschedule`](Self::reschedule)); cleared when the slot is walked.
    filed_early: Bitmap,
    /// Timers whose tick is <= `current_tick`, in (tick, generation) order.
    due: List,
    /// The tick of the latest `now` given to `poll_expired` (0 before that).
    /// New timers always go to a later tick.
    current_tick: u64,
    /// The generation of the next insert. It only grows, so it also gives the
    /// insertion order of timers on the same tick.
    next_generation: u64,
    /// The earliest tick among timers in the slots (the due list is not included).
    slots_earliest: Cached,
    /// Scratch space for `advance_to`, kept between calls so that moving time
    /// forward does not allocate on every tick. Empty outside `advance_to`.
    newly_due: Vec<u32>,
}

/// One timer: its deadline and its value.
///
/// Aligned to 32 bytes, so that a node of 32 bytes or less (a `u64` or a
/// pointer as the value) never straddles two cache lines: reading it costs
/// one cache miss, not sometimes two.
#[repr(align(32))]
struct Node<T> {
    /// Absolute deadline, in ticks since `start`. Always >= 1 while pending.
    tick: u64,
    /// See [`TimerHandle`]; also the insertion order.
    generation: u64,
    /// `None` while the node is free.
    value: Option<T>,
}

/// A node's neighbours in the list that holds it (a slot list, the due
/// list, or the free list, which uses only `next`), or `NIL`; and, while
/// it is in a slot, which tick it is filed at.
#[derive(Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
    /// The tick whose slot holds the node: its own tick, or an earlier one
    /// if [`TimerWheel::reschedule`] moved its deadline later without moving
    /// the node ("filed early"). Kept here, not in the node, because only
    /// the list operations need it, and they read the links anyway.
    filed: u64,
}

/// One position of the wheel.
#[derive(Clone, Copy)]
struct Slot {
    /// The slot's timers, in the order they were filed (inserted, or moved here).
    list: List,
    /// The smallest `filed` tick in `list`, or 0 if that is not known. A timer
    /// in this slot may be many turns away, so `next_deadline` needs this to
    /// answer exactly. It becomes unknown when the timer holding the minimum is
    /// cancelled, and is recomputed by walking the list only when needed. A
    /// timer filed early counts with its `filed` tick: that is when the wheel
    /// must walk this slot to move it on.
    /// No timer is ever at tick 0, so 0 is a lower bound that is always
    /// true: `min(0, tick)` stays unknown, and "0 <= to" reads "may be due".
    min_tick: u64,
}

/// `Slot::min_tick` when the minimum is not known.
const UNKNOWN: u64 = 0;

impl Slot {
    const EMPTY: Slot = Slot { list: List::EMPTY, min_tick: UNKNOWN };
}

/// A remembered answer, or a note that it must be worked out again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cached {
    Unknown,
    Known(Option<u64>),
}

impl<T> TimerWheel<T> {
    /// A wheel with 1 ms ticks and 4096 slots, starting at `start`.
    ///
    /// Why 1 ms: `epoll_wait` takes its timeout in milliseconds, so finer ticks
    /// would not make the loop wake up any more precisely. Why 4096 slots: one
    /// turn is then 4.096 s. Short timers (retries, small delays) fall within
    /// the first turn. Long ones (a 45 s heartbeat, a 60 s idle timeout) are 10
    /// to 15 turns away and are skipped at each pass until their round, a cost
    /// that stays small while slots hold few timers each. The slot array and
    /// its bitmap take a fixed 64 KiB.
    pub fn new(start: Instant) -> Self {
        Self::with_config(start, Duration::from_millis(1), 4096)
    }

    /// A wheel with a chosen tick length and number of slots.
    ///
    /// # Panics
    ///
    /// If `tick` is zero, or longer than `u64::MAX` nanoseconds, or if `slots` is
    /// not a power of two (0 is not one; 1 is). These are programming errors in
    /// the caller, not runtime conditions, so they panic rather than return an
    /// error. A power of two turns "tick modulo slots" into a bit mask.
    pub fn with_config(start: Instant, tick: Duration, slots: usize) -> Self {
        assert!(!tick.is_zero(), "TimerWheel: the tick must not be zero");
        assert!(slots.is_power_of_two(), "TimerWheel: the number of slots must be a power of two, got {slots}");
        let tick_nanos = u64::try_from(tick.as_nanos()).expect("TimerWheel: the tick must fit in u64 nanoseconds");
        TimerWheel {
            start,
            tick_nanos,
            nodes: Vec::new(),
            links: Vec::new(),
            free: NIL,
            len: 0,
            slots: vec![Slot::EMPTY; slots],
            occupied: Bitmap::new(slots),
            filed_early: Bitmap::new(slots),
            due: List::EMPTY,
            current_tick: 0,
            next_generation: 0,
            slots_earliest: Cached::Known(None),
            newly_due: Vec::new(),
        }
    }

    /// Schedules `value` for `deadline`. O(1).
    ///
    /// The deadline is rounded up to a tick boundary, so a timer never fires
    /// early. A deadline at or before the wheel's current tick is scheduled for
    /// the next tick. So a callback that re-arms itself with a past deadline
    /// while timers are expiring cannot make one `poll_expired` pass loop
    /// forever.
    ///
    /// # Panics
    ///
    /// If `u32::MAX` timers are already pending.
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerHandle {
        let tick = self.tick_at_or_after(deadline).max(self.current_tick + 1);
        let generation = self.next_generation;
        self.next_generation += 1;
        let index = self.allocate(Node { tick, generation, value: Some(value) });
        self.file_in_slot(index);
        self.lower_earliest(tick);
        TimerHandle::new(index, generation)
    }

    /// Moves a pending timer to a new deadline, keeping its handle and its
    /// value. O(1). Returns `false`, and does nothing, if the timer already
    /// fired or was cancelled.
    ///
    /// This is the idle timeout's operation: every message pushes the
    /// deadline later. A later deadline does not move the node at all. It
    /// stays in the slot it is filed in, which the wheel reaches *before*
    /// the new deadline, and it is moved to its own slot then, when the wheel
    /// walks that slot anyway (or when `next_deadline` needs to look past
    /// it). So a re-arm touches one node (and a bit of the `filed_early`
    /// bitmap), however often the timer is pushed back in between: it moves
    /// at most once per turn, or when it is the earliest timer and the next
    /// deadline is asked for. An earlier deadline moves it now.
    ///
    /// The timer keeps its place in the insertion order: among timers due on
    /// the same tick, it comes out where it was first inserted.
    pub fn reschedule(&mut self, handle: TimerHandle, deadline: Instant) -> bool {
        if !self.contains(handle) {
            return false;
        }
        let index = handle.index;
        let tick = self.tick_at_or_after(deadline).max(self.current_tick + 1);
        let old_tick = self.nodes[index as usize].tick;
        if old_tick > self.current_tick && tick >= old_tick {
            // Later, and in a slot the wheel reaches first: leave it there.
            // Only the node is touched (the links hold where it is filed,
            // and need not be read). If the node was filed at `old_tick`,
            // that slot now holds an early timer. If it was filed early
            // already, its slot's bit is still set: only walking the slot
            // clears it, and that files the node at its own tick.
            self.nodes[index as usize].tick = tick;
            if tick != old_tick {
                self.filed_early.set(self.slot_of(old_tick));
                if self.slots_earliest == Cached::Known(Some(old_tick)) {
                    self.slots_earliest = Cached::Unknown;
                }
            }
        } else {
            self.unlink_pending(index);
            self.nodes[index as usize].tick = tick;
            self.file_in_slot(index);
            self.lower_earliest(tick);
        }
        true
    }

    /// Removes a pending timer. O(1).
    ///
    /// Returns its value if the timer was still pending. Returns `None` if it
    /// already fired or was cancelled, or if the handle is stale (its node
    /// now holds a newer timer).
    pub fn cancel(&mut self, handle: TimerHandle) -> Option<T> {
        if !self.contains(handle) {
            return None;
        }
        self.unlink_pending(handle.index);
        Some(self.release(handle.index))
    }

    /// The value of a pending timer, to change it in place.
    pub fn get_mut(&mut self, handle: TimerHandle) -> Option<&mut T> {
        let node = self.nodes.get_mut(handle.index as usize)?;
        if node.generation != handle.generation() {
            return None;
        }
        node.value.as_mut()
    }

    /// Is this timer still pending (neither fired nor cancelled)?
    pub fn contains(&self, handle: TimerHandle) -> bool {
        self.nodes
            .get(handle.index as usize)
            .is_some_and(|node| node.generation == handle.generation() && node.value.is_some())
    }

    /// Number of pending timers, including those due but not yet popped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The earliest pending deadline (rounded up to its tick), or `None` if no
    /// timer is pending.
    ///
    /// This is what the reactor turns into the poll timeout: no deadline means
    /// block forever. The answer is exact even when every timer is many turns
    /// away. It is cached, and worked out again (see "Costs" in the module
    /// documentation) only after the earliest timer was cancelled or expired.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let tick = match self.due.head {
            // Already due: the head of the due list is the earliest of all.
            NIL => self.earliest_in_slots()?,
            first_due => self.nodes[first_due as usize].tick,
        };
        Some(self.start_of_tick(tick))
    }

    /// Pops one expired timer (its tick is <= the tick of `now`), or returns
    /// `None` when nothing more is due at `now`.
    ///
    /// Timers come out in deadline order. Timers on the same tick come out in
    /// insertion order. They come one at a time so that the callback run for
    /// timer A can still cancel timer B due on the same tick. If `now` is
    /// earlier than a `now` seen before, the wheel keeps the later one: its
    /// clock never runs backwards.
    pub fn poll_expired(&mut self, now: Instant) -> Option<(TimerHandle, T)> {
        let now_tick = self.tick_at_or_before(now);
        if now_tick > self.current_tick {
            self.advance_to(now_tick);
        }

        let index = self.due.head;
        if index == NIL {
            return None;
        }
        self.due.unlink(&mut self.links, index);
        let handle = TimerHandle::new(index, self.nodes[index as usize].generation);
        Some((handle, self.release(index)))
    }

    /// Stores a new pending timer in a free node, or in a new one at the end.
    fn allocate(&mut self, node: Node<T>) -> u32 {
        self.len += 1;
        if self.free == NIL {
            let index = u32::try_from(self.nodes.len()).ok().filter(|&i| i != NIL);
            let index = index.expect("TimerWheel: too many pending timers");
            self.nodes.push(node);
            self.links.push(Link { prev: NIL, next: NIL, filed: 0 });
            index
        } else {
            let index = self.free;
            self.free = self.links[index as usize].next;
            self.nodes[index as usize] = node;
            index
        }
    }

    /// Frees the node of a timer that is on no list any more, and returns its value.
    fn release(&mut self, index: u32) -> T {
        self.len -= 1;
        self.links[index as usize].next = self.free;
        self.free = index;
        self.nodes[index as usize].value.take().expect("TimerWheel: released a free node")
    }

    /// Appends a node to the list of the slot of its own tick.
    fn file_in_slot(&mut self, index: u32) {
        let tick = self.nodes[index as usize].tick;
        let slot_index = self.slot_of(tick);
        let slot = &mut self.slots[slot_index];
        slot.min_tick = if slot.list.is_empty() { tick } else { slot.min_tick.min(tick) };
        slot.list.push_back(&mut self.links, index);
        self.links[index as usize].filed = tick;
        self.occupied.set(slot_index);
    }

    /// Takes a pending timer off the list that holds it: the due list, or its slot's.
    fn unlink_pending(&mut self, index: u32) {
        let tick = self.nodes[index as usize].tick;
        if tick <= self.current_tick {
            self.due.unlink(&mut self.links, index);
            return;
        }
        let filed = self.links[index as usize].filed;
        let slot_index = self.slot_of(filed);
        let slot = &mut self.slots[slot_index];
        slot.list.unlink(&mut self.links, index);
        if slot.list.is_empty() {
            self.occupied.clear(slot_index);
        } else if slot.min_tick == filed {
            // Another timer may share this tick, or not: find out only when asked.
            slot.min_tick = UNKNOWN;
        }
        if self.slots_earliest == Cached::Known(Some(tick)) {
            self.slots_earliest = Cached::Unknown;
        }
    }

    /// A timer now at `tick` can only lower the earliest tick, so a known answer stays known.
    fn lower_earliest(&mut self, tick: u64) {
        if let Cached::Known(earliest) = self.slots_earliest {
            let earliest = earliest.map_or(tick, |e| e.min(tick));
            self.slots_earliest = Cached::Known(Some(earliest));
        }
    }

    /// Moves the wheel's clock forward to tick `to`, moving every timer due by
    /// then from the slots onto the due list.
    fn advance_to(&mut self, to: u64) {
        // Start at the earliest timer rather than at `current_tick + 1`. The
        // slots in between are empty of timers due before `to`, and after a
        // long sleep that gap can be millions of ticks.
        if let Some(first) = self.earliest_in_slots().filter(|&tick| tick <= to) {
            // Visit the slots for ticks first..=to in order, but at most one
            // full turn. One visit per slot finds every timer due, however long
            // the jump, because each entry carries its absolute tick.
            let span = (to - first + 1).min(self.slots.len() as u64) as usize;
            let first_slot = self.slot_of(first);
            let mut newly_due = std::mem::take(&mut self.newly_due);
            let mut distance = 0;
            while let Some(skip) = self.occupied.next_set(first_slot + distance, span - distance) {
                distance += skip;
                let slot_index = (first_slot + distance) & (self.slots.len() - 1);
                // Walk the slot only if it may hold a due timer, or one filed
                // early that must move on: its smallest filed tick is due, or
                // not known (UNKNOWN is 0, which is <= to).
                if self.slots[slot_index].min_tick <= to {
                    self.take_due_from_slot(slot_index, to, &mut newly_due);
                }
                distance += 1;
            }

            // For a jump of less than a turn the slots were visited in tick
            // order, and this sort mostly confirms it (a slot's list is in
            // filing order, which a moved timer can upset). After a longer
            // jump one slot may have given up several rounds. Either way,
            // here they are put in (deadline, insertion) order.
            let nodes = &self.nodes;
            newly_due.sort_by_key(|&index| (nodes[index as usize].tick, nodes[index as usize].generation));
            for index in newly_due.drain(..) {
                self.due.push_back(&mut self.links, index);
            }
            self.newly_due = newly_due;
            self.slots_earliest = Cached::Unknown;
        }
        self.current_tick = to;
    }

    /// Walks one slot: unlinks the timers whose tick is <= `to` into `out`,
    /// keeping their (insertion) order, files every timer that was filed
    /// early in the slot of its own tick, and re-learns the smallest tick
    /// left in the slot. Returns the smallest tick it moved to another slot
    /// (`u64::MAX` if none).
    ///
    /// With `to == current_tick` nothing is due, and this only files the
    /// slot's early timers where they belong ("settling" the slot).
    fn take_due_from_slot(&mut self, slot_index: usize, to: u64, out: &mut Vec<u32>) -> u64 {
        let mut min_left = u64::MAX;
        let mut min_moved = u64::MAX;
        let mut cursor = self.slots[slot_index].list.head;
        while cursor != NIL {
            let next = self.links[cursor as usize].next;
            let tick = self.nodes[cursor as usize].tick;
            if tick <= to {
                self.slots[slot_index].list.unlink(&mut self.links, cursor);
                out.push(cursor);
            } else if self.slot_of(tick) == slot_index {
                // Filed at its own tick, or early but in the right slot already.
                self.links[cursor as usize].filed = tick;
                min_left = min_left.min(tick);
            } else {
                self.slots[slot_index].list.unlink(&mut self.links, cursor);
                self.file_in_slot(cursor);
                min_moved = min_moved.min(tick);
            }
            cursor = next;
        }
        self.slots[slot_index].min_tick = min_left;
        self.filed_early.clear(slot_index);
        if self.slots[slot_index].list.is_empty() {
            self.occupied.clear(slot_index);
        }
        min_moved
    }

    /// The earliest tick among the timers in the slots, from the cache if possible.
    fn earliest_in_slots(&mut self) -> Option<u64> {
        if let Cached::Known(earliest) = self.slots_earliest {
            return earliest;
        }
        let earliest = self.find_earliest_in_slots();
        self.slots_earliest = Cached::Known(earliest);
        earliest
    }

    /// Walks one turn of occupied slots, starting with the tick after `current_tick`.
    ///
    /// The slot `d` steps ahead can hold ticks `first + d`, `first + d + slots`,
    /// `first + d + 2 * slots`, and so on. The first slot holding a timer for
    /// `first + d` itself (this turn) holds the answer: every later slot's ticks
    /// are later, and so is anything an earlier slot holds for a later turn. If
    /// no slot has a timer this turn, every timer is at least one turn away, and
    /// the answer is the smallest of the slots' minimums.
    ///
    /// A timer filed early would break that reasoning (its slot is not the
    /// slot of its tick), so each slot that may hold one is settled first:
    /// its early timers go to their own slots. Those land further ahead, where
    /// the walk will meet them, or a turn or more away, past any answer found
    /// this turn; `moved` keeps their smallest tick for the case of no answer.
    fn find_earliest_in_slots(&mut self) -> Option<u64> {
        let first = self.current_tick + 1;
        let first_slot = self.slot_of(first);
        let turn = self.slots.len();
        let mut earliest: Option<u64> = None;
        let mut distance = 0;
        while let Some(skip) = self.occupied.next_set(first_slot + distance, turn - distance) {
            distance += skip;
            let slot_index = (first_slot + distance) & (turn - 1);
            if self.filed_early.get(slot_index) {
                let mut due = Vec::new();
                let moved = self.take_due_from_slot(slot_index, self.current_tick, &mut due);
                debug_assert!(due.is_empty(), "a timer in a slot was already due");
                if moved != u64::MAX {
                    earliest = Some(earliest.map_or(moved, |e| e.min(moved)));
                }
                if !self.occupied.get(slot_index) {
                    distance += 1;
                    continue;
                }
            }
            let min = self.slot_min_tick(slot_index);
            if min == first + distance as u64 {
                return Some(min);
            }
            earliest = Some(earliest.map_or(min, |e| e.min(min)));
            distance += 1;
        }
        earliest
    }

    /// The smallest `filed` tick in an occupied slot, walking its list if it is not known.
    fn slot_min_tick(&mut self, slot_index: usize) -> u64 {
        let slot = &mut self.slots[slot_index];
        if slot.min_tick != UNKNOWN {
            return slot.min_tick;
        }
        let mut min = u64::MAX;
        let mut cursor = slot.list.head;
        while cursor != NIL {
            min = min.min(self.links[cursor as usize].filed);
            cursor = self.links[cursor as usize].next;
        }
        slot.min_tick = min;
        min
    }

    /// Which slot holds `tick`: `tick % slots`, as a mask since slots is a power of two.
    fn slot_of(&self, tick: u64) -> usize {
        (tick & (self.slots.len() as u64 - 1)) as usize
    }

    /// Tick of a deadline, rounded up: the timer fires at this tick or later, never early.
    fn tick_at_or_after(&self, deadline: Instant) -> u64 {
        self.nanos_since_start(deadline).div_ceil(self.tick_nanos)
    }

    /// Tick of `now`, rounded down: only ticks that have fully begun are due.
    fn tick_at_or_before(&self, now: Instant) -> u64 {
        self.nanos_since_start(now) / self.tick_nanos
    }

    /// Instants before `start` count as `start`. The u64 is good for 584 years.
    fn nanos_since_start(&self, instant: Instant) -> u64 {
        let since_start = instant.saturating_duration_since(self.start);
        u64::try_from(since_start.as_nanos()).unwrap_or(u64::MAX)
    }

    fn start_of_tick(&self, tick: u64) -> Instant {
        self.start + Duration::from_nanos(tick.saturating_mul(self.tick_nanos))
    }
}

/// A doubly-linked list threaded through the nodes' [`Link`]s.
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List { head: NIL, tail: NIL };

    fn is_empty(&self) -> bool {
        self.head == NIL
    }

    fn push_back(&mut self, links: &mut [Link], index: u32) {
        (links[index as usize].prev, links[index as usize].next) = (self.tail, NIL);
        match self.tail {
            NIL => self.head = index,
            tail => links[tail as usize].next = index,
        }
        self.tail = index;
    }

    /// Takes a node out of the list. It only *writes* to the neighbours, never
    /// reads them, so the CPU need not wait for their cache lines.
    fn unlink(&mut self, links: &mut [Link], index: u32) {
        let Link { prev, next, .. } = links[index as usize];
        match prev {
            NIL => self.head = next,
            prev => links[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => links[next as usize].prev = prev,
        }
    }
}

/// One bit per slot, set when the slot is occupied.
struct Bitmap {
    words: Vec<u64>,
    /// Number of bits, a power of two.
    len: usize,
}

impl Bitmap {
    fn new(len: usize) -> Self {
        Bitmap { words: vec![0; len.div_ceil(64)], len }
    }

    fn set(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    fn clear(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
    }

    fn get(&self, bit: usize) -> bool {
        self.words[bit / 64] & (1 << (bit % 64)) != 0
    }

    /// How many steps forward from bit `from` (which may be past the end, and
    /// wraps around) to the first set bit, looking at fewer than `limit` steps.
    /// Checks up to 64 bits per step of the loop.
    fn next_set(&self, from: usize, limit: usize) -> Option<usize> {
        // A word holds 64 bits, or all of them on a wheel with fewer than 64 slots.
        let bits_per_word = self.len.min(64);
        let mut distance = 0;
        while distance < limit {
            let bit = (from + distance) & (self.len - 1);
            let rest_of_word = self.words[bit / 64] >> (bit % 64);
            if rest_of_word != 0 {
                let found = distance + rest_of_word.trailing_zeros() as usize;
                return (found < limit).then_some(found);
            }
            distance += bits_per_word - bit % 64;
        }
        None
    }
}

/// The invariants the module documentation describes, checked by the tests.
#[cfg(test)]
impl<T> TimerWheel<T> {
    fn check_invariants(&self) {
        let mut pending = 0;
        let mut slot_ticks = Vec::new();
        for (slot_index, slot) in self.slots.iter().enumerate() {
            assert_eq!(self.occupied.get(slot_index), !slot.list.is_empty(), "occupied bit of slot {slot_index}");
            let (mut cursor, mut previous, mut min_filed) = (slot.list.head, NIL, u64::MAX);
            while cursor != NIL {
                let (link, node) = (self.links[cursor as usize], &self.nodes[cursor as usize]);
                assert!(node.value.is_some() && link.prev == previous);
                assert!(self.current_tick < link.filed && link.filed <= node.tick, "filed at a passed or later tick");
                assert_eq!(self.slot_of(link.filed), slot_index, "in the slot of its filed tick");
                if link.filed != node.tick {
                    assert!(self.filed_early.get(slot_index), "an early timer in an unmarked slot");
                }
                min_filed = min_filed.min(link.filed);
                slot_ticks.push((node.tick, link.filed));
                assert!(slot_ticks.len() <= self.nodes.len(), "a cycle in the slot lists");
                (previous, cursor) = (cursor, link.next);
            }
            assert_eq!(slot.list.tail, previous);
            if !slot.list.is_empty() {
                assert!(slot.min_tick == UNKNOWN || slot.min_tick == min_filed, "min_tick of slot {slot_index}");
            }
        }
        pending += slot_ticks.len();
        let (mut cursor, mut last) = (self.due.head, None);
        while cursor != NIL {
            let node = &self.nodes[cursor as usize];
            assert!(node.value.is_some() && node.tick <= self.current_tick);
            let key = (node.tick, node.generation);
            assert!(last < Some(key), "the due list is in (tick, generation) order");
            (last, cursor, pending) = (Some(key), self.links[cursor as usize].next, pending + 1);
            assert!(pending <= self.nodes.len(), "a cycle in the due list");
        }
        assert_eq!(pending, self.len);
        // Every other node is free, on the free list.
        let (mut cursor, mut free) = (self.free, 0);
        while cursor != NIL {
            assert!(self.nodes[cursor as usize].value.is_none(), "a pending node on the free list");
            (cursor, free) = (self.links[cursor as usize].next, free + 1);
            assert!(free <= self.nodes.len(), "a cycle in the free list");
        }
        assert_eq!(free + self.len, self.nodes.len(), "nodes neither pending nor free");
        if let Cached::Known(earliest) = self.slots_earliest {
            assert_eq!(earliest, slot_ticks.iter().map(|&(tick, _)| tick).min(), "cached earliest tick");
            let lowest_filed = slot_ticks.iter().map(|&(_, filed)| filed).min();
            assert!(lowest_filed >= earliest, "a timer filed before the cached earliest tick");
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every test uses a fake clock: instants computed from one fixed `start`. Nothing sleeps.

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Pops everything due at `now`, in the order the wheel gives it.
    fn drain<T>(wheel: &mut TimerWheel<T>, now: Instant) -> Vec<T> {
        std::iter::from_fn(|| wheel.poll_expired(now)).map(|(_, value)| value).collect()
    }

    /// A wheel of 1 ms ticks and only 16 slots, so several turns are quick to reach.
    fn small_wheel<T>(start: Instant) -> TimerWheel<T> {
        TimerWheel::with_config(start, ms(1), 16)
    }

    #[test]
    fn fires_in_deadline_order_across_ticks() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        wheel.insert(start + ms(30), 30);
        wheel.insert(start + ms(10), 10);
        wheel.insert(start + ms(20), 20);

        assert_eq!(drain(&mut wheel, start + ms(9)), Vec::<i32>::new());
        assert_eq!(drain(&mut wheel, start + ms(15)), [10]);
        assert_eq!(drain(&mut wheel, start + ms(100)), [20, 30]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn same_tick_fires_in_insertion_order() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        // 10.9 ms and 10.2 ms both round up to tick 11: insertion order decides.
        wheel.insert(start + ms(10) + us(900), "first");
        wheel.insert(start + ms(10) + us(200), "second");
        wheel.insert(start + ms(11), "third");
        assert_eq!(drain(&mut wheel, start + ms(11)), ["first", "second", "third"]);
    }

    #[test]
    fn never_fires_early() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        // 10.4 ms after start: rounded up to the tick boundary at 11 ms.
        let deadline = start + ms(10) + us(400);
        wheel.insert(deadline, ());
        assert_eq!(wheel.next_deadline(), Some(start + ms(11)));

        assert!(wheel.poll_expired(start + ms(10)).is_none());
        assert!(wheel.poll_expired(deadline).is_none()); // tick 10 still
        assert!(wheel.poll_expired(start + ms(11) - Duration::from_nanos(1)).is_none());
        assert!(wheel.poll_expired(start + ms(11)).is_some());
    }

    #[test]
    fn deadline_exactly_on_a_boundary_fires_at_that_tick() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        wheel.insert(start + ms(10), ());
        assert!(wheel.poll_expired(start + ms(10) - Duration::from_nanos(1)).is_none());
        assert!(wheel.poll_expired(start + ms(10)).is_some());
    }

    #[test]
    fn deadline_before_start_fires_at_the_first_tick() {
        let start = Instant::now() + ms(1000);
        let mut wheel = TimerWheel::new(start);
        wheel.insert(start - ms(500), "late");
        assert_eq!(wheel.next_deadline(), Some(start + ms(1)));
        assert_eq!(drain(&mut wheel, start), Vec::<&str>::new());
        assert_eq!(drain(&mut wheel, start + ms(1)), ["late"]);
    }

    #[test]
    fn cancel_before_fire_returns_the_value_and_it_never_fires() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        let keep = wheel.insert(start + ms(5), "keep");
        let drop = wheel.insert(start + ms(5), "drop");
        assert_eq!(wheel.cancel(drop), Some("drop"));
        assert!(!wheel.contains(drop));
        assert!(wheel.contains(keep));
        assert_eq!(drain(&mut wheel, start + ms(10)), ["keep"]);
    }

    #[test]
    fn cancel_after_fire_or_twice_returns_none() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        let fired = wheel.insert(start + ms(1), 1);
        let cancelled = wheel.insert(start + ms(1), 2);
        assert_eq!(wheel.cancel(cancelled), Some(2));
        assert_eq!(wheel.cancel(cancelled), None);

        let (handle, value) = wheel.poll_expired(start + ms(1)).unwrap();
        assert_eq!((handle, value), (fired, 1));
        assert!(!wheel.contains(fired));
        assert_eq!(wheel.cancel(fired), None);
    }

    #[test]
    fn stale_handle_after_slot_reuse_returns_none() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        let old = wheel.insert(start + ms(5), "old");
        wheel.cancel(old);
        let new = wheel.insert(start + ms(7), "new");
        assert_eq!(old.index, new.index, "the slab reuses the freed entry");

        assert!(!wheel.contains(old));
        assert_eq!(wheel.cancel(old), None);
        assert!(wheel.contains(new));
        assert_eq!(drain(&mut wheel, start + ms(10)), ["new"]);

        // The same after the timer fired rather than being cancelled.
        let reused = wheel.insert(start + ms(20), "reused");
        assert_eq!(reused.index, new.index);
        assert_eq!(wheel.cancel(new), None);
        assert!(wheel.contains(reused));
    }

    #[test]
    fn a_far_timer_waits_for_its_round() {
        let start = Instant::now();
        let mut wheel = small_wheel(start);
        // 10 turns of 16 slots, plus 3: slot 3, passed 10 times before it is due.
        let tick = 10 * 16 + 3;
        wheel.insert(start + ms(tick), "far");
        for now in 0..tick {
            assert!(wheel.poll_expired(start + ms(now)).is_none(), "fired early at {now} ms");
        }
        assert_eq!(drain(&mut wheel, start + ms(tick)), ["far"]);
    }

    #[test]
    fn a_timer_one_hour_ahead_fires_at_its_tick_only() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        let hour = 3_600_000;
        wheel.insert(start + ms(hour), "hour");
        wheel.insert(start + ms(5), "soon");
        assert_eq!(drain(&mut wheel, start + ms(5)), ["soon"]);
        assert_eq!(wheel.next_deadline(), Some(start + ms(hour)));

        // Poll at every earlier pass of its slot (878 of them, 4096 ms apart).
        let mut now = hour % 4096;
        while now < hour {
            assert!(wheel.poll_expired(start + ms(now)).is_none(), "fired at {now} ms");
            now += 4096;
        }
        assert!(wheel.poll_expired(start + ms(hour - 1)).is_none());
        assert_eq!(drain(&mut wheel, start + ms(hour)), ["hour"]);
    }

    #[test]
    fn ten_thousand_timers_on_one_tick() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        for i in 0..10_000 {
            wheel.insert(start + ms(42), i);
        }
        assert_eq!(wheel.len(), 10_000);
        assert!(wheel.poll_expired(start + ms(41)).is_none());
        let fired = drain(&mut wheel, start + ms(42));
        assert_eq!(fired, (0..10_000).collect::<Vec<_>>());
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn next_deadline_is_exact() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        assert_eq!(wheel.next_deadline(), None);

        let a = wheel.insert(start + ms(30), ());
        let b = wheel.insert(start + ms(20), ());
        wheel.insert(start + ms(40), ());
        assert_eq!(wheel.next_deadline(), Some(start + ms(20)));

        wheel.cancel(b);
        assert_eq!(wheel.next_deadline(), Some(start + ms(30)));
        wheel.insert(start + ms(25), ());
        assert_eq!(wheel.next_deadline(), Some(start + ms(25)));

        assert!(wheel.poll_expired(start + ms(25)).is_some());
        assert_eq!(wheel.next_deadline(), Some(start + ms(30)));
        wheel.cancel(a);
        assert_eq!(wheel.next_deadline(), Some(start + ms(40)));
        assert!(wheel.poll_expired(start + ms(40)).is_some());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn next_deadline_is_exact_when_every_timer_is_turns_away() {
        let start = Instant::now();
        let mut wheel = small_wheel(start);
        // Slot 3 holds tick 3 + 5 * 16 = 83; slot 9 holds tick 9 + 2 * 16 = 41.
        // Scanning from slot 1 meets slot 3 first, but slot 9 holds the earlier timer.
        wheel.insert(start + ms(83), ());
        let earliest = wheel.insert(start + ms(41), ());
        wheel.insert(start + ms(9 + 7 * 16), ());
        assert_eq!(wheel.next_deadline(), Some(start + ms(41)));
        wheel.cancel(earliest);
        assert_eq!(wheel.next_deadline(), Some(start + ms(83)));
    }

    #[test]
    fn next_deadline_of_a_due_but_unpopped_timer() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        wheel.insert(start + ms(5), 1);
        wheel.insert(start + ms(6), 2);
        wheel.insert(start + ms(50), 3);
        assert_eq!(wheel.poll_expired(start + ms(10)).map(|(_, v)| v), Some(1));
        // Timer 2 is due and waiting: the reactor must not sleep.
        assert_eq!(wheel.next_deadline(), Some(start + ms(6)));
    }

    #[test]
    fn a_long_jump_fires_everything_due_in_order() {
        let start = Instant::now();
        let mut wheel = small_wheel(start);
        // Ticks over five turns, inserted out of order; equal ticks keep insertion order.
        let ticks = [70, 3, 19, 35, 3, 64, 51, 80, 19, 2, 100, 67];
        for (i, &tick) in ticks.iter().enumerate() {
            wheel.insert(start + ms(tick), (tick, i));
        }
        let fired = drain(&mut wheel, start + ms(80));
        let mut expected: Vec<(u64, usize)> = ticks.iter().copied().zip(0..).filter(|&(tick, _)| tick <= 80).collect();
        expected.sort();
        assert_eq!(fired, expected);
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.next_deadline(), Some(start + ms(100)));
    }

    #[test]
    fn a_long_sleep_with_many_timers_fires_all_in_order() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        // 20 000 timers spread over ~1 minute (about 15 turns), in a scrambled order.
        let ticks: Vec<u64> = (0..20_000u64).map(|i| 1 + (i * 7919) % 60_000).collect();
        for (i, &tick) in ticks.iter().enumerate() {
            wheel.insert(start + ms(tick), (tick, i));
        }
        let fired = drain(&mut wheel, start + ms(3_600_000));
        let mut expected: Vec<(u64, usize)> = ticks.iter().copied().zip(0..).collect();
        expected.sort();
        assert_eq!(fired, expected);
    }

    #[test]
    fn a_past_deadline_inserted_during_expiry_waits_for_the_next_pass() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        wheel.insert(start + ms(10), "a");
        wheel.insert(start + ms(10), "b");
        let now = start + ms(10);

        assert_eq!(wheel.poll_expired(now).map(|(_, v)| v), Some("a"));
        // "a"'s callback re-arms itself in the past, and at exactly now.
        wheel.insert(start + ms(3), "a again");
        wheel.insert(now, "a at now");
        assert_eq!(drain(&mut wheel, now), ["b"]);
        assert_eq!(wheel.next_deadline(), Some(start + ms(11)));
        assert_eq!(drain(&mut wheel, start + ms(11)), ["a again", "a at now"]);
    }

    #[test]
    fn a_callback_that_always_rearms_in_the_past_cannot_loop_forever() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        wheel.insert(start + ms(1), ());
        let now = start + ms(5000);
        let mut fired = 0;
        while wheel.poll_expired(now).is_some() {
            fired += 1;
            wheel.insert(start, ()); // re-arm, in the past
        }
        assert_eq!(fired, 1);
        assert_eq!(wheel.len(), 1);
    }

    #[test]
    fn a_callback_can_cancel_a_timer_due_on_the_same_tick() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        wheel.insert(start + ms(10), "a");
        let b = wheel.insert(start + ms(10), "b");
        let now = start + ms(10);
        assert_eq!(wheel.poll_expired(now).map(|(_, v)| v), Some("a"));
        assert!(wheel.contains(b));
        assert_eq!(wheel.cancel(b), Some("b"));
        assert!(wheel.poll_expired(now).is_none());
    }

    #[test]
    fn a_clock_going_backwards_changes_nothing() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        wheel.insert(start + ms(20), 20);
        assert!(wheel.poll_expired(start + ms(10)).is_none());
        assert!(wheel.poll_expired(start + ms(5)).is_none());
        // The wheel has reached tick 10: a deadline at 7 ms goes to tick 11.
        wheel.insert(start + ms(7), 7);
        assert_eq!(wheel.next_deadline(), Some(start + ms(11)));
        assert_eq!(drain(&mut wheel, start + ms(20)), [7, 20]);
    }

    #[test]
    fn len_tracks_insert_cancel_and_fire() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        assert_eq!((wheel.len(), wheel.is_empty()), (0, true));
        let a = wheel.insert(start + ms(1), ());
        wheel.insert(start + ms(2), ());
        wheel.insert(start + ms(3), ());
        assert_eq!(wheel.len(), 3);
        wheel.cancel(a);
        wheel.cancel(a);
        assert_eq!(wheel.len(), 2);
        wheel.poll_expired(start + ms(3));
        // One popped, one due and still pending.
        assert_eq!(wheel.len(), 1);
        wheel.poll_expired(start + ms(3));
        assert_eq!((wheel.len(), wheel.is_empty()), (0, true));
    }

    #[test]
    fn works_with_one_slot_and_with_many_words_of_bitmap() {
        let start = Instant::now();
        for slots in [1, 2, 64, 128, 1024] {
            let mut wheel = TimerWheel::with_config(start, ms(1), slots);
            let ticks = [5, 1, 700, 64, 65, 3, 128, 1];
            for (i, &tick) in ticks.iter().enumerate() {
                wheel.insert(start + ms(tick), (tick, i));
            }
            let mut expected: Vec<(u64, usize)> = ticks.iter().copied().zip(0..).collect();
            expected.sort();
            let mut fired = Vec::new();
            for now in 0..=700 {
                if let Some(deadline) = wheel.next_deadline() {
                    assert!(deadline >= start + ms(now), "slots {slots}: deadline missed");
                }
                fired.extend(drain(&mut wheel, start + ms(now)));
            }
            assert_eq!(fired, expected, "slots {slots}");
        }
    }

    #[test]
    fn rearming_reuses_the_freed_node() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start);
        let mut handles: Vec<TimerHandle> = (0..1000).map(|i| wheel.insert(start + ms(1000 + i), i)).collect();
        for round in 0..100u64 {
            for (i, handle) in handles.iter_mut().enumerate() {
                assert_eq!(wheel.cancel(*handle), Some(i as u64));
                *handle = wheel.insert(start + ms(5000 + round * 7 + i as u64), i as u64);
            }
        }
        // 100 000 re-arms, and never more nodes than timers pending at once.
        assert_eq!((wheel.len(), wheel.nodes.len(), wheel.links.len()), (1000, 1000, 1000));
        assert_eq!(drain(&mut wheel, start + ms(10_000)).len(), 1000);
        assert_eq!((wheel.nodes.len(), wheel.links.len()), (1000, 1000));
    }

    #[test]
    fn a_rescheduled_timer_fires_at_its_new_deadline_only() {
        let start = Instant::now();
        let mut wheel = small_wheel(start);
        let idle = wheel.insert(start + ms(5), "idle");
        wheel.insert(start + ms(7), "other");
        // Later, past several turns of the 16-slot wheel, without moving the node.
        assert!(wheel.reschedule(idle, start + ms(50)));
        assert_eq!(wheel.next_deadline(), Some(start + ms(7)), "the old deadline is forgotten at once");
        assert_eq!(drain(&mut wheel, start + ms(49)), ["other"]);
        assert_eq!(wheel.next_deadline(), Some(start + ms(50)));
        assert_eq!(drain(&mut wheel, start + ms(50)), ["idle"]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn rescheduling_earlier_and_from_the_due_list_works_too() {
        let start = Instant::now();
        let mut wheel = small_wheel(start);
        let a = wheel.insert(start + ms(40), "a");
        let b = wheel.insert(start + ms(3), "b");
        assert!(wheel.reschedule(a, start + ms(2)));
        assert_eq!(wheel.next_deadline(), Some(start + ms(2)));
        // Due at 3 ms but not popped yet: still pending, so it can move.
        assert_eq!(wheel.poll_expired(start + ms(3)).map(|(_, v)| v), Some("a"));
        assert!(wheel.reschedule(b, start + ms(10)));
        assert_eq!(wheel.poll_expired(start + ms(3)), None);
        assert_eq!(drain(&mut wheel, start + ms(10)), ["b"]);
    }

    #[test]
    fn reschedule_keeps_the_handle_and_refuses_a_dead_one() {
        let start = Instant::now();
        let mut wheel = small_wheel(start);
        let handle = wheel.insert(start + ms(5), 7);
        assert!(wheel.reschedule(handle, start + ms(100)));
        assert!(wheel.contains(handle));
        assert_eq!(wheel.cancel(handle), Some(7));
        assert!(!wheel.reschedule(handle, start + ms(200)), "cancelled");
        let fired = wheel.insert(start + ms(1), 8);
        assert_eq!(drain(&mut wheel, start + ms(1)), [8]);
        assert!(!wheel.reschedule(fired, start + ms(200)), "fired");
        assert!(wheel.is_empty());
    }

    #[test]
    fn pushing_a_timer_later_again_and_again_moves_it_at_most_once_per_pass() {
        let start = Instant::now();
        let mut wheel = small_wheel(start);
        let idle = wheel.insert(start + ms(20), "idle");
        // An idle timeout pushed back on every "message", one per 100 µs, for 1 s.
        for step in 1..=10_000u64 {
            let now = start + us(100 * step);
            assert!(wheel.reschedule(idle, now + ms(20)));
            assert_eq!(drain(&mut wheel, now), Vec::<&str>::new());
        }
        assert_eq!(wheel.next_deadline(), Some(start + ms(1020)));
        assert_eq!(drain(&mut wheel, start + ms(1020)), ["idle"]);
    }

    #[test]
    fn a_handle_is_twelve_bytes() {
        assert_eq!(std::mem::size_of::<TimerHandle>(), 12);
    }

    #[test]
    #[should_panic(expected = "tick must not be zero")]
    fn a_zero_tick_is_a_programming_error() {
        TimerWheel::<()>::with_config(Instant::now(), Duration::ZERO, 16);
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn slots_not_a_power_of_two_is_a_programming_error() {
        TimerWheel::<()>::with_config(Instant::now(), ms(1), 1000);
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn zero_slots_is_a_programming_error() {
        TimerWheel::<()>::with_config(Instant::now(), ms(1), 0);
    }

    /// The wheel against the simplest model that could work: a list of
    /// (tick, insertion number, id) searched for its minimum on every step.
    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            /// A timer `offset_us` after the current fake time (negative: in the past).
            Insert { offset_us: i64 },
            /// Cancel one of the handles ever returned, live or not.
            Cancel { pick: usize },
            /// Move one of the handles ever returned to `offset_us` after the current fake time.
            Reschedule { pick: usize, offset_us: i64 },
            /// Move the fake clock forward, then pop everything due.
            AdvanceAndDrain { by_us: u64 },
            /// Pop at most one timer: leaves due timers waiting, like a busy loop.
            PollOne,
            /// Ask for the next deadline (which also settles slots on its way).
            NextDeadline,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (-5_000i64..5_000).prop_map(|offset_us| Op::Insert { offset_us }),
                3 => (0i64..700_000).prop_map(|offset_us| Op::Insert { offset_us }),
                3 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
                2 => (any::<usize>(), -5_000i64..5_000).prop_map(|(pick, offset_us)| Op::Reschedule { pick, offset_us }),
                2 => (any::<usize>(), 0i64..700_000).prop_map(|(pick, offset_us)| Op::Reschedule { pick, offset_us }),
                1 => (any::<usize>(), 0i64..20_000_000).prop_map(|(pick, offset_us)| Op::Reschedule { pick, offset_us }),
                3 => (0u64..3_000).prop_map(|by_us| Op::AdvanceAndDrain { by_us }),
                1 => (0u64..400_000).prop_map(|by_us| Op::AdvanceAndDrain { by_us }),
                // Past a whole turn of even the 4096-slot wheel.
                1 => (0u64..10_000_000).prop_map(|by_us| Op::AdvanceAndDrain { by_us }),
                2 => Just(Op::PollOne),
                2 => Just(Op::NextDeadline),
            ]
        }

        struct Model {
            tick_nanos: u64,
            current_tick: u64,
            /// (tick, insertion number, id)
            pending: Vec<(u64, u64, u32)>,
            inserted: u64,
        }

        impl Model {
            fn insert(&mut self, nanos_since_start: u64, id: u32) {
                let tick = nanos_since_start.div_ceil(self.tick_nanos).max(self.current_tick + 1);
                self.pending.push((tick, self.inserted, id));
                self.inserted += 1;
            }

            fn cancel(&mut self, id: u32) -> Option<u32> {
                let at = self.pending.iter().position(|&(_, _, i)| i == id)?;
                Some(self.pending.remove(at).2)
            }

            /// A moved timer keeps its insertion number: ties on one tick
            /// still come out in the order the timers were first inserted.
            fn reschedule(&mut self, id: u32, nanos_since_start: u64) -> bool {
                let tick = nanos_since_start.div_ceil(self.tick_nanos).max(self.current_tick + 1);
                match self.pending.iter_mut().find(|(_, _, i)| *i == id) {
                    Some(entry) => {
                        entry.0 = tick;
                        true
                    }
                    None => false,
                }
            }

            fn poll(&mut self, now_nanos: u64) -> Option<u32> {
                self.current_tick = self.current_tick.max(now_nanos / self.tick_nanos);
                let (at, _) = self
                    .pending
                    .iter()
                    .enumerate()
                    .filter(|(_, (tick, _, _))| *tick <= self.current_tick)
                    .min_by_key(|(_, (tick, seq, _))| (*tick, *seq))?;
                Some(self.pending.remove(at).2)
            }

            fn earliest_tick(&self) -> Option<u64> {
                self.pending.iter().map(|&(tick, _, _)| tick).min()
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn wheel_matches_model(
                slots in prop::sample::select(vec![1usize, 2, 8, 64, 128, 4096]),
                ops in prop::collection::vec(op(), 1..200),
            ) {
                let start = Instant::now();
                let tick = ms(1);
                let mut wheel = TimerWheel::with_config(start, tick, slots);
                let mut model = Model {
                    tick_nanos: 1_000_000,
                    current_tick: 0,
                    pending: Vec::new(),
                    inserted: 0,
                };
                let mut now_nanos: u64 = 0;
                let mut handles: Vec<(TimerHandle, u32)> = Vec::new();

                for op in ops {
                    match op {
                        Op::Insert { offset_us } => {
                            let deadline = now_nanos.saturating_add_signed(offset_us * 1_000);
                            let id = handles.len() as u32;
                            let handle = wheel.insert(start + Duration::from_nanos(deadline), id);
                            model.insert(deadline, id);
                            handles.push((handle, id));
                        }
                        Op::Cancel { pick } => {
                            if handles.is_empty() {
                                continue;
                            }
                            let (handle, id) = handles[pick % handles.len()];
                            prop_assert_eq!(wheel.cancel(handle), model.cancel(id));
                        }
                        Op::Reschedule { pick, offset_us } => {
                            if handles.is_empty() {
                                continue;
                            }
                            let (handle, id) = handles[pick % handles.len()];
                            let deadline = now_nanos.saturating_add_signed(offset_us * 1_000);
                            let moved = wheel.reschedule(handle, start + Duration::from_nanos(deadline));
                            prop_assert_eq!(moved, model.reschedule(id, deadline));
                        }
                        Op::AdvanceAndDrain { by_us } => {
                            now_nanos += by_us * 1_000;
                            let now = start + Duration::from_nanos(now_nanos);
                            loop {
                                let got = wheel.poll_expired(now).map(|(h, id)| {
                                    assert_eq!(handles[id as usize].0, h);
                                    id
                                });
                                prop_assert_eq!(got, model.poll(now_nanos));
                                if got.is_none() {
                                    break;
                                }
                            }
                        }
                        Op::PollOne => {
                            let now = start + Duration::from_nanos(now_nanos);
                            let got = wheel.poll_expired(now).map(|(_, id)| id);
                            prop_assert_eq!(got, model.poll(now_nanos));
                        }
                        Op::NextDeadline => {
                            let expected = model.earliest_tick().map(|t| start + Duration::from_millis(t));
                            prop_assert_eq!(wheel.next_deadline(), expected);
                        }
                    }

                    wheel.check_invariants();
                    prop_assert_eq!(wheel.len(), model.pending.len());
                    for &(handle, id) in &handles {
                        let pending = model.pending.iter().any(|&(_, _, i)| i == id);
                        prop_assert_eq!(wheel.contains(handle), pending);
                    }
                }
            }
        }
    }
}

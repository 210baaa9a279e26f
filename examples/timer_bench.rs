//! Timer wheel against a binary heap with lazy cancellation.
//!
//! What it measures: nanoseconds per operation for `barrage`'s `TimerWheel`, and
//! for the timer queue of Tornado 4's IOLoop rewritten in Rust. That queue is a
//! binary heap of (deadline, sequence, id). Cancelling only marks the timer dead
//! and leaves its entry in the heap, and popping skips dead entries. When more
//! than 512 entries, and more than half the heap, are dead, Tornado rebuilds the
//! heap without them ("compaction"). The heap is measured twice, with and
//! without compaction.
//!
//! The workload is timeouts of 1 s to 61 s (idle timeouts and heartbeats), at
//! random nanosecond instants. Each structure is measured in steady state, as a
//! long-running loop sees it: it has held N timers before, so its memory is
//! allocated and touched. The phases, in the order they run:
//!
//! - `cancel`: cancel all N, in random order.
//! - `insert`: add N timers to the now-empty structure.
//! - `re-arm`: with N pending, a message arrives for a random one, and its
//!   idle timeout moves to "now + its timeout". Each timer has its own timeout,
//!   drawn once in 60-120 s; "now" is a virtual clock that moves 10 µs per
//!   message. So, as with a real idle timeout, a deadline only ever moves
//!   later. The wheel moves the timer in place
//!   (`TimerWheel::reschedule`); the heap cannot move an entry, so it cancels
//!   and inserts (Tornado's `remove_timeout` + `call_at`). The row
//!   `re-arm c+i` shows the wheel doing the same cancel + insert. It runs max(N, 100 000) times,
//!   after as many untimed re-arms: a long-running loop has re-armed before,
//!   so the heap has compacted and reuses the entries compaction freed.
//! - `expire-step`: right after `re-arm`, let all N fire the way an epoll loop
//!   does. Sleep until `next_deadline` rounded up to the millisecond, pop
//!   everything due, repeat. The heap also pops the tombstones that re-arm left.
//!   Cost is per timer fired.
//! - `expire-jump`: N fresh timers fire after one long sleep: a single `now`
//!   after every deadline.
//!
//! It also reports the most entries each structure held during `re-arm`, live
//! timers plus tombstones. For the wheel that is just the pending timers.
//!
//! Each number is the median of 3 repetitions (`--reps`). Inputs come from a
//! fixed seed, so runs are comparable. The work is bound by cache misses, so
//! other load on the machine moves the numbers: compare columns within one run.
//! The default run takes about 45 s on 2 cores; `--reps 5` about 75 s.
//!
//! Run (release, or the numbers mean nothing):
//!
//! ```text
//! cargo run --release --example timer_bench
//! cargo run --release --example timer_bench -- --sizes 1000,100000 --reps 3
//! cargo run --release --example timer_bench -- --slots 65536   # a bigger wheel
//! ```

use barrage::rng::Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use barrage::reactor::timer::{TimerHandle, TimerWheel};
use slab::Slab;

/// What the benchmark needs from a timer structure. The value is a connection id.
trait Timers {
    type Handle: Copy;
    fn insert(&mut self, deadline: Instant, value: usize) -> Self::Handle;
    fn cancel(&mut self, handle: Self::Handle) -> Option<usize>;
    /// Moves a pending timer to a new deadline. A structure that cannot
    /// move an entry (the heap) cancels it and inserts it again.
    fn rearm(&mut self, handle: Self::Handle, deadline: Instant, value: usize) -> Self::Handle {
        self.cancel(handle);
        self.insert(deadline, value)
    }
    fn next_deadline(&mut self) -> Option<Instant>;
    fn pop_expired(&mut self, now: Instant) -> Option<usize>;
    /// Entries taking memory right now: live timers plus any tombstones.
    fn entries_held(&self) -> usize;
    /// Drops dead entries, so the next phase starts clean. The wheel has none.
    fn discard_tombstones(&mut self) {}
}

impl Timers for TimerWheel<usize> {
    type Handle = TimerHandle;
    fn insert(&mut self, deadline: Instant, value: usize) -> TimerHandle {
        TimerWheel::insert(self, deadline, value)
    }
    fn cancel(&mut self, handle: TimerHandle) -> Option<usize> {
        TimerWheel::cancel(self, handle)
    }
    fn rearm(&mut self, handle: TimerHandle, deadline: Instant, _value: usize) -> TimerHandle {
        self.reschedule(handle, deadline);
        handle
    }
    fn next_deadline(&mut self) -> Option<Instant> {
        TimerWheel::next_deadline(self)
    }
    fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        self.poll_expired(now).map(|(_, value)| value)
    }
    fn entries_held(&self) -> usize {
        self.len()
    }
}

/// The same wheel re-armed the way the heap must be: cancel, then insert.
/// It shows what `reschedule` saves.
struct WheelCancelInsert(TimerWheel<usize>);

impl Timers for WheelCancelInsert {
    type Handle = TimerHandle;
    fn insert(&mut self, deadline: Instant, value: usize) -> TimerHandle {
        self.0.insert(deadline, value)
    }
    fn cancel(&mut self, handle: TimerHandle) -> Option<usize> {
        self.0.cancel(handle)
    }
    fn next_deadline(&mut self) -> Option<Instant> {
        self.0.next_deadline()
    }
    fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        self.0.poll_expired(now).map(|(_, value)| value)
    }
    fn entries_held(&self) -> usize {
        self.0.len()
    }
}

/// Tornado 4's timer queue: a heap with lazy cancellation (see the top of the file).
struct LazyHeap {
    /// Min-heap of (deadline, sequence, id). The sequence keeps equal deadlines
    /// in insertion order, as Tornado's `tdeadline` tuple does.
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    /// Tornado's `_Timeout` objects. `value: None` marks a cancelled one. The
    /// object lives as long as its heap entry.
    timeouts: Slab<Timeout>,
    /// Dead entries still in the heap.
    cancellations: usize,
    /// Whether to compact like Tornado does.
    compact: bool,
    next_sequence: u64,
}

struct Timeout {
    sequence: u64,
    value: Option<usize>,
}

#[derive(Clone, Copy)]
struct HeapHandle {
    id: usize,
    sequence: u64,
}

impl LazyHeap {
    fn new(compact: bool) -> Self {
        LazyHeap { heap: BinaryHeap::new(), timeouts: Slab::new(), cancellations: 0, compact, next_sequence: 0 }
    }

    /// Drops dead entries from the top of the heap, as Tornado's loop does.
    fn skip_cancelled_on_top(&mut self) {
        while let Some(&Reverse((_, _, id))) = self.heap.peek() {
            if self.timeouts[id].value.is_some() {
                break;
            }
            self.heap.pop();
            self.timeouts.remove(id);
            self.cancellations -= 1;
        }
    }

    /// Tornado: `if cancellations > 512 and cancellations > len(timeouts) >> 1`,
    /// rebuild the heap from its live entries.
    fn maybe_compact(&mut self) {
        if self.compact && self.cancellations > 512 && self.cancellations > self.heap.len() / 2 {
            self.discard_tombstones();
        }
    }
}

impl Timers for LazyHeap {
    type Handle = HeapHandle;

    fn insert(&mut self, deadline: Instant, value: usize) -> HeapHandle {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let id = self.timeouts.insert(Timeout { sequence, value: Some(value) });
        self.heap.push(Reverse((deadline, sequence, id)));
        HeapHandle { id, sequence }
    }

    fn cancel(&mut self, handle: HeapHandle) -> Option<usize> {
        let timeout = self.timeouts.get_mut(handle.id)?;
        if timeout.sequence != handle.sequence {
            return None;
        }
        let value = timeout.value.take()?;
        self.cancellations += 1;
        // Tornado checks once per loop iteration. Checking after every cancel
        // is the same as one cancel per iteration, and keeps the heap smallest.
        self.maybe_compact();
        Some(value)
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_cancelled_on_top();
        self.heap.peek().map(|&Reverse((deadline, _, _))| deadline)
    }

    fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        self.skip_cancelled_on_top();
        let &Reverse((deadline, _, id)) = self.heap.peek()?;
        if deadline > now {
            return None;
        }
        self.heap.pop();
        self.timeouts.remove(id).value
    }

    fn entries_held(&self) -> usize {
        self.heap.len()
    }

    fn discard_tombstones(&mut self) {
        let timeouts = &mut self.timeouts;
        self.heap.retain(|&Reverse((_, _, id))| {
            let live = timeouts[id].value.is_some();
            if !live {
                timeouts.remove(id);
            }
            live
        });
        self.cancellations = 0;
    }
}

/// Everything random, drawn before timing starts.
struct Workload {
    start: Instant,
    /// N deadlines in [1 s, 61 s) after start.
    deadlines: Vec<Instant>,
    /// A random order of 0..N, for cancelling.
    cancel_order: Vec<usize>,
    /// For each re-arm: which timer, and its new deadline. The first half
    /// is the untimed warm-up, the second half is timed.
    rearms: Vec<(usize, Instant)>,
}

impl Workload {
    fn new(timers: usize, rearms: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let start = Instant::now();
        let timeout = |rng: &mut Rng, base: Duration| base + Duration::from_nanos(rng.below(60_000_000_000));
        let deadlines = (0..timers).map(|_| start + timeout(&mut rng, Duration::from_secs(1))).collect();
        let mut cancel_order: Vec<usize> = (0..timers).collect();
        for i in (1..timers).rev() {
            cancel_order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        // Each timer is one connection's idle timeout, with its own length.
        let idle_timeouts: Vec<Duration> = (0..timers).map(|_| timeout(&mut rng, Duration::from_secs(60))).collect();
        let rearms = (0..2 * rearms)
            .map(|k| {
                let now = start + Duration::from_micros(10 * k as u64);
                let which = rng.below(timers as u64) as usize;
                (which, now + idle_timeouts[which])
            })
            .collect();
        Workload { start, deadlines, cancel_order, rearms }
    }
}

/// Timings of one repetition, in ns per operation, plus the peak entries during re-arm.
struct Sample {
    insert: f64,
    cancel: f64,
    rearm: f64,
    expire_step: f64,
    expire_jump: f64,
    rearm_peak_entries: usize,
}

fn per_op(elapsed: Duration, ops: usize) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

fn fill<S: Timers>(timers: &mut S, work: &Workload) -> Vec<S::Handle> {
    let handles = work.deadlines.iter().enumerate();
    handles.map(|(i, &deadline)| timers.insert(deadline, i)).collect()
}

fn run_once<S: Timers>(make: impl Fn(Instant) -> S, work: &Workload) -> Sample {
    let n = work.deadlines.len();

    // Measure a structure in steady state, as a long-running loop has it: one
    // that has held N timers before, so its memory is allocated and touched.
    // (A fresh wheel's slot array is zeroed memory straight from the OS, and
    // its page faults would otherwise be charged to the first inserts.)
    let mut timers = make(work.start);
    let handles = fill(&mut timers, work);

    // cancel: all N, in random order
    let clock = Instant::now();
    for &i in &work.cancel_order {
        black_box(timers.cancel(handles[i]));
    }
    let cancel = per_op(clock.elapsed(), n);
    timers.discard_tombstones();

    // insert: N timers into the empty, warmed-up structure
    let clock = Instant::now();
    let mut handles = fill(&mut timers, work);
    let insert = per_op(clock.elapsed(), n);

    // re-arm: move a timer later (the heap: cancel + insert). First untimed, to reach the steady state
    // of a loop that has been re-arming for a while. Without this the heap
    // would be timed only from a fresh fill to its first compaction: every
    // insert would append to its Slab, where a long-running heap reuses the
    // (scattered) entries that its last compaction freed.
    let (warm_up, timed) = work.rearms.split_at(work.rearms.len() / 2);
    for &(which, deadline) in warm_up {
        handles[which] = timers.rearm(handles[which], deadline, which);
    }
    let mut peak = timers.entries_held();
    let clock = Instant::now();
    for &(which, deadline) in timed {
        handles[which] = black_box(timers.rearm(handles[which], deadline, which));
        peak = peak.max(timers.entries_held());
    }
    let rearm = per_op(clock.elapsed(), timed.len());

    // expire-step, on what re-arm left (for the heap: its tombstones too).
    // Sleep to the next deadline (epoll: whole milliseconds), pop what is due.
    let clock = Instant::now();
    let mut fired = 0;
    while let Some(deadline) = timers.next_deadline() {
        let wake = round_up_to_ms(work.start, deadline);
        while let Some(value) = timers.pop_expired(wake) {
            black_box(value);
            fired += 1;
        }
    }
    let expire_step = per_op(clock.elapsed(), n);
    assert_eq!(fired, n);
    drop(timers);

    // expire-jump: a new structure (the old one's clock is past every
    // deadline), filled untimed, then one `now` after every deadline.
    let mut timers = make(work.start);
    fill(&mut timers, work);
    let late = work.start + Duration::from_secs(62);
    let clock = Instant::now();
    let mut fired = 0;
    while let Some(value) = timers.pop_expired(late) {
        black_box(value);
        fired += 1;
    }
    let expire_jump = per_op(clock.elapsed(), n);
    assert_eq!(fired, n);

    Sample { insert, cancel, rearm, expire_step, expire_jump, rearm_peak_entries: peak }
}

fn round_up_to_ms(start: Instant, deadline: Instant) -> Instant {
    let nanos = deadline.duration_since(start).as_nanos() as u64;
    start + Duration::from_millis(nanos.div_ceil(1_000_000))
}

/// The median of each field over the repetitions.
fn median(samples: &[Sample]) -> Sample {
    fn mid(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    }
    let field = |get: fn(&Sample) -> f64| mid(samples.iter().map(get).collect());
    let mut peaks: Vec<usize> = samples.iter().map(|s| s.rearm_peak_entries).collect();
    peaks.sort();
    Sample {
        insert: field(|s| s.insert),
        cancel: field(|s| s.cancel),
        rearm: field(|s| s.rearm),
        expire_step: field(|s| s.expire_step),
        expire_jump: field(|s| s.expire_jump),
        rearm_peak_entries: peaks[peaks.len() / 2],
    }
}

struct Args {
    sizes: Vec<usize>,
    reps: usize,
    slots: usize,
}

fn parse_args() -> Args {
    let mut args = Args { sizes: vec![1_000, 100_000, 1_000_000], reps: 3, slots: 4096 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--sizes" => {
                args.sizes =
                    value.split(',').map(|s| s.trim().replace('_', "").parse().expect("--sizes: numbers")).collect();
            }
            "--reps" => args.reps = value.parse().expect("--reps: a number"),
            "--slots" => args.slots = value.parse().expect("--slots: a power of two"),
            _ => {
                eprintln!("usage: timer_bench [--sizes 1000,100000,1000000] [--reps 3] [--slots 4096]");
                std::process::exit(2);
            }
        }
    }
    assert!(args.reps > 0 && args.sizes.iter().all(|&n| n > 0));
    assert!(args.slots.is_power_of_two(), "--slots: a power of two");
    args
}

/// The table's rows: an operation's name, and where its number is in a [`Sample`].
type Op = (&'static str, fn(&Sample) -> f64);
const OPS: [Op; 5] = [
    ("insert", |s| s.insert),
    ("cancel", |s| s.cancel),
    ("re-arm", |s| s.rearm),
    ("expire-step", |s| s.expire_step),
    ("expire-jump", |s| s.expire_jump),
];

fn main() {
    let args = parse_args();
    println!(
        "timer_bench: median of {} reps, ns per op (lower is better), deadlines 1-61 s ahead (re-arm: now + the timer's own 60-120 s)",
        args.reps
    );
    println!("wheel: 1 ms ticks, {} slots", args.slots);
    println!("heap(Tornado): binary heap, lazy cancel, compaction; heap(no cmp): without compaction");
    println!("heap/wheel: heap(Tornado) time / wheel time, above 1 means the wheel is faster\n");
    println!(
        "{:>9}  {:<12} {:>9} {:>13} {:>13} {:>10}",
        "timers", "op", "wheel", "heap(Tornado)", "heap(no cmp)", "heap/wheel"
    );

    let mut peaks = Vec::new();
    for &n in &args.sizes {
        let rearms = n.max(100_000);
        let work = Workload::new(n, rearms, 0x5EED + n as u64);
        let mut wheel = Vec::new();
        let mut wheel_cancel_insert = Vec::new();
        let mut tornado = Vec::new();
        let mut uncompacted = Vec::new();
        for _ in 0..args.reps {
            let slots = args.slots;
            let new_wheel = |start| TimerWheel::with_config(start, Duration::from_millis(1), slots);
            wheel.push(run_once(new_wheel, &work));
            wheel_cancel_insert.push(run_once(|start| WheelCancelInsert(new_wheel(start)), &work));
            tornado.push(run_once(|_| LazyHeap::new(true), &work));
            uncompacted.push(run_once(|_| LazyHeap::new(false), &work));
        }
        let (w, t, u) = (median(&wheel), median(&tornado), median(&uncompacted));
        let row = |name: &str, wheel: f64, get: fn(&Sample) -> f64| {
            println!(
                "{:>9}  {:<12} {:>9.1} {:>13.1} {:>13.1} {:>9.2}x",
                n,
                name,
                wheel,
                get(&t),
                get(&u),
                get(&t) / wheel
            );
        };
        for (name, get) in OPS {
            row(name, get(&w), get);
        }
        row("re-arm c+i", median(&wheel_cancel_insert).rearm, |s| s.rearm);
        peaks.push((n, rearms, w.rearm_peak_entries, t.rearm_peak_entries, u.rearm_peak_entries));
    }

    println!("\npeak entries held during re-arm (live timers + tombstones)");
    println!("{:>9}  {:>9} {:>9} {:>13} {:>13}", "timers", "re-arms", "wheel", "heap(Tornado)", "heap(no cmp)");
    for (n, rearms, wheel, tornado, uncompacted) in peaks {
        println!("{n:>9}  {rearms:>9} {wheel:>9} {tornado:>13} {uncompacted:>13}");
    }
}

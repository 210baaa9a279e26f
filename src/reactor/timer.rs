//! TEMPORARY stand-in with the TimerWheel API; replaced by the hashed wheel.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerHandle(u64);

pub struct TimerWheel<T> {
    start: Instant,
    current: u64,
    seq: u64,
    by_key: BTreeMap<(u64, u64), T>,
    ticks: std::collections::HashMap<u64, u64>,
}

impl<T> TimerWheel<T> {
    pub fn new(start: Instant) -> Self {
        Self { start, current: 0, seq: 0, by_key: BTreeMap::new(), ticks: Default::default() }
    }
    fn tick_of_ceil(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.start);
        d.as_nanos().div_ceil(1_000_000) as u64
    }
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerHandle {
        let tick = self.tick_of_ceil(deadline).max(self.current + 1);
        self.seq += 1;
        self.by_key.insert((tick, self.seq), value);
        self.ticks.insert(self.seq, tick);
        TimerHandle(self.seq)
    }
    pub fn cancel(&mut self, h: TimerHandle) -> Option<T> {
        let tick = self.ticks.remove(&h.0)?;
        self.by_key.remove(&(tick, h.0))
    }
    pub fn contains(&self, h: TimerHandle) -> bool {
        self.ticks.contains_key(&h.0)
    }
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let (&(tick, _), _) = self.by_key.iter().next()?;
        Some(self.start + Duration::from_millis(tick))
    }
    pub fn poll_expired(&mut self, now: Instant) -> Option<(TimerHandle, T)> {
        let now_tick = now.saturating_duration_since(self.start).as_millis() as u64;
        let (&(tick, seq), _) = self.by_key.iter().next()?;
        if tick > now_tick {
            self.current = self.current.max(now_tick);
            return None;
        }
        self.current = self.current.max(tick);
        self.ticks.remove(&seq);
        let v = self.by_key.remove(&(tick, seq)).unwrap();
        Some((TimerHandle(seq), v))
    }
}

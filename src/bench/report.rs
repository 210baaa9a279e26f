//! One benchmark row: what an engine did and what it cost.
//!
//! Rates and costs are measured over a *window* that starts once every room
//! has joined, so connection set-up is reported apart (`join_secs`).
//! Engine-specific counters that an engine cannot see are `None` (the tokio
//! peer cannot count its runtime's syscalls from inside).

use serde::{Deserialize, Serialize};

use crate::reactor::{LatencyHistogram, Stats};

/// What an engine measured itself; [`BenchReport::from_measurements`]
/// derives the rest, the same way for every engine.
pub struct Measurements<'a> {
    pub engine: &'a str,
    pub rooms: u64,
    pub rooms_joined: u64,
    pub rate: f64,
    pub join_secs: f64,
    pub window_secs: f64,
    pub messages: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub cpu_secs: f64,
    pub rss_before_bytes: u64,
    pub rss_joined_bytes: u64,
    /// Timer lateness during the window.
    pub lateness: &'a LatencyHistogram,
    /// The loop's counters for the window, if the engine can see them.
    pub loop_stats: Option<&'a Stats>,
    /// `write` syscalls of the output's writer thread during the window,
    /// if the engine can see them.
    pub output_write_syscalls: Option<u64>,
    /// The engine's minimum time between two polls (zero: none).
    pub poll_interval: std::time::Duration,
    pub open_files_limit: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// "barrage" or "tokio".
    pub engine: String,
    /// How it reached the simulator: "tcp", or "wss" (WebSocket over TLS).
    #[serde(default = "tcp")]
    pub transport: String,
    pub rooms: u64,
    pub rooms_joined: u64,
    /// Messages per second per room the simulator was asked for.
    pub rate: f64,
    /// Seconds from the first connect until every room had joined.
    pub join_secs: f64,
    /// Length of the measured window, seconds.
    pub window_secs: f64,
    /// Numbered room messages written to the sink during the window.
    pub messages: u64,
    /// Numbers skipped / repeated within a connection (whole run).
    pub lost: u64,
    pub duplicated: u64,
    /// User + system CPU of the watching process during the window.
    pub cpu_secs: f64,
    pub cpu_percent: f64,
    pub cpu_us_per_message: Option<f64>,
    /// Resident memory before connecting and with every room joined.
    pub rss_before_bytes: u64,
    pub rss_joined_bytes: u64,
    pub rss_per_room_bytes: f64,
    /// The stop after the window (every room logs out and closes
    /// gracefully): how long until the last connection closed, the RSS
    /// when it began, and the most resident during it. `None` where the
    /// engine does not measure it.
    #[serde(default)]
    pub stop_secs: Option<f64>,
    #[serde(default)]
    pub rss_stop_start_bytes: Option<u64>,
    #[serde(default)]
    pub rss_stop_peak_bytes: Option<u64>,
    /// Timers (heartbeats, idle checks) that fired during the window, and
    /// how late: with too few, the percentiles mean little.
    #[serde(default)]
    pub timers_fired: u64,
    pub lateness_p50_ms: f64,
    pub lateness_p99_ms: f64,
    pub lateness_max_ms: f64,
    /// The minimum time between two polls the engine was run with
    /// (`--poll-interval`; 0: it polls whenever it is idle).
    #[serde(default)]
    pub poll_interval_ms: f64,
    /// Loop iterations and readiness events in the window.
    pub iterations: Option<u64>,
    pub events: Option<u64>,
    /// `poll` calls, and sleeps between polls inside the poll interval
    /// (iterations are one or the other, or neither when work is queued).
    #[serde(default)]
    pub polls: Option<u64>,
    #[serde(default)]
    pub interval_sleeps: Option<u64>,
    /// Reads and writes on sockets.
    pub read_syscalls: Option<u64>,
    pub write_syscalls: Option<u64>,
    /// Interest changes (`epoll_ctl`).
    #[serde(default)]
    pub reregisters: Option<u64>,
    /// Writes of the output's writer thread (to `--sink`).
    #[serde(default)]
    pub output_write_syscalls: Option<u64>,
    /// (polls + interval sleeps + socket reads + socket writes + interest
    /// changes + output writes) / messages. Not counted: the futex calls that hand each
    /// batch of output to the writer thread (a wake and a wait when the
    /// writer was idle; one batch per iteration that formatted lines).
    pub syscalls_per_message: Option<f64>,
    /// Loop wake-ups per second (the idle mode's number).
    pub wakeups_per_sec: Option<f64>,
    pub open_files_limit: u64,
}

fn tcp() -> String {
    "tcp".to_string()
}

/// Every syscall the watching process makes for its work, as far as it can
/// count them: the loop's waits (polls, and sleeps between polls), its
/// socket reads and writes, its interest changes (`epoll_ctl`), and the
/// output thread's writes.
fn syscalls(stats: &Stats, output_writes: u64) -> u64 {
    stats.polls + stats.interval_sleeps + stats.read_syscalls + stats.write_syscalls + stats.reregisters + output_writes
}

impl BenchReport {
    pub fn from_measurements(m: Measurements<'_>) -> BenchReport {
        let per_message = |value: f64| (m.messages > 0).then(|| value / m.messages as f64);
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let stats = m.loop_stats;
        BenchReport {
            engine: m.engine.to_string(),
            transport: tcp(),
            rooms: m.rooms,
            rooms_joined: m.rooms_joined,
            rate: m.rate,
            join_secs: m.join_secs,
            window_secs: m.window_secs,
            messages: m.messages,
            lost: m.lost,
            duplicated: m.duplicated,
            cpu_secs: m.cpu_secs,
            cpu_percent: m.cpu_secs / m.window_secs * 100.0,
            // CPU time comes in 10 ms ticks: none counted is "too little to measure".
            cpu_us_per_message: per_message(m.cpu_secs * 1e6).filter(|_| m.cpu_secs > 0.0),
            rss_before_bytes: m.rss_before_bytes,
            rss_joined_bytes: m.rss_joined_bytes,
            rss_per_room_bytes: m.rss_joined_bytes.saturating_sub(m.rss_before_bytes) as f64
                / m.rooms_joined.max(1) as f64,
            stop_secs: None,
            rss_stop_start_bytes: None,
            rss_stop_peak_bytes: None,
            timers_fired: m.lateness.count(),
            lateness_p50_ms: ms(m.lateness.quantile(0.5)),
            lateness_p99_ms: ms(m.lateness.quantile(0.99)),
            lateness_max_ms: ms(m.lateness.quantile(1.0)),
            poll_interval_ms: ms(m.poll_interval),
            iterations: stats.map(|s| s.iterations),
            events: stats.map(|s| s.events),
            polls: stats.map(|s| s.polls),
            interval_sleeps: stats.map(|s| s.interval_sleeps),
            read_syscalls: stats.map(|s| s.read_syscalls),
            write_syscalls: stats.map(|s| s.write_syscalls),
            reregisters: stats.map(|s| s.reregisters),
            output_write_syscalls: m.output_write_syscalls,
            syscalls_per_message: stats
                .zip(m.output_write_syscalls)
                .and_then(|(s, output)| per_message(syscalls(s, output) as f64)),
            // Each poll and each sleep between polls is one wait, and one wake-up.
            wakeups_per_sec: stats.map(|s| (s.polls + s.interval_sleeps) as f64 / m.window_secs),
            open_files_limit: m.open_files_limit,
        }
    }

    /// A fixed-width table row; `header()` names the columns.
    pub fn row(&self) -> String {
        let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        // No timer fired in the window: no lateness was measured (not 0 ms).
        let lateness = |ms: f64| opt(Some(ms).filter(|_| self.timers_fired > 0), 2);
        format!(
            "{:<8} {:>6} {:>6} {:>9} {:>5} {:>4} {:>7.2} {:>7.1} {:>9} {:>7.0} {:>7} {:>6} {:>6} {:>7} {:>7} {:>7} {:>6.1}",
            self.engine,
            self.rooms,
            self.rooms_joined,
            self.messages,
            self.lost,
            self.duplicated,
            self.cpu_secs,
            self.cpu_percent,
            opt(self.cpu_us_per_message, 2),
            self.rss_per_room_bytes,
            self.timers_fired,
            lateness(self.lateness_p50_ms),
            lateness(self.lateness_p99_ms),
            lateness(self.lateness_max_ms),
            opt(self.syscalls_per_message, 3),
            opt(self.wakeups_per_sec, 1),
            self.join_secs,
        )
    }

    pub fn header() -> &'static str {
        "engine    rooms joined  messages  lost  dup  cpu(s)   cpu%    µs/msg  B/room  timers  p50ms  p99ms  max ms sys/msg  wake/s join(s)"
    }
}

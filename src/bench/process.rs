//! What a process costs, read from `/proc` (Linux): CPU time and resident
//! memory — of this process or of a child — and its descriptor limit.
//!
//! Both engines of `barrage bench` (this crate's reactor and the tokio peer
//! in `examples/tokio_peer.rs`) measure themselves with this same code.

use std::io;

/// User + system CPU seconds of process `pid` ("self" for this one).
pub fn cpu_seconds(pid: &str) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields after its
    // closing parenthesis are plain. utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| bad("stat"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).ok_or_else(|| bad("stat"));
    // After the name, field 3 (state) is index 0, so field 14 is index 11.
    Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second())
}

/// Resident set size of process `pid`, in bytes.
pub fn rss_bytes(pid: &str) -> io::Result<u64> {
    status_bytes(pid, "VmRSS:")
}

/// The most this process has had resident (`VmHWM`) since it started or
/// since the last [`reset_peak_rss`], in bytes.
pub fn peak_rss_bytes() -> io::Result<u64> {
    status_bytes("self", "VmHWM:")
}

/// Starts the peak over from the current RSS, so that [`peak_rss_bytes`]
/// covers what comes next: a stop's spike, not the joins' (Linux 4.0 on).
pub fn reset_peak_rss() -> io::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
}

/// A `/proc/{pid}/status` field given in kB, in bytes.
fn status_bytes(pid: &str, field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(field)).ok_or_else(|| bad("status"))?;
    let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or_else(|| bad("status"))?;
    Ok(kib * 1024)
}

/// USER_HZ: 100 on every Linux configuration that matters (the kernel ABI
/// fixes it for /proc, whatever the internal tick rate).
fn clock_ticks_per_second() -> f64 {
    100.0
}

/// Raises the open-files soft limit to the hard limit (thousands of rooms
/// need thousands of sockets). Returns the new limit.
pub fn raise_open_files_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

fn bad(file: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unexpected /proc/…/{file} format"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let before = cpu_seconds("self").unwrap();
        // Burn a little CPU so the counter can move (it has 10 ms steps).
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds("self").unwrap() >= before);
        let rss = rss_bytes("self").unwrap();
        assert!(rss > 1 << 20 && rss < 1 << 40, "rss {rss}");
        // The peak remembers 64 MiB touched and given back; a reset forgets
        // them. The kernel sums its per-CPU counts for the peak only
        // roughly: hence the slack.
        let block = std::hint::black_box(vec![1u8; 64 << 20]);
        let holding = rss_bytes("self").unwrap();
        drop(block);
        let slack = 8 << 20;
        let peak = peak_rss_bytes().unwrap();
        assert!(peak + slack >= holding, "peak {peak}, {holding} while holding the block");
        reset_peak_rss().unwrap();
        let peak = peak_rss_bytes().unwrap();
        assert!(peak + (32 << 20) < holding, "peak {peak} after the reset, {holding} while holding the block");
        assert!(raise_open_files_limit().unwrap() >= 1024);
    }
}

//! The log, as each test's thread wrote it: a logger for a test binary
//! whose monitor (and simulator) run on the test's own thread, so that
//! their records land in that test's list, apart from the other tests'.
//! Helper threads (the DNS and output threads) are not captured.

use std::cell::RefCell;
use std::time::Instant;

thread_local! {
    static RECORDS: RefCell<Vec<(Instant, String)>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Debug && metadata.target().starts_with("barrage")
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            RECORDS.with(|records| records.borrow_mut().push((Instant::now(), line)));
        }
    }

    fn flush(&self) {}
}

/// Starts capturing (once per process).
pub fn start() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// This thread's records that contain `text`, with when they were logged.
pub fn matching(text: &str) -> Vec<(Instant, String)> {
    RECORDS.with(|records| records.borrow().iter().filter(|(_, line)| line.contains(text)).cloned().collect())
}

/// This thread's records, for a failure message.
pub fn all() -> String {
    RECORDS.with(|records| records.borrow().iter().map(|(_, line)| format!("{line}\n")).collect())
}

//! `barrage bench`: measure the watch engine against `barrage serve`.
//!
//! - [`process`]: CPU and memory from `/proc`, the descriptor limit;
//! - [`report`]: one row of results, shared with the tokio peer;
//! - [`run`]: the simulator child process and the measured window.

pub mod process;
pub mod report;
pub mod run;

pub use report::BenchReport;

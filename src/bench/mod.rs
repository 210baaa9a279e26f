//! `barrage bench`: measure the watch engine against `barrage serve`.
//!
//! - [`process`]: CPU and memory from `/proc`, the descriptor limit;
//! - [`report`]: one row of results, shared with the tokio peer.

pub mod process;
pub mod report;

pub use report::BenchReport;

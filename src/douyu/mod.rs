//! The Douyu barrage protocol, sans-IO (work in progress).

pub mod stt;

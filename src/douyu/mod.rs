//! The Douyu barrage protocol, sans-IO (work in progress).

pub mod frame;
pub mod message;
pub mod stt;

//! reactor

/// Hashed timer wheel: O(1) insert/cancel, and the next deadline that becomes the poll timeout.
pub mod timer;

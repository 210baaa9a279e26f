//! placeholder
#![forbid(unsafe_code)]
pub mod reactor;
pub mod douyu;

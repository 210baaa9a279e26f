//! placeholder
#![forbid(unsafe_code)]
pub mod douyu;
pub mod reactor;

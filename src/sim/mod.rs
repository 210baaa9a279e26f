//! A simulated Douyu barrage server (in progress): first, its room traffic.
//!
//! | module | concept |
//! |---|---|
//! | [`rng`] | SplitMix64, the seeded generator behind everything random |
//! | [`traffic`] | one room's message stream: realistic bodies, numbered |
//! | [`vocabulary`] | the nicknames, chat lines and gifts the rooms use |

pub mod rng;
pub mod traffic;
pub mod vocabulary;

//! `--shard K/N`: split one room list between N copies of the daemon.
//!
//! When one machine is not enough, run N copies with the same config, each
//! with its own K (a systemd template unit `barrage@K.service`, or the
//! ordinal of a Kubernetes StatefulSet pod). A room belongs to shard
//! `fnv1a64(decimal room id) % N`. The hash is stable across versions,
//! machines and languages (FNV-1a over the id's ASCII digits), so another
//! tool can compute the same split, and adding rooms never moves others.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This copy's index, 0-based.
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Every room: one shard of one.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn contains(&self, room: u64) -> bool {
        fnv1a64(room.to_string().as_bytes()) % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `K/N` with 0 ≤ K < N.
    fn from_str(text: &str) -> Result<Shard, String> {
        let usage = || format!("expected K/N with 0 <= K < N, e.g. 0/4, not {text:?}");
        let (k, n) = text.split_once('/').ok_or_else(usage)?;
        let (index, count): (u64, u64) =
            (k.trim().parse().map_err(|_| usage())?, n.trim().parse().map_err(|_| usage())?);
        if count == 0 || index >= count {
            return Err(usage());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// FNV-1a, 64-bit: tiny, well known, and stable.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_the_published_fnv1a_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn every_room_is_in_exactly_one_shard_and_the_split_is_even() {
        let count = 4;
        let mut sizes = [0u32; 4];
        for room in 1..=10_000u64 {
            let owners: Vec<u64> = (0..count).filter(|&k| Shard { index: k, count }.contains(room)).collect();
            assert_eq!(owners.len(), 1, "room {room} in shards {owners:?}");
            sizes[owners[0] as usize] += 1;
        }
        assert!(sizes.iter().all(|&n| (2_300..=2_700).contains(&n)), "uneven split {sizes:?}");
        assert!((1..=100).all(|room| Shard::ALL.contains(room)));
    }

    #[test]
    fn parses_k_of_n_and_rejects_nonsense() {
        assert_eq!("1/4".parse(), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "0/0", "1", "a/b", "-1/4", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} accepted");
        }
    }
}

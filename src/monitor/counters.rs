//! What the monitor counts per message, cheaply: messages by type (for
//! the metrics) and, with `check_sequence`, gaps and repeats in each room's
//! numbered messages. Both take server-chosen input, so both are bounded:
//! at most `MAX_TYPES` names, and a gap count that saturates.

use std::collections::HashMap;

/// Distinct message types counted by name (see `TypeCounts`).
const MAX_TYPES: usize = 256;

/// Messages counted by type. Types come from the server, so at most
/// `MAX_TYPES` distinct ones are counted by name (each becomes a metrics
/// series), the rest as "other". A handful of types make nearly all
/// traffic and arrive in runs, so the type counted last is tried first,
/// then the short list in order: no hashing per message.
#[derive(Clone, Debug, Default)]
pub(super) struct TypeCounts {
    counts: Vec<(Box<str>, u64)>,
    /// Where the type counted last is in `counts`.
    last: usize,
}

impl TypeCounts {
    pub(super) fn count(&mut self, kind: &str) {
        if let Some((name, count)) = self.counts.get_mut(self.last)
            && **name == *kind
        {
            *count += 1;
            return;
        }
        let kind = if self.counts.len() < MAX_TYPES || self.counts.iter().any(|(name, _)| **name == *kind) {
            kind
        } else {
            "other"
        };
        match self.counts.iter().position(|(name, _)| **name == *kind) {
            Some(index) => {
                self.counts[index].1 += 1;
                self.last = index;
            }
            None => {
                self.last = self.counts.len();
                self.counts.push((kind.into(), 1));
            }
        }
    }

    pub(super) fn to_map(&self) -> HashMap<String, u64> {
        self.counts.iter().map(|(name, count)| (name.to_string(), *count)).collect()
    }
}

/// Numbered messages seen by one room, checked for gaps and repeats within
/// each connection (a reconnect starts wherever the stream is by then).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SequenceCheck {
    /// Numbered messages received.
    pub received: u64,
    /// Numbers skipped inside a connection: messages lost.
    pub missing: u64,
    /// Numbers seen again (or going backwards) inside a connection.
    pub duplicated: u64,
    /// The first and last number received.
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// The last number on the current connection.
    current: Option<u64>,
}

impl SequenceCheck {
    pub(super) fn record(&mut self, number: u64) {
        self.received += 1;
        self.first.get_or_insert(number);
        match self.current {
            Some(previous) if number <= previous => self.duplicated += 1,
            // The numbers are the server's: two jumps near u64::MAX (on two
            // connections) would overflow a plain sum.
            Some(previous) => self.missing = self.missing.saturating_add(number - previous - 1),
            None => {}
        }
        if self.current.is_none_or(|previous| number > previous) {
            self.current = Some(number);
            self.last = Some(number);
        }
    }

    pub(super) fn connection_ended(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_counted_by_name_up_to_a_limit_then_as_other() {
        let mut types = TypeCounts::default();
        for kind in ["chatmsg", "chatmsg", "uenter", "chatmsg", "dgb", "uenter"] {
            types.count(kind);
        }
        let counts = types.to_map();
        assert_eq!((counts["chatmsg"], counts["uenter"], counts["dgb"]), (3, 2, 1));
        for n in 0..MAX_TYPES + 10 {
            types.count(&format!("new{n}"));
        }
        types.count("chatmsg");
        let counts = types.to_map();
        assert_eq!(counts.len(), MAX_TYPES + 1, "the first {MAX_TYPES} types and other");
        assert_eq!(counts["other"], 13, "the types that did not fit");
        assert_eq!(counts["chatmsg"], 4, "a type counted before still counts by name");
    }

    #[test]
    fn sequence_check_counts_gaps_and_repeats_per_connection() {
        let mut check = SequenceCheck::default();
        for n in [1, 2, 3, 5, 5, 4, 6] {
            check.record(n);
        }
        assert_eq!((check.received, check.missing, check.duplicated), (7, 1, 2));
        // A new connection picks the stream up later: not a loss by us.
        check.connection_ended();
        check.record(40);
        check.record(41);
        assert_eq!((check.missing, check.first, check.last), (1, Some(1), Some(41)));
    }

    #[test]
    fn sequence_check_survives_server_chosen_jumps_of_any_size() {
        let mut check = SequenceCheck::default();
        // Two connections, each jumping from the bottom to the top.
        for _ in 0..2 {
            check.record(1);
            check.record(u64::MAX);
            check.connection_ended();
        }
        assert_eq!(check.missing, u64::MAX, "saturated, not wrapped (or a panic)");
        assert_eq!((check.received, check.first, check.last), (4, Some(1), Some(u64::MAX)));
    }
}

//! Counts in words, for every line barrage writes for a person: "1 room",
//! "2 rooms", "3 addresses" — never "1 messages".

use std::borrow::Cow;

/// `count` and `noun`, the noun in the plural unless the count is 1:
/// "1 message", "0 messages", "2 addresses".
pub(crate) fn plural(count: u64, noun: &str) -> String {
    format!("{count} {}", noun_for(count, noun))
}

/// `noun` as it reads after `count`, for a count laid out on its own
/// (aligned in a column): "message" after 1, else "messages"; a noun
/// ending in s takes "es" ("addresses").
pub(crate) fn noun_for(count: u64, noun: &str) -> Cow<'_, str> {
    match (count, noun.ends_with('s')) {
        (1, _) => Cow::Borrowed(noun),
        (_, true) => Cow::Owned(format!("{noun}es")),
        (_, false) => Cow::Owned(format!("{noun}s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(plural(1, "message"), "1 message");
        assert_eq!(plural(0, "message"), "0 messages");
        assert_eq!(plural(2, "room"), "2 rooms");
        assert_eq!(plural(1, "address"), "1 address");
        assert_eq!(plural(3, "address"), "3 addresses");
        assert_eq!(plural(21, "numbered message"), "21 numbered messages");
        assert_eq!(noun_for(1, "message"), "message");
        assert_eq!(noun_for(12, "message"), "messages");
    }
}

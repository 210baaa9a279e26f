//! STT, the text serialization inside every Douyu packet body.
//!
//! # The format
//!
//! - A **map** is `key@=value/` repeated: `type@=chatmsg/rid@=9999/txt@=hi/`.
//! - A **list** is `item/` repeated: `6065/4144/`.
//! - Inside a key, value or item, `@` is written `@A` and then `/` is written
//!   `@S` (in that order). So the raw text of an encoded map never holds a `/`
//!   except as a terminator, and never holds `@=` except as a separator.
//! - **Nesting**: a value that is itself a map or list is encoded first and
//!   then escaped once more as an ordinary value. Each level of nesting adds
//!   one level of escaping (`@=` → `@A=` → `@AA=`, `/` → `@S` → `@AS`).
//!
//! # One level at a time
//!
//! Nothing in a value says "I am a map": `@Alice` and
//! `https://a.b/c` look like escaped text too. So this module never guesses.
//! [`decode_map`] and [`decode_list`] undo exactly one level of escaping,
//! and a caller who *knows* that a field is nested (`el`, `list`, `ri`, …)
//! calls them again on that field's value:
//!
//! ```
//! use barrage::douyu::stt;
//! let msg = stt::decode_map("type@=x/ail@=6065@S4144@S/");
//! let ail = stt::decode_list(msg.get("ail").unwrap());
//! assert_eq!(ail.iter().collect::<Vec<_>>(), ["6065", "4144"]);
//! ```
//!
//! # Tolerance
//!
//! Real servers are sloppy, so decoding never fails:
//! - a missing final `/` is fine (the trailing text is the last item);
//! - a map item without `@=` becomes a key with an empty value, and an
//!   empty map item (`//`) is skipped; in a list an empty item is an empty
//!   string (that is how `encode_list([""])` comes back);
//! - keys are kept in their case (`hintInfo`) and in wire order; a key may
//!   repeat, and [`Map::get`] returns the **last** one;
//! - a dangling `@` (at the end, or before anything other than `A`, `S`,
//!   or the `=` of a map separator) is kept literally. Failing would throw away a
//!   whole chat line for one odd character, and no correct encoder produces
//!   it, so there is no "right" meaning to lose.
//!
//! # Memory layout (why decoding is fast)
//!
//! The daemon decodes every message of thousands of rooms, so the work per
//! message matters. Decoding a body allocates exactly twice:
//!
//! - one `String`, `text`, which starts as a plain copy of the body (a single
//!   `memcpy`). Most keys and values contain no escape, so they already *are*
//!   their decoded selves inside that copy. The few that do (an avatar path,
//!   a nested list) are unescaped once more onto the end of `text`. Decoded
//!   text is never longer than escaped text, so reserving twice the body
//!   length up front means `text` never grows.
//! - one `Vec` of spans saying where each key and value lies in `text`.
//!
//! Lookups return `&str` slices of `text`. Nothing is allocated per field.
//!
//! ```text
//! body:  type@=uenter/ic@=a@Sb/
//! text:  type@=uenter/ic@=a@Sb/a/b
//!        ^^^^  ^^^^^^  ^^      ^^^
//!        key   value   key     value (unescaped copy)
//! ```

use std::ops::Range;

/// Appends `text` to `out` with one level of STT escaping (`@`→`@A`, `/`→`@S`).
pub fn escape_into(out: &mut String, text: &str) {
    let mut run_start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let replacement = match byte {
            b'@' => "@A",
            b'/' => "@S",
            _ => continue,
        };
        out.push_str(&text[run_start..i]);
        out.push_str(replacement);
        run_start = i + 1;
    }
    out.push_str(&text[run_start..]);
}

/// Returns `text` with one level of STT escaping added.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// Appends `text` to `out` with one level of escaping removed
/// (`@A`→`@`, `@S`→`/`).
///
/// One left-to-right scan, so `@AS` becomes `@S` and not `/`. Any other `@`
/// (dangling at the end, or before another character) is kept as it is.
pub fn unescape_into(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        match rest.as_bytes().get(at + 1) {
            Some(b'A') => out.push('@'),
            Some(b'S') => out.push('/'),
            _ => {
                out.push('@');
                rest = &rest[at + 1..];
                continue;
            }
        }
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
}

/// Returns `text` with one level of escaping removed (see [`unescape_into`]).
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    unescape_into(&mut out, text);
    out
}

/// Appends one escaped `key@=value/` field to `out`.
///
/// This is the whole "writer": build a map by calling it once per field.
/// To nest, encode the inner map or list to a `String` first and pass that
/// as `value`: it gets escaped once more, which is exactly the nesting rule.
pub fn push_field(out: &mut String, key: &str, value: &str) {
    escape_into(out, key);
    out.push_str("@=");
    escape_into(out, value);
    out.push('/');
}

/// Appends one escaped `item/` to `out` (a list element).
pub fn push_item(out: &mut String, item: &str) {
    escape_into(out, item);
    out.push('/');
}

/// Encodes `(key, value)` pairs as an STT map, in the given order.
pub fn encode_map<K, V>(fields: impl IntoIterator<Item = (K, V)>) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut out = String::new();
    for (key, value) in fields {
        push_field(&mut out, key.as_ref(), value.as_ref());
    }
    out
}

/// Encodes items as an STT list, in the given order.
pub fn encode_list<T: AsRef<str>>(items: impl IntoIterator<Item = T>) -> String {
    let mut out = String::new();
    for item in items {
        push_item(&mut out, item.as_ref());
    }
    out
}

/// A piece of a decoded map's or list's `text`: `text[start..end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn of(self, text: &str) -> &str {
        &text[self.start..self.end]
    }
}

/// A decoded STT map: keys and values unescaped one level, in wire order,
/// repeated keys kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Map {
    /// A copy of the encoded input, then unescaped copies of the fields that
    /// needed it (see the module docs).
    text: String,
    /// `(key, value)` spans in `text`, one per field, in wire order.
    fields: Vec<(Span, Span)>,
}

impl Map {
    /// The value of the **last** field named `key` (exact, case-sensitive match).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.last_index_of(key).map(|index| self.value_at(index))
    }

    /// The position of the last field named `key`, for callers that look
    /// the same key up again and again (a message's `type`).
    pub(crate) fn last_index_of(&self, key: &str) -> Option<usize> {
        let text = self.text.as_bytes();
        self.fields.iter().rposition(|(k, _)| &text[k.start..k.end] == key.as_bytes())
    }

    /// The value of the field at `index` (from `last_index_of`).
    pub(crate) fn value_at(&self, index: usize) -> &str {
        self.fields[index].1.of(&self.text)
    }

    /// Decodes the value of `key` as a nested map (see the module docs).
    pub fn get_map(&self, key: &str) -> Option<Map> {
        self.get(key).map(decode_map)
    }

    /// Decodes the value of `key` as a nested list (see the module docs).
    pub fn get_list(&self, key: &str) -> Option<List> {
        self.get(key).map(decode_list)
    }

    /// All `(key, value)` fields in wire order, repeated keys included.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.fields.iter().map(|(key, value)| (key.of(&self.text), value.of(&self.text)))
    }

    /// Number of fields (repeated keys counted each time).
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the map has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Encodes the map back to STT (escaping one level again).
    pub fn to_stt(&self) -> String {
        encode_map(self.iter())
    }
}

/// A decoded STT list: items unescaped one level, in wire order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct List {
    /// Same layout as [`Map`]'s text.
    text: String,
    /// One span per item, in wire order.
    items: Vec<Span>,
}

impl List {
    /// The item at `index`.
    pub fn get(&self, index: usize) -> Option<&str> {
        Some(self.items.get(index)?.of(&self.text))
    }

    /// All items in wire order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.items.iter().map(|item| item.of(&self.text))
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the list has no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Encodes the list back to STT (escaping one level again).
    pub fn to_stt(&self) -> String {
        encode_list(self.iter())
    }
}

/// Decodes one level of an STT map. Never fails; see the module docs for
/// what is tolerated.
pub fn decode_map(input: &str) -> Map {
    let mut map = Map { text: copy_with_room(input), fields: Vec::with_capacity(expected_items(input)) };
    for item in Scanner::new(input, Items::Map) {
        let (key, value) = match item.separator {
            Some(at) => (item.start..at, at + 2..item.end),
            // `//`: nothing at all, skip it.
            None if item.start == item.end => continue,
            // `word/` in a map: keep the word as a key with an empty value.
            None => (item.start..item.end, item.end..item.end),
        };
        let key = decoded(&mut map.text, input, key, item.key_escaped);
        let value = decoded(&mut map.text, input, value, item.value_escaped);
        map.fields.push((key, value));
    }
    map
}

/// Decodes one level of an STT list. Never fails; see the module docs for
/// what is tolerated.
pub fn decode_list(input: &str) -> List {
    let mut list = List { text: copy_with_room(input), items: Vec::with_capacity(expected_items(input)) };
    for item in Scanner::new(input, Items::List) {
        let range = item.start..item.end;
        let span = decoded(&mut list.text, input, range, item.value_escaped);
        list.items.push(span);
    }
    list
}

/// `input` copied into a `String` with as much room again for unescaped
/// copies, so that the string never reallocates.
fn copy_with_room(input: &str) -> String {
    let mut text = String::with_capacity(input.len() * 2);
    text.push_str(input);
    text
}

/// Where the decoded form of `input[range]` lies in `text`. Plain text is
/// already in `text` (whose first part is a copy of `input`); escaped text
/// is unescaped onto the end of `text`.
fn decoded(text: &mut String, input: &str, range: Range<usize>, escaped: bool) -> Span {
    if !escaped {
        return Span { start: range.start, end: range.end };
    }
    let start = text.len();
    unescape_into(text, &input[range]);
    Span { start, end: text.len() }
}

/// How many spans to reserve: a guess from the length (real traffic has a
/// field every 12 bytes or so), capped so that a huge body does not reserve
/// a huge vector. A wrong guess costs only a reallocation; counting the
/// `/`s exactly would cost a pass over the body every time.
fn expected_items(input: &str) -> usize {
    (input.len() / 12 + 2).min(1024)
}

/// What the scanner is cutting: map items split at their first `@=`, list
/// items do not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Items {
    Map,
    List,
}

/// One item found by [`Scanner`], as byte positions in the input.
struct ScannedItem {
    start: usize,
    /// Position of the `@=` between key and value, if there is one.
    separator: Option<usize>,
    /// Position of the `/` (or the end of the input).
    end: usize,
    /// A map key (the text before the separator, or the whole item if
    /// there is none) holds an `@` to unescape.
    key_escaped: bool,
    /// A map value, or a list item, holds an `@` to unescape.
    value_escaped: bool,
}

impl ScannedItem {
    fn starting_at(start: usize) -> Self {
        ScannedItem { start, separator: None, end: start, key_escaped: false, value_escaped: false }
    }
}

/// The single pass behind [`decode_map`] and [`decode_list`]: an iterator
/// over the items of `input`, each with its separator and whether its parts
/// need unescaping. It only looks at `/` and `@`; both are ASCII, so every
/// position it reports is a character boundary.
struct Scanner<'a> {
    bytes: &'a [u8],
    items: Items,
    /// First byte not yet looked at.
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(input: &'a str, items: Items) -> Self {
        Scanner { bytes: input.as_bytes(), items, pos: 0 }
    }
}

impl Iterator for Scanner<'_> {
    type Item = ScannedItem;

    fn next(&mut self) -> Option<ScannedItem> {
        let bytes = self.bytes;
        if self.pos >= bytes.len() {
            return None;
        }
        let mut item = ScannedItem::starting_at(self.pos);
        while let Some(offset) = bytes[self.pos..].iter().position(|&b| b == b'/' || b == b'@') {
            let special = self.pos + offset;
            self.pos = special + 1;
            let in_key = self.items == Items::Map && item.separator.is_none();
            if bytes[special] == b'/' {
                item.end = special;
                return Some(item);
            } else if in_key && bytes.get(self.pos) == Some(&b'=') {
                item.separator = Some(special);
                self.pos += 1;
            } else if in_key {
                // `@A`, `@S`, or an odd `@` that `unescape_into` will keep.
                item.key_escaped = true;
            } else {
                item.value_escaped = true;
            }
        }
        // No `/` left: the rest is a final item whose `/` went missing.
        self.pos = bytes.len();
        item.end = bytes.len();
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(map: &Map) -> Vec<(&str, &str)> {
        map.iter().collect()
    }

    #[test]
    fn escape_order_is_at_then_slash() {
        assert_eq!(escape("a@b/c@S"), "a@Ab@Sc@AS");
        assert_eq!(unescape("a@Ab@Sc@AS"), "a@b/c@S");
    }

    #[test]
    fn literal_at_s_survives() {
        assert_eq!(unescape("@AS"), "@S");
        assert_eq!(decode_map("k@=@AS/").get("k"), Some("@S"));
        assert_eq!(decode_list("@AS/").get(0), Some("@S"));
    }

    #[test]
    fn dangling_and_unknown_escapes_are_kept() {
        assert_eq!(unescape("a@"), "a@");
        assert_eq!(unescape("@x@@A"), "@x@@");
        assert_eq!(decode_map("k@=mail@x/j@=a@/").get("k"), Some("mail@x"));
        assert_eq!(pairs(&decode_map("k@=a@")), [("k", "a@")]);
        assert_eq!(pairs(&decode_map("k@=a@/")), [("k", "a@")]);
        // A second `@=` in one item stays in the value.
        assert_eq!(pairs(&decode_map("k@=a@=b/")), [("k", "a@=b")]);
        // `@=` means nothing special in a list.
        assert_eq!(decode_list("a@=b/").get(0), Some("a@=b"));
        assert_eq!(decode_list("é@é/").get(0), Some("é@é"));
    }

    #[test]
    fn user_text_is_not_damaged() {
        // On the wire, `@Alice` is `@AAlice`; one level of decoding gives it
        // back. Decoding again (guessing it was nested) would damage it.
        let body = "txt@=@AAlice see https:@S@Sa.b@Sc?d=1/";
        let txt = decode_map(body).get("txt").unwrap().to_string();
        assert_eq!(txt, "@Alice see https://a.b/c?d=1");
        assert_eq!(encode_map([("txt", txt.as_str())]), body);
        assert_eq!(unescape(&txt), "@lice see https://a.b/c?d=1");
    }

    #[test]
    fn tolerates_sloppy_maps() {
        // Missing final `/`, repeated keys (last wins), any case, empty values, empty items.
        let map = decode_map("rid@=1/hintInfo@=x//rid@=2/e@=/type@=rri");
        assert_eq!(map.get("rid"), Some("2"));
        assert_eq!(map.get("hintInfo"), Some("x"));
        assert_eq!(map.get("hintinfo"), None);
        assert_eq!(map.get("e"), Some(""));
        assert_eq!(map.get("type"), Some("rri"));
        assert_eq!(pairs(&map), [("rid", "1"), ("hintInfo", "x"), ("rid", "2"), ("e", ""), ("type", "rri")]);
        // An item without `@=` is a key with an empty value.
        assert_eq!(pairs(&decode_map("word/k@=v/")), [("word", ""), ("k", "v")]);
        assert!(decode_map("").is_empty());
        assert!(decode_map("///").is_empty());
    }

    #[test]
    fn list_items() {
        let items = |s: &str| decode_list(s).iter().map(String::from).collect::<Vec<_>>();
        assert_eq!(items(""), Vec::<String>::new());
        assert_eq!(items("/"), [""]);
        assert_eq!(items("a//b/"), ["a", "", "b"]);
        assert_eq!(items("a/b"), ["a", "b"]);
    }

    #[test]
    fn writer_builds_nested_values() {
        let inner = encode_map([("a", "1/2"), ("b", "@")]);
        assert_eq!(inner, "a@=1@S2/b@=@A/");
        let mut outer = String::new();
        push_field(&mut outer, "type", "t");
        push_field(&mut outer, "in", &inner);
        assert_eq!(outer, "type@=t/in@=a@A=1@AS2@Sb@A=@AA@S/");
        let decoded = decode_map(&outer).get_map("in").unwrap();
        assert_eq!(pairs(&decoded), [("a", "1/2"), ("b", "@")]);
    }

    /// Strings rich in the characters that matter to STT.
    fn tricky_string() -> impl Strategy<Value = String> {
        prop_oneof![".*", "[@/AS=x]{0,8}", Just(String::new()), Just("@S".to_string()), Just("@A".to_string()),]
    }

    proptest! {
        #[test]
        fn map_round_trip(fields in prop::collection::vec((tricky_string(), tricky_string()), 0..8)) {
            let decoded = decode_map(&encode_map(fields.iter().map(|(k, v)| (k, v))));
            // An empty key with an empty value encodes as `@=/`, which is kept.
            let got: Vec<(String, String)> =
                decoded.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            prop_assert_eq!(got, fields);
        }

        #[test]
        fn list_round_trip(items in prop::collection::vec(tricky_string(), 0..8)) {
            let decoded = decode_list(&encode_list(&items));
            prop_assert_eq!(decoded.iter().collect::<Vec<_>>(), items);
        }

        #[test]
        fn nested_two_levels_round_trip(
            rows in prop::collection::vec(
                prop::collection::vec((tricky_string(), tricky_string()), 0..4), 0..4),
            other in tricky_string(),
        ) {
            // A top-level map whose `list` is a list of maps, like `frank`.
            let list = encode_list(rows.iter().map(|row| encode_map(row.iter().map(|(k, v)| (k, v)))));
            let body = encode_map([("type", "frank"), ("list", list.as_str()), ("x", other.as_str())]);
            let top = decode_map(&body);
            prop_assert_eq!(top.get("x"), Some(other.as_str()));
            let decoded_list = top.get_list("list").unwrap();
            prop_assert_eq!(decoded_list.len(), rows.len());
            for (item, row) in decoded_list.iter().zip(&rows) {
                let map = decode_map(item);
                let got: Vec<(String, String)> =
                    map.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                prop_assert_eq!(&got, row);
            }
        }

        #[test]
        fn unescape_inverts_escape(text in tricky_string()) {
            prop_assert_eq!(unescape(&escape(&text)), text);
        }

        #[test]
        fn garbage_never_panics(text in ".*", raw in prop::collection::vec("[@/AS=a]", 0..32)) {
            let joined = raw.concat();
            for input in [text.as_str(), joined.as_str()] {
                let map = decode_map(input);
                // The reserved room for unescaped copies always suffices.
                prop_assert!(map.text.len() <= 2 * input.len());
                let _ = map.iter().count();
                let _ = map.to_stt();
                let list = decode_list(input);
                prop_assert!(list.text.len() <= 2 * input.len());
                let _ = list.iter().count();
                let _ = unescape(input);
            }
        }
    }
}

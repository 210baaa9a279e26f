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
//! message matters. Decoding a body is one pass ([`scan`]) that stops only
//! at the bytes STT gives a meaning to, `@` and `/`, found 64 bytes at a
//! time ([`Specials`]), and it fills three things:
//!
//! - a `String`, `text`, which starts as a plain copy of the body (a single
//!   `memcpy`). Most keys and values contain no escape, so they already *are*
//!   their decoded selves inside that copy. The few that do (an avatar path,
//!   a nested list) are unescaped once more onto the end of `text` when
//!   their item ends. Decoded text is never longer than escaped text, so
//!   reserving twice the body length up front means `text` never grows. A
//!   few spaces of padding follow, for writers that copy 16 or 32 bytes at
//!   a time.
//! - a `Vec` of spans saying where each key and value lies in `text`.
//! - a key index ([`KeyIndex`]): a 128-byte hash table from each key's
//!   signature (its first seven bytes and its length, in one word) to its
//!   last field, filled as the scan passes each key. A look-up by key is
//!   then one probe however many fields there are, and a key that repeats
//!   is noticed on the way.
//!
//! Lookups return `&str` slices of `text`. Nothing is allocated per field,
//! and a map reused for body after body ([`Map::decode_from`]) allocates
//! nothing once its buffers have grown.
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
    unescape_part_into(out, text, 0..text.len());
}

/// [`unescape_into`] for the part `part` of `input`: the escapes are found
/// 64 bytes at a time in `input` itself ([`block_marks`]), so a short part
/// in a longer text costs one block.
fn unescape_part_into(out: &mut String, input: &str, part: Range<usize>) {
    let bytes = input.as_bytes();
    // Copied up to here; everything of the part before is in `out` already.
    let mut copied = part.start;
    let mut block = part.start;
    while block < part.end {
        let mut marks = block_marks(bytes, block);
        if part.end - block < BLOCK {
            marks &= (1 << (part.end - block)) - 1;
        }
        while marks != 0 {
            let at = block + marks.trailing_zeros() as usize;
            marks &= marks - 1;
            // An `@` before `A` or `S`, inside the part, is an escape; the
            // `A` or `S` is not special, so the next mark is past it.
            let meaning = match bytes.get(at + 1) {
                Some(b'A') if at + 1 < part.end && bytes[at] == b'@' => '@',
                Some(b'S') if at + 1 < part.end && bytes[at] == b'@' => '/',
                _ => continue,
            };
            out.push_str(&input[copied..at]);
            out.push(meaning);
            copied = at + 2;
        }
        block += BLOCK;
    }
    out.push_str(&input[copied..part.end]);
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
/// repeated keys kept. Two maps are equal when they hold the same fields
/// in the same order.
#[derive(Clone, Debug, Default)]
pub struct Map {
    /// A copy of the encoded input, then unescaped copies of the fields that
    /// needed it (see the module docs), then [`PADDING`].
    text: String,
    /// Where the padding starts in `text`.
    decoded: usize,
    /// One per field, in wire order.
    fields: Vec<Field>,
    /// Where the last field of each key is (see [`KeyIndex`]).
    keys: KeyIndex,
}

impl PartialEq for Map {
    fn eq(&self, other: &Map) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Map {}

/// A field of a [`Map`]: where its key and value lie in the map's text,
/// and its key's [`signature`].
#[derive(Clone, Copy, Debug)]
struct Field {
    key: Span,
    value: Span,
    signature: u64,
}

impl Map {
    /// Decodes `input` into this map, replacing what it held. Its buffers
    /// are kept, so a decoder that reuses one map for message after
    /// message allocates only while they grow.
    pub fn decode_from(&mut self, input: &str) {
        self.text.clear();
        // Room for unescaped copies too, so that `text` never grows.
        self.text.reserve(input.len() * 2 + PADDING.len());
        self.text.push_str(input);
        let mut fields = std::mem::take(&mut self.fields);
        fields.clear();
        fields.reserve(expected_items(input));
        // The scan fills locals, which the compiler keeps in registers.
        self.keys = KeyIndex::default();
        let mut fill = MapFill { input: input.as_bytes(), text: &mut self.text, fields, keys: &mut self.keys };
        scan(input, &mut fill);
        self.fields = fill.fields;
        self.decoded = self.text.len();
        self.text.push_str(PADDING);
    }

    /// The value of the **last** field named `key` (exact, case-sensitive match).
    // Inlined so that a constant `key` (`get("cid")`) has its signature
    // computed at compile time.
    #[inline(always)]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.last_index_of(key).map(|index| self.value_at(index))
    }

    /// The position of the last field named `key`: one probe of the key
    /// index, whatever the number of fields. Always inlined: for a constant
    /// key the compiler works out its signature and home slot beforehand.
    #[inline(always)]
    pub(crate) fn last_index_of(&self, key: &str) -> Option<usize> {
        let key = key.as_bytes();
        if !self.keys.complete {
            return self.fields.iter().rposition(|field| self.bytes_of(field.key) == key);
        }
        let signature = signature(word_of(key), key.len());
        self.keys.find(signature, |index| self.is_key_at(index, signature, key))
    }

    /// Whether a later field has the same key as the field at `index`
    /// (which a writer of "last wins" leaves out). One probe when the map
    /// [`is_indexed`](Self::is_indexed); otherwise a walk over the later
    /// fields (a writer of every field should find the last of each key
    /// another way then).
    pub(crate) fn is_shadowed(&self, index: usize) -> bool {
        if self.keys.complete && !self.keys.repeats {
            return false;
        }
        let key = self.key_bytes_at(index);
        if !self.keys.complete {
            return self.fields[index + 1..].iter().any(|field| self.bytes_of(field.key) == key);
        }
        let signature = self.fields[index].signature;
        self.keys.find(signature, |other| self.is_key_at(other, signature, key)) != Some(index)
    }

    /// Whether every field is in the key index (at most
    /// [`KeyIndex::MAX_FIELDS`] fields).
    pub(crate) fn is_indexed(&self) -> bool {
        self.keys.complete
    }

    /// Whether any key appears more than once. Exact when the map has at
    /// most [`KeyIndex::MAX_FIELDS`] fields; beyond that, true (the key
    /// index stops there, and a writer should take its careful path).
    pub(crate) fn may_repeat_keys(&self) -> bool {
        self.keys.repeats || !self.keys.complete
    }

    /// Whether the field at `index` has the key `key`, whose signature is
    /// `signature`: the signatures tell, unless the key is long.
    #[inline(always)]
    fn is_key_at(&self, index: usize, signature: u64, key: &[u8]) -> bool {
        self.fields[index].signature == signature && (key.len() <= SIGNED_BYTES || self.key_bytes_at(index) == key)
    }

    /// The key of the field at `index` (in wire order), as bytes.
    pub(crate) fn key_bytes_at(&self, index: usize) -> &[u8] {
        self.bytes_of(self.fields[index].key)
    }

    fn bytes_of(&self, span: Span) -> &[u8] {
        &self.text.as_bytes()[span.start..span.end]
    }

    /// The value of the field at `index` (from `last_index_of`).
    pub(crate) fn value_at(&self, index: usize) -> &str {
        self.fields[index].value.of(&self.text)
    }

    /// The text that every key and value of the map is a slice of: the
    /// encoded input, then unescaped copies of the fields that needed them.
    /// A check that holds for all of it holds for every key and value, and
    /// one pass over it is cheaper than one per field (the JSON writer asks
    /// "does anything need escaping?" this way).
    pub fn text(&self) -> &str {
        &self.text[..self.decoded]
    }

    /// [`text`](Map::text) followed by [`PADDING`]: a writer that copies
    /// 16 or 32 bytes at a time from where a key or value starts can do so
    /// up to the last field.
    pub(crate) fn padded_text(&self) -> &[u8] {
        self.text.as_bytes()
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
        self.fields.iter().map(|field| (field.key.of(&self.text), field.value.of(&self.text)))
    }

    /// [`iter`](Map::iter) as byte slices, for writers of bytes: slicing a
    /// `str` checks that both ends fall on character boundaries, which for
    /// a short field costs about as much as copying it.
    pub(crate) fn iter_bytes(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.fields.iter().map(|field| (self.bytes_of(field.key), self.bytes_of(field.value)))
    }

    /// Where each field's key and value lie in [`text`](Map::text), in wire
    /// order: for writers that copy from the text by position.
    pub(crate) fn spans(&self) -> impl ExactSizeIterator<Item = (Range<usize>, Range<usize>)> + '_ {
        self.fields.iter().map(|field| (field.key.start..field.key.end, field.value.start..field.value.end))
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

/// What follows a decoded map's text: spaces, which need no escaping in
/// any format, and are neither `@` nor `/`.
pub(crate) const PADDING: &str = "                                ";

/// A map being decoded: the scan's [`Collect`] for [`Map::decode_from`].
struct MapFill<'a> {
    input: &'a [u8],
    /// The map's text, which starts as a copy of `input`.
    text: &'a mut String,
    fields: Vec<Field>,
    keys: &'a mut KeyIndex,
}

impl MapFill<'_> {
    /// Adds a decoded field and indexes its key.
    #[inline(always)]
    fn push_field(&mut self, key: Span, value: Span) {
        let len = key.end - key.start;
        // The key's first eight bytes in one load: a key in place is in
        // the input, followed by at least `@=`, so nearly always there.
        let word = match self.input.get(key.start..).and_then(<[u8]>::first_chunk::<8>) {
            Some(eight) => u64::from_le_bytes(*eight),
            None => word_of_last(&self.text.as_bytes()[key.start..key.end]),
        };
        let signature = signature(word, len);
        let index = self.fields.len();
        self.fields.push(Field { key, value, signature });
        if index >= KeyIndex::MAX_FIELDS {
            self.keys.complete = false;
            return;
        }
        let (fields, text) = (&self.fields, self.text.as_bytes());
        self.keys.insert(signature, index, |other| {
            let field = &fields[other];
            field.signature == signature
                && (len <= SIGNED_BYTES || text[field.key.start..field.key.end] == text[key.start..key.end])
        });
    }
}

/// How many bytes of a key its signature holds.
const SIGNED_BYTES: usize = 7;

/// The first eight bytes of `bytes` as a little-endian word (zeros past
/// the end). For a constant key the compiler works this out beforehand.
#[inline(always)]
fn word_of(bytes: &[u8]) -> u64 {
    let mut word = 0;
    for (i, &byte) in bytes.iter().take(8).enumerate() {
        word |= u64::from(byte) << (8 * i);
    }
    word
}

/// [`word_of`] for a key at the very end of a map's text, out of the
/// scan's way.
#[cold]
#[inline(never)]
fn word_of_last(bytes: &[u8]) -> u64 {
    word_of(bytes)
}

/// A key's signature: its first seven bytes (of `word`, the key's first
/// eight) and its length in one word. Keys of at most
/// seven bytes (nearly all of Douyu's) are equal exactly when their
/// signatures are; longer ones with equal signatures must be compared.
#[inline(always)]
fn signature(word: u64, len: usize) -> u64 {
    // Past seven bytes the length is kept modulo 256: such keys are
    // compared byte for byte anyway.
    (word & KEPT_BYTES[len.min(SIGNED_BYTES)]) | ((len as u64) << 56)
}

/// Masks of the first 0 to 7 bytes of a word.
const KEPT_BYTES: [u64; SIGNED_BYTES + 1] = {
    let mut masks = [0; SIGNED_BYTES + 1];
    let mut kept = 1;
    while kept <= SIGNED_BYTES {
        masks[kept] = (1 << (8 * kept)) - 1;
        kept += 1;
    }
    masks
};

/// Where the last field of each key is, for up to [`MAX_FIELDS`](Self::MAX_FIELDS)
/// fields: a small open-addressing hash table of key signatures, filled
/// as the scan passes each key. A look-up is then one probe, nearly
/// always, however many fields a message has; and a key seen twice is
/// noticed on the way, so a writer knows at once whether "last wins"
/// leaves anything out.
#[derive(Clone, Debug)]
struct KeyIndex {
    /// The index, plus one, of the last field whose key's signature
    /// hashes to the slot (or was pushed on from a taken one); 0: empty.
    /// Twice as many slots as keys, so most keys find theirs free.
    slots: [u8; 2 * KeyIndex::MAX_FIELDS],
    /// Every field is indexed (no more than `MAX_FIELDS`).
    complete: bool,
    /// Some key was seen twice.
    repeats: bool,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex { slots: [0; 2 * KeyIndex::MAX_FIELDS], complete: true, repeats: false }
    }
}

impl KeyIndex {
    /// Fields beyond this are not indexed; only a broken or hostile
    /// server sends that many, and look-ups then walk the fields.
    const MAX_FIELDS: usize = 64;

    /// Where a signature starts looking: the top seven bits of its product
    /// with 2^64/φ (Fibonacci hashing).
    #[inline(always)]
    fn home(signature: u64) -> usize {
        (signature.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57) as usize
    }

    /// Records field `index` under `signature`, in place of an earlier
    /// field of the same key (`same(earlier)` tells).
    #[inline(always)]
    fn insert(&mut self, signature: u64, index: usize, same: impl Fn(usize) -> bool) {
        let mut slot = Self::home(signature);
        while let Some(taken) = self.slots[slot].checked_sub(1) {
            if same(usize::from(taken)) {
                self.repeats = true;
                break;
            }
            slot = (slot + 1) % self.slots.len();
        }
        self.slots[slot] = index as u8 + 1;
    }

    /// The field recorded under `signature` for which `same` holds.
    #[inline(always)]
    fn find(&self, signature: u64, same: impl Fn(usize) -> bool) -> Option<usize> {
        let mut slot = Self::home(signature);
        loop {
            let taken = usize::from(self.slots[slot].checked_sub(1)?);
            if same(taken) {
                return Some(taken);
            }
            slot = (slot + 1) % self.slots.len();
        }
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
    let mut map = Map::default();
    map.decode_from(input);
    map
}

/// Decodes one level of an STT list. Never fails; see the module docs for
/// what is tolerated.
pub fn decode_list(input: &str) -> List {
    let mut list = List { text: copy_with_room(input), items: Vec::with_capacity(expected_items(input)) };
    scan(input, &mut list);
    list
}

/// `input` copied into a `String` with as much room again for unescaped
/// copies, so that the string never reallocates.
fn copy_with_room(input: &str) -> String {
    let mut text = String::with_capacity(input.len() * 2);
    text.push_str(input);
    text
}

/// How many items to reserve room for: a guess from the length (real
/// traffic has a field every 12 bytes or so; reserving for one every 6
/// means a body of short fields rarely grows the vector), capped so that
/// the vector stays within 1 KiB, the largest block glibc's per-thread
/// cache hands back without a search (measured: half the allocator's
/// instructions), for maps and lists decoded once and dropped. A wrong
/// guess costs one reallocation; counting the items exactly would cost a
/// pass over the body every time. (A map reused with
/// [`Map::decode_from`] keeps the room it grew to.)
fn expected_items(input: &str) -> usize {
    (input.len() / 6 + 2).min(1024 / size_of::<Field>())
}

/// What a [`scan`] fills: a [`Map`], whose items split at their first
/// `@=`, or a [`List`], whose items do not. (A trait rather than a closure
/// so that the compiler can be told to inline it into the scan.)
trait Collect {
    const SPLIT_AT_SEPARATOR: bool;
    /// The decoded text, which starts as a copy of the input.
    fn text(&mut self) -> &mut String;
    /// Adds an item: its key (a map item with a separator) and its last
    /// part (the value, or the whole item), decoded. An empty `last`
    /// without a key is an empty item.
    fn push_item(&mut self, key: Option<Span>, last: Span);
}

impl Collect for MapFill<'_> {
    const SPLIT_AT_SEPARATOR: bool = true;

    #[inline(always)]
    fn text(&mut self) -> &mut String {
        self.text
    }

    #[inline(always)]
    fn push_item(&mut self, key: Option<Span>, last: Span) {
        match key {
            Some(key) => self.push_field(key, last),
            // `//`: nothing at all, skip it.
            None if last.start == last.end => {}
            // `word/` in a map: keep the word as a key with an empty value.
            None => self.push_field(last, Span { start: last.end, end: last.end }),
        }
    }
}

impl Collect for List {
    const SPLIT_AT_SEPARATOR: bool = false;

    #[inline(always)]
    fn text(&mut self) -> &mut String {
        &mut self.text
    }

    #[inline(always)]
    fn push_item(&mut self, _key: Option<Span>, last: Span) {
        self.items.push(last);
    }
}

/// The single pass behind [`decode_map`] and [`decode_list`]: cuts `input`
/// into items, finds each map item's separator, and hands each item to
/// `into`. It only stops at `/` and `@` (see [`Specials`]); both are ASCII,
/// so every position it reports is a character boundary.
///
/// One loop, inlined into both decoders, with little state: the state of
/// the scan then stays in registers. Most items hold no escape and are
/// slices of the input as they are; the few that do are noticed on the
/// way and unescaped when they end ([`unescaped_part`]).
#[inline(always)]
fn scan<C: Collect>(input: &str, into: &mut C) {
    let bytes = input.as_bytes();
    let mut item_start = 0;
    // Where a map item's value starts, after its first `@=`; 0 until one
    // is found (a value never starts at 0).
    let mut value_start = 0;
    // Whether the item holds an escape (`@A`, `@S`).
    let mut escaped = false;
    for special in Specials::new(bytes) {
        if bytes[special] == b'/' {
            collect_item(input, into, item_start..special, value_start, escaped);
            item_start = special + 1;
            value_start = 0;
            escaped = false;
        } else {
            match bytes.get(special + 1) {
                Some(b'=') if C::SPLIT_AT_SEPARATOR && value_start == 0 => value_start = special + 2,
                Some(b'A' | b'S') => escaped = true,
                // Any other `@` (dangling, or before another byte) stays as it is.
                _ => {}
            }
        }
    }
    // Text after the last `/`: a final item whose `/` went missing.
    if item_start < bytes.len() {
        collect_item(input, into, item_start..bytes.len(), value_start, escaped);
    }
}

/// Hands the item at `item` of `input` to `into`: its key (up to the `@=`
/// before `value_start`, if not 0) and its last part.
#[inline(always)]
fn collect_item<C: Collect>(input: &str, into: &mut C, item: Range<usize>, value_start: usize, escaped: bool) {
    if escaped {
        return collect_escaped_item(input, into, item, value_start);
    }
    if value_start == 0 {
        into.push_item(None, Span::from(item));
    } else {
        into.push_item(
            Some(Span { start: item.start, end: value_start - 2 }),
            Span { start: value_start, end: item.end },
        );
    }
}

/// [`collect_item`] for the few items that hold an escape: each part that
/// holds one is unescaped onto the end of the text. Out of the scan's way.
#[inline(never)]
fn collect_escaped_item<C: Collect>(input: &str, into: &mut C, item: Range<usize>, value_start: usize) {
    // A key rarely holds an escape when its value does: it stays in place.
    let mut part = |range: Range<usize>, maybe_escaped: bool| {
        if maybe_escaped { unescaped_part(into.text(), input, range) } else { Span::from(range) }
    };
    if value_start == 0 {
        let last = part(item, true);
        into.push_item(None, last);
    } else {
        let key_escaped = input.as_bytes()[item.start..value_start - 2].contains(&b'@');
        let key = part(item.start..value_start - 2, key_escaped);
        let last = part(value_start..item.end, true);
        into.push_item(Some(key), last);
    }
}

/// Appends the part of `input` at `part` to `text` with one level of
/// escaping removed, and says where it lies there. For the few items that
/// hold an escape, so kept out of line.
#[inline(never)]
fn unescaped_part(text: &mut String, input: &str, part: Range<usize>) -> Span {
    let start = text.len();
    unescape_part_into(text, input, part);
    Span { start, end: text.len() }
}

impl From<Range<usize>> for Span {
    fn from(range: Range<usize>) -> Span {
        Span { start: range.start, end: range.end }
    }
}

/// The positions of every `@` and `/` in a text, in order: the only bytes
/// STT gives a meaning to, so the only ones a decoder stops at.
///
/// Asking "is this `@` or `/`?" of each byte in turn costs a compare and a
/// branch per byte, and a body is hundreds of bytes. Instead this looks at
/// 64 bytes at a time and makes one `u64` with a bit set for each special
/// byte ([`special_bytes`], written so that the compiler uses vector
/// compares), then visits the set bits with `trailing_zeros`. The cost is
/// per block and per special byte, not per byte: the "structural index" of
/// simdjson's first stage, without `unsafe` or CPU-specific code.
struct Specials<'a> {
    bytes: &'a [u8],
    /// Where the current block starts in `bytes`.
    block_start: usize,
    /// The special bytes of the current block not yet returned: bit `k`
    /// for the byte at `block_start + k`.
    marks: u64,
}

impl<'a> Specials<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Specials { bytes, block_start: 0, marks: block_marks(bytes, 0) }
    }
}

impl Iterator for Specials<'_> {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        while self.marks == 0 {
            self.block_start += BLOCK;
            if self.block_start >= self.bytes.len() {
                return None;
            }
            self.marks = block_marks(self.bytes, self.block_start);
        }
        let position = self.block_start + self.marks.trailing_zeros() as usize;
        self.marks &= self.marks - 1; // clear the lowest set bit
        Some(position)
    }
}

/// How many bytes [`Specials`] looks at at once: one bit each in a `u64`.
const BLOCK: usize = 64;

/// The marks of the block of `bytes` at `start`. The last block is shorter:
/// it is padded with zeros, which are not special.
fn block_marks(bytes: &[u8], start: usize) -> u64 {
    let rest = bytes.get(start..).unwrap_or_default();
    match rest.first_chunk::<BLOCK>() {
        Some(block) => special_bytes(block),
        None => {
            let mut block = [0; BLOCK];
            block[..rest.len()].copy_from_slice(rest);
            special_bytes(&block)
        }
    }
}

/// Bit `k` set exactly when byte `k` of `block` is `@` or `/`.
fn special_bytes(block: &[u8; BLOCK]) -> u64 {
    // First one byte per byte, 1 for special and 0 for not: a plain loop
    // over an array, which the compiler turns into 16-byte vector compares.
    // (Indexed rather than zipped: an unoptimized test build runs this for
    // every byte received, and iterator adapters cost it a call per byte.)
    let mut flags = [0; BLOCK];
    let mut i = 0;
    while i < BLOCK {
        flags[i] = u8::from((block[i] == b'@') | (block[i] == b'/'));
        i += 1;
    }
    // Then the 64 flags into 64 bits, eight at a time.
    let mut marks = 0;
    for (i, eight) in flags.chunks_exact(8).enumerate() {
        let eight = u64::from_le_bytes(eight.try_into().expect("chunks of 8"));
        marks |= gather_flags(eight) << (8 * i);
    }
    marks
}

/// Packs a word of eight 0-or-1 bytes into eight bits (byte `k` → bit `k`)
/// with one multiplication. The multiplier has one bit per byte, placed so
/// that byte `k`'s flag lands on bit `56 + k` of the product; every other
/// partial product lands on a bit of its own below bit 56 (or beyond 64), so
/// nothing carries into the top byte, which is the answer.
fn gather_flags(eight: u64) -> u64 {
    eight.wrapping_mul(0x0102_0408_1020_4080) >> 56
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
    fn maps_are_equal_when_their_fields_are() {
        assert_eq!(decode_map(""), Map::default());
        assert_eq!(decode_map("a@=1/b@=x@Sy/"), decode_map("a@=1/b@=x@Sy"));
        let mut reused = decode_map("zz@=a longer value@S/");
        reused.decode_from("b@=x@Sy/");
        assert_eq!(reused, decode_map("b@=x@Sy/"));
        assert_ne!(decode_map("a@=1/"), decode_map("a@=2/"));
        assert_ne!(decode_map("a@=1/b@=2/"), decode_map("b@=2/a@=1/"));
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
                prop_assert!(map.text.len() <= 2 * input.len() + PADDING.len());
                let _ = map.iter().count();
                let _ = map.to_stt();
                let list = decode_list(input);
                prop_assert!(list.text.len() <= 2 * input.len());
                let _ = list.iter().count();
                let _ = unescape(input);
            }
        }

        #[test]
        fn specials_are_every_at_and_slash(bytes in prop::collection::vec(any_byte_rich_in_specials(), 0..200)) {
            let naive: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] == b'@' || bytes[i] == b'/').collect();
            prop_assert_eq!(Specials::new(&bytes).collect::<Vec<_>>(), naive);
        }

        #[test]
        fn decoding_matches_the_naive_reference(text in stt_rich_text()) {
            let map: Vec<(String, String)> = decode_map(&text).iter().map(|(k, v)| (k.into(), v.into())).collect();
            prop_assert_eq!(map, reference::decode_map(&text));
            let list: Vec<String> = decode_list(&text).iter().map(String::from).collect();
            prop_assert_eq!(list, reference::decode_list(&text));
            prop_assert_eq!(unescape(&text), reference::unescape(&text));
        }
    }

    /// Keys that clash on purpose: short ones, long ones that share their
    /// first seven bytes (and length), escapes, the empty key.
    fn clashing_key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ab]{0,3}",
            "abcdefg[hi]{1,3}",
            "[a@/]{1,9}",
            Just("type".to_string()),
            Just("abcdefgh".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn the_key_index_finds_the_last_of_each_key(
            fields in prop::collection::vec((clashing_key(), "[x-z]{0,3}"), 0..80),
            reused in prop::collection::vec((clashing_key(), "[x-z]{0,3}"), 0..10),
        ) {
            // Decoded into a map that held another message before.
            let mut map = decode_map(&encode_map(reused));
            map.decode_from(&encode_map(fields.iter().map(|(k, v)| (k, v))));
            let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            for (index, (key, _)) in fields.iter().enumerate() {
                let last = keys.iter().rposition(|k| k == key).unwrap();
                prop_assert_eq!(map.get(key), Some(fields[last].1.as_str()), "key {:?}", key);
                prop_assert_eq!(map.is_shadowed(index), last != index, "field {}", index);
            }
            for absent in ["abcdefgj", "abcdefghii", "c", "@@@@@@@@@@"] {
                if !keys.contains(&absent) {
                    prop_assert_eq!(map.get(absent), None);
                }
            }
            let repeats = (0..keys.len()).any(|i| keys[..i].contains(&keys[i]));
            prop_assert_eq!(map.is_indexed(), fields.len() <= KeyIndex::MAX_FIELDS);
            if map.is_indexed() {
                prop_assert_eq!(map.may_repeat_keys(), repeats);
            } else {
                prop_assert!(map.may_repeat_keys());
            }
        }
    }

    /// Bytes, half of them `@`, `/`, `A`, `S` or `=`.
    fn any_byte_rich_in_specials() -> impl Strategy<Value = u8> {
        prop_oneof![any::<u8>(), prop::sample::select(b"@/AS=".to_vec())]
    }

    /// Text of any length (across several 64-byte blocks), rich in STT's
    /// special characters, with some multi-byte characters.
    fn stt_rich_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![Just("@"), Just("/"), Just("A"), Just("S"), Just("="), Just("x"), Just("é"), Just("鱼")],
            0..300,
        )
        .prop_map(|pieces| pieces.concat())
    }

    /// The decoding rules written the plainest way, with `str` methods, to
    /// hold the single-pass scanner to.
    mod reference {
        /// Left to right: `@A` is `@`, `@S` is `/`, anything else is itself.
        pub fn unescape(text: &str) -> String {
            let mut out = String::new();
            let mut chars = text.chars().peekable();
            while let Some(c) = chars.next() {
                match (c, chars.peek()) {
                    ('@', Some('A')) => {
                        out.push('@');
                        chars.next();
                    }
                    ('@', Some('S')) => {
                        out.push('/');
                        chars.next();
                    }
                    _ => out.push(c),
                }
            }
            out
        }

        /// The items between `/`s; a final `/` ends the last item rather
        /// than starting an empty one.
        fn items(text: &str) -> Vec<&str> {
            let mut items: Vec<&str> = text.split('/').collect();
            if items.last() == Some(&"") {
                items.pop();
            }
            items
        }

        pub fn decode_map(text: &str) -> Vec<(String, String)> {
            items(text)
                .into_iter()
                .filter(|item| !item.is_empty())
                .map(|item| match item.split_once("@=") {
                    Some((key, value)) => (unescape(key), unescape(value)),
                    None => (unescape(item), String::new()),
                })
                .collect()
        }

        pub fn decode_list(text: &str) -> Vec<String> {
            items(text).into_iter().map(unescape).collect()
        }
    }
}

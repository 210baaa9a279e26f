//! How one received message becomes one output line.
//!
//! JSON (for pipelines) is exactly
//! `{"ts":<ms since the Unix epoch>,"room":<id>,"type":"<type>","fields":{…}}`
//! with every STT field as a string, unescaped one level (nested values stay
//! as STT text, to be decoded further only by whoever needs them). A key
//! that repeats in the body appears once, with its last value — the same
//! "last wins" rule as `Message::get`.
//!
//! Text (for people at a terminal) is one readable line per message, in the
//! spirit of the original tutorial's prints. Every piece of it goes through
//! [`visible`]: no control character, escape sequence or bidi override from
//! a stranger reaches the terminal. Coloured text is the same line with
//! rooms, nicknames, gifts and live status told apart by colour; the only
//! escape sequences in it are the colours written here, around text that
//! went through [`visible`] like the rest.

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;

use crate::douyu::stt::Map;
use crate::douyu::{Message, MessageView};
use crate::monitor::LIVE_TYPE;
use crate::monitor::visible::visible;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
    /// Text with colours, for a terminal.
    ColorText,
}

/// Appends `message`, received at `ts_ms` in `room`, as one line to `out`.
pub fn write_line(out: &mut Vec<u8>, format: Format, ts_ms: u64, room: u64, message: &Message) {
    match format {
        Format::Json => write_json(out, ts_ms, room, message),
        Format::Text => write_text(out, room, message, false),
        Format::ColorText => write_text(out, room, message, true),
    }
}

// ----- JSON -----------------------------------------------------------------
//
// Every message of every room goes through here, so the cost per field
// matters more than anything else in the daemon. The decoded message says
// at once whether a key repeats (its key index noticed while decoding), and
// one look at all of its text (every key and value is a slice of it) tells
// whether any byte needs escaping. For the common message, with neither,
// each field is copied with a few fixed-size moves. Otherwise fields left
// out by "last wins" are skipped, and a field is escaped only if it holds
// a byte that needs it.
//
// The golden test (`tests/golden_json.rs`) and property tests below hold
// the writer to the first one, which let serde_json escape every string.

fn write_json(out: &mut Vec<u8>, ts_ms: u64, room: u64, message: &Message) {
    let map = message.as_map();
    // Padded, so that fixed-size copies from the last fields stay inside.
    let text = map.padded_text();
    let msg_type = message.msg_type().as_bytes();
    // Room for the line, made once: every key and value is a piece of
    // `text`, a field adds six bytes of quotes and punctuation, and the
    // last field may spill a window's worth (see `Line::put_field`).
    // Escaping can make it longer; `Line` makes more room then.
    let start = out.len();
    out.resize(start + LINE_HEAD + msg_type.len() + text.len() + 6 * map.len() + FIELD_WINDOW, 0);
    let mut line = Line { out, end: start };
    let mut numbers = itoa::Buffer::new();
    line.put(b"{\"ts\":");
    line.put(numbers.format(ts_ms).as_bytes());
    line.put(b",\"room\":");
    line.put(numbers.format(room).as_bytes());
    line.put(b",\"type\":\"");
    let escapes = any_needs_escape(map.text().as_bytes());
    if escapes {
        line.put_escaped(msg_type);
    } else {
        line.put(msg_type);
    }
    line.put(b"\",\"fields\":");
    // Every field is written with a comma before it; the first one's then
    // becomes the opening brace.
    let fields_start = line.end;
    if !escapes && !map.may_repeat_keys() {
        for (key, value) in map.spans() {
            if !line.put_short_field(text, &key, &value) {
                line.put_long_field(text, key, value);
            }
        }
    } else {
        let hidden = HiddenFields::of(map);
        for (index, (key, value)) in map.spans().enumerate() {
            if !hidden.contains(map, index) {
                line.put_field_escaped(text, key, value);
            }
        }
    }
    if line.end == fields_start {
        line.put(b"{");
    } else {
        line.out[fields_start] = b'{';
    }
    line.put(b"}}\n");
    let end = line.end;
    out.truncate(end);
}

/// The longest a line's head and tail can be, besides the type: the
/// punctuation, and two numbers of up to 20 digits.
const LINE_HEAD: usize = 96;

/// The widest field `Line::put_short_field` writes in one go:
/// `,"` + 16-byte key + `":"` + 32-byte value + `"`.
const FIELD_WINDOW: usize = 2 + 16 + 3 + 32 + 1;

/// A line being written into room made for it beforehand: `out` up to
/// `end` is the line so far, and what follows is room (zeros, or bytes
/// copied past the end of a field, to be overwritten).
struct Line<'a> {
    out: &'a mut Vec<u8>,
    end: usize,
}

impl Line<'_> {
    /// Makes sure `len` bytes of room follow `end`.
    fn make_room(&mut self, len: usize) {
        if self.out.len() < self.end + len {
            self.out.resize(self.end + len + 256, 0);
        }
    }

    fn put(&mut self, piece: &[u8]) {
        self.make_room(piece.len());
        self.out[self.end..self.end + piece.len()].copy_from_slice(piece);
        self.end += piece.len();
    }

    /// `bytes` as the inside of a JSON string.
    fn put_escaped(&mut self, bytes: &[u8]) {
        if any_needs_escape(bytes) {
            self.out.truncate(self.end);
            escape_into(self.out, bytes);
            self.end = self.out.len();
        } else {
            self.put(bytes);
        }
    }

    /// Appends `,"key":"value"`, both pieces of `text`, which need no
    /// escaping, if the key is at most 16 bytes long and the value at most
    /// 32; returns whether it did.
    ///
    /// Most keys and values are that short, and copying a few bytes whose
    /// number is only known at run time takes a call to `memcpy` and a
    /// handful of bounds checks each. So this copies a fixed 16 bytes for
    /// the key and 32 for the value into a fixed-size window of the room
    /// (vector loads and stores, bounds checked once) and then counts only
    /// the real lengths: the bytes copied past them are overwritten by what
    /// comes next, or cut off at the end of the line. (`text` is padded, so
    /// the copies never run past its end.)
    #[inline(always)]
    fn put_short_field(&mut self, text: &[u8], key: &Range<usize>, value: &Range<usize>) -> bool {
        let (key_len, value_len) = (key.len(), value.len());
        if key_len <= 16
            && value_len <= 32
            && let Some(key16) = text.get(key.start..).and_then(<[u8]>::first_chunk::<16>)
            && let Some(value32) = text.get(value.start..).and_then(<[u8]>::first_chunk::<32>)
            && let Some(window) = self.out.get_mut(self.end..).and_then(<[u8]>::first_chunk_mut::<FIELD_WINDOW>)
        {
            window[..2].copy_from_slice(b",\"");
            window[2..18].copy_from_slice(key16);
            let at = 2 + key_len;
            window[at..at + 3].copy_from_slice(b"\":\"");
            window[at + 3..at + 35].copy_from_slice(value32);
            let at = at + 3 + value_len;
            window[at] = b'"';
            self.end += at + 1;
            true
        } else {
            false
        }
    }

    /// Appends `,"key":"value"` of any length, needing no escaping. Out of
    /// line, so that the loop around [`put_short_field`](Self::put_short_field)
    /// keeps its state in registers.
    #[inline(never)]
    fn put_long_field(&mut self, text: &[u8], key: Range<usize>, value: Range<usize>) {
        self.put(b",\"");
        self.put(&text[key]);
        self.put(b"\":\"");
        self.put(&text[value]);
        self.put(b"\"");
    }

    /// The field `,"key":"value"`, where either may need escaping. In a
    /// message that has a byte to escape, most fields still have none: the
    /// bytes the plain copy would move tell, and only if they hold one (in
    /// the field, or just past it) is each string checked and escaped on
    /// its own.
    fn put_field_escaped(&mut self, text: &[u8], key: Range<usize>, value: Range<usize>) {
        let plain_key = text.get(key.start..).and_then(<[u8]>::first_chunk::<16>).is_some_and(|k| !any_needs_escape(k));
        let plain_value =
            text.get(value.start..).and_then(<[u8]>::first_chunk::<32>).is_some_and(|v| !any_needs_escape(v));
        if !(plain_key && plain_value && self.put_short_field(text, &key, &value)) {
            self.put(b",\"");
            self.put_escaped(&text[key]);
            self.put(b"\":\"");
            self.put_escaped(&text[value]);
            self.put(b"\"");
        }
    }
}

/// The fields a JSON line leaves out: every field whose key appears again
/// later in the body, so that a repeated key shows once, with its last
/// value ("last wins", as `Message::get`), at the place of its last
/// occurrence.
enum HiddenFields {
    /// No key repeats.
    None,
    /// The map's key index tells.
    Indexed,
    /// For a map with more fields than its index holds: one flag per field.
    Many(Vec<bool>),
}

impl HiddenFields {
    fn of(map: &Map) -> HiddenFields {
        if !map.may_repeat_keys() {
            HiddenFields::None
        } else if map.is_indexed() {
            HiddenFields::Indexed
        } else {
            // Only a hostile or broken server sends so many fields. A
            // `HashMap` of each key's last position stays linear however
            // the keys are chosen.
            let mut last = HashMap::with_capacity(map.len());
            for (index, (key, _)) in map.iter_bytes().enumerate() {
                last.insert(key, index);
            }
            HiddenFields::Many(map.iter_bytes().enumerate().map(|(index, (key, _))| last[key] != index).collect())
        }
    }

    fn contains(&self, map: &Map, index: usize) -> bool {
        match self {
            HiddenFields::None => false,
            HiddenFields::Indexed => map.is_shadowed(index),
            HiddenFields::Many(flags) => flags[index],
        }
    }
}

/// Whether a JSON string must escape `byte`: `"`, `\` and the control
/// characters below 0x20. These and no others (not DEL, not U+2028): the
/// JSON lines are byte for byte what serde_json wrote before.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Whether any byte of `bytes` needs escaping. No early exit, so that the
/// compiler checks 16 bytes per step with vector instructions.
fn any_needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |found, &byte| found | needs_escape(byte))
}

/// Appends `bytes` as the inside of a JSON string literal (no quotes),
/// escaped the way serde_json does: the two-character escapes where JSON
/// has one, else `\u00XX` (lower-case hex). Runs of plain bytes are copied
/// whole.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut copied = 0;
    let mut index = 0;
    while index < bytes.len() {
        // Nearly every byte is plain: pass 16 at a time while they are.
        if let Some(sixteen) = bytes[index..].first_chunk::<16>()
            && !any_needs_escape(sixteen)
        {
            index += 16;
            continue;
        }
        let byte = bytes[index];
        index += 1;
        if !needs_escape(byte) {
            continue;
        }
        out.extend_from_slice(&bytes[copied..index - 1]);
        copied = index;
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let (high, low) = (HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]);
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', high, low]);
                continue;
            }
        };
        out.extend_from_slice(&[b'\\', short]);
    }
    out.extend_from_slice(&bytes[copied..]);
}

// ----- text -----------------------------------------------------------------

fn write_text(out: &mut Vec<u8>, room: u64, message: &Message, color: bool) {
    let mut line = TextLine { out, color };
    let gift_name;
    match message.view() {
        // Heartbeat echoes and server ticks are noise for a person.
        MessageView::Heartbeat | MessageView::PingReq(_) => return,
        MessageView::Chat(chat) => {
            line.room(room);
            line.put(style::NICKNAME, chat.nickname);
            line.put(style::PLAIN, ": ");
            line.put(style::PLAIN, chat.text);
        }
        MessageView::Enter(enter) => {
            line.room(room);
            line.put(style::NICKNAME, enter.nickname);
            line.put(style::QUIET, " entered");
        }
        MessageView::Gift(gift) => {
            // A gift without a name is named by its id (names come from a
            // table the web page loads; the wire carries only `gfid`).
            gift_name = match (gift.gift_name, gift.gift_id) {
                ("", Some(id)) => format!("gift #{id}"),
                ("", None) => "a gift".to_string(),
                (name, _) => name.to_string(),
            };
            line.room(room);
            line.put(style::NICKNAME, gift.nickname);
            line.put(style::PLAIN, " sent ");
            line.put(style::GIFT, &format!("{gift_name} ×{}", gift.count.unwrap_or(1)));
        }
        // Status changes are told once, with a grace for streams that drop
        // and come back, by the monitor's own `barrage.live` lines.
        MessageView::RoomStatus(_) => return,
        MessageView::Other(LIVE_TYPE) => {
            line.room(room);
            match (message.get("status"), message.get("lasted")) {
                (Some("live"), _) => line.put(style::LIVE, "● live now"),
                (Some("loop"), _) => line.put(style::LOOP, "↻ replaying (loop)"),
                (Some("offline"), Some(lasted)) => line.put(style::OFFLINE, &format!("○ ended after {lasted}")),
                _ => line.put(style::OFFLINE, "○ offline"),
            }
        }
        MessageView::LoginRes(_) => {
            line.room(room);
            line.put(style::QUIET, "logged in");
        }
        MessageView::Error(error) => {
            line.room(room);
            line.put(style::ERROR, &format!("server error {}", error.code.unwrap_or(-1)));
        }
        MessageView::Other(kind) => {
            line.room(room);
            line.put(style::TYPE, kind);
            for (key, value) in message.fields().filter(|(k, _)| *k != "type").take(6) {
                line.put(style::PLAIN, " ");
                line.put(style::QUIET, &format!("{key}="));
                line.put(style::PLAIN, &shorten(value, 40));
            }
        }
    }
    line.out.push(b'\n');
}

/// The colours of text output: Select Graphic Rendition parameters, written
/// as `ESC [ <style> m`, and `ESC [ 0 m` after the span.
mod style {
    pub const PLAIN: &str = "";
    /// `[room]`: dim.
    pub const ROOM: &str = "2";
    /// Nicknames: bold cyan.
    pub const NICKNAME: &str = "1;36";
    /// A gift and its count: bold yellow.
    pub const GIFT: &str = "1;33";
    pub const LIVE: &str = "1;32";
    pub const OFFLINE: &str = "31";
    pub const LOOP: &str = "35";
    pub const ERROR: &str = "1;31";
    /// An unknown type's name: magenta.
    pub const TYPE: &str = "35";
    /// What says little: entries, logins, field names. Dim.
    pub const QUIET: &str = "2";
}

/// One text line being written. Every piece, ours or the server's, goes
/// through [`visible`], so the only escape sequences in a line are the
/// colours this adds around the pieces.
struct TextLine<'a> {
    out: &'a mut Vec<u8>,
    color: bool,
}

impl TextLine<'_> {
    fn room(&mut self, room: u64) {
        self.put(style::ROOM, &format!("[{room}]"));
        self.put(style::PLAIN, " ");
    }

    fn put(&mut self, style: &str, text: &str) {
        let text = visible(text);
        if self.color && !style.is_empty() {
            let _ = write!(self.out, "\x1b[{style}m{text}\x1b[0m");
        } else {
            self.out.extend_from_slice(text.as_bytes());
        }
    }
}

/// At most `max_chars` characters of `text`, made visible, with `…` if cut.
fn shorten(text: &str, max_chars: usize) -> String {
    let mut short: String = visible(text).chars().take(max_chars).collect();
    if text.chars().nth(max_chars).is_some() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = "type@=chatmsg/rid@=102965/uid@=36216769/nn@=小老弟233/txt@=注意保暖 \"quoted\" a@Sb\\c/cid@=7/el@=eid@AA=1@AS@S/";

    fn line(format: Format, body: &str) -> String {
        let mut out = Vec::new();
        write_line(&mut out, format, 1_790_519_453_293, 102965, &Message::decode(body));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_line_has_exactly_the_contract_fields() {
        let text = line(Format::Json, CHAT);
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "one line: {text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let object = value.as_object().unwrap();
        assert_eq!(object.keys().collect::<Vec<_>>(), ["fields", "room", "ts", "type"]);
        assert_eq!(value["ts"], 1_790_519_453_293u64);
        assert_eq!(value["room"], 102965);
        assert_eq!(value["type"], "chatmsg");
        let fields = value["fields"].as_object().unwrap();
        assert_eq!(fields["txt"], "注意保暖 \"quoted\" a/b\\c", "unescaped one level, JSON-escaped");
        assert_eq!(fields["uid"], "36216769", "values stay strings");
        assert_eq!(fields["el"], "eid@A=1@S/", "nested values are decoded one level only");
        assert_eq!(fields.len(), 7);
    }

    #[test]
    fn repeated_keys_appear_once_with_the_last_value() {
        let value: serde_json::Value = serde_json::from_str(&line(Format::Json, "type@=rri/rid@=1/rid@=2/")).unwrap();
        assert_eq!(value["fields"]["rid"], "2");
        assert_eq!(line(Format::Json, "type@=rri/rid@=1/rid@=2/").matches("\"rid\"").count(), 1);
    }

    #[test]
    fn text_lines_read_like_the_tutorial() {
        assert_eq!(line(Format::Text, CHAT), "[102965] 小老弟233: 注意保暖 \"quoted\" a/b\\c\n");
        assert_eq!(line(Format::Text, "type@=uenter/nn@=观众1/"), "[102965] 观众1 entered\n");
        assert_eq!(
            line(Format::Text, "type@=dgb/nn@=观众3/gfn@=粉丝荧光棒/gfcnt@=10/"),
            "[102965] 观众3 sent 粉丝荧光棒 ×10\n"
        );
        assert_eq!(line(Format::Text, "type@=rss/ss@=1/ivl@=0/"), "", "told by the barrage.live line");
        assert_eq!(line(Format::Text, "type@=barrage.live/status@=live/"), "[102965] ● live now\n");
        let ended = "type@=barrage.live/status@=offline/lasted@=2h13m/";
        assert_eq!(line(Format::Text, ended), "[102965] ○ ended after 2h13m\n");
        assert_eq!(line(Format::Text, "type@=mrkl/"), "");
        assert_eq!(line(Format::Text, "type@=chatmsg/nn@=x/txt@=two\nlines/"), "[102965] x: two lines\n");
        assert_eq!(line(Format::Text, "type@=newthing/a@=1/b@=2/"), "[102965] newthing a=1 b=2\n");
        assert_eq!(line(Format::Text, "type@=uenter/nn@=a\n[1] b/"), "[102965] a [1] b entered\n", "no forged line");
    }

    #[test]
    fn no_server_string_in_text_output_can_steer_the_terminal() {
        // Each place a server-chosen string lands in a text line.
        let cases = [
            ("type@=chatmsg/nn@=\x1b]0;owned\x07/txt@=\x1b[2K\x1b[1Aerased/", "[102965] ␛]0;owned␇: ␛[2K␛[1Aerased\n"),
            ("type@=uenter/nn@=a\x08\x08\u{9b}b/", "[102965] a␈␈\\u{9b}b entered\n"),
            ("type@=dgb/nn@=x/gfn@=\u{202e}tfig/gfcnt@=2/", "[102965] x sent \\u{202e}tfig ×2\n"),
            ("type@=new\x1bthing/k\x07ey@=v\x7fal/", "[102965] new␛thing k␇ey=v␡al\n"),
        ];
        for (body, expected) in cases {
            assert_eq!(line(Format::Text, body), expected, "{body:?}");
        }
    }

    #[test]
    fn a_gift_without_a_name_is_named_by_its_id() {
        assert_eq!(line(Format::Text, "type@=dgb/nn@=观众3/gfid@=824/gfcnt@=2/"), "[102965] 观众3 sent gift #824 ×2\n");
        assert_eq!(line(Format::Text, "type@=dgb/nn@=观众3/gfn@=/"), "[102965] 观众3 sent a gift ×1\n");
    }

    /// The coloured line without its colours.
    fn uncolored(colored: &str) -> String {
        let mut plain = String::new();
        let mut rest = colored;
        while let Some(start) = rest.find('\x1b') {
            plain.push_str(&rest[..start]);
            let after = &rest[start..];
            let end = after.find('m').unwrap_or_else(|| panic!("an unterminated sequence in {colored:?}"));
            let parameters = &after[2..end];
            assert!(after.starts_with("\x1b["), "a foreign escape in {colored:?}");
            assert!(
                parameters.chars().all(|c| c.is_ascii_digit() || c == ';') && end <= 6,
                "not one of our colours: {parameters:?} in {colored:?}"
            );
            rest = &after[end + 1..];
        }
        plain.push_str(rest);
        plain
    }

    #[test]
    fn colour_tells_the_parts_apart_and_changes_nothing_else() {
        assert_eq!(
            line(Format::ColorText, CHAT),
            "\x1b[2m[102965]\x1b[0m \x1b[1;36m小老弟233\x1b[0m: 注意保暖 \"quoted\" a/b\\c\n"
        );
        assert_eq!(
            line(Format::ColorText, "type@=barrage.live/status@=live/"),
            "\x1b[2m[102965]\x1b[0m \x1b[1;32m● live now\x1b[0m\n"
        );
        for body in [
            CHAT,
            "type@=uenter/nn@=观众1/",
            "type@=dgb/nn@=观众3/gfn@=粉丝荧光棒/gfcnt@=10/",
            "type@=dgb/gfid@=824/",
            "type@=barrage.live/status@=offline/lasted@=2h13m/",
            "type@=barrage.live/status@=loop/",
            "type@=loginres/",
            "type@=error/code@=204/",
            "type@=newthing/a@=1/b@=2/",
            "type@=mrkl/",
        ] {
            assert_eq!(uncolored(&line(Format::ColorText, body)), line(Format::Text, body), "{body:?}");
        }
    }

    #[test]
    fn colour_never_lets_server_text_out_of_its_span() {
        // Each place a server-chosen string lands, with an escape, a reset,
        // a newline and a bidi override in it.
        let hostile = "\x1b[0m\x1b]0;owned\x07\n[9500] admin\u{202e}\u{9b}31m";
        for body in [
            format!("type@=chatmsg/nn@={hostile}/txt@={hostile}/"),
            format!("type@=uenter/nn@={hostile}/"),
            format!("type@=dgb/nn@={hostile}/gfn@={hostile}/gfcnt@=2/"),
            format!("type@={hostile}/{hostile}@={hostile}/"),
        ] {
            let colored = line(Format::ColorText, &body);
            assert_eq!(colored.matches('\n').count(), 1, "{colored:?}");
            assert!(!colored.contains(['\u{202e}', '\u{9b}', '\x07']), "{colored:?}");
            // Every escape left is one of ours, and without them the line
            // is the plain one, where the server's escapes are visible.
            assert_eq!(uncolored(&colored), line(Format::Text, &body));
            assert!(line(Format::Text, &body).contains("␛[0m␛]0;owned␇"));
        }
    }

    #[test]
    fn a_newline_in_an_unknown_types_key_cannot_forge_a_line() {
        let text = line(Format::Text, "type@=spam/x\n[9500] admin: forged by key@=v/cid@=6/");
        assert_eq!(text, "[102965] spam x [9500] admin: forged by key=v cid=6\n");
        assert_eq!(text.matches('\n').count(), 1);
    }

    #[test]
    fn json_keeps_control_characters_losslessly_escaped() {
        let text = line(Format::Json, "type@=chatmsg/nn@=\x1b]0;t\x07/txt@=a\u{202e}b\nc/");
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "control bytes are escaped: {text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["fields"]["nn"], "\x1b]0;t\x07");
        assert_eq!(value["fields"]["txt"], "a\u{202e}b\nc");
    }

    /// The JSON line as it was first written, with serde_json escaping each
    /// string and a `HashMap` finding the last of each key: the plainest
    /// statement of the contract, to hold the fast writer to.
    fn reference_json_line(ts_ms: u64, room: u64, message: &Message) -> Vec<u8> {
        let mut out = format!("{{\"ts\":{ts_ms},\"room\":{room},\"type\":").into_bytes();
        serde_json::to_writer(&mut out, message.msg_type()).unwrap();
        out.extend_from_slice(b",\"fields\":{");
        let fields: Vec<(&str, &str)> = message.fields().collect();
        let last: HashMap<&str, usize> = fields.iter().enumerate().map(|(index, (key, _))| (*key, index)).collect();
        let shown = fields.iter().enumerate().filter(|(index, (key, _))| last[key] == *index);
        for (n, (_, (key, value))) in shown.enumerate() {
            if n > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, key).unwrap();
            out.push(b':');
            serde_json::to_writer(&mut out, value).unwrap();
        }
        out.extend_from_slice(b"}}\n");
        out
    }

    fn json_line(ts_ms: u64, room: u64, message: &Message) -> Vec<u8> {
        let mut out = b"(what came before)".to_vec();
        write_line(&mut out, Format::Json, ts_ms, room, message);
        out.split_off(b"(what came before)".len())
    }

    /// Keys and values that need no JSON escaping, of the lengths around
    /// the fast writer's 16-byte copies; some need STT escaping.
    fn plain_text() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z]{0,3}", "[a-z0-9_@/]{14,18}", "[a-z鱼]{30,40}", "[a-zA-Z0-9 /@é鱼🐟]{0,20}"]
    }

    /// Anything, and strings full of what JSON or STT must escape.
    fn hostile_text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,20}",
            prop::collection::vec(
                prop_oneof![Just("\""), Just("\\"), Just("\n"), Just("\u{1}"), Just("@"), Just("/"), Just("é")],
                0..6
            )
            .prop_map(|pieces| pieces.concat()),
        ]
    }

    /// The fields of a body: all plain (the fast path) or with some hostile
    /// strings; up to 70 of them (more than 64 take the careful path).
    fn body_fields() -> impl Strategy<Value = Vec<(String, String)>> {
        prop_oneof![
            prop::collection::vec((plain_text(), plain_text()), 0..40),
            prop::collection::vec((plain_text(), plain_text()), 60..70),
            prop::collection::vec(
                (prop_oneof![plain_text(), hostile_text()], prop_oneof![plain_text(), hostile_text()]),
                0..40
            ),
        ]
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn json_escaping_matches_serde_json(text in any::<String>()) {
            let mut escaped = b"\"".to_vec();
            escape_into(&mut escaped, text.as_bytes());
            escaped.push(b'"');
            prop_assert_eq!(escaped, serde_json::to_vec(&text).unwrap());
        }

        #[test]
        fn json_lines_match_the_reference(
            fields in body_fields(),
            repeat in any::<prop::sample::Index>(),
            ts_ms in any::<u64>(),
            room in any::<u64>(),
        ) {
            // Half of the cases repeat one key, the rest keep the keys that
            // happen to differ.
            let mut fields = fields;
            if !fields.is_empty() && ts_ms % 2 == 0 {
                let copy = fields[repeat.index(fields.len())].0.clone();
                fields.push((copy, "again".into()));
            }
            let body = crate::douyu::stt::encode_map(fields.iter().map(|(k, v)| (k, v)));
            let message = Message::decode(&body);
            prop_assert_eq!(
                String::from_utf8(json_line(ts_ms, room, &message)).unwrap(),
                String::from_utf8(reference_json_line(ts_ms, room, &message)).unwrap()
            );
        }

        #[test]
        fn json_lines_of_any_body_match_the_reference(body in ".{0,300}") {
            let message = Message::decode(&body);
            prop_assert_eq!(json_line(1, 2, &message), reference_json_line(1, 2, &message));
        }
    }
}

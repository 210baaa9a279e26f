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

use std::io::Write;

use crate::douyu::{Message, MessageView};
use crate::monitor::LIVE_TYPE;
use crate::monitor::shard::fnv1a64;
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

fn write_json(out: &mut Vec<u8>, ts_ms: u64, room: u64, message: &Message) {
    let _ = write!(out, "{{\"ts\":{ts_ms},\"room\":{room},\"type\":");
    json_string(out, message.msg_type());
    out.extend_from_slice(b",\"fields\":{");
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, key: &str, value: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        json_string(out, key);
        out.push(b':');
        json_string(out, value);
    };
    if has_repeated_keys(message) {
        // Rare: last wins. A map of each key's last position keeps this
        // linear even for a hostile body with 100,000 fields.
        let mut last = std::collections::HashMap::with_capacity(message.fields().len());
        for (index, (key, _)) in message.fields().enumerate() {
            last.insert(key, index);
        }
        for (index, (key, value)) in message.fields().enumerate() {
            if last.get(key) == Some(&index) {
                field(out, key, value);
            }
        }
    } else {
        for (key, value) in message.fields() {
            field(out, key, value);
        }
    }
    out.extend_from_slice(b"}}\n");
}

/// Whether any key appears twice. Runs for every message, so it avoids
/// comparing every pair of keys: hash them into a stack array, sort, and
/// look at neighbours. A hash collision only sends a message down the
/// careful path, which is still right.
fn has_repeated_keys(message: &Message) -> bool {
    let mut hashes = [0u64; 64];
    let count = message.fields().len();
    if count > hashes.len() {
        return true;
    }
    for (slot, (key, _)) in hashes.iter_mut().zip(message.fields()) {
        *slot = fnv1a64(key.as_bytes());
    }
    let hashes = &mut hashes[..count];
    hashes.sort_unstable();
    hashes.windows(2).any(|pair| pair[0] == pair[1])
}

/// A JSON string literal (serde_json does the escaping).
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

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
}

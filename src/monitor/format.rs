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
//! spirit of the original tutorial's prints. Every string in it that the
//! server chose goes through [`visible`]: no control character, escape
//! sequence or bidi override from a stranger reaches the terminal.

use std::io::Write;

use crate::douyu::{Message, MessageView};
use crate::monitor::LIVE_TYPE;
use crate::monitor::shard::fnv1a64;
use crate::monitor::visible::visible;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

/// Appends `message`, received at `ts_ms` in `room`, as one line to `out`.
pub fn write_line(out: &mut Vec<u8>, format: Format, ts_ms: u64, room: u64, message: &Message) {
    match format {
        Format::Json => write_json(out, ts_ms, room, message),
        Format::Text => write_text(out, room, message),
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

fn write_text(out: &mut Vec<u8>, room: u64, message: &Message) {
    let _ = match message.view() {
        MessageView::Chat(chat) => writeln!(out, "[{room}] {}: {}", visible(chat.nickname), visible(chat.text)),
        MessageView::Enter(enter) => writeln!(out, "[{room}] {} entered", visible(enter.nickname)),
        MessageView::Gift(gift) => writeln!(
            out,
            "[{room}] {} sent {} ×{}",
            visible(gift.nickname),
            visible(gift.gift_name),
            gift.count.unwrap_or(1)
        ),
        // Status changes are told once, with a grace for streams that drop
        // and come back, by the monitor's own `barrage.live` lines.
        MessageView::RoomStatus(_) => Ok(()),
        MessageView::Other(LIVE_TYPE) => match (message.get("status"), message.get("lasted")) {
            (Some("live"), _) => writeln!(out, "[{room}] ● live now"),
            (Some("loop"), _) => writeln!(out, "[{room}] ↻ replaying (loop)"),
            (Some("offline"), Some(lasted)) => writeln!(out, "[{room}] ○ ended after {}", visible(lasted)),
            _ => writeln!(out, "[{room}] ○ offline"),
        },
        MessageView::LoginRes(_) => writeln!(out, "[{room}] logged in"),
        MessageView::Error(error) => writeln!(out, "[{room}] server error {}", error.code.unwrap_or(-1)),
        // Heartbeat echoes and server ticks are noise for a person.
        MessageView::Heartbeat | MessageView::PingReq(_) => Ok(()),
        MessageView::Other(kind) => {
            let _ = write!(out, "[{room}] {}", visible(kind));
            for (key, value) in message.fields().filter(|(k, _)| *k != "type").take(6) {
                let _ = write!(out, " {}={}", visible(key), shorten(value, 40));
            }
            writeln!(out)
        }
    };
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

//! Recorded lines read back: what `barrage watch --format json` wrote,
//! turned again into a receive time, a room and a [`Message`].
//!
//! The line contract (written by `monitor::format`) is exactly
//!
//! ```text
//! {"ts":<ms since the Unix epoch>,"room":<id>,"type":"<type>","fields":{"<key>":"<value>",…}}
//! ```
//!
//! with every field a string, each key once, and `type` equal to the
//! `type` inside `fields` (or `""` when the message had none). [`read_line`]
//! checks all of it: a recording is input from outside, a file cut short
//! by a crash, concatenated, or edited by hand, and one bad line must be
//! reported and skipped, never taken for a message.
//!
//! The message is rebuilt through STT ([`stt::push_field`], then
//! [`Message::decode`]), so it is the same value a live connection would
//! have produced: fields in their recorded order, every view working.
//! [`Pace`] says when each line is due when a recording is played in
//! time. Depending only on the protocol and `serde_json`, this module
//! serves `barrage replay` and the simulator's `serve --replay`.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::douyu::{Message, stt};

/// One recorded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// When it was received: Unix epoch milliseconds.
    pub ts_ms: u64,
    pub room: u64,
    pub message: Message,
}

/// Why a line is not a recorded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    /// Not one JSON value (a line cut short, say).
    NotJson(String),
    /// JSON, but not the contract: a missing or unknown key, a field that
    /// is not a string, a key twice, or two different types.
    Contract(String),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::NotJson(why) => write!(f, "not JSON: {why}"),
            LineError::Contract(why) => write!(f, "not a recorded message: {why}"),
        }
    }
}

impl std::error::Error for LineError {}

/// Reads one line (without its newline) and checks it against the contract.
pub fn read_line(line: &str) -> Result<Recorded, LineError> {
    // serde would take `[ts, room, type, fields]` for the struct too.
    if !line.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<de::IgnoredAny>(line) {
            Ok(_) => LineError::Contract("expected an object, {\"ts\":…}".into()),
            Err(e) => LineError::NotJson(without_position(&e)),
        });
    }
    let raw: RawLine = serde_json::from_str(line).map_err(|e| {
        let why = without_position(&e);
        match e.classify() {
            serde_json::error::Category::Data => LineError::Contract(why),
            _ => LineError::NotJson(why),
        }
    })?;
    let recorded_type = raw.fields.0.iter().find(|(key, _)| key == "type").map_or("", |(_, value)| value.as_str());
    if recorded_type != raw.kind {
        return Err(LineError::Contract(format!("\"type\" is {:?} but fields hold {recorded_type:?}", raw.kind)));
    }
    let mut body = String::new();
    for (key, value) in &raw.fields.0 {
        stt::push_field(&mut body, key, value);
    }
    Ok(Recorded { ts_ms: raw.ts, room: raw.room, message: Message::decode(&body) })
}

/// When each recorded line is due, played `speed` times as fast as it
/// came: the first at once, each later one after its distance in `ts` from
/// the first, divided by the speed. A line whose `ts` is earlier than the
/// first's (another file, a clock step) is due at once.
#[derive(Clone, Debug)]
pub struct Pace {
    speed: f64,
    /// The first line's `ts`, and when it was due.
    origin: Option<(u64, Instant)>,
}

impl Pace {
    /// `speed`: 1 is real time, 2 twice as fast.
    ///
    /// # Panics
    ///
    /// Unless `speed` is finite and above 0.
    pub fn new(speed: f64) -> Self {
        assert!(speed.is_finite() && speed > 0.0, "a speed above 0, not {speed}");
        Pace { speed, origin: None }
    }

    /// When the line received at `ts_ms` is due; the first line asked
    /// about is due at `now`, and anchors all the others.
    pub fn due(&mut self, ts_ms: u64, now: Instant) -> Instant {
        let (first_ts, started) = *self.origin.get_or_insert((ts_ms, now));
        // A `ts` ages away, or a tiny speed, is no reason to overflow the
        // clock (`Duration::div_f64` panics past its range): such a line is
        // due in a year.
        let seconds = ts_ms.saturating_sub(first_ts) as f64 / 1000.0 / self.speed;
        Duration::try_from_secs_f64(seconds)
            .ok()
            .and_then(|offset| started.checked_add(offset))
            .unwrap_or(now + Duration::from_secs(86_400 * 365))
    }
}

/// serde_json's message without its "at line 1 column 7": a recorded line
/// is one line, and the caller names the line of the file.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_string(),
        None => text,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    ts: u64,
    room: u64,
    #[serde(rename = "type")]
    kind: String,
    fields: Fields,
}

/// `fields` in their written order (a map type would sort them), each a
/// string, each key once.
struct Fields(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Fields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields: Vec<(String, String)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<FieldValue>()?.0;
                    // A repeat is rare and its check linear: bodies have tens of fields.
                    if fields.iter().any(|(seen, _)| *seen == key) {
                        return Err(de::Error::custom(format_args!("field {key:?} appears twice")));
                    }
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

/// A field's value: a string, or an error that says which kind of value
/// it was instead.
struct FieldValue(String);

impl<'de> Deserialize<'de> for FieldValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = FieldValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (every field of a recorded message is one)")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<FieldValue, E> {
                Ok(FieldValue(value.to_string()))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<FieldValue, E> {
                Ok(FieldValue(value))
            }
        }
        deserializer.deserialize_string(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::format::{Format, write_line};
    use proptest::prelude::*;

    /// The line `watch --format json` writes for `body`.
    fn recorded(ts_ms: u64, room: u64, body: &str) -> String {
        let mut out = Vec::new();
        write_line(&mut out, Format::Json, ts_ms, room, &Message::decode(body));
        String::from_utf8(out).unwrap()
    }

    /// Written, read back, written again: the same bytes.
    fn round_trip(ts_ms: u64, room: u64, body: &str) {
        let line = recorded(ts_ms, room, body);
        let back = read_line(line.trim_end_matches('\n')).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!((back.ts_ms, back.room), (ts_ms, room));
        assert_eq!(recorded(back.ts_ms, back.room, &back.message.to_body()), line, "{body:?}");
    }

    #[test]
    fn what_the_json_writer_writes_reads_back_the_same() {
        for body in [
            "type@=chatmsg/rid@=102965/uid@=36216769/nn@=小老弟233/txt@=注意保暖 \"quoted\" a@Sb\\c/cid@=7/el@=eid@AA=1@AS@S/",
            "type@=dgb/rid@=9999/gfid@=824/nn@=观众3/gfcnt@=10/",
            "hintInfo@=sec@A=1@Sname@A=全站榜@S/type@=anchor_rank2505_change/ts@=1790519460660/",
            "type@=rri/rid@=1/rid@=2/",
            "type@=chatmsg/nn@=\x1b]0;t\x07/txt@=a\u{202e}b\nc/",
            "nn@=no type at all/",
            "",
        ] {
            round_trip(1_790_519_453_293, 102965, body);
        }
    }

    #[test]
    fn the_message_is_rebuilt_with_its_fields_in_order() {
        let line = recorded(5, 6, "type@=dgb/nn@=观众3/gfcnt@=10/gfid@=824/");
        let back = read_line(line.trim_end()).unwrap();
        assert_eq!(back.message.msg_type(), "dgb");
        let keys: Vec<&str> = back.message.fields().map(|(key, _)| key).collect();
        assert_eq!(keys, ["type", "nn", "gfcnt", "gfid"]);
        assert!(matches!(back.message.view(), crate::douyu::MessageView::Gift(g) if g.gift_id == Some(824)));
    }

    #[test]
    fn a_line_off_the_contract_says_what_is_wrong() {
        let error = |line: &str| read_line(line).unwrap_err().to_string();
        assert!(error(r#"{"ts":1,"room":2,"type":"x","fie"#).starts_with("not JSON: EOF while parsing"));
        assert_eq!(error("[1,2,\"x\",{}]"), "not a recorded message: expected an object, {\"ts\":…}");
        assert_eq!(error(""), "not JSON: EOF while parsing a value");
        assert_eq!(error(r#"{"ts":1,"room":2,"type":""}"#), "not a recorded message: missing field `fields`");
        assert!(error(r#"{"ts":1,"room":2,"type":"","fields":{},"x":1}"#).contains("unknown field `x`"));
        assert!(error(r#"{"ts":-1,"room":2,"type":"","fields":{}}"#).contains("invalid value: integer `-1`"));
        assert!(
            error(r#"{"ts":1,"room":2,"type":"a","fields":{"type":"a","n":5}}"#)
                .contains("invalid type: integer `5`, expected a string"),
        );
        assert!(error(r#"{"ts":1,"room":2,"type":"a","fields":{"type":"a","type":"a"}}"#).contains("twice"));
        assert_eq!(
            error(r#"{"ts":1,"room":2,"type":"a","fields":{"type":"b"}}"#),
            "not a recorded message: \"type\" is \"a\" but fields hold \"b\""
        );
        assert!(error(r#"{"ts":1,"room":2,"type":"a","fields":{}}"#).contains("fields hold \"\""));
        assert!(read_line(r#"{"ts":1,"room":2,"type":"","fields":{}}"#).is_ok(), "an empty message");
    }

    #[test]
    fn lines_are_due_at_their_distance_from_the_first_divided_by_the_speed() {
        let start = Instant::now();
        let mut pace = Pace::new(2.0);
        assert_eq!(pace.due(10_000, start), start, "the first at once");
        // Asked later, the schedule stays anchored on the first line.
        let later = start + Duration::from_millis(300);
        assert_eq!(pace.due(11_000, later), start + Duration::from_millis(500));
        assert_eq!(pace.due(14_000, later), start + Duration::from_secs(2));
        assert_eq!(pace.due(9_000, later), start, "a ts before the first is due at once");
        assert!(pace.due(u64::MAX, later) > later, "no overflow");
        // A speed the command line accepts, however small, cannot panic.
        let mut crawl = Pace::new(1e-300);
        assert_eq!(crawl.due(0, start), start);
        assert!(crawl.due(3_600_000, start) > start + Duration::from_secs(86_400), "an hour at 1e-300 is far away");
        assert!(crawl.due(u64::MAX, start) > start);
    }

    proptest! {
        /// Any fields at all (keys unique, as the writer makes them).
        #[test]
        fn any_message_survives_the_round_trip(
            fields in proptest::collection::btree_map("[a-z@/=\\\\]{0,4}|type", "\\PC{0,12}|[@/=\\x00-\\x1f]{0,6}", 0..8),
            ts in any::<u64>(),
            room in any::<u64>(),
        ) {
            let mut body = String::new();
            for (key, value) in &fields {
                stt::push_field(&mut body, key, value);
            }
            round_trip(ts, room, &body);
        }
    }
}

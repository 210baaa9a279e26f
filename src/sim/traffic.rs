//! The room message generator: what a busy Douyu room sends, reproducibly.
//!
//! [`RoomTraffic`] makes one message body at a time for one room. It is
//! sans-IO like `douyu`: no sockets, no clock, just a seeded [`Rng`], so the
//! same seed and room id always give the same bodies in the same order, no
//! matter when or how fast they are asked for.
//!
//! # What it sends
//!
//! Field sets follow the real bodies in `protocol.md`. Per 1000 messages,
//! roughly:
//!
//! | share | type | what is special about it |
//! |---|---|---|
//! | 707 | `chatmsg` | Chinese, emoji, `/`, `@`, `@S`, `@A`, quotes, URLs, empty text, now and then 1–2 KB; a nested `el` list in 1 of 20 |
//! | 150 | `uenter` | an avatar path full of `/` |
//! | 100 | `dgb` | gifts with counts and combos (`hits` grows while one viewer repeats a gift) |
//! | 15 | `frank` | a nested list of maps (two levels of escaping) |
//! | 8 | `spbc` | a site-wide broadcast about *another* room (`rid@=0`, `drid`) |
//! | 20 | unknown | `anchor_rank2505_change` (nested map and list, `type` not first) or `lucky_wheel_2099`, an invented type with a camelCase key, a repeated key and no final `/` |
//!
//! `rss` is not drawn by chance: the room's status follows its schedule
//! (`sim::status`), and the hub asks for [`RoomTraffic::status_body`] when
//! it changes. That body takes the next number like any other message.
//! # The sequence number
//!
//! Every message carries the room's sequence number, 1, 2, 3, …, in `cid`,
//! as a decimal number (real `cid`s are hex ids of chat lines; other real
//! types have none). A client that checks `cid` is contiguous proves that
//! nothing was lost, duplicated or reordered on its connection.
//!
//! # Time
//!
//! Time fields (`cst`, `cts`, `ts`, …) come from a make-believe clock that
//! starts in 2026 and advances 0–800 ms per message, so that a body depends
//! on the seed alone and never on when it was made.

use std::fmt::Write;

use super::status::Broadcast;
use super::vocabulary::{BADGES, GIFTS, LONG_PHRASE, NICKNAMES, TEXTS};
use crate::douyu::stt;
use crate::rng::{Rng, derive_seed};

/// The mix of message types: `(weight out of 1000, kind)`.
const MIX: [(u64, Kind); 6] = [
    (707, Kind::Chat),
    (150, Kind::Enter),
    (100, Kind::Gift),
    (15, Kind::Rank),
    (8, Kind::Broadcast),
    (20, Kind::Unknown),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Chat,
    Enter,
    Gift,
    Rank,
    Broadcast,
    Unknown,
}

/// Each room has this many regular viewers; the same viewer always has the
/// same uid, nickname and level.
const VIEWERS: u64 = 500;

/// Where the make-believe clock starts (ms since 1970, in 2026).
const CLOCK_START_MS: u64 = 1_790_519_453_293;

/// One room's message stream.
#[derive(Clone, Debug)]
pub struct RoomTraffic {
    room: u64,
    rng: Rng,
    /// Sequence number of the last message made (0: none yet).
    seq: u64,
    /// The make-believe clock, in ms.
    clock_ms: u64,
    /// The last gift: `(uid, gfid, hits)`, to continue a combo.
    combo: (u64, u32, u32),
}

impl RoomTraffic {
    /// The stream of room `room` for `seed`.
    pub fn new(seed: u64, room: u64) -> Self {
        RoomTraffic { room, rng: Rng::new(derive_seed(seed, room)), seq: 0, clock_ms: CLOCK_START_MS, combo: (0, 0, 0) }
    }

    /// The room id.
    pub fn room(&self) -> u64 {
        self.room
    }

    /// The sequence number of the last message made: how many so far.
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// The next message body (STT text, ready for `frame::encode_packet`).
    pub fn next_body(&mut self) -> String {
        self.seq += 1;
        self.clock_ms += self.rng.below(801);
        let mut out = String::with_capacity(512);
        match self.pick_kind() {
            Kind::Chat => self.chat(&mut out),
            Kind::Enter => self.enter(&mut out),
            Kind::Gift => self.gift(&mut out),
            Kind::Rank => self.rank(&mut out),
            Kind::Broadcast => self.broadcast(&mut out),
            Kind::Unknown if self.rng.one_in(2) => self.anchor_rank(&mut out),
            Kind::Unknown => self.lucky_wheel(&mut out),
        }
        out
    }

    fn pick_kind(&mut self) -> Kind {
        let total: u64 = MIX.iter().map(|(weight, _)| weight).sum();
        let mut roll = self.rng.below(total);
        for (weight, kind) in MIX {
            if roll < weight {
                return kind;
            }
            roll -= weight;
        }
        unreachable!("the roll is below the sum of the weights")
    }

    // ----- the message types, field sets as in protocol.md -----------------

    fn chat(&mut self, out: &mut String) {
        let viewer = self.viewer();
        let text = self.chat_text();
        stt::push_field(out, "type", "chatmsg");
        num(out, "rid", self.room);
        num(out, "ct", *self.rng.pick(&[0, 1, 2, 14]));
        num(out, "uid", viewer.uid);
        stt::push_field(out, "nn", &viewer.nickname);
        stt::push_field(out, "txt", &text);
        num(out, "cid", self.seq);
        stt::push_field(out, "ic", &self.avatar());
        num(out, "level", viewer.level);
        num(out, "sahf", 0);
        num(out, "nl", if self.rng.one_in(10) { self.rng.between(1, 7) } else { 0 });
        num(out, "col", if self.rng.one_in(4) { self.rng.between(1, 6) } else { 0 });
        num(out, "rg", if self.rng.one_in(20) { 4 } else { 1 });
        num(out, "cst", self.clock_ms);
        self.badge(out);
        hex(out, "hc", self.rng.next_u64() as u32 as u64);
        num(out, "ifs", 1);
        if self.rng.one_in(20) {
            stt::push_field(out, "el", &self.effects());
        } else {
            stt::push_field(out, "el", "");
        }
        stt::push_field(out, "lk", "");
        num(out, "fl", self.rng.between(0, 30));
        num(out, "urlev", self.rng.between(1, 40));
        // No `dms` often means a bot sent it.
        if !self.rng.one_in(10) {
            num(out, "dms", self.rng.between(3, 5));
        }
        num(out, "pdg", self.rng.below(100));
        num(out, "pdk", self.rng.below(10));
        stt::push_field(out, "ext", "");
    }

    fn enter(&mut self, out: &mut String) {
        let viewer = self.viewer();
        stt::push_field(out, "type", "uenter");
        num(out, "rid", self.room);
        num(out, "uid", viewer.uid);
        stt::push_field(out, "nn", &viewer.nickname);
        num(out, "level", viewer.level);
        stt::push_field(out, "ic", &self.avatar());
        num(out, "sahf", 0);
        num(out, "fl", self.rng.between(0, 30));
        self.badge(out);
        num(out, "if", 1);
        num(out, "cid", self.seq);
    }

    fn gift(&mut self, out: &mut String) {
        let (last_uid, last_gift, hits) = self.combo;
        // A third of the time the previous giver repeats the gift: a combo.
        let (viewer, gift, count, hits) = if last_uid != 0 && self.rng.one_in(3) {
            let gift = *GIFTS.iter().find(|(id, _)| *id == last_gift).unwrap_or(&GIFTS[0]);
            let count = *self.rng.pick(&[1, 1, 10]);
            (self.viewer_by_uid(last_uid), gift, count, hits + count)
        } else {
            let count = *self.rng.pick(&[1, 1, 1, 5, 10, 99]);
            (self.viewer(), *self.rng.pick(&GIFTS), count, count)
        };
        self.combo = (viewer.uid, gift.0, hits);
        stt::push_field(out, "type", "dgb");
        num(out, "rid", self.room);
        num(out, "gfid", gift.0.into());
        num(out, "gs", 0);
        num(out, "uid", viewer.uid);
        stt::push_field(out, "nn", &viewer.nickname);
        stt::push_field(out, "ic", &self.avatar());
        num(out, "eid", 0);
        num(out, "eic", 0);
        num(out, "level", viewer.level);
        num(out, "gfcnt", count.into());
        num(out, "hits", hits.into());
        num(out, "bcnt", 1);
        num(out, "bst", 7);
        num(out, "ct", 1);
        self.badge(out);
        hex(out, "hc", self.rng.next_u64());
        num(out, "sahf", 0);
        num(out, "fc", 0);
        num(out, "gpf", 1);
        num(out, "pid", 268);
        num(out, "receive_uid", derive_seed(self.room, 0) % 900_000_000 + 100_000);
        stt::push_field(out, "receive_nn", "主播");
        num(out, "from", 2);
        stt::push_field(out, "gfn", gift.1);
        num(out, "fl", self.rng.between(0, 30));
        num(out, "cid", self.seq);
    }

    /// `frank`: the room's fan ranking, a list of maps nested in `list`.
    fn rank(&mut self, out: &mut String) {
        let mut list = String::new();
        for _ in 0..self.rng.between(3, 10) {
            let viewer = self.viewer();
            let mut entry = String::new();
            num(&mut entry, "uid", viewer.uid);
            stt::push_field(&mut entry, "nn", &viewer.nickname);
            stt::push_field(&mut entry, "ic", &self.avatar());
            num(&mut entry, "fim", self.rng.between(1_000, 90_000_000));
            num(&mut entry, "bl", self.rng.between(1, 30));
            num(&mut entry, "lev", viewer.level);
            num(&mut entry, "pg", 1);
            num(&mut entry, "rg", 4);
            num(&mut entry, "sahf", 0);
            num(&mut entry, "newrg", 0);
            stt::push_item(&mut list, &entry);
        }
        stt::push_field(out, "type", "frank");
        num(out, "fc", self.rng.between(100, 9_999));
        let badge = *self.rng.pick(&BADGES);
        stt::push_field(out, "bnn", badge);
        stt::push_field(out, "list", &list);
        num(out, "ver", self.rng.between(100_000, 999_999));
        hex(out, "ci", self.rng.next_u64());
        num(out, "rid", self.room);
        num(out, "cid", self.seq);
    }

    /// `rss`: the room's status is now `now` (the hub calls this only on
    /// a change). Numbered like every message; its times are the real
    /// moment of the change, `at_unix_ms`, as `betard`'s `show_time` is,
    /// so it draws nothing from the seeded stream.
    pub fn status_body(&mut self, now: Broadcast, at_unix_ms: u64) -> String {
        self.seq += 1;
        let mut out = String::with_capacity(160);
        stt::push_field(&mut out, "type", "rss");
        num(&mut out, "rt", 0);
        num(&mut out, "rtv", 0);
        num(&mut out, "rid", self.room);
        num(&mut out, "gid", 0);
        num(&mut out, "ss", now.ss().into());
        num(&mut out, "code", 0);
        num(&mut out, "notify", 0);
        num(&mut out, "endtime", at_unix_ms / 1000);
        num(&mut out, "nc", 0);
        num(&mut out, "ivl", now.ivl().into());
        num(&mut out, "sid", 0);
        num(&mut out, "cts", at_unix_ms);
        num(&mut out, "cid", self.seq);
        out
    }

    /// `spbc`: a big gift in some *other* room, announced site-wide.
    fn broadcast(&mut self, out: &mut String) {
        let sender = self.viewer();
        let (gift_id, gift_name) = *self.rng.pick(&GIFTS);
        stt::push_field(out, "type", "spbc");
        stt::push_field(out, "sn", &sender.nickname);
        let receiver = *self.rng.pick(&NICKNAMES);
        stt::push_field(out, "dn", receiver);
        stt::push_field(out, "gn", gift_name);
        num(out, "gc", 1);
        num(out, "drid", self.rng.between(1_000, 12_000_000));
        num(out, "gs", 0);
        num(out, "gb", 0);
        num(out, "es", 1);
        num(out, "gfid", gift_id.into());
        num(out, "eid", 21062);
        num(out, "bgl", 3);
        num(out, "rid", 0);
        num(out, "gid", 0);
        stt::push_field(out, "bid", &format!("106001_{}_{}", self.clock_ms / 1000, self.rng.below(100_000)));
        num(out, "from", 2);
        num(out, "cid", self.seq);
    }

    /// A real type the daemon has no view for: a nested map (`hintInfo`), a
    /// nested list of maps (`changeList`), and `type` in the middle.
    fn anchor_rank(&mut self, out: &mut String) {
        let mut hint = String::new();
        num(&mut hint, "sec", self.clock_ms / 1000);
        stt::push_field(&mut hint, "name", "全站榜");
        num(&mut hint, "id", 201);
        num(&mut hint, "source", 2);
        num(&mut hint, "rid", self.room);
        num(&mut hint, "idx", self.rng.between(1, 100));
        stt::push_field(&mut hint, "anchorName", "雨神丶");
        let mut changes = String::new();
        for (id, name) in [(203, "游戏榜"), (201, "全站榜")] {
            let mut change = String::new();
            num(&mut change, "top", *self.rng.pick(&[50, 100]));
            stt::push_field(&mut change, "name", name);
            num(&mut change, "diff", self.rng.between(1, 20));
            num(&mut change, "id", id);
            num(&mut change, "idx", self.rng.between(1, 100));
            stt::push_item(&mut changes, &change);
        }
        stt::push_field(out, "hintInfo", &hint);
        stt::push_field(out, "changeList", &changes);
        stt::push_field(out, "type", "anchor_rank2505_change");
        num(out, "ts", self.clock_ms);
        num(out, "cid", self.seq);
    }

    /// An invented type, as new ones appear all the time: a camelCase key, a
    /// plain nested list (`ail`), a nested map (`ri`), a key that repeats
    /// (`rid`: the last one wins, as in real `rri`), and no final `/`.
    fn lucky_wheel(&mut self, out: &mut String) {
        let viewer = self.viewer();
        let ail = stt::encode_list([self.rng.below(10_000).to_string(), self.rng.below(10_000).to_string()]);
        let mut ri = String::new();
        num(&mut ri, "sc", self.rng.between(1, 200_000_000));
        num(&mut ri, "idx", self.rng.between(1, 100));
        stt::push_field(out, "type", "lucky_wheel_2099");
        num(out, "rid", 0);
        stt::push_field(out, "userName", &viewer.nickname);
        stt::push_field(out, "ail", &ail);
        stt::push_field(out, "ri", &ri);
        num(out, "rid", self.room);
        num(out, "cid", self.seq);
        out.pop(); // the sloppy ending: decoders must cope
    }

    // ----- parts shared by several types ------------------------------------

    /// One of the room's regular viewers.
    fn viewer(&mut self) -> Viewer {
        let index = self.rng.below(VIEWERS);
        let uid = derive_seed(self.room, index) % 900_000_000 + 100_000;
        self.viewer_by_uid(uid)
    }

    /// The same uid always gives the same nickname and level.
    fn viewer_by_uid(&self, uid: u64) -> Viewer {
        let base = NICKNAMES[(uid % NICKNAMES.len() as u64) as usize];
        let nickname = if uid.is_multiple_of(3) { base.to_string() } else { format!("{base}{}", uid % 1000) };
        Viewer { uid, nickname, level: 1 + uid % 60 }
    }

    fn chat_text(&mut self) -> String {
        if self.rng.one_in(100) {
            LONG_PHRASE.repeat(self.rng.between(27, 50) as usize)
        } else {
            self.rng.pick(&TEXTS).to_string()
        }
    }

    /// An avatar path like `avatar_v3/202609/<32 hex digits>`.
    fn avatar(&mut self) -> String {
        format!("avatar_v3/2026{:02}/{:016x}{:016x}", self.rng.between(1, 12), self.rng.next_u64(), self.rng.next_u64())
    }

    /// Fan badge fields: most viewers wear this room's badge, some none.
    fn badge(&mut self, out: &mut String) {
        if self.rng.one_in(3) {
            stt::push_field(out, "bnn", "");
            num(out, "bl", 0);
            num(out, "brid", 0);
        } else {
            let badge = *self.rng.pick(&BADGES);
            stt::push_field(out, "bnn", badge);
            num(out, "bl", self.rng.between(1, 30));
            num(out, "brid", self.room);
        }
    }

    /// A chat line's effects, `el`: a list of one or two maps.
    fn effects(&mut self) -> String {
        let mut list = String::new();
        for _ in 0..self.rng.between(1, 2) {
            let mut effect = String::new();
            num(&mut effect, "eid", self.rng.between(1_500_000_000, 1_500_001_000));
            num(&mut effect, "etp", 1);
            num(&mut effect, "sc", 1);
            num(&mut effect, "ef", 0);
            stt::push_item(&mut list, &effect);
        }
        list
    }
}

/// A viewer's identity.
struct Viewer {
    uid: u64,
    nickname: String,
    level: u64,
}

/// Appends a numeric field. Digits never need escaping, so this skips
/// `push_field`'s scan and the temporary string.
fn num(out: &mut String, key: &str, value: u64) {
    let _ = write!(out, "{key}@={value}/");
}

/// Appends a field holding `value` in lower-case hex (`hc`, `ci`).
fn hex(out: &mut String, key: &str, value: u64) {
    let _ = write!(out, "{key}@={value:x}/");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::douyu::Message;

    fn bodies(seed: u64, room: u64, n: usize) -> Vec<String> {
        let mut traffic = RoomTraffic::new(seed, room);
        (0..n).map(|_| traffic.next_body()).collect()
    }

    #[test]
    fn same_seed_and_room_give_the_same_stream() {
        assert_eq!(bodies(7, 1001, 500), bodies(7, 1001, 500));
        assert_ne!(bodies(7, 1001, 50), bodies(7, 1002, 50));
        assert_ne!(bodies(7, 1001, 50), bodies(8, 1001, 50));
    }

    #[test]
    fn every_body_decodes_with_its_sequence_number_in_cid() {
        for (i, body) in bodies(1, 9999, 5000).iter().enumerate() {
            let message = Message::decode(body);
            assert!(!message.msg_type().is_empty(), "no type in {body}");
            assert_eq!(message.get("cid"), Some((i + 1).to_string().as_str()), "{body}");
            let rid = match message.msg_type() {
                "spbc" => Some("0"),              // about another room
                "anchor_rank2505_change" => None, // the room id is inside hintInfo
                _ => Some("9999"),
            };
            assert_eq!(message.get("rid"), rid, "{body}");
            assert!(body.len() < 8 * 1024, "{} bytes: {body}", body.len());
        }
    }

    #[test]
    fn the_mix_has_every_type_and_every_tricky_text() {
        let mut types = std::collections::BTreeMap::new();
        let mut texts = std::collections::BTreeSet::new();
        let (mut long, mut nested_el) = (0, 0);
        for body in bodies(3, 1234, 5000) {
            let message = Message::decode(&body);
            *types.entry(message.msg_type().to_string()).or_insert(0) += 1;
            if message.msg_type() == "chatmsg" {
                let text = message.get("txt").unwrap();
                if text.starts_with(LONG_PHRASE) {
                    long += 1;
                    assert!((1000..=2100).contains(&text.len()), "long text of {} bytes", text.len());
                } else {
                    assert!(TEXTS.contains(&text), "text mangled: {text:?}");
                    texts.insert(text.to_string());
                }
                let el = message.as_map().get_list("el").unwrap();
                if !el.is_empty() {
                    nested_el += 1;
                    let effect = crate::douyu::stt::decode_map(el.get(0).unwrap());
                    assert!(effect.get("eid").unwrap().starts_with("1500"));
                }
            }
        }
        for name in ["chatmsg", "uenter", "dgb", "frank", "spbc", "anchor_rank2505_change", "lucky_wheel_2099"] {
            assert!(types.contains_key(name), "no {name} in {types:?}");
        }
        assert!(!types.contains_key("rss"), "status changes follow the schedule, not chance");
        assert!(types["chatmsg"] > 3000 && types["chatmsg"] < 4000, "{types:?}");
        assert!(long > 10 && nested_el > 50, "long {long}, nested el {nested_el}");
        for tricky in ["/", "@", "@S 不是斜杠", "@AS@SA@@", "key@=value/", "", "@Alice 你好"] {
            assert!(texts.contains(tricky), "never sent {tricky:?}");
        }
    }

    #[test]
    fn nested_fields_decode_level_by_level() {
        let mut seen = (false, false, false);
        for body in bodies(5, 77, 3000) {
            let message = Message::decode(&body);
            match message.msg_type() {
                "frank" => {
                    let list = message.as_map().get_list("list").unwrap();
                    let first = crate::douyu::stt::decode_map(list.get(0).unwrap());
                    assert!(first.get("ic").unwrap().starts_with("avatar_v3/2026"));
                    assert!(first.get("uid").unwrap().parse::<u64>().is_ok());
                    seen.0 = true;
                }
                "anchor_rank2505_change" => {
                    let hint = message.as_map().get_map("hintInfo").unwrap();
                    assert_eq!(hint.get("name"), Some("全站榜"));
                    assert_eq!(message.as_map().get_list("changeList").unwrap().len(), 2);
                    seen.1 = true;
                }
                "lucky_wheel_2099" => {
                    assert!(!body.ends_with('/'));
                    assert_eq!(message.get("rid"), Some("77"), "the last rid wins");
                    assert_eq!(message.as_map().get_list("ail").unwrap().len(), 2);
                    assert!(message.as_map().get_map("ri").unwrap().get("sc").is_some());
                    seen.2 = true;
                }
                _ => {}
            }
        }
        assert_eq!(seen, (true, true, true));
    }

    #[test]
    fn a_status_body_takes_the_next_number_and_leaves_the_stream_as_it_was() {
        use crate::douyu::{LiveStatus, MessageView};
        let mut plain = RoomTraffic::new(11, 5);
        let mut with_status = RoomTraffic::new(11, 5);
        assert_eq!(plain.next_body(), with_status.next_body());
        let replay = Broadcast { status: LiveStatus::Loop, show_time: 1_790_500_000 };
        let rss = Message::decode(&with_status.status_body(replay, 1_790_500_123_456));
        assert_eq!(
            rss.view(),
            MessageView::RoomStatus(crate::douyu::message::RoomStatus {
                room_id: Some(5),
                status: Some(LiveStatus::Loop)
            })
        );
        assert_eq!(
            (rss.get("cid"), rss.get("endtime"), rss.get("cts")),
            (Some("2"), Some("1790500123"), Some("1790500123456"))
        );
        let next = Message::decode(&with_status.next_body());
        assert_eq!(next.get("cid"), Some("3"));
        // The plain stream's message 2, but for its number.
        assert_eq!(next.to_body().replace("cid@=3", "cid@=2"), Message::decode(&plain.next_body()).to_body());
    }
}

//! Messages: a decoded body, a typed view of the types a monitor cares
//! about, and the four requests a client sends.
//!
//! [`Message`] keeps *everything*: every field of the body, unescaped one
//! level, in wire order. Douyu adds message types and fields all the time,
//! and the daemon writes out all it receives, so nothing is dropped or
//! interpreted at this stage.
//!
//! [`Message::view`] then gives a typed, borrowed look at the few types
//! whose meaning we know ([`MessageView`]). It copies nothing, and a field
//! that is missing or does not parse as a number is `None` (or `""` for
//! text), never a panic. Everything else is [`MessageView::Other`], and the
//! fields are still there in the `Message`.
//!
//! The busy types (`chatmsg`, `uenter`, `dgb`: nearly all traffic) are
//! viewed in **one pass** over the fields, each known key filling its slot.
//! A key that repeats simply overwrites the earlier one, which is the same
//! "last wins" answer [`Message::get`] gives, but one scan instead of one per
//! field read: a `chatmsg` has ~30 fields and the view reads 12. The rare
//! types use `get`, which is plainer.

use std::str::FromStr;

use super::frame::{self, CLIENT_TO_SERVER};
use super::stt::{self, Map};

/// One decoded message body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    fields: Map,
    /// Where the (last) `type` field is: looked up once, asked for often.
    type_index: Option<usize>,
}

impl Message {
    /// Decodes one top-level body (one level of STT).
    pub fn decode(body: &str) -> Message {
        let mut message = Message::default();
        message.decode_from(body);
        message
    }

    /// Decodes `body` into this message, replacing it. Its buffers are
    /// kept: a decoder that reuses one message for every body it receives
    /// allocates nothing once they are big enough.
    pub fn decode_from(&mut self, body: &str) {
        self.fields.decode_from(body);
        self.type_index = self.fields.last_index_of("type");
    }

    /// The `type` field, or `""` if there is none.
    #[inline]
    pub fn msg_type(&self) -> &str {
        self.type_index.map_or("", |index| self.fields.value_at(index))
    }

    /// The value of the last field named `key` (case-sensitive).
    #[inline]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key)
    }

    /// All `(key, value)` fields in wire order, repeated keys included.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.fields.iter()
    }

    /// The fields as an STT map, e.g. for `get_list("el")` on a nested field.
    pub fn as_map(&self) -> &Map {
        &self.fields
    }

    /// Encodes the message back to an STT body.
    pub fn to_body(&self) -> String {
        self.fields.to_stt()
    }

    /// A typed view of the message, by its `type`.
    pub fn view(&self) -> MessageView<'_> {
        let m = &self.fields;
        match self.msg_type() {
            "loginres" => {
                MessageView::LoginRes(LoginRes { user_id: number(m, "userid"), live_stat: number(m, "live_stat") })
            }
            "pingreq" => MessageView::PingReq(PingReq { tick: number(m, "tick") }),
            "mrkl" => MessageView::Heartbeat,
            "chatmsg" => MessageView::Chat(Chat::from_fields(self.fields())),
            "uenter" => MessageView::Enter(Enter::from_fields(self.fields())),
            "dgb" => MessageView::Gift(Gift::from_fields(self.fields())),
            "rss" => MessageView::RoomStatus(RoomStatus {
                room_id: number(m, "rid"),
                status: LiveStatus::from_fields(number(m, "ss"), number(m, "ivl")),
            }),
            "error" => MessageView::Error(ServerError { code: number(m, "code") }),
            other => MessageView::Other(other),
        }
    }
}

/// A field parsed as a number; `None` if missing or not a number.
fn number<T: FromStr>(map: &Map, key: &str) -> Option<T> {
    map.get(key)?.parse().ok()
}

/// The message types a monitor understands, borrowing from a [`Message`].
/// Field docs give the wire key in backticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageView<'a> {
    /// `loginres`: the server accepted `loginreq`.
    LoginRes(LoginRes),
    /// `pingreq`: a server tick, sent right after `loginres`. Needs no answer.
    PingReq(PingReq),
    /// `mrkl`: the server's echo of our heartbeat.
    Heartbeat,
    /// `chatmsg`: a chat line.
    Chat(Chat<'a>),
    /// `uenter`: a viewer entered the room.
    Enter(Enter<'a>),
    /// `dgb`: a gift.
    Gift(Gift<'a>),
    /// `rss`: the room went live or offline (sent only on change).
    RoomStatus(RoomStatus),
    /// `error`: the server reports a problem and usually closes.
    Error(ServerError),
    /// Any other type, named here; its fields are in the `Message`.
    Other(&'a str),
}

/// `loginres`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginRes {
    /// `userid` (0 for anonymous clients).
    pub user_id: Option<u64>,
    /// `live_stat`.
    pub live_stat: Option<i64>,
}

/// `pingreq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingReq {
    /// `tick`: server time in milliseconds.
    pub tick: Option<u64>,
}

/// `chatmsg`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chat<'a> {
    /// `rid`: the room.
    pub room_id: Option<u64>,
    /// `uid`: the sender.
    pub user_id: Option<u64>,
    /// `nn`: the sender's nickname.
    pub nickname: &'a str,
    /// `txt`: the chat text.
    pub text: &'a str,
    /// `cid`: the message id.
    pub id: &'a str,
    /// `level`: the sender's user level.
    pub level: Option<u32>,
    /// `col`: text colour 1–6, `None` for the default.
    pub color: Option<u8>,
    /// `ic`: avatar path.
    pub avatar: &'a str,
    /// `bnn`: fan badge name.
    pub badge_name: &'a str,
    /// `bl`: fan badge level.
    pub badge_level: Option<u32>,
    /// `brid`: the room the fan badge belongs to.
    pub badge_room_id: Option<u64>,
    /// `cst`: send time in milliseconds.
    pub sent_at_ms: Option<u64>,
}

impl<'a> Chat<'a> {
    /// One pass over a `chatmsg`'s fields (see the module docs).
    fn from_fields(fields: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut chat = Chat::default();
        for (key, value) in fields {
            match key {
                "rid" => chat.room_id = value.parse().ok(),
                "uid" => chat.user_id = value.parse().ok(),
                "nn" => chat.nickname = value,
                "txt" => chat.text = value,
                "cid" => chat.id = value,
                "level" => chat.level = value.parse().ok(),
                "col" => chat.color = value.parse().ok(),
                "ic" => chat.avatar = value,
                "bnn" => chat.badge_name = value,
                "bl" => chat.badge_level = value.parse().ok(),
                "brid" => chat.badge_room_id = value.parse().ok(),
                "cst" => chat.sent_at_ms = value.parse().ok(),
                _ => {}
            }
        }
        chat
    }
}

/// `uenter`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enter<'a> {
    /// `rid`.
    pub room_id: Option<u64>,
    /// `uid`.
    pub user_id: Option<u64>,
    /// `nn`.
    pub nickname: &'a str,
    /// `level`.
    pub level: Option<u32>,
}

impl<'a> Enter<'a> {
    /// One pass over a `uenter`'s fields (see the module docs).
    fn from_fields(fields: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut enter = Enter::default();
        for (key, value) in fields {
            match key {
                "rid" => enter.room_id = value.parse().ok(),
                "uid" => enter.user_id = value.parse().ok(),
                "nn" => enter.nickname = value,
                "level" => enter.level = value.parse().ok(),
                _ => {}
            }
        }
        enter
    }
}

/// `dgb`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gift<'a> {
    /// `rid`.
    pub room_id: Option<u64>,
    /// `uid`: the giver.
    pub user_id: Option<u64>,
    /// `nn`: the giver's nickname.
    pub nickname: &'a str,
    /// `gfid`: the gift type.
    pub gift_id: Option<u64>,
    /// `gfn`: the gift's name (not always sent).
    pub gift_name: &'a str,
    /// `gfcnt`: how many in this message.
    pub count: Option<u32>,
    /// `hits`: combo counter.
    pub combo: Option<u32>,
}

impl<'a> Gift<'a> {
    /// One pass over a `dgb`'s fields (see the module docs).
    fn from_fields(fields: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut gift = Gift::default();
        for (key, value) in fields {
            match key {
                "rid" => gift.room_id = value.parse().ok(),
                "uid" => gift.user_id = value.parse().ok(),
                "nn" => gift.nickname = value,
                "gfid" => gift.gift_id = value.parse().ok(),
                "gfn" => gift.gift_name = value,
                "gfcnt" => gift.count = value.parse().ok(),
                "hits" => gift.combo = value.parse().ok(),
                _ => {}
            }
        }
        gift
    }
}

/// `rss`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomStatus {
    /// `rid`.
    pub room_id: Option<u64>,
    /// From `ss` and `ivl`; `None` if they say nothing we understand.
    pub status: Option<LiveStatus>,
}

/// Whether a room is broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveStatus {
    /// `ss=1`: the anchor is live.
    Live,
    /// `ss=0`: off air.
    Offline,
    /// `ivl=1`: a replay loop is playing. It wins over `ss`, because the
    /// viewer sees a stream either way but no one is actually live.
    Loop,
}

impl LiveStatus {
    /// Interprets `rss`'s `ss` (live) and `ivl` (loop) fields.
    pub fn from_fields(ss: Option<u8>, ivl: Option<u8>) -> Option<LiveStatus> {
        match (ss, ivl) {
            (_, Some(1)) => Some(LiveStatus::Loop),
            (Some(1), _) => Some(LiveStatus::Live),
            (Some(0), _) => Some(LiveStatus::Offline),
            _ => None,
        }
    }
}

/// `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerError {
    /// `code`.
    pub code: Option<i64>,
}

/// The `error` codes whose meaning is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 51: data transfer error. Reconnect.
    DataTransfer,
    /// 52: logged out / server closing. Reconnect.
    ServerClosing,
    /// 204: no such room. Reconnecting will not help.
    BadRoomId,
    /// Any other code, or none.
    Unknown,
}

impl ServerError {
    /// What the code means, if it is one we know.
    pub fn kind(&self) -> ErrorKind {
        match self.code {
            Some(51) => ErrorKind::DataTransfer,
            Some(52) => ErrorKind::ServerClosing,
            Some(204) => ErrorKind::BadRoomId,
            _ => ErrorKind::Unknown,
        }
    }
}

/// The requests a barrage client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `type@=loginreq/roomid@=<room>/`: the first thing sent.
    Login { room: u64 },
    /// `type@=joingroup/rid@=<room>/gid@=<group>/`: start receiving.
    /// Group -9999 ([`MASSIVE_GROUP`]) receives everything.
    JoinGroup { room: u64, group: i64 },
    /// `type@=mrkl/`: keep-alive, every 45 s.
    Heartbeat,
    /// `type@=logout/`: sent before closing.
    Logout,
}

/// The "massive barrage" group: all messages of a room.
pub const MASSIVE_GROUP: i64 = -9999;

impl Request {
    /// The STT body.
    pub fn body(&self) -> String {
        let mut body = String::with_capacity(48);
        match *self {
            Request::Login { room } => {
                stt::push_field(&mut body, "type", "loginreq");
                stt::push_field(&mut body, "roomid", &room.to_string());
            }
            Request::JoinGroup { room, group } => {
                stt::push_field(&mut body, "type", "joingroup");
                stt::push_field(&mut body, "rid", &room.to_string());
                stt::push_field(&mut body, "gid", &group.to_string());
            }
            Request::Heartbeat => stt::push_field(&mut body, "type", "mrkl"),
            Request::Logout => stt::push_field(&mut body, "type", "logout"),
        }
        body
    }

    /// Appends the complete packet (type 689) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        frame::encode_packet(out, CLIENT_TO_SERVER, &self.body());
    }

    /// The complete packet as bytes.
    pub fn to_packet(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies() {
        assert_eq!(Request::Login { room: 9999 }.body(), "type@=loginreq/roomid@=9999/");
        assert_eq!(
            Request::JoinGroup { room: 9999, group: MASSIVE_GROUP }.body(),
            "type@=joingroup/rid@=9999/gid@=-9999/"
        );
        assert_eq!(Request::Heartbeat.body(), "type@=mrkl/");
        assert_eq!(Request::Logout.body(), "type@=logout/");
        assert_eq!(Request::Heartbeat.to_packet().len(), 24);
    }

    #[test]
    fn bad_numbers_are_none() {
        let m = Message::decode("type@=chatmsg/rid@=abc/uid@=-1/level@=99999999999/col@=/");
        let MessageView::Chat(chat) = m.view() else { panic!("not a chat") };
        assert_eq!((chat.room_id, chat.user_id, chat.level, chat.color), (None, None, None, None));
        assert_eq!(chat.text, "");
    }

    #[test]
    fn live_status_from_rss() {
        let status = |body: &str| match Message::decode(body).view() {
            MessageView::RoomStatus(rss) => rss.status,
            other => panic!("{other:?}"),
        };
        assert_eq!(status("type@=rss/ss@=1/ivl@=0/"), Some(LiveStatus::Live));
        assert_eq!(status("type@=rss/ss@=0/ivl@=0/"), Some(LiveStatus::Offline));
        assert_eq!(status("type@=rss/ss@=1/ivl@=1/"), Some(LiveStatus::Loop));
        assert_eq!(status("type@=rss/ss@=x/"), None);
    }

    #[test]
    fn error_kinds_and_unknown_types() {
        let kind = |body: &str| match Message::decode(body).view() {
            MessageView::Error(e) => e.kind(),
            other => panic!("{other:?}"),
        };
        assert_eq!(kind("type@=error/code@=51/"), ErrorKind::DataTransfer);
        assert_eq!(kind("type@=error/code@=52/"), ErrorKind::ServerClosing);
        assert_eq!(kind("type@=error/code@=204/"), ErrorKind::BadRoomId);
        assert_eq!(kind("type@=error/code@=7/"), ErrorKind::Unknown);
        assert_eq!(kind("type@=error/"), ErrorKind::Unknown);
        let m = Message::decode("a@=1/type@=brand_new/");
        assert_eq!(m.view(), MessageView::Other("brand_new"));
        assert_eq!(m.get("a"), Some("1"));
        assert_eq!(Message::decode("a@=1/").view(), MessageView::Other(""));
    }
}

//! Douyu's web pages, read sans-IO: the room page, which knows a room's real
//! id, and `betard`, a room's status as JSON. The fetching is the caller's
//! (`monitor` does it on the reactor); this module builds the requests'
//! paths and headers and reads the answers.
//!
//! - **The room page**, `/{id}`: the mobile site (`m.douyu.com`, asked with
//!   a phone's `User-Agent`) embeds JSON with `"roomInfo":{"rid":NNN,…}`;
//!   the desktop site (`www.douyu.com`) says `$ROOM.room_id = NNN`. For a
//!   vanity number (6657) both name the real id (6979222), which is what
//!   the barrage server needs: joining with the vanity number gives no
//!   error and no messages.
//! - **`/betard/{rid}`** (desktop site, real ids only) answers
//!   `{"room":{"room_id":…,"show_status":1|2,"videoLoop":0|1,"show_time":…,
//!   "room_name":…,"owner_name":…,"second_lvl_name":…}}`: 1 is live, 2 off
//!   air, `videoLoop` 1 a replay loop. It sits behind a CDN cache of about
//!   a minute.

use serde::Deserialize;

use super::LiveStatus;

/// The mobile site, where room pages are lightest.
pub const MOBILE_BASE: &str = "https://m.douyu.com";
/// The desktop site: room pages (the fallback) and `betard`.
pub const DESKTOP_BASE: &str = "https://www.douyu.com";
/// The `Origin` Douyu's web player sends (on its WebSocket upgrade).
pub const DOUYU_ORIGIN: &str = "https://www.douyu.com";
/// The `Referer` Douyu's web pages send.
pub const DOUYU_REFERER: &str = "https://www.douyu.com/";
/// A current desktop Chrome, for the desktop site and the web player's
/// WebSocket.
pub const DESKTOP_USER_AGENT: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36";
/// A phone's browser, for the mobile site.
pub const MOBILE_USER_AGENT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
     (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/// The path of room `id`'s page (on either site).
pub fn room_page_path(id: u64) -> String {
    format!("/{id}")
}

/// The path of room `rid`'s status.
pub fn betard_path(rid: u64) -> String {
    format!("/betard/{rid}")
}

/// The room a user means, from what they paste: `6657`, `douyu.com/6657`,
/// `https://www.douyu.com/6657?dyshid=…`, `https://m.douyu.com/6657`, or
/// `https://www.douyu.com/topic/NAME?rid=288016` (where `rid` wins). The
/// number may still be a vanity one: look it up ([`parse_room_page`]).
pub fn room_from_text(text: &str) -> Result<u64, String> {
    let positive = |digits: &str| digits.parse::<u64>().ok().filter(|&id| id > 0);
    let text = text.trim();
    if let Some(id) = positive(text) {
        return Ok(id);
    }
    let not_a_room = || {
        format!("{text:?} is not a Douyu room: give its number (288016) or its address (https://www.douyu.com/288016)")
    };
    let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")).unwrap_or(text);
    let (host, path_and_query) = rest.split_once('/').ok_or_else(not_a_room)?;
    let host = host.to_ascii_lowercase();
    if !(host == "douyu.com" || host.ends_with(".douyu.com")) {
        return Err(not_a_room());
    }
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let rid = query.split('&').find_map(|pair| pair.strip_prefix("rid=")).and_then(positive);
    let path = path.split('#').next().unwrap_or_default().trim_end_matches('/');
    rid.or_else(|| positive(path)).ok_or_else(not_a_room)
}

/// What a room page says of the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomInfo {
    /// The real id.
    pub rid: u64,
    pub name: Option<String>,
    pub owner: Option<String>,
}

/// Reads a room page, mobile or desktop. `None` if it names no room (an
/// error page, or a page whose layout changed).
pub fn parse_room_page(html: &str) -> Option<RoomInfo> {
    mobile_room_info(html).or_else(|| desktop_room_id(html).map(|rid| RoomInfo { rid, name: None, owner: None }))
}

/// The mobile page's `"roomInfo":{…}` object.
fn mobile_room_info(html: &str) -> Option<RoomInfo> {
    #[derive(Deserialize)]
    struct Embedded {
        rid: u64,
        #[serde(rename = "roomName")]
        room_name: Option<String>,
        nickname: Option<String>,
    }
    let start = html.find("\"roomInfo\":{")? + "\"roomInfo\":".len();
    // Read the one JSON object that starts there; the rest of the page is
    // none of its business.
    let mut objects = serde_json::Deserializer::from_str(&html[start..]).into_iter::<Embedded>();
    let embedded = objects.next()?.ok()?;
    (embedded.rid > 0).then_some(RoomInfo { rid: embedded.rid, name: embedded.room_name, owner: embedded.nickname })
}

/// The desktop page's `$ROOM.room_id = NNN` (or `"room_id":NNN`).
fn desktop_room_id(html: &str) -> Option<u64> {
    ["$ROOM.room_id", "\"room_id\":", "roomID:"].iter().find_map(|marker| {
        let after = &html[html.find(marker)? + marker.len()..];
        let digits = after.trim_start_matches([' ', '=', ':', '"']);
        let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
        digits[..end].parse().ok().filter(|&rid| rid > 0)
    })
}

/// What `betard` says of a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Betard {
    pub room_id: u64,
    /// Live, off air, or looping a replay.
    pub status: LiveStatus,
    /// When the broadcast started (Unix seconds), if it did.
    pub show_time: Option<u64>,
    pub room_name: Option<String>,
    pub owner: Option<String>,
    /// The category (`second_lvl_name`).
    pub category: Option<String>,
}

/// Reads a `betard` answer. The error says what was wrong with it.
pub fn parse_betard(json: &str) -> Result<Betard, String> {
    #[derive(Deserialize)]
    struct Answer {
        room: Room,
    }
    #[derive(Deserialize)]
    struct Room {
        room_id: u64,
        show_status: u8,
        #[serde(rename = "videoLoop", default)]
        video_loop: u8,
        #[serde(default)]
        show_time: u64,
        room_name: Option<String>,
        owner_name: Option<String>,
        nickname: Option<String>,
        second_lvl_name: Option<String>,
    }
    let answer: Answer = serde_json::from_str(json).map_err(|e| format!("not a betard answer: {e}"))?;
    let room = answer.room;
    let status = match (room.show_status, room.video_loop) {
        (1, 1) => LiveStatus::Loop,
        (1, _) => LiveStatus::Live,
        (2, _) => LiveStatus::Offline,
        (other, _) => return Err(format!("show_status {other} is neither 1 (live) nor 2 (off air)")),
    };
    Ok(Betard {
        room_id: room.room_id,
        status,
        show_time: Some(room.show_time).filter(|&t| t > 0),
        room_name: room.room_name,
        owner: room.owner_name.or(room.nickname),
        category: room.second_lvl_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOBILE: &str = r#"<html><script>window.$DATA = {"pageContext":{"pageProps":{"room":{"roomInfo":{"rid":6979222,"roomName":"老马的直播间 {","nickname":"老马","isVertical":0,"roomInfo":{"x":1}}}}}}; var other = {"rid":1};</script></html>"#;

    #[test]
    fn rooms_are_read_from_everything_a_user_pastes() {
        for (text, id) in [
            ("6657", 6657),
            (" 288016 ", 288016),
            ("douyu.com/6657", 6657),
            ("https://www.douyu.com/6657", 6657),
            ("https://www.douyu.com/6657?dyshid=abc-123&x=1", 6657),
            ("https://www.douyu.com/6657/", 6657),
            ("http://m.douyu.com/6657", 6657),
            ("https://www.douyu.com/topic/S11?rid=288016", 288016),
            ("https://www.douyu.com/6657?rid=9999", 9999),
        ] {
            assert_eq!(room_from_text(text), Ok(id), "{text}");
        }
        for text in ["0", "-5", "abc", "https://www.douyu.com/topic/S11", "https://example.com/6657", "douyu.com/", ""]
        {
            let error = room_from_text(text).unwrap_err();
            assert!(error.contains("is not a Douyu room"), "{text}: {error}");
        }
    }

    #[test]
    fn the_mobile_page_names_the_real_id_and_the_room() {
        let info = parse_room_page(MOBILE).unwrap();
        assert_eq!(info, RoomInfo { rid: 6979222, name: Some("老马的直播间 {".into()), owner: Some("老马".into()) });
    }

    #[test]
    fn the_desktop_page_names_the_real_id() {
        let html = "<script>var $ROOM = {}; $ROOM.room_id = 178432; $ROOM.name = 'x';</script>";
        assert_eq!(parse_room_page(html).map(|info| info.rid), Some(178432));
        assert_eq!(parse_room_page(r#"{"room_id":5526219,"x":1}"#).map(|info| info.rid), Some(5526219));
    }

    #[test]
    fn a_page_without_a_room_says_so() {
        for html in
            ["", "<html>Not found</html>", r#""roomInfo":{"rid":"x"}"#, r#""roomInfo":{"rid":0}"#, "$ROOM.room_id = ;"]
        {
            assert_eq!(parse_room_page(html), None, "{html:?}");
        }
    }

    #[test]
    fn betard_gives_status_start_and_names() {
        let json = r#"{"room":{"room_id":6979222,"show_status":1,"videoLoop":0,"show_time":1790519453,"room_name":"r","owner_name":"o","second_lvl_name":"英雄联盟","avatar":"a"},"game":{}}"#;
        let betard = parse_betard(json).unwrap();
        assert_eq!(betard.status, LiveStatus::Live);
        assert_eq!(betard.show_time, Some(1790519453));
        assert_eq!((betard.room_name.as_deref(), betard.owner.as_deref()), (Some("r"), Some("o")));
        assert_eq!(betard.category.as_deref(), Some("英雄联盟"));
        let looping = json.replace(r#""videoLoop":0"#, r#""videoLoop":1"#);
        assert_eq!(parse_betard(&looping).unwrap().status, LiveStatus::Loop);
        let off = json.replace(r#""show_status":1"#, r#""show_status":2"#);
        assert_eq!(parse_betard(&off).unwrap().status, LiveStatus::Offline);
    }

    #[test]
    fn a_betard_error_page_is_an_error_not_a_status() {
        assert!(parse_betard("<html>error</html>").is_err());
        assert!(parse_betard(r#"{"error":0,"msg":"room does not exist"}"#).is_err());
        assert!(parse_betard(r#"{"room":{"room_id":1,"show_status":7}}"#).unwrap_err().contains("show_status 7"));
    }
}

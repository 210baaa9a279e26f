//! Which request gets which answer, and the pages themselves. Sans-IO: a
//! request head, the simulated world and the time go in, a [`Page`] comes
//! out; faults and sockets are other modules' business.
//!
//! | request | answer |
//! |---|---|
//! | `GET /{id}`, a mobile `User-Agent` | the mobile room page (`m.douyu.com`) |
//! | `GET /{id}`, any other | the desktop room page (`www.douyu.com`) |
//! | `GET /betard/{rid}` | the room's status, JSON |
//! | `GET /betard/{vanity}` | an HTML error page, status 200, as Douyu answers |
//! | an unknown room, anything else | 404 |
//! | not a `GET` | 405 |
//!
//! A vanity id's room pages are its real room's: that is how a client
//! resolves one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;

use crate::http::server::RequestHead;
use crate::rng::{Rng, derive_seed};
use crate::sim::status::{Broadcast, StatusBoard};
use crate::sim::vocabulary::{CATEGORIES, NICKNAMES, ROOM_NAMES};

pub(super) const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// Keeps room profiles apart from the room's other seeded draws.
const SALT: u64 = 0x0050_524f_4649_4c45; // "PROFILE"

/// An answer, before faults and framing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Page {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Page {
    fn html(status: u16, body: String) -> Page {
        Page { status, content_type: HTML, body: body.into_bytes() }
    }

    /// A short page for a status with nothing more to say.
    pub(super) fn status(status: u16) -> Page {
        let reason = crate::http::server::reason_phrase(status);
        Page::html(status, format!("<html><body><h1>{status} {reason}</h1></body></html>\n"))
    }
}

/// What the pages know of the simulated world.
pub(super) struct Site<'a> {
    pub seed: u64,
    /// Vanity id → real id.
    pub vanity: &'a BTreeMap<u64, u64>,
    /// Ids that are no room.
    pub unknown: &'a BTreeSet<u64>,
    pub board: &'a StatusBoard,
    pub now: Instant,
}

/// The answer to `request`.
pub(super) fn answer(request: &RequestHead<'_>, site: &Site<'_>) -> Page {
    if request.method != "GET" {
        return Page::status(405);
    }
    let segments: Vec<&str> = request.path().split('/').skip(1).collect();
    match segments[..] {
        ["betard", id] => match site.lookup(id) {
            Lookup::Room(room) => betard(&site.room(room)),
            // Douyu's betard does not resolve vanity ids: an HTML page where JSON was expected.
            Lookup::Vanity(_) => Page::html(200, error_page("房间未找到")),
            Lookup::Unknown => Page::html(404, error_page("该房间不存在")),
        },
        [id] => match site.lookup(id) {
            Lookup::Room(room) | Lookup::Vanity(room) => {
                let mobile = request.header("user-agent").is_some_and(is_mobile);
                let room = site.room(room);
                Page::html(200, if mobile { mobile_page(&room) } else { desktop_page(&room) })
            }
            Lookup::Unknown => Page::html(404, error_page("该房间不存在")),
        },
        _ => Page::html(404, error_page("页面不存在")),
    }
}

/// A phone's browser, as Douyu's servers tell one.
fn is_mobile(user_agent: &[u8]) -> bool {
    ["Mobile", "Android", "iPhone", "iPad"]
        .iter()
        .any(|word| user_agent.windows(word.len()).any(|w| w == word.as_bytes()))
}

/// What an id in a path stands for.
enum Lookup {
    /// A real room.
    Room(u64),
    /// A vanity id, with its real room.
    Vanity(u64),
    Unknown,
}

/// One room, as the pages show it.
struct Room {
    rid: u64,
    /// Its vanity id, 0 if none (Douyu's `vipId`).
    vip_id: u64,
    name: &'static str,
    nickname: String,
    category: &'static str,
    /// The part of its image URLs that is the room's own.
    image: String,
    now: Broadcast,
}

impl Site<'_> {
    fn lookup(&self, id: &str) -> Lookup {
        // Digits only, no leading zero: the form Douyu's links use.
        let canonical = !id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit());
        let Some(id) = id.parse::<u64>().ok().filter(|_| canonical) else { return Lookup::Unknown };
        match self.vanity.get(&id) {
            _ if self.unknown.contains(&id) => Lookup::Unknown,
            Some(&real) => Lookup::Vanity(real),
            None => Lookup::Room(id),
        }
    }

    /// Room `rid`'s profile (seeded: the same every time) and its status now.
    fn room(&self, rid: u64) -> Room {
        let mut rng = Rng::new(derive_seed(self.seed ^ SALT, rid));
        let (owner, name, category) = (*rng.pick(&NICKNAMES), *rng.pick(&ROOM_NAMES), *rng.pick(&CATEGORIES));
        Room {
            rid,
            vip_id: self.vanity.iter().find(|&(_, &real)| real == rid).map_or(0, |(&vanity, _)| vanity),
            name,
            nickname: format!("{owner}{}", rid % 1000),
            category,
            image: format!("2026{:02}/{:016x}{:016x}", rng.between(1, 12), rng.next_u64(), rng.next_u64()),
            now: self.board.get(rid, self.now),
        }
    }
}

impl Room {
    fn avatar(&self, size: &str) -> String {
        format!("https://apic.douyucdn.cn/upload/avatar_v3/{}_{size}.jpg", self.image)
    }
}

/// `roomInfo` of the mobile page, in the order clients' patterns expect:
/// `roomInfo":{"rid":NNN` and `"rid":NNN,"vipId"`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomInfo<'a> {
    rid: u64,
    vip_id: u64,
    room_name: &'a str,
    nickname: &'a str,
    avatar: String,
    is_live: u8,
    video_loop: u8,
    show_time: u64,
    cate2_name: &'a str,
}

#[derive(Serialize)]
struct PageContext<'a> {
    #[serde(rename = "pageProps")]
    page_props: PageProps<'a>,
}

#[derive(Serialize)]
struct PageProps<'a> {
    #[serde(rename = "roomInfo")]
    room_info: RoomInfo<'a>,
}

/// `m.douyu.com/{id}`: the room's data as JSON inside the HTML.
fn mobile_page(room: &Room) -> String {
    let info = RoomInfo {
        rid: room.rid,
        vip_id: room.vip_id,
        room_name: room.name,
        nickname: &room.nickname,
        avatar: room.avatar("middle"),
        is_live: room.now.live_stat(),
        video_loop: room.now.ivl(),
        show_time: room.now.show_time,
        cate2_name: room.category,
    };
    // Structs, not `json!`: its maps sort their keys, and `rid` must come first.
    let data = script_json(&PageContext { page_props: PageProps { room_info: info } });
    format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1,user-scalable=no\">\n\
         <title>{}_斗鱼直播</title>\n</head>\n<body>\n<div id=\"root\"></div>\n\
         <script id=\"vike_pageContext\" type=\"application/json\">{data}</script>\n</body>\n</html>\n",
        html_text(room.name)
    )
}

/// `www.douyu.com/{id}`: the room id in the page's scripts.
fn desktop_page(room: &Room) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>{}-{}_斗鱼直播</title>\n\
         <script>\nvar $ROOM = {{}};\n$ROOM.room_id = {};\n$ROOM.vipId = {};\n$ROOM.show_status = {};\n\
         $ROOM.room_name = {};\n</script>\n</head>\n<body>\n<div id=\"js-player-main\"></div>\n\
         <script>\nwindow.$DATA = {{\n    roomID: {},\n    ownerName: {},\n}};\n</script>\n</body>\n</html>\n",
        html_text(room.name),
        html_text(&room.nickname),
        room.rid,
        room.vip_id,
        room.now.show_status(),
        script_json(&room.name),
        room.rid,
        script_json(&room.nickname),
    )
}

#[derive(Serialize)]
struct Betard<'a> {
    room: BetardRoom<'a>,
}

#[derive(Serialize)]
struct BetardRoom<'a> {
    room_id: u64,
    #[serde(rename = "vipId")]
    vip_id: u64,
    room_name: &'a str,
    owner_name: &'a str,
    nickname: &'a str,
    owner_avatar: String,
    avatar: Avatar,
    show_status: u8,
    #[serde(rename = "videoLoop")]
    video_loop: u8,
    show_time: u64,
    second_lvl_name: &'a str,
    room_pic: String,
}

#[derive(Serialize)]
struct Avatar {
    big: String,
    middle: String,
    small: String,
}

/// `www.douyu.com/betard/{rid}`.
fn betard(room: &Room) -> Page {
    let betard = Betard {
        room: BetardRoom {
            room_id: room.rid,
            vip_id: room.vip_id,
            room_name: room.name,
            owner_name: &room.nickname,
            nickname: &room.nickname,
            owner_avatar: room.avatar("big"),
            avatar: Avatar { big: room.avatar("big"), middle: room.avatar("middle"), small: room.avatar("small") },
            show_status: room.now.show_status(),
            video_loop: room.now.ivl(),
            show_time: room.now.show_time,
            second_lvl_name: room.category,
            room_pic: format!("https://rpic.douyucdn.cn/asrpic/{}.jpg", room.image),
        },
    };
    let body = serde_json::to_vec(&betard).expect("serializing plain data cannot fail");
    Page { status: 200, content_type: JSON, body }
}

/// Douyu's page for a room it will not show.
fn error_page(message: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>提示信息 -斗鱼</title>\n</head>\n\
         <body>\n<div class=\"error-tip\"><p>{message}</p></div>\n</body>\n</html>\n"
    )
}

/// JSON that can sit inside a `<script>`: `<`, `>` and `&` as `\u` escapes,
/// so that no value can close the tag (`</script>`) or open a comment.
fn script_json(value: &impl Serialize) -> String {
    let json = serde_json::to_string(value).expect("serializing plain data cannot fail");
    json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

/// Text that can sit between HTML tags.
fn html_text(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::douyu::LiveStatus;
    use crate::http::server::parse_request_head;
    use std::time::Duration;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1";

    struct World {
        vanity: BTreeMap<u64, u64>,
        unknown: BTreeSet<u64>,
        board: StatusBoard,
        start: Instant,
    }

    impl World {
        fn new() -> World {
            let start = Instant::now();
            World {
                vanity: [(6657, 6979222)].into(),
                unknown: [404].into(),
                board: StatusBoard::new(1, Duration::ZERO, start, Duration::from_secs(1_790_500_000)),
                start,
            }
        }

        fn get(&self, path: &str, user_agent: &str) -> Page {
            let text = format!("GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: {user_agent}\r\n\r\n");
            let request = parse_request_head(text.as_bytes(), 8192).unwrap().unwrap();
            let site =
                Site { seed: 1, vanity: &self.vanity, unknown: &self.unknown, board: &self.board, now: self.start };
            answer(&request, &site)
        }
    }

    fn text(page: &Page) -> &str {
        std::str::from_utf8(&page.body).unwrap()
    }

    /// The number after `pattern` in `page`, as a scraper's regex takes it.
    fn number_after(page: &str, pattern: &str) -> Option<u64> {
        let rest = &page[page.find(pattern)? + pattern.len()..];
        rest[..rest.find(|c: char| !c.is_ascii_digit())?].parse().ok()
    }

    #[test]
    fn the_mobile_page_carries_room_info_as_scrapers_match_it() {
        let world = World::new();
        for path in ["/6657", "/6979222"] {
            let page = world.get(path, IPHONE);
            assert_eq!((page.status, page.content_type), (200, HTML));
            let html = text(&page);
            assert_eq!(number_after(html, "roomInfo\":{\"rid\":"), Some(6979222), "{html}");
            assert_eq!(number_after(html, "\"vipId\":"), Some(6657));
            assert!(html.contains("\"rid\":6979222,\"vipId\""), "the older pattern");
            let json = html.split("type=\"application/json\">").nth(1).unwrap().split("</script>").next().unwrap();
            let data: serde_json::Value = serde_json::from_str(json).unwrap();
            let info = &data["pageProps"]["roomInfo"];
            assert_eq!((info["isLive"].as_u64(), info["videoLoop"].as_u64()), (Some(1), Some(0)));
            assert!(info["roomName"].is_string() && info["nickname"].is_string(), "{info}");
        }
        let android = world.get("/1234", "Mozilla/5.0 (Linux; Android 14) Chrome/126.0 Mobile Safari/537.36");
        assert_eq!(number_after(text(&android), "roomInfo\":{\"rid\":"), Some(1234));
        assert_eq!(number_after(text(&android), "\"vipId\":"), Some(0));
    }

    #[test]
    fn the_desktop_page_carries_the_room_id_in_its_scripts() {
        let world = World::new();
        let page = world.get("/6657", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36");
        assert_eq!((page.status, page.content_type), (200, HTML));
        let html = text(&page);
        assert_eq!(number_after(html, "$ROOM.room_id = "), Some(6979222), "{html}");
        assert_eq!(number_after(html, "roomID: "), Some(6979222));
        assert!(!html.contains("roomInfo"));
        assert_eq!(number_after(text(&world.get("/77", "")), "$ROOM.room_id = "), Some(77), "no User-Agent: desktop");
    }

    #[test]
    fn betard_follows_the_status_board_and_refuses_vanity_ids() {
        let mut world = World::new();
        let json = |world: &World| -> serde_json::Value {
            let page = world.get("/betard/6979222", "");
            assert_eq!((page.status, page.content_type), (200, JSON));
            serde_json::from_slice::<serde_json::Value>(&page.body).unwrap()["room"].clone()
        };
        let live = json(&world);
        assert_eq!((live["room_id"].as_u64(), live["vipId"].as_u64()), (Some(6979222), Some(6657)));
        assert_eq!((live["show_status"].as_u64(), live["videoLoop"].as_u64()), (Some(1), Some(0)));
        let show_time = live["show_time"].as_u64().unwrap();
        assert!(show_time <= 1_790_500_000);
        for key in ["room_name", "owner_name", "nickname", "second_lvl_name", "owner_avatar", "room_pic"] {
            assert!(live[key].as_str().is_some_and(|s| !s.is_empty()), "{key} in {live}");
        }
        assert!(live["avatar"]["middle"].as_str().unwrap().starts_with("https://"));

        world.board.set(6979222, LiveStatus::Loop, world.start);
        let replay = json(&world);
        assert_eq!((replay["show_status"].as_u64(), replay["videoLoop"].as_u64()), (Some(1), Some(1)));
        world.board.set(6979222, LiveStatus::Offline, world.start);
        let off = json(&world);
        assert_eq!((off["show_status"].as_u64(), off["videoLoop"].as_u64()), (Some(2), Some(0)));
        assert_eq!(off["show_time"].as_u64(), Some(show_time), "the last show's start");
        assert_eq!(off["room_name"], live["room_name"], "a room keeps its profile");

        let vanity = world.get("/betard/6657", "");
        assert_eq!((vanity.status, vanity.content_type), (200, HTML));
        assert!(serde_json::from_slice::<serde_json::Value>(&vanity.body).is_err(), "not JSON");
    }

    #[test]
    fn unknown_rooms_and_other_paths_are_404_and_other_methods_405() {
        let world = World::new();
        for path in [
            "/404",
            "/betard/404",
            "/0",
            "/06657",
            "/abc",
            "/",
            "/betard",
            "/betard/",
            "/6657/x",
            "/99999999999999999999",
        ] {
            assert_eq!(world.get(path, IPHONE).status, 404, "{path}");
        }
        let post = parse_request_head(b"POST /6657 HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 8192).unwrap().unwrap();
        let site =
            Site { seed: 1, vanity: &world.vanity, unknown: &world.unknown, board: &world.board, now: world.start };
        assert_eq!(answer(&post, &site).status, 405);
        assert_eq!(world.get("/6657?from=share", IPHONE).status, 200, "a query is not part of the path");
    }

    #[test]
    fn room_names_cannot_break_out_of_the_page() {
        let world = World::new();
        let mut seen = BTreeSet::new();
        for room in 1..400 {
            for page in [world.get(&format!("/{room}"), IPHONE), world.get(&format!("/{room}"), "")] {
                let html = text(&page);
                assert_eq!(html.matches("</script>").count(), html.matches("<script").count(), "room {room}: {html}");
                assert!(!html.contains("<b>"), "room {room}: {html}");
            }
            let betard = world.get(&format!("/betard/{room}"), "");
            let json: serde_json::Value = serde_json::from_slice(&betard.body).unwrap();
            seen.insert(json["room"]["room_name"].as_str().unwrap().to_string());
        }
        assert_eq!(seen.len(), ROOM_NAMES.len(), "every name is used, and survives JSON whole");
    }
}

//! The wire bodies of `protocol.md` (a real 2026 capture and public test
//! fixtures), decoded to exact values through the public API.

use std::time::Instant;

use barrage::douyu::frame::{self, DecoderConfig, FrameDecoder, SERVER_TO_CLIENT};
use barrage::douyu::message::{Chat, Enter, Gift, LoginRes, PingReq, RoomStatus};
use barrage::douyu::stt::{self, Map};
use barrage::douyu::{ClientSession, LiveStatus, Message, MessageView, SessionConfig, SessionEvent, SessionState};

const LOGINRES: &str = "type@=loginres/userid@=0/roomgroup@=0/pg@=0/sessionid@=2/username@=/nickname@=/live_stat@=0/is_illegal@=0/ill_ct@=/ill_ts@=0/now@=0/ps@=0/es@=0/it@=0/its@=0/npv@=0/best_dlev@=0/cur_lev@=0/nrc@=3371353904/ih@=0/sid@=70071/sahf@=0/sceneid@=0/newrg@=0/regts@=0/ip@=133.440.640.599/rn@=0/rct@=0/";
const PINGREQ: &str = "type@=pingreq/tick@=1790519453293/";
const UENTER: &str = "type@=uenter/rid@=9999/uid@=889966309/nn@=观众1/level@=36/ic@=sfijdj@Sajcd@S905199@S35@S34@Sw6810m6ko60u02ox12c7450715f0937i/sahf@=0/fl@=13/bnn@=小僵尸/bl@=13/brid@=9999/if@=1/";
const CHATMSG: &str = "type@=chatmsg/rid@=102965/ct@=14/uid@=36216769/nn@=小老弟233/txt@=注意保暖/cid@=00bd3553ee494c929f45090100000000/ic@=avb8cbb3ff89cb026d88f/level@=38/sahf@=0/nl@=1/col@=1/rg@=4/cst@=1609614129227/bnn@=拒绝R/bl@=21/brid@=102965/hc@=d48b0bb9/ifs@=1/el@=/lk@=/fl@=21/urlev@=18/dms@=5/pdg@=49/pdk@=7/ext@=/";
const DGB: &str = "type@=dgb/rid@=9999/gfid@=824/gs@=0/uid@=5413638/nn@=观众3/ic@=kfzplq_d5@S716564@Sh02n8p3i08kz16fk37m91nqni8f17ve4/eid@=0/eic@=0/level@=39/gfcnt@=10/hits@=10/bcnt@=1/bst@=7/ct@=1/bnn@=集团军/bl@=22/brid@=74960/hc@=w5ul163i2mj4qy41z6136ah86m3hha46/sahf@=0/fc@=0/gpf@=1/pid@=268/bnid@=1/bnl@=1/receive_uid@=204389/receive_nn@=yyfyyf/from@=2/pfm@=8068/pma@=6424539/mss@=6424575/bcst@=1/ce@=1/gfn@=粉丝荧光棒/fl@=21/bnidv2@=10001/bcstv2@=1/abstv2@=1/wbcstv2@=1/";
const RSS: &str = "type@=rss/rt@=0/rtv@=0/rid@=12850251/gid@=0/ss@=0/code@=0/notify@=0/endtime@=1790814385/nc@=0/ivl@=0/sid@=0/cts@=1790814385555/";
const SPBC: &str = "type@=spbc/sn@=我戒了专心/dn@=Ana丷/gn@=飘雪火箭/gc@=1/drid@=9157198/gs@=0/gb@=0/es@=1/gfid@=21196/eid@=21062/bgl@=3/ifs@=-1253966326/rid@=0/gid@=0/bid@=106001_1609565923_87841/sid@=392929380/cl2@=270/eic@=20674/bbi@=21062/from@=2/gpf@=1/pid@=1269/shid@=46114580/shn@=Ana丷/";
const ONI: &str = "type@=oni/vn@=17000/rid@=9999/list@=num@AA=1@ASsl@AA=60@AS@Snum@AA=1@ASsl@AA=50@AS@S/un@=观众73/";
const FRANK: &str = "type@=frank/fc@=4395/bnn@=拒绝R/list@=uid@AA=197290249@ASnn@AA=宋宋宋555@ASic@AA=avatar_v3@AAS201809@AASde94cadbaa975630940499fdbafbf258@ASfim@AA=74078400@ASbl@AA=28@ASlev@AA=52@ASpg@AA=1@ASrg@AA=4@ASsahf@AA=0@ASnewrg@AA=0@AS@S/ver@=156739/ci@=r6ddzwf2uy/rid@=102965/";
const ANCHOR_RANK: &str = "hintInfo@=sec@A=1790519463@Sname@A=全站榜@Sid@A=201@Ssource@A=2@Srid@A=6512@Sidx@A=60@SanchorName@A=雨神丶@S/changeList@=top@AA=50@ASname@AA=游戏榜@ASdiff@AA=10@ASid@AA=203@ASidx@AA=46@AS@Stop@AA=100@ASname@AA=全站榜@ASdiff@AA=10@ASid@AA=201@ASidx@AA=60@AS@S/type@=anchor_rank2505_change/ts@=1790519460660/";

const ALL: [&str; 10] = [LOGINRES, PINGREQ, UENTER, CHATMSG, DGB, RSS, SPBC, ONI, FRANK, ANCHOR_RANK];

fn pairs(map: &Map) -> Vec<(&str, &str)> {
    map.iter().collect()
}

#[test]
fn every_fixture_re_encodes_to_itself() {
    for body in ALL {
        let message = Message::decode(body);
        assert_eq!(message.to_body(), body);
        assert_eq!(message.fields().len(), body.matches('/').count());
    }
}

#[test]
fn loginres() {
    let m = Message::decode(LOGINRES);
    assert_eq!(m.msg_type(), "loginres");
    assert_eq!(m.fields().len(), 29);
    assert_eq!(m.get("username"), Some(""));
    assert_eq!(m.get("nrc"), Some("3371353904"));
    assert_eq!(m.get("ip"), Some("133.440.640.599"));
    assert_eq!(m.get("rct"), Some("0"));
    assert_eq!(m.view(), MessageView::LoginRes(LoginRes { user_id: Some(0), live_stat: Some(0) }));
}

#[test]
fn pingreq() {
    let m = Message::decode(PINGREQ);
    assert_eq!(m.view(), MessageView::PingReq(PingReq { tick: Some(1790519453293) }));
}

#[test]
fn uenter() {
    let m = Message::decode(UENTER);
    assert_eq!(
        m.view(),
        MessageView::Enter(Enter {
            room_id: Some(9999), user_id: Some(889966309), nickname: "观众1", level: Some(36)
        })
    );
    assert_eq!(m.get("ic"), Some("sfijdj/ajcd/905199/35/34/w6810m6ko60u02ox12c7450715f0937i"));
    assert_eq!(m.get("bnn"), Some("小僵尸"));
    assert_eq!(m.get("if"), Some("1"));
}

#[test]
fn chatmsg() {
    let m = Message::decode(CHATMSG);
    assert_eq!(
        m.view(),
        MessageView::Chat(Chat {
            room_id: Some(102965),
            user_id: Some(36216769),
            nickname: "小老弟233",
            text: "注意保暖",
            id: "00bd3553ee494c929f45090100000000",
            level: Some(38),
            color: Some(1),
            avatar: "avb8cbb3ff89cb026d88f",
            badge_name: "拒绝R",
            badge_level: Some(21),
            badge_room_id: Some(102965),
            sent_at_ms: Some(1609614129227),
        })
    );
    assert_eq!(m.get("el"), Some(""));
    assert_eq!(m.get("dms"), Some("5"));
    assert_eq!(m.get("ext"), Some(""));
    assert_eq!(m.fields().last(), Some(("ext", "")));
}

#[test]
fn dgb() {
    let m = Message::decode(DGB);
    assert_eq!(
        m.view(),
        MessageView::Gift(Gift {
            room_id: Some(9999),
            user_id: Some(5413638),
            nickname: "观众3",
            gift_id: Some(824),
            gift_name: "粉丝荧光棒",
            count: Some(10),
            combo: Some(10),
        })
    );
    assert_eq!(m.get("ic"), Some("kfzplq_d5/716564/h02n8p3i08kz16fk37m91nqni8f17ve4"));
    assert_eq!(m.get("receive_nn"), Some("yyfyyf"));
}

#[test]
fn rss() {
    assert_eq!(
        Message::decode(RSS).view(),
        MessageView::RoomStatus(RoomStatus { room_id: Some(12850251), status: Some(LiveStatus::Offline) })
    );
}

#[test]
fn spbc_is_other_with_all_fields() {
    let m = Message::decode(SPBC);
    assert_eq!(m.view(), MessageView::Other("spbc"));
    assert_eq!(m.get("drid"), Some("9157198"));
    assert_eq!(m.get("rid"), Some("0"));
    assert_eq!(m.get("ifs"), Some("-1253966326"));
    assert_eq!(m.get("shn"), Some("Ana丷"));
}

#[test]
fn oni_list_of_maps() {
    let m = Message::decode(ONI);
    let list = m.as_map().get_list("list").unwrap();
    let rows: Vec<Vec<(String, String)>> = list
        .iter()
        .map(|item| stt::decode_map(item).iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        .collect();
    let row = |sl: &str| vec![("num".into(), "1".into()), ("sl".into(), sl.to_string())];
    assert_eq!(rows, [row("60"), row("50")]);
    assert_eq!(m.get("un"), Some("观众73"));
}

#[test]
fn frank_first_entry() {
    let m = Message::decode(FRANK);
    let list = m.as_map().get_list("list").unwrap();
    assert_eq!(list.len(), 1);
    let first = stt::decode_map(list.get(0).unwrap());
    assert_eq!(first.get("ic"), Some("avatar_v3/201809/de94cadbaa975630940499fdbafbf258"));
    assert_eq!(first.get("uid"), Some("197290249"));
    assert_eq!(first.get("nn"), Some("宋宋宋555"));
    assert_eq!(first.get("newrg"), Some("0"));
    assert_eq!(first.len(), 10);
    assert_eq!(m.get("rid"), Some("102965"));
}

#[test]
fn anchor_rank_type_not_first_and_nested() {
    let m = Message::decode(ANCHOR_RANK);
    assert_eq!(m.msg_type(), "anchor_rank2505_change");
    assert_eq!(m.view(), MessageView::Other("anchor_rank2505_change"));
    assert_eq!(m.get("ts"), Some("1790519460660"));

    let hint = m.as_map().get_map("hintInfo").unwrap();
    assert_eq!(
        pairs(&hint),
        [
            ("sec", "1790519463"),
            ("name", "全站榜"),
            ("id", "201"),
            ("source", "2"),
            ("rid", "6512"),
            ("idx", "60"),
            ("anchorName", "雨神丶"),
        ]
    );

    let changes = m.as_map().get_list("changeList").unwrap();
    let maps: Vec<Map> = changes.iter().map(stt::decode_map).collect();
    assert_eq!(pairs(&maps[0]), [("top", "50"), ("name", "游戏榜"), ("diff", "10"), ("id", "203"), ("idx", "46")]);
    assert_eq!(pairs(&maps[1]), [("top", "100"), ("name", "全站榜"), ("diff", "10"), ("id", "201"), ("idx", "60")]);
    assert_eq!(maps.len(), 2);
}

#[test]
fn decoded_examples() {
    // `el` is a list of one map.
    let m = stt::decode_map("el@=eid@AA=1500000113@ASetp@AA=1@ASsc@AA=1@ASef@AA=0@AS@S/");
    let el = m.get_list("el").unwrap();
    assert_eq!(el.len(), 1);
    assert_eq!(
        pairs(&stt::decode_map(el.get(0).unwrap())),
        [("eid", "1500000113"), ("etp", "1"), ("sc", "1"), ("ef", "0")]
    );
    // `ri` is a map.
    let m = stt::decode_map("ri@=sc@A=107844200@Sidx@A=26@S/");
    assert_eq!(pairs(&m.get_map("ri").unwrap()), [("sc", "107844200"), ("idx", "26")]);
    // `ail` is a list of strings.
    let m = stt::decode_map("ail@=6065@S4144@S/");
    assert_eq!(m.get_list("ail").unwrap().iter().collect::<Vec<_>>(), ["6065", "4144"]);
    // An escaped literal `@S` decodes to `@S`, never `/`.
    assert_eq!(stt::decode_map("txt@=a@ASb/").get("txt"), Some("a@Sb"));
}

#[test]
fn the_capture_as_one_stream_one_byte_at_a_time() {
    let mut wire = Vec::new();
    for body in ALL {
        frame::encode_packet(&mut wire, SERVER_TO_CLIENT, body);
    }
    let mut decoder = FrameDecoder::new(DecoderConfig::client());
    let mut bodies = Vec::new();
    for byte in &wire {
        decoder.feed(std::slice::from_ref(byte));
        while let Some(packet) = decoder.next_packet().unwrap() {
            bodies.push(packet.body.into_owned());
        }
    }
    assert_eq!(bodies, ALL);
}

#[test]
fn a_session_receives_the_capture() {
    let start = Instant::now();
    let mut session = ClientSession::new(102965, SessionConfig::default());
    session.on_connected(start);
    let mut wire = Vec::new();
    for body in ALL {
        frame::encode_packet(&mut wire, SERVER_TO_CLIENT, body);
    }
    let mut pending = Vec::new();
    for chunk in wire.chunks(7) {
        pending.extend_from_slice(chunk);
        let used = session.on_bytes(&pending, start);
        pending.drain(..used);
    }
    assert_eq!(session.state(), SessionState::Joined);
    assert_eq!(session.live_status(), Some(LiveStatus::Offline));
    let received: Vec<String> = std::iter::from_fn(|| session.poll_event())
        .filter_map(|event| match event {
            SessionEvent::Message(m) => Some(m.to_body()),
            _ => None,
        })
        .collect();
    assert_eq!(received, ALL);
}

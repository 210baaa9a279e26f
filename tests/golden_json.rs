//! The JSON line contract, pinned byte for byte.
//!
//! The golden bodies are every wire body of `protocol.md`, a fixed-seed
//! sample of the simulator's traffic (`tests/golden/sim_bodies.bin`, server
//! packets), and hostile bodies (quotes, backslashes, control bytes, invalid UTF-8,
//! repeated and empty keys, good and bad STT escapes, 10,000 fields, long
//! values, non-BMP characters, U+2028/2029, DEL). `json_lines.jsonl` is what
//! the daemon wrote for them, one line each: frame → STT → JSON, as in
//! `watch --format json`. Any change to a single byte of any line fails.
//!
//! The simulator's sample is kept as a file, not regenerated, so that a
//! change to its traffic cannot move the goalposts. To regenerate both files
//! after a deliberate change to the contract (review the diff!):
//! `BARRAGE_BLESS=1 cargo test --test golden_json`.

use std::path::PathBuf;
use std::sync::Once;

use barrage::douyu::Message;
use barrage::douyu::frame::{self, DecoderConfig, SERVER_TO_CLIENT};
use barrage::douyu::stt;
use barrage::monitor::format::{Format, write_line};
use barrage::sim::traffic::RoomTraffic;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

/// Where the simulator's sample is kept (see the module docs).
const SIM_BODIES: &str = "sim_bodies.bin";
/// The expected output.
const JSON_LINES: &str = "json_lines.jsonl";

/// The largest hostile body is well under this.
fn decoder_config() -> DecoderConfig {
    DecoderConfig { max_length: 4 << 20, ..DecoderConfig::client() }
}

/// Regenerates the files once per test run if asked to (both tests read them).
fn bless_if_asked() {
    static BLESS: Once = Once::new();
    BLESS.call_once(|| {
        if std::env::var_os("BARRAGE_BLESS").is_some() {
            let mut sample = Vec::new();
            for body in simulator_sample() {
                push_packet(&mut sample, body.as_bytes());
            }
            std::fs::write(golden(SIM_BODIES), &sample).unwrap();
            std::fs::write(golden(JSON_LINES), json_lines(&golden_wire())).unwrap();
        }
    });
}

/// What a line is stamped with: varied, including both ends of `u64`.
fn stamp(index: usize) -> (u64, u64) {
    let ts = match index % 4 {
        0 => 1_790_519_453_293 + index as u64,
        1 => 0,
        2 => u64::MAX,
        _ => 9,
    };
    let room = [102_965, u64::MAX, 0, 9999, 1][index % 5];
    (ts, room)
}

/// Decodes every packet of `wire` and formats it as the daemon does.
fn json_lines(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut index = 0;
    while let Some((packet, used)) = frame::decode_packet(&wire[pos..], &decoder_config()).unwrap() {
        pos += used;
        let (ts, room) = stamp(index);
        write_line(&mut out, Format::Json, ts, room, &Message::decode(&packet.body));
        index += 1;
    }
    assert_eq!(pos, wire.len(), "a partial packet at the end of the golden stream");
    out
}

#[test]
fn json_lines_match_the_golden_file() {
    bless_if_asked();
    let expected = std::fs::read(golden(JSON_LINES)).unwrap();
    let got = json_lines(&golden_wire());
    if got != expected {
        let got_lines: Vec<&[u8]> = got.split_inclusive(|&b| b == b'\n').collect();
        let expected_lines: Vec<&[u8]> = expected.split_inclusive(|&b| b == b'\n').collect();
        let first = (0..got_lines.len().max(expected_lines.len()))
            .find(|&i| got_lines.get(i) != expected_lines.get(i))
            .expect("the outputs differ, so some line does");
        let show = |line: Option<&&[u8]>| line.map(|l| String::from_utf8_lossy(&l[..l.len().min(300)]).into_owned());
        panic!(
            "line {} (of {} expected, {} written) differs:\n expected: {:?}\n      got: {:?}",
            first + 1,
            expected_lines.len(),
            got_lines.len(),
            show(expected_lines.get(first)),
            show(got_lines.get(first)),
        );
    }
}

#[test]
fn every_golden_line_is_one_json_object() {
    bless_if_asked();
    let expected = String::from_utf8(std::fs::read(golden(JSON_LINES)).unwrap()).unwrap();
    let lines: Vec<&str> = expected.lines().collect();
    assert_eq!(lines.len(), golden_bodies().len(), "one line per body");
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(value["fields"].is_object() && value["type"].is_string(), "{line}");
    }
}

/// Every golden body as one stream of server packets.
fn golden_wire() -> Vec<u8> {
    let mut wire = Vec::new();
    for body in golden_bodies() {
        push_packet(&mut wire, &body);
    }
    wire
}

/// `encode_packet` takes `&str`; hostile bodies are arbitrary bytes.
fn push_packet(wire: &mut Vec<u8>, body: &[u8]) {
    let length = (body.len() + frame::LENGTH_OVERHEAD) as u32;
    wire.extend_from_slice(&length.to_le_bytes());
    wire.extend_from_slice(&length.to_le_bytes());
    wire.extend_from_slice(&SERVER_TO_CLIENT.to_le_bytes());
    wire.extend_from_slice(&[0, 0]);
    wire.extend_from_slice(body);
    wire.push(0);
}

fn golden_bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = PROTOCOL_FIXTURES.iter().map(|b| b.as_bytes().to_vec()).collect();
    let sample = std::fs::read(golden(SIM_BODIES)).unwrap();
    let mut pos = 0;
    while let Some((packet, used)) = frame::decode_packet(&sample[pos..], &decoder_config()).unwrap() {
        pos += used;
        bodies.push(packet.body.as_bytes().to_vec());
    }
    bodies.extend(hostile_bodies());
    bodies
}

/// The simulator's mix: two rooms, a fixed seed.
fn simulator_sample() -> Vec<String> {
    let mut bodies = Vec::new();
    for room in [9999, 102_965] {
        let mut traffic = RoomTraffic::new(14, room);
        bodies.extend((0..150).map(|_| traffic.next_body()));
    }
    bodies
}

const PROTOCOL_FIXTURES: [&str; 14] = [
    "type@=loginres/userid@=0/roomgroup@=0/pg@=0/sessionid@=2/username@=/nickname@=/live_stat@=0/is_illegal@=0/ill_ct@=/ill_ts@=0/now@=0/ps@=0/es@=0/it@=0/its@=0/npv@=0/best_dlev@=0/cur_lev@=0/nrc@=3371353904/ih@=0/sid@=70071/sahf@=0/sceneid@=0/newrg@=0/regts@=0/ip@=133.440.640.599/rn@=0/rct@=0/",
    "type@=pingreq/tick@=1790519453293/",
    "type@=uenter/rid@=9999/uid@=889966309/nn@=观众1/level@=36/ic@=sfijdj@Sajcd@S905199@S35@S34@Sw6810m6ko60u02ox12c7450715f0937i/sahf@=0/fl@=13/bnn@=小僵尸/bl@=13/brid@=9999/if@=1/",
    "type@=chatmsg/rid@=102965/ct@=14/uid@=36216769/nn@=小老弟233/txt@=注意保暖/cid@=00bd3553ee494c929f45090100000000/ic@=avb8cbb3ff89cb026d88f/level@=38/sahf@=0/nl@=1/col@=1/rg@=4/cst@=1609614129227/bnn@=拒绝R/bl@=21/brid@=102965/hc@=d48b0bb9/ifs@=1/el@=/lk@=/fl@=21/urlev@=18/dms@=5/pdg@=49/pdk@=7/ext@=/",
    "type@=dgb/rid@=9999/gfid@=824/gs@=0/uid@=5413638/nn@=观众3/ic@=kfzplq_d5@S716564@Sh02n8p3i08kz16fk37m91nqni8f17ve4/eid@=0/eic@=0/level@=39/gfcnt@=10/hits@=10/bcnt@=1/bst@=7/ct@=1/bnn@=集团军/bl@=22/brid@=74960/hc@=w5ul163i2mj4qy41z6136ah86m3hha46/sahf@=0/fc@=0/gpf@=1/pid@=268/bnid@=1/bnl@=1/receive_uid@=204389/receive_nn@=yyfyyf/from@=2/pfm@=8068/pma@=6424539/mss@=6424575/bcst@=1/ce@=1/gfn@=粉丝荧光棒/fl@=21/bnidv2@=10001/bcstv2@=1/abstv2@=1/wbcstv2@=1/",
    "type@=rss/rt@=0/rtv@=0/rid@=12850251/gid@=0/ss@=0/code@=0/notify@=0/endtime@=1790814385/nc@=0/ivl@=0/sid@=0/cts@=1790814385555/",
    "type@=spbc/sn@=我戒了专心/dn@=Ana丷/gn@=飘雪火箭/gc@=1/drid@=9157198/gs@=0/gb@=0/es@=1/gfid@=21196/eid@=21062/bgl@=3/ifs@=-1253966326/rid@=0/gid@=0/bid@=106001_1609565923_87841/sid@=392929380/cl2@=270/eic@=20674/bbi@=21062/from@=2/gpf@=1/pid@=1269/shid@=46114580/shn@=Ana丷/",
    "type@=oni/vn@=17000/rid@=9999/list@=num@AA=1@ASsl@AA=60@AS@Snum@AA=1@ASsl@AA=50@AS@S/un@=观众73/",
    "type@=frank/fc@=4395/bnn@=拒绝R/list@=uid@AA=197290249@ASnn@AA=宋宋宋555@ASic@AA=avatar_v3@AAS201809@AASde94cadbaa975630940499fdbafbf258@ASfim@AA=74078400@ASbl@AA=28@ASlev@AA=52@ASpg@AA=1@ASrg@AA=4@ASsahf@AA=0@ASnewrg@AA=0@AS@S/ver@=156739/ci@=r6ddzwf2uy/rid@=102965/",
    "hintInfo@=sec@A=1790519463@Sname@A=全站榜@Sid@A=201@Ssource@A=2@Srid@A=6512@Sidx@A=60@SanchorName@A=雨神丶@S/changeList@=top@AA=50@ASname@AA=游戏榜@ASdiff@AA=10@ASid@AA=203@ASidx@AA=46@AS@Stop@AA=100@ASname@AA=全站榜@ASdiff@AA=10@ASid@AA=201@ASidx@AA=60@AS@S/type@=anchor_rank2505_change/ts@=1790519460660/",
    "type@=mrkl/",
    "el@=eid@AA=1500000113@ASetp@AA=1@ASsc@AA=1@ASef@AA=0@AS@S/",
    "ri@=sc@A=107844200@Sidx@A=26@S/",
    "ail@=6065@S4144@S/",
];

fn hostile_bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = [
        // JSON's own specials.
        r#"type@=chatmsg/txt@="quoted" and \"half-escaped\"/nn@="/"#,
        r"type@=chatmsg/txt@=back\slash \\ \u0041 \n (literally)/\k@=\/",
        "type@=chatmsg/txt@=tab\tnewline\ncr\rformfeed\x0cbackspace\x08bell\x07nul\0end/",
        "type@=chatmsg/txt@=DEL\x7f and C1 \u{80}\u{85}\u{9f}/",
        "type@=chatmsg/txt@=line\u{2028}para\u{2029}bom\u{feff}/",
        "type@=chatmsg/txt@=😀 𝄞 \u{10ffff} 鱼丸/nn@=🐟/",
        // Keys with specials, and a special `type`.
        "type@=a\"b\\c\nd/\"k\"@=v/k\\@=v/\n@=newline key/",
        // Repeated keys: last wins, in the position of the last one.
        "type@=rri/rid@=1/rid@=2/",
        "a@=1/b@=2/a@=3/type@=first/b@=4/c@=5/type@=second/",
        "k@=1/k@=2/k@=3/k@=4/",
        // Empty keys, values, items; no type; no final slash; words.
        "@=/@=v/k@=/type@=/",
        "//word/k@=v//",
        "",
        "/",
        "@",
        "@=",
        "type@=x/k@=no final slash",
        "type",
        // STT escapes, good and bad.
        "type@=esc/k@=@A@S@AS@AA@SS/bad@=@x@/end@=tail@/",
        "type@=esc/a@@=b/c@A@=d/@S@=slash key/@A@=at key/",
        "type@=esc/k@=@é@@=@/",
        "type@=esc/k@=a@=b@=c/",
        "type@=esc/k@=@",
    ]
    .iter()
    .map(|b| b.as_bytes().to_vec())
    .collect();

    // Every control byte and DEL, in a value and in a key.
    let controls: Vec<u8> = (0u8..0x20).chain([0x7f]).collect();
    let mut body = b"type@=controls/v@=".to_vec();
    body.extend(&controls);
    body.extend_from_slice(b"/");
    body.extend(&controls);
    body.extend_from_slice(b"@=key/");
    bodies.push(body);

    // Invalid UTF-8: decoded lossily, then escaped.
    for bad in [
        &b"\x80"[..],
        b"\xff\xfe",
        b"\xe4\xb8",     // truncated 3-byte sequence
        b"\xc0\xaf",     // overlong `/`
        b"\xed\xa0\x80", // a UTF-16 surrogate
        b"\xf8\x88\x80\x80\x80",
        b"\xf4\x90\x80\x80", // above U+10FFFF
    ] {
        let mut body = b"type@=chatmsg/txt@=before ".to_vec();
        body.extend_from_slice(bad);
        body.extend_from_slice(b" after/k");
        body.extend_from_slice(bad);
        body.extend_from_slice(b"@=v/");
        bodies.push(body);
    }

    // 10,000 distinct fields; 10,000 fields over 100 repeated keys; and the
    // sizes around 64 fields.
    let many = |count: usize, keys: usize| {
        let fields = (0..count).map(|i| (format!("k{}", i % keys), format!("v{i}")));
        let mut body = stt::encode_map([("type", "many")]);
        body.push_str(&stt::encode_map(fields));
        body.into_bytes()
    };
    bodies.push(many(10_000, 10_000));
    bodies.push(many(10_000, 100));
    for count in [63, 64, 65] {
        bodies.push(many(count, count));
        bodies.push(many(count, count - 1));
    }
    bodies.push(many(64, 1));

    // Very long values: plain, escaped for STT, and full of JSON specials.
    let long_plain = "鱼丸".repeat(5_000);
    let long_stt = stt::escape(&"a/b@c ".repeat(5_000));
    let long_json = "\"\\\n\u{1}".repeat(5_000);
    for value in [long_plain, long_stt, long_json] {
        bodies.push(format!("type@=chatmsg/txt@={value}/after@=1/").into_bytes());
    }
    bodies
}

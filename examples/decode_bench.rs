//! How fast can one core turn Douyu bytes into messages?
//!
//! Run with `cargo run --release --example decode_bench`.
//!
//! Builds two realistic streams, each one long byte stream of server packets:
//! - **fixtures**: from the `protocol.md` fixtures — mostly `chatmsg` with
//!   varied text, plus `uenter`, `dgb`, `pingreq`/`mrkl`, and some nested
//!   rankings (`frank`, `oni`, `anchor_rank2505_change`) and broadcasts
//!   (`spbc`);
//! - **simulator**: what `barrage serve` sends (`sim::traffic`, fixed seed):
//!   chat with emoji, quotes and escapes, longer on average.
//!
//! It then times, per message, what the daemon does: cut frames with
//! `frame::decode_packet`; decode the body into a `Message` and look at the
//! typed view; and the whole user-space path, frame → STT → the JSON line
//! `watch` writes, into a reused buffer. It reports the median of several
//! runs in messages/s and MB/s (of wire bytes). Goals: decoding ≥ 1 M
//! messages/s, the whole path ≥ 3 M messages/s.
//!
//! `--stream fixtures|simulator` and `--work frames|view|json` pick one row;
//! with `--runs 1 --messages 20000` that makes a short run to count the
//! instructions of just that work:
//! `valgrind --tool=callgrind --toggle-collect='decode_bench::run'
//! target/release/examples/decode_bench --runs 1 --messages 20000 --work json`
//! (then total ÷ 20,000 per stream).

use std::hint::black_box;
use std::time::{Duration, Instant};

use barrage::douyu::frame::{self, DecoderConfig, SERVER_TO_CLIENT};
use barrage::douyu::stt;
use barrage::douyu::{Message, MessageView};
use barrage::monitor::format::{Format, write_line};
use barrage::sim::traffic::RoomTraffic;

const UENTER: &str = "type@=uenter/rid@=9999/uid@=889966309/nn@=观众1/level@=36/ic@=sfijdj@Sajcd@S905199@S35@S34@Sw6810m6ko60u02ox12c7450715f0937i/sahf@=0/fl@=13/bnn@=小僵尸/bl@=13/brid@=9999/if@=1/";
const DGB: &str = "type@=dgb/rid@=9999/gfid@=824/gs@=0/uid@=5413638/nn@=观众3/ic@=kfzplq_d5@S716564@Sh02n8p3i08kz16fk37m91nqni8f17ve4/eid@=0/eic@=0/level@=39/gfcnt@=10/hits@=10/bcnt@=1/bst@=7/ct@=1/bnn@=集团军/bl@=22/brid@=74960/hc@=w5ul163i2mj4qy41z6136ah86m3hha46/sahf@=0/fc@=0/gpf@=1/pid@=268/bnid@=1/bnl@=1/receive_uid@=204389/receive_nn@=yyfyyf/from@=2/pfm@=8068/pma@=6424539/mss@=6424575/bcst@=1/ce@=1/gfn@=粉丝荧光棒/fl@=21/bnidv2@=10001/bcstv2@=1/abstv2@=1/wbcstv2@=1/";
const SPBC: &str = "type@=spbc/sn@=我戒了专心/dn@=Ana丷/gn@=飘雪火箭/gc@=1/drid@=9157198/gs@=0/gb@=0/es@=1/gfid@=21196/eid@=21062/bgl@=3/ifs@=-1253966326/rid@=0/gid@=0/bid@=106001_1609565923_87841/sid@=392929380/cl2@=270/eic@=20674/bbi@=21062/from@=2/gpf@=1/pid@=1269/shid@=46114580/shn@=Ana丷/";
const ONI: &str = "type@=oni/vn@=17000/rid@=9999/list@=num@AA=1@ASsl@AA=60@AS@Snum@AA=1@ASsl@AA=50@AS@S/un@=观众73/";
const FRANK: &str = "type@=frank/fc@=4395/bnn@=拒绝R/list@=uid@AA=197290249@ASnn@AA=宋宋宋555@ASic@AA=avatar_v3@AAS201809@AASde94cadbaa975630940499fdbafbf258@ASfim@AA=74078400@ASbl@AA=28@ASlev@AA=52@ASpg@AA=1@ASrg@AA=4@ASsahf@AA=0@ASnewrg@AA=0@AS@S/ver@=156739/ci@=r6ddzwf2uy/rid@=102965/";
const ANCHOR_RANK: &str = "hintInfo@=sec@A=1790519463@Sname@A=全站榜@Sid@A=201@Ssource@A=2@Srid@A=6512@Sidx@A=60@SanchorName@A=雨神丶@S/changeList@=top@AA=50@ASname@AA=游戏榜@ASdiff@AA=10@ASid@AA=203@ASidx@AA=46@AS@Stop@AA=100@ASname@AA=全站榜@ASdiff@AA=10@ASid@AA=201@ASidx@AA=60@AS@S/type@=anchor_rank2505_change/ts@=1790519460660/";
const PINGREQ: &str = "type@=pingreq/tick@=1790519453293/";
const MRKL: &str = "type@=mrkl/";

/// Chat lines of different lengths, some with characters that need escaping.
const TEXTS: [&str; 8] = [
    "注意保暖",
    "666",
    "主播今天状态不错啊，这波操作太秀了",
    "@Alice 你也在看？",
    "哈哈哈哈哈哈哈哈哈哈",
    "link: https://www.douyu.com/9999 /follow",
    "gg",
    "这个英雄的出装思路是什么？有没有大佬解释一下",
];

/// A `chatmsg` body shaped like the fixture, with varied user and text.
fn chat_body(i: usize) -> String {
    let uid = (36216769 + i * 7919).to_string();
    let fields = [
        ("type", "chatmsg"),
        ("rid", "102965"),
        ("ct", "14"),
        ("uid", &uid),
        ("nn", "小老弟233"),
        ("txt", TEXTS[i % TEXTS.len()]),
        ("cid", "00bd3553ee494c929f45090100000000"),
        ("ic", "avatar_v3/202101/b8cbb3ff89cb026d88f"),
        ("level", "38"),
        ("sahf", "0"),
        ("nl", "1"),
        ("col", "1"),
        ("rg", "4"),
        ("cst", "1609614129227"),
        ("bnn", "拒绝R"),
        ("bl", "21"),
        ("brid", "102965"),
        ("hc", "d48b0bb9"),
        ("ifs", "1"),
        ("el", ""),
        ("lk", ""),
        ("fl", "21"),
        ("urlev", "18"),
        ("dms", "5"),
        ("pdg", "49"),
        ("pdk", "7"),
        ("ext", ""),
    ];
    stt::encode_map(fields)
}

/// The mix, per 100 messages: 70 chat, 10 enter, 8 gift, 4 heartbeat/tick,
/// 3 frank, 2 oni, 2 anchor rank, 1 spbc.
fn body(i: usize) -> String {
    match i % 100 {
        0..70 => chat_body(i),
        70..80 => UENTER.to_string(),
        80..88 => DGB.to_string(),
        88..90 => PINGREQ.to_string(),
        90..92 => MRKL.to_string(),
        92..95 => FRANK.to_string(),
        95..97 => ONI.to_string(),
        97..99 => ANCHOR_RANK.to_string(),
        _ => SPBC.to_string(),
    }
}

/// The simulator's mix (`barrage serve`): 100 rooms in turn, a fixed seed.
fn simulator_body(i: usize, rooms: &mut [RoomTraffic]) -> String {
    let room = i % rooms.len();
    rooms[room].next_body()
}

/// What each row does with one decoded packet; returns a number to keep
/// the work from being optimized away.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Cut frames only: how much of the time is STT.
    Frames,
    /// Frames, STT into a `Message`, and the typed view of chat.
    View,
    /// Frames, STT, and the JSON line the daemon writes (`watch --format
    /// json`), into one buffer reused from line to line: the whole
    /// user-space path of a message.
    Json,
}

impl Work {
    /// For `--work`.
    fn name(self) -> &'static str {
        match self {
            Work::Frames => "frames",
            Work::View => "view",
            Work::Json => "json",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Work::Frames => "frames only",
            Work::View => "frames + STT + view",
            Work::Json => "frames + STT + JSON line",
        }
    }
}

/// Cuts every packet of `wire` and does `work` with it. Returns the number
/// of messages and a checksum. Never inlined, so that callgrind can count it
/// alone (`--toggle-collect='decode_bench::run'`).
///
/// Messages are decoded into one reused `Message`, as the daemon's rooms do
/// (`ClientSession::on_bytes_with`).
#[inline(never)]
fn run(wire: &[u8], config: &DecoderConfig, work: Work, line: &mut Vec<u8>) -> (usize, usize) {
    let mut message = Message::default();
    let mut pos = 0;
    let mut messages = 0;
    let mut checksum = 0;
    while let Some((packet, used)) = frame::decode_packet(&wire[pos..], config).unwrap() {
        pos += used;
        messages += 1;
        match work {
            Work::Frames => checksum += packet.body.len(),
            Work::View => {
                message.decode_from(&packet.body);
                checksum += message.fields().len();
                if let MessageView::Chat(chat) = message.view() {
                    checksum += chat.text.len() + chat.user_id.unwrap_or(0) as usize;
                }
            }
            Work::Json => {
                message.decode_from(&packet.body);
                line.clear();
                write_line(line, Format::Json, 1_790_519_453_293, 102_965, &message);
                checksum += line.len();
            }
        }
    }
    (messages, checksum)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The value after `--name` on the command line, if any.
fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|pair| pair[0] == name).map(|pair| pair[1].clone())
}

fn number_arg(name: &str, default: usize) -> usize {
    arg(name).map_or(default, |value| value.parse().expect("a number"))
}

fn main() {
    let runs = number_arg("--runs", 9);
    let messages = number_arg("--messages", 200_000);
    let only_stream = arg("--stream");
    let only_work = arg("--work");
    let mut rooms: Vec<RoomTraffic> = (1..=100).map(|room| RoomTraffic::new(14, room)).collect();
    let streams = [
        ("fixtures", (0..messages).map(body).collect::<Vec<_>>()),
        ("simulator", (0..messages).map(|i| simulator_body(i, &mut rooms)).collect()),
    ];
    let config = DecoderConfig::client();
    let mut line = Vec::new();
    for (name, bodies) in streams {
        if only_stream.as_ref().is_some_and(|only| only != name) {
            continue;
        }
        let mut wire = Vec::new();
        for body in &bodies {
            frame::encode_packet(&mut wire, SERVER_TO_CLIENT, body);
        }
        let mb = wire.len() as f64 / 1e6;
        println!(
            "{name} mix: {messages} messages, {mb:.1} MB, {:.0} bytes/message on average",
            wire.len() as f64 / messages as f64
        );
        for work in [Work::Frames, Work::View, Work::Json] {
            if only_work.as_ref().is_some_and(|only| only != work.name()) {
                continue;
            }
            let mut times = Vec::new();
            for _ in 0..runs {
                let start = Instant::now();
                let (count, checksum) = run(black_box(&wire), &config, work, &mut line);
                times.push(start.elapsed());
                assert_eq!(count, messages);
                black_box(checksum);
            }
            let time = median(times).as_secs_f64();
            println!(
                "  {:<26}{:>6.2} M messages/s  {:>7.0} MB/s  ({:.0} ns/message, median of {runs})",
                work.label(),
                messages as f64 / time / 1e6,
                mb / time,
                time * 1e9 / messages as f64
            );
        }
    }
}

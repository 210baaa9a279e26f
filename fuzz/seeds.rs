//! Writes the seed inputs the corpora grew from: for each target a few
//! valid conversations (Douyu traffic from the simulator's generator,
//! requests and responses, handshakes and frames, config files), each
//! behind the settings and choices bytes of a `Script` (see
//! `targets/mod.rs`).
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds -- /tmp/seeds
//! ```
//!
//! Then fuzz with `/tmp/seeds/TARGET` as a second corpus folder (see
//! README.md). The fuzzer does the rest; these only save it rediscovering
//! what a valid packet looks like.

use std::fs;
use std::path::Path;

use barrage::douyu::Request;
use barrage::douyu::frame::{SERVER_TO_CLIENT, encode_packet};
use barrage::sim::traffic::RoomTraffic;
use barrage::websocket::frame::encode_frame;
use barrage::websocket::{ClientRequest, Limits, Opcode, WebSocket};

fn main() -> std::io::Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "seeds".to_string());
    let out = Path::new(&out);
    let mut seeds: Vec<(&str, String, Vec<u8>)> = Vec::new();
    let mut add = |target, name: &str, settings, choices: &[u8], data: &[u8]| {
        seeds.push((target, name.to_string(), [&[settings, choices.len() as u8], choices, data].concat()));
    };
    let cuts = [1, 11, 12, 13, 40, 0, 200, 3];

    // Douyu: bodies from the simulator's mix, one packet each.
    let mut traffic = RoomTraffic::new(7, 9999);
    let bodies: Vec<String> = (0..40).map(|_| traffic.next_body()).collect();
    let mut stream = Vec::new();
    for body in &bodies {
        encode_packet(&mut stream, SERVER_TO_CLIENT, body);
    }
    let mut login = Vec::new();
    for body in ["type@=loginres/userid@=0/live_stat@=0/", "type@=pingreq/tick@=1790519453293/"] {
        encode_packet(&mut login, SERVER_TO_CLIENT, body);
    }
    let mut error = Vec::new();
    encode_packet(&mut error, SERVER_TO_CLIENT, "type@=error/code@=51/");
    add("frame", "stream", 0x10, &cuts, &stream[..4000.min(stream.len())]);
    add("frame", "requests", 0x18, &cuts, &Request::Login { room: 9999 }.to_packet());
    add("frame", "bad-utf8", 0x10, &[], b"\x0d\x00\x00\x00\x0d\x00\x00\x00\xb2\x02\x00\x00a\xff\xfeb\x00");
    // The session's steps (see `targets::session`).
    let read = |n: u8| n << 2;
    let read_64 = |n: u8| 1 | n << 2;
    let wait = |secs: u8| 2 | secs << 2;
    let (drain, connect, shut_down) = (3, 3 | 62 << 2, 3 | 63 << 2);
    let steps = [read(24), wait(0), drain, read_64(8), wait(15), read(40), wait(30), drain, read_64(63), wait(30)];
    add("session", "login-and-traffic", 0, &steps, &[login.as_slice(), &stream].concat());
    add("session", "server-error", 0, &[read(30), drain], &[login.as_slice(), &error].concat());
    add("session", "connect-late-shut-down", 1, &[read(10), connect, drain, shut_down, drain], &login);

    // HTTP: requests as scrapers send them, responses as servers answer.
    let get = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nUser-Agent: Prometheus/2.0\r\nAccept: */*\r\n\r\n";
    add("http_request", "get", 8, &cuts, get);
    add("http_request", "pipelined", 8, &cuts, &[&get[..], b"GET /rooms HTTP/1.0\r\n\r\n"].concat());
    add("http_request", "post", 8, &[], b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
    add("http_request", "chunked-post", 8, &[], b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunked = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nExpires: never\r\n\r\n";
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n";
    let length = format!("{head}Content-Length: 11\r\n\r\nhello world");
    let chunked_response = [format!("{head}Transfer-Encoding: chunked\r\n\r\n").as_bytes(), chunked].concat();
    let big = 0x3f; // the largest limits: 8 KiB heads and bodies
    add("http_response", "length", big, &cuts, length.as_bytes());
    add("http_response", "chunked", big, &cuts, &chunked_response);
    add("http_response", "until-close", big | 0x40, &cuts, format!("{head}\r\nbody").as_bytes());
    add("http_response", "interim", big, &[], format!("HTTP/1.1 100 Continue\r\n\r\n{length}").as_bytes());
    add("http_response", "not-modified", big, &[], b"HTTP/1.1 304 Not Modified\r\nContent-Encoding: gzip\r\n\r\n");
    add("http_response", "redirect", big, &[], b"HTTP/1.0 302 Found\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n");
    add("http_chunked", "chunked", big, &cuts, chunked);

    // WebSocket: the handshake as each side sends it, and frames after it.
    let key = *b"fuzzing-key-0123";
    let mut client = WebSocket::client(&ClientRequest::new("127.0.0.1:8502"), Limits::default(), key, 1).unwrap();
    let mut request = Vec::new();
    client.poll_transmit(&mut request);
    let mut server = WebSocket::server(Limits::default());
    server.on_bytes(&request, |_| 0);
    let mut answer = Vec::new();
    server.poll_transmit(&mut answer);
    let frames = |mask: Option<[u8; 4]>| {
        let mut out = Vec::new();
        encode_frame(&mut out, true, Opcode::Binary, mask, &stream[..300]);
        encode_frame(&mut out, false, Opcode::Binary, mask, &login);
        encode_frame(&mut out, true, Opcode::Ping, mask, b"ping");
        encode_frame(&mut out, true, Opcode::Continuation, mask, &error);
        encode_frame(&mut out, true, Opcode::Text, mask, "文字".as_bytes());
        encode_frame(&mut out, true, Opcode::Close, mask, b"\x03\xe8bye");
        out
    };
    let record = 4 << 2; // the reader takes 4 bytes at a time
    add("websocket", "client-handshake", record, &cuts, &[answer.as_slice(), &frames(None)].concat());
    add("websocket", "server-handshake", record | 1, &cuts, &[request.as_slice(), &frames(Some(*b"mask"))].concat());
    add("websocket", "client-frames", record | 2, &cuts, &frames(None));
    add("websocket", "server-frames", record | 3, &cuts, &frames(Some(*b"mask")));
    add("websocket", "stalled-reader", 3, &[], &frames(Some(*b"mask")));

    // Inputs read whole, without settings: bodies, and config files
    // (README.md's example and a few mistakes).
    for (i, body) in bodies.iter().enumerate().step_by(4) {
        seeds.push(("stt", format!("body-{i}"), body.as_bytes().to_vec()));
    }
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))?;
    let example = readme.split("```toml\n").nth(1).and_then(|rest| rest.split("```").next()).unwrap_or_default();
    seeds.push(("config", "readme".into(), example.as_bytes().to_vec()));
    seeds.push(("config", "rooms".into(), b"rooms = [288016, 0]\nservers = [\"h:0\"]\n".to_vec()));
    seeds.push(("config", "typo".into(), b"room = 1\nheartbeat = -1.5\nshard = \"1/0\"\n".to_vec()));

    for (target, name, input) in seeds {
        let dir = out.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), input)?;
    }
    println!("seeds written to {}", out.display());
    Ok(())
}

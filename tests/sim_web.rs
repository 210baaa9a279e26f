//! The simulator's web look-ups over loopback: the room pages and `betard`
//! with their content, vanity ids, 404s, status changes, each web fault,
//! the connection bounds, and HTTPS.
//!
//! The simulator runs on a reactor on this thread; each HTTP client is a
//! blocking std socket on a helper thread (`run_beside`), read with a
//! deadline. Responses are decoded with the crate's own sans-IO decoder,
//! the one the monitor's look-ups use, so a fault is seen as a client sees
//! it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use barrage::douyu::LiveStatus;
use barrage::http::{Error, Response, ResponseDecoder, ResponseLimits, Url};
use barrage::reactor::{CipherPolicy, Reactor, TlsServerConfig};
use barrage::sim::{self, SimConfig, SimServer, WebConfig, WebFault, certificate};
use common::{douyu_client, run_beside};

const DEADLINE: Duration = Duration::from_secs(20);
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
const DESKTOP: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36";

struct Web {
    reactor: Reactor,
    sim: SimServer,
    addr: SocketAddr,
}

/// A simulator with its web listener (vanity 6657 → 6979222, 404 unknown),
/// changed by `configure`.
fn start(configure: impl FnOnce(&mut WebConfig)) -> Web {
    let mut web = WebConfig { unknown_rooms: [404].into(), ..WebConfig::default() };
    configure(&mut web);
    let config = SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        rate: 0.0,
        stats_interval: None,
        vanity: [(6657, 6979222)].into(),
        web: Some(web),
        ..SimConfig::default()
    };
    let mut reactor = Reactor::new().unwrap();
    let sim = sim::start(&mut reactor, config).unwrap();
    let addr = sim.web().unwrap().local_addr();
    Web { reactor, sim, addr }
}

impl Web {
    /// Runs `client` with the web address while the simulator serves it.
    fn client<T: Send + 'static>(&mut self, client: impl FnOnce(SocketAddr) -> T + Send + 'static) -> T {
        let addr = self.addr;
        run_beside(&mut self.reactor, DEADLINE, move || client(addr))
    }

    /// `GET path` with `user_agent`, decoded.
    fn get(&mut self, path: &str, user_agent: &str) -> Response {
        let request = request(path, user_agent);
        let path = path.to_string();
        self.client(move |addr| decode(&path, &exchange(connect(addr), &request)).unwrap())
    }
}

fn request(path: &str, user_agent: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: sim\r\nUser-Agent: {user_agent}\r\nConnection: close\r\n\r\n")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    // A failing test must not hang: every read gives up at the deadline.
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Sends `request` and reads until the server closes.
fn exchange(stream: impl Read + Write, request: &str) -> Vec<u8> {
    try_exchange(stream, request).expect("the server closes within the deadline")
}

fn try_exchange(mut stream: impl Read + Write, request: &str) -> std::io::Result<Vec<u8>> {
    stream.write_all(request.as_bytes())?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// What the client's decoder makes of everything the server sent.
fn decode(path: &str, bytes: &[u8]) -> Result<Response, Error> {
    let mut decoder =
        ResponseDecoder::new(Url::parse(&format!("http://sim{path}")).unwrap(), ResponseLimits::default());
    match decoder.decode(bytes)?.response {
        Some(response) => Ok(response),
        None => Ok(decoder.decode_eof()?.expect("no response returned before")),
    }
}

/// The number after `pattern`, as a scraper's regex takes it.
fn number_after(text: &str, pattern: &str) -> Option<u64> {
    let rest = &text[text.find(pattern)? + pattern.len()..];
    rest[..rest.find(|c: char| !c.is_ascii_digit())?].parse().ok()
}

fn json(response: &Response) -> serde_json::Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("{e}: {}", response.text()))
}

// ----- pages --------------------------------------------------------------------------

#[test]
fn each_page_has_its_content_and_content_type() {
    let mut web = start(|_| {});
    let mobile = web.get("/6979222", IPHONE);
    assert_eq!((mobile.status, mobile.header("content-type")), (200, Some("text/html; charset=utf-8")));
    assert_eq!(number_after(&mobile.text(), "roomInfo\":{\"rid\":"), Some(6979222), "{}", mobile.text());
    assert!(mobile.text().contains("\"roomName\":") && mobile.text().contains("\"nickname\":"));

    let desktop = web.get("/6979222", DESKTOP);
    assert_eq!((desktop.status, desktop.header("content-type")), (200, Some("text/html; charset=utf-8")));
    assert_eq!(number_after(&desktop.text(), "$ROOM.room_id = "), Some(6979222), "{}", desktop.text());
    assert_eq!(number_after(&desktop.text(), "roomID: "), Some(6979222));

    let betard = web.get("/betard/6979222", DESKTOP);
    assert_eq!((betard.status, betard.header("content-type")), (200, Some("application/json; charset=utf-8")));
    let room = &json(&betard)["room"];
    assert_eq!((room["room_id"].as_u64(), room["vipId"].as_u64()), (Some(6979222), Some(6657)));
    assert_eq!((room["show_status"].as_u64(), room["videoLoop"].as_u64()), (Some(1), Some(0)));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(room["show_time"].as_u64().is_some_and(|t| t <= now && t + 4 * 3600 > now), "{room}");
    for key in ["room_name", "owner_name", "nickname", "second_lvl_name"] {
        assert!(room[key].as_str().is_some_and(|s| !s.is_empty()), "{key} in {room}");
    }
    // The pages agree on the room's profile.
    let page = mobile.text();
    let embedded = page.split("type=\"application/json\">").nth(1).unwrap().split("</script>").next().unwrap();
    let info = &serde_json::from_str::<serde_json::Value>(embedded).unwrap()["pageProps"]["roomInfo"];
    assert_eq!((&info["roomName"], &info["nickname"]), (&room["room_name"], &room["nickname"]));
    assert_eq!(&info["showTime"], &room["show_time"]);
}

#[test]
fn a_vanity_id_resolves_through_either_room_page_and_betard_refuses_it() {
    let mut web = start(|_| {});
    let mobile = web.get("/6657", IPHONE);
    assert_eq!(number_after(&mobile.text(), "roomInfo\":{\"rid\":"), Some(6979222));
    assert!(mobile.text().contains("\"rid\":6979222,\"vipId\":6657"), "the older clients' pattern");
    let desktop = web.get("/6657", DESKTOP);
    assert_eq!(number_after(&desktop.text(), "$ROOM.room_id = "), Some(6979222));

    let refused = web.get("/betard/6657", DESKTOP);
    assert_eq!((refused.status, refused.header("content-type")), (200, Some("text/html; charset=utf-8")));
    assert!(serde_json::from_slice::<serde_json::Value>(&refused.body).is_err(), "an HTML page, not JSON");
    assert_eq!(json(&web.get("/betard/6979222", DESKTOP))["room"]["room_id"].as_u64(), Some(6979222));
}

#[test]
fn unknown_rooms_and_other_paths_are_404() {
    let mut web = start(|_| {});
    for path in ["/404", "/betard/404", "/abc", "/0", "/", "/betard/x", "/6657/extra"] {
        let response = web.get(path, IPHONE);
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.header("content-type"), Some("text/html; charset=utf-8"));
    }
    assert_eq!(web.get("/405", IPHONE).status, 200, "any other id is a room");
}

#[test]
fn betard_and_rss_follow_the_same_status_changes() {
    let mut web = start(|_| {});
    let (_, messages) = douyu_client(&mut web.reactor, web.sim.local_addr(), 6979222, Duration::from_secs(45));
    let sim = &web.sim;
    let joined = web.reactor.run_until(Instant::now() + DEADLINE, |_| sim.members(6979222) == 1).unwrap();
    assert!(joined);
    let rss = |messages: &std::rc::Rc<std::cell::RefCell<Vec<barrage::douyu::Message>>>| {
        messages.borrow().iter().filter(|m| m.msg_type() == "rss").count()
    };
    let show_time = json(&web.get("/betard/6979222", DESKTOP))["room"]["show_time"].as_u64().unwrap();

    for (changes, status, show_status, video_loop, is_live) in
        [(1, LiveStatus::Offline, 2, 0, 0), (2, LiveStatus::Loop, 1, 1, 0), (3, LiveStatus::Live, 1, 0, 1)]
    {
        web.sim.set_status(&mut web.reactor, 6979222, status);
        let told = web.reactor.run_until(Instant::now() + DEADLINE, |_| rss(&messages) == changes).unwrap();
        assert!(told, "rss number {changes}");
        let room = json(&web.get("/betard/6979222", DESKTOP))["room"].clone();
        assert_eq!((room["show_status"].as_u64(), room["videoLoop"].as_u64()), (Some(show_status), Some(video_loop)));
        let info = web.get("/6657", IPHONE).text();
        assert_eq!(number_after(&info, "\"isLive\":"), Some(is_live), "{info}");
        if status != LiveStatus::Live {
            assert_eq!(room["show_time"].as_u64(), Some(show_time), "the last show's start");
        } else {
            assert!(room["show_time"].as_u64().unwrap() > show_time, "a new show");
        }
    }
    let last = messages.borrow().iter().rfind(|m| m.msg_type() == "rss").unwrap().clone();
    assert_eq!((last.get("ss"), last.get("ivl")), (Some("1"), Some("0")));
}

#[test]
fn requests_on_one_connection_are_answered_in_order() {
    let mut web = start(|_| {});
    let two = format!(
        "GET /betard/1 HTTP/1.1\r\nHost: sim\r\n\r\n{}",
        request("/betard/2", DESKTOP) // with Connection: close
    );
    let bytes = web.client(move |addr| exchange(connect(addr), &two));
    let mut decoder = ResponseDecoder::new(Url::parse("http://sim/betard/1").unwrap(), ResponseLimits::default());
    let progress = decoder.decode(&bytes).unwrap();
    let first = progress.response.unwrap();
    assert_eq!(first.header("connection"), Some("keep-alive"));
    let second = decode("/betard/2", &bytes[progress.consumed..]).unwrap();
    assert_eq!(second.header("connection"), Some("close"));
    assert_eq!(json(&first)["room"]["room_id"].as_u64(), Some(1));
    assert_eq!(json(&second)["room"]["room_id"].as_u64(), Some(2));
}

// ----- faults ---------------------------------------------------------------------------

#[test]
fn slow_answers_only_after_a_client_deadline_has_passed() {
    let mut web = start(|web| web.faults.add(WebFault::Slow(Duration::from_millis(600))));
    let (status, took) = web.client(|addr| {
        let mut stream = connect(addr);
        let started = Instant::now();
        stream.write_all(request("/6657", IPHONE).as_bytes()).unwrap();
        // A client with a 200 ms deadline gets nothing.
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let error = stream.read(&mut [0; 1]).expect_err("nothing within 200 ms");
        assert!(matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{error}");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        (decode("/6657", &bytes).unwrap().status, started.elapsed())
    });
    assert_eq!(status, 200, "the answer itself is whole");
    assert!(took >= Duration::from_millis(600), "answered after {took:?}");
}

#[test]
fn a_held_reply_still_reaches_a_client_that_has_finished_sending() {
    let mut web = start(|web| {
        web.faults.add(WebFault::Slow(Duration::from_millis(100)));
        web.faults.add(WebFault::Oversize(1 << 20));
    });
    let bytes = web.client(|addr| {
        let mut stream = connect(addr);
        stream.write_all(request("/betard/1", DESKTOP).as_bytes()).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        bytes
    });
    assert_eq!(decode("/betard/1", &bytes).unwrap().body.len(), 1 << 20, "held, then streamed whole");
}

#[test]
fn every_nth_request_is_a_503() {
    let mut web = start(|web| web.faults.add(WebFault::ServerError { every: 3 }));
    let statuses: Vec<u16> = (1..=6).map(|room| web.get(&format!("/betard/{room}"), DESKTOP).status).collect();
    assert_eq!(statuses, [200, 200, 503, 200, 200, 503]);
}

#[test]
fn truncate_closes_before_the_announced_body_ends() {
    let mut web = start(|web| web.faults.add(WebFault::Truncate));
    let bytes = web.client(|addr| exchange(connect(addr), &request("/betard/6979222", DESKTOP)));
    assert_eq!(decode("/betard/6979222", &bytes), Err(Error::Truncated));
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let announced: usize =
        number_after(&String::from_utf8_lossy(&bytes[..head_end]), "Content-Length: ").unwrap() as usize;
    assert_eq!(bytes.len() - head_end, announced / 2);
}

#[test]
fn a_redirect_loop_goes_back_and_forth_for_ever() {
    let mut web = start(|web| web.faults.add(WebFault::RedirectLoop));
    let mut path = "/6657".to_string();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let response = web.get(&path, IPHONE);
        assert_eq!(response.status, 302);
        path = response.header("location").unwrap().to_string();
        seen.push(path.clone());
    }
    assert_eq!(seen, ["/6657?redirect=loop", "/6657", "/6657?redirect=loop", "/6657"]);
}

#[test]
fn an_oversized_body_is_announced_then_streamed_whole() {
    let size = 3 << 20;
    let mut web = start(|web| web.faults.add(WebFault::Oversize(size)));
    let bytes = web.client(|addr| exchange(connect(addr), &request("/betard/1", DESKTOP)));
    assert_eq!(decode("/betard/1", &bytes), Err(Error::BodyTooLarge { limit: 2 << 20 }), "refused from the head");
    let mut big = ResponseDecoder::new(
        Url::parse("http://sim/betard/1").unwrap(),
        ResponseLimits { max_body: 4 << 20, ..ResponseLimits::default() },
    );
    let response = big.decode(&bytes).unwrap().response.expect("complete");
    assert_eq!(response.body.len() as u64, size);
    assert!(response.body.starts_with(b"{\"room\":{\"room_id\":1,"), "the page first, then filler");
}

// ----- bounds ---------------------------------------------------------------------------

#[test]
fn slow_heads_get_408_long_heads_431_and_silent_connections_a_close() {
    let mut web = start(|web| {
        web.limits.head_timeout = Duration::from_millis(200);
        web.limits.idle_timeout = Duration::from_millis(300);
    });
    let slow = web.client(|addr| exchange(connect(addr), "GET /6657 HTTP/1.1\r\nHost:"));
    assert_eq!(decode("/", &slow).unwrap().status, 408);
    let long = format!("GET /6657 HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    let long = web.client(move |addr| exchange(connect(addr), &long));
    assert_eq!(decode("/", &long).unwrap().status, 431);
    let silent = web.client(|addr| exchange(connect(addr), ""));
    assert!(silent.is_empty(), "closed without a word");
}

#[test]
fn connections_beyond_the_limit_are_refused_until_one_closes() {
    let mut web = start(|web| web.limits.max_connections = 2);
    let keep_alive = "GET /betard/1 HTTP/1.1\r\nHost: sim\r\n\r\n";
    web.client(move |addr| {
        // Two connections, each answered once and kept open.
        let mut open: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
        for stream in &mut open {
            stream.write_all(keep_alive.as_bytes()).unwrap();
            let mut buf = [0; 4096];
            assert!(stream.read(&mut buf).unwrap() > 0, "answered");
        }
        let mut third = connect(addr);
        let _ = third.write_all(keep_alive.as_bytes());
        let mut rest = Vec::new();
        let refused = matches!(third.read_to_end(&mut rest), Ok(0) | Err(_));
        assert!(refused && rest.is_empty(), "the third was refused: {:?}", String::from_utf8_lossy(&rest));

        drop(open.pop());
        // Once the server has seen the close, a newcomer is served (until
        // then each is refused: closed, or reset).
        let deadline = Instant::now() + DEADLINE;
        let served = std::iter::from_fn(|| {
            (Instant::now() < deadline).then(|| try_exchange(connect(addr), &request("/1", DESKTOP)))
        })
        .take(10_000)
        .any(|bytes| bytes.is_ok_and(|bytes| !bytes.is_empty()));
        assert!(served, "a place came free");
    });
}

// ----- HTTPS ----------------------------------------------------------------------------

#[test]
fn https_serves_the_same_pages_and_drops_a_silent_handshake() {
    let made = certificate::self_signed_localhost().unwrap();
    let tls = TlsServerConfig::from_pem(&made.cert_pem, &made.key_pem, CipherPolicy::Modern).unwrap();
    let mut web = start(|web| {
        web.tls = Some(tls);
        web.limits.head_timeout = Duration::from_millis(200);
    });
    assert!(web.sim.web().unwrap().base_url().starts_with("https://127.0.0.1:"));
    let ca = made.cert_pem.clone();
    let bytes = web.client(move |addr| {
        let mut connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
        connector.cert_store_mut().add_cert(openssl::x509::X509::from_pem(&ca).unwrap()).unwrap();
        let stream = connector.build().connect("localhost", connect(addr)).expect("a verified handshake");
        exchange(stream, &request("/6657", IPHONE))
    });
    let page = decode("/6657", &bytes).unwrap();
    assert_eq!(number_after(&page.text(), "roomInfo\":{\"rid\":"), Some(6979222));

    let silent = web.client(|addr| exchange(connect(addr), ""));
    assert!(silent.is_empty(), "no handshake within the head timeout: closed");
}

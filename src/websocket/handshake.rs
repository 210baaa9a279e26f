//! The opening handshake (RFC 6455 §4), both sides: an HTTP/1.1 `GET` that
//! asks to upgrade, a `101 Switching Protocols` that agrees, and a key that
//! proves the server read the request.
//!
//! ```text
//!  client                                          server
//!  GET / HTTP/1.1                ────────────▶     check_request
//!  Upgrade: websocket, Connection: Upgrade,        (GET, HTTP/1.1, Host, tokens,
//!  Sec-WebSocket-Key: base64(16 random bytes),      version 13, a 16-byte key)
//!  Sec-WebSocket-Version: 13
//!  check_response               ◀────────────      HTTP/1.1 101 Switching Protocols
//!  (101, tokens, accept key)                       Sec-WebSocket-Accept:
//!                                                    base64(SHA-1(key + GUID))
//! ```
//!
//! Everything here is a pure function over bytes. Heads are read by
//! [`http::head::parse_head`](crate::http::head::parse_head), as every HTTP
//! head is, within `max_head` bytes: a head that has not ended by then is an
//! error, not a reason to buffer more. The checkers return how long the head
//! was, so the bytes after it (frames that came in the same read) stay with
//! the caller.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

use crate::http::head::{self, HeadError, HeadStatus, MAX_HEADERS};

/// Fixed by RFC 6455 §1.3 and appended to every key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Key` for 16 random bytes: their base64.
pub fn encode_key(random: [u8; 16]) -> String {
    BASE64.encode(random)
}

/// `Sec-WebSocket-Accept` for a key, as sent (still base64):
/// base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    BASE64.encode(sha1.finalize())
}

/// Why an opening handshake failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The head did not end within `max_head` bytes.
    HeadTooLarge { max: usize },
    /// Not an HTTP/1.x head.
    Malformed(httparse::Error),
    /// HTTP/1.0: an upgrade needs 1.1.
    NotHttp11,
    /// The server answered with this status instead of 101.
    Status(u16),
    /// The request's method was not `GET`.
    NotGet,
    /// A required header is missing or says something else.
    BadHeader(&'static str),
    /// `Sec-WebSocket-Accept` does not match the key sent: not a WebSocket
    /// server (or a confused proxy).
    BadAccept,
    /// The server chose an extension or subprotocol the client did not offer.
    Unrequested(&'static str),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::HeadTooLarge { max } => write!(f, "HTTP head longer than {max} bytes"),
            HandshakeError::Malformed(error) => write!(f, "malformed HTTP head: {error}"),
            HandshakeError::NotHttp11 => write!(f, "HTTP/1.0 instead of HTTP/1.1"),
            HandshakeError::Status(status) => write!(f, "upgrade refused with HTTP status {status}"),
            HandshakeError::NotGet => write!(f, "upgrade request is not a GET"),
            HandshakeError::BadHeader(name) => write!(f, "missing or wrong {name} header"),
            HandshakeError::BadAccept => write!(f, "Sec-WebSocket-Accept does not match the key sent"),
            HandshakeError::Unrequested(name) => write!(f, "server chose a {name} the client did not offer"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// A client's upgrade request. `Origin`, `Referer` and `User-Agent` are
/// the caller's to give (a browser sends all three); none is sent unless
/// given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// `Host`: the server's name, with `:port` unless it is the scheme's
    /// default (`danmuproxy.douyu.com:8502`).
    pub host: String,
    /// The request target (`/`).
    pub path: String,
    /// `Origin`; `None` sends none.
    pub origin: Option<String>,
    /// `Referer`; `None` sends none.
    pub referer: Option<String>,
    /// `User-Agent`; `None` sends none.
    pub user_agent: Option<String>,
}

/// A configured header value that would break the request (a line break
/// would even let it add headers of its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidHeader {
    pub name: &'static str,
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} for a WebSocket request (empty, or a control character)", self.name)
    }
}

impl std::error::Error for InvalidHeader {}

impl ClientRequest {
    /// A request for `/` on `host`, with no `Origin`, `Referer` or
    /// `User-Agent` (set the fields to send them).
    pub fn new(host: impl Into<String>) -> Self {
        ClientRequest { host: host.into(), path: "/".to_string(), origin: None, referer: None, user_agent: None }
    }

    /// Appends the request head carrying `key` (from [`encode_key`]).
    pub fn encode(&self, key: &str, out: &mut Vec<u8>) -> Result<(), InvalidHeader> {
        // Host and path are single tokens; the others may contain spaces.
        let token = |value: &str| !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80);
        let text = |value: &str| value.bytes().all(|b| b == b'\t' || !b.is_ascii_control());
        if !token(&self.host) {
            return Err(InvalidHeader { name: "Host" });
        }
        if !token(&self.path) || !self.path.starts_with('/') {
            return Err(InvalidHeader { name: "path" });
        }
        let optional = [("Origin", &self.origin), ("Referer", &self.referer), ("User-Agent", &self.user_agent)];
        if let Some((name, _)) = optional.iter().find(|(_, value)| value.as_deref().is_some_and(|v| !text(v))) {
            return Err(InvalidHeader { name });
        }

        out.extend_from_slice(format!("GET {} HTTP/1.1\r\n", self.path).as_bytes());
        let mut line = |name: &str, value: &str| {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        };
        line("Host", &self.host);
        line("Upgrade", "websocket");
        line("Connection", "Upgrade");
        line("Sec-WebSocket-Key", key);
        line("Sec-WebSocket-Version", "13");
        for (name, value) in optional {
            if let Some(value) = value {
                line(name, value);
            }
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// Checks the server's response to a request that carried the key whose
/// [`accept_key`] is `expected_accept`.
///
/// - `Ok(Some(head_len))`: a valid 101; frames start at `head_len`;
/// - `Ok(None)`: the head has not ended yet (and is under `max_head`);
/// - `Err(_)`: the upgrade failed.
pub fn check_response(buf: &[u8], expected_accept: &str, max_head: usize) -> Result<Option<usize>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let Some(head_len) = parse_head(buf, max_head, |window| response.parse(window))? else {
        return Ok(None);
    };
    if response.version != Some(1) {
        return Err(HandshakeError::NotHttp11);
    }
    if response.code != Some(101) {
        return Err(HandshakeError::Status(response.code.unwrap_or(0)));
    }
    check_upgrade_tokens(response.headers)?;
    let accept = header(response.headers, "Sec-WebSocket-Accept").ok_or(HandshakeError::BadAccept)?;
    if accept.trim_ascii() != expected_accept.as_bytes() {
        return Err(HandshakeError::BadAccept);
    }
    // We offered neither; a server that picks one speaks something else.
    for name in ["Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol"] {
        if header(response.headers, name).is_some() {
            return Err(HandshakeError::Unrequested(name));
        }
    }
    Ok(Some(head_len))
}

/// A valid upgrade request, as the server sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedRequest {
    /// Length of the request head; frames start there.
    pub head_len: usize,
    /// The value for `Sec-WebSocket-Accept`.
    pub accept: String,
}

/// Checks a client's upgrade request (the server side of
/// [`check_response`]); `Ok(None)` while the head has not ended.
pub fn check_request(buf: &[u8], max_head: usize) -> Result<Option<AcceptedRequest>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let Some(head_len) = parse_head(buf, max_head, |window| request.parse(window))? else {
        return Ok(None);
    };
    if request.method != Some("GET") {
        return Err(HandshakeError::NotGet);
    }
    if request.version != Some(1) {
        return Err(HandshakeError::NotHttp11);
    }
    if header(request.headers, "Host").is_none() {
        return Err(HandshakeError::BadHeader("Host"));
    }
    check_upgrade_tokens(request.headers)?;
    if header(request.headers, "Sec-WebSocket-Version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(HandshakeError::BadHeader("Sec-WebSocket-Version"));
    }
    let key = header(request.headers, "Sec-WebSocket-Key").map(<[u8]>::trim_ascii).unwrap_or_default();
    if BASE64.decode(key).map(|raw| raw.len()) != Ok(16) {
        return Err(HandshakeError::BadHeader("Sec-WebSocket-Key"));
    }
    Ok(Some(AcceptedRequest { head_len, accept: accept_key(key) }))
}

/// Appends the server's `101 Switching Protocols`.
pub fn encode_accept(accept: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .as_bytes(),
    );
}

/// Appends the server's refusal of a bad request: 426 with the version it
/// speaks for a wrong version (§4.4), 400 otherwise.
pub fn encode_reject(error: &HandshakeError, out: &mut Vec<u8>) {
    let head: &[u8] = match error {
        HandshakeError::BadHeader("Sec-WebSocket-Version") => {
            b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        }
        _ => b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    };
    out.extend_from_slice(head);
}

/// Reads the head at the front of `buf` with `parse`: its length once it
/// has ended, `None` while it may still end within `max_head` bytes.
fn parse_head<'b>(
    buf: &'b [u8],
    max_head: usize,
    parse: impl FnMut(&'b [u8]) -> httparse::Result<usize>,
) -> Result<Option<usize>, HandshakeError> {
    match head::parse_head(buf, 0, max_head, parse) {
        Ok(HeadStatus::Complete(len)) => Ok(Some(len)),
        Ok(HeadStatus::Partial { .. }) => Ok(None),
        Err(HeadError::TooLarge) => Err(HandshakeError::HeadTooLarge { max: max_head }),
        Err(HeadError::Malformed(error)) => Err(HandshakeError::Malformed(error)),
    }
}

/// `Upgrade: websocket` and `Connection: Upgrade`, each a token in a
/// comma-separated list, in any case (`Connection: keep-alive, Upgrade`).
fn check_upgrade_tokens(headers: &[httparse::Header<'_>]) -> Result<(), HandshakeError> {
    for (name, token) in [("Upgrade", "websocket"), ("Connection", "upgrade")] {
        let found = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()));
        if !found {
            return Err(HandshakeError::BadHeader(name));
        }
    }
    Ok(())
}

/// The value of the first header called `name` (any case).
fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    const MAX: usize = 16 * 1024;

    fn response(lines: &[&str]) -> Vec<u8> {
        let mut head = lines.join("\r\n");
        head.push_str("\r\n\r\n");
        head.into_bytes()
    }

    fn good_response() -> Vec<u8> {
        response(&[
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            &format!("Sec-WebSocket-Accept: {ACCEPT}"),
        ])
    }

    fn request_for(key: &str) -> Vec<u8> {
        let mut out = Vec::new();
        ClientRequest::new("danmuproxy.douyu.com:8502").encode(key, &mut out).unwrap();
        out
    }

    /// The worked example of RFC 6455 §1.3.
    #[test]
    fn rfc_sample_key_gives_the_rfc_accept() {
        assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
        assert_eq!(encode_key(*b"the sample nonce"), KEY);
    }

    #[test]
    fn the_request_carries_the_upgrade_and_the_headers_given() {
        let browser = ClientRequest {
            path: "/chat".into(),
            origin: Some("https://example.com".into()),
            referer: Some("https://example.com/room".into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
            ..ClientRequest::new("danmuproxy.douyu.com:8502")
        };
        let mut out = Vec::new();
        browser.encode(KEY, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /chat HTTP/1.1\r\nHost: danmuproxy.douyu.com:8502\r\n"), "{text}");
        for line in [
            "Upgrade: websocket",
            "Connection: Upgrade",
            &format!("Sec-WebSocket-Key: {KEY}"),
            "Sec-WebSocket-Version: 13",
            "Origin: https://example.com",
            "Referer: https://example.com/room",
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64)",
        ] {
            assert!(text.contains(&format!("\r\n{line}\r\n")), "{line} missing from {text}");
        }
        assert!(text.ends_with("\r\n\r\n"));

        let text = String::from_utf8(request_for(KEY)).unwrap();
        assert!(!text.contains("Origin") && !text.contains("Referer") && !text.contains("User-Agent"), "{text}");
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let mut out = Vec::new();
        let evil = ClientRequest { user_agent: Some("x\r\nCookie: y".into()), ..ClientRequest::new("h") };
        assert_eq!(evil.encode(KEY, &mut out), Err(InvalidHeader { name: "User-Agent" }));
        assert_eq!(ClientRequest::new("a b").encode(KEY, &mut out), Err(InvalidHeader { name: "Host" }));
        assert_eq!(ClientRequest::new("").encode(KEY, &mut out), Err(InvalidHeader { name: "Host" }));
        let no_slash = ClientRequest { path: "x".into(), ..ClientRequest::new("h") };
        assert_eq!(no_slash.encode(KEY, &mut out), Err(InvalidHeader { name: "path" }));
        assert!(out.is_empty(), "nothing is written for a refused request");
    }

    #[test]
    fn a_valid_101_is_accepted_and_its_length_returned() {
        let mut wire = good_response();
        let head_len = wire.len();
        wire.extend_from_slice(&[0x82, 0x01, 0xAA]); // a frame in the same read
        assert_eq!(check_response(&wire, ACCEPT, MAX), Ok(Some(head_len)));
        for cut in 0..head_len {
            assert_eq!(check_response(&wire[..cut], ACCEPT, MAX), Ok(None), "cut at {cut}");
        }
        // Tokens in any case and inside lists.
        let relaxed = response(&[
            "HTTP/1.1 101 OK",
            "upgrade: WebSocket",
            "connection: keep-alive, upgrade",
            &format!("sec-websocket-accept:  {ACCEPT} "),
        ]);
        assert_eq!(check_response(&relaxed, ACCEPT, MAX), Ok(Some(relaxed.len())));
    }

    #[test]
    fn responses_that_refuse_or_confuse_are_errors() {
        let accept = format!("Sec-WebSocket-Accept: {ACCEPT}");
        let cases: [(&[&str], HandshakeError); 8] = [
            (&["HTTP/1.1 403 Forbidden", "Content-Length: 0"], HandshakeError::Status(403)),
            (&["HTTP/1.1 200 OK"], HandshakeError::Status(200)),
            (&["HTTP/1.0 101 Switching Protocols"], HandshakeError::NotHttp11),
            (&["HTTP/1.1 101 x", "Connection: Upgrade", &accept], HandshakeError::BadHeader("Upgrade")),
            (&["HTTP/1.1 101 x", "Upgrade: websocket", &accept], HandshakeError::BadHeader("Connection")),
            (&["HTTP/1.1 101 x", "Upgrade: websocket", "Connection: Upgrade"], HandshakeError::BadAccept),
            (
                &["HTTP/1.1 101 x", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: AAAA"],
                HandshakeError::BadAccept,
            ),
            (
                &[
                    "HTTP/1.1 101 x",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    &accept,
                    "Sec-WebSocket-Protocol: chat",
                ],
                HandshakeError::Unrequested("Sec-WebSocket-Protocol"),
            ),
        ];
        for (lines, error) in cases {
            assert_eq!(check_response(&response(lines), ACCEPT, MAX), Err(error.clone()), "{lines:?}");
            assert!(!error.to_string().is_empty());
        }
        // The accept key of another key is wrong too.
        assert_eq!(
            check_response(&good_response(), &accept_key(b"AAAAAAAAAAAAAAAAAAAAAA=="), MAX),
            Err(HandshakeError::BadAccept)
        );
        assert!(matches!(check_response(b"SSH-2.0-OpenSSH\r\n\r\n", ACCEPT, MAX), Err(HandshakeError::Malformed(_))));
    }

    #[test]
    fn an_oversized_head_is_an_error_not_growth() {
        let mut wire = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
        while wire.len() < 100 {
            wire.extend_from_slice(b"X-Padding: 0123456789\r\n");
        }
        assert_eq!(check_response(&wire, ACCEPT, 64), Err(HandshakeError::HeadTooLarge { max: 64 }));
        assert_eq!(check_response(&wire[..63], ACCEPT, 64), Ok(None));
        // A complete head that ends past the limit is refused as well.
        let mut long = good_response();
        long.splice(34..34, b"X-Padding: 0123456789\r\n".repeat(10));
        assert_eq!(check_response(&long, ACCEPT, 100), Err(HandshakeError::HeadTooLarge { max: 100 }));
        assert_eq!(check_response(&long, ACCEPT, long.len()), Ok(Some(long.len())));
    }

    #[test]
    fn the_server_accepts_the_client_request_and_answers_with_its_key() {
        let wire = request_for(KEY);
        let accepted = check_request(&wire, MAX).unwrap().unwrap();
        assert_eq!(accepted, AcceptedRequest { head_len: wire.len(), accept: ACCEPT.to_string() });
        let mut answer = Vec::new();
        encode_accept(&accepted.accept, &mut answer);
        assert_eq!(check_response(&answer, ACCEPT, MAX), Ok(Some(answer.len())));
    }

    #[test]
    fn the_server_refuses_bad_requests_with_the_right_status() {
        let good = String::from_utf8(request_for(KEY)).unwrap();
        let cases = [
            (good.replacen("GET", "POST", 1), HandshakeError::NotGet, "400"),
            (good.replacen("HTTP/1.1", "HTTP/1.0", 1), HandshakeError::NotHttp11, "400"),
            (good.replacen("Host:", "X-Host:", 1), HandshakeError::BadHeader("Host"), "400"),
            (good.replacen("Upgrade: websocket", "Upgrade: h2c", 1), HandshakeError::BadHeader("Upgrade"), "400"),
            (good.replacen("Version: 13", "Version: 8", 1), HandshakeError::BadHeader("Sec-WebSocket-Version"), "426"),
            (good.replacen(KEY, "c2hvcnQ=", 1), HandshakeError::BadHeader("Sec-WebSocket-Key"), "400"),
            (good.replacen(KEY, "not base64!", 1), HandshakeError::BadHeader("Sec-WebSocket-Key"), "400"),
        ];
        for (request, error, status) in cases {
            assert_eq!(check_request(request.as_bytes(), MAX), Err(error.clone()), "{request}");
            let mut answer = Vec::new();
            encode_reject(&error, &mut answer);
            assert!(answer.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
        }
        assert_eq!(
            check_request(good.as_bytes(), good.len() - 1),
            Err(HandshakeError::HeadTooLarge { max: good.len() - 1 })
        );
    }
}

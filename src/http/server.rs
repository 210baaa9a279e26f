//! The server's half: read a request head, write a response.
//!
//! Small on purpose: what the metrics endpoint, the simulator's web pages
//! and test servers need, with the same limits and the same framing rules
//! as the client ([`head::framing`]). Like the
//! client's decoder it is sans-IO: [`parse_request_head`] takes the bytes
//! received so far and says "not yet", "this request", or "answer with this
//! status and close".
//!
//! A request body is the caller's to take: the head says how long it is
//! ([`RequestHead::content_length`]), and the bytes follow the head.
//! Chunked request bodies are not read here (nothing we serve takes them):
//! [`RequestHead::chunked`] says one was announced, so the caller can answer
//! and close rather than take the body for the next request.

use super::head::{self, HeadError, HeadStatus, MAX_HEADERS, has_token};

/// Why a request cannot be served; [`status`](Self::status) is the answer
/// to send before closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The head is larger than the limit, or has more than
    /// [`MAX_HEADERS`] lines: `431`.
    HeadTooLarge,
    /// Not an HTTP/1.x request, or framing headers that cannot be
    /// trusted: `400`.
    Malformed,
}

impl RequestError {
    pub fn status(self) -> u16 {
        match self {
            RequestError::HeadTooLarge => 431,
            RequestError::Malformed => 400,
        }
    }
}

/// A parsed request head, borrowing from the received bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// Bytes of the head, blank line included: the body (if any) starts
    /// here.
    pub len: usize,
    pub method: &'a str,
    /// As sent: path and query (`/rooms?x=1`).
    pub target: &'a str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes
    /// it unless asked to keep it.
    pub keep_alive: bool,
    /// The announced body length (`None`: no body, unless chunked).
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

impl RequestHead<'_> {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    /// Whether a body follows the head.
    pub fn has_body(&self) -> bool {
        self.chunked || self.content_length.is_some_and(|n| n > 0)
    }
}

/// Parses the request head at the front of `data`: `Ok(None)` while it is
/// incomplete (keep the bytes, add the next ones, call again), or an error
/// to answer with. A head that has not ended within `max_head` bytes is
/// refused as soon as that many bytes have arrived ([`head::parse_head`]).
pub fn parse_request_head(data: &[u8], max_head: usize) -> Result<Option<RequestHead<'_>>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match head::parse_head(data, 0, max_head, |window| request.parse(window)) {
        Ok(HeadStatus::Complete(len)) => len,
        Ok(HeadStatus::Partial { .. }) => return Ok(None),
        Err(HeadError::TooLarge | HeadError::Malformed(httparse::Error::TooManyHeaders)) => {
            return Err(RequestError::HeadTooLarge);
        }
        Err(HeadError::Malformed(_)) => return Err(RequestError::Malformed),
    };
    // A complete parse has all three.
    let (Some(method), Some(target), Some(minor_version)) = (request.method, request.path, request.version) else {
        return Err(RequestError::Malformed);
    };
    let headers: Vec<(&str, &[u8])> = request.headers.iter().map(|h| (h.name, h.value)).collect();
    let framing = head::framing(headers.iter().copied()).map_err(|_| RequestError::Malformed)?;
    let connection = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("connection"));
    let (mut close, mut keep) = (false, false);
    for (_, value) in connection {
        close |= has_token(value, "close");
        keep |= has_token(value, "keep-alive");
    }
    Ok(Some(RequestHead {
        len,
        method,
        target,
        minor_version,
        keep_alive: !close && (minor_version >= 1 || keep),
        content_length: framing.content_length,
        chunked: framing.chunked,
        headers,
    }))
}

/// Appends a whole response to `out`: status line, `headers`, a
/// `Content-Length` (not on a 204, which has no body), `Connection:
/// keep-alive` or `close`, and `body`.
///
/// The headers are ours, not a client's: a value with a line break in it is
/// a bug, and is left out rather than sent.
pub fn write_response(out: &mut Vec<u8>, status: u16, headers: &[(&str, &str)], body: &[u8], keep_alive: bool) {
    write_head(out, status, headers, body.len() as u64, keep_alive);
    out.extend_from_slice(body);
}

/// Appends the head of a response whose body, `content_length` bytes, the
/// caller sends after it: for a body streamed in pieces rather than held
/// whole. Otherwise as [`write_response`].
pub fn write_head(out: &mut Vec<u8>, status: u16, headers: &[(&str, &str)], content_length: u64, keep_alive: bool) {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (name, value) in headers {
        debug_assert!(head::is_token(name) && head::is_field_value(value), "bad header {name:?}: {value:?}");
        if head::is_token(name) && head::is_field_value(value) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    // RFC 9110 §8.6: no Content-Length on a 1xx or 204 (they have no body).
    if !matches!(status, 100..=199 | 204) {
        head.push_str(&format!("Content-Length: {content_length}\r\n"));
    }
    let connection = if keep_alive { "keep-alive" } else { "close" };
    head.push_str(&format!("Connection: {connection}\r\n\r\n"));
    out.extend_from_slice(head.as_bytes());
}

/// The reason phrase of the statuses we send (others get "Unknown"; the
/// code is what counts).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8 * 1024;

    #[test]
    fn a_get_and_its_options() {
        let data = b"GET /rooms?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nNEXT";
        let head = parse_request_head(data, MAX).unwrap().unwrap();
        assert_eq!((head.method, head.target, head.path(), head.minor_version), ("GET", "/rooms?x=1", "/rooms", 1));
        assert_eq!((head.len, head.keep_alive, head.has_body()), (data.len() - 4, false, false));
        assert_eq!(head.header("host"), Some(&b"h"[..]));

        let old = parse_request_head(b"GET / HTTP/1.0\r\n\r\n", MAX).unwrap().unwrap();
        assert!(!old.keep_alive, "HTTP/1.0 closes by default");
        let old_keep = parse_request_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", MAX).unwrap().unwrap();
        assert!(old_keep.keep_alive);
        assert!(parse_request_head(b"GET / HTTP/1.1\r\n\r\n", MAX).unwrap().unwrap().keep_alive);
    }

    #[test]
    fn bodies_are_announced_not_read() {
        let post =
            parse_request_head(b"POST /poll HTTP/1.1\r\nContent-Length: 7\r\n\r\ntoken=t", MAX).unwrap().unwrap();
        assert_eq!((post.content_length, post.chunked, post.has_body()), (Some(7), false, true));
        let chunked =
            parse_request_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", MAX).unwrap().unwrap();
        assert!(chunked.chunked && chunked.has_body());
        assert!(!parse_request_head(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", MAX).unwrap().unwrap().has_body());
    }

    #[test]
    fn incomplete_waits_and_limits_answer_431() {
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\r\nHost:", MAX), Ok(None));
        assert_eq!(parse_request_head(b"", MAX), Ok(None));
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX));
        assert_eq!(parse_request_head(long.as_bytes(), MAX), Err(RequestError::HeadTooLarge));
        let complete_but_long = format!("{long}\r\n\r\n");
        assert_eq!(parse_request_head(complete_but_long.as_bytes(), MAX), Err(RequestError::HeadTooLarge));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(parse_request_head(many.as_bytes(), MAX).map_err(RequestError::status), Err(431));
    }

    #[test]
    fn malformed_requests_answer_400() {
        for data in [
            &b"GET\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(parse_request_head(data, MAX).map_err(RequestError::status), Err(400), "{data:?}");
        }
    }

    #[test]
    fn responses_carry_their_length_and_connection() {
        let mut out = Vec::new();
        write_response(&mut out, 405, &[("Allow", "GET"), ("Content-Type", "text/plain")], b"no\n", false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Type: text/plain\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\nno\n"
        );
    }

    #[test]
    fn a_head_announces_a_body_sent_later() {
        let mut out = Vec::new();
        write_head(&mut out, 200, &[("Content-Type", "text/html")], 3 << 20, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 3145728\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn no_content_has_no_length() {
        let mut out = Vec::new();
        write_response(&mut out, 204, &[], b"", true);
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
    }

    /// What the server writes, the client reads back the same.
    #[test]
    fn the_client_decoder_reads_what_the_server_writes() {
        use crate::http::{ResponseDecoder, ResponseLimits, Url};
        let mut out = Vec::new();
        write_response(&mut out, 200, &[("Content-Type", "application/json")], b"{\"ok\":1}", true);
        let mut decoder = ResponseDecoder::new(Url::parse("http://h/").unwrap(), ResponseLimits::default());
        let response = decoder.decode(&out).unwrap().response.unwrap();
        assert_eq!((response.status, response.header("content-type")), (200, Some("application/json")));
        assert_eq!(response.body, b"{\"ok\":1}");
    }
}

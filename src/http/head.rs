//! Header rules both sides of a connection need: where a head ends, how a
//! body is framed, list-valued fields, and what a sendable field is.
//!
//! Every head we read — a response, a request, a WebSocket upgrade or its
//! `101` — goes through [`parse_head`], under one limit and one way of
//! finding its end. The client's response decoder and the server's request
//! parser read framing the same way, through [`framing`], so they cannot
//! disagree about where a message ends (disagreeing parsers are how
//! requests get smuggled past proxies).

/// Header lines accepted in one head. `httparse` parses into a fixed array
/// of this many; one more is an error, not a reallocation.
pub const MAX_HEADERS: usize = 64;

/// How far [`parse_head`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadStatus {
    /// The head is whole and parsed: this many bytes, its blank line
    /// included. What follows is the body, or the next message.
    Complete(usize),
    /// No end of head in the first `searched` bytes: call again with more
    /// bytes, passing `searched`, and only the new ones are searched.
    Partial { searched: usize },
}

/// Why a head cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// No end within `max_head` bytes: it can only get longer.
    TooLarge,
    /// `httparse` refused it; [`httparse::Error::TooManyHeaders`] means
    /// more than [`MAX_HEADERS`] lines.
    Malformed(httparse::Error),
}

/// Reads the head at the front of `data`: finds its end within the first
/// `max_head` bytes, searching on from `searched` (0 the first time, then
/// what `Partial` said), and parses it with `parse` — an `httparse`
/// `Request`'s or `Response`'s `parse`, over [`MAX_HEADERS`] headers.
///
/// `httparse` runs only on the first `max_head` bytes, and only where a
/// blank line says a head may end — or on a first look (`searched` 0), so
/// that bytes that are not HTTP at all are refused at once rather than
/// after `max_head` of them. A caller that keeps `searched` (the response
/// decoder) thus scans a head trickling in a byte at a time once and parses
/// it about twice; one that passes 0 on every read (the request reader and
/// the handshakes, which keep no state) scans and parses it again on every
/// read, at most `max_head` bytes each time. A head that has not ended by
/// `max_head` bytes is refused as soon as they are in. A head of exactly
/// `max_head` bytes is accepted.
pub fn parse_head<'b>(
    data: &'b [u8],
    searched: usize,
    max_head: usize,
    mut parse: impl FnMut(&'b [u8]) -> httparse::Result<usize>,
) -> Result<HeadStatus, HeadError> {
    let window = &data[..data.len().min(max_head)];
    let mut from = searched;
    loop {
        let Some(end) = find_head_end(window, from) else {
            if searched == 0
                && !window.is_empty()
                && let Err(error) = parse(window)
            {
                return Err(HeadError::Malformed(error));
            }
            if window.len() == max_head {
                return Err(HeadError::TooLarge);
            }
            return Ok(HeadStatus::Partial { searched: window.len() });
        };
        match parse(window) {
            Ok(httparse::Status::Complete(len)) => return Ok(HeadStatus::Complete(len)),
            // That blank line was one httparse skips before the first line.
            Ok(httparse::Status::Partial) => from = end,
            Err(error) => return Err(HeadError::Malformed(error)),
        }
    }
}

/// Where the head at the front of `data` ends (just past its blank line),
/// looking from `from` on: the first end past `from`. A head ends with an
/// empty line: `\n\r\n` or `\n\n` (a bare LF is accepted as a line end, as
/// `httparse` does).
///
/// Pass the length already searched as `from` when more bytes arrive, so a
/// head that trickles in a byte at a time is still scanned once, not once
/// per byte; or an end found before, to look for the next one.
pub fn find_head_end(data: &[u8], from: usize) -> Option<usize> {
    // Step back so a line end split across two arrivals is seen whole.
    let mut at = from.saturating_sub(2);
    loop {
        let lf = at + data.get(at..)?.iter().position(|&b| b == b'\n')?;
        let end = match data.get(lf + 1) {
            Some(b'\n') => Some(lf + 2),
            Some(b'\r') if data.get(lf + 2) == Some(&b'\n') => Some(lf + 3),
            _ => None,
        };
        // Stepping back may find the end passed in again.
        if let Some(end) = end.filter(|&end| end > from) {
            return Some(end);
        }
        at = lf + 1;
    }
}

/// How a message's body is delimited, from its headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// `Content-Length`, if given (all copies agree).
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

/// Why the framing headers cannot be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FramingError {
    /// Not digits, or copies that disagree.
    BadContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`: RFC 9112 §6.3 says to
    /// treat it as an error, since the two could frame different bodies.
    LengthAndTransferEncoding,
    /// A transfer coding other than a single `chunked` (escaped).
    UnsupportedTransferCoding(String),
}

/// Reads `Content-Length` and `Transfer-Encoding`.
///
/// `Content-Length` must be digits only: `+5` and ` 5` parse as numbers in
/// Rust but are not valid, and a comma-separated list of copies must
/// agree. `Transfer-Encoding` must be exactly `chunked`: gzip and friends
/// are codings we do not decode.
pub fn framing<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<Framing, FramingError> {
    let mut content_length = None;
    let mut codings = Vec::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            for item in list_items(value) {
                let n = parse_digits(item).ok_or(FramingError::BadContentLength)?;
                if content_length.is_some_and(|seen| seen != n) {
                    return Err(FramingError::BadContentLength);
                }
                content_length = Some(n);
            }
            // An empty value frames nothing we could trust either.
            if list_items(value).next().is_none() {
                return Err(FramingError::BadContentLength);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.extend(list_items(value));
        }
    }
    let chunked = match codings.as_slice() {
        [] => false,
        [coding] if coding.eq_ignore_ascii_case(b"chunked") => true,
        _ => return Err(FramingError::UnsupportedTransferCoding(super::error::excerpt(&codings.join(&b", "[..])))),
    };
    if chunked && content_length.is_some() {
        return Err(FramingError::LengthAndTransferEncoding);
    }
    Ok(Framing { content_length, chunked })
}

/// A decimal number of digits only, fitting a `u64`.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The elements of a comma-separated header value, trimmed, empty ones
/// skipped (RFC 9110 §5.6.1).
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|item| !item.is_empty())
}

/// Whether a list-valued header holds `token` (case-insensitive), like
/// `close` in `Connection: keep-alive, close`.
pub fn has_token(value: &[u8], token: &str) -> bool {
    list_items(value).any(|item| item.eq_ignore_ascii_case(token.as_bytes()))
}

/// RFC 9110 `token`: a header name, a method.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A value that can be sent as it is: no CR, LF, NUL or other control
/// character but tab, so it cannot end its line early.
pub fn is_field_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(headers: &[(&str, &str)]) -> Result<Framing, FramingError> {
        framing(headers.iter().map(|(n, v)| (*n, v.as_bytes())))
    }

    #[test]
    fn head_end_is_found_with_crlf_or_bare_lf_and_across_arrivals() {
        let head = b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody";
        assert_eq!(find_head_end(head, 0), Some(head.len() - 4));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\nA: b\n\nbody", 0), Some(22));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n", 0), None);
        // Searched as far as it had come (at most up to the blank line's
        // CR), then the rest arrived.
        for searched in 0..=24 {
            assert_eq!(find_head_end(head, searched), Some(25), "from {searched}");
            assert_eq!(find_head_end(&head[..searched], 0), None);
        }
    }

    #[test]
    fn looking_again_from_an_end_finds_the_next_one() {
        assert_eq!(find_head_end(b"\n\nHTTP/1.1 200 OK\n\n", 2), Some(19));
        assert_eq!(find_head_end(b"\r\n\n", 3), None);
        assert_eq!(find_head_end(b"\n\n\n", 2), Some(3));
        assert_eq!(find_head_end(b"\n\r\n\r\n", 3), Some(5));
    }

    /// `parse_head` for a response, counting httparse's runs.
    fn parse_response(
        data: &[u8],
        searched: usize,
        max_head: usize,
        runs: &mut usize,
    ) -> Result<HeadStatus, HeadError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        parse_head(data, searched, max_head, |window| {
            *runs += 1;
            response.parse(window)
        })
    }

    #[test]
    fn a_head_split_at_every_byte_is_searched_once_and_parsed_once() {
        // A first look, a blank line before the status line (which httparse
        // skips), the end: three runs, none for the bytes between.
        let head = b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let len = head.len() - 2;
        let (mut searched, mut runs) = (0, 0);
        for arrived in 0..len {
            let status = parse_response(&head[..arrived], searched, 1024, &mut runs);
            assert_eq!(status, Ok(HeadStatus::Partial { searched: arrived }), "{arrived} bytes");
            searched = arrived;
        }
        assert_eq!(runs, 2, "httparse ran for the bytes in between");
        assert_eq!(parse_response(&head[..len], searched, 1024, &mut runs), Ok(HeadStatus::Complete(len)));
        assert_eq!(runs, 3);
        assert_eq!(parse_response(head, 0, 1024, &mut 0), Ok(HeadStatus::Complete(len)), "all at once");
    }

    #[test]
    fn a_head_may_end_exactly_at_the_limit_not_past_it() {
        let head = b"HTTP/1.1 204 No Content\r\nX: y\r\n\r\n";
        let len = head.len();
        assert_eq!(parse_response(head, 0, len, &mut 0), Ok(HeadStatus::Complete(len)));
        assert_eq!(parse_response(&head[..len - 1], 0, len, &mut 0), Ok(HeadStatus::Partial { searched: len - 1 }));
        // One byte more than the limit: refused once the limit's worth is
        // in, whether or not the rest has come.
        assert_eq!(parse_response(head, 0, len - 1, &mut 0), Err(HeadError::TooLarge));
        assert_eq!(parse_response(&head[..len - 1], 0, len - 1, &mut 0), Err(HeadError::TooLarge));
        assert_eq!(parse_response(&head[..len - 2], 0, len - 1, &mut 0), Ok(HeadStatus::Partial { searched: len - 2 }));
    }

    #[test]
    fn a_head_over_the_limit_is_refused_without_parsing_past_it() {
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(parse_response(long.as_bytes(), 0, 64, &mut 0), Err(HeadError::TooLarge));
        // The end past the limit is not even looked for.
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let mut longest = 0;
        let status = parse_head(long.as_bytes(), 0, 64, |window| {
            longest = longest.max(window.len());
            response.parse(window)
        });
        assert_eq!((status, longest), (Err(HeadError::TooLarge), 64));
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(
            parse_response(many.as_bytes(), 0, 4096, &mut 0),
            Err(HeadError::Malformed(httparse::Error::TooManyHeaders))
        );
        assert!(matches!(parse_response(b"SSH-2.0\r\n\r\n", 0, 64, &mut 0), Err(HeadError::Malformed(_))));
        // Not HTTP at all: refused on first sight, not after 64 bytes.
        assert!(matches!(parse_response(b"\x2a\0\0\0", 0, 64, &mut 0), Err(HeadError::Malformed(_))));
    }

    #[test]
    fn framing_reads_length_and_chunked() {
        assert_eq!(frame(&[]), Ok(Framing { content_length: None, chunked: false }));
        assert_eq!(frame(&[("Content-Length", "12")]), Ok(Framing { content_length: Some(12), chunked: false }));
        assert_eq!(frame(&[("content-length", "7, 7"), ("Content-Length", "7")]).unwrap().content_length, Some(7));
        assert_eq!(frame(&[("Transfer-Encoding", "Chunked")]), Ok(Framing { content_length: None, chunked: true }));
    }

    #[test]
    fn framing_refuses_what_could_be_read_two_ways() {
        for bad in ["", "+5", " ", "5 5", "0x10", "-1", "18446744073709551616"] {
            assert_eq!(frame(&[("Content-Length", bad)]), Err(FramingError::BadContentLength), "{bad:?}");
        }
        assert_eq!(frame(&[("Content-Length", "5"), ("Content-Length", "6")]), Err(FramingError::BadContentLength));
        assert_eq!(
            frame(&[("Content-Length", "5"), ("Transfer-Encoding", "chunked")]),
            Err(FramingError::LengthAndTransferEncoding)
        );
        assert_eq!(
            frame(&[("Transfer-Encoding", "gzip, chunked")]),
            Err(FramingError::UnsupportedTransferCoding("\"gzip, chunked\"".into()))
        );
        assert!(frame(&[("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")]).is_err());
    }

    #[test]
    fn tokens_and_values() {
        assert!(has_token(b"keep-alive, Close", "close"));
        assert!(!has_token(b"closed", "close"));
        assert!(is_token("User-Agent") && !is_token("Bad Name") && !is_token("") && !is_token("a:b"));
        assert!(is_field_value("Mozilla/5.0 (X11)\tx") && !is_field_value("a\r\nb") && !is_field_value("a\0"));
    }
}

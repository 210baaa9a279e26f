//! Header rules both sides of a connection need: where a head ends, how a
//! body is framed, list-valued fields, and what a sendable field is.
//!
//! The client's response decoder and the server's request parser read
//! framing the same way, through [`framing`], so they cannot disagree about
//! where a message ends (disagreeing parsers are how requests get smuggled
//! past proxies).

/// Header lines accepted in one head. `httparse` parses into a fixed array
/// of this many; one more is an error, not a reallocation.
pub const MAX_HEADERS: usize = 64;

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

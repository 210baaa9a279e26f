//! A response, and the decoder that reads one from the bytes of a
//! connection as they arrive: the head with `httparse`, then the body in
//! whichever framing the head announced.
//!
//! ```text
//!  Head ──1xx──▶ Head            interim responses (100 Continue) skipped
//!   │
//!   ├─ 204, 304, Content-Length: 0 ──────────────────────────▶ Done
//!   ├─ Content-Length: n ──▶ Body(Length)     n bytes ───────▶ Done
//!   ├─ chunked ────────────▶ Body(Chunked)    last chunk ────▶ Done
//!   └─ neither ────────────▶ Body(UntilClose) end of stream ─▶ Done
//! ```
//!
//! Limits hold whatever the server sends: the head may not pass
//! [`ResponseLimits::max_head`] (nor have more than
//! [`MAX_HEADERS`] lines), and the body may not pass
//! [`ResponseLimits::max_body`]. A body is refused as soon as its size is
//! known to be over the limit (an announced `Content-Length`, a chunk's
//! size), before any of it is buffered.

use super::chunked::ChunkedDecoder;
use super::error::{Error, excerpt};
use super::head::{self, FramingError, HeadError, HeadStatus, MAX_HEADERS, list_items};
use super::url::Url;

/// How much of a response we accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Largest head (status line and headers; and the trailers of a
    /// chunked body), 16 KiB.
    pub max_head: usize,
    /// Largest body, 2 MiB: a Douyu room page is about 200 KiB.
    pub max_body: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits { max_head: 16 * 1024, max_body: 2 * 1024 * 1024 }
    }
}

/// A complete response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The URL that answered (after redirects, the last one).
    pub url: Url,
    pub status: u16,
    /// The reason phrase, as the server sent it (untrusted text).
    pub reason: String,
    /// Names as sent; values decoded as UTF-8, invalid bytes replaced.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The response if its status is 2xx, else [`Error::Status`].
    pub fn error_for_status(self) -> Result<Response, Error> {
        if (200..300).contains(&self.status) { Ok(self) } else { Err(Error::Status(self.status)) }
    }
}

/// What the decoder made of the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes used from the front of the input. The caller keeps the rest
    /// and passes it again, followed by the next bytes.
    pub consumed: usize,
    /// The response, once complete.
    pub response: Option<Response>,
}

/// The status line and headers, kept while the body arrives.
#[derive(Debug)]
struct Head {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

/// How the body ends.
#[derive(Debug)]
enum Body {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
    UntilClose,
}

#[derive(Debug)]
enum State {
    /// Waiting for a whole head; `searched` bytes had no end of head.
    Head {
        searched: usize,
    },
    Body {
        head: Head,
        body: Body,
        data: Vec<u8>,
    },
    /// The response was handed out.
    Done,
}

/// Reads one response (see the module docs).
#[derive(Debug)]
pub struct ResponseDecoder {
    /// Carried into the response.
    url: Url,
    limits: ResponseLimits,
    state: State,
}

impl ResponseDecoder {
    /// A decoder for the response to a request for `url`.
    pub fn new(url: Url, limits: ResponseLimits) -> Self {
        ResponseDecoder { url, limits, state: State::Head { searched: 0 } }
    }

    /// Decodes what it can of `data`, everything received and not consumed
    /// yet. Once the response has been returned, consumes everything.
    pub fn decode(&mut self, data: &[u8]) -> Result<Progress, Error> {
        let mut consumed = 0;
        loop {
            let rest = &data[consumed..];
            match std::mem::replace(&mut self.state, State::Done) {
                State::Head { searched } => match parse_head(rest, searched, &self.limits)? {
                    ParsedHead::Partial { searched } => {
                        self.state = State::Head { searched };
                        return Ok(Progress { consumed, response: None });
                    }
                    ParsedHead::Interim { len } => {
                        consumed += len;
                        self.state = State::Head { searched: 0 };
                    }
                    ParsedHead::Final { len, head, body: None } => {
                        consumed += len;
                        return Ok(Progress { consumed, response: Some(self.response(head, Vec::new())) });
                    }
                    ParsedHead::Final { len, head, body: Some(body) } => {
                        consumed += len;
                        self.state = State::Body { head, body, data: Vec::new() };
                    }
                },
                State::Body { head, mut body, mut data } => {
                    let (used, complete) = match &mut body {
                        Body::Length { remaining } => {
                            let take = (*remaining).min(rest.len() as u64) as usize;
                            data.extend_from_slice(&rest[..take]);
                            *remaining -= take as u64;
                            (take, *remaining == 0)
                        }
                        Body::Chunked(chunked) => {
                            chunked.decode(rest, &mut data, self.limits.max_body, self.limits.max_head)?
                        }
                        Body::UntilClose => {
                            if data.len() + rest.len() > self.limits.max_body {
                                return Err(Error::BodyTooLarge { limit: self.limits.max_body });
                            }
                            data.extend_from_slice(rest);
                            (rest.len(), false)
                        }
                    };
                    consumed += used;
                    if complete {
                        return Ok(Progress { consumed, response: Some(self.response(head, data)) });
                    }
                    self.state = State::Body { head, body, data };
                    return Ok(Progress { consumed, response: None });
                }
                State::Done => return Ok(Progress { consumed: data.len(), response: None }),
            }
        }
    }

    /// The connection ended. A body that runs until the close is complete
    /// now; anything else is cut short. `Ok(None)` if the response was
    /// returned already.
    pub fn decode_eof(&mut self) -> Result<Option<Response>, Error> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Body { head, body: Body::UntilClose, data } => Ok(Some(self.response(head, data))),
            State::Head { .. } | State::Body { .. } => Err(Error::Truncated),
            State::Done => Ok(None),
        }
    }

    fn response(&self, head: Head, body: Vec<u8>) -> Response {
        Response { url: self.url.clone(), status: head.status, reason: head.reason, headers: head.headers, body }
    }
}

enum ParsedHead {
    /// No whole head yet; `searched` bytes have no end of head.
    Partial { searched: usize },
    /// A 1xx response of `len` bytes, to skip.
    Interim { len: usize },
    /// The final response's head, `len` bytes, and how its body is framed
    /// (`None`: it has none).
    Final { len: usize, head: Head, body: Option<Body> },
}

fn parse_head(data: &[u8], searched: usize, limits: &ResponseLimits) -> Result<ParsedHead, Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match head::parse_head(data, searched, limits.max_head, |window| response.parse(window)) {
        Ok(HeadStatus::Complete(len)) => len,
        Ok(HeadStatus::Partial { searched }) => return Ok(ParsedHead::Partial { searched }),
        Err(HeadError::TooLarge) => return Err(Error::HeadTooLarge { limit: limits.max_head }),
        Err(HeadError::Malformed(httparse::Error::TooManyHeaders)) => {
            return Err(Error::TooManyHeaders { limit: MAX_HEADERS });
        }
        Err(HeadError::Malformed(e)) => return Err(Error::Malformed(e.to_string())),
    };
    // A complete parse has a code.
    let status = response.code.unwrap_or_default();
    match status {
        101 => return Err(Error::Malformed("101 Switching Protocols, but no upgrade was asked for".into())),
        100..=199 => return Ok(ParsedHead::Interim { len }),
        _ => {}
    }
    let fields = || response.headers.iter().map(|h| (h.name, h.value));
    let framing = head::framing(fields()).map_err(|e| match e {
        FramingError::BadContentLength => Error::Malformed("bad Content-Length".into()),
        FramingError::LengthAndTransferEncoding => Error::Malformed("both Content-Length and Transfer-Encoding".into()),
        FramingError::UnsupportedTransferCoding(coding) => Error::UnsupportedEncoding(coding),
    })?;
    let body = match (status, framing.content_length) {
        (204 | 304, _) => None,
        _ if framing.chunked => Some(Body::Chunked(ChunkedDecoder::default())),
        (_, Some(n)) if n > limits.max_body as u64 => return Err(Error::BodyTooLarge { limit: limits.max_body }),
        (_, Some(0)) => None,
        (_, Some(n)) => Some(Body::Length { remaining: n }),
        (_, None) => Some(Body::UntilClose),
    };
    // A coding matters only to a body there is (a 304 may name the one its
    // cached body had).
    if body.is_some() {
        for (_, value) in fields().filter(|(name, _)| name.eq_ignore_ascii_case("content-encoding")) {
            if let Some(coding) = list_items(value).find(|c| !c.eq_ignore_ascii_case(b"identity")) {
                return Err(Error::UnsupportedEncoding(excerpt(coding)));
            }
        }
    }
    let head = Head {
        status,
        reason: response.reason.unwrap_or_default().to_string(),
        headers: fields().map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned())).collect(),
    };
    Ok(ParsedHead::Final { len, head, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn url() -> Url {
        Url::parse("http://example.com/page").unwrap()
    }

    fn limits() -> ResponseLimits {
        ResponseLimits { max_head: 1024, max_body: 4096 }
    }

    /// Feeds `pieces` in order as a connection would (leftovers first),
    /// then the end of the stream if `eof`: the response or the error.
    fn feed<'a>(
        pieces: impl IntoIterator<Item = &'a [u8]>,
        eof: bool,
        limits: ResponseLimits,
    ) -> Result<Response, Error> {
        let mut decoder = ResponseDecoder::new(url(), limits);
        let mut pending = Vec::new();
        for piece in pieces {
            pending.extend_from_slice(piece);
            let progress = decoder.decode(&pending)?;
            assert!(progress.consumed <= pending.len());
            pending.drain(..progress.consumed);
            if let Some(response) = progress.response {
                return Ok(response);
            }
        }
        if eof {
            return decoder.decode_eof().map(|r| r.expect("not returned before"));
        }
        panic!("incomplete, {} bytes pending", pending.len());
    }

    fn whole(wire: &[u8], eof: bool) -> Result<Response, Error> {
        feed([wire], eof, limits())
    }

    #[test]
    fn content_length_body() {
        let response = whole(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello", false);
        let response = response.unwrap();
        assert_eq!((response.status, response.reason.as_str(), response.text()), (200, "OK", "hello".into()));
        assert_eq!(response.header("content-type"), Some("text/html"));
        assert_eq!(response.url, url());
    }

    #[test]
    fn chunked_body() {
        let wire =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nT: v\r\n\r\n";
        assert_eq!(whole(wire, false).unwrap().body, b"hello!");
    }

    #[test]
    fn close_delimited_body_ends_at_eof() {
        let response = whole(b"HTTP/1.0 200 OK\r\n\r\nall of it", true).unwrap();
        assert_eq!(response.body, b"all of it");
        assert_eq!(whole(b"HTTP/1.1 200 OK\r\n\r\n", true).unwrap().body, b"");
    }

    #[test]
    fn no_body_statuses_and_zero_length_finish_at_the_head() {
        for wire in [
            &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert_eq!(whole(wire, false).unwrap().body, b"");
        }
    }

    #[test]
    fn interim_responses_are_skipped() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let response = whole(wire, false).unwrap();
        assert_eq!((response.status, response.body.as_slice()), (200, &b"ok"[..]));
        assert!(matches!(whole(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false), Err(Error::Malformed(_))));
    }

    #[test]
    fn a_body_cut_short_is_truncated() {
        for wire in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\nContent-Le",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
        ] {
            assert_eq!(whole(wire, true), Err(Error::Truncated), "{}", excerpt(wire));
        }
    }

    #[test]
    fn the_head_limit_holds_complete_or_not() {
        let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(1024));
        assert_eq!(whole(big.as_bytes(), false), Err(Error::HeadTooLarge { limit: 1024 }));
        // Still arriving, and already too large: no need to wait for the end.
        let mut decoder = ResponseDecoder::new(url(), limits());
        assert_eq!(decoder.decode(&big.as_bytes()[..1030]), Err(Error::HeadTooLarge { limit: 1024 }));
        // Exactly at the limit is fine.
        let head = "HTTP/1.1 204 No Content\r\nX: \r\n\r\n";
        let exact = head.replace("X: ", &format!("X: {}", "a".repeat(1024 - head.len())));
        assert_eq!(exact.len(), 1024);
        assert_eq!(whole(exact.as_bytes(), false).map(|r| r.status), Ok(204));
    }

    #[test]
    fn the_header_count_limit_holds() {
        let head = |n: usize| format!("HTTP/1.1 204 No Content\r\n{}\r\n", "X: y\r\n".repeat(n));
        let limits = ResponseLimits { max_head: 16 * 1024, ..limits() };
        assert!(feed([head(MAX_HEADERS).as_bytes()], false, limits).is_ok());
        assert_eq!(
            feed([head(MAX_HEADERS + 1).as_bytes()], false, limits),
            Err(Error::TooManyHeaders { limit: MAX_HEADERS })
        );
    }

    #[test]
    fn the_body_limit_holds_before_buffering() {
        // Announced over the limit: refused at the head, no body needed.
        let mut decoder = ResponseDecoder::new(url(), limits());
        assert_eq!(
            decoder.decode(b"HTTP/1.1 200 OK\r\nContent-Length: 4097\r\n\r\n"),
            Err(Error::BodyTooLarge { limit: 4096 })
        );
        assert_eq!(
            whole(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", false),
            Err(Error::Malformed("bad Content-Length".into()))
        );
        // Close-delimited: refused when the byte past the limit arrives.
        let mut decoder = ResponseDecoder::new(url(), limits());
        assert!(decoder.decode(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().response.is_none());
        assert_eq!(decoder.decode(&[b'a'; 4096]).unwrap().consumed, 4096);
        assert_eq!(decoder.decode(b"b"), Err(Error::BodyTooLarge { limit: 4096 }));
        // Chunked: refused at the size line that goes over.
        let mut decoder = ResponseDecoder::new(url(), limits());
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1001\r\n";
        assert_eq!(decoder.decode(head), Err(Error::BodyTooLarge { limit: 4096 }));
    }

    #[test]
    fn encodings_we_did_not_ask_for_are_refused() {
        for (header, coding) in [
            ("Content-Encoding: gzip", "\"gzip\""),
            ("Content-Encoding: identity, br", "\"br\""),
            ("Transfer-Encoding: gzip, chunked", "\"gzip, chunked\""),
        ] {
            let wire = format!("HTTP/1.1 200 OK\r\n{header}\r\n\r\n");
            assert_eq!(whole(wire.as_bytes(), true), Err(Error::UnsupportedEncoding(coding.into())), "{header}");
        }
        assert!(whole(b"HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc", false).is_ok());
        assert!(whole(b"HTTP/1.1 304 Not Modified\r\nContent-Encoding: gzip\r\n\r\n", false).is_ok(), "no body");
    }

    #[test]
    fn malformed_heads_are_refused() {
        for wire in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            assert!(
                matches!(whole(wire, true), Err(Error::Malformed(_))),
                "{}: {:?}",
                excerpt(wire),
                whole(wire, true)
            );
        }
    }

    #[test]
    fn leading_blank_lines_do_not_end_the_head_early() {
        let response = whole(b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", false);
        assert_eq!(response.map(|r| r.body), Ok(b"x".to_vec()));
    }

    #[test]
    fn leading_bare_newlines_are_skipped_once() {
        let response = whole(b"\n\nHTTP/1.1 200 OK\nContent-Length: 1\n\nx", false);
        assert_eq!(response.map(|r| r.body), Ok(b"x".to_vec()));
        let mut decoder = ResponseDecoder::new(url(), limits());
        assert_eq!(decoder.decode(b"\r\n\n"), Ok(Progress { consumed: 0, response: None }));
    }

    #[test]
    fn bytes_after_the_body_are_not_consumed_and_later_ones_are_ignored() {
        let mut decoder = ResponseDecoder::new(url(), limits());
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
        let progress = decoder.decode(wire).unwrap();
        assert_eq!(progress.consumed, wire.len() - 5);
        assert!(progress.response.is_some());
        assert_eq!(decoder.decode(b"more").unwrap(), Progress { consumed: 4, response: None });
        assert_eq!(decoder.decode_eof(), Ok(None));
    }

    /// One response in each framing, with the body it carries.
    fn framed(body: &[u8], chunk: usize, framing: u8) -> (Vec<u8>, bool) {
        let mut wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nServer: test\r\n".to_vec();
        let eof = match framing {
            0 => {
                wire.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                wire.extend_from_slice(body);
                false
            }
            1 => {
                wire.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for piece in body.chunks(chunk) {
                    wire.extend_from_slice(format!("{:X};ext=\"v\"\r\n", piece.len()).as_bytes());
                    wire.extend_from_slice(piece);
                    wire.extend_from_slice(b"\r\n");
                }
                wire.extend_from_slice(b"0\r\nTrailer: t\r\n\r\n");
                false
            }
            _ => {
                wire.extend_from_slice(b"Connection: close\r\n\r\n");
                wire.extend_from_slice(body);
                true
            }
        };
        (wire, eof)
    }

    proptest! {
        /// However the wire bytes are split into reads, the same response
        /// comes out, in each framing.
        #[test]
        fn every_chunking_gives_the_same_response(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..100,
            framing in 0u8..3,
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let (wire, eof) = framed(&body, chunk, framing);
            let expected = whole(&wire, eof).unwrap();
            prop_assert_eq!(&expected.body, &body);
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            cuts.extend([0, wire.len()]);
            cuts.sort_unstable();
            let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &wire[w[0]..w[1]]).collect();
            prop_assert_eq!(feed(pieces, eof, limits()), Ok(expected));
        }

        /// A byte at a time: the worst chunking, for every framing.
        #[test]
        fn a_byte_at_a_time_gives_the_same_response(body in proptest::collection::vec(any::<u8>(), 0..200), framing in 0u8..3) {
            let (wire, eof) = framed(&body, 7, framing);
            let response = feed(wire.chunks(1), eof, limits()).unwrap();
            prop_assert_eq!(response.body, body);
        }

        /// Garbage never panics and never makes the decoder keep more than
        /// its limits.
        #[test]
        fn garbage_is_refused_or_waited_for(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut decoder = ResponseDecoder::new(url(), limits());
            if let Ok(progress) = decoder.decode(&bytes) {
                prop_assert!(progress.consumed <= bytes.len());
                prop_assert!(bytes.len() - progress.consumed <= limits().max_head.max(chunked_line_bound()));
            }
            let _ = decoder.decode_eof();
        }
    }

    fn chunked_line_bound() -> usize {
        crate::http::chunked::MAX_SIZE_LINE
    }
}

//! `Transfer-Encoding: chunked` bodies, decoded as they arrive.
//!
//! ```text
//! 1a;name=value\r\n      a chunk-size line: hex size, extensions (ignored)
//! <0x1a bytes>\r\n       the chunk's data
//! 0\r\n                  the last chunk: size 0
//! Expires: never\r\n     trailer lines (read and dropped)
//! \r\n                   the end of the body
//! ```
//!
//! Every line is bounded (a size line by [`MAX_SIZE_LINE`], the trailers by
//! the head limit) and every size is checked against the body limit before
//! any of its data is kept, so a hostile server cannot make us buffer more
//! than the limits whatever it sends.

use super::error::{Error, excerpt};

/// The longest chunk-size line, extensions included.
pub const MAX_SIZE_LINE: usize = 1024;

/// Where in the chunked framing the decoder is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, `remaining` bytes to go.
    Data {
        remaining: u64,
    },
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines, `seen` bytes of them so far,
    /// until an empty line.
    Trailers {
        seen: usize,
    },
    Done,
}

/// Decodes one chunked body (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder { state: State::Size }
    }
}

impl ChunkedDecoder {
    /// Decodes what it can of `data`, appending chunk data to `body`, which
    /// may not grow past `max_body`; trailers may not exceed `max_trailers`.
    ///
    /// Returns how many bytes it consumed and whether the body is complete.
    /// A line that is not complete yet is left unconsumed: pass it again,
    /// followed by the next bytes.
    pub fn decode(
        &mut self,
        data: &[u8],
        body: &mut Vec<u8>,
        max_body: usize,
        max_trailers: usize,
    ) -> Result<(usize, bool), Error> {
        let mut consumed = 0;
        loop {
            let rest = &data[consumed..];
            match self.state {
                State::Size => {
                    // httparse takes an empty size as 0 (the last chunk).
                    if rest.first().is_some_and(|b| !b.is_ascii_hexdigit()) {
                        return Err(Error::BadChunk(format!("bad chunk size line {}", excerpt(rest))));
                    }
                    let (len, size) = match httparse::parse_chunk_size(rest) {
                        Ok(httparse::Status::Complete(parsed)) if parsed.0 <= MAX_SIZE_LINE => parsed,
                        // Refused whether it arrived whole or not yet, so
                        // that where the reads were cut does not matter.
                        Ok(httparse::Status::Complete(_)) => return Err(size_line_too_long()),
                        Ok(httparse::Status::Partial) if rest.len() > MAX_SIZE_LINE => {
                            return Err(size_line_too_long());
                        }
                        Ok(httparse::Status::Partial) => return Ok((consumed, false)),
                        // More than 16 hex digits (it would overflow a u64),
                        // or bytes that are no size.
                        Err(httparse::InvalidChunkSize) => {
                            return Err(Error::BadChunk(format!("bad chunk size line {}", excerpt(rest))));
                        }
                    };
                    consumed += len;
                    // Compared as u64: a size near u64::MAX cannot wrap.
                    if size > max_body.saturating_sub(body.len()) as u64 {
                        return Err(Error::BodyTooLarge { limit: max_body });
                    }
                    self.state = if size == 0 { State::Trailers { seen: 0 } } else { State::Data { remaining: size } };
                }
                State::Data { remaining } => {
                    if rest.is_empty() {
                        return Ok((consumed, false));
                    }
                    let take = remaining.min(rest.len() as u64) as usize;
                    body.extend_from_slice(&rest[..take]);
                    consumed += take;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 { State::DataEnd } else { State::Data { remaining } };
                }
                State::DataEnd => match rest {
                    [] | [b'\r'] => return Ok((consumed, false)),
                    [b'\r', b'\n', ..] => {
                        consumed += 2;
                        self.state = State::Size;
                    }
                    _ => return Err(Error::BadChunk("chunk data not followed by CRLF".into())),
                },
                State::Trailers { seen } => {
                    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                        // A lone CR may begin the empty line that ends the
                        // trailers, which does not count.
                        if rest != b"\r" && seen + rest.len() > max_trailers {
                            return Err(Error::HeadTooLarge { limit: max_trailers });
                        }
                        return Ok((consumed, false));
                    };
                    let line = &rest[..=lf];
                    consumed += line.len();
                    if line == b"\r\n" || line == b"\n" {
                        self.state = State::Done;
                    } else if seen + line.len() > max_trailers {
                        return Err(Error::HeadTooLarge { limit: max_trailers });
                    } else {
                        self.state = State::Trailers { seen: seen + line.len() };
                    }
                }
                State::Done => return Ok((consumed, true)),
            }
        }
    }
}

fn size_line_too_long() -> Error {
    Error::BadChunk(format!("chunk size line over {MAX_SIZE_LINE} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_BODY: usize = 1000;
    const MAX_TRAILERS: usize = 100;

    /// Decodes `wire` fed whole; the body and the bytes left over.
    fn decode(wire: &[u8]) -> Result<(Vec<u8>, usize), Error> {
        let mut decoder = ChunkedDecoder::default();
        let mut body = Vec::new();
        let (consumed, done) = decoder.decode(wire, &mut body, MAX_BODY, MAX_TRAILERS)?;
        assert!(done, "incomplete after {consumed} bytes");
        Ok((body, wire.len() - consumed))
    }

    #[test]
    fn chunks_extensions_and_trailers() {
        assert_eq!(decode(b"5\r\nhello\r\n0\r\n\r\n"), Ok((b"hello".to_vec(), 0)));
        assert_eq!(
            decode(b"3;name=value\r\nabc\r\nA ; x\r\n0123456789\r\n0\r\nExpires: never\r\nX: y\r\n\r\nnext"),
            Ok((b"abc0123456789".to_vec(), 4))
        );
        assert_eq!(decode(b"0\r\n\r\n"), Ok((Vec::new(), 0)));
    }

    #[test]
    fn an_incomplete_line_waits_for_the_rest_at_every_split() {
        let wire = b"1;ext\r\na\r\n0\r\nT: 1\r\n\r\n";
        for split in 0..=wire.len() {
            let mut decoder = ChunkedDecoder::default();
            let mut body = Vec::new();
            let (used, done) = decoder.decode(&wire[..split], &mut body, MAX_BODY, MAX_TRAILERS).unwrap();
            assert!(!done || split == wire.len(), "done early at {split}");
            // The caller keeps what was not used and adds the rest.
            let (rest_used, done) = decoder.decode(&wire[used..], &mut body, MAX_BODY, MAX_TRAILERS).unwrap();
            assert_eq!((used + rest_used, done, body.as_slice()), (wire.len(), true, &b"a"[..]), "split at {split}");
        }
        // A size line without its end is not consumed.
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(decoder.decode(b"1a;ext", &mut Vec::new(), MAX_BODY, MAX_TRAILERS), Ok((0, false)));
    }

    #[test]
    fn bad_framing_is_refused() {
        for wire in [
            &b"\r\n"[..],
            b"g\r\n",
            b"-1\r\n",
            b" 5\r\n",
            b"5\r\nhelloX\r\n",
            b"5\nhello",
            // 17 hex digits: more than a u64 holds.
            b"10000000000000000\r\n",
        ] {
            assert!(matches!(decode(wire), Err(Error::BadChunk(_))), "{:?}: {:?}", excerpt(wire), decode(wire));
        }
        let long_extension = [b"1;".to_vec(), vec![b'x'; MAX_SIZE_LINE]].concat();
        assert!(matches!(decode(&long_extension), Err(Error::BadChunk(_))));
        // The same line whole, in one read.
        let whole = [long_extension, b"\r\nx\r\n0\r\n\r\n".to_vec()].concat();
        assert!(matches!(decode(&whole), Err(Error::BadChunk(_))));
        let longest = [b"1;".to_vec(), vec![b'x'; MAX_SIZE_LINE - 4], b"\r\nx\r\n0\r\n\r\n".to_vec()].concat();
        assert_eq!(decode(&longest), Ok((b"x".to_vec(), 0)));
    }

    #[test]
    fn sizes_are_checked_against_the_limit_before_the_data() {
        // The largest size a u64 holds: refused at its size line.
        assert_eq!(decode(b"ffffffffffffffff\r\n"), Err(Error::BodyTooLarge { limit: MAX_BODY }));
        // Two chunks that fit alone but not together.
        let wire = format!("{:x}\r\n{}\r\n{:x}\r\n", 600, "a".repeat(600), 401);
        assert_eq!(decode(wire.as_bytes()), Err(Error::BodyTooLarge { limit: MAX_BODY }));
        let exact = format!("{:x}\r\n{}\r\n0\r\n\r\n", MAX_BODY, "a".repeat(MAX_BODY));
        assert_eq!(decode(exact.as_bytes()).map(|r| r.0.len()), Ok(MAX_BODY));
    }

    #[test]
    fn trailers_are_bounded() {
        let wire = format!("0\r\nX: {}\r\n\r\n", "a".repeat(MAX_TRAILERS));
        assert_eq!(decode(wire.as_bytes()), Err(Error::HeadTooLarge { limit: MAX_TRAILERS }));
        // Also while the line is still arriving.
        let mut decoder = ChunkedDecoder::default();
        let partial = format!("0\r\nX: {}", "a".repeat(MAX_TRAILERS));
        assert_eq!(
            decoder.decode(partial.as_bytes(), &mut Vec::new(), MAX_BODY, MAX_TRAILERS),
            Err(Error::HeadTooLarge { limit: MAX_TRAILERS })
        );
        // Trailers of exactly the limit, then the empty line cut after its CR.
        let wire = format!("0\r\nX: {}\r\n", "a".repeat(MAX_TRAILERS - 5));
        let mut decoder = ChunkedDecoder::default();
        let first = decoder.decode(&[wire.as_bytes(), b"\r"].concat(), &mut Vec::new(), MAX_BODY, MAX_TRAILERS);
        assert_eq!(first, Ok((wire.len(), false)));
        assert_eq!(decoder.decode(b"\r\n", &mut Vec::new(), MAX_BODY, MAX_TRAILERS), Ok((2, true)));
    }
}

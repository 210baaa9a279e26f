//! HTTP/1.1: request heads (the metrics endpoint's side), responses and
//! chunked bodies (the fetch client's side).

use barrage::http::chunked::{ChunkedDecoder, MAX_SIZE_LINE};
use barrage::http::head::{MAX_HEADERS, is_token};
use barrage::http::server::parse_request_head;
use barrage::http::{Error, Response, ResponseDecoder, ResponseLimits, Url};

use super::{ReadBuffer, Script};

/// What a connection made of its bytes: requests or a response, then how
/// it ended. A failure is not compared by kind: bytes that break two rules
/// (too long, and malformed further on) are refused for the one the reads
/// show first.
#[derive(Debug, PartialEq)]
struct Outcome<T> {
    results: Vec<T>,
    end: End,
    /// Bytes consumed in all; not counted after a failure (a decoder that
    /// fails does not say how far it got in that call).
    consumed: Option<usize>,
}

impl<T> Outcome<T> {
    fn new(results: Vec<T>, end: End, buffer: &ReadBuffer) -> Self {
        let consumed = (!matches!(end, End::Failed)).then(|| buffer.consumed());
        Outcome { results, end, consumed }
    }
}

#[derive(Debug, PartialEq)]
enum End {
    /// Waiting for more bytes, this many already held.
    Waiting(usize),
    /// Finished, as the protocol says (a response complete, a request that
    /// closes the connection).
    Done,
    /// Refused: a response the decoder failed on, a request answered with
    /// 400 or 431.
    Failed,
}

/// Request heads as the metrics endpoint reads them (requests one after
/// another on a connection, until one closes it), from one buffer and from
/// the fuzzer's pieces: the same heads, the same end. Each head is checked
/// against the bytes it came from.
///
/// Settings: bits 0–2 the largest head, 32 << n bytes (bit 3: the
/// endpoint's 8 KiB instead).
pub fn http_request(input: &[u8]) {
    let script = Script::parse(input);
    let max_head = if script.settings & 8 != 0 { 8 * 1024 } else { 32 << (script.settings & 7) };
    let whole = serve(&[script.data], max_head);
    assert_eq!(serve(&script.pieces(), max_head), whole, "split into reads, the requests differ");
}

fn serve(pieces: &[&[u8]], max_head: usize) -> Outcome<String> {
    let mut heads = Vec::new();
    let mut end = None;
    let mut buffer = ReadBuffer::default();
    for piece in pieces {
        let left = buffer.push(piece, |data| {
            let mut consumed = 0;
            while end.is_none() {
                let rest = &data[consumed..];
                match parse_request_head(rest, max_head) {
                    Ok(None) => break,
                    Ok(Some(head)) => {
                        check_request_head(rest, &format!("{head:?}"), head.len, max_head);
                        assert!(is_token(head.method), "method {:?}", head.method);
                        assert!(head.headers.len() <= MAX_HEADERS && head.minor_version <= 1);
                        assert!(head.headers.iter().all(|(name, _)| is_token(name)));
                        assert!(!(head.chunked && head.content_length.is_some()));
                        consumed += head.len;
                        // The endpoint answers, then closes if told to, or
                        // if a body it will not read follows.
                        if !head.keep_alive || head.has_body() {
                            end = Some(End::Done);
                        }
                        heads.push(format!("{head:?}"));
                    }
                    // The endpoint answers and closes.
                    Err(error) => {
                        assert!(matches!(error.status(), 400 | 431));
                        end = Some(End::Failed);
                    }
                }
            }
            consumed
        });
        if end.is_some() {
            break;
        }
        // An unfinished head is held only up to the limit.
        assert!(left <= max_head, "{left} bytes held");
    }
    let end = end.unwrap_or(End::Waiting(buffer.held()));
    Outcome::new(heads, end, &buffer)
}

/// A head of `len` bytes parsed from the front of `data`: it ends with a
/// blank line, the same head comes from its own bytes alone, and one byte
/// fewer is not a head yet.
fn check_request_head(data: &[u8], head: &str, len: usize, max_head: usize) {
    assert!(0 < len && len <= data.len() && len <= max_head);
    assert!(data[..len].ends_with(b"\n\n") || data[..len].ends_with(b"\n\r\n"), "{head}");
    let alone = parse_request_head(&data[..len], max_head).map(|h| h.map(|h| format!("{h:?}")));
    assert_eq!(alone, Ok(Some(head.to_string())));
    assert_eq!(parse_request_head(&data[..len - 1], max_head), Ok(None));
}

/// A response read by `ResponseDecoder` from one buffer and from the
/// fuzzer's pieces: the same response ending at the same byte, or a
/// failure. What the decoder leaves unconsumed stays under its limits, and
/// a body under `max_body`.
///
/// One difference is allowed: the head is parsed only once a blank line
/// may end it, so garbage before the end of the head is seen when a blank
/// line lets the parser look, and that depends on the reads. Until the
/// stream ends, waiting is as good as failing; at its end the one that
/// waited must fail too.
///
/// Settings: bits 0–2 the largest head, 64 << n bytes; bits 3–5 the
/// largest body, 64 << n bytes; bit 6 the connection ends after the data.
pub fn http_response(input: &[u8]) {
    let script = Script::parse(input);
    let limits = ResponseLimits { max_head: 64 << (script.settings & 7), max_body: 64 << ((script.settings >> 3) & 7) };
    let eof = script.settings & 0x40 != 0;
    let (whole, pieces) = ([script.data].to_vec(), script.pieces());
    let (from_whole, from_pieces) = (read_response(&whole, limits, eof), read_response(&pieces, limits, eof));
    let waited = match (&from_whole.end, &from_pieces.end) {
        (End::Waiting(_), End::Failed) => &whole,
        (End::Failed, End::Waiting(_)) => &pieces,
        _ => {
            assert_eq!(from_pieces, from_whole, "split into reads, the response differs");
            return;
        }
    };
    assert!(from_whole.results.is_empty() && from_pieces.results.is_empty());
    assert_eq!(read_response(waited, limits, true).end, End::Failed, "one refused what the other took");
}

fn read_response(pieces: &[&[u8]], limits: ResponseLimits, eof: bool) -> Outcome<Response> {
    let url = Url::parse("http://127.0.0.1/fuzz").expect("a valid URL");
    let mut decoder = ResponseDecoder::new(url, limits);
    let mut buffer = ReadBuffer::default();
    let mut result: Option<Result<Response, Error>> = None;
    for piece in pieces {
        let left = buffer.push(piece, |data| match decoder.decode(data) {
            Ok(progress) => {
                result = progress.response.map(Ok);
                progress.consumed
            }
            Err(error) => {
                result = Some(Err(error));
                0
            }
        });
        if result.is_some() {
            break;
        }
        // Part of a head, of a chunk-size line or of the trailers.
        assert!(left <= limits.max_head.max(MAX_SIZE_LINE), "{left} bytes held");
    }
    let result = match result {
        None if eof => decoder.decode_eof().transpose(),
        result => result,
    };
    let (results, end) = match result {
        Some(Ok(response)) => {
            assert!(response.body.len() <= limits.max_body);
            (vec![response], End::Done)
        }
        Some(Err(_)) => (Vec::new(), End::Failed),
        None => (Vec::new(), End::Waiting(buffer.held())),
    };
    Outcome::new(results, end, &buffer)
}

/// A chunked body decoded from one buffer and from the fuzzer's pieces:
/// the same body ending at the same byte, or a failure; never
/// more than `max_body` kept. And the data itself, sent as chunks cut at
/// the choices, decodes back to itself at a limit of exactly its size.
///
/// Settings: bits 0–2 the largest body, 16 << n bytes; bits 3–5 the
/// largest trailers, 16 << n bytes.
pub fn http_chunked(input: &[u8]) {
    let script = Script::parse(input);
    let max_body = 16 << (script.settings & 7);
    let max_trailers = 16 << ((script.settings >> 3) & 7);
    let whole = read_chunked(&[script.data], max_body, max_trailers);
    assert_eq!(read_chunked(&script.pieces(), max_body, max_trailers), whole, "split into reads, the body differs");

    let mut encoded = Vec::new();
    for piece in script.pieces().into_iter().filter(|piece| !piece.is_empty()) {
        encoded.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        encoded.extend_from_slice(piece);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    let mut body = Vec::new();
    let decoded = ChunkedDecoder::default().decode(&encoded, &mut body, script.data.len(), 0);
    assert_eq!(decoded, Ok((encoded.len(), true)));
    assert_eq!(body, script.data);
}

fn read_chunked(pieces: &[&[u8]], max_body: usize, max_trailers: usize) -> Outcome<Vec<u8>> {
    let mut decoder = ChunkedDecoder::default();
    let mut body = Vec::new();
    let mut buffer = ReadBuffer::default();
    let mut end = None;
    for piece in pieces {
        let left = buffer.push(piece, |data| match decoder.decode(data, &mut body, max_body, max_trailers) {
            Ok((used, complete)) => {
                end = complete.then_some(End::Done);
                used
            }
            Err(_) => {
                end = Some(End::Failed);
                0
            }
        });
        assert!(body.len() <= max_body);
        if end.is_some() {
            break;
        }
        // Part of a chunk-size line, of a chunk's CRLF or of the trailers.
        assert!(left <= MAX_SIZE_LINE.max(max_trailers), "{left} bytes held");
    }
    let end = end.unwrap_or(End::Waiting(buffer.held()));
    Outcome::new(vec![body], end, &buffer)
}

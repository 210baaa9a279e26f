//! HTTP/1.1 request heads, sans-IO: what the bytes at the front of a
//! connection's buffer are — a whole request head, not yet one, or one we
//! refuse — with `httparse` doing the parsing and every size bounded.

/// Header lines accepted in one request; more get `431`.
pub const MAX_HEADERS: usize = 64;

/// What the bytes at the front of the buffer are.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole request head yet.
    Partial,
    /// Answer with this status, then close.
    Invalid(u16),
    Request(Request<'a>),
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// Bytes of the head (there is no body we read).
    pub head_len: usize,
    pub method: &'a str,
    pub path: &'a str,
    pub keep_alive: bool,
    /// It announced a body (which we do not read).
    pub has_body: bool,
}

/// Parses the request at the front of `data` with `httparse`.
pub fn parse_request(data: &[u8], max_header_bytes: usize) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(data) {
        Ok(httparse::Status::Complete(len)) if len <= max_header_bytes => len,
        Ok(httparse::Status::Complete(_)) => return Parsed::Invalid(431),
        // Incomplete, and already past the limit: it can only get bigger.
        Ok(httparse::Status::Partial) if data.len() > max_header_bytes => return Parsed::Invalid(431),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(431),
        Err(_) => return Parsed::Invalid(400),
    };
    // A complete head has all three.
    let (Some(method), Some(path), Some(version)) = (request.method, request.path, request.version) else {
        return Parsed::Invalid(400);
    };
    let mut close = false;
    let mut keep_alive = false;
    let mut has_body = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("connection") {
            // A comma-separated list of options.
            for option in header.value.split(|&b| b == b',') {
                let option = option.trim_ascii();
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            has_body |= header.value.trim_ascii() != b"0";
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    // HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes
    // it unless asked to keep it.
    let keep_alive = !close && (version >= 1 || keep_alive);
    Parsed::Request(Request { head_len, method, path, keep_alive, has_body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(text: &str) -> Request<'_> {
        match parse_request(text.as_bytes(), 8192) {
            Parsed::Request(request) => request,
            other => panic!("{text:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        assert!(request("GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!request("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!request("GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n").keep_alive);
        assert!(!request("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn a_body_is_noticed_and_not_counted_in_the_request() {
        let text = "POST /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd";
        let parsed = request(text);
        assert!(parsed.has_body);
        assert_eq!(parsed.head_len, text.len() - 4);
        assert!(!request("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").has_body);
        assert!(request("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").has_body);
    }

    #[test]
    fn heads_are_bounded() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(parse_request(big.as_bytes(), 64), Parsed::Invalid(431), "complete but too big");
        assert_eq!(parse_request(&big.as_bytes()[..80], 64), Parsed::Invalid(431), "incomplete and too big");
        assert_eq!(parse_request(&big.as_bytes()[..40], 64), Parsed::Partial);
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(parse_request(many.as_bytes(), 8192), Parsed::Invalid(431), "too many header lines");
        assert_eq!(parse_request(b"\x00\x01garbage\r\n\r\n", 8192), Parsed::Invalid(400));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            match parse_request(&data, 256) {
                Parsed::Request(request) => prop_assert!(request.head_len <= data.len()),
                Parsed::Partial => prop_assert!(data.len() <= 256),
                Parsed::Invalid(status) => prop_assert!(status == 400 || status == 431),
            }
        }
    }
}

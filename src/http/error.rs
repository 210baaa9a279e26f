//! Why a fetch failed: one typed error for the whole client, from a bad URL
//! to a refused redirect.
//!
//! Text that came from the server (a header value, a bad line) is kept
//! short and escaped (`excerpt`) before it goes into an error, so that
//! printing an error never sends server-chosen bytes to a terminal raw.

use std::fmt;

use super::url::{Url, UrlError};

/// Everything that can go wrong with one request, its response, or the
/// redirects between them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The URL asked for is not one we can fetch.
    InvalidUrl(UrlError),
    /// The request cannot be sent as given: a header name that is not a
    /// token, a value with CR or LF in it, or a header the client sets
    /// itself (`Host`, `Content-Length`, ...).
    InvalidRequest(String),
    /// The host name did not resolve to any address.
    Resolve(String),
    /// No connection could be made to any of the host's addresses: the
    /// last address and the system's error.
    Connect(String),
    /// The connection failed after it was made (reset, say).
    Io(String),
    /// The URL is `https://`, and this build has no TLS transport wired in
    /// yet.
    TlsUnavailable,
    /// The TLS handshake or the TLS session failed.
    Tls(String),
    /// The request's deadline passed before the response was complete.
    Timeout,
    /// The response head (status line and headers, or the trailers of a
    /// chunked body) is larger than the limit.
    HeadTooLarge { limit: usize },
    /// The response has more header lines than the limit.
    TooManyHeaders { limit: usize },
    /// The status line or a header is not valid HTTP/1.x, or the headers
    /// contradict each other.
    Malformed(String),
    /// The body is larger than the limit (announced by `Content-Length`,
    /// by a chunk's size, or seen arriving).
    BodyTooLarge { limit: usize },
    /// The connection closed before the response was complete.
    Truncated,
    /// A `Transfer-Encoding: chunked` body is not valid chunked framing.
    BadChunk(String),
    /// The body is encoded in a way we did not ask for (we send
    /// `Accept-Encoding: identity`) and do not decode.
    UnsupportedEncoding(String),
    /// More redirects in a row than the limit.
    TooManyRedirects { limit: usize },
    /// A redirect leads back to a URL already requested.
    RedirectLoop(Url),
    /// A redirect from `https://` to `http://`, which would send the rest
    /// in the clear.
    DowngradeRefused(Url),
    /// A redirect's `Location` is not a URL we can fetch.
    BadRedirect(UrlError),
    /// The server answered with a status the caller does not accept (see
    /// [`Response::error_for_status`](super::Response::error_for_status)).
    Status(u16),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidUrl(e) => write!(f, "invalid URL: {e}"),
            Error::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            Error::Resolve(why) => write!(f, "cannot resolve the host: {why}"),
            Error::Connect(why) => write!(f, "cannot connect: {why}"),
            Error::Io(why) => write!(f, "connection failed: {why}"),
            Error::TlsUnavailable => write!(f, "https is not available in this build"),
            Error::Tls(why) => write!(f, "TLS failed: {why}"),
            Error::Timeout => write!(f, "no complete response before the deadline"),
            Error::HeadTooLarge { limit } => write!(f, "response head larger than {limit} bytes"),
            Error::TooManyHeaders { limit } => write!(f, "more than {limit} response headers"),
            Error::Malformed(why) => write!(f, "malformed response: {why}"),
            Error::BodyTooLarge { limit } => write!(f, "response body larger than {limit} bytes"),
            Error::Truncated => write!(f, "the connection closed before the response was complete"),
            Error::BadChunk(why) => write!(f, "bad chunked body: {why}"),
            Error::UnsupportedEncoding(coding) => write!(f, "unsupported content coding {coding}"),
            Error::TooManyRedirects { limit } => write!(f, "more than {limit} redirects"),
            Error::RedirectLoop(url) => write!(f, "redirect loop back to {url}"),
            Error::DowngradeRefused(url) => write!(f, "refused a redirect from https to {url}"),
            Error::BadRedirect(e) => write!(f, "redirect to an invalid URL: {e}"),
            Error::Status(status) => write!(f, "the server answered {status}"),
        }
    }
}

impl std::error::Error for Error {}

/// Server-chosen bytes made fit for an error message: at most 64 of them,
/// quoted, with everything but printable ASCII escaped.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let mut out = String::from("\"");
    for &b in bytes.iter().take(MAX) {
        out.extend(std::ascii::escape_default(b).map(char::from));
    }
    if bytes.len() > MAX {
        out.push_str("...");
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_escape_control_bytes_and_stop_at_64() {
        assert_eq!(excerpt(b"gzip"), "\"gzip\"");
        assert_eq!(excerpt(b"a\x1b[2Jb\r\n\xff"), "\"a\\x1b[2Jb\\r\\n\\xff\"");
        let long = excerpt(&[b'x'; 100]);
        assert_eq!(long.len(), 1 + 64 + 3 + 1);
    }
}

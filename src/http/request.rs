//! A request to send, and its bytes on the wire.
//!
//! The caller chooses the method, the URL and headers such as `User-Agent`,
//! `Accept` and `Referer`. The client sets the headers that decide how the
//! exchange works, and refuses them from the caller:
//!
//! - `Host`, from the URL;
//! - `Accept-Encoding: identity`: we do not decompress, so we ask for a
//!   plain body (and refuse any other, see [`Error::UnsupportedEncoding`]);
//! - `Connection: close`: **one request per connection**. The server
//!   closes after its response, so a response without a length simply ends
//!   at the close, and no connection pool, idle timeout or "was the reused
//!   connection dead?" retry exists anywhere. The cost, a TCP (and later
//!   TLS) handshake per request, is nothing for a few page look-ups;
//! - `Content-Length` for a body.

use super::error::Error;
use super::head::{is_field_value, is_token};
use super::url::Url;

/// The methods this client sends. `HEAD` is not among them: its response
/// has headers that describe a body which does not follow, a special case
/// the decoder need not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// The headers the client sets itself (see the module docs).
const MANAGED: [&str; 5] = ["host", "accept-encoding", "connection", "content-length", "transfer-encoding"];

/// One request: method, URL, the caller's headers, and a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// `GET url`.
    pub fn get(url: Url) -> Request {
        Request { method: Method::Get, url, headers: Vec::new(), body: Vec::new() }
    }

    /// `POST url` with `body` (add a `Content-Type` header to say what it is).
    pub fn post(url: Url, body: impl Into<Vec<u8>>) -> Request {
        Request { method: Method::Post, url, headers: Vec::new(), body: body.into() }
    }

    /// Adds a header. Checked by [`validate`](Self::validate), not here, so
    /// that requests can be built in one expression.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether every header can be sent as it is: names are tokens, values
    /// have no line breaks, and none is one the client sets itself.
    pub fn validate(&self) -> Result<(), Error> {
        for (name, value) in &self.headers {
            if !is_token(name) {
                return Err(Error::InvalidRequest(format!("bad header name {:?}", name)));
            }
            if MANAGED.iter().any(|m| name.eq_ignore_ascii_case(m)) {
                return Err(Error::InvalidRequest(format!("{name} is set by the client")));
            }
            if !is_field_value(value) {
                return Err(Error::InvalidRequest(format!("a control character in the {name} header")));
            }
        }
        Ok(())
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Appends the request, head and body, to `out`. Call
    /// [`validate`](Self::validate) first: a header that fails it would be
    /// sent as it is.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut head =
            format!("{} {} HTTP/1.1\r\nHost: {}\r\n", self.method.as_str(), self.url.target(), self.url.authority());
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.has_header("user-agent") {
            head.push_str(concat!("User-Agent: barrage/", env!("CARGO_PKG_VERSION"), "\r\n"));
        }
        if !self.has_header("accept") {
            head.push_str("Accept: */*\r\n");
        }
        head.push_str("Accept-Encoding: identity\r\nConnection: close\r\n");
        if self.method == Method::Post || !self.body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(request: &Request) -> String {
        let mut out = Vec::new();
        request.encode(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn get_carries_the_callers_headers_and_ours() {
        let url = Url::parse("https://www.douyu.com/betard/6979222?x=1").unwrap();
        let request = Request::get(url)
            .header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
            .header("Referer", "https://www.douyu.com/");
        assert_eq!(request.validate(), Ok(()));
        assert_eq!(
            encoded(&request),
            "GET /betard/6979222?x=1 HTTP/1.1\r\n\
             Host: www.douyu.com\r\n\
             User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n\
             Referer: https://www.douyu.com/\r\n\
             Accept: */*\r\n\
             Accept-Encoding: identity\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn defaults_and_a_post_body() {
        let request = Request::post(Url::parse("http://[::1]:8080/poll").unwrap(), "token=t")
            .header("Content-Type", "application/x-www-form-urlencoded");
        let text = encoded(&request);
        assert!(text.starts_with("POST /poll HTTP/1.1\r\nHost: [::1]:8080\r\n"), "{text}");
        assert!(text.contains("\r\nUser-Agent: barrage/"), "{text}");
        assert!(text.ends_with("Connection: close\r\nContent-Length: 7\r\n\r\ntoken=t"), "{text}");
    }

    #[test]
    fn headers_that_could_break_the_request_are_refused() {
        let url = Url::parse("http://h/").unwrap();
        for (name, value) in [
            ("X-Bad", "a\r\nInjected: yes"),
            ("X-Bad", "nul\0"),
            ("Bad Name", "v"),
            ("", "v"),
            ("Host", "evil.example"),
            ("content-length", "5"),
            ("Connection", "keep-alive"),
            ("Accept-Encoding", "gzip"),
        ] {
            let result = Request::get(url.clone()).header(name, value).validate();
            assert!(matches!(result, Err(Error::InvalidRequest(_))), "{name:?}: {value:?} gave {result:?}");
        }
    }
}

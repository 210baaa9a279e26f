//! Absolute `http://` and `https://` URLs: parse one, resolve a reference
//! (a redirect's `Location`) against one, put a path under a base.
//!
//! Only what an HTTP client sends is kept: scheme, host, port, path and
//! query. A fragment is dropped (it never goes on the wire), user
//! information (`user:pass@`) is refused, and so is any other scheme.
//! Parsing normalises, so two URLs naming the same resource compare equal:
//! scheme and host in lower case, the port always known (80 or 443 if not
//! given), `.` and `..` segments removed, and bytes that may not appear in
//! a request line (space, non-ASCII, `"<>\^`{|}`) percent-encoded. Control
//! characters are refused rather than encoded: in a URL they are a mistake
//! or an attack (a CR LF would split the request).
//!
//! Hosts are ASCII: a DNS name, a dotted IPv4 address, or a bracketed IPv6
//! address. International names must be given in their `xn--` form (this
//! is not a browser; the `url` crate's IDNA tables would be most of our
//! dependencies for a case Douyu does not have).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::excerpt;

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Where a URL points.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, in lower case.
    Domain(String),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl Host {
    /// The address, if the host is one (no lookup needed).
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
        }
    }
}

impl fmt::Display for Host {
    /// As in a URL: IPv6 in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(name) => f.write_str(name),
            Host::Ipv4(ip) => write!(f, "{ip}"),
            Host::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// Why a string is not a URL we can fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// It does not start with `http://` or `https://`.
    MissingScheme,
    /// It has a scheme, not `http` or `https` (the scheme, escaped).
    UnsupportedScheme(String),
    /// Nothing between `//` and the path.
    MissingHost,
    /// `user:password@host`: credentials in URLs are not supported.
    UserInfo,
    /// Not a DNS name, an IPv4 address or a bracketed IPv6 address.
    BadHost(String),
    /// Not a number from 1 to 65535.
    BadPort(String),
    /// A control character (CR, LF, NUL, ...) in the path or query.
    ControlCharacter,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::MissingScheme => write!(f, "it does not start with http:// or https://"),
            UrlError::UnsupportedScheme(scheme) => write!(f, "scheme {scheme} is not http or https"),
            UrlError::MissingHost => write!(f, "no host"),
            UrlError::UserInfo => write!(f, "user names and passwords in URLs are not supported"),
            UrlError::BadHost(host) => write!(f, "bad host {host}"),
            UrlError::BadPort(port) => write!(f, "bad port {port}"),
            UrlError::ControlCharacter => write!(f, "a control character in the path or query"),
        }
    }
}

impl std::error::Error for UrlError {}

/// An absolute http(s) URL, normalised (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Url {
    scheme: Scheme,
    host: Host,
    port: u16,
    /// Starts with `/`; percent-encoded as needed.
    path: String,
    /// After the `?`, without it. `Some("")` for a bare `?`.
    query: Option<String>,
}

impl Url {
    /// Parses an absolute URL (leading and trailing whitespace ignored).
    pub fn parse(input: &str) -> Result<Url, UrlError> {
        let input = without_fragment(input.trim());
        let (scheme, rest) = split_scheme(input).ok_or(UrlError::MissingScheme)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(UrlError::UnsupportedScheme(excerpt(scheme.as_bytes()))),
        };
        let rest = rest.strip_prefix("//").ok_or(UrlError::MissingHost)?;
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (host, port) = parse_authority(&rest[..authority_end], scheme)?;
        let (path, query) = split_query(&rest[authority_end..]);
        Url::build(scheme, host, port, path, query)
    }

    /// Resolves `reference` (absolute, `//host/...`, `/path`, `path`,
    /// `?query`) against this URL, as RFC 3986 §5.2 does for a redirect's
    /// `Location`.
    pub fn join(&self, reference: &str) -> Result<Url, UrlError> {
        let reference = without_fragment(reference.trim());
        if split_scheme(reference).is_some() {
            return Url::parse(reference);
        }
        if reference.starts_with("//") {
            return Url::parse(&format!("{}:{reference}", self.scheme.as_str()));
        }
        let (path, query) = split_query(reference);
        let (path, query) = if path.is_empty() {
            // Same document: a new query if the reference has one.
            (self.path.clone(), if query.is_some() { query } else { self.query.as_deref() })
        } else if path.starts_with('/') {
            (path.to_string(), query)
        } else {
            // Relative to the base's "directory": everything up to its last `/`.
            let directory = &self.path[..=self.path.rfind('/').unwrap_or(0)];
            (format!("{directory}{path}"), query)
        };
        Url::build(self.scheme, self.host.clone(), self.port, &path, query)
    }

    /// This URL's scheme, host and port, its path as a prefix, and
    /// `path_and_query` after it: `http://127.0.0.1:8080/douyu` with
    /// `/betard/1` is `http://127.0.0.1:8080/douyu/betard/1`. The base's
    /// own query is not kept. This is how a user-given web base
    /// (`--web-base`) stands in for `https://www.douyu.com`.
    pub fn append_path(&self, path_and_query: &str) -> Result<Url, UrlError> {
        let (tail, query) = split_query(without_fragment(path_and_query));
        let prefix = self.path.trim_end_matches('/');
        let path = format!("{prefix}/{}", tail.trim_start_matches('/'));
        Url::build(self.scheme, self.host.clone(), self.port, &path, query)
    }

    fn build(scheme: Scheme, host: Host, port: u16, path: &str, query: Option<&str>) -> Result<Url, UrlError> {
        let path = if path.is_empty() { "/".to_string() } else { remove_dot_segments(&encode(path)?) };
        let query = query.map(encode).transpose()?;
        Ok(Url { scheme, host, port, path, query })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Host, and port unless it is the scheme's default: the `Host`
    /// header's value.
    pub fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Path and query: what goes in the request line.
    pub fn target(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }

    /// Same scheme, host and port.
    pub fn same_origin(&self, other: &Url) -> bool {
        (self.scheme, &self.host, self.port) == (other.scheme, &other.host, other.port)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme.as_str(), self.authority(), self.path)?;
        if let Some(query) = &self.query {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Url {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Url, UrlError> {
        Url::parse(s)
    }
}

// ----- pieces -----------------------------------------------------------------

fn without_fragment(s: &str) -> &str {
    s.split('#').next().unwrap_or_default()
}

/// `(path, query)`; the query without its `?`.
fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (s, None),
    }
}

/// RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// `(scheme, rest)` if `s` starts with `scheme:`. `host:8080/...` is a
/// host and a port, not a scheme.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let end = s.find([':', '/', '?'])?;
    let (scheme, rest) = (&s[..end], &s[end + 1..]);
    if s.as_bytes()[end] != b':' || !is_scheme(scheme) {
        return None;
    }
    let port = rest.split(['/', '?']).next().unwrap_or_default();
    let port_like = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    (!port_like).then_some((scheme, rest))
}

fn parse_authority(authority: &str, scheme: Scheme) -> Result<(Host, u16), UrlError> {
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    if authority.is_empty() {
        return Err(UrlError::MissingHost);
    }
    let bad_host = |host: &str| UrlError::BadHost(excerpt(host.as_bytes()));
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']').ok_or_else(|| bad_host(authority))?;
        let ip = inside.parse::<Ipv6Addr>().map_err(|_| bad_host(inside))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| bad_host(authority))?),
        };
        (Host::Ipv6(ip), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(UrlError::MissingHost);
        }
        (parse_host(host).ok_or_else(|| bad_host(host))?, port)
    };
    let port = match port {
        // `http://host:/` is allowed and means the default port.
        None | Some("") => scheme.default_port(),
        Some(digits) => parse_port(digits).ok_or_else(|| UrlError::BadPort(excerpt(digits.as_bytes())))?,
    };
    Ok((host, port))
}

fn parse_port(digits: &str) -> Option<u16> {
    if digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&port| port != 0)
}

/// A dotted IPv4 address or a DNS name of letters, digits, `-` and `_`.
fn parse_host(host: &str) -> Option<Host> {
    let lower = host.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !labels_ok {
        return None;
    }
    // A name whose last label is a number can only be an IPv4 address; one
    // that is not valid (`1.2.3`, `256.0.0.1`, `01.2.3.4`) is refused rather
    // than looked up as a name.
    let last = name.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return name.parse().ok().map(Host::Ipv4);
    }
    Some(Host::Domain(lower))
}

/// Percent-encodes what may not appear in a request line; refuses control
/// characters.
fn encode(s: &str) -> Result<String, UrlError> {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            0..=0x1f | 0x7f => return Err(UrlError::ControlCharacter),
            b' ' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}' | 0x80.. => {
                out.push_str(&format!("%{b:02X}"));
            }
            _ => out.push(char::from(b)),
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on a path that starts with `/`: `a/./b` is `a/b`,
/// `a/b/../c` is `a/c`, and `..` never climbs above the root.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            other => {
                out.push(other);
                continue;
            }
        }
        // A trailing `.` or `..` names a directory: keep its slash.
        if last {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn douyu_pages_parse() {
        let mobile = url("https://m.douyu.com/6657");
        assert_eq!(mobile.scheme(), Scheme::Https);
        assert_eq!(mobile.host(), &Host::Domain("m.douyu.com".into()));
        assert_eq!((mobile.port(), mobile.path(), mobile.query()), (443, "/6657", None));
        assert_eq!(mobile.to_string(), "https://m.douyu.com/6657");

        let betard = url("https://www.douyu.com/betard/6979222");
        assert_eq!((betard.authority().as_str(), betard.target().as_str()), ("www.douyu.com", "/betard/6979222"));

        let with_query = url("https://www.douyu.com/topic/NAME?rid=288016#top");
        assert_eq!((with_query.path(), with_query.query()), ("/topic/NAME", Some("rid=288016")));
        assert_eq!(with_query.to_string(), "https://www.douyu.com/topic/NAME?rid=288016");
    }

    #[test]
    fn hosts_and_ports() {
        let v4 = url("http://127.0.0.1:8080");
        assert_eq!((v4.host(), v4.port(), v4.path()), (&Host::Ipv4(Ipv4Addr::LOCALHOST), 8080, "/"));
        assert_eq!(v4.authority(), "127.0.0.1:8080");

        let v6 = url("http://[::1]:9000/x");
        assert_eq!((v6.host(), v6.port()), (&Host::Ipv6(Ipv6Addr::LOCALHOST), 9000));
        assert_eq!(v6.to_string(), "http://[::1]:9000/x");
        assert_eq!(url("https://[::1]/").authority(), "[::1]");

        // Normalised: scheme and host case, default port, empty port.
        assert_eq!(url("HTTP://Example.COM:80/A"), url("http://example.com/A"));
        assert_eq!(url("http://example.com:/"), url("http://example.com/"));
        assert_eq!(url("http://example.com.").host(), &Host::Domain("example.com.".into()));
    }

    #[test]
    fn unfetchable_urls_are_refused_with_a_reason() {
        for (input, error) in [
            ("douyu.com/6657", UrlError::MissingScheme),
            ("6657", UrlError::MissingScheme),
            ("localhost:8080/x", UrlError::MissingScheme),
            ("ftp://example.com/", UrlError::UnsupportedScheme("\"ftp\"".into())),
            ("wss://danmuproxy.douyu.com:8502/", UrlError::UnsupportedScheme("\"wss\"".into())),
            ("http://", UrlError::MissingHost),
            ("http:/x", UrlError::MissingHost),
            ("https://:443/", UrlError::MissingHost),
            ("http://user:pw@example.com/", UrlError::UserInfo),
            ("http://exa mple.com/", UrlError::BadHost("\"exa mple.com\"".into())),
            ("http://例子.com/", UrlError::BadHost("\"\\xe4\\xbe\\x8b\\xe5\\xad\\x90.com\"".into())),
            ("http://1.2.3/", UrlError::BadHost("\"1.2.3\"".into())),
            ("http://256.0.0.1/", UrlError::BadHost("\"256.0.0.1\"".into())),
            ("http://::1/", UrlError::BadHost("\":\"".into())),
            ("http://[::1/", UrlError::BadHost("\"[::1\"".into())),
            ("http://[::1]x/", UrlError::BadHost("\"[::1]x\"".into())),
            ("http://host:0/", UrlError::BadPort("\"0\"".into())),
            ("http://host:65536/", UrlError::BadPort("\"65536\"".into())),
            ("http://host:+80/", UrlError::BadPort("\"+80\"".into())),
            ("http://host/a\r\nX-Injected: 1", UrlError::ControlCharacter),
            ("http://host/?q=\0", UrlError::ControlCharacter),
        ] {
            assert_eq!(Url::parse(input), Err(error), "{input:?}");
        }
    }

    #[test]
    fn paths_are_encoded_and_dot_segments_removed() {
        assert_eq!(url("http://h/a b/名").path(), "/a%20b/%E5%90%8D");
        assert_eq!(url("http://h/a%20b").path(), "/a%20b", "already encoded stays as it is");
        assert_eq!(url("http://h/a/./b/../c").path(), "/a/c");
        assert_eq!(url("http://h/../../x").path(), "/x");
        assert_eq!(url("http://h/a/b/..").path(), "/a/");
        assert_eq!(url("http://h/a//b").path(), "/a//b");
        assert_eq!(url("http://h?x").target(), "/?x");
    }

    #[test]
    fn references_resolve_as_rfc_3986_says() {
        // RFC 3986 §5.4.1's examples (those an http client can meet).
        let base = url("http://a/b/c/d;p?q");
        for (reference, expected) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            (";x", "http://a/b/c/;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            ("..g", "http://a/b/c/..g"),
            ("g/../h", "http://a/b/c/h"),
            ("https://other:8443/x", "https://other:8443/x"),
        ] {
            assert_eq!(base.join(reference).map(|u| u.to_string()), Ok(expected.to_string()), "{reference:?}");
        }
        // Scheme-relative keeps the base's scheme.
        assert_eq!(url("https://a/").join("//b/c").unwrap().to_string(), "https://b/c");
        assert_eq!(base.join("mailto:x@y"), Err(UrlError::UnsupportedScheme("\"mailto\"".into())));
    }

    #[test]
    fn a_web_base_replaces_scheme_and_authority_and_keeps_its_prefix() {
        let base = url("http://127.0.0.1:8080/douyu/");
        assert_eq!(
            base.append_path("/betard/6979222").unwrap().to_string(),
            "http://127.0.0.1:8080/douyu/betard/6979222"
        );
        assert_eq!(base.append_path("6657?x=1").unwrap().to_string(), "http://127.0.0.1:8080/douyu/6657?x=1");
        let bare = url("https://www.douyu.com");
        assert_eq!(bare.append_path("/betard/1").unwrap().to_string(), "https://www.douyu.com/betard/1");
        assert_eq!(url("http://h/p?q=1").append_path("/x").unwrap().to_string(), "http://h/p/x");
    }

    proptest::proptest! {
        /// Whatever is parsed prints as a URL that parses to the same thing,
        /// and never holds a byte that would break a request line.
        #[test]
        fn parse_print_parse_is_stable(path in "[ -~\u{80}-\u{ff}]{0,40}") {
            if let Ok(parsed) = Url::parse(&format!("http://h{}", path)) {
                let again = Url::parse(&parsed.to_string());
                proptest::prop_assert_eq!(again.as_ref(), Ok(&parsed));
                proptest::prop_assert!(parsed.target().bytes().all(|b| b.is_ascii_graphic()));
            }
        }
    }
}

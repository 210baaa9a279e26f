//! Where a room connects: a server and the transport to it.
//!
//! Douyu serves the same packets two ways: raw TCP
//! (`danmuproxy.douyu.com:8601`, `:8602`) and WebSocket over TLS, as its web
//! player does (`wss://danmuproxy.douyu.com:8501` … `:8506`), which gets
//! through networks that let only web traffic out. An endpoint is written
//! `tcp://HOST:PORT`, `wss://HOST:PORT[/PATH]`, `ws://HOST:PORT[/PATH]`
//! (no TLS: for the simulator), or plain `HOST:PORT`, meaning TCP.

use std::fmt;
use std::str::FromStr;

use crate::douyu::web::{DESKTOP_USER_AGENT, DOUYU_ORIGIN, DOUYU_REFERER};
use crate::websocket::ClientRequest;

/// How bytes reach the server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Douyu packets straight on a TCP connection.
    Tcp,
    /// Douyu packets inside WebSocket binary messages, at `path`, over TLS
    /// when `tls`.
    WebSocket { tls: bool, path: String },
}

impl Transport {
    /// `tcp`, `ws` or `wss`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::WebSocket { tls: false, .. } => "ws",
            Transport::WebSocket { tls: true, .. } => "wss",
        }
    }
}

/// A server and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub transport: Transport,
    /// A name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Raw TCP to `address`.
    pub fn tcp(address: std::net::SocketAddr) -> Self {
        Endpoint { transport: Transport::Tcp, host: address.ip().to_string(), port: address.port() }
    }

    /// `HOST:PORT`, as the resolver and the TLS and WebSocket handshakes
    /// want it (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The WebSocket upgrade request for `path` on this endpoint, with the
    /// headers Douyu's web player sends (Douyu requires none of them; they
    /// cost nothing and make us look like the player).
    pub fn upgrade_request(&self, path: &str) -> ClientRequest {
        ClientRequest {
            path: path.to_string(),
            origin: Some(DOUYU_ORIGIN.to_string()),
            referer: Some(DOUYU_REFERER.to_string()),
            user_agent: Some(DESKTOP_USER_AGENT.to_string()),
            ..ClientRequest::new(self.authority())
        }
    }

    /// Whether the connection runs TLS (and checks the server's certificate
    /// against `host`).
    pub fn uses_tls(&self) -> bool {
        matches!(self.transport, Transport::WebSocket { tls: true, .. })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.transport {
            Transport::Tcp => write!(f, "tcp://{}", self.authority()),
            Transport::WebSocket { path, .. } => write!(f, "{}://{}{path}", self.transport.scheme(), self.authority()),
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("tcp".to_string(), text),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, ""),
        };
        let transport = match scheme.as_str() {
            "tcp" if path.is_empty() || path == "/" => Transport::Tcp,
            "tcp" => return Err(format!("a tcp:// server has no path: {text:?}")),
            "ws" | "wss" => Transport::WebSocket {
                tls: scheme == "wss",
                path: if path.is_empty() { "/".to_string() } else { path.to_string() },
            },
            other => return Err(format!("unknown transport {other:?} in {text:?}: use tcp://, wss:// or ws://")),
        };
        if path.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(format!("the path of {text:?} has spaces or control characters"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| {
            format!(
                "expected HOST:PORT or a tcp://, wss:// or ws:// address, e.g. danmuproxy.douyu.com:8601, not {text:?}"
            )
        })?;
        let port = match port.parse::<u32>() {
            Ok(port @ 1..=65535) => port as u16,
            Ok(_) => return Err(format!("port {port} of {text:?} is out of range (1 to 65535)")),
            Err(_) => return Err(format!("port {port:?} of {text:?} is not a number")),
        };
        Ok(Endpoint { transport, host: host.to_string(), port })
    }
}

/// `host:port` or `[v6]:port`, with a non-empty host.
fn split_host_port(authority: &str) -> Option<(&str, &str)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            (host, after.strip_prefix(':')?)
        }
        None => authority.rsplit_once(':')?,
    };
    (!host.is_empty() && !host.contains(['[', ']', '@'])).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Endpoint {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn every_form_parses_and_prints_back() {
        let plain = parse("danmuproxy.douyu.com:8601");
        assert_eq!((plain.transport.clone(), plain.port), (Transport::Tcp, 8601));
        assert_eq!(plain.to_string(), "tcp://danmuproxy.douyu.com:8601");
        assert_eq!(parse("tcp://127.0.0.1:9").to_string(), "tcp://127.0.0.1:9");
        let wss = parse("wss://danmuproxy.douyu.com:8502");
        assert_eq!(wss.transport, Transport::WebSocket { tls: true, path: "/".into() });
        assert!(wss.uses_tls());
        assert_eq!(wss.to_string(), "wss://danmuproxy.douyu.com:8502/");
        assert_eq!(parse("WSS://h:1/sub/path").to_string(), "wss://h:1/sub/path");
        assert_eq!(parse("ws://127.0.0.1:80").transport.scheme(), "ws");
        let v6 = parse("wss://[::1]:8501/");
        assert_eq!((v6.host.as_str(), v6.authority()), ("::1", "[::1]:8501".to_string()));
    }

    #[test]
    fn the_upgrade_request_looks_like_douyus_web_player() {
        let request = parse("wss://danmuproxy.douyu.com:8502/sub").upgrade_request("/sub");
        let mut out = Vec::new();
        request.encode("dGhlIHNhbXBsZSBub25jZQ==", &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /sub HTTP/1.1\r\nHost: danmuproxy.douyu.com:8502\r\n"), "{text}");
        for line in [
            "Origin: https://www.douyu.com".to_string(),
            "Referer: https://www.douyu.com/".to_string(),
            format!("User-Agent: {DESKTOP_USER_AGENT}"),
        ] {
            assert!(text.contains(&format!("\r\n{line}\r\n")), "{line} missing from {text}");
        }
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        let error = |text: &str| text.parse::<Endpoint>().unwrap_err();
        assert!(error("127.0.0.1:99999").contains("out of range"), "{}", error("127.0.0.1:99999"));
        assert!(error("h:0").contains("out of range"));
        assert!(error("h:x").contains("not a number"));
        assert!(error("nohost").contains("HOST:PORT"));
        assert!(error(":80").contains("HOST:PORT"));
        assert!(error("http://h:80").contains("unknown transport"));
        assert!(error("tcp://h:80/x").contains("no path"));
        assert!(error("wss://h:1/a b").contains("spaces"));
    }
}

//! The web side's faults: a layer between the pages and the socket that
//! turns a page into what is actually sent, a `Reply`. Each fault is
//! one field of [`WebFaults`] (one `--web-fault KIND[=N]`); all are off by
//! default, and any mix may be on.
//!
//! | fault | what the client sees | what it tests |
//! |---|---|---|
//! | `slow[=SECS]` | every answer after SECS (30) seconds | the client's deadline |
//! | `5xx[=N]` | every Nth request (1: each) answered `503` | retrying, or giving up cleanly |
//! | `redirect-loop` | `302` from `/x` to `/x?redirect=loop` and back, for ever | the redirect limit and loop check |
//! | `truncate` | a `Content-Length` twice the body sent, then the close | a body cut short is an error, not a page |
//! | `oversize[=BYTES]` | a body of BYTES (3 MiB), announced, then streamed | the body limit, before buffering it |
//!
//! They apply in that order: a `503` is not redirected, and `truncate` cuts
//! whatever body is left, an oversized one too (announced whole, half sent).

use std::str::FromStr;
use std::time::Duration;

use super::pages::Page;
use crate::http::server::write_head;
use crate::settings::{SettingError, duration_within};

/// `slow` without a number: longer than any sane client deadline.
pub const DEFAULT_SLOW: Duration = Duration::from_secs(30);
/// `oversize` without a number: over the 2 MiB most clients allow.
pub const DEFAULT_OVERSIZE: u64 = 3 << 20;
/// The largest `oversize` accepted.
pub const MAX_OVERSIZE: u64 = 1 << 30;
/// The longest `slow` accepted.
pub const MAX_SLOW: Duration = Duration::from_secs(24 * 60 * 60);

/// One fault, as `--web-fault` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebFault {
    Slow(Duration),
    ServerError { every: u64 },
    RedirectLoop,
    Truncate,
    Oversize(u64),
}

impl FromStr for WebFault {
    type Err = String;

    /// `slow`, `slow=2.5`, `5xx`, `5xx=3`, `redirect-loop`, `truncate`,
    /// `oversize`, `oversize=3145728`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, number) = match text.split_once('=') {
            Some((kind, number)) => (kind, Some(number)),
            None => (text, None),
        };
        let bad_number = || format!("{text:?}: the number after = is not valid for {kind}");
        let fault = match (kind, number) {
            ("slow", None) => WebFault::Slow(DEFAULT_SLOW),
            ("slow", Some(secs)) => {
                let secs = secs.parse::<f64>().ok().and_then(|secs| Duration::try_from_secs_f64(secs).ok());
                WebFault::Slow(secs.ok_or_else(bad_number)?)
            }
            ("5xx", None) => WebFault::ServerError { every: 1 },
            ("5xx", Some(every)) => WebFault::ServerError { every: every.parse().map_err(|_| bad_number())? },
            ("redirect-loop", None) => WebFault::RedirectLoop,
            ("truncate", None) => WebFault::Truncate,
            ("oversize", None) => WebFault::Oversize(DEFAULT_OVERSIZE),
            ("oversize", Some(bytes)) => WebFault::Oversize(bytes.parse().map_err(|_| bad_number())?),
            _ => {
                return Err(format!(
                    "unknown web fault {text:?}: use slow[=SECS], 5xx[=N], redirect-loop, truncate or oversize[=BYTES]"
                ));
            }
        };
        Ok(fault)
    }
}

/// Which web faults to inject. `Default` is none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebFaults {
    /// Hold every answer this long before sending it.
    pub slow: Option<Duration>,
    /// Answer every Nth request (counted across the server) `503`.
    pub error_every: Option<u64>,
    /// Answer every other request `302`, between two URLs for ever.
    pub redirect_loop: bool,
    /// Send half of each body, announce all of it, then close.
    pub truncate: bool,
    /// Make each body this many bytes (the page, then filler), streamed.
    pub oversize: Option<u64>,
}

impl WebFaults {
    /// Switches `fault` on (a second one of a kind replaces the first).
    pub fn add(&mut self, fault: WebFault) {
        match fault {
            WebFault::Slow(delay) => self.slow = Some(delay),
            WebFault::ServerError { every } => self.error_every = Some(every),
            WebFault::RedirectLoop => self.redirect_loop = true,
            WebFault::Truncate => self.truncate = true,
            WebFault::Oversize(bytes) => self.oversize = Some(bytes),
        }
    }

    /// True if any fault is on.
    pub fn any(&self) -> bool {
        *self != WebFaults::default()
    }

    pub fn validate(&self) -> Result<(), SettingError> {
        if let Some(delay) = self.slow {
            duration_within("web_fault", delay, Duration::ZERO, MAX_SLOW)?;
        }
        if self.error_every == Some(0) {
            return Err(SettingError::new("web_fault", "web fault 5xx=N needs N of at least 1"));
        }
        if self.oversize.is_some_and(|bytes| bytes == 0 || bytes > MAX_OVERSIZE) {
            return Err(SettingError::new(
                "web_fault",
                format!("web fault oversize must be 1 to {MAX_OVERSIZE} bytes"),
            ));
        }
        Ok(())
    }

    /// What to send for `page`, the answer to the `number`th request the
    /// server got (from 1), whose target was `target`.
    pub(super) fn apply(&self, page: Page, number: u64, target: &str, keep_alive: bool) -> Reply {
        let mut location = None;
        let page = if self.error_every.is_some_and(|every| number.is_multiple_of(every)) {
            Page::status(503)
        } else if self.redirect_loop {
            location = Some(loop_location(target));
            Page::status(302)
        } else {
            page
        };
        let announced = self.oversize.unwrap_or(0).max(page.body.len() as u64);
        let sent = if self.truncate { announced / 2 } else { announced };
        let keep_alive = keep_alive && sent == announced;

        let mut headers = vec![("Content-Type", page.content_type)];
        if let Some(location) = &location {
            headers.push(("Location", location));
        }
        if page.status == 405 {
            headers.push(("Allow", "GET"));
        }
        let from_page = page.body.len().min(sent as usize);
        let mut bytes = Vec::with_capacity(256 + from_page);
        write_head(&mut bytes, page.status, &headers, announced, keep_alive);
        bytes.extend_from_slice(&page.body[..from_page]);
        Reply { bytes, filler: sent - from_page as u64, close: !keep_alive, delay: self.slow }
    }
}

/// `redirect-loop`: `/x` and `/x?redirect=loop` send to each other.
fn loop_location(target: &str) -> String {
    match target.strip_suffix("?redirect=loop") {
        Some(path) => path.to_string(),
        None => format!("{}?redirect=loop", target.split('?').next().unwrap_or("/")),
    }
}

/// What to send for one request.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Reply {
    /// The head, and as much of the body as is in memory.
    pub bytes: Vec<u8>,
    /// Filler bytes to stream after `bytes` (`oversize`).
    pub filler: u64,
    /// Close once it is sent (the client asked, or the head promised more).
    pub close: bool,
    /// Send it only after this long (`slow`).
    pub delay: Option<Duration>,
}

/// `len` bytes of `oversize` filler: HTML comments, one a line.
pub(super) fn filler(len: usize) -> Vec<u8> {
    b"<!-- barrage: filler -->\n".iter().copied().cycle().take(len).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{ResponseDecoder, ResponseLimits, Url};

    fn page() -> Page {
        Page { status: 200, content_type: "text/html; charset=utf-8", body: b"<html>room 6657</html>".to_vec() }
    }

    fn faults(list: &[&str]) -> WebFaults {
        let mut faults = WebFaults::default();
        for text in list {
            faults.add(text.parse().unwrap());
        }
        faults
    }

    /// The head of `reply`, as the client's decoder reads it.
    fn decoded(reply: &Reply) -> Result<crate::http::Response, crate::http::Error> {
        let mut decoder = ResponseDecoder::new(Url::parse("http://h/6657").unwrap(), ResponseLimits::default());
        let mut bytes = reply.bytes.clone();
        bytes.extend(filler(reply.filler as usize));
        match decoder.decode(&bytes)?.response {
            Some(response) => Ok(response),
            None => Ok(decoder.decode_eof()?.expect("not returned before")),
        }
    }

    fn head_len(bytes: &[u8]) -> usize {
        bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4
    }

    #[test]
    fn kinds_parse_with_and_without_numbers() {
        assert_eq!("slow".parse(), Ok(WebFault::Slow(DEFAULT_SLOW)));
        assert_eq!("slow=0.5".parse(), Ok(WebFault::Slow(Duration::from_millis(500))));
        assert_eq!("5xx".parse(), Ok(WebFault::ServerError { every: 1 }));
        assert_eq!("5xx=3".parse(), Ok(WebFault::ServerError { every: 3 }));
        assert_eq!("redirect-loop".parse(), Ok(WebFault::RedirectLoop));
        assert_eq!("truncate".parse(), Ok(WebFault::Truncate));
        assert_eq!("oversize".parse(), Ok(WebFault::Oversize(DEFAULT_OVERSIZE)));
        assert_eq!("oversize=100".parse(), Ok(WebFault::Oversize(100)));
        for bad in ["slow=x", "slow=-1", "5xx=", "truncate=1", "fast", "", "oversize=1MiB"] {
            assert!(bad.parse::<WebFault>().is_err(), "{bad}");
        }
        assert!(faults(&["5xx=0"]).validate().is_err());
        assert!(faults(&["oversize=0"]).validate().is_err());
        assert!(faults(&["slow=100000"]).validate().is_err());
        assert_eq!(faults(&["slow", "5xx=2", "redirect-loop", "truncate", "oversize"]).validate(), Ok(()));
    }

    #[test]
    fn no_fault_sends_the_page_as_it_is() {
        let reply = WebFaults::default().apply(page(), 1, "/6657", true);
        assert_eq!((reply.filler, reply.close, reply.delay), (0, false, None));
        let response = decoded(&reply).unwrap();
        assert_eq!((response.status, response.body.as_slice()), (200, page().body.as_slice()));
        assert!(WebFaults::default().apply(page(), 1, "/6657", false).close, "the client asked to close");
    }

    #[test]
    fn every_nth_request_is_a_503() {
        let faults = faults(&["5xx=3"]);
        let statuses: Vec<u16> =
            (1..=7).map(|n| decoded(&faults.apply(page(), n, "/6657", true)).unwrap().status).collect();
        assert_eq!(statuses, [200, 200, 503, 200, 200, 503, 200]);
    }

    #[test]
    fn a_redirect_loop_goes_between_two_urls() {
        let faults = faults(&["redirect-loop"]);
        let location =
            |target| decoded(&faults.apply(page(), 1, target, true)).unwrap().header("location").map(String::from);
        assert_eq!(location("/6657").as_deref(), Some("/6657?redirect=loop"));
        assert_eq!(location("/6657?redirect=loop").as_deref(), Some("/6657"));
        assert_eq!(location("/betard/1?x=1").as_deref(), Some("/betard/1?redirect=loop"));
        let with_5xx = self::faults(&["redirect-loop", "5xx=2"]);
        assert_eq!(decoded(&with_5xx.apply(page(), 2, "/6657", true)).unwrap().status, 503, "5xx first");
    }

    #[test]
    fn truncate_announces_the_whole_body_sends_half_and_closes() {
        let reply = faults(&["truncate"]).apply(page(), 1, "/6657", true);
        assert!(reply.close);
        assert_eq!(reply.bytes.len() - head_len(&reply.bytes), page().body.len() / 2);
        assert!(matches!(decoded(&reply), Err(crate::http::Error::Truncated)), "{:?}", decoded(&reply));
    }

    #[test]
    fn oversize_announces_the_size_and_leaves_the_rest_to_stream() {
        let reply = faults(&["oversize"]).apply(page(), 1, "/6657", true);
        assert_eq!(reply.filler, DEFAULT_OVERSIZE - page().body.len() as u64);
        assert!(!reply.close && reply.bytes.len() < 1024, "the filler is not held in memory");
        assert!(matches!(decoded(&reply), Err(crate::http::Error::BodyTooLarge { .. })));
        let small = faults(&["oversize=4"]).apply(page(), 1, "/6657", true);
        assert_eq!(decoded(&small).unwrap().body, page().body, "never smaller than the page");
        let half = faults(&["oversize=1000", "truncate"]).apply(page(), 1, "/6657", true);
        assert_eq!(half.bytes.len() - head_len(&half.bytes) + half.filler as usize, 500);
        assert!(half.close);
    }

    #[test]
    fn slow_delays_whatever_is_sent() {
        let reply = faults(&["slow=2", "5xx"]).apply(page(), 1, "/6657", true);
        assert_eq!(reply.delay, Some(Duration::from_secs(2)));
        assert_eq!(decoded(&reply).unwrap().status, 503);
    }
}

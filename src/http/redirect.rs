//! Following redirects, across exchanges.
//!
//! An [`Exchange`](super::Exchange) is one connection, so it knows nothing
//! of redirects: a 3xx is just its response. [`Redirects`] is the policy
//! that spans a whole fetch. The driver hands it each response; it answers
//! [`Next::Done`] (give the response to the caller) or [`Next::Follow`]
//! with the next request, which the driver sends on a new connection.
//!
//! ```text
//!   request ──▶ Exchange ──response──▶ Redirects::next ──Done(response)──▶ caller
//!      ▲                                      │
//!      └──────────── Follow(next request) ────┘
//! ```
//!
//! The rules:
//! - 301, 302, 303, 307 and 308 with a `Location` are followed; the
//!   location may be absolute or relative to the URL that answered. Other
//!   statuses, and a 3xx without `Location`, go to the caller as they are.
//! - Never from `https` to `http` ([`Error::DowngradeRefused`]): what was
//!   private would go in the clear. `http` to `https` is fine.
//! - At most `limit` redirects ([`Error::TooManyRedirects`]); a URL
//!   requested before is a loop ([`Error::RedirectLoop`]).
//! - 301, 302 and 303 turn a POST into a GET without its body (RFC 9110
//!   §15.4, what browsers do); 307 and 308 keep the method and the body.
//! - Credentials (`Authorization`, `Cookie`) are not sent to another origin.
//!
//! The deadline is the caller's and covers the whole chain: redirects do
//! not extend it.

use super::error::Error;
use super::request::{Method, Request};
use super::response::Response;
use super::url::{Scheme, Url};

/// Redirects followed by default before giving up.
pub const DEFAULT_REDIRECT_LIMIT: usize = 5;

/// The statuses that redirect.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// What to do after a response.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The final response: hand it to the caller.
    Done(Response),
    /// Send this request next, on a new connection.
    Follow(Request),
}

/// The redirect policy of one fetch: where it started, where it has been.
#[derive(Clone, Debug)]
pub struct Redirects {
    limit: usize,
    /// Every URL requested, the original first.
    visited: Vec<Url>,
}

impl Redirects {
    /// For a fetch of `original`, following at most `limit` redirects.
    pub fn new(original: &Url, limit: usize) -> Redirects {
        Redirects { limit, visited: vec![original.clone()] }
    }

    /// The URL the fetch started with.
    pub fn original(&self) -> &Url {
        &self.visited[0]
    }

    /// Redirects followed so far.
    pub fn followed(&self) -> usize {
        self.visited.len() - 1
    }

    /// Decides what follows `response`, the answer to `request`.
    pub fn next(&mut self, request: &Request, response: Response) -> Result<Next, Error> {
        if !is_redirect(response.status) {
            return Ok(Next::Done(response));
        }
        let Some(location) = response.header("location") else { return Ok(Next::Done(response)) };
        let to = request.url.join(location).map_err(Error::BadRedirect)?;
        if request.url.scheme() == Scheme::Https && to.scheme() == Scheme::Http {
            return Err(Error::DowngradeRefused(to));
        }
        if self.visited.contains(&to) {
            return Err(Error::RedirectLoop(to));
        }
        if self.followed() >= self.limit {
            return Err(Error::TooManyRedirects { limit: self.limit });
        }
        self.visited.push(to.clone());
        Ok(Next::Follow(redirected(request, to, response.status)))
    }
}

/// The request that follows `request` to `to` after a `status` redirect.
fn redirected(request: &Request, to: Url, status: u16) -> Request {
    let mut next = request.clone();
    let drop_header = |next: &mut Request, name: &str| next.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    if matches!(status, 301..=303) && request.method != Method::Get {
        next.method = Method::Get;
        next.body.clear();
        drop_header(&mut next, "content-type");
    }
    if !request.url.same_origin(&to) {
        drop_header(&mut next, "authorization");
        drop_header(&mut next, "cookie");
    }
    next.url = to;
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn redirect(from: &Url, status: u16, location: Option<&str>) -> Response {
        Response {
            url: from.clone(),
            status,
            reason: String::new(),
            headers: location.map(|l| vec![("Location".to_string(), l.to_string())]).unwrap_or_default(),
            body: Vec::new(),
        }
    }

    /// Follows one redirect from `request`: the next request's URL.
    fn follow(redirects: &mut Redirects, request: &Request, status: u16, location: &str) -> Result<Request, Error> {
        match redirects.next(request, redirect(&request.url, status, Some(location)))? {
            Next::Follow(next) => Ok(next),
            Next::Done(response) => panic!("not followed: {response:?}"),
        }
    }

    #[test]
    fn relative_and_absolute_locations_resolve_against_the_url_that_answered() {
        let start = Request::get(url("http://m.douyu.com/a/6657"));
        let mut redirects = Redirects::new(&start.url, 5);
        let next = follow(&mut redirects, &start, 302, "../b?x=1").unwrap();
        assert_eq!(next.url.to_string(), "http://m.douyu.com/b?x=1");
        let next = follow(&mut redirects, &next, 301, "/c").unwrap();
        assert_eq!(next.url.to_string(), "http://m.douyu.com/c");
        let next = follow(&mut redirects, &next, 308, "https://www.douyu.com/6979222").unwrap();
        assert_eq!(next.url.to_string(), "https://www.douyu.com/6979222", "http to https is fine");
        let next = follow(&mut redirects, &next, 307, "//m.douyu.com/d").unwrap();
        assert_eq!(next.url.to_string(), "https://m.douyu.com/d", "keeps the https it had");
        assert_eq!((redirects.followed(), redirects.original()), (4, &start.url));
    }

    #[test]
    fn https_never_goes_back_to_http() {
        let start = Request::get(url("https://www.douyu.com/1"));
        let mut redirects = Redirects::new(&start.url, 5);
        assert_eq!(
            follow(&mut redirects, &start, 302, "http://www.douyu.com/1"),
            Err(Error::DowngradeRefused(url("http://www.douyu.com/1")))
        );
    }

    #[test]
    fn a_loop_is_caught_when_it_comes_back() {
        let start = Request::get(url("http://h/a"));
        let mut redirects = Redirects::new(&start.url, 5);
        let b = follow(&mut redirects, &start, 302, "/b").unwrap();
        assert_eq!(follow(&mut redirects, &b, 302, "/a"), Err(Error::RedirectLoop(url("http://h/a"))));
        let mut redirects = Redirects::new(&start.url, 5);
        assert_eq!(follow(&mut redirects, &start, 302, "a"), Err(Error::RedirectLoop(url("http://h/a"))));
    }

    #[test]
    fn at_most_the_limit_is_followed() {
        let mut request = Request::get(url("http://h/0"));
        let mut redirects = Redirects::new(&request.url, 3);
        for n in 1..=3 {
            request = follow(&mut redirects, &request, 302, &format!("/{n}")).unwrap();
        }
        assert_eq!(follow(&mut redirects, &request, 302, "/4"), Err(Error::TooManyRedirects { limit: 3 }));
        let mut none = Redirects::new(&request.url, 0);
        assert_eq!(follow(&mut none, &request, 301, "/x"), Err(Error::TooManyRedirects { limit: 0 }));
    }

    #[test]
    fn other_statuses_and_a_missing_location_go_to_the_caller() {
        let request = Request::get(url("http://h/"));
        let mut redirects = Redirects::new(&request.url, 5);
        for (status, location) in [(200, Some("/x")), (300, Some("/x")), (304, Some("/x")), (302, None)] {
            let response = redirect(&request.url, status, location);
            assert_eq!(redirects.next(&request, response.clone()), Ok(Next::Done(response)));
        }
        assert_eq!(redirects.followed(), 0);
        assert!(matches!(
            follow(&mut redirects, &request, 302, "ftp://h/x"),
            Err(Error::BadRedirect(crate::http::UrlError::UnsupportedScheme(_)))
        ));
    }

    #[test]
    fn a_post_becomes_a_get_on_303_but_keeps_its_body_on_307() {
        let post = Request::post(url("http://h/form"), "a=1").header("Content-Type", "text/plain");
        let mut redirects = Redirects::new(&post.url, 5);
        let after_303 = follow(&mut redirects, &post, 303, "/done").unwrap();
        assert_eq!((after_303.method, after_303.body.as_slice(), after_303.headers.len()), (Method::Get, &b""[..], 0));
        let after_307 = follow(&mut redirects, &post, 307, "/again").unwrap();
        assert_eq!((after_307.method, after_307.body.as_slice()), (Method::Post, &b"a=1"[..]));
    }

    #[test]
    fn credentials_stay_with_their_origin() {
        let request = Request::get(url("http://h/")).header("Cookie", "c=1").header("Referer", "http://h/");
        let mut redirects = Redirects::new(&request.url, 5);
        let same = follow(&mut redirects, &request, 302, "/x").unwrap();
        assert_eq!(same.headers.len(), 2);
        let other = follow(&mut redirects, &request, 302, "http://other/").unwrap();
        assert_eq!(other.headers, [("Referer".to_string(), "http://h/".to_string())]);
    }
}

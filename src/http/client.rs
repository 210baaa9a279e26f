//! One request and its response on one connection, as a sans-IO state
//! machine.
//!
//! [`Exchange`] does no I/O and never reads a clock. Its driver opens the
//! connection, then feeds it *inputs* — "connected", "these bytes arrived",
//! "the peer closed", "the transport failed", "it is now `now`" — and
//! drains its *outputs*: the request's bytes ([`Exchange::poll_transmit`]),
//! the outcome ([`Exchange::poll_outcome`]: a [`Response`] or an [`Error`])
//! and when to wake it ([`Exchange::next_deadline`]). The same shape as
//! `douyu::ClientSession`, so it is tested with byte vectors and a fake
//! clock.
//!
//! # Rules
//!
//! Every transition, in one table (as h11 keeps its rules):
//!
//! | state      | input                          | next state              | output          |
//! |------------|--------------------------------|-------------------------|-----------------|
//! | Connecting | `handle_connected`             | Receiving               | the request     |
//! | Receiving  | `handle_bytes`, response whole | Finished(response)      |                 |
//! | Receiving  | `handle_bytes`, bad response   | Finished(its error)     |                 |
//! | Receiving  | `handle_eof`                   | Finished(response if it ends at the close, else `Truncated`) | |
//! | Connecting, Receiving | `handle_error(e)`   | Finished(e)             |                 |
//! | Connecting, Receiving | `handle_timeout(now ≥ deadline)` | Finished(`Timeout`) |            |
//! | Finished   | anything                       | Finished                | (ignored)       |
//!
//! ```text
//!  Connecting ──connected──▶ Receiving ──response / error / eof──▶ Finished
//!      └──────── error, timeout ──┴──────────────────────────────────▲
//! ```
//!
//! One exchange is one connection (we send `Connection: close`). A redirect
//! is a finished exchange whose response is a 3xx: the caller asks
//! [`Redirects`](super::Redirects) what to do and runs a new exchange for
//! the next URL.

use std::time::Instant;

use super::error::Error;
use super::request::Request;
use super::response::{Response, ResponseDecoder, ResponseLimits};

/// Where an exchange is, with the data that state needs.
#[derive(Debug)]
enum State {
    /// Waiting for the transport; the encoded request waits here.
    Connecting { request: Vec<u8>, decoder: ResponseDecoder },
    /// The request went out through `poll_transmit`; reading the response.
    Receiving { decoder: ResponseDecoder },
    /// Done. The outcome waits to be polled (then `None`).
    Finished { outcome: Option<Result<Response, Error>> },
}

/// One request/response exchange (see the module docs).
#[derive(Debug)]
pub struct Exchange {
    deadline: Instant,
    state: State,
    transmit: Vec<u8>,
}

impl Exchange {
    /// An exchange for `request`, to be complete by `deadline`. Fails if
    /// the request cannot be sent as it is ([`Request::validate`]).
    pub fn new(request: &Request, limits: ResponseLimits, deadline: Instant) -> Result<Exchange, Error> {
        request.validate()?;
        let mut bytes = Vec::new();
        request.encode(&mut bytes);
        let decoder = ResponseDecoder::new(request.url().clone(), limits);
        Ok(Exchange { deadline, state: State::Connecting { request: bytes, decoder }, transmit: Vec::new() })
    }

    /// The transport is up: the request is queued for `poll_transmit`.
    pub fn handle_connected(&mut self) {
        match std::mem::replace(&mut self.state, State::Finished { outcome: None }) {
            State::Connecting { request, decoder } => {
                self.transmit = request;
                self.state = State::Receiving { decoder };
            }
            other => self.state = other,
        }
    }

    /// Bytes arrived; `data` is everything received and not consumed yet.
    /// Returns how many bytes were used; the caller keeps the rest and
    /// passes it again, followed by the next bytes. Once finished, every
    /// byte is "used" (and ignored).
    pub fn handle_bytes(&mut self, data: &[u8]) -> usize {
        let State::Receiving { decoder } = &mut self.state else { return data.len() };
        match decoder.decode(data) {
            Ok(progress) => {
                if let Some(response) = progress.response {
                    self.finish(Ok(response));
                    return data.len();
                }
                progress.consumed
            }
            Err(error) => {
                self.finish(Err(error));
                data.len()
            }
        }
    }

    /// The peer closed its side: a body that runs to the close is complete,
    /// anything else was cut short.
    pub fn handle_eof(&mut self) {
        let outcome = match &mut self.state {
            State::Finished { .. } => return,
            State::Connecting { .. } => Err(Error::Truncated),
            State::Receiving { decoder } => match decoder.decode_eof() {
                Ok(Some(response)) => Ok(response),
                Ok(None) => return,
                Err(error) => Err(error),
            },
        };
        self.finish(outcome);
    }

    /// The transport failed (connect refused, reset, TLS): the exchange
    /// ends with `error`.
    pub fn handle_error(&mut self, error: Error) {
        self.finish(Err(error));
    }

    /// Call when `next_deadline` has passed (calling early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.deadline {
            self.finish(Err(Error::Timeout));
        }
    }

    /// Appends the bytes to send to `out`; false if there were none.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        if self.transmit.is_empty() {
            return false;
        }
        out.append(&mut self.transmit);
        true
    }

    /// The outcome, once: then `None`. After it, close the connection.
    pub fn poll_outcome(&mut self) -> Option<Result<Response, Error>> {
        match &mut self.state {
            State::Finished { outcome } => outcome.take(),
            _ => None,
        }
    }

    /// When `handle_timeout` has work to do: the deadline, until finished.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Finished { .. } => None,
            _ => Some(self.deadline),
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished { .. })
    }

    /// The first outcome stands; what comes after it is ignored. Bytes not
    /// sent yet are dropped: there is no point sending the rest of a request
    /// whose answer is in.
    fn finish(&mut self, outcome: Result<Response, Error>) {
        if !self.is_finished() {
            self.state = State::Finished { outcome: Some(outcome) };
            self.transmit.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::http::Url;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

    fn request() -> Request {
        Request::get(Url::parse("http://127.0.0.1:8080/page").unwrap())
    }

    fn sent(exchange: &mut Exchange) -> Vec<u8> {
        let mut out = Vec::new();
        exchange.poll_transmit(&mut out);
        out
    }

    /// An exchange that is connected and has sent its request; its deadline
    /// is 10 s after `start`.
    fn connected(start: Instant) -> Exchange {
        let mut exchange =
            Exchange::new(&request(), ResponseLimits::default(), start + Duration::from_secs(10)).unwrap();
        exchange.handle_connected();
        sent(&mut exchange);
        exchange
    }

    #[test]
    fn the_request_goes_out_once_connected_and_the_response_comes_back() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(10);
        let mut exchange = Exchange::new(&request(), ResponseLimits::default(), deadline).unwrap();
        assert!(sent(&mut exchange).is_empty(), "nothing before the connection is up");
        assert_eq!(exchange.next_deadline(), Some(deadline));

        exchange.handle_connected();
        let mut expected = Vec::new();
        request().encode(&mut expected);
        assert_eq!(sent(&mut exchange), expected);
        assert!(sent(&mut exchange).is_empty(), "sent once");

        // The caller's side: keep what was not consumed, add the next bytes.
        let mut pending = Vec::new();
        for piece in OK.chunks(4) {
            assert!(exchange.poll_outcome().is_none());
            pending.extend_from_slice(piece);
            let used = exchange.handle_bytes(&pending);
            pending.drain(..used);
        }
        let response = exchange.poll_outcome().unwrap().unwrap();
        assert_eq!((response.status, response.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(exchange.poll_outcome(), None, "the outcome comes once");
        assert_eq!(exchange.next_deadline(), None);
        assert!(exchange.is_finished());
    }

    #[test]
    fn the_deadline_ends_it_with_a_fake_clock() {
        let start = Instant::now();
        let mut exchange = connected(start);
        exchange.handle_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel");
        exchange.handle_timeout(start + Duration::from_secs(10) - Duration::from_millis(1));
        assert_eq!(exchange.poll_outcome(), None, "not before the deadline");
        exchange.handle_timeout(start + Duration::from_secs(10));
        assert_eq!(exchange.poll_outcome(), Some(Err(Error::Timeout)));
        // What comes after the outcome changes nothing.
        assert_eq!(exchange.handle_bytes(b"lo"), 2);
        exchange.handle_eof();
        assert_eq!(exchange.poll_outcome(), None);
    }

    #[test]
    fn a_connect_that_never_completes_times_out() {
        let start = Instant::now();
        let mut exchange = Exchange::new(&request(), ResponseLimits::default(), start).unwrap();
        exchange.handle_timeout(start + Duration::from_secs(1));
        assert_eq!(exchange.poll_outcome(), Some(Err(Error::Timeout)));
        exchange.handle_connected();
        assert!(sent(&mut exchange).is_empty(), "a finished exchange sends nothing");
    }

    #[test]
    fn the_end_of_the_stream_completes_or_truncates() {
        let start = Instant::now();
        let mut exchange = connected(start);
        exchange.handle_bytes(b"HTTP/1.0 200 OK\r\n\r\nto the end");
        exchange.handle_eof();
        assert_eq!(exchange.poll_outcome().unwrap().map(|r| r.body), Ok(b"to the end".to_vec()));

        let mut exchange = connected(start);
        exchange.handle_bytes(&OK[..OK.len() - 1]);
        exchange.handle_eof();
        assert_eq!(exchange.poll_outcome(), Some(Err(Error::Truncated)));
    }

    #[test]
    fn the_first_outcome_stands() {
        let start = Instant::now();
        let mut exchange = connected(start);
        assert_eq!(exchange.handle_bytes(OK), OK.len());
        exchange.handle_error(Error::Io("reset".into()));
        exchange.handle_timeout(start + Duration::from_secs(60));
        assert!(exchange.poll_outcome().unwrap().is_ok());

        let mut exchange = connected(start);
        exchange.handle_error(Error::Connect("refused".into()));
        assert_eq!(exchange.handle_bytes(OK), OK.len());
        assert_eq!(exchange.poll_outcome(), Some(Err(Error::Connect("refused".into()))));
    }

    #[test]
    fn a_bad_response_ends_it_with_its_error() {
        let mut exchange = connected(Instant::now());
        assert_eq!(exchange.handle_bytes(b"SSH-2.0-OpenSSH\r\n\r\n"), 19);
        assert!(matches!(exchange.poll_outcome(), Some(Err(Error::Malformed(_)))));
    }

    #[test]
    fn a_request_that_cannot_be_sent_is_refused_up_front() {
        let bad = request().header("X-Evil", "a\r\nb");
        let result = Exchange::new(&bad, ResponseLimits::default(), Instant::now());
        assert!(matches!(result, Err(Error::InvalidRequest(_))));
    }
}

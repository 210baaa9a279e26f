//! The connection under one exchange: a reactor [`Dispatcher`] that hands
//! every event to the fetch's [`Exchange`](crate::http::Exchange), and the
//! one place where the transport is chosen by scheme.

use std::io;
use std::net::SocketAddr;

use super::Fetcher;
use crate::http::{Error, Exchange, Host, Scheme, Url};
use crate::reactor::{Context, Dispatcher, EntryToken, Reactor, TlsClientConfig};

/// Starts a connection to `addr` for `url`, whose events go to job `job`
/// of `fetcher`: plain for `http`, TLS for `https` (the server's
/// certificate checked against the URL's host, with `tls`'s trust). The
/// exchange above works the same on either: it sees bytes in and bytes out.
pub(super) fn open(
    reactor: &mut Reactor,
    url: &Url,
    addr: SocketAddr,
    tls: Option<&TlsClientConfig>,
    fetcher: Fetcher,
    job: u64,
) -> Result<EntryToken, Error> {
    let transport = Transport { fetcher, job };
    let opened = match (url.scheme(), tls) {
        (Scheme::Http, _) => reactor.connect(addr, transport),
        (Scheme::Https, Some(tls)) => {
            let name = match url.host() {
                Host::Domain(name) => name.clone(),
                host => host.ip().map_or_else(|| host.to_string(), |ip| ip.to_string()),
            };
            reactor.connect_tls(addr, tls, &name, transport)
        }
        (Scheme::Https, None) => return Err(Error::TlsUnavailable),
    };
    opened.map_err(|e| Error::Connect(format!("{addr}: {e}")))
}

/// The tag of a connection's connect timer (its only timer).
pub(super) const CONNECT_TIMER: u64 = 1;

/// A connection's events, passed to its fetch.
struct Transport {
    fetcher: Fetcher,
    job: u64,
}

impl Dispatcher for Transport {
    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        let conn = ctx.id();
        self.fetcher.on_connected(ctx.reactor(), self.job, conn);
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_>, tag: u64) {
        if tag == CONNECT_TIMER {
            let conn = ctx.id();
            self.fetcher.on_connect_timeout(ctx.reactor(), self.job, conn);
        }
    }

    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let conn = ctx.id();
        // A connection its fetch has left (timed out, say) wants nothing.
        self.fetcher
            .with_exchange(ctx.reactor(), self.job, conn, |exchange| exchange.handle_bytes(data))
            .unwrap_or(data.len())
    }

    fn handle_eof(&mut self, ctx: &mut Context<'_>) {
        let conn = ctx.id();
        self.fetcher.with_exchange(ctx.reactor(), self.job, conn, Exchange::handle_eof);
        ctx.close();
    }

    fn handle_error(&mut self, ctx: &mut Context<'_>, error: io::Error) {
        let conn = ctx.id();
        self.fetcher.on_transport_error(ctx.reactor(), self.job, conn, error);
    }

    /// Closed without an outcome (the reactor gave up on it): the exchange
    /// must not wait for its deadline.
    fn handle_close(&mut self, ctx: &mut Context<'_>) {
        let conn = ctx.id();
        self.fetcher.with_exchange(ctx.reactor(), self.job, conn, |exchange| {
            exchange.handle_error(Error::Io("the connection closed".into()));
        });
    }
}

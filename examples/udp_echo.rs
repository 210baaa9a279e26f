//! The tutorial's UDP server, as a raw handler.
//!
//! What it shows: Tornado's `add_handler` — hand the reactor any mio source
//! (here a `UdpSocket`) and a callback; the reactor only says *when* the
//! socket is ready, and the callback does its own reads and writes. UDP has
//! no connections, so the buffered [`Dispatcher`] machinery does not fit;
//! a raw handler does.
//!
//! Each datagram `X` is answered with `Hello, X!`.
//!
//! The one rule a raw handler must follow: mio is *edge-triggered*. A
//! readiness event says "something arrived" once, not "something is still
//! waiting". So the callback reads until the socket says `WouldBlock`;
//! stopping earlier could leave datagrams that no event will announce.
//!
//! [`Dispatcher`]: barrage::reactor::Dispatcher
//!
//! Run it, then send it datagrams with `nc -u`:
//!
//! ```text
//! cargo run --example udp_echo                     # listens on 127.0.0.1:9999
//! cargo run --example udp_echo -- 127.0.0.1:0      # any free port; prints which
//! echo -n world | nc -u -w1 127.0.0.1 9999         # prints "Hello, world!"
//! ```
//!
//! It runs until killed (Ctrl-C).

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use barrage::reactor::{Interest, Reactor, Ready};
use mio::net::UdpSocket;

/// The tutorial's server address; the first argument replaces it.
const DEFAULT_ADDR: &str = "127.0.0.1:9999";

/// Room for the largest possible UDP datagram, so none is truncated.
const MAX_DATAGRAM: usize = 64 * 1024;

/// The reply to one datagram: `Hello, X!`. A trailing newline (as `echo`
/// and `nc` send) is left out of `X`.
fn reply_to(datagram: &[u8]) -> Vec<u8> {
    let text = datagram.strip_suffix(b"\n").unwrap_or(datagram);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let mut reply = b"Hello, ".to_vec();
    reply.extend_from_slice(text);
    reply.push(b'!');
    reply
}

/// The raw handler's callback: runs each time the socket becomes readable.
fn on_ready(buffer: &mut [u8], socket: &mut UdpSocket, ready: Ready) {
    if !ready.readable {
        return;
    }
    // Edge-triggered: drain the socket, or a datagram could sit unread
    // until the next one arrives. (A flood keeps us in this loop; a server
    // that must stay fair would stop after N datagrams and come back with
    // `call_soon` — the reactor's ready list does that for connections.)
    loop {
        let (len, peer) = match socket.recv_from(buffer) {
            Ok(received) => received,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A UDP socket reports an error once (typically an ICMP
            // "port unreachable" left over from an earlier reply) and
            // clears it, so the next recv goes on with the next datagram.
            Err(e) => {
                log::warn!("recv failed: {e}");
                continue;
            }
        };
        let reply = reply_to(&buffer[..len]);
        log::info!("{peer}: {:?}", String::from_utf8_lossy(&buffer[..len]));
        match socket.send_to(&reply, peer) {
            Ok(_) => {}
            // The socket's send buffer is full. A TCP server would queue the
            // reply and wait for a writable event; for UDP, where any
            // datagram may be lost anyway, dropping it is the honest and
            // simple answer. The client retries if it cares.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                log::warn!("{peer}: send buffer full, reply dropped");
            }
            Err(e) => log::warn!("{peer}: reply failed: {e}"),
        }
    }
}

/// The first command-line argument as `HOST:PORT`, or the default.
fn address_from_args(default: &str) -> io::Result<SocketAddr> {
    let text = std::env::args().nth(1).unwrap_or_else(|| default.to_string());
    text.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{text} names no address")))
}

fn main() -> ExitCode {
    simple_logger::SimpleLogger::new().with_level(log::LevelFilter::Info).env().init().ok();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> io::Result<()> {
    let addr = address_from_args(DEFAULT_ADDR)?;
    let mut reactor = Reactor::new()?;
    let socket = UdpSocket::bind(addr)?;

    // With port 0 the kernel picks a free port: print the real one, and
    // flush, so that whoever started us (a test, say) can read it now.
    println!("listening on {}", socket.local_addr()?);
    io::stdout().flush()?;

    // One receive buffer, allocated once and moved into the callback.
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    // The reactor owns the socket from here on and passes it back to the
    // callback on every event, with the handler's id (unused here: the
    // handler never changes its interest or removes itself).
    reactor.add_handler(socket, Interest::READABLE, move |_reactor, _id, socket, ready| {
        on_ready(&mut buffer, socket, ready)
    })?;
    reactor.run()
}

//! The tutorial's threaded TCP server, on one thread for any number of
//! clients.
//!
//! What it shows: a line protocol as a [`Dispatcher`]. The tutorial started
//! one thread per client, each blocked in `recv`. Here one reactor waits for
//! all sockets at once, and each client is a small struct that reacts to the
//! bytes it receives:
//!
//! - on connect it greets the client with `Hello,I am server!`;
//! - each message `X` is answered with `Loop_Msg: X!`;
//! - the message `exit` closes the connection, *after* the replies already
//!   queued have been written (a graceful close).
//!
//! What is a message? The tutorial's server took whatever one `recv(1024)`
//! returned, and its client sends `Hello,I am a client` with no newline.
//! `nc` sends lines, and a long line may take several reads. So a client
//! starts in the tutorial's way — what one read brings is one message —
//! and speaks in lines from its first newline on: then a partial line waits
//! for the rest.
//!
//! Two limits keep one client from growing the server's memory: a line may
//! be at most 64 KiB long, and a client that sends faster than it reads its
//! replies is not read from until it catches up (see `readable()`).
//!
//! Run it, then talk to it with `nc` (type lines, then `exit`), with the
//! `asyncore_client` example, or with the tutorial's own Python client:
//!
//! ```text
//! cargo run --example echo_server                  # listens on 127.0.0.1:9999
//! cargo run --example echo_server -- 127.0.0.1:0   # any free port; prints which
//! nc 127.0.0.1 9999
//! cargo run --example asyncore_client              # sends two lines, prints the replies, exits
//! ```
//!
//! It runs until killed (Ctrl-C). `RUST_LOG=debug` shows the reactor's side.

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use barrage::reactor::{Context, Dispatcher, Reactor};
use mio::net::TcpListener;

/// The tutorial's server address; the first argument replaces it.
const DEFAULT_ADDR: &str = "127.0.0.1:9999";

/// The longest line we accept. Without a limit, a client that never sends
/// a newline would make us buffer its bytes forever.
const MAX_LINE: usize = 64 * 1024;

/// How many reply bytes may wait for a slow reader before we stop reading
/// its requests (each request makes a reply, so reading on would pile up
/// replies without bound).
const MAX_PENDING_REPLIES: usize = 256 * 1024;

/// One connected client.
struct Session {
    peer: SocketAddr,
    /// True while we wait for the client to read its replies.
    paused: bool,
    /// The client has sent a newline: it speaks in lines, not in reads.
    lines: bool,
}

impl Dispatcher for Session {
    /// Back-pressure, asyncore style: while paused we say we don't want
    /// bytes. The reactor then stops reading this socket, its kernel buffer
    /// fills up, and TCP makes the client wait. Nothing is lost.
    fn readable(&self) -> bool {
        !self.paused
    }

    /// Asks for `handle_write`, which the reactor calls once every queued
    /// reply has been written: that is our signal to read again.
    fn writable(&self) -> bool {
        self.paused
    }

    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        log::info!("{} connected", self.peer);
        ctx.send(b"Hello,I am server!\n");
    }

    /// `data` holds everything received and not consumed yet. We answer
    /// each complete line and return how many bytes those lines took; a
    /// partial line stays with the reactor and comes back, completed by
    /// the next bytes, on the next call. Until the client sends its first
    /// newline, a read without one is a whole message (the tutorial's way).
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        self.lines |= data.contains(&b'\n');
        if !self.lines {
            self.answer(ctx, data);
            self.pause_if_behind(ctx);
            return data.len();
        }
        let mut consumed = 0;
        while let Some(newline) = data[consumed..].iter().position(|&b| b == b'\n') {
            let line = &data[consumed..consumed + newline];
            consumed += newline + 1;
            // Accept "\r\n" too: telnet and Windows clients send it.
            if !self.answer(ctx, line.strip_suffix(b"\r").unwrap_or(line)) {
                return consumed;
            }
            if self.pause_if_behind(ctx) {
                // The lines we did not consume wait, and come back once
                // `handle_write` sets `paused` to false again.
                return consumed;
            }
        }
        if data.len() - consumed > MAX_LINE {
            log::warn!("{}: line longer than {MAX_LINE} bytes; closing", self.peer);
            ctx.close();
        }
        consumed
    }

    /// Every queued reply has been written. Read again: the reactor asks
    /// `readable()` when this returns, sees `true`, and hands back the
    /// lines we left unconsumed.
    fn handle_write(&mut self, _ctx: &mut Context<'_>) {
        log::debug!("{}: replies drained, resuming", self.peer);
        self.paused = false;
    }

    fn handle_error(&mut self, _ctx: &mut Context<'_>, error: io::Error) {
        log::warn!("{}: {error}", self.peer);
    }

    fn handle_close(&mut self, _ctx: &mut Context<'_>) {
        log::info!("{} disconnected", self.peer);
    }
}

impl Session {
    /// Answers one message; `exit` closes instead. Returns whether to go on.
    fn answer(&self, ctx: &mut Context<'_>, message: &[u8]) -> bool {
        if message == b"exit" {
            log::info!("{} said exit", self.peer);
            // Graceful: stop reading, finish writing the queued replies,
            // then close. Bytes after "exit" are ignored.
            ctx.close();
            return false;
        }
        let mut reply = b"Loop_Msg: ".to_vec();
        reply.extend_from_slice(message);
        reply.extend_from_slice(b"!\n");
        ctx.send(&reply);
        true
    }

    /// Stops reading if the client is not reading its replies fast enough.
    fn pause_if_behind(&mut self, ctx: &mut Context<'_>) -> bool {
        if ctx.pending_output() > MAX_PENDING_REPLIES {
            log::debug!("{}: {} reply bytes pending, pausing", self.peer, ctx.pending_output());
            self.paused = true;
        }
        self.paused
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
            eprintln!("echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> io::Result<()> {
    let addr = address_from_args(DEFAULT_ADDR)?;
    let mut reactor = Reactor::new()?;
    let listener = TcpListener::bind(addr)?;

    // With port 0 the kernel picks a free port: print the real one, and
    // flush, so that whoever started us (a test, say) can read it now.
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    // The acceptor runs for each new connection: it attaches the stream
    // with a fresh Session. That is all a "thread per client" becomes.
    // (The `&mut Reactor` annotation is needed: `listen` accepts any
    // `Acceptor`, so Rust cannot infer the closure's parameter types.)
    reactor.listen(listener, |reactor: &mut Reactor, stream, peer| {
        if let Err(e) = reactor.add_stream(stream, Session { peer, paused: false, lines: false }) {
            log::warn!("could not attach {peer}: {e}");
        }
    })?;
    reactor.run()
}

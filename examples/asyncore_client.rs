//! The tutorial's asyncore client, on barrage's reactor.
//!
//! What it shows: a [`Dispatcher`] written the asyncore way. The client keeps
//! its own outgoing buffer and answers `writable()` with "is that buffer
//! non-empty?". The reactor asks that question after every callback: while
//! the answer is yes and the socket can take bytes, it calls `handle_write`,
//! which hands the buffer over with `ctx.send`. Once the buffer is empty,
//! `writable()` says no, the reactor drops its interest in writability, and
//! the loop sleeps until the server answers.
//!
//! It connects, sends `hello world` and `exit` (two lines, once), prints
//! whatever it reads, and exits when the server closes the connection, as
//! the `echo_server` example does after `exit` (status 1 if the connection
//! failed).
//!
//! Run it against the `echo_server` example, or any line server:
//!
//! ```text
//! cargo run --example echo_server                  # in one terminal
//! cargo run --example asyncore_client              # in another: 127.0.0.1:9999
//! nc -l 127.0.0.1 9000                             # or this (close it with Ctrl-C or Ctrl-D) and
//! cargo run --example asyncore_client -- 127.0.0.1:9000
//! ```
//!
//! Set `RUST_LOG=debug` (or `trace`) to watch the reactor's side on stderr.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;

use barrage::reactor::{Context, Dispatcher, Reactor};

/// The `echo_server` example's address; the first argument replaces it.
const DEFAULT_ADDR: &str = "127.0.0.1:9999";

struct Client {
    /// Bytes we still want to send. asyncore's `self.buffer`.
    outgoing: Vec<u8>,
    /// Where `handle_error` leaves the error, for `main` to turn into an
    /// exit status. Shared because the reactor owns the dispatcher.
    failure: Rc<RefCell<Option<io::Error>>>,
}

impl Dispatcher for Client {
    /// asyncore asks `writable()` before each `select`; the reactor asks it
    /// after each callback. Saying yes with nothing to send would wake the
    /// loop for nothing, over and over, so the answer follows the buffer.
    fn writable(&self) -> bool {
        !self.outgoing.is_empty()
    }

    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        let peer = ctx.peer_addr().map_or_else(|| "?".to_string(), |a| a.to_string());
        println!("connected to {peer}");
    }

    /// Called because `writable()` said yes and the socket can take bytes.
    /// asyncore's version calls `send` and keeps what the kernel refused.
    /// Here `ctx.send` queues everything and the reactor carries partial
    /// writes over to the next writable event, so we hand over all of it.
    fn handle_write(&mut self, ctx: &mut Context<'_>) {
        let data = std::mem::take(&mut self.outgoing);
        println!("sending {:?}", String::from_utf8_lossy(&data));
        ctx.send(&data);
    }

    /// Prints each chunk as it arrives, like the tutorial's
    /// `print(self.recv(8192))`. TCP is a byte stream: one server message
    /// can arrive in several chunks, or several in one.
    fn handle_read(&mut self, _ctx: &mut Context<'_>, data: &[u8]) -> usize {
        println!("received {} bytes: {:?}", data.len(), String::from_utf8_lossy(data));
        // We consumed everything; the reactor keeps nothing back for us.
        data.len()
    }

    fn handle_error(&mut self, _ctx: &mut Context<'_>, error: io::Error) {
        // A refused connect arrives here too: mio connects without
        // blocking, so the refusal comes later, as an event.
        *self.failure.borrow_mut() = Some(error);
    }

    /// The last callback, whoever closed the connection. Stopping the
    /// reactor makes `run()` return, and `main` with it.
    fn handle_close(&mut self, ctx: &mut Context<'_>) {
        println!("connection closed");
        ctx.reactor().stop();
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

    let addr = match address_from_args(DEFAULT_ADDR) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("bad address: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("connection to {addr} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(addr: SocketAddr) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let failure = Rc::new(RefCell::new(None));
    // `exit` asks a line server like `echo_server` to close: that close is
    // what ends `run()`.
    let client = Client { outgoing: b"hello world\nexit\n".to_vec(), failure: failure.clone() };
    // Starts a non-blocking connect and returns at once; `handle_connect`
    // (or `handle_error`) runs from inside `run()` when the outcome is known.
    reactor.connect(addr, client)?;
    reactor.run()?;
    io::stdout().flush()?;
    match failure.borrow_mut().take() {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

//! A TLS echo server and its client on one loop, offline: Tornado's
//! SSLIOStream lesson on one page.
//!
//! What it shows: a TLS handshake is not "a read" or "a write". It is a
//! conversation, and at each step OpenSSL says what it is waiting for:
//! `WANT_READ` (the socket had nothing for it) or `WANT_WRITE` (the socket
//! took nothing more). The reactor turns exactly that into the poll interest,
//! and `handle_connect` comes only once the handshake is done. After it,
//! the dispatchers below see plaintext only; they are the same code a plain
//! TCP echo would have.
//!
//! Run it with the trace on to watch each step:
//!
//! ```text
//! RUST_LOG=trace cargo run --example tls_echo            # TLS 1.2, Douyu's one suite
//! RUST_LOG=trace cargo run --example tls_echo -- --modern  # TLS 1.3
//! ```
//!
//! Lines like `#1.1: TLS handshake from "SSLv3/TLS write client hello" to
//! "SSLv3/TLS read server hello": WANT_READ, so poll for READABLE` are the
//! handshake's steps; `interest Some(WRITABLE) -> Some(READABLE)` is the
//! reactor acting on them. The certificate is made on the spot (RSA-2048,
//! self-signed for 127.0.0.1), and the client trusts exactly it.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;

use barrage::reactor::{CipherPolicy, Context, Dispatcher, Reactor, TlsClientConfig, TlsServerConfig};
use barrage::sim::certificate::self_signed_localhost;
use mio::net::TcpListener;

const LINES: [&str; 3] = ["hello over TLS", "second line", "bye"];

/// Echoes what it reads. Plaintext in, plaintext out.
struct EchoServer {
    done: Rc<RefCell<u32>>,
}

impl Dispatcher for EchoServer {
    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        let info = ctx.tls_info().map_or_else(|| "?".into(), |i| i.to_string());
        println!("server: handshake done: {info}");
    }
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        ctx.send(data);
        data.len()
    }
    fn handle_eof(&mut self, ctx: &mut Context<'_>) {
        // Not a bare FIN: the stream ended with the client's close_notify.
        println!("server: the client said goodbye (close_notify)");
        ctx.close();
    }
    fn handle_error(&mut self, _ctx: &mut Context<'_>, error: std::io::Error) {
        println!("server: error: {error}");
    }
    fn handle_close(&mut self, ctx: &mut Context<'_>) {
        println!("server: closed");
        finished(&self.done, ctx);
    }
}

/// Sends the lines, prints the echoes, closes after the last one.
struct Client {
    received: Vec<u8>,
    done: Rc<RefCell<u32>>,
    failed: Rc<RefCell<bool>>,
}

impl Dispatcher for Client {
    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        let info = ctx.tls_info().map_or_else(|| "?".into(), |i| i.to_string());
        println!("client: handshake done: {info}");
        for line in LINES {
            ctx.send(format!("{line}\n").as_bytes());
        }
    }
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        self.received.extend_from_slice(data);
        while let Some(end) = self.received.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.received.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            println!("client: echo: {line}");
            if line == LINES[LINES.len() - 1] {
                // close_notify, then our FIN, then we wait for the server's.
                ctx.close();
            }
        }
        data.len()
    }
    fn handle_error(&mut self, _ctx: &mut Context<'_>, error: std::io::Error) {
        println!("client: error: {error}");
        *self.failed.borrow_mut() = true;
    }
    fn handle_close(&mut self, ctx: &mut Context<'_>) {
        println!("client: closed");
        finished(&self.done, ctx);
    }
}

/// Both ends closed: the example is over.
fn finished(done: &Rc<RefCell<u32>>, ctx: &mut Context<'_>) {
    *done.borrow_mut() += 1;
    if *done.borrow() == 2 {
        ctx.reactor().stop();
    }
}

fn main() -> ExitCode {
    simple_logger::SimpleLogger::new().with_level(log::LevelFilter::Info).env().init().ok();
    match run(std::env::args().any(|a| a == "--modern")) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tls_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(modern: bool) -> std::io::Result<bool> {
    let certificate = self_signed_localhost()?;
    let policy = if modern { CipherPolicy::Modern } else { CipherPolicy::Legacy };
    let server_config = TlsServerConfig::from_pem(&certificate.cert_pem, &certificate.key_pem, policy)?;
    // The client trusts our certificate and nothing else; the name it
    // checks is the address it connects to.
    let client_config = TlsClientConfig::with_ca_pem(&certificate.cert_pem)?;

    let mut reactor = Reactor::new()?;
    let done = Rc::new(RefCell::new(0));
    let failed = Rc::new(RefCell::new(false));
    let listener = TcpListener::bind("127.0.0.1:0".parse().expect("an address"))?;
    let addr = listener.local_addr()?;
    let server_done = done.clone();
    reactor.listen(listener, move |r: &mut Reactor, stream, peer| {
        println!("server: accepted {peer}; handshake starts");
        if let Err(e) = r.add_tls_stream(stream, &server_config, EchoServer { done: server_done.clone() }) {
            println!("server: could not attach: {e}");
        }
    })?;
    println!("listening on {addr} ({policy:?} policy)");

    let client = Client { received: Vec::new(), done: done.clone(), failed: failed.clone() };
    reactor.connect_tls(addr, &client_config, &addr.ip().to_string(), client)?;
    reactor.run()?;
    let ok = !*failed.borrow();
    Ok(ok)
}

//! Our sans-IO WebSocket against tungstenite, an independent implementation,
//! both ways round, over loopback. Every read has a deadline (a socket read
//! timeout), so a peer that stops talking fails the test instead of hanging.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use barrage::websocket::{ClientRequest, CloseReason, Event, Limits, State, Stats, WebSocket, close_code};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Bytes, Message};

const DEADLINE: Duration = Duration::from_secs(20);

fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp
}

/// Runs `serve` on a thread for the first connection to a loopback port.
fn serve_one<T: Send + 'static>(serve: impl FnOnce(TcpStream) -> T + Send + 'static) -> (SocketAddr, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        serve(tcp)
    });
    (addr, server)
}

/// Our side: a `WebSocket` driven over a blocking stream, the way a reactor
/// drives it (leftovers kept, transmit flushed after every input).
struct Ours {
    ws: WebSocket,
    tcp: TcpStream,
    pending: Vec<u8>,
    /// The binary payload stream, everything consumed.
    stream: Vec<u8>,
    events: Vec<Event>,
}

impl Ours {
    fn new(ws: WebSocket, tcp: TcpStream) -> Self {
        Ours { ws, tcp, pending: Vec::new(), stream: Vec::new(), events: Vec::new() }
    }

    fn flush(&mut self) {
        let mut out = Vec::new();
        if self.ws.poll_transmit(&mut out) {
            self.tcp.write_all(&out).unwrap();
        }
    }

    fn run_until(&mut self, what: &str, done: impl Fn(&Ours) -> bool) {
        self.flush();
        let mut buf = [0; 4096];
        while !done(self) {
            assert_ne!(self.ws.state(), State::Closed, "closed while waiting for {what}: {:?}", self.events);
            let n = self.tcp.read(&mut buf).unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
            assert!(n > 0, "the peer left while we waited for {what}");
            self.pending.extend_from_slice(&buf[..n]);
            let stream = &mut self.stream;
            let used = self.ws.on_bytes(&self.pending, |payload| {
                stream.extend_from_slice(payload);
                payload.len()
            });
            self.pending.drain(..used);
            self.events.extend(std::iter::from_fn(|| self.ws.poll_event()));
            self.flush();
        }
    }
}

#[test]
fn our_client_talks_to_a_tungstenite_server() {
    let (addr, server) = serve_one(|tcp| {
        let mut ws = tungstenite::accept(tcp).unwrap();
        ws.send(Message::Ping(Bytes::from_static(b"hi"))).unwrap();
        ws.send(Message::text("not for Douyu clients")).unwrap();
        ws.send(Message::binary(b"hello ".to_vec())).unwrap();
        ws.send(Message::binary(b"world".to_vec())).unwrap();
        let mut received = Vec::new();
        loop {
            match ws.read() {
                Ok(message) => received.push(message),
                Err(tungstenite::Error::ConnectionClosed) => return received,
                Err(error) => panic!("tungstenite server: {error}"),
            }
        }
    });

    let request = ClientRequest::new(addr.to_string());
    let ws = WebSocket::client(&request, Limits::default(), *b"0123456789abcdef", 1).unwrap();
    let mut ours = Ours::new(ws, connect(addr));
    // The ping comes before "world": its pong goes out before our message.
    ours.run_until("both binary messages", |o| o.stream == b"hello world");
    ours.ws.send_binary(b"from barrage").unwrap();
    assert_eq!(ours.ws.stats(), Stats { binary_messages: 2, text_messages: 1, pings: 1, pongs: 0 });
    ours.ws.close(close_code::NORMAL, "done");
    ours.run_until("the answer to our close", |o| o.ws.state() == State::Closed);
    assert_eq!(ours.events, [Event::Opened, Event::Closed(CloseReason::LocallyClosed)]);
    drop(ours);

    let received = server.join().unwrap();
    assert_eq!(
        received,
        [
            Message::Pong(Bytes::from_static(b"hi")),
            Message::binary(b"from barrage".to_vec()),
            Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() })),
        ]
    );
}

#[test]
fn a_tungstenite_client_talks_to_our_server() {
    let (addr, server) = serve_one(|tcp| {
        let mut ours = Ours::new(WebSocket::server(Limits::default()), tcp);
        ours.run_until("the handshake", |o| o.ws.state() == State::Open);
        ours.ws.send_binary_fragmented(b"a fragmented message", NonZeroUsize::new(4).unwrap()).unwrap();
        ours.ws.send_text("ignore me").unwrap();
        ours.ws.send_ping(b"p").unwrap();
        ours.run_until("the client's close", |o| o.ws.state() == State::Closed);
        (ours.stream, ours.ws.stats(), ours.events)
    });

    let (mut ws, response) = tungstenite::client(format!("ws://{addr}/"), connect(addr)).unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::binary(b"one".to_vec())).unwrap();
    ws.send(Message::binary(b"two".to_vec())).unwrap();
    let received: Vec<Message> = (0..3).map(|_| ws.read().unwrap()).collect();
    assert_eq!(
        received,
        [
            Message::binary(b"a fragmented message".to_vec()),
            Message::text("ignore me"),
            Message::Ping(Bytes::from_static(b"p")),
        ]
    );
    ws.flush().unwrap(); // sends the pong tungstenite queued
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            other => panic!("after our close: {other:?}"),
        }
    }

    let (stream, stats, events) = server.join().unwrap();
    assert_eq!(stream, b"onetwo");
    assert_eq!(stats, Stats { binary_messages: 2, text_messages: 0, pings: 0, pongs: 1 });
    assert_eq!(events, [Event::Opened, Event::Closed(CloseReason::PeerClosed { code: None, reason: String::new() })]);
}

//! `barrage serve` as a process: host names for its listeners, both
//! listeners answering, and a stop on SIGTERM or SIGINT that says goodbye
//! to the clients and exits 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use barrage::douyu::frame::{DecoderConfig, FrameDecoder};
use barrage::douyu::{Message, Request};
use common::process::{barrage, send_signal, wait_exit};

const DEADLINE: Duration = Duration::from_secs(20);

/// A `serve` process, its two addresses, and its stderr line by line.
struct Serve {
    child: Child,
    douyu: String,
    web: String,
    stderr: Receiver<String>,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let mut child = barrage(&["serve", "--stats-interval", "0", "--log-level", "info"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let lines = |stream: Box<dyn Read + Send>| {
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        let mut serve = Serve { child, douyu: String::new(), web: String::new(), stderr };
        let first = stdout.recv_timeout(DEADLINE).expect("a first line");
        serve.douyu = first.strip_prefix("listening on ").unwrap_or_else(|| panic!("{first:?}")).to_string();
        if args.contains(&"--http") {
            let second = stdout.recv_timeout(DEADLINE).expect("a second line");
            serve.web = second.strip_prefix("web on http://").unwrap_or_else(|| panic!("{second:?}")).to_string();
        }
        serve
    }

    /// Waits for a log line containing `text`.
    fn wait_log(&self, text: &str) {
        loop {
            let line = self.stderr.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("no log line with {text:?}"));
            if line.contains(text) {
                return;
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads packets from `stream` until one of type `msg_type`.
fn read_until(stream: &mut TcpStream, decoder: &mut FrameDecoder, msg_type: &str) -> Message {
    let mut buf = [0; 4096];
    loop {
        if let Some(packet) = decoder.next_packet().unwrap() {
            let message = Message::decode(&packet.body);
            if message.msg_type() == msg_type {
                return message;
            }
            continue;
        }
        let n = stream.read(&mut buf).expect("a read within the deadline");
        assert!(n > 0, "closed before a {msg_type}");
        decoder.feed(&buf[..n]);
    }
}

#[test]
fn a_signal_says_goodbye_to_every_client_and_exits_0() {
    for signal in ["TERM", "INT"] {
        let serve = Serve::start(&["--listen", "localhost:0", "--http", "localhost:0", "--rate", "0"]);
        let mut client = TcpStream::connect(&serve.douyu).unwrap();
        client.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut login = Vec::new();
        Request::Login { room: 7 }.encode_into(&mut login);
        Request::JoinGroup { room: 7, group: -9999 }.encode_into(&mut login);
        client.write_all(&login).unwrap();
        let mut decoder = FrameDecoder::new(DecoderConfig::client());
        read_until(&mut client, &mut decoder, "loginres");

        let mut web = TcpStream::connect(&serve.web).unwrap();
        web.set_read_timeout(Some(DEADLINE)).unwrap();
        web.write_all(b"GET /betard/7 HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n").unwrap();
        let mut page = String::new();
        web.read_to_string(&mut page).unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n") && page.contains("\"room_id\":7,"), "{page}");

        let mut serve = serve;
        send_signal(&serve.child, signal);
        let goodbye = read_until(&mut client, &mut decoder, "error");
        assert_eq!(goodbye.get("code"), Some("52"), "server closing");
        assert_eq!(client.read(&mut [0; 64]).unwrap(), 0, "then the close");
        drop(client);
        let status = wait_exit(&mut serve.child, DEADLINE).expect("serve exits");
        assert!(status.success(), "SIG{signal}: {status}");
        serve.wait_log(&format!("SIG{signal}: stopping"));
    }
}

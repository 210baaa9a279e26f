//! Runs the real example programs and talks to them over loopback.
//!
//! `cargo test` builds every example into `target/<profile>/examples/`
//! before it runs the tests, so each test starts the binary, reads its
//! stdout line by line, and plays the other side with std sockets.
//!
//! Every wait has a deadline: lines come through a reader thread and a
//! channel read with `recv_timeout`, sockets have read timeouts, and a
//! child process is killed when its test ends, passing or failing.

mod common;
use common::example_path;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any one test may wait for anything.
const DEADLINE: Duration = Duration::from_secs(20);

/// A running example. Dropping it kills the process, so a failed
/// assertion never leaves a server running.
struct Running {
    name: String,
    child: Child,
    stdout: Receiver<String>,
    /// stdout lines read so far and all of stderr, for failure messages.
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    /// The thread collecting stderr; joined once the process has exited,
    /// so the transcript has all of it.
    stderr_reader: Option<thread::JoinHandle<()>>,
    deadline: Instant,
}

impl Running {
    fn start(name: &str, args: &[&str]) -> Running {
        Running::start_with_env(name, args, &[])
    }

    fn start_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(example_path(name))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));

        // A thread per pipe: a blocking read on the pipe becomes a channel
        // we can wait on with a timeout.
        let (lines_tx, lines_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let collected = stderr.clone();
        let stderr_reader = thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                let mut text = collected.lock().unwrap_or_else(|p| p.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
        });
        Running {
            name: name.to_string(),
            child,
            stdout: lines_rx,
            seen: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
            deadline: Instant::now() + DEADLINE,
        }
    }

    /// What the program printed so far, to explain a failure.
    fn transcript(&self) -> String {
        let stderr = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        format!("--- {} stdout ---\n{}\n--- stderr ---\n{}", self.name, self.seen.join("\n"), stderr)
    }

    /// The next stdout line, or `None` once stdout is closed.
    fn next_line(&mut self) -> Option<String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.stdout.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for output\n{}", self.transcript()),
        }
    }

    /// Skips lines until one starts with `prefix`, and returns it.
    fn line_starting_with(&mut self, prefix: &str) -> String {
        loop {
            match self.next_line() {
                Some(line) if line.starts_with(prefix) => return line,
                Some(_) => {}
                None => panic!("stdout closed before a line starting with {prefix:?}\n{}", self.transcript()),
            }
        }
    }

    /// For a server: the address from its `listening on ADDR` line.
    fn listening_addr(&mut self) -> SocketAddr {
        let line = self.line_starting_with("listening on ");
        line["listening on ".len()..].trim().parse().unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
    }

    /// For a program that ends by itself: every remaining stdout line and
    /// the exit status.
    fn finish(&mut self) -> (Vec<String>, ExitStatus) {
        let mut lines = Vec::new();
        while let Some(line) = self.next_line() {
            lines.push(line);
        }
        // stdout is closed, so the process is exiting; give it until the
        // deadline to be reaped.
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    // The process is gone, so its stderr is closed: the
                    // reader thread ends after the last line.
                    if let Some(reader) = self.stderr_reader.take() {
                        let _ = reader.join();
                    }
                    return (lines, status);
                }
                Ok(None) if Instant::now() < self.deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => panic!("{} closed stdout but did not exit\n{}", self.name, self.transcript()),
                Err(e) => panic!("wait failed: {e}"),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Harmless if it already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A std line client with a read timeout, for the echo server.
struct LineClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl LineClient {
    fn connect(addr: SocketAddr) -> LineClient {
        let stream = TcpStream::connect(addr).expect("connect to the echo server");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_write_timeout(Some(DEADLINE)).unwrap();
        LineClient { writer: stream.try_clone().unwrap(), reader: BufReader::new(stream) }
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).expect("send to the echo server");
    }

    /// The next line, with its newline; empty at EOF.
    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read from the echo server");
        line
    }

    /// Asserts the server closed the connection: EOF (or a reset, which
    /// is how a close with unread input can look).
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes before close: {:?}", String::from_utf8_lossy(&rest)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the server to close, got {e}"),
        }
    }
}

// ----- echo_server ------------------------------------------------------------

#[test]
fn echo_server_serves_three_clients_at_once() {
    let mut server = Running::start("echo_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr();

    // All three connected before any of them is served to the end: one
    // thread on the server side must juggle them.
    let mut clients: Vec<LineClient> = (0..3).map(|_| LineClient::connect(addr)).collect();
    for client in &mut clients {
        assert_eq!(client.read_line(), "Hello,I am server!\n");
    }
    // Two messages in one write each: the server must split them and
    // answer in order.
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(&format!("client {i} first\nclient {i} second\n"));
    }
    for (i, client) in clients.iter_mut().enumerate().rev() {
        assert_eq!(client.read_line(), format!("Loop_Msg: client {i} first!\n"));
        assert_eq!(client.read_line(), format!("Loop_Msg: client {i} second!\n"));
    }
    for client in &mut clients {
        client.send("exit\n");
        client.expect_closed();
    }
}

/// The tutorial's own client, byte for byte: `recv(1024)` for the greeting,
/// `Hello,I am a client` with no newline, `recv(1024)` for the answer,
/// then `exit` (no newline either), and the server closes.
#[test]
fn echo_server_answers_the_tutorials_client_exactly() {
    let mut server = Running::start("echo_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let mut socket = TcpStream::connect(addr).expect("connect to the echo server");
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    // One `recv(1024)` each, as the tutorial does; loopback delivers each
    // small reply whole, but a short read would only make this wait longer.
    let recv = |socket: &mut TcpStream, expected: &str| {
        let mut got = Vec::new();
        let mut buffer = [0u8; 1024];
        while got.len() < expected.len() {
            let n = socket.read(&mut buffer).expect("a reply within the deadline");
            assert!(n > 0, "the server closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buffer[..n]);
        }
        assert_eq!(String::from_utf8_lossy(&got), expected);
    };
    recv(&mut socket, "Hello,I am server!\n");
    socket.write_all(b"Hello,I am a client").unwrap();
    recv(&mut socket, "Loop_Msg: Hello,I am a client!\n");
    socket.write_all(b"exit").unwrap();
    let mut rest = Vec::new();
    socket.read_to_end(&mut rest).expect("the server closes after exit");
    assert!(rest.is_empty(), "after exit: {:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn echo_server_closes_a_client_whose_line_never_ends() {
    let mut server = Running::start("echo_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let mut client = LineClient::connect(addr);
    assert_eq!(client.read_line(), "Hello,I am server!\n");
    // A newline makes this a line client: from then on a partial line
    // waits for its end.
    client.send("lines from now on\n");
    assert_eq!(client.read_line(), "Loop_Msg: lines from now on!\n");
    // 70 KiB and no newline: over the 64 KiB line limit.
    client.send(&"x".repeat(70 * 1024));
    client.expect_closed();

    // The server itself is fine and serves the next client.
    let mut next = LineClient::connect(addr);
    assert_eq!(next.read_line(), "Hello,I am server!\n");
    next.send("still there?\n");
    assert_eq!(next.read_line(), "Loop_Msg: still there?!\n");
}

#[test]
fn echo_server_answers_a_flood_of_pipelined_lines_in_order() {
    const LINES: usize = 200_000;
    let mut server = Running::start("echo_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let mut client = LineClient::connect(addr);
    assert_eq!(client.read_line(), "Hello,I am server!\n");

    // Several MB of replies: more than the kernel buffers hold while we
    // are not reading, so the server has to stop reading us until we
    // catch up (its back-pressure path). The test passes either way; it
    // checks that nothing is lost or reordered.
    let mut writer = client.writer.try_clone().unwrap();
    let (written_tx, written_rx) = mpsc::channel();
    let sender = thread::spawn(move || {
        let batch: String = (0..LINES).map(|i| format!("{i}\n")).collect();
        let result = writer.write_all(batch.as_bytes());
        let _ = written_tx.send(());
        result
    });
    // Start reading once everything is written, or after a moment if the
    // server pushed back (then the writer is blocked until we read).
    let _ = written_rx.recv_timeout(Duration::from_millis(500));
    for i in 0..LINES {
        let line = client.read_line();
        assert_eq!(line, format!("Loop_Msg: {i}!\n"), "reply {i}");
    }
    sender.join().unwrap().expect("the flood was written");
    client.send("exit\n");
    client.expect_closed();
}

// ----- asyncore_client --------------------------------------------------------

#[test]
fn asyncore_client_sends_hello_prints_the_reply_and_exits() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A one-shot server: read one line, answer, close.
    let (got_tx, got_rx) = mpsc::channel();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        reader.get_mut().write_all(b"welcome\n").unwrap();
        let _ = got_tx.send(line);
        // Dropping the stream closes the connection.
    });

    let mut client = Running::start("asyncore_client", &[&addr.to_string()]);
    let (lines, status) = client.finish();
    let received = got_rx.recv_timeout(DEADLINE).expect("the server got a line");
    assert_eq!(received, "hello world\n");

    let position = |wanted: &str| {
        lines
            .iter()
            .position(|l| l.contains(wanted))
            .unwrap_or_else(|| panic!("no {wanted:?} in\n{}", client.transcript()))
    };
    let connected = position(&format!("connected to {addr}"));
    let reply = position("welcome");
    let closed = position("connection closed");
    assert!(connected < reply && reply < closed, "out of order:\n{}", client.transcript());
    assert!(status.success(), "exit status {status}\n{}", client.transcript());
}

/// The two examples meet: the client's default address is the server's,
/// and against the server it prints both replies and exits by itself.
#[test]
fn asyncore_client_talks_to_echo_server_and_exits_when_done() {
    let default_addr = |source: &str| {
        let line = source.lines().find(|l| l.starts_with("const DEFAULT_ADDR")).expect("a DEFAULT_ADDR");
        line.split('"').nth(1).expect("a quoted address").to_string()
    };
    assert_eq!(
        default_addr(include_str!("../examples/asyncore_client.rs")),
        default_addr(include_str!("../examples/echo_server.rs")),
        "the client's default address is the server's"
    );

    let mut server = Running::start("echo_server", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let mut client = Running::start("asyncore_client", &[&addr.to_string()]);
    let (lines, status) = client.finish();
    let transcript = client.transcript();
    assert!(status.success(), "exit status {status}\n{transcript}");
    let received: String = lines.iter().filter(|l| l.starts_with("received ")).cloned().collect();
    assert!(received.contains("Hello,I am server!"), "no greeting\n{transcript}");
    assert!(received.contains("Loop_Msg: hello world!"), "no reply\n{transcript}");
    assert_eq!(lines.last().map(String::as_str), Some("connection closed"), "{transcript}");
}

#[test]
fn asyncore_client_fails_on_a_closed_port() {
    // A port that was free a moment ago: nobody listens there now.
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut client = Running::start("asyncore_client", &[&addr.to_string()]);
    let (_, status) = client.finish();
    assert!(!status.success(), "a refused connect must fail\n{}", client.transcript());
    let transcript = client.transcript();
    assert!(transcript.contains(&format!("connection to {addr} failed")), "no error message\n{transcript}");
}

// ----- udp_echo ---------------------------------------------------------------

#[test]
fn udp_echo_says_hello_to_each_datagram() {
    let mut server = Running::start("udp_echo", &["127.0.0.1:0"]);
    let addr = server.listening_addr();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut reply = [0u8; 1024];
    for name in ["world", "Douyu", "a third one"] {
        socket.send_to(name.as_bytes(), addr).unwrap();
        let (n, from) = socket.recv_from(&mut reply).expect("a reply within the deadline");
        assert_eq!(from, addr);
        assert_eq!(std::str::from_utf8(&reply[..n]).unwrap(), format!("Hello, {name}!"));
    }
    // A burst: several datagrams waiting at once must all be read (the
    // handler drains the socket on each edge). Loopback does not drop them.
    for i in 0..20 {
        socket.send_to(format!("burst {i}").as_bytes(), addr).unwrap();
    }
    let mut answers = Vec::new();
    for _ in 0..20 {
        let (n, _) = socket.recv_from(&mut reply).expect("every burst datagram answered");
        answers.push(String::from_utf8_lossy(&reply[..n]).into_owned());
    }
    answers.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("Hello, burst {i}!")).collect();
    expected.sort();
    assert_eq!(answers, expected);
}

// ----- http_chain -------------------------------------------------------------

/// Asserts that `wanted` appear in `lines` in this order, each as the start
/// of some line; returns the matching lines.
fn lines_in_order(lines: &[String], wanted: &[&str], transcript: &str) -> Vec<String> {
    let mut from = 0;
    let mut found = Vec::new();
    for prefix in wanted {
        let Some(offset) = lines[from..].iter().position(|l| l.starts_with(prefix)) else {
            panic!("no line starting with {prefix:?} after line {from}\n{transcript}");
        };
        from += offset + 1;
        found.push(lines[from - 1].clone());
    }
    found
}

#[test]
fn http_chain_runs_its_steps_in_order_with_the_delay() {
    let mut chain = Running::start("http_chain", &[]);
    let (lines, status) = chain.finish();
    let transcript = chain.transcript();
    assert!(status.success(), "exit status {status}\n{transcript}");
    let found = lines_in_order(
        &lines,
        &[
            "step 1: GET /login",
            "step 1: 200 OK",
            "  logged in, token",
            "step 2: waiting 100 ms before POST /poll",
            "step 2: POST /poll (after ",
            "step 2: 200 OK",
            "  message \"hello from the poll\"",
            "step 3: POST /logout",
            "step 3: 200 OK",
            "  logged out: \"bye\"",
            "chain finished: 3 steps",
        ],
        &transcript,
    );
    // "step 2: POST /poll (after 101 ms)": the timer really waited.
    let delayed = &found[4];
    let millis: u64 = delayed
        .split("(after ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(" ms)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no delay in {delayed:?}"));
    assert!(millis >= 100, "step 2 was sent after {millis} ms, before its 100 ms delay");
}

// ----- concurrent_fetch -------------------------------------------------------

/// One round's output: each URL's reported size, and the max in flight.
fn parse_round(lines: &[String], round: u32, transcript: &str) -> (HashMap<String, usize>, usize) {
    let start = lines
        .iter()
        .position(|l| l.starts_with(&format!("round {round}: ")))
        .unwrap_or_else(|| panic!("no round {round}\n{transcript}"));
    let done_prefix = format!("round {round} done: ");
    let end = start
        + lines[start..]
            .iter()
            .position(|l| l.starts_with(&done_prefix))
            .unwrap_or_else(|| panic!("round {round} never finished\n{transcript}"));
    let mut sizes = HashMap::new();
    for line in &lines[start + 1..end] {
        // "http://127.0.0.1:PORT/: N bytes"
        let (url, rest) = line.rsplit_once(": ").unwrap_or_else(|| panic!("odd line {line:?}"));
        let bytes =
            rest.strip_suffix(" bytes").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("odd line {line:?}"));
        assert!(sizes.insert(url.to_string(), bytes).is_none(), "{url} reported twice in round {round}");
    }
    let summary = &lines[end];
    assert!(summary.contains(" 0 failed"), "failures in round {round}: {summary}");
    let max_in_flight = summary
        .rsplit_once("max in flight ")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("no max in flight in {summary:?}"));
    (sizes, max_in_flight)
}

#[test]
fn concurrent_fetch_gets_every_url_with_and_without_the_pool() {
    let mut fetch = Running::start("concurrent_fetch", &[]);
    let (lines, status) = fetch.finish();
    let transcript = fetch.transcript();
    assert!(status.success(), "exit status {status}\n{transcript}");

    // "serving http://127.0.0.1:PORT/ : N bytes after D ms"
    let expected: HashMap<String, usize> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("serving "))
        .map(|rest| {
            let (url, rest) = rest.split_once(" : ").expect("serving URL : N bytes ...");
            let bytes = rest.split(' ').next().and_then(|n| n.parse().ok()).expect("a byte count");
            (url.to_string(), bytes)
        })
        .collect();
    assert!(expected.len() >= 3, "too few servers\n{transcript}");

    let (unpooled, unpooled_max) = parse_round(&lines, 1, &transcript);
    let (pooled, pooled_max) = parse_round(&lines, 2, &transcript);
    assert_eq!(unpooled, expected, "round 1 sizes\n{transcript}");
    assert_eq!(pooled, expected, "round 2 sizes\n{transcript}");
    assert!(unpooled_max > 2, "without a pool every fetch should start at once: {unpooled_max}");
    assert!(pooled_max <= 2, "the pool of 2 had {pooled_max} in flight");
}

// ----- tls_echo ---------------------------------------------------------------

#[test]
fn tls_echo_handshakes_echoes_and_traces_each_want_as_an_interest() {
    let mut echo = Running::start_with_env("tls_echo", &[], &[("RUST_LOG", "trace")]);
    let (lines, status) = echo.finish();
    let transcript = echo.transcript();
    assert!(status.success(), "exit status {status}\n{transcript}");
    lines_in_order(
        &lines,
        &[
            "client: handshake done: TLSv1.2 AES256-GCM-SHA384",
            "client: echo: hello over TLS",
            "client: echo: second line",
            "client: echo: bye",
            "client: closed",
        ],
        &transcript,
    );
    // The server saw a clean end: the client's close_notify, not a bare FIN.
    lines_in_order(
        &lines,
        &[
            "server: handshake done: TLSv1.2 AES256-GCM-SHA384",
            "server: the client said goodbye (close_notify)",
            "server: closed",
        ],
        &transcript,
    );
    // The lesson: a handshake step that waits to read becomes READABLE
    // interest, for the client that had been waiting for its connect
    // (WRITABLE) and for the server.
    let stderr = echo.stderr.lock().unwrap().clone();
    for wanted in [
        "#1.1: TLS handshake from \"before SSL initialization\" to \"SSLv3/TLS write client hello\": WANT_READ, so poll for READABLE",
        "#1.1: interest Some(WRITABLE) -> Some(READABLE)",
        "#2.2: TLS handshake from \"before SSL initialization\" to \"SSLv3/TLS write server done\": WANT_READ, so poll for READABLE",
        "#1.1: output written, close_notify and FIN sent",
    ] {
        assert!(stderr.contains(wanted), "no {wanted:?} in the trace\n{transcript}");
    }
}

// ----- tls_memory -------------------------------------------------------------

#[test]
fn tls_memory_measures_every_variant_against_its_server_child() {
    let mut memory = Running::start("tls_memory", &["--connections", "20", "--batch", "5"]);
    let (lines, status) = memory.finish();
    let transcript = memory.transcript();
    assert!(status.success(), "exit status {status}\n{transcript}");
    let variants = [
        "plain",
        "openssl-defaults",
        "openssl-defaults+release",
        "barrage",
        "barrage-keep-buffers",
        "barrage-tls1.2-max",
    ];
    for variant in variants {
        let prefix = format!("{variant}: ");
        let line = lines
            .iter()
            .map(|l| l.trim_start())
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line for {variant}\n{transcript}"));
        assert!(line.contains(" B per connection (RSS "), "{line}");
    }
}

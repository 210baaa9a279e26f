//! The reactor's promises, checked over loopback. Every wait is a condition
//! with a deadline (`run_until`), never a sleep.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use barrage::reactor::{Context, Dispatcher, Reactor, ReactorConfig};
use mio::net::TcpListener;

const DEADLINE: Duration = Duration::from_secs(20);

fn run_until(reactor: &mut Reactor, what: &str, mut done: impl FnMut(&mut Reactor) -> bool) {
    let reached = reactor.run_until(Instant::now() + DEADLINE, |r| done(r)).unwrap();
    assert!(reached, "timed out waiting for: {what}");
}

/// Echoes every byte back.
struct Echo;
impl Dispatcher for Echo {
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        ctx.send(data);
        data.len()
    }
}

/// Starts an echo server on an ephemeral loopback port.
fn echo_server(reactor: &mut Reactor) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    reactor
        .listen(listener, |r: &mut Reactor, stream, _peer| {
            r.add_stream(stream, Echo).unwrap();
        })
        .unwrap();
    addr
}

#[derive(Default)]
struct Log {
    connected: u32,
    errors: u32,
    closed: u32,
    /// Order of callbacks, for "error before close" checks.
    events: Vec<&'static str>,
    received: Vec<u8>,
}

/// A client that sends `message` on connect and records everything.
struct Client {
    message: Vec<u8>,
    log: Rc<RefCell<Log>>,
    close_after: Option<usize>,
}

impl Dispatcher for Client {
    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        self.log.borrow_mut().connected += 1;
        self.log.borrow_mut().events.push("connect");
        ctx.send(&self.message);
    }
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        let mut log = self.log.borrow_mut();
        log.received.extend_from_slice(data);
        if self.close_after.is_some_and(|n| log.received.len() >= n) {
            ctx.close();
        }
        data.len()
    }
    fn handle_error(&mut self, _ctx: &mut Context<'_>, _error: std::io::Error) {
        self.log.borrow_mut().errors += 1;
        self.log.borrow_mut().events.push("error");
    }
    fn handle_close(&mut self, _ctx: &mut Context<'_>) {
        self.log.borrow_mut().closed += 1;
        self.log.borrow_mut().events.push("close");
    }
}

#[test]
fn two_hundred_echo_clients_on_one_thread() {
    let mut reactor = Reactor::new().unwrap();
    let addr = echo_server(&mut reactor);
    let logs: Vec<_> = (0..200).map(|_| Rc::new(RefCell::new(Log::default()))).collect();
    for (i, log) in logs.iter().enumerate() {
        let message = format!("client {i} says hello\n").into_bytes();
        let len = message.len();
        reactor.connect(addr, Client { message, log: log.clone(), close_after: Some(len) }).unwrap();
    }
    run_until(&mut reactor, "all 200 clients echoed and closed", |_| logs.iter().all(|l| l.borrow().closed == 1));
    for (i, log) in logs.iter().enumerate() {
        let log = log.borrow();
        assert_eq!(log.received, format!("client {i} says hello\n").into_bytes());
        assert_eq!((log.connected, log.errors, log.closed), (1, 0, 1));
    }
    // The server side closes each connection after the client's EOF.
    run_until(&mut reactor, "server connections closed", |r| r.stats().closed == 400);
    assert_eq!(reactor.entry_count(), 1, "only the listener is left");
}

#[test]
fn connect_refused_reports_error_then_close_exactly_once() {
    // A port that was just free: nobody listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut reactor = Reactor::new().unwrap();
    let log = Rc::new(RefCell::new(Log::default()));
    let id = reactor.connect(addr, Client { message: b"x".to_vec(), log: log.clone(), close_after: None }).unwrap();
    run_until(&mut reactor, "refused connect closed", |_| log.borrow().closed > 0);
    // A few more iterations must not deliver anything twice.
    for _ in 0..5 {
        reactor.turn(Some(Duration::from_millis(5))).unwrap();
    }
    let log = log.borrow();
    assert_eq!(log.events, vec!["error", "close"]);
    assert!(!reactor.is_open(id));
    assert!(!reactor.send(id, b"late"), "a closed id accepts nothing");
}

#[test]
fn half_closed_peer_still_gets_its_reply() {
    let mut reactor = Reactor::new().unwrap();
    let addr = echo_server(&mut reactor);
    let reply = Arc::new(std::sync::Mutex::new(None));
    let handle = reactor.handle();
    let client = {
        let reply = reply.clone();
        std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            stream.write_all(b"last words").unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let mut got = Vec::new();
            // read_to_end returns only at EOF: the server must close after replying.
            stream.read_to_end(&mut got).unwrap();
            *reply.lock().unwrap() = Some(got);
            // Wake the loop so it sees the result now, not at its deadline.
            handle.add_callback(|_| {});
        })
    };
    run_until(&mut reactor, "client got reply and EOF", |_| reply.lock().unwrap().is_some());
    client.join().unwrap();
    assert_eq!(reply.lock().unwrap().as_deref(), Some(&b"last words"[..]));
    run_until(&mut reactor, "server side closed", |r| r.stats().closed == 1);
}

#[test]
fn add_callback_from_another_thread_wakes_a_blocked_loop() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let ran = Rc::new(RefCell::new(false));
    let sender = std::thread::spawn(move || {
        // Give the loop time to block in poll first (not a correctness wait:
        // the test passes whenever the callback arrives).
        std::thread::sleep(Duration::from_millis(50));
        handle.add_callback(|r| r.stop());
    });
    let started = Instant::now();
    // No timers, no sockets: without the waker this poll would block for 30 s.
    reactor.turn(Some(Duration::from_secs(30))).unwrap();
    let waited = started.elapsed();
    sender.join().unwrap();
    *ran.borrow_mut() = reactor.is_stopped();
    assert!(*ran.borrow(), "the callback ran in the first iteration");
    assert!(waited < Duration::from_secs(10), "poll was woken, not timed out (waited {waited:?})");
    assert_eq!(reactor.stats().wakeups, 1);
}

/// Pauses after each `chunk` bytes until a timer resumes it.
struct SlowReader {
    received: Rc<RefCell<Vec<u8>>>,
    paused: Rc<RefCell<bool>>,
    chunk: usize,
    since_pause: usize,
}

impl Dispatcher for SlowReader {
    fn readable(&self) -> bool {
        !*self.paused.borrow()
    }
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        // Consume at most what is left of this chunk; leave the rest with
        // the reactor, like a consumer whose output is full.
        let take = data.len().min(self.chunk - self.since_pause);
        self.received.borrow_mut().extend_from_slice(&data[..take]);
        self.since_pause += take;
        if self.since_pause == self.chunk {
            self.since_pause = 0;
            *self.paused.borrow_mut() = true;
            let paused = self.paused.clone();
            let id = ctx.id();
            ctx.reactor().call_later(Duration::from_millis(2), move |r| {
                *paused.borrow_mut() = false;
                r.refresh(id);
            });
        }
        take
    }
}

#[test]
fn paused_reader_loses_nothing_and_resumes() {
    let mut reactor = Reactor::new().unwrap();
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let to_send = payload.clone();
    let server_conn = Rc::new(RefCell::new(None));
    let server_conn2 = server_conn.clone();
    reactor
        .listen(listener, move |r: &mut Reactor, stream, _| {
            // One send of 4 MiB: the write buffer must carry it across many
            // partial writes while the reader is paused.
            struct Sender(Vec<u8>);
            impl Dispatcher for Sender {
                fn handle_connect(&mut self, ctx: &mut Context<'_>) {
                    ctx.send(&std::mem::take(&mut self.0));
                    ctx.close();
                }
                fn handle_read(&mut self, _: &mut Context<'_>, d: &[u8]) -> usize {
                    d.len()
                }
            }
            *server_conn2.borrow_mut() = Some(r.add_stream(stream, Sender(to_send.clone())).unwrap());
        })
        .unwrap();
    let received = Rc::new(RefCell::new(Vec::new()));
    let paused = Rc::new(RefCell::new(false));
    reactor
        .connect(
            addr,
            SlowReader { received: received.clone(), paused: paused.clone(), chunk: 100_000, since_pause: 0 },
        )
        .unwrap();
    let mut max_pending = 0;
    run_until(&mut reactor, "all bytes received", |r| {
        if let Some(id) = *server_conn.borrow() {
            max_pending = max_pending.max(r.pending_output(id).unwrap_or(0));
        }
        received.borrow().len() >= payload.len()
    });
    assert_eq!(received.borrow().len(), payload.len());
    assert!(*received.borrow() == payload, "bytes arrive complete and in order");
    assert!(max_pending > 0, "the paused reader pushed back on the sender");
    assert!(reactor.stats().reregisters > 2, "pausing toggled interest");
}

/// Ping-pong: sends `rounds` messages one at a time.
struct PingPong {
    rounds_left: u32,
    done: Rc<RefCell<u32>>,
}
impl Dispatcher for PingPong {
    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        ctx.send(b"ping");
    }
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        if data.len() < 4 {
            return 0; // wait for the whole reply
        }
        *self.done.borrow_mut() += 1;
        self.rounds_left -= 1;
        if self.rounds_left > 0 {
            ctx.send(b"ping");
        } else {
            ctx.close();
        }
        4
    }
}

#[test]
fn steady_traffic_changes_no_interest() {
    let mut reactor = Reactor::new().unwrap();
    let addr = echo_server(&mut reactor);
    let done = Rc::new(RefCell::new(0));
    reactor.connect(addr, PingPong { rounds_left: 1000, done: done.clone() }).unwrap();
    run_until(&mut reactor, "10 rounds", |_| *done.borrow() >= 10);
    let reregisters_after_10 = reactor.stats().reregisters;
    run_until(&mut reactor, "1000 rounds", |_| *done.borrow() >= 1000);
    assert_eq!(
        reactor.stats().reregisters,
        reregisters_after_10,
        "990 more messages needed no reregister: interest never changed"
    );
}

#[test]
fn a_flooding_peer_gets_a_bounded_share_of_each_iteration() {
    // A small scratch buffer and budget make the fair share easy to see:
    // at most one 4 KiB read per connection per iteration.
    let config = ReactorConfig { read_budget: 4096, scratch_size: 4096, ..ReactorConfig::default() };
    let mut reactor = Reactor::with_config(config).unwrap();
    let addr = echo_server(&mut reactor);
    let flood_bytes_this_turn = Rc::new(RefCell::new(0usize));
    let flood_addr = {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        struct Sink(Rc<RefCell<usize>>);
        impl Dispatcher for Sink {
            fn handle_read(&mut self, _: &mut Context<'_>, d: &[u8]) -> usize {
                *self.0.borrow_mut() += d.len();
                d.len()
            }
        }
        let counter = flood_bytes_this_turn.clone();
        reactor.listen(listener, move |r: &mut Reactor, s, _| drop(r.add_stream(s, Sink(counter.clone())))).unwrap();
        addr
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(flood_addr).unwrap();
            let block = vec![0u8; 64 * 1024];
            // Bounded: stops when told, or after 8 GiB.
            for _ in 0..128 * 1024 {
                if stop.load(Ordering::SeqCst) || stream.write_all(&block).is_err() {
                    break;
                }
            }
        })
    };
    let done = Rc::new(RefCell::new(0));
    let deadline = Instant::now() + DEADLINE;
    let (mut flood_total, mut max_per_turn) = (0, 0);
    let mut ping_pong_started = false;
    while *done.borrow() < 200 && Instant::now() < deadline {
        // Start the ping-pong once the flood is in full swing.
        if !ping_pong_started && flood_total > 1024 * 1024 {
            reactor.connect(addr, PingPong { rounds_left: 200, done: done.clone() }).unwrap();
            ping_pong_started = true;
        }
        reactor.turn(Some(Duration::from_millis(100))).unwrap();
        let this_turn = std::mem::take(&mut *flood_bytes_this_turn.borrow_mut());
        flood_total += this_turn;
        max_per_turn = max_per_turn.max(this_turn);
    }
    stop.store(true, Ordering::SeqCst);
    // Drain a little so the flooder's blocked write returns, then join.
    for _ in 0..10 {
        reactor.turn(Some(Duration::from_millis(1))).unwrap();
    }
    drop(reactor);
    flooder.join().unwrap();
    assert_eq!(*done.borrow(), 200, "the ping-pong connection kept making progress");
    assert!(flood_total > 2 * 1024 * 1024, "the flood ran beside the ping-pong ({flood_total} bytes)");
    assert!(max_per_turn <= 4096, "one iteration read {max_per_turn} bytes from the flooding connection");
}

#[test]
fn connection_timers_fire_and_die_with_their_connection() {
    struct Timed {
        fired: Rc<RefCell<Vec<u64>>>,
    }
    impl Dispatcher for Timed {
        fn handle_connect(&mut self, ctx: &mut Context<'_>) {
            ctx.set_timer(Duration::from_millis(30), 3);
            ctx.set_timer(Duration::from_millis(10), 1);
            let cancelled = ctx.set_timer(Duration::from_millis(20), 2);
            assert!(ctx.cancel_timer(cancelled));
            ctx.set_timer(Duration::from_secs(3600), 99);
        }
        fn handle_read(&mut self, _: &mut Context<'_>, d: &[u8]) -> usize {
            d.len()
        }
        fn handle_timer(&mut self, ctx: &mut Context<'_>, tag: u64) {
            self.fired.borrow_mut().push(tag);
            if tag == 3 {
                ctx.abort();
            }
        }
    }
    let mut reactor = Reactor::new().unwrap();
    let addr = echo_server(&mut reactor);
    let fired = Rc::new(RefCell::new(Vec::new()));
    let id = reactor.connect(addr, Timed { fired: fired.clone() }).unwrap();
    run_until(&mut reactor, "connection closed by its timer", |r| !r.is_open(id));
    assert_eq!(*fired.borrow(), vec![1, 3]);
    assert_eq!(reactor.pending_timers(), 0, "the hour-long timer died with its connection");
}

#[test]
fn loop_timers_run_in_order_and_cancel() {
    let mut reactor = Reactor::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    for (delay, name) in [(30, "c"), (10, "a"), (20, "b"), (25, "cancelled")] {
        let order = order.clone();
        let handle = reactor.call_later(Duration::from_millis(delay), move |_| order.borrow_mut().push(name));
        if name == "cancelled" {
            assert!(reactor.remove_timeout(handle));
            assert!(!reactor.remove_timeout(handle), "second cancel is a harmless no-op");
        }
    }
    run_until(&mut reactor, "three timers", |_| order.borrow().len() == 3);
    assert_eq!(*order.borrow(), vec!["a", "b", "c"]);
}

#[test]
fn a_rescheduled_timer_fires_at_its_new_deadline_only() {
    let mut reactor = Reactor::new().unwrap();
    let start = Instant::now();
    let order = Rc::new(RefCell::new(Vec::new()));
    let (idle_order, other_order) = (order.clone(), order.clone());
    let idle =
        reactor.call_later(Duration::from_millis(20), move |_| idle_order.borrow_mut().push(("idle", start.elapsed())));
    reactor.call_later(Duration::from_millis(60), move |_| other_order.borrow_mut().push(("other", start.elapsed())));
    // Pushed back, as a message pushes back an idle timeout; same handle.
    assert!(reactor.reschedule_timeout(idle, start + Duration::from_millis(100)));
    let before = reactor.stats().iterations;
    run_until(&mut reactor, "both timers", |_| order.borrow().len() == 2);
    let order = order.borrow();
    assert_eq!(order.iter().map(|(name, _)| *name).collect::<Vec<_>>(), ["other", "idle"]);
    assert!(order[1].1 >= Duration::from_millis(100), "fired early: {:?}", order[1].1);
    // One sleep per timer, plus one each for millisecond rounding at most.
    let iterations = reactor.stats().iterations - before;
    assert!(iterations <= 4, "{iterations} iterations for two timers");
    assert!(!reactor.reschedule_timeout(idle, start), "a fired timer cannot be moved");
}

#[test]
fn periodic_skips_missed_runs_instead_of_bursting() {
    let mut reactor = Reactor::new().unwrap();
    let period = Duration::from_millis(20);
    let start = Instant::now();
    let runs = Rc::new(RefCell::new(Vec::new()));
    let runs2 = runs.clone();
    reactor.add_periodic(period, move |_| {
        let mut runs = runs2.borrow_mut();
        runs.push(start.elapsed());
        if runs.len() == 1 {
            // Hog the loop for five periods, as a slow callback would.
            std::thread::sleep(period * 5);
        }
    });
    run_until(&mut reactor, "five runs", |_| runs.borrow().len() >= 5);
    // Each run falls in a later period slot than the one before: missed runs
    // were skipped, not fired back to back.
    let slots: Vec<u128> = runs.borrow().iter().map(|t| t.as_nanos() / period.as_nanos()).collect();
    assert!(slots.windows(2).all(|w| w[1] > w[0]), "runs burst: slots {slots:?}");
    assert!(slots[1] >= 6, "the run after the slow one skipped ahead: {slots:?}");
}

#[test]
fn an_idle_loop_sleeps_until_its_next_timer() {
    let mut reactor = Reactor::new().unwrap();
    let fired = Rc::new(RefCell::new(false));
    let fired2 = fired.clone();
    reactor.call_later(Duration::from_millis(150), move |_| *fired2.borrow_mut() = true);
    let before = reactor.stats().iterations;
    run_until(&mut reactor, "timer fired", |_| *fired.borrow());
    let iterations = reactor.stats().iterations - before;
    // One iteration sleeps until the deadline; a millisecond of rounding may
    // cost one more. A busy loop would take thousands.
    assert!(iterations <= 3, "{iterations} iterations for one timer");
}

#[test]
fn raw_handler_can_remove_itself_from_its_callback() {
    let mut reactor = Reactor::new().unwrap();
    let socket = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let got2 = got.clone();
    let id = reactor
        .add_handler(socket, mio::Interest::READABLE, move |r, id, sock: &mut mio::net::UdpSocket, ready| {
            assert!(ready.readable);
            let mut buf = [0u8; 64];
            while let Ok((n, _)) = sock.recv_from(&mut buf) {
                got2.borrow_mut().extend_from_slice(&buf[..n]);
            }
            assert!(r.remove_handler(id));
        })
        .unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"datagram", addr).unwrap();
    run_until(&mut reactor, "datagram handled", |r| r.entry_count() == 0);
    assert_eq!(*got.borrow(), b"datagram");
    assert!(!reactor.remove_handler(id), "already removed");
}

#[test]
fn channel_hands_values_from_a_thread_to_loop_state() {
    let mut reactor = Reactor::new().unwrap();
    // Loop-thread state that is not Send: only the channel's callback sees it.
    let received = Rc::new(RefCell::new(Vec::new()));
    let sink = received.clone();
    let sender = reactor.channel(move |_r: &mut Reactor, value: u32| sink.borrow_mut().push(value));
    let worker = std::thread::spawn(move || {
        for value in [3, 1, 2] {
            sender.send(value);
        }
    });
    // No timers or sockets: only the channel's wake-ups can end these polls.
    run_until(&mut reactor, "three values", |_| received.borrow().len() == 3);
    worker.join().unwrap();
    assert_eq!(*received.borrow(), vec![3, 1, 2], "in the order sent");
}

#[test]
fn stop_before_run_makes_run_return_at_once() {
    let mut reactor = Reactor::new().unwrap();
    reactor.stop();
    // If the early stop were lost, only this timer would end the run.
    let fired = Rc::new(RefCell::new(false));
    let fired2 = fired.clone();
    reactor.call_later(Duration::from_secs(30), move |r| {
        *fired2.borrow_mut() = true;
        r.stop();
    });
    reactor.run().unwrap();
    assert!(!*fired.borrow(), "run returned before the 30 s timer");
    assert!(!reactor.is_stopped(), "the flag is cleared for the next run");
}

// ----- closing gracefully -------------------------------------------------

/// A reply whose byte `i` is `i % 251`: a lost or shifted stretch shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Sends `reply` as soon as it is attached and closes gracefully at once.
/// Whatever the reactor hands it afterwards lands in `log.received` (it
/// should get nothing: a closing connection's input is thrown away).
struct ReplyThenClose {
    reply: Vec<u8>,
    log: Rc<RefCell<Log>>,
}

impl Dispatcher for ReplyThenClose {
    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        ctx.send(&std::mem::take(&mut self.reply));
        ctx.close();
    }
    fn handle_read(&mut self, _ctx: &mut Context<'_>, data: &[u8]) -> usize {
        self.log.borrow_mut().received.extend_from_slice(data);
        data.len()
    }
    fn handle_error(&mut self, _ctx: &mut Context<'_>, _error: std::io::Error) {
        self.log.borrow_mut().errors += 1;
        self.log.borrow_mut().events.push("error");
    }
    fn handle_close(&mut self, _ctx: &mut Context<'_>) {
        self.log.borrow_mut().closed += 1;
        self.log.borrow_mut().events.push("close");
    }
}

/// A server on an ephemeral loopback port whose connections each send
/// `reply` and close; returns its address and the log they share.
fn reply_then_close_server(reactor: &mut Reactor, reply: Vec<u8>) -> (SocketAddr, Rc<RefCell<Log>>) {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Rc::new(RefCell::new(Log::default()));
    let server_log = log.clone();
    reactor
        .listen(listener, move |r: &mut Reactor, stream, _peer| {
            r.add_stream(stream, ReplyThenClose { reply: reply.clone(), log: server_log.clone() }).unwrap();
        })
        .unwrap();
    (addr, log)
}

/// A peer that keeps talking while it reads a long reply slowly: 256-byte
/// reads (slow enough that most of the reply waits in the server's kernel,
/// not in ours) and a heartbeat after every 4 KiB. Reads until EOF.
fn read_slowly_while_chatting(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    stream.set_write_timeout(Some(DEADLINE))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let mut since_heartbeat = 0;
    loop {
        match stream.read(&mut buf)? {
            0 => return Ok(got),
            n => {
                got.extend_from_slice(&buf[..n]);
                since_heartbeat += n;
            }
        }
        if since_heartbeat >= 4096 {
            since_heartbeat = 0;
            stream.write_all(b"heartbeat\n")?;
        }
    }
}

#[test]
fn graceful_close_keeps_reading_so_a_chatty_peer_gets_the_whole_reply() {
    // Dropping a socket with unread input makes the kernel send a reset,
    // and the reset makes the peer's kernel throw away the part of the
    // reply it has not handed to its application yet.
    let config = ReactorConfig { linger: DEADLINE, ..ReactorConfig::default() };
    let mut reactor = Reactor::with_config(config).unwrap();
    let reply = pattern(8 * 1024 * 1024);
    let (addr, log) = reply_then_close_server(&mut reactor, reply.clone());
    let outcome = Arc::new(std::sync::Mutex::new(None));
    let handle = reactor.handle();
    let client = {
        let outcome = outcome.clone();
        std::thread::spawn(move || {
            let result = read_slowly_while_chatting(addr);
            *outcome.lock().unwrap() = Some(result);
            handle.add_callback(|_| {});
        })
    };
    run_until(&mut reactor, "the client read to the end", |_| outcome.lock().unwrap().is_some());
    client.join().unwrap();
    match outcome.lock().unwrap().take().unwrap() {
        Ok(got) => {
            assert_eq!(got.len(), reply.len(), "the client got the whole reply, then a clean EOF");
            assert!(got == reply, "the reply arrived intact and in order");
        }
        Err(e) => panic!("the client lost the tail of the reply: {e}"),
    }
    // The client's EOF ends the server's lingering.
    run_until(&mut reactor, "the server side closed", |_| log.borrow().closed > 0);
    for _ in 0..5 {
        reactor.turn(Some(Duration::from_millis(1))).unwrap();
    }
    let log = log.borrow();
    assert_eq!(log.events, ["close"], "closed exactly once, without an error");
    assert!(log.received.is_empty(), "the heartbeats were thrown away, not handed to a closing dispatcher");
}

#[test]
fn graceful_close_sends_fin_then_waits_for_the_peers() {
    let config = ReactorConfig { linger: DEADLINE, ..ReactorConfig::default() };
    let mut reactor = Reactor::with_config(config).unwrap();
    let (addr, log) = reply_then_close_server(&mut reactor, b"bye".to_vec());
    let got = Arc::new(std::sync::Mutex::new(None));
    let (close_now, close_now_rx) = std::sync::mpsc::channel::<()>();
    let handle = reactor.handle();
    let client = {
        let got = got.clone();
        std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut reply = Vec::new();
            // Returns only at the server's FIN.
            stream.read_to_end(&mut reply).unwrap();
            *got.lock().unwrap() = Some(reply);
            handle.add_callback(|_| {});
            // Keep our side open until the test says so.
            close_now_rx.recv_timeout(DEADLINE).unwrap();
        })
    };
    run_until(&mut reactor, "the client got the reply and EOF", |_| got.lock().unwrap().is_some());
    assert_eq!(got.lock().unwrap().as_deref(), Some(&b"bye"[..]));
    assert_eq!(reactor.stats().opened, 1);
    assert_eq!(reactor.stats().closed, 0, "the server still waits for the client's FIN after sending its own");
    assert_eq!(log.borrow().closed, 0);
    close_now.send(()).unwrap();
    run_until(&mut reactor, "the server side closed", |_| log.borrow().closed > 0);
    client.join().unwrap();
    assert_eq!(log.borrow().events, ["close"]);
}

#[test]
fn a_peer_that_never_closes_is_cut_off_after_the_linger_time() {
    let linger = Duration::from_millis(100);
    let mut reactor = Reactor::with_config(ReactorConfig { linger, ..ReactorConfig::default() }).unwrap();
    let (addr, log) = reply_then_close_server(&mut reactor, b"bye".to_vec());
    let (close_now, close_now_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        // Never closes, never sends: only the linger time ends the server's wait.
        close_now_rx.recv_timeout(DEADLINE).unwrap();
        reply
    });
    run_until(&mut reactor, "a connection opened", |r| r.stats().opened > 0);
    let started = Instant::now();
    run_until(&mut reactor, "the server gave up waiting", |_| log.borrow().closed > 0);
    assert!(started.elapsed() >= linger, "closed after {:?}, before the linger time", started.elapsed());
    close_now.send(()).unwrap();
    assert_eq!(client.join().unwrap(), b"bye");
    assert_eq!(log.borrow().events, ["close"]);
}

// ----- errors ---------------------------------------------------------------

/// A reactor whose client has sent "hello" to a blocking server that has
/// not read it: closing the server then makes its kernel send a reset.
fn client_whose_message_the_server_has_not_read() -> (Reactor, Rc<RefCell<Log>>, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut reactor = Reactor::new().unwrap();
    let log = Rc::new(RefCell::new(Log::default()));
    let id = reactor.connect(addr, Client { message: b"hello".to_vec(), log: log.clone(), close_after: None }).unwrap();
    let (server, _) = listener.accept().unwrap();
    run_until(&mut reactor, "the client sent its message", |r| {
        log.borrow().connected == 1 && r.pending_output(id) == Some(0)
    });
    (reactor, log, server)
}

#[test]
fn bytes_that_arrived_before_a_reset_are_read_before_the_error() {
    let (mut reactor, log, mut server) = client_whose_message_the_server_has_not_read();
    // The server answers without reading "hello" and closes. Unread input
    // makes its kernel send a reset right behind the answer. The reactor
    // does not run meanwhile, so one event will say both.
    let mut hello = [0u8; 5];
    assert!(server.peek(&mut hello).unwrap() > 0, "the unread input is there");
    server.write_all(b"last answer").unwrap();
    drop(server);
    run_until(&mut reactor, "the client closed", |_| log.borrow().closed > 0);
    let log = log.borrow();
    assert_eq!(String::from_utf8_lossy(&log.received), "last answer");
    assert_eq!(log.events, ["connect", "error", "close"]);
}

#[test]
fn a_reset_after_the_peers_fin_is_still_reported_after_the_bytes() {
    let (mut reactor, log, mut server) = client_whose_message_the_server_has_not_read();
    // FIN, then a reset (the server never read "hello"). After the bytes,
    // a read says EOF, not the error: the FIN came first.
    let mut hello = [0u8; 5];
    assert!(server.peek(&mut hello).unwrap() > 0, "the unread input is there");
    server.write_all(b"last answer").unwrap();
    server.shutdown(std::net::Shutdown::Write).unwrap();
    drop(server);
    run_until(&mut reactor, "the client closed", |_| log.borrow().closed > 0);
    let log = log.borrow();
    assert_eq!(String::from_utf8_lossy(&log.received), "last answer");
    assert_eq!(log.events, ["connect", "error", "close"], "the reset is reported, not taken for a clean EOF");
}

// ----- budgets ----------------------------------------------------------------

#[test]
fn a_listener_accepts_at_most_its_budget_per_iteration() {
    let budget = 2;
    let mut reactor =
        Reactor::with_config(ReactorConfig { accept_budget: budget, ..ReactorConfig::default() }).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept and drop: only the counting matters here.
    reactor.listen(listener, |_r: &mut Reactor, stream, _peer| drop(stream)).unwrap();
    // A backlog the listener needs several iterations for; the kernel
    // completes these handshakes without the loop.
    let mut clients: Vec<_> = (0..10).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    let mut accepted_before = 0;
    for turn in 0..40 {
        // A newcomer every iteration raises a new edge while the listener
        // still has a backlog to work through.
        if turn < 20 {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
        }
        reactor.turn(Some(Duration::from_millis(50))).unwrap();
        let accepted = reactor.stats().accepted;
        assert!(
            accepted - accepted_before <= budget as u64,
            "iteration {turn} accepted {} connections, budget {budget}",
            accepted - accepted_before
        );
        accepted_before = accepted;
        if accepted == clients.len() as u64 {
            break;
        }
    }
    let total = clients.len() as u64;
    run_until(&mut reactor, "every connection accepted", |r| r.stats().accepted == total);
}

// ----- timers -----------------------------------------------------------------

#[test]
fn huge_delays_are_capped_instead_of_panicking() {
    let mut reactor =
        Reactor::with_config(ReactorConfig { linger: Duration::MAX, ..ReactorConfig::default() }).unwrap();
    let never = Rc::new(RefCell::new(0));
    let never2 = never.clone();
    reactor.call_later(Duration::MAX, move |_| *never2.borrow_mut() += 1);
    let never3 = never.clone();
    reactor.add_periodic(Duration::MAX, move |_| *never3.borrow_mut() += 1);
    let never4 = never.clone();
    reactor.add_periodic_with_jitter(Duration::from_secs(u64::MAX), 1.0, move |_| *never4.borrow_mut() += 1);

    /// Sets an endless timer of its own and closes gracefully at once (the
    /// linger time is endless too).
    struct Endless;
    impl Dispatcher for Endless {
        fn handle_connect(&mut self, ctx: &mut Context<'_>) {
            ctx.set_timer(Duration::MAX, 1);
            ctx.send(b"x");
            ctx.close();
        }
        fn handle_read(&mut self, _: &mut Context<'_>, d: &[u8]) -> usize {
            d.len()
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    reactor.listen(listener, |r: &mut Reactor, s, _| drop(r.add_stream(s, Endless))).unwrap();
    let mut peer = std::net::TcpStream::connect(addr).unwrap();
    run_until(&mut reactor, "the connection is attached", |r| r.stats().opened == 1);

    // Timers far in the future do not stop a near one from firing, and the
    // loop computes its poll timeout from them without overflowing.
    let fired = Rc::new(RefCell::new(false));
    let fired2 = fired.clone();
    reactor.call_later(Duration::from_millis(10), move |_| *fired2.borrow_mut() = true);
    run_until(&mut reactor, "the near timer", |_| *fired.borrow());
    assert_eq!(*never.borrow(), 0);
    assert_eq!(reactor.pending_timers(), 5, "call_later, two periodics, the connection's timer and its linger");
    // Read the reply (and the server's FIN), then close: a clean EOF ends
    // the server's endless linger.
    let mut reply = Vec::new();
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    peer.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"x");
    drop(peer);
    run_until(&mut reactor, "the closing connection saw the peer's EOF", |r| r.stats().closed == 1);
    assert_eq!(reactor.pending_timers(), 3, "the connection's timers died with it");
}

#[test]
fn a_paused_reader_sees_the_peers_fin_after_the_bytes_before_it_once_it_resumes() {
    /// Reads only while `paused` is false; records what it gets.
    struct Pausable {
        paused: Rc<RefCell<bool>>,
        events: Rc<RefCell<Vec<String>>>,
    }
    impl Dispatcher for Pausable {
        fn readable(&self) -> bool {
            !*self.paused.borrow()
        }
        fn handle_connect(&mut self, _ctx: &mut Context<'_>) {
            self.events.borrow_mut().push("connect".into());
        }
        fn handle_read(&mut self, _ctx: &mut Context<'_>, data: &[u8]) -> usize {
            self.events.borrow_mut().push(format!("read {}", String::from_utf8_lossy(data)));
            data.len()
        }
        fn handle_eof(&mut self, ctx: &mut Context<'_>) {
            self.events.borrow_mut().push("eof".into());
            ctx.close();
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut reactor = Reactor::new().unwrap();
    let paused = Rc::new(RefCell::new(true));
    let events = Rc::new(RefCell::new(Vec::new()));
    let id = reactor.connect(addr, Pausable { paused: paused.clone(), events: events.clone() }).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    run_until(&mut reactor, "connected", |_| !events.borrow().is_empty());
    // The peer sends and closes its side while we are paused.
    server.write_all(b"before the FIN").unwrap();
    server.shutdown(std::net::Shutdown::Write).unwrap();
    // Paused and not registered: the loop is not woken by any of it.
    for _ in 0..5 {
        reactor.turn(Some(Duration::from_millis(5))).unwrap();
    }
    assert_eq!(*events.borrow(), ["connect"], "a paused connection hears nothing");
    assert!(reactor.is_open(id));
    *paused.borrow_mut() = false;
    reactor.refresh(id);
    run_until(&mut reactor, "the EOF after resuming", |_| events.borrow().last().is_some_and(|e| e == "eof"));
    assert_eq!(*events.borrow(), ["connect", "read before the FIN", "eof"]);
    drop(server);
    run_until(&mut reactor, "closed", |r| !r.is_open(id));
}

//! `ReactorConfig::min_poll_interval`, read coalescing: the loop polls for
//! I/O at most once per interval and sleeps in between, waking only for
//! timers and work it already holds.
//!
//! The assertions are bounds that hold by construction, whatever the load:
//! "at most one poll per interval" is an upper bound on polls for the time
//! that actually passed, and orders are checked, not durations. A loaded
//! machine can only make a test take longer, not fail it. Every wait is a
//! condition with a deadline.

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use barrage::reactor::{Context, Dispatcher, Reactor, ReactorConfig};
use mio::net::TcpListener;

const DEADLINE: Duration = Duration::from_secs(20);

fn run_until(reactor: &mut Reactor, what: &str, mut done: impl FnMut(&mut Reactor) -> bool) {
    let reached = reactor.run_until(Instant::now() + DEADLINE, |r| done(r)).unwrap();
    assert!(reached, "timed out waiting for: {what}");
}

fn with_interval(interval: Duration) -> Reactor {
    Reactor::with_config(ReactorConfig { min_poll_interval: interval, ..ReactorConfig::default() }).unwrap()
}

/// What a [`Recorder`] saw.
#[derive(Default)]
struct Received {
    bytes: Vec<u8>,
    eof: bool,
}

/// Keeps every byte and notes the peer's FIN.
struct Recorder(Rc<RefCell<Received>>);

impl Dispatcher for Recorder {
    fn handle_read(&mut self, _ctx: &mut Context<'_>, data: &[u8]) -> usize {
        self.0.borrow_mut().bytes.extend_from_slice(data);
        data.len()
    }
    fn handle_eof(&mut self, ctx: &mut Context<'_>) {
        self.0.borrow_mut().eof = true;
        ctx.close();
    }
}

/// A listener on an ephemeral loopback port whose connections all record
/// into one [`Received`].
fn recording_server(reactor: &mut Reactor) -> (SocketAddr, Rc<RefCell<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Rc::new(RefCell::new(Received::default()));
    let sink = received.clone();
    reactor
        .listen(listener, move |r: &mut Reactor, stream, _peer| {
            r.add_stream(stream, Recorder(sink.clone())).unwrap();
        })
        .unwrap();
    (addr, received)
}

/// The most polls `interval` allows in `elapsed`: one at the start, then
/// at most one per interval after the previous one returned; plus one for
/// rounding. (No batch here fills the 1024 events, which would allow more.)
fn most_polls_allowed(elapsed: Duration, interval: Duration) -> u64 {
    (elapsed.as_nanos() / interval.as_nanos()) as u64 + 2
}

#[test]
fn a_trickle_of_small_messages_is_read_in_few_polls_and_nothing_is_lost() {
    let interval = Duration::from_millis(100);
    let mut reactor = with_interval(interval);
    let (addr, received) = recording_server(&mut reactor);
    let messages: Vec<String> = (0..500).map(|i| format!("message {i}\n")).collect();
    let expected = messages.concat().into_bytes();
    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        for message in &messages {
            stream.write_all(message.as_bytes()).unwrap();
            // Pacing, not synchronisation: one message a millisecond (or
            // slower, on a loaded machine) is what a quiet room looks like.
            std::thread::sleep(Duration::from_millis(1));
        }
        // Dropping the stream sends our FIN: the end of the test's wait.
    });
    run_until(&mut reactor, "every message and the FIN", |_| received.borrow().eof);
    let elapsed = started.elapsed();
    sender.join().unwrap();

    assert_eq!(received.borrow().bytes, expected, "every byte, in order");
    let stats = reactor.stats().clone();
    let allowed = most_polls_allowed(elapsed, interval);
    assert!(stats.polls <= allowed, "{} polls in {elapsed:?}; the interval allows {allowed}", stats.polls);
    // Each readiness event costs one read (a short read means "drained"),
    // plus the first read of the accepted connection and the read of EOF.
    assert!(stats.read_syscalls <= stats.polls + 2, "{} reads for {} polls", stats.read_syscalls, stats.polls);
    // Between two polls the loop sleeps once, until the interval ends (no
    // timers here): it never spins.
    assert!(stats.interval_sleeps <= stats.polls, "{stats:?}");
    assert!(stats.iterations <= 2 * stats.polls + 2, "{stats:?}");
}

#[test]
fn a_timer_due_inside_the_interval_fires_before_bytes_that_came_after_the_poll() {
    // A long interval, so that the order below does not depend on how fast
    // anything runs: the next poll is a second after the one that read "a",
    // the timer is due 20 ms after that read.
    let interval = Duration::from_secs(1);
    let mut reactor = with_interval(interval);
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let order = Rc::new(RefCell::new(Vec::<&'static str>::new()));
    let (send_b, b_wanted) = mpsc::channel::<()>();

    /// Logs "a" and "b" as they arrive; on "a", sets a timer and asks the
    /// peer for "b".
    struct Orderer {
        order: Rc<RefCell<Vec<&'static str>>>,
        send_b: mpsc::Sender<()>,
    }
    impl Dispatcher for Orderer {
        fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
            for &byte in data {
                match byte {
                    b'a' => {
                        self.order.borrow_mut().push("a");
                        let order = self.order.clone();
                        ctx.reactor().call_later(Duration::from_millis(20), move |_| order.borrow_mut().push("timer"));
                        self.send_b.send(()).unwrap();
                    }
                    b'b' => self.order.borrow_mut().push("b"),
                    _ => panic!("unexpected byte {byte}"),
                }
            }
            data.len()
        }
    }
    let log = order.clone();
    reactor
        .listen(listener, move |r: &mut Reactor, stream, _| {
            r.add_stream(stream, Orderer { order: log.clone(), send_b: send_b.clone() }).unwrap();
        })
        .unwrap();
    // "a" waits in the kernel before the loop first polls; "b" is written
    // the moment the loop has read "a".
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.write_all(b"a").unwrap();
    let peer = std::thread::spawn(move || {
        b_wanted.recv_timeout(DEADLINE).expect("asked for b");
        client.write_all(b"b").unwrap();
        client // kept open until the test ends
    });
    run_until(&mut reactor, "a, the timer and b", |_| order.borrow().len() == 3);
    let _client = peer.join().unwrap();
    // Without the interval, "b" would be read within a millisecond, long
    // before the timer.
    assert_eq!(*order.borrow(), ["a", "timer", "b"]);
}

#[test]
fn an_idle_loop_with_an_interval_blocks_in_poll_and_sleeps_only_between_polls() {
    // Long enough that no step below can outlast it, however slow.
    let interval = Duration::from_secs(60);
    let mut reactor = with_interval(interval);
    let limit = Duration::from_millis(200);

    // With nothing to wait for, an iteration polls and blocks until the
    // caller's limit. Nothing came and no timer is due: no interval starts,
    // so the next iteration polls (and blocks) again.
    for turn in 1..=2 {
        let started = Instant::now();
        reactor.turn(Some(limit)).unwrap();
        assert!(started.elapsed() >= limit, "returned after {:?}", started.elapsed());
        let stats = reactor.stats().clone();
        assert_eq!((stats.polls, stats.poll_timeouts, stats.interval_sleeps), (turn, turn, 0));
    }

    // An event (a callback from another thread, through the waker) starts
    // an interval: the next iteration sleeps until the limit, with no poll.
    reactor.handle().add_callback(|_| {});
    reactor.turn(Some(limit)).unwrap();
    assert_eq!(reactor.stats().wakeups, 1);
    let started = Instant::now();
    reactor.turn(Some(limit)).unwrap();
    assert!(started.elapsed() >= limit, "returned after {:?}", started.elapsed());
    let stats = reactor.stats().clone();
    assert_eq!((stats.iterations, stats.polls, stats.interval_sleeps), (4, 3, 1));

    // A timer due inside the interval wakes the loop, without a poll. (Had
    // it slept until the end of the interval, this turn would take 60 s.)
    let fired = Rc::new(RefCell::new(false));
    let flag = fired.clone();
    reactor.call_later(Duration::from_millis(50), move |_| *flag.borrow_mut() = true);
    let started = Instant::now();
    reactor.turn(None).unwrap();
    assert!(*fired.borrow(), "the timer fired in the iteration that slept for it");
    assert!(started.elapsed() < interval / 2, "slept {:?} for a 50 ms timer", started.elapsed());
    let stats = reactor.stats().clone();
    assert_eq!((stats.iterations, stats.polls, stats.interval_sleeps), (5, 3, 2));

    // A zero limit inside the interval neither sleeps nor polls.
    reactor.turn(Some(Duration::ZERO)).unwrap();
    let stats = reactor.stats().clone();
    assert_eq!((stats.iterations, stats.polls, stats.interval_sleeps), (6, 3, 2));
}

#[test]
fn a_full_batch_of_events_is_followed_by_the_next_poll_at_once() {
    // One event per poll, and an interval longer than the test's deadline:
    // only the full-batch rule lets the loop get to the second event.
    let config =
        ReactorConfig { events_capacity: 1, min_poll_interval: Duration::from_secs(60), ..ReactorConfig::default() };
    let mut reactor = Reactor::with_config(config).unwrap();
    let (addr, received) = recording_server(&mut reactor);
    let mut clients: Vec<std::net::TcpStream> = (0..10).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    // One poll returns the listener's event (a full batch of one); all ten
    // are accepted from it, and their first reads find nothing yet.
    run_until(&mut reactor, "ten connections accepted", |r| r.stats().accepted == 10);
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(format!("client {i}\n").as_bytes()).unwrap();
    }
    // Each poll now returns one connection's event: full again.
    run_until(&mut reactor, "every client's line", |_| received.borrow().bytes.len() == 10 * "client 0\n".len());
    let text = String::from_utf8(received.borrow().bytes.clone()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    let mut expected: Vec<String> = (0..10).map(|i| format!("client {i}")).collect();
    expected.sort_unstable();
    assert_eq!(lines, expected);
    assert_eq!(reactor.stats().interval_sleeps, 0, "no poll waited for the interval");
}

#[test]
fn a_busy_connection_is_served_from_the_ready_list_between_polls() {
    // A read budget of 4 KiB keeps a 1 MiB transfer on the ready list for
    // hundreds of iterations. They read without polling: polling with a
    // zero timeout instead would cost a poll per 4 KiB.
    let interval = Duration::from_millis(200);
    let config = ReactorConfig {
        read_budget: 4096,
        scratch_size: 4096,
        min_poll_interval: interval,
        ..ReactorConfig::default()
    };
    let mut reactor = Reactor::with_config(config).unwrap();
    let (addr, received) = recording_server(&mut reactor);
    let expected: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let payload = expected.clone();
    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(&payload).unwrap();
    });
    run_until(&mut reactor, "the whole megabyte and the FIN", |_| received.borrow().eof);
    let elapsed = started.elapsed();
    sender.join().unwrap();
    assert!(received.borrow().bytes == expected, "every byte, in order");
    let stats = reactor.stats().clone();
    let allowed = most_polls_allowed(elapsed, interval);
    assert!(stats.polls <= allowed, "{} polls in {elapsed:?}; the interval allows {allowed}", stats.polls);
}

#[test]
fn a_stop_from_another_thread_still_arrives_between_polls() {
    let mut reactor = with_interval(Duration::from_secs(2));
    // A first poll that returns an event starts an interval: the next
    // iteration sleeps, not polls.
    reactor.handle().add_callback(|_| {});
    reactor.turn(Some(Duration::ZERO)).unwrap();
    let handle = reactor.handle();
    // Whether the stop comes before run() or while it sleeps, it waits in
    // the waker for the next poll: no timing matters.
    let stopper = std::thread::spawn(move || handle.stop());
    // If the stop were lost, only this would end the run.
    let watchdog = reactor.call_later(Duration::from_secs(30), |reactor| reactor.stop());
    reactor.run().unwrap();
    stopper.join().unwrap();
    assert!(reactor.remove_timeout(watchdog), "the watchdog ended the run: the stop was lost");
    let stats = reactor.stats();
    assert!(
        stats.wakeups >= 1 && stats.interval_sleeps >= 1,
        "the stop came through the waker after a sleep: {stats:?}"
    );
}

#[test]
fn an_idle_loop_with_sparse_timers_wakes_once_per_timer() {
    // Timers 200 ms apart, an interval of 50 ms: after each timer nothing is
    // due within the interval, so the loop waits in poll for the next timer
    // instead of also waking at the interval's end.
    let mut reactor = with_interval(Duration::from_millis(50));
    let runs = Rc::new(RefCell::new(0u32));
    let counter = runs.clone();
    reactor.add_periodic(Duration::from_millis(200), move |_| *counter.borrow_mut() += 1);
    run_until(&mut reactor, "five runs", |_| *runs.borrow() >= 5);
    let stats = reactor.stats();
    let wakeups = stats.polls + stats.interval_sleeps;
    // One wake-up per run; a millisecond of rounding may cost one more now and
    // then. Waking at each interval's end too would make it ten.
    assert!(wakeups <= 5 + 3, "{wakeups} wake-ups ({stats:?}) for five timer runs");
}

//! One room's life, as a sans-IO state machine: events in, actions out, the
//! time passed in. No socket, no clock read, no reactor: the monitor
//! (`driver.rs`) turns the actions into connects, timers and closes, and
//! feeds back what happened. Every transition is in this file, under the
//! rules table below, and `handle` matches in the table's order; the tests
//! at the end check the rules with a fake clock.
//!
//! A room starts `Stopped`, as if shut down: being added is what starts a
//! stopped room again, so a new room and a returning one go the same way.
//!
//! ```text
//!   Stopped ── added ──▶ Resolving ── id resolved, or the wait is over ──▶ Waiting
//!   Stopped ── added, look-ups off ───────────────────────────────────────▶ Waiting
//!
//!   Waiting ── the pacer's turn ──▶ Connecting ── connected ──▶ LoggingIn ── joined ──▶ Joined
//!                                       │                          │                     │
//!                                       │ closed, or its timer     │ closed              │ closed
//!                                       └──────────────────────────┴──────────┬──────────┘
//!                                                                      an attempt ends
//!                                                                             │
//!       Waiting ◀── delay 0 (an address untried) ─────────────────────────────┤
//!       Waiting ◀── timer ── BackingOff{until} ◀── delay > 0 ─────────────────┘
//!
//!   Connecting ───────── id changed (abort) ──────────▶ Waiting
//!   LoggingIn, Joined ── id changed (log out) ────────▶ Closing{Reconnect}
//!   Connecting, LoggingIn, Joined ── removed ─────────▶ Closing{Forget}
//!                                 ── shutdown ────────▶ Closing{Stop}
//!   Closing{Reconnect or Stop} ── removed ────────────▶ Closing{Forget}
//!   Closing{Reconnect} ── shutdown ───────────────────▶ Closing{Stop}
//!   Closing{Forget or Stop} ── added ─────────────────▶ Closing{Reconnect}
//!   Closing{then} ── closed ──▶ Waiting (Reconnect) | forgotten (Forget) | Stopped (Stop)
//!   Resolving, Waiting, BackingOff, Stopped ── removed ──▶ forgotten
//!   Resolving, Waiting, BackingOff ── shutdown ──▶ Stopped
//! ```
//!
//! # Rules
//!
//! | state | event | next state | actions |
//! |---|---|---|---|
//! | Stopped | added, look-ups on | Resolving | look up its id; timer at the end of the wait |
//! | Stopped | added, look-ups off | Waiting (queued) | queue for the pacer |
//! | Resolving | id resolved | Waiting (queued) | cancel the timer; queue for the pacer |
//! | Resolving, Connecting, BackingOff | timer, before the state's deadline | (unchanged) | timer at the deadline again |
//! | Resolving | timer (the wait is over) | Waiting (queued) | say it joins as written; queue for the pacer |
//! | Waiting | the pacer's turn, no addresses yet | Waiting (not queued) | — |
//! | Waiting | the pacer's turn | Connecting | connect to the next address; timer at the connect deadline |
//! | Waiting (not queued) | addresses changed | Waiting (queued) | queue for the pacer |
//! | Connecting | connected | LoggingIn | cancel the timer |
//! | Connecting | timer (the connect deadline) | *after an attempt*, the reason saying how far it opened | abort |
//! | Connecting | closed | *after an attempt* | cancel the timer |
//! | LoggingIn | joined | Joined | read the live status; say through which server |
//! | LoggingIn, Joined | closed | *after an attempt* | — |
//! | BackingOff | timer (the delay is over) | Waiting (queued) | queue for the pacer |
//! | Connecting | id changed | Waiting (queued) | cancel the timer, abort; queue for the pacer |
//! | LoggingIn, Joined | id changed | Closing(Reconnect) | log out |
//! | Connecting | removed / shutdown | Closing(Forget / Stop) | cancel the timer, abort |
//! | LoggingIn, Joined | removed / shutdown | Closing(Forget / Stop) | log out |
//! | Closing(Reconnect or Stop) | removed | Closing(Forget) | — |
//! | Closing(Reconnect) | shutdown | Closing(Stop) | — |
//! | Closing(Forget or Stop) | added | Closing(Reconnect) | — |
//! | Closing | closed | as `then` says: Waiting (queued) / forgotten / Stopped | queue for the pacer / forget / — |
//! | Resolving, Waiting, BackingOff | removed | forgotten | cancel the timer, forget |
//! | Stopped | removed | forgotten | forget |
//! | Resolving, Waiting, BackingOff | shutdown | Stopped | cancel the timer |
//! | any | anything else | (unchanged) | — |
//!
//! The last row takes what is stale or says nothing new: an older
//! attempt's events (every connection event carries the number of its
//! attempt, as reactor events carry a generation), a timer or a pacer's
//! turn left over, added while already there.
//!
//! Once the monitor stops, the driver queues no room to connect and adds
//! none: a room that would connect again waits in Waiting until the
//! shutdown stops it.
//!
//! *After an attempt* (the actions say so with `Retry`), the attempt
//! **failed** if it never joined, or if it died within
//! [`Timing::failure_window`] (5 s) of connecting: a server that drops every
//! room right after the join must not be hammered. A room that stayed
//! joined for [`Timing::healthy_after`] (30 s) resets the backoff (a
//! connection stuck logging in as long, with a raised login timeout,
//! does not). A failed attempt
//! tries the next address at once while some are untried (every resolved
//! address of every server, in turn); otherwise the room backs off: a
//! random delay up to 1 s, doubling to 60 s ([`Backoff`]), and the last
//! failed address asks for the names to be resolved again. Error 204 (a
//! wrong room id) will not fix itself: it waits the longest delay. A delay
//! of zero (an untried address, or a backoff that drew 0) goes straight to
//! Waiting; any other to BackingOff until it is over.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use super::backoff::Backoff;
use crate::douyu;
use crate::rng::Rng;

/// Where a room is. States carry their own data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Waiting for its real id to be looked up (vanity numbers join
    /// nothing), at most until `until`; then it joins with what it has.
    Resolving { until: Instant },
    /// Wants to connect: waiting for the pacer (`queued`: a turn was
    /// asked for), or for addresses. The flag lives here, not beside the
    /// state, so leaving Waiting forgets it: a room stopped while queued
    /// and added again is queued again (the old entry only gives an early
    /// turn).
    Waiting { queued: bool },
    /// Attempt `attempt` to address number `address` is under way; it must
    /// be connected by `deadline`.
    Connecting { attempt: u64, address: usize, deadline: Instant },
    /// Connected at `since`; the session is logging in.
    LoggingIn { attempt: u64, address: usize, since: Instant },
    /// Logged in and joined; messages flow (connected at `since`).
    Joined { attempt: u64, address: usize, since: Instant },
    /// Waiting out a backoff until `until`.
    BackingOff { until: Instant },
    /// Leaving: the connection logs out and closes, then `then`.
    Closing { attempt: u64, then: Then },
    /// Shut down, or not added yet; listed, not coming back unless added
    /// (again).
    Stopped,
}

/// What follows a close the monitor asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// Connect again (added back while closing, or the room id changed).
    Reconnect,
    /// The room was removed: forget it.
    Forget,
    /// Shutting down: keep the room, listed as stopped.
    Stop,
}

/// Something that happened to the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Added,
    Removed,
    Shutdown,
    /// The first look-up of the room's id answered (whatever it said).
    IdResolved,
    /// The room's real id became known and differs from the one in use.
    IdChanged,
    /// The server addresses changed (`Env::addresses` has the new count).
    AddressesChanged,
    /// The pacer lets this room connect now.
    PacerTurn,
    Connected {
        attempt: u64,
    },
    Joined {
        attempt: u64,
    },
    Closed {
        attempt: u64,
        reason: CloseReason,
    },
    /// The room's timer fired. The reactor's wheel never fires early, but
    /// the rules do not lean on that: a timer before the state's deadline
    /// is set again for it (and one left over in a state without a
    /// deadline changes nothing).
    Timer,
}

/// What the monitor should do for the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Look up the room's real id (the answer comes as `IdResolved`).
    LookUp,
    /// Put the room on the pacer's queue.
    QueueConnect,
    /// Open attempt `attempt` to address number `address`.
    Connect {
        attempt: u64,
        address: usize,
    },
    /// Fire `Event::Timer` at this instant (replacing the room's timer).
    SetTimer(Instant),
    CancelTimer,
    /// Log out (if the session got that far) and close the connection.
    LogOut {
        attempt: u64,
    },
    /// Close the connection at once.
    Abort {
        attempt: u64,
    },
    /// Drop the room: it was removed and has no connection left.
    Forget,
    /// An attempt ended and the room will try again after `delay`.
    Retry {
        reason: CloseReason,
        delay: Duration,
    },
    /// Every address failed in a row: worth resolving the names again.
    AddressesExhausted,
    /// Say that the room joins with its id as written: the look-up did
    /// not answer within its wait (a vanity number joined so receives
    /// nothing).
    JoinAsWritten,
    /// Read the room's live status now: Douyu pushes changes only to
    /// connected rooms, so one may have been missed.
    CheckStatus,
    /// Say through which server the room joined (not the first one tells
    /// of a blocked port or a server down).
    SayJoined,
}

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The session ended it: a server error (with its code), a wrong room
    /// id, no login response, nothing received for too long, bytes that
    /// are not Douyu packets, or our own logout.
    Session(douyu::CloseReason),
    /// The connection was not established within the connect timeout; it
    /// had got this far.
    ConnectTimeout(Opening),
    /// The server closed its side.
    ServerClosed,
    /// A socket error (a TLS failure too): its kind, and the system's (or
    /// OpenSSL's) words for it.
    Io { kind: io::ErrorKind, message: String },
    /// The WebSocket handshake failed, or the server broke the protocol
    /// or closed the WebSocket.
    WebSocket(crate::websocket::CloseReason),
}

impl CloseReason {
    pub(crate) fn io(error: &io::Error) -> Self {
        CloseReason::Io { kind: error.kind(), message: error.to_string() }
    }

    /// A wrong room id: connecting again soon will not help.
    fn is_bad_room_id(&self) -> bool {
        matches!(self, CloseReason::Session(douyu::CloseReason::BadRoomId))
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Session(reason) => write!(f, "{reason}"),
            CloseReason::ConnectTimeout(Opening::Connect) => write!(f, "connect timed out"),
            CloseReason::ConnectTimeout(Opening::Tls) => write!(f, "connect timed out in the TLS handshake"),
            CloseReason::ConnectTimeout(Opening::WebSocket) => {
                write!(f, "connect timed out in the WebSocket handshake")
            }
            CloseReason::ServerClosed => write!(f, "server closed the connection"),
            CloseReason::Io { message, .. } => write!(f, "{message}"),
            CloseReason::WebSocket(reason) => write!(f, "WebSocket {reason}"),
        }
    }
}

/// How far a connection still opening has got: a black-holed port, a TLS
/// server that stopped answering and a WebSocket server that never
/// finished its `101` call for different fixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    /// The TCP connect is under way.
    Connect,
    /// Connected; the TLS handshake is under way.
    Tls,
    /// Connected (TLS too, if any); the WebSocket upgrade is under way.
    WebSocket,
}

/// The durations the rules use (from `MonitorConfig`), shared by all rooms.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) connect_timeout: Duration,
    /// A joined connection that lived this long resets the backoff.
    pub(crate) healthy_after: Duration,
    /// A connection that ends sooner than this after connecting failed.
    pub(crate) failure_window: Duration,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_cap: Duration,
    /// How long a room waits for its id to be looked up before joining with
    /// the id as written (`None`: ids are not looked up).
    pub(crate) look_up_wait: Option<Duration>,
}

/// What an event is handled with besides the room's own state.
pub(crate) struct Env<'a> {
    pub(crate) now: Instant,
    /// Server addresses known now (0 until names resolve).
    pub(crate) addresses: usize,
    /// How far the room's connection has opened, while it is connecting
    /// (the reactor knows; the life cycle needs it only for a timeout's reason).
    pub(crate) opening: Opening,
    pub(crate) timing: &'a Timing,
    /// For the backoff's jitter.
    pub(crate) rng: &'a mut Rng,
}

/// One room's life.
#[derive(Clone, Debug)]
pub(crate) struct Lifecycle {
    state: State,
    /// The number of the latest attempt; events of earlier ones are stale.
    attempt: u64,
    backoff: Backoff,
    /// Which address the next attempt tries (modulo the count).
    next_address: usize,
    /// Attempts that failed in a row since the last success or backoff.
    failed_addresses: usize,
    /// Attempts that ended and were tried again.
    reconnects: u64,
}

impl Lifecycle {
    /// A room not yet added (`Stopped`); send it [`Event::Added`].
    pub(crate) fn new(timing: &Timing) -> Self {
        Lifecycle {
            state: State::Stopped,
            attempt: 0,
            backoff: Backoff::with_limits(timing.backoff_base, timing.backoff_cap),
            next_address: 0,
            failed_addresses: 0,
            reconnects: 0,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Waiting for the pacer: a queue entry of the room is not stale.
    pub(crate) fn waits_for_turn(&self) -> bool {
        self.state == State::Waiting { queued: true }
    }

    /// Handles one event, appending what to do to `actions`: the rules
    /// table, row by row.
    pub(crate) fn handle(&mut self, event: Event, env: &mut Env<'_>, actions: &mut Vec<Action>) {
        use State::*;
        match (self.state, event) {
            (Stopped, Event::Added) => match env.timing.look_up_wait {
                Some(wait) => {
                    let until = env.now + wait;
                    self.state = Resolving { until };
                    actions.push(Action::LookUp);
                    actions.push(Action::SetTimer(until));
                }
                None => self.wait(actions),
            },
            (Resolving { .. }, Event::IdResolved) => {
                actions.push(Action::CancelTimer);
                self.wait(actions);
            }
            (Resolving { until: at } | Connecting { deadline: at, .. } | BackingOff { until: at }, Event::Timer)
                if env.now < at =>
            {
                actions.push(Action::SetTimer(at));
            }
            (Resolving { .. }, Event::Timer) => {
                actions.push(Action::JoinAsWritten);
                self.wait(actions);
            }
            (Waiting { .. }, Event::PacerTurn) if env.addresses == 0 => {
                self.state = Waiting { queued: false }; // queued again when addresses come
            }
            (Waiting { .. }, Event::PacerTurn) => {
                self.attempt += 1;
                let address = self.next_address % env.addresses;
                let deadline = env.now + env.timing.connect_timeout;
                self.state = Connecting { attempt: self.attempt, address, deadline };
                actions.push(Action::Connect { attempt: self.attempt, address });
                actions.push(Action::SetTimer(deadline));
            }
            (Waiting { queued: false }, Event::AddressesChanged) => self.wait(actions),
            (Connecting { attempt, address, .. }, Event::Connected { attempt: a }) if a == attempt => {
                self.state = LoggingIn { attempt, address, since: env.now };
                actions.push(Action::CancelTimer);
            }
            (Connecting { attempt, .. }, Event::Timer) => {
                actions.push(Action::Abort { attempt });
                self.attempt_ended(CloseReason::ConnectTimeout(env.opening), Reached::NotJoined, env, actions);
            }
            (Connecting { attempt, .. }, Event::Closed { attempt: a, reason }) if a == attempt => {
                actions.push(Action::CancelTimer);
                self.attempt_ended(reason, Reached::NotJoined, env, actions);
            }
            (LoggingIn { attempt, address, since }, Event::Joined { attempt: a }) if a == attempt => {
                self.state = Joined { attempt, address, since };
                actions.push(Action::CheckStatus);
                actions.push(Action::SayJoined);
            }
            (LoggingIn { attempt, .. }, Event::Closed { attempt: a, reason }) if a == attempt => {
                self.attempt_ended(reason, Reached::NotJoined, env, actions);
            }
            (Joined { attempt, since, .. }, Event::Closed { attempt: a, reason }) if a == attempt => {
                self.attempt_ended(reason, Reached::Joined { since }, env, actions);
            }
            (BackingOff { .. }, Event::Timer) => self.wait(actions),
            (Connecting { attempt, .. }, Event::IdChanged) => {
                actions.push(Action::CancelTimer);
                actions.push(Action::Abort { attempt });
                self.wait(actions);
            }
            (LoggingIn { attempt, .. } | Joined { attempt, .. }, Event::IdChanged) => {
                self.state = Closing { attempt, then: Then::Reconnect };
                actions.push(Action::LogOut { attempt });
            }
            (Connecting { attempt, .. }, event @ (Event::Removed | Event::Shutdown)) => {
                self.state = Closing { attempt, then: leaving(&event) };
                actions.push(Action::CancelTimer);
                actions.push(Action::Abort { attempt });
            }
            (LoggingIn { attempt, .. } | Joined { attempt, .. }, event @ (Event::Removed | Event::Shutdown)) => {
                self.state = Closing { attempt, then: leaving(&event) };
                actions.push(Action::LogOut { attempt });
            }
            // A removal overrides what was to follow the close; a shutdown
            // only a reconnect (a removed room stays removed).
            (Closing { attempt, then: Then::Reconnect | Then::Stop }, Event::Removed) => {
                self.state = Closing { attempt, then: Then::Forget };
            }
            (Closing { attempt, then: Then::Reconnect }, Event::Shutdown) => {
                self.state = Closing { attempt, then: Then::Stop };
            }
            (Closing { attempt, then: Then::Forget | Then::Stop }, Event::Added) => {
                // One connection at a time: the new life starts once the old
                // connection has closed.
                self.state = Closing { attempt, then: Then::Reconnect };
            }
            (Closing { attempt, then }, Event::Closed { attempt: a, .. }) if a == attempt => match then {
                Then::Reconnect => self.wait(actions),
                Then::Forget => actions.push(Action::Forget),
                Then::Stop => self.state = Stopped,
            },
            (Resolving { .. } | Waiting { .. } | BackingOff { .. }, Event::Removed) => {
                actions.push(Action::CancelTimer);
                actions.push(Action::Forget);
            }
            (Stopped, Event::Removed) => actions.push(Action::Forget),
            (Resolving { .. } | Waiting { .. } | BackingOff { .. }, Event::Shutdown) => {
                self.state = Stopped;
                actions.push(Action::CancelTimer);
            }
            // Stale, or nothing new (see the module documentation).
            _ => {}
        }
    }

    /// Waiting, and on the pacer's queue.
    fn wait(&mut self, actions: &mut Vec<Action>) {
        self.state = State::Waiting { queued: true };
        actions.push(Action::QueueConnect);
    }

    /// The current attempt ended: when and where to try again (see the
    /// module documentation).
    fn attempt_ended(&mut self, reason: CloseReason, reached: Reached, env: &mut Env<'_>, actions: &mut Vec<Action>) {
        self.reconnects += 1;
        self.next_address += 1;
        let (joined, lived) = match reached {
            Reached::NotJoined => (false, Duration::ZERO),
            Reached::Joined { since } => (true, env.now.saturating_duration_since(since)),
        };
        if lived >= env.timing.healthy_after {
            self.backoff.reset();
        }
        let failed = !joined || lived < env.timing.failure_window;
        if !failed {
            self.failed_addresses = 0;
        }
        let delay = if reason.is_bad_room_id() {
            // Wrong on every server: no failover, and the longest delay there is.
            self.failed_addresses = 0;
            env.timing.backoff_cap
        } else if failed && self.failed_addresses + 1 < env.addresses.max(1) {
            self.failed_addresses += 1;
            Duration::ZERO
        } else {
            if failed {
                actions.push(Action::AddressesExhausted);
            }
            self.failed_addresses = 0;
            self.backoff.next_delay(env.rng.next_f64())
        };
        actions.push(Action::Retry { reason, delay });
        if delay.is_zero() {
            self.wait(actions);
        } else {
            let until = env.now + delay;
            self.state = State::BackingOff { until };
            actions.push(Action::SetTimer(until));
        }
    }
}

/// How far an attempt got before it ended: what tells a failure.
#[derive(Clone, Copy, Debug)]
enum Reached {
    /// It never joined: refused, timed out, or stuck logging in, however
    /// long (only a joined room was healthy).
    NotJoined,
    /// It connected at `since` and joined.
    Joined { since: Instant },
}

/// Where a removal or a shutdown leads once the connection has closed.
fn leaving(event: &Event) -> Then {
    if *event == Event::Removed { Then::Forget } else { Then::Stop }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        connect_timeout: Duration::from_secs(5),
        healthy_after: Duration::from_secs(30),
        failure_window: Duration::from_secs(5),
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(60),
        look_up_wait: None,
    };

    /// A room and a fake clock; `addresses` server addresses.
    struct Room {
        life: Lifecycle,
        now: Instant,
        addresses: usize,
        /// How far the connection under way has opened, as the reactor would say.
        opening: Opening,
        rng: Rng,
    }

    impl Room {
        fn new(addresses: usize) -> Room {
            let (now, opening) = (Instant::now(), Opening::Connect);
            Room { life: Lifecycle::new(&TIMING), now, addresses, opening, rng: Rng::new(7) }
        }

        fn on(&mut self, event: Event) -> Vec<Action> {
            let mut actions = Vec::new();
            let mut env = Env {
                now: self.now,
                addresses: self.addresses,
                opening: self.opening,
                timing: &TIMING,
                rng: &mut self.rng,
            };
            self.life.handle(event, &mut env, &mut actions);
            actions
        }

        fn pass(&mut self, time: Duration) {
            self.now += time;
        }

        fn attempt(&self) -> u64 {
            self.life.attempt
        }

        /// Added, connected and joined; returns the attempt.
        fn joined(&mut self) -> u64 {
            self.on(Event::Added);
            self.on(Event::PacerTurn);
            let attempt = self.attempt();
            self.on(Event::Connected { attempt });
            self.on(Event::Joined { attempt });
            attempt
        }

        /// The current attempt closes with `reason`; returns the retry delay.
        fn closes(&mut self, reason: CloseReason) -> Duration {
            let actions = self.on(Event::Closed { attempt: self.attempt(), reason });
            actions
                .iter()
                .find_map(|a| match a {
                    Action::Retry { delay, .. } => Some(*delay),
                    _ => None,
                })
                .expect("a retry")
        }
    }

    fn io_error() -> CloseReason {
        CloseReason::io(&io::Error::from(io::ErrorKind::ConnectionRefused))
    }

    #[test]
    fn an_added_room_waits_for_the_pacer_then_connects_with_a_deadline() {
        let mut room = Room::new(1);
        assert_eq!(room.on(Event::Added), [Action::QueueConnect]);
        let actions = room.on(Event::PacerTurn);
        let deadline = room.now + TIMING.connect_timeout;
        assert_eq!(actions, [Action::Connect { attempt: 1, address: 0 }, Action::SetTimer(deadline)]);
        assert_eq!(room.on(Event::Connected { attempt: 1 }), [Action::CancelTimer]);
        assert!(matches!(room.life.state(), State::LoggingIn { attempt: 1, .. }));
        assert_eq!(room.on(Event::Joined { attempt: 1 }), [Action::CheckStatus, Action::SayJoined]);
        assert!(matches!(room.life.state(), State::Joined { attempt: 1, .. }));
    }

    #[test]
    fn without_addresses_a_room_waits_until_they_come() {
        let mut room = Room::new(0);
        room.on(Event::Added);
        assert_eq!(room.on(Event::PacerTurn), [], "nothing to connect to yet");
        assert_eq!(room.life.state(), State::Waiting { queued: false });
        room.addresses = 2;
        assert_eq!(room.on(Event::AddressesChanged), [Action::QueueConnect]);
        assert_eq!(room.on(Event::AddressesChanged), [], "queued once");
    }

    #[test]
    fn failover_tries_every_address_before_backing_off() {
        let mut room = Room::new(3);
        room.on(Event::Added);
        let mut tried = Vec::new();
        for _ in 0..3 {
            let actions = room.on(Event::PacerTurn);
            let Some(Action::Connect { address, .. }) = actions.first() else { panic!("{actions:?}") };
            tried.push(*address);
            room.closes(io_error());
        }
        assert_eq!(tried, [0, 1, 2], "each address once");
        assert!(matches!(room.life.state(), State::BackingOff { .. }), "then a backoff: {:?}", room.life.state());
    }

    #[test]
    fn the_last_failed_address_asks_for_the_names_to_be_resolved_again() {
        let mut room = Room::new(2);
        room.on(Event::Added);
        room.on(Event::PacerTurn);
        assert!(!room.on(Event::Closed { attempt: 1, reason: io_error() }).contains(&Action::AddressesExhausted));
        room.on(Event::PacerTurn);
        assert!(room.on(Event::Closed { attempt: 2, reason: io_error() }).contains(&Action::AddressesExhausted));
    }

    #[test]
    fn backoff_delays_stay_within_their_jitter_bounds_and_cap_at_60_s() {
        let mut room = Room::new(1);
        room.on(Event::Added);
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            room.on(Event::PacerTurn);
            let ceiling = room.life.backoff.ceiling();
            let delay = room.closes(io_error());
            assert!(delay <= ceiling, "{delay:?} above its ceiling {ceiling:?}");
            ceilings.push(ceiling.as_secs());
            room.pass(delay);
            assert_eq!(room.on(Event::Timer), [Action::QueueConnect], "waits out the delay, then the pacer");
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60]);
    }

    #[test]
    fn a_timer_before_the_backoff_ends_is_set_again_for_its_end() {
        let mut room = Room::new(1);
        room.joined();
        // A wrong room id waits the longest delay, without jitter.
        let delay = room.closes(CloseReason::Session(douyu::CloseReason::BadRoomId));
        let until = room.now + delay;
        room.pass(delay / 2);
        assert_eq!(room.on(Event::Timer), [Action::SetTimer(until)], "early: not lost, set again");
        assert!(matches!(room.life.state(), State::BackingOff { .. }));
        room.pass(delay / 2);
        assert_eq!(room.on(Event::Timer), [Action::QueueConnect]);
    }

    #[test]
    fn a_connection_that_dies_within_5_s_of_joining_counts_as_a_failure() {
        let mut room = Room::new(1);
        room.joined();
        room.pass(Duration::from_secs(4));
        room.closes(CloseReason::ServerClosed);
        assert_eq!(room.life.backoff.failures(), 1, "a failure, though it joined");
        room.pass(Duration::from_secs(60));
        room.on(Event::Timer);
        let attempt = {
            room.on(Event::PacerTurn);
            room.attempt()
        };
        room.on(Event::Connected { attempt });
        room.on(Event::Joined { attempt });
        room.pass(Duration::from_secs(6));
        room.closes(CloseReason::ServerClosed);
        assert_eq!(room.life.backoff.failures(), 2, "6 s is not healthy yet (no reset before 30 s)");
    }

    impl Room {
        /// A room on one address whose first four attempts failed at once.
        fn failed_four_times() -> Room {
            let mut room = Room::new(1);
            room.on(Event::Added);
            for _ in 0..4 {
                room.on(Event::PacerTurn);
                let delay = room.closes(io_error());
                room.pass(delay);
                room.on(Event::Timer);
            }
            room
        }
    }

    #[test]
    fn thirty_seconds_of_health_resets_the_backoff() {
        let mut room = Room::failed_four_times();
        assert_eq!(room.life.backoff.failures(), 4);
        room.on(Event::PacerTurn);
        let attempt = room.attempt();
        room.on(Event::Connected { attempt });
        room.on(Event::Joined { attempt });
        room.pass(Duration::from_secs(30));
        let delay = room.closes(CloseReason::ServerClosed);
        assert!(delay <= Duration::from_secs(1), "from the start again: {delay:?}");
        assert_eq!(room.life.backoff.failures(), 1);
    }

    #[test]
    fn thirty_seconds_of_logging_in_is_no_health() {
        let mut room = Room::failed_four_times();
        room.on(Event::PacerTurn);
        let attempt = room.attempt();
        room.on(Event::Connected { attempt });
        room.pass(Duration::from_secs(40));
        room.closes(CloseReason::Session(douyu::CloseReason::LoginTimeout));
        assert_eq!(room.life.backoff.failures(), 5, "connected but never joined: still failing");
    }

    #[test]
    fn a_wrong_room_id_retries_rarely() {
        let mut room = Room::new(2);
        room.joined();
        let delay = room.closes(CloseReason::Session(douyu::CloseReason::BadRoomId));
        assert_eq!(delay, TIMING.backoff_cap, "no failover to the next address, the longest wait");
    }

    #[test]
    fn a_connect_timeout_aborts_and_moves_to_the_next_address() {
        let mut room = Room::new(2);
        room.on(Event::Added);
        room.on(Event::PacerTurn);
        let deadline = room.now + TIMING.connect_timeout;
        room.pass(Duration::from_secs(1));
        assert_eq!(room.on(Event::Timer), [Action::SetTimer(deadline)], "not yet: set again");
        room.pass(TIMING.connect_timeout);
        let actions = room.on(Event::Timer);
        assert_eq!(actions[0], Action::Abort { attempt: 1 });
        let timed_out = CloseReason::ConnectTimeout(Opening::Connect);
        assert!(actions.contains(&Action::Retry { reason: timed_out, delay: Duration::ZERO }));
        assert!(actions.contains(&Action::QueueConnect));
        // The aborted connection's close comes later: stale.
        assert_eq!(room.on(Event::Closed { attempt: 1, reason: io_error() }), []);
        let actions = room.on(Event::PacerTurn);
        assert_eq!(actions[0], Action::Connect { attempt: 2, address: 1 });
    }

    #[test]
    fn a_connect_timeout_says_how_far_the_connection_got() {
        let mut said = Vec::new();
        for opening in [Opening::Connect, Opening::Tls, Opening::WebSocket] {
            let mut room = Room::new(1);
            room.on(Event::Added);
            room.on(Event::PacerTurn);
            room.opening = opening;
            room.pass(TIMING.connect_timeout);
            let actions = room.on(Event::Timer);
            let Some(Action::Retry { reason, .. }) = actions.iter().find(|a| matches!(a, Action::Retry { .. })) else {
                panic!("{actions:?}")
            };
            assert_eq!(*reason, CloseReason::ConnectTimeout(opening));
            said.push(reason.to_string());
        }
        assert_eq!(
            said,
            [
                "connect timed out",
                "connect timed out in the TLS handshake",
                "connect timed out in the WebSocket handshake"
            ]
        );
    }

    #[test]
    fn events_of_an_older_attempt_are_stale() {
        let mut room = Room::new(1);
        room.joined();
        assert_eq!(room.on(Event::Closed { attempt: 0, reason: CloseReason::ServerClosed }), []);
        assert_eq!(room.on(Event::Joined { attempt: 7 }), []);
        assert!(matches!(room.life.state(), State::Joined { attempt: 1, .. }));
    }

    #[test]
    fn removed_while_connecting_aborts_and_is_forgotten_once_closed() {
        let mut room = Room::new(1);
        room.on(Event::Added);
        room.on(Event::PacerTurn);
        assert_eq!(room.on(Event::Removed), [Action::CancelTimer, Action::Abort { attempt: 1 }]);
        assert_eq!(room.on(Event::Closed { attempt: 1, reason: io_error() }), [Action::Forget]);
    }

    #[test]
    fn removed_while_logging_in_logs_out_and_is_forgotten_once_closed() {
        let mut room = Room::new(1);
        room.on(Event::Added);
        room.on(Event::PacerTurn);
        room.on(Event::Connected { attempt: 1 });
        assert_eq!(room.on(Event::Removed), [Action::LogOut { attempt: 1 }]);
        let shut_down = CloseReason::Session(douyu::CloseReason::Shutdown);
        assert_eq!(room.on(Event::Closed { attempt: 1, reason: shut_down }), [Action::Forget]);
    }

    #[test]
    fn removed_while_closing_is_forgotten_once_closed() {
        let mut room = Room::new(1);
        let attempt = room.joined();
        room.on(Event::IdChanged);
        assert_eq!(room.on(Event::Removed), [], "already closing");
        assert_eq!(room.on(Event::Closed { attempt, reason: CloseReason::ServerClosed }), [Action::Forget]);
    }

    #[test]
    fn removed_while_waiting_or_backing_off_is_forgotten_at_once() {
        let mut room = Room::new(1);
        room.on(Event::Added);
        assert_eq!(room.on(Event::Removed), [Action::CancelTimer, Action::Forget]);
        let mut room = Room::new(1);
        room.on(Event::Added);
        room.on(Event::PacerTurn);
        room.closes(io_error());
        assert_eq!(room.on(Event::Removed), [Action::CancelTimer, Action::Forget]);
    }

    #[test]
    fn a_removed_room_stays_removed_when_a_shutdown_comes_while_it_closes() {
        let shut_down = CloseReason::Session(douyu::CloseReason::Shutdown);
        let mut room = Room::new(1);
        let attempt = room.joined();
        room.on(Event::Removed);
        assert_eq!(room.on(Event::Shutdown), []);
        assert_eq!(
            room.on(Event::Closed { attempt, reason: shut_down.clone() }),
            [Action::Forget],
            "not listed as stopped"
        );
        // A removal wins over a shutdown the other way round too.
        let mut room = Room::new(1);
        let attempt = room.joined();
        room.on(Event::Shutdown);
        room.on(Event::Removed);
        assert_eq!(room.on(Event::Closed { attempt, reason: shut_down }), [Action::Forget]);
    }

    #[test]
    fn added_again_while_closing_gives_exactly_one_connection() {
        let mut room = Room::new(1);
        let attempt = room.joined();
        room.on(Event::Removed);
        assert_eq!(room.on(Event::Added), [], "no second connection while the first closes");
        assert_eq!(room.on(Event::PacerTurn), [], "not even when the pacer comes");
        let shut_down = CloseReason::Session(douyu::CloseReason::Shutdown);
        assert_eq!(room.on(Event::Closed { attempt, reason: shut_down }), [Action::QueueConnect]);
        assert_eq!(room.on(Event::PacerTurn)[0], Action::Connect { attempt: attempt + 1, address: 0 });
    }

    #[test]
    fn a_room_stopped_while_queued_and_added_again_connects() {
        // Stopped (as the second name of a room already watched) while on
        // the pacer's queue, then added again by a reload.
        let mut room = Room::new(1);
        assert_eq!(room.on(Event::Added), [Action::QueueConnect]);
        room.on(Event::Shutdown);
        assert_eq!(room.on(Event::Added), [Action::QueueConnect], "queued again");
        // The old queue entry comes first: an early turn, nothing worse.
        assert_eq!(room.on(Event::PacerTurn)[0], Action::Connect { attempt: 1, address: 0 });
        assert_eq!(room.on(Event::PacerTurn), [], "the new entry finds it connecting");
    }

    #[test]
    fn a_changed_room_id_logs_out_and_connects_again() {
        let mut room = Room::new(1);
        let attempt = room.joined();
        assert_eq!(room.on(Event::IdChanged), [Action::LogOut { attempt }]);
        assert_eq!(room.on(Event::Closed { attempt, reason: CloseReason::ServerClosed }), [Action::QueueConnect]);
        assert_eq!(room.life.reconnects(), 0, "a close we asked for is not a failure");
    }

    #[test]
    fn with_look_ups_a_room_waits_for_its_id_then_joins_whatever_the_answer() {
        let timing = Timing { look_up_wait: Some(Duration::from_secs(5)), ..TIMING };
        let (mut rng, now) = (Rng::new(1), Instant::now());
        let mut life = Lifecycle::new(&timing);
        let mut handle = |life: &mut Lifecycle, event: Event, now: Instant| {
            let mut actions = Vec::new();
            let opening = Opening::Connect;
            life.handle(event, &mut Env { now, addresses: 1, opening, timing: &timing, rng: &mut rng }, &mut actions);
            actions
        };
        let until = now + Duration::from_secs(5);
        assert_eq!(handle(&mut life, Event::Added, now), [Action::LookUp, Action::SetTimer(until)]);
        assert_eq!(handle(&mut life, Event::PacerTurn, now), [], "no connect before the id is known");
        assert_eq!(handle(&mut life, Event::IdResolved, now), [Action::CancelTimer, Action::QueueConnect]);
        // Or the look-up takes too long: the room joins with the id as written.
        let mut slow = Lifecycle::new(&timing);
        handle(&mut slow, Event::Added, now);
        let early = now + Duration::from_secs(1);
        assert_eq!(handle(&mut slow, Event::Timer, early), [Action::SetTimer(until)], "not yet: set again");
        assert_eq!(handle(&mut slow, Event::Timer, until), [Action::JoinAsWritten, Action::QueueConnect]);
        assert_eq!(handle(&mut slow, Event::IdResolved, until), [], "a late answer changes nothing here");
    }

    #[test]
    fn a_changed_id_while_connecting_starts_over_at_once() {
        let mut room = Room::new(1);
        room.on(Event::Added);
        room.on(Event::PacerTurn);
        let actions = room.on(Event::IdChanged);
        assert_eq!(actions, [Action::CancelTimer, Action::Abort { attempt: 1 }, Action::QueueConnect]);
        assert_eq!(room.life.reconnects(), 0);
    }

    #[test]
    fn shutdown_from_every_state_ends_stopped_with_a_logout_where_a_session_was_up() {
        let shut_down = || CloseReason::Session(douyu::CloseReason::Shutdown);
        // (state reached, whether a logout is asked for)
        let mut cases: Vec<(&str, Room, bool)> = Vec::new();
        let mut waiting = Room::new(1);
        waiting.on(Event::Added);
        cases.push(("waiting", waiting, false));
        let mut connecting = Room::new(1);
        connecting.on(Event::Added);
        connecting.on(Event::PacerTurn);
        cases.push(("connecting", connecting, false));
        let mut logging_in = Room::new(1);
        logging_in.on(Event::Added);
        logging_in.on(Event::PacerTurn);
        logging_in.on(Event::Connected { attempt: 1 });
        cases.push(("logging in", logging_in, true));
        let mut joined = Room::new(1);
        joined.joined();
        cases.push(("joined", joined, true));
        let mut backing_off = Room::new(1);
        backing_off.on(Event::Added);
        backing_off.on(Event::PacerTurn);
        backing_off.closes(io_error());
        cases.push(("backing off", backing_off, false));
        let mut closing = Room::new(1);
        closing.joined();
        closing.on(Event::IdChanged);
        cases.push(("closing", closing, false));
        let mut stopped = Room::new(1);
        stopped.joined();
        stopped.on(Event::Shutdown);
        stopped.on(Event::Closed { attempt: 1, reason: shut_down() });
        cases.push(("stopped", stopped, false));

        for (name, mut room, logs_out) in cases {
            let actions = room.on(Event::Shutdown);
            assert_eq!(actions.contains(&Action::LogOut { attempt: room.attempt() }), logs_out, "{name}: {actions:?}");
            // Whatever connection there was closes, and the room stops.
            room.on(Event::Closed { attempt: room.attempt(), reason: shut_down() });
            assert_eq!(room.life.state(), State::Stopped, "{name}");
            assert_eq!(room.on(Event::PacerTurn), [], "{name}: no reconnect after the shutdown");
        }
    }
}

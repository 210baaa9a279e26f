//! The answers: which request gets which, and the two pages, `/metrics` in
//! Prometheus's text format and `/rooms` as JSON.

use std::fmt::Write as _;
use std::time::Instant;

use crate::douyu::LiveStatus;
use crate::http::server::{RequestHead, reason_phrase};
use crate::monitor::{Monitor, MonitorStats, Room, RoomState};
use crate::reactor::Reactor;

/// One answer.
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) content_type: &'static str,
    pub(super) body: Vec<u8>,
}

impl Response {
    pub(super) fn text(status: u16, text: &str) -> Self {
        Response { status, content_type: "text/plain; charset=utf-8", body: format!("{text}\n").into_bytes() }
    }

    /// The status's reason phrase as the body.
    pub(super) fn status(status: u16) -> Self {
        Response::text(status, reason_phrase(status))
    }
}

/// The content type Prometheus expects of its text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Picks the answer to a request. The query string is ignored.
pub(super) fn route(request: &RequestHead<'_>, monitor: &Monitor, reactor: &Reactor) -> Response {
    let path = request.path();
    if path != "/metrics" && path != "/rooms" {
        return Response::text(404, "not found; try /metrics or /rooms");
    }
    if request.method != "GET" {
        return Response::text(405, "only GET is served");
    }
    let rooms = monitor.rooms();
    if path == "/metrics" {
        let text = render_metrics(&monitor.stats(), &rooms, monitor.output_pending(), reactor);
        Response { status: 200, content_type: PROMETHEUS_TEXT, body: text.into_bytes() }
    } else {
        let json = render_rooms(&rooms, Instant::now());
        Response { status: 200, content_type: "application/json", body: json.into_bytes() }
    }
}

/// Every room state, in the order they are reported: all of them, even at
/// 0, so a dashboard sees a state empty rather than missing.
const STATES: [RoomState; 7] = [
    RoomState::Waiting,
    RoomState::Connecting,
    RoomState::LoggingIn,
    RoomState::Joined,
    RoomState::BackingOff,
    RoomState::Closing,
    RoomState::Stopped,
];

/// Every transport, in the order they are reported (all, even at 0).
const TRANSPORTS: [&str; 3] = ["tcp", "ws", "wss"];

/// A state's place in [`STATES`]. The match is exhaustive, so a new state
/// fails to compile here instead of silently missing from the metrics.
fn state_slot(state: RoomState) -> usize {
    match state {
        RoomState::Waiting => 0,
        RoomState::Connecting => 1,
        RoomState::LoggingIn => 2,
        RoomState::Joined => 3,
        RoomState::BackingOff => 4,
        RoomState::Closing => 5,
        RoomState::Stopped => 6,
    }
}

/// Prometheus text exposition format, version 0.0.4: per metric a `# HELP`
/// and a `# TYPE` line, then its samples, `name{label="value"} number`.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample with at most one label (all this endpoint needs).
    fn sample(&mut self, name: &str, label: Option<(&str, &str)>, value: impl std::fmt::Display) {
        self.out.push_str(name);
        if let Some((label, label_value)) = label {
            let _ = write!(self.out, "{{{label}=\"");
            escape_label_value(&mut self.out, label_value);
            self.out.push_str("\"}");
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A metric with one sample and no labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, None, value);
    }
}

/// Label values may hold anything (message types come from the network);
/// the format escapes backslash, double quote and newline.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The `/metrics` page.
fn render_metrics(stats: &MonitorStats, rooms: &[Room], output_pending: usize, reactor: &Reactor) -> String {
    let mut page = Exposition { out: String::with_capacity(4096 + rooms.len() * 48) };

    let mut by_state = [0usize; STATES.len()];
    for room in rooms {
        by_state[state_slot(room.state)] += 1;
    }
    page.family("barrage_rooms", "gauge", "Rooms in each state of their life cycle.");
    for (state, count) in STATES.iter().zip(by_state) {
        page.sample("barrage_rooms", Some(("state", state.name())), count);
    }

    let mut joined_by_transport = [0usize; TRANSPORTS.len()];
    for room in rooms.iter().filter(|room| room.state == RoomState::Joined) {
        if let Some(endpoint) = &room.endpoint {
            joined_by_transport[TRANSPORTS.iter().position(|&t| t == endpoint.transport.scheme()).unwrap_or(0)] += 1;
        }
    }
    page.family("barrage_rooms_joined", "gauge", "Joined rooms, by the transport they joined through.");
    for (transport, count) in TRANSPORTS.iter().zip(joined_by_transport) {
        page.sample("barrage_rooms_joined", Some(("transport", transport)), count);
    }

    let mut by_type: Vec<(&String, &u64)> = stats.messages_by_type.iter().collect();
    by_type.sort();
    page.family("barrage_messages_total", "counter", "Messages received, by message type (filtered ones too).");
    for (kind, count) in by_type {
        page.sample("barrage_messages_total", Some(("type", kind)), count);
    }

    page.family("barrage_room_messages_total", "counter", "Messages received, by room.");
    for room in rooms {
        page.sample("barrage_room_messages_total", Some(("room", &room.id.to_string())), room.messages);
    }
    page.family(
        "barrage_room_foreign_chat_total",
        "counter",
        "Chat messages a room received that named another room (see --foreign-chat).",
    );
    for room in rooms {
        page.sample("barrage_room_foreign_chat_total", Some(("room", &room.id.to_string())), room.foreign_chat);
    }
    let mut by_live = [0usize; 4];
    for room in rooms {
        by_live[match room.live {
            Some(LiveStatus::Live) => 0,
            Some(LiveStatus::Loop) => 1,
            Some(LiveStatus::Offline) => 2,
            None => 3,
        }] += 1;
    }
    page.family("barrage_rooms_live", "gauge", "Rooms by broadcast status (unknown: not heard yet).");
    for (status, count) in ["live", "loop", "offline", "unknown"].into_iter().zip(by_live) {
        page.sample("barrage_rooms_live", Some(("status", status)), count);
    }

    page.single(
        "barrage_messages_filtered_total",
        "counter",
        "Messages received but not written because of the type filter.",
        stats.filtered,
    );
    page.single(
        "barrage_reconnects_total",
        "counter",
        "Room connections that ended and were retried.",
        stats.reconnects,
    );
    page.single(
        "barrage_decode_errors_total",
        "counter",
        "Room connections closed because the server's bytes could not be decoded.",
        stats.decode_errors,
    );
    page.single("barrage_output_pending_bytes", "gauge", "Output bytes not written yet.", output_pending);

    let loop_stats = reactor.stats();
    let counters = [
        (
            "iterations",
            "Event loop iterations (each waits at most once: in poll, or sleeping between polls).",
            loop_stats.iterations,
        ),
        ("polls", "Polls for I/O (fewer than iterations with --poll-interval).", loop_stats.polls),
        ("interval_sleeps", "Sleeps between two polls, inside --poll-interval.", loop_stats.interval_sleeps),
        ("events", "Readiness events returned by poll.", loop_stats.events),
        ("poll_timeouts", "Polls that returned because a timeout expired.", loop_stats.poll_timeouts),
        ("read_syscalls", "Read calls on connections.", loop_stats.read_syscalls),
        ("write_syscalls", "Write calls on connections.", loop_stats.write_syscalls),
        ("read_bytes", "Bytes read from connections.", loop_stats.bytes_read),
        ("written_bytes", "Bytes written to connections.", loop_stats.bytes_written),
        ("reregisters", "Poll registration changes.", loop_stats.reregisters),
        ("accepted", "Connections accepted by listeners.", loop_stats.accepted),
        ("opened", "Connections opened (outgoing or accepted).", loop_stats.opened),
        ("closed", "Connections closed.", loop_stats.closed),
        ("timers_fired", "Timers that fired.", loop_stats.timers_fired),
        ("wakeups", "Wake-ups from other threads.", loop_stats.wakeups),
    ];
    for (name, help, value) in counters {
        page.single(&format!("barrage_reactor_{name}_total"), "counter", help, value);
    }
    page.single(
        "barrage_reactor_max_timer_lateness_seconds",
        "gauge",
        "The worst delay between a timer's deadline and its callback.",
        loop_stats.max_timer_lateness.as_secs_f64(),
    );
    page.single(
        "barrage_reactor_entries",
        "gauge",
        "Open reactor entries: connections, listeners and raw handlers.",
        reactor.entry_count(),
    );
    page.single(
        "barrage_reactor_pending_timers",
        "gauge",
        "Timers waiting in the timer wheel.",
        reactor.pending_timers(),
    );
    page.out
}

fn live_name(live: Option<LiveStatus>) -> Option<&'static str> {
    live.map(|status| match status {
        LiveStatus::Live => "live",
        LiveStatus::Offline => "offline",
        LiveStatus::Loop => "loop",
    })
}

/// The `/rooms` page: a JSON array, one object per room.
fn render_rooms(rooms: &[Room], now: Instant) -> String {
    let rooms: Vec<serde_json::Value> = rooms
        .iter()
        .map(|room| {
            serde_json::json!({
                "room": room.id,
                "written": room.written,
                "state": room.state.name(),
                "live": live_name(room.live),
                "live_since": room.live_since,
                "name": room.name,
                "owner": room.owner,
                "category": room.category,
                "foreign_chat": room.foreign_chat,
                "last_message_age_secs": room.last_message.map(|at| now.saturating_duration_since(at).as_secs_f64()),
                "messages": room.messages,
                "reconnects": room.reconnects,
                "transport": room.endpoint.as_ref().map(|endpoint| endpoint.transport.scheme()),
                "endpoint": room.endpoint.as_ref().map(ToString::to_string),
            })
        })
        .collect();
    let mut text = serde_json::Value::Array(rooms).to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape_label_value(&mut out, "a\\b\"c\nd");
        assert_eq!(out, r#"a\\b\"c\nd"#);
    }

    #[test]
    fn every_state_is_reported_and_types_are_escaped() {
        let reactor = Reactor::new().unwrap();
        let mut stats = MonitorStats::default();
        stats.messages_by_type.insert("odd\"type\n".into(), 3);
        let page = render_metrics(&stats, &[], 0, &reactor);
        for state in STATES {
            assert!(page.contains(&format!("barrage_rooms{{state=\"{}\"}} 0\n", state.name())), "{page}");
        }
        assert!(page.contains("barrage_messages_total{type=\"odd\\\"type\\n\"} 3\n"), "{page}");
    }
}

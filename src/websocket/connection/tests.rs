//! The connection's rules, one test each, and the proptests: round trips
//! over every chunking of the wire, Douyu packets across messages, garbage.

use super::*;
use crate::douyu::frame::{DecoderConfig, SERVER_TO_CLIENT, decode_packet, encode_packet};
use proptest::prelude::*;

const KEY: [u8; 16] = *b"the sample nonce";

fn client_with(limits: Limits) -> WebSocket {
    WebSocket::client(&ClientRequest::new("danmuproxy.douyu.com:8502"), limits, KEY, 7).unwrap()
}

fn transmit(ws: &mut WebSocket) -> Vec<u8> {
    let mut out = Vec::new();
    ws.poll_transmit(&mut out);
    out
}

fn events(ws: &mut WebSocket) -> Vec<Event> {
    std::iter::from_fn(|| ws.poll_event()).collect()
}

fn closed(reason: impl Into<CloseReason>) -> Vec<Event> {
    vec![Event::Closed(reason.into())]
}

/// A reader that takes everything into `stream`.
fn into(stream: &mut Vec<u8>) -> impl FnMut(&[u8]) -> usize + '_ {
    |payload: &[u8]| {
        stream.extend_from_slice(payload);
        payload.len()
    }
}

fn ignore(payload: &[u8]) -> usize {
    payload.len()
}

/// The server's 101 for our fixed key.
fn response_101() -> Vec<u8> {
    let mut out = Vec::new();
    handshake::encode_accept(&handshake::accept_key(handshake::encode_key(KEY).as_bytes()), &mut out);
    out
}

/// A client and a server that have completed the handshake.
fn open_pair_with(limits: Limits) -> (WebSocket, WebSocket) {
    let mut client = client_with(limits);
    let mut server = WebSocket::server(limits);
    let request = transmit(&mut client);
    assert_eq!(server.on_bytes(&request, ignore), request.len());
    let response = transmit(&mut server);
    assert_eq!(client.on_bytes(&response, ignore), response.len());
    assert_eq!((events(&mut client), events(&mut server)), (vec![Event::Opened], vec![Event::Opened]));
    (client, server)
}

fn open_pair() -> (WebSocket, WebSocket) {
    open_pair_with(Limits::default())
}

/// A frame as the server would send it (unmasked), for frames the
/// connection itself would never send.
fn raw(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode_frame(&mut out, fin, opcode, None, payload);
    out
}

/// Every frame in `wire`, unmasked: (fin, opcode, payload).
fn frames(mut wire: &[u8]) -> Vec<(bool, Opcode, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((header, len)) = FrameHeader::decode(wire).unwrap() {
        let end = len + header.payload_len as usize;
        let mut payload = wire[len..end].to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        out.push((header.fin, header.opcode, payload));
        wire = &wire[end..];
    }
    assert!(wire.is_empty(), "a partial frame at the end");
    out
}

#[test]
fn frames_in_the_same_read_as_the_101_are_kept() {
    let mut client = client_with(Limits::default());
    assert_eq!(client.state(), State::Handshaking);
    assert!(String::from_utf8(transmit(&mut client)).unwrap().starts_with("GET / HTTP/1.1\r\n"));
    let mut wire = response_101();
    wire.extend(raw(true, Opcode::Binary, b"first"));
    wire.extend(raw(true, Opcode::Binary, b"second"));
    let mut stream = Vec::new();
    assert_eq!(client.on_bytes(&wire, into(&mut stream)), wire.len());
    assert_eq!(events(&mut client), [Event::Opened]);
    assert_eq!(stream, b"firstsecond");
    assert_eq!(client.state(), State::Open);
    assert_eq!(client.stats().binary_messages, 2);
}

/// The common case costs no copy: a frame that arrived whole, holding
/// whole packets, is read from the caller's buffer itself. Only a
/// packet cut across frames is copied, once.
#[test]
fn whole_packets_reach_the_reader_from_the_input_itself() {
    let (mut client, _) = open_pair();
    let wire = [raw(true, Opcode::Binary, b"packet"), raw(true, Opcode::Binary, b"pac")].concat();
    let input = wire.as_ptr_range();
    let mut offered = Vec::new();
    let reader = |payload: &[u8]| {
        offered.push((payload.to_vec(), input.contains(&payload.as_ptr())));
        payload.len() / 6 * 6 // whole 6-byte packets only
    };
    assert_eq!(client.on_bytes(&wire, reader), wire.len());
    assert_eq!(client.unread(), 3);
    let tail = raw(true, Opcode::Binary, b"ketpacket");
    let input = tail.as_ptr_range();
    let reader = |payload: &[u8]| {
        offered.push((payload.to_vec(), input.contains(&payload.as_ptr())));
        payload.len() / 6 * 6
    };
    assert_eq!(client.on_bytes(&tail, reader), tail.len());
    assert_eq!(client.unread(), 0);
    assert_eq!(
        offered,
        [
            (b"packet".to_vec(), true),        // straight from `wire`
            (b"pac".to_vec(), true),           // offered, then its leftover kept
            (b"packetpacket".to_vec(), false), // "pac" + "ketpacket", copied behind it
        ]
    );
}

#[test]
fn a_partial_head_is_left_with_the_caller() {
    let mut client = client_with(Limits::default());
    let wire = response_101();
    assert_eq!(client.on_bytes(&wire[..wire.len() - 1], ignore), 0);
    assert_eq!(client.state(), State::Handshaking);
    assert_eq!(client.on_bytes(&wire, ignore), wire.len());
    assert_eq!(client.state(), State::Open);
}

#[test]
fn a_failed_handshake_closes_with_its_reason() {
    // The accept key of another request's key.
    let mut bad_accept = Vec::new();
    handshake::encode_accept(&handshake::accept_key(b"AAAAAAAAAAAAAAAAAAAAAA=="), &mut bad_accept);
    let refused = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    let endless = [b"HTTP/1.1 101 Switching Protocols\r\nX: ".as_slice(), &[b'y'; 20_000]].concat();
    for (wire, error) in [
        (&bad_accept[..], HandshakeError::BadAccept),
        (&refused[..], HandshakeError::Status(503)),
        (&endless[..], HandshakeError::HeadTooLarge { max: 16 * 1024 }),
    ] {
        let mut client = client_with(Limits::default());
        transmit(&mut client);
        assert_eq!(client.on_bytes(wire, ignore), wire.len());
        assert_eq!(events(&mut client), closed(error));
        assert_eq!(client.state(), State::Closed);
        assert!(transmit(&mut client).is_empty(), "nothing to say to a server that is not one");
        assert_eq!(client.send_binary(b"x"), Err(SendError::Closed));
    }
}

#[test]
fn the_server_answers_a_bad_request_over_http_and_closes() {
    let mut server = WebSocket::server(Limits::default());
    let request = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(server.on_bytes(request, ignore), request.len());
    assert_eq!(events(&mut server), closed(HandshakeError::BadHeader("Sec-WebSocket-Key")));
    assert!(transmit(&mut server).starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
}

#[test]
fn frames_sent_while_handshaking_wait_behind_the_handshake() {
    let mut client = client_with(Limits::default());
    client.send_binary(b"loginreq").unwrap();
    let request = transmit(&mut client);
    assert!(request.ends_with(b"\r\n\r\n"), "only the GET goes out before the 101");
    let mut server = WebSocket::server(Limits::default());
    server.send_binary(b"welcome").unwrap();
    assert!(transmit(&mut server).is_empty());

    assert_eq!(server.on_bytes(&request, ignore), request.len());
    let answer = transmit(&mut server);
    let head_len = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(answer.starts_with(b"HTTP/1.1 101 "));
    assert_eq!(frames(&answer[head_len..]), [(true, Opcode::Binary, b"welcome".to_vec())]);
    let mut stream = Vec::new();
    assert_eq!(client.on_bytes(&answer, into(&mut stream)), answer.len());
    assert_eq!(stream, b"welcome");
    let sent = transmit(&mut client);
    assert_eq!(frames(&sent), [(true, Opcode::Binary, b"loginreq".to_vec())]);
}

/// What a connection holds at rest, beyond its own struct.
fn heap_held(ws: &WebSocket) -> usize {
    ws.transmit.capacity() + ws.held.capacity() + ws.events.capacity() + ws.stream.unread()
}

#[test]
fn an_open_connection_keeps_nothing_of_its_handshake_once_drained() {
    let mut client = client_with(Limits::default());
    client.send_binary(b"loginreq").unwrap();
    let mut server = WebSocket::server(Limits::default());
    let request = transmit(&mut client);
    assert_eq!(server.on_bytes(&request, ignore), request.len());
    let answer = transmit(&mut server);
    assert_eq!(client.on_bytes(&answer, ignore), answer.len());
    assert_eq!(events(&mut client), vec![Event::Opened]);
    assert_eq!(frames(&transmit(&mut client)), [(true, Opcode::Binary, b"loginreq".to_vec())]);
    assert_eq!(heap_held(&client), 0, "the request, the held frames, the event queue");
    // And a heartbeat's frame does not stay either.
    client.send_binary(b"mrkl").unwrap();
    assert!(!transmit(&mut client).is_empty());
    assert_eq!(heap_held(&client), 0);
    assert_eq!(events(&mut server), vec![Event::Opened]);
    assert_eq!(heap_held(&server), 0);
}

#[test]
fn frames_waiting_for_a_failed_or_abandoned_handshake_are_dropped() {
    let mut refused = client_with(Limits::default());
    refused.send_binary(b"loginreq").unwrap();
    transmit(&mut refused);
    let wire = b"HTTP/1.1 404 Not Found\r\n\r\n";
    assert_eq!(refused.on_bytes(wire, ignore), wire.len());
    assert_eq!(events(&mut refused), closed(HandshakeError::Status(404)));
    assert!(transmit(&mut refused).is_empty());

    // Closing during the handshake has no one to tell.
    let mut abandoned = client_with(Limits::default());
    abandoned.send_binary(b"loginreq").unwrap();
    transmit(&mut abandoned);
    abandoned.close(close_code::NORMAL, "");
    assert_eq!(events(&mut abandoned), closed(CloseReason::LocallyClosed));
    assert!(transmit(&mut abandoned).is_empty());
    assert_eq!(abandoned.send_binary(b"x"), Err(SendError::Closed));
}

#[test]
fn client_frames_are_masked_and_server_frames_are_not() {
    let (mut client, mut server) = open_pair();
    client.send_binary(b"up").unwrap();
    server.send_binary(b"down").unwrap();
    let up = transmit(&mut client);
    let down = transmit(&mut server);
    assert!(FrameHeader::decode(&up).unwrap().unwrap().0.mask.is_some(), "a client masks");
    assert_eq!(down, raw(true, Opcode::Binary, b"down"));
    // Two frames get two different keys.
    client.send_binary(b"up").unwrap();
    assert_ne!(transmit(&mut client), up);

    let mut stream = Vec::new();
    assert_eq!(server.on_bytes(&up, into(&mut stream)), up.len());
    assert_eq!(stream, b"up");
}

#[test]
fn a_masked_server_frame_is_a_protocol_error() {
    let (mut client, _) = open_pair();
    let mut wire = Vec::new();
    frame::encode_frame(&mut wire, true, Opcode::Binary, Some([1, 2, 3, 4]), b"x");
    let mut stream = Vec::new();
    assert_eq!(client.on_bytes(&wire, into(&mut stream)), wire.len());
    assert!(stream.is_empty());
    assert_eq!(events(&mut client), closed(ProtocolError::MaskedByServer));
    let reply = frames(&transmit(&mut client));
    assert_eq!(reply.len(), 1);
    assert_eq!((reply[0].1, &reply[0].2[..2]), (Opcode::Close, &1002u16.to_be_bytes()[..]));
}

#[test]
fn an_unmasked_client_frame_is_a_protocol_error() {
    let (_, mut server) = open_pair();
    let wire = raw(true, Opcode::Binary, b"x");
    assert_eq!(server.on_bytes(&wire, ignore), wire.len());
    assert_eq!(events(&mut server), closed(ProtocolError::UnmaskedByClient));
    assert_eq!(frames(&transmit(&mut server))[0].1, Opcode::Close);
}

#[test]
fn ping_is_answered_with_a_pong_of_the_same_payload() {
    let (mut client, mut server) = open_pair();
    server.send_ping(b"are you there").unwrap();
    assert_eq!(server.send_ping(&[0; 126]), Err(SendError::ControlTooLong));
    let wire = transmit(&mut server);
    assert_eq!(client.on_bytes(&wire, ignore), wire.len());
    let pong = transmit(&mut client);
    assert_eq!(frames(&pong), [(true, Opcode::Pong, b"are you there".to_vec())]);
    assert_eq!(server.on_bytes(&pong, ignore), pong.len());
    assert_eq!((client.stats().pings, server.stats().pongs), (1, 1));
    assert!(events(&mut client).is_empty() && events(&mut server).is_empty(), "a pong is only counted");
}

/// A peer that pings and never reads our answers cannot make us hold more
/// than one pong (RFC 6455 §5.5.3): the latest ping's.
#[test]
fn pings_not_yet_answered_leave_one_pong_for_the_latest() {
    let (mut client, _) = open_pair();
    let pings: Vec<Vec<u8>> = (0..10_000u32).map(|n| format!("ping {n} {}", "x".repeat(100)).into_bytes()).collect();
    for ping in &pings {
        let wire = raw(true, Opcode::Ping, ping);
        assert_eq!(client.on_bytes(&wire, ignore), wire.len());
    }
    assert_eq!(client.stats().pings, 10_000);
    let answered = frames(&transmit(&mut client));
    assert_eq!(answered.len(), 1, "pongs for 10,000 pings");
    assert_eq!(answered[0], (true, Opcode::Pong, pings[9_999].clone()));
    assert!(transmit(&mut client).is_empty(), "answered once");
    // A frame we send takes the held pong out ahead of it, so the pong
    // never comes after our close.
    let wire = raw(true, Opcode::Ping, b"last");
    assert_eq!(client.on_bytes(&wire, ignore), wire.len());
    client.close(close_code::NORMAL, "bye");
    let sent: Vec<_> = frames(&transmit(&mut client)).into_iter().map(|(_, op, payload)| (op, payload)).collect();
    assert_eq!(
        sent,
        [(Opcode::Pong, b"last".to_vec()), (Opcode::Close, [&1000u16.to_be_bytes()[..], b"bye"].concat())]
    );
}

#[test]
fn a_control_frame_waits_until_it_is_whole() {
    let (mut client, _) = open_pair();
    let wire = raw(true, Opcode::Ping, b"0123456789");
    assert_eq!(client.on_bytes(&wire[..wire.len() - 1], ignore), 0);
    assert!(transmit(&mut client).is_empty());
    assert_eq!(client.on_bytes(&wire, ignore), wire.len());
    assert_eq!(frames(&transmit(&mut client))[0].2, b"0123456789");
}

#[test]
fn text_messages_are_skipped_and_counted_not_fatal() {
    let (mut client, _) = open_pair();
    let mut wire = raw(true, Opcode::Text, "弹幕".as_bytes());
    wire.extend(raw(false, Opcode::Text, b"in "));
    wire.extend(raw(true, Opcode::Continuation, b"two"));
    wire.extend(raw(true, Opcode::Binary, b"packet"));
    let mut stream = Vec::new();
    assert_eq!(client.on_bytes(&wire, into(&mut stream)), wire.len());
    assert_eq!(stream, b"packet");
    assert_eq!(client.stats().text_messages, 2);
    assert_eq!(client.state(), State::Open);
    assert!(events(&mut client).is_empty());
}

#[test]
fn a_fragmented_message_is_reassembled_around_control_frames() {
    let (mut client, mut server) = open_pair();
    server.send_binary_fragmented(b"abcdefgh", NonZeroUsize::new(3).unwrap()).unwrap();
    let fragments = transmit(&mut server);
    let opcodes: Vec<_> = frames(&fragments).iter().map(|(fin, op, _)| (*fin, *op)).collect();
    assert_eq!(opcodes, [(false, Opcode::Binary), (false, Opcode::Continuation), (true, Opcode::Continuation)]);
    // A ping may come between fragments (§5.4).
    let first_len = 2 + 3;
    let mut wire = fragments[..first_len].to_vec();
    wire.extend(raw(true, Opcode::Ping, b"p"));
    wire.extend_from_slice(&fragments[first_len..]);
    let mut stream = Vec::new();
    assert_eq!(client.on_bytes(&wire, into(&mut stream)), wire.len());
    assert_eq!(stream, b"abcdefgh");
    assert_eq!(client.stats().binary_messages, 1);
    assert_eq!(frames(&transmit(&mut client)), [(true, Opcode::Pong, b"p".to_vec())]);
    // An empty message is one frame.
    server.send_binary_fragmented(b"", NonZeroUsize::new(3).unwrap()).unwrap();
    assert_eq!(transmit(&mut server), raw(true, Opcode::Binary, b""));
}

#[test]
fn fragments_out_of_sequence_are_protocol_errors() {
    for (wire, error) in [
        (raw(true, Opcode::Continuation, b"x"), ProtocolError::UnexpectedContinuation),
        (
            [raw(false, Opcode::Binary, b"x"), raw(true, Opcode::Binary, b"y")].concat(),
            ProtocolError::ExpectedContinuation,
        ),
        (
            [raw(false, Opcode::Text, b"x"), raw(true, Opcode::Binary, b"y")].concat(),
            ProtocolError::ExpectedContinuation,
        ),
    ] {
        let (mut client, _) = open_pair();
        assert_eq!(client.on_bytes(&wire, ignore), wire.len());
        assert_eq!(events(&mut client), closed(error));
    }
}

#[test]
fn an_oversized_message_is_refused_from_its_header_alone() {
    let limits = Limits { max_message: 1000, ..Limits::default() };
    // A 10-byte header announcing 4 GiB: refused before any payload.
    let (mut client, _) = open_pair_with(limits);
    let mut header = Vec::new();
    FrameHeader { fin: true, opcode: Opcode::Binary, mask: None, payload_len: 1 << 32 }.encode(&mut header);
    assert_eq!(header.len(), 10);
    assert_eq!(client.on_bytes(&header, ignore), header.len());
    assert_eq!(events(&mut client), closed(ProtocolError::MessageTooBig { length: 1 << 32, max: 1000 }));
    let reply = frames(&transmit(&mut client));
    assert_eq!((reply[0].1, &reply[0].2[..2]), (Opcode::Close, &1009u16.to_be_bytes()[..]));

    // Fragments count together: 600 + 600 is over 1000.
    let (mut client, _) = open_pair_with(limits);
    let mut wire = raw(false, Opcode::Binary, &[0; 600]);
    FrameHeader { fin: true, opcode: Opcode::Continuation, mask: None, payload_len: 600 }.encode(&mut wire);
    let mut stream = Vec::new();
    assert_eq!(client.on_bytes(&wire, into(&mut stream)), wire.len());
    assert_eq!(events(&mut client), closed(ProtocolError::MessageTooBig { length: 1200, max: 1000 }));
    assert_eq!(stream.len(), 600, "the first fragment was within the limit");

    // Exactly at the limit is fine.
    let (mut client, _) = open_pair_with(limits);
    let wire = raw(true, Opcode::Binary, &[0; 1000]);
    assert_eq!(client.on_bytes(&wire, ignore), wire.len());
    assert_eq!(client.state(), State::Open);
}

#[test]
fn reserved_bits_and_bad_close_frames_are_protocol_errors() {
    let mut reserved = raw(true, Opcode::Binary, b"x");
    reserved[0] |= 0x40;
    for (wire, error) in [
        (reserved, ProtocolError::ReservedBits),
        (vec![0x83, 0x00], ProtocolError::ReservedOpcode(3)),
        (raw(true, Opcode::Close, &[3]), ProtocolError::BadClosePayload),
        (raw(true, Opcode::Close, &1005u16.to_be_bytes()), ProtocolError::InvalidCloseCode(1005)),
    ] {
        let (mut client, _) = open_pair();
        assert_eq!(client.on_bytes(&wire, ignore), wire.len());
        assert_eq!(events(&mut client), closed(error));
        assert_eq!(frames(&transmit(&mut client))[0].1, Opcode::Close);
    }
}

#[test]
fn closing_from_the_client() {
    let (mut client, mut server) = open_pair();
    client.close(close_code::GOING_AWAY, "bye");
    assert_eq!(client.state(), State::Closing);
    assert_eq!(client.send_binary(b"late"), Err(SendError::Closed));
    let close = transmit(&mut client);
    assert_eq!(server.on_bytes(&close, ignore), close.len());
    assert_eq!(events(&mut server), closed(CloseReason::PeerClosed { code: Some(1001), reason: "bye".into() }));
    // The server echoes the code; its answer ends the client's side.
    let answer = transmit(&mut server);
    assert_eq!(frames(&answer), [(true, Opcode::Close, 1001u16.to_be_bytes().to_vec())]);
    assert_eq!(client.on_bytes(&answer, ignore), answer.len());
    assert_eq!(events(&mut client), closed(CloseReason::LocallyClosed));
    assert!(transmit(&mut client).is_empty(), "a close is not answered twice");
    assert_eq!((client.state(), server.state()), (State::Closed, State::Closed));
}

#[test]
fn closing_from_the_server_while_data_is_still_arriving() {
    let (mut client, mut server) = open_pair();
    server.close(close_code::NORMAL, &"长".repeat(100)); // cut to 123 bytes, on a char boundary
    let close = transmit(&mut server);
    assert_eq!(frames(&close)[0].2.len(), 2 + 123);
    // Before the client hears the close, it sends a packet: the server
    // still delivers it (the closing handshake does not lose data).
    client.send_binary(b"logout").unwrap();
    let mut wire = transmit(&mut client);
    let mut stream = Vec::new();
    assert_eq!(client.on_bytes(&close, ignore), close.len());
    let reason = "长".repeat(41);
    assert_eq!(events(&mut client), closed(CloseReason::PeerClosed { code: Some(1000), reason }));
    wire.extend(transmit(&mut client));
    assert_eq!(server.on_bytes(&wire, into(&mut stream)), wire.len());
    assert_eq!(stream, b"logout");
    assert_eq!(events(&mut server), closed(CloseReason::LocallyClosed));
    // Whatever comes after the end is ignored.
    assert_eq!(server.on_bytes(b"\x82\x01x", ignore), 3);
    assert!(events(&mut server).is_empty());
}

#[test]
fn a_close_without_a_code_is_answered_without_one() {
    let (mut client, _) = open_pair();
    let wire = raw(true, Opcode::Close, b"");
    assert_eq!(client.on_bytes(&wire, ignore), wire.len());
    assert_eq!(events(&mut client), closed(CloseReason::PeerClosed { code: None, reason: String::new() }));
    assert_eq!(frames(&transmit(&mut client)), [(true, Opcode::Close, vec![])]);
}

#[test]
fn a_reader_that_never_consumes_is_stopped() {
    let limits = Limits { max_unread: 100, ..Limits::default() };
    let (mut client, _) = open_pair_with(limits);
    let wire = [raw(true, Opcode::Binary, &[1; 60]), raw(true, Opcode::Binary, &[2; 60])].concat();
    assert_eq!(client.on_bytes(&wire, |_: &[u8]| 0), wire.len());
    assert_eq!(events(&mut client), closed(CloseReason::ReaderBacklog { unread: 120, max: 100 }));
    assert_eq!(client.unread(), 0, "the backlog is freed");
}

#[test]
fn close_reasons_print_peer_text_escaped() {
    let reason = CloseReason::PeerClosed { code: Some(1000), reason: "\x1b[2Jgone\n".into() };
    let shown = reason.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown}");
    assert!(shown.contains("1000") && shown.contains("gone"));
}

/// What one side sends in a proptest.
#[derive(Clone, Debug)]
enum Op {
    Binary(Vec<u8>),
    Fragmented(Vec<u8>, NonZeroUsize),
    Text(String),
    Ping(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    let bytes = || prop::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        3 => bytes().prop_map(Op::Binary),
        2 => (bytes(), 1usize..40).prop_map(|(b, n)| Op::Fragmented(b, NonZeroUsize::new(n).unwrap())),
        1 => ".{0,20}".prop_map(Op::Text),
        1 => prop::collection::vec(any::<u8>(), 0..=125).prop_map(Op::Ping),
    ]
}

fn send(ws: &mut WebSocket, op: &Op) {
    match op {
        Op::Binary(bytes) => ws.send_binary(bytes),
        Op::Fragmented(bytes, n) => ws.send_binary_fragmented(bytes, *n),
        Op::Text(text) => ws.send_text(text),
        Op::Ping(bytes) => ws.send_ping(bytes),
    }
    .unwrap();
}

/// Cuts `wire` at `cuts` and feeds the pieces the way a reactor does,
/// passing leftovers again; checks that leftovers stay small.
fn feed_in_pieces(
    ws: &mut WebSocket,
    wire: &[u8],
    cuts: &[prop::sample::Index],
    read: &mut impl FnMut(&[u8]) -> usize,
) {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
    points.extend([0, wire.len()]);
    points.sort_unstable();
    let mut pending = Vec::new();
    for pair in points.windows(2) {
        pending.extend_from_slice(&wire[pair[0]..pair[1]]);
        let used = ws.on_bytes(&pending, &mut *read);
        pending.drain(..used);
        if ws.state() != State::Handshaking {
            assert!(pending.len() < frame::MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD, "{} bytes left over", pending.len());
        }
    }
    assert!(pending.is_empty(), "{} bytes never consumed", pending.len());
}

/// One side sends `ops` right after the handshake; the other side gets
/// the handshake head and the frames cut at `cuts`.
fn round_trip(ops: &[Op], cuts: &[prop::sample::Index], from_client: bool) -> Result<(), TestCaseError> {
    let mut client = client_with(Limits::default());
    let mut server = WebSocket::server(Limits::default());
    let request = transmit(&mut client);
    let (sender, receiver, mut wire) = if from_client {
        assert_eq!(client.on_bytes(&response_101(), ignore), response_101().len());
        (&mut client, &mut server, request)
    } else {
        assert_eq!(server.on_bytes(&request, ignore), request.len());
        (&mut server, &mut client, Vec::new())
    };
    for op in ops {
        send(sender, op);
    }
    wire.extend(transmit(sender));

    let mut stream = Vec::new();
    feed_in_pieces(receiver, &wire, cuts, &mut into(&mut stream));
    let binaries: Vec<&[u8]> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Binary(b) | Op::Fragmented(b, _) => Some(b.as_slice()),
            _ => None,
        })
        .collect();
    let pings: Vec<Vec<u8>> =
        ops.iter().filter_map(|op| if let Op::Ping(p) = op { Some(p.clone()) } else { None }).collect();
    let texts = ops.iter().filter(|op| matches!(op, Op::Text(_))).count() as u64;
    prop_assert_eq!(stream, binaries.concat());
    prop_assert_eq!(
        receiver.stats(),
        Stats { binary_messages: binaries.len() as u64, text_messages: texts, pings: pings.len() as u64, pongs: 0 }
    );
    let mut answers = transmit(receiver);
    if from_client {
        let head_len =
            handshake::check_response(&answers, &handshake::accept_key(handshake::encode_key(KEY).as_bytes()), 1024);
        answers.drain(..head_len.unwrap().unwrap());
    }
    let pongs: Vec<Vec<u8>> = frames(&answers)
        .into_iter()
        .map(|(_, opcode, p)| {
            assert_eq!(opcode, Opcode::Pong);
            p
        })
        .collect();
    // Nothing was sent between the pings: only the latest is answered.
    prop_assert_eq!(pongs, pings.last().cloned().into_iter().collect::<Vec<_>>());
    prop_assert_eq!(receiver.state(), State::Open);
    Ok(())
}

/// A frame that is mostly well formed, with any opcode (reserved ones
/// too), either masking, sometimes a reserved bit, and lengths around
/// the limits used below: garbage that gets past the first byte.
fn wild_frame() -> impl Strategy<Value = Vec<u8>> {
    let opcode = prop::sample::select(vec![0u8, 1, 2, 8, 9, 10, 3, 0xB]);
    (
        any::<bool>(),
        opcode,
        prop::bool::weighted(0.05),
        any::<Option<[u8; 4]>>(),
        prop::collection::vec(any::<u8>(), 0..150),
    )
        .prop_map(|(fin, opcode, reserved, mask, payload)| {
            let mut out = Vec::new();
            frame::encode_frame(&mut out, fin, Opcode::Binary, mask, &payload);
            out[0] = u8::from(fin) << 7 | u8::from(reserved) << 6 | opcode;
            out
        })
}

proptest! {
    #[test]
    fn server_to_client_over_any_chunking(ops in prop::collection::vec(op(), 0..10), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16)) {
        round_trip(&ops, &cuts, false)?;
    }

    #[test]
    fn client_to_server_over_any_chunking(ops in prop::collection::vec(op(), 0..10), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16)) {
        round_trip(&ops, &cuts, true)?;
    }

    /// Douyu's case: packets cut into messages at arbitrary points (a
    /// packet spans messages, a message holds several), the wire cut
    /// again; the session's decoder reads every packet once, in order.
    #[test]
    fn douyu_packets_spanning_messages_arrive_whole(
        bodies in prop::collection::vec("[a-z@=/]{0,40}", 1..8),
        message_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        wire_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let (mut client, mut server) = open_pair();
        let mut packets = Vec::new();
        for body in &bodies {
            encode_packet(&mut packets, SERVER_TO_CLIENT, body);
        }
        let mut points: Vec<usize> = message_cuts.iter().map(|c| c.index(packets.len() + 1)).collect();
        points.extend([0, packets.len()]);
        points.sort_unstable();
        for (i, pair) in points.windows(2).enumerate() {
            let message = &packets[pair[0]..pair[1]];
            match i % 2 {
                0 => server.send_binary(message).unwrap(),
                _ => server.send_binary_fragmented(message, NonZeroUsize::new(7).unwrap()).unwrap(),
            }
        }
        let wire = transmit(&mut server);
        let mut got = Vec::new();
        let mut session = |data: &[u8]| {
            let mut used = 0;
            while let Some((packet, n)) = decode_packet(&data[used..], &DecoderConfig::client()).unwrap() {
                got.push(packet.body.into_owned());
                used += n;
            }
            used
        };
        feed_in_pieces(&mut client, &wire, &wire_cuts, &mut session);
        prop_assert_eq!(got, bodies);
        prop_assert_eq!(client.unread(), 0);
    }

    #[test]
    fn garbage_after_the_handshake_never_panics_or_grows(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            prop::collection::vec(wild_frame(), 0..8).prop_map(|frames| frames.concat()),
        ],
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        from_client: bool,
    ) {
        let limits = Limits { max_head: 1024, max_message: 64, max_unread: 128 };
        let (mut client, mut server) = open_pair_with(limits);
        let ws = if from_client { &mut server } else { &mut client };
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.extend([0, bytes.len()]);
        points.sort_unstable();
        let mut pending = Vec::new();
        let mut stalled = |_: &[u8]| 0;
        for pair in points.windows(2) {
            pending.extend_from_slice(&bytes[pair[0]..pair[1]]);
            let used = ws.on_bytes(&pending, &mut stalled);
            prop_assert!(used <= pending.len());
            pending.drain(..used);
            prop_assert!(pending.len() < frame::MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD);
            prop_assert!(ws.unread() <= limits.max_unread);
        }
        // Answers (pongs, one close) are bounded by what came in.
        prop_assert!(transmit(ws).len() <= 3 * bytes.len() + 2 + 4 + MAX_CONTROL_PAYLOAD);
        prop_assert!(matches!(ws.state(), State::Open | State::Closed));
    }

    #[test]
    fn garbage_as_a_handshake_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300), server_side: bool) {
        let limits = Limits { max_head: 128, ..Limits::default() };
        let mut ws = if server_side { WebSocket::server(limits) } else { client_with(limits) };
        transmit(&mut ws);
        let used = ws.on_bytes(&bytes, ignore);
        prop_assert!(used == 0 && bytes.len() < 128 || ws.state() == State::Closed);
    }
}

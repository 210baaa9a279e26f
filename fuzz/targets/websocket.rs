//! WebSocket: the handshake and the frames, on either side.

use barrage::http::head::find_head_end;
use barrage::websocket::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, apply_mask};
use barrage::websocket::{ClientRequest, CloseReason, Event, Limits, Opcode, Role, State, Stats, WebSocket};

use super::{ReadBuffer, Script};

const LIMITS: Limits = Limits { max_head: 1024, max_message: 2048, max_unread: 4096 };
const KEY: [u8; 16] = *b"fuzzing-key-0123";
const MASK_SEED: u64 = 1;

/// A `WebSocket` fed from one buffer and from the fuzzer's pieces, its
/// binary payloads read by a reader that takes whole records (as the Douyu
/// session takes whole packets): the same payload bytes, the same close,
/// the same head and frames sent back but for pongs, which answer only the
/// latest ping of a read (at most one a read). After each read what is
/// left is bounded (part of a head, a frame header or a control frame), the
/// reader's backlog stays under the limit, and everything sent is
/// well-formed: one head, then frames masked by a client and only by a
/// client.
///
/// Settings: bit 0 the side (set: server); bit 1 the handshake is done
/// first with the library's own request or 101, so the data is frames;
/// bits 2–4 the reader's record size in bytes (0: a reader that stalls).
pub fn websocket(input: &[u8]) {
    let script = Script::parse(input);
    let role = if script.settings & 1 != 0 { Role::Server } else { Role::Client };
    let record = usize::from((script.settings >> 2) & 7);
    let handshake = if script.settings & 2 != 0 { handshake_for(role) } else { Vec::new() };

    let whole: Vec<u8> = [handshake.as_slice(), script.data].concat();
    let whole = connect(role, record, &[&whole]);
    let pieces: Vec<&[u8]> = std::iter::once(handshake.as_slice()).chain(script.pieces()).collect();
    assert_eq!(connect(role, record, &pieces), whole, "split into reads, the connection differs");

    // Any header that decodes encodes to one that decodes the same.
    if let Ok(Some((header, _))) = FrameHeader::decode(script.data) {
        let mut again = Vec::new();
        header.encode(&mut again);
        assert_eq!(FrameHeader::decode(&again), Ok(Some((header, again.len()))));
    }
}

/// A frame sent: (fin, opcode, payload unmasked).
type Frame = (bool, Opcode, Vec<u8>);

/// What the peer's bytes do to a connection, seen from outside.
#[derive(Debug, PartialEq)]
struct Connection {
    payload: Vec<u8>,
    close: Option<CloseReason>,
    stats: Stats,
    /// The head sent, and every frame after it but pongs.
    head: Vec<u8>,
    frames: Vec<Frame>,
}

fn new_socket(role: Role) -> WebSocket {
    match role {
        Role::Client => {
            WebSocket::client(&ClientRequest::new("127.0.0.1:8502"), LIMITS, KEY, MASK_SEED).expect("a valid request")
        }
        Role::Server => WebSocket::server(LIMITS),
    }
}

/// What the other side sends to open the connection: a client's request
/// to a server, a server's 101 to our client (made by a server fed our
/// client's request).
fn handshake_for(role: Role) -> Vec<u8> {
    let mut request = Vec::new();
    new_socket(Role::Client).poll_transmit(&mut request);
    if role == Role::Server {
        return request;
    }
    let mut server = new_socket(Role::Server);
    server.on_bytes(&request, |_| 0);
    let mut answer = Vec::new();
    server.poll_transmit(&mut answer);
    answer
}

fn connect(role: Role, record: usize, pieces: &[&[u8]]) -> Connection {
    let mut socket = new_socket(role);
    let mut payload = Vec::new();
    let mut buffer = ReadBuffer::default();
    let mut opened = false;
    let mut close = None;
    let mut sent = Vec::new();
    for piece in pieces {
        let left = buffer.push(piece, |data| {
            socket.on_bytes(data, |bytes: &[u8]| {
                let whole_records = bytes.len().checked_div(record).map_or(0, |records| records * record);
                payload.extend_from_slice(&bytes[..whole_records]);
                whole_records
            })
        });
        let most = match socket.state() {
            State::Handshaking => LIMITS.max_head,
            // A header with the longest length and a mask, or a whole
            // control frame but a byte.
            State::Open | State::Closing => MAX_HEADER_LEN.max(6 + MAX_CONTROL_PAYLOAD) - 1,
            State::Closed => 0,
        };
        assert!(left <= most, "{left} bytes left over in {:?}", socket.state());
        assert!(socket.unread() <= LIMITS.max_unread);
        while let Some(event) = socket.poll_event() {
            assert!(close.is_none(), "{event:?} after the close");
            match event {
                Event::Opened => {
                    assert!(!opened, "opened twice");
                    opened = true;
                }
                Event::Closed(reason) => close = Some(reason),
            }
        }
        assert_eq!(socket.state() == State::Closed, close.is_some());
        socket.poll_transmit(&mut sent);
    }
    let (head, mut frames) = check_sent(role, &sent);
    let pongs = frames.iter().filter(|(_, opcode, _)| *opcode == Opcode::Pong).count();
    assert!(pongs <= pieces.len(), "{pongs} pongs sent in {} reads", pieces.len());
    frames.retain(|(_, opcode, _)| *opcode != Opcode::Pong);
    // How far past the limit the backlog went depends on the reads.
    if let Some(CloseReason::ReaderBacklog { unread, .. }) = &mut close {
        *unread = 0;
    }
    Connection { payload, close, stats: socket.stats(), head, frames }
}

/// What a connection sends is one HTTP head (the request, or the answer
/// to one), then whole frames: masked by a client, never by a server.
/// Returns the head and the frames, unmasked.
fn check_sent(role: Role, sent: &[u8]) -> (Vec<u8>, Vec<Frame>) {
    let mut frames = Vec::new();
    if sent.is_empty() {
        return (Vec::new(), frames);
    }
    let head_len = find_head_end(sent, 0).expect("an HTTP head first");
    let mut at = head_len;
    while at < sent.len() {
        let (header, len) = FrameHeader::decode(&sent[at..]).expect("a valid frame").expect("a whole frame header");
        assert_eq!(header.mask.is_some(), role == Role::Client, "{header:?}");
        let end = at + len + usize::try_from(header.payload_len).expect("a payload we sent");
        let mut payload = sent.get(at + len..end).expect("a frame cut short").to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        frames.push((header.fin, header.opcode, payload));
        at = end;
    }
    (sent[..head_len].to_vec(), frames)
}

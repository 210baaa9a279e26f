//! Frames: the RFC 6455 §5.2 header, masking, and the rules one header can
//! break on its own.
//!
//! ```text
//!  byte 0          byte 1          then
//!  F R R R opcode  M length7       length7 = 126: 2-byte length (big-endian)
//!  I S S S (4 b)   A (7 bits)      length7 = 127: 8-byte length
//!  N V V V         S                M set:         4-byte masking key
//!    1 2 3         K                then the payload
//! ```
//!
//! A header is 2 to 14 bytes. [`FrameHeader::decode`] is a pure function
//! over the received-but-unconsumed bytes, like `douyu::frame::decode_packet`:
//! it returns the header and its length, or "not enough yet", or an error,
//! and it judges the first two bytes as soon as they are there (reserved
//! bits, opcode, a control frame's size), so nothing is waited for that would
//! be refused anyway. Rules that need more than one header (fragment
//! sequences, who must mask, the message size limit) live in
//! [`super::connection`].
//!
//! Masking XORs the payload with a 4-byte key (§5.3). A client masks what it
//! sends and a server must not; [`apply_mask`] takes an offset so that a
//! payload can be unmasked piece by piece as it arrives.

use std::fmt;

/// The longest header: 2 bytes, an 8-byte length and a masking key.
pub const MAX_HEADER_LEN: usize = 14;
/// The largest payload a control frame may carry (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// What a frame is (§5.2). The reserved opcodes 3–7 and 11–15 are not
/// representable: decoding refuses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// More of the message a `Text` or `Binary` frame without FIN began.
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: short, never fragmented, allowed between the
    /// fragments of a message.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Why the bytes received are not a valid WebSocket conversation. Every one
/// is fatal: the connection is failed with [`ProtocolError::close_code`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// RSV1, RSV2 or RSV3 is set, but no extension was negotiated.
    ReservedBits,
    /// An opcode RFC 6455 reserves (3–7, 11–15).
    ReservedOpcode(u8),
    /// A control frame without FIN.
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    ControlTooLong { length: u64 },
    /// A server masked a frame (a client must reject it, §5.1).
    MaskedByServer,
    /// A client sent an unmasked frame (a server must reject it, §5.1).
    UnmaskedByClient,
    /// A continuation frame with no message to continue.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    ExpectedContinuation,
    /// A message longer than the configured maximum, refused from its
    /// frame header, before its payload is read.
    MessageTooBig { length: u64, max: usize },
    /// A close frame with a 1-byte payload (a code takes 2).
    BadClosePayload,
    /// A close code no endpoint may send (§7.4: below 1000, 1004–1006,
    /// 1015, 1016–2999, 5000 and up).
    InvalidCloseCode(u16),
}

impl ProtocolError {
    /// The close code to send when failing the connection for this error:
    /// 1009 for a message too big, 1002 (protocol error) otherwise.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::MessageTooBig { .. } => close_code::TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedBits => write!(f, "reserved bits set without an extension"),
            ProtocolError::ReservedOpcode(bits) => write!(f, "reserved opcode {bits:#x}"),
            ProtocolError::FragmentedControl => write!(f, "fragmented control frame"),
            ProtocolError::ControlTooLong { length } => {
                write!(f, "control frame of {length} bytes (at most {MAX_CONTROL_PAYLOAD})")
            }
            ProtocolError::MaskedByServer => write!(f, "masked frame from the server"),
            ProtocolError::UnmaskedByClient => write!(f, "unmasked frame from the client"),
            ProtocolError::UnexpectedContinuation => write!(f, "continuation frame outside a message"),
            ProtocolError::ExpectedContinuation => write!(f, "new message inside a fragmented one"),
            ProtocolError::MessageTooBig { length, max } => {
                write!(f, "message of at least {length} bytes (at most {max})")
            }
            ProtocolError::BadClosePayload => write!(f, "close frame with a 1-byte payload"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Close codes (§7.4.1) this crate sends or names.
pub mod close_code {
    /// The purpose of the connection is fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (a shutdown, a page left).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A message too big to process.
    pub const TOO_BIG: u16 = 1009;

    /// Whether an endpoint may put `code` in a close frame (§7.4; 1012–1014
    /// were registered with IANA later).
    pub fn is_valid(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// One frame header, decoded or to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The last frame of its message (always true for control frames).
    pub fin: bool,
    pub opcode: Opcode,
    /// The masking key, present on every frame a client sends.
    pub mask: Option<[u8; 4]>,
    /// Payload bytes that follow the header.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Decodes the header at the start of `buf`.
    ///
    /// - `Ok(Some((header, header_len)))`: the payload starts at `header_len`;
    /// - `Ok(None)`: `buf` holds only part of a header;
    /// - `Err(_)`: not a valid header, whatever follows.
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let [first, second, ..] = *buf else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        let opcode = Opcode::from_bits(first & 0x0F).ok_or(ProtocolError::ReservedOpcode(first & 0x0F))?;
        let fin = first & 0x80 != 0;
        let masked = second & 0x80 != 0;
        let length7 = second & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControl);
            }
            // 126 and 127 announce an extended length: over 125 either way.
            if usize::from(length7) > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlTooLong { length: u64::from(length7) });
            }
        }

        let (payload_len, mut at) = match length7 {
            126 => match buf.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
                _ => return Ok(None),
            },
            127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                Some(bytes) => (u64::from_be_bytes(bytes), 10),
                None => return Ok(None),
            },
            short => (u64::from(short), 2),
        };
        let mask = if masked {
            match buf.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                Some(key) => {
                    at += 4;
                    Some(key)
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some((FrameHeader { fin, opcode, mask, payload_len }, at)))
    }

    /// Appends the header, in the shortest length form, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let fin = if self.fin { 0x80 } else { 0 };
        let masked = if self.mask.is_some() { 0x80 } else { 0 };
        out.push(fin | self.opcode.bits());
        match self.payload_len {
            len @ 0..=125 => out.push(masked | len as u8),
            len @ 126..=0xFFFF => {
                out.push(masked | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(masked | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        if let Some(key) = self.mask {
            out.extend_from_slice(&key);
        }
    }
}

/// Appends a whole frame to `out`: the header, then `payload`, masked with
/// `mask` if one is given (a client's frames; `None` for a server's).
pub fn encode_frame(out: &mut Vec<u8>, fin: bool, opcode: Opcode, mask: Option<[u8; 4]>, payload: &[u8]) {
    out.reserve(MAX_HEADER_LEN + payload.len());
    FrameHeader { fin, opcode, mask, payload_len: payload.len() as u64 }.encode(out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// XORs `bytes` with the masking key in place; `offset` is the position of
/// `bytes[0]` in the frame's payload. Masking twice restores the input.
pub fn apply_mask(bytes: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that it starts at `offset`, then go 4 bytes at a
    // time (the compiler vectorizes this loop).
    let key: [u8; 4] = std::array::from_fn(|i| key[(offset + i) % 4]);
    let word_key = u32::from_ne_bytes(key);
    let mut words = bytes.chunks_exact_mut(4);
    for word in &mut words {
        let value = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]) ^ word_key;
        word.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, k) in words.into_remainder().iter_mut().zip(key) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(fin: bool, opcode: Opcode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, fin, opcode, mask, payload);
        out
    }

    /// The examples of RFC 6455 §5.7, byte for byte.
    #[test]
    fn rfc_examples_encode_exactly() {
        let key = Some([0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(frame(true, Opcode::Text, None, b"Hello"), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(
            frame(true, Opcode::Text, key, b"Hello"),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        assert_eq!(frame(false, Opcode::Text, None, b"Hel"), [0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert_eq!(frame(true, Opcode::Continuation, None, b"lo"), [0x80, 0x02, 0x6c, 0x6f]);
        assert_eq!(frame(true, Opcode::Ping, None, b"Hello")[..2], [0x89, 0x05]);
        assert_eq!(
            frame(true, Opcode::Pong, key, b"Hello"),
            [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        assert_eq!(frame(true, Opcode::Binary, None, &[0; 256])[..4], [0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(frame(true, Opcode::Binary, None, &[0; 65536])[..10], [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn decode_reads_every_length_form_and_waits_for_the_whole_header() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let wire = frame(true, Opcode::Binary, Some([1, 2, 3, 4]), &vec![7; len]);
            let (header, used) = FrameHeader::decode(&wire).unwrap().unwrap();
            assert_eq!(used, header_len + 4);
            assert_eq!(
                header,
                FrameHeader { fin: true, opcode: Opcode::Binary, mask: Some([1, 2, 3, 4]), payload_len: len as u64 }
            );
            for cut in 0..used {
                assert_eq!(FrameHeader::decode(&wire[..cut]), Ok(None), "length {len}, cut at {cut}");
            }
        }
    }

    #[test]
    fn reserved_bits_and_opcodes_are_refused_from_the_first_byte() {
        for first in [0xC2, 0xA2, 0x92] {
            assert_eq!(FrameHeader::decode(&[first, 0]), Err(ProtocolError::ReservedBits));
        }
        for opcode in [3, 7, 0xB, 0xF] {
            assert_eq!(FrameHeader::decode(&[0x80 | opcode, 0]), Err(ProtocolError::ReservedOpcode(opcode)));
        }
    }

    #[test]
    fn control_frames_must_be_short_and_final() {
        assert_eq!(FrameHeader::decode(&[0x09, 0x00]), Err(ProtocolError::FragmentedControl));
        assert_eq!(FrameHeader::decode(&[0x89, 126]), Err(ProtocolError::ControlTooLong { length: 126 }));
        assert_eq!(FrameHeader::decode(&[0x88, 127]), Err(ProtocolError::ControlTooLong { length: 127 }));
        assert!(FrameHeader::decode(&[0x8A, 125]).unwrap().is_some());
    }

    #[test]
    fn close_codes_that_may_be_sent() {
        for code in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(close_code::is_valid(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert!(!close_code::is_valid(code), "{code}");
        }
    }

    proptest! {
        #[test]
        fn header_round_trips(
            fin: bool,
            opcode in prop::sample::select(vec![Opcode::Continuation, Opcode::Text, Opcode::Binary]),
            mask: Option<[u8; 4]>,
            payload_len in prop_oneof![0u64..300, 65_000u64..70_000, any::<u64>()],
        ) {
            let header = FrameHeader { fin, opcode, mask, payload_len };
            let mut wire = Vec::new();
            header.encode(&mut wire);
            prop_assert!(wire.len() <= MAX_HEADER_LEN);
            prop_assert_eq!(FrameHeader::decode(&wire), Ok(Some((header, wire.len()))));
        }

        #[test]
        fn masking_in_pieces_equals_masking_whole(
            payload in prop::collection::vec(any::<u8>(), 0..64),
            key: [u8; 4],
            cut in any::<prop::sample::Index>(),
        ) {
            let mut whole = payload.clone();
            apply_mask(&mut whole, key, 0);
            let expected: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
            prop_assert_eq!(&whole, &expected);
            let cut = cut.index(payload.len() + 1);
            let mut pieces = payload.clone();
            let (a, b) = pieces.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut);
            prop_assert_eq!(&pieces, &expected);
            apply_mask(&mut pieces, key, 0);
            prop_assert_eq!(pieces, payload);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..20)) {
            if let Ok(Some((header, used))) = FrameHeader::decode(&bytes) {
                prop_assert!(used <= bytes.len() && used <= MAX_HEADER_LEN);
                prop_assert!(!header.opcode.is_control() || header.payload_len <= MAX_CONTROL_PAYLOAD as u64);
            }
        }
    }
}

//! Fault injection: the ways a real network and a real server misbehave,
//! on demand, so that clients can be tested against them.
//!
//! All faults are off by default and each is one field of [`Faults`] (one
//! `barrage serve` flag). Where a fault involves chance (the sizes of
//! fragments) it draws from the simulator's seeded generator, so a run can
//! be repeated exactly.
//!
//! | fault | what the client sees | what it tests |
//! |---|---|---|
//! | `fragment` | each frame arrives in pieces of 1–40 bytes, each its own TCP segment | reassembly across reads |
//! | `coalesce` | room messages arrive in bursts of many frames per read | cutting several frames out of one read |
//! | `drop_every` | the server closes the connection after N room messages | reconnecting |
//! | `corrupt_every` | after N room messages, one invalid frame (see [`Corruption`]) | refusing bad input without crashing |
//! | `stall_after` | after N room messages, silence: no more bytes, socket open | the client's idle timeout |
//!
//! How each one is carried out is in `sim::outbox`, the per-client write
//! path. Over WebSocket (`--ws`) they all still apply to the Douyu bytes,
//! inside well-formed messages; [`WsFault`] breaks the WebSocket itself.

use crate::douyu::frame::{self, CLIENT_TO_SERVER, LENGTH_OVERHEAD, SERVER_TO_CLIENT};

/// Which faults to inject. `Default` is none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Write every frame in random pieces of 1 to [`MAX_PIECE`] bytes, one
    /// piece per write syscall (and so one TCP segment: `TCP_NODELAY` is set).
    pub fragment: bool,
    /// Hold room messages back and write them in bursts: every
    /// [`COALESCE_INTERVAL_MS`] ms, or as soon as [`COALESCE_FRAMES`] are held.
    pub coalesce: bool,
    /// Close the connection after this many room messages (written first).
    pub drop_every: Option<u64>,
    /// After this many room messages, send one invalid frame and close.
    pub corrupt_every: Option<u64>,
    /// After this many room messages, write nothing more to the client
    /// (not even heartbeat echoes) but keep the socket open and reading.
    pub stall_after: Option<u64>,
}

impl Faults {
    /// True if any fault is on.
    pub fn any(&self) -> bool {
        *self != Faults::default()
    }

    /// `Err` with a message if a count is zero (it would mean "at once, forever").
    pub fn validate(&self) -> Result<(), crate::settings::SettingError> {
        for (name, value) in
            [("drop_every", self.drop_every), ("corrupt_every", self.corrupt_every), ("stall_after", self.stall_after)]
        {
            if value == Some(0) {
                return Err(crate::settings::SettingError::new(name, format!("{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

/// Largest piece `fragment` writes, in bytes.
pub const MAX_PIECE: u64 = 40;
/// How often `coalesce` flushes what it holds.
pub const COALESCE_INTERVAL_MS: u64 = 200;
/// `coalesce` flushes at once when it holds this many frames.
pub const COALESCE_FRAMES: u32 = 64;

/// One way to break the WebSocket layer itself (`--ws-fault`), for clients
/// to prove they notice. Carried out in `sim::transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsFault {
    /// Every frame the server sends is masked, as only clients may: the
    /// client must fail the connection at the first one (the answer to
    /// `loginreq`).
    MaskedFrame,
    /// The answer to `loginreq` is the header of a 4 GiB binary frame, and
    /// nothing follows it (anything would be read as its payload). The
    /// client must refuse it from the header alone: one that waits for the
    /// payload waits forever.
    OversizedFrame,
    /// The upgrade is answered with `403 Forbidden`, then the server closes.
    RejectUpgrade,
    /// The `101` carries a wrong `Sec-WebSocket-Accept`; the server then
    /// goes on as if all were well.
    BadAccept,
    /// The server reads the upgrade request, writes the first line of a
    /// `101`, and then nothing: the socket stays open.
    StallHandshake,
}

/// The length the `OversizedFrame` header announces: 4 GiB.
pub const OVERSIZED_FRAME_LENGTH: u64 = 4 << 30;

impl WsFault {
    pub const ALL: [WsFault; 5] = [
        WsFault::MaskedFrame,
        WsFault::OversizedFrame,
        WsFault::RejectUpgrade,
        WsFault::BadAccept,
        WsFault::StallHandshake,
    ];

    /// Its `--ws-fault` value.
    pub fn name(self) -> &'static str {
        match self {
            WsFault::MaskedFrame => "masked-frame",
            WsFault::OversizedFrame => "oversized-frame",
            WsFault::RejectUpgrade => "reject-upgrade",
            WsFault::BadAccept => "bad-accept",
            WsFault::StallHandshake => "stall-handshake",
        }
    }

    /// What the client sees, in one line (for `--help`).
    pub fn what_the_client_sees(self) -> &'static str {
        match self {
            WsFault::MaskedFrame => "every server frame is masked, from the answer to loginreq on",
            WsFault::OversizedFrame => "the answer to loginreq is a 4 GiB frame header, and nothing after it",
            WsFault::RejectUpgrade => "the upgrade is answered 403 Forbidden; then a close",
            WsFault::BadAccept => "the 101 carries a wrong Sec-WebSocket-Accept",
            WsFault::StallHandshake => "the first line of a 101, then silence (the socket stays open)",
        }
    }

    /// The fault whose `--ws-fault` value is `name`.
    pub fn from_name(name: &str) -> Option<WsFault> {
        Self::ALL.into_iter().find(|fault| fault.name() == name)
    }
}

/// The invalid frames `corrupt_every` sends, in the order it cycles through
/// them. Each is caught by a different check of `frame::decode_packet`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// A header announcing a 2 MiB packet, and no body: a client must refuse
    /// it from the 12-byte header alone instead of buffering 2 MiB.
    Oversized,
    /// The two copies of the length differ.
    LengthMismatch,
    /// A well-formed packet of type 689, which only clients send.
    WrongType,
    /// A well-formed packet whose last byte is not the `\0` terminator.
    MissingTerminator,
}

impl Corruption {
    /// The kinds in cycling order.
    pub const ALL: [Corruption; 4] =
        [Corruption::Oversized, Corruption::LengthMismatch, Corruption::WrongType, Corruption::MissingTerminator];

    /// The `n`-th kind of the cycle (0-based).
    pub fn nth(n: u64) -> Corruption {
        Self::ALL[(n % Self::ALL.len() as u64) as usize]
    }

    /// The bad bytes.
    pub fn frame(self) -> Vec<u8> {
        const BODY: &str = "type@=chatmsg/txt@=this frame is broken/";
        let mut out = Vec::new();
        match self {
            Corruption::Oversized => {
                let length = (2u32 * 1024 * 1024).to_le_bytes();
                header(&mut out, length, length, SERVER_TO_CLIENT);
            }
            Corruption::LengthMismatch => {
                let length = (BODY.len() + LENGTH_OVERHEAD) as u32;
                header(&mut out, length.to_le_bytes(), (length + 1).to_le_bytes(), SERVER_TO_CLIENT);
                out.extend_from_slice(BODY.as_bytes());
                out.push(0);
            }
            Corruption::WrongType => frame::encode_packet(&mut out, CLIENT_TO_SERVER, BODY),
            Corruption::MissingTerminator => {
                frame::encode_packet(&mut out, SERVER_TO_CLIENT, BODY);
                *out.last_mut().expect("a packet is never empty") = b'!';
            }
        }
        out
    }
}

/// The 12-byte header with the given fields, flags zero.
fn header(out: &mut Vec<u8>, first: [u8; 4], second: [u8; 4], packet_type: u16) {
    out.extend_from_slice(&first);
    out.extend_from_slice(&second);
    out.extend_from_slice(&packet_type.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::douyu::frame::{DecoderConfig, FrameError, HEADER_LEN, decode_packet};

    #[test]
    fn each_corruption_trips_its_own_check() {
        let client = DecoderConfig::client();
        let got: Vec<FrameError> =
            Corruption::ALL.iter().map(|c| decode_packet(&c.frame(), &client).unwrap_err()).collect();
        assert!(matches!(got[0], FrameError::LengthTooLong { length: 2_097_152, .. }));
        assert!(matches!(got[1], FrameError::LengthMismatch { .. }));
        assert!(matches!(got[2], FrameError::UnexpectedType { found: 689, expected: 690 }));
        assert!(matches!(got[3], FrameError::MissingTerminator { found: b'!' }));
        assert_eq!(Corruption::Oversized.frame().len(), HEADER_LEN, "no body follows the huge length");
        assert_eq!(Corruption::nth(5), Corruption::LengthMismatch);
    }

    #[test]
    fn zero_counts_are_refused() {
        assert!(Faults::default().validate().is_ok());
        assert!(!Faults::default().any());
        let faults = Faults { stall_after: Some(0), ..Faults::default() };
        assert_eq!(faults.validate().unwrap_err().to_string(), "stall_after must be at least 1");
        assert!(Faults { coalesce: true, ..Faults::default() }.any());
    }

    #[test]
    fn websocket_faults_are_found_by_their_flag_value() {
        for fault in WsFault::ALL {
            assert_eq!(WsFault::from_name(fault.name()), Some(fault));
        }
        assert_eq!(WsFault::from_name("masked"), None);
    }
}

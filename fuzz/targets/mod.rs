//! The bodies of the fuzz targets: one function per parser that reads bytes
//! from the network (or text from a file), each taking any bytes at all.
//!
//! Two programs run them: the fuzzer binaries in `fuzz/fuzz_targets/` (one
//! line each) and the replay test `tests/fuzz_corpus.rs`, which runs every
//! committed corpus and crash file through the same functions in a plain
//! `cargo test`. One body serves both, so a corpus file means the same
//! thing to the fuzzer and to CI.
//!
//! Not panicking is the least a target asks. Each also checks what the
//! parser's caller relies on: nothing consumed beyond what was offered,
//! what is left over bounded by the limits, the same result however the
//! bytes were split into reads (the fuzzer picks the cuts), and decode ∘
//! encode round trips where an encoder exists.
//!
//! | target | parser |
//! |---|---|
//! | `frame` | `douyu::frame::decode_packet`, `FrameDecoder` |
//! | `stt` | `douyu::stt::decode_map`, `decode_list`, `Message::decode`, `view` |
//! | `session` | `douyu::ClientSession` on a fake clock |
//! | `http_request` | `http::server::parse_request_head`, as the metrics endpoint calls it |
//! | `http_response` | `http::ResponseDecoder` |
//! | `http_chunked` | `http::chunked::ChunkedDecoder` |
//! | `websocket` | `websocket::WebSocket`, client and server |
//! | `config` | `cli::check_config` |
#![forbid(unsafe_code)]

mod douyu;
mod http;
mod websocket;

pub use douyu::{frame, session, stt};
pub use http::{http_chunked, http_request, http_response};
pub use websocket::websocket;

/// A target's body: any bytes in, a panic if a check fails.
pub type Target = fn(&[u8]);

/// Every target by name, for the replay test: the name is the folder of
/// its corpus (`fuzz/corpus/NAME`) and of its crash files
/// (`fuzz/regressions/NAME`), and the fuzzer binary's name.
pub const TARGETS: [(&str, Target); 8] = [
    ("frame", frame),
    ("stt", stt),
    ("session", session),
    ("http_request", http_request),
    ("http_response", http_response),
    ("http_chunked", http_chunked),
    ("websocket", websocket),
    ("config", config),
];

/// `cli::check_config`: any text is refused or accepted, and a refusal is
/// the one line `barrage watch` prints, naming the file (and the line and
/// column, where the parser knows them).
pub fn config(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    if let Err(message) = barrage::cli::check_config(&text) {
        assert!(message.starts_with("config:"), "{message:?}");
        assert!(!message.contains(['\n', '\r']), "an error is one line: {message:?}");
    }
}

/// A target's input, read as settings, choices and data:
///
/// ```text
///  byte 0      settings: each target says what its bits choose (limits, a role)
///  byte 1      n: how many choice bytes follow (the byte's value mod 65)
///  n bytes     choices: where to cut the data into reads, or steps to take
///  the rest    the data: the bytes that arrive
/// ```
///
/// Missing bytes read as zero settings and no choices, so every input is a
/// valid script, and a seed is a real capture behind three bytes.
pub struct Script<'a> {
    pub settings: u8,
    pub choices: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> Script<'a> {
    pub fn parse(input: &'a [u8]) -> Script<'a> {
        let (settings, rest) = input.split_first().map_or((0, input), |(&b, rest)| (b, rest));
        let (count, rest) = rest.split_first().map_or((0, rest), |(&b, rest)| (usize::from(b % 65), rest));
        let (choices, data) = rest.split_at(count.min(rest.len()));
        Script { settings, choices, data }
    }

    /// The data cut into reads: one of `choice` bytes per choice (0: a
    /// read that brought nothing new), then the rest in one.
    pub fn pieces(&self) -> Vec<&'a [u8]> {
        let mut rest = self.data;
        let mut pieces = Vec::with_capacity(self.choices.len() + 1);
        for &choice in self.choices {
            let (piece, after) = rest.split_at(usize::from(choice).min(rest.len()));
            pieces.push(piece);
            rest = after;
        }
        pieces.push(rest);
        pieces
    }
}

/// A connection's read buffer as the reactor keeps it: each read appends to
/// what the handler left last time, the handler sees all of it and says how
/// much it consumed, and only the rest is kept.
#[derive(Default)]
pub struct ReadBuffer {
    pending: Vec<u8>,
    consumed: usize,
}

impl ReadBuffer {
    /// Appends `piece`, offers everything unconsumed to `read`, and keeps
    /// what it did not use. Returns how many bytes are left.
    pub fn push(&mut self, piece: &[u8], read: impl FnOnce(&[u8]) -> usize) -> usize {
        self.pending.extend_from_slice(piece);
        let used = read(&self.pending);
        assert!(used <= self.pending.len(), "consumed {used} of the {} bytes offered", self.pending.len());
        self.pending.drain(..used);
        self.consumed += used;
        self.pending.len()
    }

    /// Bytes consumed by all calls so far.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// Bytes received and not consumed yet.
    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

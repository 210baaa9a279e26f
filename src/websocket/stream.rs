//! Binary payloads as one byte stream, handed to a reader that takes what it
//! can use.
//!
//! Douyu cuts its own packets out of the concatenated binary payloads: a
//! packet may span two messages and one message may hold several. So the
//! connection does not collect messages; it offers payload bytes, as they
//! arrive, to a *reader* — a closure `FnMut(&[u8]) -> usize` that consumes
//! whole packets from the front and returns how many bytes it used, exactly
//! the contract of `douyu::ClientSession::on_bytes`.
//!
//! Copies: while nothing is left over, an unmasked chunk is offered straight
//! from the caller's input (no copy at all) and only the reader's leftover —
//! the start of a packet whose end is in a later frame — is kept here. Once
//! something is left over, new bytes are appended behind it (one copy) and
//! the whole is offered again. A masked chunk (what a server receives) must
//! be unmasked, so it is always copied once.
//!
//! Memory: what the reader leaves is bounded by `max_unread`. A reader that
//! consumes every whole packet leaves less than one packet, so the bound
//! only stops a reader that stalls (or a packet larger than it could ever
//! take).

use super::frame::apply_mask;

/// Capacity kept once the stream empties; a burst's larger buffer is freed,
/// so idle connections hold no memory (as `reactor::buffer` does).
const KEEP_CAPACITY: usize = 4 * 1024;

/// Payload bytes the reader has not consumed yet.
#[derive(Debug)]
pub(super) struct PayloadStream {
    unread: Vec<u8>,
    max_unread: usize,
}

impl PayloadStream {
    pub(super) fn new(max_unread: usize) -> Self {
        PayloadStream { unread: Vec::new(), max_unread }
    }

    /// Offers the unread bytes followed by `chunk` to `read`. `mask` is the
    /// chunk's masking key and the position of `chunk[0]` in its frame's
    /// payload. Fails with the number of unread bytes if more than
    /// `max_unread` are left.
    pub(super) fn deliver<R>(&mut self, chunk: &[u8], mask: Option<([u8; 4], usize)>, read: &mut R) -> Result<(), usize>
    where
        R: FnMut(&[u8]) -> usize,
    {
        if chunk.is_empty() {
            return Ok(());
        }
        match mask {
            None if self.unread.is_empty() => {
                let used = read(chunk).min(chunk.len());
                self.unread.extend_from_slice(&chunk[used..]);
            }
            _ => {
                let start = self.unread.len();
                self.unread.extend_from_slice(chunk);
                if let Some((key, offset)) = mask {
                    apply_mask(&mut self.unread[start..], key, offset);
                }
                let used = read(&self.unread).min(self.unread.len());
                self.consume(used);
            }
        }
        if self.unread.len() > self.max_unread {
            return Err(self.unread.len());
        }
        Ok(())
    }

    /// Bytes the reader left for later.
    pub(super) fn unread(&self) -> usize {
        self.unread.len()
    }

    /// Forgets everything (the connection failed).
    pub(super) fn clear(&mut self) {
        self.unread = Vec::new();
    }

    fn consume(&mut self, used: usize) {
        if used == self.unread.len() {
            self.unread.clear();
            if self.unread.capacity() > KEEP_CAPACITY {
                self.unread = Vec::new();
            }
        } else {
            // Only a partial packet remains: the move is small.
            self.unread.drain(..used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of 4-byte records: takes whole records only, as Douyu's
    /// session takes whole packets.
    fn records(seen: &mut Vec<Vec<u8>>) -> impl FnMut(&[u8]) -> usize + '_ {
        |data: &[u8]| {
            let whole = data.len() / 4 * 4;
            seen.extend(data[..whole].chunks(4).map(<[u8]>::to_vec));
            whole
        }
    }

    #[test]
    fn whole_records_pass_through_and_leftovers_wait_for_the_rest() {
        let mut seen = Vec::new();
        let mut stream = PayloadStream::new(100);
        let mut read = records(&mut seen);
        stream.deliver(b"abcdefgh", None, &mut read).unwrap();
        assert_eq!(stream.unread(), 0, "whole records leave nothing behind");
        stream.deliver(b"ijk", None, &mut read).unwrap();
        assert_eq!(stream.unread(), 3);
        stream.deliver(b"lmnopq", None, &mut read).unwrap();
        assert_eq!(stream.unread(), 1);
        drop(read);
        assert_eq!(seen, [b"abcd", b"efgh", b"ijkl", b"mnop"]);
    }

    #[test]
    fn masked_chunks_are_unmasked_at_their_offset() {
        let key = [1, 2, 3, 4];
        let mut wire = b"abcdefgh".to_vec();
        apply_mask(&mut wire, key, 0);
        let mut seen = Vec::new();
        let mut stream = PayloadStream::new(100);
        let mut read = records(&mut seen);
        stream.deliver(&wire[..3], Some((key, 0)), &mut read).unwrap();
        stream.deliver(&wire[3..], Some((key, 3)), &mut read).unwrap();
        drop(read);
        assert_eq!(seen, [b"abcd", b"efgh"]);
        assert_eq!(stream.unread(), 0);
    }

    #[test]
    fn a_reader_that_stalls_is_stopped_at_the_bound() {
        let mut stream = PayloadStream::new(10);
        let mut stalled = |_: &[u8]| 0;
        stream.deliver(&[0; 10], None, &mut stalled).unwrap();
        assert_eq!(stream.deliver(&[0; 1], None, &mut stalled), Err(11));
        // A reader claiming more than it was offered cannot underflow anything.
        let mut greedy = PayloadStream::new(10);
        greedy.deliver(&[0; 5], None, &mut |_: &[u8]| 99).unwrap();
        assert_eq!(greedy.unread(), 0);
    }
}

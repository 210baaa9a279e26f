//! Per-connection byte buffers.
//!
//! A non-blocking socket accepts only what fits in the kernel's send buffer,
//! so `write` may take part of what we offer (a *partial write*). The
//! [`WriteBuffer`] keeps the rest, in order, until the socket is writable
//! again. Reading works the other way round: the reactor reads into one
//! loop-wide scratch buffer, and a connection keeps only the bytes its
//! dispatcher did not consume yet (half a frame, say) in a [`ReadBuffer`].
//!
//! Both release their memory when they are empty and were grown by a burst,
//! so ten thousand idle connections hold no buffer memory at all.

use std::io::{self, Write};

/// Capacity kept after a buffer empties; anything above it is given back.
/// Small enough that idle connections cost nothing, large enough that a
/// steady trickle of small messages does not reallocate every time.
const KEEP_CAPACITY: usize = 4 * 1024;

/// Bytes queued for a socket, written out in order across partial writes.
///
/// Appending is amortised O(1). Bytes already written are not shifted out on
/// every partial write (that would be O(n²) under a slow peer); a `start`
/// offset skips them, and they are dropped when the buffer empties or when
/// the dead prefix is larger than the live part.
#[derive(Debug, Default)]
pub struct WriteBuffer {
    bytes: Vec<u8>,
    /// Bytes before `start` have been written already.
    start: usize,
}

impl WriteBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes still waiting to be written.
    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `data` behind whatever is pending.
    pub fn extend(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
    }

    /// The pending bytes, oldest first.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// Marks `n` pending bytes as written.
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.len(), "consumed more than was pending");
        self.start += n;
        if self.start == self.bytes.len() {
            self.clear();
        } else if self.start > self.len() {
            // The dead prefix outweighs the live bytes: move the live bytes
            // down once, so the buffer never holds more dead than live data.
            self.bytes.drain(..self.start);
            self.start = 0;
        }
    }

    /// Drops everything pending and releases burst capacity.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.start = 0;
        if self.bytes.capacity() > KEEP_CAPACITY {
            self.bytes = Vec::new();
        }
    }

    /// Writes as much as `sink` takes. Returns the bytes written and whether
    /// the sink is still ready: `false` once it reported `WouldBlock` or took
    /// only part of what was offered (its buffer is full, so another
    /// readiness event will come when there is room again).
    ///
    /// `Interrupted` is retried; any other error is returned.
    pub fn write_to<W: Write>(&mut self, sink: &mut W, syscalls: &mut u64) -> io::Result<(usize, bool)> {
        let mut written = 0;
        while !self.is_empty() {
            *syscalls += 1;
            match sink.write(self.as_slice()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let offered = self.len();
                    self.consume(n);
                    written += n;
                    if n < offered {
                        return Ok((written, false));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((written, false)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok((written, true))
    }
}

/// Received bytes a dispatcher has not consumed yet.
///
/// Usually empty: the reactor hands freshly read bytes straight from its
/// scratch buffer, and only a leftover (an incomplete frame) is copied here.
#[derive(Debug, Default)]
pub struct ReadBuffer {
    bytes: Vec<u8>,
}

impl ReadBuffer {
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    pub fn extend(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
    }

    /// Drops the first `n` bytes (those the dispatcher consumed).
    pub fn consume(&mut self, n: usize) {
        if n >= self.bytes.len() {
            self.bytes.clear();
            if self.bytes.capacity() > KEEP_CAPACITY {
                self.bytes = Vec::new();
            }
        } else if n > 0 {
            self.bytes.drain(..n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `chunk` bytes per call, then blocks after
    /// `calls_before_block` calls: a stand-in for a full kernel buffer.
    struct SlowSink {
        taken: Vec<u8>,
        chunk: usize,
        calls_before_block: usize,
    }

    impl Write for SlowSink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.calls_before_block == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_before_block -= 1;
            let n = data.len().min(self.chunk);
            self.taken.extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_remainder() {
        let mut buf = WriteBuffer::new();
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        buf.extend(&data);
        let mut sink = SlowSink { taken: Vec::new(), chunk: 3_000, calls_before_block: 1 };
        let mut calls = 0;

        let (n, ready) = buf.write_to(&mut sink, &mut calls).unwrap();
        assert_eq!((n, ready), (3_000, false), "a short write means the socket is full");
        assert_eq!(buf.len(), 7_000);

        // More data queued behind the remainder must come out after it.
        buf.extend(b"tail");
        sink.calls_before_block = 100;
        // Each short write stops the attempt (the reactor waits for the next
        // writable edge); three more edges drain 3000 + 3000 + 1004 bytes.
        let mut attempts = Vec::new();
        while !buf.is_empty() {
            attempts.push(buf.write_to(&mut sink, &mut calls).unwrap());
        }
        assert_eq!(attempts, vec![(3_000, false), (3_000, false), (1_004, true)]);
        let mut expected = data.clone();
        expected.extend_from_slice(b"tail");
        assert_eq!(sink.taken, expected);
        assert!(buf.is_empty());
    }

    #[test]
    fn would_block_keeps_everything() {
        let mut buf = WriteBuffer::new();
        buf.extend(b"hello");
        let mut sink = SlowSink { taken: Vec::new(), chunk: 10, calls_before_block: 0 };
        let mut calls = 0;
        assert_eq!(buf.write_to(&mut sink, &mut calls).unwrap(), (0, false));
        assert_eq!(buf.as_slice(), b"hello");
        assert_eq!(calls, 1);
    }

    #[test]
    fn empty_buffer_releases_burst_capacity() {
        let mut buf = WriteBuffer::new();
        buf.extend(&vec![7u8; 1 << 20]);
        buf.consume(1 << 20);
        assert!(buf.is_empty());
        assert!(buf.bytes.capacity() <= KEEP_CAPACITY);

        let mut read = ReadBuffer::default();
        read.extend(&vec![1u8; 1 << 20]);
        read.consume(1 << 20);
        assert!(read.bytes.capacity() <= KEEP_CAPACITY);
    }

    #[test]
    fn dead_prefix_never_outweighs_live_bytes() {
        let mut buf = WriteBuffer::new();
        buf.extend(&[0u8; 100]);
        for _ in 0..99 {
            buf.consume(1);
            assert!(buf.start <= buf.len() + 1);
        }
        assert_eq!(buf.len(), 1);
    }
}

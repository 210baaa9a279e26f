//! Where output lines land, written so that no destination ever holds part
//! of a line.
//!
//! A line is torn when a write stops in its middle and nothing ever
//! finishes it: the disk fills, the file is rotated away, or the process
//! exits while a write waits for a slow reader. Each kind of destination
//! needs its own answer:
//!
//! - **A regular file** takes a write whole unless something fails (a full
//!   disk, an I/O error). The bytes of a line cut short that way are
//!   remembered ([`Sink::partial_line`]) and truncated away before the file
//!   is left, by a reopen or at exit, so the file ends at its last complete
//!   line and the whole line goes to the next file.
//! - **A pipe** (or FIFO) is only ever given whole lines that fit in its
//!   free space, measured before each write (`FIONREAD` against the pipe's
//!   size), so a write never waits half way through a line for the reader.
//!   If the next line does not fit, the writer waits for room instead. A
//!   line larger than the pipe grows the pipe (up to the system's limit);
//!   only a line larger than that is written in parts.
//! - **Anything else** (a terminal, a socket) gets line-aligned chunks of at
//!   most [`CHUNK`] bytes; at exit the writer finishes the chunk under way.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

/// Where the lines are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    /// Appended to; reopened on request (log rotation).
    File(PathBuf),
    /// Discarded after being written through the same code (benchmarks).
    Null,
}

/// The most a terminal or socket is given in one write.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Room left unused in a pipe: its buffer is counted in pages, and a page
/// the reader has begun is not reusable until it is read to the end.
const PIPE_SLACK: usize = 2 * 4096;

/// The result of one [`Sink::write`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wrote {
    /// This many bytes went out (maybe fewer than offered).
    Bytes(usize),
    /// A pipe has no room for the next whole line: wait, then try again.
    NoRoom,
}

/// An open destination.
pub(crate) struct Sink {
    target: Target,
    /// Bytes of a line that went out before a write failed; the rest of
    /// that line is still to be written (or the part truncated away).
    partial_line: usize,
}

enum Target {
    File(File),
    Pipe(File),
    Stream(File),
    Null,
}

impl Sink {
    /// Opens `destination`: a file is created if missing and appended to.
    /// (Opening a FIFO waits for a reader: call this off the loop thread.)
    pub(crate) fn open(destination: &Destination) -> io::Result<Sink> {
        let file = match destination {
            // A duplicate of fd 1, written directly: no buffering by std,
            // and the same file description, so shell redirections hold.
            Destination::Stdout => File::from(io::stdout().as_fd().try_clone_to_owned()?),
            Destination::File(path) => OpenOptions::new().create(true).append(true).open(path)?,
            Destination::Null => return Ok(Sink { target: Target::Null, partial_line: 0 }),
        };
        let kind = file.metadata()?.file_type();
        let target = if kind.is_file() {
            Target::File(file)
        } else if kind.is_fifo() {
            Target::Pipe(file)
        } else {
            Target::Stream(file)
        };
        Ok(Sink { target, partial_line: 0 })
    }

    /// Whether a write is a syscall (not for the null destination).
    pub(crate) fn is_real(&self) -> bool {
        !matches!(self.target, Target::Null)
    }

    /// Bytes of a line already written when a write failed.
    pub(crate) fn partial_line(&self) -> usize {
        self.partial_line
    }

    /// Writes from the front of `lines`, which holds whole lines (it ends
    /// with a newline) unless a line was cut short before: then it starts
    /// with that line's rest.
    pub(crate) fn write(&mut self, lines: &[u8]) -> io::Result<Wrote> {
        let (file, offer) = match &mut self.target {
            Target::Null => return Ok(Wrote::Bytes(lines.len())),
            Target::File(file) => (file, lines.len()),
            Target::Stream(file) => (file, line_aligned(lines, CHUNK)),
            Target::Pipe(file) => match pipe_offer(file, lines) {
                Some(offer) => (file, offer),
                None => return Ok(Wrote::NoRoom),
            },
        };
        let written = file.write(&lines[..offer])?;
        if written == 0 && offer > 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.partial_line = match lines[..written].iter().rposition(|&b| b == b'\n') {
            Some(end) => written - end - 1,
            None => self.partial_line + written,
        };
        Ok(Wrote::Bytes(written))
    }

    /// Leaves the destination at a line boundary: a regular file loses the
    /// start of a line cut short (its whole line is written again wherever
    /// writing goes on). Returns how many bytes were taken back, which the
    /// caller must write again: 0 if there was no cut line, or if the
    /// destination cannot be repaired (a pipe: its reader has the bytes).
    pub(crate) fn take_back_partial_line(&mut self) -> usize {
        let partial = std::mem::take(&mut self.partial_line);
        let Target::File(file) = &self.target else {
            return 0;
        };
        if partial == 0 {
            return 0;
        }
        let truncated = file.metadata().and_then(|m| file.set_len(m.len().saturating_sub(partial as u64)));
        match truncated {
            Ok(()) => partial,
            Err(e) => {
                log::error!("could not remove a cut line ({partial} bytes) from the output file: {e}");
                0
            }
        }
    }

    /// Waits, at most `limit`, for a pipe to have more room (a plain sleep
    /// for the other kinds, which never report [`Wrote::NoRoom`]).
    pub(crate) fn wait_for_room(&self, limit: std::time::Duration) {
        if let Target::Pipe(file) = &self.target {
            use rustix::event::{PollFd, PollFlags, Timespec, poll};
            let mut fds = [PollFd::new(file, PollFlags::OUT)];
            let timeout = Timespec::try_from(limit).ok();
            // "Writable" means a page is free, which may still be too little
            // for the next line; the caller sleeps a little between tries.
            let _ = poll(&mut fds, timeout.as_ref());
        }
    }
}

/// How much of `lines` fits in the pipe's free space, cut at a line end;
/// `None` if not even the first line fits now. A first line longer than the
/// pipe can ever hold grows the pipe, or, past the system's limit, is
/// offered in parts.
fn pipe_offer(pipe: &File, lines: &[u8]) -> Option<usize> {
    let (Ok(size), Ok(unread)) = (rustix::pipe::fcntl_getpipe_size(pipe), rustix::io::ioctl_fionread(pipe)) else {
        // Not measurable: fall back to line-aligned chunks.
        return Some(line_aligned(lines, CHUNK));
    };
    let free = size.saturating_sub(unread as usize + PIPE_SLACK);
    let fits = line_aligned(lines, free);
    if fits > 0 && fits <= free {
        return Some(fits);
    }
    let first_line = lines.iter().position(|&b| b == b'\n').map_or(lines.len(), |end| end + 1);
    if first_line + PIPE_SLACK <= size {
        return None; // it will fit once the reader makes room
    }
    match rustix::pipe::fcntl_setpipe_size(pipe, first_line + PIPE_SLACK) {
        Ok(_) => None,
        Err(_) if unread == 0 => Some(free.max(1).min(lines.len())),
        Err(_) => None,
    }
}

/// The longest prefix of `lines` of at most `max` bytes that ends at a line
/// end — or, if the first line alone is longer than `max`, that line.
fn line_aligned(lines: &[u8], max: usize) -> usize {
    if lines.len() <= max {
        return lines.len();
    }
    match lines[..max].iter().rposition(|&b| b == b'\n') {
        Some(end) => end + 1,
        None => lines.iter().position(|&b| b == b'\n').map_or(lines.len(), |end| end + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_end_at_a_line_end_unless_one_line_is_longer() {
        let lines = b"aaaa\nbb\ncccccc\n";
        assert_eq!(line_aligned(lines, 100), lines.len());
        assert_eq!(line_aligned(lines, 9), 8, "up to the end of bb");
        assert_eq!(line_aligned(lines, 5), 5);
        assert_eq!(line_aligned(lines, 3), 5, "the first line is longer: all of it");
        assert_eq!(line_aligned(b"no newline yet", 4), 14);
    }

    #[test]
    fn a_pipe_is_given_only_whole_lines_that_fit() {
        let (reader, writer) = rustix::pipe::pipe().unwrap();
        let mut sink = Sink { target: Target::Pipe(File::from(writer)), partial_line: 0 };
        let size = rustix::pipe::fcntl_getpipe_size(&reader).unwrap();
        let line = [b"x".repeat(999), b"\n".to_vec()].concat();
        let lines: Vec<u8> = line.repeat(size / 1000 * 3);
        let mut written = 0;
        // Fill the pipe: each write takes whole lines only; then no room.
        for _ in 0..1000 {
            match sink.write(&lines[written..]).unwrap() {
                Wrote::Bytes(n) => {
                    written += n;
                    assert_eq!(written % 1000, 0, "a write ended inside a line");
                }
                Wrote::NoRoom => break,
            }
        }
        assert!(written > 0 && written < lines.len(), "wrote {written} of {}", lines.len());
        assert_eq!(sink.partial_line(), 0);
        // The reader drains: room again, whole lines again.
        let mut drain = File::from(reader);
        let mut buf = vec![0; written];
        io::Read::read_exact(&mut drain, &mut buf).unwrap();
        assert!(matches!(sink.write(&lines[written..]).unwrap(), Wrote::Bytes(n) if n % 1000 == 0 && n > 0));
    }

    #[test]
    fn a_line_cut_short_in_a_file_is_taken_back() {
        let path = std::env::temp_dir().join(format!("barrage-sink-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut sink = Sink::open(&Destination::File(path.clone())).unwrap();
        assert_eq!(sink.write(b"whole\n").unwrap(), Wrote::Bytes(6));
        // As if the disk filled after 4 bytes of the next line.
        let Target::File(file) = &mut sink.target else { panic!("a regular file") };
        file.write_all(b"cut ").unwrap();
        sink.partial_line = 4;
        assert_eq!(sink.take_back_partial_line(), 4);
        assert_eq!(std::fs::read(&path).unwrap(), b"whole\n");
        assert_eq!(sink.take_back_partial_line(), 0, "once");
        let _ = std::fs::remove_file(&path);
    }
}

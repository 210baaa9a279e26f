//! One client's write path: how frames reach it, and the faults that change
//! how.
//!
//! Every byte the simulator sends a client goes through its [`Outbox`]:
//! replies (`loginres`, `mrkl`, …) through [`Outbox::reply`], room messages
//! through [`Outbox::room_frame`]. By default both simply queue the frame
//! on the reactor connection (`Reactor::send`), so every frame is written
//! whole, and all the frames one callback queues go out in one syscall.
//! With `--ws`, the frames pass through the client's WebSocket layer
//! (`sim::transport`) on their way to the wire.
//!
//! The faults hook in here:
//!
//! - **fragment** — the reactor writes everything a callback queued in one
//!   syscall, so to put each small piece in its own segment the outbox keeps
//!   its own queue and uses asyncore's *pull* pattern: while the queue is not
//!   empty the connection's dispatcher answers `writable() == true`, and each
//!   `handle_write` call (one per loop iteration, once the previous piece is
//!   written) sends one piece of 1–40 bytes ([`Outbox::write_piece`]).
//! - **coalesce** — room frames are held in `held` and queued together, by
//!   a periodic flush or when enough have piled up.
//! - **drop / corrupt / stall** — counted in room messages, checked after each.
//!
//! # Slow consumers
//!
//! The reactor buffers a connection's output without limit, so the outbox
//! bounds it: when a client's unwritten bytes (the reactor's queue, plus the
//! fragment queue, plus held frames) exceed `max_client_buffer`, the client
//! is dropped. Below the limit nothing is ever discarded, so a client that
//! pauses reading for a while loses nothing.

use std::net::SocketAddr;

use super::SimConfig;
use super::faults::{COALESCE_FRAMES, Corruption, MAX_PIECE};
use super::transport::{Grouping, WsLayer, WsRead};
use crate::plural::plural;
use crate::reactor::buffer::WriteBuffer;
use crate::reactor::{Context, EntryToken, Reactor};
use crate::rng::{Rng, derive_seed};
use crate::websocket::CloseReason;

/// What handing one room message to a client led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Queued.
    Sent,
    /// Not sent: the client is stalled or already closing.
    Skipped,
    /// Queued, and it was the last one before the `stall_after` silence.
    Stalled,
    /// Queued (unless the client was too slow), and the client is being
    /// closed: it must leave its room now.
    Closed(CloseCause),
}

/// Why the simulator closed a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseCause {
    /// Its unwritten output passed `max_client_buffer`.
    SlowConsumer,
    /// The `drop_every` fault.
    DropFault,
    /// The `corrupt_every` fault, with the kind of bad frame sent.
    Corrupted(Corruption),
}

/// Where a client's output stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Frames flow.
    Open,
    /// `stall_after` reached: nothing more is queued, the socket stays open.
    Stalled,
    /// Being closed: nothing more is queued.
    Closing,
}

/// One client's write path and fault counters.
#[derive(Debug)]
pub(crate) struct Outbox {
    id: EntryToken,
    peer: SocketAddr,
    /// The room this client joined.
    pub(crate) room: Option<u64>,
    phase: Phase,
    /// Room messages handed to this client so far.
    room_messages: u64,
    /// `coalesce`: room frames held back, and how many.
    held: Vec<u8>,
    held_frames: u32,
    /// `--ws`: the WebSocket around the frames (boxed: a plain client pays
    /// one pointer for it).
    websocket: Option<Box<WsLayer>>,
    wire: Wire,
}

/// The bottom of the write path: the reactor connection, or for `fragment`
/// a queue of our own that is written one small piece per write.
#[derive(Debug)]
struct Wire {
    /// `fragment`: output goes to `pieces` instead of the reactor.
    fragment: bool,
    /// `fragment`: bytes waiting to be written one small piece at a time.
    pieces: WriteBuffer,
    /// `fragment`: close once `pieces` is empty (a drop or corruption
    /// happened while pieces were still queued).
    close_when_drained: bool,
    /// Piece sizes for `fragment`, seeded per client.
    rng: Rng,
}

impl Wire {
    /// Queues bytes: on the reactor connection, or for `fragment` on our
    /// own piece queue, asking the reactor to call `writable()` again.
    fn write(&mut self, reactor: &mut Reactor, id: EntryToken, bytes: &[u8]) {
        if self.fragment {
            self.pieces.extend(bytes);
            reactor.refresh(id);
        } else {
            reactor.send(id, bytes);
        }
    }
}

impl Outbox {
    /// The outbox of connection `id`; `seed` decides its piece sizes and
    /// the WebSocket layer's cuts.
    pub(crate) fn new(id: EntryToken, peer: SocketAddr, config: &SimConfig, seed: u64) -> Self {
        let websocket = config.websocket.as_ref().map(|ws| Box::new(WsLayer::new(ws.fault, derive_seed(seed, 1))));
        Outbox {
            id,
            peer,
            room: None,
            phase: Phase::Open,
            room_messages: 0,
            held: Vec::new(),
            held_frames: 0,
            websocket,
            wire: Wire {
                fragment: config.faults.fragment,
                pieces: WriteBuffer::new(),
                close_when_drained: false,
                rng: Rng::new(seed),
            },
        }
    }

    /// Queues a reply (`loginres`, `pingreq`, a `mrkl` echo, `error`).
    /// Held room frames go first, so the wire keeps the order in which
    /// frames were made. Returns `Some(SlowConsumer)` if this dropped the
    /// client; does nothing once the client is stalled or closing.
    pub(crate) fn reply(&mut self, reactor: &mut Reactor, frame: &[u8], config: &SimConfig) -> Option<CloseCause> {
        if self.phase != Phase::Open {
            return None;
        }
        self.flush_held(reactor);
        self.write(reactor, frame, Grouping::PerPacket);
        self.check_backlog(reactor, config)
    }

    /// Hands one room message's frame to this client and applies the
    /// faults counted in room messages.
    pub(crate) fn room_frame(
        &mut self,
        reactor: &mut Reactor,
        frame: &[u8],
        config: &SimConfig,
        corruptions: &mut u64,
    ) -> Delivery {
        if self.phase != Phase::Open {
            return Delivery::Skipped;
        }
        self.room_messages += 1;
        if config.faults.coalesce {
            self.held.extend_from_slice(frame);
            self.held_frames += 1;
            if self.held_frames >= COALESCE_FRAMES {
                self.flush_held(reactor);
            }
        } else {
            self.write(reactor, frame, Grouping::PerPacket);
        }
        if let Some(cause) = self.check_backlog(reactor, config) {
            return Delivery::Closed(cause);
        }

        let count = self.room_messages;
        let every = |n: Option<u64>| n.is_some_and(|n| count.is_multiple_of(n));
        if every(config.faults.corrupt_every) {
            let corruption = Corruption::nth(*corruptions);
            *corruptions += 1;
            log::info!(
                "client {} ({}): sending a bad frame ({corruption:?}) after {} (--corrupt-every)",
                self.id,
                self.peer,
                plural(count, "room message")
            );
            self.flush_held(reactor);
            self.write(reactor, &corruption.frame(), Grouping::OneMessage);
            self.close(reactor);
            return Delivery::Closed(CloseCause::Corrupted(corruption));
        }
        if every(config.faults.drop_every) {
            log::info!(
                "client {} ({}): closing after {} (--drop-every)",
                self.id,
                self.peer,
                plural(count, "room message")
            );
            self.flush_held(reactor);
            self.close(reactor);
            return Delivery::Closed(CloseCause::DropFault);
        }
        if config.faults.stall_after == Some(count) {
            log::info!(
                "client {} ({}): stalling after {}: no more writes (--stall-after)",
                self.id,
                self.peer,
                plural(count, "room message")
            );
            self.flush_held(reactor);
            self.phase = Phase::Stalled;
            return Delivery::Stalled;
        }
        Delivery::Sent
    }

    /// `coalesce`: queues the held frames in one go (one write syscall).
    pub(crate) fn flush_held(&mut self, reactor: &mut Reactor) {
        if self.held.is_empty() {
            return;
        }
        // Taken out for the call (`write` borrows all of `self`), then put
        // back emptied, keeping its capacity for the next burst.
        let mut held = std::mem::take(&mut self.held);
        self.write(reactor, &held, Grouping::OneMessage);
        held.clear();
        self.held = held;
        self.held_frames = 0;
    }

    /// `coalesce`: whether frames are held.
    pub(crate) fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// `fragment`: true while pieces wait. The dispatcher's `writable()`.
    pub(crate) fn wants_write(&self) -> bool {
        !self.wire.pieces.is_empty()
    }

    /// `fragment`: sends the next piece, from the dispatcher's
    /// `handle_write`. The reactor calls that again only once this piece is
    /// written, on a later loop iteration, so every piece is its own write.
    pub(crate) fn write_piece(&mut self, ctx: &mut Context<'_>) {
        let wire = &mut self.wire;
        let size = (wire.rng.between(1, MAX_PIECE) as usize).min(wire.pieces.len());
        ctx.send(&wire.pieces.as_slice()[..size]);
        wire.pieces.consume(size);
        if wire.pieces.is_empty() && wire.close_when_drained {
            ctx.close();
        }
    }

    /// Starts a graceful close: what is queued is written first (for
    /// `fragment`, the last piece's `write_piece` closes).
    pub(crate) fn close(&mut self, reactor: &mut Reactor) {
        self.phase = Phase::Closing;
        if self.wire.pieces.is_empty() {
            reactor.close(self.id);
        } else {
            self.wire.close_when_drained = true;
        }
    }

    /// Queues Douyu bytes: framed by the WebSocket layer if there is one
    /// (`grouping` says how), then onto the wire.
    fn write(&mut self, reactor: &mut Reactor, douyu: &[u8], grouping: Grouping) {
        let (id, wire) = (self.id, &mut self.wire);
        let fragment = wire.fragment;
        let mut put = |bytes: &[u8]| wire.write(reactor, id, bytes);
        match self.websocket.as_deref_mut() {
            None => put(douyu),
            Some(ws) => ws.send(douyu, grouping, fragment, &mut put),
        }
    }

    // ----- the WebSocket layer ---------------------------------------------------

    /// `--ws`: reads the client's bytes through the WebSocket layer (see
    /// [`WsLayer::read`]) and closes the connection if the layer is over.
    /// A client that is stalled or closing gets no answers, not even pongs.
    pub(crate) fn read_websocket<R>(&mut self, reactor: &mut Reactor, data: &[u8], reader: R) -> WsRead
    where
        R: FnMut(&[u8]) -> usize,
    {
        let Some(ws) = self.websocket.as_deref_mut() else {
            return WsRead { consumed: data.len(), closed: None, pongs: 0 };
        };
        let (id, wire, open) = (self.id, &mut self.wire, self.phase == Phase::Open);
        let read = ws.read(data, reader, &mut |bytes| {
            if open {
                wire.write(reactor, id, bytes)
            }
        });
        if let Some(reason) = &read.closed {
            match reason {
                CloseReason::Handshake(error) => {
                    log::info!("client {id} ({}): not a WebSocket upgrade ({error}); refused", self.peer)
                }
                CloseReason::Protocol(_) | CloseReason::ReaderBacklog { .. } => {
                    log::info!("client {id} ({}): WebSocket {reason}; dropping this client", self.peer)
                }
                CloseReason::PeerClosed { .. } | CloseReason::LocallyClosed => {
                    log::debug!("client {id} ({}): WebSocket {reason}", self.peer)
                }
            }
            if self.phase != Phase::Closing {
                self.close(reactor);
            }
        }
        read
    }

    /// `--ws`: a ping, and a text frame after it if `text`. False if
    /// nothing was sent (not a WebSocket client, not open, or stalled).
    pub(crate) fn ping(&mut self, reactor: &mut Reactor, payload: &[u8], text: bool) -> bool {
        let Some(ws) = self.websocket.as_deref_mut().filter(|_| self.phase == Phase::Open) else {
            return false;
        };
        let (id, wire) = (self.id, &mut self.wire);
        ws.ping(payload, text, &mut |bytes| wire.write(reactor, id, bytes))
    }

    /// `--ws`: starts the closing handshake with `code`, before a close.
    pub(crate) fn close_websocket(&mut self, reactor: &mut Reactor, code: u16, reason: &str) {
        let Some(ws) = self.websocket.as_deref_mut().filter(|_| self.phase == Phase::Open) else {
            return;
        };
        let (id, wire) = (self.id, &mut self.wire);
        ws.close(code, reason, &mut |bytes| wire.write(reactor, id, bytes));
    }

    /// Drops the client if its unwritten output is over the limit.
    fn check_backlog(&mut self, reactor: &mut Reactor, config: &SimConfig) -> Option<CloseCause> {
        let pending = reactor.pending_output(self.id).unwrap_or(0) + self.wire.pieces.len() + self.held.len();
        if pending <= config.max_client_buffer {
            return None;
        }
        log::info!(
            "client {} ({}): slow consumer: {pending} bytes unwritten exceed --max-client-buffer {}; dropping it",
            self.id,
            self.peer,
            config.max_client_buffer
        );
        self.phase = Phase::Closing;
        reactor.abort(self.id);
        Some(CloseCause::SlowConsumer)
    }
}

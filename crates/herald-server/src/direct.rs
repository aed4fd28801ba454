//! The hub's writer for a connection on a socket of its own (the native HTTP/1
//! paths of listener.rs: SSE, and WebSocket after the upgrade).
//!
//! While nothing is queued for a connection, its task parks a [`DirectWriter`] in
//! the session's queue and sleeps; the hub then writes each live message straight
//! to the socket with one `writev` (all the messages of a hub batch at once): no
//! task wake-up, no queue, no allocation per delivery. The writer only takes what
//! continues the connection's positions exactly and never blocks; anything else
//! (a gap, an epoch change, a presence event, a full socket buffer) it hands back,
//! and the task handles it with the whole session logic and parks again. A write
//! that the socket took only in part leaves its rest to the task, which writes it
//! first (`Item::Raw`). Measured in docs/benchmarks.md; why in docs/decisions.md.

use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use herald_node::{ChannelPosition, Direct, Item, Offered, Session, Tally};
use tokio::net::TcpStream;

/// IoSlices per `writev` call.
const IOV: usize = 128;
/// Messages per `writev` call, at most.
const MESSAGES: usize = 32;

/// How a message is framed on the wire.
#[derive(Clone, Copy)]
pub(crate) enum Framing {
    /// `id: <cursor over every channel>\n` then the event (named or `message`).
    Sse {
        /// Each event named after the message (else `message`).
        named: bool,
    },
    /// One unmasked text frame holding the WebSocket push.
    WebSocket,
}

/// See the module doc.
pub(crate) struct DirectWriter {
    socket: Arc<TcpStream>,
    positions: Vec<ChannelPosition>,
    framing: Framing,
    tally: Tally,
}

impl DirectWriter {
    /// A writer for `session`'s connection on `socket`.
    pub(crate) fn new(socket: Arc<TcpStream>, framing: Framing, session: &Session) -> Self {
        Self {
            socket,
            positions: Vec::new(),
            framing,
            tally: session.tally(),
        }
    }

    /// Parks the writer: the hub may write until [`unpark`] (false when something
    /// is queued: drain it first).
    pub(crate) fn park(session: &Session) -> bool {
        session.park(|d| {
            if let Some(d) = d.as_any_mut().downcast_mut::<DirectWriter>() {
                session.positions(&mut d.positions);
            }
        })
    }

    /// Takes the socket back from the hub and brings the session up to what the
    /// writer wrote meanwhile (the positions land in `scratch` too). Returns the
    /// bytes of a message the writer began but could not finish: the caller
    /// writes them before anything else.
    pub(crate) fn unpark(session: &mut Session, scratch: &mut Vec<ChannelPosition>) -> Option<Bytes> {
        session.unpark(|d| {
            if let Some(d) = d.as_any_mut().downcast_mut::<DirectWriter>() {
                scratch.clone_from(&d.positions);
            }
        });
        session.advance(scratch);
        session.take_raw()
    }

    /// How many of `items`, from the first, continue the positions (or repeat
    /// what was written, which is skipped); the index of their channel.
    fn eligible(&self, items: &[Item]) -> (usize, usize) {
        let Some(Item::Message(first)) = items.first() else {
            return (0, 0);
        };
        let Some(ci) = self
            .positions
            .iter()
            .position(|p| p.channel == first.envelope.channel)
        else {
            return (0, 0);
        };
        let pos = &self.positions[ci];
        let mut next = pos.offset + 1;
        let mut n = 0;
        for item in items {
            let Item::Message(d) = item else { break };
            let e = &d.envelope;
            let same_epoch = Arc::ptr_eq(&e.epoch, &pos.epoch) || *e.epoch == *pos.epoch;
            if e.channel != pos.channel || !same_epoch || e.offset > next {
                break;
            }
            if e.offset == next {
                next += 1;
            }
            n += 1;
        }
        (n, ci)
    }

    fn slices_per_message(&self) -> usize {
        match self.framing {
            Framing::Sse { .. } => 2 * self.positions.len() + 2,
            Framing::WebSocket => 2,
        }
    }

    fn write(&mut self, items: &[Item]) -> Offered {
        let (n, ci) = self.eligible(items);
        let per_message = self.slices_per_message();
        if n == 0 || per_message > IOV {
            return Offered::Part { taken: 0, rest: None };
        }
        let mut taken = 0;
        while taken < n {
            // Pass 1: which messages go in this call (and their WebSocket headers).
            let mut picked = [0usize; MESSAGES];
            let mut headers = [[0u8; 10]; MESSAGES];
            let mut header_len = [0usize; MESSAGES];
            let mut m = 0;
            let mut next = self.positions[ci].offset + 1;
            let mut i = taken;
            while i < n && m < MESSAGES && (m + 1) * per_message <= IOV {
                let Item::Message(d) = &items[i] else { break };
                i += 1;
                if d.envelope.offset != next {
                    continue; // already written
                }
                next += 1;
                if let Framing::WebSocket = self.framing {
                    header_len[m] = ws_header(d.ws().len(), &mut headers[m]);
                }
                picked[m] = i - 1;
                m += 1;
            }
            if m == 0 {
                taken = i;
                continue;
            }
            // Pass 2: the slices, then one writev.
            let mut iov = [IoSlice::new(&[]); IOV];
            let mut used = 0;
            for (j, &k) in picked[..m].iter().enumerate() {
                let Item::Message(d) = &items[k] else { continue };
                match self.framing {
                    Framing::Sse { named } => {
                        iov[used] = IoSlice::new(b"id: ");
                        used += 1;
                        for (c, p) in self.positions.iter().enumerate() {
                            if c > 0 {
                                iov[used] = IoSlice::new(b".");
                                used += 1;
                            }
                            let part = if c == ci { &d.cursor } else { &p.cursor };
                            iov[used] = IoSlice::new(part.as_bytes());
                            used += 1;
                        }
                        iov[used] = IoSlice::new(b"\n");
                        iov[used + 1] = IoSlice::new(d.sse(named));
                        used += 2;
                    }
                    Framing::WebSocket => {
                        iov[used] = IoSlice::new(&headers[j][..header_len[j]]);
                        iov[used + 1] = IoSlice::new(d.ws());
                        used += 2;
                    }
                }
            }
            let total: usize = iov[..used].iter().map(|s| s.len()).sum();
            let written = match write_slices(&self.socket, &iov[..used], total) {
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(_) => return Offered::Part { taken, rest: None }, // the task finds out
            };
            if written == 0 {
                return Offered::Part { taken, rest: None };
            }
            // Written, or at least begun: these messages are the connection's now.
            let rest = (written < total).then(|| {
                let mut rest = BytesMut::with_capacity(total - written);
                let mut skip = written;
                for s in &iov[..used] {
                    if skip >= s.len() {
                        skip -= s.len();
                    } else {
                        rest.extend_from_slice(&s[skip..]);
                        skip = 0;
                    }
                }
                rest.freeze()
            });
            let Item::Message(last) = &items[picked[m - 1]] else {
                break;
            };
            let pos = &mut self.positions[ci];
            pos.offset = last.envelope.offset;
            pos.cursor = last.cursor.clone();
            self.tally.delivered(m as u64, total as u64, last);
            taken = i;
            if rest.is_some() {
                return Offered::Part { taken, rest };
            }
        }
        if taken >= items.len() {
            Offered::All
        } else {
            Offered::Part { taken, rest: None }
        }
    }
}

impl Direct for DirectWriter {
    fn offer(&mut self, items: &[Item]) -> Offered {
        let offered = self.write(items);
        if offered != Offered::All {
            self.tally.handed_back();
        }
        offered
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// Up to this many bytes are copied into one buffer and sent with one `send`;
/// larger batches go out with `writev` without a copy. Measured (perf, 10 msg/s to
/// 10 000 subscribers): for a few hundred bytes, `writev`'s iovec import cost more
/// than the copy (`vfs_writev`, `fdget_pos`, `_copy_from_iter`: ~10 % of the CPU).
const COPY_MAX: usize = 16 * 1024;

thread_local! {
    /// The copy buffer of the fast path, one per worker thread.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes what the socket takes now of `slices` (`total` bytes); never blocks.
fn write_slices(socket: &TcpStream, slices: &[IoSlice<'_>], total: usize) -> io::Result<usize> {
    if total > COPY_MAX {
        return socket.try_write_vectored(slices);
    }
    SCRATCH.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        for s in slices {
            buf.extend_from_slice(s);
        }
        socket.try_write(&buf)
    })
}

/// Writes the header of an unmasked final text frame of `len` bytes into `out`;
/// returns its length (RFC 6455 5.2).
pub(crate) fn ws_header(len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = 0x81;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_headers_use_the_shortest_length_form() {
        let mut h = [0u8; 10];
        assert_eq!(ws_header(5, &mut h), 2);
        assert_eq!(&h[..2], &[0x81, 5]);
        assert_eq!(ws_header(125, &mut h), 2);
        assert_eq!(ws_header(126, &mut h), 4);
        assert_eq!(&h[..4], &[0x81, 126, 0, 126]);
        assert_eq!(ws_header(65_535, &mut h), 4);
        assert_eq!(ws_header(65_536, &mut h), 10);
        assert_eq!(&h[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}

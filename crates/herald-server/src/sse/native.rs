//! The SSE stream on a socket of its own (the native HTTP/1 path of listener.rs):
//! while idle, the task parks a [`DirectWriter`] and the hub writes live messages
//! straight to the socket (see direct.rs).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use herald_node::{ChannelPosition, Event};
use herald_protocol::sse;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{write_events, Stream};
use crate::direct::{DirectWriter, Framing};

/// Writes all of `bytes` within `within`; false when the client took too long or left.
async fn write_all(socket: &TcpStream, mut bytes: &[u8], within: Duration) -> bool {
    let write = async {
        while !bytes.is_empty() {
            socket.writable().await?;
            match socket.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok::<_, io::Error>(())
    };
    matches!(tokio::time::timeout(within, write).await, Ok(Ok(())))
}

enum Wake {
    Queue,
    Timer,
    Shutdown,
    Readable,
}

impl Stream {
    /// Serves the stream on `socket` after writing `head` (the response head),
    /// until the client leaves, the token expires or the server shuts down.
    pub(crate) async fn serve_native(
        mut self: Box<Self>,
        socket: TcpStream,
        head: Vec<u8>,
        write_timeout: Duration,
    ) {
        let socket = Arc::new(socket);
        let mut first = head;
        if let Some(bytes) = self.first.take() {
            first.extend_from_slice(&bytes);
        }
        if !Box::pin(write_all(&socket, &first, write_timeout)).await {
            return;
        }
        drop(first);
        let writer = DirectWriter::new(socket.clone(), Framing::Sse { named: self.named }, &self.session);
        self.session.set_direct(Box::new(writer));
        let ended = self.live(&socket, write_timeout).await;
        self.session.clear_direct();
        if let Some(bytes) = ended {
            let _ = Box::pin(write_all(&socket, &bytes, write_timeout)).await;
        }
    }

    /// The live loop; returns the last bytes to write, if any.
    async fn live(&mut self, socket: &TcpStream, write_timeout: Duration) -> Option<Vec<u8>> {
        let mut scratch: Vec<ChannelPosition> = Vec::new();
        let mut heartbeat = Instant::now() + self.heartbeat_every;
        loop {
            if !DirectWriter::park(&self.session) {
                // Something is queued: handle it here, then park again.
                if !Box::pin(self.drain_and_write(socket, write_timeout)).await {
                    return None;
                }
                continue;
            }
            let timer = match self.expires {
                Some(at) if at < heartbeat => at,
                _ => heartbeat,
            };
            let wake = tokio::select! {
                _ = self.waiter.ready() => Wake::Queue,
                _ = tokio::time::sleep_until(timer) => Wake::Timer,
                _ = self.shutdown.cancelled() => Wake::Shutdown,
                r = socket.readable() => match r {
                    Ok(()) => Wake::Readable,
                    Err(_) => return None,
                },
            };
            // Take the socket back from the hub and learn what it wrote.
            if let Some(rest) = DirectWriter::unpark(&mut self.session, &mut scratch) {
                if !Box::pin(write_all(socket, &rest, write_timeout)).await {
                    return None;
                }
            }
            for p in &scratch {
                self.ids.set(&p.channel, p.cursor.clone());
            }
            match wake {
                Wake::Queue => {
                    if !Box::pin(self.drain_and_write(socket, write_timeout)).await {
                        return None;
                    }
                }
                Wake::Timer => {
                    if self.expires.is_some_and(|at| at <= Instant::now()) {
                        let mut out = Vec::new();
                        sse::write_event(&mut out, None, "error", super::TOKEN_EXPIRED);
                        return Some(out);
                    }
                    heartbeat = Instant::now() + self.heartbeat_every;
                    Box::pin(self.session.tick()).await;
                    if !Box::pin(write_all(socket, super::HEARTBEAT, write_timeout)).await {
                        return None;
                    }
                }
                Wake::Shutdown => {
                    let mut out = Vec::new();
                    sse::write_event(&mut out, None, "disconnect", super::SHUTDOWN);
                    return Some(out);
                }
                Wake::Readable => {
                    let mut sink = [0u8; 64];
                    match socket.try_read(&mut sink) {
                        Ok(0) => return None, // the client went away
                        Ok(_) => {}           // ignore anything it sends
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return None,
                    }
                }
            }
        }
    }

    /// Drains the session and writes what it gives; false when the client left.
    async fn drain_and_write(&mut self, socket: &TcpStream, write_timeout: Duration) -> bool {
        let events: Vec<Event> = self.session.drain().await;
        if events.is_empty() {
            return true;
        }
        let mut out = Vec::new();
        let n = write_events(&mut out, &mut self.ids, &events, self.named);
        // Raw bytes are the direct writer's, already counted.
        let raw: usize = events
            .iter()
            .map(|e| match e {
                Event::Raw(b) => b.len(),
                _ => 0,
            })
            .sum();
        drop(events);
        if out.is_empty() {
            return true;
        }
        if !write_all(socket, &out, write_timeout).await {
            tracing::debug!("client stopped reading; connection dropped");
            return false;
        }
        self.session.delivered(n, (out.len() - raw) as u64);
        true
    }
}

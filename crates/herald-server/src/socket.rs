//! A TCP socket shared by the tasks that use it, and the staged close of a
//! connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// After the last answer on a connection, how long the client may take to
/// close its side while Herald reads and discards what it still sends.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(5);
/// And how many bytes Herald reads and discards at most meanwhile.
pub(crate) const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// A socket shared by its connection's task and others (the hub's direct
/// writer, which only writes while the task has parked it; the listener, which
/// closes it when hyper is done). Shutting it down is left to whoever closes it.
pub(crate) struct Shared(pub(crate) Arc<TcpStream>);

impl AsyncRead for Shared {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Shared {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The socket closes when the last handle drops (after the WebSocket
        // closing handshake), or in `close_lingering`.
        Poll::Ready(Ok(()))
    }
}

/// Closes a connection in stages (RFC 9112 9.6): the answer is sent, so shut
/// down writing (the client reads to its end), then read and discard what the
/// client still sends until it closes, for at most [`LINGER_TIME`] and
/// [`LINGER_BYTES`], then close. Closing at once with unread input would make
/// the kernel reset the connection, and a client still sending a refused body
/// would lose the answer.
pub(crate) async fn close_lingering(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut buf = vec![0u8; 16 * 1024];
    let mut drained = 0usize;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break, // closed, failed, or out of time
        }
    }
}

//! The WebSocket protocol on the server side (RFC 6455), just what Herald needs:
//! it reads masked client frames (text, binary, fragments, ping, pong, close)
//! and writes unmasked server frames. Hand-written because an idle connection's
//! memory is what limits a node: tungstenite holds about 650 bytes per idle
//! connection (an eagerly allocated read buffer, its write buffer, two waker
//! proxies); this holds nothing while idle (its read buffer exists only while a
//! frame is incomplete). Measured in docs/benchmarks.md; docs/decisions.md says why.

use std::io;
use std::time::Duration;

use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::direct::ws_header;

/// What the client sent, as the connection loop sees it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A whole text message (valid UTF-8).
    Text(String),
    /// A whole binary message.
    Binary,
    /// A ping (already answered with a pong) or a pong.
    Control,
    /// The client closes (already answered with a close frame).
    Close,
}

/// Why the connection must end.
#[derive(Debug)]
pub(crate) enum WsError {
    /// The socket failed or closed without a close frame.
    Io,
    /// The client broke the protocol: the close code sent (1002, 1007, 1009).
    Protocol(u16),
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 4.2.2).
pub(crate) fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    let mut h = Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// One WebSocket connection's protocol state over `S`.
pub(crate) struct WsConn<S> {
    io: S,
    /// Bytes read and not yet parsed; empty (no allocation) while idle.
    buf: Vec<u8>,
    /// A fragmented message being assembled: its opcode and bytes so far.
    partial: Option<(u8, Vec<u8>)>,
    max_message: usize,
    write_timeout: Duration,
}

/// How much a read asks for while a frame is under way.
const READ_CHUNK: usize = 4096;
/// How much a read asks for while idle.
const IDLE_CHUNK: usize = 64;

impl<S: AsyncRead + AsyncWrite + Unpin> WsConn<S> {
    pub(crate) fn new(io: S, max_message: usize, write_timeout: Duration) -> Self {
        Self {
            io,
            buf: Vec::new(),
            partial: None,
            max_message,
            write_timeout,
        }
    }

    /// The socket back (the fuzz targets read what was written to it).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn into_io(self) -> S {
        self.io
    }

    /// Frees the read buffer when it holds nothing.
    pub(crate) fn shrink(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
        }
    }

    /// The next message. Cancel-safe: what was read stays in `self`.
    pub(crate) async fn next(&mut self) -> Result<Incoming, WsError> {
        loop {
            if let Some(msg) = self.parse().await? {
                return Ok(msg);
            }
            // While idle (nothing buffered) wait with a small buffer; a frame
            // under way gets room for more at once.
            self.buf.reserve(if self.buf.is_empty() {
                IDLE_CHUNK
            } else {
                READ_CHUNK
            });
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Err(WsError::Io),
                Ok(_) => {}
            }
        }
    }

    /// Parses whole frames from the buffer until one completes a message.
    async fn parse(&mut self) -> Result<Option<Incoming>, WsError> {
        loop {
            let frame = match parse_frame(&self.buf, self.max_message) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    if self.buf.is_empty() && self.buf.capacity() > 0 {
                        self.buf = Vec::new(); // idle connections hold nothing
                    }
                    return Ok(None);
                }
                Err(code) => return Err(self.fail(code).await),
            };
            let payload: Vec<u8> = {
                let raw = &self.buf[frame.start..frame.start + frame.len];
                raw.iter()
                    .enumerate()
                    .map(|(i, b)| b ^ frame.mask[i % 4])
                    .collect()
            };
            self.buf.drain(..frame.start + frame.len);
            self.shrink();
            match frame.opcode {
                OP_CONT => {
                    let Some((_, data)) = self.partial.as_mut() else {
                        return Err(self.fail(1002).await); // a continuation of nothing
                    };
                    if data.len() + payload.len() > self.max_message {
                        return Err(self.fail(1009).await);
                    }
                    data.extend_from_slice(&payload);
                    if frame.fin {
                        if let Some((op, data)) = self.partial.take() {
                            return self.message(op, data).await.map(Some);
                        }
                    }
                }
                OP_TEXT | OP_BINARY => {
                    if self.partial.is_some() {
                        return Err(self.fail(1002).await); // a new message inside a fragmented one
                    }
                    if frame.fin {
                        return self.message(frame.opcode, payload).await.map(Some);
                    }
                    self.partial = Some((frame.opcode, payload));
                }
                OP_PING => {
                    self.write_frame(0x8A, &payload).await.map_err(|_| WsError::Io)?;
                    return Ok(Some(Incoming::Control));
                }
                OP_PONG => return Ok(Some(Incoming::Control)),
                OP_CLOSE => {
                    // Echo the code and reason (RFC 6455 5.5.1); a body of one
                    // byte, a code no endpoint may send (7.4), or a reason that
                    // is not UTF-8, is invalid.
                    if payload.len() == 1 {
                        return Err(self.fail(1002).await);
                    }
                    if payload.len() >= 2 && !valid_close_code(u16::from_be_bytes([payload[0], payload[1]])) {
                        return Err(self.fail(1002).await);
                    }
                    if payload.len() > 2 && std::str::from_utf8(&payload[2..]).is_err() {
                        return Err(self.fail(1007).await);
                    }
                    let _ = self.write_frame(0x88, &payload).await;
                    return Ok(Some(Incoming::Close));
                }
                _ => return Err(self.fail(1002).await),
            }
        }
    }

    async fn message(&mut self, opcode: u8, data: Vec<u8>) -> Result<Incoming, WsError> {
        if opcode == OP_BINARY {
            return Ok(Incoming::Binary);
        }
        match String::from_utf8(data) {
            Ok(text) => Ok(Incoming::Text(text)),
            Err(_) => Err(self.fail(1007).await),
        }
    }

    /// Closes with `code` after a protocol error; returns the error to end with.
    async fn fail(&mut self, code: u16) -> WsError {
        let reason = match code {
            1007 => "text frames must be UTF-8",
            1009 => "message too big",
            _ => "protocol error",
        };
        let _ = self.send_close(code, reason).await;
        WsError::Protocol(code)
    }

    /// Writes one frame with the write timeout.
    async fn write_frame(&mut self, first: u8, payload: &[u8]) -> io::Result<()> {
        let mut head = [0u8; 10];
        let n = ws_header(payload.len(), &mut head);
        head[0] = first;
        let mut out = Vec::with_capacity(n + payload.len());
        out.extend_from_slice(&head[..n]);
        out.extend_from_slice(payload);
        self.write_all(&out).await
    }

    /// Writes bytes (whole frames) with the write timeout.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match tokio::time::timeout(self.write_timeout, self.io.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "client took in nothing")),
        }
    }

    /// Sends a text message.
    pub(crate) async fn send_text(&mut self, text: &[u8]) -> io::Result<()> {
        self.write_frame(0x81, text).await
    }

    /// Sends a ping.
    pub(crate) async fn send_ping(&mut self) -> io::Result<()> {
        self.write_frame(0x89, b"").await
    }

    /// Sends a close frame with `code` and `reason` (cut to fit a control frame).
    pub(crate) async fn send_close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        self.write_frame(0x88, &payload).await
    }
}

/// Whether an endpoint may send `code` in a close frame (RFC 6455 7.4): the
/// defined codes 1000-1003 and 1007-1011, the ones registered since (1012
/// restart, 1013 try again later, 1014 bad gateway), and 3000-4999 (registered
/// and private). 1004-1006 and 1015 are reserved and never sent; the rest is
/// undefined.
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Appends a text frame holding `payload` to `out` (for several frames in one write).
pub(crate) fn push_text(out: &mut Vec<u8>, payload: &[u8]) {
    let mut head = [0u8; 10];
    let n = ws_header(payload.len(), &mut head);
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
}

const OP_CONT: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

#[derive(Debug, PartialEq, Eq)]
struct Frame {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Where the payload starts in the buffer, and its length.
    start: usize,
    len: usize,
}

/// The first whole frame in `buf`; None when more bytes are needed; the close
/// code when the frame breaks the protocol.
fn parse_frame(buf: &[u8], max: usize) -> Result<Option<Frame>, u16> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(1002); // no extension was negotiated
    }
    let opcode = b0 & 0x0F;
    if b1 & 0x80 == 0 {
        return Err(1002); // client frames must be masked
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            if b[0] & 0x80 != 0 {
                return Err(1002); // RFC 6455 5.2: the most significant bit must be 0
            }
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if opcode >= 8 && (!fin || len > 125) {
        return Err(1002); // control frames are short and whole
    }
    if len > max as u64 {
        return Err(1009);
    }
    let len = len as usize;
    if buf.len() < at + 4 {
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&buf[at..at + 4]);
    at += 4;
    if buf.len() < at + len {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin,
        opcode,
        mask,
        start: at,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![first];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    async fn read_all(input: Vec<u8>, max: usize) -> (Vec<Result<Incoming, u16>>, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&input).await.unwrap();
        client.shutdown().await.unwrap();
        let mut conn = WsConn::new(server, max, Duration::from_secs(1));
        let mut got = Vec::new();
        loop {
            match conn.next().await {
                Ok(m) => got.push(Ok(m)),
                Err(WsError::Protocol(c)) => {
                    got.push(Err(c));
                    break;
                }
                Err(WsError::Io) => break,
            }
        }
        drop(conn);
        let mut written = Vec::new();
        client.read_to_end(&mut written).await.unwrap();
        (got, written)
    }

    #[test]
    fn the_accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn text_fragments_and_control_frames_interleave() {
        let mut input = client_frame(0x01, b"hel"); // text, not final
        input.extend(client_frame(0x89, b"p")); // a ping between fragments
        input.extend(client_frame(0x80, b"lo")); // final continuation
        input.extend(client_frame(0x81, "é".as_bytes()));
        input.extend(client_frame(0x88, &1000u16.to_be_bytes()));
        let (got, written) = read_all(input, 1024).await;
        assert_eq!(
            got,
            vec![
                Ok(Incoming::Control),
                Ok(Incoming::Text("hello".into())),
                Ok(Incoming::Text("é".into())),
                Ok(Incoming::Close),
            ]
        );
        // A pong with the ping's payload, then the close echoed.
        assert_eq!(written, [&[0x8A, 1, b'p'][..], &[0x88, 2, 0x03, 0xE8]].concat());
    }

    #[tokio::test]
    async fn protocol_errors_close_with_the_right_code() {
        let unmasked = vec![0x81, 2, b'h', b'i'];
        assert_eq!(read_all(unmasked, 1024).await.0, vec![Err(1002)]);
        let bad_utf8 = client_frame(0x81, &[0xff, 0xfe]);
        assert_eq!(read_all(bad_utf8, 1024).await.0, vec![Err(1007)]);
        let too_big = client_frame(0x81, &[b'a'; 300]);
        assert_eq!(read_all(too_big, 100).await.0, vec![Err(1009)]);
        let lone_continuation = client_frame(0x80, b"x");
        assert_eq!(read_all(lone_continuation, 1024).await.0, vec![Err(1002)]);
        let long_ping = client_frame(0x89, &[0; 126]);
        assert_eq!(read_all(long_ping, 1024).await.0, vec![Err(1002)]);
        for code in [0u16, 999, 1005, 1006, 1015, 2999, 5000] {
            let close = client_frame(0x88, &code.to_be_bytes());
            assert_eq!(
                read_all(close, 1024).await.0,
                vec![Err(1002)],
                "close code {code}"
            );
        }
        let reserved_bits = client_frame(0xC1, b"x");
        assert_eq!(read_all(reserved_bits, 1024).await.0, vec![Err(1002)]);
        let unknown_opcode = client_frame(0x83, b"x");
        assert_eq!(read_all(unknown_opcode, 1024).await.0, vec![Err(1002)]);
        // A 64-bit length with its top bit set is malformed, not merely big.
        let top_bit = [&[0x81u8, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1][..], &[0; 5]].concat();
        assert_eq!(read_all(top_bit, 1024).await.0, vec![Err(1002)]);
        let (got, written) = read_all(client_frame(0x81, &[0xff]), 1024).await;
        assert_eq!(got, vec![Err(1007)]);
        assert_eq!(
            &written[..4],
            &[0x88, 27, 0x03, 0xEF],
            "a close frame with 1007 and its reason"
        );
    }

    #[tokio::test]
    async fn frames_split_across_reads_are_reassembled() {
        let frame = client_frame(0x81, &[b'z'; 200]);
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut conn = WsConn::new(server, 1024, Duration::from_secs(1));
        let writer = tokio::spawn(async move {
            for chunk in frame.chunks(7) {
                client.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        assert_eq!(conn.next().await.unwrap(), Incoming::Text("z".repeat(200)));
        assert_eq!(conn.buf.capacity(), 0, "an idle connection holds no read buffer");
        drop(writer.await.unwrap());
    }
}

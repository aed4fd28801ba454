//! `herald-floor`: the machine's limit for SSE fan-out, to compare servers against.
//!
//! It listens on `--listen IP:PORT` (default 127.0.0.1:18096) and knows two requests:
//!
//! - any `GET`: an SSE subscriber. It answers the headers of an event stream once
//!   and takes a slot in one global list of sockets (no channels, no
//!   per-subscriber state); a task waits for the client to close, to free the
//!   slot and the socket, as any server must.
//! - `POST /pub?id=...` with a `Content-Length` body: builds the frame
//!   `data: BODY\n\n` once and writes it to every socket of the list with one
//!   non-blocking write call each, then answers `200` (keep-alive). A socket that
//!   cannot take the whole frame at once (closed, or its buffer is full) leaves
//!   the list: the floor never queues.
//! - anything else: `404` and close.
//!
//! No HTTP library, no parsing beyond the request line, `Content-Length` and the
//! body. It prints `listening on ADDR` on stdout when ready.

use std::io::ErrorKind;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// Request heads and bodies larger than this close the connection.
const MAX_REQUEST: usize = 1 << 20;

/// Subscriber sockets by slot, and the free slots.
#[derive(Default)]
struct List {
    slots: Vec<Option<Arc<TcpStream>>>,
    free: Vec<usize>,
}

impl List {
    fn add(&mut self, s: Arc<TcpStream>) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(s);
                i
            }
            None => {
                self.slots.push(Some(s));
                self.slots.len() - 1
            }
        }
    }

    /// Empties slot `i` if it still holds `s`.
    fn remove(&mut self, i: usize, s: &Arc<TcpStream>) {
        if let Some(slot) = self.slots.get_mut(i) {
            if slot.as_ref().is_some_and(|x| Arc::ptr_eq(x, s)) {
                *slot = None;
                self.free.push(i);
            }
        }
    }
}

type Subscribers = Arc<Mutex<List>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut listen = "127.0.0.1:18096".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            _ => {
                eprintln!("usage: herald-floor [--listen IP:PORT]");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let subscribers: Subscribers = Arc::default();
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(x) => x,
            // Out of files or similar: wait a moment instead of spinning.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        tokio::spawn(connection(socket, subscribers.clone()));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    text.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn connection(mut socket: TcpStream, subscribers: Subscribers) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        // One request head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_REQUEST || !matches!(socket.read_buf(&mut buf).await, Ok(n) if n > 0) {
                return;
            }
        };
        if buf.starts_with(b"GET ") {
            drop(buf);
            // A subscriber: headers once, then it belongs to the list. Both under
            // the lock, so no frame can come before the headers.
            let socket = Arc::new(socket);
            let slot = {
                let mut list = subscribers.lock().unwrap_or_else(|e| e.into_inner());
                if !matches!(socket.try_write(SSE_HEAD), Ok(n) if n == SSE_HEAD.len()) {
                    return;
                }
                list.add(socket.clone())
            };
            // Wait for the client to close (anything it sends is ignored).
            let mut sink = [0u8; 256];
            loop {
                if socket.readable().await.is_err() {
                    break;
                }
                match socket.try_read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
            subscribers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(slot, &socket);
            return;
        }
        if !buf.starts_with(b"POST /pub") {
            let _ = socket.write_all(NOT_FOUND).await;
            return;
        }
        let len = content_length(&buf[..head_end]);
        if len > MAX_REQUEST {
            return;
        }
        while buf.len() < head_end + len {
            if !matches!(socket.read_buf(&mut buf).await, Ok(n) if n > 0) {
                return;
            }
        }
        let mut frame = Vec::with_capacity(len + 8);
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(&buf[head_end..head_end + len]);
        frame.extend_from_slice(b"\n\n");
        buf.drain(..head_end + len);
        {
            let mut list = subscribers.lock().unwrap_or_else(|e| e.into_inner());
            let List { slots, free } = &mut *list;
            for (i, slot) in slots.iter_mut().enumerate() {
                let Some(s) = slot else { continue };
                if !matches!(s.try_write(&frame), Ok(n) if n == frame.len()) {
                    *slot = None;
                    free.push(i);
                }
            }
        }
        if socket.write_all(OK).await.is_err() {
            return;
        }
    }
}

//! The floor delivers one frame per publish to every subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Floor(Child);

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read_until(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(end) {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed after {got:?}");
        got.push(byte[0]);
    }
    got
}

#[test]
fn twenty_subscribers_get_every_frame() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald-floor"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _floor = Floor(child);
    let addr = line.trim().strip_prefix("listening on ").unwrap().to_owned();

    let mut subs: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(
                s,
                "GET /sse/ch{i} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
            )
            .unwrap();
            let head = read_until(&mut s, b"\r\n\r\n");
            assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
            assert!(String::from_utf8_lossy(&head).contains("text/event-stream"));
            s
        })
        .collect();

    let mut publisher = TcpStream::connect(&addr).unwrap();
    publisher.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for n in 0..3 {
        let body = format!("{{\"seq\":{n}}}");
        write!(
            publisher,
            "POST /pub?id=x HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let answer = read_until(&mut publisher, b"\r\n\r\n");
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{answer:?}");
        for s in &mut subs {
            let frame = read_until(s, b"\n\n");
            assert_eq!(frame, format!("data: {body}\n\n").as_bytes());
        }
    }

    // Half the subscribers leave; the others still get every frame.
    subs.truncate(10);
    std::thread::sleep(Duration::from_millis(100));
    let body = "{\"seq\":3}";
    write!(
        publisher,
        "POST /pub?id=x HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    assert!(read_until(&mut publisher, b"\r\n\r\n").starts_with(b"HTTP/1.1 200 OK\r\n"));
    for s in &mut subs {
        assert_eq!(read_until(s, b"\n\n"), format!("data: {body}\n\n").as_bytes());
    }
}

//! The WebSocket codec (herald-server's ws/codec.rs, RFC 6455 on the server
//! side): a byte stream from a client, delivered in reads of any size. Messages
//! come out whole and within the size limit, a broken stream ends with 1002,
//! 1007 or 1009, and what the server writes back is well-formed unmasked frames.
#![no_main]

use std::sync::OnceLock;

use herald_server::fuzzing::ws_stream;
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// Splits `written` into server frames: (first byte, payload).
fn server_frames(mut written: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !written.is_empty() {
        assert!(written.len() >= 2, "a truncated server frame");
        let (b0, b1) = (written[0], written[1]);
        assert_eq!(b1 & 0x80, 0, "server frames are never masked");
        let (len, at) = match b1 & 0x7F {
            126 => (u16::from_be_bytes([written[2], written[3]]) as usize, 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&written[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        assert!(written.len() >= at + len, "a truncated server frame");
        out.push((b0, written[at..at + len].to_vec()));
        written = &written[at + len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let chunk = usize::from(data[0]) + 1;
    let max_message = usize::from(data[1]) * 16 + 1;
    let input = &data[2..];
    let out = runtime().block_on(ws_stream(input, chunk, max_message));
    for t in &out.texts {
        assert!(t.len() <= max_message, "a message over the limit came through");
    }
    if let Some(code) = out.error {
        assert!(matches!(code, 1002 | 1007 | 1009), "close code {code}");
    }
    let frames = server_frames(&out.written);
    for (i, (b0, payload)) in frames.iter().enumerate() {
        match b0 {
            0x8A => assert!(payload.len() <= 125, "a pong too long"),
            0x88 => {
                assert!(payload.len() <= 125 && payload.len() != 1, "a bad close frame");
                assert_eq!(i, frames.len() - 1, "nothing is written after a close");
                if payload.len() > 2 {
                    assert!(
                        std::str::from_utf8(&payload[2..]).is_ok(),
                        "a close reason not UTF-8"
                    );
                }
            }
            other => panic!("unexpected server frame {other:#x}"),
        }
    }
    // The same stream read in one piece gives the same messages.
    let whole = runtime().block_on(ws_stream(input, input.len().max(1), max_message));
    assert_eq!(whole.texts, out.texts);
    assert_eq!(whole.error, out.error);
});

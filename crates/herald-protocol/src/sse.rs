//! Server-Sent Events framing (WHATWG HTML, "Server-sent events").
//!
//! Every value written here is a single line: envelopes and control payloads are
//! compact JSON, cursors and event names are validated, so no field is split.

/// Appends an event: optional `id:`, `event:`, one `data:` line, blank line.
pub fn write_event(out: &mut Vec<u8>, id: Option<&str>, event: &str, data: &str) {
    if let Some(id) = id {
        write_id_line(out, id);
    }
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

fn write_id_line(out: &mut Vec<u8>, id: &str) {
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.as_bytes());
    out.push(b'\n');
}

/// Appends the reconnection delay hint.
pub fn write_retry(out: &mut Vec<u8>, millis: u64) {
    out.extend_from_slice(format!("retry: {millis}\n\n").as_bytes());
}

/// Appends a comment line (ignored by clients; keeps proxies from closing the stream).
pub fn write_comment(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b": ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let mut b = Vec::new();
        write_event(&mut b, Some("c1"), "message", "{}");
        write_comment(&mut b, "hb");
        write_retry(&mut b, 2000);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "id: c1\nevent: message\ndata: {}\n\n: hb\n\nretry: 2000\n\n"
        );
    }
}

//! What goes over the wire: the bench payload (its sequence number, channel and
//! send time), channel names, and the parsers of what comes back (SSE blocks,
//! Herald's WebSocket frames, raw frames).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;

/// A fresh run id (12 random characters of `A-Z a-z 0-9`): fresh channels per
/// run, so that sequences start at 1 and runs never mix.
pub(crate) fn new_run_id() -> std::sync::Arc<str> {
    use rand::distributions::{Alphanumeric, DistString};
    std::sync::Arc::from(Alphanumeric.sample_string(&mut rand::thread_rng(), 12))
}

pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `{"seq":SEQ,"c":CHANNEL,"t":MICROS,"p":"xxx…"}`, padded to about `size` bytes.
pub(crate) fn payload(seq: u64, channel: usize, size: usize) -> String {
    let mut s = format!("{{\"seq\":{seq},\"c\":{channel},\"t\":{},\"p\":\"", now_micros());
    let pad = size.saturating_sub(s.len() + 2).max(1);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s
}

/// A filled WebSocket URL: `http://` becomes `ws://`.
pub(crate) fn ws_url(filled: &str) -> anyhow::Result<String> {
    if let Some(rest) = filled.strip_prefix("http://") {
        return Ok(format!("ws://{rest}"));
    }
    if filled.starts_with("ws://") {
        return Ok(filled.to_owned());
    }
    bail!("the WebSocket URL {filled:?} must start with ws:// or http:// (the bench has no TLS)")
}

pub(crate) fn channel_name(run_id: &str, c: usize) -> String {
    format!("bench:{run_id}:{c}")
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn number_after(hay: &[u8], name: &[u8]) -> Option<u64> {
    let i = find(hay, name)? + name.len();
    let digits = hay.get(i..)?.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(hay.get(i..i + digits)?).ok()?.parse().ok()
}

/// The first JSON string value after `key` (which ends with the opening quote).
/// Enough for the cursors, which have no escapes.
pub(crate) fn string_after<'a>(hay: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let rest = hay.get(find(hay, key)? + key.len()..)?;
    rest.get(..rest.iter().position(|&b| b == b'"')?)
}

/// `(seq, channel, sent_us)` from text that starts with (or wraps) a bench payload.
pub(crate) fn parse_payload(data: &[u8]) -> Option<(u64, u64, u64)> {
    let seq = number_after(data, b"\"seq\":")?;
    let channel = number_after(data, b"\"c\":")?;
    let t = number_after(data, b"\"t\":")?;
    Some((seq, channel, t))
}

/// Reads one SSE block; `Some((seq, channel, sent_us))` when it carries a bench payload.
pub(crate) fn parse_block(block: &[u8]) -> Option<(u64, u64, u64)> {
    parse_payload(block.get(find(block, b"data:")?..)?)
}

/// The value of the last `name` field (e.g. `id:`) of an SSE block.
pub(crate) fn sse_field<'a>(block: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    block.rsplit(|&b| b == b'\n').find_map(|line| {
        let v = line.strip_prefix(name)?;
        Some(v.strip_prefix(b" ").unwrap_or(v))
    })
}

/// One Herald WebSocket frame, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WsPush<'a> {
    /// A push of type `message`: its cursor and its payload, when it is a bench payload.
    Message(Option<&'a [u8]>, Option<(u64, u64, u64)>),
    /// A push of type `reset`, with its cursor.
    Reset(Option<&'a [u8]>),
    /// A reply: ok (with the subscribe's cursor) or not.
    Reply(bool, Option<&'a [u8]>),
    Other,
}

pub(crate) fn herald_ws_frame(f: &[u8]) -> WsPush<'_> {
    let cursor = || string_after(f, b"\"cursor\":\"");
    if f.starts_with(b"{\"id\":") || f.starts_with(b"{\"error\":") {
        let ok = f.starts_with(b"{\"id\":") && find(f, b"\"ok\":").is_some();
        return WsPush::Reply(ok, cursor());
    }
    if find(f, b"\"type\":\"message\"").is_some() {
        let payload = find(f, b"\"data\":").and_then(|i| parse_payload(f.get(i..)?));
        return WsPush::Message(cursor(), payload);
    }
    if find(f, b"\"type\":\"reset\"").is_some() {
        return WsPush::Reset(cursor());
    }
    WsPush::Other
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn payloads_parse_back_from_herald_and_raw_frames() {
        let p = payload(7, 3, 100);
        assert!((99..=101).contains(&p.len()), "{} bytes: {p}", p.len());
        let raw = format!("id: 12:0\ndata: {p}");
        let (seq, c, t) = parse_block(raw.as_bytes()).unwrap();
        assert_eq!((seq, c), (7, 3));
        assert!(t > 1_600_000_000_000_000);
        let herald = format!(
            "id: abc\nevent: message\ndata: {{\"channel\":\"bench:x:3\",\"offset\":9,\"epoch\":\"e\",\"event\":\"message\",\"data\":{p},\"ts\":17}}"
        );
        assert_eq!(parse_block(herald.as_bytes()).unwrap().0, 7);
        assert!(parse_block(b"event: open\ndata: {\"cursor\":\"x\"}").is_none());
        assert!(parse_block(b": heartbeat").is_none());
    }

    #[test]
    fn herald_websocket_frames_and_sse_ids_are_read() {
        let p = payload(4, 1, 100);
        let push = format!(
            "{{\"type\":\"message\",\"cursor\":\"Y3Vy\",\"channel\":\"bench:x:1\",\"offset\":4,\
             \"epoch\":\"e\",\"event\":\"message\",\"data\":{p},\"ts\":17}}"
        );
        match herald_ws_frame(push.as_bytes()) {
            WsPush::Message(Some(c), Some((4, 1, _))) => assert_eq!(c, b"Y3Vy"),
            other => panic!("{other:?}"),
        }
        let reset = br#"{"type":"reset","channel":"a","epoch":"e","offset":12,"reason":"history_gone","cursor":"Ng"}"#;
        assert_eq!(herald_ws_frame(reset), WsPush::Reset(Some(&b"Ng"[..])));
        let ok = br#"{"id":1,"ok":{"channel":"a","cursor":"QQ"}}"#;
        assert_eq!(herald_ws_frame(ok), WsPush::Reply(true, Some(&b"QQ"[..])));
        let refused = br#"{"id":1,"error":{"code":"forbidden","message":"no"}}"#;
        assert_eq!(herald_ws_frame(refused), WsPush::Reply(false, None));
        assert_eq!(herald_ws_frame(br#"{"type":"presence"}"#), WsPush::Other);
        // Raw frames are the payload itself.
        assert_eq!(parse_payload(p.as_bytes()).map(|(s, c, _)| (s, c)), Some((4, 1)));
        assert_eq!(
            sse_field(b"id: abc\nevent: open\ndata: {}", b"id:"),
            Some(&b"abc"[..])
        );
        assert_eq!(sse_field(b"id:x\nid: y", b"id:"), Some(&b"y"[..]));
        assert_eq!(sse_field(b": hb", b"id:"), None);
        assert_eq!(ws_url("http://h:1/x").unwrap(), "ws://h:1/x");
        assert!(ws_url("https://h/x").is_err());
    }
}

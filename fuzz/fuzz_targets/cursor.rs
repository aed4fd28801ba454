//! Cursors, as clients send them back (`?cursor=`, `Last-Event-ID`, a WebSocket
//! subscribe, a long-poll body): whatever parses prints back to a cursor that
//! parses to the same positions, in time proportional to the cursor (the unit
//! test `a_cursor_at_its_limit_parses_in_linear_time` checks it at 128 KiB).
#![no_main]

use herald_protocol::cursor::MAX_CURSOR_LEN;
use herald_protocol::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let started = std::time::Instant::now();
    let parsed = Cursor::parse(text);
    // Linear time takes milliseconds at the limit; quadratic took 0.7 s.
    assert!(
        started.elapsed() < std::time::Duration::from_millis(500),
        "parsing took {:?}",
        started.elapsed()
    );
    let Ok(c) = parsed else {
        return;
    };
    assert!(text.len() <= MAX_CURSOR_LEN);
    let printed = c.to_string();
    let again = Cursor::parse(&printed).expect("a printed cursor parses");
    assert_eq!(again, c);
    assert_eq!(again.to_string(), printed);
    // At most one position per channel, each findable.
    for p in c.positions() {
        assert_eq!(c.get(&p.channel), Some(p));
        assert_eq!(
            Cursor::parse(&p.encode()).unwrap().positions(),
            std::slice::from_ref(p)
        );
    }
});

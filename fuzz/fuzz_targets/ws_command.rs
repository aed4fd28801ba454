//! WebSocket client commands: the JSON text frames (`{"id":1,"op":"subscribe",...}`).
//! A frame is a command or a refusal with an error code, never a panic; what a
//! publish carries is one compact JSON value an SSE `data:` line can hold.
#![no_main]

use herald_protocol::frame::{self, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(f) = frame::parse(text) else {
        return;
    };
    match f.command {
        Ok(Command::Publish { data, event, channel }) => {
            assert!(
                !data.contains(['\n', '\r']),
                "publish data with a line break: {data:?}"
            );
            // One JSON value (numbers beyond f64, valid JSON, are kept as sent),
            // already in the compact form subscribers get.
            let compact = herald_protocol::envelope::compact_data(&data).expect("publish data is JSON");
            assert_eq!(&*compact, &*data);
            assert!(!event.as_str().is_empty());
            assert!(!channel.as_str().is_empty());
        }
        Ok(Command::Refresh { token }) => assert!(!token.is_empty()),
        Ok(_) => {}
        Err((code, message)) => {
            assert!(!message.is_empty());
            assert!(code.status() >= 400);
        }
    }
});

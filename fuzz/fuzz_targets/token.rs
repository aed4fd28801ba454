//! Client tokens (JWT, HS256), as a browser sends them in `?token=` or
//! `Authorization: Bearer`. The input is either the token itself, or the JSON
//! of its claims, signed with the app's secret (to reach the claims' parsing
//! behind the signature) or with another secret (which must always be refused).
#![no_main]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use herald_node::verify_token;
use herald_store::AppRecord;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-token-secret-0123456789abcdef";

fn signed(header: &str, claims: &[u8], secret: &str) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret.as_bytes()),
        Algorithm::HS256,
    )
    .expect("HS256 signs");
    format!("{message}.{sig}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let app = AppRecord {
        name: "demo".into(),
        key_hashes: Vec::new(),
        token_secrets: vec![SECRET.into()],
        created_at: 0,
    };
    let leeway = Duration::from_secs(30);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    match mode % 3 {
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(id) = verify_token(&app, token, leeway) {
                // Only a token signed with the secret gets here.
                assert!(id.expires.is_some());
            }
        }
        1 => {
            let token = signed(header, rest, SECRET);
            match verify_token(&app, &token, leeway) {
                Ok(id) => {
                    let exp = id.expires.expect("a token has an expiry");
                    assert!(
                        exp >= now - 30 - 5,
                        "an expired token was accepted: exp {exp}, now {now}"
                    );
                    // (Claims the token does not use may hold bytes that are not UTF-8.)
                    let claims: serde_json::Value =
                        serde_json::from_str(&String::from_utf8_lossy(rest)).unwrap_or_default();
                    if let Some(a) = claims.get("app").and_then(|v| v.as_str()) {
                        assert_eq!(a, "demo", "a token for another app was accepted");
                    }
                    if let Some(iat) = claims.get("iat").and_then(|v| v.as_i64()) {
                        assert!(iat <= now + 30 + 5, "a token issued in the future was accepted");
                    }
                }
                Err(e) => assert!(!e.message.is_empty()),
            }
        }
        _ => {
            let token = signed(header, rest, "another-secret-entirely-0123456789");
            assert!(
                verify_token(&app, &token, leeway).is_err(),
                "a token signed with another secret was accepted"
            );
        }
    }
});

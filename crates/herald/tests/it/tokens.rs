//! The negative matrix of client tokens (issue 12, 2.5): every row a token
//! that must not be accepted, tried on SSE, long-poll, WebSocket, client
//! publish and a WebSocket `refresh`, with the code it must get. 0 accepted.
//!
//! Herald verifies HS256 with each app's own secrets and fetches no keys:
//! tokens that point at keys elsewhere (`jku`, `x5u`, an embedded `jwk`, a
//! `kid` or `iss` that is a URL) aim at a listener of this test, which must
//! see no connection at all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use crate::support::*;

fn now() -> i64 {
    herald_broker::now_millis() / 1000
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token of any header and payload, its signature made with `alg` and `secret`.
fn raw(header: &Value, payload: &Value, alg: Algorithm, secret: &str) -> String {
    let head = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(head.as_bytes(), &EncodingKey::from_secret(secret.as_bytes()), alg)
        .unwrap();
    format!("{head}.{sig}")
}

/// An HS256 token of `payload` signed with `secret`.
fn hs256(payload: &Value, secret: &str) -> String {
    raw(
        &json!({"alg": "HS256", "typ": "JWT"}),
        payload,
        Algorithm::HS256,
        secret,
    )
}

/// What a token grants when it is good: everything, for an hour.
fn good(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 3600, "iat": now(), "channels": ["*"], "publish": ["*"]})
}

/// `good("alice")` with `field` set to `value`.
fn with(field: &str, value: Value) -> Value {
    let mut v = good("alice");
    v[field] = value;
    v
}

/// `good("alice")` without `field`.
fn without(field: &str) -> Value {
    let mut v = good("alice");
    v.as_object_mut().unwrap().remove(field);
    v
}

/// One row: the token, the channel it asks for, the status and code it must get.
struct Case {
    name: &'static str,
    token: String,
    channel: &'static str,
    status: u16,
    code: &'static str,
}

fn case(name: &'static str, token: String, code: &'static str) -> Case {
    Case {
        name,
        token,
        channel: "news",
        status: 401,
        code,
    }
}

/// A refusal's status and code, or what went wrong instead.
type Outcome = Result<(u16, String), String>;

/// The [`Outcome`] of an HTTP answer.
fn refusal(got: &(u16, Value)) -> Outcome {
    let (status, body) = got;
    if *status < 400 {
        return Err(format!("accepted ({status})"));
    }
    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
    let sentence = body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.split_whitespace().count() >= 3);
    if !sentence {
        return Err(format!("{status} without an error sentence: {body}"));
    }
    Ok((*status, code))
}

#[tokio::test]
async fn no_bad_token_is_accepted_on_any_transport_and_none_makes_a_request() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let other = server.create_app("other").await;
    let secret = app.token_secret.clone();

    // A key server the bad tokens point at: it counts every connection.
    let keys = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let keys_url = format!("http://{}/.well-known/jwks.json", keys.local_addr().unwrap());
    let fetched = Arc::new(AtomicUsize::new(0));
    let counter = fetched.clone();
    let key_server = tokio::spawn(async move {
        while let Ok((_conn, _)) = keys.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });

    let hs = |alg: &str| json!({"alg": alg, "typ": "JWT"});
    let valid = hs256(&good("alice"), &secret);
    let (v_head, v_rest) = valid.split_once('.').unwrap();
    let (v_payload, v_sig) = v_rest.split_once('.').unwrap();
    let payload = good("alice").to_string();
    let big_grants: Vec<String> = (0..1500).map(|i| format!("room-{i:05}")).collect();

    let mut cases = vec![
        // Signatures.
        case(
            "signed with a secret that is not the app's",
            hs256(&good("alice"), "hs_not-the-secret"),
            "invalid_token",
        ),
        case(
            "signed with another app's secret",
            hs256(&good("alice"), &other.token_secret),
            "invalid_token",
        ),
        case(
            "signed with another app's secret, naming this app",
            hs256(&with("app", json!("acme")), &other.token_secret),
            "invalid_token",
        ),
        case(
            "the app key used as the secret",
            hs256(&good("alice"), &app.key),
            "invalid_token",
        ),
        case(
            "claims widened without signing again",
            format!(
                "{v_head}.{}.{v_sig}",
                b64(with("channels", json!(["*", "admin"])).to_string().as_bytes())
            ),
            "invalid_token",
        ),
        case(
            "the signature of another token",
            format!(
                "{v_head}.{}.{}",
                b64(with("sub", json!("mallory")).to_string().as_bytes()),
                v_sig
            ),
            "invalid_token",
        ),
        case("no signature", format!("{v_head}.{v_payload}."), "invalid_token"),
        case(
            "a signature that is not base64url",
            format!("{v_head}.{v_payload}.!!!!"),
            "invalid_token",
        ),
        // Algorithms.
        case(
            "alg none, no signature",
            format!(
                "{}.{}.",
                b64(hs("none").to_string().as_bytes()),
                b64(payload.as_bytes())
            ),
            "invalid_token",
        ),
        case(
            "alg none with the right signature",
            format!("{}.{}.{v_sig}", b64(hs("none").to_string().as_bytes()), v_payload),
            "invalid_token",
        ),
        case(
            "alg None",
            format!(
                "{}.{}.",
                b64(hs("None").to_string().as_bytes()),
                b64(payload.as_bytes())
            ),
            "invalid_token",
        ),
        case(
            "alg nOnE",
            format!(
                "{}.{}.",
                b64(hs("nOnE").to_string().as_bytes()),
                b64(payload.as_bytes())
            ),
            "invalid_token",
        ),
        case(
            "HS384 with the app's secret",
            raw(&hs("HS384"), &good("alice"), Algorithm::HS384, &secret),
            "invalid_token",
        ),
        case(
            "HS512 with the app's secret",
            raw(&hs("HS512"), &good("alice"), Algorithm::HS512, &secret),
            "invalid_token",
        ),
        case(
            "an RS256 header over an HMAC signature (algorithm confusion)",
            format!("{}.{v_rest}", b64(hs("RS256").to_string().as_bytes())),
            "invalid_token",
        ),
        case(
            "an ES256 header over an HMAC signature",
            format!("{}.{v_rest}", b64(hs("ES256").to_string().as_bytes())),
            "invalid_token",
        ),
        case(
            "a PS256 header over an HMAC signature",
            format!("{}.{v_rest}", b64(hs("PS256").to_string().as_bytes())),
            "invalid_token",
        ),
        case(
            "an EdDSA header over an HMAC signature",
            format!("{}.{v_rest}", b64(hs("EdDSA").to_string().as_bytes())),
            "invalid_token",
        ),
        case(
            "no alg at all",
            format!("{}.{v_rest}", b64(br#"{"typ":"JWT"}"#)),
            "invalid_token",
        ),
        case(
            "alg HS256 with a NUL after it",
            format!("{}.{v_rest}", b64(br#"{"alg":"HS256\u0000","typ":"JWT"}"#)),
            "invalid_token",
        ),
        case(
            "a header that is not JSON",
            format!("{}.{v_rest}", b64(b"HS256")),
            "invalid_token",
        ),
        case(
            "a header that is a JSON list",
            format!("{}.{v_rest}", b64(br#"["HS256"]"#)),
            "invalid_token",
        ),
        // Keys from elsewhere (the listener must see nothing).
        case(
            "a jku to an attacker's keys",
            raw(
                &json!({"alg": "HS256", "jku": keys_url}),
                &good("alice"),
                Algorithm::HS256,
                "attacker",
            ),
            "invalid_token",
        ),
        case(
            "an x5u to an attacker's certificate",
            raw(
                &json!({"alg": "HS256", "x5u": keys_url}),
                &good("alice"),
                Algorithm::HS256,
                "attacker",
            ),
            "invalid_token",
        ),
        case(
            "an embedded jwk of the attacker's key",
            raw(
                &json!({"alg": "HS256", "jwk": {"kty": "oct", "k": b64(b"attacker")}}),
                &good("alice"),
                Algorithm::HS256,
                "attacker",
            ),
            "invalid_token",
        ),
        case(
            "a kid that names no key",
            raw(
                &json!({"alg": "HS256", "kid": "2019-retired"}),
                &good("alice"),
                Algorithm::HS256,
                "attacker",
            ),
            "invalid_token",
        ),
        case(
            "a kid that is a URL",
            raw(
                &json!({"alg": "HS256", "kid": keys_url}),
                &good("alice"),
                Algorithm::HS256,
                "attacker",
            ),
            "invalid_token",
        ),
        case(
            "a kid that is a path",
            raw(
                &json!({"alg": "HS256", "kid": "../../../../dev/null"}),
                &good("alice"),
                Algorithm::HS256,
                "",
            ),
            "invalid_token",
        ),
        case(
            "an iss that is a URL of keys",
            hs256(&with("iss", json!(keys_url)), "attacker"),
            "invalid_token",
        ),
        // Time.
        case(
            "expired an hour ago",
            hs256(&with("exp", json!(now() - 3600)), &secret),
            "token_expired",
        ),
        case(
            "expired just past the leeway",
            hs256(&with("exp", json!(now() - 30)), &secret),
            "token_expired",
        ),
        case("no exp", hs256(&without("exp"), &secret), "invalid_token"),
        case(
            "exp as a string",
            hs256(&with("exp", json!((now() + 3600).to_string())), &secret),
            "invalid_token",
        ),
        case(
            "exp as a fraction",
            hs256(&with("exp", json!(now() as f64 + 0.5)), &secret),
            "invalid_token",
        ),
        case(
            "exp past 64 bits",
            hs256(&with("exp", json!(1e30)), &secret),
            "invalid_token",
        ),
        case(
            "exp null",
            hs256(&with("exp", Value::Null), &secret),
            "invalid_token",
        ),
        case(
            "nbf in an hour",
            hs256(&with("nbf", json!(now() + 3600)), &secret),
            "invalid_token",
        ),
        case(
            "nbf as a string",
            hs256(&with("nbf", json!("0")), &secret),
            "invalid_token",
        ),
        case(
            "iat ten years ahead",
            hs256(&with("iat", json!(now() + 10 * 365 * 86_400)), &secret),
            "invalid_token",
        ),
        case(
            "iat as a string",
            hs256(&with("iat", json!("now")), &secret),
            "invalid_token",
        ),
        // Whom it is for.
        case(
            "for another app",
            hs256(&with("app", json!("other")), &secret),
            "invalid_token",
        ),
        case(
            "for an app given as a number",
            hs256(&with("app", json!(7)), &secret),
            "invalid_token",
        ),
        case(
            "with an audience (apps are named by app, not aud)",
            hs256(&with("aud", json!("acme")), &secret),
            "invalid_token",
        ),
        // Claims of the wrong type or shape.
        case(
            "sub as a number",
            hs256(&with("sub", json!(42)), &secret),
            "invalid_token",
        ),
        case(
            "sub as an object",
            hs256(&with("sub", json!({"id": "alice"})), &secret),
            "invalid_token",
        ),
        case(
            "sub with a line break",
            hs256(&with("sub", json!("alice\nbob")), &secret),
            "invalid_token",
        ),
        case(
            "sub with a NUL",
            hs256(&with("sub", json!("alice\u{0}")), &secret),
            "invalid_token",
        ),
        case(
            "sub with a CR",
            hs256(&with("sub", json!("alice\r")), &secret),
            "invalid_token",
        ),
        case(
            "channels as a string",
            hs256(&with("channels", json!("*")), &secret),
            "invalid_token",
        ),
        case(
            "channels holding a number",
            hs256(&with("channels", json!(["news", 7])), &secret),
            "invalid_token",
        ),
        case(
            "publish as an object",
            hs256(&with("publish", json!({"*": true})), &secret),
            "invalid_token",
        ),
        case(
            "a payload that is not JSON",
            format!("{v_head}.{}.{v_sig}", b64(b"alice")),
            "invalid_token",
        ),
        case(
            "a payload that is a JSON list",
            hs256(&json!([good("alice")]), &secret),
            "invalid_token",
        ),
        // Size and shape of the token itself.
        case(
            "a token of 40 KiB, well signed",
            hs256(&with("channels", json!(big_grants)), &secret),
            "invalid_token",
        ),
        case(
            "garbage that is not base64",
            "!!!.###.$$$".into(),
            "invalid_token",
        ),
        case(
            "standard base64 with padding",
            format!("{}=.{v_payload}=.{v_sig}=", v_head),
            "invalid_token",
        ),
        case("four parts", format!("{valid}.{v_sig}"), "invalid_token"),
        case("two parts", format!("{v_head}.{v_payload}"), "invalid_token"),
        case("one part", v_payload.to_owned(), "invalid_token"),
        case("only dots", "..".into(), "invalid_token"),
        case(
            "a valid token with a line break after it",
            format!("{valid}\n"),
            "invalid_token",
        ),
        case(
            "a valid token with a space inside",
            format!("{v_head} .{v_rest}"),
            "invalid_token",
        ),
        case(
            "the word Bearer and a token",
            format!("Bearer {valid}"),
            "invalid_token",
        ),
        case("the app key instead of a token", app.key.clone(), "invalid_token"),
        case(
            "the token secret instead of a token",
            secret.clone(),
            "invalid_token",
        ),
    ];
    // A token without sub is someone without a name: never a listed user.
    cases.push(Case {
        name: "no sub, on a user-limited channel",
        token: hs256(&without("sub"), &secret),
        channel: "im#alice,bob",
        status: 403,
        code: "forbidden",
    });
    cases.push(Case {
        name: "an empty token (anonymous), on a channel that needs one",
        token: String::new(),
        channel: "news",
        status: 401,
        code: "unauthorized",
    });

    let a = &app.name;
    let good_tok = hs256(&good("alice"), &secret);
    let mut refresher = server.ws(&app, Some(&good_tok)).await.unwrap();
    let mut accepted = Vec::new();
    let mut wrong = Vec::new();
    let mut tried = 0;
    for c in &cases {
        let t = enc(&c.token);
        let ch = enc(c.channel);
        let mut answers: Vec<(&str, Outcome)> = Vec::new();
        // An accepted stream never ends: only its head is read.
        let res = server
            .http
            .get(format!(
                "{}/v1/apps/{a}/events?channel={ch}&token={t}",
                server.url
            ))
            .timeout(REQUEST_WAIT)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = if status == 200 {
            Value::Null
        } else {
            res.json().await.unwrap_or(Value::Null)
        };
        answers.push(("SSE", refusal(&(status, body))));
        let got = server
            .get_within(
                &format!("/v1/apps/{a}/poll?channel={ch}&timeout=0&token={t}"),
                None,
            )
            .await;
        answers.push(("long-poll", refusal(&got)));
        let ws = Ws::connect(&server.app_url(&app, &format!("/ws?token={t}"))).await;
        answers.push((
            "WebSocket",
            match ws {
                Err(got) => refusal(&got),
                // Let in (a token is not needed to connect): it may do nothing.
                Ok(mut ws) => {
                    let r = ws.subscribe(c.channel).await;
                    match r["error"]["code"].as_str() {
                        Some(code) => Ok((c.status, code.to_owned())),
                        None => Err(format!("subscribed: {r}")),
                    }
                }
            },
        ));
        let got = server
            .post(
                &format!("/v1/apps/{a}/publish?token={t}"),
                None,
                &json!({"channel": c.channel, "data": "forged"}),
            )
            .await;
        answers.push(("client publish", refusal(&got)));
        if c.status == 401 && !c.token.is_empty() {
            let r = refresher
                .request(json!({"op": "refresh", "token": c.token}))
                .await;
            answers.push((
                "WebSocket refresh",
                match r["error"]["code"].as_str() {
                    Some(code) => Ok((401, code.to_owned())),
                    None => Err(format!("refreshed: {r}")),
                },
            ));
        }
        for (transport, answer) in answers {
            tried += 1;
            match answer {
                Err(why)
                    if why.starts_with("accepted")
                        || why.starts_with("subscribed")
                        || why.starts_with("refreshed") =>
                {
                    accepted.push(format!("{} on {transport}: {why}", c.name))
                }
                Err(why) => wrong.push(format!("{} on {transport}: {why}", c.name)),
                Ok((status, code)) if status != c.status || code != c.code => wrong.push(format!(
                    "{} on {transport}: expected {} {}, got {status} {code}",
                    c.name, c.status, c.code
                )),
                Ok(_) => {}
            }
        }
    }
    assert!(
        accepted.is_empty() && wrong.is_empty(),
        "{} of {tried} tries were accepted:\n{}\n{} were refused with the wrong answer:\n{}",
        accepted.len(),
        accepted.join("\n"),
        wrong.len(),
        wrong.join("\n")
    );
    assert!(cases.len() >= 40, "{} cases", cases.len());

    // Nothing was published; the connection that refused the refreshes kept
    // its good token.
    for ch in ["news", "im#alice,bob"] {
        assert_eq!(server.history_offsets(&app, ch).await, Vec::<u64>::new(), "{ch}");
    }
    assert!(refresher.subscribe("news").await.get("ok").is_some());
    server.publish(&app, "news", json!("real")).await;
    assert_eq!(refresher.messages(1).await[0]["data"], "real");

    // No token made the server fetch a key.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        fetched.load(Ordering::SeqCst),
        0,
        "the server connected to the key URL"
    );
    key_server.abort();
}

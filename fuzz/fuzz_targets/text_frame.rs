//! `wire::text::parse_server_text` on arbitrary UTF-8 (a WebSocket text frame
//! is UTF-8 by the protocol; tungstenite rejects anything else), and
//! `encode_request` on tokens taken from the same bytes.
//!
//! Checks, besides "never panics":
//! - the frame is accepted exactly when it is a JSON object, and classified by
//!   its `type` as a plain `serde_json::Value` reading says;
//! - `error`/`message` text is the `data` string, or `data`'s JSON text;
//! - `TextCounts::record` counts every frame exactly once;
//! - every request encodes to JSON that parses to the action and tokens given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use panda_feed::Mode;
use panda_feed::wire::text::{Request, ServerText, TextCounts, encode_request, parse_server_text};
use serde_json::{Value, json};

fn check_text(got: &str, data: &Value) {
    match data {
        Value::String(s) => assert_eq!(got, s),
        other => {
            // Not compared as values after a reparse: serde_json (without its
            // `float_roundtrip` feature) may read a long number 1 ulp away
            // from the shortest text it printed for it.
            assert_eq!(got, other.to_string());
            let _: Value = serde_json::from_str(got).expect("non-string data kept as JSON text");
        }
    }
}

fn check_requests(data: &[u8]) {
    let tokens: Vec<u32> = data
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut out = String::new();
    for (req, want) in [
        (
            Request::Subscribe(&tokens),
            json!({"a": "subscribe", "v": tokens}),
        ),
        (
            Request::Unsubscribe(&tokens),
            json!({"a": "unsubscribe", "v": tokens}),
        ),
        (
            Request::Mode(Mode::Ltp, &tokens),
            json!({"a": "mode", "v": ["ltp", tokens]}),
        ),
        (
            Request::Mode(Mode::Quote, &tokens),
            json!({"a": "mode", "v": ["quote", tokens]}),
        ),
        (
            Request::Mode(Mode::Full, &tokens),
            json!({"a": "mode", "v": ["full", tokens]}),
        ),
    ] {
        encode_request(req, &mut out);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v, want, "{out}");
    }
}

fuzz_target!(|data: &[u8]| {
    check_requests(data);
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_server_text(frame);
    let mut counts = TextCounts::default();
    counts.record(&parsed);
    let TextCounts {
        order,
        error,
        message,
        unknown,
        invalid,
    } = counts;
    assert_eq!(order + error + message + unknown + invalid, 1);

    let reference = serde_json::from_str::<Value>(frame);
    match (parsed, reference) {
        (Err(e), Err(_)) => {
            assert_eq!(invalid, 1);
            let _ = e.to_string();
        }
        (Err(e), Ok(v)) => {
            assert!(!v.is_object(), "an object was rejected: {e}");
            let _ = e.to_string();
        }
        (Ok(got), Ok(Value::Object(env))) => {
            let kind = env.get("type").and_then(Value::as_str).unwrap_or("");
            let data = env.get("data").cloned().unwrap_or(Value::Null);
            match got {
                ServerText::Order(d) => {
                    assert_eq!(kind, "order");
                    assert_eq!(d, data);
                }
                ServerText::Error(s) => {
                    assert_eq!(kind, "error");
                    check_text(&s, &data);
                }
                ServerText::Message(s) => {
                    assert_eq!(kind, "message");
                    check_text(&s, &data);
                }
                ServerText::Unknown { kind: k } => {
                    assert!(
                        !matches!(kind, "order" | "error" | "message"),
                        "{kind} as unknown"
                    );
                    assert_eq!(k, kind);
                }
            }
        }
        (Ok(got), reference) => panic!("accepted {got:?}, but serde_json reads {reference:?}"),
    }
});

//! The downstream stream's text protocol (README, "Downstream stream"):
//! client requests in Kite's subscribe shape, and the server's own frames
//! (acknowledgements and errors). Pure functions, used on the `stream`
//! thread; a bad request is an error value naming what was wrong, never a
//! panic.

use serde_json::{Value, json};

/// A parsed client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Request {
    /// `{"a":"subscribe","v":[tokens]}`: replay, then live bars.
    Subscribe(Vec<u32>),
    /// `{"a":"unsubscribe","v":[tokens]}`.
    Unsubscribe(Vec<u32>),
    /// `{"a":"mode","v":["bars",[tokens]]}`: bars are the only mode served.
    ModeBars,
}

/// The shape every request must have, quoted in errors.
const SHAPE: &str =
    r#"expected {"a":"subscribe","v":[TOKEN,...]} or {"a":"unsubscribe","v":[TOKEN,...]}"#;

/// Parses one text frame.
///
/// # Errors
/// What is wrong with it, naming the bad value and the expected shape.
pub(super) fn parse(text: &str) -> Result<Request, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e}); {SHAPE}"))?;
    let Some(action) = v.get("a").and_then(Value::as_str) else {
        return Err(format!("no \"a\" action; {SHAPE}"));
    };
    let arg = v.get("v").unwrap_or(&Value::Null);
    match action {
        "subscribe" => tokens(arg).map(Request::Subscribe),
        "unsubscribe" => tokens(arg).map(Request::Unsubscribe),
        "mode" => match arg.get(0).and_then(Value::as_str) {
            Some("bars") => Ok(Request::ModeBars),
            Some(m) => Err(format!(
                "mode {m:?} is not served: this stream sends bars only (ticks on it are not \
                 built; read ticks from the Kafka topic)"
            )),
            None => Err(r#"expected {"a":"mode","v":["bars",[TOKEN,...]]}"#.to_owned()),
        },
        other => Err(format!("unknown action {other:?}; {SHAPE}")),
    }
}

fn tokens(v: &Value) -> Result<Vec<u32>, String> {
    let Some(list) = v.as_array() else {
        return Err(format!(
            "\"v\" must be a list of instrument tokens; {SHAPE}"
        ));
    };
    list.iter()
        .map(|t| {
            t.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!("{t} is not an instrument token (a whole number, 1..=4294967295)")
                })
        })
        .collect()
}

/// An error frame, in Kite's text-message shape.
pub(super) fn error_frame(message: &str) -> String {
    json!({"type": "error", "data": message}).to_string()
}

/// The acknowledgement sent after a subscribe's replay.
pub(super) fn subscribed_frame(tokens: &[u32], replayed: usize) -> String {
    json!({"type": "subscribed", "tokens": tokens, "replayed": replayed}).to_string()
}

/// The acknowledgement of an unsubscribe.
pub(super) fn unsubscribed_frame(tokens: &[u32]) -> String {
    json!({"type": "unsubscribed", "tokens": tokens}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_their_errors() {
        assert_eq!(
            parse(r#"{"a":"subscribe","v":[408065,884737]}"#),
            Ok(Request::Subscribe(vec![408_065, 884_737]))
        );
        assert_eq!(
            parse(r#"{"a":"unsubscribe","v":[1]}"#),
            Ok(Request::Unsubscribe(vec![1]))
        );
        assert_eq!(
            parse(r#"{"a":"mode","v":["bars",[1]]}"#),
            Ok(Request::ModeBars)
        );
        for (bad, says) in [
            ("nope", "not JSON"),
            ("{}", "no \"a\""),
            (r#"{"a":"sub","v":[1]}"#, "\"sub\""),
            (r#"{"a":"subscribe","v":1}"#, "list"),
            (r#"{"a":"subscribe","v":[-1]}"#, "-1 is not"),
            (r#"{"a":"subscribe","v":[4294967296]}"#, "4294967296"),
            (r#"{"a":"subscribe","v":["x"]}"#, "\"x\""),
            (r#"{"a":"mode","v":["bars+ticks",[1]]}"#, "not built"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let f: Value = serde_json::from_str(&error_frame("a \"b\"")).unwrap();
        assert_eq!(f, json!({"type":"error","data":"a \"b\""}));
    }
}

//! Text (JSON) frames: server messages in, subscription requests out.
//!
//! Runs on the network thread, off the tick path: text frames are rare
//! (postbacks, errors, broker messages) and requests are sent at (re)connect.
//!
//! Server messages are `{"type": …, "data": …}` and are read leniently, as the
//! official clients read them: unknown fields are ignored, `data` may be any
//! JSON value, unknown `type`s are reported as [`ServerText::Unknown`] for the
//! caller to count. Requests are `{"a": action, "v": value}` with tokens as JSON
//! numbers (string tokens are silently ignored by the server, docs/KITE_PROTOCOL.md §1.7).

use serde_json::Value;

use crate::tick::Mode;

/// A classified server text message.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerText {
    /// An order postback; `data` as received.
    Order(Value),
    /// A server error, e.g. `Can't subscribe to more than 3000 instruments.`
    /// Non-string `data` is kept as its JSON text.
    Error(String),
    /// A broker message or alert.
    Message(String),
    /// A well-formed envelope with a `type` we do not know (or none).
    Unknown {
        /// The `type` value, or empty when absent or not a string.
        kind: String,
    },
}

/// Why a text frame could not be read as a server message.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// Not JSON at all.
    #[error("text frame is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not an object (e.g. an array or a string).
    #[error("text frame is JSON but not an object")]
    NotObject,
}

fn into_text(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Parses one server text frame.
///
/// # Errors
/// [`TextError`] when the frame is not JSON or not a JSON object.
pub fn parse_server_text(frame: &str) -> Result<ServerText, TextError> {
    let Value::Object(mut env) = serde_json::from_str::<Value>(frame)? else {
        return Err(TextError::NotObject);
    };
    let kind = match env.remove("type") {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let data = env.remove("data").unwrap_or(Value::Null);
    Ok(match kind.as_str() {
        "order" => ServerText::Order(data),
        "error" => ServerText::Error(into_text(data)),
        "message" => ServerText::Message(into_text(data)),
        _ => ServerText::Unknown { kind },
    })
}

/// Counts of text frames by class, for the status line and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextCounts {
    /// `order` postbacks.
    pub order: u64,
    /// `error` messages.
    pub error: u64,
    /// `message` messages.
    pub message: u64,
    /// Valid JSON objects with an unknown or missing `type`.
    pub unknown: u64,
    /// Frames that are not JSON objects.
    pub invalid: u64,
}

impl TextCounts {
    /// Counts one parse result.
    pub fn record(&mut self, parsed: &Result<ServerText, TextError>) {
        let slot = match parsed {
            Ok(ServerText::Order(_)) => &mut self.order,
            Ok(ServerText::Error(_)) => &mut self.error,
            Ok(ServerText::Message(_)) => &mut self.message,
            Ok(ServerText::Unknown { .. }) => &mut self.unknown,
            Err(_) => &mut self.invalid,
        };
        *slot += 1;
    }
}

/// A client → server request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Subscribe tokens (their mode starts as quote).
    Subscribe(&'a [u32]),
    /// Unsubscribe tokens.
    Unsubscribe(&'a [u32]),
    /// Set the mode of tokens.
    Mode(Mode, &'a [u32]),
}

fn write_tokens(out: &mut String, tokens: &[u32]) {
    out.push('[');
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(itoa::Buffer::new().format(*t));
    }
    out.push(']');
}

/// Encodes a request as compact JSON into `out` (cleared first), e.g.
/// `{"a":"mode","v":["full",[408065]]}`.
///
/// ```
/// use panda_feed::wire::text::{Request, encode_request};
/// use panda_feed::Mode;
/// let mut s = String::new();
/// encode_request(Request::Subscribe(&[408065, 884737]), &mut s);
/// assert_eq!(s, r#"{"a":"subscribe","v":[408065,884737]}"#);
/// encode_request(Request::Mode(Mode::Full, &[408065]), &mut s);
/// assert_eq!(s, r#"{"a":"mode","v":["full",[408065]]}"#);
/// ```
pub fn encode_request(req: Request<'_>, out: &mut String) {
    out.clear();
    match req {
        Request::Subscribe(tokens) => {
            out.push_str(r#"{"a":"subscribe","v":"#);
            write_tokens(out, tokens);
        }
        Request::Unsubscribe(tokens) => {
            out.push_str(r#"{"a":"unsubscribe","v":"#);
            write_tokens(out, tokens);
        }
        Request::Mode(mode, tokens) => {
            out.push_str(r#"{"a":"mode","v":[""#);
            out.push_str(mode.as_str());
            out.push_str("\",");
            write_tokens(out, tokens);
            out.push(']');
        }
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_classified_leniently() {
        let order = parse_server_text(
            r#"{"type":"order","data":{"order_id":"1","status":"COMPLETE","extra":[1]},"x":1}"#,
        )
        .unwrap();
        assert!(matches!(order, ServerText::Order(ref v) if v["status"] == "COMPLETE"));
        assert_eq!(
            parse_server_text(
                r#"{"type":"error","data":"Can't subscribe to more than 3000 instruments."}"#
            )
            .unwrap(),
            ServerText::Error("Can't subscribe to more than 3000 instruments.".into())
        );
        assert_eq!(
            parse_server_text(r#"{"type":"error","data":{"code":1}}"#).unwrap(),
            ServerText::Error(r#"{"code":1}"#.into())
        );
        assert_eq!(
            parse_server_text(r#"{"type":"message","data":"hi"}"#).unwrap(),
            ServerText::Message("hi".into())
        );
        assert_eq!(
            parse_server_text(r#"{"type":"quux","data":1}"#).unwrap(),
            ServerText::Unknown {
                kind: "quux".into()
            }
        );
        assert_eq!(
            parse_server_text(r#"{}"#).unwrap(),
            ServerText::Unknown {
                kind: String::new()
            }
        );
        assert!(parse_server_text("not json").is_err());
        assert!(parse_server_text("[1,2]").is_err());
    }

    #[test]
    fn counts_by_class() {
        let mut c = TextCounts::default();
        for f in [
            r#"{"type":"order","data":{}}"#,
            r#"{"type":"zzz"}"#,
            "{",
            r#"{"type":"error","data":"e"}"#,
        ] {
            c.record(&parse_server_text(f));
        }
        assert_eq!(
            c,
            TextCounts {
                order: 1,
                error: 1,
                message: 0,
                unknown: 1,
                invalid: 1
            }
        );
    }

    #[test]
    fn requests_use_numeric_tokens() {
        let mut s = String::new();
        encode_request(Request::Unsubscribe(&[]), &mut s);
        assert_eq!(s, r#"{"a":"unsubscribe","v":[]}"#);
        encode_request(Request::Mode(Mode::Ltp, &[1, u32::MAX]), &mut s);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["v"][1][1].as_u64(), Some(u64::from(u32::MAX)));
        assert_eq!(v["v"][0], "ltp");
    }
}

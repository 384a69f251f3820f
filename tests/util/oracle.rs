//! Decoding to the per-frame JSON shape of `decode --framed`, and comparing
//! with the official parser's output by the rules of the data contract
//! (README, "Data contract").

use panda_feed::Tick;
use panda_feed::json::{JsonBuf, write_tick};
use panda_feed::wire::{self, Message};
use serde_json::{Value, json};

/// Our decoding of one message in `decode --framed`'s shape:
/// `{"ticks":[...]}` or `{"error":"..."}`.
pub(crate) fn decode_frame(msg: &[u8]) -> Value {
    match wire::decode(msg) {
        Err(e) => json!({ "error": e.to_string() }),
        Ok(Message::Heartbeat) => json!({ "ticks": [] }),
        Ok(Message::Packets(p)) => {
            let mut ticks = Vec::new();
            let mut buf = JsonBuf::with_capacity(0);
            for packet in p {
                if let Some(t) = Tick::from_packet(&packet) {
                    buf.clear();
                    write_tick(&t, &mut buf).expect("room for a tick");
                    ticks.push(
                        serde_json::from_slice::<Value>(buf.as_bytes())
                            .expect("encoder emits valid JSON"),
                    );
                }
            }
            json!({ "ticks": ticks })
        }
    }
}

/// `Ok` when `ours` agrees with the oracle's tick list: same keys, numbers equal
/// as f64 and of the same kind (int vs float), naive-UTC timestamps equal to our
/// RFC 3339 `Z` text (the raw-0 epoch maps to our `null`).
pub(crate) fn same_ticks(ours: &Value, oracle: &Value, path: &str) -> Result<(), String> {
    match (ours, oracle) {
        (Value::Object(a), Value::Object(b)) => {
            let mut ka: Vec<_> = a.keys().collect();
            let mut kb: Vec<_> = b.keys().collect();
            ka.sort();
            kb.sort();
            if ka != kb {
                return Err(format!("{path}: keys {ka:?} != oracle {kb:?}"));
            }
            for (k, v) in b {
                same_ticks(&a[k], v, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!("{path}: {} items != oracle {}", a.len(), b.len()));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same_ticks(x, y, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (_, Value::String(s)) if path.ends_with("_time") || path.ends_with("_timestamp") => {
            let want = if s == "1970-01-01T00:00:00" {
                Value::Null
            } else {
                Value::String(format!("{s}Z"))
            };
            if *ours == want {
                Ok(())
            } else {
                Err(format!("{path}: {ours} != oracle {s} (as {want})"))
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            let same_kind = a.is_f64() == b.is_f64();
            let same_value = a.as_f64().map(f64::to_bits) == b.as_f64().map(f64::to_bits);
            if same_kind && same_value {
                Ok(())
            } else {
                Err(format!("{path}: {a} != oracle {b}"))
            }
        }
        _ if ours == oracle => Ok(()),
        _ => Err(format!("{path}: {ours} != oracle {oracle}")),
    }
}

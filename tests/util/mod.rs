//! Shared test helpers: decode to the per-frame JSON shape, and compare with the
//! official parser's output by the rules of the data contract (DESIGN §2).

#![allow(dead_code, reason = "each test binary uses a subset")]

use panda_feed::Tick;
use panda_feed::engine::kafka::KafkaConfig;
use panda_feed::engine::{EngineConfig, IdlePolicy, Secret};
use panda_feed::json::{JsonBuf, write_tick};
use panda_feed::mock::default_instruments;
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

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub(crate) fn wait_for(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Resident set size of this process, from /proc/self/statm.
pub(crate) fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm has resident pages");
    pages * 4096
}

/// The engine settings the engine and ops tests share: the mock's
/// credentials, `n_instruments` of its default instruments, 2 parked
/// publishers, `linger.ms` 2.
pub(crate) fn engine_config(
    mock: &panda_feed::mock::MockExchange,
    brokers: &str,
    n_instruments: usize,
) -> EngineConfig {
    EngineConfig {
        ws_url: mock.ws_url(),
        api_key: Secret::new("mock_api_key"),
        access_token: Secret::new("mock_access_token"),
        instruments: default_instruments(n_instruments)
            .iter()
            .map(|i| (i.token, i.mode.unwrap()))
            .collect(),
        publishers: 2,
        idle: IdlePolicy::Park,
        kafka: KafkaConfig {
            brokers: brokers.to_owned(),
            linger_ms: 2,
            ..KafkaConfig::default()
        },
        ..EngineConfig::default()
    }
}

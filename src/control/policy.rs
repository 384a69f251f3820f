//! Hot reload's rules (README, "Reload"): which keys a reload applies to the
//! running feed ([`LIVE`]) and which need a restart, the keys that differ
//! between two configs, and the running config after a reload (live keys
//! from the new file, the others kept).
//!
//! Pure functions over [`Config`], on the `run` loop's thread.

use serde_json::{Map, Value};

use crate::config::Config;

/// Keys (`section.key`) and whole sections (`section.*`) a reload applies
/// live. Every other key needs a restart: a reload that changes one says so
/// and applies the rest.
pub const LIVE: &[&str] = &[
    "zerodha.instruments",
    "zerodha.default_mode",
    "fields.*",
    "subscriptions.*",
    "run.*",
    "redis.*",
    "ops.stale_after_ms",
    "ops.ring_high_pct",
    "ops.drop_rate_pct",
    "ops.send_failure_pct",
    "ops.slow_n",
    "ops.expected_tick_interval_ms",
    "ops.admin_token_file",
    "ops.admin_remote",
];

/// Whether a reload applies `key` (`section.key`) live.
#[must_use]
pub fn is_live(key: &str) -> bool {
    let section = key.split('.').next().unwrap_or("");
    LIVE.iter()
        .any(|l| *l == key || l.strip_suffix(".*").is_some_and(|s| s == section))
}

/// `section.key` → value of every key of `cfg`.
fn flat(cfg: &Config) -> Map<String, Value> {
    let mut out = Map::new();
    if let Ok(Value::Object(sections)) = serde_json::to_value(cfg) {
        for (section, keys) in sections {
            if let Value::Object(keys) = keys {
                for (k, v) in keys {
                    out.insert(format!("{section}.{k}"), v);
                }
            }
        }
    }
    out
}

/// The keys whose values differ between `a` and `b`, sorted.
#[must_use]
pub fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let (fa, fb) = (flat(a), flat(b));
    let mut keys: Vec<String> = fa
        .iter()
        .filter(|(k, v)| fb.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    keys.extend(fb.keys().filter(|k| !fa.contains_key(*k)).cloned());
    keys.sort();
    keys.dedup();
    keys
}

/// The running config after a reload to `new`: its live keys, and
/// `running`'s for the rest.
///
/// # Errors
/// The merged config cannot be rebuilt (not expected: both sides are valid
/// configs of the same shape), with the words.
pub fn merge_live(running: &Config, new: &Config) -> Result<Config, String> {
    let mut out = flat(running);
    for (k, v) in flat(new) {
        if is_live(&k) {
            out.insert(k, v);
        }
    }
    let mut sections: Map<String, Value> = Map::new();
    for (k, v) in out {
        let (section, key) = k.split_once('.').unwrap_or((&k, ""));
        let entry = sections
            .entry(section.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(key.to_owned(), v);
        }
    }
    serde_json::from_value(Value::Object(sections)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_keys_are_applied_and_restart_keys_kept() {
        let running = Config::default();
        let mut new = Config::default();
        new.ops.stale_after_ms = 1234;
        new.kafka.topic = "other".into();
        new.run.status_interval_ms = 0;
        let changed = changed_keys(&running, &new);
        assert_eq!(
            changed,
            [
                "kafka.topic",
                "ops.stale_after_ms",
                "run.status_interval_ms"
            ]
        );
        let merged = merge_live(&running, &new).unwrap();
        assert_eq!(merged.ops.stale_after_ms, 1234);
        assert_eq!(merged.run.status_interval_ms, 0);
        assert_eq!(merged.kafka.topic, running.kafka.topic, "restart-only");
        assert!(is_live("redis.url") && is_live("subscriptions.queue"));
        assert!(!is_live("kafka.brokers") && !is_live("engine.publishers"));
        assert!(!is_live("ops.listen") && !is_live("zerodha.ws_url"));
    }
}

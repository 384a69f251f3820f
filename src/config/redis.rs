//! `[redis]`: the Redis pipeline-metrics settings and their validation. Read
//! on the main thread; the ops side's Redis writer consumes them. The URL's
//! password never appears in `Debug` or in errors.

use serde::{Deserialize, Serialize};

use crate::secret::redact_url;

/// `[redis]` settings.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`; empty turns Redis metrics off.
    /// The password is never shown.
    pub url: String,
    /// File holding the URL (so its password is on no command line and in
    /// no config file); used when `REDIS__URL` and `--redis-url` are unset.
    pub url_file: Option<std::path::PathBuf>,
    /// Key prefix.
    pub key_prefix: String,
    /// Time to live of every key, s.
    pub ttl_s: u64,
    /// Interval between two pipelines, ms.
    pub interval_ms: u64,
    /// Connect, read and write timeout, ms.
    pub timeout_ms: u64,
    /// Consecutive failures that open the circuit.
    pub breaker_failures: u32,
    /// How long the circuit stays open before half-open probes, ms.
    pub breaker_cooldown_ms: u64,
    /// Writes allowed while half-open before the circuit decides.
    pub half_open_probes: u32,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            url_file: None,
            key_prefix: "pipeline:market_ticks:market".into(),
            ttl_s: 300,
            interval_ms: 1000,
            timeout_ms: 250,
            breaker_failures: 10,
            breaker_cooldown_ms: 60_000,
            half_open_probes: 1,
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("url_file", &self.url_file)
            .field("key_prefix", &self.key_prefix)
            .field("ttl_s", &self.ttl_s)
            .field("interval_ms", &self.interval_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown_ms", &self.breaker_cooldown_ms)
            .field("half_open_probes", &self.half_open_probes)
            .finish()
    }
}

impl RedisConfig {
    /// Every problem with the settings.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.url.is_empty()
            || ["redis://", "rediss://", "redis+unix://", "unix://"]
                .iter()
                .any(|s| self.url.starts_with(s)))
        {
            p.push(format!(
                "redis.url {:?} must start with redis://, rediss://, redis+unix:// or unix:// \
                 (e.g. redis://:PASSWORD@127.0.0.1:6379/0), or be empty to turn Redis metrics off",
                redact_url(&self.url)
            ));
        }
        for (k, v) in [
            ("redis.ttl_s", self.ttl_s),
            ("redis.interval_ms", self.interval_ms),
            ("redis.timeout_ms", self.timeout_ms),
            ("redis.breaker_failures", u64::from(self.breaker_failures)),
            ("redis.breaker_cooldown_ms", self.breaker_cooldown_ms),
            ("redis.half_open_probes", u64::from(self.half_open_probes)),
        ] {
            super::ranges::check(&mut p, k, v);
        }
        if self.key_prefix.is_empty() {
            p.push("redis.key_prefix must not be empty".into());
        }
        p
    }
}

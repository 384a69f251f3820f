//! `config::Config::parse` on arbitrary UTF-8 (what `Config::load` runs on a
//! file's text), then every validation `run` applies to what it parsed.
//!
//! Checks, besides "never panics":
//! - an error names the file;
//! - `zerodha.supervision()` accepts exactly: liveness, backoff base and cap,
//!   connect timeout ≥ 1 ms and cap ≥ base; and then gives those durations;
//! - `kafka`, `ops`, `redis` and the engine settings built from the file (as
//!   `run` builds them) report their problems without panicking, and neither
//!   the problems nor any `Debug` output depends on a secret: the api key, the
//!   access token, the ws_url query, a `kafka.extra` value (planted here);
//! - `kafka.redact` removes every `kafka.extra` value from a message;
//! - `secret::redact_url` of `redis.url`, read back as the Redis client reads
//!   a URL, has no password but `***`.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use panda_feed::config::Config;
use panda_feed::engine::EngineConfig;
use panda_feed::secret::{Secret, redact_url};
use url::Url;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match Config::parse(text, "fuzz.toml") {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("config fuzz.toml: "), "{msg}");
            return;
        }
    };

    // Supervision: accepted exactly when the documented bounds hold.
    let z = &cfg.zerodha;
    let ok = z.liveness_ms > 0
        && z.backoff_base_ms > 0
        && z.backoff_cap_ms > 0
        && z.connect_timeout_ms > 0
        && z.backoff_cap_ms >= z.backoff_base_ms;
    // `supervision()` refuses exactly when the section has a problem (its
    // ranges, README "Ranges"), listing those problems.
    let problems = z.problems();
    match z.supervision() {
        Ok(s) => {
            assert!(ok && problems.is_empty(), "{z:?} accepted");
            assert_eq!(s.liveness, Duration::from_millis(z.liveness_ms));
            assert_eq!(s.backoff_base, Duration::from_millis(z.backoff_base_ms));
            assert_eq!(s.backoff_cap, Duration::from_millis(z.backoff_cap_ms));
            assert_eq!(
                s.connect_timeout,
                Duration::from_millis(z.connect_timeout_ms)
            );
            assert_eq!(s.ping_interval.is_some(), z.ping_interval_ms > 0);
        }
        Err(p) => {
            assert!(!p.is_empty() && p == problems, "{z:?} refused: {p:?}");
            assert!(!ok || !problems.is_empty(), "{z:?} refused: {p:?}");
            assert!(p.iter().all(|m| m.starts_with("zerodha.")), "{p:?}");
        }
    }

    // Redaction of librdkafka messages that echo an `extra` value. A value
    // with `<` or `>`, or inside the placeholder itself, can reappear next to
    // or within `<redacted>`, which shows nothing of it.
    let echoed: String = cfg
        .kafka
        .extra
        .values()
        .map(|v| format!("bad value \"{v}\"; "))
        .collect();
    let redacted = cfg.kafka.redact(&echoed);
    for v in cfg.kafka.extra.values() {
        if v.len() >= 3 && !v.contains(['<', '>']) && !"redacted".contains(v.as_str()) {
            assert!(!redacted.contains(v.as_str()), "{v:?} left in {redacted:?}");
        }
    }

    // The checks `run` makes, twice, with two different secrets planted where
    // secrets go: what is reported and what `Debug` shows must not depend on them.
    let a = reports(&cfg, "s3ntinel-fuzz-secret-A");
    let b = reports(&cfg, "s3ntinel-fuzz-secret-B");
    assert_eq!(a, b, "a planted secret shows");

    // The Redis URL as reported: read as the client reads it (the `url`
    // crate), it carries no password but `***`.
    let shown = redact_url(&cfg.redis.url);
    if let Ok(u) = Url::parse(&shown) {
        assert!(
            matches!(u.password(), None | Some("***" | "%2A%2A%2A")),
            "{:?} shown as {shown:?}, whose password is {:?}",
            cfg.redis.url,
            u.password()
        );
    }
});

/// Problems and `Debug` output of the settings, with `secret` as the api key,
/// access token, `kafka.extra` password and ws_url query.
fn reports(cfg: &Config, secret: &str) -> (Vec<String>, String, String) {
    let mut cfg = cfg.clone();
    cfg.zerodha.api_key = secret.to_owned();
    cfg.kafka
        .extra
        .insert("sasl.password".into(), secret.to_owned());
    let mut problems = cfg.kafka.problems();
    problems.extend(cfg.ops.problems());
    problems.extend(cfg.redis.problems());
    let _ = cfg.kafka.client_config("fuzz");
    let engine = EngineConfig {
        api_key: Secret::new(secret),
        access_token: Secret::new(secret),
        ..EngineConfig::from_sections(&cfg)
    };
    problems.extend(engine.problems());
    // A URL with a query (credentials, say) is refused without showing it.
    let queried = EngineConfig {
        ws_url: format!("{}?access_token={secret}", cfg.zerodha.ws_url),
        ..engine.clone()
    };
    let refused = queried.problems();
    assert!(
        refused.iter().any(|p| p.contains("must not carry a query")),
        "{refused:?}"
    );
    problems.extend(refused);
    (problems, format!("{cfg:?}"), format!("{engine:?}"))
}

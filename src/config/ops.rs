//! `[ops]`: the operator's view settings (HTTP listen address, sampling,
//! health thresholds) and their validation. Read on the main thread; the ops
//! side (`crate::ops`) consumes them.

use serde::{Deserialize, Serialize};

/// `[ops]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Address of the ops HTTP server; empty turns it off.
    pub listen: String,
    /// How often counters are sampled (health, rates, history), ms.
    pub sample_ms: u64,
    /// Window of the drop and send-failure rates, s.
    pub window_s: u64,
    /// Health samples kept per connection for `/stats/connections`.
    pub history: usize,
    /// An open connection with no frame for this long is `stale_feed`, ms.
    pub stale_after_ms: u64,
    /// Ring fill above which `ring_high` is raised, %.
    pub ring_high_pct: f64,
    /// Drop rate above which `drop_rate_high` is raised, %.
    pub drop_rate_pct: f64,
    /// Send-failure rate above which `send_failure_rate_high` is raised, %.
    pub send_failure_pct: f64,
    /// Entries in each `/ops/slow` list.
    pub slow_n: usize,
    /// Expected interval between ticks of a live instrument, ms; exported as
    /// a gauge for the tick-age alert.
    pub expected_tick_interval_ms: u64,
    /// File holding the bearer token every control `POST` must carry
    /// (README, "Control plane"); unset = no token (loopback only).
    pub admin_token_file: Option<std::path::PathBuf>,
    /// Serve control `POST`s to non-loopback clients (needs
    /// `admin_token_file`).
    pub admin_remote: bool,
    /// Address of the downstream bar stream (README, "Downstream stream"),
    /// loopback only; empty or `off` turns it off.
    pub stream_listen: String,
    /// Bars kept per instrument and replayed to a subscribing client (N).
    pub stream_replay_bars: usize,
    /// Stream clients held at once; more are refused (HTTP 503, counted).
    pub stream_max_clients: usize,
    /// A stream client's outgoing buffer bound, bytes; a client that does
    /// not read past it is disconnected (counted).
    pub stream_client_buffer_bytes: usize,
    /// Instruments with a replay window; bars of more are counted, not kept.
    pub stream_max_instruments: usize,
    /// Time to live of each Redis replay list, s.
    pub stream_redis_ttl_s: u64,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9187".into(),
            sample_ms: 1000,
            window_s: 60,
            history: 60,
            stale_after_ms: 3000,
            ring_high_pct: 80.0,
            drop_rate_pct: 1.0,
            send_failure_pct: 1.0,
            slow_n: 10,
            expected_tick_interval_ms: 1000,
            admin_token_file: None,
            admin_remote: false,
            stream_listen: super::stream::STREAM_LISTEN.into(),
            stream_replay_bars: super::stream::STREAM_REPLAY_BARS,
            stream_max_clients: super::stream::STREAM_MAX_CLIENTS,
            stream_client_buffer_bytes: super::stream::STREAM_CLIENT_BUFFER_BYTES,
            stream_max_instruments: super::stream::STREAM_MAX_INSTRUMENTS,
            stream_redis_ttl_s: super::stream::STREAM_REDIS_TTL_S,
        }
    }
}

impl OpsConfig {
    /// Every problem with the settings.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.listen.is_empty() && self.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!(
                "ops.listen {:?} is not an IP:PORT address (e.g. 127.0.0.1:9187; empty turns the \
                 ops server off)",
                self.listen
            ));
        }
        for (k, v) in [
            ("ops.sample_ms", self.sample_ms),
            ("ops.window_s", self.window_s),
            ("ops.stale_after_ms", self.stale_after_ms),
            (
                "ops.expected_tick_interval_ms",
                self.expected_tick_interval_ms,
            ),
            ("ops.history", self.history as u64),
            ("ops.slow_n", self.slow_n as u64),
        ] {
            super::ranges::check(&mut p, k, v);
        }
        let samples = u128::from(self.window_s) * 1000 / u128::from(self.sample_ms.max(1));
        if samples > u128::from(super::ranges::MAX_WINDOW_SAMPLES) {
            p.push(format!(
                "ops.window_s = {} over ops.sample_ms = {} keeps {samples} samples: at most {}; \
                 raise ops.sample_ms or lower ops.window_s",
                self.window_s,
                self.sample_ms,
                super::ranges::MAX_WINDOW_SAMPLES
            ));
        }
        if self.admin_remote && self.admin_token_file.is_none() {
            p.push(
                "ops.admin_remote = true needs ops.admin_token_file: remote control requests \
                 must carry a token"
                    .into(),
            );
        }
        for (k, v) in [
            ("ops.ring_high_pct", self.ring_high_pct),
            ("ops.drop_rate_pct", self.drop_rate_pct),
            ("ops.send_failure_pct", self.send_failure_pct),
        ] {
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                p.push(format!("{k} = {v} must be a percentage, 0..100"));
            }
        }
        super::stream::problems(self, &mut p);
        p
    }
}

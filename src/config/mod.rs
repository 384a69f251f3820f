//! The `run` configuration: a TOML file, then environment overrides, then
//! command-line flags. Unknown keys are errors (a typo must not silently fall
//! back to a default). `config/example.toml` documents every key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use std::time::Duration;

mod bars;
mod calendar;
mod control;
pub mod defaults;
pub mod env;
mod fields;
mod kafka;
mod ops;
mod overflow;
pub mod ranges;
mod redis;
mod slo;
mod spool;
pub mod stream;
mod tiers;

use crate::tick::Mode;
pub use bars::BarsConfig;
pub use calendar::CalendarConfig;
pub use control::SubscriptionsConfig;
pub use fields::FieldsConfig;
pub use kafka::KafkaConfig;
pub use ops::OpsConfig;
pub use overflow::{Overflow, ring_slots};
use ranges::check;
pub use redis::RedisConfig;
pub use slo::SloConfig;
pub use spool::{Fsync, SpoolConfig};
pub use tiers::TiersConfig;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kite connection.
    pub zerodha: ZerodhaConfig,
    /// Threads and rings.
    pub engine: EngineSection,
    /// Kafka producer.
    pub kafka: KafkaConfig,
    /// The dead-letter spool.
    pub spool: SpoolConfig,
    /// The in-process mock exchange of `run --mock`.
    pub mock: MockSection,
    /// Run-time reporting.
    pub run: RunSection,
    /// The ops HTTP server, sampling and health thresholds.
    pub ops: OpsConfig,
    /// Redis pipeline metrics.
    pub redis: RedisConfig,
    /// The live-subscription reloader.
    pub subscriptions: SubscriptionsConfig,
    /// Which optional parts of the published tick are sent.
    pub fields: FieldsConfig,
    /// The exchange calendar: holiday file and preloaded window.
    pub calendar: CalendarConfig,
    /// Instrument tiers: what is shed first under pressure.
    pub tiers: TiersConfig,
    /// One-minute bars.
    pub bars: BarsConfig,
    /// The SLO gap monitor (README, "SLO monitoring").
    pub slo: SloConfig,
}

/// `[zerodha]`: the Kite connection. Like every key, each can be set from
/// the environment (`ZERODHA__API_KEY`, `ZERODHA__ACCESS_TOKEN`, ...).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZerodhaConfig {
    /// WebSocket URL, without query.
    pub ws_url: String,
    /// API key (prefer `api_key_file`: a file can be `chmod 600`).
    pub api_key: String,
    /// File holding the API key.
    pub api_key_file: Option<PathBuf>,
    /// API secret (`ZERODHA__API_SECRET`): used by `auth login` only; `run`
    /// does not use it. Never shown.
    pub api_secret: String,
    /// File holding the API secret (`auth login`); chmod 600.
    pub api_secret_file: Option<PathBuf>,
    /// The day's access token (`ZERODHA__ACCESS_TOKEN`; prefer the
    /// environment or `access_token_file`). Never shown.
    pub access_token: String,
    /// File holding the access token (written daily by `auth login`).
    pub access_token_file: Option<PathBuf>,
    /// A command (argv, no shell) whose stdout is the access token
    /// (README "Credentials and auth"); empty = none.
    pub access_token_command: Vec<String>,
    /// The command is killed (its whole process group) after this long, ms.
    pub access_token_command_timeout_ms: u64,
    /// Least time between runs of the command while a connection is
    /// refused (`auth_failed`), ms.
    pub access_token_command_retry_ms: u64,
    /// Re-run the command this often even when all is well, ms (0 = never).
    pub access_token_command_refresh_ms: u64,
    /// Kite's REST API root (`auth login`'s session exchange).
    pub api_root: String,
    /// Deadline of one REST call (connect, TLS, request, response), ms.
    pub api_timeout_ms: u64,
    /// Instruments CSV.
    pub instruments: Option<PathBuf>,
    /// Mode of instruments whose CSV row has none.
    pub default_mode: Mode,
    /// Most instruments per connection.
    pub max_per_connection: usize,
    /// Most connections.
    pub max_connections: usize,
    /// No frame for this long (heartbeats count) closes and reconnects, ms.
    pub liveness_ms: u64,
    /// Send a WebSocket ping this often, ms (0 = never; Kite heartbeats).
    pub ping_interval_ms: u64,
    /// First reconnect delay, ms; doubles per consecutive failure, jittered.
    pub backoff_base_ms: u64,
    /// Longest reconnect delay, ms.
    pub backoff_cap_ms: u64,
    /// Shortest delay after HTTP 429, ms.
    pub backoff_429_ms: u64,
    /// Open this long before the backoff resets, ms.
    pub healthy_after_ms: u64,
    /// Connect plus handshake deadline, ms.
    pub connect_timeout_ms: u64,
    /// Largest server text frame parsed, bytes; larger ones are counted
    /// (`oversized_text_frames`) and dropped.
    pub max_text_frame_bytes: usize,
}

impl ZerodhaConfig {
    /// The supervision settings, or every problem with them.
    ///
    /// # Errors
    /// One message per bad value, naming the key.
    pub fn supervision(&self) -> Result<Supervision, Vec<String>> {
        let p = self.problems();
        if !p.is_empty() {
            return Err(p);
        }
        let ms = Duration::from_millis;
        Ok(Supervision {
            liveness: ms(self.liveness_ms),
            ping_interval: (self.ping_interval_ms > 0).then(|| ms(self.ping_interval_ms)),
            backoff_base: ms(self.backoff_base_ms),
            backoff_cap: ms(self.backoff_cap_ms),
            backoff_429: ms(self.backoff_429_ms),
            healthy_after: ms(self.healthy_after_ms),
            connect_timeout: ms(self.connect_timeout_ms),
        })
    }
}

impl ZerodhaConfig {
    /// Every problem with the `[zerodha]` numbers (README "Ranges").
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (k, v) in [
            ("zerodha.max_per_connection", self.max_per_connection as u64),
            ("zerodha.max_connections", self.max_connections as u64),
            ("zerodha.liveness_ms", self.liveness_ms),
            ("zerodha.ping_interval_ms", self.ping_interval_ms),
            ("zerodha.backoff_base_ms", self.backoff_base_ms),
            ("zerodha.backoff_cap_ms", self.backoff_cap_ms),
            ("zerodha.backoff_429_ms", self.backoff_429_ms),
            ("zerodha.healthy_after_ms", self.healthy_after_ms),
            ("zerodha.connect_timeout_ms", self.connect_timeout_ms),
            (
                "zerodha.access_token_command_timeout_ms",
                self.access_token_command_timeout_ms,
            ),
            (
                "zerodha.access_token_command_retry_ms",
                self.access_token_command_retry_ms,
            ),
            (
                "zerodha.access_token_command_refresh_ms",
                self.access_token_command_refresh_ms,
            ),
            ("zerodha.api_timeout_ms", self.api_timeout_ms),
        ] {
            check(&mut p, k, v);
        }
        if self.backoff_cap_ms < self.backoff_base_ms {
            p.push(format!(
                "zerodha.backoff_cap_ms = {} is below backoff_base_ms = {}",
                self.backoff_cap_ms, self.backoff_base_ms
            ));
        }
        p
    }
}

impl std::fmt::Debug for ZerodhaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZerodhaConfig")
            .field("ws_url", &self.ws_url)
            .field("api_key", &crate::secret::Secret::new(self.api_key.clone()))
            .field("api_key_file", &self.api_key_file)
            .field(
                "api_secret",
                &crate::secret::Secret::new(self.api_secret.clone()),
            )
            .field(
                "access_token",
                &crate::secret::Secret::new(self.access_token.clone()),
            )
            .field("api_secret_file", &self.api_secret_file)
            .field("access_token_file", &self.access_token_file)
            .field("access_token_command", &self.access_token_command)
            .field("api_root", &self.api_root)
            .field("instruments", &self.instruments)
            .field("default_mode", &self.default_mode)
            .finish_non_exhaustive()
    }
}

impl Default for ZerodhaConfig {
    fn default() -> Self {
        Self {
            ws_url: defaults::WS_URL.into(),
            api_key: String::new(),
            api_key_file: None,
            api_secret: String::new(),
            api_secret_file: None,
            access_token: String::new(),
            access_token_file: None,
            access_token_command: Vec::new(),
            access_token_command_timeout_ms: defaults::ACCESS_TOKEN_COMMAND_TIMEOUT_MS,
            access_token_command_retry_ms: defaults::ACCESS_TOKEN_COMMAND_RETRY_MS,
            access_token_command_refresh_ms: 0,
            api_root: defaults::API_ROOT.into(),
            api_timeout_ms: defaults::API_TIMEOUT_MS,
            instruments: None,
            default_mode: Mode::Full,
            max_per_connection: defaults::MAX_PER_CONNECTION,
            max_connections: defaults::MAX_CONNECTIONS,
            liveness_ms: defaults::LIVENESS_MS,
            ping_interval_ms: 0,
            backoff_base_ms: defaults::BACKOFF_BASE_MS,
            backoff_cap_ms: defaults::BACKOFF_CAP_MS,
            backoff_429_ms: defaults::BACKOFF_429_MS,
            healthy_after_ms: defaults::HEALTHY_AFTER_MS,
            connect_timeout_ms: defaults::CONNECT_TIMEOUT_MS,
            max_text_frame_bytes: defaults::MAX_TEXT_FRAME_BYTES,
        }
    }
}

/// How idle threads wait for work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdlePolicy {
    /// Busy-poll: lowest latency, one full core per thread. Needs dedicated,
    /// isolated cores.
    Spin,
    /// Park (the network thread in `epoll_wait`, publishers until woken by
    /// the network thread): no CPU when idle, a few µs of wake-up latency.
    #[default]
    Park,
}

/// Connection supervision settings (`[zerodha]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supervision {
    /// No frame for this long (heartbeats count) closes and reconnects.
    pub liveness: Duration,
    /// Send a WebSocket ping this often (none by default; Kite heartbeats).
    pub ping_interval: Option<Duration>,
    /// First reconnect delay; doubles per consecutive failure, with jitter.
    pub backoff_base: Duration,
    /// Longest reconnect delay.
    pub backoff_cap: Duration,
    /// Shortest delay after HTTP 429.
    pub backoff_429: Duration,
    /// Open this long before the backoff resets.
    pub healthy_after: Duration,
    /// A connect plus handshake taking longer than this fails.
    pub connect_timeout: Duration,
}

impl Default for Supervision {
    fn default() -> Self {
        Self {
            liveness: Duration::from_millis(defaults::LIVENESS_MS),
            ping_interval: None,
            backoff_base: Duration::from_millis(defaults::BACKOFF_BASE_MS),
            backoff_cap: Duration::from_millis(defaults::BACKOFF_CAP_MS),
            backoff_429: Duration::from_millis(defaults::BACKOFF_429_MS),
            healthy_after: Duration::from_millis(defaults::HEALTHY_AFTER_MS),
            connect_timeout: Duration::from_millis(defaults::CONNECT_TIMEOUT_MS),
        }
    }
}

/// `[engine]`: threads, rings and pinning.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Publisher threads.
    pub publishers: usize,
    /// Slots per publisher ring (a slot is 216 bytes).
    pub ring_capacity: usize,
    /// Most ticks a publisher takes per turn.
    pub publish_chunk: usize,
    /// `park` (default) or `spin`.
    pub idle: IdlePolicy,
    /// Core of the network thread.
    pub network_core: Option<usize>,
    /// Cores of the publishers, one each.
    pub publisher_cores: Vec<usize>,
    /// WebSocket read buffer, bytes.
    pub read_buffer_size: usize,
    /// Ring memory per publisher, bytes; when set it wins over
    /// `ring_capacity` (slots = bytes / 216).
    pub ring_bytes: Option<u64>,
    /// What a full ring does: `block` (default) or `drop_newest`.
    pub overflow: Overflow,
    /// With `block`: longest wait for ring room per message, ms; then drop
    /// and count.
    pub block_max_ms: u64,
    /// Lock the process's memory (`mlockall`) at start; a failure is a
    /// warning.
    pub mlockall: bool,
    /// `false` (default): transparent huge pages off for this process
    /// (`prctl(PR_SET_THP_DISABLE)` at start); `true`: the system's setting.
    pub transparent_huge_pages: bool,
}

impl EngineSection {
    /// Slots per publisher ring: from `ring_bytes` when set, else
    /// `ring_capacity`.
    #[must_use]
    pub fn ring_slots(&self) -> usize {
        ring_slots(self.ring_capacity, self.ring_bytes)
    }

    /// Every problem with the `[engine]` numbers, including the memory of
    /// all rings together (README "Ranges").
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (k, v) in [
            ("engine.publishers", self.publishers),
            ("engine.ring_capacity", self.ring_capacity),
            ("engine.publish_chunk", self.publish_chunk),
            ("engine.read_buffer_size", self.read_buffer_size),
        ] {
            check(&mut p, k, v as u64);
        }
        if let Some(b) = self.ring_bytes {
            check(&mut p, "engine.ring_bytes", b);
        }
        check(&mut p, "engine.block_max_ms", self.block_max_ms);
        let slot = std::mem::size_of::<crate::tick::Tick>() as u128;
        let bytes = self.ring_slots() as u128 * self.publishers as u128 * slot;
        if p.is_empty() && bytes > u128::from(ranges::MAX_RING_BYTES) {
            let key = if self.ring_bytes.is_some() {
                "engine.ring_bytes"
            } else {
                "engine.ring_capacity"
            };
            p.push(format!(
                "{key} ({} slots) × engine.publishers = {} × {slot}-byte slots = {bytes} \
                 bytes of rings: at most {} (8 GiB); lower {key}",
                self.ring_slots(),
                self.publishers,
                ranges::MAX_RING_BYTES
            ));
        }
        p
    }
}

impl Default for EngineSection {
    fn default() -> Self {
        Self {
            publishers: defaults::PUBLISHERS,
            ring_capacity: defaults::RING_CAPACITY,
            publish_chunk: defaults::PUBLISH_CHUNK,
            idle: IdlePolicy::default(),
            network_core: None,
            publisher_cores: Vec::new(),
            read_buffer_size: defaults::READ_BUFFER_SIZE,
            ring_bytes: None,
            overflow: Overflow::default(),
            block_max_ms: defaults::BLOCK_MAX_MS,
            mlockall: false,
            transparent_huge_pages: false,
        }
    }
}

/// `[mock]`: the in-process mock exchange (`run --mock`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockSection {
    /// Ticks per second over all instruments.
    pub rate: u64,
    /// Market seed.
    pub seed: u64,
    /// Stop generating after this many ticks.
    pub max_ticks: Option<u64>,
    /// Partitions of the topic on the embedded broker.
    pub partitions: i32,
}

impl Default for MockSection {
    fn default() -> Self {
        Self {
            rate: defaults::MOCK_RATE_PER_S,
            seed: defaults::MOCK_SEED,
            max_ticks: None,
            partitions: defaults::MOCK_PARTITIONS,
        }
    }
}

/// `[run]`: reporting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Status line period, ms (0 = no status line).
    pub status_interval_ms: u64,
    /// Log filter (`info`, `debug`, `panda_feed=debug`, ...); `--log-level`
    /// and `RUST_LOG` override it.
    pub log_level: String,
}

impl Config {
    /// Every problem with every section, collected at once: each names the
    /// key, the value and the range or the fix (README "Ranges").
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = self.zerodha.problems();
        p.extend(self.engine.problems());
        p.extend(self.kafka.problems());
        p.extend(self.spool.problems());
        check(&mut p, "mock.rate", self.mock.rate);
        check(&mut p, "mock.partitions", self.mock.partitions);
        check(
            &mut p,
            "run.status_interval_ms",
            self.run.status_interval_ms,
        );
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.run.log_level) {
            p.push(format!(
                "run.log_level = {:?} is not a log filter (e.g. info, debug, \
                 panda_feed=debug): {e}",
                self.run.log_level
            ));
        }
        p.extend(self.subscriptions.problems());
        p.extend(self.calendar.problems());
        p.extend(self.tiers.problems());
        p.extend(self.bars.problems());
        p.extend(self.slo.problems());
        p.extend(self.ops.problems());
        p.extend(self.redis.problems());
        p
    }
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            status_interval_ms: 1000,
            log_level: defaults::LOG_LEVEL.into(),
        }
    }
}

/// A config that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read config {path}: {err}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        err: std::io::Error,
    },
    /// Not valid TOML, or a bad key or value.
    #[error("config {path}: {msg}")]
    Parse {
        /// Path.
        path: String,
        /// toml's message, with line and column.
        msg: String,
    },
}

impl Config {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, and for bad content the line, column
    /// and key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Io {
            path: path.display().to_string(),
            err,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses TOML text; `source` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError::Parse`].
    pub fn parse(text: &str, source: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: source.to_owned(),
            msg: e.to_string().trim_end().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_exactly_the_defaults() {
        // The example documents every key with its default value: if a
        // default changes, this fails until the example says so too.
        let text = include_str!("../../config/example.toml");
        let c = Config::parse(text, "example.toml").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.zerodha.supervision().unwrap(), Supervision::default());
        assert_eq!(c.kafka.topic, defaults::TOPIC);
        // And every key of every section is written out in it.
        for section in [
            "zerodha", "engine", "kafka", "spool", "mock", "run", "ops", "redis", "fields",
            "calendar", "tiers", "bars", "slo",
        ] {
            assert!(
                text.contains(&format!("[{section}]")),
                "[{section}] missing"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::parse("[kafka]\ntopik = \"x\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml") && e.contains("topik"), "{e}");
        let e = Config::parse("[engine]\nidle = \"nap\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nap") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn debug_hides_the_api_key() {
        let c = Config::parse("[zerodha]\napi_key = \"k3y_s3cr3t\"\n", "c").unwrap();
        assert!(!format!("{c:?}").contains("k3y_s3cr3t"));
    }
}

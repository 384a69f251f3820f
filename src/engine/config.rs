//! The engine's settings as the engine consumes them, their cross-field
//! validation, and the error of a start that failed. Built on the main thread
//! from the `run` configuration (`crate::config`) and flags; read-only once
//! the engine runs.

#[cfg(feature = "test-hooks")]
use std::time::Duration;

use super::kafka::KafkaConfig;
use super::route::MAX_RINGS;
use crate::config::{IdlePolicy, Supervision, TiersConfig, defaults};
use crate::fields::FieldSelection;
use crate::run_id::RunId;
use crate::secret::Secret;
use crate::spool::SpoolConfig;
use crate::tick::Mode;
use crate::tier::{TIERS, Tier, TierMap, split_capacity};

/// Everything the engine needs; built from the config file and flags.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Kite WebSocket URL without query (`wss://ws.kite.trade/`).
    pub ws_url: String,
    /// API key.
    pub api_key: Secret,
    /// Access token.
    pub access_token: Secret,
    /// Instruments and their modes.
    pub instruments: Vec<(u32, Mode)>,
    /// Tiers from the instruments CSV's `tier` column; they win over the
    /// `tiers` rules.
    pub instrument_tiers: Vec<(u32, Tier)>,
    /// The `[tiers]` rules and ring shares.
    pub tiers: TiersConfig,
    /// Most instruments per connection (Kite: 3000).
    pub max_per_connection: usize,
    /// Most connections (Kite: 3 per api_key).
    pub max_connections: usize,
    /// Tokens per subscribe/mode request.
    pub subscribe_chunk: usize,
    /// Slots per publisher ring (`engine.ring_bytes` / 216 when that is
    /// set, else `engine.ring_capacity`).
    pub ring_capacity: usize,
    /// What a full ring does (`engine.overflow`).
    pub overflow: crate::config::Overflow,
    /// With `block`: the longest a message waits for ring room
    /// (`engine.block_max_ms`).
    pub block_max: std::time::Duration,
    /// `mlockall` at start (`engine.mlockall`); a failure is a warning.
    pub mlockall: bool,
    /// Publisher threads (and rings).
    pub publishers: usize,
    /// Most ticks a publisher takes off its ring at once.
    pub publish_chunk: usize,
    /// Spin or park when idle.
    pub idle: IdlePolicy,
    /// Core to pin the network thread to.
    pub network_core: Option<usize>,
    /// Cores to pin publishers to (empty: not pinned; else one per publisher).
    pub publisher_cores: Vec<usize>,
    /// WebSocket read buffer in bytes.
    pub read_buffer_size: usize,
    /// Largest WebSocket message accepted, in bytes.
    pub max_message_size: usize,
    /// Largest server text frame parsed, bytes; larger ones are counted and
    /// dropped.
    pub max_text_frame_bytes: usize,
    /// The run's id, carried in every envelope; [`RunId::default`] (0)
    /// makes [`Engine::start`](super::Engine::start) choose a fresh one.
    pub run_id: RunId,
    /// Kafka producer settings.
    pub kafka: KafkaConfig,
    /// Connection supervision: liveness, backoff.
    pub supervision: Supervision,
    /// The dead-letter spool.
    pub spool: SpoolConfig,
    /// The optional tick parts published at start
    /// ([`Engine::set_fields`](super::Engine::set_fields) changes them live).
    pub fields: FieldSelection,
    /// One-minute bars (README, "Bars"): off unless `enabled`.
    pub bars: crate::bars::BarSettings,
    /// Test hook (feature `test-hooks`): publisher `.0` sleeps `.1` after
    /// every chunk.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub test_slow_publisher: Option<(usize, Duration)>,
    /// Test hook (feature `test-hooks`): publisher `.0` panics after popping
    /// `.1` ticks.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub test_panic_publisher: Option<(usize, u64)>,
    /// Test hook (feature `test-hooks`): publisher `.0`'s producer gets a
    /// fatal error after `.1` ticks.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub test_fatal_publisher: Option<(usize, u64)>,
    /// Test hook (feature `test-hooks`): resolving connection `.0`'s host
    /// takes `.1` and then fails.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub test_slow_resolver: Option<(usize, Duration)>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ws_url: defaults::WS_URL.into(),
            api_key: Secret::default(),
            access_token: Secret::default(),
            instruments: Vec::new(),
            instrument_tiers: Vec::new(),
            tiers: TiersConfig::default(),
            max_per_connection: defaults::MAX_PER_CONNECTION,
            max_connections: defaults::MAX_CONNECTIONS,
            subscribe_chunk: defaults::SUBSCRIBE_CHUNK,
            ring_capacity: defaults::RING_CAPACITY,
            overflow: crate::config::Overflow::default(),
            block_max: std::time::Duration::from_millis(defaults::BLOCK_MAX_MS),
            mlockall: false,
            publishers: defaults::PUBLISHERS,
            publish_chunk: defaults::PUBLISH_CHUNK,
            idle: IdlePolicy::Park,
            network_core: None,
            publisher_cores: Vec::new(),
            read_buffer_size: defaults::READ_BUFFER_SIZE,
            max_message_size: defaults::MAX_MESSAGE_BYTES,
            max_text_frame_bytes: defaults::MAX_TEXT_FRAME_BYTES,
            run_id: RunId::default(),
            kafka: KafkaConfig::default(),
            supervision: Supervision::default(),
            spool: SpoolConfig::default(),
            fields: FieldSelection::ALL,
            bars: crate::bars::BarSettings::default(),
            #[cfg(feature = "test-hooks")]
            test_slow_publisher: None,
            #[cfg(feature = "test-hooks")]
            test_panic_publisher: None,
            #[cfg(feature = "test-hooks")]
            test_fatal_publisher: None,
            #[cfg(feature = "test-hooks")]
            test_slow_resolver: None,
        }
    }
}

impl EngineConfig {
    /// The engine settings the `run` configuration holds, in one place
    /// (`run`, `check-config` and the config fuzz target all start here).
    /// Credentials, instruments and supervision are the caller's: they come
    /// from files, flags and validation that this does not repeat.
    #[must_use]
    pub fn from_sections(cfg: &crate::config::Config) -> Self {
        let e = &cfg.engine;
        Self {
            ws_url: cfg.zerodha.ws_url.clone(),
            max_per_connection: cfg.zerodha.max_per_connection,
            max_connections: cfg.zerodha.max_connections,
            ring_capacity: e.ring_slots(),
            overflow: e.overflow,
            block_max: std::time::Duration::from_millis(e.block_max_ms),
            mlockall: e.mlockall,
            publishers: e.publishers,
            publish_chunk: e.publish_chunk,
            idle: e.idle,
            network_core: e.network_core,
            publisher_cores: e.publisher_cores.clone(),
            read_buffer_size: e.read_buffer_size,
            max_text_frame_bytes: cfg.zerodha.max_text_frame_bytes,
            kafka: cfg.kafka.clone(),
            spool: cfg.spool.clone(),
            fields: FieldSelection::from_config(&cfg.fields),
            tiers: cfg.tiers.clone(),
            bars: crate::bars::BarSettings::from_config(&cfg.bars),
            ..Self::default()
        }
    }

    /// Every problem with the settings, each naming the value and the fix.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = self.kafka.problems();
        p.extend(self.tiers.problems());
        if !(self.ws_url.starts_with("ws://") || self.ws_url.starts_with("wss://")) {
            p.push(format!(
                "ws_url {:?} must start with ws:// or wss:// (e.g. wss://ws.kite.trade/)",
                self.ws_url.split('?').next().unwrap_or_default()
            ));
        }
        if let Some((base, _)) = self.ws_url.split_once('?') {
            // The query may hold credentials: never echo it.
            p.push(format!(
                "ws_url \"{base}?…\" must not carry a query: panda-feed adds api_key and access_token itself"
            ));
        }
        if self.api_key.is_empty() {
            p.push(
                "no api_key: set --api-key-file, zerodha.api_key_file or ZERODHA__API_KEY".into(),
            );
        }
        if self.access_token.is_empty() {
            p.push(
                "no access token: set --access-token-file, kite.access_token_file or ZERODHA__ACCESS_TOKEN"
                    .into(),
            );
        }
        if self.publishers == 0 || self.publishers > MAX_RINGS {
            p.push(format!(
                "engine.publishers = {} must be between 1 and {MAX_RINGS}",
                self.publishers
            ));
        }
        if self.max_text_frame_bytes == 0 || self.max_text_frame_bytes > self.max_message_size {
            p.push(format!(
                "zerodha.max_text_frame_bytes = {} must be between 1 and the largest WebSocket \
                 message, {} bytes (default {})",
                self.max_text_frame_bytes,
                self.max_message_size,
                defaults::MAX_TEXT_FRAME_BYTES
            ));
        }
        if self.ring_capacity == 0 {
            p.push("engine.ring_capacity = 0: must be at least 1 (e.g. 65536)".into());
        }
        if !self.publisher_cores.is_empty() && self.publisher_cores.len() != self.publishers {
            p.push(format!(
                "engine.publisher_cores has {} entries but engine.publishers = {}: give one core per publisher or none",
                self.publisher_cores.len(),
                self.publishers
            ));
        }
        let cores: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .iter()
            .map(|c| c.id)
            .collect();
        for c in self.network_core.iter().chain(&self.publisher_cores) {
            if !cores.contains(c) {
                p.push(format!(
                    "core {c} is not available to this process (cores: {cores:?}); fix engine.network_core / engine.publisher_cores"
                ));
            }
        }
        p
    }
}

impl EngineConfig {
    /// Takes the tiers of the instruments CSV's `tier` column.
    #[must_use]
    pub fn with_tiers_of(mut self, list: &[crate::instruments::Instrument]) -> Self {
        self.instrument_tiers = list
            .iter()
            .filter_map(|i| Some((i.token, i.tier?)))
            .collect();
        self
    }

    /// The token → tier map: the CSV's tiers over the `[tiers]` rules.
    #[must_use]
    pub fn tier_map(&self) -> TierMap {
        self.tiers.map(&self.instrument_tiers)
    }

    /// Slots of each tier's ring of one publisher: `ring_capacity` split by
    /// the `[tiers]` shares among the tiers some instrument can have.
    #[must_use]
    pub fn tier_capacities(&self, map: &TierMap) -> [usize; TIERS] {
        split_capacity(self.ring_capacity, self.tiers.ring_pct(), map.reachable())
    }
}

/// An engine that could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Bad settings: every problem, one per line.
    #[error("invalid settings:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    /// The Kafka producer could not be created.
    #[error("cannot create the Kafka producer: {0}")]
    Kafka(String),
    /// An OS resource (poll, thread) could not be set up.
    #[error("cannot start the engine: {0}")]
    Io(String),
}

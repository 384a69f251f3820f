//! Every default, written once. The TOML sections' `Default`, the clap
//! flags' `default_value`s and the runtime types' `Default` all read from
//! here; `config/example.toml` is checked against them by a test.

/// `kafka.topic`: the tick topic.
pub const TOPIC: &str = "market.ticks";
/// `kafka.orders_topic`: order postbacks.
pub const ORDERS_TOPIC: &str = "orders.updates";
/// `bars.topic`: where one-minute bars go.
pub const BARS_TOPIC: &str = "market.bars.1m";
/// `spool.dir`, and the `dlq --dir` default.
pub const SPOOL_DIR: &str = "panda-feed-spool";
/// `zerodha.ws_url`: Kite's streaming endpoint (the path must be `/`).
pub const WS_URL: &str = "wss://ws.kite.trade/";
/// `zerodha.api_root`: Kite's REST API (`auth login`).
pub const API_ROOT: &str = "https://api.kite.trade";
/// `zerodha.api_timeout_ms`: one REST call, ms.
pub const API_TIMEOUT_MS: u64 = 10_000;
/// `zerodha.access_token_command_timeout_ms`.
pub const ACCESS_TOKEN_COMMAND_TIMEOUT_MS: u64 = 10_000;
/// `zerodha.access_token_command_retry_ms`.
pub const ACCESS_TOKEN_COMMAND_RETRY_MS: u64 = 30_000;
/// Largest WebSocket message the feed accepts, and `decode`'s input cap, bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// `zerodha.max_text_frame_bytes`: larger server text frames are counted
/// (`oversized_text_frames`) and not parsed.
pub const MAX_TEXT_FRAME_BYTES: usize = 64 * 1024;
/// `zerodha.max_per_connection`: Kite's limit of instruments per socket.
pub const MAX_PER_CONNECTION: usize = 3000;
/// `zerodha.max_connections`: Kite's limit of sockets per api_key.
pub const MAX_CONNECTIONS: usize = 3;
/// Tokens per subscribe/mode request.
pub const SUBSCRIBE_CHUNK: usize = 500;

/// `zerodha.liveness_ms`.
pub const LIVENESS_MS: u64 = 5000;
/// `zerodha.backoff_base_ms`.
pub const BACKOFF_BASE_MS: u64 = 500;
/// `zerodha.backoff_cap_ms`.
pub const BACKOFF_CAP_MS: u64 = 60_000;
/// `zerodha.backoff_429_ms`.
pub const BACKOFF_429_MS: u64 = 60_000;
/// `zerodha.healthy_after_ms`.
pub const HEALTHY_AFTER_MS: u64 = 30_000;
/// `zerodha.connect_timeout_ms`.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// `engine.publishers`.
pub const PUBLISHERS: usize = 1;
/// `engine.ring_capacity`, slots.
pub const RING_CAPACITY: usize = 65_536;
/// `engine.block_max_ms`: the longest a message waits for ring room under
/// `engine.overflow = "block"` before its ticks are dropped and counted.
pub const BLOCK_MAX_MS: u64 = 1000;
/// `engine.publish_chunk`.
pub const PUBLISH_CHUNK: usize = 256;
/// `engine.read_buffer_size`, bytes.
pub const READ_BUFFER_SIZE: usize = 256 * 1024;

/// The mock exchange's `api_key` (`run --mock`, `mock-exchange`).
pub const MOCK_API_KEY: &str = "mock_api_key";
/// The mock exchange's access token.
pub const MOCK_ACCESS_TOKEN: &str = "mock_access_token";
/// `mock.rate` and `mock-exchange --rate`: ticks per second over all instruments.
pub const MOCK_RATE_PER_S: u64 = 20_000;
/// `mock.seed` and `mock-exchange --seed`.
pub const MOCK_SEED: u64 = 1;
/// Most instruments the mock market keeps.
pub const MOCK_MAX_INSTRUMENTS: usize = 20_000;
/// `mock.partitions` and `mock-kafka --partitions`.
pub const MOCK_PARTITIONS: i32 = 8;
/// The mock exchange's heartbeat period when idle, ms.
pub const MOCK_HEARTBEAT_MS: u64 = 1000;
/// `subscriptions.debounce_ms`.
pub const SUBS_DEBOUNCE_MS: u64 = 1000;
/// `subscriptions.min_interval_ms`.
pub const SUBS_MIN_INTERVAL_MS: u64 = 5000;
/// `subscriptions.queue`.
pub const SUBS_QUEUE: u64 = 10;
/// `subscriptions.watch_ms`.
pub const SUBS_WATCH_MS: u64 = 1000;
/// `subscriptions.universe_history`.
pub const UNIVERSE_HISTORY: u64 = 20;
/// `calendar.days_back`: days before today the calendar preloads.
pub const CALENDAR_DAYS_BACK: u64 = 14;
/// `calendar.days_forward`: days after today the calendar preloads.
pub const CALENDAR_DAYS_FORWARD: u64 = 7;
/// `run.log_level` (`--log-level`).
pub const LOG_LEVEL: &str = "info";

/// `fields.depth`, `fields.oi`, `fields.ohlc`, `fields.timestamps`: every
/// optional part of the published tick is sent (the full contract).
pub const FIELDS_SENT: bool = true;

/// `tiers.t0_ring_pct`, `t1_ring_pct`, `t2_ring_pct`: each tier's share of
/// a publisher's ring slots, percent (renormalized over the tiers some
/// instrument can have).
pub const TIER_RING_PCT: [u64; 3] = [50, 30, 20];

/// `slo.interval_s`: a sampling round of the SLO gap monitor every 30 s.
pub const SLO_INTERVAL_S: u64 = 30;
/// `slo.t0_expected_ms`, `t1_expected_ms`, `t2_expected_ms`: the expected
/// interval between two ticks of one instrument per tier, ms (a gap above
/// twice this, in session, is a violation).
pub const SLO_EXPECTED_MS: [u64; 3] = [1000, 5000, 30_000];
/// `slo.t0_sample`, `t1_sample`, `t2_sample`: instruments sampled per round.
pub const SLO_SAMPLE: [u64; 3] = [200, 200, 100];
/// `slo.violation_threshold`: a tier above 1% violations is a `/health` note.
pub const SLO_VIOLATION_THRESHOLD: f64 = 0.01;

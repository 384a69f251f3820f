//! The documented range of every numeric setting and flag, in one table
//! (README "Ranges"). Read on the main thread at start-up: the config's
//! `problems()` checks every key against [`RANGES`], and the clap value
//! parsers of the flags use the same bounds, so an extreme value is an error
//! naming the key or flag, the value and the range, never a panic or an
//! allocation abort.

/// Longest duration any setting or flag accepts: 10 years, in seconds. Far
/// inside what `Duration` and `Instant` arithmetic can hold.
pub const MAX_SECS: u64 = 10 * 365 * 86_400;
/// [`MAX_SECS`] in milliseconds, for the `*_ms` keys.
pub const MAX_MS: u64 = MAX_SECS * 1000;
/// Ticks per second of the mock exchange (`mock.rate`, `--mock-rate`, `--rate`).
pub const RATE: (u64, u64) = (1, 10_000_000);
/// Publisher threads (`engine.publishers`, `--publishers`); the engine's
/// ring limit.
pub const PUBLISHERS: (u64, u64) = (1, 64);
/// Partitions of the embedded broker's topic (`mock.partitions`, `mock-kafka --partitions`).
pub const PARTITIONS: (u64, u64) = (1, 1000);
/// Slots per ring (`engine.ring_capacity`): 2^24.
pub const RING_CAPACITY: (u64, u64) = (1, 1 << 24);
/// Bytes of all rings together (`ring_capacity` × `publishers` × slot size).
pub const MAX_RING_BYTES: u64 = 8 << 30;
/// Samples `ops.window_s` / `ops.sample_ms` may keep.
pub const MAX_WINDOW_SAMPLES: u64 = 100_000;
/// Instruments the mock market keeps (`mock-exchange --max-instruments`).
pub const MOCK_INSTRUMENTS: (u64, u64) = (1, 10_000_000);
/// `mock-exchange --heartbeat-ms`.
pub const HEARTBEAT_MS: (u64, u64) = (1, 3_600_000);
/// `mock-exchange --slow-turn-ms`.
pub const SLOW_TURN_MS: (u64, u64) = (0, 60_000);
/// `decode --max-message-bytes` (a framed record's length is a u32).
pub const MESSAGE_BYTES: (u64, u64) = (1, u32::MAX as u64);
/// `dlq requeue --checkpoint-records`.
pub const CHECKPOINT_RECORDS: (u64, u64) = (1, 10_000_000);

/// One numeric config key and its inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// `section.key`.
    pub key: &'static str,
    /// Smallest value.
    pub min: u64,
    /// Largest value.
    pub max: u64,
    /// What the value counts (for messages and the README).
    pub unit: &'static str,
}

const fn r(key: &'static str, min: u64, max: u64, unit: &'static str) -> Range {
    Range {
        key,
        min,
        max,
        unit,
    }
}

/// Every bounded numeric key of the config file. Percentages (`ops.*_pct`,
/// 0..=100) are floats and checked in `[ops]`; `mock.seed` and
/// `mock.max_ticks` take any `u64`.
pub const RANGES: &[Range] = &[
    r(
        "zerodha.max_per_connection",
        1,
        3000,
        "instruments (Kite's limit)",
    ),
    r("zerodha.max_connections", 1, 64, "connections"),
    r("zerodha.liveness_ms", 1, MAX_MS, "ms"),
    r("zerodha.ping_interval_ms", 0, MAX_MS, "ms"),
    r("zerodha.backoff_base_ms", 1, MAX_MS, "ms"),
    r("zerodha.backoff_cap_ms", 1, MAX_MS, "ms"),
    r("zerodha.backoff_429_ms", 0, MAX_MS, "ms"),
    r("zerodha.healthy_after_ms", 0, MAX_MS, "ms"),
    r("zerodha.connect_timeout_ms", 1, MAX_MS, "ms"),
    r(
        "zerodha.access_token_command_timeout_ms",
        1,
        3_600_000,
        "ms",
    ),
    r("zerodha.access_token_command_retry_ms", 1, MAX_MS, "ms"),
    r("zerodha.access_token_command_refresh_ms", 0, MAX_MS, "ms"),
    r("zerodha.api_timeout_ms", 1, 3_600_000, "ms"),
    r("engine.publishers", PUBLISHERS.0, PUBLISHERS.1, "threads"),
    r(
        "engine.ring_capacity",
        RING_CAPACITY.0,
        RING_CAPACITY.1,
        "slots",
    ),
    r(
        "engine.ring_bytes",
        crate::ring::SLOT_BYTES,
        RING_CAPACITY.1 * crate::ring::SLOT_BYTES,
        "bytes (216 per slot)",
    ),
    r("engine.block_max_ms", 1, 60_000, "ms"),
    r("engine.publish_chunk", 1, 65_536, "ticks"),
    r("engine.read_buffer_size", 4096, 64 << 20, "bytes"),
    r("kafka.linger_ms", 0, 900_000, "ms (librdkafka linger.ms)"),
    r(
        "kafka.batch_size",
        1,
        2_147_483_647,
        "bytes (librdkafka batch.size)",
    ),
    r(
        "kafka.message_timeout_ms",
        0,
        2_147_483_647,
        "ms (librdkafka message.timeout.ms)",
    ),
    r(
        "kafka.queue_max_messages",
        1,
        2_147_483_647,
        "records (librdkafka queue.buffering.max.messages)",
    ),
    r("kafka.queue_full_wait_ms", 0, 86_400_000, "ms"),
    r("kafka.flush_timeout_ms", 0, 86_400_000, "ms"),
    r("spool.max_bytes", 4096, 1 << 50, "bytes"),
    r("spool.segment_bytes", 4096, 1 << 30, "bytes"),
    r("spool.fsync_interval_ms", 0, 3_600_000, "ms"),
    r("mock.rate", RATE.0, RATE.1, "ticks/s"),
    r("mock.partitions", PARTITIONS.0, PARTITIONS.1, "partitions"),
    r("run.status_interval_ms", 0, MAX_MS, "ms"),
    r("subscriptions.debounce_ms", 0, 3_600_000, "ms"),
    r("subscriptions.min_interval_ms", 0, 3_600_000, "ms"),
    r("subscriptions.max_in_flight", 1, 16, "applications"),
    r("subscriptions.queue", 1, 10_000, "requests"),
    r("subscriptions.watch_ms", 0, 3_600_000, "ms"),
    r("subscriptions.universe_history", 1, 1000, "versions"),
    r("calendar.days_back", 0, 366, "days"),
    r("calendar.days_forward", 0, 366, "days"),
    r("bars.grace_ms", 0, 30_000, "ms"),
    r("bars.handoff", 1, 1 << 20, "bars"),
    r("tiers.t0_ring_pct", 1, 100, "%"),
    r("tiers.t1_ring_pct", 1, 100, "%"),
    r("tiers.t2_ring_pct", 1, 100, "%"),
    r("slo.interval_s", 1, 86_400, "s"),
    r("slo.t0_expected_ms", 1, 86_400_000, "ms"),
    r("slo.t1_expected_ms", 1, 86_400_000, "ms"),
    r("slo.t2_expected_ms", 1, 86_400_000, "ms"),
    r("slo.t0_sample", 0, 192_000, "instruments"),
    r("slo.t1_sample", 0, 192_000, "instruments"),
    r("slo.t2_sample", 0, 192_000, "instruments"),
    r("ops.sample_ms", 1, 3_600_000, "ms"),
    r("ops.window_s", 1, 86_400, "s"),
    r("ops.history", 1, 100_000, "samples"),
    r("ops.stale_after_ms", 1, MAX_MS, "ms"),
    r("ops.slow_n", 1, 10_000, "entries"),
    r("ops.expected_tick_interval_ms", 1, MAX_MS, "ms"),
    r("ops.stream_replay_bars", 1, 10_000, "bars"),
    r("ops.stream_max_clients", 1, 10_000, "clients"),
    r("ops.stream_client_buffer_bytes", 4096, 1 << 30, "bytes"),
    r("ops.stream_max_instruments", 1, 1_000_000, "instruments"),
    r("ops.stream_redis_ttl_s", 1, MAX_SECS, "s"),
    r("redis.ttl_s", 1, MAX_SECS, "s"),
    r("redis.interval_ms", 1, MAX_MS, "ms"),
    r("redis.timeout_ms", 1, 3_600_000, "ms"),
    r("redis.breaker_failures", 1, 1_000_000, "failures"),
    r("redis.breaker_cooldown_ms", 0, MAX_MS, "ms"),
    r("redis.half_open_probes", 1, 1000, "writes"),
];

/// The range of `key`.
///
/// # Panics
/// When `key` is not in [`RANGES`] (a programming error, caught by the
/// tests that set every key).
#[must_use]
pub fn range(key: &str) -> Range {
    RANGES
        .iter()
        .copied()
        .find(|r| r.key == key)
        .unwrap_or_else(|| panic!("{key} has no range in config::ranges::RANGES"))
}

/// Pushes a problem naming `key`, `value` and the range when `value` is
/// outside `key`'s range.
pub(crate) fn check(p: &mut Vec<String>, key: &str, value: impl Into<i128>) {
    let r = range(key);
    let v: i128 = value.into();
    if v < i128::from(r.min) || v > i128::from(r.max) {
        p.push(format!(
            "{key} = {v} is out of range: must be {}..={} {}",
            r.min, r.max, r.unit
        ));
    }
}

/// A clap value parser for a float number of seconds: finite, 0 or more
/// (more than 0 when `positive`), at most [`MAX_SECS`].
pub(crate) fn secs_parser(
    positive: bool,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let out = || {
            format!(
                "{s} is out of range: must be a number of seconds, {} and at most {MAX_SECS} \
                 (10 years)",
                if positive { "more than 0" } else { "0 or more" }
            )
        };
        let v: f64 = s.trim().parse().map_err(|_| out())?;
        let low_ok = if positive { v > 0.0 } else { v >= 0.0 };
        if v.is_finite() && low_ok && v <= MAX_SECS as f64 {
            Ok(v)
        } else {
            Err(out())
        }
    }
}

/// A clap value parser for a whole number in `r` (inclusive); the error names
/// the value and the range, also for negative numbers, fractions and words.
pub(crate) fn int_parser<T>(
    r: (u64, u64),
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    move |s: &str| {
        let out = || {
            format!(
                "{s} is out of range: must be a whole number, {}..={}",
                r.0, r.1
            )
        };
        let v: i128 = s.trim().parse().map_err(|_| out())?;
        u64::try_from(v)
            .ok()
            .filter(|v| (r.0..=r.1).contains(v))
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_is_well_formed_and_its_key_unique() {
        for (i, r) in RANGES.iter().enumerate() {
            assert!(r.min <= r.max, "{r:?}");
            assert!(
                RANGES[..i].iter().all(|o| o.key != r.key),
                "{} twice",
                r.key
            );
        }
        // Ten years of ms fits Instant arithmetic with room to spare.
        let far = std::time::Instant::now() + std::time::Duration::from_millis(2 * MAX_MS);
        assert!(far > std::time::Instant::now());
    }

    #[test]
    fn seconds_flags() {
        let p = secs_parser(true);
        assert_eq!(p("1.5"), Ok(1.5));
        for bad in ["0", "-1", "1e20", "NaN", "inf", "-inf", "x", "315360001"] {
            assert!(p(bad).is_err(), "{bad}");
        }
        assert_eq!(secs_parser(false)("0"), Ok(0.0));
        let n = int_parser::<i32>(PARTITIONS);
        assert_eq!(n("8"), Ok(8));
        for bad in ["0", "-3", "1001", "1.5", "x", "18446744073709551616"] {
            assert!(n(bad).unwrap_err().contains("1..=1000"), "{bad}");
        }
    }
}

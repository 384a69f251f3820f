//! The Redis replay lists (README, "Downstream stream"), on the `stream`
//! thread: every bar is `RPUSH`ed to `<redis.key_prefix>:bars:<token>`, the
//! list `LTRIM`med to the last N and given `ops.stream_redis_ttl_s`, one
//! pipeline per drain of the bar hand-offs; a subscribe to an instrument
//! with no bar in memory (after a feed restart) reads the list back with
//! `LRANGE`, one pipeline per subscribe.
//!
//! Both go through the circuit breaker of the Redis pipeline metrics
//! ([`Breaker`], same settings) and the same connect/read/write timeout
//! (`redis.timeout_ms`), so a slow or dead Redis costs the stream thread at
//! most one timeout per pipeline while the circuit is closed and nothing
//! once it is open; the feed never waits on it (the publishers only push
//! into bounded hand-offs). Every bar not written is counted.

use std::time::{Duration, Instant};

use tungstenite::Utf8Bytes;

use super::stats::{StreamStats, add};
use crate::bars::{Bar, MAX_BAR_JSON_LEN};
use crate::config::RedisConfig;
use crate::json::JsonBuf;
use crate::ops::redis_sink::Breaker;
use crate::run_id::RunId;

/// Bars waiting for the next write pipeline; more are dropped (counted).
pub(super) const MAX_PENDING: usize = 65_536;
/// Lists read per `LRANGE` pipeline: bounds one answer to ~6 MB at N = 120.
pub(super) const READ_CHUNK: usize = 256;

/// The replay lists' writer and reader.
pub(super) struct RedisReplay {
    client: Option<redis::Client>,
    conn: Option<redis::Connection>,
    breaker: Breaker,
    timeout: Duration,
    prefix: String,
    bars: usize,
    ttl_s: u64,
    pending: Vec<(u32, Utf8Bytes)>,
    scratch: JsonBuf,
}

impl std::fmt::Debug for RedisReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL (and its password) is never shown.
        f.debug_struct("RedisReplay")
            .field("prefix", &self.prefix)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl RedisReplay {
    /// A writer for `cfg` (with a URL), keeping `bars` per list for `ttl_s`.
    /// Connects on first use.
    pub(super) fn new(cfg: &RedisConfig, bars: usize, ttl_s: u64) -> Self {
        Self {
            client: redis::Client::open(cfg.url.as_str()).ok(),
            conn: None,
            breaker: Breaker::new(
                cfg.breaker_failures,
                Duration::from_millis(cfg.breaker_cooldown_ms),
                cfg.half_open_probes,
            ),
            timeout: Duration::from_millis(cfg.timeout_ms),
            prefix: format!("{}:bars:", cfg.key_prefix),
            bars,
            ttl_s,
            pending: Vec::with_capacity(1024),
            scratch: JsonBuf::with_capacity(MAX_BAR_JSON_LEN * 2),
        }
    }

    /// The list key of `token`.
    fn key(&self, token: u32) -> String {
        format!("{}{token}", self.prefix)
    }

    /// Queues one bar record for the next [`flush`](Self::flush).
    pub(super) fn queue(&mut self, token: u32, record: Utf8Bytes, stats: &StreamStats) {
        if self.pending.len() >= MAX_PENDING {
            add(&stats.redis_bars_dropped, 1);
        } else {
            self.pending.push((token, record));
        }
    }

    fn connection(&mut self) -> redis::RedisResult<&mut redis::Connection> {
        if self.conn.is_none() {
            let Some(client) = &self.client else {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "invalid redis.url",
                )));
            };
            let c = client.get_connection_with_timeout(self.timeout)?;
            c.set_read_timeout(Some(self.timeout))?;
            c.set_write_timeout(Some(self.timeout))?;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "no redis connection")))
    }

    /// Writes the queued bars in one pipeline (`RPUSH` each, then `LTRIM`
    /// and `EXPIRE` each list once), unless the circuit is open.
    pub(super) fn flush(&mut self, stats: &StreamStats) {
        if self.pending.is_empty() {
            return;
        }
        let n = self.pending.len() as u64;
        if !self.breaker.allow(Instant::now()) {
            add(&stats.redis_circuit_open_skips, 1);
            add(&stats.redis_bars_dropped, n);
            self.pending.clear();
            return;
        }
        let mut p = redis::pipe();
        let mut tokens: Vec<u32> = Vec::with_capacity(self.pending.len());
        for (token, record) in &self.pending {
            p.cmd("RPUSH")
                .arg(self.key(*token))
                .arg(record.as_str())
                .ignore();
            tokens.push(*token);
        }
        tokens.sort_unstable();
        tokens.dedup();
        let keep = -i64::try_from(self.bars).unwrap_or(i64::MAX);
        for t in tokens {
            let key = self.key(t);
            p.cmd("LTRIM").arg(&key).arg(keep).arg(-1).ignore();
            p.cmd("EXPIRE").arg(&key).arg(self.ttl_s).ignore();
        }
        self.pending.clear();
        let result = self.connection().and_then(|c| p.query::<()>(c));
        match result {
            Ok(()) => {
                self.breaker.success();
                add(&stats.redis_writes_ok, 1);
            }
            Err(_) => {
                // A broken connection is rebuilt by the next attempt.
                self.conn = None;
                self.breaker.failure(Instant::now());
                add(&stats.redis_writes_error, 1);
                add(&stats.redis_bars_dropped, n);
            }
        }
    }

    /// The stored bars of each of `tokens` (oldest first), with the run
    /// that published them, in one pipeline (call with at most
    /// [`READ_CHUNK`] tokens); `None` when the circuit is open or the read
    /// failed (both counted). A record that is not exactly what `write_bar`
    /// writes is skipped and counted.
    pub(super) fn read(
        &mut self,
        tokens: &[u32],
        stats: &StreamStats,
    ) -> Option<Vec<Vec<(Bar, RunId)>>> {
        if tokens.is_empty() {
            return Some(Vec::new());
        }
        if !self.breaker.allow(Instant::now()) {
            add(&stats.redis_circuit_open_skips, 1);
            return None;
        }
        let first = -i64::try_from(self.bars).unwrap_or(i64::MAX);
        let mut p = redis::pipe();
        for t in tokens {
            p.cmd("LRANGE").arg(self.key(*t)).arg(first).arg(-1);
        }
        let result = self
            .connection()
            .and_then(|c| p.query::<Vec<Vec<Vec<u8>>>>(c));
        match result {
            Ok(lists) => {
                self.breaker.success();
                add(&stats.redis_reads_ok, 1);
                let mut skipped = 0u64;
                let out = lists
                    .into_iter()
                    .zip(tokens)
                    .map(|(l, t)| {
                        l.iter()
                            .filter_map(|r| {
                                let got = super::record::parse(r, &mut self.scratch)
                                    .filter(|(b, _)| b.token == *t);
                                skipped += u64::from(got.is_none());
                                got
                            })
                            .collect()
                    })
                    .collect();
                add(&stats.redis_records_skipped, skipped);
                Some(out)
            }
            Err(_) => {
                self.conn = None;
                self.breaker.failure(Instant::now());
                add(&stats.redis_reads_error, 1);
                None
            }
        }
    }
}

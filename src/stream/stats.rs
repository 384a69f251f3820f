//! The stream server's counters: written by the `stream` thread only (relaxed
//! stores and adds: each is a monotonic count or a gauge read for reporting,
//! nothing else is published through them), read by the ops side
//! ([`StreamStats::snapshot`]) for `/metrics` and the run summary.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters of the stream server (README, "Downstream stream").
#[derive(Debug, Default)]
pub struct StreamStats {
    pub(super) clients: AtomicU64,
    pub(super) clients_accepted: AtomicU64,
    pub(super) clients_refused: AtomicU64,
    pub(super) slow_disconnects: AtomicU64,
    pub(super) handshake_failures: AtomicU64,
    pub(super) bad_requests: AtomicU64,
    pub(super) bars_received: AtomicU64,
    pub(super) bars_sent: AtomicU64,
    pub(super) bars_replayed: AtomicU64,
    pub(super) bars_replayed_from_redis: AtomicU64,
    pub(super) instruments: AtomicU64,
    pub(super) instruments_over_limit: AtomicU64,
    pub(super) redis_writes_ok: AtomicU64,
    pub(super) redis_writes_error: AtomicU64,
    pub(super) redis_bars_dropped: AtomicU64,
    pub(super) redis_reads_ok: AtomicU64,
    pub(super) redis_reads_error: AtomicU64,
    pub(super) redis_circuit_open_skips: AtomicU64,
    pub(super) redis_records_skipped: AtomicU64,
}

/// A snapshot of [`StreamStats`] (the summary's `stream` object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StreamCounts {
    /// Clients connected now (handshake done).
    pub clients: u64,
    /// Clients whose handshake completed, since start.
    pub clients_accepted: u64,
    /// Connections refused at `ops.stream_max_clients` (HTTP 503).
    pub clients_refused: u64,
    /// Clients disconnected because their outgoing buffer passed
    /// `ops.stream_client_buffer_bytes`.
    pub slow_disconnects: u64,
    /// Connections that failed or timed out in the WebSocket handshake.
    pub handshake_failures: u64,
    /// Client requests answered with an error frame.
    pub bad_requests: u64,
    /// Bars taken from the publishers' hand-offs.
    pub bars_received: u64,
    /// Live bar frames sent (one per bar per subscribed client).
    pub bars_sent: u64,
    /// Bar frames sent as replay on a subscribe.
    pub bars_replayed: u64,
    /// Of those, bars read back from Redis (after a restart).
    pub bars_replayed_from_redis: u64,
    /// Instruments with a replay window now.
    pub instruments: u64,
    /// Bars (or replay look-ups) of instruments beyond
    /// `ops.stream_max_instruments`: not kept.
    pub instruments_over_limit: u64,
    /// Redis write pipelines that succeeded.
    pub redis_writes_ok: u64,
    /// Redis write pipelines that failed.
    pub redis_writes_error: u64,
    /// Bars not written to Redis (failed pipeline, open circuit, full batch).
    pub redis_bars_dropped: u64,
    /// Redis replay reads that succeeded.
    pub redis_reads_ok: u64,
    /// Redis replay reads that failed (the client was served from memory).
    pub redis_reads_error: u64,
    /// Redis reads or writes skipped because the circuit was open.
    pub redis_circuit_open_skips: u64,
    /// Records read back from Redis that were not bar records of their
    /// list's instrument (not replayed).
    pub redis_records_skipped: u64,
}

impl StreamStats {
    /// The current values.
    #[must_use]
    pub fn snapshot(&self) -> StreamCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StreamCounts {
            clients: g(&self.clients),
            clients_accepted: g(&self.clients_accepted),
            clients_refused: g(&self.clients_refused),
            slow_disconnects: g(&self.slow_disconnects),
            handshake_failures: g(&self.handshake_failures),
            bad_requests: g(&self.bad_requests),
            bars_received: g(&self.bars_received),
            bars_sent: g(&self.bars_sent),
            bars_replayed: g(&self.bars_replayed),
            bars_replayed_from_redis: g(&self.bars_replayed_from_redis),
            instruments: g(&self.instruments),
            instruments_over_limit: g(&self.instruments_over_limit),
            redis_writes_ok: g(&self.redis_writes_ok),
            redis_writes_error: g(&self.redis_writes_error),
            redis_bars_dropped: g(&self.redis_bars_dropped),
            redis_reads_ok: g(&self.redis_reads_ok),
            redis_reads_error: g(&self.redis_reads_error),
            redis_circuit_open_skips: g(&self.redis_circuit_open_skips),
            redis_records_skipped: g(&self.redis_records_skipped),
        }
    }
}

/// Adds `n` to a counter (the stream thread is its only writer).
pub(super) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Sets a gauge (the stream thread is its only writer).
pub(super) fn set(c: &AtomicU64, v: u64) {
    c.store(v, Ordering::Relaxed);
}

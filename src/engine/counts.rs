//! The accounting: every counter of the engine read into one snapshot
//! ([`Counts`]), the final [`Summary`], and the identity
//! `received = published + parked + dropped + in_flight` with each stage
//! balanced on its own (`docs/ARCHITECTURE.md`, "The accounting identity").
//! Runs on the ops side (the caller of [`Engine::counts`](super::Engine::counts)
//! and [`Engine::stop`](super::Engine::stop)); reads single-writer atomics with
//! `Relaxed` loads, so a live snapshot balances only approximately.

use std::sync::atomic::Ordering::Relaxed;

use hdrhistogram::Histogram;
use serde::Serialize;

use std::sync::Arc;

use super::handle::PublisherHandle;
use super::kafka::DeliveryCounters;
use super::net::{ConnState, ConnStats};
use super::publish::PublisherCounters;
use crate::clock::now_ns;
use crate::ring::RingCounters;
use crate::spool::Spool;
use crate::tier::TIERS;
use crate::wire::DecodeError;

mod bars;
mod tiers;
pub use bars::BarCounts;
pub use tiers::TierCounts;

const REASONS: usize = DecodeError::REASONS;
const REASON_LABELS: [&str; REASONS] = DecodeError::REASON_LABELS;

/// `u64` → `i64` for signed accounting (counts stay far below 2^63).
fn si(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One publisher's stage counters, each read once.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stage {
    capacity: usize,
    pushed: u64,
    dropped_ring_full: u64,
    popped: u64,
    produced: u64,
    queue_full: u64,
    produce_error: u64,
    queue_full_waits: u64,
    delivered: u64,
    failed: u64,
    purged: u64,
    parked: u64,
    spool_full: u64,
    spool_error: u64,
    client_errors: u64,
    fatal_errors: u64,
}

impl Stage {
    /// Reads `p`'s counters: ring, publisher, producer, spool.
    pub(crate) fn read(p: &PublisherHandle) -> Self {
        Self::of(&p.rings, &p.counters, &p.delivery, &p.spool)
    }

    fn of(
        r: &[Arc<RingCounters>; TIERS],
        c: &PublisherCounters,
        d: &DeliveryCounters,
        spool: &Spool,
    ) -> Self {
        let sc = spool.counters();
        Self {
            capacity: r.iter().map(|r| r.capacity()).sum(),
            pushed: r.iter().map(|r| r.pushed()).sum(),
            dropped_ring_full: r.iter().map(|r| r.dropped_full()).sum(),
            popped: c.popped.load(Relaxed),
            produced: c.produced.load(Relaxed),
            queue_full: c.dropped_queue_full.load(Relaxed),
            produce_error: c.dropped_produce_error.load(Relaxed),
            queue_full_waits: c.queue_full_waits.load(Relaxed),
            delivered: d.delivered.load(Relaxed),
            failed: d.failed.load(Relaxed),
            purged: d.purged.load(Relaxed),
            parked: sc.parked.load(Relaxed),
            spool_full: sc.full.load(Relaxed),
            spool_error: sc.error.load(Relaxed),
            client_errors: d.client_errors.load(Relaxed),
            fatal_errors: d.fatal_errors.load(Relaxed),
        }
    }

    /// Records refused before or failed after the producer: each is parked
    /// or dropped at the spool.
    const fn undeliverable(&self) -> (u64, u64) {
        (
            self.queue_full + self.produce_error,
            self.failed + self.purged,
        )
    }

    /// Ticks somewhere inside this stage (ring, publisher, producer queue,
    /// on the way to the spool).
    fn in_flight(&self) -> i64 {
        let (before, after) = self.undeliverable();
        (si(self.pushed) - si(self.popped))
            + (si(self.popped) - si(self.produced + before))
            + (si(self.produced) - si(self.delivered + after))
            + (si(before + after) - si(self.parked + self.spool_full + self.spool_error))
    }

    /// Every hand-over balances on its own, with nothing in flight: a stage
    /// that loses or invents ticks cannot hide behind `in_flight`.
    pub(crate) const fn balanced(&self) -> bool {
        let (before, after) = self.undeliverable();
        self.pushed == self.popped
            && self.popped == self.produced + before
            && self.produced == self.delivered + after
            && before + after == self.parked + self.spool_full + self.spool_error
    }
}

/// What has not been flushed yet, readable from any thread while
/// [`Engine::stop`](super::Engine::stop) drains: the `run` command's second
/// signal prints it before exiting at once (README, `run`).
#[derive(Debug, Clone)]
pub struct Pending {
    parts: Vec<PendingParts>,
}

#[derive(Debug, Clone)]
struct PendingParts {
    ring: [Arc<RingCounters>; TIERS],
    counters: Arc<PublisherCounters>,
    delivery: Arc<DeliveryCounters>,
    spool: Arc<Spool>,
}

/// A [`Pending`] reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PendingCounts {
    /// Ticks still in the rings.
    pub in_rings: u64,
    /// Records handed to a producer with no delivery report yet.
    pub in_producers: u64,
    /// Everything in flight (rings, publishers, producers, on the way to
    /// the spool).
    pub in_flight: i64,
    /// Records parked in the spool so far (on disk; they stay there).
    pub parked: u64,
}

impl Pending {
    pub(crate) fn of(pubs: &[PublisherHandle]) -> Self {
        Self {
            parts: pubs
                .iter()
                .map(|p| PendingParts {
                    ring: p.rings.clone(),
                    counters: Arc::clone(&p.counters),
                    delivery: Arc::clone(&p.delivery),
                    spool: Arc::clone(&p.spool),
                })
                .collect(),
        }
    }

    /// Reads the counters now (`Relaxed` loads of live counters).
    #[must_use]
    pub fn read(&self) -> PendingCounts {
        let mut out = PendingCounts::default();
        for p in &self.parts {
            let st = Stage::of(&p.ring, &p.counters, &p.delivery, &p.spool);
            out.in_rings += st.pushed.saturating_sub(st.popped);
            out.in_producers += st
                .produced
                .saturating_sub(st.delivered + st.failed + st.purged);
            out.in_flight += st.in_flight();
            out.parked += st.parked;
        }
        out
    }
}

/// One connection's counters, read now.
fn conn_counts(s: &ConnStats) -> ConnCounts {
    let age = |t: u64| (t != 0).then(|| now_ns().saturating_sub(t) / 1_000_000);
    ConnCounts {
        url: s.url.clone(),
        state: s.state().label(),
        instruments: s.instruments.load(Relaxed) as usize,
        after_unsubscribe: s.after_unsubscribe.load(Relaxed),
        changes_applied: s.changes_applied.load(Relaxed),
        messages: s.messages.load(Relaxed),
        ticks: s.ticks.load(Relaxed),
        heartbeats: s.heartbeats.load(Relaxed),
        text_frames: s.text_frames.load(Relaxed),
        server_errors: s.server_errors.load(Relaxed),
        oversized_text_frames: s.oversized_text_frames.load(Relaxed),
        oversized_frames: s.oversized_frames.load(Relaxed),
        last_frame_age_ms: age(s.last_frame_ns.load(Relaxed)),
        last_tick_age_ms: age(s.last_tick_ns.load(Relaxed)),
        error: s.error(),
        last_server_error: s.last_server_error(),
        attempts: s.attempts.load(Relaxed),
        reconnects: s
            .reconnect_counts()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        disconnected_ms: s.disconnected_ns.load(Relaxed) / 1_000_000,
        block_stalls: s.block_stalls.load(Relaxed),
        block_timeouts: s.block_timeouts.load(Relaxed),
        blocked_ms: s.blocked_ns.load(Relaxed) / 1_000_000,
    }
}

/// Every counter of the connections and publishers, summed; latency and
/// spool fields are left for the caller.
pub(crate) fn tally(conns: &[std::sync::Arc<ConnStats>], pubs: &[PublisherHandle]) -> Counts {
    let mut c = Counts::default();
    // Spare slots never used are not shown; slots fill in order, so the
    // shown ones keep their indices.
    let used = conns
        .iter()
        .rposition(|s| s.state() != ConnState::Idle || s.attempts.load(Relaxed) > 0)
        .map_or(0, |i| i + 1);
    for s in &conns[..used] {
        let conn = conn_counts(s);
        c.after_unsubscribe += conn.after_unsubscribe;
        c.received += conn.ticks;
        c.heartbeats += conn.heartbeats;
        c.messages += conn.messages;
        c.unknown_packets += s.unknown_packets.load(Relaxed);
        for (i, m) in s.malformed.iter().enumerate() {
            c.malformed[i] += m.load(Relaxed);
        }
        c.connections.push(conn);
    }
    for p in pubs {
        let st = Stage::read(p);
        c.in_flight += st.in_flight();
        c.dropped_by_reason.ring_full += st.dropped_ring_full;
        c.dropped_by_reason.spool_full += st.spool_full;
        c.dropped_by_reason.spool_error += st.spool_error;
        c.failures.producer_queue_full += st.queue_full;
        c.failures.produce_error += st.produce_error;
        c.failures.delivery_failed += st.failed;
        c.failures.unflushed_at_exit += st.purged;
        c.parked += st.parked;
        c.published += st.delivered;
        c.client_errors += st.client_errors;
        c.producer_fatal_errors += st.fatal_errors;
        if c.last_spool_error.is_none() {
            c.last_spool_error = p.spool.last_error();
        }
        if c.last_kafka_error.is_none() {
            // Foreign text (the broker's words): cut and escaped.
            c.last_kafka_error = p.delivery.last_error().map(|e| {
                crate::logging::truncate(&e, crate::logging::MAX_STORED_TEXT).into_owned()
            });
        }
        c.publishers.push(PublisherCountsOut {
            ring_capacity: st.capacity,
            ring_bytes: (st.capacity as u64).saturating_mul(crate::ring::SLOT_BYTES),
            ring_len: st.pushed.saturating_sub(st.popped),
            pushed: st.pushed,
            dropped_ring_full: st.dropped_ring_full,
            produced: st.produced,
            delivered: st.delivered,
            producer_queue: st
                .produced
                .saturating_sub(st.delivered + st.failed + st.purged),
            queue_full_waits: st.queue_full_waits,
        });
    }
    c.dropped = c.dropped_by_reason.total();
    c.tiers = tiers::tally(pubs);
    c.bars = bars::tally(pubs);
    c
}

/// The identity at the end of a run: no thread panicked, every stage
/// balanced, nothing in flight, and `received = published + parked + dropped`.
pub(crate) fn identity_holds(c: &Counts, pubs: &[PublisherHandle], panicked: bool) -> bool {
    !panicked
        && pubs.iter().all(|p| Stage::read(p).balanced())
        && c.in_flight == 0
        && si(c.received) == si(c.published + c.parked + c.dropped) + c.in_flight
        && tiers::identity_holds(c, pubs)
        && bars::identity_holds(pubs)
}

/// Latency percentiles, in nanoseconds, of receive → produce call.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// Maximum.
    pub max: u64,
}

impl LatencySummary {
    /// Percentiles of `h`.
    #[must_use]
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Ticks dropped, by reason.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct DropReasons {
    /// A publisher ring was full (the network thread never waits).
    pub ring_full: u64,
    /// Undeliverable, and the dead-letter spool was at its cap.
    pub spool_full: u64,
    /// Undeliverable, and the dead-letter spool could not be written.
    pub spool_error: u64,
}

impl DropReasons {
    /// Sum over reasons.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.ring_full + self.spool_full + self.spool_error
    }
}

/// Records that could not be delivered, by cause. Each one is parked in the
/// spool, or dropped as `spool_full`/`spool_error` when it cannot be.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Failures {
    /// The producer queue had no room within `kafka.queue_full_wait_ms`.
    pub producer_queue_full: u64,
    /// librdkafka refused the record (e.g. too large).
    pub produce_error: u64,
    /// Delivery failed (timeout after `message.timeout.ms`, fatal broker error).
    pub delivery_failed: u64,
    /// Still undelivered when the shutdown flush deadline passed.
    pub unflushed_at_exit: u64,
}

/// One connection's counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ConnCounts {
    /// URL without credentials.
    pub url: String,
    /// State label.
    pub state: &'static str,
    /// Instruments assigned.
    pub instruments: usize,
    /// Packets of a token unsubscribed a moment ago: skipped, not ticks.
    pub after_unsubscribe: u64,
    /// Live subscription changes applied to this connection.
    pub changes_applied: u64,
    /// Market-data messages.
    pub messages: u64,
    /// Ticks received.
    pub ticks: u64,
    /// Heartbeats.
    pub heartbeats: u64,
    /// Text frames.
    pub text_frames: u64,
    /// Text `error` frames.
    pub server_errors: u64,
    /// Text frames over `zerodha.max_text_frame_bytes`: counted, not parsed.
    pub oversized_text_frames: u64,
    /// Frames over the connection's frame limit, refused unread (the
    /// connection went down as `read_error` and reconnected).
    pub oversized_frames: u64,
    /// Time since the last frame of any kind, ms.
    pub last_frame_age_ms: Option<u64>,
    /// Time since the last market-data message with ticks, ms.
    pub last_tick_age_ms: Option<u64>,
    /// Why it last went down.
    pub error: Option<String>,
    /// The latest text `error` frame.
    pub last_server_error: Option<String>,
    /// Connection attempts, the first included.
    pub attempts: u64,
    /// Times the connection went down, by reason.
    pub reconnects: std::collections::BTreeMap<String, u64>,
    /// Time spent down after the first open, ms.
    pub disconnected_ms: u64,
    /// Messages held for ring room (`engine.overflow = "block"`).
    pub block_stalls: u64,
    /// Holds that ran out (`engine.block_max_ms`); their ticks that did
    /// not fit are in `dropped_ring_full`.
    pub block_timeouts: u64,
    /// Time this socket was not read because a ring was full, ms.
    pub blocked_ms: u64,
}

/// One publisher's counters.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PublisherCountsOut {
    /// Ring slots.
    pub ring_capacity: usize,
    /// Ring memory: slots × the slot size (a `Tick`), bytes.
    pub ring_bytes: u64,
    /// Ticks in the ring.
    pub ring_len: u64,
    /// Ticks pushed onto the ring.
    pub pushed: u64,
    /// Ticks dropped at the ring.
    pub dropped_ring_full: u64,
    /// Records enqueued on the producer.
    pub produced: u64,
    /// Records delivered.
    pub delivered: u64,
    /// Records in the producer (enqueued, no delivery report yet).
    pub producer_queue: u64,
    /// Waits for room in the producer queue.
    pub queue_full_waits: u64,
}

/// A snapshot of every counter (the accounting identity is in
/// `docs/ARCHITECTURE.md`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Counts {
    /// Ticks received (decoded from market-data messages).
    pub received: u64,
    /// Ticks whose delivery Kafka confirmed.
    pub published: u64,
    /// Ticks parked in the dead-letter spool.
    pub parked: u64,
    /// Ticks dropped, all reasons.
    pub dropped: u64,
    /// Ticks in a ring, a publisher or the producer queue.
    pub in_flight: i64,
    /// Drops by reason.
    pub dropped_by_reason: DropReasons,
    /// Undeliverable records by cause (parked or dropped above).
    pub failures: Failures,
    /// The latest spool error.
    pub last_spool_error: Option<String>,
    /// Malformed binary messages by reason (not ticks; the whole message is skipped).
    #[serde(serialize_with = "malformed_map")]
    pub malformed: [u64; REASONS],
    /// Packets of an unknown length, skipped (not ticks).
    pub unknown_packets: u64,
    /// Packets of a token unsubscribed a moment ago, skipped (not ticks).
    pub after_unsubscribe: u64,
    /// Order postbacks (not ticks): their own identity (README, "Order
    /// postbacks").
    pub orders: super::orders::OrderCounts,
    /// One-minute bars (not ticks): their own identity (README, "Bars");
    /// absent when bars are off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bars: Option<BarCounts>,
    /// Market-data messages.
    pub messages: u64,
    /// Heartbeats.
    pub heartbeats: u64,
    /// librdkafka client errors.
    pub client_errors: u64,
    /// Fatal producer errors; each replaced that publisher's producer, and
    /// what it held was parked (counted in `failures.delivery_failed`).
    pub producer_fatal_errors: u64,
    /// The latest Kafka error.
    pub last_kafka_error: Option<String>,
    /// Receive → produce-call latency since start.
    pub latency_ns: LatencySummary,
    /// The same since the previous [`Engine::counts`](super::Engine::counts).
    pub latency_interval_ns: LatencySummary,
    /// Receive → broker-ack (delivery report) latency since start.
    pub ack_latency_ns: LatencySummary,
    /// Ack latency samples lost to a full sample buffer (samples, not ticks).
    pub ack_samples_dropped: u64,
    /// Bytes in the dead-letter spool.
    pub spool_bytes: u64,
    /// Per connection.
    pub connections: Vec<ConnCounts>,
    /// Per publisher (and its rings).
    pub publishers: Vec<PublisherCountsOut>,
    /// Per tier (`{"T0": …, "T1": …, "T2": …}`); each sums over publishers,
    /// and the totals above are their sums.
    #[serde(serialize_with = "tiers::as_map")]
    pub tiers: [TierCounts; TIERS],
    /// The optional tick parts being published, per mode (`[fields]`,
    /// [`Engine::set_fields`](super::Engine::set_fields)).
    pub fields: crate::fields::FieldSelection,
    /// Seconds since start.
    pub uptime_s: f64,
}

impl Counts {
    /// Malformed messages as `(reason label, count)`.
    pub fn malformed_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REASON_LABELS.iter().copied().zip(self.malformed)
    }

    /// Total malformed messages.
    #[must_use]
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
}

/// The final accounting, after [`Engine::stop`](super::Engine::stop).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The run's id (every envelope's `run`).
    pub run_id: crate::run_id::RunId,
    /// `received == published + parked + dropped + in_flight`, exactly, with
    /// `in_flight == 0` and every stage (ring, publisher, producer) balanced
    /// on its own.
    pub identity_holds: bool,
    /// Every publisher's final flush finished before its deadline.
    pub flushed: bool,
    /// Threads that panicked.
    pub thread_errors: Vec<String>,
    /// The counters.
    #[serde(flatten)]
    pub counts: Counts,
    /// The merged receive → produce-call latency histogram (ns).
    #[serde(skip)]
    pub latency_histogram: Histogram<u64>,
}

// Each reason label belongs to one counter index.
const _: () = assert!(REASON_LABELS.len() == REASONS);

fn malformed_map<S: serde::Serializer>(m: &[u64; REASONS], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(REASONS))?;
    for (k, v) in REASON_LABELS.iter().zip(m) {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

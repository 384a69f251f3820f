//! The engine: a pinned network thread feeding bounded SPSC rings, drained by
//! pinned publisher threads into Kafka (DESIGN §1).
//!
//! ```text
//! network thread ──route by instrument──▶ ring i ──▶ publisher i ──▶ Kafka
//!   (net.rs, route.rs)                  (ring.rs)   (publish.rs, kafka.rs)
//! ```
//!
//! Ownership: the network thread owns the sockets and the ring producers;
//! each publisher owns its ring consumer, producer, buffer and histogram. The
//! caller's thread (the ops side) owns the [`Engine`] handle and reads the
//! counters, which are single-writer atomics. Accounting, at every instant:
//! every received tick is in flight (ring, publisher, producer queue),
//! published (delivery confirmed), parked, or dropped with a counted reason.
//! [`Engine::stop`] drains everything and checks that identity exactly.

pub mod kafka;
pub mod net;
pub mod publish;
pub mod route;
pub mod wake;

pub use crate::config::{IdlePolicy, Supervision};
pub use crate::secret::Secret;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::clock::now_ns;
use crate::config::defaults;
use crate::ring::{RingCounters, tick_ring};
use crate::tick::Mode;
use crate::wire::DecodeError;
use wake::Wake;

const REASONS: usize = DecodeError::REASONS;
const REASON_LABELS: [&str; REASONS] = DecodeError::REASON_LABELS;
use crate::spool::{Spool, SpoolConfig};
use kafka::{DeliveryCounters, KafkaConfig, TickProducer};
use net::{ConnSpec, ConnStats, Credentials, Net, NetConfig, NetStopper};
use publish::{
    HistogramExchange, Interval, Publisher, PublisherCounters, Report, SLOW_N, SlowAck,
    latency_histogram,
};
use route::{MAX_RINGS, Router};

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
    /// Most instruments per connection (Kite: 3000).
    pub max_per_connection: usize,
    /// Most connections (Kite: 3 per api_key).
    pub max_connections: usize,
    /// Tokens per subscribe/mode request.
    pub subscribe_chunk: usize,
    /// Slots per publisher ring.
    pub ring_capacity: usize,
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
    /// Kafka producer settings.
    pub kafka: KafkaConfig,
    /// Connection supervision: liveness, backoff.
    pub supervision: Supervision,
    /// The dead-letter spool.
    pub spool: SpoolConfig,
    /// Test hook: publisher `.0` sleeps `.1` after every chunk.
    #[doc(hidden)]
    pub test_slow_publisher: Option<(usize, Duration)>,
    /// Test hook: publisher `.0` panics after popping `.1` ticks.
    #[doc(hidden)]
    pub test_panic_publisher: Option<(usize, u64)>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ws_url: defaults::WS_URL.into(),
            api_key: Secret::default(),
            access_token: Secret::default(),
            instruments: Vec::new(),
            max_per_connection: defaults::MAX_PER_CONNECTION,
            max_connections: defaults::MAX_CONNECTIONS,
            subscribe_chunk: defaults::SUBSCRIBE_CHUNK,
            ring_capacity: defaults::RING_CAPACITY,
            publishers: defaults::PUBLISHERS,
            publish_chunk: defaults::PUBLISH_CHUNK,
            idle: IdlePolicy::Park,
            network_core: None,
            publisher_cores: Vec::new(),
            read_buffer_size: defaults::READ_BUFFER_SIZE,
            max_message_size: defaults::MAX_MESSAGE_BYTES,
            kafka: KafkaConfig::default(),
            supervision: Supervision::default(),
            spool: SpoolConfig::default(),
            test_slow_publisher: None,
            test_panic_publisher: None,
        }
    }
}

impl EngineConfig {
    /// Every problem with the settings, each naming the value and the fix.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = self.kafka.problems();
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
            p.push("no api_key: set kite.api_key, --api-key or ZERODHA__API_KEY".into());
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

/// The ops side of a publisher's histogram exchange: full ones in, empty
/// ones back.
type OpsExchange = (rtrb::Consumer<Box<Interval>>, rtrb::Producer<Box<Interval>>);

/// A running engine. Drop without [`stop`](Self::stop) stops it without a
/// summary.
#[derive(Debug)]
pub struct Engine {
    conns: Vec<Arc<ConnStats>>,
    rings: Vec<Arc<RingCounters>>,
    pubs: Vec<Arc<PublisherCounters>>,
    delivery: Vec<Arc<DeliveryCounters>>,
    acks: Vec<Arc<kafka::AckSamples>>,
    spools: Vec<Arc<Spool>>,
    exchanges: Vec<OpsExchange>,
    total: Histogram<u64>,
    interval: Histogram<u64>,
    ack_total: Histogram<u64>,
    slow: Vec<SlowAck>,
    spool_bytes: Arc<std::sync::atomic::AtomicU64>,
    stopper: NetStopper,
    stopping: Vec<Arc<std::sync::atomic::AtomicBool>>,
    creds: Arc<Credentials>,
    net: Option<JoinHandle<()>>,
    publishers: Vec<JoinHandle<Option<Report>>>,
    panics: Arc<std::sync::Mutex<Vec<String>>>,
    started: Instant,
}

fn pin(core: Option<usize>, what: &str) {
    if let Some(id) = core
        && !core_affinity::set_for_current(core_affinity::CoreId { id })
    {
        tracing::warn!("could not pin {what} to core {id}; running unpinned");
    }
}

impl Engine {
    /// Validates `cfg`, creates the producers, spawns the publishers and the
    /// network thread (which starts connecting at once), and returns.
    ///
    /// # Errors
    /// [`EngineError`] for bad settings, a producer that cannot be created,
    /// or a thread or poll that cannot be set up.
    pub fn start(cfg: EngineConfig) -> Result<Self, EngineError> {
        let mut problems = cfg.problems();
        let shards = match route::shard(
            &cfg.instruments,
            cfg.max_per_connection,
            cfg.max_connections,
        ) {
            Ok(s) => s,
            Err(e) => {
                problems.push(e);
                Vec::new()
            }
        };
        if !problems.is_empty() {
            return Err(EngineError::Config(problems));
        }
        let mut txs = Vec::new();
        let mut rings = Vec::new();
        let mut publishers = Vec::new();
        let mut exchanges = Vec::new();
        let mut spools = Vec::new();
        let spool_total = Arc::new(std::sync::atomic::AtomicU64::new(crate::spool::dir_bytes(
            &cfg.spool.dir,
        )));
        for i in 0..cfg.publishers {
            let (tx, rx, counters) = tick_ring(cfg.ring_capacity);
            txs.push(tx);
            rings.push(counters);
            let spool = Arc::new(Spool::new(cfg.spool.clone(), i, Arc::clone(&spool_total)));
            spools.push(Arc::clone(&spool));
            let producer = TickProducer::new(&cfg.kafka, &format!("panda-feed-pub{i}"), spool)
                .map_err(|e| EngineError::Kafka(cfg.kafka.redact(&e.to_string())))?;
            let (full_tx, full_rx) = rtrb::RingBuffer::new(1);
            let (mut empty_tx, empty_rx) = rtrb::RingBuffer::new(1);
            // One spare so the first exchange can happen.
            let _ = empty_tx.push(Box::new(Interval::new()));
            exchanges.push((full_rx, empty_tx));
            let slow = cfg
                .test_slow_publisher
                .filter(|(p, _)| *p == i)
                .map(|(_, d)| d);
            publishers.push(
                Publisher::new(
                    rx,
                    producer,
                    cfg.publish_chunk,
                    Duration::from_millis(u64::from(cfg.kafka.queue_full_wait_ms)),
                    HistogramExchange {
                        full: full_tx,
                        empty: empty_rx,
                    },
                )
                .with_index(u32::try_from(i).unwrap_or(u32::MAX))
                .with_slowdown(slow)
                .with_panic_after(
                    cfg.test_panic_publisher
                        .filter(|(p, _)| *p == i)
                        .map(|(_, n)| n),
                ),
            );
        }
        let pubs: Vec<_> = publishers
            .iter()
            .map(|p| Arc::clone(p.counters()))
            .collect();
        let stopping: Vec<_> = publishers
            .iter()
            .map(|p| Arc::clone(p.stopping()))
            .collect();
        let delivery: Vec<_> = publishers
            .iter()
            .map(|p| Arc::clone(p.producer().counters()))
            .collect();
        let acks: Vec<_> = publishers
            .iter()
            .map(|p| Arc::clone(p.producer().acks()))
            .collect();
        let flush = Duration::from_millis(u64::from(cfg.kafka.flush_timeout_ms));
        let mut handles = Vec::new();
        let mut wakes = Vec::new();
        let panics: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        for (i, p) in publishers.into_iter().enumerate() {
            let wake = Arc::new(Wake::default());
            let w = Arc::clone(&wake);
            let core = cfg.publisher_cores.get(i).copied();
            let idle = cfg.idle;
            let panics_p = Arc::clone(&panics);
            let h = std::thread::Builder::new()
                .name(format!("publisher-{i}"))
                .spawn(move || {
                    pin(core, "a publisher");
                    // Unwinding drops the producer, whose purge parks what
                    // it held; the panic is recorded, never silent.
                    guarded(&panics_p, &format!("publisher {i}"), move || {
                        p.run(idle, &w, flush)
                    })
                })
                .map_err(|e| EngineError::Io(format!("spawn publisher: {e}")))?;
            wakes.push((wake, h.thread().clone()));
            handles.push(h);
        }
        let creds = Arc::new(Credentials::new(
            cfg.api_key.clone(),
            cfg.access_token.clone(),
        ));
        let specs: Vec<ConnSpec> = shards
            .into_iter()
            .map(|tokens| ConnSpec { tokens })
            .collect();
        let conns = net::new_stats(&cfg.ws_url, &specs);
        let (net, stopper) = Net::new(
            &creds,
            specs,
            &conns,
            Router::new(txs),
            wakes,
            NetConfig {
                idle: cfg.idle,
                subscribe_chunk: cfg.subscribe_chunk,
                read_buffer_size: cfg.read_buffer_size,
                max_message_size: cfg.max_message_size,
                supervision: cfg.supervision,
            },
        )
        .map_err(|e| EngineError::Io(format!("poll: {e}")))?;
        let core = cfg.network_core;
        let panics_n = Arc::clone(&panics);
        let net = std::thread::Builder::new()
            .name("network".into())
            .spawn(move || {
                pin(core, "the network thread");
                guarded(&panics_n, "the network thread", move || net.run());
            })
            .map_err(|e| EngineError::Io(format!("spawn network thread: {e}")))?;
        Ok(Self {
            conns,
            rings,
            pubs,
            delivery,
            acks,
            spools,
            exchanges,
            total: latency_histogram(),
            interval: latency_histogram(),
            ack_total: latency_histogram(),
            slow: Vec::new(),
            spool_bytes: spool_total,
            stopper,
            stopping,
            creds,
            net: Some(net),
            publishers: handles,
            panics,
            started: Instant::now(),
        })
    }

    /// Collects the histograms the publishers have handed over.
    fn collect_histograms(&mut self) {
        for i in 0..self.exchanges.len() {
            while let Ok(h) = self.exchanges[i].0.pop() {
                self.absorb(&h);
                let _ = self.exchanges[i].1.push(h);
            }
        }
    }

    fn absorb(&mut self, h: &Interval) {
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.total.add(&h.produce);
        let _ = self.interval.add(&h.produce);
        let _ = self.ack_total.add(&h.ack);
        self.slow.extend_from_slice(h.slow.as_slice());
        if self.slow.len() > 4 * SLOW_N {
            self.slow
                .sort_unstable_by_key(|a| std::cmp::Reverse(a.duration_ns));
            self.slow.truncate(SLOW_N);
        }
    }

    /// The slowest deliveries (receive → broker ack) since the previous
    /// call, slowest first, at most [`SLOW_N`].
    pub fn take_slow_acks(&mut self) -> Vec<SlowAck> {
        self.collect_histograms();
        let mut v = std::mem::take(&mut self.slow);
        v.sort_unstable_by_key(|a| std::cmp::Reverse(a.duration_ns));
        v.truncate(SLOW_N);
        v
    }

    /// Receive → produce-call and receive → broker-ack latency histograms
    /// (ns) since start, as of the latest [`counts`](Self::counts).
    #[must_use]
    pub fn latency_histograms(&self) -> (&Histogram<u64>, &Histogram<u64>) {
        (&self.total, &self.ack_total)
    }

    /// Current counters. Values are read one by one from live threads, so
    /// the identity holds only approximately until [`stop`](Self::stop).
    pub fn counts(&mut self) -> Counts {
        self.collect_histograms();
        let interval = LatencySummary::of(&self.interval);
        self.interval.reset();
        self.build_counts(interval)
    }

    /// Engine threads that panicked, with their messages. A panicked thread
    /// is never silent: the run stops and reports it.
    #[must_use]
    pub fn thread_panics(&self) -> Vec<String> {
        self.panics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the access token (e.g. its file changed). Connections
    /// refused with HTTP 403 retry at once; others use it at their next
    /// connect. Returns `false` when the token is unchanged.
    pub fn set_access_token(&self, token: Secret) -> bool {
        self.creds.set_token(token)
    }

    fn build_counts(&self, interval: LatencySummary) -> Counts {
        use std::sync::atomic::Ordering::Relaxed;
        let mut c = Counts {
            latency_ns: LatencySummary::of(&self.total),
            ack_latency_ns: LatencySummary::of(&self.ack_total),
            spool_bytes: self.spool_bytes.load(Relaxed),
            ack_samples_dropped: self.acks.iter().map(|a| a.dropped.load(Relaxed)).sum(),
            latency_interval_ns: interval,
            ..Counts::default()
        };
        for s in &self.conns {
            let conn = ConnCounts {
                url: s.url.clone(),
                state: s.state().label(),
                instruments: s.instruments,
                messages: s.messages.load(Relaxed),
                ticks: s.ticks.load(Relaxed),
                heartbeats: s.heartbeats.load(Relaxed),
                text_frames: s.text_frames.load(Relaxed),
                server_errors: s.server_errors.load(Relaxed),
                last_frame_age_ms: match s.last_frame_ns.load(Relaxed) {
                    0 => None,
                    t => Some(now_ns().saturating_sub(t) / 1_000_000),
                },
                last_tick_age_ms: match s.last_tick_ns.load(Relaxed) {
                    0 => None,
                    t => Some(now_ns().saturating_sub(t) / 1_000_000),
                },
                error: s.error(),
                last_server_error: s.last_server_error(),
                attempts: s.attempts.load(Relaxed),
                reconnects: s
                    .reconnect_counts()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                disconnected_ms: s.disconnected_ns.load(Relaxed) / 1_000_000,
            };
            c.received += conn.ticks;
            c.heartbeats += conn.heartbeats;
            c.messages += conn.messages;
            c.unknown_packets += s.unknown_packets.load(Relaxed);
            for (i, m) in s.malformed.iter().enumerate() {
                c.malformed[i] += m.load(Relaxed);
            }
            c.connections.push(conn);
        }
        let mut in_flight: i64 = 0;
        for (i, r) in self.rings.iter().enumerate() {
            let p = &self.pubs[i];
            let d = &self.delivery[i];
            let popped = p.popped.load(Relaxed);
            let produced = p.produced.load(Relaxed);
            let queue_full = p.dropped_queue_full.load(Relaxed);
            let produce_error = p.dropped_produce_error.load(Relaxed);
            let delivered = d.delivered.load(Relaxed);
            let failed = d.failed.load(Relaxed);
            let purged = d.purged.load(Relaxed);
            in_flight += si(r.pushed()) - si(popped);
            let sc = self.spools[i].counters();
            let (parked, spool_full, spool_error) = (
                sc.parked.load(Relaxed),
                sc.full.load(Relaxed),
                sc.error.load(Relaxed),
            );
            in_flight += si(popped) - si(produced + queue_full + produce_error);
            in_flight += si(produced) - si(delivered + failed + purged);
            in_flight += si(queue_full + produce_error + failed + purged)
                - si(parked + spool_full + spool_error);
            c.dropped_by_reason.ring_full += r.dropped_full();
            c.dropped_by_reason.spool_full += spool_full;
            c.dropped_by_reason.spool_error += spool_error;
            c.failures.producer_queue_full += queue_full;
            c.failures.produce_error += produce_error;
            c.failures.delivery_failed += failed;
            c.failures.unflushed_at_exit += purged;
            c.parked += parked;
            if c.last_spool_error.is_none() {
                c.last_spool_error.clone_from(
                    &self.spools[i]
                        .last_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                );
            }
            c.published += delivered;
            c.client_errors += d.client_errors.load(Relaxed);
            if c.last_kafka_error.is_none() {
                c.last_kafka_error.clone_from(
                    &d.last_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                );
            }
            c.publishers.push(PublisherCountsOut {
                ring_capacity: r.capacity(),
                ring_len: r.pushed().saturating_sub(popped),
                pushed: r.pushed(),
                dropped_ring_full: r.dropped_full(),
                produced,
                delivered,
                producer_queue: produced.saturating_sub(delivered + failed + purged),
                queue_full_waits: p.queue_full_waits.load(Relaxed),
            });
        }
        c.in_flight = in_flight;
        c.dropped = c.dropped_by_reason.total();
        c.uptime_s = self.started.elapsed().as_secs_f64();
        c
    }

    /// Stops gracefully: stop reading, let the publishers drain their rings
    /// and flush (each within the Kafka flush timeout), and account for every
    /// tick. Returns the final summary.
    pub fn stop(mut self) -> Summary {
        self.stopper.stop();
        let mut thread_errors = Vec::new();
        if let Some(h) = self.net.take() {
            let _ = h.join();
        }
        // Draining must end: a full producer queue now drops (counted)
        // instead of waiting per tick.
        for s in &self.stopping {
            s.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut flushed = true;
        for h in std::mem::take(&mut self.publishers) {
            if let Ok(Some(report)) = h.join() {
                self.absorb(&report.hist);
                flushed &= report.flushed;
            } else {
                // Panicked: recorded in `panics` by `guarded`.
                flushed = false;
            }
        }
        thread_errors.extend(self.thread_panics());
        self.collect_histograms();
        let counts = self.build_counts(LatencySummary::default());
        // After every thread has stopped, nothing may be in flight, and every
        // stage must balance on its own: a stage that loses or invents ticks
        // cannot hide behind `in_flight`, which is derived from the stages.
        let stages_balance = counts.publishers.iter().all(|p| p.ring_len == 0)
            && self
                .pubs
                .iter()
                .zip(&self.delivery)
                .zip(&self.spools)
                .all(|((p, d), sp)| {
                    use std::sync::atomic::Ordering::Relaxed;
                    let produced = p.produced.load(Relaxed);
                    let before =
                        p.dropped_queue_full.load(Relaxed) + p.dropped_produce_error.load(Relaxed);
                    let after = d.failed.load(Relaxed) + d.purged.load(Relaxed);
                    let sc = sp.counters();
                    p.popped.load(Relaxed) == produced + before
                        && produced == d.delivered.load(Relaxed) + after
                        && before + after
                            == sc.parked.load(Relaxed)
                                + sc.full.load(Relaxed)
                                + sc.error.load(Relaxed)
                });
        let identity_holds = thread_errors.is_empty()
            && stages_balance
            && counts.in_flight == 0
            && si(counts.received)
                == si(counts.published + counts.parked + counts.dropped) + counts.in_flight;
        Summary {
            identity_holds,
            flushed,
            thread_errors,
            counts,
            latency_histogram: self.total.clone(),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(h) = self.net.take() {
            let _ = h.join();
        }
        for h in self.publishers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Runs `f`, recording a panic as "`what` panicked: message".
fn guarded<T>(
    panics: &std::sync::Mutex<Vec<String>>,
    what: &str,
    f: impl FnOnce() -> T,
) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic payload)".to_owned());
            panics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(format!("{what} panicked: {msg}"));
            None
        }
    }
}

/// `u64` → `i64` for signed accounting (counts stay far below 2^63).
fn si(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
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
}

/// One publisher's counters.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PublisherCountsOut {
    /// Ring slots.
    pub ring_capacity: usize,
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

/// A snapshot of every counter (DESIGN §1).
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
    /// Market-data messages.
    pub messages: u64,
    /// Heartbeats.
    pub heartbeats: u64,
    /// librdkafka client errors.
    pub client_errors: u64,
    /// The latest Kafka error.
    pub last_kafka_error: Option<String>,
    /// Receive → produce-call latency since start.
    pub latency_ns: LatencySummary,
    /// The same since the previous [`Engine::counts`].
    pub latency_interval_ns: LatencySummary,
    /// Receive → broker-ack (delivery report) latency since start.
    pub ack_latency_ns: LatencySummary,
    /// Ack latency samples lost to a full sample buffer (samples, not ticks).
    pub ack_samples_dropped: u64,
    /// Bytes in the dead-letter spool.
    pub spool_bytes: u64,
    /// Per connection.
    pub connections: Vec<ConnCounts>,
    /// Per publisher (and its ring).
    pub publishers: Vec<PublisherCountsOut>,
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

/// The final accounting, after [`Engine::stop`].
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
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

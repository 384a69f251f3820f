//! Publisher threads: pop a chunk of ticks from the rings (T0's first, then
//! T1's, then T2's), encode each as a JSON envelope into a reused buffer, and
//! enqueue it on the producer.
//!
//! Contract: after start-up, [`Publisher::publish_available`] never allocates
//! on the Rust heap, never takes a lock, and blocks only while the producer
//! queue is full (bounded by `queue_full_wait`), which back-pressures into the
//! ring, where the network thread drops and counts instead of blocking.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::IdlePolicy;
use super::bar_lane::Emit;
use super::kafka::batch::Batch;
use super::kafka::{AckSamples, ProduceError, TickProducer};
use super::wake::Wake;
use crate::fields::LiveFields;
use crate::json::write_envelope_with;
use crate::ring::TickRx;
use crate::run_id::RunId;
use crate::tier::TIERS;

mod bars;
mod enqueue;

use enqueue::{BATCH_MAX, Enqueue, TOO_LARGE};

pub use super::latency::{
    HistogramExchange, Interval, LATENCY_MAX_NS, SLOW_N, SlowAck, SlowAcks, latency_histogram,
};

/// Counters of one publisher, written by its thread only.
#[derive(Debug, Default)]
pub struct PublisherCounters {
    /// Ticks taken off the ring.
    pub popped: CachePadded<AtomicU64>,
    /// Records enqueued on the producer.
    pub produced: CachePadded<AtomicU64>,
    /// Ticks the producer queue had no room for past the wait; parked in
    /// the spool (or dropped, counted there, when it cannot take them).
    pub dropped_queue_full: AtomicU64,
    /// Ticks the producer refused for another reason (e.g. record too
    /// large); parked like the above.
    pub dropped_produce_error: AtomicU64,
    /// Times the producer queue was full and the publisher waited.
    pub queue_full_waits: AtomicU64,
    /// The above per tier (the tier of the ring a tick came from).
    pub by_tier: [CachePadded<TierCounters>; TIERS],
}

/// One tier's share of [`PublisherCounters`].
#[derive(Debug, Default)]
pub struct TierCounters {
    /// Ticks taken off the tier's ring.
    pub popped: AtomicU64,
    /// Records enqueued on the producer.
    pub produced: AtomicU64,
    /// Refused: producer queue full past the wait (parked or dropped).
    pub dropped_queue_full: AtomicU64,
    /// Refused for another reason (parked or dropped).
    pub dropped_produce_error: AtomicU64,
}

/// The publisher thread's own copy of [`TierCounters`].
#[derive(Debug, Default, Clone, Copy)]
struct TierTally {
    popped: u64,
    produced: u64,
    dropped_queue_full: u64,
    dropped_produce_error: u64,
}

/// One publisher: its ring, producer, buffer and histogram.
#[derive(Debug)]
pub struct Publisher {
    /// One ring per tier, T0 first (one ring when untiered).
    rx: Vec<TickRx>,
    producer: TickProducer,
    /// The chunk's records, staged for one batched enqueue.
    batch: Batch,
    counters: Arc<PublisherCounters>,
    hist: Box<Interval>,
    acks: Arc<AckSamples>,
    index: u32,
    run: RunId,
    fields: LiveFields,
    exchange: HistogramExchange,
    chunk: usize,
    queue_full_wait: Duration,
    stopping: Arc<AtomicBool>,
    #[cfg(feature = "test-hooks")]
    slow: Option<Duration>,
    #[cfg(feature = "test-hooks")]
    panic_after: Option<u64>,
    #[cfg(feature = "test-hooks")]
    fatal_after: Option<u64>,
    next_replace: Option<Instant>,
    bars: Option<super::bar_lane::BarLane>,
    popped: u64,
    produced: u64,
    dropped_queue_full: u64,
    dropped_produce_error: u64,
    queue_full_waits: u64,
    tiers: [TierTally; TIERS],
}

impl Publisher {
    /// A publisher over `rx` producing with `producer`; untiered (its ticks
    /// count as T0) until [`with_tier_rings`](Self::with_tier_rings).
    #[must_use]
    pub fn new(
        rx: TickRx,
        producer: TickProducer,
        chunk: usize,
        queue_full_wait: Duration,
        exchange: HistogramExchange,
    ) -> Self {
        Self {
            rx: vec![rx],
            acks: Arc::clone(producer.acks()),
            producer,
            batch: Batch::with_capacity(chunk.clamp(1, BATCH_MAX)),
            counters: Arc::new(PublisherCounters::default()),
            hist: Box::new(Interval::new()),
            index: 0,
            run: RunId::default(),
            fields: LiveFields::default(),
            exchange,
            chunk: chunk.max(1),
            queue_full_wait,
            stopping: Arc::new(AtomicBool::new(false)),
            #[cfg(feature = "test-hooks")]
            slow: None,
            #[cfg(feature = "test-hooks")]
            panic_after: None,
            #[cfg(feature = "test-hooks")]
            fatal_after: None,
            next_replace: None,
            bars: None,
            popped: 0,
            produced: 0,
            dropped_queue_full: 0,
            dropped_produce_error: 0,
            queue_full_waits: 0,
            tiers: [TierTally::default(); TIERS],
        }
    }

    /// Replaces the ring with one ring per tier, served T0 first: a chunk
    /// takes what T0's ring holds, then T1's, then T2's, up to the chunk
    /// size.
    #[must_use]
    pub fn with_tier_rings(mut self, rings: [TickRx; TIERS]) -> Self {
        self.rx = rings.into();
        self
    }

    /// Sets the run id every envelope carries.
    #[must_use]
    pub fn with_run(mut self, run: RunId) -> Self {
        self.run = run;
        self
    }

    /// Sets the cell of the field selection (default: its own, every part
    /// sent); read once per chunk.
    #[must_use]
    pub fn with_fields(mut self, fields: LiveFields) -> Self {
        self.fields = fields;
        self
    }

    /// Sets the index shown with this publisher's slow deliveries.
    #[must_use]
    pub fn with_index(mut self, index: u32) -> Self {
        self.index = index;
        self
    }

    /// Test hook (feature `test-hooks`): sleep this long after every chunk,
    /// to make this publisher slower than the feed.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    #[must_use]
    pub fn with_slowdown(mut self, per_chunk: Option<Duration>) -> Self {
        self.slow = per_chunk;
        self
    }

    /// Test hook (feature `test-hooks`): panic once this many ticks have
    /// been popped.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    #[must_use]
    pub fn with_panic_after(mut self, ticks: Option<u64>) -> Self {
        self.panic_after = ticks;
        self
    }

    /// Test hook (feature `test-hooks`): inject a fatal producer error once
    /// this many ticks have been popped.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    #[must_use]
    pub fn with_fatal_after(mut self, ticks: Option<u64>) -> Self {
        self.fatal_after = ticks;
        self
    }

    /// The flag that, once set, makes a full producer queue drop at once
    /// instead of waiting (set by [`Engine::stop`](super::Engine::stop)).
    #[must_use]
    pub fn stopping(&self) -> &Arc<AtomicBool> {
        &self.stopping
    }

    /// This publisher's counters.
    #[must_use]
    pub fn counters(&self) -> &Arc<PublisherCounters> {
        &self.counters
    }

    /// The producer (for its delivery counters).
    #[must_use]
    pub fn producer(&self) -> &TickProducer {
        &self.producer
    }

    /// Pops up to one chunk, encodes and enqueues every tick; returns how
    /// many ticks it took. The hot path: no allocation, no lock.
    ///
    /// # Panics
    /// Only through the test hook `with_panic_after` (feature `test-hooks`).
    pub fn publish_available(&mut self) -> usize {
        let Self {
            rx,
            producer,
            batch,
            hist,
            queue_full_wait,
            stopping,
            produced,
            dropped_queue_full,
            dropped_produce_error,
            queue_full_waits,
            tiers,
            bars,
            ..
        } = self;
        let run = self.run;
        // Once per chunk: a change applies from the next chunk, and one
        // chunk's records all carry the same parts.
        let fields = self.fields.load();
        if let Some(b) = bars.as_mut() {
            b.refresh_epochs();
        }
        let wait = if stopping.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            *queue_full_wait
        };
        let mut out = Enqueue {
            producer,
            hist: &mut hist.produce,
            wait,
            produced,
            dropped_queue_full,
            dropped_produce_error,
            queue_full_waits,
            tiers,
        };
        let mut n = 0;
        // NB: strict priority: T0's ring first, then T1's, then T2's, one
        // chunk in all; a lower tier waits while a higher one keeps the
        // publisher busy, which is the point (README, "Tiers").
        for (lane, rx) in rx.iter_mut().enumerate() {
            if n >= self.chunk {
                break;
            }
            let got = rx.pop_chunk(self.chunk - n, |ticks| {
                for t in ticks {
                    if batch.is_full() {
                        out.flush(batch);
                    }
                    let mut key = itoa::Buffer::new();
                    let key = key.format(t.token.0).as_bytes();
                    #[allow(clippy::cast_possible_truncation)] // lane < TIERS
                    let staged = batch.stage(key, t.ts_recv_ns, lane as u8, |buf| {
                        write_envelope_with(t, run, fields, buf).is_ok()
                    });
                    if !staged {
                        // Unreachable: the batch holds MAX_ENVELOPE_LEN per
                        // record. Counted and parked, not hidden.
                        out.refuse(lane, key, &[], ProduceError::Other(TOO_LARGE));
                    }
                    if let Some(b) = bars.as_mut() {
                        b.on_tick(
                            t,
                            Emit {
                                producer: out.producer,
                                run,
                                wait,
                            },
                        );
                    }
                }
            });
            out.tiers[lane].popped += got as u64;
            n += got;
        }
        out.flush(batch);
        if n > 0 {
            self.popped += n as u64;
            #[cfg(feature = "test-hooks")]
            if self.panic_after.is_some_and(|p| self.popped >= p) {
                panic!("test hook: publisher panic after {} ticks", self.popped);
            }
            #[cfg(feature = "test-hooks")]
            if self.fatal_after.is_some_and(|p| self.popped >= p) {
                self.fatal_after = None;
                self.producer.inject_fatal();
            }
            self.store_counters();
            if let Some(b) = &self.bars {
                b.store_counters();
            }
            #[cfg(feature = "test-hooks")]
            if let Some(d) = self.slow {
                std::thread::sleep(d);
            }
        }
        n
    }

    /// Publishes this thread's counts (`Relaxed` stores of single-writer
    /// totals; readers want an eventually current value, nothing more).
    fn store_counters(&self) {
        let c = &self.counters;
        c.popped.store(self.popped, Ordering::Relaxed);
        c.produced.store(self.produced, Ordering::Relaxed);
        c.dropped_queue_full
            .store(self.dropped_queue_full, Ordering::Relaxed);
        c.dropped_produce_error
            .store(self.dropped_produce_error, Ordering::Relaxed);
        c.queue_full_waits
            .store(self.queue_full_waits, Ordering::Relaxed);
        for (t, c) in self.tiers.iter().zip(&c.by_tier) {
            c.popped.store(t.popped, Ordering::Relaxed);
            c.produced.store(t.produced, Ordering::Relaxed);
            c.dropped_queue_full
                .store(t.dropped_queue_full, Ordering::Relaxed);
            c.dropped_produce_error
                .store(t.dropped_produce_error, Ordering::Relaxed);
        }
    }

    /// Moves the delivery reports' receive → ack samples served by the last
    /// `poll` into the interval histogram and the slowest-deliveries list.
    #[inline]
    fn drain_acks(&mut self) {
        let Self {
            acks, hist, index, ..
        } = self;
        // The slowest record of each poll's batch goes to the slow list
        // (one entry per acknowledged batch, not hundreds from one).
        let mut worst: Option<(u64, super::kafka::AckSample)> = None;
        let n = acks.drain(|a, _| {
            let d = a.ack_ns.saturating_sub(a.recv_ns).max(1);
            hist.ack.saturating_record(d);
            if worst.is_none_or(|(w, _)| d > w) {
                worst = Some((d, a));
            }
        });
        if let Some((d, a)) = worst {
            #[allow(clippy::cast_possible_truncation)]
            hist.slow.offer(SlowAck {
                duration_ns: d,
                at_ns: a.ack_ns,
                partition: a.partition,
                instrument: a.instrument,
                dr_batch: n.min(u32::MAX as usize) as u32,
                publisher: *index,
            });
        }
    }

    /// Serves delivery reports without waiting, then takes their samples.
    #[inline]
    fn poll_now(&mut self) {
        self.producer.poll(Duration::ZERO);
        self.drain_acks();
    }

    /// A fatal producer error (idempotent producer fenced, sequence desync)
    /// makes the producer useless: replace it, parking what it held, and go
    /// on. A replacement that cannot be created is retried once a second;
    /// meanwhile every produce fails and is parked (counted).
    #[cold]
    fn replace_producer(&mut self) {
        let now = Instant::now();
        if self.next_replace.is_some_and(|t| now < t) {
            return;
        }
        let why = self
            .producer
            .fatal_error()
            .unwrap_or_else(|| "fatal error".to_owned());
        match self.producer.replace() {
            Ok(()) => {
                self.next_replace = None;
                tracing::error!(
                    "publisher {}: the Kafka producer hit a fatal error ({why}); replaced it \
                     with a new one, and parked what it held (`dlq requeue` republishes it)",
                    self.index
                );
            }
            Err(e) => {
                self.next_replace = Some(now + Duration::from_secs(1));
                tracing::error!(
                    "publisher {}: the Kafka producer hit a fatal error ({why}) and a new one \
                     cannot be created ({e}); records are parked until it can",
                    self.index
                );
            }
        }
    }

    /// Hands the interval histogram to the ops side when it has returned an
    /// empty one; otherwise keeps accumulating.
    fn exchange_histogram(&mut self) {
        if self.hist.is_empty() || self.exchange.full.is_full() {
            return;
        }
        if let Ok(mut spare) = self.exchange.empty.pop() {
            spare.reset();
            std::mem::swap(&mut spare, &mut self.hist);
            // Cannot fail: checked `is_full` above and we are the only producer.
            let _ = self.exchange.full.push(spare);
        }
    }

    /// The publisher loop: runs until the ring is abandoned (the network
    /// thread stopped) and drained, then flushes the producer for at most
    /// `flush_timeout`. Returns the histogram of what was not yet exchanged.
    pub fn run(mut self, idle: IdlePolicy, wake: &Wake, flush_timeout: Duration) -> Report {
        let mut next_exchange = Instant::now() + Duration::from_millis(200);
        loop {
            let n = self.publish_available();
            self.sweep_bars(false);
            self.poll_now();
            if self.producer.check_fatal() {
                self.replace_producer();
            }
            let now = Instant::now();
            if now >= next_exchange {
                self.exchange_histogram();
                next_exchange = now + Duration::from_millis(200);
            }
            if n > 0 {
                continue;
            }
            if self.rx.iter().all(|rx| rx.is_abandoned() && rx.is_empty()) {
                break;
            }
            // Idle: serve a few more delivery-report events (rdkafka's
            // `poll` serves at most one per call).
            for _ in 0..4 {
                self.poll_now();
            }
            // `fsync = "interval"` holds even when no further record comes:
            // a cheap check when nothing is due (no allocation, no syscall).
            self.producer.spool().sync_if_due();
            match idle {
                IdlePolicy::Spin => std::hint::spin_loop(),
                IdlePolicy::Park => {
                    // Woken by the network thread after a push; the timeout
                    // keeps delivery reports served while idle.
                    let rx = &self.rx;
                    wake.park_unless(
                        || rx.iter().any(|rx| !rx.is_empty() || rx.is_abandoned()),
                        Duration::from_millis(5),
                    );
                }
            }
        }
        self.sweep_bars(true);
        let flushed = self.producer.flush(flush_timeout).is_ok();
        self.drain_acks();
        let Self {
            producer,
            hist,
            counters,
            ..
        } = self;
        let delivery = Arc::clone(producer.counters());
        let spool = Arc::clone(producer.spool());
        // Dropping the producer purges anything still queued and serves those
        // reports (each parked), so every record is accounted for before we
        // return.
        drop(producer);
        spool.close();
        Report {
            hist,
            flushed,
            counters,
            delivery,
        }
    }
}

/// What a publisher thread hands back when it ends.
#[derive(Debug)]
pub struct Report {
    /// Latency samples not yet exchanged.
    pub hist: Box<Interval>,
    /// Whether the final flush completed before its deadline.
    pub flushed: bool,
    /// Final counters.
    pub counters: Arc<PublisherCounters>,
    /// Final delivery counters.
    pub delivery: Arc<super::kafka::DeliveryCounters>,
}

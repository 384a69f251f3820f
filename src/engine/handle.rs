//! One publisher as the engine sees it from outside: the shared counters of
//! its ring, thread, producer and spool, its histogram exchange, its stop
//! flag and its thread. Built and spawned on the caller's thread by
//! [`spawn_publishers`]; read by the ops side ([`Engine`](super::Engine)).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use super::config::{EngineConfig, EngineError};
use super::kafka::{AckSamples, DeliveryCounters, TickProducer};
use super::publish::{HistogramExchange, Interval, Publisher, PublisherCounters, Report};
use super::wake::Wake;
use crate::fields::LiveFields;
use crate::ring::{RingCounters, TickTx, tick_ring};
use crate::spool::Spool;
use crate::tier::{TIERS, TierMap};

/// Everything the ops side holds of one publisher.
#[derive(Debug)]
pub(crate) struct PublisherHandle {
    /// Each tier's ring's push/drop counters, T0 first (written by the
    /// network thread).
    pub(crate) rings: [Arc<RingCounters>; TIERS],
    /// The publisher thread's counters.
    pub(crate) counters: Arc<PublisherCounters>,
    /// The producer's delivery-report counters.
    pub(crate) delivery: Arc<DeliveryCounters>,
    /// Receive → ack samples not yet merged.
    pub(crate) acks: Arc<AckSamples>,
    /// The dead-letter spool this publisher parks into.
    pub(crate) spool: Arc<Spool>,
    /// Histograms handed over by the publisher (full ones in).
    pub(crate) full: rtrb::Consumer<Box<Interval>>,
    /// Histograms handed back (empty ones out).
    pub(crate) empty: rtrb::Producer<Box<Interval>>,
    /// Set by [`Engine::stop`](super::Engine::stop): a full producer queue
    /// drops at once instead of waiting.
    pub(crate) stopping: Arc<AtomicBool>,
    /// The bar counters, when bars are on.
    pub(crate) bars: Option<Arc<super::bar_lane::BarCounters>>,
    /// The thread; `None` once joined.
    pub(crate) thread: Option<JoinHandle<Option<Report>>>,
}

impl PublisherHandle {
    /// Tells the publisher the engine is stopping (`Relaxed`: the flag
    /// orders nothing; the publisher polls it per tick while draining).
    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}

/// What [`spawn_publishers`] returns: the ring producers for the network
/// thread, the handles for the ops side, and the wake flags of the
/// publishers' threads.
pub(crate) type Spawned = (
    Vec<[TickTx; TIERS]>,
    Vec<PublisherHandle>,
    Vec<(Arc<Wake>, Thread)>,
    Vec<crate::bars::BarRx>,
);

/// Creates each publisher's rings (one per tier, sized by
/// [`EngineConfig::tier_capacities`]), spool and producer, and spawns its
/// thread (pinned when configured). A panic in a publisher is caught and
/// recorded in `panics`. Every publisher reads its field selection from
/// `fields`; its producer counts deliveries in the tier `tiers` gives.
///
/// # Errors
/// A producer that cannot be created, or a thread that cannot be spawned.
pub(crate) fn spawn_publishers(
    cfg: &EngineConfig,
    panics: &Arc<Mutex<Vec<String>>>,
    spool_total: &Arc<AtomicU64>,
    fields: &LiveFields,
    tiers: &Arc<TierMap>,
    conns: &[Arc<super::net::ConnStats>],
) -> Result<Spawned, EngineError> {
    let caps = cfg.tier_capacities(tiers);
    let flush = Duration::from_millis(u64::from(cfg.kafka.flush_timeout_ms));
    let queue_full_wait = Duration::from_millis(u64::from(cfg.kafka.queue_full_wait_ms));
    // Every producer first: a failure leaves no thread behind.
    let mut built = Vec::new();
    let mut txs = Vec::new();
    let mut bar_feeds = Vec::new();
    let bars = &cfg.bars;
    // Each publisher's book holds its share of the universe's capacity,
    // with room for an uneven hash (README, "Bars").
    let book_room = (cfg.max_connections.max(1) * cfg.max_per_connection.max(1))
        .div_ceil(cfg.publishers.max(1))
        .saturating_mul(5)
        / 4
        + 64;
    for i in 0..cfg.publishers {
        let [(t0, r0, c0), (t1, r1, c1), (t2, r2, c2)] = caps.map(tick_ring);
        let (tx, rx, rings) = ([t0, t1, t2], [r0, r1, r2], [c0, c1, c2]);
        let spool = Arc::new(Spool::new(cfg.spool.clone(), i, Arc::clone(spool_total)));
        let producer = TickProducer::new_tiered(
            &cfg.kafka,
            &format!("panda-feed-pub{i}"),
            Arc::clone(&spool),
            Arc::clone(tiers),
        )
        .map_err(|e| EngineError::Kafka(cfg.kafka.redact(&e.to_string())))?;
        let producer = if bars.enabled {
            producer
                .with_bars_topic(&bars.topic)
                .map_err(|e| EngineError::Kafka(cfg.kafka.redact(&e.to_string())))?
        } else {
            producer
        };
        let (full_tx, full) = rtrb::RingBuffer::new(1);
        let (mut empty, empty_rx) = rtrb::RingBuffer::new(1);
        // One spare so the first exchange can happen (the ring has room: it
        // was just made with one slot).
        let _ = empty.push(Box::new(Interval::new()));
        let exchange = HistogramExchange {
            full: full_tx,
            empty: empty_rx,
        };
        // The placeholder ring is replaced by the tier rings at once.
        let publisher = Publisher::new(
            tick_ring(0).1,
            producer,
            cfg.publish_chunk,
            queue_full_wait,
            exchange,
        )
        .with_tier_rings(rx)
        .with_index(u32::try_from(i).unwrap_or(u32::MAX))
        .with_run(cfg.run_id)
        .with_fields(fields.clone());
        let publisher = if bars.enabled {
            let (tx, rx) = rtrb::RingBuffer::new(bars.handoff.max(1));
            bar_feeds.push(rx);
            let grace = u64::try_from(bars.grace.as_nanos()).unwrap_or(u64::MAX);
            let book =
                crate::bars::BarBook::new(book_room, grace, bars.clock, bars.calendar.clone());
            publisher.with_bars(super::bar_lane::BarLane::new(book, tx, conns.to_vec()))
        } else {
            publisher
        };
        #[cfg(feature = "test-hooks")]
        let publisher = publisher
            .with_slowdown(
                cfg.test_slow_publisher
                    .filter(|(p, _)| *p == i)
                    .map(|x| x.1),
            )
            .with_panic_after(
                cfg.test_panic_publisher
                    .filter(|(p, _)| *p == i)
                    .map(|x| x.1),
            )
            .with_fatal_after(
                cfg.test_fatal_publisher
                    .filter(|(p, _)| *p == i)
                    .map(|x| x.1),
            );
        let handle = PublisherHandle {
            rings,
            counters: Arc::clone(publisher.counters()),
            delivery: Arc::clone(publisher.producer().counters()),
            acks: Arc::clone(publisher.producer().acks()),
            spool,
            full,
            empty,
            stopping: Arc::clone(publisher.stopping()),
            bars: publisher.bar_counters().cloned(),
            thread: None,
        };
        txs.push(tx);
        built.push((publisher, handle));
    }
    let (mut handles, mut wakes) = (Vec::new(), Vec::new());
    for (i, (publisher, mut handle)) in built.into_iter().enumerate() {
        let wake = Arc::new(Wake::default());
        let w = Arc::clone(&wake);
        let core = cfg.publisher_cores.get(i).copied();
        let idle = cfg.idle;
        let panics = Arc::clone(panics);
        let thread = std::thread::Builder::new()
            .name(format!("publisher-{i}"))
            .spawn(move || {
                super::pin(core, "a publisher");
                // Unwinding drops the producer, whose purge parks what it
                // held; the panic is recorded, never silent.
                super::guarded(&panics, &format!("publisher {i}"), move || {
                    publisher.run(idle, &w, flush)
                })
            })
            .map_err(|e| EngineError::Io(format!("spawn publisher: {e}")))?;
        wakes.push((wake, thread.thread().clone()));
        handle.thread = Some(thread);
        handles.push(handle);
    }
    Ok((txs, handles, wakes, bar_feeds))
}

//! The engine: a pinned network thread feeding bounded SPSC rings, drained by
//! pinned publisher threads into Kafka (`docs/ARCHITECTURE.md`).
//!
//! ```text
//! network thread ──route by instrument──▶ ring i ──▶ publisher i ──▶ Kafka
//!   (net/, route.rs)                    (ring.rs)   (publish.rs, kafka.rs)
//! ```
//!
//! Ownership: the network thread owns the sockets and the ring producers;
//! each publisher owns its ring consumer, producer, buffer and histogram. The
//! caller's thread (the ops side) owns the [`Engine`] handle and reads the
//! counters, which are single-writer atomics. Accounting, at every instant:
//! every received tick is in flight (ring, publisher, producer queue),
//! published (delivery confirmed), parked, or dropped with a counted reason.
//! [`Engine::stop`] drains everything and checks that identity exactly.

pub mod bar_lane;
mod config;
mod counts;
mod handle;
pub mod kafka;
pub mod latency;
pub mod net;
pub mod orders;
pub mod publish;
pub mod route;
pub mod wake;

pub use crate::config::{IdlePolicy, Supervision};
pub use crate::secret::Secret;
pub use config::{EngineConfig, EngineError};
pub use counts::{
    BarCounts, ConnCounts, Counts, DropReasons, Failures, LatencySummary, Pending, PendingCounts,
    PublisherCountsOut, Summary, TierCounts,
};

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use handle::PublisherHandle;
use net::{ConnSpec, ConnStats, Credentials, Desired, Net, NetConfig, NetStopper, SubsHandoff};
use publish::{Interval, SLOW_N, SlowAck, latency_histogram};
use route::Router;

use crate::fields::{FieldSelection, LiveFields};
use crate::run_id::RunId;

/// A running engine. Drop without [`stop`](Self::stop) stops it without a
/// summary.
#[derive(Debug)]
pub struct Engine {
    conns: Vec<Arc<ConnStats>>,
    pubs: Vec<PublisherHandle>,
    total: Histogram<u64>,
    interval: Histogram<u64>,
    ack_total: Histogram<u64>,
    slow: Vec<SlowAck>,
    spool_bytes: Arc<AtomicU64>,
    stopper: NetStopper,
    subs: Arc<SubsHandoff>,
    orders: Option<orders::OrderPath>,
    creds: Arc<Credentials>,
    net: Option<JoinHandle<()>>,
    panics: Arc<Mutex<Vec<String>>>,
    started: Instant,
    run_id: RunId,
    spool_dir: std::path::PathBuf,
    spool_recounted: Instant,
    fields: LiveFields,
    bar_feeds: Vec<crate::bars::BarRx>,
    tiers: Arc<crate::tier::TierMap>,
    last_ticks: Arc<crate::slo::LastTicks>,
}

/// `engine.mlockall`, once the rings and threads exist; a failure is a
/// warning (tuning/README.md, "Memory locking").
fn lock_memory() {
    match crate::sys::mem::lock_all() {
        Ok(crate::sys::mem::Locked::All) => {
            tracing::info!("engine.mlockall: all memory locked, now and later");
        }
        Ok(crate::sys::mem::Locked::Current { limit }) => tracing::warn!(
            "engine.mlockall: locked the memory mapped at start only: RLIMIT_MEMLOCK is \
             {limit} bytes, and locking later mappings too would make any allocation past it \
             fail; set LimitMEMLOCK=infinity (tuning/panda-feed.service) to lock everything"
        ),
        Err(e) => tracing::warn!("{e}"),
    }
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
    pub fn start(mut cfg: EngineConfig) -> Result<Self, EngineError> {
        if cfg.run_id == RunId::default() {
            cfg.run_id = RunId::generate();
        }
        let mut problems = cfg.problems();
        let shards = route::shard(
            &cfg.instruments,
            cfg.max_per_connection,
            cfg.max_connections,
        )
        .unwrap_or_else(|e| {
            problems.push(e);
            Vec::new()
        });
        if !problems.is_empty() {
            return Err(EngineError::Config(problems));
        }
        let spool_bytes = Arc::new(AtomicU64::new(crate::spool::dir_bytes(&cfg.spool.dir)));
        let panics: Arc<Mutex<Vec<String>>> = Arc::default();
        let fields = LiveFields::new(cfg.fields);
        let tiers = Arc::new(cfg.tier_map());
        let creds = Arc::new(Credentials::new(
            cfg.api_key.clone(),
            cfg.access_token.clone(),
        ));
        // Every connection slot exists from the start; the ones beyond the
        // initial shards are idle until a live change fills them.
        let specs: Vec<ConnSpec> = shards
            .into_iter()
            .map(|mut tokens| {
                tokens.sort_unstable_by_key(|t| t.0);
                ConnSpec { tokens }
            })
            .chain(std::iter::repeat_with(|| ConnSpec { tokens: Vec::new() }))
            .take(cfg.max_connections.max(1))
            .collect();
        let conns = net::new_stats(&cfg.ws_url, &specs);
        let (txs, pubs, wakes, bar_feeds) =
            handle::spawn_publishers(&cfg, &panics, &spool_bytes, &fields, &tiers, &conns)?;
        let subs = Arc::new(SubsHandoff::default());
        let (orders, orders_tx) = if cfg.kafka.orders_topic.is_empty() {
            (None, None)
        } else {
            let (path, tx) = orders::OrderPath::start(
                orders::OrderSettings {
                    kafka: cfg.kafka.clone(),
                    spool: cfg.spool.clone(),
                    spool_id: cfg.publishers,
                    run: cfg.run_id,
                },
                &spool_bytes,
            )
            .map_err(EngineError::Kafka)?;
            (Some(path), Some(tx))
        };
        let last_ticks = slo_table(&cfg);
        let (net, stopper) = Net::new(
            &creds,
            specs,
            &conns,
            Router::tiered(txs, Arc::clone(&tiers)).with_last_ticks(Arc::clone(&last_ticks)),
            wakes,
            NetConfig {
                idle: cfg.idle,
                subscribe_chunk: cfg.subscribe_chunk,
                read_buffer_size: cfg.read_buffer_size,
                max_message_size: cfg.max_message_size,
                max_text_frame_bytes: cfg.max_text_frame_bytes,
                supervision: cfg.supervision,
                max_per_connection: cfg.max_per_connection,
                overflow: cfg.overflow,
                block_max: cfg.block_max,
                #[cfg(feature = "test-hooks")]
                test_slow_resolver: cfg.test_slow_resolver,
            },
            net::Links {
                subs: Arc::clone(&subs),
                orders: orders_tx,
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
        if cfg.mlockall {
            lock_memory();
        }
        Ok(Self {
            conns,
            pubs,
            total: latency_histogram(),
            interval: latency_histogram(),
            ack_total: latency_histogram(),
            slow: Vec::new(),
            spool_bytes,
            stopper,
            subs,
            orders,
            creds,
            net: Some(net),
            panics,
            started: Instant::now(),
            run_id: cfg.run_id,
            spool_dir: cfg.spool.dir,
            spool_recounted: Instant::now(),
            fields,
            bar_feeds,
            tiers,
            last_ticks,
        })
    }

    /// Collects the histograms the publishers have handed over.
    fn collect_histograms(&mut self) {
        for i in 0..self.pubs.len() {
            while let Ok(h) = self.pubs[i].full.pop() {
                self.absorb(&h);
                // Room: the publisher took the spare before handing this one
                // over, and the ring has one slot.
                let _ = self.pubs[i].empty.push(h);
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
        // The spool's cap and gauge follow the disk, so space freed by
        // `dlq purge`/`requeue` from another process counts again within one
        // sample (a readdir; at most every 250 ms however often this is
        // called).
        if self.spool_recounted.elapsed() >= Duration::from_millis(250) {
            self.spool_recounted = Instant::now();
            crate::spool::recount(&self.spool_dir, &self.spool_bytes);
        }
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

    /// Hands a desired subscription state to the network thread, which
    /// applies the difference on its next turn (README, "Live
    /// subscriptions"); [`subscriptions_applied`](Self::subscriptions_applied)
    /// reports `d.version` once it has.
    pub fn set_subscriptions(&self, d: Desired) {
        self.subs.request(d);
        self.stopper.wake();
    }

    /// The desired-state version the network thread applied last (0 before
    /// the first live change).
    #[must_use]
    pub fn subscriptions_applied(&self) -> u64 {
        self.subs.applied()
    }

    /// Each connection slot's subscriptions as applied, `(token, mode)`
    /// sorted by token (empty for an idle slot).
    #[must_use]
    pub fn connection_subscriptions(&self) -> Vec<Arc<Vec<(u32, crate::tick::Mode)>>> {
        self.conns
            .iter()
            .map(|c| c.subscriptions.load_full())
            .collect()
    }

    /// A reader of what is not flushed yet, for another thread to use while
    /// [`stop`](Self::stop) drains.
    #[must_use]
    pub fn pending(&self) -> Pending {
        Pending::of(&self.pubs)
    }

    /// Replaces the optional tick parts published (`[fields]`): live, lock-
    /// and allocation-free; each publisher applies it from its next chunk,
    /// so records already encoded (in the producer queue or the spool) keep
    /// the parts they were encoded with.
    pub fn set_fields(&self, fields: FieldSelection) {
        self.fields.store(fields);
    }

    /// The optional tick parts being published.
    #[must_use]
    pub fn fields(&self) -> FieldSelection {
        self.fields.load()
    }

    /// The ops side's ends of the publishers' bar hand-offs (one per
    /// publisher), once: later calls return none. Each [`Bar`](crate::bars::Bar)
    /// a publisher closes is also pushed here (full = dropped from the
    /// hand-off, counted; the Kafka record is unaffected). Dropping the
    /// returned ends stops the pushes: an abandoned hand-off is skipped.
    pub fn take_bar_feeds(&mut self) -> Vec<crate::bars::BarRx> {
        std::mem::take(&mut self.bar_feeds)
    }

    /// Each token's tier (fixed for the run).
    #[must_use]
    pub fn tier_map(&self) -> &crate::tier::TierMap {
        &self.tiers
    }

    /// The last-tick table the SLO monitor reads (README, "SLO
    /// monitoring").
    #[must_use]
    pub fn last_ticks(&self) -> &crate::slo::LastTicks {
        &self.last_ticks
    }

    /// This run's id, carried in every envelope.
    #[must_use]
    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    fn build_counts(&self, interval: LatencySummary) -> Counts {
        Counts {
            latency_ns: LatencySummary::of(&self.total),
            ack_latency_ns: LatencySummary::of(&self.ack_total),
            spool_bytes: self.spool_bytes.load(Relaxed),
            ack_samples_dropped: self.pubs.iter().map(|p| p.acks.dropped.load(Relaxed)).sum(),
            latency_interval_ns: interval,
            uptime_s: self.started.elapsed().as_secs_f64(),
            orders: self
                .orders
                .as_ref()
                .map(orders::OrderPath::counts)
                .unwrap_or_default(),
            fields: self.fields.load(),
            ..counts::tally(&self.conns, &self.pubs)
        }
    }

    /// Stops gracefully: stop reading, let the publishers drain their rings
    /// and flush (each within the Kafka flush timeout), and account for every
    /// tick. Returns the final summary.
    pub fn stop(mut self) -> Summary {
        self.stopper.stop();
        if let Some(h) = self.net.take() {
            let _ = h.join();
        }
        // Draining must end: a full producer queue now drops (counted)
        // instead of waiting per tick.
        for p in &self.pubs {
            p.set_stopping();
        }
        let mut flushed = true;
        for i in 0..self.pubs.len() {
            let Some(h) = self.pubs[i].thread.take() else {
                continue;
            };
            if let Ok(Some(report)) = h.join() {
                self.absorb(&report.hist);
                flushed &= report.flushed;
            } else {
                // Panicked: recorded in `panics` by `guarded`.
                flushed = false;
            }
        }
        // The network thread has dropped its end of the order ring: the
        // `orders` thread publishes what is left and flushes.
        let orders_flushed = self.orders.as_mut().is_none_or(orders::OrderPath::stop);
        flushed &= orders_flushed;
        let thread_errors = self.thread_panics();
        self.collect_histograms();
        let counts = self.build_counts(LatencySummary::default());
        let o = counts.orders;
        let orders_hold = o.received == o.published + o.parked + o.dropped && o.in_flight == 0;
        Summary {
            run_id: self.run_id,
            identity_holds: counts::identity_holds(&counts, &self.pubs, !thread_errors.is_empty())
                && orders_hold,
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
        for p in &mut self.pubs {
            if let Some(h) = p.thread.take() {
                let _ = h.join();
            }
        }
    }
}

/// The SLO monitor's last-tick table, sized for the universe's capacity
/// (`max_connections × max_per_connection`), holding the first instruments
/// from now (their time counts from their subscription).
fn slo_table(cfg: &EngineConfig) -> Arc<crate::slo::LastTicks> {
    let t = crate::slo::LastTicks::with_capacity(
        cfg.max_connections.saturating_mul(cfg.max_per_connection),
    );
    let mut first: Vec<u32> = cfg.instruments.iter().map(|i| i.0).collect();
    first.sort_unstable();
    first.dedup();
    t.sync(&[], &first, crate::clock::now_ns());
    Arc::new(t)
}

/// Runs `f`, recording a panic as "`what` panicked: message".
fn guarded<T>(panics: &Mutex<Vec<String>>, what: &str, f: impl FnOnce() -> T) -> Option<T> {
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

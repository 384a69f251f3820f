//! The Kafka side of a publisher: the producer, the allocation-free produce
//! call and delivery-report accounting. Runs on the publisher thread that
//! owns the producer (delivery callbacks run inside its `poll`); the ops side
//! reads the counters.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;

pub use crate::config::KafkaConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer as _, ProducerContext};

/// Delivery-report and client-error counters of one publisher's producer.
/// Written by the publisher thread only (delivery callbacks run inside its
/// `poll`); read by anyone with `Relaxed` loads.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// Records whose delivery the broker confirmed.
    pub delivered: CachePadded<AtomicU64>,
    /// Records that failed delivery (timeout, fatal broker error); each is
    /// parked in the spool (or dropped, counted, when the spool cannot take it).
    pub failed: CachePadded<AtomicU64>,
    /// Records purged undelivered at shutdown, after the flush deadline;
    /// parked like failures.
    pub purged: CachePadded<AtomicU64>,
    /// Client-level errors librdkafka reported (e.g. all brokers down).
    pub client_errors: AtomicU64,
    /// Fatal producer errors (idempotent producer fenced, sequence desync):
    /// each one replaced the producer (see [`TickProducer::replace`]).
    pub fatal_errors: AtomicU64,
    /// Set by the error callback on any client error, so the publisher asks
    /// librdkafka whether it was fatal (`rdkafka` reports a fatal error as
    /// its underlying code, so the callback alone cannot tell).
    pub error_seen: AtomicBool,
    /// Set once librdkafka reports a fatal error, cleared once the producer
    /// is replaced. Both flags are written and read by the publisher thread
    /// only (callbacks run inside its `poll`), so `Relaxed` suffices.
    pub fatal: AtomicBool,
    /// The latest client error or delivery failure, for status and summary.
    pub last_error: Mutex<Option<String>>,
    /// Per tier: `[delivered, failed, purged]`, as above.
    pub by_tier: [[AtomicU64; 3]; crate::tier::TIERS],
    /// Bars (`bars.topic`): `[delivered, failed, purged]`, counted here
    /// only, not above, so the ticks' identity stays the ticks' own.
    pub bars: [AtomicU64; 3],
}

/// Receive → broker-ack samples, written by delivery callbacks and drained
/// by the same publisher thread right after each `poll` (callbacks run inside
/// it). Atomics only to make the context `Sync`; a fixed buffer, so the
/// callback never allocates. A full buffer drops the sample (a latency
/// sample, not a tick) and counts it.
#[derive(Debug)]
pub struct AckSamples {
    // Per slot: receive ns, ack ns, partition << 32 | instrument token.
    slots: Box<[[AtomicU64; 3]]>,
    len: AtomicUsize,
    /// Samples dropped because the buffer was full between two drains.
    pub dropped: AtomicU64,
}

/// One acknowledged record, as drained from [`AckSamples`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckSample {
    /// Receive time, ns since the epoch.
    pub recv_ns: u64,
    /// Delivery-report time, ns since the epoch.
    pub ack_ns: u64,
    /// Partition the record landed in.
    pub partition: i32,
    /// Instrument token (the record key).
    pub instrument: u32,
}

impl DeliveryCounters {
    /// The latest Kafka error, if any (ops side).
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl AckSamples {
    /// Room for `capacity` samples between drains.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: (0..capacity.max(1))
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            len: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    #[inline]
    fn push(&self, recv_ns: u64, ack_ns: u64, partition: i32, instrument: u32) {
        let i = self.len.load(Ordering::Relaxed);
        let Some(slot) = self.slots.get(i) else {
            bump(&self.dropped);
            return;
        };
        slot[0].store(recv_ns, Ordering::Relaxed);
        slot[1].store(ack_ns, Ordering::Relaxed);
        #[allow(clippy::cast_sign_loss)] // bit packing, undone in `drain`
        slot[2].store(
            (u64::from(partition as u32) << 32) | u64::from(instrument),
            Ordering::Relaxed,
        );
        self.len.store(i + 1, Ordering::Relaxed);
    }

    /// Hands every buffered sample to `f` and empties the buffer; returns
    /// how many there were. Call only from the thread that polls.
    #[inline]
    pub fn drain(&self, mut f: impl FnMut(AckSample, usize)) -> usize {
        let n = self.len.load(Ordering::Relaxed);
        for slot in &self.slots[..n] {
            let meta = slot[2].load(Ordering::Relaxed);
            #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
            f(
                AckSample {
                    recv_ns: slot[0].load(Ordering::Relaxed),
                    ack_ns: slot[1].load(Ordering::Relaxed),
                    partition: (meta >> 32) as u32 as i32,
                    instrument: meta as u32,
                },
                n,
            );
        }
        self.len.store(0, Ordering::Relaxed);
        n
    }
}

/// The instrument token of a record key (decimal ASCII), without allocating.
#[inline]
fn key_token(key: &[u8]) -> u32 {
    key.iter().fold(0u32, |acc, b| {
        acc.wrapping_mul(10)
            .wrapping_add(u32::from(b.wrapping_sub(b'0')))
    })
}

/// Set in a bar record's opaque (next to its end time, far below 2^63 ns)
/// so its delivery report is counted as a bar's.
pub const BAR_OPAQUE: u64 = 1 << 63;

/// Delivery reports buffered between two drains before samples are dropped.
const ACK_SAMPLES: usize = 16_384;

// The receive time travels as the produce call's pointer-sized opaque.
const _: () = assert!(
    usize::BITS == 64,
    "panda-feed needs a 64-bit target (ns timestamps travel as pointer-sized opaques)"
);

fn bump(c: &AtomicU64) {
    // Single writer: a load + store is enough and avoids a locked RMW.
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The producer context: counts every delivery report and parks every
/// record that was not delivered in the dead-letter spool.
#[derive(Debug)]
pub struct Ctx {
    counters: Arc<DeliveryCounters>,
    spool: Arc<crate::spool::Spool>,
    acks: Arc<AckSamples>,
    tiers: Arc<crate::tier::TierMap>,
}

impl ClientContext for Ctx {
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _log_message: &str) {
        // librdkafka's log lines duplicate what `error` reports; errors are
        // counted and shown in the status line and summary instead.
    }

    fn error(&self, error: KafkaError, reason: &str) {
        bump(&self.counters.client_errors);
        // Was it fatal? The publisher asks librdkafka on its next turn
        // (`TickProducer::check_fatal`).
        self.counters.error_seen.store(true, Ordering::Relaxed);
        let mut last = self
            .counters
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = Some(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Ctx {
    /// The tick's receive time (ns since the epoch), set by the produce call.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, recv_ns: usize) {
        use rdkafka::Message as _;
        if recv_ns as u64 & BAR_OPAQUE != 0 {
            self.bar_delivery(result);
            return;
        }
        let key = match result {
            Ok(m) => m.key(),
            Err((_, m)) => m.key(),
        };
        let tier = self.tiers.tier_of(key_token(key.unwrap_or_default()));
        let by_tier = &self.counters.by_tier[tier.index()];
        match result {
            Ok(msg) => {
                bump(&self.counters.delivered);
                bump(&by_tier[0]);
                self.acks.push(
                    recv_ns as u64,
                    crate::clock::now_ns(),
                    msg.partition(),
                    key_token(msg.key().unwrap_or_default()),
                );
            }
            Err((e, msg)) => {
                let purge = matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                );
                let error = match e.rdkafka_error_code() {
                    _ if purge && self.counters.fatal.load(Ordering::Relaxed) => {
                        bump(&self.counters.failed);
                        bump(&by_tier[1]);
                        "producer replaced after a fatal error; record purged undelivered"
                            .to_owned()
                    }
                    _ if purge => {
                        bump(&self.counters.purged);
                        bump(&by_tier[2]);
                        "undelivered at shutdown (flush deadline passed)".to_owned()
                    }
                    _ => {
                        bump(&self.counters.failed);
                        bump(&by_tier[1]);
                        let why = format!("delivery failed: {e}");
                        *self
                            .counters
                            .last_error
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why.clone());
                        why
                    }
                };
                self.spool.park_tiered(
                    tier,
                    msg.topic(),
                    msg.key().unwrap_or_default(),
                    msg.payload().unwrap_or_default(),
                    &error,
                    // A timed-out record may still have been written by a
                    // stalled broker: `dlq requeue` looks those up first.
                    raw::persisted(msg),
                );
            }
        }
    }
}

impl Ctx {
    /// A bar record's delivery report: counted in
    /// [`DeliveryCounters::bars`]; a failed one is parked as a bar.
    #[cold]
    fn bar_delivery(&self, result: &DeliveryResult<'_>) {
        use rdkafka::Message as _;
        let c = &self.counters.bars;
        let (e, msg) = match result {
            Ok(_) => {
                bump(&c[0]);
                return;
            }
            Err((e, msg)) => (e, msg),
        };
        let purge = matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
        );
        let why = if purge && !self.counters.fatal.load(Ordering::Relaxed) {
            bump(&c[2]);
            "undelivered at shutdown (flush deadline passed)".to_owned()
        } else {
            bump(&c[1]);
            format!("delivery failed: {e}")
        };
        self.spool.park_bar(
            msg.topic(),
            msg.key().unwrap_or_default(),
            msg.payload().unwrap_or_default(),
            &why,
            raw::persisted(msg),
        );
    }
}

/// Why a record was not enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceError {
    /// The producer queue is full (`queue.buffering.max.messages`); poll and retry.
    QueueFull,
    /// Any other librdkafka error (e.g. the record is too large).
    Other(RDKafkaErrorCode),
}

/// One publisher's producer, bound to its topic.
pub struct TickProducer {
    // Field order is drop order: the topic handle must be destroyed before
    // its client. `BaseProducer`'s own drop then purges what is left and
    // serves the purge reports (counted as `purged`).
    topic: raw::Topic,
    /// `bars.topic`, when bars are on.
    bars_topic: Option<(raw::Topic, String)>,
    producer: BaseProducer<Ctx>,
    counters: Arc<DeliveryCounters>,
    topic_name: String,
    /// `kafka.sink = "blackhole"`: counted as delivered, never produced.
    blackhole: bool,
    // To build a replacement after a fatal error (cold path).
    cfg: KafkaConfig,
    client_id: String,
}

impl std::fmt::Debug for TickProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickProducer")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl TickProducer {
    /// Creates the producer and its topic handle; undeliverable records go
    /// to `spool`.
    ///
    /// # Errors
    /// librdkafka's error for a bad property, naming it.
    pub fn new(
        cfg: &KafkaConfig,
        client_id: &str,
        spool: Arc<crate::spool::Spool>,
    ) -> Result<Self, KafkaError> {
        // Untiered (one ring per publisher): every record counts as T0, as
        // the publisher's one ring does.
        let t0 = crate::tier::TierMap::uniform(crate::tier::Tier::T0);
        Self::new_tiered(cfg, client_id, spool, Arc::new(t0))
    }

    /// [`new`](Self::new), counting each delivery report in the tier
    /// `tiers` gives the record's instrument.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn new_tiered(
        cfg: &KafkaConfig,
        client_id: &str,
        spool: Arc<crate::spool::Spool>,
        tiers: Arc<crate::tier::TierMap>,
    ) -> Result<Self, KafkaError> {
        Self::with_shared(
            cfg,
            client_id,
            Ctx {
                counters: Arc::new(DeliveryCounters::default()),
                spool,
                acks: Arc::new(AckSamples::new(ACK_SAMPLES)),
                tiers,
            },
        )
    }

    /// Also produces bars, to topic `name` ([`produce_bar`](Self::produce_bar)).
    ///
    /// # Errors
    /// The topic handle cannot be made (a name librdkafka refuses).
    pub fn with_bars_topic(mut self, name: &str) -> Result<Self, KafkaError> {
        let t = raw::Topic::new(&self.producer, name).ok_or_else(|| {
            KafkaError::ClientCreation(format!("cannot create a handle for topic {name:?}"))
        })?;
        self.bars_topic = Some((t, name.to_owned()));
        Ok(self)
    }

    fn with_shared(cfg: &KafkaConfig, client_id: &str, ctx: Ctx) -> Result<Self, KafkaError> {
        let counters = Arc::clone(&ctx.counters);
        let producer: BaseProducer<Ctx> = cfg.client_config(client_id).create_with_context(ctx)?;
        let topic = raw::Topic::new(&producer, &cfg.topic).ok_or(KafkaError::ClientCreation(
            format!("cannot create a handle for topic {:?}", cfg.topic),
        ))?;
        Ok(Self {
            topic,
            bars_topic: None,
            producer,
            counters,
            topic_name: cfg.topic.clone(),
            blackhole: cfg.sink == "blackhole",
            cfg: cfg.clone(),
            client_id: client_id.to_owned(),
        })
    }

    /// `true` once librdkafka reported a fatal error: this producer can no
    /// longer deliver anything and must be [replaced](Self::replace).
    /// Checked by the publisher every loop turn: one relaxed load unless a
    /// client error was reported since the last check, then one
    /// `rd_kafka_fatal_error` call.
    #[inline]
    pub fn check_fatal(&self) -> bool {
        let c = &self.counters;
        if c.error_seen.load(Ordering::Relaxed) {
            c.error_seen.store(false, Ordering::Relaxed);
            if self.fatal_error().is_some() {
                c.fatal.store(true, Ordering::Relaxed);
            }
        }
        c.fatal.load(Ordering::Relaxed)
    }

    /// librdkafka's description of the fatal error, if any.
    #[must_use]
    pub fn fatal_error(&self) -> Option<String> {
        use rdkafka::producer::Producer as _;
        self.producer
            .client()
            .fatal_error()
            .map(|(code, why)| format!("{code}: {why}"))
    }

    /// Replaces a producer that hit a fatal error with a new one (a new
    /// idempotent producer id) sharing the same counters, spool and ack
    /// samples. The old one is dropped first-in-line: its drop purges what
    /// it still held, and each purged record is counted as failed and
    /// parked with librdkafka's persistence status (in-flight ones may have
    /// been written). Cold path: allocates, and may block up to ~0.5 s in
    /// the old producer's purge.
    ///
    /// # Errors
    /// The new producer could not be created; the old one is kept (every
    /// produce then fails and is parked) and the caller retries later.
    pub fn replace(&mut self) -> Result<(), KafkaError> {
        let ctx = self.producer.context();
        let fresh = Self::with_shared(
            &self.cfg,
            &self.client_id,
            Ctx {
                counters: Arc::clone(&ctx.counters),
                spool: Arc::clone(&ctx.spool),
                acks: Arc::clone(&ctx.acks),
                tiers: Arc::clone(&ctx.tiers),
            },
        )?;
        let fresh = match &self.bars_topic {
            Some((_, name)) => fresh.with_bars_topic(name)?,
            None => fresh,
        };
        // Dropping the old producer purges and parks what it held while the
        // `fatal` flag still marks those purges as failures, not shutdown.
        drop(std::mem::replace(self, fresh));
        self.counters.fatal.store(false, Ordering::Relaxed);
        bump(&self.counters.fatal_errors);
        Ok(())
    }

    /// Test hook (feature `test-hooks`): makes librdkafka raise a fatal
    /// error on this producer, as a fenced idempotent producer would.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn inject_fatal(&self) {
        raw::inject_fatal(&self.producer);
    }

    /// The topic records go to.
    #[must_use]
    pub fn topic_name(&self) -> &str {
        &self.topic_name
    }

    /// The dead-letter spool undeliverable records go to.
    #[must_use]
    pub fn spool(&self) -> &Arc<crate::spool::Spool> {
        &self.producer.context().spool
    }

    /// Receive → ack samples of delivered records, drained after each poll.
    #[must_use]
    pub fn acks(&self) -> &Arc<AckSamples> {
        &self.producer.context().acks
    }

    /// The delivery counters (shared with the ops side).
    #[must_use]
    pub fn counters(&self) -> &Arc<DeliveryCounters> {
        &self.counters
    }

    /// Enqueues one record (key and payload are copied by librdkafka);
    /// `recv_ns` comes back with its delivery report. Never blocks and never
    /// allocates, unlike `BaseProducer::send` (a `CString` of the topic).
    ///
    /// # Errors
    /// [`ProduceError`] when librdkafka refused the record.
    #[inline]
    pub fn produce(&self, key: &[u8], payload: &[u8], recv_ns: u64) -> Result<(), ProduceError> {
        if self.blackhole {
            // Delivered at once, counted as a delivery report would be.
            let tier = self.producer.context().tiers.tier_of(key_token(key));
            bump(&self.counters.delivered);
            bump(&self.counters.by_tier[tier.index()][0]);
            return Ok(());
        }
        self.topic.produce(key, payload, recv_ns)
    }

    /// Enqueues one bar record on `bars.topic`, like [`produce`](Self::produce);
    /// its delivery report is counted in [`DeliveryCounters::bars`].
    ///
    /// # Errors
    /// [`ProduceError`] when librdkafka refused the record, or
    /// `UnknownTopic` when bars were not set up
    /// ([`with_bars_topic`](Self::with_bars_topic)).
    #[inline]
    pub fn produce_bar(&self, key: &[u8], payload: &[u8], end_ns: u64) -> Result<(), ProduceError> {
        if self.blackhole {
            bump(&self.counters.bars[0]);
            return Ok(());
        }
        match &self.bars_topic {
            Some((t, _)) => t.produce(key, payload, (end_ns & !BAR_OPAQUE) | BAR_OPAQUE),
            None => Err(ProduceError::Other(RDKafkaErrorCode::UnknownTopic)),
        }
    }

    /// The bars topic, when bars are on.
    #[must_use]
    pub fn bars_topic_name(&self) -> Option<&str> {
        self.bars_topic.as_ref().map(|(_, n)| n.as_str())
    }

    /// Serves delivery reports (counted in [`DeliveryCounters`]), waiting at
    /// most `timeout`.
    #[inline]
    pub fn poll(&self, timeout: Duration) {
        self.producer.poll(timeout);
    }

    /// Waits up to `timeout` for every enqueued record's delivery report.
    ///
    /// # Errors
    /// `KafkaError::Flush` when records were still undelivered at the deadline.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }

    /// Records enqueued and not yet reported (librdkafka's `outq_len`, which
    /// also counts in-flight protocol requests).
    #[must_use]
    pub fn queue_len(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

pub mod batch;
#[allow(unsafe_code)]
mod raw;

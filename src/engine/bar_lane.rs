//! A publisher's bars (README, "Bars"): its [`BarBook`] fed with every
//! tick it pops, and the emission of each closed bar: encoded into a
//! reused buffer, produced on `bars.topic` by the publisher's own producer
//! (delivery reports and parking counted as bars), and pushed onto the
//! hand-off to the ops side. Runs on the publisher thread; never
//! allocates, never takes a lock, never waits on the ops side.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::kafka::{ProduceError, TickProducer};
use super::net::ConnStats;
use crate::bars::{Bar, BarBook, BarTx, BookStats, MAX_BAR_JSON_LEN, write_bar};
use crate::json::JsonBuf;
use crate::run_id::RunId;
use crate::spool::Persisted;
use crate::tick::Tick;

/// Counters of one publisher's bars (single writer: its thread).
#[derive(Debug, Default)]
pub struct BarCounters {
    /// Bars closed and emitted.
    pub built: AtomicU64,
    /// Bar records enqueued on the producer.
    pub produced: AtomicU64,
    /// Refused by the producer (queue full past the wait, or an error):
    /// parked, or dropped at the spool (counted there).
    pub refused: AtomicU64,
    /// Bars the hand-off to the ops side had no room for.
    pub handoff_dropped: AtomicU64,
    /// Ticks of a minute whose bar was already emitted.
    pub late_ticks: AtomicU64,
    /// Ticks outside their market's sessions.
    pub closed_market_ticks: AtomicU64,
    /// Ticks without a price.
    pub unpriced_ticks: AtomicU64,
    /// Ticks of instruments the book had no room for.
    pub untracked_ticks: AtomicU64,
    /// Exchange clock: ticks with no time yet (no exchange stamp seen).
    pub unclocked_ticks: AtomicU64,
    /// Volume baselines reset (reconnect, or a fall within a day).
    pub volume_rebased: AtomicU64,
    /// Open bars dropped at stop because their minute had not ended.
    pub incomplete_at_stop: AtomicU64,
}

/// One publisher's bar state and emission path.
#[derive(Debug)]
pub struct BarLane {
    book: BarBook,
    sink: Sink,
    conns: Vec<Arc<ConnStats>>,
    /// Connection attempts of each connection, read once per chunk.
    epochs: Vec<u64>,
    counters: Arc<BarCounters>,
}

/// Where a closed bar goes: the encoding buffer, the hand-off, and this
/// thread's tallies of both.
#[derive(Debug)]
struct Sink {
    buf: JsonBuf,
    tx: BarTx,
    produced: u64,
    refused: u64,
    handoff_dropped: u64,
}

/// What emitting needs from the publisher.
#[derive(Debug, Clone, Copy)]
pub struct Emit<'a> {
    /// The producer.
    pub producer: &'a TickProducer,
    /// The run id.
    pub run: RunId,
    /// How long a full producer queue is waited on.
    pub wait: Duration,
}

impl BarLane {
    /// A lane over `book`, handing bars to `tx`; `conns` are the engine's
    /// connections (their attempt counts tell a reconnect).
    #[must_use]
    pub fn new(book: BarBook, tx: BarTx, conns: Vec<Arc<ConnStats>>) -> Self {
        Self {
            book,
            sink: Sink {
                buf: JsonBuf::with_capacity(MAX_BAR_JSON_LEN),
                tx,
                produced: 0,
                refused: 0,
                handoff_dropped: 0,
            },
            epochs: vec![0; conns.len()],
            conns,
            counters: Arc::default(),
        }
    }

    /// The counters (shared with the ops side).
    #[must_use]
    pub fn counters(&self) -> &Arc<BarCounters> {
        &self.counters
    }

    /// Re-reads the connections' attempt counts: once per chunk, so a tick
    /// costs no shared-memory read.
    #[inline]
    pub fn refresh_epochs(&mut self) {
        for (e, c) in self.epochs.iter_mut().zip(&self.conns) {
            *e = c.attempts.load(Ordering::Relaxed);
        }
    }

    /// Folds `t`, emitting a bar it closes.
    #[inline]
    pub fn on_tick(&mut self, t: &Tick, e: Emit<'_>) {
        let epoch = self.epochs.get(usize::from(t.conn)).copied().unwrap_or(0);
        let Self { book, sink, .. } = self;
        book.on_tick(t, epoch, &mut |bar| sink.emit(bar, e));
    }

    /// Closes the bars whose grace has passed at `now_ns` (one compare when
    /// none has).
    #[inline]
    pub fn sweep_if_due(&mut self, now_ns: u64, e: Emit<'_>) {
        if !self.book.due(now_ns) {
            return;
        }
        let Self { book, sink, .. } = self;
        book.sweep(now_ns, &mut |bar| sink.emit(bar, e));
        self.store_counters();
    }

    /// At stop: emits the bars whose minute has ended, drops (counts) the
    /// others.
    pub fn finish(&mut self, now_ns: u64, e: Emit<'_>) {
        let Self { book, sink, .. } = self;
        book.finish(now_ns, &mut |bar| sink.emit(bar, e));
        self.store_counters();
    }

    /// Publishes this thread's counts (`Relaxed` stores of single-writer
    /// totals).
    pub fn store_counters(&self) {
        let c = &self.counters;
        let BookStats {
            built,
            late_ticks,
            closed_market_ticks,
            unpriced_ticks,
            untracked_ticks,
            unclocked_ticks,
            volume_rebased,
            incomplete_at_stop,
        } = self.book.stats();
        for (a, v) in [
            (&c.built, built),
            (&c.produced, self.sink.produced),
            (&c.refused, self.sink.refused),
            (&c.handoff_dropped, self.sink.handoff_dropped),
            (&c.late_ticks, late_ticks),
            (&c.closed_market_ticks, closed_market_ticks),
            (&c.unpriced_ticks, unpriced_ticks),
            (&c.untracked_ticks, untracked_ticks),
            (&c.unclocked_ticks, unclocked_ticks),
            (&c.volume_rebased, volume_rebased),
            (&c.incomplete_at_stop, incomplete_at_stop),
        ] {
            a.store(v, Ordering::Relaxed);
        }
    }
}

impl Sink {
    /// Produces `bar` (waiting up to `e.wait` on a full queue, then parking
    /// it) and hands it to the ops side.
    fn emit(&mut self, bar: &Bar, e: Emit<'_>) {
        let Self {
            buf,
            tx,
            produced,
            refused,
            handoff_dropped,
        } = self;
        buf.clear();
        let mut key = itoa::Buffer::new();
        let key = key.format(bar.token).as_bytes();
        let r = match write_bar(bar, e.run, buf) {
            Ok(()) => produce(e, key, buf.as_bytes(), bar.end_ns),
            // Unreachable: the buffer holds MAX_BAR_JSON_LEN. Counted, not hidden.
            Err(_) => Err(ProduceError::Other(
                rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge,
            )),
        };
        match r {
            Ok(()) => *produced += 1,
            Err(err) => {
                *refused += 1;
                park(e.producer, key, buf.as_bytes(), err, e.wait);
            }
        }
        // No consumer (the downstream stream is off): nothing to hand off.
        if !tx.is_abandoned() && tx.push(*bar).is_err() {
            *handoff_dropped += 1;
        }
    }
}

#[inline]
fn produce(e: Emit<'_>, key: &[u8], payload: &[u8], end_ns: u64) -> Result<(), ProduceError> {
    match e.producer.produce_bar(key, payload, end_ns) {
        Err(ProduceError::QueueFull) => {
            let deadline = Instant::now() + e.wait;
            loop {
                e.producer.poll(Duration::from_millis(1));
                match e.producer.produce_bar(key, payload, end_ns) {
                    Err(ProduceError::QueueFull) if Instant::now() < deadline => {}
                    r => break r,
                }
            }
        }
        r => r,
    }
}

#[cold]
fn park(producer: &TickProducer, key: &[u8], payload: &[u8], e: ProduceError, waited: Duration) {
    let why = match e {
        ProduceError::QueueFull => format!("producer queue full for {} ms", waited.as_millis()),
        ProduceError::Other(code) => format!("produce refused: {code}"),
    };
    producer.spool().park_bar(
        producer
            .bars_topic_name()
            .unwrap_or(crate::config::defaults::BARS_TOPIC),
        key,
        payload,
        &why,
        Persisted::No,
    );
}

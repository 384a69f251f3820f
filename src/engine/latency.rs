//! Latency bookkeeping of a publisher: its histograms (receive → produce
//! call, receive → broker ack), the slowest deliveries of an interval, and
//! the lock-free exchange that hands them to the ops side. Written on the
//! publisher thread, read on the ops side after the hand-over.

use hdrhistogram::Histogram;

/// Highest latency the histograms track, in nanoseconds (60 s); larger values
/// are clamped to it.
pub const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// A latency histogram: 1 ns .. 60 s at 3 significant digits.
#[must_use]
pub fn latency_histogram() -> Histogram<u64> {
    #[allow(clippy::missing_panics_doc)] // constant, valid bounds
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("valid histogram bounds")
}

/// How many slowest deliveries a publisher keeps per exchange interval.
pub const SLOW_N: usize = 10;

/// One slow delivery: receive → broker ack, with its context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SlowAck {
    /// Receive → delivery report, ns.
    pub duration_ns: u64,
    /// Delivery-report time, ns since the epoch.
    pub at_ns: u64,
    /// Partition.
    pub partition: i32,
    /// Instrument token (the record key).
    pub instrument: u32,
    /// Delivery reports served by the same `poll` call (librdkafka hands
    /// them over per acknowledged batch).
    pub dr_batch: u32,
    /// Publisher index.
    pub publisher: u32,
}

/// The slowest [`SLOW_N`] deliveries seen, in a fixed array (no allocation).
#[derive(Debug, Clone, Copy, Default)]
pub struct SlowAcks {
    items: [SlowAck; SLOW_N],
    len: usize,
    // Smallest kept duration once full: cheaper rejection of the common case.
    floor: u64,
}

impl SlowAcks {
    /// Keeps `a` if it is among the slowest so far.
    #[inline]
    pub fn offer(&mut self, a: SlowAck) {
        if self.len < SLOW_N {
            self.items[self.len] = a;
            self.len += 1;
            if self.len == SLOW_N {
                self.floor = self.min().1;
            }
            return;
        }
        if a.duration_ns <= self.floor {
            return;
        }
        let (i, _) = self.min();
        self.items[i] = a;
        self.floor = self.min().1;
    }

    fn min(&self) -> (usize, u64) {
        self.items[..self.len]
            .iter()
            .enumerate()
            .map(|(i, a)| (i, a.duration_ns))
            .min_by_key(|x| x.1)
            .unwrap_or((0, 0))
    }

    /// The kept deliveries, in no particular order.
    #[must_use]
    pub fn as_slice(&self) -> &[SlowAck] {
        &self.items[..self.len]
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.len = 0;
        self.floor = 0;
    }
}

/// What a publisher hands the ops side per exchange interval.
#[derive(Debug)]
pub struct Interval {
    /// Receive → produce call, ns.
    pub produce: Histogram<u64>,
    /// Receive → broker ack (delivery report), ns.
    pub ack: Histogram<u64>,
    /// The slowest deliveries of the interval.
    pub slow: SlowAcks,
}

impl Interval {
    /// Empty histograms.
    #[must_use]
    pub fn new() -> Self {
        Self {
            produce: latency_histogram(),
            ack: latency_histogram(),
            slow: SlowAcks::default(),
        }
    }

    /// `true` when nothing was recorded since the last reset.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.produce.is_empty() && self.ack.is_empty()
    }

    /// Empties it for reuse.
    pub fn reset(&mut self) {
        self.produce.reset();
        self.ack.reset();
        self.slow.clear();
    }
}

impl Default for Interval {
    fn default() -> Self {
        Self::new()
    }
}

/// Interval histograms travel between a publisher and the ops side on two
/// SPSC rings: full ones out, emptied ones back. No lock, no allocation.
#[derive(Debug)]
pub struct HistogramExchange {
    /// Full intervals (publisher → ops).
    pub full: rtrb::Producer<Box<Interval>>,
    /// Emptied intervals (ops → publisher).
    pub empty: rtrb::Consumer<Box<Interval>>,
}

impl HistogramExchange {
    /// An exchange with no ops side: the publisher keeps accumulating into
    /// one interval (benchmarks and tests that drive a publisher directly).
    #[must_use]
    pub fn unconnected() -> Self {
        let (full, _) = rtrb::RingBuffer::new(1);
        let (_, empty) = rtrb::RingBuffer::new(1);
        Self { full, empty }
    }
}

//! The publisher's enqueue of a staged chunk (README, "Performance"):
//! one batched produce call per staged batch, the queue-full wait with
//! in-order retry, and parking of what the producer refused. Publisher
//! thread; no allocation (parking, on the failure path, formats its
//! reason).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::super::kafka::batch::Batch;
use super::super::kafka::{ProduceError, TickProducer};
use super::TierTally;
use crate::clock::now_ns;
use crate::tier::{TIERS, Tier};

/// Parks a record the producer would not take.
#[cold]
fn park(
    producer: &TickProducer,
    tier: Tier,
    (key, payload): (&[u8], &[u8]),
    e: ProduceError,
    waited: Duration,
) {
    let why = match e {
        ProduceError::QueueFull => {
            format!("producer queue full for {} ms", waited.as_millis())
        }
        ProduceError::Other(code) => format!("produce refused: {code}"),
    };
    producer.spool().park_tiered(
        tier,
        producer.topic_name(),
        key,
        payload,
        &why,
        // Never enqueued: certainly not on the topic.
        crate::spool::Persisted::No,
    );
}

/// Most records staged before an enqueue: bounds the batch's memory (and
/// the receive → produce delay a full chunk adds) whatever
/// `engine.publish_chunk` is.
pub(super) const BATCH_MAX: usize = 256;

/// librdkafka's word for a record that does not fit.
pub(super) const TOO_LARGE: rdkafka::types::RDKafkaErrorCode =
    rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge;

/// What enqueueing a batch updates: the producer, the receive → produce
/// histogram and the publisher's tallies.
pub(super) struct Enqueue<'a> {
    pub(super) producer: &'a TickProducer,
    pub(super) hist: &'a mut Histogram<u64>,
    pub(super) wait: Duration,
    pub(super) produced: &'a mut u64,
    pub(super) dropped_queue_full: &'a mut u64,
    pub(super) dropped_produce_error: &'a mut u64,
    pub(super) queue_full_waits: &'a mut u64,
    pub(super) tiers: &'a mut [TierTally; TIERS],
}

impl Enqueue<'_> {
    /// Enqueues every record staged in `batch` and empties it: records the
    /// queue has no room for are retried, in order, until `wait` has
    /// passed, then parked; records refused for another reason are parked.
    #[inline]
    pub(super) fn flush(&mut self, batch: &mut Batch) {
        if batch.is_empty() {
            return;
        }
        let sent_at = now_ns();
        for r in batch.records() {
            self.hist
                .saturating_record(sent_at.saturating_sub(r.recv_ns).max(1));
        }
        let n = batch.records().len();
        let mut from = 0;
        let mut deadline = None;
        loop {
            self.producer.produce_batch(batch, from);
            let recs = batch.records();
            let full = recs[from..]
                .iter()
                .position(|r| r.err == Some(ProduceError::QueueFull))
                .map_or(n, |i| from + i);
            for r in &recs[from..full] {
                let lane = usize::from(r.lane);
                match r.err {
                    None => {
                        *self.produced += 1;
                        self.tiers[lane].produced += 1;
                    }
                    Some(e) => self.refuse(lane, r.key(), batch.payload(r), e),
                }
            }
            if full == n {
                break;
            }
            from = full;
            let dl = *deadline.get_or_insert_with(|| Instant::now() + self.wait);
            if Instant::now() >= dl {
                for r in &recs[from..] {
                    let e = ProduceError::QueueFull;
                    self.refuse(usize::from(r.lane), r.key(), batch.payload(r), e);
                }
                break;
            }
            *self.queue_full_waits += 1;
            self.producer.poll(Duration::from_millis(1));
        }
        batch.clear();
    }

    /// Counts and parks a record the producer would not take.
    #[cold]
    pub(super) fn refuse(&mut self, lane: usize, key: &[u8], payload: &[u8], e: ProduceError) {
        let tally = &mut self.tiers[lane];
        match e {
            ProduceError::QueueFull => {
                *self.dropped_queue_full += 1;
                tally.dropped_queue_full += 1;
            }
            ProduceError::Other(_) => {
                *self.dropped_produce_error += 1;
                tally.dropped_produce_error += 1;
            }
        }
        park(self.producer, Tier::ALL[lane], (key, payload), e, self.wait);
    }
}

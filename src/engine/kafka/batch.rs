//! Batched enqueue: the records of one publisher chunk staged in one
//! buffer and handed to librdkafka with one `rd_kafka_produce_batch` call
//! per [`SUB_BATCH`] records (README, "Performance"). librdkafka then reads
//! the clock twice per call instead of per record and takes the topic lock
//! once; each record still goes through the topic's partitioner, so a key
//! lands on the partition it did with one `rd_kafka_produce` per record.
//! Publisher thread; no allocation after [`Batch::with_capacity`].

use std::sync::Arc;

use rdkafka::producer::Producer as _;

use super::{ProduceError, TickProducer, bump};
use crate::json::{JsonBuf, MAX_ENVELOPE_LEN};

/// Records per `rd_kafka_produce_batch` call (the call's message array
/// lives on the stack).
pub const SUB_BATCH: usize = 64;

/// One staged record.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchRec {
    /// Payload offset in the batch's buffer.
    pub(super) start: u32,
    /// Payload length.
    pub(super) len: u32,
    /// Receive time (the delivery report's opaque).
    pub recv_ns: u64,
    /// Key bytes (a decimal token: at most 10).
    pub(super) key: [u8; 10],
    pub(super) key_len: u8,
    /// The ring (tier lane) the tick came from.
    pub lane: u8,
    /// The produce call's verdict (`None`: enqueued).
    pub err: Option<ProduceError>,
}

impl BatchRec {
    /// The record's key.
    #[must_use]
    pub fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.key_len)]
    }
}

/// Records staged for enqueue: payloads in one buffer, written in place by
/// the encoder.
#[derive(Debug)]
pub struct Batch {
    buf: JsonBuf,
    recs: Box<[BatchRec]>,
    n: usize,
}

impl Batch {
    /// Room for `records` envelopes of up to [`MAX_ENVELOPE_LEN`] bytes.
    #[must_use]
    pub fn with_capacity(records: usize) -> Self {
        let records = records.max(1);
        Self {
            buf: JsonBuf::with_capacity(records * MAX_ENVELOPE_LEN),
            recs: vec![BatchRec::default(); records].into_boxed_slice(),
            n: 0,
        }
    }

    /// No more room.
    #[must_use]
    #[inline]
    pub const fn is_full(&self) -> bool {
        self.n == self.recs.len()
    }

    /// Nothing staged.
    #[must_use]
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Stages one record: `write` appends its payload to the buffer (it has
    /// at least [`MAX_ENVELOPE_LEN`] bytes of room); `false` when `write`
    /// failed (nothing staged). The caller checks [`is_full`](Self::is_full)
    /// first.
    #[inline]
    pub fn stage(
        &mut self,
        key: &[u8],
        recv_ns: u64,
        lane: u8,
        write: impl FnOnce(&mut JsonBuf) -> bool,
    ) -> bool {
        let start = self.buf.len();
        if self.n == self.recs.len() || !write(&mut self.buf) {
            return false;
        }
        let mut k = [0u8; 10];
        let key_len = key.len().min(10);
        k[..key_len].copy_from_slice(&key[..key_len]);
        #[allow(clippy::cast_possible_truncation)] // < records × 1,760 bytes, < 4 GiB
        {
            self.recs[self.n] = BatchRec {
                start: start as u32,
                len: (self.buf.len() - start) as u32,
                recv_ns,
                key: k,
                key_len: key_len as u8,
                lane,
                err: None,
            };
        }
        self.n += 1;
        true
    }

    /// The staged records (after [`TickProducer::produce_batch`], with
    /// their verdicts).
    #[must_use]
    pub fn records(&self) -> &[BatchRec] {
        &self.recs[..self.n]
    }

    /// A staged record's payload.
    #[must_use]
    pub fn payload(&self, r: &BatchRec) -> &[u8] {
        &self.buf.as_bytes()[r.start as usize..(r.start + r.len) as usize]
    }

    /// Empties the batch, keeping its memory.
    #[inline]
    pub fn clear(&mut self) {
        self.buf.clear();
        self.n = 0;
    }
}

impl TickProducer {
    /// Enqueues the records of `batch` from index `from` on, in order, and
    /// sets each one's verdict; returns how many were enqueued. Stops at the
    /// first record the full queue refused: that one and every later one
    /// are marked [`ProduceError::QueueFull`] and not enqueued, so a retry
    /// from there keeps each instrument's order. Copies each record
    /// (librdkafka's `RD_KAFKA_MSG_F_COPY`), so the batch can be reused at
    /// once. Never allocates on the Rust heap.
    pub fn produce_batch(&self, batch: &mut Batch, from: usize) -> usize {
        let n = batch.n;
        let Batch { buf, recs, .. } = batch;
        let recs = &mut recs[from.min(n)..n];
        if self.blackhole {
            // Delivered at once, counted as delivery reports would be.
            let tiers = Arc::clone(&self.producer.context().tiers);
            for r in recs.iter_mut() {
                r.err = None;
                let tier = tiers.tier_of(super::key_token(r.key()));
                bump(&self.counters.delivered);
                bump(&self.counters.by_tier[tier.index()][0]);
            }
            return recs.len();
        }
        let payloads = buf.as_bytes();
        let mut good = 0;
        let mut rest = &mut recs[..];
        while !rest.is_empty() {
            let (part, tail) = rest.split_at_mut(rest.len().min(SUB_BATCH));
            let ok = self.topic.produce_batch(payloads, part);
            good += ok;
            if ok < part.len() && part.iter().any(|r| r.err == Some(ProduceError::QueueFull)) {
                // The queue is full: later records must not overtake these.
                for r in tail.iter_mut() {
                    r.err = Some(ProduceError::QueueFull);
                }
                break;
            }
            rest = tail;
        }
        good
    }
}

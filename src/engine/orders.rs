//! Order postbacks (README, "Order postbacks"): Kite's `order` text frames,
//! published to `kafka.orders_topic` (default `orders.updates`) keyed by
//! order id, with the ticks' delivery guarantees: idempotent producer,
//! delivery reports counted, undeliverable records parked in the dead-letter
//! spool (`dlq requeue` republishes them to their topic), and an identity of
//! their own.
//!
//! Threads: the network thread builds each envelope (an order is an event
//! of a trading day, not a tick: this allocates, like a text `error` frame)
//! and pushes it onto a bounded SPSC ring ([`ORDER_RING`]; full = dropped
//! and counted); the `orders` thread owns the ring's consumer, its own
//! producer and spool writer, and publishes. Accounting, at every instant:
//! `received = published + parked + dropped + in_flight`, checked at stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::kafka::{ProduceError, TickProducer};
use crate::config::{KafkaConfig, SpoolConfig};
use crate::run_id::RunId;
use crate::spool::{Persisted, Spool};

/// Order postbacks waiting between the network thread and the `orders`
/// thread; more are dropped and counted.
pub const ORDER_RING: usize = 4096;

/// One order postback on its way to Kafka.
#[derive(Debug)]
pub struct OrderMsg {
    /// Kafka key: the order id (empty when the postback had none).
    pub key: String,
    /// The envelope (JSON).
    pub payload: String,
    /// Receive time, ns since the epoch.
    pub recv_ns: u64,
}

/// Counters of the order path, each with one writer.
#[derive(Debug, Default)]
pub struct OrderCounters {
    /// Order postbacks received (network thread).
    pub received: AtomicU64,
    /// Received without an `order_id` (published with an empty key).
    pub without_id: AtomicU64,
    /// Dropped because the order ring was full (network thread).
    pub dropped_full: AtomicU64,
    /// Taken off the ring (`orders` thread).
    pub popped: AtomicU64,
    /// Enqueued on the producer (`orders` thread).
    pub produced: AtomicU64,
    /// Refused by the producer past the queue-full wait, or for another
    /// reason: parked (or dropped, counted by the spool).
    pub refused: AtomicU64,
}

/// What the order path did, for the summary and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OrderCounts {
    /// Postbacks received.
    pub received: u64,
    /// Postbacks without an `order_id`.
    pub without_id: u64,
    /// Delivered to `kafka.orders_topic`.
    pub published: u64,
    /// Parked in the dead-letter spool.
    pub parked: u64,
    /// Dropped: ring full, or spool full / unwritable.
    pub dropped: u64,
    /// In the ring or the producer queue.
    pub in_flight: u64,
}

/// The network thread's end.
#[derive(Debug)]
pub struct OrderTx {
    tx: rtrb::Producer<OrderMsg>,
    counters: Arc<OrderCounters>,
    thread: Thread,
    run: RunId,
    /// Per connection: order postbacks so far (the `seq` of the envelope).
    seq: [u64; 256],
}

impl OrderTx {
    /// Publishes the postback `data` that arrived on `conn` at `recv_ns`:
    /// builds its envelope and hands it to the `orders` thread (or drops
    /// and counts it when the ring is full).
    pub fn send(&mut self, conn: u8, recv_ns: u64, data: &serde_json::Value) {
        let c = &self.counters;
        c.received.fetch_add(1, Ordering::Relaxed);
        let key = match &data["order_id"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => {
                c.without_id.fetch_add(1, Ordering::Relaxed);
                String::new()
            }
        };
        let seq = &mut self.seq[usize::from(conn)];
        *seq += 1;
        let payload = serde_json::json!({
            "type": "order_update",
            "source": "kite",
            "run": self.run.to_string(),
            "conn": conn,
            "seq": *seq,
            "received_at": crate::clock::rfc3339_ms(recv_ns),
            "recv_ns": recv_ns,
            "data": data,
        })
        .to_string();
        let msg = OrderMsg {
            key,
            payload,
            recv_ns,
        };
        if self.tx.push(msg).is_err() {
            c.dropped_full.fetch_add(1, Ordering::Relaxed);
        } else {
            self.thread.unpark();
        }
    }
}

/// The `orders` thread and its shared state.
#[derive(Debug)]
pub struct OrderPath {
    counters: Arc<OrderCounters>,
    delivery: Arc<super::kafka::DeliveryCounters>,
    spool: Arc<Spool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<bool>>,
}

/// Settings of the order path.
#[derive(Debug, Clone)]
pub struct OrderSettings {
    /// Kafka settings; `topic` is replaced by `orders_topic`.
    pub kafka: KafkaConfig,
    /// The spool (the order path writes its own segments, as writer `id`).
    pub spool: SpoolConfig,
    /// Spool writer id (after the publishers').
    pub spool_id: usize,
    /// The run id, in every envelope.
    pub run: RunId,
}

impl OrderPath {
    /// Creates the producer and spool writer and spawns the `orders`
    /// thread; returns it with the network thread's end.
    ///
    /// # Errors
    /// The producer cannot be created, or the thread cannot be spawned.
    pub fn start(
        s: OrderSettings,
        spool_total: &Arc<AtomicU64>,
    ) -> Result<(Self, OrderTx), String> {
        let spool = Arc::new(Spool::new(s.spool, s.spool_id, Arc::clone(spool_total)));
        let mut kafka = s.kafka;
        kafka.topic.clone_from(&kafka.orders_topic);
        let producer = TickProducer::new(&kafka, "panda-feed-orders", Arc::clone(&spool))
            .map_err(|e| kafka.redact(&e.to_string()))?;
        let delivery = Arc::clone(producer.counters());
        let counters = Arc::new(OrderCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = rtrb::RingBuffer::new(ORDER_RING);
        let wait = Duration::from_millis(u64::from(kafka.queue_full_wait_ms));
        let flush = Duration::from_millis(u64::from(kafka.flush_timeout_ms));
        let (c, st, sp) = (Arc::clone(&counters), Arc::clone(&stop), Arc::clone(&spool));
        let thread = std::thread::Builder::new()
            .name("orders".into())
            .spawn(move || run(rx, &producer, &c, &sp, &st, wait, flush))
            .map_err(|e| format!("spawn the orders thread: {e}"))?;
        let tx = OrderTx {
            tx,
            counters: Arc::clone(&counters),
            thread: thread.thread().clone(),
            run: s.run,
            seq: [0; 256],
        };
        Ok((
            Self {
                counters,
                delivery,
                spool,
                stop,
                thread: Some(thread),
            },
            tx,
        ))
    }

    /// The counts now (approximate while running; exact after
    /// [`stop`](Self::stop)).
    #[must_use]
    pub fn counts(&self) -> OrderCounts {
        let c = &self.counters;
        let d = &self.delivery;
        let sc = self.spool.counters();
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let received = r(&c.received);
        let published = r(&d.delivered);
        let parked = r(&sc.parked);
        let dropped = r(&c.dropped_full) + r(&sc.full) + r(&sc.error);
        OrderCounts {
            received,
            without_id: r(&c.without_id),
            published,
            parked,
            dropped,
            in_flight: received.saturating_sub(published + parked + dropped),
        }
    }

    /// Stops the thread once the network thread has stopped (its ring end
    /// dropped): it publishes what is left, flushes, and ends. Returns
    /// whether every record was accounted for.
    pub fn stop(&mut self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        let Some(h) = self.thread.take() else {
            return true;
        };
        h.thread().unpark();
        let flushed = h.join().unwrap_or(false);
        let c = self.counts();
        flushed && c.in_flight == 0
    }
}

impl Drop for OrderPath {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The `orders` thread's loop.
fn run(
    mut rx: rtrb::Consumer<OrderMsg>,
    producer: &TickProducer,
    c: &OrderCounters,
    spool: &Spool,
    stop: &AtomicBool,
    queue_full_wait: Duration,
    flush_timeout: Duration,
) -> bool {
    let topic = producer.topic_name().to_owned();
    loop {
        let mut any = false;
        while let Ok(m) = rx.pop() {
            any = true;
            c.popped.fetch_add(1, Ordering::Relaxed);
            publish(producer, c, spool, &topic, &m, queue_full_wait);
        }
        producer.poll(Duration::ZERO);
        spool.sync_if_due();
        if stop.load(Ordering::SeqCst) && rx.is_empty() {
            break;
        }
        if !any {
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
    let flushed = producer.flush(flush_timeout).is_ok();
    spool.close();
    flushed
}

fn publish(
    producer: &TickProducer,
    c: &OrderCounters,
    spool: &Spool,
    topic: &str,
    m: &OrderMsg,
    queue_full_wait: Duration,
) {
    let deadline = Instant::now() + queue_full_wait;
    loop {
        match producer.produce(m.key.as_bytes(), m.payload.as_bytes(), m.recv_ns) {
            Ok(()) => {
                c.produced.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(ProduceError::QueueFull) if Instant::now() < deadline => {
                producer.poll(Duration::from_millis(10));
            }
            Err(e) => {
                c.refused.fetch_add(1, Ordering::Relaxed);
                let why = match e {
                    ProduceError::QueueFull => "producer queue full past kafka.queue_full_wait_ms",
                    ProduceError::Other(_) => "the producer refused the record",
                };
                // Counted by the spool as parked, or as dropped when it
                // cannot take it.
                spool.park(
                    topic,
                    m.key.as_bytes(),
                    m.payload.as_bytes(),
                    why,
                    Persisted::No,
                );
                return;
            }
        }
    }
}

//! The hot path allocates nothing after warm-up: decoding and JSON-encoding
//! 100,000 packets, the same through a tick ring (decode into the slot, pop,
//! encode), and the engine's own halves — the network thread's `Router`
//! (decode → push) and a `Publisher` (pop → envelope → produce-enqueue on a
//! real librdkafka producer) — perform zero heap allocations. librdkafka's
//! own C allocations do not go through Rust's allocator and are not counted.
//!
//! A counting global allocator counts calls made on the measuring thread only
//! (a const-initialized thread-local flag, itself allocation-free), so the test
//! harness's other threads cannot disturb the count.

#![allow(
    unsafe_code,
    reason = "a counting global allocator is inherently unsafe to implement"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use panda_feed::json::{JsonBuf, write_tick};
use panda_feed::ring::{TickRx, TickTx, tick_ring};
use panda_feed::tick::{DepthLevel, Ohlc};
use panda_feed::wire::{self, Message, MessageWriter};
use panda_feed::{PacketKind, Tick};

struct Counting;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if MEASURING.with(Cell::get) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: forwards every call unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting has no effect on the returned memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes through us).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn measure<R>(f: impl FnOnce() -> R) -> (R, u64) {
    ALLOCS.with(|a| a.set(0));
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (r, ALLOCS.with(Cell::get))
}

/// 1,000 messages of 100 packets each, every kind and several segments.
fn corpus() -> Vec<Vec<u8>> {
    let kinds = [
        PacketKind::Ltp,
        PacketKind::IndexQuote,
        PacketKind::IndexFull,
        PacketKind::Quote,
        PacketKind::Full,
    ];
    let mut w = MessageWriter::with_capacity(32 * 1024);
    (0..1000u32)
        .map(|m| {
            w.clear();
            for i in 0..100u32 {
                let seg = [1, 3, 6, 9, 12][(i % 5) as usize];
                let mut t =
                    Tick::for_token(((m * 100 + i) << 8) | seg, kinds[((m + i) % 5) as usize]);
                t.last_price = 100_000 + i;
                t.ohlc = Ohlc {
                    open: 1,
                    high: 2,
                    low: 3,
                    close: if i % 7 == 0 { 0 } else { 99_000 },
                };
                t.exchange_timestamp = if i % 11 == 0 { 0 } else { 1_700_000_000 + i };
                t.depth.buy[0] = DepthLevel {
                    quantity: 5,
                    price: 100_000,
                    orders: 2,
                };
                w.push(&t).expect("fits");
            }
            w.finish().to_vec()
        })
        .collect()
}

/// What the hot path does: decode into a reused tick (the ring slot), encode
/// into a reused buffer. The allocation-free `from_packet` is checked too.
fn decode_and_encode(corpus: &[Vec<u8>], slot: &mut Tick, out: &mut JsonBuf) -> (u64, usize) {
    let mut ticks = 0u64;
    let mut bytes = 0usize;
    for msg in corpus {
        let Ok(Message::Packets(packets)) = wire::decode(msg) else {
            panic!("corpus is valid")
        };
        for p in packets {
            assert!(slot.decode_from(&p), "known kinds only");
            out.clear();
            write_tick(slot, out).expect("room for a tick");
            bytes += out.len();
            ticks += 1;
            assert_eq!(Tick::from_packet(&p).as_ref(), Some(&*slot));
        }
    }
    (ticks, bytes)
}

#[test]
fn decode_and_encode_allocate_nothing_after_warm_up() {
    let corpus = corpus();
    let mut out = JsonBuf::with_capacity(4096);
    let mut slot = Tick::default();
    decode_and_encode(&corpus, &mut slot, &mut out); // warm-up

    // The counter works: an allocation on this thread is seen.
    let (_, seen) = measure(|| std::hint::black_box(vec![1u8; 64]));
    assert!(seen >= 1, "counting allocator saw nothing");

    let ((ticks, bytes), allocs) = measure(|| decode_and_encode(&corpus, &mut slot, &mut out));
    assert_eq!(ticks, 100_000);
    assert!(bytes > 100_000 * 60);
    assert_eq!(
        allocs, 0,
        "{allocs} allocations while decoding and encoding {ticks} ticks"
    );
}

/// Network side then publisher side, on one thread: decode each packet
/// straight into a ring slot, then pop chunks and encode them.
fn through_the_ring(
    corpus: &[Vec<u8>],
    tx: &mut TickTx,
    rx: &mut TickRx,
    out: &mut JsonBuf,
) -> (u64, u64) {
    let (mut pushed, mut encoded) = (0u64, 0u64);
    for msg in corpus {
        let Ok(Message::Packets(packets)) = wire::decode(msg) else {
            panic!("corpus is valid")
        };
        for p in packets {
            if tx.push_with(|slot| assert!(slot.decode_from(&p))).is_ok() {
                pushed += 1;
            }
        }
        rx.pop_chunk(usize::MAX, |ticks| {
            for t in ticks {
                out.clear();
                write_tick(t, out).expect("room for a tick");
                encoded += 1;
            }
        });
    }
    (pushed, encoded)
}

#[test]
fn decode_push_pop_encode_allocate_nothing_after_warm_up() {
    let corpus = corpus();
    let (mut tx, mut rx, counters) = tick_ring(256);
    let mut out = JsonBuf::with_capacity(4096);
    through_the_ring(&corpus[..10], &mut tx, &mut rx, &mut out); // warm-up
    let ((pushed, encoded), allocs) =
        measure(|| through_the_ring(&corpus, &mut tx, &mut rx, &mut out));
    assert_eq!((pushed, encoded), (100_000, 100_000));
    assert_eq!(counters.dropped_full(), 0);
    assert_eq!(
        allocs, 0,
        "{allocs} allocations through decode -> ring -> encode"
    );
}

#[test]
fn router_and_publisher_allocate_nothing_per_tick() {
    use panda_feed::engine::kafka::{KafkaConfig, TickProducer};
    use panda_feed::engine::publish::{HistogramExchange, Publisher};
    use panda_feed::engine::route::Router;
    use panda_feed::mock::EmbeddedBroker;
    use std::time::Duration;

    let corpus = corpus();
    let broker = EmbeddedBroker::start(1, "market.ticks", 4).unwrap();
    let kafka = KafkaConfig {
        brokers: broker.bootstrap_servers().to_owned(),
        ..KafkaConfig::default()
    };
    let (tx, rx, ring) = tick_ring(1024);
    let mut router = Router::new(vec![tx]);
    let spool = std::sync::Arc::new(panda_feed::spool::Spool::new(
        panda_feed::spool::SpoolConfig {
            dir: std::env::temp_dir().join(format!("panda-no-alloc-spool-{}", std::process::id())),
            ..Default::default()
        },
        0,
        std::sync::Arc::default(),
    ));
    let producer = TickProducer::new(&kafka, "no-alloc", spool).unwrap();
    let mut publisher = Publisher::new(
        rx,
        producer,
        256,
        Duration::from_secs(10),
        HistogramExchange::unconnected(),
    );
    let mut seq = 0u64;
    let mut feed = |msgs: &[Vec<u8>], publisher: &mut Publisher| {
        let mut routed = 0u64;
        for msg in msgs {
            let r = router
                .route(0, &mut seq, 1_700_000_000_000_000_000, msg)
                .unwrap();
            routed += u64::from(r.pushed);
            while publisher.publish_available() > 0 {}
        }
        routed
    };
    feed(&corpus[..10], &mut publisher); // warm-up: first produce, metadata
    publisher.producer().poll(Duration::from_millis(100));

    let (routed, allocs) = measure(|| feed(&corpus, &mut publisher));
    assert_eq!(routed, 100_000);
    assert_eq!(ring.dropped_full(), 0);
    let produced = publisher
        .counters()
        .produced
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(produced, 101_000, "every routed tick was enqueued");
    assert_eq!(
        allocs, 0,
        "{allocs} allocations routing and publishing {routed} ticks"
    );
    // The records are real: they get delivered.
    publisher.producer().flush(Duration::from_secs(30)).unwrap();
    let delivered = publisher
        .producer()
        .counters()
        .delivered
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(delivered, produced);
}

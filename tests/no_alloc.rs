//! The hot path allocates nothing after warm-up: decoding and JSON-encoding
//! 100,000 packets, the same through a tick ring (decode into the slot, pop,
//! encode), and the engine's own halves — the network thread's `Router`
//! (decode → push) and a `Publisher` (pop → envelope → produce-enqueue on a
//! real librdkafka producer) — perform zero heap allocations, and so do the
//! network thread's loop turns (`Net::turn`, driven here against the mock
//! exchange), busy or idle. Encoding with a reduced field selection, and
//! changing the selection while a publisher runs, allocate nothing either;
//! nor do the exchange calendar's per-tick queries (`Cursor::is_open`,
//! `Cursor::minute_start`) over a whole day.
//! librdkafka's own C allocations do not go through
//! Rust's allocator and are not counted.
//!
//! A counting global allocator counts calls made on the measuring thread only
//! (a const-initialized thread-local flag, itself allocation-free), so the test
//! harness's other threads cannot disturb the count.

#![allow(
    unsafe_code,
    reason = "a counting global allocator is inherently unsafe to implement"
)]

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use panda_feed::fields::{FieldSelection, LiveFields, Part};
use panda_feed::json::{JsonBuf, write_envelope_with, write_tick, write_tick_with};
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
    corpus_of(|m| m)
}

/// [`corpus`] with message `m`'s tokens numbered from `block(m) * 100`.
fn corpus_of(block: impl Fn(u32) -> u32) -> Vec<Vec<u8>> {
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
                let mut t = Tick::for_token(
                    ((block(m) * 100 + i) << 8) | seg,
                    kinds[((m + i) % 5) as usize],
                );
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

/// Encoding under every field selection (each part off in each mode, none,
/// all), as a tick and as an envelope, allocates nothing.
#[test]
fn encoding_reduced_selections_allocates_nothing() {
    use panda_feed::Mode;
    let corpus = corpus();
    let mut selections = vec![FieldSelection::ALL, FieldSelection::NONE];
    for mode in [Mode::Quote, Mode::Full] {
        for part in Part::ALL {
            selections.push(FieldSelection::ALL.with(mode, part, false));
            selections.push(FieldSelection::NONE.with(mode, part, true));
        }
    }
    let mut ticks = Vec::new();
    for msg in &corpus[..20] {
        let Ok(Message::Packets(packets)) = wire::decode(msg) else {
            panic!("corpus is valid")
        };
        ticks.extend(packets.filter_map(|p| Tick::from_packet(&p)));
    }
    let mut out = JsonBuf::with_capacity(4096);
    let run = panda_feed::run_id::RunId(7);
    let encode_all = |out: &mut JsonBuf| {
        let mut bytes = 0usize;
        for f in &selections {
            for t in &ticks {
                out.clear();
                write_tick_with(t, *f, out).expect("room for a tick");
                bytes += out.len();
                out.clear();
                write_envelope_with(t, run, *f, out).expect("room for an envelope");
                bytes += out.len();
            }
        }
        bytes
    };
    let full = encode_all(&mut out); // warm-up
    let (bytes, allocs) = measure(|| encode_all(&mut out));
    assert_eq!(bytes, full);
    assert!(ticks.len() >= 1000);
    assert_eq!(
        allocs,
        0,
        "{allocs} allocations encoding {} ticks under {} selections",
        ticks.len(),
        selections.len()
    );
}

#[test]
fn router_and_publisher_allocate_nothing_per_tick() {
    use panda_feed::engine::kafka::{KafkaConfig, TickProducer};
    use panda_feed::engine::publish::{HistogramExchange, Publisher};
    use panda_feed::engine::route::Router;
    use panda_feed::tier::{Tier, TierMap};
    use std::time::Duration;

    // 1,000 instruments, each ticking every 10th message: their bars close.
    let corpus = corpus_of(|m| m % 10);
    let broker = util::stack::start_broker(panda_feed::config::defaults::TOPIC, 4);
    let tmp = util::temp::TempDir::new("no-alloc-spool");
    let kafka = KafkaConfig {
        brokers: broker.bootstrap_servers().to_owned(),
        ..KafkaConfig::default()
    };
    // Tiered as the engine runs: rules by segment and 9000 named tokens
    // (the probe runs for every tick), one ring per tier.
    let named: Vec<(u32, Tier)> = (0..9000u32)
        .map(|i| ((i << 8) | (1 + i % 6), Tier::ALL[(i % 3) as usize]))
        .collect();
    let tiers = std::sync::Arc::new(TierMap::new(
        Tier::T1,
        &[(1, Tier::T0), (2, Tier::T2)],
        &named,
    ));
    let [(t0, r0, c0), (t1, r1, c1), (t2, r2, c2)] = [1024; 3].map(tick_ring);
    let rings = [c0, c1, c2];
    // And the SLO monitor's last-tick table holding the corpus's
    // instruments (one probe and one store per pushed tick).
    let mut tokens: Vec<u32> = Vec::new();
    for msg in &corpus {
        if let Ok(panda_feed::wire::Message::Packets(ps)) = panda_feed::wire::decode(msg) {
            tokens.extend(ps.map(|p| p.token()));
        }
    }
    tokens.sort_unstable();
    tokens.dedup();
    let last = std::sync::Arc::new(panda_feed::slo::LastTicks::with_capacity(tokens.len()));
    last.sync(&[], &tokens, 1);
    let mut router = Router::tiered(vec![[t0, t1, t2]], std::sync::Arc::clone(&tiers))
        .with_last_ticks(std::sync::Arc::clone(&last));
    let spool = std::sync::Arc::new(panda_feed::spool::Spool::new(
        panda_feed::spool::SpoolConfig {
            dir: tmp.join("spool"),
            ..Default::default()
        },
        0,
        std::sync::Arc::default(),
    ));
    let producer =
        TickProducer::new_tiered(&kafka, "no-alloc", spool, std::sync::Arc::clone(&tiers))
            .unwrap()
            .with_bars_topic(panda_feed::config::defaults::BARS_TOPIC)
            .unwrap();
    // Bars on, as `run` has them: a book for the corpus' instruments and a
    // hand-off small enough to fill (its drops are counted, not allocated).
    let (bar_tx, _bar_rx) = rtrb::RingBuffer::new(64);
    let book = panda_feed::bars::BarBook::new(
        20_000,
        2_000_000_000,
        panda_feed::bars::BarClock::Receive,
        None,
    );
    let lane = panda_feed::engine::bar_lane::BarLane::new(book, bar_tx, Vec::new());
    // A reduced selection, changed half-way (as `Engine::set_fields` does).
    let live =
        LiveFields::new(FieldSelection::ALL.with(panda_feed::Mode::Full, Part::Depth, false));
    let mut publisher = Publisher::new(
        tick_ring(0).1,
        producer,
        256,
        Duration::from_secs(10),
        HistogramExchange::unconnected(),
    )
    .with_tier_rings([r0, r1, r2])
    .with_fields(live.clone())
    .with_bars(lane);
    let mut seq = 0u64;
    // Receive times 250 ms apart per message: the corpus spans minutes, so
    // bars close (and are produced) while it is measured.
    let mut clock = 1_700_000_000_000_000_000u64;
    let mut feed = |msgs: &[Vec<u8>], publisher: &mut Publisher| {
        let mut routed = 0u64;
        for msg in msgs {
            clock += 250_000_000;
            let r = router.route(0, &mut seq, clock, msg, &[]).unwrap();
            routed += u64::from(r.pushed);
            while publisher.publish_available() > 0 {}
        }
        routed
    };
    feed(&corpus[..10], &mut publisher); // warm-up: first produce, metadata
    publisher.producer().poll(Duration::from_millis(100));

    let half = corpus.len() / 2;
    let (routed, allocs) = measure(|| {
        let first = feed(&corpus[..half], &mut publisher);
        live.store(FieldSelection::NONE);
        first + feed(&corpus[half..], &mut publisher)
    });
    assert_eq!(routed, 100_000);
    let missed: Vec<(u32, Option<u64>)> = tokens
        .iter()
        .map(|&t| (t, last.last_ns(t)))
        // Receive times advance per message from 1_700_000_000 s.
        .filter(|x| x.1.is_none_or(|t| t <= 1_700_000_000_000_000_000))
        .collect();
    assert!(
        missed.is_empty(),
        "{} of {} instruments' times not recorded ({} untracked): {:?}",
        missed.len(),
        tokens.len(),
        last.untracked(),
        &missed[..missed.len().min(5)]
    );
    assert!(rings.iter().all(|r| r.dropped_full() == 0));
    assert!(
        rings.iter().all(|r| r.pushed() > 0),
        "every tier's ring was used"
    );
    let produced = publisher
        .counters()
        .produced
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(produced, 101_000, "every routed tick was enqueued");
    let bars = publisher.bar_counters().unwrap();
    let built = bars.built.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        built > 1000 && bars.produced.load(std::sync::atomic::Ordering::Relaxed) == built,
        "bars were built and produced while measured: {bars:?}"
    );
    assert!(
        bars.handoff_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
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
    let by_tier: u64 = (0..3)
        .map(|t| {
            publisher.producer().counters().by_tier[t][0].load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert_eq!(by_tier, delivered, "every delivery counted in its tier");
}

/// The network thread's loop turns, driven on this thread against the mock
/// exchange over `ws://`: after warm-up (connect, upgrade, subscribe, the
/// read buffer's first split), busy turns (binary market data routed onto a
/// ring) and idle turns (heartbeats and pongs only, or nothing at all)
/// allocate nothing. tungstenite hands out each message as a slice of its
/// read buffer, which is reclaimed in place once the message is dropped.
/// (Over `wss://`, rustls's buffered reader copies each TLS record into a
/// fresh `Vec`: not covered here.)
#[test]
fn network_thread_turns_allocate_nothing_busy_or_idle() {
    use panda_feed::config::defaults;
    use panda_feed::engine::net::{ConnSpec, ConnState, Credentials, Net, NetConfig, new_stats};
    use panda_feed::engine::route::Router;
    use panda_feed::engine::wake::Wake;
    use panda_feed::engine::{IdlePolicy, Secret, Supervision};
    use panda_feed::mock::{MockConfig, MockExchange, default_instruments};
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::{Duration, Instant};

    // A moderate rate: a backlog that fills tungstenite's read buffer in one
    // read (256 KiB here, a stall of a second or more) would make the buffer
    // grow, a bounded start-up cost this test does not measure.
    const TICKS: u64 = 20_000;
    let mock = MockExchange::start(MockConfig {
        rate_per_s: 5_000,
        max_ticks: Some(TICKS),
        heartbeat: Duration::from_millis(20),
        ..MockConfig::default()
    })
    .expect("mock starts");
    let instruments = default_instruments(300);
    let specs: Vec<ConnSpec> = instruments
        .chunks(150)
        .map(|c| ConnSpec {
            tokens: c
                .iter()
                .map(|i| (i.token, i.mode.unwrap_or(panda_feed::Mode::Full)))
                .collect(),
        })
        .collect();
    let stats = new_stats(&mock.ws_url(), &specs);
    let creds = Arc::new(Credentials::new(
        Secret::new(defaults::MOCK_API_KEY),
        Secret::new(defaults::MOCK_ACCESS_TOKEN),
    ));
    // Small enough for the "held" window below to fill it from what is left
    // after the busy window; popped every turn otherwise.
    let (tx, mut rx, ring) = tick_ring(2048);
    let wakes = vec![(Arc::new(Wake::default()), std::thread::current())];
    let (mut net, _stopper) = Net::new(
        &creds,
        specs,
        &stats,
        Router::new(vec![tx]),
        wakes,
        NetConfig {
            idle: IdlePolicy::Park,
            subscribe_chunk: 100,
            read_buffer_size: defaults::READ_BUFFER_SIZE,
            max_message_size: defaults::MAX_MESSAGE_BYTES,
            supervision: Supervision {
                // Pings (and the server's pongs) are part of the steady state.
                ping_interval: Some(Duration::from_millis(50)),
                ..Supervision::default()
            },
            ..NetConfig::default()
        },
        panda_feed::engine::net::Links::default(),
    )
    .expect("poll");

    let sum = |f: fn(&panda_feed::engine::net::ConnStats) -> u64| stats.iter().map(|s| f(s)).sum();
    let ticks = || -> u64 { sum(|s| s.ticks.load(Relaxed)) };
    let mut popped = 0u64;
    // Turns (5 ms poll timeout: no busy loop) until `done` or `limit`;
    // returns how many.
    fn turns(
        net: &mut Net,
        rx: &mut TickRx,
        popped: &mut u64,
        done: &dyn Fn() -> bool,
        limit: Duration,
    ) -> u64 {
        let deadline = Instant::now() + limit;
        let mut n = 0u64;
        while !done() && Instant::now() < deadline {
            net.turn(Duration::from_millis(5)).expect("poll");
            rx.pop_chunk(usize::MAX, |t| *popped += t.len() as u64);
            n += 1;
        }
        n
    }

    // Warm-up: both connections open, a tenth of the ticks through, a ping
    // sent and answered.
    turns(
        &mut net,
        &mut rx,
        &mut popped,
        &|| ticks() >= TICKS / 10,
        Duration::from_secs(20),
    );
    assert!(ticks() >= TICKS / 10, "warm-up: {} ticks", ticks());
    assert!(stats.iter().all(|s| s.state() == ConnState::Open));

    // Busy: market data arriving and routed.
    let before = (ticks(), sum(|s| s.messages.load(Relaxed)));
    let (busy_turns, allocs) = measure(|| {
        turns(
            &mut net,
            &mut rx,
            &mut popped,
            &|| ticks() >= TICKS * 8 / 10,
            Duration::from_secs(20),
        )
    });
    let routed = ticks() - before.0;
    let messages = sum(|s| s.messages.load(Relaxed)) - before.1;
    // Packets average about 80 bytes over the three modes: at least 10,000
    // ticks over two connections is about 400 KB each, more than the 256 KiB
    // read buffer, so each buffer was used up and reclaimed in the window.
    assert!(routed >= TICKS / 2, "busy window routed {routed} ticks");
    assert!(messages >= 50, "busy window saw {messages} messages");
    assert_eq!(
        allocs, 0,
        "{allocs} allocations in {busy_turns} busy turns ({messages} messages, {routed} ticks)"
    );

    // Held (`engine.overflow = "block"`, the default): the publisher stops
    // popping, the ring fills, a message is held and retried every turn
    // (1 ms poll timeout) and nothing more is read: no allocation either.
    let stalls = || sum(|s| s.block_stalls.load(Relaxed));
    let deadline = Instant::now() + Duration::from_secs(20);
    while stalls() == 0 && Instant::now() < deadline {
        net.turn(Duration::from_millis(5)).expect("poll");
    }
    assert!(stalls() > 0, "the ring never filled: {} ticks", ticks());
    let (held_ticks, held_turns) = (ticks(), 40);
    let ((), allocs) = measure(|| {
        for _ in 0..held_turns {
            net.turn(Duration::from_millis(5)).expect("poll");
        }
    });
    assert_eq!(allocs, 0, "{allocs} allocations in {held_turns} held turns");
    assert_eq!(ticks(), held_ticks, "nothing routed while held");
    assert_eq!(ring.dropped_full(), 0, "a held message drops nothing");

    // Drain: the mock stops generating at TICKS; take everything it sent.
    let sent = || mock.stats().sent_ticks.load(Relaxed);
    turns(
        &mut net,
        &mut rx,
        &mut popped,
        &|| {
            let generated = mock.stats().generated.load(Relaxed);
            generated >= TICKS && ticks() >= generated && ticks() == sent()
        },
        Duration::from_secs(20),
    );
    assert_eq!(ticks(), sent(), "every tick the mock sent was routed");

    // Idle: only heartbeats and pongs arrive (for 300 ms), then nothing at
    // all (1,000 zero-timeout turns, as under `idle = "spin"`).
    let before = (ticks(), sum(|s| s.heartbeats.load(Relaxed)));
    let idle_until = Instant::now() + Duration::from_millis(300);
    let ((idle_turns, spin_turns), allocs) = measure(|| {
        let n = turns(
            &mut net,
            &mut rx,
            &mut popped,
            &|| Instant::now() >= idle_until,
            Duration::from_secs(5),
        );
        for _ in 0..1000 {
            net.turn(Duration::ZERO).expect("poll");
        }
        (n, 1000)
    });
    let heartbeats = sum(|s| s.heartbeats.load(Relaxed)) - before.1;
    assert_eq!(ticks(), before.0, "no market data while idle");
    assert!(heartbeats >= 2, "idle window saw {heartbeats} heartbeats");
    assert_eq!(
        allocs, 0,
        "{allocs} allocations in {idle_turns} idle turns and {spin_turns} empty ones"
    );

    // Nothing went down (a reconnect would allocate, legitimately).
    assert!(stats.iter().all(|s| s.state() == ConnState::Open));
    assert!(
        stats
            .iter()
            .all(|s| s.reconnect_counts().all(|(_, n)| n == 0))
    );
    assert_eq!(popped, ticks());
    assert_eq!(ring.dropped_full(), 0);
    net.close();
    mock.stop();
}

#[test]
fn calendar_queries_per_tick_allocate_nothing() {
    use panda_feed::calendar::{Calendar, Cursor, DAY_NS, Exchange, Holidays};
    // Built once, off the hot path (allocates).
    let h = Holidays::load(None).unwrap();
    // 2026-11-25 12:00 IST.
    let noon = 20_782 * DAY_NS + 6 * 3_600_000_000_000 + 1_800_000_000_000;
    let cal = Calendar::new(&h, noon, 14, 7);
    let mut cursors = Exchange::ALL.map(Cursor::new);
    // A day of ticks, one every 250 ms, on every exchange.
    let start = noon - 12 * 3_600_000_000_000;
    let ((open, bars), n) = measure(|| {
        let (mut open, mut bars) = (0u64, 0u64);
        let mut ts = start;
        while ts < start + DAY_NS {
            for c in &mut cursors {
                open += u64::from(c.is_open(&cal, ts) == Some(true));
                bars += u64::from(c.minute_start(&cal, ts).is_some());
            }
            ts += 250_000_000;
        }
        (open, bars)
    });
    assert_eq!(n, 0, "{n} allocations in calendar lookups");
    assert!(open > 0 && open == bars, "{open} {bars}");
}

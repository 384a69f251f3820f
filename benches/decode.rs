//! Criterion benches of the tick path's parsing half.
//!
//! - `decode/<kind>`: one single-packet message → frame validation → packet
//!   view → `Tick` decoded in place into a slot (what the network thread
//!   does per packet, into a ring slot);
//! - `decode/full_x3000`: one 3000-packet full-mode message (the most one
//!   socket can be subscribed to) → 3000 `Tick`s in consecutive slots;
//! - `json/<kind>`: `Tick` → JSON object into a reused buffer (what a publisher does),
//!   every part sent (the default field selection);
//! - `json/full_no_depth`, `json/full_none`: a full tick under a reduced
//!   selection (`[fields]`: depth off; every optional part off);
//! - `route/<case>`: `Router::route` of one 3000-packet LTP message onto 4
//!   publishers' rings (decode, routing decision, in-place push; the rings
//!   are drained outside the timed part): `untiered` (one ring per
//!   publisher), `tiered_rules` (three tier rings each, tiers by exchange
//!   rule), `tiered_named_9000` (and 9000 tokens named with a tier, the
//!   most one API key subscribes: the hash table's largest),
//!   `tiered_rules_slo` (`tiered_rules` plus the SLO monitor's last-tick
//!   table sized for 9000 instruments, holding the 3000: one probe and one
//!   store per tick; README, "SLO monitoring").
//!
//! Run: `cargo bench --bench decode`. Figures are in the README.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use panda_feed::engine::route::Router;
use panda_feed::fields::{FieldSelection, Part};
use panda_feed::json::{JsonBuf, write_tick, write_tick_with};
use panda_feed::ring::{TickRx, tick_ring};
use panda_feed::tick::{Depth, DepthLevel, Ohlc};
use panda_feed::tier::{Tier, TierMap};
use panda_feed::wire::{self, Message, MessageWriter};
use panda_feed::{PacketKind, Tick};

fn sample(kind: PacketKind, token: u32) -> Tick {
    let lvl = |i: u32| DepthLevel {
        quantity: 10 * i + 5,
        price: 157_340 - 5 * i,
        orders: 3,
    };
    let mut depth = Depth::default();
    for i in 0..5 {
        depth.buy[i] = lvl(i as u32);
        depth.sell[i] = DepthLevel {
            price: 157_370 + 5 * i as u32,
            ..lvl(i as u32)
        };
    }
    Tick {
        last_price: 157_370,
        last_traded_quantity: 7,
        average_traded_price: 157_037,
        volume_traded: 1_192_471,
        total_buy_quantity: 256_443,
        total_sell_quantity: 363_009,
        ohlc: Ohlc {
            open: 156_915,
            high: 157_500,
            low: 156_105,
            close: 156_780,
        },
        last_trade_time: 1_625_461_887,
        oi: 12_000,
        oi_day_high: 13_000,
        oi_day_low: 11_000,
        exchange_timestamp: 1_625_461_888,
        depth,
        ..Tick::for_token(token, kind)
    }
}

/// Decodes every packet of `msg` in place into consecutive `slots` (as the
/// network thread writes into ring slots).
fn decode_all(msg: &[u8], slots: &mut [Tick]) -> usize {
    let mut n = 0;
    if let Ok(Message::Packets(p)) = wire::decode(msg) {
        for (packet, slot) in p.zip(slots.iter_mut()) {
            n += usize::from(slot.decode_from(&packet));
        }
    }
    black_box(slots);
    n
}

const KINDS: [(&str, PacketKind, u32); 5] = [
    ("ltp", PacketKind::Ltp, 408_065),
    ("index_quote", PacketKind::IndexQuote, 256_265),
    ("index_full", PacketKind::IndexFull, 256_265),
    ("quote", PacketKind::Quote, 408_065),
    ("full", PacketKind::Full, 408_065),
];

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    for (name, kind, token) in KINDS {
        let mut w = MessageWriter::with_capacity(256);
        w.push(&sample(kind, token)).expect("one packet fits");
        let msg = w.finish().to_vec();
        let mut slots = vec![Tick::default(); 1];
        g.bench_function(name, |b| b.iter(|| decode_all(black_box(&msg), &mut slots)));
    }
    let mut w = MessageWriter::with_capacity(3000 * 186 + 2);
    for i in 0..3000u32 {
        w.push(&sample(PacketKind::Full, (i << 8) | 1))
            .expect("3000 packets fit");
    }
    let msg = w.finish().to_vec();
    g.throughput(Throughput::Elements(3000));
    let mut slots = vec![Tick::default(); 4096];
    g.bench_function("full_x3000", |b| {
        b.iter(|| decode_all(black_box(&msg), &mut slots))
    });
    g.finish();
}

fn bench_json(c: &mut Criterion) {
    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(1));
    let mut out = JsonBuf::with_capacity(4096);
    for (name, kind, token) in KINDS {
        let t = sample(kind, token);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                write_tick(black_box(&t), &mut out).expect("room for a tick");
                out.len()
            })
        });
    }
    let t = sample(PacketKind::Full, 408_065);
    let no_depth = FieldSelection::ALL.with(panda_feed::Mode::Full, Part::Depth, false);
    for (name, f) in [
        ("full_no_depth", no_depth),
        ("full_none", FieldSelection::NONE),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                write_tick_with(black_box(&t), black_box(f), &mut out).expect("room for a tick");
                out.len()
            })
        });
    }
    g.finish();
    // A corpus, not one tick (issue 15): 1,000 full ticks of 250 NSE
    // instruments with realistic, varied values (prices around 1,500-2,000
    // rupees, growing volumes, five depth levels around the price), as
    // envelopes, the publisher's work per tick.
    let corpus: Vec<Tick> = (0..1000).map(realistic_full).collect();
    let mut g = c.benchmark_group("json_corpus");
    g.throughput(Throughput::Elements(corpus.len() as u64));
    let mut out = JsonBuf::with_capacity(4096);
    g.bench_function("full_envelopes_x1000", |b| {
        b.iter(|| {
            let mut n = 0;
            for t in black_box(&corpus) {
                out.clear();
                panda_feed::json::write_envelope(t, panda_feed::run_id::RunId(7), &mut out)
                    .expect("room for an envelope");
                n += out.len();
            }
            n
        })
    });
    g.finish();
}

/// A full NSE tick with realistic, varied values (the same generator as
/// `perf/src/bin/instr.rs`).
#[allow(clippy::cast_possible_truncation)]
fn realistic_full(i: u32) -> Tick {
    let mut t = Tick::for_token(((1000 + i % 250) << 8) | 1, PacketKind::Full);
    let p = 150_000 + (i * 37) % 5_000;
    t.last_price = p;
    t.last_traded_quantity = 1 + i % 500;
    t.average_traded_price = p - 13;
    t.volume_traded = 1_000_000 + i * 17;
    t.total_buy_quantity = 50_000 + i;
    t.total_sell_quantity = 60_000 + i;
    t.ohlc.open = p - 200;
    t.ohlc.high = p + 300;
    t.ohlc.low = p - 400;
    t.ohlc.close = p - 150;
    t.last_trade_time = 1_764_000_000 + i;
    t.exchange_timestamp = 1_764_000_000 + i;
    for (k, l) in t.depth.buy.iter_mut().enumerate() {
        let k = k as u32;
        l.price = p - 5 * (k + 1);
        l.quantity = 10 + k * 7 + i % 13;
        l.orders = (1 + k as u16) * 2;
    }
    for (k, l) in t.depth.sell.iter_mut().enumerate() {
        let k = k as u32;
        l.price = p + 5 * (k + 1);
        l.quantity = 12 + k * 5 + i % 11;
        l.orders = 1 + k as u16;
    }
    t.seq = u64::from(i) + 1;
    t.ts_recv_ns = 1_764_000_000_000_000_000 + u64::from(i) * 1_000;
    t
}

/// Routes one message per iteration, timing only the `route` call.
fn route_case(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut router: Router,
    mut rxs: Vec<TickRx>,
    msg: &[u8],
) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            let mut seq = 0;
            for _ in 0..iters {
                let t = std::time::Instant::now();
                let r = router.route(0, &mut seq, 1, black_box(msg), &[]);
                total += t.elapsed();
                assert_eq!(r.map(|r| r.dropped_full), Ok(0));
                for rx in &mut rxs {
                    rx.pop_chunk(usize::MAX, |t| {
                        black_box(t);
                    });
                }
            }
            total
        });
    });
}

fn bench_route(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(3000));
    // 3000 instruments over six segments, LTP packets (decode is cheapest,
    // so the routing decision weighs most).
    let tokens: Vec<u32> = (0..3000u32).map(|i| (i << 8) | (1 + i % 6)).collect();
    let mut w = MessageWriter::with_capacity(3000 * 12 + 2);
    for &t in &tokens {
        w.push(&Tick::for_token(t, PacketKind::Ltp))
            .expect("3000 packets fit");
    }
    let msg = w.finish().to_vec();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..4)
        .map(|_| {
            let (tx, rx, _) = tick_ring(4096);
            (tx, rx)
        })
        .unzip();
    route_case(&mut g, "untiered", Router::new(txs), rxs, &msg);
    let rules = TierMap::new(Tier::T1, &[(1, Tier::T0), (2, Tier::T2)], &[]);
    let named: Vec<(u32, Tier)> = (0..9000u32)
        .map(|i| ((i << 8) | (1 + i % 6), Tier::ALL[(i % 3) as usize]))
        .collect();
    let named = TierMap::new(Tier::T1, &[(2, Tier::T2)], &named);
    let table = panda_feed::slo::LastTicks::with_capacity(9000);
    let mut sorted = tokens;
    sorted.sort_unstable();
    table.sync(&[], &sorted, 1);
    let table = std::sync::Arc::new(table);
    for (name, map, slo) in [
        ("tiered_rules", rules.clone(), false),
        ("tiered_named_9000", named, false),
        ("tiered_rules_slo", rules, true),
    ] {
        let mut lanes = Vec::new();
        let mut rxs = Vec::new();
        for _ in 0..4 {
            // The same slots as the untiered case, split 50/30/20.
            let [(a, ra, _), (b, rb, _), (c, rc, _)] = [2048, 1229, 819].map(tick_ring);
            lanes.push([a, b, c]);
            rxs.extend([ra, rb, rc]);
        }
        let mut router = Router::tiered(lanes, std::sync::Arc::new(map));
        if slo {
            router = router.with_last_ticks(std::sync::Arc::clone(&table));
        }
        route_case(&mut g, name, router, rxs, &msg);
    }
    g.finish();
}

criterion_group!(benches, bench_decode, bench_json, bench_route);
criterion_main!(benches);

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
//!   selection (`[fields]`: depth off; every optional part off).
//!
//! Run: `cargo bench --bench decode`. Figures are in the README.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use panda_feed::fields::{FieldSelection, Part};
use panda_feed::json::{JsonBuf, write_tick, write_tick_with};
use panda_feed::tick::{Depth, DepthLevel, Ohlc};
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
}

criterion_group!(benches, bench_decode, bench_json);
criterion_main!(benches);

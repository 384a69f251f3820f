//! Instructions per tick of the hot path's parts, for the deterministic
//! regression guard (`scripts/instr-guard`, run by `scripts/test`): each
//! part runs `N` times inside one `#[inline(never)]` function, and
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=<it>`
//! counts the instructions executed inside it (and its callees) on this
//! thread only, so set-up and librdkafka's own threads are not counted.
//!
//! `instr decode|json|enqueue N`
//! - `decode`: one binary message of 50 full packets (250 NSE instruments'
//!   worth of realistic values) → `Tick`s, as the router does; per tick.
//! - `json`: a full tick → the Kafka envelope; per tick.
//! - `enqueue`: the publisher's batched enqueue (`rd_kafka_produce_batch`
//!   of a chunk of 256 staged full envelopes; enqueue only: the broker is
//!   unreachable and delivery never happens); per record.
//! - `enqueue1`: one `rd_kafka_produce` per record, as the publisher did
//!   before the batched enqueue (and bars still do); per record.

use std::hint::black_box;
use std::sync::Arc;

use panda_feed::engine::kafka::batch::Batch;
use panda_feed::engine::kafka::{KafkaConfig, TickProducer};
use panda_feed::json::{JsonBuf, write_envelope};
use panda_feed::run_id::RunId;
use panda_feed::wire::{self, Message, MessageWriter};
use panda_feed::{PacketKind, Tick};

/// Packets per decoded message.
const PACKETS: usize = 50;

/// A full NSE tick with realistic, varied values.
fn tick(i: u32) -> Tick {
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
    t.oi = 0;
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
    t.ts_recv_ns = 1_764_000_000_123_456_789 + u64::from(i);
    t
}

#[inline(never)]
fn measure_decode(msg: &[u8], n: usize) -> u64 {
    let mut sum = 0u64;
    let mut t = Tick::default();
    for _ in 0..n {
        if let Ok(Message::Packets(packets)) = wire::decode(black_box(msg)) {
            for p in packets {
                t.decode_from(&p);
                // Every field written is observed, as the ring's slot is.
                black_box(&t);
                sum = sum.wrapping_add(u64::from(t.last_price));
            }
        }
    }
    sum
}

#[inline(never)]
fn measure_json(ticks: &[Tick], n: usize, buf: &mut JsonBuf) -> usize {
    let run = RunId::default();
    let mut len = 0;
    for i in 0..n {
        buf.clear();
        let _ = write_envelope(black_box(&ticks[i % ticks.len()]), run, buf);
        len += buf.as_bytes().len();
    }
    len
}

#[inline(never)]
fn measure_enqueue_batch(p: &TickProducer, batch: &mut Batch) -> usize {
    p.produce_batch(batch, 0)
}

/// `n` records through [`measure_enqueue_batch`], 256 at a time; staging
/// (which the publisher does by encoding in place) is not measured.
fn enqueue_batched(p: &TickProducer, payload: &[u8], n: usize) -> usize {
    let mut batch = Batch::with_capacity(256);
    let mut ok = 0;
    let mut left = n;
    let mut i = 0usize;
    while left > 0 {
        batch.clear();
        for _ in 0..left.min(256) {
            let key = (1000 + i % 250).to_string();
            batch.stage(key.as_bytes(), i as u64, 0, |b| {
                b.put(payload);
                true
            });
            i += 1;
        }
        left -= left.min(256);
        ok += measure_enqueue_batch(p, black_box(&mut batch));
    }
    ok
}

#[inline(never)]
fn measure_enqueue(p: &TickProducer, payload: &[u8], n: usize) -> usize {
    let mut ok = 0;
    for i in 0..n {
        let key = (1000 + i % 250).to_le_bytes();
        if p.produce(&key, black_box(payload), i as u64).is_ok() {
            ok += 1;
        }
    }
    ok
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let ticks: Vec<Tick> = (0..PACKETS as u32).map(tick).collect();
    match kind.as_str() {
        "decode" => {
            let mut w = MessageWriter::with_capacity(16 * 1024);
            for t in &ticks {
                w.push(t).expect("50 packets fit");
            }
            let msg = w.finish().to_vec();
            println!("{}", measure_decode(&msg, n));
        }
        "json" => {
            let mut buf = JsonBuf::with_capacity(4096);
            println!("{}", measure_json(&ticks, n, &mut buf));
        }
        "enqueue" | "enqueue1" => {
            let kafka = KafkaConfig {
                brokers: "127.0.0.1:1".into(),
                queue_max_messages: 10_000_000,
                ..KafkaConfig::default()
            };
            let dir = std::env::temp_dir().join(format!("panda-feed-instr-{}", std::process::id()));
            let spool = Arc::new(panda_feed::spool::Spool::new(
                panda_feed::spool::SpoolConfig {
                    dir: dir.clone(),
                    ..Default::default()
                },
                0,
                Arc::default(),
            ));
            let p = TickProducer::new(&kafka, "instr", spool).expect("producer");
            let mut buf = JsonBuf::with_capacity(4096);
            let _ = write_envelope(&ticks[0], RunId::default(), &mut buf);
            let payload = buf.as_bytes().to_vec();
            if kind == "enqueue" {
                println!("{}", enqueue_batched(&p, &payload, n));
            } else {
                println!("{}", measure_enqueue(&p, &payload, n));
            }
            // Exit without waiting for deliveries that cannot happen.
            let _ = std::fs::remove_dir_all(&dir);
            std::process::exit(0);
        }
        _ => {
            eprintln!("usage: instr decode|json|enqueue|enqueue1 N");
            std::process::exit(2);
        }
    }
}

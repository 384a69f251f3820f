//! Single-thread cost of the publisher's per-tick work: pop → JSON envelope →
//! `rd_kafka_produce` (enqueue only; delivery happens on librdkafka's
//! threads), against an embedded broker.
//!
//! `cargo run --release -p panda-feed-perf --bin publish_cost -- [TICKS] [RUNS]`

use std::time::{Duration, Instant};

use panda_feed::engine::kafka::{KafkaConfig, TickProducer};
use panda_feed::engine::publish::{HistogramExchange, Publisher};
use panda_feed::mock::EmbeddedBroker;
use panda_feed::ring::tick_ring;
use panda_feed::{PacketKind, Tick};

fn main() {
    let mut args = std::env::args().skip(1);
    let ticks: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let runs: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(5);
    let broker = match EmbeddedBroker::start(1, "market.ticks", 8) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("publish_cost: {e}");
            std::process::exit(1);
        }
    };
    let kafka = KafkaConfig {
        brokers: broker.bootstrap_servers().to_owned(),
        queue_max_messages: 2_000_000,
        ..KafkaConfig::default()
    };
    let kinds = [PacketKind::Full, PacketKind::Quote, PacketKind::Ltp];
    let mut per_tick = Vec::new();
    for run in 0..runs {
        let (mut tx, rx, _) = tick_ring(ticks);
        for i in 0..ticks {
            let mut t = Tick::for_token(((1000 + (i % 300) as u32) << 8) | 1, kinds[i % 3]);
            t.last_price = 150_000 + i as u32 % 1000;
            t.seq = i as u64 + 1;
            t.ts_recv_ns = panda_feed::clock::now_ns();
            let _ = tx.push(&t);
        }
        let spool = std::sync::Arc::new(panda_feed::spool::Spool::new(
            panda_feed::spool::SpoolConfig {
                dir: std::env::temp_dir().join("panda-feed-publish-cost-spool"),
                ..Default::default()
            },
            0,
            std::sync::Arc::default(),
        ));
        let producer = match TickProducer::new(&kafka, "publish-cost", spool) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("publish_cost: {e}");
                std::process::exit(1);
            }
        };
        let mut p = Publisher::new(
            rx,
            producer,
            256,
            Duration::from_secs(10),
            HistogramExchange::unconnected(),
        );
        let start = Instant::now();
        let mut n = 0;
        while n < ticks {
            n += p.publish_available();
        }
        let ns = start.elapsed().as_nanos() as f64 / ticks as f64;
        println!("run {run}: {ticks} ticks, {ns:.0} ns/tick (envelope + produce enqueue)");
        per_tick.push(ns);
        let _ = p.producer().flush(Duration::from_secs(30));
    }
    per_tick.sort_by(f64::total_cmp);
    println!("median {:.0} ns/tick", per_tick[per_tick.len() / 2]);
}

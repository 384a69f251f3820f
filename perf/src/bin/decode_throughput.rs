//! Decode throughput on a framed corpus: `decode → Tick` (and optionally
//! `→ JSON`), repeated for a fixed time on one thread. Prints one JSON line.
//!
//! `decode_throughput CORPUS.framed [SECONDS] [--json]`

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use panda_feed::Tick;
use panda_feed::json::{JsonBuf, write_tick};
use panda_feed::wire::{self, Message};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_json = args.iter().any(|a| a == "--json");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let Some(path) = pos.first() else {
        eprintln!("usage: decode_throughput CORPUS.framed [SECONDS] [--json]");
        return ExitCode::from(2);
    };
    let seconds: f64 = match pos.get(1).map(|s| s.parse()) {
        None => 3.0,
        Some(Ok(s)) if s > 0.0 => s,
        Some(_) => {
            eprintln!(
                "decode_throughput: SECONDS must be a positive number, got {:?}",
                pos[1]
            );
            return ExitCode::from(2);
        }
    };
    let corpus = match panda_feed_perf::read_framed(path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("decode_throughput: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = JsonBuf::with_capacity(4096);
    let mut slot = Tick::default();
    let mut ticks = 0u64;
    let mut passes = 0u64;
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    while start.elapsed() < budget {
        for msg in &corpus {
            if let Ok(Message::Packets(p)) = wire::decode(black_box(msg)) {
                for packet in p {
                    if slot.decode_from(&packet) {
                        if with_json {
                            out.clear();
                            if write_tick(&slot, &mut out).is_ok() {
                                black_box(out.as_bytes());
                            }
                        }
                        black_box(&mut slot);
                        ticks += 1;
                    }
                }
            }
        }
        passes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"ticks\":{ticks},\"passes\":{passes},\"seconds\":{secs:.3},\"ticks_per_s\":{:.0},\"ns_per_tick\":{:.2},\"json\":{with_json}}}",
        ticks as f64 / secs,
        secs * 1e9 / ticks.max(1) as f64
    );
    ExitCode::SUCCESS
}

//! End-to-end harness: mock exchange → engine → embedded Kafka broker, all
//! on this machine.
//!
//! 1. Latency at fixed rates: receive → produce-call percentiles, with the
//!    full hdrhistogram percentile distribution saved per rate.
//! 2. Maximum sustained rate: ascending rates; sustained means every tick
//!    published, zero drops, and the offered rate actually achieved.
//! 3. RSS of the real binary (`panda-feed run`) with 9,000 instruments
//!    subscribed over 3 connections, sampled from /proc.
//!
//! ```text
//! cargo run --release -p panda-feed-perf --bin e2e -- [--seconds S]
//!     [--rates 10000,50000,200000] [--search 100000,200000,300000,...]
//!     [--publishers N] [--idle park|spin] [--bin target/release/panda-feed]
//!     [--compression lz4|none|…] [--instruments N] [--out perf/results]
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use panda_feed::engine::kafka::KafkaConfig;
use panda_feed::engine::{Engine, EngineConfig, IdlePolicy, Secret, Summary};
use panda_feed::mock::EmbeddedBroker;
use panda_feed::mock::{MockConfig, MockExchange, default_instruments};
use serde_json::{Value, json};

struct Opts {
    seconds: f64,
    rates: Vec<u64>,
    search: Vec<u64>,
    publishers: usize,
    idle: IdlePolicy,
    bin: PathBuf,
    out: PathBuf,
    instruments: usize,
    compression: String,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        seconds: 5.0,
        rates: vec![10_000, 50_000, 200_000],
        search: vec![100_000, 200_000, 300_000, 400_000, 500_000, 600_000],
        publishers: 1,
        idle: IdlePolicy::Park,
        bin: PathBuf::from("target/release/panda-feed"),
        out: PathBuf::from("perf/results"),
        instruments: 300,
        compression: KafkaConfig::default().compression,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let list = |v: &str| -> Result<Vec<u64>, String> {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| format!("bad rate {s:?}")))
            .collect()
    };
    while i < args.len() {
        let val = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--seconds" => o.seconds = val.parse().map_err(|_| format!("bad --seconds {val:?}"))?,
            "--rates" => o.rates = list(&val)?,
            "--search" => o.search = list(&val)?,
            "--publishers" => {
                o.publishers = val
                    .parse()
                    .map_err(|_| format!("bad --publishers {val:?}"))?;
            }
            "--instruments" => {
                o.instruments = val
                    .parse()
                    .map_err(|_| format!("bad --instruments {val:?}"))?;
            }
            "--idle" => {
                o.idle = match val.as_str() {
                    "park" => IdlePolicy::Park,
                    "spin" => IdlePolicy::Spin,
                    _ => return Err(format!("--idle {val:?}: park or spin")),
                }
            }
            "--bin" => o.bin = PathBuf::from(val),
            "--compression" => o.compression = val,
            "--out" => o.out = PathBuf::from(val),
            other => return Err(format!("unknown argument {other:?}")),
        }
        i += 2;
    }
    Ok(o)
}

struct RunResult {
    offered: u64,
    ticks: u64,
    achieved: f64,
    summary: Summary,
    completed: bool,
}

fn run_once(o: &Opts, rate: u64) -> Result<RunResult, String> {
    let ticks = (rate as f64 * o.seconds) as u64;
    let broker = EmbeddedBroker::start(1, "market.ticks", 8)?;
    let mock = MockExchange::start(MockConfig {
        rate_per_s: rate,
        seed: 11,
        max_ticks: Some(ticks),
        max_packets_per_message: 500,
        ..MockConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let mut engine = Engine::start(EngineConfig {
        ws_url: mock.ws_url(),
        api_key: Secret::new("mock_api_key"),
        access_token: Secret::new("mock_access_token"),
        instruments: default_instruments(o.instruments)
            .iter()
            .map(|i| (i.token, i.mode.unwrap_or(panda_feed::Mode::Full)))
            .collect(),
        publishers: o.publishers,
        idle: o.idle,
        kafka: KafkaConfig {
            brokers: broker.bootstrap_servers().to_owned(),
            compression: o.compression.clone(),
            ..KafkaConfig::default()
        },
        ..EngineConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs_f64(o.seconds * 3.0 + 20.0);
    let mut first: Option<Instant> = None;
    let mut last_received_at = Instant::now();
    let mut last_received = 0;
    let mut completed = false;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        let c = engine.counts();
        if c.received > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if c.received != last_received {
            last_received = c.received;
            last_received_at = Instant::now();
        }
        if c.published + c.dropped >= ticks && c.received >= ticks {
            completed = true;
            break;
        }
    }
    let span = first.map_or(0.0, |f| last_received_at.duration_since(f).as_secs_f64());
    let summary = engine.stop();
    drop(mock);
    drop(broker);
    Ok(RunResult {
        offered: rate,
        ticks,
        achieved: if span > 0.0 {
            last_received as f64 / span
        } else {
            0.0
        },
        summary,
        completed,
    })
}

fn percentile_distribution(h: &Histogram<u64>) -> String {
    let mut s = String::from("       Value(µs)   Percentile   TotalCount 1/(1-Percentile)\n\n");
    for v in h.iter_quantiles(2) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            1.0 / (1.0 - q)
        } else {
            f64::INFINITY
        };
        s.push_str(&format!(
            "{:>16.3} {:>12.6} {:>12} {:>14.2}\n",
            v.value_iterated_to() as f64 / 1000.0,
            q,
            v.count_since_last_iteration(),
            inv
        ));
    }
    s.push_str(&format!(
        "#[Mean = {:.3} µs, StdDeviation = {:.3} µs]\n#[Max = {:.3} µs, Total count = {}]\n",
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    ));
    s
}

fn row(r: &RunResult) -> Value {
    let c = &r.summary.counts;
    json!({
        "offered_ticks_per_s": r.offered,
        "achieved_ticks_per_s": r.achieved.round(),
        "ticks": r.ticks,
        "received": c.received,
        "published": c.published,
        "dropped": c.dropped,
        "completed": r.completed,
        "identity_holds": r.summary.identity_holds,
        "latency_ns": c.latency_ns,
    })
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn rss_with_instruments(o: &Opts, n: usize) -> Result<Value, String> {
    if !o.bin.exists() {
        return Err(format!(
            "{} not found; build it first with cargo build --release",
            o.bin.display()
        ));
    }
    let dir = std::env::temp_dir().join(format!("panda-feed-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let csv = dir.join("instruments.csv");
    let mut text = String::from("instrument_token,tradingsymbol,name,exchange,mode\n");
    for i in default_instruments(n) {
        let mode = match i.mode {
            Some(panda_feed::Mode::Ltp) => "ltp",
            Some(panda_feed::Mode::Quote) => "quote",
            _ => "full",
        };
        text.push_str(&format!(
            "{},{},{},{},{mode}\n",
            i.token, i.tradingsymbol, i.name, i.exchange
        ));
    }
    std::fs::write(&csv, text).map_err(|e| e.to_string())?;
    let token = dir.join("token");
    std::fs::write(&token, "mock_access_token").map_err(|e| e.to_string())?;
    let broker = EmbeddedBroker::start(1, "market.ticks", 8)?;
    let rate = 20_000;
    let mock = MockExchange::start(MockConfig {
        rate_per_s: rate,
        ..MockConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let secs = o.seconds.max(5.0);
    let summary = dir.join("summary.json");
    let child = Command::new(&o.bin)
        .args([
            "run",
            "--ops-listen",
            "127.0.0.1:0",
            "--ws-url",
            &mock.ws_url(),
            "--api-key",
            "mock_api_key",
        ])
        .arg("--access-token-file")
        .arg(&token)
        .arg("--instruments")
        .arg(&csv)
        .args(["--brokers", broker.bootstrap_servers()])
        .args(["--duration", &secs.to_string()])
        .arg("--summary")
        .arg(&summary)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", o.bin.display()))?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_rss_kb = 0u64;
    let mut child = child;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            for line in s.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    let kb: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
                    peak_rss_kb = peak_rss_kb.max(kb);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    drop(mock);
    drop(broker);
    Ok(json!({
        "instruments": n,
        "connections": s["connections"].as_array().map_or(0, Vec::len),
        "rate_ticks_per_s": rate,
        "seconds": secs,
        "published": s["published"],
        "identity_holds": s["identity_holds"],
        "peak_rss_mib": (peak_rss_kb as f64 / 1024.0 * 10.0).round() / 10.0,
    }))
}

fn main() {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("e2e: {e}");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&o.out).ok();
    let mut fixed = Vec::new();
    println!(
        "# latency at fixed rates ({} s each, {} publisher(s), idle={:?}, compression={})",
        o.seconds, o.publishers, o.idle, o.compression
    );
    println!("offered/s  achieved/s  dropped  p50 µs  p99 µs  p99.9 µs  max µs");
    for &rate in &o.rates {
        match run_once(&o, rate) {
            Ok(r) => {
                let l = r.summary.counts.latency_ns;
                println!(
                    "{:>9} {:>11.0} {:>8} {:>7.1} {:>7.1} {:>9.1} {:>7.1}",
                    r.offered,
                    r.achieved,
                    r.summary.counts.dropped,
                    us(l.p50),
                    us(l.p99),
                    us(l.p99_9),
                    us(l.max)
                );
                let path = o.out.join(format!("e2e_latency_{rate}.hgrm"));
                if let Err(e) =
                    std::fs::write(&path, percentile_distribution(&r.summary.latency_histogram))
                {
                    eprintln!("e2e: cannot write {}: {e}", path.display());
                }
                fixed.push(row(&r));
            }
            Err(e) => eprintln!("e2e: rate {rate}: {e}"),
        }
    }
    println!("# maximum sustained rate (zero drops, all published, achieved ≥ 95% of offered)");
    let mut search = Vec::new();
    let mut max_sustained = 0u64;
    for &rate in &o.search {
        match run_once(&o, rate) {
            Ok(r) => {
                let ok = r.completed
                    && r.summary.counts.dropped == 0
                    && r.summary.counts.published == r.ticks
                    && r.achieved >= 0.95 * rate as f64;
                println!(
                    "{:>9} achieved {:>9.0}/s dropped {:>7} published {:>9}/{:<9} {}",
                    rate,
                    r.achieved,
                    r.summary.counts.dropped,
                    r.summary.counts.published,
                    r.ticks,
                    if ok { "sustained" } else { "NOT sustained" }
                );
                search.push(row(&r));
                if ok {
                    max_sustained = rate;
                } else {
                    break;
                }
            }
            Err(e) => {
                eprintln!("e2e: rate {rate}: {e}");
                break;
            }
        }
    }
    println!("max sustained: {max_sustained} ticks/s");
    println!("# RSS of `panda-feed run` with 9000 instruments");
    let rss = match rss_with_instruments(&o, 9000) {
        Ok(v) => {
            println!("{v}");
            v
        }
        Err(e) => {
            eprintln!("e2e: rss: {e}");
            json!({ "error": e })
        }
    };
    let report = json!({
        "harness": "perf/src/bin/e2e.rs",
        "seconds_per_run": o.seconds,
        "publishers": o.publishers,
        "idle": format!("{:?}", o.idle).to_lowercase(),
        "instruments": o.instruments,
        "compression": o.compression,
        "fixed_rates": fixed,
        "search": search,
        "max_sustained_ticks_per_s": max_sustained,
        "rss": rss,
    });
    let path = o.out.join("e2e.json");
    match std::fs::File::create(&path).and_then(|mut f| writeln!(f, "{report:#}")) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("e2e: cannot write {}: {e}", path.display()),
    }
}

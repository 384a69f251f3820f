//! One-minute bars end to end (README, "Bars"): the mock exchange's market
//! clock set just before a minute boundary → the engine's publishers build
//! bars on the exchange clock → `market.bars.1m` on the embedded broker,
//! exactly once, each bar equal to what the published ticks of its minute
//! say, with the bars' own identity in the summary.

mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use panda_feed::Mode;
use panda_feed::bars::{BarClock, BarSettings};
use panda_feed::config::defaults::{BARS_TOPIC, TOPIC};
use serde_json::Value;
use util::kafka::read_to_end;
use util::stack::PARTITIONS;
use util::{Stack, wait_until};

/// 2026-11-26 10:00:00 IST (04:30 UTC).
const T10_S: u32 = 1_795_667_400;

fn bar_settings(clock: BarClock) -> BarSettings {
    BarSettings {
        enabled: true,
        topic: BARS_TOPIC.into(),
        grace: Duration::from_millis(300),
        clock,
        handoff: 1024,
        calendar: None,
    }
}

/// A bar's (open, high, low, close, volume, ticks).
type Ohlcv = (f64, f64, f64, f64, u64, u64);

/// What the bars must be, from the published ticks: per token and exchange
/// minute (`YYYY-MM-DDTHH:MM`), OHLC of `last_price`, the tick count, and
/// the volume as the rise of `volume_traded` since the token's previous
/// tick (its first is the baseline).
fn expected_bars(ticks: &[Value]) -> BTreeMap<(u64, String), Ohlcv> {
    let mut by_token: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for t in ticks {
        by_token
            .entry(t["data"]["instrument_token"].as_u64().unwrap())
            .or_default()
            .push(t);
    }
    let mut out: BTreeMap<(u64, String), Ohlcv> = BTreeMap::new();
    for (tok, mut ts) in by_token {
        ts.sort_by_key(|t| (t["conn"].as_u64(), t["seq"].as_u64()));
        let mut last_v = 0u64;
        for t in ts {
            let d = &t["data"];
            let v = d["volume_traded"].as_u64().unwrap_or(0);
            let delta = if v == 0 {
                0
            } else {
                let x = if last_v == 0 {
                    0
                } else {
                    v.saturating_sub(last_v)
                };
                last_v = v;
                x
            };
            let minute = d["exchange_timestamp"].as_str().expect("full mode")[..16].to_owned();
            let p = d["last_price"].as_f64().unwrap();
            if p == 0.0 {
                continue;
            }
            out.entry((tok, minute))
                .and_modify(|(_, h, l, c, vol, n)| {
                    *h = h.max(p);
                    *l = l.min(p);
                    *c = p;
                    *vol += delta;
                    *n += 1;
                })
                .or_insert((p, p, p, p, delta, 1));
        }
    }
    out
}

#[test]
fn bars_reach_their_topic_exactly_once_and_match_the_ticks_of_their_minute() {
    // The market clock starts at 10:00:59 IST: the 10:00 minute ends about
    // a second after the mock starts (the next one a minute later, should
    // the engine be slow to subscribe on a loaded machine).
    let mut s = Stack::builder()
        .tag("bars")
        .mock(|m| {
            m.rate_per_s = 2000;
            m.clock_start_s = Some(T10_S + 59);
        })
        .engine(|c| {
            c.bars = bar_settings(BarClock::Exchange);
            // Full mode: every tick carries its exchange timestamp.
            for i in &mut c.instruments {
                i.1 = Mode::Full;
            }
        })
        .start();
    assert!(
        wait_until(Duration::from_secs(120), || s
            .engine
            .counts()
            .bars
            .is_some_and(|b| b.published > 0)),
        "{:?}",
        s.engine.counts().bars
    );
    let summary = s.engine.stop();
    s.mock.stop();
    let b = summary.counts.bars.expect("bars are on");
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!((b.parked, b.dropped, b.in_flight), (0, 0, 0), "{b:?}");
    assert_eq!(b.built, b.published, "{b:?}");
    assert_eq!(b.late_ticks, 0, "exchange timestamps never go back");

    let records = read_to_end(s.broker.bootstrap_servers(), BARS_TOPIC, PARTITIONS);
    assert_eq!(records.len() as u64, b.published, "exactly once");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/bar.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the bar schema compiles");
    let ticks: Vec<Value> = read_to_end(s.broker.bootstrap_servers(), TOPIC, PARTITIONS)
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).unwrap())
        .collect();
    let want = expected_bars(&ticks);
    let mut got = BTreeMap::new();
    for (key, value) in records {
        let e: Value = serde_json::from_slice(&value).unwrap();
        if let Err(err) = validator.validate(&e) {
            panic!("{e} does not match schemas/bar.schema.json: {err}");
        }
        let tok = e["instrument_token"].as_u64().unwrap();
        assert_eq!(
            String::from_utf8(key).unwrap(),
            tok.to_string(),
            "keyed by token"
        );
        assert_eq!(e["run"], summary.run_id.to_string());
        let start = e["start"].as_str().unwrap();
        let minute = start[..16].to_owned();
        assert!(start.ends_with(":00Z"), "{e}");
        let end = e["end"].as_str().unwrap();
        assert_eq!(&end[..11], &start[..11], "{e}");
        let bar = (
            e["open"].as_f64().unwrap(),
            e["high"].as_f64().unwrap(),
            e["low"].as_f64().unwrap(),
            e["close"].as_f64().unwrap(),
            e["volume"].as_u64().unwrap(),
            e["ticks"].as_u64().unwrap(),
        );
        assert_eq!(
            Some(&bar),
            want.get(&(tok, minute.clone())),
            "token {tok} {minute}: bar = its ticks"
        );
        assert!(
            got.insert((tok, minute), bar).is_none(),
            "token {tok}: a second bar of a minute"
        );
    }
    assert!(!got.is_empty());
    // Every (token, minute) the ticks open is either on the topic or, the
    // minute not over at stop, counted as incomplete.
    assert_eq!(want.len() as u64, b.built + b.incomplete_at_stop, "{b:?}");
}

#[test]
fn a_hand_off_without_a_reader_is_skipped_and_a_full_one_counts_its_drops() {
    use panda_feed::engine::bar_lane::{BarLane, Emit};
    use panda_feed::engine::kafka::{KafkaConfig, TickProducer};
    use panda_feed::{PacketKind, Tick};
    use std::sync::atomic::Ordering::Relaxed;

    let dir = util::TempDir::new("bars-handoff");
    let kafka = KafkaConfig {
        sink: "blackhole".into(),
        ..KafkaConfig::default()
    };
    let spool = std::sync::Arc::new(panda_feed::spool::Spool::new(
        panda_feed::spool::SpoolConfig {
            dir: dir.join("spool"),
            ..Default::default()
        },
        0,
        std::sync::Arc::default(),
    ));
    let producer = TickProducer::new(&kafka, "bars-handoff", spool)
        .unwrap()
        .with_bars_topic(BARS_TOPIC)
        .unwrap();
    for reader in [false, true] {
        let (tx, rx) = rtrb::RingBuffer::new(1);
        let rx = reader.then_some(rx);
        let book = panda_feed::bars::BarBook::new(16, 0, BarClock::Receive, None);
        let mut lane = BarLane::new(book, tx, Vec::new());
        // Two instruments over four minutes: 6 bars close on rotation.
        for m in 0..4u64 {
            for tok in [408_065u32, 408_321] {
                let mut t = Tick::for_token(tok, PacketKind::Ltp);
                t.last_price = 100;
                t.ts_recv_ns = u64::from(T10_S) * 1_000_000_000 + m * 60_000_000_000;
                let e = Emit {
                    producer: &producer,
                    run: panda_feed::run_id::RunId(1),
                    wait: Duration::ZERO,
                };
                lane.on_tick(&t, e);
            }
        }
        lane.store_counters();
        let c = lane.counters();
        assert_eq!(c.built.load(Relaxed), 4, "reader {reader}");
        assert_eq!(c.produced.load(Relaxed), 4, "reader {reader}");
        // With a reader the one-slot ring takes the first bar and drops 3;
        // without one nothing is pushed and nothing counted.
        let want = if reader { 3 } else { 0 };
        assert_eq!(c.handoff_dropped.load(Relaxed), want, "reader {reader}");
        drop(rx);
    }
}

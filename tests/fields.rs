//! Field selection (`[fields]`, `Engine::set_fields`): the default output is
//! byte for byte the output from before selection existed; reduced ticks
//! and envelopes validate against the schemas; every key comes from the
//! environment too; and a running engine switches selection between two
//! records.

mod util;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use panda_feed::Mode;
use panda_feed::config::FieldsConfig;
use panda_feed::config::env::{EnvOverlay, load_layered};
use panda_feed::engine::EngineConfig;
use panda_feed::fields::{FieldSelection, Part};
use panda_feed::json::{JsonBuf, write_envelope, write_envelope_with, write_tick_with};
use panda_feed::run_id::RunId;
use panda_feed::tick::{DepthLevel, Ohlc};
use panda_feed::{PacketKind, Tick};
use serde_json::Value;
use util::cli::{output, panda_feed, stderr};
use util::{Stack, wait_until};

const GOLDEN: &str = "tests/data/fields/default_envelopes.jsonl";

/// The ticks of the golden file: every kind, segments of each price divisor, extreme and typical values.
fn golden_ticks() -> Vec<Tick> {
    let mut out = Vec::new();
    let kinds = [
        PacketKind::Ltp,
        PacketKind::IndexQuote,
        PacketKind::IndexFull,
        PacketKind::Quote,
        PacketKind::Full,
    ];
    for kind in kinds {
        for seg in [1u32, 3, 6] {
            for fill in [0u32, 157_370, u32::MAX] {
                let lvl = DepthLevel {
                    quantity: fill / 3,
                    price: fill,
                    orders: (fill % 65_536) as u16,
                };
                let mut t = Tick::for_token((408_065 << 8) | seg, kind);
                t.last_price = fill;
                t.last_traded_quantity = fill / 7;
                t.average_traded_price = fill / 2;
                t.volume_traded = fill;
                t.total_buy_quantity = fill / 5;
                t.total_sell_quantity = fill / 11;
                t.ohlc = Ohlc {
                    open: fill / 2,
                    high: fill,
                    low: fill / 4,
                    close: fill / 3,
                };
                t.last_trade_time = fill;
                t.oi = fill / 13;
                t.oi_day_high = fill / 12;
                t.oi_day_low = fill / 14;
                t.exchange_timestamp = fill / 2;
                t.depth.buy = [lvl; 5];
                t.depth.sell = [lvl; 5];
                t.seq = u64::from(fill) + 1;
                t.conn = (seg % 3) as u8;
                t.ts_recv_ns = 1_625_462_487_123_456_789 + u64::from(fill);
                out.push(t);
            }
        }
    }
    out
}

#[test]
fn the_default_output_is_byte_identical_to_the_output_before_selection() {
    // The golden file was written by the encoder of the commit before field
    // selection (81f7d87) from exactly these ticks.
    let golden = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN))
        .expect("golden file");
    let ticks = golden_ticks();
    assert_eq!(golden.lines().count(), ticks.len());
    let default = EngineConfig::from_sections(&panda_feed::config::Config::default()).fields;
    assert_eq!(default, FieldSelection::ALL);
    let mut b = JsonBuf::with_capacity(4096);
    for (t, want) in ticks.iter().zip(golden.lines()) {
        for f in [None, Some(default)] {
            b.clear();
            match f {
                None => write_envelope(t, RunId(0x00c0_ffee_0000_0001), &mut b).unwrap(),
                Some(f) => write_envelope_with(t, RunId(0x00c0_ffee_0000_0001), f, &mut b).unwrap(),
            }
            assert_eq!(std::str::from_utf8(b.as_bytes()).unwrap(), want);
        }
    }
}

fn tick_validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/tick.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).expect("schema compiles")
}

/// Every one of the 32 selections (4 full bits × quote's OHLC bit).
fn every_selection() -> Vec<FieldSelection> {
    (0..32u16)
        .map(|i| {
            let mut f = FieldSelection::NONE;
            for (b, part) in Part::ALL.into_iter().enumerate() {
                f = f.with(Mode::Full, part, i & (1 << b) != 0);
            }
            f.with(Mode::Quote, Part::Ohlc, i & 16 != 0)
        })
        .collect()
}

#[test]
fn reduced_ticks_are_json_and_validate_against_the_schema() {
    let v = tick_validator();
    let selections = every_selection();
    let distinct: std::collections::HashSet<_> = selections.iter().collect();
    assert_eq!(distinct.len(), 32);
    let mut b = JsonBuf::with_capacity(0);
    for f in selections {
        for t in golden_ticks() {
            b.clear();
            write_tick_with(&t, f, &mut b).unwrap();
            let tick: Value = serde_json::from_slice(b.as_bytes()).expect("valid JSON");
            let errors: Vec<String> = v.iter_errors(&tick).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{f:?}: {tick}\n{errors:#?}");
            let m = tick.as_object().unwrap();
            // Left out means absent: the only nulls are timestamps whose raw
            // value was 0, as in the full contract.
            for (k, x) in m {
                assert!(
                    !x.is_null() || k == "last_trade_time" || k == "exchange_timestamp",
                    "{k} is null in {tick}"
                );
            }
            let mode = t.kind.mode();
            assert_eq!(
                m.contains_key("ohlc"),
                t.kind != PacketKind::Ltp && f.sends(mode, Part::Ohlc)
            );
            assert_eq!(
                m.contains_key("depth"),
                t.kind == PacketKind::Full && f.sends(mode, Part::Depth)
            );
            assert_eq!(
                m.contains_key("oi"),
                t.kind == PacketKind::Full && f.sends(mode, Part::Oi)
            );
            assert_eq!(
                m.contains_key("exchange_timestamp"),
                matches!(t.kind, PacketKind::Full | PacketKind::IndexFull)
                    && f.sends(mode, Part::Timestamps)
            );
        }
    }
    // The schema still rejects half a part.
    let mut b = JsonBuf::with_capacity(0);
    write_tick_with(&golden_ticks()[40], FieldSelection::ALL, &mut b).unwrap();
    let mut t: Value = serde_json::from_slice(b.as_bytes()).unwrap();
    assert_eq!(t["mode"], "full");
    assert!(v.is_valid(&t));
    t.as_object_mut().unwrap().remove("oi_day_low");
    assert!(!v.is_valid(&t), "oi without oi_day_low accepted");
}

#[test]
fn reduced_envelopes_validate_against_the_envelope_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(root.join(name)).unwrap()).unwrap()
    };
    let registry = jsonschema::Registry::new()
        .add(
            "https://github.com/panda-feed/panda-feed/schemas/tick.schema.json",
            read("tick.schema.json"),
        )
        .unwrap()
        .prepare()
        .unwrap();
    let v = jsonschema::options()
        .with_registry(&registry)
        .build(&read("envelope.schema.json"))
        .expect("envelope schema compiles");
    let mut b = JsonBuf::with_capacity(4096);
    for f in every_selection() {
        for t in golden_ticks() {
            b.clear();
            write_envelope_with(&t, RunId(0x1d), f, &mut b).unwrap();
            let env: Value = serde_json::from_slice(b.as_bytes()).expect("valid JSON");
            let errors: Vec<String> = v.iter_errors(&env).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{f:?}: {env}\n{errors:#?}");
        }
    }
}

fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn every_fields_key_is_settable_from_the_environment() {
    let env = EnvOverlay::from_vars(vars(&[
        ("FIELDS__DEPTH", "false"),
        ("FIELDS__OI", "false"),
        ("FIELDS__OHLC", "false"),
        ("FIELDS__TIMESTAMPS", "false"),
        ("FIELDS__QUOTE_OHLC", "true"),
        ("FIELDS__FULL_DEPTH", "true"),
        ("FIELDS__FULL_OI", "true"),
        ("FIELDS__FULL_OHLC", "true"),
        ("FIELDS__FULL_TIMESTAMPS", "true"),
    ]))
    .unwrap();
    let (c, _) = load_layered(None, &env).unwrap();
    assert_eq!(
        c.fields,
        FieldsConfig {
            depth: false,
            oi: false,
            ohlc: false,
            timestamps: false,
            quote_ohlc: Some(true),
            full_depth: Some(true),
            full_oi: Some(true),
            full_ohlc: Some(true),
            full_timestamps: Some(true),
        }
    );
    // Each mode's key wins over the all-modes key.
    assert_eq!(EngineConfig::from_sections(&c).fields, FieldSelection::ALL);
    let env = EnvOverlay::from_vars(vars(&[("FIELDS__FULL_DEPTH", "false")])).unwrap();
    let (c, _) = load_layered(None, &env).unwrap();
    assert_eq!(
        EngineConfig::from_sections(&c).fields,
        FieldSelection::ALL.with(Mode::Full, Part::Depth, false)
    );
    let e = EnvOverlay::from_vars(vars(&[("FIELDS__DEPHT", "false"), ("FIELDS__OI", "maybe")]))
        .unwrap_err()
        .join("\n");
    assert!(
        e.contains("FIELDS__DEPHT") && e.contains("not a setting"),
        "{e}"
    );
    assert!(e.contains("FIELDS__OI") && e.contains("maybe"), "{e}");
}

#[test]
fn check_config_lists_every_fields_key_with_its_source() {
    let dir = util::TempDir::new("fields-check-config");
    let f = dir.file("c.toml", "[fields]\noi = false\nquote_ohlc = false\n");
    let mut cmd = panda_feed([
        "check-config",
        "--mock",
        "--json",
        "--config",
        f.to_str().unwrap(),
    ]);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.contains("__") {
            cmd.env_remove(k);
        }
    }
    let out = output(
        cmd.env("FIELDS__FULL_DEPTH", "false")
            .env("FIELDS__OHLC", "false"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["settings"];
    let row = |k: &str| {
        (
            s[k]["value"].clone(),
            s[k]["source"].as_str().unwrap_or("?").to_owned(),
        )
    };
    assert_eq!(row("fields.full_depth"), (Value::from(false), "env".into()));
    assert_eq!(row("fields.ohlc"), (Value::from(false), "env".into()));
    assert_eq!(row("fields.oi"), (Value::from(false), "file".into()));
    assert_eq!(
        row("fields.quote_ohlc"),
        (Value::from(false), "file".into())
    );
    assert_eq!(row("fields.depth"), (Value::from(true), "default".into()));
    assert_eq!(
        row("fields.timestamps"),
        (Value::from(true), "default".into())
    );
    for k in ["full_oi", "full_ohlc", "full_timestamps"] {
        assert_eq!(row(&format!("fields.{k}")), (Value::Null, "default".into()));
    }
}

/// The parts of one published record: (has depth, has ohlc) of its tick.
fn parts(env: &Value) -> (bool, bool) {
    let d = env["data"].as_object().expect("data is an object");
    (d.contains_key("depth"), d.contains_key("ohlc"))
}

#[test]
fn a_running_engine_switches_selection_between_records() {
    let lean = FieldSelection::ALL
        .with(Mode::Full, Part::Depth, false)
        .with(Mode::Quote, Part::Ohlc, false);
    let mut s = Stack::builder()
        .tag("fields")
        .mock(|m| m.rate_per_s = 4_000)
        .instruments(30)
        .engine(move |c| c.fields = lean)
        .start();
    let consumer = s.consume();
    assert_eq!(s.engine.fields(), lean);
    assert!(
        wait_until(Duration::from_secs(60), || s.engine.counts().published
            >= 500),
        "nothing published: {:?}",
        s.engine.counts()
    );
    assert_eq!(
        s.engine.counts().fields,
        lean,
        "the counters show the selection"
    );
    s.engine.set_fields(FieldSelection::ALL);
    assert_eq!(s.engine.counts().fields, FieldSelection::ALL);
    let switched_at = s.engine.counts().published;
    assert!(
        wait_until(Duration::from_secs(60), || {
            s.engine.counts().published >= switched_at + 500
        }),
        "nothing published after the switch: {:?}",
        s.engine.counts()
    );
    let summary = s.engine.stop();
    assert!(summary.identity_holds, "{summary:?}");
    let records = consumer.join(summary.counts.published);
    assert_eq!(records.len() as u64, summary.counts.published);

    // Per instrument (one publisher, one partition: in publish order), the
    // lean records come first, then only full ones: the switch happened
    // between two chunks and never went back.
    let mut per_token: HashMap<u64, Vec<(String, bool, bool)>> = HashMap::new();
    for r in &records {
        let env = r.envelope();
        let mode = env["data"]["mode"].as_str().unwrap().to_owned();
        let (depth, ohlc) = parts(&env);
        per_token
            .entry(env["data"]["instrument_token"].as_u64().unwrap())
            .or_default()
            .push((mode, depth, ohlc));
    }
    let (mut lean_seen, mut full_seen) = (0, 0);
    for (tok, recs) in &per_token {
        let mut switched = false;
        for (mode, depth, ohlc) in recs {
            let is_full = match mode.as_str() {
                // Index full ticks have no depth: they show the switch not.
                "full" if *ohlc && recs.iter().any(|r| r.1) => *depth,
                "quote" => *ohlc,
                _ => continue,
            };
            if is_full {
                switched = true;
                full_seen += 1;
            } else {
                assert!(
                    !switched,
                    "instrument {tok}: a lean record after a full one"
                );
                lean_seen += 1;
            }
        }
    }
    assert!(
        lean_seen > 0 && full_seen > 0,
        "lean {lean_seen}, full {full_seen}"
    );
}
